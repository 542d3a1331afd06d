// estkit's CUDA kernels: every op of kernels.Ops but the matrix product
// (cuBLAS), computing in fp32, and attention also with bf16 products on
// the tensor cores. `make cuda-ptx` compiles this file to kernels.ptx,
// which the cuda build embeds; the cudaemu build compiles the same source
// as C++ under emu.h, so that these kernels run and are tested on machines
// without a GPU.
//
// Storage: a kernel's body is a template over the type its activations
// are stored in (float or bf16_t, kernels.BF16Storage's rules), reading
// through ld() and writing through st(), which compute in fp32 and round
// what they store; each type a kernel is built for is an extern "C"
// wrapper, named for its types: no suffix for fp32 throughout, _b for
// bf16 activations, and one letter per tensor (f or b) where two tensors
// vary apart (convert_bf: a bf16 dst from an fp32 src). The emulator's
// bf16_t has no arithmetic, so a load or store that skips ld or st fails
// to compile there.
//
// Conventions: every kernel is extern "C" with scalar arguments of int,
// long, float or pointers (the launch table of the emulator is generated
// from these signatures, one per line); sizes of whole tensors are long,
// sizes of rows and columns int. A backward kernel adds (+=) into its
// gradients, as kernels.Ops says. Warp shuffles and __syncthreads are
// reached by every thread of a warp (of a block) the same number of times.

#ifndef ESTKIT_EMU
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

using namespace nvcuda;

#define FULL 0xffffffffu

typedef __nv_bfloat16 bf16_t;

// ld reads a stored value as fp32; st stores an fp32 value, rounded to
// the storage's type (to nearest, ties to even).
__device__ __forceinline__ float ld(float v) { return v; }
__device__ __forceinline__ float ld(bf16_t v) { return __bfloat162float(v); }
__device__ __forceinline__ void st(float &p, float v) { p = v; }
__device__ __forceinline__ void st(bf16_t &p, float v) { p = __float2bfloat16(v); }

struct Add {
	template <class T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

struct Max {
	__device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// warp_reduce returns to every lane op over the warp's values.
template <class T, class Op> __device__ __forceinline__ T warp_reduce(T v, Op op) {
	for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL, v, o));
	return v;
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce(v, Add()); }

// block_reduce returns to every thread op over the block's values
// (blockDim.x a multiple of 32; identity is op's identity); sh holds 32
// values. Its first barrier lets a block reuse sh from one reduction to
// the next.
template <class T, class Op> __device__ T block_reduce(T v, T *sh, Op op, T identity) {
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
	v = warp_reduce(v, op);
	__syncthreads();
	if (lane == 0) sh[w] = v;
	__syncthreads();
	return warp_reduce(lane < nw ? sh[lane] : identity, op);
}

// exp(x) for x ≤ 0 in fp32 (the softmaxes only take exp of x − max).
__device__ __forceinline__ float exp_neg(float x) { return expf(x); }

#define GRID_STRIDE(i, n) \
	for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long)blockDim.x * gridDim.x)

// ---- memory and elementwise ----

template <class A> __device__ __forceinline__ void fill_t(A *x, float v, long n) {
	GRID_STRIDE(i, n) st(x[i], v);
}
extern "C" __global__ void fill(float *x, float v, long n) { fill_t(x, v, n); }
extern "C" __global__ void fill_b(bf16_t *x, float v, long n) { fill_t(x, v, n); }

// convert: Copy between the two types (fp32 to fp32 and bf16 to bf16 are
// plain copies of memory).
template <class D, class S> __device__ __forceinline__ void convert_t(D *dst, const S *src, long n) {
	GRID_STRIDE(i, n) st(dst[i], ld(src[i]));
}
extern "C" __global__ void convert_bf(bf16_t *dst, const float *src, long n) { convert_t(dst, src, n); }
extern "C" __global__ void convert_fb(float *dst, const bf16_t *src, long n) { convert_t(dst, src, n); }

template <class Y, class X> __device__ __forceinline__ void axpy_t(Y *y, float a, const X *x, long n) {
	GRID_STRIDE(i, n) st(y[i], ld(y[i]) + a * ld(x[i]));
}
extern "C" __global__ void axpy(float *y, float a, const float *x, long n) { axpy_t(y, a, x, n); }
extern "C" __global__ void axpy_bb(bf16_t *y, float a, const bf16_t *x, long n) { axpy_t(y, a, x, n); }
extern "C" __global__ void axpy_fb(float *y, float a, const bf16_t *x, long n) { axpy_t(y, a, x, n); }
extern "C" __global__ void axpy_bf(bf16_t *y, float a, const float *x, long n) { axpy_t(y, a, x, n); }

// sum_squares writes one partial sum per block into part[blockIdx.x]
// (blockDim.x = 256); the host adds the parts in float64.
template <class A> __device__ __forceinline__ void sum_squares_t(double *part, const A *x, long n) {
	__shared__ double sh[32];
	double s = 0;
	GRID_STRIDE(i, n) {
		double v = ld(x[i]);
		s += v * v;
	}
	s = block_reduce(s, sh, Add(), 0.0);
	if (threadIdx.x == 0) part[blockIdx.x] = s;
}
extern "C" __global__ void sum_squares(double *part, const float *x, long n) { sum_squares_t(part, x, n); }
extern "C" __global__ void sum_squares_b(double *part, const bf16_t *x, long n) { sum_squares_t(part, x, n); }

template <class A> __device__ __forceinline__ void add_bias_t(A *y, const float *b, long rows, int cols) {
	GRID_STRIDE(i, rows * cols) st(y[i], ld(y[i]) + b[i % cols]);
}
extern "C" __global__ void add_bias(float *y, const float *b, long rows, int cols) { add_bias_t(y, b, rows, cols); }
extern "C" __global__ void add_bias_b(bf16_t *y, const float *b, long rows, int cols) { add_bias_t(y, b, rows, cols); }

