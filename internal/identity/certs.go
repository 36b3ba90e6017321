package identity

import (
	"context"
	"slices"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// AddCertificate records a certificate issued to a thing (an EST enrollment,
// for example), audited and published as a thing.update whose detail names
// the certificate. Certificates of the thing that have expired are dropped
// from the record at the same time, so that a thing renewing for years keeps a
// short list; the audit log keeps their history.
func (s *Service) AddCertificate(ctx context.Context, actor, thingID string, ref store.CertRef) (*store.Thing, error) {
	var out *store.Thing
	err := s.WithTx(ctx, actor, func(tx *Tx) error {
		var err error
		out, err = tx.AddCertificate(ctx, thingID, ref)
		return err
	})
	return out, err
}

// AddCertificate is Service.AddCertificate inside the caller's transaction,
// so that the certificate is recorded together with the caller's own records
// (the use of a one-time enrollment token).
func (t *Tx) AddCertificate(ctx context.Context, thingID string, ref store.CertRef) (*store.Thing, error) {
	now := time.Now()
	th, err := t.Store.UpdateThing(ctx, thingID, 0, func(th *store.Thing) error {
		th.Certificates = slices.DeleteFunc(th.Certificates, func(c store.CertRef) bool {
			return c.FingerprintSHA256 == ref.FingerprintSHA256 || (!c.NotAfter.IsZero() && c.NotAfter.Before(now))
		})
		th.Certificates = append(th.Certificates, ref)
		return normalizeThing(th)
	})
	if err != nil {
		return nil, err
	}
	t.changes = append(t.changes, change{action: "thing.update", target: store.Ref{Kind: store.KindThing, ID: thingID},
		detail: map[string]string{"certificateAdded": ref.FingerprintSHA256}})
	return th, nil
}
