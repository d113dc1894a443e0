/* The coordinator's moves: the entry codec and their LMDB environment
 * (move_db.h says the format). */
#include "move_db.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "mm_log.h"
#include "mm_msgpack.h"
#include "mm_util.h"

#define ENTRY_FIELDS 19
#define BODY_FROM_FIELDS 2
/* The top-level count is judged only after the version, so that an entry
 * of another version is refused as such. */
#define ENTRY_FIELDS_READ_MAX 255
/* A handful of moves, each well under MOVE_DB_ENTRY_MAX: never grown. */
#define MOVE_DB_MAPSIZE (64 * 1024 * 1024)
#define LOG_USER_ESC (4 * RECORD_USER_MAX + 1)

struct move_db {
	char *path;
	MDB_env *env;
	MDB_dbi dbi;
	uint8_t *buf;		/* MOVE_DB_ENTRY_MAX: the entry being put */
};

static const char *const phase_names[] = {
	[MOVE_PREPARE] = "prepare",
	[MOVE_COPY] = "copy",
	[MOVE_FREEZE] = "freeze",
	[MOVE_COMMIT] = "commit",
	[MOVE_DONE] = "done",
	[MOVE_ABORTING] = "aborting",
	[MOVE_ABORTED] = "aborted",
};

static bool
phase_valid(uint64_t p)
{
	return p >= MOVE_PREPARE && p <= MOVE_ABORTED;
}

bool
move_phase_running(enum move_phase p)
{
	return p != MOVE_DONE && p != MOVE_ABORTED;
}

const char *
move_phase_name(enum move_phase p)
{
	return phase_valid((uint64_t)p) ? phase_names[p] : "?";
}

/* ---- the entry codec ------------------------------------------------- */

