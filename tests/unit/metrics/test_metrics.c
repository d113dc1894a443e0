/* Unit tests for metrics: counting in per-worker slots, the sum over
 * slots in the text format, keys merged across workers, the "other"
 * bucket past the key limit, the gauge reset of a restarted worker, and
 * an output buffer too small. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mm_metrics.h"

static char out[64 * 1024];

static const char *
render(const struct mm_metrics *m)
{
	size_t n = mm_metrics_render(m, out, sizeof(out));

	assert_true(n > 0);
	assert_int_equal(strlen(out), n);
	return out;
}

/* The value of the sample line that starts with prefix (name{labels}). */
static long long
sample(const char *text, const char *line)
{
	char want[256];
	const char *p;

	snprintf(want, sizeof(want), "\n%s ", line);
	p = strstr(text, want);
	if (p == NULL)
		return -1;
	return atoll(p + strlen(want));
}

static void
test_sum_over_workers(void **state)
{
	struct mm_metrics *m = mm_metrics_new(3);
	struct mm_metrics_slot *a = mm_metrics_slot(m, 0), *b = mm_metrics_slot(m, 2);
	const char *t;

	(void)state;
	assert_null(mm_metrics_slot(m, 3));
	mm_metrics_connection(a, MM_PROTO_IMAP);
	mm_metrics_connection(b, MM_PROTO_IMAP);
	mm_metrics_connection(b, MM_PROTO_POP3);
	mm_metrics_session_open(a, MM_PROTO_IMAP);
	mm_metrics_session_open(b, MM_PROTO_IMAP);
	mm_metrics_session_end(b, MM_PROTO_IMAP);
	mm_metrics_session_end(b, MM_PROTO_IMAP);	/* never below zero */
	mm_metrics_bytes(a, MM_PROTO_IMAP, MM_METRICS_OUT, 1000);
	mm_metrics_bytes(b, MM_PROTO_IMAP, MM_METRICS_OUT, 24);
	mm_metrics_bytes(b, MM_PROTO_SMTP, MM_METRICS_IN, 7);
	mm_metrics_count(a, MM_METRICS_LOGIN, MM_PROTO_IMAP, "ok");
	mm_metrics_count(b, MM_METRICS_LOGIN, MM_PROTO_IMAP, "ok");
	mm_metrics_count(b, MM_METRICS_LOGIN, MM_PROTO_IMAP, "authfail");
	mm_metrics_count(a, MM_METRICS_LOGIN, MM_PROTO_POP3, "ok");
	mm_metrics_count(b, MM_METRICS_CLOSE, MM_PROTO_IMAP, "client-closed");
	mm_metrics_count(b, MM_METRICS_MESSAGE, MM_PROTO_SMTP, "delivered");
	mm_metrics_count_restart(m);

	t = render(m);
	assert_int_equal(sample(t, "mailmesh_connections_total{proto=\"imap\"}"),
	    2);
	assert_int_equal(sample(t, "mailmesh_connections_total{proto=\"pop3\"}"),
	    1);
	assert_int_equal(sample(t, "mailmesh_sessions_active{proto=\"imap\"}"),
	    1);
	assert_int_equal(sample(t, "mailmesh_relay_bytes_total{proto=\"imap\","
	    "direction=\"out\"}"), 1024);
	assert_int_equal(sample(t, "mailmesh_relay_bytes_total{proto=\"smtp\","
	    "direction=\"in\"}"), 7);
	assert_int_equal(sample(t, "mailmesh_logins_total{proto=\"imap\","
	    "result=\"ok\"}"), 2);
	assert_int_equal(sample(t, "mailmesh_logins_total{proto=\"imap\","
	    "result=\"authfail\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_logins_total{proto=\"pop3\","
	    "result=\"ok\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_session_closes_total{proto="
	    "\"imap\",result=\"client-closed\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_smtp_messages_total{proto="
	    "\"smtp\",result=\"delivered\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_worker_restarts_total"), 1);
	assert_int_equal(sample(t, "mailmesh_workers"), 3);
	/* A key two workers share is printed once, summed. */
	{
		const char *first = strstr(t, "{proto=\"imap\",result=\"ok\"}");

		assert_non_null(first);
		assert_null(strstr(first + 1, "{proto=\"imap\",result=\"ok\"}"));
	}
	/* Every family is typed once, before its samples. */
	assert_non_null(strstr(t, "# TYPE mailmesh_sessions_active gauge\n"));
	assert_non_null(strstr(t, "# TYPE mailmesh_logins_total counter\n"));
	mm_metrics_free(m);
}

