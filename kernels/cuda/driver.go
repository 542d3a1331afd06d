//go:build cuda

package cuda

// #cgo LDFLAGS: -ldl
// #include <stdlib.h>
// #include "cublas_shim.h"
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"gorgonia.org/cu"
)

// kernelsPTX is kernels.cu compiled by make cuda-ptx (nvcc, compute_80):
// the driver compiles it for the card at load.
//
//go:embed kernels.ptx
var kernelsPTX string

// driver runs the kernels on one GPU (GPU 0 unless NewDevice picks
// another) through the CUDA driver API, in the device's primary context
// (the one cuBLAS, through the runtime API, uses too), on the default
// stream.
type driver struct {
	ctx   cu.CUContext
	fns   map[string]cu.Function
	label string

	// copier is the stream of the staged batches' copies
	// (driver_stage.go), made at its first use.
	copier cu.Stream
}

// New returns the CUDA backend on GPU 0. ESTKIT_CUBLAS names a libcublas
// to load instead of the first of libcublas.so.13, .12 and .11 found.
//
// gorgonia.org/cu initialises the driver when the program starts and
// exits, before New can say why, when that fails (no driver, or no
// device): a cuda build starts only where a GPU is. It is built against
// CUDA 11.8's headers (Debian's); gorgonia.org/cu v0.9.6 does not compile
// against CUDA 13's, whose cuCtxCreate and cuMemAdvise changed, though the
// binary runs on CUDA 13 drivers.
func New() (*Ops, error) { return NewDevice(0) }

// NewDevice returns the CUDA backend on GPU local modulo the number of
// GPUs: a data-parallel rank passes its rank among the processes of its
// machine, so that the machine's ranks share its GPUs evenly.
func NewDevice(local int) (*Ops, error) {
	d, err := openDriver(local)
	if err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	return newOps(d), nil
}

func openDriver(local int) (*driver, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("counting devices: %w", err)
	}
	if n == 0 {
		return nil, errors.New("no CUDA device")
	}
	if local < 0 {
		return nil, fmt.Errorf("device for local rank %d: ranks count from 0", local)
	}
	ordinal := local % n
	dev, err := cu.GetDevice(ordinal)
	if err != nil {
		return nil, fmt.Errorf("device %d: %w", ordinal, err)
	}
	name, err := dev.Name()
	if err != nil {
		return nil, fmt.Errorf("device %d: %w", ordinal, err)
	}
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if major < 8 {
		return nil, fmt.Errorf("%s: compute capability %d.%d; the kernels need 8.0 or newer", name, major, minor)
	}
	ctx, err := dev.RetainPrimaryCtx()
	if err != nil {
		return nil, fmt.Errorf("%s: primary context: %w", name, err)
	}
	if err := cu.SetCurrentContext(ctx); err != nil {
		return nil, fmt.Errorf("%s: context: %w", name, err)
	}
	jitLog := &cu.JITErrorLogBuffer{Buffer: make([]byte, 8192)}
	mod, err := cu.LoadDataEx(kernelsPTX, jitLog)
	if err != nil {
		msg := strings.TrimRight(string(jitLog.Buffer), "\x00")
		return nil, fmt.Errorf("%s: compiling the kernels' PTX: %w: %s", name, err, msg)
	}
	d := &driver{ctx: ctx, fns: map[string]cu.Function{}}
	for k := range kernelSigs {
		fn, err := mod.Function(k)
		if err != nil {
			return nil, fmt.Errorf("kernel %s: %w", k, err)
		}
		d.fns[k] = fn
	}
	path := C.CString(os.Getenv("ESTKIT_CUBLAS"))
	defer C.free(unsafe.Pointer(path))
	var which, msg [512]C.char
	if C.estk_cublas_open(path, &which[0], C.int(len(which)), &msg[0], C.int(len(msg))) != 0 {
		return nil, errors.New(C.GoString(&msg[0]))
	}
	d.label = fmt.Sprintf("%s, sm_%d%d, driver %d, %s", name, major, minor, cu.Version(), C.GoString(&which[0]))
	if ordinal != 0 {
		d.label = fmt.Sprintf("GPU %d: %s", ordinal, d.label)
	}
	return d, nil
}

// enter makes the context current on this OS thread for one call.
func (d *driver) enter() (func(), error) {
	runtime.LockOSThread()
	if err := cu.SetCurrentContext(d.ctx); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return runtime.UnlockOSThread, nil
}

func (d *driver) name() string { return d.label }

func (d *driver) alloc(bytes int) (uintptr, error) {
	leave, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	bytes = (bytes + 3) &^ 3
	p, err := cu.MemAlloc(int64(bytes))
	if err != nil {
		return 0, fmt.Errorf("allocating %d bytes: %w", bytes, err)
	}
	if err := cu.MemsetD32(p, 0, int64(bytes/4)); err != nil {
		return 0, err
	}
	return uintptr(p), nil
}

func (d *driver) upload(dst uintptr, src unsafe.Pointer, bytes int) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	return cu.MemcpyHtoD(cu.DevicePtr(dst), src, int64(bytes))
}

func (d *driver) download(dst unsafe.Pointer, src uintptr, bytes int) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := cu.MemcpyDtoH(dst, cu.DevicePtr(src), int64(bytes)); err != nil {
		return fmt.Errorf("%w (the error may be an earlier kernel's)", err)
	}
	return nil
}

func (d *driver) copy(dst, src uintptr, bytes int) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	return cu.MemcpyDtoD(cu.DevicePtr(dst), cu.DevicePtr(src), int64(bytes))
}

func (d *driver) launch(kernel string, grid, block [3]int, args []uint64) error {
	fn, ok := d.fns[kernel]
	if !ok {
		return fmt.Errorf("no kernel %s", kernel)
	}
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	params := make([]unsafe.Pointer, len(args))
	for i := range args {
		params[i] = unsafe.Pointer(&args[i])
	}
	if err := fn.Launch(grid[0], grid[1], grid[2], block[0], block[1], block[2], 0, cu.NoStream, params); err != nil {
		return fmt.Errorf("launch %s: %w", kernel, err)
	}
	return nil
}

func (d *driver) gemm(g gemm) error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	var msg [256]C.char
	if C.estk_cublas_gemm(cbool(g.ta), cbool(g.tb), C.int(g.m), C.int(g.n), C.int(g.k), C.float(g.alpha),
		C.uintptr_t(g.a), C.int(g.lda), C.uintptr_t(g.b), C.int(g.ldb), C.float(g.beta), C.uintptr_t(g.c), C.int(g.ldc),
		cbool(g.round), cbool(g.abBF16), cbool(g.cBF16), &msg[0], C.int(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

func (d *driver) sync() error {
	leave, err := d.enter()
	if err != nil {
		return err
	}
	defer leave()
	return cu.Synchronize()
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (d *driver) free() (int64, error) {
	leave, err := d.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	free, _, err := cu.MemInfo()
	return free, err
}
