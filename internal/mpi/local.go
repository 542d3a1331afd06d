package mpi

import (
	"os"
	"strconv"
)

// localVars are the environment variables in which the usual launchers
// give a process's rank among the job's processes on its own machine:
// OpenMPI's mpirun, MPICH's hydra, Slurm's srun and MVAPICH.
var localVars = []string{"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "MV2_COMM_WORLD_LOCAL_RANK"}

// LocalRank is this process's rank among the job's processes on its
// machine, as the launcher gives it: the GPU a rank takes is its local
// rank modulo the machine's GPUs. 0 when no launcher's variable holds a
// rank (one process, or a launcher that does not say).
func LocalRank() int {
	for _, v := range localVars {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n >= 0 {
			return n
		}
	}
	return 0
}
