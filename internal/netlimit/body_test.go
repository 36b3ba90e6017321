package netlimit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMatchLongestRule(t *testing.T) {
	def := BodyLimits{Timeout: time.Second, MaxBytes: 1}
	rules := []BodyRule{
		{Path: "/scim/v2/", BodyLimits: BodyLimits{MaxBytes: 2}},
		{Path: "/scim/v2/Bulk", BodyLimits: BodyLimits{MaxBytes: 3}},
		{Path: "/upload", BodyLimits: BodyLimits{MaxBytes: 4}},
	}
	Bodies(http.NotFoundHandler(), def, rules, nil, "")
	if rules[0].Path != "/scim/v2/" {
		t.Fatal("Bodies reordered the caller's rules")
	}
	longest := []BodyRule{rules[1], rules[0], rules[2]}
	for path, want := range map[string]int64{
		"/scim/v2/Bulk":    3,
		"/scim/v2/Bulk/x":  2, // exact rules match exactly
		"/scim/v2/Users":   2,
		"/scim/v2":         1,
		"/upload":          4,
		"/upload/x":        1,
		"/signin":          1,
		"/SCIM/v2/Bulk":    1, // paths are case-sensitive, as the mux is
		"/scim/v2/../Bulk": 2, // not cleaned: the mux redirects such paths
	} {
		if got := match(longest, def, path).MaxBytes; got != want {
			t.Errorf("%s: %d, want %d", path, got, want)
		}
	}
}

// A real server: the body limits hold for HTTP/1.1 over a socket, where the
// deadline is the connection's.
func TestBodies(t *testing.T) {
	var handlerErr = make(chan error, 10)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		handlerErr <- err
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/slow-answer" {
			time.Sleep(300 * time.Millisecond) // longer than the body's time
		}
		fmt.Fprint(w, "ok")
	})
	l, _ := newLimiter(t, 100)
	srv := httptest.NewServer(Bodies(h, BodyLimits{Timeout: 200 * time.Millisecond, MaxBytes: 10},
		[]BodyRule{{Path: "/big", BodyLimits: BodyLimits{Timeout: time.Minute, MaxBytes: 100}}}, l, "test"))
	defer srv.Close()

	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/", "small"); code != 200 || <-handlerErr != nil {
		t.Errorf("small body: %d %s", code, body)
	}
	if code, body := post("/", strings.Repeat("x", 11)); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than this route accepts (10 bytes)") {
		t.Errorf("declared too large: %d %s", code, body)
	}
	if code, _ := post("/big", strings.Repeat("x", 50)); code != 200 || <-handlerErr != nil {
		t.Errorf("route rule: %d", code)
	}
	// The deadline ends with the body: an answer that takes longer is not cut.
	if code, body := post("/slow-answer", "x"); code != 200 || body != "ok" || <-handlerErr != nil {
		t.Errorf("slow answer after the body: %d %q", code, body)
	}
	// A GET has no body and no deadline.
	if resp, err := http.Get(srv.URL + "/slow-answer"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
		<-handlerErr
	}

	// A body that trickles: the read fails and says why.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	err = <-handlerErr // the client never sends the rest
	if !errors.Is(err, ErrBodyTimeout) || !strings.Contains(err.Error(), "within 200ms") {
		t.Errorf("trickled body: %v", err)
	}
	answer, _ := io.ReadAll(c) // the server answers and closes
	if !strings.Contains(string(answer), "400 Bad Request") {
		t.Errorf("answer to a trickled body: %q", answer)
	}
	for reason, want := range map[string]float64{"timeout": 1, "too_large": 1} {
		if got := counterValue(t, l.bodies.WithLabelValues("test", reason)); got != want {
			t.Errorf("bodies refused for %s: %v, want %v", reason, got, want)
		}
	}
}
