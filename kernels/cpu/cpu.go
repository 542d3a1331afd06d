// Package cpu implements kernels.Ops on the CPU in Go, spreading rows over
// the available cores. It is the reference the GPU backend is checked
// against.
package cpu

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/estkit/estkit/kernels"
)

// Buf is host memory.
type Buf []float32

// Len is the number of values.
func (b Buf) Len() int { return len(b) }

// Ops is the CPU backend.
type Ops struct {
	workers int
}

// New returns the CPU backend using every core.
func New() *Ops { return &Ops{workers: runtime.GOMAXPROCS(0)} }

var (
	_ kernels.Ops             = (*Ops)(nil)
	_ kernels.SampledMatMuler = (*Ops)(nil)
	_ kernels.GradZeroer      = (*Ops)(nil)
)

func (o *Ops) Name() string { return "cpu" }

// Arithmetic names how the products sum (kernels.Arithmeticer).
func (o *Ops) Arithmetic() string { return arithmetic() }

func f(b kernels.Buf) []float32 {
	if b == nil {
		return nil
	}
	return b.(Buf)
}

func (o *Ops) Alloc(n int) kernels.Buf { return Buf(make([]float32, n)) }

func (o *Ops) Slice(b kernels.Buf, off, n int) kernels.Buf { return Buf(f(b)[off : off+n : off+n]) }

func (o *Ops) Upload(dst kernels.Buf, src []float32) { mustCopy(f(dst), src) }

func (o *Ops) Download(dst []float32, src kernels.Buf) { mustCopy(dst, f(src)) }

func (o *Ops) Copy(dst, src kernels.Buf) { mustCopy(f(dst), f(src)) }

func mustCopy(dst, src []float32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("cpu: copy of %d values into %d", len(src), len(dst)))
	}
	copy(dst, src)
}

func (o *Ops) Fill(b kernels.Buf, v float32) {
	x := f(b)
	o.parallel(len(x), 1<<16, func(lo, hi int) {
		if v == 0 {
			clear(x[lo:hi])
			return
		}
		for i := lo; i < hi; i++ {
			x[i] = v
		}
	})
}

func (o *Ops) Axpy(y kernels.Buf, a float32, x kernels.Buf) {
	ys, xs := f(y), f(x)
	if len(ys) != len(xs) {
		panic("cpu: axpy lengths differ")
	}
	o.parallel(len(ys), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ys[i] += a * xs[i]
		}
	})
}

// SumSquaresSpans: kernels.SpanSumSquarer. Each span's sum is
// SumSquares' (its parts' sumSquares added in order), the spans split
// between the cores in contiguous groups and their sums added in order:
// the same result on every run and any number of cores.
func (o *Ops) SumSquaresSpans(b kernels.Buf, spans [][2]int) float64 {
	x := f(b)
	sums := make([]float64, len(spans))
	o.parallel(len(spans), 64, func(lo, hi int) {
		// each span's parts, in order, and whose they are
		var parts []int
		var of []int
		for i := lo; i < hi; i++ {
			for p := spans[i][0]; p < spans[i][1]; p += sumSquaresPart {
				parts = append(parts, p, min(p+sumSquaresPart, spans[i][1]))
				of = append(of, i)
			}
		}
		out := make([]float64, len(of))
		if sumSquaresPieces != nil {
			sumSquaresPieces(x, parts, out)
		} else {
			for k := range out {
				out[k] = sumSquares(x[parts[2*k]:parts[2*k+1]])
			}
		}
		for k, i := range of {
			sums[i] += out[k]
		}
	})
	var s float64
	for _, v := range sums {
		s += v
	}
	return s
}

// sumSquaresPart is the values SumSquares sums in one part.
const sumSquaresPart = 1 << 16

