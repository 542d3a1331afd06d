package train

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func resolve(t *testing.T, set ...string) (Config, error) {
	t.Helper()
	var s []Setting
	for i := 0; i < len(set); i += 2 {
		s = append(s, Setting{Name: set[i], Value: set[i+1]})
	}
	return Resolve(s)
}

// TestResolveNumbers: every numeric setting at zero, below zero, NaN and
// ±Inf is either used as given or refused with an error naming it.
func TestResolveNumbers(t *testing.T) {
	// accepted: which of the four special values each option takes as given
	type want struct{ zero, neg bool }
	for name, w := range map[string]want{
		"steps": {}, "batch": {}, "seq": {}, "accum": {}, "lr": {}, "min-lr": {zero: true}, "warmup": {zero: true},
		"beta1": {zero: true}, "beta2": {zero: true}, "eps": {}, "weight-decay": {zero: true}, "clip": {zero: true},
		"neuron-group": {}, "eval-every": {zero: true}, "eval-batches": {zero: true}, "checkpoint-every": {zero: true}, "keep-checkpoints": {},
		"seed": {zero: true},
	} {
		key := strings.ReplaceAll(name, "-", "_")
		for _, v := range []string{"0", "-1", "NaN", "Inf", "-Inf", "1e400"} {
			ok := v == "0" && w.zero || v == "-1" && w.neg
			cfg, err := resolve(t, "data", "d", name, v)
			switch {
			case ok && err != nil:
				t.Errorf("--%s %s: %v", name, v, err)
			case ok:
				b, _ := json.Marshal(cfg)
				var m map[string]any
				json.Unmarshal(b, &m)
				got := m[key]
				if name == "neuron-group" {
					got = m["sampler"].(map[string]any)["group"]
				}
				if got != 0.0 {
					t.Errorf("--%s %s became %v", name, v, got)
				}
			case err == nil:
				t.Errorf("--%s %s accepted", name, v)
			case !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), key):
				t.Errorf("--%s %s: %v (want ErrConfig naming it)", name, v, err)
			}
		}
	}
}

