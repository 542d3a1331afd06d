//go:build !(openblas && cgo && amd64)

package cpu

// The tests' switches between kernel widths: this build has only the Go loops.

// geluVariant and geluBackwardVariant: this build has no vector GELU.
func geluVariant(int) func(out, x []float32) { return nil }

func geluBackwardVariant(int) func(dx, x, g []float32) { return nil }

// setWide: this build has no sixteen-wide kernels.
func setWide(bool) bool { return false }

// wideKernels: none in this build.
func wideKernels() bool { return false }
