package coapgw

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/prometheus/client_golang/prometheus"
)

// Message is what the broker hands over for a thing: a message on Topic.
type Message struct {
	Topic       string
	Payload     []byte
	ContentType string // MQTT 5 content type, "" when none
}

// Subscriber subscribes a thing authenticated by its DTLS certificate
// (cert: the hex SHA-256 of its DER) to a topic filter, and reads a
// topic's retained message for it, under the broker's subscribe and
// receive rules for that thing: the broker. deliver runs on the
// publisher's path and must not block. Refusals wrap ErrBadTopic,
// ErrForbidden and ErrInactive, as Publisher's do. The broker re-checks a
// subscription when the thing or its rules change, and ends one they no
// longer allow: ended gets why (wrapping ErrForbidden or ErrInactive); it
// must not block.
type Subscriber interface {
	SubscribeAsThing(ctx context.Context, thing, cert, filter string, deliver func(Message), ended func(error)) (stop func(), err error)
	RetainedAsThing(ctx context.Context, thing, cert, topic string) (m Message, ok bool, err error)
}

// Bounds of observation.
const (
	// notifyQueue is how many messages wait for one observer's session
	// while its last notification is unacknowledged, for each observer it
	// may hold; past it the oldest goes (RFC 7641 §4.5.2: only the newest
	// state has to arrive).
	notifyQueue = 16
	// notifyTimeout bounds the retransmissions of one confirmable
	// notification; an observer that never acknowledges is removed
	// (RFC 7641 §4.5).
	notifyTimeout = 2 * time.Minute
	// Observe values count modulo 2^24 (RFC 7641 §3.4).
	observeMask = 1<<24 - 1
)

// observers are the things' observations of broker topics (RFC 7641):
// GET /mqtt/TOPIC with Observe: 0 registers one, keyed by the session and
// the request's token (§4.1), bounded per session and in all; Observe: 1
// (§3.6), a Reset in answer to a notification (§3.6), an unacknowledged
// notification (§4.5), the session's end, and the broker's refusal of its
// subscription when the thing or its rules change (with an error
// notification, §3.2) remove it.
type observers struct {
	sub             Subscriber
	max, perSession int
	log             *slog.Logger
	metrics         *observeMetrics

	mu        sync.Mutex
	n         int
	bySession map[*Session]*observed
}

// observed are the observations of one session. One sender writes their
// notifications, one confirmable at a time (RFC 7252 §4.7: NSTART 1), so
// that a Reset names the observer of the notification in flight.
type observed struct {
	byToken map[string]*observer
	queue   chan pending
	// ends are the observations the broker ended, each waiting for its
	// last notification; never dropped as queue's messages are.
	ends     chan pending
	done     chan struct{} // the session ended
	inflight atomic.Pointer[observer]
}

// pending is a message on its way to an observer, or the error that ends
// it (end: its code; RFC 7641 §3.2: a notification that is no 2.05 ends
// the observation).
type pending struct {
	ob  *observer
	m   Message
	end codes.Code
}

type observer struct {
	s     *Session
	token message.Token
	ready chan struct{} // closed once the registration's answer is out, or never will be
	done  chan struct{} // closed when removed
	stop  func()        // the broker's subscription
	once  sync.Once
	seq   uint32 // the last Observe value sent; only the sender touches it
}

type observeMetrics struct {
	observers     prometheus.Gauge       // thingid_coap_observers
	notifications *prometheus.CounterVec // thingid_coap_notifications_total{result}
	refused       *prometheus.CounterVec // thingid_coap_observe_refused_total{reason}
}

func newObservers(opts Options) (*observers, error) {
	m := &observeMetrics{
		observers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "thingid_coap_observers",
			Help: "Observations of broker topics (GET /mqtt/TOPIC with Observe) the CoAP gateway holds."}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_notifications_total",
			Help: "CoAP notifications by result (sent, dropped: the observer's queue was full, unacknowledged: the observer was removed, ended: an error notification ended an observation the broker's rules no longer allow)."}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_observe_refused_total",
			Help: "Observations refused, by reason (forbidden, bad_topic, inactive, session_limit, limit, session_ended)."}, []string{"reason"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{m.observers, m.notifications, m.refused} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return &observers{sub: opts.Subscriber, max: opts.MaxObservers, perSession: opts.ObserversPerSession, log: opts.Log, metrics: m,
		bySession: map[*Session]*observed{}}, nil
}

