// Package config defines thingid's configuration: one YAML file, overridden by
// THINGID_* environment variables and then by flags. It validates values and masks
// secrets for printing; it never opens files other than the config file itself.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Config is the whole configuration. Field tags give the YAML names; the matching
// environment variable is THINGID_ followed by the path in upper case joined by "_"
// (storage.postgres.dsn → THINGID_STORAGE_POSTGRES_DSN).
type Config struct {
	// Home is the data directory: database, keys, certificates, outbox.
	Home    string  `json:"home"`
	Log     Log     `json:"log"`
	HTTP    HTTP    `json:"http"`
	Storage Storage `json:"storage"`
	// MasterKey (base64, 32 bytes) encrypts private keys at rest; empty: generated
	// into $home/master.key (0600) on first start.
	MasterKey    string       `json:"masterKey" secret:"true"`
	Admin        Admin        `json:"admin"`
	Passwords    Passwords    `json:"passwords"`
	Registration Registration `json:"registration"`
	SelfService  SelfService  `json:"selfService"`
	Sessions     Sessions     `json:"sessions"`
	OAuth        OAuth        `json:"oauth"`
	PKI          PKI          `json:"pki"`
	MQTT         MQTT         `json:"mqtt"`
	Gateway      Gateway      `json:"gateway"`
	Connections  Connections  `json:"connections"`
	UMA          UMA          `json:"uma"`
	UI           UI           `json:"ui"`
	LDAP         LDAP         `json:"ldap"`
	CoAP         CoAP         `json:"coap"`
}

// UI is a manufacturer's brand on the pages people see, and their words.
type UI struct {
	// ProductName replaces "thingid" in titles and headers.
	ProductName string `json:"productName"`
	// LogoFile is a PNG, SVG, JPEG or WebP file (at most 256 KiB) shown in
	// every page's header.
	LogoFile string `json:"logoFile"`
	// Colors of the pages: "#rrggbb".
	Colors UIColors `json:"colors"`
	// FooterLinks are shown at the foot of every page.
	FooterLinks []UILink `json:"footerLinks"`
	// Templates is a directory whose files replace built-in pages, the
	// layout and message catalogues (docs/branding.md); checked at start.
	Templates string `json:"templates"`
	// DefaultLanguage of a browser that asks for none the site has.
	DefaultLanguage string `json:"defaultLanguage"`
}

// UIColors are the pages' colours.
type UIColors struct {
	Accent string `json:"accent"`
	Error  string `json:"error"`
}

// UILink is a footer link: an http(s) or mailto URL or a path on the site.
type UILink struct {
	Text string `json:"text"`
	URL  string `json:"url"`
}

// Connections bounds the connections of all listeners together.
type Connections struct {
	// Max is the most connections the process keeps open; 0: the open-files
	// limit less a quarter (at least 256) for files, the database and
	// upstream connections. More than that is refused at start.
	Max int `json:"max"`
	// ProxyProtocol names the load balancers that send the PROXY protocol.
	ProxyProtocol ProxyProtocol `json:"proxyProtocol"`
}

// ProxyProtocol configures the PROXY protocol (HAProxy's, v1 and v2) on
// every listener.
type ProxyProtocol struct {
	// Trusted are the addresses and CIDRs of the load balancers in TCP mode
	// in front of thingid: their connections must start with a PROXY
	// header, whose client address counts (limits, logs, audit); any other
	// peer's header is refused. Empty: no header is read.
	Trusted []string `json:"trusted" env:"spaces"`
}

// TrustedPrefixes parses Trusted; its error names the entry.
func (p ProxyProtocol) TrustedPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(p.Trusted))
	for i, s := range p.Trusted {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("connections.proxyProtocol.trusted[%d]: %q is not an address or CIDR", i, s)
			}
			pr = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pr.Addr().Is4In6() && pr.Bits() >= 96 {
			pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
		}
		out = append(out, pr.Masked())
	}
	return out, nil
}

