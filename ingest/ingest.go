package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// Result is the outcome of Run.
type Result struct {
	Manifest *Manifest
	UpToDate bool // the directory already held this exact output; nothing was done
}

// Run ingests the inputs under roots into o.OutDir.
func Run(ctx context.Context, roots []string, o Options) (*Result, error) {
	if err := o.resolve(); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, errors.New("ingest: no inputs")
	}
	log := o.Logger
	if !utf8.ValidString(o.OutDir) {
		// the manifest and every document's lineage name it as UTF-8
		return nil, fmt.Errorf("ingest: %w: --out name %q is not valid UTF-8; rename it", ErrInvalidUTF8, o.OutDir)
	}
	start := time.Now()
	// The inputs are listed before --out is made, so that a wrong input
	// (missing, given twice, of no file of --format) leaves no new
	// directory behind.
	rem := &remoteInputs{}
	defer rem.remove()
	inputs, ignored, err := expandInputs(ctx, roots, &o, rem)
	if err != nil {
		return nil, err
	}
	// Ownership first, before anything is created in the directory: a
	// refused directory is left exactly as it was.
	dir, err := store.Open(ctx, o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("ingest: --out %w", err)
	}
	sw, err := setdir.Begin(dir, ManifestSchema, "ingest", o.Part)
	if err != nil {
		return nil, err
	}
	defer sw.Close()

	for _, ig := range ignored {
		log.Info("ignoring input file", "path", ig.Path, "reason", ig.Reason)
	}
	var part *PartInfo
	if o.Part.Of > 0 {
		// this machine's share: every part lists and sizes all inputs
		// (cheap), and hashes and reads only its own
		sizes := make([]int64, len(inputs))
		for i, in := range inputs {
			sizes[i] = in.Size
		}
		lo, hi := o.Part.Range(sizes)
		part = &PartInfo{Part: o.Part, First: lo, Total: len(inputs)}
		inputs = inputs[lo:hi]
		log.Info("ingesting one part of the inputs", "part", o.Part.String(), "inputs", hi-lo, "first", lo, "of", part.Total)
	}
	var total int64
	for _, in := range inputs {
		total += in.Size
	}
	log.Info("hashing inputs", "files", len(inputs), "bytes", total)
	var hashed atomic.Int64
	var progressMu sync.Mutex // hashing reports from several goroutines
	report := func(phase string, n int64, m *Counts) {
		if o.Progress != nil {
			progressMu.Lock()
			defer progressMu.Unlock()
			p := Progress{Phase: phase, Bytes: n, TotalBytes: total}
			if m != nil {
				p.Documents, p.Kept, p.TextBytes = m.Read, m.Documents, m.TextBytes
			}
			o.Progress(p)
		}
	}
	if err := hashInputs(ctx, inputs, o.Workers, func(n int64) { report("hash", hashed.Add(n), nil) }); err != nil {
		return nil, err
	}
	hashDone := time.Now()
	entries := make([]InputEntry, len(inputs))
	for i, in := range inputs {
		entries[i] = InputEntry{Root: slices.Index(roots, in.Root), Path: in.Rel, Size: in.Size, SHA256: in.SHA256, Format: in.Format, Corpus: in.Corpus}
		if in.Format == FormatStarCoder {
			entries[i].Lang = in.Lang
		}
		entries[i].Revision = in.Revision
	}
	key := manifestKey(&o, entries)
	if part != nil {
		key = partKey(key, part)
	}
	named := namedOutputs(dir)
	old, err := ReadManifestFrom(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("the manifest in the output directory is unreadable; rebuilding", "err", err)
	}
	if err != nil {
		old = nil
	}
	if !o.Force && old != nil && old.Key == key {
		// Re-checked, not trusted: a shard damaged since it was written is
		// rebuilt, not reported up to date. What a killed run of other
		// options left behind goes, so that a reader globbing docs-*.arrow
		// sees only this output.
		if err := sw.Reuse(old.entries(), ErrCorrupt, named); err != nil {
			log.Warn("the output has the same key but a damaged or missing shard; rebuilding", "err", err)
		} else {
			log.Info("output is up to date: same inputs and options, every shard checked; nothing to do", "dir", o.OutDir, "key", key[:12])
			return &Result{Manifest: old, UpToDate: true}, nil
		}
	}
	prefix := "docs-" + key[:12]
	if err := sw.Start([]string{prefix + "-"}, false, key); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}

	m := &Manifest{Schema: ManifestSchema, Version: ManifestVersion, EstkitVersion: o.Version, Key: key,
		Options: o, Inputs: entries, Ignored: ignored, Counts: *newCounts(), Corpora: map[string]*Counts{}, Part: part}
	w := newShardWriter(sw.Files(), prefix, o.ShardBytes, o.Compression)
	var seen map[[16]byte]struct{}
	if o.Dedup {
		seen = map[[16]byte]struct{}{}
	}
	var read atomic.Int64
	lastReport := time.Now()
	sink := func(in *Input, res *result) error {
		c := m.Corpora[in.Corpus]
		if c == nil {
			c = newCounts()
			m.Corpora[in.Corpus] = c
		}
		for _, e := range res.rejects {
			if e.File == "" {
				e.File = in.Rel
			}
			if o.OnError == OnErrorFail {
				return fmt.Errorf("ingest: %w (--on-error skip counts such inputs as rejected and goes on)", e)
			}
			reason := reasonOf(e.Err)
			m.Counts.Rejected[reason]++
			c.Rejected[reason]++
			if len(m.Rejections) < maxRecordedRejections {
				m.Rejections = append(m.Rejections, RejectionEntry{File: e.File, Position: e.Position, Reason: reason, Error: e.Error()})
				log.Warn("rejected", "file", e.File, "position", e.Position, "reason", reason, "err", e.Err)
			}
		}
		for reason, n := range res.filtered {
			m.Counts.Filtered[reason] += n
			c.Filtered[reason] += n
		}
		m.Counts.Read += res.read
		c.Read += res.read
		m.Counts.UTF8Repaired += res.repaired
		c.UTF8Repaired += res.repaired
		for i := range res.docs {
			d := &res.docs[i]
			if seen != nil {
				k := [16]byte(d.Lineage.SHA256[:16])
				if _, dup := seen[k]; dup {
					m.Counts.Filtered[FilterDuplicate]++
					c.Filtered[FilterDuplicate]++
					continue
				}
				seen[k] = struct{}{}
			}
			if err := w.add(d); err != nil {
				return err
			}
			m.Counts.Documents++
			m.Counts.TextBytes += d.Lineage.Bytes
			c.Documents++
			c.TextBytes += d.Lineage.Bytes
		}
		if time.Since(lastReport) > 100*time.Millisecond {
			lastReport = time.Now()
			report("ingest", read.Load(), &m.Counts)
		}
		return nil
	}
	log.Info("ingesting", "files", len(inputs), "workers", o.Workers, "out", o.OutDir)
	if err := runPipeline(ctx, inputs, &o, &read, sink); err != nil {
		if werr := w.abort(); errors.Is(err, errWriteFailed) && werr != nil {
			err = werr
		}
		unwind(sw, w.outputs, old)
		return nil, err
	}
	outputs, err := w.finish()
	if err != nil {
		unwind(sw, outputs, old)
		return nil, err
	}
	if n := sw.Reused(); n > 0 {
		log.Info("reused shards a killed run had committed (same size and sha256)", "files", n)
	}
	report("ingest", total, &m.Counts) // all read: parquet footers are not counted as they go
	m.Outputs = outputs
	if m.Outputs == nil {
		m.Outputs = []OutputFile{}
	}
	end := time.Now()
	secs := end.Sub(hashDone).Seconds()
	m.Timing = &Timing{Started: start.UTC().Format(time.RFC3339), HashSeconds: hashDone.Sub(start).Seconds(), IngestSeconds: secs,
		InputMBps: float64(total) / 1e6 / secs, TextMBps: float64(m.Counts.TextBytes) / 1e6 / secs, Workers: o.Workers}
	b, err := encodeManifest(m)
	if err == nil {
		err = sw.Commit(b, outputNames(m), named)
	}
	if err != nil {
		// a full disk: the shards of this run go with it, the older set
		// stays as it was
		unwind(sw, outputs, old)
		return nil, fmt.Errorf("ingest: %w", err)
	}
	log.Info("ingested", "documents", m.Counts.Documents, "text_bytes", m.Counts.TextBytes, "shards", len(m.Outputs),
		"filtered", sum(m.Counts.Filtered), "rejected", sum(m.Counts.Rejected), "seconds", fmt.Sprintf("%.1f", secs))
	return &Result{Manifest: m}, nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// encodeManifest sets m's checksum and returns its bytes.
func encodeManifest(m *Manifest) ([]byte, error) {
	m.Checksum = setdir.Unsealed
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		b = append(b, '\n')
		m.Checksum, err = setdir.Seal(b)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return b, nil
}

// unwind deletes the shards a failed run committed, unless the manifest
// still in the directory (committed) names them.
func unwind(sw *setdir.Writer, outs []OutputFile, committed *Manifest) {
	names := make([]string, len(outs))
	for i, f := range outs {
		names[i] = f.Name
	}
	keep := map[string]bool{}
	if committed != nil {
		keep = outputNames(committed)
	}
	sw.Abort(names, keep)
}

// outputNames is the set of shard names m names.
func outputNames(m *Manifest) map[string]bool {
	keep := map[string]bool{}
	for _, f := range m.Outputs {
		keep[f.Name] = true
	}
	return keep
}
