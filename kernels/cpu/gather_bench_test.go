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
	var sel []int32
	for _, i := range r.Perm(F)[:F/2] {
		sel = append(sel, int32(i))
	}
	slices.Sort(sel)
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
