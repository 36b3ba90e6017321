package mqtt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"github.com/thingid/thingid/internal/mqtt/topics"
)

// Bolt is a Store in one bbolt file. Writes go through bbolt's Batch, so
// that concurrent publishers share one fsync.
type Bolt struct{ db *bbolt.DB }

var (
	bucketSessions = []byte("sessions")
	bucketMessages = []byte("messages")      // client id, 0x00, sequence (big endian)
	bucketSubs     = []byte("subscriptions") // client id, 0x00, filter
	bucketRetained = []byte("retained")
)

// OpenBolt opens (or creates) the store file name in dir.
func OpenBolt(dir, name string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is locked: is another process serving this data directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketSubs, bucketMessages, bucketRetained} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Bolt{db: db}, nil
}

// Close closes the file.
func (b *Bolt) Close() error { return b.db.Close() }

func messageKey(clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(clientID), 0), seq)
}

func (b *Bolt) put(bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket(bucket).Put(key, data) })
}

func subKey(clientID, filter string) []byte {
	return append(append([]byte(clientID), 0), filter...)
}

func (b *Bolt) PutSession(r *SessionRecord, subs []topics.Subscription) error {
	rec, err := json.Marshal(r)
	if err != nil {
		return err
	}
	data := make([][]byte, len(subs))
	for i := range subs {
		if data[i], err = json.Marshal(&subs[i]); err != nil {
			return err
		}
	}
	return b.db.Batch(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketSessions).Put([]byte(r.ClientID), rec); err != nil {
			return err
		}
		for i, s := range subs {
			if err := tx.Bucket(bucketSubs).Put(subKey(r.ClientID, s.Filter), data[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Bolt) DeleteSubscriptions(clientID string, filters []string) error {
	return b.db.Batch(func(tx *bbolt.Tx) error {
		for _, f := range filters {
			if err := tx.Bucket(bucketSubs).Delete(subKey(clientID, f)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Bolt) DeleteSession(clientID string) error {
	return b.db.Batch(func(tx *bbolt.Tx) error {
		if err := tx.Bucket(bucketSessions).Delete([]byte(clientID)); err != nil {
			return err
		}
		prefix := append([]byte(clientID), 0)
		for _, bk := range [][]byte{bucketSubs, bucketMessages} {
			c := tx.Bucket(bk).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (b *Bolt) PutMessages(ms []QueuedMessage) error {
	data := make([][]byte, len(ms))
	for i := range ms {
		var err error
		if data[i], err = json.Marshal(&ms[i].MessageRecord); err != nil {
			return err
		}
	}
	return b.db.Batch(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketMessages)
		for i, m := range ms {
			if err := bk.Put(messageKey(m.ClientID, m.Seq), data[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *Bolt) DeleteMessage(clientID string, seq uint64) error {
	return b.db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMessages).Delete(messageKey(clientID, seq)) })
}

func (b *Bolt) PutRetained(m *Message) error { return b.put(bucketRetained, []byte(m.Topic), m) }

func (b *Bolt) DeleteRetained(topic string) error {
	return b.db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket(bucketRetained).Delete([]byte(topic)) })
}

// Load reads everything; a record that does not decode is an error naming
// it, not a silent loss.
func (b *Bolt) Load() (*Snapshot, error) {
	snap := &Snapshot{Messages: map[string][]MessageRecord{}, Subscriptions: map[string][]topics.Subscription{}}
	err := b.db.View(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			var r SessionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("session %q: %w", k, err)
			}
			snap.Sessions = append(snap.Sessions, r)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			id, _, ok := bytes.Cut(k, []byte{0})
			var s topics.Subscription
			if !ok {
				return fmt.Errorf("subscription key %q is not a client id and a filter", k)
			}
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("subscription %q: %w", k, err)
			}
			snap.Subscriptions[string(id)] = append(snap.Subscriptions[string(id)], s)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketMessages).ForEach(func(k, v []byte) error {
			var r MessageRecord
			if len(k) < 9 || k[len(k)-9] != 0 {
				return fmt.Errorf("message key %q is not a client id and a sequence", k)
			}
			if err := json.Unmarshal(v, &r); err != nil || r.Message == nil {
				return fmt.Errorf("message %q: %v", k, err)
			}
			id := string(k[:len(k)-9])
			snap.Messages[id] = append(snap.Messages[id], r) // keys sort by sequence
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRetained).ForEach(func(k, v []byte) error {
			m := &Message{}
			if err := json.Unmarshal(v, m); err != nil {
				return fmt.Errorf("retained %q: %w", k, err)
			}
			snap.Retained = append(snap.Retained, m)
			return nil
		})
	})
	return snap, err
}

var _ Store = (*Bolt)(nil)

// ErrBoltHeld is CopyBolt's answer when a running broker holds the file.
var ErrBoltHeld = errors.New("held by the running broker")

// CopyBolt writes a consistent copy of the bbolt file at path into the new
// file dst (0600), in one read transaction. A broker holds its file locked
// while it runs, so this copies only a file no broker has open: ErrBoltHeld
// otherwise, found within a fraction of a second.
func CopyBolt(path, dst string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 200 * time.Millisecond})
	if errors.Is(err, bberrors.ErrTimeout) {
		return fmt.Errorf("%s: %w", path, ErrBoltHeld)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error { return tx.CopyFile(dst, 0o600) })
}
