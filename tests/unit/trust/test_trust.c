/* The one trust rule (trust.h) as a table: every combination of what can
 * be true of a key (certified or not, root signature good or bad, role,
 * expired or not, revoked or not, certified for the site asked or not,
 * under the name asked or not) for every use, first against the predicate,
 * then through each caller: the accept rule (store_accept one by one and
 * in a batch, store_put_users, store_log_fill), store_verify,
 * dir_cert_check and dir_cert_find, the cross-site links' checks and the
 * gossip channel's trust callback (peers_cert_check). Each must answer as
 * the table below says, which is the table trust.h writes down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "chan.h"
#include "dir.h"
#include "dkey.h"
#include "mm_config.h"
#include "peers.h"
#include "record.h"
#include "store.h"
#include "trust.h"
#include "xsite.h"

#define T0 1700000000ULL
#define NOW (T0 + 100)		/* when the combinations are checked */
#define EXPIRES (T0 + 50)	/* an expiring certificate's end */
#define COMBOS 256
#define ROLES 4
#define NAME_LEN 16

static const enum cert_role roles[ROLES] = {
	ROLE_SITE, ROLE_NODE, ROLE_OPERATOR, ROLE_TRANSPORT
};

/* What is true of key i: bit 0 certified, 1 root signature good, 2-3
 * role, 4 expired, 5 revoked, 6 certified for the site asked ("fra"), 7
 * under the name asked ("n<i>"). */
struct combo {
	bool certified, root_ok, expired, revoked, site_ok, name_ok;
	enum cert_role role;
};

static struct combo
combo_of(int i)
{
	struct combo c;

	c.certified = (i & 1) != 0;
	c.root_ok = (i & 2) != 0;
	c.role = roles[(i >> 2) & 3];
	c.expired = (i & 16) != 0;
	c.revoked = (i & 32) != 0;
	c.site_ok = (i & 64) != 0;
	c.name_ok = (i & 128) != 0;
	return c;
}

/* ---- the table ------------------------------------------------------- */

#define B(role) (1u << (role))
#define SIGNERS (B(ROLE_SITE) | B(ROLE_NODE) | B(ROLE_OPERATOR))

static const struct {
	unsigned roles;
	bool revoked_counts, expiry_counts;
} table[TRUST_USES] = {
	[TRUST_USE_RECORD] = { SIGNERS, true, true },
	[TRUST_USE_KEPT] = { SIGNERS, true, false },
	[TRUST_USE_LOG] = { SIGNERS, false, false },
	[TRUST_USE_ROOT] = { 0, false, false },
	[TRUST_USE_CERT] = { SIGNERS | B(ROLE_TRANSPORT), true, true },
	[TRUST_USE_NODE] = { B(ROLE_SITE) | B(ROLE_NODE), true, true },
	[TRUST_USE_SESSION] = { B(ROLE_SITE) | B(ROLE_NODE) |
	    B(ROLE_TRANSPORT), true, true },
	[TRUST_USE_TRANSPORT] = { B(ROLE_TRANSPORT), true, true },
};

/* The verdict for a key that is not the root, in trust.h's order. */
static enum trust_verdict
expected(const struct combo *c, enum trust_use use, bool site_asked,
    bool name_asked)
{
	if (use == TRUST_USE_ROOT || !c->certified)
		return TRUST_UNKNOWN_KEY;
	if (!c->root_ok)
		return TRUST_BAD_ROOT_SIGNATURE;
	if (c->revoked && table[use].revoked_counts)
		return TRUST_REVOKED;
	if (c->expired && table[use].expiry_counts)
		return TRUST_EXPIRED;
	if ((table[use].roles & B(c->role)) == 0)
		return TRUST_WRONG_ROLE;
	if (site_asked && !c->site_ok)
		return TRUST_WRONG_SITE;
	if (name_asked && !c->name_ok)
		return TRUST_WRONG_NAME;
	return TRUST_OK;
}

/* What the accept rule answers for a verdict (store_int.h). */
static enum accept_result
accept_of(enum trust_verdict v)
{
	switch (v) {
	case TRUST_OK:
		return ACCEPT_STORED;
	case TRUST_UNKNOWN_KEY:
	case TRUST_BAD_ROOT_SIGNATURE:
		return REJECT_UNKNOWN_KEY;
	case TRUST_NO_ROOT:
		return REJECT_NO_ROOT;
	case TRUST_REVOKED:
		return REJECT_REVOKED;
	case TRUST_EXPIRED:
		return REJECT_EXPIRED;
	case TRUST_WRONG_ROLE:
	case TRUST_WRONG_SITE:
		return REJECT_WRONG_SITE;
	case TRUST_WRONG_NAME:
		return REJECT_WRONG_ORIGIN;
	default:
		return REJECT_STORE;
	}
}

