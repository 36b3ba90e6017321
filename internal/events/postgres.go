package events

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL NOTIFY channel that carries events between nodes.
const Channel = "thingid_events"

// maxPayload is PostgreSQL's limit on a NOTIFY payload: it must be shorter
// than 8000 bytes in the default configuration (docs: NOTIFY).
const maxPayload = 8000

const (
	queueSize    = 1024            // events waiting to be sent before new ones are dropped
	sendAttempts = 3               // tries per event before it is dropped
	flushTimeout = 2 * time.Second // how long Close waits for queued events to go out
	minBackoff   = 50 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// ErrTooLarge says an event does not fit in a NOTIFY payload.
var ErrTooLarge = errors.New("event too large for a PostgreSQL NOTIFY payload (8000 bytes)")

// Relay carries events between the nodes that share one PostgreSQL database:
// every event published on the local bus is sent with pg_notify on Channel,
// and events from other nodes are published on the local bus (and not sent
// again, so there are no loops).
//
// The guarantee is NOTIFY's: an event reaches only the nodes listening when it
// is committed. A node that is down, or reconnecting after a dropped
// connection, misses the events of that time, and an event still queued when
// the database is unreachable for long is dropped. Events are prompts to react
// at once, not a log: consumers that need durability read the store, as the
// admin APIs and token introspection already do.
type Relay struct {
	bus    *Bus
	dsn    string
	log    *slog.Logger
	node   string // random per relay: tells our own notifications from others'
	queue  chan []byte
	cancel context.CancelFunc
	unsub  func()

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: flush the queue, then stop
	done      chan struct{} // closed when every goroutine has returned
}

// wire is the NOTIFY payload: an event and the node that published it.
type wire struct {
	Node    string            `json:"node"`
	Type    string            `json:"type"`
	Kind    string            `json:"kind,omitempty"`
	ID      string            `json:"id,omitempty"`
	Actor   string            `json:"actor,omitempty"`
	Time    time.Time         `json:"time"`
	Details map[string]string `json:"details,omitempty"`
}

// StartRelay listens on Channel over a dedicated connection to dsn and starts
// relaying bus's events; it returns once the node is listening, so events
// published by other nodes after that reach bus. The relay reconnects with
// backoff when a connection drops and runs until ctx ends or Close is called.
func StartRelay(ctx context.Context, bus *Bus, dsn string, log *slog.Logger) (*Relay, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := listen(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("events: listen on PostgreSQL channel %s: %w", Channel, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := newRelay(bus, log)
	r.dsn, r.cancel = dsn, cancel
	r.unsub = bus.subscribeLocal(r.enqueue)
	var wg sync.WaitGroup
	wg.Go(func() { r.receive(ctx, conn) })
	wg.Go(func() { r.send(ctx) })
	go func() {
		wg.Wait()
		r.unsub()
		close(r.done)
	}()
	return r, nil
}

func newRelay(bus *Bus, log *slog.Logger) *Relay {
	return &Relay{
		bus:     bus,
		log:     log.With("component", "events", "channel", Channel),
		node:    rand.Text(),
		queue:   make(chan []byte, queueSize),
		cancel:  func() {},
		unsub:   func() {},
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Close stops relaying: it tries for a short while to send the events already
// published (so a CLI command's changes reach the serving nodes), then closes
// the connections and waits for the relay's goroutines.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.unsub()
		close(r.closing)
	})
	<-r.done
}

// encode returns e's NOTIFY payload, or ErrTooLarge.
func encode(node string, e Event) ([]byte, error) {
	b, err := json.Marshal(wire{Node: node, Type: e.Type, Kind: e.Kind, ID: e.ID, Actor: e.Actor, Time: e.Time, Details: e.Details})
	if err != nil {
		return nil, err
	}
	if len(b) >= maxPayload {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(b))
	}
	return b, nil
}

// enqueue runs inside Bus.Publish: it must not block, so a full queue drops.
func (r *Relay) enqueue(e Event) {
	b, err := encode(r.node, e)
	if err != nil {
		r.log.Warn("event not sent to other nodes", "type", e.Type, "kind", e.Kind, "id", e.ID, "err", err)
		return
	}
	select {
	case r.queue <- b:
	default:
		r.log.Warn("event not sent to other nodes: queue full", "type", e.Type, "kind", e.Kind, "id", e.ID)
	}
}

// send sends queued events with pg_notify on a connection of its own (the
// listening one is busy waiting).
func (r *Relay) send(ctx context.Context) {
	var conn *pgx.Conn
	defer func() { closeConn(conn) }()
	for {
		select {
		case p := <-r.queue:
			conn = r.notify(ctx, conn, p)
		case <-r.closing:
			fctx, cancel := context.WithTimeout(ctx, flushTimeout)
			defer cancel()
			for {
				select {
				case p := <-r.queue:
					conn = r.notify(fctx, conn, p)
				default:
					r.cancel() // stops receive
					return
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// notify sends one payload, reconnecting as needed, and returns the connection
// to use next (nil if there is none).
func (r *Relay) notify(ctx context.Context, conn *pgx.Conn, payload []byte) *pgx.Conn {
	var err error
	for attempt := range sendAttempts {
		if conn == nil {
			if conn, err = r.connect(ctx, pgx.Connect); err != nil {
				break // ctx ended
			}
		}
		if _, err = conn.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, string(payload)); err == nil {
			return conn
		}
		closeConn(conn)
		conn = nil
		if ctx.Err() != nil {
			break
		}
		r.log.Warn("send event to other nodes failed, retrying", "attempt", attempt+1, "err", err)
	}
	r.log.Error("event not sent to other nodes", "err", err, "payload", string(payload))
	return conn
}

// receive publishes other nodes' events on the bus until ctx ends.
func (r *Relay) receive(ctx context.Context, conn *pgx.Conn) {
	defer func() { closeConn(conn) }()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			// Events published while we reconnect are missed: see Relay.
			r.log.Warn("lost PostgreSQL listening connection, reconnecting", "err", err)
			if conn, err = r.connect(ctx, listen); err != nil {
				return // ctx ended
			}
			r.log.Info("listening again on PostgreSQL")
			continue
		}
		r.deliver(n.Payload)
	}
}

// deliver publishes a payload from another node on the local bus.
func (r *Relay) deliver(payload string) {
	var w wire
	if err := json.Unmarshal([]byte(payload), &w); err != nil || w.Node == "" || w.Type == "" {
		r.log.Warn("ignoring malformed notification", "err", err, "payload", payload)
		return
	}
	if w.Node == r.node {
		return // our own, already delivered locally by Publish
	}
	r.bus.publish(Event{Type: w.Type, Kind: w.Kind, ID: w.ID, Actor: w.Actor, Time: w.Time, Details: w.Details}, false)
}

// connect calls dial until it succeeds, waiting longer after each failure; it
// fails only when ctx ends.
func (r *Relay) connect(ctx context.Context, dial func(context.Context, string) (*pgx.Conn, error)) (*pgx.Conn, error) {
	wait := minBackoff
	for {
		conn, err := dial(ctx, r.dsn)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.log.Warn("connect to PostgreSQL failed", "retryIn", wait.String(), "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(2*wait, maxBackoff)
	}
}

// listen opens a connection that listens on Channel.
func listen(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil { // a constant, not input
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
