package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/authzen"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/landing"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/scim"
	"github.com/thingid/thingid/internal/selfservice"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/ui"
	"github.com/thingid/thingid/internal/uma"
)

// mountComponents adds SCIM (administrators only), self-registration,
// browser sign-in with sessions, the landing page, OAuth, UMA, households,
// AuthZEN, PKI, EST and the audit API (administrators and support staff) to
// mux; it returns the UMA server, which the gateway's uma filter asks for
// tickets.
func (p *Platform) mountComponents(mux routes.Mux, admins *authn.Admins, tk *tokenSet, certs *certauth.Checker, hh *household.Service, mqtt *broker.Broker, reg prometheus.Registerer, log *slog.Logger) (*uma.Server, error) {
	cfg := p.Config
	scimHandler := scim.New(p.Identity, scim.Options{
		BaseURL:   cfg.HTTP.PublicURL,
		Actor:     authn.Actor,
		FullAdmin: authn.FullAdmin,
		Logger:    log.With("component", "scim"),
		// What the listener lets through is what SCIM advertises.
		MaxPayloadSize: scimBulkPayload(cfg.HTTP.Limits),
	})
	mux.Handle("/scim/v2/", admins.RequireScopes(scimHandler, denySCIM, authn.ScopeSCIMRead, authn.ScopeSCIMWrite))

	r := cfg.Registration
	sessions, err := p.newSessions(admins, reg, log)
	if err != nil {
		return nil, err
	}
	sessions.Register(mux)
	landing.New(landing.Options{Sessions: sessions, Registration: r.Enabled, DocsURL: cfg.HTTP.DocsURL, Site: p.site,
		Logger: log.With("component", "landing")}).Register(mux)
	// UMA (uma.go): its grant is served by the token endpoint.
	var srv *oauth.Server
	u, err := p.newUMA(tk, sessions, hh, func() any { return srv.Metadata() }, func() tokens.ProofVerifier { return srv.ProofVerifier() }, log)
	if err != nil {
		return nil, err
	}
	srv, err = p.newOAuth(tk, certs, sessions, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) }, umaExtension(u), oauthHouseholds{hh}, reg, log)
	if err != nil {
		return nil, err
	}
	p.oauthServer.Store(srv)
	// SCIM shares the authorization server's DPoP proofs (one replay cache,
	// one nonce): both are resources of this listener's origin.
	admins.AcceptAccessTokens(authn.AccessTokens{
		Verifier: tk.verifier, Audience: cfg.HTTP.PublicURL, Origin: cfg.HTTP.PublicURL,
		Proofs: srv.ProofVerifier(), Grants: p.Store,
	})
	srv.Register(mux)
	u.Register(mux)
	if err := p.mountACE(mux, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) }, tk, srv, reg, log); err != nil {
		return nil, err
	}
	ss := selfservice.Options{
		Enabled:           r.Enabled,
		Account:           &selfservice.Account{Sessions: sessions, Data: p.Store, Revoker: accountRevoker{srv, u}},
		Logger:            log.With("component", "selfservice"),
		BaseURL:           cfg.HTTP.PublicURL,
		SigningKey:        p.derivedKey("thingid selfservice signing v1"),
		RatePerMinute:     float64(r.AttemptsPerMinute),
		Attempts:          p.Store, // every node of the database counts together
		EmailVerification: r.EmailVerification,
		ResetTTL:          time.Duration(cfg.SelfService.PasswordResetLifetime),
		MailsPerHour:      float64(cfg.SelfService.MailsPerHour),
		SMTP: selfservice.SMTPOptions{
			Host: r.SMTP.Host, Port: r.SMTP.Port, Username: r.SMTP.Username, Password: r.SMTP.Password, From: r.SMTP.From,
		},
		OutboxDir: r.OutboxDir,
		Metrics:   reg,
		Site:      p.site,
	}
	if err := ss.Validate(); err != nil {
		return nil, err
	}
	self := selfservice.New(p.Identity, ss)
	self.Register(mux)
	hh.Register(mux, sessions, cfg.HTTP.PublicURL, p.derivedKey("thingid household csrf v1"))
	hh.RegisterAdmin(mux, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) }, authn.Actor)
	authzen.New(cfg.HTTP.PublicURL, &authzenTokens{tk: tk, audience: cfg.HTTP.PublicURL, proofs: func() tokens.ProofVerifier { return srv.ProofVerifier() }}, hh,
		log.With("component", "authzen")).Register(mux)
	p.mountPKI(mux, admins, certs, log)
	p.mountEST(mux, admins, certs, reg, log)
	auditAPI, err := audit.NewAPI(audit.Options{
		Store: p.Store, Key: p.derivedKey(auditCursorPurpose),
		Require:  func(h http.Handler) http.Handler { return admins.RequireReader(h, denyProblem) },
		Actor:    authn.Actor,
		ReadOnly: authn.ReadOnly,
		Logger:   log.With("component", "audit"),
	})
	if err != nil {
		return nil, err
	}
	auditAPI.Register(mux)
	if err := p.mountConsole(mux, sessions, admins, certs, srv, consoleResets{self}, mqtt, log); err != nil {
		return nil, err
	}
	return u, nil
}

