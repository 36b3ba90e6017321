package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// ClientSpec is an OAuth client to register, as the admin API and the CLI
// take it; the authorization server validates it.
type ClientSpec struct {
	Name, Type, AuthMethod string
	RedirectURIs           []string
	GrantTypes, Scopes     []string
}

// Clients manages OAuth clients (the authorization server's registry: the
// same validation and audit as the admin API and `thingid clients`). A
// refused spec is a ui.Refusal naming the field (oauth.ClientError).
type Clients interface {
	ListClients(ctx context.Context, offset, limit int) ([]*store.Client, int, error)
	CreateClient(ctx context.Context, actor string, spec ClientSpec) (*store.Client, string, error)
	RotateSecret(ctx context.Context, actor, id string) (string, error)
	DeleteClient(ctx context.Context, actor, id string) error
}

// Authorities lists the manufacturer CAs (certauth).
type Authorities interface {
	ListCAs(ctx context.Context) ([]*store.ManufacturerCA, error)
}

// TopicRule is one of the broker's topic rules.
type TopicRule struct {
	Who                string
	Publish, Subscribe []string
}

// GatewayRoute is a route the gateway serves.
type GatewayRoute struct {
	Name, Upstream string
	Hosts          []string
}

// Gateway tells the routes in service and why the routes files were
// refused, if they were (the gateway).
type Gateway interface {
	Routes() ([]GatewayRoute, error)
}

type clientRow struct {
	ID, Name, Type, AuthMethod, Grants, Scopes, Thing, Created string
	Secret                                                     bool
}

type clientsPage struct {
	base
	Rows               []clientRow
	Total              int
	PrevLink, NextLink string
	New                struct {
		Name, Type, AuthMethod, RedirectURIs, GrantTypes, Scopes string
		Error                                                    error
	}
	// Secret is shown once, on the page that answers create or rotate.
	Secret, SecretClient string
}

// showClients is GET /admin/clients.
func (c *Console) showClients(w http.ResponseWriter, r *http.Request, s staff) {
	c.renderClients(w, r, clientsPage{base: c.base(w, r, s)}, http.StatusOK)
}

func (c *Console) renderClients(w http.ResponseWriter, r *http.Request, p clientsPage, status int) {
	page, err := pageParam(r.URL.Query())
	if err != nil {
		page = 1
	}
	list, total, err := c.opts.Clients.ListClients(r.Context(), (page-1)*pageSize, pageSize)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p.Total = total
	for _, cl := range list {
		p.Rows = append(p.Rows, clientRow{ID: cl.ID, Name: cl.Name, Type: string(cl.Type), AuthMethod: cl.TokenEndpointAuthMethod,
			Grants: strings.Join(cl.GrantTypes, " "), Scopes: strings.Join(cl.Scopes, " "), Thing: cl.ThingID,
			Created: formatTime(cl.Created), Secret: len(cl.SecretHash) > 0})
	}
	p.PrevLink, p.NextLink, _, _ = pager(Path+"/clients", url.Values{}, page, len(list), total)
	c.kit.Render(w, r, status, c.pages.clients, p)
}

// submitCreateClient is POST /admin/clients.
func (c *Console) submitCreateClient(w http.ResponseWriter, r *http.Request, s staff) {
	f := r.PostForm
	spec := ClientSpec{Name: strings.TrimSpace(f.Get("name")), Type: f.Get("type"), AuthMethod: f.Get("authMethod"),
		RedirectURIs: strings.Fields(f.Get("redirectURIs")), GrantTypes: strings.Fields(f.Get("grantTypes")), Scopes: strings.Fields(f.Get("scopes"))}
	p := clientsPage{base: c.base(w, r, s)}
	cl, secret, err := c.opts.Clients.CreateClient(r.Context(), s.actor(), spec)
	switch rf, refused := errors.AsType[ui.Refusal](err); {
	case refused:
		p.New.Name, p.New.Type, p.New.AuthMethod = f.Get("name"), f.Get("type"), f.Get("authMethod")
		p.New.RedirectURIs, p.New.GrantTypes, p.New.Scopes = f.Get("redirectURIs"), f.Get("grantTypes"), f.Get("scopes")
		p.New.Error = rf
		c.renderClients(w, r, p, http.StatusBadRequest)
		return
	case err != nil:
		c.pageError(w, r, err)
		return
	}
	p.Notice = "Client created."
	p.Secret, p.SecretClient = secret, cl.ID
	c.renderClients(w, r, p, http.StatusOK)
}

