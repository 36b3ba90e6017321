package mqtt

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/gorilla/websocket"
)

// WebSocket is an MQTT connection over an upgraded WebSocket connection
// (MQTT 5 §6, RFC 6455 with the "mqtt" subprotocol), for ServeConn and for
// clients: MQTT travels in binary messages, a packet may span messages and
// a message may hold several packets. Addresses, deadlines and the TLS
// state (client certificates) are the underlying connection's.
func WebSocket(ws *websocket.Conn) net.Conn {
	return &wsConn{Conn: ws.UnderlyingConn(), ws: ws}
}

type wsConn struct {
	net.Conn
	ws  *websocket.Conn
	r   io.Reader // the message being read
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("mqtt over websocket: text frame (MQTT 5 §6: binary only)")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ConnectionState is the TLS state of a wss connection.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}
