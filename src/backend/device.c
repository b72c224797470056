/* Device names and backend selection: "cpu", "cuda", "cuda:N" -> a backend table. */
#include "backend/backend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool dl4c_device_parse(const char *s, dl4c_device *d, int *index) {
    if (!s) return false;
    if (!strcasecmp(s, "cpu")) { *d = DL4C_DEVICE_CPU; *index = 0; return true; }
    if (strncasecmp(s, "cuda", 4)) return false;
    if (!s[4]) { *d = DL4C_DEVICE_CUDA; *index = 0; return true; }
    if (s[4] != ':' || s[5] < '0' || s[5] > '9') return false;
    char *end;
    errno = 0;
    const long v = strtol(s + 5, &end, 10);
    if (*end || errno || v < 0 || v > 1023) return false;
    *d = DL4C_DEVICE_CUDA;
    *index = (int)v;
    return true;
}

#ifndef DL4C_HAVE_CUDA
bool dl4c_have_cuda(void) { return false; }
int dl4c_cuda_device_count(void) { return 0; }
#else
bool dl4c_have_cuda(void) { return true; }
#endif

dl4c_status dl4c_backend_open(dl4c_device device, int index, bool allow_tf32, const dl4c_backend **out) {
    *out = NULL;
    switch (device) {
    case DL4C_DEVICE_CPU:
        *out = dl4c_backend_cpu();
        return DL4C_OK;
    case DL4C_DEVICE_CUDA:
#ifdef DL4C_HAVE_CUDA
        return dl4c_backend_cuda_open(index, allow_tf32, out);
#else
        return dl4c_error(DL4C_ERR_UNSUPPORTED,
                          "device cuda:%d: this dl4c was built without CUDA (rebuild with "
                          "cmake -DDL4C_CUDA=ON, or make cuda)", index);
#endif
    default:
        return dl4c_error(DL4C_ERR_INVALID_ARG, "unknown device %d", (int)device);
    }
}

void dl4c_backend_release(const dl4c_backend *be) {
#ifdef DL4C_HAVE_CUDA
    if (be && be->device == DL4C_DEVICE_CUDA) dl4c_backend_cuda_release(be);
#else
    (void)be;
#endif
}
