/* The model file: safetensors with the network configuration and training progress in its
 * metadata (format described in include/dl4c/io.h). Saving writes a temporary file beside the
 * target and renames it; loading checks every byte it uses against the network the stored
 * configuration builds, so a damaged or hostile file is an error, never a crash. */
#include "dl4c/io.h"
#include "dl4c/config.h"
#include "nn/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model file code writes and reads host floats as little-endian"
#endif

/* ---- Tensor names ---- */

/* Names of the updater state slots, in the order of their blocks in the flat state buffer. */
static const char *const slot_names[DL4C_UPDATER_COUNT][2] = {
    [DL4C_SGD] = {NULL, NULL},
    [DL4C_NESTEROVS] = {"momentum", NULL},
    [DL4C_ADAGRAD] = {"sum_sq", NULL},
    [DL4C_RMSPROP] = {"square_avg", NULL},
    [DL4C_ADAM] = {"exp_avg", "exp_avg_sq"},
};
_Static_assert(DL4C_UPDATER_COUNT == 5, "slot_names needs an entry for every updater");

const char *dl4c_updater_slot_name(dl4c_updater u, int slot) {
    if (u < 0 || u >= DL4C_UPDATER_COUNT || slot < 0 || slot >= dl4c_updater_state_per_param(u))
        return NULL;
    return slot_names[u][slot];
}

typedef enum entry_kind { ENTRY_PARAM, ENTRY_UPDATER, ENTRY_BMUF, ENTRY_WORKER } entry_kind;

/* One tensor of the file: which parameter tensor of the network, and which buffer. */
typedef struct entry {
    char name[112];          /* tensor name in the file */
    entry_kind kind;         /* parameter, updater slot, BMUF state or a worker's state */
    int tensor;              /* index for dl4c_net_param_tensor */
    int slot;                /* updater slot (ENTRY_UPDATER; ENTRY_WORKER: -1 for the parameter) */
    int worker;              /* ENTRY_WORKER: whose */
    dl4c_param_info info;    /* name, shape, offset, size of the parameter tensor */
    bool present;            /* load: found in the file */
    uint64_t begin, end;     /* data_offsets */
} entry;

/* The tensors a file for `net` may hold, in file order: parameters, then updater slots
 * (slot-major), then BMUF state, then the states of `workers` workers (each its parameters,
 * then its updater slots). Returns NULL on out of memory. */
static entry *make_entries(const dl4c_net *net, bool with_updater, bool with_bmuf, int workers,
                           int *n_out) {
    const int nt = dl4c_net_n_param_tensors(net);
    const dl4c_updater u = dl4c_net_conf_of(net)->updater.type;
    const int slots = with_updater ? dl4c_updater_state_per_param(u) : 0;
    const int64_t n64 = (int64_t)nt * (1 + slots + (with_bmuf ? 1 : 0) + (int64_t)workers * (1 + slots));
    if (n64 > INT_MAX) return NULL;
    const int n = (int)n64;
    entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    if (!e) return NULL;
    int k = 0;
    for (int i = 0; i < nt; i++, k++) {
        e[k] = (entry){.kind = ENTRY_PARAM, .tensor = i, .info = dl4c_net_param_tensor(net, i)};
        snprintf(e[k].name, sizeof e[k].name, "%s", e[k].info.name);
    }
    for (int s = 0; s < slots; s++)
        for (int i = 0; i < nt; i++, k++) {
            e[k] = (entry){.kind = ENTRY_UPDATER, .tensor = i, .slot = s,
                           .info = dl4c_net_param_tensor(net, i)};
            snprintf(e[k].name, sizeof e[k].name, "updater.%s.%s", e[k].info.name, slot_names[u][s]);
        }
    if (with_bmuf)
        for (int i = 0; i < nt; i++, k++) {
            e[k] = (entry){.kind = ENTRY_BMUF, .tensor = i, .info = dl4c_net_param_tensor(net, i)};
            snprintf(e[k].name, sizeof e[k].name, "bmuf.%s", e[k].info.name);
        }
    for (int r = 0; r < workers; r++)
        for (int s = -1; s < slots; s++)
            for (int i = 0; i < nt; i++, k++) {
                e[k] = (entry){.kind = ENTRY_WORKER, .tensor = i, .slot = s, .worker = r,
                               .info = dl4c_net_param_tensor(net, i)};
                if (s < 0)
                    snprintf(e[k].name, sizeof e[k].name, "worker.%d.%s", r, e[k].info.name);
                else
                    snprintf(e[k].name, sizeof e[k].name, "worker.%d.updater.%s.%s", r, e[k].info.name,
                             slot_names[u][s]);
            }
    *n_out = n;
    return e;
}

/* ---- Progress as JSON ---- */

/* The "partial" object of a checkpoint with worker states. */
static json_t *partial_to_json(const dl4c_worker_states *ws) {
    json_t *o = json_object(), *a[5];
    const char *const keys[5] = {"batches", "steps", "examples", "skipped", "loss"};
    const int64_t *ints[4] = {ws->batches, ws->steps, ws->examples, ws->skipped};
    int bad = !o;
    for (int j = 0; j < 5; j++) {
        a[j] = json_array();
        for (int r = 0; r < ws->workers && a[j]; r++)
            bad |= json_array_append_new(a[j], j < 4 ? json_integer((json_int_t)ints[j][r])
                                                     : json_real(ws->loss[r]));
        bad |= !o || json_object_set_new(o, keys[j], a[j]);
    }
    if (bad) { json_decref(o); return NULL; }
    return o;
}

