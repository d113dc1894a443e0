/* Unit tests for smtp_parse: command lines, addresses, ESMTP parameters,
 * reply lines and the DATA end scanner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_parse.h"

#define WHY_UNKNOWN "500 5.5.2 Command not recognised"
#define WHY_BAD_CHAR "501 5.5.4 Invalid character in command"
#define WHY_MAIL "501 5.5.4 Syntax: MAIL FROM:<address>"
#define WHY_RCPT "501 5.5.4 Syntax: RCPT TO:<address>"
#define WHY_SENDER "501 5.1.7 Bad sender address syntax"
#define WHY_RECIPIENT "501 5.1.3 Bad recipient address syntax"
#define WHY_PARAM "501 5.5.4 Bad parameter syntax"
#define WHY_SIZE "501 5.5.4 Bad SIZE parameter"
#define WHY_BODY "501 5.5.4 Bad BODY parameter"
#define WHY_UNSUP "555 5.5.4 Unsupported parameter"
#define WHY_UNSUP_BODY "555 5.5.4 Unsupported BODY type"
#define WHY_DUP "555 5.5.4 Duplicate parameter"

/* The reply class must match the result, whatever the line. */
static void
check_why(enum smtp_parse_result rc, const char *why)
{
	switch (rc) {
	case SMTP_PARSE_OK:
		assert_null(why);
		break;
	case SMTP_PARSE_UNKNOWN:
		assert_non_null(why);
		assert_memory_equal(why, "500 5.", 6);
		break;
	case SMTP_PARSE_SYNTAX:
		assert_non_null(why);
		assert_memory_equal(why, "501 5.", 6);
		break;
	case SMTP_PARSE_PARAM:
		assert_non_null(why);
		assert_memory_equal(why, "555 5.", 6);
		break;
	}
}

static enum smtp_parse_result
parse_n(const char *s, size_t len, struct smtp_cmd *cmd, const char **why)
{
	enum smtp_parse_result rc;
	char *copy = malloc(len > 0 ? len : 1);

	/* An exact-size copy, so reading past len is caught under ASan;
	 * the slices are rebased onto s for the caller. */
	assert_non_null(copy);
	memcpy(copy, s, len);
	rc = smtp_parse_command(copy, len, cmd, why);
	check_why(rc, *why);
	assert_true(cmd->arg >= copy && cmd->arg + cmd->arg_len <= copy + len);
	assert_true(cmd->path >= copy &&
	    cmd->path + cmd->path_len <= copy + len);
	assert_true(cmd->params >= copy &&
	    cmd->params + cmd->params_len <= copy + len);
	cmd->arg = s + (cmd->arg - copy);
	cmd->path = s + (cmd->path - copy);
	cmd->params = s + (cmd->params - copy);
	free(copy);
	return rc;
}

static enum smtp_parse_result
parse(const char *s, struct smtp_cmd *cmd, const char **why)
{
	return parse_n(s, strlen(s), cmd, why);
}

static void
assert_slice(const char *p, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	assert_memory_equal(p, want, len);
}

static void
expect_ok(const char *s, enum smtp_verb verb)
{
	struct smtp_cmd cmd;
	const char *why;

	if (parse(s, &cmd, &why) != SMTP_PARSE_OK)
		fail_msg("\"%s\": %s", s, why);
	assert_int_equal(cmd.verb, verb);
}

static void
expect_err(const char *s, enum smtp_parse_result want, const char *want_why)
{
	struct smtp_cmd cmd;
	const char *why;
	enum smtp_parse_result rc = parse(s, &cmd, &why);

	if (rc != want)
		fail_msg("\"%s\": result %d, want %d (%s)", s, rc, want,
		    why != NULL ? why : "OK");
	assert_string_equal(why, want_why);
}

/* MAIL FROM:<path> must give back exactly want as the mailbox. */
static void
expect_mail_path(const char *path, const char *want)
{
	char line[1024];
	struct smtp_cmd cmd;
	const char *why;

	snprintf(line, sizeof(line), "MAIL FROM:<%s>", path);
	if (parse(line, &cmd, &why) != SMTP_PARSE_OK)
		fail_msg("\"%s\": %s", line, why);
	assert_int_equal(cmd.verb, SMTP_MAIL);
	assert_slice(cmd.path, cmd.path_len, want);
}

static void
expect_good_mailbox(const char *mbox)
{
	char line[1024];

	expect_mail_path(mbox, mbox);
	snprintf(line, sizeof(line), "RCPT TO:<%s>", mbox);
	expect_ok(line, SMTP_RCPT);
}

static void
expect_bad_mailbox(const char *mbox)
{
	char line[1024];

	snprintf(line, sizeof(line), "MAIL FROM:<%s>", mbox);
	expect_err(line, SMTP_PARSE_SYNTAX, WHY_SENDER);
	snprintf(line, sizeof(line), "RCPT TO:<%s>", mbox);
	expect_err(line, SMTP_PARSE_SYNTAX, WHY_RECIPIENT);
}

static void
test_every_verb(void **state)
{
	static const struct {
		const char *line;
		enum smtp_verb verb;
	} ok[] = {
		{ "EHLO client.example", SMTP_EHLO },
		{ "HELO client.example", SMTP_HELO },
		{ "MAIL FROM:<a@example.com>", SMTP_MAIL },
		{ "RCPT TO:<b@example.com>", SMTP_RCPT },
		{ "DATA", SMTP_DATA },
		{ "RSET", SMTP_RSET },
		{ "NOOP", SMTP_NOOP },
		{ "QUIT", SMTP_QUIT },
		{ "STARTTLS", SMTP_STARTTLS },
		{ "VRFY alice", SMTP_VRFY },
		{ "HELP", SMTP_HELP },
		{ "BDAT 10", SMTP_BDAT },
		{ "AUTH PLAIN", SMTP_AUTH },
		{ "XCLIENT ADDR=192.0.2.1", SMTP_XCLIENT },
	};
	size_t i, j;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char lower[128], mixed[128];

		expect_ok(ok[i].line, ok[i].verb);
		for (j = 0; ok[i].line[j] != '\0'; j++) {
			char c = ok[i].line[j];
			bool letter = (c >= 'A' && c <= 'Z');

			lower[j] = letter ? (char)(c + 32) : c;
			mixed[j] = letter && (j % 2) ? (char)(c + 32) : c;
		}
		lower[j] = mixed[j] = '\0';
		expect_ok(lower, ok[i].verb);
		expect_ok(mixed, ok[i].verb);
	}
}

