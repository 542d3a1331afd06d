package train

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// stepsFixture is a run of AdamW steps whose selections change from step
// to step (train/testdata/gpt2_ref.py, run_steps).
type stepsFixture struct {
	Config struct {
		Arch                                   string
		Vocab, Padded, Layers, Heads, Channels int
		KVHeads                                int     `json:"kv_heads"`
		FF                                     int     `json:"ff"`
		MaxT                                   int     `json:"max_t"`
		RopeTheta                              float64 `json:"rope_theta"`
		NormEps                                float64 `json:"norm_eps"`
		B, T                                   int
	}
	Update string
	Params []float32
	AdamW  struct {
		LR, Beta1, Beta2, Eps float32
		WeightDecay           float32 `json:"weight_decay"`
	} `json:"adamw"`
	Steps []struct {
		Selection    fixtureSelection
		IDs, Targets []int32
		Loss         float32
		Noise        []int32
		ParamsAfter  []float32 `json:"params_after"`
	}
}

type fixtureSelection struct {
	Layers  []int              `json:"layers"`
	Heads   map[string][]int32 `json:"heads"`
	Neurons map[string][]int32 `json:"neurons"`
	HScale  float32            `json:"hscale"`
	MScale  float32            `json:"mscale"`
}

// selection is the fixture's selection for a model of L blocks (nil: the
// full model).
func (s fixtureSelection) selection(L int) *Selection {
	if s.Layers == nil && s.Heads == nil && s.Neurons == nil {
		return nil
	}
	sel := &Selection{Layers: s.Layers, Heads: make([][]int32, L), Neurons: make([][]int32, L), HScale: s.HScale, MScale: s.MScale}
	for k, v := range s.Heads {
		l, _ := strconv.Atoi(k)
		sel.Heads[l] = v
	}
	for k, v := range s.Neurons {
		l, _ := strconv.Atoi(k)
		sel.Neurons[l] = v
	}
	return sel
}

// TestAdamWStepCountsMatchPyTorch: over steps whose selections skip a
// block at one step and run it at the next, the loss of every step and the
// parameters after it equal PyTorch's: torch.optim.AdamW, which counts each
// parameter's steps and skips one without a gradient ("dense"), and a
// per-element AdamW with each sampled row's or column's own count
// ("sampled").
func TestAdamWStepCountsMatchPyTorch(t *testing.T) {
	for _, name := range []string{"gpt2-est-steps-dense", "gpt2-est-steps-sampled", "llama-est-steps-dense", "llama-est-steps-sampled"} {
		t.Run(name, func(t *testing.T) { matchSteps(t, name) })
	}
}

func matchSteps(t *testing.T, name string) {
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f stepsFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	c := f.Config
	cfg := ModelConfig{Arch: c.Arch, Vocab: c.Vocab, Padded: c.Padded, Layers: c.Layers, Heads: c.Heads, KVHeads: c.KVHeads,
		Channels: c.Channels, FF: c.FF, MaxT: c.MaxT, RopeTheta: c.RopeTheta, NormEps: c.NormEps}
	heldLayout(cfg, f.Params)
	for _, s := range f.Steps {
		heldLayout(cfg, s.ParamsAfter)
	}
	ops := cpu.New()
	m, err := NewModel(ops, cfg, f.Params)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Steps) < 3 {
		t.Fatalf("fixture has %d steps", len(f.Steps))
	}
	a := f.AdamW
	got := make([]float32, cfg.NumParams())
	noise := map[int32]bool{}
	for i, s := range f.Steps {
		sel := s.Selection.selection(cfg.Layers)
		plan := Plan{sel}
		skipped := plan.Skipped(cfg.Layers)
		m.ZeroGrads(skipped)
		loss, err := m.Forward(s.IDs, s.Targets, c.B, c.T, sel)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(float64(loss-s.Loss)) > 1e-6*math.Abs(float64(s.Loss)) {
			t.Fatalf("step %d: loss %v, PyTorch %v", i+1, loss, s.Loss)
		}
		if err := m.Backward(1); err != nil {
			t.Fatal(err)
		}
		so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: a.LR, Beta1: a.Beta1, Beta2: a.Beta2, Eps: a.Eps, WeightDecay: a.WeightDecay, Step: i + 1},
			Skipped: skipped}
		if f.Update == "sampled" {
			so.Sampled = plan.Units(cfg.Layers)
		}
		if err := m.Step(so); err != nil {
			t.Fatal(err)
		}
		ops.Download(got, m.Params())
		want := append([]float32(nil), s.ParamsAfter...)
		// Where PyTorch's gradient is float noise (the fixture lists those
		// elements: GPT-2's key bias, whose true gradient is zero, and the
		// odd element whose gradient nearly cancels), AdamW scales it up
		// to a step of about lr whatever its value. Those elements are held
		// to that, and from then on compared as equal.
		for _, k := range s.Noise {
			noise[k] = true
		}
		for k := range noise {
			if d := math.Abs(float64(got[k] - want[k])); d > 2*float64(a.LR)*float64(i+1) {
				t.Fatalf("step %d: parameter %d (gradient noise) %g, PyTorch %g", i+1, k, got[k], want[k])
			}
			want[k] = got[k]
		}
		closeTo(t, "step "+strconv.Itoa(i+1)+": parameters", m.Table(), got, want, 2e-6)
	}
}

