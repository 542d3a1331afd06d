//go:build cuda || cudaemu

package cuda

// #cgo LDFLAGS: -ldl
// #include <stdlib.h>
// #include "nccl_shim.h"
import "C"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/estkit/estkit/kernels"
)

// ErrNCCL marks the errors of loading NCCL (no libnccl, or one too old):
// a machine's setup, not a failure of the run.
var ErrNCCL = errors.New("NCCL unavailable")

// ErrEmulated is NewReducer's error on the emulator (build tag cudaemu):
// its "device memory" is host memory, which NCCL's kernels cannot read.
var ErrEmulated = errors.New("the CPU emulator's memory is host memory, which NCCL cannot reduce: NCCL needs the cuda build on a GPU")

// ncclEnv names the environment variable that gives the path of a libnccl
// to load instead of libnccl.so.2 (as ESTKIT_CUBLAS does for cuBLAS).
const ncclEnv = "ESTKIT_NCCL"

// minNCCL is NCCL 2.10.0's version code: the first release with ncclAvg
// and ncclBfloat16, both of which the reducer uses.
const minNCCL = 21000

// Ranks is what NewReducer needs of the processes' own collectives
// (internal/mpi's Comm, a train.Comm): this process's rank, their number
// and a broadcast, which carries NCCL's unique id from rank 0 to the rest.
type Ranks interface {
	Rank() int
	Size() int
	Bcast(x []int64, root int) error
}

// collective averages device buffers over the ranks: NCCL on a GPU; the
// tests put a double in its place on the emulator, whose memory NCCL
// cannot read.
type collective interface {
	// allReduceAvg replaces each of bufs, in place, by its mean over the
	// ranks; every rank gives the same lengths and types in the same order.
	allReduceAvg(bufs []Buf) error
	// abort ends the collective at once, without waiting for the other
	// ranks (after an error, so that none waits in a collective for us).
	abort()
	// destroy ends it after the last collective, once every rank is done.
	destroy() error
}

// ncclOpener is a device on which NCCL can run.
type ncclOpener interface {
	openNCCL(r Ranks) (collective, error)
}

// loadNCCL loads libnccl once per process: ESTKIT_NCCL's path, else
// libnccl.so.2 wherever the dynamic loader finds it. It returns the
// library's version code and the name it loaded.
func loadNCCL() (int, string, error) {
	path := C.CString(os.Getenv(ncclEnv))
	defer C.free(unsafe.Pointer(path))
	var which, msg [512]C.char
	var version C.int
	if C.estk_nccl_open(path, &version, &which[0], C.int(len(which)), &msg[0], C.int(len(msg))) != 0 {
		return 0, "", fmt.Errorf("%w: %s (install NCCL 2.10 or later, e.g. the libnccl2 package or PyTorch's nvidia-nccl wheel, or name the library in %s)", ErrNCCL, C.GoString(&msg[0]), ncclEnv)
	}
	v := int(version)
	if v < minNCCL {
		return v, "", fmt.Errorf("%w: %s is version code %d; the reducer needs NCCL 2.10 or later (ncclAvg, ncclBfloat16)", ErrNCCL, C.GoString(&which[0]), v)
	}
	return v, C.GoString(&which[0]), nil
}

// ncclErr wraps an ncclResult_t with what failed.
func ncclErr(what string, rc C.int) error {
	return fmt.Errorf("%s: %s (ncclResult %d)", what, C.GoString(C.estk_nccl_error(rc)), int(rc))
}

// nccl is one rank's NCCL communicator over every rank of the job.
type nccl struct {
	comm       C.uintptr_t
	rank, size int
	// enter makes this rank's CUDA context current on the OS thread for
	// one call: NCCL works on the runtime's current device, which is the
	// current context's.
	enter func() (func(), error)
	ended bool
}

