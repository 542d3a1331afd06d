package train

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
	"github.com/estkit/estkit/kernels/cuda"
)

// TestBackendsAgree: two training steps of GPT-2 and of Llama (grouped-
// query heads), on the full model and on EST subnetworks of two micro-
// batches with the sampled update, give the same losses and parameters on
// the CUDA backend (on a GPU, or emulated on the CPU with -tags cudaemu)
// as on the CPU backend: the losses and the first step's gradients within
// float32 rounding, the parameters within that and a hundredth of the
// learning rate; a weight whose gradient is rounding noise, which AdamW's
// first steps move by up to the learning rate whatever the noise's size,
// within the two steps' learning rate.
func TestBackendsAgree(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	backendCases(t, func(t *testing.T, c backendCase) {
		wantL, wantG, wantP := c.run(t, cpu.New())
		gotL, gotG, gotP := c.run(t, gpu)
		for i := range wantL {
			if math.Abs(float64(gotL[i]-wantL[i])) > 1e-5*math.Abs(float64(wantL[i])) {
				t.Errorf("loss %d: %s %.7f, cpu %.7f", i, gpu.Name(), gotL[i], wantL[i])
			}
		}
		rms := rmsOf(wantG)
		agree(t, "gradient", gotG, wantG, func(w float64) float64 { return 1e-4 * (math.Abs(w) + rms) })
		// A weight whose first gradient is below the gradients' tolerance
		// (rounding noise: 1e-9 against an rms of 1e-3, where a product's
		// order of sums decides even its sign) moves by AdamW's g/(|g|+eps)
		// of the learning rate: it is held to the two steps' bound only.
		gotP = slices.Clone(gotP)
		for i, g := range wantG {
			if math.Abs(float64(g)) < 1e-4*rms && math.Abs(float64(gotP[i]-wantP[i])) <= 2*backendLR {
				gotP[i] = wantP[i]
			}
		}
		agree(t, "parameter", gotP, wantP, func(w float64) float64 { return 1e-5*(1+math.Abs(w)) + backendLR/100 })
	})
}

// TestBackendsAgreeBF16: the same steps with the CUDA backend's matrix
// products and attention (forward and backward) in bf16: the losses within
// 1% of the CPU's and not equal to them (the variants are in effect), the
// first step's gradients within 2% as a whole.
func TestBackendsAgreeBF16(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	ps, ok := any(gpu).(kernels.PrecisionSetter) // *cuda.Ops, or kernels.Ops in a build without CUDA
	if !ok {
		t.Skip("the CUDA backend has no precision variants")
	}
	for _, op := range []string{"MatMul", "Attention", "AttentionBackward"} {
		if err := ps.SetPrecision(op, kernels.BF16); err != nil {
			t.Fatal(err)
		}
	}
	backendCases(t, func(t *testing.T, c backendCase) {
		wantL, wantG, _ := c.run(t, cpu.New())
		gotL, gotG, _ := c.run(t, gpu)
		nearBF16(t, "bf16 products", gotL, wantL, gotG, wantG)
		// no element off by more than a quarter of its size plus the rms
		rms := rmsOf(wantG)
		agree(t, "gradient", gotG, wantG, func(w float64) float64 { return 0.25 * (math.Abs(w) + rms) })
	})
}

// nearBF16 checks a bf16 run's losses against the CPU's (within 1%, not
// all equal: the bf16 path ran) and its first step's gradients as a whole
// (the norm of the differences within 2% of theirs, and not 0).
func nearBF16(t *testing.T, what string, gotL, wantL, gotG, wantG []float32) {
	t.Helper()
	same := true
	for i := range wantL {
		same = same && gotL[i] == wantL[i]
		if math.Abs(float64(gotL[i]-wantL[i])) > 1e-2*math.Abs(float64(wantL[i])) {
			t.Errorf("loss %d with %s: %.7f, cpu %.7f", i, what, gotL[i], wantL[i])
		}
	}
	if same {
		t.Errorf("losses with %s equal the CPU's: the bf16 path did not run", what)
	}
	var dd, ww float64
	for i := range wantG {
		d := float64(gotG[i] - wantG[i])
		dd += d * d
		ww += float64(wantG[i]) * float64(wantG[i])
	}
	if rel := math.Sqrt(dd / ww); rel > 2e-2 || rel == 0 {
		t.Errorf("gradients with %s differ from the CPU's by %.3g of their norm", what, rel)
	} else {
		t.Logf("gradients with %s differ from the CPU's by %.3g of their norm", what, rel)
	}
}

