/* Authoring: the writer's own changes, numbered in its origin's log,
 * signed (in batches, on all cores) and stored in one write transaction;
 * a hand-over (TRANSFER) goes through the full accept rule. */
#include "store.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_parallel.h"
#include "mm_util.h"
#include "store_int.h"
#include "trust.h"

/* Batches of local writes at least this long sign on all cores. */
#define PARALLEL_SIGN_MIN 32

/* The signer's own certificate, checked once per batch in place of a
 * check of every signature the batch makes with that key: the same rule
 * as for records from elsewhere (trust.h, TRUST_USE_RECORD). */
static enum accept_result
check_own_signer(struct wctx *ctx, const struct store_signer *sg)
{
	struct trust_ctx t;
	enum trust_verdict v;

	store_trust_txn(ctx, &t);
	v = trust_check(&t, sg->key->id, sg->key->pk, TRUST_USE_RECORD,
	    sg->site, sg->origin, ctx->now, NULL);
	trust_clear(&t);
	return store_trust_result(v);
}

/* One record of a batch: numbered and encoded in order, signed in
 * parallel, then stored in order. Offsets point into the batch's arenas,
 * which grow while records are planned. */
struct plan {
	size_t item;
	size_t body_off, body_len;
	size_t env_off, env_len;
	size_t transfer_off, transfer_len;	/* in the body arena */
	uint64_t epoch, seq, origin_seq;
	uint8_t hash[HWM_HASH_LEN];
	int sealed;
};

struct puts {
	const struct store_signer *sg;
	const struct store_user_item *items;
	size_t n;
	enum accept_result *results;
	/* per attempt (a full map runs the transaction again) */
	struct plan *plans;
	size_t nplans;
	uint8_t *bodies, *envs;
	size_t bodies_len, bodies_cap, envs_len;
	size_t *dup;		/* open addressing: plan index + 1, or 0 */
	size_t dup_mask;
};

static size_t
user_hash(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return (size_t)h;
}

/* The slot of user in the duplicate table: its last plan, or an empty
 * slot for it. */
static size_t *
dup_slot(struct puts *b, const char *user)
{
	size_t i = user_hash(user) & b->dup_mask;

	while (b->dup[i] != 0 &&
	    strcmp(b->items[b->plans[b->dup[i] - 1].item].user, user) != 0)
		i = (i + 1) & b->dup_mask;
	return &b->dup[i];
}

/* Numbers and encodes item i. The owner, epoch and seq come from the
 * user's high-water mark, or from an earlier record of this batch. */
static enum accept_result
plan_item(struct wctx *ctx, struct puts *b, size_t i, uint64_t *oseq,
    enum accept_result signer)
{
	const struct store_user_item *it = &b->items[i];
	const struct store_signer *sg = b->sg;
	struct record_user u;
	struct record cur;
	struct plan *p;
	struct hwm h;
	size_t *slot = dup_slot(b, it->user);
	MDB_val key = val_str(it->user), val;
	const char *why = NULL;
	int g, n;

	memset(&u, 0, sizeof(u));
	if (*slot != 0) {
		const struct plan *prev = &b->plans[*slot - 1];

		u.epoch = prev->epoch;
		u.seq = prev->seq + 1;
		u.transfer_len = prev->transfer_len;
		/* The arena may move below: the pointer is taken after. */
	} else {
		g = tx_get(ctx, DBI_HWM, &key, &val);
		if (g < 0)
			return REJECT_STORE;
		if (g == 0 && hwm_parse(&val, &h) < 0) {
			ctx->mdb_rc = MDB_CORRUPTED;
			return REJECT_STORE;
		}
		if (g == 0 && strcmp(h.site, sg->site) != 0)
			return REJECT_WRONG_SITE;
		u.epoch = g == 0 ? h.epoch : 1;
		u.seq = g == 0 ? h.seq + 1 : 1;
		/* Records of an epoch this site got by a hand-over carry it,
		 * so a node that missed the TRANSFER can still take them. */
		if (g == 0) {
			g = tx_get(ctx, DBI_USERS, &key, &val);
			if (g < 0)
				return REJECT_STORE;
			if (g == 0 && record_decode(val.mv_data, val.mv_size,
			    &cur, NULL) == 0 && cur.kind == RECORD_USER &&
			    cur.u.user.epoch == u.epoch) {
				if (cur.u.user.state == USTATE_TRANSFER) {
					u.transfer = val.mv_data;
					u.transfer_len = val.mv_size;
				} else if (cur.u.user.transfer_len > 0) {
					u.transfer = cur.u.user.transfer;
					u.transfer_len =
					    cur.u.user.transfer_len;
				}
			}
		}
	}
	if (signer != ACCEPT_STORED)
		return signer;
	mm_strlcpy(u.user, it->user, sizeof(u.user));
	mm_strlcpy(u.site, sg->site, sizeof(u.site));
	mm_strlcpy(u.backend, it->backend, sizeof(u.backend));
	mm_strlcpy(u.target_site, it->target_site != NULL ?
	    it->target_site : "", sizeof(u.target_site));
	mm_strlcpy(u.origin, sg->origin, sizeof(u.origin));
	u.state = it->state;
	u.timestamp = ctx->now;
	u.origin_seq = *oseq + 1;

