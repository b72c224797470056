/* dl4c round: one worker's share of parameter averaging as single calls, for drivers that
 * orchestrate the rounds themselves (the Python binding and dl4c.spark) instead of running
 * dl4c_train_worker's loop. Semantics are those of src/train/master.c, so that a driver that
 *   1. gives every worker the same parameters, updater state and step,
 *   2. has worker w call dl4c_worker_round on rows [r*F*B, (r+1)*F*B) of its part of the
 *      epoch's dl4c_partition() (the rows in that order),
 *   3. averages as master.c does: weight = 1 and divisor = number of working workers when all
 *      working workers did the same number of minibatches (plain mean), else weight = k_w and
 *      divisor = sum k_w; params[i] = (sum over w = 0, 1, ... in rank order of
 *      weight_w * params_w[i]) / (float)divisor; the same for updater state with
 *      save_updater; step = max over workers; then dl4c_bmuf_step for BMUF averaging,
 * gets bit-identical parameters to `dl4c train --workers W` (threads, MPI or TCP ranks).
 *
 * Also: dl4c_train_part, the SPMD loop of dl4c_train_worker for a worker that already holds
 * its part of the epoch in memory (Spark barrier tasks), and a checkpoint writer usable as
 * dl4c_train_opts.checkpoint. */
#ifndef DL4C_ROUND_H
#define DL4C_ROUND_H

#include "dl4c/data.h"
#include "dl4c/nn.h"
#include "dl4c/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one worker did in one round. */
typedef struct dl4c_round_result {
    int64_t batches;    /* minibatches fitted (k_w) */
    int64_t examples;   /* examples fitted */
    double loss_sum;    /* sum of the minibatch scores (master.c's R_LOSS) */
    double fit_s;       /* seconds spent fitting */
} dl4c_round_result;

/* One worker's round: fits up to `freq` minibatches of `batch` examples gathered from rows
 * indices[0..n) of ds, in order (the last minibatch may be shorter; n > batch * freq fits only
 * the first batch * freq rows). With reset_updater (save_updater off) the updater state and
 * step are zeroed first, as master.c does at the start of every round. prefetch > 0 prepares
 * minibatches on a thread (same results). On failure *out says how far it got. */
dl4c_status dl4c_worker_round(dl4c_net *net, const dl4c_dataset *ds, const int64_t *indices,
                              int64_t n, int batch, int freq, int prefetch, bool reset_updater,
                              dl4c_round_result *out);

/* The averaging weights of round `round` (0-based) when worker w's part holds
 * part_sizes[w] examples: batches[w] = k_w (may be NULL), *weights[w] and *divisor as in
 * step 3 above (weights may be NULL). Returns the number of working workers (0: the epoch
 * has no such round). */
int dl4c_round_plan(const int64_t *part_sizes, int workers, int batch, int freq, int64_t round,
                    int64_t *batches, float *weights, double *divisor);

/* Rounds in an epoch: ceil(max_w ceil(part_sizes[w] / batch) / freq). */
int64_t dl4c_epoch_rounds(const int64_t *part_sizes, int workers, int batch, int freq);

/* BMUF (Chen & Huo 2016) after averaging, as master.c: g = params - global;
 * delta = bm delta + blr g; global += delta; params = global. Between rounds the parameters
 * are the global (filtered) model: what checkpoints, evaluation and the final model hold. */
void dl4c_bmuf_step(float *params, float *global, float *delta, int64_t n, float block_momentum,
                    float block_learning_rate);
/* The start of a BMUF round: params = global + bm delta (the Nesterov look-ahead point). */
void dl4c_bmuf_lookahead(float *params, const float *global, const float *delta, int64_t n,
                         float block_momentum);

/* dl4c_train_worker for a worker that holds its own part of the epoch: `part` holds, in
 * training order, the rows that dl4c_partition(n_train, seed, epoch, size) gives this rank,
 * and `rows` their global ids (checked against the partition's). Trains the epochs
 * from opts->resume (or 0) to the net's training.epochs; with several epochs the part must be
 * the same for every epoch, so callers run one epoch per call (training.epochs = epoch + 1). */
dl4c_status dl4c_train_part(dl4c_comm *comm, dl4c_net *net, const dl4c_dataset *part,
                            const int64_t *rows, int64_t n_train, const dl4c_train_opts *opts,
                            dl4c_train_state *state);

/* A dl4c_checkpoint_fn: ctx is a dl4c_file_checkpoint; writes the model file with progress
 * (workers, seed) to path atomically. */
typedef struct dl4c_file_checkpoint {
    char path[4096];   /* where to write */
    int workers;       /* recorded in the progress */
} dl4c_file_checkpoint;
dl4c_status dl4c_checkpoint_to_file(void *ctx, const dl4c_net *net, const dl4c_train_state *s);

/* ---- For language bindings (no struct layouts to mirror) ----
 * A network from configuration text: JSON when it starts with '{' (after blanks), YAML
 * otherwise; `origin` (or NULL) prefixes messages. */
dl4c_status dl4c_net_new_from_text(const char *text, size_t len, const char *origin, dl4c_net **out);
/* A network from a configuration file (.json/.yaml/.yml, or by content). */
dl4c_status dl4c_net_new_from_file(const char *path, dl4c_net **out);
/* The network's resolved configuration as JSON; free *out with dl4c_string_free. */
dl4c_status dl4c_net_conf_json(const dl4c_net *net, char **out);
void dl4c_string_free(char *s);

#ifdef __cplusplus
}
#endif
#endif
