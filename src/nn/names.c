/* Name tables for the nn enums: one table each, checked against the _COUNT value. */
#include "dl4c/nn.h"

#include <string.h>

#define NAME_TABLE(fn_str, fn_parse, type, count, ...)                                   \
    static const char *const fn_str##_names[] = {__VA_ARGS__};                            \
    _Static_assert(sizeof fn_str##_names / sizeof fn_str##_names[0] == count, #fn_str);  \
    const char *fn_str(type v) {                                                          \
        return ((int)v >= 0 && (int)v < (int)count && fn_str##_names[v]) ? fn_str##_names[v] : "?"; \
    }                                                                                     \
    bool fn_parse(const char *s, type *out) {                                             \
        for (int i = 0; i < (int)count; i++)                                              \
            if (fn_str##_names[i] && strcasecmp(s, fn_str##_names[i]) == 0) {             \
                *out = (type)i;                                                           \
                return true;                                                              \
            }                                                                             \
        return false;                                                                     \
    }

NAME_TABLE(dl4c_layer_type_str, dl4c_layer_type_parse, dl4c_layer_type, DL4C_LAYER_TYPE_COUNT,
           NULL, "dense", "conv2d", "subsampling", "output")
NAME_TABLE(dl4c_activation_str, dl4c_activation_parse, dl4c_activation, DL4C_ACTIVATION_COUNT,
           NULL, "identity", "relu", "leakyrelu", "sigmoid", "tanh", "softmax")
NAME_TABLE(dl4c_loss_str, dl4c_loss_parse, dl4c_loss, DL4C_LOSS_COUNT,
           NULL, "nll", "mcxent", "xent", "mse")
NAME_TABLE(dl4c_weight_init_str, dl4c_weight_init_parse, dl4c_weight_init, DL4C_WEIGHT_INIT_COUNT,
           NULL, "xavier", "xavier_uniform", "relu", "normal", "uniform", "zero")
NAME_TABLE(dl4c_pooling_str, dl4c_pooling_parse, dl4c_pooling, DL4C_POOLING_COUNT, "max", "avg")
NAME_TABLE(dl4c_conv_mode_str, dl4c_conv_mode_parse, dl4c_conv_mode, DL4C_CONV_MODE_COUNT,
           "truncate", "same", "strict")
NAME_TABLE(dl4c_averaging_str, dl4c_averaging_parse, dl4c_averaging, DL4C_AVERAGING_COUNT,
           "plain", "bmuf")
