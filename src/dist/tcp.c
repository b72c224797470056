/* The TCP communicator: ranks in separate processes (Spark barrier tasks, or any launcher that
 * can pass one "host:port" around), connected in a star around rank 0. Reductions are
 * deterministic and identical to the local and MPI communicators': rank 0 receives every
 * rank's buffer in chunks and, for every element, reduces over ranks 0, 1, 2, ... in that
 * order, then sends the result back to every rank. Every collective starts with a small
 * header (kind, element count, dtype, op) that rank 0 checks, so ranks that disagree on the
 * sequence of collectives get an error instead of garbage. Any socket error, a peer that
 * closes its connection (a killed process) or no progress within the timeout is
 * DL4C_ERR_COMM, and the communicator stays failed afterwards. */
#define _GNU_SOURCE
#include "dl4c/dist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCP_MAGIC 0x646c3463u           /* "dl4c" */
#define TCP_VERSION 1u
#define TCP_CHUNK ((size_t)1 << 20)     /* bytes reduced per step at rank 0 */

struct dl4c_tcp_listener {
    int fd;     /* listening socket */
    int port;   /* its port */
};

typedef struct tcp_hello {
    uint32_t magic, version;
    uint64_t token;       /* job token: connections of another job or attempt are refused */
    int32_t rank, size;
} tcp_hello;

typedef struct tcp_header {
    uint32_t kind;        /* 1 allreduce, 2 broadcast, 3 barrier */
    uint32_t dtype_op;    /* dtype << 8 | op, or root for broadcast */
    uint64_t n;           /* elements (allreduce) or bytes (broadcast) */
} tcp_header;

typedef struct tcp_state {
    int rank, size;       /* this process, all processes */
    int *fds;             /* rank 0: fds[r] is the socket to rank r (fds[0] unused); else fds[0] to rank 0 */
    int timeout_ms;       /* no progress for this long is an error (<= 0: wait forever) */
    void *scratch;        /* rank 0: one chunk from a peer */
    bool failed;          /* a previous collective failed: every later one fails too */
    char why[256];        /* message of that failure */
} tcp_state;

static int tcp_rank(const dl4c_comm *c) { return ((tcp_state *)c->impl)->rank; }
static int tcp_size(const dl4c_comm *c) { return ((tcp_state *)c->impl)->size; }

static size_t dtype_size(dl4c_dtype t) { return t == DL4C_F32 ? 4 : 8; }

/* Waits until fd is readable/writable; 0 ok, -1 timeout or error (errno set). */
static int wait_fd(int fd, short events, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1);
        if (r > 0) return 0;
        if (r == 0) { errno = ETIMEDOUT; return -1; }
        if (errno != EINTR) return -1;
    }
}

