package mqtt

import (
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// Store keeps what outlives the process: persistent sessions, the QoS 1
// and 2 messages queued for them, and retained messages. Every method is
// durable when it returns: the server acknowledges a QoS 1 or 2 PUBLISH
// only after the messages it queued for persistent sessions and the
// retained message it set are stored, so a kill -9 loses none it
// acknowledged. The records are plain values, so a cluster store can hold
// them as well as the file of Bolt.
type Store interface {
	Load() (*Snapshot, error)
	// PutSession writes a session's record; with subs, also those
	// subscriptions (added or replaced), in the same write.
	PutSession(r *SessionRecord, subs []topics.Subscription) error
	// DeleteSubscriptions removes a session's subscriptions to filters.
	DeleteSubscriptions(clientID string, filters []string) error
	// DeleteSession removes the session, its subscriptions and messages.
	DeleteSession(clientID string) error
	// PutMessages stores queued messages of any sessions at once: the
	// deliveries of one PUBLISH cost one write.
	PutMessages(ms []QueuedMessage) error
	DeleteMessage(clientID string, seq uint64) error
	PutRetained(m *Message) error
	DeleteRetained(topic string) error
}

// Snapshot is everything a Store holds, read at start.
type Snapshot struct {
	Sessions      []SessionRecord
	Subscriptions map[string][]topics.Subscription // by client identifier
	Messages      map[string][]MessageRecord       // by client identifier, in send order
	Retained      []*Message
}

// SessionRecord is a persistent session. Its subscriptions are records of
// their own, so that one SUBSCRIBE writes its filters, not all of them.
type SessionRecord struct {
	ClientID string
	Identity []byte // Config.Identity's encoding of the session's identity
	Version  byte
	Expiry   time.Duration
	Away     time.Time // when its connection ended; zero while connected
	// Claim is the cluster's order of the connection that attached last
	// (Remote.Claim), 0 on a single node: a SharedStore keeps the newest
	// connection's writes.
	Claim uint64 `json:",omitempty"`
	// Will is the will the session would leave: its connection's, while
	// connected, or the one waiting for its delay since it left. WillDelay
	// counts from Away, or, while connected, from the end of the node that
	// held it: whoever holds the session next publishes it then
	// (§3.1.3.2.2), or when the session ends.
	Will      *packet.Will  `json:",omitempty"`
	WillDelay time.Duration `json:",omitempty"`
	// Received are the packet identifiers of QoS 2 messages from the
	// client, routed and acknowledged with PUBREC, whose PUBREL has not
	// come: a PUBLISH repeating one, on whichever node the session resumes,
	// is acknowledged again and not routed again (§4.3.3).
	Received []uint16 `json:",omitempty"`
	// Sending are the packet identifiers of QoS 2 messages sent to the
	// client and not completed, which a SharedStore gives back later
	// (Server.Enqueue, with their PacketID and Released): not reused
	// before then.
	Sending []uint16 `json:",omitempty"`
}

// QueuedMessage is a MessageRecord for a session.
type QueuedMessage struct {
	ClientID string
	MessageRecord
}

// MessageRecord is a message queued for a session at QoS 1 or 2. For QoS 2
// the packet identifier and PUBREC state are kept once sent, so that a
// resend after a restart is the same message to the client (§4.3.3).
type MessageRecord struct {
	Seq      uint64
	QoS      byte
	Retain   bool
	SubIDs   []int
	PacketID uint16
	Released bool
	Message  *Message
}

// IdentityCodec turns a session's identity into bytes and back, for the
// Store; Config.Identity.
type IdentityCodec interface {
	EncodeIdentity(id any) []byte
	DecodeIdentity(b []byte) (any, error)
}
