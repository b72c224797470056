/* CSV reader: numeric rows -> features [N, F] and one-hot labels [N, K] or regression targets
 * [N, T]. One streaming pass; only the requested rows are kept in memory. */
#define _GNU_SOURCE
#include "dl4c/data.h"
#include "data/reader.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CSV_MAX_CLASS 16777216.0   /* labels must be exact in a float; keeps one-hot sane */

dl4c_csv_opts dl4c_csv_opts_default(void) {
    return (dl4c_csv_opts){.label_column = -1, .header = false, .detect_header = true,
                           .n_classes = 0, .regression = false, .n_label_columns = 1,
                           .delimiter = ','};
}

/* A growable float array (grows by allocating anew and copying; never realloc in place). */
typedef struct csv_floats {
    float *data;   /* the values */
    size_t len;    /* values used */
    size_t cap;    /* values allocated */
} csv_floats;

static bool floats_reserve(csv_floats *a, size_t extra) {
    if (extra <= a->cap - a->len) return true;
    if (a->len > SIZE_MAX / sizeof(float) - extra) return false;
    size_t need = a->len + extra, ncap = a->cap ? a->cap : 1024;
    while (ncap < need) ncap = (ncap > SIZE_MAX / sizeof(float) / 2) ? need : ncap * 2;
    float *n = dl4c_alloc(ncap * sizeof *n);
    if (!n) return false;
    if (a->len) memcpy(n, a->data, a->len * sizeof *n);
    dl4c_free(a->data);
    a->data = n;
    a->cap = ncap;
    return true;
}

/* The state of one pass over a file. */
typedef struct csv_pass {
    const char *path;        /* file name for messages */
    dl4c_csv_opts o;         /* resolved options */
    locale_t c_locale;       /* numbers always use '.', whatever the process locale */
    dl4c_line_reader lr;     /* the file */
    char **fields;           /* field starts of the current line */
    int fields_cap;          /* entries allocated in fields */
    int ncols;               /* columns per row (0 until the first row is seen) */
    int header_cols;         /* columns of the header line (0 if none) */
    int64_t header_line;     /* line number of the header (0 if none) */
    int64_t first_line;      /* line number of the first data row */
    int lab0, nlab;          /* label columns [lab0, lab0 + nlab) */
    double *values;          /* parsed values of the current row [ncols] */
} csv_pass;

/* Trims spaces and one pair of double quotes in place. */
static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = '\0';
        s++;
        while (*s == ' ') s++;
    }
    return s;
}

/* Splits line in place at the delimiter into p->fields (trimmed); returns the count, or -1
 * (no memory) or -2 (too many fields). */
static int split(csv_pass *p, char *line) {
    int n = 1;
    for (const char *c = line; (c = strchr(c, p->o.delimiter)); c++) {
        if (n == INT32_MAX - 1) return -2;
        n++;
    }
    if (n > p->fields_cap) {
        char **f = dl4c_alloc((size_t)n * sizeof *f);
        if (!f) return -1;
        dl4c_free(p->fields);
        p->fields = f;
        p->fields_cap = n;
    }
    int i = 0;
    p->fields[i++] = line;
    for (char *c = line; (c = strchr(c, p->o.delimiter));) {
        *c++ = '\0';
        p->fields[i++] = c;
    }
    for (i = 0; i < n; i++) p->fields[i] = trim(p->fields[i]);
    return n;
}

/* 0: a finite number in *v; 1: empty; 2: not a number; 3: not finite. */
static int parse_number(csv_pass *p, char *s, double *v) {
    if (!*s) return 1;
    char *end = NULL;
    errno = 0;
    double d = strtod_l(s, &end, p->c_locale);
    if (end == s) return 2;
    while (*end == ' ' || *end == '\t') end++;
    if (*end) return 2;
    if (!isfinite(d) || fabs(d) > 3.4028234663852886e38) return 3;
    *v = d;
    return 0;
}

static bool is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return false;
    return true;
}

/* Parses the n fields of the current line into p->values; an error names line and column. */
static dl4c_status parse_row(csv_pass *p, int n) {
    for (int j = 0; j < n; j++) {
        char *s = p->fields[j];
        int r = parse_number(p, s, &p->values[j]);
        if (r == 1)
            return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: empty field", p->path,
                              (long long)p->lr.lineno, j + 1);
        if (r == 2)
            return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: \"%.48s\" is not a number", p->path,
                              (long long)p->lr.lineno, j + 1, s);
        if (r == 3)
            return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: \"%.48s\" is not a finite float",
                              p->path, (long long)p->lr.lineno, j + 1, s);
    }
    return DL4C_OK;
}

/* True when at least half the fields of the (split) line are not numbers (NaN and infinity
 * count as numbers here): a header. A data row with one typo stays data and gets a message. */
static bool looks_like_header(csv_pass *p, int n) {
    int words = 0;
    for (int j = 0; j < n; j++) {
        double v;
        if (parse_number(p, p->fields[j], &v) == 2) words++;
    }
    return 2 * words >= n;
}

