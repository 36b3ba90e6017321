package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// persistence keeps retained messages and persistent sessions (MQTT 3.1.1
// clean session 0, MQTT 5 session expiry > 0) in a bbolt file in the data
// directory, through mochi's bolt hook. It forwards per-client events only
// for persistent sessions: a clean session has nothing to survive a restart,
// and writing (with fsync) its every subscription and QoS 1 message would
// make the disk the broker's bottleneck.
type persistence struct {
	*bolt.Hook
	mu     sync.Mutex
	stored map[string]bool // client ids whose session is in the file
}

func openPersistence(dir string) (*persistence, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mqtt.dir: %w", err)
	}
	h := &bolt.Hook{}
	opts := &bolt.Options{
		Path:    filepath.Join(dir, "mqtt.db"),
		Options: &bbolt.Options{Timeout: time.Second},
	}
	// Init is called by mochi's AddHook; opening here reports a locked or
	// unreadable file before any listener starts.
	if err := h.Init(opts); errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("mqtt.dir: %s is locked: is another thingid serving this data directory?", opts.Path)
	} else if err != nil {
		return nil, fmt.Errorf("mqtt.dir: open %s: %w", opts.Path, err)
	}
	return &persistence{Hook: h, stored: map[string]bool{}}, nil
}

// Provides leaves out $SYS counters: persisting them would write (and fsync)
// every second, and restore recounts what matters.
func (p *persistence) Provides(b byte) bool {
	return b != mqtt.OnSysInfoTick && b != mqtt.StoredSysInfo && p.Hook.Provides(b)
}

// Init is a no-op: openPersistence did it.
func (p *persistence) Init(any) error { return nil }

// durable reports whether cl's session outlives its connection.
func durable(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

func (p *persistence) isStored(cl *mqtt.Client) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stored[cl.ID]
}

func (p *persistence) setStored(id string, v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v {
		p.stored[id] = true
	} else {
		delete(p.stored, id)
	}
}

// StoredClients remembers which sessions the file holds.
func (p *persistence) StoredClients() ([]storage.Client, error) {
	cs, err := p.Hook.StoredClients()
	for _, c := range cs {
		p.setStored(c.ID, true)
	}
	return cs, err
}

// StoredInflightMessages restores the packet ids of queued messages: mochi's
// bolt hook does not store them, but they end its storage key
// ("if_<client id>:<packet id>"), and a QoS 1/2 message cannot be resent
// without one.
func (p *persistence) StoredInflightMessages() ([]storage.Message, error) {
	ms, err := p.Hook.StoredInflightMessages()
	for i := range ms {
		if ms[i].PacketID != 0 {
			continue
		}
		if n, perr := strconv.ParseUint(ms[i].ID[strings.LastIndexByte(ms[i].ID, ':')+1:], 10, 16); perr == nil {
			ms[i].PacketID = uint16(n)
		}
	}
	return ms, err
}

func (p *persistence) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	switch {
	case durable(cl):
		p.setStored(cl.ID, true)
		p.Hook.OnSessionEstablished(cl, pk)
	case p.isStored(cl):
		// A clean start ends the stored session of the same client id.
		p.forget(cl)
	}
}

// forget deletes cl's session record (its subscriptions and messages go
// through OnUnsubscribed and OnQosDropped).
func (p *persistence) forget(cl *mqtt.Client) {
	if p.isStored(cl) {
		p.Hook.OnClientExpired(cl)
		p.setStored(cl.ID, false)
	}
}

func (p *persistence) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if p.isStored(cl) {
		p.Hook.OnDisconnect(cl, err, expire)
		if expire && cl.StopCause() != packets.ErrSessionTakenOver {
			p.setStored(cl.ID, false)
		}
	}
}

// update rewrites the stored record of a persistent session whose identity
// changed (re-authentication).
func (p *persistence) update(cl *mqtt.Client, id *Identity) {
	if p.isStored(cl) {
		cl.Properties.Username = encodeRecord(id)
		p.Hook.OnSessionEstablished(cl, packets.Packet{})
	}
}

func (p *persistence) OnClientExpired(cl *mqtt.Client) { p.forget(cl) }

func (p *persistence) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	if p.isStored(cl) {
		p.Hook.OnWillSent(cl, pk)
	}
}

func (p *persistence) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if p.isStored(cl) {
		p.Hook.OnSubscribed(cl, pk, codes)
	}
}

func (p *persistence) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if p.isStored(cl) {
		p.Hook.OnUnsubscribed(cl, pk)
	}
}

func (p *persistence) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if p.isStored(cl) {
		p.Hook.OnQosPublish(cl, pk, sent, resends)
	}
}

func (p *persistence) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if p.isStored(cl) {
		p.Hook.OnQosComplete(cl, pk)
	}
}

func (p *persistence) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if p.isStored(cl) {
		p.Hook.OnQosDropped(cl, pk)
	}
}

var _ mqtt.Hook = (*persistence)(nil)
