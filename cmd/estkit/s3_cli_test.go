package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/estkit/estkit/ingest"

	"github.com/estkit/estkit/internal/store"
	"github.com/estkit/estkit/internal/store/s3test"
)

// TestObjectStorageCLI: the whole pipeline at URLs of a real
// S3-compatible server (MinIO on the loopback address), as a user types
// it: ingest raw files from a bucket into a bucket; inspect the document
// set there (summary, --doc) with the same answers as for the local set of
// the same files; shard into the bucket; train --data from it, the run
// recording the URL; eval --run of that run; and a missing set at a URL is
// an error naming it.
func TestObjectStorageCLI(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "corpus", "")
	t.Setenv(store.EnvCache, t.TempDir())
	dir, samples, docs := sampleDocs(t, "300000")
	err := filepath.WalkDir(samples, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(samples, p)
		_, err = srv.Client.FPutObject(context.Background(), "corpus", "raw/"+filepath.ToSlash(rel), p, minio.PutObjectOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	docsURL := bucket + "docs"
	if _, errs, code := run(t, "-q", "ingest", "--out", docsURL, bucket+"raw"); code != 0 {
		t.Fatalf("ingest from a bucket: %s", errs)
	}
	for _, args := range [][]string{{"--json"}, {"--json", "--doc", "3"}, {"--doc", "0"}} {
		want, errs, code := run(t, append([]string{"inspect", docs}, args...)...)
		if code != 0 {
			t.Fatalf("inspect %s %v: %s", docs, args, errs)
		}
		got, errs, code := run(t, append([]string{"inspect", docsURL}, args...)...)
		if code != 0 || got != want {
			t.Fatalf("inspect %s %v: exit %d %s\n%.400s\nwant (the local set's)\n%.400s", docsURL, args, code, errs, got, want)
		}
	}
	out, errs, code := run(t, "inspect", docsURL)
	if code != 0 || !strings.Contains(out, "documents") {
		t.Fatalf("inspect %s: exit %d %s\n%s", docsURL, code, errs, out)
	}
	missing := bucket + "nothing"
	if _, errs, code := run(t, "inspect", missing); code == 0 || !strings.Contains(errs, missing) {
		t.Fatalf("inspect %s: exit %d %q, want an error naming it", missing, code, errs)
	}

	tokURL := bucket + "tok"
	if _, errs, code := run(t, "-q", "shard", "--out", tokURL, "--val-fraction", "0.1", docsURL); code != 0 {
		t.Fatalf("shard into a bucket: %s", errs)
	}
	conf := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(conf, []byte("{"+tinyShape+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tokURL, "--steps", "2", "--batch", "2", "--seq", "16", "--out", runDir); code != 0 {
		t.Fatalf("train --data %s: %s", tokURL, errs)
	}
	if b, err := os.ReadFile(filepath.Join(runDir, "config.json")); err != nil || !strings.Contains(string(b), `"`+tokURL+`"`) {
		t.Fatalf("config.json does not record the data's URL %s (%v):\n%s", tokURL, err, b)
	}
	out, errs, code = run(t, "--json", "eval", "--run", runDir, "--batches", "2")
	if code != 0 || !strings.Contains(out, "loss") {
		t.Fatalf("eval --run of a run trained from %s: exit %d %s\n%s", tokURL, code, errs, out)
	}
	// a shard changed in the bucket since its manifest was written
	m, err := ingest.ReadManifest(docsURL)
	if err != nil {
		t.Fatal(err)
	}
	name := m.Outputs[0].Name
	damaged := "not the shard the manifest names"
	if _, err := srv.Client.PutObject(context.Background(), "corpus", "docs/"+name, strings.NewReader(damaged), int64(len(damaged)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "inspect", docsURL, "--doc", "0"); code == 0 || !strings.Contains(errs, docsURL+"/"+name) || !strings.Contains(errs, "sha256") {
		t.Fatalf("inspect --doc of a damaged shard at a URL: exit %d %q, want an error naming it", code, errs)
	}
}