static void
test_unknown(void **state)
{
	const char *bad[] = {
		"",
		" ",
		"   DATA",		/* nothing before the first space */
		"DATAX",
		"DAT",
		"DATA\t",		/* only SP separates the verb */
		"MAIL\tFROM:<a@b>",
		"MAILFROM:<a@b>",
		"EHLO\x01x",
		"XYZZY",
		"TURN",
		"ETRN example.com",
		"STARTTLSX",
		"\xc4\x41TA",
	};
	struct smtp_cmd cmd;
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_err(bad[i], SMTP_PARSE_UNKNOWN, WHY_UNKNOWN);
		parse(bad[i], &cmd, &why);
		assert_int_equal(cmd.verb, SMTP_UNKNOWN);
	}
	assert_int_equal(parse_n("DA\0TA", 5, &cmd, &why),
	    SMTP_PARSE_UNKNOWN);
	assert_int_equal(parse_n("DATA\0", 5, &cmd, &why),
	    SMTP_PARSE_UNKNOWN);
}

static void
test_no_argument_verbs(void **state)
{
	static const struct {
		const char *verb;
		enum smtp_verb v;
		const char *why;
	} t[] = {
		{ "DATA", SMTP_DATA, "501 5.5.4 Syntax: DATA" },
		{ "RSET", SMTP_RSET, "501 5.5.4 Syntax: RSET" },
		{ "QUIT", SMTP_QUIT, "501 5.5.4 Syntax: QUIT" },
		{ "STARTTLS", SMTP_STARTTLS, "501 5.5.4 Syntax: STARTTLS" },
	};
	struct smtp_cmd cmd;
	const char *why;
	char line[64];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		expect_ok(t[i].verb, t[i].v);
		/* Trailing spaces are no argument. */
		snprintf(line, sizeof(line), "%s   ", t[i].verb);
		expect_ok(line, t[i].v);
		assert_int_equal(parse(line, &cmd, &why), SMTP_PARSE_OK);
		assert_int_equal(cmd.arg_len, 0);

		snprintf(line, sizeof(line), "%s x", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, t[i].why);
		assert_int_equal(parse(line, &cmd, &why), SMTP_PARSE_SYNTAX);
		assert_int_equal(cmd.verb, t[i].v);
		snprintf(line, sizeof(line), "%s  \x01 ", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, t[i].why);
	}
}

