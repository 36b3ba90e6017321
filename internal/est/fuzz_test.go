package est

import (
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// FuzzParseCSRBody: whatever the body, parsing answers a CSR whose
// self-signature verifies, or an error; it never panics.
func FuzzParseCSRBody(f *testing.F) {
	good := csrBody(f, newKey(f), pkix.Name{CommonName: "SN-1", SerialNumber: "SN-1"})
	der, _ := base64.StdEncoding.DecodeString(good)
	f.Add([]byte(good))
	f.Add([]byte(strings.TrimRight(good, "=") + "\r\n"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte(base64.StdEncoding.EncodeToString(der[:len(der)/2])))
	f.Add([]byte("MIIB"))
	f.Add([]byte(""))
	f.Add([]byte("===="))
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := parseCSRBody(body)
		if err != nil {
			if csr != nil {
				t.Fatal("a CSR with an error")
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("accepted a CSR whose signature does not verify")
		}
	})
}

// FuzzParseToken: only tokens this server minted are accepted, each in one
// spelling only.
func FuzzParseToken(f *testing.F) {
	s := &Server{opts: Options{TokenKey: []byte(strings.Repeat("k", 32))}}
	good := s.mint("thing-1", time.Now().Add(time.Hour)).Secret
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(TokenPrefix)
	f.Add(TokenPrefix + "AQ")
	f.Add("thingid_at_x")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.parseToken(tok, time.Now())
		if err != nil {
			return
		}
		if c.thingID != "thing-1" {
			t.Fatalf("accepted a forged token %q of %q", tok, c.thingID)
		}
		id, _ := hex.DecodeString(c.id)
		if again := s.encode(id, c.thingID, c.expires); again != tok {
			t.Fatalf("accepted %q, another spelling of %q", tok, again)
		}
	})
}