/* store_verify's reason for a verdict on a stored record's signer. */
static const char *
verify_reason(enum trust_verdict v)
{
	switch (v) {
	case TRUST_OK:
		return NULL;
	case TRUST_REVOKED:
		return "signed by a revoked key";
	case TRUST_WRONG_ROLE:
		return "signed by a key whose role signs no records";
	case TRUST_WRONG_SITE:
		return "signer not certified for the site";
	case TRUST_WRONG_NAME:
		return "origin is not the signer's certified name";
	default:
		return "signed by an uncertified key";
	}
}

/* ---- keys, certificates, records ------------------------------------- */

/* root2 signs what the root did not; owner and heir are plain nodes of
 * fra and ams for the hand-overs. */
static struct dkey root, root2, owner, heir, keys[COMBOS];
static uint64_t root_seq;

/* certs[i]: the certificate combination i's key shows (or, not
 * certified, would have). */
static uint8_t (*certs)[RECORD_MAX];
static size_t cert_lens[COMBOS];

static void
name_of(int i, bool ok, char out[NAME_LEN])
{
	snprintf(out, NAME_LEN, "%s%d", ok ? "n" : "x", i);
}

/* The certificate combination i's key has: signed by the root or by
 * another key, with its role, site, name and expiry. */
static size_t
make_cert(int i, const struct combo *c, uint64_t issued, uint8_t *out)
{
	struct record_cert rc;
	const char *why = NULL;
	int n;

	memset(&rc, 0, sizeof(rc));
	memcpy(rc.pk, keys[i].pk, DKEY_PK_LEN);
	rc.role = c->role;
	snprintf(rc.site, sizeof(rc.site), "%s", c->site_ok ? "fra" : "ams");
	name_of(i, c->name_ok, rc.name);
	rc.issued = issued;
	rc.expires = c->expired ? EXPIRES : 0;
	snprintf(rc.origin, sizeof(rc.origin), "root");
	rc.origin_seq = ++root_seq;
	n = record_encode_cert(&rc, c->root_ok ? &root : &root2, out,
	    RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

/* A first certificate every key of the verify store starts with. */
static size_t
plain_cert(int i, uint8_t *out)
{
	struct combo c;

	memset(&c, 0, sizeof(c));
	c.certified = c.root_ok = c.site_ok = c.name_ok = true;
	c.role = ROLE_NODE;
	return make_cert(i, &c, T0 - 200, out);
}

static size_t
make_revoke(int i, uint8_t *out)
{
	struct record_revoke v;
	const char *why = NULL;
	int n;

	memset(&v, 0, sizeof(v));
	memcpy(v.key_id, keys[i].id, DKEY_ID_LEN);
	v.timestamp = T0;
	snprintf(v.reason, sizeof(v.reason), "test");
	snprintf(v.origin, sizeof(v.origin), "root");
	v.origin_seq = ++root_seq;
	n = record_encode_revoke(&v, &root, out, RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

/* A user record of site fra signed by key i, numbered under "n<i>". */
static size_t
make_user(int i, const char *prefix, uint64_t seq, uint64_t origin_seq,
    uint8_t *out)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "%s%d@x", prefix, i);
	snprintf(u.site, sizeof(u.site), "fra");
	snprintf(u.backend, sizeof(u.backend), "ms1");
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = seq;
	name_of(i, true, u.origin);
	u.origin_seq = origin_seq;
	u.timestamp = T0;
	n = record_encode_user(&u, &keys[i], out, RECORD_MAX, &why);
	assert_true(n > 0);
	return (size_t)n;
}

/* ---- stores ---------------------------------------------------------- */

struct fx {
	char dir[64];
	char path[96];		/* the store */
	char root_path[96];	/* the root's public key, for the config */
	struct mm_config *conf;
};

static int
group_setup(void **state)
{
	int i;

	(void)state;
	if (dkey_init() != 0)
		return -1;
	dkey_generate(&root);
	dkey_generate(&root2);
	dkey_generate(&owner);
	dkey_generate(&heir);
	for (i = 0; i < COMBOS; i++)
		dkey_generate(&keys[i]);
	certs = calloc(COMBOS, sizeof(*certs));
	return certs != NULL ? 0 : -1;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char text[512], *err = NULL;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/test_trust.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/db", f->dir);
	snprintf(f->root_path, sizeof(f->root_path), "%s/root.pub", f->dir);
	assert_int_equal(dkey_save_public(&root, f->root_path, &err), 0);
	snprintf(text, sizeof(text), "directory %s\nsite fra\n"
	    "node-name n0\nnode-key /nonexistent\nroot-key %s\n"
	    "listen imap 127.0.0.1:1\n", f->path, f->root_path);
	f->conf = mm_config_parse(text, strlen(text), "test.conf", &err);
	if (f->conf == NULL)
		fail_msg("config: %s", err);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char p[128];

	mm_config_free(f->conf);
	snprintf(p, sizeof(p), "%s/data.mdb", f->path);
	(void)remove(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", f->path);
	(void)remove(p);
	(void)rmdir(f->path);
	(void)remove(f->root_path);
	(void)rmdir(f->dir);
	free(f);
	return 0;
}

/* Writes (or with env NULL, deletes) key i's certificate straight into
 * the store's LMDB, past the accept rule: a certificate the root did not
 * sign gets there no other way. No store handle may be open. */
static void
raw_certs(const char *path, const bool *which, uint8_t (*envs)[RECORD_MAX],
    const size_t *lens)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k, v;
	int i, mrc;

	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 16);
	assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "certs", 0, &dbi), 0);
	for (i = 0; i < COMBOS; i++) {
		if (!which[i])
			continue;
		k.mv_size = DKEY_ID_LEN;
		k.mv_data = keys[i].id;
		if (envs == NULL) {
			mrc = mdb_del(txn, dbi, &k, NULL);
			assert_true(mrc == 0 || mrc == MDB_NOTFOUND);
			continue;
		}
		v.mv_size = lens[i];
		v.mv_data = envs[i];
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	}
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A store whose trust state is every combination's: the certificates
 * the root signed accepted (at T0, before any expires), the others
 * planted, the revocations accepted. */
