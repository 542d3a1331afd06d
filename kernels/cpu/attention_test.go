package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestAttentionHeadsParallelBitExact: attention split over the workers by
// (batch row, key/value group) gives the bits of the heads run in turn
// with their rows split, forward and backward, for multi-head and grouped-
// query attention (where heads of one group add into one key's and one
// value's gradient).
func TestAttentionHeadsParallelBitExact(t *testing.T) {
	if sgemm == nil {
		t.Skip("attention runs on the BLAS only in openblas builds")
	}
	r := rand.New(rand.NewPCG(17, 18))
	// the last two span several blocks of query rows (on the thread pool
	// in C where the CPU has AVX2, against one worker's Go loops)
	for _, c := range []struct{ B, T, NH, NKV, HS int }{{3, 37, 4, 4, 8}, {2, 50, 6, 2, 8}, {1, 20, 4, 1, 16}, {2, 2*attnBlock + 37, 2, 1, 8}, {3, attnBlock + 1, 4, 2, 8},
		// 64-wide heads, as GPT-2 124M and TinyLlama have
		{2, 2*attnBlock + 37, 2, 1, 64}, {3, 45, 4, 2, 64}, {1, 13, 2, 1, 64}} {
		W, C := (c.NH+2*c.NKV)*c.HS, c.NH*c.HS
		qkv, dout := normals(r, c.B*c.T*W), normals(r, c.B*c.T*C)
		run := func(workers int) (out, att, dqkv []float32) {
			o := New()
			o.workers = workers
			out, att, dqkv = make([]float32, c.B*c.T*C), make([]float32, c.B*c.NH*c.T*c.T), make([]float32, c.B*c.T*W)
			o.Attention(Buf(out), Buf(att), Buf(qkv), c.B, c.T, c.NH, c.NKV, c.HS)
			o.AttentionBackward(Buf(dqkv), Buf(dout), Buf(out), Buf(qkv), Buf(att), c.B, c.T, c.NH, c.NKV, c.HS)
			return out, att, dqkv
		}
		o1, a1, d1 := run(1)
		for _, w := range []int{2, 3, 8} {
			o2, a2, d2 := run(w)
			same(t, "attention out", o1, o2, o1)
			same(t, "attention probabilities", a1, a2, a1)
			same(t, "attention dqkv", d1, d2, d1)
		}
	}
}

// TestAttentionBlocksMatchScalar: attention by blocks of attnBlock rows
// (the products over the keys each block sees) against the scalar loops,
// forward and backward, at a T spanning several blocks and a partial one,
// for multi-head and grouped-query attention.
func TestAttentionBlocksMatchScalar(t *testing.T) {
	if sgemm == nil {
		t.Skip("attention runs on the BLAS only in openblas builds")
	}
	r := rand.New(rand.NewPCG(19, 20))
	for _, c := range []struct{ B, T, NH, NKV, HS int }{{2, 2*attnBlock + 37, 2, 2, 8}, {1, attnBlock + 1, 4, 2, 8},
		{2, 2*attnBlock + 37, 2, 2, 64}, {1, attnBlock + 1, 4, 1, 64}, {3, 7, 2, 2, 64}} {
		W, C := (c.NH+2*c.NKV)*c.HS, c.NH*c.HS
		qkv, dout := normals(r, c.B*c.T*W), normals(r, c.B*c.T*C)
		run := func() (out, dqkv []float32) {
			o := New()
			out, dqkv = make([]float32, c.B*c.T*C), make([]float32, c.B*c.T*W)
			att := make([]float32, c.B*c.NH*c.T*c.T)
			for i := range att {
				att[i] = float32(i % 5) // stale values from an earlier step: the masked part must not read them
			}
			o.Attention(Buf(out), Buf(att), Buf(qkv), c.B, c.T, c.NH, c.NKV, c.HS)
			o.AttentionBackward(Buf(dqkv), Buf(dout), Buf(out), Buf(qkv), Buf(att), c.B, c.T, c.NH, c.NKV, c.HS)
			return out, dqkv
		}
		o1, d1 := run()
		keep := sgemm
		sgemm = nil
		o2, d2 := run()
		sgemm = keep
		for _, x := range []struct {
			what      string
			got, want []float32
		}{{"out", o1, o2}, {"dqkv", d1, d2}} {
			for i := range x.want {
				if d := math.Abs(float64(x.got[i] - x.want[i])); d > 1e-4*(1+math.Abs(float64(x.want[i]))) {
					t.Fatalf("T=%d NKV=%d %s[%d]: blocks %g, scalar loops %g", c.T, c.NKV, x.what, i, x.got[i], x.want[i])
				}
			}
		}
	}
}

// normals are n draws of the standard normal, as float32.
func normals(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}
