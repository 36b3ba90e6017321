package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// person is the speaker's buyer on a laptop, as a browser would be: a cookie
// jar, the platform's public pages and JSON APIs, nothing else.
type person struct {
	pl       endpoints
	name     string
	password string
	id       string // the user's id, once registered
	c        *http.Client
}

func newPerson(pl endpoints, name, password string) *person {
	jar, _ := cookiejar.New(nil)
	c := pl.client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &person{pl: pl, name: name, password: password, c: c}
}

// register creates the account through the public registration API.
func (p *person) register(ctx context.Context) error {
	var out struct {
		ID string `json:"id"`
	}
	body := map[string]string{"userName": p.name, "email": p.name + "@example.com", "displayName": strings.ToUpper(p.name[:1]) + p.name[1:], "password": p.password}
	if err := p.sendJSON(ctx, http.MethodPost, "/api/v1/register", body, http.StatusCreated, &out); err != nil {
		return err
	}
	if out.ID == "" {
		return errors.New("POST /api/v1/register answered no user id")
	}
	p.id = out.ID
	return nil
}

// signIn opens a session.
func (p *person) signIn(ctx context.Context) error {
	return p.sendJSON(ctx, http.MethodPost, "/api/v1/signin", map[string]string{"userName": p.name, "password": p.password}, http.StatusOK, nil)
}

// consent is what the consent page at /device showed, and what came of
// the decision.
type consent struct {
	Model, Serial string
	// Outcome is the title of the page after the decision, such as
	// "Device connected".
	Outcome string
}

// decide enters code at /device, reads the consent page and presses
// "allow" or "deny".
func (p *person) decide(ctx context.Context, code, decision string) (consent, error) {
	var c consent
	page, err := p.sendForm(ctx, http.MethodGet, "/device", nil)
	if err != nil {
		return c, err
	}
	token, err := pageCSRF(page)
	if err != nil {
		return c, fmt.Errorf("GET /device: %w", err)
	}
	if page, err = p.sendForm(ctx, http.MethodPost, "/device", url.Values{"csrf": {token}, "user_code": {code}}); err != nil {
		return c, err
	}
	if token, err = pageCSRF(page); err != nil {
		return c, fmt.Errorf("no consent page after entering %s: %w", code, err)
	}
	c.Model, c.Serial = pageText(page, "device-model"), pageText(page, "device-serial")
	if c.Serial == "" {
		return c, fmt.Errorf("the consent page after entering %s does not say which device asks (no serial number)", code)
	}
	if page, err = p.sendForm(ctx, http.MethodPost, "/device/decision", url.Values{"csrf": {token}, "user_code": {code}, "decision": {decision}}); err != nil {
		return c, err
	}
	c.Outcome = pageHeading(page)
	return c, nil
}

// linkedDevice is an entry of GET /api/v1/devices.
type linkedDevice struct {
	ID           string    `json:"id"`
	Model        string    `json:"model"`
	SerialNumber string    `json:"serialNumber"`
	LinkedSince  time.Time `json:"linkedSince"`
}

// devices lists the things linked to the person ("my devices").
func (p *person) devices(ctx context.Context) ([]linkedDevice, error) {
	var out struct {
		Devices []linkedDevice `json:"devices"`
	}
	err := p.sendJSON(ctx, http.MethodGet, "/api/v1/devices", nil, http.StatusOK, &out)
	return out.Devices, err
}

// unlink removes a thing from the person's devices.
func (p *person) unlink(ctx context.Context, thingID string) error {
	return p.sendJSON(ctx, http.MethodDelete, "/api/v1/devices/"+url.PathEscape(thingID), nil, http.StatusNoContent, nil)
}

// umaRequest is a request for one of the person's resources, waiting for
// their decision.
type umaRequest struct {
	ID            string   `json:"id"`
	ResourceID    string   `json:"resourceId"`
	RequesterName string   `json:"requesterName"`
	ClientID      string   `json:"clientId"`
	Scopes        []string `json:"scopes"`
}

// requests lists the requests waiting for the person's decision, as
// /account/sharing shows them.
func (p *person) requests(ctx context.Context) ([]umaRequest, error) {
	var out struct {
		Requests []umaRequest `json:"requests"`
	}
	err := p.sendJSON(ctx, http.MethodGet, "/api/v1/uma/requests", nil, http.StatusOK, &out)
	return out.Requests, err
}

