/* Unit tests for pop3_parse: command lines, argument split, responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "pop3_parse.h"

#define LINE_MAX_TEST 64

static enum pop3_parse_rc
parse(const char *s, size_t len, struct pop3_cmd *cmd, size_t *consumed,
    const char **error)
{
	return pop3_parse_line((const unsigned char *)s, len, LINE_MAX_TEST,
	    cmd, consumed, error);
}

static void
assert_slice(const char *buf, size_t off, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf + off, want, len);
}

static void
test_user_crlf(void **state)
{
	const char *s = "USER alice\r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, strlen(s), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_int_equal(consumed, strlen(s));
	assert_null(error);
	assert_slice(s, cmd.name_off, cmd.name_len, "USER");
	assert_slice(s, cmd.arg_off, cmd.arg_len, "alice");
}

static void
test_bare_lf(void **state)
{
	const char *s = "user bob\nQUIT\r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, strlen(s), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_int_equal(consumed, 9);
	assert_slice(s, cmd.name_off, cmd.name_len, "user");
	assert_slice(s, cmd.arg_off, cmd.arg_len, "bob");

	/* The next line is parsed from where the first ended. */
	assert_int_equal(parse(s + consumed, strlen(s) - consumed, &cmd,
	    &consumed, &error), POP3_PARSE_OK);
	assert_int_equal(consumed, 6);
	assert_slice(s + 9, cmd.name_off, cmd.name_len, "QUIT");
	assert_int_equal(cmd.arg_len, 0);
}

static void
test_no_arg(void **state)
{
	const char *s = "STAT\r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, strlen(s), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_slice(s, cmd.name_off, cmd.name_len, "STAT");
	assert_int_equal(cmd.arg_len, 0);
	assert_int_equal(cmd.arg_off, 4);
}

static void
test_arg_with_spaces(void **state)
{
	const char *s = "PASS my secret  pass \r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, strlen(s), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_slice(s, cmd.arg_off, cmd.arg_len, "my secret  pass ");
}

static void
test_empty_arg(void **state)
{
	const char *s = "USER \r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, strlen(s), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_int_equal(cmd.arg_off, 5);
	assert_int_equal(cmd.arg_len, 0);
}

static void
test_short_keywords(void **state)
{
	const char *ok[] = { "A\r\n", "TOP 1 10\r\n", "Capa\n", "StLs\r\n" };
	struct pop3_cmd cmd;
	size_t consumed, i;
	const char *error;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_int_equal(parse(ok[i], strlen(ok[i]), &cmd, &consumed,
		    &error), POP3_PARSE_OK);
}

static void
test_again(void **state)
{
	struct pop3_cmd cmd;
	size_t consumed = 99;
	const char *error;

	assert_int_equal(parse("", 0, &cmd, &consumed, &error),
	    POP3_PARSE_AGAIN);
	assert_int_equal(consumed, 0);
	assert_int_equal(parse("USER al", 7, &cmd, &consumed, &error),
	    POP3_PARSE_AGAIN);
	/* A CR alone is not a line end yet. */
	assert_int_equal(parse("USER al\r", 8, &cmd, &consumed, &error),
	    POP3_PARSE_AGAIN);
}

static void
test_bad_keywords(void **state)
{
	const char *bad[] = {
		"\r\n",			/* empty line */
		"\n",
		" USER a\r\n",		/* empty keyword */
		"USERS a\r\n",		/* five letters */
		"AUTHENTICATE\r\n",
		"US3R a\r\n",		/* not a letter */
		"USER\ta\r\n",		/* tab is not the separator */
		"\xc3\xa4user\r\n",	/* 8-bit */
		"USER a\rb\r\n",	/* bare CR inside */
		"USER a\r\r\n",
	};
	struct pop3_cmd cmd;
	size_t consumed, i;
	const char *error;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i], strlen(bad[i]), &cmd, &consumed,
		    &error), POP3_PARSE_INVALID);
		assert_int_equal(consumed, strlen(bad[i]));
		assert_string_equal(error, "bad command");
	}
}

static void
test_nul(void **state)
{
	const char s[] = "PASS a\0b\r\nNOOP\r\n";
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	assert_int_equal(parse(s, sizeof(s) - 1, &cmd, &consumed, &error),
	    POP3_PARSE_INVALID);
	assert_int_equal(consumed, 10);	/* skippable */
	assert_non_null(error);
	assert_non_null(strstr(error, "NUL"));

	assert_int_equal(parse("\0\n", 2, &cmd, &consumed, &error),
	    POP3_PARSE_INVALID);
	assert_int_equal(consumed, 2);
}

