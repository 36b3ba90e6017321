package demo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFeedWait(t *testing.T) {
	f := newFeed[int]()
	f.add(1)
	got := make(chan int, 1)
	go func() {
		v, _, err := f.wait(context.Background(), 1, func(v int) bool { return v%2 == 0 })
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	f.add(3)
	f.add(4)
	if v := <-got; v != 4 {
		t.Errorf("waited for an even number after the first: %d", v)
	}
	// Items before from are not seen; those after are, in order.
	if _, i, err := f.wait(context.Background(), 0, func(v int) bool { return v > 2 }); err != nil || i != 1 {
		t.Errorf("index %d %v, want 1", i, err)
	}
	if got := f.snapshot(1); len(got) != 2 || got[0] != 3 {
		t.Errorf("snapshot %v", got)
	}
}

func TestAwaitSaysWhatItWaitedFor(t *testing.T) {
	f := newFeed[string]()
	_, _, err := await(context.Background(), f, "the speaker", 0, 10*time.Millisecond, "a user code", func(string) bool { return true })
	if err == nil || err.Error() != "timed out after 10ms waiting for a user code" {
		t.Errorf("timeout: %v", err)
	}
	why := errors.New("pairing denied")
	f.end(why)
	f.end(errors.New("later reasons do not count"))
	_, _, err = await(context.Background(), f, "the speaker", 0, time.Minute, "its tokens", func(string) bool { return true })
	if !errors.Is(err, why) || err.Error() != "the speaker stopped before its tokens: pairing denied" {
		t.Errorf("stopped: %v", err)
	}
	g := newFeed[string]()
	g.end(nil)
	if _, _, err := await(context.Background(), g, "the broker", 0, time.Minute, "a message", func(string) bool { return true }); err == nil || err.Error() != "the broker stopped before a message" {
		t.Errorf("stopped without a reason: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := await(ctx, newFeed[string](), "x", 0, time.Minute, "y", func(string) bool { return true }); err == nil || !strings.HasPrefix(err.Error(), "interrupted while waiting for y") {
		t.Errorf("interrupted: %v", err)
	}
}

func TestPoll(t *testing.T) {
	n := 0
	if err := poll(context.Background(), time.Minute, "three checks", func(context.Context) (bool, error) { n++; return n == 3, nil }); err != nil || n != 3 {
		t.Errorf("%d checks, %v", n, err)
	}
	err := poll(context.Background(), 20*time.Millisecond, "the gateway", func(context.Context) (bool, error) { return false, errors.New("it answers 200") })
	if err == nil || err.Error() != "timed out after 20ms waiting for the gateway: it answers 200" {
		t.Errorf("timeout: %v", err)
	}
}
