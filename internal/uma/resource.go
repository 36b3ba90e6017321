package uma

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Limits of a resource description; a description over them is refused
// with the field named, never truncated.
const (
	maxBody        = 64 << 10
	maxName        = 200
	maxDescription = 2000
	maxURI         = 2048
	maxScope       = 200
	maxScopes      = 64
	maxOwner       = 256
)

// Description is a resource description on the wire (Federated Authorization
// §3.1), plus thingid's "owner", with which a trusted resource server holding
// a client_credentials PAT names the owner (a user id or user name).
type Description struct {
	ID          string   `json:"_id,omitempty"`
	Scopes      []string `json:"resource_scopes"`
	Description string   `json:"description,omitempty"`
	IconURI     string   `json:"icon_uri,omitempty"`
	Name        string   `json:"name,omitempty"`
	Type        string   `json:"type,omitempty"`
	Owner       string   `json:"owner,omitempty"`
}

// readJSON reads one JSON value of at most maxBody bytes into v; a syntax or
// type error names the field.
func readJSON(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return refusal.New("body", "could not be read")
	}
	if len(b) > maxBody {
		return refusal.New("body", "larger than %d bytes", maxBody)
	}
	if depth(b) > maxDepth {
		return refusal.New("body", "nested deeper than %d levels", maxDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return refusal.New(te.Field, "must be %s", jsonKind(te.Type.Kind().String()))
		}
		return refusal.New("body", "not valid JSON: %v", err)
	}
	if dec.More() {
		return refusal.New("body", "has data after the JSON value")
	}
	return nil
}

// maxDepth bounds the nesting of a request body: no UMA body needs more
// than three levels.
const maxDepth = 16

// depth returns the deepest nesting of arrays and objects in b, ignoring
// brackets inside strings.
func depth(b []byte) int {
	d, most, inString, escaped := 0, 0, false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			d++
			most = max(most, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return most
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "of another type"
}

// ParseDescription reads and checks a resource description.
func ParseDescription(r io.Reader) (*Description, error) {
	var d Description
	if err := readJSON(r, &d); err != nil {
		return nil, err
	}
	return &d, d.check()
}

func (d *Description) check() error {
	if d.Scopes == nil {
		return refusal.New("resource_scopes", "is required (Federated Authorization §3.1)")
	}
	if len(d.Scopes) == 0 || len(d.Scopes) > maxScopes {
		// A resource without scopes could never be shared.
		return refusal.New("resource_scopes", "1 to %d scopes", maxScopes)
	}
	for i, sc := range d.Scopes {
		if !ValidScope(sc) {
			return refusal.New(fmt.Sprintf("resource_scopes[%d]", i), "not a scope: 1 to %d printable characters without spaces, quotes or backslashes", maxScope)
		}
		for _, o := range d.Scopes[:i] {
			if o == sc {
				return refusal.New(fmt.Sprintf("resource_scopes[%d]", i), "%q is listed twice", sc)
			}
		}
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"name", d.Name, maxName}, {"type", d.Type, maxURI}, {"description", d.Description, maxDescription}, {"owner", d.Owner, maxOwner}} {
		if len(f.v) > f.max {
			return refusal.New(f.name, "longer than %d bytes", f.max)
		}
		if !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }) {
			return refusal.New(f.name, "contains control characters or invalid UTF-8")
		}
	}
	if d.IconURI != "" {
		u, err := url.Parse(d.IconURI)
		if len(d.IconURI) > maxURI || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return refusal.New("icon_uri", "must be an absolute http(s) URL of at most %d bytes", maxURI)
		}
	}
	if strings.HasPrefix(d.ID, thingPrefix) {
		return refusal.New("_id", "ids starting with %q are thingid's own", thingPrefix)
	}
	return nil
}

// ValidScope: RFC 6749 §3.3 scope-token, bounded.
func ValidScope(s string) bool {
	return s != "" && len(s) <= maxScope && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' })
}

func (s *Server) fieldProblem(w http.ResponseWriter, r *http.Request, err error) {
	var fe *refusal.FieldError
	if errors.As(err, &fe) {
		s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", fe.Error()))
		return
	}
	s.writeError(w, r, err)
}

func (s *Server) policyURI(id string) string {
	return s.issuer + pathSharing + "?resource=" + url.QueryEscape(id)
}

// owner resolves the owner a request names, within what the PAT allows.
func (s *Server) owner(ctx context.Context, p *pat, named string) (string, error) {
	if named == "" {
		if p.owner == "" {
			return "", newError(http.StatusBadRequest, "invalid_request", "owner: a client_credentials PAT must name the owner (user id or user name)")
		}
		return p.owner, nil
	}
	u, err := s.opts.Users.GetUser(ctx, named)
	if errors.Is(err, store.ErrNotFound) {
		u, err = s.opts.Users.GetUserByName(ctx, named)
	}
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Status != store.StatusActive) {
		return "", newError(http.StatusBadRequest, "invalid_request", "owner: no such active user")
	}
	if err != nil {
		return "", err
	}
	if p.owner != "" && u.ID != p.owner {
		// An owner's PAT registers for that owner only: nobody else consented.
		return "", newError(http.StatusForbidden, "invalid_request", "owner: this PAT acts for another owner, who alone consented")
	}
	return u.ID, nil
}

