// Package kernelstest is the conformance suite of kernels.Ops: every op of
// a backend against a float64 reference written here, on seeded random
// inputs of odd sizes (rows and widths that are not multiples of a warp or
// a tile, head counts that are not powers of two, grouped-query heads),
// with outputs poisoned with NaN beforehand so that an element an op
// forgets to write fails, and gradients holding values beforehand so that
// an op that overwrites instead of adding fails. The CPU backend and the
// CUDA backend (on a GPU, or emulated) both pass it; the CUDA backend
// also with its activations stored in bfloat16 (Options.BF16Storage).
package kernelstest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/estkit/estkit/kernels"
)

// Options tune a run of the suite.
type Options struct {
	// Tol bounds each element's error: |got − want| ≤ Tol·(|want| + rms),
	// rms being the root mean square of the whole expected tensor.
	Tol float64
	// Only names the ops (subtests) to run; all when empty.
	Only []string
	// BF16Storage runs the suite with the activations of every op (as
	// kernels.BF16Storage defines them) in bfloat16, the backend being a
	// kernels.BF16Storage; their random values are drawn in bfloat16, so
	// that the reference sees what the backend holds, and the conversions
	// (Upload, Copy, Download) must round exactly as ToBF16 does.
	BF16Storage bool
}

// FP32 is the tolerance of float32 backends.
const FP32 = 1e-5

// BF16 is the tolerance of bfloat16 variants (inputs rounded to 8 bits of
// mantissa, float32 accumulation).
const BF16 = 1e-2

// BF16Stored is the tolerance of fp32 ops on bfloat16 activations: their
// inputs are exact, their fp32 results rounded once when stored (2⁻⁹
// relative), and a gradient that reads a stored, rounded forward output
// (attention's dout·out) carries that rounding further.
const BF16Stored = 1e-2

// BF16Attention is the tolerance of bfloat16 attention, forward and
// backward: its output sums probabilities and values
// that were both rounded to bfloat16, and where the sum cancels (an output
// near zero from terms of ±0.3) the rounding of the terms shows against a
// small result: up to 2.4e-2 on the suite's shapes, where the products
// of a matrix multiplication stay within 1e-2.
const BF16Attention = 3e-2

type suite struct {
	t   *testing.T
	o   kernels.Ops
	r   *rand.Rand
	tol float64
	bs  kernels.BF16Storage // set when the activations are bfloat16
}

// Run runs the suite against o.
func Run(t *testing.T, o kernels.Ops, opt Options) {
	if opt.Tol == 0 {
		opt.Tol = FP32
	}
	var bs kernels.BF16Storage
	if opt.BF16Storage {
		var ok bool
		if bs, ok = o.(kernels.BF16Storage); !ok {
			t.Fatalf("%s does not store bfloat16", o.Name())
		}
	}
	tests := []struct {
		name string
		fn   func(*suite)
	}{
		{"Memory", testMemory},
		{"MatMul", testMatMul},
		{"Bias", testBias},
		{"Embed", testEmbed},
		{"LayerNorm", testLayerNorm},
		{"RMSNorm", testRMSNorm},
		{"GELU", testGELU},
		{"SwiGLU", testSwiGLU},
		{"RoPE", testRoPE},
		{"Attention", testAttention},
		{"CrossEntropy", testCrossEntropy},
		{"GatherScatter", testGatherScatter},
		{"AdamW", testAdamW},
	}
	for i, tc := range tests {
		if len(opt.Only) > 0 && !slices.Contains(opt.Only, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			s := &suite{t: t, o: o, r: rand.New(rand.NewPCG(uint64(i)+1, 77)), tol: opt.Tol, bs: bs}
			tc.fn(s)
			if err := o.Err(); err != nil {
				t.Fatalf("backend error: %v", err)
			}
		})
	}
}

// ---- helpers ----

func (s *suite) rand(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(s.r.NormFloat64() * scale)
	}
	return v
}

func (s *suite) up(v []float32) kernels.Buf {
	b := s.o.Alloc(len(v))
	s.o.Upload(b, v)
	return b
}

// randAct is rand for an activation: in bfloat16 when the suite stores
// activations so.
func (s *suite) randAct(n int, scale float64) []float32 { return s.asAct(s.rand(n, scale)) }

