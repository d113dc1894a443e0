/* Fuzz target for smtp_parse.
 *
 * The input is cut into lines at LF (a CR before it dropped); each line
 * goes to the command parser and the reply parser, from exact-size copies
 * so that a read past the line is caught under ASan. An accepted MAIL or
 * RCPT is rebuilt from its parts and must parse to the same thing, and a
 * line must get the same answer in upper and lower case.
 *
 * The whole input is also a DATA stream: scanned in one piece, split in
 * two at a position taken from its first two bytes, and in chunks sized by
 * its first byte; every way must agree with a plain byte-by-byte reading
 * of the terminator and flag rules. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

/* Not assert(): release builds define NDEBUG. */
#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
dup_exact(const void *p, size_t n)
{
	char *c = malloc(n > 0 ? n : 1);

	CHECK(c != NULL);
	if (n > 0)
		memcpy(c, p, n);
	return c;
}

static bool
in(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static enum smtp_parse_result
parse_checked(const char *line, size_t len, struct smtp_cmd *cmd,
    const char **why)
{
	enum smtp_parse_result rc = smtp_parse_command(line, len, cmd, why);

	CHECK(in(cmd->arg, cmd->arg_len, line, len));
	CHECK(in(cmd->path, cmd->path_len, line, len));
	CHECK(in(cmd->params, cmd->params_len, line, len));
	switch (rc) {
	case SMTP_PARSE_OK:
		CHECK(*why == NULL);
		CHECK(cmd->verb != SMTP_UNKNOWN);
		break;
	case SMTP_PARSE_UNKNOWN:
		CHECK(*why != NULL && strncmp(*why, "500 5.", 6) == 0);
		CHECK(cmd->verb == SMTP_UNKNOWN);
		break;
	case SMTP_PARSE_SYNTAX:
		CHECK(*why != NULL && strncmp(*why, "501 5.", 6) == 0);
		CHECK(cmd->verb != SMTP_UNKNOWN);
		break;
	case SMTP_PARSE_PARAM:
		CHECK(*why != NULL && strncmp(*why, "555 5.", 6) == 0);
		CHECK(cmd->verb == SMTP_MAIL || cmd->verb == SMTP_RCPT);
		break;
	default:
		CHECK(!"result out of range");
	}
	return rc;
}

/* An accepted path, rebuilt into a fresh line, parses the same way. */
static void
check_rebuilt(const struct smtp_cmd *cmd)
{
	char line[SMTP_PATH_MAX + 64], *copy;
	struct smtp_cmd again;
	const char *why;
	int n;

	n = snprintf(line, sizeof(line), "%s<%.*s>%s",
	    cmd->verb == SMTP_MAIL ? "MAIL FROM:" : "RCPT TO:",
	    (int)cmd->path_len, cmd->path,
	    cmd->body == SMTP_BODY_7BIT ? " BODY=7BIT" :
	    cmd->body == SMTP_BODY_8BITMIME ? " BODY=8BITMIME" : "");
	CHECK(n > 0 && (size_t)n < sizeof(line));
	copy = dup_exact(line, (size_t)n);
	CHECK(parse_checked(copy, (size_t)n, &again, &why) == SMTP_PARSE_OK);
	CHECK(again.verb == cmd->verb);
	CHECK(again.path_len == cmd->path_len);
	CHECK(memcmp(again.path, cmd->path, cmd->path_len) == 0);
	CHECK(again.body == cmd->body);
	free(copy);
}

static void
check_ok(const struct smtp_cmd *cmd)
{
	size_t i;

	switch (cmd->verb) {
	case SMTP_DATA:
	case SMTP_RSET:
	case SMTP_QUIT:
	case SMTP_STARTTLS:
		CHECK(cmd->arg_len == 0);
		break;
	case SMTP_EHLO:
	case SMTP_HELO:
	case SMTP_AUTH:
	case SMTP_XCLIENT:
		CHECK(cmd->arg_len > 0);
		CHECK(cmd->arg[0] != ' ' && cmd->arg[cmd->arg_len - 1] != ' ');
		for (i = 0; i < cmd->arg_len; i++)
			CHECK(cmd->arg[i] >= 32 && cmd->arg[i] <= 126);
		break;
	case SMTP_NOOP:
	case SMTP_HELP:
	case SMTP_VRFY:
		for (i = 0; i < cmd->arg_len; i++)
			CHECK(((unsigned char)cmd->arg[i] >= 32 ||
			    cmd->arg[i] == '\t') && cmd->arg[i] != 127);
		break;
	case SMTP_BDAT:
		CHECK(cmd->has_size);
		break;
	case SMTP_MAIL:
	case SMTP_RCPT:
		CHECK(cmd->path_len <= SMTP_PATH_MAX);
		CHECK(cmd->path_len > 0 || cmd->verb == SMTP_MAIL);
		for (i = 0; i < cmd->path_len; i++)
			CHECK(cmd->path[i] >= 32 && cmd->path[i] <= 126);
		if (cmd->verb == SMTP_RCPT)
			CHECK(cmd->params_len == 0);
		check_rebuilt(cmd);
		break;
	default:
		break;
	}
	if (cmd->verb != SMTP_MAIL) {
		CHECK(cmd->body == SMTP_BODY_NONE);
		CHECK(!cmd->has_size || cmd->verb == SMTP_BDAT);
	}
	CHECK(!cmd->last || cmd->verb == SMTP_BDAT);
}

static void
check_command(const uint8_t *p, size_t len)
{
	char *line = dup_exact(p, len), *folded = dup_exact(p, len);
	enum smtp_parse_result rc, rc2;
	struct smtp_cmd cmd, cmd2;
	const char *why, *why2;
	size_t i;

	rc = parse_checked(line, len, &cmd, &why);
	if (rc == SMTP_PARSE_OK)
		check_ok(&cmd);

	/* Nothing in the grammar depends on the case of a letter. */
	for (i = 0; i < len; i++)
		if (folded[i] >= 'a' && folded[i] <= 'z')
			folded[i] = (char)(folded[i] - 32);
	rc2 = parse_checked(folded, len, &cmd2, &why2);
	CHECK(rc2 == rc && cmd2.verb == cmd.verb);
	CHECK(why == why2 || strcmp(why, why2) == 0);
	for (i = 0; i < len; i++)
		if (folded[i] >= 'A' && folded[i] <= 'Z')
			folded[i] = (char)(folded[i] + 32);
	rc2 = parse_checked(folded, len, &cmd2, &why2);
	CHECK(rc2 == rc && cmd2.verb == cmd.verb);
	CHECK(why == why2 || strcmp(why, why2) == 0);
	free(folded);
	free(line);
}

static void
check_reply(const uint8_t *p, size_t len)
{
	char *line = dup_exact(p, len);
	const char *text;
	size_t text_len, i;
	unsigned code;
	bool last;

	if (smtp_reply_parse(line, len, &code, &last, &text, &text_len) == 0) {
		CHECK(len >= 3);
		CHECK(code >= 200 && code <= 599);
		CHECK(code == (unsigned)((line[0] - '0') * 100 +
		    (line[1] - '0') * 10 + (line[2] - '0')));
		CHECK(last == (len == 3 || line[3] == ' '));
		CHECK(len == 3 || line[3] == '-' || line[3] == ' ');
		CHECK(text_len == (len > 3 ? len - 4 : 0));
		CHECK(in(text, text_len, line, len));
		CHECK(text + text_len == line + len);
		for (i = 0; i < text_len; i++)
			CHECK(text[i] != '\0' && text[i] != '\r' &&
			    text[i] != '\n');
	}
	free(line);
}

struct scan_result {
	size_t used;
	bool done;
	unsigned flags;
	uint64_t bytes;
};

/* The scanner's rules, read directly off the whole input. */
static struct scan_result
reference_scan(const uint8_t *b, size_t n)
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

/* The first piece is first bytes, the rest chunk bytes at a time. */
static struct scan_result
scan_pieces(const uint8_t *b, size_t n, size_t first, size_t chunk)
{
	struct scan_result r = { 0, false, 0, 0 };
	struct smtp_data d;
	bool first_piece = true;

	smtp_data_init(&d);
	while (!r.done && (first_piece || r.used < n)) {
		size_t want = first_piece ? first : chunk, got;
		char *copy;

		first_piece = false;
		if (want > n - r.used)
			want = n - r.used;
		copy = dup_exact(b + r.used, want);
		got = smtp_data_scan(&d, (const unsigned char *)copy, want,
		    &r.done);
		free(copy);
		CHECK(got <= want);
		CHECK(r.done || got == want);
		r.used += got;
	}
	r.flags = d.flags;
	r.bytes = d.bytes;
	if (r.done) {
		bool again = false;

		/* Finished: nothing more is taken. */
		CHECK(smtp_data_scan(&d, b, n, &again) == 0 && again);
		CHECK(d.bytes == r.bytes);
	}
	return r;
}

static void
check_same(struct scan_result a, struct scan_result b)
{
	CHECK(a.used == b.used);
	CHECK(a.done == b.done);
	CHECK(a.flags == b.flags);
	CHECK(a.bytes == b.bytes);
}

static void
check_data(const uint8_t *data, size_t size)
{
	struct scan_result want = reference_scan(data, size);
	size_t split = 0, chunk = 1;

	if (size >= 2) {
		split = ((size_t)data[0] << 8 | data[1]) % (size + 1);
		chunk = (size_t)(data[0] & 15) + 1;
	}
	check_same(scan_pieces(data, size, size, size), want);
	check_same(scan_pieces(data, size, split, size), want);
	check_same(scan_pieces(data, size, chunk, chunk), want);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		const uint8_t *lf = memchr(data + pos, '\n', size - pos);
		size_t end = lf != NULL ? (size_t)(lf - data) : size;
		size_t len = end - pos;

		if (len > 0 && data[end - 1] == '\r')
			len--;
		check_command(data + pos, len);
		check_reply(data + pos, len);
		pos = end + 1;
	}
	check_data(data, size);
	return 0;
}
