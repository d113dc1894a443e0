/* The accept rule: every record, from gossip, an import or a local
 * write, is checked here against the trust rule (trust.h) and the user's
 * high-water mark before it is stored (store.h says the rule). */
#include "store.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_parallel.h"
#include "mm_util.h"
#include "store_int.h"
#include "trust.h"

#define EVIDENCE_HASH_LEN 32
/* Batches at least this long verify their signatures on all cores. */
#define PARALLEL_VERIFY_MIN 64

static const char *const accept_names[STORE_ACCEPT_RESULTS] = {
	[ACCEPT_STORED] = "stored",
	[ACCEPT_DUPLICATE] = "duplicate",
	[ACCEPT_EQUIVOCATION] = "equivocation",
	[REJECT_MALFORMED] = "malformed",
	[REJECT_BAD_SIGNATURE] = "bad-signature",
	[REJECT_UNKNOWN_KEY] = "unknown-key",
	[REJECT_REVOKED] = "revoked",
	[REJECT_EXPIRED] = "expired",
	[REJECT_WRONG_SITE] = "wrong-site",
	[REJECT_STALE] = "stale",
	[REJECT_NO_TRANSFER] = "no-transfer",
	[REJECT_NO_ROOT] = "no-root",
	[REJECT_WRONG_ORIGIN] = "wrong-origin",
	[REJECT_STORE] = "store-error",
};

const char *
store_accept_name(enum accept_result r)
{
	if ((unsigned)r < STORE_ACCEPT_RESULTS)
		return accept_names[r];
	return "invalid";
}

static int
cmp_order(uint64_t e1, uint64_t s1, uint64_t e2, uint64_t s2)
{
	if (e1 != e2)
		return e1 < e2 ? -1 : 1;
	if (s1 != s2)
		return s1 < s2 ? -1 : 1;
	return 0;
}

/* ---- the trust rule over the write transaction ------------------------ */

static int
txn_root(void *arg, uint8_t pk_r[DKEY_PK_LEN])
{
	struct wctx *ctx = arg;
	int g = get_root(ctx->txn, ctx->st, pk_r);

	if (g < 0)
		ctx->mdb_rc = MDB_CORRUPTED;
	return g;
}

static int
txn_cert(void *arg, const uint8_t id[DKEY_ID_LEN], uint8_t *buf,
    size_t *len_r)
{
	struct wctx *ctx = arg;
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int g = tx_get(ctx, DBI_CERTS, &key, &val);

	if (g < 0)
		return -1;
	if (g > 0 || val.mv_size > RECORD_MAX)
		return 0;	/* an oversized entry certifies nothing */
	memcpy(buf, val.mv_data, val.mv_size);
	*len_r = val.mv_size;
	return 1;
}

static int
txn_revoked(void *arg, const uint8_t id[DKEY_ID_LEN])
{
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int g = tx_get(arg, DBI_REVOKED, &key, &val);

	return g < 0 ? -1 : g == 0;
}

void
store_trust_txn(struct wctx *ctx, struct trust_ctx *t)
{
	struct trust_src src = { txn_root, txn_cert, txn_revoked, ctx };

	trust_init(t, &src);
}

enum accept_result
store_trust_result(enum trust_verdict v)
{
	switch (v) {
	case TRUST_OK:
		return ACCEPT_STORED;
	case TRUST_NO_ROOT:
		return REJECT_NO_ROOT;
	case TRUST_UNKNOWN_KEY:
	case TRUST_BAD_ROOT_SIGNATURE:
		return REJECT_UNKNOWN_KEY;
	case TRUST_REVOKED:
		return REJECT_REVOKED;
	case TRUST_EXPIRED:
		return REJECT_EXPIRED;
	case TRUST_WRONG_ROLE:
	case TRUST_WRONG_SITE:
		return REJECT_WRONG_SITE;
	case TRUST_WRONG_NAME:
		return REJECT_WRONG_ORIGIN;
	case TRUST_STORE_ERROR:
		break;
	}
	return REJECT_STORE;
}

