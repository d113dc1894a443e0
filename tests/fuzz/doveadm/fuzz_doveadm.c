/* Fuzz target: one line from a doveadm server (doveadm.h). The first byte
 * says where the conversation is (bit 0: after the command); the rest is
 * the line, in a buffer of exactly its size so that a write past it is
 * caught. When the line parses, every field must lie inside the buffer,
 * in order and apart, and escaping the fields again must give the line
 * back; a status must be what the line said. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doveadm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct doveadm_line l;
static char again[2 * DOVEADM_LINE_MAX + 2];

static void
check_row(const char *buf, const char *orig, size_t len)
{
	const char *prev_end = buf;
	size_t i, o = 0;

	if (l.n_fields > DOVEADM_FIELDS_MAX)
		abort();
	for (i = 0; i < l.n_fields; i++) {
		const char *f = l.fields[i];
		size_t flen;
		int n;

		if (f < prev_end || f >= buf + len)
			abort();
		/* Its NUL is inside the buffer: the field's TAB was. */
		flen = strnlen(f, (size_t)(buf + len - f));
		if (f + flen >= buf + len)
			abort();
		prev_end = f + flen + 1;
		n = doveadm_escape(f, again + o, sizeof(again) - o);
		if (n < 0)
			abort();
		o += (size_t)n;
		again[o++] = '\t';
	}
	if (o != len || memcmp(again, orig, len) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct doveadm_line *lp = &l;
	const char *why = NULL;
	bool in_output;
	char *buf, *orig;
	size_t len;

	if (size < 1)
		return 0;
	in_output = (data[0] & 1) != 0;
	len = size - 1;
	buf = malloc(len > 0 ? len : 1);
	orig = malloc(len > 0 ? len : 1);
	if (buf == NULL || orig == NULL)
		abort();
	memcpy(buf, data + 1, len);
	memcpy(orig, data + 1, len);
	if (doveadm_parse_line(buf, len, in_output, lp, &why) != 0) {
		if (why == NULL)
			abort();
		goto out;
	}
	if (len > DOVEADM_LINE_MAX || memchr(orig, '\0', len) != NULL)
		abort();
	switch (l.kind) {
	case DOVEADM_LINE_OK:
		if (len != 1 || orig[0] != '+')
			abort();
		break;
	case DOVEADM_LINE_FAIL:
		if (len < 1 || orig[0] != '-' || memchr(orig, '\t', len) != NULL)
			abort();
		if (!in_output && len != 1)
			abort();
		if (l.reason == NULL)
			abort();
		if (len > 1) {
			if (l.reason != buf ||
			    strlen(l.reason) != len - 1 ||
			    memcmp(l.reason, orig + 1, len - 1) != 0)
				abort();
		} else if (l.reason[0] != '\0')
			abort();
		if (l.exit_code < -1)
			abort();
		break;
	case DOVEADM_LINE_VERSION:
		if (in_output || l.major != 1 ||
		    strncmp(orig, "VERSION\tdoveadm-client\t", 23) != 0)
			abort();
		break;
	case DOVEADM_LINE_ROW:
		if (!in_output)
			abort();
		check_row(buf, orig, len);
		break;
	default:
		abort();
	}
out:
	free(buf);
	free(orig);
	return 0;
}
