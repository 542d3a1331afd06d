package shards

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/estkit/estkit/internal/arrowpool"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// Set is an opened token shard set: its manifest and its splits' files,
// memory-mapped.
type Set struct {
	Dir      string
	Manifest *Manifest
	streams  map[string]*Stream
	maps     [][]byte
	// fromBytes, in tests, stands in for the mapped contents of the one
	// file of a set.
	fromBytes []byte
}

// VerifiedName is the marker Open records beside a set whose files it
// found intact (setdir.VerifyOnce).
const VerifiedName = setdir.VerifiedName

// OpenOptions control OpenWith.
type OpenOptions struct {
	// Full checks every file's sha256 at this open, whatever the marker
	// says (inspect --verify).
	Full bool
	// Logger hears when an open verifies the files (it reads them all
	// once) and when the marker cannot be recorded. nil: nothing.
	Logger *slog.Logger
}

// Open opens the token shard set in dir: OpenWith, Full when verify.
func Open(dir string, verify bool) (*Set, error) {
	return OpenWith(dir, OpenOptions{Full: verify})
}

// OpenWith opens the token shard set in dir. Its manifest is checked
// against its checksum; its files against their sha256, in full on the
// first open after they were written, copied or changed (and at every
// open with o.Full), else by the marker that records them as verified
// (size, mtime, inode): a flipped bit in a token file is an error naming
// it before any batch is read. Every error names the file.
//
// A set at an s3:// URL is first copied into a local cache
// (store.CacheDir; each file checked against its sha256 as it downloads,
// files already there and intact kept) and opened there.
func OpenWith(dir string, o OpenOptions) (*Set, error) {
	if store.IsURL(dir) {
		local, err := Fetch(context.Background(), dir)
		if err != nil {
			return nil, err
		}
		dir = local
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := setdir.VerifyOnce(store.Local(dir), m.Checksum, m.entries(), ErrCorrupt, o.Full, o.Logger); err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	s := &Set{Dir: dir, Manifest: m, streams: map[string]*Stream{}}
	for _, name := range []string{Train, Val} {
		sp := m.Splits[name]
		if sp == nil {
			continue
		}
		st, err := s.openStream(name, sp)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.streams[name] = st
	}
	return s, nil
}

// Fetch copies the token set at an s3:// URL into its local cache
// directory (setdir.Mirror) and returns that directory.
func Fetch(ctx context.Context, url string) (string, error) {
	d, err := store.OpenS3(ctx, url)
	if err != nil {
		return "", fmt.Errorf("shards: %w", err)
	}
	raw, err := d.ReadFile(ManifestName)
	if err != nil {
		return "", fmt.Errorf("shards: %w", err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return "", fmt.Errorf("shards: %s: %w", d.Join(ManifestName), err)
	}
	local := store.CacheDir(d)
	if err := setdir.Mirror(d, local, raw, m.entries(), ErrCorrupt); err != nil {
		return "", fmt.Errorf("shards: %w", err)
	}
	return local, nil
}

// Close unmaps the files. Streams of the set must not be used after.
func (s *Set) Close() error {
	var first error
	for _, st := range s.streams {
		for _, r := range st.readers {
			r.Close()
		}
	}
	for _, b := range s.maps {
		if err := syscall.Munmap(b); err != nil && first == nil {
			first = err
		}
	}
	s.maps = nil
	return first
}

// Stream returns a split's token stream.
func (s *Set) Stream(split string) (*Stream, error) {
	st := s.streams[split]
	if st == nil || st.Tokens == 0 {
		return nil, fmt.Errorf("shards: %s: the %s split is empty", s.Dir, split)
	}
	return st, nil
}

// Stream is a split's documents back to back (separators included) as one
// token stream, read through the record batches of its files.
type Stream struct {
	set     *Set
	Split   string
	Tokens  int64
	Docs    int64
	batches []*batchRef
	starts  []int64 // token start of each batch, then Tokens
	readers []*ipc.FileReader

	mu    sync.Mutex // guards cache (compressed sets)
	cache map[int]*batchData
	lru   []int
}

type batchRef struct {
	file    int   // index into the split's files
	index   int   // record batch index in the file
	rowBase int64 // row of the batch's first document in the file
	rows    int
	data    *batchData // uncompressed sets: always set; else loaded on demand
}

// batchData is one record batch's columns as Go slices over the mapped file
// (or the decompressed buffers).
type batchData struct {
	offsets []int32 // len rows+1, relative to values
	u16     []uint16
	u32     []uint32
	src     []int32
	row     []int64
}

func (s *Set) openStream(name string, sp *Split) (*Stream, error) {
	st := &Stream{set: s, Split: name, cache: map[int]*batchData{}}
	compressed := s.Manifest.Options.Compression == "zstd"
	for fi, f := range sp.Files {
		p := filepath.Join(s.Dir, f.Name)
		data, err := s.mapFile(p, f.Size)
		if err != nil {
			return nil, err
		}
		var r *ipc.FileReader
		err = safely(func() error {
			var err error
			limit := maxAllocPlain
			if compressed {
				limit = maxAllocZstd
			}
			mem := arrowpool.New()
			mem.Limit = limit // refused by a panic, which safely turns into ErrCorrupt
			if r, err = ipc.NewMappedFileReader(data, ipc.WithAllocator(mem)); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			return checkSchema(r.Schema(), s.Manifest.Tokenizer.TokenBits == 32, name)
		})
		if err != nil {
			return nil, fmt.Errorf("shards: %s: %w", p, err)
		}
		st.readers = append(st.readers, r)
		var docs, toks, row int64
		for i := 0; i < r.NumRecords(); i++ {
			b := &batchRef{file: fi, index: i, rowBase: row}
			d, n, err := st.load(b)
			if err != nil {
				return nil, fmt.Errorf("shards: %s: batch %d: %w", p, i, err)
			}
			if !compressed {
				b.data = d
			}
			b.rows = len(d.src)
			st.batches = append(st.batches, b)
			st.starts = append(st.starts, st.Tokens+toks)
			row += int64(b.rows)
			docs += int64(b.rows)
			toks += n
		}
		if docs != f.Documents || toks != f.Tokens {
			return nil, fmt.Errorf("shards: %s: %w: %d documents and %d tokens, the manifest says %d and %d", p, ErrCorrupt, docs, toks, f.Documents, f.Tokens)
		}
		st.Tokens += toks
		st.Docs += docs
	}
	st.starts = append(st.starts, st.Tokens)
	return st, nil
}

// mapFile maps a file read-only after checking its size; the Set unmaps it
// on Close.
func (s *Set) mapFile(p string, size int64) ([]byte, error) {
	if s.fromBytes != nil {
		return s.fromBytes, nil
	}
	fd, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", s.Dir, err)
	}
	defer fd.Close()
	info, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	if info.Size() != size {
		return nil, fmt.Errorf("shards: %s: %w: %d bytes, the manifest says %d (truncated or replaced)", p, ErrCorrupt, info.Size(), size)
	}
	if size == 0 {
		return nil, fmt.Errorf("shards: %s: %w: empty file", p, ErrCorrupt)
	}
	data, err := syscall.Mmap(int(fd.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shards: map %s: %w", p, err)
	}
	s.maps = append(s.maps, data)
	return data, nil
}

func checkSchema(sc *arrow.Schema, wide bool, split string) error {
	md := sc.Metadata()
	if v, _ := md.GetValue("estkit.schema"); v != SchemaName {
		return fmt.Errorf("%w: not a token shard (schema %q)", ErrVersion, v)
	}
	if v, _ := md.GetValue("estkit.version"); v != SchemaVersion {
		return fmt.Errorf("%w: token shard version %q (this estkit reads %s)", ErrVersion, v, SchemaVersion)
	}
	if v, _ := md.GetValue("estkit.split"); v != split {
		return fmt.Errorf("%w: a file of the %q split listed under %q", ErrCorrupt, v, split)
	}
	if !sc.Equal(tokenSchema(wide, split)) {
		return fmt.Errorf("%w: columns differ from the token shard schema", ErrCorrupt)
	}
	return nil
}

// Bounds on one buffer the IPC reader allocates: an uncompressed set is
// read in place (only small metadata is allocated), a record batch of a
// zstd set decompresses to a few MiB; damaged metadata can claim
// terabytes, which would stall the process long before failing.
const (
	maxAllocPlain = 1 << 20
	maxAllocZstd  = 64 << 20
)

// safely runs f and turns a panic into ErrCorrupt: arrow-go's IPC reader
// panics on some damaged metadata (found by FuzzShardFile) instead of
// returning an error.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: unreadable Arrow data (%v)", ErrCorrupt, r)
		}
	}()
	return f()
}

