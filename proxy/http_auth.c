/* nginx auth_http request heads (ngx_mail_auth_http_module): a request
 * line, header lines and a blank line, each ending in CRLF. Only what
 * nginx sends is accepted; anything looser is a bad request, since the
 * peer is a configured nginx and not a browser. */
#include "http_auth.h"

#include <strings.h>
#include <string.h>

static const char *const field_names[HTTP_AUTH_FIELD_COUNT] = {
	[HTTP_AUTH_METHOD] = "Auth-Method",
	[HTTP_AUTH_USER] = "Auth-User",
	[HTTP_AUTH_PASS] = "Auth-Pass",
	[HTTP_AUTH_PROTOCOL] = "Auth-Protocol",
	[HTTP_AUTH_LOGIN_ATTEMPT] = "Auth-Login-Attempt",
	[HTTP_AUTH_CLIENT_IP] = "Client-IP",
	[HTTP_AUTH_SMTP_HELO] = "Auth-SMTP-Helo",
	[HTTP_AUTH_SMTP_FROM] = "Auth-SMTP-From",
	[HTTP_AUTH_SMTP_TO] = "Auth-SMTP-To",
};

const char *
http_auth_field_name(enum http_auth_field f)
{
	return (unsigned)f < HTTP_AUTH_FIELD_COUNT ? field_names[f] : "?";
}

void
http_auth_init(struct http_auth_req *r)
{
	memset(r, 0, sizeof(*r));
	r->state = HTTP_AUTH_S_REQUEST_LINE;
}

static int
fail(struct http_auth_req *r, const char *why, const char **why_r)
{
	r->state = HTTP_AUTH_S_INVALID;
	r->why = why;
	*why_r = why;
	return -1;
}

/* RFC 9110 tchar. */
static int
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *
request_line(struct http_auth_req *r, const char *buf, size_t off,
    size_t n)
{
	const char *l = buf + off;
	size_t i;

	if (n < 4 || memcmp(l, "GET ", 4) != 0)
		return "not a GET request";
	for (i = 4; i < n && l[i] != ' '; i++)
		if ((unsigned char)l[i] < 0x21 || (unsigned char)l[i] > 0x7e)
			return "bad request target";
	if (i == 4 || l[4] != '/')
		return "bad request target";
	r->path.off = off + 4;
	r->path.len = i - 4;
	r->path.present = true;
	if (n - i != 9 || memcmp(l + i, " HTTP/1.", 8) != 0 ||
	    (l[i + 8] != '0' && l[i + 8] != '1'))
		return "bad HTTP version";
	r->http_minor = (unsigned)(l[i + 8] - '0');
	return NULL;
}

