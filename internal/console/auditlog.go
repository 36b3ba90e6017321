package console

import (
	"encoding/csv"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/store"
)

// readAudit reads one page of the audit log for s; a read by support staff
// that learned something is recorded first (audit.read), as the audit API
// records it, and not served when it cannot be.
func (c *Console) readAudit(r *http.Request, s staff, q audit.Query) (audit.Page, error) {
	page, err := audit.Read(r.Context(), c.opts.Store, q)
	if err != nil || s.admin {
		return page, err
	}
	return page, audit.RecordRead(r.Context(), c.opts.Store, c.opts.Now().UTC(), s.actor(), q, page)
}

type auditPage struct {
	base
	Actor, Action, Subject, SubjectKind, Since, Until string
	ErrorField                                        string
	Error                                             error
	Rows                                              []auditRow
	NextLink, CSVLink                                 string
}

// auditQuery reads the audit page's query: the audit API's parameters, so
// that its cursors and filters are the API's.
func (c *Console) auditQuery(v url.Values) (audit.Query, error) {
	if v.Get(audit.ParamLimit) == "" {
		v.Set(audit.ParamLimit, strconv.Itoa(pageSize))
	}
	return audit.ParseQuery(v, c.opts.CursorKey)
}

// showAudit is GET /admin/audit: filters, one page newest first, the link
// to the next page (by the audit log's cursor) and to the CSV export.
func (c *Console) showAudit(w http.ResponseWriter, r *http.Request, s staff) {
	v := r.URL.Query()
	p := auditPage{base: c.base(w, r, s), Actor: v.Get(audit.ParamActor), Action: v.Get(audit.ParamAction),
		Subject: v.Get(audit.ParamSubject), SubjectKind: v.Get(audit.ParamSubjectKind), Since: v.Get(audit.ParamSince), Until: v.Get(audit.ParamUntil)}
	q, err := c.auditQuery(v)
	var fe *audit.FieldError
	if errors.As(err, &fe) {
		p.ErrorField, p.Error = fe.Field, fe
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.audit, p)
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	page, err := c.readAudit(r, s, q)
	if errors.Is(err, store.ErrInvalidQuery) {
		p.Error = err
		c.kit.Render(w, r, http.StatusBadRequest, c.pages.audit, p)
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p.Rows = auditRows(page.Records)
	filter := q.Filter.Values()
	if next := audit.NextCursor(c.opts.CursorKey, q, page); next != "" && !q.OldestFirst {
		nv := q.Filter.Values()
		nv.Set(audit.ParamCursor, next)
		p.NextLink = Path + "/audit?" + nv.Encode()
	}
	p.CSVLink = Path + "/audit.csv?" + filter.Encode()
	c.kit.Render(w, r, http.StatusOK, c.pages.audit, p)
}

// exportAudit is GET /admin/audit.csv: every record the filters select,
// newest first, streamed page by page (never the whole log in memory).
func (c *Console) exportAudit(w http.ResponseWriter, r *http.Request, s staff) {
	v := r.URL.Query()
	v.Del(audit.ParamCursor)
	v.Del(audit.ParamOrder)
	v.Set(audit.ParamLimit, strconv.Itoa(audit.MaxLimit))
	q, err := audit.ParseQuery(v, c.opts.CursorKey)
	var fe *audit.FieldError
	if errors.As(err, &fe) {
		c.message(w, r, http.StatusBadRequest, "Export not possible", fe)
		return
	}
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	page, err := c.readAudit(r, s, q)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="thingid-audit.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"id", "time", "actor", "action", "subjectKind", "subject", "detail"})
	for {
		for _, rec := range page.Records {
			var kind, id string
			if rec.Subject != nil {
				kind, id = string(rec.Subject.Kind), rec.Subject.ID
			}
			_ = cw.Write(csvCells(strconv.FormatInt(rec.ID, 10), rec.Time.Format("2006-01-02T15:04:05.000Z07:00"),
				rec.Actor, rec.Action, kind, id, string(rec.Detail)))
		}
		cw.Flush()
		if cw.Error() != nil || !page.More {
			return
		}
		q.From = page.Next
		if page, err = c.readAudit(r, s, q); err != nil {
			// The status is sent; the file ends short and the log says why.
			c.log.Error("console: exporting the audit log", "err", err)
			return
		}
	}
}

// csvCells makes cells safe to open in a spreadsheet: a cell starting with
// = + - @ (or a tab or carriage return) is a formula there (OWASP CSV
// Injection), so it is prefixed with a quote, which shows the text as
// written. encoding/csv does the quoting of commas, quotes and newlines.
func csvCells(cells ...string) []string {
	for i, s := range cells {
		if s != "" {
			switch s[0] {
			case '=', '+', '-', '@', '\t', '\r':
				cells[i] = "'" + s
			}
		}
	}
	return cells
}
