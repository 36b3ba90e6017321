package tokens

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/dpop/dpoptest"
	"github.com/thingid/thingid/internal/store"
)

// bearerOf presents raw as an MQTT password would: no scheme, no evidence.
func bearerOf(raw string) *Presentation { return FromConnection(raw, nil) }

// replay is an in-memory dpop.Replay.
type replay struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *replay) UseOnce(_ context.Context, key string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if r.seen[key] {
		return store.ErrUsed
	}
	r.seen[key] = true
	return nil
}

const resourceURL = "https://api.example.com/things"

// request is a GET of resourceURL with the Authorization header auth and,
// when proof is not "", a DPoP header.
func request(auth, proof string) *http.Request {
	r := httptest.NewRequest("GET", resourceURL+"?x=1", nil)
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	return r
}

// TestVerifyTakesTheEvidence: every presentation of a bound token without
// its evidence is refused, whatever the door, with the right kind of error.
func TestVerifyTakesTheEvidence(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	holder, other := dpoptest.NewHolder(t), dpoptest.NewHolder(t)
	cert := &x509.Certificate{Raw: []byte("the client certificate")}
	otherCert := &x509.Certificate{Raw: []byte("another certificate")}
	token := func(cnf *Confirmation) string {
		c := accessClaims(clk.Now())
		c.Confirmation = cnf
		return e.accessToken(t, c)
	}
	dpopBound, certBound, plain := token(&Confirmation{JKT: holder.JKT}), token(&Confirmation{X5TS256: CertThumbprint(cert)}), token(nil)
	proofs := &dpop.Verifier{Replay: &replay{}, Now: clk.Now}
	proof := func(h *dpoptest.Holder, tok, method, htu string) string {
		cl := dpoptest.Claims(method, htu, clk.Now())
		cl["ath"] = dpoptest.ATH(tok)
		return h.Proof(t, cl)
	}
	fromReq := func(r *http.Request, chain ...*x509.Certificate) *Presentation {
		p, err := FromRequest(r, resourceURL, chain)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	reused := proof(holder, dpopBound, "GET", resourceURL)
	for _, c := range []struct {
		name    string
		p       *Presentation
		want    error // nil: accepted
		dpopish bool  // the refusal carries the DPoP challenge
	}{
		{"plain token as Bearer", fromReq(request("Bearer "+plain, "")), nil, false},
		{"plain token over MQTT", FromConnection(plain, nil), nil, false},
		{"plain token with the DPoP scheme", fromReq(request("DPoP "+plain, proof(holder, plain, "GET", resourceURL))), nil, true},
		{"plain token with the DPoP scheme, no proof", fromReq(request("DPoP "+plain, "")), dpop.ErrInvalidProof, true},
		{"DPoP-bound with its proof", fromReq(request("DPoP "+dpopBound, reused)), nil, true},
		{"DPoP-bound, proof replayed", fromReq(request("DPoP "+dpopBound, reused)), dpop.ErrInvalidProof, true},
		{"DPoP-bound as Bearer", fromReq(request("Bearer "+dpopBound, "")), ErrBinding, true},
		{"DPoP-bound as Bearer with its proof", fromReq(request("Bearer "+dpopBound, proof(holder, dpopBound, "GET", resourceURL))), ErrBinding, true},
		{"DPoP-bound, proof of another key", fromReq(request("DPoP "+dpopBound, proof(other, dpopBound, "GET", resourceURL))), ErrBinding, true},
		{"DPoP-bound, no proof", fromReq(request("DPoP "+dpopBound, "")), dpop.ErrInvalidProof, true},
		{"DPoP-bound, proof for another method", fromReq(request("DPoP "+dpopBound, proof(holder, dpopBound, "POST", resourceURL))), dpop.ErrInvalidProof, true},
		{"DPoP-bound, proof for another URL", fromReq(request("DPoP "+dpopBound, proof(holder, dpopBound, "GET", "https://api.example.com/other"))), dpop.ErrInvalidProof, true},
		{"DPoP-bound, proof for another token", fromReq(request("DPoP "+dpopBound, proof(holder, plain, "GET", resourceURL))), dpop.ErrInvalidProof, true},
		{"DPoP-bound over MQTT", FromConnection(dpopBound, nil), ErrBinding, true},
		{"DPoP-bound in a form body", FromBody(dpopBound, nil), ErrBinding, true},
		{"certificate-bound with its certificate", fromReq(request("Bearer "+certBound, ""), cert), nil, false},
		{"certificate-bound over MQTT with its certificate", FromConnection(certBound, []*x509.Certificate{cert}), nil, false},
		{"certificate-bound without a certificate", fromReq(request("Bearer "+certBound, "")), ErrBinding, false},
		{"certificate-bound with another certificate", fromReq(request("Bearer "+certBound, ""), otherCert), ErrBinding, false},
		{"certificate-bound over MQTT without a certificate", FromConnection(certBound, nil), ErrBinding, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.v.Verify(context.Background(), c.p, VerifyOptions{Audience: testAudience, Proofs: proofs})
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("got %v, want %v", err, c.want)
			case c.want != nil && c.p.DPoP() != c.dpopish:
				t.Fatalf("DPoP challenge %v, want %v", c.p.DPoP(), c.dpopish)
			}
		})
	}
	// A DPoP presentation at a door without a proof verifier is the
	// server's mistake, never an acceptance.
	p := fromReq(request("DPoP "+dpopBound, proof(holder, dpopBound, "GET", resourceURL)))
	if _, err := e.v.Verify(context.Background(), p, VerifyOptions{Audience: testAudience}); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("no proof verifier: %v", err)
	}
}

