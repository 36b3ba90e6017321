package console

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/refusal"
)

func TestCSVCellsDisarmFormulas(t *testing.T) {
	for in, want := range map[string]string{
		"=1+2":                  "'=1+2",
		"+cmd":                  "'+cmd",
		"-2":                    "'-2",
		"@SUM(A1)":              "'@SUM(A1)",
		"\t=x":                  "'\t=x",
		"\r=x":                  "'\r=x",
		"admin:1":               "admin:1",
		`{"a":"=b"}`:            `{"a":"=b"}`,
		"":                      "",
		"thing.unlink, revoked": "thing.unlink, revoked",
	} {
		if got := csvCells(in)[0]; got != want {
			t.Errorf("csvCells(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"00:1A:2B:3C:4D:5E":       "00:1a:2b:3c:4d:5e",
		"00-1a-2b-3c-4d-5e":       "00:1a:2b:3c:4d:5e",
		"001a.2b3c.4d5e":          "00:1a:2b:3c:4d:5e",
		"001a2b3c4d5e":            "00:1a:2b:3c:4d:5e",
		"00:1a:2b:3c:4d:5e:6f:70": "00:1a:2b:3c:4d:5e:6f:70",
	} {
		if got, err := normalizeMAC(in); err != nil || got != want {
			t.Errorf("normalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "zz", "00:1a", "00:1a:2b:3c:4d:5e:6f", "0:1a:2b:3c:4d:5e"} {
		if got, err := normalizeMAC(in); err == nil {
			t.Errorf("normalizeMAC(%q) = %q, want an error", in, got)
		}
	}
}

func TestParseThingSearch(t *testing.T) {
	q, err := parseThingSearch(url.Values{"serial": {" SN-1 "}, "status": {"active"}, "page": {"3"}})
	if err != nil || q.Serial != "SN-1" || q.Status != "active" || q.Page != 3 {
		t.Fatalf("%+v %v", q, err)
	}
	for field, v := range map[string]url.Values{
		"status": {"status": {"gone"}},
		"page":   {"page": {"0"}},
		"model":  {"model": {strings.Repeat("m", maxSearchText+1)}},
	} {
		_, err := parseThingSearch(v)
		if fe, ok := err.(*refusal.FieldError); !ok || fe.Field != field {
			t.Errorf("%v: %v, want an error about %s", v, err, field)
		}
	}
}

func TestBackOf(t *testing.T) {
	for in, want := range map[string]string{
		"/admin/things/t1/certificates/revoke": "/admin/things/t1",
		"/admin/users/u1/disable":              "/admin/users/u1",
		"/admin/users":                         "/admin",
	} {
		if got := backOf(in); got != want {
			t.Errorf("backOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzThingSearch: no query string crashes the search's parsing, and a
// MAC address it accepts is in the stored form.
func FuzzThingSearch(f *testing.F) {
	for _, s := range []string{"serial=SN-1&mac=00-1a-2b-3c-4d-5e", "status=active&page=2", "mac=001a.2b3c.4d5e", "page=-1", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseThingSearch(v)
		if err != nil {
			return
		}
		if q.Page < 1 {
			t.Fatalf("page %d accepted", q.Page)
		}
		if q.MAC == "" {
			return
		}
		m, err := normalizeMAC(q.MAC)
		if err != nil {
			return
		}
		if again, err := normalizeMAC(m); err != nil || again != m || !utf8.ValidString(m) || strings.ToLower(m) != m {
			t.Fatalf("normalizeMAC(%q) = %q, not stable: %q %v", q.MAC, m, again, err)
		}
	})
}
