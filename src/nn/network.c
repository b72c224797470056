/* MultiLayerNetwork: a stack of layers over one flat parameter buffer, one gradient buffer in
 * the same layout and one updater-state buffer. Batch-sized buffers (activations, deltas,
 * scratch) are sized once by dl4c_net_reserve and reused for every minibatch. Every buffer is
 * memory of the network's backend (src/backend); on a GPU the three flat buffers also have a
 * host mirror for the API that returns host pointers (see dl4c_net_params in nn.h). One worker
 * with several CPU threads runs a minibatch as slices side by side (see "slices" below). */
#include "nn/layer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A flat buffer in backend memory and its host mirror (one buffer on the CPU). */
typedef struct net_buf {
    float *dev;                      /* backend memory */
    float *host;                     /* host mirror (== dev when the backend uses host memory) */
    int64_t n;                       /* floats */
    bool dev_newer;                  /* the device changed it since the mirror was copied down */
    bool host_out;                   /* the mirror was handed out: copy it up at the next call */
} net_buf;

/* One slice of a minibatch: rows [r0, r0 + n), run through layers [0, end) by one thread. */
typedef struct slice {
    dl4c_net *net;
    dl4c_layer *layers;              /* net->layers, or copies writing the slice's own gradient,
                                      * saved and scratch buffers */
    const float *x;                  /* the whole minibatch's input */
    int r0, n;
    int end;                         /* the slice's layers: [0, end); the rest (the tail) run
                                      * over the whole minibatch */
    double timing[2 * DL4C_MAX_LAYERS]; /* this slice's seconds per layer, when timing */
} slice;

struct dl4c_net {
    dl4c_net_conf conf;              /* resolved copy of the configuration */
    int n_layers;                    /* layers in use */
    dl4c_layer layers[DL4C_MAX_LAYERS]; /* the stack */
    const dl4c_backend *be;          /* kernels and memory */
    net_buf params;                  /* all parameters, layer by layer: weights then bias */
    net_buf grads;                   /* gradients, same layout */
    net_buf ustate;                  /* updater state: slots x n_params */
    double *scal;                    /* backend memory: [0] loss, [1] regularization of the last score */
    bool have_score;                 /* scal holds a score */
    int64_t n_params;                /* floats in params */
    int64_t n_state;                 /* floats in ustate */
    int64_t step;                    /* updater steps taken (Adam's t) */
    int max_batch;                   /* batch the buffers below are sized for */
    float *acts[DL4C_MAX_LAYERS];    /* output of each layer, [max_batch, out_size] */
    float *delta[2];                 /* ping-pong dL/d(activation), [max_batch, max size] */
    float *saved;                    /* per-layer forward->backward scratch (one block) */
    float *scratch;                  /* shared temporary scratch */
    int64_t max_size;                /* largest per-example activation size (input included) */
    double *timing;                  /* bench/step_bench: seconds per layer added up, forward
                                      * [0, n_layers) then backward; NULL (the default): off */
    float *dout;                     /* dL/dz of the output layer, [max_batch, n_out] */
    int threads;                     /* threads set by dl4c_net_set_threads (default 1) */
    double flops;                    /* forward multiply-adds x2 per example (slice choice) */
    /* Slices of a minibatch run side by side (see slices_plan): buffers of slices 1..cap-1 */
    int slice_cap, slice_rows;       /* slices and rows per slice they are sized for */
    slice *slices;                   /* [slice_cap] */
    dl4c_layer *slice_layers;        /* [slice_cap][n_layers]: the layers with a slice's buffers */
    float *slice_grads;              /* [slice_cap - 1][n_params] */
    float *slice_saved, *slice_scratch; /* [slice_cap - 1][per-slice floats] */
    int64_t slice_saved_n, slice_scratch_n; /* per-slice floats of those two */
    slice solo;                      /* the whole minibatch as one slice */
};

const dl4c_layer_ops *dl4c_layer_ops_of(dl4c_layer_type t) {
    switch (t) {
    case DL4C_LAYER_DENSE: return &dl4c_dense_ops;
    case DL4C_LAYER_CONV2D: return &dl4c_conv2d_ops;
    case DL4C_LAYER_SUBSAMPLING: return &dl4c_subsampling_ops;
    case DL4C_LAYER_OUTPUT: return &dl4c_output_ops;
    default: return NULL;
    }
}

static bool has_params(dl4c_layer_type t) { return t != DL4C_LAYER_SUBSAMPLING; }

static dl4c_status check_nonneg(const char *path, float v) {
    if (!(v >= 0) || isinf(v))
        return dl4c_error(DL4C_ERR_CONFIG, "%s: expected a finite non-negative number, got %g", path, v);
    return DL4C_OK;
}

