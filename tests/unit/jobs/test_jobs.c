/* The store thread: jobs run off the loop, in order, and finish on it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <pthread.h>

#include <event2/event.h>

#include "jobs.h"
#include "store.h"

#define N 200

struct one {
	int i;
	pthread_t ran_on;
	struct store *st;
	int *finished;
	struct event_base *base;
};

static int order_run[N], n_run;
static int order_done[N], n_done;

static void
run_cb(struct store *st, void *arg)
{
	struct one *o = arg;

	o->ran_on = pthread_self();
	o->st = st;
	order_run[n_run++] = o->i;	/* one thread: no race */
}

static void
done_cb(void *arg)
{
	struct one *o = arg;

	assert_true(pthread_equal(pthread_self(), o->ran_on) == 0);
	order_done[n_done++] = o->i;
	if (++*o->finished == N)
		event_base_loopbreak(o->base);
}

static void
test_jobs_order_and_threads(void **state)
{
	char dir[] = "/tmp/test_jobs.XXXXXX", path[64], *err = NULL;
	struct event_base *base = event_base_new();
	struct store *st;
	struct jobs *js;
	struct one *ones = calloc(N, sizeof(*ones));
	int finished = 0, i;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/db", dir);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	js = jobs_new(base, st, "test");
	assert_non_null(js);
	for (i = 0; i < N; i++) {
		ones[i].i = i;
		ones[i].finished = &finished;
		ones[i].base = base;
		jobs_add(js, run_cb, done_cb, &ones[i]);
	}
	assert_true(jobs_pending(js) > 0);
	event_base_dispatch(base);
	assert_int_equal(finished, N);
	assert_int_equal(jobs_pending(js), 0);
	for (i = 0; i < N; i++) {
		assert_int_equal(order_run[i], i);
		assert_int_equal(order_done[i], i);
		/* The thread's own handle, not the loop's. */
		assert_ptr_not_equal(ones[i].st, st);
		assert_ptr_equal(ones[i].st, ones[0].st);
	}
	/* What is queued at the end still runs, and finishes. */
	n_run = n_done = 0;
	finished = 0;
	for (i = 0; i < 10; i++)
		jobs_add(js, run_cb, done_cb, &ones[i]);
	jobs_free(js);
	assert_int_equal(n_run, 10);
	assert_int_equal(n_done, 10);
	store_close(st);
	event_base_free(base);
	free(ones);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jobs_order_and_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
