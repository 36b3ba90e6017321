package tokens

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/internal/events"
)

// MaxLeeway is the most clock skew a Verifier allows on exp, nbf and iat
// (RFC 7519 §4.1.4: "a small leeway, usually no more than a few minutes").
const MaxLeeway = 60 * time.Second

const (
	defaultLeeway = 30 * time.Second
	// maxTokenSize refuses absurd inputs before any parsing; our tokens are
	// well under 2 KiB.
	maxTokenSize = 8 << 10
)

// accessTokenClaims are required in every access token: RFC 9068 §2.2 plus
// gid, the grant that revocation acts on.
var accessTokenClaims = []string{"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "gid"}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the exact iss expected (RFC 9068 §4 step 3).
	Issuer string
	// Leeway on exp, nbf and iat; default 30 s, at most MaxLeeway.
	Leeway time.Duration
	// Bus delivers EventGrantRevoke; nil when nothing is ever revoked (tests).
	Bus *events.Bus
	// Log receives malformed revocation events; nil for slog.Default().
	Log *slog.Logger
}

// VerifyOptions are per-call expectations.
type VerifyOptions struct {
	// Audience is the identifier the resource server knows itself by; the
	// token's aud must contain it (RFC 9068 §4 step 4). Required.
	Audience string
	// Proofs checks the DPoP proofs of tokens presented with the DPoP
	// scheme; without it such a presentation is a server error. Inspect
	// does not use it.
	Proofs ProofVerifier
}

// Verifier checks access tokens issued by this platform for resource servers.
type Verifier struct {
	keys        *Keys
	iss         string
	leeway      time.Duration
	log         *slog.Logger
	deny        denySet
	memo        memo
	bus         *events.Bus
	unsubscribe func()

	mu      sync.Mutex
	revoked RevokedGrants // set by LoadRevoked, read again on events.Resync
}

// NewVerifier returns a Verifier of the tokens signed with keys, and starts
// following revocations on cfg.Bus until Close.
func NewVerifier(keys *Keys, cfg VerifierConfig) (*Verifier, error) {
	if err := checkIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	if cfg.Leeway < 0 || cfg.Leeway > MaxLeeway {
		return nil, fmt.Errorf("tokens: leeway %s: want between 0 and %s", cfg.Leeway, MaxLeeway)
	}
	v := &Verifier{
		keys:        keys,
		iss:         cfg.Issuer,
		leeway:      cmp.Or(cfg.Leeway, defaultLeeway),
		log:         cmp.Or(cfg.Log, slog.Default()),
		bus:         cfg.Bus,
		unsubscribe: func() {},
	}
	if cfg.Bus != nil {
		v.unsubscribe = cfg.Bus.Subscribe(v.event)
	}
	return v, nil
}

// Close stops following revocations.
func (v *Verifier) Close() { v.unsubscribe() }

// RevokedGrants lists the grants revoked lately (store.Grants).
type RevokedGrants interface {
	RevokedGrantsSince(ctx context.Context, since time.Time) (map[string]time.Time, error)
}

// LoadRevoked refuses the tokens of every grant revoked within the longest
// token lifetime, as the revocation events did on the nodes that saw them:
// a node that starts missed those. Call it after NewVerifier, which follows
// the events from then on, so that no revocation falls in between. When the
// bus later says events were missed (events.Resync), src is read again and
// each revocation not heard of is published on this node as the event it
// missed, so that every door that follows revocations (the gateway's caches,
// the broker's sessions) acts on it too.
func (v *Verifier) LoadRevoked(ctx context.Context, src RevokedGrants) error {
	v.mu.Lock()
	v.revoked = src
	v.mu.Unlock()
	revoked, err := v.readRevoked(ctx, src)
	if err != nil {
		return err
	}
	now := v.keys.cfg.Now()
	for gid, exp := range revoked {
		v.deny.add(gid, exp.Add(v.leeway), now)
	}
	return nil
}

