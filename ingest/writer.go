package ingest

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/estkit/estkit/internal/arrowpool"
	"github.com/estkit/estkit/internal/store"
)

// Document shard schema identity, stored in the Arrow schema metadata.
const (
	SchemaName = "estkit.docshard"
	// SchemaVersion 2 added the batch and revision columns (Arrow inputs,
	// the Hugging Face hub cache); version 1 shards are still read.
	SchemaVersion = "2"
)

// The document shard columns, in order. docs/FORMATS.md describes each.
const (
	colText = iota
	colCorpus
	colFile
	colFileSHA256
	colMember
	colLine
	colOffset
	colRowGroup
	colRow
	colBytes
	colSHA256
	colMeta
	colBatch
	colRevision
)

// Columns of DocSchema that other packages read by index (shards tokenizes
// the text and splits by the text's hash).
const (
	ColText   = colText
	ColCorpus = colCorpus
	ColSHA256 = colSHA256
)

// DocSchema is the Arrow schema of document shards.
var DocSchema = arrow.NewSchema([]arrow.Field{
	{Name: "text", Type: arrow.BinaryTypes.String},
	{Name: "corpus", Type: arrow.BinaryTypes.String},
	{Name: "file", Type: arrow.BinaryTypes.String},
	{Name: "file_sha256", Type: arrow.BinaryTypes.String},
	{Name: "member", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "line", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "offset", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "row_group", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "row", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "bytes", Type: arrow.PrimitiveTypes.Int64},
	{Name: "sha256", Type: &arrow.FixedSizeBinaryType{ByteWidth: 32}},
	{Name: "meta", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.BinaryTypes.String)},
	{Name: "batch", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	{Name: "revision", Type: arrow.BinaryTypes.String, Nullable: true},
}, func() *arrow.Metadata {
	m := arrow.NewMetadata([]string{"estkit.schema", "estkit.version"}, []string{SchemaName, SchemaVersion})
	return &m
}())

// Record batch bounds: a batch is flushed at whichever comes first.
const (
	batchRows      = 8192
	batchTextBytes = 4 << 20
)

// OutputFile is a finished shard as the manifest records it.
type OutputFile struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Rows      int64  `json:"rows"`
	TextBytes int64  `json:"text_bytes"`
}

// shardWriter appends documents to rolling shard files. Building record
// batches happens in the caller's goroutine; compressing and writing them
// happens in a goroutine of its own so that both overlap.
type shardWriter struct {
	dir         store.Dir
	prefix      string
	shardBytes  int64
	compression Compression
	mem         memory.Allocator

	b         *array.RecordBuilder
	batchRows int
	batchText int64
	// text bytes added since the last shard roll
	shardTextPending int64

	cur     *openShard
	shardNo int
	outputs []OutputFile

	batches chan arrow.RecordBatch
	done    chan error
	failed  atomic.Bool // set by the writing goroutine on its first error
}

type openShard struct {
	name string
	f    store.Writer
	w    *ipc.FileWriter
	rows int64
	text int64
}

func newShardWriter(dir store.Dir, prefix string, shardBytes int64, c Compression) *shardWriter {
	mem := arrowpool.New()
	w := &shardWriter{dir: dir, prefix: prefix, shardBytes: shardBytes, compression: c, mem: mem,
		b: array.NewRecordBuilder(mem, DocSchema), batches: make(chan arrow.RecordBatch, 2), done: make(chan error, 1)}
	w.reserve()
	go w.loop()
	return w
}

// batch markers sent through the channel: nil means "close the current shard".
func (w *shardWriter) loop() {
	var err error
	for rec := range w.batches {
		if err != nil {
			if rec != nil {
				rec.Release()
			}
			continue
		}
		if rec == nil {
			err = w.closeShard()
		} else {
			err = w.writeBatch(rec)
			rec.Release()
		}
		if err != nil {
			w.failed.Store(true)
		}
	}
	w.done <- err
}

func (w *shardWriter) writeBatch(rec arrow.RecordBatch) error {
	if w.cur == nil {
		name := fmt.Sprintf("%s-%05d.arrow", w.prefix, w.shardNo)
		w.shardNo++
		f, err := w.dir.Create(name)
		if err != nil {
			return fmt.Errorf("ingest: create shard: %w", err)
		}
		opts := []ipc.Option{ipc.WithSchema(DocSchema), ipc.WithAllocator(w.mem)}
		switch w.compression {
		case CompressZstd:
			opts = append(opts, ipc.WithZstd())
		case CompressLZ4:
			opts = append(opts, ipc.WithLZ4())
		}
		iw, err := ipc.NewFileWriter(f, opts...)
		if err != nil {
			f.Abort()
			return fmt.Errorf("ingest: shard %s: %w", name, err)
		}
		w.cur = &openShard{name: name, f: f, w: iw}
	}
	if err := w.cur.w.Write(rec); err != nil {
		return fmt.Errorf("ingest: write shard %s: %w", w.cur.name, err)
	}
	w.cur.rows += rec.NumRows()
	w.cur.text += textBytes(rec)
	return nil
}

