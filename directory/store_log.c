/* The per-origin logs, for gossip: log (origin NUL origin_seq -> envelope),
 * origins (origin -> highest origin_seq) and each origin's contiguous mark
 * in meta. The accept rule and authoring add to them through
 * store_log_add and store_contig_advance. */
#include "store.h"

#include <string.h>

#include <lmdb.h>

#include "mm_log.h"
#include "store_int.h"
#include "trust.h"

/* meta key prefix + origin -> the highest origin_seq held with no gap
 * below it (8 bytes, big-endian); absent means 0. */
#define META_CONTIG "contig:"
#define CONTIG_KEY_MAX (sizeof(META_CONTIG) - 1 + RECORD_NAME_MAX)

static void
contig_key(const char *origin, uint8_t *k, size_t *len_r)
{
	size_t plen = sizeof(META_CONTIG) - 1, olen = strlen(origin);

	memcpy(k, META_CONTIG, plen);
	memcpy(k + plen, origin, olen);
	*len_r = plen + olen;
}

/* Moves origin's contiguous mark over every log entry that directly
 * follows it; one seek, then a step per entry gained. 0, or -1 (ctx). */
int
store_contig_advance(struct wctx *ctx, const char *origin)
{
	uint8_t ck[CONTIG_KEY_MAX], lk[LOG_KEY_MAX], cur[8];
	size_t olen = strlen(origin), plen = sizeof(META_CONTIG) - 1;
	MDB_cursor *c = NULL;
	MDB_val key, val;
	uint64_t contig = 0, start, next;
	int g, mrc;

	if (olen == 0 || olen > RECORD_NAME_MAX)
		return 0;
	memcpy(ck, META_CONTIG, plen);
	memcpy(ck + plen, origin, olen);
	key = val_bin(ck, plen + olen);
	g = tx_get(ctx, DBI_META, &key, &val);
	if (g < 0)
		return -1;
	if (g == 0 && val.mv_size == 8)
		contig = be64_get(val.mv_data);
	start = contig;
	next = contig + 1;
	memcpy(lk, origin, olen);
	lk[olen] = '\0';
	be64_put(lk + olen + 1, next);
	if ((mrc = mdb_cursor_open(ctx->txn, ctx->st->dbi[DBI_LOG], &c)) != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	key = val_bin(lk, olen + 1 + 8);
	mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
	while (mrc == 0 && key.mv_size == olen + 1 + 8 &&
	    memcmp(key.mv_data, lk, olen + 1) == 0 &&
	    be64_get((const uint8_t *)key.mv_data + olen + 1) == next) {
		contig = next++;
		mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(c);
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	if (contig == start)
		return 0;
	be64_put(cur, contig);
	val = val_bin(cur, sizeof(cur));
	key = val_bin(ck, plen + olen);
	return tx_put(ctx, DBI_META, &key, &val, 0);
}

enum accept_result
store_log_add(struct wctx *ctx, const char *origin, uint64_t origin_seq,
    const uint8_t *env, size_t len, int overwrite)
{
	uint8_t k[LOG_KEY_MAX], cur[8];
	size_t olen = strlen(origin);
	MDB_val key, val;
	int g;

	memcpy(k, origin, olen);
	k[olen] = '\0';
	be64_put(k + olen + 1, origin_seq);
	key = val_bin(k, olen + 1 + 8);
	val = val_bin(env, len);
	if (tx_put(ctx, DBI_LOG, &key, &val,
	    overwrite ? 0 : MDB_NOOVERWRITE) < 0 ||
	    store_contig_advance(ctx, origin) < 0)
		return REJECT_STORE;

	key = val_str(origin);
	g = tx_get(ctx, DBI_ORIGINS, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0 && val.mv_size == 8 && be64_get(val.mv_data) >= origin_seq)
		return ACCEPT_STORED;
	be64_put(cur, origin_seq);
	val = val_bin(cur, sizeof(cur));
	if (tx_put(ctx, DBI_ORIGINS, &key, &val, 0) < 0)
		return REJECT_STORE;
	return ACCEPT_STORED;
}

int
store_next_origin_seq(struct store *st, const char *origin,
    uint64_t *seq_r)
{
	MDB_txn *txn;
	MDB_val key = val_str(origin), val;
	int rc = -1, mrc;

	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_ORIGINS], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		*seq_r = 1;
		rc = 0;
	} else if (mrc == 0 && val.mv_size == 8) {
		*seq_r = be64_get(val.mv_data) + 1;
		rc = 0;
	} else {
		log_warnx("- dir store origin path=%s error=\"%s\"", st->path,
		    mrc != 0 ? mdb_strerror(mrc) : "damaged entry");
	}
	store_read_end(st);
	return rc;
}

int
store_foreach_origin(struct store *st, store_origin_cb cb, void *arg)
{
	char origin[RECORD_NAME_MAX + 1];
	uint8_t ck[CONTIG_KEY_MAX];
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val, cval, ckey;
	uint64_t highest, contig;
	size_t cklen;
	int rc = -1, mrc;

	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_ORIGINS], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (key.mv_size == 0 || key.mv_size > RECORD_NAME_MAX ||
		    val.mv_size != 8)
			continue;
		memcpy(origin, key.mv_data, key.mv_size);
		origin[key.mv_size] = '\0';
		highest = be64_get(val.mv_data);
		contig = 0;
		contig_key(origin, ck, &cklen);
		ckey = val_bin(ck, cklen);
		if (mdb_get(txn, st->dbi[DBI_META], &ckey, &cval) == 0 &&
		    cval.mv_size == 8)
			contig = be64_get(cval.mv_data);
		if (cb(origin, contig, highest, arg) != 0)
			break;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
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

