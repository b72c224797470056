/* config: the examples, JSON/YAML equivalence, round trips through dl4c_config_to_json,
 * accepted spellings and YAML scalar rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "dl4c/config.h"

#define EXAMPLE(name) DL4C_SOURCE_DIR "/examples/" name

static void assert_ok_msg(dl4c_status s) {
    if (s != DL4C_OK) fail_msg("%s: %s", dl4c_status_str(s), dl4c_error_message());
}

/* Asserts two confs hold the same values: names compared as strings, everything else
 * byte for byte. */
static void assert_conf_equal(const dl4c_net_conf *a, const dl4c_net_conf *b) {
    assert_int_equal(a->n_layers, b->n_layers);
    dl4c_net_conf *ca = malloc(sizeof *ca), *cb = malloc(sizeof *cb);
    assert_non_null(ca);
    assert_non_null(cb);
    memcpy(ca, a, sizeof *ca);
    memcpy(cb, b, sizeof *cb);
    for (int i = 0; i < DL4C_MAX_LAYERS; i++) {
        const char *na = dl4c_config_layer_name(&a->layers[i]);
        const char *nb = dl4c_config_layer_name(&b->layers[i]);
        if (na || nb) {
            assert_non_null(na);
            assert_non_null(nb);
            assert_string_equal(na, nb);
        }
        memset((void *)&ca->layers[i].name, 0, sizeof ca->layers[i].name);
        memset((void *)&cb->layers[i].name, 0, sizeof cb->layers[i].name);
    }
    assert_memory_equal(&ca->updater, &cb->updater, sizeof ca->updater);
    assert_memory_equal(&ca->input, &cb->input, sizeof ca->input);
    assert_memory_equal(&ca->training, &cb->training, sizeof ca->training);
    for (int i = 0; i < ca->n_layers; i++)
        assert_memory_equal(&ca->layers[i], &cb->layers[i], sizeof ca->layers[i]);
    assert_memory_equal(ca, cb, sizeof *ca);
    free(ca);
    free(cb);
}

static void check_lenet(const dl4c_net_conf *c) {
    assert_int_equal(c->seed, 123);
    assert_int_equal(c->updater.type, DL4C_ADAGRAD);
    assert_float_equal(c->updater.learning_rate, 0.1f, 0);
    assert_float_equal(c->l2, 0.0005f, 0);
    assert_float_equal(c->l1, 0.0f, 0);
    assert_int_equal(c->weight_init, DL4C_INIT_XAVIER);
    assert_int_equal(c->input.channels, 1);
    assert_int_equal(c->input.height, 28);
    assert_int_equal(c->input.width, 28);
    assert_int_equal(c->n_layers, 6);

    const dl4c_layer_conf *l = c->layers;
    assert_int_equal(l[0].type, DL4C_LAYER_CONV2D);
    assert_int_equal(l[0].kernel[0], 5);
    assert_int_equal(l[0].kernel[1], 5);
    assert_int_equal(l[0].stride[0], 1);
    assert_int_equal(l[0].stride[1], 1);
    assert_int_equal(l[0].n_out, 20);
    assert_int_equal(l[0].activation, DL4C_RELU);

    assert_int_equal(l[1].type, DL4C_LAYER_SUBSAMPLING);
    assert_int_equal(l[1].pooling, DL4C_POOL_MAX);
    assert_int_equal(l[1].kernel[0], 2);
    assert_int_equal(l[1].kernel[1], 2);
    assert_int_equal(l[1].stride[0], 2);
    assert_int_equal(l[1].stride[1], 2);
    assert_int_equal(l[1].n_out, 0);

    assert_int_equal(l[2].type, DL4C_LAYER_CONV2D);
    assert_int_equal(l[2].kernel[0], 5);
    assert_int_equal(l[2].stride[0], 2);
    assert_int_equal(l[2].stride[1], 2);
    assert_int_equal(l[2].n_out, 50);
    assert_int_equal(l[2].activation, DL4C_RELU);

    assert_int_equal(l[3].type, DL4C_LAYER_SUBSAMPLING);
    assert_int_equal(l[3].pooling, DL4C_POOL_MAX);
    assert_int_equal(l[3].kernel[0], 2);

    assert_int_equal(l[4].type, DL4C_LAYER_DENSE);
    assert_int_equal(l[4].n_out, 200);
    assert_int_equal(l[4].activation, DL4C_RELU);
    assert_int_equal(l[4].kernel[0], 0);

    assert_int_equal(l[5].type, DL4C_LAYER_OUTPUT);
    assert_int_equal(l[5].n_out, 10);
    assert_int_equal(l[5].activation, DL4C_SOFTMAX);
    assert_int_equal(l[5].loss, DL4C_LOSS_NLL);

    assert_int_equal(c->training.epochs, 5);
    assert_int_equal(c->training.batch_size_per_worker, 32);
    assert_int_equal(c->training.workers, 2);
    assert_int_equal(c->training.averaging_frequency, 5);
    assert_int_equal(c->training.prefetch, 2);
    assert_true(c->training.save_updater);
    assert_int_equal(c->training.averaging, DL4C_AVG_PLAIN);
    for (int i = 0; i < c->n_layers; i++) assert_null(dl4c_config_layer_name(&c->layers[i]));
}

