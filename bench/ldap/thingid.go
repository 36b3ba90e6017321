package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/schollz/progressbar/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/directory"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// certificate is the one server certificate both servers present.
type certificate struct {
	pair              tls.Certificate
	client            *tls.Config // trusts it, for 127.0.0.1
	certFile, keyFile string
}

func newCertificate(dir string) (*certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c := &certificate{certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key")}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c.pair = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	c.client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return c, nil
}

// hashPassword is the argon2id hash of benchPW both servers check: thingid's
// own parameters (password.Hash), which slapd's argon2 module verifies.
func hashPassword() (string, error) { return password.Hash(benchPW) }

// person and thing are the i-th person and device of the data set.
func person(i int, hash string) *store.User {
	u := &store.User{Meta: store.Meta{ID: personID(i)}, UserName: uid(i), DisplayName: fmt.Sprintf("User %d", i), Status: store.StatusActive,
		Name:   store.Name{GivenName: "User", FamilyName: fmt.Sprintf("Surname%d", i)},
		Emails: []store.MultiValue{{Value: mail(i), Primary: true}}}
	if hash != "" {
		u.PasswordHash = hash
	}
	return u
}

func thing(i int) *store.Thing {
	return &store.Thing{Meta: store.Meta{ID: deviceID(i)}, Type: store.ThingDevice, Status: store.StatusActive, DisplayName: fmt.Sprintf("Device %d", i),
		SerialNumber: serial(i), Manufacturer: "Acme", Model: "S1", Location: fmt.Sprintf("room %d", i%100)}
}

// serveFlag runs this binary as thingid's server, a child process of the
// benchmark as slapd is: each server's CPU time is its process's.
const serveFlag = "serve-thingid"

// startThingid runs this binary with -serve-thingid: it loads the data set
// and serves the directory, and says its URL on its standard output. Its
// standard input closing stops it.
func startThingid(dir string, cert *certificate, p params, cpuprofile string) (target, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return target{}, nil, err
	}
	cmd := exec.Command(exe, "-"+serveFlag, dir, "-people", fmt.Sprint(p.people), "-devices", fmt.Sprint(p.devices),
		"-bind-users", fmt.Sprint(p.bindUsers), "-cpuprofile", cpuprofile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return target{}, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return target{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() { stdin.Close(); _ = cmd.Wait() }
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return target{}, nil, fmt.Errorf("the server did not start: %w", err)
	}
	userDN := func(i int) string { return "uid=" + uid(i) + ",ou=people," + suffix }
	return target{name: "thingid", pid: cmd.Process.Pid, url: strings.TrimSpace(url), tls: cert.client, userDN: userDN,
		admin: func(c *ldap.Conn) error { return c.Bind("uid="+adminUID+",ou=people,"+suffix, benchPW) },
	}, stop, nil
}

// serveThingid loads the data set into a fresh SQLite store in dir and
// serves thingid's directory on it, over LDAPS on loopback, as the
// platform does; sign-in's address throttle is opened wide (every bind
// comes from 127.0.0.1), everything else is as by default. It serves
// until its standard input closes.
func serveThingid(dir string, p params, cpuprofile string) error {
	ctx := context.Background()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	if err != nil {
		return err
	}
	hash, err := os.ReadFile(filepath.Join(dir, "hash"))
	if err != nil {
		return err
	}
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := load(ctx, st, string(hash), p); err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	identities := identity.New(st, events.New(), password.Policy{})
	key := make([]byte, 32)
	sessions := authn.NewSessions(identities, st.(authn.SessionStore), nil, authn.SessionOptions{Key: key, Audit: st, Logger: quiet,
		IPBurst: 1 << 30, IPAttemptsPerMinute: 1 << 30})
	srv, err := directory.New(directory.Options{
		BaseDN: suffix,
		TLS:    &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}},
		Limits: directory.Limits{MaxMessageBytes: 1 << 20, IdleTimeout: time.Hour, ReadTimeout: time.Minute,
			SizeLimit: pagedResults, TimeLimit: time.Hour},
		Store: st, Passwords: sessions, Writer: identities, Log: quiet,
		IsAdministrator: authn.NewAdmins(st, key).IsAdministrator,
		VerifyCertificate: func(context.Context, []*x509.Certificate) (string, error) {
			return "", errors.New("no certificate binds in this benchmark")
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	lim, err := netlimit.New(netlimit.Options{Max: 1024, Log: quiet})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go srv.Serve(lim.Listen(ln, netlimit.Policy{Name: "ldaps", PerAddress: 256}), true)
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("ldaps://%s\n", ln.Addr())
	_, err = io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
	return err
}

// load creates the people, an administrator, the devices and their owners.
func load(ctx context.Context, st store.Store, hash string, p params) error {
	start := time.Now()
	bar := progressbar.Default(int64(p.people+2*p.devices), "thingid: load")
	const batch = 2000
	for i := 0; i < p.people; i += batch {
		err := st.WithTx(ctx, func(tx store.Tx) error {
			for j := i; j < min(i+batch, p.people); j++ {
				h := ""
				if j < p.bindUsers {
					h = hash
				}
				if err := tx.CreateUser(ctx, person(j, h)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("people: %w", err)
		}
		bar.Add(min(batch, p.people-i))
	}
	admin := &store.User{UserName: adminUID, Status: store.StatusActive, PasswordHash: hash}
	if err := st.CreateUser(ctx, admin); err != nil {
		return err
	}
	if err := st.CreateGroup(ctx, &store.Group{DisplayName: authn.AdminGroup, Members: []store.Ref{{Kind: store.KindUser, ID: admin.ID}}}); err != nil {
		return err
	}
	for i := 0; i < p.devices; i += batch {
		things := make([]*store.Thing, 0, batch)
		for j := i; j < min(i+batch, p.devices); j++ {
			things = append(things, thing(j))
		}
		errs, err := st.CreateThings(ctx, things)
		if err == nil {
			err = errors.Join(errs...)
		}
		if err != nil {
			return fmt.Errorf("devices: %w", err)
		}
		bar.Add(len(things))
	}
	for i := 0; i < p.devices; i += batch {
		err := st.WithTx(ctx, func(tx store.Tx) error {
			for j := i; j < min(i+batch, p.devices); j++ {
				if err := tx.AddRelationship(ctx, store.Relationship{Kind: store.RelOwner,
					From: store.Ref{Kind: store.KindUser, ID: personID(owner(j, p))},
					To:   store.Ref{Kind: store.KindThing, ID: deviceID(j)}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("owners: %w", err)
		}
		bar.Add(min(batch, p.devices-i))
	}
	bar.Finish()
	fmt.Fprintf(os.Stderr, "thingid: loaded %d people and %d devices in %s\n", p.people, p.devices, time.Since(start).Round(time.Second))
	return nil
}