// load reads one record batch's columns and checks their offsets.
func (st *Stream) load(b *batchRef) (d *batchData, n int64, err error) {
	err = safely(func() error {
		var err error
		d, n, err = st.loadUnsafe(b)
		return err
	})
	return d, n, err
}

func (st *Stream) loadUnsafe(b *batchRef) (*batchData, int64, error) {
	rec, err := st.readers[b.file].RecordBatch(b.index)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	rec.Retain() // the reader releases it on its next read; the slices below stay valid
	list, ok1 := rec.Column(colTokens).(*array.List)
	src, ok2 := rec.Column(colSource).(*array.Int32)
	row, ok3 := rec.Column(colRow).(*array.Int64)
	if !ok1 || !ok2 || !ok3 || list.NullN() > 0 {
		return nil, 0, fmt.Errorf("%w: unexpected columns", ErrCorrupt)
	}
	d := &batchData{offsets: list.Offsets(), src: src.Int32Values(), row: row.Int64Values()}
	var nvals int
	switch v := list.ListValues().(type) {
	case *array.Uint16:
		d.u16 = v.Uint16Values()
		nvals = len(d.u16)
	case *array.Uint32:
		d.u32 = v.Uint32Values()
		nvals = len(d.u32)
	default:
		return nil, 0, fmt.Errorf("%w: token column of type %s", ErrCorrupt, list.ListValues().DataType())
	}
	if len(d.offsets) != len(d.src)+1 || len(d.row) != len(d.src) {
		return nil, 0, fmt.Errorf("%w: column lengths differ", ErrCorrupt)
	}
	for i := 1; i < len(d.offsets); i++ {
		if d.offsets[i] < d.offsets[i-1] {
			return nil, 0, fmt.Errorf("%w: list offsets decrease at row %d", ErrCorrupt, i)
		}
	}
	if len(d.offsets) > 0 && (d.offsets[0] < 0 || int(d.offsets[len(d.offsets)-1]) > nvals) {
		return nil, 0, fmt.Errorf("%w: list offsets outside the values", ErrCorrupt)
	}
	nsrc := int32(len(st.set.Manifest.Sources))
	for i, s := range d.src {
		if s < 0 || s >= nsrc {
			return nil, 0, fmt.Errorf("%w: row %d names source %d of %d", ErrCorrupt, i, s, nsrc)
		}
	}
	n := int64(0)
	if len(d.offsets) > 0 {
		n = int64(d.offsets[len(d.offsets)-1] - d.offsets[0])
	}
	return d, n, nil
}

