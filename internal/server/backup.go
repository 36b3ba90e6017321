package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/mqtt"
)

// BackupItem is one part of a backup and what became of it.
type BackupItem struct {
	Name string // as in the data directory: thingid.db, master.key, pki, mqtt/mqtt-sessions.db
	Note string // copied, or why not
}

// Backup writes a consistent copy of a single node's state into the new
// directory out, laid out as a data directory (restore: stop, copy it back,
// start; docs/deployment.md): a snapshot of the SQLite database taken while
// the server may write, the master key file, the platform's CAs and server
// certificate, and the broker's retained messages and persistent sessions
// when no broker holds them. On PostgreSQL it refuses, naming pg_dump, and
// leaves nothing behind.
func (p *Platform) Backup(ctx context.Context, out string) ([]BackupItem, error) {
	snap, ok := p.Store.(snapshotter)
	if !ok {
		return nil, fmt.Errorf("backup: the %s store cannot be snapshot", p.Config.Storage.Type)
	}
	if err := os.Mkdir(out, 0o700); err != nil {
		return nil, fmt.Errorf("--out %s: %w (name a new directory)", out, err)
	}
	items, err := p.backupInto(ctx, snap, out)
	if err != nil {
		os.RemoveAll(out) // made above, by this call: no half backup is left to restore from
		return nil, err
	}
	return items, nil
}

// snapshotter is a store that copies itself consistently while in use
// (sqlstore on SQLite; on PostgreSQL it answers that pg_dump does).
type snapshotter interface {
	Snapshot(ctx context.Context, path string) error
}

func (p *Platform) backupInto(ctx context.Context, snap snapshotter, out string) ([]BackupItem, error) {
	if err := snap.Snapshot(ctx, filepath.Join(out, "thingid.db")); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	items := []BackupItem{{"thingid.db", "snapshot"}}

	if p.Config.MasterKey != "" {
		items = append(items, BackupItem{"master.key", "not copied: masterKey comes from the configuration; keep it from its secret store"})
	} else {
		if err := copyFile(filepath.Join(p.Config.Home, "master.key"), filepath.Join(out, "master.key")); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		items = append(items, BackupItem{"master.key", "copied"})
	}

	pki := filepath.Join(p.Config.Home, "pki")
	entries, err := os.ReadDir(pki)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Mkdir(filepath.Join(out, "pki"), 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == ".lock" { // the lock only orders processes opening the CAs
			continue
		}
		if err := copyFile(filepath.Join(pki, e.Name()), filepath.Join(out, "pki", e.Name())); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		n++
	}
	items = append(items, BackupItem{"pki", fmt.Sprintf("%d files copied", n)})

	sessions := BackupItem{Name: "mqtt/mqtt-sessions.db", Note: "copied"}
	if err := os.Mkdir(filepath.Join(out, "mqtt"), 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	switch err := broker.CopySessions(p.Config.MQTT.Dir, filepath.Join(out, "mqtt")); {
	case errors.Is(err, mqtt.ErrBoltHeld):
		sessions.Note = "not copied: the running server holds it; a restore from this backup starts with no retained messages and no persistent MQTT sessions (stop the server for a backup that has them)"
	case errors.Is(err, fs.ErrNotExist):
		sessions.Note = "none (the broker never ran on this data directory)"
	case err != nil:
		return nil, fmt.Errorf("backup: %w", err)
	}
	return append(items, sessions), nil
}

// copyFile copies the regular file src into the new file dst, with src's
// permission bits, and syncs it.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