static dl4c_net_conf *conf_new(void) {
    dl4c_net_conf *c = calloc(1, sizeof *c);
    assert_non_null(c);
    return c;
}

static void conf_free(dl4c_net_conf *c) {
    dl4c_config_free_strings(c);
    free(c);
}

static char *file_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_lenet_json(void **state) {
    dl4c_net_conf *c = conf_new();
    assert_ok_msg(dl4c_config_load(EXAMPLE("lenet.json"), c));
    check_lenet(c);
    conf_free(c);
}

static void test_lenet_yaml(void **state) {
    dl4c_net_conf *c = conf_new();
    assert_ok_msg(dl4c_config_load(EXAMPLE("lenet.yaml"), c));
    check_lenet(c);
    conf_free(c);
}

static void test_json_yaml_equal(void **state) {
    dl4c_net_conf *j = conf_new(), *y = conf_new();
    assert_ok_msg(dl4c_config_load(EXAMPLE("lenet.json"), j));
    assert_ok_msg(dl4c_config_load(EXAMPLE("lenet.yaml"), y));
    assert_conf_equal(j, y);
    /* JSON is also (flow) YAML: the JSON text read by the YAML parser gives the same. */
    size_t len;
    char *text = file_text(EXAMPLE("lenet.json"), &len);
    dl4c_net_conf *jy = conf_new();
    assert_ok_msg(dl4c_config_parse_yaml(text, len, "lenet.json", jy));
    assert_conf_equal(j, jy);
    free(text);
    conf_free(j);
    conf_free(y);
    conf_free(jy);
}

static void test_round_trip_lenet(void **state) {
    dl4c_net_conf *a = conf_new(), *b = conf_new();
    assert_ok_msg(dl4c_config_load(EXAMPLE("lenet.yaml"), a));
    char *json = NULL;
    assert_ok_msg(dl4c_config_to_json(a, &json));
    assert_non_null(json);
    /* The shortest decimals, and every section explicit. */
    assert_non_null(strstr(json, "\"learning_rate\": 0.1,"));
    assert_non_null(strstr(json, "\"l2\": 0.0005,"));
    assert_non_null(strstr(json, "\"type\": \"adagrad\""));
    assert_non_null(strstr(json, "\"save_updater\": true"));
    assert_non_null(strstr(json, "\"kernel\": ["));
    assert_non_null(strstr(json, "\"pooling\": \"max\""));
    assert_non_null(strstr(json, "\"loss\": \"nll\""));
    assert_ok_msg(dl4c_config_parse_json(json, strlen(json), "meta", b));
    assert_conf_equal(a, b);
    /* Writing again gives the same text. */
    char *json2 = NULL;
    assert_ok_msg(dl4c_config_to_json(b, &json2));
    assert_string_equal(json, json2);
    free(json);
    free(json2);
    conf_free(a);
    conf_free(b);
}

