/* dl4c neural networks: layer configurations (built with designated initializers, like the
 * seed's Java builder) and the MultiLayerNetwork.
 *
 *   dl4c_net_conf conf = {
 *       .seed = 123, .l2 = 0.0005f,
 *       .updater = { .type = DL4C_ADAGRAD, .learning_rate = 0.1f },
 *       .weight_init = DL4C_INIT_XAVIER,
 *       .input = { .channels = 1, .height = 28, .width = 28 },
 *       .n_layers = 6,
 *       .layers = {
 *           dl4c_conv2d(.kernel = {5, 5}, .n_out = 20, .activation = DL4C_RELU),
 *           dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}),
 *           dl4c_conv2d(.kernel = {5, 5}, .stride = {2, 2}, .n_out = 50, .activation = DL4C_RELU),
 *           dl4c_subsampling(.pooling = DL4C_POOL_MAX, .kernel = {2, 2}),
 *           dl4c_dense(.n_out = 200, .activation = DL4C_RELU),
 *           dl4c_output(.n_out = 10, .activation = DL4C_SOFTMAX, .loss = DL4C_LOSS_NLL),
 *       },
 *   };
 *
 * Zero in any field means "the default" (listed beside each field), so an initializer names
 * only what it changes. */
#ifndef DL4C_NN_H
#define DL4C_NN_H

#include "dl4c/core.h"
#include "dl4c/tensor.h"
#include "dl4c/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DL4C_MAX_LAYERS 64

typedef enum dl4c_layer_type {
    DL4C_LAYER_NONE = 0,
    DL4C_LAYER_DENSE,        /* y = act(x W + b) on the flattened input */
    DL4C_LAYER_CONV2D,       /* y = act(conv(x, W) + b), NCHW */
    DL4C_LAYER_SUBSAMPLING,  /* max or average pooling, no parameters */
    DL4C_LAYER_OUTPUT,       /* dense + activation + loss */
    DL4C_LAYER_TYPE_COUNT
} dl4c_layer_type;
const char *dl4c_layer_type_str(dl4c_layer_type t);   /* "dense", "conv2d", ... */
bool dl4c_layer_type_parse(const char *s, dl4c_layer_type *out);

typedef enum dl4c_activation {
    DL4C_ACT_DEFAULT = 0,   /* inherit the network's activation (DL4J's default: sigmoid) */
    DL4C_IDENTITY,          /* y = x */
    DL4C_RELU,              /* y = max(0, x) */
    DL4C_LEAKYRELU,         /* y = x > 0 ? x : alpha x, alpha = 0.01 */
    DL4C_SIGMOID,           /* y = 1 / (1 + exp(-x)) */
    DL4C_TANH,              /* y = tanh(x) */
    DL4C_SOFTMAX,           /* y_i = exp(x_i) / sum_j exp(x_j) over the features of one example */
    DL4C_ACTIVATION_COUNT
} dl4c_activation;
const char *dl4c_activation_str(dl4c_activation a);   /* "relu", ... */
bool dl4c_activation_parse(const char *s, dl4c_activation *out);

typedef enum dl4c_loss {
    DL4C_LOSS_DEFAULT = 0,  /* NLL for softmax, XENT for sigmoid, MSE otherwise */
    DL4C_LOSS_NLL,          /* negative log-likelihood = multi-class cross-entropy, mean over batch */
    DL4C_LOSS_MCXENT,       /* the same as NLL (DL4J keeps both names) */
    DL4C_LOSS_XENT,         /* binary cross-entropy, summed over outputs, mean over batch */
    DL4C_LOSS_MSE,          /* mean over outputs of (y - t)^2, mean over batch */
    DL4C_LOSS_COUNT
} dl4c_loss;
const char *dl4c_loss_str(dl4c_loss l);
bool dl4c_loss_parse(const char *s, dl4c_loss *out);