int
move_decode(const uint8_t *buf, size_t len, struct move *mv,
    const char **why_r)
{
	struct mm_mp_reader r;
	uint64_t phase, passes, freezes;
	uint32_t n, i;
	int rc = -1;

	*why_r = NULL;
	mv->n_body_from = 0;
	mm_mp_reader_init(&r, buf, len);
	if (len > MOVE_DB_ENTRY_MAX) {
		mm_mp_fail(&r, "entry too long");
		goto done;
	}
	if (mm_mp_get_versioned(&r, MOVE_DB_VERSION, ENTRY_FIELDS,
	    ENTRY_FIELDS_READ_MAX) < 0)
		goto done;
	if (mm_mp_get_uint(&r, &mv->id) < 0 ||
	    mm_mp_get_text(&r, mv->user, RECORD_USER_MAX) < 0 ||
	    mm_mp_get_text(&r, mv->from_site, RECORD_SITE_MAX) < 0 ||
	    mm_mp_get_text(&r, mv->to_site, RECORD_SITE_MAX) < 0 ||
	    mm_mp_get_text(&r, mv->from_backend, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_text(&r, mv->to_backend, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_text(&r, mv->engine, MOVE_ENGINE_MAX) < 0 ||
	    mm_mp_get_uint(&r, &phase) < 0)
		goto done;
	if (!phase_valid(phase)) {
		mm_mp_fail(&r, "unknown phase");
		goto done;
	}
	mv->phase = (enum move_phase)phase;
	if (mm_mp_get_uint(&r, &mv->started_ms) < 0 ||
	    mm_mp_get_uint(&r, &mv->phase_ms) < 0 ||
	    mm_mp_get_uint(&r, &mv->updated_ms) < 0 ||
	    mm_mp_get_uint(&r, &mv->bytes) < 0 ||
	    mm_mp_get_uint_max(&r, UINT32_MAX, &passes) < 0 ||
	    mm_mp_get_uint_max(&r, UINT32_MAX, &freezes) < 0 ||
	    mm_mp_get_uint(&r, &mv->freeze_ms) < 0 ||
	    mm_mp_get_bool(&r, &mv->abort_requested) < 0 ||
	    mm_mp_get_text(&r, mv->error, MOVE_MSG_ERROR_MAX) < 0 ||
	    mm_mp_get_array(&r, MOVE_FOLDERS_MAX, &n) < 0)
		goto done;
	mv->passes = (uint32_t)passes;
	mv->freezes = (uint32_t)freezes;
	for (i = 0; i < n; i++) {
		struct move_body_from *b = &mv->body_from[i];

		if (mm_mp_get_array_n(&r, BODY_FROM_FIELDS) < 0 ||
		    mm_mp_get_text(&r, b->name, MOVE_FOLDER_NAME_MAX) < 0 ||
		    mm_mp_get_uint(&r, &b->uid) < 0)
			goto done;
	}
	if (mm_mp_end(&r) < 0)
		goto done;
	mv->n_body_from = n;
	rc = 0;
done:
	if (rc < 0)
		*why_r = r.why != NULL ? r.why : "malformed";
	return rc;
}

static bool
move_valid(const struct move *mv)
{
	size_t i;

	if (!mm_mp_text_ok(mv->user, RECORD_USER_MAX) ||
	    !mm_mp_text_ok(mv->from_site, RECORD_SITE_MAX) ||
	    !mm_mp_text_ok(mv->to_site, RECORD_SITE_MAX) ||
	    !mm_mp_text_ok(mv->from_backend, RECORD_NAME_MAX) ||
	    !mm_mp_text_ok(mv->to_backend, RECORD_NAME_MAX) ||
	    !mm_mp_text_ok(mv->engine, MOVE_ENGINE_MAX) ||
	    !phase_valid((uint64_t)mv->phase) ||
	    !mm_mp_text_ok(mv->error, MOVE_MSG_ERROR_MAX) ||
	    mv->n_body_from > MOVE_FOLDERS_MAX)
		return false;
	for (i = 0; i < mv->n_body_from; i++)
		if (!mm_mp_text_ok(mv->body_from[i].name, MOVE_FOLDER_NAME_MAX))
			return false;
	return true;
}

int
move_encode(const struct move *mv, uint8_t *out, size_t size)
{
	struct mm_mp_writer w;
	size_t i;

	if (!move_valid(mv))
		return -1;
	mm_mp_writer_init(&w, out, size < MOVE_DB_ENTRY_MAX ? size :
	    MOVE_DB_ENTRY_MAX);
	mm_mp_put_array(&w, ENTRY_FIELDS);
	mm_mp_put_uint(&w, MOVE_DB_VERSION);
	mm_mp_put_uint(&w, mv->id);
	mm_mp_put_str(&w, mv->user);
	mm_mp_put_str(&w, mv->from_site);
	mm_mp_put_str(&w, mv->to_site);
	mm_mp_put_str(&w, mv->from_backend);
	mm_mp_put_str(&w, mv->to_backend);
	mm_mp_put_str(&w, mv->engine);
	mm_mp_put_uint(&w, (uint64_t)mv->phase);
	mm_mp_put_uint(&w, mv->started_ms);
	mm_mp_put_uint(&w, mv->phase_ms);
	mm_mp_put_uint(&w, mv->updated_ms);
	mm_mp_put_uint(&w, mv->bytes);
	mm_mp_put_uint(&w, mv->passes);
	mm_mp_put_uint(&w, mv->freezes);
	mm_mp_put_uint(&w, mv->freeze_ms);
	mm_mp_put_bool(&w, mv->abort_requested);
	mm_mp_put_str(&w, mv->error);
	mm_mp_put_array(&w, (uint32_t)mv->n_body_from);
	for (i = 0; i < mv->n_body_from; i++) {
		mm_mp_put_array(&w, BODY_FROM_FIELDS);
		mm_mp_put_str(&w, mv->body_from[i].name);
		mm_mp_put_uint(&w, mv->body_from[i].uid);
	}
	if (!mm_mp_writer_ok(&w))
		return -1;
	return (int)mm_mp_writer_len(&w);
}

/* ---- the environment ------------------------------------------------- */

static void
mdb_fail(char **errstr_r, const char *path, const char *what, int rc)
{
	*errstr_r = xasprintf("%s: %s: %s", path, what, mdb_strerror(rc));
}

struct move_db *
move_db_open(const char *path, char **errstr_r)
{
	struct move_db *db = NULL;
	MDB_txn *txn = NULL;
	int mrc, ok = 0;

	*errstr_r = NULL;
	db = xcalloc(1, sizeof(*db));
	db->path = xstrdup(path);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		*errstr_r = xasprintf("%s: mkdir: %s", path, strerror(errno));
		goto done;
	}
	if ((mrc = mdb_env_create(&db->env)) != 0) {
		mdb_fail(errstr_r, path, "mdb_env_create", mrc);
		goto done;
	}
	if ((mrc = mdb_env_set_mapsize(db->env, MOVE_DB_MAPSIZE)) != 0) {
		mdb_fail(errstr_r, path, "mdb_env_set_mapsize", mrc);
		goto done;
	}
	/* Default sync flags: a commit is on disk when it returns, which
	 * is the point of writing a phase before acting on it. NOTLS: a
	 * foreach callback may read or write the store. */
	if ((mrc = mdb_env_open(db->env, path, MDB_NOTLS, 0600)) != 0) {
		mdb_fail(errstr_r, path, "mdb_env_open", mrc);
		goto done;
	}
	if ((mrc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0) {
		mdb_fail(errstr_r, path, "mdb_txn_begin", mrc);
		goto done;
	}
	if ((mrc = mdb_dbi_open(txn, NULL, 0, &db->dbi)) != 0) {
		mdb_fail(errstr_r, path, "mdb_dbi_open", mrc);
		goto done;
	}
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc != 0) {
		mdb_fail(errstr_r, path, "mdb_txn_commit", mrc);
		goto done;
	}
	db->buf = xmalloc(MOVE_DB_ENTRY_MAX);
	ok = 1;
done:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (!ok) {
		move_db_close(db);
		db = NULL;
	}
	return db;
}

void
move_db_close(struct move_db *db)
{
	if (db == NULL)
		return;
	if (db->env != NULL)
		mdb_env_close(db->env);
	free(db->buf);
	free(db->path);
	free(db);
}

static MDB_val
user_key(const char *user)
{
	MDB_val key;

	key.mv_data = (void *)user;
	key.mv_size = strnlen(user, RECORD_USER_MAX + 1);
	return key;
}

/* An entry decodes and is the one of the user it is filed under. */
static int
entry_decode(const MDB_val *key, const MDB_val *val, struct move *mv,
    const char **why_r)
{
	if (move_decode(val->mv_data, val->mv_size, mv, why_r) < 0)
		return -1;
	if (strlen(mv->user) != key->mv_size ||
	    memcmp(mv->user, key->mv_data, key->mv_size) != 0) {
		*why_r = "entry of another user";
		return -1;
	}
	return 0;
}

/* A user name for a log line, from bytes that may be anything. */
static const char *
user_esc(const void *p, size_t len, char *esc, size_t esclen)
{
	char user[RECORD_USER_MAX + 1];

	if (len > RECORD_USER_MAX)
		len = RECORD_USER_MAX;
	memcpy(user, p, len);
	user[len] = '\0';
	return mm_log_escape(user, esc, esclen);
}

static void
log_damaged(const struct move_db *db, const MDB_val *key, const char *why)
{
	char esc[LOG_USER_ESC];

	log_warnx("- move db damaged path=%s user=%s reason=\"%s\"", db->path,
	    user_esc(key->mv_data, key->mv_size, esc, sizeof(esc)), why);
}

int
move_db_put(struct move_db *db, const struct move *mv)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	char esc[LOG_USER_ESC];
	const char *what = NULL;
	int n, mrc = 0, rc = -1;

	key = user_key(mv->user);
	if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX ||
	    (n = move_encode(mv, db->buf, MOVE_DB_ENTRY_MAX)) < 0) {
		log_warnx("- move db put path=%s user=%s error=\"not "
		    "encodable\"", db->path,
		    user_esc(key.mv_data, key.mv_size, esc, sizeof(esc)));
		goto done;
	}
	val.mv_data = db->buf;
	val.mv_size = (size_t)n;
	if ((mrc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0) {
		what = "mdb_txn_begin";
		goto done;
	}
	if ((mrc = mdb_put(txn, db->dbi, &key, &val, 0)) != 0) {
		what = "mdb_put";
		goto done;
	}
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc != 0) {
		what = "mdb_txn_commit";
		goto done;
	}
	rc = 0;
