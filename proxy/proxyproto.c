/* PROXY protocol headers, versions 1 and 2, as HAProxy's specification
 * defines them. Every byte is checked as it arrives: a client that sends
 * no header is refused on its first bytes, and a header that cannot be
 * valid is refused without waiting for its end. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#define V1_SIG "PROXY "
#define V1_SIG_LEN 6
#define V1_ADDR4_MAX 15		/* "255.255.255.255" */
#define V1_ADDR6_MAX 45		/* INET6_ADDRSTRLEN less its NUL */
#define V1_PORT_DIGITS 5

#define V2_SIG_LEN 12
#define V2_FIXED_LEN 16		/* signature, ver/cmd, fam/proto, length */
#define V2_IN4_LEN 12		/* two IPv4 addresses, two ports */
#define V2_IN6_LEN 36		/* two IPv6 addresses, two ports */
#define V2_VERSION 2
#define V2_CMD_LOCAL 0
#define V2_CMD_PROXY 1

static const unsigned char v2_sig[V2_SIG_LEN] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54,
	0x0a,
};

static const char *const v1_protos[] = { "TCP4", "TCP6", "UNKNOWN" };

/* The v1 fields in line order, then the two states after them. */
enum v1_state {
	V1_PROTO,
	V1_SRC,
	V1_DST,
	V1_SPORT,
	V1_DPORT,
	V1_LF,		/* the CR after the last port arrived */
	V1_REST,	/* after UNKNOWN: anything up to CRLF */
};

static int
fail(const char **why_r, const char *why)
{
	*why_r = why;
	return -1;
}

/* addr is 4 or 16 bytes in network order. */
static void
set_addr(struct sockaddr_storage *ss, int family, const unsigned char *addr,
    unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sin->sin_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sin6->sin6_port = htons((uint16_t)port);
	}
}

