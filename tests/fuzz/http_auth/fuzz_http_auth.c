/* Fuzz target: nginx auth_http request heads, parsed whole and again in
 * pieces (the two must agree), then the values the lookup uses: the
 * URL-decoded user and password and the Auth-SMTP-To address. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_values(const char *buf, const struct http_auth_req *r,
    size_t consumed)
{
	char out[HTTP_AUTH_LINE_MAX + 1];
	size_t off, len, n;
	int f;

	if (consumed == 0 || consumed > HTTP_AUTH_HEAD_MAX ||
	    !r->path.present || r->path.len == 0 ||
	    r->path.off + r->path.len > consumed || buf[r->path.off] != '/')
		abort();
	for (f = 0; f < HTTP_AUTH_FIELD_COUNT; f++) {
		const struct http_auth_slice *s = &r->field[f];

		if (!s->present)
			continue;
		if (s->off + s->len > consumed || s->len > HTTP_AUTH_LINE_MAX)
			abort();
		if (memchr(buf + s->off, '\r', s->len) != NULL ||
		    memchr(buf + s->off, '\n', s->len) != NULL)
			abort();
		if (s->len > 0 && (buf[s->off] == ' ' ||
		    buf[s->off + s->len - 1] == ' '))
			abort();
	}
	for (f = HTTP_AUTH_USER; f <= HTTP_AUTH_PASS; f++) {
		const struct http_auth_slice *s = &r->field[f];

		if (!s->present)
			continue;
		if (http_auth_decode(buf + s->off, s->len, out, sizeof(out),
		    &n) == 0) {
			if (n > s->len || out[n] != '\0' || strlen(out) != n)
				abort();
		}
	}
	if (r->field[HTTP_AUTH_SMTP_TO].present) {
		const struct http_auth_slice *s = &r->field[HTTP_AUTH_SMTP_TO];

		if (http_auth_smtp_rcpt(buf + s->off, s->len, &off,
		    &len) == 0 && (len == 0 || off + len > s->len))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_auth_req whole, parts;
	size_t consumed, consumed2, step, at, off, len;
	const char *why, *why2;
	char small[16];
	int rc, rc2 = 0;

	http_auth_init(&whole);
	rc = http_auth_parse(&whole, buf, size, &consumed, &why);
	if (rc == 1)
		check_values(buf, &whole, consumed);
	else if (rc < 0 && why == NULL)
		abort();
	else if (rc == 0 && size >= HTTP_AUTH_HEAD_MAX)
		abort();

	/* The same bytes in pieces of a size taken from the input. */
	step = size > 0 ? (size_t)data[0] % 13 + 1 : 1;
	http_auth_init(&parts);
	for (at = step < size ? step : size;; at += step) {
		if (at > size)
			at = size;
		rc2 = http_auth_parse(&parts, buf, at, &consumed2, &why2);
		if (rc2 != 0 || at == size)
			break;
	}
	if (rc2 != rc)
		abort();
	if (rc == 1 && (consumed2 != consumed ||
	    memcmp(&parts.field, &whole.field, sizeof(whole.field)) != 0))
		abort();

	/* The value helpers on raw bytes, with a small output too. */
	(void)http_auth_decode(buf, size, small, sizeof(small), &len);
	if (http_auth_smtp_rcpt(buf, size, &off, &len) == 0 &&
	    (len == 0 || off + len > size))
		abort();
	return 0;
}
