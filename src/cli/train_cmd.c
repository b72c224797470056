/* dl4c train: configuration + data -> trained model, with local threads or MPI ranks. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli/cli.h"
#include "nn/layer.h"

static const char *const train_help =
    "usage: dl4c train CONFIG [options]\n"
    "\n"
    "Trains the network of CONFIG (JSON or YAML) with parameter averaging over workers, then\n"
    "prints the test-set evaluation (as DL4J's Evaluation.stats()).\n"
    "\n"
    "data:\n"
    "  --data DIR                    MNIST layout: train-images-idx3-ubyte[.gz], t10k-... and labels\n"
    "  --train PATH --test PATH      IDX images file (labels found beside it) or CSV file\n"
    "  --label-column N              CSV: 0-based label column (default: last; negative counts from the end)\n"
    "  --header                      CSV: the first line is a header (default: detected)\n"
    "  --regression                  CSV: label columns are real-valued targets\n"
    "  --label-columns N             CSV regression: number of target columns (default 1)\n"
    "  --classes K                   CSV classification: number of classes (default: max label + 1)\n"
    "training (override the config's \"training\" section):\n"
    "  --epochs N                    epochs\n"
    "  --workers N                   data-parallel workers (threads, or ranks with --dist mpi)\n"
    "  --batch-size-per-worker N     examples per minibatch per worker\n"
    "  --averaging-frequency N       minibatches per worker between parameter averagings\n"
    "  --averaging plain|bmuf        averaging mode (bmuf: block momentum, Chen & Huo 2016)\n"
    "  --block-momentum M            bmuf: block momentum in [0, 1) (default 1 - 1/workers; with the\n"
    "                                seed's Adagrad 0.1 that default collapses training: 0.25 helped)\n"
    "  --block-learning-rate R       bmuf: block learning rate (default 1)\n"
    "  --prefetch N                  minibatches prepared ahead by a thread per worker\n"
    "  --save-updater / --no-save-updater   average and keep the updater state\n"
    "  --seed N                      seed for initialisation, shuffling and partitioning\n"
    "  --threads N                   BLAS threads in all (default: 1 per worker; one worker gets\n"
    "                                all N); worker threads x BLAS threads never exceed N. One worker\n"
    "                                on N CPU threads may run each minibatch as N slices: the same N\n"
    "                                gives the same model, another N differs by rounding\n"
    "  --dist local|mpi|nccl         local threads (default), MPI ranks (mpirun -np N dl4c train --dist mpi ...),\n"
    "                                or MPI ranks averaging through NCCL, one GPU each (--dist nccl)\n"
    "  --device cpu|cuda|cuda:N      where each worker computes (default cpu; cuda needs a CUDA build)\n"
    "  --tf32                        cuda: TF32 tensor-core math (faster; results differ from the CPU's more)\n"
    "  --on-nan stop|skip-batch      a NaN or infinite loss, gradient or update: stop with a message naming\n"
    "                                the layer and iteration (default), or drop that minibatch's update\n"
    "resources:\n"
    "  --stream                      read the training data from its file in blocks of minibatches instead of\n"
    "                                loading it whole (automatic when it would not fit in memory)\n"
    "  --memory-limit SIZE           memory the run may use, e.g. 512M or 4G (default: MemAvailable in\n"
    "                                /proc/meminfo); a run estimated to need more is refused before training\n"
    "output:\n"
    "  -o, --output MODEL            write the trained model (safetensors) to MODEL\n"
    "  --metrics-out FILE            one JSON line per round and per epoch (loss, accuracy,\n"
    "                                examples/s, seconds, per-worker fit/wait/average times)\n"
    "  --checkpoint-every M          write a checkpoint every M averaging rounds\n"
    "  --checkpoint PATH             checkpoint file (default: MODEL.ckpt, or dl4c-checkpoint.safetensors)\n"
    "  --resume PATH                 continue from a checkpoint or model file written by dl4c train\n"
    "  --json                        print the final evaluation as JSON\n"
    "  -q, --quiet                   no progress output\n"
    "\n"
    "SIGINT/SIGTERM finish the minibatch in progress, write a checkpoint (with every worker's state when\n"
    "a round is cut short, so --resume gives the same model as an undisturbed run) and exit 130; a second\n"
    "one exits at once, removing a file being written.\n"
    "Outputs (-o, --checkpoint, --metrics-out) are checked for being writable, and for room for the model\n"
    "file, before training; model files are written to a temporary name and renamed, never left truncated.\n";

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    if (stop_requested) {   /* second signal: leave now (files are written by rename, so none is torn) */
        dl4c_model_abandon_save();
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_requested = 1;
    static const char msg[] = "\ndl4c train: stopping after this minibatch (a second signal exits at once)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

typedef struct train_ctx {
    bool quiet, tty;               /* no progress / progress bar on a terminal */
    FILE *metrics;                 /* --metrics-out, or NULL (opened for append: nothing is
                                    * truncated before training writes its first line) */
    bool metrics_started;          /* the file has been emptied for this run's lines */
    int epochs;                    /* for the progress line */
    double last_log;               /* time of the last plain progress line */
    double *fit, *wait, *avg;      /* per-worker totals over the run */
    int workers;
    const char *checkpoint_path;   /* where checkpoints go */
    int checkpoints;               /* checkpoints written */
    dl4c_train_state last_checkpoint; /* progress of the last one */
    uint64_t seed;
    char *final_stats;             /* evaluation text of the last epoch */
    char *final_json;
    double final_accuracy;
} train_ctx;

/* The first line of this run empties the metrics file (opened without truncating, so bad
 * input never costs a user the previous run's metrics). */
static void metrics_begin(train_ctx *c) {
    if (c->metrics_started) return;
    fflush(c->metrics);
    if (ftruncate(fileno(c->metrics), 0) != 0) clearerr(c->metrics);
    c->metrics_started = true;
}