// accountRevoker is what deleting an account revokes through
// (selfservice.Revoker): the authorization server unlinks things and revokes
// grants, UMA revokes shares with the RPTs resting on them.
type accountRevoker struct {
	*oauth.Server
	shares *uma.Server
}

func (a accountRevoker) RevokeShare(ctx context.Context, actor, owner, id string) error {
	return a.shares.RevokeShare(ctx, actor, owner, id)
}

// auditCursorPurpose derives the key of the audit log's cursors.
const auditCursorPurpose = "thingid audit cursor v1"

// newHouseholds returns the households and their decision engine, which
// every door shares (the AuthZEN API, the gateway's policy filter, the
// broker).
func (p *Platform) newHouseholds(log *slog.Logger) (*household.Service, error) {
	return household.New(household.Options{Store: p.Store, Identities: p.Identity, Engine: policy.NewEngine(p.decisionClock, log.With("component", "policy")),
		Bus: p.Bus, Grants: householdGrants{p}, Logger: log.With("component", "household"), Site: p.site})
}

// newSessions returns browser sessions; admins may be nil where no admin
// API is served, reg where nothing is (the command line).
func (p *Platform) newSessions(admins *authn.Admins, reg prometheus.Registerer, log *slog.Logger) (*authn.Sessions, error) {
	cfg := p.Config
	so := authn.SessionOptions{
		Key:                  p.derivedKey("thingid sessions v1"),
		BaseURL:              cfg.HTTP.PublicURL,
		IdleTimeout:          time.Duration(cfg.Sessions.IdleTimeout),
		AbsoluteTimeout:      time.Duration(cfg.Sessions.AbsoluteTimeout),
		StaffIdleTimeout:     time.Duration(cfg.Sessions.StaffIdleTimeout),
		StaffAbsoluteTimeout: time.Duration(cfg.Sessions.StaffAbsoluteTimeout),
		Audit:                p.Store,
		Site:                 p.site,
		Registerer:           reg,
		Logger:               log.With("component", "authn"),
	}
	if err := so.Validate(); err != nil {
		return nil, err
	}
	return authn.NewSessions(p.Identity, p.Store, admins, so), nil
}

// derivedKey derives a purpose-bound key from the master key, so that every node
// sharing the master key shares it too.
func (p *Platform) derivedKey(purpose string) []byte {
	m := hmac.New(sha256.New, p.Key[:])
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// denySCIM answers a refused SCIM request in SCIM's error format (RFC 7644 §3.12).
func denySCIM(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := challenge(w, err)
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(status)
	writeJSONBody(w, map[string]any{
		"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:Error"},
		"status":  strconv.Itoa(status),
		"detail":  detail,
	})
}

// newSite is the pages' brand, template overrides and languages from ui.*.
func (p *Platform) newSite() (*ui.Site, error) {
	c := p.Config.UI
	links := make([]ui.Link, len(c.FooterLinks))
	for i, l := range c.FooterLinks {
		links[i] = ui.Link{Text: l.Text, URL: l.URL}
	}
	return ui.NewSite(ui.SiteOptions{
		Brand: ui.Brand{ProductName: c.ProductName, LogoFile: c.LogoFile, Accent: c.Colors.Accent, Error: c.Colors.Error,
			FooterLinks: links},
		Templates:       c.Templates,
		DefaultLanguage: c.DefaultLanguage,
	})
}
