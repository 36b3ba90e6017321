package broker

import (
	"cmp"
	"context"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// A credential is refused at CONNECT for whatever its standing in the
// store lost, read there alone (store.Standing): the changes are made in
// the store only, without the events that end open connections, as
// another node's or a change before a restart would be. Each credential
// connects first, so that the refusal is the change's. The thing's own
// token and the user's app have no owner to check, which would refuse a
// device acting for a deleted user or for a deleted thing as well.
func TestAttackStandingAtConnect(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	type ids struct {
		th  *store.Thing
		u   *store.User
		gid string // the grant of the device acting for u
	}
	// The credentials: a device acting for its owner, the thing's own
	// token, the user's app.
	device := func(x ids) (string, string) {
		return x.th.ID, e.token(tokens.Claims{Subject: x.u.ID, ClientID: "paired-app", ThingID: x.th.ID, GrantID: x.gid})
	}
	thing := func(x ids) (string, string) { return x.th.ID, e.thingToken(x.th) }
	app := func(x ids) (string, string) {
		return "app-" + x.u.ID, e.token(tokens.Claims{Subject: x.u.ID, ClientID: "user-app"})
	}
	// forged is a device's token whose grant or user the store never had.
	forged := func(sub, gid string) func(ids) (string, string) {
		return func(x ids) (string, string) {
			return x.th.ID, e.token(tokens.Claims{Subject: cmp.Or(sub, x.u.ID), ClientID: "paired-app", ThingID: x.th.ID, GrantID: cmp.Or(gid, x.gid)})
		}
	}
	cases := []struct {
		name string
		cred func(ids) (clientID, token string)
		lose func(ids)                          // changes the store
		then func(ids) (clientID, token string) // the credential tried after, cred's if nil
	}{
		{"grant never stored", device, func(ids) {}, forged("", "no-such-grant")},
		{"grant id that would be SQL", device, func(ids) {}, forged("", "' OR '1'='1")},
		{"user id that would be SQL", device, func(ids) {}, forged("x' OR 1=1 --", "")},
		{"thing disabled (device)", device, func(x ids) {
			_, err := e.st.UpdateThing(ctx, x.th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil })
			must(err)
		}, nil},
		{"thing deleted (its own token)", thing, func(x ids) { must(e.st.DeleteThing(ctx, x.th.ID, 0)) }, nil},
		{"user disabled (device)", device, func(x ids) {
			_, err := e.st.UpdateUser(ctx, x.u.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil })
			must(err)
		}, nil},
		{"user deleted (the user's app)", app, func(x ids) { must(e.st.DeleteUser(ctx, x.u.ID, 0)) }, nil},
		{"thing owned by another user now (device)", device, func(x ids) {
			must(e.st.RemoveRelationship(ctx, store.Relationship{Kind: store.RelOwner,
				From: store.Ref{Kind: store.KindUser, ID: x.u.ID}, To: store.Ref{Kind: store.KindThing, ID: x.th.ID}}))
			e.own(e.user("new-owner-"+x.u.ID), x.th)
		}, nil},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := ids{th: e.thing("T-100"), u: e.user("standing-" + string(rune('a'+i)))}
			e.own(x.u, x.th)
			x.gid = e.grant("paired-app", x.th.ID, x.u.ID)
			id, tok := tc.cred(x)
			if code, reason := e.connackCode("tls", &paho.Connect{ClientID: id, CleanStart: true, Password: []byte(tok), PasswordFlag: true}); code != 0 {
				t.Fatalf("before: CONNACK %#x (%s)", code, reason)
			}
			if tc.lose(x); tc.then != nil {
				id, tok = tc.then(x)
			}
			if code, reason := e.connackCode("tls", &paho.Connect{ClientID: id, CleanStart: true, Password: []byte(tok), PasswordFlag: true}); code != 0x87 {
				t.Errorf("CONNACK %#x (%s), want 0x87", code, reason)
			}
		})
	}
}
