package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/tokens"
)

// Tickets asks the UMA authorization server for permission tickets (UMA 2.0
// Federated Authorization §4) on behalf of the resource servers the gateway
// stands in front of; internal/server adapts *uma.Server to it.
type Tickets interface {
	// Ticket returns a single-use, short-lived ticket for scopes of
	// resource, bound to resourceServer (a client id) and, when client is
	// not "", to the requesting client. A resource that does not exist or
	// is not the resource server's is ErrUnknownResource; a scope the
	// resource lacks, ErrUnknownScope.
	Ticket(ctx context.Context, resourceServer, client, resource string, scopes []string) (string, error)
}

// Refusals of Tickets.Ticket.
var (
	ErrUnknownResource = errors.New("no such resource of the route's resource server")
	ErrUnknownScope    = errors.New("the resource has no such scope")
)

// UMAOptions makes the uma filter available to routes.
type UMAOptions struct {
	// Issuer is the UMA authorization server, as_uri of the challenges
	// (UMA 2.0 Grant §3.2): an https URL.
	Issuer string
	// ResourceServers are the client ids a route may name as its resource
	// server: the trusted first-party resource servers
	// (uma.trustedResourceServers), for which the gateway asks tickets
	// without a PAT.
	ResourceServers []string
	Tickets         Tickets
}

// checkUMA checks o and returns the start of every UMA challenge.
func checkUMA(o *UMAOptions) (string, error) {
	u, err := url.Parse(o.Issuer)
	switch {
	case o.Tickets == nil:
		return "", errors.New("gateway: UMA needs Tickets")
	case err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsFunc(o.Issuer, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }):
		return "", fmt.Errorf("gateway: UMA issuer %q must be an https URL", o.Issuer)
	}
	return "UMA " + realm + ", as_uri=" + quotedString(o.Issuer), nil
}

// umaFilter is a UMA 2.0 resource server (UMA 2.0 Grant §3.2, Federated
// Authorization §4, §5) for a resource server behind the gateway: the
// request is for a resource of the route's resource server, named by its
// path, and needs the scopes its method maps to. An RPT whose permissions
// grant them passes, checked locally as the oauth2 filter checks a token;
// any other request gets 401 with a permission ticket for exactly that
// resource and those scopes, which the client redeems for an RPT at the
// authorization server's token endpoint.
type umaFilter struct {
	g              *Gateway
	resourceServer string
	resource       resourceTemplate
	scopes         methodScopes
}

type umaConfig struct {
	// ResourceServer is the client id of the resource server whose
	// resources the route serves; one of UMAOptions.ResourceServers.
	ResourceServer string `json:"resourceServer"`
	// Resource is the resource id of a request: fixed, or made of the
	// wildcards of match.pathPattern ("{playlist}", "thing:{id}").
	Resource string `json:"resource"`
	// Scopes maps a method (or "*") to the resource scopes it needs, as
	// the oauth2 filter's scopes.
	Scopes map[string][]string `json:"scopes"`
}

func newUMAFilter(g *Gateway, rt *route, raw json.RawMessage, _ bool) (Filter, error) {
	var c umaConfig
	if err := decodeConfig(raw, &c); err != nil {
		return nil, err
	}
	if g.opts.UMA == nil {
		return nil, errors.New("this gateway has no UMA authorization server")
	}
	if c.ResourceServer == "" {
		return nil, errors.New("resourceServer: required, the client id of the resource server whose resources this route serves")
	}
	if !slices.Contains(g.opts.UMA.ResourceServers, c.ResourceServer) {
		return nil, fmt.Errorf("resourceServer: %q is not in uma.trustedResourceServers (the gateway asks tickets for trusted resource servers only)", c.ResourceServer)
	}
	tmpl, err := parseResourceTemplate(c.Resource, rt.match.pattern)
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	scopes, err := parseMethodScopes(c.Scopes)
	if err != nil {
		return nil, err
	}
	// Every request the route serves must need a scope: a method without
	// one would pass with any RPT of the resource, or none be asked.
	if len(scopes.any) == 0 {
		if len(rt.match.methods) == 0 {
			return nil, errors.New(`scopes: "*" is required when match.methods does not list the methods (every request needs a scope of its resource)`)
		}
		for _, m := range rt.match.methods {
			if len(scopes.required(m)) == 0 {
				return nil, fmt.Errorf("scopes: no scope for %s, which match.methods allows", m)
			}
		}
	}
	return &umaFilter{g: g, resourceServer: c.ResourceServer, resource: tmpl, scopes: scopes}, nil
}

