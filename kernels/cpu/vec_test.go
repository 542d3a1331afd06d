package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// TestVectorGELUBitExact: where GELU and its gradient run vectorized
// (vec_avx2.go), every element equals the pure-Go loop's bit for bit,
// over ordinary activations, the range where tanh saturates and expNeg's
// cut-off lies, signed zeros, infinities and lengths that leave a tail.
func TestVectorGELUBitExact(t *testing.T) {
	if geluRange == nil {
		t.Skip("no vectorized GELU in this build or on this CPU")
	}
	keep, keepB := geluRange, geluBackwardRange
	defer func() { geluRange, geluBackwardRange = keep, keepB }()
	for _, k := range []struct {
		name string
		f    func(out, x []float32)
		b    func(dx, x, g []float32)
	}{{"AVX2", geluVariant(0), geluBackwardVariant(0)}, {"AVX-512", geluVariant(1), geluBackwardVariant(1)}} {
		if k.f == nil {
			t.Logf("no %s GELU on this CPU", k.name)
			continue
		}
		geluRange, geluBackwardRange = k.f, k.b
		t.Run(k.name, testVectorGELU)
	}
}

func testVectorGELU(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var xs []float32
	for range 100003 {
		xs = append(xs, float32(r.NormFloat64()*3))
	}
	for i := -4000; i <= 4000; i++ {
		xs = append(xs, float32(i)/100) // tanh's argument crosses −43.7, where e^(−2|u|) is cut off
	}
	xs = append(xs, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 30, -30, 1e4, -1e4, float32(math.Inf(1)), float32(math.Inf(-1)))
	g := make([]float32, len(xs))
	for i := range g {
		g[i] = float32(r.NormFloat64())
	}
	for _, n := range []int{len(xs), len(xs) - 1, 7, 1, 0} {
		x := xs[:n]
		want, got := make([]float32, n), make([]float32, n)
		for i, v := range x {
			u := geluScale * (v + 0.044715*v*v*v)
			want[i] = 0.5 * v * (1 + tanh32(u))
		}
		geluRange(got, x)
		same(t, "GELU", x, got, want)
		dwant, dgot := make([]float32, n), make([]float32, n)
		for i := range dwant {
			dwant[i], dgot[i] = float32(i%5)*0.25, float32(i%5)*0.25 // accumulated into
		}
		for i, v := range x {
			u := geluScale * (v + 0.044715*v*v*v)
			th := tanh32(u)
			du := geluScale * (1 + 3*0.044715*v*v)
			dwant[i] += g[i] * (0.5*(1+th) + 0.5*v*(1-th*th)*du)
		}
		geluBackwardRange(dgot, x, g[:n])
		same(t, "GELUBackward", x, dgot, dwant)
	}
}

