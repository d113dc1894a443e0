/* A loop over [0, n) run on several cores: the one shape of the store's
 * signing and signature checks. Threads are started for each loop and
 * joined when it ends (no pool: the loops are batches, each far longer
 * than a thread's start). */
#ifndef MM_PARALLEL_H
#define MM_PARALLEL_H

#include <stddef.h>

/* The most threads one loop uses, whatever its caller asks for. */
#define MM_PARALLEL_MAX 64

/* Does the work of indexes begin .. end-1; called from several threads at
 * once with ranges that do not overlap. */
typedef void (*mm_parallel_cb)(size_t begin, size_t end, void *arg);

/* How many threads a loop of enough indexes would use: the online CPU
 * count, at most threads_max (and MM_PARALLEL_MAX), at least 1. */
size_t mm_parallel_threads(size_t threads_max);

/* Calls fn over [0, n) split into contiguous ranges, one per thread, on up
 * to mm_parallel_threads(threads_max) threads; the calling thread takes
 * the first range and returns when every range is done. Every index is
 * passed exactly once; n 0 calls nothing. With one thread (one core,
 * threads_max 1, n 1) fn runs inline; a thread that cannot be started has
 * its range run by the caller. The caller keeps arg. */
void mm_parallel_for(size_t n, size_t threads_max, mm_parallel_cb fn,
    void *arg);

/* The same loop split in two, for a caller that has other work meanwhile:
 * mm_parallel_start sets up to mm_parallel_threads(threads_max) - 1
 * threads to work through [0, n) and returns at once; the caller's
 * mm_parallel_join takes its own share of what is left, then waits for
 * the rest. Indexes are taken one at a time from a shared counter, so
 * whoever is free takes the next (the caller joins late): meant for work
 * that costs far more than an atomic add, such as a signature check.
 * With one thread nothing runs before the join. arg must outlive the
 * join. The handle is the caller's until mm_parallel_join, which frees
 * it; NULL joins nothing. */
struct mm_parallel;

struct mm_parallel *mm_parallel_start(size_t n, size_t threads_max,
    mm_parallel_cb fn, void *arg);
void mm_parallel_join(struct mm_parallel *p);

#endif