static void
build_store(const char *path)
{
	static const uint8_t *envs[2 * COMBOS];
	static uint8_t revokes[COMBOS][RECORD_MAX];
	static size_t lens[2 * COMBOS];
	enum accept_result res[2 * COMBOS];
	bool plant[COMBOS];
	struct store *st;
	char *err = NULL;
	size_t n = 0, k;
	int i;

	st = store_open(path, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		cert_lens[i] = make_cert(i, &c, T0 - 100, certs[i]);
		plant[i] = c.certified && !c.root_ok;
		if (c.certified && c.root_ok) {
			envs[n] = certs[i];
			lens[n++] = cert_lens[i];
		}
	}
	for (i = 0; i < COMBOS; i++) {
		if (!combo_of(i).revoked)
			continue;
		lens[n] = make_revoke(i, revokes[i]);
		envs[n++] = revokes[i];
	}
	store_accept_batch(st, envs, lens, n, T0, res);
	for (k = 0; k < n; k++)
		assert_int_equal(res[k], ACCEPT_STORED);
	store_close(st);
	raw_certs(path, plant, certs, cert_lens);
}

/* ---- the predicate --------------------------------------------------- */

static void
facts_of(int i, const struct combo *c, struct record_cert *rc,
    struct trust_facts *f)
{
	struct record r;

	assert_int_equal(record_decode(certs[i], cert_lens[i], &r, NULL), 0);
	*rc = r.u.cert;
	memset(f, 0, sizeof(*f));
	f->root_pk = root.pk;
	f->cert = c->certified ? rc : NULL;
	f->root_signed = c->root_ok;
	f->revoked = c->revoked;
}

