/* Unit tests for http_auth: nginx auth_http request heads, split input,
 * limits, URL decoding and the Auth-SMTP-To address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_auth.h"

/* What nginx 1.22 sends for an IMAP LOGIN (ngx_mail_auth_http_module.c,
 * ngx_mail_auth_http_create_request). */
static const char imap_req[] =
    "GET /auth HTTP/1.0\r\n"
    "Host: 127.0.0.1\r\n"
    "Auth-Method: plain\r\n"
    "Auth-User: alice%40a.test\r\n"
    "Auth-Pass: p%25ss%20word\r\n"
    "Auth-Protocol: imap\r\n"
    "Auth-Login-Attempt: 1\r\n"
    "Client-IP: 192.0.2.42\r\n"
    "Client-Host: client.example.org\r\n"
    "\r\n";

/* An SMTP recipient with smtp_auth none: empty user and password, the
 * client's commands as given. */
static const char smtp_req[] =
    "GET /mail/auth?x=1 HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Auth-Method: none\r\n"
    "Auth-User: \r\n"
    "Auth-Pass: \r\n"
    "Auth-Protocol: smtp\r\n"
    "Auth-Login-Attempt: 1\r\n"
    "Client-IP: 198.51.100.7\r\n"
    "Auth-SMTP-Helo: mx.example.net\r\n"
    "Auth-SMTP-From: MAIL FROM:<joe@example.net> SIZE=1000\r\n"
    "Auth-SMTP-To: RCPT TO:<bob@a.test>\r\n"
    "X-Auth-Key: secret\r\n"
    "\r\n";

static int
parse_all(struct http_auth_req *r, const char *buf, size_t len,
    size_t *consumed, const char **why)
{
	http_auth_init(r);
	return http_auth_parse(r, buf, len, consumed, why);
}

static void
assert_field(const char *buf, const struct http_auth_req *r,
    enum http_auth_field f, const char *want)
{
	const struct http_auth_slice *s = &r->field[f];

	if (want == NULL) {
		assert_false(s->present);
		return;
	}
	assert_true(s->present);
	assert_int_equal(s->len, strlen(want));
	assert_memory_equal(buf + s->off, want, s->len);
}

static void
test_imap_request(void **state)
{
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, imap_req, sizeof(imap_req) - 1,
	    &consumed, &why), 1);
	assert_null(why);
	assert_int_equal(consumed, sizeof(imap_req) - 1);
	assert_true(r.path.present);
	assert_int_equal(r.path.len, 5);
	assert_memory_equal(imap_req + r.path.off, "/auth", 5);
	assert_int_equal(r.http_minor, 0);
	assert_field(imap_req, &r, HTTP_AUTH_METHOD, "plain");
	assert_field(imap_req, &r, HTTP_AUTH_USER, "alice%40a.test");
	assert_field(imap_req, &r, HTTP_AUTH_PASS, "p%25ss%20word");
	assert_field(imap_req, &r, HTTP_AUTH_PROTOCOL, "imap");
	assert_field(imap_req, &r, HTTP_AUTH_LOGIN_ATTEMPT, "1");
	assert_field(imap_req, &r, HTTP_AUTH_CLIENT_IP, "192.0.2.42");
	assert_field(imap_req, &r, HTTP_AUTH_SMTP_TO, NULL);
	assert_field(imap_req, &r, HTTP_AUTH_SMTP_HELO, NULL);

	/* Done is sticky and says the same again. */
	assert_int_equal(http_auth_parse(&r, imap_req, sizeof(imap_req) - 1,
	    &consumed, &why), 1);
	assert_int_equal(consumed, sizeof(imap_req) - 1);
}

