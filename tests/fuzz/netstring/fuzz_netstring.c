/* Fuzz target for netstring.
 *
 * Input: one byte choosing the length limit, then a stream of netstrings
 * read one after another as a socketmap client reads them. Every accepted
 * netstring must format back to exactly the bytes it came from; every
 * shorter prefix of it must need more; a refused stream must stay refused
 * whatever follows; and a stream that needs more must need more at each
 * shorter prefix too. All parsing is on exact-size copies, so a read past
 * len is caught under ASan. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netstring.h"

/* Not assert(): release builds define NDEBUG. */
#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

static const size_t limits[8] = {
	0, 1, 3, 10, 64, 1000, 100000, SIZE_MAX,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses b[0..n) from a copy; extra bytes, if any, are appended. */
static int
parse_copy(const uint8_t *b, size_t n, const char *extra, size_t extra_len,
    size_t max, size_t *data_off_r, size_t *data_len_r, size_t *consumed_r)
{
	size_t total = n + extra_len;
	char *copy = malloc(total > 0 ? total : 1);
	const char *d;
	int rc;

	CHECK(copy != NULL);
	if (n > 0)
		memcpy(copy, b, n);
	if (extra_len > 0)
		memcpy(copy + n, extra, extra_len);
	rc = netstring_parse(copy, total, max, &d, data_len_r, consumed_r);
	CHECK(rc >= -1 && rc <= 1);
	if (rc == 1) {
		CHECK(d >= copy && *data_len_r <= total &&
		    (size_t)(d - copy) <= total - *data_len_r);
		CHECK(*consumed_r <= total);
		*data_off_r = (size_t)(d - copy);
	} else {
		CHECK(d == NULL && *data_len_r == 0 && *consumed_r == 0);
		*data_off_r = 0;
	}
	free(copy);
	return rc;
}

static void
check_one(const uint8_t *b, size_t n, size_t max, size_t cut)
{
	size_t off, len, consumed, off2, len2, consumed2, k;
	char *out;
	int rc;

	rc = parse_copy(b, n, NULL, 0, max, &off, &len, &consumed);
	if (rc == 1) {
		CHECK(len <= max);
		CHECK(off >= 2 && off <= 1 + 10 && b[off - 1] == ':');
		CHECK(consumed == off + len + 1 && b[consumed - 1] == ',');
		out = malloc(consumed);
		CHECK(out != NULL);
		CHECK(netstring_format(out, consumed, b + off, len) ==
		    consumed);
		CHECK(memcmp(out, b, consumed) == 0);
		CHECK(netstring_format(out, consumed - 1, b + off, len) == 0);
		free(out);
		/* What follows does not change it. */
		CHECK(parse_copy(b, consumed, NULL, 0, max, &off2, &len2,
		    &consumed2) == 1);
		CHECK(off2 == off && len2 == len && consumed2 == consumed);
		CHECK(parse_copy(b, consumed, "9:", 2, max, &off2, &len2,
		    &consumed2) == 1 && consumed2 == consumed);
		CHECK(parse_copy(b, consumed - 1, NULL, 0, max, &off2, &len2,
		    &consumed2) == 0);
		k = cut % consumed;
		CHECK(parse_copy(b, k, NULL, 0, max, &off2, &len2,
		    &consumed2) == 0);
	} else if (rc == 0) {
		if (n > 0)
			CHECK(parse_copy(b, n - 1, NULL, 0, max, &off2, &len2,
			    &consumed2) == 0);
		CHECK(parse_copy(b, n > 0 ? cut % n : 0, NULL, 0, max, &off2,
		    &len2, &consumed2) == 0);
	} else {
		CHECK(parse_copy(b, n, "0:,", 3, max, &off2, &len2,
		    &consumed2) == -1);
		CHECK(parse_copy(b, n, ",", 1, max, &off2, &len2,
		    &consumed2) == -1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t max, pos = 1, off, len, dlen, consumed, n;
	char *out;

	if (size == 0)
		return 0;
	max = limits[data[0] & 7];

	while (pos <= size) {
		int rc;

		check_one(data + pos, size - pos, max, (size_t)data[0] * 31);
		rc = parse_copy(data + pos, size - pos, NULL, 0, max, &off,
		    &len, &consumed);
		if (rc != 1)
			break;
		pos += consumed;
	}

	/* Any bytes survive a round trip through the framing. */
	n = size - 1;
	out = malloc(n + 16);
	CHECK(out != NULL);
	len = netstring_format(out, n + 16, data + 1, n);
	CHECK(len > n + 2);
	CHECK(parse_copy((const uint8_t *)out, len, NULL, 0, n, &off,
	    &dlen, &consumed) == 1);
	CHECK(dlen == n && consumed == len);
	CHECK(memcmp(out + off, data + 1, n) == 0);
	free(out);
	return 0;
}