/* Every field away from its default, names included. */
static const char *const full_yaml =
    "seed: 9007199254740993\n"
    "updater: {type: adam, learning_rate: 0.003, beta1: 0.85, beta2: 0.995, epsilon: 1.0e-7,\n"
    "          momentum: 0.5, rho: 0.9}\n"
    "l1: 0.0001\n"
    "l2: 2.5e-4\n"
    "activation: tanh\n"
    "weight_init: relu\n"
    "input: {channels: 3, height: 16, width: 12}\n"
    "layers:\n"
    "  - {type: conv2d, name: conv1, n_out: 8, kernel: [3, 2], stride: [1, 2], padding: [1, 0],\n"
    "     conv_mode: truncate, activation: leakyrelu, weight_init: xavier_uniform, bias_init: -0.25,\n"
    "     learning_rate: 0.01, l1: 0.001, l2: 0.002}\n"
    "  - {type: subsampling, name: pool1, pooling: avg, kernel: 2, stride: 2, padding: 0,\n"
    "     conv_mode: truncate}\n"
    "  - {type: conv2d, name: conv2, n_out: 4, kernel: 3, conv_mode: same, activation: identity}\n"
    "  - {type: dense, name: fc, n_out: 17, activation: sigmoid, weight_init: uniform,\n"
    "     bias_init: 0.1}\n"
    "  - {type: output, name: out, n_out: 5, activation: softmax, loss: mcxent,\n"
    "     weight_init: normal}\n"
    "training: {epochs: 3, batch_size_per_worker: 7, workers: 4, averaging_frequency: 2,\n"
    "           prefetch: 0, save_updater: false, averaging: bmuf, block_momentum: 0.75,\n"
    "           block_learning_rate: 1.5}\n";

static void test_round_trip_full(void **state) {
    dl4c_net_conf *a = conf_new(), *b = conf_new();
    assert_ok_msg(dl4c_config_parse_yaml(full_yaml, strlen(full_yaml), "full.yaml", a));
    assert_int_equal(a->seed, 9007199254740993ull);
    assert_int_equal(a->updater.type, DL4C_ADAM);
    assert_float_equal(a->updater.beta1, 0.85f, 0);
    assert_float_equal(a->updater.epsilon, 1.0e-7f, 0);
    assert_float_equal(a->l2, 2.5e-4f, 0);
    assert_int_equal(a->layers[0].kernel[0], 3);
    assert_int_equal(a->layers[0].kernel[1], 2);
    assert_int_equal(a->layers[0].padding[0], 1);
    assert_float_equal(a->layers[0].bias_init, -0.25f, 0);
    assert_string_equal(dl4c_config_layer_name(&a->layers[0]), "conv1");
    assert_string_equal(dl4c_config_layer_name(&a->layers[4]), "out");
    assert_int_equal(a->layers[1].pooling, DL4C_POOL_AVG);
    assert_int_equal(a->layers[1].kernel[1], 2);
    assert_int_equal(a->layers[2].conv_mode, DL4C_CONV_SAME);
    assert_int_equal(a->training.averaging, DL4C_AVG_BMUF);
    assert_float_equal(a->training.block_momentum, 0.75f, 0);
    assert_false(a->training.save_updater);

    char *json = NULL;
    assert_ok_msg(dl4c_config_to_json(a, &json));
    assert_non_null(strstr(json, "\"name\": \"conv1\""));
    assert_non_null(strstr(json, "\"seed\": 9007199254740993"));
    assert_ok_msg(dl4c_config_parse_json(json, strlen(json), NULL, b));
    assert_conf_equal(a, b);
    free(json);
    conf_free(a);
    conf_free(b);
}

/* Flat input: resolve turns {features: 4} into 4x1x1; writing and reading it back is stable. */
static void test_round_trip_features(void **state) {
    const char *text = "{\"input\": {\"features\": 4},\n"
                       " \"layers\": [{\"type\": \"dense\", \"n_out\": 3, \"activation\": null},\n"
                       "            {\"type\": \"output\", \"n_out\": 2}]}";
    dl4c_net_conf *a = conf_new(), *b = conf_new();
    assert_ok_msg(dl4c_config_parse_json(text, strlen(text), "mlp.json", a));
    assert_int_equal(a->input.features, 4);
    char *json = NULL;
    assert_ok_msg(dl4c_config_to_json(a, &json));
    assert_ok_msg(dl4c_config_parse_json(json, strlen(json), "meta", b));
    assert_conf_equal(a, b);
    free(json);
    conf_free(a);
    conf_free(b);
}

/* A conf written in C, not resolved: zeros become null and read back as zeros. Checked on
 * the validator alone, so the result does not depend on dl4c_net_conf_resolve. */