static json_t *progress_to_json(const dl4c_progress *p, bool has_updater, bool has_bmuf,
                                const dl4c_worker_states *ws) {
    json_t *seed = p->seed <= (uint64_t)INT64_MAX ? json_integer((json_int_t)p->seed) : NULL;
    if (!seed) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, p->seed);
        seed = json_string(buf);
    }
    json_t *loss = isfinite(p->loss) ? json_real(p->loss) : json_null();
    json_t *o = json_pack("{s:i, s:I, s:I, s:o, s:i, s:o, s:b, s:b}", "epoch", p->epoch,
                          "round", (json_int_t)p->round, "iteration", (json_int_t)p->iteration,
                          "seed", seed, "workers", p->workers, "loss", loss,
                          "has_updater", has_updater, "has_bmuf", has_bmuf);
    if (o && ws && json_object_set_new(o, "partial", partial_to_json(ws))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Parses a non-negative decimal integer (digits only) no larger than max. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *out) {
    if (!*s) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        const uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A JSON integer in [0, max]. */
static bool json_nonneg(const json_t *v, int64_t max, int64_t *out) {
    if (!json_is_integer(v)) return false;
    const json_int_t x = json_integer_value(v);
    if (x < 0 || x > max) return false;
    *out = x;
    return true;
}

/* Parses the "progress" metadata (text) into *p; missing fields stay as they are. A
 * "partial" object is returned in *partial (a new reference, checked by partial_from_json). */
static dl4c_status progress_from_json(const char *path, const char *text, dl4c_progress *p,
                                      bool *said_updater, bool *said_bmuf, json_t **partial) {
    json_error_t jerr;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress: expected a JSON object%s%s",
                          path, o ? "" : ": ", o ? "" : jerr.text);
    }
    const char *key;
    json_t *v;
    dl4c_status s = DL4C_OK;
    json_object_foreach(o, key, v) {
        int64_t x;
        bool ok = true;
        if (!strcmp(key, "epoch")) {
            if ((ok = json_nonneg(v, INT_MAX, &x))) p->epoch = (int)x;
        } else if (!strcmp(key, "round")) {
            if ((ok = json_nonneg(v, INT64_MAX, &x))) p->round = x;
        } else if (!strcmp(key, "iteration")) {
            if ((ok = json_nonneg(v, INT64_MAX, &x))) p->iteration = x;
        } else if (!strcmp(key, "workers")) {
            if ((ok = json_nonneg(v, INT_MAX, &x))) p->workers = (int)x;
        } else if (!strcmp(key, "seed")) {
            uint64_t u;
            if (json_is_string(v)) {
                if ((ok = parse_u64(json_string_value(v), UINT64_MAX, &u))) p->seed = u;
            } else if ((ok = json_nonneg(v, INT64_MAX, &x))) {
                p->seed = (uint64_t)x;
            }
        } else if (!strcmp(key, "loss")) {
            if (json_is_null(v)) p->loss = NAN;
            else if ((ok = json_is_number(v))) p->loss = json_number_value(v);
        } else if (!strcmp(key, "has_updater")) {
            if ((ok = json_is_boolean(v))) *said_updater = json_is_true(v);
        } else if (!strcmp(key, "has_bmuf")) {
            if ((ok = json_is_boolean(v))) *said_bmuf = json_is_true(v);
        } else if (!strcmp(key, "partial")) {
            if ((ok = json_is_object(v))) *partial = json_incref(v);
        } else {
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress: unknown field \"%s\"", path, key);
            break;
        }
        if (!ok) {
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.%s: invalid value", path, key);
            break;
        }
    }
    json_decref(o);
    if (s) { json_decref(*partial); *partial = NULL; }
    return s;
}

/* Checks a "partial" object against the progress (one entry per worker in each array,
 * batches within the averaging frequency) and returns the number of workers; fills ws's
 * arrays when ws is not NULL (allocated for that many workers). */
static dl4c_status partial_from_json(const char *path, const json_t *o, const dl4c_progress *p,
                                     const dl4c_net_conf *conf, dl4c_worker_states *ws) {
    static const char *const keys[5] = {"batches", "steps", "examples", "skipped", "loss"};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        int j = 0;
        while (j < 5 && strcmp(key, keys[j])) j++;
        if (j == 5)
            return dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.partial: unknown field \"%.64s\"",
                              path, key);
    }
    if (p->workers < 1 || p->workers > DL4C_MODEL_MAX_WORKER_STATES)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.partial: %d workers (expected 1 to %d)",
                          path, p->workers, DL4C_MODEL_MAX_WORKER_STATES);
    for (int j = 0; j < 5; j++) {
        const json_t *a = json_object_get(o, keys[j]);
        if (!json_is_array(a) || json_array_size(a) != (size_t)p->workers)
            return dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.partial.%s: expected an array of %d "
                              "entries (one per worker)", path, keys[j], p->workers);
        for (int r = 0; r < p->workers; r++) {
            const json_t *x = json_array_get(a, (size_t)r);
            int64_t i = 0;
            const int64_t max = j == 0 ? conf->training.averaging_frequency : INT64_MAX;
            bool ok = j < 4 ? json_nonneg(x, max, &i) : json_is_number(x) && isfinite(json_number_value(x));
            if (ok && j == 3) {   /* skipped <= batches */
                int64_t b = 0;
                ok = json_nonneg(json_array_get(json_object_get(o, "batches"), (size_t)r), INT64_MAX, &b) && i <= b;
            }
            if (!ok)
                return dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.partial.%s[%d]: invalid value%s", path,
                                  keys[j], r, j == 0 ? " (at most the averaging frequency)"
                                                     : j == 3 ? " (at most the worker's batches)" : "");
            if (!ws) continue;
            switch (j) {
            case 0: ws->batches[r] = i; break;
            case 1: ws->steps[r] = i; break;
            case 2: ws->examples[r] = i; break;
            case 3: ws->skipped[r] = i; break;
            default: ws->loss[r] = json_number_value(x); break;
            }
        }
    }
    return DL4C_OK;
}

