package ace

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
)

// EventRevoke is the event of a CWT revoked on its own, by its cti; it is
// the contract between this package and every resource server that holds
// accepted tokens (the CoAP gateway ends the sessions holding it):
//
//	events.Event{
//		Type:    "cwt.revoke",
//		Kind:    "token",
//		ID:      "<lower-case hex of the cti>",
//		Details: map[string]string{"exp": "<the token's exp, unix seconds>"},
//	}
const EventRevoke = "cwt.revoke"

// paramToken is the token parameter of a revocation or introspection
// request (RFC 9200 Figure 16's abbreviation of RFC 7662's token).
const paramToken = 11

// Store keeps what outlives a request (store.Store): the CWTs revoked by
// cti, so that a revocation outlives a restart and reaches a node that
// missed its event, each stored with its audit record in one transaction;
// and the audit records of the CWTs issued, which are where an
// administrator finds a thing's CWTs (issued.go).
type Store interface {
	WithTx(ctx context.Context, fn func(tx store.Tx) error) error
	ListRevokedCWTs(ctx context.Context, now time.Time) ([]store.RevokedCWT, error)
	AppendAudit(ctx context.Context, recs ...store.AuditRecord) error
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error)
}

// revokedCTIs are the ctis refused until their token's exp, following
// EventRevoke on the bus.
type revokedCTIs struct {
	mu    sync.RWMutex
	until map[string]time.Time // hex cti → exp
}

func (r *revokedCTIs) add(cti string, exp, now time.Time) (added bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.until {
		if !now.Before(t) {
			delete(r.until, k)
		}
	}
	if cur, ok := r.until[cti]; ok && !exp.After(cur) {
		return false
	}
	r.until[cti] = exp
	return true
}

func (r *revokedCTIs) revoked(cti []byte, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	exp, ok := r.until[hex.EncodeToString(cti)]
	return ok && now.Before(exp)
}

// follow loads the revocations from the store and follows their events
// from then on; on events.Resync it reads the store again and publishes on
// this node each revocation it had missed, for the other doors that hold
// tokens. It returns the function that stops following.
func (s *Server) follow(ctx context.Context, bus *events.Bus) (func(), error) {
	stop := bus.Subscribe(s.onEvent)
	if _, err := s.reload(ctx); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

func (s *Server) onEvent(e events.Event) {
	switch e.Type {
	case events.Resync:
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			missed, err := s.reload(ctx)
			if err != nil {
				s.log.Error("ace: events were missed and the revoked CWTs cannot be read", "err", err)
				return
			}
			for _, r := range missed {
				s.bus.Publish(revocationEvent(r.CTI, r.ExpiresAt, "", true))
			}
		}()
	case EventRevoke:
		exp, err := strconv.ParseInt(e.Details["exp"], 10, 64)
		if _, herr := hex.DecodeString(e.ID); herr != nil || err != nil || e.ID == "" {
			s.log.Error("ace: a CWT revocation event names no cti or exp", "id", e.ID, "exp", e.Details["exp"])
			return
		}
		s.ctis.add(e.ID, time.Unix(exp, 0), s.keys.Now())
	}
}

// reload reads the revocations of the store and returns those not known.
func (s *Server) reload(ctx context.Context) ([]store.RevokedCWT, error) {
	now := s.keys.Now()
	list, err := s.st.ListRevokedCWTs(ctx, now)
	if err != nil {
		return nil, err
	}
	var missed []store.RevokedCWT
	for _, r := range list {
		if s.ctis.add(hex.EncodeToString(r.CTI), r.ExpiresAt, now) {
			missed = append(missed, r)
		}
	}
	return missed, nil
}

func revocationEvent(cti []byte, exp time.Time, actor string, local bool) events.Event {
	return events.Event{Type: EventRevoke, Kind: "token", ID: hex.EncodeToString(cti), Actor: actor, Local: local,
		Details: map[string]string{"exp": strconv.FormatInt(exp.Unix(), 10)}}
}