/* ---- the accept rule ------------------------------------------------- */

static int
check_sig(const struct record *r, const uint8_t pk[DKEY_PK_LEN],
    const struct vjob *pre)
{
	if (pre != NULL && pre->have_pk &&
	    memcmp(pre->pk, pk, DKEY_PK_LEN) == 0)
		return pre->ok ? 0 : -1;
	return record_verify(r, pk);
}

/* The signer of user record r by the trust rule: whether its key may sign
 * at all, then r's signature (a forgery is refused as one, whatever it
 * claims), then for what: the same rule with site and name, answered from
 * what t holds already. *s_r is the signer's certificate. */
static enum accept_result
check_signer(struct wctx *ctx, struct trust_ctx *t, const struct record *r,
    enum trust_use use, const char *site, const char *name,
    const struct vjob *pre, struct record_cert *s_r)
{
	enum trust_verdict v;

	v = trust_check(t, r->key_id, NULL, use, NULL, NULL, ctx->now, s_r);
	if (v != TRUST_OK)
		return store_trust_result(v);
	if (check_sig(r, s_r->pk, pre) < 0)
		return REJECT_BAD_SIGNATURE;
	if (site != NULL || name != NULL)
		v = trust_check(t, r->key_id, NULL, use, site, name, ctx->now,
		    NULL);
	return store_trust_result(v);
}

/* Makes r the current record of its user (with its tree entry). */
static enum accept_result
put_current(struct wctx *ctx, const struct record *r, const uint8_t *env,
    size_t len)
{
	const struct record_user *u = &r->u.user;
	uint8_t h[HWM_FIXED + RECORD_SITE_MAX];
	size_t sitelen = strlen(u->site);
	MDB_val key = val_str(u->user), val;

	if (store_current_put(ctx, u->user, env, len) < 0 ||
	    store_route_put(ctx, u->user, u->state, u->site, u->backend) < 0)
		return REJECT_STORE;
	be64_put(h, u->epoch);
	be64_put(h + 8, u->seq);
	body_hash(r, h + 16);
	memcpy(h + HWM_FIXED, u->site, sitelen);
	val = val_bin(h, HWM_FIXED + sitelen);
	if (tx_put(ctx, DBI_HWM, &key, &val, 0) < 0)
		return REJECT_STORE;
	return ACCEPT_STORED;
}

/* The old owner's hand-over carried by r, which raises the epoch. */
static enum accept_result
check_transfer(struct wctx *ctx, struct trust_ctx *tc, const struct record *r,
    const char *owner)
{
	const struct record_user *u = &r->u.user, *tu;
	struct record t;
	struct record_cert s;
	enum accept_result res;

	if (u->transfer_len == 0 ||
	    record_decode(u->transfer, u->transfer_len, &t, NULL) < 0)
		return REJECT_NO_TRANSFER;
	tu = &t.u.user;
	if (t.kind != RECORD_USER || tu->state != USTATE_TRANSFER ||
	    strcmp(tu->user, u->user) != 0 || tu->epoch != u->epoch ||
	    tu->seq >= u->seq || strcmp(tu->site, u->site) != 0)
		return REJECT_NO_TRANSFER;
	/* Signed in the past, perhaps long ago, by the owner: expiry does not
	 * count, a revocation does (TRUST_USE_KEPT). */
	res = check_signer(ctx, tc, &t, TRUST_USE_KEPT, owner, NULL, NULL, &s);
	if (res == REJECT_STORE)
		return res;
	if (res != ACCEPT_STORED)
		return REJECT_NO_TRANSFER;
	return ACCEPT_STORED;
}

/* Same (epoch, seq) as the current record, other body. Both are kept; the
 * record whose envelope hash is lower is current on every node. */
