package console

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Factory batches and manufacturer CAs: what the production line made and
// which outside CAs the platform trusts, and the revocation of a whole
// batch's certificates (certauth, as a single revocation).

type batchRow struct {
	Link, Created, Model, Manufacturer, Actor, FirstSerial, LastSerial string
	Count, Issued                                                      int
}

func batchRowOf(b *store.FactoryBatch) batchRow {
	return batchRow{Link: pathOf("batches", b.ID), Created: formatTime(b.Created), Model: b.Model, Manufacturer: b.Manufacturer,
		Actor: b.Actor, FirstSerial: b.FirstSerial, LastSerial: b.LastSerial, Count: b.Count, Issued: b.Issued}
}

type batchesPage struct {
	base
	Rows                 []batchRow
	Total                int
	PrevLink, NextLink   string
	FirstShown, LastShow int
}

// showBatches is GET /admin/batches: the factory batches, newest first.
func (c *Console) showBatches(w http.ResponseWriter, r *http.Request, s staff) {
	page, ok := c.page(w, r)
	if !ok {
		return
	}
	list, total, err := c.opts.Store.ListFactoryBatches(r.Context(), (page-1)*pageSize, pageSize)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := batchesPage{base: c.base(w, r, s), Total: total}
	for _, b := range list {
		p.Rows = append(p.Rows, batchRowOf(b))
	}
	p.PrevLink, p.NextLink, p.FirstShown, p.LastShow = pager(Path+"/batches", url.Values{}, page, len(list), total)
	c.kit.Render(w, r, http.StatusOK, c.pages.batches, p)
}

// page reads the page parameter; a bad one is answered with a 400 naming it.
func (c *Console) page(w http.ResponseWriter, r *http.Request) (int, bool) {
	page, err := pageParam(r.URL.Query())
	if fe, ok := errors.AsType[*refusal.FieldError](err); ok {
		c.message(w, r, http.StatusBadRequest, "Not accepted", fe)
		return 0, false
	}
	return page, true
}

type batchThingRow struct {
	Link, DisplayName, SerialNumber, Status string
	// Certificates and Revoked count the thing's certificates.
	Certificates, Revoked int
}

type batchPage struct {
	base
	B                    *store.FactoryBatch
	Row                  batchRow
	Validity             string
	Things               []batchThingRow
	Total                int
	PrevLink, NextLink   string
	FirstShown, LastShow int
	Reasons              []string
	AuditLink            string
}

// revocationReasons are the reasons an administrator picks for a batch,
// the likeliest first (a batch's keys leaked).
var revocationReasons = []certauth.Reason{certauth.ReasonKeyCompromise, certauth.ReasonPrivilegeWithdrawn,
	certauth.ReasonCessationOfOperation, certauth.ReasonSuperseded, certauth.ReasonAffiliationChanged, certauth.ReasonUnspecified}