/* 0 ok; -1 error with errno (0 for a closed connection). */
static int send_all(int fd, const void *buf, size_t n, int timeout_ms) {
    const char *p = buf;
    while (n > 0) {
        if (wait_fd(fd, POLLOUT, timeout_ms)) return -1;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, void *buf, size_t n, int timeout_ms) {
    char *p = buf;
    while (n > 0) {
        if (wait_fd(fd, POLLIN, timeout_ms)) return -1;
        ssize_t r = recv(fd, p, n, 0);
        if (r == 0) { errno = 0; return -1; }
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Marks the communicator failed with a message naming the peer. */
static dl4c_status fail_peer(tcp_state *st, int peer, const char *what) {
    const int e = errno;
    if (!st->failed) {
        snprintf(st->why, sizeof st->why, "tcp communicator: rank %d: %s rank %d: %s", st->rank, what, peer,
                 e == 0 ? "the connection was closed (the peer stopped)" :
                 e == ETIMEDOUT ? "no progress within the timeout" : strerror(e));
        st->failed = true;
    }
    return dl4c_error(DL4C_ERR_COMM, "%s", st->why);
}

static dl4c_status check_failed(tcp_state *st) {
    return st->failed ? dl4c_error(DL4C_ERR_COMM, "%s (an earlier collective failed)", st->why) : DL4C_OK;
}

/* Rank 0: every peer's header must equal ours. */
static dl4c_status root_check_headers(tcp_state *st, const tcp_header *mine) {
    for (int r = 1; r < st->size; r++) {
        tcp_header h;
        if (recv_all(st->fds[r], &h, sizeof h, st->timeout_ms)) return fail_peer(st, r, "receiving from");
        if (h.kind != mine->kind || h.dtype_op != mine->dtype_op || h.n != mine->n) {
            st->failed = true;
            snprintf(st->why, sizeof st->why, "tcp communicator: rank %d called collective %u (n %llu) while "
                     "rank 0 called %u (n %llu)", r, h.kind, (unsigned long long)h.n, mine->kind,
                     (unsigned long long)mine->n);
            return dl4c_error(DL4C_ERR_COMM, "%s", st->why);
        }
    }
    return DL4C_OK;
}

#define REDUCE_CHUNK(T)                                                      \
    do {                                                                     \
        T *acc = (T *)(base + off);                                          \
        const T *in = (const T *)st->scratch;                                \
        const size_t m = len / sizeof(T);                                    \
        for (size_t i = 0; i < m; i++)                                       \
            acc[i] = op == DL4C_REDUCE_SUM ? acc[i] + in[i]                  \
                                           : (in[i] > acc[i] ? in[i] : acc[i]); \
    } while (0)

static dl4c_status tcp_allreduce(dl4c_comm *c, void *buf, int64_t n, dl4c_dtype t, dl4c_reduce_op op) {
    tcp_state *st = c->impl;
    dl4c_status s = check_failed(st);
    if (s || st->size == 1 || n == 0) return s;
    const size_t bytes = (size_t)n * dtype_size(t);
    const tcp_header h = {.kind = 1, .dtype_op = (uint32_t)t << 8 | (uint32_t)op, .n = (uint64_t)n};
    if (st->rank != 0) {
        if (send_all(st->fds[0], &h, sizeof h, st->timeout_ms) || send_all(st->fds[0], buf, bytes, st->timeout_ms))
            return fail_peer(st, 0, "sending to");
        if (recv_all(st->fds[0], buf, bytes, st->timeout_ms)) return fail_peer(st, 0, "receiving from");
        return DL4C_OK;
    }
    if ((s = root_check_headers(st, &h))) return s;
    /* Element i: acc = buf_0[i]; acc = acc op buf_1[i]; acc = acc op buf_2[i]; ... (rank order). */
    char *base = buf;
    for (size_t off = 0; off < bytes; off += TCP_CHUNK) {
        const size_t len = bytes - off < TCP_CHUNK ? bytes - off : TCP_CHUNK;
        for (int r = 1; r < st->size; r++) {
            if (recv_all(st->fds[r], st->scratch, len, st->timeout_ms)) return fail_peer(st, r, "receiving from");
            switch (t) {
            case DL4C_F32: REDUCE_CHUNK(float); break;
            case DL4C_F64: REDUCE_CHUNK(double); break;
            case DL4C_I64: REDUCE_CHUNK(int64_t); break;
            default: DL4C_ASSERT(!"bad dtype");
            }
        }
    }
    for (int r = 1; r < st->size; r++)
        if (send_all(st->fds[r], buf, bytes, st->timeout_ms)) return fail_peer(st, r, "sending to");
    return DL4C_OK;
}

static dl4c_status tcp_broadcast(dl4c_comm *c, void *buf, size_t bytes, int root) {
    tcp_state *st = c->impl;
    dl4c_status s = check_failed(st);
    if (s || st->size == 1) return s;
    if (root < 0 || root >= st->size)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "tcp communicator: broadcast root %d of %d ranks", root, st->size);
    const tcp_header h = {.kind = 2, .dtype_op = (uint32_t)root, .n = bytes};
    if (st->rank != 0) {
        if (send_all(st->fds[0], &h, sizeof h, st->timeout_ms)) return fail_peer(st, 0, "sending to");
        if (st->rank == root) {
            if (send_all(st->fds[0], buf, bytes, st->timeout_ms)) return fail_peer(st, 0, "sending to");
        } else if (recv_all(st->fds[0], buf, bytes, st->timeout_ms)) {
            return fail_peer(st, 0, "receiving from");
        }
        return DL4C_OK;
    }
    if ((s = root_check_headers(st, &h))) return s;
    if (root != 0 && recv_all(st->fds[root], buf, bytes, st->timeout_ms)) return fail_peer(st, root, "receiving from");
    for (int r = 1; r < st->size; r++)
        if (r != root && send_all(st->fds[r], buf, bytes, st->timeout_ms)) return fail_peer(st, r, "sending to");
    return DL4C_OK;
}

static dl4c_status tcp_barrier(dl4c_comm *c) {
    tcp_state *st = c->impl;
    dl4c_status s = check_failed(st);
    if (s || st->size == 1) return s;
    const tcp_header h = {.kind = 3};
    if (st->rank != 0) {
        tcp_header ack;
        if (send_all(st->fds[0], &h, sizeof h, st->timeout_ms)) return fail_peer(st, 0, "sending to");
        if (recv_all(st->fds[0], &ack, sizeof ack, st->timeout_ms)) return fail_peer(st, 0, "receiving from");
        return DL4C_OK;
    }
    if ((s = root_check_headers(st, &h))) return s;
    for (int r = 1; r < st->size; r++)
        if (send_all(st->fds[r], &h, sizeof h, st->timeout_ms)) return fail_peer(st, r, "sending to");
    return DL4C_OK;
}

static void tcp_free(dl4c_comm *c) {
    tcp_state *st = c->impl;
    const int nfd = st->rank == 0 ? st->size : 1;
    for (int r = 0; r < nfd; r++)
        if (st->fds[r] >= 0) close(st->fds[r]);
    free(st->fds);
    free(st->scratch);
    free(st);
    free(c);
}

static const dl4c_comm_ops tcp_ops = {
    .name = "tcp", .rank = tcp_rank, .size = tcp_size, .allreduce = tcp_allreduce,
    .broadcast = tcp_broadcast, .barrier = tcp_barrier, .free = tcp_free,
};

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

dl4c_status dl4c_tcp_listen(const char *host, int port, dl4c_tcp_listener **out, int *port_out) {
    *out = NULL;
    if (port < 0 || port > 65535) return dl4c_error(DL4C_ERR_INVALID_ARG, "tcp communicator: port %d out of range", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host && *host ? host : NULL, ps, &hints, &res);
    if (rc) return dl4c_error(DL4C_ERR_COMM, "tcp communicator: cannot resolve \"%s\": %s", host ? host : "", gai_strerror(rc));
    int fd = -1, err = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { err = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 128)) { err = errno; close(fd); fd = -1; }
    }
    freeaddrinfo(res);
    if (fd < 0) return dl4c_error(DL4C_ERR_COMM, "tcp communicator: cannot listen on %s:%d: %s", host ? host : "*", port, strerror(err));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    const int bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    dl4c_tcp_listener *l = malloc(sizeof *l);
    if (!l) { close(fd); return dl4c_error(DL4C_ERR_NOMEM, "tcp communicator: out of memory"); }
    l->fd = fd;
    l->port = bound;
    if (port_out) *port_out = bound;
    *out = l;
    return DL4C_OK;
}

