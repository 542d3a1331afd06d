// Package cuda implements kernels.Ops on NVIDIA GPUs: the kernels of
// kernels.cu, compiled to PTX (make cuda-ptx) and embedded, launched
// through gorgonia.org/cu (the driver API), and matrix products through
// cuBLAS, which a small C shim loads at run time (dlopen of the
// libcublas the machine has, 11 to 13), so that one binary built on a
// machine without a GPU runs on any recent driver. (It needs one to start:
// gorgonia.org/cu initialises the driver when the program loads and exits
// if that fails. So the cuda build is estkit-cuda, a binary of its own
// that estkit starts for --device cuda after Probe, in the builds without
// the backend, has found a driver and a device.)
//
// Builds: with the tag cuda, the driver backend; with the tag cudaemu, the
// same kernels compiled as C++ and run on the CPU by a small emulator
// (emu.h), so that the conformance suite checks every kernel and its
// launch on machines without a GPU; with neither, New says CUDA was not
// built in, and Probe asks the machine's driver what it has.
package cuda

//go:generate go run ./internal/gen
