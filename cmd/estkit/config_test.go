package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/train"
)

// tinyShape is a GPT-2 small enough that a step takes milliseconds.
const tinyShape = `"model": {"Vocab": 50257, "Padded": 50304, "Layers": 2, "Heads": 2, "Channels": 16, "MaxT": 32}`

// tinyTok shards the built-in samples (val fraction as given) and writes a
// --config file of the tiny shape; it returns the token set, the config
// file and a scratch directory.
func tinyTok(t *testing.T, valFraction string) (tok, conf, dir string) {
	t.Helper()
	dir, _, docs := sampleDocs(t, "300000")
	tok = filepath.Join(dir, "tok")
	if _, errs, code := run(t, "-q", "shard", "--out", tok, "--val-fraction", valFraction, docs); code != 0 {
		t.Fatal(errs)
	}
	conf = filepath.Join(dir, "tiny.json")
	if err := os.WriteFile(conf, []byte("{"+tinyShape+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return tok, conf, dir
}

func readRunConfig(t *testing.T, run string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("config.json: %v: %q", err, b)
	}
	return m
}

func metricLines(t *testing.T, run string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestTrainOptionsCLI: explicit values are used as given (zeros
// included), values out of range are errors naming the option before
// anything is written, and a Llama shaped by --config gets Llama's recipe.
func TestTrainOptionsCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	base := []string{"-q", "train", "--config", conf, "--data", tok, "--steps", "2", "--batch", "2", "--seq", "16"}
	runDir := filepath.Join(dir, "zeros")
	if _, errs, code := run(t, append(base, "--out", runDir, "--clip", "0", "--weight-decay", "0", "--min-lr", "0", "--beta1", "0")...); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	c := readRunConfig(t, runDir)
	for _, k := range []string{"clip", "weight_decay", "min_lr", "beta1"} {
		if c[k] != 0.0 {
			t.Errorf("%s given as 0 is %v in config.json", k, c[k])
		}
	}
	for i, tc := range []struct{ flag, value, want string }{
		{"lr", "NaN", "lr"}, {"lr", "-1", "lr"}, {"lr", "+Inf", "lr"}, {"lr", "0", "lr"},
		{"min-lr", "-1", "min_lr"}, {"min-lr", "NaN", "min_lr"}, {"min-lr", "1", "min_lr"},
		{"warmup", "-1", "warmup"}, {"eval-every", "-2", "eval_every"}, {"checkpoint-every", "-1", "checkpoint_every"},
		{"accum", "0", "accum"}, {"accum", "-3", "accum"}, {"neuron-group", "0", "neuron_group"}, {"neuron-group", "-4", "neuron_group"},
		{"neuron-group", "3", "neuron_group"}, {"clip", "NaN", "clip"}, {"clip", "-1", "clip"}, {"weight-decay", "-0.1", "weight_decay"},
		{"weight-decay", "Inf", "weight_decay"}, {"eps", "0", "eps"}, {"eps", "NaN", "eps"}, {"beta1", "1", "beta1"}, {"beta2", "NaN", "beta2"},
		{"beta2", "-0.5", "beta2"}, {"batch", "0", "batch"}, {"seq", "-3", "seq"}, {"steps", "0", "steps"}, {"eval-batches", "-1", "eval_batches"},
		{"keep-checkpoints", "0", "keep_checkpoints"}, {"keep-checkpoints", "-1", "keep_checkpoints"}, {"decay", "cos", "decay"},
		{"order", "random", "order"}, {"matmul", "fp16", "matmul"}, {"est", "est-gpt3", "est"}, {"data", tok + ":0.5x", "weight"},
		{"data", tok + ":-1", "weight"}, {"data", tok + ":NaN", "weight"}, {"eps", "1e-320", "want at least"}, {"lr", "1e-320", "lr"},
	} {
		out := filepath.Join(dir, "bad", string(rune('a'+i)))
		args := append(append([]string{}, base...), "--out", out, "--"+tc.flag, tc.value)
		_, errs, code := run(t, args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Contains(errs, "panic") {
			t.Errorf("--%s %s: exit %d, %q (want exit %d and an error naming %s)", tc.flag, tc.value, code, errs, exitUsage, tc.want)
		}
		// one value given, one error: not also one about a setting
		// derived from it (min_lr from lr)
		if tc.flag != "min-lr" && strings.Contains(errs, "min_lr") {
			t.Errorf("--%s %s: an error about min_lr, derived from it: %q", tc.flag, tc.value, errs)
		}
		if _, err := os.Stat(filepath.Join(out, "config.json")); err == nil {
			t.Errorf("--%s %s: config.json written", tc.flag, tc.value)
		}
	}

	llama := filepath.Join(dir, "llama.json")
	if err := os.WriteFile(llama, []byte(`{"model": {"Arch": "llama", "Vocab": 50257, "Padded": 50304, "Layers": 2, "Heads": 2, "KVHeads": 1, "Channels": 16, "FF": 40, "MaxT": 32, "RopeTheta": 10000, "NormEps": 1e-5}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir = filepath.Join(dir, "llama")
	if _, errs, code := run(t, "-q", "train", "--config", llama, "--data", tok, "--steps", "1", "--batch", "1", "--seq", "8", "--out", runDir); code != 0 {
		t.Fatalf("train llama: %s", errs)
	}
	if c := readRunConfig(t, runDir); c["lr"] != 4e-4 || c["decay"] != "cosine" {
		t.Errorf("a Llama shaped by --config trains with lr %v, decay %v (want Llama's 4e-4, cosine)", c["lr"], c["decay"])
	}
}

// TestTrainConfigFileESTCLI: a config file naming an EST preset trains
// with it (the schedule is derived from the steps), not with the full
// model while config.json says otherwise.
func TestTrainConfigFileESTCLI(t *testing.T) {
	tok, _, dir := tinyTok(t, "0.1")
	conf := filepath.Join(dir, "est.json")
	if err := os.WriteFile(conf, []byte(`{"est": "est-gpt2", `+tinyShape+`}`), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "run")
	out, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--steps", "6", "--batch", "2", "--seq", "16", "--out", runDir)
	if code != 0 {
		t.Fatalf("train: %s", errs)
	}
	if !strings.Contains(out, "0.5:0.5:0.5") || !strings.Contains(out, "75.0%") {
		t.Errorf("est-gpt2 from a config file did not sample subnetworks:\n%s", out)
	}
	if c := readRunConfig(t, runDir); c["schedule"] == nil {
		t.Errorf("config.json records est %v without a schedule", c["est"])
	}
}

// TestTrainResumeCLI: --resume --steps extends a run (the learning rate
// stays at min_lr past the original horizon); other settings are refused
// by name.
func TestTrainResumeCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--steps", "4", "--batch", "2", "--seq", "16", "--lr", "1e-3", "--out", runDir); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	for _, bad := range [][]string{{"--lr", "1e-2"}, {"--batch", "3"}, {"--preset", "gpt2-mini"}, {"--data", tok + ":2"}, {"--clip", "0"}} {
		if _, errs, code := run(t, append([]string{"-q", "train", "--out", runDir, "--resume"}, bad...)...); code == 0 || !strings.Contains(errs, bad[0]) {
			t.Errorf("resume %v: exit %d, %q (want a refusal naming %s)", bad, code, errs, bad[0])
		}
	}
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume", "--steps", "6", "--eval-every", "1", "--checkpoint-every", "1"); code != 0 {
		t.Fatalf("resume --steps 6: %s", errs)
	}
	m := metricLines(t, runDir)
	if len(m) != 6 {
		t.Fatalf("an extended run has %d records, want 6", len(m))
	}
	if lr := []float64{m[3]["lr"].(float64), m[4]["lr"].(float64), m[5]["lr"].(float64)}; math.Abs(lr[0]-1e-4) > 1e-12 || lr[1] != lr[0] || lr[2] != lr[0] {
		t.Errorf("lr past the horizon: %v %v %v (want min_lr 1e-4 from the last original step on)", m[3]["lr"], m[4]["lr"], m[5]["lr"])
	}
	if _, ok := m[4]["val_loss"]; !ok {
		t.Errorf("--eval-every 1 given on resume: no val loss at step 5: %v", m[4])
	}
	if c := readRunConfig(t, runDir); c["steps"] != 4.0 || c["horizon"] != nil {
		t.Errorf("config.json after extension: steps %v horizon %v (it keeps what the run started with)", c["steps"], c["horizon"])
	}
	// the checkpoint records the extension: a plain --resume is at its end
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume"); code != 0 {
		t.Fatalf("resume after the extension: %s", errs)
	}
	if m := metricLines(t, runDir); len(m) != 6 {
		t.Fatalf("after a plain resume of the extended run: %d records, want 6", len(m))
	}
	if _, errs, code := run(t, "-q", "train", "--out", runDir, "--resume", "--steps", "3"); code == 0 || !strings.Contains(errs, "steps") {
		t.Errorf("resume --steps below the steps done: exit %d %q", code, errs)
	}
}

// TestTrainResumeSummaryCLI: after a resume, the progress line's block
// FLOPs saved is the whole run's (stages.json's), not that of the steps
// this process ran, and the closing line says which of the steps and the
// time are this process's.
func TestTrainResumeSummaryCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--steps", "4", "--batch", "2", "--seq", "16",
		"--est-stages", "2,3,4", "--est-rates", "0.5:0.5:0.5,0.5:0.5:1,1:1:1", "--eval-every", "0", "--out", runDir); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	// steps 5 and 6 run the last stage, the full model: none saved
	out, errs, code := run(t, "train", "--out", runDir, "--resume", "--steps", "6")
	if code != 0 {
		t.Fatalf("resume --steps 6: %s", errs)
	}
	b, err := os.ReadFile(filepath.Join(runDir, "stages.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []train.StageStats
	if err := json.Unmarshal(b, &stages); err != nil {
		t.Fatal(err)
	}
	var done, full float64
	for _, s := range stages {
		done, full = done+s.FLOPs.Blocks, full+s.FullFLOPs.Blocks
	}
	want := fmt.Sprintf("block FLOPs saved %.1f%%", 100*(1-done/full))
	if want == "block FLOPs saved 0.0%" {
		t.Fatalf("the run saved nothing: %s", b)
	}
	lines := strings.Split(strings.TrimSpace(errs), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "step 6/6") || !strings.Contains(last, want) {
		t.Errorf("the last progress line after the resume: %q (want the whole run's %q)", last, want)
	}
	if !strings.Contains(out, runDir+": 6 steps, ") || !strings.Contains(out, "resumed at step 4, this process ran 2 steps in ") {
		t.Errorf("the closing line after the resume: %q", out)
	}
}

// TestTrainEvalCLI: --eval-every 0 evaluates at the end; an empty val
// split is refused before any step; eval refuses an unknown split and a
// batch count below 1, and prints the number of batches it ran.
func TestTrainEvalCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	runDir := filepath.Join(dir, "run")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", tok, "--steps", "2", "--batch", "2", "--seq", "16", "--eval-every", "0", "--out", runDir); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	m := metricLines(t, runDir)
	if _, ok := m[len(m)-1]["val_loss"]; !ok {
		t.Errorf("--eval-every 0 (at the end only): no val loss at the end: %v", m[len(m)-1])
	}
	if _, errs, code := run(t, "eval", "--run", runDir, "--split", "bogus"); code == 0 || !strings.Contains(errs, "bogus") {
		t.Errorf("eval --split bogus: exit %d %q", code, errs)
	}
	for _, n := range []string{"0", "-5"} {
		if _, errs, code := run(t, "eval", "--run", runDir, "--batches", n); code == 0 || !strings.Contains(errs, "batches") {
			t.Errorf("eval --batches %s: exit %d %q", n, code, errs)
		}
	}
	out, errs, code := run(t, "eval", "--run", runDir, "--batches", "100000000")
	if code != 0 || strings.Contains(out, "100000000 batches") {
		t.Errorf("eval --batches 100000000: exit %d, %q %q (want the number of batches that ran)", code, out, errs)
	}

	empty, _, _ := tinyTok(t, "0")
	runDir = filepath.Join(dir, "noval")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", empty, "--steps", "2", "--batch", "2", "--seq", "16", "--out", runDir); code == 0 || !strings.Contains(errs, "val") {
		t.Errorf("an empty val split: exit %d %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(runDir, "metrics.jsonl")); err == nil {
		t.Error("an empty val split was found after steps had run")
	}
	// the refusal says how to train without evaluation, and that works:
	// --eval-batches 0 evaluates never, so no val split is needed
	if _, errs, _ := run(t, "-q", "train", "--config", conf, "--data", empty, "--steps", "2", "--batch", "2", "--seq", "16", "--out", runDir); !strings.Contains(errs, "--eval-batches 0") {
		t.Errorf("an empty val split: %q names no way to train without evaluation", errs)
	}
	noEval := filepath.Join(dir, "noeval")
	if _, errs, code := run(t, "-q", "train", "--config", conf, "--data", empty, "--steps", "2", "--batch", "2", "--seq", "16", "--eval-batches", "0", "--eval-every", "1", "--out", noEval); code != 0 {
		t.Fatalf("--eval-batches 0 on a set without a val split: exit %d %q", code, errs)
	}
	for _, line := range metricLines(t, noEval) {
		if _, ok := line["val_loss"]; ok {
			t.Errorf("--eval-batches 0: a val loss was recorded: %v", line)
		}
	}
	// eval of such a run: the val split's absence says what to do, and
	// one batch is one batch
	if _, errs, code := run(t, "eval", "--run", noEval); code == 0 || !strings.Contains(errs, "--split train") {
		t.Errorf("eval of a run without a val split: exit %d %q (want --split train suggested)", code, errs)
	}
	if out, errs, code := run(t, "eval", "--run", noEval, "--split", "train", "--batches", "1"); code != 0 || !strings.Contains(out, "over 1 batch of") {
		t.Errorf("eval --batches 1: exit %d %q %q", code, out, errs)
	}
	// more batches than the val split holds: the number that ran is
	// recorded beside the loss, and said once
	capped := filepath.Join(dir, "capped")
	_, errs, code = run(t, "train", "--config", conf, "--data", tok, "--steps", "2", "--batch", "2", "--seq", "16", "--eval-batches", "100000", "--out", capped)
	if code != 0 {
		t.Fatalf("--eval-batches 100000: exit %d %q", code, errs)
	}
	m = metricLines(t, capped)
	n, ok := m[len(m)-1]["val_batches"].(float64)
	if !ok || n <= 0 || n >= 100000 {
		t.Errorf("--eval-batches 100000: val_batches %v in %v (want the number that ran)", m[len(m)-1]["val_batches"], m[len(m)-1])
	}
	if !strings.Contains(errs, "100000") || !strings.Contains(errs, "val split holds") {
		t.Errorf("--eval-batches 100000: nothing said of the cap: %q", errs)
	}
}

// TestTrainMemoryCLI: a micro-batch that cannot fit is refused before
// allocating, with the estimate and the largest micro-batch that fits.
func TestTrainMemoryCLI(t *testing.T) {
	tok, _, dir := tinyTok(t, "0.1")
	_, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", tok, "--batch", "5000", "--seq", "256", "--out", filepath.Join(dir, "run"))
	if code == 0 || !strings.Contains(errs, "largest micro-batch that fits: --batch") || !strings.Contains(errs, "GiB") {
		t.Errorf("--batch 5000 --seq 256: exit %d %q", code, errs)
	}
}

// TestResumeCustomStagesCLI: a run started with --est-stages and
// --est-rates resumes when its starting command is given again with
// --resume (config.json also holds the realised rates, which the command
// line does not give), and extends with --steps.
func TestResumeCustomStagesCLI(t *testing.T) {
	tok, conf, dir := tinyTok(t, "0.1")
	runDir := filepath.Join(dir, "custom")
	start := []string{"-q", "train", "--config", conf, "--data", tok, "--batch", "2", "--seq", "16", "--est-stages", "3,6", "--est-rates", "0.5:0.5:1,1:1:1", "--steps", "6", "--out", runDir}
	if _, errs, code := run(t, start...); code != 0 {
		t.Fatalf("train: %s", errs)
	}
	if _, errs, code := run(t, append(start, "--resume")...); code != 0 {
		t.Errorf("the starting command with --resume: exit %d %q", code, errs)
	}
	ext := append(append([]string{}, start...), "--resume", "--steps", "8")
	if _, errs, code := run(t, ext...); code != 0 {
		t.Errorf("extended with --steps 8: exit %d %q", code, errs)
	}
	// another schedule is still refused, in one line naming the stages
	other := []string{"-q", "train", "--config", conf, "--data", tok, "--batch", "2", "--seq", "16", "--est-stages", "3,5", "--est-rates", "0.5:0.5:1,1:1:1", "--steps", "6", "--out", runDir, "--resume"}
	_, errs, code := run(t, other...)
	if code != exitUsage || !strings.Contains(errs, "--est-stages 3,5") || strings.Count(errs, "\n") > 3 {
		t.Errorf("another schedule on resume: exit %d %q (want one refusal naming it)", code, errs)
	}
}
