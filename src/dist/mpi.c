/* The MPI communicator (OpenMPI). Reductions are deterministic and identical to the local
 * communicator's: every rank receives slice r of every rank's buffer (MPI_Alltoallv), reduces
 * it over ranks 0, 1, ... in order, and the slices are gathered back (MPI_Allgatherv).
 * MPI's own MPI_Allreduce does not promise an order, so it is not used for data. */
#include "dl4c/dist.h"

#ifdef DL4C_HAVE_MPI
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

static bool we_initialised = false;   /* set once by the main thread before any worker runs */

typedef struct mpi_state {
    int rank, size;       /* this process, all processes */
    void *scratch;        /* receive buffer: size slices */
    size_t scratch_bytes; /* its capacity */
} mpi_state;

static int mpi_rank(const dl4c_comm *c) { return ((mpi_state *)c->impl)->rank; }
static int mpi_size(const dl4c_comm *c) { return ((mpi_state *)c->impl)->size; }

static dl4c_status mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return dl4c_error(DL4C_ERR_COMM, "MPI %s failed: %.*s", what, len, msg);
}

static size_t dtype_size(dl4c_dtype t) { return t == DL4C_F32 ? 4 : 8; }

#define REDUCE(T)                                                            \
    do {                                                                     \
        T *out = (T *)((char *)buf + (size_t)lo[me] * es);                   \
        const T *in = (const T *)st->scratch;                                \
        for (int64_t i = 0; i < cnt[me]; i++) {                              \
            T acc = in[i];                                                   \
            for (int r = 1; r < st->size; r++) {                             \
                const T v = in[(int64_t)r * cnt[me] + i];                    \
                acc = op == DL4C_REDUCE_SUM ? acc + v : (v > acc ? v : acc); \
            }                                                                \
            out[i] = acc;                                                    \
        }                                                                    \
    } while (0)

static dl4c_status mpi_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op) {
    mpi_state *st = c->impl;
    if (st->size == 1 || n == 0) return DL4C_OK;
    const size_t es = dtype_size(t);
    const int P = st->size, me = st->rank;
    int *cnt = calloc((size_t)P, sizeof(int)), *lo = calloc((size_t)P, sizeof(int));
    int *scnt = malloc(sizeof(int) * P), *sdisp = malloc(sizeof(int) * P);
    int *rcnt = malloc(sizeof(int) * P), *rdisp = malloc(sizeof(int) * P);
    dl4c_status s = DL4C_OK;
    if (!cnt || !lo || !scnt || !sdisp || !rcnt || !rdisp) { s = dl4c_error(DL4C_ERR_NOMEM, "MPI: out of memory"); goto done; }
    const int64_t per = (n + P - 1) / P;
    for (int r = 0; r < P; r++) {
        const int64_t a = per * r < n ? per * r : n, b = a + per < n ? a + per : n;
        lo[r] = (int)a;
        cnt[r] = (int)(b - a);
    }
    const size_t need = (size_t)cnt[me] * P * es;
    if (st->scratch_bytes < need) {
        void *fresh = malloc(need ? need : 1);
        if (!fresh) { s = dl4c_error(DL4C_ERR_NOMEM, "MPI: out of memory"); goto done; }
        free(st->scratch);
        st->scratch = fresh;
        st->scratch_bytes = need;
    }
    for (int r = 0; r < P; r++) {
        scnt[r] = cnt[r] * (int)es; sdisp[r] = lo[r] * (int)es;
        rcnt[r] = cnt[me] * (int)es; rdisp[r] = r * cnt[me] * (int)es;
    }
    int rc = MPI_Alltoallv(buf, scnt, sdisp, MPI_BYTE, st->scratch, rcnt, rdisp, MPI_BYTE, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { s = mpi_fail(rc, "Alltoallv"); goto done; }
    switch (t) {
    case DL4C_F32: REDUCE(float); break;
    case DL4C_F64: REDUCE(double); break;
    case DL4C_I64: REDUCE(int64_t); break;
    default: DL4C_ASSERT(!"bad dtype");
    }
    for (int r = 0; r < P; r++) { rcnt[r] = cnt[r] * (int)es; rdisp[r] = lo[r] * (int)es; }
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, rcnt, rdisp, MPI_BYTE, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) s = mpi_fail(rc, "Allgatherv");
done:
    free(cnt); free(lo); free(scnt); free(sdisp); free(rcnt); free(rdisp);
    return s;
}

static dl4c_status mpi_broadcast(dl4c_comm *c, void *buf, size_t bytes, int root) {
    if (((mpi_state *)c->impl)->size == 1) return DL4C_OK;
    /* in chunks: MPI counts are ints */
    for (size_t off = 0; off < bytes; off += 1 << 30) {
        const size_t len = bytes - off < (1u << 30) ? bytes - off : (1u << 30);
        int rc = MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "Bcast");
    }
    return DL4C_OK;
}

static dl4c_status mpi_barrier(dl4c_comm *c) {
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? DL4C_OK : mpi_fail(rc, "Barrier");
}

static void mpi_free(dl4c_comm *c) {
    mpi_state *st = c->impl;
    free(st->scratch);
    free(st);
    free(c);
}

static const dl4c_comm_ops mpi_ops = {
    .name = "mpi", .rank = mpi_rank, .size = mpi_size, .allreduce = mpi_allreduce,
    .broadcast = mpi_broadcast, .barrier = mpi_barrier, .free = mpi_free,
};

dl4c_status dl4c_comm_mpi_world(dl4c_comm **out) {
    *out = NULL;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return dl4c_error(DL4C_ERR_COMM, "MPI_Init_thread failed");
        we_initialised = true;
    }
    /* Errors come back as codes, so a failed peer gives a message, not a silent abort. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    dl4c_comm *c = calloc(1, sizeof *c);
    mpi_state *st = calloc(1, sizeof *st);
    if (!c || !st) { free(c); free(st); return dl4c_error(DL4C_ERR_NOMEM, "MPI: out of memory"); }
    MPI_Comm_rank(MPI_COMM_WORLD, &st->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &st->size);
    c->ops = &mpi_ops;
    c->impl = st;
    *out = c;
    return DL4C_OK;
}

void dl4c_mpi_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (we_initialised && !fin) MPI_Finalize();
}

bool dl4c_have_mpi(void) { return true; }

#else  /* built without MPI */

dl4c_status dl4c_comm_mpi_world(dl4c_comm **out) {
    *out = NULL;
    return dl4c_error(DL4C_ERR_UNSUPPORTED, "this dl4c was built without MPI (install libopenmpi-dev and rebuild)");
}
void dl4c_mpi_finalize(void) {}
bool dl4c_have_mpi(void) { return false; }

#endif
