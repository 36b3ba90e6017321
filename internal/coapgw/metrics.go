package coapgw

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	handshakes *prometheus.CounterVec // thingid_coap_handshakes_total{result}
	sessions   prometheus.Gauge       // thingid_coap_sessions
	ended      *prometheus.CounterVec // thingid_coap_sessions_ended_total{reason}
	requests   *prometheus.CounterVec // thingid_coap_requests_total{resource}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_handshakes_total",
			Help: "DTLS handshakes of the CoAP gateway by result (ok, refused, error, too_many_sessions, rate_limited)."}, []string{"result"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "thingid_coap_sessions",
			Help: "DTLS sessions the CoAP gateway holds."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_sessions_ended_total",
			Help: "DTLS sessions the CoAP gateway ended, by reason (thing_disabled, owner_unlinked, certificate_revoked, certificate_expired, psk_reissued, token_revoked, token_expired)."}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_requests_total",
			Help: "CoAP requests by resource."}, []string{"resource"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.handshakes, m.sessions, m.ended, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
