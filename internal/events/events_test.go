package events

import (
	"slices"
	"sync"
	"testing"
)

func TestPublishReachesSubscribersUntilCancelled(t *testing.T) {
	b := New()
	var mu sync.Mutex
	var got []string
	cancel := b.Subscribe(func(e Event) {
		mu.Lock()
		got = append(got, e.Type+":"+e.ID)
		mu.Unlock()
		if e.Time.IsZero() {
			t.Error("event without time")
		}
	})
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { b.Publish(Event{Type: "thing.disable", ID: "t1"}) })
	}
	wg.Wait()
	cancel()
	b.Publish(Event{Type: "thing.enable", ID: "t1"})
	if len(got) != 10 || slices.Contains(got, "thing.enable:t1") {
		t.Errorf("got %v", got)
	}
	var nilBus *Bus
	nilBus.Publish(Event{Type: "dropped"}) // must not panic
}
