package directory

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
)

// Attacks on readMessage: it grows the buffer of an LDAPMessage with the
// bytes received, not to the length its header announces.

// lengthMessage is an LDAPMessage of total bytes in all (its tag, a length
// in long form of width bytes, 0 for the short form, and content).
func lengthMessage(t *testing.T, total, width int) []byte {
	t.Helper()
	head := 2 + width
	n := total - head
	if n < 0 || (width == 0 && n > 127) || (width > 0 && n >= 1<<(8*width)) {
		t.Fatalf("no message of %d bytes with a length of %d bytes", total, width)
	}
	m := []byte{tagSequence, byte(n)}
	if width > 0 {
		m[1] = 0x80 | byte(width)
		for i := width - 1; i >= 0; i-- {
			m = append(m, byte(n>>(8*i)))
		}
	}
	for i := range n {
		m = append(m, byte(i*31+i>>9))
	}
	return m
}

// next is a small message a stream holds after the one under test.
var next = []byte{tagSequence, 3, 0x02, 0x01, 0x07}

// readers are ways the bytes of a stream arrive.
var readers = map[string]func([]byte) *bufio.Reader{
	"whole":    func(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) },
	"one byte": func(b []byte) *bufio.Reader { return bufio.NewReader(iotest.OneByteReader(bytes.NewReader(b))) },
	"halves":   func(b []byte) *bufio.Reader { return bufio.NewReader(iotest.HalfReader(bytes.NewReader(b))) },
	"data+EOF": func(b []byte) *bufio.Reader { return bufio.NewReader(iotest.DataErrReader(bytes.NewReader(b))) },
	"small":    func(b []byte) *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) },
	// The smallest buffer reads into the message directly: the last bytes
	// come with the end of stream.
	"small, data+EOF": func(b []byte) *bufio.Reader {
		return bufio.NewReaderSize(iotest.DataErrReader(bytes.NewReader(b)), 16)
	},
}

// TestAttackReadMessageLengths: messages of every length form, at the
// limit and around each growth of the buffer, arriving whole, a byte at a
// time, in halves or with the end of stream, are read intact and no
// further: the message after one is read next, and the end of stream
// right after one is no error. One byte over the limit is a framing
// error.
func TestAttackReadMessageLengths(t *testing.T) {
	const max = 64 << 10
	totals := []int{2, 129, 130, 4095, 4096, 4097, 5000, 8191, 8192, 8193, 12288, 16383, 16384, 16385, 32769, 40000, max - 1, max}
	for _, total := range totals {
		for width := range 5 {
			if (width == 0 && total > 129) || (width == 1 && total > 258) || total < 2+width {
				continue
			}
			m := lengthMessage(t, total, width)
			for name, reader := range readers {
				for _, follow := range [][]byte{nil, next} {
					r := reader(append(append([]byte(nil), m...), follow...))
					got, err := readMessage(r, max)
					if err != nil || !bytes.Equal(got, m) {
						t.Fatalf("%d bytes, length of %d, %s: got %d bytes, %v", total, width, name, len(got), err)
					}
					if follow != nil {
						if got, err := readMessage(r, max); err != nil || !bytes.Equal(got, next) {
							t.Fatalf("%d bytes, length of %d, %s: the next message: % x, %v", total, width, name, got, err)
						}
					}
					if _, err := readMessage(r, max); err != io.EOF {
						t.Fatalf("%d bytes, length of %d, %s: after the messages: %v", total, width, name, err)
					}
				}
			}
		}
	}
	for width := 2; width <= 4; width++ {
		_, err := readMessage(bufio.NewReader(bytes.NewReader(lengthMessage(t, max+1, width))), max)
		if !errors.Is(err, errFraming) {
			t.Errorf("one byte over the limit, length of %d: %v", width, err)
		}
	}
}

// TestAttackReadMessageCutShort: a message whose stream ends early, in
// its header, at each growth of the buffer or one byte before its end, is
// io.ErrUnexpectedEOF, whatever way its bytes arrived.
func TestAttackReadMessageCutShort(t *testing.T) {
	const max = 64 << 10
	for _, width := range []int{2, 3, 4} {
		m := lengthMessage(t, max, width)
		var cuts []int
		for i := 1; i < 2+width; i++ {
			cuts = append(cuts, i)
		}
		for b := 16; b < max; b *= 2 {
			cuts = append(cuts, b-1, b, b+1)
		}
		cuts = append(cuts, 5000, 12288, max-1)
		for _, cut := range cuts {
			for name, reader := range readers {
				got, err := readMessage(reader(m[:cut]), max)
				if !errors.Is(err, io.ErrUnexpectedEOF) || got != nil {
					t.Fatalf("length of %d, cut at %d, %s: got %d bytes, %v", width, cut, name, len(got), err)
				}
			}
		}
	}
}

// failAfter gives b, then fails: a client that stopped sending.
type failAfter struct {
	b   []byte
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, f.err
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

// TestAttackAnnouncedLengthHoldsLittle: a header announcing the largest
// message allocates with what arrives (at most a few times the bytes
// received), never the announced length: six bytes, or 100 KiB, of an
// announced 16 MiB.
func TestAttackAnnouncedLengthHoldsLittle(t *testing.T) {
	const max = 16 << 20
	head := []byte{tagSequence, 0x84, 0x00, 0xFF, 0xFF, 0xFA} // 16 MiB in all
	stalled := errors.New("the client stopped sending")
	for _, received := range []int{0, 100 << 10} {
		b := append(append([]byte(nil), head...), make([]byte, received)...)
		r := bufio.NewReader(&failAfter{b: b, err: stalled})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := readMessage(r, max)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, stalled) || got != nil {
			t.Fatalf("%d bytes received: %d bytes, %v", received, len(got), err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > uint64(8*received+64<<10) {
			t.Errorf("%d bytes of an announced %d allocated %d bytes", received+len(head), max, n)
		}
	}
}
