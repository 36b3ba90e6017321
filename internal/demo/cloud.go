package demo

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/atomicfile"
)

// The manufacturer's cloud API behind the gateway.
const (
	apiPath = "/v1/playlists"
	// apiRate is how many calls per minute the gateway lets each speaker
	// make; the speaker calls more often, to meet the limit within seconds.
	apiRate     = 5
	apiInterval = 250 * time.Millisecond
	// routeFile is the route the demo writes into the gateway's routes directory.
	routeFile = "acme-cloud.yaml"
)

// apiCall is a request the cloud API received through the gateway, with
// the identity the gateway passed on.
type apiCall struct {
	Path    string
	Subject string // X-Thingid-Subject: the user the speaker acts for
	Thing   string // X-Thingid-Thing
	Token   string // the access token, forwarded by the route
}

// cloudAPI is the manufacturer's upstream API on loopback: GET
// /v1/playlists answers the playlists of the user the gateway says is
// calling.
type cloudAPI struct {
	URL   string
	calls *feed[apiCall]
	srv   *http.Server
}

func startCloudAPI() (*cloudAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cloud API: %w", err)
	}
	c := &cloudAPI{URL: "http://" + ln.Addr().String(), calls: newFeed[apiCall]()}
	c.srv = &http.Server{Handler: http.HandlerFunc(c.serve), ReadHeaderTimeout: 10 * time.Second}
	go c.srv.Serve(ln)
	return c, nil
}

func (c *cloudAPI) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	subject := r.Header.Get("X-Thingid-Subject")
	if subject == "" {
		// Only the gateway sets the identity headers (it removes any a
		// client sends): without them the call did not come through it.
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintln(w, `{"detail":"call this API through the identity gateway"}`)
		return
	}
	call := apiCall{Path: r.URL.Path, Subject: subject, Thing: r.Header.Get("X-Thingid-Thing")}
	call.Token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	c.calls.add(call)
	json.NewEncoder(w).Encode(map[string]any{"owner": call.Subject, "speaker": call.Thing, "playlists": []string{"Morning", "Focus", "Party"}})
}

func (c *cloudAPI) close() { c.srv.Close() }

// route is the gateway route in front of the cloud API: the speaker's
// token must carry the device scope, and each speaker gets apiRate calls a
// minute.
func (c *cloudAPI) route() string {
	return fmt.Sprintf(`# The cloud API of thingid's demo manufacturer (written by thingid demo).
routes:
  - name: acme-cloud
    match: {pathPrefix: /v1, methods: [GET]}
    upstream: {url: "%s"}
    filters:
      - oauth2:
          scopes: {"*": [device]}
          # The demo's API keeps the last token it saw, to show that the
          # gateway refuses it after unlinking. A real API needs only the
          # X-Thingid-* identity headers the gateway sends.
          forwardToken: true
      - throttle:
          key: [thing]
          rate: {requests: %d, per: 1m}
`, c.URL, apiRate)
}

// register puts the cloud API behind the gateway.
func (c *cloudAPI) register(ctx context.Context, pl endpoints, routesDir string) (string, error) {
	return writeRoute(ctx, pl, routesDir, routeFile, c.route(), apiPath)
}

// writeRoute writes a routes file into the gateway's routes directory and
// waits until the gateway serves it (it reloads the directory every
// second): a request for probe without a token is then refused with 401
// rather than 404. It returns the file's path.
func writeRoute(ctx context.Context, pl endpoints, routesDir, file, content, probe string) (string, error) {
	if err := os.MkdirAll(routesDir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(routesDir, file)
	if err := atomicfile.Write(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("writing the route: %w", err)
	}
	hc := pl.client()
	return path, poll(ctx, stepTimeout, "the gateway to serve the route of "+path, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, pl.GatewayURL+probe, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized, fmt.Errorf("the gateway answered %s", resp.Status)
	})
}

// message is an MQTT message the cloud service received.
type message struct {
	Topic   string
	Payload []byte
}

// subscriber is the manufacturer's cloud service on the broker: an MQTT 5
// connection with the service's access token as password.
type subscriber struct {
	client *paho.Client
	msgs   *feed[message]
}

// subscribe connects to the broker as clientID with token and subscribes
// to filter; every wait is bounded by stepTimeout.
func subscribe(ctx context.Context, pl endpoints, clientID, token, filter string) (*subscriber, error) {
	return connectMQTT(ctx, pl, clientID, token, filter, nil)
}

// streamEnded is how a subscriber's messages end when the broker closed
// the connection: its reason code and reason string.
type streamEnded struct {
	code   byte
	reason string
}

func (e *streamEnded) Error() string {
	return fmt.Sprintf("the broker closed the connection (reason code 0x%02X: %s)", e.code, e.reason)
}

// connectMQTT is subscribe with a client certificate (a thing's), when
// cert is not nil.
func connectMQTT(ctx context.Context, pl endpoints, clientID, token, filter string, cert *tls.Certificate) (*subscriber, error) {
	u, err := url.Parse(pl.BrokerURL)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	tc := &tls.Config{RootCAs: pl.Roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	conn, err := (&tls.Dialer{Config: tc}).DialContext(dctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("connecting to the broker at %s: %w", pl.BrokerURL, err)
	}
	s := &subscriber{msgs: newFeed[message]()}
	s.client = paho.NewClient(paho.ClientConfig{
		Conn:          packets.NewThreadSafeConn(conn),
		PacketTimeout: stepTimeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.msgs.add(message{Topic: pr.Packet.Topic, Payload: pr.Packet.Payload})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			e := &streamEnded{code: d.ReasonCode}
			if d.Properties != nil {
				e.reason = d.Properties.ReasonString
			}
			s.msgs.end(e)
		},
		OnClientError: func(err error) { s.msgs.end(err) },
	})
	ack, err := s.client.Connect(dctx, &paho.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true,
		Username: clientID, UsernameFlag: true, Password: []byte(token), PasswordFlag: true})
	if err != nil {
		conn.Close()
		if ack != nil && ack.Properties != nil && ack.Properties.ReasonString != "" {
			err = fmt.Errorf("%w: %s", err, ack.Properties.ReasonString)
		}
		return nil, fmt.Errorf("the broker at %s refused %s: %w", pl.BrokerURL, clientID, err)
	}
	sub, err := s.client.Subscribe(dctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if err == nil && (len(sub.Reasons) != 1 || sub.Reasons[0] >= 0x80) {
		err = fmt.Errorf("refused (reason codes %v)", sub.Reasons)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("subscribing %s to %s: %w", clientID, filter, err)
	}
	return s, nil
}

func (s *subscriber) close() {
	s.client.Disconnect(&paho.Disconnect{})
	select {
	case <-s.client.Done():
	case <-time.After(stepTimeout):
	}
	s.msgs.end(nil)
}
