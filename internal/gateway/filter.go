package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
)

// Filter is one step of a route's chain (Caddy's middleware handler,
// Oathkeeper's authenticators and mutators): it either passes the request
// on with next.ServeHTTP, or refuses it by returning an error, which the
// gateway answers (a *Denial as its problem, anything else as a 500). A
// filter may add response headers before either.
type Filter interface {
	Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error
}

// filterFactory builds a filter from its configuration in a route (nil when
// the route names the filter without one); authenticated says whether a
// filter that authenticates (oauth2, uma) comes earlier in the chain.
type filterFactory func(g *Gateway, r *route, cfg json.RawMessage, authenticated bool) (Filter, error)

// filterFactories are the filters routes can name.
var filterFactories = map[string]filterFactory{
	"oauth2":   newOAuth2Filter,
	"uma":      newUMAFilter,
	"throttle": newThrottleFilter,
	"headers":  newHeadersFilter,
	"policy":   newPolicyFilter,
}

// authenticates tells the filters that make a route's caller known; a
// route has one of them, or is public.
func authenticates(f Filter) bool {
	switch f.(type) {
	case *oauth2Filter, *umaFilter:
		return true
	}
	return false
}

func filterNames() []string {
	var names []string
	for n := range filterFactories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// decodeConfig decodes a filter's configuration strictly; none decodes as {}.
func decodeConfig(cfg json.RawMessage, v any) error {
	if len(cfg) == 0 || string(cfg) == "null" {
		cfg = json.RawMessage("{}")
	}
	return decodeStrict(cfg, v)
}

// chain links filters in order before last.
func chain(g *Gateway, filters []Filter, last http.Handler) http.Handler {
	h := last
	for _, f := range slices.Backward(filters) {
		h = link{g: g, f: f, next: h}
	}
	return h
}

type link struct {
	g    *Gateway
	f    Filter
	next http.Handler
}

func (l link) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := l.f.Handle(w, r, l.next); err != nil {
		l.g.refuse(w, r, err)
	}
}

// Denial is a refused request: an RFC 9457 problem, with the RFC 6750 or RFC
// 9449 challenges for refusals of the token.
type Denial struct {
	Status int
	// Code is the OAuth error code (invalid_token, insufficient_scope,
	// invalid_request, invalid_dpop_proof, use_dpop_nonce) or the gateway's
	// (throttled, no_route, ...); it is the problem's "error" member.
	Code   string
	Detail string
	// Reason labels the denial in metrics and the access log.
	Reason string
	// Challenges are WWW-Authenticate values.
	Challenges []string
	// cause is why a token was refused (a *tokens.Error), for the filter
	// that decides what else to answer (the uma filter's fresh ticket).
	cause error
}

func (d *Denial) Error() string { return d.Code + ": " + d.Detail }

func (d *Denial) Unwrap() error { return d.cause }

// refuse answers err: a *Denial as itself, anything else as a 500 that is logged.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r)
	var d *Denial
	if !errors.As(err, &d) {
		g.log.Error("gateway: request failed", "route", x.routeName(), "path", r.URL.Path, "err", err)
		d = &Denial{Status: http.StatusInternalServerError, Code: "server_error", Reason: "error", Detail: "the gateway could not process the request"}
	}
	x.reason = d.Reason
	for _, c := range d.Challenges {
		w.Header().Add("WWW-Authenticate", c)
	}
	writeProblem(w, d.Status, d.Code, d.Detail)
}

// writeProblem answers an RFC 9457 problem; code is the "error" member.
func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail,omitempty"`
		Error  string `json:"error,omitempty"`
	}{"about:blank", http.StatusText(status), status, detail, code})
}

// quoted keeps a description inside an RFC 6750 §3 quoted string: printable
// ASCII without '"' and '\'.
func quoted(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}
