package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "thingid.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if c.HTTP.PublicURL != "https://localhost:8443" {
		t.Errorf("publicURL = %q", c.HTTP.PublicURL)
	}
	if c.Storage.SQLite.Path != filepath.Join("thingid-data", "thingid.db") {
		t.Errorf("sqlite path = %q", c.Storage.SQLite.Path)
	}
}

func TestFileThenEnv(t *testing.T) {
	p := writeConfig(t, `
home: /var/lib/thingid
http:
  address: 127.0.0.1:9000
  shutdownTimeout: 3s
storage:
  type: postgres
  postgres:
    dsn: postgres://u:secret@db/thingid
`)
	c, err := Load(p, []string{"THINGID_HTTP_ADDRESS=127.0.0.1:9001", "THINGID_REGISTRATION_ENABLED=false", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Address != "127.0.0.1:9001" || c.Home != "/var/lib/thingid" || c.Registration.Enabled {
		t.Errorf("got %+v", c)
	}
	if time.Duration(c.HTTP.ShutdownTimeout) != 3*time.Second {
		t.Errorf("shutdownTimeout = %v", c.HTTP.ShutdownTimeout)
	}
	out, err := c.Masked()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret") || !strings.Contains(string(out), "******") {
		t.Errorf("secret not masked:\n%s", out)
	}
	if c.Storage.Postgres.DSN != "postgres://u:secret@db/thingid" {
		t.Errorf("masking changed the config itself: %q", c.Storage.Postgres.DSN)
	}
}

func TestBadInputNamesTheField(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"unknown field", "htp:\n  address: x\n", nil, "unknown field htp; did you mean http?"},
		{"unknown nested field", "http:\n  adress: x\n", nil, "unknown field http.adress; did you mean http.address?"},
		{"unknown field in another case", "http:\n  publicurl: x\n", nil, "did you mean http.publicURL?"},
		{"unknown field in a list", "http:\n  limits:\n    routes:\n    - path: /a\n    - pth: /b\n", nil, "unknown field http.limits.routes[1].pth; did you mean http.limits.routes[1].path?"},
		{"unknown field nothing like another", "http:\n  zzzzzz: 1\n", nil, "unknown field http.zzzzzz (see"},
		{"wrong type", "registration:\n  attemptsPerMinute: lots\n", nil, "attemptsPerMinute"},
		{"bad duration", "http:\n  shutdownTimeout: soon\n", nil, "duration"},
		{"bad yaml", "http: [\n", nil, "yaml"},
		{"unknown env", "", []string{"THINGID_NOPE=1"}, "THINGID_NOPE"},
		{"bad env bool", "", []string{"THINGID_REGISTRATION_ENABLED=maybe"}, "registration.enabled"},
		{"bad env int", "", []string{"THINGID_PASSWORDS_MINLENGTH=x"}, "passwords.minLength"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.file), tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Storage.Type = "mysql" }, "storage.type"},
		{func(c *Config) { c.Storage.Type = "postgres" }, "storage.postgres.dsn"},
		{func(c *Config) { c.HTTP.Address = "8443" }, "http.address"},
		{func(c *Config) { c.HTTP.PublicURL = "http://example.com" }, "http.publicURL"},
		{func(c *Config) { c.HTTP.DocsURL = "javascript:alert(1)" }, "http.docsURL"},
		{func(c *Config) { c.HTTP.DocsURL = "/docs" }, "http.docsURL"},
		{func(c *Config) { c.HTTP.CertFile = "a.pem" }, "http.certFile"},
		{func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{func(c *Config) { c.Passwords.MinLength = 4 }, "passwords.minLength"},
		{func(c *Config) { c.Registration.SMTP.Host = "mail" }, "registration.smtp"},
		{func(c *Config) { c.Home = "" }, "home"},
		{func(c *Config) { c.HTTP.Limits.BodyTimeout = 0 }, "http.limits.bodyTimeout"},
		{func(c *Config) { c.HTTP.Limits.ConnectionsPerAddress = 0 }, "http.limits.connectionsPerAddress"},
		{func(c *Config) { c.HTTP.Limits.MaxHeaderBytes = 100 << 20 }, "http.limits.maxHeaderBytes"},
		{func(c *Config) {
			c.HTTP.Limits.Routes = []RouteLimits{{Path: "scim", BodyTimeout: Duration(time.Minute)}}
		}, "http.limits.routes[0].path"},
		{func(c *Config) { c.HTTP.Limits.Routes = []RouteLimits{{Path: "/a"}} }, "http.limits.routes[0].bodyTimeout"},
		{func(c *Config) { c.Gateway.Limits.MaxBodyBytes = -1 }, "gateway.limits.maxBodyBytes"},
		{func(c *Config) { c.MQTT.Limits.ConnectionsPerAddress = 0 }, "mqtt.limits.connectionsPerAddress"},
		{func(c *Config) { c.MQTT.Cluster.NATS.URL = "http://nats:4222" }, "mqtt.cluster.nats.url"},
		{func(c *Config) { c.MQTT.Cluster.NATS.URL = "nats://a:4222, tcp://b" }, "mqtt.cluster.nats.url"},
		{func(c *Config) { c.MQTT.Cluster.NATS.CAFile = "ca.pem" }, "mqtt.cluster.nats.url"},
		{func(c *Config) { c.MQTT.Cluster.NATS.Replicas = 0 }, "mqtt.cluster.nats.replicas"},
		{func(c *Config) { c.MQTT.Cluster.NATS.Replicas = 7 }, "mqtt.cluster.nats.replicas"},
		{func(c *Config) { c.MQTT.Cluster.NATS.NodeTTL = Duration(time.Second) }, "mqtt.cluster.nats.nodeTTL"},
		{func(c *Config) { c.MQTT.Cluster.NATS.NodeTTL = Duration(time.Hour) }, "mqtt.cluster.nats.nodeTTL"},
		{func(c *Config) { c.Connections.Max = -1 }, "connections.max"},
		{func(c *Config) {
			c.Connections.ProxyProtocol.Trusted = []string{"10.0.0.0/8", "haproxy.internal"}
		}, "connections.proxyProtocol.trusted[1]"},
		{func(c *Config) { c.Connections.ProxyProtocol.Trusted = []string{"10.0.0.1/33"} }, "connections.proxyProtocol.trusted[0]"},
		{func(c *Config) { c.HTTP.DrainDelay = Duration(-time.Second) }, "http.drainDelay"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.LDAPSAddress, c.LDAP.StartTLSAddress = true, "", "" }, "ldap.ldapsAddress"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.StartTLSAddress = true, "1389" }, "ldap.startTLSAddress"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.StartTLSAddress = true, c.LDAP.LDAPSAddress }, "ldap.startTLSAddress"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.Limits.MaxMessageBytes = true, 10 }, "ldap.limits.maxMessageBytes"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.Limits.IdleTimeout = true, 0 }, "ldap.limits.idleTimeout"},
		{func(c *Config) { c.LDAP.Enabled, c.LDAP.Limits.ConnectionsPerAddress = true, -1 }, "ldap.limits.connectionsPerAddress"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.DTLSAddress = true, "5684" }, "coap.dtlsAddress"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.UDPAddress = true, "0.0.0.0:5683" }, "coap.udpAddress"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.UDPAddress = true, "[::]:5683" }, "coap.udpAddress"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.MaxSessions = true, 0 }, "coap.limits.maxSessions"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.HandshakeTimeout = true, 0 }, "coap.limits.handshakeTimeout"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.HandshakesPerSecond = true, 0 }, "coap.limits.handshakesPerSecond"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.HandshakeBurst = true, 0 }, "coap.limits.handshakeBurst"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.MaxObservers = true, 0 }, "coap.limits.maxObservers"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.ObserversPerSession = true, 0 }, "coap.limits.observersPerSession"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.MaxBody = true, 100 }, "coap.limits.maxBody"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.BlockTransfers = true, 0 }, "coap.limits.blockTransfers"},
		{func(c *Config) { c.CoAP.Enabled, c.CoAP.Limits.BlockTimeout = true, 0 }, "coap.limits.blockTimeout"},
	}
	for _, tc := range cases {
		c := Default()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want mention of %q", err, tc.want)
		}
	}
}