static void
test_restart_resets_gauge_only(void **state)
{
	struct mm_metrics *m = mm_metrics_new(1);
	struct mm_metrics_slot *s = mm_metrics_slot(m, 0);
	const char *t;

	(void)state;
	mm_metrics_session_open(s, MM_PROTO_SMTP);
	mm_metrics_session_open(s, MM_PROTO_SMTP);
	mm_metrics_connection(s, MM_PROTO_SMTP);
	mm_metrics_count(s, MM_METRICS_CLOSE, MM_PROTO_SMTP, "client-closed");
	mm_metrics_worker_start(m, 0);
	t = render(m);
	assert_int_equal(sample(t, "mailmesh_sessions_active{proto=\"smtp\"}"),
	    0);
	assert_int_equal(sample(t, "mailmesh_connections_total{proto=\"smtp\"}"),
	    1);
	assert_int_equal(sample(t, "mailmesh_session_closes_total{proto="
	    "\"smtp\",result=\"client-closed\"}"), 1);
	mm_metrics_free(m);
}

static void
test_key_limit_counts_other(void **state)
{
	struct mm_metrics *m = mm_metrics_new(1);
	struct mm_metrics_slot *s = mm_metrics_slot(m, 0);
	char name[MM_METRICS_RESULT_MAX + 8];
	const char *t;
	int i;

	(void)state;
	for (i = 0; i < MM_METRICS_KEYS_MAX + 5; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		mm_metrics_count(s, MM_METRICS_CLOSE, MM_PROTO_IMAP, name);
	}
	/* Too long a name is never stored (nor cut). */
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	mm_metrics_count(s, MM_METRICS_CLOSE, MM_PROTO_POP3, name);
	/* A key seen before the limit still counts as itself. */
	mm_metrics_count(s, MM_METRICS_CLOSE, MM_PROTO_IMAP, "r0");
	t = render(m);
	assert_int_equal(sample(t, "mailmesh_session_closes_total{proto="
	    "\"imap\",result=\"r0\"}"), 2);
	assert_int_equal(sample(t, "mailmesh_session_closes_total{proto="
	    "\"imap\",result=\"other\"}"), 5);
	assert_int_equal(sample(t, "mailmesh_session_closes_total{proto="
	    "\"pop3\",result=\"other\"}"), 1);
	mm_metrics_free(m);
}

static void
test_label_escaped(void **state)
{
	struct mm_metrics *m = mm_metrics_new(1);

	(void)state;
	mm_metrics_count(mm_metrics_slot(m, 0), MM_METRICS_LOGIN, MM_PROTO_IMAP,
	    "a\"b\\c\nd");
	assert_non_null(strstr(render(m), "result=\"a\\\"b\\\\c\\nd\"} 1\n"));
	mm_metrics_free(m);
}

static void
test_small_buffer(void **state)
{
	struct mm_metrics *m = mm_metrics_new(2);
	char small[100];

	(void)state;
	assert_int_equal(mm_metrics_render(m, small, sizeof(small)), 0);
	assert_int_equal(mm_metrics_render(m, small, 0), 0);
	mm_metrics_free(m);
}

static void
test_directory_figures(void **state)
{
	struct mm_metrics *m = mm_metrics_new(1);
	struct mm_metrics_directory d;
	const char *t;

	(void)state;
	/* Nothing published (no directory agent): no directory rows. */
	t = render(m);
	assert_null(strstr(t, "mailmesh_directory_"));
	memset(&d, 0, sizeof(d));
	d.records = 12;
	d.certs = 3;
	d.store_used_bytes = 65536;
	d.members = 7;
	mm_metrics_set_directory(m, &d);
	t = render(m);
	assert_int_equal(sample(t, "mailmesh_directory_records"), 12);
	assert_int_equal(sample(t, "mailmesh_directory_certificates"), 3);
	assert_int_equal(sample(t, "mailmesh_directory_store_used_bytes"),
	    65536);
	/* Without gossip its rows stay out, not zero. */
	assert_null(strstr(t, "mailmesh_gossip_"));
	d.gossip = true;
	d.alive = 6;
	d.records_rejected = 2;
	d.throttles = 1;
	mm_metrics_set_directory(m, &d);
	t = render(m);
	assert_int_equal(sample(t, "mailmesh_gossip_members"), 7);
	assert_int_equal(sample(t, "mailmesh_gossip_members_alive"), 6);
	assert_int_equal(sample(t, "mailmesh_gossip_records_rejected_total"),
	    2);
	assert_int_equal(sample(t, "mailmesh_gossip_throttles_total"), 1);
	assert_non_null(strstr(t, "# TYPE mailmesh_gossip_members gauge\n"));
	assert_non_null(strstr(t,
	    "# TYPE mailmesh_gossip_deaths_total counter\n"));
	mm_metrics_set_directory(NULL, &d);
	mm_metrics_free(m);
}

