//go:build openblas && cgo

package cpu

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// TestMatMulWorkersBitExact: a product split over any number of workers,
// by rows or by columns, gives the bits of one worker. matmul chooses the
// split by shape, so the shapes cover both sides, each transpose and
// sizes that leave uneven parts; the pieces are cut for 1, 2, 3 and 5
// CPUs. On OpenBLAS's SkylakeX and Cooperlake kernels, which round a
// piece of a product as they round the whole, the bits are also the
// single sgemm call's whatever the cut, so there matmul cuts for the
// workers (cutForWorkers), and both ways are tried; elsewhere (its
// Haswell kernels) they are not, and the pieces must not follow the
// workers.
func TestMatMulWorkersBitExact(t *testing.T) {
	defer func(n int, w bool) { pieceCPUs, cutForWorkers = n, w }(pieceCPUs, cutForWorkers)
	core := blasCore()
	wholeExact := core == "SkylakeX" || core == "Cooperlake"
	if cutForWorkers != wholeExact {
		t.Fatalf("OpenBLAS core %s: products cut for the workers: %v", core, cutForWorkers)
	}
	t.Logf("OpenBLAS core %s: pieces give the whole product's bits: %v", core, wholeExact)
	for _, cut := range []bool{false, true} {
		if cut && !wholeExact {
			continue
		}
		cutForWorkers = cut
		matMulWorkersBitExact(t, core, wholeExact)
	}
}

func matMulWorkersBitExact(t *testing.T, core string, wholeExact bool) {
	shapes := [][3]int{{256, 3072, 768}, {256, 768, 3072}, {3072, 768, 256}, {768, 1536, 256}, {37, 1000, 333}, {1000, 37, 333}, {100, 2304, 64}, {64, 176, 4096}, {176, 64, 256}, {96, 64, 256}, {64, 176, 256}, {256, 64, 176}, {256, 176, 64}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tr[0], tr[1]
			r := rand.New(rand.NewPCG(uint64(m), uint64(n)))
			a, b := normals(r, m*k), normals(r, k*n)
			c0 := normals(r, m*n)
			whole := append([]float32(nil), c0...)
			lda, ldb, ldc := leading(m, n, k, ta, tb)
			sgemm(whole, a, b, m, n, k, ta, tb, 0.5, 1, lda, ldb, ldc)
			for _, cpus := range []int{1, 2, 3, 5} {
				pieceCPUs = cpus
				var want []float32
				for _, w := range []int{1, 2, 3, 5} {
					o := New()
					o.workers = w
					got := append([]float32(nil), c0...)
					o.MatMul(Buf(got), Buf(a), Buf(b), m, n, k, ta, tb, 0.5, 1)
					if want == nil {
						want = got
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%d×%d×%d ta=%v tb=%v, cut for the workers %v, pieces for %d CPUs, %d workers: element %d is %v, on one worker %v", m, n, k, ta, tb, cutForWorkers, cpus, w, i, got[i], want[i])
						}
						if wholeExact && got[i] != whole[i] {
							t.Fatalf("%d×%d×%d ta=%v tb=%v, %s kernels, cut for the workers %v, pieces for %d CPUs, %d workers: element %d is %v, one sgemm call %v", m, n, k, ta, tb, core, cutForWorkers, cpus, w, i, got[i], whole[i])
						}
					}
				}
			}
		}
	}
}

// TestMatMulConcurrent: products from several goroutines at once (one
// holds the thread pool, the others split theirs on goroutines) each give
// the bits of one worker.
func TestMatMulConcurrent(t *testing.T) {
	const m, n, k = 64, 900, 70
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			a, b := normals(r, m*k), normals(r, k*n)
			want := make([]float32, m*n)
			one := New()
			one.workers = 1
			one.MatMul(Buf(want), Buf(a), Buf(b), m, n, k, false, true, 1, 0)
			o := New()
			o.workers = 2
			got := make([]float32, m*n)
			for range 50 {
				o.MatMul(Buf(got), Buf(a), Buf(b), m, n, k, false, true, 1, 0)
				for i := range want {
					if got[i] != want[i] {
						errs <- fmt.Sprintf("goroutine %d: element %d is %v, on one worker %v", g, i, got[i], want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// stepShapes are the products of GPT-2 124M's B=4, T=64 step.
var stepShapes = []struct {
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

// splitProduct computes one of stepShapes split by rows or columns over
// o's workers (as many parts as workers, each at least 16 long), on the
// thread pool or on goroutines started for it.
func splitProduct(o *Ops, c, a, w []float32, m, n, k int, ta, tb, cols, pool bool) {
	ext := m
	if cols {
		ext = n
	}
	parts := min(o.workers, (ext+15)/16)
	sgemmSplit(c, a, w, m, n, k, ta, tb, 1, 0, parts, parts, cols, pool)
}

// split is how a benchmark splits a product: by rows, by columns, or as
// matmul chooses.
type split int

const (
	byRows split = iota
	byCols
	asMatMul
)

// BenchmarkMatMulSplit times the step's products split by rows and by
// columns of C on the thread pool, side by side: the measurements behind
// matmul's choice.
func BenchmarkMatMulSplit(b *testing.B) {
	benchProducts(b, func(name string, run func(sp split, pool bool)) {
		for _, sp := range []split{byRows, byCols} {
			b.Run(fmt.Sprintf("%s/cols=%v", name, sp == byCols), func(b *testing.B) { loopRate(b, name, func() { run(sp, true) }) })
		}
	})
}

// BenchmarkMatMulDispatch times the step's products, split as matmul
// splits them, on the thread pool and on goroutines started for each
// product, side by side.
func BenchmarkMatMulDispatch(b *testing.B) {
	benchProducts(b, func(name string, run func(sp split, pool bool)) {
		for _, pool := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/pool=%v", name, pool), func(b *testing.B) { loopRate(b, name, func() { run(asMatMul, pool) }) })
		}
	})
}

// benchProducts calls each with every shape's name and a function that
// computes it.
func benchProducts(b *testing.B, each func(name string, run func(sp split, pool bool))) {
	o := New()
	for _, s := range stepShapes {
		r := rand.New(rand.NewPCG(1, 2))
		a, w, c := normals(r, s.m*s.k), normals(r, s.n*s.k), make([]float32, s.m*s.n)
		name := fmt.Sprintf("%s_%d×%d×%d", s.name, s.m, s.n, s.k)
		shapeCols := s.m < s.n && !s.ta
		splitProduct(o, c, a, w, s.m, s.n, s.k, s.ta, s.tb, shapeCols, false) // first touch of c: not timed
		each(name, func(sp split, pool bool) {
			cols := sp == byCols || sp == asMatMul && shapeCols
			splitProduct(o, c, a, w, s.m, s.n, s.k, s.ta, s.tb, cols, pool)
		})
	}
}

// loopRate runs fn b.N times and reports its rate from the shape in name.
func loopRate(b *testing.B, name string, fn func()) {
	var m, n, k int
	if _, err := fmt.Sscanf(name[strings.Index(name, "_")+1:], "%d×%d×%d", &m, &n, &k); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		fn()
	}
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}