typedef enum dl4c_weight_init {
    DL4C_INIT_DEFAULT = 0,      /* inherit the network's (default xavier) */
    DL4C_INIT_XAVIER,           /* normal, variance 2 / (fan_in + fan_out) (DL4J) */
    DL4C_INIT_XAVIER_UNIFORM,   /* uniform +-sqrt(6 / (fan_in + fan_out)) */
    DL4C_INIT_RELU,             /* He: normal, variance 2 / fan_in */
    DL4C_INIT_NORMAL,           /* normal, variance 1 / fan_in (DL4J's NORMAL) */
    DL4C_INIT_UNIFORM,          /* uniform +-1/sqrt(fan_in) (DL4J's UNIFORM) */
    DL4C_INIT_ZERO,             /* all zero */
    DL4C_WEIGHT_INIT_COUNT
} dl4c_weight_init;
const char *dl4c_weight_init_str(dl4c_weight_init w);
bool dl4c_weight_init_parse(const char *s, dl4c_weight_init *out);

typedef enum dl4c_pooling {
    DL4C_POOL_MAX = 0,      /* max over the window (default) */
    DL4C_POOL_AVG,          /* mean over the window (divides by kh*kw, padding counted, as PyTorch) */
    DL4C_POOLING_COUNT
} dl4c_pooling;
const char *dl4c_pooling_str(dl4c_pooling p);
bool dl4c_pooling_parse(const char *s, dl4c_pooling *out);

typedef enum dl4c_conv_mode {
    DL4C_CONV_TRUNCATE = 0, /* out = floor((in + 2 pad - k) / s) + 1 (DL4J's Truncate, default) */
    DL4C_CONV_SAME,         /* out = ceil(in / s), padding chosen (extra cell at bottom/right) */
    DL4C_CONV_STRICT,       /* like truncate, but (in + 2 pad - k) must divide by s */
    DL4C_CONV_MODE_COUNT
} dl4c_conv_mode;
const char *dl4c_conv_mode_str(dl4c_conv_mode m);
bool dl4c_conv_mode_parse(const char *s, dl4c_conv_mode *out);

/* One layer's configuration. Fields a type does not use must stay zero (validation says so). */
typedef struct dl4c_layer_conf {
    dl4c_layer_type type;        /* set by the dl4c_dense(...) etc. macros */
    int n_out;                   /* dense/output: units; conv2d: channels out */
    int kernel[2];               /* conv2d/subsampling: {kh, kw}; subsampling default {2, 2} */
    int stride[2];               /* default {1, 1} for conv2d, = kernel for subsampling */
    int padding[2];              /* {ph, pw}, default {0, 0}; ignored in SAME mode */
    dl4c_conv_mode conv_mode;    /* conv2d/subsampling: truncate (default), same, strict */
    dl4c_pooling pooling;        /* subsampling: max (default) or avg */
    dl4c_activation activation;  /* dense/conv2d/output; default: network's */
    dl4c_loss loss;              /* output only */
    dl4c_weight_init weight_init;/* default: network's */
    float bias_init;             /* initial bias value (default 0) */
    float learning_rate;         /* > 0 overrides the network's learning rate for this layer */
    float l1, l2;                /* > 0 override the network's l1/l2 for this layer's weights */
    char name[32];               /* optional label shown by summaries */
} dl4c_layer_conf;

#define dl4c_dense(...)       ((dl4c_layer_conf){ .type = DL4C_LAYER_DENSE, __VA_ARGS__ })
#define dl4c_conv2d(...)      ((dl4c_layer_conf){ .type = DL4C_LAYER_CONV2D, __VA_ARGS__ })
#define dl4c_subsampling(...) ((dl4c_layer_conf){ .type = DL4C_LAYER_SUBSAMPLING, __VA_ARGS__ })
#define dl4c_output(...)      ((dl4c_layer_conf){ .type = DL4C_LAYER_OUTPUT, __VA_ARGS__ })

/* The shape of one example at the input: channels x height x width (images), or
 * channels = height = 1 and width = number of features, or set .features for flat input. */
