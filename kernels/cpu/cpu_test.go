package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
)

func randBuf(r *rand.Rand, n int, scale float64) Buf {
	b := make(Buf, n)
	for i := range b {
		b[i] = float32(r.NormFloat64() * scale)
	}
	return b
}

// checkGrad compares an analytic gradient with central finite differences
// of loss() = Σ out·w over every input value.
func checkGrad(t *testing.T, name string, in Buf, analytic []float32, loss func() float64) {
	t.Helper()
	const h = 1e-2
	bad := 0
	for i := range in {
		orig := in[i]
		in[i] = orig + h
		lp := loss()
		in[i] = orig - h
		lm := loss()
		in[i] = orig
		num := (lp - lm) / (2 * h)
		if d := math.Abs(num - float64(analytic[i])); d > 2e-2*math.Max(1, math.Abs(num)) {
			if bad++; bad <= 3 {
				t.Errorf("%s[%d]: analytic %g, numeric %g", name, i, analytic[i], num)
			}
		}
	}
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestLayerNormGradient(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(1, 2))
	rows, C := 3, 7
	x, w, b := randBuf(r, rows*C, 1), randBuf(r, C, 1), randBuf(r, C, 1)
	wout := randBuf(r, rows*C, 1)
	out, mean, rstd := make(Buf, rows*C), make(Buf, rows), make(Buf, rows)
	loss := func() float64 { o.LayerNorm(out, mean, rstd, x, w, b, rows, C); return dot(out, wout) }
	loss()
	dx, dw, db := make(Buf, rows*C), make(Buf, C), make(Buf, C)
	o.LayerNormBackward(dx, dw, db, wout, x, w, mean, rstd, rows, C)
	checkGrad(t, "dx", x, dx, loss)
	checkGrad(t, "dw", w, dw, loss)
	checkGrad(t, "db", b, db, loss)
}

func TestGELUGradient(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(3, 4))
	x, wout := randBuf(r, 50, 2), randBuf(r, 50, 1)
	out := make(Buf, 50)
	loss := func() float64 { o.GELU(out, x); return dot(out, wout) }
	dx := make(Buf, 50)
	o.GELUBackward(dx, x, wout)
	checkGrad(t, "dx", x, dx, loss)
}

func TestAttentionGradient(t *testing.T) {
	for _, NKV := range []int{4, 2, 1} {
		o, r := New(), rand.New(rand.NewPCG(5, 6))
		B, T, NH, HS := 2, 5, 4, 3
		C, W := NH*HS, (NH+2*NKV)*HS
		qkv, wout := randBuf(r, B*T*W, 1), randBuf(r, B*T*C, 1)
		out, att := make(Buf, B*T*C), make(Buf, B*NH*T*T)
		loss := func() float64 { o.Attention(out, att, qkv, B, T, NH, NKV, HS); return dot(out, wout) }
		loss()
		dqkv := make(Buf, len(qkv))
		o.AttentionBackward(dqkv, wout, out, qkv, att, B, T, NH, NKV, HS)
		checkGrad(t, fmt.Sprintf("dqkv (%d kv heads)", NKV), qkv, dqkv, loss)
		// causal: position t's output does not depend on later positions
		before := append(Buf(nil), out...)
		qkv[(1*T+4)*W+(NH+NKV)*HS] += 5 // a value of the last position of batch 1
		loss()
		for i := 0; i < (1*T+4)*C; i++ {
			if out[i] != before[i] {
				t.Fatalf("%d kv heads: output %d changed with a later value", NKV, i)
			}
		}
	}
}

// TestGroupedQueryAttention: attention with NKV key/value heads equals
// multi-head attention whose key/value heads repeat each of them
// NH/NKV times (query head h reads key/value head h/(NH/NKV)).
func TestGroupedQueryAttention(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(7, 8))
	B, T, NH, NKV, HS := 2, 6, 6, 2, 4
	W, Wm, G := (NH+2*NKV)*HS, 3*NH*HS, NH/NKV
	gqa := randBuf(r, B*T*W, 1)
	mha := make(Buf, B*T*Wm)
	for p := 0; p < B*T; p++ {
		copy(mha[p*Wm:p*Wm+NH*HS], gqa[p*W:p*W+NH*HS])
		for h := 0; h < NH; h++ {
			for part := 1; part <= 2; part++ {
				src := gqa[p*W+(NH+(part-1)*NKV+h/G)*HS:][:HS]
				copy(mha[p*Wm+(part*NH+h)*HS:][:HS], src)
			}
		}
	}
	a, b := make(Buf, B*T*NH*HS), make(Buf, B*T*NH*HS)
	o.Attention(a, make(Buf, B*NH*T*T), gqa, B, T, NH, NKV, HS)
	o.Attention(b, make(Buf, B*NH*T*T), mha, B, T, NH, NH, HS)
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			t.Fatalf("output %d: grouped %g, repeated heads %g", i, a[i], b[i])
		}
	}
}

