/* Unit tests for the store: every branch of the accept rule, authoring,
 * map growth, read-only use beside a writer, schema check, verify. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "store_fixture.h"

#define TINY_MAP (64 * 1024)
#define GROW_USERS 3000
#define RO_USERS 2000

static struct dkey root, fra, ams, fra2, stranger;

struct fx {
	char dir[64];
	char path[96];
	struct store *st;
};

static uint8_t env[FX_ENV_MAX], tenv[FX_ENV_MAX];

static struct store *
open_store(const char *path, enum store_mode mode)
{
	char *err = NULL;
	struct store *st = store_open(path, mode, &err);

	if (st == NULL)
		fail_msg("store_open: %s", err);
	return st;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char *err = NULL;
	size_t n;

	strcpy(f->dir, "/tmp/test_store.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
	f->st = store_open(f->path, STORE_WRITE, &err);
	if (f->st == NULL || store_set_root(f->st, root.pk, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err);
		return -1;
	}
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	if (store_accept(f->st, env, n, FX_NOW) != ACCEPT_STORED)
		return -1;
	n = fx_cert(&root, &ams, "ams", FX_NOW - 100, 0, env);
	if (store_accept(f->st, env, n, FX_NOW) != ACCEPT_STORED)
		return -1;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	fx_rmdir(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static enum accept_result
acc(struct fx *f, const uint8_t *e, size_t n)
{
	return store_accept(f->st, e, n, FX_NOW);
}

/* The stored envelope of user must be exactly want. */
static void
current_is(struct store *st, const char *user, const uint8_t *want,
    size_t wlen)
{
	struct record_user u;
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(store_get_user(st, user, &u, &buf, &len), 1);
	assert_int_equal(len, wlen);
	assert_memory_equal(buf, want, wlen);
	free(buf);
}

static void
test_root(void **state)
{
	struct fx *f = *state;
	uint8_t pk[DKEY_PK_LEN];
	char *err = NULL;

	assert_int_equal(store_get_root(f->st, pk), 1);
	assert_memory_equal(pk, root.pk, DKEY_PK_LEN);
	assert_int_equal(store_set_root(f->st, root.pk, &err), 0);
	assert_int_equal(store_set_root(f->st, fra.pk, &err), -1);
	assert_non_null(strstr(err, "root key"));
	free(err);
}

static void
test_store_and_get(void **state)
{
	struct fx *f = *state;
	struct record_user u;
	uint8_t *buf = NULL;
	size_t n, len;

	n = fx_user(&fra, "alice@example.com", "fra", USTATE_ACTIVE, 1, 1,
	    "ms1", NULL, 0, env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "alice@example.com", &u, &buf,
	    &len), 1);
	assert_string_equal(u.site, "fra");
	assert_string_equal(u.backend, "ms1");
	assert_int_equal(len, n);
	assert_memory_equal(buf, env, n);
	free(buf);
	assert_int_equal(store_get_user(f->st, "alice@example.com", &u, NULL,
	    NULL), 1);
	assert_int_equal(store_get_user(f->st, "bob@example.com", &u, NULL,
	    NULL), 0);
	assert_int_equal(store_get_user(f->st, "", &u, NULL, NULL), 0);
	/* Malformed and oversized input. */
	assert_int_equal(acc(f, env, n - 1), REJECT_MALFORMED);
	assert_int_equal(store_accept(f->st, env, RECORD_MAX + 1, FX_NOW),
	    REJECT_MALFORMED);
}

static void
test_forged_signature(void **state)
{
	struct fx *f = *state;
	size_t n;

	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	env[n - 1] ^= 0x40;
	assert_int_equal(acc(f, env, n), REJECT_BAD_SIGNATURE);
	/* A valid signature by another key under fra's id. */
	n = fx_user(&ams, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	memcpy(env + n - DKEY_SIG_LEN - 2 - DKEY_ID_LEN, fra.id, DKEY_ID_LEN);
	assert_int_equal(acc(f, env, n), REJECT_BAD_SIGNATURE);
}

static void
test_wrong_site(void **state)
{
	struct fx *f = *state;
	size_t n;

	/* ams's key signing a record for site fra. */
	n = fx_user(&ams, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_WRONG_SITE);
	/* fra owns the user; ams claims it in the same epoch. */
	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 1, 2, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_WRONG_SITE);
	/* ams handing over a user it does not own. */
	n = fx_user(&ams, "a@x", "ams", USTATE_TRANSFER, 2, 0, "", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_WRONG_SITE);
}

/* A record numbered under another node's origin, and one signed by a
 * transport key: both refused, nothing stored. */
static void
test_wrong_origin_and_transport_key(void **state)
{
	struct fx *f = *state;
	struct record_user u;
	struct record_cert c;
	struct dkey tk;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "o@x");
	snprintf(u.site, sizeof(u.site), "fra");
	snprintf(u.backend, sizeof(u.backend), "ms1");
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = 1;
	snprintf(u.origin, sizeof(u.origin), "fra-other");
	u.origin_seq = 1;
	u.timestamp = FX_NOW;
	n = record_encode_user(&u, &fra, env, FX_ENV_MAX, &why);
	assert_true(n > 0);
	assert_int_equal(acc(f, env, (size_t)n), REJECT_WRONG_ORIGIN);
	assert_int_equal(store_get_user(f->st, "o@x", &u, NULL, NULL), 0);

	/* A transport key of site fra, certified by the root. */
	dkey_generate(&tk);
	memset(&c, 0, sizeof(c));
	memcpy(c.pk, tk.pk, DKEY_PK_LEN);
	c.role = ROLE_TRANSPORT;
	snprintf(c.site, sizeof(c.site), "fra");
	snprintf(c.name, sizeof(c.name), "fra-transport");
	c.issued = FX_NOW - 10;
	snprintf(c.origin, sizeof(c.origin), "root-t");
	c.origin_seq = 1;
	n = record_encode_cert(&c, &root, env, FX_ENV_MAX, &why);
	assert_true(n > 0);
	assert_int_equal(acc(f, env, (size_t)n), ACCEPT_STORED);
	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "t@x");
	snprintf(u.site, sizeof(u.site), "fra");
	snprintf(u.backend, sizeof(u.backend), "ms1");
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = 1;
	snprintf(u.origin, sizeof(u.origin), "fra-transport");
	u.origin_seq = 1;
	u.timestamp = FX_NOW;
	n = record_encode_user(&u, &tk, env, FX_ENV_MAX, &why);
	assert_true(n > 0);
	assert_int_equal(acc(f, env, (size_t)n), REJECT_WRONG_SITE);
	assert_int_equal(store_get_user(f->st, "t@x", &u, NULL, NULL), 0);
	dkey_clear(&tk);
}

