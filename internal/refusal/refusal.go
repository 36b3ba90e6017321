// Package refusal is the one error type of a refused input: the field it
// names and why, the reason kept as its English source text and the
// arguments of its verbs, so that an API answers Error() in English while a
// page translates it ({{t}} through ui.Refusal). It imports nothing of
// thingid, so that every validator can use it; it neither logs nor writes.
package refusal

import "fmt"

// FieldError is a refused input: Field names it (empty when the reason
// names none), Src is the reason's English source text with the verbs of
// Args. A package whose callers tell its refusals apart with errors.As
// embeds it in a type of its own.
type FieldError struct {
	Field string
	Src   string
	Args  []any
}

// New is the refusal of field for the reason format with args.
func New(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Src: format, Args: args}
}

// Reason is the reason in English, without the field.
func (e *FieldError) Reason() string { return fmt.Sprintf(e.Src, e.Args...) }

// Error is "field: reason", or the reason alone when no field is named.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason()
	}
	return e.Field + ": " + e.Reason()
}

// At is the same reason at another field: a form's own name for it, or ""
// for a page that shows the reason beside the field already.
func (e *FieldError) At(field string) *FieldError {
	return &FieldError{Field: field, Src: e.Src, Args: e.Args}
}

// Refusal is the field, the reason's source text and its arguments, for a
// page to translate (ui.Refusal).
func (e *FieldError) Refusal() (field, src string, args []any) { return e.Field, e.Src, e.Args }
