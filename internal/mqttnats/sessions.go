package mqttnats

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// The persistent sessions of a cluster live in JetStream: each session's
// record and subscriptions in a key-value bucket (one key per client
// identifier), and the QoS 1 and 2 messages queued for it in a stream,
// one subject per session. Whichever node publishes a message stores it
// for every persistent session it matches before it acknowledges the
// publisher, so a node's death loses none; the node holding a session
// reads its subject and delivers (Server.Enqueue).
const (
	sessionBucket = "THINGID_MQTT_SESSIONS"
	queueStream   = "THINGID_MQTT_QUEUES"
	queuePrefix   = "thingid.mqttq"
)

// Headers of a queued message, besides those of a forwarded one.
const (
	hdrTopic     = "Mqtt-Topic"
	hdrClient    = "Mqtt-Client"
	hdrGranted   = "Mqtt-Granted-Qos"
	hdrAsRetain  = "Mqtt-Retain-Delivered"
	hdrSubIDs    = "Mqtt-Subscription-Ids"
	hdrRecord    = "Thingid-Record" // <process>.<n>: who stored it
	hdrQueuedFor = "Thingid-Queued-For"
)

// errSuperseded refuses a write of a node whose session a newer
// connection took.
var errSuperseded = errors.New("mqttnats: a newer connection elsewhere holds the session")

// Sessions is the cluster's mqtt.SharedStore (Router.Sessions).
type Sessions struct {
	r        *Router
	kv       jetstream.KeyValue
	stream   jetstream.Stream
	nodes    jetstream.KeyValue // the processes' liveness keys (orphans.go)
	wills    jetstream.KeyValue // the wills of connections without sessions (wills.go)
	ttl      time.Duration      // of a liveness key
	instance string             // this process's, in the records it stores

	// mirror holds every persistent session's subscriptions in the
	// cluster, from the bucket: what a message published here is stored
	// for.
	mirror topics.Tree

	mu      sync.Mutex
	srv     *mqtt.Server
	known   map[string]*sessionEntry   // the bucket's, by key
	holders map[string]map[string]bool // the keys of known, by Holder
	held    map[string]*held           // by client identifier
	// willRevs are the revisions of the wills kept here, by client
	// identifier (wills.go).
	willRevs map[string]uint64
	watcher  jetstream.KeyWatcher

	next    atomic.Uint64 // record numbers of this process
	deletes chan uint64   // stream sequences of delivered messages
	done    chan struct{}
}

// sessionEntry is a session's value in the bucket.
type sessionEntry struct {
	Record mqtt.SessionRecord
	Subs   []topics.Subscription
	// Holder is the process (Sessions.instance) that wrote it last, whose
	// liveness key says whether it still holds it (orphans.go).
	Holder string `json:",omitempty"`
	// Sent are the QoS 2 messages of the queue sent to the client and not
	// completed, by stream sequence: the node that resumes the session
	// sends them under the same packet identifier, or their PUBREL
	// (§4.3.3), rather than anew.
	Sent map[uint64]sentState `json:",omitempty"`
	// Epoch names, with a packet identifier, the QoS 2 messages the client
	// sends (exchange.go): random, new when a write completes one.
	Epoch string `json:",omitempty"`
}

// sentState is a QoS 2 message's state towards the client.
type sentState struct {
	ID       uint16
	Released bool `json:",omitempty"` // PUBREC received, PUBREL sent
}

// held is a session this node holds: its bucket revision, and the reader
// of its queue once its client attached.
type held struct {
	clientID, key string

	mu       sync.Mutex
	rev      uint64 // the bucket's revision this node read or wrote last; 0: none
	entry    sessionEntry
	resumed  string // the epoch when this node resumed it (exchange.go)
	cons     jetstream.ConsumeContext
	released bool
	stop     chan struct{} // closed when released
	// mine are the records this process stored for the session, which it
	// has in memory already; seqs maps the session's Seq of a message to
	// its stream sequence, to delete it once delivered.
	mine map[string]bool
	seqs map[uint64]uint64
}

