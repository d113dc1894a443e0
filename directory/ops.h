/* The directory's control requests: what mmctl asks of a node's directory
 * (directory/ctl.h carries them over the control socket). The agent runs
 * them for its clients on its store threads, and `mmctl --direct` runs the
 * same handlers on the store itself when no node is up, so that both paths
 * give the same answers; listings stream in slices either way (ops_req).
 * A struct ops holds what they need: the store (open for writing), the
 * node key that signs changes, and the config. Also here: the trust
 * checks a node runs before it starts, and the accept rule for the
 * records peers gossip.
 *
 * Over the socket, anyone who can connect may read; the ops that change
 * anything (user-add, user-set, user-del, import-*, keys-accept; the op
 * table in ops.c says which, ops_writes asks it) are refused with CTL_PERM
 * unless the peer is root, in admin-group, or the user a node without
 * `user` runs as. --direct is bounded by the files' modes instead.
 *
 * Ops (args) and their answers; tables have a header row first:
 *   user-add USER BACKEND             the new record (one row)
 *   user-set USER BACKEND STATE TARGET   STATE "" = active, TARGET "" = none
 *   user-del USER
 *   user-show USER                    status 1 when unknown or deleted
 *   user-list SITE                    SITE "" = all sites; no tombstones
 *   import-users U1 B1 S1 T1 U2 ...   at most CTL_IMPORT_ROWS rows of user,
 *                                     backend, state, target site; S "" =
 *                                     active (an existing user keeps its
 *                                     state), T "" = none; one write
 *                                     transaction; rows: failures (index,
 *                                     why)
 *   import-rows U1 B1 S1 U2 ...       the same without target sites
 *   export                            this site's users: user, backend,
 *                                     state, target site
 *   verify                            faults: what, reason; message: counts
 *   check                             findings (check.h): kind, user, site,
 *                                     node, the record's fields, detail;
 *                                     with gossip every member is asked
 *                                     (check_run.h) and the answer waits
 *                                     for them; status 0 clean, 1 a
 *                                     finding, 3 only a node not reached
 *   keys-accept HEX                   a CERT or REVOKE envelope (hex)
 *   keys-list                         certificates and revocations
 *   stats                             one row of counters
 *   sites                             gossip members, this node first:
 *                                     site, name, address, state,
 *                                     rtt_ms, last_contact_s, incarnation,
 *                                     self, session_address */
#ifndef OPS_H
#define OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "dkey.h"
#include "gossip.h"
#include "mm_config.h"
#include "record.h"
#include "store.h"

#define OPS_CHECK_STUCK_S 3600	/* a move older than this is stuck */
/* A node that gossips says it may lack users this long after it starts,
 * until gossip has compared with a peer (GOSSIP_STARTUP_MS, and more). */
#define OPS_STARTUP_BEHIND_S 15

struct ops;
struct check_report;
struct store;
struct store_presig;
struct store_tree;

/* Loads the cluster root's public key from conf->root_key. 0, or -1 with
 * a malloc'd *errstr_r that says how to fix it. */
int ops_load_root_public(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r);

/* What the node checks before it forks anything (as the run user): the
 * store opens for writing and holds the root of root-key (set when
 * unset), and key may run a node of the site under node-name by the trust
 * rule (trust.h, TRUST_USE_NODE: a node or site certificate, neither
 * revoked nor expired). Opens and closes the store: nothing of it crosses
 * a fork.
 * 0, or -1 with a malloc'd *errstr_r that says how to fix it. */
int ops_preflight(const struct mm_config *conf, const struct dkey *key,
    char **errstr_r);

/* Opens the store for writing and sets the root key when unset. key (the
 * node key; copied, wiped by ops_free; NULL: none, for requests that sign
 * nothing) signs the changes. conf must outlive the ops. NULL with a
 * malloc'd *errstr_r, and *status_r says why (CTL_PERM, CTL_TEMP,
 * CTL_FAILED). */
struct ops *ops_new(const struct mm_config *conf, const struct dkey *key,
    enum ctl_status *status_r, char **errstr_r);
/* Closes the store and wipes the key; NULL is fine. */
void ops_free(struct ops *o);

/* Runs one request whole, on o's store (a listing's every row lands in
 * rows: stream those with ops_req instead). *message_r (malloc'd, never
 * NULL) and rows are the caller's to free. Returns the status. */
enum ctl_status ops_exec(struct ops *o, const char *op, size_t argc,
    char *const *argv, char **message_r, struct ctl_rows *rows);

/* Whether op reads what only the loop that owns o has (the gossip
 * membership: sites): it then runs there with ops_exec, not on a store
 * thread. */
bool ops_on_loop(const char *op);

/* ---- requests in slices --------------------------------------------- */

/* A request that runs elsewhere than on o's loop: on a store thread
 * (jobs.h), or in mmctl --direct, in slices. Requests whose answer grows
 * with the store (user-list, export, verify, keys-list, stats) come in
 * slices of bounded size: at most OPS_SLICE_ROWS rows or OPS_SLICE_BYTES
 * bytes of them, each slice read in a read transaction of its own and
 * resuming after the last user the slice before read, so that the
 * caller can send a slice before the next is read, wait for a slow
 * reader in between, and run other work on the thread meanwhile. Any
 * other request is one slice. */
