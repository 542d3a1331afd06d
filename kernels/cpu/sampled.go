package cpu

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/estkit/estkit/kernels"
)

// The products of a sampled linear layer, without the gathered copy.
//
// A sampled step multiplies by the listed rows or columns of a weight,
// and adds its weight gradient into the listed rows or columns of the
// gradient. Gathering them into a compact copy first (GatherRows,
// GatherCols) and scattering the compact gradient back (ScatterAddRows,
// ScatterAddCols) took 60 of the 704 ms of GPT-2 124M's step at B=4,
// T=64 and the 0.5:0.5:1 rates (BenchmarkStepOps): passes over memory
// beside products that read the same values anyway. OpenBLAS has no entry
// point that reads an operand through an index list, but it exports the
// pieces its sgemm is made of for each CPU it supports: the packing
// routines and the inner kernel. MatMulSampled and MatMulScatter run its
// driver's loop over those pieces (sampled_openblas.go), gathering each
// block of the indexed operand into a buffer in cache just before
// OpenBLAS packs it, and adding each tile of a scattered product while it
// is in cache. The blocks, the packing and the kernel are the driver's, so
// the bits are those of sgemm over the gathered copy
// (TestMatMulSampledBitExact); a self-check at first use compares them
// and turns the path off where they differ (another OpenBLAS).

// sampledOpnd is an operand of the column-major product sampledRun
// computes: element (i, l) is p[ri·si + rl·sl], where ri is im[i] (or i)
// and rl is lm[l] (or l).
type sampledOpnd struct {
	p      []float32
	si, sl int
	im, lm []int32
}

// sampledJob is C(M×N) = alpha·A(M×K)·B(K×N) + beta·C, column-major with
// column stride ldc, in parts ranges of C's rows (splitM) or columns as
// Ops.parallel gives them; with scatter, C's element (i, j) is added at
// c[ci[i] + cj[j]·ldc] (nil maps: i, j) of what the product would be into
// a zeroed C.
type sampledJob struct {
	a, b        sampledOpnd
	c           []float32
	ldc         int
	ci, cj      []int32
	m, n, k     int
	alpha, beta float32
	scatter     bool
	parts       int
	splitM      bool
	solo        bool // the parts run one after another on the calling thread
	sorted      bool // the index list increases
}

var (
	// sampledRun, where set (sampled_openblas.go), runs a sampledJob: 1
	// done, 0 declined with nothing written, -1 failed after writing.
	sampledRun func(j *sampledJob) int
	// sampledDepth is the depth block (GEMM_Q) of the driver sampledRun
	// follows: the deepest product a scatter takes.
	sampledDepth int
	// sampledOff says why sampledRun is not set.
	sampledOff = "no BLAS built in"
	// sampledCheck is the self-check at first use.
	sampledCheck sync.Once
)

// SampledOff says why MatMulSampled and MatMulScatter decline every
// product in this build or on this CPU ("" where they take them).
func SampledOff() string {
	sampledCheck.Do(selfCheckSampled)
	if sampledRun != nil {
		return ""
	}
	return sampledOff
}

// sampledMin is the least multiply-adds in a part of a product (M·N·K)
// that sampledRun takes: OpenBLAS's sgemm sends smaller products to other
// kernels (small-matrix ones at up to 100³; its direct kernel, for
// untransposed products, below 28·512·512), whose bits the driver's loop
// would not reproduce.
const sampledMin = 28 * 512 * 512

// sampledMinCopy is the least values of the copy (the gathered weight, or
// the compact gradient) that the in-place products save: a smaller one
// stays in cache, where gathering it costs little, and each part of a
// product split by its activations' rows would gather the whole weight
// itself (BenchmarkMatMulSampled at the horizon model's shapes, a
// 256×128 copy: 5-9% slower in place).
const sampledMinCopy = 1 << 18

