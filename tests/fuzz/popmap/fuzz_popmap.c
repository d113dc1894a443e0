/* Fuzz target: the input is a popmap. When it parses, a few fixed names
 * and names taken from the input are looked up. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "popmap.h"

#define FUZZ_NAME_MAX 64	/* names taken from the input */
#define FUZZ_NAMES_FROM_INPUT 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
try_lookup(const struct popmap *map, const char *user)
{
	char out[POPMAP_VALUE_MAX + 1], tiny[4];
	int r;

	r = popmap_lookup(map, user, out, sizeof(out));
	if (r == 1 && strlen(out) > POPMAP_VALUE_MAX)
		abort();
	(void)popmap_lookup(map, user, tiny, sizeof(tiny));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *fixed[] = { "alice", "alice@example.com",
		"bob@example.org", "", "a@b@c", "x" };
	char *err = NULL;
	struct popmap *map;
	size_t i, pos = 0, n = 0;

	map = popmap_parse((const char *)data, size, "fuzz", &err);
	if (map == NULL) {
		if (err == NULL || strncmp(err, "fuzz:", 5) != 0)
			abort();
		free(err);
		return 0;
	}
	if (err != NULL)
		abort();
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		try_lookup(map, fixed[i]);

	/* Each line's text up to its first ':' or space: exact keys hit. */
	while (pos < size && n < FUZZ_NAMES_FROM_INPUT) {
		char name[FUZZ_NAME_MAX + 1];
		size_t len = 0;

		while (pos < size && (data[pos] == ' ' || data[pos] == '\t'))
			pos++;
		while (pos < size && data[pos] != ':' && data[pos] != '\n' &&
		    data[pos] != ' ' && data[pos] != '\0' &&
		    len < FUZZ_NAME_MAX)
			name[len++] = (char)data[pos++];
		name[len] = '\0';
		try_lookup(map, name);
		n++;
		while (pos < size && data[pos] != '\n')
			pos++;
		pos++;
	}
	popmap_free(map);
	return 0;
}
