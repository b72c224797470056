/* Local training: worker threads in one process, a local communicator, one shared dataset. */
#include "dl4c/train.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct local_data {
    const dl4c_dataset *train, *test;  /* shared, read-only */
    dl4c_dataset *shards;              /* [workers] views of the test set */
    dl4c_tensor *views;                /* [2 * workers] feature/label views */
} local_data;

static dl4c_status local_acquire(void *ctx, int worker, const int64_t *rows, int64_t n,
                                 const dl4c_dataset **ds, const int64_t **idx) {
    local_data *d = ctx;
    *ds = d->train;
    *idx = rows;
    return DL4C_OK;
}

static void local_release(void *ctx, int worker) {}

static dl4c_status local_test_shard(void *ctx, int worker, int workers, const dl4c_dataset **ds) {
    local_data *d = ctx;
    *ds = NULL;
    if (!d->test) return DL4C_OK;
    const int64_t n = dl4c_dataset_count(d->test);
    const int64_t lo = n * worker / workers, hi = n * (worker + 1) / workers;
    d->views[2 * worker] = dl4c_tensor_rows(d->test->features, lo, hi - lo);
    d->views[2 * worker + 1] = dl4c_tensor_rows(d->test->labels, lo, hi - lo);
    d->shards[worker] = (dl4c_dataset){.features = &d->views[2 * worker],
                                       .labels = &d->views[2 * worker + 1],
                                       .n_classes = d->test->n_classes};
    *ds = &d->shards[worker];
    return DL4C_OK;
}

typedef struct worker_arg {
    dl4c_comm *comm;
    dl4c_net *net;
    const dl4c_train_data *data;
    const dl4c_train_opts *opts;
    dl4c_train_state state;
    dl4c_status status;
    char message[1024];
} worker_arg;

static void *worker_main(void *p) {
    worker_arg *a = p;
    a->status = dl4c_train_worker(a->comm, a->net, a->data, a->opts, &a->state);
    if (a->status) snprintf(a->message, sizeof a->message, "%s", dl4c_error_message());
    return NULL;
}

dl4c_status dl4c_train_local_data(dl4c_net *net, const dl4c_train_data *data,
                                  const dl4c_train_opts *opts, dl4c_train_state *state) {
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    const int W = conf->training.workers;
    dl4c_comm **comms = calloc((size_t)W, sizeof *comms);
    worker_arg *args = calloc((size_t)W, sizeof *args);
    pthread_t *tids = calloc((size_t)W, sizeof *tids);
    dl4c_status s = DL4C_OK;
    if (!comms || !args || !tids) {
        s = dl4c_error(DL4C_ERR_NOMEM, "training: out of memory");
        goto done;
    }
    const int threads = opts->threads > 0 ? opts->threads : W;
    dl4c_net_set_threads(net, W > 1 ? 1 : threads);   /* BLAS threads per worker */
    if ((s = dl4c_comm_local_group(W, comms))) goto done;
    int made = 0;
    /* On CUDA, worker r runs on GPU (index + r) mod the number of GPUs: one worker per GPU
     * when there are enough, shared GPUs otherwise. */
    const int gpus = conf->device == DL4C_DEVICE_CUDA ? dl4c_cuda_device_count() : 0;
    for (int r = 0; r < W && !s; r++) {
        args[r] = (worker_arg){.comm = comms[r], .net = net, .data = data, .opts = opts};
        if (r > 0) {
            dl4c_net_conf wc = *conf;
            if (gpus > 1) wc.device_index = (conf->device_index + r) % gpus;
            s = dl4c_net_new(&wc, &args[r].net);
        }
        if (!s) made = r + 1;
    }
    if (s) {
        for (int r = 1; r < made; r++) dl4c_net_free(args[r].net);
        for (int r = 0; r < W; r++) dl4c_comm_free(comms[r]);
        goto done;
    }
    for (int r = 1; r < W; r++)
        if (pthread_create(&tids[r], NULL, worker_main, &args[r]) != 0)
            DL4C_ASSERT(!"pthread_create failed");
    worker_main(&args[0]);
    for (int r = 1; r < W; r++) pthread_join(tids[r], NULL);
    s = args[0].status;
    /* Report the first worker that failed on its own account (its message, not "others failed"). */
    for (int r = 0; r < W; r++)
        if (args[r].status && args[r].status != DL4C_ERR_COMM) {
            s = args[r].status;
            dl4c_error(s, "%s", args[r].message);
            break;
        }
    if (s && s == args[0].status && s == DL4C_ERR_COMM) dl4c_error(s, "%s", args[0].message);
    *state = args[0].state;
    for (int r = 1; r < W; r++) dl4c_net_free(args[r].net);
    for (int r = 0; r < W; r++) dl4c_comm_free(comms[r]);
done:
    free(comms); free(args); free(tids);
    return s;
}

