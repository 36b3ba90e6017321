package ace

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// The audit log's actions of CWTs. The audit log is the one list of the
// CWTs issued (no table keeps them): an administrator finds a thing's CWTs
// there, and revokes one by its cti.
const (
	// ActionIssue records a CWT signed at the token endpoint, by its client.
	ActionIssue = "cwt.issue"
	// ActionRevoke records a CWT revoked by its cti: by its holder
	// (/ace/revoke) or by an administrator.
	ActionRevoke = "cwt.revoke"
)

// ErrNotIssued is a cti that names no unexpired CWT issued to the thing.
var ErrNotIssued = errors.New("no unexpired CWT with this cti was issued to this thing")

// cwtRecord is the detail of a cwt.issue or cwt.revoke audit record.
type cwtRecord struct {
	CTI      string   `json:"cti"` // lower-case hex
	Exp      int64    `json:"exp"` // unix seconds
	Client   string   `json:"clientId,omitempty"`
	Thing    string   `json:"thing,omitempty"`
	Subject  string   `json:"sub,omitempty"`
	Audience []string `json:"aud,omitempty"`
	Scope    string   `json:"scope,omitempty"`
	Grant    string   `json:"gid,omitempty"`
	// By says who revoked: "holder" (/ace/revoke) or "administrator".
	By string `json:"by,omitempty"`
}

// subject is what a record is about: the token's thing, else its client.
func (r cwtRecord) subject() store.Ref {
	if r.Thing != "" {
		return store.Ref{Kind: store.KindThing, ID: r.Thing}
	}
	return store.Ref{Kind: "client", ID: r.Client}
}

// auditIssue records the CWT of c just signed, by its client.
func (s *Server) auditIssue(ctx context.Context, c *claims) error {
	rec := cwtRecord{CTI: hex.EncodeToString(c.Cti), Exp: c.Exp, Client: c.Client, Thing: c.Thing, Subject: c.Sub,
		Audience: c.Aud, Scope: c.Scope.Text, Grant: c.Gid}
	detail, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return s.st.AppendAudit(ctx, store.AuditRecord{Time: s.keys.Now().UTC(), Actor: "client:" + c.Client,
		Action: ActionIssue, Target: rec.subject(), Detail: detail})
}

// Issued is a CWT issued to a thing, as its audit record says.
type Issued struct {
	CTI       []byte    `json:"-"`
	CTIHex    string    `json:"cti"`
	IssuedAt  time.Time `json:"issued"`
	ExpiresAt time.Time `json:"expires"`
	Client    string    `json:"clientId"`
	Subject   string    `json:"sub"`
	Audience  []string  `json:"aud"`
	Scope     string    `json:"scope,omitempty"`
	Revoked   bool      `json:"revoked"`
}

// maxListed bounds the CWTs IssuedCWTs returns.
const maxListed = 100

// IssuedCWTs are the unexpired CWTs issued to thingID, newest first, at
// most 100, each with whether its cti is revoked.
func (s *Server) IssuedCWTs(ctx context.Context, thingID string) ([]Issued, error) {
	var out []Issued
	err := s.issued(ctx, thingID, func(i Issued) bool {
		out = append(out, i)
		return len(out) < maxListed
	})
	return out, err
}

// RevokeIssued revokes the CWT of cti issued to thingID, for actor (an
// administrator), as its holder would at /ace/revoke: stored, audited and
// published. ErrNotIssued when thingID has no unexpired CWT of that cti.
func (s *Server) RevokeIssued(ctx context.Context, actor, thingID string, cti []byte) error {
	err := s.revokeIssued(ctx, actor, thingID, cti)
	s.metrics.count(endpointAdminRevoke, err)
	return err
}

func (s *Server) revokeIssued(ctx context.Context, actor, thingID string, cti []byte) error {
	var found *Issued
	err := s.issued(ctx, thingID, func(i Issued) bool {
		if bytes.Equal(i.CTI, cti) {
			found = &i
		}
		return found == nil
	})
	if err != nil {
		return err
	}
	if found == nil {
		return ErrNotIssued
	}
	return s.revokeCTI(ctx, actor, cti, found.ExpiresAt, cwtRecord{CTI: found.CTIHex, Exp: found.ExpiresAt.Unix(),
		Client: found.Client, Thing: thingID, By: "administrator"})
}

// issued calls each with the unexpired CWTs issued to thingID, newest
// first, until it returns false: the thing's cwt.issue records no older
// than the longest lifetime a token can have, read a page at a time.
func (s *Server) issued(ctx context.Context, thingID string, each func(Issued) bool) error {
	const page = 200
	now := s.keys.Now()
	q := store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: thingID}, Action: store.TextMatch{Value: ActionIssue},
		Since: now.Add(-s.keys.MaxTokenLifetime() - s.revocations.Leeway()), Descending: true, Limit: page}
	for {
		recs, err := s.st.ListAudit(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range recs {
			var d cwtRecord
			if json.Unmarshal(r.Detail, &d) != nil {
				continue
			}
			cti, herr := hex.DecodeString(d.CTI)
			if herr != nil || len(cti) == 0 {
				continue
			}
			exp := time.Unix(d.Exp, 0)
			if !now.Before(exp.Add(s.revocations.Leeway())) {
				continue
			}
			i := Issued{CTI: cti, CTIHex: d.CTI, IssuedAt: r.Time.UTC(), ExpiresAt: exp.UTC(), Client: d.Client, Subject: d.Subject,
				Audience: d.Audience, Scope: d.Scope, Revoked: s.ctis.revoked(cti, now)}
			if !each(i) {
				return nil
			}
		}
		if len(recs) < page {
			return nil
		}
		q.BeforeSeq = recs[len(recs)-1].Seq
	}
}
