/* IMAP parsing for the proxy. The command parser is a state machine that
 * looks at each byte of the caller's buffer once and keeps offsets only,
 * so the caller may grow (and move) the buffer between calls. */
#include "imap_parse.h"

#include <limits.h>
#include <string.h>

#define CR '\r'
#define LF '\n'

enum imap_state {
	ST_TAG = 0,	/* reading the tag; must be 0, reset zeroes the state */
	ST_NAME,	/* reading the command name */
	ST_ARG,		/* after SP: an argument must start here */
	ST_LIST_FIRST,	/* after "(": an argument or ")" */
	ST_AFTER_ARG,	/* SP, ")" or the end of the line */
	ST_ATOM,
	ST_QUOTED,
	ST_QUOTED_ESC,	/* after a backslash inside a quoted string */
	ST_LIT_NUM,	/* "{" and digits */
	ST_LIT_CLOSE,	/* after "{n+" or "{n-": "}" */
	ST_LIT_EOL,	/* after "}": CR or LF */
	ST_LIT_LF,	/* after "}" CR: LF */
	ST_LITERAL,	/* the literal's bytes */
	ST_EOL_LF,	/* CR ending the command: LF */
	ST_SKIP,	/* bad line: discard through LF */
	ST_DONE,	/* result returned; waiting for imap_parser_reset */
};

static unsigned char
ascii_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* ATOM-CHAR of RFC 3501: printable ASCII except atom-specials. */
static bool
is_atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;	/* SP, CTL, 8-bit */
	return strchr("(){%*\"\\]", c) == NULL;
}

static bool
is_tag_char(unsigned char c)
{
	return c != '+' && (is_atom_char(c) || c == ']');
}

/* Unquoted arguments: ASTRING-CHAR plus the LIST wildcards, which clients
 * send unquoted in mailbox patterns. */
static bool
is_arg_atom_char(unsigned char c)
{
	return is_atom_char(c) || c == ']' || c == '%' || c == '*';
}

void
imap_parser_init(struct imap_parser *p, size_t line_max, size_t literal_max)
{
	memset(p, 0, sizeof(*p));
	p->state = ST_TAG;
	p->line_max = line_max;
	p->literal_max = literal_max;
	p->cmd_line_max = line_max;
}

void
imap_parser_reset(struct imap_parser *p)
{
	imap_parser_init(p, p->line_max, p->literal_max);
}

/* A syntax error: keep the first reason and discard the rest of the line.
 * The byte that caused it is looked at again in ST_SKIP, so that an LF
 * which is itself the bad byte still ends the line. */
static void
syntax_error(struct imap_parser *p, const char *why)
{
	if (p->error == NULL)
		p->error = why;
	p->in_error = true;
	p->state = ST_SKIP;
}

static void
fatal_error(struct imap_parser *p, const char *why)
{
	p->error = why;
	p->fatal = true;
	p->consumed = 0;
	p->state = ST_DONE;
}

/* Whether byte c (not LF) at pos makes the line longer than the limit. A
 * CR right after the limit's bytes may still be the start of the CRLF. */
static bool
line_too_long(const struct imap_parser *p, size_t pos, unsigned char c)
{
	size_t n = pos - p->line_start;

	return n > p->cmd_line_max || (n == p->cmd_line_max && c != CR);
}

static struct imap_arg *
add_arg(struct imap_parser *p, enum imap_arg_type type, size_t off,
    size_t len)
{
	struct imap_arg *a;

	if (p->cmd.n_args >= IMAP_ARGS_MAX) {
		syntax_error(p, "Too many arguments");
		return NULL;
	}
	a = &p->cmd.args[p->cmd.n_args++];
	a->type = type;
	a->off = off;
	a->len = len;
	a->escaped = false;
	return a;
}

static struct imap_arg *
cur_arg(struct imap_parser *p)
{
	return &p->cmd.args[p->cmd.n_args - 1];
}

/* Byte c at *pos must start an argument. */
static void
arg_start(struct imap_parser *p, size_t *pos, unsigned char c)
{
	if (c == '"') {
		if (add_arg(p, IMAP_ARG_QUOTED, *pos + 1, 0) == NULL)
			return;
		p->state = ST_QUOTED;
	} else if (c == '{') {
		if (add_arg(p, IMAP_ARG_LITERAL, 0, 0) == NULL)
			return;
		p->literal_left = 0;	/* the size, while reading digits */
		p->literal_off = *pos;	/* the "{", to see if digits follow */
		p->state = ST_LIT_NUM;
	} else if (c == '(') {
		if (p->depth >= IMAP_LIST_DEPTH_MAX) {
			syntax_error(p, "Lists nested too deeply");
			return;
		}
		if (add_arg(p, IMAP_ARG_LIST_BEGIN, *pos, 1) == NULL)
			return;
		p->depth++;
		p->state = ST_LIST_FIRST;
	} else if (is_arg_atom_char(c)) {
		if (add_arg(p, IMAP_ARG_ATOM, *pos, 0) == NULL)
			return;
		p->state = ST_ATOM;
	} else {
		syntax_error(p, "Missing argument");
		return;
	}
	(*pos)++;
}

