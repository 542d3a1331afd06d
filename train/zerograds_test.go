package train

import (
	"math"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cpu"
)

// noZeroing is the CPU backend without kernels.GradZeroer: AdamW leaves
// the gradients as they are and ZeroGrads writes every one it clears.
type noZeroing struct{ kernels.Ops }

// TestGradZeroingSameSteps: where AdamW leaves the gradients it reads at
// 0 and ZeroGrads passes over them (kernels.GradZeroer), every step's
// gradients and parameters are bit for bit those of the backend that
// zeroes each step's gradients in a pass of their own. The steps change
// which blocks run (a block skipped at one step runs at the next), draw a
// subnetwork per micro-batch, switch between the dense and the sampled
// update, and one backward pass runs without a step after it, as a
// caller may: ZeroGrads must then clear what it wrote.
func TestGradZeroingSameSteps(t *testing.T) {
	cfg, B, T, ids := fourBlocks()
	s := &Sampler{Seed: 9, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{4, 100}, Rates: []Rates{{0.5, 0.5, 0.5}, {1, 1, 1}}}}
	init := cfg.InitParams(1)
	type run struct {
		ops kernels.Ops
		m   Model
	}
	var runs [2]run
	for i, ops := range []kernels.Ops{cpu.New(), noZeroing{cpu.New()}} {
		m, err := NewModel(ops, cfg, init)
		if err != nil {
			t.Fatal(err)
		}
		runs[i] = run{ops, m}
	}
	if _, ok := runs[1].ops.(kernels.GradZeroer); ok {
		t.Fatal("the wrapper still zeroes in AdamW")
	}
	var skippedThenRan bool
	var prev map[int]bool
	for step := 0; step < 6; step++ {
		a, _, _ := s.Sample(step, 0)
		b, _, _ := s.Sample(step, 1)
		plan := Plan{a, b}
		skipped := plan.Skipped(cfg.Layers)
		for l := range prev {
			skippedThenRan = skippedThenRan || !skipped[l]
		}
		prev = skipped
		so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1},
			Skipped: skipped}
		if step%2 == 1 {
			so.Sampled = plan.Units(cfg.Layers)
		}
		var got [2][2][]float32 // per run: gradients before the step, parameters after it
		for i, r := range runs {
			if step == 3 { // a backward pass of the full model that no step follows
				if _, err := r.m.Forward(ids, ids, B, T, nil); err != nil {
					t.Fatal(err)
				}
				if err := r.m.Backward(1); err != nil {
					t.Fatal(err)
				}
			}
			r.m.ZeroGrads(skipped)
			for _, sel := range plan {
				if _, err := r.m.Forward(ids, ids, B, T, sel); err != nil {
					t.Fatal(err)
				}
				if err := r.m.Backward(0.5); err != nil {
					t.Fatal(err)
				}
			}
			for _, v := range r.m.GradViews(skipped) {
				h := make([]float32, v.Len())
				r.ops.Download(h, v)
				got[i][0] = append(got[i][0], h...)
			}
			so.GradScale = float32(1 / math.Max(1, r.m.GradNorm(skipped)))
			if err := r.m.Step(so); err != nil {
				t.Fatal(err)
			}
			got[i][1] = make([]float32, len(init))
			r.ops.Download(got[i][1], r.m.Params())
		}
		for k, what := range []string{"gradient", "parameter"} {
			for j := range got[0][k] {
				if math.Float32bits(got[0][k][j]) != math.Float32bits(got[1][k][j]) {
					t.Fatalf("step %d: %s value %d: %g zeroed by AdamW, %g zeroed apart", step, what, j, got[0][k][j], got[1][k][j])
				}
			}
		}
	}
	if !skippedThenRan {
		t.Fatal("no block was skipped at one step and run at a later one: the fixture sees less than it claims")
	}
}