	if (b->bodies_cap - b->bodies_len < RECORD_MAX) {
		b->bodies_cap = b->bodies_cap * 2 + RECORD_MAX;
		b->bodies = xrealloc(b->bodies, b->bodies_cap);
	}
	if (*slot != 0 && u.transfer_len > 0)
		u.transfer = b->bodies + b->plans[*slot - 1].transfer_off;
	n = record_encode_user_body(&u, b->bodies + b->bodies_len,
	    RECORD_MAX, &why);
	if (n < 0) {
		char esc[LOG_USER_MAX];

		log_warnx("- dir store put user=%s error=\"%s\"",
		    mm_log_escape(it->user, esc, sizeof(esc)), why);
		return REJECT_MALFORMED;
	}
	p = &b->plans[b->nplans];
	memset(p, 0, sizeof(*p));
	p->item = i;
	p->body_off = b->bodies_len;
	p->body_len = (size_t)n;
	/* The transfer is the body's last field. */
	p->transfer_len = u.transfer_len;
	p->transfer_off = p->body_off + p->body_len - u.transfer_len;
	p->env_off = b->envs_len;
	p->epoch = u.epoch;
	p->seq = u.seq;
	p->origin_seq = u.origin_seq;
	b->bodies_len += (size_t)n;
	b->envs_len += (size_t)n + RECORD_ENVELOPE_OVERHEAD;
	*slot = ++b->nplans;
	(*oseq)++;
	return ACCEPT_STORED;
}

static void
sign_share(size_t begin, size_t end, void *arg)
{
	struct puts *b = arg;
	const char *why;
	size_t i;
	int n;

	for (i = begin; i < end; i++) {
		struct plan *p = &b->plans[i];
		const uint8_t *body = b->bodies + p->body_off;

		n = record_seal(body, p->body_len, b->sg->key,
		    b->envs + p->env_off, p->body_len +
		    RECORD_ENVELOPE_OVERHEAD, &why);
		if (n < 0)
			continue;
		p->env_len = (size_t)n;
		crypto_generichash(p->hash, HWM_HASH_LEN, body, p->body_len,
		    NULL, 0);
		p->sealed = 1;
	}
}

/* Signs every planned record on all cores; the calling thread takes one
 * share. */
static void
sign_parallel(struct puts *b)
{
	mm_parallel_for(b->nplans, b->nplans < PARALLEL_SIGN_MIN ? 1 :
	    VERIFY_THREADS_MAX, sign_share, b);
}

/* Stores a signed record of the batch: current record (with its tree
 * entry), high-water mark, log entry. */
