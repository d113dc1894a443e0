/* The cross-site session request: round trip and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "xsite.h"

static struct xsite_req
good_req(void)
{
	struct xsite_req rq;

	memset(&rq, 0, sizeof(rq));
	rq.proto = MM_PROTO_POP3;
	strcpy(rq.user, "alice@a.test");
	strcpy(rq.caddr, "192.0.2.7");
	rq.cport = 50123;
	rq.hops = 2;
	rq.sid = 0x1234567890ULL;
	return rq;
}

static void
test_round_trip(void **state)
{
	struct xsite_req in = good_req(), out;
	uint8_t buf[XSITE_REQ_MAX];
	const char *why = NULL;
	int n;

	(void)state;
	n = xsite_req_encode(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(xsite_req_decode(buf, (size_t)n, &out, &why), 0);
	assert_int_equal(out.proto, in.proto);
	assert_string_equal(out.user, in.user);
	assert_string_equal(out.caddr, in.caddr);
	assert_int_equal(out.cport, in.cport);
	assert_int_equal(out.hops, in.hops);
	assert_true(out.sid == in.sid);

	strcpy(in.caddr, "2001:db8::5");
	n = xsite_req_encode(&in, buf, sizeof(buf));
	assert_int_equal(xsite_req_decode(buf, (size_t)n, &out, &why), 0);
	assert_string_equal(out.caddr, "2001:db8::5");
	assert_false(out.dsync);

	/* A move's dsync stream names the target back end. */
	in.dsync = true;
	strcpy(in.backend, "ms7");
	n = xsite_req_encode(&in, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(xsite_req_decode(buf, (size_t)n, &out, &why), 0);
	assert_true(out.dsync);
	assert_string_equal(out.backend, "ms7");
	in.backend[0] = '\0';
	assert_int_equal(xsite_req_encode(&in, buf, sizeof(buf)), -1);
}

static void
test_every_prefix_refused(void **state)
{
	struct xsite_req in = good_req(), out;
	uint8_t buf[XSITE_REQ_MAX];
	const char *why;
	int n, i;

	(void)state;
	n = xsite_req_encode(&in, buf, sizeof(buf));
	for (i = 0; i < n; i++) {
		why = NULL;
		assert_int_equal(xsite_req_decode(buf, (size_t)i, &out, &why),
		    -1);
		assert_non_null(why);
	}
}

static void
test_trailing_byte_refused(void **state)
{
	struct xsite_req in = good_req(), out;
	uint8_t buf[XSITE_REQ_MAX];
	const char *why = NULL;
	int n;

	(void)state;
	n = xsite_req_encode(&in, buf, sizeof(buf));
	buf[n] = 0xc0;
	assert_int_equal(xsite_req_decode(buf, (size_t)n + 1, &out, &why), -1);
	assert_non_null(why);
}

/* Encodes in, lets edit change it, expects a refusal. */
static void
refused(struct xsite_req in)
{
	uint8_t buf[XSITE_REQ_MAX];
	struct xsite_req out;
	const char *why = NULL;
	int n = xsite_req_encode(&in, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal(xsite_req_decode(buf, (size_t)n, &out, &why), -1);
	assert_non_null(why);
}

static void
test_bad_fields_refused(void **state)
{
	struct xsite_req rq;

	(void)state;
	rq = good_req();
	rq.user[0] = '\0';
	refused(rq);
	rq = good_req();
	strcpy(rq.caddr, "client.example");
	refused(rq);
	rq = good_req();
	rq.hops = XSITE_HOPS + 1;
	refused(rq);
	rq = good_req();
	rq.proto = (enum mm_proto)MM_PROTO_COUNT;
	refused(rq);
}

static void
test_wrong_version_and_shape(void **state)
{
	/* [2, ...]: an unknown version; a map instead of an array; a
	 * string where the port goes. */
	static const uint8_t v2[] = { 0x97, 0x02, 0x00, 0xa1, 'a', 0xa3, '1',
		'.', '2', 0x01, 0x01, 0x01 };
	static const uint8_t map[] = { 0x81, 0x01, 0x01 };
	static const uint8_t port_str[] = { 0x97, 0x01, 0x00, 0xa1, 'a', 0xa7,
		'1', '.', '2', '.', '3', '.', '4', 0xa1, 'x', 0x01, 0x01 };
	struct xsite_req out;
	const char *why;

	(void)state;
	why = NULL;
	assert_int_equal(xsite_req_decode(v2, sizeof(v2), &out, &why), -1);
	assert_non_null(why);
	why = NULL;
	assert_int_equal(xsite_req_decode(map, sizeof(map), &out, &why), -1);
	assert_non_null(why);
	why = NULL;
	assert_int_equal(xsite_req_decode(port_str, sizeof(port_str), &out,
	    &why), -1);
	assert_non_null(why);
}

static void
test_oversized_refused(void **state)
{
	static uint8_t big[XSITE_REQ_MAX + 1];
	struct xsite_req out;
	const char *why = NULL;

	(void)state;
	memset(big, 0x90, sizeof(big));
	assert_int_equal(xsite_req_decode(big, sizeof(big), &out, &why), -1);
	assert_non_null(why);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_prefix_refused),
		cmocka_unit_test(test_trailing_byte_refused),
		cmocka_unit_test(test_bad_fields_refused),
		cmocka_unit_test(test_wrong_version_and_shape),
		cmocka_unit_test(test_oversized_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
