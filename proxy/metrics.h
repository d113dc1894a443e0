/* Counters of a node's proxy workers, for a Prometheus scrape: memory the
 * parent maps before it forks the workers, one slot per worker. A slot is
 * written only by its worker (no locks, no atomic read-modify-write) and
 * read by any worker that renders the sum. A restarted worker carries on
 * its slot's counters; only its gauge of open sessions starts at zero. */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mm_config.h"

#define METRICS_WORKERS_MAX 64
#define METRICS_KEYS_MAX 96		/* distinct results one worker counts */
#define METRICS_RESULT_MAX 32		/* bytes of a result name, NUL included */

/* Counters keyed by a result name as the logs spell it. */
enum metrics_family {
	METRICS_CLOSE,		/* sessions ended, by close result */
	METRICS_LOGIN,		/* IMAP/POP3 logins: ok, authfail, tempfail */
	METRICS_MESSAGE,	/* SMTP messages: delivered, refused, ... */
	METRICS_FAMILY_COUNT,
};

enum metrics_dir {
	METRICS_IN,		/* client to back end */
	METRICS_OUT,		/* back end to client */
};

struct metrics;
struct metrics_slot;

/* Maps counters for workers 0..workers-1 (at most METRICS_WORKERS_MAX),
 * shared with every process forked afterwards; zeroed. */
struct metrics *metrics_new(unsigned workers);
void metrics_free(struct metrics *m);

/* Worker w's slot, for that worker alone to write. */
struct metrics_slot *metrics_slot(struct metrics *m, unsigned w);

/* Worker w (re)starts: its open sessions died with the old process. */
void metrics_worker_start(struct metrics *m, unsigned w);

/* The parent restarted a worker that died. */
void metrics_count_restart(struct metrics *m);

/* Writers; slot may be NULL (no metrics: nothing is counted). */
void metrics_connection(struct metrics_slot *s, enum mm_proto p);
/* The gauge of open sessions: one more, one fewer. */
void metrics_session_open(struct metrics_slot *s, enum mm_proto p);
void metrics_session_end(struct metrics_slot *s, enum mm_proto p);
void metrics_bytes(struct metrics_slot *s, enum mm_proto p,
    enum metrics_dir d, uint64_t n);
/* Counts one event of family f with result (a name from the code, not
 * from a peer). A worker that has seen METRICS_KEYS_MAX distinct ones
 * counts further new ones under "other". */
void metrics_count(struct metrics_slot *s, enum metrics_family f,
    enum mm_proto p, const char *result);

/* The Prometheus text exposition (format 0.0.4) of the sum over all
 * slots, into out (outlen bytes, NUL-terminated). Returns its length, or
 * 0 when it does not fit. */
size_t metrics_render(const struct metrics *m, char *out, size_t outlen);

#endif
