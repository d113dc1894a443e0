/* mm_parallel: every index of [0, n) is passed exactly once, in ranges
 * that do not overlap, whatever n and the number of threads; the calling
 * thread takes a share; with one thread everything runs inline. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mm_parallel.h"

struct visits {
	size_t n;
	atomic_uint *count;		/* per index */
	atomic_size_t calls;
	atomic_int bad_range;		/* empty, reversed or past n */
	atomic_int caller_first;	/* the range at 0 ran on the caller */
	atomic_int off_caller;		/* some range ran on another thread */
	pthread_t caller;
};

static void
visit(size_t begin, size_t end, void *arg)
{
	struct visits *v = arg;
	size_t i;

	atomic_fetch_add(&v->calls, 1);
	if (begin >= end || end > v->n)
		atomic_store(&v->bad_range, 1);
	if (pthread_equal(pthread_self(), v->caller)) {
		if (begin == 0)
			atomic_store(&v->caller_first, 1);
	} else {
		atomic_store(&v->off_caller, 1);
	}
	for (i = begin; i < end && i < v->n; i++)
		atomic_fetch_add(&v->count[i], 1);
}

static void
visits_init(struct visits *v, size_t n)
{
	size_t i;

	memset(v, 0, sizeof(*v));
	v->n = n;
	v->count = calloc(n == 0 ? 1 : n, sizeof(*v->count));
	assert_non_null(v->count);
	for (i = 0; i < n; i++)
		atomic_init(&v->count[i], 0);
	v->caller = pthread_self();
}

/* Each index once, and no range out of [0, n). */
static void
visits_check(struct visits *v)
{
	size_t i;

	assert_int_equal(atomic_load(&v->bad_range), 0);
	for (i = 0; i < v->n; i++) {
		if (atomic_load(&v->count[i]) != 1)
			fail_msg("n=%zu: index %zu visited %u times", v->n, i,
			    atomic_load(&v->count[i]));
	}
	free(v->count);
	v->count = NULL;
}

static const size_t sizes[] = { 0, 1, 2, 3, 7, 8, 9, 63, 64, 65, 1000,
	4096, 100003 };
static const size_t threads[] = { 0, 1, 2, 3, 8, 64, 1000 };

static void
test_threads(void **state)
{
	size_t i, t;

	(void)state;
	assert_int_equal(mm_parallel_threads(0), 1);
	assert_int_equal(mm_parallel_threads(1), 1);
	for (i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		t = mm_parallel_threads(threads[i]);
		assert_true(t >= 1);
		assert_true(t <= MM_PARALLEL_MAX);
		if (threads[i] > 0)
			assert_true(t <= threads[i]);
	}
}

static void
test_for_each_index_once(void **state)
{
	struct visits v;
	size_t i, j, nt;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (j = 0; j < sizeof(threads) / sizeof(threads[0]); j++) {
			visits_init(&v, sizes[i]);
			mm_parallel_for(sizes[i], threads[j], visit, &v);
			nt = mm_parallel_threads(threads[j]);
			/* One contiguous range per thread, none empty. */
			assert_true(atomic_load(&v.calls) <=
			    (nt < sizes[i] ? nt : sizes[i]));
			if (sizes[i] > 0) {
				assert_int_equal(atomic_load(&v.calls),
				    nt < sizes[i] ? nt : sizes[i]);
				assert_int_equal(atomic_load(&v.caller_first),
				    1);
			}
			visits_check(&v);
		}
	}
}

static void
test_for_empty(void **state)
{
	struct visits v;

	(void)state;
	visits_init(&v, 0);
	mm_parallel_for(0, 8, visit, &v);
	assert_int_equal(atomic_load(&v.calls), 0);
	visits_check(&v);
}

/* One thread, or one index: the caller does it all. */
static void
test_for_inline(void **state)
{
	struct visits v;

	(void)state;
	visits_init(&v, 1000);
	mm_parallel_for(1000, 1, visit, &v);
	assert_int_equal(atomic_load(&v.calls), 1);
	assert_int_equal(atomic_load(&v.off_caller), 0);
	visits_check(&v);

	visits_init(&v, 1);
	mm_parallel_for(1, 8, visit, &v);
	assert_int_equal(atomic_load(&v.calls), 1);
	assert_int_equal(atomic_load(&v.off_caller), 0);
	visits_check(&v);
}

static void
test_start_join_each_index_once(void **state)
{
	struct visits v;
	struct mm_parallel *p;
	size_t i, j;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (j = 0; j < sizeof(threads) / sizeof(threads[0]); j++) {
			visits_init(&v, sizes[i]);
			p = mm_parallel_start(sizes[i], threads[j], visit, &v);
			assert_non_null(p);
			mm_parallel_join(p);
			visits_check(&v);
		}
	}
}

/* Two loops in flight at once keep to their own indexes. */
static void
test_start_join_overlap(void **state)
{
	struct visits a, b;
	struct mm_parallel *pa, *pb;

	(void)state;
	visits_init(&a, 4096);
	visits_init(&b, 4096);
	pa = mm_parallel_start(4096, 8, visit, &a);
	pb = mm_parallel_start(4096, 8, visit, &b);
	mm_parallel_join(pa);
	visits_check(&a);
	mm_parallel_join(pb);
	visits_check(&b);
}

/* With one thread nothing runs before the join, and all on the caller. */
static void
test_start_join_one_thread(void **state)
{
	struct visits v;
	struct mm_parallel *p;

	(void)state;
	visits_init(&v, 100);
	p = mm_parallel_start(100, 1, visit, &v);
	assert_int_equal(atomic_load(&v.calls), 0);
	mm_parallel_join(p);
	assert_int_equal(atomic_load(&v.calls), 100);
	assert_int_equal(atomic_load(&v.off_caller), 0);
	visits_check(&v);

	visits_init(&v, 0);
	p = mm_parallel_start(0, 8, visit, &v);
	mm_parallel_join(p);
	assert_int_equal(atomic_load(&v.calls), 0);
	visits_check(&v);

	mm_parallel_join(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_for_each_index_once),
		cmocka_unit_test(test_for_empty),
		cmocka_unit_test(test_for_inline),
		cmocka_unit_test(test_start_join_each_index_once),
		cmocka_unit_test(test_start_join_overlap),
		cmocka_unit_test(test_start_join_one_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
