package ace

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// issue signs a CWT of c for the client "client-1" and records it as the
// token endpoint does.
func (w *world) issue(t *testing.T, c tokens.Claims, cnf *confirmation) ([]byte, *claims) {
	t.Helper()
	c.ClientID = "client-1"
	b, cl, err := w.srv.issue(c, cnf, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.srv.auditIssue(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	return b, cl
}

// records are the audit records of action about thing-1, oldest first.
func (w *world) records(t *testing.T, action string) []store.AuditRecord {
	t.Helper()
	recs, err := w.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: "thing-1"},
		Action: store.TextMatch{Value: action}})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func detailOf(t *testing.T, r store.AuditRecord) cwtRecord {
	t.Helper()
	var d cwtRecord
	if err := json.Unmarshal(r.Detail, &d); err != nil {
		t.Fatalf("detail %s: %v", r.Detail, err)
	}
	return d
}

// A CWT issued is recorded with its client, thing and cti; the thing's
// list shows it until it expires; an administrator revokes it by cti
// (recorded, published, refused from then on), and only a cti of this
// thing's.
func TestIssuedAndRevokedByAnAdministrator(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	tok, cl := w.issue(t, w.claims(), &confirmation{Key: ck})
	expired := w.claims()
	expired.IssuedAt, expired.ExpiresAt = w.now.Add(-2*time.Hour), w.now.Add(-time.Hour)
	w.issue(t, expired, &confirmation{Key: ck})

	recs := w.records(t, ActionIssue)
	if len(recs) != 2 || recs[0].Actor != "client:client-1" {
		t.Fatalf("issue records: %+v", recs)
	}
	if d := detailOf(t, recs[0]); d.CTI != hex.EncodeToString(cl.Cti) || d.Thing != "thing-1" || d.Client != "client-1" ||
		d.Scope != "telemetry:write commands:read" || d.Exp != cl.Exp {
		t.Fatalf("issue detail: %+v", d)
	}
	list, err := w.srv.IssuedCWTs(context.Background(), "thing-1")
	if err != nil || len(list) != 1 || hex.EncodeToString(list[0].CTI) != hex.EncodeToString(cl.Cti) || list[0].Revoked {
		t.Fatalf("the thing's CWTs (the expired one left out): %+v, %v", list, err)
	}

	published := make(chan events.Event, 1)
	w.bus.Subscribe(func(e events.Event) {
		if e.Type == EventRevoke {
			published <- e
		}
	})
	ctx := context.Background()
	for name, c := range map[string]struct {
		thing string
		cti   []byte
	}{
		"another thing's":    {"thing-2", cl.Cti},
		"an unknown cti":     {"thing-1", []byte{1, 2, 3}},
		"an expired token's": {"thing-1", func() []byte { c, _ := hex.DecodeString(detailOf(t, recs[1]).CTI); return c }()},
	} {
		if err := w.srv.RevokeIssued(ctx, "admin:a1", c.thing, c.cti); !errors.Is(err, ErrNotIssued) {
			t.Errorf("revoking %s cti: %v; want ErrNotIssued", name, err)
		}
	}
	if err := w.srv.RevokeIssued(ctx, "admin:a1", "thing-1", cl.Cti); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-published:
		if e.ID != hex.EncodeToString(cl.Cti) || e.Actor != "admin:a1" || e.Local {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no cwt.revoke event")
	}
	wantRefused(t, w, "a CWT an administrator revoked", tok, holder, http.StatusUnauthorized)
	revs := w.records(t, ActionRevoke)
	if len(revs) != 1 || revs[0].Actor != "admin:a1" {
		t.Fatalf("revoke records: %+v", revs)
	}
	if d := detailOf(t, revs[0]); d.CTI != hex.EncodeToString(cl.Cti) || d.By != "administrator" || d.Thing != "thing-1" || d.Client != "client-1" {
		t.Fatalf("revoke detail: %+v", d)
	}
	if list, _ := w.srv.IssuedCWTs(ctx, "thing-1"); len(list) != 1 || !list[0].Revoked {
		t.Fatalf("the list after revocation: %+v", list)
	}
}

// A holder's revocation at /ace/revoke is recorded with its client and thing.
func TestHolderRevocationAudited(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	tok, cl := w.issue(t, w.claims(), &confirmation{Key: ck})
	if body, status := w.srv.Revoke(context.Background(), revocation(t, tok), Identity{PublicKey: key.Public()}); status != http.StatusOK {
		t.Fatalf("revoke: %d %x", status, body)
	}
	revs := w.records(t, ActionRevoke)
	if len(revs) != 1 || revs[0].Actor != "client:client-1" {
		t.Fatalf("revoke records: %+v", revs)
	}
	if d := detailOf(t, revs[0]); d.CTI != hex.EncodeToString(cl.Cti) || d.By != "holder" || d.Thing != "thing-1" {
		t.Fatalf("revoke detail: %+v", d)
	}
}

// Introspection without credentials from a client that proved no key is
// refused; a client's credentials that are not a string are named.
func TestAttackIntrospectUnauthenticated(t *testing.T) {
	w := newWorld(t)
	_, ck := client(t)
	tok := w.sign(t, w.claims(), &confirmation{Key: ck})
	body, status := w.srv.Introspect(context.Background(), revocation(t, tok), Identity{})
	var out map[int]any
	_ = cbor.Unmarshal(body, &out)
	if status != http.StatusUnauthorized || out[paramError] != uint64(2) {
		t.Errorf("no credentials, no key: %d %v; want 401 invalid_client (2)", status, out)
	}
	bad, _ := cbor.Marshal(map[int]any{paramToken: tok, paramClientSecret: 7})
	body, status = w.srv.Introspect(context.Background(), bad, Identity{})
	out = nil
	_ = cbor.Unmarshal(body, &out)
	if desc, _ := out[paramErrorDesc].(string); status != http.StatusBadRequest || desc != "client_secret (25) must be a non-empty text string" {
		t.Errorf("client_secret a number: %d %v", status, out)
	}
}
