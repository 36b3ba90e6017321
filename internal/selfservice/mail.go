package selfservice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// mailData is what an e-mail template is given: the user's name (display
// name, else user name) and user name, the link to open and how long it
// works, and for an address change the new address.
type mailData struct {
	Name, UserName, Link, To string
	Within                   time.Duration
}

// mail renders the e-mail of a kind (its template and the metric's label)
// for u in u's language, sends it to the address to and counts it.
func (h *Handler) mail(ctx context.Context, kind, to string, u *store.User, d mailData) error {
	d.Name, d.UserName = greeting(u), u.UserName
	subject, body, err := h.kit.RenderMail(h.mails[kind], h.opts.Site.MailLanguage(u.Locale), d)
	if err == nil {
		err = h.mailer.Send(ctx, to, composeMail(h.mailFrom(), to, subject, body, h.now()))
	}
	result := "sent"
	if err != nil {
		result = "failed"
	}
	h.mailCount.WithLabelValues(kind, result).Inc()
	return err
}

// Mailer delivers one RFC 5322 message to one recipient.
type Mailer interface {
	Send(ctx context.Context, to string, msg []byte) error
}

// composeMail builds a plain-text UTF-8 message. to and from must be addresses
// that net/mail accepted, so no header can be injected through them.
func composeMail(from, to, subject, body string, now time.Time) []byte {
	var id [12]byte
	_, _ = rand.Read(id[:])
	domain := "localhost"
	if a, err := mail.ParseAddress(from); err == nil {
		domain = a.Address[strings.LastIndexByte(a.Address, '@')+1:]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", hex.EncodeToString(id[:]), domain)
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(body))
	_ = qp.Close()
	return b.Bytes()
}

// smtpMailer submits mail over SMTP and refuses to do so without STARTTLS
// (RFC 3207), so the verification link never crosses the network in clear.
type smtpMailer struct {
	opts SMTPOptions
	tls  *tls.Config // nil: verify the server against the system roots
}

func (m *smtpMailer) Send(ctx context.Context, to string, msg []byte) error {
	from, err := mail.ParseAddress(m.opts.From)
	if err != nil {
		return fmt.Errorf("smtp: From %q is not an e-mail address: %w", m.opts.From, err)
	}
	port := m.opts.Port
	if port == 0 {
		port = 587
	}
	addr := net.JoinHostPort(m.opts.Host, strconv.Itoa(port))
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, m.opts.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return fmt.Errorf("smtp %s does not offer STARTTLS; refusing to send the message in clear", addr)
	}
	cfg := m.tls
	if cfg == nil {
		cfg = &tls.Config{ServerName: m.opts.Host, MinVersion: tls.VersionTLS12}
	}
	if err := c.StartTLS(cfg); err != nil {
		return fmt.Errorf("smtp %s STARTTLS: %w", addr, err)
	}
	if m.opts.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.opts.Username, m.opts.Password, m.opts.Host)); err != nil {
			return fmt.Errorf("smtp %s authentication: %w", addr, err)
		}
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("smtp %s MAIL FROM: %w", addr, err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp %s RCPT TO: %w", addr, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s DATA: %w", addr, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp %s DATA: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s DATA: %w", addr, err)
	}
	return c.Quit()
}

// outbox writes each message as an .eml file, for development and for servers
// without a mail relay: an operator forwards or opens the files.
type outbox struct {
	dir string
	log *slog.Logger
}

func (o *outbox) Send(_ context.Context, to string, msg []byte) error {
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(o.dir, time.Now().UTC().Format("20060102T150405.000000000Z")+"-"+hex.EncodeToString(rnd[:])+".eml")
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	_, err = f.Write(msg)
	if err := errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	o.log.Info("selfservice: no SMTP host configured; e-mail written to the outbox", "to", to, "file", name)
	return nil
}
