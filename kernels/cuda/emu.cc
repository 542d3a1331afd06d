//go:build cudaemu && !cuda

// The CPU emulator of the CUDA backend (build tag cudaemu): kernels.cu
// compiled as C++ under emu.h, launched block by block with one coroutine
// per GPU thread, and a column-major matrix product with cuBLAS's
// semantics in place of cuBLAS.

#include "emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.cu"

#include "emu_table.inc"

#include "emu_api.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

// Coroutines: on x86-64 a switch saves the callee-saved registers on the
// old stack and pops them off the new one (ucontext's swapcontext makes a
// system call per switch, which made the suite ten times slower); other
// processors use ucontext.
#if defined(__x86_64__)
extern "C" void emu_switch(void **save, void *to);
__asm__(".text\n"
	".globl emu_switch\n"
	".type emu_switch,@function\n"
	"emu_switch:\n"
	"\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
	"\tmovq %rsp, (%rdi)\n"
	"\tmovq %rsi, %rsp\n"
	"\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
	"\tret\n"
	".size emu_switch, .-emu_switch\n");
struct Context {
	void *sp;
};
static void ctx_switch(Context *from, Context *to) { emu_switch(&from->sp, to->sp); }
static void ctx_make(Context *c, char *stack, size_t size, void (*fn)()) {
	uint64_t *sp = (uint64_t *)((uintptr_t)(stack + size) & ~(uintptr_t)15);
	*--sp = 0;              // fn's return address: fn never returns
	*--sp = (uint64_t)fn;   // where emu_switch's ret goes
	for (int i = 0; i < 6; i++) *--sp = 0;
	c->sp = sp;
}
#else
#include <ucontext.h>
struct Context {
	ucontext_t uc;
};
static void ctx_switch(Context *from, Context *to) { swapcontext(&from->uc, &to->uc); }
static void ctx_make(Context *c, char *stack, size_t size, void (*fn)()) {
	getcontext(&c->uc);
	c->uc.uc_stack.ss_sp = stack;
	c->uc.uc_stack.ss_size = size;
	c->uc.uc_link = NULL;
	makecontext(&c->uc, fn, 0);
}
#endif

