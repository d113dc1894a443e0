/* The per-address table: connections, and failed logins with the logins
 * in flight counted as failures until they end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "iptable.h"

#define WINDOW 60000

static struct sockaddr_in
addr(const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void
test_logins_in_flight_count(void **state)
{
	struct iptable *t = iptable_new();
	struct sockaddr_in a = addr("192.0.2.1"), b = addr("192.0.2.2");
	int i;

	/* Five may be in flight at once, on any workers; the sixth waits
	 * for none of them and is refused. */
	for (i = 0; i < 5; i++)
		assert_true(iptable_login_begin(t, (unsigned)i % 2, SA(a), 1000,
		    WINDOW, 5));
	assert_false(iptable_login_begin(t, 0, SA(a), 1000, WINDOW, 5));
	/* Another address is not affected. */
	assert_true(iptable_login_begin(t, 0, SA(b), 1000, WINDOW, 5));
	iptable_login_end(t, 0, SA(b), 1000, WINDOW, false);

	/* Two succeed: their places are free again. Three fail: they stay
	 * as failures. */
	iptable_login_end(t, 0, SA(a), 1001, WINDOW, false);
	iptable_login_end(t, 1, SA(a), 1001, WINDOW, false);
	iptable_login_end(t, 0, SA(a), 1001, WINDOW, true);
	iptable_login_end(t, 1, SA(a), 1001, WINDOW, true);
	iptable_login_end(t, 0, SA(a), 1001, WINDOW, true);
	assert_true(iptable_login_begin(t, 0, SA(a), 1002, WINDOW, 5));
	assert_true(iptable_login_begin(t, 1, SA(a), 1002, WINDOW, 5));
	assert_false(iptable_login_begin(t, 1, SA(a), 1002, WINDOW, 5));
	iptable_login_end(t, 0, SA(a), 1003, WINDOW, false);
	iptable_login_end(t, 1, SA(a), 1003, WINDOW, false);
	/* A refused attempt counts as a failure. */
	iptable_fail_add(t, SA(a), 1003, WINDOW);
	assert_true(iptable_login_begin(t, 0, SA(a), 1004, WINDOW, 5));
	assert_false(iptable_login_begin(t, 0, SA(a), 1004, WINDOW, 5));
	iptable_login_end(t, 0, SA(a), 1005, WINDOW, false);

	/* The failures expire with their window. */
	assert_true(iptable_login_begin(t, 0, SA(a), 1000 + WINDOW, WINDOW,
	    5));
	iptable_login_end(t, 0, SA(a), 1000 + WINDOW, WINDOW, false);
	iptable_free(t);
}

static void
test_dead_worker_logins_forgotten(void **state)
{
	struct iptable *t = iptable_new();
	struct sockaddr_in a = addr("192.0.2.9");

	assert_true(iptable_login_begin(t, 3, SA(a), 1000, WINDOW, 2));
	assert_true(iptable_login_begin(t, 3, SA(a), 1000, WINDOW, 2));
	assert_false(iptable_login_begin(t, 1, SA(a), 1000, WINDOW, 2));
	/* Worker 3 died with both logins in flight. */
	iptable_reset_worker(t, 3);
	assert_true(iptable_login_begin(t, 1, SA(a), 1000, WINDOW, 2));
	iptable_free(t);
}

static void
test_connections(void **state)
{
	struct iptable *t = iptable_new();
	struct sockaddr_in a = addr("192.0.2.3");

	assert_true(iptable_conn_open(t, 0, SA(a), 2, 100));
	assert_true(iptable_conn_open(t, 1, SA(a), 2, 100));
	assert_false(iptable_conn_open(t, 0, SA(a), 2, 100));
	iptable_conn_close(t, 1, SA(a));
	assert_true(iptable_conn_open(t, 0, SA(a), 2, 100));
	iptable_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logins_in_flight_count),
		cmocka_unit_test(test_dead_worker_logins_forgotten),
		cmocka_unit_test(test_connections),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
