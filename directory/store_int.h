/* What the store's own files share: the handle, the sub-databases, the
 * encodings of their keys and values, and the transactions with their
 * grow-and-retry. Private to directory/store*.c; everyone else has
 * store.h.
 *
 *   store.c         opening, map growth, transactions, meta (schema, root,
 *                   members), the routing index, reading, stats, purge
 *   store_accept.c  the accept rule and the trust checks it makes
 *   store_author.c  the writer's own records: signed and stored in batches
 *   store_log.c     per-origin logs and their contiguous marks
 *   store_verify.c  store_verify
 *   store_tree.c    the consistency tree, kept beside the records
 *   store_scrub.c   store_scrub: the records against their tree
 *
 * The small helpers and the lookups inside a transaction are static inline,
 * so the accept and authoring paths inline them as they did when all of
 * this was one file. */
#ifndef STORE_INT_H
#define STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>

#include <lmdb.h>
#include <sodium.h>

#include "store.h"
#include "trust.h"

#define META_ROOT "root_pk"
#define HWM_HASH_LEN 16		/* BLAKE2b of the body: duplicate check */
#define HWM_FIXED (8 + 8 + HWM_HASH_LEN)
#define LOG_KEY_MAX (RECORD_NAME_MAX + 1 + 8)
#define VERIFY_THREADS_MAX 8
#define LOG_USER_MAX (4 * RECORD_USER_MAX + 1)

enum {
	DBI_META,
	DBI_USERS,
	DBI_HWM,
	DBI_LOG,
	DBI_ORIGINS,
	DBI_CERTS,
	DBI_REVOKED,
	DBI_EVIDENCE,
	DBI_ROUTES,
	DBI_TREE,		/* leaf -> summary; leaf, user -> hash */
	DBI_COUNT
};

/* The sub-databases' names, for opening and for log lines. */
extern const char *const store_dbi_names[DBI_COUNT];

/* What the handles of one environment share (store_dup): threads of one
 * process use one MDB_env, and LMDB lets the map be resized only while no
 * transaction of the process is open. Every handle holds the lock shared
 * while it has a transaction open; resizing takes it exclusive. */
struct store_env {
	pthread_rwlock_t resize;
	unsigned refs;		/* handles; under refs_lock */
	pthread_mutex_t refs_lock;
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[DBI_COUNT];
	enum store_mode mode;
	MDB_txn *rtxn;		/* reset between lookups, renewed for each */
	char *path;
	uint64_t counts[STORE_ACCEPT_RESULTS];
	int last_error;		/* LMDB or errno value of the last failed write */
	struct store_env *shared;
	unsigned txns;		/* transactions this handle has open */
};

struct hwm {
	uint64_t epoch, seq;
	uint8_t hash[HWM_HASH_LEN];
	char site[RECORD_SITE_MAX + 1];
};

/* A signature checked ahead of the rule (in parallel): valid only for
 * the key it was checked against. */
struct vjob {
	const uint8_t *body;
	size_t body_len;
	const uint8_t *sig;
	uint8_t pk[DKEY_PK_LEN];
	int have_pk;
	int ok;
};

/* One write transaction's state. */
struct wctx {
	struct store *st;
	MDB_txn *txn;
	uint64_t now;
	int mdb_rc;		/* the LMDB error behind a REJECT_STORE */
	int changed;
};

/* ---- small helpers --------------------------------------------------- */

