/* Unit tests for the IMAP command parser, response parser and helpers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

#define LINE_MAX_T 256		/* line limit of most tests */
#define LITERAL_MAX_T 1024	/* literal limit of most tests */
#define BIG_OUT 512

/* The observable result of parsing one command. */
struct outcome {
	enum imap_parse_rc rc;
	size_t consumed;
	bool fatal;
	bool have_tag;
	const char *error;
	struct imap_cmd cmd;
	int n_continue;
};

/* Parses s as it arrives in one piece; a CONTINUE is answered by calling
 * again with the same input, as a caller that sent "+" would. */
static enum imap_parse_rc
parse_once(struct imap_parser *p, const char *s, size_t len)
{
	enum imap_parse_rc rc;

	rc = imap_parse(p, (const unsigned char *)s, len);
	if (rc == IMAP_PARSE_CONTINUE)
		rc = imap_parse(p, (const unsigned char *)s, len);
	return rc;
}

static enum imap_parse_rc
parse_str(struct imap_parser *p, const char *s)
{
	imap_parser_init(p, LINE_MAX_T, LITERAL_MAX_T);
	return parse_once(p, s, strlen(s));
}

static void
save_outcome(const struct imap_parser *p, enum imap_parse_rc rc,
    struct outcome *o)
{
	o->rc = rc;
	o->consumed = p->consumed;
	o->fatal = p->fatal;
	o->have_tag = p->have_tag;
	o->error = p->error;
	o->cmd = p->cmd;
}

/* Calls the parser on a fresh heap copy of s[0..len), so that a read past
 * len trips the address sanitizer and the buffer moves between calls. */
static enum imap_parse_rc
parse_prefix(struct imap_parser *p, const char *s, size_t len)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);
	enum imap_parse_rc rc;
	size_t before = p->pos;

	assert_non_null(copy);
	memcpy(copy, s, len);
	rc = imap_parse(p, copy, len);
	free(copy);
	assert_true(p->pos >= before);
	assert_true(p->pos <= len);
	if (rc == IMAP_PARSE_AGAIN)
		assert_int_equal(p->pos, len);	/* everything examined */
	return rc;
}

static void
assert_same_outcome(const struct outcome *a, const struct outcome *b)
{
	size_t i;

	assert_int_equal(a->rc, b->rc);
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->fatal, b->fatal);
	assert_int_equal(a->have_tag, b->have_tag);
	assert_ptr_equal(a->error, b->error);
	if (a->rc == IMAP_PARSE_INVALID && !a->have_tag)
		return;
	assert_int_equal(a->cmd.tag_off, b->cmd.tag_off);
	assert_int_equal(a->cmd.tag_len, b->cmd.tag_len);
	if (a->rc != IMAP_PARSE_OK)
		return;
	assert_int_equal(a->cmd.name_off, b->cmd.name_off);
	assert_int_equal(a->cmd.name_len, b->cmd.name_len);
	assert_int_equal(a->cmd.n_args, b->cmd.n_args);
	for (i = 0; i < a->cmd.n_args; i++) {
		assert_int_equal(a->cmd.args[i].type, b->cmd.args[i].type);
		assert_int_equal(a->cmd.args[i].off, b->cmd.args[i].off);
		assert_int_equal(a->cmd.args[i].len, b->cmd.args[i].len);
		assert_int_equal(a->cmd.args[i].escaped,
		    b->cmd.args[i].escaped);
	}
}

/* Feeds s[0..len) as prefixes of the lengths in steps[] (growing), then
 * the whole; stops at the first OK or INVALID. */
static void
feed_steps(const char *s, size_t len, size_t line_max, size_t literal_max,
    const size_t *steps, size_t n_steps, struct outcome *o)
{
	struct imap_parser p;
	enum imap_parse_rc rc = IMAP_PARSE_AGAIN;
	size_t i;

	imap_parser_init(&p, line_max, literal_max);
	o->n_continue = 0;
	for (i = 0; i <= n_steps; i++) {
		size_t n = i < n_steps ? steps[i] : len;

		rc = parse_prefix(&p, s, n);
		if (rc == IMAP_PARSE_CONTINUE) {
			o->n_continue++;
			/* Only once per literal: not again for the same input. */
			rc = parse_prefix(&p, s, n);
			assert_int_not_equal(rc, IMAP_PARSE_CONTINUE);
		}
		if (rc == IMAP_PARSE_OK || rc == IMAP_PARSE_INVALID)
			break;
	}
	save_outcome(&p, rc, o);
}

/* Every split point and byte at a time must give the one-shot result. */
static void
check_incremental_limits(const char *s, size_t len, size_t line_max,
    size_t literal_max)
{
	struct outcome one, part;
	size_t *steps = malloc((len + 1) * sizeof(*steps));
	size_t k;

	assert_non_null(steps);
	feed_steps(s, len, line_max, literal_max, NULL, 0, &one);
	for (k = 0; k <= len; k++) {
		steps[0] = k;
		feed_steps(s, len, line_max, literal_max, steps, 1, &part);
		assert_same_outcome(&one, &part);
	}
	for (k = 0; k <= len; k++)
		steps[k] = k;
	feed_steps(s, len, line_max, literal_max, steps, len + 1, &part);
	assert_same_outcome(&one, &part);
	free(steps);
}

static void
check_incremental(const char *s)
{
	check_incremental_limits(s, strlen(s), LINE_MAX_T, LITERAL_MAX_T);
}

static void
assert_slice(const char *buf, size_t off, size_t len, const char *want)
{
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf + off, want, len);
}

static void
assert_arg(const char *buf, const struct imap_cmd *cmd, size_t i,
    enum imap_arg_type type, const char *value)
{
	char out[BIG_OUT];