static enum accept_result
equivocation(struct wctx *ctx, struct trust_ctx *t, const struct record *r,
    const uint8_t *env, size_t len, const struct record_cert *s,
    const MDB_val *cur)
{
	uint8_t hr[EVIDENCE_HASH_LEN], hc[EVIDENCE_HASH_LEN];
	uint8_t old[RECORD_MAX];
	size_t old_len = cur->mv_size;
	struct record c;
	struct record_cert sc;
	MDB_val key, val;
	int g, wins;

	/* A copy: the map page under cur may change with the writes below. */
	if (old_len > sizeof(old))
		return REJECT_STALE;
	memcpy(old, cur->mv_data, old_len);
	if (record_decode(old, old_len, &c, NULL) < 0)
		return REJECT_STALE;
	/* Only whoever signed the current one can equivocate against it. */
	g = trust_cert(t, c.key_id, &sc);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0 || strcmp(sc.site, s->site) != 0)
		return REJECT_WRONG_SITE;

	crypto_generichash(hr, sizeof(hr), env, len, NULL, 0);
	crypto_generichash(hc, sizeof(hc), old, old_len, NULL, 0);
	wins = memcmp(hr, hc, sizeof(hr)) < 0;
	key = val_bin(hr, sizeof(hr));
	val = val_bin(env, len);
	if (tx_put(ctx, DBI_EVIDENCE, &key, &val, 0) < 0)
		return REJECT_STORE;
	key = val_bin(hc, sizeof(hc));
	val = val_bin(old, old_len);
	if (tx_put(ctx, DBI_EVIDENCE, &key, &val, 0) < 0)
		return REJECT_STORE;
	if (wins && put_current(ctx, r, env, len) != ACCEPT_STORED)
		return REJECT_STORE;
	if (store_log_add(ctx, r->u.user.origin, r->u.user.origin_seq, env,
	    len, wins) != ACCEPT_STORED)
		return REJECT_STORE;
	return ACCEPT_EQUIVOCATION;
}

/* r, signed by a site entitled to sign it, claims a user another site
 * owns here: refused with res, kept as evidence (store_evidence.c). */
static enum accept_result
claim(struct wctx *ctx, const uint8_t *env, size_t len,
    enum accept_result res)
{
	return store_keep_claim(ctx, env, len) < 0 ? REJECT_STORE : res;
}

