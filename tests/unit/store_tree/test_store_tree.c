/* The consistency tree: equal records give equal roots whatever order they
 * were stored in; one changed record changes the root, and descending the
 * buckets and leaves that differ finds exactly that record. The tree kept
 * beside the records equals the one computed from them after any mix of
 * accepts, local writes, deletions, purges and equivocations; the leaf
 * index gives exactly a leaf's users; a store of schema version 2 is
 * migrated; the scrub finds a byte flipped in a record or in the tree. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <lmdb.h>
#include <sodium.h>

#include "dkey.h"
#include "record.h"
#include "store.h"

#define NOW 1700000000ULL
#define USERS 300
#define POOL 24			/* users per site in the random test */
#define POOL_LEAVES 8		/* ... all in leaves 0 to 7 */
#define RANDOM_STEPS 300
#define FINDINGS_MAX 16

static struct dkey root, site_key, b_key;
static char dir[] = "store-tree-test-XXXXXX";
static int n_stores;

static size_t
make_cert_for(const struct dkey *k, const char *site, const char *name,
    uint64_t seq, uint8_t *out)
{
	struct record_cert c;
	const char *why = NULL;
	int n;

	memset(&c, 0, sizeof(c));
	memcpy(c.pk, k->pk, DKEY_PK_LEN);
	c.role = ROLE_SITE;
	snprintf(c.site, sizeof(c.site), "%s", site);
	snprintf(c.name, sizeof(c.name), "%s", name);
	c.issued = NOW - 10;
	strcpy(c.origin, "root");
	c.origin_seq = seq;
	n = record_encode_cert(&c, &root, out, RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

static size_t
make_cert(uint8_t *out)
{
	return make_cert_for(&site_key, "a", "a-node", 1, out);
}

/* A record of user at site b (signed by b-node) at seq. */
static size_t
make_b_user(const char *user, uint64_t seq, uint64_t origin_seq,
    const char *backend, enum user_state state, uint8_t *out)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "%s", user);
	strcpy(u.site, "b");
	snprintf(u.backend, sizeof(u.backend), "%s", backend);
	u.state = state;
	u.epoch = 1;
	u.seq = seq;
	strcpy(u.origin, "b-node");
	u.origin_seq = origin_seq;
	u.timestamp = NOW;
	n = record_encode_user(&u, &b_key, out, RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

static size_t
make_user(unsigned i, uint64_t seq, const char *backend, uint8_t *out)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "user%u@a.test", i);
	strcpy(u.site, "a");
	snprintf(u.backend, sizeof(u.backend), "%s", backend);
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = seq;
	strcpy(u.origin, "a-node");
	u.origin_seq = i + 1;
	u.timestamp = NOW;
	n = record_encode_user(&u, &site_key, out, RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

static struct store *
new_store(char *path, size_t size)
{
	uint8_t env[RECORD_MAX];
	char *err = NULL;
	struct store *st;
	size_t len;

	snprintf(path, size, "%s/%d", dir, n_stores++);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	len = make_cert(env);
	assert_int_equal(store_accept(st, env, len, NOW), ACCEPT_STORED);
	len = make_cert_for(&b_key, "b", "b-node", 2, env);
	assert_int_equal(store_accept(st, env, len, NOW), ACCEPT_STORED);
	return st;
}

/* A store holding users 0..USERS-1 stored in order (or reversed); changed
 * names one user whose record is at seq 2 on back end be2. */
static struct store *
fill(bool reverse, int changed)
{
	uint8_t env[RECORD_MAX];
	char path[sizeof(dir) + 16];
	struct store *st;
	size_t len;
	unsigned k, i;

	st = new_store(path, sizeof(path));
	for (k = 0; k < USERS; k++) {
		i = reverse ? USERS - 1 - k : k;
		len = make_user(i, 1, "be1", env);
		assert_int_equal(store_accept(st, env, len, NOW),
		    ACCEPT_STORED);
	}
	if (changed >= 0) {
		len = make_user((unsigned)changed, 2, "be2", env);
		/* Not gap-free in the log: the tree looks at users only. */
		(void)store_accept(st, env, len, NOW);
	}
	return st;
}

/* The kept tree equals the one computed from the records. */
static void
assert_tree_kept(struct store *st)
{
	struct store_tree *k = NULL, *s = NULL;
	unsigned i;

	assert_int_equal(store_tree_build(st, &k), 0);
	assert_int_equal(store_tree_scan(st, &s), 0);
	assert_int_equal(store_tree_users(k), store_tree_users(s));
	for (i = 0; i < STORE_TREE_LEAVES; i++)
		if (memcmp(store_tree_leaf(k, i), store_tree_leaf(s, i),
		    STORE_TREE_HASH_LEN) != 0)
			fail_msg("leaf %u: kept and computed differ", i);
	assert_memory_equal(store_tree_root(k), store_tree_root(s),
	    STORE_TREE_HASH_LEN);
	store_tree_free(k);
	store_tree_free(s);
}

static void
test_same_records_same_root(void **state)
{
	struct store *a = fill(false, -1), *b = fill(true, -1);
	struct store_tree *ta = NULL, *tb = NULL;
	unsigned i;

	(void)state;
	assert_int_equal(store_tree_build(a, &ta), 0);
	assert_int_equal(store_tree_build(b, &tb), 0);
	assert_int_equal(store_tree_users(ta), USERS);
	assert_memory_equal(store_tree_root(ta), store_tree_root(tb),
	    STORE_TREE_HASH_LEN);
	for (i = 0; i < STORE_TREE_FANOUT; i++)
		assert_memory_equal(store_tree_bucket(ta, i),
		    store_tree_bucket(tb, i), STORE_TREE_HASH_LEN);
	store_tree_free(ta);
	store_tree_free(tb);
	assert_tree_kept(a);
	assert_tree_kept(b);
	store_close(a);
	store_close(b);
}

struct found {
	char users[8][RECORD_USER_MAX + 1];
	uint8_t hashes[8][STORE_TREE_HASH_LEN];
	size_t n;
};

static int
collect(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], void *arg)
{
	struct found *f = arg;

	(void)leaf;
	assert_true(f->n < 8);
	strcpy(f->users[f->n], user);
	memcpy(f->hashes[f->n], hash, STORE_TREE_HASH_LEN);
	f->n++;
	return 0;
}

static void
test_one_change_found(void **state)
{
	struct store *a = fill(false, -1), *c = fill(true, 137);
	struct store_tree *ta = NULL, *tc = NULL;
	uint8_t bits[STORE_TREE_LEAVES / 8];
	struct found fa, fc;
	unsigned i, j, nb = 0, nl = 0, leaf = 0, diff = 0;
	const char *victim = "user137@a.test";

	(void)state;
	assert_int_equal(store_tree_build(a, &ta), 0);
	assert_int_equal(store_tree_build(c, &tc), 0);
	assert_memory_not_equal(store_tree_root(ta), store_tree_root(tc),
	    STORE_TREE_HASH_LEN);
	for (i = 0; i < STORE_TREE_FANOUT; i++) {
		if (memcmp(store_tree_bucket(ta, i), store_tree_bucket(tc, i),
		    STORE_TREE_HASH_LEN) == 0)
			continue;
		nb++;
		for (j = 0; j < STORE_TREE_FANOUT; j++) {
			unsigned l = i * STORE_TREE_FANOUT + j;

			if (memcmp(store_tree_leaf(ta, l), store_tree_leaf(tc, l),
			    STORE_TREE_HASH_LEN) != 0) {
				nl++;
				leaf = l;
			}
		}
	}
	assert_int_equal(nb, 1);
	assert_int_equal(nl, 1);
	assert_int_equal(leaf, store_tree_leaf_of(victim, strlen(victim)));
	memset(bits, 0, sizeof(bits));
	bits[leaf / 8] |= (uint8_t)(1u << (leaf % 8));
	memset(&fa, 0, sizeof(fa));
	memset(&fc, 0, sizeof(fc));
	assert_int_equal(store_tree_leaf_users(a, bits, collect, &fa), 0);
	assert_int_equal(store_tree_leaf_users(c, bits, collect, &fc), 0);
	assert_int_equal(fa.n, fc.n);
	for (i = 0; i < fa.n; i++) {
		assert_string_equal(fa.users[i], fc.users[i]);
		if (memcmp(fa.hashes[i], fc.hashes[i],
		    STORE_TREE_HASH_LEN) != 0) {
			assert_string_equal(fa.users[i], victim);
			diff++;
		}
	}
	assert_int_equal(diff, 1);
	store_tree_free(ta);
	store_tree_free(tc);
	store_close(a);
	store_close(c);
}

static void
test_empty_store(void **state)
{
	static const uint8_t zero[STORE_TREE_HASH_LEN];
	char path[sizeof(dir) + 16], *err = NULL;
	struct store_tree *t = NULL;
	struct store *st;

	(void)state;
	snprintf(path, sizeof(path), "%s/empty", dir);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_tree_build(st, &t), 0);
	assert_int_equal(store_tree_users(t), 0);
	assert_memory_equal(store_tree_root(t), zero, sizeof(zero));
	store_tree_free(t);
	assert_tree_kept(st);
	store_close(st);
}

