/* mm_net: parsing networks and matching addresses against them. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "mm_net.h"

static struct mm_net
net_ok(const char *s)
{
	struct mm_net net;

	memset(&net, 0xa5, sizeof(net));
	if (mm_net_parse(s, &net) != 0)
		fail_msg("refused: '%s'", s);
	return net;
}

/* A refused network must leave the output untouched. */
static void
net_bad(const char *s)
{
	struct mm_net net, before;

	memset(&net, 0xa5, sizeof(net));
	before = net;
	if (mm_net_parse(s, &net) == 0)
		fail_msg("accepted: '%s'", s);
	assert_memory_equal(&net, &before, sizeof(net));
}

static void
assert_addr(const struct mm_net *net, int family, const char *addr)
{
	unsigned char want[16];

	memset(want, 0, sizeof(want));
	assert_int_equal(net->family, family);
	assert_int_equal(inet_pton(family, addr, want), 1);
	assert_memory_equal(net->addr, want,
	    family == AF_INET ? 4 : 16);
}

/* Matches text as a socket address of its own family. */
static bool
match(const char *net_text, const char *addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct mm_net net = net_ok(net_text);

	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') != NULL) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(143);
		assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr),
		    1);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(143);
		assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
	}
	return mm_net_match(&net, (struct sockaddr *)&ss);
}

/* ---- parsing ---------------------------------------------------------- */

static void
test_parse_v4(void **state)
{
	struct mm_net net;

	net = net_ok("192.0.2.0/24");
	assert_addr(&net, AF_INET, "192.0.2.0");
	assert_int_equal(net.bits, 24);
	/* Bytes past an IPv4 address stay zero. */
	assert_memory_equal(net.addr + 4, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);

	net = net_ok("192.0.2.7");
	assert_addr(&net, AF_INET, "192.0.2.7");
	assert_int_equal(net.bits, 32);

	net = net_ok("192.0.2.7/32");
	assert_int_equal(net.bits, 32);

	net = net_ok("10.0.0.0/8");
	assert_addr(&net, AF_INET, "10.0.0.0");
	assert_int_equal(net.bits, 8);

	net = net_ok("172.16.0.0/12");
	assert_int_equal(net.bits, 12);

	net = net_ok("0.0.0.0/0");
	assert_addr(&net, AF_INET, "0.0.0.0");
	assert_int_equal(net.bits, 0);

	net = net_ok("192.0.2.128/25");
	assert_int_equal(net.bits, 25);
	/* Decimal, not octal. */
	net = net_ok("10.0.0.0/08");
	assert_int_equal(net.bits, 8);
	net = net_ok("10.0.0.0/0000000000000000000000000000000008");
	assert_int_equal(net.bits, 8);
}

static void
test_parse_v6(void **state)
{
	struct mm_net net;

	net = net_ok("2001:db8::/32");
	assert_addr(&net, AF_INET6, "2001:db8::");
	assert_int_equal(net.bits, 32);

	net = net_ok("2001:db8::1");
	assert_addr(&net, AF_INET6, "2001:db8::1");
	assert_int_equal(net.bits, 128);

	net = net_ok("::1/128");
	assert_addr(&net, AF_INET6, "::1");
	assert_int_equal(net.bits, 128);

	net = net_ok("::/0");
	assert_addr(&net, AF_INET6, "::");
	assert_int_equal(net.bits, 0);

	net = net_ok("fe80::/10");
	assert_int_equal(net.bits, 10);

	net = net_ok("2001:db8:0:1::/64");
	assert_addr(&net, AF_INET6, "2001:db8:0:1::");
	assert_int_equal(net.bits, 64);

	net = net_ok("::ffff:192.0.2.0/120");
	assert_addr(&net, AF_INET6, "::ffff:192.0.2.0");
	assert_int_equal(net.bits, 120);
}

static void
test_parse_bad_prefix(void **state)
{
	net_bad("192.0.2.0/33");
	net_bad("0.0.0.0/33");
	net_bad("2001:db8::/129");
	net_bad("::/129");
	net_bad("192.0.2.0/-1");
	net_bad("192.0.2.0/");
	net_bad("2001:db8::/");
	net_bad("192.0.2.0/24x");
	net_bad("192.0.2.0/x24");
	net_bad("192.0.2.0/+24");
	net_bad("192.0.2.0/ 24");
	net_bad("192.0.2.0/24 ");
	net_bad("192.0.2.0/2 4");
	net_bad("192.0.2.0/0x18");
	net_bad("192.0.2.0/000033");
	net_bad("192.0.2.0/4294967320");	/* 2^32 + 24 */
	net_bad("192.0.2.0/24/24");
	net_bad("192.0.2.0//24");
	net_bad("2001:db8::/32/");
}

static void
test_parse_host_bits(void **state)
{
	net_bad("192.0.2.1/24");
	net_bad("10.0.0.1/8");
	net_bad("192.0.2.128/24");
	net_bad("192.0.2.1/31");
	net_bad("192.0.2.0/0");
	net_bad("0.0.0.1/0");
	net_bad("2001:db8::1/64");
	net_bad("2001:db8:0:1::/48");
	net_bad("fec0::/9");
	net_bad("::1/127");
	net_bad("::1/0");
	/* The last bit inside the prefix may be set. */
	net_ok("192.0.2.1/32");
	net_ok("192.0.2.2/31");
	net_ok("fe80::/9");
}