// data returns a batch's columns, loading (and caching a few) for
// compressed sets.
func (st *Stream) data(i int) (*batchData, error) {
	b := st.batches[i]
	if b.data != nil {
		return b.data, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if d := st.cache[i]; d != nil {
		return d, nil
	}
	d, _, err := st.load(b)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", st.set.Manifest.Splits[st.Split].Files[b.file].Name, err)
	}
	const keep = 8
	if len(st.lru) >= keep {
		delete(st.cache, st.lru[0])
		st.lru = st.lru[1:]
	}
	st.cache[i] = d
	st.lru = append(st.lru, i)
	return d, nil
}

// batchAt returns the index of the batch holding token pos.
func (st *Stream) batchAt(pos int64) int {
	return sort.Search(len(st.batches), func(i int) bool { return st.starts[i+1] > pos }) // first batch ending after pos
}

// Read copies tokens [from, from+len(dst)) of the stream into dst.
func (st *Stream) Read(dst []int32, from int64) error {
	if from < 0 || from+int64(len(dst)) > st.Tokens {
		return fmt.Errorf("shards: read of %d tokens at %d: the %s stream holds %d", len(dst), from, st.Split, st.Tokens)
	}
	for bi := st.batchAt(from); len(dst) > 0; bi++ {
		d, err := st.data(bi)
		if err != nil {
			return err
		}
		lo := int64(d.offsets[0]) + from - st.starts[bi]
		hi := int64(d.offsets[len(d.offsets)-1])
		n := min(int64(len(dst)), hi-lo)
		if d.u16 != nil {
			for k, v := range d.u16[lo : lo+n] {
				dst[k] = int32(v)
			}
		} else {
			for k, v := range d.u32[lo : lo+n] {
				dst[k] = int32(v)
			}
		}
		dst = dst[n:]
		from += n
	}
	return nil
}

