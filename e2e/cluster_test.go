package e2e

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/store/postgres/pgtest"
)

// clusterNode is one `thingid serve` of the cluster, in a network
// namespace of its own.
type clusterNode struct {
	name, netns, ip string
	home            string
	nats            *relay // the node's own way to NATS, for cutting it off
	*instance
}

func (n *clusterNode) mqtt() string    { return n.ip + ":8883" }
func (n *clusterNode) gateway() string { return n.ip + ":9443" }

// cluster is three nodes on one PostgreSQL schema, with NATS, Redis and
// HAProxy: every process real, every node reached on its own address.
type cluster struct {
	br          *bridge
	nodes       []*clusterNode
	env         []string // every node's (and the CLI's) configuration
	front       string   // HAProxy: HTTPS to every node
	mqttFront   string   // HAProxy: MQTT over TLS to every node
	upstream    string   // the gateway route's upstream, on the bridge
	ca          string   // the platform CA's file
	tls         *tls.Config
	haproxyLogs logFile
}

// startCluster builds the network, starts PostgreSQL's forwarder, NATS,
// Redis, three nodes and HAProxy, and waits until HAProxy sees every node.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	haproxy := tool(t, "haproxy", "haproxy")
	natsServer := tool(t, "nats-server", "nats-server")
	redis := tool(t, "redis-server", "redis-server")
	dsn := pgtest.DSN(t)
	br := newBridge(t)
	c := &cluster{br: br}
	proxy := br.alias(2)

	pg, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pg.Host = br.forward(pg.Host).addr
	natsPort, redisPort := freePort(t, br.addr(1)), freePort(t, br.addr(1))
	daemon(t, natsServer, "-a", br.addr(1), "-p", natsPort, "-js", "-sd", t.TempDir()) // JetStream: the MQTT claims and retained messages
	daemon(t, redis, "--bind", br.addr(1), "--port", redisPort, "--save", "", "--appendonly", "no")
	waitListening(t, br.addr(1)+":"+natsPort, br.addr(1)+":"+redisPort)

	// The gateway's upstream: answers who called, from the bridge.
	ln, err := net.Listen("tcp", br.addr(1)+":0")
	if err != nil {
		t.Fatal(err)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "upstream") })}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	c.upstream = "http://" + ln.Addr().String()

	fronts := freeAddrs(t, 2)
	c.front, c.mqttFront = fronts[0], fronts[1]
	_, frontPort, _ := net.SplitHostPort(c.front)
	key := make([]byte, 32)
	rand.Read(key)
	c.env = []string{
		"THINGID_STORAGE_TYPE=postgres", "THINGID_STORAGE_POSTGRES_DSN=" + pg.String(),
		"THINGID_MASTERKEY=" + base64.StdEncoding.EncodeToString(key),
		"THINGID_HTTP_PUBLICURL=https://localhost:" + frontPort,
		"THINGID_GATEWAY_THROTTLE_REDISURL=redis://" + br.addr(1) + ":" + redisPort,
		"THINGID_CONNECTIONS_PROXYPROTOCOL_TRUSTED=" + proxy,
		"THINGID_HTTP_DRAINDELAY=2s", "THINGID_HTTP_SHUTDOWNTIMEOUT=20s",
	}
	dir := t.TempDir()
	for i, name := range []string{"a", "b", "c"} {
		n := &clusterNode{name: name, ip: br.addr(11 + i), nats: br.forward(br.addr(1) + ":" + natsPort)}
		n.netns = br.host(name, 11+i)
		// The same base name everywhere: start's administrator password
		// is derived from it, and the nodes share one administrator.
		n.home = filepath.Join(dir, name, "node")
		if err := os.MkdirAll(filepath.Join(n.home, "routes"), 0o700); err != nil {
			t.Fatal(err)
		}
		route := fmt.Sprintf("routes:\n  - name: cluster\n    match: {pathPrefix: /v1, methods: [GET]}\n    upstream: {url: %q}\n    filters:\n      - oauth2:\n          scopes: {\"*\": [cluster]}\n", c.upstream)
		if err := os.WriteFile(filepath.Join(n.home, "routes", "cluster.yaml"), []byte(route), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		// The first node makes the CAs and the administrator; the others
		// take them from the database.
		c.run(t, n)
	}
	c.ca = filepath.Join(c.nodes[0].home, "pki", "ca.crt")
	c.tls = c.nodes[0].client.Transport.(*http.Transport).TLSClientConfig

	var servers, brokers strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&servers, "  server %s %s:8443 send-proxy-v2 source %s check check-ssl verify none check-send-proxy inter 300ms fall 2 rise 2\n", n.name, n.ip, proxy)
		fmt.Fprintf(&brokers, "  server %s %s send-proxy-v2 source %s check port 8443 check-ssl verify none check-send-proxy inter 300ms fall 2 rise 2\n", n.name, n.mqtt(), proxy)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 1m
  timeout server 1m
  retries 3
  option redispatch
