package audit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
)

// Path is the audit API.
const Path = "/api/v1/admin/audit"

// ActionRead is the record of a support user's read of the log.
const ActionRead = "audit.read"

// Store is what the API reads, and where it records support staff's reads.
type Store interface {
	Reader
	AppendAudit(ctx context.Context, recs ...store.AuditRecord) error
}

// Options configure the API.
type Options struct {
	Store Store
	// Key keys the cursors (derived from the master key, so that every
	// node accepts every node's cursors).
	Key []byte
	// Require lets administrators and support staff through
	// (authn.Admins.RequireReader).
	Require func(http.Handler) http.Handler
	// Actor is who is calling, for the record of a read (authn.Actor).
	Actor func(*http.Request) string
	// ReadOnly tells that the caller is support staff, whose reads are
	// recorded (authn.ReadOnly).
	ReadOnly func(*http.Request) bool
	Logger   *slog.Logger     // nil: slog.Default()
	Now      func() time.Time // nil: time.Now
}

// API serves the audit log.
type API struct {
	opts Options
	log  *slog.Logger
}

// NewAPI returns the API; Store, Key, Require, Actor and ReadOnly are required.
func NewAPI(o Options) (*API, error) {
	if o.Store == nil || len(o.Key) < 16 || o.Require == nil || o.Actor == nil || o.ReadOnly == nil {
		return nil, errors.New("audit: NewAPI needs Store, Key (16 bytes or more), Require, Actor and ReadOnly")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &API{opts: o, log: log}, nil
}

// Register mounts GET Path on mux.
func (a *API) Register(mux routes.Mux) {
	mux.Handle("GET "+Path, a.opts.Require(http.HandlerFunc(a.serve)))
}

// list is the answer of GET Path.
type list struct {
	Records []Record `json:"records"`
	// Next continues the query: the page after this one. Oldest first it
	// is always given (poll with it for records appended later); newest
	// first only while older records may match.
	Next string `json:"next,omitempty"`
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	q, err := ParseQuery(r.URL.Query(), a.opts.Key)
	var fe *FieldError
	if errors.As(err, &fe) {
		problem.Write(w, http.StatusBadRequest, fe.Field, fe.Error())
		return
	}
	if err != nil {
		a.fail(w, "parsing an audit query", err)
		return
	}
	page, err := Read(r.Context(), a.opts.Store, q)
	if errors.Is(err, store.ErrInvalidQuery) {
		problem.Write(w, http.StatusBadRequest, "", err.Error())
		return
	}
	if err != nil {
		a.fail(w, "reading the audit log", err)
		return
	}
	if a.opts.ReadOnly(r) {
		// Fail closed: a support read that cannot be recorded is not served.
		if err := RecordRead(r.Context(), a.opts.Store, a.opts.Now().UTC(), a.opts.Actor(r), q, page); err != nil {
			a.fail(w, "recording a support read of the audit log", err)
			return
		}
	}
	out := list{Records: page.Records, Next: NextCursor(a.opts.Key, q, page)}
	if out.Records == nil {
		out.Records = []Record{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// NextCursor is the cursor of the page after p, the answer to q: oldest
// first always (a follower polls with it), newest first only while older
// records may match; "" otherwise.
func NextCursor(key []byte, q Query, p Page) string {
	if q.OldestFirst || p.More {
		return encodeCursor(key, q.Filter, q.OldestFirst, p.Next)
	}
	return ""
}

// RecordRead appends the audit.read record of a support user's read: the
// filters, the position and how many records it returned, about the subject
// the query named (so that a subject's own trail shows who looked at it). A
// read that returned nothing but the reader's own audit.read records learned
// nothing and is not recorded, so that a support user following the log does
// not feed it one record per poll.
func RecordRead(ctx context.Context, st Store, now time.Time, actor string, q Query, p Page) error {
	learned := false
	for _, r := range p.Records {
		if r.Action != ActionRead || r.Actor != actor {
			learned = true
			break
		}
	}
	if !learned {
		return nil
	}
	order := OrderNewest
	if q.OldestFirst {
		order = OrderOldest
	}
	detail, err := json.Marshal(map[string]any{
		"query": q.Filter.Values().Encode(), "order": order, "from": q.From, "records": len(p.Records),
	})
	if err != nil {
		return err
	}
	rec := store.AuditRecord{Time: now, Actor: actor, Action: ActionRead, Detail: detail}
	if q.Subject != "" {
		rec.Target = store.Ref{Kind: q.SubjectKind, ID: q.Subject}
	}
	return st.AppendAudit(ctx, rec)
}

func (a *API) fail(w http.ResponseWriter, what string, err error) {
	a.log.Error("audit: "+what, "err", err)
	problem.Write(w, http.StatusInternalServerError, "", "the audit log could not be read because of a problem on our side; try again later")
}