dl4c_status dl4c_worker_states_alloc(const dl4c_net *net, int workers, dl4c_worker_states *ws) {
    *ws = (dl4c_worker_states){0};
    if (workers < 1) return dl4c_error(DL4C_ERR_INVALID_ARG, "worker states: %d workers", workers);
    const size_t w = (size_t)workers, np = (size_t)dl4c_net_n_params(net),
                 ns = (size_t)dl4c_net_n_updater_state(net);
    ws->workers = workers;
    ws->batches = calloc(w, sizeof(int64_t));
    ws->steps = calloc(w, sizeof(int64_t));
    ws->examples = calloc(w, sizeof(int64_t));
    ws->skipped = calloc(w, sizeof(int64_t));
    ws->loss = calloc(w, sizeof(double));
    ws->params = calloc(w * np + 1, sizeof(float));
    ws->ustate = ns ? calloc(w * ns, sizeof(float)) : NULL;
    if (!ws->batches || !ws->steps || !ws->examples || !ws->skipped || !ws->loss || !ws->params ||
        (ns && !ws->ustate)) {
        dl4c_worker_states_free(ws);
        return dl4c_error(DL4C_ERR_NOMEM, "worker states: out of memory for %d workers", workers);
    }
    return DL4C_OK;
}

dl4c_status dl4c_worker_states_copy(const dl4c_net *net, const dl4c_worker_states *src, dl4c_worker_states *dst) {
    dl4c_status s = dl4c_worker_states_alloc(net, src->workers, dst);
    if (s) return s;
    const size_t w = (size_t)src->workers, np = (size_t)dl4c_net_n_params(net),
                 ns = (size_t)dl4c_net_n_updater_state(net);
    memcpy(dst->batches, src->batches, w * sizeof(int64_t));
    memcpy(dst->steps, src->steps, w * sizeof(int64_t));
    memcpy(dst->examples, src->examples, w * sizeof(int64_t));
    memcpy(dst->skipped, src->skipped, w * sizeof(int64_t));
    memcpy(dst->loss, src->loss, w * sizeof(double));
    memcpy(dst->params, src->params, w * np * sizeof(float));
    if (ns) memcpy(dst->ustate, src->ustate, w * ns * sizeof(float));
    return DL4C_OK;
}

void dl4c_worker_states_free(dl4c_worker_states *ws) {
    if (!ws) return;
    free(ws->batches); free(ws->steps); free(ws->examples); free(ws->skipped); free(ws->loss);
    free(ws->params); free(ws->ustate);
    *ws = (dl4c_worker_states){0};
}

/* ---- Saving ---- */

/* The mode a new file gets: the existing target's, else 0666 minus the umask (read from
 * /proc/self/status, since umask() cannot be read without changing it process-wide). */
static mode_t new_file_mode(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        unsigned m;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Umask: %o", &m) == 1) { mask = (mode_t)m; break; }
        fclose(f);
    }
    return 0666 & ~mask;
}

/* fsyncs the directory holding path so the rename itself is durable (best effort). */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { (void)fsync(fd); close(fd); }
    free(dir);
}

/* The temporary file of the save in progress, for dl4c_model_abandon_save (a signal handler):
 * 0 none, 2 claimed by a save filling in the name, 1 the name is complete. */
static char pending_tmp[4096];
static volatile sig_atomic_t pending_set = 0;

void dl4c_model_abandon_save(void) {
    if (pending_set == 1) unlink(pending_tmp);
}

/* Builds the header text (padded with spaces to a multiple of 8) and fills the entries'
 * data offsets. */
