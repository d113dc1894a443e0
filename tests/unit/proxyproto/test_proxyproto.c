/* Unit tests for proxyproto: each v1 and v2 form, the header's length
 * with bytes behind it, partial headers, early refusal of non-headers,
 * and each way a header can be bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "proxyproto.h"

#define V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define V2_SIG_LEN 12

/* 192.0.2.1:56324 -> 198.51.100.2:993 */
static const unsigned char in4_body[12] = {
	0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x02, 0xdc, 0x04, 0x03, 0xe1,
};

/* [2001:db8::1]:40000 -> [2001:db8::2]:143 */
static const unsigned char in6_body[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
	0x9c, 0x40, 0x00, 0x8f,
};

/* Parses an exact-size copy, so a read past len is caught under ASan,
 * and checks what every answer promises. */
static int
parse(const void *s, size_t len, struct pp_header *h, size_t *hlen,
    const char **why)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, s, len);
	*hlen = 12345;
	*why = "stale";
	rc = pp_parse(copy, len, h, hlen, why);
	free(copy);
	if (rc == 1) {
		assert_true(*hlen > 0 && *hlen <= len);
		assert_true(*hlen <= PP_HEADER_MAX);
		assert_null(*why);
	} else if (rc == 0) {
		assert_int_equal(*hlen, 0);
		assert_null(*why);
	} else {
		assert_int_equal(rc, -1);
		assert_int_equal(*hlen, 0);
		assert_non_null(*why);
	}
	return rc;
}

static void
expect_bad(const void *s, size_t len, const char *want)
{
	struct pp_header h;
	size_t hlen;
	const char *why;

	if (parse(s, len, &h, &hlen, &why) != -1)
		fail_msg("\"%.*s\" not refused", (int)len, (const char *)s);
	assert_string_equal(why, want);
}

#define BAD(s, want) expect_bad((s), strlen(s), (want))

/* Every proper prefix needs more; the whole is one header. */
static void
expect_prefixes(const void *s, size_t len)
{
	struct pp_header h;
	size_t k, hlen;
	const char *why;

	for (k = 0; k < len; k++)
		if (parse(s, k, &h, &hlen, &why) != 0)
			fail_msg("prefix of %zu bytes (of %zu) not partial", k,
			    len);
	assert_int_equal(parse(s, len, &h, &hlen, &why), 1);
	assert_int_equal(hlen, len);
}

static size_t
v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam_proto,
    const void *body, size_t n)
{
	memcpy(out, V2_SIG, V2_SIG_LEN);
	out[12] = ver_cmd;
	out[13] = fam_proto;
	out[14] = (unsigned char)(n >> 8);
	out[15] = (unsigned char)n;
	if (n > 0)
		memcpy(out + 16, body, n);
	return 16 + n;
}

