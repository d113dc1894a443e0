/* The directory store: opening (schema), map growth and the transactions
 * every other part writes through, meta (root key, membership snapshot),
 * the routing index, reading, stats and the tombstone purge. The accept
 * rule, authoring, the per-origin logs, store_verify and the consistency
 * tree have files of their own (store_int.h lists them). */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store_int.h"
#include "trust.h"

#define STORE_MAXDBS 16
#define ROUTE_VALUE_MAX (3 + RECORD_SITE_MAX + RECORD_NAME_MAX)
#define STORE_MAXREADERS 512	/* proxy workers, tools, tests */
#define STORE_DATA_FILE "data.mdb"
/* Map doublings (or re-reads of another writer's size) per transaction. */
#define STORE_GROW_TRIES 16
#define STORE_DISK_FULL_BYTES (1024 * 1024)	/* less free than this: full */
#define META_SCHEMA "schema_version"

const char *const store_dbi_names[DBI_COUNT] = {
	"meta", "users", "hwm", "log", "origins", "certs", "revoked",
	"evidence", "routes", "tree",
};

/* ---- opening --------------------------------------------------------- */

static int
mdb_fail(char **errstr_r, const char *path, const char *what, int rc)
{
	*errstr_r = xasprintf("%s: %s: %s", path, what, mdb_strerror(rc));
	return -1;
}

/* The schema version as stored: 4 bytes, big-endian. */
static void
schema_encode(uint32_t v, uint8_t out[4])
{
	mm_be32_put(out, v);
}

/* Opens the sub-databases and checks (or, new, writes) the schema. The
 * version is read before the other databases are opened, so that a
 * reader of an older store gets the version's message. *migrate_r: the
 * store is of version 2 (write mode): its tree is still to build. */
