package directory

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// One access log line per operation, with what an operator needs to know
// and never a password.
func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	e := newEnv(t, withLog(slog.New(slog.NewTextHandler(&buf, nil))))
	c := e.dialLDAPS(t)
	if err := c.Bind(aliceDN(), "a wrong password"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := c.Bind(aliceDN(), alicePassword); err != nil {
		t.Fatal(err)
	}
	dns(t, c, base, 2, "(uid=bob)")
	// An operation is logged after its answer, before the next is read:
	// one more round trip and the search's line is there.
	if _, err := c.WhoAmI(nil); err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	for _, want := range []string{
		`op=bind msgid=1 result=invalidCredentials`,
		`op=bind msgid=2 result=success`,
		`op=search msgid=3 result=success`, `who="dn:` + aliceDN() + `"`, `filter="(uid=bob)" entries=0`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("access log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, alicePassword) || strings.Contains(log, "a wrong password") {
		t.Errorf("a password in the access log:\n%s", log)
	}
}
