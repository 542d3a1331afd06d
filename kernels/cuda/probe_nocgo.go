//go:build !cgo && !cuda && !cudaemu

package cuda

import (
	"fmt"
	"os"
)

// Probe, in a build without cgo, cannot load the driver library to ask
// it, so it asks the kernel driver instead: /proc/driver/nvidia/version
// exists where NVIDIA's kernel module is loaded, and
// /proc/driver/nvidia/gpus holds a directory per GPU it drives. It returns
// nil when both say yes; otherwise an error wrapping ErrNoDriver or
// ErrNoDevice. (The cgo build's Probe asks libcuda.so.1, as the CUDA
// backend will.)
func Probe() error { return probeProc("/proc/driver/nvidia") }

func probeProc(dir string) error {
	if _, err := os.Stat(dir + "/version"); err != nil {
		return fmt.Errorf("%w: NVIDIA's kernel module is not loaded (%v)", ErrNoDriver, err)
	}
	gpus, err := os.ReadDir(dir + "/gpus")
	if err != nil || len(gpus) == 0 {
		return fmt.Errorf("%w: NVIDIA's kernel module drives none (%s/gpus is empty or missing)", ErrNoDevice, dir)
	}
	return nil
}