static const char *
header_line(struct http_auth_req *r, const char *buf, size_t off, size_t n)
{
	const char *l = buf + off;
	size_t i, name_len, v, e;
	int f;

	if (++r->n_headers > HTTP_AUTH_HEADERS_MAX)
		return "too many headers";
	/* Folded continuation lines are obsolete (RFC 9112 5.2) and would
	 * let one value hide in another. */
	for (i = 0; i < n && is_tchar((unsigned char)l[i]); i++)
		;
	if (i == 0 || i == n || l[i] != ':')
		return "bad header name";
	name_len = i;
	for (v = i + 1; v < n && (l[v] == ' ' || l[v] == '\t'); v++)
		;
	for (e = n; e > v && (l[e - 1] == ' ' || l[e - 1] == '\t'); e--)
		;
	for (i = v; i < e; i++) {
		unsigned char c = (unsigned char)l[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "control character in header";
	}
	for (f = 0; f < HTTP_AUTH_FIELD_COUNT; f++) {
		if (strlen(field_names[f]) != name_len ||
		    strncasecmp(field_names[f], l, name_len) != 0)
			continue;
		/* Two values for one field could be read differently by
		 * whoever else looks at the request: refuse. */
		if (r->field[f].present)
			return "duplicate header";
		r->field[f].off = off + v;
		r->field[f].len = e - v;
		r->field[f].present = true;
		break;
	}
	return NULL;
}

/*
 * Lines are found with memchr over at most HTTP_AUTH_LINE_MAX + 2 bytes
 * (the line, CR and LF) and never past HTTP_AUTH_HEAD_MAX, so a peer that
 * sends no line end is refused as soon as the bound is passed, and each
 * byte is scanned once however the input is split.
 */
int
http_auth_parse(struct http_auth_req *r, const char *buf, size_t len,
    size_t *consumed_r, const char **why_r)
{
	*consumed_r = 0;
	*why_r = NULL;
	if (r->state == HTTP_AUTH_S_DONE) {
		*consumed_r = r->pos;
		return 1;
	}
	if (r->state == HTTP_AUTH_S_INVALID) {
		*why_r = r->why;
		return -1;
	}
	if (len < r->pos)
		return fail(r, "input went back", why_r);

	for (;;) {
		size_t line_max = r->line_start + HTTP_AUTH_LINE_MAX + 2;
		size_t limit = len, end, n;
		const char *lf, *why;

		if (limit > line_max)
			limit = line_max;
		if (limit > HTTP_AUTH_HEAD_MAX)
			limit = HTTP_AUTH_HEAD_MAX;
		lf = r->pos < limit ? memchr(buf + r->pos, '\n',
		    limit - r->pos) : NULL;
		if (lf == NULL) {
			r->pos = limit;
			if (limit == line_max)
				return fail(r, "line too long", why_r);
			if (limit == HTTP_AUTH_HEAD_MAX)
				return fail(r, "head too large", why_r);
			return 0;
		}
		end = (size_t)(lf - buf);
		if (end == r->line_start || buf[end - 1] != '\r')
			return fail(r, "bare LF", why_r);
		n = end - 1 - r->line_start;
		if (memchr(buf + r->line_start, '\r', n) != NULL)
			return fail(r, "bare CR", why_r);

		if (r->state == HTTP_AUTH_S_REQUEST_LINE) {
			why = request_line(r, buf, r->line_start, n);
			r->state = HTTP_AUTH_S_HEADERS;
		} else if (n == 0) {
			r->state = HTTP_AUTH_S_DONE;
			r->pos = end + 1;
			*consumed_r = r->pos;
			return 1;
		} else {
			why = header_line(r, buf, r->line_start, n);
		}
		if (why != NULL)
			return fail(r, why, why_r);
		r->pos = r->line_start = end + 1;
	}
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
http_auth_decode(const char *in, size_t len, char *out, size_t outlen,
    size_t *len_r)
{
	size_t i, o = 0;

	*len_r = 0;
	if (outlen == 0)
		return -1;
	out[0] = '\0';
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3)
				goto bad;
			hi = hex_value((unsigned char)in[i + 1]);
			lo = hex_value((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				goto bad;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		/* The name goes on as a C string: a NUL would cut it. */
		if (c == '\0' || o + 1 >= outlen)
			goto bad;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	*len_r = o;
	return 0;
bad:
	/* Nothing half-decoded is left behind (it may be a password). */
	memset(out, 0, o + 1 < outlen ? o + 1 : outlen);
	return -1;
}

static size_t
skip_spaces(const char *v, size_t i, size_t len)
{
	while (i < len && v[i] == ' ')
		i++;
	return i;
}

int
http_auth_smtp_rcpt(const char *v, size_t len, size_t *off_r,
    size_t *len_r)
{
	size_t i, start, end;
	int quoted = 0;

	*off_r = *len_r = 0;
	i = skip_spaces(v, 0, len);
	if (len - i >= 4 && strncasecmp(v + i, "RCPT", 4) == 0 &&
	    (len - i == 4 || v[i + 4] == ' ')) {
		i = skip_spaces(v, i + 4, len);
		if (len - i < 3 || strncasecmp(v + i, "TO:", 3) != 0)
			return -1;
		i = skip_spaces(v, i + 3, len);
	}
	if (i == len)
		return -1;
	if (v[i] != '<') {
		/* A bare address: it ends at the first space. */
		for (start = i; i < len && v[i] != ' '; i++)
			if (v[i] == '<' || v[i] == '>')
				return -1;
		*off_r = start;
		*len_r = i - start;
		return 0;
	}

	start = ++i;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (quoted) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '"')
				quoted = 0;
			continue;
		}
		if (c == '"')
			quoted = 1;
		else if (c == '>')
			break;
		else if (c == ' ' || c == '<')
			return -1;
		else if (c == ':' && v[start] == '@')
			start = i + 1;	/* past the source route */
	}
	end = i;
	if (i == len || end == start || v[start] == '@')
		return -1;
	*off_r = start;
	*len_r = end - start;
	return 0;
}
