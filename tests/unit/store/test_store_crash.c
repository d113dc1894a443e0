/* Crash safety: a child imports records in batches (one write transaction
 * each) until the parent kills it with SIGKILL at a random instant. After
 * every kill the store must verify and scrub clean (its consistency tree
 * written with the records) and hold whole batches only. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_fixture.h"

#define CRASH_BATCH 500
#define CRASH_ROUNDS 8
#define CRASH_DELAY_MIN_MS 30
#define CRASH_DELAY_SPAN_MS 600
#define CRASH_CHILD_MAX_BATCHES 400	/* the child never runs away */

static struct dkey root, fra;

/* Imports batches of new users after the ones already stored. */
static void __attribute__((noreturn))
child(const char *path)
{
	static uint8_t bufs[CRASH_BATCH][FX_ENV_MAX / 8];
	const uint8_t *envs[CRASH_BATCH];
	size_t lens[CRASH_BATCH], i, b;
	enum accept_result res[CRASH_BATCH];
	struct store_stats s;
	struct store *st;
	char *err = NULL, name[64];

	st = store_open(path, STORE_WRITE, &err);
	if (st == NULL || store_stats(st, &s) < 0)
		_exit(2);
	for (b = 0; b < CRASH_CHILD_MAX_BATCHES; b++) {
		for (i = 0; i < CRASH_BATCH; i++) {
			snprintf(name, sizeof(name), "c%08" PRIu64 "@x",
			    s.users + b * CRASH_BATCH + i);
			lens[i] = fx_user(&fra, name, "fra", USTATE_ACTIVE, 1,
			    1, "ms1", NULL, 0, bufs[i]);
			envs[i] = bufs[i];
		}
		store_accept_batch(st, envs, lens, CRASH_BATCH, FX_NOW, res);
		for (i = 0; i < CRASH_BATCH; i++)
			if (res[i] != ACCEPT_STORED)
				_exit(3);
	}
	store_close(st);
	_exit(0);
}

static void
bad_cb(const char *what, const char *reason, void *arg)
{
	fprintf(stderr, "bad record: %s: %s\n", what, reason);
}

static void
damaged_cb(const char *user, const char *what, void *arg)
{
	fprintf(stderr, "damaged: %s: %s\n", user, what);
}

static void
test_kill_during_import(void **state)
{
	char dir[] = "/tmp/test_store_crash.XXXXXX", path[64], *err = NULL;
	struct store_verify_report rep;
	struct store_scrub_report sr;
	struct store_tree *tree = NULL;
	struct store_stats s;
	struct store *st;
	uint64_t last = 0;
	int round, status;
	size_t n;
	uint8_t env[FX_ENV_MAX];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/db", dir);
	/* A small map: growth happens during the import, and is killed. */
	st = store_open_sized(path, STORE_WRITE, 256 * 1024, &err);
	assert_non_null(st);
	assert_int_equal(store_set_root(st, root.pk, &err), 0);
	n = fx_cert(&root, &fra, "fra", FX_NOW - 100, 0, env);
	assert_int_equal(store_accept(st, env, n, FX_NOW), ACCEPT_STORED);
	store_close(st);

	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	for (round = 0; round < CRASH_ROUNDS; round++) {
		long ms = CRASH_DELAY_MIN_MS + random() % CRASH_DELAY_SPAN_MS;
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			child(path);
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* It must not have stopped for another reason. */
		if (WIFEXITED(status))
			assert_int_equal(WEXITSTATUS(status), 0);

		st = store_open(path, STORE_WRITE, &err);
		if (st == NULL)
			fail_msg("reopen after kill: %s", err);
		assert_int_equal(store_stats(st, &s), 0);
		assert_int_equal(store_verify(st, FX_NOW, &rep, bad_cb, NULL),
		    0);
		assert_int_equal(rep.bad, 0);
		assert_int_equal(rep.checked, s.users + 1);
		assert_int_equal(s.users % CRASH_BATCH, 0);
		assert_true(s.users >= last);
		assert_int_equal(store_scrub(st, damaged_cb, NULL, NULL, &sr),
		    0);
		assert_int_equal(sr.damaged, 0);
		assert_int_equal(sr.records, s.users);
		assert_int_equal(store_tree_build(st, &tree), 0);
		assert_int_equal(store_tree_users(tree), s.users);
		store_tree_free(tree);
		print_message("round %d: killed after %ld ms, %" PRIu64
		    " users\n", round, ms, s.users);
		last = s.users;
		store_close(st);
	}
	assert_true(last > 0);
	fx_rmdir(path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_during_import),
	};

	if (dkey_init() < 0)
		return 1;
	dkey_generate(&root);
	dkey_generate(&fra);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
