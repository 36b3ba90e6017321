package uma

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// GrantRequest is a token request with grant_type uma-ticket, after the
// oauth token endpoint authenticated the client and read its DPoP proof or
// client certificate.
type GrantRequest struct {
	Client *store.Client
	Form   url.Values
	// Confirmation binds the RPT (and is what a bound claim token must
	// match); nil for a bearer RPT.
	Confirmation *tokens.Confirmation
}

// GrantResponse is the successful answer (UMA 2.0 Grant §3.3.5).
type GrantResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	PCT         string `json:"pct,omitempty"`
	Upgraded    bool   `json:"upgraded,omitempty"`
}

// pctPrefix marks persisted claims tokens.
const pctPrefix = "umpct_"

// requestInterval is the polling interval of request_submitted, seconds.
const requestInterval = 5

// Grant answers a token request of the UMA grant: the status and the JSON
// body, an RPT or a UMA error (UMA 2.0 Grant §3.3.5, §3.3.6). An error
// return is the server's own failure.
func (s *Server) Grant(ctx context.Context, req GrantRequest) (int, any, error) {
	resp, err := s.grant(ctx, req)
	var e *apiError
	if errors.As(err, &e) {
		return e.Status, e, nil
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, resp, nil
}

// wanted is one resource of the request with the scopes asked for it.
type wanted struct {
	res    *store.UMAResource
	scopes []string
}

func (s *Server) grant(ctx context.Context, req GrantRequest) (*GrantResponse, error) {
	f, c := req.Form, req.Client
	var extra []string
	if sc := f.Get("scope"); sc != "" {
		for _, x := range strings.Split(sc, " ") {
			if x == "" {
				continue
			}
			if !ValidScope(x) {
				return nil, newError(http.StatusBadRequest, "invalid_scope", "malformed scope")
			}
			extra = append(extra, x)
		}
	}
	ct, err := ParseClaimToken(f.Get("claim_token"), f.Get("claim_token_format"))
	if err != nil {
		return nil, err
	}
	t, err := s.ticket(ctx, f.Get("ticket"), c.ID, true)
	if err != nil {
		return nil, err
	}
	now := s.now()
	// What is asked: the ticket's permissions, and the scope parameter's
	// scopes for the ticket's resources that have them (§3.3.4).
	want, err := s.ticketResources(ctx, t)
	if err != nil {
		return nil, err
	}
	for _, x := range extra {
		found := false
		for i := range want {
			if slices.Contains(want[i].res.Scopes, x) {
				found = true
				if !slices.Contains(want[i].scopes, x) {
					want[i].scopes = append(want[i].scopes, x)
				}
			}
		}
		if !found {
			return nil, newError(http.StatusBadRequest, "invalid_scope", fmt.Sprintf("no resource of the ticket has scope %q", x))
		}
	}
	if len(want) == 0 {
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket's resources no longer exist")
	}

	// Who asks: the user a pushed claim token or a pct proves, or the one
	// the claims-interaction endpoint bound to the ticket (§3.3.3). Claims
	// proven in this request are persisted in a new pct (§3.3.5).
	var user string
	persist := true
	switch {
	case ct != nil:
		if user, err = s.requestingParty(ctx, c.ID, req.Confirmation, ct); err != nil {
			return nil, err
		}
	case f.Get("pct") != "":
		p, err := s.st.GetUMAPCT(ctx, keyedHash(s.pctKey, f.Get("pct")), now)
		if errors.Is(err, store.ErrNotFound) || (err == nil && p.ClientID != c.ID) {
			return nil, newError(http.StatusBadRequest, "invalid_grant", "unknown or expired pct")
		}
		if err != nil {
			return nil, err
		}
		user, persist = p.UserID, false
	case t.Party != "":
		user = t.Party
	default:
		return nil, s.needInfo(ctx, t, c)
	}
	if t.Party != "" && user != t.Party {
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket is bound to another requesting party (claims interaction); push no claims with it, or start anew")
	}
	if _, active, err := s.activeUser(ctx, user); err != nil || !active {
		if err != nil {
			return nil, err
		}
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the requesting party is disabled or deleted")
	}

	// An RPT to upgrade: the same client and requesting party, still live.
	var prev []tokens.Permission
	var grant *store.Grant
	if raw := f.Get("rpt"); raw != "" {
		rc, err := s.opts.Tokens.Presented(ctx, raw, req.Confirmation)
		var te *tokens.Error
		if errors.As(err, &te) {
			return nil, newError(http.StatusBadRequest, "invalid_grant", "rpt: "+te.Description())
		}
		if err != nil {
			return nil, err
		}
		if prev, err = tokens.ParsePermissions(rc.Permissions); err != nil {
			return nil, newError(http.StatusBadRequest, "invalid_grant", "rpt: not an RPT")
		}
		g, live, err := s.liveGrant(ctx, rc.GrantID)
		if err != nil {
			return nil, err
		}
		if !live || rc.ClientID != c.ID || rc.Subject != user || g.UserID != user {
			return nil, newError(http.StatusBadRequest, "invalid_grant", "rpt: revoked, or of another client or requesting party")
		}
		grant = g
	}

	granted, shares, refusal, err := s.decide(ctx, user, want, now)
	if err != nil {
		return nil, err
	}
	if len(granted) == 0 && refusal != "" {
		// The owner decided already: the share holds at other times.
		return nil, newError(http.StatusForbidden, "request_denied", refusal)
	}
	if len(granted) == 0 {
		return nil, s.askOwner(ctx, t, c.ID, user, want)
	}
	var pct string
	if persist {
		if pct, err = s.newPCT(ctx, c.ID, user); err != nil {
			return nil, err
		}
	}
	return s.issueRPT(ctx, req, user, grant, prev, granted, shares, pct)
}

// ticket finds the permission ticket raw for client: used (tickets are
// single use) when use, only read otherwise. An unknown, used, expired or
// another client's ticket is invalid_grant (UMA 2.0 Grant §3.3.6; the
// recommendation has no expired_ticket error: UMA 1.0 had one).
func (s *Server) ticket(ctx context.Context, raw, client string, use bool) (*store.UMATicket, error) {
	switch {
	case raw == "":
		return nil, newError(http.StatusBadRequest, "invalid_request", "ticket is required (UMA 2.0 Grant §3.3.1)")
	case !ValidTicket(raw):
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket is not one of this server's")
	}
	h, now := keyedHash(s.ticketKey, raw), s.now()
	if use {
		// Another client's ticket is refused before it is used: a client
		// that got hold of it cannot burn it for the one it was issued to.
		if t, err := s.st.GetUMATicket(ctx, h); err == nil && t.Requester != "" && t.Requester != client {
			return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket was issued to another client")
		}
	}
	var t *store.UMATicket
	var err error
	if use {
		t, err = s.st.UseUMATicket(ctx, h, now)
	} else if t, err = s.st.GetUMATicket(ctx, h); err == nil && !t.UsedAt.IsZero() {
		err = store.ErrUsed
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, newError(http.StatusBadRequest, "invalid_grant", "unknown ticket")
	case errors.Is(err, store.ErrUsed):
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket was used already; tickets are single use")
	case err != nil:
		return nil, err
	case !now.Before(t.ExpiresAt):
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket expired; ask the resource server for a new one")
	case t.Requester != "" && t.Requester != client:
		return nil, newError(http.StatusBadRequest, "invalid_grant", "the ticket was issued to another client")
	}
	return t, nil
}

// ticketResources returns the ticket's resources that still exist and are
// still its resource server's, with the scopes asked for each (all of the
// resource's when the ticket names none).
func (s *Server) ticketResources(ctx context.Context, t *store.UMATicket) ([]wanted, error) {
	// The resource server that asked: trusted, or any client, which may be a
	// thing asking for its own resource (a thing's own client has its id).
	rs := &pat{client: t.ClientID, thingID: t.ClientID, trusted: slices.Contains(s.opts.TrustedResourceServers, t.ClientID)}
	var want []wanted
	for _, p := range t.Permissions {
		res, err := s.resource(ctx, p.ResourceID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted since: nothing to grant
		}
		if err != nil {
			return nil, err
		}
		if !rs.serves(res) {
			continue // not the ticket's resource server's (any more)
		}
		scopes := slices.Clone(p.Scopes)
		if len(scopes) == 0 {
			scopes = slices.Clone(res.Scopes)
		}
		want = append(want, wanted{res: res, scopes: scopes})
	}
	return want, nil
}

// needInfo asks for claims that identify the requesting party (§3.3.6),
// with a new ticket bound to this client: a pushed claim token, or, for a
// client with a registered redirect URI (where the party can come back to),
// the party's sign-in at the claims-interaction endpoint (redirect_user).
func (s *Server) needInfo(ctx context.Context, t *store.UMATicket, c *store.Client) error {
	nt, err := s.newTicket(ctx, t.ClientID, c.ID, "", t.Permissions)
	if err != nil {
		return err
	}
	e := newError(http.StatusForbidden, "need_info", "push a claim token that identifies the requesting party")
	if len(c.RedirectURIs) > 0 {
		e.Description += ", or redirect them to the claims_interaction_endpoint"
		e.RedirectUser = true
	}
	e.Ticket = nt
	e.RequiredClaims = []requiredClaim{{
		ClaimTokenFormat: []string{FormatIDToken, FormatAccessToken}, ClaimType: "string",
		FriendlyName: "requesting party", Issuer: []string{s.issuer}, Name: "sub",
	}}
	return e
}

// requiredClaim is an entry of need_info's required_claims (§3.3.6).
type requiredClaim struct {
	ClaimTokenFormat []string `json:"claim_token_format,omitempty"`
	ClaimType        string   `json:"claim_type,omitempty"`
	FriendlyName     string   `json:"friendly_name,omitempty"`
	Issuer           []string `json:"issuer,omitempty"`
	Name             string   `json:"name,omitempty"`
}

// decide applies the owners' policies: an owner may do everything with
// their own resources; anyone else what live shares to them or their
// groups allow, at the times the shares' conditions hold. It returns the
// granted permissions (scopes within what was asked, exp the earliest share
// end or moment a share's conditions may change: Decision.Until), the
// shares they rest on, and why a share was refused by its conditions ("" if
// none was).
func (s *Server) decide(ctx context.Context, user string, want []wanted, now time.Time) ([]tokens.Permission, []*store.UMAShare, string, error) {
	groups, err := s.userGroups(ctx, user)
	if err != nil {
		return nil, nil, "", err
	}
	var out []tokens.Permission
	var used []*store.UMAShare
	var refusal string
	for _, w := range want {
		if w.res.OwnerID == user {
			out = append(out, tokens.Permission{ResourceID: w.res.ID, Scopes: slices.Clone(w.scopes)})
			continue
		}
		shares, err := s.st.ListUMAShares(ctx, store.UMAShareFilter{ResourceID: w.res.ID, OwnerID: w.res.OwnerID})
		if err != nil {
			return nil, nil, "", err
		}
		var scopes []string
		var exp time.Time
		for _, sh := range shares {
			if !sh.ExpiresAt.IsZero() && !now.Before(sh.ExpiresAt) {
				continue
			}
			if !(sh.Grantee.Kind == store.KindUser && sh.Grantee.ID == user) && !(sh.Grantee.Kind == store.KindGroup && slices.Contains(groups, sh.Grantee.ID)) {
				continue
			}
			var adds []string
			for _, sc := range sh.Scopes {
				if slices.Contains(w.scopes, sc) && !slices.Contains(scopes, sc) {
					adds = append(adds, sc)
				}
			}
			if len(adds) == 0 {
				continue
			}
			end := sh.ExpiresAt
			_, cond, err := conditionsOf(sh)
			if err != nil {
				return nil, nil, "", err
			}
			if cond != nil {
				d := s.opts.Decider.DecideShare(ctx, cond, user, w.res.ID, sh.ID, adds)
				if !d.Allowed {
					refusal = d.Reason
					continue
				}
				if !d.Until.IsZero() && (end.IsZero() || d.Until.Before(end)) {
					end = d.Until
				}
			}
			scopes = append(scopes, adds...)
			used = append(used, sh)
			if !end.IsZero() && (exp.IsZero() || end.Before(exp)) {
				exp = end
			}
		}
		if len(scopes) > 0 {
			p := tokens.Permission{ResourceID: w.res.ID, Scopes: scopes}
			if !exp.IsZero() {
				p.ExpiresAt = exp.Unix()
			}
			out = append(out, p)
		}
	}
	return out, used, refusal, nil
}

// askOwner answers a request nothing grants: request_denied when the owner
// denied this party the resource, request_submitted otherwise, creating a
// pending request the owner sees (§3.3.6).
func (s *Server) askOwner(ctx context.Context, t *store.UMATicket, client, user string, want []wanted) error {
	for _, w := range want {
		reqs, err := s.st.ListUMARequests(ctx, store.UMARequestFilter{ResourceID: w.res.ID, RequesterID: user})
		if err != nil {
			return err
		}
		if n := len(reqs); n > 0 && reqs[n-1].Status == store.UMADenied {
			return newError(http.StatusForbidden, "request_denied", "the owner denied this request")
		}
	}
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		for _, w := range want {
			pending, err := tx.ListUMARequests(ctx, store.UMARequestFilter{ResourceID: w.res.ID, RequesterID: user, Status: store.UMAPending})
			if err != nil {
				return err
			}
			if slices.ContainsFunc(pending, func(r *store.UMARequest) bool { return subset(w.scopes, r.Scopes) }) {
				continue
			}
			r := &store.UMARequest{ResourceID: w.res.ID, OwnerID: w.res.OwnerID, RequesterID: user, ClientID: client, Scopes: w.scopes, Created: s.now()}
			if err := tx.CreateUMARequest(ctx, r); err != nil {
				return err
			}
			if err := s.audit(ctx, tx, "user:"+user, "uma.request.create", resourceRef(w.res.ID), auditJSON(map[string]any{"request": r.ID, "client": client, "scopes": w.scopes})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The rotated ticket keeps the party the claims interaction bound: the
	// client retries with it alone.
	nt, err := s.newTicket(ctx, t.ClientID, client, t.Party, t.Permissions)
	if err != nil {
		return err
	}
	e := newError(http.StatusForbidden, "request_submitted", "the owner was asked; try again later with this ticket")
	e.Ticket, e.Interval = nt, requestInterval
	return e
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// issueRPT signs the RPT under a grant (the upgraded RPT's, or a new one),
// linked to the shares it rests on, so that revoking a share revokes it.
func (s *Server) issueRPT(ctx context.Context, req GrantRequest, user string, grant *store.Grant, prev, granted []tokens.Permission, shares []*store.UMAShare, pct string) (*GrantResponse, error) {
	c := req.Client
	now := s.now()
	exp := now.Add(s.opts.RPTLifetime)
	perms := merge(prev, granted, now)
	var last int64 // the RPT ends with its last permission
	for i := range perms {
		if perms[i].ExpiresAt == 0 || perms[i].ExpiresAt > exp.Unix() {
			perms[i].ExpiresAt = exp.Unix()
		}
		last = max(last, perms[i].ExpiresAt)
	}
	if last < exp.Unix() {
		exp = time.Unix(last, 0)
	}
	upgraded := len(prev) > 0
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		if grant == nil {
			grant = &store.Grant{UserID: user, ClientID: c.ID, ThingID: c.ThingID, Scopes: []string{GrantScope}, Created: now, LastUsed: now}
			if err := tx.CreateGrant(ctx, grant); err != nil {
				return err
			}
		}
		for _, sh := range shares {
			if err := tx.LinkUMAGrant(ctx, grant.ID, sh.ID); err != nil {
				return err
			}
		}
		return s.audit(ctx, tx, "client:"+c.ID, "uma.rpt.issue", store.Ref{Kind: "grant", ID: grant.ID},
			auditJSON(map[string]any{"requestingParty": user, "permissions": perms}))
	})
	if err != nil {
		return nil, err
	}
	// A share revoked, or its conditions changed, while we linked: its
	// revoker listed the links before ours committed, so we revoke (see
	// store.UMA).
	for _, sh := range shares {
		cur, err := s.st.GetUMAShare(ctx, sh.ID)
		if errors.Is(err, store.ErrNotFound) {
			_ = s.revokeGrants(ctx, "system", "uma share revoked during issuance", []string{grant.ID})
			return nil, newError(http.StatusForbidden, "request_denied", "the share was revoked")
		} else if err != nil {
			return nil, err
		}
		if !bytes.Equal(cur.Conditions, sh.Conditions) {
			_ = s.revokeGrants(ctx, "system", "uma share conditions changed during issuance", []string{grant.ID})
			return nil, newError(http.StatusForbidden, "request_denied", "the share's conditions changed; ask again")
		}
	}
	raw, err := json.Marshal(perms)
	if err != nil {
		return nil, err
	}
	claims := tokens.Claims{
		Subject: user, Audience: s.opts.Audience, ClientID: c.ID, IssuedAt: now, ExpiresAt: exp,
		GrantID: grant.ID, ThingID: c.ThingID, Permissions: raw, Confirmation: req.Confirmation,
	}
	at, err := s.opts.Tokens.Sign(claims)
	if err != nil {
		return nil, err
	}
	tt := "Bearer"
	if req.Confirmation != nil && req.Confirmation.JKT != "" {
		tt = "DPoP" // RFC 9449 §5
	}
	return &GrantResponse{AccessToken: at, TokenType: tt, ExpiresIn: int64(exp.Sub(now) / time.Second), PCT: pct, Upgraded: upgraded}, nil
}

// merge adds granted to the still-valid permissions of an upgraded RPT.
func merge(prev, granted []tokens.Permission, now time.Time) []tokens.Permission {
	var out []tokens.Permission
	add := func(p tokens.Permission) {
		for i := range out {
			if out[i].ResourceID == p.ResourceID {
				for _, sc := range p.Scopes {
					if !slices.Contains(out[i].Scopes, sc) {
						out[i].Scopes = append(out[i].Scopes, sc)
					}
				}
				if p.ExpiresAt != 0 && (out[i].ExpiresAt == 0 || p.ExpiresAt > out[i].ExpiresAt) {
					out[i].ExpiresAt = p.ExpiresAt
				}
				return
			}
		}
		out = append(out, tokens.Permission{ResourceID: p.ResourceID, Scopes: slices.Clone(p.Scopes), ExpiresAt: p.ExpiresAt})
	}
	for _, p := range prev {
		if p.ExpiresAt == 0 || p.ExpiresAt > now.Unix() {
			add(p)
		}
	}
	for _, p := range granted {
		add(p)
	}
	return out
}

// newPCT stores a persisted claims token for client and user (§3.3.5).
func (s *Server) newPCT(ctx context.Context, client, user string) (string, error) {
	v := pctPrefix + rand.Text()
	now := s.now()
	return v, s.st.CreateUMAPCT(ctx, &store.UMAPCT{Hash: keyedHash(s.pctKey, v), ClientID: client, UserID: user, Created: now, ExpiresAt: now.Add(s.opts.PCTLifetime)})
}
