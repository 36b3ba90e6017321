package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel is the PostgreSQL NOTIFY channel that carries events between nodes.
const Channel = "thingid_events"

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// StartRelay listens on Channel over a dedicated connection to dsn and starts
// relaying bus's events with pg_notify; it returns once the node is
// listening, so events published by other nodes after that reach bus. The
// relay reconnects with backoff when a connection drops and runs until ctx
// ends or Close is called.
//
// The guarantee is NOTIFY's: an event reaches only the nodes listening when it
// is committed; a node reconnecting after a dropped connection misses the
// events of that time, so once it listens again the relay publishes Resync
// on bus.
func StartRelay(ctx context.Context, bus *Bus, dsn string, log *slog.Logger) (*Relay, error) {
	conn, err := listen(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("events: listen on PostgreSQL channel %s: %w", Channel, err)
	}
	r := newRelay(bus, log)
	r.log = r.log.With("channel", Channel)
	r.start(ctx, &notifyLink{dsn: dsn, log: r.log, listening: conn})
	return r, nil
}

// notifyLink sends with pg_notify on one connection and listens on another
// (the listening one is busy waiting).
type notifyLink struct {
	dsn       string
	log       *slog.Logger
	listening *pgx.Conn // handed to receive
	sending   *pgx.Conn // nil until needed, and after a failure
}

func (l *notifyLink) send(ctx context.Context, payloads [][]byte) (int, error) {
	for i, p := range payloads {
		if l.sending == nil {
			conn, err := l.connect(ctx, pgx.Connect)
			if err != nil {
				return i, err // ctx ended
			}
			l.sending = conn
		}
		if _, err := l.sending.Exec(ctx, "SELECT pg_notify($1, $2)", Channel, string(p)); err != nil {
			closeConn(l.sending)
			l.sending = nil
			return i, err
		}
	}
	return len(payloads), nil
}

// receive delivers notifications until ctx ends, listening again after a
// dropped connection and then calling missed.
func (l *notifyLink) receive(ctx context.Context, deliver func(string), missed func()) {
	conn := l.listening
	defer func() { closeConn(conn) }()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("lost PostgreSQL listening connection, reconnecting", "err", err)
			if conn, err = l.connect(ctx, listen); err != nil {
				return // ctx ended
			}
			l.log.Info("listening again on PostgreSQL")
			missed() // events published meanwhile never reach us
			continue
		}
		deliver(n.Payload)
	}
}

func (l *notifyLink) close() { closeConn(l.sending) }

// connect calls dial until it succeeds, waiting longer after each failure; it
// fails only when ctx ends.
func (l *notifyLink) connect(ctx context.Context, dial func(context.Context, string) (*pgx.Conn, error)) (*pgx.Conn, error) {
	wait := minBackoff
	for {
		conn, err := dial(ctx, l.dsn)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l.log.Warn("connect to PostgreSQL failed", "retryIn", wait.String(), "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(2*wait, maxBackoff)
	}
}

// listen opens a connection that listens on Channel.
func listen(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil { // a constant, not input
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}
