/* A move's dsync streams between sites: back ends never need a route to
 * another site, so the nodes carry the stream over the cross-site channel
 * (xsite.h), which authenticates and encrypts it.
 *
 * Source site: the move engine has this site's back end run
 * `doveadm sync|backup ... tcp:DSYNC_LISTEN` for the user; its doveadm
 * connects to this node's dsync-listen, where a worker answers as a
 * doveadm server would: the version, the doveadm password (the one of any
 * back end of this site that moves by dsync), then the command, which must
 * be `dsync-server` for a user the agent has routed (dtun_route: user ->
 * target site and back end). The worker opens a link of kind dsync to the
 * target site and sends the client's version line and the command line as
 * the stream's first two lines; from then on bytes flow both ways
 * untouched.
 *
 * Target site: a dsync link is taken when the directory says the user is
 * moving from the peer's site to this one (MOVING or FROZEN with this site
 * as target) or is being handed to it (TRANSFER: the pass after the
 * commit), and the back end named is one of this site's that moves by
 * dsync. The worker connects to that back end's doveadm server, sends the
 * version line, logs in with the back end's password, checks the command
 * line (dsync-server for the same user) and sends it on; then bytes flow
 * both ways.
 *
 * Both sides bound the lines they read (DTUN_LINE_MAX), the whole
 * handshake (DTUN_HANDSHAKE_MS) and a silent stream (DTUN_IDLE_MS), and
 * stop reading one side while the other holds DTUN_BUFFER bytes. */
#ifndef DSYNC_TUNNEL_H
#define DSYNC_TUNNEL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "dir.h"
#include "mm_config.h"
#include "xsite.h"

#define DTUN_LINE_MAX 4096		/* a handshake or command line */
#define DTUN_HANDSHAKE_MS 30000
#define DTUN_IDLE_MS (10 * 60 * 1000)
#define DTUN_BUFFER (1024 * 1024)	/* per direction */
#define DTUN_ROUTES_MAX 4096		/* users routed at once */
#define DTUN_ROUTE_TTL_MS (60 * 60 * 1000)

struct dtun;

/* One worker's tunnels. conf, dir and xs are borrowed and must outlive it.
 * Nothing listens until dtun_listen. */
struct dtun *dtun_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, struct xsite *xs);
/* Closes the listener and every stream. NULL is fine. */
void dtun_free(struct dtun *dt);

/* Counts the bytes of the streams in slot (NULL: none). */
struct mm_metrics_slot;
void dtun_set_metrics(struct dtun *dt, struct mm_metrics_slot *slot);

/* Takes connections on fd (bound and listening; the dtun owns it). 0/-1. */
int dtun_listen(struct dtun *dt, int fd);

/* The agent says where user's streams go: to back end backend of site
 * site, for DTUN_ROUTE_TTL_MS; site "" forgets the user. 0, or -1 when
 * the table is full or a name is too long. */
int dtun_route(struct dtun *dt, const char *user, const char *site,
    const char *backend, uint64_t now_ms);

/* A link of kind dsync came in (req->dsync): outer and xl are the dtun's
 * from now on. */
void dtun_accept_link(struct dtun *dt, struct xlink *xl,
    struct bufferevent *outer, const struct xsite_req *req);

/* Streams open (for `mmctl sessions` and tests). */
size_t dtun_count(const struct dtun *dt);

#endif