func TestFromRequest(t *testing.T) {
	const tok = "eyJ.eyJ.sig"
	for _, c := range []struct {
		name   string
		header []string
		query  string
		scheme Scheme
		token  string
		bad    bool
	}{
		{"none", nil, "", SchemeNone, "", false},
		{"bearer", []string{"Bearer " + tok}, "", SchemeBearer, tok, false},
		{"bearer, any case, spaces", []string{"bEaReR   " + tok + " "}, "", SchemeBearer, tok, false},
		{"dpop", []string{"DPoP " + tok}, "", SchemeDPoP, tok, false},
		{"basic is not ours", []string{"Basic dXNlcjpwdw=="}, "", SchemeNone, "", false},
		{"two headers", []string{"Bearer " + tok, "Bearer " + tok}, "", "", "", true},
		{"two tokens", []string{"Bearer " + tok + " " + tok}, "", "", "", true},
		{"no token", []string{"Bearer"}, "", "", "", true},
		{"empty token", []string{"Bearer  "}, "", "", "", true},
		{"not b64token", []string{"Bearer a\"b"}, "", "", "", true},
		{"token in the query", nil, "access_token=" + tok, "", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://api.example.com/x?"+c.query, nil)
			for _, h := range c.header {
				r.Header.Add("Authorization", h)
			}
			p, err := FromRequest(r, "https://api.example.com/x", nil)
			if c.bad {
				var re *RequestError
				if !errors.As(err, &re) || re.Description == "" {
					t.Fatalf("got %v, want a RequestError", err)
				}
				return
			}
			if err != nil || p.Scheme() != c.scheme || p.Token() != c.token {
				t.Fatalf("got %+v %v", p, err)
			}
		})
	}
}

// go test -run '^$' -fuzz FuzzFromRequest ./internal/tokens/
func FuzzFromRequest(f *testing.F) {
	for _, s := range []string{"Bearer abc", "DPoP a.b.c", "bearer  x=", "Basic x", "Bearer", "", "DPoP \t", "Bearer a b"} {
		f.Add(s, "proof", "x=1")
	}
	f.Fuzz(func(t *testing.T, auth, proof, query string) {
		r := httptest.NewRequest("GET", "https://api.example.com/x", nil)
		r.URL.RawQuery = query
		r.Header["Authorization"] = []string{auth}
		r.Header["Dpop"] = []string{proof}
		p, err := FromRequest(r, "https://api.example.com/x", nil)
		if err != nil {
			if !errors.As(err, new(*RequestError)) {
				t.Fatalf("%q: %v is not a RequestError", auth, err)
			}
			return
		}
		if p.Token() != "" && (!isB64Token(p.Token()) || !strings.Contains(auth, p.Token()) || p.Scheme() == SchemeNone) {
			t.Fatalf("%q read as %q %q", auth, p.Scheme(), p.Token())
		}
	})
}
