/* The CPU backend's thread pool (src/backend/cpu_threads.c): every task of a loop runs exactly
 * once whatever the threads, loops called from inside a task run inline on its thread, and the
 * judgement whether helpers may spin between loops counts other processes' threads, not the
 * pool's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "backend/cpu_internal.h"

#define TASKS 1000

typedef struct count_job { _Atomic int runs[TASKS]; _Atomic int inner_threads_not_1; _Atomic int inner_runs; } count_job;

static void inner_task(void *ctx, int t) {
    count_job *j = ctx;
    (void)t;
    atomic_fetch_add(&j->inner_runs, 1);
}

static void count_task(void *ctx, int t) {
    count_job *j = ctx;
    atomic_fetch_add(&j->runs[t], 1);
    if (dl4c_cpu_threads() != 1) atomic_fetch_add(&j->inner_threads_not_1, 1);
    if (t % 100 == 0) dl4c_cpu_parallel(3, inner_task, j);   /* nested: inline, all 3 run */
}

static void test_every_task_once(void **state) {
    (void)state;
    static count_job j;
    for (int threads = 1; threads <= 4; threads++) {
        dl4c_cpu_set_threads(threads);
        for (int rep = 0; rep < 50; rep++) {
            for (int t = 0; t < TASKS; t++) atomic_store(&j.runs[t], 0);
            atomic_store(&j.inner_runs, 0);
            dl4c_cpu_parallel(TASKS, count_task, &j);
            for (int t = 0; t < TASKS; t++) assert_int_equal(atomic_load(&j.runs[t]), 1);
            assert_int_equal(atomic_load(&j.inner_runs), 3 * (TASKS / 100));
        }
        assert_int_equal(dl4c_cpu_threads(), threads);
    }
    assert_int_equal(atomic_load(&j.inner_threads_not_1), 0);
    dl4c_cpu_set_threads(1);
}

static void test_spin_room(void **state) {
    (void)state;
    double others = 0;
    /* 2 CPUs, a pool of 2: the pool's own 2 running threads leave room (the load average
     * counted them, and 2 threads busy on 2 cores read as a loaded machine) */
    for (int i = 0; i < 10; i++) assert_true(dl4c_cpu_spin_room(&others, 2, 2, 2, 2));
    /* another process's thread takes a CPU: no room from its first check on */
    assert_false(dl4c_cpu_spin_room(&others, 3, 2, 2, 2));
    assert_false(dl4c_cpu_spin_room(&others, 3, 2, 2, 2));
    /* it goes away: room again at the next check (the smoothed count 0.375) */
    assert_true(dl4c_cpu_spin_room(&others, 2, 2, 2, 2));
    bool room;
    /* 8 CPUs, a pool of 2, 5 other threads: room; 7: none */
    others = 0;
    for (int i = 0; i < 10; i++) room = dl4c_cpu_spin_room(&others, 7, 2, 8, 2);
    assert_true(room);
    for (int i = 0; i < 10; i++) room = dl4c_cpu_spin_room(&others, 9, 2, 8, 2);
    assert_false(room);
    /* helpers asleep are not running: a count below ours is no one else */
    others = 0;
    assert_true(dl4c_cpu_spin_room(&others, 1, 3, 2, 2));
}

static void test_runnable_now(void **state) {
    (void)state;
#ifdef __linux__
    assert_true(dl4c_cpu_runnable_now() >= 1);   /* this thread is running */
#else
    skip();
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once),
        cmocka_unit_test(test_spin_room),
        cmocka_unit_test(test_runnable_now),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
