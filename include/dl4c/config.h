/* dl4c config: network configurations (dl4c_net_conf) from and to JSON and YAML, the
 * counterpart of DL4J's MultiLayerConfiguration.toJson()/fromJson()/fromYaml().
 *
 * The schema uses the names of the C struct fields (include/dl4c/nn.h):
 *
 *   seed: 123                      # non-negative integer
 *   updater: adagrad               # a name, or {type, learning_rate, momentum, rho,
 *                                  #             beta1, beta2, epsilon}
 *   learning_rate: 0.1             # shortcut for updater.learning_rate
 *   l1: 0, l2: 0.0005              # weight regularization
 *   activation: sigmoid            # default for layers
 *   weight_init: xavier            # default for layers
 *   input: {channels: 1, height: 28, width: 28}   # or {features: 784}, or [1, 28, 28]
 *   layers:                        # 1 to DL4C_MAX_LAYERS layer objects
 *     - {type: conv2d, kernel: 5, stride: 1, n_out: 20, activation: relu}
 *     - {type: subsampling, pooling: max, kernel: 2, stride: 2}
 *     - {type: output, n_out: 10, activation: softmax, loss: nll}
 *   training: {epochs, batch_size_per_worker, workers, averaging_frequency, prefetch,
 *              save_updater, averaging (plain/bmuf), block_momentum, block_learning_rate}
 *
 * Layer fields: type (dense, conv2d, subsampling, output; DL4J names such as "convolution",
 * "DenseLayer", "OutputLayer", "pooling" are accepted), name, n_out, kernel, stride,
 * padding (two integers, or one for both), conv_mode, pooling, activation, loss,
 * weight_init, bias_init, learning_rate, l1, l2. A field the layer type does not use is an
 * error. null (YAML ~ or an empty value) means "the default" for any field, like a zero in
 * the C struct. Enum names are case-insensitive.
 *
 * Every problem is a DL4C_ERR_CONFIG whose message (dl4c_error_message()) starts with the
 * origin, when one is given, and names the place: "lenet.json:3:14: ..." for syntax errors,
 * "lenet.yaml: layers[2].kernel: expected two positive integers, got [5]" for the rest.
 * Unknown keys are errors, with a suggestion ("did you mean ...?") when one is close.
 * After validation the parse functions call dl4c_net_conf_resolve(), which fills the defaults
 * and checks the shapes. On failure *out is left untouched. */
#ifndef DL4C_CONFIG_H
#define DL4C_CONFIG_H

#include <stddef.h>

#include "dl4c/core.h"
#include "dl4c/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest layer name accepted, in bytes (without the terminating NUL). */
#define DL4C_CONFIG_NAME_MAX 31

/* Parses a JSON configuration text[0..len) into *out (resolved). `origin` (a file name, or
 * NULL) prefixes every message. */
dl4c_status dl4c_config_parse_json(const char *text, size_t len, const char *origin,
                                   dl4c_net_conf *out);

/* The same for YAML (YAML 1.2 core schema: quoted scalars are always strings). */
dl4c_status dl4c_config_parse_yaml(const char *text, size_t len, const char *origin,
                                   dl4c_net_conf *out);

/* Reads and parses a file: .json as JSON, .yaml/.yml as YAML, anything else by its content
 * (a text starting with '{' is JSON). A file that cannot be read is DL4C_ERR_IO. */
dl4c_status dl4c_config_load(const char *path, dl4c_net_conf *out);

/* Writes *conf as JSON with every field explicit (null for a zero that means "default"),
 * readable by dl4c_config_parse_json: parsing the text of a resolved configuration gives
 * back an identical struct. *json_out is a NUL-terminated string the caller frees with
 * free(). DL4C_ERR_INVALID_ARG for a conf that cannot be written (an enum out of range, a
 * non-finite float, a seed above INT64_MAX). */
dl4c_status dl4c_config_to_json(const dl4c_net_conf *conf, char **json_out);

/* The name of a layer, or NULL when it has none. */
const char *dl4c_config_layer_name(const dl4c_layer_conf *layer);

/* Releases the strings a parse function stored in *conf (layer names) and clears them.
 * A no-op while names are stored inside dl4c_layer_conf; call it anyway when done with a
 * parsed configuration. Never call it on a conf whose names point at your own strings. */
void dl4c_config_free_strings(dl4c_net_conf *conf);

#ifdef __cplusplus
}
#endif
#endif
