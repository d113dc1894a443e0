/* The directory store: signed records in LMDB, and the accept rule. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"

#define STORE_MAXDBS 16
#define ROUTE_VALUE_MAX (3 + RECORD_SITE_MAX + RECORD_NAME_MAX)
#define STORE_MAXREADERS 512	/* proxy workers, tools, tests */
#define STORE_DATA_FILE "data.mdb"
/* Map doublings (or re-reads of another writer's size) per transaction. */
#define STORE_GROW_TRIES 16
#define STORE_DISK_FULL_BYTES (1024 * 1024)	/* less free than this: full */
#define META_SCHEMA "schema_version"
#define META_ROOT "root_pk"
/* meta key prefix + origin -> the highest origin_seq held with no gap
 * below it (8 bytes, big-endian); absent means 0. */
#define META_CONTIG "contig:"
#define CONTIG_KEY_MAX (sizeof(META_CONTIG) - 1 + RECORD_NAME_MAX)
#define HWM_HASH_LEN 16		/* BLAKE2b of the body: duplicate check */
#define HWM_FIXED (8 + 8 + HWM_HASH_LEN)
#define EVIDENCE_HASH_LEN 32
#define LOG_KEY_MAX (RECORD_NAME_MAX + 1 + 8)
/* Batches at least this long verify their signatures on all cores. */
#define PARALLEL_VERIFY_MIN 64
/* Batches of local writes at least this long sign on all cores. */
#define PARALLEL_SIGN_MIN 32
#define VERIFY_THREADS_MAX 8
#define VERIFY_CHUNK 4096	/* store_verify: records per parallel round */
#define LOG_USER_MAX (4 * RECORD_USER_MAX + 1)

enum {
	DBI_META,
	DBI_USERS,
	DBI_HWM,
	DBI_LOG,
	DBI_ORIGINS,
	DBI_CERTS,
	DBI_REVOKED,
	DBI_EVIDENCE,
	DBI_ROUTES,
	DBI_COUNT
};

static const char *const dbi_names[DBI_COUNT] = {
	"meta", "users", "hwm", "log", "origins", "certs", "revoked",
	"evidence", "routes",
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[DBI_COUNT];
	enum store_mode mode;
	MDB_txn *rtxn;		/* reset between lookups, renewed for each */
	char *path;
	uint64_t counts[STORE_ACCEPT_RESULTS];
	int last_error;		/* LMDB or errno value of the last failed write */
};

struct hwm {
	uint64_t epoch, seq;
	uint8_t hash[HWM_HASH_LEN];
	char site[RECORD_SITE_MAX + 1];
};

/* A signature checked ahead of the rule (in parallel): valid only for
 * the key it was checked against. */
struct vjob {
	const uint8_t *body;
	size_t body_len;
	const uint8_t *sig;
	uint8_t pk[DKEY_PK_LEN];
	int have_pk;
	int ok;
};

/* One write transaction's state. */
struct wctx {
	struct store *st;
	MDB_txn *txn;
	uint64_t now;
	int mdb_rc;		/* the LMDB error behind a REJECT_STORE */
	int changed;
};

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

/* ---- small helpers --------------------------------------------------- */

static void
be64_put(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t
be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void
body_hash(const struct record *r, uint8_t out[HWM_HASH_LEN])
{
	crypto_generichash(out, HWM_HASH_LEN, r->body, r->body_len, NULL, 0);
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

static MDB_val
val_str(const char *s)
{
	MDB_val v = { strlen(s), (void *)(uintptr_t)s };

	return v;
}

static MDB_val
val_bin(const void *p, size_t len)
{
	MDB_val v = { len, (void *)(uintptr_t)p };

	return v;
}

static int
hwm_parse(const MDB_val *v, struct hwm *h)
{
	size_t sitelen;
	const uint8_t *p = v->mv_data;

	if (v->mv_size < HWM_FIXED || v->mv_size > HWM_FIXED + RECORD_SITE_MAX)
		return -1;
	h->epoch = be64_get(p);
	h->seq = be64_get(p + 8);
	memcpy(h->hash, p + 16, HWM_HASH_LEN);
	sitelen = v->mv_size - HWM_FIXED;
	memcpy(h->site, p + HWM_FIXED, sitelen);
	h->site[sitelen] = '\0';
	return 0;
}

/* ---- opening --------------------------------------------------------- */

static int
mdb_fail(char **errstr_r, const char *path, const char *what, int rc)
{
	*errstr_r = xasprintf("%s: %s: %s", path, what, mdb_strerror(rc));
	return -1;
}

/* Opens the sub-databases and checks (or, new, writes) the schema. */
static int
open_dbis(struct store *st, char **errstr_r)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	uint8_t ver[4];
	unsigned int flags = st->mode == STORE_WRITE ? MDB_CREATE : 0;
	int rc = -1, mrc, i;

	mrc = mdb_txn_begin(st->env, NULL,
	    st->mode == STORE_READONLY ? MDB_RDONLY : 0, &txn);
	if (mrc != 0) {
		mdb_fail(errstr_r, st->path, "begin", mrc);
		goto done;
	}
	for (i = 0; i < DBI_COUNT; i++) {
		mrc = mdb_dbi_open(txn, dbi_names[i], flags, &st->dbi[i]);
		if (mrc == MDB_NOTFOUND) {
			*errstr_r = xasprintf("%s: not an initialised directory "
			    "store (no \"%s\" database); open it once in write "
			    "mode", st->path, dbi_names[i]);
			goto done;
		}
		if (mrc != 0) {
			mdb_fail(errstr_r, st->path, dbi_names[i], mrc);
			goto done;
		}
	}
	key = val_str(META_SCHEMA);
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == MDB_NOTFOUND && st->mode == STORE_WRITE) {
		ver[0] = (uint8_t)(STORE_SCHEMA_VERSION >> 24);
		ver[1] = (uint8_t)(STORE_SCHEMA_VERSION >> 16);
		ver[2] = (uint8_t)(STORE_SCHEMA_VERSION >> 8);
		ver[3] = (uint8_t)STORE_SCHEMA_VERSION;
		val = val_bin(ver, sizeof(ver));
		mrc = mdb_put(txn, st->dbi[DBI_META], &key, &val, 0);
	}
	if (mrc == MDB_NOTFOUND) {
		*errstr_r = xasprintf("%s: directory store has no schema "
		    "version; open it once in write mode", st->path);
		goto done;
	}
	if (mrc != 0) {
		mdb_fail(errstr_r, st->path, "schema version", mrc);
		goto done;
	}
	if (val.mv_size != 4) {
		*errstr_r = xasprintf("%s: malformed schema version",
		    st->path);
		goto done;
	} else {
		const uint8_t *p = val.mv_data;
		uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		    (uint32_t)p[2] << 8 | p[3];

		if (v != STORE_SCHEMA_VERSION) {
			*errstr_r = xasprintf("%s: directory store has schema "
			    "version %" PRIu32 ", this program needs version "
			    "%d; migrate or rebuild the store", st->path, v,
			    STORE_SCHEMA_VERSION);
			goto done;
		}
	}
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc != 0) {
		mdb_fail(errstr_r, st->path, "commit", mrc);
		goto done;
	}
	rc = 0;
done:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return rc;
}

