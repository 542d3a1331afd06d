/* A stand-in for the NVIDIA driver library (libcuda.so.1) with the four
 * calls Probe makes, for the tests of Probe and of estkit's hand-off to
 * estkit-cuda on machines without a GPU. FAKE_CUDA_INIT is what cuInit
 * returns (0 by default; 100 is CUDA_ERROR_NO_DEVICE), FAKE_CUDA_DEVICES
 * the number of devices (1 by default; empty is the default too). */
#include <stdlib.h>

static int env(const char *key, int def) {
	const char *v = getenv(key);
	return v && *v ? atoi(v) : def;
}

int cuInit(unsigned int flags) { return env("FAKE_CUDA_INIT", 0); }

int cuDeviceGetCount(int *n) {
	*n = env("FAKE_CUDA_DEVICES", 1);
	return 0;
}

int cuDriverGetVersion(int *v) {
	*v = 12040;
	return 0;
}

int cuGetErrorName(int e, const char **s) {
	switch (e) {
	case 100: *s = "CUDA_ERROR_NO_DEVICE"; return 0;
	case 803: *s = "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"; return 0;
	}
	return 1;
}