/* ---- the kept tree under random changes ------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned
rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* Users that share a few leaves, so that leaves hold several entries. */
static char pool_a[POOL][32], pool_b[POOL][32];

static void
make_pools(void)
{
	char name[32];
	unsigned i, na = 0, nb = 0;

	for (i = 0; na < POOL || nb < POOL; i++) {
		snprintf(name, sizeof(name), "p%u@%s.test", i,
		    na < POOL ? "a" : "b");
		if (store_tree_leaf_of(name, strlen(name)) >= POOL_LEAVES)
			continue;
		if (na < POOL)
			strcpy(pool_a[na++], name);
		else
			strcpy(pool_b[nb++], name);
	}
}

static void
test_kept_tree_random(void **state)
{
	static const char *const backends[] = { "be1", "be2", "be3" };
	struct store_signer sg = { &site_key, "a", "a-node" };
	uint64_t seq_b[POOL], oseq_b = 0;
	static uint8_t env[RECORD_MAX], envb[3][RECORD_MAX];
	const uint8_t *envs[3];
	size_t lens[3];
	enum accept_result res[8];
	struct store_user_item items[5];
	char path[sizeof(dir) + 16];
	struct store *st = new_store(path, sizeof(path));
	unsigned step, i, n, u, kinds[6] = { 0 };

	(void)state;
	memset(seq_b, 0, sizeof(seq_b));
	for (step = 0; step < RANDOM_STEPS; step++) {
		unsigned kind = rnd(10);

		if (kind < 3) {
			/* Local writes, a user perhaps twice in a batch. */
			n = 1 + rnd(5);
			for (i = 0; i < n; i++) {
				items[i].user = pool_a[rnd(POOL)];
				items[i].backend = backends[rnd(3)];
				items[i].state = rnd(5) == 0 ?
				    USTATE_DELETED : USTATE_ACTIVE;
				items[i].target_site = NULL;
			}
			store_put_users(st, &sg, items, n, NOW, res);
			for (i = 0; i < n; i++)
				assert_int_equal(res[i], ACCEPT_STORED);
			kinds[0]++;
		} else if (kind < 6) {
			/* Records from site b, in one batch. */
			n = 1 + rnd(3);
			for (i = 0; i < n; i++) {
				u = rnd(POOL);
				lens[i] = make_b_user(pool_b[u], ++seq_b[u],
				    ++oseq_b, backends[rnd(3)], rnd(4) == 0 ?
				    USTATE_DELETED : USTATE_ACTIVE, envb[i]);
				envs[i] = envb[i];
			}
			/* Two records of one user in a batch: the later
			 * wins, the earlier may be stale: either way the
			 * tree follows the users database. */
			store_accept_batch(st, envs, lens, n, NOW, res);
			for (i = 0; i < n; i++)
				assert_int_not_equal(res[i], REJECT_STORE);
			kinds[1]++;
		} else if (kind < 8) {
			/* Site b equivocates: another record at the seq of
			 * the current one. */
			u = rnd(POOL);
			if (seq_b[u] == 0)
				continue;
			lens[0] = make_b_user(pool_b[u], seq_b[u], ++oseq_b,
			    "be-other", USTATE_ACTIVE, env);
			res[0] = store_accept(st, env, lens[0], NOW);
			/* Stale when the tombstone it equals was purged. */
			assert_true(res[0] == ACCEPT_EQUIVOCATION ||
			    res[0] == REJECT_STALE);
			kinds[2]++;
		} else if (kind == 8) {
			/* A tombstone purged (its high-water mark stays). */
			assert_true(store_purge_tombstones(st, NOW + 1000,
			    10) >= 0);
			kinds[3]++;
		} else {
			/* A user deleted, then perhaps at once purged. */
			assert_int_equal(store_put_user(st, &sg,
			    pool_a[rnd(POOL)], "be1", USTATE_DELETED, NULL,
			    NOW), ACCEPT_STORED);
			kinds[4]++;
		}
		if (step % 10 == 9)
			assert_tree_kept(st);
	}
	assert_tree_kept(st);
	for (i = 0; i < 5; i++)
		assert_true(kinds[i] > 0);
	store_close(st);
}

