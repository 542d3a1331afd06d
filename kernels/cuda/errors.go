package cuda

import "errors"

// What Probe finds missing on a machine, for a build without the backend
// to say why --device cuda cannot run there.
var (
	// ErrNoDriver: no NVIDIA driver library, or one that does not
	// initialise.
	ErrNoDriver = errors.New("no NVIDIA driver")
	// ErrNoDevice: the driver runs but finds no GPU.
	ErrNoDevice = errors.New("no CUDA device")
)
