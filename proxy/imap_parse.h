/* IMAP parsing for the proxy: client commands before login (resumable,
 * pure: no I/O, no allocation) and back-end response lines. */
#ifndef IMAP_PARSE_H
#define IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define IMAP_TAG_MAX 64		/* longest accepted tag */
#define IMAP_ARGS_MAX 64	/* arguments of one command (ID lists included) */
#define IMAP_LIST_DEPTH_MAX 4	/* nesting of parenthesised lists */
/* Longest line of an ID command (RFC 2971: 30 field-value pairs, fields
 * of 30 octets and values of 1024, about 32 KiB as quoted strings, twice
 * that if every byte were escaped), whatever the configured line limit. */
#define IMAP_ID_LINE_MAX (64 * 1024)

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* also numbers and NIL-looking atoms other than NIL */
	IMAP_ARG_QUOTED,	/* "..."; may hold \" and \\ (see escaped) */
	IMAP_ARG_LITERAL,	/* {n}, {n+} or {n-} followed by n bytes */
	IMAP_ARG_NIL,
	IMAP_ARG_LIST_BEGIN,	/* "(" */
	IMAP_ARG_LIST_END,	/* ")" */
};

/* A slice of the caller's buffer: buf[off .. off+len). For QUOTED, the
 * bytes between the quotes, escapes not yet removed. */
struct imap_arg {
	enum imap_arg_type type;
	size_t off;
	size_t len;
	bool escaped;
};

struct imap_cmd {
	size_t tag_off, tag_len;
	size_t name_off, name_len;	/* command name, e.g. "login" */
	struct imap_arg args[IMAP_ARGS_MAX];
	size_t n_args;
};

enum imap_parse_rc {
	IMAP_PARSE_INVALID = -1,	/* see imap_parser.error, .fatal */
	IMAP_PARSE_AGAIN = 0,		/* call again when more input arrived */
	IMAP_PARSE_OK = 1,		/* .cmd holds a whole command */
	IMAP_PARSE_CONTINUE = 2,	/* send "+ ..." then call again with more */
};

struct imap_parser {
	/* Private parse state. */
	int state;
	size_t pos;		/* bytes of input examined so far */
	size_t line_start;	/* start of the current line (after a literal) */
	size_t literal_left;
	size_t literal_off;
	int depth;
	bool in_error;		/* a syntax error was seen; skipping the line */
	bool literal_sync;	/* the literal being read is "{n}", not "{n+}" */
	size_t line_max;
	size_t literal_max;
	size_t cmd_line_max;	/* line_max, or more for an ID command */

	/* Results. */
	struct imap_cmd cmd;
	const char *error;	/* after INVALID: a short reason for the client */
	bool fatal;		/* after INVALID: a limit was hit; end the session */
	bool have_tag;		/* after INVALID: cmd.tag_* is valid, reply with it */
	size_t consumed;	/* after OK or non-fatal INVALID: bytes to discard */
};

/* line_max bounds every line of a command, literal_max every literal. A
 * line runs from the start of the command or the end of a literal to the
 * next LF; line_max counts its bytes without the CRLF (or bare LF). An ID
 * command's lines may be as long as IMAP_ID_LINE_MAX if that is more. */
void imap_parser_init(struct imap_parser *p, size_t line_max,
    size_t literal_max);

/* Parses one command from buf[0..len): the caller's unconsumed input, the
 * same start on every call, growing between calls (the parser resumes and
 * does not re-read what it has examined). After OK or a non-fatal INVALID
 * the caller drains p->consumed bytes and calls imap_parser_reset.
 * The parser keeps offsets only, so the buffer may move between calls.
 * CONTINUE comes once per synchronising literal whose bytes are not all
 * in the buffer yet; for "{0}" when nothing follows the CRLF yet, since the
 * client waits for "+" before sending the rest of the line.
 * INVALID with fatal set means a limit was hit ("Line too long" as soon
 * as a line exceeds line_max, "Literal too big" as soon as the size in
 * "{n" exceeds literal_max); consumed is 0 then. A syntax error is reported
 * only once the LF ending the bad line has arrived, so consumed covers it.
 * Calling again after OK or INVALID, before the reset, repeats the result. */
enum imap_parse_rc imap_parse(struct imap_parser *p, const unsigned char *buf,
    size_t len);

/* Ready for the next command; keeps the limits. */
void imap_parser_reset(struct imap_parser *p);

/* Case-insensitive comparison of a slice with a NUL-terminated word. */
bool imap_slice_eq(const unsigned char *buf, size_t off, size_t len,
    const char *word);

/* Copies an ATOM, QUOTED (unescaped) or LITERAL argument into out as a
 * NUL-terminated string. Returns its length, or -1 if it holds a NUL byte,
 * does not fit, or is of another type. */
int imap_arg_copy(const unsigned char *buf, const struct imap_arg *arg,
    char *out, size_t outlen);

/* Writes s (len bytes) as an IMAP quoted string, quotes included, to out
 * and NUL-terminates it. Returns the length written (without the NUL), or
 * -1 if s cannot be quoted (CR, LF, NUL, 8-bit: use a literal) or out is
 * too small. */
int imap_quote(const char *s, size_t len, char *out, size_t outlen);

/* One response line from a server, CRLF excluded. */
enum imap_resp_status {
	IMAP_RESP_OK, IMAP_RESP_NO, IMAP_RESP_BAD, IMAP_RESP_PREAUTH,
	IMAP_RESP_BYE, IMAP_RESP_OTHER,	/* untagged data such as "* CAPABILITY" */
	IMAP_RESP_CONTINUE,		/* "+ ..." */
};

struct imap_resp {
	size_t tag_off, tag_len;	/* "*", "+" or the tag */
	enum imap_resp_status status;
	size_t code_off, code_len;	/* inside [ ], 0 length if none */
	size_t text_off, text_len;	/* after the code */
};

/* Splits a response line. For OK/NO/BAD/PREAUTH/BYE and "+", an optional
 * "[code]" (up to the first ']') is split from the text; for other lines
 * (OTHER) the text is everything after the tag, e.g. "CAPABILITY ..." or
 * "3 EXISTS". A trailing CR or LF is ignored. Returns 0, or -1 if the line
 * is empty, has no space after the tag (a lone "+" is accepted), or its
 * tag is neither "*" nor made of tag characters (no controls, no 8-bit). */
int imap_parse_response(const char *line, size_t len, struct imap_resp *r);

/* Whether a capability list (space-separated atoms, e.g. the code of
 * "[CAPABILITY IMAP4rev1 LITERAL+ SASL-IR]" or the text of a
 * "* CAPABILITY" line) holds the capability cap, case-insensitively and as
 * a whole word ("AUTH" does not match "AUTH=PLAIN"). A leading word
 * "CAPABILITY" is not itself a capability. */
bool imap_capability_has(const char *caps, size_t len, const char *cap);

#endif
