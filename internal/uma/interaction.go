package uma

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// The claims-interaction endpoint (UMA 2.0 Grant §3.3.2, §3.3.3). A client
// that got need_info with redirect_user sends the requesting party's
// browser here with its client_id, the ticket, a claims_redirect_uri and a
// state. The party signs in with the platform's sign-in and confirms, on a
// page naming the client, the resources and their owners, that the client
// asks for them on their behalf; a CSRF-protected POST then uses the ticket
// and sends the browser back to the client with a new ticket (the ticket is
// always rotated here) bound to that client and that party. The token
// endpoint takes the party from that ticket.
//
// The claims_redirect_uri must be exactly one of the redirect URIs the
// client registered (simple string comparison, RFC 9700 §4.1.3); thingid
// enables a client's registered redirect URIs for claims redirection when
// the client is registered for the UMA grant (§3.3.2 lets the authorization
// server enable them). It may be omitted when the client registered exactly
// one. A request whose client or claims_redirect_uri is wrong is answered
// with a page and never redirected; once they are validated, a refusal goes
// to the client as error and error_description with the state (the OAuth
// convention of RFC 6749 §4.1.2.1: the recommendation defines the success
// parameters only): invalid_grant for a ticket the token endpoint would
// refuse, access_denied when the party cancels.

// Limits of the claims-interaction parameters.
const (
	maxInteractionClientID = 256
	maxInteractionParam    = 1024
	maxInteractionForm     = 16 << 10
)

// interactionParams are the request parameters of §3.3.2.
var interactionParams = []string{"client_id", "ticket", "claims_redirect_uri", "state"}

// interactionRequest is a request to the claims-interaction endpoint.
type interactionRequest struct {
	ClientID, Ticket, RedirectURI, State string
}

// parseInteraction reads the parameters of a claims-interaction request: each
// at most once and bounded, client_id required. Other parameters are
// ignored (RFC 6749 §3.1). The ticket is checked by its lookup.
func parseInteraction(q url.Values) (*interactionRequest, error) {
	var req interactionRequest
	for _, p := range []struct {
		name string
		dst  *string
		max  int
	}{
		{"client_id", &req.ClientID, maxInteractionClientID}, {"ticket", &req.Ticket, maxInteractionParam},
		{"claims_redirect_uri", &req.RedirectURI, maxInteractionParam}, {"state", &req.State, maxInteractionParam},
	} {
		switch v := q[p.name]; {
		case len(v) > 1:
			return nil, refusal.New(p.name, "appears more than once")
		case len(v) == 1 && len(v[0]) > p.max:
			return nil, refusal.New(p.name, "longer than %d bytes", p.max)
		case len(v) == 1:
			*p.dst = v[0]
		}
	}
	if req.ClientID == "" {
		return nil, refusal.New("client_id", "is required")
	}
	return &req, nil
}

// interaction is a request whose client and claims redirection URI are
// validated: from here on, refusals go back to the client.
type interaction struct {
	interactionRequest
	client   *store.Client
	redirect string
}

// loadInteraction parses q and validates the client and where the party goes
// back to. A *refusal.FieldError says what is wrong with the request.
func (s *Server) loadInteraction(ctx context.Context, q url.Values) (*interaction, error) {
	req, err := parseInteraction(q)
	if err != nil {
		return nil, err
	}
	c, err := s.st.GetClient(ctx, req.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, refusal.New("client_id", "no such application")
	case err != nil:
		return nil, err
	case c.Disabled:
		return nil, refusal.New("client_id", "the application is disabled")
	case !slices.Contains(c.GrantTypes, GrantType):
		return nil, refusal.New("client_id", "the application is not registered for the UMA grant")
	}
	in := &interaction{interactionRequest: *req, client: c}
	switch {
	case req.RedirectURI != "" && slices.Contains(c.RedirectURIs, req.RedirectURI):
		in.redirect = req.RedirectURI
	case req.RedirectURI == "" && len(c.RedirectURIs) == 1:
		in.redirect = c.RedirectURIs[0]
	case req.RedirectURI == "":
		return nil, refusal.New("claims_redirect_uri", "is required: the application has not registered exactly one redirect URI")
	default:
		return nil, refusal.New("claims_redirect_uri", "is not one of the application's registered redirect URIs")
	}
	return in, nil
}

// query is the request as parameters, to carry through sign-in and the form.
func (in *interaction) query() url.Values {
	q := url.Values{}
	for i, v := range []string{in.ClientID, in.Ticket, in.RedirectURI, in.State} {
		if v != "" {
			q.Set(interactionParams[i], v)
		}
	}
	return q
}

type hiddenParam struct{ Name, Value string }

type claimsResource struct {
	Name, Owner string
	Scopes      []string
}

type claimsView struct {
	Error                                            string
	CSRF, Action, UserName, ClientName, RedirectHost string
	Resources                                        []claimsResource
	Params                                           []hiddenParam
}

// interactionRefused shows why a request cannot go back to the client.
func (s *Server) interactionRefused(w http.ResponseWriter, r *http.Request, status int, err error) {
	var fe *refusal.FieldError
	if !errors.As(err, &fe) {
		s.log.Error("uma: claims interaction", "path", r.URL.Path, "err", err)
		s.kit.Render(w, r, http.StatusInternalServerError, s.pages.claims, claimsView{Error: s.kit.Translator(r)("Something went wrong on our side. Please try again later.")})
		return
	}
	s.kit.Render(w, r, status, s.pages.claims, claimsView{Error: s.kit.Translator(r)("The application sent an invalid request: %s.", fe.Error())})
}

