/* One end of a socketpair carrying mm_imsg frames (ichan.h). */
#include "ichan.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "mm_util.h"

struct ichan {
	struct bufferevent *bev;
	ichan_frame_cb frame;
	ichan_closed_cb closed;
	void *arg;
	int depth;		/* inside read_cb */
	int dead;		/* closed was called, or ichan_free */
};

static void
close_with(struct ichan *ic, const char *why)
{
	if (ic->dead)
		return;
	ic->dead = 1;
	bufferevent_disable(ic->bev, EV_READ | EV_WRITE);
	ic->closed(ic, why, ic->arg);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct ichan *ic = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hb[MM_IMSG_HDR_LEN];
	struct mm_imsg_hdr h;
	const char *why = NULL;

	ic->depth++;
	while (!ic->dead &&
	    evbuffer_copyout(in, hb, sizeof(hb)) == (ev_ssize_t)sizeof(hb)) {
		if (mm_imsg_hdr_decode(hb, &h, &why) < 0) {
			close_with(ic, why);
			break;
		}
		if (evbuffer_get_length(in) < sizeof(hb) + h.len)
			break;
		evbuffer_drain(in, sizeof(hb));
		ic->frame(ic, &h, evbuffer_pullup(in, (ev_ssize_t)h.len),
		    ic->arg);
		evbuffer_drain(in, h.len);
	}
	if (--ic->depth == 0 && ic->dead && ic->bev == NULL)
		free(ic);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ichan *ic = arg;

	if (what & BEV_EVENT_EOF)
		close_with(ic, "closed by the other process");
	else if (what & BEV_EVENT_ERROR)
		close_with(ic, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
}

struct ichan *
ichan_new(struct event_base *base, int fd, ichan_frame_cb frame,
    ichan_closed_cb closed, void *arg)
{
	struct ichan *ic;

	if (evutil_make_socket_nonblocking(fd) != 0)
		return NULL;
	ic = xcalloc(1, sizeof(*ic));
	ic->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ic->bev == NULL) {
		free(ic);
		return NULL;
	}
	ic->frame = frame;
	ic->closed = closed;
	ic->arg = arg;
	bufferevent_setcb(ic->bev, read_cb, NULL, event_cb, ic);
	bufferevent_enable(ic->bev, EV_READ | EV_WRITE);
	return ic;
}

void
ichan_free(struct ichan *ic)
{
	if (ic == NULL)
		return;
	ic->dead = 1;
	bufferevent_free(ic->bev);
	ic->bev = NULL;
	/* Inside our own read callback: freed when it returns. */
	if (ic->depth == 0)
		free(ic);
}

static int
send_hdr(struct ichan *ic, const struct mm_imsg_hdr *h, const uint8_t *body)
{
	uint8_t hb[MM_IMSG_HDR_LEN];
	struct evbuffer *out;

	if (ic->dead || h->len > MM_IMSG_BODY_MAX)
		return -1;
	out = bufferevent_get_output(ic->bev);
	if (evbuffer_get_length(out) + sizeof(hb) + h->len > ICHAN_OUT_MAX)
		return -1;
	mm_imsg_hdr_encode(h, hb);
	if (evbuffer_add(out, hb, sizeof(hb)) != 0 ||
	    (h->len > 0 && evbuffer_add(out, body, h->len) != 0))
		return -1;
	return 0;
}

int
ichan_send(struct ichan *ic, uint8_t type, uint16_t src, uint16_t dst,
    uint32_t id, const uint8_t *body, size_t len)
{
	struct mm_imsg_hdr h = { (uint32_t)len, MM_IMSG_VERSION, type, src,
		dst, id };

	if (len > MM_IMSG_BODY_MAX)
		return -1;
	return send_hdr(ic, &h, body);
}

int
ichan_forward(struct ichan *ic, const struct mm_imsg_hdr *h, uint16_t dst,
    const uint8_t *body)
{
	struct mm_imsg_hdr f = *h;

	f.dst = dst;
	return send_hdr(ic, &f, body);
}
