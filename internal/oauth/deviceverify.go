package oauth

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

//go:embed templates/*.html
var templateFS embed.FS

type pages struct {
	device, consent, message          *ui.Page
	authorizeConsent, grants, devices *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name) }
	return pages{device: page("device.html"), consent: page("consent.html"), message: page("message.html"),
		authorizeConsent: page("authorize_consent.html"), grants: page("grants.html"), devices: page("devices.html")}
}

type devicePage struct {
	CSRF, UserName, UserCode, Error string
}

type consentPage struct {
	CSRF, UserName, UserCode, ClientName string
	Thing                                *store.Thing
	// OwnedByOther: the thing has another owner (a household may let the
	// user pair it; Allow does not make them its owner).
	OwnedByOther bool
	Scopes       []scopeView
}

type messagePage struct {
	Title, Text, Link, LinkText string
}

const maxPageForm = 4 << 10

func (s *Server) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	s.kit.Render(w, r, status, s.pages.message, messagePage{Title: title, Text: text, Link: pathDevice, LinkText: "Enter a code"})
}

func (s *Server) crossOrigin(w http.ResponseWriter, r *http.Request) {
	s.message(w, r, http.StatusForbidden, "Request refused", "The form did not come from this site. Open the page again and resubmit.")
}

// signinRedirect sends the browser to sign in and back to the device page.
// return_to is built from the normalized code only (consonants and a dash),
// never from the request, so it cannot point anywhere else.
func signinRedirect(w http.ResponseWriter, r *http.Request, code string) {
	back := pathDevice
	if code != "" {
		back += "?user_code=" + formatUserCode(code)
	}
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
}

// showDevice is GET /device: the code form, prefilled from
// verification_uri_complete. The user still confirms the code (RFC 8628
// §5.4: a prefilled code must not approve anything by itself).
func (s *Server) showDevice(w http.ResponseWriter, r *http.Request) {
	code := normalizeUserCode(r.URL.Query().Get("user_code"))
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signinRedirect(w, r, code)
		return
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.device, devicePage{CSRF: s.csrf.Token(w, r), UserName: u.UserName, UserCode: formatUserCode(code)})
}

// pageRequest checks what every POST of the pages needs: a readable form, a
// valid CSRF token, a signed-in user, and the user-code throttle not hit.
func (s *Server) pageRequest(w http.ResponseWriter, r *http.Request) (*store.User, []string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
	if err := r.ParseForm(); err != nil {
		s.message(w, r, http.StatusBadRequest, "Form not accepted", "The form could not be read. Open the page again and resubmit.")
		return nil, nil, false
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signinRedirect(w, r, "")
		return nil, nil, false
	}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.message(w, r, http.StatusForbidden, "Form expired", "The form expired or did not come from this site. Enter the code again.")
		return nil, nil, false
	}
	keys := []string{s.counterName("device-user", u.ID), s.counterName("device-ip", clientPrefix(r).String())}
	now := s.now()
	for _, k := range keys {
		n, since, err := s.st.GetFailures(r.Context(), k, now, s.opts.UserCodeWindow)
		if err != nil {
			s.log.Error("oauth: reading user-code failures", "err", err)
			s.message(w, r, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
			return nil, nil, false
		}
		if n >= s.opts.UserCodeAttempts {
			wait := since.Add(s.opts.UserCodeWindow).Sub(now)
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			s.message(w, r, http.StatusTooManyRequests, "Too many wrong codes",
				s.kit.Translator(r)("Too many codes were wrong. Wait %d minutes and try again with the code your device shows.", int(wait/time.Minute)+1))
			return nil, nil, false
		}
	}
	return u, keys, true
}

