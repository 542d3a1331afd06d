package cpu

import "runtime"

// sgemm, when a BLAS is built in (blas_openblas.go), does the products;
// lda, ldb and ldc are the row strides of A, B and C as stored.
var sgemm func(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc int)

// sgemmParts, where set, computes a product as sgemm calls over pieces of
// C's rows (or columns, cols), the pieces ranges of [0, ext) as goParallel
// gives them, on parts threads of its own, each taking a run of pieces;
// false when it cannot, and the caller splits it.
var sgemmParts func(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc, pieces, parts int, cols bool) bool

// blasSmall is OpenBLAS's bound for its small-matrix kernels (0.3.21,
// SkylakeX: at most 100³ multiply-adds, M·N·K), whose sums round
// differently from its blocked kernels'. A piece of a split product that
// fell under it while the whole did not would round as the whole does
// not (64×176×256 cut in 5; TestMatMulWorkersBitExact).
const blasSmall = 100 * 100 * 100

// splitParts is the pieces a product is cut into along ext (its rows or
// columns; other is the other side, k the depth) for cpus CPUs: one per
// CPU, each at least 16 long, and each above blasSmall, so that every
// piece takes the blocked kernels as the whole would.
func splitParts(ext, other, k, cpus int) int {
	parts := min(cpus, (ext+15)/16)
	for parts > 1 && float64(ext/parts)*float64(other)*float64(k) <= blasSmall {
		parts--
	}
	return max(parts, 1)
}

// pieceCPUs is the CPU count a product's pieces are cut for where the
// kernels' bits depend on the cut: the CPUs this process may use, fixed
// when it starts, never the number of workers. OpenBLAS's kernels for
// some cores (its Haswell ones, which it runs on AVX2 CPUs and where
// OPENBLAS_CORETYPE=Haswell says so) round a product cut into row or
// column ranges differently from the whole: an element's sum depends on
// where its row falls among the kernel's register blocks, and the blocks
// start again in each piece. So there the pieces are the same whatever
// the workers, and the workers share them (TestMatMulWorkersBitExact,
// TestStepBitsIndependentOfWorkers). A process given fewer CPUs than the
// machine has (GOMAXPROCS, a container's CPU limit) then runs more pieces
// than workers, at the cost of packing the shared operand once a piece.
var pieceCPUs = max(1, runtime.NumCPU())

// cutForWorkers says that the kernels give the whole product's bits for
// any cut, so a product is cut for the workers (set at start for
// OpenBLAS's SkylakeX and Cooperlake kernels; TestMatMulWorkersBitExact
// checks it).
var cutForWorkers bool

// sgemmSplit computes the product as pieces single-threaded sgemm calls
// over ranges of C's rows, or of its columns (cols), the ranges
// goParallel gives for pieces parts, on at most workers threads, each
// taking a run of pieces: on the thread pool where pool says so and it is
// free, else on goroutines. The pieces, not the workers, decide the bits.
func sgemmSplit(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, pieces, workers int, cols, pool bool) {
	lda, ldb, ldc := leading(m, n, k, ta, tb)
	ext := m
	if cols {
		ext = n
	}
	piece := func(q int) {
		lo, hi := ext*q/pieces, ext*(q+1)/pieces
		if hi <= lo {
			return
		}
		if cols {
			boff := lo
			if tb {
				boff = lo * ldb
			}
			sgemm(c[lo:], a, b[boff:], m, hi-lo, k, ta, tb, alpha, beta, lda, ldb, ldc)
			return
		}
		aoff := lo * lda
		if ta {
			aoff = lo
		}
		sgemm(c[lo*ldc:], a[aoff:], b, hi-lo, n, k, ta, tb, alpha, beta, lda, ldb, ldc)
	}
	workers = min(workers, pieces)
	if workers <= 1 {
		if pieces <= 1 {
			sgemm(c, a, b, m, n, k, ta, tb, alpha, beta, lda, ldb, ldc)
			return
		}
		for q := range pieces {
			piece(q)
		}
		return
	}
	if pool && sgemmParts != nil && sgemmParts(c, a, b, m, n, k, ta, tb, alpha, beta, lda, ldb, ldc, pieces, workers, cols) {
		return
	}
	goParallel(pieces, workers, func(lo, hi int) {
		for q := lo; q < hi; q++ {
			piece(q)
		}
	})
}

// cut is how matmul cuts a product over the cores: into pieces ranges
// along ext, C's rows, or its columns (cols) when C has fewer rows than
// columns and A is not transposed (other is the other side); each piece
// is a single-threaded sgemm. Splitting the columns of a wide product lets
// each worker pack only its half of B (the weights, in a layer's forward
// and input-gradient products): at B·T=256 rows, 256×3072×768 went from
// 211 to 227 GFLOP/s and the LM head's 256×50304×768 from 227 to 275. The
// weight gradients (A transposed, 256 deep) measured 5-10% faster split by
// rows whatever their shape (BenchmarkMatMulSplit). Where a cut can reach
// the bits, the pieces are cut for the machine's CPUs (pieceCPUs), not for
// the workers, so the bits do not depend on the number of workers
// (TestMatMulWorkersBitExact). The in-place sampled products take the
// same pieces (sampledSplit), so that their bits are matmul's.
func (o *Ops) cut(m, n, k int, ta bool) (pieces, ext, other int, cols bool) {
	cols = m < n && !ta
	ext, other = m, n
	if cols {
		ext, other = n, m
	}
	cpus := pieceCPUs
	if cutForWorkers {
		cpus = o.workers
	}
	return splitParts(ext, other, k, cpus), ext, other, cols
}

// leading returns the row strides of dense operands.
func leading(m, n, k int, ta, tb bool) (lda, ldb, ldc int) {
	lda, ldb, ldc = k, n, n
	if ta {
		lda = m
	}
	if tb {
		ldb = k
	}
	return
}

// matmul is the pure-Go matrix product: rows of C in parallel, the inner
// loops over contiguous memory (a dot product when B is transposed, an
// axpy of B's rows otherwise). It is the fallback and the reference; a
// BLAS build replaces it where it is faster.
func matmul(o *Ops, c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32) {
	if len(c) < m*n || len(a) < m*k || len(b) < k*n {
		panic("cpu: matmul operands smaller than their shapes")
	}
	if m == 0 || n == 0 {
		return
	}
	if sgemm != nil && k > 0 {
		pieces, _, _, cols := o.cut(m, n, k, ta)
		sgemmSplit(c, a, b, m, n, k, ta, tb, alpha, beta, pieces, o.workers, cols, true)
		return
	}
	o.parallel(m, 4, func(lo, hi int) {
		arow := make([]float32, k)
		for i := lo; i < hi; i++ {
			crow := c[i*n : (i+1)*n]
			if beta == 0 {
				clear(crow)
			} else if beta != 1 {
				for j := range crow {
					crow[j] *= beta
				}
			}
			if ta {
				for p := 0; p < k; p++ {
					arow[p] = a[p*m+i]
				}
			} else {
				copy(arow, a[i*k:(i+1)*k])
			}
			if tb {
				for j := 0; j < n; j++ {
					brow := b[j*k : (j+1)*k]
					var s float32
					for p, av := range arow {
						s += av * brow[p]
					}
					crow[j] += alpha * s
				}
				continue
			}
			for p, av := range arow {
				if av == 0 {
					continue
				}
				s := alpha * av
				brow := b[p*n : (p+1)*n]
				for j, bv := range brow {
					crow[j] += s * bv
				}
			}
		}
	})
}