func textBytes(rec arrow.RecordBatch) int64 {
	offs := rec.Column(colText).(*array.String).ValueOffsets()
	if len(offs) == 0 {
		return 0
	}
	return int64(offs[len(offs)-1] - offs[0])
}

func (w *shardWriter) closeShard() error {
	s := w.cur
	if s == nil {
		return nil
	}
	w.cur = nil
	if err := s.w.Close(); err != nil {
		s.f.Abort()
		return fmt.Errorf("ingest: close shard %s: %w", s.name, err)
	}
	size, sum, err := s.f.Commit()
	if err != nil {
		return fmt.Errorf("ingest: shard %s: %w", s.name, err)
	}
	w.outputs = append(w.outputs, OutputFile{Name: s.name, Size: size, SHA256: sum, Rows: s.rows, TextBytes: s.text})
	return nil
}

// errWriteFailed tells the caller to stop feeding a writer whose goroutine
// failed; finish returns the error itself.
var errWriteFailed = errors.New("ingest: writing shards failed")

// add appends one document; it may flush a batch and roll the shard. It
// fails as soon as a write has failed (a full disk), so that the run stops
// instead of reading on.
func (w *shardWriter) add(d *Document) error {
	if w.failed.Load() {
		return errWriteFailed
	}
	b := w.b
	l := &d.Lineage
	b.Field(colText).(*array.StringBuilder).Append(d.Text)
	b.Field(colCorpus).(*array.StringBuilder).Append(l.Corpus)
	b.Field(colFile).(*array.StringBuilder).Append(l.File)
	b.Field(colFileSHA256).(*array.StringBuilder).Append(l.FileSHA256)
	appendStr(b.Field(colMember).(*array.StringBuilder), l.Member, l.Member != "")
	appendI64(b.Field(colLine).(*array.Int64Builder), l.Line, l.Line > 0)
	appendI64(b.Field(colOffset).(*array.Int64Builder), l.Offset, l.Offset >= 0)
	if rg := b.Field(colRowGroup).(*array.Int32Builder); l.RowGroup >= 0 {
		rg.Append(l.RowGroup)
	} else {
		rg.AppendNull()
	}
	appendI64(b.Field(colRow).(*array.Int64Builder), l.Row, l.Row >= 0)
	b.Field(colBytes).(*array.Int64Builder).Append(l.Bytes)
	b.Field(colSHA256).(*array.FixedSizeBinaryBuilder).Append(l.SHA256[:])
	mb := b.Field(colMeta).(*array.MapBuilder)
	mb.Append(true)
	kb, vb := mb.KeyBuilder().(*array.StringBuilder), mb.ItemBuilder().(*array.StringBuilder)
	for _, kv := range l.Meta {
		kb.Append(kv.Key)
		vb.Append(kv.Value)
	}
	if bb := b.Field(colBatch).(*array.Int32Builder); l.Batch >= 0 {
		bb.Append(l.Batch)
	} else {
		bb.AppendNull()
	}
	appendStr(b.Field(colRevision).(*array.StringBuilder), l.Revision, l.Revision != "")
	w.batchRows++
	w.batchText += l.Bytes
	w.shardTextPending += l.Bytes
	if w.batchRows >= batchRows || w.batchText >= batchTextBytes {
		w.flush()
	}
	if w.shardTextPending >= w.shardBytes {
		w.flush()
		w.batches <- nil
		w.shardTextPending = 0
	}
	return nil
}

func appendStr(b *array.StringBuilder, v string, ok bool) {
	if ok {
		b.Append(v)
	} else {
		b.AppendNull()
	}
}

func appendI64(b *array.Int64Builder, v int64, ok bool) {
	if ok {
		b.Append(v)
	} else {
		b.AppendNull()
	}
}

func (w *shardWriter) flush() {
	if w.batchRows == 0 {
		return
	}
	w.batches <- w.b.NewRecordBatch()
	w.batchRows, w.batchText = 0, 0
	w.reserve()
}

// reserve sizes the next batch's text buffer at once: grown by doubling
// from empty it cost 17% of the ordered sink's time (docs/PERF.md).
func (w *shardWriter) reserve() {
	w.b.Field(colText).(*array.StringBuilder).ReserveData(batchTextBytes + batchTextBytes/16)
}

// finish flushes, closes the last shard and returns the outputs in order.
func (w *shardWriter) finish() ([]OutputFile, error) {
	w.flush()
	w.batches <- nil
	close(w.batches)
	err := <-w.done
	w.b.Release()
	return w.outputs, err
}

// abort stops the writer, removes the shard in progress and returns the
// writer's own error, if any.
func (w *shardWriter) abort() error {
	close(w.batches)
	err := <-w.done
	w.b.Release()
	if w.cur != nil {
		w.cur.f.Abort()
	}
	return err
}
