// Package secrets holds the master key that encrypts thingid's private keys at rest
// and seals and opens data with it (AES-256-GCM). It knows nothing of what it seals.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Key is a 32-byte AES-256 master key.
type Key [32]byte

// LoadOrCreate returns the configured key (base64) when set; otherwise it reads
// the key file in dir, creating it with a fresh random key (0600) on first use.
func LoadOrCreate(dir, configured string) (Key, error) {
	var k Key
	if configured != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(configured))
		if err != nil || len(b) != len(k) {
			return k, errors.New("masterKey: must be 32 bytes in base64 (openssl rand -base64 32)")
		}
		copy(k[:], b)
		return k, nil
	}
	path := filepath.Join(dir, "master.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := rand.Read(k[:]); err != nil {
			return k, err
		}
		enc := base64.StdEncoding.EncodeToString(k[:]) + "\n"
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return k, fmt.Errorf("create master key: %w", err)
		}
		if _, err := f.WriteString(enc); err != nil {
			f.Close()
			return k, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return k, err
		}
		return k, f.Close()
	}
	if err != nil {
		return k, fmt.Errorf("read master key: %w", err)
	}
	d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(d) != len(k) {
		return k, fmt.Errorf("master key %s is damaged: want 32 bytes in base64", path)
	}
	copy(k[:], d)
	return k, nil
}

// Seal encrypts plaintext; label binds the ciphertext to its purpose (a file name)
// so that one sealed blob cannot be swapped for another.
func (k Key) Seal(plaintext []byte, label string) ([]byte, error) {
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, []byte(label)), nil
}

// Open decrypts what Seal produced with the same label.
func (k Key) Open(sealed []byte, label string) ([]byte, error) {
	aead, err := k.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	n := aead.NonceSize()
	p, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(label))
	if err != nil {
		return nil, errors.New("cannot decrypt: wrong master key or damaged data")
	}
	return p, nil
}

func (k Key) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
