/* The parameter-averaging training master: one SPMD worker loop over a communicator
 * (semantics in include/dl4c/train.h and DESIGN.md "One training round"). */
#include "dl4c/round.h"
#include "dl4c/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Slots of the per-round reduction (doubles, summed over workers). */
enum { R_BATCHES, R_BATCHES_SQ, R_WORKING, R_FAILED, R_LOSS, R_EXAMPLES, R_STOP, R_SKIPPED, R_CUT, R_COUNT };

typedef struct worker_ctx {
    dl4c_comm *comm;
    dl4c_net *net;
    const dl4c_train_data *data;
    const dl4c_train_opts *opts;
    int rank, size;
    float *global, *delta;     /* bmuf: global model and block momentum (n_params each) */
    double *stats;             /* [3 * size]: fit, wait, avg seconds per worker (epoch totals) */
    float *backup;             /* on_nan skip-batch: params and updater state before the step */
} worker_ctx;

/* ---- Divergence checks ---- */

/* True when no value is NaN or infinite; works whatever the floating-point flags. The
 * exponent field plus one carries into the sign bit only when it is all ones (NaN, infinity),
 * so OR-ing (bits & exponent mask) + (1 << 23) over the values leaves the sign bit set iff
 * one is not finite: and, add and or. (A per-value comparison in a plain loop was not
 * vectorized, and these checks of every step took 4% of a LeNet epoch on 2 threads.) */
static bool all_finite(const float *x, int64_t n) {
    const uint32_t *u = (const uint32_t *)x;
    uint32_t acc = 0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)   /* blocks of a fixed count: vectorized at -O2 (GCC 12) */
        for (int k = 0; k < 64; k++) acc |= (u[i + k] & 0x7f800000u) + 0x00800000u;
    for (; i < n; i++) acc |= (u[i] & 0x7f800000u) + 0x00800000u;
    return !(acc & 0x80000000u);
}

/* Names the first layer whose parameters, else gradients, else updater state (slot-major:
 * slot k of layer i at k * n_params + the layer's offset) are not all finite:
 * "layer 4 (dense \"fc\"): parameters not finite". */
static void describe_nonfinite(dl4c_net *net, char *buf, size_t cap) {
    const int64_t np = dl4c_net_n_params(net);
    const int slots = np ? (int)(dl4c_net_n_updater_state(net) / np) : 0;
    const float *bufs[3] = {dl4c_net_params(net), dl4c_net_gradients(net), dl4c_net_updater_state(net)};
    static const char *const what[3] = {"parameters", "gradients", "updater state"};
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < (b == 2 ? slots : 1); k++) {
            int64_t off = 0;
            for (int i = 0; i < dl4c_net_n_layers(net); i++) {
                const dl4c_layer_info li = dl4c_net_layer_info(net, i);
                if (!all_finite(bufs[b] + (int64_t)k * np + off, li.n_params)) {
                    const char *name = conf->layers[i].name;
                    snprintf(buf, cap, "layer %d (%s%s%s%s): %s not finite", i, dl4c_layer_type_str(li.type),
                             name[0] ? " \"" : "", name, name[0] ? "\"" : "", what[b]);
                    return;
                }
                off += li.n_params;
            }
        }
    snprintf(buf, cap, "output layer %d (%s): the loss is not finite", dl4c_net_n_layers(net) - 1,
             dl4c_layer_type_str(dl4c_net_layer_info(net, dl4c_net_n_layers(net) - 1).type));
}

/* One minibatch step with divergence checks: a non-finite loss or gradient means no update;
 * a non-finite parameter or updater state after the update is one too. With on_nan stop that
 * is DL4C_ERR_NUMERIC naming the layer and iteration; with skip-batch the step is undone
 * (parameters, updater state and step restored from w->backup) and *skipped set. The loss is
 * checked at every step; gradients and parameters at every step on the CPU (where the host
 * buffers are the network's) or with skip-batch, else after each round's averaging (on a GPU
 * a per-step check would copy the buffers down every step). */