// createResource is Federated Authorization §3.2.1.
func (s *Server) createResource(w http.ResponseWriter, r *http.Request) {
	p, err := s.protection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d, err := ParseDescription(http.MaxBytesReader(w, r.Body, maxBody+1))
	if err != nil {
		s.fieldProblem(w, r, err)
		return
	}
	owner, err := s.owner(r.Context(), p, d.Owner)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res := &store.UMAResource{OwnerID: owner, ClientID: p.client, Name: d.Name, Type: d.Type, IconURI: d.IconURI,
		Description: d.Description, Scopes: d.Scopes}
	err = s.st.WithTx(r.Context(), func(tx store.Tx) error {
		if err := tx.CreateUMAResource(r.Context(), res); err != nil {
			return err
		}
		return s.audit(r.Context(), tx, "client:"+p.client, "uma.resource.create", resourceRef(res.ID), auditJSON(map[string]any{"owner": owner, "scopes": d.Scopes}))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", s.issuer+pathResourceSet+"/"+url.PathEscape(res.ID))
	writeJSON(w, http.StatusCreated, map[string]string{"_id": res.ID, "user_access_policy_uri": s.policyURI(res.ID)})
}

func auditJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// served loads the {id} of a request if the PAT may act on it.
func (s *Server) served(r *http.Request, p *pat) (*store.UMAResource, error) {
	res, err := s.resource(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !p.serves(res)) {
		// Someone else's resource is reported as missing: no probing.
		return nil, newError(http.StatusNotFound, "not_found", "no resource with this id for this resource server and owner")
	}
	return res, err
}

func describe(res *store.UMAResource) Description {
	return Description{ID: res.ID, Scopes: nonNil(res.Scopes), Description: res.Description, IconURI: res.IconURI, Name: res.Name, Type: res.Type}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// readResource is Federated Authorization §3.2.2.
func (s *Server) readResource(w http.ResponseWriter, r *http.Request) {
	p, err := s.protection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.served(r, p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	d := describe(res)
	if p.owner == "" {
		d.Owner = res.OwnerID
	}
	writeJSON(w, http.StatusOK, d)
}

// updateResource is Federated Authorization §3.2.3: the description is
// replaced; the owner stays.
func (s *Server) updateResource(w http.ResponseWriter, r *http.Request) {
	p, res, ok := s.registered(w, r)
	if !ok {
		return
	}
	d, err := ParseDescription(http.MaxBytesReader(w, r.Body, maxBody+1))
	if err != nil {
		s.fieldProblem(w, r, err)
		return
	}
	if d.Owner != "" && d.Owner != res.OwnerID {
		if o, err := s.owner(r.Context(), p, d.Owner); err != nil || o != res.OwnerID {
			s.writeError(w, r, newError(http.StatusBadRequest, "invalid_request", "owner: a resource's owner cannot change"))
			return
		}
	}
	res.Name, res.Type, res.IconURI, res.Description, res.Scopes = d.Name, d.Type, d.IconURI, d.Description, d.Scopes
	err = s.st.WithTx(r.Context(), func(tx store.Tx) error {
		if err := tx.UpdateUMAResource(r.Context(), res); err != nil {
			return err
		}
		return s.audit(r.Context(), tx, "client:"+p.client, "uma.resource.update", resourceRef(res.ID), auditJSON(map[string]any{"scopes": d.Scopes}))
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"_id": res.ID, "user_access_policy_uri": s.policyURI(res.ID)})
}

// deleteResource is Federated Authorization §3.2.4. The RPTs resting on
// the resource's shares are revoked.
func (s *Server) deleteResource(w http.ResponseWriter, r *http.Request) {
	p, res, ok := s.registered(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	shares, err := s.st.ListUMAShares(ctx, store.UMAShareFilter{ResourceID: res.ID})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	actor := "client:" + p.client
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.DeleteUMAResource(ctx, res.ID); err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "uma.resource.delete", resourceRef(res.ID), "")
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.revokeShareGrants(ctx, actor, "uma resource deleted", shares); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listResources is Federated Authorization §3.2.5: the ids of the resources
// this resource server registered (for the PAT's owner; a trusted resource
// server may ask ?owner=).
func (s *Server) listResources(w http.ResponseWriter, r *http.Request) {
	p, err := s.protection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := store.UMAResourceFilter{ClientID: p.client, OwnerID: p.owner}
	if o := r.URL.Query().Get("owner"); o != "" {
		if f.OwnerID, err = s.owner(r.Context(), p, o); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	rs, err := s.st.ListUMAResources(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ids := make([]string, 0, len(rs))
	for _, x := range rs {
		ids = append(ids, x.ID)
	}
	writeJSON(w, http.StatusOK, ids)
}

// revokeShareGrants revokes the RPTs issued on shares that were deleted or
// changed (after that committed: see store.UMA), for reason.
func (s *Server) revokeShareGrants(ctx context.Context, actor, reason string, shares []*store.UMAShare) error {
	var ids []string
	for _, sh := range shares {
		gs, err := s.st.ListUMAShareGrants(ctx, sh.ID)
		if err != nil {
			return err
		}
		ids = append(ids, gs...)
	}
	return s.revokeGrants(ctx, actor, reason, ids)
}

// registered is the prelude of changing a resource: the PAT, the resource it
// serves, and not a thing's (which follows the thing and is changed there).
// It has answered the request when ok is false.
func (s *Server) registered(w http.ResponseWriter, r *http.Request) (p *pat, res *store.UMAResource, ok bool) {
	p, err := s.protection(r)
	if err == nil {
		res, err = s.served(r, p)
	}
	if err == nil && strings.HasPrefix(res.ID, thingPrefix) {
		err = newError(http.StatusMethodNotAllowed, "method_not_allowed", "a thing's resource follows the thing; change or unlink the thing instead")
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, nil, false
	}
	return p, res, true
}