static void
test_table_decide(void **state)
{
	struct record_cert rc;
	struct trust_facts f;
	char name[NAME_LEN];
	int i, u;

	(void)state;
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		cert_lens[i] = make_cert(i, &c, T0 - 100, certs[i]);
		facts_of(i, &c, &rc, &f);
		name_of(i, true, name);
		for (u = 0; u < TRUST_USES; u++) {
			assert_int_equal(trust_decide(&f, keys[i].id,
			    keys[i].pk, u, "fra", name, NOW),
			    expected(&c, u, true, true));
			assert_int_equal(trust_decide(&f, keys[i].id, NULL, u,
			    NULL, NULL, NOW), expected(&c, u, false, false));
			/* Without a root key nothing is certified. */
			f.root_pk = NULL;
			assert_int_equal(trust_decide(&f, keys[i].id, NULL, u,
			    "fra", name, NOW), u == TRUST_USE_ROOT ||
			    c.certified ? TRUST_NO_ROOT : TRUST_UNKNOWN_KEY);
			f.root_pk = root.pk;
			/* The certificate of another public key. */
			assert_int_equal(trust_decide(&f, keys[i].id,
			    root2.pk, u, NULL, NULL, NOW),
			    u == TRUST_USE_ROOT || c.certified ?
			    TRUST_UNKNOWN_KEY : expected(&c, u, false, false));
		}
		/* A certificate that ends exactly now has ended; a second
		 * before, it had not. */
		if (c.expired) {
			assert_int_equal(trust_decide(&f, keys[i].id, NULL,
			    TRUST_USE_CERT, NULL, NULL, EXPIRES),
			    expected(&c, TRUST_USE_CERT, false, false));
			c.expired = false;
			assert_int_equal(trust_decide(&f, keys[i].id, NULL,
			    TRUST_USE_CERT, NULL, NULL, EXPIRES - 1),
			    expected(&c, TRUST_USE_CERT, false, false));
		}
	}
	/* The root key, only for ROOT. */
	memset(&f, 0, sizeof(f));
	f.root_pk = root.pk;
	for (u = 0; u < TRUST_USES; u++)
		assert_int_equal(trust_decide(&f, root.id, root.pk, u, NULL,
		    NULL, NOW), u == TRUST_USE_ROOT ? TRUST_OK :
		    TRUST_UNKNOWN_KEY);
	assert_string_equal(trust_verdict_name(TRUST_REVOKED), "revoked");
	assert_string_equal(trust_verdict_text(TRUST_BAD_ROOT_SIGNATURE),
	    "not signed by the root");
	assert_string_equal(trust_use_name(TRUST_USE_SESSION), "session");
}

/* ---- trust_check over a source that counts its questions ------------- */

struct mem_src {
	unsigned roots, certs, revoked;
};

static int
mem_root(void *arg, uint8_t pk_r[DKEY_PK_LEN])
{
	((struct mem_src *)arg)->roots++;
	memcpy(pk_r, root.pk, DKEY_PK_LEN);
	return 1;
}

static int
index_of(const uint8_t id[DKEY_ID_LEN])
{
	int i;

	for (i = 0; i < COMBOS; i++)
		if (memcmp(keys[i].id, id, DKEY_ID_LEN) == 0)
			return i;
	return -1;
}

static int
mem_cert(void *arg, const uint8_t id[DKEY_ID_LEN], uint8_t *buf,
    size_t *len_r)
{
	int i = index_of(id);

	((struct mem_src *)arg)->certs++;
	if (i < 0 || !combo_of(i).certified)
		return 0;
	memcpy(buf, certs[i], cert_lens[i]);
	*len_r = cert_lens[i];
	return 1;
}

static int
mem_revoked(void *arg, const uint8_t id[DKEY_ID_LEN])
{
	int i = index_of(id);

	((struct mem_src *)arg)->revoked++;
	return i >= 0 && combo_of(i).revoked;
}

static void
test_table_check(void **state)
{
	struct mem_src m = { 0, 0, 0 };
	struct trust_src src = { mem_root, mem_cert, mem_revoked, &m };
	struct trust_ctx t;
	struct record_cert rc;
	struct record r;
	char name[NAME_LEN];
	bool held;
	int i, u, round;

	(void)state;
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		cert_lens[i] = make_cert(i, &c, T0 - 100, certs[i]);
	}
	trust_init(&t, &src);
	/* Many records of few signers: the source is asked once a key. */
	for (round = 0; round < 3; round++)
		for (i = 0; i < COMBOS; i++) {
			struct combo c = combo_of(i);

			name_of(i, true, name);
			for (u = 0; u < TRUST_USES; u++)
				assert_int_equal(trust_check(&t, keys[i].id,
				    NULL, u, "fra", name, NOW, &rc),
				    expected(&c, u, true, true));
		}
	assert_int_equal(m.roots, 1);
	assert_int_equal(m.certs, COMBOS);
	assert_true(m.revoked <= COMBOS);

	/* A certificate shown: the one held for the key, if as new, says. */
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		assert_int_equal(record_decode(certs[i], cert_lens[i], &r,
		    NULL), 0);
		for (u = 0; u < TRUST_USES; u++) {
			if (u == TRUST_USE_ROOT)
				continue;
			/* Not certified: nothing held, the one shown says. */
			if (!c.certified) {
				c.certified = true;
				assert_int_equal(trust_check_shown(&t, &r, u,
				    "fra", NULL, NOW, &rc, &held),
				    expected(&c, u, true, false));
				assert_false(held);
				c.certified = false;
				continue;
			}
			assert_int_equal(trust_check_shown(&t, &r, u, "fra",
			    NULL, NOW, &rc, &held),
			    expected(&c, u, true, false));
			assert_true(held);
		}
	}
	trust_forget(&t);
	assert_int_equal(trust_check(&t, keys[0].id, NULL, TRUST_USE_CERT,
	    NULL, NULL, NOW, NULL), TRUST_UNKNOWN_KEY);
	assert_int_equal(m.roots, 2);
	trust_clear(&t);
}