// UMA configures User-Managed Access 2.0 (docs/uma.md).
type UMA struct {
	// TrustedResourceServers are the client ids of first-party resource
	// servers that may use a PAT obtained with client_credentials, naming
	// owners explicitly; every other resource server needs the owner's
	// consent (a PAT from the authorization code flow).
	TrustedResourceServers []string `json:"trustedResourceServers" env:"spaces"`
	// TicketLifetime is how long a permission ticket can be redeemed.
	TicketLifetime Duration `json:"ticketLifetime"`
}

// OAuth configures the authorization server and its tokens.
type OAuth struct {
	// SigningAlgorithm of new signing keys: ES256, EdDSA or RS256.
	SigningAlgorithm     string   `json:"signingAlgorithm"`
	AccessTokenLifetime  Duration `json:"accessTokenLifetime"`
	RefreshTokenLifetime Duration `json:"refreshTokenLifetime"`
	// DeviceCodeLifetime is how long a device authorization request (RFC 8628)
	// waits for the user.
	DeviceCodeLifetime Duration `json:"deviceCodeLifetime"`
	// RegistrationToken is the initial access token that opens dynamic client
	// registration (RFC 7591) at /oauth2/register; empty: registration is off.
	RegistrationToken string `json:"registrationToken" secret:"true"`
	// Registration limits what dynamic client registration may create.
	Registration ClientRegistration `json:"registration"`
	// DPoPNonces makes DPoP proofs carry a server nonce (RFC 9449 §8), which
	// limits how long a proof made ahead of time could be used.
	DPoPNonces bool `json:"dpopNonces"`
	// ThingScopes are the scopes of the OAuth client every thing is under
	// its own id.
	ThingScopes []string `json:"thingScopes"`
	// ScopeDescriptions say in words what a scope lets a client do, shown on
	// the consent pages; they replace or add to the built-in descriptions.
	ScopeDescriptions map[string]string `json:"scopeDescriptions"`
	// ResourceServers are the registered confidential clients that are
	// resource servers, each with the audiences whose access tokens (JWTs
	// at /oauth2/introspect, ACE's CWTs at /ace/introspect, RFC 9200 §5.9)
	// it may introspect though they were issued to other clients.
	ResourceServers map[string][]string `json:"resourceServers"`
}

// ClientRegistration limits dynamic client registration (RFC 7591). The
// initial access token stays at oauth.registrationToken.
type ClientRegistration struct {
	// AllowedScopes are the only scopes a registered client may be given:
	// scope tokens matched exactly, and mqtt:pub:<filter> / mqtt:sub:<filter>
	// patterns that allow any filter they cover. Settable from the
	// environment as a space-separated list.
	AllowedScopes []string `json:"allowedScopes" env:"spaces"`
}

// Sessions configures browser sessions (OWASP Session Management).
type Sessions struct {
	// IdleTimeout ends a session unused for so long.
	IdleTimeout Duration `json:"idleTimeout"`
	// AbsoluteTimeout ends every session so long after sign-in.
	AbsoluteTimeout Duration `json:"absoluteTimeout"`
	// StaffIdleTimeout and StaffAbsoluteTimeout are the shorter timeouts of
	// administrators' and support staff's sessions (the admin console).
	StaffIdleTimeout     Duration `json:"staffIdleTimeout"`
	StaffAbsoluteTimeout Duration `json:"staffAbsoluteTimeout"`
}

// Log configures structured logging.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // text or json
}

// HTTP configures the main HTTPS listener.
type HTTP struct {
	Address string `json:"address"`
	// PublicURL is how clients reach the listener (links in mails, SCIM locations).
	PublicURL string `json:"publicURL"`
	// CertFile/KeyFile: a PEM certificate chain and key; empty: a certificate for
	// localhost issued by the platform CA.
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// DocsURL is where the documentation link of the landing page (/)
	// points; empty: no link.
	DocsURL         string   `json:"docsURL"`
	ShutdownTimeout Duration `json:"shutdownTimeout"`
	// DrainDelay is how long, after SIGTERM, /readyz answers 503 while
	// every listener still serves, so that a load balancer takes the node
	// out before it stops accepting.
	DrainDelay Duration   `json:"drainDelay"`
	Limits     HTTPLimits `json:"limits"`
}

