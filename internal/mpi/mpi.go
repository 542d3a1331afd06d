//go:build mpi && cgo

package mpi

/*
#cgo pkg-config: ompi-c
#include <mpi.h>

static int estkit_init(int *provided) {
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
}
static int estkit_rank(int *r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int estkit_size(int *n) { return MPI_Comm_size(MPI_COMM_WORLD, n); }
static int estkit_allreduce_f32(float *x, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int estkit_allgather_i64(long long *send, int n, long long *recv) {
	return MPI_Allgather(send, n, MPI_LONG_LONG, recv, n, MPI_LONG_LONG, MPI_COMM_WORLD);
}
static int estkit_bcast_i64(long long *x, int n, int root) {
	return MPI_Bcast(x, n, MPI_LONG_LONG, root, MPI_COMM_WORLD);
}
static int estkit_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static int estkit_finalize(void) { return MPI_Finalize(); }
static void estkit_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static int estkit_serialized(void) { return MPI_THREAD_SERIALIZED; }
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unsafe"
)

// Built reports whether this build has the MPI binding.
const Built = true

// chunk is the most values one MPI call moves: MPI counts are C ints.
const chunk = 1 << 30

// Comm is MPI_COMM_WORLD: every process of the job. Its methods are
// collectives: every process calls the same ones in the same order.
type Comm struct {
	mu         sync.Mutex // MPI_THREAD_SERIALIZED: one call at a time, from any thread
	rank, size int
	done       bool
}

var (
	once    sync.Once
	world   *Comm
	initErr error
)

// Init starts MPI once per process (a second call returns the same Comm)
// and reads this process's rank and the job's size. Goroutines move
// between threads, so it asks for MPI_THREAD_SERIALIZED (calls from any
// thread, one at a time, which Comm's lock ensures) and refuses less.
func Init() (*Comm, error) {
	once.Do(func() {
		// OpenMPI's handlers for SIGSEGV, SIGBUS, SIGFPE and SIGABRT would
		// replace the Go runtime's, which turns faults into panics; a
		// launcher's setting is kept.
		if _, ok := os.LookupEnv("OMPI_MCA_opal_signal"); !ok {
			os.Setenv("OMPI_MCA_opal_signal", "")
		}
		var provided C.int
		if rc := C.estkit_init(&provided); rc != 0 {
			initErr = fmt.Errorf("mpi: MPI_Init_thread failed (error %d)", int(rc))
			return
		}
		if provided < C.estkit_serialized() {
			initErr = fmt.Errorf("mpi: the MPI library gives thread level %d, below MPI_THREAD_SERIALIZED", int(provided))
			return
		}
		var r, n C.int
		if rc := C.estkit_rank(&r); rc != 0 {
			initErr = fmt.Errorf("mpi: MPI_Comm_rank failed (error %d)", int(rc))
			return
		}
		if rc := C.estkit_size(&n); rc != 0 {
			initErr = fmt.Errorf("mpi: MPI_Comm_size failed (error %d)", int(rc))
			return
		}
		world = &Comm{rank: int(r), size: int(n)}
	})
	return world, initErr
}

// Rank is this process's rank, in [0, Size).
func (c *Comm) Rank() int { return c.rank }

// Size is the number of processes.
func (c *Comm) Size() int { return c.size }

// AllReduceSum replaces x, on every process, by the sum over the
// processes of their x (each process gives the same length).
func (c *Comm) AllReduceSum(x []float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(x) > 0 {
		n := min(len(x), chunk)
		if rc := C.estkit_allreduce_f32((*C.float)(unsafe.Pointer(&x[0])), C.int(n)); rc != 0 {
			return fmt.Errorf("mpi: all-reduce of %d values failed (error %d)", n, int(rc))
		}
		x = x[n:]
	}
	return nil
}

// AllGather fills recv, on every process, with every process's send in
// rank order: recv holds Size()×len(send) values.
func (c *Comm) AllGather(send, recv []int64) error {
	if len(recv) != c.size*len(send) {
		return fmt.Errorf("mpi: all-gather of %d values into %d (want %d×%d)", len(send), len(recv), c.size, len(send))
	}
	if len(send) == 0 {
		return nil
	}
	if len(send) > chunk {
		return fmt.Errorf("mpi: all-gather of %d values: at most %d", len(send), chunk)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc := C.estkit_allgather_i64((*C.longlong)(unsafe.Pointer(&send[0])), C.int(len(send)), (*C.longlong)(unsafe.Pointer(&recv[0]))); rc != 0 {
		return fmt.Errorf("mpi: all-gather of %d values failed (error %d)", len(send), int(rc))
	}
	return nil
}

// Bcast replaces x on every process by root's x.
func (c *Comm) Bcast(x []int64, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("mpi: broadcast from rank %d of %d", root, c.size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(x) > 0 {
		n := min(len(x), chunk)
		if rc := C.estkit_bcast_i64((*C.longlong)(unsafe.Pointer(&x[0])), C.int(n), C.int(root)); rc != 0 {
			return fmt.Errorf("mpi: broadcast of %d values failed (error %d)", n, int(rc))
		}
		x = x[n:]
	}
	return nil
}

// Barrier returns once every process has called it.
func (c *Comm) Barrier() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc := C.estkit_barrier(); rc != 0 {
		return fmt.Errorf("mpi: barrier failed (error %d)", int(rc))
	}
	return nil
}

// Finalize ends MPI in this process; every process calls it before it
// exits normally. A second call does nothing.
func (c *Comm) Finalize() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	if rc := C.estkit_finalize(); rc != 0 {
		return fmt.Errorf("mpi: MPI_Finalize failed (error %d)", int(rc))
	}
	return nil
}

// Abort ends every process of the job with code (MPI_Abort): what a
// process that cannot go on does, so that the others do not wait in a
// collective for it. It does not return.
func (c *Comm) Abort(code int) {
	C.estkit_abort(C.int(code))
}
