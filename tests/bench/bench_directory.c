/* Directory benchmark: imports N users (1,000,000 unless -n N) into a
 * temporary store the way `mmctl import` does (store_put_users, batches of
 * BENCH_PUT_BATCH, one write transaction each), then prints the import,
 * lookup, verify and scrub rates beside their targets, the time to read
 * the consistency tree, and the rate of the gossip path
 * (store_accept_batch) on a sample. Not a pass/fail test.
 *
 *   bench_directory [-n N] [-k]     -k keeps the store directory */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dkey.h"
#include "record.h"
#include "store.h"

#define BENCH_USERS_DEFAULT 1000000
#define BENCH_BATCH 10000		/* envelopes per store_accept_batch */
#define BENCH_PUT_BATCH 1000		/* users per store_put_users */
#define BENCH_ACCEPT_SAMPLE 200000	/* envelopes through the gossip path */
#define BENCH_ENV_SLOT 192		/* room for one user envelope */
#define BENCH_SIGN_SAMPLE 50000		/* single-thread signing sample */
#define BENCH_LOOKUPS 2000000
#define BENCH_LATENCY_SAMPLE 200000
#define BENCH_NOW 1700000000ULL
#define BENCH_THREADS 2
#define BENCH_USER_FMT "user%07" PRIu64 "@example.com"
#define BENCH_USER_LEN 48

/* targets */
#define TARGET_IMPORT 50000.0
#define TARGET_LOOKUPS 1000000.0
#define TARGET_P99_US 5.0
#define TARGET_VERIFY 25000.0
#define TARGET_VERIFY_OF_RAW 0.9	/* of this machine's own limit */
#define TARGET_SCRUB 200000.0	/* a million in 5 s: `mmctl check` <= 15 s */

static struct dkey root, site;
static uint8_t *envs;		/* n slots of BENCH_ENV_SLOT */
static size_t *lens;

static double now_s(void);

/* This machine's limit: libsodium verifies of one record's signature per
 * second on one thread, for about a second. */
static double
raw_verifies(const uint8_t *env, size_t len)
{
	struct record r;
	const char *why = NULL;
	double t0, t;
	unsigned long k = 0;

	if (record_decode(env, len, &r, &why) < 0) {
		fprintf(stderr, "raw verify: %s\n", why);
		exit(1);
	}
	t0 = now_s();
	do {
		int i;

		for (i = 0; i < 256; i++, k++)
			if (dkey_verify(site.pk, RECORD_SIG_PREFIX, r.body,
			    r.body_len, env + len - DKEY_SIG_LEN) != 0) {
				fprintf(stderr, "raw verify: bad signature\n");
				exit(1);
			}
	} while ((t = now_s() - t0) < 1.0);
	return (double)k / t;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
user_name(uint64_t i, char *out, size_t size)
{
	snprintf(out, size, BENCH_USER_FMT, i);
}

static void
make_user(uint64_t i)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), BENCH_USER_FMT, i);
	strcpy(u.site, "fra");
	snprintf(u.backend, sizeof(u.backend), "ms%" PRIu64, i % 8);
	u.state = USTATE_ACTIVE;
	u.epoch = 1;
	u.seq = 1;
	strcpy(u.origin, "fra-import");
	u.origin_seq = i + 1;
	u.timestamp = BENCH_NOW;
	n = record_encode_user(&u, &site, envs + i * BENCH_ENV_SLOT,
	    BENCH_ENV_SLOT, &why);
	if (n < 0) {
		fprintf(stderr, "encode: %s\n", why);
		exit(1);
	}
	lens[i] = (size_t)n;
}

struct sign_job {
	uint64_t from, to;
};

static void *
sign_range(void *arg)
{
	struct sign_job *j = arg;
	uint64_t i;

	for (i = j->from; i < j->to; i++)
		make_user(i);
	return NULL;
}

