//go:build openblas && cgo

package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestMatMulWorkersBitExact: a product split over any number of workers,
// by rows or by columns, gives the bits of the single-threaded sgemm.
// matmul chooses the split by shape, so the shapes cover both sides,
// each transpose and sizes that leave uneven parts.
func TestMatMulWorkersBitExact(t *testing.T) {
	shapes := [][3]int{{256, 3072, 768}, {256, 768, 3072}, {3072, 768, 256}, {768, 1536, 256}, {37, 1000, 333}, {1000, 37, 333}, {100, 2304, 64}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tr[0], tr[1]
			r := rand.New(rand.NewPCG(uint64(m), uint64(n)))
			a, b := normals(r, m*k), normals(r, k*n)
			c0 := normals(r, m*n)
			want := append([]float32(nil), c0...)
			lda, ldb, ldc := leading(m, n, k, ta, tb)
			sgemm(want, a, b, m, n, k, ta, tb, 0.5, 1, lda, ldb, ldc)
			for _, w := range []int{1, 2, 3, 5} {
				o := New()
				o.workers = w
				got := append([]float32(nil), c0...)
				o.MatMul(Buf(got), Buf(a), Buf(b), m, n, k, ta, tb, 0.5, 1)
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("%d×%d×%d ta=%v tb=%v, %d workers: element %d is %v, single-threaded %v", m, n, k, ta, tb, w, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// BenchmarkMatMulSplit times the products of GPT-2 124M's B=4, T=64 step
// split over the workers by rows and by columns of C, side by side: the
// measurements behind matmul's choice.
func BenchmarkMatMulSplit(b *testing.B) {
	o := New()
	shapes := []struct {
		name    string
		m, n, k int
		ta, tb  bool
	}{
		{"fc", 256, 3072, 768, false, true},
		{"proj", 256, 768, 3072, false, true},
		{"fc-dx", 256, 768, 3072, false, false},
		{"fc-dw", 3072, 768, 256, true, false},
		{"proj-dw", 768, 3072, 256, true, false},
		{"half-proj-dw", 768, 1536, 256, true, false},
		{"qkv", 256, 2304, 768, false, true},
		{"lm-head", 256, 50304, 768, false, true},
	}
	for _, s := range shapes {
		r := rand.New(rand.NewPCG(1, 2))
		a, w, c := normals(r, s.m*s.k), normals(r, s.n*s.k), make([]float32, s.m*s.n)
		lda, ldb, ldc := leading(s.m, s.n, s.k, s.ta, s.tb)
		for _, byCols := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s_%d×%d×%d/cols=%v", s.name, s.m, s.n, s.k, byCols), func(b *testing.B) {
				for b.Loop() {
					if byCols {
						o.parallel(s.n, 16, func(lo, hi int) {
							boff := lo
							if s.tb {
								boff = lo * ldb
							}
							sgemm(c[lo:], a, w[boff:], s.m, hi-lo, s.k, s.ta, s.tb, 1, 0, lda, ldb, ldc)
						})
						continue
					}
					o.parallel(s.m, 16, func(lo, hi int) {
						aoff := lo * lda
						if s.ta {
							aoff = lo
						}
						sgemm(c[lo*ldc:], a[aoff:], w, hi-lo, s.n, s.k, s.ta, s.tb, 1, 0, lda, ldb, ldc)
					})
				}
				b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
