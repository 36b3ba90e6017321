package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// unknownField finds the first key of doc (a decoded YAML document) that is
// no field of t, in document order of the fields it knows, and says which
// field was probably meant: "unknown field http.adress; did you mean
// http.address?". It returns nil when every key is known down to the
// leaves, lists of objects included, and maps it does not descend into.
func unknownField(doc any, t reflect.Type, prefix string) error {
	if list, ok := doc.([]any); ok && t.Kind() == reflect.Slice {
		for i, el := range list {
			if err := unknownField(el, t.Elem(), fmt.Sprintf("%s[%d].", strings.TrimSuffix(prefix, "."), i)); err != nil {
				return err
			}
		}
		return nil
	}
	m, ok := doc.(map[string]any)
	if !ok || t.Kind() != reflect.Struct {
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = t.Field(i).Type
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			msg := fmt.Sprintf("unknown field %s%s", prefix, k)
			if s := closest(k, fields); s != "" {
				msg += fmt.Sprintf("; did you mean %s%s?", prefix, s)
			}
			return fmt.Errorf("%s (see docs/configuration.md for the fields)", msg)
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if err := unknownField(m[k], ft, prefix+k+"."); err != nil {
			return err
		}
	}
	return nil
}

// closest is the field name nearest to k: the same name in another case,
// or one at most two edits away (and fewer than half of k's letters).
func closest(k string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range fields {
		if strings.EqualFold(name, k) {
			return name
		}
		d := editDistance(strings.ToLower(k), strings.ToLower(name))
		if 2*d >= len(k) {
			continue
		}
		if d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, by bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