// Sessions makes the bucket and the stream (or takes them as other nodes
// made them) and returns the store of this node's persistent sessions, for
// Config.Store; Start begins to use it. inflight bounds the messages
// queued for one session (Config.Inflight), expiry how long a message
// waits (Config.MaxSessionExpiry).
func (r *Router) Sessions(inflight int, expiry time.Duration) (mqtt.SharedStore, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	ttl := cmp.Or(r.NodeTTL, DefaultNodeTTL)
	r.repeats.setWindow(repeatWindow(ttl))
	kv, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: sessionBucket, Storage: jetstream.FileStorage, History: 1, Replicas: max(r.Replicas, 1),
		Description: "thingid: the MQTT persistent sessions and their subscriptions",
	})
	if err != nil {
		return nil, fmt.Errorf("mqttnats: creating the bucket %s: %w", sessionBucket, err)
	}
	queue, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: queueStream, Subjects: []string{queuePrefix + ".*"}, Storage: jetstream.FileStorage, Replicas: max(r.Replicas, 1),
		// Twice the session's window (the window, and as many delivered
		// whose deletion is on its way): beyond it a publish is refused,
		// and the message counted as dropped for that session.
		MaxMsgsPerSubject: 2 * int64(inflight), Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		MaxAge: expiry,
		// The copies of a QoS 2 message sent again (exchange.go).
		Duplicates:  min(repeatWindow(ttl), expiry),
		Description: "thingid: the MQTT QoS 1 and 2 messages queued for persistent sessions",
	})
	if err != nil {
		return nil, fmt.Errorf("mqttnats: creating the stream %s (nats-server 2.9 or later): %w", queueStream, err)
	}
	nodes, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: nodesBucket, Storage: jetstream.FileStorage, History: 1, TTL: ttl, Replicas: max(r.Replicas, 1),
		Description: "thingid: the liveness keys of the processes holding MQTT persistent sessions",
	})
	if err != nil {
		return nil, fmt.Errorf("mqttnats: creating the bucket %s: %w", nodesBucket, err)
	}
	wills, err := r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: willsBucket, Storage: jetstream.FileStorage, History: 1, Replicas: max(r.Replicas, 1),
		Description: "thingid: the wills of MQTT connections whose sessions end with them, while connected",
	})
	if err != nil {
		return nil, fmt.Errorf("mqttnats: creating the bucket %s: %w", willsBucket, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	s := &Sessions{r: r, kv: kv, stream: queue, nodes: nodes, wills: wills, ttl: ttl, instance: hex.EncodeToString(b),
		known: map[string]*sessionEntry{}, holders: map[string]map[string]bool{}, held: map[string]*held{}, willRevs: map[string]uint64{},
		deletes: make(chan uint64, 4096), done: make(chan struct{})}
	r.mu.Lock()
	r.sessions = s
	r.mu.Unlock()
	go s.deleteDelivered()
	return s, nil
}

// heldSessions is the number of sessions this node holds, 0 when it keeps
// no sessions in the cluster.
func (r *Router) heldSessions() int {
	r.mu.Lock()
	s := r.sessions
	r.mu.Unlock()
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.held {
		if !h.isReleased() {
			n++
		}
	}
	return n
}

// sessionKey is a client identifier's key in the bucket and token of its
// queue's subject: any identifier, in the characters both allow.
func sessionKey(clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return hex.EncodeToString(sum[:16])
}

// start reads the bucket into the mirror, follows it, and delivers to s.
func (s *Sessions) start(srv *mqtt.Server) error {
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	w, err := s.kv.WatchAll(context.Background())
	if err != nil {
		return fmt.Errorf("mqttnats: watching the bucket %s: %w", sessionBucket, err)
	}
	s.watcher = w
	if err := s.beat(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := s.register(ctx); err != nil {
		return err
	}
	timeout := time.After(requestTimeout)
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // every present key read
				go s.follow()
				go s.watchNodes()
				return nil
			}
			s.mirrorEntry(e)
		case <-timeout:
			w.Stop()
			return fmt.Errorf("mqttnats: reading the bucket %s: timed out", sessionBucket)
		}
	}
}