static dl4c_status fit_step(worker_ctx *w, const dl4c_batch *b, int epoch, int64_t iteration,
                            float *score, bool *skipped) {
    dl4c_net *net = w->net;
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    const bool skip = w->opts->on_nan == DL4C_ON_NAN_SKIP_BATCH;
    const bool per_step = skip || dl4c_net_device(net, NULL) == DL4C_DEVICE_CPU;
    *skipped = false;
    dl4c_status s = dl4c_net_compute_gradient(net, b->x, b->y, b->n, score);
    if (s && s != DL4C_ERR_NUMERIC) return s;
    bool bad = s == DL4C_ERR_NUMERIC || !isfinite(*score) ||
               (per_step && !all_finite(dl4c_net_gradients(net), np));
    const char *when = "the loss or gradient";
    if (!bad) {
        const int64_t step = dl4c_net_step(net);
        if (skip) {   /* host copies are current after the getters */
            memcpy(w->backup, dl4c_net_params(net), sizeof(float) * (size_t)np);
            if (ns) memcpy(w->backup + np, dl4c_net_updater_state(net), sizeof(float) * (size_t)ns);
        }
        dl4c_net_apply_update(net);
        bad = per_step && (!all_finite(dl4c_net_params(net), np) ||
                           (ns && !all_finite(dl4c_net_updater_state(net), ns)));
        when = "the update";
        if (bad && skip) {   /* written through the host pointers: copied up at the next call */
            memcpy(dl4c_net_params(net), w->backup, sizeof(float) * (size_t)np);
            if (ns) memcpy(dl4c_net_updater_state(net), w->backup + np, sizeof(float) * (size_t)ns);
            dl4c_net_set_step(net, step);
        }
    }
    if (!bad) return DL4C_OK;
    if (skip) {
        *skipped = true;
        return DL4C_OK;
    }
    char where[160];
    describe_nonfinite(net, where, sizeof where);
    return dl4c_error(DL4C_ERR_NUMERIC,
                      "training diverged at epoch %d, iteration %lld (worker %d): %s gave NaN or "
                      "infinity (loss %g); %s. Nothing was written from this step on; lower the "
                      "learning rate or use --on-nan skip-batch", epoch + 1, (long long)iteration,
                      w->rank, when, (double)*score, where);
}

/* Stop flag (set by a signal handler or another thread): an atomic read. */
static bool stop_requested(const dl4c_train_opts *o) {
    return o->stop && __atomic_load_n(o->stop, __ATOMIC_RELAXED);
}

/* ---- A worker's minibatches of an epoch, acquired whole or in blocks (streaming) ---- */
typedef struct batch_feed {
    worker_ctx *w;
    const int64_t *rows;      /* the worker's remaining rows of the epoch, in training order */
    int64_t n, pos, block;    /* rows, rows acquired so far, rows per block */
    int batch, prefetch;
    bool held;                /* a block is acquired (release before the next) */
    dl4c_batch_iter *it;      /* over the current block */
} batch_feed;

static void feed_release(batch_feed *f) {
    dl4c_batch_iter_free(f->it);
    f->it = NULL;
    if (f->held) f->w->data->release(f->w->data->ctx, f->w->rank);
    f->held = false;
}

/* The next minibatch into *b; false at the end of the epoch's rows or on an error (*err). */
static bool feed_next(batch_feed *f, dl4c_batch *b, dl4c_status *err) {
    for (;;) {
        if (f->it && dl4c_batch_iter_next(f->it, b)) return true;
        if (f->pos >= f->n) return false;
        feed_release(f);
        const int64_t cnt = f->n - f->pos < f->block ? f->n - f->pos : f->block;
        const dl4c_dataset *ds = NULL;
        const int64_t *idx = NULL;
        dl4c_status s = f->w->data->acquire(f->w->data->ctx, f->w->rank, f->rows + f->pos, cnt, &ds, &idx);
        if (!s) {
            f->held = true;
            s = dl4c_batch_iter_new(ds, idx, cnt, f->batch, f->prefetch, &f->it);
        }
        if (s) { *err = s; return false; }
        f->pos += cnt;
    }
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* buf[i] = buf[i] * m (div false) or buf[i] / m, in blocks of 16 whose fixed trip count lets
 * the compiler's -O2 vectorizer take them (a division per float cost LeNet's 2-worker rounds
 * 0.25 ms of 10); the same floats as one at a time. */
static void scale_floats(float *buf, int64_t n, float m, bool div) {
    int64_t i = 0;
    if (div)
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 16; j++) buf[i + j] /= m;
    else
        for (; i + 16 <= n; i += 16)
            for (int j = 0; j < 16; j++) buf[i + j] *= m;
    for (; i < n; i++) buf[i] = div ? buf[i] / m : buf[i] * m;
}

