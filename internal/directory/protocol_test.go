package directory

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

func TestRootDSEWithGoLDAP(t *testing.T) {
	e := newEnv(t)
	for name, c := range map[string]*ldap.Conn{"ldaps": e.dialLDAPS(t), "starttls": e.dialStartTLS(t), "plain": e.dialPlain(t)} {
		t.Run(name, func(t *testing.T) {
			res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"namingContexts", "supportedExtension"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Entries) != 1 {
				t.Fatalf("%d entries, want the root DSE", len(res.Entries))
			}
			if got := res.Entries[0].GetAttributeValue("namingContexts"); got != "dc=thingid,dc=test" {
				t.Errorf("namingContexts = %q", got)
			}
			if got := res.Entries[0].GetAttributeValues("supportedExtension"); !strings.Contains(strings.Join(got, " "), oidStartTLS) || len(res.Entries[0].Attributes) != 2 {
				t.Errorf("entry %+v: want exactly the two attributes asked for, StartTLS among the extensions", res.Entries[0])
			}
		})
	}
}

func TestLdapsearchReadsRootDSE(t *testing.T) {
	e := newEnv(t)
	for _, args := range [][]string{
		{"-H", "ldaps://" + e.ldaps},
		{"-H", "ldap://" + e.plain, "-ZZ"},
	} {
		out, code := e.run(t, "ldapsearch", append(args, "-x", "-LLL", "-b", "", "-s", "base", "+")...)
		if code != 0 || !strings.Contains(out, "namingContexts: dc=thingid,dc=test") || !strings.Contains(out, "supportedLDAPVersion: 3") {
			t.Errorf("ldapsearch %v: exit %d\n%s", args, code, out)
		}
	}
	out, code := e.run(t, "ldapwhoami", "-x", "-H", "ldap://"+e.plain, "-ZZ")
	if code != 0 || strings.TrimSpace(out) != "anonymous" {
		t.Errorf("ldapwhoami: exit %d: %s", code, out)
	}
}

// A password must never cross the network in clear text: a simple bind on
// a plain connection is refused before the password is looked at.
func TestSimpleBindInClearTextIsRefused(t *testing.T) {
	e := newEnv(t)
	err := e.dialPlain(t).Bind("uid=alice,ou=people,dc=thingid,dc=test", "secret")
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultConfidentialityRequired) {
		t.Fatalf("bind in clear text: %v, want confidentialityRequired", err)
	}
	out, code := e.run(t, "ldapwhoami", "-x", "-H", "ldap://"+e.plain, "-D", "uid=alice,ou=people,dc=thingid,dc=test", "-w", "secret")
	if code != int(resultConfidentialityRequired) {
		t.Errorf("ldapwhoami in clear text: exit %d, want 13\n%s", code, out)
	}
}

// An unauthenticated bind (a name, no password; RFC 4513 §5.1.2) is refused
// and leaves the session anonymous: it never counts as authenticated.
func TestUnauthenticatedBindIsNotAuthenticated(t *testing.T) {
	e := newEnv(t)
	c := e.dialStartTLS(t)
	err := c.UnauthenticatedBind("uid=admin,ou=people,dc=thingid,dc=test")
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Fatalf("unauthenticated bind: %v, want unwillingToPerform", err)
	}
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "" {
		t.Fatalf("after the refused bind, who am I = %+v, %v; want anonymous", who, err)
	}
	res, err := c.Search(ldap.NewSearchRequest("dc=thingid,dc=test", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Fatalf("search of the tree after it: %v, %v; want insufficientAccessRights", res, err)
	}
}

func TestAnonymousSeesOnlyRootDSE(t *testing.T) {
	e := newEnv(t)
	out, code := e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-b", "dc=thingid,dc=test", "(uid=*)")
	if code != int(resultInsufficientAccessRights) {
		t.Errorf("anonymous subtree search: exit %d, want 50\n%s", code, out)
	}
}

// unknownControl is a control no server knows.
type unknownControl struct{ critical bool }