func (s *Sessions) follow() {
	for e := range s.watcher.Updates() {
		if e != nil {
			s.mirrorEntry(e)
		}
	}
}

// mirrorEntry applies a change of the bucket to the mirror.
func (s *Sessions) mirrorEntry(e jetstream.KeyValueEntry) {
	var next *sessionEntry
	if e.Operation() == jetstream.KeyValuePut {
		next = new(sessionEntry)
		if err := json.Unmarshal(e.Value(), next); err != nil {
			s.r.Failed.Add(1)
			s.r.log.Warn("mqtt cluster: a session in the bucket does not decode", "key", e.Key(), "err", err)
			return
		}
	}
	s.mu.Lock()
	srv := s.srv
	prev := s.known[e.Key()]
	if prev != nil {
		delete(s.holders[prev.Holder], e.Key())
		if len(s.holders[prev.Holder]) == 0 {
			delete(s.holders, prev.Holder)
		}
	}
	if next != nil {
		s.known[e.Key()] = next
		if s.holders[next.Holder] == nil {
			s.holders[next.Holder] = map[string]bool{}
		}
		s.holders[next.Holder][e.Key()] = true
	} else {
		delete(s.known, e.Key())
	}
	s.mu.Unlock()
	keep := map[string]bool{}
	if next != nil {
		for _, sub := range next.Subs {
			keep[sub.Filter] = true
			s.mirror.Subscribe(next.Record.ClientID, sub)
		}
	}
	if prev != nil {
		for _, sub := range prev.Subs {
			if !keep[sub.Filter] || next.Record.ClientID != prev.Record.ClientID {
				s.mirror.Unsubscribe(prev.Record.ClientID, sub.Filter)
			}
		}
	}
	// A newer claim's record from another process ends this node's copy
	// of the session, as the claim's announcement does: for a node that
	// missed the announcement (cut off from NATS while another node took
	// its sessions), which would otherwise store messages for its copy.
	if next != nil && next.Holder != "" && next.Holder != s.instance && srv != nil {
		srv.Supersede(next.Record.ClientID, next.Record.Claim, false)
	}
}

// queue stores m for the persistent sessions it matches that this node
// does not hold (those it holds, its server stores itself), and returns
// their client identifiers: their nodes take it from the stream, not from
// the forwarded copy. A session whose queue is full misses it, counted.
func (s *Sessions) queue(m *mqtt.Message) []string {
	ds := s.mirror.MatchUnshared(m.Topic, m.From, nil)
	var (
		ids     []string
		futures []jetstream.PubAckFuture
	)
	for _, d := range ds {
		qos := min(d.QoS, m.QoS)
		if qos == 0 || s.srv == nil || s.srv.Client(d.ClientID) != nil {
			continue
		}
		msg, err := s.record(mqtt.QueuedMessage{ClientID: d.ClientID, MessageRecord: mqtt.MessageRecord{
			QoS: qos, Retain: m.Retain && d.RetainAsPublished, SubIDs: d.SubscriptionIDs, Message: m}}, "")
		if err == nil {
			var f jetstream.PubAckFuture
			if f, err = s.r.js.PublishMsgAsync(msg); err == nil {
				ids = append(ids, d.ClientID)
				futures = append(futures, f)
				continue
			}
		}
		s.r.QueueDropped.Add(1)
		s.r.log.Warn("mqtt cluster: queueing a message for a session failed", "client", d.ClientID, "topic", m.Topic, "err", err)
	}
	kept := ids[:0]
	_, errs := s.await(futures)
	for i, err := range errs {
		if err != nil {
			s.r.QueueDropped.Add(1)
			s.r.log.Warn("mqtt cluster: queueing a message for a session failed", "client", ids[i], "topic", m.Topic, "err", err)
			continue
		}
		s.r.Queued.Add(1)
		kept = append(kept, ids[i])
	}
	return kept
}

