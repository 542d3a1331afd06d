package shards

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// Token shard identity, in the Arrow schema metadata and the manifest.
const (
	SchemaName      = "estkit.tokshard"
	SchemaVersion   = "1"
	ManifestName    = "manifest.json"
	ManifestSchema  = "estkit.tokshards"
	ManifestVersion = 2 // 2 added checksum
	// writerVersion is hashed into every key: bump it when a change to the
	// writer changes the output for the same inputs.
	writerVersion = 1
)

// Splits.
const (
	Train = "train"
	Val   = "val"
)

var (
	// ErrCorrupt: a shard or manifest is damaged, truncated or does not
	// match the manifest.
	ErrCorrupt = errors.New("corrupt token shard set")
	// ErrVersion: a manifest or shard of another schema or version.
	ErrVersion = errors.New("unsupported token shard version")
	// ErrMismatch: a shard set that does not fit what was asked (another
	// tokenizer, a resume state of another configuration).
	ErrMismatch = errors.New("mismatch")
)

// The token shard columns, in order (docs/FORMATS.md).
const (
	colTokens = iota // list<uint16> or list<uint32>: the document's ids, separators included
	colSource        // int32: index into Manifest.Sources (the document shard file)
	colRow           // int64: the document's row in that file
)

// tokenSchema is the Arrow schema of token shards of one id width.
func tokenSchema(wide bool, split string) *arrow.Schema {
	var elem arrow.DataType = arrow.PrimitiveTypes.Uint16
	if wide {
		elem = arrow.PrimitiveTypes.Uint32
	}
	md := arrow.NewMetadata([]string{"estkit.schema", "estkit.version", "estkit.split"}, []string{SchemaName, SchemaVersion, split})
	return arrow.NewSchema([]arrow.Field{
		{Name: "tokens", Type: arrow.ListOfNonNullable(elem)},
		{Name: "source", Type: arrow.PrimitiveTypes.Int32},
		{Name: "row", Type: arrow.PrimitiveTypes.Int64},
	}, &md)
}

// Manifest describes one directory of token shards. Everything but Timing
// is a pure function of the inputs, the options and the tokenizer.
type Manifest struct {
	Schema        string `json:"schema"`
	Version       int    `json:"version"`
	EstkitVersion string `json:"estkit_version"`
	Key           string `json:"key"`
	// Checksum is the sha256 of the manifest file's bytes with these 64
	// hex digits read as "0" (setdir.Seal): an edit of any value (a tally, a file's sha256) is caught on
	// read.
	Checksum  string            `json:"checksum"`
	Tokenizer TokenizerInfo     `json:"tokenizer"`
	Options   Options           `json:"options"`
	Inputs    []InputSet        `json:"inputs"`
	Sources   []Source          `json:"sources"`
	Splits    map[string]*Split `json:"splits"`
	// Part: a partial set (shard --part): its files hold the documents of
	// Sources [First, First+Count) only; absent in a whole set.
	Part   *PartInfo `json:"part,omitempty"`
	Timing *Timing   `json:"timing,omitempty"`
}

// TokenizerInfo records the tokenizer and the separators used.
type TokenizerInfo struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	VocabSize   int    `json:"vocab_size"`
	TokenBits   int    `json:"token_bits"` // 16 or 32
	BOS         int64  `json:"bos"`        // id added before each document; -1: none
	EOS         int64  `json:"eos"`        // id added after each document; -1: none
}

// InputSet is one document shard directory (from estkit ingest).
type InputSet struct {
	Dir         string `json:"dir"`
	ManifestKey string `json:"manifest_key"` // the document set's own key
	ManifestSHA string `json:"manifest_sha256"`
	Documents   int64  `json:"documents"`
}

// Source is one document shard file; token shard rows point at it.
type Source struct {
	Set    int    `json:"set"` // index into Inputs
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Rows   int64  `json:"rows"`
}

// Split is one split's files and totals.
type Split struct {
	Files     []File            `json:"files"`
	Documents int64             `json:"documents"`
	Tokens    int64             `json:"tokens"`
	Corpora   map[string]*Tally `json:"corpora"`
}

// Tally counts documents and tokens.
type Tally struct {
	Documents int64 `json:"documents"`
	Tokens    int64 `json:"tokens"`
}

// File is one token shard file.
type File struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Documents int64  `json:"documents"`
	Tokens    int64  `json:"tokens"`
}

// Timing differs between identical runs and is not part of the key.
type Timing struct {
	Started     string  `json:"started"`
	Seconds     float64 `json:"seconds"`
	TextMBps    float64 `json:"text_mb_per_s"`
	TokensPerS  float64 `json:"tokens_per_s"`
	Workers     int     `json:"workers"`
	TextBytes   int64   `json:"text_bytes"`
	ReusedFiles int     `json:"reused_files,omitempty"`
}

