/* Cross-site sessions: a byte stream between a proxy session on this node
 * and one on a node of another site, carried by the inter-node channel
 * (chan_ev.h) and authenticated with the worker's transport key.
 *
 * The initiator (the node the client reached) connects to a session
 * endpoint of the owner site, runs the channel handshake, and sends one
 * session request frame:
 *   [version (1), proto, user, client address (numeric text), client
 *    port, hop limit, session id]
 * msgpack, fields in this order, at most XSITE_REQ_MAX bytes. The
 * responder runs a normal proxy session whose client is the channel: the
 * initiator then speaks the protocol to it as to any back end (greeting,
 * SASL PLAIN login, relay). Every later frame carries stream bytes.
 *
 * A dsync stream for a move has proto XSITE_PROTO_DSYNC and an eighth
 * field, the name of the target back end: [..., session id, back end].
 *
 * Each side's session sees the link as one end of a bufferevent pair; the
 * other end is glued to the channel here, with the relay's backpressure:
 * a frame source stops reading while the other side holds relay-buffer
 * bytes, and resumes below half of that. Either end closing closes the
 * other: the channel's end reaches the session as an EOF on its pair end,
 * and a session that frees its end calls xlink_close.
 *
 * Trust: the peer's CERT must be signed by the cluster root, not revoked
 * nor expired, of role transport, node or site; the initiator also wants
 * it to be of the site it asked for. */
#ifndef XSITE_H
#define XSITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "dir.h"
#include "dkey.h"
#include "mm_config.h"

#define XSITE_VERSION 1
#define XSITE_HOPS 2			/* channel hops one session may take */
#define XSITE_ADDR_MAX 64		/* a numeric address as text */
#define XSITE_REQ_MAX 1024		/* largest session request */
#define XSITE_CHUNK (64 * 1024)		/* stream bytes per frame */
#define XSITE_CLOSE_FLUSH_MS 5000	/* time to send what is queued */
#define XSITE_ENDPOINTS_MAX 8		/* nodes of a site tried per session */
#define XSITE_EP_MIN_MS 500		/* least time one endpoint gets */

/* The proto value of a dsync stream for a move (see dsync_tunnel.h). */
#define XSITE_PROTO_DSYNC MM_PROTO_COUNT
#define XSITE_BACKEND_MAX 64		/* a back-end name (as the config's) */

struct xsite_req {
	/* A protocol session, or (dsync true) a move's dsync stream to
	 * back end `backend` of the site dialled; proto is then unused. */
	enum mm_proto proto;
	bool dsync;
	char backend[XSITE_BACKEND_MAX + 1];
	char user[DIR_USER_MAX + 1];
	char caddr[XSITE_ADDR_MAX];	/* numeric IPv4 or IPv6 */
	uint16_t cport;
	unsigned hops;			/* channel hops left, 1..XSITE_HOPS */
	uint64_t sid;			/* the initiator's session id */
};

/* Encodes rq into out. Returns the length, or -1 when it does not fit. */
int xsite_req_encode(const struct xsite_req *rq, uint8_t *out,
    size_t outlen);
/* Decodes and checks a request (pure). 0, or -1 with *why_r (static). */
int xsite_req_decode(const uint8_t *buf, size_t len, struct xsite_req *rq,
    const char **why_r);

struct xsite;
struct xlink;

struct xlink_cbs {
	/* The link carries bytes now. outer is the session's end of the
	 * stream, owned by the callee from here on. req is the request of
	 * an accepted link (NULL for one this side opened); it is valid
	 * during the call only. */
	void (*up)(struct xlink *xl, struct bufferevent *outer,
	    const struct xsite_req *req, void *arg);
	/* An outgoing link could not be made; reason is for the log and
	 * valid during the call. The owner still calls xlink_close. */
	void (*failed)(struct xlink *xl, const char *reason, void *arg);
};

/* The cross-site side of one worker. conf and dir are borrowed; key (the
 * transport key, with its secret) is borrowed and may be NULL (no
 * cross-site sessions). Its certificate is found in the directory when
 * first needed. */
struct xsite *xsite_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, const struct dkey *key);
/* Frees every link still open (their owners must be gone). NULL is fine. */
void xsite_free(struct xsite *xs);

/* The trust rule (trust.h) for cross-site links, with the directory's
 * store, at now (unix seconds). xsite_identity: this worker's transport
 * key is certified as transport for its site (TRUST_USE_TRANSPORT); the
 * certificate is kept once found. xsite_peer_check: a peer's certificate
 * (env, len: the CERT envelope its handshake shows) may carry sessions
 * (TRUST_USE_SESSION), for site when this side dialled one (NULL: a link
 * accepted from any site); *cert_r is the certificate that decided (a
 * newer one the store holds for the key decides instead of the one
 * shown). Both 0, or -1 with *why_r (static). */
int xsite_identity(struct xsite *xs, uint64_t now, const char **why_r);
int xsite_peer_check(struct xsite *xs, const uint8_t *env, size_t len,
    const char *site, uint64_t now, struct record_cert *cert_r,
    const char **why_r);

/* Opens a link to a node of site for req (copied), trying the site's
 * nodes nearest first: the alive ones of the membership snapshot that
 * gossip keeps (dir_site_endpoints) by round-trip time, then suspect
 * ones, never dead ones; when the snapshot names none, the site-route
 * endpoints of the config in order. Each endpoint gets a share of
 * timeout_ms (at least XSITE_EP_MIN_MS) so that one that does not answer
 * leaves time for the next; cbs is copied and called later, never from
 * inside this call. NULL with *why_r (static) when there is no route or
 * no usable transport identity. The caller owns the link. */
struct xlink *xsite_connect(struct xsite *xs, const char *site,
    const struct xsite_req *req, const struct xlink_cbs *cbs, void *arg,
    uint64_t timeout_ms, const char **why_r);

/* Takes an accepted connection on the session listener. The link belongs
 * to xs until cbs->up hands it (with its request) to the callee, which
 * owns it from then on; a link that fails before is logged and freed
 * here. */
void xsite_accept(struct xsite *xs, evutil_socket_t fd,
    const struct xlink_cbs *cbs, void *arg, uint64_t timeout_ms);

/* Frees accepted links that have not brought their request yet (drain). */
void xsite_drop_pending(struct xsite *xs);

/* The owner is done: bytes already taken are sent, then the channel is
 * closed (within XSITE_CLOSE_FLUSH_MS). Never calls back. NULL is fine. */
void xlink_close(struct xlink *xl);

/* The peer node's site and name once the handshake is done ("-" before),
 * and the address of the connection. Valid as long as the link. */
const char *xlink_peer_site(const struct xlink *xl);
const char *xlink_peer_name(const struct xlink *xl);
const char *xlink_addr(const struct xlink *xl);
/* This node's address on the link's connection. 0, or -1 when closed. */
int xlink_local_addr(const struct xlink *xl, struct sockaddr_storage *ss_r);

#endif