dl4c_status dl4c_net_conf_resolve(dl4c_net_conf *c) {
    dl4c_status s;
    if (c->device < 0 || c->device >= DL4C_DEVICE_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "device: unknown device %d (expected cpu or cuda)", (int)c->device);
    if (c->device_index < 0 || (c->device == DL4C_DEVICE_CPU && c->device_index != 0))
        return dl4c_error(DL4C_ERR_CONFIG, "device: bad device index %d for %s", c->device_index,
                          dl4c_device_str(c->device));
    if (c->updater.type < 0 || c->updater.type >= DL4C_UPDATER_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "updater.type: unknown updater %d", (int)c->updater.type);
    dl4c_updater_conf_resolve(&c->updater);
    if (!(c->updater.learning_rate > 0) || isinf(c->updater.learning_rate))
        return dl4c_error(DL4C_ERR_CONFIG, "updater.learning_rate: expected a positive number, got %g",
                          c->updater.learning_rate);
    if ((s = check_nonneg("l1", c->l1)) || (s = check_nonneg("l2", c->l2))) return s;
    if (c->activation == DL4C_ACT_DEFAULT) c->activation = DL4C_SIGMOID;
    if (c->weight_init == DL4C_INIT_DEFAULT) c->weight_init = DL4C_INIT_XAVIER;
    if (c->activation < 0 || c->activation >= DL4C_ACTIVATION_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "activation: unknown activation %d", (int)c->activation);
    if (c->weight_init < 0 || c->weight_init >= DL4C_WEIGHT_INIT_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "weight_init: unknown weight init %d", (int)c->weight_init);

    int in[3];
    dl4c_input_conf *ic = &c->input;
    if (ic->features > 0) {
        const bool resolved = ic->channels == ic->features && ic->height == 1 && ic->width == 1;
        if (!resolved && (ic->channels > 0 || ic->height > 0 || ic->width > 0))
            return dl4c_error(DL4C_ERR_CONFIG, "input: give either features or channels/height/width");
        ic->channels = ic->features; ic->height = 1; ic->width = 1;
    }
    if (ic->channels <= 0 || ic->height <= 0 || ic->width <= 0)
        return dl4c_error(DL4C_ERR_CONFIG,
                          "input: expected positive channels, height and width (or features), got %dx%dx%d",
                          ic->channels, ic->height, ic->width);
    in[0] = ic->channels; in[1] = ic->height; in[2] = ic->width;

    if (c->n_layers <= 0 || c->n_layers > DL4C_MAX_LAYERS)
        return dl4c_error(DL4C_ERR_CONFIG, "layers: expected 1..%d layers, got %d", DL4C_MAX_LAYERS,
                          c->n_layers);
    for (int i = 0; i < c->n_layers; i++) {
        dl4c_layer_conf *l = &c->layers[i];
        char path[32];
        snprintf(path, sizeof path, "layers[%d]", i);
        const dl4c_layer_ops *ops = dl4c_layer_ops_of(l->type);
        if (!ops) return dl4c_error(DL4C_ERR_CONFIG, "%s.type: missing or unknown layer type", path);
        if (l->type == DL4C_LAYER_OUTPUT && i != c->n_layers - 1)
            return dl4c_error(DL4C_ERR_CONFIG, "%s.type: an output layer must be the last layer", path);
        if (i == c->n_layers - 1 && l->type != DL4C_LAYER_OUTPUT)
            return dl4c_error(DL4C_ERR_CONFIG, "%s.type: the last layer must be an output layer, got %s",
                              path, dl4c_layer_type_str(l->type));
        if (has_params(l->type)) {
            if (l->activation == DL4C_ACT_DEFAULT)
                l->activation = l->type == DL4C_LAYER_OUTPUT ? DL4C_SOFTMAX : c->activation;
            if (l->weight_init == DL4C_INIT_DEFAULT) l->weight_init = c->weight_init;
        }
        if (l->activation < 0 || l->activation >= DL4C_ACTIVATION_COUNT)
            return dl4c_error(DL4C_ERR_CONFIG, "%s.activation: unknown activation %d", path, (int)l->activation);
        if (l->weight_init < 0 || l->weight_init >= DL4C_WEIGHT_INIT_COUNT)
            return dl4c_error(DL4C_ERR_CONFIG, "%s.weight_init: unknown weight init %d", path,
                              (int)l->weight_init);
        if (l->type != DL4C_LAYER_OUTPUT && l->loss != DL4C_LOSS_DEFAULT)
            return dl4c_error(DL4C_ERR_CONFIG, "%s.loss: only an output layer has a loss", path);
        char sub[48];
        snprintf(sub, sizeof sub, "%s.learning_rate", path);
        if ((s = check_nonneg(sub, l->learning_rate))) return s;
        snprintf(sub, sizeof sub, "%s.l1", path);
        if ((s = check_nonneg(sub, l->l1))) return s;
        snprintf(sub, sizeof sub, "%s.l2", path);
        if ((s = check_nonneg(sub, l->l2))) return s;
        int out[3];
        if ((s = ops->resolve(l, in, out, path))) return s;
        if (out[0] <= 0 || out[1] <= 0 || out[2] <= 0)
            return dl4c_error(DL4C_ERR_CONFIG, "%s: output shape %dx%dx%d is empty", path, out[0], out[1], out[2]);
        memcpy(in, out, sizeof in);
    }

    dl4c_training_conf *t = &c->training;
    if (t->epochs == 0) t->epochs = 1;
    if (t->batch_size_per_worker == 0) t->batch_size_per_worker = 32;
    if (t->workers == 0) t->workers = 1;
    if (t->averaging_frequency == 0) t->averaging_frequency = 5;
    if (t->block_momentum == 0 && t->workers > 0) t->block_momentum = 1.0f - 1.0f / (float)t->workers;
    if (t->block_learning_rate == 0) t->block_learning_rate = 1.0f;
    if (t->epochs < 0) return dl4c_error(DL4C_ERR_CONFIG, "training.epochs: expected a positive integer, got %d", t->epochs);
    if (t->batch_size_per_worker < 0)
        return dl4c_error(DL4C_ERR_CONFIG, "training.batch_size_per_worker: expected a positive integer, got %d",
                          t->batch_size_per_worker);
    if (t->workers < 0 || t->workers > 1024)
        return dl4c_error(DL4C_ERR_CONFIG, "training.workers: expected 1..1024, got %d", t->workers);
    if (t->averaging_frequency < 0)
        return dl4c_error(DL4C_ERR_CONFIG, "training.averaging_frequency: expected a positive integer, got %d",
                          t->averaging_frequency);
    if (t->prefetch < 0 || t->prefetch > 1024)
        return dl4c_error(DL4C_ERR_CONFIG, "training.prefetch: expected 0..1024, got %d", t->prefetch);
    if (t->averaging < 0 || t->averaging >= DL4C_AVERAGING_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "training.averaging: unknown mode %d", (int)t->averaging);
    if (!(t->block_momentum >= 0 && t->block_momentum < 1))
        return dl4c_error(DL4C_ERR_CONFIG, "training.block_momentum: expected a number in [0, 1), got %g",
                          t->block_momentum);
    if (!(t->block_learning_rate > 0) || isinf(t->block_learning_rate))
        return dl4c_error(DL4C_ERR_CONFIG, "training.block_learning_rate: expected a positive number, got %g",
                          t->block_learning_rate);
    return DL4C_OK;
}

