/* config: every kind of bad input gives DL4C_ERR_CONFIG (or DL4C_ERR_IO) and a message that
 * names the place and the problem. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dl4c/config.h"

#define DATA(name) DL4C_SOURCE_DIR "/tests/config/data/" name

static dl4c_net_conf conf;   /* reused by every check (tests run one at a time) */

static void assert_message_has(const char *want) {
    const char *msg = dl4c_error_message();
    if (!strstr(msg, want)) fail_msg("message \"%s\"\n  lacks \"%s\"", msg, want);
}

/* Parses `text` as JSON with origin "t.json" and expects DL4C_ERR_CONFIG with `want` in the
 * message. */
static void json_fails(const char *text, const char *want) {
    dl4c_error_clear();
    dl4c_status s = dl4c_config_parse_json(text, strlen(text), "t.json", &conf);
    if (s != DL4C_ERR_CONFIG)
        fail_msg("expected DL4C_ERR_CONFIG for %s, got %s (%s)", text, dl4c_status_str(s),
                 dl4c_error_message());
    assert_message_has(want);
}

static void yaml_fails(const char *text, const char *want) {
    dl4c_error_clear();
    dl4c_status s = dl4c_config_parse_yaml(text, strlen(text), "t.yaml", &conf);
    if (s != DL4C_ERR_CONFIG)
        fail_msg("expected DL4C_ERR_CONFIG for %s, got %s (%s)", text, dl4c_status_str(s),
                 dl4c_error_message());
    assert_message_has(want);
}

/* A valid network around one layer (JSON object text). */
static void layer_fails(const char *layer, const char *want) {
    char text[1024];
    snprintf(text, sizeof text,
             "{\"input\": {\"channels\": 1, \"height\": 28, \"width\": 28},\n"
             " \"layers\": [{\"type\": \"dense\", \"n_out\": 4}, %s,\n"
             "            {\"type\": \"output\", \"n_out\": 2, \"activation\": \"softmax\"}]}",
             layer);
    json_fails(text, want);
}

static void test_json_syntax(void **state) {
    /* Missing comma after "dense": jansson reports line 3. */
    json_fails("{\"seed\": 1,\n"
               " \"layers\": [\n"
               "   {\"type\": \"dense\" \"n_out\": 3}]}\n",
               "t.json:3:");
    assert_message_has("t.json:3:27: '}' expected near '\"n_out\"'");
    json_fails("{\"seed\": 1,}", "t.json:1:");
    json_fails("", "t.json:");
    json_fails("{\"seed\": 1, \"seed\": 2, \"layers\": []}", "duplicate");
    /* Through a file: the path is the origin. */
    assert_int_equal(dl4c_config_load(DATA("bad_syntax.json"), &conf), DL4C_ERR_CONFIG);
    assert_message_has("tests/config/data/bad_syntax.json:4:");
}

static void test_yaml_syntax(void **state) {
    yaml_fails("seed: 1\n"
               "layers:\n"
               "  - type: dense\n"
               "   n_out: 3\n",
               "t.yaml:4:");
    yaml_fails("layers: [1, 2\n", "t.yaml:");
    yaml_fails("seed: 1\nseed: 2\n", "t.yaml:2:1: duplicate key \"seed\"");
    yaml_fails("seed: *nope\n", "t.yaml:1:7: unknown alias *nope");
    yaml_fails("seed: 1\n---\nseed: 2\n", "t.yaml:2:1: a second YAML document");
    yaml_fails("", "t.yaml: empty configuration");
    yaml_fails("[1, 2]: 3\n", "mapping keys must be strings");
    yaml_fails("seed: !!int abc\n", "t.yaml:1:7: \"abc\" is not an integer");
    yaml_fails("seed: 99999999999999999999\n", "integer 99999999999999999999 is out of range");
    assert_int_equal(dl4c_config_load(DATA("bad_indent.yaml"), &conf), DL4C_ERR_CONFIG);
    assert_message_has("tests/config/data/bad_indent.yaml:6:");
}

static void test_missing_file(void **state) {
    assert_int_equal(dl4c_config_load(DATA("no_such_file.json"), &conf), DL4C_ERR_IO);
    assert_message_has("no_such_file.json");
    assert_message_has("No such file");
}

static void test_top_level(void **state) {
    json_fails("[1, 2]", "t.json: expected an object (a mapping) at the top level, got [1,2]");
    json_fails("{\"seed\": 1}", "t.json: layers: missing");
    yaml_fails("seed: 1\nlayers:\n", "t.yaml: layers: missing");
    json_fails("{\"layers\": []}", "layers: expected at least one layer, got []");
    json_fails("{\"layers\": {\"type\": \"dense\"}}", "layers: expected an array of layers, got {");
    json_fails("{\"seed\": -1, \"layers\": []}", "seed: expected a non-negative integer, got -1");
    json_fails("{\"seed\": \"123\", \"layers\": []}", "seed: expected a non-negative integer, got \"123\"");
    yaml_fails("seed: '123'\nlayers: []\n", "seed: expected a non-negative integer, got \"123\"");
    /* No origin: the message starts with the path. */
    dl4c_status s = dl4c_config_parse_json("{\"seed\": 1.5}", 13, NULL, &conf);
    assert_int_equal(s, DL4C_ERR_CONFIG);
    assert_string_equal(dl4c_error_message(), "seed: expected a non-negative integer, got 1.5");
    s = dl4c_config_parse_json("{\"seed\": ", 9, NULL, &conf);
    assert_int_equal(s, DL4C_ERR_CONFIG);
    assert_message_has("line 1, column ");
}

