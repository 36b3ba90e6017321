package scim

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// This file turns the query parameters of RFC 7644 §3.4.2 (filter, sortBy,
// sortOrder, startIndex, count) into a store.Query. Filters are compiled to
// store.Expr and evaluated by the SQL backend; nothing is filtered in memory.

// translateFilter compiles a parsed filter for resource type rt.
func translateFilter(rt *resourceType, f filter) (store.Expr, error) {
	return translator{rt: rt}.expr(f)
}

// translator compiles filters; inside a value path elem is the multi-valued
// attribute whose elements the filter's attribute names refer to.
type translator struct {
	rt   *resourceType
	elem *attr
}

// target is what a filter attribute path denotes in the store.
type target struct {
	field string // store field, relative to the element inside a value path
	sub   string // non-empty: a sub-field of the multi-valued field (wrap in store.Any)
	multi bool   // the field is multi-valued
	a     *attr  // the attribute whose type governs comparisons
	conv  func(any) (any, error)
}

func (t translator) expr(f filter) (store.Expr, error) {
	switch f := f.(type) {
	case logicalExpr:
		l, err := t.expr(f.Left)
		if err != nil {
			return nil, err
		}
		r, err := t.expr(f.Right)
		if err != nil {
			return nil, err
		}
		if f.Op == "and" {
			return store.And{Left: l, Right: r}, nil
		}
		return store.Or{Left: l, Right: r}, nil
	case notExpr:
		x, err := t.expr(f.X)
		if err != nil {
			return nil, err
		}
		return store.Not{X: x}, nil
	case presentExpr:
		tg, err := t.resolve(f.Path)
		if err != nil {
			return nil, err
		}
		return tg.wrap(store.Present{Field: tg.leaf()}), nil
	case compareExpr:
		tg, err := t.resolve(f.Path)
		if err != nil {
			return nil, err
		}
		v, err := compareValue(f, tg)
		if err != nil {
			return nil, err
		}
		return tg.wrap(store.Compare{Field: tg.leaf(), Op: store.Op(f.Op), Value: v}), nil
	case valuePathExpr:
		if t.elem != nil {
			return nil, badFilter("value paths cannot nest: %s", f)
		}
		_, a := t.rt.lookup(f.Path.URI, f.Path.Name)
		if a == nil {
			return nil, badFilter("unknown attribute %q", f.Path)
		}
		if !a.Multi || a.field == "" {
			return nil, badFilter("%s: a value filter needs a filterable multi-valued attribute", a.Name)
		}
		where, err := translator{rt: t.rt, elem: a}.expr(f.Filter)
		if err != nil {
			return nil, err
		}
		return store.Any{Field: a.field, Where: where}, nil
	}
	return nil, badFilter("unsupported filter %s", f)
}

func (tg target) leaf() string {
	if tg.sub != "" {
		return tg.sub
	}
	return tg.field
}

func (tg target) wrap(e store.Expr) store.Expr {
	if tg.sub != "" {
		return store.Any{Field: tg.field, Where: e}
	}
	return e
}

// resolve maps an attribute path onto the store, case-insensitively (RFC 7643 §2.1).
func (t translator) resolve(p attrPath) (target, error) {
	if t.elem != nil {
		// Inside emails[...]: names are sub-attributes of the element.
		if p.URI != "" || p.Sub != "" {
			return target{}, badFilter("%s: inside %s[...] name a sub-attribute of %s", p, t.elem.Name, t.elem.Name)
		}
		if t.elem.Type != tComplex {
			if !strings.EqualFold(p.Name, "value") {
				return target{}, badFilter("%s[...]: the only sub-attribute is value, not %q", t.elem.Name, p.Name)
			}
			return target{field: "value", a: t.elem, conv: t.elem.filterValue}, nil
		}
		s := t.elem.sub(p.Name)
		if s == nil || s.field == "" {
			return target{}, badFilter("%s.%s is not a filterable attribute", t.elem.Name, p.Name)
		}
		return target{field: s.field, a: s, conv: s.filterValue}, nil
	}
	_, a := t.rt.lookup(p.URI, p.Name)
	if a == nil {
		return target{}, badFilter("unknown attribute %q", p)
	}
	if p.Sub == "" {
		switch {
		case a.open:
			return target{}, badFilter("%s: name one of them, as %s.<name>", a.Name, a.Name)
		case a.Type == tComplex && !a.Multi:
			return target{}, badFilter("%s is complex: name a sub-attribute such as %s.%s", a.Name, a.Name, a.Sub[0].Name)
		case a.field == "":
			return target{}, badFilter("attribute %q cannot be filtered", a.Name)
		case a.Type == tComplex:
			// RFC 7644 §3.4.2.2: a multi-valued complex attribute compares by its value.
			return target{field: a.field, a: a.sub("value"), multi: true}, nil
		}
		return target{field: a.field, a: a, conv: a.filterValue, multi: a.Multi}, nil
	}
	if a.open {
		return target{field: store.AttributePrefix + p.Sub, a: a}, nil
	}
	if a.Type != tComplex {
		if a.Multi && strings.EqualFold(p.Sub, "value") && a.field != "" {
			return target{field: a.field, a: a, conv: a.filterValue, multi: true}, nil
		}
		return target{}, badFilter("%s has no sub-attribute %q", a.Name, p.Sub)
	}
	s := a.sub(p.Sub)
	if s == nil {
		return target{}, badFilter("unknown attribute %q", p)
	}
	if s.field == "" || (a.Multi && a.field == "") {
		return target{}, badFilter("attribute %q cannot be filtered", a.Name+"."+s.Name)
	}
	if a.Multi {
		return target{field: a.field, sub: s.field, a: s, conv: s.filterValue, multi: true}, nil
	}
	return target{field: s.field, a: s, conv: s.filterValue}, nil
}