func (f *umaFilter) Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error {
	x := exchangeOf(r)
	resource, ok := f.resource.expand(x.found.params)
	if !ok {
		return &Denial{Status: http.StatusNotFound, Code: "no_resource", Reason: "no_resource",
			Detail: "the path names no valid resource id"}
	}
	need := f.scopes.required(r.Method)
	_, id, err := f.g.credential(w, r, x, f.g.opts.Audience)
	switch {
	case err != nil:
		return f.refused(w, r, err, resource, need)
	case id == nil:
		t, err := f.ticket(w, r, "", resource, need)
		if err != nil {
			return err
		}
		return &Denial{Status: http.StatusUnauthorized, Reason: "no_token", Challenges: []string{f.challenge(t)},
			Detail: "an RPT is required: redeem the ticket of the UMA challenge at the authorization server's token endpoint (UMA 2.0 Grant §3.3)"}
	}
	held := id.permitted(resource, need, f.g.now().Unix())
	if held == nil {
		// A token that is no RPT, or whose permissions lack this resource
		// or scope (or expired): a ticket for what this request needs,
		// bound to the client that presented the token.
		t, err := f.ticket(w, r, id.claims.ClientID, resource, need)
		if err != nil {
			return err
		}
		return &Denial{Status: http.StatusUnauthorized, Reason: "no_permission", Challenges: []string{f.challenge(t)},
			Detail: "the token grants no permission " + strings.Join(need, " ") + " on resource " + resource +
				": redeem the ticket of the UMA challenge (with rpt to upgrade this RPT) at the authorization server's token endpoint"}
	}
	x.id, x.perm = id, held
	next.ServeHTTP(w, r)
	return nil
}

// refused adds to the refusal of an expired or revoked token, for which a
// new RPT would do, a fresh ticket, bound to no client (the token that
// would name it is refused).
func (f *umaFilter) refused(w http.ResponseWriter, r *http.Request, err error, resource string, need []string) error {
	var d *Denial
	if errors.As(err, &d) && (errors.Is(err, tokens.ErrExpired) || errors.Is(err, tokens.ErrRevoked)) {
		if t, terr := f.ticket(w, r, "", resource, need); terr == nil {
			d.Challenges = append(d.Challenges, f.challenge(t))
		}
	}
	return err
}

// ticket asks a ticket for resource and need; a refusal is the answer to give.
func (f *umaFilter) ticket(w http.ResponseWriter, r *http.Request, client, resource string, need []string) (string, error) {
	t, err := f.g.opts.UMA.Tickets.Ticket(r.Context(), f.resourceServer, client, resource, need)
	switch {
	case err == nil:
		return t, nil
	case errors.Is(err, ErrUnknownResource):
		return "", &Denial{Status: http.StatusNotFound, Code: "no_resource", Reason: "no_resource",
			Detail: "no resource " + resource + " of this route's resource server"}
	case errors.Is(err, ErrUnknownScope):
		return "", &Denial{Status: http.StatusForbidden, Code: "invalid_scope", Reason: "invalid_scope",
			Detail: "resource " + resource + " has no scope " + strings.Join(need, " ") + ", which this request needs"}
	}
	// UMA 2.0 Grant §3.2: without a ticket, 403 and this warning.
	f.g.log.Error("gateway: uma: no permission ticket", "route", exchangeOf(r).routeName(), "resource", resource, "err", err)
	w.Header().Set("Warning", `199 - "UMA Authorization Server Unreachable"`)
	return "", &Denial{Status: http.StatusForbidden, Code: "temporarily_unavailable", Reason: "ticket_error",
		Detail: "the authorization server gave no permission ticket; try again later"}
}

