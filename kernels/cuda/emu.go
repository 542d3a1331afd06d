//go:build cudaemu && !cuda

package cuda

// #cgo CXXFLAGS: -O2 -std=c++17 -Wno-unknown-pragmas
// #include <stdlib.h>
// #include <string.h>
// #include "emu_api.h"
//
// // Device pointers travel as integers, and become pointers only here.
// static void emu_memcpy(uintptr_t dst, uintptr_t src, size_t n) { memmove((void *)dst, (const void *)src, n); }
// static void emu_upload(uintptr_t dst, const void *src, size_t n) { memcpy((void *)dst, src, n); }
// static void emu_download(void *dst, uintptr_t src, size_t n) { memcpy(dst, (const void *)src, n); }
// static void emu_gemm_at(int ta, int tb, int m, int n, int k, float alpha, uintptr_t a, int lda, uintptr_t b, int ldb, float beta, uintptr_t c, int ldc, int round, int ab, int cb) {
// 	emu_gemm(ta, tb, m, n, k, alpha, (const void *)a, lda, (const void *)b, ldb, beta, (void *)c, ldc, round, ab, cb);
// }
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"
)

// kernelsSource is embedded only so that the build cache keys this package
// on kernels.cu, which emu.cc includes: go build hashes the C++ files and
// headers of a package but not a .cu file.
//
//go:embed kernels.cu
var kernelsSource string

var _ = kernelsSource

// emu runs the kernels on the CPU (see emu.h): host memory from C's
// allocator stands for device memory.
type emu struct{}

// New returns the CUDA backend over the CPU emulator of this build.
func New() (*Ops, error) { return newOps(emu{}), nil }

// NewDevice is New: the emulator is one device, whatever the local rank.
func NewDevice(local int) (*Ops, error) { return New() }

func (emu) name() string { return "emulated on the CPU" }

func (emu) alloc(bytes int) (uintptr, error) {
	p := C.calloc(C.size_t(bytes), 1)
	if p == nil {
		return 0, errors.New("out of host memory")
	}
	return uintptr(p), nil
}

func (emu) upload(dst uintptr, src unsafe.Pointer, bytes int) error {
	C.emu_upload(C.uintptr_t(dst), src, C.size_t(bytes))
	return nil
}

func (emu) download(dst unsafe.Pointer, src uintptr, bytes int) error {
	C.emu_download(dst, C.uintptr_t(src), C.size_t(bytes))
	return nil
}

func (emu) copy(dst, src uintptr, bytes int) error {
	C.emu_memcpy(C.uintptr_t(dst), C.uintptr_t(src), C.size_t(bytes))
	return nil
}

func (emu) launch(kernel string, grid, block [3]int, args []uint64) error {
	name := C.CString(kernel)
	defer C.free(unsafe.Pointer(name))
	cargs := (*C.uint64_t)(C.malloc(C.size_t(8 * max(len(args), 1))))
	defer C.free(unsafe.Pointer(cargs))
	copy(unsafe.Slice((*uint64)(unsafe.Pointer(cargs)), len(args)), args)
	var msg [256]C.char
	if C.emu_launch(name, C.uint(grid[0]), C.uint(grid[1]), C.uint(grid[2]), C.uint(block[0]), C.uint(block[1]), C.uint(block[2]), cargs, &msg[0], C.int(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

func (emu) gemm(g gemm) error {
	C.emu_gemm_at(cbool(g.ta), cbool(g.tb), C.int(g.m), C.int(g.n), C.int(g.k), C.float(g.alpha),
		C.uintptr_t(g.a), C.int(g.lda), C.uintptr_t(g.b), C.int(g.ldb),
		C.float(g.beta), C.uintptr_t(g.c), C.int(g.ldc), cbool(g.round), cbool(g.abBF16), cbool(g.cBF16))
	return nil
}

func (emu) sync() error { return nil }

// emuFreeMemory names the environment variable that gives the emulator a
// card's free memory, in bytes (unset: it cannot say, and train does not
// check the memory).
const emuFreeMemory = "ESTKIT_CUDAEMU_FREE_MEMORY"

func (emu) free() (int64, error) {
	v := os.Getenv(emuFreeMemory)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: not a number of bytes", emuFreeMemory, v)
	}
	return n, nil
}

// threadOrder sets the order the emulator runs a block's threads in
// between barriers: 0 by index, 1 in reverse, 2 shuffled from seed.
func threadOrder(mode int, seed uint64) { C.emu_set_order(C.int(mode), C.uint64_t(seed)) }

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}