// sampledSplit is the pieces matmul would cut a product of these shapes
// into, and along which side; ok says whether sampledRun takes it (it
// runs a piece a worker, or all of them on one, so not where the pieces
// outnumber two or more workers).
func (o *Ops) sampledSplit(m, n, k int, ta bool) (parts int, splitM, ok bool) {
	if sampledRun == nil || m < 16 || n < 16 || k < 16 {
		return 0, false, false
	}
	parts, ext, other, cols := o.cut(m, n, k, ta)
	if parts > o.workers && o.workers > 1 || float64(ext/parts)*float64(other)*float64(k) < sampledMin {
		return 0, false, false
	}
	return parts, cols, true
}

// checkIndex panics, as a slice would, where an index is outside [0, n).
func checkIndex(what string, idx []int32, n int) {
	for _, v := range idx {
		if v < 0 || int(v) >= n {
			panic(fmt.Sprintf("cpu: %s index %d out of range [0, %d)", what, v, n))
		}
	}
}

// MatMulSampled sets c[m×n] = alpha·op(a)·op(wₛ) + beta·c, where wₛ is the
// rows (rows non-nil) or the columns (cols) of w, a weight width values
// wide, that GatherRows or GatherCols would copy out, op(wₛ) being k×n
// (wₛ n×k transposed when tb): MatMul over the gathered copy, with the
// same bits, without making it. False where it does not apply (no
// OpenBLAS pieces for this CPU, a product too small, the pool busy): it
// then wrote nothing and the caller gathers.
func (o *Ops) MatMulSampled(c, a, w kernels.Buf, m, n, k int, ta, tb bool, alpha, beta float32, rows, cols []int32, width int) bool {
	sampledCheck.Do(selfCheckSampled)
	return o.matMulSampled(f(c), f(a), f(w), m, n, k, ta, tb, alpha, beta, rows, cols, width)
}

// sampledDims says whether every extent is positive and at most 2³¹−1,
// so that the checks' products of two cannot overflow (a width of 2⁶²
// once passed them, wrapped round, with C about to write far outside dst).
func sampledDims(x ...int) bool {
	for _, v := range x {
		if v <= 0 || v > math.MaxInt32 {
			return false
		}
	}
	return true
}

func (o *Ops) matMulSampled(cv, av, wv []float32, m, n, k int, ta, tb bool, alpha, beta float32, rows, cols []int32, width int) bool {
	if (rows == nil) == (cols == nil) || alpha == 0 || !sampledDims(m, n, k, width) {
		return false
	}
	parts, splitM, ok := o.sampledSplit(m, n, k, ta)
	if !ok {
		return false
	}
	if len(cv) < m*n || len(av) < m*k {
		panic("cpu: matmul operands smaller than their shapes")
	}
	// wₛ is R×Cw; op(wₛ) is k×n
	R, Cw := k, n
	if tb {
		R, Cw = n, k
	}
	if R*Cw < sampledMinCopy {
		return false
	}
	j := sampledJob{c: cv, ldc: n, m: n, n: m, k: k, alpha: alpha, beta: beta, parts: parts, splitM: splitM, solo: o.workers <= 1}
	if rows != nil {
		if len(rows) != R || width != Cw {
			panic(fmt.Sprintf("cpu: %d rows of width %d for a %d×%d operand", len(rows), width, R, Cw))
		}
		checkIndex("row", rows, len(wv)/width)
		if tb {
			j.a = sampledOpnd{p: wv, si: width, sl: 1, im: rows}
		} else {
			j.a = sampledOpnd{p: wv, si: 1, sl: width, lm: rows}
		}
	} else {
		if len(cols) != Cw || len(wv) < R*width {
			panic(fmt.Sprintf("cpu: %d columns of a %d-wide weight of %d values for a %d×%d operand", len(cols), width, len(wv), R, Cw))
		}
		checkIndex("column", cols, width)
		if tb {
			j.a = sampledOpnd{p: wv, si: width, sl: 1, lm: cols}
		} else {
			j.a = sampledOpnd{p: wv, si: 1, sl: width, im: cols}
		}
	}
	j.b = opndB(av, m, k, ta)
	return o.runSampled(&j, rows, cols)
}