void dl4c_tcp_listener_free(dl4c_tcp_listener *l) {
    if (!l) return;
    if (l->fd >= 0) close(l->fd);
    free(l);
}

static dl4c_status connect_root(const char *host, int port, int timeout_ms, int *fd_out) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const double deadline = dl4c_now() + (timeout_ms > 0 ? timeout_ms / 1000.0 : 1e9);
    int err = 0;
    for (int attempt = 0;; attempt++) {   /* the root may not be listening yet: retry until the deadline */
        struct addrinfo *res = NULL;
        int rc = getaddrinfo(host, ps, &hints, &res);
        if (rc) return dl4c_error(DL4C_ERR_COMM, "tcp communicator: cannot resolve \"%s\": %s", host, gai_strerror(rc));
        for (struct addrinfo *a = res; a; a = a->ai_next) {
            int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            if (fd < 0) { err = errno; continue; }
            if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                freeaddrinfo(res);
                set_nodelay(fd);
                *fd_out = fd;
                return DL4C_OK;
            }
            err = errno;
            close(fd);
        }
        freeaddrinfo(res);
        if (dl4c_now() > deadline) break;
        usleep(attempt < 10 ? 20000 : 200000);
    }
    return dl4c_error(DL4C_ERR_COMM, "tcp communicator: cannot connect to rank 0 at %s:%d: %s", host, port, strerror(err));
}

