package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tree maps every file under dir to its bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails unless every file of before is there byte for byte and
// none was added.
func sameTree(t *testing.T, dir string, before map[string][]byte) {
	t.Helper()
	after := tree(t, dir)
	for p, b := range before {
		if a, ok := after[p]; !ok || !bytes.Equal(a, b) {
			t.Errorf("%s changed or was removed", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s was added", p)
		}
	}
}

// TestCarelessSetCommands runs commands a careless user types at document
// and token sets: each fails with an error naming what is wrong, and every
// file that was there before is byte-identical afterwards.
func TestCarelessSetCommands(t *testing.T) {
	dir, samples, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatalf("shard: %s", errs)
	}
	if _, errs, code := run(t, "-q", "inspect", tok); code != 0 { // records the verified marker
		t.Fatalf("inspect: %s", errs)
	}
	foreign := filepath.Join(dir, "mine")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, "docs-abc-00000.arrow"), []byte("my bytes"), 0o644)
	os.WriteFile(filepath.Join(foreign, "train-00000.arrow"), []byte("my tokens"), 0o644)
	runDir := filepath.Join(dir, "run")
	os.MkdirAll(filepath.Join(runDir, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(runDir, "config.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(runDir, "metrics.jsonl"), []byte("{}\n"), 0o644)
	cache := filepath.Join(dir, "cache")

	cases := []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"ingest into foreign files", []string{"ingest", "--out", foreign, samples}, []string{foreign, "docs-abc-00000.arrow", "did not write"}},
		{"ingest into a token set", []string{"ingest", "--out", tok, samples}, []string{tok, "token set"}},
		{"ingest into a run", []string{"ingest", "--out", runDir, samples}, []string{runDir, "training run"}},
		{"shard into its input", []string{"shard", "--out", docs, docs}, []string{docs, "also an input"}},
		{"shard into foreign files", []string{"shard", "--out", foreign, docs}, []string{foreign, "train-00000.arrow"}},
		{"shard into a run", []string{"shard", "--out", runDir, docs}, []string{runDir, "training run"}},
		{"shard the same set twice", []string{"shard", "--cache", cache, docs, docs}, []string{docs, "given twice"}},
		{"shard the same set by another path", []string{"shard", "--cache", cache, docs, docs + "/."}, []string{"given twice"}},
		{"val fraction NaN", []string{"shard", "--cache", cache, "--val-fraction", "NaN", docs}, []string{"val fraction"}},
		{"val fraction Inf", []string{"shard", "--cache", cache, "--val-fraction", "Inf", docs}, []string{"val fraction"}},
		{"val fraction negative", []string{"shard", "--cache", cache, "--val-fraction", "-0.1", docs}, []string{"val fraction"}},
		{"val fraction 1", []string{"shard", "--cache", cache, "--val-fraction", "1", docs}, []string{"val fraction"}},
		{"shard tokens 0", []string{"shard", "--cache", cache, "--shard-tokens", "0", docs}, []string{"--shard-tokens"}},
		{"shard tokens negative", []string{"shard", "--cache", cache, "--shard-tokens", "-5", docs}, []string{"--shard-tokens"}},
		{"workers negative", []string{"shard", "--cache", cache, "-j", "-2", docs}, []string{"workers"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := tree(t, dir)
			_, errs, code := run(t, c.args...)
			if code == 0 {
				t.Fatalf("exit 0")
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Errorf("error lacks %q:\n%s", w, errs)
				}
			}
			if strings.Contains(errs, "panic") || strings.Contains(errs, "goroutine ") {
				t.Errorf("a panic:\n%s", errs)
			}
			sameTree(t, dir, before)
		})
	}
}

// flipEach flips one bit at 16 offsets spread over the file at p and calls
// fn for each, restoring the file after.
func flipEach(t *testing.T, p string, fn func(off int)) {
	t.Helper()
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(p, orig, 0o644)
	for i := range 16 {
		off := i * (len(orig) - 1) / 15
		b := bytes.Clone(orig)
		b[off] ^= 1 << (off % 8)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fn(off)
	}
}

// TestCorruptSetsCLI: one bit flipped at 16 offsets of a document shard, a
// token shard and each manifest is an error naming the file from every
// command that reads it.
func TestCorruptSetsCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatalf("shard: %s", errs)
	}
	if _, errs, code := run(t, "-q", "inspect", tok); code != 0 {
		t.Fatalf("inspect: %s", errs)
	}
	fails := func(p string, off int, args ...string) {
		t.Helper()
		_, errs, code := run(t, args...)
		if code == 0 || !strings.Contains(errs, p) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%s with a bit flipped at %d of %s: exit %d, %s", strings.Join(args, " "), off, p, code, errs)
		}
	}
	shards, _ := filepath.Glob(filepath.Join(docs, "docs-*.arrow"))
	if len(shards) == 0 {
		t.Fatal("no document shard")
	}
	doc := shards[0]
	flipEach(t, doc, func(off int) {
		fails(doc, off, "inspect", docs, "--doc", "0")
		fails(doc, off, "shard", "--out", filepath.Join(t.TempDir(), "t"), docs)
	})
	trainFiles, _ := filepath.Glob(filepath.Join(tok, "train-*.arrow"))
	if len(trainFiles) == 0 {
		t.Fatal("no token shard")
	}
	tf := trainFiles[0]
	flipEach(t, tf, func(off int) {
		fails(tf, off, "inspect", tok, "--seq", "0", "--seq-len", "16")
		fails(tf, off, "inspect", tok, "--tokens", "--split", "train")
	})
	dm := filepath.Join(docs, "manifest.json")
	flipEach(t, dm, func(off int) {
		fails(dm, off, "inspect", docs)
		fails(dm, off, "shard", "--out", filepath.Join(t.TempDir(), "t"), docs)
	})
	tm := filepath.Join(tok, "manifest.json")
	flipEach(t, tm, func(off int) {
		fails(tm, off, "inspect", tok)
	})
}
