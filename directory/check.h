/* The consistency check between nodes (`mmctl check`): the wire messages
 * nodes exchange on the inter-node channel beside gossip, and the report
 * built from what every node answered. Pure: no I/O, no clock
 * (check_run.h runs the check).
 *
 * A check message is one msgpack array ["chk", version, type, id, ...],
 * carried in a PEER_FRAME_CHECK frame (peers.h), whose type byte tells it
 * from gossip. id pairs an answer with its request.
 *   ROOT_REQ     [.., 1, id]
 *   ROOT         [.., 2, id, site, node, root (bin 32), users,
 *                 origins [[origin, contig, highest]...], backends [str]]
 *   BUCKETS_REQ  [.., 3, id, paths [uint]]  path 0: the root's children
 *                                           (buckets); 1 + b: bucket b's
 *                                           (leaves)
 *   BUCKETS      [.., 4, id, [[path, hashes (bin 256 * 32)]...]]
 *   USERS_REQ    [.., 5, id, leaves [uint]]
 *   USERS        [.., 6, id, complete (bool), [[user, hash (bin 32)]...]]
 *                the users' tree entries (store.h), leaf by leaf
 *   RECORD_REQ   [.., 7, id, users [str]]
 *   RECORD       [.., 8, id, [[user, envelope (bin) or nil]...]]
 *   SCRUB_REQ    [.., 9, id]
 *   SCRUB        [.., 10, id, records, damaged, equivocations,
 *                 complete (bool), [[user, what]...], conflicts,
 *                 [[user, what]...]]
 *                the node's scrub of its own store (store_scrub): user ""
 *                for a finding about a leaf; at most CHECK_FAULTS_MAX of
 *                the damaged findings are listed; then the open claims
 *                and releases its evidence holds (store_evidence_text),
 *                the first CHECK_CONFLICTS_MAX listed
 * Every count and length is bounded by a CHECK_*_MAX below, on encode and
 * decode; values are in their shortest msgpack form. Version 2: the scrub
 * took the place of a signature check of every record (`mmctl verify`);
 * 3: the scrub tells the conflicts too. */
#ifndef CHECK_H
#define CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "store.h"

#define CHECK_VERSION 3
#define CHECK_MAGIC "chk"
#define CHECK_MSG_MAX (512 * 1024)	/* one encoded message */
#define CHECK_NAME_MAX 64	/* node, origin, back end names */
#define CHECK_SITE_MAX 32
#define CHECK_USER_MAX 255
#define CHECK_ENV_MAX 4096	/* one envelope (RECORD_MAX) */
#define CHECK_ORIGINS_MAX 1024
#define CHECK_BACKENDS_MAX 256
#define CHECK_PATHS_MAX 16	/* buckets asked for in one request */
#define CHECK_LEAVES_MAX 256	/* leaves asked for in one request */
#define CHECK_USERS_MAX 1024	/* (user, hash) pairs in one answer */
#define CHECK_RECORDS_MAX 64	/* envelopes asked for in one request */
#define CHECK_FAULTS_MAX 256	/* scrub findings carried */
#define CHECK_CONFLICTS_MAX 128	/* conflicts carried */
#define CHECK_TEXT_MAX 512	/* what a finding says */
#define CHECK_HASH_LEN STORE_TREE_HASH_LEN
#define CHECK_FANOUT STORE_TREE_FANOUT

enum check_type {
	CHECK_ROOT_REQ = 1,
	CHECK_ROOT = 2,
	CHECK_BUCKETS_REQ = 3,
	CHECK_BUCKETS = 4,
	CHECK_USERS_REQ = 5,
	CHECK_USERS = 6,
	CHECK_RECORD_REQ = 7,
	CHECK_RECORD = 8,
	CHECK_SCRUB_REQ = 9,
	CHECK_SCRUB = 10,
};

/* Not NUL-terminated; points into the decoded buffer, or the encoder's
 * caller's memory. */
struct check_slice {
	const uint8_t *p;
	size_t len;
};

struct check_origin {
	struct check_slice origin;
	uint64_t contig, highest;
};

struct check_user {
	struct check_slice user;
	const uint8_t *hash;		/* USERS: CHECK_HASH_LEN bytes */
	struct check_slice env;		/* RECORD: len 0 = none held */
};

struct check_fault {
	struct check_slice user;	/* empty: about a leaf */
	struct check_slice what;
};

/* One message; only the fields of its type are meaningful. Large: keep it
 * on the heap. */
