package coapgw

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
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
// ErrForbidden and ErrInactive, as Publisher's do.
type Subscriber interface {
	SubscribeAsThing(ctx context.Context, thing, cert, filter string, deliver func(Message)) (stop func(), err error)
	RetainedAsThing(ctx context.Context, thing, cert, topic string) (m Message, ok bool, err error)
}

// Bounds of observation.
const (
	// notifyQueue is how many messages wait for one observer while its
	// last notification is unacknowledged; past it the oldest goes
	// (RFC 7641 §4.5.2: only the newest state has to arrive).
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
// notification (§4.5) and the session's end remove it.
type observers struct {
	sub             Subscriber
	max, perSession int
	log             *slog.Logger
	metrics         *observeMetrics

	mu        sync.Mutex
	n         int
	bySession map[*Session]map[string]*observer // token → observer
	byMID     map[sentMID]*observer             // each observer's last notification
}

// sentMID names a notification sent on a session.
type sentMID struct {
	s   *Session
	mid int32
}

type observer struct {
	s     *Session
	token message.Token
	queue chan Message
	done  chan struct{}
	stop  func() // the broker's subscription
	once  sync.Once
	seq   uint32 // the last Observe value sent; only the sender touches it
	mid   int32  // the last notification's message ID, under observers.mu
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
			Help: "CoAP notifications by result (sent, dropped: the observer's queue was full, unacknowledged: the observer was removed)."}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "thingid_coap_observe_refused_total",
			Help: "Observations refused, by reason (forbidden, bad_topic, inactive, session_limit, limit)."}, []string{"reason"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{m.observers, m.notifications, m.refused} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return &observers{sub: opts.Subscriber, max: opts.MaxObservers, perSession: opts.ObserversPerSession, log: opts.Log, metrics: m,
		bySession: map[*Session]map[string]*observer{}, byMID: map[sentMID]*observer{}}, nil
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
// following as notifications; without Observe, or with Observe: 1 after
// removing the token's observer, it answers the topic's retained message
// (2.05, block-wise when large) or 4.04. 4.01 without a DTLS identity or
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
		o.retained(w, r, s, topic)
	default:
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, bytes.NewReader([]byte("Observe is 0 (register) or 1 (deregister)")))
	}
}

// retained answers the topic's retained message.
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
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, bytes.NewReader([]byte("the path after /mqtt/ is not an MQTT topic filter")))
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
	ob := &observer{s: s, token: append(message.Token(nil), r.Token()...), queue: make(chan Message, notifyQueue), done: make(chan struct{}), mid: -1}
	o.remove(o.find(s, ob.token), "replaced")
	if reason := o.reserve(ob); reason != "" {
		o.metrics.refused.WithLabelValues(reason).Inc()
		if reason == "session_limit" {
			_ = w.SetResponse(codes.TooManyRequests, message.TextPlain, bytes.NewReader([]byte("too many observations on this session")))
		} else {
			_ = w.SetResponse(codes.ServiceUnavailable, message.TextPlain, bytes.NewReader([]byte("too many observations")))
		}
		return
	}
	stop, err := o.sub.SubscribeAsThing(r.Context(), s.Thing.ID, s.Fingerprint, topic, ob.enqueue(o.metrics))
	if err != nil {
		o.remove(ob, "")
		o.refuse(w, err, topic)
		return
	}
	ob.stop = stop
	select {
	case <-ob.done: // the session ended meanwhile
		stop()
		return
	default:
	}
	ob.seq = 1
	w.Message().SetObserve(ob.seq)
	_ = w.SetResponse(codes.Content, message.TextPlain, nil)
	// Notifications follow the registration's answer, never overtake it.
	if !responsewriter.AfterWrite(r.Context(), func() { go o.notify(ob) }) {
		go o.notify(ob)
	}
}

// reserve counts ob in, or names the bound it would pass.
func (o *observers) reserve(ob *observer) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	mine := o.bySession[ob.s]
	switch {
	case len(mine) >= o.perSession:
		return "session_limit"
	case o.n >= o.max:
		return "limit"
	}
	if mine == nil {
		mine = map[string]*observer{}
		o.bySession[ob.s] = mine
		ob.s.conn.AddOnClose(func() { o.endSession(ob.s) })
	}
	mine[string(ob.token)] = ob
	o.n++
	o.metrics.observers.Inc()
	return ""
}

