package coapgw

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// ACECBOR is the CoAP Content-Format of application/ace+cbor (RFC 9200 §8.18).
const ACECBOR message.MediaType = 19

// maxEndpointBody bounds what an Endpoint reads of a request.
const maxEndpointBody = 16 << 10

// EndpointFunc answers a request body from the client of a DTLS session
// (its certificate chain, or its PSK identity and the thing that names)
// with a body and an HTTP status, as ACE's token and device authorization
// endpoints do (internal/ace).
type EndpointFunc func(ctx context.Context, body []byte, s *Session) ([]byte, int)

// Endpoint serves f as a POST resource of application/ace+cbor on DTLS
// sessions: a request without a session (loopback UDP) is 4.01, another
// method 4.05, another Content-Format 4.15; f's status becomes the CoAP code
// (200 → 2.01 Created, RFC 9200 §5.8.2; 4xx → 4.xx; others → 5.00).
func Endpoint(f EndpointFunc) Handler {
	return HandlerFunc(func(w mux.ResponseWriter, r *mux.Message, s *Session) {
		body, ok := readPost(w, r, s, maxEndpointBody)
		if !ok {
			return
		}
		if cf, err := r.ContentFormat(); err == nil && cf != ACECBOR {
			_ = w.SetResponse(codes.UnsupportedMediaType, message.TextPlain, bytes.NewReader([]byte("send application/ace+cbor (Content-Format 19)")))
			return
		} else if err != nil && !errors.Is(err, message.ErrOptionNotFound) {
			_ = w.SetResponse(codes.BadOption, message.TextPlain, nil)
			return
		}
		resp, status := f(r.Context(), body, s)
		_ = w.SetResponse(coapCode(status), ACECBOR, bytes.NewReader(resp))
	})
}

// readPost reads the body of a POST on a DTLS session, at most limit
// bytes; otherwise it answers (4.01 without a session, 4.05 for another
// method, 4.13 past limit, 4.00 for a body that cannot be read) and
// reports false.
func readPost(w mux.ResponseWriter, r *mux.Message, s *Session, limit int) ([]byte, bool) {
	switch {
	case s == nil:
		_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
		return nil, false
	case r.Code() != codes.POST:
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		return nil, false
	case r.Body() == nil:
		return nil, true
	}
	b, err := io.ReadAll(io.LimitReader(r.Body(), int64(limit)+1))
	switch {
	case err != nil:
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
		return nil, false
	case len(b) > limit:
		_ = w.SetResponse(codes.RequestEntityTooLarge, message.TextPlain, nil)
		return nil, false
	}
	return b, true
}

// coapCode is the CoAP response code of an HTTP status (RFC 8075 §7).
func coapCode(status int) codes.Code {
	switch status {
	case http.StatusOK, http.StatusCreated:
		return codes.Created
	case http.StatusBadRequest:
		return codes.BadRequest
	case http.StatusUnauthorized:
		return codes.Unauthorized
	case http.StatusForbidden:
		return codes.Forbidden
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusRequestEntityTooLarge:
		return codes.RequestEntityTooLarge
	case http.StatusTooManyRequests:
		return codes.TooManyRequests
	case http.StatusServiceUnavailable:
		return codes.ServiceUnavailable
	}
	return codes.InternalServerError
}
