package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// newCAs is `thingid cas`: manufacturer CAs whose devices are provisioned on
// first contact.
func newCAs(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cas", Short: "Manage manufacturer CAs: their devices are provisioned when they first call home"}
	cmd.AddCommand(newCAsAdd(g), newCAsList(g), newCAsDelete(g))
	return cmd
}

// newCerts is `thingid certs`: revocation of device certificates.
func newCerts(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Revoke device certificates"}
	cmd.AddCommand(newCertsRevoke(g))
	return cmd
}

// withCertAuth opens the data directory and the certificate checker.
func (g *globals) withCertAuth(cmd *cobra.Command, fn func(*certauth.Checker) error) error {
	return g.withPlatform(cmd, func(p *server.Platform) error {
		c, err := p.CertAuthAdmin(cmd.Context(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		defer c.Close()
		return fn(c)
	})
}

func newCAsAdd(g *globals) *cobra.Command {
	var (
		spec            certauth.CASpec
		certFile, attrs string
		thingType       string
	)
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Register a manufacturer CA with the template its devices are provisioned from",
		Example: `  thingid cas add --name "Acme plant 7" --cert acme-ca.pem --manufacturer Acme --model T-1000 \
      --serial-from serialNumber --attributes '{"color":"red"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certFile == "" {
				return errors.New("--cert is required: the CA certificate in PEM")
			}
			b, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			spec.Certificate = string(b)
			spec.Template.ThingType = store.ThingType(thingType)
			if attrs != "" {
				if err := json.Unmarshal([]byte(attrs), &spec.Template.Attributes); err != nil {
					return fmt.Errorf("--attributes: want a JSON object such as '{\"color\":\"red\"}': %w", err)
				}
			}
			return g.withCertAuth(cmd, func(c *certauth.Checker) error {
				ca, err := c.AddCA(cmd.Context(), cliActor, spec)
				if err != nil {
					return explainCAErr(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "id: %s\nsubject: %s\nsha256: %s\n", ca.ID, ca.Subject, ca.FingerprintSHA256)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "a name people recognise the CA by (required)")
	f.StringVar(&certFile, "cert", "", "the CA certificate, PEM (required)")
	f.StringVar(&spec.Template.Manufacturer, "manufacturer", "", "manufacturer of the things provisioned (required)")
	f.StringVar(&spec.Template.Model, "model", "", "model of the things provisioned (required)")
	f.StringVar(&spec.Template.SerialFrom, "serial-from", certauth.SerialFromSerialNumber, "certificate field holding the serial number: serialNumber, commonName, dnsName, uri or email")
	f.StringVar(&thingType, "thing-type", "device", "device, service or gateway")
	f.StringVar(&attrs, "attributes", "", "initial attributes of the things, a JSON object")
	return cmd
}

// explainCAErr names the flag behind a refused field.
func explainCAErr(err error) error {
	flags := map[string]string{"name": "--name", "certificate": "--cert", "template.manufacturer": "--manufacturer",
		"template.model": "--model", "template.serialFrom": "--serial-from", "template.thingType": "--thing-type", "template.attributes": "--attributes"}
	var ce *certauth.CAError
	if errors.As(err, &ce) && flags[ce.Field] != "" {
		return fmt.Errorf("%s: %s", flags[ce.Field], ce.Reason())
	}
	return explainStoreErr(err, "this CA certificate", "thingid cas list")
}

func newCAsList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List manufacturer CAs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withCertAuth(cmd, func(c *certauth.Checker) error {
				cas, err := c.ListCAs(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tSUBJECT\tNOT AFTER\tMANUFACTURER\tMODEL\tSERIAL FROM")
				for _, ca := range cas {
					t := ca.Template
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ca.ID, ca.Name, ca.Subject, ca.NotAfter.Format("2006-01-02"), t.Manufacturer, t.Model, t.SerialFrom)
				}
				return w.Flush()
			})
		},
	}
}

func newCAsDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a manufacturer CA: its certificates stop verifying; the things it provisioned stay",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withCertAuth(cmd, func(c *certauth.Checker) error {
				if err := c.DeleteCA(cmd.Context(), cliActor, args[0]); err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return fmt.Errorf("manufacturer CA %s does not exist (see `thingid cas list`)", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted manufacturer CA %s\n", args[0])
				return nil
			})
		},
	}
}

func newCertsRevoke(g *globals) *cobra.Command {
	var (
		r                certauth.Revocation
		certFile, reason string
	)
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate (--cert or --fingerprint), or every certificate recorded on a thing (--thing alone)",
		Long: `Revoke a certificate for good. With --cert the serial number is known and a certificate
of the device issuing CA is listed in the CRL (/pki/crl) too; with --fingerprint it is
refused by thingid only. --thing alone revokes every certificate recorded on the thing.
A running server on the same database refuses the certificate at once (the admin API
is POST /api/v1/admin/revocations).`,
		Example: `  thingid certs revoke --cert device.pem --reason keyCompromise
  thingid certs revoke --thing THING_ID --reason cessationOfOperation`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if r.Reason, err = certauth.ParseReason(reason); err != nil {
				return fmt.Errorf("--reason: %w", err)
			}
			if certFile != "" {
				b, err := os.ReadFile(certFile)
				if err != nil {
					return fmt.Errorf("--cert: %w", err)
				}
				if r.Certificate, err = pki.ParseLeafPEM(b); err != nil {
					return fmt.Errorf("--cert %s: %w", certFile, err)
				}
			}
			return g.withCertAuth(cmd, func(c *certauth.Checker) error {
				done, err := c.Revoke(cmd.Context(), cliActor, r)
				var re *certauth.RevocationError
				if errors.As(err, &re) {
					return fmt.Errorf("--%s: %s", map[string]string{"thingId": "thing", "fingerprint": "fingerprint", "reason": "reason"}[re.Field], re.Reason())
				}
				if err != nil {
					return explainStoreErr(err, "thing "+r.ThingID, listDevices)
				}
				out := cmd.OutOrStdout()
				if len(done) == 0 {
					fmt.Fprintln(out, "already revoked: nothing changed")
				}
				for _, x := range done {
					where := "refused by thingid"
					if x.Authority == certauth.AuthorityPlatform && x.SerialNumber != "" {
						where += " and listed in the CRL"
					}
					fmt.Fprintf(out, "revoked %s (thing %s, serial %s): %s\n", x.FingerprintSHA256, x.ThingID, x.SerialNumber, where)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&r.ThingID, "thing", "", "the thing; alone, every certificate recorded on it")
	f.StringVar(&r.Fingerprint, "fingerprint", "", "SHA-256 of the certificate (hex, colons allowed: openssl x509 -fingerprint -sha256)")
	f.StringVar(&certFile, "cert", "", "the certificate, PEM (the first one of a bundle)")
	f.StringVar(&reason, "reason", "unspecified", "unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn")
	return cmd
}
