package events

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// maxPayload is PostgreSQL's limit on a NOTIFY payload: it must be shorter
// than 8000 bytes in the default configuration (docs: NOTIFY). Both links
// keep to it, so an event travels the same way on either database.
const maxPayload = 8000

const (
	queueSize    = 1024            // events waiting to be sent before new ones are dropped
	maxBatch     = 256             // events sent in one round trip at most
	sendAttempts = 3               // tries per event before it is dropped
	flushTimeout = 2 * time.Second // how long Close waits for queued events to go out
)

// ErrTooLarge says an event does not fit in a relay's payload.
var ErrTooLarge = errors.New("event too large for a relay payload (8000 bytes)")

// Relay carries events between the processes that share one database — the
// nodes of a cluster, and CLI commands working on a running platform's data:
// every event published on the local bus is sent over a link, and events from
// other processes are published on the local bus (and not sent again, so
// there are no loops). The link is PostgreSQL's NOTIFY (StartRelay) or a
// table of recent events in SQLite (StartLogRelay).
//
// Events are prompts to react at once, not a log of record: an event still
// queued when the database is unreachable for long is dropped, and a process
// that is down misses the events of that time. Consumers that need
// durability read the store, as the admin APIs and token introspection do.
type Relay struct {
	bus    *Bus
	log    *slog.Logger
	node   string // random per relay: tells our own payloads from others'
	queue  chan []byte
	link   link
	cancel context.CancelFunc
	unsub  func()

	dropped       atomic.Int64 // events dropped on a full queue, since the start
	droppedLogged atomic.Int64 // when that was last logged (Unix nanoseconds)

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: flush the queue, then stop
	done      chan struct{} // closed when every goroutine has returned
}

// link is how a Relay reaches the other processes.
type link interface {
	// send hands payloads to the other processes, in order, and returns how
	// many it sent before an error.
	send(ctx context.Context, payloads [][]byte) (int, error)
	// receive calls deliver with the payloads of every process, this one's
	// included, until ctx ends, and missed when payloads may have been lost
	// (once delivery works again).
	receive(ctx context.Context, deliver func(payload string), missed func())
	// close releases the link once send and receive have returned.
	close()
}

// wire is a relay's payload: an event and the node that published it.
type wire struct {
	Node    string            `json:"node"`
	Type    string            `json:"type"`
	Kind    string            `json:"kind,omitempty"`
	ID      string            `json:"id,omitempty"`
	Actor   string            `json:"actor,omitempty"`
	Time    time.Time         `json:"time"`
	Details map[string]string `json:"details,omitempty"`
}

func newRelay(bus *Bus, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Relay{
		bus:     bus,
		log:     log.With("component", "events"),
		node:    rand.Text(),
		queue:   make(chan []byte, queueSize),
		cancel:  func() {},
		unsub:   func() {},
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// start relays bus's events over l until ctx ends or Close is called.
func (r *Relay) start(ctx context.Context, l link) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.link = l
	r.unsub = r.bus.subscribeLocal(r.enqueue)
	var wg sync.WaitGroup
	wg.Go(func() { l.receive(ctx, r.deliver, r.missed) })
	wg.Go(func() { r.send(ctx) })
	go func() {
		wg.Wait()
		r.unsub()
		l.close()
		close(r.done)
	}()
}

// Close stops relaying: it tries for a short while to send the events already
// published (so a CLI command's changes reach the serving nodes), then closes
// the link and waits for the relay's goroutines.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.unsub()
		close(r.closing)
	})
	<-r.done
}

// encode returns e's payload, or ErrTooLarge.
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
	if e.Local {
		return
	}
	b, err := encode(r.node, e)
	if err != nil {
		r.log.Warn("event not sent to other nodes", "type", e.Type, "kind", e.Kind, "id", e.ID, "err", err)
		return
	}
	select {
	case r.queue <- b:
	default:
		// A bulk change can publish far more than the queue holds: one line
		// a second says how many were dropped, not one line per event.
		if n := r.dropped.Add(1); n == 1 || time.Since(time.Unix(0, r.droppedLogged.Load())) >= time.Second {
			r.droppedLogged.Store(time.Now().UnixNano())
			r.log.Warn("events not sent to other nodes: queue full", "dropped", n, "type", e.Type, "kind", e.Kind, "id", e.ID)
		}
	}
}

// send sends queued events until Close or the end of ctx, and then what is
// still queued. Every send, the one under way included, runs on a context
// that outlives ctx by flushTimeout: an interrupted CLI command's revocation
// must still reach the servers, and an unreachable database must not hold
// Close for longer.
func (r *Relay) send(ctx context.Context) {
	defer r.cancel() // stops receive
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	ending := make(chan struct{})
	go func() {
		select {
		case <-r.closing:
		case <-ctx.Done():
		}
		close(ending)
		t := time.AfterFunc(flushTimeout, stop)
		<-sctx.Done()
		t.Stop()
	}()
	for {
		select {
		case p := <-r.queue:
			r.sendBatch(sctx, r.drain(p))
		case <-ending:
			for {
				select {
				case p := <-r.queue:
					r.sendBatch(sctx, r.drain(p))
				default:
					return
				}
			}
		}
	}
}

// drain returns first and whatever else is queued, up to maxBatch: a burst
// of events (a bulk import) goes out in few round trips.
func (r *Relay) drain(first []byte) [][]byte {
	batch := [][]byte{first}
	for len(batch) < maxBatch {
		select {
		case p := <-r.queue:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// sendBatch sends payloads, giving the link sendAttempts tries; a payload a
// failed try may have sent already can arrive twice, which consumers allow
// (an event is a prompt to look again, such as "this grant is revoked").
func (r *Relay) sendBatch(ctx context.Context, payloads [][]byte) {
	var err error
	for attempt := range sendAttempts {
		var n int
		n, err = r.link.send(ctx, payloads)
		if payloads = payloads[n:]; err == nil || ctx.Err() != nil {
			break
		}
		r.log.Warn("send events to other nodes failed, retrying", "attempt", attempt+1, "err", err)
	}
	if err != nil {
		r.log.Error("events not sent to other nodes", "count", len(payloads), "err", err)
	}
}

// deliver publishes a payload from another node on the local bus.
// missed tells this node's subscribers to read again what events keep
// current (Resync).
func (r *Relay) missed() {
	r.log.Warn("events of other nodes may have been missed; subscribers read the store again", "event", Resync)
	r.bus.publish(Event{Type: Resync, Local: true}, false)
}

func (r *Relay) deliver(payload string) {
	var w wire
	if err := json.Unmarshal([]byte(payload), &w); err != nil || w.Node == "" || w.Type == "" {
		r.log.Warn("ignoring malformed event payload", "err", err, "payload", payload[:min(len(payload), 200)])
		return
	}
	if w.Node == r.node {
		return // our own, already delivered locally by Publish
	}
	r.bus.publish(Event{Type: w.Type, Kind: w.Kind, ID: w.ID, Actor: w.Actor, Time: w.Time, Details: w.Details}, false)
}