/* The routing index follows every write of the record it summarises. */
static void
test_route_index(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_route r;
	size_t n;

	assert_int_equal(store_get_route(f->st, "r@x", &r), 0);
	assert_int_equal(store_put_user(f->st, &sf, "r@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_route(f->st, "r@x", &r), 1);
	assert_int_equal(r.state, USTATE_ACTIVE);
	assert_string_equal(r.site, "fra");
	assert_string_equal(r.backend, "ms1");
	assert_int_equal(store_put_user(f->st, &sf, "r@x", "ms2",
	    USTATE_FROZEN, "ams", FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_route(f->st, "r@x", &r), 1);
	assert_int_equal(r.state, USTATE_FROZEN);
	assert_string_equal(r.backend, "ms2");
	/* A record from elsewhere updates it as well. */
	n = fx_user(&ams, "s@x", "ams", USTATE_ACTIVE, 1, 1, "ms7", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(store_get_route(f->st, "s@x", &r), 1);
	assert_string_equal(r.site, "ams");
	assert_string_equal(r.backend, "ms7");
	/* A purged tombstone takes its route along. */
	assert_int_equal(store_put_user(f->st, &sf, "r@x", "ms2",
	    USTATE_DELETED, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_route(f->st, "r@x", &r), 1);
	assert_int_equal(r.state, USTATE_DELETED);
	assert_true(store_purge_tombstones(f->st, FX_NOW + 100, 10) >= 1);
	assert_int_equal(store_get_route(f->st, "r@x", &r), 0);
}

static void
test_unknown_revoked_expired(void **state)
{
	struct fx *f = *state;
	size_t n;

	n = fx_user(&stranger, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL,
	    0, env);
	assert_int_equal(acc(f, env, n), REJECT_UNKNOWN_KEY);

	/* Expired certificate. */
	n = fx_cert(&root, &fra2, "fra", FX_NOW - 100, FX_NOW + 10, env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	n = fx_user(&fra2, "b@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW + 5),
	    ACCEPT_STORED);
	n = fx_user(&fra2, "b@x", "fra", USTATE_ACTIVE, 1, 2, "ms1", NULL, 0,
	    env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW + 10),
	    REJECT_EXPIRED);
	/* An already expired certificate is not taken. */
	n = fx_cert(&root, &stranger, "fra", FX_NOW - 100, FX_NOW - 1, env);
	assert_int_equal(acc(f, env, n), REJECT_EXPIRED);

	/* Revoked key: its records stop, its certificate cannot return. */
	n = fx_revoke(&root, fra2.id, env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(acc(f, env, n), ACCEPT_DUPLICATE);
	n = fx_user(&fra2, "b@x", "fra", USTATE_ACTIVE, 1, 3, "ms1", NULL, 0,
	    env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW + 5),
	    REJECT_REVOKED);
	n = fx_cert(&root, &fra2, "fra", FX_NOW, 0, env);
	assert_int_equal(acc(f, env, n), REJECT_REVOKED);
}

static void
test_trust_records(void **state)
{
	struct fx *f = *state;
	char *err = NULL;
	struct store *st;
	char path[128];
	size_t n;

	/* Certificates and revocations only from the root. */
	n = fx_cert(&fra, &stranger, "fra", FX_NOW, 0, env);
	assert_int_equal(acc(f, env, n), REJECT_UNKNOWN_KEY);
	n = fx_revoke(&fra, ams.id, env);
	assert_int_equal(acc(f, env, n), REJECT_UNKNOWN_KEY);
	n = fx_cert(&root, &stranger, "fra", FX_NOW, 0, env);
	env[n - 3] ^= 1;
	assert_int_equal(acc(f, env, n), REJECT_BAD_SIGNATURE);
	/* Renewal replaces, an older one is stale, same bytes dup. */
	n = fx_cert(&root, &ams, "ams", FX_NOW, 0, env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(acc(f, env, n), ACCEPT_DUPLICATE);
	n = fx_cert(&root, &ams, "ams", FX_NOW - 1000, 0, env);
	assert_int_equal(acc(f, env, n), REJECT_STALE);

	/* A store without a root key takes no certificate. */
	snprintf(path, sizeof(path), "%s/noroot", f->dir);
	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	n = fx_cert(&root, &ams, "ams", FX_NOW, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), REJECT_NO_ROOT);
	store_close(st);
	fx_rmdir(path);
}

static void
test_ordering(void **state)
{
	struct fx *f = *state;
	size_t n1, n2, n3;
	uint8_t e1[FX_ENV_MAX], e3[FX_ENV_MAX];
	uint64_t counts[STORE_ACCEPT_RESULTS];

	n1 = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    e1);
	n2 = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 5, "ms2", NULL, 0,
	    env);
	n3 = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 3, "ms3", NULL, 0,
	    e3);
	assert_int_equal(acc(f, e1, n1), ACCEPT_STORED);
	assert_int_equal(acc(f, env, n2), ACCEPT_STORED);
	/* Replay of the old record. */
	assert_int_equal(acc(f, e1, n1), REJECT_STALE);
	/* A rolled-back seq, freshly signed. */
	assert_int_equal(acc(f, e3, n3), REJECT_STALE);
	/* The current one again. */
	assert_int_equal(acc(f, env, n2), ACCEPT_DUPLICATE);
	current_is(f->st, "a@x", env, n2);
	store_accept_counts(f->st, counts);
	assert_int_equal(counts[REJECT_STALE], 2);
	assert_int_equal(counts[ACCEPT_DUPLICATE], 1);
}

static void
test_epoch_jump_without_transfer(void **state)
{
	struct fx *f = *state;
	size_t n;

	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	/* The new site just claims the next epoch. */
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 2, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_NO_TRANSFER);
	/* The owner itself may not bump the epoch without a hand-over. */
	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 2, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_NO_TRANSFER);
	/* A transfer for another user, epoch or site does not count. */
	n = fx_user(&fra, "b@x", "fra", USTATE_TRANSFER, 2, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 2, 1, "ms1", tenv, n,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_NO_TRANSFER);
	n = fx_user(&fra, "a@x", "ams", USTATE_TRANSFER, 3, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 2, 1, "ms1", tenv, n,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_NO_TRANSFER);
	/* Signed by the wrong site: ams hands itself the user. */
	n = fx_user(&ams, "a@x", "ams", USTATE_TRANSFER, 2, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 2, 1, "ms1", tenv, n,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_NO_TRANSFER);
}

