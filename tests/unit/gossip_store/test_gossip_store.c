/* The contiguous digest of the store's per-origin logs, the log range read
 * gossip fetches with, the log fill of superseded records, and the gossip
 * accept path (ops_gossip_accept) refusing forged and replayed records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm_config.h"
#include "ops.h"
#include "store_fixture.h"

struct fx {
	char dir[64];
	char conf_path[96];
	struct dkey root, a, rogue;
	struct store *st;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t env[FX_ENV_MAX];
	char *err = NULL;
	size_t n;

	assert_non_null(f);
	assert_int_equal(dkey_init(), 0);
	snprintf(f->dir, sizeof(f->dir), "gossip-store-%d", (int)getpid());
	dkey_generate(&f->root);
	dkey_generate(&f->a);
	dkey_generate(&f->rogue);
	f->st = store_open(f->dir, STORE_WRITE, &err);
	assert_non_null(f->st);
	assert_int_equal(store_set_root(f->st, f->root.pk, &err), 0);
	/* fx_cert names the node "a-node"; records below use that origin. */
	n = fx_cert(&f->root, &f->a, "a", FX_NOW - 10, 0, env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW), ACCEPT_STORED);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	fx_rmdir(f->dir);
	free(f);
	return 0;
}

/* A user record of site a with origin a-node and the given origin_seq. */
static size_t
user_rec(const struct dkey *k, const char *user, uint64_t seq,
    uint64_t origin_seq, uint8_t *out)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "%s", user);
	snprintf(u.site, sizeof(u.site), "a");
	snprintf(u.backend, sizeof(u.backend), "be1");
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = seq;
	snprintf(u.origin, sizeof(u.origin), "a-node");
	u.origin_seq = origin_seq;
	u.timestamp = FX_NOW;
	n = record_encode_user(&u, k, out, FX_ENV_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

struct got {
	char origin[RECORD_NAME_MAX + 1];
	uint64_t contig, highest;
	int found;
};

static int
origin_cb(const char *origin, uint64_t contig, uint64_t highest, void *arg)
{
	struct got *g = arg;

	if (strcmp(origin, g->origin) == 0) {
		g->contig = contig;
		g->highest = highest;
		g->found = 1;
	}
	return 0;
}

static void
digest_of(struct store *st, const char *origin, uint64_t *contig,
    uint64_t *highest)
{
	struct got g;
	uint64_t c;

	memset(&g, 0, sizeof(g));
	snprintf(g.origin, sizeof(g.origin), "%s", origin);
	assert_int_equal(store_foreach_origin(st, origin_cb, &g), 0);
	assert_true(g.found);
	assert_int_equal(store_origin_contig(st, origin, &c), 0);
	assert_int_equal(c, g.contig);
	*contig = g.contig;
	*highest = g.highest;
}

static int
count_cb(uint64_t seq, const uint8_t *env, size_t len, void *arg)
{
	uint64_t *seqs = arg;

	seqs[seqs[0] + 1] = seq;
	seqs[0]++;
	return 0;
}

static void
test_contiguous_digest(void **state)
{
	struct fx *f = *state;
	uint8_t e[6][FX_ENV_MAX];
	size_t n[6];
	uint64_t contig, highest, seqs[16];
	int i;

	/* Six users, origin_seq 1..6, arriving 1, 2, 5, 6, 4, 3. */
	for (i = 0; i < 6; i++) {
		char user[32];

		snprintf(user, sizeof(user), "u%d@a.test", i + 1);
		n[i] = user_rec(&f->a, user, 1, (uint64_t)i + 1, e[i]);
	}
	assert_int_equal(store_accept(f->st, e[0], n[0], FX_NOW),
	    ACCEPT_STORED);
	assert_int_equal(store_accept(f->st, e[1], n[1], FX_NOW),
	    ACCEPT_STORED);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 2);
	assert_int_equal(highest, 2);

	assert_int_equal(store_accept(f->st, e[4], n[4], FX_NOW),
	    ACCEPT_STORED);
	assert_int_equal(store_accept(f->st, e[5], n[5], FX_NOW),
	    ACCEPT_STORED);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 2);		/* 3 and 4 missing */
	assert_int_equal(highest, 6);

	/* A range read stops at the gap. */
	memset(seqs, 0, sizeof(seqs));
	assert_int_equal(store_log_range(f->st, "a-node", 1, count_cb,
	    seqs), 0);
	assert_int_equal(seqs[0], 2);
	assert_int_equal(seqs[1], 1);
	assert_int_equal(seqs[2], 2);
	memset(seqs, 0, sizeof(seqs));
	assert_int_equal(store_log_range(f->st, "a-node", 5, count_cb,
	    seqs), 0);
	assert_int_equal(seqs[0], 2);
	memset(seqs, 0, sizeof(seqs));
	assert_int_equal(store_log_range(f->st, "a-node", 3, count_cb,
	    seqs), 0);
	assert_int_equal(seqs[0], 0);

	assert_int_equal(store_accept(f->st, e[3], n[3], FX_NOW),
	    ACCEPT_STORED);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 2);
	/* The last hole closes: the mark runs over everything after it. */
	assert_int_equal(store_accept(f->st, e[2], n[2], FX_NOW),
	    ACCEPT_STORED);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 6);
	assert_int_equal(highest, 6);
	memset(seqs, 0, sizeof(seqs));
	assert_int_equal(store_log_range(f->st, "a-node", 1, count_cb,
	    seqs), 0);
	assert_int_equal(seqs[0], 6);

	/* Local writes keep it too. */
	{
		struct store_signer sg = { &f->a, "a", "a-node" };

		assert_int_equal(store_put_user(f->st, &sg, "v@a.test",
		    "be1", USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
		digest_of(f->st, "a-node", &contig, &highest);
		assert_int_equal(contig, 7);
	}
	/* The root's records have a digest entry of their own. */
	digest_of(f->st, "root", &contig, &highest);
	assert_int_equal(contig, 1);
}

static void
test_superseded_fills_the_log(void **state)
{
	struct fx *f = *state;
	uint8_t e1[FX_ENV_MAX], e2[FX_ENV_MAX], bad[FX_ENV_MAX];
	size_t n1, n2, nb;
	uint64_t contig, highest;

	/* A user's second record (origin_seq 2) arrives before its first. */
	n1 = user_rec(&f->a, "w@a.test", 1, 1, e1);
	n2 = user_rec(&f->a, "w@a.test", 2, 2, e2);
	assert_int_equal(store_accept(f->st, e2, n2, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(f->st, e1, n1, FX_NOW), REJECT_STALE);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 0);
	/* Kept in the log (never current): no hidden gap. */
	assert_int_equal(store_log_fill(f->st, e1, n1, FX_NOW), 1);
	assert_int_equal(store_log_fill(f->st, e1, n1, FX_NOW), 0);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 2);
	{
		struct record_user u;

		assert_int_equal(store_get_user(f->st, "w@a.test", &u, NULL,
		    NULL), 1);
		assert_int_equal(u.seq, 2);
	}
	/* Not for a key the root never certified. */
	nb = user_rec(&f->rogue, "x@a.test", 1, 3, bad);
	assert_int_equal(store_log_fill(f->st, bad, nb, FX_NOW), -1);
	digest_of(f->st, "a-node", &contig, &highest);
	assert_int_equal(contig, 2);
}

