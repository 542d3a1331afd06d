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

#define __syncwarp() emu_barrier(2)
#define __align__(n) __attribute__((aligned(n)))

// bfloat16 as CUDA rounds it (cvt.rn.bf16.f32): to nearest, ties to even;
// every NaN becomes the canonical NaN 0x7fff.
struct __nv_bfloat16 {
	uint16_t x;
};

static inline __nv_bfloat16 __float2bfloat16(float f) {
	uint32_t u;
	memcpy(&u, &f, 4);
	__nv_bfloat16 b;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		b.x = 0x7fff;
		return b;
	}
	u += 0x7fffu + ((u >> 16) & 1);
	b.x = (uint16_t)(u >> 16);
	return b;
}

static inline float __bfloat162float(__nv_bfloat16 b) {
	uint32_t u = (uint32_t)b.x << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline float emu_float(float f) { return f; }
static inline float emu_float(__nv_bfloat16 b) { return __bfloat162float(b); }

// The wmma API without its fragment layouts: every lane's fragment holds
// the whole tile, so a kernel that relies on a layout (indexes x[]) does
// not compile here. Loads read the whole tile in every lane; a store
// writes only the lane's share of the elements (every 32nd), so a missing
// __syncwarp between a store and the reads of other lanes shows up when
// the emulator runs the threads out of order.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct emu_shape;
template <int M, int N, int K> struct emu_shape<matrix_a, M, N, K> {
	enum { rows = M, cols = K };
};
template <int M, int N, int K> struct emu_shape<matrix_b, M, N, K> {
	enum { rows = K, cols = N };
};
template <int M, int N, int K> struct emu_shape<accumulator, M, N, K> {
	enum { rows = M, cols = N };
};

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
	enum { rows = emu_shape<Use, M, N, K>::rows, cols = emu_shape<Use, M, N, K>::cols };
	float tile[rows * cols]; // row-major, values of T
};

template <class Use, int M, int N, int K, class T, class L>
static inline void fill_fragment(fragment<Use, M, N, K, T, L> &f, float v) {
	for (int i = 0; i < f.rows * f.cols; i++) f.tile[i] = v;
}

template <class Use, int M, int N, int K, class T>
static inline void emu_load(fragment<Use, M, N, K, T, row_major> &f, const T *p, unsigned ld) {
	for (int i = 0; i < f.rows; i++)
		for (int j = 0; j < f.cols; j++) f.tile[i * f.cols + j] = emu_float(p[(long)i * ld + j]);
}

template <class Use, int M, int N, int K, class T>
static inline void emu_load(fragment<Use, M, N, K, T, col_major> &f, const T *p, unsigned ld) {
	for (int i = 0; i < f.rows; i++)
		for (int j = 0; j < f.cols; j++) f.tile[i * f.cols + j] = emu_float(p[i + (long)j * ld]);
}

template <class Use, int M, int N, int K, class T, class L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ld) {
	emu_load(f, p, ld);
}

template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const float *p, unsigned ld, layout_t l) {
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) f.tile[i * N + j] = l == mem_row_major ? p[(long)i * ld + j] : p[i + (long)j * ld];
}

static inline int emu_lane() {
	return (int)((threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31);
}

template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float> &f, unsigned ld, layout_t l) {
	for (int e = emu_lane(); e < M * N; e += 32) {
		int i = e / N, j = e % N;
		(l == mem_row_major ? p[(long)i * ld + j] : p[i + (long)j * ld]) = f.tile[e];
	}
}

// d = a·b + c, the products exact and summed in fp32 (tensor cores sum in
// an order of their own: results agree to fp32 rounding).
template <int M, int N, int K, class T, class LA, class LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
	const fragment<matrix_b, M, N, K, T, LB> &b, const fragment<accumulator, M, N, K, float> &c) {
	float r[M * N];
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			float s = c.tile[i * N + j];
			for (int k = 0; k < K; k++) s += a.tile[i * K + k] * b.tile[k * N + j];
			r[i * N + j] = s;
		}
	memcpy(d.tile, r, sizeof r);
}
} // namespace wmma
} // namespace nvcuda

static inline float atomicAdd(float *p, float v) {
	float o = *p;
	*p = o + v;
	return o;
}

#endif
