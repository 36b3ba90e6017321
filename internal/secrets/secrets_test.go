package secrets

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestKeyFileCreatedOnceWithOwnerOnlyMode(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("master.key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreate(dir, "")
	if err != nil || k1 != k2 {
		t.Fatalf("second load gave another key (err %v)", err)
	}
}

func TestConfiguredKey(t *testing.T) {
	if _, err := LoadOrCreate(t.TempDir(), "c2hvcnQ="); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	k, err := LoadOrCreate(t.TempDir(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	if err != nil || k != (Key{}) {
		t.Fatalf("k=%x err=%v", k, err)
	}
}

func TestSealOpen(t *testing.T) {
	k, _ := LoadOrCreate(t.TempDir(), "")
	sealed, err := k.Seal([]byte("private key"), "ca.key")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private key")) {
		t.Fatal("plaintext visible in sealed data")
	}
	if p, err := k.Open(sealed, "ca.key"); err != nil || string(p) != "private key" {
		t.Fatalf("open: %q %v", p, err)
	}
	// A blob sealed for one file must not open as another.
	if _, err := k.Open(sealed, "server.key"); err == nil {
		t.Error("opened with the wrong label")
	}
	other, _ := LoadOrCreate(t.TempDir(), "")
	if _, err := other.Open(sealed, "ca.key"); err == nil {
		t.Error("opened with the wrong key")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := k.Open(sealed, "ca.key"); err == nil {
		t.Error("opened tampered data")
	}
	if _, err := k.Open([]byte{1, 2}, "ca.key"); err == nil {
		t.Error("opened a too-short blob")
	}
}
