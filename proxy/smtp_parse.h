/* SMTP parsing for the proxy's server side: client command lines, back-end
 * reply lines and the end of the DATA stream (RFC 5321, RFC 1870 SIZE,
 * RFC 6152 8BITMIME). Pure: no I/O, no allocation. */
#ifndef SMTP_PARSE_H
#define SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_PATH_MAX 256	/* RFC 5321 4.5.3.1.3, without the <> */
#define SMTP_DOMAIN_MAX 255	/* RFC 5321 4.5.3.1.2 */
#define SMTP_LOCAL_MAX 64	/* RFC 5321 4.5.3.1.1 */
#define SMTP_LABEL_MAX 63	/* RFC 1035 2.3.4: longer names never resolve */
#define SMTP_NUMBER_DIGITS_MAX 20	/* RFC 1870 size-value, BDAT chunk-size */

enum smtp_verb {
	SMTP_EHLO, SMTP_HELO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_RSET,
	SMTP_NOOP, SMTP_QUIT, SMTP_STARTTLS, SMTP_VRFY, SMTP_HELP, SMTP_BDAT,
	SMTP_AUTH, SMTP_XCLIENT, SMTP_UNKNOWN
};

enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };

enum smtp_parse_result {
	SMTP_PARSE_OK,
	SMTP_PARSE_UNKNOWN,	/* not a command we know: caller replies 500 5.5.2 */
	SMTP_PARSE_SYNTAX,	/* 501 5.5.4, or 501 5.1.7 / 5.1.3 for a bad
				 * sender / recipient address: see why */
	SMTP_PARSE_PARAM,	/* an ESMTP parameter we do not support: 555 5.5.4 */
};

struct smtp_cmd {
	enum smtp_verb verb;	/* set on errors too, SMTP_UNKNOWN if unknown */
	/* Text after the verb, leading and trailing spaces skipped (EHLO/HELO
	 * domain, VRFY argument, AUTH mechanism and response, ...). */
	const char *arg;
	size_t arg_len;
	/* MAIL/RCPT: the mailbox inside <>, any source route "@a,@b:"
	 * removed; path_len 0 for the null reverse-path "<>". */
	const char *path;
	size_t path_len;
	/* MAIL/RCPT: the ESMTP parameters after the path, as sent. */
	const char *params;
	size_t params_len;
	bool has_size;		/* MAIL SIZE=n; always set for BDAT */
	uint64_t size;		/* MAIL SIZE=n, or the BDAT chunk size */
	bool last;		/* BDAT ... LAST */
	enum smtp_body body;	/* MAIL BODY= */
};

/* Parses one command line (CRLF already removed, not NUL-terminated).
 * Slices in *cmd_r point into line; nothing is kept after the call.
 * On an error *why_r is a static, client-safe reply with its code and
 * enhanced code, e.g. "501 5.5.4 Syntax: MAIL FROM:<address>"; on OK it is
 * NULL. Verbs are case-insensitive and must be followed by SP or the end
 * of the line. MAIL takes SIZE= and BODY=7BIT|8BITMIME once each; RCPT
 * takes no parameters; the null path "<>" is for MAIL only and the bare
 * "<postmaster>" for RCPT only. DATA, RSET, QUIT and STARTTLS take no
 * argument; EHLO, HELO, AUTH and XCLIENT need printable ASCII; BDAT
 * needs "chunk-size [LAST]"; NOOP, HELP and VRFY take anything but
 * control characters. */
enum smtp_parse_result smtp_parse_command(const char *line, size_t len,
    struct smtp_cmd *cmd_r, const char **why_r);

/* Parses one line of a server reply ("250-text", "250 text" or "250"),
 * CRLF removed. Returns 0 with the code (200-599), whether it is the last
 * line of the reply, and the text after the separator (a slice of line,
 * may be empty); -1 if malformed, including a NUL, CR or LF in the text. */
int smtp_reply_parse(const char *line, size_t len, unsigned *code_r,
    bool *last_r, const char **text_r, size_t *text_len_r);

enum { SMTP_DATA_BARE_LF = 1, SMTP_DATA_BARE_CR = 2, SMTP_DATA_NUL = 4 };

struct smtp_data {
	int state;
	/* Message bytes as they arrive (dot-stuffed form). Once done, the
	 * end-of-data line ".CRLF" is not counted but the CRLF ending the
	 * last message line is. */
	uint64_t bytes;
	unsigned flags;		/* SMTP_DATA_*, accumulated */
};

/* Starts a message: the scanner is at the start of a line. */
void smtp_data_init(struct smtp_data *d);

/* Scans the next len bytes of the message a client sends after 354.
 * Returns how many belong to the message stream: up to and including the
 * terminator CR LF "." CR LF (or ".CRLF" as the very first line) with
 * *done_r = true, or len with *done_r = false. After the end it returns 0
 * and done. A "." line ended by a bare LF is not the end.
 * Flags: an LF not preceded by CR is BARE_LF, a CR not followed by LF is
 * BARE_CR, a NUL byte is NUL. Input may be split anywhere. */
size_t smtp_data_scan(struct smtp_data *d, const unsigned char *buf,
    size_t len, bool *done_r);

#endif
