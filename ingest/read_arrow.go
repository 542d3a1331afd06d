package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/estkit/estkit/internal/arrowpool"
	"github.com/estkit/estkit/internal/store"
)

// Arrow IPC has two framings (https://arrow.apache.org/docs/format/Columnar.html#serialization-and-interprocess-communication-ipc):
// the file format starts and ends with "ARROW1" and has a footer indexing
// its record batches; the stream format (what the datasets library writes
// for its cache and save_to_disk, data-00000-of-00001.arrow) is a sequence
// of messages, each after a continuation marker 0xFFFFFFFF and a length,
// the first of them the schema.
var (
	magicArrowFile         = []byte("ARROW1")
	magicArrowContinuation = []byte{0xff, 0xff, 0xff, 0xff}
)

// arrowNames are the suffixes Arrow IPC data is saved under: .arrow (both
// framings; the datasets library's), .arrows (streams), .feather (Feather
// version 2 is the IPC file format) and .ipc.
var arrowNames = []string{".arrow", ".arrows", ".feather", ".ipc"}

func isArrowName(name string) bool {
	for _, s := range arrowNames {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// arrowSniffBytes bounds what recognising a stream reads: its schema
// message (the datasets library's carries the features as JSON, a few KiB).
const arrowSniffBytes = 16 << 20

// sniffArrow reports whether the file starts as an Arrow IPC file or a
// stream whose first message is a schema arrow-go can decode.
func sniffArrow(in *Input, head []byte) (ok bool) {
	if bytes.HasPrefix(head, magicArrowFile) {
		return true
	}
	if !bytes.HasPrefix(head, magicArrowContinuation) {
		return false
	}
	defer func() {
		if recover() != nil { // arrow-go panics on some damaged metadata
			ok = false
		}
	}()
	f, err := os.Open(in.Path)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := newArrowStreamReader(io.LimitReader(f, arrowSniffBytes), in.Size)
	if err != nil {
		return false
	}
	r.Release()
	return true
}

// arrowAllocator returns the allocator that reads an Arrow input of size
// bytes. arrow-go allocates what a file claims: a message body (bounded by
// the file's size through WithBodySizeLimit) and, for compressed bodies,
// each buffer's declared uncompressed size, which a damaged file can make
// a terabyte, or many buffers of a zstd frame that really inflates to 60
// MiB each. The allocator bounds the bytes live at once: a request past
// the budget panics with an error wrapping arrowpool.ErrTooLarge (arrow-go
// and readArrow recover it into an error naming the file) instead of an
// allocation that ends the process. The budget is 64 times the file, at
// least 64 MiB and at most 2 GiB (the most a string column's int32 offsets
// address), and never below the file's size plus 1 MiB: text compresses 3
// to 10 times with LZ4 or zstd, so a real batch stays far below it.
func arrowAllocator(size int64) *budgetAllocator {
	budget := min(max(64*size, 64<<20), 2<<30)
	budget = max(budget, size+1<<20)
	return &budgetAllocator{mem: arrowpool.New(), budget: budget}
}

// budgetAllocator is an Arrow allocator that refuses to hold more than
// budget bytes at once.
type budgetAllocator struct {
	mem    *arrowpool.Allocator
	budget int64
	live   atomic.Int64
}

func (b *budgetAllocator) reserve(n int64) {
	if b.live.Add(n) > b.budget && n > 0 {
		live := b.live.Add(-n)
		panic(fmt.Errorf("%w: %d bytes asked for with %d held, at most %d for this file", arrowpool.ErrTooLarge, n, live, b.budget))
	}
}

func (b *budgetAllocator) Allocate(size int) []byte {
	b.reserve(int64(size))
	return b.mem.Allocate(size)
}

func (b *budgetAllocator) Reallocate(size int, buf []byte) []byte {
	b.reserve(int64(size) - int64(len(buf)))
	return b.mem.Reallocate(size, buf)
}

func (b *budgetAllocator) Free(buf []byte) {
	b.live.Add(-int64(len(buf)))
	b.mem.Free(buf)
}

// newArrowStreamReader opens the Arrow IPC stream r of an input of size
// bytes, bounding what one message may claim: neither its metadata nor its
// body can be larger than the file, and its metadata is verified before
// arrow-go decodes it (verifiedStream). The message reader is made here
// because arrow-go's NewReader drops the size limits (as of v18.8.0 it
// builds its message reader without them, and a length prefix of
// 0x7f7f7f7f then costs a 2 GiB allocation).
func newArrowStreamReader(r io.Reader, size int64) (*ipc.Reader, error) {
	maxMeta := min(size, 64<<20)
	opts := []ipc.Option{
		ipc.WithAllocator(arrowAllocator(size)),
		ipc.WithMetadataSizeLimit(maxMeta),
		ipc.WithBodySizeLimit(size),
	}
	return ipc.NewReaderFromMessageReader(ipc.NewMessageReader(&verifiedStream{r: r, maxMeta: maxMeta}, opts...), opts...)
}

// arrowFileStream returns the part of an Arrow IPC file that is a stream:
// the file format is "ARROW1", two bytes of padding, the stream of its
// messages, a footer that indexes them, the footer's 4-byte length and
// "ARROW1". Reading the messages as a stream, in the order written, leaves
// the footer's flatbuffer undecoded (arrow-go does not verify it); its
// frame is checked.
func arrowFileStream(f *os.File, size int64) (*io.SectionReader, error) {
	const head, tail = 8, 4 + 6
	if size < head+tail {
		return nil, fmt.Errorf("%d bytes: too short for an Arrow IPC file", size)
	}
	end := make([]byte, tail)
	if _, err := f.ReadAt(end, size-tail); err != nil {
		return nil, err
	}
	footer := int64(binary.LittleEndian.Uint32(end))
	if !bytes.Equal(end[4:], magicArrowFile) || footer <= 0 || footer > size-head-tail {
		return nil, fmt.Errorf("no footer: the file does not end in a footer length and ARROW1 (truncated?)")
	}
	return io.NewSectionReader(f, head, size-head-tail-footer), nil
}

// readArrow reads the text column (--text-column, default text; string,
// large_string or string_view) and the --meta-field columns of an Arrow IPC
// file or stream, record batch by record batch, so memory is bounded by a
// batch rather than the file. Lineage: record batch and row within it.
func readArrow(ctx context.Context, in *Input, f *os.File, countBytes func(int64), o *Options, emit func(unit) error) (err error) {
	where := "schema"
	defer func() {
		// arrow-go panics on some damaged files, and arrowAllocator's limit
		// panics (arrow-go recovers most of those into errors itself): both
		// are faults of the file, reported as such.
		if p := recover(); p != nil {
			err = &InputError{File: in.Rel, Position: where, Err: wrapf(ErrCorrupt, "arrow decoder panic: %v", p)}
		}
	}()
	head := make([]byte, len(magicArrowFile))
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ingest: %s: %w", in.Path, err)
	}
	head = head[:n]
	var stream io.Reader = f
	isFile := false
	switch {
	case bytes.HasPrefix(head, magicArrowFile):
		isFile = true
		sec, err := arrowFileStream(f, in.Size)
		if err != nil {
			return &InputError{File: in.Rel, Position: "footer", Err: wrapf(ErrCorrupt, "arrow: %v", err)}
		}
		stream = sec
		countBytes(in.Size - sec.Size()) // the stream's bytes are counted as they are read
	case bytes.HasPrefix(head, magicArrowContinuation):
	default:
		return &InputError{File: in.Rel, Position: "byte 0", Err: wrapf(ErrCorrupt, "not an Arrow IPC file (no ARROW1 magic) or stream (no continuation marker 0xFFFFFFFF)")}
	}
	sr, err := newArrowStreamReader(&countedReader{r: bufio.NewReaderSize(store.WithContext(ctx, stream), 1<<20), count: countBytes}, in.Size)
	if err != nil {
		return &InputError{File: in.Rel, Position: "schema", Err: wrapf(ErrCorrupt, "arrow: %v", err)}
	}
	defer sr.Release()
	schema := sr.Schema()
	next := func() (arrow.RecordBatch, error) { // nil, nil at the end; the caller releases the batch
		if !sr.Next() {
			return nil, sr.Err()
		}
		rec := sr.RecordBatch()
		rec.Retain()
		return rec, nil
	}
	textName := o.textColumn(FormatArrow)
	textIdx := schema.FieldIndices(textName)
	if len(textIdx) == 0 {
		names := make([]string, schema.NumFields())
		for i, fl := range schema.Fields() {
			names[i] = fl.Name
		}
		return &InputError{File: in.Rel, Position: "schema", Err: wrapf(ErrMissingField, "no column %q (columns: %s; --text-column names another)", textName, strings.Join(names, ", "))}
	}
	switch t := schema.Field(textIdx[0]).Type; t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
	default:
		return &InputError{File: in.Rel, Position: "schema", Err: wrapf(ErrMissingField, "column %q is %s, not a string column", textName, t)}
	}
	cols := []int{textIdx[0]}
	var keys []string
	for _, m := range o.MetaFields {
		if idx := schema.FieldIndices(m); len(idx) > 0 && idx[0] != textIdx[0] {
			cols = append(cols, idx[0])
			keys = append(keys, m)
		}
	}
	base := newLineage(in)
	for batch := int32(0); ; batch++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		where = fmt.Sprintf("record batch %d", batch)
		rec, err := next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &InputError{File: in.Rel, Position: where, Err: wrapf(ErrCorrupt, "arrow: %v", err)}
		}
		if rec == nil {
			if !isFile {
				if err := arrowStreamEnd(f, in); err != nil {
					return err
				}
			}
			break
		}
		es, err := arrowEntries(rec, cols, keys, schema, base, batch, in)
		rec.Release()
		if err != nil {
			return &InputError{File: in.Rel, Position: where, Err: err}
		}
		if err := emit(func() *result {
			res := &result{}
			o.finishEntries(es, res)
			return res
		}); err != nil {
			return err
		}
	}
	return nil
}