/* Sets ncols and the label block from the first data row. */
static dl4c_status set_columns(csv_pass *p, int n) {
    if (p->header_cols && p->header_cols != n)
        return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: %d columns, but the header (line %lld) has %d",
                          p->path, (long long)p->lr.lineno, n, (long long)p->header_line,
                          p->header_cols);
    p->ncols = n;
    p->first_line = p->lr.lineno;
    p->nlab = p->o.regression ? p->o.n_label_columns : 1;
    int lc = p->o.label_column;
    long long lab0 = lc >= 0 ? lc : (long long)n + lc - p->nlab + 1;
    if (lab0 < 0 || lab0 + p->nlab > n)
        return dl4c_error(DL4C_ERR_INVALID_ARG,
                          "%s: label column %d (%d label column%s) does not fit in the %d columns of line %lld",
                          p->path, lc, p->nlab, p->nlab == 1 ? "" : "s", n, (long long)p->lr.lineno);
    if (p->nlab >= n)
        return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: no feature columns (%d columns, %d for labels)",
                          p->path, (long long)p->lr.lineno, n, p->nlab);
    p->lab0 = (int)lab0;
    p->values = dl4c_alloc((size_t)n * sizeof *p->values);
    if (!p->values) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", p->path);
    return DL4C_OK;
}

/* Checks a class label; *k is its integer value. */
static dl4c_status check_class(csv_pass *p, double v, int *k) {
    int col = p->lab0 + 1;
    if (v != floor(v))
        return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: class label %g is not an integer",
                          p->path, (long long)p->lr.lineno, col, v);
    if (v < 0 || v >= CSV_MAX_CLASS)
        return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: class label %g is out of range "
                          "(must be 0 or more%s)", p->path, (long long)p->lr.lineno, col, v,
                          v < 0 ? "" : " and below 16777216");
    if (p->o.n_classes > 0 && v >= p->o.n_classes)
        return dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: column %d: class label %g is out of range for %d "
                          "classes (0..%d)", p->path, (long long)p->lr.lineno, col, v,
                          p->o.n_classes, p->o.n_classes - 1);
    *k = (int)v;
    return DL4C_OK;
}

/* Resolves defaults and checks options. */
static dl4c_status resolve_opts(const char *path, const dl4c_csv_opts *in, dl4c_csv_opts *o) {
    *o = in ? *in : dl4c_csv_opts_default();
    if (o->delimiter == 0) o->delimiter = ',';
    if (o->n_label_columns == 0) o->n_label_columns = 1;
    if (o->delimiter == '\n' || o->delimiter == '\r' || o->delimiter == '"' ||
        o->delimiter == ' ' || o->delimiter == '.' || o->delimiter == '-' || o->delimiter == '+' ||
        (o->delimiter >= '0' && o->delimiter <= '9'))
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: delimiter '%c' cannot separate numbers", path,
                          o->delimiter);
    if (o->n_label_columns < 0)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: %d label columns", path, o->n_label_columns);
    if (!o->regression && o->n_label_columns != 1)
        return dl4c_error(DL4C_ERR_INVALID_ARG,
                          "%s: classification uses one label column, not %d (set regression for targets)",
                          path, o->n_label_columns);
    if (o->regression && o->n_classes != 0)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: regression with n_classes %d (must be 0)", path,
                          o->n_classes);
    if (o->n_classes < 0)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: %d classes", path, o->n_classes);
    return DL4C_OK;
}

/* One pass over `path`. Rows [start, start+count) (count < 0: to the end) are stored when
 * `out` is given; *total gets the number of data rows seen (all of them when counting). */