/* ---- the leaf index -------------------------------------------------- */

struct expect {
	unsigned leaf;
	char users[2 * POOL][32];
	uint8_t hashes[2 * POOL][STORE_TREE_HASH_LEN];
	size_t n;
};

static int
expect_cb(const struct record *r, const uint8_t *env, size_t len, void *arg)
{
	struct expect *e = arg;
	const char *user = r->u.user.user;
	crypto_generichash_state s;
	uint8_t eh[STORE_TREE_HASH_LEN], nul = 0;

	if (store_tree_leaf_of(user, strlen(user)) != e->leaf)
		return 0;
	assert_true(e->n < 2 * POOL);
	strcpy(e->users[e->n], user);
	store_tree_env_hash(env, len, eh);
	crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
	crypto_generichash_update(&s, (const uint8_t *)user, strlen(user));
	crypto_generichash_update(&s, &nul, 1);
	crypto_generichash_update(&s, eh, sizeof(eh));
	crypto_generichash_final(&s, e->hashes[e->n], STORE_TREE_HASH_LEN);
	e->n++;
	return 0;
}

static int
got_cb(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], void *arg)
{
	struct expect *g = arg;

	assert_int_equal(leaf, g->leaf);
	assert_true(g->n < 2 * POOL);
	strcpy(g->users[g->n], user);
	memcpy(g->hashes[g->n], hash, STORE_TREE_HASH_LEN);
	g->n++;
	return 0;
}