static void test_wrong_types(void **state) {
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining:\n  workers: two\n",
               "t.yaml: training.workers: expected a positive integer, got \"two\"");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {workers: 0}\n",
               "training.workers: expected a positive integer, got 0");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {save_updater: yes}\n",
               "training.save_updater: expected true or false, got \"yes\"");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {prefetch: -1}\n",
               "training.prefetch: expected a non-negative integer, got -1");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: 5\n",
               "training: expected an object, got 5");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {block_momentum: 1.5}\n",
               "training.block_momentum: expected a number between 0 and 1 (exclusive), got 1.5");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nl2: -0.1\n",
               "l2: expected a non-negative number, got -0.1");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nl2: .inf\n",
               "l2: expected a non-negative number, got \".inf\"");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nlearning_rate: 0\n",
               "learning_rate: expected a positive number, got 0 (leave the field out for the default)");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nupdater: {type: adam, beta2: 1}\n",
               "updater.beta2: expected a number between 0 and 1 (exclusive), got 1");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nupdater: 5\n",
               "updater: expected an updater name (sgd, nesterovs, adagrad, rmsprop, adam) or an object");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nupdater: {type: sgd, learning_rate: 0.1}\n"
               "learning_rate: 0.2\n",
               "learning_rate: 0.2 conflicts with updater.learning_rate 0.1");
    layer_fails("{\"type\": \"dense\", \"n_out\": 2.5}",
                "layers[1].n_out: expected a positive integer, got 2.5");
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"name\": 7}",
                "layers[1].name: expected a string of at most 31 characters, got 7");
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"name\": \"a_very_long_layer_name_beyond_limit\"}",
                "layers[1].name: expected a string of at most 31 characters");
    layer_fails("5", "layers[1]: expected a layer object with a \"type\", got 5");
}

static void test_input(void **state) {
    json_fails("{\"input\": {\"channels\": 1, \"height\": 28}, \"layers\": []}",
               "input: channels, height and width go together (missing \"width\")");
    json_fails("{\"input\": [1, 28], \"layers\": []}",
               "input: expected [channels, height, width] (three positive integers), got [1,28]");
    json_fails("{\"input\": {\"channels\": 1, \"height\": 28, \"width\": 28, \"features\": 100}, \"layers\": []}",
               "input.features: 100 does not match channels x height x width = 1 x 28 x 28");
    json_fails("{\"input\": {}, \"layers\": []}",
               "input: expected {channels, height, width} or {features}, got {}");
    json_fails("{\"input\": {\"chanels\": 1}, \"layers\": []}",
               "input.chanels: unknown key (did you mean \"channels\"?)");
    json_fails("{\"input\": \"28x28\", \"layers\": []}", "input: expected {channels, height, width}");
}

static void test_unknown_keys(void **state) {
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"activaton\": \"relu\"}",
                "t.json: layers[1].activaton: unknown key (did you mean \"activation\"?)");
    layer_fails("{\"type\": \"dense\", \"nOut\": 3}",
                "layers[1].nOut: unknown key (did you mean \"n_out\"?)");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 3, \"kernel_size\": 3}",
                "layers[1].kernel_size: unknown key (did you mean \"kernel\"?)");
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"dropout\": 0.5}",
                "layers[1].dropout: unknown key (expected one of: type, name, n_out, activation,");
    json_fails("{\"seeds\": 1, \"layers\": []}", "t.json: seeds: unknown key (did you mean \"seed\"?)");
    json_fails("{\"lr\": 1, \"layers\": []}", "lr: unknown key (did you mean \"learning_rate\"?)");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntrainig: {epochs: 1}\n",
               "trainig: unknown key (did you mean \"training\"?)");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {epoch: 1}\n",
               "training.epoch: unknown key (did you mean \"epochs\"?)");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nupdater: {type: adam, beta_1: 0.9}\n",
               "updater.beta_1: unknown key (did you mean \"beta1\"?)");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nfoo: 1\n",
               "foo: unknown key (expected one of: seed, updater, learning_rate, l1, l2, activation, "
               "weight_init, input, layers, training, device, allow_tf32)");
}

