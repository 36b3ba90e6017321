package mqttnats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/thingid/thingid/internal/mqtt"
)

// The will of a connection whose session ends with it (Session Expiry
// Interval 0) is in no session record; while the client is connected, it
// is kept in the bucket willsBucket under <process>.<session key>, and
// the process itself is registered there under <process>: the keys
// another node looks through once that process's liveness key expired
// (orphans.go). Whoever publishes such a will deletes its key first,
// compare-and-set on the revision it read: of the process that held the
// connection and the nodes that took over from it, one publishes it.
const willsBucket = "THINGID_MQTT_WILLS"

// willKey is the key of clientID's will kept by process instance.
func willKey(instance, clientID string) string { return instance + "." + sessionKey(clientID) }

// register writes this process's key in the wills bucket, kept until
// the wills it kept are published after it ended.
func (s *Sessions) register(ctx context.Context) error {
	if _, err := s.wills.Put(ctx, s.instance, []byte(s.r.node)); err != nil {
		return fmt.Errorf("mqttnats: registering in the bucket %s: %w", willsBucket, err)
	}
	return nil
}

// PutWill keeps the will of r's connection, here.
func (s *Sessions) PutWill(r *mqtt.SessionRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("mqttnats: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	rev, err := s.wills.Put(ctx, willKey(s.instance, r.ClientID), data)
	if err != nil {
		return fmt.Errorf("mqttnats: keeping the will of %q: %w", r.ClientID, err)
	}
	s.mu.Lock()
	s.willRevs[r.ClientID] = rev
	s.mu.Unlock()
	return nil
}

// TakeWill deletes the will kept for clientID's connection here, unless
// another node did (it took this process for ended): true, this process
// publishes it.
func (s *Sessions) TakeWill(clientID string) bool {
	s.mu.Lock()
	rev, ok := s.willRevs[clientID]
	delete(s.willRevs, clientID)
	s.mu.Unlock()
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := s.wills.Delete(ctx, willKey(s.instance, clientID), jetstream.LastRevision(rev)); err != nil {
		s.r.log.Warn("mqtt cluster: a will not published here: another node took it, or NATS did not answer", "client", clientID, "err", err)
		return false
	}
	return true
}

// DropWill deletes the will kept for clientID's connection here.
func (s *Sessions) DropWill(clientID string) {
	s.mu.Lock()
	delete(s.willRevs, clientID)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := s.wills.Delete(ctx, willKey(s.instance, clientID)); err != nil {
		s.r.log.Warn("mqtt cluster: deleting a kept will failed", "client", clientID, "err", err)
	}
}

// adoptWills publishes the wills process instance, which ended, kept for
// its connections, each taken with a compare-and-set deletion (of nodes
// racing for it, one publishes), then deletes its registration.
func (s *Sessions) adoptWills(instance string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	keys, err := s.wills.ListKeysFiltered(ctx, instance+".*")
	if err != nil {
		return
	}
	for key := range keys.Keys() {
		if !strings.HasPrefix(key, instance+".") {
			continue // a NATS server before 2.10 does not filter
		}
		e, err := s.wills.Get(ctx, key)
		if err != nil {
			continue // taken by another node meanwhile
		}
		if err := s.wills.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
			continue
		}
		var r mqtt.SessionRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.Will == nil {
			s.r.Failed.Add(1)
			s.r.log.Warn("mqtt cluster: a kept will does not decode", "key", key, "err", err)
			continue
		}
		s.r.AdoptedWills.Add(1)
		s.r.log.Info("mqtt cluster: publishing the will of a client of an ended node", "client", r.ClientID)
		s.srv.PublishWill(&r)
	}
	if err := s.wills.Delete(ctx, instance); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.r.log.Warn("mqtt cluster: deleting an ended node's registration failed", "node", instance, "err", err)
	}
}

// registered are the processes registered in the wills bucket, this one
// excepted.
func (s *Sessions) registered() []string {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	keys, err := s.wills.ListKeysFiltered(ctx, "*")
	if err != nil {
		return nil
	}
	var out []string
	for k := range keys.Keys() {
		if k != s.instance && !strings.Contains(k, ".") {
			out = append(out, k)
		}
	}
	return out
}

var _ mqtt.WillStore = (*Sessions)(nil)
