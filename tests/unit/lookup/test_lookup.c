/* Unit tests for lookup's pure parts: the socketmap replies and the
 * auth_http answers for each directory result, and relay addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lookup.h"

static struct mm_backend_conf be_lmtp = {
	.name = (char *)"be1", .host = (char *)"10.0.0.1",
	.port = { 143, 110, 24 }, .lmtp = true, .tls = MM_TLS_NONE,
};
static struct mm_backend_conf be_smtp = {
	.name = (char *)"be2", .host = (char *)"10.0.0.2",
	.port = { 143, 110, 25 }, .lmtp = false, .tls = MM_TLS_NONE,
};
static struct mm_backend_conf be_tls = {
	.name = (char *)"be3", .host = (char *)"10.0.0.3",
	.port = { 993, 995, 465 }, .lmtp = false, .tls = MM_TLS_IMPLICIT,
};

static struct mm_config conf;

static int
setup(void **state)
{
	memset(&conf, 0, sizeof(conf));
	conf.site = (char *)"a";
	conf.limits.auth_fail_max = 3;
	conf.lookup_relay[MM_PROTO_IMAP] = (char *)"127.0.0.1:1143";
	conf.lookup_relay[MM_PROTO_POP3] = (char *)"[::1]:1110";
	conf.lookup_relay[MM_PROTO_SMTP] = (char *)"127.0.0.1:2525";
	return 0;
}

static struct dir_route
route_of(const struct mm_backend_conf *be, const char *host, uint16_t port)
{
	struct dir_route r;

	memset(&r, 0, sizeof(r));
	r.backend = be;
	if (host != NULL)
		strcpy(r.host, host);
	r.port = port;
	return r;
}

static void
expect_reply(enum lookup_map map, enum dir_result res,
    const struct dir_route *route, const char *want)
{
	char out[LOOKUP_REPLY_MAX];
	size_t n = lookup_socketmap_reply(map, res, route, &conf, out,
	    sizeof(out));

	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void
test_transport(void **state)
{
	struct dir_route r = route_of(&be_lmtp, "10.0.0.1", 24);
	struct dir_route none = route_of(NULL, NULL, 0);

	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK lmtp:inet:10.0.0.1:24");
	r = route_of(&be_smtp, "10.0.0.2", 25);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK smtp:[10.0.0.2]:25");
	/* Postfix writes IPv6 next hops as [ipv6:addr]. */
	r = route_of(&be_lmtp, "2001:db8::1", 24);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK lmtp:inet:[ipv6:2001:db8::1]:24");
	r = route_of(&be_smtp, "2001:db8::2", 2525);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK smtp:[ipv6:2001:db8::2]:2525");
	/* A name: Postfix resolves it; the brackets stop an MX lookup. */
	r = route_of(&be_lmtp, "mail.example", 24);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK lmtp:inet:mail.example:24");
	r = route_of(&be_smtp, "mail.example", 25);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "OK smtp:[mail.example]:25");
	/* A found route without a port or back end is not sent anywhere. */
	r = route_of(&be_smtp, "10.0.0.2", 0);
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FOUND, &r,
	    "TEMP directory unavailable");

	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_FROZEN, &none,
	    "OK retry:4.2.1 Mailbox is being moved, try again later");
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_NOTFOUND, &none, "NOTFOUND ");
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_TEMPFAIL, &none,
	    "TEMP directory unavailable");

	strcpy(none.site, "b");
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_REMOTE, &none,
	    "OK smtp:[127.0.0.1]:2525");
	conf.lookup_relay[MM_PROTO_SMTP] = (char *)"[::1]:2525";
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_REMOTE, &none,
	    "OK smtp:[ipv6:::1]:2525");
	conf.lookup_relay[MM_PROTO_SMTP] = (char *)"nonsense";
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_REMOTE, &none,
	    "TEMP bad lookup-relay");
	conf.lookup_relay[MM_PROTO_SMTP] = NULL;
	expect_reply(LOOKUP_MAP_TRANSPORT, DIR_REMOTE, &none,
	    "TEMP no relay for users of other sites");
}

