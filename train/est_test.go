package train

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// TestESTGPT2Saving: the est-gpt2 preset saves 26.7% of the block FLOPs of
// GPT-2 124M, as the paper reports.
func TestESTGPT2Saving(t *testing.T) {
	cfg := Presets["gpt2-124m"]
	s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, Neurons: 4 * cfg.Channels, Schedule: ESTPresets["est-gpt2"].Scaled(1500)}
	if !reflect.DeepEqual(s.Schedule.Ends, []int{200, 700, 1500}) {
		t.Fatalf("scaled ends %v", s.Schedule.Ends)
	}
	var done, full float64
	for step := 0; step < 1500; step++ {
		sel, _, _ := s.Sample(step, 0)
		done += cfg.StepFLOPs(sel, 1, 1024).Blocks
		full += cfg.StepFLOPs(nil, 1, 1024).Blocks
	}
	if saving := 1 - done/full; math.Abs(saving-0.2667) > 0.0005 {
		t.Fatalf("block FLOPs saved %.4f, want 0.2667", saving)
	}
}

// TestSampler: sizes, determinism, and every head and neuron drawn about
// equally often.
func TestSampler(t *testing.T) {
	s := &Sampler{Seed: 7, Layers: 12, Heads: 12, Neurons: 64, Schedule: Schedule{Ends: []int{1000}, Rates: []Rates{{0.5, 0.25, 0.5}}}}
	a, stage, r := s.Sample(3, 0)
	b, _, _ := s.Sample(3, 0)
	c, _, _ := s.Sample(4, 0)
	if stage != 0 || r.PH != 0.5 || !reflect.DeepEqual(a, b) || reflect.DeepEqual(a, c) {
		t.Fatal("not a pure function of (seed, step), or steps alike")
	}
	if len(a.Layers) != 6 || len(a.Heads[0]) != 6 || len(a.Neurons[5]) != 16 || a.HScale != 2 || a.MScale != 4 {
		t.Fatalf("sizes: %d layers, %d heads, %d neurons, scales %v %v", len(a.Layers), len(a.Heads[0]), len(a.Neurons[5]), a.HScale, a.MScale)
	}
	heads := make([]int, 12)
	layers := make([]int, 12)
	const n = 3000
	for step := 0; step < n; step++ {
		sel, _, _ := s.Sample(step, 0)
		for _, h := range sel.Heads[2] {
			heads[h]++
		}
		for _, l := range sel.Layers {
			layers[l]++
		}
	}
	for i := range heads {
		if math.Abs(float64(heads[i])-n/2) > 0.05*n || math.Abs(float64(layers[i])-n/2) > 0.05*n {
			t.Fatalf("head %d drawn %d times, layer %d %d times, of %d", i, heads[i], i, layers[i], n)
		}
	}
	g := &Sampler{Seed: 1, Layers: 2, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{1}, Rates: []Rates{{1, 0.5, 1}}}, Opt: SamplerOptions{Group: 8, Shared: true}}
	sel, _, _ := g.Sample(0, 0)
	if len(sel.Neurons[0]) != 32 || sel.Neurons[0][0]%8 != 0 || sel.Neurons[0][7] != sel.Neurons[0][0]+7 || !reflect.DeepEqual(sel.Neurons[0], sel.Neurons[1]) || sel.Heads[0] != nil || sel.Layers != nil {
		t.Fatalf("grouped, shared: %+v", sel)
	}
	if full, _, _ := (&Sampler{Layers: 2, Heads: 2, Neurons: 8, Schedule: Schedule{Ends: []int{5}, Rates: []Rates{{1, 1, 1}}}}).Sample(0, 0); full != nil {
		t.Fatal("rates 1:1:1 should give the full model")
	}
}

func TestParseSchedule(t *testing.T) {
	s, err := ParseSchedule("10,30", "0.5:0.5:0.5,1:1:1")
	if err != nil || s.Ends[1] != 30 || s.Rates[0].PL != 0.5 {
		t.Fatalf("%+v %v", s, err)
	}
	for _, bad := range [][2]string{{"10,5", "1:1:1,1:1:1"}, {"10", "0:1:1"}, {"10", "1:1"}, {"10,20", "1:1:1"}} {
		if _, err := ParseSchedule(bad[0], bad[1]); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}

// countingOps counts the multiply-adds of the matrix products it runs.
type countingOps struct {
	*cpu.Ops
	flops float64
}

func (c *countingOps) MatMul(cc, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32) {
	c.flops += 2 * float64(m) * float64(n) * float64(k)
	c.Ops.MatMul(cc, a, b, m, n, k, ta, tb, alpha, beta)
}

// fourBlocks is the EST tests' model, four blocks of four heads on 16
// channels, and a batch of B×T token ids for it.
func fourBlocks() (cfg ModelConfig, B, T int, ids []int32) {
	cfg = ModelConfig{Vocab: 61, Padded: 64, Layers: 4, Heads: 4, Channels: 16, MaxT: 8}
	B, T = 2, 8
	ids = make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(i * 7 % 61)
	}
	return cfg, B, T, ids
}

