package certauth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Events of thingid_certificates_total.
const (
	CertIssued  = "issued"
	CertRenewed = "renewed"
	CertRevoked = "revoked"
)

// CertificateEvents is thingid_certificates_total{event}: the certificates
// the server issued, renewed (internal/est counts both) and revoked (the
// Checker counts them). Every caller with the same reg gets the same
// counter; nil reg gives one that is not registered.
func CertificateEvents(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "thingid_certificates_total",
		Help: "Device certificates the server issued, renewed and revoked, by event.",
	}, []string{"event"})
	for _, ev := range []string{CertIssued, CertRenewed, CertRevoked} {
		c.WithLabelValues(ev) // from zero, so that rate() sees the first
	}
	if reg == nil {
		return c, nil
	}
	err := reg.Register(c)
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