// asAct rounds v in place to bfloat16 when the suite stores activations
// so, and returns it.
func (s *suite) asAct(v []float32) []float32 {
	if s.bs != nil {
		for i := range v {
			v[i] = kernels.RoundBF16(v[i])
		}
	}
	return v
}

// act uploads an activation: into bfloat16 storage when the suite stores
// activations so (v then comes from randAct, or holds bfloat16 values).
func (s *suite) act(v []float32) kernels.Buf { return s.typed(s.bs != nil, v) }

func nans(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.NaN())
	}
	return v
}

// poisoned is a buffer of n NaNs.
func (s *suite) poisoned(n int) kernels.Buf { return s.up(nans(n)) }

// poisonedAct is an activation of n NaNs.
func (s *suite) poisonedAct(n int) kernels.Buf { return s.act(nans(n)) }

func (s *suite) down(b kernels.Buf) []float32 {
	v := make([]float32, b.Len())
	s.o.Download(v, b)
	return v
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// cmp compares got with want, reporting the first few elements out of
// tolerance.
func (s *suite) cmp(name string, got kernels.Buf, want []float64) {
	s.t.Helper()
	g := s.down(got)
	if len(g) != len(want) {
		s.t.Fatalf("%s: %d values, want %d", name, len(g), len(want))
	}
	var ss float64
	for _, w := range want {
		ss += w * w
	}
	rms := math.Sqrt(ss / float64(max(len(want), 1)))
	bad := 0
	for i, w := range want {
		d := math.Abs(float64(g[i]) - w)
		if !(d <= s.tol*(math.Abs(w)+rms)) {
			if bad++; bad <= 3 {
				s.t.Errorf("%s[%d] = %g, want %g (error %.2g, bound %.2g)", name, i, g[i], w, d, s.tol*(math.Abs(w)+rms))
			}
		}
	}
	if bad > 3 {
		s.t.Errorf("%s: %d of %d values out of tolerance", name, bad, len(want))
	}
}

func add(a []float32, b []float64) []float64 {
	out := f64(a)
	for i := range out {
		out[i] += b[i]
	}
	return out
}

// ---- the ops ----

func testMemory(s *suite) {
	n := 1000 + 37
	x, y := s.rand(n, 1), s.rand(n, 1)
	bx := s.up(x)
	s.cmp("Upload/Download", bx, f64(x))
	zero := s.o.Alloc(n)
	s.cmp("Alloc", zero, make([]float64, n))
	c := s.poisoned(n)
	s.o.Copy(c, bx)
	s.cmp("Copy", c, f64(x))
	by := s.up(y)
	s.o.Axpy(by, 0.75, bx)
	want := make([]float64, n)
	var ss float64
	for i := range want {
		want[i] = float64(y[i]) + 0.75*float64(x[i])
		ss += float64(x[i]) * float64(x[i])
	}
	s.cmp("Axpy", by, want)
	if got := s.o.SumSquares(bx); math.Abs(got-ss) > 1e-9*ss {
		s.t.Errorf("SumSquares = %.12g, want %.12g", got, ss)
	}
	// a slice reads and writes inside its parent only
	p := s.up(x)
	s.o.Fill(s.o.Slice(p, 100, 333), -2.5)
	want = f64(x)
	for i := 100; i < 433; i++ {
		want[i] = -2.5
	}
	s.cmp("Fill of a slice", p, want)
	if s.bs != nil {
		s.memoryBF16()
	}
}

// memoryBF16: the conversions round exactly as kernels.ToBF16 does, on
// the host (Upload) and on the device (Copy), ties to even and the
// special values included; Copy and Download widen exactly; Axpy pairs the
// two types every way; Fill and Slice count bfloat16 values.
func (s *suite) memoryBF16() {
	one := float32(1)
	x := append([]float32{
		one + 1.0/256, one + 3.0/256, // ties: down to even, up to even
		-(one + 1.0/256 + 1.0/65536), // past a tie: away from it
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		math.MaxFloat32,                      // rounds up to +Inf, as CUDA's does
		1e-40, float32(math.Copysign(0, -1)), // a subnormal, −0
	}, s.rand(1000, 3)...)
	want := make([]float32, len(x))
	for i, v := range x {
		want[i] = kernels.RoundBF16(v)
	}
	host := s.bs.AllocBF16(len(x))
	s.o.Upload(host, x)
	s.exact("Upload into bf16", host, want)
	dev := s.bs.AllocBF16(len(x))
	s.o.Copy(dev, s.up(x))
	s.exact("Copy fp32 into bf16", dev, want)
	wide := s.poisoned(len(x))
	s.o.Copy(wide, dev)
	s.exact("Copy bf16 into fp32", wide, want)
	same := s.poisonedAct(len(x))
	s.o.Copy(same, dev)
	s.exact("Copy bf16 into bf16", same, want)
	if !s.bs.IsBF16(dev) || s.bs.IsBF16(wide) {
		s.t.Errorf("IsBF16: %v for a bf16 buffer, %v for an fp32 one", s.bs.IsBF16(dev), s.bs.IsBF16(wide))
	}

	n := 1000 + 37
	for _, c := range []struct{ y, x bool }{{true, true}, {false, true}, {true, false}} {
		y, xv := s.asAct(s.rand(n, 1)), s.asAct(s.rand(n, 1))
		by, bx := s.typed(c.y, y), s.typed(c.x, xv)
		s.o.Axpy(by, -1.25, bx)
		w := make([]float64, n)
		for i := range w {
			w[i] = float64(y[i]) - 1.25*float64(xv[i])
		}
		s.cmp(fmt.Sprintf("Axpy y bf16 %v, x bf16 %v", c.y, c.x), by, w)
	}
	v := s.randAct(n, 1)
	var ss float64
	for _, e := range v {
		ss += float64(e) * float64(e)
	}
	if got := s.o.SumSquares(s.act(v)); math.Abs(got-ss) > 1e-9*ss {
		s.t.Errorf("SumSquares of bf16 = %.12g, want %.12g", got, ss)
	}
	p := s.act(v)
	s.o.Fill(s.o.Slice(p, 101, 333), 1.0/3)
	w := f64(v)
	for i := 101; i < 434; i++ {
		w[i] = float64(kernels.RoundBF16(1.0 / 3))
	}
	s.cmp("Fill of a bf16 slice", p, w)
}

// typed uploads v into bfloat16 storage when bf, else float32.
func (s *suite) typed(bf bool, v []float32) kernels.Buf {
	if bf {
		b := s.bs.AllocBF16(len(v))
		s.o.Upload(b, v)
		return b
	}
	return s.up(v)
}

// exact compares got with want bit for bit (NaN included: conversions give
// the canonical NaN).
func (s *suite) exact(name string, got kernels.Buf, want []float32) {
	s.t.Helper()
	g := s.down(got)
	bad := 0
	for i, w := range want {
		if math.Float32bits(g[i]) != math.Float32bits(w) {
			if bad++; bad <= 3 {
				s.t.Errorf("%s[%d] = %g (%#08x), want %g (%#08x)", name, i, g[i], math.Float32bits(g[i]), w, math.Float32bits(w))
			}
		}
	}
	if bad > 3 {
		s.t.Errorf("%s: %d of %d values differ", name, bad, len(want))
	}
}

func refMatMul(a, b []float32, m, n, k int, ta, tb bool) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var sum float64
			for p := 0; p < k; p++ {
				av, bv := a[i*k+p], b[p*n+j]
				if ta {
					av = a[p*m+i]
				}
				if tb {
					bv = b[j*k+p]
				}
				sum += float64(av) * float64(bv)
			}
			out[i*n+j] = sum
		}
	}
	return out
}

