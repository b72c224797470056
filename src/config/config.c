/* Configuration entry points: JSON text (jansson), YAML text (yaml.c), files, and back to
 * JSON. Both formats become one jansson tree checked by dl4c_config_from_json (schema.c). */
#define _GNU_SOURCE
#include "config/config_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

dl4c_status dl4c_config_error_at(const char *origin, int line, int col, const char *fmt, ...) {
    char msg[800], where[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const bool has_origin = origin && origin[0];
    if (has_origin && line > 0 && col > 0)
        snprintf(where, sizeof where, "%.256s:%d:%d: ", origin, line, col);
    else if (has_origin && line > 0)
        snprintf(where, sizeof where, "%.256s:%d: ", origin, line);
    else if (has_origin)
        snprintf(where, sizeof where, "%.256s: ", origin);
    else if (line > 0 && col > 0)
        snprintf(where, sizeof where, "line %d, column %d: ", line, col);
    else if (line > 0)
        snprintf(where, sizeof where, "line %d: ", line);
    else
        where[0] = '\0';
    return dl4c_error(DL4C_ERR_CONFIG, "%s%s", where, msg);
}

/* Validates the tree, resolves (src/nn: defaults and shapes), and copies to *out only on success. */
static dl4c_status conf_from_tree(const json_t *root, const char *origin, dl4c_net_conf *out) {
    dl4c_net_conf *conf = malloc(sizeof *conf);
    if (!conf) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    dl4c_status s = dl4c_config_from_json(root, origin, conf);
    if (!s) {
        s = dl4c_net_conf_resolve(conf);
        if (s) {
            if (s == DL4C_ERR_SHAPE || s == DL4C_ERR_INVALID_ARG) s = DL4C_ERR_CONFIG;
            if (origin && origin[0]) dl4c_error_prefix(s, "%s", origin);
            dl4c_config_free_strings(conf);
        }
    }
    if (!s) memcpy(out, conf, sizeof *conf);   /* memcpy keeps the zeroed padding */
    free(conf);
    return s;
}

dl4c_status dl4c_config_parse_json(const char *text, size_t len, const char *origin,
                                   dl4c_net_conf *out) {
    if (!text || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_config_parse_json: NULL argument");
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) { text += 3; len -= 3; }  /* UTF-8 BOM */
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) return dl4c_config_error_at(origin, err.line, err.column, "%s", err.text);
    dl4c_status s = conf_from_tree(root, origin, out);
    json_decref(root);
    return s;
}

dl4c_status dl4c_config_parse_yaml(const char *text, size_t len, const char *origin,
                                   dl4c_net_conf *out) {
    if (!text || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_config_parse_yaml: NULL argument");
    json_t *root;
    dl4c_status s = dl4c_config_yaml_to_json(text, len, origin, &root);
    if (s) return s;
    s = conf_from_tree(root, origin, out);
    json_decref(root);
    return s;
}

static bool ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Reads a whole file into a NUL-terminated buffer (at most 64 MiB). */
static dl4c_status file_read(const char *path, char **text, size_t *len) {
    enum { MAX_BYTES = 64 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) return dl4c_error(DL4C_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            if (cap >= MAX_BYTES) {
                free(buf);
                fclose(f);
                return dl4c_error(DL4C_ERR_IO, "%s: larger than %d MiB; not a configuration",
                                  path, MAX_BYTES >> 20);
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) { free(buf); buf = NULL; break; }
            buf = bigger;
            cap *= 2;
        }
        const size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!buf) {
        fclose(f);
        return dl4c_error(DL4C_ERR_NOMEM, "%s: out of memory", path);
    }
    if (ferror(f)) {
        const int e = errno;
        free(buf);
        fclose(f);
        return dl4c_error(DL4C_ERR_IO, "%s: cannot read: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return DL4C_OK;
}

/* True when the text looks like JSON: its first non-blank character (after a BOM) is '{'. */
static bool looks_like_json(const char *text, size_t len) {
    size_t i = (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n')) i++;
    return i < len && text[i] == '{';
}

dl4c_status dl4c_config_load(const char *path, dl4c_net_conf *out) {
    if (!path || !out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_config_load: NULL argument");
    char *text = NULL;
    size_t len = 0;
    dl4c_status s = file_read(path, &text, &len);
    if (s) return s;
    bool json;
    if (ends_with(path, ".json"))
        json = true;
    else if (ends_with(path, ".yaml") || ends_with(path, ".yml"))
        json = false;
    else
        json = looks_like_json(text, len);
    s = json ? dl4c_config_parse_json(text, len, path, out)
             : dl4c_config_parse_yaml(text, len, path, out);
    free(text);
    return s;
}

dl4c_status dl4c_config_to_json(const dl4c_net_conf *conf, char **json_out) {
    if (!conf || !json_out) return dl4c_error(DL4C_ERR_INVALID_ARG, "dl4c_config_to_json: NULL argument");
    *json_out = NULL;
    json_t *root;
    dl4c_status s = dl4c_config_to_tree(conf, &root);
    if (s) return s;
    /* 9 significant digits print every float exactly; the values are already the shortest
     * decimals (schema.c), so 0.1f prints as 0.1. */
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    *json_out = text;
    return DL4C_OK;
}
