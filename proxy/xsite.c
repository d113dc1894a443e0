/* Cross-site links: the channel to a node of another site, glued to a
 * bufferevent pair (see xsite.h). */
#include "xsite.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "chan.h"
#include "chan_ev.h"
#include "mm_log.h"
#include "mm_msgpack.h"
#include "mm_util.h"

#define XSITE_REQ_FIELDS 7
#define XSITE_WHY_MAX 160
#define XSITE_FLUSH_POLL_MS 20

enum xl_state {
	XL_CONNECTING,	/* TCP connect to an endpoint */
	XL_HANDSHAKE,	/* channel handshake */
	XL_WAIT_REQ,	/* responder: waiting for the session request */
	XL_UP,		/* stream bytes flow */
	XL_FAILED,	/* initiator: told the owner, waiting for its close */
	XL_CLOSING,	/* flushing what is queued, then freed */
};

struct xsite {
	struct event_base *base;
	const struct mm_config *conf;
	struct dir *dir;
	const struct dkey *key;
	uint8_t *cert;			/* our CERT envelope, once found */
	size_t cert_len;
	struct xlink *links;		/* every link not yet freed */
};

struct xlink {
	struct xsite *xs;
	struct xlink *prev, *next;
	enum xl_state state;
	bool initiator;
	bool owned;			/* handed to a caller */
	struct xlink_cbs cbs;
	void *arg;
	uint64_t timeout_ms;
	char site[DIR_SITE_MAX + 1];	/* initiator: the site wanted */
	struct dir_endpoint eps[XSITE_ENDPOINTS_MAX];	/* to try, in order */
	size_t n_eps, next_ep;
	bool from_gossip;		/* eps: the membership snapshot */
	uint64_t deadline_ms;		/* of the whole attempt */
	char addr[DIR_ADDR_MAX + 1];	/* endpoint, or the peer's address */
	uint8_t req[XSITE_REQ_MAX];	/* initiator: the encoded request */
	size_t req_len;
	struct bufferevent *sock;	/* the connection (chan_ev owns it) */
	struct chan_ev *ce;		/* NULL once ended */
	struct evbuffer_cb_entry *out_cb;
	struct bufferevent *inner;	/* our end of the pair */
	struct event *timer;		/* deadline; close flush */
	struct event *kick;		/* resumes reading the pair */
	uint64_t close_deadline_ms;
	bool inner_paused;		/* the channel has too much queued */
	bool chan_paused;		/* the session is not taking bytes */
	char peer_site[DIR_SITE_MAX + 1];
	char peer_name[RECORD_NAME_MAX + 1];
	char why[XSITE_WHY_MAX];
};

static void try_next(struct xlink *xl);
static void link_fail(struct xlink *xl, const char *why);

/* ---- the session request -------------------------------------------- */

int
xsite_req_encode(const struct xsite_req *rq, uint8_t *out, size_t outlen)
{
	struct mm_mp_writer w;

	if (rq->dsync && (rq->backend[0] == '\0' ||
	    strlen(rq->backend) > XSITE_BACKEND_MAX))
		return -1;
	mm_mp_writer_init(&w, out, outlen);
	mm_mp_put_array(&w, XSITE_REQ_FIELDS + (rq->dsync ? 1 : 0));
	mm_mp_put_uint(&w, XSITE_VERSION);
	mm_mp_put_uint(&w, rq->dsync ? XSITE_PROTO_DSYNC :
	    (uint64_t)rq->proto);
	mm_mp_put_str(&w, rq->user);
	mm_mp_put_str(&w, rq->caddr);
	mm_mp_put_uint(&w, rq->cport);
	mm_mp_put_uint(&w, rq->hops);
	mm_mp_put_uint(&w, rq->sid);
	if (rq->dsync)
		mm_mp_put_str(&w, rq->backend);
	if (!mm_mp_writer_ok(&w))
		return -1;
	return (int)mm_mp_writer_len(&w);
}