// HTTPLimits bound what one client may hold of an HTTPS listener.
type HTTPLimits struct {
	// ConnectionsPerAddress is the most connections one client address (IPv6:
	// one /64) keeps open on the listener; more are answered 429.
	ConnectionsPerAddress int `json:"connectionsPerAddress"`
	// ReadHeaderTimeout bounds the time to send a request's headers.
	ReadHeaderTimeout Duration `json:"readHeaderTimeout"`
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int `json:"maxHeaderBytes"`
	// IdleTimeout closes a kept-alive connection unused for so long.
	IdleTimeout Duration `json:"idleTimeout"`
	// BodyTimeout bounds the time to send a request's body, after its headers.
	BodyTimeout Duration `json:"bodyTimeout"`
	// MaxBodyBytes bounds a request body; 0: no bound of the listener's own.
	MaxBodyBytes int `json:"maxBodyBytes"`
	// Routes give paths limits of their own (a SCIM Bulk upload takes longer
	// than a sign-in).
	Routes []RouteLimits `json:"routes"`
}

// RouteLimits are the body limits of the requests to one path, or to every
// path under it when Path ends in "/".
type RouteLimits struct {
	Path         string   `json:"path"`
	BodyTimeout  Duration `json:"bodyTimeout"`
	MaxBodyBytes int      `json:"maxBodyBytes"`
}

// validate checks the limits of the listener configured at section.
func (l HTTPLimits) validate(section string) error {
	switch {
	case l.ConnectionsPerAddress < 1:
		return fmt.Errorf("%s.connectionsPerAddress: must be at least 1", section)
	case l.ReadHeaderTimeout < Duration(time.Second) || l.ReadHeaderTimeout > Duration(time.Minute):
		return fmt.Errorf("%s.readHeaderTimeout: must be between 1s and 1m", section)
	case l.MaxHeaderBytes < 4<<10 || l.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("%s.maxHeaderBytes: must be between 4096 and 1048576", section)
	case l.IdleTimeout < Duration(time.Second) || l.IdleTimeout > Duration(time.Hour):
		return fmt.Errorf("%s.idleTimeout: must be between 1s and 1h", section)
	}
	if err := checkBody(section, l.BodyTimeout, l.MaxBodyBytes); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, r := range l.Routes {
		name := fmt.Sprintf("%s.routes[%d]", section, i)
		switch {
		case !strings.HasPrefix(r.Path, "/"):
			return fmt.Errorf("%s.path: %q must start with /", name, r.Path)
		case seen[r.Path]:
			return fmt.Errorf("%s.path: %q is listed twice", name, r.Path)
		}
		seen[r.Path] = true
		if err := checkBody(name, r.BodyTimeout, r.MaxBodyBytes); err != nil {
			return err
		}
	}
	return nil
}

func checkBody(section string, timeout Duration, maxBytes int) error {
	if timeout < Duration(time.Second) || timeout > Duration(time.Hour) {
		return fmt.Errorf("%s.bodyTimeout: must be between 1s and 1h (a body is always bounded in time)", section)
	}
	if maxBytes < 0 {
		return fmt.Errorf("%s.maxBodyBytes: must not be negative (0: no bound)", section)
	}
	return nil
}

// defaultHTTPLimits are the main listener's: bodies of up to 1 MiB within
// 30 s, and SCIM Bulk (the factory path) up to 32 MiB within 5 minutes.
func defaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ConnectionsPerAddress: 256,
		ReadHeaderTimeout:     Duration(10 * time.Second),
		MaxHeaderBytes:        64 << 10,
		IdleTimeout:           Duration(2 * time.Minute),
		BodyTimeout:           Duration(30 * time.Second),
		MaxBodyBytes:          1 << 20,
		Routes:                []RouteLimits{{Path: "/scim/v2/Bulk", BodyTimeout: Duration(5 * time.Minute), MaxBodyBytes: 32 << 20}},
	}
}

