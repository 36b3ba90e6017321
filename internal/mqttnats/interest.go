package mqttnats

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/thingid/thingid/internal/mqtt"
)

// A node subscribes on NATS only to what its own subscriptions (not
// shared: those are queue groups, Router.Shared) need: each filter with
// subscribers here, sessions' online or away and taps', adds the subjects
// FilterSubjects gives it, each subscribed once however many filters need
// it (counted per subject), and unsubscribed when the last filter needing
// it has no subscriber left. NATS then sends a node only the messages one
// of its filters matches, instead of every message to every node.
//
// Filters whose subjects overlap (a/+ and a/#) make NATS send a message
// once per matching subscription. Every subscription shares one channel,
// read by one goroutine, so the copies of a message arrive in NATS's order
// (one publisher's messages in the order it sent them, the copies of one
// next to each other), and each carries the publishing node's message
// identifier (hdrMsg): a copy with the identifier of the node's message
// just before it is dropped, and the core routes each message once, to
// every subscriber it matches here.
//
// Retained messages reach every node whatever its interest, on their
// stream's subject, so that a later subscription here finds them.

// hdrMsg identifies a forwarded message among its node's: the node's
// instance (random, new at each Dial) and a sequence number.
const hdrMsg = "Thingid-Msg"

// interest is a Router's subscriptions for its node's filters.
type interest struct {
	mu sync.Mutex
	// filters are the filters with subscribers here whose subjects are
	// subscribed; before Start, those restored, subscribed by Start.
	filters  map[string]bool
	subjects map[string]*subjectSub
	srv      *mqtt.Server // once started
	closed   bool
	// in is where every subscription of the interest, and the retained
	// messages', deliver; done stops its reader.
	in   chan *nats.Msg
	done chan struct{}
	// instance and seq make the identifiers of the messages this node
	// forwards.
	instance string
	seq      atomic.Uint64
	// last is the identifier of the last message taken from each node:
	// the reader's alone.
	last map[string]string
	// Duplicates counts the copies dropped.
	Duplicates atomic.Int64
}

// subjectSub is one subject's subscription and how many filters need it.
type subjectSub struct {
	sub  *nats.Subscription
	refs int
}

func newInterest() *interest {
	var b [8]byte
	rand.Read(b[:])
	return &interest{
		filters:  map[string]bool{},
		subjects: map[string]*subjectSub{},
		in:       make(chan *nats.Msg, nats.DefaultSubPendingMsgsLimit),
		done:     make(chan struct{}),
		instance: hex.EncodeToString(b[:]),
		last:     map[string]string{},
	}
}

// nextID is the identifier of the next message this node forwards.
func (in *interest) nextID() string {
	return in.instance + "-" + strconv.FormatUint(in.seq.Add(1), 10)
}

// Interest subscribes on NATS to the subjects of filter while the server
// has subscribers to it, and unsubscribes after; a new subscription is
// known to the NATS server when Interest returns (before the SUBACK). $
// topics stay on their node: no filter of them needs NATS.
func (r *Router) Interest(filter string) {
	if strings.HasPrefix(filter, "$") {
		return
	}
	r.in.mu.Lock()
	switch {
	case r.in.closed:
		r.in.mu.Unlock()
		return
	case r.in.srv == nil:
		r.in.filters[filter] = true // subscribed at Start
		r.in.mu.Unlock()
		return
	}
	added, err := r.reconcile(filter)
	r.in.mu.Unlock()
	if err != nil {
		r.Failed.Add(1)
		r.log.Error("mqtt cluster: subscribing to a filter's subjects", "filter", filter, "err", err)
		return
	}
	if added && r.nc.IsConnected() {
		if err := r.nc.FlushTimeout(requestTimeout); err != nil {
			r.log.Warn("mqtt cluster: a filter's subscription may not be in place yet", "filter", filter, "err", err)
		}
	}
}