static void free_batch_buffers(dl4c_net *net) {
    const dl4c_backend *be = net->be;
    for (int i = 0; i < net->n_layers; i++) { be->free(be, net->acts[i]); net->acts[i] = NULL; }
    be->free(be, net->delta[0]); be->free(be, net->delta[1]);
    be->free(be, net->saved); be->free(be, net->scratch); be->free(be, net->dout);
    net->delta[0] = net->delta[1] = net->saved = net->scratch = net->dout = NULL;
    net->max_batch = 0;
}

static void free_slices(dl4c_net *net) {
    const dl4c_backend *be = net->be;
    be->free(be, net->slice_grads); be->free(be, net->slice_saved); be->free(be, net->slice_scratch);
    dl4c_free(net->slices); dl4c_free(net->slice_layers);
    net->slice_grads = net->slice_saved = net->slice_scratch = NULL;
    net->slices = NULL;
    net->slice_layers = NULL;
    net->slice_cap = net->slice_rows = 0;
}

/* Sizes every batch-dependent buffer for batches of up to n examples. */
static dl4c_status net_reserve(dl4c_net *net, int n) {
    if (n <= net->max_batch) return DL4C_OK;
    free_batch_buffers(net);
    int64_t saved = 0, scratch = 0;
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        saved += l->ops->saved_floats(l, n);
        const int64_t s = l->ops->scratch_floats(l, n);
        if (s > scratch) scratch = s;
    }
    bool ok = true;
    const dl4c_backend *be = net->be;
    for (int i = 0; i < net->n_layers; i++)
        ok &= (net->acts[i] = be->alloc(be, sizeof(float) * (size_t)(n * net->layers[i].out_size))) != NULL;
    ok &= (net->delta[0] = be->alloc(be, sizeof(float) * (size_t)(n * net->max_size))) != NULL;
    ok &= (net->delta[1] = be->alloc(be, sizeof(float) * (size_t)(n * net->max_size))) != NULL;
    ok &= (net->saved = be->alloc(be, sizeof(float) * (size_t)(saved ? saved : 1))) != NULL;
    ok &= (net->scratch = be->alloc(be, sizeof(float) * (size_t)(scratch ? scratch : 1))) != NULL;
    ok &= (net->dout = be->alloc(be, sizeof(float) * (size_t)(n * net->layers[net->n_layers - 1].out_size))) != NULL;
    if (!ok) {
        free_batch_buffers(net);
        return dl4c_error(DL4C_ERR_NOMEM, "network: out of memory for a batch of %d", n);
    }
    int64_t off = 0;
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        l->saved = net->saved + off;
        off += l->ops->saved_floats(l, n);
        l->scratch = net->scratch;
    }
    net->max_batch = n;
    return DL4C_OK;
}

dl4c_status dl4c_net_reserve(dl4c_net *net, int max_batch) {
    if (max_batch <= 0) return dl4c_error(DL4C_ERR_INVALID_ARG, "network: batch size must be positive, got %d", max_batch);
    return net_reserve(net, max_batch);
}

static bool buf_new(dl4c_net *net, net_buf *b, int64_t n) {
    const dl4c_backend *be = net->be;
    b->n = n;
    b->dev = be->alloc(be, sizeof(float) * (size_t)(n ? n : 1));
    b->host = be->host_memory ? b->dev : dl4c_calloc(sizeof(float) * (size_t)(n ? n : 1));
    return b->dev && b->host;
}

static void buf_free(dl4c_net *net, net_buf *b) {
    if (b->host != b->dev) dl4c_free(b->host);
    net->be->free(net->be, b->dev);
    b->dev = b->host = NULL;
}

/* The host mirror, current, handed out (copied up at the next call into the network). */
static float *buf_host(dl4c_net *net, net_buf *b) {
    if (net->be->host_memory) return b->host;
    if (b->dev_newer) {
        if (net->be->bind) net->be->bind(net->be);
        net->be->download(net->be, b->host, b->dev, sizeof(float) * (size_t)b->n);
        b->dev_newer = false;
    }
    b->host_out = true;
    return b->host;
}

static void buf_up(dl4c_net *net, net_buf *b) {
    if (b->host_out) net->be->upload(net->be, b->dev, b->host, sizeof(float) * (size_t)b->n);
    b->host_out = false;
}

/* Start of every call that computes: this thread on the network's device, host mirrors the
 * caller may have written copied up. */
static void net_enter(dl4c_net *net) {
    if (net->be->host_memory) return;
    if (net->be->bind) net->be->bind(net->be);
    buf_up(net, &net->params);
    buf_up(net, &net->grads);
    buf_up(net, &net->ustate);
}

