/* Fuzz target: a stored move entry (move_db.h), as read back from the
 * disk. When it decodes, every field must be within its limit (strings
 * printable and terminated, the phase known), and encoding it again must
 * give the same bytes. A refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "move_db.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct move mv;
static uint8_t out[MOVE_DB_ENTRY_MAX];

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

	if (move_decode(data, size, &mv, &why) != 0) {
		if (why == NULL || mv.n_body_from != 0)
			abort();
		return 0;
	}
	if (strcmp(move_phase_name(mv.phase), "?") == 0)
		abort();
	text(mv.user, RECORD_USER_MAX);
	text(mv.from_site, RECORD_SITE_MAX);
	text(mv.to_site, RECORD_SITE_MAX);
	text(mv.from_backend, RECORD_NAME_MAX);
	text(mv.to_backend, RECORD_NAME_MAX);
	text(mv.engine, MOVE_ENGINE_MAX);
	text(mv.error, MOVE_MSG_ERROR_MAX);
	if (mv.n_body_from > MOVE_FOLDERS_MAX)
		abort();
	for (i = 0; i < mv.n_body_from; i++)
		text(mv.body_from[i].name, MOVE_FOLDER_NAME_MAX);
	n = move_encode(&mv, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