// arrowEntries copies one record batch's rows into documents, in order,
// after checking the columns read in full (offsets in bounds and in
// order), so that reading their values cannot fault; null text becomes a
// rejection.
func arrowEntries(rec arrow.RecordBatch, cols []int, keys []string, schema *arrow.Schema, base Lineage, batch int32, in *Input) ([]entry, error) {
	if int(rec.NumCols()) != schema.NumFields() {
		return nil, wrapf(ErrCorrupt, "%d columns, the schema has %d", rec.NumCols(), schema.NumFields())
	}
	for _, c := range cols {
		col := rec.Column(c)
		if err := array.ValidateFull(col); err != nil || int64(col.Len()) != rec.NumRows() {
			if err == nil {
				err = fmt.Errorf("%d values in %d rows", col.Len(), rec.NumRows())
			}
			return nil, wrapf(ErrCorrupt, "column %s: %v", schema.Field(c).Name, err)
		}
	}
	n := int(rec.NumRows())
	es := make([]entry, 0, n)
	text := rec.Column(cols[0])
	for i := 0; i < n; i++ {
		lin := base
		lin.Batch, lin.Row = batch, int64(i)
		s, ok := stringAt(text, i)
		if !ok {
			es = append(es, entry{err: &InputError{File: in.Rel, Position: lin.Position(), Err: wrapf(ErrMissingField, "text is null")}})
			continue
		}
		for k, key := range keys {
			col := rec.Column(cols[k+1])
			if col.IsNull(i) {
				continue
			}
			v, ok := stringAt(col, i)
			if !ok {
				v = col.ValueStr(i)
			}
			lin.Meta = append(lin.Meta, KV{Key: key, Value: v})
		}
		sort.Slice(lin.Meta, func(a, b int) bool { return lin.Meta[a].Key < lin.Meta[b].Key })
		es = append(es, entry{doc: Document{Text: s, Lineage: lin}})
	}
	return es, nil
}

