#include "mm_parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "mm_util.h"

/* One thread's contiguous range of mm_parallel_for. */
struct share {
	mm_parallel_cb fn;
	void *arg;
	size_t begin, end;
};

struct mm_parallel {
	mm_parallel_cb fn;
	void *arg;
	size_t n;
	atomic_size_t next;
	pthread_t tid[MM_PARALLEL_MAX];
	size_t started;
};

size_t
mm_parallel_threads(size_t threads_max)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (threads_max > MM_PARALLEL_MAX)
		threads_max = MM_PARALLEL_MAX;
	if (n < 1 || threads_max < 1)
		return 1;
	return (size_t)n > threads_max ? threads_max : (size_t)n;
}

static void *
share_thread(void *arg)
{
	struct share *s = arg;

	s->fn(s->begin, s->end, s->arg);
	return NULL;
}

void
mm_parallel_for(size_t n, size_t threads_max, mm_parallel_cb fn, void *arg)
{
	pthread_t tid[MM_PARALLEL_MAX];
	struct share sh[MM_PARALLEL_MAX];
	size_t nt = mm_parallel_threads(threads_max), started = 0, i;
	size_t base, extra;

	if (n == 0)
		return;
	if (nt > n)
		nt = n;
	/* The first n % nt ranges are one longer. */
	base = n / nt;
	extra = n % nt;
	for (i = 0; i < nt; i++) {
		sh[i].fn = fn;
		sh[i].arg = arg;
		sh[i].begin = i * base + (i < extra ? i : extra);
		sh[i].end = sh[i].begin + base + (i < extra ? 1 : 0);
	}
	for (i = 1; i < nt; i++) {
		if (pthread_create(&tid[i], NULL, share_thread, &sh[i]) != 0)
			break;
		started++;
	}
	fn(sh[0].begin, sh[0].end, arg);
	/* Ranges of threads that did not start are done here. */
	for (i = 1 + started; i < nt; i++)
		fn(sh[i].begin, sh[i].end, arg);
	for (i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
}

static void
take(struct mm_parallel *p)
{
	size_t i;

	while ((i = atomic_fetch_add(&p->next, 1)) < p->n)
		p->fn(i, i + 1, p->arg);
}

static void *
take_thread(void *arg)
{
	take(arg);
	return NULL;
}

struct mm_parallel *
mm_parallel_start(size_t n, size_t threads_max, mm_parallel_cb fn, void *arg)
{
	struct mm_parallel *p = xcalloc(1, sizeof(*p));
	size_t nt = mm_parallel_threads(threads_max), i;

	p->fn = fn;
	p->arg = arg;
	p->n = n;
	atomic_init(&p->next, 0);
	if (nt > n)
		nt = n;
	/* The caller's share waits for its join. */
	for (i = 1; i < nt; i++) {
		if (pthread_create(&p->tid[p->started], NULL, take_thread,
		    p) != 0)
			break;
		p->started++;
	}
	return p;
}

void
mm_parallel_join(struct mm_parallel *p)
{
	size_t i;

	if (p == NULL)
		return;
	take(p);
	for (i = 0; i < p->started; i++)
		pthread_join(p->tid[i], NULL);
	free(p);
}