func TestCrossEntropyGradient(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(7, 8))
	rows, V, Vp := 4, 9, 12
	logits := randBuf(r, rows*Vp, 2)
	targets := []int32{0, 8, 3, 3}
	losses := make(Buf, rows)
	loss := func() float64 {
		o.CrossEntropy(losses, nil, logits, targets, rows, V, Vp, 0)
		var s float64
		for _, v := range losses {
			s += float64(v)
		}
		return s
	}
	d := make(Buf, rows*Vp)
	o.CrossEntropy(losses, d, logits, targets, rows, V, Vp, 1)
	checkGrad(t, "dlogits", logits, d, loss)
	for rI := 0; rI < rows; rI++ {
		for v := V; v < Vp; v++ {
			if d[rI*Vp+v] != 0 {
				t.Fatal("gradient in the padding")
			}
		}
	}
}

func TestEmbedAndGathers(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(11, 12))
	B, T, C, V := 2, 3, 4, 5
	wte, wpe := randBuf(r, V*C, 1), randBuf(r, T*C, 1)
	ids := []int32{4, 0, 4, 1, 2, 3}
	out, wout := make(Buf, B*T*C), randBuf(r, B*T*C, 1)
	loss := func() float64 { o.Embed(out, wte, wpe, ids, B, T, C); return dot(out, wout) }
	dte, dpe := make(Buf, V*C), make(Buf, T*C)
	o.EmbedBackward(dte, dpe, wout, ids, B, T, C)
	checkGrad(t, "dwte", wte, dte, loss)
	checkGrad(t, "dwpe", wpe, dpe, loss)

	src := randBuf(r, 6*4, 1)
	rows, cols := []int32{5, 1, 3}, []int32{3, 0}
	g := make(Buf, 3*4)
	o.GatherRows(g, src, rows, 4)
	back := make(Buf, 6*4)
	o.ScatterAddRows(back, g, rows, 4)
	gc := make(Buf, 6*2)
	o.GatherCols(gc, src, 6, 4, cols)
	o.ScatterAddCols(back, gc, 6, 4, cols)
	for rI := 0; rI < 6; rI++ {
		for c := 0; c < 4; c++ {
			want := float32(0)
			for _, x := range rows {
				if int(x) == rI {
					want += src[rI*4+c]
				}
			}
			for _, x := range cols {
				if int(x) == c {
					want += src[rI*4+c]
				}
			}
			if back[rI*4+c] != want {
				t.Fatalf("gather/scatter [%d,%d] = %g, want %g", rI, c, back[rI*4+c], want)
			}
		}
	}
}

// TestAdamW: two steps against AdamW written out in float64, with a
// gradient scale (clipping) and weight decay.
func TestAdamW(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(3, 4))
	n := 50000
	p, g := randBuf(r, n, 1), randBuf(r, n, 0.1)
	m, v := make(Buf, n), make(Buf, n)
	wp, wm, wv := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range p {
		wp[i] = float64(p[i])
	}
	a := kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5}
	for step := 1; step <= 2; step++ {
		a.Step = step
		o.AdamW(p, g, m, v, a)
		for i := range wp {
			gi := float64(g[i]) * 0.5
			wm[i] = 0.9*wm[i] + 0.1*gi
			wv[i] = 0.95*wv[i] + 0.05*gi*gi
			mh := wm[i] / (1 - math.Pow(0.9, float64(step)))
			vh := wv[i] / (1 - math.Pow(0.95, float64(step)))
			wp[i] = wp[i]*(1-1e-2*0.1) - 1e-2*mh/(math.Sqrt(vh)+1e-8)
		}
	}
	for i := range p {
		if d := math.Abs(float64(p[i]) - wp[i]); d > 1e-6*math.Max(1, math.Abs(wp[i])) {
			t.Fatalf("param %d: %g, want %g", i, p[i], wp[i])
		}
	}
}

