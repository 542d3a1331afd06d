//go:build unix

package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/estkit/estkit/kernels/cpu"
)

// TestConfigFileKinds: a --config or --init-from that is not a regular
// file (a device, a FIFO), or a --config over its size cap, is refused up
// front, naming it, without reading it.
func TestConfigFileKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, append([]byte(strings.Repeat(" ", 2<<20)), "{}"...), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ file, want string }{
		"big":      {big, "larger than"},
		"dev-zero": {"/dev/zero", "not a regular file"},
		"fifo":     {fifo, "not a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := resolve(t, "config", c.file, "data", "d")
			if err == nil || !strings.Contains(err.Error(), c.file) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("--config %s: %v", c.file, err)
			}
		})
	}
	set := tokenSet(t)
	for _, f := range []string{"/dev/zero", fifo} {
		cfg := tinyRun(set)
		cfg.InitFrom = f
		_, err := Run(context.Background(), cpu.New(), cfg, filepath.Join(t.TempDir(), "run"), Options{})
		if err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("--init-from %s: %v", f, err)
		}
	}
}