done:
	if (txn != NULL)
		mdb_txn_abort(txn);
	if (what != NULL)
		log_warnx("- move db put path=%s user=%s call=%s error=\"%s\"",
		    db->path, user_esc(key.mv_data, key.mv_size, esc,
		    sizeof(esc)), what, mdb_strerror(mrc));
	return rc;
}

int
move_db_get(struct move_db *db, const char *user, struct move *mv_r)
{
	MDB_txn *txn = NULL;
	MDB_val key, val;
	const char *why = NULL;
	int mrc, rc = -1;

	key = user_key(user);
	if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX)
		return 0;
	if ((mrc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0)
		goto fail;
	mrc = mdb_get(txn, db->dbi, &key, &val);
	if (mrc == MDB_NOTFOUND) {
		rc = 0;
		goto done;
	}
	if (mrc != 0)
		goto fail;
	if (entry_decode(&key, &val, mv_r, &why) < 0) {
		log_damaged(db, &key, why);
		goto done;
	}
	rc = 1;
	goto done;
fail:
	log_warnx("- move db get path=%s error=\"%s\"", db->path,
	    mdb_strerror(mrc));
done:
	if (txn != NULL)
		mdb_txn_abort(txn);
	return rc;
}

int
move_db_foreach(struct move_db *db,
    bool (*cb)(const struct move *mv, void *arg), void *arg)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	struct move *mv = NULL;
	const char *why = NULL;
	int mrc, rc = -1;

	if ((mrc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, db->dbi, &cur)) != 0)
		goto fail;
	mv = xmalloc(sizeof(*mv));
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (entry_decode(&key, &val, mv, &why) < 0) {
			log_damaged(db, &key, why);
			continue;
		}
		if (!cb(mv, arg))
			break;
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		goto fail;
	rc = 0;
	goto done;