static void
test_ehlo_helo(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("EHLO mail.example.com", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.arg, cmd.arg_len, "mail.example.com");
	assert_int_equal(parse("helo   x.example   ", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_HELO);
	assert_slice(cmd.arg, cmd.arg_len, "x.example");
	/* Not checked as a domain: real clients send all sorts. */
	assert_int_equal(parse("EHLO [192.0.2.1]", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(parse("EHLO my laptop (home)!", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.arg, cmd.arg_len, "my laptop (home)!");
	assert_int_equal(parse("EHLO ~", &cmd, &why), SMTP_PARSE_OK);

	expect_err("EHLO", SMTP_PARSE_SYNTAX, "501 5.5.4 Syntax: EHLO hostname");
	expect_err("EHLO    ", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: EHLO hostname");
	expect_err("HELO", SMTP_PARSE_SYNTAX, "501 5.5.4 Syntax: HELO hostname");
	expect_err("EHLO a\tb", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: EHLO hostname");
	expect_err("EHLO h\xc3\xa9.example", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: EHLO hostname");
	expect_err("EHLO a\x7f", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: EHLO hostname");
	expect_err("HELO a\rb", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: HELO hostname");
	assert_int_equal(parse_n("EHLO a\0b", 8, &cmd, &why),
	    SMTP_PARSE_SYNTAX);
	assert_int_equal(cmd.verb, SMTP_EHLO);
}

static void
test_any_argument_verbs(void **state)
{
	static const struct {
		const char *verb;
		enum smtp_verb v;
	} t[] = {
		{ "NOOP", SMTP_NOOP }, { "HELP", SMTP_HELP },
		{ "VRFY", SMTP_VRFY },
	};
	struct smtp_cmd cmd;
	const char *why;
	char line[64];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		expect_ok(t[i].verb, t[i].v);
		snprintf(line, sizeof(line), "%s ", t[i].verb);
		expect_ok(line, t[i].v);
		snprintf(line, sizeof(line), "%s  some\targ <x@y> \xc3\xa9 ",
		    t[i].verb);
		assert_int_equal(parse(line, &cmd, &why), SMTP_PARSE_OK);
		assert_slice(cmd.arg, cmd.arg_len, "some\targ <x@y> \xc3\xa9");

		snprintf(line, sizeof(line), "%s a\rb", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, WHY_BAD_CHAR);
		snprintf(line, sizeof(line), "%s a\nb", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, WHY_BAD_CHAR);
		snprintf(line, sizeof(line), "%s \x1b[0m", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, WHY_BAD_CHAR);
		snprintf(line, sizeof(line), "%s x\x7f", t[i].verb);
		expect_err(line, SMTP_PARSE_SYNTAX, WHY_BAD_CHAR);
		snprintf(line, sizeof(line), "%s a", t[i].verb);
		line[strlen(line) - 1] = '\0';
		assert_int_equal(parse_n(line, strlen(t[i].verb) + 2, &cmd,
		    &why), SMTP_PARSE_SYNTAX);
		assert_string_equal(why, WHY_BAD_CHAR);
	}
}

static void
test_auth_xclient(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("AUTH PLAIN dGVzdAB0ZXN0AHBhc3M=", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_AUTH);
	assert_slice(cmd.arg, cmd.arg_len, "PLAIN dGVzdAB0ZXN0AHBhc3M=");
	assert_int_equal(parse("auth login", &cmd, &why), SMTP_PARSE_OK);
	expect_err("AUTH", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
	expect_err("AUTH PLAIN \x01", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: AUTH mechanism [initial-response]");

	assert_int_equal(parse("XCLIENT ADDR=192.0.2.1 NAME=[UNAVAILABLE]",
	    &cmd, &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_XCLIENT);
	assert_slice(cmd.arg, cmd.arg_len,
	    "ADDR=192.0.2.1 NAME=[UNAVAILABLE]");
	expect_err("XCLIENT", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: XCLIENT attribute=value ...");
	expect_err("XCLIENT NAME=\xff", SMTP_PARSE_SYNTAX,
	    "501 5.5.4 Syntax: XCLIENT attribute=value ...");
}

static void
test_bdat(void **state)
{
	const char *bdat_why = "501 5.5.4 Syntax: BDAT chunk-size [LAST]";
	const char *bad[] = {
		"BDAT", "BDAT x", "BDAT -1", "BDAT 1x", "BDAT 5 FIRST",
		"BDAT 5 LAST x", "BDAT 5 LAST LAST", "BDAT LAST",
		"BDAT 000000000000000000001",	/* 21 digits */
		"BDAT 18446744073709551616",	/* 2^64 */
		"BDAT 5\tLAST",
	};
	struct smtp_cmd cmd;
	const char *why;
	size_t i;

	assert_int_equal(parse("BDAT 100", &cmd, &why), SMTP_PARSE_OK);
	assert_true(cmd.has_size);
	assert_int_equal(cmd.size, 100);
	assert_false(cmd.last);
	assert_int_equal(parse("bdat 0 last", &cmd, &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 0);
	assert_true(cmd.last);
	assert_int_equal(parse("BDAT  7   LAST  ", &cmd, &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 7);
	assert_true(cmd.last);
	assert_int_equal(parse("BDAT 18446744073709551615", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_true(cmd.size == UINT64_MAX);
	assert_int_equal(parse("BDAT 00000000000000000042", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 42);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_err(bad[i], SMTP_PARSE_SYNTAX, bdat_why);
}

static void
test_mail(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("MAIL FROM:<alice@example.com>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_MAIL);
	assert_slice(cmd.path, cmd.path_len, "alice@example.com");
	assert_slice(cmd.arg, cmd.arg_len, "FROM:<alice@example.com>");
	assert_int_equal(cmd.params_len, 0);
	assert_false(cmd.has_size);
	assert_int_equal(cmd.body, SMTP_BODY_NONE);

	assert_int_equal(parse("mail from:<a@b.example>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "a@b.example");
	assert_int_equal(parse("Mail From:<a@b.example>", &cmd, &why),
	    SMTP_PARSE_OK);

	/* Spaces after the colon: a common client habit. */
	assert_int_equal(parse("MAIL FROM: <a@b.example>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "a@b.example");
	assert_int_equal(parse("MAIL FROM:    <a@b.example>  ", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "a@b.example");
	assert_int_equal(parse("MAIL  FROM:<a@b.example>", &cmd, &why),
	    SMTP_PARSE_OK);

	/* The null reverse-path. */
	assert_int_equal(parse("MAIL FROM:<>", &cmd, &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.path_len, 0);
	assert_int_equal(parse("MAIL FROM:<> SIZE=100 BODY=8BITMIME", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.path_len, 0);
	assert_true(cmd.has_size);
	assert_int_equal(cmd.size, 100);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	assert_slice(cmd.params, cmd.params_len, "SIZE=100 BODY=8BITMIME");

	/* Only the length bounds the line. */
	assert_int_equal(parse_n("MAIL FROM:<a@b.example>junk", 23, &cmd,
	    &why), SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "a@b.example");
	assert_int_equal(parse_n("MAIL FROM:<a@b.example>", 22, &cmd, &why),
	    SMTP_PARSE_SYNTAX);
	assert_string_equal(why, WHY_SENDER);
}

static void
test_mail_syntax(void **state)
{
	const char *bad[] = {
		"MAIL",
		"MAIL ",
		"MAIL FROM",
		"MAIL FROM:",
		"MAIL FROM:   ",
		"MAIL FROM :<a@b.example>",
		"MAIL TO:<a@b.example>",
		"MAIL FRM:<a@b.example>",
		"MAIL FROM:a@b.example",
		"MAIL FROM:\"a\"@b.example",
		"MAIL FROM:<a@b.example>x",
		"MAIL FROM:<a@b.example>SIZE=1",
		"MAIL FROM:<>SIZE=1",
		"MAIL FROM:<a@b.example>\tSIZE=1",
		"MAIL FROM:<a@b.example>>",
		"MAIL FROM:\t<a@b.example>",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_err(bad[i], SMTP_PARSE_SYNTAX, WHY_MAIL);
	expect_err("MAIL FROM:<a@b.example", SMTP_PARSE_SYNTAX, WHY_SENDER);
	expect_err("MAIL FROM:<", SMTP_PARSE_SYNTAX, WHY_SENDER);
	expect_err("MAIL FROM:<<a@b.example>>", SMTP_PARSE_SYNTAX, WHY_SENDER);
	expect_err("MAIL FROM:<postmaster>", SMTP_PARSE_SYNTAX, WHY_SENDER);
	expect_err("MAIL FROM:< a@b.example>", SMTP_PARSE_SYNTAX, WHY_SENDER);
	expect_err("MAIL FROM:<a@b.example >", SMTP_PARSE_SYNTAX, WHY_SENDER);
}

static void
test_rcpt(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("RCPT TO:<bob@example.org>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.verb, SMTP_RCPT);
	assert_slice(cmd.path, cmd.path_len, "bob@example.org");
	assert_int_equal(parse("rcpt to:  <bob@example.org>  ", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "bob@example.org");

	/* RFC 5321 4.5.1: postmaster without a domain, any case. */
	assert_int_equal(parse("RCPT TO:<postmaster>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "postmaster");
	assert_int_equal(parse("RCPT TO:<PostMaster>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "PostMaster");
	assert_int_equal(parse("RCPT TO:<postmaster@example.org>", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_slice(cmd.path, cmd.path_len, "postmaster@example.org");
	expect_err("RCPT TO:<postmasterx>", SMTP_PARSE_SYNTAX, WHY_RECIPIENT);
	expect_err("RCPT TO:<postmaste>", SMTP_PARSE_SYNTAX, WHY_RECIPIENT);
	expect_err("RCPT TO:<@a.example:postmaster>", SMTP_PARSE_SYNTAX,
	    WHY_RECIPIENT);

	/* The null path is for MAIL only. */
	expect_err("RCPT TO:<>", SMTP_PARSE_SYNTAX, WHY_RECIPIENT);

	expect_err("RCPT", SMTP_PARSE_SYNTAX, WHY_RCPT);
	expect_err("RCPT TO", SMTP_PARSE_SYNTAX, WHY_RCPT);
	expect_err("RCPT TO:", SMTP_PARSE_SYNTAX, WHY_RCPT);
	expect_err("RCPT FROM:<a@b.example>", SMTP_PARSE_SYNTAX, WHY_RCPT);
	expect_err("RCPT TO:b@example.org", SMTP_PARSE_SYNTAX, WHY_RCPT);
	expect_err("RCPT TO:<a@b.example>NOTIFY=NEVER", SMTP_PARSE_SYNTAX,
	    WHY_RCPT);
	expect_err("RCPT TO:<a@b.example", SMTP_PARSE_SYNTAX, WHY_RECIPIENT);

	/* No RCPT parameter is supported, well formed or not. */
	expect_err("RCPT TO:<a@b.example> NOTIFY=NEVER", SMTP_PARSE_PARAM,
	    WHY_UNSUP);
	expect_err("RCPT TO:<a@b.example> ORCPT=rfc822;a@b.example",
	    SMTP_PARSE_PARAM, WHY_UNSUP);
	expect_err("RCPT TO:<a@b.example> SIZE=1", SMTP_PARSE_PARAM, WHY_UNSUP);
	expect_err("RCPT TO:<a@b.example> =", SMTP_PARSE_PARAM, WHY_UNSUP);
	assert_int_equal(parse("RCPT TO:<a@b.example>  X=1 ", &cmd, &why),
	    SMTP_PARSE_PARAM);
	assert_slice(cmd.params, cmd.params_len, "X=1");
	assert_slice(cmd.path, cmd.path_len, "a@b.example");
}

static void
test_local_parts(void **state)
{
	const char *good[] = {
		"a@x",
		"first.last@example.com",
		"!#$%&'*+-/=?^_`{|}~@example.com",
		"user+tag@example.com",
		"0@example.com",
		"\"john doe\"@example.com",	/* quoted: spaces allowed */
		"\"a\\\"b\"@example.com",		/* quoted-pair */
		"\"a\\\\b\"@example.com",
		"\"a\\ b\"@example.com",
		"\"\"@example.com",		/* empty quoted-string */
		"\"a@b\"@example.com",
		"\"a>b\"@example.com",		/* '>' inside quotes */
		"\"a..b.\"@example.com",
		"\"(x),[y];<z>:\"@example.com",
	};
	const char *bad[] = {
		"@example.com",
		".a@example.com",
		"a.@example.com",
		"a..b@example.com",
		"a b@example.com",
		"a\tb@example.com",
		"a\"b@example.com",
		"\"unterminated@example.com",
		"\"a\"b@example.com",
		"\"a\".b@example.com",
		"\"a\x01\"@example.com",
		"\"a\\\x01\"@example.com",	/* quoted-pair of a control */
		"\"a\\\x1f\"@example.com",
		"\"a\x1f\"@example.com",
		"\"a\\\xc3\"@example.com",
		"\"a\x7f\"@example.com",
		"\"\xc3\xa9\"@example.com",
		"(comment)a@example.com",
		"a(comment)@example.com",
		"a@b@example.com",
		"a,b@example.com",
		"a[b]@example.com",
		"a\\b@example.com",
		"\xc3\xa9t\xc3\xa9@example.com",	/* no SMTPUTF8 */
		"a\x01@example.com",
		"a\x7f@example.com",
		"a",
		"a@",
		"\"a\"",
	};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_good_mailbox(good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad_mailbox(bad[i]);
}

static void
test_nul_in_path(void **state)
{
	static const char mail[] = "MAIL FROM:<a\0b@example.com>";
	static const char rcpt[] = "RCPT TO:<a@exa\0mple.com>";
	static const char quoted[] = "RCPT TO:<\"a\0b\"@example.com>";
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse_n(mail, sizeof(mail) - 1, &cmd, &why),
	    SMTP_PARSE_SYNTAX);
	assert_string_equal(why, WHY_SENDER);
	assert_int_equal(parse_n(rcpt, sizeof(rcpt) - 1, &cmd, &why),
	    SMTP_PARSE_SYNTAX);
	assert_string_equal(why, WHY_RECIPIENT);
	assert_int_equal(parse_n(quoted, sizeof(quoted) - 1, &cmd, &why),
	    SMTP_PARSE_SYNTAX);
	assert_string_equal(why, WHY_RECIPIENT);
}

static void
test_domains(void **state)
{
	const char *good[] = {
		"a@example",
		"a@example.com",
		"a@EXAMPLE.COM",
		"a@sub-domain.example.com",
		"a@a-b--c.example",
		"a@xn--bcher-kva.example",
		"a@1.2.3.4",		/* digits are letters here */
		"a@123",
		"a@x.y.z.w.v",
	};
	const char *bad[] = {
		"a@",
		"a@-x.example",
		"a@x-.example",
		"a@x.-y.example",
		"a@x..example",
		"a@.x",
		"a@x.",
		"a@x_y.example",
		"a@x y.example",
		"a@x\xc3\xa9.example",
		"a@x,y",
		"a@x:y",
		"a@*.example",
		"a@-",
		"a@x\x01",
	};
	char mbox[128];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_good_mailbox(good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad_mailbox(bad[i]);

	/* Labels: 63 octets at most. */
	memset(mbox, 0, sizeof(mbox));
	memcpy(mbox, "a@", 2);
	memset(mbox + 2, 'l', SMTP_LABEL_MAX);
	memcpy(mbox + 2 + SMTP_LABEL_MAX, ".example", 8);
	expect_good_mailbox(mbox);
	memset(mbox, 0, sizeof(mbox));
	memcpy(mbox, "a@", 2);
	memset(mbox + 2, 'l', SMTP_LABEL_MAX + 1);
	memcpy(mbox + 3 + SMTP_LABEL_MAX, ".example", 8);
	expect_bad_mailbox(mbox);
	memset(mbox, 0, sizeof(mbox));
	memcpy(mbox, "a@x.", 4);
	memset(mbox + 4, 'l', SMTP_LABEL_MAX);
	expect_good_mailbox(mbox);
	mbox[4 + SMTP_LABEL_MAX] = 'l';
	expect_bad_mailbox(mbox);
}

static void
test_address_literals(void **state)
{
	const char *good[] = {
		"a@[192.0.2.1]",
		"a@[0.0.0.0]",
		"a@[255.255.255.255]",
		"a@[010.001.0.9]",
		"a@[IPv6:::1]",
		"a@[ipv6:2001:db8::1]",
		"a@[IPV6:2001:DB8::A:b]",
		"a@[IPv6:2001:db8:0:0:0:0:0:1]",
		"a@[IPv6:1:2:3:4:5:6:7:8]",
		"a@[IPv6:::]",
		"a@[IPv6:1::]",
		"a@[IPv6:1::8]",
		"a@[IPv6:1:2:3:4:5:6::8]",
		"a@[IPv6:::2:3:4:5:6:7:8]",
		"a@[IPv6:::ffff:192.0.2.1]",
		"a@[IPv6:1:2:3:4:5:6:192.0.2.1]",
		"a@[IPv6:ffff:ffff::ffff]",
		"\"quoted\"@[192.0.2.1]",
	};
	const char *bad[] = {
		"a@[]",
		"a@[",
		"a@[192.0.2.1",
		"a@192.0.2.1]",
		"a@[256.0.0.1]",
		"a@[1.2.3]",
		"a@[1.2.3.4.5]",
		"a@[1.2.3.]",
		"a@[.1.2.3]",
		"a@[1..2.3]",
		"a@[1234.1.1.1]",
		"a@[1.2.3.4 ]",
		"a@[ 1.2.3.4]",
		"a@[1.2.3.4]x",
		"a@[1.2.3.4].example",
		"a@[x.1.2.3]",
		"a@[IPv6:]",
		"a@[IPv6]",
		"a@[IPv6:1]",
		"a@[IPv6:1:2:3:4:5:6:7]",
		"a@[IPv6:1:2:3:4:5:6:7:8:9]",
		"a@[IPv6:1:2:3:4:5:6:7::8]",
		"a@[IPv6:1::2::3]",
		"a@[IPv6::::1]",
		"a@[IPv6::1]",
		"a@[IPv6:1:]",
		"a@[IPv6:12345::]",
		"a@[IPv6:g::1]",
		"a@[IPv6:::1.2.3.256]",
		"a@[IPv6:::1.2.3]",
		"a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]",
		"a@[IPv6:::1.2.3.4:1]",
		"a@[IPv6:192.0.2.1]",
		"a@[IPv4:192.0.2.1]",
		"a@[x-tag:foo]",
		"a@[IPv6:::1]]",
		"a@[[1.2.3.4]]",
		"a@[1.2.3.4\xc3]",
	};
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		expect_good_mailbox(good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad_mailbox(bad[i]);
}

static void
test_source_routes(void **state)
{
	const char *bad[] = {
		"@a.example",
		"@a.example:",
		"@a.example,u@b.example",
		"@:u@b.example",
		"@a.example,:u@b.example",
		"@a.example,@:u@b.example",
		"@a.example;@b.example:u@c.example",
		"@[192.0.2.1]:u@b.example",	/* At-domain has no literal */
		"@a_b:u@c.example",
		"@a.example:@b.example:u@c.example",
		"@a.example:<>",
		"@a.example: u@c.example",
		"a.example:u@c.example",
	};
	size_t i;

	expect_mail_path("@a.example:u@c.example", "u@c.example");
	expect_mail_path("@a.example,@b.example:user@c.example",
	    "user@c.example");
	expect_mail_path("@a,@b,@c,@d:\"q q\"@[192.0.2.1]", "\"q q\"@[192.0.2.1]");
	expect_ok("RCPT TO:<@relay.example:bob@example.org>", SMTP_RCPT);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad_mailbox(bad[i]);
}

/* A domain of exactly len octets: labels of nine, never ending in a dot. */
static void
make_domain(char *out, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		out[i] = (i % 10 == 9 && i + 1 < len) ? '.' : 'd';
	out[len] = '\0';
}

static void
test_limits(void **state)
{
	char mbox[SMTP_PATH_MAX + 64];
	char path[SMTP_PATH_MAX + 64];
	size_t local;

	/* Local part: 64 octets, quotes included. */
	memset(mbox, 'l', SMTP_LOCAL_MAX);
	strcpy(mbox + SMTP_LOCAL_MAX, "@example.com");
	expect_good_mailbox(mbox);
	memset(mbox, 'l', SMTP_LOCAL_MAX + 1);
	strcpy(mbox + SMTP_LOCAL_MAX + 1, "@example.com");
	expect_bad_mailbox(mbox);
	mbox[0] = '"';
	memset(mbox + 1, 'q', SMTP_LOCAL_MAX - 2);
	mbox[SMTP_LOCAL_MAX - 1] = '"';
	strcpy(mbox + SMTP_LOCAL_MAX, "@example.com");
	expect_good_mailbox(mbox);
	mbox[0] = '"';
	memset(mbox + 1, 'q', SMTP_LOCAL_MAX - 1);
	mbox[SMTP_LOCAL_MAX] = '"';
	strcpy(mbox + SMTP_LOCAL_MAX + 1, "@example.com");
	expect_bad_mailbox(mbox);

	/* The whole path: 256 octets between the brackets. */
	local = SMTP_LOCAL_MAX;
	memset(mbox, 'l', local);
	mbox[local] = '@';
	make_domain(mbox + local + 1, SMTP_PATH_MAX - local - 1);
	assert_int_equal(strlen(mbox), SMTP_PATH_MAX);
	expect_good_mailbox(mbox);
	make_domain(mbox + local + 1, SMTP_PATH_MAX - local);
	assert_int_equal(strlen(mbox), SMTP_PATH_MAX + 1);
	expect_bad_mailbox(mbox);

	/* A source route counts towards the path. */
	strcpy(path, "@r:");
	memset(path + 3, 'l', local);
	path[3 + local] = '@';
	make_domain(path + 4 + local, SMTP_PATH_MAX - local - 4);
	assert_int_equal(strlen(path), SMTP_PATH_MAX);
	expect_mail_path(path, path + 3);
	make_domain(path + 4 + local, SMTP_PATH_MAX - local - 3);
	expect_bad_mailbox(path);

	/* A long line ends quickly without a closing bracket. */
	memset(path, 'l', sizeof(path) - 1);
	path[sizeof(path) - 1] = '\0';
	expect_bad_mailbox(path);
}

static void
test_size(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("MAIL FROM:<a@b.example> SIZE=0", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_true(cmd.has_size);
	assert_int_equal(cmd.size, 0);
	assert_int_equal(parse("MAIL FROM:<a@b.example> size=12345", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 12345);
	assert_int_equal(parse("MAIL FROM:<a@b.example> SiZe=7  ", &cmd, &why),
	    SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 7);
	assert_int_equal(parse("MAIL FROM:<> SIZE=18446744073709551615", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_true(cmd.size == UINT64_MAX);
	assert_int_equal(parse("MAIL FROM:<> SIZE=00000000000000000001", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.size, 1);
	assert_int_equal(parse("MAIL FROM:<> SIZE=99999999999999999", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_true(cmd.size == 99999999999999999ULL);

	expect_err("MAIL FROM:<> SIZE=18446744073709551616", SMTP_PARSE_SYNTAX,
	    WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=99999999999999999999", SMTP_PARSE_SYNTAX,
	    WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=000000000000000000001", SMTP_PARSE_SYNTAX,
	    WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE", SMTP_PARSE_SYNTAX, WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=x", SMTP_PARSE_SYNTAX, WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=1x", SMTP_PARSE_SYNTAX, WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=-1", SMTP_PARSE_SYNTAX, WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=+1", SMTP_PARSE_SYNTAX, WHY_SIZE);
	expect_err("MAIL FROM:<> SIZE=", SMTP_PARSE_SYNTAX, WHY_PARAM);
	expect_err("MAIL FROM:<> SIZE==1", SMTP_PARSE_SYNTAX, WHY_PARAM);
	expect_err("MAIL FROM:<> SIZE=1 SIZE=1", SMTP_PARSE_PARAM, WHY_DUP);
	expect_err("MAIL FROM:<> SIZE=1 size=2", SMTP_PARSE_PARAM, WHY_DUP);
}

static void
test_body(void **state)
{
	struct smtp_cmd cmd;
	const char *why;

	assert_int_equal(parse("MAIL FROM:<a@b.example> BODY=7BIT", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.body, SMTP_BODY_7BIT);
	assert_false(cmd.has_size);
	assert_int_equal(parse("MAIL FROM:<a@b.example> body=8bitmime", &cmd,
	    &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.body, SMTP_BODY_8BITMIME);
	assert_int_equal(parse("MAIL FROM:<a@b.example> BODY=7bit   SIZE=9",
	    &cmd, &why), SMTP_PARSE_OK);
	assert_int_equal(cmd.body, SMTP_BODY_7BIT);
	assert_int_equal(cmd.size, 9);

	expect_err("MAIL FROM:<> BODY=BINARYMIME", SMTP_PARSE_PARAM,
	    WHY_UNSUP_BODY);
	expect_err("MAIL FROM:<> BODY=8BIT", SMTP_PARSE_PARAM, WHY_UNSUP_BODY);
	expect_err("MAIL FROM:<> BODY=7BITX", SMTP_PARSE_PARAM, WHY_UNSUP_BODY);
	expect_err("MAIL FROM:<> BODY", SMTP_PARSE_SYNTAX, WHY_BODY);
	expect_err("MAIL FROM:<> BODY=", SMTP_PARSE_SYNTAX, WHY_PARAM);
	expect_err("MAIL FROM:<> BODY=7BIT BODY=7BIT", SMTP_PARSE_PARAM,
	    WHY_DUP);
	expect_err("MAIL FROM:<> BODY=7BIT BODY=8BITMIME", SMTP_PARSE_PARAM,
	    WHY_DUP);
}

static void
test_other_params(void **state)
{
	const char *unsup[] = {
		"MAIL FROM:<> SMTPUTF8",
		"MAIL FROM:<> RET=HDRS",
		"MAIL FROM:<> ENVID=x",
		"MAIL FROM:<> AUTH=<>",
		"MAIL FROM:<> SIZE=1 REQUIRETLS",
		"MAIL FROM:<> X-FOO",
		"MAIL FROM:<> 8BITMIME",
		"MAIL FROM:<> SIZES=1",
		"MAIL FROM:<> SIZ=1",
	};
	const char *syntax[] = {
		"MAIL FROM:<> =1",
		"MAIL FROM:<> -X=1",
		"MAIL FROM:<> X_Y=1",
		"MAIL FROM:<> X=a=b",
		"MAIL FROM:<> SIZE=1\x01",
		"MAIL FROM:<> X=\xc3\xa9",
		"MAIL FROM:<> X=\x7f",
		"MAIL FROM:<> SIZE=1\tBODY=7BIT",
	};
	size_t i;

	for (i = 0; i < sizeof(unsup) / sizeof(unsup[0]); i++)
		expect_err(unsup[i], SMTP_PARSE_PARAM, WHY_UNSUP);
	for (i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
		expect_err(syntax[i], SMTP_PARSE_SYNTAX, WHY_PARAM);
}

/* ---- replies ---- */

static int
reply(const char *s, unsigned *code, bool *last, const char **text,
    size_t *text_len)
{
	return smtp_reply_parse(s, strlen(s), code, last, text, text_len);
}

static void
test_reply(void **state)
{
	static const char nul[] = "250 a\0b";
	const char *bad[] = {
		"", "2", "25", "2500", "250x", "25a", "a50", "250\tx", "199 x",
		"100", "600", "650 x", "099", "000", " 250 x", "-250",
		"250 a\rb", "250-a\nb", "250 x\r",
	};
	const char *text;
	size_t text_len, i;
	unsigned code;
	bool last;

	assert_int_equal(reply("250", &code, &last, &text, &text_len), 0);
	assert_int_equal(code, 250);
	assert_true(last);
	assert_int_equal(text_len, 0);
	assert_int_equal(reply("250 OK", &code, &last, &text, &text_len), 0);
	assert_true(last);
	assert_slice(text, text_len, "OK");
	assert_int_equal(reply("250-PIPELINING", &code, &last, &text,
	    &text_len), 0);
	assert_int_equal(code, 250);
	assert_false(last);
	assert_slice(text, text_len, "PIPELINING");
	assert_int_equal(reply("250-", &code, &last, &text, &text_len), 0);
	assert_false(last);
	assert_int_equal(text_len, 0);
	assert_int_equal(reply("220 ", &code, &last, &text, &text_len), 0);
	assert_true(last);
	assert_int_equal(text_len, 0);
	assert_int_equal(reply("554 5.7.1 Relay  denied ", &code, &last, &text,
	    &text_len), 0);
	assert_int_equal(code, 554);
	assert_slice(text, text_len, "5.7.1 Relay  denied ");
	assert_int_equal(reply("354 End data with <CR><LF>.<CR><LF>", &code,
	    &last, &text, &text_len), 0);
	assert_int_equal(code, 354);
	assert_int_equal(reply("200 x", &code, &last, &text, &text_len), 0);
	assert_int_equal(reply("599 x", &code, &last, &text, &text_len), 0);
	assert_int_equal(code, 599);
	assert_int_equal(reply("421-a\tb \xc3\xa9", &code, &last, &text,
	    &text_len), 0);
	assert_slice(text, text_len, "a\tb \xc3\xa9");
	/* The length bounds the line. */
	assert_int_equal(smtp_reply_parse("250 OK", 3, &code, &last, &text,
	    &text_len), 0);
	assert_true(last);
	assert_int_equal(text_len, 0);
	assert_int_equal(smtp_reply_parse("250-OK", 4, &code, &last, &text,
	    &text_len), 0);
	assert_false(last);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (reply(bad[i], &code, &last, &text, &text_len) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
	assert_int_equal(smtp_reply_parse(nul, sizeof(nul) - 1, &code, &last,
	    &text, &text_len), -1);
	assert_int_equal(smtp_reply_parse(NULL, 0, &code, &last, &text,
	    &text_len), -1);
}

/* ---- DATA ---- */

struct scan_result {
	size_t used;
	bool done;
	unsigned flags;
	uint64_t bytes;
};

/* The scanner's contract written out plainly, byte by byte, over the
 * whole input at once. */
static struct scan_result
reference_scan(const unsigned char *b, size_t n)
{
	struct scan_result r = { n, false, 0, n };
	size_t i;

	for (i = 0; i < n; i++) {
		if (b[i] == '\0')
			r.flags |= SMTP_DATA_NUL;
		if (b[i] == '\n' && (i == 0 || b[i - 1] != '\r'))
			r.flags |= SMTP_DATA_BARE_LF;
		if (b[i] == '\r' && i + 1 < n && b[i + 1] != '\n')
			r.flags |= SMTP_DATA_BARE_CR;
		if (b[i] == '\n' && i >= 2 && b[i - 1] == '\r' &&
		    b[i - 2] == '.' && (i == 2 || (i >= 4 &&
		    b[i - 3] == '\n' && b[i - 4] == '\r'))) {
			r.used = i + 1;
			r.done = true;
			r.bytes = i + 1 - 3;
			break;
		}
	}
	return r;
}

/* Feeds b in pieces of exact-size copies, the first split at first and
 * the rest chunk bytes at a time (0: all at once). */
static struct scan_result
scan_pieces(const unsigned char *b, size_t n, size_t first, size_t chunk)
{
	struct scan_result r = { 0, false, 0, 0 };
	struct smtp_data d;
	bool first_piece = true;
	size_t pos = 0;

	smtp_data_init(&d);
	while (!r.done && (first_piece || pos < n)) {
		size_t want = first_piece ? first :
		    (chunk == 0 ? n - pos : chunk);
		unsigned char *copy;
		size_t got;

		first_piece = false;
		if (want > n - pos)
			want = n - pos;
		copy = malloc(want > 0 ? want : 1);
		assert_non_null(copy);
		memcpy(copy, b + pos, want);
		got = smtp_data_scan(&d, copy, want, &r.done);
		free(copy);
		assert_true(got <= want);
		if (!r.done)
			assert_int_equal(got, want);
		pos += got;
	}
	r.used = pos;
	r.flags = d.flags;
	r.bytes = d.bytes;
	if (r.done) {
		bool again;

		assert_int_equal(smtp_data_scan(&d, b, n, &again), 0);
		assert_true(again);
		assert_true(d.bytes == r.bytes);
	}
	return r;
}

static void
assert_same(struct scan_result got, struct scan_result want)
{
	assert_int_equal(got.used, want.used);
	assert_int_equal(got.done, want.done);
	assert_int_equal(got.flags, want.flags);
	assert_true(got.bytes == want.bytes);
}

/* Every split point and byte-at-a-time must match the expectation. */
static void
expect_scan(const char *s, size_t n, size_t used, bool done, unsigned flags)
{
	const unsigned char *b = (const unsigned char *)s;
	struct scan_result want = { used, done, flags,
		done ? used - 3 : used };
	size_t split;

	assert_same(reference_scan(b, n), want);
	for (split = 0; split <= n; split++)
		assert_same(scan_pieces(b, n, split, 0), want);
	assert_same(scan_pieces(b, n, 1, 1), want);
	assert_same(scan_pieces(b, n, 2, 3), want);
}

#define SCAN(lit, used, done, flags) \
	expect_scan((lit), sizeof(lit) - 1, (used), (done), (flags))

static void
test_data_basic(void **state)
{
	static const char msg[] =
	    "From: a@b.example\r\nSubject: hi\r\n\r\nbody line\r\n.\r\n";
	static const char more[] =
	    "From: a@b.example\r\n\r\nbody\r\n.\r\nMAIL FROM:<>\r\n";

	SCAN(msg, sizeof(msg) - 1, true, 0);
	/* What follows the terminator is not the message's. */
	SCAN(more, sizeof(more) - 1 - 14, true, 0);
	SCAN("x\r\n.\r\nQUIT\r\n", 6, true, 0);
	SCAN("x\r\n.\r\n.\r\n", 6, true, 0);
	/* Not finished yet. */
	SCAN("x\r\n.\r", 5, false, 0);
	SCAN("x\r\n.", 4, false, 0);
	SCAN("x\r\n", 3, false, 0);
	SCAN("x", 1, false, 0);
	SCAN("", 0, false, 0);
}

static void
test_data_empty_message(void **state)
{
	struct smtp_data d;
	bool done;

	SCAN(".\r\n", 3, true, 0);
	SCAN(".\r\nRSET\r\n", 3, true, 0);
	SCAN("\r\n.\r\n", 5, true, 0);
	SCAN("\r\n\r\n.\r\n", 7, true, 0);

	smtp_data_init(&d);
	assert_int_equal(smtp_data_scan(&d, (const unsigned char *)".\r\n", 3,
	    &done), 3);
	assert_true(done);
	assert_true(d.bytes == 0);
	assert_int_equal(d.flags, 0);

	smtp_data_init(&d);
	assert_int_equal(smtp_data_scan(&d, (const unsigned char *)"", 0,
	    &done), 0);
	assert_false(done);
}

static void
test_data_dot_stuffing(void **state)
{
	/* ".." at a line start is a stuffed dot, never the end. */
	SCAN("..\r\n.\r\n", 7, true, 0);
	SCAN("a\r\n..\r\n.\r\n", 10, true, 0);
	SCAN("a\r\n...\r\n", 8, false, 0);
	SCAN("..", 2, false, 0);
	SCAN("..\r\n", 4, false, 0);
	SCAN(".x\r\n.\r\n", 7, true, 0);
	SCAN("a\r\n. \r\n.\r\n", 10, true, 0);
	SCAN("a\r\n .\r\n.\r\n", 10, true, 0);
	SCAN("a.\r\n.\r\n", 7, true, 0);
	SCAN("a\r\n.a.\r\n", 8, false, 0);
}

static void
test_data_bare_lf(void **state)
{
	/* Only CR LF "." CR LF ends the data: the others are what SMTP
	 * smuggling relies on. */
	SCAN("a\n.\nb", 5, false, SMTP_DATA_BARE_LF);
	SCAN("a\r\n.\nb", 6, false, SMTP_DATA_BARE_LF);
	SCAN("a\n.\r\nb", 6, false, SMTP_DATA_BARE_LF);
	SCAN("a\n.\r\nb\r\n.\r\n", 11, true, SMTP_DATA_BARE_LF);
	SCAN("a\r\n.\nmore\r\n.\r\n", 14, true, SMTP_DATA_BARE_LF);
	SCAN(".\n", 2, false, SMTP_DATA_BARE_LF);
	SCAN(".\n.\r\n", 5, false, SMTP_DATA_BARE_LF);
	SCAN(".\n.\r\n.\r\n", 8, true, SMTP_DATA_BARE_LF);
	SCAN("\n.\r\n", 4, false, SMTP_DATA_BARE_LF);
	SCAN("\n", 1, false, SMTP_DATA_BARE_LF);
	SCAN("a\n\n\n", 4, false, SMTP_DATA_BARE_LF);
}

static void
test_data_bare_cr(void **state)
{
	SCAN("a\rb\r\n.\r\n", 8, true, SMTP_DATA_BARE_CR);
	SCAN("a\r.\r\n", 5, false, SMTP_DATA_BARE_CR);
	SCAN("a\r\r\n.\r\n", 7, true, SMTP_DATA_BARE_CR);
	SCAN("a\r\n.\r.\r\n", 8, false, SMTP_DATA_BARE_CR);
	SCAN(".\r.\r\n.\r\n", 8, true, SMTP_DATA_BARE_CR);
	SCAN(".\r\r\n.\r\n", 7, true, SMTP_DATA_BARE_CR);
	SCAN("\r.\r\n", 4, false, SMTP_DATA_BARE_CR);
	SCAN("\r\r", 2, false, SMTP_DATA_BARE_CR);
	/* A CR at the end is not bare until its next byte is known. */
	SCAN("a\r", 2, false, 0);
	SCAN("a\r\n\r\r\n\n.\r\n", 10, false,
	    SMTP_DATA_BARE_CR | SMTP_DATA_BARE_LF);
}

static void
test_data_nul(void **state)
{
	SCAN("a\0b\r\n.\r\n", 8, true, SMTP_DATA_NUL);
	SCAN("\0\r\n.\r\n", 6, true, SMTP_DATA_NUL);
	SCAN(".\0\r\n.\r\n", 7, true, SMTP_DATA_NUL);
	SCAN("a\r\0\n.\r\n", 7, false, SMTP_DATA_NUL | SMTP_DATA_BARE_CR |
	    SMTP_DATA_BARE_LF);
	SCAN("\0", 1, false, SMTP_DATA_NUL);
	/* Flags after the end are not the message's. */
	SCAN(".\r\n\0\n\r", 3, true, 0);
}

/* CR, LF and NUL at every offset within the scanner's eight-byte words. */
static void
test_data_alignment(void **state)
{
	static const char *tails[] = { "\r\n.\r\n", "\n.\r\n", "\0", "\rx",
		"\r\n..\r\n" };
	static const unsigned flags[] = { 0, SMTP_DATA_BARE_LF, SMTP_DATA_NUL,
		SMTP_DATA_BARE_CR, 0 };
	static const size_t tail_len[] = { 5, 4, 1, 2, 6 };
	unsigned char buf[64];
	size_t off, t;

	for (t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
		for (off = 0; off < 40; off++) {
			struct scan_result r, want;
			size_t n = off + tail_len[t] + 8;

			memset(buf, 'x', sizeof(buf));
			memcpy(buf + off, tails[t], tail_len[t]);
			want = reference_scan(buf, n);
			assert_int_equal(want.flags, flags[t]);
			assert_int_equal(want.done, t == 0);
			r = scan_pieces(buf, n, n, 0);
			assert_same(r, want);
			r = scan_pieces(buf, n, off, 0);
			assert_same(r, want);
			r = scan_pieces(buf, n, off + 1, 0);
			assert_same(r, want);
		}
	}
}

/* Small random inputs over the bytes that matter, every split point,
 * against the plain reference. */
static void
test_data_random(void **state)
{
	static const unsigned char alphabet[] = { '\r', '\n', '.', '\0', 'a',
		'\r', '\n', '.' };
	unsigned char buf[24];
	uint32_t seed = 12345;
	int iter;

	for (iter = 0; iter < 20000; iter++) {
		size_t n, i, split;
		struct scan_result want;

		seed = seed * 1103515245 + 12345;
		n = (seed >> 16) % sizeof(buf);
		for (i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			buf[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
		}
		want = reference_scan(buf, n);
		for (split = 0; split <= n; split++)
			assert_same(scan_pieces(buf, n, split, 0), want);
		assert_same(scan_pieces(buf, n, 1, 1), want);
	}
}

static void
test_data_large(void **state)
{
	static const char line[] =
	    "The quick brown fox jumps over the lazy dog, 0123456789 ...\r\n";
	size_t line_len = sizeof(line) - 1;
	size_t lines = (8u << 20) / line_len, n = lines * line_len + 3 + 4;
	unsigned char *buf = malloc(n);
	struct smtp_data d;
	size_t i, pos, got;
	bool done;

	assert_non_null(buf);
	for (i = 0; i < lines; i++)
		memcpy(buf + i * line_len, line, line_len);
	memcpy(buf + lines * line_len, ".\r\nQUIT", 7);

	smtp_data_init(&d);
	got = smtp_data_scan(&d, buf, n, &done);
	assert_true(done);
	assert_int_equal(got, n - 4);
	assert_true(d.bytes == lines * line_len);
	assert_int_equal(d.flags, 0);

	/* In socket-sized reads. */
	smtp_data_init(&d);
	done = false;
	for (pos = 0; pos < n && !done; pos += got) {
		size_t want = n - pos < 16384 ? n - pos : 16384;

		got = smtp_data_scan(&d, buf + pos, want, &done);
	}
	assert_true(done);
	assert_int_equal(pos, n - 4);
	assert_true(d.bytes == lines * line_len);

	/* One NUL deep inside is still seen. */
	buf[5 * line_len + 17] = '\0';
	smtp_data_init(&d);
	got = smtp_data_scan(&d, buf, n, &done);
	assert_true(done);
	assert_int_equal(d.flags, SMTP_DATA_NUL);
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_verb),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_no_argument_verbs),
		cmocka_unit_test(test_ehlo_helo),
		cmocka_unit_test(test_any_argument_verbs),
		cmocka_unit_test(test_auth_xclient),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_mail_syntax),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_local_parts),
		cmocka_unit_test(test_nul_in_path),
		cmocka_unit_test(test_domains),
		cmocka_unit_test(test_address_literals),
		cmocka_unit_test(test_source_routes),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_other_params),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_data_basic),
		cmocka_unit_test(test_data_empty_message),
		cmocka_unit_test(test_data_dot_stuffing),
		cmocka_unit_test(test_data_bare_lf),
		cmocka_unit_test(test_data_bare_cr),
		cmocka_unit_test(test_data_nul),
		cmocka_unit_test(test_data_alignment),
		cmocka_unit_test(test_data_random),
		cmocka_unit_test(test_data_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
