package apikeys

import (
	"errors"
	"fmt"
)

// Error codes. Every exported function of the use cases and of the store documents which of
// them it returns; the HTTP edge maps each to one status in one table.
const (
	EINVALID         = "invalid"         // the request cannot be used as it is; Fields say why
	EUNAUTHENTICATED = "unauthenticated" // no caller could be established
	EFORBIDDEN       = "forbidden"       // the caller is known but may not do this
	ENOTFOUND        = "not_found"       // no such resource, or not one the caller may see
	ECONFLICT        = "conflict"        // the request collides with the resource's state
	ETOOLARGE        = "too_large"       // the request is larger than the service accepts
	EUNAVAILABLE     = "unavailable"     // a dependency does not answer or is saturated; retry
	EINTERNAL        = "internal"        // anything else: a bug or an unexpected failure
)

// Error is the domain's error. Detail is a sentence meant for the client; it never quotes a
// secret or a database message. Fields name the offending input of an EINVALID error. Err
// is the cause, for the log only (EUNAVAILABLE carries the driver's error).
type Error struct {
	Code   string
	Detail string
	Fields []FieldError
	Err    error
}

// FieldError names one offending input field. Field is a JSON pointer into the request body
// ("/keys/3/expiresAt") or, without the leading slash, the name of a query parameter
// ("limit"), as the API's problem documents name them; Detail says which rule failed, never
// the value sent.
type FieldError struct {
	Field  string
	Detail string
}

func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with the given code and a formatted detail.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error naming fields.
func Invalid(detail string, fields ...FieldError) *Error {
	return &Error{Code: EINVALID, Detail: detail, Fields: fields}
}

// ErrorCode returns the code of err's Error, EINTERNAL for any other non-nil error and ""
// for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// IsCode reports whether err carries code.
func IsCode(err error, code string) bool { return ErrorCode(err) == code }

// Fields collects field errors while a request is parsed, so that one answer names every
// offending field rather than the first.
type Fields []FieldError

// Add records that field broke a rule.
func (f *Fields) Add(field, detail string) { *f = append(*f, FieldError{Field: field, Detail: detail}) }

// Check records that field failed to parse with err: err's own fields when it names any,
// otherwise one at field with err's detail. Nothing is recorded for a nil err.
func (f *Fields) Check(field string, err error) {
	var e *Error
	switch {
	case err == nil:
	case errors.As(err, &e) && len(e.Fields) > 0:
		*f = append(*f, e.Fields...)
	default:
		f.Add(field, ErrorDetail(err))
	}
}

// Err returns an EINVALID error with every collected field, or nil when there is none.
func (f Fields) Err(detail string) error {
	if len(f) == 0 {
		return nil
	}
	return Invalid(detail, f...)
}

// ErrorDetail returns the client-facing sentence of err's Error, or a generic one for any
// other error, whose text may hold internals.
func ErrorDetail(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Detail
	}
	return "an unexpected error occurred"
}
