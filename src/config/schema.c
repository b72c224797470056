/* The configuration schema: one table of fields per object (top level, updater, input,
 * layer, training), read from a jansson tree by one validator (for JSON and YAML alike) and
 * written back to a tree by the same tables. Layer fields carry a bit per layer type that
 * uses them, so "which fields does a conv2d take" lives in one place. */
#define _GNU_SOURCE
#include "config/config_internal.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Layer names: stored inline (char name[N]) or as an owned pointer, whichever nn.h has */

#define NAME_IS_POINTER \
    _Generic(&((dl4c_layer_conf *)0)->name, const char **: 1, char **: 1, default: 0)
_Static_assert(NAME_IS_POINTER || sizeof(((dl4c_layer_conf *)0)->name) > DL4C_CONFIG_NAME_MAX,
               "dl4c_layer_conf.name must hold DL4C_CONFIG_NAME_MAX bytes and a NUL");

const char *dl4c_config_layer_name(const dl4c_layer_conf *layer) {
    const char *p;
    if (NAME_IS_POINTER)
        memcpy(&p, (const void *)&layer->name, sizeof p);
    else
        p = (const char *)(const void *)&layer->name;
    return p && p[0] ? p : NULL;
}

/* Stores s[0..len) (len <= DL4C_CONFIG_NAME_MAX) as the layer's name. */
static bool name_set(dl4c_layer_conf *layer, const char *s, size_t len) {
    if (NAME_IS_POINTER) {
        char *copy = strndup(s, len);
        if (!copy) return false;
        memcpy((void *)&layer->name, &copy, sizeof copy);
    } else {
        char *dst = (char *)(void *)&layer->name;
        memcpy(dst, s, len);
        dst[len] = '\0';
    }
    return true;
}

static void name_clear(dl4c_layer_conf *layer) {
    if (NAME_IS_POINTER) {
        char *p;
        memcpy(&p, (const void *)&layer->name, sizeof p);
        free(p);
        p = NULL;
        memcpy((void *)&layer->name, &p, sizeof p);
    } else {
        memset((void *)&layer->name, 0, sizeof layer->name);
    }
}

void dl4c_config_free_strings(dl4c_net_conf *conf) {
    if (!conf || !NAME_IS_POINTER) return;
    for (int i = 0; i < conf->n_layers && i < DL4C_MAX_LAYERS; i++) name_clear(&conf->layers[i]);
}

/* ---- Enum names: the tables of nn.h / optim.h plus DL4J-style aliases ---- */

typedef struct enum_alias {
    const char *alias;   /* accepted spelling (case-insensitive) */
    int value;           /* the enum value it means */
} enum_alias;

typedef struct enum_desc {
    const char *what;                         /* noun for messages: "activation" */
    int first;                                /* first named value (1 where 0 = default) */
    int count;                                /* the enum's _COUNT */
    const char *(*name)(int v);               /* canonical name */
    bool (*parse)(const char *s, int *v);     /* canonical names, case-insensitive */
    const enum_alias *aliases;                /* extra spellings, ends with {NULL, 0} */
} enum_desc;

