package scim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// Bulk (RFC 7644 §3.7) is the factory path: thousands of device creations in one
// request. Consecutive POSTs to /Devices are stored with one CreateThings call per
// batch; everything else runs one operation at a time, in request order, with
// operations that reference a later bulkId deferred until it is created.

// maxDeviceBatch caps the things stored in one transaction.
const maxDeviceBatch = 1000

type bulkRequest struct {
	Schemas      []string        `json:"schemas"`
	FailOnErrors *int            `json:"failOnErrors"`
	Operations   []bulkOperation `json:"Operations"`
}

type bulkOperation struct {
	Method  string          `json:"method"`
	BulkID  string          `json:"bulkId"`
	Version string          `json:"version"`
	Path    string          `json:"path"`
	Data    json.RawMessage `json:"data"`
}

type bulkResult struct {
	Method   string `json:"method"`
	BulkID   string `json:"bulkId,omitempty"`
	Version  string `json:"version,omitempty"`
	Location string `json:"location,omitempty"`
	Status   string `json:"status"`
	Response *Error `json:"response,omitempty"`
}

// bulkJob is one operation being processed.
type bulkJob struct {
	op       bulkOperation
	method   string
	endpoint string // "Users", "Groups", "Devices"
	id       string // the path's resource id, possibly "bulkId:..."
	data     map[string]any
	refs     []string // bulkIds the path and data reference
	err      error    // a problem found while decoding
}

const bulkRef = "bulkId:"

func (h *handler) bulk(w http.ResponseWriter, r *http.Request) {
	var req bulkRequest
	if err := readJSON(r, h.opts.MaxPayloadSize, &req, true); err != nil {
		h.fail(w, r, err)
		return
	}
	if !hasSchema(req.Schemas, bulkReqURN) {
		h.fail(w, r, badValue("schemas: a bulk request must list %s", bulkReqURN))
		return
	}
	if n := len(req.Operations); n > h.opts.MaxBulkOperations {
		// RFC 7644 §3.7.4: exceeding maxOperations is 413.
		h.fail(w, r, errorf(http.StatusRequestEntityTooLarge, typeTooLarge,
			"the request has %d operations, more than maxOperations (%d)", n, h.opts.MaxBulkOperations))
		return
	}
	failOn := 0
	if req.FailOnErrors != nil {
		if failOn = *req.FailOnErrors; failOn < 1 {
			h.fail(w, r, badValue("failOnErrors: must be at least 1"))
			return
		}
	}
	jobs := make([]*bulkJob, len(req.Operations))
	definedBy := map[string]int{}
	for i, op := range req.Operations {
		jobs[i] = newBulkJob(op)
		if op.BulkID != "" {
			if _, dup := definedBy[op.BulkID]; dup {
				h.fail(w, r, badValue("Operations[%d].bulkId: %q is used by another operation", i, op.BulkID))
				return
			}
			definedBy[op.BulkID] = i
		}
	}
	b := &bulkRun{h: h, r: r, c: h.call(r), jobs: jobs, results: make([]*bulkResult, len(jobs)),
		ids: map[string]string{}, definedBy: definedBy, failOn: failOn}
	b.run()
	out := make([]*bulkResult, 0, len(jobs))
	for _, res := range b.results {
		if res != nil {
			out = append(out, res)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"schemas": []string{bulkRespURN}, "Operations": out})
}

