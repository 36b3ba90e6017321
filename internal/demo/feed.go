package demo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// feed is what one participant of the story reported so far (the
// speaker's events, the messages the cloud service received, the calls the
// cloud API answered), in order. The story waits on it instead of sleeping.
type feed[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced at every change
	ended   bool
	why     error // why the participant stopped reporting
}

func newFeed[T any]() *feed[T] { return &feed[T]{changed: make(chan struct{})} }

// add appends v and wakes the waiters.
func (f *feed[T]) add(v T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items = append(f.items, v)
	close(f.changed)
	f.changed = make(chan struct{})
}

// end says the participant stopped: waits that find nothing more fail with
// why (or a plain "stopped" when why is nil).
func (f *feed[T]) end(why error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended {
		return
	}
	f.ended, f.why = true, why
	close(f.changed)
	f.changed = make(chan struct{})
}

// len is the number of items so far: a mark for later waits.
func (f *feed[T]) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

// snapshot returns the items from index from on.
func (f *feed[T]) snapshot(from int) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]T(nil), f.items[min(from, len(f.items)):]...)
}

// stoppedError is a wait that ended because the participant stopped.
type stoppedError struct{ why error }

func (e *stoppedError) Error() string {
	if e.why == nil {
		return "stopped"
	}
	return "stopped: " + e.why.Error()
}

func (e *stoppedError) Unwrap() error { return e.why }

// wait returns the first item at index from or later that match accepts,
// with its index. It gives up when ctx ends or the participant stops.
func (f *feed[T]) wait(ctx context.Context, from int, match func(T) bool) (T, int, error) {
	for i := from; ; {
		f.mu.Lock()
		for ; i < len(f.items); i++ {
			if match(f.items[i]) {
				v := f.items[i]
				f.mu.Unlock()
				return v, i, nil
			}
		}
		changed, ended, why := f.changed, f.ended, f.why
		f.mu.Unlock()
		var zero T
		if ended {
			return zero, i, &stoppedError{why}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return zero, i, ctx.Err()
		}
	}
}

// await is wait with a timeout, and an error that says what was awaited
// and who stopped or how long it waited.
func await[T any](ctx context.Context, f *feed[T], who string, from int, timeout time.Duration, what string, match func(T) bool) (T, int, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, i, err := f.wait(wctx, from, match)
	var stopped *stoppedError
	switch {
	case err == nil:
		return v, i, nil
	case errors.As(err, &stopped) && stopped.why == nil:
		return v, i, fmt.Errorf("%s stopped before %s", who, what)
	case errors.As(err, &stopped):
		return v, i, fmt.Errorf("%s stopped before %s: %w", who, what, stopped.why)
	case ctx.Err() != nil:
		return v, i, fmt.Errorf("interrupted while waiting for %s: %w", what, ctx.Err())
	default:
		return v, i, fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
}

// poll calls check every 50 ms until it reports done, for at most timeout.
// When not done, check says why (the state it found), for the error.
func poll(ctx context.Context, timeout time.Duration, what string, check func(context.Context) (bool, error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done, why := check(pctx)
		if done {
			return nil
		}
		select {
		case <-tick.C:
		case <-pctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted while waiting for %s: %w", what, ctx.Err())
			}
			if why == nil {
				why = pctx.Err()
			}
			return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, why)
		}
	}
}
