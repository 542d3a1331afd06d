package train

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// namedSums is the CPU backend naming its products' sums as it is told
// (kernels.Arithmeticer), as two machines or CPU counts would.
type namedSums struct {
	kernels.Ops
	name string
}

func (n namedSums) Arithmetic() string { return n.name }

// TestResumeWarnsOfOtherArithmetic: a checkpoint records how the products
// summed (state.json's arithmetic); a resume where they sum otherwise (on
// OpenBLAS's Haswell kernels, another CPU count) goes on and says that the
// last bits may differ from an uninterrupted run's, naming both; a resume
// where they sum alike says nothing of it.
func TestResumeWarnsOfOtherArithmetic(t *testing.T) {
	cfg := tinyRun(tokenSet(t))
	cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery, cfg.Horizon = 3, 3, 0, 6
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), namedSums{cpu.New(), "sums A"}, cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	resume := func(name string, steps int) string {
		var buf bytes.Buffer
		c := cfg
		c.Steps = steps
		if _, err := Run(context.Background(), namedSums{cpu.New(), name}, c, run, Options{Resume: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	if log := resume("sums A", 4); strings.Contains(log, "last bits") {
		t.Errorf("a resume where the products sum alike warned:\n%s", log)
	}
	log := resume("sums B", 5)
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "sums A") || !strings.Contains(log, "sums B") || !strings.Contains(log, "last bits") {
		t.Fatalf("a resume where the products sum otherwise did not warn naming both:\n%s", log)
	}
}
