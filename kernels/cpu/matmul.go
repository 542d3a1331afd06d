package cpu

// sgemm, when a BLAS is built in (blas_openblas.go), does the products;
// lda, ldb and ldc are the row strides of A, B and C as stored.
var sgemm func(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc int)

// sgemmParts, where set, computes a product in parts sgemm calls over
// ranges of C's rows (or columns, cols) on threads of its own, the ranges
// Ops.parallel gives; false when it cannot, and the caller splits it.
var sgemmParts func(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc, parts int, cols bool) bool

// blasSmall is OpenBLAS's bound for its small-matrix kernels (0.3.21,
// SkylakeX: at most 100³ multiply-adds, M·N·K), whose sums round
// differently from its blocked kernels'. A part of a product split over
// the workers that fell under it while the whole did not changed the
// product's last bits with the number of workers (64×176×256 split in 5;
// TestMatMulWorkersBitExact).
const blasSmall = 100 * 100 * 100

// splitParts is the parts a product is split into along ext (its rows or
// columns; other is the other side, k the depth): one per worker, each at
// least 16 long, and each above blasSmall, so that every part takes the
// blocked kernels as the whole would.
func splitParts(ext, other, k, workers int) int {
	parts := min(workers, (ext+15)/16)
	for parts > 1 && float64(ext/parts)*float64(other)*float64(k) <= blasSmall {
		parts--
	}
	return max(parts, 1)
}

// sgemmSplit computes the product in parts single-threaded sgemm calls
// over ranges of C's rows, or of its columns (cols), the ranges
// Ops.parallel gives: on the thread pool where pool says so and it is
// free, else on goroutines.
func sgemmSplit(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, parts int, cols, pool bool) {
	lda, ldb, ldc := leading(m, n, k, ta, tb)
	if parts <= 1 {
		sgemm(c, a, b, m, n, k, ta, tb, alpha, beta, lda, ldb, ldc)
		return
	}
	if pool && sgemmParts != nil && sgemmParts(c, a, b, m, n, k, ta, tb, alpha, beta, lda, ldb, ldc, parts, cols) {
		return
	}
	if cols {
		goParallel(n, parts, func(lo, hi int) {
			boff := lo
			if tb {
				boff = lo * ldb
			}
			sgemm(c[lo:], a, b[boff:], m, hi-lo, k, ta, tb, alpha, beta, lda, ldb, ldc)
		})
		return
	}
	goParallel(m, parts, func(lo, hi int) {
		aoff := lo * lda
		if ta {
			aoff = lo
		}
		sgemm(c[lo*ldc:], a[aoff:], b, hi-lo, n, k, ta, tb, alpha, beta, lda, ldb, ldc)
	})
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
		// split the rows of C over the cores when it has at least as
		// many rows as columns or A comes transposed, else its columns;
		// each part is a single-threaded sgemm. Splitting the columns of
		// a wide product lets each worker pack only its half of B (the
		// weights, in a layer's forward and input-gradient products): at
		// B·T=256 rows, 256×3072×768 went from 211 to 227 GFLOP/s and the
		// LM head's 256×50304×768 from 227 to 275. The weight gradients
		// (A transposed, 256 deep) measured 5-10% faster split by rows
		// whatever their shape (BenchmarkMatMulSplit). With the parts
		// splitParts gives, the bits do not depend on the number of
		// workers (TestMatMulWorkersBitExact).
		cols := m < n && !ta
		ext, other := m, n
		if cols {
			ext, other = n, m
		}
		sgemmSplit(c, a, b, m, n, k, ta, tb, alpha, beta, splitParts(ext, other, k, o.workers), cols, true)
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
