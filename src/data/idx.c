/* IDX reader (MNIST, Fashion-MNIST): unsigned-byte images [N, H, W] and labels [N], plain or
 * gzip. Bytes are read into buffers that grow with the data actually present, so a header
 * that claims more than the file holds costs no more memory than the file. */
#include "dl4c/data.h"
#include "data/reader.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_PATH 4096

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads the magic number and dimensions. want_ndim 0 accepts 1..3 dimensions. */
static dl4c_status idx_header(gzFile f, const char *path, int want_ndim, const char *kind,
                              int *ndim_out, uint32_t dims[3]) {
    unsigned char hdr[16];
    size_t got = 0;
    dl4c_status st = dl4c_data_read(f, path, hdr, 4, &got);
    if (st != DL4C_OK) return st;
    if (got == 0) return dl4c_error(DL4C_ERR_FORMAT, "%s: empty file (expected IDX %s)", path, kind);
    if (got < 4)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: expected a 4-byte magic number, got %zu bytes",
                          path, got);
    uint32_t magic = be32(hdr);
    int ndim = hdr[3];
    bool ok = hdr[0] == 0 && hdr[1] == 0 && hdr[2] == IDX_TYPE_UBYTE &&
              (want_ndim ? ndim == want_ndim : (ndim >= 1 && ndim <= 3));
    if (!ok) {
        if (want_ndim)
            return dl4c_error(DL4C_ERR_FORMAT,
                              "%s: wrong magic number 0x%08x (expected 0x%08x for IDX %s)%s", path,
                              magic, (unsigned)(IDX_TYPE_UBYTE << 8 | want_ndim), kind,
                              (hdr[0] == 0 && hdr[1] == 0 && hdr[2] == IDX_TYPE_UBYTE &&
                               (ndim == 1 || ndim == 3))
                                  ? (ndim == 1 ? " - is this a labels file?" : " - is this an images file?")
                                  : "");
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: wrong magic number 0x%08x (expected unsigned-byte IDX, 0x000008NN)",
                          path, magic);
    }
    st = dl4c_data_read(f, path, hdr + 4, (size_t)ndim * 4, &got);
    if (st != DL4C_OK) return st;
    if (got < (size_t)ndim * 4)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: header has %zu of %d dimension bytes", path,
                          got, ndim * 4);
    for (int i = 0; i < ndim; i++) dims[i] = be32(hdr + 4 + 4 * i);
    *ndim_out = ndim;
    return DL4C_OK;
}

/* Reads `want` bytes into a new buffer that grows with the data present. *got < want means
 * the file ended early (the buffer holds what was there). */
static dl4c_status read_bytes(gzFile f, const char *path, uint64_t want, unsigned char **out,
                              uint64_t *got) {
    *out = NULL;
    *got = 0;
    if (want > SIZE_MAX - 64) return dl4c_error(DL4C_ERR_NOMEM, "%s: %llu bytes do not fit in memory",
                                                path, (unsigned long long)want);
    size_t cap = want < (1u << 24) ? (size_t)want : (1u << 24);
    unsigned char *buf = dl4c_alloc(cap);
    if (!buf) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
    size_t have = 0;
    for (;;) {
        size_t n = 0;
        dl4c_status st = dl4c_data_read(f, path, buf + have, cap - have, &n);
        if (st != DL4C_OK) {
            dl4c_free(buf);
            return st;
        }
        have += n;
        if (have < cap || have == want) break;   /* end of file, or done */
        size_t ncap = (cap > (size_t)want / 2) ? (size_t)want : cap * 2;
        unsigned char *nbuf = dl4c_alloc(ncap);
        if (!nbuf) {
            dl4c_free(buf);
            return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory for %zu bytes", path, ncap);
        }
        memcpy(nbuf, buf, have);
        dl4c_free(buf);
        buf = nbuf;
        cap = ncap;
    }
    *out = buf;
    *got = have;
    return DL4C_OK;
}