#define ENUM_WRAP(T, stem)                                                         \
    static const char *stem##_enum_name(int v) { return dl4c_##stem##_str((T)v); }      \
    static bool stem##_enum_parse(const char *s, int *v) {                               \
        T t;                                                                       \
        if (!dl4c_##stem##_parse(s, &t)) return false;                             \
        *v = (int)t;                                                               \
        return true;                                                               \
    }                                                                              \
    _Static_assert(sizeof(T) == sizeof(int), #T " is stored as an int")

ENUM_WRAP(dl4c_layer_type, layer_type);
ENUM_WRAP(dl4c_activation, activation);
ENUM_WRAP(dl4c_loss, loss);
ENUM_WRAP(dl4c_weight_init, weight_init);
ENUM_WRAP(dl4c_pooling, pooling);
ENUM_WRAP(dl4c_conv_mode, conv_mode);
ENUM_WRAP(dl4c_averaging, averaging);
ENUM_WRAP(dl4c_updater, updater);

static const enum_alias layer_type_aliases[] = {
    {"convolution", DL4C_LAYER_CONV2D},      {"convolutionlayer", DL4C_LAYER_CONV2D},
    {"conv", DL4C_LAYER_CONV2D},             {"convolution2d", DL4C_LAYER_CONV2D},
    {"denselayer", DL4C_LAYER_DENSE},        {"outputlayer", DL4C_LAYER_OUTPUT},
    {"pooling", DL4C_LAYER_SUBSAMPLING},     {"subsamplinglayer", DL4C_LAYER_SUBSAMPLING},
    {NULL, 0}};
static const enum_alias activation_aliases[] = {
    {"linear", DL4C_IDENTITY}, {"leaky_relu", DL4C_LEAKYRELU}, {NULL, 0}};
static const enum_alias loss_aliases[] = {
    {"negativeloglikelihood", DL4C_LOSS_NLL}, {"negative_log_likelihood", DL4C_LOSS_NLL},
    {"squared_loss", DL4C_LOSS_MSE}, {NULL, 0}};
static const enum_alias weight_init_aliases[] = {
    {"he", DL4C_INIT_RELU}, {"zeros", DL4C_INIT_ZERO}, {NULL, 0}};
static const enum_alias pooling_aliases[] = {
    {"average", DL4C_POOL_AVG}, {"mean", DL4C_POOL_AVG}, {NULL, 0}};
static const enum_alias no_aliases[] = {{NULL, 0}};
static const enum_alias updater_aliases[] = {{"nesterov", DL4C_NESTEROVS}, {NULL, 0}};

#define ENUM_DESC(stem, what, first, count, aliases) \
    static const enum_desc stem##_enum = {what, first, count, stem##_enum_name, \
                                          stem##_enum_parse, aliases}
ENUM_DESC(layer_type, "layer type", 1, DL4C_LAYER_TYPE_COUNT, layer_type_aliases);
ENUM_DESC(activation, "activation", 1, DL4C_ACTIVATION_COUNT, activation_aliases);
ENUM_DESC(loss, "loss", 1, DL4C_LOSS_COUNT, loss_aliases);
ENUM_DESC(weight_init, "weight init", 1, DL4C_WEIGHT_INIT_COUNT, weight_init_aliases);
ENUM_DESC(pooling, "pooling", 0, DL4C_POOLING_COUNT, pooling_aliases);
ENUM_DESC(conv_mode, "conv mode", 0, DL4C_CONV_MODE_COUNT, no_aliases);
ENUM_DESC(averaging, "averaging", 0, DL4C_AVERAGING_COUNT, no_aliases);
ENUM_DESC(updater, "updater", 0, DL4C_UPDATER_COUNT, updater_aliases);

/* "a, b, c": the canonical names of an enum. */
static void enum_list(const enum_desc *en, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int v = en->first; v < en->count && used < size; v++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", v > en->first ? ", " : "",
                                 en->name(v));
}

/* ---- Suggestions ("did you mean ...?") ---- */

/* Lower case without '_', '-' and ' ', so "nOut" and "n_out" compare equal. */
static void normalize(const char *s, char out[64]) {
    size_t n = 0;
    for (; *s && n < 63; s++) {
        if (*s == '_' || *s == '-' || *s == ' ') continue;
        out[n++] = (char)((*s >= 'A' && *s <= 'Z') ? *s - 'A' + 'a' : *s);
    }
    out[n] = '\0';
}

