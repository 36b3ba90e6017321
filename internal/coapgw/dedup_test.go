package coapgw

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// counted is a resource that answers how many times its handler ran.
func counted(path string, n *atomic.Int64) Resource {
	return Resource{Path: path, Handler: HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message, _ *Session) {
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(strconv.FormatInt(n.Add(1), 10))))
	})}
}

// get is a confirmable GET of path as raw bytes, with message ID mid.
func get(b *blockConn, path, token string, mid int32) message.Message {
	b.t.Helper()
	buf := make([]byte, 64)
	opts, _, err := make(message.Options, 0, 2).SetPath(buf, path)
	if err != nil {
		b.t.Fatal(err)
	}
	return message.Message{Token: message.Token(token), Options: opts, Code: codes.GET, Type: message.Confirmable, MessageID: mid}
}

// exchange sends a confirmable req until it is answered, as a client
// does (RFC 7252 §4.2, ACK_TIMEOUT 2 s; without the backoff), at most five
// times. go-coap drops, unanswered, a retransmission that comes while the
// first is processed on the request loop, the answer already sent.
func (b *blockConn) exchange(req message.Message) *message.Message {
	b.t.Helper()
	for range 5 {
		b.write(req)
		if res := b.readWithin(string(req.Token), 2*time.Second); res != nil {
			return res
		}
	}
	return nil
}

// TestRetransmissionAnsweredFromCache (RFC 7252 §4.5): a confirmable
// request sent again with its message ID gets the first answer again, its
// handler not run twice; a new message ID is a new request.
func TestRetransmissionAnsweredFromCache(t *testing.T) {
	var n atomic.Int64
	e := newEnv(t, func(o *Options) { o.Resources = append(o.Resources, counted("/count", &n)) })
	_, cert := e.thing("DEDUP-1")
	b := e.rawDTLS(t, cert)
	req := get(b, "/count", "t", 100)
	for try := range 3 {
		res := b.exchange(req)
		if res == nil || res.Type != message.Acknowledgement || res.MessageID != 100 || string(res.Payload) != "1" {
			t.Fatalf("sent %d times: %+v; want the first answer, piggybacked on message ID 100", try+1, res)
		}
	}
	if res := b.exchange(get(b, "/count", "n", 101)); res == nil || string(res.Payload) != "2" {
		t.Fatalf("a new message ID: %+v; want the handler run again", res)
	}
}