/* A newer certificate held decides over an older one shown, and the
 * other way round. */
static void
test_shown_and_held(void **state)
{
	struct mem_src m = { 0, 0, 0 };
	struct trust_src src = { mem_root, mem_cert, mem_revoked, &m };
	struct trust_ctx t;
	struct record_cert rc;
	struct record r;
	uint8_t env[RECORD_MAX];
	struct combo c;
	bool held;
	int i;

	(void)state;
	/* Key i: held certificate of role node, site fra, name n<i>. */
	i = 1 | 2 | (1 << 2) | 64 | 128;
	c = combo_of(i);
	assert_int_equal(c.role, ROLE_NODE);
	cert_lens[i] = make_cert(i, &c, T0 - 100, certs[i]);
	trust_init(&t, &src);
	/* Shown: an older one as transport, then a newer one as operator. */
	c.role = ROLE_TRANSPORT;
	assert_int_equal(record_decode(env, make_cert(i, &c, T0 - 300, env),
	    &r, NULL), 0);
	assert_int_equal(trust_check_shown(&t, &r, TRUST_USE_NODE, NULL, NULL,
	    NOW, &rc, &held), TRUST_OK);
	assert_true(held);
	assert_int_equal(rc.role, ROLE_NODE);
	c.role = ROLE_OPERATOR;
	assert_int_equal(record_decode(env, make_cert(i, &c, T0, env), &r,
	    NULL), 0);
	assert_int_equal(trust_check_shown(&t, &r, TRUST_USE_NODE, NULL, NULL,
	    NOW, &rc, &held), TRUST_WRONG_ROLE);
	assert_false(held);
	assert_int_equal(rc.role, ROLE_OPERATOR);
	/* A newer one the root did not sign certifies nothing. */
	c.role = ROLE_NODE;
	c.root_ok = false;
	assert_int_equal(record_decode(env, make_cert(i, &c, T0, env), &r,
	    NULL), 0);
	assert_int_equal(trust_check_shown(&t, &r, TRUST_USE_NODE, NULL, NULL,
	    NOW, NULL, NULL), TRUST_BAD_ROOT_SIGNATURE);
	trust_clear(&t);
}

/* ---- the accept rule ------------------------------------------------- */

static void
test_table_store_accept(void **state)
{
	struct fx *f = *state;
	static uint8_t benvs[COMBOS][RECORD_MAX];
	const uint8_t *bptrs[COMBOS];
	size_t blens[COMBOS];
	enum accept_result res[COMBOS], want;
	uint8_t env[RECORD_MAX];
	char name[NAME_LEN], user[32];
	struct store *st;
	char *err = NULL;
	size_t n;
	int i;

	build_store(f->path);
	st = store_open(f->path, STORE_WRITE, &err);
	assert_non_null(st);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);
		struct store_signer sg = { &keys[i], "fra", name };
		struct store_user_item item = { user, "ms1", USTATE_ACTIVE,
			NULL };

		want = accept_of(expected(&c, TRUST_USE_RECORD, true, true));
		/* One by one, as a local write or an import would. */
		n = make_user(i, "u", 1, 1, env);
		assert_int_equal(store_accept(st, env, n, NOW), want);
		/* The writer's own signer, checked once per batch. */
		name_of(i, true, name);
		snprintf(user, sizeof(user), "p%d@x", i);
		store_put_users(st, &sg, &item, 1, NOW, res);
		assert_int_equal(res[0], want);
		/* A superseded record kept in its origin's log: revocation
		 * and expiry do not count, the name does (not the site). */
		n = make_user(i, "l", 1, 100, env);
		assert_int_equal(store_log_fill(st, env, n, NOW),
		    expected(&c, TRUST_USE_LOG, false, true) == TRUST_OK ?
		    1 : -1);
		/* The batch's copy, all at once below. */
		blens[i] = make_user(i, "b", 1, 50, benvs[i]);
		bptrs[i] = benvs[i];
	}
	/* In one batch: signatures checked ahead on all cores, each signer
	 * looked up once. */
	store_accept_batch(st, bptrs, blens, COMBOS, NOW, res);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		assert_int_equal(res[i], accept_of(expected(&c,
		    TRUST_USE_RECORD, true, true)));
	}
	store_close(st);
}

