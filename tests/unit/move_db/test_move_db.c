/* The coordinator's moves (move_db.h): the entry codec round trips every
 * phase and holds every bound; the store keeps entries by user, in order,
 * across a reopen, prunes only finished old ones and steps over an entry
 * that does not decode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "mm_msgpack.h"
#include "move_db.h"

/* Entries: too large for the stack. */
static struct move mv, got;
static uint8_t buf[MOVE_DB_ENTRY_MAX + 1];

static void
fill(struct move *x, const char *user, enum move_phase phase, size_t bodies)
{
	size_t i;

	memset(x, 0, sizeof(*x));
	x->id = 0xfedcba9876543210ULL;
	snprintf(x->user, sizeof(x->user), "%s", user);
	strcpy(x->from_site, "ams");
	strcpy(x->to_site, "fra-2");
	strcpy(x->from_backend, "dovecot-1");
	strcpy(x->to_backend, "dovecot-7");
	strcpy(x->engine, "dsync");
	x->phase = phase;
	x->started_ms = 1790000000000ULL;
	x->phase_ms = 1790000001000ULL;
	x->updated_ms = 1790000002000ULL;
	x->bytes = 5ULL << 33;
	x->passes = 3;
	x->freezes = 2;
	x->freeze_ms = 1500;
	x->abort_requested = true;
	strcpy(x->error, "doveadm: exit 75 (temporary failure)");
	x->n_body_from = bodies;
	for (i = 0; i < bodies; i++) {
		snprintf(x->body_from[i].name, sizeof(x->body_from[i].name),
		    "INBOX/sub-%zu", i);
		x->body_from[i].uid = 100 + i;
	}
}

static void
same(const struct move *a, const struct move *b)
{
	size_t i;

	assert_true(a->id == b->id);
	assert_string_equal(a->user, b->user);
	assert_string_equal(a->from_site, b->from_site);
	assert_string_equal(a->to_site, b->to_site);
	assert_string_equal(a->from_backend, b->from_backend);
	assert_string_equal(a->to_backend, b->to_backend);
	assert_string_equal(a->engine, b->engine);
	assert_int_equal(a->phase, b->phase);
	assert_true(a->started_ms == b->started_ms);
	assert_true(a->phase_ms == b->phase_ms);
	assert_true(a->updated_ms == b->updated_ms);
	assert_true(a->bytes == b->bytes);
	assert_int_equal(a->passes, b->passes);
	assert_int_equal(a->freezes, b->freezes);
	assert_true(a->freeze_ms == b->freeze_ms);
	assert_int_equal(a->abort_requested, b->abort_requested);
	assert_string_equal(a->error, b->error);
	assert_int_equal(a->n_body_from, b->n_body_from);
	for (i = 0; i < a->n_body_from; i++) {
		assert_string_equal(a->body_from[i].name, b->body_from[i].name);
		assert_true(a->body_from[i].uid == b->body_from[i].uid);
	}
}

static size_t
round_trip(const struct move *x)
{
	const char *why = NULL;
	int n;

	n = move_encode(x, buf, sizeof(buf));
	assert_true(n > 0);
	if (move_decode(buf, (size_t)n, &got, &why) != 0)
		fail_msg("decode: %s", why);
	same(x, &got);
	return (size_t)n;
}

/* ---- the codec ------------------------------------------------------- */