func same(t *testing.T, what string, x, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s(%g) at %d of %d: %g (%08x), the Go loop %g (%08x)", what, x[i], i, len(x), got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestVectorExpBitExact: the softmax's vectorized exponentials equal
// expNeg's bit for bit, across its cut-off at −87.33 and with tails.
func TestVectorExpBitExact(t *testing.T) {
	if expShifted == nil {
		t.Skip("no vectorized exponential in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(5, 6))
	var xs []float32
	for range 50001 {
		xs = append(xs, float32(-r.ExpFloat64()*10))
	}
	for i := 0; i <= 20000; i++ {
		xs = append(xs, -float32(i)/200) // 0 to −100, across the cut-off
	}
	xs = append(xs, float32(math.Copysign(0, -1)), float32(math.Inf(-1)), -87.33, -87.329, -87.331)
	for _, m := range []float32{0, 1.5, -3} {
		for _, n := range []int{len(xs), 13, 8, 1, 0} {
			want, got := make([]float32, n), make([]float32, n)
			for i, v := range xs[:n] {
				want[i], got[i] = expNeg(v+m-m), v+m
			}
			expShifted(got, m)
			same(t, "expShifted", xs[:n], got, want)
		}
	}
}

// TestVectorAdamWBitExact: the vectorized AdamW update equals the Go loop
// bit for bit, with and without a gradient scale, over lengths with tails.
func TestVectorAdamWBitExact(t *testing.T) {
	if adamwRange == nil {
		t.Skip("no vectorized AdamW in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, scale := range []float32{1, 0.37} {
		for _, n := range []int{100003, 9, 8, 1, 0} {
			p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range p {
				p[i], g[i] = float32(r.NormFloat64()), float32(r.NormFloat64()*1e-3)
				m[i], v[i] = float32(r.NormFloat64()*1e-4), float32(r.ExpFloat64()*1e-6)
			}
			if n > 0 {
				g[0], v[0] = 0, 0 // an explicit zero gradient with no second moment yet
			}
			p2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
			for step := 1; step <= 3; step++ {
				u := newAdamw(kernelsArgs(step, scale))
				u.updateGo(p, g, m, v)
				adamwRange(u, p2, g, m2, v2)
			}
			same(t, "AdamW p", g, p2, p)
			same(t, "AdamW m", g, m2, m)
			same(t, "AdamW v", g, v2, v)
		}
	}
}

// TestVectorSumSquares: the vectorized sum of squares equals the Go loop's
// (same lanes, same order) bit for bit.
func TestVectorSumSquares(t *testing.T) {
	if sumSquaresRange == nil {
		t.Skip("no vectorized sum of squares in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(9, 10))
	x := make([]float32, 70001)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(9)-6)))
	}
	keep := sumSquaresRange
	defer func() { sumSquaresRange = keep }()
	for _, n := range []int{len(x), 15, 8, 3, 0} {
		got := keep(x[:n])
		sumSquaresRange = nil
		want := sumSquares(x[:n])
		sumSquaresRange = keep
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("n=%d: %v, the Go loop %v", n, got, want)
		}
	}
}

// TestSumSquaresParts: SumSquares, which sums four parts at once where it
// can, has the bits of summing each 64Ki-value part in turn and adding the
// parts' sums in order, on 1, 2 and 3 workers; and sumSquares4's four sums
// are each part's.
func TestSumSquaresParts(t *testing.T) {
	const part = 1 << 16
	r := rand.New(rand.NewPCG(13, 14))
	x := make([]float32, 19*part+100)
	for i := range x {
		// each part of its own scale, so that adding the parts' sums in
		// another order rounds otherwise (two parts' sums swapped fail)
		x[i] = float32(r.NormFloat64() * (1 + float64((i/part)%5)))
	}
	if sumSquares4 != nil {
		got := sumSquares4(x[:part], x[3*part:4*part], x[5*part:6*part], x[9*part:10*part])
		for k, p := range []int{0, 3, 5, 9} {
			if want := sumSquares(x[p*part : (p+1)*part]); math.Float64bits(got[k]) != math.Float64bits(want) {
				t.Fatalf("sumSquares4's sum %d: %v, part %d alone %v", k, got[k], p, want)
			}
		}
	}
	for _, n := range []int{len(x), 17*part + 5, 9 * part, 4 * part, 3*part + 1, part, 100, 0} {
		var want float64
		for p := 0; p < n; p += part {
			want += sumSquares(x[p:min(p+part, n)])
		}
		for _, workers := range []int{1, 2, 3} {
			o := &Ops{workers: workers}
			if got := o.SumSquares(Buf(x[:n])); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("n=%d, %d workers: %v, part by part %v", n, workers, got, want)
			}
		}
	}
}

// TestSumSquaresSpans: SumSquaresSpans has the bits of SumSquares of each
// span added in the spans' order, on 1, 2 and 3 workers, for spans short
// and long (several of SumSquares' parts), empty, overlapping and out of
// order, few and many (more than a worker's share).
func TestSumSquaresSpans(t *testing.T) {
	const part = 1 << 16
	r := rand.New(rand.NewPCG(15, 16))
	x := make([]float32, 5*part+77)
	for i := range x {
		x[i] = float32(r.NormFloat64() * (1 + float64(i%7)))
	}
	many := make([][2]int, 300)
	for i := range many {
		lo := r.IntN(len(x))
		many[i] = [2]int{lo, min(len(x), lo+r.IntN(3000))}
	}
	for _, spans := range [][][2]int{
		nil,
		{{0, len(x)}},
		{{5, 6}, {0, 0}, {100, 3*part + 9}, {7, 900}, {2 * part, 2*part + 768}},
		many,
	} {
		var want float64
		for _, s := range spans {
			want += (&Ops{workers: 1}).SumSquares(Buf(x[s[0]:s[1]]))
		}
		for _, workers := range []int{1, 2, 3} {
			o := &Ops{workers: workers}
			if got := o.SumSquaresSpans(Buf(x), spans); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("%d spans, %d workers: %v, span by span %v", len(spans), workers, got, want)
			}
		}
	}
}

