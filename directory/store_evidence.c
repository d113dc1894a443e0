/* Evidence (store.h): what the accept rule keeps of records it refused as
 * another site's claim, what those mean against the current records, and
 * the way out of a user two sites own: one gives it up, the other takes
 * it back at a higher epoch. */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store_int.h"

#define CLAIM_KEY_LEN (1 + STORE_EVIDENCE_HASH_LEN)

int
store_keep_claim(struct wctx *ctx, const uint8_t *env, size_t len)
{
	uint8_t k[CLAIM_KEY_LEN];
	MDB_val key, val;

	k[0] = STORE_CLAIM_TAG;
	crypto_generichash(k + 1, STORE_EVIDENCE_HASH_LEN, env, len, NULL, 0);
	key = val_bin(k, sizeof(k));
	val = val_bin(env, len);
	return tx_put(ctx, DBI_EVIDENCE, &key, &val, MDB_NOOVERWRITE);
}

/* What a claim means against cur (NULL: no current record). */
static enum store_evidence_kind
classify(const struct record_user *ev, const struct record_user *cur)
{
	if (cur == NULL)
		return EVIDENCE_SETTLED;
	if (ev->state == USTATE_TRANSFER) {
		if (ev->epoch <= cur->epoch)
			return EVIDENCE_SETTLED;
		return strcmp(ev->site, cur->site) == 0 ? EVIDENCE_RELEASE :
		    EVIDENCE_CLAIM;
	}
	if (strcmp(ev->site, cur->site) != 0 && ev->epoch >= cur->epoch)
		return EVIDENCE_CLAIM;
	return EVIDENCE_SETTLED;
}

/* The entry under key/val as evidence: 0 filled in, 1 not a user record
 * (skipped). */
static int
evidence_of(MDB_txn *txn, struct store *st, const MDB_val *key,
    const MDB_val *val, struct store_evidence *e)
{
	MDB_val ukey, uval;
	int mrc;

	memset(e, 0, sizeof(*e));
	e->env = val->mv_data;
	e->len = val->mv_size;
	if (record_decode_user(val->mv_data, val->mv_size, &e->rec,
	    NULL) < 0)
		return 1;
	e->user = e->rec.user;
	/* Keys of equivocations are the bare hash; claims are tagged. */
	if (key->mv_size != CLAIM_KEY_LEN) {
		e->kind = EVIDENCE_EQUIVOCATION;
		return 0;
	}
	ukey = val_str(e->rec.user);
	mrc = mdb_get(txn, st->dbi[DBI_USERS], &ukey, &uval);
	e->cur_known = mrc == 0 && record_decode_user(uval.mv_data,
	    uval.mv_size, &e->cur, NULL) == 0;
	e->kind = classify(&e->rec, e->cur_known ? &e->cur : NULL);
	return 0;
}

int
store_evidence_walk(struct store *st, MDB_txn *txn, store_evidence_cb cb,
    void *arg, uint64_t counts_r[STORE_EVIDENCE_KINDS])
{
	struct store_evidence e;
	MDB_cursor *cur;
	MDB_val key, val;
	int mrc, stop = 0;

	memset(counts_r, 0, STORE_EVIDENCE_KINDS * sizeof(*counts_r));
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_EVIDENCE], &cur)) != 0)
		return mrc;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
	    mrc == 0 && !stop;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (evidence_of(txn, st, &key, &val, &e) != 0)
			continue;
		counts_r[e.kind]++;
		if (cb != NULL)
			stop = cb(&e, arg);
	}
	mdb_cursor_close(cur);
	return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : mrc;
}

int
store_foreach_evidence(struct store *st, store_evidence_cb cb, void *arg,
    uint64_t counts_r[STORE_EVIDENCE_KINDS])
{
	MDB_txn *txn;
	int r;

	if (store_walk_begin(st, &txn) < 0)
		return -1;
	r = store_evidence_walk(st, txn, cb, arg, counts_r);
	store_walk_end(st, txn);
	if (r != 0) {
		log_warnx("- dir store evidence-walk path=%s error=\"%s\"",
		    st->path, mdb_strerror(r));
		return -1;
	}
	return 0;
}

