// Package fault holds the kinds of failure Ferry's services return. A service says what went
// wrong in its own words and of which kind; the HTTP layer maps each kind to a status in one
// place, and other callers (the rollout engine, tests) test the kind with errors.Is.
package fault

import (
	"errors"
	"fmt"
)

// Kinds.
var (
	ErrInvalid      = errors.New("invalid")      // the input is malformed or out of bounds
	ErrNotFound     = errors.New("not found")    // what it names does not exist
	ErrConflict     = errors.New("conflict")     // the state of things does not allow it
	ErrForbidden    = errors.New("forbidden")    // the caller may not do it
	ErrUnauthorized = errors.New("unauthorized") // the caller's credential is not good
)

// Error is a failure of a kind, with a message for the person who caused it.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func newf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Invalid returns an ErrInvalid failure.
func Invalid(format string, args ...any) error { return newf(ErrInvalid, format, args...) }

// NotFound returns an ErrNotFound failure.
func NotFound(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// Conflict returns an ErrConflict failure.
func Conflict(format string, args ...any) error { return newf(ErrConflict, format, args...) }

// Forbidden returns an ErrForbidden failure.
func Forbidden(format string, args ...any) error { return newf(ErrForbidden, format, args...) }

// Unauthorized returns an ErrUnauthorized failure.
func Unauthorized(format string, args ...any) error { return newf(ErrUnauthorized, format, args...) }
