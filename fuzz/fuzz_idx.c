/* libFuzzer target: IDX image and label files (plain or gzip).
 * Input: [flags: 1 byte][n: 2 bytes, little-endian][labels file: n bytes][images file: rest].
 * flags bits 0-1 pick the row range (all, [1, end), [0, 1), [len/3, 2 len/3)), bit 2 asks for
 * 3 classes instead of 10. Checks: a range load equals the same rows of the full load, and
 * dl4c_idx_count agrees with the rows loaded. */
#include "fuzz_common.h"

#include <string.h>

#include "dl4c/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const uint8_t flags = data[0];
    size_t nl = (size_t)data[1] | (size_t)data[2] << 8;
    data += 3;
    size -= 3;
    if (nl > size) nl = size;
    fuzz_file labels, images;
    fuzz_file_open(&labels, data, nl);
    fuzz_file_open(&images, data + nl, size - nl);
    const int classes = flags & 4 ? 3 : 0;

    int64_t count = -1;
    const dl4c_status cs = dl4c_idx_count(images.path, &count);
    dl4c_dataset *all = NULL;
    if (dl4c_idx_load_ex(images.path, labels.path, 0, -1, classes, &all) == DL4C_OK) {
        const int64_t n = dl4c_dataset_count(all);
        if (cs != DL4C_OK || count != n) fuzz_fail("dl4c_idx_count disagrees with the rows loaded");
        int64_t start = 0, cnt = n;
        switch (flags & 3) {
        case 1: start = n > 0 ? 1 : 0; cnt = n - start; break;
        case 2: cnt = n > 0 ? 1 : 0; break;
        case 3: start = n / 3; cnt = 2 * n / 3 - start; break;
        default: break;
        }
        dl4c_dataset *part = NULL;
        if (dl4c_idx_load_ex(images.path, labels.path, start, cnt, classes, &part) != DL4C_OK)
            fuzz_fail("a range of a loadable file does not load");
        const int64_t fr = dl4c_tensor_row_size(all->features), lr = all->labels->shape[1];
        if (dl4c_dataset_count(part) != cnt || dl4c_tensor_row_size(part->features) != fr ||
            part->labels->shape[1] != lr ||
            (cnt && (memcmp(part->features->data, all->features->data + start * fr, sizeof(float) * (size_t)(cnt * fr)) ||
                     memcmp(part->labels->data, all->labels->data + start * lr, sizeof(float) * (size_t)(cnt * lr)))))
            fuzz_fail("a range load differs from the same rows of the full load");
        dl4c_dataset_free(part);
        dl4c_dataset_free(all);
    }
    fuzz_file_close(&labels);
    fuzz_file_close(&images);
    return 0;
}
