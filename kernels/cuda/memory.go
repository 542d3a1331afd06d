//go:build cuda || cudaemu

package cuda

import "fmt"

// Allocated is the device memory the backend has allocated so far, in
// bytes: every tensor, and the backend's own scratch (index lists,
// SumSquares's partial sums, RoPE's frequencies, the staging slots).
// Nothing is freed before the process ends, so it is also the most the
// backend has held: the figure train.EstimateMemory is checked against.
func (o *Ops) Allocated() int64 { return o.allocated }

// MemoryAvailable is the device memory free for this process to allocate,
// in bytes (train.MemoryReporter): the driver's cuMemGetInfo on a GPU; on
// the emulator, the bytes ESTKIT_CUDAEMU_FREE_MEMORY gives (a fake card's
// free memory, for tests of the refusal), or 0, which says it cannot tell.
func (o *Ops) MemoryAvailable() (int64, error) {
	n, err := o.dev.free()
	if err != nil {
		return 0, fmt.Errorf("cuda: free device memory: %w", err)
	}
	return n, nil
}