	assert_true(i < cmd->n_args);
	assert_int_equal(cmd->args[i].type, type);
	if (value == NULL)
		return;
	assert_int_equal(imap_arg_copy((const unsigned char *)buf,
	    &cmd->args[i], out, sizeof(out)), (int)strlen(value));
	assert_string_equal(out, value);
}

static void
assert_ok(struct imap_parser *p, const char *s, const char *tag,
    const char *name, size_t n_args)
{
	assert_int_equal(parse_str(p, s), IMAP_PARSE_OK);
	assert_int_equal(p->consumed, strlen(s));
	assert_null(p->error);
	assert_slice(s, p->cmd.tag_off, p->cmd.tag_len, tag);
	assert_true(imap_slice_eq((const unsigned char *)s, p->cmd.name_off,
	    p->cmd.name_len, name));
	assert_int_equal(p->cmd.n_args, n_args);
	check_incremental(s);
}

/* A non-fatal error: reported once the line has ended, all of it consumed. */
static void
assert_bad(const char *s, const char *tag, const char *error)
{
	struct imap_parser p;

	assert_int_equal(parse_str(&p, s), IMAP_PARSE_INVALID);
	assert_false(p.fatal);
	assert_int_equal(p.consumed, strlen(s));
	assert_string_equal(p.error, error);
	if (tag == NULL) {
		assert_false(p.have_tag);
	} else {
		assert_true(p.have_tag);
		assert_slice(s, p.cmd.tag_off, p.cmd.tag_len, tag);
	}
	/* Nothing is reported before the LF. */
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_not_equal(parse_once(&p, s, strlen(s) - 1),
	    IMAP_PARSE_INVALID);
	check_incremental(s);
}

static void
test_capability(void **state)
{
	struct imap_parser p;

	assert_ok(&p, "a1 CAPABILITY\r\n", "a1", "capability", 0);
	assert_ok(&p, "A0001 noop\n", "A0001", "NOOP", 0);
	assert_ok(&p, "x STARTTLS\r\n", "x", "STARTTLS", 0);
	assert_ok(&p, "t] LOGOUT\r\n", "t]", "LOGOUT", 0);
}

static void
test_login_atom(void **state)
{
	const char *s = "a2 LOGIN alice s3cr3t!\r\n";
	struct imap_parser p;

	assert_ok(&p, s, "a2", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_ATOM, "alice");
	assert_arg(s, &p.cmd, 1, IMAP_ARG_ATOM, "s3cr3t!");
	assert_false(p.cmd.args[1].escaped);

	s = "a LOGIN user@example.org pa]ss%*\r\n";
	assert_ok(&p, s, "a", "LOGIN", 2);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_ATOM, "pa]ss%*");
}

static void
test_login_quoted(void **state)
{
	const char *s = "a3 LOGIN \"al\\\"ice\" \"p\\\\ss word\"\r\n";
	struct imap_parser p;

	assert_ok(&p, s, "a3", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_QUOTED, "al\"ice");
	assert_true(p.cmd.args[0].escaped);
	assert_slice(s, p.cmd.args[0].off, p.cmd.args[0].len, "al\\\"ice");
	assert_arg(s, &p.cmd, 1, IMAP_ARG_QUOTED, "p\\ss word");

	s = "a LOGIN \"\" \"x\"\r\n";
	assert_ok(&p, s, "a", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_QUOTED, "");
	assert_false(p.cmd.args[0].escaped);

	/* UTF-8 is allowed in quoted strings (RFC 9051). */
	s = "a LOGIN \"j\xc3\xb6rg\" \"p\xe2\x82\xac\"\r\n";
	assert_ok(&p, s, "a", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_QUOTED, "j\xc3\xb6rg");
}

static void
test_login_sync_literal(void **state)
{
	const char *s = "a4 LOGIN {5}\r\nalice {6}\r\nsecret\r\n";
	const unsigned char *u = (const unsigned char *)s;
	size_t first = strlen("a4 LOGIN {5}\r\n");
	size_t second = strlen("a4 LOGIN {5}\r\nalice {6}\r\n");
	struct imap_parser p;

	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, first - 1), IMAP_PARSE_AGAIN);
	assert_int_equal(imap_parse(&p, u, first), IMAP_PARSE_CONTINUE);
	assert_int_equal(imap_parse(&p, u, first), IMAP_PARSE_AGAIN);
	assert_int_equal(imap_parse(&p, u, first + 3), IMAP_PARSE_AGAIN);
	assert_int_equal(imap_parse(&p, u, second), IMAP_PARSE_CONTINUE);
	assert_int_equal(imap_parse(&p, u, strlen(s) - 1), IMAP_PARSE_AGAIN);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);
	assert_int_equal(p.consumed, strlen(s));
	assert_int_equal(p.cmd.n_args, 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LITERAL, "alice");
	assert_int_equal(p.cmd.args[0].off, first);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_LITERAL, "secret");
	check_incremental(s);

	/* The client did not wait: no "+" needed. */
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);

	/* Part of the literal already there: still "+" once. */
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, first + 2), IMAP_PARSE_CONTINUE);
	assert_int_equal(imap_parse(&p, u, second), IMAP_PARSE_CONTINUE);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);

	/* Literal bytes are opaque: CRLF, quotes, parentheses. */
	s = "a LOGIN {6}\r\n\r\n()\r\n \"x\"\n";
	assert_ok(&p, s, "a", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LITERAL, "\r\n()\r\n");
}