// TestScatterAddRowsRepeats: rows that repeat (a batch's token ids, as the
// token embedding's gradient adds them where there is no position table)
// each receive every add, in the order of src, whatever the number of
// workers: the sequential loop's bits. The workers had split src's rows
// and added into a repeated row at once, losing adds.
func TestScatterAddRowsRepeats(t *testing.T) {
	const n, width, distinct = 4096, 256, 5
	r := rand.New(rand.NewPCG(15, 16))
	src := make([]float32, n*width)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	rows := make([]int32, n)
	for i := range rows {
		rows[i] = int32(r.IntN(distinct) * 3)
	}
	want := make([]float32, 3*distinct*width)
	for i, row := range rows {
		for j, v := range src[i*width : (i+1)*width] {
			want[int(row)*width+j] += v
		}
	}
	for _, workers := range []int{1, 2, 3} {
		o := &Ops{workers: workers}
		for round := range 20 {
			got := make([]float32, len(want))
			o.ScatterAddRows(Buf(got), Buf(src), rows, width)
			if i := firstDiff(want, got); i >= 0 {
				t.Fatalf("%d workers, round %d: row %d column %d is %v, added in order %v", workers, round, i/width, i%width, got[i], want[i])
			}
		}
	}
}

func kernelsArgs(step int, scale float32) kernels.AdamWArgs {
	return kernels.AdamWArgs{LR: 6e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: scale, Step: step}
}