int
store_origin_contig(struct store *st, const char *origin, uint64_t *contig_r)
{
	uint8_t ck[CONTIG_KEY_MAX];
	MDB_txn *txn;
	MDB_val key, val;
	size_t cklen;
	int mrc;

	*contig_r = 0;
	if (strlen(origin) > RECORD_NAME_MAX)
		return -1;
	contig_key(origin, ck, &cklen);
	key = val_bin(ck, cklen);
	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == 0 && val.mv_size == 8)
		*contig_r = be64_get(val.mv_data);
	store_read_end(st);
	return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : -1;
}

int
store_log_range(struct store *st, const char *origin, uint64_t from_seq,
    store_log_cb cb, void *arg)
{
	uint8_t lk[LOG_KEY_MAX];
	size_t olen = strlen(origin);
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	uint64_t next = from_seq, seq;
	int rc = -1, mrc;

	if (olen == 0 || olen > RECORD_NAME_MAX)
		return -1;
	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_LOG], &cur)) != 0)
		goto fail;
	memcpy(lk, origin, olen);
	lk[olen] = '\0';
	be64_put(lk + olen + 1, from_seq);
	key = val_bin(lk, olen + 1 + 8);
	mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (mrc == 0) {
		if (key.mv_size != olen + 1 + 8 ||
		    memcmp(key.mv_data, lk, olen + 1) != 0)
			break;
		seq = be64_get((const uint8_t *)key.mv_data + olen + 1);
		if (seq != next)
			break;	/* a gap: what follows is not contiguous */
		next++;
		if (cb(seq, val.mv_data, val.mv_size, arg) != 0)
			break;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
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

struct fill_arg {
	const uint8_t *env;
	size_t len;
	int res;		/* 1 filled, 0 held already, -1 refused */
};

/* Whether r may take its place in its origin's log: a user record signed
 * by a key the root certified to sign records, revoked or expired since
 * or not, and numbered under that key's own name (TRUST_USE_LOG); a
 * certificate or revocation signed by the root. 1 yes, 0 no, -1 error. */
static int
fill_trusted(struct wctx *ctx, const struct record *r)
{
	struct trust_ctx t;
	struct record_cert c;
	uint8_t root[DKEY_PK_LEN];
	enum trust_verdict v;
	int rc = 0;

	store_trust_txn(ctx, &t);
	if (r->kind == RECORD_USER) {
		v = trust_check(&t, r->key_id, NULL, TRUST_USE_LOG, NULL,
		    r->u.user.origin, ctx->now, &c);
		if (v == TRUST_OK && record_verify(r, c.pk) == 0)
			rc = 1;
	} else {
		v = trust_check(&t, r->key_id, NULL, TRUST_USE_ROOT, NULL,
		    NULL, ctx->now, NULL);
		if (v == TRUST_OK && trust_root(&t, root) == 1 &&
		    record_verify(r, root) == 0)
			rc = 1;
	}
	if (v == TRUST_STORE_ERROR)
		rc = -1;
	trust_clear(&t);
	return rc;
}

static int
fill_fn(struct wctx *ctx, void *arg)
{
	struct fill_arg *a = arg;
	uint8_t lk[LOG_KEY_MAX];
	struct record r;
	const char *origin;
	uint64_t origin_seq;
	size_t olen;
	MDB_val key, val;
	int g;

	a->res = -1;
	if (a->len > RECORD_MAX || record_decode(a->env, a->len, &r,
	    NULL) < 0)
		return 1;
	if ((g = fill_trusted(ctx, &r)) <= 0)
		return g < 0 ? -1 : 1;
	if (r.kind == RECORD_USER) {
		origin = r.u.user.origin;
		origin_seq = r.u.user.origin_seq;
	} else {
		origin = r.kind == RECORD_CERT ? r.u.cert.origin :
		    r.u.revoke.origin;
		origin_seq = r.kind == RECORD_CERT ? r.u.cert.origin_seq :
		    r.u.revoke.origin_seq;
	}
	olen = strlen(origin);
	memcpy(lk, origin, olen);
	lk[olen] = '\0';
	be64_put(lk + olen + 1, origin_seq);
	key = val_bin(lk, olen + 1 + 8);
	g = tx_get(ctx, DBI_LOG, &key, &val);
	if (g < 0)
		return -1;
	if (g == 0) {
		a->res = 0;
		return 1;
	}
	val = val_bin(a->env, a->len);
	if (tx_put(ctx, DBI_LOG, &key, &val, MDB_NOOVERWRITE) < 0 ||
	    store_contig_advance(ctx, origin) < 0)
		return -1;
	/* The origin's highest, too, so that its digest entry exists. */
	key = val_str(origin);
	g = tx_get(ctx, DBI_ORIGINS, &key, &val);
	if (g < 0)
		return -1;
	if (g > 0 || val.mv_size != 8 || be64_get(val.mv_data) < origin_seq) {
		uint8_t cur[8];

		be64_put(cur, origin_seq);
		val = val_bin(cur, sizeof(cur));
		if (tx_put(ctx, DBI_ORIGINS, &key, &val, 0) < 0)
			return -1;
	}
	a->res = 1;
	return 0;
}

int
store_log_fill(struct store *st, const uint8_t *env, size_t len,
    uint64_t now)
{
	struct fill_arg a = { env, len, -1 };

	if (store_write(st, now, fill_fn, &a) < 0)
		return -1;
	return a.res;
}
