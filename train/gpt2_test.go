package train

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

type fixture struct {
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
	Selection struct {
		Layers  []int              `json:"layers"`
		Heads   map[string][]int32 `json:"heads"`
		Neurons map[string][]int32 `json:"neurons"`
		HScale  float32            `json:"hscale"`
		MScale  float32            `json:"mscale"`
	}
	IDs, Targets []int32
	Params       []float32
	Logits       []float32
	Loss         float32
	Grads        []float32
	AdamW        struct {
		LR, Beta1, Beta2, Eps float32
		WeightDecay           float32 `json:"weight_decay"`
		Steps                 int
	} `json:"adamw"`
	ParamsAfter []float32 `json:"params_after"`
}

func loadFixture(t *testing.T, name string) (*fixture, ModelConfig, *Selection) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	c := f.Config
	cfg := ModelConfig{Arch: c.Arch, Vocab: c.Vocab, Padded: c.Padded, Layers: c.Layers, Heads: c.Heads, KVHeads: c.KVHeads,
		Channels: c.Channels, FF: c.FF, MaxT: c.MaxT, RopeTheta: c.RopeTheta, NormEps: c.NormEps}
	heldLayout(cfg, f.Params, f.Grads, f.ParamsAfter)
	var sel *Selection
	s := f.Selection
	if s.Layers != nil || s.Heads != nil || s.Neurons != nil {
		sel = &Selection{Layers: s.Layers, Heads: make([][]int32, c.Layers), Neurons: make([][]int32, c.Layers), HScale: s.HScale, MScale: s.MScale}
		for k, v := range s.Heads {
			l, _ := strconv.Atoi(k)
			sel.Heads[l] = v
		}
		for k, v := range s.Neurons {
			l, _ := strconv.Atoi(k)
			sel.Neurons[l] = v
		}
	}
	return &f, cfg, sel
}

// heldLayout rewrites a fixture's flat vectors, in PyTorch's layout, in
// the model's (Param.Held), where each has the model's size (a fixture
// whose size is wrong is told so by the test that uses it).
func heldLayout(cfg ModelConfig, vs ...[]float32) {
	for _, v := range vs {
		if len(v) == cfg.NumParams() {
			cfg.TorchToHeld(v)
		}
	}
}

