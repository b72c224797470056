/* YAML text -> jansson tree, from libyaml's event stream, so the one validator in schema.c
 * serves both formats. Plain scalars are resolved with the YAML 1.2 core schema; quoted,
 * literal and folded scalars are strings; explicit tags (!!str, !!int, !!float, !!bool,
 * !!null) are honoured; aliases share their anchor's node (json_incref). */
#define _GNU_SOURCE
#include "config/config_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define YAML_MAX_DEPTH 64

typedef struct yaml_anchor {
    char *name;   /* the anchor's name (owned) */
    json_t *node; /* one reference held */
} yaml_anchor;

typedef struct yaml_doc {
    yaml_parser_t parser;   /* libyaml's pull parser */
    const char *origin;     /* file name for messages, or NULL */
    yaml_anchor *anchors;   /* anchors seen so far */
    size_t n_anchors, cap_anchors;
} yaml_doc;

static dl4c_status at_mark(const yaml_doc *d, yaml_mark_t m, const char *fmt, const char *arg) {
    return dl4c_config_error_at(d->origin, (int)m.line + 1, (int)m.column + 1, fmt, arg);
}

static dl4c_status parser_error(const yaml_doc *d) {
    const yaml_parser_t *p = &d->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->error == YAML_MEMORY_ERROR) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    if (p->error == YAML_READER_ERROR)
        return dl4c_config_error_at(d->origin, 0, 0, "%s (at byte %zu)", problem, p->problem_offset);
    if (p->context)
        return dl4c_config_error_at(d->origin, (int)p->problem_mark.line + 1,
                                    (int)p->problem_mark.column + 1, "%s %s at line %d, column %d",
                                    problem, p->context, (int)p->context_mark.line + 1,
                                    (int)p->context_mark.column + 1);
    return dl4c_config_error_at(d->origin, (int)p->problem_mark.line + 1,
                                (int)p->problem_mark.column + 1, "%s", problem);
}

static dl4c_status next_event(yaml_doc *d, yaml_event_t *ev) {
    return yaml_parser_parse(&d->parser, ev) ? DL4C_OK : parser_error(d);
}

static dl4c_status anchor_add(yaml_doc *d, const yaml_char_t *name, json_t *node) {
    if (!name) return DL4C_OK;
    if (d->n_anchors == d->cap_anchors) {
        const size_t cap = d->cap_anchors ? 2 * d->cap_anchors : 8;
        yaml_anchor *bigger = realloc(d->anchors, cap * sizeof *bigger);
        if (!bigger) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
        d->anchors = bigger;
        d->cap_anchors = cap;
    }
    char *copy = strdup((const char *)name);
    if (!copy) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    d->anchors[d->n_anchors++] = (yaml_anchor){copy, json_incref(node)};
    return DL4C_OK;
}

/* ---- Scalars (YAML 1.2 core schema) ---- */

static bool is_one_of(const char *s, const char *const *words) {
    for (; *words; words++)
        if (strcmp(s, *words) == 0) return true;
    return false;
}

static bool all_digits(const char *s, const char *digits) {
    if (!*s) return false;
    for (; *s; s++)
        if (!strchr(digits, *s)) return false;
    return true;
}

/* [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+ */
static bool looks_int(const char *s, int *base, const char **digits) {
    if (s[0] == '0' && s[1] == 'o') { *base = 8; *digits = s + 2; return all_digits(s + 2, "01234567"); }
    if (s[0] == '0' && s[1] == 'x') {
        *base = 16;
        *digits = s + 2;
        return all_digits(s + 2, "0123456789abcdefABCDEF");
    }
    *base = 10;
    *digits = s;
    return all_digits(s + (s[0] == '-' || s[0] == '+'), "0123456789");
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool looks_float(const char *s) {
    if (*s == '-' || *s == '+') s++;
    size_t before = strspn(s, "0123456789");
    s += before;
    size_t after = 0;
    if (*s == '.') {
        s++;
        after = strspn(s, "0123456789");
        s += after;
    }
    if (before == 0 && after == 0) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+') s++;
        const size_t exp = strspn(s, "0123456789");
        if (exp == 0) return false;
        s += exp;
    }
    return *s == '\0';
}

