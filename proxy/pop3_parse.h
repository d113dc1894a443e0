/* POP3 parsing for the proxy: client command lines (pure) and server
 * status lines. */
#ifndef POP3_PARSE_H
#define POP3_PARSE_H

#include <stddef.h>

#define POP3_KEYWORD_MAX 4	/* RFC 1939: keywords are 3 or 4 characters */

struct pop3_cmd {
	size_t name_off, name_len;	/* keyword */
	size_t arg_off, arg_len;	/* everything after the first space, may be 0 */
};

enum pop3_parse_rc {
	POP3_PARSE_INVALID = -1,
	POP3_PARSE_AGAIN = 0,
	POP3_PARSE_OK = 1,
};

/* Parses one CRLF- (or LF-) terminated line from buf[0..len).
 * OK: *cmd_r filled, *consumed_r = bytes of the line with its end.
 * AGAIN: no line end yet and len <= line_max.
 * INVALID: *error_r says why; *consumed_r > 0 if the bad line can be
 * skipped, 0 if the line exceeds line_max (the caller ends the session).
 * A line with a NUL byte or an empty keyword is INVALID. */
enum pop3_parse_rc pop3_parse_line(const unsigned char *buf, size_t len,
    size_t line_max, struct pop3_cmd *cmd_r, size_t *consumed_r,
    const char **error_r);

/* Splits an argument at its first space: "PLAIN dGVzdA==" gives the word
 * "PLAIN" and the rest "dGVzdA==" (rest_len 0 if none). */
void pop3_split_arg(const unsigned char *buf, size_t off, size_t len,
    size_t *word_off_r, size_t *word_len_r, size_t *rest_off_r,
    size_t *rest_len_r);

enum pop3_resp_status { POP3_RESP_OK, POP3_RESP_ERR, POP3_RESP_CONT,
	POP3_RESP_INVALID };

/* Classifies a server line (CRLF excluded): "+OK", "-ERR", "+ ". */
enum pop3_resp_status pop3_parse_response(const char *line, size_t len);

#endif
