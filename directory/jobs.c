/* A store thread and its two queues: jobs to run, jobs to finish on the
 * loop. The thread wakes the loop through a pipe. */
#include "jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store.h"

#define JOBS_NICE 5		/* below the event loop's priority */

struct job {
	struct job *next;
	jobs_run_cb run;
	jobs_done_cb done;
	void *arg;
};

struct fifo {
	struct job *head, *tail;
};

struct jobs {
	struct store *st;		/* the thread's handle */
	char *name;
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct fifo todo, finished;	/* under lock */
	size_t pending;			/* under lock */
	bool stop;			/* under lock */
	int pipefd[2];			/* thread -> loop: finished jobs */
	struct event *ev;
};

static void
fifo_push(struct fifo *f, struct job *j)
{
	j->next = NULL;
	if (f->tail != NULL)
		f->tail->next = j;
	else
		f->head = j;
	f->tail = j;
}

static struct job *
fifo_take_all(struct fifo *f)
{
	struct job *j = f->head;

	f->head = f->tail = NULL;
	return j;
}

static void *
thread_main(void *arg)
{
	struct jobs *js = arg;
	struct job *j;
	char one = 1;

	/* The loop must win the cores whenever it has something to do: it
	 * answers probes, whose lateness makes peers suspect this node.
	 * The helper threads that verify for this one inherit this. */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid),
	    JOBS_NICE) != 0)
		log_warn("- dir jobs-nice name=%s", js->name);
	pthread_mutex_lock(&js->lock);
	for (;;) {
		while (js->todo.head == NULL && !js->stop)
			pthread_cond_wait(&js->wake, &js->lock);
		if (js->todo.head == NULL)
			break;
		j = js->todo.head;
		js->todo.head = j->next;
		if (js->todo.head == NULL)
			js->todo.tail = NULL;
		pthread_mutex_unlock(&js->lock);
		j->run(js->st, j->arg);
		pthread_mutex_lock(&js->lock);
		fifo_push(&js->finished, j);
		/* A full pipe already says there is something to finish. */
		while (write(js->pipefd[1], &one, 1) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&js->lock);
	return NULL;
}

/* Runs the done callbacks of what the thread has finished, in order. */
static void
finish(struct jobs *js)
{
	struct job *j, *next;

	pthread_mutex_lock(&js->lock);
	j = fifo_take_all(&js->finished);
	pthread_mutex_unlock(&js->lock);
	for (; j != NULL; j = next) {
		next = j->next;
		if (j->done != NULL)
			j->done(j->arg);
		pthread_mutex_lock(&js->lock);
		js->pending--;
		pthread_mutex_unlock(&js->lock);
		free(j);
	}
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	finish(arg);
}

struct jobs *
jobs_new(struct event_base *base, struct store *st, const char *name)
{
	struct jobs *js = xcalloc(1, sizeof(*js));
	int i;

	js->name = xstrdup(name);
	js->pipefd[0] = js->pipefd[1] = -1;
	if (pipe2(js->pipefd, O_CLOEXEC | O_NONBLOCK) != 0) {
		log_warn("- dir jobs-pipe name=%s", name);
		goto fail;
	}
	js->ev = event_new(base, js->pipefd[0], EV_READ | EV_PERSIST, wake_cb,
	    js);
	if (js->ev == NULL || event_add(js->ev, NULL) != 0)
		goto fail;
	js->st = store_dup(st);
	pthread_mutex_init(&js->lock, NULL);
	pthread_cond_init(&js->wake, NULL);
	if ((errno = pthread_create(&js->tid, NULL, thread_main, js)) != 0) {
		log_warn("- dir jobs-thread name=%s", name);
		pthread_mutex_destroy(&js->lock);
		pthread_cond_destroy(&js->wake);
		store_close(js->st);
		goto fail;
	}
	return js;
fail:
	if (js->ev != NULL)
		event_free(js->ev);
	for (i = 0; i < 2; i++)
		if (js->pipefd[i] >= 0)
			close(js->pipefd[i]);
	free(js->name);
	free(js);
	return NULL;
}

void
jobs_add(struct jobs *js, jobs_run_cb run, jobs_done_cb done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));

	j->run = run;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&js->lock);
	fifo_push(&js->todo, j);
	js->pending++;
	pthread_cond_signal(&js->wake);
	pthread_mutex_unlock(&js->lock);
}

size_t
jobs_pending(const struct jobs *js)
{
	size_t n;

	pthread_mutex_lock((pthread_mutex_t *)&js->lock);
	n = js->pending;
	pthread_mutex_unlock((pthread_mutex_t *)&js->lock);
	return n;
}

void
jobs_free(struct jobs *js)
{
	if (js == NULL)
		return;
	pthread_mutex_lock(&js->lock);
	js->stop = true;
	pthread_cond_signal(&js->wake);
	pthread_mutex_unlock(&js->lock);
	pthread_join(js->tid, NULL);
	finish(js);
	event_free(js->ev);
	close(js->pipefd[0]);
	close(js->pipefd[1]);
	pthread_mutex_destroy(&js->lock);
	pthread_cond_destroy(&js->wake);
	store_close(js->st);
	free(js->name);
	free(js);
}
