package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunCommandErrorsNameThemselves: errors a careless user meets after
// the run was read (eval's --split and --batches, export into a directory
// holding other files) name the command typed, not "train:", and eval's
// flag values are usage errors (exit 2), as other commands' are.
func TestRunCommandErrorsNameThemselves(t *testing.T) {
	dir, _, runDir, _ := trainedRun(t)
	mine := filepath.Join(dir, "mine")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "notes.txt"), []byte("my notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"eval", "--run", runDir, "--split", "TRAIN"}, exitUsage, "--split"},
		{[]string{"eval", "--run", runDir, "--batches", "0"}, exitUsage, "--batches"},
		{[]string{"eval", "--run", runDir, "--batches", "-3"}, exitUsage, "--batches"},
		{[]string{"export", "--run", runDir, "--hf", mine}, 1, "notes.txt"},
	} {
		_, errs, code := run(t, append([]string{"-q"}, c.args...)...)
		if code != c.code || !strings.HasPrefix(errs, "estkit: "+c.args[0]+": ") || strings.Contains(errs, "train:") || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, %q (want exit %d, an error from %s naming %s)", c.args, code, errs, c.code, c.args[0], c.want)
		}
	}
}

// TestESTTraceNoESTNoWarning: est-trace of a run trained without EST says
// so, and nothing else: no warning about the steps asked beforehand.
func TestESTTraceNoESTNoWarning(t *testing.T) {
	_, _, runDir, _ := trainedRun(t)
	out, errs, code := run(t, "est-trace", "--run", runDir, "--steps", "1:9")
	if code == 0 || out != "" || !strings.Contains(errs, "without EST") || strings.Contains(errs, "WARN") || strings.Contains(errs, "never trained") {
		t.Errorf("est-trace --steps 1:9 of a run without EST: exit %d, %q %q", code, out, errs)
	}
}
