//go:build cuda || cudaemu

// The NCCL shim: dlopen of libnccl.so.2 (or a path the user names), then
// the calls through function pointers, as cublas_shim.c does for cuBLAS.
// Nothing of NCCL is needed to build: its header is not included; the
// types below are declared from NCCL's documented API (nccl.h), whose
// values have been stable since 2.10, the oldest release accepted here
// (the first with ncclAvg and ncclBfloat16). Every function returns an
// ncclResult_t, 0 for success.

#include "nccl_shim.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

// ncclUniqueId: an opaque 128-byte struct, passed by value to
// ncclCommInitRank (a struct of the same size and alignment has the same
// calling convention).
typedef struct { char internal[ESTK_NCCL_ID_BYTES]; } nccl_id;
// ncclComm_t: an opaque pointer.
typedef void *nccl_comm;
// ncclDataType_t values used: ncclFloat32 and ncclBfloat16.
enum { nccl_float32 = 7, nccl_bfloat16 = 9 };
// ncclRedOp_t values used: ncclAvg (NCCL 2.10 and later).
enum { nccl_avg = 4 };
// ncclResult_t's ncclInvalidUsage: what the shim returns when called
// before a library is loaded.
enum { nccl_invalid_usage = 5 };

typedef int (*version_fn)(int *);
typedef int (*unique_id_fn)(nccl_id *);
typedef int (*init_rank_fn)(nccl_comm *, int, nccl_id, int);
typedef int (*group_fn)(void);
// the stream is a cudaStream_t: NULL is the legacy default stream, the
// one the backend's kernels run on, so the reduction is ordered after the
// backward pass and before the norm without a synchronisation
typedef int (*allreduce_fn)(const void *, void *, size_t, int, int, nccl_comm, void *);
typedef int (*async_error_fn)(nccl_comm, int *);
typedef int (*comm_fn)(nccl_comm);
typedef const char *(*error_string_fn)(int);

static void *lib;
static char opened[256];
static int loaded_version;
static unique_id_fn unique_id;
static init_rank_fn init_rank;
static group_fn group_start, group_end;
static allreduce_fn allreduce;
static async_error_fn async_error;
static comm_fn comm_abort, comm_destroy;
static error_string_fn error_string;

int estk_nccl_open(const char *path, int *version, char *which, int wlen, char *err, int elen) {
	if (lib) { // once per process
		if (path && *path && strcmp(path, opened) != 0) {
			snprintf(err, elen, "cannot load NCCL (%s): this process has loaded %s already", path, opened);
			return 1;
		}
		snprintf(which, wlen, "%s", opened);
		*version = loaded_version;
		return 0;
	}
	const char *name = path && *path ? path : "libnccl.so.2";
	void *l = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!l) {
		snprintf(err, elen, "cannot load NCCL (%s): %s", name, dlerror());
		return 1;
	}
	version_fn get_version = (version_fn)dlsym(l, "ncclGetVersion");
	unique_id = (unique_id_fn)dlsym(l, "ncclGetUniqueId");
	init_rank = (init_rank_fn)dlsym(l, "ncclCommInitRank");
	group_start = (group_fn)dlsym(l, "ncclGroupStart");
	group_end = (group_fn)dlsym(l, "ncclGroupEnd");
	allreduce = (allreduce_fn)dlsym(l, "ncclAllReduce");
	async_error = (async_error_fn)dlsym(l, "ncclCommGetAsyncError");
	comm_abort = (comm_fn)dlsym(l, "ncclCommAbort");
	comm_destroy = (comm_fn)dlsym(l, "ncclCommDestroy");
	error_string = (error_string_fn)dlsym(l, "ncclGetErrorString");
	if (!get_version || !unique_id || !init_rank || !group_start || !group_end || !allreduce || !async_error || !comm_abort || !comm_destroy || !error_string) {
		snprintf(err, elen, "%s is not NCCL 2.10 or later: it lacks one of ncclGetVersion, ncclGetUniqueId, ncclCommInitRank, ncclGroupStart, ncclGroupEnd, ncclAllReduce, ncclCommGetAsyncError, ncclCommAbort, ncclCommDestroy, ncclGetErrorString", name);
		dlclose(l);
		return 1;
	}
	int v = 0;
	int rc = get_version(&v);
	if (rc != 0) {
		snprintf(err, elen, "%s: ncclGetVersion: %s (ncclResult %d)", name, error_string(rc), rc);
		dlclose(l);
		return 1;
	}
	lib = l;
	loaded_version = v;
	*version = v;
	snprintf(opened, sizeof(opened), "%s", name);
	snprintf(which, wlen, "%s", opened);
	return 0;
}

int estk_nccl_unique_id(void *id) {
	if (!lib) return nccl_invalid_usage;
	nccl_id u;
	int rc = unique_id(&u);
	if (rc == 0) memcpy(id, u.internal, ESTK_NCCL_ID_BYTES);
	return rc;
}

int estk_nccl_init(uintptr_t *comm, int nranks, const void *id, int rank) {
	if (!lib) return nccl_invalid_usage;
	nccl_id u;
	memcpy(u.internal, id, ESTK_NCCL_ID_BYTES);
	nccl_comm c = NULL;
	int rc = init_rank(&c, nranks, u, rank);
	*comm = (uintptr_t)c;
	return rc;
}

int estk_nccl_group_start(void) { return lib ? group_start() : nccl_invalid_usage; }
int estk_nccl_group_end(void) { return lib ? group_end() : nccl_invalid_usage; }

int estk_nccl_allreduce_avg(uintptr_t comm, uintptr_t buf, size_t count, int bf16) {
	if (!lib) return nccl_invalid_usage;
	return allreduce((const void *)buf, (void *)buf, count, bf16 ? nccl_bfloat16 : nccl_float32, nccl_avg, (nccl_comm)comm, NULL);
}

int estk_nccl_async_error(uintptr_t comm, int *result) {
	if (!lib) return nccl_invalid_usage;
	return async_error((nccl_comm)comm, result);
}

int estk_nccl_abort(uintptr_t comm) { return lib ? comm_abort((nccl_comm)comm) : nccl_invalid_usage; }
int estk_nccl_destroy(uintptr_t comm) { return lib ? comm_destroy((nccl_comm)comm) : nccl_invalid_usage; }

const char *estk_nccl_error(int result) {
	if (lib) return error_string(result);
	return result == nccl_invalid_usage ? "NCCL is not loaded" : "NCCL error";
}
