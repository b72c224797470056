/* Small jansson helpers shared by the classification and regression evaluations. */
#ifndef DL4C_EVAL_JSON_UTIL_H
#define DL4C_EVAL_JSON_UTIL_H

#include <jansson.h>
#include <math.h>
#include <stdbool.h>

/* A real, or null for NaN/infinity (JSON has neither). */
static inline json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Sets key to value (stealing the reference) while ok; drops value once something failed. */
static inline bool attach(bool ok, json_t *obj, const char *key, json_t *value) {
    if (!ok || !value) {
        json_decref(value);
        return false;
    }
    return json_object_set_new(obj, key, value) == 0;
}

#endif