// Revoke answers a revocation request (RFC 7009's semantics in ACE's CBOR,
// a map with the token under 11): a CWT this platform signed, not expired,
// revoked by its cti from its presenter, who must hold its cnf key as at
// /authz-info (any audience: a client revokes what it holds wherever it is
// for). The revocation is stored with its audit record and published
// (EventRevoke): every node refuses the token at once, and the gateway ends
// the sessions holding it.
func (s *Server) Revoke(ctx context.Context, body []byte, id Identity) ([]byte, int) {
	err := s.revoke(ctx, body, id)
	s.metrics.count(endpointRevoke, err)
	if err != nil {
		return s.refuse(endpointRevoke, err)
	}
	return nil, http.StatusOK
}

func (s *Server) revoke(ctx context.Context, body []byte, id Identity) error {
	tok, _, perr := parseTokenParam(body)
	if perr != nil {
		return perr
	}
	c, err := s.verify(ctx, tok, "")
	if err != nil {
		return err
	}
	if err := held(c.Cnf, id); err != nil {
		return err
	}
	client := cmp.Or(c.Client, c.Sub)
	return s.revokeCTI(ctx, "client:"+client, c.Cti, time.Unix(c.Exp, 0), cwtRecord{
		CTI: hex.EncodeToString(c.Cti), Exp: c.Exp, Client: client, Thing: c.Thing, By: "holder",
	})
}

// revokeCTI stores the revocation of cti, refused until exp and the leeway,
// with its audit record (cwt.revoke by actor, about the token's thing or
// client) in one transaction, and publishes it (EventRevoke): every node
// refuses the token at once, and the gateway ends the sessions holding it.
func (s *Server) revokeCTI(ctx context.Context, actor string, cti []byte, exp time.Time, rec cwtRecord) error {
	until := exp.Add(s.revocations.Leeway())
	detail, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.RevokeCWT(ctx, &store.RevokedCWT{CTI: cti, ExpiresAt: until}); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, store.AuditRecord{Time: s.keys.Now().UTC(), Actor: actor, Action: ActionRevoke,
			Target: rec.subject(), Detail: detail})
	})
	if err != nil {
		return &Error{Code: "server_error", Description: "the revocation could not be stored", Status: http.StatusInternalServerError, cause: err}
	}
	s.bus.Publish(revocationEvent(cti, until, actor, false))
	s.log.Info("ace: CWT revoked", "cti", rec.CTI, "thing", rec.Thing, "client", rec.Client, "actor", actor)
	return nil
}

// parseTokenParam is the token of a revocation or introspection request,
// {11: bstr}, and the client's credentials when it sends them (client_id
// (24), client_secret (25), text), as a form.
func parseTokenParam(b []byte) ([]byte, url.Values, *Error) {
	if len(b) > maxMessage {
		return nil, nil, invalidRequest("the request is larger than %d bytes", maxMessage)
	}
	var m map[any]cbor.RawMessage
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, nil, invalidRequest("the request is not a CBOR map with the token under 11: %v", err)
	}
	raw, ok := m[uint64(paramToken)]
	if !ok {
		return nil, nil, invalidRequest("token (11) is required")
	}
	var tok []byte
	if err := decMode.Unmarshal(raw, &tok); err != nil || len(tok) == 0 {
		return nil, nil, invalidRequest("token (11) must be the CWT as a byte string")
	}
	form := url.Values{}
	for key, name := range map[uint64]string{paramClientID: "client_id", paramClientSecret: "client_secret"} {
		if raw, ok := m[key]; ok {
			var v string
			if err := decMode.Unmarshal(raw, &v); err != nil || v == "" {
				return nil, nil, invalidRequest("%s (%d) must be a non-empty text string", name, key)
			}
			form.Set(name, v)
		}
	}
	return tok, form, nil
}
