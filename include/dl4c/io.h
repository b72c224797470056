/* dl4c io: the model file and checkpoints (the counterpart of DL4J's ModelSerializer).
 *
 * One format for both: safetensors (https://github.com/huggingface/safetensors), readable
 * by PyTorch users with `safetensors.torch.load_file`:
 *
 *   [8 bytes]  N, little-endian uint64: length of the header
 *   [N bytes]  JSON header, padded with spaces to a multiple of 8:
 *              { "__metadata__": { "format": "dl4c", "version": "1",
 *                                  "config": "<network configuration JSON>",
 *                                  "progress": "<JSON of dl4c_progress>",
 *                                  "step": "<updater step counter>" },
 *                "layers.0.weight": { "dtype": "F32", "shape": [20, 1, 5, 5],
 *                                     "data_offsets": [0, 2000] },
 *                "layers.0.bias": ..., ...,
 *                "updater.layers.0.weight.sum_sq": ..., ...,
 *                "bmuf.layers.0.weight": ..., ...,
 *                "worker.0.layers.0.weight": ..., "worker.0.updater.layers.0.weight.sum_sq": ...,
 *                ... }
 *   [rest]     raw little-endian float32 data; data_offsets are [begin, end) in bytes
 *              relative to the start of this section, tensors back to back in header order.
 *
 * Parameters are named and laid out as PyTorch's state_dict (conv [out, in, kh, kw], dense
 * [out, in], bias [out]). Updater state follows as "updater.<param>.<slot>", in the same
 * layout as its parameter; slots: nesterovs "momentum", adagrad "sum_sq", rmsprop
 * "square_avg", adam "exp_avg" and "exp_avg_sq", sgd none. BMUF block-momentum state (a
 * checkpoint of a BMUF run) is "bmuf.<param>". A checkpoint written when training stopped
 * between the minibatches of an averaging round also holds every worker's own parameters and
 * updater state, "worker.<r>.<param>" and "worker.<r>.updater.<param>.<slot>", and its
 * progress a "partial" object of arrays with one entry per worker: "batches" (minibatches done
 * in the round), "steps" (updater step counter), "examples", "skipped" and "loss" (sum of the
 * minibatch scores) so far in the round (dl4c_worker_states). The "progress" value is a JSON
 * object with the fields of dl4c_progress (seed as a number, or as a decimal string above
 * INT64_MAX; a loss that is not finite as null).
 *
 * Writes go to "<path>.tmp.XXXXXX" in the same directory, are flushed and fsync'ed, then
 * renamed over `path`: a failure (DL4C_ERR_IO, with the path and strerror) leaves no
 * temporary file behind and an existing `path` untouched.
 *
 * Loading checks everything and never trusts the file: header size (at most
 * DL4C_MODEL_MAX_HEADER bytes, and within the file), JSON syntax, metadata ("format" must be
 * "dl4c", "version" "1", "config" present and valid), dtypes, shapes against the network the
 * config builds ("layers.4.weight: expected shape [200, 200], file has [200, 100]"), data
 * offsets (in range, matching shape x 4, back to back, covering the data section exactly,
 * so trailing bytes are an error), missing and unexpected tensors. Updater state, BMUF
 * state and worker states are each all or nothing. Such problems are DL4C_ERR_FORMAT, an unreadable file is
 * DL4C_ERR_IO; every message starts with the path. "progress" and "step" are optional (a
 * file written from PyTorch with only the config still loads; they read as zeros). */
#ifndef DL4C_IO_H
#define DL4C_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "dl4c/core.h"
#include "dl4c/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest JSON header accepted when loading, in bytes (as the safetensors library). */
#define DL4C_MODEL_MAX_HEADER 100000000

/* Where training stands; saved in the file's metadata as "progress". */
typedef struct dl4c_progress {
    int epoch;            /* epochs completed (or the epoch in progress for a mid-epoch checkpoint) */
    int64_t round;        /* averaging rounds completed within `epoch` (0 = at an epoch boundary) */
    int64_t iteration;    /* minibatch steps taken in total (the updater's step counter too) */
    uint64_t seed;        /* the training seed */
    int workers;          /* workers the run used (resume checks it) */
    double loss;          /* last reported loss (NaN when none; saved as null) */
    bool has_updater;     /* save: write the updater state; load: the file holds updater state */
    bool has_bmuf;        /* load: the file holds BMUF block-momentum state ("bmuf." tensors) */
    bool has_workers;     /* load: the file holds worker states of a round cut short ("worker." tensors) */
} dl4c_progress;

/* Largest number of worker states a file may hold. */
#define DL4C_MODEL_MAX_WORKER_STATES 65536

