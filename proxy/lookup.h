/* The directory's answers for the servers ISPs already run, served by each
 * worker from its read-only view of the directory (no IPC on the way):
 * a Postfix socketmap (socketmap_table(5)) and nginx mail's auth_http;
 * and the node's counters for Prometheus (GET /metrics). */
#ifndef LOOKUP_H
#define LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "dir.h"
#include "mm_config.h"

#define LOOKUP_CONN_MAX 1024		/* lookup connections per worker */
#define LOOKUP_SOCKETMAP_REQ_MAX 2048	/* bytes in one request "NAME KEY" */
#define LOOKUP_SOCKETMAP_IDLE_MS (5 * 60 * 1000)
#define LOOKUP_HTTP_READ_MS 10000	/* for nginx's whole request head */
#define LOOKUP_WRITE_MS 10000		/* a reply the peer does not read */
#define LOOKUP_OUT_MAX (64 * 1024)	/* replies queued before reading stops */
#define LOOKUP_REPLY_MAX 640		/* one socketmap reply or HTTP answer */
#define LOOKUP_METRICS_MAX (1024 * 1024)	/* the largest scrape answer */
#define LOOKUP_SMTP_ATTEMPTS_MAX 10	/* nginx asks per RCPT; its docs want
					 * a close within 10-20 attempts */

struct lookup;

/* conf and dir are borrowed and must outlive the lookup; the caller owns
 * the result (lookup_free). */
struct lookup *lookup_new(struct event_base *base,
    const struct mm_config *conf, struct dir *dir);

struct mm_metrics;

/* What metrics listeners serve (borrowed; NULL: 503). */
void lookup_set_metrics(struct lookup *lk, const struct mm_metrics *m);

/* Closes the listeners and every connection. NULL is ignored. */
void lookup_free(struct lookup *lk);

/* Starts answering on fd (bound, listening; borrowed, as by proxy_listen)
 * for lc, whose kind is MM_LISTEN_SOCKETMAP, MM_LISTEN_AUTH_HTTP or
 * MM_LISTEN_METRICS; lc is
 * borrowed from the config. 0 or -1. */
int lookup_listen(struct lookup *lk, const struct mm_listener_conf *lc,
    int fd);

/* SIGTERM: stops accepting; idle socketmap connections close now, the
 * others once their answer is written (Postfix and nginx reconnect to
 * another node). */
void lookup_drain(struct lookup *lk);

size_t lookup_conn_count(const struct lookup *lk);

/* ---- the answers, pure (no I/O; the unit tests call these) ---------- */

enum lookup_map {
	LOOKUP_MAP_TRANSPORT,	/* transport_maps: where the mail goes */
	LOOKUP_MAP_RECIPIENT,	/* relay_recipient_maps: is the user known */
};

/* The socketmap reply (without the netstring around it) for the result
 * r of the lookup of a recipient in map, route as dir_lookup filled it:
 * "OK value", "NOTFOUND ", "TEMP reason". Written NUL-terminated into
 * out; returns its length, 0 if it does not fit. */
size_t lookup_socketmap_reply(enum lookup_map map, enum dir_result r,
    const struct dir_route *route, const struct mm_config *conf, char *out,
    size_t outlen);

/* What an auth_http answer says. Strings are static. */
struct lookup_auth {
	bool ok;			/* Auth-Status: OK */
	char server[DIR_HOST_MAX];	/* ok: Auth-Server, no brackets; a
					 * DNS name must be resolved first */
	uint16_t port;			/* ok: Auth-Port */
	const char *status;		/* !ok: Auth-Status text */
	const char *error_code;		/* !ok, SMTP: Auth-Error-Code */
	unsigned wait;			/* !ok: Auth-Wait seconds, 0: none (nginx
					 * then closes the client connection) */
	const char *reason;		/* for the log; NULL: none */
};

/* The answer for a lookup of proto with result r and route. attempt is
 * nginx's Auth-Login-Attempt: past the limit (auth_fail_max for IMAP and
 * POP3, LOOKUP_SMTP_ATTEMPTS_MAX for SMTP) a failure carries no Auth-Wait,
 * so nginx ends the session. */
void lookup_auth_answer(enum mm_proto proto, enum dir_result r,
    const struct dir_route *route, const struct mm_config *conf,
    unsigned attempt, struct lookup_auth *a_r);

/* A temporary failure for reasons found before the directory is asked
 * (authentication nginx cannot hand over, a name that does not resolve). */
void lookup_auth_tempfail(enum mm_proto proto, const struct mm_config *conf,
    unsigned attempt, const char *reason, struct lookup_auth *a_r);

/* The HTTP response for a: "HTTP/1.0 200 OK" and the Auth-* headers.
 * Written NUL-terminated into out; returns its length, 0 if it does not
 * fit. */
size_t lookup_auth_format(const struct lookup_auth *a, char *out,
    size_t outlen);

/* Splits "HOST:PORT" or "[v6]:PORT" (a lookup-relay value) into host
 * (hostlen bytes, brackets removed) and port. 0 or -1. */
int lookup_split_addr(const char *addr, char *host, size_t hostlen,
    uint16_t *port_r);

#endif
