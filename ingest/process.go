package ingest

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// unit is a piece of one input file's work that any worker may run: parse a
// batch of lines, decompress an archive member, check a batch of rows. Units
// of a file are consumed in the order the reader emitted them.
type unit func() *result

// result is what a unit produced, in order.
type result struct {
	docs     []Document
	rejects  []*InputError
	filtered map[string]int64
	repaired int64 // documents whose invalid UTF-8 was repaired
	read     int64 // items read: len(docs) + filtered + len(rejects)
}

func (r *result) filter(reason string) {
	if r.filtered == nil {
		r.filtered = map[string]int64{}
	}
	r.filtered[reason]++
	r.read++
}

func (r *result) reject(e *InputError) {
	r.rejects = append(r.rejects, e)
	r.read++
}

// rejectUnit is a unit that rejects one item.
func rejectUnit(e *InputError) unit {
	return func() *result {
		r := &result{}
		r.reject(e)
		return r
	}
}

// finish checks a document that a reader produced and files it under kept,
// filtered or rejected in res. Checks run in a fixed order so that a
// document with several faults always gets the same reason.
func (o *Options) finish(d *Document, res *result) {
	l := &d.Lineage
	if int64(len(d.Text)) > o.MaxDocBytes {
		res.reject(&InputError{File: l.File, Position: l.Position(),
			Err: wrapf(ErrTooLarge, "%d bytes > --max-doc-bytes %d", len(d.Text), o.MaxDocBytes)})
		return
	}
	if bad := invalidField(d); bad != "" {
		if o.UTF8 == UTF8Reject {
			res.reject(&InputError{File: l.File, Position: l.Position(),
				Err: wrapf(ErrInvalidUTF8, "%s (--utf8 repair replaces invalid bytes with U+FFFD)", bad)})
			return
		}
		d.Text = strings.ToValidUTF8(d.Text, "\uFFFD")
		l.Member = strings.ToValidUTF8(l.Member, "\uFFFD")
		for i := range l.Meta {
			l.Meta[i].Value = strings.ToValidUTF8(l.Meta[i].Value, "\uFFFD")
		}
		res.repaired++
		if int64(len(d.Text)) > o.MaxDocBytes { // a repair can lengthen the text
			res.reject(&InputError{File: l.File, Position: l.Position(),
				Err: wrapf(ErrTooLarge, "%d bytes after UTF-8 repair > --max-doc-bytes %d", len(d.Text), o.MaxDocBytes)})
			return
		}
	}
	if d.Text == "" {
		res.filter(FilterEmptyText)
		return
	}
	d.hashText()
	res.docs = append(res.docs, *d)
	res.read++
}

// invalidField names the first string of d that is not valid UTF-8: the
// text, an archive member name or a metadata value; "" when all are valid.
func invalidField(d *Document) string {
	if !utf8.ValidString(d.Text) {
		return fmt.Sprintf("first invalid byte at text offset %d", firstInvalid(d.Text))
	}
	if !utf8.ValidString(d.Lineage.Member) {
		return fmt.Sprintf("member name %q is not valid UTF-8", d.Lineage.Member)
	}
	for _, kv := range d.Lineage.Meta {
		if !utf8.ValidString(kv.Value) || !utf8.ValidString(kv.Key) {
			return fmt.Sprintf("metadata %q is not valid UTF-8", kv.Key)
		}
	}
	return ""
}

func firstInvalid(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return i
			}
		}
	}
	return -1
}

// tooLarge is the rejection of an item longer than the limit.
func tooLarge(file, pos string, limit int64, what string) *InputError {
	return &InputError{File: file, Position: pos, Err: wrapf(ErrTooLarge, "%s longer than %d bytes", what, limit)}
}

func linePos(n int64) string { return fmt.Sprintf("line %d", n) }
