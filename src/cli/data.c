/* Data files named on the command line: IDX (MNIST layout) or CSV. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

bool cli_is_csv(const char *path) {
    const size_t n = strlen(path);
    return (n >= 4 && !strcasecmp(path + n - 4, ".csv")) || (n >= 7 && !strcasecmp(path + n - 7, ".csv.gz")) ||
           (n >= 4 && !strcasecmp(path + n - 4, ".txt"));
}

static dl4c_status labels_for(const char *path, char *labels, size_t n) {
    /* its messages name the images file and the labels files looked for */
    return dl4c_idx_labels_path(path, labels, n);
}

dl4c_status cli_load_file(const char *path, const dl4c_csv_opts *csv, dl4c_dataset **out) {
    if (cli_is_csv(path)) return dl4c_csv_load(path, csv, out);
    char labels[4096];
    dl4c_status s = labels_for(path, labels, sizeof labels);
    if (s) return s;
    return dl4c_idx_load(path, labels, out);
}

dl4c_status cli_load_range(const char *path, const dl4c_csv_opts *csv, int64_t start, int64_t count,
                           dl4c_dataset **out) {
    if (cli_is_csv(path)) return dl4c_csv_load_range(path, csv, start, count, out);
    char labels[4096];
    dl4c_status s = labels_for(path, labels, sizeof labels);
    if (s) return s;
    return dl4c_idx_load_ex(path, labels, start, count, 0, out);
}

dl4c_status cli_count(const char *path, const dl4c_csv_opts *csv, int64_t *n) {
    if (cli_is_csv(path)) return dl4c_csv_count(path, csv, n);
    return dl4c_idx_count(path, n);
}

/* The MNIST file of a directory: name-ubyte or name-ubyte.gz (or name.ubyte style). */
static dl4c_status dir_file(const char *dir, const char *stem, char *out, size_t n) {
    static const char *const forms[] = {"%s/%s-idx3-ubyte.gz", "%s/%s-idx3-ubyte", "%s/%s.idx3-ubyte.gz", "%s/%s.idx3-ubyte"};
    struct stat st;
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(out, n, forms[i], dir, stem);
        if (stat(out, &st) == 0) return DL4C_OK;
    }
    return dl4c_error(DL4C_ERR_IO, "%s: no %s-idx3-ubyte[.gz] file in this directory", dir, stem);
}

dl4c_status cli_data_paths(const cli_data_opts *o, char *train, char *test, size_t n) {
    train[0] = test[0] = '\0';
    dl4c_status s;
    if (o->dir) {
        struct stat st;
        if (stat(o->dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return dl4c_error(DL4C_ERR_IO, "--data %s: not a directory", o->dir);
        if ((s = dir_file(o->dir, "train-images", train, n))) return s;
        if ((s = dir_file(o->dir, "t10k-images", test, n))) return s;
        return DL4C_OK;
    }
    if (o->train) snprintf(train, n, "%s", o->train);
    if (o->test) snprintf(test, n, "%s", o->test);
    return DL4C_OK;
}

dl4c_status cli_load_data(const cli_data_opts *o, dl4c_dataset **train, dl4c_dataset **test) {
    if (train) *train = NULL;
    if (test) *test = NULL;
    char tp[4096], sp[4096];
    dl4c_status s = cli_data_paths(o, tp, sp, sizeof tp);
    if (s) return s;
    if (train && tp[0] && (s = cli_load_file(tp, &o->csv, train))) return s;
    if (test && sp[0] && (s = cli_load_file(sp, &o->csv, test))) {
        if (train) { dl4c_dataset_free(*train); *train = NULL; }
        return s;
    }
    return DL4C_OK;
}

dl4c_status cli_check_data(const dl4c_net *net, const dl4c_dataset *ds, const char *what) {
    const int64_t f = dl4c_tensor_row_size(ds->features), k = ds->labels->shape[1];
    if (f != dl4c_net_input_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "%s: examples have %lld features, the network's input takes %lld",
                          what, (long long)f, (long long)dl4c_net_input_size(net));
    if (k != dl4c_net_output_size(net))
        return dl4c_error(DL4C_ERR_SHAPE, "%s: labels have %lld %s, the network has %lld outputs", what,
                          (long long)k, ds->n_classes ? "classes" : "columns", (long long)dl4c_net_output_size(net));
    return DL4C_OK;
}