static const char *const null_words[] = {"~", "null", "Null", "NULL", "", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", NULL};

/* Integer node, or NULL with *s set when out of range / not an integer. */
static json_t *int_node(const yaml_doc *d, const yaml_event_t *ev, const char *v, dl4c_status *s) {
    int base;
    const char *digits;
    if (!looks_int(v, &base, &digits)) {
        *s = at_mark(d, ev->start_mark, "\"%s\" is not an integer", v);
        return NULL;
    }
    errno = 0;
    const long long i = strtoll(digits, NULL, base);
    if (errno == ERANGE) {
        *s = at_mark(d, ev->start_mark, "integer %s is out of range", v);
        return NULL;
    }
    return json_integer(i);
}

/* A finite float node; infinities and NaN stay strings so the validator names the field. */
static json_t *float_node(const char *v) {
    const char *t = v + (v[0] == '-' || v[0] == '+');
    if (is_one_of(t, (const char *const[]){".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN", NULL}))
        return json_string(v);
    const double x = strtod(v, NULL);
    return isfinite(x) ? json_real(x) : json_string(v);
}

static json_t *scalar_node(const yaml_doc *d, const yaml_event_t *ev, dl4c_status *s) {
    const char *v = (const char *)ev->data.scalar.value;
    const size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, "!") != 0) {
        if (strcmp(tag, YAML_STR_TAG) == 0) return json_stringn(v, len);
        if (strcmp(tag, YAML_INT_TAG) == 0) return int_node(d, ev, v, s);
        if (strcmp(tag, YAML_FLOAT_TAG) == 0) {
            if (!looks_float(v)) {
                *s = at_mark(d, ev->start_mark, "\"%s\" is not a number", v);
                return NULL;
            }
            return float_node(v);
        }
        if (strcmp(tag, YAML_BOOL_TAG) == 0) {
            if (is_one_of(v, true_words)) return json_true();
            if (is_one_of(v, false_words)) return json_false();
            *s = at_mark(d, ev->start_mark, "\"%s\" is not a boolean", v);
            return NULL;
        }
        if (strcmp(tag, YAML_NULL_TAG) == 0) return json_null();
        *s = at_mark(d, ev->start_mark, "unsupported tag %s", tag);
        return NULL;
    }
    if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_stringn(v, len);
    if (strlen(v) != len) return json_stringn(v, len);
    if (is_one_of(v, null_words)) return json_null();
    if (is_one_of(v, true_words)) return json_true();
    if (is_one_of(v, false_words)) return json_false();
    int base;
    const char *digits;
    if (looks_int(v, &base, &digits)) return int_node(d, ev, v, s);
    if (looks_float(v) || is_one_of(v + (v[0] == '-' || v[0] == '+'),
                                    (const char *const[]){".inf", ".Inf", ".INF", NULL}) ||
        is_one_of(v, (const char *const[]){".nan", ".NaN", ".NAN", NULL}))
        return float_node(v);
    return json_stringn(v, len);
}

/* ---- Nodes ---- */

