//go:build openblas && cgo

package cpu

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
void openblas_set_num_threads(int);
*/
import "C"

// With -tags openblas (make build, make test), matrix products go through
// OpenBLAS's sgemm: measured here at 70-80 GFLOP/s per core against a few
// for the pure-Go loops, which remain the build without the library.
//
// OpenBLAS runs single-threaded here and the Go side splits each product
// across the cores: OpenBLAS's own idle threads spin (sched_yield) between
// calls and took most of a core from the Go kernels around them.
func init() {
	C.openblas_set_num_threads(1)
	sgemm = openblasSgemm
}

func openblasSgemm(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	transA, transB := C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans), C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans)
	if ta {
		transA = C.CblasTrans
	}
	if tb {
		transB = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, transA, transB, C.blasint(m), C.blasint(n), C.blasint(k), C.float(alpha),
		(*C.float)(&a[0]), C.blasint(lda), (*C.float)(&b[0]), C.blasint(ldb), C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}

// BLAS names the matrix product library in use.
const BLAS = "openblas"
