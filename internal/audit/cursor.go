package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
)

// A cursor is where the next page of a query starts. It is opaque to
// clients and keyed: version, order and the last record's ID, with a MAC
// over them and the query's filter, so that a cursor altered, forged or sent
// with other filters is refused rather than read as another position.

const (
	cursorVersion = 1
	flagOldest    = 1
	macSize       = 16
)

// encodeCursor returns the cursor of the page after the record from, in the
// given order, for filter f.
func encodeCursor(key []byte, f Filter, oldest bool, from int64) string {
	b := []byte{cursorVersion, 0}
	if oldest {
		b[1] = flagOldest
	}
	b = binary.AppendUvarint(b, uint64(from))
	b = append(b, cursorMAC(key, f, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func cursorMAC(key []byte, f Filter, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	m.Write([]byte{0})
	m.Write([]byte(f.Values().Encode()))
	return m.Sum(nil)[:macSize]
}

// decodeCursor reads a cursor that encodeCursor made for f.
func decodeCursor(key []byte, f Filter, s string) (oldest bool, from int64, err error) {
	const what = "not a cursor this server issued for these filters; start again without cursor (send every filter of the first page with each cursor)"
	b, err := base64.RawURLEncoding.Strict().DecodeString(s) // Strict: one spelling per cursor
	if err != nil || len(s) > 64 || len(b) < 2+1+macSize || b[0] != cursorVersion || b[1]&^flagOldest != 0 {
		return false, 0, bad(ParamCursor, what)
	}
	body, mac := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(mac, cursorMAC(key, f, body)) {
		return false, 0, bad(ParamCursor, what)
	}
	seq, n := binary.Uvarint(body[2:])
	if n <= 0 || n != len(body)-2 || seq > 1<<62 {
		return false, 0, bad(ParamCursor, what)
	}
	return body[1] == flagOldest, int64(seq), nil
}