#define OPS_SLICE_ROWS 10000
#define OPS_SLICE_BYTES (256 * 1024)	/* of rows, as ctl_rows counts */

struct ops_req;

/* A request for op with args (copied), on o's config and key; made on
 * o's loop, where o must stay until the request is freed. Never NULL: an
 * unknown op or a wrong count is the answer of its one slice. */
struct ops_req *ops_req_new(struct ops *o, const char *op, size_t argc,
    char *const *argv);
/* NULL is fine. */
void ops_req_free(struct ops_req *r);

/* Runs the next slice on st, the store handle of the thread it runs on
 * (NULL: o's own). It uses nothing of o but its config and key (never its
 * gossip), so it may run on any one thread at a time. The slice's rows
 * are added to rows, the first slice's after the header row. 1: more
 * slices follow; 0: that was the last, with *status_r and *message_r
 * (malloc'd, the caller's) set. */
int ops_req_run(struct ops_req *r, struct store *st, struct ctl_rows *rows,
    enum ctl_status *status_r, char **message_r);

/* After a slice of a request that writes (ops_writes), on o's loop:
 * pushes through o's gossip what it stored (this node's own records, a
 * certificate or revocation). Nothing for a request that only reads. */
void ops_req_publish(struct ops *o, struct ops_req *r);

/* For tests: slices of at most rows rows, examining at most records
 * records each (0: the request's own bounds). */
void ops_req_set_slice(struct ops_req *r, size_t rows, size_t records);

/* Whether op changes the store or the node (so needs an admin over the
 * control socket). false for an unknown op: ops_exec refuses that one
 * without running anything. */
bool ops_writes(const char *op);

/* The store the ops write; it stays theirs (valid until ops_free). */
struct store *ops_store(struct ops *o);

/* Gossip runs (g; not owned, must stay until the next call) or stops
 * (NULL): records this node signs are pushed through g from then on,
 * starting after the highest the store numbered without a gap, and
 * `sites` answers from it. */
void ops_set_gossip(struct ops *o, struct gossip *g);

/* What the agent does with the n envelopes of one gossip message from
 * peer from: the accept rule, all in one write transaction on st (the
 * handle of the thread that runs it), with each record bound to its
 * signer's name as origin. results[i] for envelope i: superseded records
 * are kept in the log and count as duplicates, and so does a record whose
 * signer's certificate is not known yet; invalid ones are rejected (and
 * logged with the rule's result). The envelopes stay the caller's. now is
 * unix seconds. pre (n entries) are the signatures checked ahead
 * (store_presig_check); NULL: checked here. */
void ops_gossip_accept_batch(struct store *st, const char *from,
    const uint8_t *const *envs, const size_t *lens, size_t n,
    uint64_t now, const struct store_presig *pre,
    enum gossip_accept *results);
/* The same for one envelope, on o's store. */
enum gossip_accept ops_gossip_accept(struct ops *o, const char *from,
    const uint8_t *env, size_t len, uint64_t now);

/* The move engine's writes, on the writer's thread (st its handle):
 * signs user's next record with this node's key, state ACTIVE, MOVING or
 * FROZEN (target: the move's site, "" for ACTIVE) on backend, or
 * TRANSFER to site target (backend: the back end there). The record as
 * stored goes to env_r (RECORD_MAX bytes), its length to *len_r (0 when
 * it could not be read back). The accept rule's result. */
enum accept_result ops_move_sign(struct ops *o, struct store *st,
    const char *user, const char *backend, enum user_state state,
    const char *target, uint8_t *env_r, size_t *len_r);
/* Then, on the loop: gossips what this node signed. */
void ops_publish(struct ops *o);

/* This node's part of a check report (check.h): its tree, origins, back
 * ends, a scrub of its store (store_scrub; signatures are checked by
 * `verify` only) and the per-record checks, added to rep as the local
 * node, all at once (`mmctl --direct check`; the agent's check_run does
 * the same off its loop). The tree goes to *tree_r (the caller's to
 * free) when tree_r is not NULL. 0, or -1 when the store cannot be read
 * (the node is then marked unreachable in rep). */
int ops_check_local(struct ops *o, struct check_report *rep,
    struct store_tree **tree_r);

/* Rows as they come, a slice at a time; valid during the call. */
typedef void (*ops_rows_cb)(void *arg, const struct ctl_rows *rows);

/* Certificates and revocations read from the store at path, given to cb
 * in slices (keys-list's rows, header first): key id, role, site, name,
 * issued, expires, state (valid, revoked, expired, bad-signature),
 * origin, origin_seq. The store is read in this process, read-only, and
 * closed before return. 0, or -1 with a malloc'd *errstr_r. */
int ops_keys_rows(const char *path, uint64_t now, ops_rows_cb cb, void *arg,
    char **errstr_r);

/* The next origin_seq for records signed by origin, from the certificates
 * and revocations of the store at path (0 + 1 when none). */
uint64_t ops_root_next_seq(const char *path, const char *origin);

#endif
