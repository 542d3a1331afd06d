package train

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// reviewRun trains tinyRun for 2 steps with a checkpoint after each, so
// that step-00000001 and step-00000002 are there and latest names the
// second.
func reviewRun(t *testing.T) string {
	t.Helper()
	cfg := tinyRun(tokenSet(t))
	cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery, cfg.KeepCheckpoints = 2, 1, 0, 3
	cfg.Horizon = 6
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	return run
}

// TestReviewRunConfigMissingPadded: a run's config.json whose model has
// no "padded" (hand-edited, cut) was refused naming the missing key
// (`key "model" ... has no "padded"`) until 11dffdc took padded out of
// requiredKeys for --config; now it reads as "model.padded = 0", a value
// the file does not hold, which requiredKeys' own comment says the key
// check is there to avoid.
func TestReviewRunConfigMissingPadded(t *testing.T) {
	run := reviewRun(t)
	path := filepath.Join(run, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := regexp.MustCompile(`(?m)^\s*"padded": \d+,\n`).ReplaceAll(b, nil)
	if len(cut) == len(b) {
		t.Fatal("config.json has no padded line to cut")
	}
	if err := os.WriteFile(path, cut, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadRunConfig(run)
	if err == nil {
		t.Fatal("a config.json without model.padded was read")
	}
	if strings.Contains(err.Error(), "padded = 0") || !strings.Contains(err.Error(), `no "padded"`) {
		t.Errorf("error %q: want it to say the model has no \"padded\", not that padded is 0", err)
	}
}

// TestReviewLatestDirAdvice: with a directory in checkpoints/latest's
// place, the advice printed ("printf step-N > .../latest") cannot be
// followed as printed: the shell's redirection into a directory fails
// (EISDIR). The advice should say to remove the directory first.
// TestLatestPointerJunk follows the advice only after os.RemoveAll.
func TestReviewLatestDirAdvice(t *testing.T) {
	run := reviewRun(t)
	latest := filepath.Join(run, ckptDir, latestName)
	if err := os.Remove(latest); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(latest, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := ReadRunConfig(run)
	if err == nil {
		t.Fatal("latest as a directory was read")
	}
	msg := err.Error()
	if !strings.Contains(msg, "printf step-00000002 > "+latest) {
		t.Fatalf("error %q gives no printf advice", msg)
	}
	// the advice followed as printed: printf's > opens O_WRONLY|O_CREATE|O_TRUNC
	werr := os.WriteFile(latest, []byte("step-00000002"), 0o644)
	if werr != nil && !strings.Contains(msg, "rmdir") && !strings.Contains(msg, "remove") {
		t.Errorf("the advice %q, followed as printed, fails (%v) and does not say to remove the directory first", msg, werr)
	}
}

// TestReviewJunkLatestCorruptNewer: step-2 corrupt, step-1 intact. With
// latest naming step-2 the advice says to move step-00000002 out before
// resuming from step-1; with junk in latest (the same checkpoints) it does
// not, though a resume from step-1 writes step 2 again all the same.
func TestReviewJunkLatestCorruptNewer(t *testing.T) {
	run := reviewRun(t)
	latest := filepath.Join(run, ckptDir, latestName)
	model := filepath.Join(run, ckptDir, "step-00000002", "model.safetensors")
	f, err := os.OpenFile(model, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("X")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	move := "move step-00000002 out of"
	_, _, err = LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), "step-00000001 is intact") || !strings.Contains(err.Error(), move) {
		t.Fatalf("latest naming the corrupt step 2: %v (want step 1 intact and %q)", err, move)
	}
	if err := os.WriteFile(latest, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = LoadRun(cpu.New(), run)
	if err == nil || !strings.Contains(err.Error(), "step-00000001 is intact") {
		t.Fatalf("junk latest: %v (want step 1 intact)", err)
	}
	if !strings.Contains(err.Error(), move) {
		t.Errorf("junk latest with a corrupt step 2: %q does not say %q, as it does when latest names step 2", err, move)
	}
}