func (o *Ops) SumSquares(b kernels.Buf) float64 {
	x := f(b)
	// fixed parts, summed in order: the same result on every run
	const part = sumSquaresPart
	sums := make([]float64, (len(x)+part-1)/part)
	o.parallel(len(sums), 1, func(lo, hi int) {
		if sumSquares4 != nil {
			// four full parts at once, a quarter of the range apart:
			// each part's sum is sumSquares' (TestSumSquaresParts)
			full := min(hi, len(x)/part) - lo
			q := max(full, 0) / 4
			for p := lo; p < lo+q; p++ {
				s := sumSquares4(x[p*part:(p+1)*part], x[(p+q)*part:(p+q+1)*part],
					x[(p+2*q)*part:(p+2*q+1)*part], x[(p+3*q)*part:(p+3*q+1)*part])
				sums[p], sums[p+q], sums[p+2*q], sums[p+3*q] = s[0], s[1], s[2], s[3]
			}
			lo += 4 * q
		}
		for p := lo; p < hi; p++ {
			sums[p] = sumSquares(x[p*part : min((p+1)*part, len(x))])
		}
	})
	var s float64
	for _, v := range sums {
		s += v
	}
	return s
}

// sumSquares is the sum of x's squares in float64, element i added into
// lane i mod 8 and the eight lanes then added in order: an order a vector
// unit keeps too (sumSquaresRange gives the same bits), and eight chains
// of additions instead of one.
func sumSquares(x []float32) float64 {
	if sumSquaresRange != nil {
		return sumSquaresRange(x)
	}
	var lane [8]float64
	i := 0
	for ; i+8 <= len(x); i += 8 {
		for j, v := range x[i : i+8] {
			lane[j] += float64(v) * float64(v)
		}
	}
	for j, v := range x[i:] {
		lane[j] += float64(v) * float64(v)
	}
	var s float64
	for _, v := range lane {
		s += v
	}
	return s
}

// parallel splits [0, n) into contiguous parts of at least grain items
// over the workers and waits for them.
func (o *Ops) parallel(n, grain int, fn func(lo, hi int)) {
	parts := min(o.workers, (n+grain-1)/max(grain, 1))
	if parts <= 1 {
		fn(0, n)
		return
	}
	goParallel(n, parts, fn)
}