/* Averages buf over the workers: sum_r w_r buf_r / divisor, in rank order. */
static dl4c_status average(dl4c_comm *comm, float *buf, int64_t n, float weight, double divisor) {
    if (weight != 1.0f) scale_floats(buf, n, weight, false);
    dl4c_status s = dl4c_comm_allreduce(comm, buf, n, DL4C_F32, DL4C_REDUCE_SUM);
    if (s) return s;
    int e;
    if (divisor == 1.0) return DL4C_OK;
    if (frexp(divisor, &e) == 0.5 && e > -120 && e < 120)   /* a power of two: times its inverse, the same floats */
        scale_floats(buf, n, (float)ldexp(1.0, 1 - e), false);
    else
        scale_floats(buf, n, (float)divisor, true);
    return DL4C_OK;
}

/* Blockwise model-update filtering (Chen & Huo 2016), dl4c_bmuf_step / dl4c_bmuf_lookahead
 * (round.c): between rounds the parameters hold the global model (what checkpoints,
 * evaluation and the final model see); each round starts from the Nesterov look-ahead point. */
static void bmuf_update(worker_ctx *w, float *params, int64_t n) {
    const dl4c_training_conf *t = &dl4c_net_conf_of(w->net)->training;
    dl4c_bmuf_step(params, w->global, w->delta, n, t->block_momentum, t->block_learning_rate);
}

static void bmuf_lookahead(worker_ctx *w, float *params, int64_t n) {
    dl4c_bmuf_lookahead(params, w->global, w->delta, n, dl4c_net_conf_of(w->net)->training.block_momentum);
}

static dl4c_status fail_all(worker_ctx *w, dl4c_status own, int failed_workers) {
    if (own) return own;
    return dl4c_error(DL4C_ERR_COMM, "training stopped: %d other worker(s) failed", failed_workers);
}

/* Worker 0 writes a checkpoint of `cst`; every worker learns whether it was written. */
static dl4c_status checkpoint_now(worker_ctx *w, const dl4c_train_state *cst) {
    dl4c_status cs = DL4C_OK, s;
    if (w->rank == 0) cs = w->opts->checkpoint(w->opts->checkpoint_ctx, w->net, cst);
    int64_t bad = cs != DL4C_OK;
    if ((s = dl4c_comm_allreduce(w->comm, &bad, 1, DL4C_I64, DL4C_REDUCE_SUM))) return s;
    if (bad) return cs ? cs : dl4c_error(DL4C_ERR_IO, "worker 0 could not write a checkpoint");
    if (w->rank == 0 && w->opts->listener.on_checkpoint)
        w->opts->listener.on_checkpoint(w->opts->listener.ctx, NULL, cst);
    return DL4C_OK;
}

/* A stop request cut the round short on some worker: every worker's own state (parameters,
 * updater state, step, and its minibatches, examples, skipped minibatches and loss so far in
 * the round; `own` = loss, examples, skipped) goes to worker 0, which writes the checkpoint.
 * Returns DL4C_ERR_INTERRUPTED once it is written. */
