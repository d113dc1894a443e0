/* Store work off the event loop: one thread with a store handle of its own
 * (store_dup) runs jobs in the order they were added; each job's done
 * callback then runs on the loop. The directory agent keeps everything
 * long or blocking here (accepting gossip in batches, signing and storing
 * its own changes, long reads), so that its loop answers probes, gossip
 * and mmctl at once whatever the store is doing.
 *
 * A job's run gets the thread's handle and may use nothing of the loop's;
 * done may use both the loop's state and what run left in arg. */
#ifndef JOBS_H
#define JOBS_H

#include <stddef.h>

struct event_base;
struct jobs;
struct store;

typedef void (*jobs_run_cb)(struct store *st, void *arg);
typedef void (*jobs_done_cb)(void *arg);

/* Starts the thread on a new handle of st's environment; done callbacks
 * come from base's loop. name is for the log. NULL (logged) when the
 * thread cannot start. */
struct jobs *jobs_new(struct event_base *base, struct store *st,
    const char *name);

/* Queues a job: run on the thread, then done (may be NULL) on the loop.
 * Never blocks. */
void jobs_add(struct jobs *j, jobs_run_cb run, jobs_done_cb done, void *arg);

/* Jobs added and not yet done (queued, running, or done on the thread and
 * waiting for the loop). */
size_t jobs_pending(const struct jobs *j);

/* Runs what is queued, stops the thread, runs the outstanding done
 * callbacks, closes the handle. NULL is fine. */
void jobs_free(struct jobs *j);

#endif