static int levenshtein(const char *a, const char *b) {
    const size_t na = strlen(a), nb = strlen(b);
    int row[64];
    for (size_t j = 0; j <= nb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            const int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* Spellings from other libraries that no edit distance would catch: normalized -> key. */
static const struct { const char *from, *to; } key_hints[] = {
    {"kernelsize", "kernel"},         {"lr", "learning_rate"},
    {"poolingtype", "pooling"},       {"convolutionmode", "conv_mode"},
    {"lossfunction", "loss"},         {"lossfn", "loss"},
    {"nout", "n_out"},                {"batchsize", "batch_size_per_worker"},
    {"numworkers", "workers"},        {"numepochs", "epochs"},
    {"inputshape", "input"},          {"inputtype", "input"},
};

/* The candidate closest to `got`, or NULL when none is close: distance <= 2, or <= a third
 * of the candidate's length, and less than both lengths. */
static const char *suggest(const char *got, const char *const *cands, int n) {
    char g[64], c[64];
    normalize(got, g);
    for (size_t h = 0; h < sizeof key_hints / sizeof key_hints[0]; h++)
        if (strcmp(g, key_hints[h].from) == 0)
            for (int i = 0; i < n; i++)
                if (strcmp(cands[i], key_hints[h].to) == 0) return cands[i];
    const char *best = NULL;
    int best_d = INT_MAX;
    for (int i = 0; i < n; i++) {
        normalize(cands[i], c);
        const int d = levenshtein(g, c);
        const int lc = (int)strlen(c), lg = (int)strlen(g);
        const bool close = (d <= 2 || 3 * d <= lc) && (d == 0 || (d < lc && d < lg));
        if (close && d < best_d) { best = cands[i]; best_d = d; }
    }
    return best;
}

/* ---- Messages ---- */

typedef struct cfg_ctx {
    const char *origin;   /* file name prefixed to messages, or NULL */
    float top_lr;         /* top-level learning_rate shortcut (0 = not given) */
    bool saw_layers;      /* the top level had a "layers" key */
} cfg_ctx;

/* A short rendering of a value for "got ..." (compact JSON, at most ~80 characters). */
typedef struct shown { char s[96]; } shown;
static shown show(const json_t *v) {
    shown r;
    char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    if (!d) {
        snprintf(r.s, sizeof r.s, "?");
    } else if (strlen(d) > 80) {
        snprintf(r.s, sizeof r.s, "%.77s...", d);
    } else {
        snprintf(r.s, sizeof r.s, "%s", d);
    }
    free(d);
    return r;
}

/* Records "origin: path: message" as a DL4C_ERR_CONFIG. */
static dl4c_status bad(const cfg_ctx *cx, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static dl4c_status bad(const cfg_ctx *cx, const char *path, const char *fmt, ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const bool has_origin = cx->origin && cx->origin[0], has_path = path && path[0];
    return dl4c_error(DL4C_ERR_CONFIG, "%s%s%s%s%s", has_origin ? cx->origin : "",
                      has_origin ? ": " : "", has_path ? path : "", has_path ? ": " : "", msg);
}

static void path_join(char *out, size_t size, const char *path, const char *key) {
    snprintf(out, size, "%s%s%.80s", path, path[0] ? "." : "", key);
}

/* ---- Field tables ---- */

typedef enum field_kind {
    FK_INT_POS,      /* int > 0; null = 0 (default) */
    FK_INT_NONNEG,   /* int >= 0 */
    FK_U64,          /* uint64_t in [0, INT64_MAX] */
    FK_PAIR_POS,     /* int[2] > 0, or one integer for both */
    FK_PAIR_NONNEG,  /* int[2] >= 0, or one integer for both */
    FK_FLOAT,        /* any finite float */
    FK_FLOAT_NONNEG, /* float >= 0 */
    FK_FLOAT_POS,    /* float > 0; null = 0 (default) */
    FK_FLOAT_UNIT,   /* 0 < float < 1; null = 0 (default) */
    FK_BOOL,         /* true / false */
    FK_ENUM,         /* a name of `en` (stored as int) */
    FK_NAME,         /* the layer name */
    FK_CUSTOM,       /* read / write functions */
    FK_KIND_COUNT
} field_kind;

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define NAME_MAX_STR STRINGIFY(DL4C_CONFIG_NAME_MAX)

static const char *const kind_expect[] = {
    [FK_INT_POS] = "a positive integer",
    [FK_INT_NONNEG] = "a non-negative integer",
    [FK_U64] = "a non-negative integer",
    [FK_PAIR_POS] = "two positive integers",
    [FK_PAIR_NONNEG] = "two non-negative integers",
    [FK_FLOAT] = "a number",
    [FK_FLOAT_NONNEG] = "a non-negative number",
    [FK_FLOAT_POS] = "a positive number",
    [FK_FLOAT_UNIT] = "a number between 0 and 1 (exclusive)",
    [FK_BOOL] = "true or false",
    [FK_ENUM] = "a name",
    [FK_NAME] = "a string of at most " NAME_MAX_STR " characters",
    [FK_CUSTOM] = "a value",
};
_Static_assert(sizeof kind_expect / sizeof kind_expect[0] == FK_KIND_COUNT, "kind_expect");

typedef struct field_desc field_desc;
struct field_desc {
    const char *key;      /* JSON/YAML key = the C field's name */
    field_kind kind;      /* how it is read and written */
    size_t offset;        /* offset of the field in its struct */
    const enum_desc *en;  /* FK_ENUM: the names */
    unsigned types;       /* layer fields: bit (1 << dl4c_layer_type) per type using it */
    dl4c_status (*read)(cfg_ctx *cx, const char *path, const json_t *v, void *base);   /* FK_CUSTOM */
    dl4c_status (*write)(const char *path, const void *base, json_t **out); /* NULL: not written */
};

#define ANY_TYPE (~0u)
#define T_DENSE (1u << DL4C_LAYER_DENSE)
#define T_CONV (1u << DL4C_LAYER_CONV2D)
#define T_SUB (1u << DL4C_LAYER_SUBSAMPLING)
#define T_OUT (1u << DL4C_LAYER_OUTPUT)
#define T_PARAM (T_DENSE | T_CONV | T_OUT)   /* layers with weights */
#define T_WINDOW (T_CONV | T_SUB)            /* layers with a kernel window */

#define F(st, key, kind) {#key, kind, offsetof(st, key), NULL, ANY_TYPE, NULL, NULL}
#define FE(st, key, en) {#key, FK_ENUM, offsetof(st, key), &en, ANY_TYPE, NULL, NULL}
#define FL(key, kind, types) {#key, kind, offsetof(dl4c_layer_conf, key), NULL, types, NULL, NULL}
#define FLE(key, en, types) {#key, FK_ENUM, offsetof(dl4c_layer_conf, key), &en, types, NULL, NULL}
#define FC(key, rd, wr) {#key, FK_CUSTOM, 0, NULL, ANY_TYPE, rd, wr}

static const field_desc updater_fields[] = {
    FE(dl4c_updater_conf, type, updater_enum),
    F(dl4c_updater_conf, learning_rate, FK_FLOAT_POS),
    F(dl4c_updater_conf, momentum, FK_FLOAT_POS),
    F(dl4c_updater_conf, rho, FK_FLOAT_UNIT),
    F(dl4c_updater_conf, beta1, FK_FLOAT_UNIT),
    F(dl4c_updater_conf, beta2, FK_FLOAT_UNIT),
    F(dl4c_updater_conf, epsilon, FK_FLOAT_POS),
};

static const field_desc input_fields[] = {
    F(dl4c_input_conf, channels, FK_INT_POS),
    F(dl4c_input_conf, height, FK_INT_POS),
    F(dl4c_input_conf, width, FK_INT_POS),
    F(dl4c_input_conf, features, FK_INT_POS),
};

/* In the order to_json writes them. */
static const field_desc layer_fields[] = {
    FLE(type, layer_type_enum, ANY_TYPE),
    FL(name, FK_NAME, ANY_TYPE),
    FL(n_out, FK_INT_POS, T_PARAM),
    FL(kernel, FK_PAIR_POS, T_WINDOW),
    FL(stride, FK_PAIR_POS, T_WINDOW),
    FL(padding, FK_PAIR_NONNEG, T_WINDOW),
    FLE(conv_mode, conv_mode_enum, T_WINDOW),
    FLE(pooling, pooling_enum, T_SUB),
    FLE(activation, activation_enum, T_PARAM),
    FLE(loss, loss_enum, T_OUT),
    FLE(weight_init, weight_init_enum, T_PARAM),
    FL(bias_init, FK_FLOAT, T_PARAM),
    FL(learning_rate, FK_FLOAT_POS, T_PARAM),
    FL(l1, FK_FLOAT_POS, T_PARAM),
    FL(l2, FK_FLOAT_POS, T_PARAM),
};

static const field_desc training_fields[] = {
    F(dl4c_training_conf, epochs, FK_INT_POS),
    F(dl4c_training_conf, batch_size_per_worker, FK_INT_POS),
    F(dl4c_training_conf, workers, FK_INT_POS),
    F(dl4c_training_conf, averaging_frequency, FK_INT_POS),
    F(dl4c_training_conf, prefetch, FK_INT_NONNEG),
    F(dl4c_training_conf, save_updater, FK_BOOL),
    FE(dl4c_training_conf, averaging, averaging_enum),
    F(dl4c_training_conf, block_momentum, FK_FLOAT_UNIT),
    F(dl4c_training_conf, block_learning_rate, FK_FLOAT_POS),
};

#define N_OF(a) (sizeof a / sizeof a[0])

/* ---- Reading one field ---- */

static void put(void *base, size_t offset, const void *v, size_t size) {
    memcpy((char *)base + offset, v, size);
}

static void get(const void *base, size_t offset, void *v, size_t size) {
    memcpy(v, (const char *)base + offset, size);
}

static dl4c_status read_enum(const cfg_ctx *cx, const char *path, const enum_desc *en,
                             const json_t *v, int *out) {
    char list[256];
    enum_list(en, list, sizeof list);
    if (!json_is_string(v))
        return bad(cx, path, "expected one of: %s (a string), got %s", list, show(v).s);
    const char *s = json_string_value(v);
    for (const enum_alias *a = en->aliases; a->alias; a++)
        if (strcasecmp(s, a->alias) == 0) { *out = a->value; return DL4C_OK; }
    if (en->parse(s, out)) return DL4C_OK;
    const char *cands[32];
    int n = 0;
    for (int i = en->first; i < en->count && n < 32; i++) cands[n++] = en->name(i);
    const char *hint = suggest(s, cands, n);
    if (hint)
        return bad(cx, path, "unknown %s %s (did you mean \"%s\"?); expected one of: %s",
                   en->what, show(v).s, hint, list);
    return bad(cx, path, "unknown %s %s; expected one of: %s", en->what, show(v).s, list);
}

static bool int_in(const json_t *v, long long min, long long max) {
    return json_is_integer(v) && json_integer_value(v) >= min && json_integer_value(v) <= max;
}

static dl4c_status read_float(const cfg_ctx *cx, const char *path, field_kind kind,
                              const json_t *v, float *out) {
    const char *expect = kind_expect[kind];
    if (!json_is_number(v)) return bad(cx, path, "expected %s, got %s", expect, show(v).s);
    const double x = json_number_value(v);
    if (!isfinite(x) || fabs(x) > FLT_MAX)
        return bad(cx, path, "expected %s, got %s (out of range)", expect, show(v).s);
    const float f = (float)x;
    if (kind == FK_FLOAT_POS && x == 0)
        return bad(cx, path, "expected %s, got %s (leave the field out for the default)", expect,
                   show(v).s);
    if ((kind == FK_FLOAT_NONNEG && f < 0) || (kind == FK_FLOAT_POS && !(f > 0)) ||
        (kind == FK_FLOAT_UNIT && !(f > 0 && f < 1)))
        return bad(cx, path, "expected %s, got %s", expect, show(v).s);
    *out = f;
    return DL4C_OK;
}

static dl4c_status field_read(cfg_ctx *cx, const char *path, const field_desc *f,
                              const json_t *v, void *base) {
    if (f->kind == FK_CUSTOM) return f->read(cx, path, v, base);
    if (json_is_null(v)) {   /* the default: a zero, as in the C struct */
        static const char zeros[16];
        switch (f->kind) {
        case FK_U64: put(base, f->offset, zeros, sizeof(uint64_t)); break;
        case FK_PAIR_POS: case FK_PAIR_NONNEG: put(base, f->offset, zeros, 2 * sizeof(int)); break;
        case FK_BOOL: put(base, f->offset, zeros, sizeof(bool)); break;
        case FK_NAME: name_clear(base); break;
        default: put(base, f->offset, zeros, sizeof(int)); break;   /* int, float, enum */
        }
        return DL4C_OK;
    }
    const char *expect = kind_expect[f->kind];
    switch (f->kind) {
    case FK_INT_POS:
    case FK_INT_NONNEG: {
        if (!int_in(v, f->kind == FK_INT_POS ? 1 : 0, INT_MAX))
            return bad(cx, path, "expected %s, got %s", expect, show(v).s);
        const int i = (int)json_integer_value(v);
        put(base, f->offset, &i, sizeof i);
        return DL4C_OK;
    }
    case FK_U64: {
        if (!int_in(v, 0, LLONG_MAX)) return bad(cx, path, "expected %s, got %s", expect, show(v).s);
        const uint64_t u = (uint64_t)json_integer_value(v);
        put(base, f->offset, &u, sizeof u);
        return DL4C_OK;
    }
    case FK_PAIR_POS:
    case FK_PAIR_NONNEG: {
        const long long min = f->kind == FK_PAIR_POS ? 1 : 0;
        int pair[2];
        if (int_in(v, min, INT_MAX)) {
            pair[0] = pair[1] = (int)json_integer_value(v);
        } else if (json_is_array(v) && json_array_size(v) == 2 &&
                   int_in(json_array_get(v, 0), min, INT_MAX) &&
                   int_in(json_array_get(v, 1), min, INT_MAX)) {
            pair[0] = (int)json_integer_value(json_array_get(v, 0));
            pair[1] = (int)json_integer_value(json_array_get(v, 1));
        } else {
            return bad(cx, path, "expected %s, got %s", expect, show(v).s);
        }
        put(base, f->offset, pair, sizeof pair);
        return DL4C_OK;
    }
    case FK_FLOAT:
    case FK_FLOAT_NONNEG:
    case FK_FLOAT_POS:
    case FK_FLOAT_UNIT: {
        float x;
        dl4c_status s = read_float(cx, path, f->kind, v, &x);
        if (s) return s;
        put(base, f->offset, &x, sizeof x);
        return DL4C_OK;
    }
    case FK_BOOL: {
        if (!json_is_boolean(v)) return bad(cx, path, "expected %s, got %s", expect, show(v).s);
        const bool b = json_is_true(v);
        put(base, f->offset, &b, sizeof b);
        return DL4C_OK;
    }
    case FK_ENUM: {
        int e;
        dl4c_status s = read_enum(cx, path, f->en, v, &e);
        if (s) return s;
        put(base, f->offset, &e, sizeof e);
        return DL4C_OK;
    }
    case FK_NAME: {
        if (!json_is_string(v) || json_string_length(v) > DL4C_CONFIG_NAME_MAX ||
            strlen(json_string_value(v)) != json_string_length(v))
            return bad(cx, path, "expected %s, got %s", expect, show(v).s);
        name_clear(base);
        if (!name_set(base, json_string_value(v), json_string_length(v)))
            return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
        return DL4C_OK;
    }
    default:
        DL4C_ASSERT(!"unknown field kind");
        return DL4C_ERR_INTERNAL;
    }
}

/* ---- Reading one object ---- */

static const field_desc *field_find(const field_desc *fields, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].key, key) == 0) return &fields[i];
    return NULL;
}

