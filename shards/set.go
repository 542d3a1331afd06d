package shards

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// ErrEmptySplit is a split that holds no tokens (a set sharded with
// --val-fraction 0 has no val split).
var ErrEmptySplit = errors.New("empty")

// Set is an opened token shard set: its manifest and its splits' files,
// memory-mapped. A set at an s3:// URL streams its files through a local
// Cache of bounded size.
type Set struct {
	Dir      string
	Manifest *Manifest
	streams  map[string]*Stream
	remote   *store.Cache // a set at a URL: its files' local copies
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
	// says (inspect --verify); a set at a URL downloads every file.
	Full bool
	// Logger hears when an open verifies the files (it reads them all
	// once), when the marker cannot be recorded, and each download of a
	// set at a URL that is retried. nil: nothing.
	Logger *slog.Logger
	// CacheBytes bounds the local copies of a set at a URL (0: the
	// environment's ESTKIT_S3_CACHE_BYTES, else store.DefaultCacheBytes).
	CacheBytes int64
	// OnRetry, if set, hears each failed download that will be retried.
	OnRetry func(name string, attempt int, err error)
	// Context, if set, stops the sha256 check of the set's files (which
	// reads them all) when it is cancelled.
	Context context.Context
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
// A set at an s3:// URL is streamed: its files are downloaded as reads
// need them (and as the loader's order will need them next, Prefetch)
// into a local cache of at most o.CacheBytes (store.Cache, in
// store.CacheDir's "objects"), each checked against its sha256 as it
// downloads, transient errors retried with backoff.
func OpenWith(dir string, o OpenOptions) (*Set, error) {
	if store.IsURL(dir) {
		return openRemote(dir, o)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if err := setdir.VerifyOnce(ctx, store.Local(dir), m.Checksum, m.entries(), ErrCorrupt, o.Full, o.Logger); err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	s := &Set{Dir: dir, Manifest: m, streams: map[string]*Stream{}}
	return s, s.openStreams()
}

func (s *Set) openStreams() error {
	for _, name := range []string{Train, Val} {
		sp := s.Manifest.Splits[name]
		if sp == nil {
			continue
		}
		st, err := s.openStream(name, sp)
		if err != nil {
			s.Close()
			return err
		}
		s.streams[name] = st
	}
	return nil
}

func openRemote(url string, o OpenOptions) (*Set, error) {
	d, err := store.OpenS3(context.Background(), url)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	m, err := ReadManifestFrom(d)
	if err != nil {
		return nil, err
	}
	max := o.CacheBytes
	if max == 0 {
		if max, err = store.CacheBytes(); err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
	}
	c, err := store.NewCache(d, filepath.Join(store.CacheDir(d), "objects"), max, ErrCorrupt)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", url, err)
	}
	c.OnRetry = func(name string, attempt int, err error) {
		if o.Logger != nil {
			o.Logger.Warn("download failed, retrying", "file", d.Join(name), "attempt", attempt, "err", err)
		}
		if o.OnRetry != nil {
			o.OnRetry(name, attempt, err)
		}
	}
	s := &Set{Dir: d.String(), Manifest: m, streams: map[string]*Stream{}, remote: c}
	if o.Full {
		for _, e := range m.entries() {
			_, release, err := c.Get(context.Background(), e.Name, e.Size, e.SHA256)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("shards: %w", err)
			}
			release()
		}
	}
	return s, s.openStreams()
}

// Close unmaps the files (and, for a set at a URL, stops its downloads).
// Streams of the set must not be used after.
func (s *Set) Close() error {
	var first error
	for _, st := range s.streams {
		for fi := range st.files {
			if err := st.closeFile(fi); err != nil && first == nil {
				first = err
			}
		}
	}
	if s.remote != nil {
		s.remote.Close()
	}
	return first
}

// Stream returns a split's token stream.
func (s *Set) Stream(split string) (*Stream, error) {
	st := s.streams[split]
	if st == nil || st.Tokens == 0 {
		return nil, fmt.Errorf("shards: %s: the %s split is %w", s.Dir, split, ErrEmptySplit)
	}
	return st, nil
}

// Stream is a split's documents back to back (separators included) as one
// token stream, read through the record batches of its files. The files
// of a local set are opened with it; those of a set at a URL as reads
// need them, at most half the cache's bound of them open at once (at
// least the one a read is in), the least recently used closed first.
type Stream struct {
	set     *Set
	Split   string
	Tokens  int64
	Docs    int64
	files   []*streamFile
	fstarts []int64 // token start of each file, then Tokens

	fmu       sync.Mutex // a remote stream's reads: guards opening and closing files
	clock     int64      // remote: uses so far, for the open files' recency
	openBytes int64      // remote: bytes of the files open

	mu    sync.Mutex // guards cache (compressed sets)
	cache map[[2]int]*batchData
	lru   [][2]int
}

