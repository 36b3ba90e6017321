// Package scim serves SCIM 2.0 (RFC 7643, RFC 7644) at /scim/v2: Users, Groups and
// Devices (RFC 9944 plus a thingid extension), filters, PATCH, Bulk and discovery.
// It is a view of the identity service: every change goes through it, nothing is
// stored or filtered here, and authentication is left to the caller's middleware.
package scim

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// Service is what the handler needs of the identity service (*identity.Service).
// actor is recorded in the audit log; ifRevision 0 means "whatever is current".
type Service interface {
	CreateUser(ctx context.Context, actor string, u *store.User, password string) (*store.User, error)
	UpdateUser(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.User) error) (*store.User, error)
	HashPassword(pw string, u *store.User) (string, error)
	DeleteUser(ctx context.Context, actor, id string, ifRevision int64) error
	GetUser(ctx context.Context, id string) (*store.User, error)
	ListUsers(ctx context.Context, q store.Query) ([]*store.User, int, error)

	CreateThing(ctx context.Context, actor string, t *store.Thing) (*store.Thing, error)
	CreateThings(ctx context.Context, actor string, things []*store.Thing) (errs []error, err error)
	UpdateThing(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Thing) error) (*store.Thing, error)
	DeleteThing(ctx context.Context, actor, id string, ifRevision int64) error
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	ListThings(ctx context.Context, q store.Query) ([]*store.Thing, int, error)

	CreateGroup(ctx context.Context, actor string, g *store.Group) (*store.Group, error)
	UpdateGroup(ctx context.Context, actor, id string, ifRevision int64, fn func(*store.Group) error) (*store.Group, error)
	DeleteGroup(ctx context.Context, actor, id string, ifRevision int64) error
	GetGroup(ctx context.Context, id string) (*store.Group, error)
	ListGroups(ctx context.Context, q store.Query) ([]*store.Group, int, error)

	AddRelationship(ctx context.Context, actor string, r store.Relationship) error
	RemoveRelationship(ctx context.Context, actor string, r store.Relationship) error
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
}

// Options configure the handler. Zero values take the documented defaults.
type Options struct {
	// BaseURL is the external origin the service is reached at, e.g.
	// "https://id.example.com"; meta.location is BaseURL + "/scim/v2/...". Empty: the
	// scheme and Host of each request.
	BaseURL string
	// Actor names the authenticated caller for the audit log, e.g. "admin:<userID>".
	// Required: New panics without it.
	Actor func(*http.Request) string
	// FullAdmin tells whether the caller has full administrator power
	// (authn.FullAdmin); without it the caller cannot make or change
	// administrators (see guarded). Required: New panics without it.
	FullAdmin func(*http.Request) bool
	// MaxBulkOperations caps the operations of one Bulk request (default 10000).
	MaxBulkOperations int
	// MaxPayloadSize caps a Bulk request body in bytes (default 32 MiB).
	MaxPayloadSize int64
	// MaxResults caps the resources of one list page (default 1000).
	MaxResults int
	// Logger receives internal errors (default slog.Default()).
	Logger *slog.Logger
}

// maxResourceBody caps bodies other than Bulk: one resource or one PATCH.
const maxResourceBody = 1 << 20

// handler serves /scim/v2.
type handler struct {
	svc       Service
	opts      Options
	log       *slog.Logger
	resources map[string]resource // by endpoint: "Users", "Groups", "Devices"
}

// New returns the SCIM handler; mount it so that it sees paths starting with /scim/v2.
func New(svc Service, opts Options) http.Handler {
	if opts.Actor == nil {
		panic("scim: Options.Actor is required")
	}
	if opts.FullAdmin == nil {
		panic("scim: Options.FullAdmin is required")
	}
	// Every write, Bulk included, goes through the guarded Service.
	svc = guarded{svc}
	if opts.MaxBulkOperations <= 0 {
		opts.MaxBulkOperations = 10000
	}
	if opts.MaxPayloadSize <= 0 {
		opts.MaxPayloadSize = 32 << 20
	}
	if opts.MaxResults <= 0 {
		opts.MaxResults = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	h := &handler{svc: svc, opts: opts, log: opts.Logger}
	h.resources = map[string]resource{
		"Users":   users{svc},
		"Groups":  groups{svc},
		"Devices": devices{svc},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/ServiceProviderConfig", h.serviceProviderConfig)
	mux.HandleFunc("GET "+prefix+"/Schemas", h.listSchemas)
	mux.HandleFunc("GET "+prefix+"/Schemas/{id}", h.getSchema)
	mux.HandleFunc("GET "+prefix+"/ResourceTypes", h.listResourceTypes)
	mux.HandleFunc("GET "+prefix+"/ResourceTypes/{id}", h.getResourceType)
	mux.HandleFunc("POST "+prefix+"/Bulk", h.bulk)
	mux.HandleFunc("GET "+prefix+"/{type}", h.list)
	mux.HandleFunc("POST "+prefix+"/{type}/.search", h.search)
	mux.HandleFunc("POST "+prefix+"/{type}", h.create)
	mux.HandleFunc("GET "+prefix+"/{type}/{id}", h.get)
	mux.HandleFunc("PUT "+prefix+"/{type}/{id}", h.replace)
	mux.HandleFunc("PATCH "+prefix+"/{type}/{id}", h.patch)
	mux.HandleFunc("DELETE "+prefix+"/{type}/{id}", h.delete)
	mux.HandleFunc(prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, errorf(http.StatusNotFound, "", "no SCIM endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// call carries what every operation needs of its request.
type call struct {
	ctx   context.Context
	actor string
	base  string // URL of /scim/v2, for meta.location and $ref
}

func (h *handler) call(r *http.Request) *call {
	base := h.opts.BaseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	ctx := r.Context()
	if !h.opts.FullAdmin(r) {
		ctx = context.WithValue(ctx, limitedKey{}, true)
	}
	return &call{ctx: ctx, actor: h.opts.Actor(r), base: base + prefix}
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, r, h.log, err)
}
