package main

import (
	"fmt"

	"github.com/estkit/estkit/internal/mpi"
)

// joinRanks joins the processes a launcher (mpirun, srun) started as one
// data-parallel run: nil for a process started alone, or alone in its
// job, which trains exactly as without a launcher. A build without MPI
// (the default) refuses a launch of several processes, which would
// otherwise train the same run several times over into one directory.
func joinRanks() (*mpi.Comm, error) {
	n, v := mpi.Launched()
	if n <= 1 {
		return nil, nil
	}
	if !mpi.Built {
		return nil, fmt.Errorf("train: launched as one of %d processes (%s=%d), but %w; or start one process without mpirun", n, v, n, mpi.ErrNotBuilt)
	}
	c, err := mpi.Init()
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return c, nil
}

// leaveRanks ends this process's part in a data-parallel run: MPI ends
// normally after a run that succeeded; a rank that failed says so and
// ends the whole job (MPI_Abort), so that no rank waits in a collective
// for it. It returns err where it returns.
func leaveRanks(g *globals, c *mpi.Comm, err error) error {
	if c == nil {
		return err
	}
	if err != nil {
		fmt.Fprintf(g.stderr, "estkit: train: rank %d of %d: %v\n", c.Rank(), c.Size(), err)
		c.Abort(exitFailure)
		return err
	}
	return c.Finalize()
}