static void on_round(void *p, const dl4c_round_info *r) {
    train_ctx *c = p;
    if (c->metrics) {
        metrics_begin(c);
        fprintf(c->metrics, "{\"type\":\"round\",\"epoch\":%d,\"round\":%lld,\"rounds\":%lld,\"loss\":%.6g,"
                "\"examples\":%lld,\"seconds\":%.4f,\"fit_s\":[", r->epoch + 1, (long long)r->round,
                (long long)r->rounds, isfinite(r->loss) ? r->loss : 0, (long long)r->examples_done, r->seconds);
        for (int w = 0; w < r->workers; w++) fprintf(c->metrics, "%s%.5f", w ? "," : "", r->worker_times[3 * w]);
        fprintf(c->metrics, "],\"wait_s\":[");
        for (int w = 0; w < r->workers; w++) fprintf(c->metrics, "%s%.5f", w ? "," : "", r->worker_times[3 * w + 1]);
        fprintf(c->metrics, "],\"avg_s\":[");
        for (int w = 0; w < r->workers; w++) fprintf(c->metrics, "%s%.5f", w ? "," : "", r->worker_times[3 * w + 2]);
        fprintf(c->metrics, "]}\n");
    }
    if (c->quiet) return;
    const double rate = r->seconds > 0 ? r->examples_done / r->seconds : 0;
    const double eta = rate > 0 ? (r->examples_total - r->examples_done) / rate : 0;
    if (c->tty) {
        const int width = 30;
        const int done = (int)(width * r->round / (r->rounds ? r->rounds : 1));
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : (i == done ? '>' : ' ');
        bar[width] = '\0';
        fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld  %.0f ex/s  loss %.4f  ETA %.0fs ", r->epoch + 1,
                c->epochs, bar, (long long)r->examples_done, (long long)r->examples_total, rate, r->loss, eta);
        if (r->round == r->rounds) fputc('\n', stderr);
    } else {
        const double now = dl4c_now();
        if (now - c->last_log >= 10.0 || r->round == r->rounds) {
            c->last_log = now;
            fprintf(stderr, "dl4c train: epoch %d/%d round %lld/%lld  %lld/%lld examples  %.0f ex/s  loss %.4f  ETA %.0fs\n",
                    r->epoch + 1, c->epochs, (long long)r->round, (long long)r->rounds,
                    (long long)r->examples_done, (long long)r->examples_total, rate, r->loss, eta);
        }
    }
}

static void on_epoch(void *p, const dl4c_epoch_info *e) {
    train_ctx *c = p;
    const double acc = e->eval ? dl4c_eval_accuracy(e->eval) : NAN;
    for (int w = 0; w < e->workers && w < c->workers; w++) {
        c->fit[w] += e->worker_fit_s[w];
        c->wait[w] += e->worker_wait_s[w];
        c->avg[w] += e->worker_avg_s[w];
    }
    if (c->metrics) {
        metrics_begin(c);
        fprintf(c->metrics, "{\"type\":\"epoch\",\"epoch\":%d,\"loss\":%.6g,", e->epoch + 1, isfinite(e->loss) ? e->loss : 0);
        if (e->eval) fprintf(c->metrics, "\"accuracy\":%.6f,", acc);
        else fprintf(c->metrics, "\"accuracy\":null,");
        if (e->regeval) fprintf(c->metrics, "\"mse\":%.6g,", dl4c_regeval_mse(e->regeval, 0));
        fprintf(c->metrics, "\"examples\":%lld,\"examples_per_s\":%.1f,\"seconds\":%.3f,\"rounds\":%lld,\"workers\":%d,\"fit_s\":[",
                (long long)e->examples, e->examples_per_s, e->seconds, (long long)e->rounds, e->workers);
        for (int w = 0; w < e->workers; w++) fprintf(c->metrics, "%s%.4f", w ? "," : "", e->worker_fit_s[w]);
        fprintf(c->metrics, "],\"wait_s\":[");
        for (int w = 0; w < e->workers; w++) fprintf(c->metrics, "%s%.4f", w ? "," : "", e->worker_wait_s[w]);
        fprintf(c->metrics, "],\"avg_s\":[");
        for (int w = 0; w < e->workers; w++) fprintf(c->metrics, "%s%.4f", w ? "," : "", e->worker_avg_s[w]);
        fprintf(c->metrics, "]}\n");
        fflush(c->metrics);
    }
    if (!c->quiet) {
        fprintf(stderr, "dl4c train: epoch %d done: loss %.4f, %.0f examples/s, %.1f s", e->epoch + 1, e->loss,
                e->examples_per_s, e->seconds);
        if (e->eval) fprintf(stderr, ", test accuracy %.4f", acc);
        if (e->regeval) fprintf(stderr, ", test MSE %.6g", dl4c_regeval_mse(e->regeval, 0));
        fputc('\n', stderr);
    }
    free(c->final_stats); free(c->final_json);
    c->final_stats = c->final_json = NULL;
    if (e->eval) {
        dl4c_eval_stats(e->eval, &c->final_stats);
        dl4c_eval_to_json(e->eval, &c->final_json);
        c->final_accuracy = acc;
    } else if (e->regeval) {
        dl4c_regeval_stats(e->regeval, &c->final_stats);
        dl4c_regeval_to_json(e->regeval, &c->final_json);
    }
}

static void on_checkpoint(void *p, const char *path, const dl4c_train_state *s) {
    train_ctx *c = p;
    c->checkpoints++;
    c->last_checkpoint = *s;
    if (!c->quiet && s->partial)
        fprintf(stderr, "%sdl4c train: checkpoint written to %s (epoch %d, in round %lld after minibatch %lld of "
                "worker 0)\n", c->tty ? "\n" : "", c->checkpoint_path, s->epoch + 1, (long long)s->round + 1,
                (long long)s->partial->batches[0]);
    else if (!c->quiet)
        fprintf(stderr, "%sdl4c train: checkpoint written to %s (epoch %d, round %lld)\n", c->tty ? "\n" : "",
                c->checkpoint_path, s->epoch + 1, (long long)s->round);
}

static dl4c_progress progress_of(const dl4c_net *net, const dl4c_train_state *s, int workers) {
    const dl4c_net_conf *conf = dl4c_net_conf_of(net);
    return (dl4c_progress){.epoch = s->epoch, .round = s->round, .iteration = s->iteration,
                           .seed = conf->seed, .workers = workers, .loss = s->loss,
                           .has_updater = dl4c_net_n_updater_state(net) > 0};
}

static dl4c_status write_checkpoint(void *p, const dl4c_net *net, const dl4c_train_state *s) {
    train_ctx *c = p;
    dl4c_progress pr = progress_of(net, s, c->workers);
    return dl4c_model_save_train_checkpoint(net, &pr, s->bmuf_delta, s->partial, c->checkpoint_path);
}

