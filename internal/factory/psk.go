package factory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thingid/thingid/internal/atomicfile"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
)

// The files of a device's pre-shared key in its directory: the identity
// (no secret) and the key (0600), one line each, as `coap-client -u` and
// `-k` take them.
const (
	PSKIdentityFile = "psk.identity"
	PSKKeyFile      = "psk.key"
)

// newPSK issues a key for the thing and writes its files in dir.
func newPSK(master secrets.Key, thingID, dir string) (*store.ThingPSK, error) {
	in, row, err := psk.Issue(master, thingID)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, PSKKeyFile), []byte(in.Key+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, PSKIdentityFile), []byte(in.Identity+"\n"), 0o644); err != nil {
		return nil, err
	}
	return row, nil
}

// recoverPSK is the key an interrupted run wrote in dir for the thing, or a
// new one when it wrote none (it stopped before, or the run before had no
// --psk).
func recoverPSK(master secrets.Key, thingID, dir string) (*store.ThingPSK, error) {
	id, errID := os.ReadFile(filepath.Join(dir, PSKIdentityFile))
	key, errKey := os.ReadFile(filepath.Join(dir, PSKKeyFile))
	if errors.Is(errID, os.ErrNotExist) || errors.Is(errKey, os.ErrNotExist) {
		return newPSK(master, thingID, dir)
	}
	if err := errors.Join(errID, errKey); err != nil {
		return nil, err
	}
	row, err := psk.Seal(master, psk.Issued{Identity: strings.TrimSpace(string(id)), Key: strings.TrimSpace(string(key))})
	if err != nil || row.ThingID != thingID {
		return nil, fmt.Errorf("%s and %s are not a key of thing %s (%v); move them away and run again", PSKIdentityFile, PSKKeyFile, thingID, err)
	}
	return row, nil
}

// PSKThings is what IssuePSK needs from identity.Service.
type PSKThings interface {
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	SetThingPSKs(ctx context.Context, actor string, keys []*store.ThingPSK) error
}

// IssuePSK gives one thing a new pre-shared key, replacing the one it had
// (whose sessions end), and returns it: the only time it is shown.
func IssuePSK(ctx context.Context, things PSKThings, master secrets.Key, actor, thingID string) (psk.Issued, error) {
	if _, err := things.GetThing(ctx, thingID); err != nil {
		return psk.Issued{}, fmt.Errorf("thing %q: %w", thingID, err)
	}
	in, row, err := psk.Issue(master, thingID)
	if err != nil {
		return psk.Issued{}, err
	}
	if err := things.SetThingPSKs(ctx, actor, []*store.ThingPSK{row}); err != nil {
		return psk.Issued{}, err
	}
	return in, nil
}