static dl4c_status build_header(const dl4c_net *net, const dl4c_progress *progress,
                                bool with_updater, bool with_bmuf, const dl4c_worker_states *ws,
                                entry *e, int n, const char *path, char **text_out, size_t *len_out) {
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    char *config = NULL;
    dl4c_status s = dl4c_config_to_json(conf, &config);
    if (s) return dl4c_error_prefix(s, "%s: cannot write the configuration", path);

    dl4c_progress p = {.seed = conf->seed, .workers = conf->training.workers, .loss = NAN};
    if (progress) p = *progress;
    json_t *pj = progress_to_json(&p, with_updater, with_bmuf, ws);
    char *ptext = pj ? json_dumps(pj, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(pj);
    char step[32];
    snprintf(step, sizeof step, "%" PRId64, dl4c_net_step(net));

    json_t *root = json_object(), *meta = json_object();
    int bad = !root || !meta || !ptext;
    bad |= json_object_set_new(meta, "format", json_string("dl4c"));
    bad |= json_object_set_new(meta, "version", json_string("1"));
    bad |= json_object_set_new(meta, "config", json_string(config));
    bad |= json_object_set_new(meta, "progress", ptext ? json_string(ptext) : NULL);
    bad |= json_object_set_new(meta, "step", json_string(step));
    bad |= json_object_set_new(root, "__metadata__", meta);
    free(config);
    free(ptext);
    uint64_t off = 0;
    for (int k = 0; k < n && !bad; k++) {
        json_t *shape = json_array();
        for (int d = 0; d < e[k].info.ndim; d++)
            bad |= json_array_append_new(shape, json_integer(e[k].info.shape[d]));
        e[k].begin = off;
        e[k].end = off += (uint64_t)e[k].info.size * sizeof(float);
        bad |= json_object_set_new(root, e[k].name,
                                   json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                             "data_offsets", (json_int_t)e[k].begin,
                                             (json_int_t)e[k].end));
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!text) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory building the header", path);
    const size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    char *out = realloc(text, padded + 1);
    if (!out) { free(text); return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path); }
    memset(out + len, ' ', padded - len);
    out[padded] = '\0';
    *text_out = out;
    *len_out = padded;
    return DL4C_OK;
}

/* Writes header and tensors to f; returns false with errno set on a write error. */
static bool write_body(FILE *f, const dl4c_net *net, const char *header, size_t hlen,
                       const entry *e, int n, const float *bmuf, const dl4c_worker_states *ws,
                       float *tmp) {
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen) return false;
    dl4c_net *mnet = (dl4c_net *)net;   /* the buffer getters are not const; only read here */
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    for (int k = 0; k < n; k++) {
        const float *flat = e[k].kind == ENTRY_PARAM     ? dl4c_net_params(mnet)
                            : e[k].kind == ENTRY_UPDATER ? dl4c_net_updater_state(mnet) + e[k].slot * np
                            : e[k].kind == ENTRY_BMUF    ? bmuf
                            : e[k].slot < 0 ? ws->params + e[k].worker * np
                                            : ws->ustate + e[k].worker * ns + e[k].slot * np;
        dl4c_net_param_export(net, e[k].tensor, flat, tmp);
        const size_t cnt = (size_t)e[k].info.size;
        if (cnt && fwrite(tmp, sizeof(float), cnt, f) != cnt) return false;
    }
    return true;
}

dl4c_status dl4c_model_save_train_checkpoint(const dl4c_net *net, const dl4c_progress *progress,
                                             const float *bmuf_delta, const dl4c_worker_states *ws,
                                             const char *path) {
    if (!net || !path || !*path)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "model save: %s", !net ? "no network" : "no path");
    if (ws && (ws->workers < 1 || ws->workers > DL4C_MODEL_MAX_WORKER_STATES || !ws->params ||
               (dl4c_net_n_updater_state(net) && !ws->ustate)))
        return dl4c_error(DL4C_ERR_INVALID_ARG, "%s: invalid worker states (%d workers)", path, ws->workers);
    const dl4c_updater u = dl4c_net_conf_of(net)->updater.type;
    const bool with_updater =
        dl4c_updater_state_per_param(u) > 0 && (!progress || progress->has_updater);
    const bool with_bmuf = bmuf_delta != NULL;
    int n = 0;
    entry *e = make_entries(net, with_updater, with_bmuf, ws ? ws->workers : 0, &n);
    if (!e) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
    char *header = NULL;
    size_t hlen = 0;
    dl4c_status s = build_header(net, progress, with_updater, with_bmuf, ws, e, n, path, &header, &hlen);
    int64_t max_size = 1;
    for (int k = 0; k < n; k++)
        if (e[k].info.size > max_size) max_size = e[k].info.size;
    const size_t tmp_len = strlen(path) + sizeof ".tmp.XXXXXX";
    float *tmp = malloc(sizeof(float) * (size_t)max_size);
    char *tmp_path = malloc(tmp_len);
    if (s) goto done;
    if (!tmp || !tmp_path) {
        s = dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp_path, tmp_len, "%s.tmp.XXXXXX", path);
    const mode_t mode = new_file_mode(path);
    /* Blocked signals while the temporary file is created: a handler's dl4c_model_abandon_save
     * then sees either no file or its whole name. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    const int fd = mkstemp(tmp_path);
    const bool track = fd >= 0 && strlen(tmp_path) < sizeof pending_tmp &&
                       __sync_bool_compare_and_swap(&pending_set, 0, 2);
    if (track) {
        memcpy(pending_tmp, tmp_path, strlen(tmp_path) + 1);
        pending_set = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (fd < 0) {
        s = dl4c_error(DL4C_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                       strerror(errno));
        goto done;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        const int err = errno;
        close(fd);
        unlink(tmp_path);
        if (track) pending_set = 0;
        s = dl4c_error(DL4C_ERR_IO, "%s: cannot write: %s", path, strerror(err));
        goto done;
    }
    errno = 0;
    bool ok = write_body(f, net, header, hlen, e, n, bmuf_delta, ws, tmp) && fflush(f) == 0 &&
              fsync(fd) == 0;
    int err = errno;
    if (ok) (void)fchmod(fd, mode);
    if (fclose(f) != 0 && ok) { ok = false; err = errno; }
    if (ok && rename(tmp_path, path) != 0) { ok = false; err = errno; }
    if (!ok) unlink(tmp_path);
    if (track) pending_set = 0;
    if (!ok) {
        s = dl4c_error(DL4C_ERR_IO, "%s: cannot write: %s", path, strerror(err ? err : EIO));
        goto done;
    }
    sync_parent_dir(path);
done:
    free(tmp_path);
    free(tmp);
    free(header);
    free(e);
    return s;
}

dl4c_status dl4c_model_save_checkpoint(const dl4c_net *net, const dl4c_progress *progress,
                                       const float *bmuf_delta, const char *path) {
    return dl4c_model_save_train_checkpoint(net, progress, bmuf_delta, NULL, path);
}

dl4c_status dl4c_model_save(const dl4c_net *net, const dl4c_progress *progress, const char *path) {
    return dl4c_model_save_train_checkpoint(net, progress, NULL, NULL, path);
}

/* ---- Loading ---- */