// TestSubnetworkRunsSmallerProducts: a stage-1 step (half the heads,
// neurons and blocks) executes a quarter of the full model's block matrix
// products, as counted in the kernels, not a masked full product.
func TestSubnetworkRunsSmallerProducts(t *testing.T) {
	cfg, B, T, ids := fourBlocks()
	run := func(sel *Selection) float64 {
		ops := &countingOps{Ops: cpu.New()}
		m, err := NewModel(ops, cfg, cfg.InitParams(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
			t.Fatal(err)
		}
		m.Backward(1)
		return ops.flops - 3*2*float64(B*T*cfg.Padded*cfg.Channels) // less the LM head
	}
	s := &Sampler{Seed: 3, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 0.5}}}}
	sel, _, _ := s.Sample(0, 0)
	full, sub := run(nil), run(sel)
	if math.Abs(sub/full-0.25) > 1e-9 {
		t.Fatalf("subnetwork ran %.0f of %.0f block FLOPs (%.3f), want a quarter", sub, full, sub/full)
	}
}

// TestSubnetworkHoldsLessMemory: a stage-1 step (half the blocks, heads
// and neurons) keeps well under half the block activations of a full step.
func TestSubnetworkHoldsLessMemory(t *testing.T) {
	cfg := ModelConfig{Vocab: 61, Padded: 64, Layers: 4, Heads: 4, Channels: 16, MaxT: 16}
	B, T := 2, 16
	ids := make([]int32, B*T)
	s := &Sampler{Seed: 3, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 0.5}}}}
	sel, _, _ := s.Sample(0, 0)
	var got [2]int
	for i, sl := range []*Selection{sel, nil} {
		m, _ := NewModel(cpu.New(), cfg, cfg.InitParams(1))
		if _, err := m.Forward(ids, ids, B, T, sl); err != nil {
			t.Fatal(err)
		}
		got[i] = m.ActivationFloats()
	}
	if ratio := float64(got[0]) / float64(got[1]); ratio > 0.4 { // a quarter, plus the gathered weights
		t.Fatalf("stage-1 activations %d, full %d (%.2f)", got[0], got[1], ratio)
	}
}

// TestSampledUpdate: under the "sampled" update, after two steps on a
// two-micro-batch plan, the sampled heads' and neurons' weights equal the
// dense update's, and every other weight of a block (and every weight of a
// skipped block) keeps its initial value.
func TestSampledUpdate(t *testing.T) {
	cfg, B, T, ids := fourBlocks()
	s := &Sampler{Seed: 5, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 0.5}}}}
	a, _, _ := s.Sample(0, 0)
	b, _, _ := s.Sample(0, 1)
	plan := Plan{a, b}
	skipped, units := plan.Skipped(cfg.Layers), plan.Units(cfg.Layers)
	init := cfg.InitParams(1)
	train := func(sampled map[int]Units) []float32 {
		ops := cpu.New()
		m, err := NewModel(ops, cfg, init)
		if err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 2; step++ {
			m.ZeroGrads(skipped)
			for _, sel := range plan {
				if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
					t.Fatal(err)
				}
				m.Backward(0.5)
			}
			m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step},
				Skipped: skipped, Sampled: sampled})
		}
		out := make([]float32, len(init))
		ops.Download(out, m.Params())
		return out
	}
	dense, sampled := train(nil), train(units)
	for _, v := range [][]float32{init, dense, sampled} { // rows and columns below are PyTorch's
		cfg.HeldToTorch(v)
	}
	HS := cfg.Channels / cfg.Heads
	moved := 0
	for _, e := range cfg.Table() {
		u, running := units[e.Layer]
		inSet := func(list []int32, x int) bool { return list == nil || slices.Contains(list, int32(x)) }
		for j := 0; j < e.Size; j++ {
			row, col := j/e.Shape[len(e.Shape)-1], j%e.Shape[len(e.Shape)-1]
			if len(e.Shape) == 1 {
				row, col = j, 0
			}
			want := e.Layer < 0 || running
			switch {
			case e.Layer < 0 || !running:
			case e.Unit == unitQKVRows:
				want = u.Heads == nil || slices.Contains(qkvRows(u.Heads, cfg.Heads, cfg.Heads, HS), int32(row))
			case e.Unit == unitHeadCols:
				want = inSet(u.Heads, col/HS)
			case e.Unit == unitNeuronRows:
				want = inSet(u.Neurons, row)
			case e.Unit == unitNeuronCols:
				want = inSet(u.Neurons, col)
			}
			got := sampled[e.Offset+j]
			switch {
			case want && got != dense[e.Offset+j]:
				t.Fatalf("%s[%d]: sampled update %g, dense %g", e.Name, j, got, dense[e.Offset+j])
			case !want && got != init[e.Offset+j]:
				t.Fatalf("%s[%d] was not sampled but moved from %g to %g", e.Name, j, init[e.Offset+j], got)
			case !want && dense[e.Offset+j] != init[e.Offset+j]:
				moved++
			}
		}
	}
	if moved == 0 {
		t.Fatal("the dense update moved no unsampled weight: the test compares nothing")
	}
	if len(skipped) == 0 || len(units) == 0 {
		t.Fatalf("plan skips %d blocks and runs %d", len(skipped), len(units))
	}
}