static void
test_phases(void **state)
{
	static const char *const names[] = { "?", "prepare", "copy",
		"freeze", "commit", "done", "aborting", "aborted", "?" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(move_phase_name((enum move_phase)i),
		    names[i]);
	assert_true(move_phase_running(MOVE_PREPARE));
	assert_true(move_phase_running(MOVE_COPY));
	assert_true(move_phase_running(MOVE_FREEZE));
	assert_true(move_phase_running(MOVE_COMMIT));
	assert_false(move_phase_running(MOVE_DONE));
	assert_true(move_phase_running(MOVE_ABORTING));
	assert_false(move_phase_running(MOVE_ABORTED));
}

static void
test_round_trip_every_phase(void **state)
{
	int p;

	(void)state;
	for (p = MOVE_PREPARE; p <= MOVE_ABORTED; p++) {
		fill(&mv, "carol@a.test", (enum move_phase)p, (size_t)p);
		round_trip(&mv);
		memset(&mv, 0, sizeof(mv));
		mv.phase = (enum move_phase)p;
		round_trip(&mv);
	}
}

static void
test_everything_at_its_limit(void **state)
{
	size_t i, n;

	(void)state;
	fill(&mv, "", MOVE_COMMIT, MOVE_FOLDERS_MAX);
	memset(mv.user, 'u', RECORD_USER_MAX);
	memset(mv.from_site, 'f', RECORD_SITE_MAX);
	memset(mv.to_site, 't', RECORD_SITE_MAX);
	memset(mv.from_backend, 'b', RECORD_NAME_MAX);
	memset(mv.to_backend, 'c', RECORD_NAME_MAX);
	memset(mv.engine, 'e', MOVE_ENGINE_MAX);
	memset(mv.error, '~', MOVE_MSG_ERROR_MAX);
	mv.id = mv.started_ms = mv.phase_ms = mv.updated_ms = UINT64_MAX;
	mv.bytes = mv.freeze_ms = UINT64_MAX;
	mv.passes = mv.freezes = UINT32_MAX;
	for (i = 0; i < MOVE_FOLDERS_MAX; i++) {
		memset(mv.body_from[i].name, '&', MOVE_FOLDER_NAME_MAX);
		mv.body_from[i].name[MOVE_FOLDER_NAME_MAX] = '\0';
		mv.body_from[i].uid = UINT64_MAX;
	}
	n = round_trip(&mv);
	assert_true(n < MOVE_DB_ENTRY_MAX);
	assert_int_equal(move_encode(&mv, buf, n), (int)n);
	assert_int_equal(move_encode(&mv, buf, n - 1), -1);
}

static void
encode_fails(const struct move *x)
{
	assert_int_equal(move_encode(x, buf, sizeof(buf)), -1);
}

/* s (max + 1 bytes): at max it encodes; filled up to its end (one over)
 * it does not, nor with a control character or DEL. */
static void
string_bounds(char *s, size_t max)
{
	fill(&mv, "dave@a.test", MOVE_COPY, 1);
	memset(s, 'x', max);
	s[max] = '\0';
	assert_true(move_encode(&mv, buf, sizeof(buf)) > 0);
	s[max] = 'x';
	encode_fails(&mv);
	strcpy(s, "\x01");
	encode_fails(&mv);
	strcpy(s, "tab\there");
	encode_fails(&mv);
	strcpy(s, "del\x7f");
	encode_fails(&mv);
	strcpy(s, "\xe2\x82\xac");
	assert_true(move_encode(&mv, buf, sizeof(buf)) > 0);
}

static void
test_encode_refused(void **state)
{
	(void)state;
	string_bounds(mv.user, RECORD_USER_MAX);
	string_bounds(mv.from_site, RECORD_SITE_MAX);
	string_bounds(mv.to_site, RECORD_SITE_MAX);
	string_bounds(mv.from_backend, RECORD_NAME_MAX);
	string_bounds(mv.to_backend, RECORD_NAME_MAX);
	string_bounds(mv.engine, MOVE_ENGINE_MAX);
	string_bounds(mv.error, MOVE_MSG_ERROR_MAX);
	string_bounds(mv.body_from[0].name, MOVE_FOLDER_NAME_MAX);

	fill(&mv, "dave@a.test", MOVE_COPY, 0);
	mv.n_body_from = MOVE_FOLDERS_MAX + 1;
	encode_fails(&mv);
	fill(&mv, "dave@a.test", (enum move_phase)0, 0);
	encode_fails(&mv);
	mv.phase = (enum move_phase)(MOVE_ABORTED + 1);
	encode_fails(&mv);
}

/* An entry written field by field; field at (0..18 the entry's, 20 + k
 * the first body_from's k-th, -1 the array header) is written by put. */
struct patch {
	int at;
	void (*put)(struct mm_mp_writer *w, uint64_t arg);
	uint64_t arg;
};

static void
put_uint(struct mm_mp_writer *w, uint64_t v)
{
	mm_mp_put_uint(w, v);
}

static void
put_array(struct mm_mp_writer *w, uint64_t n)
{
	mm_mp_put_array(w, (uint32_t)n);
}

static void
put_str_len(struct mm_mp_writer *w, uint64_t len)
{
	static char s[MOVE_MSG_ERROR_MAX + 2];

	memset(s, 'y', sizeof(s));
	mm_mp_put_strn(w, s, (size_t)len);
}

static void
put_str_with(struct mm_mp_writer *w, uint64_t c)
{
	char s[3] = { 'a', (char)c, 'b' };

	mm_mp_put_strn(w, s, sizeof(s));
}

static void
put_bool(struct mm_mp_writer *w, uint64_t b)
{
	mm_mp_put_bool(w, b != 0);
}

static size_t
build(const struct patch *p)
{
	struct mm_mp_writer w;

#define FIELD(i, dflt) do {						\
		if (p != NULL && p->at == (i))				\
			p->put(&w, p->arg);				\
		else							\
			dflt;						\
	} while (0)

	mm_mp_writer_init(&w, buf, sizeof(buf));
	FIELD(-1, mm_mp_put_array(&w, 19));
	FIELD(0, mm_mp_put_uint(&w, MOVE_DB_VERSION));
	FIELD(1, mm_mp_put_uint(&w, 9));
	FIELD(2, mm_mp_put_str(&w, "erin@a.test"));
	FIELD(3, mm_mp_put_str(&w, "ams"));
	FIELD(4, mm_mp_put_str(&w, "fra"));
	FIELD(5, mm_mp_put_str(&w, "be1"));
	FIELD(6, mm_mp_put_str(&w, ""));
	FIELD(7, mm_mp_put_str(&w, "dsync"));
	FIELD(8, mm_mp_put_uint(&w, MOVE_COPY));
	FIELD(9, mm_mp_put_uint(&w, 1000));
	FIELD(10, mm_mp_put_uint(&w, 2000));
	FIELD(11, mm_mp_put_uint(&w, 3000));
	FIELD(12, mm_mp_put_uint(&w, 0));
	FIELD(13, mm_mp_put_uint(&w, 1));
	FIELD(14, mm_mp_put_uint(&w, 0));
	FIELD(15, mm_mp_put_uint(&w, 0));
	FIELD(16, mm_mp_put_bool(&w, false));
	FIELD(17, mm_mp_put_str(&w, ""));
	FIELD(18, mm_mp_put_array(&w, 1));
	FIELD(20, mm_mp_put_array(&w, 2));
	FIELD(21, mm_mp_put_str(&w, "INBOX"));
	FIELD(22, mm_mp_put_uint(&w, 17));
#undef FIELD
	assert_true(mm_mp_writer_ok(&w));
	return mm_mp_writer_len(&w);
}