static void
test_nonsync_literals(void **state)
{
	const char *s = "a5 LOGIN {5+}\r\nalice {6-}\nsecret\r\n";
	size_t i;
	struct imap_parser p;

	assert_ok(&p, s, "a5", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LITERAL, "alice");
	assert_arg(s, &p.cmd, 1, IMAP_ARG_LITERAL, "secret");
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	for (i = 0; i < strlen(s); i++)
		assert_int_equal(parse_prefix(&p, s, i), IMAP_PARSE_AGAIN);
	assert_int_equal(parse_prefix(&p, s, i), IMAP_PARSE_OK);
}

static void
test_empty_literal(void **state)
{
	const char *s = "a LOGIN {0}\r\n {0+}\r\n\r\n";
	const unsigned char *u = (const unsigned char *)s;
	struct imap_parser p;

	assert_ok(&p, s, "a", "LOGIN", 2);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LITERAL, "");
	assert_arg(s, &p.cmd, 1, IMAP_ARG_LITERAL, "");
	/* The client waits for "+" before sending the rest of the line. */
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, strlen("a LOGIN {0}\r\n")),
	    IMAP_PARSE_CONTINUE);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);
	check_incremental("a LOGIN {0}\r\n {00}\r\n\r\n");
}

static void
test_authenticate(void **state)
{
	const char *s = "a AUTHENTICATE PLAIN\r\n";
	struct imap_parser p;

	assert_ok(&p, s, "a", "AUTHENTICATE", 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_ATOM, "PLAIN");

	s = "a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n";
	assert_ok(&p, s, "a", "authenticate", 2);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_ATOM, "AGFsaWNlAHNlY3JldA==");

	/* SASL-IR: "=" is an empty initial response. */
	s = "a AUTHENTICATE PLAIN =\r\n";
	assert_ok(&p, s, "a", "AUTHENTICATE", 2);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_ATOM, "=");

	s = "a AUTHENTICATE PLAIN {20+}\r\nAGFsaWNlAHNlY3JldA==\r\n";
	assert_ok(&p, s, "a", "AUTHENTICATE", 2);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_LITERAL, "AGFsaWNlAHNlY3JldA==");
}

static void
test_id(void **state)
{
	const char *s = "a ID (\"name\" \"x\" \"version\" \"1\")\r\n";
	struct imap_parser p;

	assert_ok(&p, s, "a", "ID", 6);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LIST_BEGIN, NULL);
	assert_arg(s, &p.cmd, 1, IMAP_ARG_QUOTED, "name");
	assert_arg(s, &p.cmd, 4, IMAP_ARG_QUOTED, "1");
	assert_arg(s, &p.cmd, 5, IMAP_ARG_LIST_END, NULL);
	assert_int_equal(s[p.cmd.args[0].off], '(');
	assert_int_equal(s[p.cmd.args[5].off], ')');

	s = "a ID NIL\r\n";
	assert_ok(&p, s, "a", "ID", 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_NIL, NULL);
	s = "a ID nIl\r\n";
	assert_ok(&p, s, "a", "ID", 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_NIL, NULL);
	s = "a ID NILS\r\n";
	assert_ok(&p, s, "a", "ID", 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_ATOM, "NILS");
	s = "a ID \"NIL\"\r\n";
	assert_ok(&p, s, "a", "ID", 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_QUOTED, "NIL");

	s = "a ID (\"name\" NIL \"os\" {5}\r\nLinux)\r\n";
	assert_ok(&p, s, "a", "ID", 6);
	assert_arg(s, &p.cmd, 2, IMAP_ARG_NIL, NULL);
	assert_arg(s, &p.cmd, 4, IMAP_ARG_LITERAL, "Linux");

	assert_ok(&p, "a ID ()\r\n", "a", "ID", 2);
	assert_ok(&p, "a X ((((x)))) ((()))\r\n", "a", "X", 15);
	assert_ok(&p, "a X (a (b) c) d\r\n", "a", "X", 8);
}

static void
test_pipelined(void **state)
{
	const char *s = "a1 CAPABILITY\r\na2 LOGIN {3+}\r\nbob \"pw\"\r\n"
	    "a3 BAD\"\r\na4 ID NIL\na5 LOG";
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), off = 0;
	struct imap_parser p;

	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u + off, len - off), IMAP_PARSE_OK);
	assert_int_equal(p.consumed, strlen("a1 CAPABILITY\r\n"));
	off += p.consumed;
	imap_parser_reset(&p);

	assert_int_equal(imap_parse(&p, u + off, len - off), IMAP_PARSE_OK);
	assert_slice(s + off, p.cmd.tag_off, p.cmd.tag_len, "a2");
	assert_arg(s + off, &p.cmd, 0, IMAP_ARG_LITERAL, "bob");
	assert_arg(s + off, &p.cmd, 1, IMAP_ARG_QUOTED, "pw");
	off += p.consumed;
	imap_parser_reset(&p);

	assert_int_equal(imap_parse(&p, u + off, len - off),
	    IMAP_PARSE_INVALID);
	assert_false(p.fatal);
	assert_true(p.have_tag);
	assert_slice(s + off, p.cmd.tag_off, p.cmd.tag_len, "a3");
	assert_int_equal(p.consumed, strlen("a3 BAD\"\r\n"));
	off += p.consumed;
	imap_parser_reset(&p);

	assert_int_equal(imap_parse(&p, u + off, len - off), IMAP_PARSE_OK);
	assert_arg(s + off, &p.cmd, 0, IMAP_ARG_NIL, NULL);
	off += p.consumed;
	imap_parser_reset(&p);

	assert_int_equal(imap_parse(&p, u + off, len - off), IMAP_PARSE_AGAIN);
	assert_int_equal(p.pos, strlen("a5 LOG"));
}

