/* The cross-site session request decoder, fed arbitrary bytes: it must
 * never read past the input, and whatever it accepts must hold only
 * values the session code can take and must encode back to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xsite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xsite_req rq, again;
	uint8_t buf[XSITE_REQ_MAX];
	const char *why = NULL;
	int n;

	if (xsite_req_decode(data, size, &rq, &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if ((unsigned)rq.proto >= MM_PROTO_COUNT || rq.hops > XSITE_HOPS ||
	    rq.user[0] == '\0' || strlen(rq.user) > DIR_USER_MAX ||
	    strlen(rq.caddr) >= XSITE_ADDR_MAX)
		abort();
	n = xsite_req_encode(&rq, buf, sizeof(buf));
	if (n < 0 || xsite_req_decode(buf, (size_t)n, &again, &why) != 0 ||
	    memcmp(&rq, &again, sizeof(rq)) != 0)
		abort();
	return 0;
}
