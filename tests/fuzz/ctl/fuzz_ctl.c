/* Fuzz target: the input is a stream of control frames, decoded the way
 * the agent and mmctl read them. Each decoded frame is encoded again and
 * must decode to the same thing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same_rows(const struct ctl_rows *a, const struct ctl_rows *b)
{
	size_t i, j;

	if (a->n != b->n)
		abort();
	for (i = 0; i < a->n; i++) {
		if (a->row[i].n != b->row[i].n)
			abort();
		for (j = 0; j < a->row[i].n; j++)
			if (strcmp(a->row[i].col[j], b->row[i].col[j]) != 0)
				abort();
	}
}

static void
roundtrip(const struct ctl_msg *m)
{
	struct ctl_msg *m2 = NULL;
	const char *why = NULL;
	uint8_t *f = NULL;
	size_t len = 0, used = 0, i;

	switch (m->type) {
	case CTL_REQUEST:
		f = ctl_encode_request(m->op, m->argc,
		    (const char *const *)m->argv, &len, &why);
		break;
	case CTL_RESPONSE:
	case CTL_END:
		f = ctl_encode_response(m->type, m->status, m->message,
		    &m->rows, &len, &why);
		break;
	case CTL_PROGRESS:
		f = ctl_encode_progress(m->done, m->total, &len);
		break;
	}
	/* The canonical encoding is never longer than what was decoded. */
	if (f == NULL)
		abort();
	if (ctl_frame_decode(f, len, &m2, &used, &why) != 1 || used != len)
		abort();
	if (m2->type != m->type)
		abort();
	if (m->type == CTL_REQUEST) {
		if (strcmp(m->op, m2->op) != 0 || m->argc != m2->argc)
			abort();
		for (i = 0; i < m->argc; i++)
			if (strcmp(m->argv[i], m2->argv[i]) != 0)
				abort();
	} else if (m->type == CTL_PROGRESS) {
		if (m->done != m2->done || m->total != m2->total)
			abort();
	} else {
		if (m->status != m2->status ||
		    strcmp(m->message, m2->message) != 0)
			abort();
		same_rows(&m->rows, &m2->rows);
	}
	ctl_msg_free(m2);
	free(f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_msg *m;
	const char *why;
	size_t off = 0, used;
	int r;

	while (off < size) {
		m = NULL;
		why = NULL;
		used = 0;
		r = ctl_frame_decode(data + off, size - off, &m, &used, &why);
		if (r == 0)
			break;
		if (r < 0) {
			if (why == NULL || m != NULL)
				abort();
			break;
		}
		if (used < CTL_HEADER_LEN || used > size - off)
			abort();
		roundtrip(m);
		ctl_msg_free(m);
		off += used;
	}
	return 0;
}
