//go:build mpi && cgo

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMPINCCLMissingLibrary: mpirun -np 2 of --device cuda (the CPU
// emulator's build, with MPI) where no libnccl is at ESTKIT_NCCL's path:
// every rank fails before training, within the time limit, with an error
// naming the library and its rank; nothing crashes, nothing is written.
func TestMPINCCLMissingLibrary(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Fatalf("mpirun is missing (make mpi-deps installs OpenMPI): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "estkit")
	if out, err := exec.Command("go", "build", "-tags", "mpi cudaemu", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags 'mpi cudaemu': %v\n%s", err, out)
	}
	tok := mpiTokens(t)
	missing := filepath.Join(t.TempDir(), "libnccl.so.2")
	run := filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := mpirun(ctx, bin, 2, "-q", "--device", "cuda", "train", "--preset", "gpt2-tiny", "--data", tok, "--out", run, "--steps", "2", "--seq", "16", "--batch", "2")
	cmd.Env = append(cmd.Env, "ESTKIT_NCCL="+missing)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mpirun did not end within the limit:\n%s", out)
	}
	if err == nil {
		t.Fatalf("mpirun succeeded without NCCL:\n%s", out)
	}
	s := string(out)
	if !strings.Contains(s, "cannot load NCCL ("+missing+")") || !strings.Contains(s, " of 2: ") {
		t.Errorf("the ranks' error does not name the library %s and the rank:\n%s", missing, s)
	}
	for _, bad := range []string{"panic:", "SIGSEGV", "goroutine "} {
		if strings.Contains(s, bad) {
			t.Errorf("a rank crashed (%q):\n%s", bad, s)
		}
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("the run directory exists after a failure before training: %v", err)
	}
}