typedef struct dl4c_input_conf {
    int channels, height, width;  /* image input (NCHW) */
    int features;                 /* flat input: n features (instead of c/h/w) */
} dl4c_input_conf;

typedef enum dl4c_averaging {
    DL4C_AVG_PLAIN = 0,     /* parameter averaging (DL4J's ParameterAveragingTrainingMaster) */
    DL4C_AVG_BMUF,          /* blockwise model-update filtering (Chen & Huo 2016) */
    DL4C_AVERAGING_COUNT
} dl4c_averaging;
const char *dl4c_averaging_str(dl4c_averaging a);
bool dl4c_averaging_parse(const char *s, dl4c_averaging *out);

/* Training settings (the config's "training" section; `dl4c train` flags override them). */
typedef struct dl4c_training_conf {
    int epochs;                  /* default 1 */
    int batch_size_per_worker;   /* examples per minibatch per worker, default 32 */
    int workers;                 /* data-parallel workers, default 1 */
    int averaging_frequency;     /* minibatches per worker between averagings, default 5 */
    int prefetch;                /* minibatches prepared ahead by a thread, default 0 */
    bool save_updater;           /* average and keep updater state too (default false) */
    dl4c_averaging averaging;    /* plain (default) or bmuf */
    float block_momentum;        /* bmuf: default 1 - 1/workers */
    float block_learning_rate;   /* bmuf: default 1 */
} dl4c_training_conf;

typedef struct dl4c_net_conf {
    uint64_t seed;                  /* seeds init, shuffling, partitioning (default 0) */
    dl4c_updater_conf updater;      /* default sgd, learning rate 0.1 */
    float l1, l2;                   /* regularization of weights (not biases), default 0 */
    dl4c_activation activation;     /* default for layers (default sigmoid, as DL4J) */
    dl4c_weight_init weight_init;   /* default for layers (default xavier) */
    dl4c_input_conf input;          /* shape of one example */
    int n_layers;                   /* number of entries used in layers[] */
    dl4c_layer_conf layers[DL4C_MAX_LAYERS];
    dl4c_training_conf training;    /* used by dl4c_train and the command line */
    dl4c_device device;             /* where the network runs: cpu (default) or cuda */
    int device_index;               /* cuda:N (default 0) */
    bool allow_tf32;                /* cuda: TF32 tensor-core math in products and convolutions
                                       (default off, so results match the CPU within rounding) */
} dl4c_net_conf;

/* Fills zero fields with their defaults and checks the whole configuration, inferring each
 * layer's input shape from the one before. On failure the message names the field path
 * ("layers[2].kernel: ...") and the problem. Idempotent. */
dl4c_status dl4c_net_conf_resolve(dl4c_net_conf *conf);

/* ---- MultiLayerNetwork ---- */
typedef struct dl4c_net dl4c_net;   /* opaque */

/* Builds and initialises a network (weights drawn from conf->seed) on conf->device. The conf
 * is copied. A CUDA device in a build without CUDA, or on a machine without a GPU, fails with
 * DL4C_ERR_UNSUPPORTED ("no CUDA device available"). */
dl4c_status dl4c_net_new(const dl4c_net_conf *conf, dl4c_net **out);
void dl4c_net_free(dl4c_net *net);
const dl4c_net_conf *dl4c_net_conf_of(const dl4c_net *net);

/* Number of layers. */
int dl4c_net_n_layers(const dl4c_net *net);
/* Sizes the batch buffers for minibatches of up to max_batch examples (done once; a larger
 * batch later grows them, a smaller one reuses them). */
dl4c_status dl4c_net_reserve(dl4c_net *net, int max_batch);

/* Sets the number of BLAS threads this network's products use (default 1). */
void dl4c_net_set_threads(dl4c_net *net, int threads);

/* Shape of one example at the input and output (per-example element counts). */
int64_t dl4c_net_input_size(const dl4c_net *net);
int64_t dl4c_net_output_size(const dl4c_net *net);

