/* The consistency check across nodes: `mmctl check` on a node that
 * gossips asks every member for its tree root and a scrub of its own
 * store, descends where the trees differ, fetches every node's record of
 * each user found to differ or found damaged, and answers with the report
 * (check.h builds it). The same module answers the checks other nodes
 * run. Messages travel as PEER_FRAME_CHECK frames over the peers'
 * channels (peers.h); the codec is check.h's.
 *
 * One check runs at a time. The loop sends, receives and compares in
 * memory; every read of many records (this node's tree, its scrub, its
 * users of the leaves that differ, its records of what was found, and the
 * scrubs other nodes ask for) runs on the reader thread, so that gossip
 * and probes are answered meanwhile. The requester is told the answer
 * through a callback, so that this module knows nothing of who asked (the
 * agent's control socket). */
#ifndef CHECK_RUN_H
#define CHECK_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "ctl.h"
#include "mm_config.h"

struct check_run;
struct event_base;
struct jobs;
struct ops;
struct peers;

/* The answer to a check: status, a one-line summary and the findings
 * (header row first), all valid during the call only. */
typedef void (*check_run_done_cb)(void *arg, enum ctl_status status,
    const char *msg, struct ctl_rows *rows);

/* Serves other nodes' checks on net's channels from now on, and runs this
 * node's with o's store; long reads go to reader (a thread with a store
 * handle of its own: jobs.h). base, conf, o, net and reader must outlive
 * the check runner; free it before net and reader. */
struct check_run *check_run_new(struct event_base *base,
    const struct mm_config *conf, struct ops *o, struct peers *net,
    struct jobs *reader);
/* Drops a running check without an answer, stops serving. What it left
 * on reader is freed when reader finishes it. NULL is fine. */
void check_run_free(struct check_run *cr);

/* Whether the request op (with argc arguments) is a check that cr runs
 * across the nodes; false when cr is NULL (no gossip): ops_exec then runs
 * it on this node alone. */
bool check_run_takes(const struct check_run *cr, const char *op,
    size_t argc);

/* Starts a check. done is called once with arg and the answer: when
 * every node has answered or the check timed out (within 15 s), when this
 * node's store cannot be read, or at once (before this returns) when a
 * check is running already. */
void check_run_start(struct check_run *cr, check_run_done_cb done,
    void *arg);

/* The requester arg went away: its running check is dropped, done is not
 * called. Nothing happens when no check runs for arg, or cr is NULL. */
void check_run_cancel(struct check_run *cr, void *arg);

#endif