static void
assert_in4(const struct sockaddr_storage *ss, const char *addr,
    unsigned port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	struct in_addr want;

	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(inet_pton(AF_INET, addr, &want), 1);
	assert_memory_equal(&sin->sin_addr, &want, sizeof(want));
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void
assert_in6(const struct sockaddr_storage *ss, const char *addr,
    unsigned port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	struct in6_addr want;

	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(inet_pton(AF_INET6, addr, &want), 1);
	assert_memory_equal(&sin6->sin6_addr, &want, sizeof(want));
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

static void
test_v1_tcp4(void **state)
{
	const char *s = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n";
	struct pp_header h;
	size_t hlen;
	const char *why;

	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_int_equal(hlen, strlen(s));
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_in4(&h.src, "192.0.2.1", 56324);
	assert_in4(&h.dst, "198.51.100.2", 143);

	s = "PROXY TCP4 255.255.255.255 0.0.0.0 0 65535\r\n";
	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_in4(&h.src, "255.255.255.255", 0);
	assert_in4(&h.dst, "0.0.0.0", 65535);

	/* Leading zeros in a port are still at most five digits. */
	s = "PROXY TCP4 10.0.0.1 10.0.0.2 00025 00001\r\n";
	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_in4(&h.src, "10.0.0.1", 25);
	assert_in4(&h.dst, "10.0.0.2", 1);
}

static void
test_v1_tcp6(void **state)
{
	const char *s = "PROXY TCP6 2001:db8::1 2001:db8::2 40000 993\r\n";
	struct pp_header h;
	size_t hlen;
	const char *why;

	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_int_equal(hlen, strlen(s));
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_in6(&h.src, "2001:db8::1", 40000);
	assert_in6(&h.dst, "2001:db8::2", 993);

	s = "PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n";
	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_in6(&h.src, "::ffff:192.0.2.1", 1);
	assert_in6(&h.dst, "::1", 2);

	/* The longest line the specification allows. */
	s = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF 65535 65535\r\n";
	assert_int_equal(strlen(s), 104);
	expect_prefixes(s, strlen(s));
	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	assert_in6(&h.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	assert_in6(&h.dst, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void
test_v1_unknown(void **state)
{
	const char *ok[] = {
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
		"PROXY UNKNOWN 192.0.2.1 198.51.100.2 1 2\r\n",
		"PROXY UNKNOWN anything\r at all\r\n",
	};
	struct pp_header h;
	size_t i, hlen;
	const char *why;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		memset(&h, 0xa5, sizeof(h));
		assert_int_equal(parse(ok[i], strlen(ok[i]), &h, &hlen, &why),
		    1);
		assert_int_equal(hlen, strlen(ok[i]));
		assert_int_equal(h.version, 1);
		assert_true(h.local);
	}
}

static void
test_v2_tcp4(void **state)
{
	unsigned char b[64];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	n = v2(b, 0x21, 0x11, in4_body, sizeof(in4_body));
	assert_int_equal(n, 28);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 28);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_in4(&h.src, "192.0.2.1", 56324);
	assert_in4(&h.dst, "198.51.100.2", 993);
}

static void
test_v2_tcp6(void **state)
{
	unsigned char b[64];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	n = v2(b, 0x21, 0x21, in6_body, sizeof(in6_body));
	assert_int_equal(n, 52);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 52);
	assert_int_equal(h.version, 2);
	assert_false(h.local);
	assert_in6(&h.src, "2001:db8::1", 40000);
	assert_in6(&h.dst, "2001:db8::2", 143);
}

static void
test_v2_local(void **state)
{
	unsigned char b[64];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	/* A health check: no addresses at all. */
	n = v2(b, 0x20, 0x00, NULL, 0);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 16);
	assert_int_equal(h.version, 2);
	assert_true(h.local);

	/* Addresses are ignored, whatever the family says. */
	n = v2(b, 0x20, 0x11, in4_body, sizeof(in4_body));
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 28);
	assert_true(h.local);
	n = v2(b, 0x20, 0x22, in4_body, 3);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_true(h.local);
	n = v2(b, 0x20, 0xff, NULL, 0);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_true(h.local);
}

static void
test_v2_tlvs(void **state)
{
	/* PP2_TYPE_ALPN "imap", PP2_TYPE_AUTHORITY "mail.example.org",
	 * PP2_TYPE_NOOP. */
	static const unsigned char tlvs[] = {
		0x01, 0x00, 0x04, 'i', 'm', 'a', 'p',
		0x02, 0x00, 0x10, 'm', 'a', 'i', 'l', '.', 'e', 'x', 'a', 'm',
		'p', 'l', 'e', '.', 'o', 'r', 'g',
		0x04, 0x00, 0x02, 0x00, 0x00,
	};
	unsigned char body[128], b[256];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	memcpy(body, in4_body, sizeof(in4_body));
	memcpy(body + sizeof(in4_body), tlvs, sizeof(tlvs));
	n = v2(b, 0x21, 0x11, body, sizeof(in4_body) + sizeof(tlvs));
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 16 + 12 + sizeof(tlvs));
	assert_false(h.local);
	assert_in4(&h.src, "192.0.2.1", 56324);
	assert_in4(&h.dst, "198.51.100.2", 993);
	expect_prefixes(b, n);

	/* TLVs are skipped unread: even a malformed one. */
	memcpy(body, in6_body, sizeof(in6_body));
	memset(body + sizeof(in6_body), 0xff, 5);
	n = v2(b, 0x21, 0x21, body, sizeof(in6_body) + 5);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 16 + 36 + 5);
	assert_in6(&h.src, "2001:db8::1", 40000);
}