static int
store_plan(struct wctx *ctx, struct puts *b, const struct plan *p)
{
	const char *user = b->items[p->item].user;
	const char *origin = b->sg->origin;
	uint8_t h[HWM_FIXED + RECORD_SITE_MAX], k[LOG_KEY_MAX];
	size_t sitelen = strlen(b->sg->site), olen = strlen(origin);
	MDB_val key = val_str(user), val;

	if (store_current_put(ctx, user, b->envs + p->env_off,
	    p->env_len) < 0 ||
	    store_route_put(ctx, user, b->items[p->item].state, b->sg->site,
	    b->items[p->item].backend) < 0)
		return -1;
	be64_put(h, p->epoch);
	be64_put(h + 8, p->seq);
	memcpy(h + 16, p->hash, HWM_HASH_LEN);
	memcpy(h + HWM_FIXED, b->sg->site, sitelen);
	val = val_bin(h, HWM_FIXED + sitelen);
	if (tx_put(ctx, DBI_HWM, &key, &val, 0) < 0)
		return -1;
	memcpy(k, origin, olen);
	k[olen] = '\0';
	be64_put(k + olen + 1, p->origin_seq);
	key = val_bin(k, olen + 1 + 8);
	val = val_bin(b->envs + p->env_off, p->env_len);
	return tx_put(ctx, DBI_LOG, &key, &val, 0);
}

static int
puts_fn(struct wctx *ctx, void *arg)
{
	struct puts *b = arg;
	enum accept_result signer;
	MDB_val key, val;
	uint8_t cur[8];
	uint64_t oseq;
	size_t i;
	int g;

	b->nplans = b->bodies_len = b->envs_len = 0;
	memset(b->dup, 0, (b->dup_mask + 1) * sizeof(*b->dup));
	signer = check_own_signer(ctx, b->sg);
	if (signer == REJECT_STORE)
		return -1;
	key = val_str(b->sg->origin);
	g = tx_get(ctx, DBI_ORIGINS, &key, &val);
	if (g < 0)
		return -1;
	oseq = g == 0 && val.mv_size == 8 ? be64_get(val.mv_data) : 0;

	for (i = 0; i < b->n; i++) {
		if (b->results[i] == REJECT_MALFORMED)
			continue;	/* refused before the transaction */
		b->results[i] = plan_item(ctx, b, i, &oseq, signer);
		if (b->results[i] == REJECT_STORE)
			return -1;
	}
	if (b->nplans == 0)
		return 1;
	b->envs = xrealloc(b->envs, b->envs_len);
	sign_parallel(b);
	for (i = 0; i < b->nplans; i++) {
		if (!b->plans[i].sealed) {
			/* Cannot happen: the bodies were checked. */
			ctx->mdb_rc = MDB_CORRUPTED;
			return -1;
		}
		if (store_plan(ctx, b, &b->plans[i]) < 0)
			return -1;
	}
	key = val_str(b->sg->origin);
	be64_put(cur, oseq);
	val = val_bin(cur, sizeof(cur));
	if (tx_put(ctx, DBI_ORIGINS, &key, &val, 0) < 0)
		return -1;
	return store_contig_advance(ctx, b->sg->origin) < 0 ? -1 : 0;
}

static bool
item_valid(const struct store_user_item *it)
{
	const char *t = it->target_site != NULL ? it->target_site : "";

	if (it->user == NULL || it->backend == NULL ||
	    !record_user_valid(it->user) ||
	    strlen(it->backend) > RECORD_NAME_MAX ||
	    (t[0] != '\0' && !record_site_valid(t)))
		return false;
	return it->state == USTATE_ACTIVE || it->state == USTATE_MOVING ||
	    it->state == USTATE_FROZEN || it->state == USTATE_DELETED;
}

void
store_put_users(struct store *st, const struct store_signer *sg,
    const struct store_user_item *items, size_t n, uint64_t now,
    enum accept_result *results)
{
	struct puts b;
	size_t i, cap;
	bool sg_ok = record_site_valid(sg->site) &&
	    record_name_valid(sg->origin) && sg->key->has_secret;

	if (n == 0)
		return;
	memset(&b, 0, sizeof(b));
	b.sg = sg;
	b.items = items;
	b.n = n;
	b.results = results;
	for (i = 0; i < n; i++)
		results[i] = sg_ok && item_valid(&items[i]) ? ACCEPT_STORED :
		    REJECT_MALFORMED;
	for (cap = 4; cap < 2 * n; cap *= 2)
		;
	b.dup = xcalloc(cap, sizeof(*b.dup));
	b.dup_mask = cap - 1;
	b.plans = xcalloc(n, sizeof(*b.plans));
	if (sg_ok && store_write(st, now, puts_fn, &b) < 0) {
		for (i = 0; i < n; i++)
			results[i] = REJECT_STORE;
	}
	free(b.dup);
	free(b.plans);
	free(b.bodies);
	free(b.envs);
	for (i = 0; i < n; i++)
		if ((unsigned)results[i] < STORE_ACCEPT_RESULTS)
			st->counts[results[i]]++;
}

