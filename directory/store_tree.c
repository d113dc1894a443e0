/* The consistency tree over the current user records (store.h says its
 * shape), kept beside them: every write of a current record updates the
 * record's entry and recomputes its leaf in the same transaction. */
#include "store.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store_int.h"

/* Users whose entries, and leaves whose summaries, one migration
 * transaction writes: bounded, so that a large store never needs one huge
 * transaction. */
#define MIGRATE_CHUNK 20000
#define MIGRATE_LEAVES 4096

struct store_tree {
	uint64_t users;
	uint8_t root[STORE_TREE_HASH_LEN];
	uint8_t bucket[STORE_TREE_FANOUT][STORE_TREE_HASH_LEN];
	uint8_t leaf[STORE_TREE_LEAVES][STORE_TREE_HASH_LEN];
};

/* One user's contribution, kept in scan (name) order until sorted. */
struct tree_item {
	uint8_t h[STORE_TREE_HASH_LEN];
	uint16_t leaf;
};

unsigned
store_tree_leaf_of(const char *user, size_t len)
{
	uint8_t h[16];

	crypto_generichash(h, sizeof(h), (const uint8_t *)user, len, NULL, 0);
	return (unsigned)h[0] << 8 | h[1];
}

void
store_tree_env_hash(const uint8_t *env, size_t len,
    uint8_t out[STORE_TREE_HASH_LEN])
{
	crypto_generichash(out, STORE_TREE_HASH_LEN, env, len, NULL, 0);
}

void
store_tree_entry_hash(const char *user, size_t ulen, const uint8_t *env,
    size_t len, uint8_t out[STORE_TREE_HASH_LEN])
{
	crypto_generichash_state s;
	uint8_t eh[STORE_TREE_HASH_LEN], nul = 0;

	store_tree_env_hash(env, len, eh);
	crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
	crypto_generichash_update(&s, (const uint8_t *)user, ulen);
	crypto_generichash_update(&s, &nul, 1);
	crypto_generichash_update(&s, eh, sizeof(eh));
	crypto_generichash_final(&s, out, STORE_TREE_HASH_LEN);
}

static bool
hash_zero(const uint8_t *h)
{
	static const uint8_t z[STORE_TREE_HASH_LEN];

	return memcmp(h, z, STORE_TREE_HASH_LEN) == 0;
}

/* A node of n children: zeros when every child is. */
static void
tree_node_hash(const uint8_t (*child)[STORE_TREE_HASH_LEN], size_t n,
    uint8_t out[STORE_TREE_HASH_LEN])
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!hash_zero(child[i]))
			break;
	if (i == n) {
		memset(out, 0, STORE_TREE_HASH_LEN);
		return;
	}
	crypto_generichash(out, STORE_TREE_HASH_LEN, (const uint8_t *)child,
	    n * STORE_TREE_HASH_LEN, NULL, 0);
}

/* Buckets and root from t's leaves. */
static void
tree_derive(struct store_tree *t)
{
	size_t i;

	for (i = 0; i < STORE_TREE_FANOUT; i++)
		tree_node_hash(&t->leaf[i * STORE_TREE_FANOUT],
		    STORE_TREE_FANOUT, t->bucket[i]);
	tree_node_hash(t->bucket, STORE_TREE_FANOUT, t->root);
}

/* ---- keeping it ------------------------------------------------------ */

/* Recomputes leaf from its entries in txn: the hash of their hashes in
 * name order, and their count. The leaf's summary comes first (its key is
 * the entries' prefix); a damaged entry (wrong length) is left out, for
 * the scrub to name. 0, or an LMDB error. */
static int
leaf_compute(MDB_txn *txn, MDB_dbi tree, unsigned leaf,
    uint8_t hash_r[STORE_TREE_HASH_LEN], uint32_t *count_r)
{
	crypto_generichash_state s;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	uint8_t k[2] = { (uint8_t)(leaf >> 8), (uint8_t)leaf };
	uint32_t n = 0;
	int mrc;

	if ((mrc = mdb_cursor_open(txn, tree, &cur)) != 0)
		return mrc;
	crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
	key = val_bin(k, sizeof(k));
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (key.mv_size < 2 || memcmp(key.mv_data, k, 2) != 0)
			break;
		if (key.mv_size == 2 || val.mv_size != STORE_TREE_HASH_LEN)
			continue;
		crypto_generichash_update(&s, val.mv_data, val.mv_size);
		n++;
	}
	mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return mrc;
	crypto_generichash_final(&s, hash_r, STORE_TREE_HASH_LEN);
	if (n == 0)
		memset(hash_r, 0, STORE_TREE_HASH_LEN);
	*count_r = n;
	return 0;
}