void
store_evidence_text(const struct store_evidence *e, char *buf, size_t size)
{
	const struct record_user *r = &e->rec, *c = &e->cur;
	char cur[256];

	if (e->cur_known)
		snprintf(cur, sizeof(cur), "%s holds it here (epoch %llu seq "
		    "%llu, back end %s, from %s)", c->site,
		    (unsigned long long)c->epoch, (unsigned long long)c->seq,
		    c->backend[0] != '\0' ? c->backend : "-", c->origin);
	else
		snprintf(cur, sizeof(cur), "no current record here");
	switch (e->kind) {
	case EVIDENCE_RELEASE:
		snprintf(buf, size, "%s; %s released it to %s at epoch %llu: "
		    "complete with `mmctl user resolve %s %s` at a node of %s",
		    cur, r->origin, r->site, (unsigned long long)r->epoch,
		    r->user, r->site, r->site);
		return;
	case EVIDENCE_CLAIM:
		if (r->state == USTATE_TRANSFER)
			snprintf(buf, size, "%s; %s handed it to %s at epoch "
			    "%llu, refused here, kept as evidence", cur,
			    r->origin, r->site, (unsigned long long)r->epoch);
		else
			snprintf(buf, size, "%s; site %s's record (epoch %llu "
			    "seq %llu, back end %s, from %s) refused here, "
			    "kept as evidence", cur, r->site,
			    (unsigned long long)r->epoch,
			    (unsigned long long)r->seq,
			    r->backend[0] != '\0' ? r->backend : "-",
			    r->origin);
		return;
	case EVIDENCE_EQUIVOCATION:
		snprintf(buf, size, "%s signed two records of epoch %llu seq "
		    "%llu (from %s)", r->site, (unsigned long long)r->epoch,
		    (unsigned long long)r->seq, r->origin);
		return;
	case EVIDENCE_SETTLED:
		break;
	}
	snprintf(buf, size, "%s; settled", cur);
}

/* ---- resolving ------------------------------------------------------- */

struct resolve_arg {
	const struct store_signer *sg;
	const char *user, *winner;
	struct store_resolution *out;
};

/* The newest claim of user held as evidence that site selects: a
 * non-TRANSFER record of site (release false), or a TRANSFER to site
 * (true). */
struct claim_find {
	const char *user, *site;
	bool release;
	uint8_t *buf;
	size_t len;
	uint64_t best;
	int found;
};

static int
claim_cb(const struct store_evidence *e, void *arg)
{
	struct claim_find *f = arg;

	if (e->kind == EVIDENCE_EQUIVOCATION || e->len > RECORD_MAX ||
	    strcmp(e->rec.user, f->user) != 0 ||
	    strcmp(e->rec.site, f->site) != 0 ||
	    (e->rec.state == USTATE_TRANSFER) != f->release ||
	    (f->found && e->rec.epoch <= f->best))
		return 0;
	memcpy(f->buf, e->env, e->len);
	f->len = e->len;
	f->best = e->rec.epoch;
	f->found = 1;
	return 0;
}

/* Copied into buf (RECORD_MAX bytes) and decoded into *u_r: 1 found, 0
 * none, -1 error (ctx). */
