//go:build cuda

// The cuBLAS shim: dlopen of libcublas (the soname of CUDA 13, 12 or 11,
// or a path the user names), then cublasGemmEx through a function pointer.
// Linking libcublas at build time (as gorgonia.org/cu/blas does) would tie
// the binary to the one major version it was built against; the handful of
// cuBLAS types and enums used here have kept their values from 11 to 13.

#include "cublas_shim.h"

#include <dlfcn.h>
#include <stdio.h>

#include <cublas_v2.h> // types and enums only: nothing of cuBLAS is linked

typedef cublasStatus_t (*create_fn)(cublasHandle_t *);
typedef cublasStatus_t (*gemmex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *, const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
typedef const char *(*status_fn)(cublasStatus_t);

static cublasHandle_t handle;
static gemmex_fn gemmex;
static status_fn status_string;

int estk_cublas_open(const char *path, char *which, int wlen, char *err, int elen) {
	static const char *names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"};
	static char opened[256];
	if (handle) { // one handle per process, whatever the number of backends
		snprintf(which, wlen, "%s", opened);
		return 0;
	}
	void *lib = NULL;
	const char *tried = NULL;
	if (path && *path) {
		lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		tried = path;
	}
	for (unsigned i = 0; !lib && !(path && *path) && i < sizeof(names) / sizeof(names[0]); i++) {
		lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
		tried = names[i];
	}
	if (!lib) {
		snprintf(err, elen, "cannot load cuBLAS (%s): %s", path && *path ? path : "libcublas.so.13, .12, .11 or libcublas.so", dlerror());
		return 1;
	}
	snprintf(which, wlen, "%s", tried);
	create_fn create = (create_fn)dlsym(lib, "cublasCreate_v2");
	gemmex = (gemmex_fn)dlsym(lib, "cublasGemmEx");
	status_string = (status_fn)dlsym(lib, "cublasGetStatusString");
	if (!create || !gemmex) {
		snprintf(err, elen, "%s lacks cublasCreate_v2 or cublasGemmEx", tried);
		dlclose(lib);
		return 1;
	}
	cublasStatus_t st = create(&handle);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, elen, "cublasCreate: status %d", (int)st);
		handle = NULL;
		dlclose(lib);
		return 1;
	}
	snprintf(opened, sizeof(opened), "%s", tried);
	return 0;
}

// estk_cublas_gemm: A and B in fp32 (rounded to bf16 by the tensor cores
// when round) or in bf16 (ab_bf16), C in fp32 or, with bf16 A and B, in
// bf16 (c_bf16); fp32 accumulation throughout (GemmEx's supported types).
int estk_cublas_gemm(int ta, int tb, int m, int n, int k, float alpha, uintptr_t a, int lda, uintptr_t b, int ldb, float beta, uintptr_t c, int ldc, int round, int ab_bf16, int c_bf16, char *err, int elen) {
	cudaDataType ab = ab_bf16 ? CUDA_R_16BF : CUDA_R_32F, ct = c_bf16 ? CUDA_R_16BF : CUDA_R_32F;
	cublasStatus_t st = gemmex(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
		&alpha, (const void *)a, ab, lda, (const void *)b, ab, ldb,
		&beta, (void *)c, ct, ldc,
		round && !ab_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, elen, "cublasGemmEx: %s (status %d)", status_string ? status_string(st) : "error", (int)st);
		return 1;
	}
	return 0;
}
