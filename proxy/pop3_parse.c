/* POP3 command lines (RFC 1939, RFC 2449, RFC 5034) and server status
 * lines. Pure: no I/O, no allocation; slices of the caller's buffer out. */
#include "pop3_parse.h"

#include <stdbool.h>
#include <string.h>

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char
to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Case-insensitive: does line[0..len) start with the lower-case word? */
static bool
has_prefix_ci(const char *line, size_t len, const char *word)
{
	size_t i, n = strlen(word);

	if (len < n)
		return false;
	for (i = 0; i < n; i++)
		if (to_lower((unsigned char)line[i]) != (unsigned char)word[i])
			return false;
	return true;
}

/*
 * The line limit counts the line end too, so a line of exactly line_max
 * bytes with its LF is accepted. Only the first line_max bytes are
 * searched for the LF: that bounds the work on every call however much
 * input is buffered.
 */
enum pop3_parse_rc
pop3_parse_line(const unsigned char *buf, size_t len, size_t line_max,
    struct pop3_cmd *cmd_r, size_t *consumed_r, const char **error_r)
{
	const unsigned char *lf;
	size_t scan, end, i;

	memset(cmd_r, 0, sizeof(*cmd_r));
	*consumed_r = 0;
	*error_r = NULL;

	scan = len < line_max ? len : line_max;
	lf = scan > 0 ? memchr(buf, '\n', scan) : NULL;
	if (lf == NULL) {
		if (len > line_max) {
			*error_r = "line too long";
			return POP3_PARSE_INVALID;
		}
		return POP3_PARSE_AGAIN;
	}

	/* From here on the whole line is known, so it can be skipped. */
	*consumed_r = (size_t)(lf - buf) + 1;
	end = (size_t)(lf - buf);
	if (end > 0 && buf[end - 1] == '\r')
		end--;

	if (memchr(buf, '\0', end) != NULL) {
		*error_r = "NUL byte in command";
		return POP3_PARSE_INVALID;
	}
	/* A CR anywhere else could end the line early at a back end that
	 * accepts bare CR; the relayed command must mean the same there. */
	if (memchr(buf, '\r', end) != NULL) {
		*error_r = "bad command";
		return POP3_PARSE_INVALID;
	}

	for (i = 0; i < end && i <= POP3_KEYWORD_MAX && is_alpha(buf[i]); i++)
		;
	if (i == 0 || i > POP3_KEYWORD_MAX || (i < end && buf[i] != ' ')) {
		*error_r = "bad command";
		return POP3_PARSE_INVALID;
	}

	cmd_r->name_off = 0;
	cmd_r->name_len = i;
	if (i < end) {
		cmd_r->arg_off = i + 1;
		cmd_r->arg_len = end - (i + 1);
	} else {
		cmd_r->arg_off = i;
		cmd_r->arg_len = 0;
	}
	return POP3_PARSE_OK;
}

void
pop3_split_arg(const unsigned char *buf, size_t off, size_t len,
    size_t *word_off_r, size_t *word_len_r, size_t *rest_off_r,
    size_t *rest_len_r)
{
	const unsigned char *sp = len > 0 ? memchr(buf + off, ' ', len) : NULL;

	*word_off_r = off;
	if (sp == NULL) {
		*word_len_r = len;
		*rest_off_r = off + len;
		*rest_len_r = 0;
		return;
	}
	*word_len_r = (size_t)(sp - (buf + off));
	*rest_off_r = off + *word_len_r + 1;
	*rest_len_r = len - *word_len_r - 1;
}

/* A status word counts only when a space or the end of the line follows,
 * so "+OKAY" is not a success. */
enum pop3_resp_status
pop3_parse_response(const char *line, size_t len)
{
	if (line == NULL || len == 0)
		return POP3_RESP_INVALID;
	if (has_prefix_ci(line, len, "+ok") && (len == 3 || line[3] == ' '))
		return POP3_RESP_OK;
	if (has_prefix_ci(line, len, "-err") && (len == 4 || line[4] == ' '))
		return POP3_RESP_ERR;
	if (line[0] == '+' && (len == 1 || line[1] == ' '))
		return POP3_RESP_CONT;
	return POP3_RESP_INVALID;
}
