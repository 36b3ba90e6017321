package broker

import (
	"context"
	"errors"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/thingid/thingid/internal/store"
)

// Client identifiers (docs/broker.md#client-identifiers). A thing connects
// with its thing id as client identifier, and a thing id is the thing's
// alone: any other identity naming one is refused at CONNECT, before mochi
// creates or takes over a session. Thing ids are visible in topics, so
// otherwise a user's app or a service could hold a persistent session under
// a device's id and lock the device out (0x85, session owner) for as long as
// it kept renewing that session.
//
// Thing ids have no shape of their own (the store's ids are UUIDs for
// every kind), so the directory says whether a client identifier is one.
// Every listener's CONNECT goes through OnConnect → authenticate → here.
func (h *hook) checkClientID(ctx context.Context, cl string, id *Identity) *refusal {
	if id.Kind == kindThing {
		if cl != id.Thing {
			// No device can take another device's session.
			return refuse(packets.ErrClientIdentifierNotValid, "client_id", "a thing's client identifier must be its thing id "+id.Thing)
		}
		return nil
	}
	_, err := h.b.resolver.dir.GetThing(ctx, cl)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		h.b.log.Error("mqtt: reading the thing a client identifier may name failed", "client", cl, "err", err)
		return refuse(packets.ErrServerUnavailable, "error", "client identifier could not be checked; try again")
	}
	h.b.log.Warn("mqtt: CONNECT refused: the client identifier is a thing's id, reserved for that thing",
		"client", cl, "identity", id.principal())
	return refuse(packets.ErrClientIdentifierNotValid, "client_id_reserved", "client identifier "+cl+" is a thing's id, reserved for that thing")
}

// reclaim hands a thing its client identifier back from a session another
// identity holds under it: one created before thing ids were reserved
// (checkClientID), restored from mqtt.db. The thing wins: the other
// identity's session is discarded with its subscriptions, queued messages
// and will, and the thing starts a new session (Session Present 0). It runs
// from OnSessionEstablish, just before mochi looks the client identifier up.
func (h *hook) reclaim(s, old *session) {
	existing, thing := old.cl, s.state.Load().id.Thing
	if !old.revoked.CompareAndSwap(false, true) {
		return
	}
	old.disarm()
	atomic.StoreUint32(&existing.Properties.Will.Flag, 0)
	h.b.metrics.closed.WithLabelValues("client_id_reclaimed").Inc()
	h.b.log.Warn("mqtt: a thing reclaimed its client identifier: another identity's session under it is discarded",
		"client", existing.ID, "thing", thing, "identity", old.state.Load().id.principal())
	if existing.Closed() && durable(existing) {
		// Away: nothing else touches it, and mochi finds no session.
		h.discard(old)
		return
	}
	// Connected (or its connection still ending): only mochi's takeover
	// can end it without its goroutine later deleting the client
	// identifier's entry, now the thing's. The takeover disconnects it
	// (0x8E); what it would hand over is emptied first, and the CONNACK
	// corrected (OnPacketEncode): a device that finds Session Present 1
	// does not subscribe again.
	existing.ClearInflights()
	h.b.server.UnsubscribeClient(existing)
	h.b.store.forget(existing)
	h.sessions.Delete(existing)
	s.reclaimed.Store(true)
}

// OnPacketEncode clears Session Present in the CONNACK of a thing that
// reclaimed its client identifier from a connected identity.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.SessionPresent {
		if s := h.session(cl); s != nil && s.reclaimed.CompareAndSwap(true, false) {
			pk.SessionPresent = false
		}
	}
	return pk
}
