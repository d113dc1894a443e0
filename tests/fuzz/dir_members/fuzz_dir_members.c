/* The membership snapshot the agent writes for the proxy workers, decoded
 * from arbitrary bytes (a damaged store page): no read past the input,
 * every member handed out within its limits, and a snapshot that decodes
 * encodes back to the same members. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	struct dir_member m[DIR_MEMBERS_MAX];
	char text[DIR_MEMBERS_MAX][3][DIR_ADDR_MAX + 1];
	size_t n;
};

static void
member_cb(const struct dir_member *m, void *arg)
{
	struct seen *s = arg;

	if (strlen(m->site) > RECORD_SITE_MAX ||
	    strlen(m->name) > DIR_NAME_MAX ||
	    strlen(m->session_addr) > DIR_ADDR_MAX || m->rtt_ms < -1)
		abort();
	if (s->n >= DIR_MEMBERS_MAX)
		abort();
	strcpy(s->text[s->n][0], m->site);
	strcpy(s->text[s->n][1], m->name);
	strcpy(s->text[s->n][2], m->session_addr);
	s->m[s->n] = *m;
	s->m[s->n].site = s->text[s->n][0];
	s->m[s->n].name = s->text[s->n][1];
	s->m[s->n].session_addr = s->text[s->n][2];
	s->n++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen first, again;
	const char *why = NULL;
	uint64_t written = 0, w2 = 0;
	uint8_t *enc;
	size_t len, i;

	first.n = 0;
	if (dir_members_decode(data, size, &written, member_cb, &first,
	    &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	enc = dir_members_encode(first.m, first.n, written, &len);
	again.n = 0;
	if (dir_members_decode(enc, len, &w2, member_cb, &again, &why) != 0 ||
	    w2 != written || again.n != first.n)
		abort();
	for (i = 0; i < first.n; i++)
		if (strcmp(first.text[i][0], again.text[i][0]) != 0 ||
		    strcmp(first.text[i][1], again.text[i][1]) != 0 ||
		    strcmp(first.text[i][2], again.text[i][2]) != 0 ||
		    first.m[i].suspect != again.m[i].suspect ||
		    first.m[i].rtt_ms != again.m[i].rtt_ms)
			abort();
	free(enc);
	return 0;
}
