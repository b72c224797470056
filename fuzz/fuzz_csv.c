/* libFuzzer target: CSV files (plain or gzip).
 * Input: [options: 2 bytes][file: rest]. Byte 0: bits 0-1 label column (-1, 0, 1, -2), bit 2
 * header, bit 3 detect_header, bit 4 regression, bit 5 two label columns (regression),
 * bits 6-7 delimiter (',', ';', '\t', '|'). Byte 1: bits 0-1 n_classes (0, 2, 3, 10), bits
 * 2-3 row range (all, [1, end), [0, 1), [n/3, 2n/3)). Checks: dl4c_csv_count agrees with the
 * rows loaded; a range load equals the same rows of the full load. */
#include "fuzz_common.h"

#include <string.h>

#include "dl4c/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    static const int label_cols[4] = {-1, 0, 1, -2}, classes[4] = {0, 2, 3, 10};
    static const char delims[4] = {',', ';', '\t', '|'};
    dl4c_csv_opts o = dl4c_csv_opts_default();
    o.label_column = label_cols[data[0] & 3];
    o.header = data[0] & 4;
    o.detect_header = data[0] & 8;
    o.regression = data[0] & 16;
    o.n_label_columns = o.regression && (data[0] & 32) ? 2 : 1;
    o.delimiter = delims[data[0] >> 6];
    o.n_classes = o.regression ? 0 : classes[data[1] & 3];
    const int range = (data[1] >> 2) & 3;
    fuzz_file f;
    fuzz_file_open(&f, data + 2, size - 2);

    int64_t count = -1;
    const dl4c_status cs = dl4c_csv_count(f.path, &o, &count);
    dl4c_dataset *all = NULL;
    if (dl4c_csv_load(f.path, &o, &all) == DL4C_OK) {
        const int64_t n = dl4c_dataset_count(all);
        if (cs != DL4C_OK || count != n) fuzz_fail("dl4c_csv_count disagrees with the rows loaded");
        int64_t start = 0, cnt = n;
        switch (range) {
        case 1: start = n > 0 ? 1 : 0; cnt = n - start; break;
        case 2: cnt = n > 0 ? 1 : 0; break;
        case 3: start = n / 3; cnt = 2 * n / 3 - start; break;
        default: break;
        }
        dl4c_dataset *part = NULL;
        if (dl4c_csv_load_range(f.path, &o, start, cnt, &part) != DL4C_OK)
            fuzz_fail("a range of a loadable file does not load");
        const int64_t fr = dl4c_tensor_row_size(all->features), lr = all->labels->shape[1];
        if (dl4c_dataset_count(part) != cnt || dl4c_tensor_row_size(part->features) != fr ||
            part->labels->shape[1] != lr || part->n_classes != all->n_classes ||
            (cnt && (memcmp(part->features->data, all->features->data + start * fr, sizeof(float) * (size_t)(cnt * fr)) ||
                     memcmp(part->labels->data, all->labels->data + start * lr, sizeof(float) * (size_t)(cnt * lr)))))
            fuzz_fail("a range load differs from the same rows of the full load");
        dl4c_dataset_free(part);
        dl4c_dataset_free(all);
    }
    fuzz_file_close(&f);
    return 0;
}