int
xsite_req_decode(const uint8_t *buf, size_t len, struct xsite_req *rq,
    const char **why_r)
{
	struct mm_mp_reader r;
	struct in6_addr a6;
	struct in_addr a4;
	uint64_t version = 0, proto = 0, port = 0, hops = 0;
	uint32_t n = 0;

	memset(rq, 0, sizeof(*rq));
	if (len > XSITE_REQ_MAX) {
		*why_r = "request too long";
		return -1;
	}
	mm_mp_reader_init(&r, buf, len);
	if (mm_mp_get_array(&r, XSITE_REQ_FIELDS + 1, &n) != 0 ||
	    n < XSITE_REQ_FIELDS || mm_mp_get_uint(&r, &version) != 0) {
		*why_r = r.why != NULL ? r.why : "malformed request";
		return -1;
	}
	if (version != XSITE_VERSION) {
		*why_r = "unknown request version";
		return -1;
	}
	if (mm_mp_get_uint_max(&r, XSITE_PROTO_DSYNC, &proto) != 0 ||
	    mm_mp_get_str(&r, rq->user, DIR_USER_MAX) != 0 ||
	    mm_mp_get_str(&r, rq->caddr, XSITE_ADDR_MAX - 1) != 0 ||
	    mm_mp_get_uint_max(&r, 65535, &port) != 0 ||
	    mm_mp_get_uint_max(&r, XSITE_HOPS, &hops) != 0 ||
	    mm_mp_get_uint(&r, &rq->sid) != 0 ||
	    (n > XSITE_REQ_FIELDS && mm_mp_get_str(&r, rq->backend,
	    XSITE_BACKEND_MAX) != 0) || mm_mp_end(&r) != 0) {
		*why_r = r.why != NULL ? r.why : "malformed request";
		return -1;
	}
	rq->dsync = proto == XSITE_PROTO_DSYNC;
	/* The back end comes with a dsync stream, and only with one. */
	if (rq->dsync != (n > XSITE_REQ_FIELDS) ||
	    (rq->dsync && rq->backend[0] == '\0')) {
		*why_r = "back end and dsync stream go together";
		return -1;
	}
	if (rq->user[0] == '\0') {
		*why_r = "empty user";
		return -1;
	}
	if (inet_pton(AF_INET, rq->caddr, &a4) != 1 &&
	    inet_pton(AF_INET6, rq->caddr, &a6) != 1) {
		*why_r = "client address not numeric";
		return -1;
	}
	rq->proto = rq->dsync ? MM_PROTO_IMAP : (enum mm_proto)proto;
	rq->cport = (uint16_t)port;
	rq->hops = (unsigned)hops;
	return 0;
}

/* ---- the worker's side ---------------------------------------------- */

struct xsite *
xsite_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, const struct dkey *key)
{
	struct xsite *xs = xcalloc(1, sizeof(*xs));

	xs->base = base;
	xs->conf = conf;
	xs->dir = dir;
	xs->key = key;
	return xs;
}

static void really_free(struct xlink *xl);

void
xsite_free(struct xsite *xs)
{
	if (xs == NULL)
		return;
	while (xs->links != NULL)
		really_free(xs->links);
	free(xs->cert);
	free(xs);
}

/* Our CERT envelope: the transport key's certificate for this site. */
int
xsite_identity(struct xsite *xs, uint64_t now, const char **why_r)
{
	enum trust_verdict v;
	uint8_t *env = NULL;
	size_t len = 0;

	if (xs->key == NULL || !xs->key->has_secret) {
		*why_r = "no transport key";
		return -1;
	}
	if (xs->cert != NULL)
		return 0;
	v = dir_cert_find(xs->dir, xs->key->id, TRUST_USE_TRANSPORT,
	    xs->conf->site, now, &env, &len, why_r);
	if (v == TRUST_WRONG_ROLE || v == TRUST_WRONG_SITE)
		*why_r = "transport key not certified as transport for "
		    "this site";
	if (v != TRUST_OK)
		return -1;
	xs->cert = env;
	xs->cert_len = len;
	return 0;
}