/* Reads exactly n bytes at offset; false with errno (0 for end of file) otherwise. */
static bool read_at(int fd, void *buf, size_t n, off_t offset) {
    unsigned char *p = buf;
    while (n) {
        const ssize_t r = pread(fd, p, n, offset);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = 0; return false; }
        p += r;
        n -= (size_t)r;
        offset += r;
    }
    return true;
}

static dl4c_status read_error(const char *path, int err) {
    if (err == 0)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: the file ended early (changed while being read?)", path);
    return dl4c_error(DL4C_ERR_IO, "%s: cannot read: %s", path, strerror(err));
}

/* "[20, 1, 5, 5]" for at most 8 dimensions of a JSON array of integers or of `dims`. */
static void shape_str(char *buf, size_t cap, const json_t *arr, const int64_t *dims, int ndim) {
    size_t used = 0;
    const int n = arr ? (int)json_array_size(arr) : ndim;
    used += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < n && used < cap; d++) {
        if (d == 8) { used += (size_t)snprintf(buf + used, cap - used, ", ..."); break; }
        const char *sep = d ? ", " : "";
        if (arr) {
            const json_t *v = json_array_get(arr, (size_t)d);
            if (json_is_integer(v))
                used += (size_t)snprintf(buf + used, cap - used, "%s%" JSON_INTEGER_FORMAT, sep,
                                         json_integer_value(v));
            else
                used += (size_t)snprintf(buf + used, cap - used, "%s?", sep);
        } else {
            used += (size_t)snprintf(buf + used, cap - used, "%s%" PRId64, sep, dims[d]);
        }
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

/* Checks one tensor's header entry against what the network expects. */
static dl4c_status check_entry(const char *path, entry *e, const json_t *v, uint64_t data_len) {
    if (!json_is_object(v))
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: expected an object with dtype, shape and data_offsets",
                          path, e->name);
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
        if (strcmp(key, "dtype") && strcmp(key, "shape") && strcmp(key, "data_offsets"))
            return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: unknown field \"%s\"", path, e->name, key);
    const json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
                 *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dtype))
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: missing dtype", path, e->name);
    if (strcmp(json_string_value(dtype), "F32"))
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: dtype is \"%.32s\", only F32 is supported", path,
                          e->name, json_string_value(dtype));
    if (!json_is_array(shape))
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: missing shape", path, e->name);
    bool same = (int)json_array_size(shape) == e->info.ndim;
    for (int d = 0; same && d < e->info.ndim; d++) {
        const json_t *dim = json_array_get(shape, (size_t)d);
        same = json_is_integer(dim) && json_integer_value(dim) == e->info.shape[d];
    }
    if (!same) {
        char want[160], got[160];
        shape_str(want, sizeof want, NULL, e->info.shape, e->info.ndim);
        shape_str(got, sizeof got, shape, NULL, 0);
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: expected shape %s, file has %s", path, e->name,
                          want, got);
    }
    int64_t b, en;
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_nonneg(json_array_get(offs, 0), INT64_MAX, &b) ||
        !json_nonneg(json_array_get(offs, 1), INT64_MAX, &en))
        return dl4c_error(DL4C_ERR_FORMAT, "%s: %s: data_offsets must be two non-negative integers",
                          path, e->name);
    if (b > en || (uint64_t)en > data_len)
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: %s: data_offsets [%" PRId64 ", %" PRId64 "] outside the data section "
                          "(%" PRIu64 " bytes)", path, e->name, b, en, data_len);
    const uint64_t want = (uint64_t)e->info.size * sizeof(float);
    if ((uint64_t)(en - b) != want)
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: %s: data_offsets [%" PRId64 ", %" PRId64 "] hold %" PRId64
                          " bytes, the shape needs %" PRIu64, path, e->name, b, en, en - b, want);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    e->present = true;
    return DL4C_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The tensors present must lie back to back from 0 to data_len. */
static dl4c_status check_layout(const char *path, entry *e, int n, uint64_t data_len) {
    entry **order = malloc(sizeof *order * (size_t)(n ? n : 1));
    if (!order) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
    int m = 0;
    for (int k = 0; k < n; k++)
        if (e[k].present) order[m++] = &e[k];
    qsort(order, (size_t)m, sizeof *order, cmp_by_offset);
    uint64_t pos = 0;
    dl4c_status s = DL4C_OK;
    for (int k = 0; k < m && !s; k++) {
        if (order[k]->begin < pos)
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: %s overlaps %s in the data section", path,
                           order[k]->name, order[k - 1]->name);
        else if (order[k]->begin > pos)
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: %" PRIu64 " unused bytes in the data section before %s",
                           path, order[k]->begin - pos, order[k]->name);
        pos = order[k]->end;
    }
    if (!s && pos != data_len)
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: %" PRIu64 " trailing bytes after the last tensor", path,
                       data_len - pos);
    free(order);
    return s;
}