static enum accept_result
accept_user(struct wctx *ctx, struct trust_ctx *t, const struct record *r,
    const uint8_t *env, size_t len, const struct vjob *pre)
{
	const struct record_user *u = &r->u.user;
	struct record_cert s;
	struct hwm h;
	enum accept_result res;
	MDB_val key = val_str(u->user), val, cur;
	int g, have_hwm = 0, c;

	/* Signed for the record's own site (a hand-over: by the owner it
	 * hands over from, checked below once the high-water mark names
	 * it), numbered under the signer's own name: otherwise any certified
	 * node could fill another origin's log. */
	res = check_signer(ctx, t, r, TRUST_USE_RECORD,
	    u->state == USTATE_TRANSFER ? NULL : u->site, u->origin, pre, &s);
	if (res != ACCEPT_STORED)
		return res;
	g = tx_get(ctx, DBI_HWM, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0) {
		if (hwm_parse(&val, &h) < 0) {
			log_warnx("- dir store damaged-hwm path=%s",
			    ctx->st->path);
			ctx->mdb_rc = MDB_CORRUPTED;
			return REJECT_STORE;
		}
		have_hwm = 1;
	}
	/* Within an epoch one site owns the user: a record of another site
	 * there is its claim to the user (created at both while apart), kept
	 * for mmctl check to report, whatever its place in the order. */
	if (have_hwm && u->state != USTATE_TRANSFER && u->epoch == h.epoch &&
	    strcmp(u->site, h.site) != 0)
		return claim(ctx, env, len, REJECT_WRONG_SITE);
	if (have_hwm) {
		c = cmp_order(u->epoch, u->seq, h.epoch, h.seq);
		if (c < 0)
			return REJECT_STALE;
		if (c == 0) {
			uint8_t bh[HWM_HASH_LEN];

			body_hash(r, bh);
			if (memcmp(bh, h.hash, HWM_HASH_LEN) == 0)
				return ACCEPT_DUPLICATE;
			g = tx_get(ctx, DBI_USERS, &key, &cur);
			if (g < 0)
				return REJECT_STORE;
			/* A purged tombstone leaves nothing to compare. */
			if (g > 0)
				return REJECT_STALE;
			return equivocation(ctx, t, r, env, len, &s, &cur);
		}
	}

	if (u->state == USTATE_TRANSFER) {
		/* Signed by the owner it hands over from (the rule again,
		 * from what t holds), and epochs grow with every change of
		 * owner. A user never seen here has no known owner: like a
		 * first record, it is taken as it is. */
		if (have_hwm) {
			res = store_trust_result(trust_check(t, r->key_id,
			    NULL, TRUST_USE_RECORD, h.site, u->origin, ctx->now,
			    NULL));
			/* A hand-over above the epoch by a site that does not
			 * own the user here: a claim, or a release to the
			 * owner here. */
			if (res == REJECT_WRONG_SITE && u->epoch > h.epoch)
				return claim(ctx, env, len, res);
			if (res != ACCEPT_STORED)
				return res;
		}
		if (have_hwm && u->epoch <= h.epoch)
			return REJECT_NO_TRANSFER;
	} else {
		if (have_hwm && u->epoch > h.epoch) {
			/* Another owner needs the owner's hand-over. The owner
			 * itself raises its epoch only to take the user back
			 * from a site that released it (store_resolve): the
			 * record carries that release. */
			res = check_transfer(ctx, t, r,
			    strcmp(u->site, h.site) == 0 ? NULL : h.site);
			if (res == REJECT_NO_TRANSFER &&
			    strcmp(u->site, h.site) != 0)
				return claim(ctx, env, len, res);
			if (res != ACCEPT_STORED)
				return res;
		} else if (have_hwm && strcmp(u->site, h.site) != 0) {
			return REJECT_WRONG_SITE;
		}
	}
	if (put_current(ctx, r, env, len) != ACCEPT_STORED)
		return REJECT_STORE;
	return store_log_add(ctx, u->origin, u->origin_seq, env, len, 1);
}

/* CERT and REVOKE: signed by the root key. */
static enum accept_result
accept_trust(struct wctx *ctx, struct trust_ctx *t, const struct record *r,
    const uint8_t *env, size_t len, const struct vjob *pre)
{
	uint8_t root[DKEY_PK_LEN], id[DKEY_ID_LEN];
	struct trust_facts f;
	enum trust_verdict v;
	const char *origin;
	uint64_t origin_seq;
	MDB_val key, val;
	int g, dbi;

	v = trust_check(t, r->key_id, NULL, TRUST_USE_ROOT, NULL, NULL,
	    ctx->now, NULL);
	if (v != TRUST_OK)
		return store_trust_result(v);
	if (trust_root(t, root) != 1)
		return REJECT_STORE;
	if (check_sig(r, root, pre) < 0)
		return REJECT_BAD_SIGNATURE;

	if (r->kind == RECORD_CERT) {
		const struct record_cert *c = &r->u.cert;

		/* The certificate on its own, its root signature checked
		 * just now: its key not revoked, itself not expired. */
		dkey_id(c->pk, id);
		if ((g = trust_revoked(t, id)) < 0)
			return REJECT_STORE;
		memset(&f, 0, sizeof(f));
		f.root_pk = root;
		f.cert = c;
		f.root_signed = true;
		f.revoked = g == 1;
		v = trust_decide(&f, id, NULL, TRUST_USE_CERT, NULL, NULL,
		    ctx->now);
		if (v != TRUST_OK)
			return store_trust_result(v);
		key = val_bin(id, DKEY_ID_LEN);
		dbi = DBI_CERTS;
		origin = c->origin;
		origin_seq = c->origin_seq;
	} else {
		memcpy(id, r->u.revoke.key_id, DKEY_ID_LEN);
		key = val_bin(id, DKEY_ID_LEN);
		dbi = DBI_REVOKED;
		origin = r->u.revoke.origin;
		origin_seq = r->u.revoke.origin_seq;
	}
	g = tx_get(ctx, dbi, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0) {
		struct record old;
		int ok = record_decode(val.mv_data, val.mv_size, &old,
		    NULL) == 0 && old.kind == r->kind;

		if (ok && old.body_len == r->body_len &&
		    memcmp(old.body, r->body, r->body_len) == 0)
			return ACCEPT_DUPLICATE;
		/* A renewed certificate replaces an older one; the first
		 * revocation of a key stands. */
		if (ok && (r->kind == RECORD_REVOKE ||
		    old.u.cert.issued >= r->u.cert.issued))
			return REJECT_STALE;
	}
	val = val_bin(env, len);
	if (tx_put(ctx, dbi, &key, &val, 0) < 0)
		return REJECT_STORE;
	/* What t learnt of this key is out of date now. */
	trust_forget(t);
	return store_log_add(ctx, origin, origin_seq, env, len, 1);
}

