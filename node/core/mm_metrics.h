/* A node's counters for a Prometheus scrape: memory the parent maps
 * before it forks its children. Each proxy worker has a slot, written only
 * by that worker (no locks, no atomic read-modify-write); the directory
 * agent publishes its store's and gossip's figures beside them; any
 * worker renders the sum. A restarted worker carries on its slot's
 * counters; only its gauge of open sessions starts at zero. */
#ifndef MM_METRICS_H
#define MM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm_config.h"

#define MM_METRICS_WORKERS_MAX 64
#define MM_METRICS_KEYS_MAX 96	/* distinct results one worker counts */
#define MM_METRICS_RESULT_MAX 32	/* bytes of a result name, NUL
					 * included */

/* Counters keyed by a result name as the logs spell it. */
enum mm_metrics_family {
	MM_METRICS_CLOSE,		/* sessions ended, by close result */
	MM_METRICS_LOGIN,		/* IMAP/POP3 logins: ok, authfail, tempfail */
	MM_METRICS_MESSAGE,	/* SMTP messages: delivered, refused, ... */
	MM_METRICS_BACKEND,	/* back-end failures, by back end and reason */
	MM_METRICS_FAMILY_COUNT,
};

enum mm_metrics_dir {
	MM_METRICS_IN,		/* client to back end */
	MM_METRICS_OUT,		/* back end to client */
};

struct mm_metrics;
struct mm_metrics_slot;

/* Maps counters for workers 0..workers-1 (at most MM_METRICS_WORKERS_MAX),
 * shared with every process forked afterwards; zeroed. */
struct mm_metrics *mm_metrics_new(unsigned workers);
void mm_metrics_free(struct mm_metrics *m);

/* Worker w's slot, for that worker alone to write. */
struct mm_metrics_slot *mm_metrics_slot(struct mm_metrics *m, unsigned w);

/* Worker w (re)starts: its open sessions died with the old process. */
void mm_metrics_worker_start(struct mm_metrics *m, unsigned w);

/* The parent restarted a worker that died. */
void mm_metrics_count_restart(struct mm_metrics *m);

/* Writers; slot may be NULL (no metrics: nothing is counted). */
void mm_metrics_connection(struct mm_metrics_slot *s, enum mm_proto p);
/* The gauge of open sessions: one more, one fewer. */
void mm_metrics_session_open(struct mm_metrics_slot *s, enum mm_proto p);
void mm_metrics_session_end(struct mm_metrics_slot *s, enum mm_proto p);
void mm_metrics_bytes(struct mm_metrics_slot *s, enum mm_proto p,
    enum mm_metrics_dir d, uint64_t n);
/* Counts one event of family f with result (a name from the code, not
 * from a peer). A worker that has seen MM_METRICS_KEYS_MAX distinct ones
 * counts further new ones under "other". */
void mm_metrics_count(struct mm_metrics_slot *s, enum mm_metrics_family f,
    enum mm_proto p, const char *result);
/* The same for MM_METRICS_BACKEND: a failure of back end (a name from
 * the config) for reason. */
void mm_metrics_backend_fail(struct mm_metrics_slot *s, enum mm_proto p,
    const char *backend, const char *reason);

/* A login held while its user was frozen mid-move: how long it waited
 * (histogram mailmesh_login_hold_seconds). */
void mm_metrics_login_held(struct mm_metrics_slot *s, uint64_t ms);
/* Bytes of a move's dsync stream this worker carried. */
void mm_metrics_move_bytes(struct mm_metrics_slot *s, uint64_t n);

/* The move engine's, written by the agent alone; m may be NULL. */
enum mm_metrics_move_outcome {
	MM_METRICS_MOVE_DONE,
	MM_METRICS_MOVE_ABORTED,
	MM_METRICS_MOVE_FREEZE_ABANDONED,	/* a freeze; the move goes on */
	MM_METRICS_MOVE_OUTCOMES,
};
enum mm_metrics_move_phase {
	MM_METRICS_MOVE_COPY,		/* MOVING until the freeze */
	MM_METRICS_MOVE_FREEZE,		/* FROZEN until TRANSFER */
	MM_METRICS_MOVE_FINAL,		/* the last pass, inside the freeze */
	MM_METRICS_MOVE_PHASES,
};
void mm_metrics_move_outcome(struct mm_metrics *m,
    enum mm_metrics_move_outcome o);
void mm_metrics_move_phase(struct mm_metrics *m,
    enum mm_metrics_move_phase p, uint64_t ms);

/* What the directory agent publishes about its store and gossip. */
struct mm_metrics_directory {
	uint64_t records, certs, revoked, origins, evidence;
	uint64_t store_used_bytes, store_map_bytes;
	bool gossip;			/* the rest is set when true */
	uint64_t members, alive;
	uint64_t msgs_sent, bytes_sent, msgs_recv, bytes_recv;
	uint64_t records_new, records_dup, records_rejected;
	uint64_t probes, probe_failures, suspicions, deaths, refutations;
	uint64_t throttles, stalls;
};

/* The agent (the only writer) publishes d; rendered from then on. */
void mm_metrics_set_directory(struct mm_metrics *m,
    const struct mm_metrics_directory *d);

/* The Prometheus text exposition (format 0.0.4) of the sum over all
 * slots, into out (outlen bytes, NUL-terminated). Returns its length, or
 * 0 when it does not fit. */
size_t mm_metrics_render(const struct mm_metrics *m, char *out, size_t outlen);

#endif
