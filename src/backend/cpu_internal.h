/* Internals of the CPU backend, shared by cpu.c (the table and the portable kernels),
 * cpu_threads.c (the thread pool, per-thread scratch) and cpu_avx512.c (the AVX-512 kernels).
 *
 * Results never depend on the number of threads: work is split into tasks by the shape of
 * the problem alone, every task writes its own outputs, and every sum runs in an order fixed
 * by the shape (partial sums are added in task order, never in arrival order). */
#ifndef DL4C_CPU_INTERNAL_H
#define DL4C_CPU_INTERNAL_H

#include "backend/backend.h"

/* ---- threads (cpu_threads.c) ---- */
/* One task of a parallel loop: task in [0, n_tasks). */
typedef void (*dl4c_cpu_task)(void *ctx, int task);
/* Runs fn(ctx, 0..n_tasks-1) on the calling thread and the pool's helpers, returns when all
 * are done. Runs them all on the caller when the pool has one thread, when another thread is
 * using the pool, when called from inside a task, or while helpers have been late (see
 * cpu_threads.c); they are tasks then too. A loop of one task is a plain call. */
void dl4c_cpu_parallel(int n_tasks, dl4c_cpu_task fn, void *ctx);
/* Threads the pool uses (the caller included), 1..DL4C_CPU_MAX_THREADS; 1 inside a task (its
 * nested loops run on its thread). */
void dl4c_cpu_set_threads(int threads);
int dl4c_cpu_threads(void);
#define DL4C_CPU_MAX_THREADS 64
/* The pool's judgement whether its helpers may spin between loops (see cpu_threads.c): given
 * the runnable threads on the machine now (`running`), this process's among them (`ours`: the
 * caller and the helpers awake), the CPUs online and the threads the pool runs, updates the
 * smoothed count of other processes' runnable threads in *others and returns whether they
 * leave a CPU to each of the pool's threads. */
bool dl4c_cpu_spin_room(double *others, int running, int ours, long online, int threads);
/* Runnable threads on the machine now (Linux: /proc/loadavg), or -1 where that is unknown. */
int dl4c_cpu_runnable_now(void);
/* A buffer of at least `floats` floats private to the calling thread, 64-byte aligned; slot
 * 0..DL4C_CPU_ARENA_SLOTS-1 are separate buffers. Valid until the next call with the same slot
 * on this thread (which may move it); freed when the thread exits. NULL when out of memory. */
#define DL4C_CPU_ARENA_SLOTS 8
float *dl4c_cpu_arena(int slot, int64_t floats);

/* ---- portable kernels (cpu.c), reused by the AVX-512 table ---- */
void dl4c_cpu_act_forward(const dl4c_backend *be, dl4c_activation a, float *x, int64_t rows, int64_t len);
void dl4c_cpu_act_backward(const dl4c_backend *be, dl4c_activation a, const float *y, float *dy,
                           int64_t rows, int64_t len);
/* The table with the portable kernels only (OpenBLAS products), whatever the machine. */
const dl4c_backend *dl4c_backend_cpu_generic(void);

/* ---- AVX-512 kernels (cpu_avx512.c) ---- */
/* True when this machine and its OS run AVX-512 (F, BW, DQ, VL). */
bool dl4c_cpu_avx512_usable(void);
/* Replaces the ops of *be it has faster AVX-512 forms of. */
void dl4c_cpu_avx512_install(dl4c_backend *be);
/* For tests: the updater's exact path near underflow rounds to float by conversion (on, the
 * default where conversions to subnormals take no assist) or from the bits (off); the same
 * floats either way. Returns the previous setting. */
bool dl4c_cpu_avx512_round_by_cvt(bool on);

#endif
