// Package ace is OAuth for constrained environments (ACE, RFC 9200) with the
// DTLS profile (RFC 9202): the token endpoint for CBOR requests, access
// tokens as CWTs (RFC 8392) COSE-signed with the platform's signing keys and
// bound to the client's DTLS key (RFC 8747), and the resource server's
// /authz-info. It owns the CBOR and COSE encodings; it must not decide who
// gets which scopes (that is the authorization server's, reached through
// AuthorizationServer) nor keep a revocation list of its own (Revocations).
//
// It records every CWT it issues and every revocation by cti in the audit
// log, which is also the list of a thing's CWTs an administrator revokes
// from (IssuedCWTs, RevokeIssued).
//
// It serves no transport of its own but HTTPS (Register: POST /ace/token,
// /ace/device_authorization, /ace/revoke and /ace/introspect,
// application/ace+cbor, the client's identity from mutual TLS, and RFC
// 7662's form at /ace/introspect; RegisterAdmin: a thing's CWTs for
// administrators). A CoAP gateway mounts the same functions:
//
//	resp, status := srv.Token(ctx, payload, ace.Identity{Chain: dtlsChain})
//	resp, status := srv.DeviceAuthorization(ctx, payload, identity)
//	access, err := srv.AuthzInfo(ctx, payload, ace.Identity{PSK: pskIdentity})
//
// Token and DeviceAuthorization answer a CBOR body and an HTTP status: 200
// is CoAP 2.01 Created (RFC 9200 §5.8.2), 400 is 4.00, 401 is 4.01 and 500
// is 5.00. AuthzInfo returns an *Error whose Status is 400 or 401 (RFC 9200
// §5.10.1.1) when it refuses a token.
package ace
