// emu_api.h: the emulator's entry points, called from emu.go.
#ifndef ESTKIT_EMU_API_H
#define ESTKIT_EMU_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int emu_launch(const char *name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, const uint64_t *args, char *err, int errlen);
// emu_set_order: threads run in index order (0), in reverse (1), or
// shuffled from seed (2) between barriers.
void emu_set_order(int mode, uint64_t seed);
void emu_gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, int round_bf16, int ab_bf16, int c_bf16);

#ifdef __cplusplus
}
#endif

#endif
