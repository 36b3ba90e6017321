package config

import (
	"fmt"
	"net/url"
	"time"
)

// PKI configures the platform CA, device certificates and the CRL.
type PKI struct {
	// CACertFile/CAKeyFile: PEM files of an existing root CA (the key in
	// PKCS#8, SEC 1 or PKCS#1, unencrypted) imported on first start instead of
	// generating one; empty: generated.
	CACertFile string `json:"caCertFile"`
	CAKeyFile  string `json:"caKeyFile"`
	// IssuingCACertFile/IssuingCAKeyFile: the device issuing CA under that
	// root, imported too; empty: generated under the root.
	IssuingCACertFile string `json:"issuingCACertFile"`
	IssuingCAKeyFile  string `json:"issuingCAKeyFile"`
	// DeviceCertLifetime is the validity of device certificates whose issuer
	// (factory, EST) asks for none.
	DeviceCertLifetime Duration `json:"deviceCertLifetime"`
	// CRLLifetime is how long a CRL is valid (thisUpdate to nextUpdate).
	CRLLifetime Duration `json:"crlLifetime"`
	// CRLURL is the CRL distribution point written into device certificates;
	// empty: http.publicURL + /pki/crl.
	CRLURL string `json:"crlURL"`
}

func defaultPKI() PKI {
	return PKI{DeviceCertLifetime: Duration(5 * 365 * 24 * time.Hour), CRLLifetime: Duration(24 * time.Hour)}
}

// validate checks the section; home is the data directory.
func (c *PKI) validate(home string) error {
	if (c.CACertFile == "") != (c.CAKeyFile == "") {
		return fmt.Errorf("pki.caCertFile and pki.caKeyFile: set both or neither")
	}
	if (c.IssuingCACertFile == "") != (c.IssuingCAKeyFile == "") {
		return fmt.Errorf("pki.issuingCACertFile and pki.issuingCAKeyFile: set both or neither")
	}
	if c.IssuingCACertFile != "" && c.CACertFile == "" {
		return fmt.Errorf("pki.issuingCACertFile: needs its root in pki.caCertFile and pki.caKeyFile")
	}
	if c.DeviceCertLifetime < Duration(time.Hour) {
		return fmt.Errorf("pki.deviceCertLifetime: must be at least 1h")
	}
	if c.CRLLifetime < Duration(time.Hour) || c.CRLLifetime > Duration(31*24*time.Hour) {
		return fmt.Errorf("pki.crlLifetime: must be between 1h and 744h (31 days)")
	}
	if c.CRLURL != "" {
		u, err := url.Parse(c.CRLURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			return fmt.Errorf("pki.crlURL: %q must be an http or https URL without fragment", c.CRLURL)
		}
	}
	return nil
}
