package ingest

import (
	"fmt"
	"log/slog"
	"runtime"
	"sort"

	"github.com/estkit/estkit/internal/setdir"
)

// OnError says what a data error does to the run.
type OnError string

// The error policies.
const (
	OnErrorFail OnError = "fail" // the first data error, in input order, fails the run
	OnErrorSkip OnError = "skip" // data errors become rejections counted by reason
)

// UTF8Policy says what invalid UTF-8 in a document's text does.
type UTF8Policy string

// The UTF-8 policies.
const (
	UTF8Reject UTF8Policy = "reject" // a data error (see OnError)
	UTF8Repair UTF8Policy = "repair" // each invalid byte sequence becomes U+FFFD; counted as repaired
)

// Compression of document shard bodies.
type Compression string

// The shard body compressions.
const (
	CompressZstd Compression = "zstd"
	CompressLZ4  Compression = "lz4"
	CompressNone Compression = "none"
)

// Options configure one ingest run. The fields tagged for JSON are the
// resolved options recorded in the manifest and hashed into its key; the
// others (parallelism, logging, progress) cannot change the output.
type Options struct {
	Format      Format      `json:"format"`
	Corpus      string      `json:"corpus,omitempty"`       // overrides the corpus name of every input
	TextField   string      `json:"text_field,omitempty"`   // jsonl: dotted path of the text field (default "text")
	TextColumn  string      `json:"text_column,omitempty"`  // parquet: text column (default "text")
	MetaFields  []string    `json:"meta_fields,omitempty"`  // jsonl/parquet: fields copied into lineage metadata
	IncludeSets []string    `json:"include_sets,omitempty"` // slimpajama: keep only these redpajama_set_name values
	ExcludeSets []string    `json:"exclude_sets,omitempty"` // slimpajama: drop these redpajama_set_name values
	Langs       []string    `json:"langs,omitempty"`        // starcoder: keep only these languages (directory names)
	Revision    string      `json:"revision,omitempty"`     // Hugging Face hub cache: the ref or commit to read (default refs/main)
	Dedup       bool        `json:"dedup"`                  // drop exact duplicates by content hash (first kept)
	OnError     OnError     `json:"on_error"`
	UTF8        UTF8Policy  `json:"utf8"`
	MaxDocBytes int64       `json:"max_doc_bytes"`
	ShardBytes  int64       `json:"shard_bytes"` // text bytes per output shard (a shard holds at least one document)
	Compression Compression `json:"compression"`

	OutDir   string         `json:"-"`
	Version  string         `json:"-"` // estkit version recorded in the manifest
	Workers  int            `json:"-"` // 0: runtime.GOMAXPROCS(0), the CPUs the process may use
	Force    bool           `json:"-"` // redo the work even when the manifest is up to date
	Logger   *slog.Logger   `json:"-"`
	Progress func(Progress) `json:"-"` // called from one goroutine, often; throttle in the caller
	// Part, when Of > 0, ingests only this part's share of the inputs
	// (setdir.Part.Range) into a partial set that Merge joins with the
	// others.
	Part setdir.Part `json:"-"`
}

// Defaults of the options. DefaultMaxDocBytes is far above the documents of
// pretraining corpora (a long book is 1 to 5 MiB; StarCoderData keeps files
// under 1 MB) and bounds a JSON line at 33 MiB (jsonLineLimit), so that a
// worker's rejected line costs tens of MiB, not gigabytes.
const (
	DefaultMaxDocBytes = 16 << 20
	DefaultShardBytes  = 256 << 20
	maxMaxDocBytes     = 1 << 30 // Arrow utf8 offsets are int32; keep every document below 1 GiB
)

// resolve fills defaults and validates; it sorts list options so that their
// order does not change the key.
func (o *Options) resolve() error {
	if o.Format == "" {
		o.Format = FormatAuto
	}
	if _, err := ParseFormat(string(o.Format)); err != nil {
		return err
	}
	if o.OnError == "" {
		o.OnError = OnErrorFail
	}
	if o.OnError != OnErrorFail && o.OnError != OnErrorSkip {
		return fmt.Errorf("ingest: --on-error %q: want fail or skip", o.OnError)
	}
	if o.UTF8 == "" {
		o.UTF8 = UTF8Reject
	}
	if o.UTF8 != UTF8Reject && o.UTF8 != UTF8Repair {
		return fmt.Errorf("ingest: --utf8 %q: want reject or repair", o.UTF8)
	}
	if o.Compression == "" {
		o.Compression = CompressZstd
	}
	switch o.Compression {
	case CompressZstd, CompressLZ4, CompressNone:
	default:
		return fmt.Errorf("ingest: --compression %q: want zstd, lz4 or none", o.Compression)
	}
	if o.MaxDocBytes == 0 {
		o.MaxDocBytes = DefaultMaxDocBytes
	}
	if o.MaxDocBytes < 0 || o.MaxDocBytes > maxMaxDocBytes {
		return fmt.Errorf("ingest: --max-doc-bytes %d: want 1 to %d", o.MaxDocBytes, maxMaxDocBytes)
	}
	if o.ShardBytes == 0 {
		o.ShardBytes = DefaultShardBytes
	}
	if o.ShardBytes < 0 {
		return fmt.Errorf("ingest: --shard-bytes %d: want a positive size", o.ShardBytes)
	}
	if len(o.IncludeSets) > 0 && len(o.ExcludeSets) > 0 {
		return fmt.Errorf("ingest: give --include-set or --exclude-set, not both")
	}
	for _, l := range [][]string{o.MetaFields, o.IncludeSets, o.ExcludeSets, o.Langs} {
		sort.Strings(l)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.OutDir == "" {
		return fmt.Errorf("ingest: no output directory")
	}
	return nil
}

func (o *Options) textField() string {
	if o.TextField == "" {
		return "text"
	}
	return o.TextField
}

func (o *Options) textColumn(f Format) string {
	switch {
	case o.TextColumn != "":
		return o.TextColumn
	case f == FormatStarCoder:
		return "content"
	}
	return "text"
}

// Progress reports an ingest in flight.
type Progress struct {
	Phase      string // "hash" or "ingest"
	Bytes      int64  // input bytes consumed (compressed, as on disk)
	TotalBytes int64
	Documents  int64 // documents read
	Kept       int64
	TextBytes  int64 // text bytes kept
}