frontend https
  bind %s
  default_backend nodes
backend nodes
  option httpchk GET /readyz
  http-check expect status 200
%sfrontend mqtt
  bind %s
  default_backend brokers
backend brokers
  balance roundrobin
  option httpchk GET /readyz/mqtt
  http-check expect status 200
%s`, c.front, servers.String(), c.mqttFront, brokers.String())), 0o600)
	hp := daemon(t, haproxy, "-db", "-f", cfg)
	c.haproxyLogs = hp
	c.waitUp(t, "a", "b", "c")
	return c
}

// run starts node n (again, after a stop) and waits until it serves.
func (c *cluster) run(t *testing.T, n *clusterNode) {
	t.Helper()
	n.instance = startIn(t, n.netns, n.home, n.ip+":8443", append([]string{
		"THINGID_MQTT_CLUSTER_NODE=" + n.name,
		"THINGID_MQTT_CLUSTER_NATS_URL=nats://" + n.nats.addr,
		"THINGID_MQTT_TLS_ADDRESS=" + n.mqtt(),
		"THINGID_GATEWAY_ADDRESS=" + n.gateway(),
	}, c.env...)...)
}

// waitUp waits until HAProxy's checks pass for the named nodes: a
// request through it reaches each (HAProxy names the server in no
// header in TCP mode, so this asks every node's /readyz directly and then
// gives HAProxy two check intervals).
func (c *cluster) waitUp(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		n := c.node(name)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := n.client.Get(n.url("/readyz"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not ready: %v", name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(1500 * time.Millisecond) // rise 2 × inter 300 ms, with margin
}

func (c *cluster) node(name string) *clusterNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	panic("no node " + name)
}

// clusterClient is a confidential client of the cluster with client
// credentials, asking for tokens through HAProxy.
type clusterClient struct {
	id, secret string
	cc         clientcredentials.Config
	ctx        context.Context // carries the HTTP client
}

// client registers a confidential client with the CLI, on the cluster's
// database.
func (c *cluster) client(t *testing.T, name string, scopes ...string) *clusterClient {
	t.Helper()
	args := []string{"--home", c.nodes[0].home, "clients", "create", "--name", name, "--grant-type", "client_credentials"}
	for _, s := range scopes {
		args = append(args, "--scope", s)
	}
	out, errOut, err := thingid(t, c.env, "", args...)
	if err != nil {
		t.Fatalf("clients create: %v %s", err, errOut)
	}
	cl := &clusterClient{id: field(t, out, "client_id"), secret: field(t, out, "client_secret")}
	cl.cc = clientcredentials.Config{ClientID: cl.id, ClientSecret: cl.secret, TokenURL: "https://" + c.front + "/oauth2/token", Scopes: scopes}
	// A new connection per request, as many devices make them: a rolling
	// restart must not fail one.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls, DisableKeepAlives: true}}
	cl.ctx = context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	return cl
}

// token asks for a new access token.
func (cl *clusterClient) token() (string, error) {
	tok, err := cl.cc.Token(cl.ctx)
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// field is the value after "name: " on a line of the CLI's output.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in %q", name, out)
	return ""
}

// mqttConn is a paho MQTT 5 client whose messages and end are channels.
type mqttConn struct {
	*paho.Client
	msgs   chan *paho.Publish
	ended  chan struct{}
	reason byte // the server's DISCONNECT reason, once ended by one
	ack    *paho.Connack
}

// dialMQTT connects client id with token to addr (a node, or HAProxy).
func (c *cluster) dialMQTT(t *testing.T, addr, id, token string) (*mqttConn, error) {
	t.Helper()
	return c.dialMQTTWith(t, addr, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: id, UsernameFlag: true, Password: []byte(token), PasswordFlag: true})
}

// dialMQTTWith connects with cp (its client identifier, token and session)
// to addr; the CONNACK is the connection's ack.
func (c *cluster) dialMQTTWith(t *testing.T, addr string, cp *paho.Connect) (*mqttConn, error) {
	t.Helper()
	id := cp.ClientID
	conn, err := tls.Dial("tcp", addr, c.tls)
	if err != nil {
		return nil, err
	}
	m := &mqttConn{msgs: make(chan *paho.Publish, 1000), ended: make(chan struct{})}
	var once sync.Once
	end := func() { once.Do(func() { close(m.ended) }) }
	m.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			m.msgs <- p.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			m.reason = d.ReasonCode
			end()
		},
		OnClientError: func(error) { end() },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := m.Connect(ctx, cp)
	m.ack = ca
	if err != nil {
		conn.Close()
		if ca != nil {
			return nil, fmt.Errorf("connect %s: CONNACK 0x%02X %q: %w", id, ca.ReasonCode, ca.Properties.ReasonString, err)
		}
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	t.Cleanup(func() { m.Disconnect(&paho.Disconnect{}) })
	return m, nil
}

func (m *mqttConn) subscribe(t *testing.T, filter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := m.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 2}}})
	if err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribe %s: %v %v", filter, sa, err)
	}
}

func (m *mqttConn) publish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

// expect waits for a message with payload, for at most 10 s.
func (m *mqttConn) expect(t *testing.T, who, payload string) *paho.Publish {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-m.msgs:
			if string(p.Payload) == payload {
				return p
			}
		case <-timeout:
			t.Fatalf("%s did not receive %q", who, payload)
		}
	}
}

// Three nodes, each in its own network namespace, on one PostgreSQL, NATS
// and Redis, behind HAProxy: messages cross nodes, a revocation on one
// node acts on the others within a second, a node killed with SIGKILL
// loses its clients to the others and rejoins, and a rolling restart
// fails no token request.
func TestClusterOfThreeNodes(t *testing.T) {
	c := startCluster(t)
	pub := c.client(t, "cluster-publisher", "mqtt:pub:cluster/#")
	sub := c.client(t, "cluster-subscriber", "mqtt:sub:cluster/#", "cluster")
	token := func(cl *clusterClient) string {
		t.Helper()
		tok, err := cl.token()
		if err != nil {
			t.Fatalf("token through HAProxy: %v", err)
		}
		return tok
	}
	pubToken := token(pub)

	t.Log("messages cross nodes")
	{ // messagesCrossNodes
		p, err := c.dialMQTT(t, c.node("a").mqtt(), "pub-a", pubToken)
		if err != nil {
			t.Fatal(err)
		}
		var subs []*mqttConn
		for _, name := range []string{"b", "c"} {
			s, err := c.dialMQTT(t, c.node(name).mqtt(), "sub-"+name, token(sub))
			if err != nil {
				t.Fatal(err)
			}
			s.subscribe(t, "cluster/+/t")
			subs = append(subs, s)
		}
		time.Sleep(200 * time.Millisecond) // the subscriptions reach NATS
		for qos := range byte(3) {
			payload := fmt.Sprintf("qos %d from a", qos)
			p.publish(t, "cluster/x/t", payload, qos, false)
			for i, s := range subs {
				if got := s.expect(t, "the subscriber on "+[]string{"b", "c"}[i], payload); got.QoS != qos {
					t.Errorf("QoS %d message delivered with QoS %d", qos, got.QoS)
				}
			}
		}
		// A shared subscription with a member on b and one on c: each
		// message reaches exactly one of them.
		var members []*mqttConn
		for _, name := range []string{"b", "c"} {
			m, err := c.dialMQTT(t, c.node(name).mqtt(), "share-"+name, token(sub))
			if err != nil {
				t.Fatal(err)
			}
			m.subscribe(t, "$share/workers/cluster/jobs/#")
			members = append(members, m)
		}
		time.Sleep(200 * time.Millisecond)
		const jobs = 40
		for i := range jobs {
			p.publish(t, "cluster/jobs/x", fmt.Sprintf("job %d", i), 1, false)
		}
		got := map[string]int{}
		per := make([]int, len(members))
		for deadline := time.After(10 * time.Second); len(got) < jobs; {
			select {
			case m := <-members[0].msgs:
				got[string(m.Payload)]++
				per[0]++
			case m := <-members[1].msgs:
				got[string(m.Payload)]++
				per[1]++
			case <-deadline:
				t.Fatalf("the shared subscription received %d of %d messages", len(got), jobs)
			}
		}
		time.Sleep(300 * time.Millisecond) // a duplicate would come now
		for len(members[0].msgs)+len(members[1].msgs) > 0 {
			select {
			case m := <-members[0].msgs:
				got[string(m.Payload)]++
			case m := <-members[1].msgs:
				got[string(m.Payload)]++
			}
		}
		for job, n := range got {
			if n != 1 {
				t.Errorf("%s delivered %d times to the shared subscription, want once", job, n)
			}
		}
		t.Logf("shared subscription: %d messages, %d to the member on b, %d to the member on c", jobs, per[0], per[1])
		if per[0] == 0 || per[1] == 0 {
			t.Errorf("the shared subscription's messages all went to one member: %v", per)
		}

		p.publish(t, "cluster/kept/t", "retained on a", 1, true)
		time.Sleep(200 * time.Millisecond)
		late, err := c.dialMQTT(t, c.node("c").mqtt(), "late-c", token(sub))
		if err != nil {
			t.Fatal(err)
		}
		late.subscribe(t, "cluster/kept/#")
		if got := late.expect(t, "a subscriber arriving later on c", "retained on a"); !got.Retain {
			t.Error("the retained message reached c without its retain flag")
		}
	}

	t.Log("a revocation on one node acts on all within a second")
	{ // revocationReachesEveryNode
		victim := token(sub)
		s, err := c.dialMQTT(t, c.node("a").mqtt(), "revoked-on-a", victim)
		if err != nil {
			t.Fatal(err)
		}
		gw := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
		call := func() int {
			req, _ := http.NewRequest("GET", "https://"+c.node("b").gateway()+"/v1/who", nil)
			req.Header.Set("Authorization", "Bearer "+victim)
			resp, err := gw.Do(req)
			if err != nil {
				t.Fatalf("gateway on b: %v", err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := call(); code != http.StatusOK {
			t.Fatalf("the gateway on b before the revocation: %d, want 200", code)
		}
		// RFC 7009 revocation, sent to node c directly.
		form := url.Values{"token": {victim}, "token_type_hint": {"access_token"}}
		req, _ := http.NewRequest("POST", c.node("c").url("/oauth2/revoke"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(sub.id), url.QueryEscape(sub.secret))
		revoked := time.Now()
		resp, err := c.node("c").client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("revoking on c: %v %v", resp, err)
		}
		resp.Body.Close()
		var gatewayAfter, brokerAfter time.Duration
		for deadline := revoked.Add(5 * time.Second); gatewayAfter == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if call() == http.StatusUnauthorized {
				gatewayAfter = time.Since(revoked)
			}
		}
		select {
		case <-s.ended:
			brokerAfter = time.Since(revoked)
		case <-time.After(5 * time.Second):
		}
		t.Logf("revoked on c: the gateway on b refused the token after %v, the broker on a ended the connection after %v", gatewayAfter, brokerAfter)
		if gatewayAfter == 0 || gatewayAfter > time.Second {
			t.Errorf("the gateway on b refused the revoked token after %v (0: not within 5 s), want within 1 s", gatewayAfter)
		}
		if brokerAfter == 0 || brokerAfter > time.Second {
			t.Errorf("the broker on a ended the revoked connection after %v (0: not within 5 s), want within 1 s", brokerAfter)
		}
	}

	t.Log("SIGKILL of a node: its clients move, it rejoins")
	{ // killedNodeRejoins
		p, err := c.dialMQTT(t, c.node("c").mqtt(), "pub-c", pubToken)
		if err != nil {
			t.Fatal(err)
		}
		// Six subscribers through HAProxy, two on each node (round robin).
		subToken := token(sub)
		var subs []*mqttConn
		for i := range 6 {
			s, err := c.dialMQTT(t, c.mqttFront, fmt.Sprintf("through-haproxy-%d", i), subToken)
			if err != nil {
				t.Fatal(err)
			}
			s.subscribe(t, "cluster/kill/#")
			subs = append(subs, s)
		}
		a := c.node("a")
		// A subscriber with a persistent session on node a, under QoS 1
		// load from node c: node a dies halfway.
		expiry := uint32(600)
		session := func(addr string, clean bool) (*mqttConn, error) {
			return c.dialMQTTWith(t, addr, &paho.Connect{ClientID: "persistent-sub", KeepAlive: 30, CleanStart: clean,
				Username: "persistent-sub", UsernameFlag: true, Password: []byte(subToken), PasswordFlag: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		}
		ps, err := session(a.mqtt(), true)
		if err != nil {
			t.Fatal(err)
		}
		ps.subscribe(t, "cluster/persist/#")
		// A device on node a with a will and a persistent session, and a
		// watcher of wills on node b: once a's liveness key expires,
		// another node takes the session and publishes the will, once.
		willWatch, err := c.dialMQTT(t, c.node("b").mqtt(), "will-watch", subToken)
		if err != nil {
			t.Fatal(err)
		}
		willWatch.subscribe(t, "cluster/will/#")
		willing, err := c.dialMQTTWith(t, a.mqtt(), &paho.Connect{ClientID: "will-on-a", KeepAlive: 30, CleanStart: true,
			Username: "will-on-a", UsernameFlag: true, Password: []byte(pubToken), PasswordFlag: true,
			Properties:  &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage: &paho.WillMessage{Topic: "cluster/will/a", QoS: 1, Payload: []byte("a died")}})
		if err != nil {
			t.Fatal(err)
		}
		willing.publish(t, "cluster/will-sync", "x", 1, false) // acknowledged once its record is written
		// And one whose session ends with its connection (no expiry): its
		// will is kept apart while it is connected.
		cleanWill, err := c.dialMQTTWith(t, a.mqtt(), &paho.Connect{ClientID: "clean-will-on-a", KeepAlive: 30, CleanStart: true,
			Username: "clean-will-on-a", UsernameFlag: true, Password: []byte(pubToken), PasswordFlag: true,
			WillMessage: &paho.WillMessage{Topic: "cluster/will/a-clean", QoS: 1, Payload: []byte("a died too")}})
		if err != nil {
			t.Fatal(err)
		}
		cleanWill.publish(t, "cluster/will-sync", "x", 1, false)

		const total = 400
		var acked []string
		killed := make(chan struct{})
		published := make(chan struct{})
		go func() {
			defer close(published)
			for i := range total {
				if i == total/2 {
					<-killed
				}
				payload := fmt.Sprintf("m%03d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := p.Publish(ctx, &paho.Publish{Topic: "cluster/persist/load", Payload: []byte(payload), QoS: 1})
				cancel()
				if err == nil && (r == nil || r.ReasonCode < 0x80) {
					acked = append(acked, payload)
				}
			}
		}()
		received := map[string]int{}
		take := func(m *mqttConn, until <-chan struct{}) {
			for {
				select {
				case msg := <-m.msgs:
					received[string(msg.Payload)]++
				case <-until:
					return
				}
			}
		}
		// Some delivered on a, before the kill.
		deadline := time.After(30 * time.Second)
	before:
		for len(received) < total/4 {
			select {
			case msg := <-ps.msgs:
				received[string(msg.Payload)]++
			case <-deadline:
				break before
			}
		}
		if err := a.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		a.cmd.Wait()
		close(killed)
		take(ps, ps.ended)
		var resumed *mqttConn
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if resumed, err = session(c.mqttFront, false); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the persistent subscriber could not reconnect through HAProxy after node a died: %v", err)
			}
		}
		if !resumed.ack.SessionPresent {
			t.Fatal("the persistent session was not present on the node HAProxy chose after node a died")
		}
		<-published
		waitAll := time.After(30 * time.Second)
		for missing := len(acked); missing > 0; {
			select {
			case msg := <-resumed.msgs:
				received[string(msg.Payload)]++
			case <-waitAll:
				var lost []string
				for _, m := range acked {
					if received[m] == 0 {
						lost = append(lost, m)
					}
				}
				t.Fatalf("%d of %d acknowledged QoS 1 messages lost for the persistent session after node a was killed: %v", len(lost), len(acked), lost)
			}
			missing = 0
			for _, m := range acked {
				if received[m] == 0 {
					missing++
				}
			}
		}
		duplicates := 0
		for _, n := range received {
			duplicates += n - 1
		}
		t.Logf("persistent session through a SIGKILL: %d of %d QoS 1 messages acknowledged to the publisher, every one received, %d duplicates (QoS 1 allows them)", len(acked), total, duplicates)

		moved := 0
		for i, s := range subs {
			select {
			case <-s.ended:
			case <-time.After(100 * time.Millisecond):
				continue // on b or c
			}
			moved++
			// Reconnect through HAProxy until a live node takes it.
			id := fmt.Sprintf("through-haproxy-%d", i)
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				if subs[i], err = c.dialMQTT(t, c.mqttFront, id, subToken); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s could not reconnect through HAProxy after node a died: %v", id, err)
				}
			}
			subs[i].subscribe(t, "cluster/kill/#")
		}
		if moved != 2 {
			t.Errorf("%d of 6 subscribers lost their connection with node a, want 2 (round robin)", moved)
		}
		time.Sleep(200 * time.Millisecond)
		p.publish(t, "cluster/kill/after", "after the kill", 1, false)
		for i, s := range subs {
			s.expect(t, fmt.Sprintf("subscriber %d", i), "after the kill")
		}

		c.run(t, a)
		c.waitUp(t, "a")
		back, err := c.dialMQTT(t, a.mqtt(), "back-on-a", subToken)
		if err != nil {
			t.Fatal(err)
		}
		back.subscribe(t, "cluster/kill/#")
		time.Sleep(200 * time.Millisecond)
		p.publish(t, "cluster/kill/rejoined", "a rejoined", 1, false)
		back.expect(t, "the subscriber on the restarted node a", "a rejoined")

		wills := map[string]bool{"a died": true, "a died too": true}
		for timeout := time.After(45 * time.Second); len(wills) > 0; { // the liveness key's 15 s, and the takeover's
			select {
			case m := <-willWatch.msgs:
				if !wills[string(m.Payload)] {
					t.Fatalf("the will watcher received %q, twice or never a will", m.Payload)
				}
				delete(wills, string(m.Payload))
			case <-timeout:
				t.Fatalf("the wills of clients of the killed node a were not published: %v", wills)
			}
		}
		p.publish(t, "cluster/will/marker", "marker", 1, false)
		if m := willWatch.expect(t, "the will watcher", "marker"); m == nil || len(willWatch.msgs) > 0 {
			t.Fatal("a will was published twice")
		}
		t.Log("the wills of clients of the killed node, with a persistent session and without: published once by another node")
	}

	t.Log("a node cut off from NATS hands its MQTT clients to the others")
	{
		a, b := c.node("a"), c.node("b")
		p, err := c.dialMQTT(t, a.mqtt(), "pub-partition", pubToken)
		if err != nil {
			t.Fatal(err)
		}
		subToken := token(sub)
		s, err := c.dialMQTT(t, b.mqtt(), "sub-partition", subToken)
		if err != nil {
			t.Fatal(err)
		}
		s.subscribe(t, "cluster/partition/#")
		time.Sleep(200 * time.Millisecond)
		p.publish(t, "cluster/partition/t", "before the cut", 1, false)
		s.expect(t, "the subscriber on b", "before the cut")

		b.nats.cut() // b's packets to and from NATS stop, nothing is reset
		cut := time.Now()
		select {
		case <-s.ended:
		case <-time.After(30 * time.Second):
			t.Fatal("node b kept its MQTT client 30 s after losing NATS: what a publisher on another node sends would silently not reach it")
		}
		t.Logf("node b cut off from NATS: its subscriber was told to go after %v (DISCONNECT 0x%02X)", time.Since(cut).Round(time.Millisecond), s.reason)
		if s.reason != 0x9C {
			t.Errorf("DISCONNECT 0x%02X, want 0x9C (use another server)", s.reason)
		}
		ready := func(path string) int {
			resp, err := b.client.Get(b.url(path))
			if err != nil {
				t.Fatalf("%s on b: %v", path, err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := ready("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz on the cut-off node: %d, want 200 (PostgreSQL answers: it still serves HTTPS)", code)
		}
		if code := ready("/readyz/mqtt"); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz/mqtt on the cut-off node: %d, want 503", code)
		}
		if _, err := c.dialMQTT(t, b.mqtt(), "refused-partition", subToken); err == nil || !strings.Contains(err.Error(), "CONNACK 0x88") {
			t.Errorf("a CONNECT to the cut-off node: %v, want CONNACK 0x88 (server unavailable)", err)
		}
		// Through HAProxy, which checks /readyz/mqtt, it gets a node that delivers.
		var moved *mqttConn
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if moved, err = c.dialMQTT(t, c.mqttFront, "sub-partition", subToken); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the subscriber could not reconnect through HAProxy: %v", err)
			}
		}
		moved.subscribe(t, "cluster/partition/#")
		time.Sleep(200 * time.Millisecond)
		p.publish(t, "cluster/partition/t", "during the cut", 1, false)
		moved.expect(t, "the subscriber, moved through HAProxy", "during the cut")

		b.nats.mend()
		for deadline := time.Now().Add(30 * time.Second); ready("/readyz/mqtt") != http.StatusOK; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("node b did not take MQTT connections again 30 s after NATS was back")
			}
		}
		back, err := c.dialMQTT(t, b.mqtt(), "back-partition", subToken)
		if err != nil {
			t.Fatal(err)
		}
		back.subscribe(t, "cluster/partition/#")
		time.Sleep(200 * time.Millisecond)
		p.publish(t, "cluster/partition/t", "after mending", 1, false)
		back.expect(t, "a subscriber on b once NATS is back", "after mending")
	}

	t.Log("rolling restart fails no token request")
	{ // rollingRestart
		var ok, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range 2 {
			cl := c.client(t, fmt.Sprintf("rolling-%d", i), "cluster")
			wg.Go(func() {
				for ctx.Err() == nil {
					if _, err := cl.token(); err != nil {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
						continue
					}
					ok.Add(1)
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		for _, n := range c.nodes {
			if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := n.cmd.Wait(); err != nil {
				t.Errorf("node %s after SIGTERM: %v", n.name, err)
			}
			c.run(t, n)
			c.waitUp(t, n.name)
		}
		stop()
		wg.Wait()
		sort.Strings(failures)
		t.Logf("rolling restart of 3 nodes: %d token requests answered, %d failed", ok.Load(), failed.Load())
		if failed.Load() > 0 {
			t.Errorf("%d token requests failed during the rolling restart, want 0: %q", failed.Load(), failures[:min(5, len(failures))])
		}
		if ok.Load() < 20 {
			t.Errorf("only %d token requests answered during the rolling restart", ok.Load())
		}
	}
}

// freePort is a free TCP port on host.
func freePort(t *testing.T, host string) string {
	t.Helper()
	ln, err := net.Listen("tcp", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// daemon runs a service in the foreground until the test ends and returns
// its log.
func daemon(t *testing.T, path string, args ...string) logFile {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(path)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
	return logFile(f.Name())
}

// waitListening waits until every address accepts connections.
func waitListening(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if conn, err := net.Dial("tcp", a); err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nothing listens on %s", a)
			}
		}
	}
}
