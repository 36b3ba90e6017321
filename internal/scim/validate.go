package scim

import (
	"encoding/json"
	"strings"
	"time"
)

// checkResource validates a POST or PUT body against rt's schemas and returns it
// canonical: attribute names spelt as in the schema, extension attributes nested
// under their URN, read-only attributes dropped (RFC 7644 §3.3 and §3.5.1: they are
// ignored). Unknown attributes and wrong types are errors naming the attribute.
func checkResource(rt *resourceType, body map[string]any) (map[string]any, error) {
	urns, err := checkSchemas(rt, body["schemas"])
	if err != nil {
		return nil, err
	}
	out := map[string]any{"schemas": urns}
	for k, v := range body {
		if k == "schemas" {
			continue
		}
		if s := rt.ext(k); s != nil {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, badValue("%s: must be an object", k)
			}
			sub, err := checkAttrs(s.ID+":", s, m)
			if err != nil {
				return nil, err
			}
			out[s.ID] = sub
			continue
		}
		_, a := rt.lookup(rt.Core.ID, k)
		if a == nil {
			return nil, badSyntax("unknown attribute %q: %s resources have no such attribute", k, rt.Name)
		}
		if _, dup := out[a.Name]; dup {
			return nil, badSyntax("attribute %q is given twice (names are case-insensitive)", a.Name)
		}
		if a.readOnly() {
			continue
		}
		cv, err := checkValue(a.Name, a, v)
		if err != nil {
			return nil, err
		}
		if cv != nil {
			out[a.Name] = cv
		}
	}
	return out, checkRequired(rt, out)
}

// checkSchemas requires the "schemas" attribute (RFC 7643 §3) to list the core
// schema and nothing unknown.
func checkSchemas(rt *resourceType, v any) ([]any, error) {
	list, _ := v.([]any)
	var urns []any
	core := false
	for _, u := range list {
		s, ok := u.(string)
		if !ok {
			return nil, badValue("schemas: must be an array of schema URNs")
		}
		switch {
		case strings.EqualFold(s, rt.Core.ID):
			core = true
			urns = append(urns, rt.Core.ID)
		case rt.ext(s) != nil:
			urns = append(urns, rt.ext(s).ID)
		default:
			return nil, badValue("schemas: %q is not a schema of %s resources", s, rt.Name)
		}
	}
	if !core {
		return nil, badValue("schemas: must list %s", rt.Core.ID)
	}
	return urns, nil
}

func checkAttrs(prefix string, s *schema, m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, v := range m {
		a := s.attr(k)
		if a == nil {
			return nil, badSyntax("unknown attribute %q", prefix+k)
		}
		if _, dup := out[a.Name]; dup {
			return nil, badSyntax("attribute %q is given twice (names are case-insensitive)", prefix+a.Name)
		}
		if a.readOnly() {
			continue
		}
		cv, err := checkValue(prefix+a.Name, a, v)
		if err != nil {
			return nil, err
		}
		if cv != nil {
			out[a.Name] = cv
		}
	}
	return out, nil
}

// checkRequired reports the first required writable attribute that is missing.
func checkRequired(rt *resourceType, obj map[string]any) error {
	for _, s := range rt.schemas() {
		container := obj
		if s != rt.Core {
			container, _ = obj[s.ID].(map[string]any)
		}
		for _, a := range s.Attrs {
			if a.Required && !a.readOnly() && empty(container[a.Name]) {
				return badValue("%s: is required", a.Name)
			}
		}
	}
	return nil
}

func empty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// checkValue checks v against attribute a and returns it canonical; null means
// unassigned (RFC 7643 §2.5) and returns nil.
func checkValue(path string, a *attr, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	if !a.Multi {
		return checkSingle(path, a, v)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, badValue("%s: must be an array", path)
	}
	out := make([]any, 0, len(list))
	for _, e := range list {
		ce, err := checkSingle(path, a, e)
		if err != nil {
			return nil, err
		}
		if ce != nil {
			out = append(out, ce)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// checkSingle checks one value (or one element of a multi-valued attribute).
func checkSingle(path string, a *attr, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch a.Type {
	case tString, tRef:
		if _, ok := v.(string); !ok {
			return nil, badValue("%s: must be a string", path)
		}
	case tBool:
		if _, ok := v.(bool); !ok {
			return nil, badValue("%s: must be true or false", path)
		}
	case tDateTime:
		s, ok := v.(string)
		if !ok {
			return nil, badValue("%s: must be an RFC 3339 date-time string", path)
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return nil, badValue("%s: %q is not an RFC 3339 date-time", path, s)
		}
	case tComplex:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, badValue("%s: must be an object", path)
		}
		if a.open {
			return plainJSON(m), nil
		}
		out := map[string]any{}
		for k, sv := range m {
			s := a.sub(k)
			if s == nil {
				return nil, badSyntax("unknown attribute %q", path+"."+k)
			}
			if _, dup := out[s.Name]; dup {
				return nil, badSyntax("attribute %q is given twice (names are case-insensitive)", path+"."+s.Name)
			}
			if s.readOnly() {
				continue
			}
			cv, err := checkSingle(path+"."+s.Name, s, sv)
			if err != nil {
				return nil, err
			}
			if cv != nil {
				out[s.Name] = cv
			}
		}
		for _, s := range a.Sub {
			if s.Required && !s.readOnly() && empty(out[s.Name]) {
				return nil, badValue("%s.%s: is required", path, s.Name)
			}
		}
		if len(out) == 0 {
			return nil, nil
		}
		return out, nil
	}
	return v, nil
}

// plainJSON converts json.Number to float64 throughout v, the form the store and
// encoding/json use for free-form values.
func plainJSON[T any](v T) T {
	var conv func(any) any
	conv = func(v any) any {
		switch v := v.(type) {
		case json.Number:
			f, _ := v.Float64()
			return f
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, e := range v {
				out[k] = conv(e)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				out[i] = conv(e)
			}
			return out
		}
		return v
	}
	return conv(v).(T)
}

// Readers of canonical representations.

func getStr(obj map[string]any, name string) string {
	s, _ := obj[name].(string)
	return s
}

func getObj(obj map[string]any, name string) map[string]any {
	m, _ := obj[name].(map[string]any)
	return m
}

func getList(obj map[string]any, name string) []any {
	l, _ := obj[name].([]any)
	return l
}

// getActive reads "active"; thingid treats an omitted value as true.
func getActive(obj map[string]any) bool {
	b, ok := obj["active"].(bool)
	return b || !ok
}
