/* dl4c: the command-line tool. `dl4c <command> [options]`; each command has --help. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *const usage =
    "usage: dl4c <command> [options]\n"
    "\n"
    "Deep learning for C: train, evaluate and serve neural networks on one machine or many.\n"
    "\n"
    "commands:\n"
    "  train CONFIG    train a network from a JSON/YAML configuration\n"
    "  eval            evaluate a saved model on a test set\n"
    "  predict         class and probabilities for each input\n"
    "  info            summary of a saved model (layers, shapes, parameters)\n"
    "\n"
    "`dl4c <command> --help` for a command's options. Exit codes: 0 ok, 2 bad usage or bad\n"
    "input, 1 other failure, 130 interrupted (a checkpoint was written).\n";

int cli_fail(const char *cmd, dl4c_status s) {
    fprintf(stderr, "dl4c %s: %s\n", cmd, dl4c_error_message()[0] ? dl4c_error_message() : dl4c_status_str(s));
    if (s == DL4C_ERR_INTERRUPTED) return EXIT_INTERRUPTED;
    return dl4c_status_is_user_error(s) ? EXIT_USAGE : EXIT_FAIL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "dl4c %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see `dl4c %s --help`)\n", cmd);
    va_end(ap);
    return EXIT_USAGE;
}

bool cli_parse_int(const char *cmd, const char *flag, const char *v, bool allow_zero, int *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < (allow_zero ? 0 : 1) || x > 1000000000) {
        cli_usage_error(cmd, "%s: expected a %s integer, got \"%s\"", flag,
                        allow_zero ? "non-negative" : "positive", v ? v : "");
        return false;
    }
    *out = (int)x;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        puts("dl4c 0.1.0");
        return EXIT_OK;
    }
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "dl4c: unknown command \"%s\"\n\n%s", cmd, usage);
    return EXIT_USAGE;
}
