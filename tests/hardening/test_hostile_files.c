/* Hostile input files (issue 7): a tiny model file whose configuration describes a huge
 * network is refused before the network is built, so loading it costs neither time nor memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <cmocka.h>

#include "dl4c/dl4c.h"
#include "dl4c/io.h"

static long max_rss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_huge_config_small_file(void **state) {
    (void)state;
    const char *path = DL4C_SOURCE_DIR "/fuzz/regressions/model/huge_config_no_data";
    const long before = max_rss_kib();
    const double t0 = dl4c_now();
    dl4c_net *net = NULL;
    dl4c_progress p;
    assert_int_equal(dl4c_model_load(path, &net, &p), DL4C_ERR_FORMAT);
    assert_null(net);
    assert_non_null(strstr(dl4c_error_message(), "the configuration's network has 238500010 parameters"));
    assert_true(dl4c_now() - t0 < 1.0);
    assert_true(max_rss_kib() - before < 100 * 1024);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_huge_config_small_file)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
