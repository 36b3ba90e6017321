// Package mqttload is the load generator behind `thingid bench mqtt`: it
// opens many MQTT 5 connections to any broker and measures connect rate,
// memory per held connection and publish throughput with loss counted. It
// speaks MQTT through paho.golang's packet codec on raw connections, so that
// a held connection costs the generator a socket and nothing else.
package mqttload

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// Credential is what one client sends in CONNECT.
type Credential struct {
	ClientID string
	Username string
	Password string
}

// Target is a broker and how to log in to it.
type Target struct {
	Address string
	// SubscriberAddress is where subscribers connect, when not to Address
	// (another node of a cluster, or a bridged broker).
	SubscriberAddress string
	TLS               *tls.Config // nil: plain TCP
	// SourceIPs are the local addresses connections come from, in turn: each
	// gives its own ~28,000 ephemeral ports.
	SourceIPs []net.IP
	// Client is the credential of client i (held connections and publishers);
	// Subscriber that of subscriber j.
	Client     func(i int) Credential
	Subscriber func(j int) Credential
}

// dial connects, logs in and returns the connection ready for packets.
func (t *Target) dial(ctx context.Context, address string, i int, c Credential, keepAlive uint16) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if len(t.SourceIPs) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: t.SourceIPs[i%len(t.SourceIPs)]}
	}
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if t.TLS != nil {
		tc := tls.Client(conn, t.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tc
	}
	cp := packets.NewControlPacket(packets.CONNECT)
	cc := cp.Content.(*packets.Connect)
	cc.ClientID, cc.KeepAlive, cc.CleanStart = c.ClientID, keepAlive, true
	if c.Username != "" {
		cc.Username, cc.UsernameFlag = c.Username, true
	}
	if c.Password != "" {
		cc.Password, cc.PasswordFlag = []byte(c.Password), true
	}
	if _, err := cp.WriteTo(conn); err != nil {
		conn.Close()
		return nil, err
	}
	ack, err := packets.ReadPacket(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	ca, ok := ack.Content.(*packets.Connack)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("got %s instead of CONNACK", ack.PacketType())
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		reason := ""
		if ca.Properties != nil {
			reason = ca.Properties.ReasonString
		}
		return nil, fmt.Errorf("CONNACK refused: %#x %s", ca.ReasonCode, reason)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// ConnectResult is the outcome of Connect.
type ConnectResult struct {
	Opened   int
	Failed   int
	FirstErr error
	Elapsed  time.Duration
	conns    []net.Conn
}

// Rate is CONNECTs (with CONNACK) per second.
func (r *ConnectResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Opened) / r.Elapsed.Seconds()
}

// Close closes the held connections.
func (r *ConnectResult) Close() {
	var wg sync.WaitGroup
	for _, c := range r.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
	r.conns = nil
}

// Connect opens n connections with `workers` in parallel and keeps them
// open (keep-alive 0: the broker sets no deadline, the generator sends
// nothing). progress is called with the number done so far.
func Connect(ctx context.Context, t *Target, n, workers int, progress func(int)) *ConnectResult {
	res := &ConnectResult{conns: make([]net.Conn, 0, n)}
	var next, done atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				conn, err := t.dial(ctx, t.Address, i, t.Client(i), 0)
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
				} else {
					res.conns = append(res.conns, conn)
				}
				mu.Unlock()
				if progress != nil {
					progress(int(done.Add(1)))
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Opened = len(res.conns)
	return res
}

// RSS is the resident memory of process pid in bytes (Linux /proc).
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

// ThroughputOptions describe a publish run.
type ThroughputOptions struct {
	Publishers  int
	Subscribers int
	QoS         byte
	Duration    time.Duration
	Payload     int // bytes, at least 24 (publisher index, sequence number, time sent)
	// Rate is the messages per second of each publisher; 0 publishes as
	// fast as the broker takes them.
	Rate int
	// Window is how many QoS 1 messages a publisher keeps unacknowledged.
	Window int
	// Topic of publisher i: Topic with "%s" replaced by its client id.
	Topic string
	// Filter every subscriber subscribes to.
	Filter string
}

// ThroughputResult counts what was sent and received.
type ThroughputResult struct {
	Published  int64 // PUBLISH packets written
	Acked      int64 // QoS 1: PUBACKs with success
	Received   int64 // PUBLISH packets received by all subscribers
	Duplicates int64
	Expected   int64 // what subscribers should have received (QoS 1: acked × subscribers)
	Lost       int64 // QoS 1: expected - unique received
	Elapsed    time.Duration
	// Latency is from the publisher's write to the subscriber's read.
	Latency latencies
}

// Rate is messages received per second by all subscribers together.
func (r *ThroughputResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

// subscriber reads and acknowledges messages, counting them per publisher.
type subscriber struct {
	conn     net.Conn
	received atomic.Int64
	dups     atomic.Int64
	last     []int64 // per publisher: the highest sequence number seen
	latency  latencies
	done     chan struct{} // closed when run returns
}

func (s *subscriber) run(qos byte) {
	defer close(s.done)
	r := bufio.NewReaderSize(s.conn, 64<<10)
	w := bufio.NewWriterSize(s.conn, 16<<10)
	for {
		cp, err := packets.ReadPacket(r)
		if err != nil {
			return
		}
		p, ok := cp.Content.(*packets.Publish)
		if !ok {
			continue
		}
		if len(p.Payload) >= 24 {
			s.latency.add(time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(p.Payload[16:])))))
			pub, seq := int(binary.BigEndian.Uint64(p.Payload)), int64(binary.BigEndian.Uint64(p.Payload[8:]))
			if pub < len(s.last) {
				if seq <= s.last[pub] {
					s.dups.Add(1)
				} else {
					s.last[pub] = seq
				}
			}
		}
		s.received.Add(1)
		if qos > 0 && p.QoS > 0 {
			ack := packets.NewControlPacket(packets.PUBACK)
			ack.Content.(*packets.Puback).PacketID = p.PacketID
			ack.WriteTo(w)
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	}
}

