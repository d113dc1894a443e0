/* The consistency tree over the current user records (store.h says its
 * shape), built on demand by one scan. */
#include "store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store_int.h"

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

static void
tree_item_hash(const char *user, size_t ulen, const uint8_t *env,
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

int
store_tree_build(struct store *st, struct store_tree **tree_r)
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
		tree_item_hash(key.mv_data, key.mv_size, val.mv_data,
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
	for (i = 0; i < STORE_TREE_FANOUT; i++)
		tree_node_hash(&t->leaf[i * STORE_TREE_FANOUT],
		    STORE_TREE_FANOUT, t->bucket[i]);
	tree_node_hash(t->bucket, STORE_TREE_FANOUT, t->root);
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
	uint8_t eh[STORE_TREE_HASH_LEN];
	unsigned leaf;
	int rc = -1, mrc;

	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
			continue;
		leaf = store_tree_leaf_of(key.mv_data, key.mv_size);
		if ((leaves[leaf / 8] & (1u << (leaf % 8))) == 0)
			continue;
		memcpy(user, key.mv_data, key.mv_size);
		user[key.mv_size] = '\0';
		store_tree_env_hash(val.mv_data, val.mv_size, eh);
		if (cb(leaf, user, eh, val.mv_data, val.mv_size, arg) != 0) {
			mrc = MDB_NOTFOUND;
			break;
		}
	}
	if (mrc != MDB_NOTFOUND)
		goto fail;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store walk path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_walk_end(st, txn);
	return rc;
}
