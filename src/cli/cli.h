/* The dl4c command: shared helpers of the subcommands. */
#ifndef DL4C_CLI_H
#define DL4C_CLI_H

#include "dl4c/dl4c.h"
#include "dl4c/io.h"

/* Exit codes: 0 ok, 1 other failure, 2 bad usage or bad input, 130 interrupted. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* Prints "dl4c CMD: message" to stderr and returns the exit code for status s. */
int cli_fail(const char *cmd, dl4c_status s);
/* Prints a usage error and returns EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses a positive (or non-negative when allow_zero) integer flag value. */
bool cli_parse_int(const char *cmd, const char *flag, const char *v, bool allow_zero, int *out);

/* How data files are read. */
typedef struct cli_data_opts {
    const char *dir;          /* --data DIR (MNIST layout) */
    const char *train;        /* --train PATH (IDX images or CSV) */
    const char *test;         /* --test PATH */
    dl4c_csv_opts csv;        /* --label-column, --header, --regression, --classes */
} cli_data_opts;

bool cli_is_csv(const char *path);
/* Loads one file (IDX images with labels beside, or CSV). */
dl4c_status cli_load_file(const char *path, const dl4c_csv_opts *csv, dl4c_dataset **out);
/* Loads train and/or test sets per the options (either output may be NULL). */
dl4c_status cli_load_data(const cli_data_opts *o, dl4c_dataset **train, dl4c_dataset **test);
/* Path of the train/test file named by the options ("" if none). */
dl4c_status cli_data_paths(const cli_data_opts *o, char *train, char *test, size_t n);
/* Rows [start, start + count) of a file (count < 0: to the end). */
dl4c_status cli_load_range(const char *path, const dl4c_csv_opts *csv, int64_t start, int64_t count,
                           dl4c_dataset **out);
dl4c_status cli_count(const char *path, const dl4c_csv_opts *csv, int64_t *n);
/* Checks a dataset against a network's input and output sizes; names `what` in messages. */
dl4c_status cli_check_data(const dl4c_net *net, const dl4c_dataset *ds, const char *what);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);

#endif
