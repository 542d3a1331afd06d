//go:build !mpi || !cgo

package mpi

// Built reports whether this build has the MPI binding.
const Built = false

// Comm is the job's processes; a build without MPI has none.
type Comm struct{}

// Init returns ErrNotBuilt: this build has no MPI.
func Init() (*Comm, error) { return nil, ErrNotBuilt }

// Rank is 0: one process.
func (c *Comm) Rank() int { return 0 }

// Size is 1: one process.
func (c *Comm) Size() int { return 1 }

// AllReduceSum does nothing: one process holds the sum.
func (c *Comm) AllReduceSum(x []float32) error { return nil }

// AllGather copies send into recv: one process's part.
func (c *Comm) AllGather(send, recv []int64) error { copy(recv, send); return nil }

// Bcast does nothing: the one process is the root.
func (c *Comm) Bcast(x []int64, root int) error { return nil }

// Barrier does nothing.
func (c *Comm) Barrier() error { return nil }

// Finalize does nothing.
func (c *Comm) Finalize() error { return nil }

// Abort does nothing: there is no job to end.
func (c *Comm) Abort(code int) {}