// lookupCode finds a pending request by what the user typed, counting a miss
// against the user and the address (a user code has ~34 bits: without a
// limit it could be guessed, RFC 8628 §5.1).
func (s *Server) lookupCode(ctx context.Context, keys []string, typed string) (*store.DeviceCode, error) {
	code := normalizeUserCode(typed)
	var d *store.DeviceCode
	var err error
	if code == "" {
		err = store.ErrNotFound
	} else {
		d, err = s.st.GetDeviceCodeByUserCode(ctx, code)
	}
	if err == nil && d.Status != store.DevicePending {
		err = store.ErrNotFound
	}
	if errors.Is(err, store.ErrNotFound) {
		now := s.now()
		for _, k := range keys {
			if _, _, aerr := s.st.AddFailure(ctx, k, now, s.opts.UserCodeWindow); aerr != nil {
				return nil, aerr
			}
		}
	}
	return d, err
}

// submitUserCode is POST /device: look the code up and ask for consent.
func (s *Server) submitUserCode(w http.ResponseWriter, r *http.Request) {
	u, keys, ok := s.pageRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	typed := r.PostForm.Get("user_code")
	d, err := s.lookupCode(ctx, keys, typed)
	if errors.Is(err, store.ErrNotFound) {
		s.kit.Render(w, r, http.StatusBadRequest, s.pages.device, devicePage{CSRF: s.csrf.Token(w, r), UserName: u.UserName,
			UserCode: typed, Error: "This code is not valid, has expired or was used already. Check the code your device shows."})
		return
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	c, err := s.getClient(ctx, s.st, d.ClientID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && c.Disabled) {
		s.message(w, r, http.StatusBadRequest, "Application not available", "The application that asked is no longer registered or is disabled.")
		return
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p := consentPage{CSRF: s.csrf.Token(w, r), UserName: u.UserName, UserCode: formatUserCode(d.UserCode), ClientName: c.Name, Scopes: s.describeScopes(d.Scopes)}
	if c.ThingID != "" {
		t, err := s.opts.Identities.GetThing(ctx, c.ThingID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && t.Status != store.StatusActive) {
			s.message(w, r, http.StatusBadRequest, "Device not available", "This device is disabled or no longer registered.")
			return
		}
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		p.Thing = t
		owners, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: t.ID}})
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		p.OwnedByOther = len(owners) > 0 && !slices.ContainsFunc(owners, func(o store.Relationship) bool { return o.From.ID == u.ID })
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.consent, p)
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("oauth: device page", "err", err)
	s.message(w, r, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
}

var (
	errNotPending    = errors.New("device request is no longer pending")
	errOwnedByOther  = errors.New("thing is owned by another user")
	errNotApprovable = errors.New("client or thing disabled or deleted")
)

