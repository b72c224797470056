/* The CPU backend's thread pool and per-thread scratch.
 *
 * One process-wide pool of helper threads runs the tasks of one parallel loop at a time
 * (dl4c_cpu_parallel); a caller that finds it busy runs its loop alone. Tasks are claimed
 * one by one from an atomic word holding (generation << 32 | tasks left), so the caller does
 * every task itself when a helper is slow to wake (a loaded machine), and results cannot
 * depend on who ran which task. Helpers sleep on a condition variable between loops (see
 * SPIN_SECONDS). When the caller keeps waiting at
 * the end of loops for a helper that was preempted in the middle of a task (more runnable
 * threads than cores), the next loops run on the caller alone for a while. */
#define _GNU_SOURCE   /* sched_getaffinity, CPU_COUNT */
#include "backend/cpu_internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Helpers spin this long after a loop before they sleep (seconds), while the machine has room
 * for them (checked every LOAD_CHECK_SECONDS): a training step runs one loop after another,
 * and a wake-up costs more than the gap. On a machine with more runnable threads than cores a
 * spinning helper takes the core from the caller (measured on a loaded 2-core machine: LeNet
 * steps 20-30% slower with 20-200 us), so there helpers sleep at once. Room is judged from the
 * threads of other processes: the runnable threads the kernel counts (/proc/loadavg), less
 * this process's (the caller and the helpers not asleep), smoothed over the checks. The load
 * average alone counted this process's own threads as load: 2 threads busy on 2 cores made
 * it read 2, helpers slept between loops, and LeNet on 2 threads trained ~10% slower once a
 * run had lasted a minute (26.4k against 29-30k images/s). Without /proc, the load average
 * (below the CPUs less 0.5) decides. */
#define SPIN_SECONDS 5e-5
#define LOAD_CHECK_SECONDS 0.25
/* A loop whose caller waited for helpers longer than this and than it worked itself is late;
 * after LATE_LOOPS late loops in a row, SERIAL_LOOPS loops run on the caller alone. */
#define LATE_SECONDS 3e-5
#define LATE_LOOPS 2
#define SERIAL_LOOPS 256

typedef struct pool {
    pthread_mutex_t use;              /* held by the thread running a parallel loop */
    pthread_mutex_t m;                /* guards sleepers, with cv */
    pthread_cond_t cv;                /* helpers sleep here while no tasks are left */
    int sleepers;                     /* helpers waiting on cv */
    _Atomic uint64_t state;           /* generation << 32 | tasks left */
    _Atomic(dl4c_cpu_task) fn;        /* the loop's task and its context and size */
    _Atomic(void *) ctx;
    _Atomic int n_tasks;
    _Atomic int done;                 /* tasks of this loop finished */
    _Atomic int threads;              /* threads wanted, caller included */
    int started;                      /* helpers created (guarded by use) */
    int late;                         /* late loops in a row (guarded by use) */
    _Atomic int spin_us;              /* how long helpers spin now (0: the machine is busy) */
    double load_checked;              /* when the load was last checked (guarded by use) */
    double others;                    /* other processes' runnable threads, smoothed (guarded by use) */
    int serial;                       /* loops left to run on the caller alone (guarded by use) */
    pthread_t tids[DL4C_CPU_MAX_THREADS];
} pool;

static pool the_pool = {.use = PTHREAD_MUTEX_INITIALIZER, .m = PTHREAD_MUTEX_INITIALIZER,
                        .cv = PTHREAD_COND_INITIALIZER, .threads = 1};
static _Thread_local int in_task;     /* this thread is running a task: nested loops run inline */

/* The 4th field of /proc/loadavg, "running/total". */
int dl4c_cpu_runnable_now(void) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return -1;
    double a, b, c;
    int running = -1, total;
    if (fscanf(f, "%lf %lf %lf %d/%d", &a, &b, &c, &running, &total) != 5) running = -1;
    fclose(f);
    return running;
}

/* Others' runnable threads smoothed over the checks (half the weight to the newest: a
 * process that ran at one check only is forgotten within a second). */
