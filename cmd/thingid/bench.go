package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/mqttload"
	"github.com/thingid/thingid/internal/server"
)

func newBench(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load generators"}
	cmd.AddCommand(newBenchMQTT(g))
	return cmd
}

// benchMQTTFlags are the flags of `thingid bench mqtt`.
type benchMQTTFlags struct {
	address, cafile, serverName, username, password string
	subscribeAddress                                string
	tls, mint                                       bool
	connections, concurrency, sourceIPs, brokerPID  int
	rounds, first                                   int
	publishers, subscribers, payload, window, rate  int
	qos                                             int
	duration, hold                                  time.Duration
	topic, filter                                   string
	baseline, baselineSubscribe                     string
	baselinePID                                     int
}

func newBenchMQTT(g *globals) *cobra.Command {
	var f benchMQTTFlags
	cmd := &cobra.Command{
		Use:   "mqtt",
		Short: "Connect rate, held connections and publish throughput of an MQTT broker",
		Long: `Runs against any MQTT 5 broker at --address, then (with --baseline) the same
scenario against a second broker without authentication, and prints both with ratios.

1. --connections N: opens N connections (--concurrency at a time, from --source-ips
   loopback addresses 127.0.0.1, 127.0.0.2, ... to get past the ephemeral port range),
   measures CONNECT/CONNACK per second and, with --broker-pid, the broker's resident
   memory per held connection (after --hold, or SIGUSR1 during it, so that other
   generators' connections to other nodes are held at the same time); then closes
   them. --rounds R connects the same N
   clients R times (devices reconnecting with the tokens they hold) and reports the
   last round.
2. --publishers P --subscribers S: P clients publish to --topic ("%s": the client id)
   at --qos for --duration, S clients subscribe to --filter; counts messages per
   second received, the latency from publish to delivery (p50, p99) and, for QoS 1,
   messages acknowledged to publishers but not delivered to every subscriber (lost).
   --subscribe-address puts the subscribers on another broker: another node of a
   cluster, or a broker bridged to the first.

Credentials: --mint-tokens creates things of model thingid-bench in the data directory
(--home) and signs an access token for each (and a service token for subscribers);
--first K uses things K, K+1, ... so that generators running side by side against
the nodes of one cluster log in as different things;
or --username/--password for every client; or none.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBenchMQTT(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.address, "address", "127.0.0.1:8883", "broker host:port")
	fl.StringVar(&f.subscribeAddress, "subscribe-address", "", "host:port subscribers connect to (default: --address)")
	fl.BoolVar(&f.tls, "tls", false, "connect with TLS")
	fl.StringVar(&f.cafile, "cafile", "", "PEM CA certificates to trust for TLS (default: the system's)")
	fl.StringVar(&f.serverName, "server-name", "localhost", "TLS server name to verify")
	fl.BoolVar(&f.mint, "mint-tokens", false, "sign thingid access tokens from the data directory (--home)")
	fl.StringVar(&f.username, "username", "", "user name for every client")
	fl.StringVar(&f.password, "password", "", "password for every client")
	fl.IntVar(&f.connections, "connections", 0, "connections to open and hold")
	fl.IntVar(&f.concurrency, "concurrency", 64, "connections opened in parallel")
	fl.IntVar(&f.sourceIPs, "source-ips", 1, "loopback source addresses to spread connections over (127.0.0.1..)")
	fl.IntVar(&f.rounds, "rounds", 1, "times the same --connections connect (the last round is reported)")
	fl.IntVar(&f.first, "first", 0, "with --mint-tokens: index of the first bench thing to log in as")
	fl.DurationVar(&f.hold, "hold", 0, "how long to hold the connections before measuring the broker's memory and closing them (SIGUSR1 ends it)")
	fl.IntVar(&f.brokerPID, "broker-pid", 0, "process id of the broker, to report its resident memory")
	fl.IntVar(&f.publishers, "publishers", 0, "publishing clients")
	fl.IntVar(&f.subscribers, "subscribers", 1, "subscribing clients (with --publishers)")
	fl.IntVar(&f.qos, "qos", 0, "QoS of publishes and subscriptions: 0 or 1")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "how long publishers publish")
	fl.IntVar(&f.payload, "payload", 64, "payload bytes (at least 24)")
	fl.IntVar(&f.window, "window", 64, "QoS 1 messages a publisher keeps unacknowledged")
	fl.IntVar(&f.rate, "rate", 0, "messages per second of each publisher (0: as fast as the broker takes them)")
	fl.StringVar(&f.topic, "topic", "things/%s/telemetry", `topic of each publisher ("%s": its client id)`)
	fl.StringVar(&f.filter, "filter", "things/+/telemetry", "filter every subscriber subscribes to")
	fl.StringVar(&f.baseline, "baseline", "", "host:port of a second broker (plain TCP, anonymous, e.g. mosquitto) to run the same scenario against")
	fl.StringVar(&f.baselineSubscribe, "baseline-subscribe-address", "", "host:port the baseline's subscribers connect to (a broker bridged to --baseline)")
	fl.IntVar(&f.baselinePID, "baseline-pid", 0, "process id of the baseline broker")
	return cmd
}

func runBenchMQTT(cmd *cobra.Command, g *globals, f benchMQTTFlags) error {
	if f.qos != 0 && f.qos != 1 {
		return fmt.Errorf("--qos: %d is not 0 or 1", f.qos)
	}
	if f.rounds < 1 {
		return fmt.Errorf("--rounds: %d is less than 1", f.rounds)
	}
	if f.connections == 0 && f.publishers == 0 {
		return errors.New("nothing to do: give --connections and/or --publishers")
	}
	if f.first < 0 || f.rate < 0 || f.hold < 0 {
		return fmt.Errorf("--first, --rate and --hold must not be negative")
	}
	if f.sourceIPs < 1 || f.sourceIPs > 254 {
		return fmt.Errorf("--source-ips: %d is outside 1..254", f.sourceIPs)
	}
	raiseFileLimit()
	// SIGUSR1 ends --hold; taken from the start, so that one arriving
	// while connections are still being opened does not end the process.
	release := make(chan os.Signal, 1)
	if f.hold > 0 {
		signal.Notify(release, syscall.SIGUSR1)
		defer signal.Stop(release)
	}
	target := &mqttload.Target{Address: f.address, SubscriberAddress: f.subscribeAddress}
	for i := range f.sourceIPs {
		target.SourceIPs = append(target.SourceIPs, net.IPv4(127, 0, 0, byte(1+i)))
	}
	if f.tls {
		cfg := &tls.Config{ServerName: f.serverName, MinVersion: tls.VersionTLS12}
		if f.cafile != "" {
			pem, err := os.ReadFile(f.cafile)
			if err != nil {
				return fmt.Errorf("--cafile: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--cafile: %s holds no PEM certificate", f.cafile)
			}
		}
		target.TLS = cfg
	}
	anonymous := func(prefix string) func(int) mqttload.Credential {
		return func(i int) mqttload.Credential {
			return mqttload.Credential{ClientID: fmt.Sprintf("%s-%d", prefix, i), Username: f.username, Password: f.password}
		}
	}
	target.Client, target.Subscriber = anonymous("bench"), anonymous("bench-sub")
	if f.mint {
		n := max(f.connections, f.publishers)
		fmt.Fprintf(cmd.ErrOrStderr(), "minting %d thing tokens...\n", n)
		err := g.withPlatform(cmd, func(p *server.Platform) error {
			things, svc, err := p.BenchTokens(cmd.Context(), f.first+n, slog.New(slog.DiscardHandler))
			if err != nil {
				return err
			}
			things = things[f.first:]
			target.Client = func(i int) mqttload.Credential {
				return mqttload.Credential{ClientID: things[i%len(things)].ClientID, Username: "bench", Password: things[i%len(things)].Token}
			}
			target.Subscriber = func(j int) mqttload.Credential {
				return mqttload.Credential{ClientID: fmt.Sprintf("bench-sub-%d", j), Username: "bench", Password: svc.Token}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	res := runScenario(cmd, target, f, f.brokerPID, f.address, release)
	var base *scenarioResult
	if f.baseline != "" {
		bt := &mqttload.Target{Address: f.baseline, SubscriberAddress: f.baselineSubscribe, SourceIPs: target.SourceIPs, Client: anonymous("bench"), Subscriber: anonymous("bench-sub")}
		base = runScenario(cmd, bt, f, f.baselinePID, f.baseline, release)
	}
	printSummary(out, f, res, base)
	return res.err
}

// scenarioResult is one broker's figures.
type scenarioResult struct {
	name        string
	connect     *mqttload.ConnectResult
	rssBefore   int64
	rssHeld     int64
	throughput  *mqttload.ThroughputResult
	err         error
	connections int
}

func runScenario(cmd *cobra.Command, t *mqttload.Target, f benchMQTTFlags, pid int, name string, release <-chan os.Signal) *scenarioResult {
	ctx := cmd.Context()
	errw := cmd.ErrOrStderr()
	r := &scenarioResult{name: name, connections: f.connections}
	if pid > 0 {
		r.rssBefore, _ = mqttload.RSS(pid)
	}
	for round := 0; f.connections > 0 && round < f.rounds; round++ {
		if r.connect != nil {
			r.connect.Close() // the round before
		}
		bar := newBar(errw, f.connections, fmt.Sprintf("connecting to %s (round %d)", name, round+1))
		r.connect = mqttload.Connect(ctx, t, f.connections, f.concurrency, func(n int) { bar.Set(n) })
		bar.Finish()
	}
	if f.connections > 0 {
		if f.hold > 0 {
			fmt.Fprintf(errw, "holding %d connections to %s\n", r.connect.Opened, name)
			select {
			case <-time.After(f.hold):
			case <-release:
			case <-ctx.Done():
			}
		}
		if pid > 0 {
			time.Sleep(2 * time.Second) // let the broker settle
			r.rssHeld, _ = mqttload.RSS(pid)
		}
		r.connect.Close()
		if r.connect.Opened == 0 {
			r.err = fmt.Errorf("%s: no connection opened: %w", name, r.connect.FirstErr)
			return r
		}
	}
	if f.publishers > 0 {
		steps := int(f.duration / (200 * time.Millisecond))
		bar := newBar(errw, steps, "publishing to "+name)
		var err error
		r.throughput, err = mqttload.Throughput(ctx, t, mqttload.ThroughputOptions{
			Publishers: f.publishers, Subscribers: f.subscribers, QoS: byte(f.qos), Duration: f.duration,
			Payload: f.payload, Window: f.window, Rate: f.rate, Topic: f.topic, Filter: f.filter,
		}, func(elapsed time.Duration, received int64) {
			bar.Describe(fmt.Sprintf("publishing to %s: %.0f msg/s received", name, float64(received)/elapsed.Seconds()))
			bar.Set(int(elapsed / (200 * time.Millisecond)))
		})
		bar.Finish()
		if err != nil {
			r.err = fmt.Errorf("%s: %w", name, err)
		}
	}
	return r
}

func newBar(w io.Writer, max int, desc string) *progressbar.ProgressBar {
	return progressbar.NewOptions(max,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func printSummary(w io.Writer, f benchMQTTFlags, res, base *scenarioResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	header := "\t" + res.name + "\t"
	if base != nil {
		header += base.name + "\tratio\t"
	}
	fmt.Fprintln(tw, header)
	row := func(label string, get func(*scenarioResult) (float64, bool), format string) {
		v, ok := get(res)
		if !ok {
			return
		}
		line := label + "\t" + fmt.Sprintf(format, v) + "\t"
		if base != nil {
			if b, ok := get(base); ok {
				ratio := "-"
				if b != 0 {
					ratio = fmt.Sprintf("%.2f", v/b)
				}
				line += fmt.Sprintf(format, b) + "\t" + ratio + "\t"
			} else {
				line += "-\t-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	conn := func(fn func(*mqttload.ConnectResult) float64) func(*scenarioResult) (float64, bool) {
		return func(r *scenarioResult) (float64, bool) {
			if r.connect == nil {
				return 0, false
			}
			return fn(r.connect), true
		}
	}
	row("connections opened", conn(func(c *mqttload.ConnectResult) float64 { return float64(c.Opened) }), "%.0f")
	row("connections failed", conn(func(c *mqttload.ConnectResult) float64 { return float64(c.Failed) }), "%.0f")
	row("CONNECT/s", conn(func(c *mqttload.ConnectResult) float64 { return c.Rate() }), "%.0f")
	mem := func(fn func(*scenarioResult) float64) func(*scenarioResult) (float64, bool) {
		return func(r *scenarioResult) (float64, bool) {
			if r.rssHeld == 0 || r.connect == nil {
				return 0, false
			}
			return fn(r), true
		}
	}
	row("broker RSS held (MiB)", mem(func(r *scenarioResult) float64 { return float64(r.rssHeld) / (1 << 20) }), "%.0f")
	row("RSS per connection (KiB)", mem(func(r *scenarioResult) float64 {
		return float64(r.rssHeld-r.rssBefore) / float64(max(r.connect.Opened, 1)) / 1024
	}), "%.1f")
	tp := func(fn func(*mqttload.ThroughputResult) float64) func(*scenarioResult) (float64, bool) {
		return func(r *scenarioResult) (float64, bool) {
			if r.throughput == nil {
				return 0, false
			}
			return fn(r.throughput), true
		}
	}
	row("published", tp(func(t *mqttload.ThroughputResult) float64 { return float64(t.Published) }), "%.0f")
	row("received", tp(func(t *mqttload.ThroughputResult) float64 { return float64(t.Received) }), "%.0f")
	row(fmt.Sprintf("received msg/s (QoS %d)", f.qos), tp(func(t *mqttload.ThroughputResult) float64 { return t.Rate() }), "%.0f")
	row("latency p50 (ms)", tp(func(t *mqttload.ThroughputResult) float64 { return ms(t.Latency.Quantile(0.5)) }), "%.2f")
	row("latency p99 (ms)", tp(func(t *mqttload.ThroughputResult) float64 { return ms(t.Latency.Quantile(0.99)) }), "%.2f")
	if f.qos > 0 {
		row("acknowledged", tp(func(t *mqttload.ThroughputResult) float64 { return float64(t.Acked) }), "%.0f")
		row("lost (acked, not delivered)", tp(func(t *mqttload.ThroughputResult) float64 { return float64(t.Lost) }), "%.0f")
		row("duplicates", tp(func(t *mqttload.ThroughputResult) float64 { return float64(t.Duplicates) }), "%.0f")
	} else {
		row("delivered of published×subscribers (%)", tp(func(t *mqttload.ThroughputResult) float64 {
			return 100 * float64(t.Received) / float64(max(t.Expected, 1))
		}), "%.1f")
	}
	tw.Flush()
	for _, r := range []*scenarioResult{res, base} {
		if r != nil && r.connect != nil && r.connect.FirstErr != nil {
			fmt.Fprintf(w, "%s: first connection error: %v\n", r.name, r.connect.FirstErr)
		}
		if r != nil && r.err != nil {
			fmt.Fprintf(w, "%s: %v\n", r.name, r.err)
		}
	}
}

// raiseFileLimit lifts the soft limit on open files to the hard one: every
// held connection is a file descriptor.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