// col_sums: dst[c] += Σ_r a[r,c] (and dst2[c] += Σ_r a[r,c]·b[r,c]·s[r]
// when dst2 is set, s[r] multiplying (b[r,c] − m[r]) when m is set):
// the column reductions of the bias, LayerNorm and RMSNorm gradients.
// Block (32, 8): 32 columns, 8 row lanes, reduced through shared memory.
template <class A> __device__ __forceinline__ void col_sums_t(float *dst, float *dst2, const A *a, const A *b, const float *m, const float *s, int rows, int cols) {
	__shared__ float sh1[8][33], sh2[8][33];
	int c = blockIdx.x * 32 + threadIdx.x;
	float s1 = 0, s2 = 0;
	if (c < cols) {
		for (int r = threadIdx.y; r < rows; r += 8) {
			float g = ld(a[(long)r * cols + c]);
			s1 += g;
			if (dst2) {
				float x = ld(b[(long)r * cols + c]);
				if (m) x -= m[r];
				s2 += g * x * s[r];
			}
		}
	}
	sh1[threadIdx.y][threadIdx.x] = s1;
	sh2[threadIdx.y][threadIdx.x] = s2;
	__syncthreads();
	if (threadIdx.y == 0 && c < cols) {
		float t1 = 0, t2 = 0;
		for (int k = 0; k < 8; k++) {
			t1 += sh1[k][threadIdx.x];
			t2 += sh2[k][threadIdx.x];
		}
		if (dst) dst[c] += t1;
		if (dst2) dst2[c] += t2;
	}
}
extern "C" __global__ void __launch_bounds__(256) col_sums(float *dst, float *dst2, const float *a, const float *b, const float *m, const float *s, int rows, int cols) { col_sums_t(dst, dst2, a, b, m, s, rows, cols); }
extern "C" __global__ void __launch_bounds__(256) col_sums_b(float *dst, float *dst2, const bf16_t *a, const bf16_t *b, const float *m, const float *s, int rows, int cols) { col_sums_t(dst, dst2, a, b, m, s, rows, cols); }

// ---- embedding ----

template <class A> __device__ __forceinline__ void embed_t(A *out, const float *wte, const float *wpe, const int *ids, int B, int T, int C) {
	GRID_STRIDE(i, (long)B * T * C) {
		long bt = i / C;
		int c = i % C, t = bt % T;
		st(out[i], wte[(long)ids[bt] * C + c] + wpe[(long)t * C + c]);
	}
}
extern "C" __global__ void embed(float *out, const float *wte, const float *wpe, const int *ids, int B, int T, int C) { embed_t(out, wte, wpe, ids, B, T, C); }
extern "C" __global__ void embed_b(bf16_t *out, const float *wte, const float *wpe, const int *ids, int B, int T, int C) { embed_t(out, wte, wpe, ids, B, T, C); }

// embed_backward_wte: rows of dout added into the rows of dwte the ids
// name; ids repeat, hence the atomics.
template <class A> __device__ __forceinline__ void embed_backward_wte_t(float *dwte, const A *dout, const int *ids, long BT, int C) {
	GRID_STRIDE(i, BT * C) {
		long bt = i / C;
		atomicAdd(&dwte[(long)ids[bt] * C + i % C], ld(dout[i]));
	}
}
extern "C" __global__ void embed_backward_wte(float *dwte, const float *dout, const int *ids, long BT, int C) { embed_backward_wte_t(dwte, dout, ids, BT, C); }
extern "C" __global__ void embed_backward_wte_b(float *dwte, const bf16_t *dout, const int *ids, long BT, int C) { embed_backward_wte_t(dwte, dout, ids, BT, C); }

template <class A> __device__ __forceinline__ void embed_backward_wpe_t(float *dwpe, const A *dout, int B, int T, int C) {
	GRID_STRIDE(i, (long)T * C) {
		float s = 0;
		for (int b = 0; b < B; b++) s += ld(dout[(long)b * T * C + i]);
		dwpe[i] += s;
	}
}
extern "C" __global__ void embed_backward_wpe(float *dwpe, const float *dout, int B, int T, int C) { embed_backward_wpe_t(dwpe, dout, B, T, C); }
extern "C" __global__ void embed_backward_wpe_b(float *dwpe, const bf16_t *dout, int B, int T, int C) { embed_backward_wpe_t(dwpe, dout, B, T, C); }

// ---- LayerNorm and RMSNorm: a warp per row, blocks of 4 warps ----

#define ROW_OF_WARP() \
	long row = (long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); \
	int lane = threadIdx.x & 31;

template <class A> __device__ __forceinline__ void layernorm_t(A *out, float *mean, float *rstd, const A *x, const float *w, const float *b, int rows, int C) {
	ROW_OF_WARP();
	if (row >= rows) return;
	const A *xr = x + row * C;
	float s = 0;
	for (int i = lane; i < C; i += 32) s += ld(xr[i]);
	float m = warp_sum(s) / C;
	float v = 0;
	for (int i = lane; i < C; i += 32) {
		float d = ld(xr[i]) - m;
		v += d * d;
	}
	v = warp_sum(v) / C;
	float r = (float)(1.0 / sqrt((double)(v + 1e-5f)));
	A *o = out + row * C;
	for (int i = lane; i < C; i += 32) st(o[i], (ld(xr[i]) - m) * r * w[i] + b[i]);
	if (lane == 0) {
		mean[row] = m;
		rstd[row] = r;
	}
}
extern "C" __global__ void layernorm(float *out, float *mean, float *rstd, const float *x, const float *w, const float *b, int rows, int C) { layernorm_t(out, mean, rstd, x, w, b, rows, C); }
extern "C" __global__ void layernorm_b(bf16_t *out, float *mean, float *rstd, const bf16_t *x, const float *w, const float *b, int rows, int C) { layernorm_t(out, mean, rstd, x, w, b, rows, C); }

template <class A> __device__ __forceinline__ void layernorm_backward_t(A *dx, const A *dout, const A *x, const float *w, const float *mean, const float *rstd, int rows, int C) {
	ROW_OF_WARP();
	if (row >= rows) return;
	const A *xr = x + row * C, *g = dout + row * C;
	float m = mean[row], r = rstd[row];
	float a = 0, an = 0;
	for (int i = lane; i < C; i += 32) {
		float n = (ld(xr[i]) - m) * r, d = w[i] * ld(g[i]);
		a += d;
		an += d * n;
	}
	a = warp_sum(a) / C;
	an = warp_sum(an) / C;
	A *d = dx + row * C;
	for (int i = lane; i < C; i += 32) {
		float n = (ld(xr[i]) - m) * r;
		st(d[i], ld(d[i]) + (w[i] * ld(g[i]) - a - n * an) * r);
	}
}
extern "C" __global__ void layernorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *mean, const float *rstd, int rows, int C) { layernorm_backward_t(dx, dout, x, w, mean, rstd, rows, C); }
extern "C" __global__ void layernorm_backward_b(bf16_t *dx, const bf16_t *dout, const bf16_t *x, const float *w, const float *mean, const float *rstd, int rows, int C) { layernorm_backward_t(dx, dout, x, w, mean, rstd, rows, C); }

