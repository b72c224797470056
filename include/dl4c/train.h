/* dl4c training: the fit loop and the parameter-averaging training master (DL4J's
 * ParameterAveragingTrainingMaster, natively). The same SPMD worker loop runs on threads
 * (local communicator), MPI ranks and — from Python — Spark tasks:
 *   per epoch: a permutation of the training set from (seed, epoch), split into one
 *   contiguous part per worker; per round each worker fits `averaging_frequency` minibatches
 *   of `batch_size_per_worker` from its part, then parameters (and updater state with
 *   save_updater) are averaged over the workers that did work, weighted by the minibatches
 *   each did (plain mean when all did the same). The last, shorter round is kept.
 * A stop request (opts->stop, e.g. SIGINT) is honoured after the minibatch in progress: with a
 * checkpoint function, a round cut short is saved with every worker's own state
 * (dl4c_worker_states) and resuming from it finishes that round exactly as an undisturbed
 * run would. */
#ifndef DL4C_TRAIN_H
#define DL4C_TRAIN_H

#include "dl4c/data.h"
#include "dl4c/dist.h"
#include "dl4c/eval.h"
#include "dl4c/io.h"
#include "dl4c/nn.h"

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where training stands; saved in checkpoints and model files. */
typedef struct dl4c_train_state {
    int epoch;            /* epoch in progress (0-based); == epochs when finished */
    int64_t round;        /* rounds completed within `epoch` */
    int64_t iteration;    /* sequential minibatch steps taken (max over workers per round) */
    double loss;          /* mean minibatch score of the last round */
    const float *bmuf_delta; /* bmuf: block momentum (n_params floats) at this point, else NULL.
                              * In checkpoints the parameters are then the global (filtered)
                              * model; on resume, set it to the saved momentum. */
    const dl4c_worker_states *partial; /* round `round` of `epoch` cut short by a stop request:
                              * each worker's state in it (workers = the run's), else NULL.
                              * `iteration` is then the count when the round began, and the
                              * network's parameters are worker 0's (bmuf: the global model).
                              * Valid during the checkpoint call only (keep a
                              * dl4c_worker_states_copy). */
} dl4c_train_state;

/* Per-round report (worker 0 only). */
typedef struct dl4c_round_info {
    int epoch;                 /* 0-based */
    int64_t round, rounds;     /* round just done (1-based) of this epoch's rounds */
    int64_t examples_done;     /* examples fitted so far this epoch (all workers) */
    int64_t examples_total;    /* examples in the epoch */
    double loss;               /* mean minibatch score of this round */
    double seconds;            /* since the epoch started */
    double fit_s, wait_s, avg_s; /* this round, worker 0: fitting, waiting for others, averaging */
    int workers;               /* workers */
    const double *worker_times;  /* [3 * workers]: fit, wait, avg seconds of each worker this round */
} dl4c_round_info;

/* Per-epoch report (worker 0 only). */
typedef struct dl4c_epoch_info {
    int epoch;                 /* 0-based */
    double loss;               /* mean minibatch score over the epoch */
    int64_t examples;          /* examples fitted */
    double seconds;            /* wall time of the epoch's training (evaluation excluded) */
    double examples_per_s;     /* examples / seconds */
    int64_t rounds;            /* averaging rounds */
    int workers;               /* workers */
    const double *worker_fit_s, *worker_wait_s, *worker_avg_s; /* [workers] epoch totals */
    const dl4c_eval *eval;     /* test evaluation (classification), NULL if no test set */
    const dl4c_regeval *regeval; /* test evaluation (regression), NULL if none */
} dl4c_epoch_info;

typedef struct dl4c_listener {
    void (*on_round)(void *ctx, const dl4c_round_info *r);
    void (*on_epoch)(void *ctx, const dl4c_epoch_info *e);
    /* Called by worker 0 after each checkpoint is written. */
    void (*on_checkpoint)(void *ctx, const char *path, const dl4c_train_state *s);
    void *ctx;
} dl4c_listener;

/* Writes a checkpoint (worker 0 only): the net (all workers hold the same) and the state. */
typedef dl4c_status (*dl4c_checkpoint_fn)(void *ctx, const dl4c_net *net, const dl4c_train_state *s);

