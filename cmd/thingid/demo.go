package main

import (
	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/demo"
)

func newDemo(g *globals) *cobra.Command {
	var exit bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Play the smart-speaker story on a fresh platform, then leave it running to explore",
		Long: `Start thingid in this process on a fresh data directory (--home, which must not exist
or be empty; a temporary one by default) with its gateway and MQTT broker, put a
demo cloud API behind the gateway, issue a factory batch of speakers, register a
user, and walk the story one line per step: call home, pairing with the user code,
cloud API call, MQTT telemetry, a CoAP thermostat with a pre-shared key whose
telemetry reaches the cloud service over MQTT, throttling, a friend's playlist
shared (UMA),
unlinking, the speaker locked out; then a household: the owner's child is invited,
pairs the speaker in the kids' room, and outside her hours (07:00–20:00 on the
household's clock, whose time zone the demo picks so that it is past 20:00 there)
her stream is ended at the broker and her speaker refused at the gateway.

The listeners take http.address, gateway.address, mqtt.tls.address and
coap.dtlsAddress from the configuration (file, THINGID_* variables, flags); a port that is taken is replaced
by a free one. The rest of the configuration is the defaults: the demo never opens
another data directory or database. The platform's log goes to thingid.log in the
data directory.

Without --exit the platform keeps serving after the story, with the URLs to explore,
until Ctrl-C. With --exit the command ends after the story: status 0 only if every
step succeeded, otherwise 1 with the step that failed.`,
		Example: `  thingid demo
  thingid demo --exit --home /tmp/demo`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, nil)
			if err != nil {
				return err
			}
			return demo.Run(cmd.Context(), demo.Options{
				Home:           g.home,
				HTTPAddress:    cfg.HTTP.Address,
				GatewayAddress: cfg.Gateway.Address,
				BrokerAddress:  cfg.MQTT.TLS.Address,
				CoAPAddress:    cfg.CoAP.DTLSAddress,
				Log:            cfg.Log,
				Exit:           exit,
				Out:            cmd.OutOrStdout(),
			})
		},
	}
	cmd.Flags().BoolVar(&exit, "exit", false, "end after the story: status 0 only if every step succeeded")
	return cmd
}
