package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Manifest identity.
const (
	ManifestName    = "manifest.json"
	ManifestSchema  = "estkit.docshards"
	ManifestVersion = 1
	// readerVersion is hashed into every key: bump it whenever a change to
	// the readers or the writer changes the output for the same inputs, so
	// that older output is rebuilt rather than reused.
	readerVersion = 2
	// maxRecordedRejections bounds the rejections listed one by one; the
	// counts always cover all of them.
	maxRecordedRejections = 1000
)

// Manifest describes one directory of document shards. Everything but
// Timing is a pure function of the inputs and the options.
type Manifest struct {
	Schema        string             `json:"schema"`
	Version       int                `json:"version"`
	EstkitVersion string             `json:"estkit_version"`
	Key           string             `json:"key"` // sha256 over schema version, options and inputs
	Options       Options            `json:"options"`
	Inputs        []InputEntry       `json:"inputs"`
	Ignored       []Ignored          `json:"ignored,omitempty"`
	Outputs       []OutputFile       `json:"outputs"`
	Counts        Counts             `json:"counts"`
	Corpora       map[string]*Counts `json:"corpora"`
	Rejections    []RejectionEntry   `json:"rejections,omitempty"`
	Timing        *Timing            `json:"timing,omitempty"`
}

// InputEntry is one input file as the manifest records it.
type InputEntry struct {
	Root   int    `json:"root"` // index of the INPUT argument
	Path   string `json:"path"` // relative to that root
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Format Format `json:"format"`
	Corpus string `json:"corpus"`
	Lang   string `json:"lang,omitempty"`
}

// Counts tally what happened to every item read: Read = Documents +
// sum(Filtered) + sum(Rejected).
type Counts struct {
	Read         int64            `json:"read"`
	Documents    int64            `json:"documents"` // kept
	TextBytes    int64            `json:"text_bytes"`
	Filtered     map[string]int64 `json:"filtered"`
	Rejected     map[string]int64 `json:"rejected"`
	UTF8Repaired int64            `json:"utf8_repaired"`
}

func newCounts() *Counts {
	return &Counts{Filtered: map[string]int64{}, Rejected: map[string]int64{}}
}

// RejectionEntry is one rejected item.
type RejectionEntry struct {
	File     string `json:"file"`
	Position string `json:"position,omitempty"`
	Reason   string `json:"reason"`
	Error    string `json:"error"`
}

// Timing is the part of the manifest that differs between identical runs.
type Timing struct {
	Started       string  `json:"started"`
	HashSeconds   float64 `json:"hash_seconds"`
	IngestSeconds float64 `json:"ingest_seconds"`
	InputMBps     float64 `json:"input_mb_per_s"`
	TextMBps      float64 `json:"text_mb_per_s"`
	Workers       int     `json:"workers"`
}

// manifestKey hashes what determines the output.
func manifestKey(o *Options, inputs []InputEntry) string {
	b, err := json.Marshal(struct {
		Schema  string       `json:"schema"`
		Version int          `json:"version"`
		Shard   string       `json:"shard_version"`
		Reader  int          `json:"reader_version"`
		Options *Options     `json:"options"`
		Inputs  []InputEntry `json:"inputs"`
	}{ManifestSchema, ManifestVersion, SchemaVersion, readerVersion, o, inputs})
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// ReadManifest reads and checks DIR/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	p := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("ingest: %s: %w: %v", p, ErrCorrupt, err)
	}
	if m.Schema != ManifestSchema {
		return nil, fmt.Errorf("ingest: %s: %w: schema %q is not %q", p, ErrVersion, m.Schema, ManifestSchema)
	}
	if m.Version != ManifestVersion {
		return nil, fmt.Errorf("ingest: %s: %w: version %d (this estkit reads %d)", p, ErrVersion, m.Version, ManifestVersion)
	}
	if k, err := hex.DecodeString(m.Key); err != nil || len(k) != sha256.Size {
		return nil, fmt.Errorf("ingest: %s: %w: key %q is not a hex sha256", p, ErrCorrupt, m.Key)
	}
	return &m, nil
}

// outputsPresent tells whether every output the manifest names exists with
// its recorded size.
func (m *Manifest) outputsPresent(dir string) bool {
	for _, f := range m.Outputs {
		st, err := os.Stat(filepath.Join(dir, f.Name))
		if err != nil || st.Size() != f.Size {
			return false
		}
	}
	return true
}
