package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/kernelstest"
)

// backend returns the CUDA backend of this build, or skips the test with
// the reason there is none.
func backend(t *testing.T) kernels.Ops {
	t.Helper()
	o, err := New()
	if err != nil {
		t.Skipf("no CUDA backend: %v", err)
	}
	t.Logf("backend: %s", o.Name())
	return o
}

func TestConformance(t *testing.T) {
	kernelstest.Run(t, backend(t), kernelstest.Options{})
}

func TestConformanceBF16(t *testing.T) {
	o := backend(t)
	ps := o.(kernels.PrecisionSetter)
	for _, op := range []string{"MatMul", "Attention"} {
		if err := ps.SetPrecision(op, kernels.BF16); err != nil {
			t.Fatal(err)
		}
		defer ps.SetPrecision(op, kernels.FP32)
	}
	kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16, Only: []string{"MatMul"}})
	kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Attention, Only: []string{"Attention"}})
	if err := ps.SetPrecision("LayerNorm", kernels.BF16); err == nil {
		t.Error("LayerNorm accepted a bf16 variant it does not have")
	}
}

// TestAttentionBF16Variant: the bf16 variant is in effect (its output
// differs from the fp32 kernel's by more than fp32 rounding, and by less
// than bf16's), and setting fp32 back restores the fp32 kernel exactly.
func TestAttentionBF16Variant(t *testing.T) {
	o := backend(t)
	ps := o.(kernels.PrecisionSetter)
	const B, T, NH, NKV, HS = 2, 45, 4, 2, 40
	r := rand.New(rand.NewPCG(9, 9))
	qkv := make([]float32, B*T*(NH+2*NKV)*HS)
	for i := range qkv {
		qkv[i] = float32(r.NormFloat64())
	}
	bq := o.Alloc(len(qkv))
	o.Upload(bq, qkv)
	run := func() []float32 {
		out, att := o.Alloc(B*T*NH*HS), o.Alloc(o.AttentionState(B, NH, T))
		o.Attention(out, att, bq, B, T, NH, NKV, HS)
		v := make([]float32, out.Len())
		o.Download(v, out)
		if err := o.Err(); err != nil {
			t.Fatal(err)
		}
		return v
	}
	fp32 := run()
	if err := ps.SetPrecision("Attention", kernels.BF16); err != nil {
		t.Fatal(err)
	}
	bf16 := run()
	if err := ps.SetPrecision("Attention", kernels.FP32); err != nil {
		t.Fatal(err)
	}
	again := run()
	var maxd float64
	for i := range fp32 {
		maxd = max(maxd, math.Abs(float64(bf16[i]-fp32[i])))
		if again[i] != fp32[i] {
			t.Fatalf("fp32 again: out[%d] = %g, first %g", i, again[i], fp32[i])
		}
	}
	if maxd < 1e-4 || maxd > 5e-2 {
		t.Fatalf("bf16 and fp32 outputs differ by at most %g: want bf16 rounding (1e-4 to 5e-2)", maxd)
	}
	t.Logf("bf16 against fp32: max difference %.3g", maxd)
}