// mqttResource serves /mqtt/TOPIC: POST publishes (publishHandler), GET
// observes or reads the retained message (observe). Either is 4.05 when
// its side is not configured.
func (g *Gateway) mqttResource() Handler {
	var publish Handler
	if g.opts.Publisher != nil {
		publish = publishHandler(g.opts.Publisher, g.opts.MaxBody)
	}
	return HandlerFunc(func(w mux.ResponseWriter, r *mux.Message, s *Session) {
		switch {
		case s == nil:
			_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
		case r.Code() == codes.GET && g.observers.sub != nil:
			g.observers.serve(w, r, s)
		case r.Code() == codes.POST && publish != nil:
			publish.ServeCoAP(w, r, s)
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	})
}

// serve answers GET /mqtt/TOPIC: with Observe: 0 it registers an observer
// of TOPIC (a topic filter: its wildcards percent-encoded in a URI),
// answered with an empty 2.05 carrying Observe, the retained messages
// following as notifications; with Observe: 1 it removes the token's
// observer and answers an empty 2.05; without Observe it answers the
// topic's retained message (2.05, block-wise when large) or 4.04. 4.01
// for a thing no longer active, 4.03 outside the thing's subscribe rules,
// 4.00 for what is no topic, 4.29 past the session's observers, 5.03 past
// the gateway's. s is a DTLS session (mqttResource answered 4.01 without).
func (o *observers) serve(w mux.ResponseWriter, r *mux.Message, s *Session) {
	topic, err := topicOf(r)
	if err != nil {
		_ = w.SetResponse(codes.BadOption, message.TextPlain, nil)
		return
	}
	obs, err := r.Observe()
	switch {
	case errors.Is(err, message.ErrOptionNotFound):
		o.retained(w, r, s, topic)
	case err != nil:
		_ = w.SetResponse(codes.BadOption, message.TextPlain, nil)
	case obs == 0:
		o.register(w, r, s, topic)
	case obs == 1:
		o.remove(o.find(s, r.Token()), "deregistered")
		// Answered as the registration was: empty, whatever TOPIC is.
		_ = w.SetResponse(codes.Content, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, bytes.NewReader([]byte("Observe is 0 (register) or 1 (deregister)")))
	}
}

// retained answers the topic's retained message, 4.04 when none.
func (o *observers) retained(w mux.ResponseWriter, r *mux.Message, s *Session, topic string) {
	m, ok, err := o.sub.RetainedAsThing(r.Context(), s.Thing.ID, s.Fingerprint, topic)
	switch {
	case err != nil:
		o.refuse(w, err, topic)
	case !ok:
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
	default:
		_ = w.SetResponse(codes.Content, formatOf(m.ContentType), bytes.NewReader(m.Payload))
	}
}

// refuse answers a Subscriber's refusal.
func (o *observers) refuse(w mux.ResponseWriter, err error, topic string) {
	switch {
	case errors.Is(err, ErrBadTopic):
		o.metrics.refused.WithLabelValues("bad_topic").Inc()
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, bytes.NewReader([]byte("the path after /mqtt/ is no MQTT topic: a name to read, a filter to observe")))
	case errors.Is(err, ErrForbidden):
		o.metrics.refused.WithLabelValues("forbidden").Inc()
		_ = w.SetResponse(codes.Forbidden, message.TextPlain, bytes.NewReader([]byte("this thing may not subscribe to "+topic)))
	case errors.Is(err, ErrInactive):
		o.metrics.refused.WithLabelValues("inactive").Inc()
		_ = w.SetResponse(codes.Unauthorized, message.TextPlain, nil)
	default:
		o.log.Error("coapgw: subscribing a thing on the broker failed", "topic", topic, "err", err)
		_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, nil)
	}
}