// goParallel runs fn over parts parts of [0, n) on goroutines of their own.
func goParallel(n, parts int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := n*p/parts, n*(p+1)/parts
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

func (o *Ops) MatMul(c, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32) {
	matmul(o, f(c), f(a), f(b), m, n, k, ta, tb, alpha, beta)
}

func (o *Ops) AddBias(y, bias kernels.Buf, rows, cols int) {
	ys, bs := f(y), f(bias)
	o.parallel(rows, 64, func(lo, hi int) {
		if addBiasRows != nil {
			addBiasRows(ys[lo*cols:hi*cols], bs[:cols], hi-lo, cols)
			return
		}
		for r := lo; r < hi; r++ {
			row := ys[r*cols : (r+1)*cols]
			for j, v := range bs[:cols] {
				row[j] += v
			}
		}
	})
}

func (o *Ops) BiasGrad(db, dy kernels.Buf, rows, cols int) {
	d, g := f(db), f(dy)
	// Each column is summed over the rows in row order, as a column-at-a-
	// time loop would, but a strip of columns at once, row after row, so
	// that each row's strip is read contiguously: striding down one column
	// at a time missed the cache on every row and was 9% of a small model's
	// step (BenchmarkSmallStep), and strips of 64 columns still read 256
	// bytes a row at T=1024 (0.3 s of GPT-2 124M's step, BenchmarkStepOps).
	// Strips, not row ranges, go to the workers (one strip each, of at
	// least 64 columns), so the sums are the same whatever the number of
	// workers.
	strip := max(64, ((cols+o.workers-1)/o.workers+7)/8*8)
	strips := (cols + strip - 1) / strip
	o.parallel(strips, 1, func(lo, hi int) {
		acc := make([]float32, strip)
		for s := lo; s < hi; s++ {
			c0, c1 := s*strip, min(cols, (s+1)*strip)
			a := acc[:c1-c0]
			clear(a)
			if colSums != nil {
				colSums(a, g[:rows*cols], rows, cols, c0)
			} else {
				for r := 0; r < rows; r++ {
					for j, v := range g[r*cols+c0 : r*cols+c1] {
						a[j] += v
					}
				}
			}
			for j, v := range a {
				d[c0+j] += v
			}
		}
	})
}

func (o *Ops) Embed(out, wte, wpe kernels.Buf, ids []int32, B, T, C int) {
	os, te, pe := f(out), f(wte), f(wpe)
	for bt, id := range ids[:B*T] {
		t := bt % T
		dst := os[bt*C : (bt+1)*C]
		tok, pos := te[int(id)*C:int(id+1)*C], pe[t*C:(t+1)*C]
		for i := range dst {
			dst[i] = tok[i] + pos[i]
		}
	}
}

func (o *Ops) EmbedBackward(dwte, dwpe, dout kernels.Buf, ids []int32, B, T, C int) {
	dte, dpe, g := f(dwte), f(dwpe), f(dout)
	for bt, id := range ids[:B*T] {
		t := bt % T
		src := g[bt*C : (bt+1)*C]
		tok, pos := dte[int(id)*C:int(id+1)*C], dpe[t*C:(t+1)*C]
		for i, v := range src {
			tok[i] += v
			pos[i] += v
		}
	}
}

const lnEps = 1e-5

func (o *Ops) LayerNorm(out, mean, rstd, x, w, b kernels.Buf, rows, C int) {
	os, ms, rs, xs, ws, bs := f(out), f(mean), f(rstd), f(x), f(w), f(b)
	o.parallel(rows, 16, func(lo, hi int) {
		if lnForwardRows != nil {
			lnForwardRows(os[lo*C:hi*C], ms[lo:hi], rs[lo:hi], xs[lo*C:hi*C], ws[:C], bs[:C], C)
			return
		}
		for r := lo; r < hi; r++ {
			ms[r], rs[r] = layerNormRow(os[r*C:(r+1)*C], xs[r*C:(r+1)*C], ws[:C], bs[:C])
		}
	})
}

// layerNormRow normalises one row into dst and returns its mean and
// 1/sqrt(variance + eps). The mean and the variance (two passes: the sum
// of squared deviations from the mean, not E[x²] − m²) are sums in float64,
// element i added into lane i mod 8 and the eight lanes then added in
// order, as sumSquares does: an order lnForwardRows keeps in AVX2, bit for
// bit. Float64 lanes rather than float32 ones because they cost nothing
// here (eight lanes are two vector chains of additions either way) and
// keep the sums' rounding far below float32's at any row length, where
// the single float32 chain this replaced lost digits as C grew.
func layerNormRow(dst, row, w, b []float32) (m, s float32) {
	var lane [8]float64
	for i, v := range row {
		lane[i%8] += float64(v)
	}
	m = float32(laneSum(&lane) / float64(len(row)))
	lane = [8]float64{}
	for i, v := range row {
		d := float64(v) - float64(m)
		lane[i%8] += d * d
	}
	s = float32(1 / math.Sqrt(laneSum(&lane)/float64(len(row))+lnEps))
	for i, v := range row {
		dst[i] = (v-m)*s*w[i] + b[i]
	}
	return m, s
}

// laneSum adds the eight lanes in order.
func laneSum(lane *[8]float64) float64 {
	var s float64
	for _, v := range lane {
		s += v
	}
	return s
}

func (o *Ops) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd kernels.Buf, rows, C int) {
	dxs, dws, dbs, g, xs, ws, ms, rs := f(dx), f(dw), f(db), f(dout), f(x), f(w), f(mean), f(rstd)
	// dx rows in parallel; dw and db summed over fixed blocks of rows,
	// then the blocks' sums added in order, so that their bits do not
	// depend on the number of workers (TestNormBackwardWorkersBitExact)
	blocks := (rows + normBlock - 1) / normBlock
	sums := make([]float32, blocks*2*C)
	o.parallel(blocks, 1, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			r0, r1 := k*normBlock, min(rows, (k+1)*normBlock)
			acc := sums[k*2*C : (k+1)*2*C]
			if lnBackwardRows != nil {
				lnBackwardRows(dxs[r0*C:r1*C], acc, g[r0*C:r1*C], xs[r0*C:r1*C], ws[:C], ms[r0:r1], rs[r0:r1], C)
				continue
			}
			for r := r0; r < r1; r++ {
				layerNormBackwardRow(dxs[r*C:(r+1)*C], acc, g[r*C:(r+1)*C], xs[r*C:(r+1)*C], ws[:C], ms[r], rs[r])
			}
		}
	})
	for k := range blocks {
		acc := sums[k*2*C : (k+1)*2*C]
		for i := 0; i < C; i++ {
			dws[i] += acc[i]
			dbs[i] += acc[C+i]
		}
	}
}

// normBlock is the rows whose weight gradients a norm's backward pass sums
// apart before adding the blocks' sums in order.
const normBlock = 64

