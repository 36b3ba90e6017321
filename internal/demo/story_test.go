package demo

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseManifest(t *testing.T) {
	ds, err := parseManifest(strings.NewReader("thing_id,serial,mac,cert_sha256\nt1,S-1,aa:bb:cc:dd:ee:ff,00\n"), "/batch")
	if err != nil || len(ds) != 1 || ds[0].Thing != "t1" || ds[0].CertFile != "/batch/S-1/device.pem" || ds[0].KeyFile != "/batch/S-1/device.key" {
		t.Fatalf("%+v %v", ds, err)
	}
	for name, m := range map[string]string{
		"header only":          "thing_id,serial\n",
		"empty":                "",
		"serial leaves dir":    "thing_id,serial\nt1,../../etc\n",
		"one column":           "thing_id\nt1\n",
		"ragged (csv refuses)": "thing_id,serial\nt1,S-1,x\n",
	} {
		if ds, err := parseManifest(strings.NewReader(m), "/batch"); err == nil {
			t.Errorf("%s: %+v", name, ds)
		}
	}
}

// The manifest is a file on disk: whatever it holds, parsing fails or
// names device files inside the batch directory.
func FuzzParseManifest(f *testing.F) {
	f.Add("thing_id,serial,mac,cert_sha256\nt1,S-1,aa,00\n")
	f.Add("a\n\"b")
	f.Add("x,..\ny,.\n")
	f.Fuzz(func(t *testing.T, m string) {
		ds, err := parseManifest(strings.NewReader(m), "/batch")
		if err != nil {
			return
		}
		for _, d := range ds {
			if filepath.Dir(filepath.Dir(d.CertFile)) != "/batch" {
				t.Errorf("device file outside the batch: %s", d.CertFile)
			}
		}
	})
}

// The household's zone puts its clock at bedtimeHour whatever the hour on
// the server, and is one IANA knows.
func TestBedtimeZone(t *testing.T) {
	for h := range 24 {
		now := time.Date(2026, 3, 29, h, 17, 0, 0, time.UTC)
		name := bedtimeZone(now)
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatalf("at %02d:17 UTC: %s: %v", h, name, err)
		}
		if got := now.In(loc).Hour(); got != bedtimeHour {
			t.Errorf("at %02d:17 UTC, %s reads %02d:17, want %02d:17", h, name, got, bedtimeHour)
		}
	}
}