namespace {

enum { RUN = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };

const size_t kStack = 64 << 10;

struct Thread {
	Context ctx;
	int state;
	unsigned gen;
	dim3 idx;
};

Context sched;
Thread *threads;
char *stacks;
int nthreads, cur, capacity;
int *order;        // the order threads run in within a round
uint64_t rng = 1;  // xorshift state of the shuffled order
uint64_t *slots[2];
void (*kernel)(const uint64_t *);
const uint64_t *kargs;

void entry() {
	kernel(kargs);
	threads[cur].state = DONE;
	ctx_switch(&threads[cur].ctx, &sched);
	abort(); // a finished thread is never resumed
}

bool grow(int n) {
	if (n <= capacity) return true;
	free(threads);
	free(stacks);
	free(slots[0]);
	free(slots[1]);
	free(order);
	order = (int *)calloc(n, sizeof(int));
	threads = (Thread *)calloc(n, sizeof(Thread));
	stacks = (char *)malloc(kStack * n);
	slots[0] = (uint64_t *)calloc(n, 8);
	slots[1] = (uint64_t *)calloc(n, 8);
	if (!threads || !stacks || !slots[0] || !slots[1] || !order) {
		capacity = 0;
		return false;
	}
	capacity = n;
	return true;
}

// set_order sets the order of the next round: threads in index order,
// in reverse, or shuffled (emu_set_order). On a GPU nothing orders two
// threads' accesses between barriers; running them in several orders
// makes a kernel that relies on one (a race) give a different result.
int order_mode;

uint64_t next_rand() {
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

void set_order() {
	for (int i = 0; i < nthreads; i++) order[i] = order_mode == 1 ? nthreads - 1 - i : i;
	if (order_mode == 2)
		for (int i = nthreads - 1; i > 0; i--) {
			int j = (int)(next_rand() % (uint64_t)(i + 1)), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
}

// run_block runs one block to its end; it returns an error message or
// NULL.
const char *run_block() {
	for (int i = 0; i < nthreads; i++) {
		Thread &t = threads[i];
		t.state = RUN;
		t.gen = 0;
		t.idx.x = i % blockDim.x;
		t.idx.y = i / blockDim.x % blockDim.y;
		t.idx.z = i / (blockDim.x * blockDim.y);
		ctx_make(&t.ctx, stacks + kStack * i, kStack, entry);
	}
	for (;;) {
		set_order();
		for (int k = 0; k < nthreads; k++) {
			int i = order[k];
			if (threads[i].state != RUN) continue;
			cur = i;
			threadIdx = threads[i].idx;
			ctx_switch(&sched, &threads[i].ctx);
		}
		// every thread now waits or is done: release the warps whose
		// live threads all wait at a shuffle, else the block if all its
		// live threads wait at __syncthreads
		bool released = false, live = false, mixed = false, partial = false;
		for (int w = 0; w < nthreads; w += 32) {
			int atWarp = 0, atBlock = 0, done = 0;
			unsigned gen = 0;
			for (int i = w; i < w + 32 && i < nthreads; i++) {
				atWarp += threads[i].state == AT_WARP;
				atBlock += threads[i].state == AT_BLOCK;
				done += threads[i].state == DONE;
				if (threads[i].state == AT_WARP) {
					// every waiting lane is at the same shuffle
					if (gen && threads[i].gen != gen) partial = true;
					gen = threads[i].gen;
				}
			}
			if (atWarp && atBlock) mixed = true;
			if (atWarp && done) partial = true;
			if (atWarp && !atBlock) {
				for (int i = w; i < w + 32 && i < nthreads; i++)
					if (threads[i].state == AT_WARP) threads[i].state = RUN;
				released = true;
			}
			live |= atWarp || atBlock;
		}
		if (mixed) return "divergence: threads of one warp wait at a shuffle and at __syncthreads";
		if (partial) return "divergence: a shuffle not every thread of the warp reaches";
		if (!live) return NULL;
		if (released) continue;
		for (int i = 0; i < nthreads; i++)
			if (threads[i].state == AT_BLOCK) threads[i].state = RUN;
	}
}

} // namespace

void emu_set_order(int mode, uint64_t seed) {
	order_mode = mode;
	rng = seed | 1;
}

void emu_barrier(int kind) {
	threads[cur].state = kind;
	ctx_switch(&threads[cur].ctx, &sched);
}

// emu_exchange: each thread of the warp posts v, waits for the warp, and
// reads its partner's; two slot sets by parity, so that a fast thread's
// next post does not overwrite a value a slow one has yet to read.
uint64_t emu_exchange(uint64_t v, int lane_mask) {
	int me = cur;
	unsigned g = threads[me].gen++ & 1;
	slots[g][me] = v;
	emu_barrier(AT_WARP);
	int partner = me ^ lane_mask;
	if (partner >= nthreads) return v;
	return slots[g][partner];
}

int emu_launch(const char *name, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, const uint64_t *args, char *err, int errlen) {
	kernel = NULL;
	for (size_t i = 0; i < sizeof(emu_kernels) / sizeof(emu_kernels[0]); i++)
		if (strcmp(emu_kernels[i].name, name) == 0) kernel = emu_kernels[i].fn;
	if (!kernel) {
		snprintf(err, errlen, "no kernel %s", name);
		return 1;
	}
	nthreads = (int)(bx * by * bz);
	if (nthreads <= 0 || nthreads > 1024 || gx == 0 || gy == 0 || gz == 0) {
		snprintf(err, errlen, "launch %s: bad shape grid (%u,%u,%u) block (%u,%u,%u)", name, gx, gy, gz, bx, by, bz);
		return 1;
	}
	if (!grow(nthreads)) {
		snprintf(err, errlen, "launch %s: out of memory for %d threads", name, nthreads);
		return 1;
	}
	kargs = args;
	gridDim = dim3{gx, gy, gz};
	blockDim = dim3{bx, by, bz};
	for (unsigned z = 0; z < gz; z++)
		for (unsigned y = 0; y < gy; y++)
			for (unsigned x = 0; x < gx; x++) {
				blockIdx = dim3{x, y, z};
				if (const char *e = run_block()) {
					snprintf(err, errlen, "launch %s, block (%u,%u,%u): %s", name, x, y, z, e);
					return 1;
				}
			}
	return 0;
}

// emu_gemm: cuBLAS's GemmEx over column-major matrices, A and B fp32 (or
// bf16 when ab_bf16; rounded to bf16 first when round_bf16, as cuBLAS's
// 32F_FAST_16BF compute type does), C fp32 (or bf16 when c_bf16), the
// products summed in fp32.
static float emu_load(const void *p, long i, int bf) {
	return bf ? __bfloat162float(((const __nv_bfloat16 *)p)[i]) : ((const float *)p)[i];
}

void emu_gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, int round_bf16, int ab_bf16, int c_bf16) {
	for (int j = 0; j < n; j++)
		for (int i = 0; i < m; i++) {
			float s = 0;
			for (int p = 0; p < k; p++) {
				float a = emu_load(A, ta ? p + (long)i * lda : i + (long)p * lda, ab_bf16);
				float b = emu_load(B, tb ? j + (long)p * ldb : p + (long)j * ldb, ab_bf16);
				if (round_bf16) {
					a = __bfloat162float(__float2bfloat16(a));
					b = __bfloat162float(__float2bfloat16(b));
				}
				s += a * b;
			}
			long c = i + (long)j * ldc;
			float v = beta == 0 ? alpha * s : alpha * s + beta * emu_load(C, c, c_bf16);
			if (c_bf16)
				((__nv_bfloat16 *)C)[c] = __float2bfloat16(v);
			else
				((float *)C)[c] = v;
		}
}
