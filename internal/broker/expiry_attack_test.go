package broker

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Expiries armed, moved and disarmed from many goroutines at once (a
// re-authentication moves one, a takeover or a revocation disarms it),
// many at the same instant, past, present, far future and beyond the
// heap's clock, or a few milliseconds later (the timer set again for the
// next once the earliest was ended): a session whose last arm is due is
// ended; one never armed for a due time is never ended; none is ended
// more often than it was armed due; the heap keeps exactly the sessions
// armed for later, each at its place.
func TestAttackExpiriesConcurrent(t *testing.T) {
	var mu sync.Mutex
	ends := map[*session]int{}
	ended := make(chan *session, 1000)
	e := newExpiries(func(s *session) {
		mu.Lock()
		ends[s]++
		mu.Unlock()
		ended <- s
	})
	const workers, each = 8, 50
	ops := []time.Duration{-time.Second, 0, 10 * time.Millisecond, 30 * time.Millisecond, time.Hour, math.MaxInt64, -1} // -1: disarm
	type plan struct {
		s      *session
		dueArm int  // arms due within the test
		due    bool // the last op is an arm due within the test
		later  bool // the last op is an arm for an hour or more
	}
	plans := make([][]plan, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 16))
			for range each {
				p := plan{s: &session{}}
				for range 1 + r.IntN(6) {
					switch d := ops[r.IntN(len(ops))]; {
					case d == -1:
						e.disarm(p.s)
						p.due, p.later = false, false
					default:
						e.arm(p.s, d)
						p.due, p.later = d < time.Hour, d >= time.Hour
						if p.due {
							p.dueArm++
						}
					}
				}
				plans[w] = append(plans[w], p)
			}
		}()
	}
	wg.Wait()
	var mustEnd, later int
	for _, ps := range plans {
		for _, p := range ps {
			if p.due {
				mustEnd++
			}
			if p.later {
				later++
			}
		}
	}
	for seen := map[*session]bool{}; len(seen) < mustEnd; {
		select {
		case s := <-ended:
			for _, ps := range plans {
				for _, p := range ps {
					if p.s == s && p.due {
						seen[s] = true
					}
				}
			}
		case <-time.After(time.Minute):
			t.Fatalf("%d of %d sessions due were ended", len(seen), mustEnd)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	for _, ps := range plans {
		for _, p := range ps {
			if n := ends[p.s]; n > p.dueArm {
				t.Errorf("a session armed due %d times was ended %d times", p.dueArm, n)
			}
			if in := p.s.pos > 0 && e.due[p.s.pos-1].s == p.s; in != p.later {
				t.Errorf("a session armed for later: %v; in the heap at its place: %v", p.later, in)
			}
		}
	}
	if len(e.due) != later {
		t.Errorf("%d sessions in the heap, want the %d armed for later", len(e.due), later)
	}
}

// Token expiries of connections over TLS, parked while idle: two tokens
// expiring at the same instant end both connections (0xA0); a session
// taken over by a connection with a longer token is not ended at the
// first token's expiry; a re-authentication with a token that expires
// sooner moves the expiry earlier, not only later.
func TestAttackExpiryTakeoverSameInstantEarlier(t *testing.T) {
	e := newEnv(t, nil)
	soon := time.Now().Add(4 * time.Second)
	token := func(th *store.Thing, at time.Time) string {
		return e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, ExpiresAt: at})
	}
	connect := func(th *store.Thing, tok string) *client5 {
		c, ca, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: false, KeepAlive: 600,
			Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok)}})
		if err != nil {
			t.Fatalf("%v %+v", err, ca)
		}
		return c
	}
	taken, a, b, moved := e.thing("T-1"), e.thing("T-2"), e.thing("T-3"), e.thing("T-4")
	// First, so that the broker's timer is set for later when the
	// re-authentication moves the expiry earlier.
	c := connect(moved, token(moved, time.Now().Add(10*time.Minute)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: AuthMethod, AuthData: []byte(token(moved, soon))}})
	if err != nil || !ar.Success {
		t.Fatalf("re-authentication: %v %+v", err, ar)
	}
	old := connect(taken, token(taken, soon))
	ca, cb := connect(a, token(a, soon)), connect(b, token(b, soon))
	survivor := connect(taken, token(taken, time.Now().Add(10*time.Minute)))
	if rc := closed(t, old, time.Now()); rc != 0x8E {
		t.Errorf("the connection taken over: reason %#x", rc)
	}
	for name, cl := range map[string]*client5{"same instant, first": ca, "same instant, second": cb, "re-authenticated for sooner": c} {
		if rc := closed(t, cl, soon); rc != 0xA0 {
			t.Errorf("%s: reason %#x, want 0xA0", name, rc)
		}
	}
	if rc := survivor.pub(t, "things/"+taken.ID+"/telemetry", 1, "still here"); rc != 0 {
		t.Errorf("the session taken over with a longer token: publish %#x", rc)
	}
	survivor.connected(t, "the connection that took over")
}
