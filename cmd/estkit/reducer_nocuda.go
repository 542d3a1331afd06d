//go:build !cuda && !cudaemu

package main

import (
	"github.com/estkit/estkit/internal/mpi"
	"github.com/estkit/estkit/kernels"
	"github.com/estkit/estkit/train"
)

// deviceReducer: a build without the CUDA backend reduces over MPI on the
// host (it hands --device cuda to estkit-cuda or estkit-cuda-mpi before
// any run starts).
func deviceReducer(ops kernels.Ops, c *mpi.Comm, bf16 bool) (train.Reducer, func(failed bool) error, error) {
	return nil, nil, nil
}
