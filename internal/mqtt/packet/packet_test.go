package packet

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// raw builds a packet from its first byte and its body in hex (spaces and
// quoted ASCII allowed: `00 04 "MQTT"`), with the remaining length computed.
func raw(t testing.TB, first byte, body string) []byte {
	t.Helper()
	b := hexBody(t, body)
	return append(appendVarint([]byte{first}, len(b)), b...)
}

func hexBody(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for i, part := range strings.Split(s, `"`) {
		if i%2 == 1 {
			out = append(out, part...)
			continue
		}
		b, err := hex.DecodeString(strings.ReplaceAll(part, " ", ""))
		if err != nil {
			t.Fatalf("bad hex %q: %v", part, err)
		}
		out = append(out, b...)
	}
	return out
}

// first is the version read passes for the first packet of a connection.
const first Version = 0

// read decodes one packet from b as a connection would: the header, then
// exactly the body it announces (less when b is truncated); a CONNECT
// with DecodeConnect when v is first.
func read(v Version, b []byte, maxSize int) (Packet, error) {
	r := bytes.NewReader(b)
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	body := make([]byte, min(h.Remaining, r.Len()))
	io.ReadFull(r, body)
	if v == first {
		c, err := DecodeConnect(h, body, maxSize)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return Decode(v, h, body, maxSize)
}

const connect311 = `00 04 "MQTT" 04 02 00 3c 00 03 "abc"`

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v     Version
		first byte
		body  string
		max   int
		want  error
	}{
		// §2.1.2, §2.1.3: reserved type and fixed-header flags.
		{"reserved type 0", V5, 0x00, ``, 0, ErrMalformed},
		{"AUTH in 3.1.1", V311, 0xF0, ``, 0, ErrMalformed},
		{"PUBREL flags 0000", V5, 0x60, `00 01`, 0, ErrMalformed},
		{"SUBSCRIBE flags 0000", V311, 0x80, `00 01 00 01 "a" 00`, 0, ErrMalformed},
		{"UNSUBSCRIBE flags 0011", V311, 0xA3, `00 01 00 01 "a"`, 0, ErrMalformed},
		{"PINGREQ flags 0001", V311, 0xC1, ``, 0, ErrMalformed},
		{"PUBLISH QoS 3", V311, 0x36, `00 01 "a" 00 01`, 0, ErrMalformed},
		{"PUBLISH DUP on QoS 0", V311, 0x38, `00 01 "a"`, 0, ErrMalformed},
		// §1.5.4: UTF-8 strings.
		{"topic not UTF-8", V311, 0x30, `00 03 61 ff 62`, 0, ErrMalformed},
		{"topic with U+0000", V311, 0x30, `00 03 61 00 62`, 0, ErrMalformed},
		{"topic with a surrogate", V5, 0x30, `00 03 ed a0 80 00`, 0, ErrMalformed},
		{"client id with U+0000", first, 0x10, `00 04 "MQTT" 04 02 00 3c 00 01 00`, 0, ErrMalformed},
		{"filter not UTF-8", V311, 0x82, `00 01 00 01 c0 00`, 0, ErrMalformed},
		// §3.3.2.1, §4.7.3: topic names.
		{"topic with a wildcard", V5, 0x30, `00 03 "a/#" 00`, 0, ErrTopicName},
		{"empty topic in 3.1.1", V311, 0x30, `00 00 "x"`, 0, ErrProtocol},
		{"empty topic without alias", V5, 0x30, `00 00 00 "x"`, 0, ErrProtocol},
		// §2.2.1: packet identifiers.
		{"QoS 1 packet id 0", V311, 0x32, `00 01 "a" 00 00`, 0, ErrProtocol},
		{"PUBACK packet id 0", V5, 0x40, `00 00`, 0, ErrProtocol},
		{"SUBSCRIBE packet id 0", V5, 0x82, `00 00 00 00 01 "a" 00`, 0, ErrProtocol},
		// §2.2.2: properties.
		{"duplicate Message Expiry", V5, 0x30, `00 01 "a" 0a 02 00 00 00 01 02 00 00 00 02`, 0, ErrProtocol},
		{"duplicate Content Type in will", first, 0x10, `00 04 "MQTT" 05 06 00 00 00 00 01 "c" 08 03 00 01 "x" 03 00 01 "y" 00 01 "t" 00 00`, 0, ErrProtocol},
		{"Session Expiry on PUBLISH", V5, 0x30, `00 01 "a" 05 11 00 00 00 01`, 0, ErrMalformed},
		{"Will Delay on CONNECT", first, 0x10, `00 04 "MQTT" 05 02 00 00 05 18 00 00 00 01 00 01 "c"`, 0, ErrMalformed},
		{"unknown property", V5, 0x30, `00 01 "a" 02 7f 00`, 0, ErrMalformed},
		{"property length past the end", V5, 0x30, `00 01 "a" 09 02 00`, 0, ErrMalformed},
		{"property value past its list", V5, 0x30, `00 01 "a" 02 02 00 00 00 00`, 0, ErrMalformed},
		{"Receive Maximum 0", first, 0x10, `00 04 "MQTT" 05 02 00 00 03 21 00 00 00 01 "c"`, 0, ErrProtocol},
		{"Maximum Packet Size 0", first, 0x10, `00 04 "MQTT" 05 02 00 00 05 27 00 00 00 00 00 01 "c"`, 0, ErrProtocol},
		{"Request Problem Information 2", first, 0x10, `00 04 "MQTT" 05 02 00 00 02 17 02 00 01 "c"`, 0, ErrProtocol},
		{"Payload Format 2", V5, 0x30, `00 01 "a" 02 01 02`, 0, ErrProtocol},
		{"Topic Alias 0", V5, 0x30, `00 01 "a" 03 23 00 00`, 0, &Error{Code: TopicAliasInvalid}},
		{"two Subscription Identifiers on SUBSCRIBE", V5, 0x82, `00 01 04 0b 01 0b 02 00 01 "a" 00`, 0, ErrProtocol},
		{"Subscription Identifier 0", V5, 0x82, `00 01 02 0b 00 00 01 "a" 00`, 0, ErrProtocol},
		{"Authentication Data without Method", first, 0x10, `00 04 "MQTT" 05 02 00 00 04 16 00 01 78 00 01 "c"`, 0, ErrProtocol},
		{"user property without its value", V5, 0x30, `00 01 "a" 04 26 00 01 "k"`, 0, ErrMalformed},
		// §3.1.2: CONNECT.
		{"reserved connect flag", first, 0x10, `00 04 "MQTT" 04 03 00 3c 00 01 "c"`, 0, ErrMalformed},
		{"Will QoS 3", first, 0x10, `00 04 "MQTT" 04 1e 00 3c 00 01 "c" 00 01 "t" 00 00`, 0, ErrMalformed},
		{"Will Retain without will", first, 0x10, `00 04 "MQTT" 04 22 00 3c 00 01 "c"`, 0, ErrMalformed},
		{"password without user name in 3.1.1", first, 0x10, `00 04 "MQTT" 04 42 00 3c 00 01 "c" 00 01 "p"`, 0, ErrMalformed},
		{"protocol name MQTX", first, 0x10, `00 04 "MQTX" 04 02 00 3c 00 01 "c"`, 0, ErrMalformed},
		{"will topic with a wildcard", first, 0x10, `00 04 "MQTT" 04 06 00 3c 00 01 "c" 00 01 "+" 00 00`, 0, ErrTopicName},
		{"CONNECT past its end", first, 0x10, `00 04 "MQTT" 04 02 00 3c 00 05 "c"`, 0, ErrMalformed},
		{"bytes after CONNECT", first, 0x10, connect311 + ` 00`, 0, ErrMalformed},
		// §3.1.0: a second CONNECT.
		{"second CONNECT", V311, 0x10, connect311, 0, ErrProtocol},
		// §3.8.3: SUBSCRIBE.
		{"SUBSCRIBE without filters", V311, 0x82, `00 01`, 0, ErrProtocol},
		{"3.1.1 subscription option bit 2", V311, 0x82, `00 01 00 01 "a" 04`, 0, ErrMalformed},
		{"subscription QoS 3", V5, 0x82, `00 01 00 00 01 "a" 03`, 0, ErrMalformed},
		{"Retain Handling 3", V5, 0x82, `00 01 00 00 01 "a" 30`, 0, ErrProtocol},
		{"reserved subscription option bit 6", V5, 0x82, `00 01 00 00 01 "a" 40`, 0, ErrMalformed},
		{"filter without options", V5, 0x82, `00 01 00 00 01 "a"`, 0, ErrMalformed},
		{"UNSUBSCRIBE without filters", V5, 0xA2, `00 01 00`, 0, ErrProtocol},
		// Acknowledgements and the rest.
		{"PUBACK with a body in 3.1.1", V311, 0x40, `00 01 00`, 0, ErrMalformed},
		{"PUBACK reason 0x05", V5, 0x40, `00 01 05`, 0, ErrMalformed},
		{"PUBREL reason 0x10", V5, 0x62, `00 01 10`, 0, ErrMalformed},
		{"PUBREL with User Property and no value", V5, 0x62, `00 01 00 03 26 00 01`, 0, ErrMalformed},
		{"PINGREQ with a body", V311, 0xC0, `00`, 0, ErrMalformed},
		{"DISCONNECT with a body in 3.1.1", V311, 0xE0, `00`, 0, ErrMalformed},
		{"DISCONNECT reason 0x05", V5, 0xE0, `05`, 0, ErrMalformed},
		{"AUTH reason 0x80", V5, 0xF0, `80 00`, 0, ErrMalformed},
		{"SUBACK 3.1.1 code 0x03", V311, 0x90, `00 01 03`, 0, ErrMalformed},
		{"CONNACK reserved flag", V311, 0x20, `02 00`, 0, ErrMalformed},
		{"CONNACK return code 6", V311, 0x20, `00 06`, 0, ErrMalformed},
		{"CONNACK session present with a refusal", V5, 0x20, `01 87 00`, 0, ErrProtocol},
		// §3.2.2.3.6: Maximum Packet Size, refused before the body is read.
		{"over the maximum packet size", V5, 0x30, `00 01 "a" 00 "0123456789"`, 10, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := read(tc.v, raw(t, tc.first, tc.body), tc.max)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decoded %+v, %v; want %v", p, err, tc.want)
			}
			if ReasonOf(err) != tc.want.(*Error).Code {
				t.Fatalf("reason %#x, want %#x", ReasonOf(err), tc.want.(*Error).Code)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want int
		err  error
	}{
		{"one byte", "30 7f", 127, nil},
		{"two bytes", "30 80 01", 128, nil},
		{"largest", "30 ff ff ff 7f", MaxRemaining, nil},
		{"five bytes", "30 ff ff ff ff 01", 0, ErrMalformed},
		{"not shortest", "30 80 00", 0, ErrMalformed},
		{"truncated", "30 80", 0, io.ErrUnexpectedEOF},
		{"empty", "", 0, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := hexBody(t, tc.in)
			h, err := ReadHeader(bufio.NewReader(bytes.NewReader(in)))
			if !errors.Is(err, tc.err) || (err == nil && h.Remaining != tc.want) {
				t.Fatalf("got %+v, %v; want %d, %v", h, err, tc.want, tc.err)
			}
			// ParseHeader agrees, with EOF as a partial header.
			ph, n, perr := ParseHeader(in)
			if tc.err == io.EOF {
				tc.err = io.ErrUnexpectedEOF
			}
			if !errors.Is(perr, tc.err) || (perr == nil && (ph != h || n != len(in))) {
				t.Fatalf("ParseHeader: %+v, %d, %v", ph, n, perr)
			}
		})
	}
}