static void
list_end(struct imap_parser *p, size_t *pos)
{
	if (p->depth == 0) {
		syntax_error(p, "Unbalanced parentheses");
		return;
	}
	if (add_arg(p, IMAP_ARG_LIST_END, *pos, 1) == NULL)
		return;
	p->depth--;
	p->state = ST_AFTER_ARG;
	(*pos)++;
}

/* Adds one decimal digit to the literal size, refusing anything above
 * literal_max before it can overflow. */
static int
literal_digit(struct imap_parser *p, unsigned char c)
{
	size_t d = (size_t)(c - '0');

	if (p->literal_left > p->literal_max / 10)
		return -1;
	p->literal_left *= 10;
	if (d > p->literal_max - p->literal_left)
		return -1;
	p->literal_left += d;
	return 0;
}

/* The LF ending a literal's header is at pos: the literal starts after it.
 * Returns true if the client must be sent "+" first. */
static bool
literal_begin(struct imap_parser *p, size_t *pos, size_t len)
{
	struct imap_arg *a = cur_arg(p);

	(*pos)++;
	a->off = *pos;
	a->len = p->literal_left;
	p->literal_off = *pos;
	p->state = ST_LITERAL;
	if (!p->literal_sync)
		return false;
	/* A client that did not wait has sent the bytes already. For "{0}"
	 * the client waits before sending the rest of the line. */
	if (len - *pos < p->literal_left)
		return true;
	return p->literal_left == 0 && len == *pos;
}

