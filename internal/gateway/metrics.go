package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series, per route.
type metrics struct {
	requests      *prometheus.CounterVec
	denials       *prometheus.CounterVec
	throttled     *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	upstream      *prometheus.HistogramVec
	reloads       *prometheus.CounterVec
	routes        prometheus.Gauge
	limiterErrors prometheus.Counter
}

// routeMetrics are a route's series, resolved once (per status code on
// first use).
type routeMetrics struct {
	name      string
	requests  *prometheus.CounterVec
	codes     [600]atomic.Pointer[prometheus.Counter]
	throttled prometheus.Counter
	duration  prometheus.Observer
	upstream  prometheus.Observer
}

// requestsWith is the request counter of the route for a status code.
func (rm *routeMetrics) requestsWith(code int) prometheus.Counter {
	if code < 0 || code >= len(rm.codes) {
		return rm.requests.WithLabelValues(rm.name, strconv.Itoa(code))
	}
	if c := rm.codes[code].Load(); c != nil {
		return *c
	}
	c := rm.requests.WithLabelValues(rm.name, strconv.Itoa(code))
	rm.codes[code].Store(&c)
	return c
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_gateway_requests_total", Help: "Gateway requests by route and status code.",
		}, []string{"route", "code"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_gateway_denials_total", Help: "Requests the gateway refused, by route and reason.",
		}, []string{"route", "reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_gateway_throttled_total", Help: "Requests refused with 429 by the throttle filter, by route.",
		}, []string{"route"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thingid_gateway_request_duration_seconds", Help: "Time from request to answer, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thingid_gateway_upstream_duration_seconds", Help: "Time the upstream took to answer (headers), by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_gateway_route_reloads_total", Help: "Loads of the routes directory, by result (ok, error).",
		}, []string{"result"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "thingid_gateway_routes", Help: "Routes in service.",
		}),
		limiterErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thingid_gateway_throttle_errors_total", Help: "Requests let through because the throttle counters could not be reached.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.denials, m.throttled, m.duration, m.upstream, m.reloads, m.routes, m.limiterErrors)
	}
	return m
}

func (m *metrics) route(name string) *routeMetrics {
	return &routeMetrics{
		name:      name,
		requests:  m.requests,
		throttled: m.throttled.WithLabelValues(name),
		duration:  m.duration.WithLabelValues(name),
		upstream:  m.upstream.WithLabelValues(name),
	}
}

// observe counts one request.
func (m *metrics) observe(x *exchange, status int, took time.Duration) {
	name := x.routeName()
	if x.reason != "" {
		m.denials.WithLabelValues(name, x.reason).Inc()
	}
	rm := x.route.metricsOrNil()
	if rm == nil {
		m.requests.WithLabelValues(name, strconv.Itoa(status)).Inc()
		return
	}
	rm.requestsWith(status).Inc()
	if x.reason == "throttled" {
		rm.throttled.Inc()
	}
	rm.duration.Observe(took.Seconds())
	if x.upstream > 0 {
		rm.upstream.Observe(x.upstream.Seconds())
	}
}

func (r *route) metricsOrNil() *routeMetrics {
	if r == nil {
		return nil
	}
	return r.metrics
}

// duration is a time.Duration written as text ("60s") in route files.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"60s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"60s\"", s)
	}
	*d = duration(v)
	return nil
}
