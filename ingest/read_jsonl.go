package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Lines are batched into units of about this many bytes or lines.
const (
	chunkBytes = 1 << 20
	chunkLines = 4096
)

// jsonLineLimit bounds a JSON line for a document of at most maxDoc text
// bytes: twice the text, room for the escapes of ordinary text (quotes,
// newlines, \uXXXX for text written with ASCII-only escapes, which doubles
// CJK), plus 1 MiB for the other fields. Longer lines are rejected as too
// large before they are held or decoded, so one rejected line costs a few
// times this limit at most, whatever its length. Text that escapes to more
// than twice its size (control bytes as \u00XX) needs a larger
// --max-doc-bytes.
func jsonLineLimit(maxDoc int64) int {
	return int(2*maxDoc + 1<<20)
}

type lineRec struct {
	start, end int
	num, off   int64
	tooLong    bool
	unverified bool // past the verified bytes of a damaged stream
}

type lineChunk struct {
	data  []byte
	lines []lineRec
}

// chunkPool recycles line chunks' buffers: grown from empty each time they
// cost most of a second of page faults per 200 MB (docs/PERF.md). A buffer
// returns once its unit is parsed; the JSON decoder has copied what it keeps.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkBytes+chunkBytes/4); return &b }}

func newLineChunk() *lineChunk {
	return &lineChunk{data: (*chunkPool.Get().(*[]byte))[:0]}
}

func (c *lineChunk) release() {
	if cap(c.data) <= 4*chunkBytes { // one huge line does not stay pinned
		b := c.data[:0]
		chunkPool.Put(&b)
	}
	c.data = nil
}

// readJSONL reads JSON lines (slimpajama and jsonl formats), compressed by
// the file name's suffix, and emits batches of lines for workers to parse.
// Lines that end past the first verified decompressed bytes (verified ≥ 0,
// from verifiedPrefix) are rejected unparsed.
func readJSONL(ctx context.Context, in *Input, r io.Reader, verified int64, o *Options, emit func(unit) error) error {
	dr, closer, err := decompressor(in.Rel, r)
	if err != nil {
		return &InputError{File: in.Rel, Position: "byte 0", Err: err}
	}
	defer closer()
	parse := o.jsonParser(in)
	lr := newLineReader(dr, jsonLineLimit(o.MaxDocBytes))
	lr.ctx = ctx
	ch := newLineChunk()
	defer func() { ch.release() }()
	flush := func() error {
		if len(ch.lines) == 0 {
			return nil
		}
		c := ch
		ch = newLineChunk()
		return emit(func() *result {
			res := &result{}
			for _, l := range c.lines {
				if l.unverified {
					res.reject(unverified(in.Rel, linePos(l.num), verified))
					continue
				}
				if l.tooLong {
					res.reject(tooLarge(in.Rel, linePos(l.num), int64(lr.max), "JSON line"))
					continue
				}
				parse(c.data[l.start:l.end], l.num, l.off, res)
			}
			c.release()
			return res
		})
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, num, off, tooLong, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return &InputError{File: in.Rel, Position: fmt.Sprintf("line %d (decompressed byte %d)", num, off), Err: wrapf(ErrCorrupt, "%v", err)}
		}
		if !tooLong && len(bytes.TrimSpace(line)) == 0 {
			continue // a blank line holds no document
		}
		if verified >= 0 && lr.offset > verified {
			ch.lines = append(ch.lines, lineRec{num: num, off: off, unverified: true})
		} else {
			start := len(ch.data)
			ch.data = append(ch.data, line...)
			ch.lines = append(ch.lines, lineRec{start: start, end: len(ch.data), num: num, off: off, tooLong: tooLong})
		}
		if len(ch.data) >= chunkBytes || len(ch.lines) >= chunkLines {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// lineParser turns one JSON line into a document in res.
type lineParser func(line []byte, num, off int64, res *result)

// jsonParser returns the line parser of in: the text at --text-field (or
// "text"), SlimPajama's meta.redpajama_set_name, and the --meta-field
// values, read by the strict scanner in jsonline.go.
func (o *Options) jsonParser(in *Input) lineParser {
	base := newLineage(in)
	textName := o.textField()
	paths := jsonPaths{strings.Split(textName, ".")}
	const setField = "meta.redpajama_set_name"
	setIdx := -1
	if in.Format == FormatSlimPajama {
		setIdx = len(paths)
		paths = append(paths, strings.Split(setField, "."))
	}
	metaIdx := len(paths)
	for _, f := range o.MetaFields {
		paths = append(paths, strings.Split(f, "."))
	}
	return func(line []byte, num, off int64, res *result) {
		lin := base
		lin.Line, lin.Offset = num, off
		if !utf8.Valid(line) {
			// The scanner assumes UTF-8; decide here, and count a repair.
			if o.UTF8 == UTF8Reject {
				res.reject(&InputError{File: in.Rel, Position: linePos(num),
					Err: wrapf(ErrInvalidUTF8, "first invalid byte at line byte %d (--utf8 repair replaces invalid bytes with U+FFFD)", firstInvalid(string(line)))})
				return
			}
			line = bytes.ToValidUTF8(line, []byte("\uFFFD"))
			res.repaired++
		}
		found := make([]span, len(paths))
		if err := scanJSONLine(line, paths, found); err != nil {
			res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrInvalidJSON, "%v", err)})
			return
		}
		t := found[0]
		switch {
		case !t.found:
			res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrMissingField, "no field %q", textName)})
			return
		case !t.isString:
			res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrMissingField, "field %q is not a string", textName)})
			return
		}
		text := decodeJSONString(line[t.start:t.end])
		if setIdx >= 0 {
			set := ""
			if sp := found[setIdx]; sp.found && sp.isString {
				set = decodeJSONString(line[sp.start:sp.end])
				lin.Meta = append(lin.Meta, KV{Key: "redpajama_set_name", Value: set})
			}
			if !o.keepSet(set) {
				res.filter(FilterSet)
				return
			}
		}
		for k, f := range o.MetaFields {
			sp := found[metaIdx+k]
			if !sp.found {
				continue // absent metadata is not an error
			}
			v := string(line[sp.start:sp.end]) // numbers, booleans, objects: their JSON text
			if sp.isString {
				v = decodeJSONString(line[sp.start:sp.end])
			}
			lin.Meta = append(lin.Meta, KV{Key: f, Value: v})
		}
		slices.SortFunc(lin.Meta, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
		o.finish(&Document{Text: text, Lineage: lin}, res)
	}
}

func (o *Options) keepSet(set string) bool {
	if len(o.IncludeSets) > 0 {
		return slices.Contains(o.IncludeSets, set)
	}
	return !slices.Contains(o.ExcludeSets, set)
}