// TestStepCountsCheckpoint: per-row counts of the "sampled" update and
// per-tensor counts of skipped blocks survive a checkpoint; a damaged or
// missing counts file is an error naming it.
func TestStepCountsCheckpoint(t *testing.T) {
	cfg, B, T, ids := fourBlocks()
	s := &Sampler{Seed: 5, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 0.5}}}}
	ops := cpu.New()
	m, err := NewModel(ops, cfg, cfg.InitParams(1))
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 3; step++ {
		sel, _, _ := s.Sample(step, 0)
		plan := Plan{sel}
		skipped := plan.Skipped(cfg.Layers)
		m.ZeroGrads(skipped)
		if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
			t.Fatal(err)
		}
		m.Backward(1)
		m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8}, Skipped: skipped, Sampled: plan.Units(cfg.Layers)})
	}
	counts := m.StepCounts()
	uneven := false
	for _, c := range counts {
		uneven = uneven || slices.ContainsFunc(c, func(n int32) bool { return n != c[0] })
	}
	if !uneven || counts[0][0] != 3 {
		t.Fatalf("after 3 sampled steps: counts %v", counts)
	}
	dir := t.TempDir()
	if _, err := m.SaveTensors(dir); err != nil {
		t.Fatal(err)
	}
	m2, _ := NewModel(cpu.New(), cfg, nil)
	if err := m2.LoadTensors(dir, true); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(counts, m2.StepCounts()) {
		t.Fatal("step counts differ after a checkpoint")
	}
	path := filepath.Join(dir, stepsFile)
	for _, bad := range []string{`{"format":"estkit-adam-steps","tensors":{}}`, `{"format":"other"}`, `{`, `{"format":"estkit-adam-steps","tensors":{"wte.weight":[1,2]}}`} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := m2.LoadTensors(dir, true); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	os.Remove(path)
	if err := m2.LoadTensors(dir, true); err == nil || !strings.Contains(err.Error(), stepsFile) {
		t.Errorf("no counts file: %v", err)
	}
	if err := m2.LoadTensors(dir, false); err != nil {
		t.Errorf("parameters alone need no counts: %v", err)
	}
}

