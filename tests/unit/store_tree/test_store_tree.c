/* The consistency tree: equal records give equal roots whatever order they
 * were stored in; one changed record changes the root, and descending the
 * buckets and leaves that differ finds exactly that record. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "dkey.h"
#include "record.h"
#include "store.h"

#define NOW 1700000000ULL
#define USERS 300

static struct dkey root, site_key;
static char dir[] = "store-tree-test-XXXXXX";
static int n_stores;

static size_t
make_cert(uint8_t *out)
{
	struct record_cert c;
	const char *why = NULL;
	int n;

	memset(&c, 0, sizeof(c));
	memcpy(c.pk, site_key.pk, DKEY_PK_LEN);
	c.role = ROLE_SITE;
	strcpy(c.site, "a");
	strcpy(c.name, "a-node");
	c.issued = NOW - 10;
	strcpy(c.origin, "root");
	c.origin_seq = 1;
	n = record_encode_cert(&c, &root, out, RECORD_MAX, &why);
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

/* A store holding users 0..USERS-1 stored in order (or reversed); changed
 * names one user whose record is at seq 2 on back end be2. */
static struct store *
fill(bool reverse, int changed)
{
	uint8_t env[RECORD_MAX];
	char path[sizeof(dir) + 16], *err = NULL;
	struct store *st;
	size_t len;
	unsigned k, i;

	snprintf(path, sizeof(path), "%s/%d", dir, n_stores++);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	len = make_cert(env);
	assert_int_equal(store_accept(st, env, len, NOW), ACCEPT_STORED);
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
    const uint8_t hash[STORE_TREE_HASH_LEN], const uint8_t *env, size_t len,
    void *arg)
{
	struct found *f = arg;

	(void)leaf;
	(void)env;
	(void)len;
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
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_records_same_root),
		cmocka_unit_test(test_one_change_found),
		cmocka_unit_test(test_empty_store),
	};
	char cmd[sizeof(dir) + 16];
	int rc;

	if (dkey_init() != 0 || mkdtemp(dir) == NULL)
		return 1;
	dkey_generate(&root);
	dkey_generate(&site_key);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = 1;
	return rc;
}
