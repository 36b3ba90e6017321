package uma

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// maxPermissions bounds a permission request.
const maxPermissions = 32

// ticketPrefix marks thingid's permission tickets.
const ticketPrefix = "umt_"

// permissionRequest is one entry of a permission request (Federated
// Authorization §4.1).
type permissionRequest struct {
	ResourceID string   `json:"resource_id"`
	Scopes     []string `json:"resource_scopes"`
}

// ParsePermissions reads a permission request: one object or an array of
// them, each with a resource_id and resource_scopes.
func ParsePermissions(r io.Reader) ([]store.UMAPermission, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil || len(b) > maxBody {
		return nil, refusal.New("body", "unreadable or larger than %d bytes", maxBody)
	}
	var reqs []permissionRequest
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		err = readJSON(bytes.NewReader(b), &reqs)
	} else {
		var one permissionRequest
		err = readJSON(bytes.NewReader(b), &one)
		reqs = []permissionRequest{one}
	}
	if err != nil {
		return nil, err
	}
	if len(reqs) == 0 || len(reqs) > maxPermissions {
		return nil, refusal.New("body", "1 to %d permissions", maxPermissions)
	}
	out := make([]store.UMAPermission, 0, len(reqs))
	for i, p := range reqs {
		at := func(f string) string { return fmt.Sprintf("[%d].%s", i, f) }
		if p.ResourceID == "" || len(p.ResourceID) > maxOwner {
			return nil, refusal.New(at("resource_id"), "is required (at most %d bytes)", maxOwner)
		}
		if p.Scopes == nil {
			return nil, refusal.New(at("resource_scopes"), "is required")
		}
		if len(p.Scopes) > maxScopes {
			return nil, refusal.New(at("resource_scopes"), "at most %d scopes", maxScopes)
		}
		for j, sc := range p.Scopes {
			if !ValidScope(sc) {
				return nil, refusal.New(at(fmt.Sprintf("resource_scopes[%d]", j)), "not a scope")
			}
		}
		out = append(out, store.UMAPermission{ResourceID: p.ResourceID, Scopes: dedupe(p.Scopes)})
	}
	return out, nil
}

func dedupe(l []string) []string {
	out := make([]string, 0, len(l))
	for _, x := range l {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// servePermission is Federated Authorization §4: the resource server asks
// for a ticket standing for the permissions a client lacks.
func (s *Server) servePermission(w http.ResponseWriter, r *http.Request) {
	p, err := s.protection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	perms, err := ParsePermissions(http.MaxBytesReader(w, r.Body, maxBody+1))
	if err != nil {
		s.fieldProblem(w, r, err)
		return
	}
	if err := s.checkPermissions(r.Context(), p, perms); err != nil {
		s.writeError(w, r, err)
		return
	}
	ticket, err := s.newTicket(r.Context(), p.client, "", "", perms)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"ticket": ticket})
}

// checkPermissions refuses a permission request naming a resource that is
// not the resource server's (§4.3 invalid_resource_id: another resource
// server's resource is refused the same way as an unknown one) or a scope
// the resource does not have (invalid_scope).
func (s *Server) checkPermissions(ctx context.Context, p *pat, perms []store.UMAPermission) error {
	for _, pm := range perms {
		res, err := s.resource(ctx, pm.ResourceID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !p.serves(res)) {
			return newError(http.StatusBadRequest, "invalid_resource_id", "no resource "+pm.ResourceID+" of this resource server")
		}
		if err != nil {
			return err
		}
		for _, sc := range pm.Scopes {
			if !slices.Contains(res.Scopes, sc) {
				return newError(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("resource %s has no scope %q", pm.ResourceID, sc))
			}
		}
	}
	return nil
}

// Refusals of Ticket.
var (
	// ErrUnknownResource: the resource does not exist, or is not the
	// resource server's.
	ErrUnknownResource = errors.New("uma: no such resource of this resource server")
	// ErrUnknownScope: the resource has no such scope.
	ErrUnknownScope = errors.New("uma: the resource has no such scope")
)

// Ticket is the permission endpoint for a trusted resource server in this
// process (the gateway's uma filter, which stands in front of it): a ticket
// for perms, bound to resourceServer and, when requester is not "", to the
// requesting client, which alone may redeem it. The same checks as the
// endpoint's: ErrUnknownResource, ErrUnknownScope; and resourceServer must
// be in Options.TrustedResourceServers, as it presents no PAT.
func (s *Server) Ticket(ctx context.Context, resourceServer, requester string, perms []store.UMAPermission) (string, error) {
	if !slices.Contains(s.opts.TrustedResourceServers, resourceServer) {
		return "", fmt.Errorf("uma: %q is not a trusted resource server (uma.trustedResourceServers)", resourceServer)
	}
	if len(perms) == 0 || len(perms) > maxPermissions {
		return "", fmt.Errorf("uma: 1 to %d permissions", maxPermissions)
	}
	err := s.checkPermissions(ctx, &pat{client: resourceServer, trusted: true}, perms)
	var e *apiError
	switch {
	case errors.As(err, &e) && e.Code == "invalid_scope":
		return "", fmt.Errorf("%w: %s", ErrUnknownScope, e.Description)
	case errors.As(err, &e):
		return "", fmt.Errorf("%w: %s", ErrUnknownResource, e.Description)
	case err != nil:
		return "", err
	}
	return s.newTicket(ctx, resourceServer, requester, "", perms)
}

// newTicket stores a ticket for the resource server client (bound to the
// requesting client requester and the requesting party party when not "")
// and returns its value.
func (s *Server) newTicket(ctx context.Context, client, requester, party string, perms []store.UMAPermission) (string, error) {
	v, t := s.mintTicket(client, requester, party, perms)
	return v, s.st.CreateUMATicket(ctx, t)
}

// mintTicket returns a new ticket's value and what to store of it.
func (s *Server) mintTicket(client, requester, party string, perms []store.UMAPermission) (string, *store.UMATicket) {
	v := ticketPrefix + rand.Text()
	now := s.now()
	return v, &store.UMATicket{Hash: keyedHash(s.ticketKey, v), ClientID: client, Requester: requester,
		Party: party, Permissions: perms, Created: now, ExpiresAt: now.Add(s.opts.TicketLifetime)}
}

// ValidTicket checks the shape of a ticket before any lookup.
func ValidTicket(v string) bool {
	rest, ok := strings.CutPrefix(v, ticketPrefix)
	if !ok || len(rest) != 26 {
		return false
	}
	for _, c := range rest {
		if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", c) {
			return false
		}
	}
	return true
}
