// Package mpi binds the few MPI calls a data-parallel training run needs
// (OpenMPI's libmpi through cgo): start and end, this process's rank and
// the number of processes, an in-place all-reduce (sum) of float32
// buffers, an all-gather and a broadcast of int64 values, and a barrier.
//
// The binding is compiled only under the build tag mpi (and cgo), so that
// the default build neither links libmpi nor needs its headers; without
// the tag Init returns ErrNotBuilt. Launched reads the launcher's
// environment in every build, so a build without MPI can refuse a
// multi-process launch instead of running N independent copies.
package mpi

import (
	"errors"
	"os"
	"strconv"
)

// ErrNotBuilt is Init's error in a build without the mpi tag.
var ErrNotBuilt = errors.New("this estkit was built without MPI (rebuild with -tags mpi: make mpi)")

// sizeVars are the environment variables in which the usual launchers
// give the number of processes: OpenMPI's mpirun, PMI-1/2 (MPICH's hydra,
// Slurm's srun --mpi=pmi2), PMIx (srun --mpi=pmix, prterun) and MVAPICH.
var sizeVars = []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE"}

// Launched is the number of processes the launcher that started this one
// says the job has, and the variable that says it; 0 and "" when no
// launcher's variable is set (a plain start). A variable that does not
// hold a positive integer is skipped.
func Launched() (int, string) {
	for _, v := range sizeVars {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 0 {
			return n, v
		}
	}
	return 0, ""
}
