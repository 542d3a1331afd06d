// emu.h: enough of CUDA C for kernels.cu to compile as C++ and run on the
// CPU, one block at a time, each GPU thread a coroutine (ucontext). The
// scheduler gives __syncthreads and the warp shuffles their GPU semantics:
// a block barrier waits for every live thread of the block, a shuffle for
// every live thread of the warp, and a thread that reaches one kind of
// barrier while its peers wait at the other is reported as divergence, as
// is a deadlock. Atomics are plain (one block runs at a time, on one OS
// thread). It exists so that the kernels are tested on every machine, not
// only where a GPU is lent.
#ifndef ESTKIT_EMU_H
#define ESTKIT_EMU_H

#define ESTKIT_EMU 1

#include <math.h>
#include <stdint.h>
#include <string.h>

struct dim3 {
	unsigned x, y, z;
};

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)

void emu_barrier(int kind);
uint64_t emu_exchange(uint64_t v, int lane_mask);

#define __syncthreads() emu_barrier(1)

// __shfl_xor_sync of any value of up to 8 bytes (float, double).
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int m) {
	static_assert(sizeof(T) <= 8, "shuffles move up to 8 bytes");
	uint64_t u = 0;
	memcpy(&u, &v, sizeof v);
	u = emu_exchange(u, m);
	T r;
	memcpy(&r, &u, sizeof r);
	return r;
}

static inline float atomicAdd(float *p, float v) {
	float o = *p;
	*p = o + v;
	return o;
}

#endif