/* A string value of __metadata__, or NULL. */
static const char *meta_str(const json_t *meta, const char *key) {
    return json_string_value(json_object_get(meta, key));
}

/* Reads and checks the header: returns the parsed root, the configuration and the data
 * section's place. */
static dl4c_status read_header(const char *path, int fd, json_t **root_out, dl4c_net_conf *conf,
                               uint64_t *data_start, uint64_t *data_len) {
    struct stat st;
    if (fstat(fd, &st) != 0) return dl4c_error(DL4C_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return dl4c_error(DL4C_ERR_IO, "%s: not a regular file", path);
    const uint64_t size = (uint64_t)st.st_size;
    if (size < 8)
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: not a model file: %" PRIu64 " bytes, too short for a safetensors header",
                          path, size);
    unsigned char len8[8];
    if (!read_at(fd, len8, 8, 0)) return read_error(path, errno);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)len8[b] << (8 * b);
    if (hlen > DL4C_MODEL_MAX_HEADER)
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: not a model file: header length %" PRIu64 " exceeds the limit of %d bytes",
                          path, hlen, DL4C_MODEL_MAX_HEADER);
    if (hlen > size - 8)
        return dl4c_error(DL4C_ERR_FORMAT,
                          "%s: truncated or not a model file: header length %" PRIu64
                          " runs past the end of the file (%" PRIu64 " bytes)", path, hlen, size);
    if (hlen < 2)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: not a model file: empty header", path);
    char *text = malloc((size_t)hlen);
    if (!text) return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory for the header", path);
    if (!read_at(fd, text, (size_t)hlen, 8)) {
        const int err = errno;
        free(text);
        return read_error(path, err);
    }
    if (text[0] != '{') {
        free(text);
        return dl4c_error(DL4C_ERR_FORMAT, "%s: not a model file: the header does not start with '{'", path);
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return dl4c_error(DL4C_ERR_FORMAT, "%s: header is not valid JSON: %s (byte %d)", path, jerr.text,
                          jerr.position);
    dl4c_status s = DL4C_OK;
    const json_t *meta = json_object_get(root, "__metadata__");
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    if (!json_is_object(meta)) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: %s (not a dl4c model file)", path,
                       meta ? "__metadata__ is not an object" : "no __metadata__ in the header");
        goto fail;
    }
    json_object_foreach((json_t *)meta, key, v)
        if (!json_is_string(v)) {
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.%s: expected a string", path, key);
            goto fail;
        }
    const char *format = meta_str(meta, "format"), *version = meta_str(meta, "version"),
               *config = meta_str(meta, "config");
    if (!format || strcmp(format, "dl4c")) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.format is %s%.32s%s, expected \"dl4c\"", path,
                       format ? "\"" : "", format ? format : "missing", format ? "\"" : "");
        goto fail;
    }
    if (!version || strcmp(version, "1")) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: unsupported model file version %s%.32s%s (this build reads 1)",
                       path, version ? "\"" : "", version ? version : "(missing)", version ? "\"" : "");
        goto fail;
    }
    if (!config) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: no __metadata__.config (the network configuration)", path);
        goto fail;
    }
    char *origin = malloc(strlen(path) + sizeof ": __metadata__.config");
    if (!origin) { s = dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path); goto fail; }
    sprintf(origin, "%s: __metadata__.config", path);
    s = dl4c_config_parse_json(config, json_string_length(json_object_get(meta, "config")), origin, conf);
    free(origin);
    if (s) {
        if (s == DL4C_ERR_NOMEM) goto fail;
        char *msg = strdup(dl4c_error_message());
        s = dl4c_error(DL4C_ERR_FORMAT, "%s", msg ? msg : "invalid configuration");
        free(msg);
        goto fail;
    }
    *root_out = root;
    *data_start = 8 + hlen;
    *data_len = size - 8 - hlen;
    return DL4C_OK;
fail:
    json_decref(root);
    return s;
}

/* The entry named `key`, or n. The last workers x per entries are the worker states, looked
 * up in their worker's block only (a file may hold many); the rest among the ones before. */
static int find_entry(const entry *e, int n, int workers, int per, const char *key) {
    const int base = n - per * workers;
    int lo = 0, hi = base;
    if (workers && !strncmp(key, "worker.", 7) && key[7] >= '0' && key[7] <= '9') {
        char *end;
        const long r = strtol(key + 7, &end, 10);
        if (*end != '.' || r < 0 || r >= workers) return n;
        lo = base + (int)r * per;
        hi = lo + per;
    }
    for (int k = lo; k < hi; k++)
        if (!strcmp(e[k].name, key)) return k;
    return n;
}

/* Loads and checks `path` against `net` (the one built from its config, or a template),
 * then copies the data into params / ustate / bmuf (each NULL to skip) and, when the file
 * has worker states and ws is not NULL, allocates and fills *ws. */
