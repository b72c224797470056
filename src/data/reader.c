/* Plain-or-gzip file reading for the data readers (see reader.h). */
#include "data/reader.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

dl4c_status dl4c_data_open(const char *path, gzFile *out) {
    *out = NULL;
    if (!path || !*path) return dl4c_error(DL4C_ERR_INVALID_ARG, "no file name given");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dl4c_error(DL4C_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return dl4c_error(DL4C_ERR_IO, "%s: is a directory, not a file", path);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        if (errno) return dl4c_error(DL4C_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return dl4c_error(DL4C_ERR_NOMEM, "%s: cannot open: out of memory", path);
    }
    gzbuffer(f, 1 << 17);
    *out = f;
    return DL4C_OK;
}

/* Turns zlib's error state into a dl4c message. */
static dl4c_status gz_failure(gzFile f, const char *path) {
    int errnum = Z_OK;
    const char *msg = gzerror(f, &errnum);
    size_t plen = strlen(path);
    if (msg && strncmp(msg, path, plen) == 0 && msg[plen] == ':' && msg[plen + 1] == ' ')
        msg += plen + 2;   /* zlib's message starts with the path; ours does already */
    if (errnum == Z_ERRNO)
        return dl4c_error(DL4C_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (errnum == Z_MEM_ERROR) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory in zlib", path);
    if (errnum == Z_BUF_ERROR)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated gzip data: %s", path,
                          (msg && *msg) ? msg : "unexpected end of file");
    return dl4c_error(DL4C_ERR_FORMAT, "%s: unreadable gzip data: %s", path,
                      (msg && *msg) ? msg : "unknown zlib error");
}

/* True when zlib has recorded an error (not merely the end of the file). */
static bool gz_failed(gzFile f) {
    int errnum = Z_OK;
    gzerror(f, &errnum);
    return errnum != Z_OK && errnum != Z_STREAM_END;
}

dl4c_status dl4c_data_read(gzFile f, const char *path, void *buf, size_t n, size_t *got) {
    size_t done = 0;
    *got = 0;
    while (done < n) {
        size_t want = n - done;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(f, (char *)buf + done, (unsigned)want);
        if (r < 0) return gz_failure(f, path);
        if (gz_failed(f)) return gz_failure(f, path);
        if (r == 0) break;
        done += (size_t)r;
    }
    *got = done;
    return DL4C_OK;
}

dl4c_status dl4c_data_skip(gzFile f, const char *path, int64_t n, int64_t *skipped) {
    char tmp[1 << 14];
    *skipped = 0;
    /* For plain files a real seek; for gzip, gzseek would decompress too, but reading in
     * chunks reports corrupt data the same way as dl4c_data_read. */
    if (gzdirect(f)) {
        z_off_t here = gztell(f);
        if (here >= 0 && n <= (int64_t)INT64_MAX - here) {
            z_off_t to = gzseek(f, (z_off_t)n, SEEK_CUR);
            if (to >= 0) {
                *skipped = (int64_t)(to - here);
                return DL4C_OK;
            }
        }
        if (gz_failed(f)) return gz_failure(f, path);
    }
    while (*skipped < n) {
        size_t want = sizeof tmp;
        if ((int64_t)want > n - *skipped) want = (size_t)(n - *skipped);
        size_t got = 0;
        dl4c_status st = dl4c_data_read(f, path, tmp, want, &got);
        if (st != DL4C_OK) return st;
        *skipped += (int64_t)got;
        if (got < want) break;
    }
    return DL4C_OK;
}

dl4c_status dl4c_line_reader_open(dl4c_line_reader *lr, const char *path) {
    memset(lr, 0, sizeof *lr);
    lr->path = path;
    lr->cap = 1 << 16;
    lr->buf = dl4c_alloc(lr->cap);
    if (!lr->buf) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path ? path : "?");
    dl4c_status st = dl4c_data_open(path, &lr->f);
    if (st != DL4C_OK) {
        dl4c_free(lr->buf);
        lr->buf = NULL;
    }
    return st;
}

void dl4c_line_reader_close(dl4c_line_reader *lr) {
    if (lr->f) gzclose(lr->f);
    dl4c_free(lr->buf);
    memset(lr, 0, sizeof *lr);
}

dl4c_status dl4c_line_reader_next(dl4c_line_reader *lr, char **line, size_t *len) {
    *line = NULL;
    *len = 0;
    size_t scanned = lr->start;   /* bytes before this hold no newline */
    for (;;) {
        char *nl = memchr(lr->buf + scanned, '\n', lr->end - scanned);
        size_t stop;
        if (nl) {
            stop = (size_t)(nl - lr->buf);
        } else if (lr->eof) {
            if (lr->start == lr->end) return DL4C_OK;   /* end of file */
            stop = lr->end;                              /* last line, no newline */
        } else {
            /* need more bytes: compact, grow if full, read */
            scanned = lr->end;
            if (lr->start > 0) {
                memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
                lr->end -= lr->start;
                scanned -= lr->start;
                lr->start = 0;
            }
            if (lr->end + 1 >= lr->cap) {
                if (lr->cap > SIZE_MAX / 2)
                    return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: line too long", lr->path,
                                      (long long)lr->lineno + 1);
                size_t ncap = lr->cap * 2;
                char *nbuf = dl4c_alloc(ncap);
                if (!nbuf)
                    return dl4c_error(DL4C_ERR_NOMEM, "%s:%lld: out of memory for a %zu-byte line",
                                      lr->path, (long long)lr->lineno + 1, lr->end);
                memcpy(nbuf, lr->buf, lr->end);
                dl4c_free(lr->buf);
                lr->buf = nbuf;
                lr->cap = ncap;
            }
            size_t got = 0;
            /* keep one byte free for the terminating NUL of a last line */
            dl4c_status st = dl4c_data_read(lr->f, lr->path, lr->buf + lr->end, lr->cap - 1 - lr->end, &got);
            if (st != DL4C_OK) return st;
            if (got == 0) lr->eof = true;
            lr->end += got;
            continue;
        }
        char *s = lr->buf + lr->start;
        size_t n = stop - lr->start;
        lr->lineno++;
        lr->start = nl ? stop + 1 : stop;
        if (n > 0 && s[n - 1] == '\r') n--;
        s[n] = '\0';   /* overwrites '\n' or '\r', or the free byte after the last line */
        if (memchr(s, '\0', n))
            return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: NUL byte in a text line (binary file?)",
                              lr->path, (long long)lr->lineno);
        *line = s;
        *len = n;
        return DL4C_OK;
    }
}
