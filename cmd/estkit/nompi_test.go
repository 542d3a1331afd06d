//go:build !mpi || !cgo

package main

import (
	"strings"
	"testing"
)

// TestTrainRefusesMPIWithoutBuild: a build without MPI launched as one of
// two processes refuses by name instead of training the run twice over;
// as the only process of a launch it trains as ever (TestTrainCLI covers
// the rest).
func TestTrainRefusesMPIWithoutBuild(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	_, errs, code := run(t, "-q", "train", "--preset", "gpt2-tiny", "--data", t.TempDir(), "--out", t.TempDir()+"/run")
	if code != 1 || !strings.Contains(errs, "one of 2 processes (OMPI_COMM_WORLD_SIZE=2)") || !strings.Contains(errs, "without MPI") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
