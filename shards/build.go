package shards

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/arrowpool"
	"github.com/estkit/estkit/internal/ordered"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/tokenize"
)

// Options control Build. Only the fields that change the output go into
// the key.
type Options struct {
	// BOS and EOS: add the tokenizer's BOS before and EOS after each
	// document. Build's caller resolves the defaults (DefaultSeparators).
	BOS bool `json:"bos"`
	EOS bool `json:"eos"`
	// ValFraction of the documents, chosen by a hash of each document's
	// text and ValSeed, go to the "val" split.
	ValFraction float64 `json:"val_fraction"`
	ValSeed     uint64  `json:"val_seed"`
	// Compression of shard bodies: "none" (the default: the loader maps
	// the files without copying) or "zstd".
	Compression string `json:"compression"`
	// ShardTokens: a file is closed once it holds this many tokens.
	ShardTokens int64 `json:"shard_tokens"`

	Version  string                  `json:"-"` // estkit's version, recorded in the manifest
	Workers  int                     `json:"-"` // 0: one per CPU the process may use (GOMAXPROCS, which follows a container's CPU limit)
	OutDir   string                  `json:"-"` // where the set goes; "" : CacheDir/<key>
	CacheDir string                  `json:"-"` // content-addressed sets; "" : DefaultCacheDir()
	Progress func(docs, bytes int64) `json:"-"` // called now and then from one goroutine
	Logger   *slog.Logger            `json:"-"` // what Build checks and decides (nil: nothing)
	// Part, when Of > 0, tokenizes only this part's share of the input
	// document files (setdir.Part.Range) into a partial set that Merge
	// joins with the others.
	Part setdir.Part `json:"-"`
}

type keyOptions struct {
	BOS, EOS    bool
	ValFraction float64
	ValSeed     uint64
	Compression string
	ShardTokens int64
}

func (o *Options) keyed() keyOptions {
	return keyOptions{o.BOS, o.EOS, o.ValFraction, o.ValSeed, o.Compression, o.ShardTokens}
}

// Defaults.
const (
	DefaultValFraction = 0.0005 // nanoGPT's OpenWebText split
	DefaultValSeed     = 2357
	DefaultShardTokens = 1 << 28 // 512 MiB of uint16 ids per file
)

// DefaultSeparators: a tokenizer with a BOS (Llama 2) gets BOS before each
// document, as TinyLlama's released runs did; one without (GPT-2) gets EOS
// (<|endoftext|>) after each, as nanoGPT does.
func DefaultSeparators(t *tokenize.Tokenizer) (bos, eos bool) {
	if _, err := t.Encode("", tokenize.EncodeOptions{BOS: true}); err == nil {
		return true, false
	}
	return false, true
}

// DefaultCacheDir is where content-addressed shard sets live by default.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "estkit", "shards")
	}
	return filepath.Join(os.TempDir(), "estkit-shards")
}

// Result is what Build did.
type Result struct {
	Dir      string
	Manifest *Manifest
	Reused   bool // an existing set with the same key: no work done
}