dl4c_status dl4c_train_local(dl4c_net *net, const dl4c_dataset *train, const dl4c_dataset *test,
                             const dl4c_train_opts *opts, dl4c_train_state *state) {
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    const int W = conf->training.workers;
    if (!train || dl4c_dataset_count(train) == 0)
        return dl4c_error(DL4C_ERR_INVALID_ARG, "training: the training set is empty");
    if (dl4c_tensor_row_size(train->features) != dl4c_net_input_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "training: examples have %lld features, the network takes %lld",
                          (long long)dl4c_tensor_row_size(train->features), (long long)dl4c_net_input_size(net));
    if (train->labels->shape[1] != dl4c_net_output_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "training: labels have %lld columns, the network outputs %lld",
                          (long long)train->labels->shape[1], (long long)dl4c_net_output_size(net));
    if (test && (dl4c_tensor_row_size(test->features) != dl4c_net_input_size(net) ||
                 test->labels->shape[1] != dl4c_net_output_size(net)))
        return dl4c_error(DL4C_ERR_SHAPE, "training: the test set's shape does not match the network");
    local_data d = {.train = train, .test = test};
    d.shards = calloc((size_t)W, sizeof *d.shards);
    d.views = calloc((size_t)(2 * W), sizeof *d.views);
    dl4c_status s;
    if (!d.shards || !d.views) {
        s = dl4c_error(DL4C_ERR_NOMEM, "training: out of memory");
    } else {
        dl4c_train_data data = {.n_train = dl4c_dataset_count(train), .acquire = local_acquire,
                                .release = local_release, .test_shard = local_test_shard, .ctx = &d};
        s = dl4c_train_local_data(net, &data, opts, state);
    }
    free(d.shards); free(d.views);
    return s;
}

dl4c_status dl4c_net_evaluate(dl4c_net *net, const dl4c_dataset *ds, int batch, dl4c_eval **ev,
                              dl4c_regeval **rev) {
    *ev = NULL;
    if (rev) *rev = NULL;
    const int64_t n = dl4c_dataset_count(ds), in = dl4c_net_input_size(net), K = dl4c_net_output_size(net);
    if (dl4c_tensor_row_size(ds->features) != in)
        return dl4c_error(DL4C_ERR_SHAPE, "evaluation: examples have %lld features, the network takes %lld",
                          (long long)dl4c_tensor_row_size(ds->features), (long long)in);
    if (ds->labels->shape[1] != K)
        return dl4c_error(DL4C_ERR_SHAPE, "evaluation: labels have %lld columns, the network outputs %lld",
                          (long long)ds->labels->shape[1], (long long)K);
    if (batch <= 0) batch = 256;
    float *out = malloc(sizeof(float) * (size_t)(batch * K));
    if (!out) return dl4c_error(DL4C_ERR_NOMEM, "evaluation: out of memory");
    dl4c_eval *e = NULL;
    dl4c_regeval *r = NULL;
    dl4c_status s = ds->n_classes > 0 ? dl4c_eval_new((int)K, &e) : dl4c_regeval_new((int)K, &r);
    for (int64_t i = 0; !s && i < n; i += batch) {
        const int b = (int)(n - i < batch ? n - i : batch);
        s = dl4c_net_output(net, ds->features->data + i * in, b, out);
        if (!s) s = e ? dl4c_eval_add(e, out, ds->labels->data + i * K, b)
                      : dl4c_regeval_add(r, out, ds->labels->data + i * K, b);
    }
    free(out);
    if (s) { dl4c_eval_free(e); dl4c_regeval_free(r); return s; }
    *ev = e;
    if (rev) *rev = r; else dl4c_regeval_free(r);
    return DL4C_OK;
}
