//go:build cuda

package cuda

// emulated: this test binary runs the kernels on a GPU.
const emulated = false