// showBatch is GET /admin/batches/{id}: the batch and a page of its things.
func (c *Console) showBatch(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	b, err := c.opts.Store.GetFactoryBatch(ctx, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		c.message(w, r, http.StatusNotFound, "No such batch", "There is no factory batch with this ID. Find it on the batches page.")
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	page, ok := c.page(w, r)
	if !ok {
		return
	}
	things, total, err := c.opts.Store.ListFactoryBatchThings(ctx, b.ID, (page-1)*pageSize, pageSize)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := batchPage{base: c.base(w, r, s), B: b, Row: batchRowOf(b), Validity: formatValidity(b.Validity), Total: total,
		AuditLink: Path + "/audit?" + url.Values{"subject": {b.ID}}.Encode()}
	for _, t := range things {
		row := batchThingRow{Link: pathOf("things", t.ID), DisplayName: t.DisplayName, SerialNumber: t.SerialNumber,
			Status: string(t.Status), Certificates: len(t.Certificates)}
		for _, cr := range t.Certificates {
			if c.certRevoked(cr.FingerprintSHA256) {
				row.Revoked++
			}
		}
		p.Things = append(p.Things, row)
	}
	for _, rs := range revocationReasons {
		p.Reasons = append(p.Reasons, rs.String())
	}
	p.PrevLink, p.NextLink, p.FirstShown, p.LastShow = pager(pathOf("batches", b.ID), url.Values{}, page, len(things), total)
	c.kit.Render(w, r, http.StatusOK, c.pages.batch, p)
}

// formatValidity writes a certificate lifetime in days (and hours when
// they do not add up to days).
func formatValidity(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	out := strconv.Itoa(days) + " d"
	if hours > 0 {
		out += " " + strconv.Itoa(hours) + " h"
	}
	return out
}

// revokePage is how many things' certificates one revocation (one
// transaction) takes.
const revokePage = 500

// submitRevokeBatch is POST /admin/batches/{id}/revoke with a reason:
// every certificate recorded on the batch's things, through certauth,
// revoked page by page; revoking a revoked certificate changes nothing,
// so an interrupted request is finished by sending it again. The batch's
// own audit record counts what was revoked.
func (c *Console) submitRevokeBatch(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	id := r.PathValue("id")
	reason, err := certauth.ParseReason(r.PostForm.Get("reason"))
	if err != nil || !slices.Contains(revocationReasons, reason) {
		c.message(w, r, http.StatusBadRequest, "Not accepted", "reason: choose one of the reasons offered.")
		return
	}
	b, err := c.opts.Store.GetFactoryBatch(ctx, id)
	if c.changeFailed(w, r, err) {
		return
	}
	var certs, things int
	for offset := 0; ; offset += revokePage {
		ts, _, err := c.opts.Store.ListFactoryBatchThings(ctx, b.ID, offset, revokePage)
		if c.changeFailed(w, r, err) {
			return
		}
		var rs []certauth.Revocation
		for _, t := range ts {
			if len(t.Certificates) > 0 {
				rs = append(rs, certauth.Revocation{ThingID: t.ID, Reason: reason})
			}
		}
		done, err := c.opts.Certificates.Revoke(ctx, s.actor(), rs...)
		if c.changeFailed(w, r, err) {
			return
		}
		certs, things = certs+len(done), things+len(rs)
		if len(ts) < revokePage {
			break
		}
	}
	detail, _ := json.Marshal(map[string]any{"reason": reason.String(), "things": things, "certificatesRevoked": certs})
	if err := c.opts.Store.AppendAudit(ctx, store.AuditRecord{Time: c.opts.Now().UTC(), Actor: s.actor(), Action: "factory.batch.revoke",
		Target: store.Ref{Kind: kindBatch, ID: b.ID}, Detail: detail}); err != nil {
		c.pageError(w, r, err)
		return
	}
	c.log.Info("console: revoked a factory batch's certificates", "batch", b.ID, "actor", s.actor(), "things", things, "certificates", certs)
	done(w, r, pathOf("batches", b.ID), "batchRevoked")
}

// kindBatch names factory batches in the audit log (identity.KindBatch).
const kindBatch store.Kind = "batch"

type caRow struct {
	Name, Subject, Fingerprint, NotBefore, NotAfter, Provisions string
	Things                                                      int
	Expired                                                     bool
}

type casPage struct {
	base
	Rows []caRow
}

// showCAs is GET /admin/cas: the manufacturer CAs, their validity and how
// many things hold a certificate they issued.
func (c *Console) showCAs(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	cas, err := c.opts.Authorities.ListCAs(ctx)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	counts, err := c.opts.Store.CountThingsOfCAs(ctx, cas)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p := casPage{base: c.base(w, r, s)}
	now := c.opts.Now()
	for _, ca := range cas {
		row := caRow{Name: ca.Name, Subject: ca.Subject, Fingerprint: ca.FingerprintSHA256, NotAfter: formatTime(ca.NotAfter),
			Things: counts[ca.ID], Expired: now.After(ca.NotAfter),
			Provisions: strings.TrimSpace(ca.Template.Manufacturer + " " + ca.Template.Model)}
		if cert, err := x509.ParseCertificate(ca.Certificate); err == nil {
			row.NotBefore = formatTime(cert.NotBefore)
		}
		p.Rows = append(p.Rows, row)
	}
	c.kit.Render(w, r, http.StatusOK, c.pages.cas, p)
}
