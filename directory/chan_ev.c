/* A channel on a bufferevent (see chan_ev.h). */
#include "chan_ev.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "mm_util.h"

#define CHAN_EV_REASON_MAX 256

struct chan_ev {
	struct bufferevent *bev;
	struct chan *chan;
	struct chan_ev_cbs cbs;
	void *arg;
	struct event *hs_timer;		/* NULL: no handshake deadline */
	int depth;			/* callbacks on the stack */
	int reading;			/* inside read_cb's loop */
	int closed;			/* the closed callback was called */
	int free_pending;		/* chan_ev_free came during a callback */
};

static void
really_free(struct chan_ev *ce)
{
	if (ce->hs_timer != NULL)
		event_free(ce->hs_timer);
	/* A socket tells the peer by closing; a paired bufferevent needs
	 * this to pass the end on. */
	bufferevent_flush(ce->bev, EV_WRITE, BEV_FINISHED);
	bufferevent_free(ce->bev);
	chan_free(ce->chan);
	free(ce);
}

/* Leaves a callback; frees ce when asked to meanwhile. Returns 1 when ce
 * is gone (or going) and the caller must not touch it again. */
static int
leave(struct chan_ev *ce)
{
	if (--ce->depth == 0 && ce->free_pending) {
		really_free(ce);
		return 1;
	}
	return ce->free_pending;
}

static void
close_with(struct chan_ev *ce, const char *reason)
{
	char copy[CHAN_EV_REASON_MAX];

	if (ce->closed || ce->free_pending)
		return;
	ce->closed = 1;
	if (ce->hs_timer != NULL)
		evtimer_del(ce->hs_timer);
	bufferevent_disable(ce->bev, EV_READ | EV_WRITE);
	/* reason may live in the channel, which the callback can free. */
	mm_strlcpy(copy, reason, sizeof(copy));
	if (ce->cbs.closed != NULL)
		ce->cbs.closed(ce, copy, ce->arg);
}

/* Moves pending handshake bytes to the bufferevent. */
static int
flush_out(struct chan_ev *ce)
{
	const uint8_t *p;
	size_t n;

	if ((p = chan_out(ce->chan, &n)) == NULL)
		return 0;
	if (bufferevent_write(ce->bev, p, n) != 0)
		return -1;
	chan_out_done(ce->chan, n);
	return 0;
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct chan_ev *ce = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	/* A send from one of our callbacks can make a paired bufferevent
	 * call back in here; the loop below picks that input up. */
	if (ce->reading || ce->closed || ce->free_pending)
		return;
	ce->depth++;
	ce->reading = 1;
	while (!ce->closed && !ce->free_pending &&
	    evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		const uint8_t *payload;
		size_t used, plen;
		enum chan_result res;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		res = chan_feed(ce->chan, v.iov_base, v.iov_len, &used,
		    &payload, &plen);
		evbuffer_drain(in, used);
		if (res == CHAN_ERROR) {
			close_with(ce, chan_error(ce->chan));
			break;
		}
		if (flush_out(ce) < 0) {
			close_with(ce, "cannot queue output");
			break;
		}
		if (res == CHAN_ESTABLISHED) {
			if (ce->hs_timer != NULL)
				evtimer_del(ce->hs_timer);
			if (ce->cbs.ready != NULL)
				ce->cbs.ready(ce, chan_peer(ce->chan),
				    ce->arg);
		} else if (res == CHAN_FRAME && ce->cbs.frame != NULL)
			ce->cbs.frame(ce, payload, plen, ce->arg);
	}
	ce->reading = 0;
	leave(ce);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct chan_ev *ce = arg;
	char why[CHAN_EV_REASON_MAX];

	if (ce->closed || ce->free_pending)
		return;
	ce->depth++;
	if (what & BEV_EVENT_EOF) {
		/* Input read before the EOF is delivered first. */
		if (!ce->reading && evbuffer_get_length(
		    bufferevent_get_input(bev)) > 0)
			read_cb(bev, ce);
		if (!ce->closed && !ce->free_pending) {
			if (chan_eof(ce->chan) == 0)
				close_with(ce, "connection closed by peer");
			else
				close_with(ce, chan_error(ce->chan));
		}
	} else if (what & BEV_EVENT_ERROR) {
		snprintf(why, sizeof(why), "connection error: %s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		close_with(ce, why);
	} else if (what & BEV_EVENT_TIMEOUT)
		close_with(ce, "connection timed out");
	leave(ce);
}

static void
hs_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct chan_ev *ce = arg;

	if (ce->closed || ce->free_pending)
		return;
	ce->depth++;
	close_with(ce, "handshake timed out");
	leave(ce);
}

struct chan_ev *
chan_ev_new(struct bufferevent *bev, struct chan *c,
    const struct chan_ev_cbs *cbs, void *arg,
    const struct timeval *hs_timeout)
{
	struct chan_ev *ce = xcalloc(1, sizeof(*ce));

	ce->bev = bev;
	ce->chan = c;
	ce->cbs = *cbs;
	ce->arg = arg;
	if (hs_timeout != NULL) {
		ce->hs_timer = evtimer_new(bufferevent_get_base(bev),
		    hs_timeout_cb, ce);
		if (ce->hs_timer == NULL)
			abort();
		evtimer_add(ce->hs_timer, hs_timeout);
	}
	bufferevent_setcb(bev, read_cb, NULL, event_cb, ce);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	if (flush_out(ce) < 0)
		abort();	/* an evbuffer append fails only without memory */
	return ce;
}

void
chan_ev_free(struct chan_ev *ce)
{
	if (ce == NULL)
		return;
	if (ce->depth > 0) {
		/* Inside our own callback chain: free when it unwinds. */
		if (!ce->free_pending) {
			ce->free_pending = 1;
			if (ce->hs_timer != NULL)
				evtimer_del(ce->hs_timer);
			bufferevent_disable(ce->bev, EV_READ | EV_WRITE);
		}
		return;
	}
	really_free(ce);
}

int
chan_ev_send(struct chan_ev *ce, const uint8_t *payload, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(ce->bev);
	struct evbuffer_iovec v;
	long n;

	if (ce->closed || ce->free_pending || !chan_established(ce->chan) ||
	    len > CHAN_FRAME_MAX)
		return -1;
	if (evbuffer_reserve_space(out, (ev_ssize_t)CHAN_FRAME_LEN(len), &v,
	    1) != 1)
		return -1;
	n = chan_seal(ce->chan, payload, len, v.iov_base, v.iov_len);
	if (n < 0) {
		v.iov_len = 0;
		evbuffer_commit_space(out, &v, 1);
		return -1;
	}
	v.iov_len = (size_t)n;
	return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : -1;
}

size_t
chan_ev_pending(const struct chan_ev *ce)
{
	return evbuffer_get_length(bufferevent_get_output(ce->bev));
}

const struct chan_peer *
chan_ev_peer(const struct chan_ev *ce)
{
	return chan_peer(ce->chan);
}