// layerNormBackwardRow adds one row's input gradient into dr and its
// weight and bias gradients into acc[:C] and acc[C:]. The row sums of
// dnorm and dnorm·norm are float64 lanes as in layerNormRow (the order
// lnBackwardRows keeps); the rest is elementwise float32.
func layerNormBackwardRow(dr, acc, gr, xr, w []float32, m, s float32) {
	C := len(xr)
	var l1, l2 [8]float64
	for i := range xr {
		norm := (xr[i] - m) * s
		dnorm := w[i] * gr[i]
		l1[i%8] += float64(dnorm)
		l2[i%8] += float64(dnorm) * float64(norm)
		acc[i] += norm * gr[i]
		acc[C+i] += gr[i]
	}
	dnormMean := float32(laneSum(&l1) / float64(C))
	dnormNormMean := float32(laneSum(&l2) / float64(C))
	for i := range xr {
		norm := (xr[i] - m) * s
		dnorm := w[i] * gr[i]
		dr[i] += (dnorm - dnormMean - norm*dnormNormMean) * s
	}
}

const geluScale = 0.7978845608028654 // sqrt(2/π)

// adamwRange, sumSquaresRange, expShifted, geluRange and
// geluBackwardRange, where set (vec_avx2.go), compute AdamW's update, a sum
// of squares, a softmax's exponentials, GELU and its gradient over a range
// bit for bit as the Go loops do.
var (
	lnForwardRows     func(out, mean, rstd, x, w, b []float32, C int)     // layerNormRow over len(mean) rows
	lnBackwardRows    func(dx, acc, g, x, w, mean, rstd []float32, C int) // layerNormBackwardRow over len(mean) rows
	addBiasRows       func(y, bias []float32, rows, cols int)
	colSums           func(acc, g []float32, rows, cols, c0 int)          // acc[j] += column c0+j of g, row by row
	ceMax             func(x []float32) float32                           // rowMax
	ceSumExp          func(d, x []float32, m float32) float64             // sumExp
	ceScale           func(d []float32, k float64)                        // scaleRow
	scatterAddRows    func(d, s []float32, rows []int32, width int)       // ScatterAddRows' rows
	scatterAddRuns    func(d, s []float32, runs []int32, n, width, k int) // ScatterAddCols' n rows by colRuns
	gatherColsOne     func(d, s []float32, cols []int32, n, width int)    // GatherCols' n rows without runs
	scatterAddColsOne func(d, s []float32, cols []int32, n, width int)    // ScatterAddCols' n rows without runs
	adamwRange        func(u adamw, p, g, m, v []float32)
	adamwRows         func(u adamw, p, g, m, v []float32, width int, has []bool) // AdamWGradRows' rows
	sumSquaresRange   func(x []float32) float64
	sumSquares4       func(x0, x1, x2, x3 []float32) [4]float64     // sumSquaresRange of four equal parts at once
	sumSquaresPieces  func(x []float32, spans []int, out []float64) // sumSquaresRange of each span [spans[2k], spans[2k+1]) of x, in out[k]
	expShifted        func(x []float32, m float32)                  // x[i] = expNeg(x[i] − m)
	softmaxGradRange  func(dr, p []float32, scale float32)          // softmaxGrad
	geluRange         func(out, x []float32)
	geluBackwardRange func(dx, x, g []float32)
)

func (o *Ops) GELU(out, x kernels.Buf) {
	os, xs := f(out), f(x)
	o.parallel(len(xs), 1<<13, func(lo, hi int) {
		if geluRange != nil {
			geluRange(os[lo:hi], xs[lo:hi])
			return
		}
		for i := lo; i < hi; i++ {
			v := xs[i]
			u := geluScale * (v + 0.044715*v*v*v)
			os[i] = 0.5 * v * (1 + tanh32(u))
		}
	})
}

func (o *Ops) GELUBackward(dx, x, dout kernels.Buf) {
	ds, xs, g := f(dx), f(x), f(dout)
	o.parallel(len(xs), 1<<13, func(lo, hi int) {
		if geluBackwardRange != nil {
			geluBackwardRange(ds[lo:hi], xs[lo:hi], g[lo:hi])
			return
		}
		for i := lo; i < hi; i++ {
			v := xs[i]
			u := geluScale * (v + 0.044715*v*v*v)
			th := tanh32(u)
			sech2 := 1 - th*th
			du := geluScale * (1 + 3*0.044715*v*v)
			ds[i] += g[i] * (0.5*(1+th) + 0.5*v*sech2*du)
		}
	})
}