// TestESTTinyLlamaSaving: the est-tinyllama preset saves exactly 25.0% of
// TinyLlama 1.1B's block FLOPs when whole key/value groups are sampled (the
// default), and less when query heads are sampled within every group (all
// keys and values computed).
func TestESTTinyLlamaSaving(t *testing.T) {
	cfg := Presets["tinyllama-1.1b"]
	saving := func(mode string) float64 {
		s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(),
			Schedule: ESTPresets["est-tinyllama"].Scaled(600), Opt: SamplerOptions{Heads: mode}}
		var done, full float64
		for step := 0; step < 600; step++ {
			sel, _, _ := s.Sample(step, 0)
			done += cfg.StepFLOPs(sel, 1, 2048).Blocks
			full += cfg.StepFLOPs(nil, 1, 2048).Blocks
		}
		return 1 - done/full
	}
	if g := saving("groups"); math.Abs(g-0.25) > 1e-9 {
		t.Fatalf("groups: block FLOPs saved %.6f, want 0.25", g)
	}
	if w := saving("within"); !(w > 0.2 && w < 0.25) {
		t.Fatalf("within: block FLOPs saved %.4f, want a little under 0.25", w)
	}
}

// TestSamplerGroups: with grouped-query attention, "groups" draws whole
// key/value groups and "within" the same number of query heads in every
// group; both are what the Llama model accepts.
func TestSamplerGroups(t *testing.T) {
	m := &core{Cfg: Presets["tinyllama-1.1b"]}
	for _, mode := range []string{"groups", "within"} {
		s := &Sampler{Seed: 3, Layers: 22, Heads: 32, KVHeads: 4, Neurons: 5632, Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 1}}}, Opt: SamplerOptions{Heads: mode}}
		for step := 0; step < 10; step++ {
			sel, _, _ := s.Sample(step, 0)
			for l, heads := range sel.Heads {
				kv := kvHeads(heads, 32, 4)
				if len(heads) != 16 || m.checkHeads(heads) != nil {
					t.Fatalf("%s: layer %d heads %v", mode, l, heads)
				}
				if want := map[string]int{"groups": 2, "within": 4}[mode]; len(kv) != want {
					t.Fatalf("%s: layer %d reads key/value heads %v, want %d of them", mode, l, kv, want)
				}
			}
		}
	}
}

// TestInitModel: the model InitModel builds a tensor at a time holds
// InitParams's values.
func TestInitModel(t *testing.T) {
	for _, name := range []string{"gpt2-tiny", "llama-tiny"} {
		cfg := Presets[name]
		ops := cpu.New()
		m, err := InitModel(ops, cfg, 9)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float32, cfg.NumParams())
		ops.Download(got, m.Params())
		if !slices.Equal(got, cfg.InitParams(9)) {
			t.Fatalf("%s: InitModel differs from InitParams", name)
		}
	}
}

