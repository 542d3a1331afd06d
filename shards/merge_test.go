package shards

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

// TestPartsMerge: shard --part i/N for N = 1, 2, 3 and more than the
// document files (empty parts), then Merge, give the set
// a single run gives, byte for byte: every token file, and the manifest
// but for its Timing (inputs, sources, the rows' lineage, tallies, key);
// fewer parts, a part twice or a whole set are refused.
func TestPartsMerge(t *testing.T) {
	docs := []string{docSet(t, "go", 2, 160<<10), docSet(t, "more", 40, 96<<10)}
	o := Options{ShardTokens: 9000, Version: "test"}
	single := build(t, docs, o)
	if n := len(single.Manifest.Sources); n < 4 || len(single.Manifest.Splits[Train].Files) < 3 {
		t.Fatalf("the test wants several document files and token files: %d sources", n)
	}
	ctx := context.Background()
	for _, n := range []int{1, 2, 3, len(single.Manifest.Sources) + 2} { // more parts than files: some empty
		var parts []string
		for i := range n {
			po := o
			po.Part = setdir.Part{Index: i, Of: n}
			parts = append(parts, build(t, docs, po).Dir)
		}
		rev := make([]string, n)
		for i, p := range parts {
			rev[n-1-i] = p
		}
		out := filepath.Join(t.TempDir(), "merged")
		res, err := Merge(ctx, rev, MergeOptions{OutDir: out, Version: "test"})
		if err != nil {
			t.Fatalf("N=%d: %v", n, err)
		}
		if res.Manifest.Key != single.Manifest.Key {
			t.Fatalf("N=%d: key %s, a single run's %s", n, res.Manifest.Key, single.Manifest.Key)
		}
		sameTokenSet(t, fmt.Sprintf("N=%d", n), single.Dir, out)
		if n == 3 {
			if _, err := Merge(ctx, parts[:2], MergeOptions{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) {
				t.Fatalf("two of three parts: %v", err)
			}
			if _, err := Merge(ctx, []string{parts[0], parts[0], parts[2]}, MergeOptions{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) {
				t.Fatalf("a part twice: %v", err)
			}
			if _, err := Merge(ctx, []string{single.Dir}, MergeOptions{OutDir: t.TempDir()}); !errors.Is(err, ErrParts) || !strings.Contains(err.Error(), single.Dir) {
				t.Fatalf("a whole set: %v", err)
			}
		}
	}
}

// sameTokenSet compares two token sets: every .arrow file byte for byte,
// the manifests without timing and checksum.
func sameTokenSet(t *testing.T, what, want, got string) {
	t.Helper()
	a, b := readAll(t, want), readAll(t, got)
	if len(a) != len(b) {
		t.Fatalf("%s: %d files, a single run makes %d", what, len(b), len(a))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Fatalf("%s: %s differs from a single run's", what, name)
		}
	}
	if x, y := untimedManifest(t, want), untimedManifest(t, got); x != y {
		t.Fatalf("%s: manifests differ:\n%s\n---\n%s", what, x, y)
	}
}

func untimedManifest(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
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
