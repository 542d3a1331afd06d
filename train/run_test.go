package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/estkit/estkit/ingest"
	"github.com/estkit/estkit/ingest/corpusgen"
	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/shards"
	"github.com/estkit/estkit/tokenize"
)

// tokenSet ingests and shards a little GOROOT text with GPT-2.
func tokenSet(t testing.TB) string {
	t.Helper()
	texts, err := corpusgen.GoRootTexts(400 << 10)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := corpusgen.WriteJSONL(filepath.Join(root, "in", "go.jsonl"), "text", texts); err != nil {
		t.Fatal(err)
	}
	docs := filepath.Join(root, "docs")
	if _, err := ingest.Run(context.Background(), []string{filepath.Join(root, "in")}, ingest.Options{Format: ingest.FormatJSONL, OutDir: docs}); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenize.GPT2()
	if err != nil {
		t.Fatal(err)
	}
	res, err := shards.Build(context.Background(), tok, []string{docs}, shards.Options{OutDir: filepath.Join(root, "tok"), EOS: true, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	return res.Dir
}

func tinyRun(set string) Config {
	s, _ := ParseSchedule("2,4,6", "0.5:0.5:0.5,0.5:0.5:1,1:1:1")
	c := Recipe(ModelConfig{Vocab: 50257, Padded: 50304, Layers: 2, Heads: 2, Channels: 16, MaxT: 16})
	c.Data, c.Steps, c.Batch, c.Seq, c.Accum, c.Seed, c.LR, c.MinLR, c.Warmup = []Data{{Dir: set, Weight: 1}}, 6, 2, 16, 2, 5, 1e-3, 1e-4, 2
	c.EST, c.Schedule, c.EvalEvery, c.CheckpointEvery = "custom", &s, 3, 3
	return c
}

// checkpointedRun trains the first steps of tinyRun's 6-step schedule
// into a new run directory, with a checkpoint every `every` steps (0: at
// the end only), keep of them kept (0: the recipe's) and no evaluation,
// and returns the configuration and the run.
func checkpointedRun(t *testing.T, steps, every, keep int) (Config, string) {
	t.Helper()
	cfg := tinyRun(tokenSet(t))
	cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery = steps, every, 0
	if keep > 0 {
		cfg.KeepCheckpoints = keep
	}
	cfg.Horizon = 6
	run := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, run, Options{}); err != nil {
		t.Fatal(err)
	}
	return cfg, run
}

func records(t testing.TB, path string) []StepRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []StepRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r StepRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// TestResumeIsExact: a run stopped after a checkpoint and resumed ends with
// the same weights, moments and metrics as an uninterrupted run.
func TestResumeIsExact(t *testing.T) {
	set := tokenSet(t)
	a, b := resumeIsExact(t, cpu.New(), tinyRun(set))
	ra := records(t, filepath.Join(a, "metrics.jsonl"))
	if ra[0].Stage != 0 || ra[5].Stage != 2 || ra[0].FLOPs.Blocks*4 != ra[0].FullFLOPs.Blocks || ra[5].FLOPs != ra[5].FullFLOPs || ra[2].ValLoss == 0 {
		t.Fatalf("stages and FLOPs: %+v ... %+v", ra[0], ra[5])
	}
	var stages []StageStats
	sb, _ := os.ReadFile(filepath.Join(a, "stages.json"))
	if err := json.Unmarshal(sb, &stages); err != nil || len(stages) != 3 || stages[0].Steps != 2 || stages[0].Layers.Mean != 1 { // one draw per step (of 2 micro-batches), 1 of 2 blocks
		t.Fatalf("stages.json: %s %v", sb, err)
	}
	if png, err := os.ReadFile(filepath.Join(a, LossPlot)); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n")) || len(png) < 10000 {
		t.Fatalf("%s: %d bytes, %v", LossPlot, len(png), err)
	}
	// another configuration refuses the checkpoint
	other := tinyRun(set)
	other.LR = 2e-3
	if _, err := Run(context.Background(), cpu.New(), other, b, Options{Resume: true}); !errors.Is(err, shards.ErrMismatch) {
		t.Fatalf("resume under another configuration: %v", err)
	}
}