/* A plain node's certificate, by the root. */
static void
accept_node(struct store *st, const struct dkey *k, const char *site,
    const char *name)
{
	struct record_cert rc;
	uint8_t env[RECORD_MAX];
	const char *why = NULL;
	int n;

	memset(&rc, 0, sizeof(rc));
	memcpy(rc.pk, k->pk, DKEY_PK_LEN);
	rc.role = ROLE_NODE;
	snprintf(rc.site, sizeof(rc.site), "%s", site);
	snprintf(rc.name, sizeof(rc.name), "%s", name);
	rc.issued = T0 - 100;
	snprintf(rc.origin, sizeof(rc.origin), "root");
	rc.origin_seq = ++root_seq;
	n = record_encode_cert(&rc, &root, env, sizeof(env), &why);
	assert_true(n > 0);
	assert_int_equal(store_accept(st, env, (size_t)n, T0), ACCEPT_STORED);
}

/* A hand-over a later record carries: signed by the owner it hands over
 * from (fra), whose key may have expired since (TRUST_USE_KEPT). */
static void
test_table_carried_transfer(void **state)
{
	struct fx *f = *state;
	struct record_user u;
	struct store *st;
	uint8_t env[RECORD_MAX], tenv[RECORD_MAX];
	const char *why = NULL;
	char *err = NULL;
	int i, n, tn;

	build_store(f->path);
	st = store_open(f->path, STORE_WRITE, &err);
	assert_non_null(st);
	accept_node(st, &owner, "fra", "fra1");
	accept_node(st, &heir, "ams", "ams1");
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);
		enum trust_verdict v = expected(&c, TRUST_USE_KEPT, true,
		    false);

		/* The user, owned by fra. */
		memset(&u, 0, sizeof(u));
		snprintf(u.user, sizeof(u.user), "t%d@x", i);
		snprintf(u.site, sizeof(u.site), "fra");
		snprintf(u.backend, sizeof(u.backend), "ms1");
		u.state = USTATE_ACTIVE;
		u.epoch = 1;
		u.seq = 1;
		snprintf(u.origin, sizeof(u.origin), "fra1");
		u.origin_seq = 1 + (uint64_t)i;
		u.timestamp = T0;
		n = record_encode_user(&u, &owner, env, sizeof(env), &why);
		assert_true(n > 0);
		assert_int_equal(store_accept(st, env, (size_t)n, T0),
		    ACCEPT_STORED);
		/* Key i hands it to ams; ams's first record carries that. */
		u.state = USTATE_TRANSFER;
		u.epoch = 2;
		u.seq = 0;
		snprintf(u.site, sizeof(u.site), "ams");
		u.backend[0] = '\0';
		name_of(i, true, u.origin);
		u.origin_seq = 2000;
		tn = record_encode_user(&u, &keys[i], tenv, sizeof(tenv), &why);
		assert_true(tn > 0);
		u.state = USTATE_ACTIVE;
		u.seq = 1;
		snprintf(u.backend, sizeof(u.backend), "ms1");
		snprintf(u.origin, sizeof(u.origin), "ams1");
		u.origin_seq = 1 + (uint64_t)i;
		u.transfer = tenv;
		u.transfer_len = (size_t)tn;
		n = record_encode_user(&u, &heir, env, sizeof(env), &why);
		assert_true(n > 0);
		assert_int_equal(store_accept(st, env, (size_t)n, NOW),
		    v == TRUST_OK ? ACCEPT_STORED : REJECT_NO_TRANSFER);
	}
	store_close(st);
}

/* store_verify: records taken while their signer was a plain node of
 * fra, then each key's certificate changed to its combination's. */
struct verify_seen {
	char reason[COMBOS][64];	/* per user */
	size_t certs;			/* certificates reported */
};

static void
bad_cb(const char *what, const char *reason, void *arg)
{
	struct verify_seen *vs = arg;
	int i;

	if (sscanf(what, "user u%d@x", &i) == 1) {
		assert_true(i >= 0 && i < COMBOS);
		assert_int_equal(vs->reason[i][0], '\0');
		snprintf(vs->reason[i], sizeof(vs->reason[i]), "%s", reason);
		return;
	}
	assert_non_null(strstr(what, "cert "));
	assert_string_equal(reason, "not signed by the root key");
	vs->certs++;
}