static void
test_epoch_jump_with_transfer(void **state)
{
	struct fx *f = *state;
	struct record_user u;
	size_t n, tn;

	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 1, 7, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	/* fra hands a@x to ams; ams's first record carries that. */
	tn = fx_user(&fra, "a@x", "ams", USTATE_TRANSFER, 2, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "a@x", "ams", USTATE_ACTIVE, 2, 1, "ms9", tenv, tn,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "a@x", &u, NULL, NULL), 1);
	assert_string_equal(u.site, "ams");
	assert_int_equal(u.epoch, 2);
	/* The TRANSFER arriving later is stale now. */
	assert_int_equal(acc(f, tenv, tn), REJECT_STALE);
	/* fra can no longer write it. */
	n = fx_user(&fra, "a@x", "fra", USTATE_ACTIVE, 2, 2, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_WRONG_SITE);

	/* The TRANSFER first, then ams's record without a copy. */
	n = fx_user(&fra, "b@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	tn = fx_user(&fra, "b@x", "ams", USTATE_TRANSFER, 2, 0, "", NULL, 0,
	    tenv);
	assert_int_equal(acc(f, tenv, tn), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "b@x", &u, NULL, NULL), 1);
	assert_int_equal(u.state, USTATE_TRANSFER);
	assert_string_equal(u.site, "ams");
	n = fx_user(&ams, "b@x", "ams", USTATE_ACTIVE, 2, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
}

/* A second node's store in f's directory (name), knowing the root and
 * the certificates of fra and ams, as setup's. */