// reconcile makes filter's subjects subscribed as the server has
// subscribers to it or not, and reports whether it subscribed to a new
// subject; r.in.mu is held.
func (r *Router) reconcile(filter string) (added bool, err error) {
	want, have := r.in.srv.Subscribers(filter) > 0, r.in.filters[filter]
	switch {
	case want && !have:
		subjects := FilterSubjects(Prefix, filter)
		for i, subject := range subjects {
			if s := r.in.subjects[subject]; s != nil {
				s.refs++
				continue
			}
			sub, err := r.nc.ChanSubscribe(subject, r.in.in)
			if err != nil {
				r.release(subjects[:i])
				return false, err
			}
			r.in.subjects[subject] = &subjectSub{sub: sub, refs: 1}
			added = true
		}
		r.in.filters[filter] = true
	case !want && have:
		r.release(FilterSubjects(Prefix, filter))
		delete(r.in.filters, filter)
	}
	return added, nil
}

// release drops a filter's need of subjects; r.in.mu is held.
func (r *Router) release(subjects []string) {
	for _, subject := range subjects {
		s := r.in.subjects[subject]
		if s.refs--; s.refs == 0 {
			s.sub.Unsubscribe()
			delete(r.in.subjects, subject)
		}
	}
}

// startInterest subscribes to the retained messages and to the subjects
// of the filters restored before Start, and reads what they deliver into
// s.
func (r *Router) startInterest(s *mqtt.Server) error {
	if _, err := r.nc.ChanSubscribe(retainedPrefix+".>", r.in.in); err != nil {
		return err
	}
	r.in.mu.Lock()
	restored := r.in.filters
	r.in.filters, r.in.srv = map[string]bool{}, s
	for filter := range restored {
		if _, err := r.reconcile(filter); err != nil {
			r.in.mu.Unlock()
			return err
		}
	}
	r.in.mu.Unlock()
	go func() {
		for {
			select {
			case msg := <-r.in.in:
				r.receive(msg, s)
			case <-r.in.done:
				return
			}
		}
	}()
	return nil
}

// receive routes a message from NATS once into s: a live one to its
// subscribers here (Inject), a retained one kept for later subscriptions
// (KeepRetained), unless it is this node's own or a copy of the message
// just taken from its node.
func (r *Router) receive(msg *nats.Msg, s *mqtt.Server) {
	node := msg.Header.Get(hdrNode)
	if node == r.node {
		return // its own, already routed here
	}
	if id := msg.Header.Get(hdrMsg); id != "" {
		if r.in.last[node] == id {
			r.in.Duplicates.Add(1)
			return
		}
		r.in.last[node] = id
	}
	prefix := Prefix
	if strings.HasPrefix(msg.Subject, retainedPrefix+".") {
		prefix = retainedPrefix
	}
	if id := msg.Header.Get(hdrExchange); id != "" && prefix == Prefix && r.repeats.seen(id) {
		r.repeats.Dropped.Add(1) // sent again after its node died (exchange.go)
		return
	}
	m, err := decode(prefix, msg)
	if err != nil {
		r.Failed.Add(1)
		r.log.Warn("mqtt cluster: a message from NATS does not decode", "subject", msg.Subject, "node", node, "err", err)
		return
	}
	if m.Retain || prefix == retainedPrefix {
		r.mu.Lock()
		if r.fresh != nil {
			r.fresh[m.Topic] = true
		}
		r.mu.Unlock()
	}
	if prefix == retainedPrefix {
		s.KeepRetained(m)
		return
	}
	r.Injected.Add(1)
	s.Inject(m)
}

// stopInterest stops reading and subscribing; closing the connection
// unsubscribes.
func (r *Router) stopInterest() {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	if !r.in.closed {
		close(r.in.done)
		r.in.closed = true
	}
}

// Subjects is the number of subjects this node subscribes to for its
// subscriptions (not shared ones).
func (r *Router) Subjects() int {
	r.in.mu.Lock()
	defer r.in.mu.Unlock()
	return len(r.in.subjects)
}