// TestConnectVersion: a server answers an unsupported level, or a malformed
// CONNECT, in the CONNACK form the client reads (MQTT 5 §3.1.2.2, 3.1.1
// §3.1.2.2), so the version comes back with the error.
func TestConnectVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Version
		err  error
	}{
		{"MQTT 3.1", `00 06 "MQIsdp" 03 02 00 3c 00 01 "c"`, V311, ErrUnsupported},
		{"level 6", `00 04 "MQTT" 06 02 00 3c 00 01 "c"`, V5, ErrUnsupported},
		{"malformed MQTT 5", `00 04 "MQTT" 05 03 00 3c 00 00 01 "c"`, V5, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := raw(t, 0x10, tc.body)
			h, _ := ReadHeader(bytes.NewReader(b))
			c, err := DecodeConnect(h, b[2:], 0)
			if !errors.Is(err, tc.err) || c == nil || c.Version != tc.want {
				t.Fatalf("got %+v, %v; want version %d, %v", c, err, tc.want, tc.err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v     Version
		first byte
		body  string
		want  Packet
	}{
		{"3.1.1 CONNECT", first, 0x10, connect311, &Connect{Version: V311, CleanStart: true, KeepAlive: 60, ClientID: "abc"}},
		{"MQTT 5 CONNECT with will and credentials", first, 0x10,
			`00 04 "MQTT" 05 ee 00 0a 05 11 00 00 00 78 00 01 "c" 05 18 00 00 00 05 00 01 "w" 00 02 "hi" 00 01 "u" 00 01 "p"`,
			&Connect{Version: V5, CleanStart: true, KeepAlive: 10,
				Props:        Properties{Present: 1 << PropSessionExpiry, SessionExpiry: 120},
				ClientID:     "c",
				Will:         &Will{QoS: 1, Retain: true, Props: Properties{Present: 1 << PropWillDelay, WillDelay: 5}, Topic: "w", Payload: []byte("hi")},
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")}},
		{"MQTT 5 password without user name", first, 0x10, `00 04 "MQTT" 05 42 00 00 00 00 01 "c" 00 01 "p"`,
			&Connect{Version: V5, CleanStart: true, ClientID: "c", PasswordFlag: true, Password: []byte("p")}},
		{"PUBLISH with user properties in order", V5, 0x3b, `00 01 "a" 12 34 0e 26 00 01 "k" 00 01 "1" 26 00 01 "k" 00 01 "2" "data"`,
			&Publish{Dup: true, QoS: 1, Retain: true, Topic: "a", PacketID: 0x1234,
				Props:   Properties{User: []UserProperty{{"k", "1"}, {"k", "2"}}},
				Payload: []byte("data")}},
		{"PUBLISH to a client with two subscription ids", V5, 0x30, `00 01 "a" 05 0b 01 0b 80 01`,
			&Publish{Topic: "a", Props: Properties{SubscriptionIDs: []int{1, 128}}, Payload: []byte{}}},
		{"PUBLISH with an alias and no topic", V5, 0x30, `00 00 03 23 00 07`,
			&Publish{Props: Properties{Present: 1 << PropTopicAlias, TopicAlias: 7}, Payload: []byte{}}},
		{"PUBACK short form", V5, 0x40, `00 07`, &Ack{Kind: PUBACK, PacketID: 7}},
		{"PUBREC with a reason", V5, 0x50, `00 07 10`, &Ack{Kind: PUBREC, PacketID: 7, Code: NoMatchingSubscribers}},
		{"PUBCOMP with an empty property list", V5, 0x70, `00 07 92 00`, &Ack{Kind: PUBCOMP, PacketID: 7, Code: PacketIdentifierNotFound}},
		{"SUBSCRIBE options", V5, 0x82, `00 02 02 0b 05 00 03 "a/+" 2e 00 01 "#" 00`,
			&Subscribe{PacketID: 2, Props: Properties{SubscriptionIDs: []int{5}}, Filters: []Subscription{
				{Filter: "a/+", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, {Filter: "#"}}}},
		{"3.1.1 SUBACK", V311, 0x90, `00 02 00 01 02 80`, &SubAck{Kind: SUBACK, PacketID: 2, Codes: []ReasonCode{0, 1, 2, 0x80}}},
		{"3.1.1 UNSUBACK", V311, 0xB0, `00 02`, &SubAck{Kind: UNSUBACK, PacketID: 2}},
		{"3.1.1 CONNACK refused", V311, 0x20, `00 05`, &Connack{Code: NotAuthorized}},
		{"DISCONNECT short form", V5, 0xE0, ``, &Disconnect{}},
		{"DISCONNECT with will", V5, 0xE0, `04`, &Disconnect{Code: DisconnectWithWill}},
		{"AUTH continue", V5, 0xF0, `18 05 15 00 02 "sc"`,
			&Auth{Code: ContinueAuthentication, Props: Properties{Present: 1 << PropAuthMethod, AuthMethod: "sc"}}},
		{"PINGREQ", V311, 0xC0, ``, &Ping{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := read(tc.v, raw(t, tc.first, tc.body), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, tc.want) {
				t.Fatalf("decoded\n %#v\nwant\n %#v", p, tc.want)
			}
		})
	}
}

// TestEncode pins the bytes a server sends for the cases the issue names:
// acknowledgements never echo a publisher's properties and use the short
// forms, and 3.1.1 gets its own return codes.
func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    Version
		p    Packet
		want string
	}{
		{"PUBACK success", V5, &Ack{Kind: PUBACK, PacketID: 1}, "40 02 00 01"},
		{"PUBACK no subscribers", V5, &Ack{Kind: PUBACK, PacketID: 1, Code: NoMatchingSubscribers}, "40 03 00 01 10"},
		{"PUBACK in 3.1.1", V311, &Ack{Kind: PUBACK, PacketID: 1, Code: NoMatchingSubscribers}, "40 02 00 01"},
		{"PUBREL", V5, &Ack{Kind: PUBREL, PacketID: 1}, "62 02 00 01"},
		{"DISCONNECT malformed", V5, &Disconnect{Code: MalformedPacket}, "e0 01 81"},
		{"DISCONNECT with a reason string", V5, &Disconnect{Code: PacketTooLarge, Props: Properties{Present: 1 << PropReasonString, ReasonString: "big"}},
			`e0 08 95 06 1f 00 03 "big"`},
		{"3.1.1 CONNACK bad credentials", V311, &Connack{Code: BadAuthenticationMethod}, "20 02 00 04"},
		{"3.1.1 CONNACK banned", V311, &Connack{Code: Banned}, "20 02 00 05"},
		{"3.1.1 CONNACK quota", V311, &Connack{Code: QuotaExceeded}, "20 02 00 03"},
		{"MQTT 5 CONNACK with Server Keep Alive", V5, &Connack{SessionPresent: true, Props: Properties{Present: 1 << PropServerKeepAlive, ServerKeepAlive: 30}},
			"20 06 01 00 03 13 00 1e"},
		{"3.1.1 SUBACK refusal", V311, &SubAck{Kind: SUBACK, PacketID: 9, Codes: []ReasonCode{GrantedQoS1, NotAuthorized}}, "90 04 00 09 01 80"},
		{"MQTT 5 SUBACK refusal", V5, &SubAck{Kind: SUBACK, PacketID: 9, Codes: []ReasonCode{NotAuthorized}}, "90 04 00 09 00 87"},
		{"3.1.1 UNSUBACK", V311, &SubAck{Kind: UNSUBACK, PacketID: 9, Codes: []ReasonCode{Success}}, "b0 02 00 09"},
		{"PINGRESP", V311, &Ping{Response: true}, "d0 00"},
		{"QoS 0 PUBLISH", V311, &Publish{Topic: "a/b", Payload: []byte("x")}, `30 06 00 03 "a/bx"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Append(nil, tc.v, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			if want := hexBody(t, tc.want); !bytes.Equal(got, want) {
				t.Fatalf("encoded % x, want % x", got, want)
			}
			if Size(tc.v, tc.p) != len(got) {
				t.Fatalf("Size %d, encoded %d bytes", Size(tc.v, tc.p), len(got))
			}
		})
	}
}

func TestEncodeRefusesLongField(t *testing.T) {
	b := []byte("kept")
	out, err := Append(b, V5, &Publish{Topic: strings.Repeat("a", 70_000)})
	if !errors.Is(err, ErrTooLarge) || string(out) != "kept" {
		t.Fatalf("got %q, %v", out, err)
	}
}

func TestStrip(t *testing.T) {
	a := &Ack{Kind: PUBACK, PacketID: 1, Code: QuotaExceeded, Props: Properties{Present: 1 << PropReasonString, ReasonString: "full", User: []UserProperty{{"a", "b"}}}}
	a.Props.Strip()
	if got, _ := Append(nil, V5, a); !bytes.Equal(got, hexBody(t, "40 03 00 01 97")) {
		t.Fatalf("stripped PUBACK % x", got)
	}
}

func TestBufferPool(t *testing.T) {
	b := GetBuffer(100_000)
	if cap(*b) < 100_000 || len(*b) != 0 {
		t.Fatalf("buffer len %d cap %d", len(*b), cap(*b))
	}
	PutBuffer(b) // too large to keep: dropped, not an error
	s := GetBuffer(10)
	*s = append(*s, 1)
	PutBuffer(s)
	if s2 := GetBuffer(10); len(*s2) != 0 {
		t.Fatalf("reused buffer not emptied: %d", len(*s2))
	}
}