// MatMulScatter adds alpha·op(a)·op(b), m×n, into the rows (rows: m of
// them; n = width) or the columns (cols: n of them; dst m×width) of dst
// listed: what ScatterAddRows or ScatterAddCols would add of MatMul's
// product into a zeroed buffer, with the same bits, without the buffer.
// False where it does not apply (as MatMulSampled, or deeper than one
// block of OpenBLAS's driver): it then wrote nothing.
func (o *Ops) MatMulScatter(dst, a, b kernels.Buf, m, n, k int, ta, tb bool, alpha float32, rows, cols []int32, width int) bool {
	sampledCheck.Do(selfCheckSampled)
	return o.matMulScatter(f(dst), f(a), f(b), m, n, k, ta, tb, alpha, rows, cols, width)
}

func (o *Ops) matMulScatter(dv, av, bv []float32, m, n, k int, ta, tb bool, alpha float32, rows, cols []int32, width int) bool {
	if (rows == nil) == (cols == nil) || alpha == 0 || !sampledDims(m, n, k, width) || k > sampledDepth {
		return false
	}
	parts, splitM, ok := o.sampledSplit(m, n, k, ta)
	if !ok || m*n < sampledMinCopy {
		return false
	}
	if len(av) < m*k || len(bv) < k*n {
		panic("cpu: matmul operands smaller than their shapes")
	}
	j := sampledJob{c: dv, ldc: width, m: n, n: m, k: k, alpha: alpha, scatter: true, parts: parts, splitM: splitM, solo: o.workers <= 1}
	if rows != nil {
		if len(rows) != m || width != n {
			panic(fmt.Sprintf("cpu: %d rows of width %d for a %d×%d product", len(rows), width, m, n))
		}
		checkIndex("row", rows, len(dv)/width)
		j.cj = rows
	} else {
		if len(cols) != n || len(dv) < m*width {
			panic(fmt.Sprintf("cpu: %d columns of a %d-wide gradient of %d values for a %d×%d product", len(cols), width, len(dv), m, n))
		}
		checkIndex("column", cols, width)
		j.ci = cols
	}
	// A' = op(b)ᵀ: A'(i, l) = op(b)[l][i]
	if tb {
		j.a = sampledOpnd{p: bv, si: k, sl: 1}
	} else {
		j.a = sampledOpnd{p: bv, si: 1, sl: n}
	}
	j.b = opndB(av, m, k, ta)
	return o.runSampled(&j, rows, cols)
}

// opndB is B' = op(a)ᵀ of a row-major product with op(a) m×k:
// B'(l, j) = op(a)[j][l].
func opndB(a []float32, m, k int, ta bool) sampledOpnd {
	if ta {
		return sampledOpnd{p: a, si: 1, sl: m}
	}
	return sampledOpnd{p: a, si: k, sl: 1}
}

// runSampled runs j, whose index list is rows or cols.
func (o *Ops) runSampled(j *sampledJob, rows, cols []int32) bool {
	idx := rows
	if idx == nil {
		idx = cols
	}
	j.sorted = increasing(idx)
	switch sampledRun(j) {
	case 1:
		return true
	case 0:
		return false
	}
	panic("cpu: out of memory for a product's packing buffers")
}

// selfCheckSampled compares MatMulSampled and MatMulScatter with the
// gathers and MatMul on a few products, bit for bit, and turns them off
// where one differs: OpenBLAS's blocking is taken from its sources
// (0.3.21), and another build may block differently.
func selfCheckSampled() {
	if sampledRun == nil {
		return
	}
	if why := checkSampled(); why != "" {
		sampledRun = nil
		sampledOff = "self-check: " + why
	}
}