// back sends the party to the client's validated claims redirection URI
// with params and the state, keeping the registered query (RFC 6749 §3.1.2).
func (s *Server) back(w http.ResponseWriter, r *http.Request, in *interaction, params url.Values) {
	u, err := url.Parse(in.redirect)
	if err != nil {
		s.interactionRefused(w, r, http.StatusInternalServerError, err)
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if in.State != "" {
		q.Set("state", in.State)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, u.String(), status)
}

// backWithError sends a refusal to the client; a failure of ours that is
// not a UMA error is server_error.
func (s *Server) backWithError(w http.ResponseWriter, r *http.Request, in *interaction, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		s.log.Error("uma: claims interaction", "path", r.URL.Path, "err", err)
		e = newError(http.StatusInternalServerError, "server_error", "internal error")
	}
	s.back(w, r, in, url.Values{"error": {e.Code}, "error_description": {e.Description}})
}

// signInFirst sends the browser to the platform's sign-in and back here.
func signInFirst(w http.ResponseWriter, r *http.Request, in *interaction) {
	back := pathClaims + "?" + in.query().Encode()
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
}

// showInteraction is GET /uma/claims: the confirmation page, after sign-in.
// It reads the ticket without using it.
func (s *Server) showInteraction(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	in, err := s.loadInteraction(ctx, r.URL.Query())
	if err != nil {
		s.interactionRefused(w, r, http.StatusBadRequest, err)
		return
	}
	t, err := s.ticket(ctx, in.Ticket, in.client.ID, false)
	if err != nil {
		s.backWithError(w, r, in, err)
		return
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signInFirst(w, r, in)
		return
	}
	want, err := s.ticketResources(ctx, t)
	if err == nil && len(want) == 0 {
		err = newError(http.StatusBadRequest, "invalid_grant", "the ticket's resources no longer exist")
	}
	if err != nil {
		s.backWithError(w, r, in, err)
		return
	}
	v := claimsView{CSRF: s.csrf.Token(w, r), Action: pathClaims, UserName: u.UserName, ClientName: in.client.Name}
	if v.ClientName == "" {
		v.ClientName = in.client.ID
	}
	if ru, err := url.Parse(in.redirect); err == nil {
		v.RedirectHost = ru.Host
	}
	// The decision's answer redirects to the client.
	ui.FormTarget(w, in.redirect)
	for _, wt := range want {
		owner := wt.res.OwnerID
		if o, err := s.opts.Users.GetUser(ctx, owner); err == nil {
			owner = o.UserName
		}
		v.Resources = append(v.Resources, claimsResource{Name: wt.res.Name, Owner: owner, Scopes: wt.scopes})
	}
	q := in.query()
	for _, k := range interactionParams {
		if val := q.Get(k); val != "" {
			v.Params = append(v.Params, hiddenParam{k, val})
		}
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.claims, v)
}

// submitInteraction is POST /uma/claims: the party's decision. Continue uses
// the ticket and sends the client a new one bound to it and the party;
// Cancel uses the ticket and sends access_denied.
func (s *Server) submitInteraction(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxInteractionForm)
	if err := r.ParseForm(); err != nil {
		s.interactionRefused(w, r, http.StatusBadRequest, refusal.New("body", "the form could not be read"))
		return
	}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.kit.Render(w, r, http.StatusForbidden, s.pages.claims, claimsView{Error: s.kit.Translator(r)("The form expired or did not come from this site.")})
		return
	}
	in, err := s.loadInteraction(ctx, r.PostForm)
	if err != nil {
		s.interactionRefused(w, r, http.StatusBadRequest, err)
		return
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signInFirst(w, r, in)
		return
	}
	decision := r.PostForm.Get("decision")
	if decision != "allow" && decision != "deny" {
		s.interactionRefused(w, r, http.StatusBadRequest, refusal.New("decision", "choose Continue or Cancel"))
		return
	}
	t, err := s.ticket(ctx, in.Ticket, in.client.ID, true)
	if err != nil {
		s.backWithError(w, r, in, err)
		return
	}
	detail := auditJSON(map[string]any{"client": in.client.ID, "resourceServer": t.ClientID, "permissions": t.Permissions})
	party := store.Ref{Kind: store.KindUser, ID: u.ID}
	if decision == "deny" {
		if err := s.st.WithTx(ctx, func(tx store.Tx) error {
			return s.audit(ctx, tx, "user:"+u.ID, "uma.claims.declined", party, detail)
		}); err != nil {
			s.log.Error("uma: claims interaction: audit", "err", err)
		}
		s.backWithError(w, r, in, newError(http.StatusForbidden, "access_denied", "the requesting party cancelled"))
		return
	}
	nt, bound := s.mintTicket(t.ClientID, in.client.ID, u.ID, t.Permissions)
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.CreateUMATicket(ctx, bound); err != nil {
			return err
		}
		return s.audit(ctx, tx, "user:"+u.ID, "uma.claims.submitted", party, detail)
	})
	if err != nil {
		s.backWithError(w, r, in, err)
		return
	}
	s.back(w, r, in, url.Values{"ticket": {nt}})
}