static void
test_v2_unix_unspec(void **state)
{
	unsigned char body[216], b[256];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	/* AF_UNIX stream: two 108-byte paths. */
	memset(body, 0, sizeof(body));
	memcpy(body, "/run/lb/client.sock", 19);
	memcpy(body + 108, "/run/mailmesh/imap.sock", 23);
	n = v2(b, 0x21, 0x31, body, sizeof(body));
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 16 + 216);
	assert_int_equal(h.version, 2);
	assert_true(h.local);

	/* AF_UNIX with no addresses at all, and unspecified families. */
	n = v2(b, 0x21, 0x30, NULL, 0);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_true(h.local);
	n = v2(b, 0x21, 0x00, NULL, 0);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 16);
	assert_true(h.local);
	n = v2(b, 0x21, 0x01, in4_body, sizeof(in4_body));
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, 28);
	assert_true(h.local);
}

/* What follows the header is the client's, whatever it looks like. */
static void
test_trailing(void **state)
{
	static const char *after[] = {
		"a1 LOGIN user pass\r\n", "\r\n", "PROXY TCP4 ", V2_SIG,
		"\x16\x03\x01\x02\x00\x01",
	};
	const char *v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n";
	const char *unk = "PROXY UNKNOWN\r\n";
	unsigned char b[256];
	struct pp_header h;
	size_t i, n, hlen;
	const char *why;

	for (i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
		size_t extra = strlen(after[i]);

		n = strlen(v1);
		memcpy(b, v1, n);
		memcpy(b + n, after[i], extra);
		assert_int_equal(parse(b, n + extra, &h, &hlen, &why), 1);
		assert_int_equal(hlen, n);
		assert_in4(&h.dst, "198.51.100.2", 143);

		n = strlen(unk);
		memcpy(b, unk, n);
		memcpy(b + n, after[i], extra);
		assert_int_equal(parse(b, n + extra, &h, &hlen, &why), 1);
		assert_int_equal(hlen, n);

		n = v2(b, 0x21, 0x11, in4_body, sizeof(in4_body));
		memcpy(b + n, after[i], extra);
		assert_int_equal(parse(b, n + extra, &h, &hlen, &why), 1);
		assert_int_equal(hlen, 28);
		assert_in4(&h.src, "192.0.2.1", 56324);

		n = v2(b, 0x20, 0x00, NULL, 0);
		memcpy(b + n, after[i], extra);
		assert_int_equal(parse(b, n + extra, &h, &hlen, &why), 1);
		assert_int_equal(hlen, 16);
	}
}

static void
test_prefixes(void **state)
{
	static const char *v1[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\n",
		"PROXY TCP6 2001:db8::1 2001:db8::2 40000 993\r\n",
		"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN 192.0.2.1 198.51.100.2 1 2\r\n",
	};
	unsigned char b[256], body[128];
	size_t i, n;

	for (i = 0; i < sizeof(v1) / sizeof(v1[0]); i++)
		expect_prefixes(v1[i], strlen(v1[i]));

	n = v2(b, 0x21, 0x11, in4_body, sizeof(in4_body));
	expect_prefixes(b, n);
	n = v2(b, 0x21, 0x21, in6_body, sizeof(in6_body));
	expect_prefixes(b, n);
	n = v2(b, 0x20, 0x00, NULL, 0);
	expect_prefixes(b, n);
	memset(body, 0x5a, sizeof(body));
	n = v2(b, 0x21, 0x31, body, sizeof(body));
	expect_prefixes(b, n);
}

