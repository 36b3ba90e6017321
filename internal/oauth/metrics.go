package oauth

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the authorization server's Prometheus series. Every label
// value is one the server chose: a client's grant_type or error code never
// becomes one, so the series stay bounded.
type metrics struct {
	tokens         *prometheus.CounterVec
	consents       *prometheus.CounterVec
	introspections *prometheus.CounterVec
}

// tokenResults are the result labels of the token endpoint besides
// "issued": the error codes it answers (RFC 6749 §5.2, RFC 8628 §3.5, RFC
// 8707 §2, RFC 9449 §7, §8) and those of the UMA grant (UMA 2.0 Grant
// §3.3.6). An extension's code outside the list counts as "other".
var tokenResults = []string{
	"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
	"invalid_scope", "authorization_pending", "slow_down", "expired_token", "access_denied", "invalid_target",
	"invalid_dpop_proof", "use_dpop_nonce", "server_error",
	"need_info", "request_submitted", "request_denied",
}

// Labels of thingid_consent_decisions_total.
const (
	flowAuthorize = "authorize"
	flowDevice    = "device"
)

// newMetrics makes the series; those of grants (issued) and of decisions
// start at zero, so that rate() sees the first one.
func newMetrics(reg prometheus.Registerer, grants []string) *metrics {
	m := &metrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_oauth_tokens_total",
			Help: "Token endpoint answers by grant type and result (issued, or the OAuth error code).",
		}, []string{"grant", "result"}),
		consents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_consent_decisions_total",
			Help: "Consent decisions people made, by flow (authorize, device) and decision (allow, deny).",
		}, []string{"flow", "decision"}),
		introspections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_oauth_introspections_total",
			Help: "Answers of /oauth2/introspect by result: active, inactive, or withheld (a live token the caller may not learn of, answered inactive: probing, or a resource server missing from oauth.resourceServers).",
		}, []string{"result"}),
	}
	for _, gt := range grants {
		m.tokens.WithLabelValues(gt, "issued")
	}
	for _, flow := range []string{flowAuthorize, flowDevice} {
		m.consents.WithLabelValues(flow, "allow")
		m.consents.WithLabelValues(flow, "deny")
	}
	for _, result := range []string{"active", "inactive", "withheld"} {
		m.introspections.WithLabelValues(result)
	}
	if reg != nil {
		reg.MustRegister(m.tokens, m.consents, m.introspections)
	}
	return m
}

// token counts one answer of the token endpoint; grant is the label
// (Server.grantLabel), code the error code or "" when tokens were issued.
func (m *metrics) token(grant, code string) {
	result := "issued"
	if code != "" {
		result = "other"
		if slices.Contains(tokenResults, code) {
			result = code
		}
	}
	m.tokens.WithLabelValues(grant, result).Inc()
}

// consent counts a decision that took effect.
func (m *metrics) consent(flow string, allow bool) {
	decision := "deny"
	if allow {
		decision = "allow"
	}
	m.consents.WithLabelValues(flow, decision).Inc()
}

// introspection counts one answer of the introspection endpoint.
func (m *metrics) introspection(resp *introspection) {
	result := "inactive"
	switch {
	case resp.Active:
		result = "active"
	case resp == withheld:
		result = "withheld"
	}
	m.introspections.WithLabelValues(result).Inc()
}

// grantLabel is the grant label of a token request: a grant type this
// server serves (built in or an extension), else "other".
func (s *Server) grantLabel(gt string) string {
	if _, ok := s.opts.Extensions[gt]; ok || slices.Contains(supportedGrantTypes, gt) {
		return gt
	}
	return "other"
}