template <class A> __device__ __forceinline__ void rmsnorm_t(A *out, float *rstd, const A *x, const float *w, int rows, int C, float eps) {
	ROW_OF_WARP();
	if (row >= rows) return;
	const A *xr = x + row * C;
	double ss = 0;
	for (int i = lane; i < C; i += 32) {
		double v = ld(xr[i]);
		ss += v * v;
	}
	ss = warp_reduce(ss, Add());
	float r = (float)(1.0 / sqrt(ss / C + (double)eps));
	A *o = out + row * C;
	for (int i = lane; i < C; i += 32) st(o[i], w[i] * (ld(xr[i]) * r));
	if (lane == 0) rstd[row] = r;
}
extern "C" __global__ void rmsnorm(float *out, float *rstd, const float *x, const float *w, int rows, int C, float eps) { rmsnorm_t(out, rstd, x, w, rows, C, eps); }
extern "C" __global__ void rmsnorm_b(bf16_t *out, float *rstd, const bf16_t *x, const float *w, int rows, int C, float eps) { rmsnorm_t(out, rstd, x, w, rows, C, eps); }

template <class A> __device__ __forceinline__ void rmsnorm_backward_t(A *dx, const A *dout, const A *x, const float *w, const float *rstd, int rows, int C) {
	ROW_OF_WARP();
	if (row >= rows) return;
	const A *xr = x + row * C, *g = dout + row * C;
	float r = rstd[row], dot = 0;
	for (int i = lane; i < C; i += 32) dot += ld(g[i]) * w[i] * (ld(xr[i]) * r);
	dot = warp_sum(dot) / C;
	A *d = dx + row * C;
	for (int i = lane; i < C; i += 32) st(d[i], ld(d[i]) + r * (ld(g[i]) * w[i] - ld(xr[i]) * r * dot));
}
extern "C" __global__ void rmsnorm_backward(float *dx, const float *dout, const float *x, const float *w, const float *rstd, int rows, int C) { rmsnorm_backward_t(dx, dout, x, w, rstd, rows, C); }
extern "C" __global__ void rmsnorm_backward_b(bf16_t *dx, const bf16_t *dout, const bf16_t *x, const float *w, const float *rstd, int rows, int C) { rmsnorm_backward_t(dx, dout, x, w, rstd, rows, C); }

// ---- activations ----

#define GELU_SCALE 0.7978845608028654f

template <class A> __device__ __forceinline__ void gelu_t(A *out, const A *x, long n) {
	GRID_STRIDE(i, n) {
		float v = ld(x[i]), u = GELU_SCALE * (v + 0.044715f * v * v * v);
		st(out[i], 0.5f * v * (1.f + tanhf(u)));
	}
}
extern "C" __global__ void gelu(float *out, const float *x, long n) { gelu_t(out, x, n); }
extern "C" __global__ void gelu_b(bf16_t *out, const bf16_t *x, long n) { gelu_t(out, x, n); }

template <class A> __device__ __forceinline__ void gelu_backward_t(A *dx, const A *x, const A *dout, long n) {
	GRID_STRIDE(i, n) {
		float v = ld(x[i]), u = GELU_SCALE * (v + 0.044715f * v * v * v), th = tanhf(u);
		float du = GELU_SCALE * (1.f + 3.f * 0.044715f * v * v);
		st(dx[i], ld(dx[i]) + ld(dout[i]) * (0.5f * (1.f + th) + 0.5f * v * (1.f - th * th) * du));
	}
}
extern "C" __global__ void gelu_backward(float *dx, const float *x, const float *dout, long n) { gelu_backward_t(dx, x, dout, n); }
extern "C" __global__ void gelu_backward_b(bf16_t *dx, const bf16_t *x, const bf16_t *dout, long n) { gelu_backward_t(dx, x, dout, n); }

__device__ __forceinline__ float sigmoidf(float x) {
	if (x >= 0) return 1.f / (1.f + expf(-x));
	float e = expf(x);
	return e / (1.f + e);
}

template <class A> __device__ __forceinline__ void swiglu_t(A *out, const A *h, long rows, int F) {
	GRID_STRIDE(i, rows * F) {
		long r = i / F;
		int j = i % F;
		float g = ld(h[r * 2 * F + j]);
		st(out[i], g * sigmoidf(g) * ld(h[r * 2 * F + F + j]));
	}
}
extern "C" __global__ void swiglu(float *out, const float *h, long rows, int F) { swiglu_t(out, h, rows, F); }
extern "C" __global__ void swiglu_b(bf16_t *out, const bf16_t *h, long rows, int F) { swiglu_t(out, h, rows, F); }

template <class A> __device__ __forceinline__ void swiglu_backward_t(A *dh, const A *h, const A *dout, long rows, int F) {
	GRID_STRIDE(i, rows * F) {
		long r = i / F;
		int j = i % F;
		float x = ld(h[r * 2 * F + j]), up = ld(h[r * 2 * F + F + j]), s = sigmoidf(x), g = ld(dout[i]);
		A &dg = dh[r * 2 * F + j], &du = dh[r * 2 * F + F + j];
		st(dg, ld(dg) + g * up * s * (1.f + x * (1.f - s)));
		st(du, ld(du) + g * x * s);
	}
}
extern "C" __global__ void swiglu_backward(float *dh, const float *h, const float *dout, long rows, int F) { swiglu_backward_t(dh, h, dout, rows, F); }
extern "C" __global__ void swiglu_backward_b(bf16_t *dh, const bf16_t *h, const bf16_t *dout, long rows, int F) { swiglu_backward_t(dh, h, dout, rows, F); }