func (o *Ops) Attention(out, att, qkv kernels.Buf, B, T, NH, NKV, HS int) {
	if sgemm != nil {
		o.attentionBLAS(f(out), f(att), f(qkv), B, T, NH, NKV, HS)
		return
	}
	os, as, in := f(out), f(att), f(qkv)
	C, W := NH*HS, (NH+2*NKV)*HS
	scale := float32(1 / math.Sqrt(float64(HS)))
	o.parallel(B*NH, 1, func(lo, hi int) {
		for bh := lo; bh < hi; bh++ {
			b, h := bh/NH, bh%NH
			ko, vo := kvOff(h, NH, NKV, HS, 0), kvOff(h, NH, NKV, HS, 1)
			for t := 0; t < T; t++ {
				q := in[(b*T+t)*W+h*HS:][:HS]
				row := as[((b*NH+h)*T+t)*T:][:T]
				maxv := float32(math.Inf(-1))
				for t2 := 0; t2 <= t; t2++ {
					k := in[(b*T+t2)*W+ko:][:HS]
					var d float32
					for i, qv := range q {
						d += qv * k[i]
					}
					d *= scale
					row[t2] = d
					if d > maxv {
						maxv = d
					}
				}
				var sum float32
				for t2 := 0; t2 <= t; t2++ {
					e := expNeg(row[t2] - maxv)
					row[t2] = e
					sum += e
				}
				inv := 1 / sum
				for t2 := 0; t2 < T; t2++ {
					if t2 <= t {
						row[t2] *= inv
					} else {
						row[t2] = 0
					}
				}
				dst := os[(b*T+t)*C+h*HS:][:HS]
				clear(dst)
				for t2 := 0; t2 <= t; t2++ {
					v := in[(b*T+t2)*W+vo:][:HS]
					p := row[t2]
					for i, vv := range v {
						dst[i] += p * vv
					}
				}
			}
		}
	})
}

// AttentionState: the CPU backend keeps the probabilities.
func (o *Ops) AttentionState(B, NH, T int) int { return B * NH * T * T }

// Err is always nil: the CPU backend's ops cannot fail.
func (o *Ops) Err() error { return nil }

func (o *Ops) AttentionBackward(dqkv, dout, _, qkv, att kernels.Buf, B, T, NH, NKV, HS int) {
	if sgemm != nil {
		o.attentionBackwardBLAS(f(dqkv), f(dout), f(qkv), f(att), B, T, NH, NKV, HS)
		return
	}
	dq, g, in, as := f(dqkv), f(dout), f(qkv), f(att)
	C, W, G := NH*HS, (NH+2*NKV)*HS, NH/NKV
	scale := float32(1 / math.Sqrt(float64(HS)))
	// in parallel over key/value heads: the query heads of one group add
	// into the same dk and dv
	o.parallel(B*NKV, 1, func(lo, hi int) {
		datt := make([]float32, T)
		for bg := lo; bg < hi; bg++ {
			b := bg / NKV
			for h := bg % NKV * G; h < (bg%NKV+1)*G; h++ {
				ko, vo := kvOff(h, NH, NKV, HS, 0), kvOff(h, NH, NKV, HS, 1)
				for t := 0; t < T; t++ {
					row := as[((b*NH+h)*T+t)*T:][:T]
					gout := g[(b*T+t)*C+h*HS:][:HS]
					// dv and datt
					var dot float32
					for t2 := 0; t2 <= t; t2++ {
						v := in[(b*T+t2)*W+vo:][:HS]
						dv := dq[(b*T+t2)*W+vo:][:HS]
						var d float32
						p := row[t2]
						for i, gv := range gout {
							d += gv * v[i]
							dv[i] += p * gv
						}
						datt[t2] = d
						dot += d * p
					}
					// softmax backward, then q and k
					q := in[(b*T+t)*W+h*HS:][:HS]
					dqv := dq[(b*T+t)*W+h*HS:][:HS]
					for t2 := 0; t2 <= t; t2++ {
						ds := row[t2] * (datt[t2] - dot) * scale
						k := in[(b*T+t2)*W+ko:][:HS]
						dk := dq[(b*T+t2)*W+ko:][:HS]
						for i := range q {
							dqv[i] += ds * k[i]
							dk[i] += ds * q[i]
						}
					}
				}
			}
		}
	})
}