static void
decodes(const struct patch *p)
{
	const char *why = NULL;
	size_t n = build(p);

	if (move_decode(buf, n, &got, &why) != 0)
		fail_msg("field %d: %s", p != NULL ? p->at : -2, why);
}

static void
refused_as(const uint8_t *in, size_t len, const char *want)
{
	const char *why = NULL;

	assert_int_equal(move_decode(in, len, &got, &why), -1);
	assert_non_null(why);
	if (strcmp(why, want) != 0)
		fail_msg("got \"%s\", want \"%s\"", why, want);
	assert_int_equal(got.n_body_from, 0);
}

static void
refused(const struct patch *p, const char *want)
{
	size_t n = build(p);

	refused_as(buf, n, want);
}

static void
string_limit(int at, size_t max)
{
	struct patch p = { at, put_str_len, max };

	decodes(&p);
	p.arg = max + 1;
	refused(&p, "string too long");
	p.put = put_str_with;
	p.arg = 0x0a;
	refused(&p, "control character in a string");
	p.arg = 0x7f;
	refused(&p, "control character in a string");
	p.arg = 0;
	refused(&p, "NUL in string");
	p.put = put_uint;
	refused(&p, "wrong type (want string)");
}

static void
test_decode_limits(void **state)
{
	struct patch p;
	const char *why = NULL;
	size_t n;

	(void)state;
	n = build(NULL);
	assert_int_equal(move_decode(buf, n, &got, &why), 0);
	assert_string_equal(got.user, "erin@a.test");
	assert_int_equal(got.phase, MOVE_COPY);
	assert_int_equal(got.n_body_from, 1);
	assert_true(got.body_from[0].uid == 17);
	assert_int_equal(move_encode(&got, buf + n, sizeof(buf) - n), (int)n);
	assert_memory_equal(buf, buf + n, n);

	string_limit(2, RECORD_USER_MAX);
	string_limit(3, RECORD_SITE_MAX);
	string_limit(4, RECORD_SITE_MAX);
	string_limit(5, RECORD_NAME_MAX);
	string_limit(6, RECORD_NAME_MAX);
	string_limit(7, MOVE_ENGINE_MAX);
	string_limit(17, MOVE_MSG_ERROR_MAX);
	string_limit(21, MOVE_FOLDER_NAME_MAX);

	p = (struct patch){ 8, put_uint, MOVE_PREPARE };
	decodes(&p);
	p.arg = MOVE_ABORTED;
	decodes(&p);
	p.arg = 0;
	refused(&p, "unknown phase");
	p.arg = MOVE_ABORTED + 1;
	refused(&p, "unknown phase");

	p = (struct patch){ 13, put_uint, UINT32_MAX };
	decodes(&p);
	p.arg = (uint64_t)UINT32_MAX + 1;
	refused(&p, "integer out of range");
	p.at = 14;
	refused(&p, "integer out of range");

	p = (struct patch){ 0, put_uint, MOVE_DB_VERSION + 1 };
	refused(&p, "unknown version");
	p.arg = 0;
	refused(&p, "unknown version");

	p = (struct patch){ 18, put_array, MOVE_FOLDERS_MAX + 1 };
	refused(&p, "too many array elements");
}