// countedReader reports the bytes read through it.
type countedReader struct {
	r     io.Reader
	count func(int64)
}

func (c *countedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.count(int64(n))
	return n, err
}

// arrowEOS is the end-of-stream marker a complete Arrow IPC stream ends
// with: a continuation marker and a zero metadata length.
var arrowEOS = []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}

// arrowStreamEnd checks that a stream read to its last record batch ends
// with the end-of-stream marker: without it the stream was cut short at a
// record batch's end (a copy or a save interrupted), and the batches after
// the cut are lost, which arrow-go's reader does not say (it takes the end
// of the file for the end of the stream).
func arrowStreamEnd(f *os.File, in *Input) error {
	tail := make([]byte, len(arrowEOS))
	if in.Size < int64(len(tail)) {
		return &InputError{File: in.Rel, Position: fmt.Sprintf("byte %d", in.Size), Err: wrapf(ErrCorrupt, "the stream ends without its end-of-stream marker (0xFFFFFFFF 0x00000000): cut short")}
	}
	if _, err := f.ReadAt(tail, in.Size-int64(len(tail))); err != nil {
		return fmt.Errorf("ingest: %s: %w", in.Path, err)
	}
	if !bytes.Equal(tail, arrowEOS) {
		return &InputError{File: in.Rel, Position: fmt.Sprintf("byte %d", in.Size), Err: wrapf(ErrCorrupt, "the stream ends without its end-of-stream marker (0xFFFFFFFF 0x00000000): cut short at a record batch's end, so batches may be missing")}
	}
	return nil
}