fail:
	log_warnx("- move db walk path=%s error=\"%s\"", db->path,
	    mdb_strerror(mrc));
done:
	free(mv);
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	return rc;
}

long
move_db_prune(struct move_db *db, uint64_t now_ms, uint64_t keep_ms)
{
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	struct move *mv = NULL;
	const char *why = NULL;
	long pruned = 0, rc = -1;
	int mrc;

	/* Nothing finished before the epoch plus keep_ms. */
	if (now_ms < keep_ms)
		return 0;
	if ((mrc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0 ||
	    (mrc = mdb_cursor_open(txn, db->dbi, &cur)) != 0)
		goto fail;
	mv = xmalloc(sizeof(*mv));
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		/* A damaged entry is kept for whoever looks into it. */
		if (entry_decode(&key, &val, mv, &why) < 0) {
			log_damaged(db, &key, why);
			continue;
		}
		if (move_phase_running(mv->phase) ||
		    mv->updated_ms >= now_ms - keep_ms)
			continue;
		if ((mrc = mdb_cursor_del(cur, 0)) != 0)
			goto fail;
		pruned++;
	}
	if (mrc != MDB_NOTFOUND)
		goto fail;
	mdb_cursor_close(cur);
	cur = NULL;
	mrc = mdb_txn_commit(txn);
	txn = NULL;
	if (mrc != 0)
		goto fail;
	rc = pruned;
	goto done;
fail:
	log_warnx("- move db prune path=%s error=\"%s\"", db->path,
	    mdb_strerror(mrc));
done:
	free(mv);
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (txn != NULL)
		mdb_txn_abort(txn);
	return rc;
}
