package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// headersFilter sets and removes request headers before the upstream, and
// response headers before the client.
type headersFilter struct {
	request, response headerOps
}

type headersConfig struct {
	Request  headerOpsSpec `json:"request"`
	Response headerOpsSpec `json:"response"`
}

type headerOpsSpec struct {
	Set    map[string]string `json:"set"`
	Remove []string          `json:"remove"`
}

type headerOps struct {
	set    map[string]string
	remove []string
}

func newHeadersFilter(_ *Gateway, _ *route, raw json.RawMessage, _ bool) (Filter, error) {
	var c headersConfig
	if err := decodeConfig(raw, &c); err != nil {
		return nil, err
	}
	f := &headersFilter{}
	var err error
	if f.request, err = c.Request.compile("request"); err != nil {
		return nil, err
	}
	if f.response, err = c.Response.compile("response"); err != nil {
		return nil, err
	}
	if len(f.request.set)+len(f.request.remove)+len(f.response.set)+len(f.response.remove) == 0 {
		return nil, errors.New("set or remove at least one request or response header")
	}
	return f, nil
}

func (s headerOpsSpec) compile(field string) (headerOps, error) {
	ops := headerOps{set: map[string]string{}}
	check := func(name string) (string, error) {
		if !httpguts.ValidHeaderFieldName(name) {
			return "", fmt.Errorf("%s: %q is not a header name", field, name)
		}
		if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(name, "_", "-")), "x-thingid-") {
			return "", fmt.Errorf("%s: %s: the X-Thingid- headers are the gateway's", field, name)
		}
		return http.CanonicalHeaderKey(name), nil
	}
	for name, v := range s.Set {
		k, err := check(name)
		if err != nil {
			return ops, err
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return ops, fmt.Errorf("%s.set.%s: not a valid header value", field, name)
		}
		ops.set[k] = v
	}
	for _, name := range s.Remove {
		k, err := check(name)
		if err != nil {
			return ops, err
		}
		ops.remove = append(ops.remove, k)
	}
	return ops, nil
}

func (o headerOps) apply(h http.Header) {
	for _, k := range o.remove {
		h.Del(k)
	}
	for k, v := range o.set {
		h.Set(k, v)
	}
}

func (f *headersFilter) Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error {
	f.request.apply(r.Header)
	if len(f.response.set)+len(f.response.remove) > 0 {
		w = &headerWriter{ResponseWriter: w, ops: f.response}
	}
	next.ServeHTTP(w, r)
	return nil
}

// headerWriter applies the response operations when the headers are written.
type headerWriter struct {
	http.ResponseWriter
	ops  headerOps
	done bool
}

func (h *headerWriter) WriteHeader(code int) {
	if !h.done && code >= 200 {
		h.done = true
		h.ops.apply(h.ResponseWriter.Header())
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerWriter) Write(b []byte) (int, error) {
	if !h.done {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

func (h *headerWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

var _ Filter = (*headersFilter)(nil)
