/* Fuzz target for the IMAP command parser, driven as a client session
 * would drive it: input arrives in chunks, each command is consumed after
 * OK or a non-fatal INVALID and the parser reset.
 *
 * Input: one mode byte, then the bytes the client sends. The mode's low
 * four bits choose the chunk size, bits 4-5 the limits; printable modes
 * are useful: '0'-'9' normal limits (chunk 1, 1, 2, 3, ...), 'A'-'O' tiny
 * limits, 'P'-'Z' small, 'a'-'o' medium.
 *
 * Every result is compared with parsing the same input in one piece, and
 * the bytes the parser has not been given yet are poisoned under ASan, so
 * a read past len is caught even inside the fuzzer's own buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap_parse.h"

/* Not CHECK(): release builds define NDEBUG. */
#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif

#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define COPY_MAX 65536		/* largest literal_max below */

static const size_t chunk_sizes[16] = {
	1, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 257, 1024, 65536,
};

static const struct {
	size_t line_max;
	size_t literal_max;
} limits[4] = {
	{ 16, 8 }, { 64, 64 }, { 1024, 4096 }, { 8192, COPY_MAX },
};

static char copy_out[COPY_MAX + 1];
static char quote_out[2 * COPY_MAX + 3];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An argument of an OK command: copies and re-quotes as the proxy would. */
static void
check_arg(const unsigned char *buf, size_t consumed,
    const struct imap_arg *a, size_t literal_max)
{
	int n;

	CHECK(a->off <= consumed && a->len <= consumed - a->off);
	n = imap_arg_copy(buf, a, copy_out, sizeof(copy_out));
	switch (a->type) {
	case IMAP_ARG_LIST_BEGIN:
	case IMAP_ARG_LIST_END:
		CHECK(a->len == 1);
		CHECK(buf[a->off] == (a->type == IMAP_ARG_LIST_BEGIN ?
		    '(' : ')'));
		CHECK(n == -1);
		break;
	case IMAP_ARG_NIL:
		CHECK(imap_slice_eq(buf, a->off, a->len, "NIL"));
		CHECK(n == -1);
		break;
	case IMAP_ARG_ATOM:
		CHECK(a->len > 0 && !a->escaped);
		CHECK(n == (int)a->len);
		CHECK(memcmp(copy_out, buf + a->off, a->len) == 0);
		break;
	case IMAP_ARG_LITERAL:
		CHECK(a->len <= literal_max && !a->escaped);
		CHECK(n == (int)a->len);
		break;
	case IMAP_ARG_QUOTED:
		CHECK(buf[a->off - 1] == '"' && buf[a->off + a->len] == '"');
		CHECK(n >= 0 && (size_t)n <= a->len);
		CHECK(a->escaped || (size_t)n == a->len);
		/* Quoting the value again gives back exactly what was sent,
		 * as \" and \\ are the only escapes. */
		{
			int q = imap_quote(copy_out, (size_t)n, quote_out,
			    sizeof(quote_out));
			size_t i;
			bool eight_bit = false;

			for (i = 0; i < (size_t)n; i++)
				eight_bit |= (unsigned char)copy_out[i] >= 0x80;
			if (!eight_bit) {
				CHECK(q == (int)a->len + 2);
				CHECK(memcmp(quote_out + 1, buf + a->off,
				    a->len) == 0);
			} else {
				CHECK(q == -1);
			}
		}
		break;
	default:
		CHECK(!"unknown argument type");
	}
	if (n > 0) {
		/* One byte short of room must fail cleanly. */
		CHECK(imap_arg_copy(buf, a, copy_out, (size_t)n) == -1);
		CHECK(copy_out[0] == '\0');
	}
}

