/* The nccl communicator: one GPU per rank. Reductions are deterministic and identical to the
 * local and mpi communicators': NCCL's own all-reduce sums in an order of its choosing (ring
 * or tree, depending on sizes and topology), so it is not used for data. Instead, as mpi.c
 * does, every rank receives slice r of every rank's buffer (grouped ncclSend/ncclRecv),
 * reduces it over ranks 0, 1, ... in order with a kernel (dl4c_k_reduce_ranks), and the
 * slices are gathered back (ncclAllGather). Buffers may be host memory (staged through the
 * GPU) or device memory. */
#include "dl4c/dist.h"

#ifdef DL4C_HAVE_CUDA
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda_kernels.h"

typedef struct nccl_group nccl_group;

typedef struct nccl_state {
    ncclComm_t comm;        /* this rank's communicator */
    int rank, size;         /* this rank, all ranks */
    int device;             /* its GPU */
    cudaStream_t stream;    /* collectives and copies */
    char *dbuf, *dscr;      /* device: padded buffer [size][per], received slices [size][per] */
    size_t cap;             /* bytes of each */
    dl4c_comm *mpi;         /* world: the MPI communicator that started it (freed with it) */
} nccl_state;

static int nccl_rank(const dl4c_comm *c) { return ((nccl_state *)c->impl)->rank; }
static int nccl_size(const dl4c_comm *c) { return ((nccl_state *)c->impl)->size; }

static dl4c_status nccl_fail(nccl_state *st, ncclResult_t r, const char *what) {
    return dl4c_error(DL4C_ERR_COMM, "NCCL %s failed on rank %d (cuda:%d): %s%s%s", what, st->rank, st->device,
                      ncclGetErrorString(r), st->comm ? ": " : "", st->comm ? ncclGetLastError(st->comm) : "");
}

static dl4c_status cuda_fail(nccl_state *st, cudaError_t e, const char *what) {
    return dl4c_error(DL4C_ERR_COMM, "nccl communicator: %s failed on rank %d (cuda:%d): %s", what, st->rank,
                      st->device, cudaGetErrorString(e));
}

#define NC(x, what) do { ncclResult_t r_ = (x); if (r_ != ncclSuccess) return nccl_fail(st, r_, what); } while (0)
#define CC(x, what) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) return cuda_fail(st, e_, what); } while (0)

static size_t dtype_size(dl4c_dtype t) { return t == DL4C_F32 ? 4 : 8; }

static bool is_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) { cudaGetLastError(); return false; }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static dl4c_status reserve(nccl_state *st, size_t bytes) {
    if (st->cap >= bytes) return DL4C_OK;
    cudaFree(st->dbuf);
    cudaFree(st->dscr);
    st->dbuf = st->dscr = NULL;
    st->cap = 0;
    if (cudaMalloc((void **)&st->dbuf, bytes) != cudaSuccess || cudaMalloc((void **)&st->dscr, bytes) != cudaSuccess) {
        cudaGetLastError();
        cudaFree(st->dbuf);
        st->dbuf = NULL;
        return dl4c_error(DL4C_ERR_NOMEM, "nccl communicator: cuda:%d out of memory for %zu bytes", st->device, bytes);
    }
    st->cap = bytes;
    return DL4C_OK;
}

static dl4c_status nccl_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op) {
    nccl_state *st = c->impl;
    if (st->size == 1 || n == 0) return DL4C_OK;
    CC(cudaSetDevice(st->device), "cudaSetDevice");
    const size_t es = dtype_size(t);
    const int P = st->size, me = st->rank;
    const int64_t per = (n + P - 1) / P;
    const size_t slice = (size_t)per * es;
    dl4c_status s = reserve(st, slice * (size_t)P);
    if (s) return s;
    const bool dev = is_device(buf);
    const enum cudaMemcpyKind in = dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
    const enum cudaMemcpyKind back = dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost;
    CC(cudaMemcpyAsync(st->dbuf, buf, (size_t)n * es, in, st->stream), "copy in");
    if ((int64_t)per * P > n)
        CC(cudaMemsetAsync(st->dbuf + (size_t)n * es, 0, slice * (size_t)P - (size_t)n * es, st->stream), "pad");
    CC(cudaMemcpyAsync(st->dscr + (size_t)me * slice, st->dbuf + (size_t)me * slice, slice,
                       cudaMemcpyDeviceToDevice, st->stream), "own slice");
    NC(ncclGroupStart(), "group start");
    for (int r = 0; r < P; r++) {
        if (r == me) continue;
        NC(ncclSend(st->dbuf + (size_t)r * slice, slice, ncclChar, r, st->comm, st->stream), "send");
        NC(ncclRecv(st->dscr + (size_t)r * slice, slice, ncclChar, r, st->comm, st->stream), "recv");
    }
    NC(ncclGroupEnd(), "send/recv");
    dl4c_k_reduce_ranks(st->stream, t == DL4C_F32 ? 0 : t == DL4C_F64 ? 1 : 2, op == DL4C_REDUCE_SUM ? 0 : 1,
                        st->dscr, st->dbuf + (size_t)me * slice, per, per, P);
    NC(ncclAllGather(st->dbuf + (size_t)me * slice, st->dbuf, slice, ncclChar, st->comm, st->stream), "all-gather");
    CC(cudaMemcpyAsync(buf, st->dbuf, (size_t)n * es, back, st->stream), "copy out");
    CC(cudaStreamSynchronize(st->stream), "synchronize");
    return DL4C_OK;
}