// await waits for the stream's acknowledgement of each publish, within
// requestTimeout in all: the acknowledgements, and an error for each that
// failed or did not come.
func (s *Sessions) await(fs []jetstream.PubAckFuture) ([]*jetstream.PubAck, []error) {
	acks, errs := make([]*jetstream.PubAck, len(fs)), make([]error, len(fs))
	timeout := time.NewTimer(requestTimeout)
	defer timeout.Stop()
	for i, f := range fs {
		select {
		case acks[i] = <-f.Ok():
		case errs[i] = <-f.Err():
		case <-timeout.C:
			errs[i] = fmt.Errorf("mqttnats: no acknowledgement from the stream %s", queueStream)
		}
	}
	return acks, errs
}

// record is q as a message of its session's queue; id names it as this
// process's own ("" for a record another node will read).
func (s *Sessions) record(q mqtt.QueuedMessage, id string) (*nats.Msg, error) {
	msg, err := s.r.encode(queuePrefix+"."+sessionKey(q.ClientID), q.Message)
	if err != nil {
		return nil, err
	}
	msg.Header.Set(hdrTopic, q.Message.Topic)
	msg.Header.Set(hdrClient, q.ClientID)
	msg.Header.Set(hdrGranted, strconv.Itoa(int(q.QoS)))
	if q.Retain {
		msg.Header.Set(hdrAsRetain, "1")
	}
	if len(q.SubIDs) > 0 {
		ids := make([]string, len(q.SubIDs))
		for i, n := range q.SubIDs {
			ids[i] = strconv.Itoa(n)
		}
		msg.Header.Set(hdrSubIDs, strings.Join(ids, ","))
	}
	if id != "" {
		msg.Header.Set(hdrRecord, id)
	}
	if q.Message.Exchange != "" {
		// Stored once for the session, whichever node stores it
		// (exchange.go).
		msg.Header.Set(nats.MsgIdHdr, q.Message.Exchange+"."+sessionKey(q.ClientID))
	}
	return msg, nil
}

// decodeRecord is the queued message a record of the stream carries.
func decodeRecord(h nats.Header, data []byte) (mqtt.MessageRecord, error) {
	var r mqtt.MessageRecord
	name := h.Get(hdrTopic)
	if !topic.ValidName(name) || strings.HasPrefix(name, "$") {
		return r, fmt.Errorf("header %s: %q is no topic name", hdrTopic, name)
	}
	m, err := decode(Prefix, &nats.Msg{Subject: Subject(Prefix, name), Header: h, Data: data})
	if err != nil {
		return r, err
	}
	qos, err := strconv.Atoi(h.Get(hdrGranted))
	if err != nil || qos < 1 || qos > int(m.QoS) {
		return r, fmt.Errorf("header %s: %q is no QoS granted for a QoS %d message", hdrGranted, h.Get(hdrGranted), m.QoS)
	}
	r = mqtt.MessageRecord{QoS: byte(qos), Retain: h.Get(hdrAsRetain) == "1", Message: m}
	if ids := h.Get(hdrSubIDs); ids != "" {
		for f := range strings.SplitSeq(ids, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > 268435455 { // §3.8.2.1.2
				return mqtt.MessageRecord{}, fmt.Errorf("header %s: %q is no subscription identifier", hdrSubIDs, f)
			}
			r.SubIDs = append(r.SubIDs, n)
		}
	}
	return r, nil
}

// Load is empty: a session comes from the bucket when its client does
// (Fetch), and the retained messages from their stream (Start).
func (s *Sessions) Load() (*mqtt.Snapshot, error) { return &mqtt.Snapshot{}, nil }