dl4c_status dl4c_net_new(const dl4c_net_conf *conf, dl4c_net **out) {
    *out = NULL;
    dl4c_net *net = dl4c_calloc(sizeof *net);
    if (!net) return dl4c_error(DL4C_ERR_NOMEM, "network: out of memory");
    net->conf = *conf;
    dl4c_status s = dl4c_net_conf_resolve(&net->conf);
    if (s) { dl4c_free(net); return s; }
    if ((s = dl4c_backend_open(net->conf.device, net->conf.device_index, net->conf.allow_tf32, &net->be))) {
        dl4c_free(net);
        return s;
    }
    net->n_layers = net->conf.n_layers;
    int in[3] = {net->conf.input.channels, net->conf.input.height, net->conf.input.width};
    int64_t off = 0;
    net->max_size = (int64_t)in[0] * in[1] * in[2];
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        l->index = i;
        l->conf = net->conf.layers[i];
        l->ops = dl4c_layer_ops_of(l->conf.type);
        l->be = net->be;
        memcpy(l->in, in, sizeof in);
        char path[32];
        snprintf(path, sizeof path, "layers[%d]", i);
        s = l->ops->resolve(&l->conf, l->in, l->out, path);
        DL4C_ASSERT(s == DL4C_OK);  /* conf_resolve already checked it */
        if (l->conf.type == DL4C_LAYER_CONV2D || l->conf.type == DL4C_LAYER_SUBSAMPLING) {
            int oh, ow;
            s = dl4c_window_resolve(&l->conf, l->in, &oh, &ow, l->pad, path);
            DL4C_ASSERT(s == DL4C_OK);
        }
        l->in_size = (int64_t)l->in[0] * l->in[1] * l->in[2];
        l->out_size = (int64_t)l->out[0] * l->out[1] * l->out[2];
        if (l->out_size > net->max_size) net->max_size = l->out_size;
        l->ops->count(&l->conf, l->in, &l->n_weights, &l->n_bias);
        l->offset = off;
        off += l->n_weights + l->n_bias;
        memcpy(in, l->out, sizeof in);
    }
    net->n_params = off;
    for (int i = 1; i < net->n_layers; i++) {   /* relu then max pooling: the pooling's backward applies relu' */
        dl4c_layer *l = &net->layers[i], *below = &net->layers[i - 1];
        if (l->conf.type == DL4C_LAYER_SUBSAMPLING && l->conf.pooling == DL4C_POOL_MAX &&
            net->be->pool_backward_saved && below->conf.type == DL4C_LAYER_CONV2D &&
            below->conf.activation == DL4C_RELU)
            l->fold_relu = below->dy_is_dz = true;
    }
    net->threads = 1;
    for (int i = 0; i < net->n_layers; i++)   /* a weight is used once per output position */
        net->flops += 2.0 * (double)net->layers[i].n_weights * net->layers[i].out[1] * net->layers[i].out[2];
    net->n_state = off * dl4c_updater_state_per_param(net->conf.updater.type);
    bool ok = buf_new(net, &net->params, off);
    ok &= buf_new(net, &net->grads, off);
    ok &= buf_new(net, &net->ustate, net->n_state);
    ok &= (net->scal = net->be->alloc(net->be, 2 * sizeof(double))) != NULL;
    if (!ok) {
        dl4c_net_free(net);
        return dl4c_error(DL4C_ERR_NOMEM, "network: out of %s memory for %lld parameters",
                          dl4c_device_str(net->conf.device), (long long)off);
    }
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        l->w = net->params.dev + l->offset;
        l->b = l->w + l->n_weights;
        l->hw = net->params.host + l->offset;
        l->hb = l->hw + l->n_weights;
        l->dw = net->grads.dev + l->offset;
        l->db = l->dw + l->n_weights;
        dl4c_rng rng = dl4c_rng_make(net->conf.seed, DL4C_STREAM_INIT, (uint64_t)i, 0);
        l->ops->init(l, &rng);
    }
    net->params.host_out = true;   /* the weights were drawn into the host mirror */
    net_enter(net);
    s = net_reserve(net, net->conf.training.batch_size_per_worker);
    if (s) { dl4c_net_free(net); return s; }
    *out = net;
    return DL4C_OK;
}

void dl4c_net_free(dl4c_net *net) {
    if (!net) return;
    if (net->be) {
        if (net->be->bind) net->be->bind(net->be);
        free_batch_buffers(net);
        free_slices(net);
        buf_free(net, &net->params);
        buf_free(net, &net->grads);
        buf_free(net, &net->ustate);
        net->be->free(net->be, net->scal);
        dl4c_backend_release(net->be);
    }
    dl4c_free(net);
}

const dl4c_net_conf *dl4c_net_conf_of(const dl4c_net *net) { return &net->conf; }
void dl4c_net_set_threads(dl4c_net *net, int threads) {
    net->threads = threads > 1 ? threads : 1;
    net->be->set_threads(net->be, net->threads);
}
int64_t dl4c_net_input_size(const dl4c_net *net) { return net->layers[0].in_size; }
int64_t dl4c_net_output_size(const dl4c_net *net) { return net->layers[net->n_layers - 1].out_size; }
float *dl4c_net_params(dl4c_net *net) { return buf_host(net, &net->params); }
float *dl4c_net_gradients(dl4c_net *net) { return buf_host(net, &net->grads); }
float *dl4c_net_updater_state(dl4c_net *net) { return buf_host(net, &net->ustate); }
void dl4c_net_sync_host(dl4c_net *net) {
    buf_host(net, &net->params);
    buf_host(net, &net->grads);
    buf_host(net, &net->ustate);
}
dl4c_device dl4c_net_device(const dl4c_net *net, int *index) {
    if (index) *index = net->be->device_index;
    return net->be->device;
}
int64_t dl4c_net_n_params(const dl4c_net *net) { return net->n_params; }
int64_t dl4c_net_n_updater_state(const dl4c_net *net) { return net->n_state; }
int64_t dl4c_net_step(const dl4c_net *net) { return net->step; }
void dl4c_net_set_step(dl4c_net *net, int64_t step) { net->step = step; }
int dl4c_net_n_layers(const dl4c_net *net) { return net->n_layers; }

