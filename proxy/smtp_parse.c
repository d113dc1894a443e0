/* SMTP command lines (RFC 5321 4.1, RFC 1870, RFC 6152), server reply
 * lines and the DATA end scanner. Pure: no I/O, no allocation; slices of
 * the caller's buffer out. */
#include "smtp_parse.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum arg_rule {
	ARG_NONE,	/* no argument at all */
	ARG_ANY,	/* anything but control characters, may be empty */
	ARG_TEXT,	/* printable ASCII, not empty */
	ARG_MAIL,
	ARG_RCPT,
	ARG_BDAT,
};

static const struct {
	const char *name;	/* upper case */
	enum smtp_verb verb;
	enum arg_rule rule;
	const char *syntax;	/* reply for a bad argument */
} verbs[] = {
	{ "EHLO", SMTP_EHLO, ARG_TEXT, "501 5.5.4 Syntax: EHLO hostname" },
	{ "HELO", SMTP_HELO, ARG_TEXT, "501 5.5.4 Syntax: HELO hostname" },
	{ "MAIL", SMTP_MAIL, ARG_MAIL,
	    "501 5.5.4 Syntax: MAIL FROM:<address>" },
	{ "RCPT", SMTP_RCPT, ARG_RCPT, "501 5.5.4 Syntax: RCPT TO:<address>" },
	{ "DATA", SMTP_DATA, ARG_NONE, "501 5.5.4 Syntax: DATA" },
	{ "RSET", SMTP_RSET, ARG_NONE, "501 5.5.4 Syntax: RSET" },
	{ "NOOP", SMTP_NOOP, ARG_ANY, "501 5.5.4 Syntax: NOOP" },
	{ "QUIT", SMTP_QUIT, ARG_NONE, "501 5.5.4 Syntax: QUIT" },
	{ "STARTTLS", SMTP_STARTTLS, ARG_NONE, "501 5.5.4 Syntax: STARTTLS" },
	{ "VRFY", SMTP_VRFY, ARG_ANY, "501 5.5.4 Syntax: VRFY address" },
	{ "HELP", SMTP_HELP, ARG_ANY, "501 5.5.4 Syntax: HELP" },
	{ "BDAT", SMTP_BDAT, ARG_BDAT,
	    "501 5.5.4 Syntax: BDAT chunk-size [LAST]" },
	{ "AUTH", SMTP_AUTH, ARG_TEXT,
	    "501 5.5.4 Syntax: AUTH mechanism [initial-response]" },
	{ "XCLIENT", SMTP_XCLIENT, ARG_TEXT,
	    "501 5.5.4 Syntax: XCLIENT attribute=value ..." },
};

#define WHY_UNKNOWN "500 5.5.2 Command not recognised"
#define WHY_BAD_CHAR "501 5.5.4 Invalid character in command"
#define WHY_BAD_SENDER "501 5.1.7 Bad sender address syntax"
#define WHY_BAD_RCPT "501 5.1.3 Bad recipient address syntax"
#define WHY_BAD_PARAM "501 5.5.4 Bad parameter syntax"
#define WHY_BAD_SIZE "501 5.5.4 Bad SIZE parameter"
#define WHY_BAD_BODY "501 5.5.4 Bad BODY parameter"
#define WHY_UNSUP_PARAM "555 5.5.4 Unsupported parameter"
#define WHY_UNSUP_BODY "555 5.5.4 Unsupported BODY type"
#define WHY_DUP_PARAM "555 5.5.4 Duplicate parameter"

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
is_ldh(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-';
}

/* RFC 5322 3.2.3 atext */
static bool
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static unsigned char
to_upper(unsigned char c)
{
	return (c >= 'a' && c <= 'z') ? (unsigned char)(c - ('a' - 'A')) : c;
}

/* Case-insensitive: is s[0..n) exactly the upper-case word? */
static bool
eq_ci(const unsigned char *s, size_t n, const char *word)
{
	size_t i;

	if (strlen(word) != n)
		return false;
	for (i = 0; i < n; i++)
		if (to_upper(s[i]) != (unsigned char)word[i])
			return false;
	return true;
}

static bool
prefix_ci(const unsigned char *s, size_t n, const char *word)
{
	size_t wn = strlen(word);

	return n >= wn && eq_ci(s, wn, word);
}

/* 1-20 digits that fit in 64 bits. */
static bool
parse_number(const unsigned char *s, size_t n, uint64_t *value_r)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > SMTP_NUMBER_DIGITS_MAX)
		return false;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (!is_digit(s[i]) || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}