static void
test_leaf_users_exact(void **state)
{
	struct store_signer sg = { &site_key, "a", "a-node" };
	uint8_t bits[STORE_TREE_LEAVES / 8], env[RECORD_MAX];
	char path[sizeof(dir) + 16];
	struct store *st = new_store(path, sizeof(path));
	static struct expect want, got;
	unsigned leaf, i, total = 0;
	size_t len;

	(void)state;
	for (i = 0; i < POOL; i++) {
		assert_int_equal(store_put_user(st, &sg, pool_a[i], "be1",
		    USTATE_ACTIVE, NULL, NOW), ACCEPT_STORED);
		len = make_b_user(pool_b[i], 1, i + 1, "be2", USTATE_ACTIVE,
		    env);
		assert_int_equal(store_accept(st, env, len, NOW),
		    ACCEPT_STORED);
	}
	for (leaf = 0; leaf < POOL_LEAVES + 2; leaf++) {
		memset(&want, 0, sizeof(want));
		memset(&got, 0, sizeof(got));
		want.leaf = got.leaf = leaf;
		assert_int_equal(store_foreach_user(st, expect_cb, &want), 0);
		memset(bits, 0, sizeof(bits));
		bits[leaf / 8] |= (uint8_t)(1u << (leaf % 8));
		assert_int_equal(store_tree_leaf_users(st, bits, got_cb, &got),
		    0);
		assert_int_equal(got.n, want.n);
		for (i = 0; i < want.n; i++) {
			assert_string_equal(got.users[i], want.users[i]);
			assert_memory_equal(got.hashes[i], want.hashes[i],
			    STORE_TREE_HASH_LEN);
		}
		total += (unsigned)got.n;
	}
	assert_int_equal(total, 2 * POOL);
	store_close(st);
}

/* ---- raw access, as damage or an old program would leave a store ----- */

struct raw {
	MDB_env *env;
	MDB_txn *txn;
};

static MDB_dbi
raw_open(struct raw *r, const char *path, const char *db)
{
	MDB_dbi dbi;

	if (r->env == NULL) {
		assert_int_equal(mdb_env_create(&r->env), 0);
		mdb_env_set_maxdbs(r->env, 16);
		assert_int_equal(mdb_env_open(r->env, path, 0, 0600), 0);
		assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
	}
	assert_int_equal(mdb_dbi_open(r->txn, db, 0, &dbi), 0);
	return dbi;
}

static void
raw_close(struct raw *r)
{
	assert_int_equal(mdb_txn_commit(r->txn), 0);
	mdb_env_close(r->env);
	memset(r, 0, sizeof(*r));
}