static void
test_decode_refused(void **state)
{
	static const uint8_t empty[] = { 0x90 };
	struct patch p;
	const char *why = NULL;
	size_t n, i;

	(void)state;
	p = (struct patch){ -1, put_array, 18 };
	refused(&p, "wrong element count");
	p.arg = 20;
	refused(&p, "wrong element count");
	refused_as(empty, sizeof(empty), "wrong element count");
	p = (struct patch){ 16, put_uint, 0 };
	refused(&p, "wrong type (want boolean)");
	p = (struct patch){ 9, put_bool, 1 };
	refused(&p, "wrong type (want unsigned integer)");
	p = (struct patch){ 20, put_array, 1 };
	refused(&p, "wrong element count");
	p.arg = 3;
	refused(&p, "too many array elements");

	n = build(NULL);
	buf[n] = 0xc0;
	refused_as(buf, n + 1, "trailing bytes");
	for (i = 0; i < n; i++) {
		assert_int_equal(move_decode(buf, i, &got, &why), -1);
		assert_non_null(why);
	}
	memset(buf + n, 0, sizeof(buf) - n);
	refused_as(buf, MOVE_DB_ENTRY_MAX, "trailing bytes");
	refused_as(buf, MOVE_DB_ENTRY_MAX + 1, "entry too long");
}

/* ---- the store ------------------------------------------------------- */

