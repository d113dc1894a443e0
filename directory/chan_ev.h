/* A channel (chan.h) on a connected bufferevent: runs the handshake,
 * then hands each decrypted frame to a callback and seals what is sent.
 * The bufferevent's input evbuffer is the only socket buffer: frames are
 * fed to the channel from it in place.
 *
 * Callbacks run from the event loop. chan_ev_free may be called from any
 * of them (the free then happens when the callback chain unwinds); no
 * callback comes after it. */
#ifndef CHAN_EV_H
#define CHAN_EV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "chan.h"

struct bufferevent;
struct chan_ev;

/* The handshake completed; peer is valid as long as ce. */
typedef void (*chan_ev_ready_cb)(struct chan_ev *ce,
    const struct chan_peer *peer, void *arg);
/* One payload; it is valid until the callback returns. */
typedef void (*chan_ev_frame_cb)(struct chan_ev *ce, const uint8_t *payload,
    size_t len, void *arg);
/* The channel ended (protocol error, refused peer, timeout, connection
 * closed or broken); called once. reason is valid during the call. The
 * owner frees ce, here or later. */
typedef void (*chan_ev_closed_cb)(struct chan_ev *ce, const char *reason,
    void *arg);

struct chan_ev_cbs {
	chan_ev_ready_cb ready;
	chan_ev_frame_cb frame;
	chan_ev_closed_cb closed;
};

/* Takes ownership of bev (connected; freed with ce) and c (fresh from
 * chan_new); cbs is copied. hs_timeout (may be NULL: none) bounds the
 * whole handshake, not each read. Sends the initiator's HELLO. */
struct chan_ev *chan_ev_new(struct bufferevent *bev, struct chan *c,
    const struct chan_ev_cbs *cbs, void *arg,
    const struct timeval *hs_timeout);
/* Frees the bufferevent (closing its socket if it was made so) and the
 * channel, wiping its keys. NULL is fine. */
void chan_ev_free(struct chan_ev *ce);

/* Seals payload (len <= CHAN_FRAME_MAX) into the output. 0, or -1 when
 * not established yet, closed, or too long. */
int chan_ev_send(struct chan_ev *ce, const uint8_t *payload, size_t len);

/* Bytes queued for the peer, for the caller's high watermark. */
size_t chan_ev_pending(const struct chan_ev *ce);
/* The verified peer once ready, else NULL. */
const struct chan_peer *chan_ev_peer(const struct chan_ev *ce);

#endif
