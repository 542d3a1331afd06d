package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunCommandsNameThemselves: export, eval and sample name themselves
// in their errors, not "train:", and a run without a checkpoint is not
// said to have nothing "to resume from" (they do not resume).
func TestRunCommandsNameThemselves(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "norun")
	os.MkdirAll(empty, 0o755)
	for _, c := range [][]string{
		{"export", "--run", empty, "--hf", filepath.Join(dir, "hf")},
		{"eval", "--run", empty},
		{"sample", "--run", empty, "--prompt", "x"},
	} {
		_, errs, code := run(t, append([]string{"-q"}, c...)...)
		if code == 0 || !strings.Contains(errs, "estkit: "+c[0]+": ") || strings.Contains(errs, "train:") || strings.Contains(errs, "resume") {
			t.Errorf("%v: exit %d, %q (want an error from %s naming no other command)", c, code, errs, c[0])
		}
	}
}

// TestESTTraceStepsPastRun: est-trace --steps past the steps a run has
// says how many it has, and a range running over its end stops there and
// says so, rather than printing subnetworks of steps never trained.
func TestESTTraceStepsPastRun(t *testing.T) {
	dir, _, docs := sampleDocs(t, "300000")
	tok := filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", "0.1", docs); code != 0 {
		t.Fatal(errs)
	}
	conf := filepath.Join(dir, "tiny.json")
	os.WriteFile(conf, []byte("{"+tinyGPT2+"}"), 0o644)
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--out", runDir, "--steps", "4", "--batch", "2", "--seq", "16", "--est", "est-gpt2"); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "6:9")
	if code == 0 || out != "" || !strings.Contains(errs, "4 steps") {
		t.Errorf("--steps 6:9 of a 4-step run: exit %d, %d bytes out, %q", code, len(out), errs)
	}
	out, errs, code = run(t, "est-trace", "--run", runDir, "--steps", "2:9")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "4 steps") {
		t.Errorf("--steps 2:9 of a 4-step run: exit %d, %d lines, %q", code, strings.Count(out, "\n"), errs)
	}
	// a run extended by --resume --steps has the steps it trained
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume", "--steps", "6"); code != 0 {
		t.Fatalf("resume: %s", errs)
	}
	if out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "4:6"); code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("--steps 4:6 of a run extended to 6: exit %d, %q %q", code, out, errs)
	}
}