func testMatMul(s *suite) {
	m, n, k := 37, 53, 71
	// C in fp32, and with bf16 A and B also in bf16
	cTypes := []bool{false}
	if s.bs != nil {
		cTypes = append(cTypes, true)
	}
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			a, b, c0 := s.randAct(m*k, 1), s.randAct(k*n, 1), s.randAct(m*n, 1)
			ab, bb := s.act(a), s.act(b)
			prod := refMatMul(a, b, m, n, k, ta, tb)
			for _, cbf := range cTypes {
				name := fmt.Sprintf("MatMul ta=%v tb=%v", ta, tb)
				if cbf {
					name += " into bf16"
				}
				// beta 0 ignores what C held, NaN included
				c := s.typed(cbf, nans(m*n))
				s.o.MatMul(c, ab, bb, m, n, k, ta, tb, 1, 0)
				s.cmp(name, c, prod)
				c = s.typed(cbf, c0)
				s.o.MatMul(c, ab, bb, m, n, k, ta, tb, 0.5, 1)
				want := make([]float64, m*n)
				for i := range want {
					want[i] = float64(c0[i]) + 0.5*prod[i]
				}
				s.cmp(name+" alpha=0.5 beta=1", c, want)
			}
		}
	}
}

func testBias(s *suite) {
	rows, cols := 45, 67
	y, b, db0 := s.randAct(rows*cols, 1), s.rand(cols, 1), s.rand(cols, 1)
	by := s.act(y)
	s.o.AddBias(by, s.up(b), rows, cols)
	want := make([]float64, rows*cols)
	sums := make([]float64, cols)
	for i := range want {
		want[i] = float64(y[i]) + float64(b[i%cols])
		sums[i%cols] += float64(y[i])
	}
	s.cmp("AddBias", by, want)
	db := s.up(db0)
	s.o.BiasGrad(db, s.act(y), rows, cols)
	s.cmp("BiasGrad", db, add(db0, sums))
}

