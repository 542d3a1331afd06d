package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tinyGPT2 is a --config file's GPT-2 small enough that a run of a few
// steps takes a fraction of a second.
const tinyGPT2 = `"model": {"Vocab": 50257, "Padded": 50304, "Layers": 1, "Heads": 2, "Channels": 16, "MaxT": 16}`

// fileTree is every regular file under dir, by path, with its bytes.
func fileTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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

// sameFiles fails unless the files under dir are exactly want, byte for
// byte.
func sameFiles(t *testing.T, want map[string][]byte, dir, what string) {
	t.Helper()
	got := fileTree(t, dir)
	for p, b := range want {
		if g, ok := got[p]; !ok || !bytes.Equal(g, b) {
			t.Fatalf("%s: %s changed or vanished", what, p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("%s: %s appeared", what, p)
		}
	}
}

// trainedRun shards a little sample text and trains a tiny GPT-2 on it for
// two steps: it returns the temporary directory, the token set, the run and
// the model's --config file.
func trainedRun(t *testing.T) (dir, tok, runDir, conf string) {
	t.Helper()
	dir, _, docs := sampleDocs(t, "300000")
	tok = filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	conf = filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(conf, []byte("{"+tinyGPT2+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir = filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--out", runDir, "--steps", "2", "--batch", "2", "--seq", "16"); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	return dir, tok, runDir, conf
}

// TestCarelessRunCommandsCLI runs commands a careless user types against a
// run and checks that each is refused with a message naming what is at
// stake, and that every file that was there is byte-identical afterwards.
func TestCarelessRunCommandsCLI(t *testing.T) {
	dir, tok, runDir, conf := trainedRun(t)
	mine := filepath.Join(dir, "mine")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "notes.txt"), []byte("my notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dir, "keep.json")
	if err := os.WriteFile(keep, []byte("{"+tinyGPT2+`, "keep_checkpoints": -1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	train := []string{"-q", "train", "--data", tok, "--steps", "2", "--batch", "2", "--seq", "16"}
	for _, c := range []struct {
		name string
		args []string
		want []string // in the error
	}{
		{"train into a run", append(train, "--config", conf, "--out", runDir), []string{runDir, "--resume", "--overwrite"}},
		{"train into a directory of the user's", append(train, "--config", conf, "--out", mine), []string{mine, "notes.txt"}},
		{"train --overwrite into a directory of the user's", append(train, "--config", conf, "--out", mine, "--overwrite"), []string{mine, "notes.txt"}},
		{"train --resume and --overwrite", append(train, "--config", conf, "--out", runDir, "--overwrite", "--resume"), []string{"--resume", "--overwrite"}},
		{"export --hf into the run", []string{"export", "--run", runDir, "--hf", runDir}, []string{runDir, "run"}},
		{"export --hf into a directory of the user's", []string{"export", "--run", runDir, "--hf", mine}, []string{mine, "notes.txt"}},
		{"keep_checkpoints -1 over a run", append(train, "--config", keep, "--out", runDir, "--overwrite"), []string{"keep_checkpoints"}},
		{"keep_checkpoints -1 into a new directory", append(train, "--config", keep, "--out", filepath.Join(dir, "new")), []string{"keep_checkpoints"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := fileTree(t, dir)
			_, errs, code := run(t, c.args...)
			if code == 0 {
				t.Fatalf("accepted: %s", errs)
			}
			for _, w := range c.want {
				if !strings.Contains(errs, w) {
					t.Fatalf("the error does not say %q: %s", w, errs)
				}
			}
			sameFiles(t, before, dir, c.name)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused run created its directory: %v", err)
	}
	// what the careless user meant
	if _, errs, code := run(t, append(train, "--config", conf, "--out", runDir, "--overwrite")...); code != 0 {
		t.Fatalf("train --overwrite over a run: %s", errs)
	}
	if _, errs, code := run(t, "export", "--run", runDir, "--hf", filepath.Join(dir, "hf")); code != 0 {
		t.Fatalf("export: %s", errs)
	}
	if _, errs, code := run(t, "-q", "train", "--config", filepath.Join(runDir, "config.json"), "--out", filepath.Join(dir, "again")); code != 0 {
		t.Fatalf("train --config with a run's config.json: %s", errs)
	}
}

// TestRunReadersCLI: eval, sample, export and train --resume refuse a run
// whose files were damaged, naming the file (est-trace too, for the files
// it reads); a config.json without data is an error, never a panic; a
// Hugging Face config.json is named as one.
func TestRunReadersCLI(t *testing.T) {
	_, _, runDir, _ := trainedRun(t)
	readers := map[string][]string{
		"eval":   {"eval", "--run", runDir, "--batches", "1"},
		"sample": {"sample", "--run", runDir, "--prompt", "func", "--tokens", "2"},
		"export": {"export", "--run", runDir, "--hf", filepath.Join(t.TempDir(), "hf")},
		"resume": {"-q", "train", "--out", runDir, "--resume"},
	}
	ckpt := filepath.Join(runDir, "checkpoints", "step-00000002")
	for _, path := range []string{filepath.Join(ckpt, "model.safetensors"), filepath.Join(ckpt, "adam_v.safetensors"), filepath.Join(ckpt, "state.json"),
		filepath.Join(ckpt, "manifest.json"), filepath.Join(runDir, "config.json")} {
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(orig)
		b[len(b)/2] ^= 4
		os.WriteFile(path, b, 0o644)
		for name, args := range readers {
			if _, errs, code := run(t, args...); code == 0 || !strings.Contains(errs, path) {
				t.Fatalf("%s with a bit of %s flipped: %d %s", name, path, code, errs)
			}
		}
		if strings.HasSuffix(path, ".json") && !strings.HasSuffix(path, "state.json") { // what est-trace reads
			if _, errs, code := run(t, "est-trace", "--run", runDir); code == 0 || !strings.Contains(errs, path) {
				t.Fatalf("est-trace with a bit of %s flipped: %d %s", path, code, errs)
			}
		}
		os.WriteFile(path, orig, 0o644)
	}
	path := filepath.Join(runDir, "config.json")
	orig, _ := os.ReadFile(path)
	start, end := bytes.Index(orig, []byte(`"data": [`)), bytes.Index(orig, []byte(`"steps"`))
	if start < 0 || end < start {
		t.Fatalf("no data in %s", orig)
	}
	os.WriteFile(path, append(orig[:start:start], orig[end:]...), 0o644)
	for _, name := range []string{"eval", "sample"} {
		if _, errs, code := run(t, readers[name]...); code == 0 || !strings.Contains(errs, path) {
			t.Fatalf("%s of a run whose config.json lacks data: %d %s", name, code, errs)
		}
	}
	os.WriteFile(path, []byte(`{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257}`), 0o644)
	if _, errs, code := run(t, "est-trace", "--run", runDir); code == 0 || !strings.Contains(errs, "Hugging Face") {
		t.Fatalf("est-trace of a Hugging Face config.json: %d %s", code, errs)
	}
}
