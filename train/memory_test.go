package train

import (
	"fmt"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// sizeOps is a kernels backend that allocates nothing and computes
// nothing: it counts the floats a model asks for, so that the memory of a
// step of a model too large for this machine can be computed.
type sizeOps struct{ floats int }

type sizeBuf int

func (b sizeBuf) Len() int { return int(b) }

func (o *sizeOps) Name() string                                                              { return "size" }
func (o *sizeOps) Alloc(n int) kernels.Buf                                                   { o.floats += n; return sizeBuf(n) }
func (o *sizeOps) Slice(b kernels.Buf, off, n int) kernels.Buf                               { return sizeBuf(n) }
func (o *sizeOps) Upload(kernels.Buf, []float32)                                             {}
func (o *sizeOps) Download(dst []float32, _ kernels.Buf)                                     { clear(dst) }
func (o *sizeOps) Fill(kernels.Buf, float32)                                                 {}
func (o *sizeOps) Copy(_, _ kernels.Buf)                                                     {}
func (o *sizeOps) Axpy(kernels.Buf, float32, kernels.Buf)                                    {}
func (o *sizeOps) SumSquares(kernels.Buf) float64                                            { return 0 }
func (o *sizeOps) MatMul(_, _, _ kernels.Buf, _, _, _ int, _, _ bool, _, _ float32)          {}
func (o *sizeOps) AddBias(_, _ kernels.Buf, _, _ int)                                        {}
func (o *sizeOps) BiasGrad(_, _ kernels.Buf, _, _ int)                                       {}
func (o *sizeOps) Embed(_, _, _ kernels.Buf, _ []int32, _, _, _ int)                         {}
func (o *sizeOps) EmbedBackward(_, _, _ kernels.Buf, _ []int32, _, _, _ int)                 {}
func (o *sizeOps) LayerNorm(_, _, _, _, _, _ kernels.Buf, _, _ int)                          {}
func (o *sizeOps) LayerNormBackward(_, _, _, _, _, _, _, _ kernels.Buf, _, _ int)            {}
func (o *sizeOps) GELU(_, _ kernels.Buf)                                                     {}
func (o *sizeOps) GELUBackward(_, _, _ kernels.Buf)                                          {}
func (o *sizeOps) Attention(_, _, _ kernels.Buf, _, _, _, _, _ int)                          {}
func (o *sizeOps) AttentionBackward(_, _, _, _, _ kernels.Buf, _, _, _, _, _ int)            {}
func (o *sizeOps) AttentionState(B, NH, T int) int                                           { return B * NH * T * T }
func (o *sizeOps) Err() error                                                                { return nil }
func (o *sizeOps) RMSNorm(_, _, _, _ kernels.Buf, _, _ int, _ float32)                       {}
func (o *sizeOps) RMSNormBackward(_, _, _, _, _, _ kernels.Buf, _, _ int)                    {}
func (o *sizeOps) RoPE(kernels.Buf, int, int, int, int, int, int, float32, bool)             {}
func (o *sizeOps) SwiGLU(_, _ kernels.Buf, _, _ int)                                         {}
func (o *sizeOps) SwiGLUBackward(_, _, _ kernels.Buf, _, _ int)                              {}
func (o *sizeOps) CrossEntropy(_, _, _ kernels.Buf, _ []int32, _, _, _ int, _ float32)       {}
func (o *sizeOps) GatherRows(_, _ kernels.Buf, _ []int32, _ int)                             {}
func (o *sizeOps) ScatterAddRows(_, _ kernels.Buf, _ []int32, _ int)                         {}
func (o *sizeOps) GatherCols(_, _ kernels.Buf, _, _ int, _ []int32)                          {}
func (o *sizeOps) ScatterAddCols(_, _ kernels.Buf, _, _ int, _ []int32)                      {}
func (o *sizeOps) AdamW(_, _, _, _ kernels.Buf, _ kernels.AdamWArgs)                         {}
func (o *sizeOps) AdamWSub(_, _, _, _ kernels.Buf, _ int, _, _ []int32, _ kernels.AdamWArgs) {}

// stepFloats is the floats a training step of cfg at B×T under rates
// holds: parameters, gradients and moments, and the forward state and
// backward scratch it allocates (process overhead and the host copy of the
// initial parameters aside).
func stepFloats(cfg ModelConfig, B, T int, r Rates) (state, acts int) {
	ops := &sizeOps{}
	m, err := NewModel(ops, cfg, nil)
	if err != nil {
		panic(err)
	}
	state = ops.floats
	s := &Sampler{Seed: 1, Layers: cfg.Layers, Heads: cfg.Heads, KVHeads: cfg.KV(), Neurons: cfg.MLP(), Schedule: Schedule{Ends: []int{1}, Rates: []Rates{r}}}
	sel, _, _ := s.Sample(0, 0)
	ids := make([]int32, B*T)
	if _, err := m.Forward(ids, ids, B, T, sel); err != nil {
		panic(err)
	}
	if err := m.Backward(1); err != nil {
		panic(err)
	}
	return state, ops.floats - state
}

// BenchmarkTinyLlamaMemory: the memory a TinyLlama 1.1B training step at
// B=1, T=2048 needs on the CPU, computed (it does not fit this machine's
// 24 GiB at full size): parameters, gradients and AdamW moments, and the
// activations and scratch of a full, a stage-2 and a stage-1 step.
func BenchmarkTinyLlamaMemory(b *testing.B) {
	cfg := Presets["tinyllama-1.1b"]
	for _, est := range benchRates {
		b.Run(fmt.Sprintf("1.1b/B=1,T=2048/est=%s", est.name), func(b *testing.B) {
			var state, acts int
			for b.Loop() {
				state, acts = stepFloats(cfg, 1, 2048, est.rates)
			}
			b.ReportMetric(float64(4*state)/(1<<30), "GiB-weights+grads+moments")
			b.ReportMetric(float64(4*acts)/(1<<30), "GiB-activations")
			b.ReportMetric(float64(4*(state+acts))/(1<<30), "GiB-total")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestStepMemoryComputed: the computed memory of a step agrees with the
// model's own count of its forward state, and a stage-1 step of TinyLlama
// holds under a third of a full step's activations.
func TestStepMemoryComputed(t *testing.T) {
	cfg := Presets["tinyllama-1.1b"]
	state, full := stepFloats(cfg, 1, 2048, Rates{1, 1, 1})
	if state != 4*cfg.NumParams() {
		t.Fatalf("state %d floats, want 4×%d", state, cfg.NumParams())
	}
	_, stage1 := stepFloats(cfg, 1, 2048, Rates{0.5, 0.5, 0.5})
	if !(stage1 < full/3) {
		t.Fatalf("stage-1 activations %d floats, full %d", stage1, full)
	}
	t.Logf("TinyLlama 1.1B, B=1, T=2048: %.1f GiB of weights, gradients and moments; activations %.1f GiB full, %.1f GiB stage 1",
		float64(4*state)/(1<<30), float64(4*full)/(1<<30), float64(4*stage1)/(1<<30))
}
