package server

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/config"
)

// listening returns the ports of the TCP sockets this process listens on.
func listening(t *testing.T) map[int]bool {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // the heading
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			port, _ := strconv.ParseUint(hexPort, 16, 16)
			ports[int(port)] = true
		}
		f.Close()
	}
	return ports
}

// Every listener the server opens (found by the process's listening sockets,
// not by a list that could forget one) reads the PROXY protocol through
// netlimit: a trusted proxy's connection without a header is closed without
// an answer and counted for that listener, and one with a header is the
// client's.
func TestEveryListenerReadsTheProxyHeader(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the listening sockets from /proc")
	}
	before := listening(t)
	r := serve(t, func(c *config.Config) {
		c.Connections.ProxyProtocol.Trusted = []string{"127.0.0.2"}
		c.MQTT.TCP.Enabled, c.MQTT.TCP.Address = true, "127.0.0.1:0"
		c.MQTT.WebSocket.Enabled, c.MQTT.WebSocket.Address, c.MQTT.WebSocket.TLS = true, "127.0.0.1:0", true
	})
	var opened []int
	for p := range listening(t) {
		if !before[p] {
			opened = append(opened, p)
		}
	}
	// HTTPS, the gateway, MQTT over TLS, TCP and WebSocket.
	if len(opened) != 5 {
		t.Fatalf("the server listens on %d new ports %v, want 5", len(opened), opened)
	}
	proxy := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for _, port := range opened {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		c, err := proxy.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("\x16\x03\x01\x00\x05hello, no header"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := io.ReadAll(c); len(b) > 0 || isTimeout(err) {
			t.Errorf("port %d: a trusted proxy's connection without a header got %q, %v; want it closed", port, b, err)
		}
		c.Close()
	}
	_, metrics := r.get(t, "/metrics", nil)
	refusals := regexp.MustCompile(`thingid_connections_refused_total\{listener="([^"]+)",reason="proxy_header"\} 1\n`).FindAllStringSubmatch(metrics, -1)
	var listeners []string
	for _, m := range refusals {
		listeners = append(listeners, m[1])
	}
	if len(listeners) != len(opened) {
		t.Errorf("header refusals counted on %v, want one on each of the %d listeners", listeners, len(opened))
	}

	// With a header, the HTTPS listener serves the client it names.
	c, err := proxy.Dial("tcp", strings.TrimPrefix(r.base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	header := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0, 12, 192, 0, 2, 7, 127, 0, 0, 1)
	header = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(header, 4711), 443)
	c.Write(header)
	tc := tls.Client(c, r.client.Transport.(*http.Transport).TLSClientConfig.Clone())
	tc.Write([]byte("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz through a PROXY header: %v %v", resp, err)
	}
	resp.Body.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