// readRevoked returns the grants revoked within the longest token lifetime,
// each with the latest exp its tokens can have.
func (v *Verifier) readRevoked(ctx context.Context, src RevokedGrants) (map[string]time.Time, error) {
	life := v.keys.cfg.MaxTokenLifetime
	revoked, err := src.RevokedGrantsSince(ctx, v.keys.cfg.Now().Add(-life-v.leeway))
	if err != nil {
		return nil, fmt.Errorf("tokens: read the grants revoked lately: %w", err)
	}
	for gid, at := range revoked {
		revoked[gid] = at.Add(life) // every token of the grant was issued before at
	}
	return revoked, nil
}

// replay publishes, on this node only, the revocations it missed (see
// LoadRevoked).
func (v *Verifier) replay() {
	v.mu.Lock()
	src := v.revoked
	v.mu.Unlock()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	revoked, err := v.readRevoked(ctx, src)
	if err != nil {
		v.log.Error("tokens: events were missed and the revoked grants cannot be read; revocations of that time may be accepted until their tokens expire", "err", err)
		return
	}
	now, n := v.keys.cfg.Now(), 0
	for gid, exp := range revoked {
		if v.deny.denied(gid, now) {
			continue // heard of
		}
		n++
		// Refused here first: the bus calls its subscribers in no order,
		// and one acting on the event (a client told its session ended)
		// must not meet a verifier that has not heard it yet.
		v.deny.add(gid, exp.Add(v.leeway), now)
		v.bus.Publish(events.Event{
			Type: EventGrantRevoke, Kind: "grant", ID: gid, Local: true,
			Details: map[string]string{"exp": strconv.FormatInt(exp.Unix(), 10)},
		})
	}
	v.log.Info("tokens: read the revoked grants again after missed events", "missed", n, "revoked", len(revoked))
}

// event follows revocations (EventGrantRevoke, see its contract) and
// events.Resync.
func (v *Verifier) event(e events.Event) {
	if e.Type == events.Resync {
		go v.replay() // reads the store; subscribers return at once
		return
	}
	if e.Type != EventGrantRevoke || e.ID == "" {
		return
	}
	until := e.Time.Add(v.keys.cfg.MaxTokenLifetime)
	if exp, err := strconv.ParseInt(e.Details["exp"], 10, 64); err == nil {
		until = time.Unix(exp, 0)
	} else {
		v.log.Warn("tokens: grant.revoke without a unix exp; refusing the grant for the longest token lifetime", "grant", e.ID, "exp", e.Details["exp"])
	}
	v.deny.add(e.ID, until.Add(v.leeway), v.keys.cfg.Now())
}

// Verify checks the access token of a request, presented as p, and returns
// its claims: signature by a published key with that key's algorithm, typ
// at+jwt, iss, aud, exp/nbf/iat, the required claims, that its grant is not
// revoked (RFC 9068 §4), and its sender binding against p's evidence
// (Presentation.Confirm). A refused token is an *Error, a refused DPoP proof
// a *dpop.Error; other errors are the server's (the store could not be read).
func (v *Verifier) Verify(ctx context.Context, p *Presentation, opts VerifyOptions) (*Claims, error) {
	c, err := v.Inspect(ctx, p.token, opts)
	if err != nil {
		return nil, err
	}
	if err := p.Confirm(ctx, c, opts.Proofs); err != nil {
		return nil, err
	}
	return c, nil
}

// Inspect checks raw as Verify does, except its sender binding, which it
// reports in Claims.Confirmation. It is for the authorization server's
// introspection and revocation endpoints, where the token is the subject of
// the request and not its credential (RFC 7662 §2.2 returns cnf for the
// resource to check), and for tests. A resource that accepts the token as a
// credential uses Verify.
func (v *Verifier) Inspect(ctx context.Context, raw string, opts VerifyOptions) (*Claims, error) {
	if opts.Audience == "" {
		return nil, errors.New("tokens: Verify needs the resource server's audience")
	}
	now := v.keys.cfg.Now()
	key, in := keyOf(raw, opts.Audience)
	c, ok := v.memo.get(key, v.keys, now)
	if !ok {
		var kid string
		var err error
		if c, kid, err = v.verifyAccess(ctx, in, opts.Audience); err != nil {
			return nil, err
		}
		v.memo.put(key, kid, c, now)
	}
	if v.deny.denied(c.GrantID, now) {
		return nil, ErrRevoked
	}
	return c, nil
}

