/* One worker's share of an averaging round as single calls (include/dl4c/round.h), and the
 * SPMD loop for a worker that holds its own part of the data. The fit loop and the averaging
 * arithmetic are those of master.c's run_epoch, so drivers built on them (dl4c.spark) give
 * the same parameters as `dl4c train`. */
#include "dl4c/round.h"
#include "dl4c/config.h"
#include "dl4c/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

dl4c_status dl4c_worker_round(dl4c_net *net, const dl4c_dataset *ds, const int64_t *indices,
                              int64_t n, int batch, int freq, int prefetch, bool reset_updater,
                              dl4c_round_result *out) {
    *out = (dl4c_round_result){0};
    if (!net || !ds || batch <= 0 || freq <= 0 || n < 0 || prefetch < 0 || (n > 0 && !indices))
        return dl4c_error(DL4C_ERR_INVALID_ARG, "worker round: bad arguments (batch %d, frequency %d, %lld rows)",
                          batch, freq, (long long)n);
    if (dl4c_tensor_row_size(ds->features) != dl4c_net_input_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "worker round: examples have %lld features, the network takes %lld",
                          (long long)dl4c_tensor_row_size(ds->features), (long long)dl4c_net_input_size(net));
    if (ds->labels->shape[1] != dl4c_net_output_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "worker round: labels have %lld columns, the network outputs %lld",
                          (long long)ds->labels->shape[1], (long long)dl4c_net_output_size(net));
    if (reset_updater) {   /* DL4J: without save_updater each round starts a fresh updater */
        memset(dl4c_net_updater_state(net), 0, sizeof(float) * (size_t)dl4c_net_n_updater_state(net));
        dl4c_net_set_step(net, 0);
    }
    const int64_t cap = (int64_t)batch * freq;
    if (n > cap) n = cap;
    if (n == 0) return DL4C_OK;
    dl4c_batch_iter *it = NULL;
    dl4c_status s = dl4c_batch_iter_new(ds, indices, n, batch, prefetch, &it);
    if (s) return s;
    const double t0 = dl4c_now();
    dl4c_batch b;
    while (out->batches < freq && dl4c_batch_iter_next(it, &b)) {
        float score;
        if ((s = dl4c_net_fit(net, b.x, b.y, b.n, &score))) {
            s = dl4c_error_prefix(s, "worker round, minibatch %lld", (long long)out->batches + 1);
            break;
        }
        if (!isfinite(score)) {   /* as the trainer's default (on_nan stop) */
            s = dl4c_error(DL4C_ERR_NUMERIC, "worker round, minibatch %lld: the loss is %g; training diverged "
                           "(lower the learning rate)", (long long)out->batches + 1, (double)score);
            break;
        }
        out->loss_sum += score;
        out->examples += b.n;
        out->batches++;
    }
    out->fit_s = dl4c_now() - t0;
    dl4c_batch_iter_free(it);
    return s;
}

int dl4c_round_plan(const int64_t *part_sizes, int workers, int batch, int freq, int64_t round,
                    int64_t *batches, float *weights, double *divisor) {
    double K = 0, K2 = 0, nwork = 0;
    for (int w = 0; w < workers; w++) {
        int64_t k = ceil_div(part_sizes[w], batch) - round * freq;
        k = k < 0 ? 0 : k > freq ? freq : k;
        if (batches) batches[w] = k;
        K += (double)k;
        K2 += (double)k * (double)k;
        nwork += k > 0;
    }
    /* master.c: equal batches -> plain mean over the working workers, else weighted. */
    const bool equal = K2 * nwork == K * K;
    for (int w = 0; w < workers && weights; w++) {
        int64_t k = ceil_div(part_sizes[w], batch) - round * freq;
        k = k < 0 ? 0 : k > freq ? freq : k;
        weights[w] = equal ? (k > 0 ? 1.0f : 0.0f) : (float)k;
    }
    if (divisor) *divisor = equal ? nwork : K;
    return (int)nwork;
}

int64_t dl4c_epoch_rounds(const int64_t *part_sizes, int workers, int batch, int freq) {
    int64_t max_batches = 0;
    for (int w = 0; w < workers; w++) {
        const int64_t nb = ceil_div(part_sizes[w], batch);
        if (nb > max_batches) max_batches = nb;
    }
    return ceil_div(max_batches, freq);
}

void dl4c_bmuf_step(float *params, float *global, float *delta, int64_t n, float bm, float blr) {
    for (int64_t i = 0; i < n; i++) {
        const float g = params[i] - global[i];
        delta[i] = bm * delta[i] + blr * g;
        global[i] += delta[i];
        params[i] = global[i];
    }
}

void dl4c_bmuf_lookahead(float *params, const float *global, const float *delta, int64_t n, float bm) {
    for (int64_t i = 0; i < n; i++) params[i] = global[i] + bm * delta[i];
}

