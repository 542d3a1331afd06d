//go:build openblas && cgo

package cpu

/*
#cgo LDFLAGS: -lopenblas -lpthread
#define _GNU_SOURCE
#include <cblas.h>
void openblas_set_num_threads(int);
char *openblas_get_corename(void);

// A product cut into pieces, computed on threads of our own: piece q is a
// single-threaded sgemm over a range of C's rows or columns, the range
// goParallel would give (ext*q/pieces up to ext*(q+1)/pieces), and pool
// thread p computes pieces pieces*p/parts up to pieces*(p+1)/parts, while
// the calling thread waits.
typedef struct {
	float *c;
	const float *a, *b;
	int m, n, k, ta, tb, lda, ldb, ldc, pieces, parts, cols;
	float alpha, beta;
} estkit_mm;

// estkit_pool_fn is a part of a job: part p of those the job was split
// into (estkit_pool_run).
typedef void (*estkit_pool_fn)(void *arg, int p);
int estkit_pool_run(estkit_pool_fn fn, void *arg, int parts);

static void estkit_mm_piece(const estkit_mm *j, int q) {
	long ext = j->cols ? j->n : j->m;
	long lo = ext * q / j->pieces, hi = ext * (q + 1) / j->pieces;
	if (hi <= lo) return;
	const float *a = j->a, *b = j->b;
	float *c = j->c;
	int m = j->m, n = j->n;
	if (j->cols) {
		c += lo;
		b += j->tb ? lo * j->ldb : lo;
		n = (int)(hi - lo);
	} else {
		c += lo * j->ldc;
		a += j->ta ? lo : lo * j->lda;
		m = (int)(hi - lo);
	}
	cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans, j->tb ? CblasTrans : CblasNoTrans, m, n, j->k, j->alpha,
		a, j->lda, b, j->ldb, j->beta, c, j->ldc);
}

static void estkit_mm_part(const estkit_mm *j, int p) {
	long lo = (long)j->pieces * p / j->parts, hi = (long)j->pieces * (p + 1) / j->parts;
	for (long q = lo; q < hi; q++) estkit_mm_piece(j, (int)q);
}

#if defined(__linux__) && defined(__x86_64__)
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ESTKIT_MM_MAX 256
#define ESTKIT_SPIN 1000
static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
static estkit_pool_fn mm_fn;
static void *mm_arg;
static int mm_parts;
static atomic_int mm_gen, mm_left;
static int mm_threads;
static int mm_seen0[ESTKIT_MM_MAX]; // the job count when each thread was started
// mm_pin: the first job's parts were as many as the CPUs the process may
// use, so its threads spread over them, one each; with fewer (a CPU quota,
// several processes sharing a machine) they are left to the scheduler, so
// that processes do not all crowd onto the lowest CPUs.
static int mm_pin = -1;

static void estkit_futex_wait(atomic_int *p, int v) { syscall(SYS_futex, p, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0); }
static void estkit_futex_wake(atomic_int *p) { syscall(SYS_futex, p, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0); }

// Each pool thread, pinned to one of the CPUs the process may use (thread
// id to the id-th, round the set) where mm_pin says so, sees every job (the caller waits for
// all of them before it posts the next), computes its part if the job
// has one, and counts itself done. Between jobs it spins for
// ESTKIT_SPIN pauses (tens of microseconds), then sleeps.
static void *estkit_mm_worker(void *arg) {
	int id = (int)(long)arg, seen = mm_seen0[id];
	cpu_set_t allowed;
	if (mm_pin && sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) > 1) {
		int want = id % CPU_COUNT(&allowed), seenCPU = 0;
		for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
			if (!CPU_ISSET(cpu, &allowed)) continue;
			if (seenCPU++ == want) {
				cpu_set_t one;
				CPU_ZERO(&one);
				CPU_SET(cpu, &one);
				pthread_setaffinity_np(pthread_self(), sizeof one, &one);
				break;
			}
		}
	}
	for (;;) {
		int g, spins = 0;
		while ((g = atomic_load(&mm_gen)) == seen) {
			if (spins++ < ESTKIT_SPIN) __builtin_ia32_pause();
			else estkit_futex_wait(&mm_gen, seen);
		}
		seen = g;
		if (id < mm_parts) mm_fn(mm_arg, id);
		if (atomic_fetch_sub(&mm_left, 1) == 1) estkit_futex_wake(&mm_left);
	}
	return NULL;
}

// estkit_pool_run runs fn(arg, p) for parts p on the pool's threads and
// waits; 0 when it cannot (another caller holds the pool, or a thread
// could not start), and the caller splits the work itself.
int estkit_pool_run(estkit_pool_fn fn, void *arg, int parts) {
	if (parts < 2 || parts > ESTKIT_MM_MAX || pthread_mutex_trylock(&mm_lock) != 0) return 0;
	if (mm_pin < 0) {
		cpu_set_t allowed;
		mm_pin = sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) == parts;
	}
	while (mm_threads < parts) {
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		mm_seen0[mm_threads] = atomic_load(&mm_gen);
		int err = pthread_create(&t, &at, estkit_mm_worker, (void *)(long)mm_threads);
		pthread_attr_destroy(&at);
		if (err != 0) {
			pthread_mutex_unlock(&mm_lock);
			return 0;
		}
		mm_threads++;
	}
	mm_fn = fn;
	mm_arg = arg;
	mm_parts = parts;
	atomic_store(&mm_left, mm_threads);
	atomic_fetch_add(&mm_gen, 1);
	estkit_futex_wake(&mm_gen);
	int left, spins = 0;
	while ((left = atomic_load(&mm_left)) != 0) {
		if (spins++ < ESTKIT_SPIN) __builtin_ia32_pause();
		else estkit_futex_wait(&mm_left, left);
	}
	pthread_mutex_unlock(&mm_lock);
	return 1;
}
#else
// elsewhere the Go side splits the work (futexes are Linux's)
int estkit_pool_run(estkit_pool_fn fn, void *arg, int parts) { return 0; }
#endif

static void estkit_mm_job(void *arg, int p) { estkit_mm_part((const estkit_mm *)arg, p); }

static int estkit_mm_run(estkit_mm j) { return estkit_pool_run(estkit_mm_job, &j, j.parts); }
*/
import "C"

