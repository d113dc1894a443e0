/* The directory store: signed records in one LMDB environment per node.
 *
 * Sub-databases: meta (schema version, root public key), users (normalised
 * user -> envelope), hwm (user -> epoch, seq), log (origin NUL origin_seq
 * big-endian -> envelope), origins (origin -> highest origin_seq), certs
 * (key id -> CERT envelope), revoked (key id -> REVOKE envelope), evidence
 * (BLAKE2b of an envelope -> envelope, for equivocations), routes (user ->
 * state, site, back end: the proxy's compact index of the current records),
 * tree (leaf -> its hash and count; leaf, user -> entry hash): the
 * consistency tree over the current records.
 *
 * One writer (the node's directory agent, or mmctl when no node runs; LMDB
 * serialises writers anyway). Proxy workers open it read-only and resolve a
 * user in one short read transaction. One write transaction per change (or
 * per batch of an import); a crash at any instant leaves the last committed
 * state. A full map grows (doubling) and retries; a full disk gives an
 * error and changes nothing. */
#ifndef STORE_H
#define STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkey.h"
#include "record.h"

#define STORE_SCHEMA_VERSION 3	/* 3: the consistency tree */
#define STORE_MAPSIZE_INITIAL (64ULL << 20)	/* grows when full */

struct store;

enum store_mode { STORE_READONLY, STORE_WRITE };

/* Opens (creating in write mode) the environment in directory path.
 * Refuses a store whose schema version differs, naming both versions;
 * in write mode a store of version 2 is migrated instead (its tree
 * built, logged).
 * NULL with *errstr_r on failure. */
struct store *store_open(const char *path, enum store_mode mode,
    char **errstr_r);
/* The same with the map size a new store starts with (an existing store
 * keeps the size it has grown to). Tests use a tiny map. */
struct store *store_open_sized(const char *path, enum store_mode mode,
    uint64_t mapsize, char **errstr_r);
/* Closes one handle; the environment closes with its last handle. */
void store_close(struct store *st);

/* Another handle to st's environment, for another thread of this process
 * (LMDB allows one environment per process; each thread needs a handle of
 * its own, since a handle keeps one read transaction). The handles
 * serialise what must be: writes (LMDB's own lock), and the rare resizing
 * of the map, which waits until no handle has a transaction open. */
struct store *store_dup(struct store *st);

/* The cluster root public key: set once (write mode), then fixed. */
int store_set_root(struct store *st, const uint8_t pk[DKEY_PK_LEN],
    char **errstr_r);
/* 1 and *pk_r, 0 if none set, -1 on error. */
int store_get_root(struct store *st, uint8_t pk_r[DKEY_PK_LEN]);

/* ---- reading (any process) ------------------------------------------ */

/* The current record of a normalised user, decoded. Returns 1 found, 0 not
 * found, -1 on a store error or a record that does not decode (logged,
 * counted). *buf_r receives a malloc'd copy of the envelope that u_r's
 * pointers refer to; free it. Pass buf_r NULL to skip the copy (then the
 * transfer pointer is NULL; transfer_len still tells whether there is
 * one). A store handle is for one thread at a time (store_dup). */
int store_get_user(struct store *st, const char *user,
    struct record_user *u_r, uint8_t **buf_r, size_t *len_r);

/* What the proxy needs to route a user, from the routing index kept
 * beside the records (written in the same transaction as each record).
 * Returns 1 found, 0 not found, -1 on a store error or a damaged entry. */
struct store_route {
	enum user_state state;
	char site[RECORD_SITE_MAX + 1];
	char backend[RECORD_NAME_MAX + 1];
};
int store_get_route(struct store *st, const char *user,
    struct store_route *r_r);

/* Calls cb for every current user record in name order (tombstones
 * included); cb returns 0 to go on, nonzero to stop. Returns 0, or -1. */
typedef int (*store_user_cb)(const struct record *r, const uint8_t *env,
    size_t len, void *arg);
int store_foreach_user(struct store *st, store_user_cb cb, void *arg);