// TestResolvePrecedence: the preset's shape, then the family's recipe,
// then the file, then the flags; min_lr follows lr unless given.
func TestResolvePrecedence(t *testing.T) {
	file := writeFile(t, "c.json", `{"lr": 1e-3, "clip": 0.5, "warmup": 7, "est": "est-gpt2", "data": [{"dir": "a"}, {"dir": "b", "weight": 3}]}`)
	cfg, err := resolve(t, "preset", "llama-tiny", "config", file, "clip", "0", "steps", "50", "data", "c:2")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.Model != Presets["llama-tiny"] || cfg.Preset != "llama-tiny":
		t.Errorf("shape %+v preset %q", cfg.Model, cfg.Preset)
	case cfg.LR != 1e-3 || cfg.MinLR != 1e-4 || cfg.Decay != DecayCosine || cfg.Warmup != 7:
		t.Errorf("lr %g min %g decay %s warmup %d (want the file's lr, a tenth of it, Llama's cosine)", cfg.LR, cfg.MinLR, cfg.Decay, cfg.Warmup)
	case cfg.Clip != 0:
		t.Errorf("--clip 0 over the file's 0.5: %g", cfg.Clip)
	case len(cfg.Data) != 1 || cfg.Data[0] != absEntry(t, "c", 2):
		t.Errorf("data %v (the flags' mixture replaces the file's)", cfg.Data)
	case cfg.Schedule == nil || cfg.Schedule.Ends[2] != 50:
		t.Errorf("est-gpt2 from the file: schedule %v (want the preset scaled to 50 steps)", cfg.Schedule)
	}
	cfg, err = resolve(t, "config", file)
	if err != nil || cfg.Data[0] != absEntry(t, "a", 1) || cfg.Data[1] != absEntry(t, "b", 3) || cfg.Decay != DecayLinear || cfg.Preset != "gpt2-tiny" {
		t.Errorf("file only: %+v %v", cfg, err)
	}
	llama := writeFile(t, "l.json", `{"preset": "x", "model": {"Arch": "llama", "Vocab": 100, "Padded": 128, "Layers": 2, "Heads": 2, "KVHeads": 1, "Channels": 16, "FF": 40, "MaxT": 32, "RopeTheta": 10000, "NormEps": 1e-5}, "min_lr": 0}`)
	cfg, err = resolve(t, "config", llama, "data", "d", "seq", "16")
	if err != nil || cfg.LR != 4e-4 || cfg.Decay != DecayCosine || cfg.MinLR != 0 || cfg.Preset != "" {
		t.Errorf("a Llama shaped by the file: lr %g decay %s min %g preset %q, %v", cfg.LR, cfg.Decay, cfg.MinLR, cfg.Preset, err)
	}
	if _, err := resolve(t, "config", llama, "preset", "gpt2-tiny", "data", "d"); !errors.Is(err, ErrConfig) {
		t.Errorf("--preset with a file's model: %v", err)
	}
	for name, text := range map[string]string{
		"unknown key":      `{"lr": 1e-3, "learning_rate": 1}`,
		"unknown sampler":  `{"sampler": {"group": 1, "grup": 2}}`,
		"unknown model":    `{"model": {"Layers": 1, "Depth": 2}}`,
		"bad enum":         `{"decay": "exp"}`,
		"bad sampler enum": `{"sampler": {"heads": "some"}}`,
		"bad precision":    `{"matmul": "fp8"}`,
		"bad est":          `{"est": "est-bert"}`,
		"est off schedule": `{"est": "off", "schedule": {"ends": [1], "rates": [{"PH": 1, "PM": 1, "PL": 1}]}}`,
		"custom no sched":  `{"est": "custom"}`,
		"preset schedule":  `{"est": "est-gpt2", "schedule": {"ends": [1], "rates": [{"PH": 1, "PM": 1, "PL": 1}]}}`,
		"trailing":         `{"lr": 1e-3} {}`,
		"not an object":    `[1]`,
		"null":             `null`,
		"negative keep":    `{"keep_checkpoints": -1}`,
		"NaN in model":     `{"model": {"Arch": "llama", "Vocab": 100, "Padded": 128, "Layers": 2, "Heads": 2, "Channels": 16, "FF": 40, "MaxT": 32, "RopeTheta": 1e999, "NormEps": 1e-5}}`,
		"no preset":        `{"preset": "gpt2-huge"}`,
	} {
		if _, err := resolve(t, "config", writeFile(t, "f.json", text), "data", "d"); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v (want ErrConfig)", name, err)
		}
	}
	if _, err := resolve(t, "config", writeFile(t, "w.json", `{"data": [{"dir": "a", "weight": 0}]}`)); !errors.Is(err, ErrConfig) {
		t.Errorf("a data weight of 0 in a file: %v", err)
	}
	for _, d := range []string{"dir:0.5x", "dir:", "dir:-1", "dir:Inf", ":1", ""} {
		if _, err := resolve(t, "data", d); !errors.Is(err, ErrConfig) {
			t.Errorf("--data %q: %v", d, err)
		}
	}
	if cfg, err := resolve(t, "data", "a:b:0.5"); err != nil || cfg.Data[0] != absEntry(t, "a:b", 0.5) {
		t.Errorf("--data a:b:0.5: %v %v", cfg.Data, err)
	}
	if _, err := resolve(t, "data", "d", "est", "est-gpt2", "est-stages", "1,2", "est-rates", "1:1:1,1:1:1"); !errors.Is(err, ErrConfig) {
		t.Errorf("two schedules: %v", err)
	}
}