/* Each worker's own state in the middle of an averaging round: a checkpoint written when
 * training stopped between minibatches holds it, and resuming restores it, so the round
 * finishes as in an undisturbed run. Arrays of `workers` entries; params and ustate hold
 * `workers` blocks of n_params and n_updater_state floats in the network's flat layout. */
typedef struct dl4c_worker_states {
    int workers;
    int64_t *batches;     /* minibatches each worker has done in the round */
    int64_t *steps;       /* each worker's updater step counter */
    int64_t *examples;    /* examples each has fitted in the round */
    int64_t *skipped;     /* minibatches each has skipped (on-nan skip-batch) */
    double *loss;         /* sum of each worker's minibatch scores in the round */
    float *params;        /* workers x n_params */
    float *ustate;        /* workers x n_updater_state; NULL when the updater keeps no state */
} dl4c_worker_states;

/* Allocates the arrays for `workers` workers of `net` (zeroed); free with
 * dl4c_worker_states_free (which also takes a zeroed struct). */
dl4c_status dl4c_worker_states_alloc(const dl4c_net *net, int workers, dl4c_worker_states *ws);
void dl4c_worker_states_free(dl4c_worker_states *ws);
/* *dst = a new copy of src (states of `net`'s layout); free with dl4c_worker_states_free. */
dl4c_status dl4c_worker_states_copy(const dl4c_net *net, const dl4c_worker_states *src, dl4c_worker_states *dst);

/* Saves parameters, configuration and progress to `path` (atomically, see above). The
 * updater state is written when the updater has state and progress is NULL or
 * progress->has_updater is true (so a final model saved without progress keeps it, as DL4J's
 * default saveUpdater = true). With progress NULL, "progress" holds zeros and the
 * configuration's seed and workers. The updater step counter is always written. */
dl4c_status dl4c_model_save(const dl4c_net *net, const dl4c_progress *progress, const char *path);

/* The same, plus BMUF block-momentum state: bmuf_delta (NULL: none) holds n_params floats in
 * the flat parameter layout and is written as "bmuf.<param>" tensors. */
dl4c_status dl4c_model_save_checkpoint(const dl4c_net *net, const dl4c_progress *progress,
                                       const float *bmuf_delta, const char *path);

/* The same, plus the worker states of a round cut short (ws NULL: none; ws->ustate is
 * written when the updater state is, i.e. as for the network's own). */
dl4c_status dl4c_model_save_train_checkpoint(const dl4c_net *net, const dl4c_progress *progress,
                                             const float *bmuf_delta, const dl4c_worker_states *ws,
                                             const char *path);

/* For a signal handler about to end the process: removes the temporary file of a save in
 * progress (async-signal-safe; at most one save is tracked, the others are removed by their
 * own error paths). */
void dl4c_model_abandon_save(void);

/* Loads a model file: builds the network from the stored configuration and fills its
 * parameters, updater state (zeros when the file has none) and step counter. progress_out
 * (may be NULL) receives the stored progress with has_updater / has_bmuf set from the
 * tensors actually present. On failure *net_out is NULL. BMUF and worker-state tensors are
 * checked but not returned (use dl4c_model_read_checkpoint). */
dl4c_status dl4c_model_load(const char *path, dl4c_net **net_out, dl4c_progress *progress_out);

/* Resuming into an existing network: checks the file against net_template's tensors (names
 * and shapes; the updater of the template decides which slots are expected) and copies into
 * caller buffers in the template's flat layout: params (n_params floats, required), ustate
 * (n_updater_state floats, or NULL to skip; left untouched when the file has no updater
 * state), bmuf_delta (n_params floats, or NULL to skip; left untouched when the file has
 * none). step_out (may be NULL) receives the updater step counter, progress_out (may be
 * NULL) the progress. The stored configuration must parse but need not equal the
 * template's. The data is staged and checked first: on any failure the buffers are untouched. */
dl4c_status dl4c_model_read_params(const char *path, const dl4c_net *net_template, float *params,
                                   float *ustate, float *bmuf_delta, int64_t *step_out,
                                   dl4c_progress *progress_out);

/* The same, plus the worker states of a round cut short: when the file holds them, *ws is
 * allocated and filled (free with dl4c_worker_states_free), else zeroed. On failure *ws is
 * zeroed and nothing is allocated. */
dl4c_status dl4c_model_read_checkpoint(const char *path, const dl4c_net *net_template, float *params,
                                       float *ustate, float *bmuf_delta, dl4c_worker_states *ws,
                                       int64_t *step_out, dl4c_progress *progress_out);

/* Slot names of an updater's state, in the order of its blocks in the flat state buffer
 * (dl4c_updater_state_per_param(u) of them): "momentum", "sum_sq", "square_avg",
 * "exp_avg", "exp_avg_sq". NULL for a slot out of range. */
const char *dl4c_updater_slot_name(dl4c_updater u, int slot);

#ifdef __cplusplus
}
#endif
#endif