/* One step of training on a minibatch: x is [n, input_size], y is [n, output_size] (one-hot
 * for classification). Returns the score before the step (loss + regularization) in *score. */
dl4c_status dl4c_net_fit(dl4c_net *net, const float *x, const float *y, int n, float *score);
/* Forward only, inference mode: out is [n, output_size]. */
dl4c_status dl4c_net_output(dl4c_net *net, const float *x, int n, float *out);
/* Loss + regularization on a minibatch, without changing anything. */
dl4c_status dl4c_net_score(dl4c_net *net, const float *x, const float *y, int n, float *score);
/* Forward + backward: fills the gradient buffer (mean over the batch, regularization
 * included) and returns the score; no parameter change. */
dl4c_status dl4c_net_compute_gradient(dl4c_net *net, const float *x, const float *y, int n,
                                      float *score);
/* Applies the updater to the current gradient (one step). */
void dl4c_net_apply_update(dl4c_net *net);

/* The flat buffers: parameters, gradients (same layout), updater state, in host memory.
 * On the CPU they are the buffers the network computes with. On a GPU they are host mirrors:
 * each getter first copies the device buffer down if the device changed it since, and what
 * the caller writes through the pointer is copied up at the next call into the network
 * (fit, output, score, ...). A pointer kept across such calls goes stale on a GPU: get it
 * again, or call dl4c_net_sync_host after the calls and before reading or writing it. */
float *dl4c_net_params(dl4c_net *net);
float *dl4c_net_gradients(dl4c_net *net);
float *dl4c_net_updater_state(dl4c_net *net);
/* Makes all three host buffers current and hands them to the caller as the getters do (the
 * next call into the network copies them up). A no-op on the CPU. */
void dl4c_net_sync_host(dl4c_net *net);
/* The device the network runs on, and its index (cuda:N). */
dl4c_device dl4c_net_device(const dl4c_net *net, int *index);
/* Reads the score of the last dl4c_net_fit / compute_gradient (loss + regularization). On a
 * GPU a fit called with score == NULL does not wait for the step; this waits and reads. */
dl4c_status dl4c_net_last_score(dl4c_net *net, float *score);
int64_t dl4c_net_n_params(const dl4c_net *net);
int64_t dl4c_net_n_updater_state(const dl4c_net *net);
/* Updater step counter (Adam's t); part of the updater state for averaging and saving. */
int64_t dl4c_net_step(const dl4c_net *net);
void dl4c_net_set_step(dl4c_net *net, int64_t step);

/* Per-layer view for summaries and model files. */
typedef struct dl4c_param_info {
    char name[64];                   /* PyTorch state_dict name, e.g. "layers.0.weight" */
    int ndim;                        /* dimensions of the file layout */
    int64_t shape[4];                /* file layout: conv [out,in,kh,kw], dense [out,in], bias [out] */
    int64_t offset;                  /* offset in the flat buffer */
    int64_t size;                    /* elements */
    bool transposed;                 /* internal layout is the transpose of the file's 2-D layout */
} dl4c_param_info;
int dl4c_net_n_param_tensors(const dl4c_net *net);
dl4c_param_info dl4c_net_param_tensor(const dl4c_net *net, int i);
/* Copies between the flat buffer and the file layout of tensor i. */
void dl4c_net_param_export(const dl4c_net *net, int i, const float *flat, float *file_layout);
void dl4c_net_param_import(const dl4c_net *net, int i, const float *file_layout, float *flat);

typedef struct dl4c_layer_info {
    dl4c_layer_type type;
    int64_t in_shape[3];    /* c, h, w of one example at the input */
    int64_t out_shape[3];   /* c, h, w of one example at the output (dense: n, 1, 1) */
    int64_t n_params;
} dl4c_layer_info;
dl4c_layer_info dl4c_net_layer_info(const dl4c_net *net, int layer);

#ifdef __cplusplus
}
#endif
#endif
