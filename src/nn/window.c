/* Window geometry shared by conv2d and subsampling: output size and padding per mode.
 *   truncate: out = floor((in + 2p - k) / s) + 1
 *   strict:   the same, and (in + 2p - k) must divide by s
 *   same:     out = ceil(in / s); total pad = max(0, (out-1) s + k - in), top = total / 2 */
#include "nn/layer.h"

static dl4c_status pair_check(const char *path, const char *field, const int v[2], int min) {
    if (v[0] < min || v[1] < min)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.%s: expected two integers >= %d, got [%d, %d]", path,
                          field, min, v[0], v[1]);
    return DL4C_OK;
}

dl4c_status dl4c_window_resolve(dl4c_layer_conf *c, const int in[3], int *oh, int *ow, int pad[4],
                                const char *path) {
    dl4c_status s;
    if (c->conv_mode < 0 || c->conv_mode >= DL4C_CONV_MODE_COUNT)
        return dl4c_error(DL4C_ERR_CONFIG, "%s.conv_mode: unknown mode %d", path, (int)c->conv_mode);
    if ((s = pair_check(path, "kernel", c->kernel, 1))) return s;
    if ((s = pair_check(path, "stride", c->stride, 1))) return s;
    if ((s = pair_check(path, "padding", c->padding, 0))) return s;
    const int dims[2] = {in[1], in[2]};
    int o[2];
    for (int d = 0; d < 2; d++) {
        const int k = c->kernel[d], st = c->stride[d];
        if (c->conv_mode == DL4C_CONV_SAME) {
            o[d] = (dims[d] + st - 1) / st;
            int total = (o[d] - 1) * st + k - dims[d];
            if (total < 0) total = 0;
            pad[d] = total / 2;           /* top / left */
            pad[d + 2] = total - total / 2; /* bottom / right */
            continue;
        }
        const int span = dims[d] + 2 * c->padding[d] - k;
        if (span < 0)
            return dl4c_error(DL4C_ERR_CONFIG,
                              "%s.kernel: kernel %dx%d is larger than its input %dx%d (padding %dx%d)",
                              path, c->kernel[0], c->kernel[1], in[1], in[2], c->padding[0],
                              c->padding[1]);
        if (c->conv_mode == DL4C_CONV_STRICT && span % st != 0)
            return dl4c_error(DL4C_ERR_CONFIG,
                              "%s.stride: strict mode: (input %d + 2*padding %d - kernel %d) = %d is "
                              "not divisible by stride %d", path, dims[d], c->padding[d], k, span, st);
        o[d] = span / st + 1;
        pad[d] = c->padding[d];
        pad[d + 2] = (o[d] - 1) * st + k - dims[d] - c->padding[d];  /* cells read past the end */
        if (pad[d + 2] < 0) pad[d + 2] = 0;
    }
    *oh = o[0];
    *ow = o[1];
    return DL4C_OK;
}

dl4c_window dl4c_layer_window(const dl4c_layer *l, int n) {
    return (dl4c_window){
        .n = n, .c = l->in[0], .h = l->in[1], .w = l->in[2],
        .kh = l->conf.kernel[0], .kw = l->conf.kernel[1],
        .sh = l->conf.stride[0], .sw = l->conf.stride[1],
        .pt = l->pad[0], .pl = l->pad[1],
        .oh = l->out[1], .ow = l->out[2],
    };
}
