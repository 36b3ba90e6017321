package ace

import (
	"github.com/fxamacker/cbor/v2"
)

// MediaType is the content type of ACE requests and answers (RFC 9200 §8.16).
const MediaType = "application/ace+cbor"

// maxMessage bounds a token request, an answer's input and a CWT before any
// decoding: a constrained client's request is a few hundred bytes.
const maxMessage = 4 << 10

// Abbreviations of the OAuth parameters in CBOR (RFC 9200 §8.10, Figure 12).
// RFC 8628's parameters have none and travel under their names.
const (
	paramAccessToken  = 1
	paramExpiresIn    = 2
	paramReqCnf       = 4
	paramAudience     = 5
	paramScope        = 9
	paramClientID     = 24
	paramClientSecret = 25
	paramError        = 30
	paramErrorDesc    = 31
	paramGrantType    = 33
	paramRefreshToken = 37
	paramACEProfile   = 38

	paramDeviceCode = "device_code"
)

// Grant types abbreviated in CBOR (RFC 9200 §8.5, Figure 11).
const (
	grantClientCredentials = 2
	grantRefreshToken      = 3
)

// profileCoAPDTLS is ace_profile "coap_dtls" (RFC 9202 §11.2).
const profileCoAPDTLS = 1

// decMode is strict: a duplicate map key (RFC 8949 §5.6: not well-formed
// for our purposes), indefinite lengths and tags are refused, and the
// nesting and sizes stay small.
var decMode = must(cbor.DecOptions{
	DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	IndefLength:      cbor.IndefLengthForbidden,
	TagsMd:           cbor.TagsForbidden,
	MaxNestedLevels:  8,
	MaxArrayElements: 64,
	MaxMapPairs:      64,
	UTF8:             cbor.UTF8RejectInvalid,
}.DecMode())

// encMode writes the deterministic encoding (RFC 8949 §4.2.1).
var encMode = must(cbor.CoreDetEncOptions().EncMode())

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