/* Writes leaf's summary as its entries now say. */
static int
leaf_update(struct wctx *ctx, unsigned leaf)
{
	uint8_t k[2] = { (uint8_t)(leaf >> 8), (uint8_t)leaf };
	uint8_t v[TREE_LEAF_VALUE];
	MDB_val key = val_bin(k, sizeof(k)), val;
	uint32_t n;
	int mrc;

	mrc = leaf_compute(ctx->txn, ctx->st->dbi[DBI_TREE], leaf, v, &n);
	if (mrc != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	if (n == 0) {
		mrc = mdb_del(ctx->txn, ctx->st->dbi[DBI_TREE], &key, NULL);
		if (mrc != 0 && mrc != MDB_NOTFOUND) {
			ctx->mdb_rc = mrc;
			return -1;
		}
		return 0;
	}
	mm_be32_put(v + STORE_TREE_HASH_LEN, n);
	val = val_bin(v, sizeof(v));
	return tx_put(ctx, DBI_TREE, &key, &val, 0);
}

int
store_current_put(struct wctx *ctx, const char *user, const uint8_t *env,
    size_t len)
{
	uint8_t k[TREE_KEY_MAX], h[STORE_TREE_HASH_LEN];
	size_t ulen = strlen(user);
	unsigned leaf = store_tree_leaf_of(user, ulen);
	MDB_val key = val_bin(user, ulen), val = val_bin(env, len);

	if (tx_put(ctx, DBI_USERS, &key, &val, 0) < 0)
		return -1;
	store_tree_entry_hash(user, ulen, env, len, h);
	key = val_bin(k, tree_key(leaf, user, ulen, k));
	val = val_bin(h, sizeof(h));
	if (tx_put(ctx, DBI_TREE, &key, &val, 0) < 0)
		return -1;
	return leaf_update(ctx, leaf);
}

int
store_tree_del(struct wctx *ctx, const char *user, size_t ulen)
{
	uint8_t k[TREE_KEY_MAX];
	unsigned leaf = store_tree_leaf_of(user, ulen);
	MDB_val key = val_bin(k, tree_key(leaf, user, ulen, k));
	int mrc;

	mrc = mdb_del(ctx->txn, ctx->st->dbi[DBI_TREE], &key, NULL);
	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	ctx->changed = 1;
	return leaf_update(ctx, leaf);
}

/* ---- migration from schema version 2 --------------------------------- */

struct migrate_arg {
	uint8_t from[RECORD_USER_MAX];	/* resume after this user */
	size_t from_len;		/* 0: from the first */
	uint8_t last[RECORD_USER_MAX];
	size_t last_len;
	uint64_t n;			/* entries of this transaction */
	bool end;
};

static int
migrate_clear_fn(struct wctx *ctx, void *arg)
{
	int mrc;

	(void)arg;
	if ((mrc = mdb_drop(ctx->txn, ctx->st->dbi[DBI_TREE], 0)) != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	return 0;
}

/* The entries of the next MIGRATE_CHUNK users. */
static int
migrate_chunk_fn(struct wctx *ctx, void *arg)
{
	struct migrate_arg *a = arg;
	MDB_cursor *cur = NULL;
	MDB_val key, val, tk, tv;
	uint8_t k[TREE_KEY_MAX], h[STORE_TREE_HASH_LEN];
	MDB_cursor_op op = MDB_FIRST;
	int mrc;

	a->n = 0;
	a->end = false;
	a->last_len = 0;
	if ((mrc = mdb_cursor_open(ctx->txn, ctx->st->dbi[DBI_USERS],
	    &cur)) != 0)
		goto fail;
	if (a->from_len > 0) {
		key = val_bin(a->from, a->from_len);
		op = MDB_SET_RANGE;
	}
	for (mrc = mdb_cursor_get(cur, &key, &val, op); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (a->from_len > 0 && key.mv_size == a->from_len &&
		    memcmp(key.mv_data, a->from, a->from_len) == 0)
			continue;
		if (a->n == MIGRATE_CHUNK)
			break;
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
			continue;	/* the scrub names it */
		store_tree_entry_hash(key.mv_data, key.mv_size, val.mv_data,
		    val.mv_size, h);
		tk = val_bin(k, tree_key(store_tree_leaf_of(key.mv_data,
		    key.mv_size), key.mv_data, key.mv_size, k));
		tv = val_bin(h, sizeof(h));
		if ((mrc = mdb_put(ctx->txn, ctx->st->dbi[DBI_TREE], &tk, &tv,
		    0)) != 0)
			goto fail;
		memcpy(a->last, key.mv_data, key.mv_size);
		a->last_len = key.mv_size;
		a->n++;
	}
	if (mrc == MDB_NOTFOUND)
		a->end = true;
	else if (mrc != 0)
		goto fail;
	mdb_cursor_close(cur);
	ctx->changed = a->n > 0;
	return a->n > 0 ? 0 : 1;
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	ctx->mdb_rc = mrc;
	return -1;
}

/* The summaries of MIGRATE_LEAVES leaves from *first on. */
static int
migrate_leaves_fn(struct wctx *ctx, void *arg)
{
	const unsigned *first = arg;
	unsigned leaf;

	for (leaf = *first; leaf < *first + MIGRATE_LEAVES &&
	    leaf < STORE_TREE_LEAVES; leaf++)
		if (leaf_update(ctx, leaf) < 0)
			return -1;
	ctx->changed = 1;
	return 0;
}

int
store_tree_migrate(struct store *st, char **errstr_r)
{
	struct migrate_arg *a = xcalloc(1, sizeof(*a));
	uint64_t t0 = mm_now_ms(), users = 0;
	unsigned first;
	int rc = -1, r;

	log_info("- dir store migrate-start path=%s from=2 to=%d", st->path,
	    STORE_SCHEMA_VERSION);
	/* What an interrupted migration left goes first. */
	if (store_write(st, 0, migrate_clear_fn, NULL) < 0)
		goto done;
	for (;;) {
		if ((r = store_write(st, 0, migrate_chunk_fn, a)) < 0)
			goto done;
		users += a->n;
		if (a->end || r == 1)
			break;
		memcpy(a->from, a->last, a->last_len);
		a->from_len = a->last_len;
	}
	for (first = 0; first < STORE_TREE_LEAVES; first += MIGRATE_LEAVES)
		if (store_write(st, 0, migrate_leaves_fn, &first) < 0)
			goto done;
	log_info("- dir store migrate path=%s from=2 to=%d users=%" PRIu64
	    " ms=%" PRIu64, st->path, STORE_SCHEMA_VERSION, users,
	    mm_now_ms() - t0);
	rc = 0;
done:
	if (rc != 0)
		*errstr_r = xasprintf("%s: cannot build the consistency tree "
		    "of a schema version 2 store: %s", st->path,
		    store_last_error(st) != NULL ? store_last_error(st) :
		    "store error");
	free(a);
	return rc;
}

/* ---- reading it ------------------------------------------------------ */

int
store_tree_build(struct store *st, struct store_tree **tree_r)
{
	struct store_tree *t = NULL;
	MDB_txn *txn = NULL;
	MDB_val key, val;
	uint8_t k[2];
	const uint8_t *v;
	unsigned leaf;
	int rc = -1, mrc = 0;

	*tree_r = NULL;
	if (store_walk_begin(st, &txn) < 0)
		return -1;
	t = xcalloc(1, sizeof(*t));
	for (leaf = 0; leaf < STORE_TREE_LEAVES; leaf++) {
		k[0] = (uint8_t)(leaf >> 8);
		k[1] = (uint8_t)leaf;
		key = val_bin(k, sizeof(k));
		mrc = mdb_get(txn, st->dbi[DBI_TREE], &key, &val);
		if (mrc == MDB_NOTFOUND)
			continue;	/* an empty leaf */
		if (mrc != 0)
			goto fail;
		if (val.mv_size != TREE_LEAF_VALUE)
			continue;	/* the scrub names it */
		v = val.mv_data;
		memcpy(t->leaf[leaf], v, STORE_TREE_HASH_LEN);
		v += STORE_TREE_HASH_LEN;
		t->users += mm_be32_get(v);
	}
	tree_derive(t);
	*tree_r = t;
	t = NULL;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store tree-read path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	store_walk_end(st, txn);
	free(t);
	return rc;
}

int
store_tree_scan(struct store *st, struct store_tree **tree_r)
{
	struct store_tree *t = NULL;
	struct tree_item *items = NULL;
	uint32_t *order = NULL, *start = NULL;
	size_t n = 0, cap = 0, i;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	int rc = -1, mrc;

	*tree_r = NULL;
	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 4096 : cap * 2;
			items = xrealloc(items, cap * sizeof(*items));
		}
		items[n].leaf = (uint16_t)store_tree_leaf_of(key.mv_data,
		    key.mv_size);
		store_tree_entry_hash(key.mv_data, key.mv_size, val.mv_data,
		    val.mv_size, items[n].h);
		n++;
	}
	if (mrc != MDB_NOTFOUND)
		goto fail;
	/* A stable counting sort by leaf keeps name order inside a leaf. */
	start = xcalloc(STORE_TREE_LEAVES + 1, sizeof(*start));
	for (i = 0; i < n; i++)
		start[items[i].leaf + 1]++;
	for (i = 1; i <= STORE_TREE_LEAVES; i++)
		start[i] += start[i - 1];
	order = xcalloc(n == 0 ? 1 : n, sizeof(*order));
	for (i = 0; i < n; i++)
		order[start[items[i].leaf]++] = (uint32_t)i;
	t = xcalloc(1, sizeof(*t));
	t->users = n;
	for (i = 0, n = 0; i < STORE_TREE_LEAVES; i++) {
		crypto_generichash_state s;
		size_t end = start[i];

		if (n == end)
			continue;
		crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
		for (; n < end; n++)
			crypto_generichash_update(&s, items[order[n]].h,
			    STORE_TREE_HASH_LEN);
		crypto_generichash_final(&s, t->leaf[i], STORE_TREE_HASH_LEN);
	}
	tree_derive(t);
	*tree_r = t;
	t = NULL;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store walk path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_walk_end(st, txn);
	free(items);
	free(order);
	free(start);
	free(t);
	return rc;
}