static dl4c_status nccl_broadcast(dl4c_comm *c, void *buf, size_t bytes, int root) {
    nccl_state *st = c->impl;
    if (st->size == 1 || bytes == 0) return DL4C_OK;
    CC(cudaSetDevice(st->device), "cudaSetDevice");
    dl4c_status s = reserve(st, bytes);
    if (s) return s;
    const bool dev = is_device(buf);
    CC(cudaMemcpyAsync(st->dbuf, buf, bytes, dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, st->stream),
       "copy in");
    NC(ncclBroadcast(st->dbuf, st->dbuf, bytes, ncclChar, root, st->comm, st->stream), "broadcast");
    CC(cudaMemcpyAsync(buf, st->dbuf, bytes, dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost, st->stream),
       "copy out");
    CC(cudaStreamSynchronize(st->stream), "synchronize");
    return DL4C_OK;
}

static dl4c_status nccl_barrier(dl4c_comm *c) {
    int64_t one = 1;
    return nccl_allreduce(c, &one, 1, DL4C_I64, DL4C_REDUCE_SUM);
}

static void nccl_free(dl4c_comm *c) {
    nccl_state *st = c->impl;
    cudaSetDevice(st->device);
    if (st->stream) cudaStreamSynchronize(st->stream);
    if (st->comm) ncclCommDestroy(st->comm);
    cudaFree(st->dbuf);
    cudaFree(st->dscr);
    if (st->stream) cudaStreamDestroy(st->stream);
    if (st->mpi) dl4c_comm_free(st->mpi);
    free(st);
    free(c);
}

static const dl4c_comm_ops nccl_ops = {
    .name = "nccl", .rank = nccl_rank, .size = nccl_size, .allreduce = nccl_allreduce,
    .broadcast = nccl_broadcast, .barrier = nccl_barrier, .free = nccl_free,
};

static dl4c_status wrap(nccl_state *st, dl4c_comm **out) {
    dl4c_comm *c = calloc(1, sizeof *c);
    if (!c) return dl4c_error(DL4C_ERR_NOMEM, "nccl communicator: out of memory");
    c->ops = &nccl_ops;
    c->impl = st;
    *out = c;
    return DL4C_OK;
}

static dl4c_status check_device(int device) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        cudaGetLastError();
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "nccl communicator: no CUDA device available");
    }
    if (device < 0 || device >= count)
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "nccl communicator: no device cuda:%d (%d available)", device, count);
    return DL4C_OK;
}

dl4c_status dl4c_comm_nccl_group(int size, const int *devices, dl4c_comm **comms) {
    if (size < 1) return dl4c_error(DL4C_ERR_INVALID_ARG, "nccl communicator: size %d < 1", size);
    for (int r = 0; r < size; r++) {
        dl4c_status s = check_device(devices[r]);
        if (s) return s;
    }
    ncclComm_t *raw = calloc((size_t)size, sizeof *raw);
    if (!raw) return dl4c_error(DL4C_ERR_NOMEM, "nccl communicator: out of memory");
    ncclResult_t r = ncclCommInitAll(raw, size, devices);
    if (r != ncclSuccess) {
        free(raw);
        return dl4c_error(DL4C_ERR_COMM, "ncclCommInitAll over %d GPUs failed: %s", size, ncclGetErrorString(r));
    }
    dl4c_status s = DL4C_OK;
    int made = 0;
    for (int k = 0; k < size && !s; k++) {
        nccl_state *st = calloc(1, sizeof *st);
        if (!st) { s = dl4c_error(DL4C_ERR_NOMEM, "nccl communicator: out of memory"); break; }
        st->comm = raw[k];
        st->rank = k;
        st->size = size;
        st->device = devices[k];
        cudaError_t e = cudaSetDevice(st->device);
        if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) { s = cuda_fail(st, e, "stream"); free(st); break; }
        if ((s = wrap(st, &comms[k]))) { cudaStreamDestroy(st->stream); free(st); break; }
        made = k + 1;
    }
    if (s) {
        for (int k = 0; k < made; k++) dl4c_comm_free(comms[k]);   /* destroys raw[k] */
        for (int k = made; k < size; k++) ncclCommDestroy(raw[k]);
    }
    free(raw);
    return s;
}

