/* Listings in slices (ops_req): every user exactly once whatever the
 * slice size, with users added, changed and deleted between slices; the
 * same for export, verify, stats and keys-list; and ops_exec still giving
 * the whole answer. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm_config.h"
#include "mm_util.h"
#include "ops.h"
#include "store_fixture.h"

#define USERS 300

struct fx {
	char dir[64];
	char pub[96];
	struct dkey root, k, other;
	struct mm_config *conf;
	struct ops *o;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t env[FX_ENV_MAX];
	char text[512], *err = NULL;
	enum ctl_status cst;
	struct store *st;
	size_t n;

	assert_non_null(f);
	assert_int_equal(dkey_init(), 0);
	snprintf(f->dir, sizeof(f->dir), "listing-%d", (int)getpid());
	snprintf(f->pub, sizeof(f->pub), "%s.root.pub", f->dir);
	dkey_generate(&f->root);
	dkey_generate(&f->k);
	dkey_generate(&f->other);
	st = store_open(f->dir, STORE_WRITE, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, f->root.pk, &err), 0);
	/* fx_cert names the key "a-node": the node-name below. */
	n = fx_cert(&f->root, &f->k, "a", FX_NOW - 10, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	store_close(st);
	assert_int_equal(dkey_save_public(&f->root, f->pub, &err), 0);
	snprintf(text, sizeof(text), "directory %s\nsite a\nnode-name a-node\n"
	    "node-key /nonexistent\nroot-key %s\nlisten imap 127.0.0.1:1\n"
	    "backend be1 127.0.0.1 imap=9\nbackend be2 127.0.0.1 imap=9\n",
	    f->dir, f->pub);
	f->conf = mm_config_parse(text, strlen(text), "test.conf", &err);
	assert_non_null(f->conf);
	f->o = ops_new(f->conf, &f->k, &cst, &err);
	assert_non_null(f->o);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	ops_free(f->o);
	mm_config_free(f->conf);
	fx_rmdir(f->dir);
	(void)remove(f->pub);
	free(f);
	return 0;
}

/* Runs op with args on f's ops whole; the status must be want. */
static void
exec(struct fx *f, enum ctl_status want, const char *op, size_t argc, ...)
{
	char *argv[8], *msg = NULL;
	struct ctl_rows rows;
	enum ctl_status st;
	va_list ap;
	size_t i;

	va_start(ap, argc);
	for (i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	ctl_rows_init(&rows);
	st = ops_exec(f->o, op, argc, argv, &msg, &rows);
	if (st != want)
		fail_msg("%s: status %d (%s), want %d", op, st, msg, want);
	free(msg);
	ctl_rows_clear(&rows);
}

/* USERS users u000@a.test ... on be1, in one import. */
static void
import_users(struct fx *f)
{
	char **argv = calloc(4 * USERS, sizeof(*argv)), *msg = NULL;
	struct ctl_rows rows;
	size_t i;

	assert_non_null(argv);
	for (i = 0; i < USERS; i++) {
		argv[4 * i] = xasprintf("u%03zu@a.test", i);
		argv[4 * i + 1] = "be1";
		argv[4 * i + 2] = "";
		argv[4 * i + 3] = "";
	}
	ctl_rows_init(&rows);
	assert_int_equal(ops_exec(f->o, "import-users", 4 * USERS, argv, &msg,
	    &rows), CTL_OK);
	for (i = 0; i < USERS; i++)
		free(argv[4 * i]);
	free(argv);
	free(msg);
	ctl_rows_clear(&rows);
}

/* What a listing gave: column 0 of every row after the header, in order,
 * and column col_b. */
struct seen {
	char **v;
	char **b;
	size_t n, cap;
	size_t slices;
	bool header;		/* the header row came */
	char *msg;
};

static void
seen_clear(struct seen *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->v[i]);
		free(s->b[i]);
	}
	free(s->v);
	free(s->b);
	free(s->msg);
	memset(s, 0, sizeof(*s));
}

/* How many times v was seen. */
static size_t
seen_count(const struct seen *s, const char *v)
{
	size_t i, n = 0;

	for (i = 0; i < s->n; i++)
		n += strcmp(s->v[i], v) == 0;
	return n;
}

typedef void (*between_cb)(struct fx *f, size_t slice);

/* op in slices of at most rows rows and records records, on the ops'
 * own store; between is called after each slice but the last. */
static enum ctl_status
run_slices(struct fx *f, const char *op, size_t argc, char *const *argv,
    size_t rows_max, size_t records, size_t col_b, between_cb between,
    struct seen *s)
{
	struct ops_req *r = ops_req_new(f->o, op, argc, argv);
	struct ctl_rows rows;
	enum ctl_status st = CTL_FAILED;
	char *msg = NULL;
	size_t i;
	int more;

