package mqttload

import (
	"testing"
	"time"
)

// Quantiles come back within a bucket's width (1/16 of the power of two).
func TestLatencyQuantiles(t *testing.T) {
	var l latencies
	if l.Quantile(0.5) != 0 {
		t.Fatal("an empty histogram has no median")
	}
	for i := 1; i <= 1000; i++ {
		l.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0, time.Microsecond}} {
		got := l.Quantile(c.q)
		if got > c.want || got < c.want-c.want/16 {
			t.Errorf("quantile %.2f = %v, want within 1/16 below %v", c.q, got, c.want)
		}
	}
	var m latencies
	m.add(time.Hour)
	l.merge(&m)
	if l.n != 1001 || l.Quantile(1) < 59*time.Minute {
		t.Errorf("merge: n %d, max %v", l.n, l.Quantile(1))
	}
	for _, d := range []time.Duration{0, 1, 15, 16, 17, 1 << 40, 1<<63 - 1} {
		if b := bucket(d); b < 0 || b >= len(l.counts) || lower(b) > max(d, 1) {
			t.Errorf("bucket(%d) = %d (lower %d)", d, b, lower(b))
		}
	}
}