import "fmt"

// With -tags openblas (make build, make test), matrix products go through
// OpenBLAS's sgemm: measured here at 70-80 GFLOP/s per core against a few
// for the pure-Go loops, which remain the build without the library.
//
// OpenBLAS runs single-threaded here and the Go side splits each product
// across the cores: OpenBLAS's own idle threads spin (sched_yield) between
// calls and took most of a core from the Go kernels around them.
//
// The parts of a product run on threads of our own (estkit_mm_run), one
// pinned to each CPU the process may use (where the first job spans them
// all: mm_pin), not on goroutines. In GPT-2
// 124M's B=4, T=64 step (BenchmarkStepOps, alternating runs) the blocks'
// products took 484 ms against 510 on goroutines, and at the 0.5:0.5:1
// rates, whose products are half as wide, 248-252 against 308-334 ms. In
// a loop of one product (BenchmarkMatMulDispatch) the gap is wider, 280-
// 300 GFLOP/s against 200-240. A goroutine per part pays the Go
// scheduler's handling of a long cgo call and a parked CPU's wake-up;
// unpinned pool threads measured no better in the step, and threads that
// spin long between products (2 ms) slowed the Go kernels around them.
func init() {
	C.openblas_set_num_threads(1)
	core := blasCore()
	cutForWorkers = core == "SkylakeX" || core == "Cooperlake"
	sgemm = openblasSgemm
	sgemmParts = openblasSgemmParts
}

// arithmetic names OpenBLAS's kernel table and, where its bits depend on
// the cut, the CPU count the products are cut for.
func arithmetic() string {
	core := blasCore()
	if cutForWorkers {
		return "OpenBLAS " + core + " kernels"
	}
	cpus := "CPUs"
	if pieceCPUs == 1 {
		cpus = "CPU"
	}
	return fmt.Sprintf("OpenBLAS %s kernels, products cut for %d %s", core, pieceCPUs, cpus)
}

// blasCore is the name of the core table whose kernels OpenBLAS runs
// (OPENBLAS_CORETYPE, where given, names it).
func blasCore() string { return C.GoString(C.openblas_get_corename()) }

func openblasSgemmParts(c, a, b []float32, m, n, k int, ta, tb bool, alpha, beta float32, lda, ldb, ldc, pieces, parts int, cols bool) bool {
	return C.estkit_mm_run(C.estkit_mm{c: (*C.float)(&c[0]), a: (*C.float)(&a[0]), b: (*C.float)(&b[0]),
		m: C.int(m), n: C.int(n), k: C.int(k), ta: cbool(ta), tb: cbool(tb), lda: C.int(lda), ldb: C.int(ldb), ldc: C.int(ldc),
		pieces: C.int(pieces), parts: C.int(parts), cols: cbool(cols), alpha: C.float(alpha), beta: C.float(beta)}) != 0
}

func cbool(v bool) C.int {
	if v {
		return 1
	}
	return 0
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
