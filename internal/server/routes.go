package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/httpstatus"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/openapi"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/uma"
)

// routes builds the handler of the main listener.
// newRegistry is the Prometheus registry every component of the platform
// registers with, served at /metrics.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// routes builds the handler of the main listener, and returns with it the
// UMA server; mqtt is nil when the broker is off.
func (p *Platform) routes(tk *tokenSet, certs *certauth.Checker, reg *prometheus.Registry, admins *authn.Admins, hh *household.Service, mqtt *broker.Broker, log *slog.Logger) (http.Handler, *uma.Server, error) {
	m := newHTTPMetrics(reg)

	mux := routes.New()
	p.table.Store(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	unavailable := func(w http.ResponseWriter, reason string) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason})
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if p.draining.Load() {
			unavailable(w, "draining")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := p.Store.Ping(ctx); err != nil {
			log.Warn("not ready: store does not answer", "err", err)
			unavailable(w, "database does not answer")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if mqtt != nil {
		// The MQTT backend's check: a node cut off from the cluster's NATS
		// serves HTTPS but must not take MQTT connections.
		mux.HandleFunc("GET /readyz/mqtt", func(w http.ResponseWriter, r *http.Request) {
			if p.draining.Load() {
				unavailable(w, "draining")
				return
			}
			if err := mqtt.Ready(); err != nil {
				unavailable(w, "cut off from the cluster's NATS")
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		})
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err := openapi.Register(mux); err != nil {
		return nil, nil, err
	}

	u, err := p.mountComponents(mux, admins, tk, certs, hh, mqtt, reg, log)
	if err != nil {
		return nil, nil, err
	}
	if mqtt != nil {
		mqtt.RegisterAdmin(mux, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) })
	}
	return m.wrap(mux.ServeMux, log), u, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	writeJSONBody(w, v)
}

func writeJSONBody(w http.ResponseWriter, v any) { json.NewEncoder(w).Encode(v) }

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thingid_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// wrap logs one structured line per request and records the metrics, labelled by
// the mux pattern (never the raw path, which would make label cardinality unbounded).
func (m *httpMetrics) wrap(mux *http.ServeMux, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpstatus.Recorder{ResponseWriter: w}
		_, pattern := mux.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		mux.ServeHTTP(sw, r)
		status := sw.Status()
		d := time.Since(start)
		m.requests.WithLabelValues(pattern, methodLabel(r.Method), strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(pattern).Observe(d.Seconds())
		log.LogAttrs(r.Context(), slog.LevelInfo, "http",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", pattern),
			slog.Int("status", status), slog.Duration("duration", d), slog.String("remote", r.RemoteAddr))
	})
}

// methodLabel is the method as a metric label: the client chooses it, so
// anything but the methods of RFC 9110 and PATCH is "OTHER", and the
// series stay bounded.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// adminReader looks users up through the identity service, so that user names are
// normalized exactly as they were when stored, and tokens in the store.
type adminReader struct {
	*identity.Service
	tokens store.APITokens
}

func (r adminReader) GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	return r.tokens.GetAPITokenByHash(ctx, hash)
}
