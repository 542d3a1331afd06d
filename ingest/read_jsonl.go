package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
// bytes: JSON escaping expands a byte at most 6 times (a control byte as
// \u00XX), and the other fields get 1 MiB. Longer lines are rejected as too
// large without being held in memory.
func jsonLineLimit(maxDoc int64) int {
	return int(6*maxDoc + 1<<20)
}

type lineRec struct {
	start, end int
	num, off   int64
	tooLong    bool
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
func readJSONL(ctx context.Context, in *Input, r io.Reader, o *Options, emit func(unit) error) error {
	dr, closer, err := decompressor(in.Rel, r)
	if err != nil {
		return &InputError{File: in.Rel, Position: "byte 0", Err: err}
	}
	defer closer()
	parse := o.jsonParser(in)
	lr := newLineReader(dr, jsonLineLimit(o.MaxDocBytes))
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
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return &InputError{File: in.Rel, Position: fmt.Sprintf("line %d (decompressed byte %d)", num, off), Err: wrapf(ErrCorrupt, "%v", err)}
		}
		if !tooLong && len(bytes.TrimSpace(line)) == 0 {
			continue // a blank line holds no document
		}
		start := len(ch.data)
		ch.data = append(ch.data, line...)
		ch.lines = append(ch.lines, lineRec{start: start, end: len(ch.data), num: num, off: off, tooLong: tooLong})
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

// slimPajamaLine is the SlimPajama line schema.
type slimPajamaLine struct {
	Text *string `json:"text"`
	Meta *struct {
		Set *string `json:"redpajama_set_name"`
	} `json:"meta"`
}

func (o *Options) jsonParser(in *Input) lineParser {
	base := newLineage(in)
	prepare := func(line []byte, num, off int64, res *result) ([]byte, Lineage, bool) {
		lin := base
		lin.Line, lin.Offset = num, off
		if !utf8.Valid(line) {
			// encoding/json would silently replace invalid bytes: decide here.
			if o.UTF8 == UTF8Reject {
				res.reject(&InputError{File: in.Rel, Position: linePos(num),
					Err: wrapf(ErrInvalidUTF8, "first invalid byte at line byte %d (--utf8 repair replaces invalid bytes with U+FFFD)", firstInvalid(string(line)))})
				return nil, lin, false
			}
			line = bytes.ToValidUTF8(line, []byte("\uFFFD"))
			res.repaired++
		}
		return line, lin, true
	}
	if in.Format == FormatSlimPajama && o.TextField == "" && len(o.MetaFields) == 0 {
		return func(line []byte, num, off int64, res *result) {
			line, lin, ok := prepare(line, num, off, res)
			if !ok {
				return
			}
			var v slimPajamaLine
			if err := json.Unmarshal(line, &v); err != nil {
				res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrInvalidJSON, "%v", err)})
				return
			}
			if v.Text == nil {
				res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrMissingField, `no string field "text"`)})
				return
			}
			set := ""
			if v.Meta != nil && v.Meta.Set != nil {
				set = *v.Meta.Set
				lin.Meta = []KV{{Key: "redpajama_set_name", Value: set}}
			}
			if !o.keepSet(set) {
				res.filter(FilterSet)
				return
			}
			o.finish(&Document{Text: *v.Text, Lineage: lin}, res)
		}
	}
	field := strings.Split(o.textField(), ".")
	return func(line []byte, num, off int64, res *result) {
		line, lin, ok := prepare(line, num, off, res)
		if !ok {
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(line, &top); err != nil {
			res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: wrapf(ErrInvalidJSON, "%v", err)})
			return
		}
		text, err := lookupString(top, field)
		if err != nil {
			res.reject(&InputError{File: in.Rel, Position: linePos(num), Err: err})
			return
		}
		if in.Format == FormatSlimPajama {
			set, _ := lookupString(top, []string{"meta", "redpajama_set_name"})
			if set != "" {
				lin.Meta = append(lin.Meta, KV{Key: "redpajama_set_name", Value: set})
			}
			if !o.keepSet(set) {
				res.filter(FilterSet)
				return
			}
		}
		for _, f := range o.MetaFields {
			raw, err := lookupRaw(top, strings.Split(f, "."))
			if err != nil {
				continue // absent metadata is not an error
			}
			var s string
			if json.Unmarshal(raw, &s) != nil {
				s = string(raw) // numbers, booleans, objects: their JSON text
			}
			lin.Meta = append(lin.Meta, KV{Key: f, Value: s})
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

var errNotObject = errors.New("not an object")

func lookupRaw(top map[string]json.RawMessage, path []string) (json.RawMessage, error) {
	cur := top
	for i, k := range path {
		raw, ok := cur[k]
		if !ok {
			return nil, wrapf(ErrMissingField, "no field %q", strings.Join(path[:i+1], "."))
		}
		if i == len(path)-1 {
			return raw, nil
		}
		cur = nil
		if err := json.Unmarshal(raw, &cur); err != nil || cur == nil {
			return nil, wrapf(ErrMissingField, "field %q: %v", strings.Join(path[:i+1], "."), errNotObject)
		}
	}
	return nil, wrapf(ErrMissingField, "empty field path")
}

func lookupString(top map[string]json.RawMessage, path []string) (string, error) {
	raw, err := lookupRaw(top, path)
	if err != nil {
		return "", err
	}
	var s *string
	if err := json.Unmarshal(raw, &s); err != nil || s == nil {
		return "", wrapf(ErrMissingField, "field %q is not a string", strings.Join(path, "."))
	}
	return *s, nil
}