int
xsite_peer_check(struct xsite *xs, const uint8_t *env, size_t len,
    const char *site, uint64_t now, struct record_cert *cert_r,
    const char **why_r)
{
	switch (dir_cert_check(xs->dir, env, len, TRUST_USE_SESSION, site,
	    now, cert_r, why_r)) {
	case TRUST_OK:
		return 0;
	case TRUST_WRONG_ROLE:
		*why_r = "certificate role may not carry sessions";
		break;
	case TRUST_WRONG_SITE:
		*why_r = "peer is not of the site asked for";
		break;
	default:
		break;
	}
	return -1;
}

static int
trust_cb(const uint8_t *env, size_t len, const struct record *cert,
    struct chan_peer *peer, const char **why_r, void *arg)
{
	struct xlink *xl = arg;
	struct record_cert c;

	if (xsite_peer_check(xl->xs, env, len, xl->initiator ? xl->site : NULL,
	    (uint64_t)time(NULL), &c, why_r) != 0)
		return -1;
	peer->role = c.role;
	mm_strlcpy(peer->site, c.site, sizeof(peer->site));
	mm_strlcpy(peer->name, c.name, sizeof(peer->name));
	return 0;
}

/* ---- link life ------------------------------------------------------ */

static void
link_insert(struct xsite *xs, struct xlink *xl)
{
	xl->xs = xs;
	xl->next = xs->links;
	if (xs->links != NULL)
		xs->links->prev = xl;
	xs->links = xl;
}

static void
drop_out_cb(struct xlink *xl)
{
	if (xl->out_cb != NULL && xl->sock != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(xl->sock),
		    xl->out_cb);
	xl->out_cb = NULL;
}

/* The connection: the channel if it has one, else the bare socket. */
static void
drop_conn(struct xlink *xl)
{
	drop_out_cb(xl);
	if (xl->ce != NULL)
		chan_ev_free(xl->ce);	/* frees sock as well */
	else if (xl->sock != NULL)
		bufferevent_free(xl->sock);
	xl->ce = NULL;
	xl->sock = NULL;
}

static void
really_free(struct xlink *xl)
{
	struct xsite *xs = xl->xs;

	drop_conn(xl);
	if (xl->inner != NULL)
		bufferevent_free(xl->inner);
	if (xl->timer != NULL)
		event_free(xl->timer);
	if (xl->kick != NULL)
		event_free(xl->kick);
	if (xl->prev != NULL)
		xl->prev->next = xl->next;
	else
		xs->links = xl->next;
	if (xl->next != NULL)
		xl->next->prev = xl->prev;
	mm_wipe(xl->req, sizeof(xl->req));
	free(xl);
}

static void
timer_in(struct xlink *xl, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
		(suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(xl->timer, &tv);
}

/* Frees from the loop, after what is queued for the peer has gone. */
static void
begin_close(struct xlink *xl)
{
	xl->state = XL_CLOSING;
	xl->cbs.up = NULL;
	xl->cbs.failed = NULL;
	xl->close_deadline_ms = mm_now_ms() + XSITE_CLOSE_FLUSH_MS;
	if (xl->sock != NULL && xl->ce != NULL)
		bufferevent_disable(xl->sock, EV_READ);
	timer_in(xl, 0);
}

static void
log_refused(struct xlink *xl, const char *why)
{
	log_info("- xsite refuse addr=%s peer=%s/%s reason=\"%s\"", xl->addr,
	    xl->peer_site, xl->peer_name, why);
}

/* Gives up on a link before it carried anything. */
static void
link_fail(struct xlink *xl, const char *why)
{
	mm_strlcpy(xl->why, why, sizeof(xl->why));
	if (!xl->initiator) {
		log_refused(xl, why);
		drop_conn(xl);
		begin_close(xl);
		return;
	}
	log_info("- xsite connect-failed site=%s addr=%s reason=\"%s\"",
	    xl->site, xl->addr, why);
	drop_conn(xl);
	try_next(xl);
}

/* ---- the glue between the channel and the pair ---------------------- */

static uint64_t
relay_max(const struct xlink *xl)
{
	return xl->xs->conf->limits.relay_buffer;
}

/* Seals what the session wrote into frames; force: all of it (closing). */
static void
send_input(struct xlink *xl, struct bufferevent *bev, bool force)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;

	if (xl->ce == NULL)
		return;
	while ((n = evbuffer_get_length(in)) > 0) {
		unsigned char *p;

		if (!force && chan_ev_pending(xl->ce) >= relay_max(xl)) {
			/* The peer is slow: the session's output fills
			 * and its relay pauses its source. */
			bufferevent_disable(bev, EV_READ);
			xl->inner_paused = true;
			return;
		}
		if (n > XSITE_CHUNK)
			n = XSITE_CHUNK;
		p = evbuffer_pullup(in, (ev_ssize_t)n);
		if (p == NULL || chan_ev_send(xl->ce, p, n) != 0)
			return;
		evbuffer_drain(in, n);
	}
}

