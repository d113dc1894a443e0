/* PROXY protocol headers (v1 text, v2 binary) that a load balancer puts
 * before a client's bytes. Pure: no I/O, no allocation. */
#ifndef PROXYPROTO_H
#define PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PP_HEADER_MAX 1024	/* longest header accepted: v2 with TLVs */
#define PP_V1_MAX 107		/* longest v1 line, CRLF included */

struct pp_header {
	int version;			/* 1 or 2 */
	bool local;			/* v2 LOCAL, v1 UNKNOWN, or v2 with an
					 * unspecified or AF_UNIX family: use
					 * the connection's own addresses */
	struct sockaddr_storage src;	/* the client (when !local) */
	struct sockaddr_storage dst;	/* the address it reached (when !local) */
};

/* Parses the header at the start of buf[0..len).
 * 1: a whole header of *len_r bytes (<= PP_HEADER_MAX); *h is filled.
 * 0: need more bytes. What is there is a valid prefix and every one of
 *    the len bytes belongs to the header, so a caller that consumed them
 *    from a socket has taken nothing that follows the header.
 * -1: not a valid header; *why_r is a short static text naming the
 *    problem, for a log line (e.g. "not a PROXY header", "v2 header too
 *    long", "v1 line too long", "v1 bad address", "v2 not TCP", ...).
 * h, len_r and why_r must not be NULL. *h is left alone unless 1 is
 * returned; *len_r is 0 and *why_r NULL unless set as above. Nothing is
 * kept: the caller owns buf and the results. */
int pp_parse(const unsigned char *buf, size_t len, struct pp_header *h,
    size_t *len_r, const char **why_r);

#endif
