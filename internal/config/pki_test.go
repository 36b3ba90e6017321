package config

import (
	"strings"
	"testing"
	"time"
)

func TestPKIValidate(t *testing.T) {
	for name, c := range map[string]struct {
		mutate func(*PKI)
		want   string // "" for valid
	}{
		"defaults":      {func(*PKI) {}, ""},
		"imported root": {func(p *PKI) { p.CACertFile, p.CAKeyFile = "root.pem", "root.key" }, ""},
		"imported root and issuer": {func(p *PKI) {
			p.CACertFile, p.CAKeyFile, p.IssuingCACertFile, p.IssuingCAKeyFile = "r", "rk", "i", "ik"
		}, ""},
		"certificate without key": {func(p *PKI) { p.CACertFile = "root.pem" }, "pki.caCertFile and pki.caKeyFile"},
		"issuing key alone":       {func(p *PKI) { p.IssuingCAKeyFile = "i.key" }, "pki.issuingCACertFile and pki.issuingCAKeyFile"},
		"issuing without root":    {func(p *PKI) { p.IssuingCACertFile, p.IssuingCAKeyFile = "i", "ik" }, "pki.issuingCACertFile: needs"},
		"short device lifetime":   {func(p *PKI) { p.DeviceCertLifetime = Duration(time.Minute) }, "pki.deviceCertLifetime"},
		"short CRL lifetime":      {func(p *PKI) { p.CRLLifetime = Duration(time.Minute) }, "pki.crlLifetime"},
		"long CRL lifetime":       {func(p *PKI) { p.CRLLifetime = Duration(800 * time.Hour) }, "pki.crlLifetime"},
		"http CRL URL":            {func(p *PKI) { p.CRLURL = "http://crl.example.com/thingid.crl" }, ""},
		"CRL URL not http":        {func(p *PKI) { p.CRLURL = "ldap://crl.example.com/x" }, "pki.crlURL"},
		"CRL URL relative":        {func(p *PKI) { p.CRLURL = "/pki/crl" }, "pki.crlURL"},
	} {
		p := defaultPKI()
		c.mutate(&p)
		err := p.validate("/home")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	c, err := Load("", []string{"THINGID_PKI_CACERTFILE=/etc/ca.pem", "THINGID_PKI_CAKEYFILE=/etc/ca.key", "THINGID_PKI_CRLLIFETIME=48h"})
	if err != nil || c.PKI.CACertFile != "/etc/ca.pem" || c.PKI.CRLLifetime != Duration(48*time.Hour) {
		t.Fatalf("environment: %v %+v", err, c.PKI)
	}
}