func (o *Ops) CrossEntropy(losses, dlogits, logits kernels.Buf, targets []int32, rows, V, Vp int, scale float32) {
	ls, dl, lg := f(losses), f(dlogits), f(logits)
	o.parallel(rows, 4, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := lg[r*Vp : r*Vp+V]
			maxv := rowMax(row)
			tg := int(targets[r])
			tv := row[tg] - maxv
			if dl == nil {
				ls[r] = float32(math.Log(sumExp(nil, row, maxv))) - tv
				continue
			}
			// one exp per logit: kept in dlogits (which may be the logits
			// themselves), then normalised
			d := dl[r*Vp : (r+1)*Vp]
			sum := sumExp(d[:V], row, maxv)
			ls[r] = float32(math.Log(sum)) - tv
			scaleRow(d[:V], float64(scale)/sum)
			d[tg] -= scale
			clear(d[V:])
		}
	})
}

// rowMax is the largest of x, -Inf for none: each value compared with
// the running maximum of its lane (element i's lane is i mod 8) as v > max
// (a NaN is passed over, and reaches the loss through the sum), then the
// eight lanes in order, as the vector unit does (ceMax).
func rowMax(x []float32) float32 {
	if ceMax != nil {
		return ceMax(x)
	}
	var lane [8]float32
	for j := range lane {
		lane[j] = float32(math.Inf(-1))
	}
	for i, v := range x {
		if v > lane[i%8] { // not max(): its NaN and signed-zero rules cost 4× here
			lane[i%8] = v
		}
	}
	m := lane[0]
	for _, v := range lane[1:] {
		if v > m {
			m = v
		}
	}
	return m
}

// sumExp is the sum of expNeg(x[i] − m) in float64, element i added into
// lane i mod 8 and the lanes then added in order (as sumSquares); when d
// is not nil it also keeps each exponential in d[i] (d may be x).
func sumExp(d, x []float32, m float32) float64 {
	if ceSumExp != nil {
		return ceSumExp(d, x, m)
	}
	var lane [8]float64
	for i, v := range x {
		e := expNeg(v - m)
		if d != nil {
			d[i] = e
		}
		lane[i%8] += float64(e)
	}
	var s float64
	for _, v := range lane {
		s += v
	}
	return s
}

// scaleRow multiplies each of d by k in float64, rounding back to float32.
func scaleRow(d []float32, k float64) {
	if ceScale != nil {
		ceScale(d, k)
		return
	}
	for i := range d {
		d[i] = float32(float64(d[i]) * k)
	}
}

func (o *Ops) GatherRows(dst, src kernels.Buf, rows []int32, width int) {
	d, s := f(dst), f(src)
	o.parallel(len(rows), rowGrain(width), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := int(rows[i])
			copy(d[i*width:(i+1)*width], s[r*width:(r+1)*width])
		}
	})
}

// ScatterAddRows splits a list that increases (the sampler's, whose rows
// are distinct) over the workers by its entries. Any other list (a batch's
// token ids, into the token embedding's gradient, repeat) is split by the
// rows of dst instead: each worker adds, in src's order, every entry that
// lands in its own rows, so a repeated row gets all its adds, in order,
// from one worker, whatever the number of workers. Split by entries, two
// workers had added into a repeated row at once and lost adds
// (TestScatterAddRowsRepeats).
func (o *Ops) ScatterAddRows(dst, src kernels.Buf, rows []int32, width int) {
	d, s := f(dst), f(src)
	if width <= 0 || len(rows) == 0 {
		return
	}
	if !increasing(rows) {
		checkIndex("row", rows, len(d)/width)
		o.parallel(len(d)/width, 1, func(lo, hi int) {
			for i, r := range rows {
				if int(r) < lo || int(r) >= hi {
					continue
				}
				if scatterAddRows != nil {
					scatterAddRows(d, s[i*width:(i+1)*width], rows[i:i+1], width)
					continue
				}
				row := d[int(r)*width : int(r+1)*width]
				for j, v := range s[i*width : (i+1)*width] {
					row[j] += v
				}
			}
		})
		return
	}
	o.parallel(len(rows), rowGrain(width), func(lo, hi int) {
		if scatterAddRows != nil {
			scatterAddRows(d, s[lo*width:hi*width], rows[lo:hi], width)
			return
		}
		for i := lo; i < hi; i++ {
			r := int(rows[i])
			row := d[r*width : (r+1)*width]
			for j, v := range s[i*width : (i+1)*width] {
				row[j] += v
			}
		}
	})
}

