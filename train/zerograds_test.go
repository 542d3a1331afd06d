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

// countedNorm counts the gradient values SumSquares and SumSquaresSpans
// read, keeping the CPU backend's AdamW zeroing (kernels.GradZeroer) where
// zeroes is set.
type countedNorm struct {
	kernels.Ops
	read   int
	zeroes bool // AdamW zeroes the gradients it reads
}

func (c *countedNorm) SumSquares(b kernels.Buf) float64 {
	c.read += b.Len()
	return c.Ops.SumSquares(b)
}

func (c *countedNorm) SumSquaresSpans(b kernels.Buf, spans [][2]int) float64 {
	for _, s := range spans {
		c.read += s[1] - s[0]
	}
	return c.Ops.(kernels.SpanSumSquarer).SumSquaresSpans(b, spans)
}

func (c *countedNorm) ZeroesGrads() bool {
	gz, ok := c.Ops.(kernels.GradZeroer)
	return c.zeroes && ok && gz.ZeroesGrads()
}

// TestGradNormReadsWrittenRows: GradNorm, which reads of a tensor only
// the rows of the sampled units a backward pass wrote since ZeroGrads,
// equals the norm of every gradient outside the skipped blocks, over
// steps whose subnetworks change (a draw per micro-batch, blocks skipped
// then run again, dense and sampled updates, the full model), with
// backward passes that no ZeroGrads or no step separates, whether or not
// AdamW leaves zeros behind it; and under a subnetwork it reads fewer
// values than the whole.
func TestGradNormReadsWrittenRows(t *testing.T) {
	for _, zeroes := range []bool{true, false} {
		gradNormReadsWrittenRows(t, zeroes)
	}
}

func gradNormReadsWrittenRows(t *testing.T, zeroes bool) {
	cfg, B, T, ids := fourBlocks()
	s := &Sampler{Seed: 9, Layers: 4, Heads: 4, Neurons: 64, Schedule: Schedule{Ends: []int{5, 100}, Rates: []Rates{{0.5, 0.5, 0.5}, {1, 1, 1}}}}
	ops := &countedNorm{Ops: cpu.New(), zeroes: zeroes}
	m, err := NewModel(ops, cfg, cfg.InitParams(1))
	if err != nil {
		t.Fatal(err)
	}
	fewer := 0
	for step := 0; step < 7; step++ {
		a, _, _ := s.Sample(step, 0)
		b, _, _ := s.Sample(step, 1)
		plan := Plan{a, b}
		skipped := plan.Skipped(cfg.Layers)
		if step != 2 { // step 2 adds to what step 1's passes and AdamW left
			m.ZeroGrads(skipped)
		}
		for _, sel := range plan {
			if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
				t.Fatal(err)
			}
			if err := m.Backward(0.5); err != nil {
				t.Fatal(err)
			}
			if step == 3 { // the other draw again, without a ZeroGrads between
				if _, err := m.Forward(ids, ids, B, T, plan[1]); err != nil {
					t.Fatal(err)
				}
				if err := m.Backward(0.5); err != nil {
					t.Fatal(err)
				}
			}
		}
		var want float64
		whole := 0
		for _, v := range m.GradViews(skipped) {
			h := make([]float32, v.Len())
			ops.Download(h, v)
			for _, x := range h {
				want += float64(x) * float64(x)
			}
			whole += len(h)
		}
		want = math.Sqrt(want)
		ops.read = 0
		got := m.GradNorm(skipped)
		if math.Abs(got-want) > 1e-12*want || want == 0 {
			t.Fatalf("AdamW zeroes %v, step %d: GradNorm %v, the norm of every gradient %v", zeroes, step, got, want)
		}
		if ops.read > whole {
			t.Fatalf("step %d: GradNorm read %d values of %d", step, ops.read, whole)
		}
		if ops.read < whole {
			fewer++
		}
		so := StepOptions{AdamWArgs: kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}, Skipped: skipped}
		if step%2 == 1 {
			so.Sampled = plan.Units(cfg.Layers)
		}
		if step != 4 { // step 4's gradients are left to step 5's ZeroGrads
			if err := m.Step(so); err != nil {
				t.Fatal(err)
			}
		}
	}
	if fewer == 0 {
		t.Fatal("GradNorm read every gradient at every step: the test compares nothing it skips")
	}
}