/* Builds the node that starts with *ev (consumed: deleted here) into *out. */
static dl4c_status node_read(yaml_doc *d, yaml_event_t *ev, int depth, json_t **out) {
    dl4c_status s = DL4C_OK;
    json_t *node = NULL;
    const yaml_char_t *anchor = NULL;
    *out = NULL;
    if (depth > YAML_MAX_DEPTH) {
        s = at_mark(d, ev->start_mark, "nested deeper than %s levels", "64");
        yaml_event_delete(ev);
        return s;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        node = scalar_node(d, ev, &s);
        if (!node && !s) s = dl4c_error(DL4C_ERR_NOMEM, "out of memory");
        break;
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        for (size_t i = d->n_anchors; i-- > 0;)
            if (strcmp(d->anchors[i].name, name) == 0) { node = json_incref(d->anchors[i].node); break; }
        if (!node) s = at_mark(d, ev->start_mark, "unknown alias *%s", name);
        break;
    }
    case YAML_SEQUENCE_START_EVENT: {
        anchor = ev->data.sequence_start.anchor;
        node = json_array();
        if (!node) { s = dl4c_error(DL4C_ERR_NOMEM, "out of memory"); break; }
        for (;;) {
            yaml_event_t item;
            if ((s = next_event(d, &item))) break;
            if (item.type == YAML_SEQUENCE_END_EVENT) { yaml_event_delete(&item); break; }
            json_t *child;
            if ((s = node_read(d, &item, depth + 1, &child))) break;
            if (json_array_append_new(node, child)) { s = dl4c_error(DL4C_ERR_NOMEM, "out of memory"); break; }
        }
        break;
    }
    case YAML_MAPPING_START_EVENT: {
        anchor = ev->data.mapping_start.anchor;
        node = json_object();
        if (!node) { s = dl4c_error(DL4C_ERR_NOMEM, "out of memory"); break; }
        for (;;) {
            yaml_event_t key;
            if ((s = next_event(d, &key))) break;
            if (key.type == YAML_MAPPING_END_EVENT) { yaml_event_delete(&key); break; }
            if (key.type != YAML_SCALAR_EVENT ||
                strlen((const char *)key.data.scalar.value) != key.data.scalar.length) {
                s = at_mark(d, key.start_mark, "%s", "mapping keys must be strings");
                yaml_event_delete(&key);
                break;
            }
            const char *k = (const char *)key.data.scalar.value;
            if (json_object_get(node, k)) {
                s = at_mark(d, key.start_mark, "duplicate key \"%s\"", k);
                yaml_event_delete(&key);
                break;
            }
            char *kcopy = strdup(k);
            const yaml_mark_t kmark = key.start_mark;
            yaml_event_delete(&key);
            if (!kcopy) { s = dl4c_error(DL4C_ERR_NOMEM, "out of memory"); break; }
            yaml_event_t value;
            json_t *child = NULL;
            if (!(s = next_event(d, &value))) s = node_read(d, &value, depth + 1, &child);
            if (!s && json_object_set_new(node, kcopy, child)) {
                s = at_mark(d, kmark, "invalid key \"%s\"", kcopy);
            }
            free(kcopy);
            if (s) break;
        }
        break;
    }
    default:
        s = at_mark(d, ev->start_mark, "%s", "unexpected YAML event");
        break;
    }
    if (!s) s = anchor_add(d, anchor, node);
    yaml_event_delete(ev);
    if (s) {
        json_decref(node);
        return s;
    }
    *out = node;
    return DL4C_OK;
}

/* Reads exactly one document. */
static dl4c_status stream_read(yaml_doc *d, json_t **out) {
    yaml_event_t ev;
    dl4c_status s;
    if ((s = next_event(d, &ev))) return s;           /* STREAM-START */
    yaml_event_delete(&ev);
    if ((s = next_event(d, &ev))) return s;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return dl4c_config_error_at(d->origin, 0, 0, "empty configuration (no YAML document)");
    }
    yaml_event_delete(&ev);                            /* DOCUMENT-START */
    if ((s = next_event(d, &ev))) return s;
    json_t *root;
    if ((s = node_read(d, &ev, 0, &root))) return s;
    if (!(s = next_event(d, &ev))) {                   /* DOCUMENT-END */
        yaml_event_delete(&ev);
        if (!(s = next_event(d, &ev))) {
            if (ev.type != YAML_STREAM_END_EVENT)
                s = at_mark(d, ev.start_mark, "%s",
                            "a second YAML document; a configuration is one document");
            yaml_event_delete(&ev);
        }
    }
    if (s) {
        json_decref(root);
        return s;
    }
    *out = root;
    return DL4C_OK;
}

dl4c_status dl4c_config_yaml_to_json(const char *text, size_t len, const char *origin,
                                     json_t **out) {
    yaml_doc d = {.origin = origin};
    *out = NULL;
    if (!yaml_parser_initialize(&d.parser)) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&d.parser, (const unsigned char *)text, len);
    dl4c_status s = stream_read(&d, out);
    for (size_t i = 0; i < d.n_anchors; i++) {
        free(d.anchors[i].name);
        json_decref(d.anchors[i].node);
    }
    free(d.anchors);
    yaml_parser_delete(&d.parser);
    return s;
}
