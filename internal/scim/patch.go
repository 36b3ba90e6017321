package scim

import (
	"maps"
	"strings"
	"time"
)

// This file implements PATCH (RFC 7644 §3.5.2) on a resource's JSON representation.
// Resources run applyPatch inside the identity service's update function, so the
// whole request is applied atomically or not at all; value filters select elements
// of the one resource being changed and are evaluated here, in memory.

// patchOp is one validated PATCH operation.
type patchOp struct {
	Op    string // add, replace or remove
	Value any
	path  *patchPath // nil: no path
}

// decodePatch validates a PatchOp request body (RFC 7644 §3.5.2).
func decodePatch(body map[string]any) ([]patchOp, error) {
	var rawOps []any
	hasOps := false
	for k, v := range body {
		switch strings.ToLower(k) {
		case "schemas":
			list, _ := v.([]any)
			ok := false
			for _, s := range list {
				if u, _ := s.(string); strings.EqualFold(u, patchURN) {
					ok = true
				}
			}
			if !ok {
				return nil, badValue("schemas: a PATCH request must list %s", patchURN)
			}
		case "operations":
			hasOps = true
			var ok bool
			if rawOps, ok = v.([]any); !ok {
				return nil, badValue("Operations: must be an array")
			}
		default:
			return nil, badSyntax("unknown attribute %q in a PATCH request (want schemas and Operations)", k)
		}
	}
	if _, ok := body["schemas"]; !ok {
		return nil, badValue("schemas: a PATCH request must list %s", patchURN)
	}
	if !hasOps || len(rawOps) == 0 {
		return nil, badValue("Operations: at least one operation is required")
	}
	ops := make([]patchOp, len(rawOps))
	for i, raw := range rawOps {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, badValue("Operations[%d]: must be an object", i)
		}
		op := &ops[i]
		var pathStr *string
		hasValue := false
		for k, v := range m {
			switch strings.ToLower(k) {
			case "op":
				s, _ := v.(string)
				op.Op = strings.ToLower(s)
			case "path":
				s, ok := v.(string)
				if !ok {
					return nil, badPath("Operations[%d].path: must be a string", i)
				}
				pathStr = &s
			case "value":
				op.Value, hasValue = v, true
			default:
				return nil, badSyntax("Operations[%d]: unknown member %q (want op, path, value)", i, k)
			}
		}
		if op.Op != "add" && op.Op != "replace" && op.Op != "remove" {
			return nil, badValue("Operations[%d].op: %q is not add, replace or remove", i, m["op"])
		}
		if pathStr != nil {
			p, err := parsePath(*pathStr)
			if err != nil {
				return nil, err
			}
			op.path = &p
		}
		switch {
		case op.Op == "remove" && op.path == nil:
			// RFC 7644 §3.5.2.2: a remove without path fails with noTarget.
			return nil, noTarget("Operations[%d]: remove needs a path", i)
		case op.Op != "remove" && !hasValue:
			return nil, badValue("Operations[%d].value: %s needs a value", i, op.Op)
		}
	}
	return ops, nil
}

// applyPatch applies ops to the representation obj of a resource of type rt and
// checks the result still has its required attributes.
func applyPatch(rt *resourceType, obj map[string]any, ops []patchOp) error {
	for _, op := range ops {
		if err := applyOp(rt, obj, op); err != nil {
			return err
		}
	}
	return checkRequired(rt, obj)
}

func applyOp(rt *resourceType, obj map[string]any, op patchOp) error {
	if op.path != nil {
		return apply(rt, obj, op.Op, *op.path, op.Value)
	}
	// RFC 7644 §3.5.2.1 and §3.5.2.3: without a path the value is an object whose
	// attributes are each added or replaced.
	m, ok := op.Value.(map[string]any)
	if !ok {
		return badValue("value: %s without a path needs an object of attributes", op.Op)
	}
	for k, v := range m {
		if strings.EqualFold(k, "schemas") {
			continue
		}
		if s := rt.ext(k); s != nil {
			sub, ok := v.(map[string]any)
			if !ok {
				return badValue("%s: must be an object", k)
			}
			for sk, sv := range sub {
				if err := apply(rt, obj, op.Op, patchPath{Attr: attrPath{URI: s.ID, Name: sk}}, sv); err != nil {
					return err
				}
			}
			continue
		}
		// Keys may be paths themselves ("name.givenName", "urn:...:User:userName").
		p, err := parseAttrPath(k)
		if err != nil {
			return badSyntax("unknown attribute %q", k)
		}
		if err := apply(rt, obj, op.Op, patchPath{Attr: p}, v); err != nil {
			return err
		}
	}
	return nil
}

