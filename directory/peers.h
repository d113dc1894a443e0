/* The directory agent's peers: the inter-node channels (chan_ev.h) to the
 * other nodes, dialled on demand and from the configured seeds with
 * back-off, refused unless the peer's certificate is trusted; the gossip
 * core (gossip.h) run over them from one timer, with the store as its
 * record source and ops_gossip_accept as its accept rule; and the
 * membership snapshot written to the store for the proxy workers, which
 * route cross-site sessions by it.
 *
 * Frames: every channel payload starts with one type byte (enum
 * peer_frame), then the message (gossip.h or check.h). A frame that is
 * empty or of a type nobody takes is logged and dropped. Messages to one
 * peer may be lost (a slow peer's queue is bounded); nothing is retried
 * here.
 *
 * Runs on the agent's event loop; callbacks come from it. */
#ifndef PEERS_H
#define PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkey.h"
#include "gossip.h"
#include "mm_config.h"
#include "trust.h"

enum peer_frame {
	PEER_FRAME_GOSSIP = 1,	/* a gossip message: to the gossip core */
	PEER_FRAME_CHECK = 2,	/* a check message (check.h) */
	PEER_FRAME_MOVE = 3,	/* a move message (migrate/move_msg.h) */
};

struct event_base;
struct ops;
struct peers;
struct pconn;			/* one channel to a peer */
struct store;

/* A frame of a type set with peers_set_frame_cb: msg (len bytes, the
 * payload after the type byte) is valid during the call only; from is
 * the channel it came on, valid during the call (answer on it with
 * peers_send_conn). */
typedef void (*peers_frame_cb)(void *arg, struct pconn *from,
    const uint8_t *msg, size_t len);

/* Starts gossip on peer_fd (a bound, listening TCP socket; the peers own
 * it from now on) on base: accepts peers there and dials conf's seeds.
 * Records received are accepted, and everything the peers write to the
 * store written, on writer's thread (jobs.h); the loop only reads.
 * base, conf, o, key (the node key, whose certificate in o's store the
 * channels show) and writer must outlive the peers. Tells o the gossip
 * instance (ops_set_gossip). Exits the process (fatalx) when the store
 * holds no certificate of key for the site, or conf's names are too
 * long. */
struct jobs;
struct peers *peers_new(struct event_base *base, const struct mm_config *conf,
    struct ops *o, const struct dkey *key, int peer_fd, struct jobs *writer);
/* Closes every channel and the listener, stops gossip (and tells the ops
 * so). The writer's jobs must be done first (jobs_free). NULL is fine. */
void peers_free(struct peers *p);

/* The gossip instance (the peers'), or NULL when p is NULL. */
struct gossip *peers_gossip(struct peers *p);

/* Frames of type (not PEER_FRAME_GOSSIP) go to cb with arg from now on;
 * cb NULL: dropped again. */
void peers_set_frame_cb(struct peers *p, enum peer_frame type,
    peers_frame_cb cb, void *arg);

/* Sends msg (copied) as a frame of type to the member named to, dialling
 * it when no channel is up (subject to back-off; a frame for a channel
 * still in its handshake is held until it is done). Silently lost when
 * to cannot be reached. */
void peers_send(struct peers *p, const char *to, enum peer_frame type,
    const uint8_t *msg, size_t len);
/* The same on channel c, from a peers_frame_cb. */
void peers_send_conn(struct pconn *c, enum peer_frame type,
    const uint8_t *msg, size_t len);
/* The name and site of c's peer (its certificate's), valid as long as
 * c. */
const char *peers_conn_name(const struct pconn *c);
const char *peers_conn_site(const struct pconn *c);

/* For a node without gossip: removes the membership snapshot an earlier
 * run left in st, which must not route sessions. */
void peers_unpublish(struct store *st);

/* The trust callback of every gossip channel, read-only: the one trust
 * rule (trust.h, TRUST_USE_NODE) for the CERT envelope a peer shows
 * (env, len), with st's root key and revocations at now (unix seconds); a
 * certificate st holds for the same key, issued no earlier, decides
 * instead. On TRUST_OK, peer's role, site and name are the deciding
 * certificate's, and *learn_r says whether st lacks it (the channel's
 * callback has the writer store it). */
struct chan_peer;
enum trust_verdict peers_cert_check(struct store *st, const uint8_t *env,
    size_t len, uint64_t now, struct chan_peer *peer, bool *learn_r);

#endif
