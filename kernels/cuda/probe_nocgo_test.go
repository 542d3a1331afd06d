//go:build !cgo && !cuda && !cudaemu

package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestProbeProc: without cgo, Probe reads what NVIDIA's kernel module
// shows under /proc; here a directory laid out as it would be.
func TestProbeProc(t *testing.T) {
	dir := t.TempDir()
	if err := probeProc(dir); !errors.Is(err, ErrNoDriver) {
		t.Fatalf("no module: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "version"), []byte("NVRM version: 535\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := probeProc(dir); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("no gpus directory: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "gpus"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := probeProc(dir); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("no GPU: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "gpus", "0000:17:00.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := probeProc(dir); err != nil {
		t.Fatalf("one GPU: %v", err)
	}
}
