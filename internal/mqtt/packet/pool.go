package packet

import "sync"

// Buffers for encoding and for packet bodies come from a pool, so an idle
// connection holds none: a reader takes one for a packet's body and gives
// it back once the packet is decoded; a writer takes one while it has
// something to send.
var pool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooled is the largest buffer kept: a rare huge packet's buffer is left
// to the collector rather than held by the pool.
const maxPooled = 64 << 10

// GetBuffer returns an empty buffer with capacity n at least.
func GetBuffer(n int) *[]byte {
	b := pool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	*b = (*b)[:0]
	return b
}

// PutBuffer returns b to the pool.
func PutBuffer(b *[]byte) {
	if cap(*b) <= maxPooled {
		pool.Put(b)
	}
}
