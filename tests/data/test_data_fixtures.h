/* cmocka fixtures shared by the reader tests (include after cmocka.h and dl4c/data.h):
 * a temporary directory per group and a status + message check. */
#ifndef DL4C_TEST_DATA_FIXTURES_H
#define DL4C_TEST_DATA_FIXTURES_H

#include "test_data_util.h"

static const char *tmp;

static int setup(void **state) {
    (void)state;
    tmp = tdu_mkdtemp();
    return tmp ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    tdu_rmdir(tmp);
    return 0;
}

/* Asserts status and that the message contains each of the NULL-terminated substrings. */
static void expect_error(dl4c_status got, dl4c_status want, ...) {
    const char *msg = dl4c_error_message();
    if (got != want) fail_msg("status %s, expected %s (message: %s)", dl4c_status_str(got),
                              dl4c_status_str(want), msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));)
        if (!strstr(msg, s)) fail_msg("message \"%s\" lacks \"%s\"", msg, s);
    va_end(ap);
}

#endif
