package coapgw

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzDatagram sends arbitrary datagrams to the gateway's plain CoAP
// listener (go-coap's parser, then the resource table and the handlers)
// and checks that it still answers a well-formed request afterwards.
func FuzzDatagram(f *testing.F) {
	for _, seed := range [][]byte{
		{0x40, 0x01, 0x00, 0x01, 0xb4, 's', 'e', 'l', 'f'},                                          // CON GET /self
		{0x40, 0x02, 0x00, 0x02, 0xb4, 's', 'e', 'l', 'f', 0xff, '{'},                               // CON POST /self with a payload
		{0x48, 0x01, 0x00, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 0xd1, 0x0e, 0x06},                          // token and a Block2 option
		{0x40, 0x01, 0x00, 0x04, 0xdd, 0xff, 0xff},                                                  // option length past the datagram
		{0x4f, 0x01, 0x00, 0x05},                                                                    // reserved token length
		{0x40, 0x02, 0x00, 0x06, 0xb4, 'm', 'q', 't', 't', 0xd3, 0x0a, 0xff, 0xff, 0xfe, 0xff, 'x'}, // POST with Block1 number 2^20-1
		{0x40, 0x02, 0x00, 0x07, 0xd1, 0x0e, 0x0e, 0x3c, 0xff, 0xff, 0xff, 0xff},                    // Block1 with reserved SZX 7, Size1 2^32-1
		{0x70, 0x00, 0x00, 0x08},                                                                    // Reset
	} {
		f.Add(seed)
	}
	e := newEnv(f, nil)
	addr := e.gw.UDPAddr().String()
	raw, err := net.Dial("udp", addr)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { raw.Close() })
	cc, err := udp.Dial(addr)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	f.Fuzz(func(t *testing.T, datagram []byte) {
		if _, err := raw.Write(datagram); err != nil {
			t.Skip(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := cc.Get(ctx, PathSelf)
		if err != nil || res.Code() != codes.Unauthorized {
			t.Fatalf("after %x: %v %v, want 4.01", datagram, res, err)
		}
	})
}

// FuzzConfirmable reads the header of arbitrary datagrams as the wire notes
// what the gateway writes: it never reads past one, and whatever go-coap
// decodes as a confirmable message it reads with the same message ID and
// token.
func FuzzConfirmable(f *testing.F) {
	for _, seed := range [][]byte{
		{0x48, 0x45, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 0x61, 0x05}, // CON 2.05 with a token and Observe
		{0x40, 0x83, 0x00, 0x01},                                     // CON 4.03, no token
		{0x60, 0x00, 0x00, 0x02},                                     // ACK
		{0x4f, 0x45, 0x00, 0x03},                                     // reserved token length
		{0x48, 0x45, 0x00, 0x04, 1, 2},                               // token past the datagram
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, datagram []byte) {
		mid, token, ok := confirmable(datagram)
		var m message.Message
		if _, err := coder.DefaultCoder.Decode(datagram, &m); err != nil || m.Type != message.Confirmable {
			return
		}
		if !ok || mid != m.MessageID || !bytes.Equal(token, m.Token) {
			t.Fatalf("%x: read %v %d %x, go-coap decodes %d %x", datagram, ok, mid, token, m.MessageID, m.Token)
		}
	})
}
