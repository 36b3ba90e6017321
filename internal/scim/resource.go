package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// resource is one resource type's operations on JSON representations. Objects
// returned are full representations (meta included); the HTTP layer projects them.
// p tells which expensive read-only attributes (groups, owners, member names) are
// wanted; nil wants all.
type resource interface {
	typ() *resourceType
	get(c *call, id string, p *projection) (map[string]any, error)
	list(c *call, q store.Query, p *projection) ([]map[string]any, int, error)
	create(c *call, in map[string]any) (map[string]any, error)
	replace(c *call, id string, ifRevision int64, in map[string]any) (map[string]any, error)
	patch(c *call, id string, ifRevision int64, ops []patchOp) (map[string]any, error)
	delete(c *call, id string, ifRevision int64) error
}

func (h *handler) resource(w http.ResponseWriter, r *http.Request) (resource, bool) {
	res, ok := h.resources[r.PathValue("type")]
	if !ok {
		h.fail(w, r, errorf(http.StatusNotFound, "", "no resource type %q (want Users, Groups or Devices)", r.PathValue("type")))
	}
	return res, ok
}

// list serves GET /{type} (RFC 7644 §3.4.2).
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	qv, err := queryValues(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, err := paramsFromQuery(qv)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.query(w, r, res, p)
}

// search serves POST /{type}/.search (RFC 7644 §3.4.3).
func (h *handler) search(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	var body struct {
		Schemas            []string `json:"schemas"`
		Attributes         []string `json:"attributes"`
		ExcludedAttributes []string `json:"excludedAttributes"`
		Filter             string   `json:"filter"`
		SortBy             string   `json:"sortBy"`
		SortOrder          string   `json:"sortOrder"`
		StartIndex         int      `json:"startIndex"`
		Count              *int     `json:"count"`
	}
	if err := readJSON(r, maxResourceBody, &body, true); err != nil {
		h.fail(w, r, err)
		return
	}
	if !hasSchema(body.Schemas, searchURN) {
		h.fail(w, r, badValue("schemas: a search request must list %s", searchURN))
		return
	}
	h.query(w, r, res, listParams{Filter: body.Filter, SortBy: body.SortBy, SortOrder: body.SortOrder,
		StartIndex: body.StartIndex, Count: body.Count,
		Attributes: strings.Join(body.Attributes, ","), ExcludedAttributes: strings.Join(body.ExcludedAttributes, ",")})
}

func (h *handler) query(w http.ResponseWriter, r *http.Request, res resource, p listParams) {
	rt := res.typ()
	q, err := p.query(rt, h.opts.MaxResults)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	proj, err := parseProjection(rt, p.Attributes, p.ExcludedAttributes)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	c := h.call(r)
	objs, total, err := res.list(c, q, proj)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]map[string]any, len(objs))
	for i, o := range objs {
		out[i] = proj.apply(rt, o)
	}
	writeJSON(w, http.StatusOK, listResponse(out, total, q.Offset+1))
}

// listResponse is RFC 7644 §3.4.2's ListResponse.
func listResponse[T any](resources []T, total, startIndex int) map[string]any {
	return map[string]any{
		"schemas":      []string{listURN},
		"totalResults": total,
		"itemsPerPage": len(resources),
		"startIndex":   startIndex,
		"Resources":    resources,
	}
}

// get serves GET /{type}/{id} (RFC 7644 §3.4.1), honouring If-None-Match.
func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	proj, ok := h.projection(w, r, res.typ())
	if !ok {
		return
	}
	obj, err := res.get(h.call(r), r.PathValue("id"), proj)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	etag := version(obj)
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, etag) {
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.writeResource(w, http.StatusOK, res.typ(), obj, proj)
}

