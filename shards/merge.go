package shards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
)

// ErrParts: the sets given to Merge are not all the parts of one run.
var ErrParts = errors.New("not the parts of one run")

// PartInfo places a partial set among the parts of one run: its files
// hold the documents of Sources [First, First+Count).
type PartInfo struct {
	setdir.Part
	First int `json:"first"`
	Count int `json:"count"`
}

// partKey is a partial set's key: the whole run's key and its place
// among the parts.
func partKey(key string, p *PartInfo) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s part %d/%d first %d count %d", key, p.Index, p.Of, p.First, p.Count))
	return hex.EncodeToString(h[:])
}

// MergeOptions control Merge.
type MergeOptions struct {
	OutDir  string // where the set goes (a directory or an s3:// URL)
	Version string // estkit's version, recorded in the manifest
	Logger  *slog.Logger
}

// Merge joins the partial token sets of one shard run split with --part
// (all N of them, in any order; directories or s3:// URLs) into
// o.OutDir: the set a single run with the same inputs and options gives,
// byte for byte but for the manifest's Timing. The parts' sources are
// contiguous runs of the run's document files, and their rows carry the
// whole run's source ids, so each split's documents are copied in part
// order through the same split writer: files and record batches fall
// where a single run puts them; the corpora tallies add up.
func Merge(ctx context.Context, parts []string, o MergeOptions) (*Result, error) {
	if len(parts) == 0 {
		return nil, errors.New("merge: no parts")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	type part struct {
		loc string
		set *Set
	}
	ps := make([]part, 0, len(parts))
	defer func() {
		for _, p := range ps {
			p.set.Close()
		}
	}()
	for _, loc := range parts {
		s, err := OpenWith(loc, OpenOptions{Logger: log})
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		ps = append(ps, part{loc, s})
	}
	of := func(p part) *setdir.Part {
		if p.set.Manifest.Part == nil {
			return nil
		}
		return &p.set.Manifest.Part.Part
	}
	slices.SortFunc(ps, func(a, b part) int { return setdir.PartIndex(of(a)) - setdir.PartIndex(of(b)) })
	locs, sp := make([]string, len(ps)), make([]*setdir.Part, len(ps))
	for i, p := range ps {
		locs[i], sp[i] = p.loc, of(p)
	}
	if gap := setdir.PartsGap(locs, sp); gap != "" {
		return nil, fmt.Errorf("merge: %w: %s", ErrParts, gap)
	}
	first := ps[0].set.Manifest
	next := 0
	for k, p := range ps {
		m := p.set.Manifest
		switch {
		case m.Part == nil:
			return nil, fmt.Errorf("merge: %s: %w: a whole set, not a part (made without --part)", p.loc, ErrParts)
		case m.Part.Of != len(ps):
			return nil, fmt.Errorf("merge: %s: %w: part %s, and %d parts were given", p.loc, ErrParts, m.Part, len(ps))
		case m.Part.Index != k:
			return nil, fmt.Errorf("merge: %s: %w: part %d is missing (or given twice)", p.loc, ErrParts, k)
		case m.Part.First != next:
			return nil, fmt.Errorf("merge: %s: %w: it holds sources %d..%d, the parts before end at %d", p.loc, ErrParts, m.Part.First, m.Part.First+m.Part.Count, next)
		case !reflect.DeepEqual(m.Options, first.Options) || m.Tokenizer != first.Tokenizer ||
			!reflect.DeepEqual(m.Inputs, first.Inputs) || !reflect.DeepEqual(m.Sources, first.Sources):
			return nil, fmt.Errorf("merge: %s: %w: its tokenizer, options or inputs differ from %s's", p.loc, ErrParts, ps[0].loc)
		}
		next += m.Part.Count
	}
	if next != len(first.Sources) {
		return nil, fmt.Errorf("merge: %w: the parts hold %d of the run's %d document files", ErrParts, next, len(first.Sources))
	}
	opts := first.Options
	key := manifestKey(first.Tokenizer, &opts, first.Inputs, first.Sources)

	out, err := store.Open(ctx, o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("merge: --out %w", err)
	}
	sw, err := setdir.Begin(out, ManifestSchema, "merge", setdir.Part{})
	if err != nil {
		return nil, err
	}
	defer sw.Close()
	named := namedFiles(out)
	if m, err := ReadManifestFrom(out); err == nil && m.Key == key {
		if err := sw.Reuse(m.entries(), ErrCorrupt, named); err == nil {
			return &Result{Dir: o.OutDir, Manifest: m, Reused: true}, nil
		}
	}
	// named by the key as Build names them (the set already here stays
	// whole until the new manifest replaces it)
	prefix := filePrefix(key)
	sameKey := false
	if m, err := ReadManifestFrom(out); err == nil {
		sameKey = m.Key == key
	}
	if err := sw.Start([]string{Train + "-" + prefix, Val + "-" + prefix}, sameKey, key); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	start := time.Now()
	opts.Version = o.Version
	b := &builder{o: &opts, info: first.Tokenizer, dir: sw.Files(), prefix: prefix, writers: map[string]*splitWriter{}}
	m := &Manifest{Schema: ManifestSchema, Version: ManifestVersion, EstkitVersion: o.Version, Key: key,
		Tokenizer: first.Tokenizer, Options: first.Options, Inputs: first.Inputs, Sources: first.Sources, Splits: map[string]*Split{}}
	copyDocs := func() error {
		for _, split := range []string{Train, Val} {
			corpora := map[string]*Tally{}
			for _, p := range ps {
				sp := p.set.Manifest.Splits[split]
				if sp == nil {
					continue
				}
				for name, t := range sp.Corpora {
					if corpora[name] == nil {
						corpora[name] = &Tally{}
					}
					corpora[name].Documents += t.Documents
					corpora[name].Tokens += t.Tokens
				}
				st := p.set.streams[split]
				if st == nil {
					continue
				}
				if err := st.rows(ctx, func(ids []uint32, src int32, row int64) error {
					w, _ := b.writer(split)
					return w.add(ids, src, row)
				}); err != nil {
					return err
				}
			}
			s := &Split{Corpora: corpora}
			if w := b.writers[split]; w != nil {
				files, err := w.finish()
				if err != nil {
					return err
				}
				s.Files = files
				for _, f := range files {
					s.Documents += f.Documents
					s.Tokens += f.Tokens
				}
			}
			m.Splits[split] = s
		}
		return nil
	}
	if err := copyDocs(); err != nil {
		b.abort(sw)
		return nil, fmt.Errorf("merge: %w", err)
	}
	m.Timing = &Timing{Started: start.UTC().Format(time.RFC3339), Seconds: time.Since(start).Seconds(), Workers: 1}
	data, err := encodeManifest(m)
	if err == nil {
		err = sw.Commit(data, m.fileNames(), named)
	}
	if err != nil {
		b.abort(sw)
		return nil, fmt.Errorf("merge: %w", err)
	}
	log.Info("merged", "parts", len(ps), "train_tokens", m.Splits[Train].Tokens)
	return &Result{Dir: o.OutDir, Manifest: m}, nil
}

// rows calls fn with each document of the stream in order: its ids (fn
// must not keep the slice), source and row.
func (st *Stream) rows(ctx context.Context, fn func(ids []uint32, src int32, row int64) error) error {
	var buf []uint32
	defer st.lock()()
	for fi := range st.files {
		sf, err := st.file(fi)
		if err != nil {
			return err
		}
		for bi := range sf.batches {
			if err := ctx.Err(); err != nil {
				return err
			}
			d, err := st.data(fi, sf, bi)
			if err != nil {
				return err
			}
			for i := range d.src {
				lo, hi := d.offsets[i], d.offsets[i+1]
				if d.u32 != nil {
					buf = append(buf[:0], d.u32[lo:hi]...)
				} else {
					buf = buf[:0]
					for _, v := range d.u16[lo:hi] {
						buf = append(buf, uint32(v))
					}
				}
				if err := fn(buf, d.src[i], d.row[i]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
