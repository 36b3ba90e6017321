package mqtt

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Attacks on reading a packet: the read buffer grows with the bytes that
// arrive, and a client without keep-alive finishes a packet it began
// within Config.PacketWait.

// rawListen serves s on a listener whose connections are not nowReaders:
// their reader waits in Read, with the read deadline, never parked. The
// CONNECT has a second, as newServer's.
func (s *server) rawListen(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.SetDeadline(time.Now().Add(time.Second))
			go s.ServeConn(struct{ net.Conn }{nc}) // hides nothing it has: no ReadNow
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// tlsListen serves s over TLS and returns a dialer for it.
func (s *server) tlsListen(t *testing.T) func() net.Conn {
	cert, der := selfSigned(t)
	addr := s.listen(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	roots.AddCert(leaf)
	return func() net.Conn {
		nc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
}

// transports dials s plainly (parked when idle), without a nowReader
// (never parked) and over TLS (parked when idle).
func transports(t *testing.T, s *server) map[string]func() net.Conn {
	tcp := func(addr string) func() net.Conn {
		return func() net.Conn {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			return nc
		}
	}
	return map[string]func() net.Conn{
		"plain": tcp(s.addr),
		"raw":   tcp(s.rawListen(t)),
		"tls":   s.tlsListen(t),
	}
}

func connectNoKeepAlive(t *testing.T, dial func() net.Conn, v packet.Version, id string) *mqtttest.Conn {
	t.Helper()
	c := mqtttest.New(t, dial(), v)
	c.Connect(&packet.Connect{CleanStart: true, ClientID: id,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")})
	return c
}

// endedForPacketWait expects the end of a connection for a packet not
// completed (MQTT 5: DISCONNECT 0x80 saying so; 3.1.1: closed).
func endedForPacketWait(t *testing.T, c *mqtttest.Conn) {
	t.Helper()
	if c.V == packet.V5 {
		if d := c.Disconnected(packet.UnspecifiedError); !strings.Contains(d.Props.ReasonString, "not completed") {
			t.Errorf("reason %q", d.Props.ReasonString)
		}
	} else {
		c.Closed()
	}
}

// begun is a PUBLISH announcing 256,000 bytes, begun.
var begun = []byte{0x30, 0x80, 0xD0, 0x0F, 0x00, 0x01, 't'}

// TestAttackTrickleDoesNotExtendPacketWait: a client without keep-alive
// that trickles a byte at a time into a packet it began is ended at
// PacketWait after the packet began, not after its last byte: parked
// (plain, TLS) or waiting in Read.
func TestAttackTrickleDoesNotExtendPacketWait(t *testing.T) {
	const wait = 400 * time.Millisecond
	s := newServer(t, func(c *Config) { c.PacketWait = wait })
	for name, dial := range transports(t, s) {
		for _, v := range []packet.Version{packet.V5, packet.V311} {
			t.Run(fmt.Sprint(name, v), func(t *testing.T) {
				t.Parallel()
				c := connectNoKeepAlive(t, dial, v, fmt.Sprint("trickle-", name, v))
				start := time.Now()
				c.Write(begun)
				stop := trickle(c, wait/8, 64) // 8 waits' worth, far less than the packet
				endedForPacketWait(t, c)
				took := time.Since(start)
				stop()
				if took < wait || took > 6*wait { // the trickle goes on for 8 waits
					t.Errorf("a trickled packet ended after %v; want its packet wait, %v, from its first byte", took, wait)
				}
			})
		}
	}
}

// TestAttackPacketWaitRenewedPerPacket: each packet has a wait of its
// own: one completed late, with the first byte of the next in the same
// segment (a pipelined whole packet plus part of the next), gives the
// next a wait from then, not the rest of its own.
func TestAttackPacketWaitRenewedPerPacket(t *testing.T) {
	const wait = 2 * time.Second // the margins (0.4 of it) must outlast a loaded machine's delays
	s := newServer(t, func(c *Config) { c.PacketWait = wait })
	for name, dial := range transports(t, s) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := connectNoKeepAlive(t, dial, packet.V5, "per-"+name)
			c.Write([]byte{0xC0}) // PINGREQ, begun
			time.Sleep(wait * 6 / 10)
			c.Write([]byte{0x00, 0xC0}) // completed, and the next begun
			if got := c.Read(); got.Type() != packet.PINGRESP {
				t.Fatalf("%+v", got)
			}
			time.Sleep(wait * 6 / 10) // past the first packet's wait, within the second's
			c.Write([]byte{0x00})
			if got := c.Read(); got.Type() != packet.PINGRESP {
				t.Fatalf("the second packet was held to the first one's wait: %+v", got)
			}
		})
	}
}

// TestAttackPacketWaitAfterWholePacket: the part of a packet left in the
// buffer after a whole one (a pipelined segment), even a lone first byte
// or a header cut in its length, is bounded by the wait as a packet begun
// on an idle connection is.
func TestAttackPacketWaitAfterWholePacket(t *testing.T) {
	const wait = 300 * time.Millisecond
	s := newServer(t, func(c *Config) { c.PacketWait = wait })
	for name, dial := range transports(t, s) {
		for i, tail := range [][]byte{{0x30}, {0x30, 0x80}, begun} {
			t.Run(fmt.Sprint(name, i), func(t *testing.T) {
				t.Parallel()
				c := connectNoKeepAlive(t, dial, packet.V5, fmt.Sprint("tail-", name, i))
				start := time.Now()
				c.Write(append([]byte{0xC0, 0x00}, tail...)) // a whole PINGREQ, then part of a PUBLISH
				if got := c.Read(); got.Type() != packet.PINGRESP {
					t.Fatalf("%+v", got)
				}
				endedForPacketWait(t, c)
				if took := time.Since(start); took < wait {
					t.Errorf("ended after %v; want %v", took, wait)
				}
			})
		}
	}
}

// TestAttackSlowConnectHasTheListenersDeadline: before the CONNECT is
// accepted the listener's deadline (a second here) bounds it, not
// PacketWait (a minute here) nor the keep-alive the CONNECT asks for: a
// CONNECT trickled in, or an enhanced authentication whose AUTH never
// comes from a client asking for a keep-alive of 18 hours.
func TestAttackSlowConnectHasTheListenersDeadline(t *testing.T) {
	s := newServer(t, func(c *Config) { c.PacketWait = time.Minute })
	connect, _ := packet.Append(nil, packet.V5, &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "slow",
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")})
	for name, dial := range transports(t, s) {
		t.Run(name+"-trickled", func(t *testing.T) {
			t.Parallel()
			c := mqtttest.New(t, dial(), packet.V5)
			start := time.Now()
			for _, b := range connect[:len(connect)-1] {
				if _, err := c.NC.Write([]byte{b}); err != nil || time.Since(start) > 4*time.Second {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			c.Closed()
			if took := time.Since(start); took > 4*time.Second {
				t.Errorf("a trickled CONNECT held the connection %v", took)
			}
		})
		t.Run(name+"-challenge", func(t *testing.T) {
			t.Parallel()
			c := mqtttest.New(t, dial(), packet.V5)
			pk := &packet.Connect{Version: packet.V5, CleanStart: true, ClientID: "challenged-" + name, KeepAlive: 45000}
			pk.Props.AuthMethod = challengeMethod
			pk.Props.Set(packet.PropAuthMethod)
			start := time.Now()
			c.Send(pk)
			expectChallenge(t, c)
			// A refusing CONNACK, at most, then the end (ReadRaw waits 5 s
			// at most).
			b, err := c.ReadRaw()
			if err == nil {
				if len(b) < 4 || packet.Type(b[0]>>4) != packet.CONNACK || b[3] < 0x80 {
					t.Fatalf("got % x; want a refusing CONNACK or the end", b)
				}
				_, err = c.ReadRaw()
			}
			if err == nil {
				t.Error("the connection went on")
			} else if took := time.Since(start); took > 4*time.Second {
				t.Errorf("an unanswered challenge held the CONNECT %v: %v", took, err)
			}
		})
	}
}

// TestAttackMaximumPacketIntact: a PUBLISH announcing the Maximum
// Packet Size, its header alone first, then the rest in pieces that fill
// the growing buffer exactly, or in one flood, arrives intact.
func TestAttackMaximumPacketIntact(t *testing.T) {
	s := newServer(t, nil)
	sub, _ := s.connect(t, packet.V5, "sub", nil)
	sub.Subscribe(1, []packet.ReasonCode{0}, mqtttest.Sub("big/#", 0))
	pub := &packet.Publish{Topic: "big/1"}
	pub.Payload = make([]byte, DefaultMaxPacketSize-packet.Size(packet.V5, pub)-2)
	for i := range pub.Payload {
		pub.Payload[i] = byte(i*7 + i>>8)
	}
	raw, err := packet.Append(nil, packet.V5, pub)
	if err != nil {
		t.Fatal(err)
	}
	for len(raw) < DefaultMaxPacketSize { // the remaining length's width
		pub.Payload = append(pub.Payload, 'z')
		raw, _ = packet.Append(nil, packet.V5, pub)
	}
	if len(raw) != DefaultMaxPacketSize {
		t.Fatalf("a packet of %d bytes", len(raw))
	}
	for _, pieces := range []string{"flood", "doubling"} {
		for _, keepAlive := range []uint16{0, 30} {
			c, _ := s.connect(t, packet.V5, "pub", func(pk *packet.Connect) { pk.KeepAlive = keepAlive })
			c.Write(raw[:5])
			time.Sleep(50 * time.Millisecond) // the header alone, read
			if pieces == "flood" {
				c.Write(raw[5:])
			} else {
				for at, n := 5, 16; at < len(raw); n *= 2 {
					end := min(len(raw), n)
					c.Write(raw[at:end])
					at = end
					time.Sleep(5 * time.Millisecond)
				}
			}
			got := sub.Publication()
			if got.Topic != pub.Topic || !bytes.Equal(got.Payload, pub.Payload) {
				t.Fatalf("%s, keep-alive %d: got %s with %d bytes, want the packet intact", pieces, keepAlive, got.Topic, len(got.Payload))
			}
			c.Send(&packet.Ping{})
			if got := c.Read(); got.Type() != packet.PINGRESP {
				t.Fatalf("%s: after the packet: %+v", pieces, got)
			}
			c.NC.Close()
		}
	}
}