// Build tokenizes the document shard sets in docDirs into a token shard
// set. The output is a pure function of the inputs, the options and the
// tokenizer, byte for byte whatever the worker count; a set with the same
// key is reused; a run that is killed leaves no visible partial file and a
// re-run completes.
func Build(ctx context.Context, tok *tokenize.Tokenizer, docDirs []string, o Options) (*Result, error) {
	if len(docDirs) == 0 {
		return nil, errors.New("shards: no document shard directory given")
	}
	// NaN compares false with everything: checked by what it must be, not
	// by what it must not.
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		return nil, fmt.Errorf("shards: val fraction %g is outside [0, 1)", o.ValFraction)
	}
	if o.ShardTokens < 0 {
		return nil, fmt.Errorf("shards: shard tokens %d: want a positive number (0: the default, %d)", o.ShardTokens, DefaultShardTokens)
	}
	if o.Workers < 0 {
		return nil, fmt.Errorf("shards: workers %d: want a positive number (0: one per CPU)", o.Workers)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch o.Compression {
	case "":
		o.Compression = "none"
	case "none", "zstd":
	default:
		return nil, fmt.Errorf("shards: compression %q (want none or zstd)", o.Compression)
	}
	if o.ShardTokens <= 0 {
		o.ShardTokens = DefaultShardTokens
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	info := TokenizerInfo{Name: tok.Name(), Fingerprint: tok.Fingerprint(), VocabSize: tok.VocabSize(), TokenBits: 16, BOS: -1, EOS: -1}
	if tok.VocabSize() > 1<<16 {
		info.TokenBits = 32
	}
	if o.BOS || o.EOS {
		ids, err := tok.Encode("", tokenize.EncodeOptions{BOS: o.BOS, EOS: o.EOS})
		if err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		if o.BOS {
			info.BOS = int64(ids[0])
		}
		if o.EOS {
			info.EOS = int64(ids[len(ids)-1])
		}
	}
	var inputs []InputSet
	var sources []Source
	var sizes []int64 // of each source's file
	dirInfo := make([]os.FileInfo, len(docDirs))
	// Sets in object storage are read from a local copy (checked as it
	// downloads); the manifest records their URLs.
	given := docDirs
	// The manifest and every row's lineage name the inputs (and --out) as
	// UTF-8 strings: a name that is not would be recorded altered.
	for _, d := range append(slices.Clone(given), o.OutDir) {
		if !utf8.ValidString(d) {
			what := "input"
			if d == o.OutDir {
				what = "--out"
			}
			return nil, fmt.Errorf("shards: %w: %s name %q is not valid UTF-8; rename it", ingest.ErrInvalidUTF8, what, d)
		}
	}
	docDirs = slices.Clone(docDirs)
	for i, d := range given {
		if store.IsURL(d) {
			if slices.Index(given, d) < i {
				return nil, fmt.Errorf("shards: input %s is given twice", d)
			}
			local, err := ingest.Fetch(ctx, d)
			if err != nil {
				return nil, fmt.Errorf("shards: input %w", err)
			}
			docDirs[i] = local
		}
	}
	for i, d := range docDirs {
		st, err := os.Stat(d)
		if err != nil {
			return nil, fmt.Errorf("shards: input %w", err)
		}
		for j := range i {
			if os.SameFile(st, dirInfo[j]) {
				// its documents would be read twice, and its files' rows
				// counted as one file's
				return nil, fmt.Errorf("shards: input %s is given twice (as %s and %s)", d, docDirs[j], d)
			}
		}
		dirInfo[i] = st
		m, err := ingest.ReadManifest(d)
		if errors.Is(err, ingest.ErrCorrupt) {
			return nil, fmt.Errorf("shards: input %s: %w", d, err)
		}
		if err != nil {
			return nil, fmt.Errorf("shards: input %s is not a document shard set (estkit ingest writes them): %w", d, err)
		}
		// a copy (cp -a) of a set given beside it: the same documents
		// would be tokenized twice
		if j := slices.IndexFunc(inputs, func(in InputSet) bool { return in.ManifestKey == m.Key }); j >= 0 {
			return nil, fmt.Errorf("shards: inputs %s and %s are the same document set (manifest key %s): give it once", given[j], given[i], m.Key)
		}
		raw, err := os.ReadFile(filepath.Join(d, ingest.ManifestName))
		if err != nil {
			return nil, fmt.Errorf("shards: %w", err)
		}
		h := sha256.Sum256(raw)
		abs, _ := filepath.Abs(d)
		if store.IsURL(given[i]) {
			abs = given[i]
		}
		if !utf8.ValidString(abs) { // the working directory's name is not
			return nil, fmt.Errorf("shards: %w: input %s: its absolute name %q is not valid UTF-8; rename it", ingest.ErrInvalidUTF8, d, abs)
		}
		inputs = append(inputs, InputSet{Dir: abs, ManifestKey: m.Key, ManifestSHA: hex.EncodeToString(h[:]), Documents: m.Counts.Documents})
		for _, f := range m.Outputs {
			st, err := os.Stat(filepath.Join(d, f.Name))
			if err != nil {
				return nil, fmt.Errorf("shards: input %s: %w", d, err)
			}
			if st.Size() != f.Size {
				// the input's fault, not a token set's: named as the document set
				return nil, fmt.Errorf("shards: input document set %s: %w: %s is %d bytes, its manifest says %d", d, ingest.ErrCorrupt, f.Name, st.Size(), f.Size)
			}
			sources = append(sources, Source{Set: i, File: f.Name, SHA256: f.SHA256, Rows: f.Rows})
			sizes = append(sizes, f.Size)
		}
	}
	key := manifestKey(info, &o, inputs, sources)
	// a part reads its share of the document files; its manifest keeps
	// every input and source, so that its rows' source ids are the whole
	// run's and Merge copies them as they are
	part := &PartInfo{Count: len(sources)}
	if o.Part.Of > 0 {
		lo, hi := o.Part.Range(sizes)
		part = &PartInfo{Part: o.Part, First: lo, Count: hi - lo}
		key = partKey(key, part)
		log.Info("tokenizing one part of the documents", "part", o.Part.String(), "files", hi-lo, "first", lo, "of", len(sources))
	}
	dir := o.OutDir
	if dir == "" {
		cache := o.CacheDir
		if cache == "" {
			cache = DefaultCacheDir()
		}
		dir = filepath.Join(cache, key)
	}
	if st, err := os.Stat(dir); err == nil {
		for i, in := range dirInfo {
			if os.SameFile(st, in) {
				return nil, fmt.Errorf("shards: --out %s is also an input (%s): a token set is never written over a document set", dir, docDirs[i])
			}
		}
	}
	if slices.Contains(given, dir) {
		return nil, fmt.Errorf("shards: --out %s is also an input: a token set is never written over a document set", dir)
	}
	// Ownership first, before anything is created in the directory: a
	// refused directory is left exactly as it was.
	out, err := store.Open(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("shards: --out %w", err)
	}
	sw, err := setdir.Begin(out, ManifestSchema, "shards", o.Part)
	if err != nil {
		return nil, err
	}
	defer sw.Close()
	named := namedFiles(out)
	if m, err := ReadManifestFrom(out); err == nil && m.Key == key {
		// Re-checked, not trusted: a file damaged since it was written is
		// rebuilt, never reused.
		if err := sw.Reuse(m.entries(), ErrCorrupt, named); err != nil {
			log.Warn("the set has the same key but a damaged or missing file; rebuilding it", "err", err)
		} else {
			return &Result{Dir: dir, Manifest: m, Reused: true}, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("the manifest in the output directory is unreadable; rebuilding the set", "err", err)
	}
	// The files' names carry the new set's key, so that the set already
	// here stays whole, manifest and files, until the new manifest
	// replaces it (a rebuild that fails, is interrupted or fills the disk
	// leaves it as it was), and so that the claim names exactly this
	// build's files (never a file of the user's that looks like a
	// shard). Only a damaged set of the same key, whose names the rebuild
	// reuses, has its manifest withdrawn first, so that no reader pairs it
	// with new files. Claimed before any file is committed, so that a
	// killed run's files are known as ours.
	prefix := filePrefix(key)
	sameKey := false
	if m, err := ReadManifestFrom(out); err == nil {
		sameKey = m.Key == key
	}
	if err := sw.Start([]string{Train + "-" + prefix, Val + "-" + prefix}, sameKey, key); err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	start := time.Now()
	b := &builder{tok: tok, o: &o, info: info, dir: sw.Files(), sources: sources, prefix: prefix, first: part.First, count: part.Count}
	m, err := b.run(ctx, docDirs)
	if err != nil {
		b.abort(sw)
		return nil, err
	}
	m.Key, m.Inputs, m.Sources = key, inputs, sources
	if o.Part.Of > 0 {
		m.Part = part
	}
	secs := time.Since(start).Seconds()
	m.Timing = &Timing{Started: start.UTC().Format(time.RFC3339), Seconds: secs, Workers: o.Workers, TextBytes: b.textBytes,
		TextMBps: float64(b.textBytes) / 1e6 / secs, TokensPerS: float64(b.tokens) / secs, ReusedFiles: sw.Reused()}
	data, err := encodeManifest(m)
	if err == nil {
		err = sw.Commit(data, m.fileNames(), named)
	}
	if err != nil {
		// a full disk: this run's files go with it
		b.abort(sw)
		return nil, fmt.Errorf("shards: %w", err)
	}
	return &Result{Dir: dir, Manifest: m}, nil
}

// filePrefix is what a set's file names carry after the split's name
// ("train-" + filePrefix + "00000.arrow"): the first 12 hex digits of the
// set's key and a dash.
func filePrefix(key string) string {
	if len(key) > 12 {
		key = key[:12]
	}
	return key + "-"
}

// encodeManifest sets m's checksum and returns its bytes.
func encodeManifest(m *Manifest) ([]byte, error) {
	m.Checksum = setdir.Unsealed
	data, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		data = append(data, '\n')
		m.Checksum, err = setdir.Seal(data)
	}
	return data, err
}

// writeManifest sets m's checksum and commits it in the local directory
// dir (tests write sets by hand with it).
func writeManifest(dir string, m *Manifest) error {
	data, err := encodeManifest(m)
	if err != nil {
		return fmt.Errorf("shards: %w", err)
	}
	if err := store.Local(dir).WriteFile(ManifestName, data); err != nil {
		return fmt.Errorf("shards: write manifest: %w", err)
	}
	return nil
}

// A unit is a slice of a record batch of a document shard, tokenized by a
// worker.
type unit struct {
	source  int32
	rowBase int64
	rec     arrow.RecordBatch
	// results, filled by the worker
	ids     []uint32 // all documents' ids back to back
	lens    []int32  // ids per document
	val     []bool   // the document goes to the val split
	corpora []string
	bytes   int64
	err     error
}

type builder struct {
	tok     *tokenize.Tokenizer
	o       *Options
	info    TokenizerInfo
	dir     store.Dir
	sources []Source
	prefix  string // of the files' names after the split's: filePrefix(key)
	// the sources this run reads: [first, first+count)
	first, count int

	writers   map[string]*splitWriter
	textBytes int64
	tokens    int64
	// idBufs recycles units' id buffers from the sink to the workers: a
	// fresh one of megabytes per record batch cost its page faults, a
	// twentieth of the build's time.
	idBufs chan []uint32
}

func (b *builder) run(ctx context.Context, docDirs []string) (*Manifest, error) {
	// The queues hold a few record batches' units (4 MiB of text each cut
	// into units of 1 MiB), so that the workers have work while the reader
	// decompresses the next batch: with one batch's worth, a block profile
	// showed them waiting for input a fifth of the time.
	ahead := 4*b.o.Workers + 8
	b.idBufs = make(chan []uint32, ahead+b.o.Workers+1)
	b.writers = map[string]*splitWriter{}
	corpora := map[string]map[string]*Tally{Train: {}, Val: {}}
	var docs int64
	encoders := make([]*tokenize.Encoder, b.o.Workers) // one per worker
	// the sink: in input order
	sink := func(_ int, u *unit) error {
		if u.err != nil {
			return u.err
		}
		off := 0
		for i, n := range u.lens {
			split := Train
			if u.val[i] {
				split = Val
			}
			w, err := b.writer(split)
			if err == nil {
				err = w.add(u.ids[off:off+int(n)], u.source, u.rowBase+int64(i))
			}
			if err != nil {
				return err
			}
			t := corpora[split][u.corpora[i]]
			if t == nil {
				t = &Tally{}
				corpora[split][u.corpora[i]] = t
			}
			t.Documents++
			t.Tokens += int64(n)
			off += int(n)
			b.tokens += int64(n)
		}
		b.textBytes += u.bytes
		docs += int64(len(u.lens))
		u.rec.Release()
		select {
		case b.idBufs <- u.ids[:0]:
		default:
		}
		u.ids = nil
		if b.o.Progress != nil {
			b.o.Progress(docs, b.textBytes)
		}
		return nil
	}
	err := ordered.Run(ctx, ordered.Config[*unit, *unit]{
		Streams: 1, Workers: b.o.Workers, Depth: ahead + b.o.Workers, Queue: ahead,
		Read: func(ctx context.Context, _ int, emit func(*unit) error) error {
			return b.read(ctx, docDirs, emit)
		},
		Work: func(ctx context.Context, w int, u *unit) *unit {
			if err := ctx.Err(); err != nil { // the sink will not take it: skip the work
				u.err = err
				return u
			}
			if encoders[w] == nil {
				encoders[w] = b.tok.NewEncoder()
			}
			b.encode(encoders[w], u)
			return u
		},
		Sink: sink,
		Drop: func(u *unit) { u.rec.Release() },
	})
	if err != nil {
		return nil, err
	}
	m := &Manifest{Schema: ManifestSchema, Version: ManifestVersion, EstkitVersion: b.o.Version,
		Tokenizer: b.info, Options: *b.o, Splits: map[string]*Split{}}
	for _, split := range []string{Train, Val} {
		s := &Split{Corpora: corpora[split]}
		if w := b.writers[split]; w != nil {
			files, err := w.finish()
			if err != nil {
				return nil, err
			}
			s.Files = files
			for _, f := range files {
				s.Documents += f.Documents
				s.Tokens += f.Tokens
			}
		}
		m.Splits[split] = s
	}
	return m, nil
}

// unitBytes is the text a unit of work holds at most (or one document).
const unitBytes = 1 << 20

// decoders is the number of goroutines that decompress document batches
// at once: one per four workers (a goroutine decompresses zstd at about
// five times the rate a worker tokenizes), so that the reading scales with
// the cores.
func decoders(workers int) int { return max(1, (workers+3)/4) }

// A batchJob is one record batch of a document shard, decompressed by a
// decoder goroutine.
type batchJob struct {
	path  string
	index int
	rec   arrow.RecordBatch
	err   error
}

// read sends the record batches of each document shard, in order, cut
// into units. It checks each file against the sha256 its set's manifest
// records before Arrow reads any of it (arrow-go allocates what a damaged
// file's metadata claims, which can end the process), then hands its
// batches to decoder goroutines that decompress them ahead, in parallel,
// and takes them back in order.
func (b *builder) read(ctx context.Context, docDirs []string, emit func(*unit) error) error {
	type file struct {
		path string
		src  Source
	}
	var files []file
	for i, d := range docDirs {
		for _, s := range b.sources {
			if s.Set == i {
				files = append(files, file{filepath.Join(d, s.File), s})
			}
		}
	}
	files = files[b.first : b.first+b.count]
	n := decoders(b.o.Workers)
	open := make([]*ingest.ShardReader, n) // each decoder's current file
	defer func() {
		for _, sr := range open {
			if sr != nil {
				sr.Close()
			}
		}
	}()
	fi, row := 0, int64(0) // the file being read (its index is the source id) and its rows so far
	done := func() error { // file fi is complete
		if row != files[fi].src.Rows {
			return fmt.Errorf("shards: %s: %w: %d rows, its manifest says %d", files[fi].path, ErrCorrupt, row, files[fi].src.Rows)
		}
		fi, row = fi+1, 0
		return nil
	}
	err := ordered.Run(ctx, ordered.Config[*batchJob, *batchJob]{
		Streams: 1, Workers: n, Depth: 2 * n, Queue: n,
		Read: func(ctx context.Context, _ int, put func(*batchJob) error) error {
			for _, f := range files {
				batches, err := checkDocShard(f.path, f.src.SHA256)
				if err != nil {
					// in order, after the batches before it: the sink
					// reports it
					return put(&batchJob{path: f.path, err: err})
				}
				for i := range batches {
					if err := put(&batchJob{path: f.path, index: i}); err != nil {
						return err
					}
				}
			}
			return nil
		},
		Work: func(ctx context.Context, w int, j *batchJob) *batchJob {
			if j.err != nil {
				return j
			}
			if j.err = ctx.Err(); j.err != nil {
				return j
			}
			if sr := open[w]; sr == nil || j.path != sr.Path() {
				if sr != nil {
					sr.Close()
					open[w] = nil
				}
				if open[w], j.err = ingest.OpenShard(j.path); j.err != nil {
					return j
				}
			}
			j.rec, j.err = open[w].Batch(j.index)
			return j
		},
		Sink: func(_ int, j *batchJob) error {
			if j.err != nil {
				return fmt.Errorf("shards: %w", j.err)
			}
			for files[fi].path != j.path {
				if err := done(); err != nil {
					return err
				}
			}
			if err := b.send(j.rec, int32(b.first+fi), &row, emit); err != nil {
				return err
			}
			j.rec.Release()
			return nil
		},
		Drop: func(j *batchJob) {
			if j.rec != nil {
				j.rec.Release()
			}
		},
	})
	if err != nil {
		return err
	}
	for fi < len(files) { // the last file, and any of no batches
		if err := done(); err != nil {
			return err
		}
	}
	return nil
}

// checkDocShard checks a document shard's sha256 against its manifest's
// (one read of the compressed file: about 1% of a build) and returns its
// number of record batches.
func checkDocShard(path, want string) (int, error) {
	if err := ingest.CheckShard(path, want); err != nil {
		return 0, err
	}
	sr, err := ingest.OpenShard(path)
	if err != nil {
		return 0, err
	}
	defer sr.Close()
	return sr.NumBatches(), nil
}

// send cuts a record batch into units of about unitBytes of text, not
// whole batches (4 MiB), so that the workers' loads even out and the last
// units do not leave a core idle for long, and queues them.
func (b *builder) send(rec arrow.RecordBatch, src int32, row *int64, emit func(*unit) error) error {
	offs := rec.Column(ingest.ColText).(*array.String).ValueOffsets()
	n := int(rec.NumRows())
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && offs[hi+1]-offs[lo] <= unitBytes {
			hi++
		}
		part := rec.NewSlice(int64(lo), int64(hi))
		u := &unit{source: src, rowBase: *row, rec: part}
		*row += int64(hi - lo)
		lo = hi
		if err := emit(u); err != nil {
			part.Release()
			return err
		}
	}
	return nil
}