/* The one accept path: gossip, imports and local writes all come here. */
enum accept_result
store_accept_in_txn(struct wctx *ctx, struct trust_ctx *t, const uint8_t *env,
    size_t len, const struct vjob *pre)
{
	struct record r;

	if (len > RECORD_MAX || record_decode(env, len, &r, NULL) < 0)
		return REJECT_MALFORMED;
	if (r.kind == RECORD_USER)
		return accept_user(ctx, t, &r, env, len, pre);
	return accept_trust(ctx, t, &r, env, len, pre);
}

/* ---- parallel signature checks --------------------------------------- */

static void
vrun(size_t begin, size_t end, void *arg)
{
	struct vjob *jobs = arg;
	size_t i;

	for (i = begin; i < end; i++) {
		struct vjob *j = &jobs[i];

		if (j->have_pk)
			j->ok = dkey_verify(j->pk, RECORD_SIG_PREFIX, j->body,
			    j->body_len, j->sig) == 0;
	}
}

/* Checks jobs on every core; the calling thread takes one share. */
static void
verify_parallel(struct vjob *jobs, size_t n)
{
	mm_parallel_for(n, n < PARALLEL_VERIFY_MIN ? 1 : VERIFY_THREADS_MAX,
	    vrun, jobs);
}

/* The key each envelope will most likely be checked against, from the
 * state at the start of the batch. */
static void
prepare_jobs(struct trust_ctx *t, const uint8_t *const *envs,
    const size_t *lens, size_t n, struct vjob *jobs)
{
	uint8_t root[DKEY_PK_LEN];
	int have_root = trust_root(t, root) == 1;
	struct record_cert c;
	struct record r;
	size_t i;

	for (i = 0; i < n; i++) {
		struct vjob *j = &jobs[i];

		memset(j, 0, sizeof(*j));
		if (lens[i] > RECORD_MAX ||
		    record_decode(envs[i], lens[i], &r, NULL) < 0)
			continue;
		j->body = r.body;
		j->body_len = r.body_len;
		j->sig = envs[i] + lens[i] - DKEY_SIG_LEN;
		if (r.kind != RECORD_USER) {
			if (have_root) {
				memcpy(j->pk, root, DKEY_PK_LEN);
				j->have_pk = 1;
			}
		} else if (trust_cert(t, r.key_id, &c) == 1) {
			memcpy(j->pk, c.pk, DKEY_PK_LEN);
			j->have_pk = 1;
		}
	}
}

/* ---- accepting ------------------------------------------------------- */

struct batch {
	const uint8_t *const *envs;
	const size_t *lens;
	size_t n;
	enum accept_result *results;
	struct vjob *jobs;	/* NULL: check each signature in turn */
	const struct store_presig *pre;	/* checked ahead; NULL: here */
};

