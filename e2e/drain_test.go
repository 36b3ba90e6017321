package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// SIGTERM drains a node: /readyz answers 503 while every listener still
// serves for http.drainDelay, then new connections are refused, MQTT 5
// clients are told the server is shutting down (0x8B), and the requests in
// flight all finish before the process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	home, addr, mqttAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	in := start(t, home, addr, "THINGID_HTTP_DRAINDELAY=2s", "THINGID_HTTP_SHUTDOWNTIMEOUT=1m",
		"THINGID_MQTT_TLS_ADDRESS="+mqttAddr, "THINGID_MQTT_TLS_ANONYMOUS=true")
	password := in.adminPassword(t)
	tlsConfig := in.client.Transport.(*http.Transport).TLSClientConfig

	// An MQTT 5 client, connected.
	conn, err := tls.Dial("tcp", mqttAddr, &tls.Config{RootCAs: tlsConfig.RootCAs, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	told := make(chan *paho.Disconnect, 1)
	mq := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnServerDisconnect: func(d *paho.Disconnect) { told <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := mq.Connect(ctx, &paho.Connect{ClientID: "drain-watcher", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("MQTT 5 connect: %v", err)
	}

	// Requests in flight: SCIM creates whose bodies are half sent when the
	// node is told to stop, and the rest only once it refuses connections.
	const inFlight = 4
	finish := make(chan struct{})
	sent := make(chan struct{}, inFlight)
	results := make(chan string, inFlight)
	for i := range inFlight {
		go func() {
			body, _ := json.Marshal(map[string]any{"schemas": []string{userSchema}, "userName": fmt.Sprintf("in-flight-%d", i)})
			pr, pw := io.Pipe()
			go func() {
				pw.Write(body[:len(body)/2])
				sent <- struct{}{}
				<-finish
				pw.Write(body[len(body)/2:])
				pw.Close()
			}()
			req, _ := http.NewRequestWithContext(ctx, "POST", in.url("/scim/v2/Users"), pr)
			req.ContentLength = int64(len(body))
			req.SetBasicAuth("admin", password)
			req.Header.Set("Content-Type", "application/scim+json")
			resp, err := in.client.Do(req)
			if err != nil {
				results <- err.Error()
				return
			}
			resp.Body.Close()
			results <- resp.Status
		}()
	}
	for range inFlight {
		<-sent
	}
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// New connections: /readyz says 503 draining, then connections are refused.
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
	var drained bool
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the node still accepts connections a minute after SIGTERM (drained: %v)", drained)
		}
		resp, err := fresh.Get(in.url("/readyz"))
		if err != nil {
			// Refused, or (a connection the kernel queued in the instant the
			// listener closed) reset or closed unanswered, once draining was seen.
			closed := drained && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
			if !errors.Is(err, syscall.ECONNREFUSED) && !closed {
				t.Fatalf("after SIGTERM, /readyz: %v, want 503 and then a refused connection\n%s", err, in.out)
			}
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "draining"):
			drained = true
		case resp.StatusCode == http.StatusOK && !drained:
			// SIGTERM not handled yet
		default:
			t.Fatalf("after SIGTERM, /readyz: %d %s", resp.StatusCode, b)
		}
	}
	if !drained {
		t.Error("connections were refused without /readyz answering 503 first")
	}
	if _, err := net.Dial("tcp", mqttAddr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the MQTT listener after the drain: %v, want connection refused", err)
	}
	select {
	case d := <-told:
		if d.ReasonCode != 0x8B {
			t.Errorf("the MQTT 5 client was told 0x%02X, want 0x8B (server shutting down)", d.ReasonCode)
		}
	case <-time.After(30 * time.Second):
		t.Error("the MQTT 5 client was not told the server is shutting down")
	}

	close(finish)
	for range inFlight {
		if got := <-results; got != "201 Created" {
			t.Errorf("a request in flight at SIGTERM: %s, want 201 Created", got)
		}
	}
	if err := in.cmd.Wait(); err != nil {
		t.Errorf("thingid after SIGTERM: %v, want exit status 0; log:\n%s", err, in.out)
	}
}
