package tokens

import (
	"context"
	"crypto"
	"time"
)

// The keys for token formats other than JWS: ACE's CWTs (internal/ace) are
// COSE-signed with the same keys, under the same kid, so that rotation,
// retirement and revocation are one for both formats.

// Signer is the current signing key: its kid, its algorithm (ES256, EdDSA or
// RS256) and the key.
func (k *Keys) Signer() (kid, alg string, key crypto.Signer) {
	sk := k.current().signing
	return sk.kid, sk.alg.String(), sk.priv
}

// PublicKey returns the published key kid and its algorithm, reloading once
// (paced) when the kid is unknown, as verifying a JWT does; ok is false for a
// kid that is not published (unknown or expired).
func (k *Keys) PublicKey(ctx context.Context, kid string) (alg string, key crypto.PublicKey, ok bool, err error) {
	pk, ok, err := k.lookup(ctx, kid)
	if err != nil || !ok {
		return "", nil, false, err
	}
	return pk.alg.String(), pk.key, true, nil
}

// Now is the keys' clock.
func (k *Keys) Now() time.Time { return k.cfg.Now() }

// Revoked reports whether grant gid is revoked now: the deny set every
// access token of this Verifier is checked against (EventGrantRevoke).
func (v *Verifier) Revoked(gid string) bool { return v.deny.denied(gid, v.keys.cfg.Now()) }

// Leeway is the clock skew the Verifier allows on exp, nbf and iat.
func (v *Verifier) Leeway() time.Duration { return v.leeway }