static dl4c_status checkpoint_cut(worker_ctx *w, int epoch, int64_t round, const dl4c_train_state *st,
                                  int k, const double own[3], bool bmuf) {
    dl4c_net *net = w->net;
    const int64_t np = dl4c_net_n_params(net), ns = dl4c_net_n_updater_state(net);
    dl4c_worker_states ws;
    dl4c_status s = dl4c_worker_states_alloc(net, w->size, &ws), cs = s;
    int64_t bad = s != DL4C_OK;
    if ((s = dl4c_comm_allreduce(w->comm, &bad, 1, DL4C_I64, DL4C_REDUCE_SUM)) || bad) {
        dl4c_worker_states_free(&ws);
        return s ? s : cs ? cs : dl4c_error(DL4C_ERR_NOMEM, "training: another worker ran out of memory for the checkpoint");
    }
    const int r = w->rank;
    ws.batches[r] = k;
    ws.steps[r] = dl4c_net_step(net);
    ws.loss[r] = own[0];
    ws.examples[r] = (int64_t)own[1];
    ws.skipped[r] = (int64_t)own[2];
    memcpy(ws.params + r * np, dl4c_net_params(net), sizeof(float) * (size_t)np);
    if (ns) memcpy(ws.ustate + r * ns, dl4c_net_updater_state(net), sizeof(float) * (size_t)ns);
    /* Gathered exactly: sums with zeros for the counts, one broadcast per worker for the floats. */
    int64_t *ints[4] = {ws.batches, ws.steps, ws.examples, ws.skipped};
    for (int j = 0; j < 4 && !s; j++) s = dl4c_comm_allreduce(w->comm, ints[j], w->size, DL4C_I64, DL4C_REDUCE_SUM);
    if (!s) s = dl4c_comm_allreduce(w->comm, ws.loss, w->size, DL4C_F64, DL4C_REDUCE_SUM);
    for (int q = 0; q < w->size && !s; q++) {
        s = dl4c_comm_broadcast(w->comm, ws.params + q * np, sizeof(float) * (size_t)np, q);
        if (!s && ns) s = dl4c_comm_broadcast(w->comm, ws.ustate + q * ns, sizeof(float) * (size_t)ns, q);
    }
    if (s) { dl4c_worker_states_free(&ws); return s; }
    dl4c_train_state cst = *st;
    cst.epoch = epoch;
    cst.round = round;
    cst.bmuf_delta = bmuf ? w->delta : NULL;
    cst.partial = &ws;
    /* The file's own parameters: worker 0's, or with bmuf the global model. */
    if (bmuf) memcpy(dl4c_net_params(net), w->global, sizeof(float) * (size_t)np);
    s = checkpoint_now(w, &cst);
    dl4c_worker_states_free(&ws);
    if (s) return s;
    return dl4c_error(DL4C_ERR_INTERRUPTED, "training interrupted at epoch %d, in round %lld (between minibatches)",
                      epoch + 1, (long long)round + 1);
}