// TestLlamaStageStatistics: stages.json counts a Llama's neurons over its
// MLP width (not 4·C), and its per-unit counts equal a direct count of the
// selections est-trace recomputes (NewSampler's); config.json, stages.json
// and metrics.jsonl record the rates the model realises (one key/value
// group: heads cannot be halved), stages numbered from 0 in both.
func TestLlamaStageStatistics(t *testing.T) {
	cfg := tinyRun(tokenSet(t))
	cfg.Model = ModelConfig{Arch: "llama", Vocab: 50257, Padded: 50304, Layers: 2, Heads: 4, KVHeads: 1, Channels: 16, FF: 44, MaxT: 16, RopeTheta: 10000, NormEps: 1e-5}
	s, _ := ParseSchedule("3,6", "0.5:0.3:0.5,0.5:0.5:1")
	cfg.Schedule, cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery = &s, 6, 0, 0
	out := filepath.Join(t.TempDir(), "run")
	if _, err := Run(context.Background(), cpu.New(), cfg, out, Options{}); err != nil {
		t.Fatal(err)
	}
	var stages []StageStats
	b, _ := os.ReadFile(filepath.Join(out, "stages.json"))
	if err := json.Unmarshal(b, &stages); err != nil || len(stages) != 2 {
		t.Fatalf("stages.json: %s %v", b, err)
	}
	savedFile, err := ReadRunConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	saved := *savedFile
	cfg.Defaults()
	sampler := NewSampler(&cfg)
	// 0.3 of 44 neurons is 13 (a fraction 13/44); one key/value group is
	// kept whole, so every head runs
	wantRates := []Rates{{1, 13.0 / 44, 0.5}, {1, 0.5, 1}}
	if !reflect.DeepEqual(saved.Schedule.Realised, wantRates) {
		t.Fatalf("config.json realised rates %+v, want %+v", saved.Schedule.Realised, wantRates)
	}
	recs := records(t, filepath.Join(out, "metrics.jsonl"))
	for i, st := range stages {
		counts := [3][]int64{make([]int64, cfg.Model.Layers), make([]int64, cfg.Model.Heads), make([]int64, cfg.Model.FF)}
		for step := 0; step < cfg.Steps; step++ {
			sel, stage, r := sampler.Sample(step, 0)
			if stage != i {
				continue
			}
			if recs[step].Stage != stage || recs[step].Rates != r || r != wantRates[i] || st.Stage != i || st.Rates != r {
				t.Fatalf("step %d: metrics stage %d rates %+v, stages.json stage %d rates %+v, sampler %d %+v",
					step, recs[step].Stage, recs[step].Rates, st.Stage, st.Rates, stage, r)
			}
			layers := sel.Layers // est-trace's view: null for all blocks
			if layers == nil {
				layers = []int{0, 1}
			}
			for _, l := range layers {
				counts[0][l]++
				for h := range counts[1] {
					if sel.Heads[l] == nil || slices.Contains(sel.Heads[l], int32(h)) {
						counts[1][h]++
					}
				}
				for n := range counts[2] {
					if sel.Neurons[l] == nil || slices.Contains(sel.Neurons[l], int32(n)) {
						counts[2][n]++
					}
				}
			}
		}
		want := []Frequency{frequency(counts[0]), frequency(counts[1]), frequency(counts[2])}
		if got := []Frequency{st.Layers, st.Heads, st.Neurons}; !reflect.DeepEqual(got, want) {
			t.Fatalf("stage %d: stages.json chosen %+v, est-trace's selections %+v", i, got, want)
		}
	}
}

// TestModelConfigJSON: a model shape is written with snake_case keys and
// read back by them or by the CamelCase keys of earlier config.json files;
// an unknown key is refused.
func TestModelConfigJSON(t *testing.T) {
	c := Presets["llama-tiny"]
	b, err := json.Marshal(c)
	if err != nil || !strings.Contains(string(b), `"kv_heads":1`) || !strings.Contains(string(b), `"max_t":512`) || strings.Contains(string(b), "Vocab") {
		t.Fatalf("%s %v", b, err)
	}
	var back ModelConfig
	if err := json.Unmarshal(b, &back); err != nil || back != c {
		t.Fatalf("read back %+v %v", back, err)
	}
	old := `{"Arch":"llama","Vocab":32000,"Padded":32000,"Layers":4,"Heads":8,"KVHeads":1,"Channels":256,"FF":704,"MaxT":512,"RopeTheta":10000,"NormEps":1e-05}`
	if err := json.Unmarshal([]byte(old), &back); err != nil || back != c {
		t.Fatalf("earlier keys: %+v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"vocab":5,"layerz":2}`), &back); err == nil || !strings.Contains(err.Error(), "layerz") {
		t.Fatalf("unknown key: %v", err)
	}
}
