// Package password hashes and verifies passwords with argon2id and checks them
// against the password policy. It stores nothing and knows nothing of users.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Parameters after RFC 9106 §4, second recommended option (64 MiB, 3 passes).
const (
	memoryKiB = 64 * 1024
	passes    = 3
	lanes     = 4
	saltLen   = 16
	keyLen    = 32
)

// ErrMalformedHash is returned for a stored hash that is not an argon2id PHC string.
var ErrMalformedHash = errors.New("password: malformed argon2id hash")

// Hashing takes 64 MiB per call; bound concurrency so a burst of sign-ins cannot
// exhaust memory.
var slots = make(chan struct{}, max(2, runtime.NumCPU()))

// Hash returns an argon2id PHC string for pw:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<key>.
func Hash(pw string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := derive(normalize(pw), salt, memoryKiB, passes, lanes, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, memoryKiB, passes, lanes, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// Verify reports whether pw matches the PHC string hash, in constant time with
// respect to the key comparison.
func Verify(hash, pw string) (bool, error) {
	p, err := parse(hash)
	if err != nil {
		return false, err
	}
	key := derive(normalize(pw), p.salt, p.memory, p.passes, p.lanes, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1, nil
}

// WellFormed reports whether hash is an argon2id PHC string this package can verify.
func WellFormed(hash string) bool {
	_, err := parse(hash)
	return err == nil
}

// Dummy verifies pw against a fixed hash so that a sign-in for an unknown user costs
// as much as one for a known user.
func Dummy(pw string) {
	_, _ = Verify(dummyHash(), pw)
}

// dummyHash is made on first use: hashing at init would cost every binary that
// links this package 64 MiB and a few hundred milliseconds at start.
var dummyHash = sync.OnceValue(func() string {
	h, _ := Hash("thingid-dummy-password")
	return h
})

type params struct {
	memory    uint32
	passes    uint32
	lanes     uint8
	salt, key []byte
}

func parse(hash string) (params, error) {
	var p params
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, ErrMalformedHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.passes, &p.lanes); err != nil {
		return p, ErrMalformedHash
	}
	// Refuse parameters that would let a stored value exhaust memory or CPU.
	if p.memory < 8*1024 || p.memory > 1024*1024 || p.passes < 1 || p.passes > 16 || p.lanes < 1 || p.lanes > 16 {
		return p, ErrMalformedHash
	}
	var err1, err2 error
	p.salt, err1 = base64.RawStdEncoding.DecodeString(parts[4])
	p.key, err2 = base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(p.salt) < 8 || len(p.key) < 16 || len(p.key) > 64 {
		return p, ErrMalformedHash
	}
	return p, nil
}

// normalize applies NFKC so that the same password typed on different keyboards
// (composed or decomposed accents, full-width forms) verifies (NIST SP 800-63B
// §3.1.1.2: normalize before hashing).
func normalize(pw string) string { return norm.NFKC.String(pw) }

func derive(pw string, salt []byte, memory, passes uint32, lanes uint8, n uint32) []byte {
	slots <- struct{}{}
	defer func() { <-slots }()
	return argon2.IDKey([]byte(pw), salt, passes, memory, lanes, n)
}
