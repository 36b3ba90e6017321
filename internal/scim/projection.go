package scim

import (
	"strings"
)

// projection applies the "attributes" and "excludedAttributes" parameters of
// RFC 7644 §3.4.2.5 together with the "returned" characteristic of RFC 7643 §7:
// "always" attributes (id) are returned whatever is asked, "never" ones (password)
// never are. A nil projection returns every attribute not marked "never".
type projection struct {
	include map[string]bool // attributes asked for; nil: no "attributes" parameter
	partial map[string]bool // complex attributes some of whose sub-attributes were asked for
	exclude map[string]bool
}

// key names an attribute or sub-attribute of schema urn ("" for the core schema).
func key(urn string, names ...string) string {
	return strings.ToLower(urn + "|" + strings.Join(names, "."))
}

func parseProjection(rt *resourceType, attributes, excluded string) (*projection, error) {
	if attributes == "" && excluded == "" {
		return nil, nil
	}
	p := &projection{partial: map[string]bool{}}
	var err error
	if attributes != "" {
		p.include, err = projectionSet(rt, "attributes", attributes, p.partial)
	} else {
		p.exclude, err = projectionSet(rt, "excludedAttributes", excluded, nil)
	}
	return p, err
}

func projectionSet(rt *resourceType, param, list string, partial map[string]bool) (map[string]bool, error) {
	set := map[string]bool{}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if s := rt.ext(item); s != nil {
			set[key(s.ID)] = true // a whole extension
			continue
		}
		p, err := parseAttrPath(item)
		if err != nil {
			return nil, badValue("%s: %v", param, err)
		}
		urn, a := rt.lookup(p.URI, p.Name)
		if a == nil {
			return nil, badValue("%s: unknown attribute %q", param, item)
		}
		if p.Sub == "" {
			set[key(urn, a.Name)] = true
			continue
		}
		subName := p.Sub
		if !a.open {
			s := a.sub(p.Sub)
			if s == nil {
				return nil, badValue("%s: unknown attribute %q", param, item)
			}
			subName = s.Name
		}
		set[key(urn, a.Name, subName)] = true
		if partial != nil {
			partial[key(urn, a.Name)] = true
		}
	}
	return set, nil
}

// want reports whether attribute a of schema urn is returned.
func (p *projection) want(urn string, a *attr) bool {
	switch {
	case a.Returned == retNever:
		return false
	case a.Returned == retAlways || p == nil:
		return true
	case p.include != nil:
		k := key(urn, a.Name)
		return p.include[k] || p.partial[k] || (urn != "" && p.include[key(urn)])
	}
	return !p.exclude[key(urn, a.Name)]
}

// wantSub reports whether sub-attribute name of a is returned, given a is.
func (p *projection) wantSub(urn string, a *attr, name string) bool {
	if s := a.sub(name); s != nil && s.Returned == retNever {
		return false
	}
	switch {
	case p == nil:
		return true
	case p.include != nil:
		return !p.partial[key(urn, a.Name)] || p.include[key(urn, a.Name, name)]
	}
	return !p.exclude[key(urn, a.Name, name)]
}

// apply removes from the full representation obj what p does not return.
func (p *projection) apply(rt *resourceType, obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		if k == "schemas" {
			out[k] = v // RFC 7643 §3: schemas is always returned
			continue
		}
		if s := rt.ext(k); s != nil {
			sub, _ := v.(map[string]any)
			if kept := p.applyAttrs(s.ID, s.Attrs, sub); len(kept) > 0 {
				out[k] = kept
			}
			continue
		}
		_, a := rt.lookup(rt.Core.ID, k)
		if a != nil && p.want("", a) {
			out[k] = p.applySub("", a, v)
		}
	}
	return out
}

func (p *projection) applyAttrs(urn string, attrs []*attr, obj map[string]any) map[string]any {
	out := map[string]any{}
	for _, a := range attrs {
		if v, ok := obj[a.Name]; ok && p.want(urn, a) {
			out[a.Name] = p.applySub(urn, a, v)
		}
	}
	return out
}

// applySub filters the sub-attributes of a complex value (or of each element).
func (p *projection) applySub(urn string, a *attr, v any) any {
	if a.Type != tComplex {
		return v
	}
	filter := func(m map[string]any) map[string]any {
		out := make(map[string]any, len(m))
		for k, sv := range m {
			if p.wantSub(urn, a, k) {
				out[k] = sv
			}
		}
		return out
	}
	switch v := v.(type) {
	case map[string]any:
		return filter(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			if m, ok := e.(map[string]any); ok {
				out[i] = filter(m)
			} else {
				out[i] = e
			}
		}
		return out
	}
	return v
}
