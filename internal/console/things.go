package console

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// refused is the refusal of a console form's input field, named as the
// form names it (shown at the field), for the reason format; the
// catalogues' test finds the page text of its calls by this name.
func refused(field, format string, args ...any) *refusal.FieldError {
	return refusal.New(field, format, args...)
}

// maxSearchText bounds a search field, in bytes.
const maxSearchText = 256

// thingSearch is the things search form.
type thingSearch struct {
	Serial, MAC, Model, Owner, Status string
	Page                              int
}

func (q thingSearch) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"serial": q.Serial, "mac": q.MAC, "model": q.Model, "owner": q.Owner, "status": q.Status} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// parseThingSearch reads the form's query parameters.
func parseThingSearch(v url.Values) (thingSearch, error) {
	q := thingSearch{Serial: strings.TrimSpace(v.Get("serial")), MAC: strings.TrimSpace(v.Get("mac")),
		Model: strings.TrimSpace(v.Get("model")), Owner: strings.TrimSpace(v.Get("owner")), Status: v.Get("status")}
	for name, s := range map[string]string{"serial": q.Serial, "mac": q.MAC, "model": q.Model, "owner": q.Owner} {
		if len(s) > maxSearchText {
			return q, refused(name, "at most %d characters", maxSearchText)
		}
	}
	switch store.Status(q.Status) {
	case "", store.StatusActive, store.StatusDisabled:
	default:
		return q, refused("status", "choose active or disabled")
	}
	page, err := pageParam(v)
	if err != nil {
		return q, err
	}
	q.Page = page
	return q, nil
}

// pageParam reads page, 1 when absent.
func pageParam(v url.Values) (int, error) {
	p := v.Get("page")
	if p == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, refused("page", "a page number from 1")
	}
	return n, nil
}

// and joins conditions; nil when there are none.
func and(conds ...store.Expr) store.Expr {
	var out store.Expr
	for _, c := range conds {
		if c == nil {
			continue
		}
		if out == nil {
			out = c
		} else {
			out = store.And{Left: out, Right: c}
		}
	}
	return out
}

func eq(field, value string) store.Expr {
	if value == "" {
		return nil
	}
	return store.Compare{Field: field, Op: store.OpEq, Value: value}
}

// thingQuery is the search as the store's query, which the store compiles
// to SQL as it does SCIM's: the database selects and pages, never this
// process. found is false when the owner named is no user (nothing can
// match).
func (c *Console) thingQuery(r *http.Request, q thingSearch) (sq store.Query, found bool, err error) {
	var mac string
	if q.MAC != "" {
		if mac, err = normalizeMAC(q.MAC); err != nil {
			return sq, false, err
		}
	}
	var owner string
	if q.Owner != "" {
		u, err := c.opts.Identities.GetUserByName(r.Context(), q.Owner)
		if errors.Is(err, store.ErrNotFound) {
			return sq, false, nil
		}
		if err != nil {
			return sq, false, err
		}
		owner = u.ID
	}
	return ThingQuery(q.Serial, mac, q.Model, owner, q.Status, q.Page), true, nil
}

// ThingQuery is the query of the things page for page (from 1) of a
// search: the conditions given (empty ones left out; mac as stored, lower
// case with colons; owner a user's ID), sorted by serial number, counted up
// to countBound past the page (a search matching most of a million things
// says "more than"). The search benchmark (bench/search) measures exactly
// this query.
func ThingQuery(serial, mac, model, owner, status string, page int) store.Query {
	offset := (page - 1) * pageSize
	return store.Query{Filter: and(eq("serialNumber", serial), eq("macAddresses", mac), eq("model", model), eq("owners", owner), eq("status", status)),
		SortBy: "serialNumber", Offset: offset, Limit: pageSize, CountLimit: offset + countBound}
}

// countBound is how many matches past its offset a search counts.
const countBound = 10_000

