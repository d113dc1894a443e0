/* Fuzz target for proxyproto.
 *
 * Input: the first bytes of a connection. Every prefix of it (up to a
 * little past PP_HEADER_MAX) is parsed from an exact-size copy, so a read
 * past len is caught under ASan. Along the prefixes the answers must be
 * 0 up to some length and then stay 1 with one header, or stay -1: a
 * header is accepted exactly where it ends, so no prefix that needs more
 * holds a byte after a header, and no answer is ever withdrawn. An
 * accepted header must be whole and within its limits, and its addresses
 * must come back the same from a v1 line and a v2 header made of them. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "proxyproto.h"

/* Not assert(): release builds define NDEBUG. */
#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,	\
		    __LINE__, #x);					\
		abort();						\
	}								\
} while (0)

#define PREFIX_MAX (PP_HEADER_MAX + 8)

static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
	0x0a,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
parse_copy(const uint8_t *b, size_t n, struct pp_header *h, size_t *hlen,
    const char **why)
{
	unsigned char *copy = malloc(n > 0 ? n : 1);
	int rc;

	CHECK(copy != NULL);
	if (n > 0)
		memcpy(copy, b, n);
	rc = pp_parse(copy, n, h, hlen, why);
	free(copy);
	CHECK(rc >= -1 && rc <= 1);
	if (rc == 1) {
		CHECK(*hlen > 0 && *hlen <= n && *hlen <= PP_HEADER_MAX);
		CHECK(*why == NULL);
	} else if (rc == 0) {
		/* A caller's PP_HEADER_MAX buffer is never full of a
		 * header that still needs more. */
		CHECK(*hlen == 0 && *why == NULL && n < PP_HEADER_MAX);
		CHECK(n == 0 || b[0] != 'P' || n < PP_V1_MAX);
		CHECK(n == 0 || b[0] != 'P' || memchr(b, '\n', n) == NULL);
	} else {
		CHECK(*hlen == 0 && *why != NULL && (*why)[0] != '\0');
	}
	return rc;
}

static bool
same_addrs(const struct pp_header *a, const struct pp_header *b)
{
	return memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	    memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

/* Writes h's addresses as a v1 line and as a v2 header and parses both. */
static void
round_trip(const struct pp_header *h)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&h->src;
	const struct sockaddr_in *d4 = (const struct sockaddr_in *)&h->dst;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&h->src;
	const struct sockaddr_in6 *d6 = (const struct sockaddr_in6 *)&h->dst;
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	unsigned char b[PP_V1_MAX + 64];
	struct pp_header h2;
	size_t n, hlen;
	const char *why;
	int len;

	if (h->src.ss_family == AF_INET) {
		CHECK(inet_ntop(AF_INET, &s4->sin_addr, src, sizeof(src)));
		CHECK(inet_ntop(AF_INET, &d4->sin_addr, dst, sizeof(dst)));
		len = snprintf((char *)b, sizeof(b),
		    "PROXY TCP4 %s %s %u %u\r\n", src, dst,
		    (unsigned)ntohs(s4->sin_port),
		    (unsigned)ntohs(d4->sin_port));
	} else {
		CHECK(inet_ntop(AF_INET6, &s6->sin6_addr, src, sizeof(src)));
		CHECK(inet_ntop(AF_INET6, &d6->sin6_addr, dst, sizeof(dst)));
		len = snprintf((char *)b, sizeof(b),
		    "PROXY TCP6 %s %s %u %u\r\n", src, dst,
		    (unsigned)ntohs(s6->sin6_port),
		    (unsigned)ntohs(d6->sin6_port));
	}
	CHECK(len > 0 && (size_t)len <= PP_V1_MAX);
	CHECK(parse_copy(b, (size_t)len, &h2, &hlen, &why) == 1);
	CHECK(hlen == (size_t)len && h2.version == 1 && !h2.local);
	CHECK(same_addrs(h, &h2));

	memcpy(b, v2_sig, sizeof(v2_sig));
	b[12] = 0x21;
	if (h->src.ss_family == AF_INET) {
		b[13] = 0x11;
		memcpy(b + 16, &s4->sin_addr, 4);
		memcpy(b + 20, &d4->sin_addr, 4);
		memcpy(b + 24, &s4->sin_port, 2);
		memcpy(b + 26, &d4->sin_port, 2);
		n = 12;
	} else {
		b[13] = 0x21;
		memcpy(b + 16, &s6->sin6_addr, 16);
		memcpy(b + 32, &d6->sin6_addr, 16);
		memcpy(b + 48, &s6->sin6_port, 2);
		memcpy(b + 50, &d6->sin6_port, 2);
		n = 36;
	}
	b[14] = 0;
	b[15] = (unsigned char)n;
	CHECK(parse_copy(b, 16 + n, &h2, &hlen, &why) == 1);
	CHECK(hlen == 16 + n && h2.version == 2 && !h2.local);
	CHECK(same_addrs(h, &h2));
}

static void
check_header(const uint8_t *b, size_t hlen, const struct pp_header *h)
{
	CHECK(h->version == 1 || h->version == 2);
	if (h->version == 1) {
		CHECK(hlen >= 8 && hlen <= PP_V1_MAX);
		CHECK(memcmp(b, "PROXY ", 6) == 0);
		CHECK(b[hlen - 2] == '\r' && b[hlen - 1] == '\n');
		CHECK(memchr(b, '\n', hlen - 1) == NULL);
	} else {
		CHECK(hlen >= 16 && memcmp(b, v2_sig, sizeof(v2_sig)) == 0);
		CHECK(hlen == 16 + (((size_t)b[14] << 8) | b[15]));
		CHECK(b[12] == 0x20 || b[12] == 0x21);
		CHECK(b[12] == 0x21 || h->local);
	}
	if (h->local)
		return;
	CHECK(h->src.ss_family == AF_INET || h->src.ss_family == AF_INET6);
	CHECK(h->dst.ss_family == h->src.ss_family);
	round_trip(h);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = size < PREFIX_MAX ? size : PREFIX_MAX;
	size_t k, hlen, first_len = 0;
	struct pp_header h, first;
	const char *why;
	int rc, last = 0;

	memset(&first, 0, sizeof(first));
	for (k = 0; k <= n; k++) {
		memset(&h, 0, sizeof(h));
		rc = parse_copy(data, k, &h, &hlen, &why);
		if (last == 0 && rc == 1) {
			CHECK(hlen == k);
			check_header(data, hlen, &h);
			memcpy(&first, &h, sizeof(h));
			first_len = hlen;
		} else if (last == 1) {
			CHECK(rc == 1 && hlen == first_len);
			CHECK(memcmp(&h, &first, sizeof(h)) == 0);
		} else if (last == -1) {
			CHECK(rc == -1);
		}
		last = rc;
	}
	CHECK(last != 0 || n < PP_HEADER_MAX);

	/* The whole input, however long, answers as its prefix did. */
	if (size > n) {
		rc = parse_copy(data, size, &h, &hlen, &why);
		CHECK(rc == last);
		CHECK(rc != 1 || hlen == first_len);
	}
	return 0;
}
