package audit

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestParseQuery(t *testing.T) {
	since := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		raw  string
		want Query
	}{
		{"", Query{Limit: DefaultLimit}},
		{"actor=admin:a1&action=uma.*&subject=t1&subjectKind=thing&limit=5&order=oldest",
			Query{Filter: Filter{Actor: store.TextMatch{Value: "admin:a1"}, Action: store.TextMatch{Value: "uma.", Prefix: true},
				Subject: "t1", SubjectKind: store.KindThing}, Limit: 5, OldestFirst: true}},
		{"actor=admin:a1*", Query{Filter: Filter{Actor: store.TextMatch{Value: "admin:a1", Prefix: true}}, Limit: DefaultLimit}},
		{"action=*", Query{Limit: DefaultLimit}},
		{"actor=&action=&since=&limit=&order=&cursor=", Query{Limit: DefaultLimit}},
		{"since=2025-06-01T14:00:00%2B02:00&until=2025-06-01T12:00:00.000000001Z",
			Query{Filter: Filter{Since: since, Until: since.Add(time.Nanosecond)}, Limit: DefaultLimit}},
		{"order=newest&limit=1000", Query{Limit: 1000}},
		{"actor=admin:a1+via+client:c1", Query{Filter: Filter{Actor: store.TextMatch{Value: "admin:a1 via client:c1"}}, Limit: DefaultLimit}},
	} {
		v, _ := url.ParseQuery(c.raw)
		got, err := ParseQuery(v, testKey)
		if err != nil {
			t.Errorf("%s: %v", c.raw, err)
			continue
		}
		if !sameQuery(got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.raw, got, c.want)
		}
	}
}

func sameQuery(a, b Query) bool {
	return a.Filter.Values().Encode() == b.Filter.Values().Encode() && a.Since.Equal(b.Since) && a.Until.Equal(b.Until) &&
		a.Limit == b.Limit && a.OldestFirst == b.OldestFirst && a.From == b.From
}

// Every bad parameter is refused naming it, never read as no filter.
func TestParseQueryRefuses(t *testing.T) {
	long := strings.Repeat("é", maxText+1)
	for _, c := range []struct{ raw, field string }{
		{"actr=admin", "actr"},
		{"actor=a&actor=b", "actor"},
		{"action=uma.*.create", "action"},
		{"action=*uma", "action"},
		{"subject=t*", "subject"},
		{"subjectKind=thing", "subjectKind"},
		{"subject=t1&subjectKind=th*", "subjectKind"},
		{"actor=" + url.QueryEscape(long), "actor"},
		{"actor=%FF", "actor"},
		{"action=a%00b", "action"},
		{"subject=a%0Ab", "subject"},
		{"actor=%E2%80%8B", "actor"}, // zero-width space
		{"since=yesterday", "since"},
		{"since=2025-06-01", "since"},
		{"until=2025-06-01T12:00:00", "until"},
		{"since=2025-06-01T12:00:00Z&until=2025-06-01T12:00:00Z", "until"},
		{"since=2025-06-02T00:00:00Z&until=2025-06-01T00:00:00Z", "until"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=-1", "limit"},
		{"limit=ten", "limit"},
		{"limit=1e3", "limit"},
		{"limit=99999999999999999999", "limit"},
		{"order=asc", "order"},
		{"order=NEWEST", "order"},
		{"cursor=x", "cursor"},
		{"cursor=" + strings.Repeat("A", 200), "cursor"},
	} {
		v, err := url.ParseQuery(c.raw)
		if err != nil {
			t.Fatalf("%s: %v", c.raw, err)
		}
		_, err = ParseQuery(v, testKey)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: %v, want an error naming %s", c.raw, err, c.field)
		}
	}
}

// A cursor is good only unaltered, with the filters it was issued for, and
// in its order; every altered byte is refused.
func TestCursorTampering(t *testing.T) {
	f := Filter{Action: store.TextMatch{Value: "user.", Prefix: true}}
	c := encodeCursor(testKey, f, false, 1234)
	v := f.Values()
	v.Set(ParamCursor, c)
	q, err := ParseQuery(v, testKey)
	if err != nil || q.From != 1234 || q.OldestFirst {
		t.Fatalf("good cursor: %+v %v", q, err)
	}
	raw := []byte(c)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range raw {
		for _, r := range []byte{alphabet[(strings.IndexByte(alphabet, raw[i])+1)%64], '.', '='} {
			alt := slices.Clone(raw)
			alt[i] = r
			v.Set(ParamCursor, string(alt))
			if _, err := ParseQuery(v, testKey); !isField(err, ParamCursor) {
				t.Fatalf("cursor with byte %d changed to %q: %v", i, r, err)
			}
		}
	}
	for name, v := range map[string]url.Values{
		"other filters":  {ParamCursor: {c}, ParamAction: {"user.*"}, ParamActor: {"cli"}},
		"no filters":     {ParamCursor: {c}},
		"another prefix": {ParamCursor: {c}, ParamAction: {"user"}},
		"another key":    {ParamCursor: {encodeCursor([]byte("another key, another server...."), f, false, 1234)}, ParamAction: {"user.*"}},
	} {
		if _, err := ParseQuery(v, testKey); !isField(err, ParamCursor) {
			t.Errorf("%s: %v, want the cursor refused", name, err)
		}
	}
	v = f.Values()
	v.Set(ParamCursor, c)
	v.Set(ParamOrder, OrderOldest)
	if _, err := ParseQuery(v, testKey); !isField(err, ParamOrder) {
		t.Errorf("cursor of newest-first with order=oldest: %v", err)
	}
	v.Set(ParamOrder, OrderNewest)
	if _, err := ParseQuery(v, testKey); err != nil {
		t.Errorf("cursor with its own order: %v", err)
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field
}

// FuzzParseQuery: any query string is a Query or an error naming one of its
// parameters, never a panic; a Query read back from its canonical form is
// the same Query, and its cursors lead back to it.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "actor=admin:a1&action=uma.*", "subject=t1&subjectKind=thing&order=oldest&limit=3",
		"since=2025-06-01T12:00:00Z&until=2025-06-02T12:00:00.5%2B01:00", "action=*", "actor=a*b", "limit=1001", "cursor=AQDSCQ",
		"x=1", "actor=%FF", "since=2025-13-01T00:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, testKey)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%q: %v is not a FieldError", raw, err)
			}
			if _, given := v[fe.Field]; !given {
				t.Fatalf("%q: the error names %q, which the query does not have", raw, fe.Field)
			}
			return
		}
		if q.Limit < 1 || q.Limit > MaxLimit {
			t.Fatalf("%q: limit %d", raw, q.Limit)
		}
		back := q.Filter.Values()
		back.Set(ParamLimit, strconv.Itoa(q.Limit))
		back.Set(ParamCursor, encodeCursor(testKey, q.Filter, q.OldestFirst, q.From+1))
		again, err := ParseQuery(back, testKey)
		if err != nil {
			t.Fatalf("%q: its canonical form %q is refused: %v", raw, back.Encode(), err)
		}
		q.From++
		if !sameQuery(again, q) {
			t.Fatalf("%q: read back as %+v, want %+v", raw, again, q)
		}
	})
}