// normalizeMAC accepts a MAC address as people write it (colons, dashes,
// dots or none; any case) and returns it as stored: lower case with colons.
func normalizeMAC(s string) (string, error) {
	hexits := strings.Map(func(r rune) rune {
		switch r {
		case ':', '-', '.':
			return -1
		}
		return r
	}, strings.ToLower(s))
	b, err := hex.DecodeString(hexits)
	if err != nil || (len(b) != 6 && len(b) != 8) {
		return "", refused("mac", "not a MAC address (six or eight bytes in hexadecimal, for example 00:1a:2b:3c:4d:5e)")
	}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = hex.EncodeToString([]byte{x})
	}
	return strings.Join(parts, ":"), nil
}

type thingRow struct {
	Link, DisplayName, SerialNumber, Model, Manufacturer, Status string
	MACs                                                         string
}

type thingsPage struct {
	base
	Q     thingSearch
	Error *refusal.FieldError
	Rows  []thingRow
	// Total is how many match; More: more than Total (the count's bound).
	Total                string
	More                 bool
	Searched, NoOwner    bool
	PrevLink, NextLink   string
	FirstShown, LastShow int
}

// showThings is GET /admin/things: the search form and one page of results.
func (c *Console) showThings(w http.ResponseWriter, r *http.Request, s staff) {
	p := thingsPage{base: c.base(w, r, s)}
	q, err := parseThingSearch(r.URL.Query())
	p.Q = q
	if errors.As(err, &p.Error) {
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.things, p)
		return
	}
	p.Searched = len(q.values()) > 0
	if !p.Searched {
		c.kit.Render(w, r, http.StatusOK, c.pages.things, p)
		return
	}
	sq, found, err := c.thingQuery(r, q)
	if errors.As(err, &p.Error) {
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.things, p)
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	if !found {
		p.NoOwner = true
		c.kit.Render(w, r, http.StatusOK, c.pages.things, p)
		return
	}
	things, total, err := c.opts.Identities.ListThings(r.Context(), sq)
	if qe, ok := errors.AsType[*store.QueryError](err); ok {
		// Text no column holds (a NUL, broken UTF-8), refused by the store.
		p.Error = qe.At(searchInputs[qe.Field])
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.things, p)
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	if total > 0 {
		p.Total = strconv.Itoa(total)
	}
	if total > sq.CountLimit {
		p.Total, p.More = strconv.Itoa(sq.CountLimit), true
	}
	for _, t := range things {
		p.Rows = append(p.Rows, thingRow{Link: pathOf("things", t.ID), DisplayName: t.DisplayName, SerialNumber: t.SerialNumber,
			Model: t.Model, Manufacturer: t.Manufacturer, Status: string(t.Status), MACs: strings.Join(t.MACAddresses, ", ")})
	}
	p.PrevLink, p.NextLink, p.FirstShown, p.LastShow = pager(Path+"/things", q.values(), q.Page, len(things), total)
	c.kit.Render(w, r, http.StatusOK, c.pages.things, p)
}

// searchInputs are the inputs of the things search by the store's fields.
var searchInputs = map[string]string{"serialNumber": "serial", "macAddresses": "mac", "model": "model", "owners": "owner", "status": "status"}

// pager returns the links to the pages around page and the rows shown.
func pager(path string, v url.Values, page, rows, total int) (prev, next string, first, last int) {
	link := func(n int) string {
		v.Set("page", strconv.Itoa(n))
		return path + "?" + v.Encode()
	}
	if page > 1 {
		prev = link(page - 1)
	}
	if page*pageSize < total {
		next = link(page + 1)
	}
	first = (page-1)*pageSize + 1
	return prev, next, min(first, first+rows-1), first + rows - 1
}

type ownerRow struct {
	Link, UserName, DisplayName, ID, Since string
}

type certRow struct {
	Fingerprint, Serial, Subject, Issuer, NotAfter string
	Revoked                                        bool
}

type grantRow struct {
	ID, User, UserLink, UserID, Client, Scopes, Created, LastUsed, Revoked string
}

type cwtRow struct {
	CTI, Client, Audience, Scope, Issued, Expires string
	Revoked                                       bool
}

type connRow struct {
	ClientID, Remote, Listener string
	Connected                  bool
}

type auditRow struct {
	Time, Actor, Action, Subject, Detail string
}