// Duration is a time.Duration written as text ("15s", "2m") in YAML.
type Duration time.Duration

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration written as text.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"15s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"15s\"", s)
	}
	*d = Duration(v)
	return nil
}

// Storage selects the database.
type Storage struct {
	Type     string   `json:"type"` // sqlite or postgres
	SQLite   SQLite   `json:"sqlite"`
	Postgres Postgres `json:"postgres"`
}

// SQLite is the embedded database.
type SQLite struct {
	// Path of the database file; empty: $home/thingid.db.
	Path string `json:"path"`
}

// Postgres is the scale-out database.
type Postgres struct {
	DSN string `json:"dsn" secret:"true"`
}

// Admin configures the initial administrator.
type Admin struct {
	UserName string `json:"userName"`
}

// Passwords configures the password policy (NIST SP 800-63B).
type Passwords struct {
	MinLength int `json:"minLength"`
}

// Registration configures self-registration.
type Registration struct {
	Enabled           bool `json:"enabled"`
	EmailVerification bool `json:"emailVerification"`
	// AttemptsPerMinute is the per-client-IP rate of registration attempts.
	AttemptsPerMinute int  `json:"attemptsPerMinute"`
	SMTP              SMTP `json:"smtp"`
	// OutboxDir receives verification mails as .eml files when no SMTP host is set;
	// empty: $home/outbox.
	OutboxDir string `json:"outboxDir"`
}

// SelfService configures what people do to their own accounts: password
// recovery and e-mail address changes, whose e-mails go through
// registration.smtp (or registration.outboxDir) like verification mails.
type SelfService struct {
	// PasswordResetLifetime is how long an e-mailed password reset link works.
	PasswordResetLifetime Duration `json:"passwordResetLifetime"`
	// MailsPerHour is how many reset and address change e-mails one account,
	// or one user name or address asked for, is sent per hour at most.
	MailsPerHour int `json:"mailsPerHour"`
}

// SMTP is the mail relay for verification mails.
type SMTP struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password" secret:"true"`
	From     string `json:"from"`
}

// Default returns the configuration `thingid serve` runs with when given none.
func Default() Config {
	return Config{
		Home: "./thingid-data",
		Log:  Log{Level: "info", Format: "text"},
		HTTP: HTTP{Address: "127.0.0.1:8443", ShutdownTimeout: Duration(15 * time.Second), Limits: defaultHTTPLimits(),
			DocsURL: "https://github.com/thingid/thingid/tree/main/docs"},
		Storage:   Storage{Type: "sqlite"},
		Admin:     Admin{UserName: "admin"},
		Passwords: Passwords{MinLength: 15},
		Registration: Registration{
			Enabled:           true,
			AttemptsPerMinute: 10,
			SMTP:              SMTP{Port: 587},
		},
		SelfService: SelfService{PasswordResetLifetime: Duration(30 * time.Minute), MailsPerHour: 3},
		Sessions: Sessions{IdleTimeout: Duration(30 * time.Minute), AbsoluteTimeout: Duration(12 * time.Hour),
			StaffIdleTimeout: Duration(10 * time.Minute), StaffAbsoluteTimeout: Duration(4 * time.Hour)},
		OAuth: OAuth{
			SigningAlgorithm:     "ES256",
			AccessTokenLifetime:  Duration(10 * time.Minute),
			RefreshTokenLifetime: Duration(30 * 24 * time.Hour),
			DeviceCodeLifetime:   Duration(10 * time.Minute),
			ThingScopes:          []string{"device", "profile"},
			// OpenID Connect's scopes only: what they give is the user's to
			// consent to. No admin, SCIM or MQTT scope is allowed by default.
			Registration: ClientRegistration{AllowedScopes: []string{"openid", "profile", "email", "offline_access"}},
		},
		PKI:     defaultPKI(),
		MQTT:    defaultMQTT(),
		Gateway: defaultGateway(),
		UMA:     UMA{TicketLifetime: Duration(5 * time.Minute)},
		LDAP:    defaultLDAP(),
		CoAP:    defaultCoAP(),
	}
}