/* "a, b, c": the keys of `fields` that apply to `type_bit`. */
static int key_list(const field_desc *fields, size_t n, unsigned type_bit, const char **cands,
                    char *buf, size_t size) {
    int count = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!(fields[i].types & type_bit)) continue;
        cands[count++] = fields[i].key;
        if (used < size)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", count > 1 ? ", " : "",
                                     fields[i].key);
    }
    return count;
}

/* Reads every key of `obj` into `base` through the table; unknown keys and keys the layer
 * type (type_bit; ANY_TYPE outside layers) does not use are errors. */
static dl4c_status object_read(cfg_ctx *cx, const char *path, const json_t *obj,
                               const field_desc *fields, size_t n, unsigned type_bit,
                               void *base) {
    if (!json_is_object(obj)) return bad(cx, path, "expected an object, got %s", show(obj).s);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        char sub[200];
        path_join(sub, sizeof sub, path, key);
        const field_desc *f = field_find(fields, n, key);
        if (!f || !(f->types & type_bit)) {
            const char *cands[32];
            char list[400];
            const int nc = key_list(fields, n, type_bit, cands, list, sizeof list);
            if (f) {
                const char *tname = dl4c_layer_type_str((dl4c_layer_type)__builtin_ctz(type_bit));
                return bad(cx, sub, "not used by a %s layer (a %s layer takes: %s)", tname, tname,
                           list);
            }
            const char *hint = suggest(key, cands, nc);
            if (hint) return bad(cx, sub, "unknown key (did you mean \"%s\"?)", hint);
            return bad(cx, sub, "unknown key (expected one of: %s)", list);
        }
        dl4c_status s = field_read(cx, sub, f, v, base);
        if (s) return s;
    }
    return DL4C_OK;
}