// TestScaleOfWhatWasKept: a sampled step scales the heads' and neurons'
// outputs by n/|I|, the inverse of the fraction the sampler actually kept,
// and equals PyTorch's masked model under that scale (train/testdata/
// llama_ref.py): at pH 0.5 and pM 0.3 (7 of 24 neurons), with one, two and
// three key/value heads under both head modes; one key/value head in
// "groups" mode keeps its only group, so every head runs at scale 1.
func TestScaleOfWhatWasKept(t *testing.T) {
	for _, c := range []struct {
		nkv  int
		mode string
	}{{1, "groups"}, {1, "within"}, {2, "groups"}, {2, "within"}, {3, "groups"}, {3, "within"}} {
		name := fmt.Sprintf("llama-scale-kv%d-%s", c.nkv, c.mode)
		t.Run(name, func(t *testing.T) {
			f, cfg, want := loadFixture(t, name)
			s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(),
				Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.3, 1}}}, Opt: SamplerOptions{Heads: c.mode}}
			sel, _, _ := s.Sample(0, 0)
			for l := 0; l < cfg.Layers; l++ {
				// the sampler's draw keeps as many as the fixture's; its
				// scales are what is compared, on the fixture's units
				if len(sel.Heads[l]) != len(want.Heads[l]) || (sel.Heads[l] == nil) != (want.Heads[l] == nil) || len(sel.Neurons[l]) != len(want.Neurons[l]) {
					t.Fatalf("block %d: sampler keeps heads %v and neurons %v, the fixture %v and %v", l, sel.Heads[l], sel.Neurons[l], want.Heads[l], want.Neurons[l])
				}
				sel.Heads[l], sel.Neurons[l] = want.Heads[l], want.Neurons[l]
			}
			if want.Heads[0] != nil && sel.HScale != want.HScale || sel.MScale != want.MScale {
				t.Fatalf("scales %v and %v, PyTorch %v and %v", sel.HScale, sel.MScale, want.HScale, want.MScale)
			}
			matchSelection(t, f, cfg, sel)
		})
	}
}

// TestRealisedRates: the rates a model realises, and a warning for each it
// cannot realise within 5%: llama-tiny's single key/value group cannot be
// halved, 2 of 3 groups is not a half; 79 of 264 neurons at 0.3 and GPT-2's
// halves are what was asked.
func TestRealisedRates(t *testing.T) {
	r := Rates{0.5, 0.3, 0.5}
	for _, c := range []struct {
		s    Sampler
		want Rates
		warn string
	}{
		{Sampler{Layers: 4, Heads: 8, KVHeads: 1, Neurons: 704}, Rates{1, 211.0 / 704, 0.5}, "EST stage 0: heads rate 0.5 runs as 1 on this model"},
		{Sampler{Layers: 4, Heads: 8, KVHeads: 1, Neurons: 704, Opt: SamplerOptions{Heads: "within"}}, Rates{0.5, 211.0 / 704, 0.5}, ""},
		{Sampler{Layers: 3, Heads: 6, KVHeads: 3, Neurons: 264}, Rates{4.0 / 6, 79.0 / 264, 2.0 / 3}, "EST stage 0: heads rate 0.5 runs as 0.6667 on this model"},
		{Sampler{Layers: 12, Heads: 12, Neurons: 3072, Opt: SamplerOptions{Group: 64}}, Rates{0.5, 14 * 64.0 / 3072, 0.5}, ""},
	} {
		c.s.Schedule = Schedule{Ends: []int{10}, Rates: []Rates{r}}
		got, warn := c.s.Realised(r), c.s.Warnings()
		if got != c.want || (c.warn == "") != (len(warn) == 0) || c.warn != "" && warn[0] != c.warn {
			t.Errorf("%+v: realised %+v, warnings %q; want %+v, %q", c.s, got, warn, c.want, c.warn)
		}
		sel, _, rr := c.s.Sample(0, 0)
		kept := func(p float64, n int) int { return int(math.Round(p * float64(n))) }
		if rr != c.want || (sel.Heads[0] == nil) != (c.want.PH == 1) || sel.Heads[0] != nil && len(sel.Heads[0]) != kept(c.want.PH, c.s.Heads) || len(sel.Neurons[0]) != kept(c.want.PM, c.s.Neurons) {
			t.Errorf("%+v: the draw keeps %d heads and %d neurons, rates %+v", c.s, len(sel.Heads[0]), len(sel.Neurons[0]), rr)
		}
	}
}