static void
test_table_verify(void **state)
{
	struct fx *f = *state;
	static uint8_t first[COMBOS][RECORD_MAX], revokes[COMBOS][RECORD_MAX];
	static const uint8_t *envs[3 * COMBOS];
	static size_t lens[3 * COMBOS];
	static struct verify_seen got;
	enum accept_result res[3 * COMBOS];
	struct store_verify_report rep;
	bool plant[COMBOS], unplant[COMBOS];
	uint8_t env[RECORD_MAX];
	struct store *st;
	char *err = NULL;
	size_t n = 0, k, nbad = 0, planted = 0;
	int i;

	st = store_open(f->path, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	for (i = 0; i < COMBOS; i++) {
		lens[n] = plain_cert(i, first[i]);
		envs[n++] = first[i];
	}
	store_accept_batch(st, envs, lens, n, T0 - 150, res);
	for (k = 0; k < n; k++)
		assert_int_equal(res[k], ACCEPT_STORED);
	for (i = 0; i < COMBOS; i++) {
		n = make_user(i, "u", 1, 1, env);
		assert_int_equal(store_accept(st, env, n, T0 - 150),
		    ACCEPT_STORED);
	}
	/* The renewals (issued later) the root signed, the revocations. */
	n = 0;
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		cert_lens[i] = make_cert(i, &c, T0 - 100, certs[i]);
		plant[i] = c.certified && !c.root_ok;
		unplant[i] = !c.certified;
		if (c.certified && c.root_ok) {
			envs[n] = certs[i];
			lens[n++] = cert_lens[i];
		}
		if (c.revoked) {
			lens[n] = make_revoke(i, revokes[i]);
			envs[n++] = revokes[i];
		}
	}
	store_accept_batch(st, envs, lens, n, T0, res);
	for (k = 0; k < n; k++)
		assert_int_equal(res[k], ACCEPT_STORED);
	store_close(st);
	raw_certs(f->path, plant, certs, cert_lens);
	raw_certs(f->path, unplant, NULL, NULL);

	memset(&got, 0, sizeof(got));
	st = store_open(f->path, STORE_READONLY, &err);
	assert_non_null(st);
	assert_int_equal(store_verify(st, NOW, &rep, bad_cb, &got), 0);
	store_close(st);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);
		const char *want = verify_reason(expected(&c, TRUST_USE_KEPT,
		    true, true));

		planted += plant[i];
		if (want == NULL) {
			assert_string_equal(got.reason[i], "");
			continue;
		}
		nbad++;
		assert_string_equal(got.reason[i], want);
	}
	assert_int_equal(got.certs, planted);
	assert_int_equal(rep.bad, nbad + planted);
}

/* ---- the inter-node channel ------------------------------------------ */

static const enum trust_use channel_uses[] = {
	TRUST_USE_RECORD, TRUST_USE_KEPT, TRUST_USE_LOG, TRUST_USE_CERT,
	TRUST_USE_NODE, TRUST_USE_SESSION, TRUST_USE_TRANSPORT,
};

/* What a peer shows: its certificate, or (not certified) a record that
 * is none. */
static size_t
shown(int i, uint8_t *out)
{
	if (combo_of(i).certified) {
		memcpy(out, certs[i], cert_lens[i]);
		return cert_lens[i];
	}
	return make_user(i, "s", 1, 1, out);
}

static void
test_table_dir(void **state)
{
	struct fx *f = *state;
	struct record_cert rc;
	struct dir *d;
	uint8_t env[RECORD_MAX], *found;
	const char *why;
	char *err = NULL;
	size_t n, flen, u;
	int i;

	build_store(f->path);
	d = dir_open(f->conf, &err);
	assert_non_null(d);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		n = shown(i, env);
		for (u = 0; u < sizeof(channel_uses) /
		    sizeof(channel_uses[0]); u++) {
			enum trust_use use = channel_uses[u];
			enum trust_verdict v = expected(&c, use, true, false);

			why = NULL;
			assert_int_equal(dir_cert_check(d, env, n, use, "fra",
			    NOW, &rc, &why), v);
			if (v == TRUST_BAD_ROOT_SIGNATURE)
				assert_string_equal(why,
				    "not signed by the root");
			else if (v == TRUST_REVOKED)
				assert_string_equal(why, "key revoked");
			else if (v == TRUST_EXPIRED)
				assert_string_equal(why,
				    "certificate expired");
			assert_int_equal(dir_cert_check(d, env, n, use, NULL,
			    NOW, &rc, &why), expected(&c, use, false, false));
			found = NULL;
			assert_int_equal(dir_cert_find(d, keys[i].id, use,
			    "fra", NOW, &found, &flen, &why), v);
			if (v == TRUST_OK) {
				assert_int_equal(flen, cert_lens[i]);
				assert_memory_equal(found, certs[i], flen);
			}
			free(found);
		}
	}
	dir_free(d);
}