func testEmbed(s *suite) {
	B, T, C, V := 3, 11, 67, 29
	ids := make([]int32, B*T)
	for i := range ids {
		ids[i] = int32(s.r.IntN(V)) // repeats: the backward pass sums them
	}
	wte, wpe := s.rand(V*C, 1), s.rand(T*C, 1)
	out := s.poisonedAct(B * T * C)
	s.o.Embed(out, s.up(wte), s.up(wpe), ids, B, T, C)
	want := make([]float64, B*T*C)
	for bt, id := range ids {
		for c := 0; c < C; c++ {
			want[bt*C+c] = float64(wte[int(id)*C+c]) + float64(wpe[bt%T*C+c])
		}
	}
	s.cmp("Embed", out, want)
	dout, dte0, dpe0 := s.randAct(B*T*C, 1), s.rand(V*C, 1), s.rand(T*C, 1)
	dte, dpe := s.up(dte0), s.up(dpe0)
	s.o.EmbedBackward(dte, dpe, s.act(dout), ids, B, T, C)
	wte2, wpe2 := f64(dte0), f64(dpe0)
	for bt, id := range ids {
		for c := 0; c < C; c++ {
			wte2[int(id)*C+c] += float64(dout[bt*C+c])
			wpe2[bt%T*C+c] += float64(dout[bt*C+c])
		}
	}
	s.cmp("EmbedBackward wte", dte, wte2)
	s.cmp("EmbedBackward wpe", dpe, wpe2)
}

func testLayerNorm(s *suite) {
	rows, C := 41, 97
	x, w, b := s.rand(rows*C, 2), s.rand(C, 1), s.rand(C, 1)
	for i := range x {
		x[i] += 0.5 // a mean to remove
	}
	s.asAct(x)
	out, mean, rstd := s.poisonedAct(rows*C), s.poisoned(rows), s.poisoned(rows)
	bx, bw := s.act(x), s.up(w)
	s.o.LayerNorm(out, mean, rstd, bx, bw, s.up(b), rows, C)
	wo, wm, wr := make([]float64, rows*C), make([]float64, rows), make([]float64, rows)
	dout, dx0, dw0, db0 := s.randAct(rows*C, 1), s.randAct(rows*C, 1), s.rand(C, 1), s.rand(C, 1)
	wdx, wdw, wdb := f64(dx0), f64(dw0), f64(db0)
	for r := 0; r < rows; r++ {
		row := f64(x[r*C : (r+1)*C])
		var m, v float64
		for _, e := range row {
			m += e
		}
		m /= float64(C)
		for _, e := range row {
			v += (e - m) * (e - m)
		}
		rs := 1 / math.Sqrt(v/float64(C)+1e-5)
		wm[r], wr[r] = m, rs
		var a, an float64
		for i, e := range row {
			n := (e - m) * rs
			wo[r*C+i] = n*float64(w[i]) + float64(b[i])
			g := float64(dout[r*C+i])
			a += float64(w[i]) * g
			an += float64(w[i]) * g * n
			wdw[i] += g * n
			wdb[i] += g
		}
		a /= float64(C)
		an /= float64(C)
		for i, e := range row {
			n := (e - m) * rs
			wdx[r*C+i] += (float64(w[i])*float64(dout[r*C+i]) - a - n*an) * rs
		}
	}
	s.cmp("LayerNorm out", out, wo)
	s.cmp("LayerNorm mean", mean, wm)
	s.cmp("LayerNorm rstd", rstd, wr)
	dx, dw, db := s.act(dx0), s.up(dw0), s.up(db0)
	s.o.LayerNormBackward(dx, dw, db, s.act(dout), bx, bw, mean, rstd, rows, C)
	s.cmp("LayerNormBackward dx", dx, wdx)
	s.cmp("LayerNormBackward dw", dw, wdw)
	s.cmp("LayerNormBackward db", db, wdb)
}

