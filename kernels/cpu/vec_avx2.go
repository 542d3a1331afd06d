//go:build openblas && cgo && amd64

package cpu

/*
#cgo CFLAGS: -O2 -std=c11
#include <stdint.h>
#include <string.h>

// Scalar forms: the same operations in the same order as expNeg and
// tanh32 in exp.go and GELU in cpu.go, so every element is bit for bit
// what the pure-Go kernels give (-std=c11 implies -ffp-contract=off: no fused multiply-add,
// as Go on amd64 emits none).
static inline float estkit_expneg1(float x) {
	if (x < -87.33f) return 0;
	float n = (float)(int32_t)(x * 1.44269504088896341f - 0.5f);
	float r = x - n * 0.693359375f - n * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1;
	uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
	float s;
	memcpy(&s, &bits, sizeof s);
	return p * s;
}

static inline float estkit_tanh1(float u) {
	float a = u < 0 ? -u : u;
	float e = estkit_expneg1(-2 * a);
	float t = (1 - e) / (1 + e);
	return u < 0 ? -t : t;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ESTKIT_AVX2 1

__attribute__((target("avx2"))) static inline __m256 estkit_expneg8(__m256 x) {
	const __m256 lo = _mm256_set1_ps(-87.33f);
	__m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ); // not x < -87.33 (NaN kept)
	__m256 xc = _mm256_blendv_ps(lo, x, keep);
	__m256i ni = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)), _mm256_set1_ps(0.5f)));
	__m256 n = _mm256_cvtepi32_ps(ni);
	__m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f))), _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), _mm256_set1_ps(1.0f));
	__m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
	return _mm256_and_ps(_mm256_mul_ps(p, s), keep);
}

__attribute__((target("avx2"))) static inline __m256 estkit_tanh8(__m256 u) {
	const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
	__m256 neg = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_LT_OQ);
	__m256 a = _mm256_andnot_ps(sign, u);
	__m256 e = estkit_expneg8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), a));
	__m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
	return _mm256_blendv_ps(t, _mm256_xor_ps(t, sign), neg);
}
#endif

static int estkit_has_avx2(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}

__attribute__((target("avx2"))) static void estkit_gelu(float *out, const float *x, long n) {
	const __m256 s = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
	const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256 v3 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(c, v), v), v);
		__m256 u = _mm256_mul_ps(s, _mm256_add_ps(v, v3));
		_mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, estkit_tanh8(u))));
	}
	for (; i < n; i++) {
		float v = x[i];
		float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
		out[i] = 0.5f * v * (1 + estkit_tanh1(u));
	}
}

__attribute__((target("avx2"))) static void estkit_gelu_backward(float *dx, const float *x, const float *g, long n) {
	const __m256 s = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f), c3 = _mm256_set1_ps(0.134145f);
	const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256 v3 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(c, v), v), v);
		__m256 th = estkit_tanh8(_mm256_mul_ps(s, _mm256_add_ps(v, v3)));
		__m256 sech2 = _mm256_sub_ps(one, _mm256_mul_ps(th, th));
		__m256 du = _mm256_mul_ps(s, _mm256_add_ps(one, _mm256_mul_ps(_mm256_mul_ps(c3, v), v)));
		__m256 d = _mm256_add_ps(_mm256_mul_ps(half, _mm256_add_ps(one, th)), _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, v), sech2), du));
		_mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), _mm256_mul_ps(_mm256_loadu_ps(g + i), d)));
	}
	for (; i < n; i++) {
		float v = x[i];
		float u = 0.7978845608028654f * (v + 0.044715f * v * v * v);
		float th = estkit_tanh1(u);
		float sech2 = 1 - th * th;
		float du = 0.7978845608028654f * (1 + 0.134145f * v * v);
		dx[i] += g[i] * (0.5f * (1 + th) + 0.5f * v * sech2 * du);
	}
}

// GELU and its gradient sixteen elements at a time where the CPU has
// AVX-512: estkit_expneg8, estkit_tanh8 and the loops above with 512-bit
// registers, operation for operation (masks for the comparisons and
// blends), so the bits are the same; the last elements go through the
// eight-wide loops.
#define ESTKIT_512 __attribute__((target("avx512f")))

ESTKIT_512 static inline __m512 estkit_expneg16(__m512 x) {
	const __m512 lo = _mm512_set1_ps(-87.33f);
	__mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ); // not x < -87.33 (NaN kept)
	__m512 xc = _mm512_mask_blend_ps(keep, lo, x);
	__m512i ni = _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)), _mm512_set1_ps(0.5f)));
	__m512 n = _mm512_cvtepi32_ps(ni);
	__m512 r = _mm512_sub_ps(_mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f))), _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
	__m512 p = _mm512_set1_ps(1.9875691500e-4f);
	p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999507e-3f));
	p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.3334519073e-3f));
	p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665795894e-2f));
	p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665459e-1f));
	p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5.0000001201e-1f));
	p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r), _mm512_set1_ps(1.0f));
	__m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
	return _mm512_maskz_mov_ps(keep, _mm512_mul_ps(p, s));
}

ESTKIT_512 static inline __m512 estkit_tanh16(__m512 u) {
	const __m512 one = _mm512_set1_ps(1.0f);
	__mmask16 neg = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
	__m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(u), _mm512_set1_epi32(0x7fffffff)));
	__m512 e = estkit_expneg16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), a));
	__m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
	__m512 nt = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(t), _mm512_set1_epi32((int)0x80000000u)));
	return _mm512_mask_blend_ps(neg, t, nt);
}

ESTKIT_512 static void estkit_gelu16(float *out, const float *x, long n) {
	const __m512 s = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f);
	const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 v = _mm512_loadu_ps(x + i);
		__m512 v3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c, v), v), v);
		__m512 u = _mm512_mul_ps(s, _mm512_add_ps(v, v3));
		_mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, estkit_tanh16(u))));
	}
	estkit_gelu(out + i, x + i, n - i);
}

ESTKIT_512 static void estkit_gelu_backward16(float *dx, const float *x, const float *g, long n) {
	const __m512 s = _mm512_set1_ps(0.7978845608028654f), c = _mm512_set1_ps(0.044715f), c3 = _mm512_set1_ps(0.134145f);
	const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 v = _mm512_loadu_ps(x + i);
		__m512 v3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(c, v), v), v);
		__m512 th = estkit_tanh16(_mm512_mul_ps(s, _mm512_add_ps(v, v3)));
		__m512 sech2 = _mm512_sub_ps(one, _mm512_mul_ps(th, th));
		__m512 du = _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(_mm512_mul_ps(c3, v), v)));
		__m512 d = _mm512_add_ps(_mm512_mul_ps(half, _mm512_add_ps(one, th)), _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(half, v), sech2), du));
		_mm512_storeu_ps(dx + i, _mm512_add_ps(_mm512_loadu_ps(dx + i), _mm512_mul_ps(_mm512_loadu_ps(g + i), d)));
	}
	estkit_gelu_backward(dx + i, x + i, g + i, n - i);
}

// The sum of exponentials and the row scaling (estkit_sum_exp,
// estkit_scale_row) sixteen floats at a time: the float64 lanes are one
// 512-bit register of eight, each float's exponential added into lane
// i mod 8 in order, as the eight-wide loop adds it.
ESTKIT_512 static double estkit_sum_exp16(float *d, const float *x, float m, long n) {
	const __m512 mv = _mm512_set1_ps(m);
	__m512d acc = _mm512_setzero_pd();
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 e = estkit_expneg16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
		if (d) _mm512_storeu_ps(d + i, e);
		acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
		acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
	}
	double lane[8];
	_mm512_storeu_pd(lane, acc);
	for (long j = 0; i < n; i++, j = (j + 1) % 8) { // i is a multiple of 16 here: lane j is i mod 8
		float e = estkit_expneg1(x[i] - m);
		if (d) d[i] = e;
		lane[j] += (double)e;
	}
	double s = 0;
	for (int j = 0; j < 8; j++) s += lane[j];
	return s;
}

ESTKIT_512 static void estkit_scale_row16(float *d, double k, long n) {
	const __m512d kv = _mm512_set1_pd(k);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		_mm256_storeu_ps(d + i, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(d + i)), kv)));
	}
	for (; i < n; i++) d[i] = (float)((double)d[i] * k);
}

// Sampled columns one by one (neurons, which make no runs): d[r][j] =
// s[r][cols[j]] and s[r][cols[j]] += d[r][j]... the gather and the
// scatter-add of n rows, sixteen columns at a time with AVX-512's gathers
// and scatters (the columns are distinct, so a scatter's lanes never
// collide). Copies and single additions: the bits are the Go loops'.
ESTKIT_512 static void estkit_gather_cols16(float *d, const float *s, const int32_t *cols, long n, long width, long k) {
	for (long r = 0; r < n; r++) {
		const float *sr = s + r * width;
		float *dr = d + r * k;
		long j = 0;
		for (; j + 16 <= k; j += 16) _mm512_storeu_ps(dr + j, _mm512_i32gather_ps(_mm512_loadu_si512(cols + j), sr, 4));
		for (; j < k; j++) dr[j] = sr[cols[j]];
	}
}

ESTKIT_512 static void estkit_scatter_add_cols16(float *d, const float *s, const int32_t *cols, long n, long width, long k) {
	for (long r = 0; r < n; r++) {
		float *dr = d + r * width;
		const float *sr = s + r * k;
		long j = 0;
		for (; j + 16 <= k; j += 16) {
			__m512i idx = _mm512_loadu_si512(cols + j);
			_mm512_i32scatter_ps(dr, idx, _mm512_add_ps(_mm512_i32gather_ps(idx, dr, 4), _mm512_loadu_ps(sr + j)), 4);
		}
		for (; j < k; j++) dr[cols[j]] += sr[j];
	}
}

static int estkit_has_avx512(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f");
}

__attribute__((target("avx2"))) static void estkit_exp_shifted(float *x, float m, long n) {
	const __m256 mv = _mm256_set1_ps(m);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		_mm256_storeu_ps(x + i, estkit_expneg8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
	}
	for (; i < n; i++) {
		x[i] = estkit_expneg1(x[i] - m);
	}
}

// ESTKIT_ADAMW_AHEAD: how far ahead (floats: 1 KiB) estkit_adamw asks for
// its four streams' lines. The hardware's prefetchers alone kept two cores
// at about 37 GB/s over 124M parameters (p, g, m, v read, p, m, v
// written): 80 ms; asked ahead, 72 ms (BenchmarkAdamW; 512 floats ahead
// gave the same). A prefetch past the end of a buffer is a hint, never a
// fault.
#define ESTKIT_ADAMW_AHEAD 256

// One AdamW update over n elements, as adamw.update in cpu.go does it.
// With zero set it leaves 0 in each gradient value it has read
// (AdamWArgs.ZeroGrads). A NULL g is a gradient of zeros, not read.
__attribute__((target("avx2"))) static void estkit_adamw(float *p, float *g, float *m, float *v, long n,
		float beta1, float beta2, float eps, float scale, float decay, float step, float rbc2, int zero) {
	if (!g) zero = 0;
	const float c1 = 1 - beta1, c2 = 1 - beta2;
	const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2), k1 = _mm256_set1_ps(c1), k2 = _mm256_set1_ps(c2);
	const __m256 ep = _mm256_set1_ps(eps), sc = _mm256_set1_ps(scale), de = _mm256_set1_ps(decay), st = _mm256_set1_ps(step), rb = _mm256_set1_ps(rbc2);
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		if ((i & 15) == 0) { // each line of the four streams asked for ESTKIT_ADAMW_AHEAD floats ahead
			_mm_prefetch((const char *)(p + i + ESTKIT_ADAMW_AHEAD), _MM_HINT_T0);
			if (g) _mm_prefetch((const char *)(g + i + ESTKIT_ADAMW_AHEAD), _MM_HINT_T0);
			_mm_prefetch((const char *)(m + i + ESTKIT_ADAMW_AHEAD), _MM_HINT_T0);
			_mm_prefetch((const char *)(v + i + ESTKIT_ADAMW_AHEAD), _MM_HINT_T0);
		}
		__m256 gi = g ? _mm256_loadu_ps(g + i) : _mm256_setzero_ps();
		if (zero) _mm256_storeu_ps(g + i, _mm256_setzero_ps());
		if (scale != 1) gi = _mm256_mul_ps(gi, sc);
		__m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(k1, gi));
		__m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(_mm256_mul_ps(k2, gi), gi));
		_mm256_storeu_ps(m + i, mi);
		_mm256_storeu_ps(v + i, vi);
		__m256 denom = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), rb), ep);
		_mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), de), _mm256_div_ps(_mm256_mul_ps(st, mi), denom)));
	}
	for (; i < n; i++) {
		float gi = g ? g[i] : 0;
		if (zero) g[i] = 0;
		if (scale != 1) gi *= scale;
		float mi = beta1 * m[i] + c1 * gi;
		float vi = beta2 * v[i] + c2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		float denom = _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(vi))) * rbc2 + eps; // sqrtss: no libm
		p[i] = p[i] * decay - step * mi / denom;
	}
}

// estkit_adamw over nrows rows of width values, reading the gradient of
// the rows has marks and a gradient of zeros elsewhere, a run of rows of
// either kind at a time.
__attribute__((target("avx2"))) static void estkit_adamw_rows(float *p, float *g, float *m, float *v, long width, long nrows,
		const unsigned char *has, float beta1, float beta2, float eps, float scale, float decay, float step, float rbc2, int zero) {
	for (long r = 0; r < nrows;) {
		long e = r + 1;
		while (e < nrows && !has[e] == !has[r]) e++;
		long o = r * width;
		estkit_adamw(p + o, has[r] ? g + o : NULL, m + o, v + o, (e - r) * width, beta1, beta2, eps, scale, decay, step, rbc2, zero);
		r = e;
	}
}

// The softmax's gradient, as softmaxGrad in attention_blas.go computes it:
// dot = the sum of p[i]*dr[i] in float64 (the product of two floats is
// exact there), element i into lane i mod 8, the lanes added in order and
// rounded to float; then dr[i] = p[i] * (dr[i] - dot) * scale in float.
__attribute__((target("avx2"))) static void estkit_softmax_grad(float *dr, const float *p, float scale, long n) {
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 pv = _mm256_loadu_ps(p + i), dv = _mm256_loadu_ps(dr + i);
		a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(pv)), _mm256_cvtps_pd(_mm256_castps256_ps128(dv))));
		a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(pv, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(dv, 1))));
	}
	double lane[8];
	_mm256_storeu_pd(lane, a0);
	_mm256_storeu_pd(lane + 4, a1);
	for (long j = 0; i < n; i++, j++) lane[j] += (double)p[i] * (double)dr[i];
	double s = 0;
	for (int j = 0; j < 8; j++) s += lane[j];
	const float dot = (float)s;
	const __m256 dotv = _mm256_set1_ps(dot), sv = _mm256_set1_ps(scale);
	for (i = 0; i + 8 <= n; i += 8) {
		__m256 pv = _mm256_loadu_ps(p + i), dv = _mm256_loadu_ps(dr + i);
		_mm256_storeu_ps(dr + i, _mm256_mul_ps(_mm256_mul_ps(pv, _mm256_sub_ps(dv, dotv)), sv));
	}
	for (; i < n; i++) dr[i] = p[i] * (dr[i] - dot) * scale;
}

// The sum of squares of n floats in float64, element i into lane i mod 8
// and the lanes added in order, as sumSquares in cpu.go does it: the
// lanes a[0..1] take x[0..8) (estkit_sumsq_step), then estkit_sumsq_end
// adds the tail x[i..n) into them and the lanes together.
__attribute__((target("avx2"))) static inline void estkit_sumsq_step(__m256d *a, const float *x) {
	__m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(x)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(x + 4));
	a[0] = _mm256_add_pd(a[0], _mm256_mul_pd(x0, x0));
	a[1] = _mm256_add_pd(a[1], _mm256_mul_pd(x1, x1));
}

__attribute__((target("avx2"))) static inline double estkit_sumsq_end(const __m256d *a, const float *x, long i, long n) {
	double lane[8];
	_mm256_storeu_pd(lane, a[0]);
	_mm256_storeu_pd(lane + 4, a[1]);
	for (long j = 0; i < n; i++, j++) {
		lane[j] += (double)x[i] * (double)x[i];
	}
	double s = 0;
	for (int j = 0; j < 8; j++) s += lane[j];
	return s;
}

__attribute__((target("avx2"))) static double estkit_sumsq(const float *x, long n) {
	__m256d a[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
	long i = 0;
	for (; i + 8 <= n; i += 8) estkit_sumsq_step(a, x + i);
	return estkit_sumsq_end(a, x, i, n);
}

// estkit_sumsq_ahead moves the cursor (*pi: a span, *pq: a value in it)
// k values along the n spans sp, asking for each line it passes.
static inline void estkit_sumsq_ahead(const float *x, const long *sp, long n, long *pi, long *pq, long k) {
	while (k > 0 && *pi < n) {
		if (*pq >= sp[2 * *pi + 1]) {
			if (++*pi < n) *pq = sp[2 * *pi];
			continue;
		}
		__builtin_prefetch(x + *pq);
		*pq += 16;
		k -= 16;
	}
}

// estkit_sumsq of each of n spans [sp[2i], sp[2i+1]) of x, in out[i],
// with the lines 16 KiB further along the spans asked for ahead of the
// sums: rows of a weight read apart (a sampled neuron's) otherwise each
// wait on memory before the hardware's prefetch follows them (half the
// rows of c_fc took 85% of the time of all of them).
__attribute__((target("avx2"))) static void estkit_sumsq_spans(const float *x, const long *sp, long n, double *out) {
	long pi = 0, pq = n > 0 ? sp[0] : 0;
	estkit_sumsq_ahead(x, sp, n, &pi, &pq, 4096);
	for (long i = 0; i < n; i++) {
		long len = sp[2 * i + 1] - sp[2 * i];
		estkit_sumsq_ahead(x, sp, n, &pi, &pq, len);
		out[i] = estkit_sumsq(x + sp[2 * i], len);
	}
}

// estkit_sumsq's sums of four parts of n values each, in out, with the
// same operations per part: four parts' additions interleaved, so that a
// core reads four streams of memory at once (one stream at a time left
// the gradient norm waiting on memory: 28-32 ms against 19-20 over
// GPT-2 124M's gradients on two cores).
__attribute__((target("avx2"))) static void estkit_sumsq4(const float *x0, const float *x1, const float *x2, const float *x3,
		long n, double *out) {
	const float *x[4] = {x0, x1, x2, x3};
	__m256d a[4][2];
	for (int k = 0; k < 4; k++) a[k][0] = a[k][1] = _mm256_setzero_pd();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		for (int k = 0; k < 4; k++) estkit_sumsq_step(a[k], x[k] + i);
	}
	for (int k = 0; k < 4; k++) out[k] = estkit_sumsq_end(a[k], x[k], i, n);
}

// y[r][j] += bias[j] over rows r: AddBias.
__attribute__((target("avx2"))) static void estkit_add_bias(float *y, const float *bias, long rows, long cols) {
	for (long r = 0; r < rows; r++) {
		float *row = y + r * cols;
		long j = 0;
		for (; j + 8 <= cols; j += 8) {
			_mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), _mm256_loadu_ps(bias + j)));
		}
		for (; j < cols; j++) row[j] += bias[j];
	}
}

// acc[j] += g[r][c0+j] for r in order, j < n: a range of BiasGrad's column
// sums, each column added row by row as the Go loop does. Rows outer, so
// that each row's range is read contiguously and acc stays in the cache.
__attribute__((target("avx2"))) static void estkit_col_sums(float *acc, const float *g, long rows, long cols, long c0, long n) {
	for (long r = 0; r < rows; r++) estkit_add_bias(acc, g + r * cols + c0, 1, n);
}

// The cross-entropy's row maximum, as rowMax in cpu.go finds it: lane i
// mod 8 keeps the largest of its elements (v > max: max_ps returns its
// second operand where either is NaN), then the lanes in order.
__attribute__((target("avx2"))) static float estkit_row_max(const float *x, long n) {
	float lane[8];
	__m256 a = _mm256_set1_ps(-__builtin_inff());
	long i = 0;
	for (; i + 8 <= n; i += 8) a = _mm256_max_ps(_mm256_loadu_ps(x + i), a);
	_mm256_storeu_ps(lane, a);
	for (long j = 0; i < n; i++, j++) {
		if (x[i] > lane[j]) lane[j] = x[i];
	}
	float m = lane[0];
	for (int j = 1; j < 8; j++) {
		if (lane[j] > m) m = lane[j];
	}
	return m;
}

// The sum of exp(x[i] - m) in float64 lanes, as sumExp in cpu.go adds it;
// d, when not NULL, keeps the exponentials (d may be x).
__attribute__((target("avx2"))) static double estkit_sum_exp(float *d, const float *x, float m, long n) {
	const __m256 mv = _mm256_set1_ps(m);
	__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 e = estkit_expneg8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
		if (d) _mm256_storeu_ps(d + i, e);
		a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
		a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
	}
	double lane[8];
	_mm256_storeu_pd(lane, a0);
	_mm256_storeu_pd(lane + 4, a1);
	for (long j = 0; i < n; i++, j++) {
		float e = estkit_expneg1(x[i] - m);
		if (d) d[i] = e;
		lane[j] += (double)e;
	}
	double s = 0;
	for (int j = 0; j < 8; j++) s += lane[j];
	return s;
}

// d[i] = (float)((double)d[i] * k): scaleRow in cpu.go.
__attribute__((target("avx2"))) static void estkit_scale_row(float *d, double k, long n) {
	const __m256d kv = _mm256_set1_pd(k);
	long i = 0;
	for (; i + 4 <= n; i += 4) {
		_mm_storeu_ps(d + i, _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(d + i)), kv)));
	}
	for (; i < n; i++) d[i] = (float)((double)d[i] * k);
}

// d[rows[i]][:] += s[i][:] for i < n, rows width floats long: ScatterAddRows.
__attribute__((target("avx2"))) static void estkit_scatter_add_rows(float *d, const float *s, const int32_t *rows, long n, long width) {
	for (long i = 0; i < n; i++) estkit_add_bias(d + (long)rows[i] * width, s + i * width, 1, width);
}

// d[r][c+t] += s[r][j+t] for rows r < n and the runs (c, j, len) of a
// column list (colRuns): ScatterAddCols.
__attribute__((target("avx2"))) static void estkit_scatter_add_runs(float *d, const float *s, const int32_t *runs, long nruns, long n, long width, long k) {
	for (long r = 0; r < n; r++) {
		for (long q = 0; q < nruns; q++) {
			estkit_add_bias(d + r * width + runs[3 * q], s + r * k + runs[3 * q + 1], 1, runs[3 * q + 2]);
		}
	}
}
// The eight float64 lanes a0 (elements 0-3 mod 8) and a1 (4-7), stored.
__attribute__((target("avx2"))) static inline void estkit_lanes(double *lane, __m256d a0, __m256d a1) {
	_mm256_storeu_pd(lane, a0);
	_mm256_storeu_pd(lane + 4, a1);
}

static inline double estkit_lane_sum(const double *lane) {
	double s = 0;
	for (int j = 0; j < 8; j++) s += lane[j];
	return s;
}

// LayerNorm over rows of C: layerNormRow in cpu.go, row after row. The
// mean and the variance are float64 sums, element i into lane i mod 8;
// the normalisation is float32, (x − m)·s·w + b as the Go loop groups it.
__attribute__((target("avx2"))) static void estkit_layernorm(float *out, float *mean, float *rstd, const float *x,
		const float *w, const float *b, long rows, long C) {
	double lane[8];
	for (long r = 0; r < rows; r++) {
		const float *row = x + r * C;
		float *dst = out + r * C;
		__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
		long i = 0;
		for (; i + 8 <= C; i += 8) {
			a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(row + i)));
			a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(row + i + 4)));
		}
		estkit_lanes(lane, a0, a1);
		for (long j = 0; i < C; i++, j++) lane[j] += (double)row[i];
		float m = (float)(estkit_lane_sum(lane) / (double)C);
		const __m256d md = _mm256_set1_pd((double)m);
		a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
		for (i = 0; i + 8 <= C; i += 8) {
			__m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + i)), md);
			__m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + i + 4)), md);
			a0 = _mm256_add_pd(a0, _mm256_mul_pd(d0, d0));
			a1 = _mm256_add_pd(a1, _mm256_mul_pd(d1, d1));
		}
		estkit_lanes(lane, a0, a1);
		for (long j = 0; i < C; i++, j++) {
			double d = (double)row[i] - (double)m;
			lane[j] += d * d;
		}
		double va = estkit_lane_sum(lane) / (double)C + 1e-5;
		float s = (float)(1 / _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(va)))); // sqrtsd: no libm
		const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(s);
		for (i = 0; i + 8 <= C; i += 8) {
			__m256 n = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + i), mv), sv), _mm256_loadu_ps(w + i));
			_mm256_storeu_ps(dst + i, _mm256_add_ps(n, _mm256_loadu_ps(b + i)));
		}
		for (; i < C; i++) dst[i] = (row[i] - m) * s * w[i] + b[i];
		mean[r] = m;
		rstd[r] = s;
	}
}

// LayerNorm's gradient over rows of C: layerNormBackwardRow in cpu.go,
// row after row; acc holds the weight's (acc[0:C]) and the bias's
// (acc[C:2C]) gradient sums.
__attribute__((target("avx2"))) static void estkit_layernorm_backward(float *dx, float *acc, const float *dout, const float *x,
		const float *w, const float *mean, const float *rstd, long rows, long C) {
	double l1[8], l2[8];
	for (long r = 0; r < rows; r++) {
		const float *xr = x + r * C, *gr = dout + r * C;
		float *dr = dx + r * C;
		const float m = mean[r], s = rstd[r];
		const __m256 mv = _mm256_set1_ps(m), sv = _mm256_set1_ps(s);
		__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), b0 = _mm256_setzero_pd(), b1 = _mm256_setzero_pd();
		long i = 0;
		for (; i + 8 <= C; i += 8) {
			__m256 g = _mm256_loadu_ps(gr + i);
			__m256 norm = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv), sv);
			__m256 dnorm = _mm256_mul_ps(_mm256_loadu_ps(w + i), g);
			__m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(dnorm)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(dnorm, 1));
			__m256d n0 = _mm256_cvtps_pd(_mm256_castps256_ps128(norm)), n1 = _mm256_cvtps_pd(_mm256_extractf128_ps(norm, 1));
			a0 = _mm256_add_pd(a0, d0);
			a1 = _mm256_add_pd(a1, d1);
			b0 = _mm256_add_pd(b0, _mm256_mul_pd(d0, n0));
			b1 = _mm256_add_pd(b1, _mm256_mul_pd(d1, n1));
			_mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_mul_ps(norm, g)));
			_mm256_storeu_ps(acc + C + i, _mm256_add_ps(_mm256_loadu_ps(acc + C + i), g));
		}
		estkit_lanes(l1, a0, a1);
		estkit_lanes(l2, b0, b1);
		for (long j = 0, k = i; k < C; k++, j++) {
			float norm = (xr[k] - m) * s, dnorm = w[k] * gr[k];
			l1[j] += (double)dnorm;
			l2[j] += (double)dnorm * (double)norm;
			acc[k] += norm * gr[k];
			acc[C + k] += gr[k];
		}
		const float dm = (float)(estkit_lane_sum(l1) / (double)C), dnm = (float)(estkit_lane_sum(l2) / (double)C);
		const __m256 dmv = _mm256_set1_ps(dm), dnmv = _mm256_set1_ps(dnm);
		for (i = 0; i + 8 <= C; i += 8) {
			__m256 norm = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv), sv);
			__m256 dnorm = _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(gr + i));
			__m256 t = _mm256_sub_ps(_mm256_sub_ps(dnorm, dmv), _mm256_mul_ps(norm, dnmv));
			_mm256_storeu_ps(dr + i, _mm256_add_ps(_mm256_loadu_ps(dr + i), _mm256_mul_ps(t, sv)));
		}
		for (; i < C; i++) {
			float norm = (xr[i] - m) * s, dnorm = w[i] * gr[i];
			dr[i] += (dnorm - dm - norm * dnm) * s;
		}
	}
}
// RMSNorm over rows of C: rmsNormRow in llama.go, row after row, the sum
// of squares estkit_sumsq's (sumSquares').
__attribute__((target("avx2"))) static void estkit_rmsnorm(float *out, float *rstd, const float *x, const float *w,
		long rows, long C, float eps) {
	for (long r = 0; r < rows; r++) {
		const float *row = x + r * C;
		float *dst = out + r * C;
		double ms = estkit_sumsq(row, C) / (double)C + (double)eps;
		float rr = (float)(1 / _mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd(ms)))); // sqrtsd: no libm
		const __m256 rv = _mm256_set1_ps(rr);
		long i = 0;
		for (; i + 8 <= C; i += 8) {
			_mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(row + i), rv)));
		}
		for (; i < C; i++) dst[i] = w[i] * (row[i] * rr);
		rstd[r] = rr;
	}
}

// RMSNorm's gradient over rows of C: rmsNormBackwardRow in llama.go, row
// after row; acc holds the weight's gradient sums.
__attribute__((target("avx2"))) static void estkit_rmsnorm_backward(float *dx, float *acc, const float *dout, const float *x,
		const float *w, const float *rstd, long rows, long C) {
	double lane[8];
	for (long r = 0; r < rows; r++) {
		const float *xr = x + r * C, *gr = dout + r * C;
		float *dr = dx + r * C;
		const float rr = rstd[r];
		const __m256 rv = _mm256_set1_ps(rr);
		__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
		long i = 0;
		for (; i + 8 <= C; i += 8) {
			__m256 g = _mm256_loadu_ps(gr + i);
			__m256 xh = _mm256_mul_ps(_mm256_loadu_ps(xr + i), rv);
			__m256 dxh = _mm256_mul_ps(g, _mm256_loadu_ps(w + i));
			a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(dxh)), _mm256_cvtps_pd(_mm256_castps256_ps128(xh))));
			a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(dxh, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(xh, 1))));
			_mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i), _mm256_mul_ps(g, xh)));
		}
		estkit_lanes(lane, a0, a1);
		for (long j = 0, k = i; k < C; k++, j++) {
			float xh = xr[k] * rr, dxh = gr[k] * w[k];
			lane[j] += (double)dxh * (double)xh;
			acc[k] += gr[k] * xh;
		}
		const float dot = (float)(estkit_lane_sum(lane) / (double)C);
		const __m256 dv = _mm256_set1_ps(dot);
		for (i = 0; i + 8 <= C; i += 8) {
			__m256 x8 = _mm256_loadu_ps(xr + i);
			__m256 t = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(gr + i), _mm256_loadu_ps(w + i)), _mm256_mul_ps(_mm256_mul_ps(x8, rv), dv));
			_mm256_storeu_ps(dr + i, _mm256_add_ps(_mm256_loadu_ps(dr + i), _mm256_mul_ps(rv, t)));
		}
		for (; i < C; i++) dr[i] += rr * (gr[i] * w[i] - xr[i] * rr * dot);
	}
}

// Attention's heads on the thread pool of blas_openblas.go (estkit_pool_run,
// pool thread p computing units p·U/parts up to (p+1)·U/parts of the U =
// B·NKV (batch row, key/value group) units, a unit's heads in turn): the
// same single-threaded sgemm calls and row kernels as attentionBLAS and
// attentionBackwardBLAS in attention_blas.go make, so the same bits. A
// goroutine per part, each in cgo calls, ran a T=1024 layer at 1.6-1.7
// times one worker's speed on two.
#include <cblas.h>
#include <stdlib.h>
typedef void (*estkit_pool_fn)(void *arg, int p);
int estkit_pool_run(estkit_pool_fn fn, void *arg, int parts);

typedef struct {
	float *out, *att, *dqkv;
	const float *in, *dout;
	int B, T, NH, NKV, HS, block, parts, wide; // wide: the AVX-512 row kernels
	float scale;
} estkit_att;

static long estkit_kv_off(const estkit_att *g, int h, int part) {
	return (long)(g->NH + part * g->NKV) * g->HS + (long)(h / (g->NH / g->NKV)) * g->HS;
}

static long estkit_block_end(const estkit_att *g, long t) {
	long e = (t / g->block + 1) * g->block;
	return e < g->T ? e : g->T;
}

__attribute__((target("avx2"))) static void estkit_att_fwd_head(const estkit_att *g, int b, int h) {
	long T = g->T, HS = g->HS, W = (long)(g->NH + 2 * g->NKV) * HS, C = (long)g->NH * HS;
	const float *q = g->in + b * T * W + h * HS, *k = g->in + b * T * W + estkit_kv_off(g, h, 0), *v = g->in + b * T * W + estkit_kv_off(g, h, 1);
	float *s = g->att + ((long)b * g->NH + h) * T * T;
	for (long r0 = 0; r0 < T; r0 += g->block) {
		long r1 = r0 + g->block < T ? r0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, HS, g->scale, q + r0 * W, W, k, W, 0, s + r0 * T, T);
	}
	for (long t = 0; t < T; t++) {
		float *row = s + t * T;
		float m = estkit_row_max(row, t + 1);
		if (g->wide) estkit_scale_row16(row, 1 / estkit_sum_exp16(row, row, m, t + 1), t + 1);
		else estkit_scale_row(row, 1 / estkit_sum_exp(row, row, m, t + 1), t + 1);
		memset(row + t + 1, 0, (estkit_block_end(g, t) - t - 1) * sizeof(float));
	}
	for (long r0 = 0; r0 < T; r0 += g->block) {
		long r1 = r0 + g->block < T ? r0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, HS, r1, 1, s + r0 * T, T, v, W, 0, g->out + b * T * C + r0 * C + h * HS, C);
	}
}

// Each part's dS scratch, kept from call to call (one caller at a time
// holds the pool); rows are written before they are read, up to their
// block's end, and never read further.
static float *estkit_att_ds[256];
static long estkit_att_cap[256];

__attribute__((target("avx2"))) static void estkit_att_bwd_head(const estkit_att *g, int b, int h, float *ds) {
	long T = g->T, HS = g->HS, W = (long)(g->NH + 2 * g->NKV) * HS, C = (long)g->NH * HS;
	long ko = b * T * W + estkit_kv_off(g, h, 0), vo = b * T * W + estkit_kv_off(g, h, 1);
	const float *q = g->in + b * T * W + h * HS, *k = g->in + ko, *v = g->in + vo, *dy = g->dout + b * T * C + h * HS;
	float *dq = g->dqkv + b * T * W + h * HS, *dk = g->dqkv + ko, *dv = g->dqkv + vo;
	const float *p = g->att + ((long)b * g->NH + h) * T * T;
	for (long r0 = 0; r0 < T; r0 += g->block) { // dP = dY·Vᵀ
		long r1 = r0 + g->block < T ? r0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, HS, 1, dy + r0 * C, C, v, W, 0, ds + r0 * T, T);
	}
	for (long c0 = 0; c0 < T; c0 += g->block) { // dV += Pᵀ·dY
		long c1 = c0 + g->block < T ? c0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, HS, T - c0, 1, p + c0 * T + c0, T, dy + c0 * C, C, 1, dv + c0 * W, W);
	}
	for (long t = 0; t < T; t++) {
		float *dr = ds + t * T;
		estkit_softmax_grad(dr, p + t * T, g->scale, t + 1);
		memset(dr + t + 1, 0, (estkit_block_end(g, t) - t - 1) * sizeof(float));
	}
	for (long r0 = 0; r0 < T; r0 += g->block) { // dQ += dS·K
		long r1 = r0 + g->block < T ? r0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, HS, r1, 1, ds + r0 * T, T, k, W, 1, dq + r0 * W, W);
	}
	for (long c0 = 0; c0 < T; c0 += g->block) { // dK += dSᵀ·Q
		long c1 = c0 + g->block < T ? c0 + g->block : T;
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, HS, T - c0, 1, ds + c0 * T + c0, T, q + c0 * W, W, 1, dk + c0 * W, W);
	}
}

static void estkit_att_part(void *arg, int p, int backward) {
	const estkit_att *g = arg;
	long U = (long)g->B * g->NKV, per = g->NH / g->NKV;
	float *ds = NULL;
	if (backward) {
		long need = (long)g->T * g->T;
		if (estkit_att_cap[p] < need) {
			free(estkit_att_ds[p]);
			estkit_att_ds[p] = malloc(need * sizeof(float));
			estkit_att_cap[p] = estkit_att_ds[p] ? need : 0;
		}
		ds = estkit_att_ds[p];
		if (!ds) abort(); // out of memory, as Go's make would be fatal
	}
	for (long u = U * p / g->parts; u < U * (p + 1) / g->parts; u++) {
		int b = u / g->NKV, gr = u % g->NKV;
		for (int h = gr * per; h < (gr + 1) * per; h++) {
			if (backward) estkit_att_bwd_head(g, b, h, ds);
			else estkit_att_fwd_head(g, b, h);
		}
	}
}

static void estkit_att_fwd_part(void *arg, int p) { estkit_att_part(arg, p, 0); }
static void estkit_att_bwd_part(void *arg, int p) { estkit_att_part(arg, p, 1); }

static int estkit_attention(estkit_att g, int backward) {
	if (g.parts > 256) return 0;
	return estkit_pool_run(backward ? estkit_att_bwd_part : estkit_att_fwd_part, &g, g.parts);
}
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"
)

// With cgo on amd64, GELU, its gradient, the softmax's exponentials,
// AdamW, the gradient norm's sum of squares, the bias's forward and
// gradient, LayerNorm's and RMSNorm's forward and backward run eight elements at a time
// in AVX2 where the CPU has it: the same operations in the same order as
// the Go loops (expNeg, tanh32), so the results are bit for bit the pure-
// Go kernels' (TestVectorGELUBitExact), at several times their speed.
// Go has no SIMD the compiler emits on its own, and GELU's tanh was a
// quarter of a small model's step (BenchmarkSmallStep; docs/PERF.md), AdamW
// and the sum of squares a fifth of GPT-2 124M's at T=64 (BenchmarkGPT2Step).
// avx512: the row kernels of the cross-entropy and softmaxes (sumExp,
// scaleRow) and GELU use their sixteen-wide forms; set at start where the
// CPU has AVX-512, and switched by the tests to check both forms.
var avx512, hasAVX512 bool

func init() {
	if C.estkit_has_avx2() == 0 {
		return
	}
	avx512 = C.estkit_has_avx512() != 0
	hasAVX512 = avx512
	expShifted = func(x []float32, m float32) {
		if len(x) > 0 {
			C.estkit_exp_shifted((*C.float)(&x[0]), C.float(m), C.long(len(x)))
		}
	}
	attentionPool = func(out, att, dqkv, in, dout []float32, B, T, NH, NKV, HS, parts int, backward bool) bool {
		g := C.estkit_att{att: (*C.float)(&att[0]), in: (*C.float)(&in[0]),
			B: C.int(B), T: C.int(T), NH: C.int(NH), NKV: C.int(NKV), HS: C.int(HS), block: attnBlock, parts: C.int(parts), wide: cbool(avx512),
			scale: C.float(1 / math.Sqrt(float64(HS)))}
		bw := C.int(0)
		if backward {
			g.dqkv, g.dout, bw = (*C.float)(&dqkv[0]), (*C.float)(&dout[0]), 1
		} else {
			g.out = (*C.float)(&out[0])
		}
		return C.estkit_attention(g, bw) != 0
	}
	softmaxGradRange = func(dr, p []float32, scale float32) {
		if len(p) > 0 {
			C.estkit_softmax_grad((*C.float)(&dr[:len(p)][0]), (*C.float)(&p[0]), C.float(scale), C.long(len(p)))
		}
	}
	adamwRange = func(u adamw, p, g, m, v []float32) {
		if len(p) > 0 {
			C.estkit_adamw((*C.float)(&p[0]), (*C.float)(&g[0]), (*C.float)(&m[0]), (*C.float)(&v[0]), C.long(len(p)),
				C.float(u.beta1), C.float(u.beta2), C.float(u.eps), C.float(u.scale), C.float(u.decay), C.float(u.stepSize), C.float(u.rbc2), zeroArg(u.zero))
		}
	}
	sumSquaresRange = func(x []float32) float64 {
		if len(x) == 0 {
			return 0
		}
		return float64(C.estkit_sumsq((*C.float)(&x[0]), C.long(len(x))))
	}
	adamwRows = func(u adamw, p, g, m, v []float32, width int, has []bool) {
		if len(has) > 0 && width > 0 {
			C.estkit_adamw_rows((*C.float)(&p[0]), (*C.float)(&g[0]), (*C.float)(&m[0]), (*C.float)(&v[0]), C.long(width), C.long(len(has)),
				(*C.uchar)(unsafe.Pointer(&has[0])), C.float(u.beta1), C.float(u.beta2), C.float(u.eps), C.float(u.scale), C.float(u.decay),
				C.float(u.stepSize), C.float(u.rbc2), zeroArg(u.zero))
		}
	}
	sumSquaresPieces = func(x []float32, spans []int, out []float64) {
		if len(out) > 0 {
			C.estkit_sumsq_spans((*C.float)(&x[0]), (*C.long)(unsafe.Pointer(&spans[0])), C.long(len(out)), (*C.double)(&out[0]))
		}
	}
	sumSquares4 = func(x0, x1, x2, x3 []float32) (out [4]float64) {
		n := len(x0)
		if n == 0 || len(x1) != n || len(x2) != n || len(x3) != n {
			panic("cpu: sumSquares4 of parts of unequal or no length")
		}
		C.estkit_sumsq4((*C.float)(&x0[0]), (*C.float)(&x1[0]), (*C.float)(&x2[0]), (*C.float)(&x3[0]), C.long(n), (*C.double)(&out[0]))
		return out
	}
	addBiasRows = func(y, bias []float32, rows, cols int) {
		if rows > 0 && cols > 0 {
			C.estkit_add_bias((*C.float)(&y[0]), (*C.float)(&bias[0]), C.long(rows), C.long(cols))
		}
	}
	colSums = func(acc, g []float32, rows, cols, c0 int) {
		if rows > 0 && len(acc) > 0 {
			C.estkit_col_sums((*C.float)(&acc[0]), (*C.float)(&g[0]), C.long(rows), C.long(cols), C.long(c0), C.long(len(acc)))
		}
	}
	ceMax = func(x []float32) float32 {
		if len(x) == 0 {
			return float32(math.Inf(-1))
		}
		return float32(C.estkit_row_max((*C.float)(&x[0]), C.long(len(x))))
	}
	ceSumExp = func(d, x []float32, m float32) float64 {
		if len(x) == 0 {
			return 0
		}
		var dp *C.float
		if d != nil {
			dp = (*C.float)(&d[:len(x)][0])
		}
		if avx512 {
			return float64(C.estkit_sum_exp16(dp, (*C.float)(&x[0]), C.float(m), C.long(len(x))))
		}
		return float64(C.estkit_sum_exp(dp, (*C.float)(&x[0]), C.float(m), C.long(len(x))))
	}
	ceScale = func(d []float32, k float64) {
		if len(d) == 0 {
			return
		}
		if avx512 {
			C.estkit_scale_row16((*C.float)(&d[0]), C.double(k), C.long(len(d)))
			return
		}
		C.estkit_scale_row((*C.float)(&d[0]), C.double(k), C.long(len(d)))
	}
	scatterAddRows = func(d, s []float32, rows []int32, width int) {
		if len(rows) > 0 && width > 0 {
			_ = s[len(rows)*width-1] // the bounds Go's loop would check, before C writes
			for _, r := range rows {
				if r < 0 || (int(r)+1)*width > len(d) {
					panic(fmt.Sprintf("cpu: row %d outside %d rows", r, len(d)/width))
				}
			}
			C.estkit_scatter_add_rows((*C.float)(&d[0]), (*C.float)(&s[0]), (*C.int32_t)(&rows[0]), C.long(len(rows)), C.long(width))
		}
	}
	scatterAddRuns = func(d, s []float32, runs []int32, n, width, k int) {
		if len(runs) > 0 && n > 0 {
			_, _ = d[n*width-1], s[n*k-1] // the bounds Go's loop would check, before C writes
			for q := 0; q < len(runs); q += 3 {
				if runs[q] < 0 || int(runs[q]+runs[q+2]) > width || int(runs[q+1]+runs[q+2]) > k {
					panic(fmt.Sprintf("cpu: column run %d+%d outside %d columns", runs[q], runs[q+2], width))
				}
			}
			C.estkit_scatter_add_runs((*C.float)(&d[0]), (*C.float)(&s[0]), (*C.int32_t)(&runs[0]), C.long(len(runs)/3), C.long(n), C.long(width), C.long(k))
		}
	}
	lnForwardRows = func(out, mean, rstd, x, w, b []float32, cols int) {
		if n := len(mean); n > 0 && cols > 0 {
			_, _, _, _, _ = out[n*cols-1], rstd[n-1], x[n*cols-1], w[cols-1], b[cols-1] // the bounds Go's loop would check, before C writes
			C.estkit_layernorm((*C.float)(&out[0]), (*C.float)(&mean[0]), (*C.float)(&rstd[0]), (*C.float)(&x[0]),
				(*C.float)(&w[0]), (*C.float)(&b[0]), C.long(n), C.long(cols))
		}
	}
	lnBackwardRows = func(dx, acc, g, x, w, mean, rstd []float32, cols int) {
		if n := len(mean); n > 0 && cols > 0 {
			_, _, _, _, _, _ = dx[n*cols-1], acc[2*cols-1], g[n*cols-1], x[n*cols-1], w[cols-1], rstd[n-1]
			C.estkit_layernorm_backward((*C.float)(&dx[0]), (*C.float)(&acc[0]), (*C.float)(&g[0]), (*C.float)(&x[0]),
				(*C.float)(&w[0]), (*C.float)(&mean[0]), (*C.float)(&rstd[0]), C.long(n), C.long(cols))
		}
	}
	rmsForwardRows = func(out, rstd, x, w []float32, cols int, eps float32) {
		if n := len(rstd); n > 0 && cols > 0 {
			_, _, _ = out[n*cols-1], x[n*cols-1], w[cols-1] // the bounds Go's loop would check, before C writes
			C.estkit_rmsnorm((*C.float)(&out[0]), (*C.float)(&rstd[0]), (*C.float)(&x[0]), (*C.float)(&w[0]), C.long(n), C.long(cols), C.float(eps))
		}
	}
	rmsBackwardRows = func(dx, acc, g, x, w, rstd []float32, cols int) {
		if n := len(rstd); n > 0 && cols > 0 {
			_, _, _, _, _ = dx[n*cols-1], acc[cols-1], g[n*cols-1], x[n*cols-1], w[cols-1]
			C.estkit_rmsnorm_backward((*C.float)(&dx[0]), (*C.float)(&acc[0]), (*C.float)(&g[0]), (*C.float)(&x[0]),
				(*C.float)(&w[0]), (*C.float)(&rstd[0]), C.long(n), C.long(cols))
		}
	}
	geluAVX2 = func(out, x []float32) {
		if len(x) > 0 {
			C.estkit_gelu((*C.float)(&out[:len(x)][0]), (*C.float)(&x[0]), C.long(len(x)))
		}
	}
	geluBackwardAVX2 = func(dx, x, g []float32) {
		if len(x) > 0 {
			C.estkit_gelu_backward((*C.float)(&dx[:len(x)][0]), (*C.float)(&x[0]), (*C.float)(&g[:len(x)][0]), C.long(len(x)))
		}
	}
	geluRange, geluBackwardRange = geluAVX2, geluBackwardAVX2
	if !hasAVX512 {
		return
	}
	// GELU and its gradient were a twentieth of GPT-2 124M's T=1024 step
	// in AVX2 (BenchmarkStepOps): sixteen lanes where the CPU has them
	geluAVX512 = func(out, x []float32) {
		if len(x) > 0 {
			C.estkit_gelu16((*C.float)(&out[:len(x)][0]), (*C.float)(&x[0]), C.long(len(x)))
		}
	}
	geluBackwardAVX512 = func(dx, x, g []float32) {
		if len(x) > 0 {
			C.estkit_gelu_backward16((*C.float)(&dx[:len(x)][0]), (*C.float)(&x[0]), (*C.float)(&g[:len(x)][0]), C.long(len(x)))
		}
	}
	geluRange, geluBackwardRange = geluAVX512, geluBackwardAVX512
	gatherColsAVX512 = func(d, s []float32, cols []int32, n, width int) {
		if k := len(cols); n > 0 && k > 0 {
			_, _ = d[n*k-1], s[n*width-1]
			C.estkit_gather_cols16((*C.float)(&d[0]), (*C.float)(&s[0]), (*C.int32_t)(&cols[0]), C.long(n), C.long(width), C.long(k))
		}
	}
	scatterAddColsAVX512 = func(d, s []float32, cols []int32, n, width int) {
		if k := len(cols); n > 0 && k > 0 {
			_, _ = d[n*width-1], s[n*k-1]
			C.estkit_scatter_add_cols16((*C.float)(&d[0]), (*C.float)(&s[0]), (*C.int32_t)(&cols[0]), C.long(n), C.long(width), C.long(k))
		}
	}
	gatherColsOne, scatterAddColsOne = gatherColsAVX512, scatterAddColsAVX512
}

// The column gathers and scatter-adds of columns one by one in AVX-512,
// for the tests: nil where the CPU lacks it.
var gatherColsAVX512, scatterAddColsAVX512 func(d, s []float32, cols []int32, n, width int)

// The GELU kernels by width, for the tests to check each against the Go
// loops: nil where the CPU lacks them.
var geluAVX2, geluAVX512 func(out, x []float32)
var geluBackwardAVX2, geluBackwardAVX512 func(dx, x, g []float32)

// zeroArg is estkit_adamw's zero argument.
func zeroArg(zero bool) C.int {
	if zero {
		return 1
	}
	return 0
}