dl4c_status dl4c_idx_count(const char *images_path, int64_t *n) {
    if (!n) return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: NULL output");
    *n = 0;
    gzFile f = NULL;
    dl4c_status st = dl4c_data_open(images_path, &f);
    if (st != DL4C_OK) return st;
    int ndim = 0;
    uint32_t dims[3] = {0};
    st = idx_header(f, images_path, 0, "data", &ndim, dims);
    gzclose(f);
    if (st == DL4C_OK) *n = dims[0];
    return st;
}

/* Images rows [start, start+count) -> features [count, 1, H, W] in [0, 1]. */
static dl4c_status load_images(gzFile f, const char *path, int64_t start, int64_t count,
                               const uint32_t dims[3], dl4c_tensor **out) {
    uint64_t row = (uint64_t)dims[1] * dims[2];   /* cannot overflow: both < 2^32 */
    uint64_t skip, want, end_bytes;
    if (__builtin_mul_overflow((uint64_t)start, row, &skip) ||
        __builtin_mul_overflow((uint64_t)count, row, &want) ||
        __builtin_add_overflow(skip, want, &end_bytes) || end_bytes > (uint64_t)INT64_MAX / 4)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %lld images of %ux%u pixels are too large", path,
                          (long long)count, dims[1], dims[2]);
    int64_t skipped = 0;
    dl4c_status st = dl4c_data_skip(f, path, (int64_t)skip, &skipped);
    if (st != DL4C_OK) return st;
    if ((uint64_t)skipped < skip)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: expected %llu bytes of pixels, got %lld",
                          path, (unsigned long long)end_bytes, (long long)skipped);
    unsigned char *px = NULL;
    uint64_t got = 0;
    st = read_bytes(f, path, want, &px, &got);
    if (st != DL4C_OK) return st;
    if (got < want) {
        dl4c_free(px);
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: expected %llu bytes of pixels, got %llu",
                          path, (unsigned long long)end_bytes, (unsigned long long)(skip + got));
    }
    int64_t shape[4] = {count, 1, dims[1], dims[2]};
    dl4c_tensor *t = dl4c_tensor_new(4, shape);
    if (!t) {
        dl4c_free(px);
        return dl4c_error_prefix(DL4C_ERR_NOMEM, "%s", path);
    }
    float lut[256];
    for (int i = 0; i < 256; i++) lut[i] = (float)i / 255.0f;
    for (uint64_t i = 0; i < want; i++) t->data[i] = lut[px[i]];
    dl4c_free(px);
    *out = t;
    return DL4C_OK;
}

/* Labels [start, start+count) -> one-hot [count, K]. */
static dl4c_status load_labels(gzFile f, const char *path, int64_t start, int64_t count,
                               int n_classes, dl4c_tensor **out) {
    int64_t skipped = 0;
    dl4c_status st = dl4c_data_skip(f, path, start, &skipped);
    if (st != DL4C_OK) return st;
    if (skipped < start)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: expected %lld bytes of labels, got %lld",
                          path, (long long)(start + count), (long long)skipped);
    unsigned char *lab = NULL;
    uint64_t got = 0;
    st = read_bytes(f, path, (uint64_t)count, &lab, &got);
    if (st != DL4C_OK) return st;
    if (got < (uint64_t)count) {
        dl4c_free(lab);
        return dl4c_error(DL4C_ERR_FORMAT, "%s: truncated: expected %lld bytes of labels, got %lld",
                          path, (long long)(start + count), (long long)(start + (int64_t)got));
    }
    for (int64_t i = 0; i < count; i++) {
        if (lab[i] >= n_classes) {
            dl4c_status e = dl4c_error(DL4C_ERR_FORMAT,
                                       "%s: label %u of example %lld is out of range (%d classes: 0..%d)",
                                       path, lab[i], (long long)(start + i), n_classes, n_classes - 1);
            dl4c_free(lab);
            return e;
        }
    }
    int64_t shape[2] = {count, n_classes};
    dl4c_tensor *t = dl4c_tensor_new(2, shape);   /* zeroed */
    if (!t) {
        dl4c_free(lab);
        return dl4c_error_prefix(DL4C_ERR_NOMEM, "%s", path);
    }
    for (int64_t i = 0; i < count; i++) t->data[i * n_classes + lab[i]] = 1.0f;
    dl4c_free(lab);
    *out = t;
    return DL4C_OK;
}

