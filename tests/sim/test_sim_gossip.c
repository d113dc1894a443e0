/* The gossip core in a simulated cluster: dissemination, failure
 * detection, partitions, refutation, loss. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "sim.h"

static struct sim *
cluster(uint32_t n, double loss, uint64_t seed)
{
	struct sim_conf c;

	sim_conf_defaults(&c);
	c.n = n;
	c.loss = loss;
	c.seed = seed;
	return sim_new(&c);
}

static bool
converged(struct sim *s, void *arg)
{
	(void)arg;
	return sim_records_converged(s);
}

static bool
healthy(struct sim *s, void *arg)
{
	(void)arg;
	return sim_membership_healthy(s) && sim_records_converged(s);
}

struct seen {
	uint32_t subject;
	enum gossip_state state;
};

static bool
all_see(struct sim *s, void *arg)
{
	struct seen *w = arg;

	return sim_all_see(s, w->subject, w->state);
}

static void
test_record_reaches_all(void **state)
{
	struct sim *s = cluster(10, 0, 11);
	struct sim_track t;
	uint64_t seq;

	(void)state;
	sim_run(s, 3000);
	seq = sim_author(s, 3, true);
	sim_track(s, 3, seq);
	assert_true(sim_run_until(s, converged, NULL, 2000, 10));
	sim_track_get(s, &t);
	assert_int_equal(t.reached, 10);
	assert_true(t.last_ms < 500);
	assert_true(t.max_hops >= 1);
	sim_free(s);
}

static void
test_anti_entropy_alone(void **state)
{
	struct sim *s = cluster(10, 0.1, 12);
	uint32_t i;

	(void)state;
	sim_run(s, 2000);
	/* Never pushed: only digest exchange can spread these. */
	for (i = 0; i < 300; i++)
		sim_author(s, i % 3, false);
	assert_true(sim_run_until(s, converged, NULL, 30000, 100));
	sim_free(s);
}

static void
test_crash_declared_dead(void **state)
{
	struct sim *s = cluster(10, 0, 13);
	struct seen w = { 7, GOSSIP_DEAD };
	uint64_t t0;

	(void)state;
	sim_run(s, 5000);
	assert_true(sim_membership_healthy(s));
	t0 = sim_now(s);
	sim_crash(s, 7);
	assert_true(sim_run_until(s, all_see, &w, 30000, 10));
	print_message("crash detected everywhere after %llu ms\n",
	    (unsigned long long)(sim_now(s) - t0));
	assert_true(sim_now(s) - t0 <= 15000);
	assert_int_equal(sim_false_deaths(s), 0);
	sim_free(s);
}

static void
test_partition_heals(void **state)
{
	struct sim *s = cluster(10, 0.02, 14);
	struct seen w = { 0, GOSSIP_DEAD };
	uint32_t i;
	uint64_t t0;

	(void)state;
	sim_run(s, 3000);
	for (i = 5; i < 10; i++)
		sim_partition(s, i, 1);
	for (i = 0; i < 200; i++)
		sim_author(s, i % 10, true);
	/* Long enough for each side to declare the other dead. */
	w.subject = 9;
	assert_true(sim_run_until(s, all_see, &w, 60000, 100) ||
	    sim_view(s, 0, 9) == GOSSIP_DEAD);
	assert_false(sim_records_converged(s));
	t0 = sim_now(s);
	sim_heal(s);
	assert_true(sim_run_until(s, healthy, NULL, 60000, 50));
	print_message("partition healed, converged after %llu ms\n",
	    (unsigned long long)(sim_now(s) - t0));
	sim_free(s);
}

static void
test_no_false_death_under_loss(void **state)
{
	struct sim *s = cluster(10, 0.10, 15);
	struct gossip_stats st;

	(void)state;
	sim_run(s, 600 * 1000);
	gossip_stats(sim_gossip(s, 0), &st);
	print_message("10%% loss, 10 min: %llu false suspicions, %llu false "
	    "deaths, node 0 refuted %llu times\n",
	    (unsigned long long)sim_false_suspicions(s),
	    (unsigned long long)sim_false_deaths(s),
	    (unsigned long long)st.refutations);
	assert_int_equal(sim_false_deaths(s), 0);
	assert_true(sim_membership_healthy(s));
	sim_free(s);
}

static void
test_suspect_refutes(void **state)
{
	struct sim *s = cluster(10, 0, 16);
	struct gossip_member_info mi;
	struct seen w = { 2, GOSSIP_ALIVE };
	struct gossip_stats st;
	uint64_t suspicions = 0;
	uint32_t i;

	(void)state;
	sim_run(s, 3000);
	/* Cut node 2 off long enough to be suspected, not declared dead. */
	sim_partition(s, 2, 1);
	sim_run(s, 2500);
	sim_heal(s);
	for (i = 0; i < 10; i++) {
		gossip_stats(sim_gossip(s, i), &st);
		suspicions += i == 2 ? 0 : st.suspicions;
	}
	assert_true(suspicions > 0);
	sim_run(s, 3000);
	assert_true(sim_run_until(s, all_see, &w, 10000, 10));
	assert_int_equal(sim_false_deaths(s), 0);
	assert_int_equal(gossip_member_get(sim_gossip(s, 0), "n2", &mi), 1);
	assert_true(mi.incarnation > 0);	/* it refuted */
	assert_int_equal(mi.state, GOSSIP_ALIVE);
	sim_free(s);
}

static void
test_rtt_and_sites_known(void **state)
{
	struct sim *s = cluster(10, 0, 17);
	struct gossip_member_info mi;

	(void)state;
	sim_run(s, 20000);
	assert_int_equal(gossip_member_get(sim_gossip(s, 1), "n4", &mi), 1);
	assert_string_equal(mi.site, "s4");
	assert_string_equal(mi.addr, "10.0.0.4:7946");
	assert_true(mi.rtt_ms >= 20 && mi.rtt_ms <= 40);
	assert_true(mi.last_contact_ms > 0);
	sim_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_reaches_all),
		cmocka_unit_test(test_anti_entropy_alone),
		cmocka_unit_test(test_crash_declared_dead),
		cmocka_unit_test(test_partition_heals),
		cmocka_unit_test(test_no_false_death_under_loss),
		cmocka_unit_test(test_suspect_refutes),
		cmocka_unit_test(test_rtt_and_sites_known),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