/* XORs byte off of the value under key (len bytes) in db with x; with
 * after, off counts from the end of the first copy of after in it. */
static void
raw_flip(const char *path, const char *db, const void *key, size_t klen,
    const char *after, size_t off, uint8_t x)
{
	struct raw r = { NULL, NULL };
	MDB_dbi dbi = raw_open(&r, path, db);
	MDB_val k = { klen, (void *)(uintptr_t)key }, v;
	uint8_t buf[RECORD_MAX];
	const uint8_t *at;

	assert_int_equal(mdb_get(r.txn, dbi, &k, &v), 0);
	if (after != NULL) {
		at = memmem(v.mv_data, v.mv_size, after, strlen(after));
		assert_non_null(at);
		off += (size_t)(at - (const uint8_t *)v.mv_data) +
		    strlen(after);
	}
	assert_true(v.mv_size <= sizeof(buf) && off < v.mv_size);
	memcpy(buf, v.mv_data, v.mv_size);
	buf[off] ^= x;
	v.mv_data = buf;
	assert_int_equal(mdb_put(r.txn, dbi, &k, &v, 0), 0);
	raw_close(&r);
}

static size_t
tree_key_of(const char *user, uint8_t *k)
{
	unsigned leaf = store_tree_leaf_of(user, strlen(user));

	k[0] = (uint8_t)(leaf >> 8);
	k[1] = (uint8_t)leaf;
	memcpy(k + 2, user, strlen(user));
	return 2 + strlen(user);
}

/* Writes the summary of user's leaf as the leaf's entries say. */
static void
raw_summary(const char *path, const char *user)
{
	struct raw r = { NULL, NULL };
	MDB_dbi dbi = raw_open(&r, path, "tree");
	MDB_cursor *cur;
	MDB_val key, val;
	crypto_generichash_state hs;
	uint8_t k[2], sum[STORE_TREE_HASH_LEN + 4];
	unsigned leaf = store_tree_leaf_of(user, strlen(user));
	uint32_t n = 0;
	int mrc;

	k[0] = (uint8_t)(leaf >> 8);
	k[1] = (uint8_t)leaf;
	crypto_generichash_init(&hs, NULL, 0, STORE_TREE_HASH_LEN);
	assert_int_equal(mdb_cursor_open(r.txn, dbi, &cur), 0);
	key.mv_size = 2;
	key.mv_data = k;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (memcmp(key.mv_data, k, 2) != 0)
			break;
		if (key.mv_size == 2)
			continue;
		crypto_generichash_update(&hs, val.mv_data, val.mv_size);
		n++;
	}
	mdb_cursor_close(cur);
	crypto_generichash_final(&hs, sum, STORE_TREE_HASH_LEN);
	sum[32] = (uint8_t)(n >> 24);
	sum[33] = (uint8_t)(n >> 16);
	sum[34] = (uint8_t)(n >> 8);
	sum[35] = (uint8_t)n;
	key.mv_size = 2;
	key.mv_data = k;
	val.mv_size = sizeof(sum);
	val.mv_data = sum;
	assert_int_equal(mdb_put(r.txn, dbi, &key, &val, 0), 0);
	raw_close(&r);
}

/* A tree entry for user, who has no record, and its leaf's summary to
 * match. */
static void
ghost_entry(const char *path, const char *user)
{
	struct raw r = { NULL, NULL };
	MDB_dbi dbi = raw_open(&r, path, "tree");
	uint8_t k[2 + RECORD_USER_MAX], h[STORE_TREE_HASH_LEN];
	MDB_val key, val = { sizeof(h), h };

	memset(h, 0x5a, sizeof(h));
	key.mv_size = tree_key_of(user, k);
	key.mv_data = k;
	assert_int_equal(mdb_put(r.txn, dbi, &key, &val, 0), 0);
	raw_close(&r);
	raw_summary(path, user);
}

struct findings {
	char user[FINDINGS_MAX][RECORD_USER_MAX + 1];
	char what[FINDINGS_MAX][256];
	size_t n;
	unsigned records;
};

static void
finding_cb(const char *user, const char *what, void *arg)
{
	struct findings *f = arg;

	assert_true(f->n < FINDINGS_MAX);
	snprintf(f->user[f->n], sizeof(f->user[f->n]), "%s", user);
	snprintf(f->what[f->n], sizeof(f->what[f->n]), "%s", what);
	f->n++;
}