func testRMSNorm(s *suite) {
	rows, C := 41, 97
	const eps = 1e-5
	x, w := s.randAct(rows*C, 2), s.rand(C, 1)
	out, rstd := s.poisonedAct(rows*C), s.poisoned(rows)
	bx, bw := s.act(x), s.up(w)
	s.o.RMSNorm(out, rstd, bx, bw, rows, C, eps)
	wo, wr := make([]float64, rows*C), make([]float64, rows)
	dout, dx0, dw0 := s.randAct(rows*C, 1), s.randAct(rows*C, 1), s.rand(C, 1)
	wdx, wdw := f64(dx0), f64(dw0)
	for r := 0; r < rows; r++ {
		row := f64(x[r*C : (r+1)*C])
		var ss float64
		for _, e := range row {
			ss += e * e
		}
		rs := 1 / math.Sqrt(ss/float64(C)+float64(float32(eps)))
		wr[r] = rs
		var dot float64
		for i, e := range row {
			wo[r*C+i] = float64(w[i]) * e * rs
			g := float64(dout[r*C+i])
			dot += g * float64(w[i]) * e * rs
			wdw[i] += g * e * rs
		}
		dot /= float64(C)
		for i, e := range row {
			wdx[r*C+i] += rs * (float64(dout[r*C+i])*float64(w[i]) - e*rs*dot)
		}
	}
	s.cmp("RMSNorm out", out, wo)
	s.cmp("RMSNorm rstd", rstd, wr)
	dx, dw := s.act(dx0), s.up(dw0)
	s.o.RMSNormBackward(dx, dw, s.act(dout), bx, bw, rstd, rows, C)
	s.cmp("RMSNormBackward dx", dx, wdx)
	s.cmp("RMSNormBackward dw", dw, wdw)
}

func testGELU(s *suite) {
	n := 1000 + 13
	x, dout, dx0 := s.randAct(n, 2), s.randAct(n, 1), s.randAct(n, 1)
	out := s.poisonedAct(n)
	bx := s.act(x)
	s.o.GELU(out, bx)
	wo, wd := make([]float64, n), f64(dx0)
	const k = 0.7978845608028654
	for i, v32 := range x {
		v := float64(v32)
		th := math.Tanh(k * (v + 0.044715*v*v*v))
		wo[i] = 0.5 * v * (1 + th)
		wd[i] += float64(dout[i]) * (0.5*(1+th) + 0.5*v*(1-th*th)*k*(1+3*0.044715*v*v))
	}
	s.cmp("GELU", out, wo)
	dx := s.act(dx0)
	s.o.GELUBackward(dx, bx, s.act(dout))
	s.cmp("GELUBackward", dx, wd)
}

func testSwiGLU(s *suite) {
	rows, F := 23, 45
	h, dout, dh0 := s.randAct(rows*2*F, 2), s.randAct(rows*F, 1), s.randAct(rows*2*F, 1)
	out := s.poisonedAct(rows * F)
	bh := s.act(h)
	s.o.SwiGLU(out, bh, rows, F)
	wo, wd := make([]float64, rows*F), f64(dh0)
	for r := 0; r < rows; r++ {
		for i := 0; i < F; i++ {
			g, u := float64(h[r*2*F+i]), float64(h[r*2*F+F+i])
			sg := 1 / (1 + math.Exp(-g))
			wo[r*F+i] = g * sg * u
			d := float64(dout[r*F+i])
			wd[r*2*F+i] += d * u * sg * (1 + g*(1-sg))
			wd[r*2*F+F+i] += d * g * sg
		}
	}
	s.cmp("SwiGLU", out, wo)
	dh := s.act(dh0)
	s.o.SwiGLUBackward(dh, bh, s.act(dout), rows, F)
	s.cmp("SwiGLUBackward", dh, wd)
}