static void
test_smtp_request(void **state)
{
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, smtp_req, sizeof(smtp_req) - 1,
	    &consumed, &why), 1);
	assert_int_equal(r.http_minor, 1);
	assert_memory_equal(smtp_req + r.path.off, "/mail/auth?x=1",
	    r.path.len);
	assert_field(smtp_req, &r, HTTP_AUTH_METHOD, "none");
	assert_field(smtp_req, &r, HTTP_AUTH_USER, "");
	assert_field(smtp_req, &r, HTTP_AUTH_PASS, "");
	assert_field(smtp_req, &r, HTTP_AUTH_SMTP_HELO, "mx.example.net");
	assert_field(smtp_req, &r, HTTP_AUTH_SMTP_FROM,
	    "MAIL FROM:<joe@example.net> SIZE=1000");
	assert_field(smtp_req, &r, HTTP_AUTH_SMTP_TO, "RCPT TO:<bob@a.test>");
}

/* Every split of the input gives "more" first and the same result once
 * the rest arrives; so does one byte at a time. */
static void
check_splits(const char *req, size_t len)
{
	struct http_auth_req whole, r;
	size_t consumed, k, i;
	const char *why;
	int f;

	assert_int_equal(parse_all(&whole, req, len, &consumed, &why), 1);
	for (k = 0; k < len; k++) {
		char *copy = malloc(len);

		/* A fresh copy for the second call: the buffer may move. */
		memcpy(copy, req, len);
		assert_int_equal(parse_all(&r, req, k, &consumed, &why), 0);
		assert_int_equal(http_auth_parse(&r, copy, len, &consumed,
		    &why), 1);
		assert_int_equal(consumed, len);
		for (f = 0; f < HTTP_AUTH_FIELD_COUNT; f++) {
			assert_int_equal(r.field[f].present,
			    whole.field[f].present);
			assert_int_equal(r.field[f].off, whole.field[f].off);
			assert_int_equal(r.field[f].len, whole.field[f].len);
		}
		assert_int_equal(r.path.off, whole.path.off);
		assert_int_equal(r.path.len, whole.path.len);
		free(copy);
	}
	http_auth_init(&r);
	for (i = 0; i < len; i++)
		assert_int_equal(http_auth_parse(&r, req, i, &consumed, &why),
		    0);
	assert_int_equal(http_auth_parse(&r, req, len, &consumed, &why), 1);
	assert_memory_equal(&r.field, &whole.field, sizeof(r.field));
}

static void
test_split_every_byte(void **state)
{
	check_splits(imap_req, sizeof(imap_req) - 1);
	check_splits(smtp_req, sizeof(smtp_req) - 1);
}

static void
test_trailing_bytes_not_consumed(void **state)
{
	char buf[sizeof(imap_req) + 16];
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	snprintf(buf, sizeof(buf), "%sGET /x", imap_req);
	assert_int_equal(parse_all(&r, buf, strlen(buf), &consumed, &why), 1);
	assert_int_equal(consumed, sizeof(imap_req) - 1);
}

static void
test_header_case_and_spaces(void **state)
{
	static const char req[] =
	    "GET / HTTP/1.0\r\n"
	    "auth-user:bob\r\n"
	    "AUTH-PROTOCOL: \t pop3 \t \r\n"
	    "aUtH-sMtP-tO:   RCPT TO:<x@y>  \r\n"
	    "Auth-Pass:\r\n"
	    "\r\n";
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, req, sizeof(req) - 1, &consumed,
	    &why), 1);
	assert_field(req, &r, HTTP_AUTH_USER, "bob");
	assert_field(req, &r, HTTP_AUTH_PROTOCOL, "pop3");
	assert_field(req, &r, HTTP_AUTH_SMTP_TO, "RCPT TO:<x@y>");
	assert_field(req, &r, HTTP_AUTH_PASS, "");
	assert_string_equal(http_auth_field_name(HTTP_AUTH_SMTP_TO),
	    "Auth-SMTP-To");
}

static void
expect_invalid(const char *req, const char *reason)
{
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, req, strlen(req), &consumed, &why),
	    -1);
	assert_non_null(why);
	if (strstr(why, reason) == NULL)
		fail_msg("\"%s\": reason \"%s\", expected \"%s\"", req, why,
		    reason);
	/* Invalid is sticky. */
	assert_int_equal(http_auth_parse(&r, req, strlen(req), &consumed,
	    &why), -1);
	assert_non_null(why);
}