static void
test_parse_not_numeric(void **state)
{
	net_bad("");
	net_bad("/24");
	net_bad("/");
	net_bad("localhost");
	net_bad("localhost/8");
	net_bad("example.com/24");
	net_bad("*");
	net_bad("*/0");
	net_bad("192.0.2");
	net_bad("192.0.2.256");
	net_bad("192.0.2.0.0/24");
	net_bad("0x0a.0.0.0/8");
	net_bad(" 192.0.2.0/24");
	net_bad("192.0.2.0 /24");
	net_bad("[2001:db8::]/32");
	net_bad("[::1]");
	net_bad("fe80::1%eth0");
	net_bad("fe80::%eth0/64");
	net_bad("2001:db8:::/32");
	net_bad("2001:db8::g/128");
	net_bad("192.0.2.0:143");
	net_bad("192.0.2.0/24,10.0.0.0/8");
	/* Longer than any numeric address. */
	net_bad("0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000/0");
}

/* ---- matching ----------------------------------------------------------- */

static void
test_match_v4(void **state)
{
	assert_true(match("192.0.2.0/24", "192.0.2.0"));
	assert_true(match("192.0.2.0/24", "192.0.2.1"));
	assert_true(match("192.0.2.0/24", "192.0.2.255"));
	assert_false(match("192.0.2.0/24", "192.0.1.255"));
	assert_false(match("192.0.2.0/24", "192.0.3.0"));
	assert_false(match("192.0.2.0/24", "10.0.0.1"));

	/* A prefix that ends inside a byte. */
	assert_true(match("172.16.0.0/12", "172.16.0.0"));
	assert_true(match("172.16.0.0/12", "172.31.255.255"));
	assert_false(match("172.16.0.0/12", "172.15.255.255"));
	assert_false(match("172.16.0.0/12", "172.32.0.0"));
	assert_true(match("192.0.2.128/25", "192.0.2.128"));
	assert_true(match("192.0.2.128/25", "192.0.2.255"));
	assert_false(match("192.0.2.128/25", "192.0.2.127"));

	/* One host. */
	assert_true(match("192.0.2.7", "192.0.2.7"));
	assert_false(match("192.0.2.7", "192.0.2.6"));
	assert_false(match("192.0.2.7", "192.0.2.8"));
	assert_true(match("192.0.2.6/31", "192.0.2.7"));
	assert_false(match("192.0.2.6/31", "192.0.2.8"));

	/* /0: every IPv4 address, and only those. */
	assert_true(match("0.0.0.0/0", "0.0.0.0"));
	assert_true(match("0.0.0.0/0", "255.255.255.255"));
	assert_true(match("0.0.0.0/0", "10.1.2.3"));
	assert_false(match("0.0.0.0/0", "::1"));
	assert_false(match("0.0.0.0/0", "2001:db8::1"));
	assert_false(match("0.0.0.0/0", "::"));
}

static void
test_match_v6(void **state)
{
	assert_true(match("2001:db8::/32", "2001:db8::"));
	assert_true(match("2001:db8::/32", "2001:db8::1"));
	assert_true(match("2001:db8::/32",
	    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(match("2001:db8::/32", "2001:db9::"));
	assert_false(match("2001:db8::/32",
	    "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));

	assert_true(match("fe80::/10", "febf::1"));
	assert_false(match("fe80::/10", "fec0::1"));

	assert_true(match("::1", "::1"));
	assert_false(match("::1", "::2"));
	assert_false(match("::1", "::"));
	assert_true(match("2001:db8::ff00/120", "2001:db8::ffff"));
	assert_false(match("2001:db8::ff00/120", "2001:db8::1:ff00"));

	/* /0: every IPv6 address, and only those. */
	assert_true(match("::/0", "::"));
	assert_true(match("::/0", "2001:db8::1"));
	assert_true(match("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(match("::/0", "0.0.0.0"));
	assert_false(match("::/0", "192.0.2.1"));

	/* IPv4 networks never take native IPv6 addresses, even those that
	 * end in the same bytes. */
	assert_false(match("192.0.2.0/24", "::192.0.2.1"));
	assert_false(match("192.0.2.0/24", "2001:db8::c000:201"));
}

static void
test_match_v4_mapped(void **state)
{
	/* A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d. */
	assert_true(match("192.0.2.0/24", "::ffff:192.0.2.1"));
	assert_true(match("192.0.2.0/24", "::ffff:192.0.2.255"));
	assert_false(match("192.0.2.0/24", "::ffff:192.0.3.1"));
	assert_true(match("192.0.2.7", "::ffff:192.0.2.7"));
	assert_false(match("192.0.2.7", "::ffff:192.0.2.8"));
	assert_true(match("0.0.0.0/0", "::ffff:10.0.0.1"));
	/* ...which is an IPv4 client, not an IPv6 one. */
	assert_false(match("::/0", "::ffff:192.0.2.1"));
	assert_false(match("::ffff:192.0.2.0/120", "::ffff:192.0.2.1"));
}

static void
test_match_other_family(void **state)
{
	struct sockaddr_un sun;
	struct sockaddr_storage ss;
	struct mm_net any4 = net_ok("0.0.0.0/0");
	struct mm_net any6 = net_ok("::/0");

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, "/run/x.sock");
	assert_false(mm_net_match(&any4, (struct sockaddr *)&sun));
	assert_false(mm_net_match(&any6, (struct sockaddr *)&sun));

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNSPEC;
	assert_false(mm_net_match(&any4, (struct sockaddr *)&ss));
	assert_false(mm_net_match(&any6, (struct sockaddr *)&ss));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v6),
		cmocka_unit_test(test_parse_bad_prefix),
		cmocka_unit_test(test_parse_host_bits),
		cmocka_unit_test(test_parse_not_numeric),
		cmocka_unit_test(test_match_v4),
		cmocka_unit_test(test_match_v6),
		cmocka_unit_test(test_match_v4_mapped),
		cmocka_unit_test(test_match_other_family),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