// Fetch reads clientID's session from the bucket and, when there is one,
// holds it here. For a clean start, the mirror's copy says whose it is,
// without a request: a clean start deletes it anyway, and most CONNECTs
// start clean.
func (s *Sessions) Fetch(clientID string, clean bool) (*mqtt.SessionRecord, []topics.Subscription, error) {
	if clean {
		s.mu.Lock()
		defer s.mu.Unlock()
		if v := s.known[sessionKey(clientID)]; v != nil && v.Record.ClientID == clientID {
			r := v.Record
			return &r, nil, nil
		}
		return nil, nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, sessionKey(clientID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mqttnats: reading session %q: %w", clientID, err)
	}
	var v sessionEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, nil, fmt.Errorf("mqttnats: session %q in the bucket: %w", clientID, err)
	}
	if v.Record.ClientID != clientID {
		return nil, nil, fmt.Errorf("mqttnats: the bucket's key %s holds %q, not %q", e.Key(), v.Record.ClientID, clientID)
	}
	h := s.hold(clientID)
	h.mu.Lock()
	h.rev, h.entry, h.resumed = e.Revision(), v, v.Epoch
	h.mu.Unlock()
	r := v.Record
	for _, st := range v.Sent {
		r.Sending = append(r.Sending, st.ID)
	}
	return &r, v.Subs, nil
}

// hold is clientID's held session, made if it is not held yet.
func (s *Sessions) hold(clientID string) *held {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held[clientID]
	if h == nil || h.isReleased() {
		h = &held{clientID: clientID, key: sessionKey(clientID), mine: map[string]bool{}, seqs: map[uint64]uint64{}, stop: make(chan struct{})}
		s.held[clientID] = h
	}
	return h
}

// PutSession writes the session with subs added, and starts delivering
// its queue here once its client is connected here (a session adopted
// from an ended node leaves its queue in the stream for its client).
func (s *Sessions) PutSession(r *mqtt.SessionRecord, subs []topics.Subscription) error {
	return s.change(r.ClientID, func(h *held) error {
		renewEpoch(h, r)
		h.entry.Record = *r
		for _, sub := range subs {
			h.entry.Subs = slices.DeleteFunc(h.entry.Subs, func(o topics.Subscription) bool { return o.Filter == sub.Filter })
			h.entry.Subs = append(h.entry.Subs, sub)
		}
		if err := s.write(h); err != nil {
			return err
		}
		if h.cons == nil && r.Away.IsZero() {
			return s.consume(h)
		}
		return nil
	})
}

// change applies f to clientID's held session, under its lock. A write
// that a newer connection's node superseded stops its delivery here; the
// session stays known as superseded, so that this node's copy, until the
// newer claim's announcement ends it, deletes nothing (DeleteSession).
func (s *Sessions) change(clientID string, f func(h *held) error) error {
	h := s.hold(clientID)
	h.mu.Lock()
	err := f(h)
	h.mu.Unlock()
	if errors.Is(err, errSuperseded) {
		h.release()
	}
	return err
}

// DeleteSubscriptions writes the session without filters.
func (s *Sessions) DeleteSubscriptions(clientID string, filters []string) error {
	return s.change(clientID, func(h *held) error {
		h.entry.Subs = slices.DeleteFunc(h.entry.Subs, func(sub topics.Subscription) bool { return slices.Contains(filters, sub.Filter) })
		return s.write(h)
	})
}

// write stores h's entry in the bucket unless a newer connection's node
// wrote it since h's revision: the claims order the writers. h.mu is held.
func (s *Sessions) write(h *held) error {
	h.entry.Holder = s.instance
	data, err := json.Marshal(&h.entry)
	if err != nil {
		return fmt.Errorf("mqttnats: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for range 3 {
		var rev uint64
		if h.rev == 0 {
			rev, err = s.kv.Create(ctx, h.key, data)
		} else {
			rev, err = s.kv.Update(ctx, h.key, data, h.rev)
		}
		if err == nil {
			h.rev = rev
			return nil
		}
		// Another node wrote: the newer claim stands.
		cur, gerr := s.kv.Get(ctx, h.key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound) && h.rev != 0:
			// A clean start on another node deleted the record this node
			// wrote (Discard), and took its will: the session ended.
			return errSuperseded
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			continue
		case gerr != nil:
			return fmt.Errorf("mqttnats: writing session %q: %w", h.clientID, err)
		}
		var other sessionEntry
		if json.Unmarshal(cur.Value(), &other) == nil && other.Record.Claim > h.entry.Record.Claim {
			return errSuperseded
		}
		h.rev = cur.Revision()
	}
	return fmt.Errorf("mqttnats: writing session %q: %w", h.clientID, err)
}

// consume delivers the session's queue to the server, from its first
// message, while it is held here. h.mu is held.
func (s *Sessions) consume(h *held) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	cons, err := s.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{queuePrefix + "." + h.key}})
	if err != nil {
		return fmt.Errorf("mqttnats: reading the queue of session %q: %w", h.clientID, err)
	}
	h.cons, err = cons.Consume(func(jm jetstream.Msg) { s.take(h, jm) })
	if err != nil {
		return fmt.Errorf("mqttnats: reading the queue of session %q: %w", h.clientID, err)
	}
	return nil
}

// take gives the server a message of a held session's queue that it does
// not have yet; one it does not take is deleted.
func (s *Sessions) take(h *held, jm jetstream.Msg) {
	meta, err := jm.Metadata()
	if err != nil {
		return
	}
	seq := meta.Sequence.Stream
	h.mu.Lock()
	id := jm.Headers().Get(hdrRecord)
	mine, released := h.mine[id], h.released
	delete(h.mine, id)
	h.mu.Unlock()
	if mine || released {
		return
	}
	r, err := decodeRecord(jm.Headers(), jm.Data())
	if err == nil && jm.Headers().Get(hdrClient) != h.clientID {
		err = fmt.Errorf("header %s: %q in the queue of %q", hdrClient, jm.Headers().Get(hdrClient), h.clientID)
	}
	if err != nil {
		s.r.Failed.Add(1)
		s.r.log.Warn("mqtt cluster: a queued message does not decode", "client", h.clientID, "err", err)
		s.deletes <- seq
		return
	}
	h.mu.Lock()
	if st, ok := h.entry.Sent[seq]; ok && r.QoS == 2 {
		r.PacketID, r.Released = st.ID, st.Released
	}
	h.mu.Unlock()
	kept := func(n uint64) {
		h.mu.Lock()
		h.seqs[n] = seq
		h.mu.Unlock()
	}
	for {
		ok, room := s.srv.Enqueue(h.clientID, r, kept)
		switch {
		case ok:
			return
		case room == nil:
			s.deletes <- seq
			return
		}
		// The session's window is full: the queue waits, in the stream,
		// until the client acknowledges (flow control, not loss).
		select {
		case <-room:
		case <-h.stop:
			return
		}
	}
}