// encode tokenizes a unit's documents and chooses their splits.
func (b *builder) encode(e *tokenize.Encoder, u *unit) {
	n := int(u.rec.NumRows())
	text := u.rec.Column(ingest.ColText).(*array.String)
	corpus := u.rec.Column(ingest.ColCorpus).(*array.String)
	sha := u.rec.Column(ingest.ColSHA256).(*array.FixedSizeBinary)
	u.lens = make([]int32, n)
	u.val = make([]bool, n)
	u.corpora = make([]string, n)
	opts := tokenize.EncodeOptions{BOS: b.o.BOS, EOS: b.o.EOS}
	// One buffer for the batch, sized once: grown document by document it
	// was re-copied over and over (text runs at 2 to 5 bytes a token).
	select {
	case u.ids = <-b.idBufs:
	default:
	}
	if offs := text.ValueOffsets(); len(offs) > n && offs[n] > offs[0] {
		nb := offs[n] - offs[0]
		u.ids = slices.Grow(u.ids, int(nb)/2+2*n+16) // Encode grows by len/3 per document
	}
	for i := range n {
		start := len(u.ids)
		ids, err := e.Encode(text.Value(i), opts, u.ids)
		if err != nil {
			u.err = fmt.Errorf("shards: %w", err)
			return
		}
		u.ids = ids
		u.lens[i] = int32(len(ids) - start)
		u.val[i] = isVal(sha.Value(i), b.o.ValSeed, b.o.ValFraction)
		u.corpora[i] = corpus.Value(i)
		u.bytes += int64(len(text.Value(i)))
	}
}

