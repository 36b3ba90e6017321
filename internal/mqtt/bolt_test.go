package mqtt

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// CopyBolt refuses a file a broker holds, and copies one none holds with
// everything in it; a missing file is fs.ErrNotExist.
func TestCopyBolt(t *testing.T) {
	dir, dst := t.TempDir(), t.TempDir()
	if err := CopyBolt(filepath.Join(dir, "s.db"), filepath.Join(dst, "none.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	b, err := OpenBolt(dir, "s.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PutRetained(&Message{Topic: "home/t", Payload: []byte("21"), Retain: true}); err != nil {
		t.Fatal(err)
	}
	if err := CopyBolt(filepath.Join(dir, "s.db"), filepath.Join(dst, "held.db")); !errors.Is(err, ErrBoltHeld) {
		t.Errorf("a file the broker holds: %v", err)
	}
	b.Close()
	if err := CopyBolt(filepath.Join(dir, "s.db"), filepath.Join(dst, "s.db")); err != nil {
		t.Fatal(err)
	}
	c, err := OpenBolt(dst, "s.db")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	snap, err := c.Load()
	if err != nil || len(snap.Retained) != 1 || string(snap.Retained[0].Payload) != "21" {
		t.Errorf("the copy's retained messages: %+v %v", snap, err)
	}
}
