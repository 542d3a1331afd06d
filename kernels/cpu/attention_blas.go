package cpu

import (
	"math"
	"sync"
)

// Attention with the BLAS: per batch row and head, the scores Q·Kᵀ and the
// output P·V are strided sgemm calls straight on the qkv layout (rows of
// (NH+2·NKV)·HS). The products go by blocks of attnBlock query rows (and,
// for the key and value gradients, of key rows), each over the keys its
// rows can see, so the masked upper triangle costs only the blocks'
// diagonal squares: at T = 1024, 5/8 of the full square's products, where
// one product over the whole square did twice the causal work (BLAS's
// speed over the scalar loops paid for that: at T = 1024 the scalar loops
// were most of a step).

// attnBlock is the rows of a block of attention's products: small enough
// that the masked part of a block is little, large enough that each
// product keeps the BLAS's rate.
const attnBlock = 256

// attentionPool, where set (vec_avx2.go), runs attentionBLAS (or, with
// backward, attentionBackwardBLAS) in C on the thread pool's parts
// threads, a part of the (batch row, key/value group) units each, as
// heads splits them; false when the pool is taken.
var attentionPool func(out, att, dqkv, in, dout []float32, B, T, NH, NKV, HS, parts int, backward bool) bool

// poolParts is the parts heads splits attention into when it splits the
// units, else 0.
func (o *Ops) poolParts(B, NKV int) int {
	if units := B * NKV; attentionPool != nil && units >= o.workers && o.workers > 1 {
		return o.workers
	}
	return 0
}

// checkAttention panics, as a Go slice would, where a buffer is smaller
// than attention's shapes need, before the C threads touch any.
func checkAttention(out, att, in []float32, B, T, NH, NKV, HS int) {
	if len(out) < B*T*NH*HS || len(att) < B*NH*T*T || len(in) < B*T*(NH+2*NKV)*HS {
		panic("cpu: attention operands smaller than their shapes")
	}
}

func (o *Ops) attentionBLAS(out, att, in []float32, B, T, NH, NKV, HS int) {
	C, W := NH*HS, (NH+2*NKV)*HS
	checkAttention(out, att, in, B, T, NH, NKV, HS)
	if p := o.poolParts(B, NKV); p > 0 && attentionPool(out, att, nil, in, nil, B, T, NH, NKV, HS, p, false) {
		return
	}
	scale := float32(1 / math.Sqrt(float64(HS)))
	// one head: its products single-threaded, its softmax rows split over
	// the workers where there are fewer groups than workers
	head := func(b, h int, rows func(n int, fn func(lo, hi int))) {
		q := in[b*T*W+h*HS:]
		k, v := in[b*T*W+kvOff(h, NH, NKV, HS, 0):], in[b*T*W+kvOff(h, NH, NKV, HS, 1):]
		s := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
		for r0 := 0; r0 < T; r0 += attnBlock { // rows r0..r1 see keys 0..r1 only
			r1 := min(T, r0+attnBlock)
			sgemm(s[r0*T:], q[r0*W:], k, r1-r0, r1, HS, false, true, scale, 0, W, W, T)
		}
		rows(T, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				causalSoftmax(s[t*T:t*T+blockEnd(t, T)], t) // reads row[:t+1], zeroes the rest
			}
		})
		for r0 := 0; r0 < T; r0 += attnBlock {
			r1 := min(T, r0+attnBlock)
			sgemm(out[b*T*C+r0*C+h*HS:], s[r0*T:], v, r1-r0, HS, r1, false, false, 1, 0, T, W, C)
		}
	}
	o.heads(B, NH, NKV, T, func(b, h int, rows func(int, func(lo, hi int))) { head(b, h, rows) })
}

// heads runs fn on every (batch row, query head) pair. With at least as
// many (row, key/value group) units as workers, the units are split over
// the workers, a unit's heads in turn: a head's products are single-
// threaded sgemm calls (matmul splits a product over the cores, attention
// did not), and the heads of a group share its keys' and values'
// gradients, so no two workers add into one. With fewer, the heads run in
// turn and each splits its rows (rows: parallel, or in one piece inside a
// unit). The products and rows are the same either way, so the results
// are the same bits.
func (o *Ops) heads(B, NH, NKV, T int, fn func(b, h int, rows func(n int, fn func(lo, hi int)))) {
	per := NH / NKV
	if units := B * NKV; units >= o.workers && o.workers > 1 {
		serial := func(n int, f func(lo, hi int)) { f(0, n) }
		o.parallel(units, 1, func(lo, hi int) {
			for u := lo; u < hi; u++ {
				b, g := u/NKV, u%NKV
				for h := g * per; h < (g+1)*per; h++ {
					fn(b, h, serial)
				}
			}
		})
		return
	}
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			fn(b, h, func(n int, f func(lo, hi int)) { o.parallel(n, 64, f) })
		}
	}
}

// blockEnd is the end of the block of query rows row t is in: the keys
// its block's products read. The probabilities and their gradients are
// written, masked zeros included, up to there only; the products never
// read further, and zeroing each row to T cost a tenth of attention's
// time at T=1024.
func blockEnd(t, T int) int { return min(T, (t/attnBlock+1)*attnBlock) }