func TestTrustedProxies(t *testing.T) {
	c, err := Load("", []string{"THINGID_CONNECTIONS_PROXYPROTOCOL_TRUSTED=10.1.2.3 10.0.0.0/8 ::ffff:192.0.2.0/120 2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Connections.ProxyProtocol.TrustedPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.1.2.3/32", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::1/128"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}

// Every field must be documented, with its environment variable.
func TestEveryFieldDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Fields() {
		if !strings.Contains(string(doc), "`"+f[0]+"`") || !strings.Contains(string(doc), f[1]) {
			t.Errorf("docs/configuration.md does not document %s (%s)", f[0], f[1])
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("home: x\n")
	f.Add("http:\n  address: 127.0.0.1:1\n  shutdownTimeout: 1s\n")
	f.Add("storage: {type: postgres, postgres: {dsn: x}}")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		c, err := Load(p, nil)
		if err == nil {
			_ = c.Validate()
			if _, err := c.Masked(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestMQTTIDTokenClients(t *testing.T) {
	p := writeConfig(t, "mqtt:\n  idTokenClients: [app-1, app-2]\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || len(c.MQTT.IDTokenClients) != 2 || c.MQTT.IDTokenClients[1] != "app-2" {
		t.Fatalf("%v %q", err, c.MQTT.IDTokenClients)
	}
	if _, err := Load(writeConfig(t, ""), []string{"THINGID_MQTT_IDTOKENCLIENTS=app-1"}); err == nil || !strings.Contains(err.Error(), "mqtt.idTokenClients") {
		t.Errorf("from the environment: %v, want a refusal naming mqtt.idTokenClients", err)
	}
	for _, tc := range []struct {
		clients []string
		want    string
	}{
		{[]string{"app-1", ""}, "mqtt.idTokenClients[1]: empty"},
		{[]string{"app-1", "app-1"}, "mqtt.idTokenClients[1]: \"app-1\" is listed twice"},
		{[]string{"urn:thingid:mqtt"}, "mqtt.idTokenClients[0]: \"urn:thingid:mqtt\" is the broker's audience"},
	} {
		c := Default()
		c.MQTT.IDTokenClients = tc.clients
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.clients, err, tc.want)
		}
	}
}

// The variable docs/configuration.md names sets the list: a client id
// has no spaces.
func TestTrustedResourceServersFromEnvironment(t *testing.T) {
	c, err := Load("", []string{"THINGID_UMA_TRUSTEDRESOURCESERVERS=01a2-music  01a2-photos"})
	if err != nil || !slices.Equal(c.UMA.TrustedResourceServers, []string{"01a2-music", "01a2-photos"}) {
		t.Fatalf("from the environment: %v %v", c.UMA.TrustedResourceServers, err)
	}
}

func TestRegistrationAllowedScopes(t *testing.T) {
	c, err := Load("", nil)
	if err != nil || !slices.Equal(c.OAuth.Registration.AllowedScopes, []string{"openid", "profile", "email", "offline_access"}) {
		t.Fatalf("default %v %v", c.OAuth.Registration.AllowedScopes, err)
	}
	c, err = Load("", []string{"THINGID_OAUTH_REGISTRATION_ALLOWEDSCOPES=openid  mqtt:sub:things/+/telemetry"})
	if err != nil || !slices.Equal(c.OAuth.Registration.AllowedScopes, []string{"openid", "mqtt:sub:things/+/telemetry"}) {
		t.Fatalf("from the environment: %v %v", c.OAuth.Registration.AllowedScopes, err)
	}
	c, err = Load(writeConfig(t, "oauth:\n  registration:\n    allowedScopes: []\n"), nil)
	if err != nil || len(c.OAuth.Registration.AllowedScopes) != 0 || c.Validate() != nil {
		t.Fatalf("an empty list: %v %v", c.OAuth.Registration.AllowedScopes, err)
	}
	for _, bad := range []string{"allowedScopes: [\"a b\"]", "allowedScopes: [\"\"]", "allowedScopes: [openid, openid]", "allowedScopes: [\"a\\\"b\"]"} {
		c, err := Load(writeConfig(t, "oauth:\n  registration:\n    "+bad+"\n"), nil)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), "oauth.registration.allowedScopes[") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// A rule's deny lists are read from the file; a rule may only deny, and
// one that neither grants nor denies is refused naming it.
func TestMQTTRuleDeny(t *testing.T) {
	p := writeConfig(t, "mqtt:\n  rules:\n    - who: service\n      subscribe: ['things/#']\n      deny:\n        subscribe: [things/secret]\n    - who: user\n      deny: {publish: ['things/+/keys/#']}\n")
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.MQTT.Rules
	if err := c.Validate(); err != nil || len(r) != 2 || r[0].Deny.Subscribe[0] != "things/secret" || r[1].Deny.Publish[0] != "things/+/keys/#" {
		t.Fatalf("%v %+v", err, r)
	}
	c.MQTT.Rules = append(c.MQTT.Rules, MQTTRule{Who: "thing"})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mqtt.rules[2]") {
		t.Errorf("a rule granting and denying nothing: %v", err)
	}
	if _, err := Load(writeConfig(t, "mqtt:\n  rules:\n    - who: user\n      deny: {read: [x]}\n"), nil); err == nil || !strings.Contains(err.Error(), "read") {
		t.Errorf("an unknown deny field: %v", err)
	}
}

func TestScopeDescriptionsValidated(t *testing.T) {
	for text, want := range map[string]string{
		"oauth:\n  scopeDescriptions:\n    speaker:play: Play music\n":            "",
		"oauth:\n  scopeDescriptions:\n    speaker:play: \"  \"\n":                "oauth.scopeDescriptions.speaker:play: empty",
		"oauth:\n  scopeDescriptions:\n    \"a b\": Two scopes\n":                 `"a b" is not a scope name`,
		"oauth:\n  scopeDescriptions:\n    x: " + strings.Repeat("y", 201) + "\n": "longer than 200",
		"oauth:\n  resourceServers:\n    edge-rs: [urn:thingid:mqtt]\n":           "",
		"oauth:\n  resourceServers:\n    edge-rs: []\n":                           "oauth.resourceServers.edge-rs: name the audiences",
		"oauth:\n  resourceServers:\n    edge-rs: [not-a-uri]\n":                  `oauth.resourceServers.edge-rs[0]: "not-a-uri" is not an absolute URI`,
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, nil)
		if err == nil {
			err = c.Validate()
		}
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
}
