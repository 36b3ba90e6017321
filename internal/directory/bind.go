package directory

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// bind serves a BindRequest (RFC 4511 §4.2, RFC 4513). Whatever its
// outcome, the session is anonymous until a bind succeeds (RFC 4511 §4.2.1).
func (ss *session) bind(r *bindRequest) *ber.Packet {
	ss.who = ""
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opBindResponse, result{code: code, diagnostic: why})
	}
	if r.version != 3 {
		return answer(resultProtocolError, "only LDAPv3 is served")
	}
	if r.sasl {
		return answer(resultAuthMethodNotSupported, "SASL mechanism "+r.mechanism+" is not supported")
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
	return answer(resultUnwillingToPerform, "password binds are not served yet")
}