// streamFile is one file of a split, open or not.
type streamFile struct {
	File
	reader  *ipc.FileReader
	mapped  []byte // the file's mapping, unmapped at close
	batches []*batchRef
	starts  []int64 // token start of each batch in the file, then the file's tokens
	release func()  // remote: the cache's hold on the copy
	used    int64   // remote: the stream's clock at its last use
}

type batchRef struct {
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
	st := &Stream{set: s, Split: name, cache: map[[2]int]*batchData{}}
	for _, f := range sp.Files {
		st.files = append(st.files, &streamFile{File: f})
		st.fstarts = append(st.fstarts, st.Tokens)
		st.Tokens += f.Tokens
		st.Docs += f.Documents
	}
	st.fstarts = append(st.fstarts, st.Tokens)
	if s.remote != nil {
		return st, nil
	}
	for fi := range st.files {
		if err := st.openFile(fi); err != nil {
			st.set.streams[name] = st // closed with the set
			return nil, err
		}
	}
	return st, nil
}

// openFile maps file fi, opens its Arrow reader and indexes its record
// batches, checking their documents and tokens against the manifest.
func (st *Stream) openFile(fi int) error {
	s, sf := st.set, st.files[fi]
	p := filepath.Join(s.Dir, sf.Name)
	if s.remote != nil {
		local, release, err := s.remote.Get(context.Background(), sf.Name, sf.Size, sf.SHA256)
		if err != nil {
			return fmt.Errorf("shards: %w", err)
		}
		p, sf.release = local, release
		st.openBytes += sf.Size
	}
	ok := false
	defer func() {
		if !ok {
			st.closeFile(fi)
		}
	}()
	data, err := s.mapFile(p, sf.Size)
	if err != nil {
		return err
	}
	if s.fromBytes == nil {
		sf.mapped = data
	}
	where := s.Dir + "/" + sf.Name
	if s.remote == nil {
		where = p
	}
	compressed := s.Manifest.Options.Compression == "zstd"
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
		return checkSchema(r.Schema(), s.Manifest.Tokenizer.TokenBits == 32, st.Split)
	})
	if err != nil {
		return fmt.Errorf("shards: %s: %w", where, err)
	}
	sf.reader = r
	var docs, toks, row int64
	for i := 0; i < r.NumRecords(); i++ {
		b := &batchRef{index: i, rowBase: row}
		d, n, err := st.load(sf, b)
		if err != nil {
			return fmt.Errorf("shards: %s: batch %d: %w", where, i, err)
		}
		if !compressed {
			b.data = d
		}
		b.rows = len(d.src)
		sf.batches = append(sf.batches, b)
		sf.starts = append(sf.starts, toks)
		row += int64(b.rows)
		docs += int64(b.rows)
		toks += n
	}
	if docs != sf.Documents || toks != sf.Tokens {
		return fmt.Errorf("shards: %s: %w: %d documents and %d tokens, the manifest says %d and %d", where, ErrCorrupt, docs, toks, sf.Documents, sf.Tokens)
	}
	sf.starts = append(sf.starts, toks)
	ok = true
	return nil
}

// closeFile closes file fi (if open): its reader, its mapping, its
// cached batches and the cache's hold on its copy.
func (st *Stream) closeFile(fi int) error {
	sf := st.files[fi]
	if sf.reader != nil {
		sf.reader.Close()
		sf.reader = nil
	}
	sf.batches, sf.starts = nil, nil
	st.mu.Lock()
	for k := range st.cache {
		if k[0] == fi {
			delete(st.cache, k)
		}
	}
	st.lru = slices.DeleteFunc(st.lru, func(k [2]int) bool { return k[0] == fi })
	st.mu.Unlock()
	var err error
	if sf.mapped != nil {
		err = syscall.Munmap(sf.mapped)
		sf.mapped = nil
	}
	if sf.release != nil {
		sf.release()
		sf.release = nil
		st.openBytes -= sf.Size
	}
	return err
}

// file returns file fi open: a remote stream opens it (closing the least
// recently used others past its share of the cache). Called, for a remote
// stream, with fmu held.
func (st *Stream) file(fi int) (*streamFile, error) {
	sf := st.files[fi]
	if st.set.remote == nil {
		return sf, nil
	}
	st.clock++
	sf.used = st.clock
	if sf.reader != nil {
		return sf, nil
	}
	for st.openBytes+sf.Size > st.set.remote.Max()/2 {
		lru := -1
		for i, o := range st.files {
			if o.reader != nil && i != fi && (lru < 0 || o.used < st.files[lru].used) {
				lru = i
			}
		}
		if lru < 0 {
			break // only this one: it is open whatever its size
		}
		st.closeFile(lru)
	}
	if err := st.openFile(fi); err != nil {
		return nil, err
	}
	return sf, nil
}

