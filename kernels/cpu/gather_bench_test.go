package cpu

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// BenchmarkGatherScatter: the gathers and scatters of a sampled step at
// GPT-2 124M's MLP shape (3072 neurons of 768 channels, half of them
// sampled one by one; a head's 64 columns run together in attention's).
func BenchmarkGatherScatter(b *testing.B) {
	const C, F = 768, 3072
	r := rand.New(rand.NewPCG(1, 2))
	sel := halfSorted(r, F)
	o := New()
	w, g := o.Alloc(F*C), o.Alloc(F*C)
	part := o.Alloc(len(sel) * C)
	b.Run("rows", func(b *testing.B) {
		for b.Loop() {
			o.GatherRows(part, w, sel, C)
			o.ScatterAddRows(g, part, sel, C)
		}
	})
	b.Run("cols", func(b *testing.B) {
		for b.Loop() {
			o.GatherCols(part, w, C, F, sel)
			o.ScatterAddCols(g, part, C, F, sel)
		}
	})
}

// BenchmarkMatMulSampled: a sampled MLP's products at GPT-2 124M's shape
// and B·T = 256 (half of 3072 neurons sampled one by one), each over a
// fresh weight of a set larger than the caches, as a step meets them:
// through MatMulSampled and MatMulScatter (sampled), through the gathers
// and scatters (gathered), and a product of the same size over a
// contiguous weight (dense), the bound.
func BenchmarkMatMulSampled(b *testing.B) {
	const C, F, BT, nw = 768, 3072, 256, 24
	r := rand.New(rand.NewPCG(1, 2))
	sel := halfSorted(r, F)
	o := New()
	ws := make([]Buf, nw)
	for i := range ws {
		ws[i] = Buf(make([]float32, F*C))
		for j := range ws[i] {
			ws[i][j] = r.Float32()
		}
	}
	x, dy, h := Buf(make([]float32, BT*C)), Buf(make([]float32, BT*C)), Buf(make([]float32, BT*F/2))
	g := o.Alloc(F / 2 * C)
	out := o.Alloc(BT * F)
	type form struct {
		name    string
		rows    bool // fc (3072×768, rows) or proj (768×3072, columns)
		grad    bool // the weight gradient, else a product by the weight
		tb      bool
		m, n, k int
		a       Buf
	}
	forms := []form{
		{"fc-fwd", true, false, true, BT, F / 2, C, x},
		{"fc-dx", true, false, false, BT, C, F / 2, h},
		{"fc-dw", true, true, false, F / 2, C, BT, h},
		{"proj-fwd", false, false, true, BT, C, F / 2, h},
		{"proj-dx", false, false, false, BT, F / 2, C, dy},
		{"proj-dw", false, true, false, C, F / 2, BT, dy},
	}
	for _, fm := range forms {
		var rows, cols []int32
		width := C
		if fm.rows {
			rows = sel
		} else {
			cols, width = sel, F
		}
		bOp := x // the weight gradient's other operand
		if !fm.rows {
			bOp = h
		}
		i := 0
		next := func() Buf { i = (i + 1) % nw; return ws[i] }
		b.Run(fm.name+"/sampled", func(b *testing.B) {
			for b.Loop() {
				w := next()
				if fm.grad {
					o.MatMulScatter(w, fm.a, bOp, fm.m, fm.n, fm.k, true, false, 1, rows, cols, width)
				} else {
					o.MatMulSampled(out, fm.a, w, fm.m, fm.n, fm.k, false, fm.tb, 1, 0, rows, cols, width)
				}
			}
		})
		b.Run(fm.name+"/gathered", func(b *testing.B) {
			for b.Loop() {
				w := next()
				switch {
				case fm.grad:
					o.MatMul(g, fm.a, bOp, fm.m, fm.n, fm.k, true, false, 1, 0)
					if fm.rows {
						o.ScatterAddRows(w, g, rows, width)
					} else {
						o.ScatterAddCols(w, g, C, width, cols)
					}
				case fm.rows:
					o.GatherRows(g, w, rows, width)
					o.MatMul(out, fm.a, g, fm.m, fm.n, fm.k, false, fm.tb, 1, 0)
				default:
					o.GatherCols(g, w, C, width, cols)
					o.MatMul(out, fm.a, g, fm.m, fm.n, fm.k, false, fm.tb, 1, 0)
				}
			}
		})
		b.Run(fm.name+"/dense", func(b *testing.B) {
			for b.Loop() {
				w := Buf(next()[:F/2*C])
				if fm.grad {
					o.MatMul(w, fm.a, bOp, fm.m, fm.n, fm.k, true, false, 1, 1)
				} else {
					o.MatMul(out, fm.a, w, fm.m, fm.n, fm.k, false, fm.tb, 1, 0)
				}
			}
		})
	}
}

// halfSorted is half of 0..n-1 drawn at random, in order: the MLP neurons
// a 0.5 rate samples one by one.
func halfSorted(r *rand.Rand, n int) []int32 {
	var sel []int32
	for _, i := range r.Perm(n)[:n/2] {
		sel = append(sel, int32(i))
	}
	slices.Sort(sel)
	return sel
}