// apply performs one operation at path p.
func apply(rt *resourceType, obj map[string]any, op string, p patchPath, v any) error {
	urn, a := rt.lookup(p.Attr.URI, p.Attr.Name)
	if a == nil {
		return badPath("%s: no such attribute of %s resources", p, rt.Name)
	}
	if a.readOnly() {
		return immutable("%s: read-only attribute, it cannot be changed", a.Name)
	}
	container := obj
	if urn != "" {
		container = getObj(obj, urn)
		if container == nil {
			container = map[string]any{}
			obj[urn] = container
		}
	}
	switch {
	case p.Filter != nil:
		return applyFiltered(container, op, a, p, v)
	case p.Attr.Sub != "":
		return applySub(container, op, a, p, v)
	}
	return applyAttr(container, op, a, v)
}

// applyAttr changes a whole attribute.
func applyAttr(container map[string]any, op string, a *attr, v any) error {
	if op == "remove" {
		if list, ok := v.([]any); ok && a.Multi {
			// A remove with a value list drops those values (a common client form).
			kept := without(a, getList(container, a.Name), list)
			setOrDelete(container, a.Name, kept)
			return nil
		}
		delete(container, a.Name)
		return nil
	}
	if a.Multi {
		if _, ok := v.([]any); !ok && v != nil {
			v = []any{v}
		}
		cv, err := checkValue(a.Name, a, v)
		if err != nil {
			return err
		}
		list, _ := cv.([]any)
		if op == "add" {
			list = addValues(a, getList(container, a.Name), list)
		}
		setOrDelete(container, a.Name, list)
		return nil
	}
	cv, err := checkSingle(a.Name, a, v)
	if err != nil {
		return err
	}
	if old, ok := container[a.Name].(map[string]any); ok && cv != nil {
		// RFC 7644 §3.5.2.3: sub-attributes not given are left unchanged.
		merged := maps.Clone(old)
		maps.Copy(merged, cv.(map[string]any))
		cv = merged
	}
	setOrDelete(container, a.Name, cv)
	return nil
}

// applySub changes sub-attribute p.Attr.Sub of a (name.givenName, attributes.color,
// emails.type for every element).
func applySub(container map[string]any, op string, a *attr, p patchPath, v any) error {
	path := a.Name + "." + p.Attr.Sub
	if a.open {
		m := maps.Clone(getObj(container, a.Name))
		if m == nil {
			m = map[string]any{}
		}
		if op == "remove" || v == nil {
			delete(m, p.Attr.Sub)
		} else {
			m[p.Attr.Sub] = plainJSON(v)
		}
		setOrDelete(container, a.Name, m)
		return nil
	}
	s, err := subAttr(a, p.Attr.Sub)
	if err != nil {
		return err
	}
	var cv any
	if op != "remove" {
		if cv, err = checkSingle(path, s, v); err != nil {
			return err
		}
	}
	set := func(m map[string]any) map[string]any {
		m = maps.Clone(m)
		if m == nil {
			m = map[string]any{}
		}
		if cv == nil {
			delete(m, s.Name)
		} else {
			m[s.Name] = cv
		}
		return m
	}
	if !a.Multi {
		setOrDelete(container, a.Name, set(getObj(container, a.Name)))
		return nil
	}
	list := getList(container, a.Name)
	if len(list) == 0 {
		return noTarget("%s: %s has no values", path, a.Name)
	}
	out := make([]any, len(list))
	for i, e := range list {
		m, _ := e.(map[string]any)
		out[i] = set(m)
	}
	setOrDelete(container, a.Name, out)
	return nil
}