// compareValue checks the literal against the attribute's type (RFC 7644 §3.4.2.2:
// co, sw and ew need strings; gt, ge, lt and le are not defined on booleans) and
// converts it to the store's representation.
func compareValue(c compareExpr, tg target) (any, error) {
	name := c.Path.String()
	ordering := c.Op == "gt" || c.Op == "ge" || c.Op == "lt" || c.Op == "le"
	substring := c.Op == "co" || c.Op == "sw" || c.Op == "ew"
	v := c.Value
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return nil, badFilter("%s: number %s is out of range", name, n)
		}
		v = f
	}
	if v == nil && (ordering || substring) {
		return nil, badFilter("%s: %s cannot compare with null", name, c.Op)
	}
	if tg.a.open {
		return v, nil
	}
	switch tg.a.Type {
	case tBool:
		if ordering || substring {
			return nil, badFilter("%s is a boolean: use eq or ne, not %s", name, c.Op)
		}
		if _, ok := v.(bool); v != nil && !ok {
			return nil, badFilter("%s is a boolean: compare with true or false", name)
		}
	case tDateTime:
		s, ok := v.(string)
		if substring || (v != nil && !ok) {
			return nil, badFilter("%s is a date-time: compare with eq, ne, gt, ge, lt or le and an RFC 3339 string", name)
		}
		if ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, badFilter("%s: %q is not an RFC 3339 date-time", name, s)
			}
			v = t
		}
	default:
		if _, ok := v.(string); v != nil && !ok {
			return nil, badFilter("%s is a string: compare with a quoted string", name)
		}
	}
	if tg.conv != nil && v != nil {
		return tg.conv(v)
	}
	return v, nil
}

// normalizeMACFilter brings a MAC address in a filter to the stored form so that
// macAddresses eq "AA-BB-CC-DD-EE-FF" matches; partial addresses are lower-cased.
func normalizeMACFilter(v any) (any, error) {
	s, _ := v.(string)
	if n, err := identity.NormalizeMAC(s); err == nil {
		return n, nil
	}
	return strings.ToLower(s), nil
}

// memberTypeFilter maps a SCIM member type to the store's kind.
func memberTypeFilter(v any) (any, error) {
	s, _ := v.(string)
	k, ok := kindOfType(s)
	if !ok {
		return nil, badFilter("members.type: %q is not one of User, Group, Device", s)
	}
	return string(k), nil
}

// listParams are the query parameters of a list or search request.
type listParams struct {
	Filter             string
	SortBy             string
	SortOrder          string
	StartIndex         int
	Count              *int
	Attributes         string
	ExcludedAttributes string
}

// paramsFromQuery reads the RFC 7644 §3.4.2 parameters of a GET.
func paramsFromQuery(q map[string][]string) (listParams, error) {
	get := func(k string) string {
		for key, v := range q {
			if strings.EqualFold(key, k) && len(v) > 0 {
				return v[0]
			}
		}
		return ""
	}
	p := listParams{Filter: get("filter"), SortBy: get("sortBy"), SortOrder: get("sortOrder"),
		Attributes: get("attributes"), ExcludedAttributes: get("excludedAttributes")}
	if s := get("startIndex"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, badValue("startIndex: %q is not an integer", s)
		}
		p.StartIndex = n
	}
	if s := get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, badValue("count: %q is not an integer", s)
		}
		p.Count = &n
	}
	return p, nil
}

// query builds the store query of p; maxResults caps count.
func (p listParams) query(rt *resourceType, maxResults int) (store.Query, error) {
	var q store.Query
	if strings.TrimSpace(p.Filter) != "" {
		f, err := parseFilter(p.Filter)
		if err != nil {
			return q, err
		}
		if q.Filter, err = translateFilter(rt, f); err != nil {
			return q, err
		}
	}
	if p.SortBy != "" {
		field, err := sortField(rt, p.SortBy)
		if err != nil {
			return q, err
		}
		q.SortBy = field
	}
	// RFC 7644 §3.4.2.3: sortOrder is "ascending" (the default) or "descending".
	switch strings.ToLower(p.SortOrder) {
	case "", "ascending":
	case "descending":
		q.Descending = true
	default:
		return q, badValue("sortOrder: %q is neither ascending nor descending", p.SortOrder)
	}
	// RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0, and the
	// service provider may return fewer results than asked for.
	q.Offset = max(p.StartIndex, 1) - 1
	q.Limit = maxResults
	if p.Count != nil {
		q.Limit = min(max(*p.Count, 0), maxResults)
	}
	return q, nil
}

func sortField(rt *resourceType, s string) (string, error) {
	p, err := parseAttrPath(s)
	if err != nil {
		return "", badValue("sortBy: %v", err)
	}
	tg, err := translator{rt: rt}.resolve(p)
	if err != nil {
		return "", badValue("sortBy: %s", detail(err))
	}
	if tg.multi {
		return "", badValue("sortBy: %s is multi-valued; sort by a single-valued attribute", s)
	}
	return tg.field, nil
}