/* Where a walk in slices goes on: after the entry with this key. Zeroed,
 * it starts at the first entry. */
#define STORE_KEY_MAX 511	/* LMDB's longest key */
struct store_cursor {
	uint8_t key[STORE_KEY_MAX];
	size_t len;
	bool started;
};

/* store_foreach_user in slices: from the first entry after cur, in a read
 * transaction of its own, until cb returns nonzero; cur moves past every
 * entry cb is called for (and every one skipped as damaged). Users added
 * or deleted between two slices are seen or not by where they sort: after
 * cur they are, before it not; every other user is seen exactly once. 1
 * when cb stopped the walk, 0 at the end, -1 on a store error. */
int store_foreach_user_from(struct store *st, struct store_cursor *cur,
    store_user_cb cb, void *arg);

/* ---- trust state ---------------------------------------------------- */

/* The certificate stored for key id, decoded into *c_r (no pointers into
 * the store). 1 found, 0 none (or a damaged entry), -1 on a store error.
 * The certificate was verified against the root when it was accepted;
 * store_verify checks it again. */
int store_get_cert(struct store *st, const uint8_t id[DKEY_ID_LEN],
    struct record_cert *c_r);

/* Calls cb for every stored certificate (store_foreach_cert) or
 * revocation (store_foreach_revoked), in key id order; r and env point
 * into the store and are valid during the call only. Entries that do not
 * decode as their kind are skipped (logged). cb returns 0 to go on,
 * nonzero to stop. Returns 0, or -1 on a store error. */
typedef int (*store_trust_cb)(const struct record *r, const uint8_t *env,
    size_t len, void *arg);
int store_foreach_cert(struct store *st, store_trust_cb cb, void *arg);
int store_foreach_revoked(struct store *st, store_trust_cb cb, void *arg);
/* The same in slices, as store_foreach_user_from. */
int store_foreach_cert_from(struct store *st, struct store_cursor *cur,
    store_trust_cb cb, void *arg);
int store_foreach_revoked_from(struct store *st, struct store_cursor *cur,
    store_trust_cb cb, void *arg);
/* 1 when the store holds a revocation of key id, 0 when not (or a
 * damaged entry), -1 on a store error. */
int store_is_revoked(struct store *st, const uint8_t id[DKEY_ID_LEN]);

/* Makes t (trust.h) ask st for the root key, certificates and
 * revocations, each question in a short read transaction of its own; t
 * keeps the answers until trust_forget. st must outlive t; the caller
 * clears t (trust_clear). */
struct trust_ctx;
void store_trust_init(struct store *st, struct trust_ctx *t);

/* The origin_seq the next record signed by origin takes: one above the
 * highest this store holds from origin (1 when none). 0, or -1 on a store
 * error. */
int store_next_origin_seq(struct store *st, const char *origin,
    uint64_t *seq_r);

struct store_stats {
	uint64_t users, tombstones, certs, revoked, origins, evidence;
	uint64_t map_bytes, used_bytes;
};
/* Every field; tombstones cost a walk over all users. 0 or -1. */
int store_stats(struct store *st, struct store_stats *s_r);
/* Every field but tombstones (left 0), without the walk: cheap enough
 * to call every second on any size of store. 0 or -1. */
int store_sizes(struct store *st, struct store_stats *s_r);

/* ---- the accept rule ------------------------------------------------ */

enum accept_result {
	ACCEPT_STORED = 0,	/* new and valid: stored */
	ACCEPT_DUPLICATE,	/* these exact bytes are stored already */
	ACCEPT_EQUIVOCATION,	/* same (epoch, seq), other body: evidence kept,
				   the deterministic winner is stored */
	REJECT_MALFORMED,	/* does not decode, or over RECORD_MAX */
	REJECT_BAD_SIGNATURE,
	REJECT_UNKNOWN_KEY,	/* no certificate for the key id */
	REJECT_REVOKED,
	REJECT_EXPIRED,
	REJECT_WRONG_SITE,	/* signer not certified for the owning site */
	REJECT_STALE,		/* (epoch, seq) not above the high-water mark */
	REJECT_NO_TRANSFER,	/* epoch change without the old owner's transfer */
	REJECT_NO_ROOT,		/* store has no root key yet */
	REJECT_WRONG_ORIGIN,	/* origin is not the signer's certified name */
	REJECT_STORE,		/* LMDB error, disk full: nothing changed */
};