static void
test_bad_requests(void **state)
{
	expect_invalid("POST /auth HTTP/1.0\r\n\r\n", "GET");
	expect_invalid("get /auth HTTP/1.0\r\n\r\n", "GET");
	expect_invalid("GET auth HTTP/1.0\r\n\r\n", "target");
	expect_invalid("GET  /auth HTTP/1.0\r\n\r\n", "target");
	expect_invalid("GET /auth\r\n\r\n", "version");
	expect_invalid("GET /auth HTTP/2.0\r\n\r\n", "version");
	expect_invalid("GET /auth HTTP/1.0 \r\n\r\n", "version");
	expect_invalid("GET /a\x01 HTTP/1.0\r\n\r\n", "target");
	expect_invalid("GET /auth HTTP/1.0\n\n", "bare LF");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User: a\n\r\n", "bare LF");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User: a\rb\r\n\r\n",
	    "bare CR");
	expect_invalid("GET /auth HTTP/1.0\r\n Auth-User: a\r\n\r\n",
	    "header name");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User a\r\n\r\n",
	    "header name");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User : a\r\n\r\n",
	    "header name");
	expect_invalid("GET /auth HTTP/1.0\r\n: a\r\n\r\n", "header name");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User: a\x01\r\n\r\n",
	    "control");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User: a\x7f\r\n\r\n",
	    "control");
	expect_invalid("GET /auth HTTP/1.0\r\nAuth-User: a\r\n"
	    "auth-user: b\r\n\r\n", "duplicate");
	/* Unknown headers may repeat. */
	{
		static const char ok[] = "GET / HTTP/1.0\r\nX-A: 1\r\n"
		    "X-A: 2\r\n\r\n";
		struct http_auth_req r;
		size_t consumed;
		const char *why;

		assert_int_equal(parse_all(&r, ok, sizeof(ok) - 1, &consumed,
		    &why), 1);
	}
}

static void
test_nul_in_value(void **state)
{
	static const char req[] = "GET / HTTP/1.0\r\nAuth-User: a\0b\r\n\r\n";
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, req, sizeof(req) - 1, &consumed,
	    &why), -1);
	assert_non_null(strstr(why, "control"));
}

static void
test_input_went_back(void **state)
{
	struct http_auth_req r;
	size_t consumed;
	const char *why;

	assert_int_equal(parse_all(&r, imap_req, 30, &consumed, &why), 0);
	assert_int_equal(http_auth_parse(&r, imap_req, 10, &consumed, &why),
	    -1);
}

/* A head of n bytes: request line, X-Pad headers, blank line. */
static char *
head_of(size_t n, size_t *len_r)
{
	static const char first[] = "GET /auth HTTP/1.0\r\n";
	char *buf = malloc(n + 1);
	size_t pos = sizeof(first) - 1, room;

	assert_true(n >= pos + 2 + 9);
	memcpy(buf, first, pos);
	while ((room = n - 2 - pos) > 0) {
		size_t line = room > 1000 ? 1000 : room;

		/* The shortest line, "X-Pad: " and CRLF, is 9 bytes: leave
		 * room for one more. */
		if (room - line > 0 && room - line < 9)
			line = room - 9;
		assert_true(line >= 9);
		memcpy(buf + pos, "X-Pad: ", 7);
		memset(buf + pos + 7, 'p', line - 7 - 2);
		buf[pos + line - 2] = '\r';
		buf[pos + line - 1] = '\n';
		pos += line;
	}
	memcpy(buf + pos, "\r\n", 2);
	buf[n] = '\0';
	*len_r = n;
	return buf;
}