struct fixture {
	char dir[64];
	char path[128];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	strcpy(f->dir, "/tmp/test_move_db.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/moves", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char p[192];

	snprintf(p, sizeof(p), "%s/data.mdb", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s/lock.mdb", f->path);
	unlink(p);
	rmdir(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct move_db *
open_ok(const char *path)
{
	struct move_db *db;
	char *err = NULL;

	db = move_db_open(path, &err);
	if (db == NULL)
		fail_msg("open: %s", err);
	return db;
}

struct walk {
	char users[8][RECORD_USER_MAX + 1];
	int n, stop_after;
};

static bool
walk_cb(const struct move *x, void *arg)
{
	struct walk *w = arg;

	assert_true(w->n < 8);
	strcpy(w->users[w->n++], x->user);
	return w->n != w->stop_after;
}

static void
put(struct move_db *db, const char *user, enum move_phase phase,
    uint64_t updated_ms)
{
	fill(&mv, user, phase, 2);
	mv.updated_ms = updated_ms;
	assert_int_equal(move_db_put(db, &mv), 0);
}

static void
test_db_put_get(void **state)
{
	struct fixture *f = *state;
	struct move_db *db;
	struct stat sb;

	db = open_ok(f->path);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0700);

	assert_int_equal(move_db_get(db, "nobody@a.test", &got), 0);
	assert_int_equal(move_db_get(db, "", &got), 0);
	fill(&mv, "frank@a.test", MOVE_PREPARE, 4);
	assert_int_equal(move_db_put(db, &mv), 0);
	assert_int_equal(move_db_get(db, "frank@a.test", &got), 1);
	same(&mv, &got);

	/* Overwrite: the user's one entry is replaced. */
	mv.phase = MOVE_COPY;
	mv.passes = 9;
	mv.n_body_from = 0;
	strcpy(mv.to_backend, "dovecot-9");
	assert_int_equal(move_db_put(db, &mv), 0);
	assert_int_equal(move_db_get(db, "frank@a.test", &got), 1);
	same(&mv, &got);

	/* Not written: no user (no key), or a value over its limit. */
	fill(&mv, "", MOVE_COPY, 0);
	assert_int_equal(move_db_put(db, &mv), -1);
	fill(&mv, "grace@a.test", MOVE_COPY, 0);
	strcpy(mv.error, "bad\r\n");
	assert_int_equal(move_db_put(db, &mv), -1);
	assert_int_equal(move_db_get(db, "grace@a.test", &got), 0);
	move_db_close(db);
	move_db_close(NULL);
}

static void
test_db_foreach_and_reopen(void **state)
{
	struct fixture *f = *state;
	struct move_db *db;
	struct walk w;

	db = open_ok(f->path);
	put(db, "carol", MOVE_COPY, 1);
	put(db, "alice", MOVE_DONE, 2);
	put(db, "bob", MOVE_FREEZE, 3);
	put(db, "alice2", MOVE_ABORTING, 4);
	memset(&w, 0, sizeof(w));
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 4);
	assert_string_equal(w.users[0], "alice");
	assert_string_equal(w.users[1], "alice2");
	assert_string_equal(w.users[2], "bob");
	assert_string_equal(w.users[3], "carol");
	/* The callback stops the walk. */
	memset(&w, 0, sizeof(w));
	w.stop_after = 2;
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 2);
	move_db_close(db);

	/* What was committed is there after a reopen. */
	db = open_ok(f->path);
	memset(&w, 0, sizeof(w));
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 4);
	assert_int_equal(move_db_get(db, "bob", &got), 1);
	assert_int_equal(got.phase, MOVE_FREEZE);
	assert_true(got.updated_ms == 3);
	move_db_close(db);
}

/* A callback that writes while it walks: it sees the snapshot it began
 * with. */
static bool
rewrite_cb(const struct move *x, void *arg)
{
	struct move_db *db = arg;
	struct move *copy = malloc(sizeof(*copy));

	assert_non_null(copy);
	*copy = *x;
	copy->passes++;
	assert_int_equal(move_db_put(db, copy), 0);
	assert_int_equal(move_db_get(db, x->user, copy), 1);
	assert_int_equal(copy->passes, x->passes + 1);
	free(copy);
	return true;
}

static void
test_db_foreach_writes(void **state)
{
	struct fixture *f = *state;
	struct move_db *db;

	db = open_ok(f->path);
	put(db, "a", MOVE_COPY, 1);
	put(db, "b", MOVE_COPY, 1);
	assert_int_equal(move_db_foreach(db, rewrite_cb, db), 0);
	assert_int_equal(move_db_get(db, "b", &got), 1);
	assert_int_equal(got.passes, 4);
	move_db_close(db);
}

static void
test_db_prune(void **state)
{
	struct fixture *f = *state;
	struct move_db *db;
	struct walk w;

	db = open_ok(f->path);
	put(db, "done-old", MOVE_DONE, 1000);
	put(db, "aborted-old", MOVE_ABORTED, 1999);
	put(db, "done-edge", MOVE_DONE, 2000);
	put(db, "aborted-new", MOVE_ABORTED, 5000);
	put(db, "copy-old", MOVE_COPY, 1);
	put(db, "aborting-old", MOVE_ABORTING, 1);
	put(db, "prepare-old", MOVE_PREPARE, 1);
	put(db, "commit-old", MOVE_COMMIT, 1);

	/* Nothing is older than keep_ms before the epoch. */
	assert_int_equal(move_db_prune(db, 1000, 5000), 0);
	/* Finished before 6000 - 4000: only those strictly before 2000. */
	assert_int_equal(move_db_prune(db, 6000, 4000), 2);
	assert_int_equal(move_db_prune(db, 6000, 4000), 0);
	memset(&w, 0, sizeof(w));
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 6);
	assert_string_equal(w.users[0], "aborted-new");
	assert_string_equal(w.users[1], "aborting-old");
	assert_string_equal(w.users[2], "commit-old");
	assert_string_equal(w.users[3], "copy-old");
	assert_string_equal(w.users[4], "done-edge");
	assert_string_equal(w.users[5], "prepare-old");
	assert_int_equal(move_db_get(db, "done-old", &got), 0);
	/* Everything finished goes with keep 0 once it is in the past. */
	assert_int_equal(move_db_prune(db, 5001, 0), 2);
	move_db_close(db);

	db = open_ok(f->path);
	memset(&w, 0, sizeof(w));
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 4);
	move_db_close(db);
}

