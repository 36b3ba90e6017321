package scim

import (
	"net/http"
	"strings"
)

// Discovery endpoints, RFC 7644 §4: what the service supports, which resource
// types it serves and their schemas (generated from the attribute table).

// noFilter enforces RFC 7644 §4: discovery endpoints do not filter, and a filter
// given to them SHOULD be answered 403.
func (h *handler) noFilter(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Has("filter") {
		h.fail(w, r, errorf(http.StatusForbidden, "", "discovery endpoints do not support filter"))
		return false
	}
	return true
}

func (h *handler) serviceProviderConfig(w http.ResponseWriter, r *http.Request) {
	if !h.noFilter(w, r) {
		return
	}
	c := h.call(r)
	supported := func(ok bool) map[string]any { return map[string]any{"supported": ok} }
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{spConfigURN},
		"documentationUri": "https://www.rfc-editor.org/rfc/rfc7644",
		"patch":            supported(true),
		"bulk": map[string]any{"supported": true, "maxOperations": h.opts.MaxBulkOperations,
			"maxPayloadSize": h.opts.MaxPayloadSize},
		"filter":         map[string]any{"supported": true, "maxResults": h.opts.MaxResults},
		"changePassword": supported(true),
		"sort":           supported(true),
		"etag":           supported(true),
		"authenticationSchemes": []map[string]any{{
			"type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
			"description": "Authentication with an OAuth 2.0 bearer token or an admin API token (RFC 6750).",
			"specUri":     "https://www.rfc-editor.org/rfc/rfc6750",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": c.base + "/ServiceProviderConfig"},
	})
}

func schemaJSON(c *call, s *schema) map[string]any {
	return map[string]any{
		"schemas":     []string{schemaURN},
		"id":          s.ID,
		"name":        s.Name,
		"description": s.Desc,
		"attributes":  s.Attrs,
		"meta":        map[string]any{"resourceType": "Schema", "location": c.base + "/Schemas/" + s.ID},
	}
}

func allSchemas() []*schema {
	var out []*schema
	for _, rt := range resourceTypes {
		out = append(out, rt.schemas()...)
	}
	return out
}

func (h *handler) listSchemas(w http.ResponseWriter, r *http.Request) {
	if !h.noFilter(w, r) {
		return
	}
	c := h.call(r)
	var out []map[string]any
	for _, s := range allSchemas() {
		out = append(out, schemaJSON(c, s))
	}
	writeJSON(w, http.StatusOK, listResponse(out, len(out), 1))
}

func (h *handler) getSchema(w http.ResponseWriter, r *http.Request) {
	for _, s := range allSchemas() {
		if strings.EqualFold(s.ID, r.PathValue("id")) {
			writeJSON(w, http.StatusOK, schemaJSON(h.call(r), s))
			return
		}
	}
	h.fail(w, r, errorf(http.StatusNotFound, "", "no schema %q", r.PathValue("id")))
}

func resourceTypeJSON(c *call, rt *resourceType) map[string]any {
	ext := make([]map[string]any, len(rt.Ext))
	for i, s := range rt.Ext {
		ext[i] = map[string]any{"schema": s.ID, "required": false}
	}
	return map[string]any{
		"schemas":          []string{resTypeURN},
		"id":               rt.Name,
		"name":             rt.Name,
		"endpoint":         "/" + rt.Endpoint,
		"description":      rt.Desc,
		"schema":           rt.Core.ID,
		"schemaExtensions": ext,
		"meta":             map[string]any{"resourceType": "ResourceType", "location": c.base + "/ResourceTypes/" + rt.Name},
	}
}

func (h *handler) listResourceTypes(w http.ResponseWriter, r *http.Request) {
	if !h.noFilter(w, r) {
		return
	}
	c := h.call(r)
	var out []map[string]any
	for _, rt := range resourceTypes {
		out = append(out, resourceTypeJSON(c, rt))
	}
	writeJSON(w, http.StatusOK, listResponse(out, len(out), 1))
}

func (h *handler) getResourceType(w http.ResponseWriter, r *http.Request) {
	for _, rt := range resourceTypes {
		if strings.EqualFold(rt.Name, r.PathValue("id")) {
			writeJSON(w, http.StatusOK, resourceTypeJSON(h.call(r), rt))
			return
		}
	}
	h.fail(w, r, errorf(http.StatusNotFound, "", "no resource type %q", r.PathValue("id")))
}
