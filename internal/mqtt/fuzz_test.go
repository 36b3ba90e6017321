package mqtt

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

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
