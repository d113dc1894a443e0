/* Fuzz target: a message between the nodes of a move (move_msg.h). When
 * it decodes, every field must be within its limit (strings printable and
 * terminated, the record inside the input), and encoding it again must give
 * the same bytes: there is one form of each message. A refusal must say
 * why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "move_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct move_msg m;
static uint8_t out[MOVE_MSG_MAX];

static void
text(const char *s, size_t max)
{
	size_t i, len = strnlen(s, max + 1);

	if (len > max)
		abort();
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	size_t i;
	int n;

	if (move_msg_decode(data, size, &m, &why) != 0) {
		if (why == NULL || m.n_folders != 0 || m.n_body_from != 0 ||
		    m.record != NULL)
			abort();
		return 0;
	}
	if (m.type < MOVE_MSG_PREPARE || m.type > MOVE_MSG_ABORTED ||
	    strcmp(move_msg_type_name(m.type), "?") == 0)
		abort();
	text(m.user, RECORD_USER_MAX);
	text(m.site, RECORD_SITE_MAX);
	text(m.backend, RECORD_NAME_MAX);
	text(m.error, MOVE_MSG_ERROR_MAX);
	if (m.record_len > RECORD_MAX ||
	    (m.record_len == 0) != (m.record == NULL) ||
	    (m.record != NULL && (m.record < data ||
	    m.record + m.record_len > data + size)))
		abort();
	if (m.n_folders > MOVE_FOLDERS_MAX || m.n_body_from > MOVE_FOLDERS_MAX)
		abort();
	for (i = 0; i < m.n_folders; i++)
		text(m.folders[i].name, MOVE_FOLDER_NAME_MAX);
	for (i = 0; i < m.n_body_from; i++)
		text(m.body_from[i].name, MOVE_FOLDER_NAME_MAX);
	n = move_msg_encode(&m, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
