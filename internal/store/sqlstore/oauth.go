package sqlstore

import (
	"encoding/json"
	"fmt"
	"time"
)

// Helpers shared by the OAuth tables (store/oauth.go): credentials are
// addressed by their hash, lists are JSON arrays, optional times are NULL.

// checkHash refuses an empty hash: a credential stored under nothing would be
// found by any lookup that forgot to hash.
func checkHash(what string, h []byte) error {
	if len(h) == 0 {
		return fmt.Errorf("%s: empty hash", what)
	}
	return nil
}

// checkExpiry refuses a zero expiry where "never" makes no sense (sessions,
// codes, replay records): a forgotten field must not mean "forever".
func checkExpiry(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s: ExpiresAt is required", what)
	}
	return nil
}

// checkAt refuses a zero time of use: stored, it would read back as "never".
func checkAt(what string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("%s: the time of use is required", what)
	}
	return nil
}

// listArg is the bind value of a JSON list column.
func listArg(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(l) // a []string always marshals
	return string(b)
}

// listCol scans a JSON list column; an empty list reads as nil.
type listCol struct{ l *[]string }

func (c listCol) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*c.l = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("list column: unexpected %T", src)
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("list column: %w", err)
	}
	if len(l) == 0 {
		l = nil
	}
	*c.l = l
	return nil
}

// bytesArg stores an empty byte slice as NULL.
func bytesArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// rawCol scans a nullable TEXT column holding JSON kept byte for byte.
type rawCol struct{ r *json.RawMessage }

func (c rawCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.r = nil
	case string:
		*c.r = json.RawMessage(v)
	case []byte:
		*c.r = append(json.RawMessage(nil), v...)
	default:
		return fmt.Errorf("json column: unexpected %T", src)
	}
	return nil
}

// rawArg stores empty JSON as NULL and refuses what is not JSON.
func rawArg(what string, r json.RawMessage) (any, error) {
	if len(r) == 0 {
		return nil, nil
	}
	if !json.Valid(r) {
		return nil, fmt.Errorf("%s: not valid JSON", what)
	}
	return string(r), nil
}

// normOpt normalizes an optional time, keeping zero as zero.
func normOpt(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return normTime(t)
}

// orNow is t normalized, or now when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return normTime(t)
}

// rowsAffected returns how many rows a statement changed.
func rowsAffected(res interface{ RowsAffected() (int64, error) }, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
