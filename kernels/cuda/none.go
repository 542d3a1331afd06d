//go:build !cuda && !cudaemu

package cuda

import (
	"errors"

	"github.com/estkit/estkit/kernels"
)

// New reports that this binary has no CUDA backend: it was built without
// the cuda tag (make cuda) or the cudaemu tag (the CPU emulator).
func New() (kernels.Ops, error) {
	return nil, errors.New("cuda: estkit was built without CUDA (build with make cuda, or -tags cudaemu for the CPU emulator)")
}

// NewDevice, like New, reports that this binary has no CUDA backend.
func NewDevice(local int) (kernels.Ops, error) { return New() }
