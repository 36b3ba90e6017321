package directory

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

// Passwords checks a user name and password under the rules of the web
// sign-in (*authn.Sessions): the same verification, per-account back-off
// and per-address throttling, counted together whichever door an attempt
// came by, and the same one-time-password rule; and ends web sessions
// when a password changes, as /account/password does.
type Passwords interface {
	CheckPassword(ctx context.Context, client netip.Addr, door, userName, password string) (*store.User, time.Duration, error)
	// EndUserSessions signs the user out of the web everywhere, audited.
	EndUserSessions(ctx context.Context, actor, userID string) error
}

// ClientSecrets checks an OAuth client's secret for a service account's
// bind, under the same throttling and back-off as a user's password
// (authn.Sessions.CheckSecret with the token endpoint's check): nil,
// authn.ErrSignInFailed, authn.ErrThrottled with the wait, or a failure.
type ClientSecrets interface {
	CheckClientSecret(ctx context.Context, client netip.Addr, clientID, secret string) (time.Duration, error)
}

// principal is who a session is bound as.
type principal struct {
	dn      string
	userID  string // a user's binds
	thingID string // a thing's binds (SASL EXTERNAL)
	admin   bool
	// service is the OAuth client of a service account's bind, reads
	// the ous its configuration lets it read.
	service string
	reads   map[string]bool
}

// actor names the principal in the audit log as the web and SCIM do.
func (p *principal) actor() string {
	if p.admin {
		return "admin:" + p.userID
	}
	return "user:" + p.userID
}

// authzID is the principal's authorization identity (RFC 4513 §5.2.1.8).
func (p *principal) authzID() string {
	if p == nil {
		return ""
	}
	return "dn:" + p.dn
}

// bind serves a BindRequest (RFC 4511 §4.2, RFC 4513). Whatever its
// outcome, the session is anonymous until a bind succeeds (RFC 4511 §4.2.1).
func (ss *session) bind(ctx context.Context, r *bindRequest) *ber.Packet {
	ss.who = nil
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opBindResponse, result{code: code, diagnostic: why})
	}
	if r.version != 3 {
		return answer(resultProtocolError, "only LDAPv3 is served")
	}
	if r.sasl {
		if r.mechanism != "EXTERNAL" {
			return answer(resultAuthMethodNotSupported, "SASL mechanism "+r.mechanism+" is not supported; EXTERNAL is")
		}
		return ss.external(ctx, r)
	}
	switch {
	case r.name == "" && len(r.credentials) == 0:
		return answer(resultSuccess, "") // anonymous (RFC 4513 §5.1.1)
	case len(r.credentials) == 0:
		// RFC 4513 §5.1.2: a name without a password is an unauthenticated
		// bind, which clients send by mistake believing they authenticated.
		return answer(resultUnwillingToPerform, "unauthenticated bind (a name without a password) is not allowed")
	case !ss.tls:
		// RFC 4513 §5.1.3 and §6.3.1: no password in clear text.
		return answer(resultConfidentialityRequired, "simple bind needs TLS: use ldaps:// or StartTLS")
	}
	dn, err := ParseDN(r.name)
	if err != nil {
		return answer(resultInvalidDNSyntax, err.Error())
	}
	n, err := ss.s.locate(dn)
	if err == nil && n.kind == "service" {
		return ss.serviceBind(ctx, n.name, string(r.credentials))
	}
	person := err == nil && n.kind == "user"
	if !person {
		// Only people have passwords; any other name is checked as typed,
		// with the same work and counters, and refused whatever the answer.
		n.name = r.name
	}
	u, wait, err := ss.s.opts.Passwords.CheckPassword(ctx, peer(ss.conn), "ldap", n.name, string(r.credentials))
	if err == nil && !person {
		err = authn.ErrSignInFailed
	}
	switch {
	case errors.Is(err, authn.ErrThrottled):
		return answer(resultUnwillingToPerform, fmt.Sprintf("too many attempts from this network; retry in %s", wait.Round(time.Second)))
	case errors.Is(err, authn.ErrPasswordChangeRequired):
		return answer(resultInvalidCredentials, "the password is a one-time password: change it at the platform's /account/password first")
	case errors.Is(err, authn.ErrSignInFailed):
		return answer(resultInvalidCredentials, "")
	case err != nil:
		ss.log.Error("ldap: bind", "err", err)
		return answer(resultOther, "the directory could not check the password; try again later")
	}
	admin, err := ss.s.opts.IsAdministrator(ctx, u.ID)
	if err != nil {
		ss.log.Error("ldap: bind", "err", err)
		return answer(resultOther, "the directory could not check the account; try again later")
	}
	ss.who = &principal{dn: ss.s.userDN(u.UserName), userID: u.ID, admin: admin}
	return answer(resultSuccess, "")
}