// applyFiltered changes the elements of multi-valued a selected by p's value
// filter (emails[type eq "work"], emails[type eq "work"].value).
func applyFiltered(container map[string]any, op string, a *attr, p patchPath, v any) error {
	if !a.Multi {
		return badPath("%s: %s is not multi-valued, a value filter cannot select from it", p, a.Name)
	}
	if err := checkElemFilter(a, p.Filter); err != nil {
		return err
	}
	var s *attr
	if p.ValueSub != "" {
		var err error
		if s, err = subAttr(a, p.ValueSub); err != nil {
			return err
		}
	}
	list := append([]any(nil), getList(container, a.Name)...)
	var hit []int
	for i, e := range list {
		ok, err := matches(a, e, p.Filter)
		if err != nil {
			return err
		}
		if ok {
			hit = append(hit, i)
		}
	}
	var cv any
	if op != "remove" {
		var err error
		if s != nil {
			cv, err = checkSingle(p.String(), s, v)
		} else {
			cv, err = checkSingle(p.String(), a, v)
		}
		if err != nil {
			return err
		}
	}
	if len(hit) == 0 {
		if seed, ok := eqSeed(a, p.Filter); ok && op == "add" && s != nil {
			// Adding a sub-attribute to an element that does not exist yet creates it
			// from the filter's equalities, as in emails[type eq "work"].value.
			seed[s.Name] = cv
			setOrDelete(container, a.Name, addValues(a, list, []any{seed}))
			return nil
		}
		return noTarget("%s: no value matches the filter", p)
	}
	touched := map[int]bool{}
	for j := len(hit) - 1; j >= 0; j-- {
		i := hit[j]
		m, isMap := list[i].(map[string]any)
		switch {
		case s == nil && (op == "remove" || cv == nil):
			list = append(list[:i], list[i+1:]...)
			continue
		case s != nil:
			m = maps.Clone(m)
			if cv == nil {
				delete(m, s.Name)
			} else {
				m[s.Name] = cv
			}
			list[i] = m
		case op == "add" && isMap && cv != nil:
			m = maps.Clone(m)
			maps.Copy(m, cv.(map[string]any))
			list[i] = m
		default:
			// RFC 7644 §3.5.2.3: matching values are replaced.
			list[i] = cv
		}
		touched[i] = true
	}
	setOrDelete(container, a.Name, exclusivePrimary(list, touched))
	return nil
}

func subAttr(a *attr, name string) (*attr, error) {
	if a.Type != tComplex {
		return nil, badPath("%s has no sub-attribute %q", a.Name, name)
	}
	s := a.sub(name)
	if s == nil {
		return nil, badPath("%s.%s: no such attribute", a.Name, name)
	}
	if s.readOnly() {
		return nil, immutable("%s.%s: read-only attribute, it cannot be changed", a.Name, s.Name)
	}
	return s, nil
}

// addValues appends values to list; a value equal to an element (by "value")
// replaces that element instead, so adding a present value changes nothing.
// A new primary value takes primary from the others (RFC 7643 §2.4).
func addValues(a *attr, list, values []any) []any {
	list = append([]any(nil), list...)
	touched := map[int]bool{}
	for _, v := range values {
		i := indexOf(a, list, v)
		if i < 0 {
			list = append(list, v)
			i = len(list) - 1
		} else if m, ok := list[i].(map[string]any); ok {
			m = maps.Clone(m)
			maps.Copy(m, v.(map[string]any))
			v = m
		}
		list[i] = v
		touched[i] = true
	}
	return exclusivePrimary(list, touched)
}

func without(a *attr, list, values []any) []any {
	var out []any
	for _, e := range list {
		if indexOf(a, values, e) < 0 {
			out = append(out, e)
		}
	}
	return out
}

// indexOf finds the element of list with the same value as v.
func indexOf(a *attr, list []any, v any) int {
	key := func(e any) (string, bool) {
		if m, ok := e.(map[string]any); ok {
			e = m["value"]
		}
		s, ok := e.(string)
		if ok && !a.CaseExact && (a.Type != tComplex || !a.sub("value").CaseExact) {
			s = strings.ToLower(s)
		}
		return s, ok
	}
	want, ok := key(v)
	if !ok {
		return -1
	}
	for i, e := range list {
		if k, ok := key(e); ok && k == want {
			return i
		}
	}
	return -1
}

// exclusivePrimary clears "primary" on untouched elements when a touched one is
// primary: RFC 7644 §3.5.2 has the service provider keep a single primary value.
func exclusivePrimary(list []any, touched map[int]bool) []any {
	primary := false
	for i := range touched {
		if m, ok := list[i].(map[string]any); ok && m["primary"] == true {
			primary = true
		}
	}
	if !primary {
		return list
	}
	for i, e := range list {
		if m, ok := e.(map[string]any); ok && !touched[i] && m["primary"] == true {
			m = maps.Clone(m)
			delete(m, "primary")
			list[i] = m
		}
	}
	return list
}

func setOrDelete(container map[string]any, name string, v any) {
	if empty(v) {
		delete(container, name)
		return
	}
	container[name] = v
}

