package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// TestWebSocket serves MQTT over wss (RFC 6455, subprotocol "mqtt") with a
// client certificate, which Auth sees through the connection.
func TestWebSocket(t *testing.T) {
	s := newServer(t, nil)
	var peers int
	s.auth.setOnConnect(func(c *Client) {
		if cs, ok := c.Conn().(interface{ ConnectionState() tls.ConnectionState }); ok {
			peers = len(cs.ConnectionState().PeerCertificates)
		}
	})
	up := &websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.ServeConn(WebSocket(ws))
	}))
	cert, der := selfSigned(t)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert}
	hs.StartTLS()
	defer hs.Close()
	roots := x509.NewCertPool()
	parsed, _ := x509.ParseCertificate(der)
	roots.AddCert(parsed)
	d := websocket.Dialer{Subprotocols: []string{"mqtt"},
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert}}}
	ws, resp, err := d.Dial("wss://localhost:"+hs.URL[strings.LastIndexByte(hs.URL, ':')+1:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Sec-WebSocket-Protocol") != "mqtt" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	c := mqtttest.New(t, WebSocket(ws), packet.V5)
	c.Connect(&packet.Connect{CleanStart: true, ClientID: "ws", PasswordFlag: true, Password: []byte("ok")})
	if peers != 1 {
		t.Fatalf("Auth saw %d client certificates", peers)
	}
	c.Subscribe(1, []packet.ReasonCode{1}, sub("w", 1))
	c.Send(&packet.Publish{QoS: 1, Topic: "w", PacketID: 1, Payload: []byte("over websocket")})
	for range 2 { // the PUBACK and the message, in either order
		if p, ok := c.Read().(*packet.Publish); ok && string(p.Payload) != "over websocket" {
			t.Fatalf("%+v", p)
		}
	}
}
