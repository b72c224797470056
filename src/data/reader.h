/* Private to src/data: opening plain-or-gzip files, exact reads with clear errors, and a
 * line reader for text formats. Every error message starts with the file's path. */
#ifndef DL4C_DATA_READER_H
#define DL4C_DATA_READER_H

#include "dl4c/core.h"

#include <zlib.h>

/* Opens `path` for reading (plain or gzip). DL4C_ERR_IO with the reason if it cannot. */
dl4c_status dl4c_data_open(const char *path, gzFile *out);

/* Reads up to n bytes; *got is what was read (short only at the end of the data).
 * DL4C_ERR_FORMAT for a corrupt or truncated gzip stream, DL4C_ERR_IO for a read error. */
dl4c_status dl4c_data_read(gzFile f, const char *path, void *buf, size_t n, size_t *got);

/* Skips n bytes forward (decompressing as needed for gzip files). */
dl4c_status dl4c_data_skip(gzFile f, const char *path, int64_t n, int64_t *skipped);

/* Line-by-line reading of a (possibly gzipped) text file. */
typedef struct dl4c_line_reader {
    gzFile f;            /* the open file */
    const char *path;    /* for messages (not owned) */
    char *buf;           /* read buffer; lines are handed out NUL-terminated inside it */
    size_t cap;          /* bytes allocated for buf */
    size_t start;        /* first unconsumed byte in buf */
    size_t end;          /* one past the last valid byte in buf */
    bool eof;            /* the file has no more bytes */
    int64_t lineno;      /* 1-based number of the last line handed out */
} dl4c_line_reader;

dl4c_status dl4c_line_reader_open(dl4c_line_reader *lr, const char *path);
/* The next line (without "\n" or "\r\n", NUL-terminated, valid until the next call) into
 * *line / *len; *line is NULL at the end of the file. A NUL byte in a line is an error. */
dl4c_status dl4c_line_reader_next(dl4c_line_reader *lr, char **line, size_t *len);
void dl4c_line_reader_close(dl4c_line_reader *lr);

#endif
