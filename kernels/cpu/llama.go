package cpu

import (
	"math"
	"sync"

	"github.com/estkit/estkit/kernels"
)

// The ops Llama adds to GPT-2's: RMSNorm, rotary position embeddings and
// the SwiGLU activation.

func (o *Ops) RMSNorm(out, rstd, x, w kernels.Buf, rows, C int, eps float32) {
	os, rs, xs, ws := f(out), f(rstd), f(x), f(w)
	o.parallel(rows, 16, func(lo, hi int) {
		if rmsForwardRows != nil {
			rmsForwardRows(os[lo*C:hi*C], rs[lo:hi], xs[lo*C:hi*C], ws[:C], C, eps)
			return
		}
		for r := lo; r < hi; r++ {
			rs[r] = rmsNormRow(os[r*C:(r+1)*C], xs[r*C:(r+1)*C], ws[:C], eps)
		}
	})
}

// rmsNormRow normalises one row into dst and returns 1/sqrt(mean(x²) +
// eps), the sum of squares in sumSquares' float64 lanes (the order
// rmsForwardRows keeps in AVX2, bit for bit).
func rmsNormRow(dst, row, w []float32, eps float32) float32 {
	rr := float32(1 / math.Sqrt(sumSquares(row)/float64(len(row))+float64(eps)))
	for i, v := range row {
		dst[i] = w[i] * (v * rr)
	}
	return rr
}

func (o *Ops) RMSNormBackward(dx, dw, dout, x, w, rstd kernels.Buf, rows, C int) {
	dxs, dws, g, xs, ws, rs := f(dx), f(dw), f(dout), f(x), f(w), f(rstd)
	// dx rows in parallel; dw summed over fixed blocks of rows, then the
	// blocks' sums added in order (as LayerNormBackward)
	blocks := (rows + normBlock - 1) / normBlock
	sums := make([]float32, blocks*C)
	o.parallel(blocks, 1, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			r0, r1 := k*normBlock, min(rows, (k+1)*normBlock)
			acc := sums[k*C : (k+1)*C]
			if rmsBackwardRows != nil {
				rmsBackwardRows(dxs[r0*C:r1*C], acc, g[r0*C:r1*C], xs[r0*C:r1*C], ws[:C], rs[r0:r1], C)
				continue
			}
			for r := r0; r < r1; r++ {
				rmsNormBackwardRow(dxs[r*C:(r+1)*C], acc, g[r*C:(r+1)*C], xs[r*C:(r+1)*C], ws[:C], rs[r])
			}
		}
	})
	for k := range blocks {
		for i, v := range sums[k*C : (k+1)*C] {
			dws[i] += v
		}
	}
}

// rmsNormBackwardRow adds one row's input gradient into dr and its weight
// gradient into acc. With x̂ = x·r and dx̂ = dout·w, dx = r·(dx̂ − x̂·mean(dx̂·x̂)):
// the mean's sum in float64 lanes, element i in lane i mod 8 (the order
// rmsBackwardRows keeps), the rest elementwise float32.
func rmsNormBackwardRow(dr, acc, gr, xr, w []float32, rr float32) {
	var lane [8]float64
	for i, v := range xr {
		xh := v * rr
		dxh := gr[i] * w[i]
		lane[i%8] += float64(dxh) * float64(xh)
		acc[i] += gr[i] * xh
	}
	dot := float32(laneSum(&lane) / float64(len(xr)))
	for i, v := range xr {
		dr[i] += rr * (gr[i]*w[i] - v*rr*dot)
	}
}

// rmsForwardRows and rmsBackwardRows, where set (vec_avx2.go), run
// rmsNormRow and rmsNormBackwardRow over len(rstd) rows, bit for bit.
var (
	rmsForwardRows  func(out, rstd, x, w []float32, C int, eps float32)
	rmsBackwardRows func(dx, acc, g, x, w, rstd []float32, C int)
)

// ropeTables caches the cos and sin of each (theta, HS, T).
var ropeTables sync.Map // ropeKey -> *ropeTable

type ropeKey struct {
	theta float32
	hs, t int
}

type ropeTable struct{ cos, sin []float32 } // [T×HS/2]

// rope returns the table for positions 0..T-1, computed as Hugging Face's
// Llama computes it in float32: inverse frequencies 1/theta^(2i/HS), the
// angle t·inv_freq rounded to float32 (which at long contexts is what the
// reference model uses), then its cosine and sine.
func rope(theta float32, HS, T int) *ropeTable {
	k := ropeKey{theta, HS, T}
	if v, ok := ropeTables.Load(k); ok {
		return v.(*ropeTable)
	}
	half := HS / 2
	tab := &ropeTable{cos: make([]float32, T*half), sin: make([]float32, T*half)}
	inv := make([]float32, half)
	for i := range inv {
		inv[i] = 1 / float32(math.Pow(float64(theta), float64(float32(2*i)/float32(HS))))
	}
	for t := 0; t < T; t++ {
		for i, fr := range inv {
			a := float64(float32(t) * fr)
			tab.cos[t*half+i], tab.sin[t*half+i] = float32(math.Cos(a)), float32(math.Sin(a))
		}
	}
	v, _ := ropeTables.LoadOrStore(k, tab)
	return v.(*ropeTable)
}

func (o *Ops) RoPE(x kernels.Buf, B, T, heads, HS, width, off int, theta float32, inverse bool) {
	xs := f(x)
	tab := rope(theta, HS, T)
	half := HS / 2
	o.parallel(B*T, 16, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			t := p % T
			cs, sn := tab.cos[t*half:(t+1)*half], tab.sin[t*half:(t+1)*half]
			for h := 0; h < heads; h++ {
				v := xs[p*width+off+h*HS:][:HS]
				a, b := v[:half], v[half:]
				for i := range a {
					c, s := cs[i], sn[i]
					if inverse {
						s = -s
					}
					a[i], b[i] = a[i]*c-b[i]*s, b[i]*c+a[i]*s
				}
			}
		}
	})
}

// sigmoid in float32 through expNeg, on either side of 0.
func sigmoid(x float32) float32 {
	if x >= 0 {
		return 1 / (1 + expNeg(-x))
	}
	e := expNeg(x)
	return e / (1 + e)
}

func (o *Ops) SwiGLU(out, h kernels.Buf, rows, F int) {
	os, hs := f(out), f(h)
	o.parallel(rows, 4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			gate, up, dst := hs[r*2*F:][:F], hs[r*2*F+F:][:F], os[r*F:][:F]
			for i, g := range gate {
				dst[i] = g * sigmoid(g) * up[i]
			}
		}
	})
}

func (o *Ops) SwiGLUBackward(dh, h, dout kernels.Buf, rows, F int) {
	ds, hs, g := f(dh), f(h), f(dout)
	o.parallel(rows, 4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			gate, up, gr := hs[r*2*F:][:F], hs[r*2*F+F:][:F], g[r*F:][:F]
			dgate, dup := ds[r*2*F:][:F], ds[r*2*F+F:][:F]
			for i, x := range gate {
				s := sigmoid(x)
				dgate[i] += gr[i] * up[i] * s * (1 + x*(1-s))
				dup[i] += gr[i] * x * s
			}
		}
	})
}