static inline void
be64_put(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t
be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static inline void
body_hash(const struct record *r, uint8_t out[HWM_HASH_LEN])
{
	crypto_generichash(out, HWM_HASH_LEN, r->body, r->body_len, NULL, 0);
}

static inline MDB_val
val_str(const char *s)
{
	MDB_val v = { strlen(s), (void *)(uintptr_t)s };

	return v;
}

static inline MDB_val
val_bin(const void *p, size_t len)
{
	MDB_val v = { len, (void *)(uintptr_t)p };

	return v;
}

static inline int
hwm_parse(const MDB_val *v, struct hwm *h)
{
	size_t sitelen;
	const uint8_t *p = v->mv_data;

	if (v->mv_size < HWM_FIXED || v->mv_size > HWM_FIXED + RECORD_SITE_MAX)
		return -1;
	h->epoch = be64_get(p);
	h->seq = be64_get(p + 8);
	memcpy(h->hash, p + 16, HWM_HASH_LEN);
	sitelen = v->mv_size - HWM_FIXED;
	memcpy(h->site, p + HWM_FIXED, sitelen);
	h->site[sitelen] = '\0';
	return 0;
}

/* ---- transactions (store.c) ------------------------------------------ */

/* 0 with the store's read transaction in *txn_r, or -1 (logged);
 * store_read_end after each lookup. */
int store_read_begin(struct store *st, MDB_txn **txn_r);
void store_read_end(struct store *st);

/* 0 with a read transaction of its own in *txn_r (the caller aborts it),
 * or -1 (logged). */
int store_walk_begin(struct store *st, MDB_txn **txn_r);
/* Ends a walk's transaction. */
void store_walk_end(struct store *st, MDB_txn *txn);

/* A walk in slices (struct store_cursor): c to the first entry after
 * from, or to the first entry at all when from is NULL or has not
 * started. mdb_cursor_get's result. */
static inline int
store_cursor_first(MDB_cursor *c, const struct store_cursor *from,
    MDB_val *key, MDB_val *val)
{
	int mrc;

	if (from == NULL || !from->started)
		return mdb_cursor_get(c, key, val, MDB_FIRST);
	key->mv_size = from->len;
	key->mv_data = (void *)(uintptr_t)from->key;
	mrc = mdb_cursor_get(c, key, val, MDB_SET_RANGE);
	if (mrc == 0 && key->mv_size == from->len &&
	    memcmp(key->mv_data, from->key, from->len) == 0)
		mrc = mdb_cursor_get(c, key, val, MDB_NEXT);
	return mrc;
}

/* The walk is past key now. */
static inline void
store_cursor_set(struct store_cursor *to, const MDB_val *key)
{
	/* LMDB keys are never longer than STORE_KEY_MAX. */
	to->len = key->mv_size < sizeof(to->key) ? key->mv_size :
	    sizeof(to->key);
	memcpy(to->key, key->mv_data, to->len);
	to->started = true;
}

/* Work done inside a write transaction: 0 commit, 1 nothing to commit,
 * -1 error (ctx->mdb_rc says which). It may run more than once. */
typedef int (*store_write_cb)(struct wctx *ctx, void *arg);

/* 0 committed, 1 fn had nothing to commit, -1 error (logged, and
 * st->last_error set). */
int store_write(struct store *st, uint64_t now, store_write_cb fn,
    void *arg);

/* ---- lookups inside a transaction ------------------------------------ */

/* 0 found, 1 not found, -1 LMDB error (in ctx). */
static inline int
tx_get(struct wctx *ctx, int dbi, MDB_val *key, MDB_val *val)
{
	int mrc = mdb_get(ctx->txn, ctx->st->dbi[dbi], key, val);

	if (mrc == 0)
		return 0;
	if (mrc == MDB_NOTFOUND)
		return 1;
	ctx->mdb_rc = mrc;
	return -1;
}

static inline int
tx_put(struct wctx *ctx, int dbi, MDB_val *key, MDB_val *val,
    unsigned int flags)
{
	int mrc = mdb_put(ctx->txn, ctx->st->dbi[dbi], key, val, flags);

	if (mrc == 0) {
		ctx->changed = 1;
		return 0;
	}
	if (mrc == MDB_KEYEXIST && (flags & MDB_NOOVERWRITE))
		return 0;
	ctx->mdb_rc = mrc;
	return -1;
}

/* 1 root set (pk_r), 0 none, -1 error. */
static inline int
get_root(MDB_txn *txn, struct store *st, uint8_t pk_r[DKEY_PK_LEN])
{
	MDB_val key = val_str(META_ROOT), val;
	int mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);

	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0 || val.mv_size != DKEY_PK_LEN)
		return -1;
	memcpy(pk_r, val.mv_data, DKEY_PK_LEN);
	return 1;
}

/* ---- the routing index (store.c) ------------------------------------- */

/* Writes user's routing entry beside its record. 0, or -1 (ctx). */
int store_route_put(struct wctx *ctx, const char *user,
    enum user_state state, const char *site, const char *backend);
/* Decodes a routing entry into *r; -1 if damaged. */
int store_route_decode(const uint8_t *v, size_t len, struct store_route *r);

/* ---- the accept rule (store_accept.c) -------------------------------- */