func (o *Ops) GatherCols(dst, src kernels.Buf, n, width int, cols []int32) {
	d, s := f(dst), f(src)
	k, runs := len(cols), colRuns(cols)
	o.parallel(n, rowGrain(k), func(lo, hi int) {
		if runs == nil && gatherColsOne != nil {
			gatherColsOne(d[lo*k:hi*k], s[lo*width:hi*width], cols, hi-lo, width)
			return
		}
		for r := lo; r < hi; r++ {
			srow, drow := s[r*width:(r+1)*width], d[r*k:(r+1)*k]
			if runs == nil {
				for j, c := range cols {
					drow[j] = srow[c]
				}
				continue
			}
			for q := 0; q < len(runs); q += 3 {
				c, j, l := int(runs[q]), int(runs[q+1]), int(runs[q+2])
				if l == 1 {
					drow[j] = srow[c]
					continue
				}
				copy(drow[j:j+l], srow[c:c+l])
			}
		}
	})
}

func (o *Ops) ScatterAddCols(dst, src kernels.Buf, n, width int, cols []int32) {
	d, s := f(dst), f(src)
	k, runs := len(cols), colRuns(cols)
	o.parallel(n, rowGrain(k), func(lo, hi int) {
		if runs != nil && scatterAddRuns != nil {
			scatterAddRuns(d[lo*width:hi*width], s[lo*k:hi*k], runs, hi-lo, width, k)
			return
		}
		if runs == nil && scatterAddColsOne != nil {
			scatterAddColsOne(d[lo*width:hi*width], s[lo*k:hi*k], cols, hi-lo, width)
			return
		}
		for r := lo; r < hi; r++ {
			drow, srow := d[r*width:(r+1)*width], s[r*k:(r+1)*k]
			if runs == nil {
				for j, c := range cols {
					drow[c] += srow[j]
				}
				continue
			}
			for q := 0; q < len(runs); q += 3 {
				c, j, l := int(runs[q]), int(runs[q+1]), int(runs[q+2])
				for t, v := range srow[j : j+l] {
					drow[c+t] += v
				}
			}
		}
	})
}

// colRuns are the runs of consecutive columns in a column list (a head's
// 64 columns, a neuron group's), as triples: the first column, its index
// in the list and the run's length; the gathers and scatters of columns
// copy and add a run at a time. Where the runs average fewer than eight
// columns (neurons sampled one by one) a run costs more than it saves
// (BenchmarkGatherScatter), and the list is taken as runs of one.
func colRuns(cols []int32) []int32 {
	var runs []int32
	for j := 0; j < len(cols); {
		k := j + 1
		for k < len(cols) && cols[k] == cols[k-1]+1 {
			k++
		}
		runs = append(runs, cols[j], int32(j), int32(k-j))
		j = k
	}
	if len(runs)/3*8 > len(cols) {
		return nil
	}
	return runs
}

// rowGrain is the fewest rows of width values a worker of a gather or a
// scatter takes: about 16 Ki values, below which a goroutine costs more
// than it saves.
func rowGrain(width int) int {
	return max(1, (1<<14)/max(width, 1))
}

func (o *Ops) AdamW(params, grads, m, v kernels.Buf, a kernels.AdamWArgs) {
	p, g, ms, vs := f(params), f(grads), f(m), f(v)
	u := newAdamw(a)
	o.parallel(len(p), 1<<14, func(lo, hi int) {
		u.update(p[lo:hi], g[lo:hi], ms[lo:hi], vs[lo:hi])
	})
}

