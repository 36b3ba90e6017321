package selfservice

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Download my data: one JSON document of everything thingid holds about the
// user. Every part is a view made here, field by field, so that nothing
// secret (password hash, session, token and secret hashes, private keys) can
// slip in when a stored type grows a field.

const (
	pathData = "/account/data"
	// auditPage is how many audit records one read returns.
	auditPage = 500
)

type profileView struct {
	ID                 string             `json:"id"`
	UserName           string             `json:"userName"`
	ExternalID         string             `json:"externalId,omitempty"`
	DisplayName        string             `json:"displayName,omitempty"`
	Name               store.Name         `json:"name,omitzero"`
	Emails             []store.MultiValue `json:"emails,omitempty"`
	PhoneNumbers       []store.MultiValue `json:"phoneNumbers,omitempty"`
	Locale             string             `json:"locale,omitempty"`
	Timezone           string             `json:"timezone,omitempty"`
	Status             store.Status       `json:"status"`
	EmailVerified      bool               `json:"emailVerified"`
	HasPassword        bool               `json:"hasPassword"`
	MustChangePassword bool               `json:"mustChangePassword"`
	Created            time.Time          `json:"created"`
	Modified           time.Time          `json:"modified"`
}

type groupView struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
}

type thingView struct {
	ID              string          `json:"id"`
	DisplayName     string          `json:"displayName,omitempty"`
	Type            store.ThingType `json:"type"`
	Manufacturer    string          `json:"manufacturer,omitempty"`
	Model           string          `json:"model,omitempty"`
	SerialNumber    string          `json:"serialNumber,omitempty"`
	FirmwareVersion string          `json:"firmwareVersion,omitempty"`
	Location        string          `json:"location,omitempty"`
	MACAddresses    []string        `json:"macAddresses,omitempty"`
	Status          store.Status    `json:"status"`
	Certificates    []store.CertRef `json:"certificates,omitempty"`
	Attributes      map[string]any  `json:"attributes,omitempty"`
	OwnerSince      time.Time       `json:"ownerSince"`
}

type grantView struct {
	ID        string    `json:"id"`
	ClientID  string    `json:"clientId"`
	ThingID   string    `json:"thingId,omitempty"`
	Scopes    []string  `json:"scopes"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"lastUsed,omitzero"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

type consentView struct {
	ClientID string    `json:"clientId"`
	Scopes   []string  `json:"scopes"`
	Created  time.Time `json:"created"`
}

type householdView struct {
	ID       string       `json:"id"`
	Name     string       `json:"name,omitempty"`
	Role     string       `json:"role"`
	TimeZone string       `json:"timeZone,omitempty"`
	Members  []memberView `json:"members"`
	Joined   time.Time    `json:"joined"`
}

type memberView struct {
	UserID string `json:"userId"`
	Role   string `json:"role"`
}

type umaView struct {
	Resources      []resourceView `json:"resources"`
	SharesGiven    []shareView    `json:"sharesGiven"`
	SharesReceived []shareView    `json:"sharesReceived"`
	RequestsToMe   []requestView  `json:"requestsToMe"`
	RequestsByMe   []requestView  `json:"requestsByMe"`
}

type resourceView struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"clientId"`
	Name        string    `json:"name"`
	Type        string    `json:"type,omitempty"`
	Description string    `json:"description,omitempty"`
	Scopes      []string  `json:"scopes"`
	Created     time.Time `json:"created"`
}

type shareView struct {
	ID         string    `json:"id"`
	ResourceID string    `json:"resourceId"`
	OwnerID    string    `json:"ownerId"`
	Grantee    store.Ref `json:"grantee"`
	Scopes     []string  `json:"scopes"`
	ExpiresAt  time.Time `json:"expiresAt,omitzero"`
	Created    time.Time `json:"created"`
}

type requestView struct {
	ID          string    `json:"id"`
	ResourceID  string    `json:"resourceId"`
	OwnerID     string    `json:"ownerId"`
	RequesterID string    `json:"requesterId"`
	ClientID    string    `json:"clientId"`
	Scopes      []string  `json:"scopes"`
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	Decided     time.Time `json:"decided,omitzero"`
}

type sessionView struct {
	Created   time.Time `json:"created"`
	LastSeen  time.Time `json:"lastSeen,omitzero"`
	ExpiresAt time.Time `json:"expiresAt"`
	RemoteIP  string    `json:"remoteIp,omitempty"`
	UserAgent string    `json:"userAgent,omitempty"`
}

