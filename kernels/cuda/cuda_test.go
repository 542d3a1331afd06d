package cuda

import (
	"math"
	"math/rand/v2"
	"strings"
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
	for _, op := range []string{"MatMul", "Attention", "AttentionBackward"} {
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

// TestConformanceBF16Storage runs the suite with every op's activations
// in bfloat16: the fp32 kernels on bf16 storage, then the bf16 variants
// (products on the tensor cores) on it.
func TestConformanceBF16Storage(t *testing.T) {
	o := backend(t)
	t.Run("fp32", func(t *testing.T) {
		kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Stored, BF16Storage: true})
	})
	t.Run("bf16", func(t *testing.T) {
		ps := o.(kernels.PrecisionSetter)
		for _, op := range []string{"MatMul", "Attention", "AttentionBackward"} {
			if err := ps.SetPrecision(op, kernels.BF16); err != nil {
				t.Fatal(err)
			}
			defer ps.SetPrecision(op, kernels.FP32)
		}
		kernelstest.Run(t, o, kernelstest.Options{Tol: kernelstest.BF16Attention, BF16Storage: true, Only: []string{"MatMul", "Attention"}})
	})
}

// TestBF16StorageErrors: an op given tensors in types it does not take
// fails with an error naming the op and the tensors.
func TestBF16StorageErrors(t *testing.T) {
	backend(t)
	for _, c := range []struct {
		name string
		call func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf)
		want string
	}{
		{"mixed activations", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) { o.GELU(out, o.Alloc(64)) }, "GELU: activations in two types: out is bf16, x fp32"},
		{"bf16 weight", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) {
			o.LayerNorm(out, o.Alloc(2), o.Alloc(2), bs.AllocBF16(64), bs.AllocBF16(32), o.Alloc(32), 2, 32)
		}, "LayerNorm: w is bf16"},
		{"bf16 moments", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) {
			o.AdamW(o.Alloc(64), o.Alloc(64), bs.AllocBF16(64), o.Alloc(64), kernels.AdamWArgs{Step: 1})
		}, "AdamW: m is bf16"},
		{"products of two types", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) {
			o.MatMul(o.Alloc(64), bs.AllocBF16(64), o.Alloc(64), 8, 8, 8, false, false, 1, 0)
		}, "MatMul: activations in two types: A is bf16, B fp32"},
		{"fp32 product into bf16", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) {
			o.MatMul(out, o.Alloc(64), o.Alloc(64), 8, 8, 8, false, false, 1, 0)
		}, "MatMul: fp32 A and B into a bf16 C"},
		{"scatter into bf16", func(o kernels.Ops, bs kernels.BF16Storage, out kernels.Buf) {
			o.ScatterAddRows(out, o.Alloc(32), []int32{1}, 32)
		}, "ScatterAddRows: dst is bf16"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := New()
			if err != nil {
				t.Fatal(err)
			}
			var ko kernels.Ops = o // *Ops, or kernels.Ops in a build without CUDA
			bs := ko.(kernels.BF16Storage)
			out := bs.AllocBF16(64)
			ko.Upload(out, make([]float32, 64))
			c.call(ko, bs, out)
			if err := o.Err(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestAttentionBF16Variant: the bf16 variants are in effect (forward
// output and backward gradients differ from the fp32 kernels' by more than
// fp32 rounding, and by less than bf16's), and setting fp32 back restores
// the fp32 kernels exactly.
func TestAttentionBF16Variant(t *testing.T) {
	o := backend(t)
	ps := o.(kernels.PrecisionSetter)
	const B, T, NH, NKV, HS = 2, 45, 4, 2, 40
	W := (NH + 2*NKV) * HS
	r := rand.New(rand.NewPCG(9, 9))
	up := func(n int) kernels.Buf { return randBuf(o, r, n) }
	down := func(b kernels.Buf) []float32 {
		v := make([]float32, b.Len())
		o.Download(v, b)
		return v
	}
	qkv, dout := up(B*T*W), up(B*T*NH*HS)
	run := func(p kernels.Precision) (out, dqkv []float32) {
		for _, op := range []string{"Attention", "AttentionBackward"} {
			if err := ps.SetPrecision(op, p); err != nil {
				t.Fatal(err)
			}
		}
		bo, att, bd := o.Alloc(B*T*NH*HS), o.Alloc(o.AttentionState(B, NH, T)), o.Alloc(B*T*W)
		o.Attention(bo, att, qkv, B, T, NH, NKV, HS)
		o.AttentionBackward(bd, dout, bo, qkv, att, B, T, NH, NKV, HS)
		out, dqkv = down(bo), down(bd)
		if err := o.Err(); err != nil {
			t.Fatal(err)
		}
		return out, dqkv
	}
	out32, d32 := run(kernels.FP32)
	out16, d16 := run(kernels.BF16)
	again, dagain := run(kernels.FP32)
	for name, c := range map[string][3][]float32{"out": {out32, out16, again}, "dqkv": {d32, d16, dagain}} {
		var maxd, maxw float64
		for i := range c[0] {
			maxd = max(maxd, math.Abs(float64(c[1][i]-c[0][i])))
			maxw = max(maxw, math.Abs(float64(c[0][i])))
			if c[2][i] != c[0][i] {
				t.Fatalf("%s, fp32 again: [%d] = %g, first %g", name, i, c[2][i], c[0][i])
			}
		}
		if maxd < 1e-5*maxw || maxd > 5e-2*maxw {
			t.Fatalf("%s: bf16 and fp32 differ by at most %g (largest value %g): want bf16 rounding", name, maxd, maxw)
		}
		t.Logf("%s: bf16 against fp32: max difference %.3g, largest value %.3g", name, maxd, maxw)
	}
}

// randBuf is a buffer of n standard normal values.
func randBuf(o kernels.Ops, r *rand.Rand, n int) kernels.Buf {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	b := o.Alloc(n)
	o.Upload(b, v)
	return b
}