func newBulkJob(op bulkOperation) *bulkJob {
	j := &bulkJob{op: op, method: strings.ToUpper(op.Method)}
	path := strings.TrimPrefix(op.Path, prefix)
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	j.endpoint = parts[0]
	switch {
	case j.method != "POST" && j.method != "PUT" && j.method != "PATCH" && j.method != "DELETE":
		j.err = badValue("method: %q is not POST, PUT, PATCH or DELETE", op.Method)
	case !strings.HasPrefix(path, "/") || len(parts) > 2 || (len(parts) == 2) == (j.method == "POST") ||
		(len(parts) == 2 && parts[1] == ""):
		j.err = badValue("path: %q is not /{Users|Groups|Devices} for POST or /{type}/{id} otherwise", op.Path)
	case j.method == "POST" && op.BulkID == "":
		j.err = badValue("bulkId: required for POST (RFC 7644 §3.7)")
	}
	if len(parts) == 2 {
		j.id = parts[1]
		if strings.HasPrefix(j.id, bulkRef) {
			j.refs = append(j.refs, strings.TrimPrefix(j.id, bulkRef))
		}
	}
	if j.err == nil && j.method != "DELETE" {
		if len(op.Data) == 0 {
			j.err = badValue("data: required for %s", j.method)
		} else if err := decodeJSON(op.Data, &j.data, false); err != nil {
			j.err = err
		} else {
			j.refs = append(j.refs, findRefs(j.data, nil)...)
		}
	}
	return j
}

// findRefs collects the bulkIds that string values "bulkId:<id>" in v reference.
func findRefs(v any, refs []string) []string {
	switch v := v.(type) {
	case string:
		if strings.HasPrefix(v, bulkRef) {
			refs = append(refs, strings.TrimPrefix(v, bulkRef))
		}
	case map[string]any:
		for _, e := range v {
			refs = findRefs(e, refs)
		}
	case []any:
		for _, e := range v {
			refs = findRefs(e, refs)
		}
	}
	return refs
}

// resolveRefs replaces "bulkId:<id>" strings with the identifiers created.
func resolveRefs(v any, ids map[string]string) any {
	switch v := v.(type) {
	case string:
		if id, ok := ids[strings.TrimPrefix(v, bulkRef)]; ok && strings.HasPrefix(v, bulkRef) {
			return id
		}
	case map[string]any:
		for k, e := range v {
			v[k] = resolveRefs(e, ids)
		}
	case []any:
		for i, e := range v {
			v[i] = resolveRefs(e, ids)
		}
	}
	return v
}

// bulkRun is the state of one Bulk request.
type bulkRun struct {
	h         *handler
	r         *http.Request
	c         *call
	jobs      []*bulkJob
	results   []*bulkResult
	ids       map[string]string // bulkId → created resource id
	definedBy map[string]int    // bulkId → index of the operation defining it
	failOn    int
	errors    int
}

func (b *bulkRun) stopped() bool { return b.failOn > 0 && b.errors >= b.failOn }

func (b *bulkRun) run() {
	pending := make([]int, len(b.jobs))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 && !b.stopped() {
		var deferred []int
		for k := 0; k < len(pending) && !b.stopped(); k++ {
			i := pending[k]
			switch b.ready(i) {
			case refWait:
				deferred = append(deferred, i)
				continue
			case refFailed:
				continue
			}
			if !b.deviceCreate(i) {
				b.one(i)
				continue
			}
			// Gather the run of device creations that follows, for one CreateThings.
			batch := []int{i}
			limit := maxDeviceBatch
			if b.failOn > 0 {
				// Never store past the operation whose error reaches failOnErrors.
				limit = min(limit, b.failOn-b.errors)
			}
			for k+1 < len(pending) && len(batch) < limit && b.deviceCreate(pending[k+1]) && b.resolved(pending[k+1]) {
				k++
				batch = append(batch, pending[k])
			}
			b.createDevices(batch)
		}
		if len(deferred) == len(pending) {
			// No progress: the remaining operations reference each other in a cycle.
			for _, i := range deferred {
				b.fail(i, errorf(http.StatusConflict, typeInvalidValue, "circular bulkId references"))
			}
			return
		}
		pending = deferred
	}
}

type refState int

const (
	refReady refState = iota
	refWait
	refFailed
)