/*
 * Length of the domain at the start of s (RFC 5321 4.1.2 Domain: labels
 * of letters, digits and inner hyphens), or 0 if none. The caller checks
 * that the domain is followed by what it expects, so "a.b_" gives 3 and
 * fails there.
 */
static size_t
domain_len(const unsigned char *s, size_t n)
{
	size_t i = 0;

	for (;;) {
		size_t start = i;

		while (i < n && is_ldh(s[i]))
			i++;
		if (i == start || i - start > SMTP_LABEL_MAX ||
		    s[start] == '-' || s[i - 1] == '-')
			return 0;
		if (i == n || s[i] != '.')
			return i;
		i++;
	}
}

/* Dotted quad, each part 1-3 digits up to 255 (RFC 5321 Snum). */
static bool
ipv4_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;
	int part;

	for (part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		if (part > 0) {
			if (i == n || s[i] != '.')
				return false;
			start = ++i;
		}
		while (i < n && is_digit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255)
			return false;
	}
	return i == n;
}

/*
 * RFC 4291 2.2 text forms: up to eight hex groups, one "::" standing for
 * at least one zero group, optionally a dotted quad as the last two.
 */
static bool
ipv6_ok(const unsigned char *s, size_t n)
{
	size_t i = 0, groups = 0;
	bool compressed = false;

	if (n >= 2 && s[0] == ':' && s[1] == ':') {
		compressed = true;
		i = 2;
	} else if (n == 0 || s[0] == ':') {
		return false;
	}
	while (i < n) {
		size_t start = i;

		while (i < n && is_hex(s[i]) && i - start < 4)
			i++;
		if (i < n && s[i] == '.') {
			if (!ipv4_ok(s + start, n - start))
				return false;
			groups += 2;
			break;
		}
		if (i == start)
			return false;
		groups++;
		if (i == n)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < n && s[i] == ':') {
			if (compressed)
				return false;
			compressed = true;
			i++;
		} else if (i == n) {
			return false;	/* a single trailing colon */
		}
	}
	return compressed ? groups <= 7 : groups == 8;
}

/* "[...]" at the start of s: its length, or 0 if not a literal we know. */
static size_t
address_literal_len(const unsigned char *s, size_t n)
{
	const unsigned char *close;
	size_t inner;

	if (n < 2 || s[0] != '[')
		return 0;
	close = memchr(s + 1, ']', n - 1);
	if (close == NULL)
		return 0;
	inner = (size_t)(close - (s + 1));
	if (prefix_ci(s + 1, inner, "IPV6:")) {
		if (!ipv6_ok(s + 6, inner - 5))
			return 0;
	} else if (!ipv4_ok(s + 1, inner)) {
		return 0;	/* general literals name no network we reach */
	}
	return inner + 2;
}

/* Local part at the start of s: dot-string or quoted-string. Its length,
 * or 0 if none. */
static size_t
local_part_len(const unsigned char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '"') {
		for (i = 1; i < n; i++) {
			unsigned char c = s[i];

			if (c == '"')
				return i + 1;
			if (c == '\\') {
				if (++i == n || s[i] < 32 || s[i] > 126)
					return 0;
			} else if (c < 32 || c > 126) {
				return 0;
			}
		}
		return 0;
	}
	for (;;) {
		size_t start = i;

		while (i < n && is_atext(s[i]))
			i++;
		if (i == start)
			return 0;
		if (i == n || s[i] != '.')
			return i;
		i++;
	}
}

/*
 * The path after "<": its mailbox as a slice of s and the bytes used up
 * to and including ">", or 0 if it is not a valid path. Spaces count
 * only inside a quoted local part, where RFC 5321 allows them.
 */
static size_t
path_len(const unsigned char *s, size_t n, bool rcpt,
    const unsigned char **mbox_r, size_t *mbox_len_r)
{
	size_t i = 0, start, local, domain;

	*mbox_r = s;
	*mbox_len_r = 0;
	/* Reading no further than one byte past the limit, where the ">"
	 * may be, enforces it and bounds the work. */
	if (n > SMTP_PATH_MAX + 1)
		n = SMTP_PATH_MAX + 1;

	if (n > 0 && s[0] == '>')
		return rcpt ? 0 : 1;
	if (rcpt && n >= 11 && eq_ci(s, 10, "POSTMASTER") && s[10] == '>') {
		*mbox_len_r = 10;
		return 11;
	}

	/* An obsolete source route is accepted and dropped (RFC 5321 C). */
	if (n > 0 && s[0] == '@') {
		for (;;) {
			size_t d;

			if (i == n || s[i] != '@')
				return 0;
			i++;
			d = domain_len(s + i, n - i);
			if (d == 0 || d > SMTP_DOMAIN_MAX)
				return 0;
			i += d;
			if (i < n && s[i] == ',') {
				i++;
				continue;
			}
			if (i < n && s[i] == ':') {
				i++;
				break;
			}
			return 0;
		}
	}

	start = i;
	local = local_part_len(s + i, n - i);
	if (local == 0 || local > SMTP_LOCAL_MAX)
		return 0;
	i += local;
	if (i == n || s[i] != '@')
		return 0;
	i++;
	if (i < n && s[i] == '[')
		domain = address_literal_len(s + i, n - i);
	else
		domain = domain_len(s + i, n - i);
	if (domain == 0 || domain > SMTP_DOMAIN_MAX)
		return 0;
	i += domain;
	if (i == n || s[i] != '>')
		return 0;
	*mbox_r = s + start;
	*mbox_len_r = i - start;
	return i + 1;
}