/* The rank's place on its host, from the launcher's environment (else the global rank). */
static int local_rank(int rank) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                                       "SLURM_LOCALID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return rank;
}

dl4c_status dl4c_comm_nccl_world(int device, dl4c_comm **out) {
    *out = NULL;
    if (!dl4c_have_mpi())
        return dl4c_error(DL4C_ERR_UNSUPPORTED, "nccl communicator: starting ranks needs MPI, and this dl4c was built without it");
    dl4c_comm *mpi = NULL;
    dl4c_status s = dl4c_comm_mpi_world(&mpi);
    if (s) return s;
    const int rank = dl4c_comm_rank(mpi), size = dl4c_comm_size(mpi);
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) { cudaGetLastError(); count = 0; }
    if (device < 0 && count > 0) device = local_rank(rank) % count;
    /* Every rank must agree before NCCL starts, or the others would wait forever. */
    int64_t bad = (s = check_device(device)) != DL4C_OK;
    dl4c_status cs = dl4c_comm_allreduce(mpi, &bad, 1, DL4C_I64, DL4C_REDUCE_SUM);
    if (s || cs || bad) {
        dl4c_comm_free(mpi);
        return s ? s : cs ? cs : dl4c_error(DL4C_ERR_UNSUPPORTED, "nccl communicator: %lld rank(s) have no GPU", (long long)bad);
    }
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t r = rank == 0 ? ncclGetUniqueId(&id) : ncclSuccess;
    if (r == ncclSuccess) s = dl4c_comm_broadcast(mpi, &id, sizeof id, 0);
    nccl_state *st = calloc(1, sizeof *st);
    if (r != ncclSuccess || s || !st) {
        free(st);
        dl4c_comm_free(mpi);
        return s ? s : r != ncclSuccess ? dl4c_error(DL4C_ERR_COMM, "ncclGetUniqueId failed: %s", ncclGetErrorString(r))
                                        : dl4c_error(DL4C_ERR_NOMEM, "nccl communicator: out of memory");
    }
    st->rank = rank;
    st->size = size;
    st->device = device;
    st->mpi = mpi;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) { s = cuda_fail(st, e, "stream"); dl4c_comm_free(mpi); free(st); return s; }
    r = ncclCommInitRank(&st->comm, size, id, rank);
    if (r != ncclSuccess) {
        s = dl4c_error(DL4C_ERR_COMM, "ncclCommInitRank (rank %d of %d, cuda:%d) failed: %s", rank, size, device,
                       ncclGetErrorString(r));
        cudaStreamDestroy(st->stream);
        dl4c_comm_free(mpi);
        free(st);
        return s;
    }
    return wrap(st, out);
}

int dl4c_comm_nccl_device(const dl4c_comm *c) {
    return c && c->ops == &nccl_ops ? ((const nccl_state *)c->impl)->device : -1;
}

bool dl4c_have_nccl(void) { return true; }

#else  /* built without CUDA */

dl4c_status dl4c_comm_nccl_world(int device, dl4c_comm **out) {
    *out = NULL;
    return dl4c_error(DL4C_ERR_UNSUPPORTED, "this dl4c was built without CUDA and NCCL (rebuild with cmake -DDL4C_CUDA=ON, or make cuda)");
}
dl4c_status dl4c_comm_nccl_group(int size, const int *devices, dl4c_comm **comms) {
    return dl4c_error(DL4C_ERR_UNSUPPORTED, "this dl4c was built without CUDA and NCCL (rebuild with cmake -DDL4C_CUDA=ON, or make cuda)");
}
int dl4c_comm_nccl_device(const dl4c_comm *c) { return -1; }
bool dl4c_have_nccl(void) { return false; }

#endif
