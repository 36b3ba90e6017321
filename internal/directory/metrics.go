package directory

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the directory's Prometheus series; every label has a
// bounded set of values (operations, result names).
type metrics struct {
	ops      *prometheus.CounterVec
	entries  prometheus.Counter
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "thingid_ldap_operations_total",
			Help: "LDAP operations by operation (bind, search, compare, extended, write) and result (success, invalidCredentials, ...).",
		}, []string{"op", "result"}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "thingid_ldap_entries_returned_total", Help: "Entries returned by LDAP searches.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "thingid_ldap_operation_duration_seconds", Help: "Time to answer an LDAP operation, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"op"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.ops, m.entries, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// resultNames label results; a code not listed is "other".
var resultNames = map[resultCode]string{
	resultSuccess: "success", resultOperationsError: "operationsError", resultProtocolError: "protocolError",
	resultTimeLimitExceeded: "timeLimitExceeded", resultSizeLimitExceeded: "sizeLimitExceeded",
	resultAuthMethodNotSupported: "authMethodNotSupported", resultUnavailableCriticalExtension: "unavailableCriticalExtension",
	resultConfidentialityRequired: "confidentialityRequired", resultNoSuchObject: "noSuchObject",
	resultInvalidDNSyntax: "invalidDNSyntax", resultInappropriateAuthentication: "inappropriateAuthentication",
	resultInvalidCredentials: "invalidCredentials", resultInsufficientAccessRights: "insufficientAccessRights",
	resultUnwillingToPerform: "unwillingToPerform", resultNoSuchAttribute: "noSuchAttribute",
	resultUndefinedAttributeType: "undefinedAttributeType", resultConstraintViolation: "constraintViolation",
	resultAttributeOrValueExists: "attributeOrValueExists", resultInvalidAttributeSyntax: "invalidAttributeSyntax",
	resultNamingViolation: "namingViolation", resultObjectClassViolation: "objectClassViolation",
	resultNotAllowedOnNonLeaf: "notAllowedOnNonLeaf", resultNotAllowedOnRDN: "notAllowedOnRDN",
	resultEntryAlreadyExists: "entryAlreadyExists", resultCompareTrue: "compareTrue", resultCompareFalse: "compareFalse",
}

func resultName(c resultCode) string {
	if n, ok := resultNames[c]; ok {
		return n
	}
	return "other"
}

// opName labels a request.
func opName(op any) string {
	switch op.(type) {
	case *bindRequest:
		return "bind"
	case *searchRequest:
		return "search"
	case *extendedRequest:
		return "extended"
	case *compareRequest:
		return "compare"
	}
	return "write"
}

// operation is what one operation did, for the access log and metrics.
type operation struct {
	result  resultCode
	entries int
}

// record counts one answered operation and writes its access log line.
func (ss *session) record(m *message, start time.Time) {
	d := time.Since(start)
	name, op := opName(m.op), ss.op
	ss.s.metrics.ops.WithLabelValues(name, resultName(op.result)).Inc()
	ss.s.metrics.entries.Add(float64(op.entries))
	ss.s.metrics.duration.WithLabelValues(name).Observe(d.Seconds())
	if !ss.log.Enabled(ss.s.ctx, slog.LevelInfo) {
		return // the access log is off: the line is not even built
	}
	attrs := []slog.Attr{slog.String("op", name), slog.Int64("msgid", m.id), slog.String("result", resultName(op.result)),
		slog.Duration("duration", d), slog.String("who", ss.who.authzID())}
	switch r := m.op.(type) {
	case *bindRequest:
		attrs = append(attrs, slog.String("name", r.name), slog.Bool("sasl", r.sasl))
	case *searchRequest:
		attrs = append(attrs, slog.String("base", r.base), slog.Int64("scope", r.scope), slog.String("filter", r.filter.String()), slog.Int("entries", op.entries))
	case *extendedRequest:
		attrs = append(attrs, slog.String("oid", r.oid))
	case *compareRequest:
		attrs = append(attrs, slog.String("dn", r.dn), slog.String("attr", r.attr))
	case interface{ target() string }: // a write
		attrs = append(attrs, slog.String("dn", r.target()))
	}
	ss.log.LogAttrs(ss.s.ctx, slog.LevelInfo, "ldap", attrs...)
}