func (c unknownControl) GetControlType() string { return "1.3.6.1.4.1.99999.1" }
func (c unknownControl) Encode() *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Control")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, c.GetControlType(), "type"))
	p.AppendChild(ber.NewLDAPBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, c.critical, "criticality"))
	return p
}
func (c unknownControl) String() string { return c.GetControlType() }

// RFC 4511 §4.1.11: a critical control the server does not know fails the
// operation with unavailableCriticalExtension; a non-critical one is ignored.
func TestUnknownCriticalControl(t *testing.T) {
	e := newEnv(t)
	c := e.dialLDAPS(t)
	req := func(critical bool) *ldap.SearchRequest {
		return ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, []ldap.Control{unknownControl{critical}})
	}
	if _, err := c.Search(req(true)); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
		t.Errorf("critical unknown control: %v, want unavailableCriticalExtension", err)
	}
	if res, err := c.Search(req(false)); err != nil || len(res.Entries) != 1 {
		t.Errorf("non-critical unknown control: %v, %v; want the root DSE", res, err)
	}
	if _, err := c.WhoAmI(nil); err != nil { // the session goes on
		t.Fatal(err)
	}
	out, code := e.run(t, "ldapsearch", "-x", "-H", "ldaps://"+e.ldaps, "-b", "", "-s", "base", "-e", "!1.3.6.1.4.1.99999.1")
	if code != int(resultUnavailableCriticalExtension) {
		t.Errorf("ldapsearch with a critical unknown control: exit %d, want 12\n%s", code, out)
	}
}

func TestStartTLSTwiceIsRefused(t *testing.T) {
	e := newEnv(t)
	c := e.dialStartTLS(t)
	if err := c.StartTLS(e.clientTL); err == nil {
		t.Fatal("second StartTLS accepted")
	}
	// go-ldap refuses to ask on LDAPS; the server refuses too.
	tc, err := tls.Dial("tcp", e.ldaps, e.clientTL)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write(envelope(1, startTLSRequest()))
	p, err := ber.ReadPacket(tc)
	if err != nil {
		t.Fatal(err)
	}
	if code := resultCode(p.Children[1].Children[0].Value.(int64)); code != resultOperationsError {
		t.Fatalf("StartTLS on LDAPS: code %d, want operationsError", code)
	}
}

func startTLSRequest() *ber.Packet {
	x := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opExtendedRequest, nil, "extended")
	x.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oidStartTLS, "name"))
	return x
}

// rawConn is a TCP connection to the plain listener for bytes no client sends.
func (e *testEnv) rawConn(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// expectDisconnection reads from c until the server closes it, and wants a
// Notice of Disconnection with code before the end.
func expectDisconnection(t *testing.T, c net.Conn, code resultCode) {
	t.Helper()
	p, err := ber.ReadPacket(bufio.NewReader(c))
	if err != nil {
		t.Fatalf("reading the notice: %v", err)
	}
	if len(p.Children) < 2 || p.Children[0].Value.(int64) != 0 || p.Children[1].Tag != opExtendedResponse {
		t.Fatalf("not an unsolicited notification: %s", ber.DescribePacket(p))
	}
	r := p.Children[1].Children
	if got := resultCode(r[0].Value.(int64)); got != code || len(r) < 4 || r[3].Data.String() != oidNoticeOfDisconnection {
		t.Fatalf("notice: code %d, want %d: %s", got, code, ber.DescribePacket(p))
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the notice: %v, want the end of the connection", err)
	}
}

// searchMessage encodes a search of the root DSE with filter f.
func searchMessage(f *ber.Packet) []byte {
	s := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opSearchRequest, nil, "search")
	s.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "base"))
	s.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "scope"))
	s.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "deref"))
	s.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "size"))
	s.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "time"))
	s.AppendChild(ber.NewLDAPBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, false, "typesOnly"))
	s.AppendChild(f)
	s.AppendChild(ber.NewSequence("attributes"))
	return envelope(1, s)
}

func present(attr string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, ber.Tag(filterPresent), attr, "present")
}

// nested wraps f in n nots.
func nested(f *ber.Packet, n int) *ber.Packet {
	for range n {
		not := ber.Encode(ber.ClassContext, ber.TypeConstructed, ber.Tag(filterNot), nil, "not")
		not.AppendChild(f)
		f = not
	}
	return f
}