/* Splits off the next space-separated word of s[*pos..n). */
static bool
next_word(const unsigned char *s, size_t n, size_t *pos,
    const unsigned char **word_r, size_t *word_len_r)
{
	size_t i = *pos;

	while (i < n && s[i] == ' ')
		i++;
	if (i == n)
		return false;
	*word_r = s + i;
	while (i < n && s[i] != ' ')
		i++;
	*word_len_r = (size_t)(s + i - *word_r);
	*pos = i;
	return true;
}

/* RFC 5321 4.1.2 esmtp-param: keyword ["=" value]. */
static bool
split_param(const unsigned char *p, size_t n, size_t *key_len_r,
    const unsigned char **value_r, size_t *value_len_r)
{
	size_t i;

	if (n == 0 || !(is_alpha(p[0]) || is_digit(p[0])))
		return false;
	for (i = 1; i < n && p[i] != '='; i++)
		if (!is_ldh(p[i]))
			return false;
	*key_len_r = i;
	*value_r = NULL;
	*value_len_r = 0;
	if (i == n)
		return true;
	*value_r = p + i + 1;
	*value_len_r = n - i - 1;
	if (*value_len_r == 0)
		return false;
	for (i = 0; i < *value_len_r; i++) {
		unsigned char c = (*value_r)[i];

		if (c < 33 || c > 126 || c == '=')
			return false;
	}
	return true;
}

static enum smtp_parse_result
parse_mail_params(const unsigned char *s, size_t n, struct smtp_cmd *cmd,
    const char **why_r)
{
	const unsigned char *p, *value;
	size_t pos = 0, plen, klen, vlen;
	bool seen_body = false;

	while (next_word(s, n, &pos, &p, &plen)) {
		if (!split_param(p, plen, &klen, &value, &vlen)) {
			*why_r = WHY_BAD_PARAM;
			return SMTP_PARSE_SYNTAX;
		}
		if (eq_ci(p, klen, "SIZE")) {
			if (cmd->has_size) {
				*why_r = WHY_DUP_PARAM;
				return SMTP_PARSE_PARAM;
			}
			if (!parse_number(value, vlen, &cmd->size)) {
				*why_r = WHY_BAD_SIZE;
				return SMTP_PARSE_SYNTAX;
			}
			cmd->has_size = true;
		} else if (eq_ci(p, klen, "BODY")) {
			if (seen_body) {
				*why_r = WHY_DUP_PARAM;
				return SMTP_PARSE_PARAM;
			}
			seen_body = true;
			if (value == NULL) {
				*why_r = WHY_BAD_BODY;
				return SMTP_PARSE_SYNTAX;
			}
			if (eq_ci(value, vlen, "7BIT")) {
				cmd->body = SMTP_BODY_7BIT;
			} else if (eq_ci(value, vlen, "8BITMIME")) {
				cmd->body = SMTP_BODY_8BITMIME;
			} else {
				*why_r = WHY_UNSUP_BODY;
				return SMTP_PARSE_PARAM;
			}
		} else {
			*why_r = WHY_UNSUP_PARAM;
			return SMTP_PARSE_PARAM;
		}
	}
	return SMTP_PARSE_OK;
}

/* MAIL FROM:<path> [params] and RCPT TO:<path> [params]. Clients often
 * put spaces after the colon, so those are skipped. */