static void
inner_read_cb(struct bufferevent *bev, void *arg)
{
	send_input(arg, bev, false);
}

static void
inner_write_cb(struct bufferevent *bev, void *arg)
{
	struct xlink *xl = arg;

	/* The session took enough: read the channel again. */
	if (xl->chan_paused && xl->sock != NULL && xl->ce != NULL) {
		xl->chan_paused = false;
		bufferevent_enable(xl->sock, EV_READ);
	}
}

static void
inner_event_cb(struct bufferevent *bev, short what, void *arg)
{
	/* The session's end never ends the stream this way: its owner
	 * calls xlink_close. */
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xlink *xl = arg;

	if (xl->inner != NULL && xl->state == XL_UP)
		inner_read_cb(xl->inner, xl);
}

/* The channel's output shrank: resume reading the session's bytes. */
static void
out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct xlink *xl = arg;

	if (info->n_deleted == 0 || !xl->inner_paused ||
	    evbuffer_get_length(buf) > relay_max(xl) / 2)
		return;
	xl->inner_paused = false;
	if (xl->inner != NULL) {
		bufferevent_enable(xl->inner, EV_READ);
		/* Not from inside this buffer's own callback. */
		event_active(xl->kick, EV_TIMEOUT, 0);
	}
}

/* Makes the pair; returns the session's end. */
static struct bufferevent *
make_pair(struct xlink *xl)
{
	struct bufferevent *pair[2];

	if (bufferevent_pair_new(xl->xs->base, BEV_OPT_CLOSE_ON_FREE |
	    BEV_OPT_DEFER_CALLBACKS, pair) != 0)
		return NULL;
	xl->inner = pair[0];
	bufferevent_setcb(xl->inner, inner_read_cb, inner_write_cb,
	    inner_event_cb, xl);
	bufferevent_setwatermark(xl->inner, EV_WRITE,
	    relay_max(xl) / 2, 0);
	bufferevent_enable(xl->inner, EV_READ | EV_WRITE);
	xl->out_cb = evbuffer_add_cb(bufferevent_get_output(xl->sock), out_cb,
	    xl);
	return pair[1];
}

static void
go_up(struct xlink *xl, const struct xsite_req *req)
{
	struct bufferevent *outer = make_pair(xl);

	evtimer_del(xl->timer);
	if (outer == NULL) {
		link_fail(xl, "cannot make a pair");
		return;
	}
	xl->state = XL_UP;
	xl->owned = true;
	xl->cbs.up(xl, outer, req, xl->arg);
}

/* ---- channel callbacks ---------------------------------------------- */

static void
ce_ready(struct chan_ev *ce, const struct chan_peer *peer, void *arg)
{
	struct xlink *xl = arg;

	mm_strlcpy(xl->peer_site, peer->site, sizeof(xl->peer_site));
	mm_strlcpy(xl->peer_name, peer->name, sizeof(xl->peer_name));
	if (!xl->initiator) {
		xl->state = XL_WAIT_REQ;
		return;
	}
	if (chan_ev_send(ce, xl->req, xl->req_len) != 0) {
		link_fail(xl, "cannot send the request");
		return;
	}
	log_debug("- xsite connected site=%s addr=%s peer=%s", xl->site,
	    xl->addr, xl->peer_name);
	go_up(xl, NULL);
}

