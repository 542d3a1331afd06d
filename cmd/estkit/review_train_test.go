package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestTrainReviewCLI: as a careless user would type them: the command
// that started a run, given again with --resume, resumes it; a diverged
// run ends naming the step; eval from another directory reads the run's
// data set, and after the set is rebuilt with other options eval refuses,
// naming it.
func TestTrainReviewCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	t.Chdir(dir)
	args := []string{"-q", "train", "--config", conf, "--data", "tok", "--steps", "2", "--batch", "2", "--seq", "16", "--lr", "1e-3", "--out", "run"}
	if _, errs, code := run(t, args...); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	if _, errs, code := run(t, append(args, "--resume", "--steps", "3")...); code != 0 {
		t.Fatalf("the same command with --resume: %s", errs)
	}
	t.Chdir(t.TempDir())
	if _, errs, code := run(t, "-q", "eval", "--run", filepath.Join(dir, "run"), "--batches", "1"); code != 0 {
		t.Fatalf("eval from another directory: %s", errs)
	}
	t.Chdir(dir)
	if _, errs, code := run(t, "-q", "shard", "--out", "tok", "--val-fraction", "0.3", filepath.Join(dir, "docs")); code != 0 {
		t.Fatalf("rebuilding the set in place: %s", errs)
	}
	if _, errs, code := run(t, "-q", "eval", "--run", "run", "--batches", "1"); code == 0 || !strings.Contains(errs, tok) || !strings.Contains(errs, "manifest key") {
		t.Fatalf("eval on a rebuilt set: exit %d, %s", code, errs)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"lr": 1e30, "clip": 0, `+tinyShape+`}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := run(t, "-q", "train", "--config", bad, "--data", "tok", "--steps", "4", "--batch", "2", "--seq", "16", "--out", "diverged")
	if code == 0 || !regexp.MustCompile(`is (NaN|[+-]Inf) at step \d+: the run diverged`).MatchString(errs) || strings.Contains(errs, "json:") {
		t.Fatalf("diverged run: exit %d, %s", code, errs)
	}
}
