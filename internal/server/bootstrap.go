package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
)

// AdminPasswordFile holds the first administrator's password, readable by the owner only.
const AdminPasswordFile = "admin-password.txt"

// bootstrapAdmin creates the administrators group and the first administrator when
// they do not exist yet. The generated password is shown once and written to a
// 0600 file in the data directory.
func (p *Platform) bootstrapAdmin(ctx context.Context, out io.Writer) error {
	const actor = "system:bootstrap"
	groupID, err := p.adminGroup(ctx, actor)
	if err != nil {
		return err
	}
	name := p.Config.Admin.UserName
	if _, err := p.Identity.GetUserByName(ctx, name); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	pw := rand.Text() // 26 base32 characters, 130 bits
	u, err := p.Identity.CreateUser(ctx, actor, &store.User{UserName: name, DisplayName: "Administrator", MustChangePassword: true}, pw)
	if errors.Is(err, store.ErrConflict) {
		return nil // another node created it a moment ago
	}
	if err != nil {
		return err
	}
	if _, err := p.Identity.UpdateGroup(ctx, actor, groupID, 0, func(g *store.Group) error {
		g.Members = append(g.Members, store.Ref{Kind: store.KindUser, ID: u.ID})
		return nil
	}); err != nil {
		return err
	}
	path := filepath.Join(p.Config.Home, AdminPasswordFile)
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fmt.Fprintf(out, "\nCreated the first administrator %q with the one-time password:\n\n    %s\n\n"+
		"It is shown only this once and kept in %s (mode 0600) until it is changed.\n"+
		"Sign in at %s/signin and choose a new password: until then it opens nothing else.\n\n", name, pw, path, p.Config.HTTP.PublicURL)
	return nil
}

// forgetAdminPassword deletes the first administrator's one-time password
// file once that password has been changed (now, and whenever a password
// change is published), so that a stale secret does not linger in the data
// directory. Every node checks its own data directory. It returns the
// function that stops watching.
func (p *Platform) forgetAdminPassword(ctx context.Context, log *slog.Logger) (stop func()) {
	check := func() {
		path := filepath.Join(p.Config.Home, AdminPasswordFile)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return
		}
		u, err := p.Identity.GetUserByName(ctx, p.Config.Admin.UserName)
		if err != nil || u.MustChangePassword {
			return
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot delete the first administrator's one-time password file", "path", path, "err", err)
			return
		}
		log.Info("deleted the first administrator's one-time password file: the password has been changed", "path", path)
	}
	check()
	return p.Bus.Subscribe(func(e events.Event) {
		if e.Type == "user.password" {
			go check() // subscribers must return at once; this reads the store
		}
	})
}

// adminGroup returns the ID of the administrators group, creating it if needed.
func (p *Platform) adminGroup(ctx context.Context, actor string) (string, error) {
	find := func() ([]*store.Group, error) {
		gs, _, err := p.Identity.ListGroups(ctx, store.Query{
			Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: authn.AdminGroup}, Limit: 1,
		})
		return gs, err
	}
	gs, err := find()
	if err != nil {
		return "", err
	}
	if len(gs) == 1 {
		return gs[0].ID, nil
	}
	g, err := p.Identity.CreateGroup(ctx, actor, &store.Group{DisplayName: authn.AdminGroup})
	if errors.Is(err, store.ErrConflict) {
		if gs, err = find(); err == nil && len(gs) == 1 {
			return gs[0].ID, nil
		}
	}
	if err != nil {
		return "", err
	}
	return g.ID, nil
}
