//go:build linux

package train

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// TestFailedCheckpointLeavesNoTemp: a checkpoint whose write fails part
// way (files limited to 1 MiB, RLIMIT_FSIZE: the write fails with EFBIG as
// on a full disk) is an error and leaves no temporary directory behind.
func TestFailedCheckpointLeavesNoTemp(t *testing.T) {
	set := tokenSet(t)
	cfg := tinyRun(set)
	cfg.Steps, cfg.CheckpointEvery, cfg.EvalEvery = 2, 0, 0
	run := filepath.Join(t.TempDir(), "run")
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	signal.Ignore(syscall.SIGXFSZ) // the write fails with EFBIG instead of the signal ending the test
	defer signal.Reset(syscall.SIGXFSZ)
	lim := old
	lim.Cur = 1 << 20
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), cpu.New(), cfg, run, Options{})
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err == nil {
		t.Fatal("a checkpoint larger than the file size limit was written")
	}
	ents, _ := os.ReadDir(filepath.Join(run, ckptDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("the failed checkpoint left %s (%v)", e.Name(), err)
		}
	}
}