static void
test_table_xsite(void **state)
{
	struct fx *f = *state;
	struct record_cert rc;
	struct xsite *xs;
	struct dir *d;
	uint8_t env[RECORD_MAX];
	enum trust_verdict v;
	const char *why;
	char *err = NULL;
	size_t n;
	int i;

	build_store(f->path);
	d = dir_open(f->conf, &err);
	assert_non_null(d);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		n = shown(i, env);
		xs = xsite_new(NULL, f->conf, d, &keys[i]);
		/* A peer of a link this side dialled to site fra. */
		v = expected(&c, TRUST_USE_SESSION, true, false);
		why = NULL;
		assert_int_equal(xsite_peer_check(xs, env, n, "fra", NOW, &rc,
		    &why), v == TRUST_OK ? 0 : -1);
		if (v == TRUST_WRONG_ROLE)
			assert_string_equal(why,
			    "certificate role may not carry sessions");
		else if (v == TRUST_WRONG_SITE)
			assert_string_equal(why,
			    "peer is not of the site asked for");
		else if (v == TRUST_REVOKED)
			assert_string_equal(why, "key revoked");
		/* A link accepted from any site. */
		v = expected(&c, TRUST_USE_SESSION, false, false);
		assert_int_equal(xsite_peer_check(xs, env, n, NULL, NOW, &rc,
		    &why), v == TRUST_OK ? 0 : -1);
		/* Key i as this worker's own transport key for site fra. */
		v = expected(&c, TRUST_USE_TRANSPORT, true, false);
		why = NULL;
		assert_int_equal(xsite_identity(xs, NOW, &why),
		    v == TRUST_OK ? 0 : -1);
		if (v == TRUST_WRONG_ROLE || v == TRUST_WRONG_SITE)
			assert_string_equal(why, "transport key not certified "
			    "as transport for this site");
		xsite_free(xs);
	}
	dir_free(d);
}

static void
test_table_peers(void **state)
{
	struct fx *f = *state;
	struct chan_peer peer;
	struct store *st;
	uint8_t env[RECORD_MAX];
	enum trust_verdict v;
	char *err = NULL, name[NAME_LEN];
	bool learn;
	size_t n;
	int i;

	build_store(f->path);
	st = store_open(f->path, STORE_READONLY, &err);
	assert_non_null(st);
	for (i = 0; i < COMBOS; i++) {
		struct combo c = combo_of(i);

		n = shown(i, env);
		memset(&peer, 0, sizeof(peer));
		v = expected(&c, TRUST_USE_NODE, false, false);
		assert_int_equal(peers_cert_check(st, env, n, NOW, &peer,
		    &learn), v);
		if (v != TRUST_OK)
			continue;
		/* The store holds it: nothing to learn. */
		assert_false(learn);
		name_of(i, c.name_ok, name);
		assert_string_equal(peer.name, name);
		assert_string_equal(peer.site, c.site_ok ? "fra" : "ams");
		assert_int_equal(peer.role, c.role);
	}
	/* A valid certificate the store lacks: taken, and to be learnt. */
	{
		struct dkey k;
		struct record_cert rc;
		const char *why = NULL;
		int len;

		dkey_generate(&k);
		memset(&rc, 0, sizeof(rc));
		memcpy(rc.pk, k.pk, DKEY_PK_LEN);
		rc.role = ROLE_NODE;
		snprintf(rc.site, sizeof(rc.site), "ams");
		snprintf(rc.name, sizeof(rc.name), "ams9");
		rc.issued = T0;
		snprintf(rc.origin, sizeof(rc.origin), "root");
		rc.origin_seq = ++root_seq;
		len = record_encode_cert(&rc, &root, env, sizeof(env), &why);
		assert_true(len > 0);
		assert_int_equal(peers_cert_check(st, env, (size_t)len, NOW,
		    &peer, &learn), TRUST_OK);
		assert_true(learn);
		assert_string_equal(peer.name, "ams9");
		dkey_clear(&k);
	}
	store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_decide),
		cmocka_unit_test(test_table_check),
		cmocka_unit_test(test_shown_and_held),
		cmocka_unit_test_setup_teardown(test_table_store_accept, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_table_carried_transfer,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_verify, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_table_dir, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_table_xsite, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_table_peers, setup,
		    teardown),
	};
	int rc;

	rc = cmocka_run_group_tests(tests, group_setup, NULL);
	free(certs);
	return rc;
}
