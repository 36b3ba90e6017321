package coapgw

import (
	"bytes"
	"context"
	"net"
	"sync"

	piondtls "github.com/pion/dtls/v3"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
)

// wire is a DTLS session's connection that notes the message ID and token
// of the last confirmable message the gateway wrote on it. The gateway's
// confirmable messages are its notifications, one in flight at a time
// (observe.go); go-coap numbers a notification itself, and one larger than
// a block goes out as its first Block2 block under yet another message ID
// (RFC 7959 §2.6). A Reset names what it answers by message ID alone
// (RFC 7252 §4.2), so the wire is where the two meet.
type wire struct {
	*piondtls.Conn

	mu    sync.Mutex
	mid   int32 // -1: no confirmable message yet
	token []byte
}

// Write notes a confirmable message's message ID and token and writes the
// datagram.
func (w *wire) Write(b []byte) (int, error) {
	if mid, token, ok := confirmable(b); ok {
		w.mu.Lock()
		w.mid = mid
		w.token = append(w.token[:0], token...)
		w.mu.Unlock()
	}
	return w.Conn.Write(b)
}

// confirmable reads the message ID and token of a confirmable CoAP
// message from its header (RFC 7252 §3: version 1, type, token length,
// code, message ID, token); ok is false for any other datagram.
func confirmable(b []byte) (mid int32, token []byte, ok bool) {
	if len(b) < 4 || b[0]>>6 != 1 || message.Type(b[0]>>4&3) != message.Confirmable {
		return 0, nil, false
	}
	tkl := int(b[0] & 0xf)
	if tkl > message.MaxTokenSize || len(b) < 4+tkl {
		return 0, nil, false
	}
	return int32(b[2])<<8 | int32(b[3]), b[4 : 4+tkl], true
}

// answers reports whether a Reset or an acknowledgement with message ID
// mid answers the last confirmable message written, sent with token.
func (w *wire) answers(mid int32, token []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mid == mid && bytes.Equal(w.token, token)
}

// wired hands the gateway's DTLS sessions out as wires.
type wired struct{ dtlsServer.Listener }

func (l wired) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	c, err := l.Listener.AcceptWithContext(ctx)
	if err != nil {
		return nil, err
	}
	if dc, ok := c.(*piondtls.Conn); ok {
		return &wire{Conn: dc, mid: -1}, nil
	}
	return c, nil
}