// register adds the observer of a GET with Observe: 0, replacing the one
// of the same token (RFC 7641 §4.1).
func (o *observers) register(w mux.ResponseWriter, r *mux.Message, s *Session, topic string) {
	ob := &observer{s: s, token: append(message.Token(nil), r.Token()...), ready: make(chan struct{}), done: make(chan struct{})}
	o.remove(o.find(s, ob.token), "replaced")
	mine, reason := o.reserve(ob)
	if reason != "" {
		o.metrics.refused.WithLabelValues(reason).Inc()
		if reason == "session_limit" {
			_ = w.SetResponse(codes.TooManyRequests, message.TextPlain, bytes.NewReader([]byte("too many observations on this session")))
		} else {
			_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, bytes.NewReader([]byte("too many observations")))
		}
		return
	}
	stop, err := o.sub.SubscribeAsThing(r.Context(), s.Thing.ID, s.Fingerprint, topic, mine.enqueue(ob, o.metrics),
		func(why error) { mine.ended(ob, why) })
	if err != nil {
		o.remove(ob, "")
		o.refuse(w, err, topic)
		return
	}
	o.mu.Lock()
	ob.stop = stop
	removed := o.bySession[s] != mine || mine.byToken[string(ob.token)] != ob
	o.mu.Unlock()
	if removed { // the session ended meanwhile, or another request took the token
		close(ob.ready)
		stop()
		return
	}
	ob.seq = 1
	_ = w.SetResponse(codes.Content, message.TextPlain, nil)
	w.Message().SetObserve(ob.seq) // after SetResponse, which resets the options
	// Notifications follow the registration's answer, never overtake it.
	ready := func() { close(ob.ready) }
	if !responsewriter.AfterWrite(r.Context(), ready) {
		ready()
	}
}

// reserve counts ob in, or names the bound it would pass; the session's
// sender starts with its first observer.
func (o *observers) reserve(ob *observer) (*observed, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	mine := o.bySession[ob.s]
	switch {
	case ob.s.conn.Context().Err() != nil:
		return nil, "session_ended" // its observers are gone already
	case mine != nil && len(mine.byToken) >= o.perSession:
		return nil, "session_limit"
	case o.n >= o.max:
		return nil, "limit"
	}
	if mine == nil {
		mine = &observed{byToken: map[string]*observer{}, queue: make(chan pending, notifyQueue*o.perSession),
			ends: make(chan pending, o.perSession), done: make(chan struct{})}
		o.bySession[ob.s] = mine
		ob.s.conn.AddOnClose(func() { o.endSession(ob.s) })
		go o.notify(ob.s, mine)
	}
	mine.byToken[string(ob.token)] = ob
	o.n++
	o.metrics.observers.Inc()
	return mine, ""
}

func (o *observers) find(s *Session, token message.Token) *observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	if mine := o.bySession[s]; mine != nil {
		return mine.byToken[string(token)]
	}
	return nil
}

// remove ends ob (nil: none) for reason ("" when not worth a log line).
func (o *observers) remove(ob *observer, reason string) {
	if ob == nil {
		return
	}
	o.mu.Lock()
	if mine := o.bySession[ob.s]; mine != nil && mine.byToken[string(ob.token)] == ob {
		delete(mine.byToken, string(ob.token))
		o.n--
		o.metrics.observers.Dec()
	}
	stop := ob.stop
	o.mu.Unlock()
	ob.once.Do(func() {
		close(ob.done)
		if stop != nil {
			stop()
		}
	})
	if reason != "" {
		o.log.Debug("coapgw: observer removed", "thing", ob.s.Thing.ID, "reason", reason)
	}
}

// endSession removes the observers of a session that closed: ended by
// the thing, idle, or revoked (the gateway closes the session of a
// revoked certificate or a disabled or unlinked thing), and stops its
// sender.
func (o *observers) endSession(s *Session) {
	o.mu.Lock()
	mine := o.bySession[s]
	delete(o.bySession, s)
	var doomed []*observer
	if mine != nil {
		for _, ob := range mine.byToken {
			doomed = append(doomed, ob)
		}
		clear(mine.byToken)
		o.n -= len(doomed)
		o.metrics.observers.Sub(float64(len(doomed)))
	}
	o.mu.Unlock()
	if mine == nil {
		return
	}
	close(mine.done)
	for _, ob := range doomed {
		o.remove(ob, "session_ended") // counted out above: this stops it
	}
}

// reset removes the observer whose notification is in flight on s when a
// Reset with message ID mid answers it (RFC 7641 §3.6: the client forgot
// the observation): when mid is the one the notification, or its first
// block, went out with. Another Reset is go-coap's to ignore.
func (o *observers) reset(s *Session, w *wire, mid int32) {
	o.mu.Lock()
	mine := o.bySession[s]
	o.mu.Unlock()
	if mine == nil {
		return
	}
	if ob := mine.inflight.Load(); ob != nil && w.answers(mid, ob.token) {
		o.remove(ob, "reset")
	}
}

// enqueue is ob's delivery function: it never blocks the publisher, and
// drops the session's oldest waiting message for a full queue.
func (mine *observed) enqueue(ob *observer, m *observeMetrics) func(Message) {
	return func(msg Message) {
		for {
			select {
			case <-ob.done:
				return
			case mine.queue <- pending{ob: ob, m: msg}:
				return
			default:
			}
			select {
			case <-mine.queue:
				m.notifications.WithLabelValues("dropped").Inc()
			default:
			}
		}
	}
}

