/* The request head nginx's mail auth_http module sends: one HTTP/1.0 GET
 * per login attempt (or SMTP recipient), the attempt in Auth-* headers.
 * Pure and resumable: no I/O, no allocation; slices of the caller's
 * buffer out. */
#ifndef HTTP_AUTH_H
#define HTTP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_AUTH_HEAD_MAX 8192		/* the whole head with its blank line */
#define HTTP_AUTH_LINE_MAX 4096		/* one line, CRLF excluded: bounds the
					 * path and every header value */
#define HTTP_AUTH_HEADERS_MAX 64	/* header lines (nginx sends about 20) */

/* The headers kept; any other header is checked for syntax and skipped. */
enum http_auth_field {
	HTTP_AUTH_METHOD,		/* Auth-Method: plain, apop, none, ... */
	HTTP_AUTH_USER,			/* Auth-User, URL-encoded */
	HTTP_AUTH_PASS,			/* Auth-Pass, URL-encoded; never log it */
	HTTP_AUTH_PROTOCOL,		/* Auth-Protocol: imap, pop3, smtp */
	HTTP_AUTH_LOGIN_ATTEMPT,	/* Auth-Login-Attempt: 1, 2, ... */
	HTTP_AUTH_CLIENT_IP,		/* Client-IP */
	HTTP_AUTH_SMTP_HELO,		/* Auth-SMTP-Helo */
	HTTP_AUTH_SMTP_FROM,		/* Auth-SMTP-From */
	HTTP_AUTH_SMTP_TO,		/* Auth-SMTP-To: "RCPT TO:<a@b> ..." */
	HTTP_AUTH_FIELD_COUNT,
};

/* A slice of the caller's buffer: a header's value with the whitespace
 * around it removed. */
struct http_auth_slice {
	size_t off, len;
	bool present;
};

enum http_auth_pstate {
	HTTP_AUTH_S_REQUEST_LINE,
	HTTP_AUTH_S_HEADERS,
	HTTP_AUTH_S_DONE,
	HTTP_AUTH_S_INVALID,
};

/* One request being parsed. The state fields are the parser's; the
 * results are valid once http_auth_parse has returned 1. */
struct http_auth_req {
	enum http_auth_pstate state;
	size_t pos;			/* bytes scanned so far */
	size_t line_start;		/* where the current line begins */
	unsigned n_headers;
	const char *why;		/* INVALID: the reason */

	struct http_auth_slice path;	/* request target, e.g. "/auth" */
	unsigned http_minor;		/* HTTP/1.0 or HTTP/1.1 */
	struct http_auth_slice field[HTTP_AUTH_FIELD_COUNT];
};

void http_auth_init(struct http_auth_req *r);

/* Parses the head in buf[0..len). Resumable: each call passes the same
 * bytes as the call before and maybe more (buf may move; offsets stay),
 * and scanning goes on where it stopped. Lines end in CRLF.
 * 1: the head is complete; *consumed_r is its length with the blank line.
 * 0: more bytes are needed and no limit has been passed yet.
 * -1: invalid (bad request line or header, bare CR or LF, a limit passed
 *     on partial input, a duplicate of a kept header); *why_r (static)
 *     says why and every later call returns -1 too. */
int http_auth_parse(struct http_auth_req *r, const char *buf, size_t len,
    size_t *consumed_r, const char **why_r);

/* The header name of f, as nginx spells it ("Auth-User"). */
const char *http_auth_field_name(enum http_auth_field f);

/* Decodes nginx's escaping of Auth-User and Auth-Pass (%XX, either case;
 * '+' is a plus, not a space) from in[0..len) into out, NUL-terminated.
 * 0 with the decoded length in *len_r; -1 for a '%' without two hex
 * digits, a decoded NUL, or an output that does not fit outlen (len + 1
 * always fits). */
int http_auth_decode(const char *in, size_t len, char *out, size_t outlen,
    size_t *len_r);

/* The recipient address in an Auth-SMTP-To value. nginx passes the
 * client's whole command from its verb to its last argument, e.g.
 * "RCPT TO:<bob@example.org> NOTIFY=NEVER" or "rcpt to: <bob@example.org>";
 * a value without the verb is taken as the path itself. Angle brackets,
 * a source route ("<@relay:bob@example.org>") and parameters are removed.
 * 0 with the address as a slice of v in *off_r / *len_r (len > 0); -1 when
 * there is no address ("<>", bad syntax). */
int http_auth_smtp_rcpt(const char *v, size_t len, size_t *off_r,
    size_t *len_r);

#endif
