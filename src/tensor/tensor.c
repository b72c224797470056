/* dl4c tensors: allocation, row views, shape strings. */
#include "dl4c/tensor.h"

#include <stdio.h>
#include <string.h>

static const char *const device_names[] = {"cpu", "cuda"};
_Static_assert(sizeof device_names / sizeof device_names[0] == DL4C_DEVICE_COUNT, "device_names");

const char *dl4c_device_str(dl4c_device d) {
    return (d >= 0 && d < DL4C_DEVICE_COUNT) ? device_names[d] : "?";
}

dl4c_tensor *dl4c_tensor_new(int ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > DL4C_MAX_DIMS) {
        dl4c_error(DL4C_ERR_SHAPE, "tensor: %d dimensions (1..%d allowed)", ndim, DL4C_MAX_DIMS);
        return NULL;
    }
    int64_t size = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && size > INT64_MAX / 4 / shape[i])) {
            dl4c_error(DL4C_ERR_SHAPE, "tensor: bad extent %lld in dimension %d",
                       (long long)shape[i], i);
            return NULL;
        }
        size *= shape[i];
    }
    dl4c_tensor *t = dl4c_calloc(sizeof *t);
    if (!t) { dl4c_error(DL4C_ERR_NOMEM, "tensor: out of memory"); return NULL; }
    t->data = dl4c_calloc((size_t)size * sizeof(float));
    if (!t->data) {
        dl4c_free(t);
        dl4c_error(DL4C_ERR_NOMEM, "tensor: out of memory for %lld floats", (long long)size);
        return NULL;
    }
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->size = size;
    t->device = DL4C_DEVICE_CPU;
    t->owns = true;
    return t;
}

void dl4c_tensor_free(dl4c_tensor *t) {
    if (!t) return;
    if (t->owns) dl4c_free(t->data);
    dl4c_free(t);
}

int64_t dl4c_tensor_row_size(const dl4c_tensor *t) {
    int64_t r = 1;
    for (int i = 1; i < t->ndim; i++) r *= t->shape[i];
    return r;
}

dl4c_tensor dl4c_tensor_rows(const dl4c_tensor *t, int64_t start, int64_t count) {
    DL4C_ASSERT(start >= 0 && count >= 0 && start + count <= t->shape[0]);
    dl4c_tensor v = *t;
    v.owns = false;
    v.shape[0] = count;
    v.data = t->data + start * dl4c_tensor_row_size(t);
    v.size = count * dl4c_tensor_row_size(t);
    return v;
}

const char *dl4c_tensor_shape_str(const dl4c_tensor *t, char *buf, size_t n) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}