/* ---- The top-level sections ---- */

static dl4c_status updater_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_updater_conf *u = &((dl4c_net_conf *)base)->updater;
    if (json_is_null(v)) return DL4C_OK;
    if (json_is_string(v)) {
        int t;
        dl4c_status s = read_enum(cx, path, &updater_enum, v, &t);
        if (s) return s;
        u->type = (dl4c_updater)t;
        return DL4C_OK;
    }
    if (!json_is_object(v)) {
        char list[256];
        enum_list(&updater_enum, list, sizeof list);
        return bad(cx, path, "expected an updater name (%s) or an object {type, learning_rate, ...}, "
                   "got %s", list, show(v).s);
    }
    return object_read(cx, path, v, updater_fields, N_OF(updater_fields), ANY_TYPE, u);
}

static dl4c_status top_lr_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    cx->top_lr = 0;
    return json_is_null(v) ? DL4C_OK : read_float(cx, path, FK_FLOAT_POS, v, &cx->top_lr);
}

/* "device": "cpu", "cuda" or "cuda:N"; with "allow_tf32", where to train. Read, not written:
 * where a model was trained is not part of it (a model file loads on any device). */
static dl4c_status device_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_net_conf *c = base;
    c->device = DL4C_DEVICE_CPU;
    c->device_index = 0;
    if (json_is_null(v)) return DL4C_OK;
    if (!json_is_string(v) || !dl4c_device_parse(json_string_value(v), &c->device, &c->device_index))
        return bad(cx, path, "expected \"cpu\", \"cuda\" or \"cuda:N\", got %s", show(v).s);
    return DL4C_OK;
}

