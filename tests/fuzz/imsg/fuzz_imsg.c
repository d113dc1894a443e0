/* Fuzz target: a frame between the processes of a node (mm_imsg.h): a
 * header, then the body of its type. When both decode, every string must
 * lie inside the input, within its limit and free of control characters,
 * and encoding the body again must give the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mm_imsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mm_imsg_body body;
static uint8_t out[MM_IMSG_BODY_MAX];

static void
inside(const uint8_t *data, size_t size, const struct mm_imsg_str *s,
    size_t max)
{
	size_t i;

	if (s->len == 0)
		return;
	if (s->len > max || (const uint8_t *)s->p < data ||
	    (const uint8_t *)s->p + s->len > data + size)
		abort();
	for (i = 0; i < s->len; i++)
		if ((unsigned char)s->p[i] < 0x20 || s->p[i] == 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_imsg_hdr h;
	const char *why = NULL;
	size_t i;
	int n;

	if (size < MM_IMSG_HDR_LEN)
		return 0;
	if (mm_imsg_hdr_decode(data, &h, &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	/* The body is what follows the header, whatever len says: the
	 * channel reads exactly len bytes, so a short one never decodes. */
	data += MM_IMSG_HDR_LEN;
	size -= MM_IMSG_HDR_LEN;
	if (h.len != size)
		return 0;
	if (mm_imsg_body_decode(h.type, data, size, &body, &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (body.n_sessions > MM_IMSG_SESSIONS_MAX)
		abort();
	inside(data, size, &body.user, MM_IMSG_USER_MAX);
	inside(data, size, &body.reason, MM_IMSG_TEXT_MAX);
	inside(data, size, &body.site, MM_IMSG_TEXT_MAX);
	inside(data, size, &body.backend, MM_IMSG_TEXT_MAX);
	for (i = 0; i < body.n_sessions; i++) {
		const struct mm_imsg_session *s = &body.sessions[i];

		inside(data, size, &s->user, MM_IMSG_USER_MAX);
		inside(data, size, &s->client, MM_IMSG_TEXT_MAX);
		inside(data, size, &s->proto, MM_IMSG_TEXT_MAX);
		inside(data, size, &s->state, MM_IMSG_TEXT_MAX);
		inside(data, size, &s->backend, MM_IMSG_TEXT_MAX);
	}
	n = mm_imsg_body_encode(h.type, &body, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
