package console

import (
	"slices"
	"testing"
	"time"
)

func TestHistoryCountsPerMinute(t *testing.T) {
	h := NewHistory()
	t0 := time.Date(2026, 12, 6, 10, 0, 30, 0, time.UTC)
	h.Observe(t0, map[string]float64{SeriesTokens: 100}) // the baseline: 100 before the process counted
	h.Observe(t0.Add(10*time.Second), map[string]float64{SeriesTokens: 103})
	h.Observe(t0.Add(time.Minute), map[string]float64{SeriesTokens: 110})
	h.Observe(t0.Add(3*time.Minute), map[string]float64{SeriesTokens: 4}) // a reset: 4 since
	got := h.PerMinute(SeriesTokens, t0.Add(3*time.Minute), 5)
	if want := []float64{0, 3, 7, 0, 4}; !slices.Equal(got, want) {
		t.Fatalf("per minute %v, want %v", got, want)
	}
	if got := h.PerMinute(SeriesAuthFailures, t0, 3); !slices.Equal(got, []float64{0, 0, 0}) {
		t.Fatalf("an unseen series: %v", got)
	}
	// A day later every minute of that day is forgotten.
	if got := sum(h.PerMinute(SeriesTokens, t0.Add(24*time.Hour+3*time.Minute), historyMinutes)); got != 0 {
		t.Fatalf("a day later: %v", got)
	}
	// An observation after a long pause counts in its own minute only.
	h.Observe(t0.Add(30*time.Hour), map[string]float64{SeriesTokens: 9})
	day := h.PerMinute(SeriesTokens, t0.Add(30*time.Hour), historyMinutes)
	if day[len(day)-1] != 5 || sum(day) != 5 {
		t.Fatalf("after a pause: last %v, sum %v", day[len(day)-1], sum(day))
	}
	if hours := perHour(day); len(hours) != 24 || hours[23] != 5 {
		t.Fatalf("per hour: %v", hours)
	}
}

func TestChartGeometry(t *testing.T) {
	c := chart("t", "x", []float64{0, 5, 10})
	if c.Max != 10 || c.Total != 15 || len(c.Bars) != 3 {
		t.Fatalf("%+v", c)
	}
	if b := c.Bars[1]; b.H != 60 || b.Y != 60 || b.X != 200 {
		t.Fatalf("the middle bar: %+v", b)
	}
	if empty := chart("t", "x", make([]float64, 60)); empty.Bars[0].H != 0 || empty.Bars[0].Y != float64(empty.Height) {
		t.Fatalf("no counts: %+v", empty.Bars[0])
	}
}
