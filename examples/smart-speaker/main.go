// Command smart-speaker simulates the smart speaker of thingid's story on the
// terminal: it calls home with its factory certificate, shows a user code on
// its one-line display until its owner pairs it at /device, then calls the
// manufacturer's cloud API through the identity gateway, plays the playlist
// of --playlist when somebody shares it with its owner (UMA 2.0), publishes
// telemetry and obeys commands over MQTT, and goes back to showing a user
// code when its owner unlinks it (or exits, with --once).
//
//	thingid factory issue --model Speaker --count 1 --out factory
//	go run ./examples/smart-speaker --ca $THINGID_HOME/pki/ca.crt \
//	    --cert factory/Speaker-000001/device.pem --key factory/Speaker-000001/device.key
//
// See docs/examples.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/thingid/thingid/examples/internal/cli"
	"github.com/thingid/thingid/examples/smart-speaker/speaker"
)

func main() {
	var cfg speaker.Config
	var caFile, scopes string
	flag.StringVar(&cfg.Server, "server", "https://localhost:8443", "the platform's base URL (its OAuth issuer)")
	flag.StringVar(&caFile, "ca", "", "PEM file of the CA of the platform's TLS certificates (thingid's home/pki/ca.crt); empty: the system's")
	flag.StringVar(&cfg.CertFile, "cert", "device.pem", "the factory's device certificate chain (PEM)")
	flag.StringVar(&cfg.KeyFile, "key", "device.key", "the factory's device key (PEM)")
	flag.StringVar(&scopes, "scope", "", "space-separated scopes to ask for when pairing; empty: the platform's default for things")
	flag.StringVar(&cfg.GatewayURL, "gateway", "https://localhost:9443", "the identity gateway in front of the cloud API; empty: no API calls")
	flag.StringVar(&cfg.APIPath, "api-path", speaker.DefaultAPIPath, "the cloud API's path behind the gateway")
	flag.DurationVar(&cfg.APIInterval, "api-interval", speaker.DefaultInterval, "time between two cloud API calls")
	flag.StringVar(&cfg.PlaylistURL, "playlist", "", "a playlist behind the gateway's uma route that somebody may share with the owner (https://localhost:9443/music/playlists/ID); empty: none")
	flag.DurationVar(&cfg.PlaylistInterval, "playlist-interval", speaker.DefaultInterval, "time between two requests for the playlist (while it is not shared, at least what the platform asks)")
	flag.StringVar(&cfg.BrokerURL, "broker", "mqtts://localhost:8883", "the MQTT broker; empty: no telemetry and no commands")
	flag.DurationVar(&cfg.TelemetryInterval, "interval", speaker.DefaultInterval, "time between two telemetry messages (and token checks)")
	flag.StringVar(&cfg.StateFile, "state", "", "file keeping the refresh token across restarts (mode 0600); empty: pair at every start")
	flag.BoolVar(&cfg.Once, "once", false, "exit (status 0) when unlinked instead of showing a new user code")
	flag.DurationVar(&cfg.Timeout, "timeout", speaker.DefaultTimeout, "how long to wait for any answer on the network")
	flag.DurationVar(&cfg.RetryFor, "retry-for", speaker.DefaultRetryFor, "how long to retry a broker, gateway or platform that stopped answering")
	flag.Parse()
	cfg.Scopes = strings.Fields(scopes)
	cfg.Display = func(line string) { fmt.Printf("┃ %s\n", line) }
	cfg.Events = func(e speaker.Event) {
		fmt.Printf("%s %-19s %s\n", e.Time.Format(time.TimeOnly), e.Step, e.Message)
	}
	cli.Main("smart-speaker", func(ctx context.Context) error {
		roots, err := cli.Roots(caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = roots
		return speaker.Run(ctx, cfg)
	})
}