// isVal decides a document's split from its text's sha256 and the seed: the
// same document goes to the same split in every set built with that seed.
func isVal(textSHA []byte, seed uint64, fraction float64) bool {
	if fraction <= 0 {
		return false
	}
	var buf [40]byte
	binary.LittleEndian.PutUint64(buf[:8], seed)
	copy(buf[8:], textSHA)
	h := sha256.Sum256(buf[:])
	u := binary.LittleEndian.Uint64(h[:8])
	return float64(u>>11)/float64(1<<53) < fraction
}

func (b *builder) writer(split string) (*splitWriter, error) {
	if w := b.writers[split]; w != nil {
		return w, nil
	}
	w := &splitWriter{dir: b.dir, split: split, prefix: b.prefix, wide: b.info.TokenBits == 32, o: b.o, mem: arrowpool.New()}
	b.writers[split] = w
	return w, nil
}

// abort removes the files this run committed (no manifest names them: the
// old one was withdrawn first) and its temporaries, and dir if the run
// created it.
func (b *builder) abort(sw *setdir.Writer) {
	var committed []string
	for _, w := range b.writers {
		committed = append(committed, w.abort()...)
	}
	sw.Abort(committed, nil)
}

// Record batch bounds of token shards.
const (
	batchDocs   = 8192
	batchTokens = 1 << 20
)

