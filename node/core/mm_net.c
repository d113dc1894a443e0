/* IP networks: parsed from text, matched against peer addresses. */
#include "mm_net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* True if a and b agree in their first bits bits. */
static bool
prefix_equal(const unsigned char *a, const unsigned char *b,
    unsigned int bits)
{
	size_t whole = bits / 8;
	unsigned int rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (unsigned char)(0xff << (8 - rest));
	return ((a[whole] ^ b[whole]) & mask) == 0;
}

/* True if any bit of addr (len bytes) past the first bits is set. */
static bool
host_bits_set(const unsigned char *addr, size_t len, unsigned int bits)
{
	size_t i = bits / 8;

	if (bits % 8 != 0) {
		if ((addr[i] & (0xff >> (bits % 8))) != 0)
			return true;
		i++;
	}
	for (; i < len; i++)
		if (addr[i] != 0)
			return true;
	return false;
}

int
mm_net_parse(const char *s, struct mm_net *net_r)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/'), *digit;
	struct mm_net net;
	size_t host_len, len;
	unsigned int max;

	memset(&net, 0, sizeof(net));
	host_len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (host_len == 0 || host_len >= sizeof(host))
		return -1;
	memcpy(host, s, host_len);
	host[host_len] = '\0';
	/* inet_pton takes only numeric forms: no names, zones or brackets. */
	if (strchr(host, ':') != NULL) {
		if (inet_pton(AF_INET6, host, net.addr) != 1)
			return -1;
		net.family = AF_INET6;
		len = 16;
	} else {
		if (inet_pton(AF_INET, host, net.addr) != 1)
			return -1;
		net.family = AF_INET;
		len = 4;
	}
	max = (unsigned int)len * 8;
	net.bits = max;
	if (slash != NULL) {
		digit = slash + 1;
		if (*digit == '\0')
			return -1;
		net.bits = 0;
		for (; *digit != '\0'; digit++) {
			if (*digit < '0' || *digit > '9')
				return -1;
			net.bits = net.bits * 10 +
			    (unsigned int)(*digit - '0');
			/* Checked per digit, so no count of digits wraps. */
			if (net.bits > max)
				return -1;
		}
	}
	if (host_bits_set(net.addr, len, net.bits))
		return -1;
	*net_r = net;
	return 0;
}

bool
mm_net_match(const struct mm_net *net, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *sin6;
	const struct sockaddr_in *sin;
	const unsigned char *addr;
	int family;

	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)(const void *)sa;
		addr = (const unsigned char *)&sin->sin_addr;
		family = AF_INET;
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		addr = sin6->sin6_addr.s6_addr;
		family = AF_INET6;
		/* A dual-stack socket shows IPv4 clients this way; they are
		 * IPv4 clients, and IPv4 networks are what name them. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			addr += 12;
			family = AF_INET;
		}
		break;
	default:
		return false;
	}
	if (family != net->family ||
	    net->bits > (family == AF_INET ? 32u : 128u))
		return false;
	return prefix_equal(addr, net->addr, net->bits);
}