static void test_round_trip_unresolved(void **state) {
    dl4c_net_conf *a = conf_new(), *b = conf_new();
    a->input.features = 4;
    a->n_layers = 2;
    a->layers[0] = dl4c_dense(.n_out = 3);
    a->layers[1] = dl4c_output(.n_out = 2, .activation = DL4C_SOFTMAX);
    char *json = NULL;
    assert_ok_msg(dl4c_config_to_json(a, &json));
    assert_non_null(strstr(json, "\"activation\": null"));
    assert_non_null(strstr(json, "\"loss\": null"));
    assert_non_null(strstr(json, "\"name\": null"));
    assert_non_null(strstr(json, "\"epochs\": null"));
    assert_non_null(strstr(json, "\"features\": 4"));
    assert_null(strstr(json, "\"kernel\""));   /* not a field of dense/output layers */
    json_error_t err;
    json_t *root = json_loads(json, 0, &err);
    assert_non_null(root);
    assert_ok_msg(dl4c_config_from_json(root, "meta", b));
    json_decref(root);
    assert_conf_equal(a, b);
    free(json);
    conf_free(a);
    conf_free(b);
}

static void test_load_by_content(void **state) {
    size_t len;
    char *json = file_text(EXAMPLE("lenet.json"), &len);
    char *yaml = file_text(EXAMPLE("lenet.yaml"), &len);
    const char *jpath = DL4C_BINARY_DIR "/config_test_lenet.conf";
    const char *ypath = DL4C_BINARY_DIR "/config_test_lenet";
    write_file(jpath, json);
    write_file(ypath, yaml);
    dl4c_net_conf *a = conf_new(), *b = conf_new();
    assert_ok_msg(dl4c_config_load(jpath, a));
    assert_ok_msg(dl4c_config_load(ypath, b));
    check_lenet(a);
    assert_conf_equal(a, b);
    /* .yml is YAML too. */
    const char *ymlpath = DL4C_BINARY_DIR "/config_test_lenet.yml";
    write_file(ymlpath, yaml);
    assert_ok_msg(dl4c_config_load(ymlpath, b));
    assert_conf_equal(a, b);
    remove(jpath);
    remove(ypath);
    remove(ymlpath);
    free(json);
    free(yaml);
    conf_free(a);
    conf_free(b);
}

/* DL4J spellings, short forms and the learning_rate shortcut. */
static void test_aliases_and_short_forms(void **state) {
    const char *text =
        "seed: 0x10\n"
        "updater: ADAGRAD\n"
        "learning_rate: 0.05\n"
        "activation: ~\n"
        "weight_init: He\n"
        "input: [1, 28, 28]\n"
        "layers:\n"
        "  - {type: ConvolutionLayer, kernel: 5, n_out: 6, activation: ReLU}\n"
        "  - {type: pooling, pooling: AVERAGE, kernel: 2}\n"
        "  - {type: convolution, kernel: [3, 3], n_out: 4, activation: relu}\n"
        "  - {type: DenseLayer, n_out: 10, activation: relu}\n"
        "  - {type: OutputLayer, n_out: 3, activation: softmax, loss: NEGATIVELOGLIKELIHOOD}\n";
    dl4c_net_conf *c = conf_new();
    assert_ok_msg(dl4c_config_parse_yaml(text, strlen(text), "aliases.yaml", c));
    assert_int_equal(c->seed, 16);
    assert_int_equal(c->updater.type, DL4C_ADAGRAD);
    assert_float_equal(c->updater.learning_rate, 0.05f, 0);
    assert_int_equal(c->weight_init, DL4C_INIT_RELU);
    assert_int_equal(c->input.channels, 1);
    assert_int_equal(c->input.height, 28);
    assert_int_equal(c->input.width, 28);
    assert_int_equal(c->layers[0].type, DL4C_LAYER_CONV2D);
    assert_int_equal(c->layers[0].kernel[0], 5);
    assert_int_equal(c->layers[0].kernel[1], 5);
    assert_int_equal(c->layers[0].activation, DL4C_RELU);
    assert_int_equal(c->layers[1].type, DL4C_LAYER_SUBSAMPLING);
    assert_int_equal(c->layers[1].pooling, DL4C_POOL_AVG);
    assert_int_equal(c->layers[2].type, DL4C_LAYER_CONV2D);
    assert_int_equal(c->layers[3].type, DL4C_LAYER_DENSE);
    assert_int_equal(c->layers[4].type, DL4C_LAYER_OUTPUT);
    assert_int_equal(c->layers[4].loss, DL4C_LOSS_NLL);
    assert_int_equal(c->activation, DL4C_SIGMOID);   /* null: the default, filled by resolve */

    /* The same learning rate given twice is fine. */
    const char *json = "{\"updater\": {\"type\": \"sgd\", \"learning_rate\": 0.5}, \"learning_rate\": 0.5,"
                       " \"input\": {\"features\": 4},"
                       " \"layers\": [{\"type\": \"output\", \"n_out\": 2, \"activation\": \"softmax\"}]}";
    assert_ok_msg(dl4c_config_parse_json(json, strlen(json), NULL, c));
    assert_float_equal(c->updater.learning_rate, 0.5f, 0);
    assert_int_equal(c->input.features, 4);
    conf_free(c);
}