type attrRow struct{ Name, Value string }

type thingPage struct {
	base
	T           *store.Thing
	Attributes  []attrRow
	Owners      []ownerRow
	Household   string
	Batches     []batchRow
	Certs       []certRow
	Grants      []grantRow
	ACEOff      bool
	CWTs        []cwtRow
	Connections []connRow
	BrokerOff   bool
	LastSeen    string
	Audit       []auditRow
	AuditLink   string
	GrantAction string
}

// showThing is GET /admin/things/{id}.
func (c *Console) showThing(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	t, err := c.opts.Identities.GetThing(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, http.StatusNotFound, "No such thing", "There is no thing with this ID. Search for it on the things page.")
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := thingPage{base: c.base(w, r, s), T: t, GrantAction: pathOf("things", t.ID) + "/grants/revoke"}
	for k, v := range t.Attributes {
		b, _ := json.Marshal(v)
		p.Attributes = append(p.Attributes, attrRow{k, string(b)})
	}
	slices.SortFunc(p.Attributes, func(a, b attrRow) int { return strings.Compare(a.Name, b.Name) })
	ref := store.Ref{Kind: store.KindThing, ID: t.ID}
	rels, err := c.opts.Identities.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &ref})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	for _, rel := range rels {
		row := ownerRow{Link: pathOf("users", rel.From.ID), ID: rel.From.ID, Since: formatTime(rel.Created)}
		if u, err := c.opts.Identities.GetUser(ctx, rel.From.ID); err == nil {
			row.UserName, row.DisplayName = u.UserName, u.DisplayName
		}
		p.Owners = append(p.Owners, row)
	}
	if pl, err := c.opts.Store.GetPlacement(ctx, t.ID); err == nil {
		p.Household = pl.HouseholdID
		if g, err := c.opts.Identities.GetGroup(ctx, pl.HouseholdID); err == nil {
			p.Household = g.DisplayName
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		c.pageError(w, r, err)
		return
	}
	batches, err := c.opts.Store.ThingFactoryBatches(ctx, t.ID)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	for _, b := range batches {
		p.Batches = append(p.Batches, batchRowOf(b))
	}
	for _, cr := range t.Certificates {
		p.Certs = append(p.Certs, certRow{Fingerprint: cr.FingerprintSHA256, Serial: cr.SerialNumber, Subject: cr.Subject,
			Issuer: cr.Issuer, NotAfter: formatTime(cr.NotAfter), Revoked: c.certRevoked(cr.FingerprintSHA256)})
	}
	gs, err := c.opts.Store.ListGrants(ctx, store.GrantFilter{ThingID: t.ID, IncludeRevoked: true})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	var lastSeen time.Time
	p.Grants, lastSeen = c.grantRows(r, gs, func(g *store.Grant) bool { return g.ThingID == t.ID })
	if c.opts.CWTs == nil {
		p.ACEOff = true
	} else {
		cwts, err := c.opts.CWTs.IssuedCWTs(ctx, t.ID)
		if err != nil {
			c.pageError(w, r, err)
			return
		}
		for _, i := range cwts {
			p.CWTs = append(p.CWTs, cwtRow{CTI: i.CTIHex, Client: i.Client, Audience: strings.Join(i.Audience, " "), Scope: i.Scope,
				Issued: formatTime(i.IssuedAt), Expires: formatTime(i.ExpiresAt), Revoked: i.Revoked})
		}
	}
	if c.opts.Connections == nil {
		p.BrokerOff = true
	} else {
		for _, cn := range c.opts.Connections.Connections() {
			if cn.Thing == t.ID {
				p.Connections = append(p.Connections, connRow{ClientID: cn.ClientID, Remote: cn.Remote, Listener: cn.Listener, Connected: cn.Connected})
			}
		}
	}
	p.LastSeen = formatTime(lastSeen)
	f := audit.Filter{Subject: t.ID, SubjectKind: store.KindThing}
	if p.Audit, err = c.trail(r, s, f); err != nil {
		c.pageError(w, r, err)
		return
	}
	p.AuditLink = Path + "/audit?" + f.Values().Encode()
	c.kit.Render(w, r, http.StatusOK, c.pages.thing, p)
}

