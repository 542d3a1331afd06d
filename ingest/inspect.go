package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/estkit/estkit/internal/arrowpool"
	"github.com/estkit/estkit/internal/store"
)

// ReadDocument returns document k (0-based, in manifest order) of the
// document shards in dir. dir may be an s3:// URL: the one shard that
// holds the document is downloaded (fetchShard) and read there.
func ReadDocument(dir string, m *Manifest, k int64) (*Document, error) {
	if k < 0 || k >= m.Counts.Documents {
		return nil, fmt.Errorf("ingest: document %d out of range: %s holds %d documents", k, dir, m.Counts.Documents)
	}
	for _, out := range m.Outputs {
		if k >= out.Rows {
			k -= out.Rows
			continue
		}
		var doc *Document
		p := filepath.Join(dir, out.Name)
		if store.IsURL(dir) {
			local, done, err := fetchShard(dir, out)
			if err != nil {
				return nil, err
			}
			defer done()
			p = local
		} else if err := CheckShard(p, out.SHA256); err != nil {
			return nil, err
		}
		err := ScanShard(p, func(rec arrow.RecordBatch) (bool, error) {
			if k >= rec.NumRows() {
				k -= rec.NumRows()
				return true, nil
			}
			d := DocumentAt(rec, int(k))
			doc = &d
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		if doc == nil {
			return nil, fmt.Errorf("ingest: %s: %w: fewer rows than the manifest records", out.Name, ErrCorrupt)
		}
		return doc, nil
	}
	return nil, fmt.Errorf("ingest: %s: %w: outputs hold fewer documents than the manifest counts", dir, ErrCorrupt)
}

// fetchShard downloads the shard out of the set at the URL dir into a
// temporary directory, checked against the sha256 the manifest records as
// it downloads (the check CheckShard makes of a local file), and returns
// its path and the function that removes it. One shard, not the set: a
// document of a large set costs one file's transfer.
func fetchShard(dir string, out OutputFile) (string, func(), error) {
	d, err := store.Open(context.Background(), dir)
	if err != nil {
		return "", nil, fmt.Errorf("ingest: %w", err)
	}
	f, err := d.Open(out.Name)
	if err != nil {
		return "", nil, fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "estkit-inspect-")
	if err != nil {
		return "", nil, fmt.Errorf("ingest: %w", err)
	}
	done := func() { os.RemoveAll(tmp) }
	p := filepath.Join(tmp, out.Name)
	w, err := os.Create(p)
	if err != nil {
		done()
		return "", nil, fmt.Errorf("ingest: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(w, h), f)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, fmt.Errorf("ingest: download %s: %w", d.Join(out.Name), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != out.SHA256 {
		done()
		return "", nil, fmt.Errorf("ingest: %s: %w: sha256 %s, its set's manifest records %s", d.Join(out.Name), ErrCorrupt, got, out.SHA256)
	}
	return p, done, nil
}

// readPool recycles the decompressed buffers of the batches ScanShard reads
// once their callers release them (fresh ones cost page faults), across
// files and calls; it keeps at most a few buffers per size class. No buffer
// of a document shard is larger than a batch's text (4 MiB, or one
// document of at most 1 GiB) and a little more: a damaged file that
// claims more is refused, not allocated.
var readPool = func() *arrowpool.Allocator {
	a := arrowpool.New()
	a.Limit = maxMaxDocBytes + batchTextBytes + 1<<20
	return a
}()

// CheckShard checks the file at path against the hex sha256 its set's
// manifest records. Readers of a set check a file before Arrow reads it:
// arrow-go allocates what a damaged file's metadata claims (a terabyte, in
// FuzzDocShard's first finding), which can end the process.
func CheckShard(path, sha string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("ingest: %s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("ingest: %s: %w: sha256 %s, its set's manifest records %s", path, ErrCorrupt, got, sha)
	}
	return nil
}

// ScanShard calls fn with each record batch of the document shard at path
// until fn returns false; a batch is valid during the call (Retain keeps
// it). It checks the schema identity first; see OpenShard.
func ScanShard(path string, fn func(arrow.RecordBatch) (bool, error)) error {
	sr, err := OpenShard(path)
	if err != nil {
		return err
	}
	defer sr.Close()
	for i := range sr.NumBatches() {
		rec, err := sr.Batch(i)
		if err != nil {
			return err
		}
		more, err := fn(rec)
		rec.Release()
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// ShardReader reads the record batches of one document shard by index.
// Not safe for concurrent use: goroutines reading one file in parallel
// open a ShardReader each.
type ShardReader struct {
	path string
	f    *os.File
	r    *ipc.FileReader
}

// OpenShard opens the document shard at path and checks its schema
// identity. A panic of the Arrow reader on damaged metadata (arrow-go
// panics on some instead of failing) becomes ErrCorrupt naming the file,
// here and in Batch.
func OpenShard(path string) (sr *ShardReader, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ingest: %s: %w: unreadable Arrow data (%v)", path, ErrCorrupt, r)
		}
		if err != nil {
			f.Close()
		}
	}()
	r, err := ipc.NewFileReader(f, ipc.WithAllocator(readPool))
	if err != nil {
		return nil, fmt.Errorf("ingest: %s: %w: %v", path, ErrCorrupt, err)
	}
	md := r.Schema().Metadata()
	if v, _ := md.GetValue("estkit.schema"); v != SchemaName {
		r.Close()
		return nil, fmt.Errorf("ingest: %s: %w: not a document shard (schema %q)", path, ErrVersion, v)
	}
	want := DocSchema
	switch v, _ := md.GetValue("estkit.version"); v {
	case SchemaVersion:
	case "1":
		want = docSchemaV1
	default:
		r.Close()
		return nil, fmt.Errorf("ingest: %s: %w: document shard version %q (this estkit reads 1 and %s)", path, ErrVersion, v, SchemaVersion)
	}
	if !r.Schema().Equal(want) {
		r.Close()
		return nil, fmt.Errorf("ingest: %s: %w: columns differ from the document shard schema", path, ErrCorrupt)
	}
	return &ShardReader{path: path, f: f, r: r}, nil
}

// Path is the shard's path.
func (s *ShardReader) Path() string { return s.path }

// NumBatches is the number of record batches in the shard.
func (s *ShardReader) NumBatches() int { return s.r.NumRecords() }

// Batch returns record batch i, which the caller releases. Every column
// is validated in full (offsets in bounds and in order, text valid UTF-8,
// null counts), so that reading its values cannot panic: a damaged batch
// is ErrCorrupt naming the file, the batch and the column.
func (s *ShardReader) Batch(i int) (rec arrow.RecordBatch, err error) {
	defer func() {
		if r := recover(); r != nil {
			rec, err = nil, fmt.Errorf("ingest: %s: batch %d: %w: unreadable Arrow data (%v)", s.path, i, ErrCorrupt, r)
		}
	}()
	rec, err = s.r.RecordBatchAt(i)
	if err != nil {
		return nil, fmt.Errorf("ingest: %s: batch %d: %w: %v", s.path, i, ErrCorrupt, err)
	}
	for c, col := range rec.Columns() {
		if err := array.ValidateFull(col); err != nil || int64(col.Len()) != rec.NumRows() {
			rec.Release()
			if err == nil {
				err = fmt.Errorf("%d values in %d rows", col.Len(), rec.NumRows())
			}
			return nil, fmt.Errorf("ingest: %s: batch %d: column %s: %w: %v", s.path, i, DocSchema.Field(c).Name, ErrCorrupt, err)
		}
	}
	return rec, nil
}

// Close closes the file.
func (s *ShardReader) Close() error {
	s.r.Close()
	return s.f.Close()
}

// DocumentAt decodes row i of a document shard record batch.
func DocumentAt(rec arrow.RecordBatch, i int) Document {
	str := func(c int) string { return rec.Column(c).(*array.String).Value(i) }
	i64 := func(c int, absent int64) int64 {
		a := rec.Column(c).(*array.Int64)
		if a.IsNull(i) {
			return absent
		}
		return a.Value(i)
	}
	d := Document{Text: str(colText)}
	l := &d.Lineage
	l.Corpus, l.File, l.FileSHA256 = str(colCorpus), str(colFile), str(colFileSHA256)
	if !rec.Column(colMember).IsNull(i) {
		l.Member = str(colMember)
	}
	l.Line, l.Offset, l.Row = i64(colLine, 0), i64(colOffset, -1), i64(colRow, -1)
	l.RowGroup = -1
	if rg := rec.Column(colRowGroup).(*array.Int32); !rg.IsNull(i) {
		l.RowGroup = rg.Value(i)
	}
	l.Bytes = rec.Column(colBytes).(*array.Int64).Value(i)
	copy(l.SHA256[:], rec.Column(colSHA256).(*array.FixedSizeBinary).Value(i))
	mp := rec.Column(colMeta).(*array.Map)
	start, end := mp.ValueOffsets(i)
	keys, vals := mp.Keys().(*array.String), mp.Items().(*array.String)
	for j := start; j < end; j++ {
		l.Meta = append(l.Meta, KV{Key: keys.Value(int(j)), Value: vals.Value(int(j))})
	}
	l.Batch = -1
	if rec.NumCols() > colRevision { // version 2 and later
		if b := rec.Column(colBatch).(*array.Int32); !b.IsNull(i) {
			l.Batch = b.Value(i)
		}
		if !rec.Column(colRevision).IsNull(i) {
			l.Revision = str(colRevision)
		}
	}
	return d
}

// docSchemaV1 is the schema of version 1 document shards: version 2's
// columns before batch and revision.
var docSchemaV1 = func() *arrow.Schema {
	m := arrow.NewMetadata([]string{"estkit.schema", "estkit.version"}, []string{SchemaName, "1"})
	return arrow.NewSchema(DocSchema.Fields()[:colBatch], &m)
}()

// LineageJSON is the JSON form of a lineage (inspect --doc --json).
func (l *Lineage) JSON() map[string]any {
	m := map[string]any{
		"corpus": l.Corpus, "file": l.File, "file_sha256": l.FileSHA256,
		"bytes": l.Bytes, "sha256": l.ContentHash(),
	}
	if l.Member != "" {
		m["member"] = l.Member
	}
	if l.Line > 0 {
		m["line"] = l.Line
	}
	if l.Offset >= 0 {
		m["offset"] = l.Offset
	}
	if l.RowGroup >= 0 {
		m["row_group"] = l.RowGroup
	}
	if l.Batch >= 0 {
		m["batch"] = l.Batch
	}
	if l.Row >= 0 {
		m["row"] = l.Row
	}
	if l.Revision != "" {
		m["revision"] = l.Revision
	}
	meta := map[string]string{}
	for _, kv := range l.Meta {
		meta[kv.Key] = kv.Value
	}
	m["meta"] = meta
	return m
}
