/* dl4c eval / predict / info: commands on a saved model. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *const eval_help =
    "usage: dl4c eval -m MODEL (--data DIR | --test PATH) [--json]\n"
    "\n"
    "Evaluates MODEL on a test set: classification as DL4J's Evaluation.stats() (accuracy,\n"
    "macro precision/recall/F1, confusion matrix with actual classes as rows), regression as\n"
    "MSE/MAE/RMSE/R^2 per column. --json prints one JSON object instead.\n"
    "  -m, --model MODEL     model file written by dl4c train\n"
    "  --data DIR            MNIST layout (the t10k-* files are used)\n"
    "  --test PATH           IDX images file (labels beside it) or CSV file\n"
    "  --label-column N, --header, --regression, --label-columns N, --classes K   CSV options\n"
    "  --batch N             examples per forward pass (default 256)\n"
    "  --json                JSON output\n";

static const char *const predict_help =
    "usage: dl4c predict -m MODEL --input PATH [--format csv|json]\n"
    "\n"
    "Prints, for each input example, the predicted class and the probability of every class\n"
    "(regression models: the predicted values).\n"
    "  -m, --model MODEL     model file written by dl4c train\n"
    "  --input PATH          IDX images file, or CSV file of feature columns only (no label)\n"
    "  --format csv|json     csv (default): index,class,p0,p1,...; json: one object per line\n"
    "  --header              CSV: the first line is a header (default: detected)\n";

static const char *const info_help =
    "usage: dl4c info -m MODEL\n"
    "\n"
    "Prints a summary of MODEL like DL4J's summary(): layers, output shapes, parameter counts,\n"
    "then the updater and the training progress stored in the file.\n";

enum { O_DATA = 256, O_TEST, O_JSON, O_INPUT, O_FORMAT, O_LABELCOL, O_HEADER, O_REGRESSION, O_LABELCOLS,
       O_CLASSES, O_BATCH };

static int bad_option(const char *cmd, char **argv) {
    if (optopt > 0 && optopt < 256) return cli_usage_error(cmd, "option -%c: unknown or missing its value", optopt);
    /* a long option without its value: getopt_long sets optopt to the option's (>= 256) code */
    if (optopt) return cli_usage_error(cmd, "option %s: missing its value", argv[optind - 1]);
    return cli_usage_error(cmd, "unknown option \"%s\"", argv[optind - 1]);
}

int cmd_eval(int argc, char **argv) {
    const char *cmd = "eval";
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"data", required_argument, 0, O_DATA}, {"test", required_argument, 0, O_TEST},
        {"json", no_argument, 0, O_JSON}, {"label-column", required_argument, 0, O_LABELCOL},
        {"header", no_argument, 0, O_HEADER}, {"regression", no_argument, 0, O_REGRESSION},
        {"label-columns", required_argument, 0, O_LABELCOLS}, {"classes", required_argument, 0, O_CLASSES},
        {"batch", required_argument, 0, O_BATCH}, {0, 0, 0, 0}};
    cli_data_opts data = {.csv = dl4c_csv_opts_default()};
    const char *model = NULL;
    int json = 0, batch = 256, v, opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "hm:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(eval_help, stdout); return EXIT_OK;
        case 'm': model = optarg; break;
        case O_DATA: data.dir = optarg; break;
        case O_TEST: data.test = optarg; break;
        case O_JSON: json = 1; break;
        case O_LABELCOL: data.csv.label_column = atoi(optarg); break;
        case O_HEADER: data.csv.header = true; break;
        case O_REGRESSION: data.csv.regression = true; break;
        case O_LABELCOLS: if (!cli_parse_int(cmd, "--label-columns", optarg, false, &v)) return EXIT_USAGE; data.csv.n_label_columns = v; break;
        case O_CLASSES: if (!cli_parse_int(cmd, "--classes", optarg, false, &v)) return EXIT_USAGE; data.csv.n_classes = v; break;
        case O_BATCH: if (!cli_parse_int(cmd, "--batch", optarg, false, &batch)) return EXIT_USAGE; break;
        default: return bad_option(cmd, argv);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (!model) return cli_usage_error(cmd, "missing -m MODEL");
    if (!data.dir == !data.test) return cli_usage_error(cmd, "give exactly one of --data DIR or --test PATH");
    dl4c_net *net = NULL;
    dl4c_dataset *test = NULL;
    dl4c_eval *ev = NULL;
    dl4c_regeval *rev = NULL;
    char *text = NULL;
    dl4c_status s = dl4c_model_load(model, &net, NULL);
    if (!s) s = cli_load_data(&data, NULL, &test);
    if (!s) s = cli_check_data(net, test, data.test ? data.test : data.dir);
    if (!s) s = dl4c_net_evaluate(net, test, batch, &ev, &rev);
    if (!s) {
        if (ev) s = json ? dl4c_eval_to_json(ev, &text) : dl4c_eval_stats(ev, &text);
        else s = json ? dl4c_regeval_to_json(rev, &text) : dl4c_regeval_stats(rev, &text);
    }
    int code = s ? cli_fail(cmd, s) : EXIT_OK;
    if (!s) printf("%s\n", text);
    free(text);
    dl4c_eval_free(ev);
    dl4c_regeval_free(rev);
    dl4c_dataset_free(test);
    dl4c_net_free(net);
    return code;
}

