package packet

import (
	"errors"
	"fmt"
)

// Error is a packet the server cannot accept, with the MQTT 5 reason code
// it answers with: in a DISCONNECT (or a CONNACK while connecting) for an
// MQTT 5 client, by closing the connection for an MQTT 3.1.1 client.
type Error struct {
	Code   ReasonCode
	Reason string // for the log and the MQTT 5 Reason String
}

func (e *Error) Error() string {
	return fmt.Sprintf("mqtt: %s (reason 0x%02x)", e.Reason, byte(e.Code))
}

// Is makes errors.Is(err, ErrMalformed) true for every malformed-packet
// error, whatever its text, and likewise for the other classes.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == "" && t.Code == e.Code
}

// The classes of decoding errors, for errors.Is.
var (
	ErrMalformed   = &Error{Code: MalformedPacket}
	ErrProtocol    = &Error{Code: ProtocolError}
	ErrTooLarge    = &Error{Code: PacketTooLarge}
	ErrTopicName   = &Error{Code: TopicNameInvalid}
	ErrUnsupported = &Error{Code: UnsupportedProtocolVersion}
)

func malformed(format string, a ...any) *Error {
	return &Error{Code: MalformedPacket, Reason: fmt.Sprintf(format, a...)}
}

func protocolErr(format string, a ...any) *Error {
	return &Error{Code: ProtocolError, Reason: fmt.Sprintf(format, a...)}
}

// ReasonOf is the reason code a server answers err with: the *Error's
// code, or Unspecified error for anything else.
func ReasonOf(err error) ReasonCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return UnspecifiedError
}
