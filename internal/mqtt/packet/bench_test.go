package packet

import (
	"bytes"
	"testing"
)

// BenchmarkPublish is the hot path: a QoS 1 PUBLISH with a user property
// decoded from a pooled body and encoded into a pooled buffer.
func BenchmarkPublish(b *testing.B) {
	in := raw(b, 0x32, `00 0b "sensors/t/1" 00 01 07 26 00 01 "k" 00 01 "v" "21.5 degrees"`)
	b.ReportAllocs()
	for b.Loop() {
		h, _ := ReadHeader(bytes.NewReader(in))
		body := GetBuffer(h.Remaining)
		*body = append(*body, in[len(in)-h.Remaining:]...)
		p, err := Decode(V5, h, *body, 0)
		PutBuffer(body)
		if err != nil {
			b.Fatal(err)
		}
		out := GetBuffer(Size(V5, p))
		*out, _ = Append(*out, V5, p)
		PutBuffer(out)
	}
}
