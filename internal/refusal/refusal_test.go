package refusal

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func TestError(t *testing.T) {
	for _, c := range []struct {
		err           *FieldError
		error, reason string
	}{
		{New("email", "at most %d characters", 254), "email: at most 254 characters", "at most 254 characters"},
		{New("", "use at least %d characters", 15), "use at least 15 characters", "use at least 15 characters"},
		{New("q", "missing"), "q: missing", "missing"},
		{New("q", "missing").At("serial"), "serial: missing", "missing"},
		{New("q", "%q is taken already", "Bob").At(""), `"Bob" is taken already`, `"Bob" is taken already`},
	} {
		if got := c.err.Error(); got != c.error {
			t.Errorf("Error() = %q, want %q", got, c.error)
		}
		if got := c.err.Reason(); got != c.reason {
			t.Errorf("Reason() = %q, want %q", got, c.reason)
		}
	}
}

// The source text and its arguments stay apart for a page to translate, and
// At leaves the refusal it was called on as it was.
func TestRefusal(t *testing.T) {
	e := New("userName", "%q is taken already", "Bob")
	at := e.At("")
	if f, src, args := e.Refusal(); f != "userName" || src != "%q is taken already" || !slices.Equal(args, []any{"Bob"}) {
		t.Errorf("Refusal() = %q, %q, %v", f, src, args)
	}
	if f, src, args := at.Refusal(); f != "" || src != "%q is taken already" || !slices.Equal(args, []any{"Bob"}) {
		t.Errorf("At(\"\").Refusal() = %q, %q, %v", f, src, args)
	}
}

// own is a package's type of its own embedding a FieldError, as
// identity.ValidationError does: it is an error with the same Error(),
// errors.As tells it apart from a bare FieldError, and a bare one from it.
type own struct{ FieldError }

func TestEmbedded(t *testing.T) {
	var err error = fmt.Errorf("creating: %w", &own{*New("serialNumber", "longer than %d bytes", 64)})
	if got, want := err.Error(), "creating: serialNumber: longer than 64 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if errors.As(err, new(*FieldError)) {
		t.Error("a package's own refusal is a bare *FieldError too")
	}
	o, ok := errors.AsType[*own](err)
	if !ok || o.Field != "serialNumber" || o.Reason() != "longer than 64 bytes" {
		t.Errorf("errors.AsType[*own] = %v, %v", o, ok)
	}
	if errors.As(New("q", "missing"), new(*own)) {
		t.Error("a bare *FieldError is a package's own refusal")
	}
}
