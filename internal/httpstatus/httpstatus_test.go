package httpstatus

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRecorder(t *testing.T) {
	for name, tc := range map[string]struct {
		handle func(w http.ResponseWriter)
		want   int
	}{
		"nothing written":         {func(http.ResponseWriter) {}, http.StatusOK},
		"body only":               {func(w http.ResponseWriter) { w.Write([]byte("x")) }, http.StatusOK},
		"explicit status":         {func(w http.ResponseWriter) { w.WriteHeader(http.StatusTooManyRequests) }, http.StatusTooManyRequests},
		"first final status wins": {func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound); w.WriteHeader(http.StatusOK) }, http.StatusNotFound},
		"early hints are not final": {func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusUnauthorized)
		}, http.StatusUnauthorized},
		"continue is not final": {func(w http.ResponseWriter) { w.WriteHeader(http.StatusContinue); w.Write([]byte("x")) }, http.StatusOK},
		"an upgrade is final":   {func(w http.ResponseWriter) { w.WriteHeader(http.StatusSwitchingProtocols) }, http.StatusSwitchingProtocols},
	} {
		rec := &Recorder{ResponseWriter: httptest.NewRecorder()}
		tc.handle(rec)
		if got := rec.Status(); got != tc.want {
			t.Errorf("%s: status %d, want %d", name, got, tc.want)
		}
	}
	inner := httptest.NewRecorder()
	if (&Recorder{ResponseWriter: inner}).Unwrap() != inner {
		t.Error("Unwrap does not reach the writer beneath")
	}
}