static enum smtp_parse_result
parse_path_command(const unsigned char *s, size_t n, bool rcpt,
    const char *syntax, struct smtp_cmd *cmd, const char **why_r)
{
	const char *prefix = rcpt ? "TO:" : "FROM:";
	const unsigned char *mbox;
	size_t i, used, mbox_len;

	if (!prefix_ci(s, n, prefix)) {
		*why_r = syntax;
		return SMTP_PARSE_SYNTAX;
	}
	i = strlen(prefix);
	while (i < n && s[i] == ' ')
		i++;
	if (i == n || s[i] != '<') {
		*why_r = syntax;
		return SMTP_PARSE_SYNTAX;
	}
	i++;
	used = path_len(s + i, n - i, rcpt, &mbox, &mbox_len);
	if (used == 0) {
		*why_r = rcpt ? WHY_BAD_RCPT : WHY_BAD_SENDER;
		return SMTP_PARSE_SYNTAX;
	}
	cmd->path = (const char *)mbox;
	cmd->path_len = mbox_len;
	i += used;
	if (i == n)
		return SMTP_PARSE_OK;
	if (s[i] != ' ') {
		*why_r = syntax;
		return SMTP_PARSE_SYNTAX;
	}
	while (i < n && s[i] == ' ')
		i++;
	cmd->params = (const char *)s + i;
	cmd->params_len = n - i;
	if (rcpt) {
		*why_r = WHY_UNSUP_PARAM;
		return SMTP_PARSE_PARAM;
	}
	return parse_mail_params(s + i, n - i, cmd, why_r);
}

/* BDAT chunk-size [LAST] (RFC 3030 2). */
static bool
parse_bdat(const unsigned char *s, size_t n, struct smtp_cmd *cmd)
{
	const unsigned char *w;
	size_t pos = 0, wlen;

	if (!next_word(s, n, &pos, &w, &wlen) ||
	    !parse_number(w, wlen, &cmd->size))
		return false;
	cmd->has_size = true;
	if (!next_word(s, n, &pos, &w, &wlen))
		return true;
	if (!eq_ci(w, wlen, "LAST") || next_word(s, n, &pos, &w, &wlen))
		return false;
	cmd->last = true;
	return true;
}

enum smtp_parse_result
smtp_parse_command(const char *line, size_t len, struct smtp_cmd *cmd_r,
    const char **why_r)
{
	const unsigned char *s = (const unsigned char *)line;
	const unsigned char *sp;
	size_t vlen, i, v;
	enum arg_rule rule;
	const char *syntax;

	memset(cmd_r, 0, sizeof(*cmd_r));
	cmd_r->verb = SMTP_UNKNOWN;
	cmd_r->arg = line;
	cmd_r->path = line;
	cmd_r->params = line;
	*why_r = NULL;

	sp = len > 0 ? memchr(s, ' ', len) : NULL;
	vlen = sp != NULL ? (size_t)(sp - s) : len;
	i = vlen;
	while (i < len && s[i] == ' ')
		i++;
	while (len > i && s[len - 1] == ' ')
		len--;
	cmd_r->arg = line + i;
	cmd_r->arg_len = len - i;

	for (v = 0; v < sizeof(verbs) / sizeof(verbs[0]); v++)
		if (eq_ci(s, vlen, verbs[v].name))
			break;
	if (v == sizeof(verbs) / sizeof(verbs[0])) {
		*why_r = WHY_UNKNOWN;
		return SMTP_PARSE_UNKNOWN;
	}
	cmd_r->verb = verbs[v].verb;
	rule = verbs[v].rule;
	syntax = verbs[v].syntax;
	s = (const unsigned char *)cmd_r->arg;
	len = cmd_r->arg_len;

	switch (rule) {
	case ARG_NONE:
		if (len > 0)
			break;
		return SMTP_PARSE_OK;
	case ARG_ANY:
		/* The line may be logged or relayed: a control character
		 * there could end or split it at the other side. */
		for (i = 0; i < len; i++) {
			if ((s[i] < 32 && s[i] != '\t') || s[i] == 127) {
				*why_r = WHY_BAD_CHAR;
				return SMTP_PARSE_SYNTAX;
			}
		}
		return SMTP_PARSE_OK;
	case ARG_TEXT:
		if (len == 0)
			break;
		for (i = 0; i < len; i++)
			if (s[i] < 32 || s[i] > 126)
				break;
		if (i < len)
			break;
		return SMTP_PARSE_OK;
	case ARG_MAIL:
	case ARG_RCPT:
		return parse_path_command(s, len, rule == ARG_RCPT, syntax,
		    cmd_r, why_r);
	case ARG_BDAT:
		if (!parse_bdat(s, len, cmd_r))
			break;
		return SMTP_PARSE_OK;
	}
	*why_r = syntax;
	return SMTP_PARSE_SYNTAX;
}

