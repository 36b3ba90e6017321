// Package tokens owns the platform's token-signing keys (generation, sealing at
// rest, rotation, the JWKS), the signing of access and ID tokens, and their
// verification by resource servers (signature, claims, sender binding and the
// revocation deny set).
//
// It must not touch OAuth flows, clients or grants: oauth decides what a token
// says and issues it here; gateway, broker and coapgw verify here and never
// import oauth. Both sides meet on the Claims type and the events bus.
package tokens
