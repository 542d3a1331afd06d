package cpu

import "math"

// Attention with the BLAS: per batch row and head, the scores Q·Kᵀ and the
// output P·V are strided sgemm calls straight on the qkv layout (rows of
// (NH+2·NKV)·HS). The products also fill the masked upper triangle, twice the
// causal work, which the BLAS's speed over the scalar loops more than pays
// for (at T = 1024 the scalar loops were most of a step).

func (o *Ops) attentionBLAS(out, att, in []float32, B, T, NH, NKV, HS int) {
	C, W := NH*HS, (NH+2*NKV)*HS
	scale := float32(1 / math.Sqrt(float64(HS)))
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			q := in[b*T*W+h*HS:]
			k, v := in[b*T*W+kvOff(h, NH, NKV, HS, 0):], in[b*T*W+kvOff(h, NH, NKV, HS, 1):]
			s := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
			sgemm(s, q, k, T, T, HS, false, true, scale, 0, W, W, T)
			o.parallel(T, 64, func(lo, hi int) {
				for t := lo; t < hi; t++ {
					causalSoftmax(s[t*T:(t+1)*T], t)
				}
			})
			sgemm(out[b*T*C+h*HS:], s, v, T, HS, T, false, false, 1, 0, T, W, C)
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
	if expShifted != nil {
		expShifted(row[:t+1], m)
		for _, e := range row[:t+1] {
			sum += e
		}
	} else {
		for i, v := range row[:t+1] {
			e := expNeg(v - m)
			row[i] = e
			sum += e
		}
	}
	inv := 1 / sum
	for i := range row[:t+1] {
		row[i] *= inv
	}
	clear(row[t+1:])
}

func (o *Ops) attentionBackwardBLAS(dqkv, dout, in, att []float32, B, T, NH, NKV, HS int) {
	C, W := NH*HS, (NH+2*NKV)*HS
	scale := float32(1 / math.Sqrt(float64(HS)))
	ds := make([]float32, T*T)
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			q, dq := in[b*T*W+h*HS:], dqkv[b*T*W+h*HS:]
			ko, vo := b*T*W+kvOff(h, NH, NKV, HS, 0), b*T*W+kvOff(h, NH, NKV, HS, 1)
			k, v, dk, dv := in[ko:], in[vo:], dqkv[ko:], dqkv[vo:]
			dy := dout[b*T*C+h*HS:]
			p := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
			sgemm(ds, dy, v, T, T, HS, false, true, 1, 0, C, W, T) // dP = dY·Vᵀ
			sgemm(dv, p, dy, T, HS, T, true, false, 1, 1, T, C, W) // dV += Pᵀ·dY
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
			sgemm(dq, ds, k, T, HS, T, false, false, 1, 1, T, W, W) // dQ += dS·K
			sgemm(dk, ds, q, T, HS, T, true, false, 1, 1, T, W, W)  // dK += dSᵀ·Q
		}
	}
}

// kvOff is the offset within a qkv row of the key (part 0) or value (part
// 1) head that query head h of NH reads, with NKV key/value heads.
func kvOff(h, NH, NKV, HS, part int) int {
	return (NH+part*NKV)*HS + h/(NH/NKV)*HS
}