#define STORE_ACCEPT_RESULTS (REJECT_STORE + 1)

const char *store_accept_name(enum accept_result r);

/* The LMDB or system error behind the last failed write (REJECT_STORE),
 * as text ("No space left on device"); NULL if none failed. */
const char *store_last_error(const struct store *st);

/* How often this store handle gave each result since it was opened
 * (store_accept*, store_put_*; store_get_user counts REJECT_MALFORMED for
 * a stored record that does not decode). */
void store_accept_counts(struct store *st,
    uint64_t counts_r[STORE_ACCEPT_RESULTS]);

/* The one accept function for local writes, imports and gossip: decodes,
 * checks signature, certificate, revocation, site, ordering and transfer,
 * and stores the record with its hwm, log and origin entries in one write
 * transaction. Who may sign what is the trust rule's (trust.h). CERT
 * records must be signed by the root key, REVOKE records too. now is unix
 * seconds (for expiry). The caller keeps env.
 *
 * USER records, in this order: the signer's certificate must exist and
 * bear the root's signature (UNKNOWN_KEY), not be revoked (REVOKED) nor
 * expired at now (EXPIRED), be of a role that signs records (site, node,
 * operator; a transport key is WRONG_SITE), and the signature hold
 * (BAD_SIGNATURE); then the signer must be certified for the record's
 * own site (WRONG_SITE; a TRANSFER's owner is checked below) under the
 * record's origin as its name (WRONG_ORIGIN). Against the user's
 * high-water mark: below it STALE; equal with the same body DUPLICATE;
 * equal with another body from the same signing site EQUIVOCATION (both
 * envelopes go to evidence keyed by BLAKE2b-256 of the envelope, the one
 * with the lower hash is current, an alarm is logged). Above it, the
 * owner is the stored record's site (for a new user, the record's own
 * site): a TRANSFER must be signed by the owner (WRONG_SITE) and raise the
 * epoch; any other record must keep the owner's site within an epoch, and
 * when it raises the epoch carry the owner's TRANSFER for the same user,
 * epoch and new site with a lower seq (NO_TRANSFER). The owner itself
 * raises its own epoch only with a TRANSFER to it from another site
 * carried the same way (a release: store_resolve). The carried
 * TRANSFER's signer may since have expired, not been revoked. A record
 * of another site than the owner's within the owner's epoch (a user
 * created at two sites while apart: WRONG_SITE, whatever its order), a
 * change of owner without the hand-over (NO_TRANSFER) and a hand-over
 * above the epoch by a site that does not own the user (WRONG_SITE) are
 * claims: kept as evidence (the conflicts section below).
 * CERT: a certificate for a revoked key is REVOKED, an expired one EXPIRED;
 * a stored certificate is replaced only by one issued later (else STALE).
 * REVOKE: the first revocation of a key stands. */
enum accept_result store_accept(struct store *st, const uint8_t *env,
    size_t len, uint64_t now);

/* Batches: up to n envelopes in one write transaction; results[i] per
 * envelope. A REJECT_STORE aborts the whole batch (all results say so).
 * Records are taken in order, so a CERT early in a batch certifies the
 * USER records after it. Long batches check signatures on all cores. */
void store_accept_batch(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now,
    enum accept_result *results);

/* Signatures checked ahead of the write transaction, so that checking one
 * batch can overlap writing the one before it: each is valid for the key
 * it names only, and counts only when the rule finds that key to be the
 * signer's certified one (else the signature is checked again there). */
struct store_presig {
	uint8_t pk[DKEY_PK_LEN];
	bool have_pk;		/* false: no key known yet, checked later */
	bool ok;
};
/* Checks the signature of each envelope against the key st's read view
 * holds for it (the root for certificates and revocations, the signer's
 * certificate for user records), on up to threads threads. out: n. */