func testRoPE(s *suite) {
	// the heads at offset HS of rows of width 5·HS + 3, as the keys of a
	// fused qkv row; the rest of each row must stay as it was
	B, T, heads, HS := 2, 37, 3, 20
	width, off := 5*HS+3, HS
	const theta = 10000
	x := s.randAct(B*T*width, 1)
	bx := s.act(x)
	s.o.RoPE(bx, B, T, heads, HS, width, off, theta, false)
	want := f64(x)
	half := HS / 2
	for p := 0; p < B*T; p++ {
		t := p % T
		for h := 0; h < heads; h++ {
			base := p*width + off + h*HS
			for i := 0; i < half; i++ {
				inv := 1 / float32(math.Pow(theta, float64(float32(2*i)/float32(HS))))
				a := float64(float32(t) * inv)
				c, sn := math.Cos(a), math.Sin(a)
				x0, x1 := float64(x[base+i]), float64(x[base+i+half])
				want[base+i], want[base+i+half] = x0*c-x1*sn, x1*c+x0*sn
			}
		}
	}
	s.cmp("RoPE", bx, want)
	s.o.RoPE(bx, B, T, heads, HS, width, off, theta, true)
	s.cmp("RoPE inverse", bx, f64(x))
}

func testAttention(s *suite) {
	for _, sh := range []struct{ B, T, NH, NKV, HS int }{
		{2, 37, 6, 6, 20},  // multi-head, T not a multiple of a tile
		{2, 19, 6, 2, 36},  // grouped-query, head across two lanes' words
		{1, 9, 3, 1, 128},  // one key/value head, the largest head
		{1, 70, 2, 2, 64},  // GPT-2's head size
		{3, 1, 5, 5, 7},    // one position
		{1, 33, 10, 5, 48}, // groups of two over ten heads
	} {
		name := fmt.Sprintf("B%d T%d NH%d NKV%d HS%d", sh.B, sh.T, sh.NH, sh.NKV, sh.HS)
		s.attention(name, sh.B, sh.T, sh.NH, sh.NKV, sh.HS)
	}
}

