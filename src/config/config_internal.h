/* Private to src/config: both formats become one jansson tree, checked by one validator. */
#ifndef DL4C_CONFIG_INTERNAL_H
#define DL4C_CONFIG_INTERNAL_H

#include <jansson.h>

#include "dl4c/config.h"

/* Converts a YAML text into a jansson tree (*out, owned by the caller). Plain scalars are
 * resolved with the YAML 1.2 core schema (null, true/false, integers, floats); quoted and
 * block scalars stay strings; explicit tags (!!str, !!int, ...) are honoured; aliases share
 * their anchor's node. Syntax errors name the line and column. */
dl4c_status dl4c_config_yaml_to_json(const char *text, size_t len, const char *origin,
                                     json_t **out);

/* Checks a jansson tree against the schema and fills *out (zeroed first, not resolved).
 * Messages name the field path. */
dl4c_status dl4c_config_from_json(const json_t *root, const char *origin, dl4c_net_conf *out);

/* Builds the jansson tree of *conf (every field explicit). */
dl4c_status dl4c_config_to_tree(const dl4c_net_conf *conf, json_t **out);

/* Records a DL4C_ERR_CONFIG message prefixed with "origin:line:col: " (or
 * "line L, column C: " without an origin); line/col are 1-based, <= 0 leaves them out. */
dl4c_status dl4c_config_error_at(const char *origin, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