/* The one accept path: gossip, imports and local writes all come here.
 * t asks ctx's transaction (store_trust_txn) and may be kept over a
 * batch: the accept path tells it when trust changes. pre (may be NULL)
 * is the signature checked ahead, if any. */
enum accept_result store_accept_in_txn(struct wctx *ctx,
    struct trust_ctx *t, const uint8_t *env, size_t len,
    const struct vjob *pre);

/* Makes t (trust.h) ask ctx's write transaction; the caller clears t
 * (trust_clear) before the transaction ends. */
void store_trust_txn(struct wctx *ctx, struct trust_ctx *t);
/* What the accept rule answers for a verdict of the trust rule: a role
 * that signs nothing is WRONG_SITE, as a key of another site; a
 * certificate the root did not sign certifies nothing (UNKNOWN_KEY); a
 * name that is not the record's origin is WRONG_ORIGIN. */
enum accept_result store_trust_result(enum trust_verdict v);

/* ---- evidence (store_evidence.c) ---------------------------------------- */

#define STORE_EVIDENCE_HASH_LEN 32	/* BLAKE2b of the envelope */
#define STORE_CLAIM_TAG 'c'		/* key prefix of a claim's entry */

/* Keeps env as another site's claim to its user. 0, or -1 (ctx). */
int store_keep_claim(struct wctx *ctx, const uint8_t *env, size_t len);
/* Every evidence entry in txn, classified (store_foreach_evidence): 0,
 * or the LMDB error. */
int store_evidence_walk(struct store *st, MDB_txn *txn, store_evidence_cb cb,
    void *arg, uint64_t counts_r[STORE_EVIDENCE_KINDS]);

/* Numbers u in the signer's origin log (origin_seq), signs it with the
 * signer's key and puts it through the accept rule, in ctx. */
enum accept_result store_sign_accept(struct wctx *ctx,
    const struct store_signer *sg, struct record_user *u);

/* ---- the consistency tree (store_tree.c) ----------------------------- */

#define TREE_KEY_MAX (2 + RECORD_USER_MAX)
#define TREE_LEAF_VALUE (STORE_TREE_HASH_LEN + 4)	/* hash, entries */

/* The tree's one sub-database holds, per leaf, the leaf's summary under
 * the leaf's number (2 bytes, big-endian) and its entries under the
 * number and the user, just after it: a change rewrites the page of its
 * entry and, mostly, nothing else. A summary is the leaf's hash and its
 * count of entries (4 bytes, big-endian). */

/* The key of user's tree entry: leaf (2 bytes, big-endian), user. Its
 * length. */
static inline size_t
tree_key(unsigned leaf, const char *user, size_t ulen,
    uint8_t out[TREE_KEY_MAX])
{
	out[0] = (uint8_t)(leaf >> 8);
	out[1] = (uint8_t)leaf;
	memcpy(out + 2, user, ulen);
	return 2 + ulen;
}

/* BLAKE2b(user NUL BLAKE2b(env)): what the tree holds for one record. */
void store_tree_entry_hash(const char *user, size_t ulen, const uint8_t *env,
    size_t len, uint8_t out[STORE_TREE_HASH_LEN]);

/* Makes env user's current record: the users database, the user's tree
 * entry and its leaf, in ctx's transaction. 0, or -1 (ctx). */
int store_current_put(struct wctx *ctx, const char *user,
    const uint8_t *env, size_t len);
/* Drops user's tree entry and updates its leaf (the caller drops the
 * record). 0, or -1 (ctx). */
int store_tree_del(struct wctx *ctx, const char *user, size_t ulen);

/* Builds the tree of a store of schema version 2, which had none, in
 * bounded write transactions (what an interrupted run left is dropped
 * first); the caller then sets the schema version. 0, or -1 with
 * *errstr_r. */
int store_tree_migrate(struct store *st, char **errstr_r);

/* ---- per-origin logs (store_log.c) ----------------------------------- */

/* Moves origin's contiguous mark over every log entry that directly
 * follows it. 0, or -1 (ctx). */
int store_contig_advance(struct wctx *ctx, const char *origin);
/* Puts env in origin's log at origin_seq (over what is there only with
 * overwrite), advances the contiguous mark and raises the origin's
 * highest. ACCEPT_STORED or REJECT_STORE. */
enum accept_result store_log_add(struct wctx *ctx, const char *origin,
    uint64_t origin_seq, const uint8_t *env, size_t len, int overwrite);

#endif
