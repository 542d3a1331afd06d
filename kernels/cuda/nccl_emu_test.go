//go:build cudaemu && !cuda

package cuda

// emulated: this test binary runs the kernels on the CPU emulator.
const emulated = true