void dl4c_net_set_timing(dl4c_net *net, double *seconds) { net->timing = seconds; }

/* ---- slices: a minibatch run as slices side by side ----
 * One worker with several threads on the CPU (a backend with `parallel`) runs a minibatch as
 * slices of rows, one per thread, each through the whole forward and backward on its thread,
 * instead of splitting every op over the threads: a step of small layers (the seed's LeNet at
 * batch 32: its dense layer is 2.6 MFLOP) then meets the other threads twice, not at every op,
 * and activations stay on the core that made them (only weights and gradients cross, once per
 * step). The loss and the output layer's dL/dz are
 * computed over the whole minibatch between the two (the same floats as one slice). Each slice
 * writes its own gradient (slice 0 into the network's); they are added in slice order after
 * the backward, so a step's result depends on the number of slices (the threads), never on
 * which thread ran which slice. The gradients cost n_params floats per slice to add, so slices
 * are used only when each one has SLICE_WORK_PER_PARAM forward FLOPs per parameter (LeNet at
 * batch 32 and 2 threads: 345; the MLP of examples/, 784-1000-500-10 at batch 64: 64, whose
 * large products split well over the threads anyway). Measured on the 2-core VM, training images/s
 * on 2 threads, slices / split ops: LeNet 29.7k / 25.2k, wide CNN 6.3k / 6.0k, MLP (forced
 * slices) 15.3k / 20.8k; inference at batch 256 gains 5-13% on all three.
 *
 * The tail: with slices of fewer than TAIL_MAX_ROWS rows (training), the dense and output layers
 * after the last other layer run over the whole minibatch after the slices' forward (and before
 * their backward), their products split over the threads by the backend (each thread a share of
 * the output columns, all rows). A slice's share of
 * LeNet's dense layer is only 1.3 MFLOP, yet each slice had to read all of W (half of it just
 * written by the other core's updater) and prepare it for the product (a scan for subnormal
 * weights and a scaled copy): 23 us a slice, against 17.5-19 us for the whole minibatch split
 * (each thread preparing half of W), and the tail's gradients are the one-thread floats (no sum
 * of slice gradients). Each slice prefetches the tail's first weights when its own layers are
 * done: the first slice to get there waits for the others anyway (at LeNet's dense layer the
 * slices are 14 us apart on average). Measured on the 2-core VM (bench/run.py, 2 threads): the
 * dense layer's share of the sgemm ceiling, forward / backward, LeNet 31/35% -> 35-37/39-40%,
 * the wide CNN 33/33% -> 43-44/48-49%; training images/s on 2 threads (step_bench, interleaved
 * with the previous code) +3% for LeNet, +2.5% for the wide CNN. With slices of 128 rows
 * (inference at batch 256) the slices did better: LeNet -6%, the MLP -13%, the wide CNN -6%
 * with the tail. */
#define SLICE_MIN_ROWS 8
#define SLICE_WORK_PER_PARAM 150.0
#define TAIL_MAX_ROWS 64

/* The first layer of the tail: the trailing run of dense and output layers (n_layers when the
 * last layer is of another type; 0 when all are). */
static int tail_start(const dl4c_net *net) {
    int t = net->n_layers;
    while (t > 0 && (net->layers[t - 1].conf.type == DL4C_LAYER_DENSE ||
                     net->layers[t - 1].conf.type == DL4C_LAYER_OUTPUT))
        t--;
    return t;
}

/* The layers slices of n / S rows run: [0, slice_end) (the rest is the tail). */
static int slice_end(const dl4c_net *net, int n, int S) {
    return S > 1 && (n + S - 1) / S < TAIL_MAX_ROWS ? tail_start(net) : net->n_layers;
}

static int slice_count(const dl4c_net *net, int n) {
    if (!net->be->parallel || net->threads < 2) return 1;
    int S = net->threads < n / SLICE_MIN_ROWS ? net->threads : n / SLICE_MIN_ROWS;
    while (S > 1 && net->flops * (double)(n / S) < SLICE_WORK_PER_PARAM * (double)net->n_params) S--;
    if (S > 1 && slice_end(net, n, S) == 0) S = 1;   /* all tail: the ops split over the threads */
    return S > 1 ? S : 1;
}

int dl4c_net_slices(const dl4c_net *net, int n) { return slice_count(net, n); }

/* Buffers for S slices of up to `rows` rows each (slice 0 uses the network's). */
static bool slices_reserve(dl4c_net *net, int S, int rows) {
    if (S <= net->slice_cap && rows <= net->slice_rows) return true;
    if (S < net->slice_cap) S = net->slice_cap;
    if (rows < net->slice_rows) rows = net->slice_rows;
    free_slices(net);
    int64_t saved = 0, scratch = 0;
    for (int i = 0; i < net->n_layers; i++) {
        const dl4c_layer *l = &net->layers[i];
        saved += l->ops->saved_floats(l, rows);
        const int64_t t = l->ops->scratch_floats(l, rows);
        if (t > scratch) scratch = t;
    }
    const dl4c_backend *be = net->be;
    net->slices = dl4c_calloc(sizeof(slice) * (size_t)S);
    net->slice_layers = dl4c_calloc(sizeof(dl4c_layer) * (size_t)(S * net->n_layers));
    net->slice_grads = be->alloc(be, sizeof(float) * (size_t)((S - 1) * net->n_params + 1));
    net->slice_saved = be->alloc(be, sizeof(float) * (size_t)((S - 1) * saved + 1));
    net->slice_scratch = be->alloc(be, sizeof(float) * (size_t)((S - 1) * scratch + 1));
    if (!net->slices || !net->slice_layers || !net->slice_grads || !net->slice_saved || !net->slice_scratch) {
        free_slices(net);
        return false;
    }
    net->slice_cap = S;
    net->slice_rows = rows;
    net->slice_saved_n = saved;
    net->slice_scratch_n = scratch;
    return true;
}