func (o *observers) find(s *Session, token message.Token) *observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bySession[s][string(token)]
}

// remove ends ob (nil: none) for reason ("" when not worth a log line).
func (o *observers) remove(ob *observer, reason string) {
	if ob == nil {
		return
	}
	o.mu.Lock()
	mine := o.bySession[ob.s]
	if mine[string(ob.token)] == ob {
		delete(mine, string(ob.token))
		delete(o.byMID, sentMID{ob.s, ob.mid})
		o.n--
		o.metrics.observers.Dec()
	}
	o.mu.Unlock()
	ob.once.Do(func() {
		close(ob.done)
		if ob.stop != nil {
			ob.stop()
		}
	})
	if reason != "" {
		o.log.Debug("coapgw: observer removed", "thing", ob.s.Thing.ID, "reason", reason)
	}
}

// endSession removes the observers of a session that closed: ended by
// the thing, idle, or revoked (the gateway closes the session of a
// revoked certificate or a disabled or unlinked thing).
func (o *observers) endSession(s *Session) {
	o.mu.Lock()
	var doomed []*observer
	for _, ob := range o.bySession[s] {
		doomed = append(doomed, ob)
	}
	o.mu.Unlock()
	for _, ob := range doomed {
		o.remove(ob, "session_ended")
	}
	o.mu.Lock()
	delete(o.bySession, s)
	o.mu.Unlock()
}

// reset removes the observer whose last notification a Reset answers
// (RFC 7641 §3.6: the client forgot the observation).
func (o *observers) reset(s *Session, mid int32) {
	o.mu.Lock()
	ob := o.byMID[sentMID{s, mid}]
	o.mu.Unlock()
	o.remove(ob, "reset")
}

// enqueue is ob's delivery function: it never blocks the publisher, and
// drops the oldest waiting message for a full queue.
func (ob *observer) enqueue(m *observeMetrics) func(Message) {
	return func(msg Message) {
		for {
			select {
			case <-ob.done:
				return
			case ob.queue <- msg:
				return
			default:
			}
			select {
			case <-ob.queue:
				m.notifications.WithLabelValues("dropped").Inc()
			default:
			}
		}
	}
}

// notify sends ob's messages as confirmable notifications, one at a time
// (RFC 7641 §4.5.1), until it is removed.
func (o *observers) notify(ob *observer) {
	for {
		select {
		case <-ob.done:
			return
		case m := <-ob.queue:
			if err := o.send(ob, m); err != nil {
				select {
				case <-ob.done: // removed meanwhile: no failure of the thing's
				default:
					o.metrics.notifications.WithLabelValues("unacknowledged").Inc()
					o.remove(ob, "unacknowledged")
				}
				return
			}
			o.metrics.notifications.WithLabelValues("sent").Inc()
		}
	}
}

func (o *observers) send(ob *observer, m Message) error {
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
	ob.seq = (ob.seq + 1) & observeMask
	msg.SetCode(codes.Content)
	msg.SetToken(ob.token)
	msg.SetObserve(ob.seq)
	msg.SetContentFormat(formatOf(m.ContentType))
	msg.SetBody(bytes.NewReader(m.Payload))
	msg.SetType(message.Confirmable)
	mid := cc.GetMessageID()
	msg.SetMessageID(mid)
	o.mu.Lock()
	delete(o.byMID, sentMID{ob.s, ob.mid})
	ob.mid = mid
	o.byMID[sentMID{ob.s, mid}] = ob
	o.mu.Unlock()
	return cc.WriteMessage(msg)
}

// ignoreResets takes a Reset (RFC 7252 §4.2) out of the resource table:
// one answering a notification removes its observer; none gets an answer.
func (g *Gateway) ignoreResets(next mux.Handler) mux.Handler {
	return mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		if r.Type() != message.Reset {
			next.ServeCOAP(w, r)
			return
		}
		if s := g.session(w.Conn()); s != nil {
			g.observers.reset(s, r.MessageID())
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