static bool
v1_addr_char(int family, unsigned char c)
{
	if ((c >= '0' && c <= '9') || c == '.')
		return true;
	return family == AF_INET6 && ((c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F') || c == ':');
}

/* s[0..n) are at most V1_PORT_DIGITS digits. */
static unsigned long
v1_port(const unsigned char *s, size_t n)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	return v;
}

/* Checks a field of which s[0..n) has arrived, n >= 1, as far as it goes:
 * the rest of the line cannot make a bad start good. */
static const char *
v1_check_partial(enum v1_state st, int family, const unsigned char *s,
    size_t n)
{
	unsigned char c = s[n - 1];
	size_t i;

	switch (st) {
	case V1_PROTO:
		for (i = 0; i < sizeof(v1_protos) / sizeof(v1_protos[0]); i++)
			if (n <= strlen(v1_protos[i]) &&
			    memcmp(s, v1_protos[i], n) == 0)
				return NULL;
		return "v1 bad protocol";
	case V1_SRC:
	case V1_DST:
		if (n > (family == AF_INET ? V1_ADDR4_MAX : V1_ADDR6_MAX) ||
		    !v1_addr_char(family, c))
			return "v1 bad address";
		return NULL;
	default:
		if (n > V1_PORT_DIGITS || c < '0' || c > '9' ||
		    v1_port(s, n) > 65535)
			return "v1 bad port";
		return NULL;
	}
}

/* Checks a whole field s[0..n), n >= 0. The protocol sets *family; an
 * address goes into addr (4 or 16 bytes). */
static const char *
v1_check_field(enum v1_state st, int *family, const unsigned char *s,
    size_t n, unsigned char *addr)
{
	char str[V1_ADDR6_MAX + 1];

	switch (st) {
	case V1_PROTO:
		if (n == 4 && memcmp(s, "TCP4", 4) == 0)
			*family = AF_INET;
		else if (n == 4 && memcmp(s, "TCP6", 4) == 0)
			*family = AF_INET6;
		else
			return "v1 bad protocol";
		return NULL;
	case V1_SRC:
	case V1_DST:
		/* The partial checks bound n by the family's longest form. */
		memcpy(str, s, n);
		str[n] = '\0';
		if (inet_pton(*family, str, addr) != 1)
			return "v1 bad address";
		return NULL;
	default:
		return n == 0 ? "v1 bad port" : NULL;
	}
}

/* buf[0..len) starts with "PROXY ", len >= V1_SIG_LEN. */
static int
parse_v1(const unsigned char *buf, size_t len, struct pp_header *h,
    size_t *len_r, const char **why_r)
{
	size_t lim = len < PP_V1_MAX ? len : PP_V1_MAX;
	size_t i, tok = V1_SIG_LEN;	/* where the current field starts */
	enum v1_state st = V1_PROTO;
	int family = AF_UNSPEC;
	unsigned char addr[2][16];
	unsigned long port[2] = { 0, 0 };
	const char *why;

	for (i = V1_SIG_LEN; i < lim; i++) {
		unsigned char c = buf[i];

		if (st == V1_REST) {
			if (c != '\n')
				continue;
			if (buf[i - 1] != '\r')
				return fail(why_r, "v1 line not ending in CRLF");
			break;
		}
		if (st == V1_LF) {
			if (c != '\n')
				return fail(why_r, "v1 line not ending in CRLF");
			break;
		}
		if (c == '\n')
			return fail(why_r, "v1 line not ending in CRLF");
		if (c != ' ' && c != '\r') {
			why = v1_check_partial(st, family, buf + tok,
			    i + 1 - tok);
			if (why != NULL)
				return fail(why_r, why);
			if (st == V1_PROTO && i + 1 - tok == 7 &&
			    memcmp(buf + tok, "UNKNOWN", 7) == 0)
				st = V1_REST;
			continue;
		}
		why = v1_check_field(st, &family, buf + tok, i - tok,
		    st == V1_SRC || st == V1_DST ? addr[st - V1_SRC] : NULL);
		if (why != NULL)
			return fail(why_r, why);
		if (st == V1_SPORT || st == V1_DPORT)
			port[st - V1_SPORT] = v1_port(buf + tok, i - tok);
		if (c == '\r') {
			if (st != V1_DPORT)
				return fail(why_r, "v1 missing field");
			st = V1_LF;
		} else {
			if (st == V1_DPORT)
				return fail(why_r, "v1 extra field");
			st++;
			tok = i + 1;
		}
	}
	if (i == lim) {
		if (len >= PP_V1_MAX)
			return fail(why_r, "v1 line too long");
		return 0;
	}

	memset(h, 0, sizeof(*h));
	h->version = 1;
	h->local = st == V1_REST;
	if (!h->local) {
		set_addr(&h->src, family, addr[0], (unsigned)port[0]);
		set_addr(&h->dst, family, addr[1], (unsigned)port[1]);
	}
	*len_r = i + 1;
	return 1;
}

static unsigned
be16(const unsigned char *p)
{
	return ((unsigned)p[0] << 8) | p[1];
}

/* For a PROXY command: how many address bytes its family and protocol
 * byte fp needs, and whether the addresses are of no use to us. Any
 * family but IPv4 and IPv6 (unspecified, AF_UNIX) means the connection's
 * own addresses stand; a datagram protocol is never a mail client. */
static const char *
v2_check_family(unsigned char fp, size_t *need_r, bool *local_r)
{
	unsigned fam = fp >> 4, proto = fp & 0x0f;

	*need_r = 0;
	*local_r = true;
	if (fam > 3)
		return "v2 bad family";
	if (proto > 2)
		return "v2 bad protocol";
	if (proto == 2)
		return "v2 not TCP";
	if (fam == 1 || fam == 2) {
		if (proto != 1)
			return "v2 not TCP";
		*need_r = fam == 1 ? V2_IN4_LEN : V2_IN6_LEN;
		*local_r = false;
	}
	return NULL;
}

/* buf[0..len) starts with the v2 signature, len >= V2_SIG_LEN. */
static int
parse_v2(const unsigned char *buf, size_t len, struct pp_header *h,
    size_t *len_r, const char **why_r)
{
	const unsigned char *a;
	unsigned cmd;
	size_t body, need = 0;
	bool local = true;
	const char *why;

	/* Each byte of the fixed part is checked as soon as it is there. */
	if (len == V2_SIG_LEN)
		return 0;
	if (buf[12] >> 4 != V2_VERSION)
		return fail(why_r, "v2 bad version");
	cmd = buf[12] & 0x0f;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return fail(why_r, "v2 bad command");
	if (len == 13)
		return 0;
	if (cmd == V2_CMD_PROXY &&
	    (why = v2_check_family(buf[13], &need, &local)) != NULL)
		return fail(why_r, why);
	if (len < V2_FIXED_LEN)
		return 0;
	/* The length is checked before the body is waited for, so that a
	 * caller's PP_HEADER_MAX buffer always has room for the rest. */
	body = be16(buf + 14);
	if (body > PP_HEADER_MAX - V2_FIXED_LEN)
		return fail(why_r, "v2 header too long");
	if (body < need)
		return fail(why_r, "v2 addresses too short");
	if (len - V2_FIXED_LEN < body)
		return 0;

	/* Whatever follows the addresses (TLVs) is skipped unread. */
	memset(h, 0, sizeof(*h));
	h->version = 2;
	h->local = local;
	a = buf + V2_FIXED_LEN;
	if (need == V2_IN4_LEN) {
		set_addr(&h->src, AF_INET, a, be16(a + 8));
		set_addr(&h->dst, AF_INET, a + 4, be16(a + 10));
	} else if (need == V2_IN6_LEN) {
		set_addr(&h->src, AF_INET6, a, be16(a + 32));
		set_addr(&h->dst, AF_INET6, a + 16, be16(a + 34));
	}
	*len_r = V2_FIXED_LEN + body;
	return 1;
}

int
pp_parse(const unsigned char *buf, size_t len, struct pp_header *h,
    size_t *len_r, const char **why_r)
{
	*len_r = 0;
	*why_r = NULL;
	if (len == 0)
		return 0;
	/* The two signatures differ in their first byte. */
	if (memcmp(buf, V1_SIG, len < V1_SIG_LEN ? len : V1_SIG_LEN) == 0)
		return len < V1_SIG_LEN ? 0 :
		    parse_v1(buf, len, h, len_r, why_r);
	if (memcmp(buf, v2_sig, len < V2_SIG_LEN ? len : V2_SIG_LEN) == 0)
		return len < V2_SIG_LEN ? 0 :
		    parse_v2(buf, len, h, len_r, why_r);
	return fail(why_r, "not a PROXY header");
}
