/* The layer interface: every layer type is one file (dense.c, conv2d.c, subsampling.c,
 * output.c) exporting one dl4c_layer_ops table. The network owns the parameter, gradient and
 * activation buffers; a layer gets views into them. */
#ifndef DL4C_NN_LAYER_H
#define DL4C_NN_LAYER_H

#include "backend/backend.h"
#include "dl4c/nn.h"

typedef struct dl4c_layer dl4c_layer;

typedef struct dl4c_layer_ops {
    /* Fills the type's defaults into *c, checks its fields against the input shape in[3]
     * (c, h, w of one example) and writes the output shape to out[3]. `path` names the layer
     * in messages ("layers[2]"). Returns DL4C_ERR_CONFIG with a message on failure. */
    dl4c_status (*resolve)(dl4c_layer_conf *c, const int in[3], int out[3], const char *path);
    /* Number of weights and biases for a resolved conf and input shape. */
    void (*count)(const dl4c_layer_conf *c, const int in[3], int64_t *n_weights, int64_t *n_bias);
    /* Draws the weights (fan-in/fan-out per the type) and sets biases to bias_init, into the
     * host mirror hw/hb (the network copies it to the device). */
    void (*init)(dl4c_layer *l, dl4c_rng *rng);
    /* Floats of scratch kept from forward to backward for a batch of n (e.g. im2col). */
    int64_t (*saved_floats)(const dl4c_layer *l, int n);
    /* Floats of temporary scratch for a batch of n (shared by all layers). */
    int64_t (*scratch_floats)(const dl4c_layer *l, int n);
    /* x [n, in] -> y [n, out]. */
    void (*forward)(dl4c_layer *l, const float *x, float *y, int n);
    /* Given the output y and dy = dL/dy (overwritten), accumulates nothing: sets dw/db to this
     * batch's gradient and, if dx != NULL, writes dL/dx [n, in]. */
    void (*backward)(dl4c_layer *l, const float *x, const float *y, float *dy, float *dx, int n);
    /* File layout of parameter tensor t (0 = weight, 1 = bias) for model files. */
    void (*param_shape)(const dl4c_layer *l, int t, int *ndim, int64_t shape[4], bool *transposed);
} dl4c_layer_ops;

struct dl4c_layer {
    int index;                   /* position in the network */
    dl4c_layer_conf conf;        /* resolved configuration */
    const dl4c_layer_ops *ops;   /* the type's functions */
    const dl4c_backend *be;      /* kernels */
    int in[3], out[3];           /* c, h, w of one example at input and output */
    int64_t in_size, out_size;   /* per-example element counts */
    int64_t n_weights, n_bias;   /* parameter counts */
    int64_t offset;              /* offset of the weights in the flat buffers (bias follows) */
    float *w, *b;                /* views into the parameter buffer (backend memory) */
    float *dw, *db;              /* views into the gradient buffer (backend memory) */
    float *hw, *hb;              /* the same views into the host mirror (init draws here) */
    float *saved;                /* forward->backward scratch owned by the network */
    float *scratch;              /* temporary scratch shared by all layers */
    int pad[4];                  /* resolved padding: top, left, bottom, right */
    /* A relu layer followed by max pooling: the pooling's backward multiplies its dx by
     * relu'(x) (fold_relu: the backend's pool_*_saved with relu) and the relu layer's
     * backward takes its dy as dL/dz (dy_is_dz): one pass over the activations fewer. */
    bool fold_relu, dy_is_dz;
};

extern const dl4c_layer_ops dl4c_dense_ops, dl4c_conv2d_ops, dl4c_subsampling_ops, dl4c_output_ops;
/* The ops table of a layer type (NULL for DL4C_LAYER_NONE). */
const dl4c_layer_ops *dl4c_layer_ops_of(dl4c_layer_type t);

/* Dense helpers shared with the output layer. */
void dl4c_dense_forward_linear(dl4c_layer *l, const float *x, float *y, int n);
void dl4c_dense_backward_linear(dl4c_layer *l, const float *x, const float *dz, float *dx, int n);
void dl4c_dense_init(dl4c_layer *l, dl4c_rng *rng);
void dl4c_dense_count(const dl4c_layer_conf *c, const int in[3], int64_t *n_weights, int64_t *n_bias);
void dl4c_dense_param_shape(const dl4c_layer *l, int t, int *ndim, int64_t shape[4], bool *transposed);

/* Resolves kernel/stride/padding/mode of a window layer (conv2d, subsampling) against the
 * input shape: output height/width and padding {top, left, bottom, right}. */
dl4c_status dl4c_window_resolve(dl4c_layer_conf *c, const int in[3], int *oh, int *ow, int pad[4],
                                const char *path);
/* The window geometry of layer l for a batch of n. */
dl4c_window dl4c_layer_window(const dl4c_layer *l, int n);

/* Draws n weights for the given init, fan-in and fan-out. */
void dl4c_weights_init(dl4c_weight_init init, float *w, int64_t n, double fan_in, double fan_out,
                       dl4c_rng *rng);

/* Output layer: the loss (into *loss, a double in backend memory) and the gradient with
 * respect to the pre-activation z. */
void dl4c_output_loss(const dl4c_layer *l, const float *y, const float *t, int n, double *loss);
void dl4c_output_delta(const dl4c_layer *l, const float *y, const float *t, int n, float *dz);

/* Per-layer timing for bench/step_bench: forward adds layer i's seconds to seconds[i],
 * backward to seconds[n_layers + i] (the output layer's loss gradient is not counted).
 * NULL turns it off (the default; then it costs one test per layer). */
void dl4c_net_set_timing(dl4c_net *net, double *seconds);
/* The slices a minibatch of n runs as (network.c): 1, or one per thread when one worker has
 * several CPU threads and the network's layers have work enough per parameter. With slices, a
 * layer's timing above is the slowest slice's. */
int dl4c_net_slices(const dl4c_net *net, int n);

#endif