static dl4c_status run_epoch(worker_ctx *w, int epoch, int64_t first_round, dl4c_train_state *st,
                             double *epoch_loss, int64_t *epoch_examples, int64_t *epoch_rounds) {
    dl4c_net *net = w->net;
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    const dl4c_training_conf *t = &conf->training;
    const int B = t->batch_size_per_worker, F = t->averaging_frequency;
    const int64_t n = w->data->n_train;
    int64_t *perm = NULL, *starts = malloc(sizeof(int64_t) * (size_t)(w->size + 1));
    if (!starts) return dl4c_error(DL4C_ERR_NOMEM, "training: out of memory");
    dl4c_status s = dl4c_partition(n, conf->seed, epoch, w->size, &perm, starts);
    if (s) { free(starts); return s; }
    int64_t max_batches = 0;
    for (int r = 0; r < w->size; r++) {
        const int64_t nb = ceil_div(starts[r + 1] - starts[r], B);
        if (nb > max_batches) max_batches = nb;
    }
    const int64_t rounds = ceil_div(max_batches, F);
    const int64_t my_n = starts[w->rank + 1] - starts[w->rank], my_batches = ceil_div(my_n, B);
    /* Resuming a round cut short: this worker's minibatches already done in it. */
    const dl4c_worker_states *part = st->partial;
    st->partial = NULL;
    const int64_t done0 = part ? part->batches[w->rank] : 0;
    const int64_t skip = (first_round * F + done0) * B < my_n ? (first_round * F + done0) * B : my_n;
    /* Blocks of whole minibatches when streaming, else all rows at once. */
    int64_t block = w->data->block_rows > 0 ? w->data->block_rows / B * B : my_n - skip;
    if (block < B) block = B;
    batch_feed feed = {.w = w, .rows = perm + starts[w->rank] + skip, .n = my_n - skip, .block = block,
                       .batch = B, .prefetch = t->prefetch};
    dl4c_status own_err = DL4C_OK;
    free(starts);

    const int64_t n_params = dl4c_net_n_params(net), n_state = dl4c_net_n_updater_state(net);
    const double t_epoch = dl4c_now();
    double loss_sum = 0;
    int64_t loss_batches = 0, examples = 0;
    dl4c_status result = DL4C_OK;
    const bool bmuf = t->averaging == DL4C_AVG_BMUF && w->size > 1;
    /* A stop request cuts a round short only when the cut can be checkpointed. */
    const bool can_cut = w->opts->checkpoint != NULL;
    for (int64_t round = first_round; round < rounds; round++) {
        /* A resumed round continues from each worker's saved state (dl4c_train_worker). */
        const bool resumed = part && round == first_round;
        if (bmuf && !resumed) {
            bmuf_lookahead(w, dl4c_net_params(net), n_params);
        }
        if (!t->save_updater && !resumed) {   /* DL4J: without save_updater each round starts a fresh updater */
            memset(dl4c_net_updater_state(net), 0, sizeof(float) * (size_t)n_state);
            dl4c_net_set_step(net, 0);
        }
        double red[R_COUNT] = {0};
        const double t0 = dl4c_now();
        int k = 0;
        if (resumed) {
            k = (int)done0;
            red[R_LOSS] = part->loss[w->rank];
            red[R_EXAMPLES] = (double)part->examples[w->rank];
            red[R_SKIPPED] = (double)part->skipped[w->rank];
        }
        /* Minibatches this worker does in this round when not stopped. */
        const int64_t left = my_batches - round * F, expect = left < 0 ? 0 : left < F ? left : F;
        bool cut = false;
        dl4c_batch b;
        while (!own_err && k < F) {
            if (can_cut && k < expect && stop_requested(w->opts)) { cut = true; break; }
            if (!feed_next(&feed, &b, &own_err)) break;
            float score;
            bool skipped;
            dl4c_status fs = fit_step(w, &b, epoch, st->iteration + k + 1, &score, &skipped);
            if (fs) {
                own_err = fs == DL4C_ERR_NUMERIC ? fs
                        : dl4c_error_prefix(fs, "worker %d, epoch %d, iteration %lld", w->rank,
                                            epoch + 1, (long long)(st->iteration + k + 1));
                break;
            }
            if (skipped) red[R_SKIPPED] += 1;
            else red[R_LOSS] += score;
            red[R_EXAMPLES] += b.n;
            k++;
        }
        dl4c_net_sync_host(net);   /* GPU networks: host copies current for the averaging below */
        const double t1 = dl4c_now();
        const double own[3] = {red[R_LOSS], red[R_EXAMPLES], red[R_SKIPPED]};
        red[R_CUT] = cut;
        red[R_BATCHES] = k;
        red[R_BATCHES_SQ] = (double)k * k;
        red[R_WORKING] = k > 0;
        red[R_FAILED] = own_err != DL4C_OK;
        red[R_STOP] = stop_requested(w->opts);
        dl4c_comm_barrier(w->comm);
        const double t2 = dl4c_now();
        s = dl4c_comm_allreduce(w->comm, red, R_COUNT, DL4C_F64, DL4C_REDUCE_SUM);
        if (s) { result = s; break; }
        if (red[R_FAILED] > 0) { result = fail_all(w, own_err, (int)red[R_FAILED]); break; }
        if (red[R_CUT] > 0 && (red[R_BATCHES] > 0 || resumed)) {
            result = checkpoint_cut(w, epoch, round, st, k, own, bmuf);
            break;
        }
        if (red[R_CUT] > 0) {   /* no worker began the round: its start is a round boundary */
            if (bmuf) memcpy(dl4c_net_params(net), w->global, sizeof(float) * (size_t)n_params);
            dl4c_train_state cst = *st;
            cst.bmuf_delta = bmuf ? w->delta : NULL;
            if (!(result = checkpoint_now(w, &cst)))
                result = dl4c_error(DL4C_ERR_INTERRUPTED, "training interrupted at epoch %d, after round %lld",
                                    epoch + 1, (long long)round);
            break;
        }
        const double K = red[R_BATCHES], nwork = red[R_WORKING];
        /* Host buffers, current after the fits (on a GPU the getters copy them down). */
        float *params = dl4c_net_params(net), *ustate = dl4c_net_updater_state(net);
        if (nwork > 0) {
            /* All working workers did the same number of batches: plain mean (with one
             * worker the parameters stay bit-identical); else weighted by batches. */
            const bool equal = red[R_BATCHES_SQ] * nwork == K * K;
            const float weight = equal ? (k > 0 ? 1.0f : 0.0f) : (float)k;
            const double divisor = equal ? nwork : K;
            if ((s = average(w->comm, params, n_params, weight, divisor))) { result = s; break; }
            if (t->save_updater && n_state &&
                (s = average(w->comm, ustate, n_state, weight, divisor))) { result = s; break; }
            int64_t step = dl4c_net_step(net);
            if ((s = dl4c_comm_allreduce(w->comm, &step, 1, DL4C_I64, DL4C_REDUCE_MAX))) { result = s; break; }
            dl4c_net_set_step(net, step);
            if (bmuf) bmuf_update(w, params, n_params);
            /* Finite inputs can still overflow in the sum: never go on (or checkpoint) with NaNs. */
            if (!all_finite(params, n_params) || (t->save_updater && n_state && !all_finite(ustate, n_state))) {
                char where[160];
                describe_nonfinite(net, where, sizeof where);
                /* On a GPU the per-step checks cover the loss only: this names the round's steps. */
                result = dl4c_error(DL4C_ERR_NUMERIC, "training diverged at epoch %d, round %lld (iterations "
                                    "%lld to %lld): the averaged parameters or updater state are not finite; "
                                    "%s. Nothing was written from this round on", epoch + 1,
                                    (long long)(round + 1), (long long)st->iteration + 1,
                                    (long long)st->iteration + (int64_t)F, where);
                break;
            }
        }
        if (red[R_SKIPPED] > 0 && w->rank == 0)
            dl4c_log(DL4C_LOG_WARN, "training: epoch %d, round %lld: skipped %.0f minibatch(es) whose loss, "
                     "gradient or update was NaN or infinite (on-nan skip-batch)", epoch + 1,
                     (long long)(round + 1), red[R_SKIPPED]);
        const double t3 = dl4c_now();
        /* Time per worker and phase. */
        double *times = calloc((size_t)(3 * w->size), sizeof(double));
        if (!times) { result = dl4c_error(DL4C_ERR_NOMEM, "training: out of memory"); break; }
        times[3 * w->rank] = t1 - t0;
        times[3 * w->rank + 1] = t2 - t1;
        times[3 * w->rank + 2] = t3 - t2;
        s = dl4c_comm_allreduce(w->comm, times, 3 * w->size, DL4C_F64, DL4C_REDUCE_SUM);
        if (!s) for (int i = 0; i < 3 * w->size; i++) w->stats[i] += times[i];
        if (s) { free(times); result = s; break; }

        /* Sequential steps this round: the longest worker's batches. */
        int64_t max_k = k;
        if ((s = dl4c_comm_allreduce(w->comm, &max_k, 1, DL4C_I64, DL4C_REDUCE_MAX))) { free(times); result = s; break; }
        st->iteration += max_k;
        st->round = round + 1;
        const double scored = K - red[R_SKIPPED];
        st->loss = scored > 0 ? red[R_LOSS] / scored : NAN;
        loss_sum += red[R_LOSS];
        loss_batches += (int64_t)scored;
        examples += (int64_t)red[R_EXAMPLES];
        if (w->rank == 0 && w->opts->listener.on_round) {
            dl4c_round_info ri = {
                .epoch = epoch, .round = round + 1, .rounds = rounds, .examples_done = examples,
                .examples_total = n, .loss = st->loss, .seconds = dl4c_now() - t_epoch,
                .fit_s = t1 - t0, .wait_s = t2 - t1, .avg_s = t3 - t2,
                .workers = w->size, .worker_times = times,
            };
            w->opts->listener.on_round(w->opts->listener.ctx, &ri);
        }
        free(times);
        const bool last = round + 1 == rounds;
        const bool stop = red[R_STOP] > 0 && !last;
        if (w->opts->checkpoint && ((w->opts->checkpoint_every > 0 && (round + 1) % w->opts->checkpoint_every == 0) || stop)) {
            dl4c_train_state cst = *st;
            if (last) { cst.epoch = epoch + 1; cst.round = 0; }
            cst.bmuf_delta = bmuf ? w->delta : NULL;
            if ((result = checkpoint_now(w, &cst))) break;
        }
        if (stop) {
            result = dl4c_error(DL4C_ERR_INTERRUPTED, "training interrupted at epoch %d, round %lld",
                                epoch + 1, (long long)(round + 1));
            break;
        }
    }
    feed_release(&feed);
    dl4c_free(perm);
    *epoch_loss = loss_batches ? loss_sum / (double)loss_batches : NAN;
    *epoch_examples = examples;
    *epoch_rounds = rounds - first_round;
    return result;
}

dl4c_status dl4c_evaluate_dist(dl4c_comm *comm, dl4c_net *net, const dl4c_dataset *shard,
                               int k, bool classification, int batch, dl4c_eval **ev,
                               dl4c_regeval **rev) {
    *ev = NULL;
    if (rev) *rev = NULL;
    dl4c_eval *lev = NULL;
    dl4c_regeval *lrev = NULL;
    dl4c_status s = DL4C_OK;
    if (shard && dl4c_dataset_count(shard) > 0) {
        s = dl4c_net_evaluate(net, shard, batch, &lev, &lrev);
    } else if (classification) {
        s = dl4c_eval_new(k, &lev);
    } else {
        s = dl4c_regeval_new(k, &lrev);
    }
    int64_t bad = s != DL4C_OK;
    dl4c_status cs = dl4c_comm_allreduce(comm, &bad, 1, DL4C_I64, DL4C_REDUCE_SUM);
    if (cs || bad) {
        dl4c_eval_free(lev);
        dl4c_regeval_free(lrev);
        return s ? s : cs ? cs : dl4c_error(DL4C_ERR_COMM, "evaluation failed on another worker");
    }
    if (lev) {
        if ((s = dl4c_comm_allreduce(comm, dl4c_eval_counts(lev), (int64_t)k * k, DL4C_I64, DL4C_REDUCE_SUM))) {
            dl4c_eval_free(lev);
            return s;
        }
        *ev = lev;
    } else {
        size_t len;
        double *sums = dl4c_regeval_sums(lrev, &len);
        if ((s = dl4c_comm_allreduce(comm, sums, (int64_t)len, DL4C_F64, DL4C_REDUCE_SUM))) {
            dl4c_regeval_free(lrev);
            return s;
        }
        if (rev) *rev = lrev; else dl4c_regeval_free(lrev);
    }
    return DL4C_OK;
}

dl4c_status dl4c_train_worker(dl4c_comm *comm, dl4c_net *net, const dl4c_train_data *data,
                              const dl4c_train_opts *opts, dl4c_train_state *state) {
    worker_ctx w = {.comm = comm, .net = net, .data = data, .opts = opts,
                    .rank = dl4c_comm_rank(comm), .size = dl4c_comm_size(comm)};
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    const dl4c_training_conf *t = &conf->training;
    dl4c_train_state st = opts->resume ? *opts->resume : (dl4c_train_state){0};
    const int64_t n_params = dl4c_net_n_params(net), n_state = dl4c_net_n_updater_state(net);
    dl4c_status s;
    /* Everyone starts from rank 0's parameters, updater state and step. */
    if ((s = dl4c_comm_broadcast(comm, dl4c_net_params(net), sizeof(float) * (size_t)n_params, 0))) return s;
    if (n_state && (s = dl4c_comm_broadcast(comm, dl4c_net_updater_state(net), sizeof(float) * (size_t)n_state, 0))) return s;
    int64_t step = dl4c_net_step(net);
    if ((s = dl4c_comm_broadcast(comm, &step, sizeof step, 0))) return s;
    dl4c_net_set_step(net, step);
    if (data->n_train <= 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "training: the training set is empty");

    w.stats = calloc((size_t)(3 * w.size), sizeof(double));
    if (t->averaging == DL4C_AVG_BMUF) {
        w.global = malloc(sizeof(float) * (size_t)n_params);
        w.delta = calloc((size_t)n_params, sizeof(float));
        if (w.global) memcpy(w.global, dl4c_net_params(net), sizeof(float) * (size_t)n_params);
        if (w.delta && opts->resume && opts->resume->bmuf_delta) {
            memcpy(w.delta, opts->resume->bmuf_delta, sizeof(float) * (size_t)n_params);
            if ((s = dl4c_comm_broadcast(comm, w.delta, sizeof(float) * (size_t)n_params, 0))) {
                free(w.global); free(w.delta); free(w.stats);
                return s;
            }
        }
    }
    if (opts->on_nan == DL4C_ON_NAN_SKIP_BATCH)
        w.backup = malloc(sizeof(float) * (size_t)(n_params + n_state + 1));
    if (!w.stats || (t->averaging == DL4C_AVG_BMUF && (!w.global || !w.delta)) ||
        (opts->on_nan == DL4C_ON_NAN_SKIP_BATCH && !w.backup)) {
        free(w.stats); free(w.global); free(w.delta); free(w.backup);
        return dl4c_error(DL4C_ERR_NOMEM, "training: out of memory");
    }
    /* Resuming a round cut short: each worker continues from its own saved state (the global
     * model above came from the checkpoint's parameters). */
    const dl4c_worker_states *part = st.partial;
    if (part && (part->workers != w.size || !part->params || (n_state && !part->ustate))) {
        free(w.stats); free(w.global); free(w.delta); free(w.backup);
        return dl4c_error(DL4C_ERR_INVALID_ARG, "training: the checkpoint holds the states of %d workers in a "
                          "round cut short; this run has %d (resuming needs the same)", part->workers, w.size);
    }
    if (part) {
        memcpy(dl4c_net_params(net), part->params + w.rank * n_params, sizeof(float) * (size_t)n_params);
        if (n_state)
            memcpy(dl4c_net_updater_state(net), part->ustate + w.rank * n_state, sizeof(float) * (size_t)n_state);
        dl4c_net_set_step(net, part->steps[w.rank]);
    }
    dl4c_status result = DL4C_OK;
    for (int epoch = st.epoch; epoch < t->epochs; epoch++) {
        memset(w.stats, 0, sizeof(double) * (size_t)(3 * w.size));
        double loss = NAN;
        int64_t examples = 0, rounds = 0;
        const double t0 = dl4c_now();
        const int64_t first_round = epoch == st.epoch ? st.round : 0;
        st.epoch = epoch;
        s = run_epoch(&w, epoch, first_round, &st, &loss, &examples, &rounds);
        const double seconds = dl4c_now() - t0;
        if (s) { result = s; break; }
        st.epoch = epoch + 1;
        st.round = 0;
        /* Evaluate the test set, every worker its shard. */
        const dl4c_dataset *shard = NULL;
        dl4c_eval *ev = NULL;
        dl4c_regeval *rev = NULL;
        bool have_test = false;
        if (data->test_shard) {
            s = data->test_shard(data->ctx, w.rank, w.size, &shard);
            int64_t have = shard != NULL && s == DL4C_OK, failed = s != DL4C_OK;
            int64_t both[2] = {have, failed};
            dl4c_status cs = dl4c_comm_allreduce(comm, both, 2, DL4C_I64, DL4C_REDUCE_SUM);
            if (cs || both[1]) { result = s ? s : cs ? cs : dl4c_error(DL4C_ERR_COMM, "a worker could not read its test shard"); break; }
            have_test = both[0] > 0;
        }
        if (have_test) {
            const dl4c_layer_info out = dl4c_net_layer_info(net, dl4c_net_n_layers(net) - 1);
            const bool cls = out.out_shape[0] > 0 && dl4c_net_conf_of(net)->layers[dl4c_net_n_layers(net) - 1].loss != DL4C_LOSS_MSE;
            s = dl4c_evaluate_dist(comm, net, shard, (int)out.out_shape[0], cls, 256, &ev, &rev);
            if (s) { result = s; break; }
        }
        if (w.rank == 0 && opts->listener.on_epoch) {
            double *fit = malloc(sizeof(double) * (size_t)w.size * 3);
            if (fit) {
                for (int r = 0; r < w.size; r++) {
                    fit[r] = w.stats[3 * r];
                    fit[w.size + r] = w.stats[3 * r + 1];
                    fit[2 * w.size + r] = w.stats[3 * r + 2];
                }
                dl4c_epoch_info ei = {
                    .epoch = epoch, .loss = loss, .examples = examples, .seconds = seconds,
                    .examples_per_s = seconds > 0 ? examples / seconds : 0, .rounds = rounds,
                    .workers = w.size, .worker_fit_s = fit, .worker_wait_s = fit + w.size,
                    .worker_avg_s = fit + 2 * w.size, .eval = ev, .regeval = rev,
                };
                opts->listener.on_epoch(opts->listener.ctx, &ei);
                free(fit);
            }
        }
        dl4c_eval_free(ev);
        dl4c_regeval_free(rev);
    }
    if (opts->bmuf_delta_out && w.delta)
        memcpy(opts->bmuf_delta_out, w.delta, sizeof(float) * (size_t)n_params);
    free(w.stats); free(w.global); free(w.delta); free(w.backup);
    st.bmuf_delta = NULL;   /* pointed into this call's buffers */
    *state = st;
    return result;
}