/* The slices of a minibatch x of n (backend memory): their count in *S. One slice (the whole
 * minibatch, the network's own buffers) when slices do not pay or their buffers cannot be had. */
static slice *slices_plan(dl4c_net *net, const float *x, int n, int *S) {
    int k = slice_count(net, n);
    if (k > 1 && !slices_reserve(net, k, (n + k - 1) / k)) k = 1;
    slice *h = k > 1 ? net->slices : &net->solo;
    const int end = slice_end(net, n, k);
    for (int s = 0; s < k; s++) {
        slice *t = &h[s];
        t->net = net;
        t->end = end;
        t->x = x;
        t->r0 = (int)((int64_t)n * s / k);
        t->n = (int)((int64_t)n * (s + 1) / k) - t->r0;
        memset(t->timing, 0, sizeof t->timing);
        t->layers = net->layers;
        if (s == 0) continue;
        t->layers = net->slice_layers + (int64_t)s * net->n_layers;
        memcpy(t->layers, net->layers, sizeof(dl4c_layer) * (size_t)net->n_layers);
        float *grads = net->slice_grads + (s - 1) * net->n_params;
        float *saved = net->slice_saved + (s - 1) * net->slice_saved_n;
        for (int i = 0; i < net->n_layers; i++) {
            dl4c_layer *l = &t->layers[i];
            l->dw = grads + l->offset;
            l->db = l->dw + l->n_weights;
            l->saved = saved;
            saved += l->ops->saved_floats(l, net->slice_rows);
            l->scratch = net->slice_scratch + (s - 1) * net->slice_scratch_n;
        }
    }
    *S = k;
    return h;
}

static void slice_forward(void *ctx, int s) {
    slice *h = (slice *)ctx + s;
    dl4c_net *net = h->net;
    const float *in = h->x + h->r0 * h->layers[0].in_size;
    for (int i = 0; i < h->end; i++) {
        dl4c_layer *l = &h->layers[i];
        float *y = net->acts[i] + h->r0 * l->out_size;
        const double t0 = net->timing ? dl4c_now() : 0;
        l->ops->forward(l, in, y, h->n);
        if (net->timing) h->timing[i] += dl4c_now() - t0;
        in = y;
    }
    if (h->end < net->n_layers && net->be->prefetch) {   /* the tail's first weights (see above) */
        const dl4c_layer *l = &net->layers[h->end];
        net->be->prefetch(net->be, l->w, sizeof(float) * (size_t)(l->n_weights + l->n_bias));
    }
}

/* The backward of the slice's layers over its rows, given dL/dy of its last layer: net->dout
 * (the output layer's dL/dz) without a tail, else the tail's dL/dx, in the slice's own rows of
 * the delta buffer tail_backward wrote last (see tail_backward); dL/d(activation) ping-pongs in
 * the slice's own rows of the two delta buffers. */
static void slice_backward(void *ctx, int s) {
    slice *h = (slice *)ctx + s;
    dl4c_net *net = h->net;
    const int last = h->end - 1;
    float *buf[2] = {net->delta[0] + h->r0 * net->max_size, net->delta[1] + h->r0 * net->max_size};
    float *d = net->dout + h->r0 * h->layers[last].out_size;
    int k0 = 0;
    if (h->end < net->n_layers) {
        k0 = (net->n_layers - h->end) & 1;
        d = buf[k0 ^ 1];
    }
    for (int i = last, k = k0; i >= 0; i--, k ^= 1) {
        dl4c_layer *l = &h->layers[i];
        const float *in = i ? net->acts[i - 1] + h->r0 * h->layers[i - 1].out_size : h->x + h->r0 * l->in_size;
        const double t0 = net->timing ? dl4c_now() : 0;
        l->ops->backward(l, in, net->acts[i] + h->r0 * l->out_size, d, i ? buf[k] : NULL, h->n);
        if (net->timing) h->timing[net->n_layers + i] += dl4c_now() - t0;
        d = buf[k];
    }
}

static void slices_run(dl4c_net *net, slice *h, int S, void (*fn)(void *ctx, int s)) {
    if (S == 1) fn(h, 0);
    else net->be->parallel(net->be, S, fn, h);
}

/* Adds the slices' layer seconds [lo, hi) to net->timing: per layer the slowest slice's (the
 * slices run at the same time). */
static void slices_timing(dl4c_net *net, const slice *h, int S, int lo, int hi) {
    if (!net->timing) return;
    for (int j = lo; j < hi; j++) {
        double m = 0;
        for (int s = 0; s < S; s++) m = h[s].timing[j] > m ? h[s].timing[j] : m;
        net->timing[j] += m;
    }
}

/* The tail's forward (layers [from, n_layers)) over the whole minibatch of n, on the caller;
 * the backend splits each op over the threads. */
static void tail_forward(dl4c_net *net, int from, int n) {
    for (int i = from; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        const double t0 = net->timing ? dl4c_now() : 0;
        l->ops->forward(l, net->acts[i - 1], net->acts[i], n);
        if (net->timing) net->timing[i] += dl4c_now() - t0;
    }
}

/* The tail's backward from net->dout down to layer `from`, whose dL/dx ends in
 * net->delta[(n_layers - 1 - from) & 1], each slice's rows where the slice keeps its own
 * (r0 * max_size on): the product writes them packed, then they are moved, last slice first
 * (a slice's rows only move up, past the packed rows of the slices before it). */