static void
test_line_max(void **state)
{
	char buf[LINE_MAX_TEST + 8];
	struct pop3_cmd cmd;
	size_t consumed;
	const char *error;

	/* Exactly line_max bytes with the LF: accepted. */
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "PASS ", 5);
	buf[LINE_MAX_TEST - 2] = '\r';
	buf[LINE_MAX_TEST - 1] = '\n';
	assert_int_equal(parse(buf, sizeof(buf), &cmd, &consumed, &error),
	    POP3_PARSE_OK);
	assert_int_equal(consumed, LINE_MAX_TEST);
	assert_int_equal(cmd.arg_len, LINE_MAX_TEST - 7);

	/* No LF within line_max bytes but not more input yet: wait. */
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(parse(buf, LINE_MAX_TEST, &cmd, &consumed, &error),
	    POP3_PARSE_AGAIN);

	/* One byte more and no LF: fatal, nothing to skip. */
	assert_int_equal(parse(buf, LINE_MAX_TEST + 1, &cmd, &consumed,
	    &error), POP3_PARSE_INVALID);
	assert_int_equal(consumed, 0);
	assert_string_equal(error, "line too long");

	/* The LF one byte too late is still too long. */
	buf[LINE_MAX_TEST] = '\n';
	assert_int_equal(parse(buf, LINE_MAX_TEST + 1, &cmd, &consumed,
	    &error), POP3_PARSE_INVALID);
	assert_int_equal(consumed, 0);

	/* A zero limit accepts nothing. */
	assert_int_equal(pop3_parse_line((const unsigned char *)"A\n", 2, 0,
	    &cmd, &consumed, &error), POP3_PARSE_INVALID);
	assert_int_equal(consumed, 0);
}

static void
test_split_arg(void **state)
{
	const char *s = "AUTH PLAIN dGVzdA==";
	size_t wo, wl, ro, rl;

	pop3_split_arg((const unsigned char *)s, 5, strlen(s) - 5, &wo, &wl,
	    &ro, &rl);
	assert_slice(s, wo, wl, "PLAIN");
	assert_slice(s, ro, rl, "dGVzdA==");

	pop3_split_arg((const unsigned char *)s, 5, 5, &wo, &wl, &ro, &rl);
	assert_slice(s, wo, wl, "PLAIN");
	assert_int_equal(rl, 0);
	assert_int_equal(ro, 10);

	/* Only the first space splits. */
	s = "a b c";
	pop3_split_arg((const unsigned char *)s, 0, 5, &wo, &wl, &ro, &rl);
	assert_slice(s, wo, wl, "a");
	assert_slice(s, ro, rl, "b c");

	s = "PLAIN ";
	pop3_split_arg((const unsigned char *)s, 0, 6, &wo, &wl, &ro, &rl);
	assert_slice(s, wo, wl, "PLAIN");
	assert_int_equal(rl, 0);
	assert_int_equal(ro, 6);

	pop3_split_arg((const unsigned char *)s, 0, 0, &wo, &wl, &ro, &rl);
	assert_int_equal(wl, 0);
	assert_int_equal(rl, 0);
}

static enum pop3_resp_status
resp(const char *s)
{
	return pop3_parse_response(s, strlen(s));
}

static void
test_response(void **state)
{
	assert_int_equal(resp("+OK"), POP3_RESP_OK);
	assert_int_equal(resp("+OK ready"), POP3_RESP_OK);
	assert_int_equal(resp("+ok"), POP3_RESP_OK);
	assert_int_equal(resp("+oK [CAPA] x"), POP3_RESP_OK);
	assert_int_equal(resp("-ERR"), POP3_RESP_ERR);
	assert_int_equal(resp("-err [AUTH] no"), POP3_RESP_ERR);
	assert_int_equal(resp("+"), POP3_RESP_CONT);
	assert_int_equal(resp("+ "), POP3_RESP_CONT);
	assert_int_equal(resp("+ VXNlcm5hbWU6"), POP3_RESP_CONT);

	assert_int_equal(resp(""), POP3_RESP_INVALID);
	assert_int_equal(pop3_parse_response(NULL, 0), POP3_RESP_INVALID);
	assert_int_equal(resp("+OKAY"), POP3_RESP_INVALID);
	assert_int_equal(resp("+OK\tx"), POP3_RESP_INVALID);
	assert_int_equal(resp("-ERROR"), POP3_RESP_INVALID);
	assert_int_equal(resp("-ER"), POP3_RESP_INVALID);
	assert_int_equal(resp("+O"), POP3_RESP_INVALID);
	assert_int_equal(resp("+x"), POP3_RESP_INVALID);
	assert_int_equal(resp("OK"), POP3_RESP_INVALID);
	assert_int_equal(resp("* OK"), POP3_RESP_INVALID);
	/* The length bounds the line, not a NUL. */
	assert_int_equal(pop3_parse_response("+OKAY", 3), POP3_RESP_OK);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_crlf),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_no_arg),
		cmocka_unit_test(test_arg_with_spaces),
		cmocka_unit_test(test_empty_arg),
		cmocka_unit_test(test_short_keywords),
		cmocka_unit_test(test_again),
		cmocka_unit_test(test_bad_keywords),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_line_max),
		cmocka_unit_test(test_split_arg),
		cmocka_unit_test(test_response),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