static dl4c_status tf32_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_net_conf *c = base;
    c->allow_tf32 = false;
    if (json_is_null(v)) return DL4C_OK;
    if (!json_is_boolean(v)) return bad(cx, path, "expected true or false, got %s", show(v).s);
    c->allow_tf32 = json_is_true(v);
    return DL4C_OK;
}

static dl4c_status input_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_input_conf *in = &((dl4c_net_conf *)base)->input;
    memset(in, 0, sizeof *in);
    if (json_is_null(v)) return DL4C_OK;
    if (json_is_array(v)) {
        if (json_array_size(v) != 3 || !int_in(json_array_get(v, 0), 1, INT_MAX) ||
            !int_in(json_array_get(v, 1), 1, INT_MAX) || !int_in(json_array_get(v, 2), 1, INT_MAX))
            return bad(cx, path, "expected [channels, height, width] (three positive integers), "
                       "got %s", show(v).s);
        in->channels = (int)json_integer_value(json_array_get(v, 0));
        in->height = (int)json_integer_value(json_array_get(v, 1));
        in->width = (int)json_integer_value(json_array_get(v, 2));
        return DL4C_OK;
    }
    if (!json_is_object(v))
        return bad(cx, path, "expected {channels, height, width}, {features} or "
                   "[channels, height, width], got %s", show(v).s);
    dl4c_status s = object_read(cx, path, v, input_fields, N_OF(input_fields), ANY_TYPE, in);
    if (s) return s;
    const int given = (in->channels > 0) + (in->height > 0) + (in->width > 0);
    if (given > 0 && given < 3)
        return bad(cx, path, "channels, height and width go together (missing \"%s\")",
                   !in->channels ? "channels" : !in->height ? "height" : "width");
    if (given == 0 && in->features == 0)
        return bad(cx, path, "expected {channels, height, width} or {features}, got %s", show(v).s);
    if (given == 3 && in->features > 0 &&
        (int64_t)in->features != (int64_t)in->channels * in->height * in->width) {
        char sub[64];
        path_join(sub, sizeof sub, path, "features");
        return bad(cx, sub, "%d does not match channels x height x width = %d x %d x %d",
                   in->features, in->channels, in->height, in->width);
    }
    return DL4C_OK;
}

