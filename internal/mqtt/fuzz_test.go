package mqtt

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// FuzzConnection feeds arbitrary bytes to a connection after a valid
// CONNECT of either version: the server never panics, and the connection
// ends once the client goes, whatever it sent.
func FuzzConnection(f *testing.F) {
	for _, seed := range [][]byte{
		{0x30, 0x03, 0x00, 0x01, 't'},
		{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 't', 0x01},
		{0x32, 0x05, 0x00, 0x01, 't', 0x00, 0x01, 0x40, 0x02, 0x00, 0x01},
		{0x34, 0x05, 0x00, 0x01, 't', 0x00, 0x07, 0x62, 0x02, 0x00, 0x07},
		{0xC0, 0x00, 0xE0, 0x00},
		{0xF0, 0x00},
	} {
		f.Add(byte(4), seed)
		f.Add(byte(5), seed)
	}
	f.Fuzz(func(t *testing.T, version byte, in []byte) {
		v := packet.Version(version)
		if v != packet.V311 && v != packet.V5 {
			return
		}
		s, err := New(Config{Auth: &testAuth{open: true, grants: topics.Grants{Allow: []string{"#"}}},
			Log: slog.New(slog.DiscardHandler), MaxPacketSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go s.ServeConn(&closeNotifier{Conn: server, closed: done})
		go io.Copy(io.Discard, client)
		connect, _ := packet.Append(nil, v, &packet.Connect{Version: v, CleanStart: true, ClientID: "f"})
		client.SetWriteDeadline(time.Now().Add(time.Second))
		client.Write(append(connect, in...))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end after the client closed it")
		}
		s.Close()
	})
}

// closeNotifier closes closed when the server closes the connection.
type closeNotifier struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *closeNotifier) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// FuzzAdoptRecord: whatever a session record in a store carries (a
// cluster's bucket is JSON any node wrote), adopting it never panics, and
// a will it keeps is one the server can publish: a topic name and a QoS.
func FuzzAdoptRecord(f *testing.F) {
	f.Add([]byte(`{"ClientID":"dev","Version":5,"Expiry":60000000000,"Will":{"QoS":1,"Topic":"will/dev","Payload":"Z29uZQ=="},"WillDelay":1000000000,"Received":[1,2],"Sending":[3]}`))
	f.Add([]byte(`{"ClientID":"dev","Expiry":1,"Will":{"QoS":7,"Topic":"a/+"}}`))
	f.Add([]byte(`{"ClientID":"","Away":"2000-01-01T00:00:00Z","Will":{"Topic":""},"Received":[0]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r SessionRecord
		if json.Unmarshal(data, &r) != nil {
			return
		}
		s, err := New(Config{Auth: &testAuth{grants: topics.Grants{Allow: []string{"#"}}}, Log: slog.New(slog.DiscardHandler), Store: nopStore{}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cl, _ := s.revive(&r, nil, nil)
		if cl != nil && cl.will != nil && (cl.will.QoS > 2 || !topic.ValidName(cl.will.Topic)) {
			t.Fatalf("kept the will %+v", cl.will)
		}
		s.Adopt(&r, nil)
	})
}

// nopStore stores nothing.
type nopStore struct{}

func (nopStore) Load() (*Snapshot, error)                               { return &Snapshot{}, nil }
func (nopStore) PutSession(*SessionRecord, []topics.Subscription) error { return nil }
func (nopStore) DeleteSubscriptions(string, []string) error             { return nil }
func (nopStore) DeleteSession(string) error                             { return nil }
func (nopStore) PutMessages([]QueuedMessage) error                      { return nil }
func (nopStore) DeleteMessage(string, uint64) error                     { return nil }
func (nopStore) PutRetained(*Message) error                             { return nil }
func (nopStore) DeleteRetained(string) error                            { return nil }
