package tokens

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"
)

// memoSize bounds the tokens a Verifier remembers as verified: about
// 0.4 KiB each (the claims and the map entry, measured), and the token's
// own strings (sub, client_id, jti, gid, ...), under 4 MiB in all.
const memoSize = 8192

// memo remembers the access tokens a Verifier found valid, so that a token
// presented again (a device reconnecting, a client calling every second)
// costs a hash and a map read instead of parsing and an ES256 verification.
// What can change after the first verification is checked again on every
// use: the token's exp (an entry is good only until then; the leeway is for
// the full path), that its key is still published, and the revocation of its
// grant (Inspect checks the deny set after the memo). The sender binding is
// not remembered: Verify confirms it against each presentation's evidence.
type memo struct {
	mu      sync.RWMutex
	entries map[memoKey]memoEntry
}

// memoKey is the SHA-256 of the audience and the full token: a token is
// remembered only for the audience it was verified for, and nothing of the
// token is kept.
type memoKey [sha256.Size]byte

type memoEntry struct {
	claims *Claims
	kid    string
	// since is when it was verified (Unix nanoseconds): a clock set back
	// before it (nbf and iat were checked against that time) takes the
	// full path again.
	since int64
}

// keyOf returns the memo's key of raw for audience, the hash of the
// audience, a zero byte and raw, and raw's bytes within what it hashed,
// which verifyAccess reads: a new token is copied once. A token too long
// to be ours has the zero key, never remembered, and no bytes.
func keyOf(raw, audience string) (memoKey, []byte) {
	if len(raw) > maxTokenSize {
		return memoKey{}, nil
	}
	in := make([]byte, 0, len(audience)+1+len(raw))
	in = append(append(append(in, audience...), 0), raw...)
	return sha256.Sum256(in), in[len(audience)+1:]
}

// get returns a copy of the claims of a token verified before, if it has not
// expired at now and its key is still published.
func (m *memo) get(k memoKey, keys *Keys, now time.Time) (*Claims, bool) {
	if k == (memoKey{}) {
		return nil, false
	}
	m.mu.RLock()
	e, ok := m.entries[k]
	m.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now.UnixNano() < e.since {
		return nil, false
	}
	if !now.Before(e.claims.ExpiresAt) {
		m.mu.Lock()
		delete(m.entries, k)
		m.mu.Unlock()
		return nil, false
	}
	if _, ok := keys.published(e.kid); !ok {
		return nil, false // the full path says why
	}
	return e.claims.clone(), true
}

// put remembers c, verified with key kid, until c.ExpiresAt. When full it
// forgets what expired and, if that is not an eighth of it, arbitrary
// entries down to seven eighths: the sweep reads every entry, so it runs at
// most once per memoSize/8 puts, not on every put of a full memo (which,
// when every token is new, cost more than the verification it saves).
func (m *memo) put(k memoKey, kid string, c *Claims, now time.Time) {
	if k == (memoKey{}) || c.ExpiresAt.IsZero() || kid == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil {
		m.entries = make(map[memoKey]memoEntry)
	}
	if len(m.entries) >= memoSize {
		for key, e := range m.entries {
			if !now.Before(e.claims.ExpiresAt) {
				delete(m.entries, key)
			}
		}
		for key := range m.entries {
			if len(m.entries) <= memoSize-memoSize/8 {
				break
			}
			delete(m.entries, key)
		}
	}
	m.entries[k] = memoEntry{claims: c.clone(), kid: kid, since: now.UnixNano()}
}

// clone copies c so that no caller shares the remembered claims.
func (c *Claims) clone() *Claims {
	d := *c
	d.Audience, d.Scope = slices.Clone(c.Audience), slices.Clone(c.Scope)
	d.Permissions = slices.Clone(c.Permissions)
	if c.Confirmation != nil {
		cnf := *c.Confirmation
		d.Confirmation = &cnf
	}
	return &d
}