static void
die(const char *what, const char *err)
{
	fprintf(stderr, "bench_directory: %s: %s\n", what, err);
	exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

struct lookup_result {
	double rate, p50_us, p99_us;
	uint64_t misses;
};

/* In a separate process, as a proxy worker would: read-only store, the
 * routing index. */
static void
lookups(const char *path, uint64_t n, struct lookup_result *res)
{
	struct store *st;
	struct store_route u;
	char *err = NULL, *names;
	double *lat, t0;
	uint64_t i, seed = 88172645463325252ULL;

	memset(res, 0, sizeof(*res));
	st = store_open(path, STORE_READONLY, &err);
	if (st == NULL)
		die("open read-only", err);
	names = malloc((size_t)BENCH_LOOKUPS * BENCH_USER_LEN);
	lat = malloc(sizeof(*lat) * BENCH_LATENCY_SAMPLE);
	if (names == NULL || lat == NULL)
		die("lookups", "out of memory");
	for (i = 0; i < BENCH_LOOKUPS; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		snprintf(names + i * BENCH_USER_LEN, BENCH_USER_LEN,
		    BENCH_USER_FMT, seed % n);
	}
	t0 = now_s();
	for (i = 0; i < BENCH_LOOKUPS; i++)
		if (store_get_route(st, names + i * BENCH_USER_LEN, &u) != 1)
			res->misses++;
	res->rate = BENCH_LOOKUPS / (now_s() - t0);
	for (i = 0; i < BENCH_LATENCY_SAMPLE; i++) {
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		(void)store_get_route(st, names + i * BENCH_USER_LEN, &u);
		clock_gettime(CLOCK_MONOTONIC, &b);
		lat[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 +
		    (double)(b.tv_nsec - a.tv_nsec) / 1e3;
	}
	qsort(lat, BENCH_LATENCY_SAMPLE, sizeof(*lat), cmp_double);
	res->p50_us = lat[BENCH_LATENCY_SAMPLE / 2];
	res->p99_us = lat[BENCH_LATENCY_SAMPLE * 99 / 100];
	free(lat);
	free(names);
	store_close(st);
}

static void
row(const char *figure, double value, const char *unit, const char *target,
    int ok)
{
	printf("%-34s %14.1f %-10s %-22s %s\n", figure, value, unit, target,
	    ok < 0 ? "" : ok ? "ok" : "MISSED");
}

int
main(int argc, char **argv)
{
	uint64_t n = BENCH_USERS_DEFAULT, i, sample, na;
	char dir[256], path[300], gpath[300], data[320], *err = NULL;
	const char *tmp = getenv("TMPDIR");
	struct store *st;
	struct store_verify_report rep;
	struct store_scrub_report sr;
	struct store_tree *tree = NULL;
	struct store_stats ss;
	struct lookup_result lr;
	enum accept_result *res;
	const uint8_t **ptrs;
	pthread_t tid[BENCH_THREADS];
	struct sign_job jobs[BENCH_THREADS];
	double t0, sign1, sign2, accept_t, verify_t, put_t, tree_t, scrub_t;
	double raw;
	struct store_signer sg = { &site, "fra", "fra-import" };
	struct store_user_item *items;
	char *names;
	struct store *gs;
	uint8_t cert[RECORD_MAX];
	struct record_cert c;
	const char *why;
	struct stat sb;
	int keep = 0, opt, fds[2], status, cn;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	pid_t pid;

	while ((opt = getopt(argc, argv, "n:k")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoull(optarg, NULL, 10);
			break;
		case 'k':
			keep = 1;
			break;
		default:
			fprintf(stderr, "usage: bench_directory [-n N] [-k]\n");
			return 2;
		}
	}
	if (n < BENCH_THREADS)
		n = BENCH_THREADS;
	if (dkey_init() < 0)
		die("libsodium", "init failed");
	snprintf(dir, sizeof(dir), "%s/bench_directory.XXXXXX",
	    tmp != NULL ? tmp : P_tmpdir);
	if (mkdtemp(dir) == NULL)
		die(dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/store", dir);
	snprintf(gpath, sizeof(gpath), "%s/gossip", dir);

	dkey_generate(&root);
	dkey_generate(&site);
	memset(&c, 0, sizeof(c));
	memcpy(c.pk, site.pk, DKEY_PK_LEN);
	c.role = ROLE_SITE;
	strcpy(c.site, "fra");
	strcpy(c.name, "fra-import");
	c.issued = BENCH_NOW;
	strcpy(c.origin, "root");
	c.origin_seq = 1;
	cn = record_encode_cert(&c, &root, cert, sizeof(cert), &why);
	if (cn < 0)
		die("certificate", why);
	st = store_open(path, STORE_WRITE, &err);
	if (st == NULL)
		die("open", err);
	if (store_set_root(st, root.pk, &err) < 0)
		die("root", err);
	if (store_accept(st, cert, (size_t)cn, BENCH_NOW) != ACCEPT_STORED)
		die("certificate", "not accepted");

	/* The import: what mmctl import does, without the CSV. */
	names = malloc((size_t)BENCH_PUT_BATCH * BENCH_USER_LEN);
	items = malloc(BENCH_PUT_BATCH * sizeof(*items));
	res = malloc(BENCH_BATCH * sizeof(*res));
	if (names == NULL || items == NULL || res == NULL)
		die("memory", "out of memory");
	t0 = now_s();
	for (i = 0; i < n; i += BENCH_PUT_BATCH) {
		size_t k, m = n - i < BENCH_PUT_BATCH ? n - i : BENCH_PUT_BATCH;

		for (k = 0; k < m; k++) {
			char *nm = names + k * BENCH_USER_LEN;

			user_name(i + k, nm, BENCH_USER_LEN);
			items[k].user = nm;
			items[k].backend = (i + k) % 2 ? "ms1" : "ms0";
			items[k].state = USTATE_ACTIVE;
			items[k].target_site = NULL;
		}
		store_put_users(st, &sg, items, m, BENCH_NOW, res);
		for (k = 0; k < m; k++)
			if (res[k] != ACCEPT_STORED)
				die("import", store_accept_name(res[k]));
	}
	put_t = now_s() - t0;
	free(names);
	free(items);

	/* The gossip path on a sample: signed elsewhere, then accepted
	 * (decode, certificate, signature on all cores, rule, LMDB). */
	na = n < BENCH_ACCEPT_SAMPLE ? n : BENCH_ACCEPT_SAMPLE;
	envs = malloc(na * BENCH_ENV_SLOT);
	lens = malloc(na * sizeof(*lens));
	ptrs = malloc(na * sizeof(*ptrs));
	if (envs == NULL || lens == NULL || ptrs == NULL)
		die("memory", "out of memory");
	sample = na < BENCH_SIGN_SAMPLE ? na : BENCH_SIGN_SAMPLE;
	t0 = now_s();
	for (i = 0; i < sample; i++)
		make_user(i);
	sign1 = sample / (now_s() - t0);
	t0 = now_s();
	for (i = 0; i < BENCH_THREADS; i++) {
		jobs[i].from = na * i / BENCH_THREADS;
		jobs[i].to = na * (i + 1) / BENCH_THREADS;
		pthread_create(&tid[i], NULL, sign_range, &jobs[i]);
	}
	for (i = 0; i < BENCH_THREADS; i++)
		pthread_join(tid[i], NULL);
	sign2 = na / (now_s() - t0);
	for (i = 0; i < na; i++)
		ptrs[i] = envs + i * BENCH_ENV_SLOT;
	gs = store_open(gpath, STORE_WRITE, &err);
	if (gs == NULL)
		die("open", err);
	if (store_set_root(gs, root.pk, &err) < 0)
		die("root", err);
	if (store_accept(gs, cert, (size_t)cn, BENCH_NOW) != ACCEPT_STORED)
		die("certificate", "not accepted");
	t0 = now_s();
	for (i = 0; i < na; i += BENCH_BATCH) {
		size_t k, m = na - i < BENCH_BATCH ? na - i : BENCH_BATCH;

		store_accept_batch(gs, ptrs + i, lens + i, m, BENCH_NOW, res);
		for (k = 0; k < m; k++)
			if (res[k] != ACCEPT_STORED)
				die("accept", store_accept_name(res[k]));
	}
	accept_t = now_s() - t0;
	store_close(gs);
	raw = raw_verifies(envs, lens[0]);
	free(envs);
	free(lens);
	free(ptrs);
	free(res);

	/* Lookups in a read-only process. */
	if (pipe(fds) < 0)
		die("pipe", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		lookups(path, n, &lr);
		if (write(fds[1], &lr, sizeof(lr)) != sizeof(lr))
			_exit(1);
		_exit(0);
	}
	if (read(fds[0], &lr, sizeof(lr)) != sizeof(lr))
		die("lookups", "child failed");
	waitpid(pid, &status, 0);

	t0 = now_s();
	if (store_verify(st, BENCH_NOW, &rep, NULL, NULL) < 0)
		die("verify", "store error");
	verify_t = now_s() - t0;
	t0 = now_s();
	if (store_tree_build(st, &tree) < 0)
		die("tree", "store error");
	tree_t = now_s() - t0;
	store_tree_free(tree);
	t0 = now_s();
	if (store_scrub(st, NULL, NULL, NULL, &sr) < 0)
		die("scrub", "store error");
	scrub_t = now_s() - t0;
	if (store_stats(st, &ss) < 0)
		die("stats", "store error");
	snprintf(data, sizeof(data), "%s/data.mdb", path);
	if (stat(data, &sb) < 0)
		die(data, strerror(errno));
	store_close(st);

	printf("directory benchmark: %" PRIu64 " users imported in batches "
	    "of %d, gossip sample %" PRIu64 " in batches of %d, %ld cores\n\n",
	    n, BENCH_PUT_BATCH, na, BENCH_BATCH, ncpu);
	printf("%-34s %14s %-10s %-22s %s\n", "figure", "value", "unit",
	    "target", "");
	printf("%-34s %14s %-10s %-22s %s\n",
	    "----------------------------------", "--------------",
	    "----------", "----------------------", "------");
	row("sign, 1 thread", sign1, "records/s", "", -1);
	row("sign, 2 threads", sign2, "records/s", "", -1);
	row("import (store_put_users)", n / put_t, "records/s", ">= 50000/s",
	    n / put_t >= TARGET_IMPORT);
	row("gossip accept (store_accept_batch)", na / accept_t,
	    "records/s", "", -1);
	row("lookups, 1 read-only process", lr.rate, "lookups/s",
	    ">= 1000000/s per core", lr.rate >= TARGET_LOOKUPS);
	row("lookup latency p50", lr.p50_us, "us", "", -1);
	row("lookup latency p99", lr.p99_us, "us", "<= 5 us",
	    lr.p99_us <= TARGET_P99_US);
	row("raw Ed25519 verify, 1 thread", raw, "verifies/s",
	    "(this machine's limit)", -1);
	row("verify (all cores)", rep.checked / verify_t, "records/s", "",
	    -1);
	row("verify per core", rep.checked / verify_t / (double)ncpu,
	    "records/s", ">= 25000/s per core", rep.checked / verify_t /
	    (double)ncpu >= TARGET_VERIFY);
	row("verify per core / raw limit", rep.checked / verify_t /
	    (double)ncpu / raw * 100.0, "%", ">= 90%", rep.checked /
	    verify_t / (double)ncpu / raw >= TARGET_VERIFY_OF_RAW);
	row("consistency tree read (kept)", tree_t * 1000.0, "ms", "", -1);
	row("scrub, 1 thread", sr.records / scrub_t, "records/s",
	    ">= 200000/s", sr.records / scrub_t >= TARGET_SCRUB);
	row("store size on disk", (double)sb.st_blocks * 512 / 1048576.0,
	    "MiB", "", -1);
	row("store used pages", (double)ss.used_bytes / 1048576.0, "MiB", "",
	    -1);
	row("bytes per user (used)", (double)ss.used_bytes / (double)n,
	    "bytes", "", -1);
	if (lr.misses != 0 || rep.bad != 0 || sr.damaged != 0)
		printf("\nWARNING: %" PRIu64 " lookup misses, %" PRIu64
		    " bad records, %" PRIu64 " damaged\n", lr.misses, rep.bad,
		    sr.damaged);

	if (!keep) {
		unlink(data);
		snprintf(data, sizeof(data), "%s/lock.mdb", path);
		unlink(data);
		rmdir(path);
		snprintf(data, sizeof(data), "%s/data.mdb", gpath);
		unlink(data);
		snprintf(data, sizeof(data), "%s/lock.mdb", gpath);
		unlink(data);
		rmdir(gpath);
		rmdir(dir);
	} else {
		printf("\nstore kept in %s\n", path);
	}
	return 0;
}