static void tail_backward(dl4c_net *net, const slice *h, int S, int from, int n) {
    float *d = net->dout;
    for (int i = net->n_layers - 1, k = 0; i >= from; i--, k ^= 1) {
        dl4c_layer *l = &net->layers[i];
        const double t0 = net->timing ? dl4c_now() : 0;
        l->ops->backward(l, net->acts[i - 1], net->acts[i], d, net->delta[k], n);
        if (i == from)
            for (int s = S - 1; s > 0; s--)
                memmove(net->delta[k] + h[s].r0 * net->max_size, net->delta[k] + h[s].r0 * l->in_size,
                        sizeof(float) * (size_t)(h[s].n * l->in_size));
        if (net->timing) net->timing[net->n_layers + i] += dl4c_now() - t0;
        d = net->delta[k];
    }
}

/* grads[0, n) += the gradients of slices 1..S-1 (the slices' layers' parameters come first),
 * added in slice order, in chunks of SUM_CHUNK. */
#define SUM_CHUNK 8192
typedef struct grad_sum { dl4c_net *net; int S; int64_t n; } grad_sum;

static void grad_sum_task(void *ctx, int t) {
    const grad_sum *g = ctx;
    const dl4c_net *net = g->net;
    const int64_t lo = (int64_t)t * SUM_CHUNK, hi = lo + SUM_CHUNK < g->n ? lo + SUM_CHUNK : g->n;
    float *dst = net->grads.dev;
    for (int s = 1; s < g->S; s++) {
        const float *src = net->slice_grads + (s - 1) * net->n_params;
        for (int64_t k = lo; k < hi; k++) dst[k] += src[k];
    }
}

/* The forward of a minibatch x [n] in backend memory, as slices; returns them (count in *S). */
static slice *forward(dl4c_net *net, const float *x, int n, int *S) {
    slice *h = slices_plan(net, x, n, S);
    slices_run(net, h, *S, slice_forward);
    slices_timing(net, h, *S, 0, h->end);
    tail_forward(net, h->end, n);
    return h;
}

static float layer_l1(const dl4c_net *net, const dl4c_layer *l) { return l->conf.l1 > 0 ? l->conf.l1 : net->conf.l1; }
static float layer_l2(const dl4c_net *net, const dl4c_layer *l) { return l->conf.l2 > 0 ? l->conf.l2 : net->conf.l2; }

/* scal[1] = 0.5 l2 |W|^2 + l1 |W|_1 over every layer's weights (biases are not regularized,
 * as DL4J), layer by layer. */
static void reg_score(const dl4c_net *net) {
    const dl4c_backend *be = net->be;
    be->zero(be, net->scal + 1, sizeof(double));
    for (int i = 0; i < net->n_layers; i++) {
        const dl4c_layer *l = &net->layers[i];
        const float l1 = layer_l1(net, l), l2 = layer_l2(net, l);
        if (l1 == 0 && l2 == 0) continue;
        be->reg_score(be, l->w, l->n_weights, l1, l2, net->scal + 1);
    }
}

/* Reads scal back: the loss and the score (loss + regularization) as float. */
static float read_score(dl4c_net *net, double *loss) {
    double v[2];
    net->be->download(net->be, v, net->scal, sizeof v);
    if (loss) *loss = v[0];
    return (float)(v[0] + v[1]);
}

static dl4c_status check_batch(dl4c_net *net, const float *x, int n) {
    if (n <= 0 || !x) return dl4c_error(DL4C_ERR_INVALID_ARG, "network: empty batch (n = %d)", n);
    return net_reserve(net, n);
}

/* The minibatch in backend memory (the CPU uses the caller's arrays). */
static dl4c_status batch_in(dl4c_net *net, const float *x, const float *y, int n, const float **dx,
                            const float **dy) {
    return net->be->batch_in(net->be, x, n * dl4c_net_input_size(net), y,
                             y ? n * dl4c_net_output_size(net) : 0, dx, y ? dy : NULL);
}

dl4c_status dl4c_net_output(dl4c_net *net, const float *x, int n, float *out) {
    dl4c_status s = check_batch(net, x, n);
    if (s) return s;
    net_enter(net);
    const float *dx;
    if ((s = batch_in(net, x, NULL, n, &dx, NULL))) return s;
    int S;
    forward(net, dx, n, &S);
    net->be->download(net->be, out, net->acts[net->n_layers - 1],
                      sizeof(float) * (size_t)(n * dl4c_net_output_size(net)));
    return DL4C_OK;
}

dl4c_status dl4c_net_score(dl4c_net *net, const float *x, const float *y, int n, float *score) {
    dl4c_status s = check_batch(net, x, n);
    if (s) return s;
    net_enter(net);
    const float *dx, *dy;
    if ((s = batch_in(net, x, y, n, &dx, &dy))) return s;
    int S;
    forward(net, dx, n, &S);
    const dl4c_layer *o = &net->layers[net->n_layers - 1];
    dl4c_output_loss(o, net->acts[net->n_layers - 1], dy, n, net->scal);
    reg_score(net);
    net->have_score = true;
    *score = read_score(net, NULL);
    return DL4C_OK;
}

dl4c_status dl4c_net_last_score(dl4c_net *net, float *score) {
    if (!net->have_score) return dl4c_error(DL4C_ERR_INVALID_ARG, "network: no score yet (fit a minibatch first)");
    if (net->be->bind) net->be->bind(net->be);
    *score = read_score(net, NULL);
    return DL4C_OK;
}