static void
ce_frame(struct chan_ev *ce, const uint8_t *payload, size_t len, void *arg)
{
	struct xlink *xl = arg;
	struct xsite_req req;
	const char *why;

	switch (xl->state) {
	case XL_WAIT_REQ:
		if (xsite_req_decode(payload, len, &req, &why) != 0) {
			link_fail(xl, why);
			return;
		}
		if (req.hops == 0) {
			link_fail(xl, "hop limit reached");
			return;
		}
		go_up(xl, &req);
		mm_wipe(&req, sizeof(req));
		return;
	case XL_UP:
		bufferevent_write(xl->inner, payload, len);
		if (!xl->chan_paused && evbuffer_get_length(
		    bufferevent_get_output(xl->inner)) >= relay_max(xl)) {
			bufferevent_disable(xl->sock, EV_READ);
			xl->chan_paused = true;
		}
		return;
	default:
		return;		/* closing: nobody wants it */
	}
}

static void
ce_closed(struct chan_ev *ce, const char *reason, void *arg)
{
	struct xlink *xl = arg;

	switch (xl->state) {
	case XL_HANDSHAKE:
	case XL_WAIT_REQ:
		link_fail(xl, reason);
		return;
	case XL_UP:
		/* What came before the end goes to the session, then its
		 * end sees EOF. */
		drop_out_cb(xl);
		chan_ev_free(xl->ce);
		xl->ce = NULL;
		xl->sock = NULL;
		if (xl->inner != NULL)
			bufferevent_flush(xl->inner, EV_WRITE, BEV_FINISHED);
		return;
	default:
		drop_out_cb(xl);
		chan_ev_free(xl->ce);
		xl->ce = NULL;
		xl->sock = NULL;
		return;
	}
}

static const struct chan_ev_cbs ce_cbs = {
	.ready = ce_ready,
	.frame = ce_frame,
	.closed = ce_closed,
};

/* Starts the channel on a connected socket. */
static void
start_chan(struct xlink *xl, enum chan_role role)
{
	struct xsite *xs = xl->xs;
	struct chan_config cfg;
	struct chan *c;
	const char *why = NULL;
	int one = 1;

	setsockopt(bufferevent_getfd(xl->sock), IPPROTO_TCP, TCP_NODELAY, &one,
	    sizeof(one));
	memset(&cfg, 0, sizeof(cfg));
	cfg.role = role;
	cfg.key = xs->key;
	cfg.cert = xs->cert;
	cfg.cert_len = xs->cert_len;
	cfg.trust = trust_cb;
	cfg.trust_arg = xl;
	if ((c = chan_new(&cfg, &why)) == NULL) {
		link_fail(xl, why != NULL ? why : "channel setup");
		return;
	}
	xl->state = XL_HANDSHAKE;
	xl->ce = chan_ev_new(xl->sock, c, &ce_cbs, xl, NULL);
}

/* ---- the initiator -------------------------------------------------- */

static void
sock_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct xlink *xl = arg;
	char why[XSITE_WHY_MAX];

	if (what & BEV_EVENT_CONNECTED) {
		start_chan(xl, CHAN_INITIATOR);
		return;
	}
	snprintf(why, sizeof(why), "connect: %s",
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	link_fail(xl, why);
}

