package music

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The service serves a playlist only with the permission the gateway
// checked: for this playlist, with play.
func TestServePlaylist(t *testing.T) {
	s := &Service{playlists: map[string]*Playlist{"p1": {ID: "p1", Name: "Road trip", Owner: "bob", Tracks: []string{"Born to Run"}}}}
	for _, tc := range []struct {
		name, path, resource, scopes string
		want                         int
		says                         string
	}{
		{"through the gateway", "/playlists/p1", "p1", "play", http.StatusOK, `"Road trip"`},
		{"no gateway headers", "/playlists/p1", "", "", http.StatusForbidden, "identity gateway"},
		{"another resource", "/playlists/p1", "p2", "play", http.StatusForbidden, "route"},
		{"without play", "/playlists/p1", "p1", "edit", http.StatusForbidden, "route"},
		{"a scope that only starts with play", "/playlists/p1", "p1", "player", http.StatusForbidden, "route"},
		{"unknown playlist", "/playlists/p2", "p2", "edit play", http.StatusNotFound, "no such playlist"},
		{"another path", "/admin", "p1", "play", http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.resource != "" {
				r.Header.Set(headerResource, tc.resource)
				r.Header.Set(headerResourceScopes, tc.scopes)
			}
			w := httptest.NewRecorder()
			s.handler().ServeHTTP(w, r)
			if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.says) {
				t.Errorf("%d %s, want %d saying %q", w.Code, w.Body, tc.want, tc.says)
			}
		})
	}
}

func TestCheckPlaylist(t *testing.T) {
	long := strings.Repeat("x", maxName+1)
	for name, tc := range map[string]struct {
		owner, name string
		tracks      []string
		ok          bool
	}{
		"fine":           {"bob", "Road trip", []string{"Born to Run"}, true},
		"no owner":       {"", "Road trip", []string{"a"}, false},
		"no name":        {"bob", "", []string{"a"}, false},
		"no tracks":      {"bob", "Road trip", nil, false},
		"empty track":    {"bob", "Road trip", []string{""}, false},
		"long name":      {"bob", long, []string{"a"}, false},
		"control":        {"bob", "Road\ttrip", []string{"a"}, false},
		"padded":         {"bob", " Road trip", []string{"a"}, false},
		"too many":       {"bob", "Road trip", make([]string, maxTracks+1), false},
		"not UTF-8":      {"bob", "Road \xff", []string{"a"}, false},
		"unicode is":     {"bob", "Route du Soleil ☀", []string{"Café"}, true},
		"padded track":   {"bob", "Road trip", []string{"a "}, false},
		"long track":     {"bob", "Road trip", []string{long}, false},
		"owner controls": {"bo\nb", "Road trip", []string{"a"}, false},
	} {
		if err := CheckPlaylist(tc.owner, tc.name, tc.tracks); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", name, err, tc.ok)
		}
	}
}