struct store *
store_open_sized(const char *path, enum store_mode mode, uint64_t mapsize,
    char **errstr_r)
{
	struct store *st = NULL;
	struct stat sb;
	char *data = NULL;
	unsigned int flags = MDB_NOTLS;
	int mrc, ok = 0;

	if (dkey_init() < 0) {
		*errstr_r = xstrdup("libsodium did not start");
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->mode = mode;
	st->path = xstrdup(path);
	if (mode == STORE_WRITE) {
		if (mkdir(path, 0700) < 0 && errno != EEXIST) {
			*errstr_r = xasprintf("%s: cannot create directory: %s",
			    path, strerror(errno));
			goto done;
		}
	} else {
		/* Lookups land on random pages: reading ahead around each
		 * only evicts pages that other lookups need. */
		flags |= MDB_RDONLY | MDB_NORDAHEAD;
	}
	if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		*errstr_r = xasprintf("%s: no directory store here (not a "
		    "directory); open it once in write mode", path);
		goto done;
	}
	if ((mrc = mdb_env_create(&st->env)) != 0) {
		mdb_fail(errstr_r, path, "mdb_env_create", mrc);
		goto done;
	}
	mdb_env_set_maxdbs(st->env, STORE_MAXDBS);
	mdb_env_set_maxreaders(st->env, STORE_MAXREADERS);
	/* An existing store keeps the size it has grown to. */
	data = xasprintf("%s/%s", path, STORE_DATA_FILE);
	if (stat(data, &sb) < 0 && errno == ENOENT) {
		if (mode == STORE_READONLY) {
			*errstr_r = xasprintf("%s: no directory store here; "
			    "open it once in write mode", path);
			goto done;
		}
		mdb_env_set_mapsize(st->env, mapsize);
	}
	if ((mrc = mdb_env_open(st->env, path, flags, 0600)) != 0) {
		mdb_fail(errstr_r, path, "mdb_env_open", mrc);
		goto done;
	}
	if (open_dbis(st, errstr_r) < 0)
		goto done;
	ok = 1;
done:
	free(data);
	if (!ok) {
		store_close(st);
		st = NULL;
	}
	return st;
}

struct store *
store_open(const char *path, enum store_mode mode, char **errstr_r)
{
	return store_open_sized(path, mode, STORE_MAPSIZE_INITIAL, errstr_r);
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->rtxn != NULL)
		mdb_txn_abort(st->rtxn);
	if (st->env != NULL)
		mdb_env_close(st->env);
	free(st->path);
	free(st);
}

void
store_accept_counts(struct store *st, uint64_t counts_r[STORE_ACCEPT_RESULTS])
{
	memcpy(counts_r, st->counts, sizeof(st->counts));
}

/* ---- transactions ---------------------------------------------------- */

/* The store's one read transaction, renewed: no allocation per lookup. */
static int
read_begin(struct store *st, MDB_txn **txn_r)
{
	int mrc = 0, tries;

	for (tries = 0; tries < STORE_GROW_TRIES; tries++) {
		if (st->rtxn != NULL)
			mrc = mdb_txn_renew(st->rtxn);
		else
			mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY,
			    &st->rtxn);
		if (mrc == 0) {
			*txn_r = st->rtxn;
			return 0;
		}
		if (st->rtxn != NULL) {
			mdb_txn_abort(st->rtxn);
			st->rtxn = NULL;
		}
		/* A writer elsewhere grew the map: adopt its size. */
		if (mrc != MDB_MAP_RESIZED)
			break;
		mdb_env_set_mapsize(st->env, 0);
	}
	log_warnx("- dir store read-begin path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
	return -1;
}

static void
read_end(struct store *st)
{
	mdb_txn_reset(st->rtxn);
}

/* A separate read transaction for long walks: callbacks may look users up
 * meanwhile through the store's own one. */
static int
walk_begin(struct store *st, MDB_txn **txn_r)
{
	int mrc = 0, tries;

	for (tries = 0; tries < STORE_GROW_TRIES; tries++) {
		mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn_r);
		if (mrc != MDB_MAP_RESIZED)
			break;
		mdb_env_set_mapsize(st->env, 0);
	}
	if (mrc != 0) {
		log_warnx("- dir store read-begin path=%s error=\"%s\"",
		    st->path, mdb_strerror(mrc));
		return -1;
	}
	return 0;
}

/* Work done inside a write transaction: 0 commit, 1 nothing to commit,
 * -1 error (ctx->mdb_rc says which). It may run more than once. */
typedef int (*write_fn)(struct wctx *ctx, void *arg);

static int
grow_map(struct store *st)
{
	MDB_envinfo info;
	int mrc;

	mdb_env_info(st->env, &info);
	mrc = mdb_env_set_mapsize(st->env, info.me_mapsize * 2);
	if (mrc != 0) {
		log_warnx("- dir store grow path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
		return -1;
	}
	log_info("- dir store grow path=%s map_bytes=%zu", st->path,
	    info.me_mapsize * 2);
	return 0;
}

/* Whether the file system under path has (almost) no room left. */
static bool
disk_full(const char *path)
{
	struct statvfs sv;

	if (statvfs(path, &sv) != 0)
		return false;
	return (uint64_t)sv.f_bavail * sv.f_frsize < STORE_DISK_FULL_BYTES;
}

/* Runs fn in a write transaction; a full map doubles and fn runs again
 * from the start, so nothing of the failed attempt remains. */
static int
store_write(struct store *st, uint64_t now, write_fn fn, void *arg)
{
	struct wctx ctx;
	int mrc, r, tries;

	if (st->mode != STORE_WRITE) {
		log_warnx("- dir store write path=%s error=\"opened read-only\"",
		    st->path);
		return -1;
	}
	for (tries = 0; tries < STORE_GROW_TRIES; tries++) {
		memset(&ctx, 0, sizeof(ctx));
		ctx.st = st;
		ctx.now = now;
		mrc = mdb_txn_begin(st->env, NULL, 0, &ctx.txn);
		if (mrc == MDB_MAP_RESIZED) {
			mdb_env_set_mapsize(st->env, 0);
			continue;
		}
		if (mrc != 0)
			break;
		r = fn(&ctx, arg);
		if (r == 1) {
			mdb_txn_abort(ctx.txn);
			return 1;
		}
		if (r == 0) {
			mrc = mdb_txn_commit(ctx.txn);
			if (mrc == 0)
				return 0;
		} else {
			mrc = ctx.mdb_rc;
			mdb_txn_abort(ctx.txn);
		}
		if (mrc != MDB_MAP_FULL || grow_map(st) < 0)
			break;
	}
	if (mrc == EIO && disk_full(st->path))
		mrc = ENOSPC;	/* LMDB reports a short write as EIO */
	log_warnx("- dir store write path=%s error=\"%s\"", st->path,
	    mrc != 0 ? mdb_strerror(mrc) : "retries exhausted");
	st->last_error = mrc != 0 ? mrc : MDB_MAP_FULL;
	return -1;
}

const char *
store_last_error(const struct store *st)
{
	return st->last_error != 0 ? mdb_strerror(st->last_error) : NULL;
}

/* ---- lookups inside a transaction ------------------------------------ */

/* 0 found, 1 not found, -1 LMDB error (in ctx). */
static int
tx_get(struct wctx *ctx, int dbi, MDB_val *key, MDB_val *val)
{
	int mrc = mdb_get(ctx->txn, ctx->st->dbi[dbi], key, val);

	if (mrc == 0)
		return 0;
	if (mrc == MDB_NOTFOUND)
		return 1;
	ctx->mdb_rc = mrc;
	return -1;
}

static int
tx_put(struct wctx *ctx, int dbi, MDB_val *key, MDB_val *val,
    unsigned int flags)
{
	int mrc = mdb_put(ctx->txn, ctx->st->dbi[dbi], key, val, flags);

	if (mrc == 0) {
		ctx->changed = 1;
		return 0;
	}
	if (mrc == MDB_KEYEXIST && (flags & MDB_NOOVERWRITE))
		return 0;
	ctx->mdb_rc = mrc;
	return -1;
}

/* 1 root set (pk_r), 0 none, -1 error. */
static int
get_root(MDB_txn *txn, struct store *st, uint8_t pk_r[DKEY_PK_LEN])
{
	MDB_val key = val_str(META_ROOT), val;
	int mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);

	if (mrc == MDB_NOTFOUND)
		return 0;
	if (mrc != 0 || val.mv_size != DKEY_PK_LEN)
		return -1;
	memcpy(pk_r, val.mv_data, DKEY_PK_LEN);
	return 1;
}