static void
try_next(struct xlink *xl)
{
	struct sockaddr_storage ss;
	int sslen;

	while (xl->next_ep < xl->n_eps) {
		const char *ep = xl->eps[xl->next_ep].addr;
		uint64_t now = mm_now_ms(), left, slice;
		size_t more = xl->n_eps - xl->next_ep;

		xl->next_ep++;
		if (now >= xl->deadline_ms)
			break;
		/* An endpoint that does not answer (a node gossip has not
		 * found dead yet) must leave time for the next one. */
		left = xl->deadline_ms - now;
		slice = left / more;
		if (slice < XSITE_EP_MIN_MS)
			slice = XSITE_EP_MIN_MS;
		timer_in(xl, slice < left ? slice : left);

		mm_strlcpy(xl->addr, ep, sizeof(xl->addr));
		sslen = (int)sizeof(ss);
		if (evutil_parse_sockaddr_port(ep, (struct sockaddr *)&ss,
		    &sslen) != 0)
			continue;	/* the config checked it */
		xl->sock = bufferevent_socket_new(xl->xs->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
		if (xl->sock == NULL)
			break;
		xl->state = XL_CONNECTING;
		bufferevent_setcb(xl->sock, NULL, NULL, sock_event_cb, xl);
		bufferevent_enable(xl->sock, EV_READ | EV_WRITE);
		if (bufferevent_socket_connect(xl->sock,
		    (struct sockaddr *)&ss, sslen) == 0) {
			log_debug("- xsite connecting site=%s addr=%s node=%s "
			    "via=%s", xl->site, ep,
			    xl->eps[xl->next_ep - 1].name,
			    xl->from_gossip ? "gossip" : "site-route");
			return;
		}
		bufferevent_free(xl->sock);
		xl->sock = NULL;
		log_info("- xsite connect-failed site=%s addr=%s "
		    "reason=\"connect\"", xl->site, ep);
	}
	xl->state = XL_FAILED;
	evtimer_del(xl->timer);
	/* Never from inside xsite_connect: the kick runs from the loop. */
	event_active(xl->kick, EV_TIMEOUT, 0);
}

static void
link_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xlink *xl = arg;

	switch (xl->state) {
	case XL_CONNECTING:
	case XL_HANDSHAKE:
	case XL_WAIT_REQ:
		/* This endpoint's time is up; the next gets what is left. */
		if (mm_now_ms() >= xl->deadline_ms)
			xl->next_ep = xl->n_eps;
		link_fail(xl, "timed out");
		break;
	case XL_CLOSING:
		if (xl->ce != NULL && chan_ev_pending(xl->ce) > 0 &&
		    mm_now_ms() < xl->close_deadline_ms) {
			timer_in(xl, XSITE_FLUSH_POLL_MS);
			break;
		}
		really_free(xl);
		break;
	default:
		break;
	}
}

static void
fail_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xlink *xl = arg;

	if (xl->state == XL_FAILED && xl->cbs.failed != NULL) {
		void (*cb)(struct xlink *, const char *, void *) =
		    xl->cbs.failed;

		xl->cbs.failed = NULL;
		cb(xl, xl->why[0] ? xl->why : "no endpoint", xl->arg);
		return;
	}
	kick_cb(fd, what, arg);
}

static struct xlink *
link_new(struct xsite *xs, const struct xlink_cbs *cbs, void *arg,
    uint64_t timeout_ms)
{
	struct xlink *xl = xcalloc(1, sizeof(*xl));

	link_insert(xs, xl);
	xl->cbs = *cbs;
	xl->arg = arg;
	xl->timeout_ms = timeout_ms;
	mm_strlcpy(xl->peer_site, "-", sizeof(xl->peer_site));
	mm_strlcpy(xl->peer_name, "-", sizeof(xl->peer_name));
	xl->timer = evtimer_new(xs->base, link_timer_cb, xl);
	xl->kick = event_new(xs->base, -1, 0, fail_kick_cb, xl);
	if (xl->timer == NULL || xl->kick == NULL)
		fatalx("event_new failed");
	return xl;
}

static const struct mm_site_route *
route_of(const struct mm_config *conf, const char *site)
{
	size_t i;

	for (i = 0; i < conf->n_site_routes; i++)
		if (strcmp(conf->site_routes[i].site, site) == 0)
			return &conf->site_routes[i];
	return NULL;
}

/* The nodes of site to try: the nearest healthy ones gossip knows, else
 * the configured site-route. */
static size_t
endpoints_of(struct xsite *xs, const char *site,
    struct dir_endpoint *eps, bool *from_gossip_r)
{
	const struct mm_site_route *route;
	int n = dir_site_endpoints(xs->dir, site, eps, XSITE_ENDPOINTS_MAX);
	size_t i;

	*from_gossip_r = n > 0;
	if (n > 0)
		return (size_t)n;
	if ((route = route_of(xs->conf, site)) == NULL)
		return 0;
	for (i = 0; i < route->n_addrs && i < XSITE_ENDPOINTS_MAX; i++) {
		mm_strlcpy(eps[i].addr, route->addrs[i], sizeof(eps[i].addr));
		mm_strlcpy(eps[i].name, "-", sizeof(eps[i].name));
	}
	return i;
}

