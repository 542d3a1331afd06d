package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoveryAdviceCLI: when the latest checkpoint fails its checks, or
// checkpoints/latest names none, eval, sample, export and train --resume
// each name the intact older checkpoint and how to use it, in words that
// fit the command: the readers are not told to "resume" from it.
func TestRecoveryAdviceCLI(t *testing.T) {
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	conf := filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(conf, []byte("{"+tinyGPT2+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--out", runDir, "--steps", "2", "--batch", "2", "--seq", "16", "--checkpoint-every", "1"); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	latest := filepath.Join(runDir, "checkpoints", "latest")
	tensors := filepath.Join(runDir, "checkpoints", "step-00000002", "model.safetensors")
	orig, err := os.ReadFile(tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, damage := range []struct {
		name   string
		do     func()
		want   string
		intact string // the checkpoint named
	}{
		{"a corrupt tensor file", func() {
			b := []byte(string(orig))
			b[len(b)/2] ^= 4
			os.WriteFile(tensors, b, 0o644)
		}, tensors, "step-00000001"},
		{"junk in latest", func() {
			os.WriteFile(tensors, orig, 0o644)
			os.WriteFile(latest, []byte("\x00junk"), 0o644)
		}, latest + ": corrupt", "step-00000002"},
	} {
		damage.do()
		for _, c := range []struct {
			cmd     string
			args    []string
			resumes bool
		}{
			{"eval", []string{"eval", "--run", runDir, "--batches", "1"}, false},
			{"sample", []string{"sample", "--run", runDir, "--prompt", "func", "--tokens", "2"}, false},
			{"export", []string{"export", "--run", runDir, "--hf", filepath.Join(t.TempDir(), "hf")}, false},
			{"train --resume", []string{"-q", "train", "--out", runDir, "--resume"}, true},
		} {
			t.Run(damage.name+"/"+c.cmd, func(t *testing.T) {
				_, errs, code := run(t, c.args...)
				if code == 0 {
					t.Fatal("accepted")
				}
				use := "point latest at it to use it (printf " + damage.intact + " > " + latest + ")"
				for _, w := range []string{damage.want, "checkpoint " + damage.intact + " is intact", use} {
					if !strings.Contains(errs, w) {
						t.Errorf("%q does not say %q", errs, w)
					}
				}
				if !c.resumes && strings.Contains(errs, "to resume from it") {
					t.Errorf("%s, which does not resume, is told how to resume: %s", c.cmd, errs)
				}
			})
		}
	}
}