// Load reads the YAML file at path (none when empty) over the defaults, then
// applies THINGID_* variables from environ. Unknown fields are errors.
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(b, &c); err != nil {
			return c, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	return c, nil
}

// decodeStrict decodes YAML into c, rejecting unknown fields by name.
func decodeStrict(b []byte, c *Config) error {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return err
	}
	if bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
		return nil // an empty file
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return err
	}
	if err := unknownField(doc, reflect.TypeFor[Config](), ""); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return explain(err)
	}
	return nil
}

func explain(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("field %s: want a %s, got %s", te.Field, te.Type, te.Value)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Errorf("unknown field %s (see docs/configuration.md for the fields)", strings.TrimPrefix(msg, "json: unknown field "))
	}
	return err
}

// field is one leaf of the configuration tree.
type field struct {
	path   string // dotted YAML path
	value  reflect.Value
	secret bool
	// spaces: a []string set from text as a space-separated list.
	spaces bool
}

// leaves lists every leaf field of c in declaration order.
func leaves(c *Config) []field {
	var out []field
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			name := prefix + strings.Split(sf.Tag.Get("json"), ",")[0]
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct {
				walk(fv, name+".")
				continue
			}
			out = append(out, field{path: name, value: fv, secret: sf.Tag.Get("secret") == "true", spaces: sf.Tag.Get("env") == "spaces"})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// EnvName is the environment variable overriding the field at a dotted path.
func EnvName(path string) string {
	return "THINGID_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "THINGID_") {
			env[k] = v
		}
	}
	known := map[string]bool{}
	for _, f := range leaves(c) {
		name := EnvName(f.path)
		known[name] = true
		v, ok := env[name]
		if !ok {
			continue
		}
		if err := Set(c, f.path, v); err != nil {
			return fmt.Errorf("environment %s: %w", name, err)
		}
	}
	for k := range env {
		// THINGID_TEST_* variables configure the test suite, not the server.
		if !known[k] && !strings.HasPrefix(k, "THINGID_TEST_") {
			return fmt.Errorf("environment %s: no such configuration field (see docs/configuration.md)", k)
		}
	}
	return nil
}

// Set assigns the textual value v to the field at a dotted path.
func Set(c *Config, path, v string) error {
	for _, f := range leaves(c) {
		if f.path != path {
			continue
		}
		switch f.value.Interface().(type) {
		case []string:
			if !f.spaces {
				return fmt.Errorf("%s: cannot be set from text; set it in the configuration file", path)
			}
			f.value.Set(reflect.ValueOf(strings.Fields(v)))
		case string:
			f.value.SetString(v)
		case bool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not true or false", path, v)
			}
			f.value.SetBool(b)
		case int:
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not a whole number", path, v)
			}
			f.value.SetInt(int64(n))
		case Duration:
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not a duration such as 15s", path, v)
			}
			f.value.SetInt(int64(d))
		default:
			return fmt.Errorf("%s: cannot be set from text", path)
		}
		return nil
	}
	return fmt.Errorf("no such configuration field %q", path)
}

