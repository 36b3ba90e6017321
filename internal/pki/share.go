package pki

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/thingid/thingid/internal/atomicfile"
)

// The platform CA and the device issuing CA are one for every node of a
// database: the first node stores the files Open made in its directory, and
// the others write those files into theirs before Open (server.Platform.PKI).

// sharedFiles are the CA files of a pki directory, in the order they are
// written: the root's certificate last, as Open and Import.install do, so
// that a root certificate in the directory means a complete set.
var sharedFiles = []string{deviceCAKeyFile, deviceCACertFile, caKeyFile, CACertFile}

// ReadCAFiles returns the CA files of dir (after Open), to be stored.
func ReadCAFiles(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, name := range sharedFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read the CA files to share: %w", err)
		}
		files[name] = b
	}
	return files, nil
}

// HasCA says whether dir holds a platform CA already.
func HasCA(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CACertFile))
	return err == nil
}

// WriteCAFiles makes files (ReadCAFiles of the node that stored them) the
// CAs of dir. A file missing in dir is written; a certificate there must be
// the same, or dir holds a CA of its own and the error says so; a sealed key
// there is kept (sealing is randomized: its certificate says whose it is).
// With replace, what dir holds is overwritten: a node whose CAs, just
// created, lost the race to be stored.
func WriteCAFiles(dir string, files map[string][]byte, replace bool) error {
	for _, name := range sharedFiles {
		if len(files[name]) == 0 {
			return fmt.Errorf("the database holds no %s among the platform's CA files", name)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, name := range sharedFiles {
		path := filepath.Join(dir, name)
		have, err := os.ReadFile(path)
		switch {
		case replace || errors.Is(err, os.ErrNotExist):
		case err != nil:
			return err
		case strings.HasSuffix(name, ".crt") && !bytes.Equal(have, files[name]):
			return fmt.Errorf("%s is not the CA every other node of this database uses: this node's data directory has a CA of its own. Move %s away to take the database's CA (certificates this node issued alone stop verifying), or give this node the database it was set up with", path, dir)
		default:
			continue
		}
		mode := os.FileMode(0o644)
		if !strings.HasSuffix(name, ".crt") {
			mode = 0o600
		}
		if err := atomicfile.Write(path, files[name], mode); err != nil {
			return err
		}
	}
	return nil
}
