//go:build cgo && !cuda && !cudaemu

package cuda

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDriver compiles testdata/fakecuda.c into a libcuda.so.1 of its own
// and returns its path, or skips the test when there is no C compiler.
func fakeDriver(t *testing.T) string {
	t.Helper()
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil || strings.TrimSpace(string(cc)) == "" {
		t.Skipf("no C compiler to build the fake driver with (go env CC: %v)", err)
	}
	lib := filepath.Join(t.TempDir(), "libcuda.so.1")
	if out, err := exec.Command(strings.TrimSpace(string(cc)), "-shared", "-fPIC", "-o", lib, "testdata/fakecuda.c").CombinedOutput(); err != nil {
		t.Fatalf("building the fake driver: %v\n%s", err, out)
	}
	return lib
}

// TestProbe: what Probe reports for each way a machine can lack CUDA, on
// the fake driver whose answers the environment sets.
func TestProbe(t *testing.T) {
	lib := fakeDriver(t)
	cases := []struct {
		name, lib, init, devices string
		want                     error
		says                     string
	}{
		{name: "no library", lib: filepath.Join(t.TempDir(), "libcuda.so.1"), want: ErrNoDriver, says: "libcuda.so.1"},
		{name: "not a driver", lib: "libc.so.6", want: ErrNoDriver, says: "lacks the CUDA driver API"},
		{name: "no device at init", lib: lib, init: "100", want: ErrNoDevice, says: "CUDA_ERROR_NO_DEVICE"},
		{name: "driver mismatch", lib: lib, init: "803", want: ErrNoDriver, says: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"},
		{name: "unnamed error", lib: lib, init: "7", want: ErrNoDriver, says: "CUDA error 7"},
		{name: "zero devices", lib: lib, devices: "0", want: ErrNoDevice, says: "counts none"},
		{name: "one device", lib: lib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("FAKE_CUDA_INIT", c.init)       // "": 0
			t.Setenv("FAKE_CUDA_DEVICES", c.devices) // "": 1
			err := probe(c.lib)
			if c.want == nil {
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("probe: %v; want %v saying %q", err, c.want, c.says)
			}
		})
	}
}
