package shards

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/internal/setdir"
	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// TestObjectStorage: against a real S3-compatible server (MinIO on the
// loopback address): ingest into a bucket, shard from it into it, and
// train's loader reads the set back with batches identical to those of the
// same set built on the local disk; a set a killed run left (files and
// claim, no manifest) is refused by readers and a re-run completes it;
// a missing bucket is an error naming the URL.
func TestObjectStorage(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "corpus", "")
	t.Setenv(store.EnvCache, t.TempDir())
	ctx := context.Background()

	local := docSet(t, "go", 3, 96<<10) // local ingest of the same inputs
	in := filepath.Join(filepath.Dir(local), "in")
	docsURL := bucket + "runs/docs"
	res, err := ingest.Run(ctx, []string{in}, ingest.Options{Format: ingest.FormatJSONL, Corpus: "go", OutDir: docsURL, ShardBytes: (96 << 10) / 3})
	if err != nil {
		t.Fatal(err)
	}
	lm, err := ingest.ReadManifest(local)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Key != lm.Key || !slices.Equal(outputs(res.Manifest), outputs(lm)) {
		t.Fatalf("the set in the bucket differs from the local one:\n%v\n%v", outputs(res.Manifest), outputs(lm))
	}
	if again, err := ingest.Run(ctx, []string{in}, ingest.Options{Format: ingest.FormatJSONL, Corpus: "go", OutDir: docsURL, ShardBytes: (96 << 10) / 3}); err != nil || !again.UpToDate {
		t.Fatalf("a re-run into the bucket: %v (up to date %v)", err, again != nil && again.UpToDate)
	}

	tokURL := bucket + "runs/tok"
	remote := build(t, []string{docsURL}, Options{OutDir: tokURL})
	here := build(t, []string{local}, Options{})
	if remote.Manifest.Key != here.Manifest.Key || !slices.Equal(fileSums(remote.Manifest), fileSums(here.Manifest)) {
		t.Fatalf("token set in the bucket differs from the local one")
	}
	if remote.Manifest.Inputs[0].Dir != docsURL {
		t.Fatalf("input recorded as %q, want the URL", remote.Manifest.Inputs[0].Dir)
	}
	if batches(t, tokURL) != batches(t, here.Dir) {
		t.Fatal("the loader's batches from the bucket differ from the local set's")
	}

	// What a run killed during its uploads leaves: its claim and the files
	// it committed, no manifest. Readers refuse it; a re-run completes it.
	d, err := store.Open(ctx, tokURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ManifestName); err != nil {
		t.Fatal(err)
	}
	if err := setdir.Claim(d, setdir.TokenSchema, []string{Train + "-", Val + "-"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(store.EnvCache, t.TempDir()) // no earlier copy
	if _, err := Open(tokURL, false); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tokURL) {
		t.Fatalf("a set without manifest: %v, want an error naming %s", err, tokURL)
	}
	again := build(t, []string{docsURL}, Options{OutDir: tokURL})
	if !slices.Equal(fileSums(again.Manifest), fileSums(here.Manifest)) {
		t.Fatal("the re-run's set differs")
	}
	if batches(t, tokURL) != batches(t, here.Dir) {
		t.Fatal("after the re-run, the loader's batches differ")
	}
	if names, _ := d.List(); slices.Contains(names, setdir.ClaimName) {
		t.Fatalf("the claim outlived the set: %v", names)
	}

	_, err = Build(ctx, gpt2(t), []string{docsURL}, Options{OutDir: "s3://no-such-bucket/tok", ValFraction: 0.05})
	if !errors.Is(err, store.ErrNoBucket) || !strings.Contains(err.Error(), "s3://no-such-bucket/tok") {
		t.Fatalf("--out in a missing bucket: %v", err)
	}
}

func outputs(m *ingest.Manifest) []string {
	var out []string
	for _, f := range m.Outputs {
		out = append(out, f.Name+" "+f.SHA256)
	}
	return out
}

func fileSums(m *Manifest) []string {
	var out []string
	for _, e := range m.entries() {
		out = append(out, e.Name+" "+e.SHA256)
	}
	return out
}

// batches opens the set at dir (a path or a URL) and returns the first
// batches of a shuffled loader, as text.
func batches(t *testing.T, dir string) string {
	t.Helper()
	s, err := Open(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := NewLoader(Config{Data: []Weighted{{Set: s, Weight: 1}}, B: 2, T: 16, Seed: 7}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var sb strings.Builder
	for range 5 {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&sb, b.Tokens)
		b.Release()
	}
	return sb.String()
}
