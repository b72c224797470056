/* libFuzzer target: JSON network configurations (dl4c_config_parse_json), with a round trip
 * through dl4c_config_to_json for every configuration that parses. */
#include "fuzz_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dl4c_net_conf *conf = calloc(1, sizeof *conf);
    if (!conf) abort();
    if (dl4c_config_parse_json((const char *)data, size, "fuzz.json", conf) == DL4C_OK) {
        fuzz_config_roundtrip(conf);
        dl4c_config_free_strings(conf);
    }
    free(conf);
    return 0;
}
