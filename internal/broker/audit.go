package broker

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/store"
)

// auditLog writes denials to the audit log from its own goroutine, in
// batches. Denials are cheap for a client to cause, so the queue is bounded:
// when the database cannot keep up, records are dropped and counted rather
// than slowing the broker down.
type auditLog struct {
	to   Auditor
	log  *slog.Logger
	m    *metrics
	q    chan store.AuditRecord
	done chan struct{}
}

const auditQueue = 4096

func newAuditLog(ctx context.Context, to Auditor, log *slog.Logger, m *metrics) *auditLog {
	a := &auditLog{to: to, log: log, m: m, q: make(chan store.AuditRecord, auditQueue), done: make(chan struct{})}
	if to == nil {
		close(a.done)
		return a
	}
	go a.run(ctx)
	return a
}

// deny records that id (nil before authentication) was refused action on
// cl; kv are pairs of details (a topic, the rule that decided).
func (a *auditLog) deny(id *Identity, cl *mqtt.Client, action string, kv ...string) {
	if a.to == nil {
		return
	}
	listener, remote := where(cl)
	target := store.Ref{Kind: "mqtt-client", ID: cl.ID}
	actor := "mqtt:" + remote
	if id != nil && id.Kind != "" {
		actor = id.principal()
		switch {
		case id.Thing != "":
			target = store.Ref{Kind: store.KindThing, ID: id.Thing}
		case id.Kind == kindUser:
			target = store.Ref{Kind: store.KindUser, ID: id.Subject}
		}
	}
	details := map[string]string{"clientId": cl.ID, "listener": listener, "remote": remote}
	for i := 0; i+1 < len(kv); i += 2 {
		details[kv[i]] = kv[i+1]
	}
	detail, _ := json.Marshal(details)
	select {
	case a.q <- store.AuditRecord{Time: time.Now().UTC(), Actor: actor, Action: action, Target: target, Detail: detail}:
	default:
		a.m.auditDropped.Inc()
	}
}

// where is the listener and the peer address of cl's connection, or of
// its last one while it is away.
func where(cl *mqtt.Client) (listener, remote string) {
	if conn := cl.Conn(); conn != nil {
		return listenerOf(conn).cfg.Name, conn.RemoteAddr().String()
	}
	if s := sessionOf(cl); s != nil {
		return s.listener, s.remote
	}
	return "", ""
}

func (a *auditLog) run(ctx context.Context) {
	defer close(a.done)
	for {
		var batch []store.AuditRecord
		select {
		case <-ctx.Done():
			return
		case r := <-a.q:
			batch = append(batch, r)
		}
	fill:
		for len(batch) < 256 {
			select {
			case r := <-a.q:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := a.to.AppendAudit(wctx, batch...); err != nil {
			a.log.Warn("mqtt: audit records lost", "count", len(batch), "err", err)
			a.m.auditDropped.Add(float64(len(batch)))
		}
		cancel()
	}
}

// wait returns once the writer stopped (after its context ended).
func (a *auditLog) wait() { <-a.done }
