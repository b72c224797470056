/* Device selection in every build: "cpu" / "cuda" / "cuda:N" parse; a CUDA network where none
 * can run (a build without CUDA, or no GPU) fails with DL4C_ERR_UNSUPPORTED and says why, and
 * nothing half-made is returned; the CPU network's host buffers are the ones it computes with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dl4c/dl4c.h"

static void test_parse(void **state) {
    dl4c_device d;
    int i;
    assert_true(dl4c_device_parse("cpu", &d, &i));
    assert_int_equal(d, DL4C_DEVICE_CPU);
    assert_int_equal(i, 0);
    assert_true(dl4c_device_parse("cuda", &d, &i));
    assert_int_equal(d, DL4C_DEVICE_CUDA);
    assert_int_equal(i, 0);
    assert_true(dl4c_device_parse("cuda:3", &d, &i));
    assert_int_equal(d, DL4C_DEVICE_CUDA);
    assert_int_equal(i, 3);
    assert_true(dl4c_device_parse("CUDA:0", &d, &i));
    const char *bad[] = {"", "gpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda0", "cpu:0", "cuda:99999"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) assert_false(dl4c_device_parse(bad[k], &d, &i));
    assert_false(dl4c_device_parse(NULL, &d, &i));
}

static dl4c_net_conf small(void) {
    return (dl4c_net_conf){
        .seed = 1, .input = {.features = 4}, .n_layers = 2,
        .layers = {dl4c_dense(.n_out = 3, .activation = DL4C_TANH), dl4c_output(.n_out = 2)},
    };
}

static void test_unavailable_cuda(void **state) {
    if (dl4c_have_cuda() && dl4c_cuda_device_count() > 0) skip();   /* a GPU is here: tests/gpu covers it */
    dl4c_net_conf c = small();
    c.device = DL4C_DEVICE_CUDA;
    dl4c_net *net = (dl4c_net *)&c;   /* must come back NULL */
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_ERR_UNSUPPORTED);
    assert_null(net);
    const char *msg = dl4c_error_message();
    if (dl4c_have_cuda()) assert_non_null(strstr(msg, "no CUDA device available"));
    else assert_non_null(strstr(msg, "built without CUDA"));
    assert_int_equal(dl4c_cuda_device_count(), 0);
}

static void test_bad_device_conf(void **state) {
    dl4c_net_conf c = small();
    c.device = (dl4c_device)7;
    assert_int_equal(dl4c_net_conf_resolve(&c), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "device"));
    c = small();
    c.device_index = 2;   /* cpu has no index */
    assert_int_equal(dl4c_net_conf_resolve(&c), DL4C_ERR_CONFIG);
}

static void test_cpu_buffers(void **state) {
    dl4c_net_conf c = small();
    dl4c_net *net;
    assert_int_equal(dl4c_net_new(&c, &net), DL4C_OK);
    int idx = -1;
    assert_int_equal(dl4c_net_device(net, &idx), DL4C_DEVICE_CPU);
    assert_int_equal(idx, 0);
    float *p = dl4c_net_params(net);
    dl4c_net_sync_host(net);
    assert_ptr_equal(p, dl4c_net_params(net));   /* one buffer on the CPU */
    float x[8] = {1, 2, 3, 4, -1, -2, -3, -4}, y[4] = {1, 0, 0, 1}, s1, s2, out[4];
    assert_int_equal(dl4c_net_last_score(net, &s1), DL4C_ERR_INVALID_ARG);
    assert_int_equal(dl4c_net_fit(net, x, y, 2, &s1), DL4C_OK);
    assert_int_equal(dl4c_net_fit(net, x, y, 2, NULL), DL4C_OK);
    assert_int_equal(dl4c_net_last_score(net, &s2), DL4C_OK);
    assert_true(s2 < s1);
    p[0] += 1.0f;   /* written through the pointer: used by the next call */
    assert_int_equal(dl4c_net_output(net, x, 2, out), DL4C_OK);
    dl4c_net_free(net);
}

/* "device" and "allow_tf32" in a configuration; not written back (placement is not the model). */
static void test_config_device(void **state) {
    const char *json = "{\"device\": \"cuda:1\", \"allow_tf32\": true, \"input\": {\"features\": 4},"
                       " \"layers\": [{\"type\": \"output\", \"n_out\": 2}]}";
    dl4c_net_conf c;
    assert_int_equal(dl4c_config_parse_json(json, strlen(json), "t.json", &c), DL4C_OK);
    assert_int_equal(c.device, DL4C_DEVICE_CUDA);
    assert_int_equal(c.device_index, 1);
    assert_true(c.allow_tf32);
    char *out = NULL;
    assert_int_equal(dl4c_config_to_json(&c, &out), DL4C_OK);
    assert_null(strstr(out, "device"));
    free(out);
    dl4c_config_free_strings(&c);
    const char *yaml = "device: cpu\ninput: {features: 4}\nlayers: [{type: output, n_out: 2}]\n";
    assert_int_equal(dl4c_config_parse_yaml(yaml, strlen(yaml), "t.yaml", &c), DL4C_OK);
    assert_int_equal(c.device, DL4C_DEVICE_CPU);
    dl4c_config_free_strings(&c);
    const char *bad = "{\"device\": \"gpu0\", \"input\": {\"features\": 4}, \"layers\": [{\"type\": \"output\", \"n_out\": 2}]}";
    assert_int_equal(dl4c_config_parse_json(bad, strlen(bad), "t.json", &c), DL4C_ERR_CONFIG);
    assert_non_null(strstr(dl4c_error_message(), "device"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse), cmocka_unit_test(test_unavailable_cuda),
        cmocka_unit_test(test_bad_device_conf), cmocka_unit_test(test_cpu_buffers),
        cmocka_unit_test(test_config_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