/* Bytes put under key with LMDB itself, behind the module's back. */
static void
raw_put(const char *path, const char *key, const void *val, size_t len)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k, v;

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
	k.mv_data = (void *)key;
	k.mv_size = strlen(key);
	v.mv_data = (void *)val;
	v.mv_size = len;
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void
test_db_damaged(void **state)
{
	static const uint8_t garbage[] = { 0x93, 0x01, 0xff, 0x00 };
	struct fixture *f = *state;
	struct move_db *db;
	struct walk w;
	int n;

	db = open_ok(f->path);
	put(db, "ann", MOVE_COPY, 1);
	put(db, "zoe", MOVE_DONE, 1);
	move_db_close(db);

	raw_put(f->path, "mallory", garbage, sizeof(garbage));
	/* A whole entry, but another user's, under this key. */
	fill(&mv, "someone-else", MOVE_DONE, 0);
	n = move_encode(&mv, buf, sizeof(buf));
	assert_true(n > 0);
	raw_put(f->path, "nick", buf, (size_t)n);
	/* The entry minus its last byte. */
	fill(&mv, "oscar", MOVE_DONE, 0);
	n = move_encode(&mv, buf, sizeof(buf));
	assert_true(n > 0);
	raw_put(f->path, "oscar", buf, (size_t)n - 1);

	db = open_ok(f->path);
	memset(&w, 0, sizeof(w));
	assert_int_equal(move_db_foreach(db, walk_cb, &w), 0);
	assert_int_equal(w.n, 2);
	assert_string_equal(w.users[0], "ann");
	assert_string_equal(w.users[1], "zoe");
	assert_int_equal(move_db_get(db, "mallory", &got), -1);
	assert_int_equal(move_db_get(db, "nick", &got), -1);
	assert_int_equal(move_db_get(db, "oscar", &got), -1);
	assert_int_equal(move_db_get(db, "ann", &got), 1);
	/* Prune leaves them (and goes past them). */
	assert_int_equal(move_db_prune(db, 10000, 0), 1);
	assert_int_equal(move_db_get(db, "mallory", &got), -1);
	/* Fixed by a put. */
	put(db, "mallory", MOVE_COPY, 1);
	assert_int_equal(move_db_get(db, "mallory", &got), 1);
	move_db_close(db);
}

static void
test_db_open_errors(void **state)
{
	struct fixture *f = *state;
	char path[192], *err = NULL;
	FILE *fp;

	/* The parent is missing: nothing is created. */
	snprintf(path, sizeof(path), "%s/no/moves", f->dir);
	assert_null(move_db_open(path, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "mkdir"));
	free(err);

	/* A file where the directory should be. */
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	fclose(fp);
	err = NULL;
	assert_null(move_db_open(f->path, &err));
	assert_non_null(err);
	if (strncmp(err, f->path, strlen(f->path)) != 0 ||
	    strstr(err, ": mdb_env_open: ") == NULL)
		fail_msg("got \"%s\"", err);
	free(err);
	unlink(f->path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_phases),
		cmocka_unit_test(test_round_trip_every_phase),
		cmocka_unit_test(test_everything_at_its_limit),
		cmocka_unit_test(test_encode_refused),
		cmocka_unit_test(test_decode_limits),
		cmocka_unit_test(test_decode_refused),
		cmocka_unit_test_setup_teardown(test_db_put_get, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_db_foreach_and_reopen,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_db_foreach_writes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_db_prune, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_db_damaged, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_db_open_errors, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
