/* Fuzz target for mm_config_parse: any input either parses into a config
 * or fails with one message that names the file; both are freed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mm_config.h"

#define FUZZ_FNAME "fuzz.conf"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_config *conf;
	char *err = NULL;

	conf = mm_config_parse((const char *)data, size, FUZZ_FNAME, &err);
	/* The contract callers rely on: exactly one of config and message,
	 * a message that starts with the file name, at least one listener. */
	if ((conf == NULL) == (err == NULL))
		abort();
	if (err != NULL && strncmp(err, FUZZ_FNAME ":",
	    strlen(FUZZ_FNAME ":")) != 0)
		abort();
	if (conf != NULL && conf->n_listeners == 0)
		abort();
	mm_config_free(conf);
	free(err);
	return 0;
}
