package cpu

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkLayerNorm times LayerNorm forward and backward at GPT-2 124M's
// T=1024 shape (B=4: 4096 rows of C=768), with the pure-Go rows ("go")
// and, where vec_avx2.go set them, the vectorized ones ("vec"), one after
// the other in each round so that both see the same machine load.
func BenchmarkLayerNorm(b *testing.B) {
	const rows, C = 4096, 768
	r := rand.New(rand.NewPCG(31, 32))
	x, w, bias, g := normals(r, rows*C), normals(r, C), normals(r, C), normals(r, rows*C)
	out, mean, rstd := make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
	dx, dw, db := make([]float32, rows*C), make([]float32, C), make([]float32, C)
	o := New()
	vecF, vecB := lnForwardRows, lnBackwardRows
	defer func() { lnForwardRows, lnBackwardRows = vecF, vecB }()
	for _, impl := range []string{"go", "vec"} {
		if impl == "vec" && vecF == nil {
			continue
		}
		lnForwardRows, lnBackwardRows = nil, nil
		if impl == "vec" {
			lnForwardRows, lnBackwardRows = vecF, vecB
		}
		b.Run("forward/"+impl, func(b *testing.B) {
			b.SetBytes(int64(2 * rows * C * 4)) // x in, out
			for b.Loop() {
				o.LayerNorm(Buf(out), Buf(mean), Buf(rstd), Buf(x), Buf(w), Buf(bias), rows, C)
			}
		})
		b.Run("backward/"+impl, func(b *testing.B) {
			b.SetBytes(int64(4 * rows * C * 4)) // x, dout, dx in and out
			for b.Loop() {
				o.LayerNormBackward(Buf(dx), Buf(dw), Buf(db), Buf(g), Buf(x), Buf(w), Buf(mean), Buf(rstd), rows, C)
			}
		})
	}
}
