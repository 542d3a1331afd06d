package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// Manifest identity.
const (
	ManifestName   = "manifest.json"
	ManifestSchema = "estkit.docshards"
	// ManifestVersion 2 added checksum.
	ManifestVersion = 2
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
	Schema        string `json:"schema"`
	Version       int    `json:"version"`
	EstkitVersion string `json:"estkit_version"`
	Key           string `json:"key"` // sha256 over schema version, options and inputs
	// Checksum is the sha256 of the manifest file's bytes with these 64
	// hex digits read as "0" (setdir.Seal): an edit of any value (an input's path, a count) is caught on
	// read.
	Checksum   string             `json:"checksum"`
	Options    Options            `json:"options"`
	Inputs     []InputEntry       `json:"inputs"`
	Ignored    []Ignored          `json:"ignored,omitempty"`
	Outputs    []OutputFile       `json:"outputs"`
	Counts     Counts             `json:"counts"`
	Corpora    map[string]*Counts `json:"corpora"`
	Rejections []RejectionEntry   `json:"rejections,omitempty"`
	// Part: a partial set (ingest --part), its Inputs the part's share;
	// absent in a whole set.
	Part   *PartInfo `json:"part,omitempty"`
	Timing *Timing   `json:"timing,omitempty"`
}

// PartInfo places a partial set among the parts of one run: it holds
// inputs [First, First+len(Inputs)) of the run's Total.
type PartInfo struct {
	setdir.Part
	First int `json:"first"`
	Total int `json:"total"`
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
	// Revision is the hub cache snapshot's commit (see Input.Revision).
	Revision string `json:"revision,omitempty"`
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

// ReadManifest reads and checks DIR/manifest.json; DIR may be an s3://
// URL.
func ReadManifest(dir string) (*Manifest, error) {
	d, err := store.Open(context.Background(), dir)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return ReadManifestFrom(d)
}

// ReadManifestFrom reads and checks the manifest.json of a set in a
// store.Dir (a local directory or an object storage prefix).
func ReadManifestFrom(dir store.Dir) (*Manifest, error) {
	p := dir.Join(ManifestName)
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	var head struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("ingest: %s: %w: %v", p, ErrCorrupt, err)
	}
	if head.Schema != ManifestSchema { // a token set's, say: named, not "unknown field"
		return nil, fmt.Errorf("ingest: %s: %w: schema %q is not %q", p, ErrVersion, head.Schema, ManifestSchema)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("ingest: %s: %w: %v", p, ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("ingest: %s: %w: data after the manifest's JSON object", p, ErrCorrupt)
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
	if err := setdir.CheckSeal(b, m.Checksum); err != nil {
		return nil, fmt.Errorf("ingest: %s: %w: %v", p, ErrCorrupt, err)
	}
	k := manifestKey(&m.Options, m.Inputs)
	if m.Part != nil {
		k = partKey(k, m.Part)
	}
	if k != m.Key {
		return nil, fmt.Errorf("ingest: %s: %w: its key does not match its inputs and options", p, ErrCorrupt)
	}
	for _, f := range m.Outputs {
		if f.Name == "" || filepath.Base(f.Name) != f.Name || f.Size < 0 || f.Rows < 0 {
			return nil, fmt.Errorf("ingest: %s: %w: output entry %+v", p, ErrCorrupt, f)
		}
	}
	return &m, nil
}

// ErrNotOwned: an output directory that holds something other than a
// document set estkit made (setdir.ErrNotOwned).
var ErrNotOwned = setdir.ErrNotOwned

// namedOutputs lists the outputs the manifest in dir names, read leniently
// (a manifest of an older version or a damaged one still tells which files
// a run of ours committed), for deletion of a superseded set's files.
func namedOutputs(dir store.Dir) []string {
	b, err := dir.ReadFile(ManifestName)
	if err != nil {
		return nil
	}
	var m struct {
		Schema  string `json:"schema"`
		Outputs []struct {
			Name string `json:"name"`
		} `json:"outputs"`
	}
	if json.Unmarshal(b, &m) != nil || m.Schema != ManifestSchema {
		return nil
	}
	var out []string
	for _, f := range m.Outputs {
		out = append(out, f.Name)
	}
	return out
}

// entries lists the outputs for setdir's checks.
func (m *Manifest) entries() []setdir.Entry {
	out := make([]setdir.Entry, len(m.Outputs))
	for i, f := range m.Outputs {
		out[i] = setdir.Entry{Name: f.Name, Size: f.Size, SHA256: f.SHA256}
	}
	return out
}

// Fetch copies the document set at an s3:// URL into its local cache
// directory (setdir.Mirror: each file checked against its sha256 as it
// downloads, the manifest last) and returns that directory.
func Fetch(ctx context.Context, url string) (string, error) {
	d, err := store.OpenS3(ctx, url)
	if err != nil {
		return "", fmt.Errorf("ingest: %w", err)
	}
	raw, err := d.ReadFile(ManifestName)
	if err != nil {
		return "", fmt.Errorf("ingest: %w", err)
	}
	m, err := ReadManifestFrom(d)
	if err != nil {
		return "", err
	}
	local := store.CacheDir(d)
	if err := setdir.Mirror(d, local, raw, m.entries(), ErrCorrupt); err != nil {
		return "", fmt.Errorf("ingest: %w", err)
	}
	return local, nil
}
