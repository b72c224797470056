/* dl4c tensors: float32, up to 5-D, row-major (NCHW for images), with a device tag.
 * A tensor either owns its buffer or is a view into someone else's. */
#ifndef DL4C_TENSOR_H
#define DL4C_TENSOR_H

#include "dl4c/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DL4C_MAX_DIMS 5

typedef enum dl4c_device { DL4C_DEVICE_CPU = 0, DL4C_DEVICE_CUDA = 1, DL4C_DEVICE_COUNT } dl4c_device;
const char *dl4c_device_str(dl4c_device d);
/* Parses "cpu", "cuda" (index 0) or "cuda:N" into *d and *index; false if malformed. */
bool dl4c_device_parse(const char *s, dl4c_device *d, int *index);
/* True in builds with the CUDA backend (cmake -DDL4C_CUDA=ON). */
bool dl4c_have_cuda(void);
/* GPUs this process can use (0 without CUDA, without a GPU or without a driver). */
int dl4c_cuda_device_count(void);

typedef struct dl4c_tensor {
    float *data;                    /* first element (host or device memory, see device) */
    int ndim;                       /* number of dimensions, 1..DL4C_MAX_DIMS */
    int64_t shape[DL4C_MAX_DIMS];   /* extent of each dimension, row-major */
    int64_t size;                   /* product of shape */
    dl4c_device device;             /* where data lives */
    bool owns;                      /* true if dl4c_tensor_free releases data */
} dl4c_tensor;

/* A new zeroed CPU tensor; NULL (with a message) on bad shape or out of memory. */
dl4c_tensor *dl4c_tensor_new(int ndim, const int64_t *shape);
void dl4c_tensor_free(dl4c_tensor *t);
/* A non-owning view of rows [start, start+count) of the first dimension. */
dl4c_tensor dl4c_tensor_rows(const dl4c_tensor *t, int64_t start, int64_t count);
/* Number of elements of one row (product of dims 1..ndim-1). */
int64_t dl4c_tensor_row_size(const dl4c_tensor *t);
/* "[32, 1, 28, 28]" into buf. */
const char *dl4c_tensor_shape_str(const dl4c_tensor *t, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
