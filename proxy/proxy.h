/* The proxy of one worker process: listeners, client sessions, back-end
 * logins and the relay. Protocol details live behind struct proxy_proto
 * (proxy_int.h); this is the face the daemon sees. */
#ifndef PROXY_H
#define PROXY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "dir.h"
#include "dkey.h"
#include "iptable.h"
#include "mm_config.h"
#include "proxy_tls.h"

struct proxy;

/* Creates the proxy of one worker. conf, dir, tls, ipt and transport_key
 * are borrowed and must outlive it; worker is this worker's index for the
 * shared counters. transport_key (with its secret; NULL: none) is what the
 * worker shows on the inter-node channel for cross-site sessions. */
struct proxy *proxy_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, const struct proxy_tls *tls, struct iptable *ipt,
    unsigned worker, const struct dkey *transport_key);

void proxy_free(struct proxy *px);

struct mm_metrics;

/* Counts into worker px's slot of m (shared memory the caller keeps) and
 * serves m on metrics listeners. */
void proxy_set_metrics(struct proxy *px, struct mm_metrics *m);

/* Starts accepting on fd (a bound, listening socket) for listener lc.
 * Returns 0 or -1. */
int proxy_listen(struct proxy *px, const struct mm_listener_conf *lc, int fd);

/* Starts accepting sessions from nodes of other sites on fd (bound to
 * session-listen). Returns 0 or -1. */
int proxy_listen_sessions(struct proxy *px, int fd);

/* Moves' dsync streams (dsync_tunnel.h): takes this site's back ends'
 * dsync connections on fd (bound to dsync-listen); and the agent's word
 * on where user's streams go (site "" forgets). Both 0 or -1 (no
 * transport key, or the table full). */
int proxy_listen_dsync(struct proxy *px, int fd);
int proxy_dsync_route(struct proxy *px, const char *user, const char *site,
    const char *backend);

/* SIGTERM: stop accepting; sessions carry on until they end or until
 * deadline (monotonic ms), when the rest are closed. done_cb runs once
 * no session is left. */
void proxy_drain(struct proxy *px, uint64_t deadline_ms,
    void (*done_cb)(void *), void *arg);

size_t proxy_session_count(const struct proxy *px);

/* One open session as `mmctl sessions` shows it; strings valid during the
 * call. */
struct proxy_session_view {
	uint64_t id;
	const char *user;	/* escaped; "" before a login was tried */
	const char *client;	/* address:port */
	const char *proto;	/* imap, pop3, smtp */
	const char *state;	/* prelogin, login, relay, closing */
	const char *backend;	/* its name, site:S across sites, or "" */
	uint64_t since;		/* unix seconds */
	uint64_t bytes_in, bytes_out;	/* from and to the client */
};
/* Calls cb for every open session (of user, when not NULL: its name as
 * the session holds it, case-insensitive). */
typedef void (*proxy_session_cb)(const struct proxy_session_view *v,
    void *arg);
void proxy_foreach_session(const struct proxy *px, const char *user,
    proxy_session_cb cb, void *arg);

/* Ends every logged-in IMAP and POP3 session of user (normalised here as
 * for a login): what the back end sent is delivered, then IMAP's
 * "* BYE [UNAVAILABLE] reason" or POP3's "-ERR [SYS/TEMP] reason", then
 * the close. Logins still in progress are left to finish or to be held.
 * Returns how many sessions it ended. */
size_t proxy_kick_user(struct proxy *px, const char *user,
    const char *reason);

#endif
