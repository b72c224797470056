/* dl4c communicators: how data-parallel workers talk. One interface, several transports:
 *   local  worker threads in one process sharing memory (the embedded default, like local[*])
 *   mpi    OpenMPI ranks on one or many hosts (mpirun -np N dl4c train --dist mpi ...)
 *   nccl   GPUs, one per rank (builds with the CUDA backend)
 * Every reduction sums in rank order (0, 1, 2, ...) for every element, never in arrival
 * order, so all transports give bit-identical results for the same inputs. */
#ifndef DL4C_DIST_H
#define DL4C_DIST_H

#include "dl4c/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dl4c_dtype { DL4C_F32 = 0, DL4C_F64, DL4C_I64, DL4C_DTYPE_COUNT } dl4c_dtype;
typedef enum dl4c_reduce_op { DL4C_REDUCE_SUM = 0, DL4C_REDUCE_MAX, DL4C_REDUCE_OP_COUNT } dl4c_reduce_op;

typedef struct dl4c_comm dl4c_comm;

/* The transport's functions; a communicator is { ops, its state }. */
typedef struct dl4c_comm_ops {
    const char *name;                                          /* "local", "mpi", ... */
    int (*rank)(const dl4c_comm *c);                           /* 0..size-1 */
    int (*size)(const dl4c_comm *c);                           /* number of workers */
    /* In place: buf[i] = op over ranks r = 0, 1, ... of buf_r[i] (sums in rank order). */
    dl4c_status (*allreduce)(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op);
    /* bytes from root to every rank. */
    dl4c_status (*broadcast)(dl4c_comm *c, void *buf, size_t bytes, int root);
    dl4c_status (*barrier)(dl4c_comm *c);
    void (*free)(dl4c_comm *c);
} dl4c_comm_ops;

struct dl4c_comm {
    const dl4c_comm_ops *ops;   /* transport */
    void *impl;                 /* transport state */
};

static inline int dl4c_comm_rank(const dl4c_comm *c) { return c->ops->rank(c); }
static inline int dl4c_comm_size(const dl4c_comm *c) { return c->ops->size(c); }
static inline dl4c_status dl4c_comm_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t,
                                              dl4c_reduce_op op) {
    return c->ops->allreduce(c, buf, n, t, op);
}
static inline dl4c_status dl4c_comm_broadcast(dl4c_comm *c, void *buf, size_t bytes, int root) {
    return c->ops->broadcast(c, buf, bytes, root);
}
static inline dl4c_status dl4c_comm_barrier(dl4c_comm *c) { return c->ops->barrier(c); }
static inline void dl4c_comm_free(dl4c_comm *c) { if (c) c->ops->free(c); }

/* ---- local: threads of one process ----
 * A group of `size` communicators, one per worker thread (comms[r] for rank r). Free each
 * with dl4c_comm_free after the threads are joined; the group goes with the last one. */
dl4c_status dl4c_comm_local_group(int size, dl4c_comm **comms /* size entries */);

/* ---- mpi ---- (only in builds with MPI; DL4C_ERR_UNSUPPORTED otherwise)
 * Initialises MPI if needed (MPI_Init_thread) and wraps MPI_COMM_WORLD. */
dl4c_status dl4c_comm_mpi_world(dl4c_comm **out);
/* Finalises MPI if dl4c initialised it. */
void dl4c_mpi_finalize(void);
bool dl4c_have_mpi(void);

/* ---- nccl: one GPU per rank ---- (builds with CUDA; DL4C_ERR_UNSUPPORTED otherwise)
 * Reductions in rank order, like local's and mpi's, so results are bit-identical to theirs:
 * each rank receives slice r of every rank's buffer (grouped ncclSend/ncclRecv), reduces it
 * over ranks 0, 1, ... on its GPU and the slices are gathered back (ncclAllGather); NCCL's
 * own all-reduce (whose summation order varies) is not used. Buffers may be host or device
 * memory. world: ranks started by MPI (mpirun -np N dl4c train --dist nccl ...); rank 0's
 * ncclUniqueId goes out over MPI; the rank uses GPU `device`, or with device < 0 its local
 * rank on its host (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, ...) modulo the GPUs there.
 * group: `size` ranks in this process, one thread each, rank r on GPU devices[r]. */
dl4c_status dl4c_comm_nccl_world(int device, dl4c_comm **out);
dl4c_status dl4c_comm_nccl_group(int size, const int *devices, dl4c_comm **comms /* size entries */);
/* The GPU of a nccl communicator's rank; -1 for other communicators. */
int dl4c_comm_nccl_device(const dl4c_comm *c);
bool dl4c_have_nccl(void);

/* ---- tcp: processes that can pass one "host:port" around (Spark barrier tasks) ----
 * A star around rank 0; reductions in rank order at rank 0, so results equal local's and
 * mpi's. Rank 0 first opens a listener (port 0: any free port, returned in *port_out) and
 * tells the others its address; then every rank calls dl4c_comm_tcp_new. Rank 0 passes the
 * listener (it accepts size - 1 ranks, then may free it); the others pass root_host/port.
 * `token` identifies the job: connections with another token are refused. timeout_ms
 * (<= 0: none) bounds joining and each wait for a peer; a peer that dies or stalls past it
 * fails the collective with DL4C_ERR_COMM on every rank that waits for it. */
typedef struct dl4c_tcp_listener dl4c_tcp_listener;
dl4c_status dl4c_tcp_listen(const char *host, int port, dl4c_tcp_listener **out, int *port_out);
void dl4c_tcp_listener_free(dl4c_tcp_listener *l);
dl4c_status dl4c_comm_tcp_new(int rank, int size, const char *root_host, int root_port, uint64_t token,
                              dl4c_tcp_listener *listener, int timeout_ms, dl4c_comm **out);

#ifdef __cplusplus
}
#endif
#endif