static void
test_not_proxy(void **state)
{
	struct pp_header h;
	size_t hlen;
	const char *why;

	/* Refused on the first byte that cannot start a header. */
	expect_bad("a", 1, "not a PROXY header");
	BAD("a1 LOGIN user pass\r\n", "not a PROXY header");
	BAD("PROXZ", "not a PROXY header");
	BAD("PROXY\r\n", "not a PROXY header");
	BAD("PROXYTCP4", "not a PROXY header");
	BAD("proxy TCP4", "not a PROXY header");
	BAD("EHLO client.example.org\r\n", "not a PROXY header");
	BAD("USER alice\r\n", "not a PROXY header");
	BAD("\x16\x03\x01", "not a PROXY header");	/* a TLS hello */
	BAD("\r\n\r\nQUIT", "not a PROXY header");
	BAD("\r\r", "not a PROXY header");
	expect_bad("\0", 1, "not a PROXY header");
	expect_bad("\r\n\r\n\0\r\nQUIX", 12, "not a PROXY header");

	/* Possible starts need more. */
	assert_int_equal(pp_parse(NULL, 0, &h, &hlen, &why), 0);
	assert_int_equal(parse("", 0, &h, &hlen, &why), 0);
	assert_int_equal(parse("P", 1, &h, &hlen, &why), 0);
	assert_int_equal(parse("PROXY", 5, &h, &hlen, &why), 0);
	assert_int_equal(parse("PROXY ", 6, &h, &hlen, &why), 0);
	assert_int_equal(parse("\r", 1, &h, &hlen, &why), 0);
	assert_int_equal(parse("\r\n\r\n\0", 5, &h, &hlen, &why), 0);
	assert_int_equal(parse(V2_SIG, 12, &h, &hlen, &why), 0);
}

static void
test_v1_no_cr(void **state)
{
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\n",
	    "v1 line not ending in CRLF");
	BAD("PROXY UNKNOWN\n", "v1 line not ending in CRLF");
	BAD("PROXY UNKNOWN 1.2.3.4\n", "v1 line not ending in CRLF");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\r\r\n",
	    "v1 line not ending in CRLF");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143\rx",
	    "v1 line not ending in CRLF");
	BAD("PROXY TCP4 192.0.2.1\n", "v1 line not ending in CRLF");
	BAD("PROXY \n", "v1 line not ending in CRLF");
}

static void
test_v1_too_long(void **state)
{
	char line[PP_V1_MAX + 8];
	struct pp_header h;
	size_t hlen;
	const char *why;

	/* No line end among the first PP_V1_MAX bytes. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse(line, PP_V1_MAX - 1, &h, &hlen, &why), 0);
	expect_bad(line, PP_V1_MAX, "v1 line too long");
	expect_bad(line, sizeof(line), "v1 line too long");

	/* PP_V1_MAX bytes with the CRLF is the longest line. */
	line[PP_V1_MAX - 2] = '\r';
	line[PP_V1_MAX - 1] = '\n';
	assert_int_equal(parse(line, PP_V1_MAX, &h, &hlen, &why), 1);
	assert_int_equal(hlen, PP_V1_MAX);
	assert_true(h.local);

	/* One byte more: the LF is past the limit. */
	line[PP_V1_MAX - 2] = 'x';
	line[PP_V1_MAX - 1] = '\r';
	line[PP_V1_MAX] = '\n';
	assert_int_equal(parse(line, PP_V1_MAX - 1, &h, &hlen, &why), 0);
	expect_bad(line, PP_V1_MAX + 1, "v1 line too long");
	expect_bad(line, PP_V1_MAX, "v1 line too long");
}