// submitDecision is POST /device/decision: Allow or Deny.
func (s *Server) submitDecision(w http.ResponseWriter, r *http.Request) {
	u, keys, ok := s.pageRequest(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	d, err := s.lookupCode(ctx, keys, r.PostForm.Get("user_code"))
	if errors.Is(err, store.ErrNotFound) {
		s.message(w, r, http.StatusBadRequest, "Code not valid", "This code is not valid, has expired or was used already. Start again on your device.")
		return
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	switch r.PostForm.Get("decision") {
	case "deny":
		_, err = s.st.UpdateDeviceCode(ctx, d.Hash, func(x *store.DeviceCode) error {
			if x.Status != store.DevicePending {
				return errNotPending
			}
			x.Status, x.UserID = store.DeviceDenied, u.ID
			return nil
		})
		if err == nil {
			s.metrics.consent(flowDevice, false)
			s.message(w, r, http.StatusOK, "Request denied", "The device gets no access. You can close this page.")
			return
		}
	case "allow":
		var v HouseholdVerdict
		if v, err = s.pairingVerdict(ctx, u, d); err == nil && v.Governed && !v.Allowed {
			// The code stays pending: once a guardian changes the rules,
			// Allow works, until the code expires.
			s.message(w, r, http.StatusForbidden, "Not allowed by your household", "Your household's rules do not allow this pairing now: "+v.Reason+".")
			return
		}
		if err == nil {
			if err = s.approve(ctx, u, d, v.Held && v.Allowed); err == nil {
				s.metrics.consent(flowDevice, true)
				s.message(w, r, http.StatusOK, "Device connected", "The device can now act for you. Return to your device.")
				return
			}
		}
	default:
		s.message(w, r, http.StatusBadRequest, "Form not accepted", "Choose Allow or Deny.")
		return
	}
	switch {
	case errors.Is(err, errOwnedByOther):
		s.message(w, r, http.StatusConflict, "Device belongs to someone else",
			"This device is linked to another account. Its owner must unlink it (or support must) before you can connect it.")
	case errors.Is(err, errNotPending), errors.Is(err, store.ErrNotFound):
		s.message(w, r, http.StatusConflict, "Code already used", "This request was decided already or has expired. Start again on your device.")
	case errors.Is(err, errNotApprovable):
		s.message(w, r, http.StatusBadRequest, "Device not available", "The device or application is disabled or no longer registered.")
	default:
		s.pageError(w, r, err)
	}
}

// pairingVerdict asks the households whether u may pair the thing the
// client of d stands for (none for a client of no thing).
func (s *Server) pairingVerdict(ctx context.Context, u *store.User, d *store.DeviceCode) (HouseholdVerdict, error) {
	c, err := s.getClient(ctx, s.st, d.ClientID)
	if errors.Is(err, store.ErrNotFound) {
		return HouseholdVerdict{}, errNotApprovable
	}
	if err != nil {
		return HouseholdVerdict{}, err
	}
	return s.actFor(ctx, u.ID, c.ThingID, true)
}

// approve creates the grant, makes the user the owner of the thing the client
// stands for, and marks the request approved, in one transaction. The owner
// link is audited and published as internal/identity does ("relationship.add").
// held says a household the user is a member of holds the thing and lets
// them pair it: another member's thing then acts for them too, its owner
// unchanged.
func (s *Server) approve(ctx context.Context, u *store.User, d *store.DeviceCode, held bool) error {
	actor := "user:" + u.ID
	// The owner link goes through identity's transaction so that it is validated,
	// audited and published like every identity change, and commits with the grant.
	return s.opts.Identities.WithTx(ctx, actor, func(itx *identity.Tx) error {
		tx := itx.Store
		cur, err := tx.GetDeviceCode(ctx, d.Hash)
		if err != nil {
			return err
		}
		if cur.Status != store.DevicePending {
			return errNotPending
		}
		c, err := s.getClient(ctx, tx, cur.ClientID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.Disabled) {
			return errNotApprovable
		} else if err != nil {
			return err
		}
		now := s.now().UTC()
		if c.ThingID != "" {
			t, err := tx.GetThing(ctx, c.ThingID)
			if errors.Is(err, store.ErrNotFound) || (err == nil && t.Status != store.StatusActive) {
				return errNotApprovable
			} else if err != nil {
				return err
			}
			rel := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: t.ID}}
			owners, err := tx.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &rel.To})
			if err != nil {
				return err
			}
			for _, o := range owners {
				if o.From != rel.From && !held {
					return errOwnedByOther
				}
			}
			if len(owners) == 0 {
				if err := itx.AddRelationship(ctx, rel); err != nil && !errors.Is(err, store.ErrConflict) {
					return err
				}
			}
		}
		g := &store.Grant{UserID: u.ID, ClientID: c.ID, ThingID: c.ThingID, Scopes: nonNil(cur.Scopes), Created: now}
		if err := tx.CreateGrant(ctx, g); err != nil {
			return err
		}
		if _, err := tx.UpdateDeviceCode(ctx, d.Hash, func(x *store.DeviceCode) error {
			if x.Status != store.DevicePending {
				return errNotPending
			}
			x.Status, x.UserID, x.GrantID = store.DeviceApproved, u.ID, g.ID
			return nil
		}); err != nil {
			return err
		}
		detail := map[string]string{"clientId": c.ID, "userId": u.ID, "thingId": c.ThingID, "via": "device_code"}
		if held {
			detail["household"] = "held" // the household's rules let a member pair it
		}
		raw, _ := json.Marshal(detail)
		return s.audit(ctx, tx, actor, "grant.create", store.Ref{Kind: "grant", ID: g.ID}, string(raw))
	})
}

// clientPrefix is the client's IPv4 address or IPv6 /64, as authn counts
// sign-in attempts; no forwarding header is trusted.
func clientPrefix(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	addr := ap.Addr().Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}
