//go:build unix

package train

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/estkit/estkit/internal/testwait"
	"github.com/estkit/estkit/kernels/cpu"
)

// TestLatestPipe: a named pipe in checkpoints/latest's place is refused
// as a corrupt checkpoint is, naming the intact one and saying to take
// the pipe away first; reading it would have blocked every reader of the
// run until something wrote into it.
func TestLatestPipe(t *testing.T) {
	_, run := checkpointedRun(t, 2, 2, 0)
	latest := filepath.Join(run, ckptDir, latestName)
	if err := os.Remove(latest); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(latest, 0o644); err != nil {
		t.Skipf("no named pipes here: %v", err)
	}
	err := testwait.Within(t, "LoadRun of a run whose latest is a pipe", time.Minute, func() error {
		_, _, err := LoadRun(cpu.New(), run)
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%v is not ErrCorrupt", err)
	}
	says(t, "LoadRun", err, latest, "it is a named pipe", "checkpoint step-00000002 is intact", "rm -r "+latest)
}