void store_presig_check(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, size_t threads, struct store_presig *out);
/* store_accept_batch with the signatures checked ahead (pre: n entries,
 * the caller's). */
void store_accept_batch_pre(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now,
    const struct store_presig *pre, enum accept_result *results);

/* ---- authoring (the writer signs its own changes) ------------------- */

/* Who signs: a key certified for site, and the origin name that numbers the
 * records this signer makes (gap-free; the next origin_seq comes from the
 * store inside the same write transaction). */
struct store_signer {
	const struct dkey *key;
	const char *site;
	const char *origin;
};

/* Sets user (normalised by the caller) to live on backend at the signer's
 * site in state (ACTIVE, MOVING, FROZEN or DELETED), with the next seq of
 * its epoch, signs and accepts it. A user owned by another site is refused
 * (REJECT_WRONG_SITE). now is unix seconds. */
enum accept_result store_put_user(struct store *st,
    const struct store_signer *sg, const char *user, const char *backend,
    enum user_state state, const char *target_site, uint64_t now);

/* One change of store_put_users; the same fields as store_put_user. */
struct store_user_item {
	const char *user;		/* normalised */
	const char *backend;
	enum user_state state;		/* ACTIVE, MOVING, FROZEN, DELETED */
	const char *target_site;	/* NULL or "": none */
};

/* store_put_user for n users in ONE write transaction; results[i] per
 * item, as store_put_user would answer (a REJECT_STORE aborts the whole
 * batch and every result says so). Items are taken in order: a user named
 * twice gets two records, seq after seq. The records are numbered gap-free
 * (origin_seq) in item order among those stored, and signed on all cores.
 *
 * The accept rule is store_put_user's with one difference: the signatures
 * this call makes with sg->key are not verified one by one. Instead, once
 * per batch, the store must hold a certificate for sg->key's public key
 * that is for sg->site, not revoked and not expired at now (else every
 * item gets UNKNOWN_KEY, WRONG_SITE, REVOKED or EXPIRED); that check
 * stands in for the per-record verify. A user owned by another site is
 * REJECT_WRONG_SITE and the rest of the batch is stored. The caller keeps
 * items. store_put_user is the batch of one. */
void store_put_users(struct store *st, const struct store_signer *sg,
    const struct store_user_item *items, size_t n, uint64_t now,
    enum accept_result *results);

/* The commit point of a move: the owner signs TRANSFER at (stored epoch + 1,
 * seq 0) naming new_site (and, if known, the back end there; may be NULL).
 * The new site's own records of that epoch start at seq 1; store_put_user
 * at the new site embeds the stored TRANSFER (or the transfer carried by
 * the current record) in every record of that epoch, so nodes that missed
 * the TRANSFER still accept them. REJECT_STALE for an unknown user. */
enum accept_result store_put_transfer(struct store *st,
    const struct store_signer *sg, const char *user, const char *new_site,
    const char *backend, uint64_t now);

/* ---- conflicts ------------------------------------------------------ */

/* Evidence holds, besides equivocations (both bodies), every record the
 * accept rule refused as another site's claim to a user: a record of a
 * site other than the owner's within the owner's epoch (a user created at
 * two sites while they were apart), a change of owner without the
 * owner's hand-over, a hand-over signed by a site that does not own the
 * user here. Each is kept once (keyed by a tag and its hash) and read
 * against the user's current record: */
enum store_evidence_kind {
	EVIDENCE_EQUIVOCATION,	/* one site signed two bodies of one place */
	EVIDENCE_CLAIM,		/* another site claims the user, at an epoch
				 * not below the current one: open */
	EVIDENCE_RELEASE,	/* another site gave the user up to the owner
				 * here, above the current epoch: the owner
				 * has yet to take it (store_resolve) */
	EVIDENCE_SETTLED,	/* superseded since */
};

#define STORE_EVIDENCE_KINDS (EVIDENCE_SETTLED + 1)