// splitWriter appends documents to one split's rolling files.
type splitWriter struct {
	dir    store.Dir
	split  string
	prefix string // after the split's name: filePrefix(key)
	wide   bool
	o      *Options
	mem    memory.Allocator

	rb      *array.RecordBuilder
	list    *array.ListBuilder
	u16     *array.Uint16Builder
	u32     *array.Uint32Builder
	src     *array.Int32Builder
	row     *array.Int64Builder
	bDocs   int
	bTokens int
	narrow  []uint16 // a document's ids as uint16, reused

	cur     *openFile
	fileNo  int
	outputs []File
}

type openFile struct {
	name   string
	f      store.Writer
	w      *ipc.FileWriter
	docs   int64
	tokens int64
}

func (w *splitWriter) add(ids []uint32, source int32, row int64) error {
	if w.rb == nil {
		w.rb = array.NewRecordBuilder(w.mem, tokenSchema(w.wide, w.split))
		w.list = w.rb.Field(colTokens).(*array.ListBuilder)
		if w.wide {
			w.u32 = w.list.ValueBuilder().(*array.Uint32Builder)
		} else {
			w.u16 = w.list.ValueBuilder().(*array.Uint16Builder)
		}
		w.src = w.rb.Field(colSource).(*array.Int32Builder)
		w.row = w.rb.Field(colRow).(*array.Int64Builder)
		w.reserve()
	}
	w.list.Append(true)
	if w.wide {
		w.u32.AppendValues(ids, nil)
	} else {
		w.narrow = w.narrow[:0]
		for _, id := range ids {
			w.narrow = append(w.narrow, uint16(id))
		}
		w.u16.AppendValues(w.narrow, nil)
	}
	w.src.Append(source)
	w.row.Append(row)
	w.bDocs++
	w.bTokens += len(ids)
	if w.cur == nil {
		if err := w.open(); err != nil {
			return err
		}
	}
	w.cur.docs++
	w.cur.tokens += int64(len(ids))
	if w.bDocs >= batchDocs || w.bTokens >= batchTokens {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if w.cur.tokens >= w.o.ShardTokens {
		return w.closeFile()
	}
	return nil
}

// reserve sizes the next batch's id buffer at once (grown by doubling it
// was copied about twice over).
func (w *splitWriter) reserve() {
	if w.wide {
		w.u32.Reserve(batchTokens + batchTokens/8)
	} else {
		w.u16.Reserve(batchTokens + batchTokens/8)
	}
}

func (w *splitWriter) open() error {
	name := fmt.Sprintf("%s-%s%05d.arrow", w.split, w.prefix, w.fileNo)
	w.fileNo++
	f, err := w.dir.Create(name)
	if err != nil {
		return fmt.Errorf("shards: create %s: %w", name, err)
	}
	opts := []ipc.Option{ipc.WithSchema(tokenSchema(w.wide, w.split)), ipc.WithAllocator(w.mem)}
	if w.o.Compression == "zstd" {
		opts = append(opts, ipc.WithZstd())
	}
	iw, err := ipc.NewFileWriter(f, opts...)
	if err != nil {
		f.Abort()
		return fmt.Errorf("shards: %s: %w", name, err)
	}
	w.cur = &openFile{name: name, f: f, w: iw}
	return nil
}

func (w *splitWriter) flush() error {
	if w.bDocs == 0 {
		return nil
	}
	rec := w.rb.NewRecordBatch()
	defer rec.Release()
	w.bDocs, w.bTokens = 0, 0
	w.reserve()
	if err := w.cur.w.Write(rec); err != nil {
		return fmt.Errorf("shards: write %s: %w", w.cur.name, err)
	}
	return nil
}

func (w *splitWriter) closeFile() error {
	if err := w.flush(); err != nil {
		return err
	}
	c := w.cur
	w.cur = nil
	if err := c.w.Close(); err != nil {
		c.f.Abort()
		return fmt.Errorf("shards: close %s: %w", c.name, err)
	}
	size, sum, err := c.f.Commit()
	if err != nil {
		return fmt.Errorf("shards: %s: %w", c.name, err)
	}
	w.outputs = append(w.outputs, File{Name: c.name, Size: size, SHA256: sum, Documents: c.docs, Tokens: c.tokens})
	return nil
}

func (w *splitWriter) finish() ([]File, error) {
	if w.cur != nil {
		if err := w.closeFile(); err != nil {
			return nil, err
		}
	}
	if w.rb != nil {
		w.rb.Release()
	}
	return w.outputs, nil
}

// abort drops the file in progress and returns the names of those
// committed (renamed into place, but named by no manifest).
func (w *splitWriter) abort() []string {
	if w.cur != nil {
		w.cur.f.Abort()
		w.cur = nil
	}
	var names []string
	for _, f := range w.outputs {
		names = append(names, f.Name)
	}
	return names
}