struct check_msg {
	enum check_type type;
	uint64_t id;
	/* ROOT */
	struct check_slice site, node;
	const uint8_t *root;
	uint64_t users;
	size_t n_origins, n_backends;
	struct check_origin origins[CHECK_ORIGINS_MAX];
	struct check_slice backends[CHECK_BACKENDS_MAX];
	/* BUCKETS_REQ, BUCKETS (hashes: CHECK_FANOUT * CHECK_HASH_LEN) */
	size_t n_paths;
	uint32_t paths[CHECK_PATHS_MAX];
	const uint8_t *hashes[CHECK_PATHS_MAX];
	/* USERS_REQ */
	size_t n_leaves;
	uint32_t leaves[CHECK_LEAVES_MAX];
	/* USERS, RECORD_REQ, RECORD; complete: USERS and SCRUB */
	bool complete;
	size_t n_users;
	struct check_user list[CHECK_USERS_MAX];
	/* SCRUB */
	uint64_t records, damaged, equivocations, conflicts;
	size_t n_faults, n_conflicts;
	struct check_fault faults[CHECK_FAULTS_MAX];
	struct check_fault conflict[CHECK_CONFLICTS_MAX];
};

/* Decodes one message into *m (pure; slices point into buf). 0, or -1
 * with *why_r a static reason: short, trailing bytes, a wrong type, a
 * count, string or path over its limit, a name with bytes outside
 * printable ASCII. */
int check_msg_decode(const uint8_t *buf, size_t len, struct check_msg *m,
    const char **why_r);

/* Encodes *m into out (size bytes). The length, or -1 when a field is
 * over its limit or out is too small. */
int check_msg_encode(const struct check_msg *m, uint8_t *out, size_t size);

/* ---- the report ------------------------------------------------------ */

/* What one node answered (or the local node, or one that did not). The
 * strings and arrays are the report's (copied in). */
struct check_node;
struct check_report;

/* A node record held for a user that nodes disagree on: env NULL when
 * the node holds none. */

struct check_report *check_report_new(void);
void check_report_free(struct check_report *r);

/* Adds a node (site, name) and returns it; reached false with why for
 * one that did not answer. The first node added is the local one. */
struct check_node *check_report_node(struct check_report *r,
    const char *site, const char *name);
void check_node_unreachable(struct check_node *n, const char *why);
/* The site the node says it is at (it answers for itself). */
void check_node_site(struct check_node *n, const char *site);
void check_node_root(struct check_node *n, const uint8_t *root,
    uint64_t users);
void check_node_origin(struct check_node *n, const char *origin,
    uint64_t contig, uint64_t highest);
void check_node_backend(struct check_node *n, const char *backend);
/* What n's scrub of its own store found (store_scrub): counts, and
 * whether it ran to its end. */
void check_node_scrub(struct check_node *n, uint64_t records,
    uint64_t damaged, uint64_t equivocations, bool complete);
/* One of them: user ("" for a leaf) and what is wrong. A node with damage
 * is never taken to hold the local node's records, whatever its root. */
void check_node_damage(struct check_node *n, const char *user,
    const char *what);
/* A conflict n's evidence holds (store_evidence_text says it), and how
 * many in all (check_node_conflicts; more than are told). */
void check_node_conflict(struct check_node *n, const char *user,
    const char *what);
void check_node_conflicts(struct check_node *n, uint64_t count);
/* The descent was cut short (an answer was truncated or timed out). */
void check_node_incomplete(struct check_node *n, const char *why);
/* Node n holds env (NULL: nothing) for user, one of the users on which
 * the nodes disagree. env is copied. */
void check_node_record(struct check_node *n, const char *user,
    const uint8_t *env, size_t len);
/* The local node: the first added. */
struct check_node *check_report_local(struct check_report *r);
/* true if n's root equals the local node's (its records are the local
 * ones) and neither found damage in its store. */
bool check_node_same(const struct check_node *n);
const char *check_node_name(const struct check_node *n);

/* A current record of the local node, for the checks every record gets
 * (stuck mid-move, back end its site does not define). env is not kept. */
void check_report_local_record(struct check_report *r, const uint8_t *env,
    size_t len);
/* Moves what check_report_local_record gathered in from (a report of no
 * nodes, filled by another thread) into r; from is left empty. */
void check_report_merge_records(struct check_report *r,
    struct check_report *from);

/* Builds the findings into rows (header first: kind, user, site, node,
 * rec_site, backend, state, epoch, seq, origin, detail) and a one-line
 * summary *msg_r (malloc'd). now (unix seconds) and stuck_s judge moves
 * stuck. Returns CTL_OK when clean, CTL_FAILED when anything is wrong,
 * CTL_TEMP when all that is wrong is that a node could not be reached. */
enum ctl_status check_report_finish(struct check_report *r, uint64_t now,
    uint64_t stuck_s, struct ctl_rows *rows, char **msg_r);

#endif