static void
test_agent_refuses_forged_records(void **state)
{
	struct fx *f = *state;
	char path[128], text[512], *err = NULL;
	struct mm_config *conf;
	struct ops *a;
	enum ctl_status cst;
	uint8_t e1[FX_ENV_MAX], e2[FX_ENV_MAX], forged[FX_ENV_MAX],
	    other[FX_ENV_MAX];
	size_t n1, n2, nf, no;
	struct record_user u;

	/* The agent opens the same store. */
	store_close(f->st);
	f->st = NULL;
	snprintf(path, sizeof(path), "%s.root.pub", f->dir);
	assert_int_equal(dkey_save_public(&f->root, path, &err), 0);
	snprintf(text, sizeof(text), "directory %s\nsite b\nnode-name b-node\n"
	    "node-key /nonexistent\nroot-key %s\nlisten imap 127.0.0.1:1\n",
	    f->dir, path);
	conf = mm_config_parse(text, strlen(text), "test.conf", &err);
	assert_non_null(conf);
	a = ops_new(conf, NULL, &cst, &err);
	assert_non_null(a);

	n1 = user_rec(&f->a, "y@a.test", 1, 1, e1);
	n2 = user_rec(&f->a, "y@a.test", 2, 2, e2);
	assert_int_equal(ops_gossip_accept(a, "a-node", e1, n1, FX_NOW),
	    GOSSIP_ACCEPT_NEW);
	assert_int_equal(ops_gossip_accept(a, "a-node", e2, n2, FX_NOW),
	    GOSSIP_ACCEPT_NEW);
	/* Replayed older record: refused by the rule, not current; it is no
	 * fault of the sender (it may have been superseded on the way). */
	assert_int_equal(ops_gossip_accept(a, "a-node", e1, n1, FX_NOW),
	    GOSSIP_ACCEPT_DUP);
	/* A valid envelope by a key the root never certified: not stored. */
	nf = user_rec(&f->rogue, "y@a.test", 3, 3, forged);
	assert_int_equal(ops_gossip_accept(a, "a-node", forged, nf, FX_NOW),
	    GOSSIP_ACCEPT_DUP);
	/* Tampered bytes: rejected, held against the sender. */
	memcpy(other, e2, n2);
	other[n2 - 1] ^= 1;
	assert_int_equal(ops_gossip_accept(a, "a-node", other, n2, FX_NOW),
	    GOSSIP_ACCEPT_REJECT);
	/* A certified key numbering records under another node's name. */
	{
		struct record_user v;
		const char *why;
		int k;

		memset(&v, 0, sizeof(v));
		snprintf(v.user, sizeof(v.user), "z@a.test");
		snprintf(v.site, sizeof(v.site), "a");
		snprintf(v.backend, sizeof(v.backend), "be1");
		v.state = USTATE_ACTIVE;
		v.epoch = 1;
		v.seq = 1;
		snprintf(v.origin, sizeof(v.origin), "b-node");
		v.origin_seq = 1;
		v.timestamp = FX_NOW;
		k = record_encode_user(&v, &f->a, other, FX_ENV_MAX, &why);
		assert_true(k > 0);
		no = (size_t)k;
		assert_int_equal(ops_gossip_accept(a, "a-node", other, no,
		    FX_NOW), GOSSIP_ACCEPT_REJECT);
	}
	assert_int_equal(ops_gossip_accept(a, "a-node", (const uint8_t *)"x",
	    1, FX_NOW), GOSSIP_ACCEPT_REJECT);

	ops_free(a);
	mm_config_free(conf);
	f->st = store_open(f->dir, STORE_WRITE, &err);
	assert_non_null(f->st);
	assert_int_equal(store_get_user(f->st, "y@a.test", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 2);
	assert_int_equal(store_get_user(f->st, "z@a.test", &u, NULL, NULL), 0);
	(void)remove(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_contiguous_digest, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_superseded_fills_the_log,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_agent_refuses_forged_records, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