dl4c_status dl4c_net_compute_gradient(dl4c_net *net, const float *x, const float *y, int n, float *score) {
    dl4c_status s = check_batch(net, x, n);
    if (s) return s;
    net_enter(net);
    const float *dx, *dy;
    if ((s = batch_in(net, x, y, n, &dx, &dy))) return s;
    y = dy;
    int S;
    slice *h = forward(net, dx, n, &S);
    const int last = net->n_layers - 1;
    dl4c_layer *o = &net->layers[last];
    dl4c_output_loss(o, net->acts[last], y, n, net->scal);
    reg_score(net);
    net->have_score = true;
    /* The CPU always reads the loss (for the NaN check below); a GPU only when asked. */
    double loss = 0;
    const bool read = score || net->be->host_memory;
    if (read) {
        const float sc = read_score(net, &loss);
        if (score) *score = sc;
    }
    dl4c_output_delta(o, net->acts[last], y, n, net->dout);
    tail_backward(net, h, S, h->end, n);
    slices_run(net, h, S, slice_backward);
    slices_timing(net, h, S, net->n_layers, net->n_layers + h->end);
    if (S > 1) {
        grad_sum g = {.net = net, .S = S, .n = h->end < net->n_layers ? net->layers[h->end].offset : net->n_params};
        net->be->parallel(net->be, (int)((g.n + SUM_CHUNK - 1) / SUM_CHUNK), grad_sum_task, &g);
    }
    /* Regularization gradients on weights: g += l2 w + l1 sign(w). */
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        const float l1 = layer_l1(net, l), l2 = layer_l2(net, l);
        if (l1 == 0 && l2 == 0) continue;
        net->be->reg_grad(net->be, l->w, l->dw, l->n_weights, l1, l2);
    }
    net->grads.dev_newer = true;
    if (read && !isfinite(loss))
        return dl4c_error(DL4C_ERR_NUMERIC, "network: the loss is %s (layer %d, %s output)",
                          isnan(loss) ? "NaN" : "infinite", last, dl4c_layer_type_str(o->conf.type));
    return DL4C_OK;
}

void dl4c_net_apply_update(dl4c_net *net) {
    net_enter(net);
    net->step++;
    const int slots = dl4c_updater_state_per_param(net->conf.updater.type);
    for (int i = 0; i < net->n_layers; i++) {
        dl4c_layer *l = &net->layers[i];
        const int64_t n = l->n_weights + l->n_bias;
        if (!n) continue;
        const float lr = l->conf.learning_rate > 0 ? l->conf.learning_rate : net->conf.updater.learning_rate;
        float *state = slots ? net->ustate.dev + l->offset : NULL;
        net->be->updater_step(net->be, &net->conf.updater, lr, net->step, net->params.dev + l->offset,
                              net->grads.dev + l->offset, state, n, net->n_params);
    }
    net->params.dev_newer = true;
    net->ustate.dev_newer = slots > 0;
}

dl4c_status dl4c_net_fit(dl4c_net *net, const float *x, const float *y, int n, float *score) {
    dl4c_status s = dl4c_net_compute_gradient(net, x, y, n, score);
    if (s) return s;
    dl4c_net_apply_update(net);
    return DL4C_OK;
}

int dl4c_net_n_param_tensors(const dl4c_net *net) {
    int t = 0;
    for (int i = 0; i < net->n_layers; i++) t += net->layers[i].n_weights + net->layers[i].n_bias > 0 ? 2 : 0;
    return t;
}

/* Finds layer and tensor kind (0 weight, 1 bias) of the i-th parameter tensor. */
static const dl4c_layer *param_tensor_layer(const dl4c_net *net, int i, int *kind) {
    for (int k = 0; k < net->n_layers; k++) {
        const dl4c_layer *l = &net->layers[k];
        if (l->n_weights + l->n_bias == 0) continue;
        if (i < 2) { *kind = i; return l; }
        i -= 2;
    }
    DL4C_ASSERT(!"parameter tensor index out of range");
    return NULL;
}

dl4c_param_info dl4c_net_param_tensor(const dl4c_net *net, int i) {
    int kind;
    const dl4c_layer *l = param_tensor_layer(net, i, &kind);
    dl4c_param_info p = {0};
    snprintf(p.name, sizeof p.name, "layers.%d.%s", l->index, kind ? "bias" : "weight");
    l->ops->param_shape(l, kind, &p.ndim, p.shape, &p.transposed);
    p.offset = l->offset + (kind ? l->n_weights : 0);
    p.size = kind ? l->n_bias : l->n_weights;
    return p;
}

void dl4c_net_param_export(const dl4c_net *net, int i, const float *flat, float *file) {
    const dl4c_param_info p = dl4c_net_param_tensor(net, i);
    const float *src = flat + p.offset;
    if (!p.transposed) { memcpy(file, src, sizeof(float) * (size_t)p.size); return; }
    const int64_t rows = p.shape[0], cols = p.shape[1];   /* file [out, in], internal [in, out] */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) file[r * cols + c] = src[c * rows + r];
}

void dl4c_net_param_import(const dl4c_net *net, int i, const float *file, float *flat) {
    const dl4c_param_info p = dl4c_net_param_tensor(net, i);
    float *dst = flat + p.offset;
    if (!p.transposed) { memcpy(dst, file, sizeof(float) * (size_t)p.size); return; }
    const int64_t rows = p.shape[0], cols = p.shape[1];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * rows + r] = file[r * cols + c];
}

dl4c_layer_info dl4c_net_layer_info(const dl4c_net *net, int i) {
    const dl4c_layer *l = &net->layers[i];
    dl4c_layer_info info = {.type = l->conf.type, .n_params = l->n_weights + l->n_bias};
    for (int d = 0; d < 3; d++) { info.in_shape[d] = l->in[d]; info.out_shape[d] = l->out[d]; }
    return info;
}