	memset(s, 0, sizeof(*s));
	ops_req_set_slice(r, rows_max, records);
	do {
		ctl_rows_init(&rows);
		more = ops_req_run(r, NULL, &rows, &st, &msg);
		s->slices++;
		i = 0;
		if (!s->header && rows.n > 0) {
			s->header = true;
			i = 1;
		}
		if (rows_max != 0 && rows.n > rows_max + i)
			fail_msg("slice of %zu rows, at most %zu", rows.n,
			    rows_max);
		for (; i < rows.n; i++) {
			if (s->n == s->cap) {
				s->cap = s->cap == 0 ? 64 : 2 * s->cap;
				s->v = realloc(s->v, s->cap * sizeof(*s->v));
				s->b = realloc(s->b, s->cap * sizeof(*s->b));
			}
			s->v[s->n] = strdup(rows.row[i].col[0]);
			s->b[s->n] = strdup(rows.row[i].n > col_b ?
			    rows.row[i].col[col_b] : "");
			s->n++;
		}
		ctl_rows_clear(&rows);
		if (more) {
			assert_null(msg);
			if (between != NULL)
				between(f, s->slices);
		}
	} while (more);
	s->msg = msg;
	ops_req_free(r);
	return st;
}

static void
test_every_user_once(void **state)
{
	static const size_t sizes[] = { 1, 2, 3, 7, 64, USERS - 1, USERS,
		USERS + 1, 0 };
	struct fx *f = *state;
	char *all[] = { "" };
	char name[32];
	struct seen s;
	size_t i, j;

	import_users(f);
	for (i = 0; i < MM_ARRAY_SIZE(sizes); i++) {
		assert_int_equal(run_slices(f, "user-list", 1, all, sizes[i],
		    0, 2, NULL, &s), CTL_OK);
		assert_int_equal(s.n, USERS);
		for (j = 0; j < USERS; j++) {
			snprintf(name, sizeof(name), "u%03zu@a.test", j);
			assert_string_equal(s.v[j], name);
			assert_string_equal(s.b[j], "be1");
		}
		if (sizes[i] != 0)
			assert_true(s.slices >= USERS / sizes[i]);
		assert_string_equal(s.msg, "300 users");
		seen_clear(&s);
		/* Export, with few records examined per slice. */
		assert_int_equal(run_slices(f, "export", 0, NULL, sizes[i],
		    sizes[i] == 0 ? 0 : sizes[i] + 1, 1, NULL, &s), CTL_OK);
		assert_int_equal(s.n, USERS);
		for (j = 0; j < USERS; j++) {
			snprintf(name, sizeof(name), "u%03zu@a.test", j);
			assert_int_equal(seen_count(&s, name), 1);
		}
		seen_clear(&s);
	}
	/* Another site's listing: every slice examines records, few rows. */
	{
		char *site_b[] = { "b" };

		assert_int_equal(run_slices(f, "user-list", 1, site_b, 5, 9, 2,
		    NULL, &s), CTL_OK);
		assert_int_equal(s.n, 0);
		assert_true(s.slices >= USERS / 9);
		seen_clear(&s);
	}
}

/* After the second slice (the cursor is past u019 with slices of 10):
 * changes before and after where the listing is. */
static void
change_cb(struct fx *f, size_t slice)
{
	if (slice != 2)
		return;
	exec(f, CTL_OK, "user-del", 1, "u005@a.test");		/* listed */
	exec(f, CTL_OK, "user-del", 1, "u150@a.test");		/* not yet */
	exec(f, CTL_OK, "user-set", 4, "u003@a.test", "be2", "", "");
	exec(f, CTL_OK, "user-set", 4, "u190@a.test", "be2", "", "");
	exec(f, CTL_OK, "user-add", 2, "a-early@a.test", "be1");
	exec(f, CTL_OK, "user-add", 2, "z-late@a.test", "be1");
	exec(f, CTL_OK, "user-add", 2, "u019x@a.test", "be1");
}

