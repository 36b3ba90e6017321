package coapgw

import (
	"bytes"
	"context"
	"errors"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// PathMQTT is where things post telemetry: POST /mqtt/TOPIC publishes the
// body on the broker's topic TOPIC (the rest of the path).
const PathMQTT = "/mqtt"

// Refusals a Publisher returns (wrapped) for what the thing did wrong.
var (
	ErrBadTopic  = errors.New("not an MQTT topic name")
	ErrForbidden = errors.New("the thing may not publish to this topic")
	ErrInactive  = errors.New("the thing is disabled or gone")
)

// Publisher publishes a message for a thing authenticated by its DTLS
// certificate (cert: the hex SHA-256 of its DER) under the broker's topic
// rules for that thing: the broker. qos is 1 for a confirmable request, 0
// for a non-confirmable one.
type Publisher interface {
	PublishAsThing(ctx context.Context, thing, cert, topic string, payload []byte, qos byte, contentType string) error
}

// contentTypes names the Content-Formats a posted message commonly has, as
// the MQTT 5 content type subscribers see.
var contentTypes = map[message.MediaType]string{
	message.TextPlain: "text/plain;charset=utf-8",
	message.AppJSON:   "application/json",
	message.AppCBOR:   "application/cbor",
	message.AppOctets: "application/octet-stream",
}

// publishHandler serves POST /mqtt/TOPIC: 2.04 Changed once published;
// 4.00 for a path that is no topic name, 4.03 outside the thing's rules,
// 4.01 without a DTLS identity or for a thing no longer active, 4.13 past
// maxBody bytes.
func publishHandler(p Publisher, maxBody int) Handler {
	return HandlerFunc(func(w mux.ResponseWriter, r *mux.Message, s *Session) {
		payload, ok := readPost(w, r, s, maxBody)
		if !ok {
			return
		}
		topic, err := topicOf(r)
		if err != nil {
			_ = w.SetResponse(codes.BadOption, message.TextPlain, nil)
			return
		}
		qos := byte(0)
		if r.Type() == message.Confirmable {
			qos = 1
		}
		var ct string
		if cf, err := r.ContentFormat(); err == nil {
			ct = contentTypes[cf]
		}
		err = p.PublishAsThing(r.Context(), s.Thing.ID, s.Fingerprint, topic, payload, qos, ct)
		switch {
		case err == nil:
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case errors.Is(err, ErrBadTopic):
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, bytes.NewReader([]byte("the path after /mqtt/ is not an MQTT topic name")))
		case errors.Is(err, ErrForbidden):
			_ = w.SetResponse(codes.Forbidden, message.TextPlain, bytes.NewReader([]byte("this thing may not publish to "+topic)))
		case errors.Is(err, ErrInactive):
			_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
		default:
			_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, nil)
		}
	})
}

// topicOf is the broker topic a request to /mqtt/TOPIC names.
func topicOf(r *mux.Message) (string, error) {
	path, err := r.Path()
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(strings.TrimPrefix(path, "/"), strings.TrimPrefix(PathMQTT, "/")+"/"), nil
}
