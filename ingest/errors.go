package ingest

import (
	"errors"
	"fmt"
)

// Sentinel errors; every data error wraps exactly one of them.
var (
	// ErrCorrupt: a compressed stream, archive or container is damaged or truncated.
	ErrCorrupt = errors.New("corrupt input")
	// ErrInvalidJSON: a JSON line does not parse.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrMissingField: the text field or column is absent or not a string.
	ErrMissingField = errors.New("missing text field")
	// ErrInvalidUTF8: text is not valid UTF-8 (and repair was not asked for).
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrUnsafePath: an archive member's name escapes its archive.
	ErrUnsafePath = errors.New("unsafe member path")
	// ErrEmptyFile: an input file has no bytes.
	ErrEmptyFile = errors.New("empty file")
	// ErrTooLarge: a document exceeds --max-doc-bytes.
	ErrTooLarge = errors.New("document too large")
	// ErrFormat: the input's format cannot be recognised or is not supported.
	ErrFormat = errors.New("unrecognised format")
	// ErrVersion: a manifest or shard of another format version.
	ErrVersion = errors.New("unsupported version")
	// ErrDuplicateInput: one file reached by two input names; not a data
	// error (it is refused before anything is read).
	ErrDuplicateInput = errors.New("duplicate input")
)

// Rejection reasons as they appear in manifests, one per sentinel error.
const (
	ReasonCorrupt      = "corrupt"
	ReasonInvalidJSON  = "invalid-json"
	ReasonMissingField = "missing-field"
	ReasonInvalidUTF8  = "invalid-utf8"
	ReasonUnsafePath   = "unsafe-path"
	ReasonEmptyFile    = "empty-file"
	ReasonTooLarge     = "too-large"
)

// Filter reasons as they appear in manifests.
const (
	FilterEmptyText = "empty-text"
	FilterSet       = "set"
	FilterLang      = "lang"
	FilterDuplicate = "duplicate"
)

// reasonOf maps an error to its manifest reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrInvalidJSON):
		return ReasonInvalidJSON
	case errors.Is(err, ErrMissingField):
		return ReasonMissingField
	case errors.Is(err, ErrInvalidUTF8):
		return ReasonInvalidUTF8
	case errors.Is(err, ErrUnsafePath):
		return ReasonUnsafePath
	case errors.Is(err, ErrEmptyFile):
		return ReasonEmptyFile
	case errors.Is(err, ErrTooLarge):
		return ReasonTooLarge
	default:
		return ReasonCorrupt
	}
}

// InputError is a fault in one input file at one position.
type InputError struct {
	File     string // path relative to its input root
	Position string // "line 17", "member a/b.txt", "row group 2 row 5", "byte 1234"; empty for the whole file
	Err      error  // wraps a sentinel error
}

func (e *InputError) Error() string {
	if e.Position == "" {
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.File, e.Position, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// wrapf wraps a sentinel with detail: errors.Is(wrapf(ErrX, ...), ErrX) holds.
func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