static int
find_claim(struct wctx *ctx, const char *user, const char *site,
    bool release, uint8_t *buf, size_t *len_r, struct record_user *u_r)
{
	struct claim_find f = { user, site, release, buf, 0, 0, 0 };
	uint64_t kinds[STORE_EVIDENCE_KINDS];
	int mrc;

	if ((mrc = store_evidence_walk(ctx->st, ctx->txn, claim_cb, &f,
	    kinds)) != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	if (!f.found || record_decode_user(buf, f.len, u_r, NULL) < 0)
		return 0;
	*len_r = f.len;
	return 1;
}

static void
say(struct store_resolution *out, enum accept_result res, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
say(struct store_resolution *out, enum accept_result res, const char *fmt,
    ...)
{
	va_list ap;

	out->res = res;
	va_start(ap, fmt);
	vsnprintf(out->why, sizeof(out->why), fmt, ap);
	va_end(ap);
}

static int
resolve_fn(struct wctx *ctx, void *arg)
{
	struct resolve_arg *a = arg;
	const struct store_signer *sg = a->sg;
	struct store_resolution *out = a->out;
	uint8_t ev[RECORD_MAX], curbuf[RECORD_MAX];
	struct record_user u, claim, cur;
	struct hwm h;
	size_t ev_len = 0, cur_len;
	MDB_val key = val_str(a->user), val;
	int g;

	memset(out, 0, sizeof(*out));
	if ((g = tx_get(ctx, DBI_HWM, &key, &val)) < 0)
		goto store_error;
	if (g > 0) {
		say(out, REJECT_STALE, "%s is not known here", a->user);
		return 1;
	}
	if (hwm_parse(&val, &h) < 0) {
		ctx->mdb_rc = MDB_CORRUPTED;
		goto store_error;
	}
	if ((g = tx_get(ctx, DBI_USERS, &key, &val)) < 0)
		goto store_error;
	if (g > 0 || val.mv_size > RECORD_MAX) {
		say(out, REJECT_STALE, "%s has no current record here",
		    a->user);
		return 1;
	}
	cur_len = val.mv_size;
	memcpy(curbuf, val.mv_data, cur_len);
	if (record_decode_user(curbuf, cur_len, &cur, NULL) < 0) {
		ctx->mdb_rc = MDB_CORRUPTED;
		goto store_error;
	}
	if (strcmp(h.site, sg->site) != 0) {
		if (strcmp(h.site, a->winner) == 0)
			say(out, REJECT_WRONG_SITE, "%s is %s's here already "
			    "(epoch %llu)%s", a->user, h.site,
			    (unsigned long long)h.epoch,
			    cur.state == USTATE_TRANSFER ? ", released by this "
			    "site; the rest is for a node of the winner" : "");
		else
			say(out, REJECT_WRONG_SITE, "%s is owned by site %s "
			    "here, not by this site (%s): resolve it at a "
			    "node of %s", a->user, h.site, sg->site, h.site);
		return 1;
	}
	memset(&u, 0, sizeof(u));
	mm_strlcpy(u.user, a->user, sizeof(u.user));
	mm_strlcpy(u.origin, sg->origin, sizeof(u.origin));
	u.timestamp = ctx->now;
	if (strcmp(a->winner, sg->site) != 0) {
		/* This site gives the user up: a hand-over to the winner at
		 * an epoch above both claims, so that the winner's nodes can
		 * take the user back above their own. */
		if ((g = find_claim(ctx, a->user, a->winner, false, ev,
		    &ev_len, &claim)) < 0)
			goto store_error;
		if (g == 0) {
			say(out, REJECT_STALE, "no claim to %s by site %s is "
			    "known here: nothing to resolve (a mailbox that "
			    "should move: mmctl move)", a->user, a->winner);
			return 1;
		}
		u.epoch = (h.epoch > claim.epoch ? h.epoch : claim.epoch) + 1;
		u.seq = 0;
		u.state = USTATE_TRANSFER;
		mm_strlcpy(u.site, a->winner, sizeof(u.site));
		mm_strlcpy(u.backend, claim.backend, sizeof(u.backend));
		mm_strlcpy(out->backend, cur.backend, sizeof(out->backend));
		out->released = true;
	} else {
		/* This site keeps the user: its record of the epoch the
		 * other site released it at, carrying that release. */
		if ((g = find_claim(ctx, a->user, sg->site, true, ev, &ev_len,
		    &claim)) < 0)
			goto store_error;
		if (g == 0 || claim.epoch <= h.epoch) {
			say(out, REJECT_NO_TRANSFER, "no release of %s by "
			    "another site has reached this node: run `mmctl "
			    "user resolve %s %s` at a node of the site that "
			    "gives it up, then here again", a->user, a->user,
			    sg->site);
			return 1;
		}
		u.epoch = claim.epoch;
		u.seq = claim.seq + 1;
		u.state = cur.state == USTATE_DELETED ||
		    cur.state == USTATE_TRANSFER ? USTATE_ACTIVE : cur.state;
		mm_strlcpy(u.site, sg->site, sizeof(u.site));
		mm_strlcpy(u.backend, cur.backend, sizeof(u.backend));
		mm_strlcpy(u.target_site, cur.target_site,
		    sizeof(u.target_site));
		u.transfer = ev;
		u.transfer_len = ev_len;
		mm_strlcpy(out->backend, claim.backend, sizeof(out->backend));
	}
	mm_strlcpy(out->other, claim.origin, sizeof(out->other));
	out->epoch = u.epoch;
	out->res = store_sign_accept(ctx, sg, &u);
	if (out->res == REJECT_STORE)
		return -1;
	if (out->res != ACCEPT_STORED) {
		say(out, out->res, "the resolving record was refused: %s",
		    store_accept_name(out->res));
		return 1;
	}
	return 0;
store_error:
	out->res = REJECT_STORE;
	return -1;
}

enum accept_result
store_resolve(struct store *st, const struct store_signer *sg,
    const char *user, const char *winner, uint64_t now,
    struct store_resolution *out)
{
	struct resolve_arg a = { sg, user, winner, out };

	memset(out, 0, sizeof(*out));
	if (!record_user_valid(user) || !record_site_valid(winner) ||
	    !record_site_valid(sg->site) || !record_name_valid(sg->origin) ||
	    !sg->key->has_secret) {
		say(out, REJECT_MALFORMED, "not a user and a site name");
	} else if (store_write(st, now, resolve_fn, &a) < 0) {
		if (out->why[0] == '\0')
			say(out, REJECT_STORE, "store error: %s",
			    store_last_error(st) != NULL ?
			    store_last_error(st) : "unknown");
		out->res = REJECT_STORE;
	}
	if ((unsigned)out->res < STORE_ACCEPT_RESULTS)
		st->counts[out->res]++;
	return out->res;
}