struct store_evidence {
	enum store_evidence_kind kind;
	const char *user;
	struct record_user rec;		/* the evidence (its transfer field
					 * points into env) */
	bool cur_known;
	struct record_user cur;		/* the current record, if known */
	const uint8_t *env;
	size_t len;
};

/* Calls cb for every evidence entry that decodes as a user record, in
 * one read transaction; pointers are valid during the call. cb returns
 * 0 to go on. counts_r (STORE_EVIDENCE_KINDS entries) gets the count of
 * each kind seen. 0, or -1 on a store error. */
typedef int (*store_evidence_cb)(const struct store_evidence *e,
    void *arg);
int store_foreach_evidence(struct store *st, store_evidence_cb cb,
    void *arg, uint64_t counts_r[STORE_EVIDENCE_KINDS]);
/* One line naming both records and, for a release, the command that
 * completes it. */
void store_evidence_text(const struct store_evidence *e, char *buf,
    size_t size);

/* The way out of a user two sites own, run at a node of each (the user
 * must be the signer's site's here):
 *   at the site that gives it up (winner is another site, whose claim is
 *   held as evidence here): a TRANSFER to the winner at an epoch above
 *   both claims, naming the winner's back end; from then on this site
 *   routes the user to the winner;
 *   at the winner (winner is the signer's site): once that release has
 *   arrived (it is kept as evidence here), the winner's record of the
 *   release's epoch, carrying it, which every node takes.
 * Anything else is refused with a reason in out->why. */
struct store_resolution {
	enum accept_result res;
	char why[512];			/* when res is not ACCEPT_STORED */
	bool released;			/* this site gave the user up */
	uint64_t epoch;			/* of the record signed */
	char other[RECORD_NAME_MAX + 1];	/* the other claim's origin */
	char backend[RECORD_NAME_MAX + 1];	/* the losing site's back end */
};
enum accept_result store_resolve(struct store *st,
    const struct store_signer *sg, const char *user, const char *winner,
    uint64_t now, struct store_resolution *out);

/* ---- per-origin logs, for gossip ------------------------------------ */

/* Every origin the store holds records of: origin, the highest
 * origin_seq held with no gap below it (contig; 0 when seq 1 is missing)
 * and the highest held at all. The contiguous mark is kept up to date by
 * every write that adds to the log. cb returns 0 to go on, nonzero to
 * stop; pointers are valid during the call. 0, or -1 on a store error. */
typedef int (*store_origin_cb)(const char *origin, uint64_t contig,
    uint64_t highest, void *arg);
int store_foreach_origin(struct store *st, store_origin_cb cb, void *arg);

/* The contiguous mark of one origin (0 when none). 0, or -1. */
int store_origin_contig(struct store *st, const char *origin,
    uint64_t *contig_r);

/* Calls cb with the log entries of origin from from_seq on, in order,
 * stopping at the first gap or when cb returns nonzero. env points into
 * the store, valid during the call. 0, or -1 on a store error. */
typedef int (*store_log_cb)(uint64_t origin_seq, const uint8_t *env,
    size_t len, void *arg);
int store_log_range(struct store *st, const char *origin, uint64_t from_seq,
    store_log_cb cb, void *arg);

/* Keeps a record that the accept rule refused as superseded (stale, or
 * from a key revoked or expired since) in its origin's log, so that the
 * log has no gap where a valid record was: it never becomes current.
 * USER records must be signed by a key the root certified to sign records
 * (revoked or expired since or not) whose certificate name is the
 * record's origin; CERT and REVOKE records by the root. The caller keeps
 * env. 1 stored, 0 the slot is taken already, -1 not verifiable or a
 * store error. */
int store_log_fill(struct store *st, const uint8_t *env, size_t len,
    uint64_t now);

/* ---- checks --------------------------------------------------------- */

struct store_verify_report {
	uint64_t checked;	/* records examined (users, certs, revocations) */
	uint64_t bad;		/* invalid: decode, signature, chain, hwm */
	uint64_t equivocations;
};

