// Package httpstatus records the status a handler answered with, for access
// logs and metrics.
package httpstatus

import "net/http"

// Recorder is an http.ResponseWriter that remembers the final status of the
// answer. Unwrap lets http.ResponseController reach the connection beneath
// (flushes, and the hijack of a WebSocket upgrade).
type Recorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader records code when it is the final status: 101 Switching
// Protocols or 200 and above, not an informational 100 or 103.
func (r *Recorder) WriteHeader(code int) {
	if r.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Status is the final status written, 200 when the handler wrote nothing
// (net/http then answers 200).
func (r *Recorder) Status() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
