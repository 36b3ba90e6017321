package console

import (
	"context"
	"math"
	"sync"
	"time"
)

// The series the dashboard draws.
const (
	SeriesTokens       = "tokens"       // access tokens issued
	SeriesAuthFailures = "authFailures" // refused sign-ins, client authentications and MQTT logins
)

// historyMinutes is how far back History remembers: a day.
const historyMinutes = 24 * 60

// History is a small in-process ring of per-minute counts for the
// dashboard's charts, fed with the totals of the process's own counters
// (Prometheus counters, which only grow). It lives in memory: it starts
// empty when the process starts, and each node has its own.
type History struct {
	mu     sync.Mutex
	last   map[string]float64 // the totals of the previous observation
	series map[string]*[historyMinutes]float64
	// minute is the Unix minute of the newest bucket; older buckets follow
	// it backwards around the ring.
	minute int64
}

// NewHistory returns an empty history.
func NewHistory() *History {
	return &History{series: map[string]*[historyMinutes]float64{}}
}

// Observe records the totals at time at: what each grew by since the
// previous observation counts in at's minute. The first observation of a
// series only sets its baseline; a total that went down (the counter was
// reset) counts as grown by itself.
func (h *History) Observe(at time.Time, totals map[string]float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(at.Unix() / 60)
	if h.last == nil {
		h.last = map[string]float64{}
	}
	for name, v := range totals {
		prev, seen := h.last[name]
		h.last[name] = v
		if !seen {
			continue
		}
		d := v - prev
		if d < 0 {
			d = v
		}
		s := h.series[name]
		if s == nil {
			s = new([historyMinutes]float64)
			h.series[name] = s
		}
		s[h.minute%historyMinutes] += d
	}
}

// advance moves the newest bucket to minute m, emptying the buckets it
// passes; an m before the newest changes nothing.
func (h *History) advance(m int64) {
	if h.minute == 0 {
		h.minute = m
		return
	}
	for steps := min(m-h.minute, historyMinutes); steps > 0; steps-- {
		h.minute++
		for _, s := range h.series {
			s[h.minute%historyMinutes] = 0
		}
	}
	if m > h.minute {
		h.minute = m
	}
}

// PerMinute returns the counts of the n minutes up to now's, oldest first.
func (h *History) PerMinute(name string, now time.Time, n int) []float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(now.Unix() / 60)
	out := make([]float64, n)
	s := h.series[name]
	if s == nil {
		return out
	}
	for i := range min(n, historyMinutes) {
		out[n-1-i] = s[(h.minute-int64(i))%historyMinutes]
	}
	return out
}

// Sample observes gather's totals every interval until ctx ends.
func (h *History) Sample(ctx context.Context, interval time.Duration, gather func() map[string]float64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	h.Observe(time.Now(), gather())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Observe(now, gather())
		}
	}
}

// sum adds up counts.
func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

// perHour adds minutes (oldest first, a multiple of 60) up by the hour.
func perHour(minutes []float64) []float64 {
	out := make([]float64, len(minutes)/60)
	for i := range out {
		out[i] = sum(minutes[i*60 : (i+1)*60])
	}
	return out
}

// Chart is a bar chart drawn as inline SVG by the template: no script, no
// external asset, nothing the content policy must allow.
type Chart struct {
	Title, Label  string // Label: what a bar counts, for the text equivalent ("%s tokens")
	Total         float64
	Width, Height int
	Bars          []Bar
	Max           float64
}

// Bar is one bar of a chart, in the SVG's coordinates.
type Bar struct {
	X, Y, W, H float64
	Value      float64
}

// chart draws values (oldest first) as bars in a width×height box.
func chart(title, label string, values []float64) Chart {
	const width, height = 600, 120
	c := Chart{Title: title, Label: label, Total: sum(values), Width: width, Height: height}
	for _, v := range values {
		c.Max = math.Max(c.Max, v)
	}
	w := float64(width) / float64(len(values))
	for i, v := range values {
		b := Bar{X: float64(i) * w, W: math.Max(w-1, 1), Value: v}
		if c.Max > 0 {
			b.H = v / c.Max * height
		}
		b.Y = height - b.H
		c.Bars = append(c.Bars, b)
	}
	return c
}
