package coapgw

import (
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/prometheus/client_golang/prometheus"
)

// Block-wise transfers (RFC 7959) are go-coap's: it reassembles a request
// sent in Block1 blocks before the resource table sees it, and serves a
// large answer in Block2 blocks from its cache. The gateway bounds what it
// holds: the unfinished request transfers of a session (Options.
// BlockTransfers; one more is 5.03), how long one may take (Options.
// BlockTimeout; then it is dropped and its blocks answer 4.08), and a
// request's whole body (Options.MaxBody), which limitBody checks at every
// block, before go-coap buffers it.

// blockwiseOpts are the server options of the gateway's block-wise
// transfers, for both listeners.
type blockwiseOpts struct {
	enable    options.BlockwiseOpt
	transfers options.BlockwiseReceivingMessagesCacheMaxEntriesOpt
	monitor   options.WithRequestMonitorOpt[udpClient.RequestMonitorFunc]
}

func (g *Gateway) blockwise() blockwiseOpts {
	return blockwiseOpts{
		enable:    options.WithBlockwise(true, blockwise.SZX1024, g.opts.BlockTimeout),
		transfers: options.WithBlockwiseReceivingMessagesCacheMaxEntries(g.opts.BlockTransfers),
		monitor:   options.WithRequestMonitor(udpClient.RequestMonitorFunc(g.monitor)),
	}
}

// monitor sees every message a peer sends before go-coap handles it: a
// Reset (resetSeen, observe.go) and the blocks of a request (limitBody).
func (g *Gateway) monitor(cc *udpClient.Conn, req *pool.Message) (drop bool, err error) {
	g.resetSeen(cc, req)
	return g.limitBody(cc, req)
}

// limitBody answers 4.13 with Size1 (RFC 7959 §2.9.3, §4) to a block that
// would take its request's body past Options.MaxBody, or whose Size1
// announces more, and drops it: go-coap never buffers it.
func (g *Gateway) limitBody(cc *udpClient.Conn, req *pool.Message) (drop bool, err error) {
	v, err := req.GetOptionUint32(message.Block1)
	if err != nil || req.Code() < codes.GET || req.Code() >= codes.Created {
		return false, nil // no Block1 in a request
	}
	szx, num, _, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		return false, nil // go-coap answers what it cannot decode
	}
	size := num * szx.Size()
	if n, err := req.BodySize(); err == nil {
		size += n
	}
	if size1, err := req.GetOptionUint32(message.Size1); err == nil {
		size = max(size, int64(size1))
	}
	if size <= int64(g.opts.MaxBody) {
		return false, nil
	}
	g.bodyRefused.Inc()
	resp := cc.AcquireMessage(cc.Context())
	defer cc.ReleaseMessage(resp)
	resp.SetCode(codes.RequestEntityTooLarge)
	resp.SetToken(req.Token())
	resp.SetOptionUint32(message.Size1, uint32(g.opts.MaxBody))
	if req.Type() == message.Confirmable {
		resp.SetType(message.Acknowledgement)
		resp.SetMessageID(req.MessageID())
	} else {
		resp.SetType(message.NonConfirmable)
		resp.SetMessageID(cc.GetMessageID())
	}
	// Straight to the session: go-coap's own writing would send it as a
	// block-wise exchange of its own and wait, on the reading path, for
	// an acknowledgement.
	if err := cc.Session().WriteMessage(resp); err != nil {
		g.opts.Log.Debug("coapgw: answering an oversize block", "err", err)
	}
	return true, nil
}

func newBodyRefused(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "thingid_coap_oversize_total",
		Help: "Block-wise request transfers refused with 4.13 for a body past coap.limits.maxBody."})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}