static void
test_changes_between_slices(void **state)
{
	struct fx *f = *state;
	char *all[] = { "" };
	char name[32];
	struct seen s;
	size_t j;

	import_users(f);
	assert_int_equal(run_slices(f, "user-list", 1, all, 10, 0, 2,
	    change_cb, &s), CTL_OK);
	for (j = 0; j < USERS; j++) {
		snprintf(name, sizeof(name), "u%03zu@a.test", j);
		assert_int_equal(seen_count(&s, name), j == 150 ? 0 : 1);
	}
	for (j = 0; j < s.n; j++) {
		/* In name order, never twice. */
		if (j > 0)
			assert_true(strcmp(s.v[j - 1], s.v[j]) < 0);
		if (strcmp(s.v[j], "u003@a.test") == 0)
			assert_string_equal(s.b[j], "be1");	/* before */
		if (strcmp(s.v[j], "u190@a.test") == 0)
			assert_string_equal(s.b[j], "be2");	/* after */
	}
	assert_int_equal(seen_count(&s, "a-early@a.test"), 0);
	assert_int_equal(seen_count(&s, "z-late@a.test"), 1);
	assert_int_equal(seen_count(&s, "u019x@a.test"), 1);
	assert_int_equal(s.n, USERS - 1 + 2);
	seen_clear(&s);

	/* A fresh listing sees the store as it is now. */
	assert_int_equal(run_slices(f, "user-list", 1, all, 4, 0, 2, NULL,
	    &s), CTL_OK);
	assert_int_equal(s.n, USERS - 2 + 3);
	assert_int_equal(seen_count(&s, "a-early@a.test"), 1);
	assert_int_equal(seen_count(&s, "u005@a.test"), 0);
	seen_clear(&s);
}

/* verify, stats and keys-list in slices give what they give whole. */
static void
test_other_requests_in_slices(void **state)
{
	struct fx *f = *state;
	uint8_t env[FX_ENV_MAX], never[DKEY_ID_LEN];
	struct store *st;
	struct seen s;
	char want[64];
	size_t n;

	import_users(f);
	exec(f, CTL_OK, "user-del", 1, "u007@a.test");
	exec(f, CTL_OK, "user-del", 1, "u200@a.test");
	assert_int_equal(run_slices(f, "verify", 0, NULL, 0, 7, 0, NULL, &s),
	    CTL_OK);
	assert_true(s.slices > USERS / 7);
	assert_int_equal(s.n, 0);
	/* The users and the one certificate, each checked once. */
	snprintf(want, sizeof(want), "checked=%d bad=0 equivocations=0",
	    USERS + 1);
	assert_string_equal(s.msg, want);
	seen_clear(&s);

	assert_int_equal(run_slices(f, "stats", 0, NULL, 0, 11, 1, NULL, &s),
	    CTL_OK);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.v[0], "300");		/* users */
	assert_string_equal(s.b[0], "2");		/* tombstones */
	seen_clear(&s);

	/* Another certified key, then revoked; and a revocation of a key
	 * never certified here. */
	/* One environment per process: the ops' own. */
	st = ops_store(f->o);
	n = fx_cert(&f->root, &f->other, "b", FX_NOW - 10, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	n = fx_revoke(&f->root, f->other.id, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	memset(never, 0x5a, sizeof(never));
	n = fx_revoke(&f->root, never, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	assert_int_equal(run_slices(f, "keys-list", 0, NULL, 1, 0, 6, NULL,
	    &s), CTL_OK);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.msg, "3 keys");
	{
		char kid[DKEY_ID_HEX_LEN + 1];
		size_t i, valid = 0, revoked = 0;

		for (i = 0; i < s.n; i++) {
			valid += strcmp(s.b[i], "valid") == 0;
			revoked += strcmp(s.b[i], "revoked") == 0;
		}
		assert_int_equal(valid, 1);
		assert_int_equal(revoked, 2);
		dkey_id_hex(never, kid);
		assert_int_equal(seen_count(&s, kid), 1);
	}
	seen_clear(&s);
}

/* ops_exec runs a sliced request whole; an unknown request or a wrong
 * count is the one slice's answer. */
static void
test_whole_and_refused(void **state)
{
	struct fx *f = *state;
	char *all[] = { "" }, *msg = NULL;
	struct ctl_rows rows;
	struct seen s;

	import_users(f);
	ctl_rows_init(&rows);
	assert_int_equal(ops_exec(f->o, "user-list", 1, all, &msg, &rows),
	    CTL_OK);
	assert_int_equal(rows.n, USERS + 1);
	assert_string_equal(rows.row[0].col[0], "user");
	free(msg);
	ctl_rows_clear(&rows);
	assert_int_equal(run_slices(f, "no-such-op", 0, NULL, 0, 0, 0, NULL,
	    &s), CTL_USAGE);
	assert_int_equal(s.slices, 1);
	seen_clear(&s);
	assert_int_equal(run_slices(f, "user-list", 0, NULL, 0, 0, 0, NULL,
	    &s), CTL_USAGE);
	assert_int_equal(s.slices, 1);
	seen_clear(&s);
	assert_false(ops_on_loop("user-list"));
	assert_true(ops_on_loop("sites"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_every_user_once, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_changes_between_slices,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_requests_in_slices,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_whole_and_refused, setup,
		    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