static int
batch_fn(struct wctx *ctx, void *arg)
{
	struct batch *b = arg;
	struct trust_ctx t;
	size_t i;
	int rc = -1;

	/* One trust context for the batch: each signer is looked up and
	 * its certificate checked against the root once. */
	store_trust_txn(ctx, &t);
	if (b->pre != NULL) {
		for (i = 0; i < b->n; i++) {
			memset(&b->jobs[i], 0, sizeof(b->jobs[i]));
			b->jobs[i].have_pk = b->pre[i].have_pk;
			b->jobs[i].ok = b->pre[i].ok;
			memcpy(b->jobs[i].pk, b->pre[i].pk, DKEY_PK_LEN);
		}
	} else if (b->jobs != NULL) {
		prepare_jobs(&t, b->envs, b->lens, b->n, b->jobs);
		verify_parallel(b->jobs, b->n);
	}
	for (i = 0; i < b->n; i++) {
		b->results[i] = store_accept_in_txn(ctx, &t, b->envs[i],
		    b->lens[i], b->jobs != NULL ? &b->jobs[i] : NULL);
		if (b->results[i] == REJECT_STORE)
			goto done;
	}
	rc = ctx->changed ? 0 : 1;
done:
	trust_clear(&t);
	return rc;
}

static void
alarm_equivocation(const uint8_t *env, size_t len)
{
	char user[LOG_USER_MAX], kid[DKEY_ID_HEX_LEN + 1];
	struct record r;

	if (record_decode(env, len, &r, NULL) < 0)
		return;
	dkey_id_hex(r.key_id, kid);
	log_warnx("- dir equivocation user=%s epoch=%" PRIu64 " seq=%" PRIu64
	    " site=%s origin=%s key=%s", mm_log_escape(r.u.user.user, user,
	    sizeof(user)), r.u.user.epoch, r.u.user.seq, r.u.user.site,
	    r.u.user.origin, kid);
}

static void
count_results(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, const enum accept_result *results)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if ((unsigned)results[i] < STORE_ACCEPT_RESULTS)
			st->counts[results[i]]++;
		if (results[i] == ACCEPT_EQUIVOCATION)
			alarm_equivocation(envs[i], lens[i]);
	}
}

void
store_presig_check(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, size_t threads, struct store_presig *out)
{
	struct trust_ctx t;
	struct vjob *jobs;
	size_t i;

	if (n == 0)
		return;
	jobs = xcalloc(n, sizeof(*jobs));
	store_trust_init(st, &t);
	prepare_jobs(&t, envs, lens, n, jobs);
	trust_clear(&t);
	mm_parallel_for(n, threads, vrun, jobs);
	for (i = 0; i < n; i++) {
		memcpy(out[i].pk, jobs[i].pk, DKEY_PK_LEN);
		out[i].have_pk = jobs[i].have_pk != 0;
		out[i].ok = jobs[i].ok != 0;
	}
	free(jobs);
}

void
store_accept_batch(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now,
    enum accept_result *results)
{
	store_accept_batch_pre(st, envs, lens, n, now, NULL, results);
}

void
store_accept_batch_pre(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now,
    const struct store_presig *pre, enum accept_result *results)
{
	struct batch b = { envs, lens, n, results, NULL, pre };
	size_t i;

	if (n == 0)
		return;
	if (pre != NULL || (n >= PARALLEL_VERIFY_MIN &&
	    mm_parallel_threads(VERIFY_THREADS_MAX) > 1))
		b.jobs = xcalloc(n, sizeof(*b.jobs));
	if (store_write(st, now, batch_fn, &b) < 0) {
		for (i = 0; i < n; i++)
			results[i] = REJECT_STORE;
	}
	free(b.jobs);
	count_results(st, envs, lens, n, results);
}

enum accept_result
store_accept(struct store *st, const uint8_t *env, size_t len, uint64_t now)
{
	enum accept_result res;

	store_accept_batch(st, &env, &len, 1, now, &res);
	return res;
}