/* The certificate of key id, decoded; buffer lives in the map. */
static int
get_cert(struct wctx *ctx, const uint8_t id[DKEY_ID_LEN], struct record *c_r)
{
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int r = tx_get(ctx, DBI_CERTS, &key, &val);

	if (r != 0)
		return r;
	if (record_decode(val.mv_data, val.mv_size, c_r, NULL) < 0 ||
	    c_r->kind != RECORD_CERT)
		return 1;	/* a damaged entry certifies nothing */
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

/* Moves origin's contiguous mark over every log entry that directly
 * follows it; one seek, then a step per entry gained. 0, or -1 (ctx). */
static int
contig_advance(struct wctx *ctx, const char *origin)
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

static enum accept_result
log_and_origin(struct wctx *ctx, const char *origin, uint64_t origin_seq,
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
	    contig_advance(ctx, origin) < 0)
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

/*
 * The routing index: user -> [state, site length, site, back-end length,
 * back end], a few dozen bytes beside each full record. The proxy reads
 * only this: the tree it walks is a fraction of the size of the records'
 * tree, so a lookup touches fewer pages. It is written in the same
 * transaction as the record it summarises, and verify compares the two.
 */
static size_t
route_encode(enum user_state state, const char *site, const char *backend,
    uint8_t out[ROUTE_VALUE_MAX])
{
	size_t sl = strlen(site), bl = strlen(backend), n = 0;

	out[n++] = (uint8_t)state;
	out[n++] = (uint8_t)sl;
	memcpy(out + n, site, sl);
	n += sl;
	out[n++] = (uint8_t)bl;
	memcpy(out + n, backend, bl);
	return n + bl;
}

static int
route_decode(const uint8_t *v, size_t len, struct store_route *r)
{
	size_t sl, bl;

	if (len < 3 || v[0] < USTATE_ACTIVE || v[0] > USTATE_DELETED)
		return -1;
	sl = v[1];
	if (sl > RECORD_SITE_MAX || 2 + sl + 1 > len)
		return -1;
	bl = v[2 + sl];
	if (bl > RECORD_NAME_MAX || 3 + sl + bl != len)
		return -1;
	r->state = (enum user_state)v[0];
	memcpy(r->site, v + 2, sl);
	r->site[sl] = '\0';
	memcpy(r->backend, v + 3 + sl, bl);
	r->backend[bl] = '\0';
	return 0;
}

static int
put_route(struct wctx *ctx, const char *user, enum user_state state,
    const char *site, const char *backend)
{
	uint8_t v[ROUTE_VALUE_MAX];
	MDB_val key = val_str(user), val;

	val = val_bin(v, route_encode(state, site, backend, v));
	return tx_put(ctx, DBI_ROUTES, &key, &val, 0);
}

/* Makes r the current record of its user. */
static enum accept_result
put_current(struct wctx *ctx, const struct record *r, const uint8_t *env,
    size_t len)
{
	const struct record_user *u = &r->u.user;
	uint8_t h[HWM_FIXED + RECORD_SITE_MAX];
	size_t sitelen = strlen(u->site);
	MDB_val key = val_str(u->user), val;

	val = val_bin(env, len);
	if (tx_put(ctx, DBI_USERS, &key, &val, 0) < 0 ||
	    put_route(ctx, u->user, u->state, u->site, u->backend) < 0)
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
	if (log_and_origin(ctx, r->u.user.origin, r->u.user.origin_seq, env,
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
	return log_and_origin(ctx, u->origin, u->origin_seq, env, len, 1);
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
	return log_and_origin(ctx, origin, origin_seq, env, len, 1);
}

/* The one accept path: gossip, imports and local writes all come here. */
static enum accept_result
accept_in_txn(struct wctx *ctx, const uint8_t *env, size_t len,
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

struct vpool {
	struct vjob *jobs;
	size_t n, stride, first;
};

static void
vrun(struct vjob *jobs, size_t n, size_t first, size_t stride)
{
	size_t i;

	for (i = first; i < n; i += stride) {
		struct vjob *j = &jobs[i];

		if (j->have_pk)
			j->ok = dkey_verify(j->pk, RECORD_SIG_PREFIX, j->body,
			    j->body_len, j->sig) == 0;
	}
}

static void *
vthread(void *arg)
{
	struct vpool *p = arg;

	vrun(p->jobs, p->n, p->first, p->stride);
	return NULL;
}

static size_t
verify_threads(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > VERIFY_THREADS_MAX ? VERIFY_THREADS_MAX : (size_t)n;
}

/* Checks jobs on every core; the calling thread takes one share. */
static void
verify_parallel(struct vjob *jobs, size_t n)
{
	pthread_t tid[VERIFY_THREADS_MAX];
	struct vpool pool[VERIFY_THREADS_MAX];
	size_t nt = verify_threads(), started = 0, i;

	if (n < PARALLEL_VERIFY_MIN)
		nt = 1;
	for (i = 1; i < nt; i++) {
		pool[i] = (struct vpool){ jobs, n, nt, i };
		if (pthread_create(&tid[i], NULL, vthread, &pool[i]) != 0)
			break;
		started++;
	}
	/* Shares of threads that did not start are done here. */
	vrun(jobs, n, 0, nt);
	for (i = 1 + started; i < nt; i++)
		vrun(jobs, n, i, nt);
	for (i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
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
		b->results[i] = accept_in_txn(ctx, b->envs[i], b->lens[i],
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
	if (n >= PARALLEL_VERIFY_MIN && verify_threads() > 1)
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

/* ---- root ------------------------------------------------------------ */

struct root_arg {
	const uint8_t *pk;
	int conflict;
};

static int
root_fn(struct wctx *ctx, void *arg)
{
	struct root_arg *a = arg;
	uint8_t cur[DKEY_PK_LEN];
	MDB_val key = val_str(META_ROOT), val;
	int g = get_root(ctx->txn, ctx->st, cur);

	a->conflict = 0;
	if (g < 0) {
		ctx->mdb_rc = MDB_CORRUPTED;
		return -1;
	}
	if (g == 1) {
		a->conflict = memcmp(cur, a->pk, DKEY_PK_LEN) != 0;
		return 1;
	}
	val = val_bin(a->pk, DKEY_PK_LEN);
	return tx_put(ctx, DBI_META, &key, &val, 0) < 0 ? -1 : 0;
}

int
store_set_root(struct store *st, const uint8_t pk[DKEY_PK_LEN],
    char **errstr_r)
{
	struct root_arg a = { pk, 0 };

	if (st->mode != STORE_WRITE) {
		*errstr_r = xasprintf("%s: store opened read-only", st->path);
		return -1;
	}
	if (store_write(st, 0, root_fn, &a) < 0) {
		*errstr_r = xasprintf("%s: cannot write the root key",
		    st->path);
		return -1;
	}
	if (a.conflict) {
		*errstr_r = xasprintf("%s: another root key is set already; "
		    "the root key never changes", st->path);
		return -1;
	}
	return 0;
}

int
store_get_root(struct store *st, uint8_t pk_r[DKEY_PK_LEN])
{
	MDB_txn *txn;
	int r;

	if (read_begin(st, &txn) < 0)
		return -1;
	r = get_root(txn, st, pk_r);
	read_end(st);
	return r;
}

/* ---- reading --------------------------------------------------------- */

int
store_get_user(struct store *st, const char *user,
    struct record_user *u_r, uint8_t **buf_r, size_t *len_r)
{
	MDB_txn *txn;
	MDB_val key, val;
	const char *why = NULL;
	int rc = -1, mrc;
	size_t ulen = strnlen(user, RECORD_USER_MAX + 1);

	if (buf_r != NULL)
		*buf_r = NULL;
	if (ulen == 0 || ulen > RECORD_USER_MAX)
		return 0;
	if (read_begin(st, &txn) < 0)
		return -1;
	key = val_bin(user, ulen);
	mrc = mdb_get(txn, st->dbi[DBI_USERS], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		rc = 0;
		goto done;
	}
	if (mrc != 0) {
		log_warnx("- dir store get path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
		goto done;
	}
	if (buf_r != NULL) {
		*buf_r = xmalloc(val.mv_size);
		memcpy(*buf_r, val.mv_data, val.mv_size);
		val.mv_data = *buf_r;
	}
	/* Straight into the caller's struct: no second copy. */
	if (record_decode_user(val.mv_data, val.mv_size, u_r, &why) < 0) {
		char esc[LOG_USER_MAX];

		log_warnx("- dir store bad-record user=%s reason=\"%s\"",
		    mm_log_escape(user, esc, sizeof(esc)), why);
		st->counts[REJECT_MALFORMED]++;
		goto done;
	}
	if (buf_r == NULL)
		u_r->transfer = NULL;	/* pointed into the map */
	if (len_r != NULL)
		*len_r = val.mv_size;
	rc = 1;
done:
	read_end(st);
	if (rc != 1 && buf_r != NULL) {
		free(*buf_r);
		*buf_r = NULL;
	}
	return rc;
}

int
store_get_route(struct store *st, const char *user, struct store_route *r_r)
{
	MDB_txn *txn;
	MDB_val key, val;
	size_t ulen = strnlen(user, RECORD_USER_MAX + 1);
	int rc = -1, mrc;

	if (ulen == 0 || ulen > RECORD_USER_MAX)
		return 0;
	if (read_begin(st, &txn) < 0)
		return -1;
	key = val_bin(user, ulen);
	mrc = mdb_get(txn, st->dbi[DBI_ROUTES], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		rc = 0;
	} else if (mrc != 0) {
		log_warnx("- dir store get path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
	} else if (route_decode(val.mv_data, val.mv_size, r_r) < 0) {
		char esc[LOG_USER_MAX];

		log_warnx("- dir store bad-route user=%s",
		    mm_log_escape(user, esc, sizeof(esc)));
		st->counts[REJECT_MALFORMED]++;
	} else {
		rc = 1;
	}
	read_end(st);
	return rc;
}

/* Calls cb for every record of kind in sub-database dbi, in key order;
 * one that does not decode is logged and skipped. */
static int
foreach_record(struct store *st, int dbi, enum record_kind kind,
    store_user_cb cb, void *arg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	struct record r;
	int rc = -1, mrc;

	if (walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[dbi], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (record_decode(val.mv_data, val.mv_size, &r, NULL) < 0 ||
		    r.kind != kind) {
			log_warnx("- dir store bad-record path=%s db=%s",
			    st->path, dbi_names[dbi]);
			continue;
		}
		if (cb(&r, val.mv_data, val.mv_size, arg) != 0)
			break;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		goto fail;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store walk path=%s db=%s error=\"%s\"", st->path,
	    dbi_names[dbi], mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc;
}

int
store_foreach_user(struct store *st, store_user_cb cb, void *arg)
{
	return foreach_record(st, DBI_USERS, RECORD_USER, cb, arg);
}

/* ---- trust state ----------------------------------------------------- */

int
store_get_cert(struct store *st, const uint8_t id[DKEY_ID_LEN],
    struct record_cert *c_r)
{
	struct record r;
	MDB_txn *txn;
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int rc = -1, mrc;

	if (read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_CERTS], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		rc = 0;
	} else if (mrc != 0) {
		log_warnx("- dir store get-cert path=%s error=\"%s\"",
		    st->path, mdb_strerror(mrc));
	} else if (record_decode(val.mv_data, val.mv_size, &r, NULL) < 0 ||
	    r.kind != RECORD_CERT) {
		rc = 0;		/* a damaged entry certifies nothing */
	} else {
		*c_r = r.u.cert;
		rc = 1;
	}
	read_end(st);
	return rc;
}

int
store_foreach_cert(struct store *st, store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_CERTS, RECORD_CERT, cb, arg);
}

int
store_foreach_revoked(struct store *st, store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_REVOKED, RECORD_REVOKE, cb, arg);
}

int
store_next_origin_seq(struct store *st, const char *origin,
    uint64_t *seq_r)
{
	MDB_txn *txn;
	MDB_val key = val_str(origin), val;
	int rc = -1, mrc;

	if (read_begin(st, &txn) < 0)
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
	read_end(st);
	return rc;
}

/* The sizes of store_stats; with walk, the tombstones too. */
static int
stats(struct store *st, struct store_stats *s_r, bool walk)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_stat ms;
	MDB_envinfo info;
	MDB_val key, val;
	struct record r;
	int rc = -1, mrc;

	memset(s_r, 0, sizeof(*s_r));
	if (walk_begin(st, &txn) < 0)
		return -1;
#define ENTRIES(d, field) do {						\
	if ((mrc = mdb_stat(txn, st->dbi[d], &ms)) != 0)		\
		goto fail;						\
	s_r->field = ms.ms_entries;					\
} while (0)
	ENTRIES(DBI_USERS, users);
	ENTRIES(DBI_CERTS, certs);
	ENTRIES(DBI_REVOKED, revoked);
	ENTRIES(DBI_ORIGINS, origins);
	ENTRIES(DBI_EVIDENCE, evidence);
#undef ENTRIES
	if (walk) {
		if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
			goto fail;
		while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
			if (record_decode(val.mv_data, val.mv_size, &r,
			    NULL) == 0 && r.kind == RECORD_USER &&
			    r.u.user.state == USTATE_DELETED)
				s_r->tombstones++;
		}
		if (mrc != MDB_NOTFOUND)
			goto fail;
	}
	mdb_env_info(st->env, &info);
	if ((mrc = mdb_env_stat(st->env, &ms)) != 0)
		goto fail;
	s_r->map_bytes = info.me_mapsize;
	s_r->used_bytes = (uint64_t)(info.me_last_pgno + 1) * ms.ms_psize;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store stats path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc;
}

int
store_stats(struct store *st, struct store_stats *s_r)
{
	return stats(st, s_r, true);
}

int
store_sizes(struct store *st, struct store_stats *s_r)
{
	return stats(st, s_r, false);
}

/* ---- authoring ------------------------------------------------------- */

/* The signer's own certificate, checked once per batch in place of a
 * check of every signature the batch makes with that key. */
static enum accept_result
check_own_signer(struct wctx *ctx, const struct store_signer *sg)
{
	struct record c;
	MDB_val key = val_bin(sg->key->id, DKEY_ID_LEN), val;
	int g;

	g = get_cert(ctx, sg->key->id, &c);
	if (g < 0)
		return REJECT_STORE;
	if (g > 0 || memcmp(c.u.cert.pk, sg->key->pk, DKEY_PK_LEN) != 0)
		return REJECT_UNKNOWN_KEY;
	g = tx_get(ctx, DBI_REVOKED, &key, &val);
	if (g < 0)
		return REJECT_STORE;
	if (g == 0)
		return REJECT_REVOKED;
	if (c.u.cert.expires != 0 && c.u.cert.expires <= ctx->now)
		return REJECT_EXPIRED;
	if (strcmp(c.u.cert.site, sg->site) != 0)
		return REJECT_WRONG_SITE;
	/* The same rule as for records from elsewhere: a transport key signs
	 * nothing, and a node numbers only its own origin. */
	if (c.u.cert.role == ROLE_TRANSPORT)
		return REJECT_WRONG_SITE;
	if (strcmp(c.u.cert.name, sg->origin) != 0)
		return REJECT_WRONG_ORIGIN;
	return ACCEPT_STORED;
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

struct spool {
	struct puts *b;
	size_t first, stride;
};

static void
sign_share(struct puts *b, size_t first, size_t stride)
{
	const char *why;
	size_t i;
	int n;

	for (i = first; i < b->nplans; i += stride) {
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

static void *
sign_thread(void *arg)
{
	struct spool *sp = arg;

	sign_share(sp->b, sp->first, sp->stride);
	return NULL;
}

/* Signs every planned record on all cores; the calling thread takes one
 * share. */
static void
sign_parallel(struct puts *b)
{
	pthread_t tid[VERIFY_THREADS_MAX];
	struct spool pool[VERIFY_THREADS_MAX];
	size_t nt = verify_threads(), started = 0, i;

	if (b->nplans < PARALLEL_SIGN_MIN)
		nt = 1;
	for (i = 1; i < nt; i++) {
		pool[i] = (struct spool){ b, i, nt };
		if (pthread_create(&tid[i], NULL, sign_thread, &pool[i]) != 0)
			break;
		started++;
	}
	sign_share(b, 0, nt);
	for (i = 1 + started; i < nt; i++)
		sign_share(b, i, nt);
	for (i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
}

/* Stores a signed record of the batch: current record, high-water mark,
 * log entry. */
static int
store_plan(struct wctx *ctx, struct puts *b, const struct plan *p)
{
	const char *user = b->items[p->item].user;
	const char *origin = b->sg->origin;
	uint8_t h[HWM_FIXED + RECORD_SITE_MAX], k[LOG_KEY_MAX];
	size_t sitelen = strlen(b->sg->site), olen = strlen(origin);
	MDB_val key = val_str(user), val;

	val = val_bin(b->envs + p->env_off, p->env_len);
	if (tx_put(ctx, DBI_USERS, &key, &val, 0) < 0 ||
	    put_route(ctx, user, b->items[p->item].state, b->sg->site,
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
	return contig_advance(ctx, b->sg->origin) < 0 ? -1 : 0;
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
	uint8_t env[RECORD_MAX];
	MDB_val key = val_str(a->user), val;
	const char *why;
	int g, n;

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
	key = val_str(a->sg->origin);
	g = tx_get(ctx, DBI_ORIGINS, &key, &val);
	if (g < 0)
		goto store_error;
	u.origin_seq = (g == 0 && val.mv_size == 8 ?
	    be64_get(val.mv_data) : 0) + 1;

	n = record_encode_user(&u, a->sg->key, env, sizeof(env), &why);
	if (n < 0) {
		log_warnx("- dir store put user=%s error=\"%s\"", a->user,
		    why);
		a->res = REJECT_MALFORMED;
		return 1;
	}
	a->res = accept_in_txn(ctx, env, (size_t)n, NULL);
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

/* ---- checks ---------------------------------------------------------- */

/* A round of store_verify's signature checks. Worker threads and the
 * walking thread take jobs by index until none are left. */
struct vround {
	struct vjob *jobs;
	char (*names)[RECORD_USER_MAX + 1];
	size_t n;
	atomic_size_t next;
	pthread_t tid[VERIFY_THREADS_MAX];
	size_t started;
};

/* A certificate as store_verify trusts it; sorted by id as LMDB is. */
struct vcert {
	uint8_t id[DKEY_ID_LEN];
	uint8_t pk[DKEY_PK_LEN];
	char site[RECORD_SITE_MAX + 1];
	int valid, revoked;
};

struct vstate {
	struct store *st;
	MDB_txn *txn;
	store_bad_cb cb;
	void *arg;
	struct store_verify_report *rep;
	struct vcert *certs;
	size_t ncerts;
	uint8_t root[DKEY_PK_LEN];
	int have_root;
	/* user records waiting for their signatures to be checked: one
	 * round fills while the one before is checked */
	struct vround rounds[2], *fill, *busy;
};

static void
bad(struct vstate *vs, const char *what, const char *reason)
{
	vs->rep->bad++;
	if (vs->cb != NULL)
		vs->cb(what, reason, vs->arg);
}

static void
bad_user(struct vstate *vs, const char *user, const char *reason)
{
	char *what = xasprintf("user %s", user);

	bad(vs, what, reason);
	free(what);
}

static void
bad_key(struct vstate *vs, const char *kind, const uint8_t *id,
    const char *reason)
{
	char hex[DKEY_ID_HEX_LEN + 1], *what;

	dkey_id_hex(id, hex);
	what = xasprintf("%s %s", kind, hex);
	bad(vs, what, reason);
	free(what);
}

static int
vcert_cmp(const void *a, const void *b)
{
	return memcmp(a, ((const struct vcert *)b)->id, DKEY_ID_LEN);
}

static struct vcert *
vcert_find(struct vstate *vs, const uint8_t id[DKEY_ID_LEN])
{
	return bsearch(id, vs->certs, vs->ncerts, sizeof(*vs->certs),
	    vcert_cmp);
}

/* Walks dbi, calling fn for each entry; -1 on an LMDB error. */
static int
vwalk(struct vstate *vs, int dbi,
    void (*fn)(struct vstate *, const MDB_val *, const MDB_val *))
{
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	int mrc;

	if ((mrc = mdb_cursor_open(vs->txn, vs->st->dbi[dbi], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0)
		fn(vs, &key, &val);
	mdb_cursor_close(cur);
	if (mrc == MDB_NOTFOUND)
		return 0;
fail:
	log_warnx("- dir store verify path=%s db=%s error=\"%s\"",
	    vs->st->path, dbi_names[dbi], mdb_strerror(mrc));
	return -1;
}

static void
v_cert(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct vcert *c = &vs->certs[vs->ncerts++];
	struct record r;
	const char *why = NULL;

	memset(c, 0, sizeof(*c));
	vs->rep->checked++;
	if (key->mv_size != DKEY_ID_LEN) {
		vs->ncerts--;
		bad(vs, "cert entry", "key is not a key id");
		return;
	}
	memcpy(c->id, key->mv_data, DKEY_ID_LEN);
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_CERT) {
		bad_key(vs, "cert", c->id, why != NULL ? why : "not a CERT");
		return;
	}
	{
		uint8_t id[DKEY_ID_LEN];

		dkey_id(r.u.cert.pk, id);
		if (memcmp(id, c->id, DKEY_ID_LEN) != 0) {
			bad_key(vs, "cert", c->id, "stored under another id");
			return;
		}
	}
	if (!vs->have_root || record_verify(&r, vs->root) < 0) {
		bad_key(vs, "cert", c->id, "not signed by the root key");
		return;
	}
	memcpy(c->pk, r.u.cert.pk, DKEY_PK_LEN);
	memcpy(c->site, r.u.cert.site, sizeof(c->site));
	c->valid = 1;
}

static void
v_revoke(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct record r;
	struct vcert *c;
	const char *why = NULL;

	vs->rep->checked++;
	if (key->mv_size != DKEY_ID_LEN) {
		bad(vs, "revoked entry", "key is not a key id");
		return;
	}
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_REVOKE ||
	    memcmp(r.u.revoke.key_id, key->mv_data, DKEY_ID_LEN) != 0) {
		bad_key(vs, "revoke", key->mv_data,
		    why != NULL ? why : "not a REVOKE for this key");
		return;
	}
	if (!vs->have_root || record_verify(&r, vs->root) < 0) {
		bad_key(vs, "revoke", key->mv_data,
		    "not signed by the root key");
		return;
	}
	if ((c = vcert_find(vs, key->mv_data)) != NULL)
		c->revoked = 1;
}

/* Certificate chain of a signer: 0 ok, else a reason. */
static const char *
v_chain(struct vstate *vs, const uint8_t id[DKEY_ID_LEN],
    const struct vcert **c_r)
{
	const struct vcert *c = vcert_find(vs, id);

	if (c == NULL || !c->valid)
		return "signed by an uncertified key";
	if (c->revoked)
		return "signed by a revoked key";
	*c_r = c;
	return NULL;
}

static void
vround_work(struct vround *vr)
{
	size_t i;

	while ((i = atomic_fetch_add(&vr->next, 1)) < vr->n) {
		struct vjob *j = &vr->jobs[i];

		j->ok = dkey_verify(j->pk, RECORD_SIG_PREFIX, j->body,
		    j->body_len, j->sig) == 0;
	}
}

static void *
vround_thread(void *arg)
{
	vround_work(arg);
	return NULL;
}

/* Starts checking vr on the other cores; the walk goes on meanwhile. */
static void
vround_start(struct vround *vr)
{
	size_t nt = verify_threads(), i;

	atomic_store(&vr->next, 0);
	vr->started = 0;
	for (i = 1; i < nt; i++) {
		if (pthread_create(&vr->tid[vr->started], NULL, vround_thread,
		    vr) != 0)
			break;
		vr->started++;
	}
}

/* Takes a share of what is left of vr, waits for the rest, reports. */
static void
vround_finish(struct vstate *vs, struct vround *vr)
{
	size_t i;

	vround_work(vr);
	for (i = 0; i < vr->started; i++)
		pthread_join(vr->tid[i], NULL);
	for (i = 0; i < vr->n; i++) {
		if (!vr->jobs[i].ok)
			bad_user(vs, vr->names[i], "bad signature");
	}
	vr->n = 0;
}

/* The filling round is full (or the walk is over): the round before is
 * finished, this one started. */
static void
v_flush(struct vstate *vs)
{
	struct vround *vr = vs->fill;

	if (vs->busy != NULL) {
		vround_finish(vs, vs->busy);
		vs->busy = NULL;
	}
	if (vr->n == 0)
		return;
	vround_start(vr);
	vs->busy = vr;
	vs->fill = vr == &vs->rounds[0] ? &vs->rounds[1] : &vs->rounds[0];
}

/* env is in the map, which outlives the queue; r does not. The signature
 * ends a canonical envelope. */
static void
v_queue(struct vstate *vs, const struct record *r, const MDB_val *env,
    const uint8_t *pk, const char *name)
{
	struct vround *vr = vs->fill;
	struct vjob *j = &vr->jobs[vr->n];

	j->body = r->body;
	j->body_len = r->body_len;
	j->sig = (const uint8_t *)env->mv_data + env->mv_size - DKEY_SIG_LEN;
	memcpy(j->pk, pk, DKEY_PK_LEN);
	j->have_pk = 1;
	j->ok = 0;
	memcpy(vr->names[vr->n++], name, RECORD_USER_MAX + 1);
	if (vr->n == VERIFY_CHUNK)
		v_flush(vs);
}

static void
v_user(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct record r, t;
	const struct vcert *c = NULL, *tc = NULL;
	const struct record_user *u = &r.u.user;
	const char *why = NULL;
	struct hwm h;
	struct store_route route;
	MDB_val hv;
	uint8_t bh[HWM_HASH_LEN];
	char name[RECORD_USER_MAX + 1];
	size_t klen = key->mv_size > RECORD_USER_MAX ? RECORD_USER_MAX :
	    key->mv_size;

	vs->rep->checked++;
	memcpy(name, key->mv_data, klen);
	name[klen] = '\0';
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_USER) {
		bad_user(vs, name, why != NULL ? why : "not a USER record");
		return;
	}
	if (key->mv_size != strlen(u->user) ||
	    memcmp(key->mv_data, u->user, key->mv_size) != 0) {
		bad_user(vs, name, "stored under another name");
		return;
	}
	if ((why = v_chain(vs, r.key_id, &c)) != NULL) {
		bad_user(vs, name, why);
		return;
	}
	if (u->state != USTATE_TRANSFER && strcmp(c->site, u->site) != 0) {
		bad_user(vs, name, "signer not certified for the site");
		return;
	}
	if (u->state != USTATE_TRANSFER && u->transfer_len > 0) {
		if (record_decode(u->transfer, u->transfer_len, &t, NULL) < 0 ||
		    v_chain(vs, t.key_id, &tc) != NULL ||
		    record_verify(&t, tc->pk) < 0) {
			bad_user(vs, name, "invalid transfer");
			return;
		}
	}
	if (mdb_get(vs->txn, vs->st->dbi[DBI_HWM], (MDB_val *)key, &hv) != 0
	    || hwm_parse(&hv, &h) < 0) {
		bad_user(vs, name, "no high-water mark");
		return;
	}
	body_hash(&r, bh);
	if (h.epoch != u->epoch || h.seq != u->seq ||
	    memcmp(h.hash, bh, HWM_HASH_LEN) != 0 ||
	    strcmp(h.site, u->site) != 0) {
		bad_user(vs, name, "high-water mark does not match");
		return;
	}
	if (mdb_get(vs->txn, vs->st->dbi[DBI_ROUTES], (MDB_val *)key,
	    &hv) != 0 || route_decode(hv.mv_data, hv.mv_size, &route) < 0 ||
	    route.state != u->state || strcmp(route.site, u->site) != 0 ||
	    strcmp(route.backend, u->backend) != 0) {
		bad_user(vs, name, "routing index does not match the record");
		return;
	}
	v_queue(vs, &r, val, c->pk, name);
}

int
store_verify(struct store *st, uint64_t now,
    struct store_verify_report *rep_r, store_bad_cb cb, void *arg)
{
	struct vstate vs;
	MDB_stat ms;
	int rc = -1, mrc, g;
	size_t i;

	memset(rep_r, 0, sizeof(*rep_r));
	memset(&vs, 0, sizeof(vs));
	vs.st = st;
	vs.cb = cb;
	vs.arg = arg;
	vs.rep = rep_r;
	if (walk_begin(st, &vs.txn) < 0)
		return -1;
	g = get_root(vs.txn, st, vs.root);
	if (g < 0)
		goto done;
	vs.have_root = g == 1;
	if ((mrc = mdb_stat(vs.txn, st->dbi[DBI_CERTS], &ms)) != 0)
		goto done;
	vs.certs = xcalloc(ms.ms_entries + 1, sizeof(*vs.certs));
	for (i = 0; i < 2; i++) {
		vs.rounds[i].jobs = xcalloc(VERIFY_CHUNK,
		    sizeof(*vs.rounds[i].jobs));
		vs.rounds[i].names = xcalloc(VERIFY_CHUNK,
		    sizeof(*vs.rounds[i].names));
	}
	vs.fill = &vs.rounds[0];
	if (vwalk(&vs, DBI_CERTS, v_cert) < 0 ||
	    vwalk(&vs, DBI_REVOKED, v_revoke) < 0)
		goto done;
	if (vwalk(&vs, DBI_USERS, v_user) < 0)
		goto done;
	v_flush(&vs);		/* starts the last round */
	v_flush(&vs);		/* and finishes it */
	if ((mrc = mdb_stat(vs.txn, st->dbi[DBI_EVIDENCE], &ms)) != 0)
		goto done;
	rep_r->equivocations = ms.ms_entries;
	rc = 0;
done:
	/* Threads still checking a round point into the transaction. */
	if (vs.busy != NULL)
		vround_finish(&vs, vs.busy);
	free(vs.certs);
	for (i = 0; i < 2; i++) {
		free(vs.rounds[i].jobs);
		free(vs.rounds[i].names);
	}
	mdb_txn_abort(vs.txn);
	(void)now;
	return rc;
}

/* ---- tombstones ------------------------------------------------------ */

struct purge_arg {
	uint64_t ttl;
	long count;
};

static int
purge_fn(struct wctx *ctx, void *arg)
{
	struct purge_arg *a = arg;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	struct record r;
	int mrc;

	a->count = 0;
	if ((mrc = mdb_cursor_open(ctx->txn, ctx->st->dbi[DBI_USERS],
	    &cur)) != 0) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (record_decode(val.mv_data, val.mv_size, &r, NULL) < 0 ||
		    r.kind != RECORD_USER || r.u.user.state != USTATE_DELETED)
			continue;
		if (ctx->now < a->ttl || r.u.user.timestamp > ctx->now - a->ttl)
			continue;
		mrc = mdb_del(ctx->txn, ctx->st->dbi[DBI_ROUTES], &key, NULL);
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			break;
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			break;
		a->count++;
	}
	mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND) {
		ctx->mdb_rc = mrc;
		return -1;
	}
	return a->count > 0 ? 0 : 1;
}

long
store_purge_tombstones(struct store *st, uint64_t now, uint64_t ttl)
{
	struct purge_arg a = { ttl, 0 };

	if (store_write(st, now, purge_fn, &a) < 0)
		return -1;
	return a.count;
}

/* ---- per-origin logs, for gossip ------------------------------------ */

static void
contig_key(const char *origin, uint8_t *k, size_t *len_r)
{
	size_t plen = sizeof(META_CONTIG) - 1, olen = strlen(origin);

	memcpy(k, META_CONTIG, plen);
	memcpy(k + plen, origin, olen);
	*len_r = plen + olen;
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

	if (walk_begin(st, &txn) < 0)
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
	mdb_txn_abort(txn);
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
	if (read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == 0 && val.mv_size == 8)
		*contig_r = be64_get(val.mv_data);
	read_end(st);
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
	if (walk_begin(st, &txn) < 0)
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
	mdb_txn_abort(txn);
	return rc;
}

struct fill_arg {
	const uint8_t *env;
	size_t len;
	int res;		/* 1 filled, 0 held already, -1 refused */
};

static int
fill_fn(struct wctx *ctx, void *arg)
{
	struct fill_arg *a = arg;
	uint8_t root[DKEY_PK_LEN], root_id[DKEY_ID_LEN], lk[LOG_KEY_MAX];
	struct record r, c;
	const char *origin;
	uint64_t origin_seq;
	size_t olen;
	MDB_val key, val;
	int g;

	a->res = -1;
	if (a->len > RECORD_MAX || record_decode(a->env, a->len, &r,
	    NULL) < 0)
		return 1;
	if (r.kind == RECORD_USER) {
		/* Signed by a key the root certified, revoked or expired
		 * since or not, and numbered under that key's own name. */
		g = get_cert(ctx, r.key_id, &c);
		if (g < 0)
			return -1;
		if (g > 0 || strcmp(c.u.cert.name, r.u.user.origin) != 0 ||
		    record_verify(&r, c.u.cert.pk) < 0)
			return 1;
		origin = r.u.user.origin;
		origin_seq = r.u.user.origin_seq;
	} else {
		g = get_root(ctx->txn, ctx->st, root);
		if (g < 0) {
			ctx->mdb_rc = MDB_CORRUPTED;
			return -1;
		}
		dkey_id(root, root_id);
		if (g == 0 || memcmp(r.key_id, root_id, DKEY_ID_LEN) != 0 ||
		    record_verify(&r, root) < 0)
			return 1;
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
	    contig_advance(ctx, origin) < 0)
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

/* ---- consistency tree ------------------------------------------------ */

struct store_tree {
	uint64_t users;
	uint8_t root[STORE_TREE_HASH_LEN];
	uint8_t bucket[STORE_TREE_FANOUT][STORE_TREE_HASH_LEN];
	uint8_t leaf[STORE_TREE_LEAVES][STORE_TREE_HASH_LEN];
};

/* One user's contribution, kept in scan (name) order until sorted. */
struct tree_item {
	uint8_t h[STORE_TREE_HASH_LEN];
	uint16_t leaf;
};

unsigned
store_tree_leaf_of(const char *user, size_t len)
{
	uint8_t h[16];

	crypto_generichash(h, sizeof(h), (const uint8_t *)user, len, NULL, 0);
	return (unsigned)h[0] << 8 | h[1];
}

void
store_tree_env_hash(const uint8_t *env, size_t len,
    uint8_t out[STORE_TREE_HASH_LEN])
{
	crypto_generichash(out, STORE_TREE_HASH_LEN, env, len, NULL, 0);
}

static void
tree_item_hash(const char *user, size_t ulen, const uint8_t *env,
    size_t len, uint8_t out[STORE_TREE_HASH_LEN])
{
	crypto_generichash_state s;
	uint8_t eh[STORE_TREE_HASH_LEN], nul = 0;

	store_tree_env_hash(env, len, eh);
	crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
	crypto_generichash_update(&s, (const uint8_t *)user, ulen);
	crypto_generichash_update(&s, &nul, 1);
	crypto_generichash_update(&s, eh, sizeof(eh));
	crypto_generichash_final(&s, out, STORE_TREE_HASH_LEN);
}

static bool
hash_zero(const uint8_t *h)
{
	static const uint8_t z[STORE_TREE_HASH_LEN];

	return memcmp(h, z, STORE_TREE_HASH_LEN) == 0;
}

/* A node of n children: zeros when every child is. */
static void
tree_node_hash(const uint8_t (*child)[STORE_TREE_HASH_LEN], size_t n,
    uint8_t out[STORE_TREE_HASH_LEN])
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!hash_zero(child[i]))
			break;
	if (i == n) {
		memset(out, 0, STORE_TREE_HASH_LEN);
		return;
	}
	crypto_generichash(out, STORE_TREE_HASH_LEN, (const uint8_t *)child,
	    n * STORE_TREE_HASH_LEN, NULL, 0);
}

int
store_tree_build(struct store *st, struct store_tree **tree_r)
{
	struct store_tree *t = NULL;
	struct tree_item *items = NULL;
	uint32_t *order = NULL, *start = NULL;
	size_t n = 0, cap = 0, i;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	int rc = -1, mrc;

	*tree_r = NULL;
	if (walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
			continue;
		if (n == cap) {
			cap = cap == 0 ? 4096 : cap * 2;
			items = xrealloc(items, cap * sizeof(*items));
		}
		items[n].leaf = (uint16_t)store_tree_leaf_of(key.mv_data,
		    key.mv_size);
		tree_item_hash(key.mv_data, key.mv_size, val.mv_data,
		    val.mv_size, items[n].h);
		n++;
	}
	if (mrc != MDB_NOTFOUND)
		goto fail;
	/* A stable counting sort by leaf keeps name order inside a leaf. */
	start = xcalloc(STORE_TREE_LEAVES + 1, sizeof(*start));
	for (i = 0; i < n; i++)
		start[items[i].leaf + 1]++;
	for (i = 1; i <= STORE_TREE_LEAVES; i++)
		start[i] += start[i - 1];
	order = xcalloc(n == 0 ? 1 : n, sizeof(*order));
	for (i = 0; i < n; i++)
		order[start[items[i].leaf]++] = (uint32_t)i;
	t = xcalloc(1, sizeof(*t));
	t->users = n;
	for (i = 0, n = 0; i < STORE_TREE_LEAVES; i++) {
		crypto_generichash_state s;
		size_t end = start[i];

		if (n == end)
			continue;
		crypto_generichash_init(&s, NULL, 0, STORE_TREE_HASH_LEN);
		for (; n < end; n++)
			crypto_generichash_update(&s, items[order[n]].h,
			    STORE_TREE_HASH_LEN);
		crypto_generichash_final(&s, t->leaf[i], STORE_TREE_HASH_LEN);
	}
	for (i = 0; i < STORE_TREE_FANOUT; i++)
		tree_node_hash(&t->leaf[i * STORE_TREE_FANOUT],
		    STORE_TREE_FANOUT, t->bucket[i]);
	tree_node_hash(t->bucket, STORE_TREE_FANOUT, t->root);
	*tree_r = t;
	t = NULL;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store walk path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	free(items);
	free(order);
	free(start);
	free(t);
	return rc;
}

void
store_tree_free(struct store_tree *t)
{
	free(t);
}

const uint8_t *
store_tree_root(const struct store_tree *t)
{
	return t->root;
}

const uint8_t *
store_tree_bucket(const struct store_tree *t, unsigned bucket)
{
	return t->bucket[bucket % STORE_TREE_FANOUT];
}

const uint8_t *
store_tree_leaf(const struct store_tree *t, unsigned leaf)
{
	return t->leaf[leaf % STORE_TREE_LEAVES];
}

uint64_t
store_tree_users(const struct store_tree *t)
{
	return t->users;
}

int
store_tree_leaf_users(struct store *st, const uint8_t *leaves,
    store_tree_user_cb cb, void *arg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	char user[RECORD_USER_MAX + 1];
	uint8_t eh[STORE_TREE_HASH_LEN];
	unsigned leaf;
	int rc = -1, mrc;

	if (walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
		goto fail;
	while ((mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
			continue;
		leaf = store_tree_leaf_of(key.mv_data, key.mv_size);
		if ((leaves[leaf / 8] & (1u << (leaf % 8))) == 0)
			continue;
		memcpy(user, key.mv_data, key.mv_size);
		user[key.mv_size] = '\0';
		store_tree_env_hash(val.mv_data, val.mv_size, eh);
		if (cb(leaf, user, eh, val.mv_data, val.mv_size, arg) != 0) {
			mrc = MDB_NOTFOUND;
			break;
		}
	}
	if (mrc != MDB_NOTFOUND)
		goto fail;
	rc = 0;
	goto done;
fail:
	log_warnx("- dir store walk path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return rc;
}

/* ---- membership snapshot -------------------------------------------- */

#define META_MEMBERS "members"

struct members_arg {
	const uint8_t *buf;
	size_t len;
};

static int
members_fn(struct wctx *ctx, void *arg)
{
	struct members_arg *a = arg;
	MDB_val key = val_str(META_MEMBERS), val = val_bin(a->buf, a->len);

	return tx_put(ctx, DBI_META, &key, &val, 0) < 0 ? -1 : 0;
}

int
store_put_members(struct store *st, const uint8_t *buf, size_t len)
{
	struct members_arg a = { buf, len };

	if (len > STORE_MEMBERS_MAX)
		return -1;
	return store_write(st, 0, members_fn, &a) < 0 ? -1 : 0;
}

int
store_get_members(struct store *st, uint8_t **buf_r, size_t *len_r)
{
	MDB_txn *txn;
	MDB_val key = val_str(META_MEMBERS), val;
	int mrc;

	*buf_r = NULL;
	*len_r = 0;
	if (read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		read_end(st);
		return 0;
	}
	if (mrc != 0 || val.mv_size > STORE_MEMBERS_MAX) {
		log_warnx("- dir store members-read path=%s error=\"%s\"",
		    st->path, mrc != 0 ? mdb_strerror(mrc) : "too long");
		read_end(st);
		return -1;
	}
	*buf_r = xmalloc(val.mv_size + 1);
	memcpy(*buf_r, val.mv_data, val.mv_size);
	*len_r = val.mv_size;
	read_end(st);
	return 1;
}
