package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// mqttService publishes over MQTT with mosquitto_pub as the cloud service
// of BenchTokens, which may publish on things/+/commands/#.
type mqttService struct {
	tool, port, ca string
	id, token      string
}

func (c *coapPlatform) mqttService(t *testing.T) *mqttService {
	t.Helper()
	tool, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_pub is required in CI: apt-get install mosquitto-clients")
		}
		t.Skip("mosquitto_pub not installed (apt-get install mosquitto-clients)")
	}
	m := regexp.MustCompile(`MQTT broker \(tls\) on mqtts://127\.0\.0\.1:(\d+)`).FindStringSubmatch(c.r.out.String())
	if m == nil {
		t.Fatalf("no MQTT listener announced:\n%s", c.r.out.String())
	}
	_, svc, err := c.r.p.BenchTokens(context.Background(), 0, slog.New(slog.DiscardHandler))
	must(t, "minting the service's token", err)
	return &mqttService{tool: tool, port: m[1], ca: filepath.Join(c.r.p.Config.Home, "pki", "ca.crt"), id: svc.ClientID, token: svc.Token}
}

// publish runs mosquitto_pub with args (-t, -m, -r, -D ...).
func (s *mqttService) publish(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"-h", "localhost", "-p", s.port, "--cafile", s.ca, "-V", "mqttv5", "-i", s.id, "-u", "svc", "-P", s.token, "-q", "1"}, args...)
	if out, err := exec.CommandContext(ctx, s.tool, all...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

// dial opens a DTLS session with go-coap's client as the thing.
func (c *coapPlatform) dial(t *testing.T) *udpClient.Conn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	must(t, "loading the thing's certificate", err)
	cc, err := dtls.Dial(c.addr, &piondtls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
	must(t, "DTLS handshake", err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// observeCode sends GET path with Observe: 0 and returns the answer's code
// (the observation, if made, is left to the session).
func observeCode(t *testing.T, cc *udpClient.Conn, path string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := cc.NewGetRequest(ctx, path)
	must(t, "building the request", err)
	req.SetObserve(0)
	res, err := cc.Do(req)
	must(t, "GET with Observe "+path, err)
	return res.Code()
}

// notification is one received by an observation.
type notification struct {
	body   string
	format message.MediaType
}

// A command a cloud service publishes over MQTT (mosquitto_pub) reaches
// the thing observing its command topic over CoAP (RFC 7641) with go-coap's
// client and libcoap's: the retained one at registration, then live ones,
// with the MQTT content type as Content-Format. Another thing's command
// topic, and a filter wider than the thing's rules, are refused with 4.03.
// Disabling the thing ends its session and its observations.
func TestCoAPObserveCommandsFromMQTT(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-OBS-1")
	svc := c.mqttService(t)
	other, err := c.r.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Type: store.ThingDevice, SerialNumber: "COAP-OBS-2"})
	must(t, "creating another thing", err)
	cmd := "things/" + c.th.ID + "/commands/"
	svc.publish(t, "-t", cmd+"mode", "-r", "-m", "eco")

	// libcoap observes for a while (-s) and prints what it gets: the
	// retained command, whatever the moment it registered.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lib := exec.CommandContext(ctx, c.tool, "-B", "5", "-c", c.certFile, "-j", c.keyFile, "-s", "3", "-m", "get", "coaps://"+c.addr+"/mqtt/"+cmd+"mode")
	var libOut bytes.Buffer
	lib.Stdout, lib.Stderr = &libOut, &libOut
	must(t, "starting coap-client-openssl", lib.Start())

	cc := c.dial(t)
	got := make(chan notification, 16)
	obs, err := cc.Observe(ctx, "/mqtt/"+cmd+"setpoint", func(m *pool.Message) {
		if _, err := m.Observe(); err != nil || m.Code() != codes.Content {
			return
		}
		b, _ := m.ReadBody()
		cf, _ := m.ContentFormat()
		got <- notification{string(b), cf}
	})
	must(t, "observing "+cmd+"setpoint", err)
	next := func() notification {
		t.Helper()
		for {
			select {
			case n := <-got:
				if n.body != "" { // the registration's answer is empty: no command yet
					return n
				}
			case <-ctx.Done():
				t.Fatal("no notification")
			}
		}
	}
	svc.publish(t, "-t", cmd+"setpoint", "-m", `{"celsius":19}`, "-D", "publish", "content-type", "application/json")
	if n := next(); n.body != `{"celsius":19}` || n.format != message.AppJSON {
		t.Fatalf("notification: %+v, want the command as application/json", n)
	}
	svc.publish(t, "-t", cmd+"setpoint", "-m", "20")
	if n := next(); n.body != "20" || n.format != message.AppOctets {
		t.Fatalf("notification: %+v, want the raw command", n)
	}

	for _, path := range []string{"/mqtt/things/" + other.ID + "/commands/setpoint", "/mqtt/things/%2B/commands/%23", "/mqtt/things/" + c.th.ID + "/telemetry"} {
		if code := observeCode(t, cc, path); code != codes.Forbidden {
			t.Errorf("observing %s: %v, want 4.03", path, code)
		}
	}
	if out := c.client("/mqtt/things/"+other.ID+"/commands/setpoint", "-s", "1", "-m", "get"); !strings.Contains(out, "4.03") {
		t.Errorf("libcoap observing another thing's commands: %s", out)
	}

	if err := lib.Wait(); err != nil || !strings.Contains(libOut.String(), "eco") {
		t.Fatalf("coap-client-openssl -s: %v\n%s", err, libOut.String())
	}

	// Deregistration (GET with Observe: 1) and the session's end remove
	// observers.
	c.r.wantObservers(t, 1)
	must(t, "cancelling the observation", obs.Cancel(ctx))
	c.r.wantObservers(t, 0)
	if _, err := cc.Observe(ctx, "/mqtt/"+cmd+"setpoint", func(*pool.Message) {}); err != nil {
		t.Fatal(err)
	}
	c.r.wantObservers(t, 1)
	if _, err := c.r.p.Identity.UpdateThing(ctx, "test", c.th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cc.Done():
	case <-ctx.Done():
		t.Fatal("the disabled thing's session was not closed")
	}
	c.r.wantObservers(t, 0)
}

// wantObservers waits until the gateway holds n observations
// (thingid_coap_observers on /metrics).
func (r *running) wantObservers(t *testing.T, n int) {
	t.Helper()
	want := "thingid_coap_observers " + strconv.Itoa(n)
	var lines []string
	for range 100 {
		_, body := r.get(t, "/metrics", nil)
		lines = strings.Split(body, "\n")
		if slices.Contains(lines, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/metrics never said %s: %q", want, slices.DeleteFunc(lines, func(l string) bool { return !strings.HasPrefix(l, "thingid_coap_") }))
}

// Observations are bounded per session (4.29) and in all (5.03), and a
// Reset in answer to a notification (RFC 7641 §3.6: the client forgot the
// observation) removes its observer. Tries to hold more observations than
// allowed.
func TestCoAPObserverLimits(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-OBS-3", func(cfg *config.Config) {
		cfg.CoAP.Limits.ObserversPerSession, cfg.CoAP.Limits.MaxObservers = 2, 3
	})
	cmd := "things/" + c.th.ID + "/commands/"
	a, b := c.dial(t), c.dial(t)
	for i, want := range []codes.Code{codes.Content, codes.Content, codes.TooManyRequests} {
		if code := observeCode(t, a, "/mqtt/"+cmd+string(rune('a'+i))); code != want {
			t.Fatalf("observation %d of a session: %v, want %v", i+1, code, want)
		}
	}
	if code := observeCode(t, b, "/mqtt/"+cmd+"x"); code != codes.Content {
		t.Fatalf("the third observation in all: %v", code)
	}
	if code := observeCode(t, b, "/mqtt/"+cmd+"y"); code != codes.ServiceUnavailable {
		t.Fatalf("an observation past maxObservers: %v, want 5.03", code)
	}
	c.r.wantObservers(t, 3)
	a.Close()
	c.r.wantObservers(t, 1)

	// A session that answers a notification with a Reset.
	raw := c.rawDTLS(t)
	raw.write(t, message.Message{Token: []byte("rst"), Code: codes.GET, Type: message.Confirmable, MessageID: 1,
		Options: pathOptions(t, "/mqtt/"+cmd+"r").Add(message.Option{ID: message.Observe, Value: []byte{}})})
	if m := raw.read(t); m.Code != codes.Content {
		t.Fatalf("registration: %v", m.Code)
	}
	c.r.wantObservers(t, 2)
	c.mqttService(t).publish(t, "-t", cmd+"r", "-m", "forgotten")
	n := raw.read(t)
	if n.Type != message.Confirmable || string(n.Payload) != "forgotten" {
		t.Fatalf("notification: %v", n)
	}
	raw.write(t, message.Message{Code: codes.Empty, Type: message.Reset, MessageID: n.MessageID})
	c.r.wantObservers(t, 1)
}

// rawCoAP is a DTLS session on which the test writes CoAP messages as it
// builds them, for what go-coap's client does not send.
type rawCoAP struct{ c net.Conn }

func (c *coapPlatform) rawDTLS(t *testing.T) *rawCoAP {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	must(t, "loading the thing's certificate", err)
	addr, err := net.ResolveUDPAddr("udp", c.addr)
	must(t, "resolving the gateway", err)
	conn, err := piondtls.DialWithOptions("udp", addr, piondtls.WithCertificates(cert), piondtls.WithInsecureSkipVerify(true),
		piondtls.WithExtendedMasterSecret(piondtls.RequireExtendedMasterSecret))
	must(t, "DTLS", err)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, "DTLS handshake", conn.HandshakeContext(ctx))
	return &rawCoAP{conn}
}

