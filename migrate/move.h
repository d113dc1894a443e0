/* The move engine of one node, in the directory agent on its loop:
 * `mmctl move USER SITE` hands a live mailbox to another site.
 *
 * The node mmctl asks must be of the owner site A; it coordinates:
 *   1. PREPARE: A signs MOVING (target B) and sends it to a node of the
 *      target site B, which stores it, agrees and names its back end.
 *      What that back end holds for the user must be a copy of this
 *      mailbox (an earlier move's: the passes bring it up to date) or an
 *      INBOX never used (given the source's GUID and UIDVALIDITY);
 *      another mailbox of the user's there refuses the move, with the
 *      reason.
 *   2. COPY: this site's back end runs dsync passes into B's through
 *      this node's dsync-listen and the channel (proxy/dsync_tunnel.h),
 *      until a pass is quick or move-passes ran.
 *   3. FREEZE: A signs FROZEN; every other alive node of A stores it and
 *      ends the user's sessions, and says so within MOVE_FREEZE_ACK_MS
 *      (else the freeze is abandoned: MOVING again, and copy on); logins
 *      are held meanwhile (proxy), mail gets 4xx. The back end's own
 *      sessions of the user are kicked; a last pass; both sides describe
 *      the mailbox (verify.h) and must agree.
 *   4. COMMIT: A signs TRANSFER (epoch + 1, site B, B's back end): the
 *      commit point, after which the move is never undone. One more pass
 *      carries mail that reached A's back end late; then B stores the
 *      TRANSFER and signs ACTIVE.
 * A freeze that has not committed within timeout move-freeze is
 * abandoned. Before the commit `mmctl move --abort` stops the move: A
 * signs ACTIVE at A; B keeps its partial copy for a later move.
 *
 * Every phase is written to the move table (move_db.h) before it acts;
 * a node that restarts resumes each move from its phase: a copy starts
 * its passes again, a freeze is abandoned (MOVING, then copy), a commit
 * finishes, an abort finishes. Requests between nodes are retried until
 * answered; every handler is idempotent.
 *
 * Not built yet: moves asked of a node of another site than the owner,
 * the IMAP engine, --from-file / --parallel, `--purge` of the old copy,
 * a body digest in the verify, moves in `mmctl check`. */
#ifndef MOVE_H
#define MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl.h"

#define MOVE_FREEZE_ACK_MS 2000	/* A's nodes confirm the freeze */
#define MOVE_RETRY_MS 2000	/* an unanswered request goes again */
#define MOVE_REQUEST_MS 30000	/* then the step fails */
#define MOVE_QUICK_PASS_MS 1000	/* a pass this quick ends the copy */
#define MOVE_KEEP_MS (7ULL * 24 * 3600 * 1000)	/* finished ones listed */
#define MOVE_DOVEADM_MS (6ULL * 3600 * 1000)	/* one dsync pass */

struct event_base;
struct jobs;
struct mm_config;
struct mm_metrics;
struct ops;
struct peers;

/* What the agent lends the engine. */
typedef void (*move_workers_cb)(void *arg, bool all, uint64_t count);
struct move_env {
	struct event_base *base;
	const struct mm_config *conf;
	struct ops *ops;
	struct peers *peers;
	struct jobs *writer;
	struct mm_metrics *metrics;	/* NULL: none kept */
	/* Every worker of this node ends user's sessions (count: how many)
	 * / routes user's dsync streams to backend of site (site "": no
	 * more; count: workers that did). cb once, from the loop. */
	void (*kick)(void *env_arg, const char *user, const char *reason,
	    move_workers_cb cb, void *arg);
	void (*route)(void *env_arg, const char *user, const char *site,
	    const char *backend, move_workers_cb cb, void *arg);
	void *env_arg;
};

struct moves;

/* Opens the move table beside the directory and resumes the moves that
 * were running. env is copied; what it points to must outlive the engine.
 * NULL with *errstr_r (malloc'd). */
struct moves *moves_new(const struct move_env *env, char **errstr_r);
/* Stops every move where it is (the table says where). Call it after the
 * writer has stopped (jobs_free), whose last jobs may still call back
 * into the engine. NULL is fine. */
void moves_free(struct moves *m);

/* The control requests the engine answers:
 *   move USER SITE BACKEND DRY   BACKEND "" = the target's choice; DRY
 *                                "1": say what would happen
 *   move-abort USER
 *   moves [USER]                 every move known: user, from, to,
 *                                phase, bytes, passes, age_s, freeze_ms,
 *                                error */
bool moves_takes(const char *op);
typedef void (*moves_answer_cb)(void *arg, enum ctl_status st,
    const char *msg, struct ctl_rows *rows);
/* Answers through cb, once, perhaps before this returns. */
void moves_request(struct moves *m, const char *op, size_t argc,
    char *const *argv, moves_answer_cb cb, void *arg);
/* arg's requester is gone: no answer will be given to it. */
void moves_cancel(struct moves *m, void *arg);

#endif
