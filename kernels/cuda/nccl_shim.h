// nccl_shim.h: the few NCCL calls a data-parallel run needs, through
// whichever libnccl the machine has, loaded at run time (see nccl_shim.c).
#ifndef ESTKIT_NCCL_SHIM_H
#define ESTKIT_NCCL_SHIM_H

#include <stddef.h>
#include <stdint.h>

// ESTK_NCCL_ID_BYTES is NCCL_UNIQUE_ID_BYTES: the size of ncclUniqueId.
#define ESTK_NCCL_ID_BYTES 128

int estk_nccl_open(const char *path, int *version, char *which, int wlen, char *err, int elen);
int estk_nccl_unique_id(void *id);
int estk_nccl_init(uintptr_t *comm, int nranks, const void *id, int rank);
int estk_nccl_group_start(void);
int estk_nccl_group_end(void);
int estk_nccl_allreduce_avg(uintptr_t comm, uintptr_t buf, size_t count, int bf16);
int estk_nccl_async_error(uintptr_t comm, int *result);
int estk_nccl_abort(uintptr_t comm);
int estk_nccl_destroy(uintptr_t comm);
const char *estk_nccl_error(int result);

#endif