int
smtp_reply_parse(const char *line, size_t len, unsigned *code_r,
    bool *last_r, const char **text_r, size_t *text_len_r)
{
	const unsigned char *s = (const unsigned char *)line;
	size_t i;

	if (line == NULL || len < 3 || s[0] < '2' || s[0] > '5' ||
	    !is_digit(s[1]) || !is_digit(s[2]))
		return -1;
	if (len > 3 && s[3] != ' ' && s[3] != '-')
		return -1;
	/* Relayed to the client: an embedded line end would forge a reply. */
	for (i = 4; i < len; i++)
		if (s[i] == '\0' || s[i] == '\r' || s[i] == '\n')
			return -1;
	*code_r = (unsigned)(s[0] - '0') * 100 + (unsigned)(s[1] - '0') * 10 +
	    (unsigned)(s[2] - '0');
	*last_r = len == 3 || s[3] == ' ';
	*text_r = line + (len > 3 ? 4 : 3);
	*text_len_r = len > 3 ? len - 4 : 0;
	return 0;
}

/*
 * DATA states. Only a CRLF starts a line that can end the message: after a
 * bare LF the scanner stays mid-line, so "\n.\r\n" is message text here
 * as it must be at every back end the stream reaches.
 */
enum {
	DATA_LINE_START,	/* after CRLF, or the first byte */
	DATA_MID,		/* inside a line */
	DATA_CR,		/* a CR inside a line */
	DATA_DOT,		/* "." at a line start */
	DATA_DOT_CR,		/* ".\r" at a line start */
	DATA_DONE,
};

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Any zero byte in w (exact as a yes/no answer). */
static inline bool
word_has_zero(uint64_t w)
{
	return ((w - ONES) & ~w & HIGHS) != 0;
}

static inline bool
is_special(unsigned char c)
{
	return c == '\r' || c == '\n' || c == '\0';
}

/* First CR, LF or NUL in [p, end), or end: sixteen (SSE2) or eight bytes
 * at a time, since nearly all of a message is plain line text. */
static inline const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *end)
{
#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	const __m128i nul = _mm_setzero_si128();

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		int m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(
		    _mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)),
		    _mm_cmpeq_epi8(v, nul)));

		if (m != 0)
			return p + __builtin_ctz((unsigned)m);
		p += 16;
	}
#endif
	for (;;) {
		while (end - p >= 8) {
			uint64_t w;

			memcpy(&w, p, sizeof(w));
			if (word_has_zero(w) || word_has_zero(w ^ (ONES * '\r')) ||
			    word_has_zero(w ^ (ONES * '\n')))
				break;
			p += 8;
		}
		if (p == end || is_special(*p))
			return p;
		p++;
	}
}

void
smtp_data_init(struct smtp_data *d)
{
	d->state = DATA_LINE_START;
	d->bytes = 0;
	d->flags = 0;
}

size_t
smtp_data_scan(struct smtp_data *d, const unsigned char *buf, size_t len,
    bool *done_r)
{
	const unsigned char *p = buf, *end = buf + len;
	int st = d->state;
	unsigned flags = d->flags;
	size_t used;

	*done_r = false;
	if (st == DATA_DONE) {
		*done_r = true;
		return 0;
	}
	while (p < end) {
		unsigned char c;

		if (st == DATA_MID) {
			p = skip_plain(p, end);
			if (p == end)
				break;
		}
		c = *p++;
		switch (st) {
		case DATA_LINE_START:
			if (c == '.') {
				st = DATA_DOT;
				continue;
			}
			break;
		case DATA_MID:
			break;
		case DATA_CR:
			if (c == '\n') {
				st = DATA_LINE_START;
				continue;
			}
			flags |= SMTP_DATA_BARE_CR;
			break;
		case DATA_DOT:
			if (c == '\r') {
				st = DATA_DOT_CR;
				continue;
			}
			break;
		case DATA_DOT_CR:
			if (c == '\n') {
				st = DATA_DONE;
				goto done;
			}
			flags |= SMTP_DATA_BARE_CR;
			break;
		}
		/* c as any byte inside a line */
		if (c == '\r') {
			st = DATA_CR;
		} else {
			if (c == '\n')
				flags |= SMTP_DATA_BARE_LF;
			else if (c == '\0')
				flags |= SMTP_DATA_NUL;
			st = DATA_MID;
		}
	}
done:
	used = (size_t)(p - buf);
	d->state = st;
	d->flags = flags;
	d->bytes += used;
	if (st == DATA_DONE) {
		d->bytes -= 3;	/* the ".\r\n" line itself */
		*done_r = true;
	}
	return used;
}