struct xlink *
xsite_connect(struct xsite *xs, const char *site, const struct xsite_req *req,
    const struct xlink_cbs *cbs, void *arg, uint64_t timeout_ms,
    const char **why_r)
{
	struct dir_endpoint eps[XSITE_ENDPOINTS_MAX];
	bool from_gossip;
	size_t n_eps = endpoints_of(xs, site, eps, &from_gossip);
	struct xlink *xl;
	int n;

	if (n_eps == 0) {
		*why_r = "no-site-route";
		return NULL;
	}
	if (xsite_identity(xs, (uint64_t)time(NULL), why_r) != 0) {
		log_warnx("- xsite no-identity reason=\"%s\"", *why_r);
		*why_r = "no-transport-identity";
		return NULL;
	}
	xl = link_new(xs, cbs, arg, timeout_ms);
	xl->initiator = true;
	xl->owned = true;
	memcpy(xl->eps, eps, n_eps * sizeof(eps[0]));
	xl->n_eps = n_eps;
	xl->from_gossip = from_gossip;
	mm_strlcpy(xl->site, site, sizeof(xl->site));
	n = xsite_req_encode(req, xl->req, sizeof(xl->req));
	if (n < 0) {
		really_free(xl);
		*why_r = "request-too-long";
		return NULL;
	}
	xl->req_len = (size_t)n;
	xl->deadline_ms = mm_now_ms() + timeout_ms;
	try_next(xl);
	return xl;
}

/* ---- the responder -------------------------------------------------- */

void
xsite_accept(struct xsite *xs, evutil_socket_t fd,
    const struct xlink_cbs *cbs, void *arg, uint64_t timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct xlink *xl;
	char host[XSITE_ADDR_MAX];
	const char *why;
	uint16_t port = 0;

	xl = link_new(xs, cbs, arg, timeout_ms);
	mm_strlcpy(host, "?", sizeof(host));
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &in6->sin6_addr, host,
			    sizeof(host));
			port = ntohs(in6->sin6_port);
		}
	}
	snprintf(xl->addr, sizeof(xl->addr), "%s:%u", host, port);
	evutil_make_socket_nonblocking(fd);
	xl->sock = bufferevent_socket_new(xs->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (xl->sock == NULL) {
		evutil_closesocket(fd);
		really_free(xl);
		return;
	}
	if (xsite_identity(xs, (uint64_t)time(NULL), &why) != 0) {
		log_warnx("- xsite no-identity reason=\"%s\"", why);
		link_fail(xl, "no transport identity");
		return;
	}
	timer_in(xl, timeout_ms);
	start_chan(xl, CHAN_RESPONDER);
}

void
xsite_drop_pending(struct xsite *xs)
{
	struct xlink *xl, *next;

	for (xl = xs->links; xl != NULL; xl = next) {
		next = xl->next;
		if (!xl->owned && xl->state != XL_CLOSING) {
			drop_conn(xl);
			begin_close(xl);
		}
	}
}

void
xlink_close(struct xlink *xl)
{
	if (xl == NULL || xl->state == XL_CLOSING)
		return;
	/* Bytes the session wrote last still go out. */
	if (xl->inner != NULL) {
		if (xl->ce != NULL)
			send_input(xl, xl->inner, true);
		bufferevent_free(xl->inner);
		xl->inner = NULL;
	}
	if (xl->state != XL_UP)
		drop_conn(xl);
	begin_close(xl);
}

const char *
xlink_peer_site(const struct xlink *xl)
{
	return xl->peer_site;
}

const char *
xlink_peer_name(const struct xlink *xl)
{
	return xl->peer_name;
}

const char *
xlink_addr(const struct xlink *xl)
{
	return xl->addr;
}

int
xlink_local_addr(const struct xlink *xl, struct sockaddr_storage *ss_r)
{
	socklen_t sl = sizeof(*ss_r);

	if (xl->sock == NULL)
		return -1;
	return getsockname(bufferevent_getfd(xl->sock),
	    (struct sockaddr *)ss_r, &sl) == 0 ? 0 : -1;
}