static dl4c_status read_tensors(const char *path, int fd, const json_t *root, const dl4c_net *net,
                                uint64_t data_start, uint64_t data_len, float *params,
                                float *ustate, float *bmuf, dl4c_worker_states *ws,
                                int64_t *step_out, dl4c_progress *progress_out) {
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    const dl4c_updater u = conf->updater.type;
    const int slots = dl4c_updater_state_per_param(u);
    int n = 0;
    entry *e = NULL;
    unsigned char *data = NULL;
    json_t *partial = NULL;
    dl4c_worker_states got = {0};
    dl4c_status s = DL4C_OK;
    const json_t *meta = json_object_get(root, "__metadata__");
    if (ws) *ws = (dl4c_worker_states){0};

    /* Metadata: step and progress (optional). */
    int64_t step = 0;
    const char *step_text = meta_str(meta, "step");
    uint64_t step_u;
    if (step_text && !parse_u64(step_text, INT64_MAX, &step_u)) {
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.step: expected a non-negative integer, got \"%.32s\"",
                       path, step_text);
        goto done;
    }
    if (step_text) step = (int64_t)step_u;
    dl4c_progress prog = {.seed = conf->seed, .workers = conf->training.workers, .loss = NAN};
    bool said_updater = false, said_bmuf = false, said = false;
    const char *ptext = meta_str(meta, "progress");
    if (ptext) {
        said = true;
        if ((s = progress_from_json(path, ptext, &prog, &said_updater, &said_bmuf, &partial))) goto done;
    }
    /* Worker states: as many as the progress names, each needing its parameters' bytes. */
    int workers = 0;
    if (partial) {
        const uint64_t per_worker = (uint64_t)dl4c_net_n_params(net) * sizeof(float);
        if ((s = partial_from_json(path, partial, &prog, conf, NULL))) goto done;
        if (per_worker * (uint64_t)prog.workers > data_len) {
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress.partial: %d worker states need more than the "
                           "%" PRIu64 " bytes of tensor data", path, prog.workers, data_len);
            goto done;
        }
        workers = prog.workers;
    }
    if (!(e = make_entries(net, true, true, workers, &n))) {
        s = dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }

    /* Every tensor in the header must be one the network expects. */
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        const int k = find_entry(e, n, workers, dl4c_net_n_param_tensors(net) * (1 + slots), key);
        if (k == n) {
            if (!strncmp(key, "updater.", 8) && slots == 0)
                s = dl4c_error(DL4C_ERR_FORMAT, "%s: unexpected tensor \"%.120s\" (the configuration's "
                               "updater, %s, keeps no state)", path, key, dl4c_updater_str(u));
            else if (!strncmp(key, "worker.", 7))
                s = dl4c_error(DL4C_ERR_FORMAT, "%s: unexpected tensor \"%.120s\" (%s)", path, key,
                               workers ? "no such worker or parameter in the progress and configuration"
                                       : "__metadata__.progress has no \"partial\" object of worker states");
            else if (!strncmp(key, "updater.", 8))
                s = dl4c_error(DL4C_ERR_FORMAT, "%s: unexpected tensor \"%.120s\" (the configuration's "
                               "updater, %s, keeps state \"%s\"%s%s%s)", path, key, dl4c_updater_str(u),
                               slot_names[u][0], slots > 1 ? " and \"" : "", slots > 1 ? slot_names[u][1] : "",
                               slots > 1 ? "\"" : "");
            else
                s = dl4c_error(DL4C_ERR_FORMAT, "%s: unexpected tensor \"%.120s\" (not a parameter of the "
                               "network in the configuration)", path, key);
            goto done;
        }
        if ((s = check_entry(path, &e[k], v, data_len))) goto done;
    }

    /* Parameters are required (and each worker's, when the progress lists workers); updater
     * state (the network's and the workers') and BMUF state are all or nothing. */
    bool has_updater = false, has_bmuf = false;
    for (int k = 0; k < n; k++) {
        if ((e[k].kind == ENTRY_UPDATER || (e[k].kind == ENTRY_WORKER && e[k].slot >= 0)) && e[k].present)
            has_updater = true;
        if (e[k].kind == ENTRY_BMUF && e[k].present) has_bmuf = true;
    }
    for (int k = 0; k < n; k++) {
        const bool needed = e[k].kind == ENTRY_PARAM || (e[k].kind == ENTRY_UPDATER && has_updater) ||
                            (e[k].kind == ENTRY_BMUF && has_bmuf) ||
                            (e[k].kind == ENTRY_WORKER && (e[k].slot < 0 || has_updater));
        if (needed && !e[k].present) {
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: missing tensor \"%s\"", path, e[k].name);
            goto done;
        }
    }
    if (said && (said_updater != has_updater || said_bmuf != has_bmuf)) {
        const bool upd = said_updater != has_updater;
        const bool claim = upd ? said_updater : said_bmuf;
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.progress says %s is %s, but the file has %s",
                       path, upd ? "has_updater" : "has_bmuf", claim ? "true" : "false",
                       claim ? "no such tensors" : "such tensors");
        goto done;
    }
    if ((s = check_layout(path, e, n, data_len))) goto done;

    /* Stage the data section (its size now equals the expected tensors'), then copy. */
    data = malloc((size_t)(data_len ? data_len : 1));
    if (!data) { s = dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory for the tensors", path); goto done; }
    if (data_len && !read_at(fd, data, (size_t)data_len, (off_t)data_start)) {
        s = read_error(path, errno);
        goto done;
    }
    if (ws && workers) {
        if ((s = dl4c_worker_states_alloc(net, workers, &got))) goto done;
        if ((s = partial_from_json(path, partial, &prog, conf, &got))) goto done;
    }
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    for (int k = 0; k < n; k++) {
        if (!e[k].present) continue;
        float *flat = e[k].kind == ENTRY_PARAM     ? params
                      : e[k].kind == ENTRY_UPDATER ? (ustate ? ustate + e[k].slot * np : NULL)
                      : e[k].kind == ENTRY_BMUF    ? bmuf
                      : !got.workers ? NULL
                      : e[k].slot < 0 ? got.params + e[k].worker * np
                                      : got.ustate + e[k].worker * ns + e[k].slot * np;
        if (flat) dl4c_net_param_import(net, e[k].tensor, (const float *)(data + e[k].begin), flat);
    }
    if (step_out) *step_out = step;
    prog.has_updater = has_updater;
    prog.has_bmuf = has_bmuf;
    prog.has_workers = workers > 0;
    if (progress_out) *progress_out = prog;
    if (ws) { *ws = got; got = (dl4c_worker_states){0}; }
done:
    dl4c_worker_states_free(&got);
    json_decref(partial);
    free(data);
    free(e);
    return s;
}