/* ---- Data read from the files by each worker: MPI ranks (each keeps only its own rows)
 * and streaming (each worker holds one block of minibatches at a time) ---- */

/* One worker's rows: a rank's, or a local thread's when streaming. */
typedef struct file_part {
    dl4c_dataset *part;                  /* the rows acquired, in training order */
    dl4c_dataset *test_shard;            /* this worker's rows of the test file */
    int64_t *identity;                   /* 0..n-1 */
} file_part;

typedef struct file_data {
    const char *train_path, *test_path;  /* files */
    const dl4c_csv_opts *csv;
    int64_t total;                       /* rows in the training file */
    int64_t chunk;                       /* rows read from the file at a time */
    file_part *parts;                    /* [workers], by worker (rank) */
} file_data;

static int cmp_pair(const void *a, const void *b) {
    const int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return (x > y) - (x < y);
}

static void file_release(void *p, int worker) {
    file_part *fp = &((file_data *)p)->parts[worker];
    dl4c_dataset_free(fp->part);
    fp->part = NULL;
    dl4c_free(fp->identity);
    fp->identity = NULL;
}

/* Reads the file in chunks and keeps `rows` (in the given order): memory holds one chunk and
 * these rows, never the whole file. */
static dl4c_status file_acquire(void *p, int worker, const int64_t *rows, int64_t n,
                                const dl4c_dataset **ds, const int64_t **idx) {
    file_data *d = p;
    file_part *fp = &d->parts[worker];
    file_release(p, worker);
    const int64_t total = d->total;
    dl4c_status s = DL4C_OK;
    int64_t *pairs = malloc(sizeof(int64_t) * 2 * (size_t)(n ? n : 1));
    fp->identity = dl4c_alloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!pairs || !fp->identity) { free(pairs); return dl4c_error(DL4C_ERR_NOMEM, "out of memory"); }
    for (int64_t i = 0; i < n; i++) { pairs[2 * i] = rows[i]; pairs[2 * i + 1] = i; fp->identity[i] = i; }
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), cmp_pair);
    const int64_t chunk = d->chunk > 0 ? d->chunk : total / 8 + 1;
    dl4c_tensor *f = NULL, *l = NULL;
    int n_classes = 0;
    int64_t j = 0;
    for (int64_t start = 0; start < total && j < n && !s; start += chunk) {
        dl4c_dataset *c = NULL;
        const int64_t cnt = start + chunk <= total ? chunk : total - start;
        if (pairs[2 * j] >= start + cnt) continue;
        if ((s = cli_load_range(d->train_path, d->csv, start, cnt, &c))) break;
        if (!f) {
            int64_t fs[DL4C_MAX_DIMS], ls[2] = {n, c->labels->shape[1]};
            memcpy(fs, c->features->shape, sizeof fs);
            fs[0] = n;
            f = dl4c_tensor_new(c->features->ndim, fs);
            l = dl4c_tensor_new(2, ls);
            n_classes = c->n_classes;
            if (!f || !l) { dl4c_dataset_free(c); s = DL4C_ERR_NOMEM; break; }
        }
        const int64_t fr = dl4c_tensor_row_size(f), lr = l->shape[1];
        for (; j < n && pairs[2 * j] < start + cnt; j++) {
            const int64_t src = pairs[2 * j] - start, dst = pairs[2 * j + 1];
            memcpy(f->data + dst * fr, c->features->data + src * fr, sizeof(float) * (size_t)fr);
            memcpy(l->data + dst * lr, c->labels->data + src * lr, sizeof(float) * (size_t)lr);
        }
        dl4c_dataset_free(c);
    }
    free(pairs);
    if (!s && (!f || !l)) {   /* no rows for this worker: an empty dataset of the right width */
        dl4c_dataset *c = NULL;
        if (!(s = cli_load_range(d->train_path, d->csv, 0, 1, &c))) {
            int64_t fs[DL4C_MAX_DIMS], ls[2] = {0, c->labels->shape[1]};
            memcpy(fs, c->features->shape, sizeof fs);
            fs[0] = 0;
            f = dl4c_tensor_new(c->features->ndim, fs);
            l = dl4c_tensor_new(2, ls);
            n_classes = c->n_classes;
            dl4c_dataset_free(c);
        }
    }
    if (s) { dl4c_tensor_free(f); dl4c_tensor_free(l); return s; }
    if ((s = dl4c_dataset_new(f, l, n_classes, &fp->part))) return s;
    *ds = fp->part;
    *idx = fp->identity;
    return DL4C_OK;
}

static dl4c_status file_test_shard(void *p, int worker, int workers, const dl4c_dataset **ds) {
    file_data *d = p;
    file_part *fp = &d->parts[worker];
    *ds = NULL;
    if (!d->test_path || !d->test_path[0]) return DL4C_OK;
    if (!fp->test_shard) {
        int64_t n;
        dl4c_status s = cli_count(d->test_path, d->csv, &n);
        if (s) return s;
        const int64_t lo = n * worker / workers, hi = n * (worker + 1) / workers;
        if ((s = cli_load_range(d->test_path, d->csv, lo, hi - lo, &fp->test_shard))) return s;
    }
    *ds = fp->test_shard;
    return DL4C_OK;
}

/* The training file (and the test file, when it has rows) against the network, on the first row. */
static dl4c_status check_file_shapes(const dl4c_net *net, const char *tp, const char *sp, int64_t n_test,
                                     const dl4c_csv_opts *csv) {
    char what[4200];
    dl4c_dataset *first = NULL;
    snprintf(what, sizeof what, "training data %s", tp);
    dl4c_status s = cli_load_range(tp, csv, 0, 1, &first);
    if (!s) s = cli_check_data(net, first, what);
    dl4c_dataset_free(first);
    first = NULL;
    snprintf(what, sizeof what, "test data %s", sp);
    if (!s && sp[0] && n_test > 0 && !(s = cli_load_range(sp, csv, 0, 1, &first)))
        s = cli_check_data(net, first, what);
    dl4c_dataset_free(first);
    return s;
}

static void file_data_free(file_data *d, int workers) {
    if (!d->parts) return;
    for (int w = 0; w < workers; w++) {
        file_release(d, w);
        dl4c_dataset_free(d->parts[w].test_shard);
    }
    free(d->parts);
    d->parts = NULL;
}