// TestBackendsAgreeBF16Activations: the same steps with the CUDA
// backend's activations (and the products' copy of the weights) stored in
// bf16, the products and attention in fp32 and then in bf16: the losses
// within 1% of the CPU's and not equal to them, the first step's gradients
// within 2% as a whole.
func TestBackendsAgreeBF16Activations(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	ps, ok := any(gpu).(kernels.PrecisionSetter)
	if !ok {
		t.Skip("the CUDA backend has no precision variants")
	}
	for _, p := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		t.Run("products "+p.String(), func(t *testing.T) {
			for _, op := range []string{"MatMul", "Attention", "AttentionBackward"} {
				if err := ps.SetPrecision(op, p); err != nil {
					t.Fatal(err)
				}
				defer ps.SetPrecision(op, kernels.FP32)
			}
			backendCases(t, func(t *testing.T, c backendCase) {
				wantL, wantG, _ := c.run(t, cpu.New())
				c.bf16Act = true
				gotL, gotG, _ := c.run(t, gpu)
				nearBF16(t, "bf16 activations", gotL, wantL, gotG, wantG)
			})
		})
	}
}

// TestBF16WeightsFollowSteps: with bf16 activations the products read a
// bf16 copy of the weights, which must follow every change of them: after
// a step (and after a checkpoint's parameters are loaded), a forward pass
// gives exactly the loss of a fresh model made from the same parameters.
func TestBF16WeightsFollowSteps(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	for _, cfg := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 2, Heads: 4, Channels: 32, MaxT: 12},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 2, Heads: 4, KVHeads: 2, Channels: 32, FF: 48, MaxT: 12, RopeTheta: 10000, NormEps: 1e-5},
	} {
		B, T := 2, 12
		ids := make([]int32, B*T)
		for i := range ids {
			ids[i] = int32((i*5 + 1) % cfg.Vocab)
		}
		arch := cfg.family().Arch
		fresh := func(params []float32) float32 {
			m, err := NewModel(gpu, cfg, params)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.SetBF16Activations(true); err != nil {
				t.Fatal(err)
			}
			l, err := m.Forward(ids, ids, B, T, nil)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		m, err := InitModel(gpu, cfg, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetBF16Activations(true); err != nil {
			t.Fatal(err)
		}
		if !m.BF16Activations() {
			t.Fatal("BF16Activations is false after SetBF16Activations(true)")
		}
		l0, err := m.Forward(ids, ids, B, T, nil)
		if err != nil {
			t.Fatal(err)
		}
		m.ZeroGrads(nil)
		if err := m.Backward(1); err != nil {
			t.Fatal(err)
		}
		if err := m.Step(StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 0.05, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Step: 1}}); err != nil {
			t.Fatal(err)
		}
		l1, err := m.Forward(ids, ids, B, T, nil)
		if err != nil {
			t.Fatal(err)
		}
		params := make([]float32, cfg.NumParams())
		gpu.Download(params, m.Params())
		if want := fresh(params); l1 != want || l1 == l0 {
			t.Errorf("%s: loss after a step %.7f, a fresh model's on the same parameters %.7f (before the step %.7f)", arch, l1, want, l0)
		}
		// parameters written from outside the passes: a checkpoint's
		dir := t.TempDir()
		if _, err := m.SaveTensors(dir); err != nil {
			t.Fatal(err)
		}
		m2, err := InitModel(gpu, cfg, 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := m2.SetBF16Activations(true); err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Forward(ids, ids, B, T, nil); err != nil { // its own weights' copy first
			t.Fatal(err)
		}
		if err := m2.LoadTensors(dir, false); err != nil {
			t.Fatal(err)
		}
		if l2, err := m2.Forward(ids, ids, B, T, nil); err != nil || l2 != l1 {
			t.Errorf("%s: loss after loading the checkpoint %.7f (%v), want %.7f", arch, l2, err, l1)
		}
	}
}

