/* dl4c core: status strings, per-thread error messages, aligned allocation, logging, clock. */
#define _GNU_SOURCE
#include "dl4c/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const status_names[] = {
    [DL4C_OK] = "DL4C_OK",
    [DL4C_ERR_INVALID_ARG] = "DL4C_ERR_INVALID_ARG",
    [DL4C_ERR_IO] = "DL4C_ERR_IO",
    [DL4C_ERR_FORMAT] = "DL4C_ERR_FORMAT",
    [DL4C_ERR_CONFIG] = "DL4C_ERR_CONFIG",
    [DL4C_ERR_SHAPE] = "DL4C_ERR_SHAPE",
    [DL4C_ERR_NOMEM] = "DL4C_ERR_NOMEM",
    [DL4C_ERR_NUMERIC] = "DL4C_ERR_NUMERIC",
    [DL4C_ERR_COMM] = "DL4C_ERR_COMM",
    [DL4C_ERR_UNSUPPORTED] = "DL4C_ERR_UNSUPPORTED",
    [DL4C_ERR_INTERRUPTED] = "DL4C_ERR_INTERRUPTED",
    [DL4C_ERR_INTERNAL] = "DL4C_ERR_INTERNAL",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == DL4C_STATUS_COUNT,
               "status_names must name every dl4c_status");

const char *dl4c_status_str(dl4c_status s) {
    return (s >= 0 && s < DL4C_STATUS_COUNT) ? status_names[s] : "DL4C_ERR_UNKNOWN";
}

bool dl4c_status_is_user_error(dl4c_status s) {
    switch (s) {
    case DL4C_ERR_INVALID_ARG: case DL4C_ERR_IO: case DL4C_ERR_FORMAT: case DL4C_ERR_CONFIG:
    case DL4C_ERR_SHAPE: case DL4C_ERR_UNSUPPORTED:
        return true;
    default:
        return false;
    }
}

#define DL4C_ERRBUF 1024
static _Thread_local char errbuf[DL4C_ERRBUF];

const char *dl4c_error_message(void) { return errbuf; }
void dl4c_error_clear(void) { errbuf[0] = '\0'; }

dl4c_status dl4c_error(dl4c_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return s;
}

dl4c_status dl4c_error_prefix(dl4c_status s, const char *fmt, ...) {
    char prefix[DL4C_ERRBUF / 2], old[DL4C_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    const size_t n = strlen(prefix);
    memcpy(errbuf, prefix, n);
    errbuf[n] = ':';
    errbuf[n + 1] = ' ';
    snprintf(errbuf + n + 2, sizeof errbuf - n - 2, "%s", old);
    return s;
}

void dl4c_assert_fail_(const char *expr, const char *file, int line) {
    fprintf(stderr, "dl4c: internal error: assertion `%s` failed at %s:%d\n", expr, file, line);
    abort();
}

void *dl4c_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, rounded);
}

void *dl4c_calloc(size_t bytes) {
    void *p = dl4c_alloc(bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void dl4c_free(void *p) { free(p); }

static dl4c_log_level log_level = DL4C_LOG_INFO;   /* set once by main; read-only afterwards */
static const char *const log_names[] = {"error", "warn", "info", "debug"};
_Static_assert(sizeof log_names / sizeof log_names[0] == DL4C_LOG_LEVEL_COUNT, "log_names");

void dl4c_log_set_level(dl4c_log_level level) { log_level = level; }

void dl4c_log(dl4c_log_level level, const char *fmt, ...) {
    if (level > log_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dl4c %s: %s\n", log_names[level], line);
}

double dl4c_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