// approve approves a request with the scopes it asks for; the share it
// made is returned.
func (p *person) approve(ctx context.Context, requestID string) (string, error) {
	var share struct {
		ID string `json:"id"`
	}
	err := p.sendJSON(ctx, http.MethodPost, "/api/v1/uma/requests/"+url.PathEscape(requestID)+"/approve", nil, http.StatusOK, &share)
	return share.ID, err
}

// revokeShare takes a share back.
func (p *person) revokeShare(ctx context.Context, shareID string) error {
	return p.sendJSON(ctx, http.MethodDelete, "/api/v1/uma/shares/"+url.PathEscape(shareID), nil, http.StatusNoContent, nil)
}

// sendJSON sends body (if any) as JSON and decodes the answer into out (if
// any); an answer other than want is an error with the problem's detail.
func (p *person) sendJSON(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, b, err := p.do(ctx, method, path, "application/json", rd)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %s: %s", method, path, resp.Status, problemDetail(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, path, err)
		}
	}
	return nil
}

// sendForm gets a page or posts a form to it, and returns the page, which
// must come with 200.
func (p *person) sendForm(ctx context.Context, method, path string, form url.Values) (string, error) {
	var rd io.Reader
	ctype := ""
	if form != nil {
		rd, ctype = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	}
	resp, b, err := p.do(ctx, method, path, ctype, rd)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		msg := pageText(string(b), "message")
		if msg == "" {
			msg = pageHeading(string(b))
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			msg = "sent to " + loc
		}
		return "", fmt.Errorf("%s %s answered %s: %s", method, path, resp.Status, msg)
	}
	return string(b), nil
}

func (p *person) do(ctx context.Context, method, path, ctype string, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.pl.URL+path, body)
	if err != nil {
		return nil, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	// What a browser sends with a form of the same origin.
	req.Header.Set("Origin", p.pl.URL)
	resp, err := p.c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, p.pl.URL+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: reading the answer: %w", method, p.pl.URL+path, err)
	}
	return resp, b, nil
}

var (
	csrfRE    = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	headingRE = regexp.MustCompile(`(?s)<h1[^>]*>(.*?)</h1>`)
	tagRE     = regexp.MustCompile(`<[^>]*>`)
)

// pageCSRF is the CSRF token of the page's form.
func pageCSRF(page string) (string, error) {
	m := csrfRE.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		return "", fmt.Errorf("the page has no form: %s", clip(pageHeading(page)))
	}
	return html.UnescapeString(m[1]), nil
}

// pageText is the text of the element with the given id (not nested in
// an element of its own kind), "" if none.
func pageText(page, id string) string {
	at := strings.Index(page, ` id="`+id+`"`)
	if at < 0 {
		return ""
	}
	open := strings.LastIndexByte(page[:at], '<')
	if open < 0 {
		return ""
	}
	name, _, _ := strings.Cut(page[open+1:at], " ")
	rest := page[at:]
	gt := strings.IndexByte(rest, '>')
	if name == "" || gt < 0 {
		return ""
	}
	rest = rest[gt+1:]
	end := strings.Index(rest, "</"+name)
	if end < 0 {
		return ""
	}
	return strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(rest[:end], "")))
}

// pageHeading is the text of the page's first h1.
func pageHeading(page string) string {
	m := headingRE.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(m[1], "")))
}

// problemDetail is the detail of an RFC 9457 problem, or the start of the body.
func problemDetail(body []byte) string {
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Errors []struct {
			Field  string `json:"field"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &p) != nil || (p.Title == "" && p.Detail == "") {
		return clip(strings.TrimSpace(string(body)))
	}
	s := p.Detail
	if s == "" {
		s = p.Title
	}
	for _, e := range p.Errors {
		s += fmt.Sprintf("; %s %s", e.Field, e.Detail)
	}
	return s
}

// clip shortens text quoted in a message.
func clip(s string) string {
	if r := []rune(s); len(r) > 200 {
		return string(r[:200]) + "…"
	}
	return s
}