static void
test_recipient(void **state)
{
	struct dir_route r = route_of(&be_lmtp, "10.0.0.1", 24);
	struct dir_route remote = route_of(NULL, NULL, 0);

	strcpy(remote.site, "b");
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_FOUND, &r, "OK a");
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_FROZEN, &remote, "OK a");
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_REMOTE, &remote, "OK b");
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_NOTFOUND, &r, "NOTFOUND ");
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_TEMPFAIL, &r,
	    "TEMP directory unavailable");
	conf.site = NULL;
	expect_reply(LOOKUP_MAP_RECIPIENT, DIR_FOUND, &r, "OK local");
}

static void
test_reply_does_not_fit(void **state)
{
	struct dir_route r = route_of(&be_lmtp, "10.0.0.1", 24);
	char out[10];

	assert_int_equal(lookup_socketmap_reply(LOOKUP_MAP_TRANSPORT,
	    DIR_FOUND, &r, &conf, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(lookup_socketmap_reply(LOOKUP_MAP_TRANSPORT,
	    DIR_NOTFOUND, &r, &conf, out, sizeof(out)), 9);
	assert_int_equal(lookup_socketmap_reply(LOOKUP_MAP_TRANSPORT,
	    DIR_NOTFOUND, &r, &conf, out, 9), 0);
}

static void
expect_ok(const struct lookup_auth *a, const char *server, uint16_t port)
{
	assert_true(a->ok);
	assert_string_equal(a->server, server);
	assert_int_equal(a->port, port);
}

static void
expect_fail(const struct lookup_auth *a, const char *status,
    const char *code, unsigned wait)
{
	assert_false(a->ok);
	assert_string_equal(a->status, status);
	if (code == NULL)
		assert_null(a->error_code);
	else
		assert_string_equal(a->error_code, code);
	assert_int_equal(a->wait, wait);
}

static void
test_auth_imap_pop3(void **state)
{
	struct dir_route r = route_of(&be_lmtp, "10.0.0.1", 143);
	struct dir_route none = route_of(NULL, NULL, 0);
	struct lookup_auth a;

	lookup_auth_answer(MM_PROTO_IMAP, DIR_FOUND, &r, &conf, 1, &a);
	expect_ok(&a, "10.0.0.1", 143);
	assert_null(a.reason);

	r = route_of(&be_tls, "10.0.0.3", 993);
	lookup_auth_answer(MM_PROTO_IMAP, DIR_FOUND, &r, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later", NULL, 1);
	assert_string_equal(a.reason, "backend-tls");

	/* Unknown: to this node's own listener, which refuses it like a
	 * wrong password; without one, the words and wait of a wrong
	 * password, and after auth_fail_max attempts no wait, so nginx
	 * closes. */
	lookup_auth_answer(MM_PROTO_IMAP, DIR_NOTFOUND, &none, &conf, 1, &a);
	expect_ok(&a, "127.0.0.1", 1143);
	assert_string_equal(a.reason, "unknown-via-relay");
	conf.lookup_relay[MM_PROTO_POP3] = NULL;
	lookup_auth_answer(MM_PROTO_POP3, DIR_NOTFOUND, &none, &conf, 1, &a);
	expect_fail(&a, "Invalid login or password", NULL, 3);
	lookup_auth_answer(MM_PROTO_POP3, DIR_NOTFOUND, &none, &conf, 2, &a);
	expect_fail(&a, "Invalid login or password", NULL, 3);
	lookup_auth_answer(MM_PROTO_POP3, DIR_NOTFOUND, &none, &conf, 3, &a);
	expect_fail(&a, "Invalid login or password", NULL, 0);
	conf.lookup_relay[MM_PROTO_POP3] = (char *)"[::1]:1110";

	lookup_auth_answer(MM_PROTO_IMAP, DIR_FROZEN, &none, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later", NULL, 1);
	lookup_auth_answer(MM_PROTO_IMAP, DIR_TEMPFAIL, &none, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later", NULL, 1);
	lookup_auth_answer(MM_PROTO_IMAP, DIR_TEMPFAIL, &none, &conf, 7, &a);
	expect_fail(&a, "Temporary server problem, try again later", NULL, 0);

	strcpy(none.site, "b");
	lookup_auth_answer(MM_PROTO_IMAP, DIR_REMOTE, &none, &conf, 1, &a);
	expect_ok(&a, "127.0.0.1", 1143);
	lookup_auth_answer(MM_PROTO_POP3, DIR_REMOTE, &none, &conf, 1, &a);
	expect_ok(&a, "::1", 1110);
	conf.lookup_relay[MM_PROTO_IMAP] = NULL;
	lookup_auth_answer(MM_PROTO_IMAP, DIR_REMOTE, &none, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later", NULL, 1);
	assert_string_equal(a.reason, "no-relay");
}

static void
test_auth_smtp(void **state)
{
	struct dir_route r = route_of(&be_smtp, "10.0.0.2", 25);
	struct dir_route none = route_of(NULL, NULL, 0);
	struct lookup_auth a;

	lookup_auth_answer(MM_PROTO_SMTP, DIR_FOUND, &r, &conf, 1, &a);
	expect_ok(&a, "10.0.0.2", 25);
	/* nginx speaks SMTP without TLS upstream: LMTP and TLS back ends
	 * are reached through this node's SMTP listener. */
	r = route_of(&be_lmtp, "10.0.0.1", 24);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_FOUND, &r, &conf, 1, &a);
	expect_ok(&a, "127.0.0.1", 2525);
	assert_string_equal(a.reason, "lmtp-via-relay");
	r = route_of(&be_tls, "10.0.0.3", 465);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_FOUND, &r, &conf, 1, &a);
	expect_ok(&a, "127.0.0.1", 2525);

	lookup_auth_answer(MM_PROTO_SMTP, DIR_NOTFOUND, &none, &conf, 1, &a);
	expect_fail(&a, "User unknown", "550 5.1.1", 1);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_NOTFOUND, &none, &conf,
	    LOOKUP_SMTP_ATTEMPTS_MAX, &a);
	expect_fail(&a, "User unknown", "550 5.1.1", 0);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_FROZEN, &none, &conf, 1, &a);
	expect_fail(&a, "Mailbox is being moved, try again later",
	    "450 4.2.1", 1);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_TEMPFAIL, &none, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later",
	    "451 4.3.0", 1);
	strcpy(none.site, "b");
	lookup_auth_answer(MM_PROTO_SMTP, DIR_REMOTE, &none, &conf, 1, &a);
	expect_ok(&a, "127.0.0.1", 2525);

	conf.lookup_relay[MM_PROTO_SMTP] = NULL;
	lookup_auth_answer(MM_PROTO_SMTP, DIR_REMOTE, &none, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later",
	    "451 4.3.0", 1);
	r = route_of(&be_lmtp, "10.0.0.1", 24);
	lookup_auth_answer(MM_PROTO_SMTP, DIR_FOUND, &r, &conf, 1, &a);
	expect_fail(&a, "Temporary server problem, try again later",
	    "451 4.3.0", 1);
	assert_string_equal(a.reason, "no-relay");

	lookup_auth_tempfail(MM_PROTO_SMTP, &conf, 1, "smtp-auth", &a);
	expect_fail(&a, "Temporary server problem, try again later",
	    "451 4.3.0", 1);
	assert_string_equal(a.reason, "smtp-auth");
}

static void
test_auth_format(void **state)
{
	struct dir_route r = route_of(&be_smtp, "10.0.0.2", 143);
	struct dir_route none = route_of(NULL, NULL, 0);
	struct lookup_auth a;
	char out[LOOKUP_REPLY_MAX];
	size_t n;

	lookup_auth_answer(MM_PROTO_IMAP, DIR_FOUND, &r, &conf, 1, &a);
	n = lookup_auth_format(&a, out, sizeof(out));
	assert_int_equal(n, strlen(out));
	assert_string_equal(out, "HTTP/1.0 200 OK\r\n"
	    "Auth-Status: OK\r\n"
	    "Auth-Server: 10.0.0.2\r\n"
	    "Auth-Port: 143\r\n"
	    "\r\n");

	conf.lookup_relay[MM_PROTO_IMAP] = NULL;
	lookup_auth_answer(MM_PROTO_IMAP, DIR_NOTFOUND, &none, &conf, 1, &a);
	lookup_auth_format(&a, out, sizeof(out));
	assert_string_equal(out, "HTTP/1.0 200 OK\r\n"
	    "Auth-Status: Invalid login or password\r\n"
	    "Auth-Wait: 3\r\n"
	    "\r\n");
	conf.lookup_relay[MM_PROTO_IMAP] = (char *)"127.0.0.1:1143";

	lookup_auth_answer(MM_PROTO_SMTP, DIR_NOTFOUND, &none, &conf, 1, &a);
	lookup_auth_format(&a, out, sizeof(out));
	assert_string_equal(out, "HTTP/1.0 200 OK\r\n"
	    "Auth-Status: User unknown\r\n"
	    "Auth-Error-Code: 550 5.1.1\r\n"
	    "Auth-Wait: 1\r\n"
	    "\r\n");

	lookup_auth_answer(MM_PROTO_SMTP, DIR_FROZEN, &none, &conf,
	    LOOKUP_SMTP_ATTEMPTS_MAX, &a);
	lookup_auth_format(&a, out, sizeof(out));
	assert_string_equal(out, "HTTP/1.0 200 OK\r\n"
	    "Auth-Status: Mailbox is being moved, try again later\r\n"
	    "Auth-Error-Code: 450 4.2.1\r\n"
	    "\r\n");

	assert_int_equal(lookup_auth_format(&a, out, 20), 0);
	assert_string_equal(out, "");
}

static void
expect_split(const char *addr, const char *host, uint16_t port)
{
	char h[64];
	uint16_t p;

	if (host == NULL) {
		assert_int_equal(lookup_split_addr(addr, h, sizeof(h), &p),
		    -1);
		return;
	}
	assert_int_equal(lookup_split_addr(addr, h, sizeof(h), &p), 0);
	assert_string_equal(h, host);
	assert_int_equal(p, port);
}

static void
test_split_addr(void **state)
{
	char h[4];
	uint16_t p;

	expect_split("127.0.0.1:25", "127.0.0.1", 25);
	expect_split("[::1]:2525", "::1", 2525);
	expect_split("[2001:db8::1]:65535", "2001:db8::1", 65535);
	expect_split("relay.example:587", "relay.example", 587);
	expect_split("127.0.0.1", NULL, 0);
	expect_split("[::1]", NULL, 0);
	expect_split("[::1]25", NULL, 0);
	expect_split("[]:25", NULL, 0);
	expect_split(":25", NULL, 0);
	expect_split("h:", NULL, 0);
	expect_split("h:0", NULL, 0);
	expect_split("h:65536", NULL, 0);
	expect_split("h:2a", NULL, 0);
	expect_split("h:1234567", NULL, 0);
	expect_split(NULL, NULL, 0);
	assert_int_equal(lookup_split_addr("abcd:1", h, sizeof(h), &p), -1);
	assert_int_equal(lookup_split_addr("abc:1", h, sizeof(h), &p), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_transport, setup),
		cmocka_unit_test_setup(test_recipient, setup),
		cmocka_unit_test_setup(test_reply_does_not_fit, setup),
		cmocka_unit_test_setup(test_auth_imap_pop3, setup),
		cmocka_unit_test_setup(test_auth_smtp, setup),
		cmocka_unit_test_setup(test_auth_format, setup),
		cmocka_unit_test_setup(test_split_addr, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