bool dl4c_cpu_spin_room(double *others, int running, int ours, long online, int threads) {
    *others = 0.5 * *others + 0.5 * (running > ours ? running - ours : 0);
    return *others < (double)(online - threads) + 0.5;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Claims one task of the current loop: its index, or -1 when none is left. */
static int claim(pool *p) {
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        const uint32_t left = (uint32_t)s;
        if (left == 0) return -1;
        /* While the word still holds (generation, left > 0), the caller is inside that loop and
         * has not rewritten fn/ctx/n_tasks: values read before a successful exchange are its. */
        const int n = atomic_load_explicit(&p->n_tasks, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, s - 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return n - (int)left;
    }
}

static void run_tasks(pool *p) {
    for (int t; (t = claim(p)) >= 0;) {
        const dl4c_cpu_task fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        in_task = 1;
        fn(ctx, t);
        in_task = 0;
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static bool tasks_left(pool *p) { return (uint32_t)atomic_load_explicit(&p->state, memory_order_acquire) != 0; }

static void *helper_main(void *arg) {
    pool *p = arg;
    for (;;) {
        run_tasks(p);
        const int spin_us = atomic_load_explicit(&p->spin_us, memory_order_relaxed);
        if (spin_us > 0) {
            const double until = seconds_now() + 1e-6 * spin_us;
            int spins = 0;
            while (!tasks_left(p)) {
                CPU_RELAX();
                if (++spins % 256 == 0 && seconds_now() > until) break;
            }
        }
        if (tasks_left(p)) continue;
        pthread_mutex_lock(&p->m);
        p->sleepers++;
        while (!tasks_left(p)) pthread_cond_wait(&p->cv, &p->m);
        p->sleepers--;
        pthread_mutex_unlock(&p->m);
    }
    return NULL;
}

void dl4c_cpu_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > DL4C_CPU_MAX_THREADS) threads = DL4C_CPU_MAX_THREADS;
    atomic_store(&the_pool.threads, threads);
}

int dl4c_cpu_threads(void) { return in_task ? 1 : atomic_load(&the_pool.threads); }

/* A loop run on the calling thread alone: its tasks are tasks too (their nested loops inline,
 * dl4c_cpu_threads() 1), as when the pool runs them. */
static void run_inline(int n_tasks, dl4c_cpu_task fn, void *ctx) {
    const int outer = in_task;
    in_task = 1;
    for (int t = 0; t < n_tasks; t++) fn(ctx, t);
    in_task = outer;
}

void dl4c_cpu_parallel(int n_tasks, dl4c_cpu_task fn, void *ctx) {
    pool *p = &the_pool;
    if (n_tasks <= 0) return;
    const int threads = atomic_load(&p->threads);
    if (n_tasks == 1) {   /* not a split: the task's own loops may use the pool */
        fn(ctx, 0);
        return;
    }
    if (threads == 1 || in_task || pthread_mutex_trylock(&p->use) != 0) {
        run_inline(n_tasks, fn, ctx);
        return;
    }
    if (p->serial > 0) {
        p->serial--;
        pthread_mutex_unlock(&p->use);
        run_inline(n_tasks, fn, ctx);
        return;
    }
    const double now = seconds_now();
    if (now - p->load_checked > LOAD_CHECK_SECONDS) {   /* idle cores: let helpers spin */
        p->load_checked = now;
        double load = 1e9;
        cpu_set_t set;
        const int cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        const int running = dl4c_cpu_runnable_now();
        bool room;
        if (running > 0 && online > 0) {
            pthread_mutex_lock(&p->m);
            const int ours = 1 + p->started - p->sleepers;
            pthread_mutex_unlock(&p->m);
            room = dl4c_cpu_spin_room(&p->others, running, ours, online, threads);
        } else {
            room = getloadavg(&load, 1) == 1 && load < cpus - 0.5;
        }
        atomic_store_explicit(&p->spin_us, room ? (int)(SPIN_SECONDS * 1e6) : 0, memory_order_relaxed);
    }
    /* Helpers are created on first need and then kept (they sleep when idle). The number of
     * helpers that run is not limited to threads - 1 once more exist: results do not depend
     * on it, and a lowered thread count only matters for the next process. */
    while (p->started < threads - 1) {
        if (pthread_create(&p->tids[p->started], NULL, helper_main, p) != 0) break;
        pthread_detach(p->tids[p->started]);
        p->started++;
    }
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    const uint64_t gen = (atomic_load_explicit(&p->state, memory_order_relaxed) >> 32) + 1;
    atomic_store_explicit(&p->state, (gen << 32) | (uint32_t)n_tasks, memory_order_seq_cst);
    pthread_mutex_lock(&p->m);
    if (p->sleepers) pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->m);
    const double t0 = seconds_now();
    run_tasks(p);
    const double t1 = seconds_now();
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks) {
        CPU_RELAX();
        if (++spins % 64 == 0) sched_yield();   /* a helper holding a task may need this core */
    }
    const double waited = spins ? seconds_now() - t1 : 0;
    if (waited > LATE_SECONDS && waited > t1 - t0) {
        if (++p->late >= LATE_LOOPS) {
            p->late = 0;
            p->serial = SERIAL_LOOPS;
        }
    } else {
        p->late = 0;
    }
    pthread_mutex_unlock(&p->use);
}

/* ---- per-thread scratch ---- */
typedef struct arena {
    float *p[DL4C_CPU_ARENA_SLOTS];
    int64_t n[DL4C_CPU_ARENA_SLOTS];
} arena;

static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_free(void *v) {
    arena *a = v;
    for (int i = 0; i < DL4C_CPU_ARENA_SLOTS; i++) free(a->p[i]);
    free(a);
}

static void arena_key_make(void) { (void)pthread_key_create(&arena_key, arena_free); }

float *dl4c_cpu_arena(int slot, int64_t floats) {
    DL4C_ASSERT(slot >= 0 && slot < DL4C_CPU_ARENA_SLOTS);
    pthread_once(&arena_once, arena_key_make);
    arena *a = pthread_getspecific(arena_key);
    if (!a) {
        if (!(a = calloc(1, sizeof *a))) return NULL;
        if (pthread_setspecific(arena_key, a) != 0) { free(a); return NULL; }
    }
    if (floats < 16) floats = 16;
    if (a->n[slot] < floats) {
        free(a->p[slot]);
        a->n[slot] = 0;
        const int64_t want = floats + floats / 4;   /* room to grow a little */
        void *q = NULL;
        if (posix_memalign(&q, 64, sizeof(float) * (size_t)want) != 0) return a->p[slot] = NULL;
        a->p[slot] = q;
        a->n[slot] = want;
    }
    return a->p[slot];
}
