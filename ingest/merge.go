package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// ErrParts: the sets given to Merge are not all the parts of one run.
var ErrParts = errors.New("not the parts of one run")

// partKey is a partial set's key: the key of its share of the inputs, and
// its place among the parts.
func partKey(key string, p *PartInfo) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s part %d/%d first %d total %d", key, p.Index, p.Of, p.First, p.Total))
	return hex.EncodeToString(h[:])
}

// Merge joins the partial sets of one ingest run split with --part (all N
// of them, in any order; directories or s3:// URLs) into o.OutDir: the
// set a single run over all the inputs with the same options gives, byte
// for byte but for the manifest's Timing. The documents are read back in
// part order (the parts' inputs are contiguous runs of the inputs in their
// order) and written again through the same shard writer, so that record
// batches and shard files fall where a single run puts them, under the
// whole run's key; counts and rejections add up; with --dedup, a document
// another part already kept is dropped as a duplicate, as a single run
// would drop it. Of o, only OutDir, Version, Force and Logger are used:
// everything else comes from the parts, which must agree.
func Merge(ctx context.Context, parts []string, o Options) (*Result, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge: no parts")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	type part struct {
		loc string
		dir string // local copy
		m   *Manifest
	}
	ps := make([]part, len(parts))
	for i, loc := range parts {
		dir := loc
		if store.IsURL(loc) {
			local, err := Fetch(ctx, loc)
			if err != nil {
				return nil, fmt.Errorf("merge: %w", err)
			}
			dir = local
		}
		m, err := ReadManifest(dir)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if err := setdir.VerifyFiles(store.Local(dir), m.entries(), ErrCorrupt); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		ps[i] = part{loc, dir, m}
	}
	of := func(m *Manifest) *setdir.Part {
		if m.Part == nil {
			return nil
		}
		return &m.Part.Part
	}
	slices.SortFunc(ps, func(a, b part) int { return setdir.PartIndex(of(a.m)) - setdir.PartIndex(of(b.m)) })
	locs, sp := make([]string, len(ps)), make([]*setdir.Part, len(ps))
	for i, p := range ps {
		locs[i], sp[i] = p.loc, of(p.m)
	}
	if gap := setdir.PartsGap(locs, sp); gap != "" {
		return nil, fmt.Errorf("merge: %w: %s", ErrParts, gap)
	}
	first := ps[0].m
	next := 0
	for k, p := range ps {
		m := p.m
		switch {
		case m.Part == nil:
			return nil, fmt.Errorf("merge: %s: %w: a whole set, not a part (made without --part)", p.loc, ErrParts)
		case m.Part.Of != len(ps):
			return nil, fmt.Errorf("merge: %s: %w: part %s, and %d parts were given", p.loc, ErrParts, m.Part, len(ps))
		case m.Part.Index != k:
			return nil, fmt.Errorf("merge: %s: %w: part %d is missing (or given twice)", p.loc, ErrParts, k)
		case m.Part.First != next || m.Part.Total != first.Part.Total:
			return nil, fmt.Errorf("merge: %s: %w: it holds inputs %d..%d of %d, the parts before end at %d of %d (the inputs differ)",
				p.loc, ErrParts, m.Part.First, m.Part.First+len(m.Inputs), m.Part.Total, next, first.Part.Total)
		case !reflect.DeepEqual(m.Options, first.Options) || !reflect.DeepEqual(m.Ignored, first.Ignored):
			return nil, fmt.Errorf("merge: %s: %w: its options or ignored inputs differ from %s's", p.loc, ErrParts, ps[0].loc)
		}
		next += len(m.Inputs)
	}
	if next != first.Part.Total {
		return nil, fmt.Errorf("merge: %w: the parts hold %d of the run's %d inputs", ErrParts, next, first.Part.Total)
	}
	opts := first.Options
	var entries []InputEntry
	for _, p := range ps {
		entries = append(entries, p.m.Inputs...)
	}
	if entries == nil {
		entries = []InputEntry{}
	}
	key := manifestKey(&opts, entries)

	dir, err := store.Open(ctx, o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("merge: --out %w", err)
	}
	sw, err := setdir.Begin(dir, ManifestSchema, "merge", setdir.Part{})
	if err != nil {
		return nil, err
	}
	defer sw.Close()
	start := time.Now()
	named := namedOutputs(dir)
	old, err := ReadManifestFrom(dir)
	if err != nil {
		old = nil
	}
	if !o.Force && old != nil && old.Key == key {
		if err := sw.Reuse(old.entries(), ErrCorrupt, named); err == nil {
			log.Info("output is up to date: same parts, every shard checked; nothing to do", "dir", o.OutDir, "key", key[:12])
			return &Result{Manifest: old, UpToDate: true}, nil
		}
	}
	prefix := "docs-" + key[:12]
	if err := sw.Start([]string{prefix + "-"}, false, key); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	m := &Manifest{Schema: ManifestSchema, Version: ManifestVersion, EstkitVersion: o.Version, Key: key,
		Options: opts, Inputs: entries, Ignored: first.Ignored, Counts: *newCounts(), Corpora: map[string]*Counts{}}
	for _, p := range ps {
		addCounts(&m.Counts, &p.m.Counts)
		for name, c := range p.m.Corpora {
			if m.Corpora[name] == nil {
				m.Corpora[name] = newCounts()
			}
			addCounts(m.Corpora[name], c)
		}
		for _, r := range p.m.Rejections {
			if len(m.Rejections) < maxRecordedRejections {
				m.Rejections = append(m.Rejections, r)
			}
		}
	}
	w := newShardWriter(sw.Files(), prefix, opts.ShardBytes, opts.Compression)
	var seen map[[16]byte]struct{}
	if opts.Dedup {
		seen = map[[16]byte]struct{}{}
	}
	copyDocs := func() error {
		for _, p := range ps {
			for _, f := range p.m.Outputs {
				err := ScanShard(filepath.Join(p.dir, f.Name), func(rec arrow.RecordBatch) (bool, error) {
					for i := range int(rec.NumRows()) {
						d := DocumentAt(rec, i)
						if seen != nil {
							k := [16]byte(d.Lineage.SHA256[:16])
							if _, dup := seen[k]; dup {
								// kept by an earlier part: a single run drops it
								for _, c := range []*Counts{&m.Counts, m.Corpora[d.Lineage.Corpus]} {
									c.Documents--
									c.TextBytes -= d.Lineage.Bytes
									c.Filtered[FilterDuplicate]++
								}
								continue
							}
							seen[k] = struct{}{}
						}
						if err := w.add(&d); err != nil {
							return false, err
						}
					}
					return ctx.Err() == nil, ctx.Err()
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := copyDocs(); err != nil {
		if werr := w.abort(); errors.Is(err, errWriteFailed) && werr != nil {
			err = werr
		}
		unwind(sw, w.outputs, old)
		return nil, fmt.Errorf("merge: %w", err)
	}
	outputs, err := w.finish()
	if err != nil {
		unwind(sw, outputs, old)
		return nil, fmt.Errorf("merge: %w", err)
	}
	m.Outputs = outputs
	if m.Outputs == nil {
		m.Outputs = []OutputFile{}
	}
	secs := time.Since(start).Seconds()
	m.Timing = &Timing{Started: start.UTC().Format(time.RFC3339), IngestSeconds: secs, TextMBps: float64(m.Counts.TextBytes) / 1e6 / secs, Workers: 1}
	b, err := encodeManifest(m)
	if err == nil {
		err = sw.Commit(b, outputNames(m), named)
	}
	if err != nil {
		unwind(sw, outputs, old)
		return nil, fmt.Errorf("merge: %w", err)
	}
	log.Info("merged", "parts", len(ps), "documents", m.Counts.Documents, "shards", len(m.Outputs))
	return &Result{Manifest: m}, nil
}

// addCounts adds c to sum.
func addCounts(sum, c *Counts) {
	sum.Read += c.Read
	sum.Documents += c.Documents
	sum.TextBytes += c.TextBytes
	sum.UTF8Repaired += c.UTF8Repaired
	for k, n := range c.Filtered {
		sum.Filtered[k] += n
	}
	for k, n := range c.Rejected {
		sum.Rejected[k] += n
	}
}
