//go:build cgo && !cuda && !cudaemu

package cuda

// #cgo LDFLAGS: -ldl
// #include <dlfcn.h>
// #include <stdio.h>
// #include <stdlib.h>
//
// typedef int (*estk_cu_init)(unsigned int);
// typedef int (*estk_cu_int)(int *);
// typedef int (*estk_cu_err_name)(int, const char **);
//
// // estk_probe loads the driver library, initialises it and counts its
// // devices: 0 when that worked (*devices may still be 0), 1 when the
// // library does not load or lacks the driver API, 2 when cuInit fails
// // (*rc is its result). The library stays loaded: a driver that has been
// // initialised must not be unloaded under its own exit handlers.
// static int estk_probe(const char *lib, int *devices, int *version, int *rc, char *msg, int n) {
// 	msg[0] = 0;
// 	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
// 	if (!h) {
// 		snprintf(msg, n, "%s", dlerror());
// 		return 1;
// 	}
// 	estk_cu_init init = (estk_cu_init)dlsym(h, "cuInit");
// 	estk_cu_int count = (estk_cu_int)dlsym(h, "cuDeviceGetCount");
// 	estk_cu_int ver = (estk_cu_int)dlsym(h, "cuDriverGetVersion");
// 	estk_cu_err_name name = (estk_cu_err_name)dlsym(h, "cuGetErrorName");
// 	if (!init || !count || !ver) {
// 		snprintf(msg, n, "%s lacks the CUDA driver API (cuInit, cuDeviceGetCount, cuDriverGetVersion)", lib);
// 		return 1;
// 	}
// 	if (ver(version) != 0) *version = 0;
// 	*rc = init(0);
// 	if (*rc != 0) {
// 		const char *s = 0;
// 		if (name && name(*rc, &s) == 0 && s) snprintf(msg, n, "%s", s);
// 		else snprintf(msg, n, "CUDA error %d", *rc);
// 		return 2;
// 	}
// 	if (count(devices) != 0) *devices = 0;
// 	return 0;
// }
import "C"

import (
	"fmt"
	"unsafe"
)

// Probe asks the machine's NVIDIA driver (libcuda.so.1, loaded here at
// run time, so that a binary without CUDA links nothing of it) whether it
// initialises and how many devices it sees, as gorgonia.org/cu's start
// would, so that a command can say what is missing instead of starting
// the CUDA backend and being ended by it. It returns nil when there is a
// driver and at least one device; otherwise an error wrapping ErrNoDriver
// or ErrNoDevice.
func Probe() error { return probe("libcuda.so.1") }

// cudaErrorNoDevice is CUDA_ERROR_NO_DEVICE (cuda.h), what cuInit returns
// where the driver is installed but finds no GPU.
const cudaErrorNoDevice = 100

func probe(lib string) error {
	clib := C.CString(lib)
	defer C.free(unsafe.Pointer(clib))
	var devices, version, rc C.int
	var msg [512]C.char
	switch C.estk_probe(clib, &devices, &version, &rc, &msg[0], C.int(len(msg))) {
	case 1:
		return fmt.Errorf("%w: %s", ErrNoDriver, C.GoString(&msg[0]))
	case 2:
		if rc == cudaErrorNoDevice {
			return fmt.Errorf("%w: the driver (%s, CUDA %s) finds none (cuInit: %s)", ErrNoDevice, lib, driverVersion(int(version)), C.GoString(&msg[0]))
		}
		return fmt.Errorf("%w: %s (CUDA %s) does not initialise: cuInit: %s", ErrNoDriver, lib, driverVersion(int(version)), C.GoString(&msg[0]))
	}
	if devices == 0 {
		return fmt.Errorf("%w: the driver (%s, CUDA %s) counts none", ErrNoDevice, lib, driverVersion(int(version)))
	}
	return nil
}

// driverVersion writes cuDriverGetVersion's 1000·major + 10·minor as
// major.minor.
func driverVersion(v int) string {
	if v <= 0 {
		return "version unknown"
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}
