package cpu

import "math"

// Attention with the BLAS: per batch row and head, the scores Q·Kᵀ and the
// output P·V are strided sgemm calls straight on the qkv layout (rows of
// 3·NH·HS). The products also fill the masked upper triangle, twice the
// causal work, which the BLAS's speed over the scalar loops more than pays
// for (at T = 1024 the scalar loops were most of a step).

func (o *Ops) attentionBLAS(out, att, in []float32, B, T, NH, HS int) {
	C := NH * HS
	scale := float32(1 / math.Sqrt(float64(HS)))
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			q := in[b*T*3*C+h*HS:]
			k, v := q[C:], q[2*C:]
			s := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
			sgemm(s, q, k, T, T, HS, false, true, scale, 0, 3*C, 3*C, T)
			o.parallel(T, 64, func(lo, hi int) {
				for t := lo; t < hi; t++ {
					causalSoftmax(s[t*T:(t+1)*T], t)
				}
			})
			sgemm(out[b*T*C+h*HS:], s, v, T, HS, T, false, false, 1, 0, T, 3*C, C)
		}
	}
}

// causalSoftmax turns row[:t+1] into its softmax and zeroes the rest.
func causalSoftmax(row []float32, t int) {
	m := float32(math.Inf(-1))
	for _, v := range row[:t+1] {
		if v > m {
			m = v
		}
	}
	var sum float32
	for i, v := range row[:t+1] {
		e := expNeg(v - m)
		row[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range row[:t+1] {
		row[i] *= inv
	}
	clear(row[t+1:])
}

func (o *Ops) attentionBackwardBLAS(dqkv, dout, in, att []float32, B, T, NH, HS int) {
	C := NH * HS
	scale := float32(1 / math.Sqrt(float64(HS)))
	ds := make([]float32, T*T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			q := in[b*T*3*C+h*HS:]
			k, v := q[C:], q[2*C:]
			dq := dqkv[b*T*3*C+h*HS:]
			dk, dv := dq[C:], dq[2*C:]
			dy := dout[b*T*C+h*HS:]
			p := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
			sgemm(ds, dy, v, T, T, HS, false, true, 1, 0, C, 3*C, T) // dP = dY·Vᵀ
			sgemm(dv, p, dy, T, HS, T, true, false, 1, 1, T, C, 3*C) // dV += Pᵀ·dY
			o.parallel(T, 64, func(lo, hi int) {
				for t := lo; t < hi; t++ {
					pr, dr := p[t*T:(t+1)*T], ds[t*T:(t+1)*T]
					var dot float32
					for i := 0; i <= t; i++ {
						dot += pr[i] * dr[i]
					}
					for i := 0; i <= t; i++ {
						dr[i] = pr[i] * (dr[i] - dot) * scale
					}
					clear(dr[t+1:])
				}
			})
			sgemm(dq, ds, k, T, HS, T, false, false, 1, 1, T, 3*C, 3*C) // dQ += dS·K
			sgemm(dk, ds, q, T, HS, T, true, false, 1, 1, T, 3*C, 3*C)  // dK += dSᵀ·Q
		}
	}
}