// closeTo compares per tensor of the table: every value within 1e-5 of
// the tensor's largest magnitude (float32 sums in another order).
func closeTo(t *testing.T, what string, table []Param, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for _, e := range table {
		var scale float64
		for _, v := range want[e.Offset : e.Offset+e.Size] {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for i := e.Offset; i < e.Offset+e.Size; i++ {
			if d := math.Abs(float64(got[i] - want[i])); d > tol*math.Max(scale, 1e-6) {
				if bad++; bad <= 5 {
					t.Errorf("%s %s[%d]: %g, PyTorch %g (tensor scale %g)", what, e.Name, i-e.Offset, got[i], want[i], scale)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d values differ", what, bad)
	}
}

// TestGPT2MatchesPyTorch: logits, loss, gradients and the parameters after
// three AdamW steps equal PyTorch's (train/testdata/gpt2_ref.py), for the
// full model and for subnetworks of sampled heads, neurons and blocks.
func TestGPT2MatchesPyTorch(t *testing.T) {
	for _, name := range []string{"gpt2-full", "gpt2-est-width", "gpt2-est-layers"} {
		t.Run(name, func(t *testing.T) { matchFixture(t, name) })
	}
}

// TestLlamaMatchesPyTorch: the same for Llama (train/testdata/
// llama_ref.py), with grouped-query attention, for the full model, whole
// key/value groups, query heads within every group, and skipped blocks.
func TestLlamaMatchesPyTorch(t *testing.T) {
	for _, name := range []string{"llama-full", "llama-est-groups", "llama-est-within", "llama-est-layers"} {
		t.Run(name, func(t *testing.T) { matchFixture(t, name) })
	}
}

// matchFixture compares one PyTorch fixture with the model's forward,
// backward and AdamW steps.
func matchFixture(t *testing.T, name string) {
	f, cfg, sel := loadFixture(t, name)
	matchSelection(t, f, cfg, sel)
}

// matchSelection compares the fixture f with the model's forward, backward
// and AdamW steps under sel.
func matchSelection(t *testing.T, f *fixture, cfg ModelConfig, sel *Selection) {
	t.Helper()
	if len(f.Params) != cfg.NumParams() {
		t.Fatalf("fixture has %d parameters, the table %d", len(f.Params), cfg.NumParams())
	}
	ops := cpu.New()
	m, err := NewModel(ops, cfg, f.Params)
	if err != nil {
		t.Fatal(err)
	}
	B, T := f.Config.B, f.Config.T
	loss, err := m.Forward(f.IDs, f.Targets, B, T, sel)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(float64(loss-f.Loss)) > 1e-5*math.Abs(float64(f.Loss)) {
		t.Fatalf("loss %v, PyTorch %v", loss, f.Loss)
	}
	logits := make([]float32, B*T*cfg.Padded)
	ops.Download(logits, m.Logits())
	for i := 0; i < B*T; i++ {
		for v := 0; v < cfg.Vocab; v++ {
			g, w := logits[i*cfg.Padded+v], f.Logits[i*cfg.Vocab+v]
			if math.Abs(float64(g-w)) > 1e-5*math.Max(1, math.Abs(float64(w))) {
				t.Fatalf("logit [%d,%d] %v, PyTorch %v", i, v, g, w)
			}
		}
	}
	m.ZeroGrads(nil)
	if err := m.Backward(1); err != nil {
		t.Fatal(err)
	}
	grads := make([]float32, cfg.NumParams())
	ops.Download(grads, m.Grads())
	closeTo(t, "gradient", m.Table(), grads, f.Grads, 1e-5)
	skipped := map[int]bool{}
	if sel != nil && sel.Layers != nil {
		for l := 0; l < cfg.Layers; l++ {
			skipped[l] = true
		}
		for _, l := range sel.Layers {
			delete(skipped, l)
		}
	}
	a := f.AdamW
	for step := 1; step <= a.Steps; step++ {
		if step > 1 {
			m.ZeroGrads(skipped)
			if _, err := m.Forward(f.IDs, f.Targets, B, T, sel); err != nil {
				t.Fatal(err)
			}
			m.Backward(1)
		}
		m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: a.LR, Beta1: a.Beta1, Beta2: a.Beta2, Eps: a.Eps, WeightDecay: a.WeightDecay, Step: step}, Skipped: skipped})
	}
	after := make([]float32, cfg.NumParams())
	ops.Download(after, m.Params())
	// Where the true gradient is zero (the key bias: adding a
	// constant to a row of attention scores changes nothing), both
	// gradients are float noise that AdamW's 1/√v scales up to
	// steps of lr; those entries are only held to moving less than
	// steps·lr, and compared as equal to PyTorch's values.
	want := append([]float32(nil), f.ParamsAfter...)
	for _, e := range m.Table() {
		var gs float64
		for _, v := range f.Grads[e.Offset : e.Offset+e.Size] {
			gs = math.Max(gs, math.Abs(float64(v)))
		}
		for i := e.Offset; i < e.Offset+e.Size; i++ {
			if math.Abs(float64(f.Grads[i])) <= 1e-6*gs {
				if math.Abs(float64(after[i]-f.Params[i])) > float64(a.LR)*float64(a.Steps)*1.01 {
					t.Fatalf("%s[%d] has no gradient but moved %g", e.Name, i-e.Offset, after[i]-f.Params[i])
				}
				want[i] = after[i]
			}
		}
	}
	closeTo(t, "parameters after AdamW", m.Table(), after, want, 1e-5)
}

// TestTableCoversBuffer: the table's tensors tile the flat buffer.
func TestTableCoversBuffer(t *testing.T) {
	for name, cfg := range Presets {
		tab := cfg.Table()
		sort.Slice(tab, func(i, j int) bool { return tab[i].Offset < tab[j].Offset })
		off := 0
		for _, e := range tab {
			if e.Offset != off {
				t.Fatalf("%s: %s at %d, want %d", name, e.Name, e.Offset, off)
			}
			off += e.Size
		}
		if name == "gpt2-124m" && cfg.NumParams()-(cfg.Padded-cfg.Vocab)*cfg.Channels != 124439808 {
			t.Fatalf("gpt2-124m has %d parameters without padding, want 124439808", cfg.NumParams()-(cfg.Padded-cfg.Vocab)*cfg.Channels)
		}
	}
}
