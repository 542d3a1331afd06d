// cublas_shim.h: the matrix product through whichever cuBLAS the machine
// has, loaded at run time (see cublas_shim.c).
#ifndef ESTKIT_CUBLAS_SHIM_H
#define ESTKIT_CUBLAS_SHIM_H

#include <stdint.h>

int estk_cublas_open(const char *path, char *which, int wlen, char *err, int elen);
int estk_cublas_gemm(int ta, int tb, int m, int n, int k, float alpha, uintptr_t a, int lda, uintptr_t b, int ldb, float beta, uintptr_t c, int ldc, int round, int ab_bf16, int c_bf16, char *err, int elen);

#endif
