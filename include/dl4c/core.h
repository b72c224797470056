/* dl4c core: status codes, error messages, aligned allocation, counter-based RNG, logging.
 * Every library function that can fail returns a dl4c_status and records a message that
 * dl4c_error_message() returns (per thread). The library never exits or prints to stdout. */
#ifndef DL4C_CORE_H
#define DL4C_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Numbered status codes; dl4c_status_str() names them. */
typedef enum dl4c_status {
    DL4C_OK = 0,
    DL4C_ERR_INVALID_ARG = 1,   /* a caller passed something impossible (bad flag, bad value) */
    DL4C_ERR_IO = 2,            /* a file could not be opened, read or written */
    DL4C_ERR_FORMAT = 3,        /* a file's content is malformed (IDX, CSV, model file) */
    DL4C_ERR_CONFIG = 4,        /* a network configuration is invalid */
    DL4C_ERR_SHAPE = 5,         /* shapes do not fit together */
    DL4C_ERR_NOMEM = 6,         /* an allocation failed */
    DL4C_ERR_NUMERIC = 7,       /* NaN or infinity in training */
    DL4C_ERR_COMM = 8,          /* a communicator (threads, MPI, TCP) failed */
    DL4C_ERR_UNSUPPORTED = 9,   /* asked for something this build cannot do (e.g. CUDA) */
    DL4C_ERR_INTERRUPTED = 10,  /* stopped by a signal or a callback */
    DL4C_ERR_INTERNAL = 11,     /* a bug in dl4c */
    DL4C_STATUS_COUNT
} dl4c_status;

/* "DL4C_OK", "DL4C_ERR_IO", ... */
const char *dl4c_status_str(dl4c_status s);

/* True when the status says bad input from the user (exit code 2 at the command line). */
bool dl4c_status_is_user_error(dl4c_status s);

/* The message set by the last failing call on this thread ("" if none). */
const char *dl4c_error_message(void);

/* Records a message for this thread and returns `s`, so `return dl4c_error(...)` reads well. */
dl4c_status dl4c_error(dl4c_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to the current message (adds context while unwinding). */
dl4c_status dl4c_error_prefix(dl4c_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void dl4c_error_clear(void);

/* Always-on invariant check (stays in release builds): prints and aborts on failure. */
#define DL4C_ASSERT(cond) \
    ((cond) ? (void)0 : dl4c_assert_fail_(#cond, __FILE__, __LINE__))
void dl4c_assert_fail_(const char *expr, const char *file, int line) __attribute__((noreturn));

/* 64-byte aligned allocation; dl4c_free(NULL) is a no-op. Zeroed memory from dl4c_calloc. */
void *dl4c_alloc(size_t bytes);
void *dl4c_calloc(size_t bytes);
void dl4c_free(void *p);

/* ---- Counter-based random numbers ----
 * A generator is a key (seed and up to three stream ids: epoch, round, worker, ...) and a
 * counter. The n-th draw is a pure function of (key, n), so results never depend on threads
 * or scheduling. */
typedef struct dl4c_rng {
    uint64_t key;      /* mixed from seed and stream ids */
    uint64_t counter;  /* index of the next draw */
} dl4c_rng;

/* A generator for (seed, a, b, c): e.g. (seed, DL4C_STREAM_SHUFFLE, epoch, worker). */
dl4c_rng dl4c_rng_make(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t dl4c_rng_u64(dl4c_rng *r);
/* Uniform in [0, 1). */
double dl4c_rng_uniform(dl4c_rng *r);
/* Standard normal (Box-Muller, one draw pair per call, second discarded for simplicity). */
double dl4c_rng_normal(dl4c_rng *r);
/* Uniform integer in [0, n). */
uint64_t dl4c_rng_below(dl4c_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void dl4c_rng_shuffle(dl4c_rng *r, int64_t *idx, int64_t n);

/* Stream ids, so different uses of one seed never share draws. */
enum { DL4C_STREAM_INIT = 1, DL4C_STREAM_SHUFFLE = 2, DL4C_STREAM_PARTITION = 3,
       DL4C_STREAM_DROPOUT = 4 };

/* ---- Logging (stderr only; the CLI decides the level) ---- */
typedef enum dl4c_log_level { DL4C_LOG_ERROR, DL4C_LOG_WARN, DL4C_LOG_INFO, DL4C_LOG_DEBUG,
                              DL4C_LOG_LEVEL_COUNT } dl4c_log_level;
void dl4c_log_set_level(dl4c_log_level level);
void dl4c_log(dl4c_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic wall clock in seconds. */
double dl4c_now(void);

#ifdef __cplusplus
}
#endif
#endif