static dl4c_status layers_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_net_conf *c = base;
    cx->saw_layers = true;
    if (json_is_null(v)) return bad(cx, path, "missing (a network needs at least one layer)");
    if (!json_is_array(v)) return bad(cx, path, "expected an array of layers, got %s", show(v).s);
    const size_t n = json_array_size(v);
    if (n == 0) return bad(cx, path, "expected at least one layer, got []");
    if (n > DL4C_MAX_LAYERS)
        return bad(cx, path, "at most %d layers are supported, got %zu", DL4C_MAX_LAYERS, n);
    for (size_t i = 0; i < n; i++) {
        char lp[64], tp[80];
        snprintf(lp, sizeof lp, "%s[%zu]", path, i);
        path_join(tp, sizeof tp, lp, "type");
        const json_t *lv = json_array_get(v, i);
        dl4c_layer_conf *layer = &c->layers[i];
        if (!json_is_object(lv))
            return bad(cx, lp, "expected a layer object with a \"type\", got %s", show(lv).s);
        c->n_layers = (int)i + 1;   /* so that a failure frees this layer's strings too */
        const json_t *t = json_object_get(lv, "type");
        if (!t || json_is_null(t)) {
            char list[256];
            enum_list(&layer_type_enum, list, sizeof list);
            return bad(cx, tp, "missing (expected one of: %s)", list);
        }
        int type;
        dl4c_status s = read_enum(cx, tp, &layer_type_enum, t, &type);
        if (s) return s;
        s = object_read(cx, lp, lv, layer_fields, N_OF(layer_fields), 1u << type, layer);
        if (s) return s;
    }
    return DL4C_OK;
}

static dl4c_status training_read(cfg_ctx *cx, const char *path, const json_t *v, void *base) {
    dl4c_training_conf *t = &((dl4c_net_conf *)base)->training;
    if (json_is_null(v)) return DL4C_OK;
    return object_read(cx, path, v, training_fields, N_OF(training_fields), ANY_TYPE, t);
}

static dl4c_status updater_write(const char *path, const void *base, json_t **out);
static dl4c_status input_write(const char *path, const void *base, json_t **out);
static dl4c_status layers_write(const char *path, const void *base, json_t **out);
static dl4c_status training_write(const char *path, const void *base, json_t **out);

static const field_desc top_fields[] = {
    F(dl4c_net_conf, seed, FK_U64),
    FC(updater, updater_read, updater_write),
    FC(learning_rate, top_lr_read, NULL),
    F(dl4c_net_conf, l1, FK_FLOAT_NONNEG),
    F(dl4c_net_conf, l2, FK_FLOAT_NONNEG),
    FE(dl4c_net_conf, activation, activation_enum),
    FE(dl4c_net_conf, weight_init, weight_init_enum),
    FC(input, input_read, input_write),
    FC(layers, layers_read, layers_write),
    FC(training, training_read, training_write),
    FC(device, device_read, NULL),
    FC(allow_tf32, tf32_read, NULL),
};

dl4c_status dl4c_config_from_json(const json_t *root, const char *origin, dl4c_net_conf *out) {
    cfg_ctx cx = {.origin = origin};
    memset(out, 0, sizeof *out);
    if (!json_is_object(root))
        return bad(&cx, NULL, "expected an object (a mapping) at the top level, got %s",
                   show(root).s);
    dl4c_status s = object_read(&cx, "", root, top_fields, N_OF(top_fields), ANY_TYPE, out);
    if (!s && !cx.saw_layers)
        s = bad(&cx, "layers", "missing (a network needs at least one layer)");
    if (!s && cx.top_lr > 0) {
        if (out->updater.learning_rate > 0 && out->updater.learning_rate != cx.top_lr)
            s = bad(&cx, "learning_rate", "%g conflicts with updater.learning_rate %g (give one)",
                    (double)cx.top_lr, (double)out->updater.learning_rate);
        else
            out->updater.learning_rate = cx.top_lr;
    }
    if (s) {
        dl4c_config_free_strings(out);
        memset(out, 0, sizeof *out);
    }
    return s;
}

/* ---- Writing ---- */

static dl4c_status nomem(void) { return dl4c_error(DL4C_ERR_NOMEM, "out of memory"); }

static dl4c_status unwritable(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static dl4c_status unwritable(const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dl4c_error(DL4C_ERR_INVALID_ARG, "cannot write the configuration: %s: %s", path, msg);
}

/* The double closest to the shortest decimal that reads back as f ("0.1" for 0.1f), so the
 * JSON shows what the user wrote and parsing it gives f again. */
static json_t *float_json(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        const double d = strtod(buf, NULL);
        if ((float)d == f) return json_real(d);
    }
    return json_real((double)f);
}

