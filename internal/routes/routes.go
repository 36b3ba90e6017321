// Package routes is the route table of a listener: every pattern mounted on
// its mux, and which of them accept OAuth access tokens, so that the server
// can list them and its tests can walk them all. It must not know what any
// route does.
package routes

import (
	"net/http"
	"slices"
	"sync"
)

// Mux is what components mount their routes on: a *http.ServeMux, or a
// Table that records them.
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request))
}

// Route is one mounted pattern.
type Route struct {
	// Pattern as given to http.ServeMux: "[METHOD ][HOST]/PATH".
	Pattern string
	// AccessTokens: the route accepts OAuth access tokens as credentials,
	// verified with their sender binding (tokens.Presentation). Declared by
	// mounting a handler made by AccessTokens.
	AccessTokens bool
}

// Table is a mux that remembers what was mounted on it.
type Table struct {
	*http.ServeMux
	mu     sync.Mutex
	routes []Route
}

// New returns an empty table.
func New() *Table { return &Table{ServeMux: http.NewServeMux()} }

// Handle mounts h at pattern and records it.
func (t *Table) Handle(pattern string, h http.Handler) {
	t.ServeMux.Handle(pattern, h)
	_, tok := h.(tokenHandler)
	t.mu.Lock()
	t.routes = append(t.routes, Route{Pattern: pattern, AccessTokens: tok})
	t.mu.Unlock()
}

// HandleFunc mounts f at pattern and records it.
func (t *Table) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	t.Handle(pattern, http.HandlerFunc(f))
}

// Routes lists the mounted routes in the order they were mounted.
func (t *Table) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.routes)
}

// AccessTokens marks h as a handler that accepts OAuth access tokens, for
// the route table. Mount the marked handler itself (wrapping it hides the mark).
func AccessTokens(h http.Handler) http.Handler { return tokenHandler{h} }

type tokenHandler struct{ http.Handler }

var _ Mux = (*Table)(nil)
var _ Mux = (*http.ServeMux)(nil)