// openNCCL makes this rank's communicator: rank 0 makes the unique id,
// the ranks' own broadcast carries it (with rank 0's status first, so
// that a failure there ends every rank with an error rather than a wait),
// and each rank joins on its current device.
func openNCCL(r Ranks, enter func() (func(), error)) (*nccl, error) {
	rank, size := r.Rank(), r.Size()
	if _, _, err := loadNCCL(); err != nil {
		return nil, fmt.Errorf("rank %d of %d: %w", rank, size, err)
	}
	leave, err := enter()
	if err != nil {
		return nil, fmt.Errorf("rank %d of %d: %w", rank, size, err)
	}
	defer leave()
	var id [C.ESTK_NCCL_ID_BYTES]byte
	msg := make([]int64, 1+len(id)/8) // rank 0's ncclResult, then the id
	var idErr error
	if rank == 0 {
		if rc := C.estk_nccl_unique_id(unsafe.Pointer(&id[0])); rc != 0 {
			idErr = ncclErr("ncclGetUniqueId", rc)
			msg[0] = int64(rc)
		}
		for i := range len(id) / 8 {
			msg[1+i] = int64(binary.LittleEndian.Uint64(id[8*i:]))
		}
	}
	if err := r.Bcast(msg, 0); err != nil {
		return nil, fmt.Errorf("rank %d of %d: broadcasting NCCL's unique id: %w", rank, size, err)
	}
	if idErr != nil {
		return nil, fmt.Errorf("rank 0 of %d: %w", size, idErr)
	}
	if msg[0] != 0 {
		return nil, fmt.Errorf("rank %d of %d: rank 0 could not make NCCL's unique id (ncclResult %d)", rank, size, msg[0])
	}
	for i := range len(id) / 8 {
		binary.LittleEndian.PutUint64(id[8*i:], uint64(msg[1+i]))
	}
	n := &nccl{rank: rank, size: size, enter: enter}
	if rc := C.estk_nccl_init(&n.comm, C.int(size), unsafe.Pointer(&id[0]), C.int(rank)); rc != 0 {
		return nil, fmt.Errorf("rank %d of %d: %w", rank, size, ncclErr("ncclCommInitRank", rc))
	}
	return n, nil
}

func (n *nccl) allReduceAvg(bufs []Buf) error {
	if n.ended {
		return errors.New("ncclAllReduce: the communicator was ended")
	}
	leave, err := n.enter()
	if err != nil {
		return err
	}
	defer leave()
	// one group: NCCL fuses the buffers' reductions into one launch
	if rc := C.estk_nccl_group_start(); rc != 0 {
		return ncclErr("ncclGroupStart", rc)
	}
	var first error
	for _, b := range bufs {
		if b.n == 0 {
			continue
		}
		if rc := C.estk_nccl_allreduce_avg(n.comm, C.uintptr_t(b.p), C.size_t(b.n), cbool(b.bf)); rc != 0 {
			first = ncclErr(fmt.Sprintf("ncclAllReduce of %d %s values", b.n, b.typ()), rc)
			break
		}
	}
	if rc := C.estk_nccl_group_end(); rc != 0 && first == nil {
		first = ncclErr("ncclGroupEnd", rc)
	}
	if first != nil {
		return first
	}
	// a peer's failure or a network error surfaces here, asynchronously
	var async C.int
	if rc := C.estk_nccl_async_error(n.comm, &async); rc != 0 {
		return ncclErr("ncclCommGetAsyncError", rc)
	}
	if async != 0 {
		return ncclErr("NCCL communicator", async)
	}
	return nil
}

func (n *nccl) abort() {
	if n.ended {
		return
	}
	n.ended = true
	if leave, err := n.enter(); err == nil {
		defer leave()
	}
	C.estk_nccl_abort(n.comm)
}

func (n *nccl) destroy() error {
	if n.ended {
		return nil
	}
	n.ended = true
	leave, err := n.enter()
	if err != nil {
		return err
	}
	defer leave()
	if rc := C.estk_nccl_destroy(n.comm); rc != 0 {
		return ncclErr("ncclCommDestroy", rc)
	}
	return nil
}