dl4c_status dl4c_comm_tcp_new(int rank, int size, const char *root_host, int root_port, uint64_t token,
                              dl4c_tcp_listener *listener, int timeout_ms, dl4c_comm **out) {
    *out = NULL;
    if (size < 1 || rank < 0 || rank >= size)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "tcp communicator: rank %d of %d", rank, size);
    if (rank == 0 && size > 1 && !listener)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "tcp communicator: rank 0 needs a listener (dl4c_tcp_listen)");
    if (rank != 0 && (!root_host || root_port <= 0 || root_port > 65535))
        return dl4c_error(DL4C_ERR_INVALID_ARG, "tcp communicator: rank %d needs rank 0's host and port", rank);
    tcp_state *st = calloc(1, sizeof *st);
    dl4c_comm *c = calloc(1, sizeof *c);
    const int nfd = rank == 0 ? size : 1;
    if (st) st->fds = malloc(sizeof(int) * (size_t)nfd);
    if (st && rank == 0) st->scratch = malloc(TCP_CHUNK);
    if (!st || !c || !st->fds || (rank == 0 && !st->scratch)) {
        if (st) { free(st->fds); free(st->scratch); }
        free(st); free(c);
        return dl4c_error(DL4C_ERR_NOMEM, "tcp communicator: out of memory");
    }
    for (int r = 0; r < nfd; r++) st->fds[r] = -1;
    st->rank = rank;
    st->size = size;
    st->timeout_ms = timeout_ms;
    c->ops = &tcp_ops;
    c->impl = st;
    dl4c_status s = DL4C_OK;
    const tcp_hello mine = {.magic = TCP_MAGIC, .version = TCP_VERSION, .token = token, .rank = rank, .size = size};
    if (rank != 0) {
        if ((s = connect_root(root_host, root_port, timeout_ms, &st->fds[0]))) goto fail;
        uint8_t ok = 0;
        if (send_all(st->fds[0], &mine, sizeof mine, timeout_ms) || recv_all(st->fds[0], &ok, 1, timeout_ms)) {
            s = fail_peer(st, 0, "joining");
            goto fail;
        }
        if (ok != 1) {
            s = dl4c_error(DL4C_ERR_COMM, "tcp communicator: rank 0 at %s:%d refused rank %d (another job, or a "
                           "rank taken twice)", root_host, root_port, rank);
            goto fail;
        }
        *out = c;
        return DL4C_OK;
    }
    /* Rank 0: accept one connection per other rank; refuse strangers and duplicates. */
    int joined = 0;
    while (joined < size - 1) {
        if (wait_fd(listener->fd, POLLIN, timeout_ms)) {
            s = dl4c_error(DL4C_ERR_COMM, "tcp communicator: rank 0: only %d of %d ranks joined within %d ms",
                           joined + 1, size, timeout_ms);
            goto fail;
        }
        int fd = accept4(listener->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            s = dl4c_error(DL4C_ERR_COMM, "tcp communicator: accept failed: %s", strerror(errno));
            goto fail;
        }
        set_nodelay(fd);
        tcp_hello h;
        uint8_t verdict = 0;
        if (recv_all(fd, &h, sizeof h, timeout_ms)) { close(fd); continue; }
        if (h.magic == TCP_MAGIC && h.version == TCP_VERSION && h.token == token && h.size == size &&
            h.rank > 0 && h.rank < size && st->fds[h.rank] < 0)
            verdict = 1;
        send_all(fd, &verdict, 1, timeout_ms);
        if (!verdict) {
            dl4c_log(DL4C_LOG_WARN, "tcp communicator: refused a connection (rank %d of %d, %s token)", h.rank, h.size,
                     h.token == token ? "same" : "another");
            close(fd);
            continue;
        }
        st->fds[h.rank] = fd;
        joined++;
    }
    *out = c;
    return DL4C_OK;
fail:
    tcp_free(c);
    return s;
}