static void
test_result_repeats(void **state)
{
	const char *s = "a NOOP\r\nb NOOP\r\n";
	const unsigned char *u = (const unsigned char *)s;
	struct imap_parser p;

	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_OK);
	assert_int_equal(p.consumed, 8);

	imap_parser_init(&p, 4, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	assert_int_equal(imap_parse(&p, u, strlen(s)), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
}

static void
test_reset_keeps_limits(void **state)
{
	const char *s = "a LOGIN {11}\r\n";
	struct imap_parser p;

	imap_parser_init(&p, 40, 10);
	assert_int_equal(imap_parse(&p, (const unsigned char *)s, strlen(s)),
	    IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	imap_parser_reset(&p);
	assert_int_equal(p.line_max, 40);
	assert_int_equal(p.literal_max, 10);
	assert_int_equal(p.pos, 0);
	assert_false(p.fatal);
	assert_null(p.error);
	assert_int_equal(p.cmd.n_args, 0);
	assert_int_equal(imap_parse(&p, (const unsigned char *)s, strlen(s)),
	    IMAP_PARSE_INVALID);
	assert_string_equal(p.error, "Literal too big");
}

static void
test_invalid_tag(void **state)
{
	char s[IMAP_TAG_MAX + 16];

	assert_bad("+ LOGIN a b\r\n", NULL, "Invalid tag");
	assert_bad("a+ NOOP\r\n", NULL, "Invalid tag");
	assert_bad("* NOOP\r\n", NULL, "Invalid tag");
	assert_bad("a(b NOOP\r\n", NULL, "Invalid tag");
	assert_bad("\"a\" NOOP\r\n", NULL, "Invalid tag");
	assert_bad(" a NOOP\r\n", NULL, "Invalid tag");
	assert_bad("t\xc3\xa4g NOOP\r\n", NULL, "Invalid tag");
	assert_bad("a\tNOOP\r\n", NULL, "Invalid tag");

	memset(s, 't', IMAP_TAG_MAX);
	strcpy(s + IMAP_TAG_MAX, " NOOP\r\n");
	check_incremental(s);
	memset(s, 't', IMAP_TAG_MAX + 1);
	strcpy(s + IMAP_TAG_MAX + 1, " NOOP\r\n");
	assert_bad(s, NULL, "Tag too long");
}

static void
test_invalid_name(void **state)
{
	assert_bad("a\r\n", "a", "Missing command name");
	assert_bad("a \r\n", "a", "Missing command name");
	assert_bad("a  NOOP\r\n", "a", "Missing command name");
	assert_bad("a NO]OP\r\n", "a", "Invalid command name");
	assert_bad("a NOOP(\r\n", "a", "Invalid command name");
	assert_bad("a \"NOOP\"\r\n", "a", "Invalid command name");
}

static void
test_invalid_args(void **state)
{
	assert_bad("a LOGIN \"alice secret\r\n", "a",
	    "Unterminated quoted string");
	assert_bad("a LOGIN \"alice\n", "a", "Unterminated quoted string");
	assert_bad("a LOGIN \"a\\b\" x\r\n", "a",
	    "Invalid escape in quoted string");
	assert_bad("a LOGIN \"a\\\r\n", "a", "Invalid escape in quoted string");
	assert_bad("a LOGIN \"a\"\"b\"\r\n", "a", "Missing space after argument");
	assert_bad("a LOGIN a\"b\"\r\n", "a", "Invalid character in atom");
	assert_bad("a LOGIN us\xc3\xa9r x\r\n", "a", "Invalid character in atom");
	assert_bad("a LOGIN a\\b x\r\n", "a", "Invalid character in atom");
	assert_bad("a LOGIN alice  secret\r\n", "a", "Missing argument");
	assert_bad("a NOOP \r\n", "a", "Missing argument");
	assert_bad("a LOGIN alice \n", "a", "Missing argument");
	assert_bad("a NOOP\rx\r\n", "a", "Bare CR in command");
	assert_bad("a NOOP\r\r\n", "a", "Bare CR in command");
}

static void
test_invalid_literal(void **state)
{
	assert_bad("a LOGIN {}\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {+}\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {5x}\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {5}x\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {5}\rx\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {5++}\r\n", "a", "Invalid literal");
	assert_bad("a LOGIN {3}\r\nabcdef\r\n", "a",
	    "Missing space after argument");
}

static void
test_invalid_lists(void **state)
{
	assert_ok(&(struct imap_parser){ 0 }, "a X ((((x))))\r\n", "a", "X",
	    9);
	assert_bad("a X (((((x)))))\r\n", "a", "Lists nested too deeply");
	assert_bad("a ID (\"name\" \"x\"\r\n", "a", "Unbalanced parentheses");
	assert_bad("a ID (\"name\" \"x\"\n", "a", "Unbalanced parentheses");
	assert_bad("a ID NIL)\r\n", "a", "Unbalanced parentheses");
	assert_bad("a ID ( \"x\")\r\n", "a", "Missing argument");
	assert_bad("a ID (\"x\" )\r\n", "a", "Missing argument");
	assert_bad("a ID ()x\r\n", "a", "Missing space after argument");
}

static void
test_invalid_nul(void **state)
{
#define NUL_LINE(s, tagged) { s, sizeof(s) - 1, tagged }
	static const struct {
		const char *s;
		size_t len;
		bool tagged;
	} lines[] = {
		NUL_LINE("\0a NOOP\r\n", false),
		NUL_LINE("a\0 NOOP\r\n", false),
		NUL_LINE("a NO\0OP\r\n", true),
		NUL_LINE("a LOGIN x\0y z\r\n", true),
		NUL_LINE("a LOGIN \"x\0y\" z\r\n", true),
		NUL_LINE("a NOOP\0\r\n", true),
		NUL_LINE("a NOOP\r\0\n", true),
		NUL_LINE("a LOGIN {5}\0\r\n", true),
		NUL_LINE("a ID (\0)\n", true),
	};
#undef NUL_LINE
	struct imap_parser p;
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
		assert_int_equal(parse_once(&p, lines[i].s, lines[i].len),
		    IMAP_PARSE_INVALID);
		assert_false(p.fatal);
		assert_int_equal(p.have_tag, lines[i].tagged);
		assert_int_equal(p.consumed, lines[i].len);
		assert_string_equal(p.error, "NUL byte in command");
		check_incremental_limits(lines[i].s, lines[i].len, LINE_MAX_T,
		    LITERAL_MAX_T);
	}

	/* NUL inside a literal: the literal is read through, then the line. */
	{
		const char s[] = "a LOGIN {5+}\r\nab\0\ncd\r\nb NOOP\r\n";

		imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
		assert_int_equal(parse_once(&p, s, sizeof(s) - 1),
		    IMAP_PARSE_INVALID);
		assert_false(p.fatal);
		assert_true(p.have_tag);
		assert_string_equal(p.error, "NUL byte in literal");
		assert_int_equal(p.consumed, strlen("a LOGIN {5+}\r\nab") +
		    strlen("\ncd\r\n") + 1);
		check_incremental_limits(s, sizeof(s) - 1, LINE_MAX_T,
		    LITERAL_MAX_T);
	}
}

static void
test_empty_line(void **state)
{
	assert_bad("\r\n", NULL, "Empty command line");
	assert_bad("\n", NULL, "Empty command line");
	assert_bad("\r\r\n", NULL, "Empty command line");
}

static void
test_too_many_args(void **state)
{
	char s[IMAP_ARGS_MAX * 2 + 64];
	struct imap_parser p;
	size_t i, n;

	n = (size_t)sprintf(s, "a X");
	for (i = 0; i < IMAP_ARGS_MAX; i++)
		n += (size_t)sprintf(s + n, " x");
	strcpy(s + n, "\r\n");
	assert_ok(&p, s, "a", "X", IMAP_ARGS_MAX);
	strcpy(s + n, " x\r\n");
	assert_bad(s, "a", "Too many arguments");

	/* List markers count: 31 pairs and the parentheses fill it. */
	n = (size_t)sprintf(s, "a ID (");
	for (i = 0; i < IMAP_ARGS_MAX - 2; i++)
		n += (size_t)sprintf(s + n, i == 0 ? "x" : " x");
	strcpy(s + n, ")\r\n");
	assert_ok(&p, s, "a", "ID", IMAP_ARGS_MAX);
	strcpy(s + n, " x)\r\n");
	assert_bad(s, "a", "Too many arguments");
}

/* An ID command may be as long as RFC 2971 allows, whatever line_max
 * says; other commands may not, nor an ID beyond IMAP_ID_LINE_MAX. */
static void
test_id_line_limit(void **state)
{
	const size_t max = 64;
	size_t len = IMAP_ID_LINE_MAX;
	char *s = malloc(len + 16);
	struct imap_parser p;

	assert_non_null(s);
	/* "a ID (" + a quoted value filling the line to IMAP_ID_LINE_MAX */
	memcpy(s, "a ID (\"v\" \"", 11);
	memset(s + 11, 'x', len - 13);
	memcpy(s + len - 2, "\")\r\n", 5);
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_once(&p, s, len + 2), IMAP_PARSE_OK);
	assert_int_equal(p.cmd.n_args, 4);
	/* The parser's own limit is back for the next command. */
	imap_parser_reset(&p);
	assert_int_equal(p.cmd_line_max, max);

	/* One byte more is too long, as soon as it arrives. */
	memcpy(s + len - 2, "x\")\r\n", 6);
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_prefix(&p, s, len), IMAP_PARSE_AGAIN);
	assert_int_equal(parse_prefix(&p, s, len + 1), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	assert_string_equal(p.error, "Line too long");

	/* Any other command keeps line_max. */
	memcpy(s, "a IDXX ", 7);
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_prefix(&p, s, max + 1), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	free(s);
}

