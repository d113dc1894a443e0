/* Gossip benchmark: the real gossip core in the simulator (virtual clock,
 * virtual network), printed beside the targets and Serf's published
 * figure. Not a pass/fail test.
 *
 * Rounds are gossip intervals (200 ms) from publication until the last
 * live node holds the record, as in Serf's convergence figure; hops is the
 * longest chain of sends by which a node first got it (the infection
 * generation); time is virtual time. Bytes are gossip payload, without
 * transport framing and encryption. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define LATENCY_MS 10
#define JITTER_MS 20
#define GOSSIP_MS 200	/* the default gossip interval */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values. */
static uint64_t
pct(const uint64_t *v, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return n == 0 ? 0 : v[rank == 0 ? 0 : rank - 1];
}

static struct sim *
cluster(uint32_t n, double loss, uint64_t seed)
{
	struct sim_conf c;

	sim_conf_defaults(&c);
	c.n = n;
	c.sites = n < 10 ? n : 10;
	c.loss = loss;
	c.latency_ms = LATENCY_MS;
	c.jitter_ms = JITTER_MS;
	c.seed = seed;
	return sim_new(&c);
}

static bool
reached_all(struct sim *s, void *arg)
{
	struct sim_track t;

	(void)arg;
	sim_track_get(s, &t);
	return t.reached == t.live;
}

static bool
converged(struct sim *s, void *arg)
{
	(void)arg;
	return sim_records_converged(s) && sim_membership_healthy(s);
}

struct seen {
	uint32_t subject;
};

static bool
all_dead(struct sim *s, void *arg)
{
	return sim_all_see(s, ((struct seen *)arg)->subject, GOSSIP_DEAD);
}

static void
dissemination(uint32_t n, double loss, size_t trials, const char *target,
    const char *serf)
{
	uint64_t *rounds = calloc(trials, sizeof(*rounds));
	uint64_t *ms = calloc(trials, sizeof(*ms));
	uint64_t *hops = calloc(trials, sizeof(*hops));
	size_t done = 0, sims = n >= 1000 ? 2 : 4, k, missed = 0;
	uint64_t seed;
	char label[64];

	for (seed = 1; seed <= sims; seed++) {
		struct sim *s = cluster(n, loss, seed * 7919 + n);
		size_t per = (trials - done) / (sims - seed + 1);

		sim_run(s, 5000);
		for (k = 0; k < per; k++) {
			struct sim_track t;
			uint32_t origin = (uint32_t)((k * 7 + seed * 13) % n);
			uint64_t seq = sim_author(s, origin, true);

			sim_track(s, origin, seq);
			if (!sim_run_until(s, reached_all, NULL, 20000, 5))
				missed++;
			sim_track_get(s, &t);
			hops[done] = t.max_hops;
			rounds[done] = (t.last_ms + GOSSIP_MS - 1) / GOSSIP_MS;
			ms[done] = t.last_ms;
			done++;
			sim_run(s, 1500);	/* let pushes die down */
		}
		sim_free(s);
	}
	qsort(rounds, done, sizeof(*rounds), cmp_u64);
	qsort(ms, done, sizeof(*ms), cmp_u64);
	qsort(hops, done, sizeof(*hops), cmp_u64);
	snprintf(label, sizeof(label), "100%% of %u, %2.0f%% loss", n,
	    loss * 100);
	printf("%-28s %2llu / %2llu rounds %2llu / %2llu hops %4llu / %4llu ms%s "
	    "%-12s %s\n", label, (unsigned long long)pct(rounds, done, 50),
	    (unsigned long long)pct(rounds, done, 99),
	    (unsigned long long)pct(hops, done, 50),
	    (unsigned long long)pct(hops, done, 99),
	    (unsigned long long)pct(ms, done, 50),
	    (unsigned long long)pct(ms, done, 99),
	    missed ? " (missed)" : "", target, serf);
	free(rounds);
	free(hops);
	free(ms);
}

