/* The JSON and YAML configuration targets share their checks: a configuration that parses must
 * write back to JSON (dl4c_config_to_json) and that JSON must parse to the identical struct. */
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
    if (memcmp(conf, again, sizeof *again) != 0) fuzz_fail("JSON round trip changed the configuration");
    dl4c_config_free_strings(again);
    free(again);
    free(json);
}

#endif