// TestVectorBiasBitExact: the vectorized bias forward and gradient equal
// the Go loops bit for bit, at widths with and without a tail.
func TestVectorBiasBitExact(t *testing.T) {
	if addBiasRows == nil || colSums == nil {
		t.Skip("no vectorized bias in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(11, 12))
	for _, cols := range []int{768, 70, 8, 3} {
		rows := 37
		y, bias := make([]float32, rows*cols), make([]float32, cols)
		for i := range y {
			y[i] = float32(r.NormFloat64())
		}
		for i := range bias {
			bias[i] = float32(r.NormFloat64())
		}
		want := append([]float32(nil), y...)
		for i := range want {
			want[i] += bias[i%cols]
		}
		got := append([]float32(nil), y...)
		addBiasRows(got, bias, rows, cols)
		same(t, "AddBias", y, got, want)
		for c0 := 0; c0 < cols; c0 += 64 {
			n := min(64, cols-c0)
			wantAcc, gotAcc := make([]float32, n), make([]float32, n)
			for j := range wantAcc {
				wantAcc[j], gotAcc[j] = 0.5, 0.5
				for row := 0; row < rows; row++ {
					wantAcc[j] += y[row*cols+c0+j]
				}
			}
			colSums(gotAcc, y, rows, cols, c0)
			same(t, "BiasGrad", y[:n], gotAcc, wantAcc)
		}
	}
}

// TestVectorScatterBitExact: the vectorized scatters of rows and of
// column runs add exactly what the Go loops add, over rows split between
// workers and runs of one and of 64 columns.
func TestVectorScatterBitExact(t *testing.T) {
	if scatterAddRows == nil || scatterAddRuns == nil {
		t.Skip("no vectorized scatter in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(13, 14))
	n, width := 300, 1003
	rows := make([]int32, 0, 200)
	for _, i := range r.Perm(n)[:200] {
		rows = append(rows, int32(i))
	}
	cols := []int32{1002}
	for c := int32(64); c < 128; c++ {
		cols = append(cols, c)
	}
	cols = append(cols, 0, 5, 6, 700)
	base, partRows, partCols := normals(r, n*width), normals(r, len(rows)*width), normals(r, n*len(cols))
	o := New()
	run := func() (byRows, byCols []float32) {
		byRows, byCols = append([]float32(nil), base...), append([]float32(nil), base...)
		o.ScatterAddRows(Buf(byRows), Buf(partRows), rows, width)
		o.ScatterAddCols(Buf(byCols), Buf(partCols), n, width, cols)
		return byRows, byCols
	}
	gotRows, gotCols := run()
	keepRows, keepRuns := scatterAddRows, scatterAddRuns
	scatterAddRows, scatterAddRuns = nil, nil
	wantRows, wantCols := run()
	scatterAddRows, scatterAddRuns = keepRows, keepRuns
	same(t, "ScatterAddRows", base, gotRows, wantRows)
	same(t, "ScatterAddCols", base, gotCols, wantCols)
}

// TestVectorColsBitExact: gathers and scatter-adds of columns sampled one
// by one (no runs), sixteen at a time in AVX-512, equal the Go loops, for
// column counts with and without tails.
func TestVectorColsBitExact(t *testing.T) {
	if gatherColsOne == nil || scatterAddColsOne == nil {
		t.Skip("no vectorized column gathers in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(25, 26))
	n, width := 70, 1003
	for _, k := range []int{501, 37, 16, 5} {
		var cols []int32
		for _, c := range r.Perm(width)[:k] {
			cols = append(cols, int32(c))
		}
		if colRuns(cols) != nil {
			t.Fatalf("%d random columns make runs", k)
		}
		base, part := normals(r, n*width), normals(r, n*k)
		o := New()
		run := func() (gathered, added []float32) {
			gathered, added = make([]float32, n*k), append([]float32(nil), base...)
			o.GatherCols(Buf(gathered), Buf(base), n, width, cols)
			o.ScatterAddCols(Buf(added), Buf(part), n, width, cols)
			return
		}
		gotG, gotA := run()
		keepG, keepA := gatherColsOne, scatterAddColsOne
		gatherColsOne, scatterAddColsOne = nil, nil
		wantG, wantA := run()
		gatherColsOne, scatterAddColsOne = keepG, keepA
		same(t, fmt.Sprintf("GatherCols, %d columns", k), wantG, gotG, wantG)
		same(t, fmt.Sprintf("ScatterAddCols, %d columns", k), base, gotA, wantA)
	}
}

// TestVectorCrossEntropyBitExact: the cross-entropy's vectorized row
// maximum, sum of exponentials (with and without keeping them) and
// scaling equal the Go loops bit for bit, over a vocabulary-sized row,
// rows with NaN, infinities and signed zeros, and lengths with tails.
func TestVectorCrossEntropyBitExact(t *testing.T) {
	if ceMax == nil || ceSumExp == nil || ceScale == nil {
		t.Skip("no vectorized cross-entropy in this build or on this CPU")
	}
	defer setWide(setWide(false))
	for _, wide := range []bool{false, true} {
		if wide && !wideKernels() {
			t.Log("no AVX-512 on this CPU")
			continue
		}
		setWide(wide)
		t.Run(fmt.Sprintf("wide=%v", wide), testVectorCrossEntropy)
	}
}

func testVectorCrossEntropy(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	big := make([]float32, 50257)
	for i := range big {
		big[i] = float32(r.NormFloat64() * 4)
	}
	odd := []float32{float32(math.Copysign(0, -1)), 0, float32(math.Inf(-1)), -100, 3, float32(math.NaN()), 7, -2, 1e30, 5, 0.5}
	// exponentials near half an ulp of 1 in float64, beside one of 1: their
	// sum's rounding depends on which lane each is added into
	ulp := make([]float32, 45)
	for i := range ulp {
		ulp[i] = -37.2 - float32(i%3)*0.01
	}
	ulp[0], ulp[17] = 0, 0
	rows := [][]float32{big, big[:13], big[:8], big[:1], nil, odd, odd[:6], odd[6:], ulp, ulp[:29], ulp[:13]}
	for k, row := range rows {
		vec := func() (float32, float64, float64, []float32) {
			m := rowMax(row)
			d := make([]float32, len(row))
			s0, s1 := sumExp(nil, row, m), sumExp(d, row, m)
			scaleRow(d, 0.37/s1)
			return m, s0, s1, d
		}
		m1, a1, b1, d1 := vec()
		keep1, keep2, keep3 := ceMax, ceSumExp, ceScale
		ceMax, ceSumExp, ceScale = nil, nil, nil
		m2, a2, b2, d2 := vec()
		ceMax, ceSumExp, ceScale = keep1, keep2, keep3
		if math.Float32bits(m1) != math.Float32bits(m2) || !sameF64(a1, a2) || !sameF64(b1, b2) {
			t.Fatalf("row %d: max %g, sums %g %g; the Go loops %g, %g %g", k, m1, a1, b1, m2, a2, b2)
		}
		same(t, fmt.Sprintf("row %d exp/scale", k), row, d1, d2)
	}
}

// TestVectorSoftmaxGradBitExact: attention's softmax gradient in AVX2
// gives the Go loop's bits: its float64 lanes, the dot product's rounding
// and the elementwise update, over tails, NaN, ±Inf and signed zeros.
func TestVectorSoftmaxGradBitExact(t *testing.T) {
	if softmaxGradRange == nil {
		t.Skip("no vectorized softmax gradient in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(17, 18))
	p, d := normals(r, 1031), normals(r, 1031)
	for i := range p {
		p[i] = p[i] * p[i] / 1031
	}
	odd := []float32{float32(math.Copysign(0, -1)), 0, float32(math.Inf(1)), -100, 3, float32(math.NaN()), 7, -2, 1e30, 5, 0.5}
	cases := [][2][]float32{{p, d}, {p[:13], d[:13]}, {p[:8], d[:8]}, {p[:1], d[:1]}, {nil, nil}, {odd, p[:11]}, {p[:11], odd}, {odd[6:], d[:5]}}
	for k, c := range cases {
		run := func() []float32 {
			dr := append([]float32(nil), c[1]...)
			softmaxGrad(dr, c[0], 0.3)
			return dr
		}
		vec := run()
		keep := softmaxGradRange
		softmaxGradRange = nil
		scalar := run()
		softmaxGradRange = keep
		same(t, fmt.Sprintf("case %d", k), c[1], vec, scalar)
	}
}

func sameF64(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (a != a && b != b)
}

// TestBiasGradWorkersBitExact: the bias gradient sums each column in row
// order whatever the number of workers (strips of columns, not ranges of
// rows, are split), bit for bit as one column at a time would.
func TestBiasGradWorkersBitExact(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, cols := range []int{3072, 768, 70, 5} {
		rows := 301
		dy := normals(r, rows*cols)
		want := make([]float32, cols)
		for j := range want {
			want[j] = 0.25
			var a float32
			for row := 0; row < rows; row++ {
				a += dy[row*cols+j]
			}
			want[j] += a
		}
		for _, w := range []int{1, 2, 3, 7} {
			o := New()
			o.workers = w
			got := make([]float32, cols)
			for j := range got {
				got[j] = 0.25
			}
			o.BiasGrad(Buf(got), Buf(dy), rows, cols)
			same(t, fmt.Sprintf("BiasGrad, %d columns, %d workers", cols, w), got, got, want)
		}
	}
}

// TestVectorLayerNormBitExact: LayerNorm's vectorized forward and backward
// (vec_avx2.go) equal the Go loops (layerNormRow, layerNormBackwardRow)
// bit for bit: output, mean, rstd, input gradient and the weight and bias
// sums, at widths with and without a tail, over rows with an offset, a
// constant row, NaN, infinities, signed zeros and huge values, and
// gradients with NaN and infinities; and rows whose sums cancel (±1e30 in
// lanes 1 and 5 of x, ±1e20 of the gradient with unit weights), where
// float64 sums added in another lane order round to other float32s.
func TestVectorLayerNormBitExact(t *testing.T) {
	if lnForwardRows == nil || lnBackwardRows == nil {
		t.Skip("no vectorized LayerNorm in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(23, 24))
	nan, inf, negz := float32(math.NaN()), float32(math.Inf(1)), float32(math.Copysign(0, -1))
	for _, C := range []int{768, 70, 16, 13, 8, 3, 1} {
		const rows = 12
		x := normals(r, rows*C)
		for i := range x[:C] {
			x[i] = x[i]*1e-3 + 1000 // a large offset: the mean carries the digits
		}
		for i := range x[C : 2*C] {
			x[C+i] = 2.5 // constant: variance 0
		}
		odd := []float32{nan, inf, -inf, negz, 0, 1e30, -1e30, 3}
		for k := 2; k < 6; k++ { // one special value in each of four rows, at varying places
			x[k*C+(k*5)%C] = odd[k-2]
		}
		for i := range x[6*C : 7*C] {
			x[6*C+i] = odd[4+i%4] * float32(1+i%3) // zeros, ±1e30 and 3s
		}
		w, b, g := normals(r, C), normals(r, C), normals(r, rows*C)
		g[8*C+C/2], g[9*C], g[10*C+C-1] = nan, inf, -inf
		if C > 5 {
			x[7*C+1], x[7*C+5] = 1e30, -1e30
			x[11*C+5] = x[11*C+1]
			g[11*C+1], g[11*C+5] = 1e20, -1e20
		}
		for _, unit := range []bool{false, true} {
			if unit {
				for i := range w {
					w[i] = 1
				}
			}
			w[0] = negz
			layerNormCase(t, fmt.Sprintf("LayerNorm C=%d unit w=%v", C, unit), x, w, b, g, rows, C)
		}
	}
}

func layerNormCase(t *testing.T, name string, x, w, b, g []float32, rows, C int) {
	t.Helper()
	mean, rstd := make([]float32, rows), make([]float32, rows)
	meanGo, rstdGo := make([]float32, rows), make([]float32, rows)
	out, outGo := make([]float32, rows*C), make([]float32, rows*C)
	lnForwardRows(out, mean, rstd, x, w, b, C)
	for k := range rows {
		meanGo[k], rstdGo[k] = layerNormRow(outGo[k*C:(k+1)*C], x[k*C:(k+1)*C], w, b)
	}
	same(t, name+" mean", meanGo, mean, meanGo)
	same(t, name+" rstd", rstdGo, rstd, rstdGo)
	same(t, name+" out", x, out, outGo)

	dx, acc := make([]float32, rows*C), make([]float32, 2*C)
	for i := range dx {
		dx[i] = float32(i%5) * 0.25 // accumulated into
	}
	for i := range acc {
		acc[i] = float32(i%3) - 1
	}
	dxGo, accGo := append([]float32(nil), dx...), append([]float32(nil), acc...)
	lnBackwardRows(dx, acc, g, x, w, mean, rstd, C)
	for k := range rows {
		layerNormBackwardRow(dxGo[k*C:(k+1)*C], accGo, g[k*C:(k+1)*C], x[k*C:(k+1)*C], w, meanGo[k], rstdGo[k])
	}
	same(t, name+" dx", x, dx, dxGo)
	same(t, name+" dw, db", accGo, acc, accGo)
}

// TestVectorRMSNormBitExact: RMSNorm's vectorized forward and backward
// (vec_avx2.go) equal the Go loops (rmsNormRow, rmsNormBackwardRow) bit
// for bit, over the inputs of TestVectorLayerNormBitExact's kind: tails,
// a zero row, NaN, infinities, signed zeros, huge values and a gradient
// whose sum cancels across lanes 1 and 5.
func TestVectorRMSNormBitExact(t *testing.T) {
	if rmsForwardRows == nil || rmsBackwardRows == nil {
		t.Skip("no vectorized RMSNorm in this build or on this CPU")
	}
	r := rand.New(rand.NewPCG(25, 26))
	nan, inf, negz := float32(math.NaN()), float32(math.Inf(1)), float32(math.Copysign(0, -1))
	for _, C := range []int{768, 70, 16, 13, 8, 3, 1} {
		const rows = 12
		x := normals(r, rows*C)
		clear(x[C : 2*C]) // rstd 1/sqrt(eps)
		odd := []float32{nan, inf, -inf, negz, 0, 1e30, -1e30, 3}
		for k := 2; k < 6; k++ {
			x[k*C+(k*5)%C] = odd[k-2]
		}
		for i := range x[6*C : 7*C] {
			x[6*C+i] = odd[4+i%4] * float32(1+i%3)
		}
		w, g := normals(r, C), normals(r, rows*C)
		g[8*C+C/2], g[9*C], g[10*C+C-1] = nan, inf, -inf
		if C > 5 {
			x[11*C+5] = -x[11*C+1]
			g[11*C+1], g[11*C+5] = 1e20, 1e20
		}
		for _, unit := range []bool{false, true} {
			if unit {
				for i := range w {
					w[i] = 1
				}
			}
			w[0] = negz
			name := fmt.Sprintf("RMSNorm C=%d unit w=%v", C, unit)
			rstd, rstdGo := make([]float32, rows), make([]float32, rows)
			out, outGo := make([]float32, rows*C), make([]float32, rows*C)
			rmsForwardRows(out, rstd, x, w, C, 1e-5)
			for k := range rows {
				rstdGo[k] = rmsNormRow(outGo[k*C:(k+1)*C], x[k*C:(k+1)*C], w, 1e-5)
			}
			same(t, name+" rstd", rstdGo, rstd, rstdGo)
			same(t, name+" out", x, out, outGo)
			dx, acc := make([]float32, rows*C), make([]float32, C)
			for i := range dx {
				dx[i] = float32(i%5) * 0.25 // accumulated into
			}
			for i := range acc {
				acc[i] = float32(i%3) - 1
			}
			dxGo, accGo := append([]float32(nil), dx...), append([]float32(nil), acc...)
			rmsBackwardRows(dx, acc, g, x, w, rstd, C)
			for k := range rows {
				rmsNormBackwardRow(dxGo[k*C:(k+1)*C], accGo, g[k*C:(k+1)*C], x[k*C:(k+1)*C], w, rstdGo[k])
			}
			same(t, name+" dx", x, dx, dxGo)
			same(t, name+" dw", accGo, acc, accGo)
		}
	}
}

// TestNormBackwardWorkersBitExact: LayerNorm's and RMSNorm's weight and
// bias gradients have the same bits whatever the number of workers, so a
// run resumed on a machine with another number of cores continues as the
// uninterrupted one would.
func TestNormBackwardWorkersBitExact(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	const rows, C = 301, 70
	x, g, w, b := normals(r, rows*C), normals(r, rows*C), normals(r, C), normals(r, C)
	var want [3][]float32
	for k, workers := range []int{1, 2, 3, 7} {
		o := New()
		o.workers = workers
		out, mean, rstd := make([]float32, rows*C), make([]float32, rows), make([]float32, rows)
		o.LayerNorm(Buf(out), Buf(mean), Buf(rstd), Buf(x), Buf(w), Buf(b), rows, C)
		dx, dw, db := make([]float32, rows*C), make([]float32, C), make([]float32, C)
		o.LayerNormBackward(Buf(dx), Buf(dw), Buf(db), Buf(g), Buf(x), Buf(w), Buf(mean), Buf(rstd), rows, C)
		rdx, rdw := make([]float32, rows*C), make([]float32, C)
		o.RMSNorm(Buf(out), Buf(rstd), Buf(x), Buf(w), rows, C, 1e-5)
		o.RMSNormBackward(Buf(rdx), Buf(rdw), Buf(g), Buf(x), Buf(w), Buf(rstd), rows, C)
		if k == 0 {
			want = [3][]float32{dw, db, rdw}
			continue
		}
		same(t, fmt.Sprintf("LayerNorm dw, %d workers", workers), dw, dw, want[0])
		same(t, fmt.Sprintf("LayerNorm db, %d workers", workers), db, db, want[1])
		same(t, fmt.Sprintf("RMSNorm dw, %d workers", workers), rdw, rdw, want[2])
	}
}
