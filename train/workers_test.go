package train

import (
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// TestStepBitsIndependentOfWorkers: three training steps, through
// subnetworks that change from step to step, leave the same parameters bit
// for bit whatever the number of CPU workers (GOMAXPROCS): a run resumed
// on a machine with another number of cores continues as the
// uninterrupted one would. Each op splits work over the workers; this
// checks that none lets the split reach the bits (every product, norm,
// attention head, gather, scatter, sum and update of both families).
func TestStepBitsIndependentOfWorkers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, cfg := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 3, Heads: 4, Channels: 64, MaxT: 64},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 3, Heads: 4, KVHeads: 2, Channels: 64, FF: 176, MaxT: 64, RopeTheta: 10000, NormEps: 1e-5},
	} {
		s := &Sampler{Seed: 5, Layers: cfg.Layers, Heads: cfg.Heads, Neurons: cfg.MLP(),
			Schedule: Schedule{Ends: []int{2, 10}, Rates: []Rates{{0.5, 0.5, 0.67}, {1, 1, 1}}}}
		train := func(workers int) []float32 {
			runtime.GOMAXPROCS(workers)
			return threeSteps(t, cpu.New(), cfg, s)
		}
		want := train(1)
		for _, w := range []int{2, 3} {
			got := train(w)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: %s after 3 steps on %d workers is %g, on one %g", cfg.family().Arch, paramAt(cfg, i), w, got[i], want[i])
				}
			}
		}
	}
}

// threeSteps trains cfg from InitParams(1) on ops for three steps of B=4,
// T=64 (fixed ids, as inputs and targets) through the subnetworks s
// draws, as the Stepper runs a step (gradients clipped to norm 1), and
// returns the parameters.
func threeSteps(t *testing.T, ops kernels.Ops, cfg ModelConfig, s *Sampler) []float32 {
	t.Helper()
	B, T := 4, 64
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(i * 7 % cfg.Vocab)
	}
	init := cfg.InitParams(1)
	m, err := NewModel(ops, cfg, init)
	if err != nil {
		t.Fatal(err)
	}
	for step := 1; step <= 3; step++ {
		sel, _, _ := s.Sample(step-1, 0)
		skipped := Plan{sel}.Skipped(cfg.Layers)
		m.ZeroGrads(skipped)
		if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
			t.Fatal(err)
		}
		m.Backward(1)
		norm := m.GradNorm(skipped)
		m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: step,
			GradScale: float32(min(1, 1/norm))}, Skipped: skipped})
	}
	out := make([]float32, len(init))
	ops.Download(out, m.Params())
	return out
}

// paramAt names the tensor holding parameter i, and the offset in it.
func paramAt(c ModelConfig, i int) string {
	for _, e := range c.Table() {
		if i >= e.Offset && i < e.Offset+e.Size {
			return fmt.Sprintf("%s[%d]", e.Name, i-e.Offset)
		}
	}
	return fmt.Sprintf("parameter %d", i)
}

// sampledCount forwards the CPU backend's in-place sampled products and
// counts those it took.
type sampledCount struct {
	kernels.Ops
	taken int
}

func (o *sampledCount) MatMulSampled(c, a, w kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32, rows, cols []int32, width int) bool {
	ok := o.Ops.(kernels.SampledMatMuler).MatMulSampled(c, a, w, m, n, k, ta, tb, alpha, beta, rows, cols, width)
	if ok {
		o.taken++
	}
	return ok
}

func (o *sampledCount) MatMulScatter(dst, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha float32, rows, cols []int32, width int) bool {
	ok := o.Ops.(kernels.SampledMatMuler).MatMulScatter(dst, a, b, m, n, k, ta, tb, alpha, rows, cols, width)
	if ok {
		o.taken++
	}
	return ok
}

// TestSampledProductsStepBitExact: three training steps through changing
// subnetworks leave the same parameters bit for bit whether the sampled
// layers' products read and add the weights' rows and columns in place
// (kernels.SampledMatMuler) or through gathered copies and scatters, for
// both families, at a width where the in-place products take most of
// them (the smallest, whose copies stay in cache, are gathered either
// way).
func TestSampledProductsStepBitExact(t *testing.T) {
	if why := cpu.SampledOff(); why != "" {
		t.Skipf("no in-place sampled products here: %s", why)
	}
	for _, cfg := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 2, Heads: 4, Channels: 512, MaxT: 64},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 2, Heads: 4, KVHeads: 2, Channels: 512, FF: 1408, MaxT: 64, RopeTheta: 10000, NormEps: 1e-5},
	} {
		s := &Sampler{Seed: 7, Layers: cfg.Layers, Heads: cfg.Heads, Neurons: cfg.MLP(),
			Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{0.5, 0.5, 1}}}}
		train := func(ops kernels.Ops) []float32 { return threeSteps(t, ops, cfg, s) }
		in := &sampledCount{Ops: cpu.New()}
		got := train(in)
		if in.taken == 0 {
			t.Fatalf("%s: no product took the in-place path", cfg.family().Arch)
		}
		// the plain embedding hides the optional interface: gathers
		want := train(struct{ kernels.Ops }{cpu.New()})
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: %s after 3 steps is %g in place, %g through gathers (%d products in place)",
					cfg.family().Arch, paramAt(cfg, i), got[i], want[i], in.taken)
			}
		}
		t.Logf("%s: %d products in place", cfg.family().Arch, in.taken)
	}
}