// certRevoked reads the revocation of a certificate by its hex fingerprint.
func (c *Console) certRevoked(fingerprint string) bool {
	b, err := hex.DecodeString(fingerprint)
	if err != nil {
		return false
	}
	return c.opts.Certificates.Revoked(base64.RawURLEncoding.EncodeToString(b))
}

// grantRows shows the grants keep selects, newest first, and when the
// newest of them was last used.
func (c *Console) grantRows(r *http.Request, gs []*store.Grant, keep func(*store.Grant) bool) ([]grantRow, time.Time) {
	var rows []grantRow
	var last time.Time
	slices.SortFunc(gs, func(a, b *store.Grant) int { return b.Created.Compare(a.Created) })
	for _, g := range gs {
		if !keep(g) {
			continue
		}
		if g.LastUsed.After(last) {
			last = g.LastUsed
		}
		row := grantRow{ID: g.ID, UserID: g.UserID, Client: g.ClientID, Scopes: strings.Join(g.Scopes, " "),
			Created: formatTime(g.Created), LastUsed: formatTime(g.LastUsed), Revoked: formatTime(g.RevokedAt)}
		if cl, err := c.opts.Store.GetClient(r.Context(), g.ClientID); err == nil && cl.Name != "" {
			row.Client = cl.Name
		}
		if g.UserID != "" {
			row.UserLink = pathOf("users", g.UserID)
			row.User = g.UserID
			if u, err := c.opts.Identities.GetUser(r.Context(), g.UserID); err == nil {
				row.User = u.UserName
			}
		}
		rows = append(rows, row)
	}
	return rows, last
}

// trailSize is how many audit records a thing's or user's page shows.
const trailSize = 20

// trail reads the newest records about a subject.
func (c *Console) trail(r *http.Request, s staff, f audit.Filter) ([]auditRow, error) {
	page, err := c.readAudit(r, s, audit.Query{Filter: f, Limit: trailSize})
	if err != nil {
		return nil, err
	}
	return auditRows(page.Records), nil
}

func auditRows(recs []audit.Record) []auditRow {
	rows := make([]auditRow, len(recs))
	for i, rec := range recs {
		rows[i] = auditRow{Time: formatTime(rec.Time), Actor: rec.Actor, Action: rec.Action, Detail: string(rec.Detail)}
		if rec.Subject != nil {
			rows[i].Subject = string(rec.Subject.Kind) + ":" + rec.Subject.ID
		}
	}
	return rows
}

// submitThingStatus is POST .../disable and .../enable.
func (c *Console) submitThingStatus(to store.Status) handler {
	return func(w http.ResponseWriter, r *http.Request, s staff) {
		id := r.PathValue("id")
		_, err := c.opts.Identities.UpdateThing(r.Context(), s.actor(), id, 0, func(t *store.Thing) error {
			t.Status = to
			return nil
		})
		if c.changeFailed(w, r, err) {
			return
		}
		done(w, r, pathOf("things", id), map[store.Status]string{store.StatusActive: "enabled", store.StatusDisabled: "disabled"}[to])
	}
}

// submitUnlink is POST .../unlink with the owner's user id.
func (c *Console) submitUnlink(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	err := c.opts.Grants.Unlink(r.Context(), s.actor(), r.PostForm.Get("user"), id)
	if c.changeFailed(w, r, err) {
		return
	}
	done(w, r, pathOf("things", id), "unlinked")
}

// submitRevokeCert is POST .../certificates/revoke with the fingerprint:
// only a certificate recorded on this thing.
func (c *Console) submitRevokeCert(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	t, err := c.opts.Identities.GetThing(r.Context(), id)
	if c.changeFailed(w, r, err) {
		return
	}
	fp := r.PostForm.Get("fingerprint")
	if !slices.ContainsFunc(t.Certificates, func(cr store.CertRef) bool { return cr.FingerprintSHA256 == fp }) {
		c.message(w, r, http.StatusBadRequest, "No such certificate", "fingerprint: this thing has no certificate with this fingerprint.")
		return
	}
	_, err = c.opts.Certificates.Revoke(r.Context(), s.actor(), certauth.Revocation{ThingID: id, Fingerprint: fp, Reason: certauth.ReasonPrivilegeWithdrawn})
	if c.changeFailed(w, r, err) {
		return
	}
	done(w, r, pathOf("things", id), "revoked")
}

