package ace

import (
	"errors"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoints, the label of thingid_ace_requests_total.
const (
	endpointToken      = "token"
	endpointDevice     = "device_authorization"
	endpointAuthzInfo  = "authz_info"
	endpointRevoke     = "revoke"
	endpointIntrospect = "introspect"
	// endpointAdminRevoke counts administrators' revocations (RevokeIssued:
	// the admin API and the console).
	endpointAdminRevoke = "admin_revoke"
)

// results bound the result label: "ok", a code of these, or "other".
var results = []string{"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
	"invalid_scope", "unsupported_pop_key", "invalid_target", "invalid_token", "authorization_pending", "slow_down",
	"expired_token", "access_denied", "server_error"}

// metrics counts ACE's answers. The tokens it issues are also counted by
// the authorization server with those of HTTPS (thingid_oauth_tokens_total).
type metrics struct{ answers *prometheus.CounterVec }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{answers: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "thingid_ace_requests_total",
		Help: "ACE answers by endpoint (token, device_authorization, authz_info, revoke, introspect, admin_revoke) and result (ok, or the error code).",
	}, []string{"endpoint", "result"})}
	for _, e := range []string{endpointToken, endpointDevice, endpointAuthzInfo, endpointRevoke, endpointIntrospect, endpointAdminRevoke} {
		m.answers.WithLabelValues(e, "ok")
	}
	if reg != nil {
		reg.MustRegister(m.answers)
	}
	return m
}

// count counts one answer of endpoint: err nil, or its refusal.
func (m *metrics) count(endpoint string, err error) {
	result := "ok"
	if err != nil {
		result = "other"
		var e *Error
		if errors.As(err, &e) && slices.Contains(results, e.Code) {
			result = e.Code
		}
	}
	m.answers.WithLabelValues(endpoint, result).Inc()
}
