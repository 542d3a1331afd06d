//go:build cuda || cudaemu

package main

import (
	"github.com/estkit/estkit/internal/mpi"
	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/kernels/cuda"
	"github.com/estkit/estkit/train"
)

// deviceReducer joins a data-parallel run's ranks on their GPUs with
// NCCL (kernels/cuda's Reducer, which the ranks' MPI carries the unique id
// for): the gradients are averaged on the devices, not over the host. It
// returns nil for the CPU backend, which reduces through MPI, and the
// function that ends the communicator (aborting it after a failure).
func deviceReducer(ops kernels.Ops, c *mpi.Comm, bf16 bool) (train.Reducer, func(failed bool) error, error) {
	o, ok := ops.(*cuda.Ops)
	if !ok || c == nil {
		return nil, nil, nil
	}
	r, err := cuda.NewReducer(o, c, bf16)
	if err != nil {
		return nil, nil, err
	}
	return r, r.Close, nil
}