// create serves POST /{type} (RFC 7644 §3.3).
func (h *handler) create(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	proj, ok := h.projection(w, r, res.typ())
	if !ok {
		return
	}
	var body map[string]any
	if err := readJSON(r, maxResourceBody, &body, false); err != nil {
		h.fail(w, r, err)
		return
	}
	obj, err := res.create(h.call(r), body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", location(obj))
	h.writeResource(w, http.StatusCreated, res.typ(), obj, proj)
}

// replace serves PUT /{type}/{id} (RFC 7644 §3.5.1).
func (h *handler) replace(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	rev, err := ifMatch(r.Header.Get("If-Match"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	proj, ok := h.projection(w, r, res.typ())
	if !ok {
		return
	}
	var body map[string]any
	if err := readJSON(r, maxResourceBody, &body, false); err != nil {
		h.fail(w, r, err)
		return
	}
	obj, err := res.replace(h.call(r), r.PathValue("id"), rev, body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeResource(w, http.StatusOK, res.typ(), obj, proj)
}

// patch serves PATCH /{type}/{id} (RFC 7644 §3.5.2).
func (h *handler) patch(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	rev, err := ifMatch(r.Header.Get("If-Match"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	proj, ok := h.projection(w, r, res.typ())
	if !ok {
		return
	}
	var body map[string]any
	if err := readJSON(r, maxResourceBody, &body, false); err != nil {
		h.fail(w, r, err)
		return
	}
	ops, err := decodePatch(body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	obj, err := res.patch(h.call(r), r.PathValue("id"), rev, ops)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeResource(w, http.StatusOK, res.typ(), obj, proj)
}

// delete serves DELETE /{type}/{id} (RFC 7644 §3.6).
func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	res, ok := h.resource(w, r)
	if !ok {
		return
	}
	rev, err := ifMatch(r.Header.Get("If-Match"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := res.delete(h.call(r), r.PathValue("id"), rev); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// projection reads "attributes" and "excludedAttributes" from the query string;
// RFC 7644 §3.9 allows them on GET, POST, PUT and PATCH. It is parsed before any
// change so that a bad parameter changes nothing.
func (h *handler) projection(w http.ResponseWriter, r *http.Request, rt *resourceType) (*projection, bool) {
	q, err := queryValues(r)
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	p, err := parseProjection(rt, q.Get("attributes"), q.Get("excludedAttributes"))
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return p, true
}

// queryValues parses the query string strictly. r.URL.Query() skips what it
// cannot parse (a raw ";", a bad %-escape), which would turn a filter into no
// filter at all and answer every resource instead of the matching ones.
func queryValues(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badValue("query string: %v; escape \";\" as %%3B and \"%%\" as %%25", err)
	}
	return q, nil
}

func (h *handler) writeResource(w http.ResponseWriter, status int, rt *resourceType, obj map[string]any, p *projection) {
	w.Header().Set("ETag", version(obj))
	writeJSON(w, status, p.apply(rt, obj))
}

// meta builds the RFC 7643 §3.1 meta attribute; the version is the store revision
// as a weak entity tag (RFC 7644 §3.14).
func meta(c *call, rt *resourceType, m store.Meta) map[string]any {
	return map[string]any{
		"resourceType": rt.Name,
		"created":      m.Created.UTC().Format(time.RFC3339Nano),
		"lastModified": m.Modified.UTC().Format(time.RFC3339Nano),
		"location":     c.base + "/" + rt.Endpoint + "/" + m.ID,
		"version":      etag(m.Revision),
	}
}

func etag(rev int64) string { return `W/"` + strconv.FormatInt(rev, 10) + `"` }

func version(obj map[string]any) string {
	m, _ := obj["meta"].(map[string]any)
	v, _ := m["version"].(string)
	return v
}

func location(obj map[string]any) string {
	m, _ := obj["meta"].(map[string]any)
	v, _ := m["location"].(string)
	return v
}

// ifMatch turns an If-Match header (or a Bulk operation's version) into the
// revision the change is conditional on: 0 for none or "*". A tag that is not one
// of ours can never match, so it fails the precondition (RFC 7232 §3.1).
func ifMatch(h string) (int64, error) {
	h = strings.TrimSpace(h)
	if h == "" || h == "*" {
		return 0, nil
	}
	t := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	rev, err := strconv.ParseInt(t, 10, 64)
	if err != nil || rev <= 0 {
		return 0, errorf(http.StatusPreconditionFailed, "", "If-Match %s does not match the resource's version", h)
	}
	return rev, nil
}

// etagMatches is the weak comparison of If-None-Match (RFC 7232 §3.2).
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(tag, "W/") {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing left to do
}

// readJSON decodes a request body of at most limit bytes into v. Numbers decode as
// json.Number so that types can be checked exactly; strict rejects unknown fields
// of struct targets.
func readJSON(r *http.Request, limit int64, v any, strict bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// RFC 7644 §3.1: application/scim+json; plain JSON is accepted too.
		if err != nil || (mt != mediaType && mt != "application/json") {
			return errorf(http.StatusUnsupportedMediaType, "", "Content-Type %q is not %s", ct, mediaType)
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		return err
	}
	return decodeJSON(body, v, strict)
}

func decodeJSON(body []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field == "":
			return badSyntax("the request body must be a JSON object, not a JSON %s", te.Value)
		case errors.As(err, &te):
			return badSyntax("%s: must be %s, not a JSON %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		if errors.Is(err, io.EOF) {
			return badSyntax("the request body is empty")
		}
		return badSyntax("the request body is not valid JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return badSyntax("the request body holds data after the JSON value")
	}
	if m, ok := v.(*map[string]any); ok && *m == nil {
		return badSyntax("the request body must be a JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64":
		return "a number"
	}
	return fmt.Sprintf("a %s", goKind)
}

func hasSchema(list []string, urn string) bool {
	for _, s := range list {
		if strings.EqualFold(s, urn) {
			return true
		}
	}
	return false
}