// Throughput connects subscribers and publishers, publishes for
// o.Duration, waits for deliveries to settle and counts. progress gets the
// elapsed fraction and the messages received so far.
func Throughput(ctx context.Context, t *Target, o ThroughputOptions, progress func(elapsed time.Duration, received int64)) (*ThroughputResult, error) {
	o.Payload = max(o.Payload, 24)
	o.Window = max(o.Window, 1)
	subs := make([]*subscriber, o.Subscribers)
	defer func() {
		for _, s := range subs {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	for j := range subs {
		addr := t.SubscriberAddress
		if addr == "" {
			addr = t.Address
		}
		conn, err := t.dial(ctx, addr, j, t.Subscriber(j), 0)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", j, err)
		}
		sp := packets.NewControlPacket(packets.SUBSCRIBE)
		sc := sp.Content.(*packets.Subscribe)
		sc.PacketID = 1
		sc.Subscriptions = []packets.SubOptions{{Topic: o.Filter, QoS: o.QoS}}
		sp.WriteTo(conn)
		ack, err := packets.ReadPacket(conn)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("subscriber %d: %w", j, err)
		}
		if sa, ok := ack.Content.(*packets.Suback); !ok || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
			conn.Close()
			return nil, fmt.Errorf("subscriber %d: subscription to %s refused", j, o.Filter)
		}
		subs[j] = &subscriber{conn: conn, last: make([]int64, o.Publishers), done: make(chan struct{})}
		for i := range subs[j].last {
			subs[j].last[i] = -1
		}
		go subs[j].run(o.QoS)
	}
	pubs := make([]net.Conn, o.Publishers)
	defer func() {
		for _, c := range pubs {
			if c != nil {
				c.Close()
			}
		}
	}()
	topics := make([]string, o.Publishers)
	for i := range pubs {
		cred := t.Client(i)
		conn, err := t.dial(ctx, t.Address, i+o.Subscribers, cred, 0)
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		pubs[i] = conn
		topics[i] = strings.ReplaceAll(o.Topic, "%s", cred.ClientID)
	}

	res := &ThroughputResult{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for i, conn := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			published, acked := publish(conn, i, topics[i], o, stop)
			atomic.AddInt64(&res.Published, published)
			atomic.AddInt64(&res.Acked, acked)
		}()
	}
	received := func() (n int64) {
		for _, s := range subs {
			n += s.received.Load()
		}
		return n
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(o.Duration)
run:
	for {
		select {
		case <-ctx.Done():
			break run
		case <-deadline:
			break run
		case <-tick.C:
			if progress != nil {
				progress(time.Since(start), received())
			}
		}
	}
	close(stop)
	wg.Wait()
	res.Elapsed = time.Since(start)
	// Deliveries still on their way: wait until the count stops moving.
	for prev, still := received(), 0; still < 5 && ctx.Err() == nil; {
		time.Sleep(200 * time.Millisecond)
		if n := received(); n == prev {
			still++
		} else {
			prev, still = n, 0
		}
	}
	for _, s := range subs {
		s.conn.Close()
		<-s.done // its reader has stopped: its histogram is ours
	}
	res.Received = received()
	var unique int64
	for _, s := range subs {
		res.Latency.merge(&s.latency)
		res.Duplicates += s.dups.Load()
		unique += s.received.Load() - s.dups.Load()
	}
	if o.QoS > 0 {
		res.Expected = res.Acked * int64(o.Subscribers)
		res.Lost = max(res.Expected-unique, 0)
	} else {
		res.Expected = res.Published * int64(o.Subscribers)
	}
	return res, nil
}