// isCompactJWS checks the shape of RFC 7515 §7.1 (three base64url parts),
// which shuts out the JSON serialization, JWE and unsigned claims.
func isCompactJWS[T string | []byte](raw T) bool {
	dots := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '.':
			dots++
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// refusal turns a jwx error into the reason the token is refused.
func refusal(err error) error {
	var te *Error
	switch {
	case errors.As(err, &te):
		return te
	case errors.Is(err, jwt.TokenExpiredError()):
		return ErrExpired
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return ErrNotYetValid
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return ErrIssuedAt
	case errors.Is(err, jwt.InvalidIssuerError()):
		return ErrIssuer
	case errors.Is(err, jwt.InvalidAudienceError()):
		return ErrAudience
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return ErrMissing.with(claimName(err))
	case errors.Is(err, jws.VerificationError()), errors.Is(err, jws.VerifyError()):
		return ErrSignature
	}
	return ErrMalformed
}

// claimName digs the claim out of jwx's `"name" not satisfied: required claim not found`.
func claimName(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if j := strings.IndexByte(msg[i+1:], '"'); j >= 0 {
			return msg[i+1 : i+1+j]
		}
	}
	return ""
}

// parse checks raw's form, header (typ), signature, iss, times and required
// claims, plus what more adds, and returns the token and the kid of the key
// that signed it. A refused token is an *Error; an error reading the keys is
// the server's. It is jwx's path, which ID tokens take; access tokens take
// the lean one (compact.go), which the tests hold to this one.
func (v *Verifier) parse(raw, typ string, required []string, more ...jwt.ParseOption) (jwt.Token, string, error) {
	if len(raw) > maxTokenSize {
		return nil, "", ErrMalformed.with("too long")
	}
	if !isCompactJWS(raw) {
		return nil, "", ErrMalformed.with("not a compact JWS")
	}
	kp := &keyProvider{keys: v.keys, typ: typ}
	opts := append([]jwt.ParseOption{
		jwt.WithKeyProvider(kp),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(v.keys.cfg.Now)),
		jwt.WithAcceptableSkew(v.leeway),
		jwt.WithIssuer(v.iss),
	}, more...)
	for _, c := range required {
		opts = append(opts, jwt.WithRequiredClaim(c))
	}
	tok, err := jwt.ParseString(raw, opts...)
	if kp.err != nil {
		return nil, "", kp.err
	}
	if err != nil {
		return nil, "", refusal(err)
	}
	return tok, kp.kid, nil
}

// keyProvider picks the key for a token from the published keys by kid, with
// the algorithm of that key. It also enforces the header rules (headerKey,
// the lean path's too), which only it sees.
type keyProvider struct {
	keys *Keys
	typ  string // typeAccessToken or typeIDToken: neither passes for the other (RFC 8725 §3.11)
	err  error  // the store failed: not the token's fault
	kid  string // the key the token names
}

func (p *keyProvider) FetchKeys(ctx context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
	h := sig.ProtectedHeaders()
	typ, _ := h.Type()
	kid, _ := h.KeyID()
	alg, _ := h.Algorithm()
	p.kid = kid
	pk, err := p.keys.headerKey(ctx, h.Keys(), jwsHeader{Alg: alg.String(), Kid: kid, Typ: typ}, p.typ)
	if err != nil {
		if !errors.As(err, new(*Error)) {
			p.err = err // the store failed: not the token's fault
		}
		return err
	}
	sink.Key(pk.alg, pk.key)
	return nil
}

// registeredClaims reads the RFC 7519 §4.1 claims of a validated token.
func registeredClaims(tok jwt.Token) *Claims {
	c := &Claims{}
	c.Issuer, _ = tok.Issuer()
	c.Subject, _ = tok.Subject()
	c.Audience, _ = tok.Audience()
	c.IssuedAt, _ = tok.IssuedAt()
	c.ExpiresAt, _ = tok.Expiration()
	c.ID, _ = tok.JwtID()
	return c
}