// ready says whether job i's bulkId references are all resolved; it records an
// error for references that never can be.
func (b *bulkRun) ready(i int) refState {
	for _, ref := range b.jobs[i].refs {
		if _, ok := b.ids[ref]; ok {
			continue
		}
		d, defined := b.definedBy[ref]
		switch {
		case !defined:
			b.fail(i, errorf(http.StatusConflict, typeInvalidValue, "bulkId %q is not defined by any operation", ref))
			return refFailed
		case b.results[d] != nil:
			b.fail(i, errorf(http.StatusConflict, typeInvalidValue, "bulkId %q could not be created", ref))
			return refFailed
		}
		return refWait
	}
	return refReady
}

// resolved reports whether every bulkId job i references has been created.
func (b *bulkRun) resolved(i int) bool {
	for _, ref := range b.jobs[i].refs {
		if _, ok := b.ids[ref]; !ok {
			return false
		}
	}
	return true
}

func (b *bulkRun) deviceCreate(i int) bool {
	j := b.jobs[i]
	return j.err == nil && j.method == "POST" && j.endpoint == "Devices"
}

func (b *bulkRun) fail(i int, err error) {
	j := b.jobs[i]
	e := toError(err, b.h.log, b.r)
	b.results[i] = &bulkResult{Method: j.method, BulkID: j.op.BulkID, Version: j.op.Version,
		Status: strconv.Itoa(e.Status), Response: e}
	b.errors++
}

func (b *bulkRun) succeed(i, status int, obj map[string]any) {
	j := b.jobs[i]
	res := &bulkResult{Method: j.method, BulkID: j.op.BulkID, Status: strconv.Itoa(status)}
	if obj != nil {
		res.Location, res.Version = location(obj), version(obj)
		if j.op.BulkID != "" {
			b.ids[j.op.BulkID], _ = obj["id"].(string)
		}
	}
	b.results[i] = res
}

// one runs a single operation.
func (b *bulkRun) one(i int) {
	j := b.jobs[i]
	if j.err != nil {
		b.fail(i, j.err)
		return
	}
	res, ok := b.h.resources[j.endpoint]
	if !ok {
		b.fail(i, errorf(http.StatusNotFound, "", "no resource type %q (want Users, Groups or Devices)", j.endpoint))
		return
	}
	data, _ := resolveRefs(j.data, b.ids).(map[string]any)
	id, _ := resolveRefs(j.id, b.ids).(string)
	rev, err := ifMatch(j.op.Version)
	if err != nil {
		b.fail(i, err)
		return
	}
	var obj map[string]any
	status := http.StatusOK
	switch j.method {
	case "POST":
		obj, err = res.create(b.c, data)
		status = http.StatusCreated
	case "PUT":
		obj, err = res.replace(b.c, id, rev, data)
	case "PATCH":
		var ops []patchOp
		if ops, err = decodePatch(data); err == nil {
			obj, err = res.patch(b.c, id, rev, ops)
		}
	case "DELETE":
		err = res.delete(b.c, id, rev)
		status = http.StatusNoContent
	}
	if err != nil {
		b.fail(i, err)
		return
	}
	b.succeed(i, status, obj)
}

// createDevices stores a batch of device creations with one CreateThings call.
func (b *bulkRun) createDevices(batch []int) {
	things := make([]*store.Thing, 0, len(batch))
	index := make([]int, 0, len(batch))
	for _, i := range batch {
		data, _ := resolveRefs(b.jobs[i].data, b.ids).(map[string]any)
		t, err := thingFromRequest(data)
		if err != nil {
			b.fail(i, err)
			continue
		}
		things = append(things, t)
		index = append(index, i)
	}
	if len(things) == 0 {
		return
	}
	errs, err := b.h.svc.CreateThings(b.c.ctx, b.c.actor, things)
	for k, i := range index {
		switch {
		case err != nil:
			b.fail(i, err)
		case errs[k] != nil:
			b.fail(i, errs[k])
		default:
			b.succeed(i, http.StatusCreated, thingToSCIM(b.c, things[k], nil, nil))
		}
	}
}
