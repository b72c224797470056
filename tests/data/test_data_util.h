/* Helpers shared by the data module's tests: a temporary directory and small files in it. */
#ifndef DL4C_TEST_DATA_UTIL_H
#define DL4C_TEST_DATA_UTIL_H

#define _GNU_SOURCE
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A fresh directory under /tmp (its path, static). */
static inline const char *tdu_mkdtemp(void) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/dl4c-data-test-XXXXXX");
    return mkdtemp(dir);
}

static inline int tdu_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static inline void tdu_rmdir(const char *dir) {
    if (dir) nftw(dir, tdu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* dir/name into a rotating set of static buffers. */
static inline const char *tdu_path(const char *dir, const char *name) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

/* Writes bytes to dir/name (plain, or gzip when gz); returns the path or NULL. */
static inline const char *tdu_write(const char *dir, const char *name, const void *data, size_t n, int gz) {
    const char *p = tdu_path(dir, name);
    if (gz) {
        gzFile f = gzopen(p, "wb");
        if (!f) return NULL;
        if (n && gzwrite(f, data, (unsigned)n) != (int)n) { gzclose(f); return NULL; }
        return gzclose(f) == Z_OK ? p : NULL;
    }
    FILE *f = fopen(p, "wb");
    if (!f) return NULL;
    if (n && fwrite(data, 1, n, f) != n) { fclose(f); return NULL; }
    return fclose(f) == 0 ? p : NULL;
}

static inline const char *tdu_write_str(const char *dir, const char *name, const char *text) {
    return tdu_write(dir, name, text, strlen(text), 0);
}

/* Reads a whole (possibly gzipped) file into a malloc'd buffer. */
static inline unsigned char *tdu_read_all(const char *path, size_t *n) {
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (len == cap) {
            unsigned char *nb = malloc(cap * 2);
            memcpy(nb, b, len);
            free(b);
            b = nb;
            cap *= 2;
        }
        int r = gzread(f, b + len, (unsigned)(cap - len));
        if (r <= 0) break;
        len += (size_t)r;
    }
    gzclose(f);
    *n = len;
    return b;
}

static inline void tdu_be32(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);  p[3] = (unsigned char)v;
}

/* An IDX images file image: header claiming n images of h x w, then `have` pixel bytes with
 * pixel i = (i * 7) % 256. Returns a malloc'd buffer of *len bytes. */
static inline unsigned char *tdu_idx_images(unsigned n, unsigned h, unsigned w, size_t have, size_t *len) {
    *len = 16 + have;
    unsigned char *b = malloc(*len);
    tdu_be32(b, 0x803); tdu_be32(b + 4, n); tdu_be32(b + 8, h); tdu_be32(b + 12, w);
    for (size_t i = 0; i < have; i++) b[16 + i] = (unsigned char)((i * 7) % 256);
    return b;
}

/* An IDX labels file image: n labels, label i = i % k (or `bad` at position bad_at). */
static inline unsigned char *tdu_idx_labels(unsigned n, unsigned k, size_t have, int bad_at, int bad, size_t *len) {
    *len = 8 + have;
    unsigned char *b = malloc(*len);
    tdu_be32(b, 0x801); tdu_be32(b + 4, n);
    for (size_t i = 0; i < have; i++) b[8 + i] = (unsigned char)(i % k);
    if (bad_at >= 0 && (size_t)bad_at < have) b[8 + bad_at] = (unsigned char)bad;
    return b;
}

#endif