/* Re-verifies every stored record against the trust state; cb (may be
 * NULL) is told about each bad record with a reason. Returns 0, or -1 on a
 * store error. Certificates must be signed by the root; user records
 * decode, are signed by a certified, unrevoked key of a role that signs
 * records, for their site and under their origin as its name (expiry is
 * not checked: they were accepted while it held; trust.h, TRUST_USE_KEPT)
 * and match their high-water mark. equivocations counts the equivocating
 * records kept as evidence. */
typedef void (*store_bad_cb)(const char *what, const char *reason,
    void *arg);
int store_verify(struct store *st, uint64_t now,
    struct store_verify_report *rep_r, store_bad_cb cb, void *arg);
/* store_verify in slices, so that the thread running it can do other
 * work between them: each call is a read transaction of its own that
 * checks up to max user records after cur (a zeroed cursor: the first
 * call, which also checks the certificates and revocations and zeroes
 * rep_r; later calls only read them again). The last call counts the
 * evidence. rep_r adds up over the calls. 1 when more is left, 0 when
 * done, -1 on a store error. */
int store_verify_slice(struct store *st, uint64_t now,
    struct store_cursor *cur, size_t max, struct store_verify_report *rep_r,
    store_bad_cb cb, void *arg);

/* Drops the bodies of tombstones older than ttl seconds (their high-water
 * marks stay, so an old record can never come back). Returns the count
 * purged, or -1. */
long store_purge_tombstones(struct store *st, uint64_t now, uint64_t ttl);


/* ---- consistency tree ----------------------------------------------- */

/* A hash tree over the current user records (tombstones included), for
 * `mmctl check`: two levels of STORE_TREE_FANOUT, a user falls in the leaf
 * named by the first two bytes of BLAKE2b(user). An entry is
 * BLAKE2b(user NUL BLAKE2b(envelope)); a leaf hashes its entries in user
 * name order, a bucket its leaves, the root its buckets; an empty leaf or
 * bucket is all zeros. Equal sets of records give equal roots whatever
 * order they arrived in.
 *
 * Kept in the store beside the records: every user's entry in a per-leaf
 * index, every leaf's hash and entry count beside its entries, written in
 * the same write transaction as the record, so that a crash never leaves
 * them apart. A change recomputes its leaf from the leaf's entries (a
 * dozen or two at a million users); buckets and the root are derived when
 * the tree is read. */
#define STORE_TREE_HASH_LEN 32
#define STORE_TREE_FANOUT 256
#define STORE_TREE_LEAVES (STORE_TREE_FANOUT * STORE_TREE_FANOUT)

struct store_tree;

/* Reads the kept tree (its 65,536 leaf summaries: tens of milliseconds
 * at a million users).
 * *tree_r is the caller's (store_tree_free). 0, or -1 on a store error. */
int store_tree_build(struct store *st, struct store_tree **tree_r);
/* The same tree computed from the records alone, by one scan of them
 * (about a second per million users): what the kept tree must equal. */
int store_tree_scan(struct store *st, struct store_tree **tree_r);
void store_tree_free(struct store_tree *t);
/* Pointers into t (STORE_TREE_HASH_LEN bytes), valid while t is. */
const uint8_t *store_tree_root(const struct store_tree *t);
const uint8_t *store_tree_bucket(const struct store_tree *t, unsigned bucket);
/* leaf = bucket * STORE_TREE_FANOUT + sub-bucket. */
const uint8_t *store_tree_leaf(const struct store_tree *t, unsigned leaf);
uint64_t store_tree_users(const struct store_tree *t);

/* The leaf a user falls in, and the hash of one envelope. Pure. */
unsigned store_tree_leaf_of(const char *user, size_t len);
void store_tree_env_hash(const uint8_t *env, size_t len,
    uint8_t out[STORE_TREE_HASH_LEN]);

/* Calls cb with the kept entry of every user in the leaves whose bit is
 * set in leaves (STORE_TREE_LEAVES bits, bit i in byte i / 8, value
 * 1 << (i % 8)), leaf by leaf, in name order within a leaf; hash is the
 * entry's. Reads only those leaves' entries. user is NUL-terminated and
 * valid during the call. cb returns 0 to go on. 0, or -1 on a store
 * error. */
