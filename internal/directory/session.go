package directory

import (
	"bufio"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// session is one client connection, served one operation at a time (RFC
// 4511 §4.1.1 lets a server answer in any order; answering in order makes
// StartTLS's "no outstanding operation" rule hold by construction).
type session struct {
	s    *Server
	conn net.Conn
	r    *bufio.Reader
	// w holds an operation's responses until it is answered (flush): a
	// search's entry and its SearchResultDone leave in one TLS record and
	// one system call, a page of entries in a few.
	w   *bufio.Writer
	tls bool       // the connection is TLS (LDAPS or after StartTLS)
	who *principal // nil: anonymous
	// pages are the paged searches this session may continue, by cookie.
	pages   map[string]*pageState
	pageSeq uint64
	op      operation // what the operation being answered did so far
	log     *slog.Logger
}

func newSession(s *Server, c net.Conn, ldaps bool) *session {
	return &session{s: s, conn: c, tls: ldaps, log: s.log.With("remote", c.RemoteAddr().String())}
}

func (ss *session) serve() {
	lim := ss.s.opts.Limits
	if ss.tls {
		tc := tls.Server(ss.conn, ss.s.opts.TLS)
		ss.conn.SetDeadline(time.Now().Add(lim.ReadTimeout))
		if err := tc.Handshake(); err != nil {
			return
		}
		ss.conn = tc
	}
	ss.r, ss.w = bufio.NewReader(ss.conn), bufio.NewWriter(ss.conn)
	for {
		ss.conn.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
		if _, err := ss.r.Peek(1); err != nil {
			if isTimeout(err) {
				ss.write(noticeOfDisconnection(resultUnavailable, "idle for too long"))
				ss.flush()
			}
			return
		}
		ss.conn.SetReadDeadline(time.Now().Add(lim.ReadTimeout))
		b, err := readMessage(ss.r, lim.MaxMessageBytes)
		if err == nil {
			var m *message
			if m, err = decodeMessage(b); err == nil {
				if ok := ss.handle(m); !ss.flush() || !ok {
					return
				}
				continue
			}
		}
		if errors.Is(err, errFraming) {
			ss.log.Info("ldap: protocol error, session ended", "err", err)
			ss.write(noticeOfDisconnection(resultProtocolError, err.Error()))
			ss.flush()
		}
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// write queues one encoded message, sending what is queued first when it
// does not fit, within the read timeout; false when the connection failed.
func (ss *session) write(b []byte) bool {
	if len(b) > ss.w.Available() {
		ss.conn.SetWriteDeadline(time.Now().Add(ss.s.opts.Limits.ReadTimeout))
	}
	_, err := ss.w.Write(b)
	return err == nil
}

// flush sends what is queued within the read timeout; false when the
// connection failed.
func (ss *session) flush() bool {
	if ss.w.Buffered() == 0 {
		return ss.w.Flush() == nil // the error of an earlier write, if any
	}
	ss.conn.SetWriteDeadline(time.Now().Add(ss.s.opts.Limits.ReadTimeout))
	return ss.w.Flush() == nil
}

// respond sends one response operation for message id, with controls,
// and notes what it says for the access log.
func (ss *session) respond(id int64, op *ber.Packet, controls ...*ber.Packet) bool {
	if code, ok := op.Children[0].Value.(int64); ok {
		ss.op.result = resultCode(code)
	}
	return ss.write(envelope(id, op, controls...))
}

// respondResult sends a response operation op that is an LDAPResult alone.
func (ss *session) respondResult(id int64, op int, r result) bool {
	ss.op.result = r.code
	return ss.write(resultMessage(id, op, r))
}

// sendEntry sends one SearchResultEntry with the attributes sel keeps.
func (ss *session) sendEntry(id int64, e entry, sel *selection, typesOnly bool) bool {
	ss.op.entries++
	return ss.write(entryMessage(id, e, sel, typesOnly))
}

// handle serves one message; false ends the session.
func (ss *session) handle(m *message) bool {
	switch m.op.(type) {
	case unbindRequest:
		return false
	case abandonRequest:
		// Operations are answered before the next is read: there is never
		// one left to abandon.
		return true
	}
	ss.op = operation{}
	defer ss.record(m, time.Now())
	if c, ok := unavailableCritical(m); ok {
		return ss.respond(m.id, resultOp(responseTag(m.op), result{code: resultUnavailableCriticalExtension,
			diagnostic: "critical control " + c.oid + " is not supported on this operation"}))
	}
	switch op := m.op.(type) {
	case *bindRequest:
		return ss.respond(m.id, ss.bind(ss.s.ctx, op))
	case *searchRequest:
		return ss.search(ss.s.ctx, m.id, op, m.controls)
	case *extendedRequest:
		return ss.extended(m.id, op)
	case *addRequest:
		return ss.respond(m.id, ss.add(ss.s.ctx, op))
	case *modifyRequest:
		return ss.respond(m.id, ss.modify(ss.s.ctx, op))
	case *modDNRequest:
		return ss.respond(m.id, ss.modifyDN(ss.s.ctx, op))
	case *delRequest:
		return ss.respond(m.id, ss.delete(ss.s.ctx, op))
	case *compareRequest:
		return ss.respond(m.id, ss.compare(ss.s.ctx, op))
	}
	return false
}

// responseTag is the response operation's tag for a request.
func responseTag(op any) int {
	switch op.(type) {
	case *bindRequest:
		return opBindResponse
	case *searchRequest:
		return opSearchDone
	case *addRequest:
		return opAddResponse
	case *modifyRequest:
		return opModifyResponse
	case *modDNRequest:
		return opModDNResponse
	case *delRequest:
		return opDelResponse
	case *compareRequest:
		return opCompareResponse
	}
	return opExtendedResponse
}

// OIDs of the controls the server knows (RFC 4511 §4.1.11: a critical
// control that the server does not know, or that is not appropriate to the
// operation, gets unavailableCriticalExtension).
const (
	oidManageDsaIT  = "2.16.840.1.113730.3.4.2" // RFC 3296: there are no referrals to manage
	oidPagedResults = "1.2.840.113556.1.4.319"  // RFC 2696
)

// supportedControls are the controls of the rootDSE's supportedControl.
var supportedControls = []string{oidManageDsaIT, oidPagedResults, oidSortRequest}

// unavailableCritical returns the first critical control of m that the
// server does not apply to m's operation.
func unavailableCritical(m *message) (control, bool) {
	for _, c := range m.controls {
		if !c.critical {
			continue
		}
		if _, ok := m.op.(*searchRequest); ok && (c.oid == oidManageDsaIT || c.oid == oidPagedResults || c.oid == oidSortRequest) {
			continue
		}
		return c, true
	}
	return control{}, false
}

// extended serves an ExtendedRequest.
func (ss *session) extended(id int64, r *extendedRequest) bool {
	switch r.oid {
	case oidStartTLS:
		return ss.startTLS(id)
	case oidPasswordModify:
		return ss.modifyPassword(ss.s.ctx, id, r.value)
	case oidWhoAmI:
		// RFC 4532 §2: no request value; the response's value is the
		// authorization identity, empty when anonymous.
		if r.hasValue {
			return ss.respond(id, extendedResponse(result{code: resultProtocolError, diagnostic: "Who am I? takes no value"}, "", nil))
		}
		return ss.respond(id, extendedResponse(result{code: resultSuccess}, "", []byte(ss.who.authzID())))
	}
	return ss.respond(id, extendedResponse(result{code: resultProtocolError, diagnostic: "unknown extended operation " + r.oid}, "", nil))
}

// startTLS turns the session to TLS (RFC 4511 §4.14, RFC 4513 §3).
func (ss *session) startTLS(id int64) bool {
	refuse := func(code resultCode, why string) bool {
		return ss.respond(id, extendedResponse(result{code: code, diagnostic: why}, oidStartTLS, nil))
	}
	switch {
	case ss.tls:
		return refuse(resultOperationsError, "TLS is already established")
	case ss.r.Buffered() > 0:
		// RFC 4511 §4.14.1: the client sends nothing more until the answer;
		// bytes already sent would be read as if protected by TLS.
		ss.write(noticeOfDisconnection(resultProtocolError, "data sent after the StartTLS request"))
		return false
	}
	// The answer goes out in clear text before the handshake starts.
	if !ss.respond(id, extendedResponse(result{code: resultSuccess}, oidStartTLS, nil)) || !ss.flush() {
		return false
	}
	tc := tls.Server(ss.conn, ss.s.opts.TLS)
	ss.conn.SetDeadline(time.Now().Add(ss.s.opts.Limits.ReadTimeout))
	if err := tc.Handshake(); err != nil {
		ss.log.Info("ldap: StartTLS handshake failed", "err", err)
		return false
	}
	ss.conn.SetDeadline(time.Time{})
	ss.conn, ss.r, ss.w, ss.tls = tc, bufio.NewReader(tc), bufio.NewWriter(tc), true
	return true
}