// PutMessages stores messages for sessions held here, before the server
// acknowledges their publisher; rewriting one stored already (a QoS 2
// message sent, or released) writes its state in the session's record.
// Those the stream had under the same exchange (exchange.go) come back as
// mqtt.StoredBefore.
func (s *Sessions) PutMessages(ms []mqtt.QueuedMessage) error {
	type put struct {
		h     *held
		seq   uint64
		i     int    // in ms
		owner string // hdrRecord
	}
	var puts []put
	var futures []jetstream.PubAckFuture
	var err error
	for i, q := range ms {
		h := s.hold(q.ClientID)
		h.mu.Lock()
		sseq, stored := h.seqs[q.Seq]
		id := s.instance + "." + strconv.FormatUint(s.next.Add(1), 10)
		if !stored {
			h.mine[id] = true
		}
		h.mu.Unlock()
		if stored {
			if q.QoS == 2 && q.PacketID != 0 {
				err = cmp.Or(err, s.changeSent(h, sseq, &sentState{ID: q.PacketID, Released: q.Released}))
			}
			continue
		}
		msg, e := s.record(q, id)
		var f jetstream.PubAckFuture
		if e == nil {
			f, e = s.r.js.PublishMsgAsync(msg)
		}
		if e != nil {
			err = e
			break
		}
		puts = append(puts, put{h: h, seq: q.Seq, i: i, owner: id})
		futures = append(futures, f)
	}
	acks, errs := s.await(futures)
	for _, e := range errs {
		err = cmp.Or(err, e)
	}
	var before mqtt.StoredBefore
	for i, p := range puts {
		switch {
		case errs[i] != nil:
		case acks[i].Duplicate:
			// Not stored again: the stream's is the first attempt's, another
			// process's record (or delivered and deleted already).
			p.h.mu.Lock()
			delete(p.h.mine, p.owner)
			p.h.mu.Unlock()
			before = append(before, p.i)
		case err != nil:
			s.deletes <- acks[i].Sequence // the batch fails whole
		default:
			p.h.mu.Lock()
			p.h.seqs[p.seq] = acks[i].Sequence
			p.h.mu.Unlock()
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("mqttnats: queueing messages: %w", err)
	case before != nil:
		s.r.repeats.Dropped.Add(int64(len(before)))
		return before
	}
	return nil
}

// DeleteMessage deletes a delivered message from its session's queue.
func (s *Sessions) DeleteMessage(clientID string, seq uint64) error {
	s.mu.Lock()
	h := s.held[clientID]
	s.mu.Unlock()
	if h == nil {
		return nil
	}
	h.mu.Lock()
	sseq, ok := h.seqs[seq]
	delete(h.seqs, seq)
	_, sent := h.entry.Sent[sseq]
	h.mu.Unlock()
	if !ok {
		return nil
	}
	s.deletes <- sseq
	if sent {
		return s.changeSent(h, sseq, nil)
	}
	return nil
}

// changeSent writes the state of the QoS 2 message at stream sequence
// sseq in h's record, or removes it (nil) once completed.
func (s *Sessions) changeSent(h *held, sseq uint64, st *sentState) error {
	return s.change(h.clientID, func(h *held) error {
		if h.rev == 0 {
			return nil // not this node's to write (any more)
		}
		if st == nil {
			delete(h.entry.Sent, sseq)
		} else {
			if h.entry.Sent == nil {
				h.entry.Sent = map[uint64]sentState{}
			}
			h.entry.Sent[sseq] = *st
		}
		return s.write(h)
	})
}

// deleteDelivered deletes, one by one, the messages delivered: a client's
// acknowledgement does not wait for JetStream's, and a message delivered
// but not deleted when the node dies is delivered again (QoS 1 allows it).
func (s *Sessions) deleteDelivered() {
	for {
		select {
		case <-s.done:
			return
		case seq := <-s.deletes:
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			err := s.stream.DeleteMsg(ctx, seq)
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				s.r.Failed.Add(1)
				s.r.log.Warn("mqtt cluster: deleting a delivered message failed", "seq", seq, "err", err)
			}
		}
	}
}

