/* Fuzz target for back-end response lines: imap_parse_response and
 * imap_capability_has on each line of the input (split at LF, as the
 * proxy reads them) and on the whole input as one line; imap_quote on
 * each line, checked by parsing the quoted string back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

/* Not assert(): release builds define NDEBUG. */
#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#define WORD_MAX 64		/* capabilities looked up word by word */
#define QUOTE_LINE_MAX 1024	/* lines longer than this are not quoted */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every word of a capability list must be found in it, and a word that
 * is only a prefix of the first word must not be. */
static void
check_caps(const char *caps, size_t len)
{
	char word[WORD_MAX + 1];
	size_t i = 0, start, n;
	bool first = true;

	(void)imap_capability_has(caps, len, "IMAP4rev1");
	(void)imap_capability_has(caps, len, "AUTH=PLAIN");
	while (i < len) {
		if (caps[i] == ' ') {
			i++;
			continue;
		}
		start = i;
		while (i < len && caps[i] != ' ')
			i++;
		n = i - start;
		if (n > WORD_MAX || memchr(caps + start, '\0', n) != NULL) {
			first = false;
			continue;
		}
		memcpy(word, caps + start, n);
		word[n] = '\0';
		if (!(first && imap_slice_eq((const unsigned char *)word, 0, n,
		    "CAPABILITY")))
			CHECK(imap_capability_has(caps, len, word));
		if (first && n > 1 && memchr(caps, ' ', len) == NULL) {
			word[n - 1] = '\0';
			CHECK(!imap_capability_has(caps, len, word));
		}
		first = false;
	}
}

static void
check_response(const char *line, size_t len)
{
	struct imap_resp r;

	if (imap_parse_response(line, len, &r) != 0)
		return;
	CHECK(len > 0);
	CHECK(r.tag_off == 0 && r.tag_len > 0 && r.tag_len <= len);
	CHECK(r.status >= IMAP_RESP_OK && r.status <= IMAP_RESP_CONTINUE);
	CHECK(r.code_off <= len && r.code_len <= len - r.code_off);
	CHECK(r.text_off <= len && r.text_len <= len - r.text_off);
	CHECK(r.text_off >= r.tag_len);
	if (r.code_len > 0) {
		CHECK(r.code_off > r.tag_len);
		CHECK(line[r.code_off - 1] == '[');
		CHECK(line[r.code_off + r.code_len] == ']');
		CHECK(memchr(line + r.code_off, ']', r.code_len) == NULL);
		CHECK(r.text_off > r.code_off + r.code_len);
	}
	if (r.status == IMAP_RESP_CONTINUE)
		CHECK(r.tag_len == 1 && line[0] == '+');
	else
		CHECK(r.tag_len < len && line[r.tag_len] == ' ');
	check_caps(line + r.code_off, r.code_len);
	check_caps(line + r.text_off, r.text_len);
}

/* A quoted string imap_quote makes must parse back to the same bytes. */
static void
check_quote(const char *s, size_t len)
{
	static char q[2 * QUOTE_LINE_MAX + 3];
	static char cmd[2 * QUOTE_LINE_MAX + 16];
	static char back[QUOTE_LINE_MAX + 1];
	struct imap_parser p;
	size_t i, n;
	bool quotable = true;
	int qlen;

	if (len > QUOTE_LINE_MAX)
		return;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0' || c == '\r' || c == '\n' || c >= 0x80)
			quotable = false;
	}
	qlen = imap_quote(s, len, q, sizeof(q));
	CHECK(quotable == (qlen >= 0));
	if (qlen < 0)
		return;
	CHECK((size_t)qlen >= len + 2 && q[qlen] == '\0');
	CHECK(imap_quote(s, len, q, (size_t)qlen) == -1);
	qlen = imap_quote(s, len, q, (size_t)qlen + 1);
	CHECK(qlen >= 0);

	n = (size_t)snprintf(cmd, sizeof(cmd), "q LOGIN %s\r\n", q);
	imap_parser_init(&p, sizeof(cmd), 0);
	CHECK(imap_parse(&p, (const unsigned char *)cmd, n) == IMAP_PARSE_OK);
	CHECK(p.consumed == n && p.cmd.n_args == 1);
	CHECK(p.cmd.args[0].type == IMAP_ARG_QUOTED);
	CHECK(imap_arg_copy((const unsigned char *)cmd, &p.cmd.args[0], back,
	    sizeof(back)) == (int)len);
	CHECK(memcmp(back, s, len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *lf;
	size_t off = 0, n;

	check_response(s, size);
	while (off < size) {
		lf = memchr(s + off, '\n', size - off);
		n = lf != NULL ? (size_t)(lf - (s + off)) : size - off;
		if (n > 0 && s[off + n - 1] == '\r')
			n--;
		check_response(s + off, n);
		check_quote(s + off, n);
		off = lf != NULL ? (size_t)(lf - s) + 1 : size;
	}
	return 0;
}