dl4c_status dl4c_idx_load_ex(const char *images_path, const char *labels_path, int64_t start,
                             int64_t count, int n_classes, dl4c_dataset **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: NULL output");
    *out = NULL;
    if (!images_path || !labels_path)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: images and labels paths are required");
    if (n_classes <= 0) n_classes = DL4C_IDX_DEFAULT_CLASSES;
    if (start < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: negative start %lld", (long long)start);

    gzFile fi = NULL, fl = NULL;
    dl4c_tensor *x = NULL, *y = NULL;
    int ndim = 0;
    uint32_t dims[3] = {0}, ldims[3] = {0};
    dl4c_status st = dl4c_data_open(images_path, &fi);
    if (st == DL4C_OK) st = dl4c_data_open(labels_path, &fl);
    if (st == DL4C_OK) st = idx_header(fi, images_path, 3, "images", &ndim, dims);
    if (st == DL4C_OK) st = idx_header(fl, labels_path, 1, "labels", &ndim, ldims);
    if (st == DL4C_OK && (dims[1] == 0 || dims[2] == 0))
        st = dl4c_error(DL4C_ERR_FORMAT, "%s: images of %ux%u pixels are empty", images_path,
                        dims[1], dims[2]);
    /* Rows are indexed with int64 products and network inputs are ints: even an empty file
     * must not declare rows whose size overflows them (found by fuzzing). */
    if (st == DL4C_OK && (uint64_t)dims[1] * dims[2] > INT32_MAX)
        st = dl4c_error(DL4C_ERR_FORMAT, "%s: images of %ux%u pixels are too large", images_path,
                        dims[1], dims[2]);
    if (st == DL4C_OK && dims[0] != ldims[0])
        st = dl4c_error(DL4C_ERR_FORMAT, "count mismatch: %s has %u images but %s has %u labels",
                        images_path, dims[0], labels_path, ldims[0]);
    int64_t n = dims[0];
    if (st == DL4C_OK) {
        if (count < 0) count = start <= n ? n - start : 0;
        if (start > n || count > n - start)
            st = dl4c_error(DL4C_ERR_INVALID_ARG, "%s: rows [%lld, %lld) are out of range for %lld examples",
                            images_path, (long long)start, (long long)start + count, (long long)n);
    }
    if (st == DL4C_OK) st = load_images(fi, images_path, start, count, dims, &x);
    if (st == DL4C_OK) st = load_labels(fl, labels_path, start, count, n_classes, &y);
    if (fi) gzclose(fi);
    if (fl) gzclose(fl);
    if (st != DL4C_OK) {
        dl4c_tensor_free(x);
        dl4c_tensor_free(y);
        return st;
    }
    return dl4c_dataset_new(x, y, n_classes, out);
}

dl4c_status dl4c_idx_load(const char *images_path, const char *labels_path, dl4c_dataset **out) {
    return dl4c_idx_load_ex(images_path, labels_path, 0, -1, 0, out);
}

dl4c_status dl4c_idx_load_range(const char *images_path, const char *labels_path, int64_t start,
                                int64_t count, dl4c_dataset **out) {
    if (count < 0) {
        if (out) *out = NULL;
        return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: negative count %lld", (long long)count);
    }
    return dl4c_idx_load_ex(images_path, labels_path, start, count, 0, out);
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Copies s[0..len) into out at *used; false if it does not fit (with the NUL). */
static bool append(char *out, size_t n, size_t *used, const char *s, size_t len) {
    if (len >= n - *used) return false;
    memcpy(out + *used, s, len);
    *used += len;
    out[*used] = '\0';
    return true;
}

dl4c_status dl4c_idx_labels_path(const char *images_path, char *out, size_t n) {
    if (!images_path || !out || n == 0)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "idx: labels_path needs a path and an output buffer");
    out[0] = '\0';
    const char *base = strrchr(images_path, '/');
    base = base ? base + 1 : images_path;
    const char *m = NULL;
    for (const char *p = strstr(base, "images"); p; p = strstr(p + 1, "images")) m = p;
    if (!m)
        return dl4c_error(DL4C_ERR_INVALID_ARG,
                          "%s: cannot find the labels file: the name has no \"images\" to replace",
                          images_path);
    char cand[IDX_MAX_PATH];
    size_t used = 0;
    const char *rest = m + strlen("images");
    const char *idx3 = strstr(rest, "idx3");
    bool ok = append(cand, sizeof cand, &used, images_path, (size_t)(m - images_path)) &&
              append(cand, sizeof cand, &used, "labels", 6);
    if (ok && idx3)
        ok = append(cand, sizeof cand, &used, rest, (size_t)(idx3 - rest)) &&
             append(cand, sizeof cand, &used, "idx1", 4) &&
             append(cand, sizeof cand, &used, idx3 + 4, strlen(idx3 + 4));
    else if (ok)
        ok = append(cand, sizeof cand, &used, rest, strlen(rest));
    if (!ok) return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: path too long", images_path);

    char other[IDX_MAX_PATH];
    bool gz = used >= 3 && strcmp(cand + used - 3, ".gz") == 0;
    if (gz)
        snprintf(other, sizeof other, "%.*s", (int)(used - 3), cand);
    else if (snprintf(other, sizeof other, "%s.gz", cand) >= (int)sizeof other)
        other[0] = '\0';
    const char *found = is_file(cand) ? cand : (other[0] && is_file(other)) ? other : NULL;
    if (!found)
        return dl4c_error(DL4C_ERR_IO, "%s: no labels file beside it (looked for %s and %s)",
                          images_path, cand, other);
    if (strlen(found) >= n)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: output buffer of %zu bytes is too small", found, n);
    memcpy(out, found, strlen(found) + 1);
    return DL4C_OK;
}

/* The images file of one half ("train" or "t10k") of an MNIST directory. */
static dl4c_status find_images(const char *dir, const char *half, char *out, size_t n) {
    static const char *const styles[] = {"%s/%s-images-idx3-ubyte.gz", "%s/%s-images-idx3-ubyte",
                                         "%s/%s-images.idx3-ubyte.gz", "%s/%s-images.idx3-ubyte"};
    for (size_t i = 0; i < sizeof styles / sizeof styles[0]; i++) {
        int len = snprintf(out, n, styles[i], dir, half);
        if (len < 0 || (size_t)len >= n) return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: path too long", dir);
        if (is_file(out)) return DL4C_OK;
    }
    return dl4c_error(DL4C_ERR_IO, "%s: no %s-images-idx3-ubyte[.gz] (or %s-images.idx3-ubyte[.gz]) in it",
                      dir, half, half);
}

static dl4c_status load_half(const char *dir, const char *half, dl4c_dataset **out) {
    char images[IDX_MAX_PATH], labels[IDX_MAX_PATH];
    dl4c_status st = find_images(dir, half, images, sizeof images);
    if (st == DL4C_OK) st = dl4c_idx_labels_path(images, labels, sizeof labels);
    if (st == DL4C_OK) st = dl4c_idx_load(images, labels, out);
    return st;
}

dl4c_status dl4c_mnist_dir_load(const char *dir, dl4c_dataset **train, dl4c_dataset **test) {
    if (train) *train = NULL;
    if (test) *test = NULL;
    if (!dir) return dl4c_error(DL4C_ERR_INVALID_ARG, "mnist: no directory given");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dl4c_error(DL4C_ERR_IO, "%s: not a directory", dir);
    dl4c_status st = DL4C_OK;
    if (train) st = load_half(dir, "train", train);
    if (st == DL4C_OK && test) st = load_half(dir, "t10k", test);
    if (st != DL4C_OK && train) {
        dl4c_dataset_free(*train);
        *train = NULL;
    }
    return st;
}
