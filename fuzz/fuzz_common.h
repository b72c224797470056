/* Shared by the libFuzzer targets (fuzz/fuzz_*.c): the readers under test take file paths, so
 * each input is put in an in-memory file (memfd) named by /proc/self/fd/N. */
#ifndef DL4C_FUZZ_COMMON_H
#define DL4C_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* An in-memory file holding data[0..size): its path ("/proc/self/fd/N") and descriptor. */
typedef struct fuzz_file {
    int fd;          /* the memfd (-1 when closed) */
    char path[64];   /* a path that open(), stat() and gzopen() accept */
} fuzz_file;

/* Creates the file or aborts (a harness failure, not a finding). */
void fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size);
void fuzz_file_close(fuzz_file *f);

/* Aborts with a message: a property the harness checks does not hold (a finding). */
void fuzz_fail(const char *what) __attribute__((noreturn));

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
