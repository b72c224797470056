/* The JSON and YAML configuration targets share their checks: a configuration that parses must
 * write back to JSON (dl4c_config_to_json) and that JSON must parse to the identical struct,
 * except for where to train ("device", "allow_tf32"), which is read but by design not written. */
#ifndef DL4C_FUZZ_CONFIG_H
#define DL4C_FUZZ_CONFIG_H

#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "dl4c/config.h"

static void fuzz_config_roundtrip(const dl4c_net_conf *conf) {
    char *json = NULL;
    if (dl4c_config_to_json(conf, &json) != DL4C_OK) fuzz_fail("a parsed configuration does not write back to JSON");
    dl4c_net_conf *again = calloc(1, sizeof *again);
    if (!again) abort();
    if (dl4c_config_parse_json(json, strlen(json), NULL, again) != DL4C_OK) fuzz_fail("dl4c_config_to_json wrote JSON that does not parse");
    dl4c_net_conf *want = malloc(sizeof *want);
    if (!want) abort();
    memcpy(want, conf, sizeof *want);
    want->device = DL4C_DEVICE_CPU;
    want->device_index = 0;
    want->allow_tf32 = false;
    if (memcmp(want, again, sizeof *again) != 0) fuzz_fail("JSON round trip changed the configuration");
    free(want);
    dl4c_config_free_strings(again);
    free(again);
    free(json);
}

#endif