static void
record_cb(const uint8_t *env, size_t len, void *arg)
{
	struct findings *f = arg;

	(void)env;
	assert_true(len > 0);
	f->records++;
}

static struct store_scrub_report
scrub(struct store *st, struct findings *f)
{
	struct store_scrub_report rep;

	memset(f, 0, sizeof(*f));
	assert_int_equal(store_scrub(st, finding_cb, record_cb, f, &rep), 0);
	assert_int_equal(rep.damaged, f->n);
	return rep;
}

static bool
has_finding(const struct findings *f, const char *user, const char *what)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strcmp(f->user[i], user) == 0 &&
		    strstr(f->what[i], what) != NULL)
			return true;
	return false;
}

static struct store *
reopen(struct store *st, const char *path)
{
	char *err = NULL;

	store_close(st);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	return st;
}

static void
test_scrub(void **state)
{
	struct store_signer sg = { &site_key, "a", "a-node" };
	char path[sizeof(dir) + 16];
	struct store *st = new_store(path, sizeof(path));
	const char *victim = pool_a[3];
	struct store_scrub_report rep;
	struct store_scrub *sl;
	struct findings f;
	uint8_t k[2 + RECORD_USER_MAX], lk[2];
	size_t klen, i;
	int r;

	(void)state;
	for (i = 0; i < POOL; i++)
		assert_int_equal(store_put_user(st, &sg, pool_a[i], "be1",
		    USTATE_ACTIVE, NULL, NOW), ACCEPT_STORED);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 0);
	assert_int_equal(rep.records, POOL);
	assert_int_equal(rep.entries, POOL);
	assert_int_equal(f.records, POOL);

	/* A byte of the victim's envelope, after its name: the record. */
	store_close(st);
	raw_flip(path, "users", victim, strlen(victim), victim, 2, 0x08);
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 1);
	assert_true(has_finding(&f, victim, "record damaged"));
	/* Put back, then a byte of its tree entry. */
	store_close(st);
	raw_flip(path, "users", victim, strlen(victim), victim, 2, 0x08);
	klen = tree_key_of(victim, k);
	raw_flip(path, "tree", k, klen, NULL, 5, 0x01);
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 1);
	assert_true(has_finding(&f, victim, "tree entry damaged"));
	/* Put back, then a byte of the leaf's summary. */
	store_close(st);
	raw_flip(path, "tree", k, klen, NULL, 5, 0x01);
	memcpy(lk, k, 2);
	raw_flip(path, "tree", lk, 2, NULL, 0, 0x80);
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 1);
	assert_string_equal(f.user[0], "");
	assert_non_null(strstr(f.what[0], "summary damaged"));
	store_close(st);
	raw_flip(path, "tree", lk, 2, NULL, 0, 0x80);

	/* A record with no tree entry, as a writer that forgot it would
	 * leave. */
	{
		struct raw rw = { NULL, NULL };
		MDB_dbi dbi = raw_open(&rw, path, "tree");
		MDB_val key = { klen, k };

		assert_int_equal(mdb_del(rw.txn, dbi, &key, NULL), 0);
		raw_close(&rw);
	}
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_true(has_finding(&f, victim, "missing from the tree"));
	/* The next write of the victim mends its entry. */
	assert_int_equal(store_put_user(st, &sg, victim, "be2",
	    USTATE_ACTIVE, NULL, NOW), ACCEPT_STORED);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 0);
	assert_tree_kept(st);

	/* An entry for a user that has no record, its leaf's summary
	 * written to match, as a writer that forgot the record would leave
	 * it: the count of the leaf's records tells. */
	store_close(st);
	ghost_entry(path, "ghost@a.test");
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 1);
	assert_true(has_finding(&f, "ghost@a.test", "without a record"));
	store_close(st);
	{
		struct raw rw = { NULL, NULL };
		MDB_dbi dbi = raw_open(&rw, path, "tree");
		MDB_val key;

		key.mv_size = tree_key_of("ghost@a.test", k);
		key.mv_data = k;
		assert_int_equal(mdb_del(rw.txn, dbi, &key, NULL), 0);
		raw_close(&rw);
		raw_summary(path, "ghost@a.test");
	}
	st = reopen(NULL, path);
	rep = scrub(st, &f);
	assert_int_equal(f.n, 0);

	/* Slices of 3, with writes between them: nothing found, every
	 * record seen once. */
	memset(&f, 0, sizeof(f));
	sl = store_scrub_new(finding_cb, record_cb, &f);
	i = 0;
	while ((r = store_scrub_step(st, sl, 3)) == 0) {
		if (i++ % 1000 != 0)
			continue;
		assert_int_equal(store_put_user(st, &sg, pool_a[i % POOL],
		    i % 2 ? "be1" : "be3", USTATE_ACTIVE, NULL, NOW),
		    ACCEPT_STORED);
	}
	assert_int_equal(r, 1);
	assert_true(i > 10000);
	store_scrub_result(sl, &rep);
	store_scrub_free(sl);
	assert_int_equal(rep.damaged, 0);
	assert_int_equal(f.n, 0);
	assert_int_equal(rep.records, POOL);
	assert_int_equal(f.records, POOL);
	store_close(st);
}