static void
test_v1_bad_address(void **state)
{
	/* An address of the other family. */
	BAD("PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP4 192.0.2.1 ::1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 ::1 192.0.2.1 1 2\r\n", "v1 bad address");

	BAD("PROXY TCP4 256.0.0.1 192.0.2.1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP4 192.0.2 192.0.2.1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP4 1.2.3.4.5 192.0.2.1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP4 192.0.2.1 example.org 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 2001:db8:::1 ::1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 2001:db8::g ::1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 [::1] ::1 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1 bad address");

	/* Refused as soon as it cannot be an address, before the line
	 * ends. */
	BAD("PROXY TCP4 192.0.2.x", "v1 bad address");
	BAD("PROXY TCP4 1:", "v1 bad address");
	BAD("PROXY TCP4 1111111111111111", "v1 bad address");
	BAD("PROXY TCP6 1111111111111111111111111111111111111111111111",
	    "v1 bad address");
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8.9 ", "v1 bad address");
}

static void
test_v1_bad_port(void **state)
{
	struct pp_header h;
	size_t hlen;
	const char *why;
	const char *s = "PROXY TCP4 192.0.2.1 198.51.100.2 65535 65535\r\n";

	assert_int_equal(parse(s, strlen(s), &h, &hlen, &why), 1);
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 65536 143\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 143 65536\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 99999 143\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 000143 1\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 -1 143\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 +1 143\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 0x1 143\r\n", "v1 bad port");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 1 \r\n", "v1 bad port");
	/* Before the line ends. */
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 65536", "v1 bad port");
	BAD("PROXY TCP6 ::1 ::2 1 143a", "v1 bad port");
}

static void
test_v1_fields(void **state)
{
	/* Extra and missing fields. */
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143 25\r\n",
	    "v1 extra field");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324 143 \r\n",
	    "v1 extra field");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
	    "v1 missing field");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2\r\n", "v1 missing field");
	BAD("PROXY TCP4 192.0.2.1\r\n", "v1 missing field");
	BAD("PROXY TCP4\r\n", "v1 missing field");

	/* Single spaces only. */
	BAD("PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad address");
	BAD("PROXY TCP4 192.0.2.1 198.51.100.2  1 2\r\n", "v1 bad port");
	BAD("PROXY TCP4\t192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");

	/* The protocol. */
	BAD("PROXY \r\n", "v1 bad protocol");
	BAD("PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY TCP 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY TCP44 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n", "v1 bad protocol");
	BAD("PROXY UNKNOW\r\n", "v1 bad protocol");
	BAD("PROXY X", "v1 bad protocol");
}

static void
test_v2_bad_version(void **state)
{
	unsigned char b[64];
	size_t n;
	unsigned v;

	for (v = 0; v < 16; v++) {
		if (v == 2)
			continue;
		n = v2(b, (unsigned char)((v << 4) | 1), 0x11, in4_body,
		    sizeof(in4_body));
		expect_bad(b, n, "v2 bad version");
		/* From the thirteenth byte alone. */
		expect_bad(b, 13, "v2 bad version");
	}
}

static void
test_v2_bad_command(void **state)
{
	unsigned char b[64];
	size_t n;
	unsigned c;

	for (c = 2; c < 16; c++) {
		n = v2(b, (unsigned char)(0x20 | c), 0x11, in4_body,
		    sizeof(in4_body));
		expect_bad(b, n, "v2 bad command");
		expect_bad(b, 13, "v2 bad command");
	}
}