void
store_tree_free(struct store_tree *t)
{
	free(t);
}

const uint8_t *
store_tree_root(const struct store_tree *t)
{
	return t->root;
}

const uint8_t *
store_tree_bucket(const struct store_tree *t, unsigned bucket)
{
	return t->bucket[bucket % STORE_TREE_FANOUT];
}

const uint8_t *
store_tree_leaf(const struct store_tree *t, unsigned leaf)
{
	return t->leaf[leaf % STORE_TREE_LEAVES];
}

uint64_t
store_tree_users(const struct store_tree *t)
{
	return t->users;
}

int
store_tree_leaf_users(struct store *st, const uint8_t *leaves,
    store_tree_user_cb cb, void *arg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	char user[RECORD_USER_MAX + 1];
	uint8_t k[2];
	unsigned leaf;
	int rc = -1, mrc = 0;

	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_TREE], &cur)) != 0)
		goto fail;
	for (leaf = 0; leaf < STORE_TREE_LEAVES; leaf++) {
		if (leaves[leaf / 8] == 0) {
			leaf |= 7;
			continue;
		}
		if ((leaves[leaf / 8] & (1u << (leaf % 8))) == 0)
			continue;
		k[0] = (uint8_t)(leaf >> 8);
		k[1] = (uint8_t)leaf;
		key = val_bin(k, sizeof(k));
		for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		    mrc == 0;
		    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
			if (key.mv_size < 2 || memcmp(key.mv_data, k, 2) != 0)
				break;
			if (key.mv_size == 2)
				continue;	/* the leaf's summary */
			if (key.mv_size > 2 + RECORD_USER_MAX ||
			    val.mv_size != STORE_TREE_HASH_LEN)
				continue;	/* the scrub names it */
			memcpy(user, (const uint8_t *)key.mv_data + 2,
			    key.mv_size - 2);
			user[key.mv_size - 2] = '\0';
			if (cb(leaf, user, val.mv_data, arg) != 0) {
				rc = 0;
				goto done;
			}
		}
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			goto fail;
	}
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store tree-read path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_walk_end(st, txn);
	return rc;
}
