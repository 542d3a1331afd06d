package cpu

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// needSampled skips where the build has no sampled products (no OpenBLAS,
// or a core whose blocking is not known), and fails where the self-check
// turned them off: there they should have matched.
func needSampled(t *testing.T) {
	t.Helper()
	sampledCheck.Do(selfCheckSampled)
	if sampledRun != nil {
		return
	}
	if strings.HasPrefix(sampledOff, "self-check") {
		t.Fatalf("sampled products off: %s", sampledOff)
	}
	t.Skipf("sampled products off: %s", sampledOff)
}

// sampledLists are index lists of n the sampler can draw: half at random
// (sorted), runs of 64 (heads), every other index, and one list that is
// not sorted.
func sampledLists(rng *rand.Rand, n int) map[string][]int32 {
	half := rng.Perm(n)[:n/2]
	sorted := make([]int32, len(half))
	for i, v := range half {
		sorted[i] = int32(v)
	}
	slices.Sort(sorted)
	unsorted := make([]int32, len(half))
	for i, v := range half {
		unsorted[i] = int32(v)
	}
	var runs, other []int32
	for h := 0; h+64 <= n; h += 128 {
		for c := h; c < h+64; c++ {
			runs = append(runs, int32(c))
		}
	}
	for i := 1; i < n; i += 2 {
		other = append(other, int32(i))
	}
	return map[string][]int32{"random": sorted, "heads": runs, "other": other, "unsorted": unsorted}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

// TestMatMulSampledBitExact: a product over a weight's listed rows or
// columns has the bits of MatMul over the gathered copy, on 1, 2 and 3
// workers, both orientations of the weight (and of the activations for
// one list), with alpha and beta, for the shapes of a sampled layer's
// forward (y = x·wₛᵀ) and input-gradient (dx = dy·wₛ) products and odd
// ones.
func TestMatMulSampledBitExact(t *testing.T) {
	needSampled(t)
	rng := rand.New(rand.NewSource(1))
	taken := 0
	eachSampledCase(rng, [][3]int{{256, 1024, 768}, {96, 1000, 700}, {333, 1100, 600}}, func(c sampledCase) {
		o, m, wr, wc := c.o, c.rows, c.wr, c.wc
		for _, tb := range []bool{true, false} {
			for _, ab := range [][2]float32{{1, 0}, {0.37, 0.5}, {-1.25, 1}} {
				w := randSlice(rng, wr*wc)
				rows, cols, R, Cw := sampledShape(c.byRows, c.idx, wr, wc)
				g := make([]float32, R*Cw)
				o.gatherSampled(g, w, rows, cols, wr, wc)
				n, k := Cw, R
				if tb {
					n, k = R, Cw
				}
				a := randSlice(rng, m*k)
				ta := c.name == "other" // a stored k×m, transposed
				want := randSlice(rng, m*n)
				got := slices.Clone(want)
				o.MatMul(Buf(want), Buf(a), Buf(g), m, n, k, ta, tb, ab[0], ab[1])
				if !o.MatMulSampled(Buf(got), Buf(a), Buf(w), m, n, k, ta, tb, ab[0], ab[1], rows, cols, wc) {
					if !slices.Equal(got, want) && float64(m)*float64(n)*float64(k)/float64(o.workers) >= 2*sampledMin {
						t.Errorf("%v tb %v: declined a product it should take", c, tb)
					}
					continue
				}
				taken++
				if i := firstDiff(want, got); i >= 0 {
					t.Fatalf("%v tb %v alpha %v beta %v: element %d is %v, gathered %v", c, tb, ab[0], ab[1], i, got[i], want[i])
				}
			}
		}
	})
	if taken == 0 {
		t.Fatal("no product took the sampled path")
	}
}

// sampledCase is one weight of the bit-exactness tests: rows of
// activations (or the depth of a weight gradient), a weight wr×wc, its
// rows (byRows) or columns idx that run, as sampledLists names them, and
// the Ops that computes, with its workers.
type sampledCase struct {
	o            *Ops
	rows, wr, wc int
	byRows       bool
	name         string
	idx          []int32
}

func (c sampledCase) String() string {
	return fmt.Sprintf("%d×%d×%d rows %v %s, %d workers", c.rows, c.wr, c.wc, c.byRows, c.name, c.o.workers)
}

// eachSampledCase calls f for each shape {rows, wr, wc}, on 1, 2 and 3
// workers, for each of sampledLists' lists of the weight's rows and of
// its columns.
func eachSampledCase(rng *rand.Rand, shapes [][3]int, f func(sampledCase)) {
	for _, sh := range shapes {
		for _, workers := range []int{1, 2, 3} {
			o := &Ops{workers: workers}
			for _, byRows := range []bool{true, false} {
				ext := sh[2]
				if byRows {
					ext = sh[1]
				}
				for name, idx := range sampledLists(rng, ext) {
					f(sampledCase{o: o, rows: sh[0], wr: sh[1], wc: sh[2], byRows: byRows, name: name, idx: idx})
				}
			}
		}
	}
}

// TestMatMulScatterBitExact: a weight gradient added into the listed rows
// or columns has the bits of MatMul into a zeroed buffer, then
// ScatterAddRows or ScatterAddCols, on 1, 2 and 3 workers.
func TestMatMulScatterBitExact(t *testing.T) {
	needSampled(t)
	rng := rand.New(rand.NewSource(2))
	taken := 0
	eachSampledCase(rng, [][3]int{{256, 1024, 768}, {100, 1000, 700}, {sampledDepth, 1100, 600}}, func(c sampledCase) {
		o, bt, wr, wc := c.o, c.rows, c.wr, c.wc
		for _, alpha := range []float32{1, 0.37} {
			rows, cols, R, Cw := sampledShape(c.byRows, c.idx, wr, wc)
			dy, x := randSlice(rng, bt*R), randSlice(rng, bt*Cw)
			// the layers' orientation (dyᵀ·x), and for one list
			// the other three, with dy and x stored to match
			ta, tb := true, false
			if c.name == "other" {
				ta, tb = alpha == 1, true
			}
			want := randSlice(rng, wr*wc)
			got := slices.Clone(want)
			buf := make([]float32, R*Cw)
			o.MatMul(Buf(buf), Buf(dy), Buf(x), R, Cw, bt, ta, tb, alpha, 0)
			o.scatterSampled(want, buf, rows, cols, wr, wc)
			if !o.MatMulScatter(Buf(got), Buf(dy), Buf(x), R, Cw, bt, ta, tb, alpha, rows, cols, wc) {
				t.Errorf("%v: declined", c)
				continue
			}
			taken++
			if i := firstDiff(want, got); i >= 0 {
				t.Fatalf("%v alpha %v: element %d is %v, scattered %v", c, alpha, i, got[i], want[i])
			}
		}
	})
	if taken == 0 {
		t.Fatal("no product took the sampled path")
	}
}

// TestMatMulSampledDeclines: what the path does not take it leaves
// untouched: products too small for OpenBLAS's blocked driver, products
// whose copy would stay in cache, scatters deeper than one block, calls
// naming both or neither index list, and extents so large that the size
// checks' products would overflow.
func TestMatMulSampledDeclines(t *testing.T) {
	needSampled(t)
	o := &Ops{workers: 2}
	rng := rand.New(rand.NewSource(3))
	rows := []int32{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
	w := randSlice(rng, 32*64)
	c := randSlice(rng, 16*16)
	before := slices.Clone(c)
	if o.MatMulSampled(Buf(c), Buf(randSlice(rng, 16*64)), Buf(w), 16, 16, 64, false, true, 1, 0, rows, nil, 64) {
		t.Error("a 16×16×64 product took the sampled path")
	}
	// a product above OpenBLAS's small kernels whose gathered copy (the
	// horizon model's: 256 of 512 rows of 128) stays in cache
	half := make([]int32, 256)
	for i := range half {
		half[i] = int32(2 * i)
	}
	y := randSlice(rng, 2048*256)
	yBefore := slices.Clone(y)
	if o.MatMulSampled(Buf(y), Buf(randSlice(rng, 2048*128)), Buf(randSlice(rng, 512*128)), 2048, 256, 128, false, true, 1, 0, half, nil, 128) {
		t.Error("a product over a 256×128 copy was taken")
	}
	if !slices.Equal(y, yBefore) {
		t.Error("a declined product over a small copy wrote")
	}
	// where the pieces are cut for the CPUs and outnumber two or more
	// workers (a process given fewer CPUs than the machine has), the
	// product is left to the gathered copy's MatMul, which shares them
	func() {
		defer func(n int, w bool) { pieceCPUs, cutForWorkers = n, w }(pieceCPUs, cutForWorkers)
		pieceCPUs, cutForWorkers = 4, false
		y := randSlice(rng, 256*1024)
		yBefore := slices.Clone(y)
		idx := make([]int32, 1024)
		for i := range idx {
			idx[i] = int32(2 * i)
		}
		if o.MatMulSampled(Buf(y), Buf(randSlice(rng, 256*768)), Buf(randSlice(rng, 2048*768)), 256, 1024, 768, false, true, 1, 0, idx, nil, 768) {
			t.Error("a product cut into 4 pieces was taken on 2 workers")
		}
		if !slices.Equal(y, yBefore) {
			t.Error("a declined product cut into 4 pieces wrote")
		}
		one := &Ops{workers: 1}
		if !one.MatMulSampled(Buf(y), Buf(randSlice(rng, 256*768)), Buf(randSlice(rng, 2048*768)), 256, 1024, 768, false, true, 1, 0, idx, nil, 768) {
			t.Error("a product cut into 4 pieces was declined on one worker, which runs them one after another")
		}
	}()
	if o.MatMulSampled(Buf(c), Buf(randSlice(rng, 16*64)), Buf(w), 16, 16, 64, false, true, 1, 0, rows, []int32{1}, 64) {
		t.Error("a product with both rows and columns listed was taken")
	}
	// extents whose products of two overflow an int: declined before C
	huge := make([]int32, 16)
	for i := range huge {
		huge[i] = int32(1<<30 + i)
	}
	one := Buf(make([]float32, 1))
	if o.MatMulSampled(Buf(make([]float32, 256*16)), Buf(make([]float32, 256*256)), one, 256, 16, 256, false, false, 1, 0, nil, huge, 1<<62) {
		t.Error("a product over a weight 2⁶² wide was taken")
	}
	if o.MatMulScatter(one, Buf(make([]float32, 256*256)), Buf(make([]float32, 256*16)), 256, 16, 256, true, false, 1, nil, huge, 1<<62) {
		t.Error("a scatter into a gradient 2⁶² wide was taken")
	}
	small := make([]int32, 16)
	for i := range small {
		small[i] = int32(i)
	}
	if o.MatMulSampled(Buf(make([]float32, 16)), Buf(make([]float32, 16)), Buf(make([]float32, 256)), 1<<62, 16, 16, false, false, 1, 0, nil, small, 16) {
		t.Error("a product of 2⁶² rows was taken")
	}
	deep := sampledDepth + 1
	dst := randSlice(rng, 512*512)
	dstBefore := slices.Clone(dst)
	all := make([]int32, 512)
	for i := range all {
		all[i] = int32(i)
	}
	if o.MatMulScatter(Buf(dst), Buf(randSlice(rng, deep*512)), Buf(randSlice(rng, deep*512)), 512, 512, deep, true, false, 1, all, nil, 512) {
		t.Errorf("a scatter %d deep was taken", deep)
	}
	if !slices.Equal(c, before) || !slices.Equal(dst, dstBefore) {
		t.Error("a declined product wrote")
	}
}

func firstDiff(a, b []float32) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestMatMulScatterWide: a scatter whose part is wider than the driver's
// column block (its sgemm_r, 104512 on the Haswell tables) has the bits
// of MatMul into a zeroed buffer then ScatterAddRows, whether the path
// takes it or declines it: OpenBLAS's driver starts its column blocks
// again there, and the Haswell kernel's bits depend on how many columns a
// call is given.
func TestMatMulScatterWide(t *testing.T) {
	needSampled(t)
	defer func(n int, w bool) { pieceCPUs, cutForWorkers = n, w }(pieceCPUs, cutForWorkers)
	rng := rand.New(rand.NewSource(7))
	const width, depth = 16, 16
	for _, c := range []struct{ cpus, workers, m int }{{1, 1, 104520}, {2, 2, 2*104512 + 40}, {2, 1, 2*104512 + 40}} {
		pieceCPUs, cutForWorkers = c.cpus, false
		o := &Ops{workers: c.workers}
		m := c.m
		rows := make([]int32, m)
		for i := range rows {
			rows[i] = int32(i)
		}
		dy, x := randSlice(rng, depth*m), randSlice(rng, depth*width)
		want := randSlice(rng, m*width)
		got := slices.Clone(want)
		buf := make([]float32, m*width)
		o.MatMul(Buf(buf), Buf(dy), Buf(x), m, width, depth, true, false, 0.75, 0)
		o.ScatterAddRows(Buf(want), Buf(buf), rows, width)
		taken := o.MatMulScatter(Buf(got), Buf(dy), Buf(x), m, width, depth, true, false, 0.75, rows, nil, width)
		if !taken {
			o.MatMul(Buf(buf), Buf(dy), Buf(x), m, width, depth, true, false, 0.75, 0)
			o.ScatterAddRows(Buf(got), Buf(buf), rows, width)
		}
		if i := firstDiff(want, got); i >= 0 {
			t.Fatalf("%d rows of %d, %d deep, pieces for %d CPUs on %d workers (taken %v): element %d (row %d) is %v, scattered %v", m, width, depth, c.cpus, c.workers, taken, i, i/width, got[i], want[i])
		}
	}
}
