package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/train"
)

// fakeRun writes the records of a finished run: steps steps whose FLOPs are
// frac of the full model's and whose final validation loss is val.
func fakeRun(t *testing.T, dir string, steps int, frac, val float64, est bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := train.Recipe(train.ModelConfig{Vocab: 257, Padded: 384, Layers: 8, Heads: 8, Channels: 256, MaxT: 256})
	cfg.Data = []train.Data{{Dir: "tok", Weight: 1}}
	cfg.Steps, cfg.Batch, cfg.Seq, cfg.LR, cfg.MinLR, cfg.Warmup, cfg.EvalEvery, cfg.EvalBatches = steps, 8, 256, 1e-3, 1e-4, 1, 5, 16
	if est {
		cfg.EST = "custom"
		cfg.Schedule = &train.Schedule{Ends: []int{steps / 2, steps}, Rates: []train.Rates{{PH: 0.5, PM: 0.5, PL: 0.5}, {PH: 1, PM: 1, PL: 1}}}
	}
	b, _ := json.Marshal(train.ConfigFile{Format: "estkit.run", Version: 1, Config: cfg})
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	f, _ := os.Create(filepath.Join(dir, "metrics.jsonl"))
	var stages []train.StageStats
	for i := 0; i < steps; i++ {
		r := train.StepRecord{Step: i, Loss: 2, MS: 1000 * frac, Tokens: int64(2048 * (i + 1)),
			FLOPs: train.FLOPs{Blocks: 100 * frac, All: 102 * frac}, FullFLOPs: train.FLOPs{Blocks: 100, All: 102}}
		if est && i >= steps/2 {
			r.Stage = 1
		}
		if (i+1)%5 == 0 {
			r.ValLoss = val + 0.1*float64(steps-i-1)
		}
		b, _ := json.Marshal(r)
		fmt.Fprintf(f, "%s\n", b)
	}
	f.Close()
	stages = append(stages, train.StageStats{Tokens: int64(2048 * steps), Seconds: float64(steps) * frac})
	b, _ = json.Marshal(stages)
	os.WriteFile(filepath.Join(dir, "stages.json"), b, 0o644)
}

// TestReport: the report reads every run's records and states the
// headline comparisons and the open choices, with its four plots.
func TestReport(t *testing.T) {
	work := t.TempDir()
	vals := map[string]float64{"full-s1": 1.50, "full-s2": 1.52, "est-s1": 1.51, "est-s2": 1.53, "full-eqflops": 1.60,
		"est-width": 1.50, "est-sampled": 1.70, "est-bernoulli": 1.52, "est-shared": 1.40}
	for _, s := range specs() {
		frac, steps := 0.75, 20
		switch {
		case strings.HasPrefix(s.Name, "full"):
			frac = 1
		}
		if s.EqualFLOPs {
			steps = 15
		}
		fakeRun(t, filepath.Join(work, "runs", s.Name), steps, frac, vals[s.Name], strings.HasPrefix(s.Name, "est"))
	}
	o := options{work: work, report: filepath.Join(work, "docs", "EXPERIMENTS.md"), plots: filepath.Join(work, "docs", "experiments")}
	if err := writeReport(o, specs()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.report)
	if err != nil {
		t.Fatal(err)
	}
	r := string(b)
	for _, want := range []string{
		"EST 1.5200 ± 0.0100 against full training 1.5100 ± 0.0100", "a difference of +0.0100, within the seed spread",
		"(15 steps) reaches 1.6000; EST (seed 1) 1.5100: lower by 0.0900, beyond the seed spread",
		"25.0% of the block FLOPs", "25.0% of the training wall-clock",
		"| AdamW on unsampled weights | EST, AdamW on the sampled heads and neurons only (--est-update sampled) | 1.7000 | higher by 0.1900, beyond the seed spread |",
		"| per-block independence |", "lower by 0.1100", "![validation loss against steps](experiments/val-steps.png)",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, f := range []string{"val-steps.png", "val-block-flops.png", "val-all-flops.png", "val-wallclock.png"} {
		if st, err := os.Stat(filepath.Join(o.plots, f)); err != nil || st.Size() < 10000 {
			t.Errorf("plot %s: %v", f, err)
		}
	}
	if t.Failed() {
		t.Log(r)
	}
	// an unfinished run is refused
	os.Truncate(filepath.Join(work, "runs", "est-s2", "metrics.jsonl"), 10)
	if err := writeReport(o, specs()); err == nil || !strings.Contains(err.Error(), "est-s2") {
		t.Fatalf("report over an unfinished run: %v", err)
	}
}