// ended is ob's end function: the broker no longer lets the thing
// observe its topic. Its last notification is 4.03 (the rules refuse the
// topic now) or 4.01 (the thing is no longer active); messages still
// waiting for it are dropped once it is out.
func (mine *observed) ended(ob *observer, why error) {
	code := codes.Forbidden
	if errors.Is(why, ErrInactive) {
		code = codes.Unauthorized
	}
	select {
	case mine.ends <- pending{ob: ob, end: code}:
	default: // more ends waiting than observers held: this one was replaced
	}
}

// notify is a session's sender: it writes the notifications of its
// observers as confirmable messages, one at a time, until the session
// ends.
func (o *observers) notify(s *Session, mine *observed) {
	for {
		var p pending
		select {
		case <-mine.done:
			return
		case p = <-mine.queue:
		case p = <-mine.ends:
		}
		select {
		case <-p.ob.ready:
		case <-p.ob.done:
			continue
		}
		if p.end != 0 {
			o.end(mine, p)
			continue
		}
		mine.inflight.Store(p.ob)
		err := o.send(p.ob, p.m, 0)
		mine.inflight.Store(nil)
		select {
		case <-p.ob.done: // removed meanwhile (a Reset, deregistered)
		case <-s.conn.Done(): // the session's end removes it
		default:
			if err != nil {
				o.metrics.notifications.WithLabelValues("unacknowledged").Inc()
				o.remove(p.ob, "unacknowledged")
				continue
			}
			o.metrics.notifications.WithLabelValues("sent").Inc()
		}
	}
}

// end sends the error notification that ends an observation the broker
// ended, and removes it.
func (o *observers) end(mine *observed, p pending) {
	mine.inflight.Store(p.ob)
	err := o.send(p.ob, p.m, p.end)
	mine.inflight.Store(nil)
	o.log.Info("coapgw: observation ended: the broker's rules no longer allow it", "thing", p.ob.s.thingID, "code", p.end.String(), "sent", err == nil)
	o.metrics.notifications.WithLabelValues("ended").Inc()
	o.remove(p.ob, "")
}

// send writes m to ob as a notification, or, with an end code, the error
// that ends the observation (RFC 7641 §4.2: without Observe).
func (o *observers) send(ob *observer, m Message, end codes.Code) error {
	cc := ob.s.conn
	ctx, cancel := context.WithTimeout(cc.Context(), notifyTimeout)
	defer cancel()
	go func() { // a removed observer's notification stops being retransmitted
		select {
		case <-ob.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	msg := cc.AcquireMessage(ctx)
	defer cc.ReleaseMessage(msg)
	msg.SetToken(ob.token)
	msg.SetType(message.Confirmable)
	if end != 0 {
		msg.SetCode(end)
		return cc.WriteMessage(msg)
	}
	ob.seq = (ob.seq + 1) & observeMask
	msg.SetCode(codes.Content)
	msg.SetObserve(ob.seq)
	msg.SetContentFormat(formatOf(m.ContentType))
	msg.SetBody(bytes.NewReader(m.Payload))
	return cc.WriteMessage(msg)
}

// resetSeen removes the observer whose notification a Reset answers. It
// runs in go-coap's request monitor (Gateway.monitor), before go-coap takes the
// Reset as the answer to the notification in flight and lets its sender go
// on to the next.
func (g *Gateway) resetSeen(cc *udpClient.Conn, m *pool.Message) {
	if m.Type() != message.Reset {
		return
	}
	w, ok := cc.NetConn().(*wire)
	if s := g.session(cc); s != nil && ok {
		g.observers.reset(s, w, m.MessageID())
	}
}

// ignoreResets takes a Reset (RFC 7252 §4.2) out of the resource table:
// none gets an answer. (The request monitor saw it first: resetSeen.)
func ignoreResets(next mux.Handler) mux.Handler {
	return mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		if r.Type() != message.Reset {
			next.ServeCOAP(w, r)
		}
	})
}

// formatOf is the CoAP Content-Format of an MQTT 5 content type:
// contentTypes reversed; application/octet-stream (raw bytes) for none
// and for the others.
func formatOf(contentType string) message.MediaType {
	for cf, ct := range contentTypes {
		if ct == contentType {
			return cf
		}
	}
	return message.AppOctets
}
