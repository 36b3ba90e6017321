package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/thingid/thingid/internal/store"
)

const (
	// pollInterval is how often a log relay asks whether the database changed.
	pollInterval = 100 * time.Millisecond
	// readBatch bounds the events read from the log at once.
	readBatch = 256
)

// EventLog is a table of recent events in a database file shared by several
// processes, with a cheap way to tell that anything was committed
// (sqlstore.Store on SQLite).
type EventLog interface {
	DataVersion(ctx context.Context) (uint64, error)
	AppendEvents(ctx context.Context, payloads [][]byte) error
	EventsAfter(ctx context.Context, seq int64, limit int) ([]store.EventRecord, error)
	LastEventSeq(ctx context.Context) (int64, error)
}

// StartLogRelay relays bus's events through log: what this process publishes
// is appended to it, and what the others appended since the relay started is
// published on bus, within pollInterval. On SQLite this is what brings a CLI
// command's change (a disabled device, a revoked certificate) to the running
// server at once. It runs until ctx ends or Close is called.
func StartLogRelay(ctx context.Context, bus *Bus, log EventLog, logger *slog.Logger) (*Relay, error) {
	// The version first: an event appended between the two reads is then
	// either below seq (older than the relay) or changes the version.
	version, err := log.DataVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("events: event log: %w", err)
	}
	seq, err := log.LastEventSeq(ctx)
	if err != nil {
		return nil, fmt.Errorf("events: event log: %w", err)
	}
	r := newRelay(bus, logger)
	r.log = r.log.With("link", "event log")
	r.start(ctx, &logLink{log: log, logger: r.log, seq: seq, version: version})
	return r, nil
}

// logLink appends to the event log and polls it.
type logLink struct {
	log     EventLog
	logger  *slog.Logger
	seq     int64  // the newest event read
	version uint64 // the data version when it was read
	failing bool   // the last poll failed (logged once until it works again)
}

func (l *logLink) send(ctx context.Context, payloads [][]byte) (int, error) {
	if err := l.log.AppendEvents(ctx, payloads); err != nil {
		return 0, err
	}
	return len(payloads), nil
}

// receive never misses an event: the log keeps them, read after the last one
// delivered.
func (l *logLink) receive(ctx context.Context, deliver func(string), _ func()) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := l.poll(ctx, deliver)
		switch {
		case err != nil && ctx.Err() == nil && !l.failing:
			l.failing = true
			l.logger.Warn("reading the event log failed; retrying", "err", err)
		case err == nil && l.failing:
			l.failing = false
			l.logger.Info("reading the event log again")
		}
	}
}

// poll delivers the events appended since the last poll, if anything was
// committed since.
func (l *logLink) poll(ctx context.Context, deliver func(string)) error {
	v, err := l.log.DataVersion(ctx)
	if err != nil || v == l.version {
		return err
	}
	for {
		recs, err := l.log.EventsAfter(ctx, l.seq, readBatch)
		if err != nil {
			return err // the version stays: read again next time
		}
		for _, e := range recs {
			if len(e.Payload) < maxPayload { // what no relay writes is not read either
				deliver(string(e.Payload))
			}
			l.seq = e.Seq
		}
		if len(recs) < readBatch {
			l.version = v
			return nil
		}
	}
}

func (l *logLink) close() {}