// TestAdamWSub: the listed rows and columns change exactly as AdamW on the
// whole tensor changes them; everything else keeps its values and moments.
func TestAdamWSub(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(5, 6))
	rows, width := 40, 24
	n := rows * width
	p, g := randBuf(r, n, 1), randBuf(r, n, 0.1)
	m, v := randBuf(r, n, 0.01), randBuf(r, n, 0.01)
	for i := range v {
		v[i] *= v[i]
	}
	a := kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 3}
	for _, c := range []struct {
		rows, cols []int32
	}{{nil, nil}, {[]int32{0, 5, 6, 7, 39}, nil}, {nil, []int32{1, 2, 3, 9, 23}}, {[]int32{2, 30}, []int32{0, 4, 5}}} {
		full := [4]Buf{append(Buf(nil), p...), append(Buf(nil), g...), append(Buf(nil), m...), append(Buf(nil), v...)}
		sub := [4]Buf{append(Buf(nil), p...), append(Buf(nil), g...), append(Buf(nil), m...), append(Buf(nil), v...)}
		o.AdamW(full[0], full[1], full[2], full[3], a)
		o.AdamWSub(sub[0], sub[1], sub[2], sub[3], width, c.rows, c.cols, a)
		in := func(list []int32, x int) bool { return list == nil || slices.Contains(list, int32(x)) }
		for i := range p {
			want := [4]Buf{p, g, m, v}
			if in(c.rows, i/width) && in(c.cols, i%width) {
				want = full
			}
			for k := range 4 {
				if sub[k][i] != want[k][i] {
					t.Fatalf("rows %v cols %v: tensor %d value %d (row %d col %d): %g, want %g", c.rows, c.cols, k, i, i/width, i%width, sub[k][i], want[k][i])
				}
			}
		}
	}
}

// TestAdamWZeroGrads: with AdamWArgs.ZeroGrads, AdamW and AdamWSub
// leave parameters and moments bit for bit as without it, and 0 in each
// gradient value they read (the listed rows' listed columns), the others
// untouched; whole tensors of a length the vector loop leaves a tail of.
func TestAdamWZeroGrads(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(7, 8))
	if !o.ZeroesGrads() {
		t.Fatal("the CPU backend does not zero gradients in AdamW")
	}
	width := 24
	for _, c := range []struct {
		n          int
		rows, cols []int32
		whole      bool
	}{{1003, nil, nil, true}, {960, nil, nil, false}, {960, []int32{0, 5, 6, 7, 39}, nil, false},
		{960, nil, []int32{1, 2, 3, 9, 16, 17, 18, 19, 20, 21, 22, 23}, false}, {960, []int32{2, 30}, []int32{0, 4, 5}, false}} {
		p, g := randBuf(r, c.n, 1), randBuf(r, c.n, 0.1)
		m, v := randBuf(r, c.n, 0.01), randBuf(r, c.n, 0.01)
		for i := range v {
			v[i] *= v[i]
		}
		a := kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5, Step: 3}
		plain := [4]Buf{append(Buf(nil), p...), append(Buf(nil), g...), append(Buf(nil), m...), append(Buf(nil), v...)}
		zeroed := [4]Buf{append(Buf(nil), p...), append(Buf(nil), g...), append(Buf(nil), m...), append(Buf(nil), v...)}
		az := a
		az.ZeroGrads = true
		if c.whole {
			o.AdamW(plain[0], plain[1], plain[2], plain[3], a)
			o.AdamW(zeroed[0], zeroed[1], zeroed[2], zeroed[3], az)
		} else {
			o.AdamWSub(plain[0], plain[1], plain[2], plain[3], width, c.rows, c.cols, a)
			o.AdamWSub(zeroed[0], zeroed[1], zeroed[2], zeroed[3], width, c.rows, c.cols, az)
		}
		in := func(list []int32, x int) bool { return list == nil || slices.Contains(list, int32(x)) }
		for i := range p {
			read := c.whole || in(c.rows, i/width) && in(c.cols, i%width)
			for k := range 4 {
				want := plain[k][i]
				if k == 1 && read {
					want = 0
				}
				if math.Float32bits(zeroed[k][i]) != math.Float32bits(want) {
					t.Fatalf("n %d rows %v cols %v: tensor %d value %d: %g, want %g", c.n, c.rows, c.cols, k, i, zeroed[k][i], want)
				}
			}
		}
	}
}

// TestExpNeg: expNeg against math.Exp over the softmax's range, by ulp.
func TestExpNeg(t *testing.T) {
	worst := 0.0
	for i := 0; i <= 2000000; i++ {
		x := -90 * float32(i) / 2000000
		got, want := float64(expNeg(x)), math.Exp(float64(x))
		if want < 1.2e-38 { // float32's smallest normal
			if got > 1.2e-38 {
				t.Fatalf("expNeg(%g) = %g, want about %g", x, got, want)
			}
			continue
		}
		ulp := float64(math.Nextafter32(float32(want), float32(math.Inf(1))) - float32(want))
		worst = max(worst, math.Abs(got-want)/ulp)
	}
	if worst > 2 {
		t.Fatalf("expNeg is %.2f ulp off at worst, want at most 2", worst)
	}
	t.Logf("worst error %.2f ulp", worst)
}