static dl4c_status field_write(const char *path, const field_desc *f, const void *base,
                               json_t **out) {
    *out = NULL;
    if (f->kind == FK_CUSTOM) return f->write ? f->write(path, base, out) : DL4C_OK;
    switch (f->kind) {
    case FK_INT_POS:
    case FK_INT_NONNEG: {
        int i;
        get(base, f->offset, &i, sizeof i);
        *out = (f->kind == FK_INT_POS && i == 0) ? json_null() : json_integer(i);
        break;
    }
    case FK_U64: {
        uint64_t u;
        get(base, f->offset, &u, sizeof u);
        if (u > (uint64_t)LLONG_MAX)
            return unwritable(path, "%llu is above %lld", (unsigned long long)u, LLONG_MAX);
        *out = json_integer((json_int_t)u);
        break;
    }
    case FK_PAIR_POS:
    case FK_PAIR_NONNEG: {
        int pair[2];
        get(base, f->offset, pair, sizeof pair);
        *out = (f->kind == FK_PAIR_POS && pair[0] == 0 && pair[1] == 0)
                   ? json_null()
                   : json_pack("[ii]", pair[0], pair[1]);
        break;
    }
    case FK_FLOAT:
    case FK_FLOAT_NONNEG:
    case FK_FLOAT_POS:
    case FK_FLOAT_UNIT: {
        float x;
        get(base, f->offset, &x, sizeof x);
        if (!isfinite(x)) return unwritable(path, "%g is not a finite number", (double)x);
        *out = ((f->kind == FK_FLOAT_POS || f->kind == FK_FLOAT_UNIT) && x == 0) ? json_null()
                                                                                : float_json(x);
        break;
    }
    case FK_BOOL: {
        bool b;
        get(base, f->offset, &b, sizeof b);
        *out = json_boolean(b);
        break;
    }
    case FK_ENUM: {
        int e;
        get(base, f->offset, &e, sizeof e);
        if (e == 0 && f->en->first == 1) {
            *out = json_null();
            break;
        }
        if (e < f->en->first || e >= f->en->count)
            return unwritable(path, "%s value %d is out of range", f->en->what, e);
        *out = json_string(f->en->name(e));
        break;
    }
    case FK_NAME: {
        const char *name = dl4c_config_layer_name(base);
        *out = name ? json_string(name) : json_null();
        break;
    }
    default:
        DL4C_ASSERT(!"unknown field kind");
    }
    return *out ? DL4C_OK : nomem();
}

/* A new object of the fields of `fields` that apply to type_bit. */
static dl4c_status object_write(const char *path, const field_desc *fields, size_t n,
                                unsigned type_bit, const void *base, json_t **out) {
    json_t *obj = json_object();
    if (!obj) return nomem();
    for (size_t i = 0; i < n; i++) {
        if (!(fields[i].types & type_bit)) continue;
        char sub[200];
        path_join(sub, sizeof sub, path, fields[i].key);
        json_t *v;
        dl4c_status s = field_write(sub, &fields[i], base, &v);
        if (s) { json_decref(obj); return s; }
        if (v && json_object_set_new(obj, fields[i].key, v)) { json_decref(obj); return nomem(); }
    }
    *out = obj;
    return DL4C_OK;
}

static dl4c_status updater_write(const char *path, const void *base, json_t **out) {
    return object_write(path, updater_fields, N_OF(updater_fields), ANY_TYPE,
                        &((const dl4c_net_conf *)base)->updater, out);
}

static dl4c_status input_write(const char *path, const void *base, json_t **out) {
    dl4c_input_conf in = ((const dl4c_net_conf *)base)->input;
    if (!in.channels && !in.height && !in.width && !in.features) {
        *out = json_null();
        return *out ? DL4C_OK : nomem();
    }
    /* dl4c_net_conf_resolve turns {features: n} into channels = n, height = width = 1 and
     * rejects features next to channels > 1 when run again: write what the user wrote. */
    if (in.features > 0 && in.channels == in.features && in.height == 1 && in.width == 1)
        in.channels = in.height = in.width = 0;
    return object_write(path, input_fields, N_OF(input_fields), ANY_TYPE, &in, out);
}

static dl4c_status layers_write(const char *path, const void *base, json_t **out) {
    const dl4c_net_conf *c = base;
    if (c->n_layers < 0 || c->n_layers > DL4C_MAX_LAYERS)
        return unwritable("n_layers", "%d is not in [0, %d]", c->n_layers, DL4C_MAX_LAYERS);
    json_t *arr = json_array();
    if (!arr) return nomem();
    for (int i = 0; i < c->n_layers; i++) {
        const dl4c_layer_conf *layer = &c->layers[i];
        char lp[64];
        snprintf(lp, sizeof lp, "%s[%d]", path, i);
        if ((int)layer->type <= DL4C_LAYER_NONE || layer->type >= DL4C_LAYER_TYPE_COUNT) {
            json_decref(arr);
            return unwritable(lp, "layer type %d is not a layer type", (int)layer->type);
        }
        json_t *obj;
        dl4c_status s = object_write(lp, layer_fields, N_OF(layer_fields), 1u << layer->type,
                                     layer, &obj);
        if (s) { json_decref(arr); return s; }
        if (json_array_append_new(arr, obj)) { json_decref(arr); return nomem(); }
    }
    *out = arr;
    return DL4C_OK;
}

static dl4c_status training_write(const char *path, const void *base, json_t **out) {
    return object_write(path, training_fields, N_OF(training_fields), ANY_TYPE,
                        &((const dl4c_net_conf *)base)->training, out);
}

dl4c_status dl4c_config_to_tree(const dl4c_net_conf *conf, json_t **out) {
    return object_write("", top_fields, N_OF(top_fields), ANY_TYPE, conf, out);
}