// manifestKey hashes what determines the output.
func manifestKey(tok TokenizerInfo, o *Options, inputs []InputSet, sources []Source) string {
	type keyed struct {
		Schema    string        `json:"schema"`
		Version   int           `json:"version"`
		Shard     string        `json:"shard_version"`
		Writer    int           `json:"writer_version"`
		Tokenizer TokenizerInfo `json:"tokenizer"`
		Options   keyOptions    `json:"options"`
		Inputs    []string      `json:"inputs"`
		Sources   []Source      `json:"sources"`
	}
	k := keyed{ManifestSchema, ManifestVersion, SchemaVersion, writerVersion, tok, o.keyed(), nil, sources}
	for _, in := range inputs {
		k.Inputs = append(k.Inputs, in.ManifestKey) // not the directory: moving it keeps the key
	}
	b, err := json.Marshal(k)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ReadManifest reads and checks DIR/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	d, err := store.Open(context.Background(), dir)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	return ReadManifestFrom(d)
}

// ReadManifestFrom reads and checks the manifest.json of a set in a
// store.Dir (a local directory or an object storage prefix).
func ReadManifestFrom(dir store.Dir) (*Manifest, error) {
	p := dir.Join(ManifestName)
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return nil, fmt.Errorf("shards: %w", err)
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", p, err)
	}
	return m, nil
}

func parseManifest(b []byte) (*Manifest, error) {
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if head.Schema != ManifestSchema {
		return nil, fmt.Errorf("%w: schema %q is not %q (not a token shard set)", ErrVersion, head.Schema, ManifestSchema)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if m.Schema != ManifestSchema {
		return nil, fmt.Errorf("%w: schema %q is not %q (not a token shard set)", ErrVersion, m.Schema, ManifestSchema)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("%w: version %d (this estkit reads %d)", ErrVersion, m.Version, ManifestVersion)
	}
	if k, err := hex.DecodeString(m.Key); err != nil || len(k) != sha256.Size {
		return nil, fmt.Errorf("%w: key %q is not a hex sha256", ErrCorrupt, m.Key)
	}
	if m.Tokenizer.TokenBits != 16 && m.Tokenizer.TokenBits != 32 {
		return nil, fmt.Errorf("%w: token_bits %d", ErrCorrupt, m.Tokenizer.TokenBits)
	}
	for name, s := range m.Splits {
		if name != Train && name != Val || s == nil {
			return nil, fmt.Errorf("%w: split %q", ErrCorrupt, name)
		}
		var docs, toks int64
		for _, f := range s.Files {
			if f.Name == "" || filepath.Base(f.Name) != f.Name || f.Size < 0 || f.Documents < 0 || f.Tokens < 0 {
				return nil, fmt.Errorf("%w: split %s: file entry %+v", ErrCorrupt, name, f)
			}
			docs += f.Documents
			toks += f.Tokens
		}
		if docs != s.Documents || toks != s.Tokens {
			return nil, fmt.Errorf("%w: split %s: files hold %d documents and %d tokens, the totals say %d and %d", ErrCorrupt, name, docs, toks, s.Documents, s.Tokens)
		}
	}
	for i, src := range m.Sources {
		if src.Set < 0 || src.Set >= len(m.Inputs) {
			return nil, fmt.Errorf("%w: source %d names input set %d of %d", ErrCorrupt, i, src.Set, len(m.Inputs))
		}
	}
	if err := setdir.CheckSeal(b, m.Checksum); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	k := manifestKey(m.Tokenizer, &m.Options, m.Inputs, m.Sources)
	if m.Part != nil {
		if m.Part.First < 0 || m.Part.Count < 0 || m.Part.First+m.Part.Count > len(m.Sources) || m.Part.Of < 1 || m.Part.Index < 0 || m.Part.Index >= m.Part.Of {
			return nil, fmt.Errorf("%w: part %+v of %d sources", ErrCorrupt, *m.Part, len(m.Sources))
		}
		k = partKey(k, m.Part)
	}
	if k != m.Key {
		return nil, fmt.Errorf("%w: its key does not match its tokenizer, options and inputs", ErrCorrupt)
	}
	return &m, nil
}

// entries lists the set's files, train then val, for setdir's checks.
func (m *Manifest) entries() []setdir.Entry {
	var out []setdir.Entry
	for _, name := range []string{Train, Val} {
		if s := m.Splits[name]; s != nil {
			for _, f := range s.Files {
				out = append(out, setdir.Entry{Name: f.Name, Size: f.Size, SHA256: f.SHA256})
			}
		}
	}
	return out
}

// fileNames is the set of file names m names.
func (m *Manifest) fileNames() map[string]bool {
	keep := map[string]bool{}
	for _, e := range m.entries() {
		keep[e.Name] = true
	}
	return keep
}

// namedFiles lists the files the manifest in dir names, read leniently (a
// manifest of an older version or a damaged one still tells which files a
// run of ours committed), for deletion of a superseded set's files.
func namedFiles(dir store.Dir) []string {
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return nil
	}
	var m struct {
		Schema string `json:"schema"`
		Splits map[string]*struct {
			Files []struct {
				Name string `json:"name"`
			} `json:"files"`
		} `json:"splits"`
	}
	if json.Unmarshal(b, &m) != nil || m.Schema != ManifestSchema {
		return nil
	}
	var out []string
	for _, s := range m.Splits {
		if s != nil {
			for _, f := range s.Files {
				out = append(out, f.Name)
			}
		}
	}
	return out
}