static int
open_dbis(struct store *st, bool *migrate_r, char **errstr_r)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	uint8_t ver[4];
	unsigned int flags = st->mode == STORE_WRITE ? MDB_CREATE : 0;
	uint32_t v = STORE_SCHEMA_VERSION;
	int rc = -1, mrc, i;

	*migrate_r = false;
	mrc = mdb_txn_begin(st->env, NULL,
	    st->mode == STORE_READONLY ? MDB_RDONLY : 0, &txn);
	if (mrc != 0) {
		mdb_fail(errstr_r, st->path, "begin", mrc);
		goto done;
	}
	for (i = 0; i < DBI_COUNT; i++) {
		mrc = mdb_dbi_open(txn, store_dbi_names[i], flags, &st->dbi[i]);
		if (mrc == MDB_NOTFOUND) {
			*errstr_r = xasprintf("%s: not an initialised directory "
			    "store (no \"%s\" database); open it once in write "
			    "mode", st->path, store_dbi_names[i]);
			goto done;
		}
		if (mrc != 0) {
			mdb_fail(errstr_r, st->path, store_dbi_names[i], mrc);
			goto done;
		}
		if (i != DBI_META)
			continue;
		key = val_str(META_SCHEMA);
		mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
		if (mrc == MDB_NOTFOUND && st->mode == STORE_WRITE) {
			schema_encode(STORE_SCHEMA_VERSION, ver);
			val = val_bin(ver, sizeof(ver));
			mrc = mdb_put(txn, st->dbi[DBI_META], &key, &val, 0);
		}
		if (mrc == MDB_NOTFOUND) {
			*errstr_r = xasprintf("%s: directory store has no "
			    "schema version; open it once in write mode",
			    st->path);
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

			v = mm_be32_get(p);
		}
		/* A writer builds what version 2 lacked (store_tree.c). */
		if (v == 2 && st->mode == STORE_WRITE) {
			*migrate_r = true;
		} else if (v != STORE_SCHEMA_VERSION) {
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

static int
schema_fn(struct wctx *ctx, void *arg)
{
	uint8_t ver[4];
	MDB_val key = val_str(META_SCHEMA), val;

	(void)arg;
	schema_encode(STORE_SCHEMA_VERSION, ver);
	val = val_bin(ver, sizeof(ver));
	return tx_put(ctx, DBI_META, &key, &val, 0) < 0 ? -1 : 0;
}

/* A store of version 2 gets its tree, then the current version. */
static int
migrate(struct store *st, char **errstr_r)
{
	if (store_tree_migrate(st, errstr_r) < 0)
		return -1;
	if (store_write(st, 0, schema_fn, NULL) < 0) {
		*errstr_r = xasprintf("%s: cannot write the schema version",
		    st->path);
		return -1;
	}
	return 0;
}

struct store *
store_open_sized(const char *path, enum store_mode mode, uint64_t mapsize,
    char **errstr_r)
{
	struct store *st = NULL;
	struct stat sb;
	char *data = NULL;
	unsigned int flags = MDB_NOTLS;
	bool old = false;
	int mrc, ok = 0;

	if (dkey_init() < 0) {
		*errstr_r = xstrdup("libsodium did not start");
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->mode = mode;
	st->path = xstrdup(path);
	st->shared = xcalloc(1, sizeof(*st->shared));
	pthread_rwlock_init(&st->shared->resize, NULL);
	pthread_mutex_init(&st->shared->refs_lock, NULL);
	st->shared->refs = 1;
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
	if (open_dbis(st, &old, errstr_r) < 0 ||
	    (old && migrate(st, errstr_r) < 0))
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
	unsigned left;

	if (st == NULL)
		return;
	if (st->rtxn != NULL)
		mdb_txn_abort(st->rtxn);
	pthread_mutex_lock(&st->shared->refs_lock);
	left = --st->shared->refs;
	pthread_mutex_unlock(&st->shared->refs_lock);
	if (left == 0) {
		if (st->env != NULL)
			mdb_env_close(st->env);
		pthread_rwlock_destroy(&st->shared->resize);
		pthread_mutex_destroy(&st->shared->refs_lock);
		free(st->shared);
	}
	free(st->path);
	free(st);
}

struct store *
store_dup(struct store *st)
{
	struct store *d = xcalloc(1, sizeof(*d));

	d->env = st->env;
	memcpy(d->dbi, st->dbi, sizeof(d->dbi));
	d->mode = st->mode;
	d->path = xstrdup(st->path);
	d->shared = st->shared;
	pthread_mutex_lock(&st->shared->refs_lock);
	st->shared->refs++;
	pthread_mutex_unlock(&st->shared->refs_lock);
	return d;
}

/* A transaction of st's opens: the map keeps its size until it ends. */
static void
txn_opened(struct store *st)
{
	if (st->txns++ == 0)
		pthread_rwlock_rdlock(&st->shared->resize);
}

static void
txn_closed(struct store *st)
{
	if (--st->txns == 0)
		pthread_rwlock_unlock(&st->shared->resize);
}

/* Sets the map size (0: adopt what another process grew it to) once no
 * handle of this process has a transaction open. A handle that has one
 * open itself cannot wait for that: -1. */
static int
set_mapsize(struct store *st, size_t size)
{
	int mrc;

	if (st->txns > 0)
		return -1;
	pthread_rwlock_wrlock(&st->shared->resize);
	mrc = mdb_env_set_mapsize(st->env, size);
	pthread_rwlock_unlock(&st->shared->resize);
	if (mrc != 0) {
		log_warnx("- dir store resize path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
		return -1;
	}
	return 0;
}

void
store_accept_counts(struct store *st, uint64_t counts_r[STORE_ACCEPT_RESULTS])
{
	memcpy(counts_r, st->counts, sizeof(st->counts));
}

/* ---- transactions ---------------------------------------------------- */

/* The store's one read transaction, renewed: no allocation per lookup. */
int
store_read_begin(struct store *st, MDB_txn **txn_r)
{
	int mrc = 0, tries;

	for (tries = 0; tries < STORE_GROW_TRIES; tries++) {
		txn_opened(st);
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
		txn_closed(st);
		/* A writer elsewhere grew the map: adopt its size. */
		if (mrc != MDB_MAP_RESIZED || set_mapsize(st, 0) < 0)
			break;
	}
	log_warnx("- dir store read-begin path=%s error=\"%s\"", st->path,
	    mdb_strerror(mrc));
	return -1;
}

void
store_read_end(struct store *st)
{
	mdb_txn_reset(st->rtxn);
	txn_closed(st);
}

/* A separate read transaction for long walks: callbacks may look users up
 * meanwhile through the store's own one. */
int
store_walk_begin(struct store *st, MDB_txn **txn_r)
{
	int mrc = 0, tries;

	for (tries = 0; tries < STORE_GROW_TRIES; tries++) {
		txn_opened(st);
		mrc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn_r);
		if (mrc == 0)
			return 0;
		txn_closed(st);
		if (mrc != MDB_MAP_RESIZED || set_mapsize(st, 0) < 0)
			break;
	}
	log_warnx("- dir store read-begin path=%s error=\"%s\"",
	    st->path, mdb_strerror(mrc));
	return -1;
}

void
store_walk_end(struct store *st, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	txn_closed(st);
}

static int
grow_map(struct store *st)
{
	MDB_envinfo info;

	mdb_env_info(st->env, &info);
	if (set_mapsize(st, info.me_mapsize * 2) < 0) {
		log_warnx("- dir store grow path=%s error=\"cannot resize "
		    "now\"", st->path);
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
int
store_write(struct store *st, uint64_t now, store_write_cb fn, void *arg)
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
		txn_opened(st);
		mrc = mdb_txn_begin(st->env, NULL, 0, &ctx.txn);
		if (mrc != 0) {
			txn_closed(st);
			if (mrc == MDB_MAP_RESIZED && set_mapsize(st, 0) == 0)
				continue;
			break;
		}
		r = fn(&ctx, arg);
		if (r == 1) {
			mdb_txn_abort(ctx.txn);
			txn_closed(st);
			return 1;
		}
		if (r == 0) {
			mrc = mdb_txn_commit(ctx.txn);
			txn_closed(st);
			if (mrc == 0)
				return 0;
		} else {
			mrc = ctx.mdb_rc;
			mdb_txn_abort(ctx.txn);
			txn_closed(st);
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

/* ---- the routing index ----------------------------------------------- */

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

int
store_route_decode(const uint8_t *v, size_t len, struct store_route *r)
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

int
store_route_put(struct wctx *ctx, const char *user, enum user_state state,
    const char *site, const char *backend)
{
	uint8_t v[ROUTE_VALUE_MAX];
	MDB_val key = val_str(user), val;

	val = val_bin(v, route_encode(state, site, backend, v));
	return tx_put(ctx, DBI_ROUTES, &key, &val, 0);
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

	if (store_read_begin(st, &txn) < 0)
		return -1;
	r = get_root(txn, st, pk_r);
	store_read_end(st);
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
	if (store_read_begin(st, &txn) < 0)
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
	store_read_end(st);
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
	if (store_read_begin(st, &txn) < 0)
		return -1;
	key = val_bin(user, ulen);
	mrc = mdb_get(txn, st->dbi[DBI_ROUTES], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		rc = 0;
	} else if (mrc != 0) {
		log_warnx("- dir store get path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
	} else if (store_route_decode(val.mv_data, val.mv_size, r_r) < 0) {
		char esc[LOG_USER_MAX];

		log_warnx("- dir store bad-route user=%s",
		    mm_log_escape(user, esc, sizeof(esc)));
		st->counts[REJECT_MALFORMED]++;
	} else {
		rc = 1;
	}
	store_read_end(st);
	return rc;
}

/* Calls cb for every record of kind in sub-database dbi, in key order,
 * from the entry after from on (from NULL: all of them); one that does
 * not decode is logged and skipped. 1 when cb stopped the walk, 0 at the
 * end, -1 on a store error. */
static int
foreach_record(struct store *st, int dbi, enum record_kind kind,
    struct store_cursor *from, store_user_cb cb, void *arg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	struct record r;
	int rc = -1, mrc, stopped = 0;

	if (store_walk_begin(st, &txn) < 0)
		return -1;
	if ((mrc = mdb_cursor_open(txn, st->dbi[dbi], &cur)) != 0)
		goto fail;
	for (mrc = store_cursor_first(cur, from, &key, &val); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (from != NULL)
			store_cursor_set(from, &key);
		if (record_decode(val.mv_data, val.mv_size, &r, NULL) < 0 ||
		    r.kind != kind) {
			log_warnx("- dir store bad-record path=%s db=%s",
			    st->path, store_dbi_names[dbi]);
			continue;
		}
		if (cb(&r, val.mv_data, val.mv_size, arg) != 0) {
			stopped = 1;
			break;
		}
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND && !stopped)
		goto fail;
	rc = stopped;
	goto done;
fail:
	log_warnx("- dir store walk path=%s db=%s error=\"%s\"", st->path,
	    store_dbi_names[dbi], mdb_strerror(mrc));
done:
	if (cur != NULL)
		mdb_cursor_close(cur);
	store_walk_end(st, txn);
	return rc;
}

int
store_foreach_user(struct store *st, store_user_cb cb, void *arg)
{
	return foreach_record(st, DBI_USERS, RECORD_USER, NULL, cb, arg) < 0 ?
	    -1 : 0;
}

int
store_foreach_user_from(struct store *st, struct store_cursor *cur,
    store_user_cb cb, void *arg)
{
	return foreach_record(st, DBI_USERS, RECORD_USER, cur, cb, arg);
}

/* ---- trust state ----------------------------------------------------- */

/* The certificate envelope held under key id, copied into buf (at least
 * RECORD_MAX bytes): 1, 0 none (an oversized entry certifies nothing), or
 * -1 on a store error. Also trust.h's question of the read view. */
static int
trust_src_cert(void *arg, const uint8_t id[DKEY_ID_LEN], uint8_t *buf,
    size_t *len_r)
{
	struct store *st = arg;
	MDB_txn *txn;
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int rc = -1, mrc;

	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_CERTS], &key, &val);
	if (mrc == MDB_NOTFOUND || (mrc == 0 && val.mv_size > RECORD_MAX)) {
		rc = 0;
	} else if (mrc != 0) {
		log_warnx("- dir store get-cert path=%s error=\"%s\"",
		    st->path, mdb_strerror(mrc));
	} else {
		memcpy(buf, val.mv_data, val.mv_size);
		*len_r = val.mv_size;
		rc = 1;
	}
	store_read_end(st);
	return rc;
}

int
store_get_cert(struct store *st, const uint8_t id[DKEY_ID_LEN],
    struct record_cert *c_r)
{
	uint8_t buf[RECORD_MAX];
	struct record r;
	size_t len = 0;
	int g = trust_src_cert(st, id, buf, &len);

	if (g != 1)
		return g;
	if (record_decode(buf, len, &r, NULL) < 0 || r.kind != RECORD_CERT)
		return 0;	/* a damaged entry certifies nothing */
	*c_r = r.u.cert;
	return 1;
}

int
store_foreach_cert(struct store *st, store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_CERTS, RECORD_CERT, NULL, cb, arg) < 0 ?
	    -1 : 0;
}

int
store_foreach_revoked(struct store *st, store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_REVOKED, RECORD_REVOKE, NULL, cb,
	    arg) < 0 ? -1 : 0;
}

int
store_foreach_cert_from(struct store *st, struct store_cursor *cur,
    store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_CERTS, RECORD_CERT, cur, cb, arg);
}

int
store_foreach_revoked_from(struct store *st, struct store_cursor *cur,
    store_trust_cb cb, void *arg)
{
	return foreach_record(st, DBI_REVOKED, RECORD_REVOKE, cur, cb, arg);
}

int
store_is_revoked(struct store *st, const uint8_t id[DKEY_ID_LEN])
{
	struct record r;
	MDB_txn *txn;
	MDB_val key = val_bin(id, DKEY_ID_LEN), val;
	int rc = -1, mrc;

	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_REVOKED], &key, &val);
	if (mrc == MDB_NOTFOUND)
		rc = 0;
	else if (mrc != 0)
		log_warnx("- dir store get-revoked path=%s error=\"%s\"",
		    st->path, mdb_strerror(mrc));
	else
		rc = record_decode(val.mv_data, val.mv_size, &r, NULL) == 0 &&
		    r.kind == RECORD_REVOKE;
	store_read_end(st);
	return rc;
}