/* ---- Resources: memory estimate, room for the output files ---- */

static const char *human(double bytes, char *buf, size_t n) {
    static const char *const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) { bytes /= 1024; u++; }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

/* Parses "512M", "4G", "123456" (bytes) into *out. */
static bool parse_size(const char *v, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || !(x > 0)) return false;
    switch (*end) {
    case 'k': case 'K': x *= 1024.0; end++; break;
    case 'm': case 'M': x *= 1024.0 * 1024; end++; break;
    case 'g': case 'G': x *= 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': x *= 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end) return false;
    *out = x;
    return true;
}

/* MemAvailable from /proc/meminfo in bytes (0 if unknown). */
static double mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

/* What one worker's network holds, from the configuration alone (nothing is allocated):
 * parameters, their gradients and updater state, and the floats per example of a batch
 * (activations, deltas, forward->backward and temporary scratch). */
typedef struct net_size {
    int64_t n_params;          /* parameters */
    int64_t state_floats;      /* params + grads + updater state (+ BMUF / skip-batch copies) */
    int64_t example_floats;    /* batch buffers per example */
    int64_t in_floats, out_floats; /* one example's input and label sizes */
} net_size;

static dl4c_status estimate_net(const dl4c_net_conf *conf, dl4c_on_nan on_nan, net_size *ns) {
    dl4c_net_conf *c = malloc(sizeof *c);
    if (!c) return dl4c_error(DL4C_ERR_NOMEM, "out of memory");
    *c = *conf;
    dl4c_status s = dl4c_net_conf_resolve(c);
    if (s) { free(c); return s; }
    int in[3] = {c->input.channels, c->input.height, c->input.width};
    const int64_t in_floats = (int64_t)in[0] * in[1] * in[2];
    int64_t n_params = 0, acts = 0, saved = 0, scratch = 0, max_size = in_floats;
    for (int i = 0; i < c->n_layers && !s; i++) {
        /* Host memory: sized as the CPU backend sizes its buffers. */
        dl4c_layer l = {.index = i, .conf = c->layers[i], .ops = dl4c_layer_ops_of(c->layers[i].type),
                        .be = dl4c_backend_cpu()};
        char path[32];
        snprintf(path, sizeof path, "layers[%d]", i);
        memcpy(l.in, in, sizeof in);
        if ((s = l.ops->resolve(&l.conf, l.in, l.out, path))) break;
        if (l.conf.type == DL4C_LAYER_CONV2D || l.conf.type == DL4C_LAYER_SUBSAMPLING) {
            int oh, ow;
            if ((s = dl4c_window_resolve(&l.conf, l.in, &oh, &ow, l.pad, path))) break;
        }
        l.in_size = (int64_t)l.in[0] * l.in[1] * l.in[2];
        l.out_size = (int64_t)l.out[0] * l.out[1] * l.out[2];
        l.ops->count(&l.conf, l.in, &l.n_weights, &l.n_bias);
        n_params += l.n_weights + l.n_bias;
        acts += l.out_size;
        if (l.out_size > max_size) max_size = l.out_size;
        saved += l.ops->saved_floats(&l, 1);
        const int64_t sc = l.ops->scratch_floats(&l, 1);
        if (sc > scratch) scratch = sc;
        memcpy(in, l.out, sizeof in);
    }
    const int slots = dl4c_updater_state_per_param(c->updater.type);
    ns->n_params = n_params;
    ns->state_floats = n_params * (2 + slots) + (c->training.averaging == DL4C_AVG_BMUF ? 2 * n_params : 0) +
                       (on_nan == DL4C_ON_NAN_SKIP_BATCH ? n_params * (1 + slots) : 0);
    ns->example_floats = acts + 2 * max_size + saved + scratch;
    ns->in_floats = in_floats;
    ns->out_floats = (int64_t)in[0] * in[1] * in[2];
    free(c);
    return s;
}

/* Checks that `path` can be created and that its file system (and the file size limit)
 * leave room for `need` bytes: a file of that size is reserved and removed again. */
static dl4c_status probe_output(const char *flag, const char *path, double need) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s.probe.XXXXXX", path);
    int fd = mkstemp(probe);
    if (fd < 0) return dl4c_error(DL4C_ERR_IO, "%s %s: cannot write there: %s", flag, path, strerror(errno));
    char a[32], b[32];
    dl4c_status s = DL4C_OK;
    struct rlimit rl;
    struct statvfs vfs;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (double)rl.rlim_cur < need) {
        s = dl4c_error(DL4C_ERR_IO, "%s %s: the model file needs about %s but the file size limit "
                       "(ulimit -f) is %s", flag, path, human(need, a, sizeof a),
                       human((double)rl.rlim_cur, b, sizeof b));
    } else if (fstatvfs(fd, &vfs) == 0 && (double)vfs.f_bavail * vfs.f_frsize < need) {
        s = dl4c_error(DL4C_ERR_IO, "%s %s: the model file needs about %s but its file system has "
                       "%s free", flag, path, human(need, a, sizeof a),
                       human((double)vfs.f_bavail * vfs.f_frsize, b, sizeof b));
    } else {
        const int e = posix_fallocate(fd, 0, (off_t)need);
        if (e && e != EOPNOTSUPP && e != EINVAL)
            s = dl4c_error(DL4C_ERR_IO, "%s %s: no room for the model file (about %s): %s", flag, path,
                           human(need, a, sizeof a), strerror(e));
    }
    close(fd);
    unlink(probe);
    return s;
}

