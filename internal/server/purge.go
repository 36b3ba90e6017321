package server

import (
	"context"
	"log/slog"
	"time"
)

// purgeEvery is how often expired sessions, codes and replay records are deleted.
const purgeEvery = 10 * time.Minute

// purgeLoop deletes expired short-lived records until ctx ends. Every node runs
// it; the deletes are idempotent.
func (p *Platform) purgeLoop(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n, err := p.Store.PurgeExpired(ctx, now)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("purging expired records", "err", err)
				}
				continue
			}
			if n > 0 {
				log.Info("purged expired records", "count", n)
			}
		}
	}
}