static void
bandwidth(void)
{
	const uint32_t n = 100;
	struct sim *s = cluster(n, 0, 4242);
	uint64_t out = 0, in = 0, secs = 60, i;
	uint32_t j;

	sim_run(s, 10000);
	sim_reset_bytes(s);
	sim_run(s, secs * 1000);
	for (j = 0; j < n; j++) {
		out += sim_bytes_sent(s, j);
		in += sim_bytes_recv(s, j);
	}
	printf("%-28s %7.0f B/s out %7.0f B/s in %20s %-12s %s\n",
	    "idle, 100 nodes, per node", (double)out / n / secs,
	    (double)in / n / secs, "", "<= 2048 B/s", "-");
	sim_reset_bytes(s);
	out = in = 0;
	secs = 30;
	for (i = 0; i < secs * 100; i++) {
		sim_author(s, (uint32_t)(i * 37 % n), true);
		sim_run(s, 10);
	}
	for (j = 0; j < n; j++) {
		out += sim_bytes_sent(s, j);
		in += sim_bytes_recv(s, j);
	}
	printf("%-28s %7.0f B/s out %7.0f B/s in %20s %-12s %s\n",
	    "100 updates/s, per node", (double)out / n / secs,
	    (double)in / n / secs, "", "(report)", "-");
	sim_free(s);
}

static void
heal(void)
{
	struct sim *s = cluster(10, 0, 99);
	struct seen w = { 9 };
	uint64_t t0;
	uint32_t i;

	sim_run(s, 5000);
	for (i = 5; i < 10; i++)
		sim_partition(s, i, 1);
	for (i = 0; i < 10000; i++) {
		sim_author(s, i % 10, true);
		if (i % 100 == 99)
			sim_run(s, 20);
	}
	sim_run_until(s, all_dead, &w, 120000, 100);
	sim_run(s, 5000);
	t0 = sim_now(s);
	sim_heal(s);
	if (!sim_run_until(s, converged, NULL, 600000, 10))
		printf("heal: did not converge\n");
	printf("%-28s %33s %7llu ms %s %-12s %s\n",
	    "heal, 10,000 records, 10 nodes", "",
	    (unsigned long long)(sim_now(s) - t0), "",
	    "<= 10000 ms", "-");
	sim_free(s);
}

static void
crash(size_t trials)
{
	uint64_t *ms = calloc(trials, sizeof(*ms));
	size_t k;

	for (k = 0; k < trials; k++) {
		struct sim *s = cluster(10, 0, 500 + k);
		struct seen w = { (uint32_t)(k % 10) };
		uint64_t t0;

		sim_run(s, 5000 + k * 37);
		t0 = sim_now(s);
		sim_crash(s, w.subject);
		sim_run_until(s, all_dead, &w, 120000, 10);
		ms[k] = sim_now(s) - t0;
		sim_free(s);
	}
	qsort(ms, trials, sizeof(*ms), cmp_u64);
	printf("%-28s %25s %5llu / %5llu ms %s %-12s %s\n",
	    "crash dead everywhere, 10", "p50 / p99",
	    (unsigned long long)pct(ms, trials, 50),
	    (unsigned long long)pct(ms, trials, 99), "",
	    "<= 15000 ms", "-");
	free(ms);
}

static void
false_deaths(uint32_t n, uint64_t secs)
{
	struct sim *s = cluster(n, 0.10, 31337 + n);
	char label[64];

	sim_run(s, secs * 1000);
	snprintf(label, sizeof(label), "false deaths, %u, 10%% loss", n);
	printf("%-28s %7llu in %4llu s (%5llu suspicions) %17s %-12s %s\n",
	    label, (unsigned long long)sim_false_deaths(s),
	    (unsigned long long)secs,
	    (unsigned long long)sim_false_suspicions(s), "", "0", "-");
	sim_free(s);
}

int
main(int argc, char **argv)
{
	clock_t c0 = clock();
	bool quick = argc > 1 && strcmp(argv[1], "-q") == 0;

	printf("gossip benchmark: simulated network, %d ms + [0, %d] ms one "
	    "way\n", LATENCY_MS, JITTER_MS);
	printf("%-28s %-52s %-12s %s\n", "", "measured (p50 / p99)",
	    "target", "Serf");
	dissemination(10, 0, quick ? 20 : 100, "-", "-");
	dissemination(10, 0.10, quick ? 20 : 100, "-", "-");
	dissemination(100, 0, quick ? 20 : 100, "<= 5 p99",
	    "99.9% in 5.8 rounds (ref.)");
	dissemination(100, 0.10, quick ? 20 : 100, "<= 5 p99", "-");
	dissemination(1000, 0, quick ? 6 : 40, "<= 7 p99", "-");
	dissemination(1000, 0.10, quick ? 6 : 40, "<= 7 p99", "-");
	bandwidth();
	heal();
	crash(quick ? 5 : 40);
	false_deaths(10, 3600);
	if (!quick)
		false_deaths(100, 600);
	printf("(%.1f s of CPU)\n", (double)(clock() - c0) / CLOCKS_PER_SEC);
	return 0;
}