// lock serialises the reads of a remote stream (they open and close
// files); a local stream's files stay open, its reads run at once.
func (st *Stream) lock() func() {
	if st.set.remote == nil {
		return func() {}
	}
	st.fmu.Lock()
	return st.fmu.Unlock
}

// at finds token pos: its file, open, and the batch in it.
func (st *Stream) at(pos int64) (int, *streamFile, int, error) {
	fi := sort.Search(len(st.files), func(i int) bool { return st.fstarts[i+1] > pos }) // first file ending after pos
	sf, err := st.file(fi)
	if err != nil {
		return 0, nil, 0, err
	}
	rel := pos - st.fstarts[fi]
	bi := sort.Search(len(sf.batches), func(i int) bool { return sf.starts[i+1] > rel })
	return fi, sf, bi, nil
}

// filesOf calls fn with the index of each file that tokens [from,
// from+n) lie in.
func (st *Stream) filesOf(from, n int64, fn func(fi int)) {
	if n <= 0 || from >= st.Tokens {
		return
	}
	fi := sort.Search(len(st.files), func(i int) bool { return st.fstarts[i+1] > from })
	for ; fi < len(st.files) && st.fstarts[fi] < from+n; fi++ {
		fn(fi)
	}
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
func (st *Stream) load(sf *streamFile, b *batchRef) (d *batchData, n int64, err error) {
	err = safely(func() error {
		var err error
		d, n, err = st.loadUnsafe(sf, b)
		return err
	})
	return d, n, err
}

func (st *Stream) loadUnsafe(sf *streamFile, b *batchRef) (*batchData, int64, error) {
	rec, err := sf.reader.RecordBatch(b.index)
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

// data returns batch bi of file fi, loading (and caching a few) for
// compressed sets.
func (st *Stream) data(fi int, sf *streamFile, bi int) (*batchData, error) {
	b := sf.batches[bi]
	if b.data != nil {
		return b.data, nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	k := [2]int{fi, bi}
	if d := st.cache[k]; d != nil {
		return d, nil
	}
	d, _, err := st.load(sf, b)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", sf.Name, err)
	}
	const keep = 8
	if len(st.lru) >= keep {
		delete(st.cache, st.lru[0])
		st.lru = st.lru[1:]
	}
	st.cache[k] = d
	st.lru = append(st.lru, k)
	return d, nil
}

// Read copies tokens [from, from+len(dst)) of the stream into dst.
func (st *Stream) Read(dst []int32, from int64) error {
	if from < 0 || from+int64(len(dst)) > st.Tokens {
		return fmt.Errorf("shards: read of %d tokens at %d: the %s stream holds %d", len(dst), from, st.Split, st.Tokens)
	}
	defer st.lock()()
	for len(dst) > 0 {
		fi, sf, bi, err := st.at(from)
		if err != nil {
			return err
		}
		d, err := st.data(fi, sf, bi)
		if err != nil {
			return err
		}
		lo := int64(d.offsets[0]) + from - st.fstarts[fi] - sf.starts[bi]
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
	defer st.lock()()
	for n > 0 {
		fi, sf, bi, err := st.at(from)
		if err != nil {
			return nil, err
		}
		d, err := st.data(fi, sf, bi)
		if err != nil {
			return nil, err
		}
		b := sf.batches[bi]
		rel := int32(from - st.fstarts[fi] - sf.starts[bi] + int64(d.offsets[0]))
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
			out = append(out, Span{File: sf.Name, Row: b.rowBase + int64(i),
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
	defer st.lock()()
	for fi := range st.files {
		sf, err := st.file(fi)
		if err != nil {
			return err
		}
		for bi := range sf.batches {
			if err := st.documents(fi, sf, bi, &buf, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// documents calls fn with each document of batch bi of file fi, through
// *buf.
func (st *Stream) documents(fi int, sf *streamFile, bi int, buf *[]int32, fn func(ids []int32) error) error {
	d, err := st.data(fi, sf, bi)
	if err != nil {
		return err
	}
	for i := range d.src {
		lo, hi := d.offsets[i], d.offsets[i+1]
		b := (*buf)[:0]
		if d.u16 != nil {
			for _, v := range d.u16[lo:hi] {
				b = append(b, int32(v))
			}
		} else {
			for _, v := range d.u32[lo:hi] {
				b = append(b, int32(v))
			}
		}
		*buf = b
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// Cache is the local cache a set at a URL streams its files through (nil
// for a local set).
func (s *Set) Cache() *store.Cache { return s.remote }
