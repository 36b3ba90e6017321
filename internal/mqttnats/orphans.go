package mqttnats

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/mqtt"
)

// A persistent session whose node died (kill -9, a lost machine) is
// nobody's: no timer of its node will publish its will or expire it. Each
// process keeping sessions in the cluster renews a key of its own in the
// bucket nodesBucket, whose keys JetStream expires (the bucket's TTL); the
// session records name the process that wrote them last (Holder). When a
// holder's key is gone, the other nodes each try to take its sessions,
// one compare-and-set write of the record each: the one whose write
// stands holds the session, away, as its own node would have (the core's
// Server.Adopt): the will goes when due, under the rules of its owner's
// identity, and the session expires, its record and queue deleted, unless
// its client returns first. No consensus of thingid's own: JetStream's
// expiry says who is gone, its revisions who won.
const nodesBucket = "THINGID_MQTT_NODES"

// DefaultNodeTTL is Router.NodeTTL's default: a process renews its key
// four times within it, and the sessions of one that ended move between
// one and one and a half of it later. A node cut off from NATS ends its
// MQTT connections after two missed pings (pingInterval), well within it.
const DefaultNodeTTL = 15 * time.Second

// beat renews this process's liveness key.
func (s *Sessions) beat() error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if _, err := s.nodes.Put(ctx, s.instance, []byte(s.r.node)); err != nil {
		return errors.Join(errors.New("mqttnats: renewing this node's liveness key"), err)
	}
	return nil
}

// watchNodes renews the liveness key every quarter NodeTTL and, in a loop
// of its own (taking many sessions must not delay a renewal), takes the
// sessions of processes whose keys expired every half, until the
// sessions close or the NATS connection does.
func (s *Sessions) watchNodes() {
	var alive atomic.Bool // the last renewal went through
	alive.Store(true)
	go s.every(s.ttl/2, func() {
		if alive.Load() {
			s.adoptOrphans()
		}
	})
	s.every(s.ttl/4, func() {
		err := s.beat()
		alive.Store(err == nil)
		if err != nil {
			// Cut off: another node may take this one's sessions, and this
			// one takes none.
			s.r.log.Warn("mqtt cluster: renewing this node's liveness key failed", "err", err)
		}
	})
}

// every runs f every d until the sessions close or the NATS connection
// does.
func (s *Sessions) every(d time.Duration, f func()) {
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		if s.r.nc.IsClosed() {
			return
		}
		f()
	}
}

// adoptOrphans publishes the kept wills (wills.go) and tries to take the
// sessions of every process whose liveness key is gone, and those of an
// earlier version's nodes that ended long ago (expiredLongAgo).
func (s *Sessions) adoptOrphans() {
	for _, instance := range s.registered() {
		if s.ended(instance) {
			s.adoptWills(instance)
		}
	}
	s.mu.Lock()
	var holders, unheld []string
	for h := range s.holders {
		if h != "" && h != s.instance {
			holders = append(holders, h)
		}
	}
	for k := range s.holders[""] {
		if e := s.known[k]; e != nil && s.expiredLongAgo(&e.Record) {
			unheld = append(unheld, k)
		}
	}
	s.mu.Unlock()
	for _, k := range unheld {
		s.adopt(k, "")
	}
	for _, holder := range holders {
		if !s.ended(holder) {
			continue
		}
		s.mu.Lock()
		keys := make([]string, 0, len(s.holders[holder]))
		for k := range s.holders[holder] {
			keys = append(keys, k)
		}
		s.mu.Unlock()
		// In an order of this node's: nodes racing for the same sessions
		// mostly meet ones another already took, which costs one read.
		rand.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		for _, k := range keys {
			s.adopt(k, holder)
		}
	}
}

// expiredLongAgo says whether r, a record written by a node of an
// earlier version (which names no holder and renews no liveness key, so
// nothing says whether it is still running), ended a NodeTTL ago or more:
// its client left, and its expiry interval and a NodeTTL have passed
// since. A running node of that version holding it would have ended it
// and deleted it at its expiry; one whose client is connected (no time
// left) is never taken. Such a record is taken as an ended node's is, and
// ends at once, with its will (Server.Adopt).
func (s *Sessions) expiredLongAgo(r *mqtt.SessionRecord) bool {
	return !r.Away.IsZero() && time.Since(r.Away) > r.Expiry+s.ttl
}

// ended says whether process instance's liveness key is gone: false when
// it is there, or NATS did not say.
func (s *Sessions) ended(instance string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, err := s.nodes.Get(ctx, instance)
	return errors.Is(err, jetstream.ErrKeyNotFound)
}

// adopt takes the session under key from holder, which ended: its record
// gets a new claim and this process as holder, written only if nobody
// wrote it since it was read (another node that adopted it first, or its
// client connecting again), and the other nodes hear of the claim, which
// ends a copy a holder cut off from NATS but still running may have.
func (s *Sessions) adopt(key, holder string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return // deleted meanwhile, or NATS did not say
	}
	var v sessionEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.Holder != holder {
		return
	}
	id := v.Record.ClientID
	if v.Record.Claim, err = s.r.nextClaim(ctx, id); err != nil {
		s.r.log.Warn("mqtt cluster: taking the session of an ended node failed", "client", id, "err", err)
		return
	}
	v.Holder = s.instance
	data, err := json.Marshal(&v)
	if err != nil {
		return
	}
	rev, err := s.kv.Update(ctx, key, data, e.Revision())
	if err != nil {
		return // another write stands
	}
	s.r.Adopted.Add(1)
	s.r.log.Info("mqtt cluster: took the session of an ended node", "client", id, "will", v.Record.Will != nil)
	s.r.announce(id, v.Record.Claim, false)
	h := s.hold(id)
	h.mu.Lock()
	h.rev, h.entry = rev, v
	h.mu.Unlock()
	s.srv.Adopt(&v.Record, v.Subs)
}