func (r *rawCoAP) write(t *testing.T, m message.Message) {
	t.Helper()
	b := make([]byte, 1500)
	n, err := coder.DefaultCoder.Encode(m, b)
	must(t, "encoding", err)
	_, err = r.c.Write(b[:n])
	must(t, "writing", err)
}

func (r *rawCoAP) read(t *testing.T) message.Message {
	t.Helper()
	must(t, "deadline", r.c.SetReadDeadline(time.Now().Add(10*time.Second)))
	b := make([]byte, 1500)
	n, err := r.c.Read(b)
	must(t, "reading", err)
	m := message.Message{Options: make(message.Options, 0, 16)}
	_, err = coder.DefaultCoder.Decode(b[:n], &m)
	must(t, "decoding", err)
	return m
}

func pathOptions(t *testing.T, path string) message.Options {
	t.Helper()
	opts, _, err := make(message.Options, 0, 16).SetPath(make([]byte, 256), path)
	must(t, "path", err)
	return opts
}

// A large retained message, a firmware image a cloud service published
// over MQTT, is read with GET in Block2 blocks (RFC 7959) by go-coap's
// client and by libcoap's.
func TestCoAPBlockwiseFirmware(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-FW-1")
	svc := c.mqttService(t)
	image := make([]byte, 20<<10)
	for i := range image {
		image[i] = byte('a' + i%26)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "firmware.bin")
	must(t, "writing the image", os.WriteFile(file, image, 0o600))
	topic := "things/" + c.th.ID + "/commands/firmware"
	svc.publish(t, "-t", topic, "-r", "-f", file)

	cc := c.dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, "/mqtt/"+topic)
	must(t, "GET the image", err)
	b, _ := io.ReadAll(res.Body())
	if res.Code() != codes.Content || !bytes.Equal(b, image) {
		t.Fatalf("go-coap GET: %v, %d bytes of %d", res.Code(), len(b), len(image))
	}
	out := filepath.Join(dir, "got.bin")
	if printed := c.client("/mqtt/"+topic, "-m", "get", "-b", "512", "-o", out); printed != "" {
		t.Fatalf("coap-client-openssl: %s", printed)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, image) {
		t.Fatalf("coap-client-openssl got %d bytes of %d", len(got), len(image))
	}
	if code := observeCode(t, cc, "/mqtt/things/"+c.th.ID+"/commands/none"); code != codes.Content {
		t.Fatalf("observing an empty topic: %v", code)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if res, err := cc.Get(ctx2, "/mqtt/things/"+c.th.ID+"/commands/none"); err != nil || res.Code() != codes.NotFound {
		t.Fatalf("GET a topic with nothing retained: %v %v", res, err)
	}
}

