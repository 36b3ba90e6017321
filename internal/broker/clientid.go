package broker

import (
	"context"
	"errors"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"

	"github.com/thingid/thingid/internal/store"
)

// Client identifiers (docs/broker.md#client-identifiers). A thing connects
// with its thing id as client identifier, and a thing id is the thing's
// alone: any other identity naming one is refused at CONNECT, before the core
// creates or takes over a session. Thing ids are visible in topics, so
// otherwise a user's app or a service could hold a persistent session under
// a device's id and lock the device out (0x85, session owner) for as long as
// it kept renewing that session.
//
// Thing ids have no shape of their own (the store's ids are UUIDs for
// every kind), so the directory says whether a client identifier is one.
// Every listener's CONNECT goes through auth.Connect → authenticate → here.
func (h *auth) checkClientID(ctx context.Context, cl string, id *Identity) *refusal {
	if id.Kind == kindThing {
		if cl != id.Thing {
			// No device can take another device's session.
			return refuse(packet.ClientIdentifierNotValid, "client_id", "a thing's client identifier must be its thing id "+id.Thing)
		}
		return nil
	}
	_, err := h.b.resolver.dir.GetThing(ctx, cl)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		h.b.log.Error("mqtt: reading the thing a client identifier may name failed", "client", cl, "err", err)
		return refuse(packet.ServerUnavailable, "error", "client identifier could not be checked; try again")
	}
	h.b.log.Warn("mqtt: CONNECT refused: the client identifier is a thing's id, reserved for that thing",
		"client", cl, "identity", id.principal())
	return refuse(packet.ClientIdentifierNotValid, "client_id_reserved", "client identifier "+cl+" is a thing's id, reserved for that thing")
}

// reclaim hands a thing its client identifier back from a session another
// identity holds under it: one created before thing ids were reserved
// (checkClientID), restored from the session store. The thing wins: the
// other identity's session is discarded with its subscriptions, queued
// messages and will (revoked, it may publish and receive nothing), and the
// thing starts a new session (Session Present 0): the core ends the old one
// (ReplaceSession), disconnecting it (0x8E) if it is connected.
func (h *auth) reclaim(cl *mqtt.Client, old *session, thing string) {
	if !old.revoked.CompareAndSwap(false, true) {
		return
	}
	h.disarm(old)
	cl.ReplaceSession()
	h.b.metrics.closed.WithLabelValues("client_id_reclaimed").Inc()
	h.b.log.Warn("mqtt: a thing reclaimed its client identifier: another identity's session under it is discarded",
		"client", cl.ID, "thing", thing, "identity", old.state.Load().id.principal())
}