/* YAML 1.2 core schema: quoted scalars are strings, plain ones are typed; tags and anchors. */
static void test_yaml_scalars(void **state) {
    const char *text =
        "seed: +42\n"
        "l2: !!float 1\n"
        "activation: &act relu\n"
        "input: {features: 0o12}\n"
        "layers:\n"
        "  - {type: dense, name: \"123\", n_out: !!int \"7\", activation: *act}\n"
        "  - {type: dense, name: 'true', n_out: 3, bias_init: .5}\n"
        "  - {type: dense, name: !!str 5, n_out: 3, bias_init: -1e-2}\n"
        "  - &outl\n"
        "    type: output\n"
        "    name: |-\n"
        "      out\n"
        "    n_out: 2\n"
        "    activation: softmax\n"
        "training:\n"
        "  save_updater: TRUE\n"
        "  prefetch: 0\n";
    dl4c_net_conf *c = conf_new();
    assert_ok_msg(dl4c_config_parse_yaml(text, strlen(text), "scalars.yaml", c));
    assert_int_equal(c->seed, 42);
    assert_float_equal(c->l2, 1.0f, 0);
    assert_int_equal(c->input.features, 10);
    assert_int_equal(c->activation, DL4C_RELU);
    assert_string_equal(dl4c_config_layer_name(&c->layers[0]), "123");
    assert_int_equal(c->layers[0].n_out, 7);
    assert_int_equal(c->layers[0].activation, DL4C_RELU);
    assert_string_equal(dl4c_config_layer_name(&c->layers[1]), "true");
    assert_float_equal(c->layers[1].bias_init, 0.5f, 0);
    assert_string_equal(dl4c_config_layer_name(&c->layers[2]), "5");
    assert_float_equal(c->layers[2].bias_init, -0.01f, 0);
    assert_string_equal(dl4c_config_layer_name(&c->layers[3]), "out");
    assert_true(c->training.save_updater);
    conf_free(c);
}

/* On failure *out is left as it was. */
static void test_failure_leaves_out_untouched(void **state) {
    dl4c_net_conf *c = conf_new(), *before = conf_new();
    memset(c, 0x5a, sizeof *c);
    memcpy(before, c, sizeof *c);
    const char *text = "{\"layers\": [{\"type\": \"dense\", \"n_out\": 3, \"name\": \"x\"},"
                       " {\"type\": \"dense\", \"n_out\": -1}]}";
    assert_int_equal(dl4c_config_parse_json(text, strlen(text), NULL, c), DL4C_ERR_CONFIG);
    assert_memory_equal(c, before, sizeof *c);
    free(c);
    free(before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenet_json),
        cmocka_unit_test(test_lenet_yaml),
        cmocka_unit_test(test_json_yaml_equal),
        cmocka_unit_test(test_round_trip_lenet),
        cmocka_unit_test(test_round_trip_full),
        cmocka_unit_test(test_round_trip_features),
        cmocka_unit_test(test_round_trip_unresolved),
        cmocka_unit_test(test_load_by_content),
        cmocka_unit_test(test_aliases_and_short_forms),
        cmocka_unit_test(test_yaml_scalars),
        cmocka_unit_test(test_failure_leaves_out_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
