package coapgw

import (
	"bytes"
	"encoding/json"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
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
	if s == nil {
		// Loopback UDP proves no identity; an empty answer, never larger
		// than the request.
		_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
		return
	}
	if r.Code() != codes.GET {
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		return
	}
	t := s.Thing
	b, err := json.Marshal(selfView{ID: t.ID, DisplayName: t.DisplayName, SerialNumber: t.SerialNumber, Model: t.Model, Status: string(t.Status)})
	if err != nil {
		_ = w.SetResponse(codes.InternalServerError, message.TextPlain, nil)
		return
	}
	_ = w.SetResponse(codes.Content, message.AppJSON, bytes.NewReader(b))
}