enum accept_result
store_put_user(struct store *st, const struct store_signer *sg,
    const char *user, const char *backend, enum user_state state,
    const char *target_site, uint64_t now)
{
	struct store_user_item it = { user, backend, state, target_site };
	enum accept_result res;

	store_put_users(st, sg, &it, 1, now, &res);
	return res;
}

/* A hand-over is rare and goes through the full accept rule. */
enum accept_result
store_sign_accept(struct wctx *ctx, const struct store_signer *sg,
    struct record_user *u)
{
	struct trust_ctx t;
	enum accept_result res;
	uint8_t env[RECORD_MAX];
	MDB_val key = val_str(sg->origin), val;
	const char *why;
	char esc[LOG_USER_MAX];
	int g, n;

	g = tx_get(ctx, DBI_ORIGINS, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	u->origin_seq = (g == 0 && val.mv_size == 8 ?
	    be64_get(val.mv_data) : 0) + 1;
	n = record_encode_user(u, sg->key, env, sizeof(env), &why);
	if (n < 0) {
		log_warnx("- dir store put user=%s error=\"%s\"",
		    mm_log_escape(u->user, esc, sizeof(esc)), why);
		return REJECT_MALFORMED;
	}
	store_trust_txn(ctx, &t);
	res = store_accept_in_txn(ctx, &t, env, (size_t)n, NULL);
	trust_clear(&t);
	return res;
}

struct transfer_arg {
	const struct store_signer *sg;
	const char *user, *backend, *new_site;
	enum accept_result res;
};

static int
transfer_fn(struct wctx *ctx, void *arg)
{
	struct transfer_arg *a = arg;
	struct record_user u;
	struct hwm h;
	MDB_val key = val_str(a->user), val;
	int g;

	memset(&u, 0, sizeof(u));
	g = tx_get(ctx, DBI_HWM, &key, &val);
	if (g < 0)
		goto store_error;
	if (g > 0) {
		a->res = REJECT_STALE;	/* nothing to hand over */
		return 1;
	}
	if (hwm_parse(&val, &h) < 0) {
		ctx->mdb_rc = MDB_CORRUPTED;
		goto store_error;
	}
	if (strcmp(h.site, a->sg->site) != 0) {
		a->res = REJECT_WRONG_SITE;
		return 1;
	}
	u.epoch = h.epoch + 1;
	u.seq = 0;
	mm_strlcpy(u.site, a->new_site, sizeof(u.site));
	mm_strlcpy(u.user, a->user, sizeof(u.user));
	mm_strlcpy(u.backend, a->backend, sizeof(u.backend));
	mm_strlcpy(u.origin, a->sg->origin, sizeof(u.origin));
	u.state = USTATE_TRANSFER;
	u.timestamp = ctx->now;
	a->res = store_sign_accept(ctx, a->sg, &u);
	if (a->res == REJECT_STORE)
		return -1;
	if (a->res != ACCEPT_STORED)
		return 1;
	return 0;
store_error:
	a->res = REJECT_STORE;
	return -1;
}

enum accept_result
store_put_transfer(struct store *st, const struct store_signer *sg,
    const char *user, const char *new_site, const char *backend,
    uint64_t now)
{
	struct transfer_arg a = { sg, user, backend != NULL ? backend : "",
		new_site, REJECT_MALFORMED };

	if (!record_site_valid(new_site) || !record_user_valid(user) ||
	    !record_site_valid(sg->site) || !record_name_valid(sg->origin) ||
	    !sg->key->has_secret || strlen(a.backend) > RECORD_NAME_MAX) {
		a.res = REJECT_MALFORMED;
	} else if (store_write(st, now, transfer_fn, &a) < 0) {
		a.res = REJECT_STORE;
	}
	if ((unsigned)a.res < STORE_ACCEPT_RESULTS)
		st->counts[a.res]++;
	return a.res;
}