// rope rotates pairs (i, i+HS/2) of each head by t·inv_freq[i]; inv_freq
// comes from the host, computed as the CPU backend computes it, and the
// angle's cosine and sine in double, so both backends rotate alike.
template <class A> __device__ __forceinline__ void rope_t(A *x, const float *inv_freq, int B, int T, int heads, int HS, int width, int off, int inverse) {
	int half = HS / 2;
	GRID_STRIDE(i, (long)B * T * heads * half) {
		int k = i % half;
		long p = i / half;
		int h = p % heads;
		long bt = p / heads;
		int t = bt % T;
		double a = (double)((float)t * inv_freq[k]);
		float c = (float)cos(a), s = (float)sin(a);
		if (inverse) s = -s;
		A *v = x + bt * width + off + h * HS;
		float x0 = ld(v[k]), x1 = ld(v[k + half]);
		st(v[k], x0 * c - x1 * s);
		st(v[k + half], x1 * c + x0 * s);
	}
}
extern "C" __global__ void rope(float *x, const float *inv_freq, int B, int T, int heads, int HS, int width, int off, int inverse) { rope_t(x, inv_freq, B, T, heads, HS, width, off, inverse); }
extern "C" __global__ void rope_b(bf16_t *x, const float *inv_freq, int B, int T, int heads, int HS, int width, int off, int inverse) { rope_t(x, inv_freq, B, T, heads, HS, width, off, inverse); }

// ---- attention, flash style: no T×T matrix is stored ----
//
// One warp per query row (b, h, t); lane l holds dimensions l, l+32, l+64
// and l+96 of the head (HS ≤ 128). The forward pass streams the keys and
// values 0..t with an online softmax and keeps lse = max + log Σexp per
// row in state[0 : B·NH·T]; the backward pass puts D = dout·out per row in
// state[B·NH·T : 2·B·NH·T], then one kernel adds dq per query row and
// another dk and dv per key row, recomputing the probabilities from lse.

#define MAXD 4

template <class A> __device__ __forceinline__ void load_head(float *r, const A *src, int HS, int lane) {
#pragma unroll
	for (int d = 0; d < MAXD; d++) {
		int i = lane + 32 * d;
		r[d] = i < HS ? ld(src[i]) : 0.f;
	}
}

template <class A> __device__ __forceinline__ float dot_head(const float *r, const A *src, int HS, int lane) {
	float s = 0;
#pragma unroll
	for (int d = 0; d < MAXD; d++) {
		int i = lane + 32 * d;
		if (i < HS) s += r[d] * ld(src[i]);
	}
	return warp_sum(s);
}