// Validate checks values and fills in the defaults derived from Home.
func (c *Config) Validate() error {
	if c.Home == "" {
		return fmt.Errorf("home: must name the data directory")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	host, port, err := net.SplitHostPort(c.HTTP.Address)
	if err != nil {
		return fmt.Errorf("http.address: %q is not host:port (%v)", c.HTTP.Address, err)
	}
	if c.HTTP.PublicURL == "" {
		if host == "" || host == "0.0.0.0" || host == "::" || host == "127.0.0.1" {
			host = "localhost"
		}
		c.HTTP.PublicURL = "https://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.HTTP.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("http.publicURL: %q must be an https URL without query or fragment", c.HTTP.PublicURL)
	}
	c.HTTP.PublicURL = strings.TrimSuffix(c.HTTP.PublicURL, "/")
	if u, err := url.Parse(c.HTTP.DocsURL); c.HTTP.DocsURL != "" && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		return fmt.Errorf("http.docsURL: %q must be an http or https URL, or empty for no documentation link", c.HTTP.DocsURL)
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		return fmt.Errorf("http.certFile and http.keyFile: set both or neither")
	}
	if c.HTTP.ShutdownTimeout <= 0 {
		return fmt.Errorf("http.shutdownTimeout: must be positive")
	}
	if err := c.HTTP.Limits.validate("http.limits"); err != nil {
		return err
	}
	if c.HTTP.DrainDelay < 0 || c.HTTP.DrainDelay > Duration(5*time.Minute) {
		return fmt.Errorf("http.drainDelay: must be between 0s and 5m")
	}
	if c.Connections.Max < 0 {
		return fmt.Errorf("connections.max: must not be negative (0: from the open-files limit)")
	}
	if _, err := c.Connections.ProxyProtocol.TrustedPrefixes(); err != nil {
		return err
	}
	switch c.Storage.Type {
	case "sqlite":
		if c.Storage.SQLite.Path == "" {
			c.Storage.SQLite.Path = filepath.Join(c.Home, "thingid.db")
		}
	case "postgres":
		if c.Storage.Postgres.DSN == "" {
			return fmt.Errorf("storage.postgres.dsn: required when storage.type is postgres")
		}
	default:
		return fmt.Errorf("storage.type: %q is not sqlite or postgres", c.Storage.Type)
	}
	if c.Admin.UserName == "" {
		return fmt.Errorf("admin.userName: required")
	}
	if c.Passwords.MinLength < 8 || c.Passwords.MinLength > 64 {
		return fmt.Errorf("passwords.minLength: %d is outside 8..64 (NIST SP 800-63B)", c.Passwords.MinLength)
	}
	if c.Sessions.IdleTimeout <= 0 || c.Sessions.AbsoluteTimeout < c.Sessions.IdleTimeout {
		return fmt.Errorf("sessions.idleTimeout and sessions.absoluteTimeout: both positive, absolute at least idle")
	}
	if c.Sessions.StaffIdleTimeout <= 0 || c.Sessions.StaffIdleTimeout > c.Sessions.IdleTimeout {
		return fmt.Errorf("sessions.staffIdleTimeout %s: want positive and at most sessions.idleTimeout (%s)",
			time.Duration(c.Sessions.StaffIdleTimeout), time.Duration(c.Sessions.IdleTimeout))
	}
	if c.Sessions.StaffAbsoluteTimeout < c.Sessions.StaffIdleTimeout || c.Sessions.StaffAbsoluteTimeout > c.Sessions.AbsoluteTimeout {
		return fmt.Errorf("sessions.staffAbsoluteTimeout %s: want at least sessions.staffIdleTimeout and at most sessions.absoluteTimeout (%s)",
			time.Duration(c.Sessions.StaffAbsoluteTimeout), time.Duration(c.Sessions.AbsoluteTimeout))
	}
	switch c.OAuth.SigningAlgorithm {
	case "ES256", "EdDSA", "RS256":
	default:
		return fmt.Errorf("oauth.signingAlgorithm: %q is not ES256, EdDSA or RS256", c.OAuth.SigningAlgorithm)
	}
	if c.UMA.TicketLifetime < Duration(10*time.Second) || c.UMA.TicketLifetime > Duration(time.Hour) {
		return fmt.Errorf("uma.ticketLifetime %s: want between 10s and 1h", time.Duration(c.UMA.TicketLifetime))
	}
	if c.OAuth.AccessTokenLifetime < Duration(time.Minute) || c.OAuth.AccessTokenLifetime > Duration(24*time.Hour) {
		return fmt.Errorf("oauth.accessTokenLifetime: must be between 1m and 24h (short-lived tokens, RFC 9700 §2.2.2)")
	}
	if c.OAuth.RefreshTokenLifetime < c.OAuth.AccessTokenLifetime {
		return fmt.Errorf("oauth.refreshTokenLifetime: must be at least oauth.accessTokenLifetime")
	}
	if c.OAuth.DeviceCodeLifetime < Duration(time.Minute) || c.OAuth.DeviceCodeLifetime > Duration(time.Hour) {
		return fmt.Errorf("oauth.deviceCodeLifetime: must be between 1m and 1h")
	}
	if t := c.OAuth.RegistrationToken; t != "" && len(t) < 32 {
		return fmt.Errorf("oauth.registrationToken: use at least 32 random characters (openssl rand -base64 32)")
	}
	for sc, text := range c.OAuth.ScopeDescriptions {
		switch {
		case sc == "" || strings.ContainsAny(sc, " \"\\"):
			return fmt.Errorf("oauth.scopeDescriptions: %q is not a scope name", sc)
		case strings.TrimSpace(text) == "":
			return fmt.Errorf("oauth.scopeDescriptions.%s: empty; say what the scope lets a client do", sc)
		case len(text) > 200:
			return fmt.Errorf("oauth.scopeDescriptions.%s: longer than 200 characters", sc)
		}
	}
	for client, auds := range c.OAuth.ResourceServers {
		if client == "" || strings.TrimSpace(client) != client {
			return fmt.Errorf("oauth.resourceServers: %q is not a client id", client)
		}
		if len(auds) == 0 {
			return fmt.Errorf("oauth.resourceServers.%s: name the audiences whose tokens it may introspect", client)
		}
		for i, a := range auds {
			if u, err := url.Parse(a); err != nil || !u.IsAbs() || u.Fragment != "" {
				return fmt.Errorf("oauth.resourceServers.%s[%d]: %q is not an absolute URI without a fragment (an audience, RFC 8707)", client, i, a)
			}
		}
	}
	for i, sc := range c.OAuth.Registration.AllowedScopes {
		if err := checkScopeToken(sc); err != nil {
			return fmt.Errorf("oauth.registration.allowedScopes[%d]: %w", i, err)
		}
		if slices.Contains(c.OAuth.Registration.AllowedScopes[:i], sc) {
			return fmt.Errorf("oauth.registration.allowedScopes[%d]: %q is listed twice", i, sc)
		}
	}
	if c.Registration.AttemptsPerMinute < 1 {
		return fmt.Errorf("registration.attemptsPerMinute: must be at least 1")
	}
	if c.Registration.OutboxDir == "" {
		c.Registration.OutboxDir = filepath.Join(c.Home, "outbox")
	}
	if s := c.Registration.SMTP; s.Host != "" && (s.From == "" || s.Port < 1 || s.Port > 65535) {
		return fmt.Errorf("registration.smtp: from and a port in 1..65535 are required with a host")
	}
	// OWASP Forgot Password Cheat Sheet: a reset link is short-lived.
	if d := time.Duration(c.SelfService.PasswordResetLifetime); d < time.Minute || d > 24*time.Hour {
		return fmt.Errorf("selfService.passwordResetLifetime: must be between 1m and 24h (default 30m)")
	}
	if c.SelfService.MailsPerHour < 1 {
		return fmt.Errorf("selfService.mailsPerHour: must be at least 1")
	}
	if err := c.PKI.validate(c.Home); err != nil {
		return err
	}
	if err := c.MQTT.validate(c.Home); err != nil {
		return err
	}
	if err := c.Gateway.validate(c.Home); err != nil {
		return err
	}
	if err := c.LDAP.validate(); err != nil {
		return err
	}
	return c.CoAP.validate()
}

// Masked returns the configuration as YAML with secrets replaced by "******".
func (c Config) Masked() ([]byte, error) {
	for _, f := range leaves(&c) {
		if f.secret && f.value.String() != "" {
			f.value.SetString("******")
		}
	}
	return yaml.Marshal(c)
}

// Fields lists every field's dotted path and environment variable, for docs and tests.
func Fields() [][2]string {
	c := Default()
	var out [][2]string
	for _, f := range leaves(&c) {
		out = append(out, [2]string{f.path, EnvName(f.path)})
	}
	return out
}

// checkScopeToken: RFC 6749 §3.3, scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func checkScopeToken(sc string) error {
	if sc == "" {
		return fmt.Errorf("empty scope")
	}
	for _, r := range sc {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return fmt.Errorf("%q is not a scope token (RFC 6749 §3.3)", sc)
		}
	}
	return nil
}