int cmd_predict(int argc, char **argv) {
    const char *cmd = "predict";
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'},
        {"input", required_argument, 0, O_INPUT}, {"format", required_argument, 0, O_FORMAT},
        {"header", no_argument, 0, O_HEADER}, {0, 0, 0, 0}};
    const char *model = NULL, *input = NULL, *format = "csv";
    bool header = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "hm:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(predict_help, stdout); return EXIT_OK;
        case 'm': model = optarg; break;
        case O_INPUT: input = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_HEADER: header = true; break;
        default: return bad_option(cmd, argv);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (!model) return cli_usage_error(cmd, "missing -m MODEL");
    if (!input) return cli_usage_error(cmd, "missing --input PATH");
    const bool as_json = !strcmp(format, "json");
    if (!as_json && strcmp(format, "csv")) return cli_usage_error(cmd, "--format: expected csv or json, got \"%s\"", format);
    dl4c_net *net = NULL;
    dl4c_dataset *ds = NULL;
    dl4c_status s = dl4c_model_load(model, &net, NULL);
    if (!s) {
        if (cli_is_csv(input)) {
            /* Columns: the input's features, optionally followed by a label column (ignored).
             * Read with the last column as a target, then put it back when it is a feature. */
            dl4c_csv_opts o = dl4c_csv_opts_default();
            o.header = header;
            o.regression = true;
            o.n_label_columns = 1;
            s = dl4c_csv_load(input, &o, &ds);
            const int64_t f = s ? 0 : dl4c_tensor_row_size(ds->features);
            if (!s && f + 1 == dl4c_net_input_size(net)) {
                const int64_t rows = dl4c_dataset_count(ds), shape[2] = {rows, f + 1};
                dl4c_tensor *all = dl4c_tensor_new(2, shape);
                if (!all) s = DL4C_ERR_NOMEM;
                for (int64_t r = 0; !s && r < rows; r++) {
                    memcpy(all->data + r * (f + 1), ds->features->data + r * f, sizeof(float) * (size_t)f);
                    all->data[r * (f + 1) + f] = ds->labels->data[r];
                }
                if (!s) { dl4c_tensor_free(ds->features); ds->features = all; }
            }
        } else {
            s = cli_load_file(input, NULL, &ds);
        }
    }
    if (!s && dl4c_tensor_row_size(ds->features) != dl4c_net_input_size(net))
        s = dl4c_error(DL4C_ERR_SHAPE, "%s: examples have %lld features, the network's input takes %lld", input,
                       (long long)dl4c_tensor_row_size(ds->features), (long long)dl4c_net_input_size(net));
    const int64_t n = s ? 0 : dl4c_dataset_count(ds), in = net ? dl4c_net_input_size(net) : 0;
    const int64_t K = net ? dl4c_net_output_size(net) : 0;
    const bool classify = net && dl4c_net_conf_of(net)->layers[dl4c_net_n_layers(net) - 1].loss != DL4C_LOSS_MSE;
    float *out = s ? NULL : malloc(sizeof(float) * (size_t)(256 * K));
    if (!s && !out) s = dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    if (!s && !as_json) {
        printf("index,%s", classify ? "class" : "");
        for (int64_t k = 0; k < K; k++) printf("%s%s%lld", k || classify ? "," : "", classify ? "p" : "y", (long long)k);
        printf("\n");
    }
    for (int64_t i = 0; !s && i < n; i += 256) {
        const int b = (int)(n - i < 256 ? n - i : 256);
        if ((s = dl4c_net_output(net, ds->features->data + i * in, b, out))) break;
        for (int j = 0; j < b; j++) {
            const float *p = out + (int64_t)j * K;
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++) if (p[k] > p[best]) best = k;
            if (as_json) {
                printf("{\"index\":%lld,", (long long)(i + j));
                if (classify) printf("\"class\":%lld,\"probabilities\":[", (long long)best);
                else printf("\"values\":[");
                for (int64_t k = 0; k < K; k++) printf("%s%.9g", k ? "," : "", p[k]);
                printf("]}\n");
            } else {
                printf("%lld", (long long)(i + j));
                if (classify) printf(",%lld", (long long)best);
                for (int64_t k = 0; k < K; k++) printf(",%.9g", p[k]);
                printf("\n");
            }
        }
    }
    int code = s ? cli_fail(cmd, s) : EXIT_OK;
    free(out);
    dl4c_dataset_free(ds);
    dl4c_net_free(net);
    return code;
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {"model", required_argument, 0, 'm'}, {0, 0, 0, 0}};
    const char *model = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "hm:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h': fputs(info_help, stdout); return EXIT_OK;
        case 'm': model = optarg; break;
        default: return bad_option(cmd, argv);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument \"%s\"", argv[optind]);
    if (!model) return cli_usage_error(cmd, "missing -m MODEL");
    dl4c_net *net = NULL;
    dl4c_progress pr;
    dl4c_status s = dl4c_model_load(model, &net, &pr);
    if (s) return cli_fail(cmd, s);
    const dl4c_net_conf *c = dl4c_net_conf_of(net);
    printf("=========================================================================\n");
    printf("%-4s %-16s %-10s %-16s %-16s %10s\n", "#", "layer", "activation", "input (CxHxW)", "output (CxHxW)", "params");
    printf("=========================================================================\n");
    for (int i = 0; i < dl4c_net_n_layers(net); i++) {
        const dl4c_layer_info li = dl4c_net_layer_info(net, i);
        char ins[32], outs[32], kind[32];
        snprintf(ins, sizeof ins, "%lldx%lldx%lld", (long long)li.in_shape[0], (long long)li.in_shape[1], (long long)li.in_shape[2]);
        snprintf(outs, sizeof outs, "%lldx%lldx%lld", (long long)li.out_shape[0], (long long)li.out_shape[1], (long long)li.out_shape[2]);
        const dl4c_layer_conf *l = &c->layers[i];
        if (l->type == DL4C_LAYER_SUBSAMPLING) snprintf(kind, sizeof kind, "%s-%s", dl4c_layer_type_str(l->type), dl4c_pooling_str(l->pooling));
        else snprintf(kind, sizeof kind, "%s", dl4c_layer_type_str(l->type));
        printf("%-4d %-16s %-10s %-16s %-16s %10lld\n", i, kind,
               l->type == DL4C_LAYER_SUBSAMPLING ? "-" : dl4c_activation_str(l->activation), ins, outs, (long long)li.n_params);
    }
    printf("-------------------------------------------------------------------------\n");
    printf("Total parameters: %lld\n", (long long)dl4c_net_n_params(net));
    printf("Updater: %s (learning rate %g), l1 %g, l2 %g, seed %llu\n", dl4c_updater_str(c->updater.type),
           c->updater.learning_rate, c->l1, c->l2, (unsigned long long)c->seed);
    printf("Updater state in file: %s; steps taken: %lld\n", pr.has_updater ? "yes" : "no", (long long)dl4c_net_step(net));
    printf("Training progress: epoch %d, round %lld, iteration %lld, workers %d\n", pr.epoch, (long long)pr.round,
           (long long)pr.iteration, pr.workers);
    if (pr.has_workers)
        printf("Checkpoint inside round %lld: holds the state of each of the %d workers (dl4c train --resume)\n",
               (long long)pr.round + 1, pr.workers);
    printf("=========================================================================\n");
    dl4c_net_free(net);
    return EXIT_OK;
}