// Reducer averages the gradients of a data-parallel run's ranks on their
// GPUs with NCCL (train.Reducer): fp32 gradients are reduced in place,
// all of a step's in one NCCL group; with bf16, they are rounded into one
// bfloat16 buffer, reduced there (half the bytes on the wire, at
// bfloat16's precision), and converted back. The mean is NCCL's ncclAvg.
type Reducer struct {
	ops        *Ops
	coll       collective
	rank, size int
	bf16       bool
	packed     Buf   // bf16: the step's gradients, rounded; grown to the largest step
	views      []Buf // the step's gradients, reused
}

// NewReducer joins this process to the run's other ranks in an NCCL
// communicator on ops's GPU (each rank on its own device: NewDevice).
// Every rank calls it, in the same order relative to r's other
// collectives. bf16 reduces in bfloat16. On the emulator it fails, after
// loading NCCL, because NCCL cannot read the emulator's host memory.
func NewReducer(ops *Ops, r Ranks, bf16 bool) (*Reducer, error) {
	dev, ok := ops.dev.(ncclOpener)
	if !ok {
		return nil, fmt.Errorf("cuda: rank %d of %d: %s has no NCCL", r.Rank(), r.Size(), ops.Name())
	}
	coll, err := dev.openNCCL(r)
	if err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return newReducer(ops, coll, r.Rank(), r.Size(), bf16), nil
}

func newReducer(ops *Ops, coll collective, rank, size int, bf16 bool) *Reducer {
	return &Reducer{ops: ops, coll: coll, rank: rank, size: size, bf16: bf16}
}

// Reduce replaces each of grads by its mean over the ranks. ops must be
// the reducer's backend. An error names the rank, and the communicator
// is aborted, so that no other rank waits for this one.
func (r *Reducer) Reduce(ops kernels.Ops, grads []kernels.Buf) error {
	if o, ok := ops.(*Ops); !ok || o != r.ops {
		return fmt.Errorf("cuda: rank %d of %d: Reduce on %s, not the reducer's backend", r.rank, r.size, ops.Name())
	}
	if err := r.ops.Err(); err != nil {
		return err
	}
	r.views = r.views[:0]
	n := 0
	for _, g := range grads {
		b := buf(g)
		n += b.n
		// views that follow one another in memory (the gradients of
		// consecutive tensors) are reduced as one span: fewer NCCL calls
		if k := len(r.views) - 1; k >= 0 && r.views[k].bf == b.bf && r.views[k].p+uintptr(r.views[k].size()*r.views[k].n) == b.p {
			r.views[k].n += b.n
			continue
		}
		r.views = append(r.views, b)
	}
	if err := r.reduce(n); err != nil {
		r.coll.abort()
		return fmt.Errorf("cuda: rank %d of %d: gradient all-reduce: %w", r.rank, r.size, err)
	}
	return nil
}

func (r *Reducer) reduce(n int) error {
	if !r.bf16 {
		return r.coll.allReduceAvg(r.views)
	}
	o := r.ops
	if r.packed.n < n {
		r.packed = o.alloc("Reduce", n, true)
	}
	all := Buf{p: r.packed.p, n: n, bf: true}
	off := 0
	for _, v := range r.views {
		o.Copy(o.Slice(all, off, v.n), v) // rounds to bfloat16
		off += v.n
	}
	if err := o.Err(); err != nil {
		return err
	}
	if err := r.coll.allReduceAvg([]Buf{all}); err != nil {
		return err
	}
	off = 0
	for _, v := range r.views {
		o.Copy(v, o.Slice(all, off, v.n))
		off += v.n
	}
	return o.Err()
}

// Close ends the communicator: destroyed after a run that succeeded on
// every rank, aborted after a failure (failed), which must not wait for
// the other ranks.
func (r *Reducer) Close(failed bool) error {
	if failed {
		r.coll.abort()
		return nil
	}
	if err := r.coll.destroy(); err != nil {
		return fmt.Errorf("cuda: rank %d of %d: %w", r.rank, r.size, err)
	}
	return nil
}
