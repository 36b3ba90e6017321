package broker

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/mqtt"
)

// metrics are the broker's Prometheus metrics. Message counts come from
// the core's own counters (mqtt.Stats), read at scrape time, so that
// counting costs the message path nothing.
type metrics struct {
	authFailures *prometheus.CounterVec
	denied       *prometheus.CounterVec
	closed       *prometheus.CounterVec
	auditDropped prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_mqtt_auth_failures_total", Help: "MQTT CONNECTs and re-authentications refused, by reason.",
		}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_mqtt_denied_total", Help: "MQTT publishes, subscriptions and deliveries (live, retained, queued, resumed) refused by the topic rules and policies.",
		}, []string{"action"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_mqtt_closed_total", Help: "MQTT connections ended by the broker: token expiry and revocations, by reason.",
		}, []string{"reason"}),
		auditDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thingid_mqtt_audit_dropped_total", Help: "Audit records of MQTT denials dropped because the database could not keep up.",
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer, s *mqtt.Server) error {
	gauge := func(name, help string, v func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		m.authFailures, m.denied, m.closed, m.auditDropped,
		gauge("thingid_mqtt_connections", "MQTT clients connected.", s.Stats.Connected.Load),
		gauge("thingid_mqtt_connections_parked", "MQTT connections idle until their next packet, held without a reader (on Linux without a goroutine).", s.Stats.Parked.Load),
		gauge("thingid_mqtt_subscriptions", "MQTT subscriptions.", func() int64 { return int64(s.Subscriptions()) }),
		gauge("thingid_mqtt_retained_messages", "MQTT retained messages.", func() int64 { return int64(s.Retained()) }),
		gauge("thingid_mqtt_inflight_messages", "MQTT QoS 1 and 2 messages awaiting acknowledgement, in all sessions.", func() int64 {
			var n int64
			s.Each(func(cl *mqtt.Client) bool {
				n += int64(cl.Queued())
				return true
			})
			return n
		}),
		counter("thingid_mqtt_messages_received_total", "MQTT PUBLISH packets received from clients.", &s.Stats.Received),
		counter("thingid_mqtt_messages_sent_total", "MQTT PUBLISH packets sent to clients.", &s.Stats.Sent),
		counter("thingid_mqtt_messages_dropped_total", "MQTT messages dropped because a client's write queue was full.", &s.Stats.Dropped),
		counter("thingid_mqtt_inflight_dropped_total", "MQTT QoS 1 and 2 messages dropped because a session held too many.", &s.Stats.InflightDropped),
		counter("thingid_mqtt_wills_withheld_total", "MQTT wills not published because their session's record could not be written without them: another node holds the session now, or the store failed.", &s.Stats.WillsWithheld),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