/* ---- dl4c_train_part: the data callbacks over one in-memory part ---- */
typedef struct part_data {
    const dl4c_dataset *part;  /* this rank's rows, in training order */
    const int64_t *rows;       /* their global ids, or NULL */
    int64_t *identity;         /* 0..n-1 */
} part_data;

/* The trainer asks for a contiguous run of the worker's rows of the epoch, in training order:
 * all of them, the ones left after resuming mid-epoch, or one block at a time when streaming.
 * Found in the part by the global id of its first row, then checked row by row. */
static dl4c_status part_acquire(void *ctx, int worker, const int64_t *rows, int64_t n,
                                const dl4c_dataset **ds, const int64_t **idx) {
    part_data *d = ctx;
    const int64_t have = dl4c_dataset_count(d->part);
    int64_t off = 0;
    if (n > 0) {
        while (off < have && d->rows[off] != rows[0]) off++;
        if (off + n > have)
            return dl4c_error(DL4C_ERR_INVALID_ARG, "worker %d: the partition gives it %lld rows from example %lld "
                              "on, its part of %lld rows does not hold them (the data was split for another seed, "
                              "epoch or worker count)", worker, (long long)n, (long long)rows[0], (long long)have);
        for (int64_t i = 0; i < n; i++)
            if (rows[i] != d->rows[off + i])
                return dl4c_error(DL4C_ERR_INVALID_ARG, "worker %d: row %lld of its part is example %lld, the "
                                  "partition says %lld", worker, (long long)(off + i), (long long)d->rows[off + i],
                                  (long long)rows[i]);
    }
    *ds = d->part;
    *idx = d->identity + off;
    return DL4C_OK;
}

static void part_release(void *ctx, int worker) {}

dl4c_status dl4c_train_part(dl4c_comm *comm, dl4c_net *net, const dl4c_dataset *part,
                            const int64_t *rows, int64_t n_train, const dl4c_train_opts *opts,
                            dl4c_train_state *state) {
    if (!part || !part->features || !part->labels)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "train part: no data");
    const int64_t n = dl4c_dataset_count(part);
    if (n > 0 && dl4c_tensor_row_size(part->features) != dl4c_net_input_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "train part: examples have %lld features, the network takes %lld",
                          (long long)dl4c_tensor_row_size(part->features), (long long)dl4c_net_input_size(net));
    if (part->labels->shape[1] != dl4c_net_output_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "train part: labels have %lld columns, the network outputs %lld",
                          (long long)part->labels->shape[1], (long long)dl4c_net_output_size(net));
    if (!rows) return dl4c_error(DL4C_ERR_INVALID_ARG, "train part: the global ids of the part's rows are needed");
    part_data d = {.part = part, .rows = rows};
    d.identity = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!d.identity) return dl4c_error(DL4C_ERR_NOMEM, "train part: out of memory");
    for (int64_t i = 0; i < n; i++) d.identity[i] = i;
    dl4c_train_data data = {.n_train = n_train, .acquire = part_acquire, .release = part_release,
                            .test_shard = NULL, .ctx = &d};
    dl4c_status s = dl4c_train_worker(comm, net, &data, opts, state);
    free(d.identity);
    return s;
}

dl4c_status dl4c_checkpoint_to_file(void *ctx, const dl4c_net *net, const dl4c_train_state *s) {
    const dl4c_file_checkpoint *c = ctx;
    const dl4c_progress pr = {.epoch = s->epoch, .round = s->round, .iteration = s->iteration,
                              .seed = dl4c_net_conf_of(net)->seed, .workers = c->workers, .loss = s->loss,
                              .has_updater = dl4c_net_n_updater_state(net) > 0};
    return dl4c_model_save_train_checkpoint(net, &pr, s->bmuf_delta, s->partial, c->path);
}

/* ---- For language bindings ---- */
static dl4c_status net_from_conf(dl4c_net_conf *conf, dl4c_net **out) {
    dl4c_status s = dl4c_net_new(conf, out);
    dl4c_config_free_strings(conf);
    return s;
}

dl4c_status dl4c_net_new_from_text(const char *text, size_t len, const char *origin, dl4c_net **out) {
    *out = NULL;
    if (!text) return dl4c_error(DL4C_ERR_INVALID_ARG, "configuration: no text");
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    dl4c_net_conf conf;
    dl4c_status s = i < len && text[i] == '{' ? dl4c_config_parse_json(text, len, origin, &conf)
                                              : dl4c_config_parse_yaml(text, len, origin, &conf);
    return s ? s : net_from_conf(&conf, out);
}

dl4c_status dl4c_net_new_from_file(const char *path, dl4c_net **out) {
    *out = NULL;
    dl4c_net_conf conf;
    dl4c_status s = dl4c_config_load(path, &conf);
    return s ? s : net_from_conf(&conf, out);
}

dl4c_status dl4c_net_conf_json(const dl4c_net *net, char **out) {
    return dl4c_config_to_json(dl4c_net_conf_of(net), out);
}

void dl4c_string_free(char *s) { free(s); }