func (o *Ops) AdamWSub(params, grads, m, v kernels.Buf, width int, rows, cols []int32, a kernels.AdamWArgs) {
	p, g, ms, vs := f(params), f(grads), f(m), f(v)
	u := newAdamw(a)
	n := len(p) / width
	if rows != nil {
		n = len(rows)
	}
	o.parallel(n, 16, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			r := i
			if rows != nil {
				r = int(rows[i])
			}
			off := r * width
			if cols == nil {
				u.update(p[off:off+width], g[off:off+width], ms[off:off+width], vs[off:off+width])
				continue
			}
			// runs of consecutive columns (heads, neuron groups) at once
			for j := 0; j < len(cols); {
				k := j + 1
				for k < len(cols) && cols[k] == cols[k-1]+1 {
					k++
				}
				lo, hi := off+int(cols[j]), off+int(cols[k-1])+1
				u.update(p[lo:hi], g[lo:hi], ms[lo:hi], vs[lo:hi])
				j = k
			}
		}
	})
}

// AdamWGradRows: kernels.GradRowsAdamWer. The rows split between the
// cores; the unmarked ones are updated as AdamW would with a gradient of
// zeros (the same operations, on a zero the kernel makes, not reads).
func (o *Ops) AdamWGradRows(params, grads, m, v kernels.Buf, width int, has []bool, a kernels.AdamWArgs) {
	p, g, ms, vs := f(params), f(grads), f(m), f(v)
	if width <= 0 || len(p) != width*len(has) {
		panic(fmt.Sprintf("cpu: AdamWGradRows of %d values by rows of %d, %d rows marked", len(p), width, len(has)))
	}
	u := newAdamw(a)
	o.parallel(len(has), 16, func(lo, hi int) {
		if adamwRows != nil {
			adamwRows(u, p[lo*width:hi*width], g[lo*width:hi*width], ms[lo*width:hi*width], vs[lo*width:hi*width], width, has[lo:hi])
			return
		}
		for r := lo; r < hi; {
			e := r + 1
			for e < hi && has[e] == has[r] {
				e++
			}
			x0, x1 := r*width, e*width
			if has[r] {
				u.update(p[x0:x1], g[x0:x1], ms[x0:x1], vs[x0:x1])
			} else {
				u.updateGo(p[x0:x1], nil, ms[x0:x1], vs[x0:x1])
			}
			r = e
		}
	})
}

// ZeroesGrads: AdamW and AdamWSub honour AdamWArgs.ZeroGrads
// (kernels.GradZeroer).
func (o *Ops) ZeroesGrads() bool { return true }

// adamw is one AdamW update's constants, float32 throughout as PyTorch's
// AdamW computes.
type adamw struct {
	beta1, beta2, eps, scale, decay, stepSize, rbc2 float32
	zero                                            bool // leave 0 in each gradient read (AdamWArgs.ZeroGrads)
}

func newAdamw(a kernels.AdamWArgs) adamw {
	bc1 := float32(1 - math.Pow(float64(a.Beta1), float64(a.Step)))
	scale := a.GradScale
	if scale == 0 {
		scale = 1
	}
	return adamw{
		beta1: a.Beta1, beta2: a.Beta2, eps: a.Eps, scale: scale,
		decay: 1 - a.LR*a.WeightDecay, stepSize: a.LR / bc1,
		rbc2: float32(1 / math.Sqrt(1-math.Pow(float64(a.Beta2), float64(a.Step)))),
		zero: a.ZeroGrads,
	}
}

func (u adamw) update(ps, gs, mm, vv []float32) {
	gs, mm, vv = gs[:len(ps)], mm[:len(ps)], vv[:len(ps)]
	if adamwRange != nil {
		adamwRange(u, ps, gs, mm, vv)
		return
	}
	u.updateGo(ps, gs, mm, vv)
}

// updateGo is update in Go; a nil gs is a gradient of zeros, not read.
func (u adamw) updateGo(ps, gs, mm, vv []float32) {
	mm, vv = mm[:len(ps)], vv[:len(ps)]
	if gs != nil {
		gs = gs[:len(ps)]
	}
	for i := range ps {
		var gi float32
		if gs != nil {
			gi = gs[i]
			if u.zero {
				gs[i] = 0
			}
		}
		if u.scale != 1 {
			gi *= u.scale
		}
		mi := u.beta1*mm[i] + (1-u.beta1)*gi
		vi := u.beta2*vv[i] + (1-u.beta2)*gi*gi
		mm[i], vv[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))*u.rbc2 + u.eps
		ps[i] = ps[i]*u.decay - u.stepSize*mi/denom
	}
}
