//go:build openblas && cgo

package cpu

/*
#cgo LDFLAGS: -lopenblas -ldl -lpthread
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *openblas_get_corename(void);

typedef void (*estkit_pool_fn)(void *arg, int p);
int estkit_pool_run(estkit_pool_fn fn, void *arg, int parts);

// OpenBLAS's level-3 pieces for the CPU it chose: the packing routines
// and the inner kernel its sgemm driver calls, found by name (the library
// exports them per core), with the block sizes and register block
// (ix_UM × ix_UN) that driver uses for that core (OpenBLAS 0.3.21's
// param.h and setparam-ref.c; in its DYNAMIC_ARCH build the driver loop
// itself is one for every core). estkit_ix_init leaves ix_kernel NULL for
// any other core.
typedef int (*ix_kernel_fn)(long m, long n, long k, float alpha, float *sa, float *sb, float *c, long ldc);
typedef int (*ix_copy_fn)(long m, long n, float *a, long lda, float *b);
static ix_kernel_fn ix_kernel;
static ix_copy_fn ix_itcopy, ix_incopy, ix_oncopy, ix_otcopy;
static long ix_P, ix_Q, ix_R, ix_UM, ix_UN;
// ix_anyN: the kernel's bits for a column do not depend on how many
// columns a call is given (SkylakeX, Cooperlake), so a scatter may run it
// on tiles of its own width; the Haswell kernel's do, and a scatter makes
// the driver's calls (ix_scatter).
static int ix_anyN;

static void *ix_sym(const char *what, const char *core) {
	char name[64];
	snprintf(name, sizeof name, "sgemm_%s_%s", what, core);
	return dlsym(RTLD_DEFAULT, name);
}

// ix_r is the driver's column block (sgemm_r) for block sizes p and q,
// from OpenBLAS's default buffer of 128 MiB.
static long ix_r(long p, long q) {
	long align = 0x3fff, buf = 32L << 22;
	return ((buf - ((p * q * 4 + align) & ~align)) / (q * 4) - 15) & ~15L;
}

static const char *estkit_ix_init(void) {
	const char *core = openblas_get_corename(), *sfx;
	if (strcmp(core, "SkylakeX") == 0) {
		sfx = "SKYLAKEX";
		ix_P = 448, ix_Q = 448, ix_UM = 16, ix_UN = 4, ix_anyN = 1;
	} else if (strcmp(core, "Cooperlake") == 0) {
		sfx = "COOPERLAKE";
		ix_P = 640, ix_Q = 320, ix_UM = 16, ix_UN = 4, ix_anyN = 1;
	} else if (strcmp(core, "Haswell") == 0 || strcmp(core, "Zen") == 0) {
		sfx = core[0] == 'H' ? "HASWELL" : "ZEN";
		ix_P = 320, ix_Q = 320, ix_UM = 8, ix_UN = 4;
	} else {
		static char why[128];
		snprintf(why, sizeof why, "OpenBLAS runs its %s kernels; their blocking is known for SkylakeX, Cooperlake, Haswell and Zen only", core);
		return why;
	}
	// the gathers and adds below are AVX-512's
	if (!__builtin_cpu_supports("avx512f")) return "the in-place products' gathers need AVX-512, which this CPU has not";
	ix_R = ix_r(ix_P, ix_Q);
	ix_itcopy = (ix_copy_fn)ix_sym("itcopy", sfx);
	ix_incopy = (ix_copy_fn)ix_sym("incopy", sfx);
	ix_oncopy = (ix_copy_fn)ix_sym("oncopy", sfx);
	ix_otcopy = (ix_copy_fn)ix_sym("otcopy", sfx);
	ix_kernel_fn k = (ix_kernel_fn)ix_sym("kernel", sfx);
	if (!ix_itcopy || !ix_incopy || !ix_oncopy || !ix_otcopy || !k) return "OpenBLAS exports no packing routines or kernel for its core";
	ix_kernel = k;
	return NULL;
}

// An operand of the column-major product the driver computes: element
// (i, l) is p[ri·si + rl·sl], where ri is im[i] (or i) and rl lm[l] (or l).
typedef struct {
	const float *p;
	long si, sl;
	const int *im, *lm;
} ix_opnd;

// A part's scratch: the packed blocks (sa, then sb, in one buffer as
// OpenBLAS lays out its own: sb on the first 16 KiB boundary past sa's
// largest block; separate buffers measured the kernel 8% slower), an
// indexed block gathered before OpenBLAS packs it (tmp), and a tile of a
// scattered product (tile), each grown as a product needs.
typedef struct {
	float *buf, *sa, *sb, *tmp, *tile;
	size_t nbuf, ntmp, ntile;
	uint16_t *masks; // ix_masks'
	size_t nmasks;
} ix_scratch;

static float *ix_grow(float **b, size_t *have, size_t need, size_t align) {
	if (*have >= need) return *b;
	free(*b);
	*b = NULL;
	*have = 0;
	if (posix_memalign((void **)b, align, need * sizeof(float)) != 0) {
		*b = NULL;
		return NULL;
	}
	*have = need;
	return *b;
}

// ix_ready sizes s for sb of nsb values, tmp of ntmp and tile of ntile.
static int ix_ready(ix_scratch *s, long nsb, long ntmp, long ntile) {
	long off = ((ix_P * ix_Q * 4 + 0x3fff) & ~0x3fffL) / 4;
	if (!ix_grow(&s->buf, &s->nbuf, off + nsb + 64, 16384) || !ix_grow(&s->tmp, &s->ntmp, ntmp + 64, 64) ||
		(ntile > 0 && !ix_grow(&s->tile, &s->ntile, ntile + 64, 64))) return 0;
	s->sa = s->buf;
	s->sb = s->buf + off;
	return 1;
}

// The driver's block of the depth (min_l), of A's rows (min_i) and of
// B's columns packed at a time in the first row block (min_jj), for what
// is left of each: the depth's block decides which sums a kernel call
// makes, so the bits; the others only where they fall.
static long ix_kblock(long rest) {
	if (rest >= 2 * ix_Q) return ix_Q;
	if (rest > ix_Q) return ((rest / 2 + ix_UM - 1) / ix_UM) * ix_UM;
	return rest;
}

static long ix_iblock(long rest) {
	if (rest >= 2 * ix_P) return ix_P;
	if (rest > ix_P) return ((rest / 2 + ix_UM - 1) / ix_UM) * ix_UM;
	return rest;
}

static long ix_jjblock(long rest) {
	if (rest >= 3 * ix_UN) return 3 * ix_UN;
	if (rest > ix_UN) return ix_UN;
	return rest;
}

// ix_gather16 sets d[t] = s[idx[t]] for t < n ≤ 16 (AVX-512: the
// cores ix_init accepts have it).
__attribute__((target("avx512f"))) static inline void ix_gather16(float *d, const float *s, const int *idx, long n) {
	if (n == 16) {
		_mm512_storeu_ps(d, _mm512_i32gather_ps(_mm512_loadu_si512(idx), s, 4));
		return;
	}
	for (long t = 0; t < n; t++) d[t] = s[idx[t]];
}

// ix_gather sets d[t] = s[idx[t]] for t < n.
__attribute__((target("avx512f"))) static void ix_gather(float *d, const float *s, const int *idx, long n) {
	long t = 0;
	for (; t + 16 <= n; t += 16) ix_gather16(d + t, s, idx + t, 16);
	ix_gather16(d + t, s, idx + t, n - t);
}

// ix_prefetch asks for the cache lines of p[0..n) ahead of their use:
// a gather of many short rows otherwise waits on memory a row at a time,
// where OpenBLAS's own packing reads its rows side by side.
static inline void ix_prefetch(const float *p, long n) {
	for (long q = 0; q < n; q += 16) __builtin_prefetch(p + q);
}

// ix_span is the extent of the values an index list's n entries from
// idx reach, from the first: the lists are sorted (the sampler's), and
// an unsorted one is only prefetched less well.
static long ix_span(const int *idx, long n) {
	long s = (long)idx[n - 1] - idx[0] + 1;
	return s > 0 ? s : 1;
}

// ix_add sets d[i] += t[i] for i < n.
__attribute__((target("avx512f"))) static void ix_add(float *d, const float *t, long n) {
	long i = 0;
	for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_add_ps(_mm512_loadu_ps(d + i), _mm512_loadu_ps(t + i)));
	for (; i < n; i++) d[i] += t[i];
}

// ix_add_at sets d[idx[i]] += t[i] for i < n (idx without repeats, as
// the scatters require).
__attribute__((target("avx512f"))) static void ix_add_at(float *d, const int *idx, const float *t, long n) {
	long i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512i x = _mm512_loadu_si512(idx + i);
		_mm512_i32scatter_ps(d, x, _mm512_add_ps(_mm512_i32gather_ps(x, d, 4), _mm512_loadu_ps(t + i)), 4);
	}
	for (; i < n; i++) d[idx[i]] += t[i];
}

// A sorted index list into the columns of rows (a weight's sampled
// columns, runs of a head's or single neurons) is read and written
// sixteen columns at a time: masks[w] has bit b set where column 16w+b
// is listed. A window's listed values are then the loaded sixteen
// compressed (or, to add into them, the next values expanded), in the
// list's order because it is sorted: about four times fewer
// instructions than a gather or a scatter of each value.

// ix_masks builds the masks of idx[0..n) into s (NULL when it cannot).
static const uint16_t *ix_masks(ix_scratch *s, const int *idx, long n) {
	long w = (long)idx[n - 1] / 16 + 1;
	if ((size_t)w > s->nmasks) {
		free(s->masks);
		s->masks = malloc(w * sizeof(uint16_t));
		s->nmasks = s->masks ? (size_t)w : 0;
		if (!s->masks) return NULL;
	}
	memset(s->masks, 0, w * sizeof(uint16_t));
	for (long i = 0; i < n; i++) s->masks[idx[i] >> 4] |= (uint16_t)(1u << (idx[i] & 15));
	return s->masks;
}

// ix_window is window w's mask cut to the columns c0..c1.
static inline __mmask16 ix_window(const uint16_t *masks, long w, long c0, long c1) {
	uint32_t m = masks[w];
	if (w == c0 >> 4) m &= 0xffffu << (c0 & 15);
	if (w == c1 >> 4) m &= 0xffffu >> (15 - (c1 & 15));
	return (__mmask16)m;
}

// ix_compress writes the listed columns c0..c1 of row src, in order, to
// d. It may write up to 15 values past them (d's buffer has room; what a
// later row or strip writes there replaces them), and it reads no column
// outside c0..c1's windows that is not listed (masked loads).
__attribute__((target("avx512f"))) static void ix_compress(float *d, const float *src, const uint16_t *masks, long c0, long c1) {
	for (long w = c0 >> 4; w <= c1 >> 4; w++) {
		__mmask16 m = ix_window(masks, w, c0, c1);
		_mm512_storeu_ps(d, _mm512_maskz_compress_ps(m, _mm512_maskz_loadu_ps(m, src + 16 * w)));
		d += __builtin_popcount(m);
	}
}

// ix_expand_add adds t's values, in order, to the listed columns c0..c1
// of row d, touching no other column (masked loads and stores).
__attribute__((target("avx512f"))) static void ix_expand_add(float *d, const float *t, const uint16_t *masks, long c0, long c1) {
	for (long w = c0 >> 4; w <= c1 >> 4; w++) {
		__mmask16 m = ix_window(masks, w, c0, c1);
		__m512 v = _mm512_maskz_expandloadu_ps(m, t);
		_mm512_mask_storeu_ps(d + 16 * w, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d + 16 * w), v));
		t += __builtin_popcount(m);
	}
}

// ix_packA packs rows is..is+mi, depth ls..ls+ml, of A as OpenBLAS's
// driver would: itcopy where A's rows are adjacent, incopy where its
// depth is. An indexed block is first gathered into tmp, laid out as the
// copy routine reads it: the whole block where A's rows are adjacent,
// else a strip of ix_UM rows at a time, packed where the whole block's
// call would have put it (a strip's ix_UM·ml values; the last, shorter
// strip as the whole call packs its tail), with the next strip's rows
// prefetched.
static void ix_packA(const ix_opnd *o, long is, long mi, long ls, long ml, float *sa, float *tmp, const uint16_t *masks) {
	if (!o->im && !o->lm) {
		if (o->si == 1) ix_itcopy(ml, mi, (float *)o->p + is + ls * o->sl, o->sl, sa);
		else ix_incopy(ml, mi, (float *)o->p + ls + is * o->si, o->si, sa);
		return;
	}
	if (o->si == 1) { // tmp[l·mi + i] = A(i, l)
		long i0 = o->im ? o->im[is] : is, span = o->im ? ix_span(o->im + is, mi) : mi;
		for (long l = 0; l < ml; l++) {
			if (l + 2 < ml) ix_prefetch(o->p + (o->lm ? (long)o->lm[ls + l + 2] : ls + l + 2) * o->sl + i0, span);
			const float *src = o->p + (o->lm ? (long)o->lm[ls + l] : ls + l) * o->sl;
			if (o->im && masks) ix_compress(tmp + l * mi, src, masks, o->im[is], o->im[is + mi - 1]);
			else if (o->im) ix_gather(tmp + l * mi, src, o->im + is, mi);
			else memcpy(tmp + l * mi, src + is, mi * sizeof(float));
		}
		ix_itcopy(ml, mi, tmp, mi, sa);
		return;
	}
	long l0 = o->lm ? o->lm[ls] : ls, span = o->lm ? ix_span(o->lm + ls, ml) : ml;
	for (long i0 = 0; i0 < mi; i0 += ix_UM) {
		long n = mi - i0 < ix_UM ? mi - i0 : ix_UM;
		for (long t = i0 + ix_UM; t < i0 + 2 * ix_UM && t < mi; t++)
			ix_prefetch(o->p + (o->im ? (long)o->im[is + t] : is + t) * o->si + l0, span);
		for (long t = 0; t < n; t++) { // tmp[t·ml + l] = A(i0+t, l)
			const float *src = o->p + (o->im ? (long)o->im[is + i0 + t] : is + i0 + t) * o->si;
			if (o->lm && masks) ix_compress(tmp + t * ml, src, masks, o->lm[ls], o->lm[ls + ml - 1]);
			else if (o->lm) ix_gather(tmp + t * ml, src, o->lm + ls, ml);
			else memcpy(tmp + t * ml, src + ls, ml * sizeof(float));
		}
		ix_incopy(ml, n, tmp, ml, sa + i0 * ml);
	}
}

// ix_packB packs columns jj..jj+mj, depth ls..ls+ml, of B (never indexed).
static void ix_packB(const ix_opnd *o, long jj, long mj, long ls, long ml, float *sb) {
	if (o->sl == 1) ix_oncopy(ml, mj, (float *)o->p + ls + jj * o->si, o->si, sb);
	else ix_otcopy(ml, mj, (float *)o->p + jj + ls * o->sl, o->sl, sb);
}

// A product, column-major: C(M×N) = alpha·A(M×K)·B(K×N) + beta·C, C at
// c with column stride ldc; or, where ci or cj is set (scatter), C's
// element (i, j) is added at c[ci[i] + cj[j]·ldc] (either map may be
// NULL) of what the product would be into a zeroed C. A row-major product
// reaches it transposed (estkit_ix_part).
typedef struct {
	ix_opnd A, B;
	float *c;
	long ldc;
	const int *ci, *cj;
	long M, N, K;
	float alpha, beta;
	int scatter, parts, splitM;
	int solo;   // the parts run one after another on the calling thread
	int sorted; // the index list is increasing
	int failed; // a part could not allocate its scratch
} ix_job;

// ix_job_masks is the masks of the job's index list where it runs along
// rows (the columns of A's rows, or of C's), else NULL.
static const uint16_t *ix_job_masks(const ix_job *j, ix_scratch *s) {
	if (!j->sorted) return NULL;
	if (j->A.lm && j->A.sl == 1) return ix_masks(s, j->A.lm, j->K);
	if (j->A.im && j->A.si == 1) return ix_masks(s, j->A.im, j->M);
	if (j->ci) return ix_masks(s, j->ci, j->M);
	return NULL;
}

// ix_gemm is OpenBLAS's level-3 driver's loop (driver/level3/level3.c,
// one thread) over our packing: the same blocks in the same order into
// the same kernel, so the same bits as its sgemm over the gathered
// operand (TestMatMulSampledBitExact).
static int ix_gemm(const ix_job *j, ix_scratch *s) {
	long M = j->M, N = j->N, K = j->K, ldc = j->ldc;
	float *c = j->c;
	long mj0 = N < ix_R ? N : ix_R;
	if (!ix_ready(s, ix_Q * mj0, ix_P * ix_Q, 0)) return 0;
	const uint16_t *masks = ix_job_masks(j, s);
	if (j->beta != 1) {
		for (long q = 0; q < N; q++) {
			float *col = c + q * ldc;
			if (j->beta == 0) memset(col, 0, M * sizeof(float));
			else for (long i = 0; i < M; i++) col[i] *= j->beta;
		}
	}
	for (long js = 0, mj; js < N; js += mj) {
		mj = N - js < ix_R ? N - js : ix_R;
		for (long ls = 0, ml; ls < K; ls += ml) {
			ml = ix_kblock(K - ls);
			long mi = ix_iblock(M);
			ix_packA(&j->A, 0, mi, ls, ml, s->sa, s->tmp, masks);
			for (long jj = js, mjj; jj < js + mj; jj += mjj) {
				mjj = ix_jjblock(js + mj - jj);
				float *sb = s->sb + ml * (jj - js);
				ix_packB(&j->B, jj, mjj, ls, ml, sb);
				ix_kernel(mi, mjj, ml, j->alpha, s->sa, sb, c + jj * ldc, ldc);
			}
			for (long is = mi; is < M; is += mi) {
				mi = ix_iblock(M - is);
				ix_packA(&j->A, is, mi, ls, ml, s->sa, s->tmp, masks);
				ix_kernel(mi, mj, ml, j->alpha, s->sa, s->sb, c + is + js * ldc, ldc);
			}
		}
	}
	return 1;
}

// ix_scatter is ix_gemm into zeroed tiles of a block of C's rows, each
// added through the maps as soon as it is done, while it is in cache. The
// depth must fit one block (K ≤ ix_Q), so that a tile holds what the
// driver's C would. The tiles are IX_TILE columns wide where the kernel's
// bits allow (ix_anyN); else they are the driver's own calls: within each
// of its column blocks (ix_R wide), the first row block's by ix_jjblock's
// columns, every later one's over the whole block (TestMatMulScatterWide).
// B's packing does not depend on how it is cut into calls: panels of
// ix_UN columns, and every cut falls on one.
#define IX_TILE 48
static void ix_tile_add(const ix_job *j, const ix_scratch *s, const uint16_t *masks, long is, long mi, long jj, long mjj) {
	for (long q = 0; q < mjj; q++) {
		float *col = j->c + (j->cj ? (long)j->cj[jj + q] : jj + q) * j->ldc;
		const float *t = s->tile + q * mi;
		if (j->ci && masks) ix_expand_add(col, t, masks, j->ci[is], j->ci[is + mi - 1]);
		else if (j->ci) ix_add_at(col, j->ci + is, t, mi);
		else ix_add(col + is, t, mi);
	}
}

static int ix_scatter(const ix_job *j, ix_scratch *s) {
	long M = j->M, N = j->N, K = j->K;
	if (!ix_ready(s, K * N, ix_P * ix_Q, ix_P * (ix_anyN ? IX_TILE : N < ix_R ? N : ix_R))) return 0;
	const uint16_t *masks = ix_job_masks(j, s);
	for (long jj = 0, mjj; jj < N; jj += mjj) { // B packed as the driver's first row block packs it
		mjj = ix_jjblock(N - jj);
		ix_packB(&j->B, jj, mjj, 0, K, s->sb + K * jj);
	}
	for (long is = 0, mi; is < M; is += mi) {
		mi = ix_iblock(M - is);
		ix_packA(&j->A, is, mi, 0, K, s->sa, s->tmp, masks);
		for (long jj = 0, mjj; jj < N; jj += mjj) {
			if (ix_anyN) mjj = N - jj < IX_TILE ? N - jj : IX_TILE;
			else { // within the driver's column block (ix_R wide) holding jj
				long je = jj / ix_R * ix_R + ix_R;
				if (je > N) je = N;
				mjj = is == 0 ? ix_jjblock(je - jj) : je - jj;
			}
			// the tile's destination comes in while the kernel runs
			if (ix_anyN) {
				for (long q = 0; q < mjj; q++) {
					const float *col = j->c + (j->cj ? (long)j->cj[jj + q] : jj + q) * j->ldc;
					if (j->ci) ix_prefetch(col + j->ci[is], ix_span(j->ci + is, mi));
					else ix_prefetch(col + is, mi);
				}
			}
			memset(s->tile, 0, mi * mjj * sizeof(float));
			ix_kernel(mi, mjj, K, j->alpha, s->sa, s->sb + K * jj, s->tile, mi);
			ix_tile_add(j, s, masks, is, mi, jj, mjj);
		}
	}
	return 1;
}

// The parts' scratch: one per pool thread (the pool runs one job at a
// time), and one for a product in one part, taken under its own lock.
#define IX_PARTS 256
static ix_scratch ix_pool_scratch[IX_PARTS];
static ix_scratch ix_solo_scratch;
static pthread_mutex_t ix_solo_lock = PTHREAD_MUTEX_INITIALIZER;

// estkit_ix_part computes part p of the job's parts: a range of C's rows
// (splitM) or columns, as Ops.parallel's ranges split them.
static void estkit_ix_part(ix_job *j, int p, ix_scratch *s) {
	long ext = j->splitM ? j->M : j->N;
	long lo = ext * p / j->parts, hi = ext * (p + 1) / j->parts;
	if (hi <= lo) return;
	ix_job q = *j;
	if (j->splitM) {
		q.M = hi - lo;
		if (q.A.im) q.A.im += lo;
		else q.A.p += lo * q.A.si;
		if (q.ci) q.ci += lo;
		else q.c += lo;
	} else {
		q.N = hi - lo;
		q.B.p += lo * q.B.si;
		if (q.cj) q.cj += lo;
		else q.c += lo * q.ldc;
	}
	if (!(q.scatter ? ix_scatter(&q, s) : ix_gemm(&q, s))) j->failed = 1;
}

static void estkit_ix_job(void *arg, int p) { estkit_ix_part((ix_job *)arg, p, &ix_pool_scratch[p]); }

// estkit_ix_run computes the job: 1 done; 0 not started (the pool or the
// solo scratch is taken), nothing written; -1 when a part could not
// allocate its scratch, after the others wrote theirs.
static int estkit_ix_run(ix_job j) {
	if (!ix_kernel) return 0;
	j.failed = 0;
	if (j.parts > 1 && !j.solo) {
		if (j.parts > IX_PARTS || !estkit_pool_run(estkit_ix_job, &j, j.parts)) return 0;
		return j.failed ? -1 : 1;
	}
	if (pthread_mutex_trylock(&ix_solo_lock) != 0) return 0;
	if (j.parts < 1) j.parts = 1;
	for (int p = 0; p < j.parts; p++) estkit_ix_part(&j, p, &ix_solo_scratch);
	pthread_mutex_unlock(&ix_solo_lock);
	return j.failed ? -1 : 1;
}

static long estkit_ix_depth(void) { return ix_Q; }
*/
import "C"

