/* IP networks ("192.0.2.0/24", "2001:db8::/32", or one address) and
 * matching addresses against them. */
#ifndef MM_NET_H
#define MM_NET_H

#include <stdbool.h>
#include <sys/socket.h>

struct mm_net {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network address, host bits zero */
	unsigned int bits;		/* prefix length: 0-32 or 0-128 */
};

/* Parses "ADDR" (a single host: /32 or /128) or "ADDR/BITS". Numeric
 * addresses only; BITS is decimal without sign, in range for the family.
 * Host bits set beyond the prefix are an error ("192.0.2.1/24" is
 * refused, so a typo cannot widen or shift a network silently).
 * Returns 0, or -1 with nothing stored. */
int mm_net_parse(const char *s, struct mm_net *net_r);

/* True if SA (AF_INET or AF_INET6) lies inside NET. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is matched as the IPv4 address. Any other
 * family never matches. */
bool mm_net_match(const struct mm_net *net, const struct sockaddr *sa);

#endif