// resumeIsExact runs cfg on ops uninterrupted into a, and into b stopped
// after step 4 by a cancelled context (the interrupt checkpoints the 5
// steps done) and resumed, and into c stopped the same way and then put in
// the state a kill -9 after step 4 leaves (the interrupt's checkpoint gone:
// checkpoint 3 is the latest, the records of steps 3 and 4 past it) and
// resumed, and checks that all end with the same tensors and metrics.
func resumeIsExact(t *testing.T, ops kernels.Ops, cfg Config) (a, b string) {
	t.Helper()
	a = filepath.Join(t.TempDir(), "a")
	if _, err := Run(context.Background(), ops, cfg, a, Options{}); err != nil {
		t.Fatal(err)
	}
	b = filepath.Join(t.TempDir(), "b")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Run(ctx, ops, cfg, b, Options{Progress: func(r StepRecord, _ time.Duration) {
		if r.Step == 4 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	if latest, _ := os.ReadFile(filepath.Join(b, ckptDir, latestName)); string(latest) != "step-00000005" {
		t.Fatalf("after the interrupt, latest is %q, want the interrupt's checkpoint step-00000005", latest)
	}
	c := filepath.Join(t.TempDir(), "c")
	if err := os.CopyFS(c, os.DirFS(b)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(c, ckptDir, "step-00000005"))
	os.WriteFile(filepath.Join(c, ckptDir, latestName), []byte("step-00000003"), 0o644)
	for _, dir := range []string{b, c} {
		if _, err := Run(context.Background(), ops, cfg, dir, Options{Resume: true}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range append(slices.Clone(tensorFiles), stepsFile) {
		x, _ := os.ReadFile(filepath.Join(a, ckptDir, "step-00000006", f))
		y, _ := os.ReadFile(filepath.Join(c, ckptDir, "step-00000006", f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Fatalf("%s differs after a resume from an earlier checkpoint", f)
		}
	}
	if rc := records(t, filepath.Join(c, "metrics.jsonl")); len(rc) != 6 {
		t.Fatalf("%d metric records after a resume from an earlier checkpoint", len(rc))
	}
	for _, f := range append(slices.Clone(tensorFiles), stepsFile) {
		x, _ := os.ReadFile(filepath.Join(a, ckptDir, "step-00000006", f))
		y, _ := os.ReadFile(filepath.Join(b, ckptDir, "step-00000006", f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Fatalf("%s differs after resume", f)
		}
	}
	ra, rb := records(t, filepath.Join(a, "metrics.jsonl")), records(t, filepath.Join(b, "metrics.jsonl"))
	if len(ra) != 6 || len(rb) != 6 {
		t.Fatalf("%d and %d metric records", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i].Loss != rb[i].Loss || ra[i].GradNorm != rb[i].GradNorm || ra[i].ValLoss != rb[i].ValLoss || ra[i].Stage != rb[i].Stage {
			t.Fatalf("step %d: %+v vs %+v", i, ra[i], rb[i])
		}
	}
	return a, b
}

// TestExportImportHF: exported Hugging Face tensors load back unchanged,
// for GPT-2 and for Llama, whose fused q/k/v and gate/up tensors are split
// into Hugging Face's projections by rows.
func TestExportImportHF(t *testing.T) {
	for _, cfg := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 2, Heads: 2, Channels: 8, MaxT: 8},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 2, Heads: 4, KVHeads: 2, Channels: 16, FF: 24, MaxT: 8, RopeTheta: 10000, NormEps: 1e-5},
	} {
		ops := cpu.New()
		m, err := NewModel(ops, cfg, cfg.InitParams(3))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := ExportHF(m, dir, ExportOptions{}); err != nil {
			t.Fatal(err)
		}
		n, _ := NewModel(ops, cfg, cfg.InitParams(4))
		if err := LoadHF(n, filepath.Join(dir, "model.safetensors")); err != nil {
			t.Fatal(err)
		}
		x, y := make([]float32, cfg.NumParams()), make([]float32, cfg.NumParams())
		ops.Download(x, m.Params())
		ops.Download(y, n.Params())
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s: parameter %d: %v after the round trip, %v before", cfg.Arch, i, y[i], x[i])
			}
		}
		if cfg.Arch != "llama" {
			continue
		}
		ts, shapes, err := readSafetensors(filepath.Join(dir, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]int{
			"model.embed_tokens.weight": {61, 16}, "lm_head.weight": {61, 16}, "model.norm.weight": {16},
			"model.layers.1.input_layernorm.weight": {16}, "model.layers.1.post_attention_layernorm.weight": {16},
			"model.layers.1.self_attn.q_proj.weight": {16, 16}, "model.layers.1.self_attn.k_proj.weight": {8, 16},
			"model.layers.1.self_attn.v_proj.weight": {8, 16}, "model.layers.1.self_attn.o_proj.weight": {16, 16},
			"model.layers.1.mlp.gate_proj.weight": {24, 16}, "model.layers.1.mlp.up_proj.weight": {24, 16},
			"model.layers.1.mlp.down_proj.weight": {16, 24},
		}
		for name, sh := range want {
			if !slices.Equal(shapes[name], sh) {
				t.Fatalf("exported %s has shape %v, want %v", name, shapes[name], sh)
			}
		}
		if len(ts) != 3+2*9 {
			t.Fatalf("exported %d tensors, want %d", len(ts), 3+2*9)
		}
		i := slices.IndexFunc(m.Table(), func(e Param) bool { return e.Name == "model.layers.1.self_attn.qkv_proj.weight" })
		qkv := m.Table()[i]
		if !slices.Equal(ts["model.layers.1.self_attn.v_proj.weight"], x[qkv.Offset+24*16:qkv.Offset+qkv.Size]) {
			t.Fatal("v_proj is not the last rows of the fused q/k/v tensor")
		}
	}
}
