package cpu

// sgemm, when a BLAS is built in (blas_openblas.go), does the products;
// lda, ldb and ldc are the row strides of A, B and C as stored.
var sgemm func(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc int)

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
		lda, ldb, ldc := leading(m, n, k, ta, tb)
		// split the rows of C (or, when they are few, the columns) over
		// the cores; each part is a single-threaded sgemm
		if m >= n || m >= 64*o.workers {
			o.parallel(m, 16, func(lo, hi int) {
				aoff := lo * lda
				if ta {
					aoff = lo
				}
				sgemm(c[lo*ldc:], a[aoff:], b, hi-lo, n, k, ta, tb, alpha, beta, lda, ldb, ldc)
			})
		} else {
			o.parallel(n, 16, func(lo, hi int) {
				boff := lo
				if tb {
					boff = lo * ldb
				}
				sgemm(c[lo:], a, b[boff:], m, hi-lo, k, ta, tb, alpha, beta, lda, ldb, ldc)
			})
		}
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