enum imap_parse_rc
imap_parse(struct imap_parser *p, const unsigned char *buf, size_t len)
{
	enum imap_parse_rc rc = IMAP_PARSE_AGAIN;
	size_t pos = p->pos;
	unsigned char c;

	if (p->state == ST_DONE)
		return p->error == NULL ? IMAP_PARSE_OK : IMAP_PARSE_INVALID;
	if (len < pos) {
		/* The caller dropped input the parser had examined. */
		fatal_error(p, "Internal error");
		rc = IMAP_PARSE_INVALID;
		goto done;
	}

	for (;;) {
		if (p->state == ST_LITERAL) {
			size_t n = len - pos;

			if (n > p->literal_left)
				n = p->literal_left;
			if (n > 0 && memchr(buf + pos, '\0', n) != NULL &&
			    !p->in_error) {
				/* Read the literal to its end, then skip. */
				p->error = "NUL byte in literal";
				p->in_error = true;
			}
			pos += n;
			p->literal_left -= n;
			if (p->literal_left > 0)
				break;
			p->line_start = pos;
			p->state = p->in_error ? ST_SKIP : ST_AFTER_ARG;
			continue;
		}
		if (pos >= len)
			break;
		c = buf[pos];
		if (c != LF && line_too_long(p, pos, c)) {
			fatal_error(p, "Line too long");
			rc = IMAP_PARSE_INVALID;
			goto done;
		}
		if (c == '\0' && p->state != ST_SKIP) {
			syntax_error(p, "NUL byte in command");
			continue;
		}

		switch (p->state) {
		case ST_TAG:
			if (is_tag_char(c)) {
				if (pos >= IMAP_TAG_MAX) {
					syntax_error(p, "Tag too long");
					break;
				}
				pos++;
				break;
			}
			if (pos == 0) {
				syntax_error(p, c == CR || c == LF ?
				    "Empty command line" : "Invalid tag");
				break;
			}
			if (c != ' ' && c != CR && c != LF) {
				syntax_error(p, "Invalid tag");
				break;
			}
			p->cmd.tag_off = 0;
			p->cmd.tag_len = pos;
			p->have_tag = true;
			if (c != ' ') {
				syntax_error(p, "Missing command name");
				break;
			}
			pos++;
			p->cmd.name_off = pos;
			p->state = ST_NAME;
			break;

		case ST_NAME:
			if (is_atom_char(c)) {
				pos++;
				break;
			}
			if (c != ' ' && c != CR && c != LF) {
				syntax_error(p, "Invalid command name");
				break;
			}
			if (pos == p->cmd.name_off) {
				syntax_error(p, "Missing command name");
				break;
			}
			p->cmd.name_len = pos - p->cmd.name_off;
			if (imap_slice_eq(buf, p->cmd.name_off,
			    p->cmd.name_len, "ID") &&
			    p->cmd_line_max < IMAP_ID_LINE_MAX)
				p->cmd_line_max = IMAP_ID_LINE_MAX;
			if (c == ' ') {
				p->state = ST_ARG;
				pos++;
			} else if (c == CR) {
				p->state = ST_EOL_LF;
				pos++;
			} else {
				goto line_done;
			}
			break;

		case ST_LIST_FIRST:
			if (c == ')')
				list_end(p, &pos);
			else
				arg_start(p, &pos, c);
			break;

		case ST_ARG:
			arg_start(p, &pos, c);
			break;

		case ST_AFTER_ARG:
			if (c == ' ') {
				p->state = ST_ARG;
				pos++;
			} else if (c == ')') {
				list_end(p, &pos);
			} else if (c != CR && c != LF) {
				syntax_error(p, "Missing space after argument");
			} else if (p->depth > 0) {
				syntax_error(p, "Unbalanced parentheses");
			} else if (c == CR) {
				p->state = ST_EOL_LF;
				pos++;
			} else {
				goto line_done;
			}
			break;

		case ST_ATOM:
			if (is_arg_atom_char(c)) {
				pos++;
				break;
			}
			if (c != ' ' && c != ')' && c != CR && c != LF) {
				syntax_error(p, "Invalid character in atom");
				break;
			}
			{
				struct imap_arg *a = cur_arg(p);

				a->len = pos - a->off;
				if (imap_slice_eq(buf, a->off, a->len, "NIL"))
					a->type = IMAP_ARG_NIL;
			}
			/* The delimiter is looked at in ST_AFTER_ARG. */
			p->state = ST_AFTER_ARG;
			break;

		case ST_QUOTED:
			if (c == '"') {
				struct imap_arg *a = cur_arg(p);

				a->len = pos - a->off;
				p->state = ST_AFTER_ARG;
				pos++;
			} else if (c == '\\') {
				cur_arg(p)->escaped = true;
				p->state = ST_QUOTED_ESC;
				pos++;
			} else if (c == CR || c == LF) {
				syntax_error(p, "Unterminated quoted string");
			} else {
				pos++;
			}
			break;

		case ST_QUOTED_ESC:
			if (c != '"' && c != '\\') {
				syntax_error(p, "Invalid escape in quoted string");
				break;
			}
			p->state = ST_QUOTED;
			pos++;
			break;

		case ST_LIT_NUM:
			if (c >= '0' && c <= '9') {
				if (literal_digit(p, c) != 0) {
					fatal_error(p, "Literal too big");
					rc = IMAP_PARSE_INVALID;
					goto done;
				}
				pos++;
				break;
			}
			if (pos == p->literal_off + 1 ||
			    (c != '+' && c != '-' && c != '}')) {
				syntax_error(p, "Invalid literal");
				break;
			}
			p->literal_sync = c == '}';
			p->state = c == '}' ? ST_LIT_EOL : ST_LIT_CLOSE;
			pos++;
			break;

		case ST_LIT_CLOSE:
			if (c != '}') {
				syntax_error(p, "Invalid literal");
				break;
			}
			p->state = ST_LIT_EOL;
			pos++;
			break;

		case ST_LIT_EOL:
		case ST_LIT_LF:
			if (c == CR && p->state == ST_LIT_EOL) {
				p->state = ST_LIT_LF;
				pos++;
				break;
			}
			if (c != LF) {
				syntax_error(p, "Invalid literal");
				break;
			}
			if (literal_begin(p, &pos, len)) {
				rc = IMAP_PARSE_CONTINUE;
				goto done;
			}
			break;

		case ST_EOL_LF:
			if (c != LF) {
				syntax_error(p, "Bare CR in command");
				break;
			}
			goto line_done;

		case ST_SKIP:
			if (c != LF) {
				pos++;
				break;
			}
			goto line_done;

		default:
			fatal_error(p, "Internal error");
			rc = IMAP_PARSE_INVALID;
			goto done;
		}
	}
	goto done;

line_done:
	/* buf[pos] is the LF ending the command. */
	pos++;
	p->consumed = pos;
	p->state = ST_DONE;
	rc = p->in_error ? IMAP_PARSE_INVALID : IMAP_PARSE_OK;
done:
	p->pos = pos;
	return rc;
}

bool
imap_slice_eq(const unsigned char *buf, size_t off, size_t len,
    const char *word)
{
	size_t i;

	if (strlen(word) != len)
		return false;
	for (i = 0; i < len; i++) {
		if (ascii_lower(buf[off + i]) !=
		    ascii_lower((unsigned char)word[i]))
			return false;
	}
	return true;
}