typedef int (*store_tree_user_cb)(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], void *arg);
int store_tree_leaf_users(struct store *st, const uint8_t *leaves,
    store_tree_user_cb cb, void *arg);

/* ---- scrub ---------------------------------------------------------- */

/* Re-checks the stored records against the kept tree: every tree entry
 * has a record whose entry hash it holds, every record has its entry,
 * every leaf holds the hash and count of its entries. A byte flipped in a
 * record, in the tree, or in a key of either shows up. Signatures are not
 * checked (store_verify does, at a fraction of the speed): a scrub costs
 * a few microseconds per record on one core.
 *
 * It runs in slices, each in a read transaction of its own, so that a
 * long scrub holds back no writer and no reuse of pages; a record that
 * changes between slices is seen before or after the change, never
 * half. */
struct store_scrub;

struct store_scrub_report {
	uint64_t records;	/* current records examined */
	uint64_t entries;	/* tree entries examined */
	uint64_t damaged;	/* findings */
	uint64_t equivocations;	/* equivocating records kept as evidence */
	uint64_t conflicts;	/* open claims and releases (conflicts) */
};

/* A finding: user (printable, escaped; "" when it is about a leaf) and
 * what is wrong, valid during the call. */
typedef void (*store_scrub_cb)(const char *user, const char *what,
    void *arg);
/* Every current record once, during the scrub (env valid during the
 * call). */
typedef void (*store_scrub_record_cb)(const uint8_t *env, size_t len,
    void *arg);

/* A scrub that has not started; damaged and record (both may be NULL)
 * are called from whichever thread runs its steps. */
struct store_scrub *store_scrub_new(store_scrub_cb damaged,
    store_scrub_record_cb record, void *arg);
void store_scrub_free(struct store_scrub *s);
/* At its end, the scrub tells conflict (user, and one line naming both
 * records: store_evidence_text) of every open claim and release its
 * store keeps as evidence. */
void store_scrub_watch_conflicts(struct store_scrub *s,
    store_scrub_cb conflict);
/* The next slice: about budget records or entries, in one read
 * transaction. 1 when the scrub is over, 0 when there is more, -1 on a
 * store error (logged; the scrub is over). */
int store_scrub_step(struct store *st, struct store_scrub *s, size_t budget);
/* What the scrub found so far. */
void store_scrub_result(const struct store_scrub *s,
    struct store_scrub_report *r_r);
/* A whole scrub, slice after slice. 0, or -1 on a store error. */
int store_scrub(struct store *st, store_scrub_cb damaged,
    store_scrub_record_cb record, void *arg,
    struct store_scrub_report *r_r);

/* ---- membership snapshot -------------------------------------------- */

/* The directory agent publishes the gossip membership (which nodes of
 * which site are alive, their session endpoints and round-trip times) for
 * the proxy workers, who read it without asking the agent. The bytes are
 * opaque here (dir.h encodes them), at most STORE_MEMBERS_MAX, kept under
 * one key of the meta database; each put replaces the last. */
#define STORE_MEMBERS_MAX (256 * 1024)

/* 0, or -1 (too long, read-only, store error). */
int store_put_members(struct store *st, const uint8_t *buf, size_t len);
/* 1 with a malloc'd copy in *buf_r (the caller frees it) and its length,
 * 0 when none was published, -1 on a store error. */
int store_get_members(struct store *st, uint8_t **buf_r, size_t *len_r);

/* ---- catch-up state -------------------------------------------------- */

/* The directory agent's word on whether this store lacks records that
 * other nodes hold (gossip_behind), valid until the unix time until, so
 * that the word of an agent that stopped expires. The proxy answers users
 * it does not know with a temporary error meanwhile. 0 or -1. */
int store_put_behind(struct store *st, bool behind, uint64_t until);
/* 1 when the store is behind at now (unix seconds), 0 when not (or
 * nobody said, or the word expired), -1 on a store error. */
int store_get_behind(struct store *st, uint64_t now);

#endif