static void
test_line_too_long(void **state)
{
	const size_t max = 32;
	char s[128];
	struct imap_parser p;
	size_t i;

	/* Exactly max bytes before the CRLF is accepted. */
	memset(s, 'x', sizeof(s));
	memcpy(s, "a LOGIN ", 8);
	memcpy(s + max, "\r\n", 3);
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_once(&p, s, max + 2), IMAP_PARSE_OK);
	check_incremental_limits(s, max + 2, max, LITERAL_MAX_T);
	memcpy(s + max, "\n", 2);
	check_incremental_limits(s, max + 1, max, LITERAL_MAX_T);

	/* One byte more is refused as soon as it arrives, no LF needed. */
	memset(s, 'x', sizeof(s));
	memcpy(s, "a LOGIN ", 8);
	imap_parser_init(&p, max, LITERAL_MAX_T);
	for (i = 0; i <= max; i++)
		assert_int_equal(parse_prefix(&p, s, i), IMAP_PARSE_AGAIN);
	assert_int_equal(parse_prefix(&p, s, max + 1), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	assert_string_equal(p.error, "Line too long");
	check_incremental_limits(s, sizeof(s), max, LITERAL_MAX_T);

	/* A CR after max bytes must be followed by LF. */
	s[max] = '\r';
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_prefix(&p, s, max + 1), IMAP_PARSE_AGAIN);
	assert_int_equal(parse_prefix(&p, s, max + 2), IMAP_PARSE_INVALID);
	assert_true(p.fatal);

	/* Also while skipping a bad line. */
	memcpy(s, "a LOGIN \"\\x", 11);
	s[max] = 'x';
	imap_parser_init(&p, max, LITERAL_MAX_T);
	assert_int_equal(parse_prefix(&p, s, max + 1), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	check_incremental_limits(s, sizeof(s), max, LITERAL_MAX_T);

	/* Each line after a literal has its own limit; literals do not
	 * count. */
	{
		char t[256];
		size_t n;

		n = (size_t)sprintf(t, "a LOGIN {40+}\r\n");
		memset(t + n, 'L', 40);
		n += 40;
		n += (size_t)sprintf(t + n, " %s\r\n",
		    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy");
		imap_parser_init(&p, max, LITERAL_MAX_T);
		assert_int_equal(parse_once(&p, t, n), IMAP_PARSE_OK);
		check_incremental_limits(t, n, max, LITERAL_MAX_T);
		memcpy(t + n - 2, "y\r\n", 3);
		imap_parser_init(&p, max, LITERAL_MAX_T);
		assert_int_equal(parse_once(&p, t, n + 1), IMAP_PARSE_INVALID);
		assert_true(p.fatal);
		check_incremental_limits(t, n + 1, max, LITERAL_MAX_T);
	}
}

static void
test_literal_too_big(void **state)
{
	const char *s = "a LOGIN {1025}\r\n";
	struct imap_parser p;
	size_t i;

	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	for (i = 0; i < strlen("a LOGIN {102"); i++)
		assert_int_equal(parse_prefix(&p, s, i), IMAP_PARSE_AGAIN);
	/* Known from "{1025" already; no need for the rest. */
	assert_int_equal(parse_prefix(&p, s, strlen("a LOGIN {1025")),
	    IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	assert_string_equal(p.error, "Literal too big");
	check_incremental(s);

	assert_int_equal(parse_str(&p, "a LOGIN {1024+}\r\n"), IMAP_PARSE_AGAIN);
	s = "a LOGIN {00001024}\r\n";
	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	assert_int_equal(imap_parse(&p, (const unsigned char *)s, strlen(s)),
	    IMAP_PARSE_CONTINUE);
	assert_int_equal(parse_str(&p, "a LOGIN {10000000000000000000000000000"
	    "000}\r\n"), IMAP_PARSE_INVALID);
	assert_true(p.fatal);

	/* No overflow even with no limit at all. */
	s = "a LOGIN {18446744073709551616}\r\n";
	imap_parser_init(&p, LINE_MAX_T, (size_t)-1);
	assert_int_equal(parse_once(&p, s, strlen(s)), IMAP_PARSE_INVALID);
	assert_true(p.fatal);
	s = "a LOGIN {99999999999999999999999999999999}\r\n";
	imap_parser_init(&p, LINE_MAX_T, (size_t)-1);
	assert_int_equal(parse_once(&p, s, strlen(s)), IMAP_PARSE_INVALID);
	assert_true(p.fatal);

	/* A limit of 0 still allows "{0}". */
	imap_parser_init(&p, LINE_MAX_T, 0);
	s = "a X {0+}\r\n\r\n";
	assert_int_equal(parse_once(&p, s, strlen(s)), IMAP_PARSE_OK);
}

/* Byte-at-a-time against one-shot for a table of sessions, valid or not. */
static void
test_incremental_table(void **state)
{
	static const char *const vectors[] = {
		"a1 CAPABILITY\r\n",
		"a2 LOGIN alice secret\r\n",
		"a3 LOGIN \"al\\\\ice\" \"se\\\"cret\"\r\n",
		"a4 LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
		"a5 LOGIN {5+}\r\nalice {6-}\r\nsecret\r\n",
		"a6 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
		"a7 ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")\r\n",
		"a8 ID NIL\n",
		"a9 ID ((NIL) ({3}\r\nabc \"q\") ())\r\n",
		"b1 LOGIN {0}\r\n {0}\r\n\r\n",
		"b2 LOGIN \"abc\r\n",
		"b3 LOGIN \"a\\q\" {5}\r\nhello\r\n",
		"b4 X (((((a)))))\r\n",
		"b5 X (\r\n",
		"\r\n",
		"+ x\r\n",
		"b6 LOGIN {5}\r\nab\r\nc x\r\n",
		"b7 LOGIN {9999}\r\n",
		"b8 NOOP \r\n",
		"b9 NOOP\rfoo\r\n",
		"c1 LOGIN {3}x\r\n",
		"c2 X a b c d e f g h i j k l m n o p q r s t\r\n",
		"c3 LOGIN {5}\r\nali\r\n",
	};
	size_t i;

	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		check_incremental(vectors[i]);
	/* Tight limits make the limit paths part of the comparison. */
	for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		check_incremental_limits(vectors[i], strlen(vectors[i]), 12, 4);
}

/* The caller's buffer may be moved between calls: only offsets are kept. */
static void
test_buffer_moves(void **state)
{
	const char *s = "a LOGIN {5}\r\nalice \"x\"\r\n";
	struct imap_parser p;
	size_t i;
	int conts = 0;
	enum imap_parse_rc rc = IMAP_PARSE_AGAIN;

	imap_parser_init(&p, LINE_MAX_T, LITERAL_MAX_T);
	for (i = 0; i <= strlen(s); i++) {
		rc = parse_prefix(&p, s, i);
		if (rc == IMAP_PARSE_CONTINUE)
			conts++;
		else if (rc != IMAP_PARSE_AGAIN)
			break;
	}
	assert_int_equal(rc, IMAP_PARSE_OK);
	assert_int_equal(conts, 1);
	assert_arg(s, &p.cmd, 0, IMAP_ARG_LITERAL, "alice");
	assert_arg(s, &p.cmd, 1, IMAP_ARG_QUOTED, "x");
}

static void
test_arg_copy(void **state)
{
	const char *s = "a LOGIN \"a\\\\b\" NIL (x) {3}\r\nxyz\r\n";
	const unsigned char *u = (const unsigned char *)s;
	struct imap_parser p;
	struct imap_arg bad;
	char out[8];

	assert_int_equal(parse_str(&p, s), IMAP_PARSE_OK);
	assert_int_equal(p.cmd.n_args, 6);
	/* "a\b" needs 4 bytes with its NUL. */
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[0], out, 4), 3);
	assert_string_equal(out, "a\\b");
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[0], out, 3), -1);
	assert_string_equal(out, "");
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[0], out, 0), -1);
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[1], out, sizeof(out)),
	    -1);
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[2], out, sizeof(out)),
	    -1);
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[4], out, sizeof(out)),
	    -1);
	assert_int_equal(imap_arg_copy(u, &p.cmd.args[5], out, 4), 3);
	assert_string_equal(out, "xyz");

	/* A literal made by hand with a NUL in it. */
	bad.type = IMAP_ARG_LITERAL;
	bad.off = 0;
	bad.len = 3;
	bad.escaped = false;
	assert_int_equal(imap_arg_copy((const unsigned char *)"a\0b", &bad,
	    out, sizeof(out)), -1);
	bad.type = IMAP_ARG_QUOTED;
	bad.escaped = true;
	assert_int_equal(imap_arg_copy((const unsigned char *)"ab\\", &bad,
	    out, sizeof(out)), -1);
	bad.len = 0;
	assert_int_equal(imap_arg_copy((const unsigned char *)"", &bad,
	    out, 1), 0);
}