static void
test_head_limit(void **state)
{
	struct http_auth_req r;
	size_t consumed, len;
	const char *why;
	char *buf;

	buf = head_of(HTTP_AUTH_HEAD_MAX, &len);
	assert_int_equal(parse_all(&r, buf, len, &consumed, &why), 1);
	assert_int_equal(consumed, HTTP_AUTH_HEAD_MAX);
	free(buf);

	buf = head_of(HTTP_AUTH_HEAD_MAX + 1, &len);
	assert_int_equal(parse_all(&r, buf, len, &consumed, &why), -1);
	assert_non_null(strstr(why, "head too large"));
	/* Refused on partial input: the first HEAD_MAX bytes are enough. */
	assert_int_equal(parse_all(&r, buf, HTTP_AUTH_HEAD_MAX, &consumed,
	    &why), -1);
	assert_int_equal(parse_all(&r, buf, HTTP_AUTH_HEAD_MAX - 1,
	    &consumed, &why), 0);
	free(buf);
}

static void
test_line_limit(void **state)
{
	static const char first[] = "GET / HTTP/1.0\r\n";
	size_t n = sizeof(first) - 1 + HTTP_AUTH_LINE_MAX + 4;
	char *buf = malloc(n + 8);
	struct http_auth_req r;
	size_t consumed, line_at = sizeof(first) - 1;
	const char *why;

	/* A header line of exactly HTTP_AUTH_LINE_MAX bytes. */
	memcpy(buf, first, line_at);
	memcpy(buf + line_at, "Auth-User: ", 11);
	memset(buf + line_at + 11, 'u', HTTP_AUTH_LINE_MAX - 11);
	memcpy(buf + line_at + HTTP_AUTH_LINE_MAX, "\r\n\r\n", 4);
	assert_int_equal(parse_all(&r, buf, n, &consumed, &why), 1);
	assert_int_equal(r.field[HTTP_AUTH_USER].len, HTTP_AUTH_LINE_MAX - 11);

	/* One byte more, without its line end yet: refused as soon as the
	 * line cannot end within the limit. */
	buf[line_at + HTTP_AUTH_LINE_MAX] = 'u';
	assert_int_equal(parse_all(&r, buf, line_at + HTTP_AUTH_LINE_MAX + 1,
	    &consumed, &why), 0);
	buf[line_at + HTTP_AUTH_LINE_MAX + 1] = 'u';
	assert_int_equal(parse_all(&r, buf, line_at + HTTP_AUTH_LINE_MAX + 2,
	    &consumed, &why), -1);
	assert_non_null(strstr(why, "line too long"));
	/* With CR but no LF yet: still waiting. */
	buf[line_at + HTTP_AUTH_LINE_MAX] = '\r';
	assert_int_equal(parse_all(&r, buf, line_at + HTTP_AUTH_LINE_MAX + 1,
	    &consumed, &why), 0);
	free(buf);

	/* The request line has the same bound. */
	n = HTTP_AUTH_LINE_MAX + 2;
	buf = malloc(n);
	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', n - 5);
	assert_int_equal(parse_all(&r, buf, n, &consumed, &why), -1);
	assert_non_null(strstr(why, "line too long"));
	free(buf);
}

static void
test_header_count(void **state)
{
	char buf[HTTP_AUTH_HEAD_MAX];
	struct http_auth_req r;
	size_t consumed, pos;
	const char *why;
	int i;

	pos = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\n");
	for (i = 0; i < HTTP_AUTH_HEADERS_MAX; i++)
		pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos,
		    "X-%d: v\r\n", i);
	memcpy(buf + pos, "\r\n", 2);
	assert_int_equal(parse_all(&r, buf, pos + 2, &consumed, &why), 1);

	/* One more: refused when that line completes, before the end. */
	pos += (size_t)snprintf(buf + pos, sizeof(buf) - pos, "X-more: v\r\n");
	assert_int_equal(parse_all(&r, buf, pos, &consumed, &why), -1);
	assert_non_null(strstr(why, "too many headers"));
}