static void
test_backend_failures(void **state)
{
	struct mm_metrics *m = mm_metrics_new(2);
	const char *t;

	(void)state;
	mm_metrics_backend_fail(mm_metrics_slot(m, 0), MM_PROTO_IMAP, "ms1",
	    "connect");
	mm_metrics_backend_fail(mm_metrics_slot(m, 1), MM_PROTO_IMAP, "ms1",
	    "connect");
	mm_metrics_backend_fail(mm_metrics_slot(m, 1), MM_PROTO_IMAP, "ms2",
	    "connect");
	mm_metrics_backend_fail(mm_metrics_slot(m, 0), MM_PROTO_SMTP, "ms1",
	    "backend-timeout");
	/* The same reason as a login result is another key. */
	mm_metrics_count(mm_metrics_slot(m, 0), MM_METRICS_LOGIN,
	    MM_PROTO_IMAP, "connect");
	t = render(m);
	assert_int_equal(sample(t, "mailmesh_backend_failures_total{proto="
	    "\"imap\",backend=\"ms1\",reason=\"connect\"}"), 2);
	assert_int_equal(sample(t, "mailmesh_backend_failures_total{proto="
	    "\"imap\",backend=\"ms2\",reason=\"connect\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_backend_failures_total{proto="
	    "\"smtp\",backend=\"ms1\",reason=\"backend-timeout\"}"), 1);
	assert_int_equal(sample(t, "mailmesh_logins_total{proto=\"imap\","
	    "result=\"connect\"}"), 1);
	mm_metrics_free(m);
}

/* Every worker with the same many keys: each printed once, summed. */
static void
test_many_workers_merge(void **state)
{
	struct mm_metrics *m = mm_metrics_new(MM_METRICS_WORKERS_MAX);
	static char big[512 * 1024];
	char name[32], line[128];
	unsigned w;
	int i;

	(void)state;
	for (w = 0; w < MM_METRICS_WORKERS_MAX; w++)
		for (i = 0; i < 90; i++) {
			snprintf(name, sizeof(name), "r%02d", i);
			mm_metrics_count(mm_metrics_slot(m, w), MM_METRICS_CLOSE,
			    MM_PROTO_POP3, name);
		}
	assert_true(mm_metrics_render(m, big, sizeof(big)) > 0);
	for (i = 0; i < 90; i++) {
		const char *first;

		snprintf(line, sizeof(line), "mailmesh_session_closes_total{"
		    "proto=\"pop3\",result=\"r%02d\"}", i);
		assert_int_equal(sample(big, line), MM_METRICS_WORKERS_MAX);
		first = strstr(big, line);
		assert_null(strstr(first + 1, line));
	}
	mm_metrics_free(m);
}

static void
test_null_slot_ignored(void **state)
{
	(void)state;
	mm_metrics_connection(NULL, MM_PROTO_IMAP);
	mm_metrics_session_open(NULL, MM_PROTO_IMAP);
	mm_metrics_session_end(NULL, MM_PROTO_IMAP);
	mm_metrics_bytes(NULL, MM_PROTO_IMAP, MM_METRICS_IN, 1);
	mm_metrics_count(NULL, MM_METRICS_LOGIN, MM_PROTO_IMAP, "ok");
	mm_metrics_backend_fail(NULL, MM_PROTO_IMAP, "ms1", "connect");
	mm_metrics_count_restart(NULL);
	mm_metrics_worker_start(NULL, 0);
	assert_null(mm_metrics_slot(NULL, 0));
	mm_metrics_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_over_workers),
		cmocka_unit_test(test_restart_resets_gauge_only),
		cmocka_unit_test(test_key_limit_counts_other),
		cmocka_unit_test(test_label_escaped),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_directory_figures),
		cmocka_unit_test(test_backend_failures),
		cmocka_unit_test(test_many_workers_merge),
		cmocka_unit_test(test_null_slot_ignored),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
