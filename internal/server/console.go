package server

import (
	"log/slog"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/console"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/routes"
)

// mountConsole adds the admin console at /admin, on the services the APIs
// use; mqtt is nil when the broker is off.
func (p *Platform) mountConsole(mux routes.Mux, sessions *authn.Sessions, admins *authn.Admins, certs *certauth.Checker, srv *oauth.Server, mqtt *broker.Broker, log *slog.Logger) error {
	o := console.Options{
		BaseURL:      p.Config.HTTP.PublicURL,
		CSRFKey:      p.derivedKey(consoleCSRFPurpose),
		CursorKey:    p.derivedKey(auditCursorPurpose), // the audit API's: its cursors work in both
		Sessions:     sessions,
		Staff:        admins,
		Identities:   p.Identity,
		Certificates: certs,
		Grants:       srv,
		Store:        p.Store,
		Logger:       log.With("component", "console"),
	}
	if mqtt != nil {
		o.Connections = brokerConnections{mqtt}
	}
	c, err := console.New(o)
	if err != nil {
		return err
	}
	c.Register(mux)
	return nil
}

// consoleCSRFPurpose derives the key of the console's CSRF tokens.
const consoleCSRFPurpose = "thingid console csrf v1"

// brokerConnections shows the broker's sessions to the console.
type brokerConnections struct{ b *broker.Broker }

func (bc brokerConnections) Connections() []console.Connection {
	clients := bc.b.Clients()
	out := make([]console.Connection, len(clients))
	for i, c := range clients {
		out[i] = console.Connection{ClientID: c.ClientID, Identity: c.Identity, Thing: c.Thing, User: c.User,
			Listener: c.Listener, Remote: c.Remote, Connected: c.Connected}
	}
	return out
}

func (bc brokerConnections) Disconnect(clientID string) bool { return bc.b.Disconnect(clientID) }