int
imap_arg_copy(const unsigned char *buf, const struct imap_arg *arg,
    char *out, size_t outlen)
{
	const unsigned char *s = buf + arg->off;
	size_t i, n = 0;
	int rc = -1;

	if (outlen == 0 || arg->len > INT_MAX)
		goto done;
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_QUOTED &&
	    arg->type != IMAP_ARG_LITERAL)
		goto done;
	for (i = 0; i < arg->len; i++) {
		unsigned char c = s[i];

		if (c == '\\' && arg->type == IMAP_ARG_QUOTED && arg->escaped) {
			if (++i == arg->len)
				goto done;
			c = s[i];
		}
		/* A NUL would silently cut the string short for the caller. */
		if (c == '\0' || n + 1 >= outlen)
			goto done;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	rc = (int)n;
done:
	if (rc < 0 && outlen > 0)
		out[0] = '\0';
	return rc;
}

int
imap_quote(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i, n, need = 2;	/* the quotes */
	int rc = -1;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0' || c == CR || c == LF || c >= 0x80)
			goto done;
		need += c == '"' || c == '\\' ? 2 : 1;
	}
	if (need >= outlen || need > INT_MAX)
		goto done;
	n = 0;
	out[n++] = '"';
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			out[n++] = '\\';
		out[n++] = s[i];
	}
	out[n++] = '"';
	out[n] = '\0';
	rc = (int)n;
done:
	return rc;
}

static const struct {
	const char *word;
	enum imap_resp_status status;
} resp_words[] = {
	{ "OK", IMAP_RESP_OK },
	{ "NO", IMAP_RESP_NO },
	{ "BAD", IMAP_RESP_BAD },
	{ "PREAUTH", IMAP_RESP_PREAUTH },
	{ "BYE", IMAP_RESP_BYE },
};

/* Splits line[off..len) into an optional "[code]" and the text. */
static void
resp_code_text(const char *line, size_t off, size_t len, struct imap_resp *r)
{
	const char *end;

	r->code_off = off;
	r->code_len = 0;
	if (off < len && line[off] == '[' &&
	    (end = memchr(line + off + 1, ']', len - off - 1)) != NULL) {
		r->code_off = off + 1;
		r->code_len = (size_t)(end - line) - r->code_off;
		off = (size_t)(end - line) + 1;
		if (off < len && line[off] == ' ')
			off++;
	}
	r->text_off = off;
	r->text_len = len - off;
}

int
imap_parse_response(const char *line, size_t len, struct imap_resp *r)
{
	const char *sp;
	size_t word_off, word_len, i;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	while (len > 0 && (line[len - 1] == LF || line[len - 1] == CR))
		len--;
	if (len == 0 || line[0] == ' ')
		goto done;
	r->tag_off = 0;
	sp = memchr(line, ' ', len);
	r->tag_len = sp != NULL ? (size_t)(sp - line) : len;
	if (r->tag_len == 1 && line[0] == '+') {
		r->status = IMAP_RESP_CONTINUE;
		resp_code_text(line, sp != NULL ? 2 : 1, len, r);
		rc = 0;
		goto done;
	}
	if (sp == NULL)
		goto done;
	/* "*" or a tag a client could have sent: anything else is garbage,
	 * not a response to take apart. */
	if (!(r->tag_len == 1 && line[0] == '*')) {
		for (i = 0; i < r->tag_len; i++)
			if (!is_tag_char((unsigned char)line[i]))
				goto done;
	}

	word_off = r->tag_len + 1;
	sp = memchr(line + word_off, ' ', len - word_off);
	word_len = (sp != NULL ? (size_t)(sp - line) : len) - word_off;
	r->status = IMAP_RESP_OTHER;
	for (i = 0; i < sizeof(resp_words) / sizeof(resp_words[0]); i++) {
		if (imap_slice_eq((const unsigned char *)line, word_off,
		    word_len, resp_words[i].word)) {
			r->status = resp_words[i].status;
			break;
		}
	}
	if (r->status == IMAP_RESP_OTHER) {
		/* Untagged data: the caller reads it as a whole. */
		r->code_off = word_off;
		r->text_off = word_off;
		r->text_len = len - word_off;
	} else {
		resp_code_text(line, sp != NULL ? word_off + word_len + 1 :
		    len, len, r);
	}
	rc = 0;
done:
	return rc;
}

bool
imap_capability_has(const char *caps, size_t len, const char *cap)
{
	const unsigned char *u = (const unsigned char *)caps;
	size_t i = 0, start;
	bool first = true;

	if (cap[0] == '\0')
		return false;
	while (i < len) {
		if (caps[i] == ' ') {
			i++;
			continue;
		}
		start = i;
		while (i < len && caps[i] != ' ')
			i++;
		if (first && imap_slice_eq(u, start, i - start, "CAPABILITY")) {
			first = false;
			continue;
		}
		first = false;
		if (imap_slice_eq(u, start, i - start, cap))
			return true;
	}
	return false;
}