type auditView struct {
	Seq    int64           `json:"seq"`
	Time   time.Time       `json:"time"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Target store.Ref       `json:"target"`
	Detail json.RawMessage `json:"detail,omitempty"`
}

// export is the document.
type export struct {
	ExportedAt time.Time       `json:"exportedAt"`
	Profile    profileView     `json:"profile"`
	Groups     []groupView     `json:"groups"`
	Things     []thingView     `json:"things"`
	Grants     []grantView     `json:"grants"`
	Consents   []consentView   `json:"consents"`
	Households []householdView `json:"households"`
	UMA        umaView         `json:"uma"`
	Sessions   []sessionView   `json:"sessions"`
	// Audit holds the records about the user and those of what the user
	// did, in the order they were written.
	Audit []auditView `json:"audit"`
}

// collect reads everything about u.
func (h *Handler) collect(ctx context.Context, u *store.User) (*export, error) {
	d := h.opts.Account.Data
	x := &export{ExportedAt: h.now().UTC(), Profile: profileView{
		ID: u.ID, UserName: u.UserName, ExternalID: u.ExternalID, DisplayName: u.DisplayName, Name: u.Name,
		Emails: u.Emails, PhoneNumbers: u.PhoneNumbers, Locale: u.Locale, Timezone: u.Timezone, Status: u.Status,
		EmailVerified: u.EmailVerified, HasPassword: u.PasswordHash != "", MustChangePassword: u.MustChangePassword,
		Created: u.Created, Modified: u.Modified,
	}, Groups: []groupView{}, Things: []thingView{}, Grants: []grantView{}, Consents: []consentView{},
		Households: []householdView{}, Sessions: []sessionView{}, Audit: []auditView{}}
	me := store.Ref{Kind: store.KindUser, ID: u.ID}

	rels, err := d.ListRelationships(ctx, store.RelFilter{From: &me})
	if err != nil {
		return nil, fmt.Errorf("relationships: %w", err)
	}
	for _, r := range rels {
		switch {
		case r.Kind == store.RelMember && r.To.Kind == store.KindGroup:
			g, err := d.GetGroup(ctx, r.To.ID)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				return nil, fmt.Errorf("group: %w", err)
			}
			x.Groups = append(x.Groups, groupView{ID: g.ID, DisplayName: g.DisplayName})
		case r.Kind == store.RelOwner:
			t, err := d.GetThing(ctx, r.To.ID)
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				return nil, fmt.Errorf("thing: %w", err)
			}
			x.Things = append(x.Things, thingView{ID: t.ID, DisplayName: t.DisplayName, Type: t.Type, Manufacturer: t.Manufacturer,
				Model: t.Model, SerialNumber: t.SerialNumber, FirmwareVersion: t.FirmwareVersion, Location: t.Location,
				MACAddresses: t.MACAddresses, Status: t.Status, Certificates: t.Certificates, Attributes: t.Attributes, OwnerSince: r.Created})
		}
	}

	grants, err := d.ListGrants(ctx, store.GrantFilter{UserID: u.ID, IncludeRevoked: true})
	if err != nil {
		return nil, fmt.Errorf("grants: %w", err)
	}
	var clients []string
	for _, g := range grants {
		x.Grants = append(x.Grants, grantView{ID: g.ID, ClientID: g.ClientID, ThingID: g.ThingID, Scopes: g.Scopes,
			Created: g.Created, LastUsed: g.LastUsed, RevokedAt: g.RevokedAt})
		if !slices.Contains(clients, g.ClientID) {
			clients = append(clients, g.ClientID)
		}
	}
	for _, c := range clients {
		con, err := d.GetConsent(ctx, u.ID, c)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("consent: %w", err)
		}
		x.Consents = append(x.Consents, consentView{ClientID: con.ClientID, Scopes: con.Scopes, Created: con.Created})
	}

	memberships, err := d.ListMemberships(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("households: %w", err)
	}
	for _, m := range memberships {
		v := householdView{ID: m.HouseholdID, Role: m.Role, Joined: m.Created, Members: []memberView{}}
		if hh, err := d.GetHousehold(ctx, m.HouseholdID); err == nil {
			v.TimeZone = hh.TimeZone
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("household: %w", err)
		}
		if g, err := d.GetGroup(ctx, m.HouseholdID); err == nil {
			v.Name = g.DisplayName
		}
		members, err := d.ListHouseholdMembers(ctx, m.HouseholdID)
		if err != nil {
			return nil, fmt.Errorf("household members: %w", err)
		}
		for _, o := range members {
			v.Members = append(v.Members, memberView{UserID: o.UserID, Role: o.Role})
		}
		x.Households = append(x.Households, v)
	}

	if err := h.collectUMA(ctx, u.ID, &x.UMA); err != nil {
		return nil, err
	}

	sessions, err := d.ListSessions(ctx, u.ID)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	for _, s := range sessions {
		x.Sessions = append(x.Sessions, sessionView{Created: s.Created, LastSeen: s.LastSeen, ExpiresAt: s.ExpiresAt, RemoteIP: s.RemoteIP, UserAgent: s.UserAgent})
	}

	about, err := h.auditOf(ctx, store.AuditQuery{Target: &me})
	if err != nil {
		return nil, err
	}
	by, err := h.auditOf(ctx, store.AuditQuery{Actor: store.TextMatch{Value: "user:" + u.ID}})
	if err != nil {
		return nil, err
	}
	x.Audit = mergeAudit(about, by)
	return x, nil
}

func (h *Handler) collectUMA(ctx context.Context, userID string, v *umaView) error {
	d := h.opts.Account.Data
	resources, err := d.ListUMAResources(ctx, store.UMAResourceFilter{OwnerID: userID})
	if err != nil {
		return fmt.Errorf("UMA resources: %w", err)
	}
	v.Resources = []resourceView{}
	for _, r := range resources {
		v.Resources = append(v.Resources, resourceView{ID: r.ID, ClientID: r.ClientID, Name: r.Name, Type: r.Type,
			Description: r.Description, Scopes: r.Scopes, Created: r.Created})
	}
	for _, q := range []struct {
		f   store.UMAShareFilter
		out *[]shareView
	}{
		{store.UMAShareFilter{OwnerID: userID}, &v.SharesGiven},
		{store.UMAShareFilter{Grantee: &store.Ref{Kind: store.KindUser, ID: userID}}, &v.SharesReceived},
	} {
		shares, err := d.ListUMAShares(ctx, q.f)
		if err != nil {
			return fmt.Errorf("UMA shares: %w", err)
		}
		*q.out = []shareView{}
		for _, s := range shares {
			*q.out = append(*q.out, shareView{ID: s.ID, ResourceID: s.ResourceID, OwnerID: s.OwnerID, Grantee: s.Grantee,
				Scopes: s.Scopes, ExpiresAt: s.ExpiresAt, Created: s.Created})
		}
	}
	for _, q := range []struct {
		f   store.UMARequestFilter
		out *[]requestView
	}{
		{store.UMARequestFilter{OwnerID: userID}, &v.RequestsToMe},
		{store.UMARequestFilter{RequesterID: userID}, &v.RequestsByMe},
	} {
		reqs, err := d.ListUMARequests(ctx, q.f)
		if err != nil {
			return fmt.Errorf("UMA requests: %w", err)
		}
		*q.out = []requestView{}
		for _, r := range reqs {
			*q.out = append(*q.out, requestView{ID: r.ID, ResourceID: r.ResourceID, OwnerID: r.OwnerID, RequesterID: r.RequesterID,
				ClientID: r.ClientID, Scopes: r.Scopes, Status: string(r.Status), Created: r.Created, Decided: r.Decided})
		}
	}
	return nil
}

// auditOf reads every record q selects, page by page in the order written.
func (h *Handler) auditOf(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	var out []store.AuditRecord
	q.Limit = auditPage
	for {
		recs, err := h.opts.Account.Data.ListAudit(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		out = append(out, recs...)
		if len(recs) < auditPage {
			return out, nil
		}
		q.AfterSeq = recs[len(recs)-1].Seq
	}
}

// mergeAudit merges two lists in Seq order, each record once.
func mergeAudit(a, b []store.AuditRecord) []auditView {
	all := append(a, b...)
	slices.SortFunc(all, func(x, y store.AuditRecord) int { return cmp.Compare(x.Seq, y.Seq) })
	all = slices.CompactFunc(all, func(x, y store.AuditRecord) bool { return x.Seq == y.Seq })
	out := make([]auditView, len(all))
	for i, r := range all {
		out[i] = auditView{Seq: r.Seq, Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target, Detail: r.Detail}
	}
	return out
}

// writeExport answers the document as a download.
func (h *Handler) writeExport(w http.ResponseWriter, r *http.Request, u *store.User) error {
	x, err := h.collect(r.Context(), u)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", `attachment; filename="thingid-data.json"`)
	writeJSON(w, http.StatusOK, x)
	h.log.Info("selfservice: data downloaded", "id", u.ID)
	return nil
}

func (h *Handler) showData(w http.ResponseWriter, r *http.Request, u *store.User) {
	h.renderPage(w, r, http.StatusOK, formPage{Title: "Download your data",
		Intro: []string{"Download everything we hold about you as one JSON file: your profile, groups, devices, the apps and devices with access, " +
			"consents, households, what you share and what is shared with you, where you are signed in, and the audit records about you and what you did. " +
			"It holds no password or secret."},
		Action: pathData, Submit: "Download my data",
		Links: []link{{Href: "/account", Text: "Back to your account"}}}, nil, nil, "")
}

func (h *Handler) submitData(w http.ResponseWriter, r *http.Request, u *store.User) {
	if err := h.writeExport(w, r, u); err != nil {
		h.serverError(w, r, "collecting a user's data", err)
	}
}

// dataJSON is GET /api/v1/account/data.
func (h *Handler) dataJSON(w http.ResponseWriter, r *http.Request, u *store.User) {
	if err := h.writeExport(w, r, u); err != nil {
		h.log.Error("selfservice: collecting a user's data", "id", u.ID, "err", err)
		writeProblem(w, http.StatusInternalServerError, "your data could not be collected because of a problem on our side; try again later")
	}
}