// submitRevokeThingGrant is POST .../grants/revoke with the grant's id: a
// grant a user gave for this thing.
func (c *Console) submitRevokeThingGrant(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	gid := r.PostForm.Get("grant")
	gs, err := c.opts.Store.ListGrants(r.Context(), store.GrantFilter{ThingID: id})
	if c.changeFailed(w, r, err) {
		return
	}
	i := slices.IndexFunc(gs, func(g *store.Grant) bool { return g.ID == gid && g.ThingID == id && g.UserID != "" })
	if i < 0 {
		c.message(w, r, http.StatusBadRequest, "No such grant", "grant: this thing has no active grant of a user with this ID.")
		return
	}
	if c.changeFailed(w, r, c.opts.Grants.RevokeUserGrant(r.Context(), s.actor(), gs[i].UserID, gid)) {
		return
	}
	done(w, r, pathOf("things", id), "grant")
}

// submitDisconnect is POST .../disconnect with the MQTT client id: only a
// session of this thing. The broker ends it; the console records it.
func (c *Console) submitDisconnect(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	client := r.PostForm.Get("client")
	if c.opts.Connections == nil || !slices.ContainsFunc(c.opts.Connections.Connections(), func(cn Connection) bool {
		return cn.ClientID == client && cn.Thing == id
	}) || !c.opts.Connections.Disconnect(client) {
		c.message(w, r, http.StatusBadRequest, "No such session", "client: this thing has no MQTT session with this client identifier.")
		return
	}
	detail, _ := json.Marshal(map[string]string{"clientId": client})
	if err := c.opts.Store.AppendAudit(r.Context(), store.AuditRecord{Time: c.opts.Now().UTC(), Actor: s.actor(),
		Action: "mqtt.disconnect", Target: store.Ref{Kind: store.KindThing, ID: id}, Detail: detail}); err != nil {
		c.pageError(w, r, err)
		return
	}
	done(w, r, pathOf("things", id), "disconnected")
}

// submitRevokeCWT is POST .../cwts/revoke with the cti (hex) of a CWT
// issued to this thing and not expired.
func (c *Console) submitRevokeCWT(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	cti, err := ace.ParseCTI(r.PostForm.Get("cti"))
	if err == nil && c.opts.CWTs != nil {
		err = c.opts.CWTs.RevokeIssued(r.Context(), s.actor(), id, cti)
	}
	switch {
	case err == nil && c.opts.CWTs != nil:
		done(w, r, pathOf("things", id), "cwtRevoked")
	case cti == nil || errors.Is(err, ace.ErrNotIssued) || c.opts.CWTs == nil:
		c.message(w, r, http.StatusBadRequest, "No such CWT", "cti: this thing has no unexpired CWT with this cti.")
	default:
		c.pageError(w, r, err)
	}
}

// changeFailed answers a failed change and reports whether there was one:
// a bad input names its field, never a 500.
func (c *Console) changeFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	var re *certauth.RevocationError
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		c.message(w, r, http.StatusNotFound, "Not found", "What this form is about no longer exists, or is not linked as the form says. Open the page again.")
	case errors.Is(err, store.ErrStale):
		c.message(w, r, http.StatusConflict, "Changed meanwhile", "Someone changed it meanwhile. Open the page again and retry.")
	case errors.As(err, &re):
		c.message(w, r, http.StatusBadRequest, "Not revoked", re)
	case errors.Is(err, store.ErrConflict):
		c.message(w, r, http.StatusConflict, "Taken", ui.Msg("Another identity holds this name, address or serial number already: %s", err))
	case errors.As(err, new(*identity.ValidationError)):
		c.message(w, r, http.StatusBadRequest, "Not accepted", err)
	default:
		c.pageError(w, r, err)
	}
	return true
}
