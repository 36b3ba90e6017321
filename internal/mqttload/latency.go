package mqttload

import (
	"math/bits"
	"time"
)

// latencies is a histogram of delivery latencies: 16 buckets per power of
// two of nanoseconds, so a quantile is known within about 4 %. One
// subscriber's reader owns one; Throughput merges them.
type latencies struct {
	counts [64 * 16]int64
	n      int64
}

// bucket of d: the position of its highest bit and the next four bits.
func bucket(d time.Duration) int {
	ns := uint64(max(d, 1))
	hi := bits.Len64(ns) - 1
	if hi < 4 {
		return int(ns) // exact below 16 ns
	}
	return hi*16 + int(ns>>(hi-4))&15
}

// lower is the smallest duration of bucket b.
func lower(b int) time.Duration {
	hi, frac := b/16, uint64(b%16)
	if hi < 4 {
		return time.Duration(b)
	}
	return time.Duration((16 | frac) << (hi - 4))
}

func (l *latencies) add(d time.Duration) {
	l.counts[bucket(d)]++
	l.n++
}

func (l *latencies) merge(o *latencies) {
	for i, c := range o.counts {
		l.counts[i] += c
	}
	l.n += o.n
}

// Quantile q (0..1) of the recorded latencies, 0 when none is.
func (l *latencies) Quantile(q float64) time.Duration {
	if l.n == 0 {
		return 0
	}
	rank := int64(q * float64(l.n-1))
	var seen int64
	for b, c := range l.counts {
		seen += c
		if seen > rank {
			return lower(b)
		}
	}
	return lower(len(l.counts) - 1)
}
