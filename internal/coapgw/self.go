package coapgw

import (
	"bytes"
	"encoding/json"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/thingid/thingid/internal/store"
)

// PathSelf is call home: the thing its session proves, the CoAP twin of
// GET /api/v1/things/self.
const PathSelf = "/self"

// selfView is what call home answers.
type selfView struct {
	ID           string `json:"id"`
	DisplayName  string `json:"displayName,omitempty"`
	SerialNumber string `json:"serialNumber,omitempty"`
	Model        string `json:"model,omitempty"`
	Status       string `json:"status"`
}

func serveSelf(w mux.ResponseWriter, r *mux.Message, s *Session) {
	switch {
	case s == nil:
		// Loopback UDP proves no identity; an empty answer, never larger
		// than the request.
		_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
	case r.Code() != codes.GET:
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.Content, message.AppJSON, bytes.NewReader(s.self))
	}
}

// selfOf is call home's answer for t, made once per session: the thing
// as it was at the handshake, as Session.Thing is.
func selfOf(t *store.Thing) []byte {
	// Strings only: encoding cannot fail.
	b, _ := json.Marshal(selfView{ID: t.ID, DisplayName: t.DisplayName, SerialNumber: t.SerialNumber, Model: t.Model, Status: string(t.Status)})
	return b
}