/* Parameters of the network a (resolved) configuration describes, from the layers' shape rules
 * alone: nothing is allocated. -1 if the shapes do not resolve. */
static int64_t conf_n_params(const dl4c_net_conf *conf) {
    int in[3] = {conf->input.channels, conf->input.height, conf->input.width};
    int64_t n = 0;
    for (int i = 0; i < conf->n_layers; i++) {
        dl4c_layer_conf l = conf->layers[i];
        const dl4c_layer_ops *ops = dl4c_layer_ops_of(l.type);
        int out[3];
        int64_t nw = 0, nb = 0;
        if (!ops || ops->resolve(&l, in, out, "layers")) return -1;
        ops->count(&l, in, &nw, &nb);
        n += nw + nb;
        memcpy(in, out, sizeof in);
    }
    return n;
}

/* Networks above this many parameters are only built when the file can hold them. */
#define MODEL_CHECK_BEFORE_BUILD (1 << 24)

static dl4c_status open_model(const char *path, int *fd) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return dl4c_error(DL4C_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return DL4C_OK;
}

dl4c_status dl4c_model_load(const char *path, dl4c_net **net_out, dl4c_progress *progress_out) {
    if (net_out) *net_out = NULL;
    if (!path || !net_out)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "model load: %s", !path ? "no path" : "no output");
    int fd;
    dl4c_status s = open_model(path, &fd);
    if (s) return s;
    json_t *root = NULL;
    dl4c_net_conf conf;
    uint64_t start = 0, len = 0;
    dl4c_net *net = NULL;
    if ((s = read_header(path, fd, &root, &conf, &start, &len))) goto done;
    /* A small file must not make the loader build (and fill) a huge network: its parameters
     * have to be in the data section (a 200-byte file asked for 3 GB of parameters). */
    const int64_t np = conf_n_params(&conf);
    if (np > MODEL_CHECK_BEFORE_BUILD && (uint64_t)np * sizeof(float) > len) {
        dl4c_config_free_strings(&conf);
        s = dl4c_error(DL4C_ERR_FORMAT, "%s: the configuration's network has %" PRId64 " parameters (%" PRIu64
                       " bytes) but the file holds %" PRIu64 " bytes of tensor data", path, np,
                       (uint64_t)np * sizeof(float), len);
        goto done;
    }
    s = dl4c_net_new(&conf, &net);
    dl4c_config_free_strings(&conf);
    if (s) {
        net = NULL;
        if (s != DL4C_ERR_NOMEM) {
            char *msg = strdup(dl4c_error_message());
            s = dl4c_error(DL4C_ERR_FORMAT, "%s: __metadata__.config: %s", path, msg ? msg : "invalid");
            free(msg);
        }
        goto done;
    }
    int64_t step = 0;
    s = read_tensors(path, fd, root, net, start, len, dl4c_net_params(net),
                     dl4c_net_updater_state(net), NULL, NULL, &step, progress_out);
    if (s) goto done;
    dl4c_net_set_step(net, step);
    *net_out = net;
    net = NULL;
done:
    dl4c_net_free(net);
    json_decref(root);
    close(fd);
    return s;
}

dl4c_status dl4c_model_read_params(const char *path, const dl4c_net *net_template, float *params,
                                   float *ustate, float *bmuf_delta, int64_t *step_out,
                                   dl4c_progress *progress_out) {
    return dl4c_model_read_checkpoint(path, net_template, params, ustate, bmuf_delta, NULL, step_out,
                                      progress_out);
}

dl4c_status dl4c_model_read_checkpoint(const char *path, const dl4c_net *net_template, float *params,
                                       float *ustate, float *bmuf_delta, dl4c_worker_states *ws,
                                       int64_t *step_out, dl4c_progress *progress_out) {
    if (ws) *ws = (dl4c_worker_states){0};
    if (!path || !net_template || !params)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "model read: %s",
                          !path ? "no path" : !net_template ? "no template network" : "no buffer");
    int fd;
    dl4c_status s = open_model(path, &fd);
    if (s) return s;
    json_t *root = NULL;
    dl4c_net_conf conf;
    uint64_t start = 0, len = 0;
    if (!(s = read_header(path, fd, &root, &conf, &start, &len))) {
        dl4c_config_free_strings(&conf);
        s = read_tensors(path, fd, root, net_template, start, len, params, ustate, bmuf_delta, ws,
                         step_out, progress_out);
    }
    json_decref(root);
    close(fd);
    return s;
}