// challenge is the UMA 2.0 Grant §3.2 WWW-Authenticate value with ticket.
func (f *umaFilter) challenge(ticket string) string {
	return f.g.umaChallenge + ", ticket=" + quotedString(ticket)
}

// quotedString writes s as an RFC 9110 §5.6.4 quoted-string: '"' and '\'
// escaped; characters a quoted-string cannot hold (controls, non-ASCII)
// become '?'.
func quotedString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t' || (c >= ' ' && c <= '~'):
			b.WriteByte(c)
		default:
			b.WriteByte('?')
		}
	}
	b.WriteByte('"')
	return b.String()
}

// maxResourceID bounds a resource id, as the permission endpoint does.
const maxResourceID = 256

// resourceTemplate makes a request's resource id from the wildcards of its
// path: a fixed id, "{playlist}", or "thing:{id}".
type resourceTemplate struct {
	parts []templatePart
}

// templatePart is a literal, or the value of a wildcard.
type templatePart struct {
	lit, param string
}

// parseResourceTemplate reads a resource template: literal characters
// (printable ASCII without space, '{' and '}') and {name}s, each a
// one-segment wildcard of pattern (the route's match.pathPattern).
func parseResourceTemplate(s string, pattern []patSeg) (resourceTemplate, error) {
	if s == "" {
		return resourceTemplate{}, errors.New("required: a resource id, or {name} of a wildcard of match.pathPattern")
	}
	if len(s) > maxResourceID {
		return resourceTemplate{}, fmt.Errorf("longer than %d bytes", maxResourceID)
	}
	var t resourceTemplate
	for rest := s; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open != 0 {
			lit := rest
			if open > 0 {
				lit = rest[:open]
			}
			if strings.ContainsFunc(lit, func(r rune) bool { return r <= ' ' || r > '~' }) {
				return resourceTemplate{}, fmt.Errorf("%q: a resource id is printable ASCII without spaces", s)
			}
			t.parts = append(t.parts, templatePart{lit: lit})
			rest = rest[len(lit):]
			continue
		}
		end := strings.IndexByte(rest, '}')
		if rest[0] == '}' || end < 0 {
			return resourceTemplate{}, fmt.Errorf("%q: unbalanced { }", s)
		}
		name := rest[1:end]
		i := slices.IndexFunc(pattern, func(p patSeg) bool { return p.name == name })
		switch {
		case !validName(name):
			return resourceTemplate{}, fmt.Errorf("%q: {%s}: wildcard names are letters, digits and _", s, name)
		case i < 0:
			return resourceTemplate{}, fmt.Errorf("%q: {%s} is not a wildcard of match.pathPattern", s, name)
		case pattern[i].rest:
			return resourceTemplate{}, fmt.Errorf("%q: {%s...} spans segments; a resource id is one segment", s, name)
		}
		t.parts = append(t.parts, templatePart{param: name})
		rest = rest[end+1:]
	}
	return t, nil
}

// expand is the resource id of a request whose path has the wildcard values
// params (escaped, as in the canonical path); false when that is no valid
// id: longer than maxResourceID, not UTF-8, with control characters.
func (t resourceTemplate) expand(params map[string]string) (string, bool) {
	var id string
	if len(t.parts) == 1 { // the usual "{name}", or a fixed id: no allocation
		id = t.parts[0].lit
		if p := t.parts[0].param; p != "" {
			id = unescapeSegment(params[p])
		}
	} else {
		var b strings.Builder
		for _, p := range t.parts {
			if p.param == "" {
				b.WriteString(p.lit)
			} else {
				b.WriteString(unescapeSegment(params[p.param]))
			}
		}
		id = b.String()
	}
	if id == "" || len(id) > maxResourceID || !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return "", false
	}
	return id, true
}

// unescapeSegment decodes a segment of a canonical path; "" when it does
// not decode, which is no resource id.
func unescapeSegment(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	v, err := url.PathUnescape(s)
	if err != nil {
		return ""
	}
	return v
}

var _ Filter = (*umaFilter)(nil)