// checkSampled is the self-check's comparisons: "" when all agree.
func checkSampled() string {
	// W is 1000×600 and half its rows or columns run, so that three of
	// the four products are deep enough for the driver to split their
	// depth; 64 rows of activations, and 200 for the weight gradient.
	// The buffers are made once and reused: the check runs inside a
	// training step, whose peak memory it should not raise.
	const m, wr, wc, bt = 64, 1000, 600, 200
	rng := uint32(12345)
	fill := func(x []float32) []float32 {
		for i := range x {
			rng = rng*1664525 + 1013904223
			x[i] = float32(int32(rng>>8)-1<<23) / (1 << 23)
		}
		return x
	}
	// every other index: neither runs nor a prefix
	pick := func(n int) []int32 {
		var idx []int32
		for i := 1; i < n; i += 2 {
			idx = append(idx, int32(i))
		}
		return idx
	}
	w, dw, dw2 := fill(make([]float32, wr*wc)), make([]float32, wr*wc), make([]float32, wr*wc)
	g := make([]float32, wr*wc/2)
	a, want, got := make([]float32, m*wr), make([]float32, m*wr), make([]float32, m*wr)
	dy, x := fill(make([]float32, bt*wr)), fill(make([]float32, bt*wc))
	// one part, on the calling thread: a part of a split product is the
	// same computation over a range, and the pool's first job decides its
	// threads' placement, which a check must not
	o := &Ops{workers: 1}
	for _, byRows := range []bool{true, false} {
		idx := pick(wc)
		if byRows {
			idx = pick(wr)
		}
		rows, cols, R, Cw := sampledShape(byRows, idx, wr, wc)
		g := g[:R*Cw]
		for _, tb := range []bool{true, false} {
			o.gatherSampled(g, w, rows, cols, wr, wc)
			n, k := Cw, R
			if tb {
				n, k = R, Cw
			}
			a, want, got := fill(a[:m*k]), fill(want[:m*n]), got[:m*n]
			copy(got, want)
			o.MatMul(Buf(want), Buf(a), Buf(g), m, n, k, false, tb, 0.75, 0.5)
			if !o.matMulSampled(got, a, w, m, n, k, false, tb, 0.75, 0.5, rows, cols, wc) {
				return "MatMulSampled declined a product it should take"
			}
			if !sameBits(want, got) {
				return fmt.Sprintf("MatMulSampled differs from the gathered product (tb %v, rows %v)", tb, byRows)
			}
		}
		// the weight gradient: dW[rows or cols] += dyᵀ·x
		dy := dy[:bt*R]
		x := x[:bt*Cw]
		copy(dw2, fill(dw))
		o.MatMul(Buf(g), Buf(dy), Buf(x), R, Cw, bt, true, false, 0.75, 0)
		o.scatterSampled(dw, g, rows, cols, wr, wc)
		if !o.matMulScatter(dw2, dy, x, R, Cw, bt, true, false, 0.75, rows, cols, wc) {
			return "MatMulScatter declined a product it should take"
		}
		if !sameBits(dw, dw2) {
			return fmt.Sprintf("MatMulScatter differs from the scattered product (rows %v)", byRows)
		}
	}
	return ""
}

// gatherSampled copies the rows (rows non-nil) or the columns of the
// wr×wc weight w that run into g, as the trainer gathers them where the
// in-place products decline: what they are checked against.
func (o *Ops) gatherSampled(g, w []float32, rows, cols []int32, wr, wc int) {
	if rows != nil {
		o.GatherRows(Buf(g), Buf(w), rows, wc)
		return
	}
	o.GatherCols(Buf(g), Buf(w), wr, wc, cols)
}

// scatterSampled adds g into the rows or the columns of the wr×wc
// gradient dw that ran, as gatherSampled's reverse.
func (o *Ops) scatterSampled(dw, g []float32, rows, cols []int32, wr, wc int) {
	if rows != nil {
		o.ScatterAddRows(Buf(dw), Buf(g), rows, wc)
		return
	}
	o.ScatterAddCols(Buf(dw), Buf(g), wr, wc, cols)
}

// sampledShape is the lists to pass for a wr×wc weight whose rows
// (byRows) or columns idx run, and the shape R×Cw of what runs.
func sampledShape(byRows bool, idx []int32, wr, wc int) (rows, cols []int32, R, Cw int) {
	if byRows {
		return idx, nil, len(idx), wc
	}
	return nil, idx, wr, len(idx)
}

// increasing says whether idx increases strictly (the sampler's lists do).
func increasing(idx []int32) bool {
	for i := 1; i < len(idx); i++ {
		if idx[i] <= idx[i-1] {
			return false
		}
	}
	return true
}

func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}