static void
expect_decode(const char *in, const char *want)
{
	char out[64];
	size_t n;

	assert_int_equal(http_auth_decode(in, strlen(in), out, sizeof(out),
	    &n), 0);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void
expect_decode_fail(const char *in, size_t len)
{
	char out[64];
	size_t n = 99;

	assert_int_equal(http_auth_decode(in, len, out, sizeof(out), &n), -1);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
}

static void
test_decode(void **state)
{
	char out[8];
	size_t n;

	expect_decode("", "");
	expect_decode("alice", "alice");
	expect_decode("alice%40a.test", "alice@a.test");
	expect_decode("a%2bb%2Bc+d", "a+b+c+d");	/* '+' is not a space */
	expect_decode("%20%25%22", " %\"");
	expect_decode("%e2%82%AC", "\xe2\x82\xac");
	expect_decode("%0d%0a", "\r\n");	/* the directory refuses these */

	expect_decode_fail("%", 1);
	expect_decode_fail("a%4", 3);
	expect_decode_fail("%zz", 3);
	expect_decode_fail("%4g", 3);
	expect_decode_fail("%g4", 3);
	expect_decode_fail("%00", 3);
	expect_decode_fail("a\0b", 3);
	expect_decode_fail("%%41", 4);

	/* Output bound: len + 1 always fits; less may not. */
	assert_int_equal(http_auth_decode("abcdefg", 7, out, 8, &n), 0);
	assert_int_equal(n, 7);
	assert_int_equal(http_auth_decode("abcdefgh", 8, out, 8, &n), -1);
	assert_int_equal(http_auth_decode("%41%42%43%44%45%46%47", 21, out, 8,
	    &n), 0);
	assert_string_equal(out, "ABCDEFG");
	assert_int_equal(http_auth_decode("a", 1, out, 0, &n), -1);
}

static void
expect_rcpt(const char *v, const char *want)
{
	size_t off, len;

	if (want == NULL) {
		assert_int_equal(http_auth_smtp_rcpt(v, strlen(v), &off, &len),
		    -1);
		return;
	}
	assert_int_equal(http_auth_smtp_rcpt(v, strlen(v), &off, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(v + off, want, len);
}

static void
test_smtp_rcpt(void **state)
{
	expect_rcpt("RCPT TO:<bob@a.test>", "bob@a.test");
	expect_rcpt("rcpt to:<bob@a.test>", "bob@a.test");
	expect_rcpt("RCPT TO: <bob@a.test>", "bob@a.test");
	expect_rcpt("RCPT  TO:  <bob@a.test> NOTIFY=NEVER ORCPT=rfc822;x@y",
	    "bob@a.test");
	expect_rcpt("RCPT TO:<@r1.test,@r2.test:bob@a.test>", "bob@a.test");
	expect_rcpt("RCPT TO:<\"b> o\"@a.test>", "\"b> o\"@a.test");
	expect_rcpt("RCPT TO:<Postmaster>", "Postmaster");
	expect_rcpt("RCPT TO:bob@a.test", "bob@a.test");
	expect_rcpt("<bob@a.test>", "bob@a.test");
	expect_rcpt("bob@a.test", "bob@a.test");
	expect_rcpt(" bob@a.test SIZE=1", "bob@a.test");

	expect_rcpt("", NULL);
	expect_rcpt("RCPT TO:", NULL);
	expect_rcpt("RCPT TO:<>", NULL);
	expect_rcpt("RCPT TO:<bob@a.test", NULL);
	expect_rcpt("RCPT TO:<bob @a.test>", NULL);
	expect_rcpt("RCPT TO:<<bob@a.test>>", NULL);
	expect_rcpt("RCPT TO:<@r1.test>", NULL);
	expect_rcpt("RCPT FROM:<bob@a.test>", NULL);
	expect_rcpt("RCPT", NULL);
	expect_rcpt("RCPTTO:<bob@a.test>", NULL);
	expect_rcpt("RCPT TO:<\"bob@a.test>", NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_imap_request),
		cmocka_unit_test(test_smtp_request),
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_trailing_bytes_not_consumed),
		cmocka_unit_test(test_header_case_and_spaces),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_nul_in_value),
		cmocka_unit_test(test_input_went_back),
		cmocka_unit_test(test_head_limit),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_header_count),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_smtp_rcpt),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
