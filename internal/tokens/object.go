package tokens

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// object is a JSON object split into its members, sorted by name, each value
// its raw JSON text. A token's header and claims are read through it: its
// values are sub-slices of the decoded part and the member names are the
// only strings made, where encoding/json's Decoder allocated for every token
// it read (a sixth of a first MQTT CONNECT's CPU with the collector's share,
// issue 16).
type object []member

type member struct {
	name  string
	value []byte
}

var errNotObject = errors.New("not a JSON object")

// parseObject reads data as one JSON object by exact member name
// (encoding/json would match struct fields case-insensitively, so "ISS"
// could stand for iss), refusing a name that comes twice and anything but
// white space after the object. encoding/json's validator decides what is
// JSON; the object's members are then split by its structure alone.
func parseObject(data []byte) (object, error) {
	start := skipSpace(data, 0)
	if start == len(data) || data[start] != '{' {
		return nil, errNotObject
	}
	end, ok := valueEnd(data, start)
	if !ok || !json.Valid(data[start:end]) {
		return nil, errNotObject
	}
	if skipSpace(data, end) != len(data) {
		return nil, errors.New("data after the JSON object")
	}
	// data[start:end] is valid JSON: what follows cannot fail but is
	// checked all the same, so that no input can make it read out of bounds.
	// A member has a colon after its name; colons in values only overcount.
	o := make(object, 0, min(bytes.Count(data[start:end], []byte{':'}), 32))
	i := skipSpace(data, start+1)
	for i < end && data[i] == '"' {
		nameEnd, ok := valueEnd(data, i)
		if !ok {
			return nil, errNotObject
		}
		name, ok := stringOf(data[i:nameEnd])
		i = skipSpace(data, nameEnd)
		if !ok || i >= end || data[i] != ':' {
			return nil, errNotObject
		}
		i = skipSpace(data, i+1)
		vEnd, ok := valueEnd(data, i)
		if !ok || vEnd > end {
			return nil, errNotObject
		}
		o = append(o, member{name: name, value: data[i:vEnd]})
		if i = skipSpace(data, vEnd); i < end && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	slices.SortStableFunc(o, func(a, b member) int { return cmp.Compare(a.name, b.name) })
	for k := 1; k < len(o); k++ {
		if o[k].name == o[k-1].name {
			return nil, fmt.Errorf("member %q twice", o[k].name)
		}
	}
	return o, nil
}

// get returns the raw value of the member name.
func (o object) get(name string) ([]byte, bool) {
	k, ok := slices.BinarySearchFunc(o, name, func(m member, name string) int { return cmp.Compare(m.name, name) })
	if !ok {
		return nil, false
	}
	return o[k].value, true
}

func (o object) has(name string) bool {
	_, ok := o.get(name)
	return ok
}

// names are the member names.
func (o object) names() []string {
	names := make([]string, len(o))
	for k, m := range o {
		names[k] = m.name
	}
	return names
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the end of the JSON value that starts at data[i], judged
// by its structure alone (strings, nesting, the delimiters after a number or
// literal); false when data ends first. Whether it is JSON is json.Valid's
// to say.
func valueEnd(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return 0, false
	}
	switch data[i] {
	case '"':
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				e, ok := valueEnd(data, j)
				if !ok {
					return 0, false
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(data) && !delimiter(data[j]) {
		j++
	}
	return j, j > i
}

// delimiter ends a number or a literal.
func delimiter(b byte) bool {
	switch b {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// stringOf decodes a JSON string (not null): directly when it has no escape
// and is valid UTF-8, else through encoding/json (which also turns invalid
// UTF-8 into U+FFFD, as it did when it read every string).
func stringOf(val []byte) (string, bool) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return "", false
	}
	if in := val[1 : len(val)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var s string
	return s, json.Unmarshal(val, &s) == nil
}

// stringsOf decodes a JSON array of strings (not null).
func stringsOf(val []byte) ([]string, bool) {
	if len(val) < 2 || val[0] != '[' {
		return nil, false
	}
	many := make([]string, 0, 2)
	i := skipSpace(val, 1)
	for i < len(val) && val[i] != ']' {
		end, ok := valueEnd(val, i)
		if !ok {
			return nil, false
		}
		s, ok := stringOf(val[i:end])
		if !ok {
			return nil, false
		}
		many = append(many, s)
		if i = skipSpace(val, end); i < len(val) && val[i] == ',' {
			i = skipSpace(val, i+1)
		}
	}
	return many, i == len(val)-1
}
