package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/schollz/progressbar/v3"

	"github.com/thingid/thingid/bench/internal/loopback"
)

// slapdConf is a back-mdb database with an equality index on what the
// searches filter by, and substring indexes on mail and serialNumber (as
// an operator would index them); {ARGON2} verifies thingid's hashes.
const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload argon2
pidfile {{dir}}/slapd.pid
argsfile {{dir}}/slapd.args
TLSCertificateFile {{cert}}
TLSCertificateKeyFile {{key}}
database mdb
maxsize 17179869184
suffix "` + suffix + `"
rootdn "` + slapdRootDN + `"
rootpw "` + slapdRootPW + `"
directory {{dir}}/mdb
index objectClass eq
index uid,entryUUID eq
index mail,serialNumber eq,sub
`

// startSlapd writes the data set as LDIF, loads it with slapadd, and runs
// slapd on a free loopback port until stop.
func startSlapd(bin, parent string, cert *certificate, hash string, p params) (target, func(), error) {
	dir := filepath.Join(parent, "slapd")
	if err := os.MkdirAll(filepath.Join(dir, "mdb"), 0o700); err != nil {
		return target{}, nil, err
	}
	conf := filepath.Join(dir, "slapd.conf")
	text := strings.NewReplacer("{{dir}}", dir, "{{cert}}", cert.certFile, "{{key}}", cert.keyFile).Replace(slapdConf)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return target{}, nil, err
	}
	start := time.Now()
	data := filepath.Join(dir, "data.ldif")
	if err := writeLDIF(data, hash, p); err != nil {
		return target{}, nil, err
	}
	slapadd := filepath.Join(filepath.Dir(bin), "slapadd")
	if out, err := exec.Command(slapadd, "-q", "-f", conf, "-l", data).CombinedOutput(); err != nil {
		return target{}, nil, fmt.Errorf("slapadd: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "slapd: loaded %d people and %d devices (LDIF, slapadd -q) in %s\n", p.people, p.devices, time.Since(start).Round(time.Second))
	addr, err := loopback.FreeAddr()
	if err != nil {
		return target{}, nil, err
	}
	cmd := exec.Command(bin, "-d", "0", "-f", conf, "-h", "ldaps://"+addr+"/")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	if err := loopback.WaitListening(addr); err != nil {
		stop()
		return target{}, nil, err
	}
	userDN := func(i int) string { return "uid=" + uid(i) + ",ou=people," + suffix }
	return target{name: "slapd", pid: cmd.Process.Pid, url: "ldaps://" + addr, tls: cert.client, userDN: userDN,
		admin: func(c *ldap.Conn) error { return c.Bind(slapdRootDN, slapdRootPW) },
	}, stop, nil
}

// writeLDIF writes the data set as thingid's directory shows it: the same
// DNs, entryUUIDs and attributes (devices without thingid's auxiliary
// class, which slapd's schema does not have).
func writeLDIF(path, hash string, p params) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "dn: %s\nobjectClass: top\nobjectClass: domain\ndc: example\n\n", suffix)
	for _, ou := range []string{"people", "devices", "groups"} {
		fmt.Fprintf(w, "dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n", ou, suffix, ou)
	}
	bar := progressbar.Default(int64(p.people+p.devices), "slapd: LDIF")
	for i := range p.people {
		fmt.Fprintf(w, "dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: User %d\nsn: Surname%d\ngivenName: User\ndisplayName: User %d\nmail: %s\nentryUUID: %s\n",
			uid(i), suffix, uid(i), i, i, i, mail(i), personID(i))
		if i < p.bindUsers {
			fmt.Fprintf(w, "userPassword: {ARGON2}%s\n", hash)
		}
		w.WriteString("\n")
		if i%10000 == 9999 {
			bar.Add(10000)
		}
	}
	for i := range p.devices {
		fmt.Fprintf(w, "dn: cn=%s,ou=devices,%s\nobjectClass: device\ncn: %s\nserialNumber: %s\nl: room %d\nowner: uid=%s,ou=people,%s\ndescription: Device %d\nentryUUID: %s\n\n",
			deviceID(i), suffix, deviceID(i), serial(i), i%100, uid(owner(i, p)), suffix, i, deviceID(i))
		if i%10000 == 9999 {
			bar.Add(10000)
		}
	}
	bar.Finish()
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
