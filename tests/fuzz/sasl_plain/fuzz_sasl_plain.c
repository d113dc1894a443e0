/* Fuzz target: SASL PLAIN decoding of what a client sends, into buffers
 * of assorted sizes, and a re-encode of whatever decodes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sasl.h"

#define FUZZ_OUT_MAX (4 * (3 * SASL_FIELD_MAX + 2) / 3 + 8)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char authz[SASL_FIELD_MAX + 1], user[SASL_FIELD_MAX + 1];
	static char pass[SASL_FIELD_MAX + 1], enc[FUZZ_OUT_MAX];
	char small[16];
	int n;

	if (sasl_plain_decode((const char *)data, size, authz, sizeof(authz),
	    user, sizeof(user), pass, sizeof(pass)) == 0) {
		if (user[0] == '\0' || pass[0] == '\0')
			abort();
		n = sasl_plain_encode(authz, user, pass, enc, sizeof(enc));
		/* Canonical base64 in, so the same text comes back. */
		if (n < 0 || (size_t)n != size || memcmp(enc, data, size) != 0)
			abort();
	}
	/* Short outputs must fail cleanly, never overflow. */
	(void)sasl_plain_decode((const char *)data, size, small, sizeof(small),
	    small, sizeof(small), small, sizeof(small));
	(void)sasl_plain_decode((const char *)data, size, small, 1, user,
	    sizeof(user), pass, 2);
	return 0;
}