static struct store *
second_store(struct fx *f, const char *name, char *path, size_t size)
{
	struct store *st;
	size_t n;

	snprintf(path, size, "%s/%s", f->dir, name);
	st = open_store(path, STORE_WRITE);
	assert_int_equal(store_set_root(st, root.pk, &(char *){ NULL }), 0);
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	n = fx_cert(&root, &ams, "ams", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	return st;
}

static void
test_put_transfer_flow(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_signer sa = { &ams, "ams", "ams-node" };
	struct record_user u;
	uint8_t *buf = NULL, *tbuf = NULL;
	size_t len, tlen;
	char path[128];
	struct store *other;
	struct store_verify_report rep;

	assert_int_equal(store_put_user(f->st, &sf, "c@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "c@x", "ms1",
	    USTATE_MOVING, "ams", FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "c@x", "ms1",
	    USTATE_FROZEN, "ams", FX_NOW), ACCEPT_STORED);
	/* ams cannot write it yet. */
	assert_int_equal(store_put_user(f->st, &sa, "c@x", "ms7",
	    USTATE_ACTIVE, NULL, FX_NOW), REJECT_WRONG_SITE);
	assert_int_equal(store_put_transfer(f->st, &sf, "c@x", "ams", "ms7",
	    FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "c@x", &u, &tbuf, &tlen), 1);
	assert_int_equal(u.state, USTATE_TRANSFER);
	assert_int_equal(u.epoch, 2);
	assert_int_equal(u.seq, 0);
	/* Now fra cannot, ams can. */
	assert_int_equal(store_put_user(f->st, &sf, "c@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), REJECT_WRONG_SITE);
	assert_int_equal(store_put_user(f->st, &sa, "c@x", "ms7",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "c@x", &u, &buf, &len), 1);
	assert_int_equal(u.epoch, 2);
	assert_int_equal(u.seq, 1);
	assert_string_equal(u.site, "ams");
	/* It carries the hand-over ... */
	assert_int_equal(u.transfer_len, tlen);
	assert_memory_equal(u.transfer, tbuf, tlen);

	/* ... so a node that never saw the TRANSFER takes it. */
	other = second_store(f, "other", path, sizeof(path));
	{
		size_t n = fx_user(&fra, "c@x", "fra", USTATE_ACTIVE, 1, 1,
		    "ms1", NULL, 0, env);

		assert_int_equal(store_accept(other, env, n, FX_NOW),
		    ACCEPT_STORED);
	}
	assert_int_equal(store_accept(other, buf, len, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_verify(other, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	store_close(other);
	fx_rmdir(path);

	/* Later records of the epoch carry it too. */
	free(buf);
	assert_int_equal(store_put_user(f->st, &sa, "c@x", "ms8",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "c@x", &u, &buf, &len), 1);
	assert_int_equal(u.seq, 2);
	assert_memory_equal(u.transfer, tbuf, tlen);
	free(buf);
	free(tbuf);
	assert_int_equal(store_put_transfer(f->st, &sf, "nobody@x", "ams",
	    NULL, FX_NOW), REJECT_STALE);
	assert_int_equal(store_verify(f->st, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
}

/* Counts the open kinds of evidence, and keeps the last text. */
struct ev_seen {
	uint64_t kinds[STORE_EVIDENCE_KINDS];
	char text[768];
};

static int
ev_cb(const struct store_evidence *e, void *arg)
{
	struct ev_seen *s = arg;

	/* A release's text, else a claim's. */
	if (e->kind == EVIDENCE_RELEASE ||
	    (e->kind == EVIDENCE_CLAIM && s->text[0] == '\0'))
		store_evidence_text(e, s->text, sizeof(s->text));
	return 0;
}

static void
evidence_is(struct store *st, uint64_t claims, uint64_t releases,
    struct ev_seen *s)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(store_foreach_evidence(st, ev_cb, s, s->kinds), 0);
	assert_int_equal(s->kinds[EVIDENCE_CLAIM], claims);
	assert_int_equal(s->kinds[EVIDENCE_RELEASE], releases);
	assert_int_equal(s->kinds[EVIDENCE_EQUIVOCATION], 0);
}

/* A user created at two sites while apart: each refuses the other's
 * record and keeps it; one site gives the user up, the other takes it
 * back at a higher epoch, and both stores end with the same record. */
static void
test_conflict_claims_and_resolve(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_signer sa = { &ams, "ams", "ams-node" };
	struct store_resolution out;
	struct store_verify_report rep;
	struct store_scrub_report sr;
	struct record_user u;
	struct ev_seen seen;
	struct store *other;
	uint8_t fenv[FX_ENV_MAX], aenv[FX_ENV_MAX], *rel = NULL, *fin = NULL;
	size_t fn, an, rel_len, fin_len, n;
	char path[128];

	/* The fra node: fra's twin first, then ams's, which is refused
	 * whatever its seq, and kept once. */
	fn = fx_user(&fra, "t@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    fenv);
	assert_int_equal(acc(f, fenv, fn), ACCEPT_STORED);
	an = fx_user(&ams, "t@x", "ams", USTATE_ACTIVE, 1, 1, "ms9", NULL, 0,
	    aenv);
	assert_int_equal(acc(f, aenv, an), REJECT_WRONG_SITE);
	assert_int_equal(acc(f, aenv, an), REJECT_WRONG_SITE);
	evidence_is(f->st, 1, 0, &seen);
	assert_non_null(strstr(seen.text, "fra holds it here"));
	assert_non_null(strstr(seen.text, "site ams's record (epoch 1 seq 1, "
	    "back end ms9"));
	assert_int_equal(store_scrub(f->st, NULL, NULL, NULL, &sr), 0);
	assert_int_equal(sr.conflicts, 1);
	assert_int_equal(sr.equivocations, 0);
	/* After a later change of fra's, ams's lower one is still a claim. */
	assert_int_equal(store_put_user(f->st, &sf, "t@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	evidence_is(f->st, 1, 0, &seen);

	/* The ams node, the other way round. */
	other = second_store(f, "other", path, sizeof(path));
	assert_int_equal(store_accept(other, aenv, an, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(other, fenv, fn, FX_NOW),
	    REJECT_WRONG_SITE);
	evidence_is(other, 1, 0, &seen);

	/* Wrong ways: no claim of that site, not this site's user, the
	 * winner with no release yet, the owner raising its own epoch
	 * without one. */
	assert_int_equal(store_resolve(f->st, &sf, "t@x", "lon", FX_NOW,
	    &out), REJECT_STALE);
	assert_non_null(strstr(out.why, "no claim to t@x by site lon"));
	assert_int_equal(store_resolve(f->st, &sa, "t@x", "ams", FX_NOW,
	    &out), REJECT_WRONG_SITE);
	assert_int_equal(store_resolve(other, &sa, "t@x", "ams", FX_NOW,
	    &out), REJECT_NO_TRANSFER);
	assert_int_equal(store_resolve(f->st, &sf, "nobody@x", "ams", FX_NOW,
	    &out), REJECT_STALE);
	n = fx_user(&ams, "t@x", "ams", USTATE_ACTIVE, 2, 1, "ms9", NULL, 0,
	    env);
	assert_int_equal(store_accept(other, env, n, FX_NOW),
	    REJECT_NO_TRANSFER);

	/* fra gives it up: a hand-over to ams above both epochs. */
	assert_int_equal(store_resolve(f->st, &sf, "t@x", "ams", FX_NOW,
	    &out), ACCEPT_STORED);
	assert_true(out.released);
	assert_int_equal(out.epoch, 2);
	assert_string_equal(out.backend, "ms1");
	assert_int_equal(store_get_user(f->st, "t@x", &u, &rel, &rel_len), 1);
	assert_int_equal(u.state, USTATE_TRANSFER);
	assert_string_equal(u.site, "ams");
	assert_string_equal(u.backend, "ms9");
	evidence_is(f->st, 0, 0, &seen);
	assert_int_equal(store_resolve(f->st, &sf, "t@x", "ams", FX_NOW,
	    &out), REJECT_WRONG_SITE);

	/* The release reaches ams, which does not own it by fra's say: kept
	 * as a release; then ams takes the user back, carrying it. */
	assert_int_equal(store_accept(other, rel, rel_len, FX_NOW),
	    REJECT_WRONG_SITE);
	evidence_is(other, 1, 1, &seen);
	assert_non_null(strstr(seen.text, "mmctl user resolve t@x ams"));
	assert_int_equal(store_resolve(other, &sa, "t@x", "ams", FX_NOW,
	    &out), ACCEPT_STORED);
	assert_false(out.released);
	assert_int_equal(out.epoch, 2);
	assert_int_equal(store_get_user(other, "t@x", &u, &fin, &fin_len), 1);
	assert_int_equal(u.epoch, 2);
	assert_int_equal(u.seq, 1);
	assert_string_equal(u.site, "ams");
	assert_string_equal(u.backend, "ms9");
	assert_int_equal(u.state, USTATE_ACTIVE);
	assert_int_equal(u.transfer_len, rel_len);
	evidence_is(other, 0, 0, &seen);

	/* fra's node takes ams's record: both hold the same now. */
	assert_int_equal(acc(f, fin, fin_len), ACCEPT_STORED);
	current_is(f->st, "t@x", fin, fin_len);
	evidence_is(f->st, 0, 0, &seen);
	assert_int_equal(store_verify(f->st, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	assert_int_equal(store_verify(other, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	assert_int_equal(rep.equivocations, 0);

	/* A raise by the owner carrying a release of another epoch, or to
	 * another site, is no release. */
	n = fx_user(&fra, "t@x", "fra", USTATE_TRANSFER, 4, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "t@x", "ams", USTATE_ACTIVE, 3, 1, "ms9", tenv, n,
	    env);
	assert_int_equal(store_accept(other, env, n, FX_NOW),
	    REJECT_NO_TRANSFER);
	n = fx_user(&fra, "t@x", "lon", USTATE_TRANSFER, 3, 0, "", NULL, 0,
	    tenv);
	n = fx_user(&ams, "t@x", "ams", USTATE_ACTIVE, 3, 1, "ms9", tenv, n,
	    env);
	assert_int_equal(store_accept(other, env, n, FX_NOW),
	    REJECT_NO_TRANSFER);
	free(rel);
	free(fin);
	store_close(other);
	fx_rmdir(path);
}

/* Accepts a then b into a fresh store, returns the winner. */
static void
equivocate_into(const char *path, const uint8_t *a, size_t an,
    const uint8_t *b, size_t bn, uint8_t *win, size_t *win_len)
{
	struct store *st = open_store(path, STORE_WRITE);
	struct store_stats s;
	struct store_verify_report rep;
	uint8_t *buf = NULL;
	struct record_user u;
	size_t n;

	assert_int_equal(store_set_root(st, root.pk, &(char *){ NULL }), 0);
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(st, a, an, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(st, b, bn, FX_NOW), ACCEPT_EQUIVOCATION);
	assert_int_equal(store_stats(st, &s), 0);
	assert_int_equal(s.evidence, 2);
	assert_int_equal(store_get_user(st, "e@x", &u, &buf, win_len), 1);
	memcpy(win, buf, *win_len);
	free(buf);
	/* Either one again changes nothing more. */
	n = store_accept(st, a, an, FX_NOW);
	assert_true(n == ACCEPT_DUPLICATE || n == ACCEPT_EQUIVOCATION);
	assert_int_equal(store_verify(st, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	assert_int_equal(rep.equivocations, 2);
	store_close(st);
	fx_rmdir(path);
}

static void
test_equivocation(void **state)
{
	struct fx *f = *state;
	uint8_t a[FX_ENV_MAX], b[FX_ENV_MAX], w1[FX_ENV_MAX], w2[FX_ENV_MAX];
	size_t an, bn, n1, n2;
	char p1[128], p2[128];
	size_t n;

	an = fx_user(&fra, "e@x", "fra", USTATE_ACTIVE, 1, 4, "ms1", NULL, 0,
	    a);
	bn = fx_user(&fra, "e@x", "fra", USTATE_ACTIVE, 1, 4, "ms2", NULL, 0,
	    b);
	snprintf(p1, sizeof(p1), "%s/eq1", f->dir);
	snprintf(p2, sizeof(p2), "%s/eq2", f->dir);
	equivocate_into(p1, a, an, b, bn, w1, &n1);
	equivocate_into(p2, b, bn, a, an, w2, &n2);
	/* The same winner whatever the order. */
	assert_int_equal(n1, n2);
	assert_memory_equal(w1, w2, n1);

	/* Another site cannot fake an equivocation of fra's record. */
	assert_int_equal(acc(f, a, an), ACCEPT_STORED);
	n = fx_user(&ams, "e@x", "ams", USTATE_ACTIVE, 1, 4, "ms2", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_WRONG_SITE);
	current_is(f->st, "e@x", a, an);
}

static void
test_put_user_origin_seq(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_signer sf2 = { &fra, "fra", "fra-n2" };
	struct record_user u;
	char name[32];
	uint64_t want = 0;
	int i;

	for (i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "u%d@x", i % 7);
		assert_int_equal(store_put_user(f->st, &sf, name, "ms1",
		    i % 5 == 4 ? USTATE_DELETED : USTATE_ACTIVE, NULL,
		    FX_NOW + (uint64_t)i), ACCEPT_STORED);
		assert_int_equal(store_get_user(f->st, name, &u, NULL, NULL),
		    1);
		assert_int_equal(u.origin_seq, ++want);
		assert_string_equal(u.origin, "fra-node");
		assert_int_equal(u.epoch, 1);
		assert_int_equal(u.seq, (uint64_t)(i / 7 + 1));
	}
	/* A refused write takes no number. */
	assert_int_equal(store_put_user(f->st, &sf, "Upper@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), REJECT_MALFORMED);
	assert_int_equal(store_put_user(f->st, &sf, "t@x", "ms1",
	    USTATE_TRANSFER, NULL, FX_NOW), REJECT_MALFORMED);
	assert_int_equal(store_put_user(f->st, &sf, "z@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "z@x", &u, NULL, NULL), 1);
	assert_int_equal(u.origin_seq, ++want);
	/* A key numbers only the origin its certificate names. */
	assert_int_equal(store_put_user(f->st, &sf2, "y@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), REJECT_WRONG_ORIGIN);
	assert_int_equal(store_get_user(f->st, "y@x", &u, NULL, NULL), 0);
	assert_int_equal(store_put_user(f->st, &sf, "y@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "y@x", &u, NULL, NULL), 1);
	assert_int_equal(u.origin_seq, ++want);
}

static void
test_purge_tombstones(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_stats s;
	struct record_user u;
	size_t n;

	assert_int_equal(store_put_user(f->st, &sf, "d@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "d@x", "",
	    USTATE_DELETED, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "k@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_stats(f->st, &s), 0);
	assert_int_equal(s.users, 2);
	assert_int_equal(s.tombstones, 1);
	{
		struct store_stats q;

		/* The same sizes without the walk that finds tombstones. */
		assert_int_equal(store_sizes(f->st, &q), 0);
		assert_int_equal(q.users, 2);
		assert_int_equal(q.tombstones, 0);
		assert_int_equal(q.certs, s.certs);
		assert_int_equal(q.origins, s.origins);
		assert_int_equal(q.used_bytes, s.used_bytes);
		assert_int_equal(q.map_bytes, s.map_bytes);
	}
	assert_int_equal(store_purge_tombstones(f->st, FX_NOW + 10, 100), 0);
	assert_int_equal(store_purge_tombstones(f->st, FX_NOW + 100, 100), 1);
	assert_int_equal(store_get_user(f->st, "d@x", &u, NULL, NULL), 0);
	/* The high-water mark stays: the old record cannot come back. */
	n = fx_user(&fra, "d@x", "fra", USTATE_ACTIVE, 1, 1, "ms1", NULL, 0,
	    env);
	assert_int_equal(acc(f, env, n), REJECT_STALE);
	/* The owner may write it again, and nobody else. */
	assert_int_equal(store_put_user(f->st, &sf, "d@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "d@x", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 3);
}

static void
bad_cb(const char *what, const char *reason, void *arg)
{
	assert_non_null(strstr(what, "@x"));
	assert_non_null(strstr(reason, "revoked"));
	(*(int *)arg)++;
}

static void
test_map_growth(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store *st;
	struct store_stats s;
	struct record_user u;
	struct store_verify_report rep;
	char path[128], name[64], *err = NULL;
	int i;

	snprintf(path, sizeof(path), "%s/tiny", f->dir);
	st = store_open_sized(path, STORE_WRITE, TINY_MAP, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	{
		size_t n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);

		assert_int_equal(store_accept(st, env, n, FX_NOW),
		    ACCEPT_STORED);
	}
	assert_int_equal(store_stats(st, &s), 0);
	assert_true(s.map_bytes <= TINY_MAP);
	for (i = 0; i < GROW_USERS; i++) {
		snprintf(name, sizeof(name), "user%05d@example.com", i);
		assert_int_equal(store_put_user(st, &sf, name, "ms1",
		    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	}
	assert_int_equal(store_stats(st, &s), 0);
	assert_true(s.map_bytes >= 4 * TINY_MAP);
	assert_int_equal(s.users, GROW_USERS);
	for (i = 0; i < GROW_USERS; i++) {
		snprintf(name, sizeof(name), "user%05d@example.com", i);
		assert_int_equal(store_get_user(st, name, &u, NULL, NULL), 1);
		assert_int_equal(u.origin_seq, (uint64_t)i + 1);
	}
	assert_int_equal(store_verify(st, FX_NOW, &rep, bad_cb, &(int){ 0 }), 0);
	assert_int_equal(rep.bad, 0);
	assert_int_equal(rep.checked, GROW_USERS + 1);
	store_close(st);
	/* Reopened, it keeps its grown size. */
	st = open_store(path, STORE_READONLY);
	assert_int_equal(store_get_user(st, "user00000@example.com", &u, NULL,
	    NULL), 1);
	store_close(st);
	fx_rmdir(path);
}

/* Two threads of one process on one environment (store_dup): a reader
 * that looks users up and walks them the whole time while the writer
 * grows a tiny map many times. */
struct dup_reader {
	struct store *st;
	volatile int stop;
	int lookups, walks, last_seen;
};

static int
dup_walk_cb(const struct record *r, const uint8_t *e, size_t len, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void *
dup_reader_thread(void *arg)
{
	struct dup_reader *d = arg;
	struct record_user u;
	char name[64];
	int n;

	while (!d->stop) {
		snprintf(name, sizeof(name), "user%05d@example.com",
		    d->lookups % GROW_USERS);
		if (store_get_user(d->st, name, &u, NULL, NULL) == 1)
			d->last_seen = d->lookups % GROW_USERS;
		d->lookups++;
		if (d->lookups % 200 == 0) {
			n = 0;
			if (store_foreach_user(d->st, dup_walk_cb, &n) == 0)
				d->walks++;
		}
	}
	return NULL;
}

static void
test_dup_threads_grow(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct dup_reader d;
	struct store *st;
	struct store_stats s;
	pthread_t tid;
	char path[128], name[64], *err = NULL;
	size_t n;
	int i;

	snprintf(path, sizeof(path), "%s/dup", f->dir);
	st = store_open_sized(path, STORE_WRITE, TINY_MAP, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	memset(&d, 0, sizeof(d));
	d.st = store_dup(st);
	assert_int_equal(pthread_create(&tid, NULL, dup_reader_thread, &d), 0);
	for (i = 0; i < GROW_USERS; i++) {
		snprintf(name, sizeof(name), "user%05d@example.com", i);
		assert_int_equal(store_put_user(st, &sf, name, "ms1",
		    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	}
	d.stop = 1;
	pthread_join(tid, NULL);
	assert_true(d.lookups > 0);
	assert_true(d.walks > 0);
	assert_int_equal(store_stats(d.st, &s), 0);
	assert_true(s.map_bytes >= 4 * TINY_MAP);
	assert_int_equal(s.users, GROW_USERS);
	/* Either handle closes first; the environment lives on. */
	store_close(st);
	assert_int_equal(store_stats(d.st, &s), 0);
	assert_int_equal(s.users, GROW_USERS);
	store_close(d.st);
	fx_rmdir(path);
}

static void
test_readonly_beside_writer(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store *ro, *w;
	struct record_user u;
	char path[128], name[64], *err = NULL;
	pid_t pid;
	int i, status, seen = 0, last = -1;
	uint8_t *buf;

	snprintf(path, sizeof(path), "%s/shared", f->dir);
	w = store_open_sized(path, STORE_WRITE, TINY_MAP, &err);
	assert_non_null(w);
	assert_int_equal(store_set_root(w, root.pk, &err), 0);
	{
		size_t n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);

		assert_int_equal(store_accept(w, env, n, FX_NOW),
		    ACCEPT_STORED);
	}
	store_close(w);

	ro = open_store(path, STORE_READONLY);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The writer grows the map under the reader's feet. */
		w = store_open(path, STORE_WRITE, &err);
		if (w == NULL)
			_exit(2);
		for (i = 0; i < RO_USERS; i++) {
			snprintf(name, sizeof(name), "r%05d@x", i);
			if (store_put_user(w, &sf, name, "ms1", USTATE_ACTIVE,
			    NULL, FX_NOW) != ACCEPT_STORED)
				_exit(3);
		}
		store_close(w);
		_exit(0);
	}
	/* Users appear in order: once one is seen all before it are. */
	while (waitpid(pid, &status, WNOHANG) == 0) {
		for (i = last + 1; i < RO_USERS; i++) {
			snprintf(name, sizeof(name), "r%05d@x", i);
			if (store_get_user(ro, name, &u, NULL, NULL) != 1)
				break;
			last = i;
		}
		seen++;
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	for (i = 0; i < RO_USERS; i++) {
		snprintf(name, sizeof(name), "r%05d@x", i);
		buf = NULL;
		assert_int_equal(store_get_user(ro, name, &u, &buf, NULL), 1);
		free(buf);
	}
	/* A read-only store refuses writes. */
	{
		size_t n = fx_user(&fra, "q@x", "fra", USTATE_ACTIVE, 1, 1,
		    "ms1", NULL, 0, env);

		assert_int_equal(store_accept(ro, env, n, FX_NOW),
		    REJECT_STORE);
	}
	assert_int_equal(store_set_root(ro, root.pk, &err), -1);
	free(err);
	store_close(ro);
	fx_rmdir(path);
	assert_true(seen > 0);
}

static void
test_schema_version(void **state)
{
	struct fx *f = *state;
	MDB_env *menv;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 14, "schema_version" }, v;
	char want[64];
	uint8_t two[4] = { 0, 0, 0, STORE_SCHEMA_VERSION + 1 };
	char *err = NULL;

	store_close(f->st);
	f->st = NULL;
	assert_int_equal(mdb_env_create(&menv), 0);
	mdb_env_set_maxdbs(menv, 16);
	assert_int_equal(mdb_env_open(menv, f->path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(menv, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	v.mv_size = 4;
	v.mv_data = two;
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(menv);

	assert_null(store_open(f->path, STORE_WRITE, &err));
	snprintf(want, sizeof(want), "schema version %d",
	    STORE_SCHEMA_VERSION + 1);
	assert_non_null(strstr(err, want));
	snprintf(want, sizeof(want), "version %d", STORE_SCHEMA_VERSION);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, f->path));
	free(err);
	err = NULL;
	assert_null(store_open(f->path, STORE_READONLY, &err));
	free(err);
	err = NULL;
	/* No store at all, read-only. */
	assert_null(store_open("/nonexistent/store", STORE_READONLY, &err));
	assert_non_null(strstr(err, "/nonexistent/store"));
	free(err);
}


static void
test_verify_and_foreach(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_verify_report rep;
	int nbad = 0;
	size_t n;

	assert_int_equal(store_put_user(f->st, &sf, "v1@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "v2@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_verify(f->st, FX_NOW, &rep, bad_cb, &nbad), 0);
	assert_int_equal(rep.checked, 4);
	assert_int_equal(rep.bad, 0);
	assert_int_equal(nbad, 0);
	/* Revoking fra's key makes its records bad on a re-check. */
	n = fx_revoke(&root, fra.id, env);
	assert_int_equal(acc(f, env, n), ACCEPT_STORED);
	assert_int_equal(store_verify(f->st, FX_NOW, &rep, bad_cb, &nbad), 0);
	assert_int_equal(rep.checked, 5);
	assert_int_equal(rep.bad, 2);
	assert_int_equal(nbad, 2);
}

static int
foreach_cb(const struct record *r, const uint8_t *e, size_t len, void *arg)
{
	int *count = arg;

	assert_int_equal(r->kind, RECORD_USER);
	(*count)++;
	return *count == 2;
}

static void
test_foreach(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	int count = 0;

	assert_int_equal(store_put_user(f->st, &sf, "f1@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "f2@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "f3@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_foreach_user(f->st, foreach_cb, &count), 0);
	assert_int_equal(count, 2);
}

static void
test_batch(void **state)
{
	struct fx *f = *state;
	enum { N = 300 };
	static uint8_t bufs[N][256];
	const uint8_t *envs[N];
	size_t lens[N];
	enum accept_result res[N];
	char name[32];
	size_t i, n;

	/* A certificate early in a batch certifies what follows; bad
	 * signatures are caught by the parallel check too. */
	n = fx_cert(&root, &fra2, "fra", FX_NOW, 0, env);
	assert_true(n <= sizeof(bufs[0]));
	memcpy(bufs[0], env, n);
	envs[0] = bufs[0];
	lens[0] = n;
	for (i = 1; i < N; i++) {
		snprintf(name, sizeof(name), "b%zu@x", i);
		n = fx_user(i % 2 ? &fra2 : &fra, name, "fra", USTATE_ACTIVE,
		    1, 1, "ms1", NULL, 0, env);
		assert_true(n <= sizeof(bufs[0]));
		memcpy(bufs[i], env, n);
		if (i % 10 == 0)
			bufs[i][n - 1] ^= 1;
		envs[i] = bufs[i];
		lens[i] = n;
	}
	store_accept_batch(f->st, envs, lens, N, FX_NOW, res);
	assert_int_equal(res[0], ACCEPT_STORED);
	for (i = 1; i < N; i++)
		assert_int_equal(res[i], i % 10 == 0 ? REJECT_BAD_SIGNATURE :
		    ACCEPT_STORED);
	store_accept_batch(f->st, envs, lens, N, FX_NOW, res);
	for (i = 0; i < N; i++)
		assert_int_equal(res[i], i % 10 == 0 && i > 0 ?
		    REJECT_BAD_SIGNATURE : ACCEPT_DUPLICATE);
}

/* ---- store_put_users ---------------------------------------------------- */

struct replay {
	struct store *dst;
	size_t n;
};

/* Every current record must pass the full accept rule elsewhere: the
 * batch did not verify what it signed. */
static int
replay_cb(const struct record *r, const uint8_t *e, size_t len, void *arg)
{
	struct replay *rp = arg;

	assert_int_equal(store_accept(rp->dst, e, len, FX_NOW),
	    ACCEPT_STORED);
	rp->n++;
	return 0;
}

static void
replay_into_fresh(struct fx *f, size_t want)
{
	struct replay rp = { NULL, 0 };
	char path[128];
	size_t n;

	snprintf(path, sizeof(path), "%s/replay", f->dir);
	rp.dst = open_store(path, STORE_WRITE);
	assert_int_equal(store_set_root(rp.dst, root.pk, &(char *){ NULL }),
	    0);
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(rp.dst, env, n, FX_NOW), ACCEPT_STORED);
	n = fx_cert(&root, &ams, "ams", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(rp.dst, env, n, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_foreach_user(f->st, replay_cb, &rp), 0);
	assert_int_equal(rp.n, want);
	store_close(rp.dst);
	fx_rmdir(path);
}

static void
test_put_users_batch(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_signer sa = { &ams, "ams", "ams-node" };
	struct store_user_item items[] = {
		{ "new1@x", "ms1", USTATE_ACTIVE, NULL },
		{ "old@x", "ms2", USTATE_ACTIVE, "" },
		{ "theirs@x", "ms1", USTATE_ACTIVE, NULL },	/* ams owns it */
		{ "Upper@x", "ms1", USTATE_ACTIVE, NULL },	/* not normalised */
		{ "new2@x", "", USTATE_ACTIVE, NULL },		/* no back end */
		{ "new1@x", "ms2", USTATE_MOVING, "ams" },	/* again */
		{ "new3@x", "ms1", USTATE_FROZEN, "ams" },
		{ "old@x", "", USTATE_DELETED, NULL },
	};
	const enum accept_result want[] = { ACCEPT_STORED, ACCEPT_STORED,
		REJECT_WRONG_SITE, REJECT_MALFORMED, REJECT_MALFORMED,
		ACCEPT_STORED, ACCEPT_STORED, ACCEPT_STORED };
	enum accept_result res[8];
	struct store_verify_report rep;
	struct record_user u;
	uint64_t base, next;
	size_t i;

	assert_int_equal(store_put_user(f->st, &sf, "old@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sf, "old@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_user(f->st, &sa, "theirs@x", "ms9",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_next_origin_seq(f->st, "fra-node", &base), 0);
	assert_int_equal(base, 3);

	store_put_users(f->st, &sf, items, 8, FX_NOW + 1, res);
	for (i = 0; i < 8; i++)
		assert_int_equal(res[i], want[i]);

	/* Numbered without gaps, in item order, over the stored ones only:
	 * new1 (base), old (base + 1), new1 again, new3, old deleted. */
	assert_int_equal(store_next_origin_seq(f->st, "fra-node", &next), 0);
	assert_int_equal(next, base + 5);
	assert_int_equal(store_get_user(f->st, "new1@x", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 2);
	assert_int_equal(u.origin_seq, base + 2);
	assert_int_equal(u.state, USTATE_MOVING);
	assert_string_equal(u.target_site, "ams");
	assert_string_equal(u.backend, "ms2");
	assert_int_equal(store_get_user(f->st, "new3@x", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 1);
	assert_int_equal(u.origin_seq, base + 3);
	assert_int_equal(u.state, USTATE_FROZEN);
	assert_int_equal(store_get_user(f->st, "old@x", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 4);
	assert_int_equal(u.origin_seq, base + 4);
	assert_int_equal(u.state, USTATE_DELETED);
	assert_int_equal(u.timestamp, FX_NOW + 1);
	/* The other site's user is untouched. */
	assert_int_equal(store_get_user(f->st, "theirs@x", &u, NULL, NULL),
	    1);
	assert_string_equal(u.site, "ams");
	assert_string_equal(u.backend, "ms9");
	assert_int_equal(store_get_user(f->st, "new2@x", &u, NULL, NULL), 0);

	assert_int_equal(store_verify(f->st, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	replay_into_fresh(f, 4);

	/* Nothing to store: no transaction, no number taken. */
	store_put_users(f->st, &sf, items + 2, 3, FX_NOW, res);
	assert_int_equal(res[0], REJECT_WRONG_SITE);
	assert_int_equal(res[1], REJECT_MALFORMED);
	assert_int_equal(res[2], REJECT_MALFORMED);
	assert_int_equal(store_next_origin_seq(f->st, "fra-node", &next), 0);
	assert_int_equal(next, base + 5);
}

static void
test_put_users_signer(void **state)
{
	struct fx *f = *state;
	struct store_signer ss = { &stranger, "fra", "x-n1" };
	struct store_signer sw = { &ams, "fra", "x-n2" };	/* ams key */
	struct store_signer s2 = { &fra2, "fra", "fra-node" };
	struct store_user_item items[2] = {
		{ "a@x", "ms1", USTATE_ACTIVE, NULL },
		{ "b@x", "ms1", USTATE_ACTIVE, NULL },
	};
	enum accept_result res[2];
	uint8_t id[DKEY_ID_LEN];
	struct record_user u;
	size_t n;

	store_put_users(f->st, &ss, items, 2, FX_NOW, res);
	assert_int_equal(res[0], REJECT_UNKNOWN_KEY);
	assert_int_equal(res[1], REJECT_UNKNOWN_KEY);
	store_put_users(f->st, &sw, items, 2, FX_NOW, res);
	assert_int_equal(res[0], REJECT_WRONG_SITE);
	assert_int_equal(res[1], REJECT_WRONG_SITE);
	/* fra2: certified until FX_NOW, then revoked. */
	n = fx_cert(&root, &fra2, "fra", FX_NOW - 100, FX_NOW, env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW - 50),
	    ACCEPT_STORED);
	store_put_users(f->st, &s2, items, 2, FX_NOW - 10, res);
	assert_int_equal(res[0], ACCEPT_STORED);
	assert_int_equal(res[1], ACCEPT_STORED);
	store_put_users(f->st, &s2, items, 2, FX_NOW, res);
	assert_int_equal(res[0], REJECT_EXPIRED);
	dkey_id(fra2.pk, id);
	n = fx_revoke(&root, id, env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW), ACCEPT_STORED);
	store_put_users(f->st, &s2, items, 2, FX_NOW - 10, res);
	assert_int_equal(res[0], REJECT_REVOKED);
	assert_int_equal(res[1], REJECT_REVOKED);
	assert_int_equal(store_get_user(f->st, "a@x", &u, NULL, NULL), 1);
	assert_int_equal(u.seq, 1);
}

#define BIG_BATCH 1500

/* Long enough to be signed on all cores; replayed through the full rule. */
static void
test_put_users_parallel(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_user_item *items = calloc(BIG_BATCH, sizeof(*items));
	enum accept_result *res = calloc(BIG_BATCH, sizeof(*res));
	char (*names)[32] = calloc(BIG_BATCH, sizeof(*names));
	struct store_verify_report rep;
	struct record_user u;
	size_t i;

	for (i = 0; i < BIG_BATCH; i++) {
		/* Every tenth name repeats the one before it. */
		snprintf(names[i], sizeof(names[i]), "p%04zu@x",
		    i % 10 == 9 ? i - 1 : i);
		items[i].user = names[i];
		items[i].backend = i % 2 ? "ms1" : "ms2";
		items[i].state = USTATE_ACTIVE;
	}
	store_put_users(f->st, &sf, items, BIG_BATCH, FX_NOW, res);
	for (i = 0; i < BIG_BATCH; i++) {
		assert_int_equal(res[i], ACCEPT_STORED);
		assert_int_equal(store_get_user(f->st, names[i], &u, NULL,
		    NULL), 1);
		assert_int_equal(u.seq, i % 10 >= 8 ? 2 : 1);
		/* the last record of a user numbers it */
		assert_int_equal(u.origin_seq, i % 10 == 8 ? i + 2 : i + 1);
	}
	assert_int_equal(store_verify(f->st, FX_NOW, &rep, NULL, NULL), 0);
	assert_int_equal(rep.bad, 0);
	replay_into_fresh(f, BIG_BATCH - BIG_BATCH / 10);
	free(items);
	free(res);
	free(names);
}

/* After a hand-over the new owner's records, batched or not, carry the
 * TRANSFER. */
static void
test_put_users_after_transfer(void **state)
{
	struct fx *f = *state;
	struct store_signer sf = { &fra, "fra", "fra-node" };
	struct store_signer sa = { &ams, "ams", "ams-node" };
	struct store_user_item items[2] = {
		{ "mv@x", "ms5", USTATE_ACTIVE, NULL },
		{ "mv@x", "ms6", USTATE_ACTIVE, NULL },
	};
	enum accept_result res[2];
	struct record_user u;

	assert_int_equal(store_put_user(f->st, &sf, "mv@x", "ms1",
	    USTATE_ACTIVE, NULL, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_put_transfer(f->st, &sf, "mv@x", "ams", NULL,
	    FX_NOW), ACCEPT_STORED);
	store_put_users(f->st, &sa, items, 2, FX_NOW, res);
	assert_int_equal(res[0], ACCEPT_STORED);
	assert_int_equal(res[1], ACCEPT_STORED);
	assert_int_equal(store_get_user(f->st, "mv@x", &u, NULL, NULL), 1);
	assert_int_equal(u.epoch, 2);
	assert_int_equal(u.seq, 2);
	assert_true(u.transfer_len > 0);
	assert_string_equal(u.backend, "ms6");
	/* A node that never saw the TRANSFER takes the record. */
	replay_into_fresh(f, 1);
	/* fra owns it no more. */
	store_put_users(f->st, &sf, items, 1, FX_NOW, res);
	assert_int_equal(res[0], REJECT_WRONG_SITE);
}

struct trust_seen {
	int certs, revoked;
};

static int
cert_cb(const struct record *r, const uint8_t *e, size_t len, void *arg)
{
	assert_int_equal(r->kind, RECORD_CERT);
	((struct trust_seen *)arg)->certs++;
	return 0;
}

static int
revoked_cb(const struct record *r, const uint8_t *e, size_t len, void *arg)
{
	assert_int_equal(r->kind, RECORD_REVOKE);
	((struct trust_seen *)arg)->revoked++;
	return 0;
}

static void
test_trust_api(void **state)
{
	struct fx *f = *state;
	struct trust_seen seen = { 0, 0 };
	struct record_cert c;
	uint8_t id[DKEY_ID_LEN];
	uint64_t seq;
	size_t n;

	dkey_id(ams.pk, id);
	assert_int_equal(store_get_cert(f->st, id, &c), 1);
	assert_memory_equal(c.pk, ams.pk, DKEY_PK_LEN);
	assert_string_equal(c.site, "ams");
	dkey_id(stranger.pk, id);
	assert_int_equal(store_get_cert(f->st, id, &c), 0);
	n = fx_revoke(&root, id, env);
	assert_int_equal(store_accept(f->st, env, n, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_foreach_cert(f->st, cert_cb, &seen), 0);
	assert_int_equal(store_foreach_revoked(f->st, revoked_cb, &seen), 0);
	assert_int_equal(seen.certs, 2);
	assert_int_equal(seen.revoked, 1);
	assert_int_equal(store_next_origin_seq(f->st, "root", &seq), 0);
	assert_int_equal(seq, fx_root_seq + 1);
	assert_int_equal(store_next_origin_seq(f->st, "nobody", &seq), 0);
	assert_int_equal(seq, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_root),
		T(test_store_and_get),
		T(test_forged_signature),
		T(test_wrong_site),
		T(test_wrong_origin_and_transport_key),
		T(test_route_index),
		T(test_unknown_revoked_expired),
		T(test_trust_records),
		T(test_ordering),
		T(test_epoch_jump_without_transfer),
		T(test_epoch_jump_with_transfer),
		T(test_put_transfer_flow),
		T(test_conflict_claims_and_resolve),
		T(test_equivocation),
		T(test_put_user_origin_seq),
		T(test_purge_tombstones),
		T(test_map_growth),
		T(test_dup_threads_grow),
		T(test_readonly_beside_writer),
		T(test_schema_version),
		T(test_verify_and_foreach),
		T(test_foreach),
		T(test_batch),
		T(test_put_users_batch),
		T(test_put_users_signer),
		T(test_put_users_parallel),
		T(test_put_users_after_transfer),
		T(test_trust_api),
#undef T
	};

	if (dkey_init() < 0)
		return 1;
	dkey_generate(&root);
	dkey_generate(&fra);
	dkey_generate(&ams);
	dkey_generate(&fra2);
	dkey_generate(&stranger);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
