//go:build openblas && cgo && amd64

package cpu

// The tests' switches between the kernels' eight- and sixteen-wide forms.

// geluVariant and geluBackwardVariant are the AVX2 (0) and AVX-512 (1)
// kernels this build has, nil where the CPU lacks them.
func geluVariant(i int) func(out, x []float32) {
	return [2]func(out, x []float32){geluAVX2, geluAVX512}[i]
}

func geluBackwardVariant(i int) func(dx, x, g []float32) {
	return [2]func(dx, x, g []float32){geluBackwardAVX2, geluBackwardAVX512}[i]
}

// setWide switches the sixteen-wide row kernels on or off where the CPU
// has them and returns whether they were on.
func setWide(on bool) bool {
	was := avx512
	avx512 = on && hasAVX512
	return was
}

// wideKernels says whether the CPU has the sixteen-wide kernels.
func wideKernels() bool { return hasAVX512 }