import "unsafe"

func init() {
	if why := C.estkit_ix_init(); why != nil {
		sampledOff = C.GoString(why)
		return
	}
	sampledRun = openblasSampled
	sampledDepth = int(C.estkit_ix_depth())
}

// openblasSampled runs a sampledJob through OpenBLAS's pieces: 1 done, 0
// declined (nothing written), -1 failed after writing (scratch memory).
func openblasSampled(j *sampledJob) int {
	ip := func(x []int32) *C.int {
		if x == nil {
			return nil
		}
		return (*C.int)(unsafe.Pointer(&x[0]))
	}
	op := func(o sampledOpnd) C.ix_opnd {
		return C.ix_opnd{p: (*C.float)(&o.p[0]), si: C.long(o.si), sl: C.long(o.sl), im: ip(o.im), lm: ip(o.lm)}
	}
	return int(C.estkit_ix_run(C.ix_job{A: op(j.a), B: op(j.b), c: (*C.float)(&j.c[0]), ldc: C.long(j.ldc),
		ci: ip(j.ci), cj: ip(j.cj), M: C.long(j.m), N: C.long(j.n), K: C.long(j.k),
		alpha: C.float(j.alpha), beta: C.float(j.beta), scatter: cbool(j.scatter), parts: C.int(j.parts), splitM: cbool(j.splitM), solo: cbool(j.solo),
		sorted: cbool(j.sorted)}))
}