/* The examples of one worker. Local training shares one dataset; MPI ranks load their rows. */
typedef struct dl4c_train_data {
    int64_t n_train;     /* examples in the whole training set */
    /* Makes `rows` (global row ids, in training order) available to worker w as a dataset and
     * indices into it; valid until release. */
    dl4c_status (*acquire)(void *ctx, int worker, const int64_t *rows, int64_t n,
                           const dl4c_dataset **ds, const int64_t **idx);
    void (*release)(void *ctx, int worker);
    /* Worker w's shard of the test set (rows [w*n/W, (w+1)*n/W)); *ds NULL if no test set. */
    dl4c_status (*test_shard)(void *ctx, int worker, int workers, const dl4c_dataset **ds);
    void *ctx;
    /* 0: acquire each worker's rows of an epoch at once. > 0: streaming: acquire at most this
     * many rows at a time (rounded down to whole minibatches, at least one), releasing the
     * previous block first, so memory holds one block per worker; the batches are the same. */
    int64_t block_rows;
} dl4c_train_data;

/* What training does when a minibatch gives a NaN or infinite loss, gradient or update. */
typedef enum dl4c_on_nan {
    DL4C_ON_NAN_STOP = 0,      /* stop (DL4C_ERR_NUMERIC; the message names the layer and iteration) */
    DL4C_ON_NAN_SKIP_BATCH,    /* drop that minibatch's update (parameters, updater state and step
                                  restored from before it) and go on; costs a copy per step */
    DL4C_ON_NAN_COUNT
} dl4c_on_nan;

typedef struct dl4c_train_opts {
    int threads;                     /* total BLAS threads (0: 1 per worker) */
    dl4c_listener listener;          /* progress reports (worker 0) */
    int checkpoint_every;            /* rounds between checkpoints (0: none) */
    dl4c_checkpoint_fn checkpoint;   /* writes one (worker 0) */
    void *checkpoint_ctx;
    const dl4c_train_state *resume;  /* start from here (net holds its params) or NULL */
    volatile sig_atomic_t *stop;     /* set (e.g. by a signal handler) to stop after the minibatch in
                                      * progress (with a checkpoint function; else after the round) */
    dl4c_on_nan on_nan;              /* non-finite loss/gradient/update: stop (default) or skip */
    float *bmuf_delta_out;           /* bmuf: receives the block momentum where training stopped
                                      * (n_params floats; resume->bmuf_delta of a later call) */
} dl4c_train_opts;

/* One worker's whole training (SPMD: every rank calls it with its communicator). `net` must
 * be built from the same configuration on every worker; rank 0's parameters are broadcast
 * first. On return every worker's net holds the final (averaged) parameters and *state says
 * where training stopped. DL4C_ERR_INTERRUPTED if stopped through opts->stop (after a
 * checkpoint). A NaN or infinite loss, gradient or parameter is DL4C_ERR_NUMERIC naming the
 * layer and iteration (opts->on_nan skip-batch drops such minibatches instead); no checkpoint
 * is written from that step on. If any worker fails, every worker returns an error. */
dl4c_status dl4c_train_worker(dl4c_comm *comm, dl4c_net *net, const dl4c_train_data *data,
                              const dl4c_train_opts *opts, dl4c_train_state *state);

/* Local training: `training.workers` threads in this process over one in-memory dataset;
 * `test` (optional) is evaluated after every epoch. `net` receives the final parameters. */
dl4c_status dl4c_train_local(dl4c_net *net, const dl4c_dataset *train, const dl4c_dataset *test,
                             const dl4c_train_opts *opts, dl4c_train_state *state);

/* Local training over any data source (e.g. files streamed in blocks): `training.workers`
 * threads in this process over a local communicator, as dl4c_train_local. */
dl4c_status dl4c_train_local_data(dl4c_net *net, const dl4c_train_data *data,
                                  const dl4c_train_opts *opts, dl4c_train_state *state);

/* Evaluation of one process's data (batches of up to `batch` examples). Creates *ev or *rev
 * (classification when ds->n_classes > 0, regression otherwise); the other stays NULL. */
dl4c_status dl4c_net_evaluate(dl4c_net *net, const dl4c_dataset *ds, int batch, dl4c_eval **ev,
                              dl4c_regeval **rev);
/* Distributed evaluation: each worker evaluates its shard; counts are summed so every worker
 * gets the same result as a single-process evaluation of the union. */
dl4c_status dl4c_evaluate_dist(dl4c_comm *comm, dl4c_net *net, const dl4c_dataset *shard,
                               int n_classes_or_columns, bool classification, int batch,
                               dl4c_eval **ev, dl4c_regeval **rev);

#ifdef __cplusplus
}
#endif
#endif