// TestResolveFileFields: a configuration file giving every field resolves
// to exactly that configuration (config.json round-trips), and each field
// of it overrides the recipe on its own.
func TestResolveFileFields(t *testing.T) {
	s := ESTPresets["est-tinyllama"].Scaled(40)
	want := Recipe(Presets["llama-tiny"])
	want.Preset, want.Data = "llama-tiny", []Data{absEntry(t, "a", 0.25), absEntry(t, "b", 0.75)}
	want.Steps, want.Batch, want.Seq, want.Accum, want.Seed, want.Order, want.InitFrom = 40, 3, 17, 2, 9, "sequential", "hf.safetensors"
	want.LR, want.MinLR, want.Warmup, want.Decay = 2e-4, 0, 5, DecayLinear
	want.Beta1, want.Beta2, want.Eps, want.WeightDecay, want.Clip = 0, 0.5, 1e-6, 0, 0
	want.MatMul, want.Attention, want.Activations = BF16, BF16, BF16
	want.EST, want.Schedule, want.SampleEvery = "est-tinyllama", &s, SampleMicrobatch
	want.Sampler = SamplerOptions{LayerMode: LayerModeBernoulli, Shared: true, Group: 8, Heads: "within", Update: "sampled"}
	want.EvalEvery, want.EvalBatches, want.CheckpointEvery, want.KeepCheckpoints = 3, 7, 11, 5
	b, _, err := want.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := resolve(t, "config", writeFile(t, "all.json", string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if g, _, _ := got.encode(); string(g) != string(b) {
		t.Errorf("a file of every field resolved to\n%s\nwant\n%s", g, b)
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(b, &fields)
	for k, v := range fields {
		if k == "model" || k == "preset" || k == "schedule" || k == "est" || k == "data" {
			continue
		}
		text := `{"` + k + `": ` + string(v) + `, "data": [{"dir": "x"}], "model": ` + string(fields["model"]) + `}`
		got, err := resolve(t, "config", writeFile(t, "one.json", text))
		if err != nil {
			t.Errorf("%s alone: %v", k, err)
			continue
		}
		var m map[string]json.RawMessage
		g, _, _ := got.encode()
		json.Unmarshal(g, &m)
		if string(m[k]) != string(v) {
			t.Errorf("%s alone: resolved to %s, want %s", k, m[k], v)
		}
	}
}

// TestResolveResume: --resume takes new steps and evaluation and
// checkpoint settings, keeps the schedules' horizon, and refuses any other
// setting by name.
func TestResolveResume(t *testing.T) {
	cfg, err := resolve(t, "data", "d", "steps", "40", "est", "est-gpt2", "warmup", "4")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, _, _ := configBytes(&cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveResume(dir, []Setting{{"steps", "60"}, {"eval-every", "5"}, {"checkpoint-every", "10"}, {"eval-batches", "2"}, {"keep-checkpoints", "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Steps != 60 || got.Horizon != 40 || got.EvalEvery != 5 || got.CheckpointEvery != 10 || got.EvalBatches != 2 || got.KeepCheckpoints != 3 {
		t.Errorf("resumed %+v", got)
	}
	if a, b := got.LRAt(39), got.LRAt(59); math.Abs(a-got.MinLR) > 1e-15 || b != a || got.LRAt(20) != cfg.LRAt(20) {
		t.Errorf("lr over the extension: %g at 39, %g at 59, %g at 20 (was %g)", a, b, got.LRAt(20), cfg.LRAt(20))
	}
	x := got
	resumableOf(&cfg).apply(&x)
	x.Horizon = cfg.Horizon
	if a, b := mustEncode(t, &cfg), mustEncode(t, &x); a != b {
		t.Errorf("an extension changed more than the settings a resume may change:\n%s\nwant\n%s", b, a)
	}
	if s, r := got.Schedule.At(59); s != 2 || r != (Rates{1, 1, 1}) {
		t.Errorf("step 59 of the extension: stage %d %v (want the last stage)", s, r)
	}
	again, err := ResolveResume(dir, nil)
	if err != nil || again.Horizon != 0 || again.Steps != 40 {
		t.Errorf("resume without changes: %+v %v", again, err)
	}
	_, err = ResolveResume(dir, []Setting{{"lr", "1"}, {"steps", "50"}, {"data", "e"}, {"clip", "0"}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "--lr 1 (the run's lr is 0.0006); --data e (the run's data is ") || !strings.Contains(err.Error(), "; --clip 0 (the run's clip is 1) cannot change") {
		t.Errorf("refused changes: %v", err)
	}
	for _, bad := range []Setting{{"steps", "0"}, {"eval-every", "-1"}, {"steps", "NaN"}} {
		if _, err := ResolveResume(dir, []Setting{bad}); !errors.Is(err, ErrConfig) {
			t.Errorf("resume --%s %s: %v", bad.Name, bad.Value, err)
		}
	}
}

// TestResumeFloatSettings: a float setting --resume cannot change is
// accepted when the optimizer would use it identically (equal as float32,
// the precision AdamW computes in): min_lr defaults to lr/10, which is
// 5.9999999999999995e-05 for lr 6e-4, and --min-lr 6e-5 is that value. A
// refusal shows the run's value beside the one given.
func TestResumeFloatSettings(t *testing.T) {
	cfg, err := resolve(t, "data", "d", "steps", "4")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinLR == 6e-5 {
		t.Fatalf("min_lr %v: the test needs lr/10 to differ from 6e-5 in float64", cfg.MinLR)
	}
	dir := t.TempDir()
	b, _, _ := configBytes(&cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ResolveResume(dir, []Setting{{"min-lr", "6e-5"}, {"lr", "6e-4"}, {"eps", "1e-8"}})
	if err != nil {
		t.Fatalf("--min-lr 6e-5 on a run at lr/10 = %v: %v", cfg.MinLR, err)
	}
	if got.MinLR != cfg.MinLR {
		t.Errorf("accepted --min-lr 6e-5 changed the run's min_lr %v to %v (a resume keeps it exact)", cfg.MinLR, got.MinLR)
	}
	_, err = ResolveResume(dir, []Setting{{"min-lr", "7e-5"}, {"clip", "0.5"}})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("--min-lr 7e-5 --clip 0.5: %v", err)
	}
	says(t, "refusal", err, "--min-lr 7e-5 (the run's min_lr is 6e-05)", "--clip 0.5 (the run's clip is 1)")
}

// TestLRAt: warmup, decay to MinLR at the last step of the horizon, MinLR
// after it (linear and cosine).
func TestLRAt(t *testing.T) {
	for _, d := range []Decay{DecayLinear, DecayCosine} {
		c := Config{Batching: Batching{Steps: 10}, LRSchedule: LRSchedule{Warmup: 2, LR: 1, MinLR: 0.1, Decay: d}}
		if c.LRAt(0) != 0.5 || c.LRAt(2) != 1 || math.Abs(c.LRAt(9)-0.1) > 1e-15 {
			t.Errorf("%s: %g %g %g", d, c.LRAt(0), c.LRAt(2), c.LRAt(9))
		}
		c.Steps, c.Horizon = 20, 10
		for s := 9; s < 20; s++ {
			if math.Abs(c.LRAt(s)-0.1) > 1e-15 {
				t.Errorf("%s: step %d past the horizon: %g", d, s, c.LRAt(s))
			}
		}
	}
}

// TestEstimateMemory: the estimate covers what a step allocates (the
// parameter table's size, the activations a forward and backward pass
// hold) for both families, and the refusal names a micro-batch that fits.
func TestEstimateMemory(t *testing.T) {
	ops := cpu.New()
	for _, m := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 3, Heads: 4, Channels: 32, MaxT: 16},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 3, Heads: 4, KVHeads: 2, Channels: 32, FF: 88, MaxT: 16, RopeTheta: 10000, NormEps: 1e-5},
	} {
		cfg := Recipe(m)
		cfg.Batch, cfg.Seq = 3, 16
		e := EstimateMemory(ops, &cfg)
		if e.Params != 4*float64(m.NumParams()) {
			t.Errorf("%s: parameters %g bytes, the table has %d values", m.Arch, e.Params, m.NumParams())
		}
		model, err := InitModel(ops, m, 1)
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int32, cfg.Batch*cfg.Seq)
		for i := range ids {
			ids[i] = int32(i % m.Vocab)
		}
		if _, err := model.Forward(ids, ids, cfg.Batch, cfg.Seq, nil); err != nil {
			t.Fatal(err)
		}
		if err := model.Backward(1); err != nil {
			t.Fatal(err)
		}
		// the block state and gathered weights, plus the logits and the
		// C-wide buffers outside the blocks
		held := 4 * float64(model.ActivationFloats()+cfg.Batch*cfg.Seq*(m.Padded+5*m.Channels))
		if e.Activations < held || e.Activations > 3*held {
			t.Errorf("%s: activations estimated at %g bytes, a step holds %g", m.Arch, e.Activations, held)
		}
		limit := int64(e.Total() - 1.5*e.PerSequence)
		err = checkMemory(ops, &cfg, limit)
		if !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "largest micro-batch that fits: --batch 1 ") {
			t.Errorf("%s: a limit 1.5 sequences short: %v", m.Arch, err)
		}
		cfg.Batch = 1
		if err := checkMemory(ops, &cfg, limit); err != nil {
			t.Errorf("%s: the micro-batch named does not fit: %v", m.Arch, err)
		}
	}
	cfg := Recipe(Presets["gpt2-124m"])
	cfg.Batch, cfg.Seq = 1, 1024
	if err := checkMemory(ops, &cfg, 1<<30); !errors.Is(err, ErrMemory) || !strings.Contains(err.Error(), "none") {
		t.Errorf("124M in 1 GiB: %v", err)
	}
}

// FuzzResolveConfig: no --config file makes decoding, validation or
// resolution panic, and whatever resolves passes Check and encodes.
func FuzzResolveConfig(f *testing.F) {
	good := Recipe(Presets["gpt2-tiny"])
	good.Data = []Data{{Dir: "/d", Weight: 1}}
	b, _, _ := good.encode()
	f.Add(string(b))
	f.Add(`{"est": "est-gpt2"}`)
	f.Add(`{"keep_checkpoints": -1}`)
	f.Add(`{"model": {"Arch": "llama", "Vocab": 100, "Padded": 128, "Layers": 2, "Heads": 2, "KVHeads": 1, "Channels": 16, "FF": 40, "MaxT": 32, "RopeTheta": 10000, "NormEps": 1e-5}}`)
	f.Add(`{"model": {"Vocab": 16777216, "Padded": 16777216, "Layers": 16777216, "Heads": 1, "Channels": 16777216, "MaxT": 16777216}, "seq": 16777216, "batch": 16777216}`)
	f.Add(`{"sampler": {"group": 0}, "est": "custom", "schedule": {"ends": [2, 1], "rates": []}}`)
	f.Add(`{"lr": 1e308, "min_lr": 1e308, "warmup": 9223372036854775807, "steps": 9223372036854775807}`)
	f.Add(`{"lr": null, "LR": 1, "steps": 2.5, "seed": -1, "schedule": {"Ends": [1], "rates": [{"ph": 1, "PH": 1}]}, "horizon": 1e9}`)
	f.Add("\ufeff{\"model\": {\"arch\": \"llama\", \"Vocab\": 100, \"vocab\": 100}}")
	f.Add(`{"model": {"vocab": 129, "layers": 1, "heads": 1, "channels": 16, "max_t": 8}, "lr": 1e-400, "clip": -0}`)
	f.Add(`{"model": {"vocab": 100, "padded": 0, "layers": 1, "heads": 1, "channels": 16, "max_t": 8}, "weight_decay": 0x1p-2000}`)
	dir := f.TempDir()
	ops := cpu.New()
	f.Fuzz(func(t *testing.T, text string) {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := Resolve([]Setting{{"config", p}, {"data", "d"}})
		if err != nil {
			return
		}
		if err := cfg.Check(); err != nil {
			t.Fatalf("resolved but fails Check: %v", err)
		}
		if _, _, err := cfg.encode(); err != nil {
			t.Fatal(err)
		}
		for s := range min(cfg.Steps, 3) {
			if lr := cfg.LRAt(s); math.IsNaN(lr) {
				t.Fatalf("lr NaN at step %d", s)
			}
		}
		EstimateMemory(ops, &cfg)
	})
}

func mustEncode(t *testing.T, c *Config) string {
	t.Helper()
	b, _, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// absEntry is the data entry Resolve records for dir: its absolute path.
func absEntry(t testing.TB, dir string, w float64) Data {
	t.Helper()
	a, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Data{Dir: a, Weight: w}
}

// TestConfigEncodingUnchanged: grouping Config's fields into embedded
// structs left config.json as every run so far wrote it, key for key and
// in order (a checkpoint records the hash of these bytes): a config.json
// written before the grouping decodes and encodes back byte for byte, and
// a Config with every field set encodes its keys in the old order.
func TestConfigEncodingUnchanged(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "config-v1-flat.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f ConfigFile
	if err := json.Unmarshal(old, &f); err != nil {
		t.Fatal(err)
	}
	again, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != strings.TrimRight(string(old), "\n") {
		t.Errorf("config.json re-encoded differs:\n%s\nwant\n%s", again, old)
	}
	c := Recipe(Presets["gpt2-tiny"])
	c.Preset, c.InitFrom, c.Ranks, c.GlobalBatch, c.Horizon = "gpt2-tiny", "hf/", 2, 8, 200
	c.MatMul, c.Attention, c.Activations = "bf16", "bf16", "bf16"
	c.Data = []Data{{Dir: "tok", Weight: 1}}
	c.Schedule = &Schedule{Ends: []int{10}, Rates: []Rates{{1, 1, 1}}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.Token() // {
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	want := "preset model data steps batch seq accum seed order init_from ranks global_batch lr min_lr warmup decay beta1 beta2 eps weight_decay clip matmul attention activations est schedule sampler sample_every eval_every eval_batches checkpoint_every keep_checkpoints horizon"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("keys\n%s\nwant\n%s", got, want)
	}
}

// TestESTStagesFitTheRun: a stage that ends past the run's last step (its
// horizon) is refused, whether the stages were given or a preset's were
// scaled to fewer steps than it has stages; a preset scales to the horizon
// a config file gives, not to --steps.
func TestESTStagesFitTheRun(t *testing.T) {
	for _, tc := range [][]string{
		{"data", "d", "steps", "10", "est-stages", "5,20", "est-rates", "0.5:0.5:1,1:1:1"},
		{"data", "d", "steps", "2", "est", "est-gpt2"},
		{"data", "d", "steps", "1", "est", "est-tinyllama"},
	} {
		if _, err := resolve(t, tc...); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "stage") {
			t.Errorf("%v: %v (want a refusal naming the stages)", tc, err)
		}
	}
	if _, err := resolve(t, "data", "d", "steps", "10", "est-stages", "5,10", "est-rates", "0.5:0.5:1,1:1:1"); err != nil {
		t.Errorf("stages ending at the last step: %v", err)
	}
	short := writeFile(t, "s.json", `{"horizon": 2, "est": "est-gpt2"}`)
	if _, err := resolve(t, "config", short, "data", "d", "steps", "3"); err == nil || !strings.Contains(err.Error(), "horizon of 2") || strings.Contains(err.Error(), "at least 3 steps") {
		t.Errorf("horizon 2 from the file: %v (want the horizon named, not the steps)", err)
	}
	file := writeFile(t, "h.json", `{"horizon": 20, "est": "est-gpt2"}`)
	cfg, err := resolve(t, "config", file, "data", "d", "steps", "10")
	if err != nil || cfg.Schedule == nil || cfg.Schedule.Ends[2] != 20 {
		t.Errorf("horizon 20 from the file with est-gpt2: %v, %v (want the preset scaled to 20 steps)", cfg.Schedule, err)
	}
}

// TestSettingWarnings: settings a run accepts but that cannot do what
// they say are warned of at start: a warmup longer than the run, heads
// sampled "within" groups of one, EST stages that end before the run.
func TestSettingWarnings(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string // "" : no warning
	}{
		{[]string{"data", "d", "steps", "3", "warmup", "100"}, "warmup 100"},
		{[]string{"data", "d", "steps", "10", "warmup", "2"}, ""},
		{[]string{"data", "d", "steps", "10", "est", "est-gpt2", "est-heads", "within"}, "within"},
		{[]string{"data", "d", "preset", "llama-mini", "steps", "10", "est", "est-gpt2", "est-heads", "within"}, ""},
		{[]string{"data", "d", "steps", "10", "est-stages", "5,8", "est-rates", "0.5:0.5:1,0.5:0.5:0.5"}, "end at step 8"},
		{[]string{"data", "d", "steps", "10", "est-stages", "5,10", "est-rates", "0.5:0.5:1,1:1:1"}, ""},
		{[]string{"data", "d", "steps", "10", "eval-batches", "0", "eval-every", "2"}, "eval_every 2"},
	} {
		cfg, err := resolve(t, tc.set...)
		if err != nil {
			t.Fatalf("%v: %v", tc.set, err)
		}
		w := strings.Join(cfg.Warnings(), "\n")
		if tc.want == "" && w != "" || !strings.Contains(w, tc.want) {
			t.Errorf("%v: warnings %q (want %q)", tc.set, w, tc.want)
		}
	}
}