func BenchmarkCrossEntropy(b *testing.B) {
	o, r := New(), rand.New(rand.NewPCG(1, 2))
	rows, V, Vp := 256, 50257, 50304
	logits := randBuf(r, rows*Vp, 2)
	work := make(Buf, len(logits))
	targets := make([]int32, rows)
	for i := range targets {
		targets[i] = int32(r.IntN(V))
	}
	losses := make(Buf, rows)
	for b.Loop() {
		copy(work, logits)
		o.CrossEntropy(losses, work, work, targets, rows, V, Vp, 1)
	}
}

// BenchmarkAdamW: one update of GPT-2 124M's parameters, moments and
// gradients (4 × 496 MB, far beyond the caches), as a step's optimizer
// runs over them: memory-bound.
func BenchmarkAdamW(b *testing.B) {
	o, n := New(), 124<<20
	p, g, m, v := make(Buf, n), make(Buf, n), make(Buf, n), make(Buf, n)
	o.Fill(p, 0.01)
	o.Fill(g, 1e-3)
	o.Fill(v, 1e-6)
	a := kernels.AdamWArgs{LR: 1e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5, Step: 3}
	o.AdamW(p, g, m, v, a) // first touch of every page: not timed
	for b.Loop() {
		o.AdamW(p, g, m, v, a)
	}
}

// TestTanh32: tanh32 against math.Tanh, absolutely.
func TestTanh32(t *testing.T) {
	for i := -400000; i <= 400000; i++ {
		u := float32(i) / 20000
		if d := math.Abs(float64(tanh32(u)) - math.Tanh(float64(u))); d > 2e-7 {
			t.Fatalf("tanh32(%g) = %g, want %g", u, tanh32(u), math.Tanh(float64(u)))
		}
	}
}

func TestRMSNormGradient(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(9, 10))
	rows, C := 3, 7
	x, w, wout := randBuf(r, rows*C, 1), randBuf(r, C, 1), randBuf(r, rows*C, 1)
	out, rstd := make(Buf, rows*C), make(Buf, rows)
	loss := func() float64 { o.RMSNorm(out, rstd, x, w, rows, C, 1e-5); return dot(out, wout) }
	loss()
	// against the definition
	for r := 0; r < rows; r++ {
		var ss float64
		for _, v := range x[r*C : (r+1)*C] {
			ss += float64(v) * float64(v)
		}
		for i := 0; i < C; i++ {
			want := float64(w[i]) * float64(x[r*C+i]) / math.Sqrt(ss/float64(C)+1e-5)
			if math.Abs(float64(out[r*C+i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
				t.Fatalf("out[%d,%d] %g, want %g", r, i, out[r*C+i], want)
			}
		}
	}
	dx, dw := make(Buf, rows*C), make(Buf, C)
	o.RMSNormBackward(dx, dw, wout, x, w, rstd, rows, C)
	checkGrad(t, "dx", x, dx, loss)
	checkGrad(t, "dw", w, dw, loss)
}

func TestRoPE(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(11, 12))
	B, T, heads, HS, width, off := 2, 5, 3, 8, 40, 4
	x := randBuf(r, B*T*width, 1)
	orig := append(Buf(nil), x...)
	o.RoPE(x, B, T, heads, HS, width, off, 10000, false)
	for p := 0; p < B*T; p++ {
		tpos := p % T
		for i := 0; i < width; i++ {
			if i < off || i >= off+heads*HS {
				if x[p*width+i] != orig[p*width+i] {
					t.Fatalf("value %d outside the heads moved", i)
				}
				continue
			}
			j := (i - off) % HS
			base := p*width + i - j
			k := j % (HS / 2)
			a := float64(tpos) * math.Pow(10000, -float64(2*k)/float64(HS))
			var want float64
			if j < HS/2 {
				want = float64(orig[base+j])*math.Cos(a) - float64(orig[base+j+HS/2])*math.Sin(a)
			} else {
				want = float64(orig[base+j])*math.Cos(a) + float64(orig[base+j-HS/2])*math.Sin(a)
			}
			if math.Abs(float64(x[p*width+i])-want) > 1e-5 {
				t.Fatalf("position %d value %d: %g, want %g", tpos, i, x[p*width+i], want)
			}
		}
	}
	// the inverse is the backward pass: the rotation's transpose
	wout := randBuf(r, len(x), 1)
	y := make(Buf, len(x))
	loss := func() float64 {
		copy(y, orig)
		o.RoPE(y, B, T, heads, HS, width, off, 10000, false)
		return dot(y, wout)
	}
	g := append(Buf(nil), wout...)
	o.RoPE(g, B, T, heads, HS, width, off, 10000, true)
	checkGrad(t, "dx", orig, g, loss)
}