/* A store of schema version 2 (no tree): refused read-only with the
 * version's message, migrated when opened for writing. */
static void
make_v2(const char *path, bool drop)
{
	struct raw r = { NULL, NULL };
	MDB_dbi meta = raw_open(&r, path, "meta");
	MDB_dbi tree = raw_open(&r, path, "tree");
	MDB_val k = { 14, "schema_version" }, v;
	uint8_t two[4] = { 0, 0, 0, 2 }, junk[2 + 8] = { 0, 1, 'j', 'u', 'n',
		'k', '@', 'x', '.', 'y' };

	if (drop) {
		assert_int_equal(mdb_drop(r.txn, tree, 1), 0);
	} else {
		/* What an interrupted migration may leave. */
		k.mv_size = sizeof(junk);
		k.mv_data = junk;
		v.mv_size = 5;
		v.mv_data = junk;
		assert_int_equal(mdb_put(r.txn, tree, &k, &v, 0), 0);
		k.mv_size = 14;
		k.mv_data = "schema_version";
	}
	v.mv_size = 4;
	v.mv_data = two;
	assert_int_equal(mdb_put(r.txn, meta, &k, &v, 0), 0);
	raw_close(&r);
}

static void
test_migration(void **state)
{
	struct store_signer sg = { &site_key, "a", "a-node" };
	uint8_t env[RECORD_MAX];
	char path[sizeof(dir) + 16], *err = NULL;
	struct store *st = new_store(path, sizeof(path));
	struct store_tree *before = NULL, *after = NULL;
	struct findings f;
	int pass;
	size_t i, len;

	(void)state;
	for (i = 0; i < POOL; i++) {
		assert_int_equal(store_put_user(st, &sg, pool_a[i], "be1",
		    USTATE_ACTIVE, NULL, NOW), ACCEPT_STORED);
		len = make_b_user(pool_b[i], 1, i + 1, "be2", USTATE_ACTIVE,
		    env);
		assert_int_equal(store_accept(st, env, len, NOW),
		    ACCEPT_STORED);
	}
	assert_int_equal(store_tree_build(st, &before), 0);
	store_close(st);
	for (pass = 0; pass < 2; pass++) {
		make_v2(path, pass == 0);
		assert_null(store_open(path, STORE_READONLY, &err));
		assert_non_null(strstr(err, "schema version 2"));
		free(err);
		err = NULL;
		st = store_open(path, STORE_WRITE, &err);
		assert_non_null(st);
		assert_tree_kept(st);
		assert_int_equal(store_tree_build(st, &after), 0);
		assert_memory_equal(store_tree_root(before),
		    store_tree_root(after), STORE_TREE_HASH_LEN);
		assert_int_equal(store_tree_users(after), 2 * POOL);
		store_tree_free(after);
		(void)scrub(st, &f);
		assert_int_equal(f.n, 0);
		store_close(st);
		st = store_open(path, STORE_READONLY, &err);
		assert_non_null(st);
		store_close(st);
	}
	store_tree_free(before);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_records_same_root),
		cmocka_unit_test(test_one_change_found),
		cmocka_unit_test(test_empty_store),
		cmocka_unit_test(test_kept_tree_random),
		cmocka_unit_test(test_leaf_users_exact),
		cmocka_unit_test(test_scrub),
		cmocka_unit_test(test_migration),
	};
	char cmd[sizeof(dir) + 16];
	int rc;

	if (dkey_init() != 0 || mkdtemp(dir) == NULL)
		return 1;
	dkey_generate(&root);
	dkey_generate(&site_key);
	dkey_generate(&b_key);
	make_pools();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