int cmd_train(int argc, char **argv) {
    const char *cmd = "train";
    enum { O_DATA = 256, O_TRAIN, O_TEST, O_EPOCHS, O_WORKERS, O_BATCH, O_FREQ, O_PREFETCH, O_SAVEUPD,
           O_NOSAVEUPD, O_SEED, O_THREADS, O_METRICS, O_CKEVERY, O_CKPATH, O_RESUME, O_DIST, O_JSON,
           O_LABELCOL, O_HEADER, O_REGRESSION, O_LABELCOLS, O_CLASSES, O_AVERAGING, O_BLOCKMOM, O_BLOCKLR, O_ONNAN, O_STREAM,
           O_MEMLIMIT, O_DEVICE, O_TF32 };
    static const struct option longopts[] = {
        {"help", no_argument, 0, 'h'}, {"data", required_argument, 0, O_DATA},
        {"train", required_argument, 0, O_TRAIN}, {"test", required_argument, 0, O_TEST},
        {"epochs", required_argument, 0, O_EPOCHS}, {"workers", required_argument, 0, O_WORKERS},
        {"batch-size-per-worker", required_argument, 0, O_BATCH},
        {"averaging-frequency", required_argument, 0, O_FREQ}, {"prefetch", required_argument, 0, O_PREFETCH},
        {"save-updater", no_argument, 0, O_SAVEUPD}, {"no-save-updater", no_argument, 0, O_NOSAVEUPD},
        {"seed", required_argument, 0, O_SEED}, {"threads", required_argument, 0, O_THREADS},
        {"output", required_argument, 0, 'o'}, {"metrics-out", required_argument, 0, O_METRICS},
        {"checkpoint-every", required_argument, 0, O_CKEVERY}, {"checkpoint", required_argument, 0, O_CKPATH},
        {"resume", required_argument, 0, O_RESUME}, {"dist", required_argument, 0, O_DIST},
        {"json", no_argument, 0, O_JSON}, {"quiet", no_argument, 0, 'q'},
        {"label-column", required_argument, 0, O_LABELCOL}, {"header", no_argument, 0, O_HEADER},
        {"regression", no_argument, 0, O_REGRESSION}, {"label-columns", required_argument, 0, O_LABELCOLS},
        {"classes", required_argument, 0, O_CLASSES}, {"averaging", required_argument, 0, O_AVERAGING},
        {"block-momentum", required_argument, 0, O_BLOCKMOM}, {"block-learning-rate", required_argument, 0, O_BLOCKLR},
        {"on-nan", required_argument, 0, O_ONNAN}, {"stream", no_argument, 0, O_STREAM},
        {"memory-limit", required_argument, 0, O_MEMLIMIT},
        {"device", required_argument, 0, O_DEVICE}, {"tf32", no_argument, 0, O_TF32},
        {0, 0, 0, 0}};
    cli_data_opts data = {.csv = dl4c_csv_opts_default()};
    int epochs = 0, workers = 0, batch = 0, freq = 0, prefetch = -1, save_updater = -1, threads = 0;
    int ck_every = 0, json = 0, quiet = 0, have_seed = 0;
    long long seed = 0;
    const char *output = NULL, *metrics_path = NULL, *ck_path = NULL, *resume = NULL, *dist = "local";
    const char *averaging = NULL, *device = NULL;
    double block_momentum = -1, block_lr = 0;   /* --block-momentum / --block-learning-rate */
    bool tf32 = false;
    dl4c_on_nan on_nan = DL4C_ON_NAN_STOP;
    bool stream = false;
    double memory_limit = 0;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "ho:q", longopts, NULL)) != -1) {
        int v;
        switch (opt) {
        case 'h': fputs(train_help, stdout); return EXIT_OK;
        case O_DATA: data.dir = optarg; break;
        case O_TRAIN: data.train = optarg; break;
        case O_TEST: data.test = optarg; break;
        case O_EPOCHS: if (!cli_parse_int(cmd, "--epochs", optarg, false, &epochs)) return EXIT_USAGE; break;
        case O_WORKERS: if (!cli_parse_int(cmd, "--workers", optarg, false, &workers)) return EXIT_USAGE; break;
        case O_BATCH: if (!cli_parse_int(cmd, "--batch-size-per-worker", optarg, false, &batch)) return EXIT_USAGE; break;
        case O_FREQ: if (!cli_parse_int(cmd, "--averaging-frequency", optarg, false, &freq)) return EXIT_USAGE; break;
        case O_PREFETCH: if (!cli_parse_int(cmd, "--prefetch", optarg, true, &prefetch)) return EXIT_USAGE; break;
        case O_SAVEUPD: save_updater = 1; break;
        case O_NOSAVEUPD: save_updater = 0; break;
        case O_SEED: {
            char *end;
            seed = strtoll(optarg, &end, 10);
            if (!*optarg || *end || seed < 0) return cli_usage_error(cmd, "--seed: expected a non-negative integer, got \"%s\"", optarg);
            have_seed = 1;
            break;
        }
        case O_THREADS: if (!cli_parse_int(cmd, "--threads", optarg, false, &threads)) return EXIT_USAGE; break;
        case 'o': output = optarg; break;
        case O_METRICS: metrics_path = optarg; break;
        case O_CKEVERY: if (!cli_parse_int(cmd, "--checkpoint-every", optarg, false, &ck_every)) return EXIT_USAGE; break;
        case O_CKPATH: ck_path = optarg; break;
        case O_RESUME: resume = optarg; break;
        case O_DIST: dist = optarg; break;
        case O_JSON: json = 1; break;
        case 'q': quiet = 1; break;
        case O_LABELCOL: {
            char *end;
            long x = strtol(optarg, &end, 10);
            if (!*optarg || *end) return cli_usage_error(cmd, "--label-column: expected an integer, got \"%s\"", optarg);
            data.csv.label_column = (int)x;
            break;
        }
        case O_HEADER: data.csv.header = true; break;
        case O_REGRESSION: data.csv.regression = true; break;
        case O_LABELCOLS: if (!cli_parse_int(cmd, "--label-columns", optarg, false, &v)) return EXIT_USAGE; data.csv.n_label_columns = v; break;
        case O_CLASSES: if (!cli_parse_int(cmd, "--classes", optarg, false, &v)) return EXIT_USAGE; data.csv.n_classes = v; break;
        case O_AVERAGING: averaging = optarg; break;
        case O_BLOCKMOM: case O_BLOCKLR: {
            char *end;
            const double v = strtod(optarg, &end);
            const bool mom = opt == O_BLOCKMOM;
            if (!*optarg || *end || !(mom ? (v >= 0 && v < 1) : (v > 0 && v < 1e6)))
                return cli_usage_error(cmd, "--%s: expected a number %s, got \"%s\"",
                                       mom ? "block-momentum" : "block-learning-rate",
                                       mom ? "in [0, 1)" : "> 0", optarg);
            if (mom) block_momentum = v; else block_lr = v;
            break;
        }
        case O_DEVICE: device = optarg; break;
        case O_TF32: tf32 = true; break;
        case O_ONNAN:
            if (!strcmp(optarg, "stop")) on_nan = DL4C_ON_NAN_STOP;
            else if (!strcmp(optarg, "skip-batch")) on_nan = DL4C_ON_NAN_SKIP_BATCH;
            else return cli_usage_error(cmd, "--on-nan: expected stop or skip-batch, got \"%s\"", optarg);
            break;
        case O_STREAM: stream = true; break;
        case O_MEMLIMIT:
            if (!parse_size(optarg, &memory_limit))
                return cli_usage_error(cmd, "--memory-limit: expected a size such as 512M or 4G, got \"%s\"", optarg);
            break;
        case '?':
        default:
            if (optopt > 0 && optopt < 256) return cli_usage_error(cmd, "option -%c: unknown or missing its value", optopt);
            if (optopt) return cli_usage_error(cmd, "option %s: missing its value", argv[optind - 1]);
            return cli_usage_error(cmd, "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error(cmd, optind >= argc ? "missing CONFIG" : "expected one CONFIG, got extra \"%s\"",
                               optind < argc ? argv[argc - 1] : "");
    const char *config_path = argv[optind];
    if (data.dir && (data.train || data.test))
        return cli_usage_error(cmd, "give either --data DIR or --train/--test, not both");
    if (!data.dir && !data.train) return cli_usage_error(cmd, "no training data: give --data DIR or --train PATH");
    const bool use_nccl = !strcmp(dist, "nccl");
    const bool use_mpi = !strcmp(dist, "mpi") || use_nccl;   /* nccl: MPI starts the ranks */
    if (!use_mpi && strcmp(dist, "local"))
        return cli_usage_error(cmd, "--dist: expected local, mpi or nccl, got \"%s\"", dist);
    dl4c_device dev_type = DL4C_DEVICE_CPU;
    int dev_index = 0;
    if (device && !dl4c_device_parse(device, &dev_type, &dev_index))
        return cli_usage_error(cmd, "--device: expected cpu, cuda or cuda:N, got \"%s\"", device);
    if (use_nccl && device && dev_type != DL4C_DEVICE_CUDA)
        return cli_usage_error(cmd, "--dist nccl: needs --device cuda (one GPU per rank), got --device %s", device);

    dl4c_net_conf conf;
    dl4c_status s = dl4c_config_load(config_path, &conf);
    if (s) return cli_fail(cmd, s);
    dl4c_training_conf *t = &conf.training;
    if (epochs) t->epochs = epochs;
    if (workers) t->workers = workers;
    if (batch) t->batch_size_per_worker = batch;
    if (freq) t->averaging_frequency = freq;
    if (prefetch >= 0) t->prefetch = prefetch;
    if (save_updater >= 0) t->save_updater = save_updater;
    if (have_seed) conf.seed = (uint64_t)seed;
    if (averaging && !dl4c_averaging_parse(averaging, &t->averaging))
        return cli_usage_error(cmd, "--averaging: expected plain or bmuf, got \"%s\"", averaging);
    if (block_momentum >= 0) t->block_momentum = (float)block_momentum;
    if (block_lr > 0) t->block_learning_rate = (float)block_lr;
    if (device) { conf.device = dev_type; conf.device_index = dev_index; }
    if (tf32) conf.allow_tf32 = true;

    dl4c_comm *comm = NULL;
    int rank = 0;
    if (use_mpi) {
        /* nccl: the rank's GPU is cuda:N when given, else its local rank on the host. */
        if ((s = use_nccl ? dl4c_comm_nccl_world(device ? dev_index : -1, &comm) : dl4c_comm_mpi_world(&comm))) {
            if (use_nccl) dl4c_mpi_finalize();
            return cli_fail(cmd, s);
        }
        if (use_nccl) { conf.device = DL4C_DEVICE_CUDA; conf.device_index = dl4c_comm_nccl_device(comm); }
        rank = dl4c_comm_rank(comm);
        if (workers && workers != dl4c_comm_size(comm)) {
            int code = cli_usage_error(cmd, "--workers %d but mpirun started %d ranks", workers, dl4c_comm_size(comm));
            dl4c_comm_free(comm);
            dl4c_mpi_finalize();
            return code;
        }
        t->workers = dl4c_comm_size(comm);
        if (rank != 0) quiet = 1;
    }
    dl4c_net *net = NULL;
    dl4c_dataset *train = NULL, *test = NULL;
    FILE *metrics = NULL;
    char default_ck[4096];
    float *resume_bmuf = NULL;   /* --resume with bmuf: the saved block momentum */
    dl4c_worker_states resume_ws = {0};   /* --resume from a round cut short: each worker's state */
    bool metrics_existed = false; /* --metrics-out named a file that was there before */
    train_ctx ctx = {.quiet = quiet, .tty = isatty(2), .final_accuracy = NAN};
    file_data fd = {.csv = &data.csv};
    int64_t block_rows = 0;
    int code = EXIT_OK;
    /* Writes past a file size limit fail with EFBIG (and the model file is not left behind)
     * instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);

    /* Memory, before anything big is allocated: the network of every worker (from the
     * configuration alone) and the data; stream the data when it does not fit, refuse the
     * run when even that does not. */
    char tp[4096], sp[4096];
    net_size nsz = {0};
    int64_t n_train = 0, n_test = 0;
    if ((s = cli_data_paths(&data, tp, sp, sizeof tp)) || (s = estimate_net(&conf, on_nan, &nsz)) ||
        (s = cli_count(tp, &data.csv, &n_train)) || (sp[0] && (s = cli_count(sp, &data.csv, &n_test)))) {
        code = cli_fail(cmd, s);
        goto out;
    }
    {
        const int W = conf.training.workers, B = conf.training.batch_size_per_worker;
        const int local_workers = use_mpi ? 1 : W;
        const double row_bytes = 4.0 * (double)(nsz.in_floats + nsz.out_floats);
        const double per_worker = 4.0 * ((double)nsz.state_floats + (double)B * nsz.example_floats +
                                         (double)(conf.training.prefetch + 1) * B * (nsz.in_floats + nsz.out_floats));
        const double model = per_worker * local_workers;
        const double train_rows = use_mpi ? ceil((double)n_train / W) : (double)n_train;
        const double test_bytes = row_bytes * (use_mpi ? ceil((double)n_test / W) : (double)n_test);
        const double data_bytes = row_bytes * train_rows + test_bytes;
        const double avail = memory_limit > 0 ? memory_limit : mem_available();
        const char *avail_what = memory_limit > 0 ? "the --memory-limit" : "the memory available (MemAvailable in /proc/meminfo)";
        char a[32], b[32], c1[32], d1[32], e1[32], f1[32];
        if (avail > 0 && model + test_bytes + row_bytes * B * 2 * local_workers > avail) {
            dl4c_error(DL4C_ERR_INVALID_ARG,
                       "this run needs about %s of memory: %d worker(s) x %s (%lld parameters with gradients "
                       "and updater state: %s; a batch of %d examples: %s), plus %s for the data; %s is %s. "
                       "Use fewer workers, a smaller batch_size_per_worker or a smaller network",
                       human(model + data_bytes, a, sizeof a), local_workers, human(per_worker, b, sizeof b),
                       (long long)nsz.n_params, human(4.0 * (double)nsz.state_floats, c1, sizeof c1), B,
                       human(4.0 * (double)B * nsz.example_floats, d1, sizeof d1), human(data_bytes, e1, sizeof e1),
                       avail_what, human(avail, f1, sizeof f1));
            code = cli_fail(cmd, DL4C_ERR_INVALID_ARG);
            goto out;
        }
        if (!stream && avail > 0 && model + data_bytes > avail * 0.9) {
            stream = true;
            if (!quiet)
                fprintf(stderr, "dl4c train: the training data (about %s) does not fit in %s (%s) next to the "
                        "network (%s): streaming it from %s\n", human(row_bytes * train_rows, a, sizeof a),
                        avail_what, human(avail, b, sizeof b), human(model, c1, sizeof c1), tp);
        }
        if (stream) {
            /* Half of what is left, shared by the workers; a block and a chunk of the file each. */
            const double budget = avail > 0 ? (avail - model - test_bytes) / 2 : 256.0 * 1024 * 1024;
            block_rows = (int64_t)(budget / (2.0 * row_bytes * local_workers));
            if (block_rows > 1 << 20) block_rows = 1 << 20;
            if (block_rows < B) block_rows = B;
            if (!quiet)
                fprintf(stderr, "dl4c train: streaming %s in blocks of %lld examples per worker\n", tp,
                        (long long)(block_rows / B * B));
        }
    }
    if ((s = dl4c_net_new(&conf, &net))) { code = cli_fail(cmd, s); goto out; }
    const dl4c_net_conf *rc = dl4c_net_conf_of(net);
    ctx.epochs = rc->training.epochs;
    ctx.workers = rc->training.workers;
    ctx.fit = calloc((size_t)ctx.workers, sizeof(double));
    ctx.wait = calloc((size_t)ctx.workers, sizeof(double));
    ctx.avg = calloc((size_t)ctx.workers, sizeof(double));
    if (!ck_path) {
        if (output) snprintf(default_ck, sizeof default_ck, "%s.ckpt", output);
        else snprintf(default_ck, sizeof default_ck, "dl4c-checkpoint.safetensors");
        ck_path = default_ck;
    }
    ctx.checkpoint_path = ck_path;

    dl4c_train_state resume_state = {0};
    if (resume) {
        dl4c_progress pr;
        int64_t step = 0;
        if (rc->training.averaging == DL4C_AVG_BMUF &&
            !(resume_bmuf = calloc((size_t)dl4c_net_n_params(net) + 1, sizeof(float)))) {
            code = cli_fail(cmd, dl4c_error(DL4C_ERR_NOMEM, "out of memory"));
            goto out;
        }
        if ((s = dl4c_model_read_checkpoint(resume, net, dl4c_net_params(net), dl4c_net_updater_state(net),
                                            resume_bmuf, &resume_ws, &step, &pr))) {
            code = cli_fail(cmd, s);
            goto out;
        }
        if (pr.workers != rc->training.workers || pr.seed != rc->seed) {
            dl4c_error(DL4C_ERR_INVALID_ARG, "--resume %s: it was written by a run with %d workers and seed %llu; "
                       "this run has %d workers and seed %llu (resuming needs the same)", resume, pr.workers,
                       (unsigned long long)pr.seed, rc->training.workers, (unsigned long long)rc->seed);
            code = cli_fail(cmd, DL4C_ERR_INVALID_ARG);
            goto out;
        }
        dl4c_net_set_step(net, step);
        resume_state = (dl4c_train_state){.epoch = pr.epoch, .round = pr.round, .iteration = pr.iteration,
                                          .loss = pr.loss, .bmuf_delta = resume_bmuf,
                                          .partial = resume_ws.workers ? &resume_ws : NULL};
        if (!quiet && resume_ws.workers)
            fprintf(stderr, "dl4c train: resuming from %s at epoch %d, in round %lld (worker 0 after minibatch %lld)\n",
                    resume, pr.epoch + 1, (long long)pr.round + 1, (long long)resume_ws.batches[0]);
        else if (!quiet)
            fprintf(stderr, "dl4c train: resuming from %s at epoch %d, round %lld\n", resume, pr.epoch + 1, (long long)pr.round);
    }
    /* Check the outputs can be written before spending time on training. */
    struct stat metrics_st;
    metrics_existed = metrics_path && stat(metrics_path, &metrics_st) == 0;
    if (rank == 0 && metrics_path && !(metrics = fopen(metrics_path, "a"))) {
        dl4c_error(DL4C_ERR_IO, "--metrics-out %s: %s", metrics_path, strerror(errno));
        code = cli_fail(cmd, DL4C_ERR_IO);
        goto out;
    }
    ctx.metrics = metrics;
    if (rank == 0) {
        /* The model file: parameters and updater state (and a BMUF checkpoint's block momentum)
         * as float32, plus the JSON header. */
        const double model_bytes = 4.0 * (double)dl4c_net_n_params(net) *
                                   (1 + dl4c_updater_state_per_param(rc->updater.type) +
                                    (rc->training.averaging == DL4C_AVG_BMUF ? 1 : 0)) + 65536.0;
        if (output && (s = probe_output("-o", output, model_bytes))) { code = cli_fail(cmd, s); goto out; }
        if ((ck_every > 0 || ck_path != default_ck) &&
            (s = probe_output("--checkpoint", ck_path, model_bytes))) {
            code = cli_fail(cmd, s);
            goto out;
        }
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    dl4c_train_opts opts = {
        .threads = threads,
        .listener = {.on_round = on_round, .on_epoch = on_epoch, .on_checkpoint = on_checkpoint, .ctx = &ctx},
        .checkpoint_every = ck_every, .checkpoint = write_checkpoint, .checkpoint_ctx = &ctx,
        .resume = resume ? &resume_state : NULL, .stop = &stop_requested, .on_nan = on_nan,
    };
    dl4c_train_state state;
    const double t0 = dl4c_now();
    fd.train_path = tp;
    fd.test_path = sp;
    fd.total = n_train;
    fd.chunk = block_rows;
    fd.parts = calloc((size_t)rc->training.workers, sizeof *fd.parts);
    if (!fd.parts) { code = cli_fail(cmd, dl4c_error(DL4C_ERR_NOMEM, "out of memory")); goto out; }
    /* Training from the files (streaming, MPI ranks): their shapes are checked on their first
     * rows before any training. */
    if ((use_mpi || stream) && (s = check_file_shapes(net, tp, sp, n_test, &data.csv))) {
        code = cli_fail(cmd, s);
        goto out;
    }
    if (!use_mpi && stream) {
        dl4c_train_data td = {.n_train = n_train, .acquire = file_acquire, .release = file_release,
                              .test_shard = file_test_shard, .ctx = &fd, .block_rows = block_rows};
        if (!quiet)
            fprintf(stderr, "dl4c train: %lld parameters, %lld training examples (streamed), %d worker(s), batch %d "
                    "per worker, averaging every %d, %d epoch(s)\n", (long long)dl4c_net_n_params(net),
                    (long long)n_train, rc->training.workers, rc->training.batch_size_per_worker,
                    rc->training.averaging_frequency, rc->training.epochs);
        s = dl4c_train_local_data(net, &td, &opts, &state);
    } else if (!use_mpi) {
        if ((s = cli_load_data(&data, &train, &test))) { code = cli_fail(cmd, s); goto out; }
        char what_train[4200], what_test[4200];
        snprintf(what_train, sizeof what_train, "training data %s", tp);
        snprintf(what_test, sizeof what_test, "test data %s", sp);
        if ((s = cli_check_data(net, train, what_train)) || (test && (s = cli_check_data(net, test, what_test)))) {
            code = cli_fail(cmd, s);
            goto out;
        }
        if (!quiet)
            fprintf(stderr, "dl4c train: %lld parameters, %lld training examples, %d worker(s), batch %d per worker, "
                    "averaging every %d, %d epoch(s)\n", (long long)dl4c_net_n_params(net),
                    (long long)dl4c_dataset_count(train), rc->training.workers, rc->training.batch_size_per_worker,
                    rc->training.averaging_frequency, rc->training.epochs);
        s = dl4c_train_local(net, train, test, &opts, &state);
    } else {
        dl4c_train_data td = {.n_train = n_train, .acquire = file_acquire, .release = file_release,
                              .test_shard = file_test_shard, .ctx = &fd, .block_rows = block_rows};
        dl4c_net_set_threads(net, threads > 0 ? threads : 1);
        if (!quiet)
            fprintf(stderr, "dl4c train: MPI, %d ranks, %lld parameters, %lld training examples\n",
                    dl4c_comm_size(comm), (long long)dl4c_net_n_params(net), (long long)n_train);
        s = dl4c_train_worker(comm, net, &td, &opts, &state);
    }
    if (s == DL4C_ERR_INTERRUPTED) {
        if (rank == 0)
            fprintf(stderr, "dl4c train: interrupted; checkpoint in %s. Resume with the same command and --resume %s\n",
                    ck_path, ck_path);
        code = EXIT_INTERRUPTED;
        goto out;
    }
    if (s) {
        code = cli_fail(cmd, s);
        if (s == DL4C_ERR_NUMERIC && rank == 0) {
            if (ctx.checkpoints)
                fprintf(stderr, "dl4c train: the last good checkpoint is %s (epoch %d, round %lld); resume from it "
                        "with --resume %s\n", ck_path, ctx.last_checkpoint.epoch + 1,
                        (long long)ctx.last_checkpoint.round, ck_path);
            else
                fprintf(stderr, "dl4c train: no checkpoint was written%s\n", output ? " and no model file" : "");
        }
        goto out;
    }
    if (rank == 0) {
        const double secs = dl4c_now() - t0;
        if (!quiet) {
            fprintf(stderr, "dl4c train: done in %.1f s. Time per worker (fit / wait / average, seconds):\n", secs);
            for (int w = 0; w < ctx.workers; w++)
                fprintf(stderr, "  worker %d: %8.2f %8.2f %8.2f\n", w, ctx.fit[w], ctx.wait[w], ctx.avg[w]);
        }
        if (output) {
            dl4c_progress pr = progress_of(net, &state, rc->training.workers);
            if ((s = dl4c_model_save(net, &pr, output))) { code = cli_fail(cmd, s); goto out; }
            if (!quiet) fprintf(stderr, "dl4c train: model written to %s\n", output);
        }
        if (json && ctx.final_json) printf("%s\n", ctx.final_json);
        else if (ctx.final_stats) printf("%s\n", ctx.final_stats);
        fflush(stdout);
    }
    if (metrics) {   /* a full disk shows here at the latest */
        const bool bad = ferror(metrics) != 0;
        const int e = errno;
        if (fclose(metrics) != 0 || bad) {
            fprintf(stderr, "dl4c train: --metrics-out %s: write failed: %s\n", metrics_path, strerror(bad ? e : errno));
            if (code == EXIT_OK) code = EXIT_FAIL;
        }
        metrics = NULL;
    }
out:
    free(resume_bmuf);
    dl4c_worker_states_free(&resume_ws);
    if (metrics) {
        fclose(metrics);
        /* failed before training wrote anything: leave no file behind that we created */
        struct stat st;
        if (!metrics_existed && stat(metrics_path, &st) == 0 && st.st_size == 0) unlink(metrics_path);
    }
    file_data_free(&fd, ctx.workers);
    free(ctx.fit); free(ctx.wait); free(ctx.avg);
    free(ctx.final_stats); free(ctx.final_json);
    dl4c_dataset_free(train);
    dl4c_dataset_free(test);
    dl4c_net_free(net);
    dl4c_config_free_strings(&conf);
    if (comm) {
        dl4c_comm_free(comm);
        dl4c_mpi_finalize();
    }
    return code;
}