// Bytes that are not LDAP end the session with a Notice of Disconnection
// (protocolError), never a crash or a session that goes on.
func TestMalformedMessagesEndTheSession(t *testing.T) {
	e := newEnv(t, withLimits(Limits{MaxMessageBytes: 4096, IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second, SizeLimit: 100, TimeLimit: time.Minute}))
	cases := map[string][]byte{
		"not a sequence":           []byte("GET / HTTP/1.1\r\n\r\n"),
		"indefinite length":        {0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00},
		"huge length":              {0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01},
		"length of 9 bytes":        {0x30, 0x89, 1, 2, 3, 4, 5, 6, 7, 8, 9},
		"over the message size":    append([]byte{0x30, 0x82, 0x10, 0x00}, make([]byte, 16)...),
		"child longer than parent": {0x30, 0x05, 0x02, 0x09, 0x01, 0x00, 0x00},
		"messageID negative":       {0x30, 0x05, 0x02, 0x01, 0xff, 0x42, 0x00},
		"not a request":            {0x30, 0x05, 0x02, 0x01, 0x01, 0x41, 0x00},
		"filter nested too deep":   searchMessage(nested(present("objectClass"), maxFilterDepth+1)),
		"BER nested 100 deep":      searchMessage(nested(present("objectClass"), 100)),
		"substring final first": searchMessage(func() *ber.Packet {
			f := ber.Encode(ber.ClassContext, ber.TypeConstructed, ber.Tag(filterSubstrings), nil, "substrings")
			f.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "cn", "type"))
			subs := ber.NewSequence("subs")
			subs.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 2, "x", "final"))
			subs.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "y", "initial"))
			f.AppendChild(subs)
			return f
		}()),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			c := e.rawConn(t)
			c.Write(b)
			expectDisconnection(t, c, resultProtocolError)
		})
	}
	// A filter at the limit is served: 32 nots of TRUE are TRUE.
	c := e.rawConn(t)
	c.Write(searchMessage(nested(present("objectClass"), maxFilterDepth)))
	for _, want := range []ber.Tag{opSearchEntry, opSearchDone} {
		p, err := ber.ReadPacket(c)
		if err != nil || p.Children[1].Tag != want {
			t.Fatalf("filter at the depth limit: %v %v, want operation %d", err, p, want)
		}
	}
}

func TestIdleSessionIsClosed(t *testing.T) {
	e := newEnv(t, withLimits(Limits{MaxMessageBytes: 4096, IdleTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond, SizeLimit: 100, TimeLimit: time.Minute}))
	expectDisconnection(t, e.rawConn(t), resultUnavailable)
	// A message begun and never finished is not a way around it.
	c := e.rawConn(t)
	c.Write([]byte{0x30, 0x10, 0x02})
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("half a message: %v, want the connection closed", err)
	}
}

// Bytes sent after StartTLS's request and before its answer would be taken
// as protected by TLS: the session ends instead.
func TestDataAfterStartTLSRequest(t *testing.T) {
	e := newEnv(t)
	c := e.rawConn(t)
	c.Write(append(envelope(1, startTLSRequest()), searchMessage(present("objectClass"))...))
	expectDisconnection(t, c, resultProtocolError)
}

// A flood of unauthenticated connections from one address stops at the
// listener's per-address cap; connections beyond it are closed at once.
func TestConnectionFloodIsCapped(t *testing.T) {
	const perAddress = 4
	e := newEnv(t, withPerAddress(perAddress))
	var held []net.Conn
	for range perAddress {
		c := e.rawConn(t)
		held = append(held, c)
	}
	// The held ones are served...
	for _, c := range held {
		c.Write(searchMessage(present("objectClass")))
		if _, err := ber.ReadPacket(c); err != nil {
			t.Fatalf("a connection within the cap: %v", err)
		}
	}
	// ...and the next one is closed without a byte.
	c := e.rawConn(t)
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("connection over the cap: read %d, %v; want it closed", n, err)
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }
