/* The parameter-averaging training master: one SPMD worker loop over a communicator
 * (semantics in include/dl4c/train.h and DESIGN.md "One training round"). */
#include "dl4c/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Slots of the per-round reduction (doubles, summed over workers). */
enum { R_BATCHES, R_BATCHES_SQ, R_WORKING, R_FAILED, R_LOSS, R_EXAMPLES, R_STOP, R_COUNT };

typedef struct worker_ctx {
    dl4c_comm *comm;
    dl4c_net *net;
    const dl4c_train_data *data;
    const dl4c_train_opts *opts;
    int rank, size;
    float *global, *delta;     /* bmuf: global model and block momentum (n_params each) */
    double *stats;             /* [3 * size]: fit, wait, avg seconds per worker (epoch totals) */
} worker_ctx;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Averages buf over the workers: sum_r w_r buf_r / divisor, in rank order. */
static dl4c_status average(dl4c_comm *comm, float *buf, int64_t n, float weight, double divisor) {
    if (weight != 1.0f)
        for (int64_t i = 0; i < n; i++) buf[i] *= weight;
    dl4c_status s = dl4c_comm_allreduce(comm, buf, n, DL4C_F32, DL4C_REDUCE_SUM);
    if (s) return s;
    if (divisor != 1.0) {
        const float d = (float)divisor;
        for (int64_t i = 0; i < n; i++) buf[i] /= d;
    }
    return DL4C_OK;
}

/* Blockwise model-update filtering (Chen & Huo 2016): the round's averaged change is
 * filtered through block momentum; workers restart from the Nesterov look-ahead point. */
static void bmuf_update(worker_ctx *w, float *params, int64_t n) {
    const dl4c_training_conf *t = &dl4c_net_conf_of(w->net)->training;
    const float bm = t->block_momentum, blr = t->block_learning_rate;
    for (int64_t i = 0; i < n; i++) {
        const float g = params[i] - w->global[i];
        w->delta[i] = bm * w->delta[i] + blr * g;
        w->global[i] += w->delta[i];
        params[i] = w->global[i] + bm * w->delta[i];
    }
}

static dl4c_status fail_all(worker_ctx *w, dl4c_status own, int failed_workers) {
    if (own) return own;
    return dl4c_error(DL4C_ERR_COMM, "training stopped: %d other worker(s) failed", failed_workers);
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
    const int64_t my_n = starts[w->rank + 1] - starts[w->rank];
    const int64_t skip = first_round * F * B < my_n ? first_round * F * B : my_n;
    const dl4c_dataset *ds = NULL;
    const int64_t *idx = NULL;
    dl4c_batch_iter *it = NULL;
    int own_err = DL4C_OK;
    s = w->data->acquire(w->data->ctx, w->rank, perm + starts[w->rank], my_n, &ds, &idx);
    if (!s && my_n - skip > 0)
        s = dl4c_batch_iter_new(ds, idx + skip, my_n - skip, B, t->prefetch, &it);
    own_err = s;
    dl4c_free(perm);
    free(starts);

    const int64_t n_params = dl4c_net_n_params(net), n_state = dl4c_net_n_updater_state(net);
    float *params = dl4c_net_params(net), *ustate = dl4c_net_updater_state(net);
    const double t_epoch = dl4c_now();
    double loss_sum = 0;
    int64_t loss_batches = 0, examples = 0;
    dl4c_status result = DL4C_OK;
    for (int64_t round = first_round; round < rounds; round++) {
        if (!t->save_updater) {   /* DL4J: without save_updater each round starts a fresh updater */
            memset(ustate, 0, sizeof(float) * (size_t)n_state);
            dl4c_net_set_step(net, 0);
        }
        double red[R_COUNT] = {0};
        const double t0 = dl4c_now();
        int k = 0;
        dl4c_batch b;
        while (!own_err && k < F && it && dl4c_batch_iter_next(it, &b)) {
            float score;
            dl4c_status fs = dl4c_net_fit(net, b.x, b.y, b.n, &score);
            if (fs) {
                own_err = dl4c_error_prefix(fs, "worker %d, epoch %d, iteration %lld", w->rank,
                                            epoch + 1, (long long)(st->iteration + k + 1));
                break;
            }
            red[R_LOSS] += score;
            red[R_EXAMPLES] += b.n;
            k++;
        }
        const double t1 = dl4c_now();
        red[R_BATCHES] = k;
        red[R_BATCHES_SQ] = (double)k * k;
        red[R_WORKING] = k > 0;
        red[R_FAILED] = own_err != DL4C_OK;
        red[R_STOP] = w->opts->stop && *w->opts->stop;
        dl4c_comm_barrier(w->comm);
        const double t2 = dl4c_now();
        s = dl4c_comm_allreduce(w->comm, red, R_COUNT, DL4C_F64, DL4C_REDUCE_SUM);
        if (s) { result = s; break; }
        if (red[R_FAILED] > 0) { result = fail_all(w, own_err, (int)red[R_FAILED]); break; }
        const double K = red[R_BATCHES], nwork = red[R_WORKING];
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
            if (t->averaging == DL4C_AVG_BMUF && w->size > 1) bmuf_update(w, params, n_params);
        }
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
        st->loss = K > 0 ? red[R_LOSS] / K : NAN;
        loss_sum += red[R_LOSS];
        loss_batches += (int64_t)K;
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
            dl4c_status cs = DL4C_OK;
            dl4c_train_state cst = *st;
            if (last) { cst.epoch = epoch + 1; cst.round = 0; }
            if (w->rank == 0) cs = w->opts->checkpoint(w->opts->checkpoint_ctx, net, &cst);
            int64_t bad = cs != DL4C_OK;
            if ((s = dl4c_comm_allreduce(w->comm, &bad, 1, DL4C_I64, DL4C_REDUCE_SUM))) { result = s; break; }
            if (bad) { result = cs ? cs : dl4c_error(DL4C_ERR_IO, "worker 0 could not write a checkpoint"); break; }
            if (w->rank == 0 && w->opts->listener.on_checkpoint)
                w->opts->listener.on_checkpoint(w->opts->listener.ctx, NULL, &cst);
        }
        if (stop) {
            result = dl4c_error(DL4C_ERR_INTERRUPTED, "training interrupted at epoch %d, round %lld",
                                epoch + 1, (long long)(round + 1));
            break;
        }
    }
    dl4c_batch_iter_free(it);
    if (ds) w->data->release(w->data->ctx, w->rank);
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
    }
    if (!w.stats || (t->averaging == DL4C_AVG_BMUF && (!w.global || !w.delta))) {
        free(w.stats); free(w.global); free(w.delta);
        return dl4c_error(DL4C_ERR_NOMEM, "training: out of memory");
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
    free(w.stats); free(w.global); free(w.delta);
    *state = st;
    return result;
}
