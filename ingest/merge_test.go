package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/internal/setdir"
)

// TestPartsMerge: ingest --part i/N for N = 1, 2, 3, 9 and Merge give the set
// a single run gives, byte for byte: every shard file, and the manifest
// but for its Timing (lineage, counts, rejections, the key), with dedup
// across parts and rejected lines; merging fewer parts, a part twice or
// a whole set is refused.
func TestPartsMerge(t *testing.T) {
	texts := goTexts(t, 90)
	in := filepath.Join(t.TempDir(), "in")
	var all [][]byte
	for _, x := range texts {
		b, _ := json.Marshal(map[string]string{"text": string(x.Body)})
		all = append(all, b)
	}
	// 7 files of uneven sizes; file 4 repeats documents of files 0 and 2
	// (duplicates across parts), file 5 holds a line that is not JSON
	cuts := []int{0, 5, 25, 30, 50, 62, 75, 90}
	for f := range 7 {
		lines := all[cuts[f]:cuts[f+1]]
		if f == 4 {
			lines = append(append([][]byte{}, lines...), all[1], all[27])
		}
		if f == 5 {
			lines = append(append([][]byte{}, lines...), []byte("{not json"))
		}
		write(t, filepath.Join(in, fmt.Sprintf("f%d.jsonl", f)), bytes.Join(lines, []byte("\n")))
	}
	o := Options{Format: FormatJSONL, Corpus: "go", ShardBytes: 60 << 10, Dedup: true, OnError: OnErrorSkip, Version: "test"}
	ctx := context.Background()
	single, sdir := mustIngest(t, []string{in}, o)
	if single.Counts.Filtered[FilterDuplicate] != 2 || len(single.Rejections) != 1 || len(single.Outputs) < 3 {
		t.Fatalf("the corpus should give duplicates, a rejection and several shards: %+v, %d shards", single.Counts, len(single.Outputs))
	}
	for _, n := range []int{1, 2, 3, 9} { // 9 parts of 7 files: some empty
		var parts []string
		for i := range n {
			po := o
			po.Part = setdir.Part{Index: i, Of: n}
			_, dir := mustIngest(t, []string{in}, po)
			parts = append(parts, dir)
		}
		out := filepath.Join(t.TempDir(), "merged")
		// the parts in reverse: Merge orders them
		rev := make([]string, n)
		for i, p := range parts {
			rev[n-1-i] = p
		}
		res, err := Merge(ctx, rev, Options{OutDir: out, Version: "test"})
		if err != nil {
			t.Fatalf("N=%d: %v", n, err)
		}
		sameSet(t, fmt.Sprintf("N=%d", n), sdir, out)
		if res.Manifest.Key != single.Key {
			t.Fatalf("N=%d: key %s, a single run's %s", n, res.Manifest.Key, single.Key)
		}
		if n == 3 {
			if _, err := Merge(ctx, parts[:2], Options{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) {
				t.Fatalf("two of three parts: %v", err)
			}
			if _, err := Merge(ctx, []string{parts[0], parts[0], parts[2]}, Options{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) {
				t.Fatalf("a part twice: %v", err)
			}
			if _, err := Merge(ctx, []string{sdir}, Options{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) || !strings.Contains(err.Error(), sdir) {
				t.Fatalf("a whole set: %v", err)
			}
		}
	}
}

// sameSet compares two set directories: every file byte for byte, the
// manifests without their timing.
func sameSet(t *testing.T, what, want, got string) {
	t.Helper()
	ents, err := os.ReadDir(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".arrow") {
			continue
		}
		a, _ := os.ReadFile(filepath.Join(want, e.Name()))
		b, err := os.ReadFile(filepath.Join(got, e.Name()))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s: %s differs from a single run's (%v)", what, e.Name(), err)
		}
	}
	gents, _ := os.ReadDir(got)
	if len(gents) != len(ents) {
		t.Fatalf("%s: %d files, a single run makes %d", what, len(gents), len(ents))
	}
	if a, b := untimed(t, want), untimed(t, got); a != b {
		t.Fatalf("%s: manifests differ:\n%s\n---\n%s", what, a, b)
	}
}

// untimed is a manifest.json without its timing and checksum (which
// covers the timing).
func untimed(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "timing")
	delete(m, "checksum")
	out, _ := json.MarshalIndent(m, "", " ")
	return string(out)
}
