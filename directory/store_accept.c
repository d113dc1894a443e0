/* The accept rule: every record, from gossip, an import or a local
 * write, is checked here against the trust state and the user's
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

#define EVIDENCE_HASH_LEN 32
/* Batches at least this long verify their signatures on all cores. */
#define PARALLEL_VERIFY_MIN 64

/* A certified signer as the rule sees it. */
struct signer {
	uint8_t pk[DKEY_PK_LEN];
	char site[RECORD_SITE_MAX + 1];
	char name[RECORD_NAME_MAX + 1];
};

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

/* Certificate, revocation, expiry, then signature. */
static enum accept_result
resolve_signer(struct wctx *ctx, const struct record *r, int check_expiry,
    const struct vjob *pre, struct signer *s_r)
{
	struct record c;
	MDB_val key = val_bin(r->key_id, DKEY_ID_LEN), val;
	int g;

	g = get_cert(ctx, r->key_id, &c);
	if (g < 0)
		return REJECT_STORE;
	if (g > 0)
		return REJECT_UNKNOWN_KEY;
	g = tx_get(ctx, DBI_REVOKED, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0)
		return REJECT_REVOKED;
	if (check_expiry && c.u.cert.expires != 0 &&
	    c.u.cert.expires <= ctx->now)
		return REJECT_EXPIRED;
	/* A transport key only identifies a proxy worker on the channel. */
	if (c.u.cert.role == ROLE_TRANSPORT)
		return REJECT_WRONG_SITE;
	if (check_sig(r, c.u.cert.pk, pre) < 0)
		return REJECT_BAD_SIGNATURE;
	memcpy(s_r->pk, c.u.cert.pk, DKEY_PK_LEN);
	memcpy(s_r->site, c.u.cert.site, sizeof(s_r->site));
	memcpy(s_r->name, c.u.cert.name, sizeof(s_r->name));
	return ACCEPT_STORED;
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
check_transfer(struct wctx *ctx, const struct record *r, const char *owner)
{
	const struct record_user *u = &r->u.user, *tu;
	struct record t;
	struct signer s;
	enum accept_result res;

	if (u->transfer_len == 0 ||
	    record_decode(u->transfer, u->transfer_len, &t, NULL) < 0)
		return REJECT_NO_TRANSFER;
	tu = &t.u.user;
	if (t.kind != RECORD_USER || tu->state != USTATE_TRANSFER ||
	    strcmp(tu->user, u->user) != 0 || tu->epoch != u->epoch ||
	    tu->seq >= u->seq || strcmp(tu->site, u->site) != 0)
		return REJECT_NO_TRANSFER;
	/* Signed in the past, perhaps long ago: expiry does not apply, a
	 * revocation does. */
	res = resolve_signer(ctx, &t, 0, NULL, &s);
	if (res == REJECT_STORE)
		return res;
	if (res != ACCEPT_STORED || strcmp(s.site, owner) != 0)
		return REJECT_NO_TRANSFER;
	return ACCEPT_STORED;
}

/* Same (epoch, seq) as the current record, other body. Both are kept; the
 * record whose envelope hash is lower is current on every node. */
static enum accept_result
equivocation(struct wctx *ctx, const struct record *r, const uint8_t *env,
    size_t len, const struct signer *s, const MDB_val *cur)
{
	uint8_t hr[EVIDENCE_HASH_LEN], hc[EVIDENCE_HASH_LEN];
	uint8_t old[RECORD_MAX];
	size_t old_len = cur->mv_size;
	struct record c;
	struct record sc;
	MDB_val key, val;
	int g, wins;

	/* A copy: the map page under cur may change with the writes below. */
	if (old_len > sizeof(old))
		return REJECT_STALE;
	memcpy(old, cur->mv_data, old_len);
	if (record_decode(old, old_len, &c, NULL) < 0)
		return REJECT_STALE;
	/* Only whoever signed the current one can equivocate against it. */
	g = get_cert(ctx, c.key_id, &sc);
	if (g < 0)
		return REJECT_STORE;
	if (g > 0 || strcmp(sc.u.cert.site, s->site) != 0)
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

static enum accept_result
accept_user(struct wctx *ctx, const struct record *r, const uint8_t *env,
    size_t len, const struct vjob *pre)
{
	const struct record_user *u = &r->u.user;
	struct signer s;
	struct hwm h;
	enum accept_result res;
	MDB_val key = val_str(u->user), val, cur;
	int g, have_hwm = 0, c;

	res = resolve_signer(ctx, r, 1, pre, &s);
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
			return equivocation(ctx, r, env, len, &s, &cur);
		}
	}

	if (u->state == USTATE_TRANSFER) {
		/* Signed by the owner it hands over from, and epochs grow
		 * with every change of owner. A user never seen here has no
		 * known owner: like a first record, it is taken as it is. */
		if (have_hwm && strcmp(s.site, h.site) != 0)
			return REJECT_WRONG_SITE;
		if (have_hwm && u->epoch <= h.epoch)
			return REJECT_NO_TRANSFER;
	} else {
		if (strcmp(s.site, u->site) != 0)
			return REJECT_WRONG_SITE;
		if (have_hwm && u->epoch > h.epoch) {
			res = check_transfer(ctx, r, h.site);
			if (res != ACCEPT_STORED)
				return res;
		} else if (have_hwm && strcmp(u->site, h.site) != 0) {
			return REJECT_WRONG_SITE;
		}
	}
	/* A node numbers only its own records: otherwise any certified
	 * node could fill another origin's log. */
	if (strcmp(u->origin, s.name) != 0)
		return REJECT_WRONG_ORIGIN;
	if (put_current(ctx, r, env, len) != ACCEPT_STORED)
		return REJECT_STORE;
	return store_log_add(ctx, u->origin, u->origin_seq, env, len, 1);
}