// causalSoftmax turns row[:t+1] into its softmax and zeroes the rest: the
// cross-entropy's row kernels (rowMax, sumExp in float64 lanes, scaleRow),
// eight lanes at a time in AVX2 where the CPU has it. At T=1024 the
// scalar loops were a fifth of attention's time (BenchmarkAttention).
func causalSoftmax(row []float32, t int) {
	r := row[:t+1]
	m := rowMax(r)
	scaleRow(r, 1/sumExp(r, r, m))
	clear(row[t+1:])
}

// softmaxGrad turns dr, the gradient of a softmax's output p, into that
// of its input times scale: dr[i] = p[i]·(dr[i] − p·dr)·scale, the dot
// product in float64, element i added into lane i mod 8 and the lanes
// then added in order (as sumSquares), then rounded to float32; in AVX2
// where the CPU has it (softmaxGradRange), with the same bits.
func softmaxGrad(dr, p []float32, scale float32) {
	if softmaxGradRange != nil {
		softmaxGradRange(dr, p, scale)
		return
	}
	var lane [8]float64
	for i, v := range p {
		lane[i%8] += float64(v) * float64(dr[i])
	}
	var s float64
	for _, v := range lane {
		s += v
	}
	dot := float32(s)
	for i, v := range p {
		dr[i] = v * (dr[i] - dot) * scale
	}
}

func (o *Ops) attentionBackwardBLAS(dqkv, dout, in, att []float32, B, T, NH, NKV, HS int) {
	C, W := NH*HS, (NH+2*NKV)*HS
	checkAttention(dout, att, in, B, T, NH, NKV, HS)
	checkAttention(dout, att, dqkv, B, T, NH, NKV, HS)
	if p := o.poolParts(B, NKV); p > 0 && attentionPool(nil, att, dqkv, in, dout, B, T, NH, NKV, HS, p, true) {
		return
	}
	scale := float32(1 / math.Sqrt(float64(HS)))
	// dS scratch, one per worker: the heads in one worker's units run in
	// turn, those of other workers at once
	var mu sync.Mutex
	var free [][]float32
	take := func() []float32 {
		mu.Lock()
		defer mu.Unlock()
		if n := len(free); n > 0 {
			ds := free[n-1]
			free = free[:n-1]
			return ds
		}
		return make([]float32, T*T)
	}
	give := func(ds []float32) {
		mu.Lock()
		free = append(free, ds)
		mu.Unlock()
	}
	o.heads(B, NH, NKV, T, func(b, h int, rows func(int, func(lo, hi int))) {
		ds := take()
		defer give(ds)
		q, dq := in[b*T*W+h*HS:], dqkv[b*T*W+h*HS:]
		ko, vo := b*T*W+kvOff(h, NH, NKV, HS, 0), b*T*W+kvOff(h, NH, NKV, HS, 1)
		k, v, dk, dv := in[ko:], in[vo:], dqkv[ko:], dqkv[vo:]
		dy := dout[b*T*C+h*HS:]
		p := att[(b*NH+h)*T*T : (b*NH+h+1)*T*T]
		for r0 := 0; r0 < T; r0 += attnBlock { // dP = dY·Vᵀ, keys 0..r1 of rows r0..r1
			r1 := min(T, r0+attnBlock)
			sgemm(ds[r0*T:], dy[r0*C:], v, r1-r0, r1, HS, false, true, 1, 0, C, W, T)
		}
		for c0 := 0; c0 < T; c0 += attnBlock { // dV += Pᵀ·dY: keys c0..c1 from rows c0..T
			c1 := min(T, c0+attnBlock)
			sgemm(dv[c0*W:], p[c0*T+c0:], dy[c0*C:], c1-c0, HS, T-c0, true, false, 1, 1, T, C, W)
		}
		rows(T, func(lo, hi int) {
			for t := lo; t < hi; t++ {
				dr := ds[t*T : t*T+blockEnd(t, T)]
				softmaxGrad(dr[:t+1], p[t*T:t*T+t+1], scale)
				clear(dr[t+1:])
			}
		})
		for r0 := 0; r0 < T; r0 += attnBlock { // dQ += dS·K, rows r0..r1 over keys 0..r1
			r1 := min(T, r0+attnBlock)
			sgemm(dq[r0*W:], ds[r0*T:], k, r1-r0, HS, r1, false, false, 1, 1, T, W, W)
		}
		for c0 := 0; c0 < T; c0 += attnBlock { // dK += dSᵀ·Q, keys c0..c1 from rows c0..T
			c1 := min(T, c0+attnBlock)
			sgemm(dk[c0*W:], ds[c0*T+c0:], q[c0*W:], c1-c0, HS, T-c0, true, false, 1, 1, T, W, W)
		}
	})
}

// kvOff is the offset within a qkv row of the key (part 0) or value (part
// 1) head that query head h of NH reads, with NKV key/value heads.
func kvOff(h, NH, NKV, HS, part int) int {
	return (NH+part*NKV)*HS + h/(NH/NKV)*HS
}