// serviceBind binds an application as its OAuth client, with the client's
// secret, checked as the token endpoint checks it and throttled as users'
// binds are. Only the clients ldap.serviceAccounts lists bind; a listed
// client reads the ous it grants, and writes nothing.
func (ss *session) serviceBind(ctx context.Context, clientID, secret string) *ber.Packet {
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opBindResponse, result{code: code, diagnostic: why})
	}
	ous, listed := ss.s.opts.ServiceAccounts[clientID]
	if ss.s.opts.ClientSecrets == nil {
		return answer(resultInvalidCredentials, "")
	}
	wait, err := ss.s.opts.ClientSecrets.CheckClientSecret(ctx, peer(ss.conn), clientID, secret)
	if err == nil && !listed {
		err = authn.ErrSignInFailed
	}
	switch {
	case errors.Is(err, authn.ErrThrottled):
		return answer(resultUnwillingToPerform, fmt.Sprintf("too many attempts from this network; retry in %s", wait.Round(time.Second)))
	case errors.Is(err, authn.ErrSignInFailed):
		return answer(resultInvalidCredentials, "")
	case err != nil:
		ss.log.Error("ldap: bind", "err", err)
		return answer(resultOther, "the directory could not check the secret; try again later")
	}
	reads := map[string]bool{}
	for _, ou := range ous {
		reads[ou] = true
	}
	ss.who = &principal{dn: ss.s.under(ouServices, "cn", clientID), service: clientID, reads: reads}
	return answer(resultSuccess, "")
}

// external serves SASL EXTERNAL (RFC 4422 Appendix A, RFC 4513 §5.2.3):
// the TLS client certificate says who the client is, through certauth.
// An authorization identity the client asks for must be the certificate's
// own thing: a thing cannot bind as another.
func (ss *session) external(ctx context.Context, r *bindRequest) *ber.Packet {
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opBindResponse, result{code: code, diagnostic: why})
	}
	tc, ok := ss.conn.(*tls.Conn)
	if !ok || len(tc.ConnectionState().PeerCertificates) == 0 {
		return answer(resultInappropriateAuthentication, "SASL EXTERNAL needs a TLS client certificate")
	}
	id, err := ss.s.opts.VerifyCertificate(ctx, tc.ConnectionState().PeerCertificates)
	if err != nil {
		return answer(resultInvalidCredentials, "the client certificate identifies no active thing")
	}
	dn := ss.s.thingDN(id)
	if want := string(r.credentials); want != "" {
		asked, err := ParseDN(strings.TrimPrefix(want, "dn:"))
		mine, _ := ParseDN(dn)
		if !strings.HasPrefix(want, "dn:") || err != nil || !asked.Equal(mine) {
			return answer(resultInvalidCredentials, "the authorization identity is not the certificate's thing")
		}
	}
	if r.name != "" {
		return answer(resultInvalidCredentials, "SASL EXTERNAL takes no name")
	}
	ss.who = &principal{dn: dn, thingID: id}
	return answer(resultSuccess, "")
}

// peer is the client's address.
func peer(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