static void
test_quote(void **state)
{
	char out[32];

	assert_int_equal(imap_quote("alice", 5, out, sizeof(out)), 7);
	assert_string_equal(out, "\"alice\"");
	assert_int_equal(imap_quote("a\"b\\c", 5, out, sizeof(out)), 9);
	assert_string_equal(out, "\"a\\\"b\\\\c\"");
	assert_int_equal(imap_quote("", 0, out, sizeof(out)), 2);
	assert_string_equal(out, "\"\"");
	assert_int_equal(imap_quote("a\rb", 3, out, sizeof(out)), -1);
	assert_int_equal(imap_quote("a\nb", 3, out, sizeof(out)), -1);
	assert_int_equal(imap_quote("a\0b", 3, out, sizeof(out)), -1);
	assert_int_equal(imap_quote("j\xc3\xb6rg", 5, out, sizeof(out)), -1);
	/* "\"ab\"" and its NUL: 5 bytes. */
	assert_int_equal(imap_quote("ab", 2, out, 5), 4);
	assert_int_equal(imap_quote("ab", 2, out, 4), -1);
	assert_int_equal(imap_quote("a\"", 2, out, 6), 5);
	assert_int_equal(imap_quote("a\"", 2, out, 5), -1);
	assert_int_equal(imap_quote("", 0, out, 0), -1);

	/* What it writes parses back to the same bytes. */
	{
		const char *pw = "p\\a\"s s(){}%*]";
		char line[64], back[32];
		struct imap_parser p;
		int n;

		n = imap_quote(pw, strlen(pw), out, sizeof(out));
		assert_true(n > 0);
		snprintf(line, sizeof(line), "a LOGIN u %s\r\n", out);
		assert_int_equal(parse_str(&p, line), IMAP_PARSE_OK);
		assert_int_equal(imap_arg_copy((const unsigned char *)line,
		    &p.cmd.args[1], back, sizeof(back)), (int)strlen(pw));
		assert_string_equal(back, pw);
	}
}