func TestSwiGLUGradient(t *testing.T) {
	o, r := New(), rand.New(rand.NewPCG(13, 14))
	rows, F := 3, 5
	h, wout := randBuf(r, rows*2*F, 2), randBuf(r, rows*F, 1)
	out := make(Buf, rows*F)
	loss := func() float64 { o.SwiGLU(out, h, rows, F); return dot(out, wout) }
	loss()
	for i := range out {
		g, u := float64(h[i/F*2*F+i%F]), float64(h[i/F*2*F+F+i%F])
		if want := g / (1 + math.Exp(-g)) * u; math.Abs(float64(out[i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("out[%d] %g, want %g", i, out[i], want)
		}
	}
	dh := make(Buf, len(h))
	o.SwiGLUBackward(dh, h, wout, rows, F)
	checkGrad(t, "dh", h, dh, loss)
}

// TestAdamWGradRows: AdamWGradRows leaves parameters and moments bit for
// bit as AdamW over the tensor with zeros in the unmarked rows'
// gradients, and neither reads nor writes those rows' gradients (NaN
// there changes nothing and stays); with AdamWArgs.ZeroGrads the marked
// rows' gradients are 0 after it. Rows of a width the vector loop leaves
// a tail of, marks in runs, none and all, on 1, 2 and 3 workers, in the
// C loop and the Go one.
func TestAdamWGradRows(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	a := kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 3, GradScale: 0.7}
	rowsC, rangeC := adamwRows, adamwRange
	defer func() { adamwRows, adamwRange = rowsC, rangeC }()
	for _, loop := range []string{"C", "Go"} {
		if loop == "Go" {
			adamwRows, adamwRange = nil, nil
		} else if adamwRows == nil {
			continue // no C loop in this build
		}
		for _, width := range []int{768, 13} {
			for _, marks := range []string{"random", "none", "all"} {
				has := make([]bool, 70)
				for i := range has {
					has[i] = marks == "all" || marks == "random" && r.IntN(3) > 0
				}
				n := width * len(has)
				p, g, m, v := randBuf(r, n, 1), randBuf(r, n, 0.1), randBuf(r, n, 0.01), randBuf(r, n, 0.001)
				for i := range v {
					v[i] = float32(math.Abs(float64(v[i])))
				}
				for _, zero := range []bool{false, true} {
					for workers := 1; workers <= 3; workers++ {
						o := &Ops{workers: workers}
						a.ZeroGrads = zero
						wp, wg, wm, wv := slices.Clone(p), slices.Clone(g), slices.Clone(m), slices.Clone(v)
						gp, gg, gm, gv := slices.Clone(p), slices.Clone(g), slices.Clone(m), slices.Clone(v)
						for row, h := range has {
							if !h {
								clear(wg[row*width : (row+1)*width])
								for k := row * width; k < (row+1)*width; k++ {
									gg[k] = float32(math.NaN())
								}
							}
						}
						o.AdamW(Buf(wp), Buf(wg), Buf(wm), Buf(wv), a)
						o.AdamWGradRows(Buf(gp), Buf(gg), Buf(gm), Buf(gv), width, has, a)
						for i := range gp {
							row := i / width
							if math.Float32bits(gp[i]) != math.Float32bits(wp[i]) || math.Float32bits(gm[i]) != math.Float32bits(wm[i]) || math.Float32bits(gv[i]) != math.Float32bits(wv[i]) {
								t.Fatalf("%s loop, width %d, %s marks, zero %v, %d workers: value %d (row marked %v): p m v %v %v %v, AdamW %v %v %v",
									loop, width, marks, zero, workers, i, has[row], gp[i], gm[i], gv[i], wp[i], wm[i], wv[i])
							}
							switch {
							case !has[row] && !math.IsNaN(float64(gg[i])):
								t.Fatalf("%s loop: unmarked row %d's gradient written: %v", loop, row, gg[i])
							case has[row] && zero && gg[i] != 0:
								t.Fatalf("%s loop: marked row %d's gradient %v, not zeroed", loop, row, gg[i])
							case has[row] && !zero && gg[i] != g[i]:
								t.Fatalf("%s loop: marked row %d's gradient changed", loop, row)
							}
						}
					}
				}
			}
		}
	}
}