/* CERT and REVOKE: signed by the root key. */
static enum accept_result
accept_trust(struct wctx *ctx, const struct record *r, const uint8_t *env,
    size_t len, const struct vjob *pre)
{
	uint8_t root[DKEY_PK_LEN], root_id[DKEY_ID_LEN], id[DKEY_ID_LEN];
	const char *origin;
	uint64_t origin_seq;
	MDB_val key, val;
	int g, dbi;

	g = get_root(ctx->txn, ctx->st, root);
	if (g < 0) {
		ctx->mdb_rc = MDB_CORRUPTED;
		return REJECT_STORE;
	}
	if (g == 0)
		return REJECT_NO_ROOT;
	dkey_id(root, root_id);
	if (memcmp(r->key_id, root_id, DKEY_ID_LEN) != 0)
		return REJECT_UNKNOWN_KEY;
	if (check_sig(r, root, pre) < 0)
		return REJECT_BAD_SIGNATURE;

	if (r->kind == RECORD_CERT) {
		const struct record_cert *c = &r->u.cert;

		dkey_id(c->pk, id);
		key = val_bin(id, DKEY_ID_LEN);
		g = tx_get(ctx, DBI_REVOKED, &key, &val);
		if (g < 0)
			return REJECT_STORE;
		if (g == 0)
			return REJECT_REVOKED;
		if (c->expires != 0 && c->expires <= ctx->now)
			return REJECT_EXPIRED;
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
	return store_log_add(ctx, origin, origin_seq, env, len, 1);
}

/* The one accept path: gossip, imports and local writes all come here. */
enum accept_result
store_accept_in_txn(struct wctx *ctx, const uint8_t *env, size_t len,
    const struct vjob *pre)
{
	struct record r;

	if (len > RECORD_MAX || record_decode(env, len, &r, NULL) < 0)
		return REJECT_MALFORMED;
	if (r.kind == RECORD_USER)
		return accept_user(ctx, &r, env, len, pre);
	return accept_trust(ctx, &r, env, len, pre);
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
prepare_jobs(struct wctx *ctx, const uint8_t *const *envs,
    const size_t *lens, size_t n, struct vjob *jobs)
{
	uint8_t root[DKEY_PK_LEN];
	int have_root = get_root(ctx->txn, ctx->st, root) == 1;
	struct record r, c;
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
		} else if (get_cert(ctx, r.key_id, &c) == 0) {
			memcpy(j->pk, c.u.cert.pk, DKEY_PK_LEN);
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
};

static int
batch_fn(struct wctx *ctx, void *arg)
{
	struct batch *b = arg;
	size_t i;

	if (b->jobs != NULL) {
		prepare_jobs(ctx, b->envs, b->lens, b->n, b->jobs);
		verify_parallel(b->jobs, b->n);
	}
	for (i = 0; i < b->n; i++) {
		b->results[i] = store_accept_in_txn(ctx, b->envs[i], b->lens[i],
		    b->jobs != NULL ? &b->jobs[i] : NULL);
		if (b->results[i] == REJECT_STORE)
			return -1;
	}
	return ctx->changed ? 0 : 1;
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
store_accept_batch(struct store *st, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now,
    enum accept_result *results)
{
	struct batch b = { envs, lens, n, results, NULL };
	size_t i;

	if (n == 0)
		return;
	if (n >= PARALLEL_VERIFY_MIN &&
	    mm_parallel_threads(VERIFY_THREADS_MAX) > 1)
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