// An observation is re-checked when the thing changes while its session
// stays up: once the broker's rules no longer give the thing the observed
// topic (here they name it by ${thing.model}, and the thing's model
// changes), the observer gets a 4.03 notification without Observe (RFC
// 7641 §3.2) and nothing more, while an observation the rules still give
// goes on. Tries to keep receiving a model's commands after the thing
// stopped being that model.
func TestCoAPObserverEndedWhenRulesNoLongerAllow(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-OBS-4", func(cfg *config.Config) {
		cfg.MQTT.Rules[0] = config.MQTTRule{Who: "thing", Publish: []string{"things/${thing.id}/#"},
			Subscribe: []string{"things/${thing.id}/commands/${thing.model}/#", "things/${thing.id}/commands/all"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	setModel := func(model string) {
		t.Helper()
		_, err := c.r.p.Identity.UpdateThing(ctx, "test", c.th.ID, 0, func(t *store.Thing) error { t.Model = model; return nil })
		must(t, "changing the thing's model", err)
	}
	setModel("THERMO-A")
	svc := c.mqttService(t)
	cmd := "things/" + c.th.ID + "/commands/"
	cc := c.dial(t)
	observe := func(path string) chan *pool.Message {
		got := make(chan *pool.Message, 16)
		_, err := cc.Observe(ctx, path, func(m *pool.Message) {
			b, _ := m.ReadBody()
			_, err := m.Observe()
			n := pool.NewMessage(ctx)
			n.SetCode(m.Code())
			n.SetBody(bytes.NewReader(b))
			if err == nil {
				n.SetObserve(0)
			}
			got <- n
		})
		must(t, "observing "+path, err)
		return got
	}
	next := func(got chan *pool.Message) *pool.Message {
		t.Helper()
		for {
			select {
			case m := <-got:
				if b, _ := m.ReadBody(); m.Code() != codes.Content || len(b) > 0 {
					return m // not the registration's empty 2.05
				}
			case <-ctx.Done():
				t.Fatal("no notification")
				return nil
			}
		}
	}
	firmware, all := observe("/mqtt/"+cmd+"THERMO-A/firmware"), observe("/mqtt/"+cmd+"all")
	c.r.wantObservers(t, 2)
	svc.publish(t, "-t", cmd+"THERMO-A/firmware", "-m", "v1")
	if m := next(firmware); m.Code() != codes.Content {
		t.Fatalf("the model's command: %v", m.Code())
	}

	setModel("THERMO-B")
	m := next(firmware)
	if _, err := m.Observe(); m.Code() != codes.Forbidden || err == nil {
		t.Fatalf("after the model changed: %v (Observe: %v), want 4.03 without Observe", m.Code(), err)
	}
	c.r.wantObservers(t, 1)
	svc.publish(t, "-t", cmd+"THERMO-A/firmware", "-m", "v2")
	svc.publish(t, "-t", cmd+"all", "-m", "reboot")
	if m := next(all); m.Code() != codes.Content {
		t.Fatalf("the observation the rules still give: %v", m.Code())
	}
	select {
	case m := <-firmware:
		b, _ := m.ReadBody()
		t.Fatalf("a notification after the observation ended: %v %q", m.Code(), b)
	default:
	}
}

// A Reset removes the observer whose notification it answers, matched by
// message ID (RFC 7252 §4.2, RFC 7641 §3.6): also when the notification is
// larger than one block and goes out as its first Block2 block under a
// message ID go-coap gives it (RFC 7959 §2.6). A Reset naming another
// message ID removes nothing: the notification is sent again, and the
// observation goes on. Tries to end an observation with a Reset that
// answers nothing.
func TestCoAPResetMatchedByMessageID(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-OBS-5")
	svc := c.mqttService(t)
	cmd := "things/" + c.th.ID + "/commands/firmware"
	file := filepath.Join(t.TempDir(), "image.bin")
	for _, size := range []int{10, 4800} {
		raw := c.rawDTLS(t)
		raw.write(t, message.Message{Token: []byte("obs"), Code: codes.GET, Type: message.Confirmable, MessageID: 1,
			Options: pathOptions(t, "/mqtt/"+cmd).Add(message.Option{ID: message.Observe, Value: []byte{}})})
		if m := raw.read(t); m.Code != codes.Content {
			t.Fatalf("registration: %v", m.Code)
		}
		c.r.wantObservers(t, 1)
		must(t, "writing the payload", os.WriteFile(file, bytes.Repeat([]byte("x"), size), 0o600))
		svc.publish(t, "-t", cmd, "-f", file)
		n := raw.read(t)
		_, blockErr := n.Options.GetUint32(message.Block2)
		if n.Type != message.Confirmable || (size > 1024) != (blockErr == nil) {
			t.Fatalf("notification of %d bytes: %v %v (Block2: %v)", size, n.Type, n.Code, blockErr)
		}
		raw.write(t, message.Message{Code: codes.Empty, Type: message.Reset, MessageID: n.MessageID + 1000})
		if again := raw.read(t); again.MessageID != n.MessageID {
			t.Fatalf("after a Reset answering nothing: message %d, want the notification %d again", again.MessageID, n.MessageID)
		}
		c.r.wantObservers(t, 1)
		raw.write(t, message.Message{Code: codes.Empty, Type: message.Reset, MessageID: n.MessageID})
		c.r.wantObservers(t, 0)
	}
}