static void
check_result(const struct imap_parser *p, enum imap_parse_rc rc,
    const unsigned char *buf, size_t len, size_t literal_max)
{
	const struct imap_cmd *c = &p->cmd;
	int depth = 0;
	size_t i;

	CHECK(p->pos <= len);
	if (rc == IMAP_PARSE_AGAIN) {
		CHECK(p->pos == len);
		return;
	}
	if (rc == IMAP_PARSE_CONTINUE) {
		CHECK(p->pos > 0 && buf[p->pos - 1] == '\n');
		return;
	}
	CHECK(p->error != NULL || rc == IMAP_PARSE_OK);
	if (rc == IMAP_PARSE_INVALID && p->fatal)
		return;
	CHECK(p->consumed > 0 && p->consumed <= len);
	CHECK(buf[p->consumed - 1] == '\n');
	if (p->have_tag) {
		CHECK(c->tag_off == 0);
		CHECK(c->tag_len > 0 && c->tag_len <= IMAP_TAG_MAX);
		CHECK(c->tag_len < p->consumed);
	}
	if (rc == IMAP_PARSE_INVALID)
		return;

	CHECK(p->error == NULL && p->have_tag);
	CHECK(memchr(buf, '\0', p->consumed) == NULL);
	CHECK(c->name_off == c->tag_len + 1 && c->name_len > 0);
	CHECK(c->name_off + c->name_len < p->consumed);
	CHECK(c->n_args <= IMAP_ARGS_MAX);
	for (i = 0; i < c->n_args; i++) {
		const struct imap_arg *a = &c->args[i];

		/* Only an empty literal shares its offset with what follows,
		 * as in "({0}\r\n)". */
		CHECK(i == 0 || a->off > c->args[i - 1].off ||
		    (a->off == c->args[i - 1].off &&
		    c->args[i - 1].type == IMAP_ARG_LITERAL &&
		    c->args[i - 1].len == 0));
		CHECK(a->off > c->name_off + c->name_len);
		if (a->type == IMAP_ARG_LIST_BEGIN)
			depth++;
		else if (a->type == IMAP_ARG_LIST_END)
			depth--;
		CHECK(depth >= 0 && depth <= IMAP_LIST_DEPTH_MAX);
		check_arg(buf, p->consumed, a, literal_max);
	}
	CHECK(depth == 0);
}

/* Parses the rest of the input in one piece: the result must match. */
static void
check_one_shot(const struct imap_parser *p, enum imap_parse_rc rc,
    const unsigned char *data, size_t len, size_t line_max,
    size_t literal_max)
{
	static struct imap_parser once;
	enum imap_parse_rc rc1;
	size_t i;

	imap_parser_init(&once, line_max, literal_max);
	rc1 = imap_parse(&once, data, len);
	if (rc1 == IMAP_PARSE_CONTINUE) {
		rc1 = imap_parse(&once, data, len);
		CHECK(rc1 != IMAP_PARSE_CONTINUE);
	}
	if (rc == IMAP_PARSE_CONTINUE)
		rc = IMAP_PARSE_AGAIN;
	CHECK(rc1 == rc);
	if (rc == IMAP_PARSE_AGAIN)
		return;
	CHECK(once.error == p->error && once.fatal == p->fatal);
	CHECK(once.consumed == p->consumed);
	CHECK(once.have_tag == p->have_tag);
	if (rc != IMAP_PARSE_OK)
		return;
	CHECK(once.cmd.name_len == p->cmd.name_len);
	CHECK(once.cmd.n_args == p->cmd.n_args);
	for (i = 0; i < p->cmd.n_args; i++) {
		CHECK(once.cmd.args[i].type == p->cmd.args[i].type);
		CHECK(once.cmd.args[i].off == p->cmd.args[i].off);
		CHECK(once.cmd.args[i].len == p->cmd.args[i].len);
		CHECK(once.cmd.args[i].escaped == p->cmd.args[i].escaped);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct imap_parser p;
	unsigned char *buf;
	size_t chunk, line_max, literal_max, start = 0, avail = 0, before;
	enum imap_parse_rc rc;

	if (size < 1)
		return 0;
	chunk = chunk_sizes[data[0] & 0x0f];
	line_max = limits[(data[0] >> 4) & 0x03].line_max;
	literal_max = limits[(data[0] >> 4) & 0x03].literal_max;
	data++;
	size--;

	buf = malloc(size > 0 ? size : 1);
	CHECK(buf != NULL);
	memcpy(buf, data, size);
	POISON(buf, size);
	imap_parser_init(&p, line_max, literal_max);
	for (;;) {
		before = p.pos;
		rc = imap_parse(&p, buf + start, avail - start);
		CHECK(p.pos >= before);
		check_result(&p, rc, buf + start, avail - start, literal_max);
		if (rc == IMAP_PARSE_CONTINUE) {
			/* Once per literal: not again for the same input. */
			CHECK(imap_parse(&p, buf + start, avail - start) !=
			    IMAP_PARSE_CONTINUE);
		}
		if (rc == IMAP_PARSE_OK || rc == IMAP_PARSE_INVALID) {
			check_one_shot(&p, rc, data + start, size - start,
			    line_max, literal_max);
			if (p.fatal)
				break;
			start += p.consumed;
			imap_parser_reset(&p);
			CHECK(p.line_max == line_max && p.pos == 0);
			continue;
		}
		if (avail == size) {
			check_one_shot(&p, rc, data + start, size - start,
			    line_max, literal_max);
			break;
		}
		before = avail;
		avail = size - avail < chunk ? size : avail + chunk;
		UNPOISON(buf + before, avail - before);
	}
	UNPOISON(buf, size);
	free(buf);
	return 0;
}