// submitRotateSecret is POST /admin/clients/{id}/secret: the new secret,
// shown on this page once.
func (c *Console) submitRotateSecret(w http.ResponseWriter, r *http.Request, s staff) {
	id := r.PathValue("id")
	secret, err := c.opts.Clients.RotateSecret(r.Context(), s.actor(), id)
	if rf, ok := errors.AsType[ui.Refusal](err); ok {
		c.message(w, r, http.StatusBadRequest, "No secret to rotate", rf)
		return
	}
	if c.changeFailed(w, r, err) {
		return
	}
	p := clientsPage{base: c.base(w, r, s)}
	p.Notice = "Secret rotated: the old one no longer works."
	p.Secret, p.SecretClient = secret, id
	c.renderClients(w, r, p, http.StatusOK)
}

// submitDeleteClient is POST /admin/clients/{id}/delete.
func (c *Console) submitDeleteClient(w http.ResponseWriter, r *http.Request, s staff) {
	if c.changeFailed(w, r, c.opts.Clients.DeleteClient(r.Context(), s.actor(), r.PathValue("id"))) {
		return
	}
	done(w, r, Path+"/clients", "clientDeleted")
}

type groupRow struct {
	Name    string
	Members []memberRow
}

type memberRow struct{ Kind, Name, Link string }

type platformPage struct {
	base
	Groups       []groupRow
	GroupsTotal  int
	CAs          []*store.ManufacturerCA
	Rules        []TopicRule
	BrokerOff    bool
	Routes       []GatewayRoute
	RoutesError  string
	GatewayOff   bool
	GroupsCapped bool
}

// maxGroups bounds the groups the platform page lists.
const maxGroups = 200

// showPlatform is GET /admin/platform: groups, manufacturer CAs, the
// broker's topic rules and the gateway's routes, to read.
func (c *Console) showPlatform(w http.ResponseWriter, r *http.Request, s staff) {
	ctx := r.Context()
	p := platformPage{base: c.base(w, r, s), Rules: c.opts.TopicRules, BrokerOff: c.opts.TopicRules == nil}
	groups, total, err := c.opts.Identities.ListGroups(ctx, store.Query{SortBy: "displayName", Limit: maxGroups})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	p.GroupsTotal, p.GroupsCapped = total, total > len(groups)
	for _, g := range groups {
		row := groupRow{Name: g.DisplayName}
		for _, m := range g.Members {
			mr := memberRow{Kind: string(m.Kind), Name: m.ID}
			switch m.Kind {
			case store.KindUser:
				mr.Link = pathOf("users", m.ID)
				if u, err := c.opts.Identities.GetUser(ctx, m.ID); err == nil {
					mr.Name = u.UserName
				}
			case store.KindThing:
				mr.Link = pathOf("things", m.ID)
			}
			row.Members = append(row.Members, mr)
		}
		p.Groups = append(p.Groups, row)
	}
	if p.CAs, err = c.opts.Authorities.ListCAs(ctx); err != nil {
		c.pageError(w, r, err)
		return
	}
	if c.opts.Gateway == nil {
		p.GatewayOff = true
	} else if routes, err := c.opts.Gateway.Routes(); err != nil {
		p.Routes, p.RoutesError = routes, err.Error()
	} else {
		p.Routes = routes
	}
	c.kit.Render(w, r, http.StatusOK, c.pages.platform, p)
}
