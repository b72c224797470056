/* In-memory files for the fuzz targets (see fuzz_common.h). */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size) {
    f->fd = memfd_create("dl4c-fuzz", MFD_CLOEXEC);
    if (f->fd < 0) { perror("memfd_create"); abort(); }
    size_t done = 0;
    while (done < size) {
        const ssize_t w = write(f->fd, data + done, size - done);
        if (w <= 0) { perror("write"); abort(); }
        done += (size_t)w;
    }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

void fuzz_file_close(fuzz_file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

void fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz: property violated: %s\n", what);
    abort();
}
