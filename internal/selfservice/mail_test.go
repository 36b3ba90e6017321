package selfservice

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// smtpPeer is the far end of one SMTP session, scripted after RFC 5321 and
// RFC 3207 just far enough to check what our client sends and that it upgrades
// to TLS before authenticating.
type smtpPeer struct {
	offerTLS bool
	cert     tls.Certificate
	got      chan string // the session transcript, once it ends
}

func (p *smtpPeer) serve(t *testing.T, ln net.Listener) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var log strings.Builder
	defer func() { p.got <- log.String() }()
	rw := bufio.NewReadWriter(bufio.NewReader(conn), bufio.NewWriter(conn))
	reply := func(s string) { rw.WriteString(s + "\r\n"); rw.Flush() }
	secure := false
	reply("220 test ESMTP")
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		log.WriteString(strconv.FormatBool(secure) + " " + line + "\n")
		switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
		case "EHLO":
			switch {
			case !secure && p.offerTLS:
				reply("250-test\r\n250 STARTTLS")
			case secure:
				reply("250-test\r\n250 AUTH PLAIN")
			default:
				reply("250 test")
			}
		case "STARTTLS":
			reply("220 go ahead")
			tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{p.cert}})
			if err := tc.Handshake(); err != nil {
				t.Errorf("TLS handshake: %v", err)
				return
			}
			rw = bufio.NewReadWriter(bufio.NewReader(tc), bufio.NewWriter(tc))
			secure = true
		case "AUTH":
			reply("235 ok")
		case "MAIL", "RCPT":
			reply("250 ok")
		case "DATA":
			reply("354 go on")
			for {
				l, err := rw.ReadString('\n')
				if err != nil {
					return
				}
				log.WriteString("data " + l)
				if l == ".\r\n" {
					break
				}
			}
			reply("250 queued")
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("502 not implemented")
		}
	}
}

func startSMTP(t *testing.T, offerTLS bool) (*smtpMailer, *smtpPeer) {
	t.Helper()
	// Borrow httptest's certificate for 127.0.0.1.
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	ts.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peer := &smtpPeer{offerTLS: offerTLS, cert: ts.TLS.Certificates[0], got: make(chan string, 1)}
	go peer.serve(t, ln)
	port := ln.Addr().(*net.TCPAddr).Port
	m := &smtpMailer{
		opts: SMTPOptions{Host: "127.0.0.1", Port: port, Username: "relay", Password: "relay-secret", From: "thingid <no-reply@example.com>"},
		tls:  &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"},
	}
	return m, peer
}

func TestSMTPSendsOverSTARTTLS(t *testing.T) {
	m, peer := startSMTP(t, true)
	msg := composeMail(m.opts.From, "judy@example.org", "Confirm your e-mail address", "the link\n", time.Now())
	if err := m.Send(context.Background(), "judy@example.org", msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	log := <-peer.got
	for _, want := range []string{"false STARTTLS", "true AUTH PLAIN", "true MAIL FROM:<no-reply@example.com>", "true RCPT TO:<judy@example.org>", "data Subject: Confirm your e-mail address", "data the link"} {
		if !strings.Contains(log, want) {
			t.Errorf("session lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "false AUTH") || strings.Contains(log, "false MAIL") {
		t.Errorf("credentials or mail sent before TLS:\n%s", log)
	}
}

func TestSMTPRefusesServerWithoutSTARTTLS(t *testing.T) {
	m, peer := startSMTP(t, false)
	err := m.Send(context.Background(), "judy@example.org", []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("Send = %v, want a refusal to send in clear", err)
	}
	if log := <-peer.got; strings.Contains(log, "AUTH") || strings.Contains(log, "MAIL") {
		t.Fatalf("sent in clear:\n%s", log)
	}
}