static void
assert_resp(const char *line, enum imap_resp_status status,
    const char *tag, const char *code, const char *text)
{
	struct imap_resp r;

	assert_int_equal(imap_parse_response(line, strlen(line), &r), 0);
	assert_int_equal(r.status, status);
	assert_slice(line, r.tag_off, r.tag_len, tag);
	assert_slice(line, r.code_off, r.code_len, code);
	assert_slice(line, r.text_off, r.text_len, text);
}

static void
test_response(void **state)
{
	struct imap_resp r;

	assert_resp("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot "
	    "ready.", IMAP_RESP_OK, "*",
	    "CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN", "Dovecot ready.");
	assert_resp("a1 OK Logged in", IMAP_RESP_OK, "a1", "", "Logged in");
	assert_resp("a1 ok [READ-WRITE]", IMAP_RESP_OK, "a1", "READ-WRITE",
	    "");
	assert_resp("a2 NO [AUTHENTICATIONFAILED] Authentication failed.",
	    IMAP_RESP_NO, "a2", "AUTHENTICATIONFAILED",
	    "Authentication failed.");
	assert_resp("a3 BAD Error in IMAP command", IMAP_RESP_BAD, "a3", "",
	    "Error in IMAP command");
	assert_resp("* PREAUTH [CAPABILITY IMAP4rev1] Logged in as bob",
	    IMAP_RESP_PREAUTH, "*", "CAPABILITY IMAP4rev1",
	    "Logged in as bob");
	assert_resp("* BYE", IMAP_RESP_BYE, "*", "", "");
	assert_resp("* bye Server shutting down.\r\n", IMAP_RESP_BYE, "*", "",
	    "Server shutting down.");
	assert_resp("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN",
	    IMAP_RESP_OTHER, "*", "", "CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN");
	assert_resp("* 3 EXISTS", IMAP_RESP_OTHER, "*", "", "3 EXISTS");
	assert_resp("* OKAY x", IMAP_RESP_OTHER, "*", "", "OKAY x");
	assert_resp("* ID (\"name\" \"Dovecot\")", IMAP_RESP_OTHER, "*", "",
	    "ID (\"name\" \"Dovecot\")");
	assert_resp("+ ", IMAP_RESP_CONTINUE, "+", "", "");
	assert_resp("+", IMAP_RESP_CONTINUE, "+", "", "");
	assert_resp("+ dGVzdA==", IMAP_RESP_CONTINUE, "+", "", "dGVzdA==");
	assert_resp("+ Ready for literal data", IMAP_RESP_CONTINUE, "+", "",
	    "Ready for literal data");
	/* Codes do not nest: the first ']' ends one. */
	assert_resp("a OK [X [Y] Z] t", IMAP_RESP_OK, "a", "X [Y", "Z] t");
	assert_resp("a OK [] t", IMAP_RESP_OK, "a", "", "t");
	/* No ']': no code, all text. */
	assert_resp("a NO [ALERT no end", IMAP_RESP_NO, "a", "",
	    "[ALERT no end");
	assert_resp("a OK", IMAP_RESP_OK, "a", "", "");
	assert_resp("a OK ", IMAP_RESP_OK, "a", "", "");

	assert_int_equal(imap_parse_response("", 0, &r), -1);
	assert_int_equal(imap_parse_response("\r\n", 2, &r), -1);
	assert_int_equal(imap_parse_response("a1", 2, &r), -1);
	assert_int_equal(imap_parse_response("*", 1, &r), -1);
	assert_int_equal(imap_parse_response("+x", 2, &r), -1);
	assert_int_equal(imap_parse_response(" OK", 3, &r), -1);
	/* Tags of bytes no client could send are garbage. */
	assert_int_equal(imap_parse_response("\0\xff\xfe garbage", 11, &r),
	    -1);
	assert_int_equal(imap_parse_response("a\x01 OK", 5, &r), -1);
	assert_int_equal(imap_parse_response("** OK", 5, &r), -1);
	assert_int_equal(imap_parse_response("a{1 OK", 6, &r), -1);
	assert_resp("a]1 OK x", IMAP_RESP_OK, "a]1", "", "x");
	/* len bounds the line, not a NUL. */
	assert_int_equal(imap_parse_response("a OK xyz", 4, &r), 0);
	assert_int_equal(r.text_len, 0);
}