// publish sends messages until stop; with QoS 1 it keeps o.Window
// unacknowledged and counts the PUBACKs.
func publish(conn net.Conn, idx int, topic string, o ThroughputOptions, stop chan struct{}) (published, acked int64) {
	w := bufio.NewWriterSize(conn, 32<<10)
	payload := make([]byte, o.Payload)
	binary.BigEndian.PutUint64(payload, uint64(idx))
	var window chan struct{}
	var ackedN atomic.Int64
	readerDone := make(chan struct{})
	if o.QoS > 0 {
		window = make(chan struct{}, o.Window)
		go func() {
			defer close(readerDone)
			r := bufio.NewReader(conn)
			for {
				cp, err := packets.ReadPacket(r)
				if err != nil {
					return
				}
				if pa, ok := cp.Content.(*packets.Puback); ok {
					if pa.ReasonCode < 0x80 {
						ackedN.Add(1)
					}
					<-window
				}
			}
		}()
	} else {
		close(readerDone)
	}
	var id uint16
	start := time.Now()
	for seq := int64(0); ; seq++ {
		if o.Rate > 0 {
			if wait := time.Until(start.Add(time.Duration(seq) * time.Second / time.Duration(o.Rate))); wait > 0 {
				w.Flush() // what is due has gone before the pause
				select {
				case <-time.After(wait):
				case <-stop:
				}
			}
		}
		select {
		case <-stop:
			w.Flush()
			if o.QoS > 0 {
				// Wait for the outstanding acknowledgements.
				for deadline := time.Now().Add(10 * time.Second); len(window) > 0 && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
			}
			conn.Close()
			<-readerDone
			return published, ackedN.Load()
		default:
		}
		if o.QoS > 0 {
			if w.Buffered() > 0 && len(window) == cap(window) {
				w.Flush() // about to wait for acknowledgements of what is buffered
			}
			select {
			case window <- struct{}{}:
			case <-stop:
				continue
			}
		}
		binary.BigEndian.PutUint64(payload[8:], uint64(seq))
		binary.BigEndian.PutUint64(payload[16:], uint64(time.Now().UnixNano()))
		p := packets.NewControlPacket(packets.PUBLISH)
		pc := p.Content.(*packets.Publish)
		pc.Topic, pc.Payload, pc.QoS = topic, payload, o.QoS
		if o.QoS > 0 {
			id++
			if id == 0 {
				id = 1
			}
			pc.PacketID = id
		}
		if _, err := p.WriteTo(w); err != nil {
			conn.Close()
			<-readerDone
			return published, ackedN.Load()
		}
		published++
		if o.QoS == 0 && w.Buffered() > 16<<10 {
			if w.Flush() != nil {
				return published, ackedN.Load()
			}
		}
	}
}