// TestResumeIsExactBF16Activations: on the CUDA backend with bf16
// activations, a run resumed from a checkpoint ends as the uninterrupted
// run does (the products' bf16 copy of the weights is made again from the
// loaded parameters), and a CPU run refuses bf16 activations.
func TestResumeIsExactBF16Activations(t *testing.T) {
	gpu, err := cuda.New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	set := tokenSet(t)
	cfg := tinyRun(set)
	cfg.Activations = "bf16"
	resumeIsExact(t, gpu, cfg)
	if _, err := Run(context.Background(), cpu.New(), cfg, t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "activations bf16") {
		t.Fatalf("bf16 activations on the CPU: %v", err)
	}
}

// A backendCase is one model and plan of the backend tests.
type backendCase struct {
	cfg     ModelConfig
	plan    Plan
	est     bool
	B, T    int
	bf16Act bool // the model's activations in bf16
}

const backendLR = 1e-2

// backendCases runs f for GPT-2 and Llama (grouped-query heads), on the
// full model and on EST subnetworks of two micro-batches with the sampled
// update.
func backendCases(t *testing.T, f func(*testing.T, backendCase)) {
	B, T := 2, 12
	for _, cfg := range []ModelConfig{
		{Vocab: 61, Padded: 64, Layers: 3, Heads: 4, Channels: 32, MaxT: T},
		{Arch: "llama", Vocab: 61, Padded: 64, Layers: 3, Heads: 4, KVHeads: 2, Channels: 32, FF: 48, MaxT: T, RopeTheta: 10000, NormEps: 1e-5},
	} {
		for _, est := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s est=%v", map[bool]string{false: "gpt2", true: "llama"}[cfg.Arch == "llama"], est), func(t *testing.T) {
				plan := Plan{nil, nil}
				if est {
					s := &Sampler{Seed: 3, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(),
						Schedule: Schedule{Ends: []int{10}, Rates: []Rates{{PH: 0.5, PM: 0.5, PL: 0.67}}}}
					a, _, _ := s.Sample(0, 0)
					b, _, _ := s.Sample(0, 1)
					plan = Plan{a, b}
				}
				f(t, backendCase{cfg: cfg, plan: plan, est: est, B: B, T: T})
			})
		}
	}
}

// run takes two training steps on ops and returns the losses, the first
// step's gradients and the final parameters.
func (c backendCase) run(t *testing.T, ops kernels.Ops) (losses, grads, params []float32) {
	cfg, plan, B, T := c.cfg, c.plan, c.B, c.T
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32((i*7 + 3) % cfg.Vocab)
	}
	init := cfg.InitParams(1)
	m, err := NewModel(ops, cfg, init)
	if err != nil {
		t.Fatal(err)
	}
	if c.bf16Act {
		if err := m.SetBF16Activations(true); err != nil {
			t.Fatal(err)
		}
	}
	skipped := plan.Skipped(cfg.Layers)
	for step := 1; step <= 2; step++ {
		m.ZeroGrads(skipped)
		for _, sel := range plan {
			l, err := m.Forward(ids, ids, B, T, sel)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, l)
			if err := m.Backward(0.5); err != nil {
				t.Fatal(err)
			}
		}
		if step == 1 {
			grads = make([]float32, len(init))
			ops.Download(grads, m.Grads())
		}
		so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: backendLR, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1,
			GradScale: float32(1 / math.Max(1, m.GradNorm(skipped))), Step: step}, Skipped: skipped}
		if c.est {
			so.Sampled = plan.Units(cfg.Layers)
		}
		if err := m.Step(so); err != nil {
			t.Fatal(err)
		}
	}
	params = make([]float32, len(init))
	ops.Download(params, m.Params())
	return losses, grads, params
}

func rmsOf(v []float32) float64 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	return math.Sqrt(ss / float64(max(len(v), 1)))
}

// agree reports the values of got farther from want than bound allows.
func agree(t *testing.T, what string, got, want []float32, bound func(w float64) float64) {
	t.Helper()
	bad := 0
	for i := range want {
		w := float64(want[i])
		if d := math.Abs(float64(got[i]) - w); !(d <= bound(w)) {
			if bad++; bad <= 3 {
				t.Errorf("%s %d: %g, cpu %g", what, i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d %ss differ", bad, len(want), what)
	}
}