// Span is the part of one document that a range of the stream covers.
type Span struct {
	File      string `json:"file"`       // token shard file
	Row       int64  `json:"row"`        // the document's row in it
	DocSet    string `json:"doc_set"`    // the document shard directory
	DocFile   string `json:"doc_file"`   // the document shard file
	DocRow    int64  `json:"doc_row"`    // the document's row in it
	Begin     int64  `json:"begin"`      // first token of the document covered
	End       int64  `json:"end"`        // one past the last
	DocTokens int64  `json:"doc_tokens"` // the document's tokens, separators included
}

// Spans lists the documents that tokens [from, from+n) come from, in order.
func (st *Stream) Spans(from, n int64) ([]Span, error) {
	if from < 0 || n < 0 || from+n > st.Tokens {
		return nil, fmt.Errorf("shards: span of %d tokens at %d: the %s stream holds %d", n, from, st.Split, st.Tokens)
	}
	var out []Span
	m := st.set.Manifest
	for bi := st.batchAt(from); n > 0; bi++ {
		d, err := st.data(bi)
		if err != nil {
			return nil, err
		}
		b := st.batches[bi]
		rel := int32(from - st.starts[bi] + int64(d.offsets[0]))
		// the document holding rel: last offset <= rel among non-empty documents
		i := sort.Search(len(d.src), func(i int) bool { return d.offsets[i+1] > rel })
		for ; i < len(d.src) && n > 0; i++ {
			begin := int64(rel - d.offsets[i])
			size := int64(d.offsets[i+1] - d.offsets[i])
			take := min(size-begin, n)
			if take <= 0 {
				continue // an empty document
			}
			src := m.Sources[d.src[i]]
			out = append(out, Span{File: m.Splits[st.Split].Files[b.file].Name, Row: b.rowBase + int64(i),
				DocSet: m.Inputs[src.Set].Dir, DocFile: src.File, DocRow: d.row[i],
				Begin: begin, End: begin + take, DocTokens: size})
			n -= take
			from += take
			rel = d.offsets[i+1]
		}
	}
	return out, nil
}

// Documents calls fn with each document's ids in stream order (fn must not
// keep the slice).
func (st *Stream) Documents(fn func(ids []int32) error) error {
	var buf []int32
	for bi := range st.batches {
		d, err := st.data(bi)
		if err != nil {
			return err
		}
		for i := range d.src {
			lo, hi := d.offsets[i], d.offsets[i+1]
			buf = buf[:0]
			if d.u16 != nil {
				for _, v := range d.u16[lo:hi] {
					buf = append(buf, int32(v))
				}
			} else {
				for _, v := range d.u32[lo:hi] {
					buf = append(buf, int32(v))
				}
			}
			if err := fn(buf); err != nil {
				return err
			}
		}
	}
	return nil
}