static void
test_capability_has(void **state)
{
	const char *caps = "CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN "
	    "ID";

	assert_true(imap_capability_has(caps, strlen(caps), "IMAP4rev1"));
	assert_true(imap_capability_has(caps, strlen(caps), "imap4REV1"));
	assert_true(imap_capability_has(caps, strlen(caps), "LITERAL+"));
	assert_true(imap_capability_has(caps, strlen(caps), "auth=plain"));
	assert_true(imap_capability_has(caps, strlen(caps), "ID"));
	assert_false(imap_capability_has(caps, strlen(caps), "AUTH"));
	assert_false(imap_capability_has(caps, strlen(caps), "PLAIN"));
	assert_false(imap_capability_has(caps, strlen(caps), "LITERAL"));
	assert_false(imap_capability_has(caps, strlen(caps), "IMAP4"));
	assert_false(imap_capability_has(caps, strlen(caps), "CAPABILITY"));
	assert_false(imap_capability_has(caps, strlen(caps), ""));
	assert_false(imap_capability_has(caps, strlen(caps) - 1, "ID"));
	assert_false(imap_capability_has(caps, strlen(caps), "IMAP4rev1 SASL-IR"));
	assert_true(imap_capability_has("  STARTTLS  ", 12, "starttls"));
	assert_false(imap_capability_has("", 0, "STARTTLS"));
	assert_true(imap_capability_has("STARTTLS", 8, "STARTTLS"));

	/* The code and text slices of real responses. */
	{
		const char *line = "* OK [CAPABILITY IMAP4rev1 SASL-IR "
		    "AUTH=PLAIN] ready";
		struct imap_resp r;

		assert_int_equal(imap_parse_response(line, strlen(line), &r), 0);
		assert_true(imap_capability_has(line + r.code_off, r.code_len,
		    "SASL-IR"));
		assert_false(imap_capability_has(line + r.code_off, r.code_len,
		    "ready"));
		line = "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED";
		assert_int_equal(imap_parse_response(line, strlen(line), &r), 0);
		assert_true(imap_capability_has(line + r.text_off, r.text_len,
		    "LOGINDISABLED"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capability),
		cmocka_unit_test(test_login_atom),
		cmocka_unit_test(test_login_quoted),
		cmocka_unit_test(test_login_sync_literal),
		cmocka_unit_test(test_nonsync_literals),
		cmocka_unit_test(test_empty_literal),
		cmocka_unit_test(test_authenticate),
		cmocka_unit_test(test_id),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_result_repeats),
		cmocka_unit_test(test_reset_keeps_limits),
		cmocka_unit_test(test_invalid_tag),
		cmocka_unit_test(test_invalid_name),
		cmocka_unit_test(test_invalid_args),
		cmocka_unit_test(test_invalid_literal),
		cmocka_unit_test(test_invalid_lists),
		cmocka_unit_test(test_invalid_nul),
		cmocka_unit_test(test_empty_line),
		cmocka_unit_test(test_too_many_args),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_id_line_limit),
		cmocka_unit_test(test_literal_too_big),
		cmocka_unit_test(test_incremental_table),
		cmocka_unit_test(test_buffer_moves),
		cmocka_unit_test(test_arg_copy),
		cmocka_unit_test(test_quote),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_capability_has),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