// eqSeed returns the element a filter made only of eq comparisons joined by "and"
// describes, e.g. {"type": "work"} for type eq "work".
func eqSeed(a *attr, f filter) (map[string]any, bool) {
	switch f := f.(type) {
	case compareExpr:
		if f.Op != "eq" || a.Type != tComplex {
			return nil, false
		}
		s := a.sub(f.Path.Name)
		if s == nil || s.readOnly() || f.Value == nil {
			return nil, false
		}
		return map[string]any{s.Name: f.Value}, true
	case logicalExpr:
		if f.Op != "and" {
			return nil, false
		}
		l, ok := eqSeed(a, f.Left)
		if !ok {
			return nil, false
		}
		r, ok := eqSeed(a, f.Right)
		if !ok {
			return nil, false
		}
		maps.Copy(l, r)
		return l, true
	}
	return nil, false
}

// checkElemFilter rejects a value filter naming attributes the elements lack, even
// when there are no elements to test.
func checkElemFilter(a *attr, f filter) error {
	switch f := f.(type) {
	case logicalExpr:
		if err := checkElemFilter(a, f.Left); err != nil {
			return err
		}
		return checkElemFilter(a, f.Right)
	case notExpr:
		return checkElemFilter(a, f.X)
	case presentExpr:
		_, _, err := elemValue(a, nil, f.Path)
		return err
	case compareExpr:
		_, _, err := elemValue(a, nil, f.Path)
		return err
	}
	return badPath("%s: value filters cannot nest", a.Name)
}

// matches evaluates a value filter against one element of a.
func matches(a *attr, elem any, f filter) (bool, error) {
	switch f := f.(type) {
	case logicalExpr:
		l, err := matches(a, elem, f.Left)
		if err != nil {
			return false, err
		}
		if l == (f.Op == "or") {
			return l, nil
		}
		return matches(a, elem, f.Right)
	case notExpr:
		x, err := matches(a, elem, f.X)
		return !x, err
	case presentExpr:
		v, _, err := elemValue(a, elem, f.Path)
		return !empty(v), err
	case compareExpr:
		v, s, err := elemValue(a, elem, f.Path)
		if err != nil {
			return false, err
		}
		return compareElem(s, v, f)
	}
	return false, badPath("%s: value filters cannot nest", a.Name)
}

// elemValue reads the sub-attribute a filter names from an element; the element of
// a multi-valued simple attribute is its own "value".
func elemValue(a *attr, elem any, p attrPath) (any, *attr, error) {
	if p.URI != "" || p.Sub != "" {
		return nil, nil, badPath("%s[%s]: name a sub-attribute of %s", a.Name, p, a.Name)
	}
	if a.Type != tComplex {
		if !strings.EqualFold(p.Name, "value") {
			return nil, nil, badPath("%s[...]: the only sub-attribute is value, not %q", a.Name, p.Name)
		}
		return elem, a, nil
	}
	s := a.sub(p.Name)
	if s == nil {
		return nil, nil, badPath("%s.%s: no such attribute", a.Name, p.Name)
	}
	m, _ := elem.(map[string]any)
	return m[s.Name], s, nil
}

// compareElem applies a comparison of RFC 7644 §3.4.2.2 Table 3 to one value,
// honouring the attribute's caseExact.
func compareElem(s *attr, have any, c compareExpr) (bool, error) {
	switch want := c.Value.(type) {
	case nil:
		return (have == nil) == (c.Op == "eq"), nil
	case bool:
		hb, _ := have.(bool) // an absent boolean (primary) is false
		switch c.Op {
		case "eq":
			return hb == want, nil
		case "ne":
			return hb != want, nil
		}
		return false, badFilter("%s: %s is not defined on booleans", s.Name, c.Op)
	case string:
		hs, ok := have.(string)
		if !ok {
			return c.Op == "ne", nil
		}
		if s.Type == tDateTime {
			ht, err1 := time.Parse(time.RFC3339Nano, hs)
			wt, err2 := time.Parse(time.RFC3339Nano, want)
			if err1 == nil && err2 == nil {
				return order(ht.Compare(wt), c.Op), nil
			}
		}
		if !s.CaseExact {
			hs, want = strings.ToLower(hs), strings.ToLower(want)
		}
		switch c.Op {
		case "co":
			return strings.Contains(hs, want), nil
		case "sw":
			return strings.HasPrefix(hs, want), nil
		case "ew":
			return strings.HasSuffix(hs, want), nil
		}
		return order(strings.Compare(hs, want), c.Op), nil
	}
	return false, badFilter("%s: cannot compare with %s", s.Name, literal(c.Value))
}

func order(cmp int, op string) bool {
	switch op {
	case "eq":
		return cmp == 0
	case "ne":
		return cmp != 0
	case "gt":
		return cmp > 0
	case "ge":
		return cmp >= 0
	case "lt":
		return cmp < 0
	case "le":
		return cmp <= 0
	}
	return false
}
