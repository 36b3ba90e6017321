package broker

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/routes"
)

// AdminPrefix is where RegisterAdmin mounts the admin API.
const AdminPrefix = "/api/v1/admin/mqtt/"

// ClientInfo is one session as the admin API shows it.
type ClientInfo struct {
	ClientID      string     `json:"clientId"`
	Identity      string     `json:"identity"` // thing:<id>, user:<id>, client:<id> or anonymous
	Kind          string     `json:"kind"`
	Thing         string     `json:"thing,omitempty"`
	User          string     `json:"user,omitempty"`
	Connected     bool       `json:"connected"`
	Listener      string     `json:"listener,omitempty"`
	Remote        string     `json:"remote,omitempty"`
	Expires       *time.Time `json:"expires,omitempty"`
	Subscriptions int        `json:"subscriptions"`
	Queued        int        `json:"queued"` // QoS 1/2 messages awaiting acknowledgement
}

// Clients lists the sessions, connected or kept for an away client.
func (b *Broker) Clients() []ClientInfo {
	var out []ClientInfo
	b.server.Each(func(cl *mqtt.Client) bool {
		s := sessionOf(cl)
		if s == nil {
			return true
		}
		id := s.state.Load().id
		ci := ClientInfo{
			ClientID: cl.ID, Identity: id.principal(), Kind: id.Kind, Thing: id.Thing, User: id.user(),
			Subscriptions: cl.Subscriptions(), Queued: cl.Queued(),
		}
		ci.Connected = cl.Conn() != nil
		ci.Listener, ci.Remote = where(cl)
		if !id.Expires.IsZero() {
			ci.Expires = &id.Expires
		}
		out = append(out, ci)
		return true
	})
	slices.SortFunc(out, func(a, b ClientInfo) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out
}

// Disconnect ends the client's connection (MQTT 5: DISCONNECT 0x98,
// administrative action) and discards its session; false when there is none.
func (b *Broker) Disconnect(clientID string) bool {
	cl := b.server.Client(clientID)
	if cl == nil {
		return false
	}
	s := sessionOf(cl)
	if s == nil {
		return false
	}
	b.auth.endWith(s, "administrator", packet.AdministrativeAction, "session ended: administrator", false)
	return true
}

// RegisterAdmin mounts GET clients (the list) and DELETE clients/{id}
// (disconnect and discard) under AdminPrefix on mux, each behind require
// (administrator authentication), with RFC 9457 problems. Each route is
// mounted on its own, so that the route table lists it.
func (b *Broker) RegisterAdmin(mux routes.Mux, require func(http.Handler) http.Handler) {
	mux.Handle("GET "+AdminPrefix+"clients", require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clients := b.Clients()
		if clients == nil {
			clients = []ClientInfo{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"clients": clients})
	})))
	mux.Handle("DELETE "+AdminPrefix+"clients/{id}", require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.Disconnect(r.PathValue("id")) {
			writeJSON(w, http.StatusNotFound, map[string]any{"type": "about:blank", "title": "Not Found", "status": http.StatusNotFound,
				"detail": "no MQTT session with client identifier " + r.PathValue("id")})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	ct := "application/json"
	if status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