/* The read view's answers to trust.h's questions. */
static int
trust_src_root(void *arg, uint8_t pk_r[DKEY_PK_LEN])
{
	return store_get_root(arg, pk_r);
}

static int
trust_src_revoked(void *arg, const uint8_t id[DKEY_ID_LEN])
{
	return store_is_revoked(arg, id);
}

void
store_trust_init(struct store *st, struct trust_ctx *t)
{
	struct trust_src src = { trust_src_root, trust_src_cert,
		trust_src_revoked, st };

	trust_init(t, &src);
}

/* ---- stats ----------------------------------------------------------- */

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
	if (store_walk_begin(st, &txn) < 0)
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
	store_walk_end(st, txn);
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
		if (key.mv_size <= RECORD_USER_MAX) {
			char user[RECORD_USER_MAX];

			memcpy(user, key.mv_data, key.mv_size);
			if (store_tree_del(ctx, user, key.mv_size) < 0) {
				mrc = ctx->mdb_rc;
				break;
			}
		}
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

/* ---- membership snapshot -------------------------------------------- */

#define META_MEMBERS "members"
#define META_BEHIND "behind"	/* [1 if behind, until (8, BE)] */

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
	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == MDB_NOTFOUND) {
		store_read_end(st);
		return 0;
	}
	if (mrc != 0 || val.mv_size > STORE_MEMBERS_MAX) {
		log_warnx("- dir store members-read path=%s error=\"%s\"",
		    st->path, mrc != 0 ? mdb_strerror(mrc) : "too long");
		store_read_end(st);
		return -1;
	}
	*buf_r = xmalloc(val.mv_size + 1);
	memcpy(*buf_r, val.mv_data, val.mv_size);
	*len_r = val.mv_size;
	store_read_end(st);
	return 1;
}

static int
behind_fn(struct wctx *ctx, void *arg)
{
	const uint8_t *v = arg;
	MDB_val key = val_str(META_BEHIND), val = val_bin(v, 9);

	return tx_put(ctx, DBI_META, &key, &val, 0) < 0 ? -1 : 0;
}

int
store_put_behind(struct store *st, bool behind, uint64_t until)
{
	uint8_t v[9];

	v[0] = behind ? 1 : 0;
	be64_put(v + 1, until);
	return store_write(st, 0, behind_fn, v) < 0 ? -1 : 0;
}

int
store_get_behind(struct store *st, uint64_t now)
{
	MDB_txn *txn;
	MDB_val key = val_str(META_BEHIND), val;
	int mrc, r = 0;

	if (store_read_begin(st, &txn) < 0)
		return -1;
	mrc = mdb_get(txn, st->dbi[DBI_META], &key, &val);
	if (mrc == 0 && val.mv_size == 9) {
		const uint8_t *v = val.mv_data;

		r = v[0] == 1 && be64_get(v + 1) > now;
	} else if (mrc != 0 && mrc != MDB_NOTFOUND) {
		r = -1;
	}
	store_read_end(st);
	return r;
}