static void
test_v2_bad_family(void **state)
{
	unsigned char b[64];
	size_t n;

	/* Datagrams, of any family. */
	n = v2(b, 0x21, 0x12, in4_body, sizeof(in4_body));
	expect_bad(b, n, "v2 not TCP");
	expect_bad(b, 14, "v2 not TCP");
	n = v2(b, 0x21, 0x22, in6_body, sizeof(in6_body));
	expect_bad(b, n, "v2 not TCP");
	n = v2(b, 0x21, 0x32, NULL, 0);
	expect_bad(b, n, "v2 not TCP");
	n = v2(b, 0x21, 0x02, NULL, 0);
	expect_bad(b, n, "v2 not TCP");
	/* An IP family with no protocol. */
	n = v2(b, 0x21, 0x10, in4_body, sizeof(in4_body));
	expect_bad(b, n, "v2 not TCP");
	n = v2(b, 0x21, 0x20, in6_body, sizeof(in6_body));
	expect_bad(b, n, "v2 not TCP");

	n = v2(b, 0x21, 0x41, in4_body, sizeof(in4_body));
	expect_bad(b, n, "v2 bad family");
	n = v2(b, 0x21, 0xf1, in4_body, sizeof(in4_body));
	expect_bad(b, 14, "v2 bad family");
	n = v2(b, 0x21, 0x13, in4_body, sizeof(in4_body));
	expect_bad(b, n, "v2 bad protocol");
	n = v2(b, 0x21, 0x0f, NULL, 0);
	expect_bad(b, n, "v2 bad protocol");
}

static void
test_v2_short(void **state)
{
	unsigned char b[64];
	size_t n;

	/* Too short for the family: refused from the fixed part alone. */
	n = v2(b, 0x21, 0x11, in4_body, 11);
	expect_bad(b, n, "v2 addresses too short");
	expect_bad(b, 16, "v2 addresses too short");
	n = v2(b, 0x21, 0x11, NULL, 0);
	expect_bad(b, n, "v2 addresses too short");
	n = v2(b, 0x21, 0x21, in6_body, 35);
	expect_bad(b, n, "v2 addresses too short");
	expect_bad(b, 16, "v2 addresses too short");
	n = v2(b, 0x21, 0x21, in4_body, 12);
	expect_bad(b, n, "v2 addresses too short");
}

static void
test_v2_too_long(void **state)
{
	static unsigned char b[PP_HEADER_MAX + 64], body[PP_HEADER_MAX];
	struct pp_header h;
	size_t n, hlen;
	const char *why;

	memcpy(body, in4_body, sizeof(in4_body));
	memset(body + sizeof(in4_body), 0, sizeof(body) - sizeof(in4_body));

	/* Exactly PP_HEADER_MAX is accepted. */
	n = v2(b, 0x21, 0x11, body, PP_HEADER_MAX - 16);
	assert_int_equal(n, PP_HEADER_MAX);
	assert_int_equal(parse(b, 16, &h, &hlen, &why), 0);
	assert_int_equal(parse(b, n - 1, &h, &hlen, &why), 0);
	assert_int_equal(parse(b, n, &h, &hlen, &why), 1);
	assert_int_equal(hlen, PP_HEADER_MAX);
	assert_in4(&h.src, "192.0.2.1", 56324);

	/* One more is refused with only the fixed part given. */
	n = v2(b, 0x21, 0x11, body, PP_HEADER_MAX - 15);
	expect_bad(b, 16, "v2 header too long");
	expect_bad(b, n, "v2 header too long");
	n = v2(b, 0x20, 0x00, body, PP_HEADER_MAX - 15);
	expect_bad(b, 16, "v2 header too long");

	b[14] = 0xff;
	b[15] = 0xff;
	expect_bad(b, 16, "v2 header too long");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v2_tcp4),
		cmocka_unit_test(test_v2_tcp6),
		cmocka_unit_test(test_v2_local),
		cmocka_unit_test(test_v2_tlvs),
		cmocka_unit_test(test_v2_unix_unspec),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_not_proxy),
		cmocka_unit_test(test_v1_no_cr),
		cmocka_unit_test(test_v1_too_long),
		cmocka_unit_test(test_v1_bad_address),
		cmocka_unit_test(test_v1_bad_port),
		cmocka_unit_test(test_v1_fields),
		cmocka_unit_test(test_v2_bad_version),
		cmocka_unit_test(test_v2_bad_command),
		cmocka_unit_test(test_v2_bad_family),
		cmocka_unit_test(test_v2_short),
		cmocka_unit_test(test_v2_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
