package netlimit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/problem"
)

// BodyLimits bound the reading of one request body.
type BodyLimits struct {
	// Timeout is the time from the request's headers to the body's end; 0: none.
	Timeout time.Duration
	// MaxBytes is the largest body; 0: none. A handler may keep a smaller
	// limit of its own.
	MaxBytes int64
}

// BodyRule gives the requests whose path is Path (or starts with it, when
// Path ends in "/") limits of their own.
type BodyRule struct {
	Path string
	BodyLimits
}

// Bodies bounds the bodies of the requests h serves: by the longest matching
// rule, else by def. listener labels the metric of refused bodies; l may be
// nil (no metric).
//
// The time is a read deadline on the connection (HTTP/1) or the stream
// (HTTP/2), set only for a request with a body and cleared once the body
// has been read, so that a long answer after it (a proxied download, a
// stream) is never cut. A request that declares a larger body than allowed
// is answered 413 at once.
func Bodies(h http.Handler, def BodyLimits, rules []BodyRule, l *Limiter, listener string) http.Handler {
	rules = slices.Clone(rules)
	// Longest first: the first match is the most specific.
	slices.SortStableFunc(rules, func(a, b BodyRule) int { return len(b.Path) - len(a.Path) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		lim := match(rules, def, r.URL.Path)
		if lim.MaxBytes > 0 && r.ContentLength > lim.MaxBytes {
			if l != nil {
				l.bodyRefused(listener, "too_large")
			}
			w.Header().Set("Connection", "close")
			problem.Write(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the request body of %d bytes is larger than this route accepts (%d bytes)", r.ContentLength, lim.MaxBytes))
			return
		}
		if lim.MaxBytes > 0 {
			r.Body = http.MaxBytesReader(w, r.Body, lim.MaxBytes)
		}
		if lim.Timeout > 0 {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(lim.Timeout)); err == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: lim.Timeout, refused: func() {
					if l != nil {
						l.bodyRefused(listener, "timeout")
					}
				}}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// match returns the limits of the longest rule matching path, else def.
func match(rules []BodyRule, def BodyLimits, path string) BodyLimits {
	for _, rule := range rules {
		if path == rule.Path || (strings.HasSuffix(rule.Path, "/") && strings.HasPrefix(path, rule.Path)) {
			return rule.BodyLimits
		}
	}
	return def
}

// deadlineBody clears the read deadline at the body's end and names the
// timeout in its error.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	refused func()
	once    sync.Once
	done    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		b.once.Do(b.refused)
		err = fmt.Errorf("%w within %s: %w", ErrBodyTimeout, b.timeout, err)
	}
	return n, err
}