func (s *suite) attention(name string, B, T, NH, NKV, HS int) {
	W, C, G := (NH+2*NKV)*HS, NH*HS, NH/NKV
	qkv, dout, dqkv0 := s.randAct(B*T*W, 1), s.randAct(B*T*C, 1), s.randAct(B*T*W, 1)
	out, att := s.poisonedAct(B*T*C), s.poisoned(s.o.AttentionState(B, NH, T))
	bq := s.act(qkv)
	s.o.Attention(out, att, bq, B, T, NH, NKV, HS)
	wo, wd := make([]float64, B*T*C), f64(dqkv0)
	scale := 1 / math.Sqrt(float64(HS))
	at := func(b, t, off int) []float32 { return qkv[(b*T+t)*W+off:][:HS] }
	for b := 0; b < B; b++ {
		for h := 0; h < NH; h++ {
			ko, vo := NH*HS+h/G*HS, (NH+NKV)*HS+h/G*HS
			for t := 0; t < T; t++ {
				q := at(b, t, h*HS)
				p := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := range p {
					p[j] = dot64(q, at(b, j, ko)) * scale
					mx = max(mx, p[j])
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				g := dout[(b*T+t)*C+h*HS:][:HS]
				dp := make([]float64, t+1)
				var dsum float64
				for j := range p {
					p[j] /= sum
					v := at(b, j, vo)
					for i := 0; i < HS; i++ {
						wo[(b*T+t)*C+h*HS+i] += p[j] * float64(v[i])
						wd[(b*T+j)*W+vo+i] += p[j] * float64(g[i])
					}
					dp[j] = dot64(g, v)
					dsum += p[j] * dp[j]
				}
				for j := range p {
					ds := p[j] * (dp[j] - dsum) * scale
					k := at(b, j, ko)
					for i := 0; i < HS; i++ {
						wd[(b*T+t)*W+h*HS+i] += ds * float64(k[i])
						wd[(b*T+j)*W+ko+i] += ds * float64(q[i])
					}
				}
			}
		}
	}
	s.cmp("Attention "+name, out, wo)
	dq := s.act(dqkv0)
	s.o.AttentionBackward(dq, s.act(dout), out, bq, att, B, T, NH, NKV, HS)
	s.cmp("AttentionBackward "+name, dq, wd)
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func testCrossEntropy(s *suite) {
	rows, V, Vp := 29, 1000+7, 1024+64
	logits := s.randAct(rows*Vp, 3)
	targets := make([]int32, rows)
	for i := range targets {
		targets[i] = int32(s.r.IntN(V))
	}
	targets[0], targets[1] = 0, int32(V-1)
	const scale = 1.0 / 29
	wl, wd := make([]float64, rows), make([]float64, rows*Vp)
	for r := 0; r < rows; r++ {
		row := f64(logits[r*Vp : r*Vp+V])
		mx := slices.Max(row)
		var sum float64
		for _, v := range row {
			sum += math.Exp(v - mx)
		}
		wl[r] = math.Log(sum) - (row[targets[r]] - mx)
		for i, v := range row {
			wd[r*Vp+i] = scale * math.Exp(v-mx) / sum
		}
		wd[r*Vp+int(targets[r])] -= scale
	}
	bl := s.act(logits)
	losses := s.poisoned(rows)
	s.o.CrossEntropy(losses, nil, bl, targets, rows, V, Vp, 0)
	s.cmp("CrossEntropy losses", losses, wl)
	losses, dl := s.poisoned(rows), s.poisonedAct(rows*Vp)
	s.o.CrossEntropy(losses, dl, bl, targets, rows, V, Vp, scale)
	s.cmp("CrossEntropy losses (with gradient)", losses, wl)
	s.cmp("CrossEntropy dlogits", dl, wd)
	// in place: the gradient over the logits
	losses = s.poisoned(rows)
	s.o.CrossEntropy(losses, bl, bl, targets, rows, V, Vp, scale)
	s.cmp("CrossEntropy in place losses", losses, wl)
	s.cmp("CrossEntropy in place dlogits", bl, wd)
}

// testGatherScatter: fp32 weights throughout; with bf16 storage, the
// gathers from and into bf16 in every pairing, and the scatters of bf16
// into fp32.
func testGatherScatter(s *suite) {
	testGatherScatterShape(s, 37, 67, []int32{36, 0, 5, 6, 7, 20}, []int32{66, 0, 1, 2, 31, 32, 33, 40})
	// Large enough that backends split the rows over workers, with runs of
	// consecutive columns as heads give (64) and single ones as neurons do.
	r := rand.New(rand.NewPCG(21, 22))
	n, width := 300, 1000
	rows := make([]int32, 0, n)
	for _, i := range r.Perm(n)[:200] {
		rows = append(rows, int32(i))
	}
	var cols []int32
	for _, h := range []int32{3, 0, 9} {
		for c := h * 64; c < h*64+64; c++ {
			cols = append(cols, c)
		}
	}
	for _, i := range r.Perm(width - 640)[:10] {
		cols = append(cols, int32(640+i))
	}
	testGatherScatterShape(s, n, width, rows, cols)
}

func testGatherScatterShape(s *suite, n, width int, rows, cols []int32) {
	pairs := []struct{ dst, src bool }{{false, false}}
	if s.bs != nil {
		pairs = append(pairs, struct{ dst, src bool }{true, false}, struct{ dst, src bool }{true, true}, struct{ dst, src bool }{false, true})
	}
	for _, p := range pairs {
		name := func(op string) string {
			op = fmt.Sprintf("%s %d×%d", op, n, width)
			if !p.dst && !p.src {
				return op
			}
			return fmt.Sprintf("%s dst bf16 %v, src bf16 %v", op, p.dst, p.src)
		}
		src := s.rand(n*width, 1)
		if p.src {
			src = s.asAct(src)
		}
		bs := s.typed(p.src, src)
		// a gather copies: exact, rounded where dst is bf16
		round := func(v float32) float64 {
			if p.dst {
				return float64(kernels.RoundBF16(v))
			}
			return float64(v)
		}
		dst := s.typed(p.dst, nans(len(rows)*width))
		s.o.GatherRows(dst, bs, rows, width)
		want := make([]float64, len(rows)*width)
		for i, r := range rows {
			for j := 0; j < width; j++ {
				want[i*width+j] = round(src[int(r)*width+j])
			}
		}
		s.cmp(name("GatherRows"), dst, want)

		dst = s.typed(p.dst, nans(n*len(cols)))
		s.o.GatherCols(dst, bs, n, width, cols)
		want = make([]float64, n*len(cols))
		for r := 0; r < n; r++ {
			for j, c := range cols {
				want[r*len(cols)+j] = round(src[r*width+int(c)])
			}
		}
		s.cmp(name("GatherCols"), dst, want)
		if p.dst {
			continue // the scatters add into fp32 only
		}

		part, base := s.rand(len(rows)*width, 1), s.rand(n*width, 1)
		if p.src {
			s.asAct(part)
		}
		bb := s.up(base)
		s.o.ScatterAddRows(bb, s.typed(p.src, part), rows, width)
		want = f64(base)
		for i, r := range rows {
			for j := 0; j < width; j++ {
				want[int(r)*width+j] += float64(part[i*width+j])
			}
		}
		s.cmp(name("ScatterAddRows"), bb, want)

		part = s.rand(n*len(cols), 1)
		if p.src {
			s.asAct(part)
		}
		bb = s.up(base)
		s.o.ScatterAddCols(bb, s.typed(p.src, part), n, width, cols)
		want = f64(base)
		for r := 0; r < n; r++ {
			for j, c := range cols {
				want[r*width+int(c)] += float64(part[r*len(cols)+j])
			}
		}
		s.cmp(name("ScatterAddCols"), bb, want)
	}
}

// refAdamW is PyTorch's AdamW on one element, in float64.
func refAdamW(p, g, m, v *float64, a kernels.AdamWArgs) {
	scale := float64(a.GradScale)
	if scale == 0 {
		scale = 1
	}
	gi := *g * scale
	b1, b2 := float64(a.Beta1), float64(a.Beta2)
	*m = b1**m + (1-b1)*gi
	*v = b2**v + (1-b2)*gi*gi
	bc1 := 1 - math.Pow(b1, float64(a.Step))
	bc2 := 1 - math.Pow(b2, float64(a.Step))
	denom := math.Sqrt(*v)/math.Sqrt(bc2) + float64(a.Eps)
	*p = *p*(1-float64(a.LR)*float64(a.WeightDecay)) - float64(a.LR)/bc1**m/denom
}

func testAdamW(s *suite) {
	rows, width := 19, 37
	n := rows * width
	a := kernels.AdamWArgs{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, GradScale: 0.5, Step: 3}
	for _, c := range []struct {
		name       string
		rows, cols []int32
	}{
		{"AdamW", nil, nil},
		{"AdamWSub all", nil, nil},
		{"AdamWSub rows", []int32{0, 3, 4, 18}, nil},
		{"AdamWSub cols", nil, []int32{0, 1, 2, 17, 36}},
		{"AdamWSub rows and cols", []int32{2, 7, 11}, []int32{5, 6, 30}},
	} {
		p, g, m, v := s.rand(n, 1), s.rand(n, 1), s.rand(n, 0.1), s.rand(n, 0.1)
		for i := range v {
			v[i] *= v[i] // second moments are not negative
		}
		bp, bm, bv := s.up(p), s.up(m), s.up(v)
		if c.name == "AdamW" {
			s.o.AdamW(bp, s.up(g), bm, bv, a)
		} else {
			s.o.AdamWSub(bp, s.up(g), bm, bv, width, c.rows, c.cols, a)
		}
		wp, wm, wv := f64(p), f64(m), f64(v)
		wg := f64(g)
		for r := 0; r < rows; r++ {
			if c.rows != nil && !slices.Contains(c.rows, int32(r)) {
				continue
			}
			for j := 0; j < width; j++ {
				if c.cols != nil && !slices.Contains(c.cols, int32(j)) {
					continue
				}
				i := r*width + j
				refAdamW(&wp[i], &wg[i], &wm[i], &wv[i], a)
			}
		}
		s.cmp(c.name+" params", bp, wp)
		s.cmp(c.name+" m", bm, wm)
		s.cmp(c.name+" v", bv, wv)
	}
}
