package coapgw

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// pathEcho answers a POST with the length of the body it received, as the
// resource table gets it: after go-coap reassembled the blocks.
const pathEcho = "/echo"

func withEcho(o *Options) {
	o.Resources = append(o.Resources, Resource{Path: pathEcho, Handler: HandlerFunc(func(w mux.ResponseWriter, r *mux.Message, s *Session) {
		b, ok := readPost(w, r, s, o.MaxBody)
		if ok {
			_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader([]byte(strconv.Itoa(len(b)))))
		}
	})})
}

// A body posted in Block1 blocks reaches the resource whole up to
// MaxBody; past it go-coap's client (which announces the size in Size1)
// gets 4.13 with the limit in Size1 at the first block.
func TestBlockwisePostBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBody = 8 << 10; withEcho(o) })
	_, cert := e.thing("BW-1")
	cc := e.open(t, cert, "before the transfers")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := cc.Post(ctx, pathEcho, message.AppOctets, bytes.NewReader(bytes.Repeat([]byte{'a'}, 8<<10)))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(res.Body()); res.Code() != codes.Changed || string(b) != strconv.Itoa(8<<10) {
		t.Fatalf("a body of MaxBody in blocks: %v %q", res.Code(), b)
	}
	res, err = cc.Post(ctx, pathEcho, message.AppOctets, bytes.NewReader(bytes.Repeat([]byte{'a'}, 8<<10+1)))
	if err != nil {
		t.Fatal(err)
	}
	if size1, err := res.Options().GetUint32(message.Size1); res.Code() != codes.RequestEntityTooLarge || err != nil || size1 != 8<<10 {
		t.Fatalf("a body past MaxBody: %v, Size1 %d %v; want 4.13 with Size1 %d", res.Code(), size1, err, 8<<10)
	}
}

// blockConn is a DTLS session that writes CoAP messages as the test
// builds them, for what go-coap's client would not send.
type blockConn struct {
	t   *testing.T
	c   net.Conn
	mid int32
}

func (e *env) rawDTLS(t *testing.T, cert tls.Certificate) *blockConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := e.gw.DTLSAddr().(*net.UDPAddr)
	c, err := piondtls.DialWithOptions("udp", addr, piondtls.WithCertificates(cert), piondtls.WithInsecureSkipVerify(true),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &blockConn{t: t, c: c}
}

// block sends block num of a POST to pathEcho under token, 1024 bytes
// with more to follow unless last, and returns the answer's code and
// options.
func (b *blockConn) block(token string, num int64, last bool, size1 uint32) (codes.Code, message.Options) {
	b.t.Helper()
	v, err := blockwise.EncodeBlockOption(blockwise.SZX1024, num, !last)
	if err != nil {
		b.t.Fatal(err)
	}
	buf := make([]byte, 256)
	opts, n, err := make(message.Options, 0, 4).SetPath(buf, pathEcho)
	if err != nil {
		b.t.Fatal(err)
	}
	opts, m, err := opts.SetUint32(buf[n:], message.Block1, v)
	if err != nil {
		b.t.Fatal(err)
	}
	if size1 > 0 {
		if opts, _, err = opts.SetUint32(buf[n+m:], message.Size1, size1); err != nil {
			b.t.Fatal(err)
		}
	}
	b.mid++
	b.write(message.Message{Token: message.Token(token), Options: opts, Code: codes.POST, Type: message.Confirmable, MessageID: b.mid,
		Payload: bytes.Repeat([]byte{'b'}, 1024)})
	res := b.read(token)
	if res == nil {
		b.t.Fatalf("block %d of %q: no answer", num, token)
	}
	return res.Code, res.Options
}

// write sends msg as one datagram.
func (b *blockConn) write(msg message.Message) {
	b.t.Helper()
	out := make([]byte, 2048)
	k, err := coder.DefaultCoder.Encode(msg, out)
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := b.c.Write(out[:k]); err != nil {
		b.t.Fatal(err)
	}
}

// read is the next message carrying token, nil when none comes within
// ten seconds.
func (b *blockConn) read(token string) *message.Message { return b.readWithin(token, 10*time.Second) }

// readWithin is the next message carrying token, nil when none comes
// within d.
func (b *blockConn) readWithin(token string, d time.Duration) *message.Message {
	b.t.Helper()
	if err := b.c.SetReadDeadline(time.Now().Add(d)); err != nil {
		b.t.Fatal(err)
	}
	in := make([]byte, 2048)
	for {
		k, err := b.c.Read(in)
		if err != nil {
			return nil
		}
		res := message.Message{Options: make(message.Options, 0, 16)}
		if _, err := coder.DefaultCoder.Decode(in[:k], &res); err != nil {
			b.t.Fatal(err)
		}
		if string(res.Token) == token {
			return &res
		}
	}
}

// Unfinished Block1 transfers are bounded per session: past
// BlockTransfers a new one is 5.03, and those left unfinished expire
// (BlockTimeout), after which new ones are taken again. A transfer whose
// blocks go past MaxBody without announcing its size is refused with 4.13
// at the block that crosses it. Tries a flood of transfers that never end.
func TestBlockwiseUnfinishedTransfersBounded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBody, o.BlockTransfers, o.BlockTimeout = 4<<10, 2, time.Second; withEcho(o) })
	_, cert := e.thing("BW-2")
	b := e.rawDTLS(t, cert)
	for i, token := range []string{"t1", "t2"} {
		if c, _ := b.block(token, 0, false, 0); c != codes.Continue {
			t.Fatalf("transfer %d: %v, want 2.31 Continue", i+1, c)
		}
	}
	if c, _ := b.block("t3", 0, false, 0); c != codes.ServiceUnavailable {
		t.Fatalf("a transfer past BlockTransfers: %v, want 5.03", c)
	}
	// The unfinished ones expire: a new transfer is taken again.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		c, _ := b.block("t4-"+strconv.Itoa(i), 0, false, 0)
		if c == codes.Continue {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unfinished transfers never expired: %v", c)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Blocks past MaxBody without Size1: the fifth KiB is refused.
	for num := int64(0); num < 4; num++ {
		if c, _ := b.block("big", num, false, 0); c != codes.Continue {
			t.Fatalf("block %d within MaxBody: %v", num, c)
		}
	}
	if c, opts := b.block("big", 4, true, 0); c != codes.RequestEntityTooLarge {
		t.Fatalf("the block past MaxBody: %v, want 4.13", c)
	} else if size1, err := opts.GetUint32(message.Size1); err != nil || size1 != 4<<10 {
		t.Fatalf("4.13 without Size1 %d: %d %v", 4<<10, size1, err)
	}
	// A first block announcing too much in Size1 is refused at once.
	if c, _ := b.block("ann", 0, false, 1<<20); c != codes.RequestEntityTooLarge {
		t.Fatalf("Size1 past MaxBody: %v, want 4.13", c)
	}
}