template <class A> __device__ __forceinline__ void attention_t(A *out, float *state, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	ROW_OF_WARP();
	if (row >= (long)B * NH * T) return;
	int t = row % T, h = (row / T) % NH, b = row / ((long)T * NH);
	int W = (NH + 2 * NKV) * HS, g = h / (NH / NKV);
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	float q[MAXD], acc[MAXD];
	load_head(q, base + (long)t * W + h * HS, HS, lane);
#pragma unroll
	for (int d = 0; d < MAXD; d++) acc[d] = 0;
	float m = -INFINITY, l = 0;
	for (int j = 0; j <= t; j++) {
		const A *kv = base + (long)j * W + NH * HS;
		float s = dot_head(q, kv + g * HS, HS, lane) * scale;
		float mn = fmaxf(m, s), c = exp_neg(m - mn), p = exp_neg(s - mn);
		l = l * c + p;
		const A *v = kv + NKV * HS + g * HS;
#pragma unroll
		for (int d = 0; d < MAXD; d++) {
			int i = lane + 32 * d;
			acc[d] = acc[d] * c + (i < HS ? p * ld(v[i]) : 0.f);
		}
		m = mn;
	}
	A *o = out + ((long)b * T + t) * NH * HS + h * HS;
#pragma unroll
	for (int d = 0; d < MAXD; d++) {
		int i = lane + 32 * d;
		if (i < HS) st(o[i], acc[d] / l);
	}
	if (lane == 0) state[row] = m + logf(l);
}
extern "C" __global__ void attention(float *out, float *state, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_t(out, state, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void attention_b(bf16_t *out, float *state, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_t(out, state, qkv, B, T, NH, NKV, HS); }

// ---- attention with bf16 products on the tensor cores (sm_80 and later) ----
//
// The same attention, forward and backward, with q, k, v, dout and the
// probabilities rounded to bfloat16 for 16×16×16 wmma products, and fp32
// accumulation, softmax and statistics. Tiles pass through shared memory:
// the softmax and the masks run on fp32 tiles there, two lanes or one lane
// per element, so the kernels depend on no fragment layout (the emulator's
// wmma keeps whole tiles). The forward pass writes the same lse as the fp32
// kernel, so either backward pass follows either forward pass.

#define ABF_Q 32  // query rows per block of the forward pass
#define ABF_K 32  // keys per tile
#define ABF_D 128 // largest head size: the row stride of the head tiles
#define ABF_WARPS (ABF_Q / 16)

typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> abf_acc;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> abf_a;
template <bool BT> struct abf_layout {
	typedef wmma::row_major b;
};
template <> struct abf_layout<true> {
	typedef wmma::col_major b;
};

// abf_tile fills rows×HP elements of dst (row stride ABF_D) with rows
// r0.. of src (row stride W) in bfloat16, zero past row T and column HS.
template <class A> __device__ __forceinline__ void abf_tile(__nv_bfloat16 *dst, const A *src, long W, int r0, int rows, int T, int HS, int HP, int tid, int nt) {
	for (int i = tid; i < rows * HP; i += nt) {
		int r = i / HP, d = i % HP, t = r0 + r;
		dst[r * ABF_D + d] = __float2bfloat16(t < T && d < HS ? ld(src[(long)t * W + d]) : 0.f);
	}
}

// abf_mm: one warp's C[16×N] = (C +) A[16×K]·B[K×N], A row-major (lda), B
// row-major (ldb) or, when BT, the transpose of a row-major N×K matrix; C
// fp32 row-major in shared memory (ldc). N and K are multiples of 16. The
// caller has synchronised the warp since C, A and B were written; abf_mm
// does after its stores.
template <bool BT>
__device__ void abf_mm(float *c, int ldc, const __nv_bfloat16 *a, int lda, const __nv_bfloat16 *b, int ldb, int N, int K, bool add) {
	for (int n = 0; n < N; n += 16) {
		abf_acc f;
		if (add)
			wmma::load_matrix_sync(f, c + n, ldc, wmma::mem_row_major);
		else
			wmma::fill_fragment(f, 0.f);
		for (int k = 0; k < K; k += 16) {
			abf_a fa;
			wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, typename abf_layout<BT>::b> fb;
			wmma::load_matrix_sync(fa, a + k, lda);
			wmma::load_matrix_sync(fb, BT ? b + (long)n * ldb + k : b + (long)k * ldb + n, ldb);
			wmma::mma_sync(f, fa, fb, f);
		}
		wmma::store_matrix_sync(c + n, f, ldc, wmma::mem_row_major);
	}
	__syncwarp();
}

// attention_tc: a block of two warps takes 32 query rows of one (b, h),
// 16 per warp, and streams the keys and values 0..last in tiles of 32;
// the online softmax runs on S in shared memory, two lanes per row, and
// rescales O there. Launch: grid (⌈T/32⌉, NH, B), block 64.
template <class A> __device__ __forceinline__ void attention_tc_t(A *out, float *state, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	__shared__ __align__(32) __nv_bfloat16 qs[ABF_Q * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 ks[ABF_K * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 vs[ABF_K * ABF_D];
	__shared__ __align__(32) float ss[ABF_WARPS][16 * ABF_K];
	__shared__ __align__(32) __nv_bfloat16 ps[ABF_WARPS][16 * ABF_K];
	__shared__ __align__(32) float os[ABF_WARPS][16 * ABF_D];
	__shared__ float ms[ABF_WARPS][16], ls[ABF_WARPS][16];
	int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
	int t0 = blockIdx.x * ABF_Q, h = blockIdx.y, b = blockIdx.z;
	int W = (NH + 2 * NKV) * HS, g = h / (NH / NKV);
	int HP = (HS + 15) & ~15; // the head padded with zeros to whole tiles
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	abf_tile(qs, base + h * HS, W, t0, ABF_Q, T, HS, HP, tid, blockDim.x);
	float *o = os[w], *sw = ss[w];
	__nv_bfloat16 *pw = ps[w];
	for (int i = lane; i < 16 * ABF_D; i += 32) o[i] = 0;
	if (lane < 16) {
		ms[w][lane] = -INFINITY;
		ls[w][lane] = 0;
	}
	int last = t0 + ABF_Q < T ? t0 + ABF_Q : T; // keys 0..last-1
	for (int j0 = 0; j0 < last; j0 += ABF_K) {
		__syncthreads(); // every warp is done with the previous tile
		abf_tile(ks, base + NH * HS + g * HS, W, j0, ABF_K, T, HS, HP, tid, blockDim.x);
		abf_tile(vs, base + (NH + NKV) * HS + g * HS, W, j0, ABF_K, T, HS, HP, tid, blockDim.x);
		__syncthreads();
		abf_mm<true>(sw, ABF_K, qs + w * 16 * ABF_D, ABF_D, ks, ABF_D, ABF_K, HP, false); // S = q·kᵀ
		{ // online softmax: lanes 2r and 2r+1 take 16 keys each of row r
			int r = lane >> 1, half = lane & 1, t = t0 + w * 16 + r;
			float *srow = sw + r * ABF_K + half * 16;
			__nv_bfloat16 *prow = pw + r * ABF_K + half * 16;
			float mx = -INFINITY;
			for (int c = 0; c < 16; c++) {
				int j = j0 + half * 16 + c;
				float sc = j <= t && j < T ? srow[c] * scale : -INFINITY;
				srow[c] = sc;
				mx = fmaxf(mx, sc);
			}
			mx = fmaxf(mx, __shfl_xor_sync(FULL, mx, 1));
			float m = ms[w][r], l = ls[w][r], mn = fmaxf(m, mx);
			float c = mn == -INFINITY ? 1.f : exp_neg(m - mn), sum = 0;
			for (int k = 0; k < 16; k++) {
				__nv_bfloat16 p = __float2bfloat16(mn == -INFINITY ? 0.f : exp_neg(srow[k] - mn));
				prow[k] = p;
				sum += __bfloat162float(p); // the p that P·v multiplies
			}
			sum += __shfl_xor_sync(FULL, sum, 1); // both lanes have read ms, ls
			for (int d = half * (HP / 2); d < (half + 1) * (HP / 2); d++) o[r * ABF_D + d] *= c;
			if (half == 0) {
				ms[w][r] = mn;
				ls[w][r] = l * c + sum;
			}
		}
		__syncwarp();
		abf_mm<false>(o, ABF_D, pw, ABF_K, vs, ABF_D, HP, ABF_K, true); // O += P·v
	}
	for (int i = lane; i < 16 * HS; i += 32) {
		int r = i / HS, d = i % HS, t = t0 + w * 16 + r;
		if (t < T) st(out[((long)b * T + t) * NH * HS + h * HS + d], o[r * ABF_D + d] / ls[w][r]);
	}
	if (lane < 16 && t0 + w * 16 + lane < T) state[((long)b * NH + h) * T + t0 + w * 16 + lane] = ms[w][lane] + logf(ls[w][lane]);
}
extern "C" __global__ void __launch_bounds__(64) attention_tc(float *out, float *state, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_tc_t(out, state, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void __launch_bounds__(64) attention_tc_b(bf16_t *out, float *state, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_tc_t(out, state, qkv, B, T, NH, NKV, HS); }

// attention_backward_dq_tc: one warp takes 16 query rows of (b, h) and
// adds dq = Σ_j dS·k, dS = P∘(dout·vᵀ − D)·scale, over key tiles of 32;
// it also writes D = dout·out for the key kernel that follows. Launch:
// grid (⌈T/16⌉, NH, B), block 32.
template <class A> __device__ __forceinline__ void attention_backward_dq_tc_t(A *dqkv, float *state, const A *dout, const A *out, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	__shared__ __align__(32) __nv_bfloat16 qs[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 dos[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 ks[ABF_K * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 vs[ABF_K * ABF_D];
	__shared__ __align__(32) float ss[16 * ABF_K];
	__shared__ __align__(32) float dps[16 * ABF_K];
	__shared__ __align__(32) float dqs[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 dss[16 * ABF_K];
	__shared__ float Ds[16], lses[16];
	int lane = threadIdx.x, t0 = blockIdx.x * 16, h = blockIdx.y, b = blockIdx.z;
	int W = (NH + 2 * NKV) * HS, g = h / (NH / NKV), HP = (HS + 15) & ~15;
	long rows = (long)B * NH * T;
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	const A *go = dout + (long)b * T * NH * HS + h * HS, *o = out + (long)b * T * NH * HS + h * HS;
	abf_tile(qs, base + h * HS, W, t0, 16, T, HS, HP, lane, 32);
	abf_tile(dos, go, NH * HS, t0, 16, T, HS, HP, lane, 32);
	for (int r = 0; r < 16; r++) {
		int t = t0 + r;
		float D = 0;
		if (t < T)
			for (int d = lane; d < HS; d += 32) D += ld(go[(long)t * NH * HS + d]) * ld(o[(long)t * NH * HS + d]);
		D = warp_sum(D);
		if (lane == 0) {
			Ds[r] = D;
			long row = ((long)b * NH + h) * T + t;
			lses[r] = t < T ? state[row] : 0.f;
			if (t < T) state[rows + row] = D;
		}
	}
	for (int i = lane; i < 16 * ABF_D; i += 32) dqs[i] = 0;
	int last = t0 + 16 < T ? t0 + 16 : T;
	for (int j0 = 0; j0 < last; j0 += ABF_K) {
		__syncwarp();
		abf_tile(ks, base + NH * HS + g * HS, W, j0, ABF_K, T, HS, HP, lane, 32);
		abf_tile(vs, base + (NH + NKV) * HS + g * HS, W, j0, ABF_K, T, HS, HP, lane, 32);
		__syncwarp();
		abf_mm<true>(ss, ABF_K, qs, ABF_D, ks, ABF_D, ABF_K, HP, false);   // S = q·kᵀ
		abf_mm<true>(dps, ABF_K, dos, ABF_D, vs, ABF_D, ABF_K, HP, false); // dP = dout·vᵀ
		for (int e = lane; e < 16 * ABF_K; e += 32) {
			int r = e / ABF_K, t = t0 + r, j = j0 + e % ABF_K;
			float p = j <= t && t < T ? exp_neg(ss[e] * scale - lses[r]) : 0.f;
			dss[e] = __float2bfloat16(p * (dps[e] - Ds[r]) * scale);
		}
		__syncwarp();
		abf_mm<false>(dqs, ABF_D, dss, ABF_K, ks, ABF_D, HP, ABF_K, true); // dq += dS·k
	}
	for (int i = lane; i < 16 * HS; i += 32) {
		int r = i / HS, d = i % HS, t = t0 + r;
		if (t < T) {
			A &dst = dqkv[((long)b * T + t) * W + h * HS + d];
			st(dst, ld(dst) + dqs[r * ABF_D + d]);
		}
	}
}
extern "C" __global__ void __launch_bounds__(32) attention_backward_dq_tc(float *dqkv, float *state, const float *dout, const float *out, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dq_tc_t(dqkv, state, dout, out, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void __launch_bounds__(32) attention_backward_dq_tc_b(bf16_t *dqkv, float *state, const bf16_t *dout, const bf16_t *out, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dq_tc_t(dqkv, state, dout, out, qkv, B, T, NH, NKV, HS); }

// attention_backward_dkv_tc: one warp takes 16 keys of (b, key/value
// head g) and adds dk = Σ dSᵀ·q and dv = Σ Pᵀ·dout over the query heads of
// its group and the query tiles of 32 at or after its keys, reading lse and
// D from state. Launch: grid (⌈T/16⌉, NKV, B), block 32.
template <class A> __device__ __forceinline__ void attention_backward_dkv_tc_t(A *dqkv, const float *state, const A *dout, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	__shared__ __align__(32) __nv_bfloat16 ks[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 vs[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 qs[ABF_K * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 dos[ABF_K * ABF_D];
	__shared__ __align__(32) float sts[16 * ABF_K];
	__shared__ __align__(32) float dpts[16 * ABF_K];
	__shared__ __align__(32) float dks[16 * ABF_D];
	__shared__ __align__(32) float dvs[16 * ABF_D];
	__shared__ __align__(32) __nv_bfloat16 pts[16 * ABF_K];
	__shared__ __align__(32) __nv_bfloat16 dsts[16 * ABF_K];
	__shared__ float lq[ABF_K], Dq[ABF_K];
	int lane = threadIdx.x, j0 = blockIdx.x * 16, g = blockIdx.y, b = blockIdx.z;
	int W = (NH + 2 * NKV) * HS, G = NH / NKV, HP = (HS + 15) & ~15;
	long rows = (long)B * NH * T;
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	abf_tile(ks, base + NH * HS + g * HS, W, j0, 16, T, HS, HP, lane, 32);
	abf_tile(vs, base + (NH + NKV) * HS + g * HS, W, j0, 16, T, HS, HP, lane, 32);
	for (int i = lane; i < 16 * ABF_D; i += 32) dks[i] = dvs[i] = 0;
	for (int h = g * G; h < (g + 1) * G; h++) {
		for (int t0 = j0 / ABF_K * ABF_K; t0 < T; t0 += ABF_K) {
			__syncwarp();
			abf_tile(qs, base + h * HS, W, t0, ABF_K, T, HS, HP, lane, 32);
			abf_tile(dos, dout + (long)b * T * NH * HS + h * HS, NH * HS, t0, ABF_K, T, HS, HP, lane, 32);
			long row = ((long)b * NH + h) * T + t0 + lane;
			lq[lane] = t0 + lane < T ? state[row] : 0.f;
			Dq[lane] = t0 + lane < T ? state[rows + row] : 0.f;
			__syncwarp();
			abf_mm<true>(sts, ABF_K, ks, ABF_D, qs, ABF_D, ABF_K, HP, false);   // Sᵀ = k·qᵀ
			abf_mm<true>(dpts, ABF_K, vs, ABF_D, dos, ABF_D, ABF_K, HP, false); // dPᵀ = v·doutᵀ
			for (int e = lane; e < 16 * ABF_K; e += 32) {
				int c = e % ABF_K, j = j0 + e / ABF_K, t = t0 + c;
				float p = j <= t && t < T ? exp_neg(sts[e] * scale - lq[c]) : 0.f;
				pts[e] = __float2bfloat16(p);
				dsts[e] = __float2bfloat16(p * (dpts[e] - Dq[c]) * scale);
			}
			__syncwarp();
			abf_mm<false>(dvs, ABF_D, pts, ABF_K, dos, ABF_D, HP, ABF_K, true); // dv += Pᵀ·dout
			abf_mm<false>(dks, ABF_D, dsts, ABF_K, qs, ABF_D, HP, ABF_K, true); // dk += dSᵀ·q
		}
	}
	for (int i = lane; i < 16 * HS; i += 32) {
		int r = i / HS, d = i % HS, j = j0 + r;
		if (j < T) {
			A *dst = dqkv + ((long)b * T + j) * W + NH * HS + g * HS + d;
			st(dst[0], ld(dst[0]) + dks[r * ABF_D + d]);
			st(dst[NKV * HS], ld(dst[NKV * HS]) + dvs[r * ABF_D + d]);
		}
	}
}
extern "C" __global__ void __launch_bounds__(32) attention_backward_dkv_tc(float *dqkv, const float *state, const float *dout, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dkv_tc_t(dqkv, state, dout, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void __launch_bounds__(32) attention_backward_dkv_tc_b(bf16_t *dqkv, const float *state, const bf16_t *dout, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dkv_tc_t(dqkv, state, dout, qkv, B, T, NH, NKV, HS); }

// attention_backward_dq also writes D for the key-row kernel that follows.
template <class A> __device__ __forceinline__ void attention_backward_dq_t(A *dqkv, float *state, const A *dout, const A *out, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	ROW_OF_WARP();
	long rows = (long)B * NH * T;
	if (row >= rows) return;
	int t = row % T, h = (row / T) % NH, b = row / ((long)T * NH);
	int W = (NH + 2 * NKV) * HS, g = h / (NH / NKV);
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	long orow = ((long)b * T + t) * NH * HS + h * HS;
	float q[MAXD], go[MAXD], dq[MAXD];
	load_head(q, base + (long)t * W + h * HS, HS, lane);
	load_head(go, dout + orow, HS, lane);
	float D = dot_head(go, out + orow, HS, lane), lse = state[row];
	if (lane == 0) state[rows + row] = D;
#pragma unroll
	for (int d = 0; d < MAXD; d++) dq[d] = 0;
	for (int j = 0; j <= t; j++) {
		const A *kv = base + (long)j * W + NH * HS;
		const A *k = kv + g * HS, *v = kv + NKV * HS + g * HS;
		float p = exp_neg(dot_head(q, k, HS, lane) * scale - lse);
		float ds = p * (dot_head(go, v, HS, lane) - D) * scale;
#pragma unroll
		for (int d = 0; d < MAXD; d++) {
			int i = lane + 32 * d;
			if (i < HS) dq[d] += ds * ld(k[i]);
		}
	}
	A *dst = dqkv + (long)(b * T + t) * W + h * HS;
#pragma unroll
	for (int d = 0; d < MAXD; d++) {
		int i = lane + 32 * d;
		if (i < HS) st(dst[i], ld(dst[i]) + dq[d]);
	}
}
extern "C" __global__ void attention_backward_dq(float *dqkv, float *state, const float *dout, const float *out, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dq_t(dqkv, state, dout, out, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void attention_backward_dq_b(bf16_t *dqkv, float *state, const bf16_t *dout, const bf16_t *out, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dq_t(dqkv, state, dout, out, qkv, B, T, NH, NKV, HS); }

// attention_backward_dkv: one warp per key row (b, key/value head g, j),
// over the query heads of its group and the queries t ≥ j.
template <class A> __device__ __forceinline__ void attention_backward_dkv_t(A *dqkv, const float *state, const A *dout, const A *qkv, int B, int T, int NH, int NKV, int HS) {
	ROW_OF_WARP();
	long rows = (long)B * NH * T;
	if (row >= (long)B * NKV * T) return;
	int j = row % T, g = (row / T) % NKV, b = row / ((long)T * NKV);
	int W = (NH + 2 * NKV) * HS, G = NH / NKV;
	float scale = 1.f / sqrtf((float)HS);
	const A *base = qkv + (long)b * T * W;
	float k[MAXD], v[MAXD], dk[MAXD], dv[MAXD];
	load_head(k, base + (long)j * W + NH * HS + g * HS, HS, lane);
	load_head(v, base + (long)j * W + (NH + NKV) * HS + g * HS, HS, lane);
#pragma unroll
	for (int d = 0; d < MAXD; d++) dk[d] = dv[d] = 0;
	for (int h = g * G; h < (g + 1) * G; h++) {
		for (int t = j; t < T; t++) {
			long qrow = ((long)b * NH + h) * T + t;
			const A *q = base + (long)t * W + h * HS;
			const A *go = dout + ((long)b * T + t) * NH * HS + h * HS;
			float p = exp_neg(dot_head(k, q, HS, lane) * scale - state[qrow]);
			float ds = p * (dot_head(v, go, HS, lane) - state[rows + qrow]) * scale;
#pragma unroll
			for (int d = 0; d < MAXD; d++) {
				int i = lane + 32 * d;
				if (i < HS) {
					dv[d] += p * ld(go[i]);
					dk[d] += ds * ld(q[i]);
				}
			}
		}
	}
	A *dst = dqkv + ((long)b * T + j) * W;
#pragma unroll
	for (int d = 0; d < MAXD; d++) {
		int i = lane + 32 * d;
		if (i < HS) {
			A &dki = dst[NH * HS + g * HS + i], &dvi = dst[(NH + NKV) * HS + g * HS + i];
			st(dki, ld(dki) + dk[d]);
			st(dvi, ld(dvi) + dv[d]);
		}
	}
}
extern "C" __global__ void attention_backward_dkv(float *dqkv, const float *state, const float *dout, const float *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dkv_t(dqkv, state, dout, qkv, B, T, NH, NKV, HS); }
extern "C" __global__ void attention_backward_dkv_b(bf16_t *dqkv, const float *state, const bf16_t *dout, const bf16_t *qkv, int B, int T, int NH, int NKV, int HS) { attention_backward_dkv_t(dqkv, state, dout, qkv, B, T, NH, NKV, HS); }

// ---- classifier: softmax cross-entropy, a block per row ----

template <class A> __device__ __forceinline__ void cross_entropy_t(float *losses, A *dlogits, const A *logits, const int *targets, int V, int Vp, float scale) {
	__shared__ float sh[32];
	long r = blockIdx.x;
	const A *row = logits + r * Vp;
	// the target's logit, read by every thread before the barriers of the
	// reductions: in place, the gradient overwrites it after them
	int tg = targets[r];
	float xt = ld(row[tg]);
	float m = -INFINITY;
	for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, ld(row[i]));
	m = block_reduce(m, sh, Max(), -INFINITY);
	float s = 0;
	for (int i = threadIdx.x; i < V; i += blockDim.x) s += exp_neg(ld(row[i]) - m);
	s = block_reduce(s, sh, Add(), 0.f);
	if (threadIdx.x == 0) losses[r] = logf(s) - (xt - m);
	if (!dlogits) return;
	float k = scale / s;
	A *d = dlogits + r * Vp;
	for (int i = threadIdx.x; i < Vp; i += blockDim.x) {
		float e = 0;
		if (i < V) e = exp_neg(ld(row[i]) - m) * k - (i == tg ? scale : 0.f);
		st(d[i], e);
	}
}
extern "C" __global__ void __launch_bounds__(1024) cross_entropy(float *losses, float *dlogits, const float *logits, const int *targets, int V, int Vp, float scale) { cross_entropy_t(losses, dlogits, logits, targets, V, Vp, scale); }
extern "C" __global__ void __launch_bounds__(1024) cross_entropy_b(float *losses, bf16_t *dlogits, const bf16_t *logits, const int *targets, int V, int Vp, float scale) { cross_entropy_t(losses, dlogits, logits, targets, V, Vp, scale); }

// ---- gathers and scatters of weight rows and columns ----

// The gathers take dst and src in either type (weights gathered into a
// bf16 copy for the products); the scatters add into fp32 gradients.
template <class D, class S> __device__ __forceinline__ void gather_rows_t(D *dst, const S *src, const int *rows, int n, int width) {
	GRID_STRIDE(i, (long)n * width) st(dst[i], ld(src[(long)rows[i / width] * width + i % width]));
}
extern "C" __global__ void gather_rows(float *dst, const float *src, const int *rows, int n, int width) { gather_rows_t(dst, src, rows, n, width); }
extern "C" __global__ void gather_rows_bb(bf16_t *dst, const bf16_t *src, const int *rows, int n, int width) { gather_rows_t(dst, src, rows, n, width); }
extern "C" __global__ void gather_rows_bf(bf16_t *dst, const float *src, const int *rows, int n, int width) { gather_rows_t(dst, src, rows, n, width); }
extern "C" __global__ void gather_rows_fb(float *dst, const bf16_t *src, const int *rows, int n, int width) { gather_rows_t(dst, src, rows, n, width); }

template <class S> __device__ __forceinline__ void scatter_add_rows_t(float *dst, const S *src, const int *rows, int n, int width) {
	GRID_STRIDE(i, (long)n * width) atomicAdd(&dst[(long)rows[i / width] * width + i % width], ld(src[i]));
}
extern "C" __global__ void scatter_add_rows(float *dst, const float *src, const int *rows, int n, int width) { scatter_add_rows_t(dst, src, rows, n, width); }
extern "C" __global__ void scatter_add_rows_b(float *dst, const bf16_t *src, const int *rows, int n, int width) { scatter_add_rows_t(dst, src, rows, n, width); }

template <class D, class S> __device__ __forceinline__ void gather_cols_t(D *dst, const S *src, int n, int width, const int *cols, int k) {
	GRID_STRIDE(i, (long)n * k) st(dst[i], ld(src[(i / k) * width + cols[i % k]]));
}
extern "C" __global__ void gather_cols(float *dst, const float *src, int n, int width, const int *cols, int k) { gather_cols_t(dst, src, n, width, cols, k); }
extern "C" __global__ void gather_cols_bb(bf16_t *dst, const bf16_t *src, int n, int width, const int *cols, int k) { gather_cols_t(dst, src, n, width, cols, k); }
extern "C" __global__ void gather_cols_bf(bf16_t *dst, const float *src, int n, int width, const int *cols, int k) { gather_cols_t(dst, src, n, width, cols, k); }
extern "C" __global__ void gather_cols_fb(float *dst, const bf16_t *src, int n, int width, const int *cols, int k) { gather_cols_t(dst, src, n, width, cols, k); }

template <class S> __device__ __forceinline__ void scatter_add_cols_t(float *dst, const S *src, int n, int width, const int *cols, int k) {
	GRID_STRIDE(i, (long)n * k) atomicAdd(&dst[(i / k) * width + cols[i % k]], ld(src[i]));
}
extern "C" __global__ void scatter_add_cols(float *dst, const float *src, int n, int width, const int *cols, int k) { scatter_add_cols_t(dst, src, n, width, cols, k); }
extern "C" __global__ void scatter_add_cols_b(float *dst, const bf16_t *src, int n, int width, const int *cols, int k) { scatter_add_cols_t(dst, src, n, width, cols, k); }

// ---- AdamW (PyTorch's, in fp32; the constants come from the host) ----

__device__ __forceinline__ void adamw_one(float *p, const float *g, float *m, float *v, long i, float beta1, float beta2, float eps, float scale, float decay, float step_size, float rbc2) {
	float gi = g[i];
	if (scale != 1.f) gi *= scale;
	float mi = beta1 * m[i] + (1.f - beta1) * gi;
	float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
	m[i] = mi;
	v[i] = vi;
	float denom = (float)sqrt((double)vi) * rbc2 + eps;
	p[i] = p[i] * decay - step_size * mi / denom;
}

extern "C" __global__ void adamw(float *p, const float *g, float *m, float *v, long n, float beta1, float beta2, float eps, float scale, float decay, float step_size, float rbc2) {
	GRID_STRIDE(i, n) adamw_one(p, g, m, v, i, beta1, beta2, eps, scale, decay, step_size, rbc2);
}

// adamw_sub updates the listed rows (all nrows when rows is null) and, in
// them, the listed columns (all width when cols is null).
extern "C" __global__ void adamw_sub(float *p, const float *g, float *m, float *v, int width, const int *rows, int nrows, const int *cols, int ncols, float beta1, float beta2, float eps, float scale, float decay, float step_size, float rbc2) {
	GRID_STRIDE(i, (long)nrows * ncols) {
		long r = i / ncols;
		int c = i % ncols;
		if (rows) r = rows[r];
		if (cols) c = cols[c];
		adamw_one(p, g, m, v, r * width + c, beta1, beta2, eps, scale, decay, step_size, rbc2);
	}
}