// DeleteSession deletes the session from the bucket and its queue, unless
// a newer connection's node wrote it since this node did; a session this
// node does not hold is deleted as a clean start here asks (its claim is
// the newest), and one the mirror does not know costs nothing.
func (s *Sessions) DeleteSession(clientID string) error {
	s.mu.Lock()
	h := s.held[clientID]
	delete(s.held, clientID)
	key := sessionKey(clientID)
	_, known := s.known[key]
	s.mu.Unlock()
	var claim, rev uint64
	if h != nil {
		claim, rev = h.release()
	}
	switch {
	case h != nil && rev == 0:
		return nil // it never wrote the session: what is there is another's
	case h == nil && !known:
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if h != nil {
		if err := s.kv.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			cur, gerr := s.kv.Get(ctx, key)
			if gerr != nil {
				return nil // gone already
			}
			var other sessionEntry
			if json.Unmarshal(cur.Value(), &other) == nil && other.Record.Claim > claim {
				return nil // a newer connection's session
			}
			if err := s.kv.Delete(ctx, key); err != nil {
				return fmt.Errorf("mqttnats: deleting session %q: %w", clientID, err)
			}
		}
	} else if err := s.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("mqttnats: deleting session %q: %w", clientID, err)
	}
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(queuePrefix+"."+key)); err != nil {
		return fmt.Errorf("mqttnats: deleting the queue of session %q: %w", clientID, err)
	}
	return nil
}

// Discard deletes clientID's session, which this node does not hold (a
// clean start here, or one that expired while no node held it), and
// returns its record as deleted: compare-and-set on the revision read, so
// that a will taken from the record meanwhile (its holder's delay ending,
// a node taking an ended one's session) is not published again. It reads
// the bucket, not the mirror: a record another node wrote milliseconds
// before may not have reached this node's copy yet, and its holder,
// superseded by the clean start, leaves its will to this node. A record
// comes with an error when its queue could not be deleted: the session
// ended.
func (s *Sessions) Discard(clientID string) (*mqtt.SessionRecord, error) {
	key := sessionKey(clientID)
	s.mu.Lock()
	h := s.held[clientID]
	delete(s.held, clientID)
	s.mu.Unlock()
	if h != nil {
		h.release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for range 3 {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("mqttnats: reading session %q: %w", clientID, err)
		}
		if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
			continue // written meanwhile: read again
		}
		var r *mqtt.SessionRecord // nil: deleted, with nothing to publish of it
		var v sessionEntry
		if json.Unmarshal(e.Value(), &v) == nil && v.Record.ClientID == clientID {
			r = &v.Record
		}
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(queuePrefix+"."+key)); err != nil {
			return r, fmt.Errorf("mqttnats: deleting the queue of session %q: %w", clientID, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("mqttnats: deleting session %q: written again at each try", clientID)
}

// Release stops holding the session here: its queue is another node's to
// deliver now.
func (s *Sessions) Release(clientID string) {
	s.mu.Lock()
	h := s.held[clientID]
	delete(s.held, clientID)
	s.mu.Unlock()
	if h != nil {
		h.release()
	}
}

func (h *held) isReleased() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.released
}

// release stops delivering h's queue here, and returns the claim and the
// bucket revision h had.
func (h *held) release() (claim, rev uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.released {
		h.released = true
		close(h.stop)
		if h.cons != nil {
			h.cons.Stop()
		}
	}
	return h.entry.Record.Claim, h.rev
}

// PutRetained and DeleteRetained keep nothing: the retained stream keeps
// the cluster's retained messages (Forward).
func (s *Sessions) PutRetained(*mqtt.Message) error { return nil }
func (s *Sessions) DeleteRetained(string) error     { return nil }

// close stops following the bucket and reading the queues, and deletes
// this process's liveness key: the sessions it held are the others' now.
func (s *Sessions) close() {
	if s.watcher != nil {
		s.watcher.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		if err := s.nodes.Delete(ctx, s.instance); err != nil {
			s.r.log.Warn("mqtt cluster: deleting this node's liveness key failed; its sessions move when it expires", "err", err)
		}
		// The server published its connections' wills as it closed (or
		// the nodes taking over will): the registration goes.
		if err := s.wills.Delete(ctx, s.instance); err != nil {
			s.r.log.Warn("mqtt cluster: deleting this node's registration failed", "err", err)
		}
		cancel()
	}
	s.mu.Lock()
	all := s.held
	s.held = map[string]*held{}
	s.mu.Unlock()
	for _, h := range all {
		h.release()
	}
	close(s.done)
}

var _ mqtt.SharedStore = (*Sessions)(nil)