static dl4c_status csv_pass_run(const char *path, const dl4c_csv_opts *opts, int64_t start,
                                int64_t count, dl4c_dataset **out, int64_t *total) {
    if (out) *out = NULL;
    if (!path) return dl4c_error(DL4C_ERR_INVALID_ARG, "csv: no file name given");
    if (start < 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: negative start %lld", path, (long long)start);
    csv_pass p = {.path = path};
    dl4c_status st = resolve_opts(path, opts, &p.o);
    if (st != DL4C_OK) return st;
    p.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!p.c_locale) return dl4c_error(DL4C_ERR_NOMEM, "%s: cannot create the C locale", path);
    st = dl4c_line_reader_open(&p.lr, path);
    if (st != DL4C_OK) {
        freelocale(p.c_locale);
        return st;
    }
    bool infer = out && !p.o.regression && p.o.n_classes == 0;
    bool scan_all = !out || infer || count < 0;   /* else stop after the range */
    int64_t end = count < 0 ? INT64_MAX : start + count;
    if (count >= 0 && start > INT64_MAX - count) end = INT64_MAX;
    csv_floats feats = {0}, labs = {0};
    int max_class = -1;
    int64_t rows = 0;
    bool first = true;
    char *line = NULL;
    size_t len = 0;
    /* An empty range still reads the first data row: it sets the columns (the width of the
     * empty result) and tells an empty file from an empty range. */
    while (st == DL4C_OK && (scan_all || rows < end || !p.ncols)) {
        st = dl4c_line_reader_next(&p.lr, &line, &len);
        if (st != DL4C_OK || !line) break;
        if (first && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
            (unsigned char)line[2] == 0xBF)
            line += 3;   /* UTF-8 byte order mark */
        if (is_blank(line)) continue;
        int n = split(&p, line);
        if (n < 0) {
            st = n == -1 ? dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path)
                         : dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: too many columns", path,
                                      (long long)p.lr.lineno);
            break;
        }
        if (first) {
            first = false;
            if (p.o.header || (p.o.detect_header && looks_like_header(&p, n))) {
                p.header_cols = n;
                p.header_line = p.lr.lineno;
                continue;
            }
        }
        if (!p.ncols && (st = set_columns(&p, n)) != DL4C_OK) break;
        if (n != p.ncols) {
            st = dl4c_error(DL4C_ERR_FORMAT, "%s:%lld: expected %d columns (as on line %lld), found %d",
                            path, (long long)p.lr.lineno, p.ncols, (long long)p.first_line, n);
            break;
        }
        bool keep = out && rows >= start && rows < end;
        if (keep || infer) {
            if ((st = parse_row(&p, n)) != DL4C_OK) break;
            if (!p.o.regression) {
                int k = 0;
                if ((st = check_class(&p, p.values[p.lab0], &k)) != DL4C_OK) break;
                if (k > max_class) max_class = k;
            }
        }
        if (keep) {
            int nf = p.ncols - p.nlab;
            if (!floats_reserve(&feats, (size_t)nf) || !floats_reserve(&labs, (size_t)p.nlab)) {
                st = dl4c_error(DL4C_ERR_NOMEM, "%s:%lld: out of memory", path, (long long)p.lr.lineno);
                break;
            }
            for (int j = 0; j < p.ncols; j++) {
                if (j >= p.lab0 && j < p.lab0 + p.nlab)
                    labs.data[labs.len++] = (float)p.values[j];
                else
                    feats.data[feats.len++] = (float)p.values[j];
            }
        }
        rows++;
    }
    dl4c_line_reader_close(&p.lr);
    freelocale(p.c_locale);
    dl4c_free(p.fields);
    dl4c_free(p.values);
    if (st == DL4C_OK && rows == 0)
        st = dl4c_error(DL4C_ERR_FORMAT, "%s: empty file (no data rows%s)", path,
                        p.header_line ? " after the header" : "");
    if (st == DL4C_OK && out && (start > rows || (count >= 0 && count > rows - start)))
        st = dl4c_error(DL4C_ERR_INVALID_ARG, "%s: rows [%lld, %lld) are out of range for %lld rows", path,
                        (long long)start, count >= 0 ? (long long)(start + count) : (long long)rows,
                        (long long)rows);
    if (total) *total = rows;
    if (st != DL4C_OK || !out) {
        dl4c_free(feats.data);
        dl4c_free(labs.data);
        return st;
    }
    int64_t kept = count >= 0 ? count : rows - start;
    int nf = p.ncols - p.nlab;
    int k = p.o.regression ? 0 : (p.o.n_classes > 0 ? p.o.n_classes : max_class + 1);
    int64_t fshape[2] = {kept, nf}, lshape[2] = {kept, p.o.regression ? p.nlab : k};
    dl4c_tensor *x = dl4c_tensor_new(2, fshape), *y = x ? dl4c_tensor_new(2, lshape) : NULL;
    if (!x || !y) {
        dl4c_tensor_free(x);
        dl4c_free(feats.data);
        dl4c_free(labs.data);
        return dl4c_error_prefix(DL4C_ERR_NOMEM, "%s", path);
    }
    DL4C_ASSERT(feats.len == (size_t)(kept * nf) && labs.len == (size_t)(kept * p.nlab));
    if (feats.len) memcpy(x->data, feats.data, feats.len * sizeof(float));
    if (p.o.regression) {
        if (labs.len) memcpy(y->data, labs.data, labs.len * sizeof(float));
    } else {
        for (int64_t i = 0; i < kept; i++) y->data[i * k + (int64_t)labs.data[i]] = 1.0f;
    }
    dl4c_free(feats.data);
    dl4c_free(labs.data);
    return dl4c_dataset_new(x, y, k, out);
}

dl4c_status dl4c_csv_load(const char *path, const dl4c_csv_opts *opts, dl4c_dataset **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "csv: NULL output");
    return csv_pass_run(path, opts, 0, -1, out, NULL);
}

dl4c_status dl4c_csv_load_range(const char *path, const dl4c_csv_opts *opts, int64_t start,
                                int64_t count, dl4c_dataset **out) {
    if (!out) return dl4c_error(DL4C_ERR_INVALID_ARG, "csv: NULL output");
    return csv_pass_run(path, opts, start, count, out, NULL);
}

dl4c_status dl4c_csv_count(const char *path, const dl4c_csv_opts *opts, int64_t *n) {
    if (!n) return dl4c_error(DL4C_ERR_INVALID_ARG, "csv: NULL output");
    *n = 0;
    return csv_pass_run(path, opts, 0, -1, NULL, n);
}