static void test_bad_enums(void **state) {
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"activation\": \"rlu\"}",
                "layers[1].activation: unknown activation \"rlu\" (did you mean \"relu\"?); "
                "expected one of: identity, relu, leakyrelu, sigmoid, tanh, softmax");
    layer_fails("{\"type\": \"lstm\", \"n_out\": 3}",
                "layers[1].type: unknown layer type \"lstm\"; expected one of: dense, conv2d, "
                "subsampling, output");
    layer_fails("{\"n_out\": 3}",
                "layers[1].type: missing (expected one of: dense, conv2d, subsampling, output)");
    layer_fails("{\"type\": \"subsampling\", \"pooling\": \"min\"}",
                "layers[1].pooling: unknown pooling \"min\" (did you mean \"max\"?); expected one of: max, avg");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 2, \"kernel\": 3, \"conv_mode\": \"valid\"}",
                "layers[1].conv_mode: unknown conv mode \"valid\"; expected one of: truncate, same, strict");
    layer_fails("{\"type\": \"output\", \"n_out\": 2, \"loss\": 3}",
                "layers[1].loss: expected one of: nll, mcxent, xent, mse (a string), got 3");
    layer_fails("{\"type\": \"dense\", \"n_out\": 2, \"weight_init\": \"xavier_normal\"}",
                "unknown weight init \"xavier_normal\"");
    yaml_fails("layers: [{type: dense, n_out: 3}]\nupdater: adamw\n",
               "updater: unknown updater \"adamw\" (did you mean \"adam\"?); expected one of: sgd, "
               "nesterovs, adagrad, rmsprop, adam");
    yaml_fails("layers: [{type: dense, n_out: 3}]\ntraining: {averaging: sync}\n",
               "training.averaging: unknown averaging \"sync\"; expected one of: plain, bmuf");
}

static void test_bad_kernels(void **state) {
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": [5]}",
                "t.json: layers[1].kernel: expected two positive integers, got [5]");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": [0, 5]}",
                "layers[1].kernel: expected two positive integers, got [0,5]");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": [5, 5, 5]}",
                "layers[1].kernel: expected two positive integers, got [5,5,5]");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": \"5x5\"}",
                "layers[1].kernel: expected two positive integers, got \"5x5\"");
    layer_fails("{\"type\": \"subsampling\", \"kernel\": 2, \"stride\": -2}",
                "layers[1].stride: expected two positive integers, got -2");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": 3, \"padding\": [-1, 0]}",
                "layers[1].padding: expected two non-negative integers, got [-1,0]");
}

static void test_unused_fields(void **state) {
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"kernel\": [5, 5]}",
                "t.json: layers[1].kernel: not used by a dense layer (a dense layer takes: type, "
                "name, n_out, activation, weight_init, bias_init, learning_rate, l1, l2)");
    layer_fails("{\"type\": \"dense\", \"n_out\": 3, \"loss\": \"mse\"}",
                "layers[1].loss: not used by a dense layer");
    layer_fails("{\"type\": \"conv2d\", \"n_out\": 3, \"kernel\": 3, \"pooling\": \"max\"}",
                "layers[1].pooling: not used by a conv2d layer");
    layer_fails("{\"type\": \"subsampling\", \"n_out\": 3}",
                "layers[1].n_out: not used by a subsampling layer");
    layer_fails("{\"type\": \"subsampling\", \"activation\": \"relu\"}",
                "layers[1].activation: not used by a subsampling layer");
}

/* Problems only dl4c_net_conf_resolve (src/nn) can see: shapes. */
static void test_resolve_errors(void **state) {
    json_fails("{\"input\": [1, 28, 28],"
               " \"layers\": [{\"type\": \"conv2d\", \"n_out\": 4, \"kernel\": 30},"
               "             {\"type\": \"output\", \"n_out\": 2, \"activation\": \"softmax\"}]}",
               "t.json: layers[0].kernel");
}

static void test_to_json_rejects(void **state) {
    dl4c_net_conf *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->n_layers = 1;
    c->layers[0] = dl4c_dense(.n_out = 3, .activation = (dl4c_activation)99);
    char *json = NULL;
    assert_int_equal(dl4c_config_to_json(c, &json), DL4C_ERR_INVALID_ARG);
    assert_null(json);
    assert_message_has("layers[0].activation: activation value 99 is out of range");
    c->layers[0] = dl4c_dense(.n_out = 3, .bias_init = 1.0f / 0.0f);
    assert_int_equal(dl4c_config_to_json(c, &json), DL4C_ERR_INVALID_ARG);
    assert_message_has("layers[0].bias_init: inf is not a finite number");
    c->layers[0].type = DL4C_LAYER_NONE;
    assert_int_equal(dl4c_config_to_json(c, &json), DL4C_ERR_INVALID_ARG);
    assert_message_has("layers[0]");
    free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_syntax),
        cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_top_level),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_input),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_bad_enums),
        cmocka_unit_test(test_bad_kernels),
        cmocka_unit_test(test_unused_fields),
        cmocka_unit_test(test_resolve_errors),
        cmocka_unit_test(test_to_json_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
