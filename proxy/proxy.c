/* Sessions of one worker: accept, the pre-login phase (through the
 * protocol table), the back-end login, the relay and the close. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "dsync_tunnel.h"
#include "lookup.h"
#include "mm_metrics.h"
#include "mm_log.h"
#include "mm_net.h"
#include "mm_util.h"
#include "proxy_int.h"
#include "proxyproto.h"

#define RELAY_MAX_SINGLE_IO (256 * 1024)	/* bytes per write call */
#define RELAY_READ_CHUNK (128 * 1024)		/* bytes asked of one readv */
#define RELAY_READ_BURST (512 * 1024)		/* bytes read per wakeup */
#define RELAY_PIPE_SIZE (1024 * 1024)		/* splice pipe capacity */
#define HOLD_POLL_MS 10		/* a held login looks its user up again */
#define PROXY2_HEADER_MAX 232
#define PARK_MAX 64			/* idle back-end connections per worker */
#define PARK_IDLE_MS 30000		/* an idle one is closed after this */
#define PARK_KEY_MAX 320
#define PARK_NOTES_MAX 64
#define FAIL_FLOOR_WINDOW_MS (10 * 60 * 1000)	/* memory of slow failures */

/* An idle back-end connection kept for the next session to the same back
 * end (SMTP: no connect, greeting and LHLO per message). */
struct parked {
	struct parked *prev, *next;
	struct proxy *px;
	struct bufferevent *bev;
	struct event *timer;
	char key[PARK_KEY_MAX];
	unsigned char notes[PARK_NOTES_MAX];	/* the protocol's, opaque */
	size_t notes_len;
};

/* A PROXY header being read: the socket is the session's only handle on
 * the client until the header is whole and its bufferevent is made. */
struct pp_read {
	evutil_socket_t fd;
	struct event *ev;
	unsigned char buf[PP_HEADER_MAX];
	size_t len;
};

struct listener {
	struct proxy *px;
	struct evconnlistener *evl;
	const struct mm_listener_conf *lc;
	size_t index;
};

struct proxy {
	struct event_base *base;
	struct evdns_base *dns;
	const struct mm_config *conf;
	struct dir *dir;
	const struct proxy_tls *tls;
	struct iptable *ipt;
	struct mm_metrics_slot *metrics;	/* this worker's counters; or NULL */
	unsigned worker;
	struct listener *listeners;
	size_t n_listeners;
	struct xsite *xs;		/* cross-site links */
	struct dtun *dt;		/* moves' dsync streams (with xs) */
	struct lookup *lookups;		/* socketmap and auth_http answers */
	struct evconnlistener *sevl;	/* session-listen */
	/* What a cross-site session uses in place of a back end's settings
	 * (the far node speaks plaintext over the channel and takes the
	 * client's address from the request) and of a listener's (per
	 * protocol; no TLS, since the channel is encrypted). */
	struct mm_backend_conf xsite_be;
	struct mm_listener_conf xsite_lc[MM_PROTO_COUNT];
	struct session *sessions;	/* list of live sessions */
	size_t n_sessions;
	struct parked *parked;		/* idle back-end connections, newest
					 * first */
	size_t n_parked;
	uint64_t next_id;
	/* The longest a failed login took to fail, in the current and the
	 * previous FAIL_FLOOR_WINDOW_MS window (fail_floor). */
	uint64_t fail_slowest[2];
	uint64_t fail_window;
	bool draining;
	struct event *drain_timer;
	void (*drain_done)(void *);
	void *drain_arg;
};

static void session_free(struct session *s);
static void timer_set(struct session *s, uint64_t ms);
static void close_flushed(struct session *s);
static void login_end(struct session *s, bool failed);
static void login_route(struct session *s);
static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static bool is_plain_socket(struct bufferevent *bev);
static void backend_read_cb(struct bufferevent *bev, void *arg);
static void backend_write_cb(struct bufferevent *bev, void *arg);
static void backend_event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void check_drained(struct proxy *px);
static void relay_direct(struct session *s, int dir);

static const struct proxy_proto *
proto_of(enum mm_proto p)
{
	switch (p) {
	case MM_PROTO_POP3:
		return &proxy_pop3;
	case MM_PROTO_SMTP:
		return &proxy_smtp;
	default:
		return &proxy_imap;
	}
}

/* How long a client may stay silent outside the relay. SMTP senders get
 * the minutes RFC 5321 promises them. */
static uint64_t
idle_ms(const struct session *s)
{
	const struct mm_limits *lim = &s->px->conf->limits;

	return s->proto->transfer ? lim->smtp_idle_ms : lim->idle_prelogin_ms;
}

/* Arms the timer of a client before login: its idle time, or what is
 * left of its deadline if that comes first. */
static void
prelogin_timer(struct session *s)
{
	uint64_t now = mm_now_ms(), idle = idle_ms(s);
	uint64_t left = s->deadline_ms > now ? s->deadline_ms - now : 0;

	s->timer_deadline = left < idle;
	timer_set(s, s->timer_deadline ? left : idle);
}

/* The client sent something before login: the protocol handles it, and
 * the client's time runs again from here (the protocol may have moved
 * the deadline: an SMTP message's data buys time as it arrives). */
static void
client_input(struct session *s)
{
	s->proto->client_input(s);
	if (s->state == S_PRELOGIN)
		prelogin_timer(s);
}

struct proxy *
proxy_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, const struct proxy_tls *tls, struct iptable *ipt,
    unsigned worker, const struct dkey *transport_key)
{
	struct proxy *px = xcalloc(1, sizeof(*px));
	int p;

	px->base = base;
	px->conf = conf;
	px->dir = dir;
	px->tls = tls;
	px->ipt = ipt;
	px->worker = worker;
	/* Host names in the popmap are resolved without blocking the loop;
	 * numeric addresses need no resolver at all. */
	px->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (px->dns == NULL)
		px->dns = evdns_base_new(base, 0);
	px->next_id = ((uint64_t)getpid() << 24);
	px->xs = xsite_new(base, conf, dir, transport_key);
	if (transport_key != NULL)
		px->dt = dtun_new(base, conf, dir, px->xs);
	px->lookups = lookup_new(base, conf, dir);
	px->xsite_be.name = (char *)"xsite";
	px->xsite_be.host = (char *)"";
	px->xsite_be.tls_name = (char *)"";
	px->xsite_be.tls = MM_TLS_NONE;
	px->xsite_be.client_addr = MM_CADDR_NONE;
	for (p = 0; p < MM_PROTO_COUNT; p++) {
		px->xsite_lc[p].proto = (enum mm_proto)p;
		px->xsite_lc[p].tls = MM_TLS_NONE;
		px->xsite_lc[p].host = (char *)"-";
		px->xsite_lc[p].port = (char *)"-";
	}
	return px;
}

void
proxy_set_metrics(struct proxy *px, struct mm_metrics *m)
{
	px->metrics = mm_metrics_slot(m, px->worker);
	lookup_set_metrics(px->lookups, m);
	if (px->dt != NULL)
		dtun_set_metrics(px->dt, px->metrics);
}

struct mm_metrics_slot *
session_metrics(const struct session *s)
{
	return s->px->metrics;
}

static void parked_free(struct parked *pk);

void
proxy_free(struct proxy *px)
{
	size_t i;

	if (px == NULL)
		return;
	while (px->sessions != NULL)
		session_free(px->sessions);
	while (px->parked != NULL)
		parked_free(px->parked);
	if (px->sevl != NULL)
		evconnlistener_free(px->sevl);
	dtun_free(px->dt);
	xsite_free(px->xs);
	lookup_free(px->lookups);
	for (i = 0; i < px->n_listeners; i++)
		if (px->listeners[i].evl != NULL)
			evconnlistener_free(px->listeners[i].evl);
	free(px->listeners);
	if (px->drain_timer != NULL)
		event_free(px->drain_timer);
	if (px->dns != NULL)
		evdns_base_free(px->dns, 0);
	free(px);
}

size_t
proxy_session_count(const struct proxy *px)
{
	return px->n_sessions;
}

static const char *
state_name(enum session_state st)
{
	switch (st) {
	case S_HEADER:
	case S_PRELOGIN:
		return "prelogin";
	case S_LOGIN:
	case S_DELAY:
		return "login";
	case S_RELAY:
		return "relay";
	case S_CLOSING:
		break;
	}
	return "closing";
}

void
proxy_foreach_session(const struct proxy *px, const char *user,
    proxy_session_cb cb, void *arg)
{
	char ub[4 * DIR_USER_MAX + 1], client[SESSION_ADDR_MAX + 10], be[128];
	const struct session *s;
	struct proxy_session_view v;
	uint64_t now = mm_now_ms(), wall = (uint64_t)time(NULL);

	for (s = px->sessions; s != NULL; s = s->next) {
		if (user != NULL && strcasecmp(s->user, user) != 0)
			continue;
		memset(&v, 0, sizeof(v));
		v.id = s->id;
		v.user = s->user[0] != '\0' ? mm_log_escape(s->user, ub,
		    sizeof(ub)) : "";
		snprintf(client, sizeof(client), "%s:%s", s->caddr_str,
		    s->cport_str);
		v.client = client;
		v.proto = mm_proto_name(s->lc->proto);
		v.state = state_name(s->state);
		if (s->xl_backend != NULL)
			snprintf(be, sizeof(be), "site:%s", s->route.site);
		else if (s->route.backend != NULL)
			snprintf(be, sizeof(be), "%s", s->route.backend->name);
		else
			be[0] = '\0';
		v.backend = be;
		v.since = wall - (now - s->start_ms) / 1000;
		v.bytes_in = s->bytes_c2b;
		v.bytes_out = s->bytes_b2c;
		cb(&v, arg);
	}
}

/* Whether s is logged in (or logging in) as user, a normalised name. */
static bool
session_of_user(const struct session *s, const char *user)
{
	char norm[DIR_USER_MAX + 1];

	if (s->user[0] == '\0' || s->proto->kick_code == NULL ||
	    dir_normalise_user(s->px->conf, s->user, norm, sizeof(norm)) != 0)
		return false;
	return strcmp(norm, user) == 0;
}

/* Ends a logged-in session for `mmctl kick` or a move's freeze. What the
 * back end already sent is delivered first (the pipe's bytes, then what
 * its bufferevent holds); then the farewell, then the close. A session
 * kicked while a response was still arriving sees it cut short, as it
 * would with any dropped connection: the farewell is then read as part
 * of the unfinished response and the close ends it. */
static void
session_kick(struct session *s, const char *reason)
{
	struct evbuffer *out = bufferevent_get_output(s->cbev);
	char text[256];

	if (s->piped[1] > 0 && s->pipefd[1][0] >= 0) {
		while (s->piped[1] > 0) {
			int n = evbuffer_read(out, s->pipefd[1][0],
			    s->piped[1] > INT_MAX ? INT_MAX : (int)s->piped[1]);

			if (n <= 0)
				break;
			s->piped[1] -= (size_t)n;
		}
	}
	if (s->bbev != NULL)
		evbuffer_add_buffer(out, bufferevent_get_input(s->bbev));
	snprintf(text, sizeof(text), "%s%s", s->proto->kick_code, reason);
	s->proto->bye(s, text);
	session_close(s, "kicked");
}

size_t
proxy_kick_user(struct proxy *px, const char *user, const char *reason)
{
	char norm[DIR_USER_MAX + 1];
	struct session *s, *next;
	size_t n = 0;

	if (dir_normalise_user(px->conf, user, norm, sizeof(norm)) != 0)
		return 0;
	for (s = px->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state != S_RELAY || s->cbev == NULL ||
		    !session_of_user(s, norm))
			continue;
		session_kick(s, reason);
		n++;
	}
	return n;
}

const struct mm_config *
session_conf(const struct session *s)
{
	return s->px->conf;
}

struct dir *
session_dir(const struct session *s)
{
	return s->px->dir;
}

/* ---- addresses ------------------------------------------------------ */

static void
addr_to_str(const struct sockaddr *sa, char *host, size_t hostlen,
    char *port, size_t portlen)
{
	uint16_t p = 0;

	mm_strlcpy(host, "?", hostlen);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, (socklen_t)hostlen);
		p = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, (socklen_t)hostlen);
		p = ntohs(in6->sin6_port);
	}
	snprintf(port, portlen, "%u", p);
}

static void
set_nodelay(struct bufferevent *bev)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int one = 1;

	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- session life --------------------------------------------------- */

static void
session_log_close(struct session *s, const char *result)
{
	char user[2 * DIR_USER_MAX];

	mm_metrics_count(s->px->metrics, MM_METRICS_CLOSE, s->lc->proto, result);
	log_info("%s proxy close proto=%s user=%s client=%s:%s backend=%s "
	    "result=%s in=%llu out=%llu duration_ms=%llu", s->sid,
	    mm_proto_name(s->lc->proto),
	    mm_log_escape(s->user[0] ? s->user : "-", user, sizeof(user)),
	    s->caddr_str, s->cport_str,
	    s->route.backend != NULL ? s->route.backend->name : "-", result,
	    (unsigned long long)s->bytes_c2b,
	    (unsigned long long)s->bytes_b2c,
	    (unsigned long long)(mm_now_ms() - s->start_ms));
	if (s->xl_client != NULL || s->xl_backend != NULL) {
		const struct xlink *xl = s->xl_client != NULL ? s->xl_client :
		    s->xl_backend;

		log_info("%s xsite close dir=%s site=%s peer=%s addr=%s "
		    "user=%s client=%s:%s result=%s in=%llu out=%llu", s->sid,
		    s->xl_client != NULL ? "in" : "out", xlink_peer_site(xl),
		    xlink_peer_name(xl), xlink_addr(xl),
		    mm_log_escape(s->user[0] ? s->user : "-", user,
		    sizeof(user)), s->caddr_str, s->cport_str, result,
		    (unsigned long long)s->bytes_c2b,
		    (unsigned long long)s->bytes_b2c);
	}
}

static void
login_free(struct login *l)
{
	if (l != NULL) {
		mm_wipe(l, sizeof(*l));
		free(l);
	}
}

static void
relay_events_free(struct session *s)
{
	int i;

	for (i = 0; i < 2; i++) {
		if (s->rev[i] != NULL) {
			event_free(s->rev[i]);
			s->rev[i] = NULL;
		}
		if (s->wev[i] != NULL) {
			event_free(s->wev[i]);
			s->wev[i] = NULL;
		}
		if (s->pipefd[i][0] >= 0) {
			close(s->pipefd[i][0]);
			close(s->pipefd[i][1]);
			s->pipefd[i][0] = s->pipefd[i][1] = -1;
		}
	}
}

/* The back-end connection, or the link to another site standing for it. */
static void
backend_drop(struct session *s)
{
	if (s->bbev != NULL) {
		bufferevent_free(s->bbev);
		s->bbev = NULL;
	}
	xlink_close(s->xl_backend);
	s->xl_backend = NULL;
}

static void
pp_read_free(struct session *s)
{
	if (s->pp == NULL)
		return;
	if (s->pp->ev != NULL)
		event_free(s->pp->ev);
	close(s->pp->fd);
	free(s->pp);
	s->pp = NULL;
}

static void
session_free(struct session *s)
{
	struct proxy *px = s->px;

	relay_events_free(s);
	pp_read_free(s);
	if (s->proto != NULL && s->pstate != NULL)
		s->proto->free_state(s);
	login_free(s->login);
	free(s->fail_text);
	if (s->cbev != NULL)
		bufferevent_free(s->cbev);
	xlink_close(s->xl_client);
	backend_drop(s);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->counted)
		iptable_conn_close(px->ipt, px->worker,
		    (struct sockaddr *)&s->caddr);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		px->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	px->n_sessions--;
	mm_metrics_session_end(px->metrics, s->lc->proto);
	free(s);
	check_drained(px);
}

static void
deferred_free_cb(evutil_socket_t fd, short what, void *arg)
{
	session_free(arg);
}

/* Frees s from the event loop, outside any callback chain of its own. */
static void
session_free_later(struct session *s)
{
	static const struct timeval zero = { 0, 0 };

	/* Several paths may end a session in one loop iteration (an EOF
	 * and a write callback, both ends of a cross-site link): free once. */
	if (s->free_pending)
		return;
	s->free_pending = true;
	if (s->cbev != NULL)
		bufferevent_disable(s->cbev, EV_READ | EV_WRITE);
	if (s->bbev != NULL)
		bufferevent_disable(s->bbev, EV_READ | EV_WRITE);
	event_del(s->timer);
	if (event_base_once(s->px->base, -1, EV_TIMEOUT, deferred_free_cb, s,
	    &zero) != 0)
		fatalx("event_base_once failed");
}

static void
timer_set(struct session *s, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
		(suseconds_t)((ms % 1000) * 1000) };

	event_add(s->timer, &tv);
}

void
session_close(struct session *s, const char *result)
{
	if (s->state == S_CLOSING)
		return;
	session_log_close(s, result);
	login_end(s, false);
	if (s->proto->park_backend != NULL && s->bbev != NULL &&
	    s->state == S_PRELOGIN)
		s->proto->park_backend(s);
	s->state = S_CLOSING;
	relay_events_free(s);
	pp_read_free(s);
	login_free(s->login);
	s->login = NULL;
	backend_drop(s);
	if (s->cbev == NULL) {
		session_free_later(s);
		return;
	}
	/* Flush the last reply, bounded in time. */
	bufferevent_disable(s->cbev, EV_READ);
	bufferevent_setwatermark(s->cbev, EV_WRITE, 0, 0);
	bufferevent_setcb(s->cbev, NULL, client_write_cb, client_event_cb, s);
	s->close_deadline_ms = mm_now_ms() + CLOSE_FLUSH_MS;
	if (s->client_failed) {
		/* Nothing more gets through its TLS. */
		evbuffer_drain(bufferevent_get_output(s->cbev),
		    evbuffer_get_length(bufferevent_get_output(s->cbev)));
	}
	close_flushed(s);
}

/* Whether the client's bufferevent has written all it was given. */
static bool
client_output_empty(const struct session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->cbev)) == 0;
}

/* S_CLOSING: once the last reply has left the client's bufferevent, the
 * socket changes hands on the next turn of the loop (never inside the
 * bufferevent's own callback, which a TLS filter runs from its write
 * path). */
static void
close_flushed(struct session *s)
{
	uint64_t now = mm_now_ms();

	if (!client_output_empty(s)) {
		s->close_step = CLOSE_FLUSH;
		timer_set(s, s->close_deadline_ms > now ?
		    s->close_deadline_ms - now : 0);
		return;
	}
	s->close_step = CLOSE_HANDOFF;
	timer_set(s, 0);
}

/* Appends TLS's close_notify for ssl to out. The alert is written to a
 * memory BIO for the moment, so that it queues behind whatever the
 * connection still holds, whichever BIO the connection writes to. */
static void
tls_close_notify(SSL *ssl, struct evbuffer *out)
{
	BIO *mem, *wbio = SSL_get_wbio(ssl);
	char *data;
	long n;

	if (wbio == NULL || !SSL_is_init_finished(ssl) ||
	    (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) != 0 ||
	    (mem = BIO_new(BIO_s_mem())) == NULL) {
		ERR_clear_error();
		return;
	}
	BIO_up_ref(wbio);
	SSL_set0_wbio(ssl, mem);
	(void)SSL_shutdown(ssl);
	n = BIO_get_mem_data(mem, &data);
	if (n > 0)
		evbuffer_add(out, data, (size_t)n);
	SSL_set0_wbio(ssl, wbio);	/* frees mem */
	ERR_clear_error();
}

static void
linger_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->linger_shut || !client_output_empty(s))
		return;
	(void)shutdown(bufferevent_getfd(bev), SHUT_WR);
	s->linger_shut = true;
	/* A worker that shuts down waits for no client to close. */
	if (s->px->draining)
		session_free_later(s);
}

/* The client still talks (its close_notify, a pipelined command): drop
 * it, up to a bound. */
static void
linger_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n = evbuffer_get_length(in);

	s->linger_bytes += n;
	evbuffer_drain(in, n);
	if (s->linger_bytes > CLOSE_LINGER_MAX)
		session_free_later(s);
}

static void
linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		session_free_later(arg);
}

/* The last reply has left the session's bufferevent; a TLS connection
 * still holds what its filter encrypted but did not write, and owes the
 * client a close_notify. The socket goes to a plain bufferevent (a
 * duplicate of the descriptor, since the TLS bufferevent closes its own)
 * that writes those bytes, half-closes, and reads until the client
 * closes too: a close with unread input would reset the connection, and
 * a reset can destroy our last reply in the client's kernel before the
 * client has read it. All within CLOSE_FLUSH_MS of session_close. */
static void
close_linger(struct session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->cbev);
	SSL *ssl = bufferevent_openssl_get_ssl(s->cbev);
	evutil_socket_t fd = bufferevent_getfd(under != NULL ? under : s->cbev);
	uint64_t now = mm_now_ms();

	s->close_step = CLOSE_LINGER;
	if (fd < 0) {
		/* A cross-site link: its end has taken the bytes. */
		session_free_later(s);
		return;
	}
	if (ssl != NULL) {
		struct evbuffer *raw = evbuffer_new();
		int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);

		if (under != NULL)
			evbuffer_add_buffer(raw, bufferevent_get_output(under));
		if (!s->client_failed)
			tls_close_notify(ssl, raw);
		bufferevent_free(s->cbev);
		s->cbev = dupfd < 0 ? NULL : bufferevent_socket_new(s->px->base,
		    dupfd, BEV_OPT_CLOSE_ON_FREE);
		if (s->cbev == NULL) {
			if (dupfd >= 0)
				close(dupfd);
			evbuffer_free(raw);
			session_free_later(s);
			return;
		}
		evbuffer_add_buffer(bufferevent_get_output(s->cbev), raw);
		evbuffer_free(raw);
	}
	evbuffer_drain(bufferevent_get_input(s->cbev),
	    evbuffer_get_length(bufferevent_get_input(s->cbev)));
	bufferevent_setwatermark(s->cbev, EV_WRITE, 0, 0);
	bufferevent_setcb(s->cbev, linger_read_cb, linger_write_cb,
	    linger_event_cb, s);
	bufferevent_enable(s->cbev, EV_READ | EV_WRITE);
	timer_set(s, s->close_deadline_ms > now ? s->close_deadline_ms - now :
	    0);
	if (client_output_empty(s))
		linger_write_cb(s->cbev, s);
}

/* A session in the list, before it has a client. */
static struct session *
session_new(struct proxy *px, const struct mm_listener_conf *lc,
    size_t index)
{
	struct session *s = xcalloc(1, sizeof(*s));

	s->px = px;
	s->lc = lc;
	s->listener_index = index;
	s->proto = proto_of(lc->proto);
	s->state = S_PRELOGIN;
	s->hops = XSITE_HOPS;
	s->id = ++px->next_id;
	snprintf(s->sid, sizeof(s->sid), "%012llx", (unsigned long long)s->id);
	s->start_ms = s->last_active_ms = mm_now_ms();
	s->deadline_ms = s->start_ms + (s->proto->transfer ?
	    px->conf->limits.smtp_commands_ms : px->conf->limits.login_ms);
	s->next = px->sessions;
	if (px->sessions != NULL)
		px->sessions->prev = s;
	px->sessions = s;
	px->n_sessions++;
	mm_metrics_session_open(px->metrics, lc->proto);
	s->timer = evtimer_new(px->base, timer_cb, s);
	s->pipefd[0][0] = s->pipefd[0][1] = -1;
	s->pipefd[1][0] = s->pipefd[1][1] = -1;
	return s;
}

/* The client's socket becomes the session's bufferevent (TLS or not),
 * the connection is counted against the limits under the client's
 * address (a PROXY header's, if one came), and the greeting goes out. */
static void
client_start(struct session *s, evutil_socket_t fd)
{
	struct proxy *px = s->px;
	const struct mm_config *conf = px->conf;
	SSL_CTX *ctx;

	s->state = S_PRELOGIN;
	ctx = proxy_tls_server_ctx(px->tls, s->listener_index);
	if (s->lc->tls == MM_TLS_IMPLICIT && ctx != NULL) {
		SSL *ssl = SSL_new(ctx);

		if (ssl == NULL) {
			log_warnx("%s proxy tls-new-failed", s->sid);
			close(fd);
			session_free_later(s);
			return;
		}
		s->cbev = bufferevent_openssl_socket_new(px->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_openssl_set_allow_dirty_shutdown(s->cbev, 1);
		s->client_tls = true;
	} else {
		s->cbev = bufferevent_socket_new(px->base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->cbev == NULL) {
		log_warnx("%s proxy bufferevent-failed", s->sid);
		close(fd);
		session_free_later(s);
		return;
	}
	bufferevent_setcb(s->cbev, client_read_cb, client_write_cb,
	    client_event_cb, s);
	bufferevent_enable(s->cbev, EV_READ | EV_WRITE);
	log_debug("%s proxy connect proto=%s client=%s:%s tls=%s", s->sid,
	    mm_proto_name(s->lc->proto), s->caddr_str, s->cport_str,
	    s->client_tls ? "implicit" : "no");

	if (!iptable_conn_open(px->ipt, px->worker,
	    (struct sockaddr *)&s->caddr, conf->limits.conn_per_ip_max,
	    conf->limits.conn_max)) {
		log_info("%s proxy refuse client=%s:%s reason=connection-limit",
		    s->sid, s->caddr_str, s->cport_str);
		s->proto->bye(s, "Too many connections, try again later.");
		session_close(s, "connection-limit");
		return;
	}
	s->counted = true;
	prelogin_timer(s);
	s->proto->greet(s);
}

static void
set_client_addr(struct session *s, const struct sockaddr_storage *client,
    const struct sockaddr_storage *local)
{
	s->caddr = *client;
	addr_to_str((const struct sockaddr *)&s->caddr, s->caddr_str,
	    sizeof(s->caddr_str), s->cport_str, sizeof(s->cport_str));
	s->laddr = *local;
	addr_to_str((const struct sockaddr *)&s->laddr, s->laddr_str,
	    sizeof(s->laddr_str), s->lport_str, sizeof(s->lport_str));
}

/* Reads the PROXY header without taking a byte beyond it: what is there
 * is peeked, and only the header's share is read off the socket, so a
 * TLS handshake or a command right behind it stays for the client's
 * bufferevent. */
static void
pp_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct pp_read *pp = s->pp;
	unsigned char buf[PP_HEADER_MAX];
	struct pp_header h;
	const char *why = NULL;
	size_t hlen = 0, take;
	ssize_t n;
	int rc;

	memcpy(buf, pp->buf, pp->len);
	n = recv(fd, buf + pp->len, sizeof(buf) - pp->len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		session_close(s, n == 0 ? "client-closed" : "client-error");
		return;
	}
	rc = pp_parse(buf, pp->len + (size_t)n, &h, &hlen, &why);
	if (rc < 0) {
		log_info("%s proxy refuse client=%s:%s reason=proxy-header "
		    "error=\"%s\"", s->sid, s->caddr_str, s->cport_str, why);
		session_close(s, "proxy-header");
		return;
	}
	take = rc == 1 ? hlen - pp->len : (size_t)n;
	if (recv(fd, pp->buf + pp->len, take, 0) != (ssize_t)take) {
		session_close(s, "client-error");
		return;
	}
	pp->len += take;
	if (rc == 0)
		return;
	/* client_start counts the connection again, under its client. */
	iptable_conn_close(s->px->ipt, s->px->worker,
	    (struct sockaddr *)&s->caddr);
	s->counted = false;
	if (h.local) {
		log_info("%s proxy header version=%d local balancer=%s:%s",
		    s->sid, h.version, s->caddr_str, s->cport_str);
	} else {
		char via[SESSION_ADDR_MAX + 8];

		snprintf(via, sizeof(via), "%s:%s", s->caddr_str,
		    s->cport_str);
		set_client_addr(s, &h.src, &h.dst);
		log_info("%s proxy header version=%d client=%s:%s "
		    "balancer=%s", s->sid, h.version, s->caddr_str,
		    s->cport_str, via);
	}
	/* The socket passes to the bufferevent: keep it open. */
	event_free(pp->ev);
	free(pp);
	s->pp = NULL;
	client_start(s, fd);
}

static bool
pp_trusted(const struct mm_listener_conf *lc, const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < lc->n_pp_from; i++)
		if (mm_net_match(&lc->pp_from[i], sa))
			return true;
	return false;
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	struct proxy *px = l->px;
	struct sockaddr_storage client, local;
	struct session *s;
	socklen_t llen;
	int one = 1;

	memset(&client, 0, sizeof(client));
	memset(&local, 0, sizeof(local));
	memcpy(&client, sa, (size_t)salen < sizeof(client) ?
	    (size_t)salen : sizeof(client));
	llen = sizeof(local);
	(void)getsockname(fd, (struct sockaddr *)&local, &llen);
	mm_metrics_connection(px->metrics, l->lc->proto);
	s = session_new(px, l->lc, l->index);
	set_client_addr(s, &client, &local);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	if (l->lc->n_pp_from == 0) {
		client_start(s, fd);
		return;
	}

	/* Behind a load balancer: the client's address comes first, in a
	 * PROXY header, from one of the balancers the listener names. */
	s->state = S_HEADER;
	s->pp = xcalloc(1, sizeof(*s->pp));
	s->pp->fd = fd;
	if (!pp_trusted(l->lc, sa)) {
		log_info("%s proxy refuse client=%s:%s reason=not-a-balancer",
		    s->sid, s->caddr_str, s->cport_str);
		session_close(s, "not-a-balancer");
		return;
	}
	/* Until its header names the client, the connection counts against
	 * the node's limit under the balancer's address. */
	if (!iptable_conn_open(px->ipt, px->worker, sa, UINT32_MAX,
	    px->conf->limits.conn_max)) {
		log_info("%s proxy refuse client=%s:%s reason=connection-limit",
		    s->sid, s->caddr_str, s->cport_str);
		session_close(s, "connection-limit");
		return;
	}
	s->counted = true;
	s->pp->ev = event_new(px->base, fd, EV_READ | EV_PERSIST, pp_read_cb,
	    s);
	event_add(s->pp->ev, NULL);
	timer_set(s, idle_ms(s));
}

int
proxy_listen(struct proxy *px, const struct mm_listener_conf *lc, int fd)
{
	struct listener *l;
	size_t index = (size_t)(lc - px->conf->listeners);

	if (lc->kind != MM_LISTEN_MAIL)
		return lookup_listen(px->lookups, lc, fd);

	px->listeners = xrealloc(px->listeners,
	    (px->n_listeners + 1) * sizeof(*px->listeners));
	l = &px->listeners[px->n_listeners++];
	l->px = px;
	l->lc = lc;
	l->index = index;
	l->evl = evconnlistener_new(px->base, accept_cb, l,
	    LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->evl == NULL) {
		px->n_listeners--;
		return -1;
	}
	/* The array may have moved: fix the callbacks' pointers. */
	for (size_t i = 0; i < px->n_listeners; i++)
		evconnlistener_set_cb(px->listeners[i].evl, accept_cb,
		    &px->listeners[i]);
	return 0;
}

/* ---- sessions from other sites -------------------------------------- */

/* A node of another site sent a session request: a session whose client
 * is the channel, with the real client's address from the request. */
static void
incoming_up(struct xlink *xl, struct bufferevent *outer,
    const struct xsite_req *req, void *arg)
{
	struct proxy *px = arg;
	const struct mm_config *conf = px->conf;
	struct session *s;
	char port[8];

	if (req->dsync) {
		if (px->dt == NULL) {
			bufferevent_free(outer);
			xlink_close(xl);
			return;
		}
		dtun_accept_link(px->dt, xl, outer, req);
		return;
	}
	s = session_new(px, &px->xsite_lc[req->proto], SIZE_MAX);
	s->xl_client = xl;
	s->hops = req->hops - 1;
	s->cbev = outer;
	snprintf(port, sizeof(port), "%u", (unsigned)req->cport);
	if (evutil_parse_sockaddr_port(req->caddr, (struct sockaddr *)&s->caddr,
	    &(int){ sizeof(s->caddr) }) == 0) {
		if (s->caddr.ss_family == AF_INET)
			((struct sockaddr_in *)&s->caddr)->sin_port =
			    htons(req->cport);
		else if (s->caddr.ss_family == AF_INET6)
			((struct sockaddr_in6 *)&s->caddr)->sin6_port =
			    htons(req->cport);
	}
	mm_strlcpy(s->caddr_str, req->caddr, sizeof(s->caddr_str));
	mm_strlcpy(s->cport_str, port, sizeof(s->cport_str));
	if (xlink_local_addr(xl, &s->laddr) == 0)
		addr_to_str((struct sockaddr *)&s->laddr, s->laddr_str,
		    sizeof(s->laddr_str), s->lport_str, sizeof(s->lport_str));
	bufferevent_setcb(s->cbev, client_read_cb, client_write_cb,
	    client_event_cb, s);
	bufferevent_enable(s->cbev, EV_READ | EV_WRITE);
	log_info("%s xsite accept proto=%s site=%s peer=%s addr=%s "
	    "client=%s:%s hops=%u peer_session=%012llx", s->sid,
	    mm_proto_name(req->proto), xlink_peer_site(xl),
	    xlink_peer_name(xl), xlink_addr(xl), s->caddr_str, s->cport_str,
	    req->hops, (unsigned long long)req->sid);
	if (!iptable_conn_open(px->ipt, px->worker,
	    (struct sockaddr *)&s->caddr, conf->limits.conn_per_ip_max,
	    conf->limits.conn_max)) {
		s->proto->bye(s, "Too many connections, try again later.");
		session_close(s, "connection-limit");
		return;
	}
	s->counted = true;
	prelogin_timer(s);
	s->proto->greet(s);
}

static const struct xlink_cbs incoming_cbs = {
	.up = incoming_up,
};

static void
session_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct proxy *px = arg;

	xsite_accept(px->xs, fd, &incoming_cbs, px,
	    px->conf->limits.backend_connect_ms);
}

int
proxy_listen_dsync(struct proxy *px, int fd)
{
	return px->dt != NULL ? dtun_listen(px->dt, fd) : -1;
}

int
proxy_dsync_route(struct proxy *px, const char *user, const char *site,
    const char *backend)
{
	return px->dt != NULL ? dtun_route(px->dt, user, site, backend,
	    mm_now_ms()) : -1;
}

int
proxy_listen_sessions(struct proxy *px, int fd)
{
	px->sevl = evconnlistener_new(px->base, session_accept_cb, px,
	    LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	return px->sevl != NULL ? 0 : -1;
}

/* ---- writing -------------------------------------------------------- */

void
session_write(struct session *s, const void *data, size_t len)
{
	if (s->cbev != NULL && s->state != S_CLOSING)
		bufferevent_write(s->cbev, data, len);
}

void
session_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->cbev == NULL || s->state == S_CLOSING)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->cbev), fmt, ap);
	va_end(ap);
}

void
session_backend_write(struct session *s, const void *data, size_t len)
{
	if (s->bbev != NULL)
		bufferevent_write(s->bbev, data, len);
}

void
session_backend_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;

	if (s->bbev == NULL)
		return;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(s->bbev), fmt, ap);
	va_end(ap);
}

int
session_evbuf_line(struct evbuffer *in, size_t max, const char **line_r,
    size_t *len_r, size_t *consumed_r)
{
	struct evbuffer_ptr p;
	size_t eol_len = 0;
	unsigned char *data;

	p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (p.pos < 0) {
		if (evbuffer_get_length(in) > max)
			return -1;
		return 0;
	}
	if ((size_t)p.pos > max)
		return -1;
	data = evbuffer_pullup(in, p.pos + (ev_ssize_t)eol_len);
	*line_r = (const char *)data;
	*len_r = (size_t)p.pos;
	*consumed_r = (size_t)p.pos + eol_len;
	return 1;
}

/* ---- pre-login helpers ---------------------------------------------- */

bool
session_count_command(struct session *s)
{
	if (++s->n_commands <= s->px->conf->limits.commands_prelogin_max)
		return true;
	s->proto->bye(s, "Too many commands before login.");
	session_close(s, "command-limit");
	return false;
}

bool
session_login_allowed(const struct session *s)
{
	return !s->lc->require_tls || s->client_tls;
}

bool
session_can_starttls(const struct session *s)
{
	return !s->client_tls &&
	    proxy_tls_server_ctx(s->px->tls, s->listener_index) != NULL;
}

void
session_starttls(struct session *s)
{
	SSL_CTX *ctx = proxy_tls_server_ctx(s->px->tls, s->listener_index);
	struct evbuffer *in = bufferevent_get_input(s->cbev);
	struct bufferevent *tls;
	SSL *ssl;
	size_t injected = evbuffer_get_length(in);

	if (injected > 0) {
		/* Bytes sent behind STARTTLS before the handshake would be
		 * taken as coming from inside TLS: never execute them. */
		log_info("%s proxy starttls-discard client=%s:%s bytes=%zu",
		    s->sid, s->caddr_str, s->cport_str, injected);
		evbuffer_drain(in, injected);
	}
	if (s->proto->free_state != NULL && s->pstate != NULL) {
		/* The protocol resets its parser: nothing carries over. */
		s->proto->free_state(s);
	}
	ssl = SSL_new(ctx);
	if (ssl == NULL) {
		session_close(s, "tls-error");
		return;
	}
	tls = bufferevent_openssl_filter_new(s->px->base, s->cbev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		session_close(s, "tls-error");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	s->cbev = tls;
	s->client_tls = true;
	bufferevent_setcb(s->cbev, client_read_cb, client_write_cb,
	    client_event_cb, s);
	bufferevent_enable(s->cbev, EV_READ | EV_WRITE);
}

void
session_resume(struct session *s)
{
	if (s->state != S_PRELOGIN)
		return;
	session_client_read(s, true);
	prelogin_timer(s);
	if (evbuffer_get_length(bufferevent_get_input(s->cbev)) > 0)
		client_input(s);
}

bool
session_sasl_plain(struct session *s, const char *b64, size_t len)
{
	struct login *l = xcalloc(1, sizeof(*l));

	if (len == 1 && b64[0] == '=')
		len = 0;
	if (sasl_plain_decode(b64, len, l->authz, sizeof(l->authz), l->user,
	    sizeof(l->user), l->pass, sizeof(l->pass)) != 0) {
		mm_wipe(l, sizeof(*l));
		free(l);
		return false;
	}
	session_login(s, l);
	return true;
}

enum sasl_line
session_sasl_line(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->cbev);
	const char *line;
	size_t len, consumed;
	enum sasl_line r;
	int rc;

	rc = session_evbuf_line(in, s->px->conf->limits.line_max, &line, &len,
	    &consumed);
	if (rc == 0)
		return SASL_LINE_AGAIN;
	if (rc < 0) {
		s->proto->bye(s, "Line too long.");
		session_close(s, "line-limit");
		return SASL_LINE_CLOSED;
	}
	if (len == 1 && line[0] == '*')
		r = SASL_LINE_CANCELLED;
	else if (session_sasl_plain(s, line, len))
		r = SASL_LINE_STARTED;
	else
		r = SASL_LINE_INVALID;
	mm_wipe((void *)line, consumed);
	evbuffer_drain(in, consumed);
	return r;
}

/* ---- back-end login ------------------------------------------------- */

static void
log_login(struct session *s, const char *result, const char *reason)
{
	char user[2 * DIR_USER_MAX];

	char port[8] = "";

	if (!s->proto->transfer)
		mm_metrics_count(s->px->metrics, MM_METRICS_LOGIN, s->lc->proto,
		    result);
	/* A back end was chosen and failed. The route names one only once
	 * the directory found it: its own temporary answers do not count. */
	if (strcmp(result, "tempfail") == 0 && s->route.backend != NULL)
		mm_metrics_backend_fail(s->px->metrics, s->lc->proto,
		    s->route.backend->name, reason != NULL ? reason : "-");
	/* A cross-site route's host already names its endpoint. */
	if (s->route.port != 0)
		snprintf(port, sizeof(port), ":%u", s->route.port);
	log_info("%s proxy %s proto=%s user=%s client=%s:%s backend=%s "
	    "addr=%s%s result=%s%s%s", s->sid,
	    s->proto->transfer ? "backend" : "login",
	    mm_proto_name(s->lc->proto),
	    mm_log_escape(s->user, user, sizeof(user)), s->caddr_str,
	    s->cport_str,
	    s->route.backend != NULL ? s->route.backend->name : "-",
	    s->route.host[0] ? s->route.host : "-", port, result,
	    reason != NULL ? " reason=" : "", reason != NULL ? reason : "");
}

/* PROXY protocol v2 header for a TCP stream from the client to us. */
static size_t
proxy2_header(const struct session *s, unsigned char *out)
{
	static const unsigned char sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00,
		0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t n = 16;

	memcpy(out, sig, 12);
	out[12] = 0x21;		/* version 2, PROXY */
	if (s->caddr.ss_family == AF_INET &&
	    s->laddr.ss_family == AF_INET) {
		const struct sockaddr_in *c = (const void *)&s->caddr;
		const struct sockaddr_in *l = (const void *)&s->laddr;

		out[13] = 0x11;	/* TCP over IPv4 */
		memcpy(out + n, &c->sin_addr, 4);
		memcpy(out + n + 4, &l->sin_addr, 4);
		memcpy(out + n + 8, &c->sin_port, 2);
		memcpy(out + n + 10, &l->sin_port, 2);
		n += 12;
	} else if (s->caddr.ss_family == AF_INET6 &&
	    s->laddr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *c = (const void *)&s->caddr;
		const struct sockaddr_in6 *l = (const void *)&s->laddr;

		out[13] = 0x21;	/* TCP over IPv6 */
		memcpy(out + n, &c->sin6_addr, 16);
		memcpy(out + n + 16, &l->sin6_addr, 16);
		memcpy(out + n + 32, &c->sin6_port, 2);
		memcpy(out + n + 34, &l->sin6_port, 2);
		n += 36;
	} else {
		out[13] = 0x00;	/* UNSPEC: the back end uses the socket */
	}
	out[14] = (unsigned char)((n - 16) >> 8);
	out[15] = (unsigned char)((n - 16) & 0xff);
	return n;
}

static void
backend_connect(struct session *s)
{
	struct proxy *px = s->px;
	const struct mm_backend_conf *be = s->route.backend;
	struct bufferevent *bev;

	if (be->tls == MM_TLS_IMPLICIT) {
		SSL *ssl = proxy_tls_client_ssl(
		    proxy_tls_client_ctx(px->tls, be),
		    be->tls_name != NULL ? be->tls_name : s->route.host);

		if (ssl == NULL) {
			session_login_fail(s, LOGIN_FAIL_TEMP, "tls-setup");
			return;
		}
		bev = bufferevent_openssl_socket_new(px->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	} else {
		bev = bufferevent_socket_new(px->base, -1,
		    BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev == NULL) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "bufferevent");
		return;
	}
	s->bbev = bev;
	bufferevent_setcb(bev, backend_read_cb, backend_write_cb,
	    backend_event_cb, s);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	timer_set(s, px->conf->limits.backend_connect_ms);
	if (bufferevent_socket_connect_hostname(bev, px->dns, AF_UNSPEC,
	    s->route.host, s->route.port) != 0) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "connect");
		return;
	}
}

static void
remote_up(struct xlink *xl, struct bufferevent *outer,
    const struct xsite_req *req, void *arg)
{
	struct session *s = arg;

	s->bbev = outer;
	mm_strlcpy(s->route.host, xlink_addr(xl), sizeof(s->route.host));
	bufferevent_setcb(outer, backend_read_cb, backend_write_cb,
	    backend_event_cb, s);
	bufferevent_enable(outer, EV_READ | EV_WRITE);
	/* The far node greets, then the protocol logs in as with any
	 * back end (SASL PLAIN, which it always offers). */
	s->proto->backend_connected(s);
}

static void
remote_failed(struct xlink *xl, const char *reason, void *arg)
{
	session_login_fail(arg, LOGIN_FAIL_TEMP, "xsite-unreachable");
}

static const struct xlink_cbs remote_cbs = {
	.up = remote_up,
	.failed = remote_failed,
};

/* The user lives at another site: carry the login to a node there. */
static void
remote_login(struct session *s)
{
	struct proxy *px = s->px;
	struct xsite_req rq;
	const char *why = NULL;
	uint64_t timeout = px->conf->limits.backend_connect_ms;

	s->route.backend = &px->xsite_be;
	mm_strlcpy(s->route.host, s->route.site, sizeof(s->route.host));
	if (s->hops == 0) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "hop-limit");
		return;
	}
	memset(&rq, 0, sizeof(rq));
	rq.proto = s->lc->proto;
	mm_strlcpy(rq.user, s->user, sizeof(rq.user));
	mm_strlcpy(rq.caddr, s->caddr_str, sizeof(rq.caddr));
	rq.cport = (uint16_t)strtoul(s->cport_str, NULL, 10);
	rq.hops = s->hops;
	rq.sid = s->id;
	timer_set(s, timeout);
	s->xl_backend = xsite_connect(px->xs, s->route.site, &rq, &remote_cbs,
	    s, timeout, &why);
	mm_wipe(&rq, sizeof(rq));
	if (s->xl_backend == NULL)
		session_login_fail(s, LOGIN_FAIL_TEMP, why);
}

/* The login in flight ends: its slot in the per-address count is given
 * back, as a failure if it failed. */
static void
login_end(struct session *s, bool failed)
{
	if (!s->login_counted)
		return;
	s->login_counted = false;
	iptable_login_end(s->px->ipt, s->px->worker,
	    (struct sockaddr *)&s->caddr, mm_now_ms(),
	    s->px->conf->limits.auth_fail_window_ms, failed);
}

void
session_login(struct session *s, struct login *l)
{
	struct proxy *px = s->px;
	const struct mm_limits *lim = &px->conf->limits;

	login_free(s->login);
	s->login = l;
	s->held = false;
	mm_strlcpy(s->user, l->user, sizeof(s->user));
	s->state = S_LOGIN;
	s->login_start_ms = mm_now_ms();
	bufferevent_disable(s->cbev, EV_READ);
	memset(&s->route, 0, sizeof(s->route));

	/* A login in flight counts against the address until it ends. */
	if (!iptable_login_begin(px->ipt, px->worker,
	    (struct sockaddr *)&s->caddr, s->login_start_ms,
	    lim->auth_fail_window_ms, lim->auth_fail_per_ip_max)) {
		session_login_fail(s, LOGIN_FAIL_AUTH, "address-fail-limit");
		return;
	}
	s->login_counted = true;
	login_route(s);
}

/* Looks the login's user up and goes where the directory says. A user
 * frozen mid-move is held: looked up again every HOLD_POLL_MS until the
 * move commits (the new owner's route) or aborts (the old one), or
 * login-hold has passed (a temporary failure). */
static void
login_route(struct session *s)
{
	struct proxy *px = s->px;
	uint64_t now = mm_now_ms(), hold = px->conf->limits.login_hold_ms;
	enum dir_result r;

	r = dir_lookup(px->dir, s->login->user, s->lc->proto, &s->route);
	if (r == DIR_FROZEN) {
		if (!s->held) {
			s->held = true;
			s->hold_start_ms = now;
		}
		if (now - s->hold_start_ms < hold) {
			uint64_t left = hold - (now - s->hold_start_ms);

			timer_set(s, left < HOLD_POLL_MS ? left : HOLD_POLL_MS);
			return;
		}
	}
	if (s->held) {
		char user[4 * DIR_USER_MAX + 1];

		s->held = false;
		mm_metrics_login_held(session_metrics(s), now -
		    s->hold_start_ms);
		log_info("%s proxy held user=%s ms=%llu result=%s", s->sid,
		    mm_log_escape(s->user, user, sizeof(user)),
		    (unsigned long long)(now - s->hold_start_ms),
		    dir_result_name(r));
	}
	switch (r) {
	case DIR_FOUND:
		backend_connect(s);
		return;
	case DIR_NOTFOUND:
		session_login_fail(s, LOGIN_FAIL_AUTH, "unknown-user");
		return;
	case DIR_REMOTE:
		remote_login(s);
		return;
	case DIR_TEMPFAIL:
	case DIR_FROZEN:
		session_login_fail(s, LOGIN_FAIL_TEMP, dir_result_name(r));
		return;
	}
}

void
session_backend_open(struct session *s, const struct dir_route *route,
    bool remote)
{
	s->route = *route;
	s->state = S_LOGIN;
	session_client_read(s, false);
	backend_drop(s);
	if (remote)
		remote_login(s);
	else
		backend_connect(s);
}

void
session_backend_wait(struct session *s, uint64_t timeout_ms)
{
	s->state = S_LOGIN;
	session_client_read(s, false);
	timer_set(s, timeout_ms);
	/* Lines that came early are handled from the loop, not from
	 * inside the caller. */
	if (s->bbev != NULL &&
	    evbuffer_get_length(bufferevent_get_input(s->bbev)) > 0)
		bufferevent_trigger(s->bbev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void
session_client_read(struct session *s, bool on)
{
	if (s->cbev == NULL)
		return;
	if (s->rev[0] != NULL) {
		if (on)
			event_add(s->rev[0], NULL);
		else
			event_del(s->rev[0]);
	} else if (on) {
		bufferevent_enable(s->cbev, EV_READ);
	} else {
		bufferevent_disable(s->cbev, EV_READ);
	}
}

/* Reads fd straight into buf, RELAY_READ_CHUNK at a time, until the
 * socket has nothing more or RELAY_READ_BURST bytes came. Returns the
 * bytes read; *end_r is 0 while the socket is open, 1 at its end of file,
 * -1 on an error. */
static size_t
read_burst(evutil_socket_t fd, struct evbuffer *buf, int *end_r)
{
	size_t total = 0;

	*end_r = 0;
	while (total < RELAY_READ_BURST) {
		struct evbuffer_iovec v[2];
		int nv = evbuffer_reserve_space(buf, RELAY_READ_CHUNK, v, 2);
		ssize_t r;
		size_t left;
		int i;

		if (nv <= 0)
			break;
		r = readv(fd, (struct iovec *)v, nv);
		if (r <= 0) {
			evbuffer_commit_space(buf, v, 0);
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			*end_r = r == 0 ? 1 : -1;
			break;
		}
		left = (size_t)r;
		for (i = 0; i < nv; i++) {
			if (v[i].iov_len > left)
				v[i].iov_len = left;
			left -= v[i].iov_len;
		}
		evbuffer_commit_space(buf, v, nv);
		total += (size_t)r;
		if ((size_t)r < RELAY_READ_CHUNK)
			break;	/* the socket is drained for now */
	}
	return total;
}

/* Large reads of a plaintext client into its input buffer, for the
 * protocol to take from there. */
static void
bulk_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(s->cbev);
	size_t total;
	int end;

	/* A socket bufferevent keeps the end of its input frozen against
	 * everyone but itself. */
	evbuffer_unfreeze(in, 0);
	total = read_burst(fd, in, &end);
	evbuffer_freeze(in, 0);
	if (total > 0 && s->state == S_PRELOGIN)
		client_input(s);
	if (end != 0 && s->state != S_CLOSING && !s->free_pending) {
		/* As if the bufferevent had seen it; it closes the socket. */
		if (s->rev[0] != NULL) {
			event_free(s->rev[0]);
			s->rev[0] = NULL;
		}
		client_event_cb(s->cbev, BEV_EVENT_READING | BEV_EVENT_EOF, s);
	}
}

void
session_client_bulk(struct session *s, bool on)
{
	evutil_socket_t fd;

	if (s->cbev == NULL || on == (s->rev[0] != NULL))
		return;
	if (!on) {
		bool was_on = event_pending(s->rev[0], EV_READ, NULL);

		event_free(s->rev[0]);
		s->rev[0] = NULL;
		if (was_on)
			bufferevent_enable(s->cbev, EV_READ);
		return;
	}
	if (!is_plain_socket(s->cbev))
		return;		/* TLS: its bufferevent decrypts */
	fd = bufferevent_getfd(s->cbev);
	s->rev[0] = event_new(s->px->base, fd, EV_READ | EV_PERSIST,
	    bulk_read_cb, s);
	if (bufferevent_get_enabled(s->cbev) & EV_READ)
		event_add(s->rev[0], NULL);
	bufferevent_disable(s->cbev, EV_READ);
}

void
session_backend_close(struct session *s)
{
	backend_drop(s);
}

/* ---- idle back-end connections -------------------------------------- */

/* Takes pk out of its worker's list and frees it; its connection is
 * closed unless it was taken (bev NULL). */
static void
parked_free(struct parked *pk)
{
	struct proxy *px = pk->px;

	if (pk->prev != NULL)
		pk->prev->next = pk->next;
	else
		px->parked = pk->next;
	if (pk->next != NULL)
		pk->next->prev = pk->prev;
	px->n_parked--;
	if (pk->bev != NULL)
		bufferevent_free(pk->bev);
	event_free(pk->timer);
	free(pk);
}

/* A parked connection that speaks (a timeout notice), closes or idles too
 * long is of no more use. */
static void
parked_read_cb(struct bufferevent *bev, void *arg)
{
	parked_free(arg);
}

static void
parked_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		parked_free(arg);
}

static void
parked_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	parked_free(arg);
}

void
session_backend_park(struct session *s, const char *key, const void *notes,
    size_t notes_len)
{
	struct proxy *px = s->px;
	struct parked *pk;
	struct timeval tv = { PARK_IDLE_MS / 1000,
		(PARK_IDLE_MS % 1000) * 1000 };

	if (s->bbev == NULL || s->xl_backend != NULL || px->draining ||
	    s->route.backend == NULL ||
	    s->route.backend->client_addr == MM_CADDR_PROXY2 ||
	    notes_len > PARK_NOTES_MAX || strlen(key) >= PARK_KEY_MAX ||
	    evbuffer_get_length(bufferevent_get_input(s->bbev)) > 0) {
		backend_drop(s);
		return;
	}
	if (px->n_parked >= PARK_MAX) {
		/* The oldest goes. */
		pk = px->parked;
		while (pk->next != NULL)
			pk = pk->next;
		parked_free(pk);
	}
	pk = xcalloc(1, sizeof(*pk));
	pk->px = px;
	pk->bev = s->bbev;
	s->bbev = NULL;
	mm_strlcpy(pk->key, key, sizeof(pk->key));
	memcpy(pk->notes, notes, notes_len);
	pk->notes_len = notes_len;
	pk->timer = evtimer_new(px->base, parked_timer_cb, pk);
	bufferevent_setcb(pk->bev, parked_read_cb, NULL, parked_event_cb, pk);
	bufferevent_enable(pk->bev, EV_READ);
	evtimer_add(pk->timer, &tv);
	pk->next = px->parked;
	if (px->parked != NULL)
		px->parked->prev = pk;
	px->parked = pk;
	px->n_parked++;
}

bool
session_backend_unpark(struct session *s, const char *key,
    const struct dir_route *route, void *notes, size_t notes_len)
{
	struct proxy *px = s->px;
	struct parked *pk;

	for (pk = px->parked; pk != NULL; pk = pk->next)
		if (strcmp(pk->key, key) == 0 && pk->notes_len == notes_len)
			break;
	if (pk == NULL)
		return false;
	backend_drop(s);
	s->bbev = pk->bev;
	pk->bev = NULL;
	memcpy(notes, pk->notes, notes_len);
	parked_free(pk);
	s->route = *route;
	bufferevent_setcb(s->bbev, backend_read_cb, backend_write_cb,
	    backend_event_cb, s);
	bufferevent_enable(s->bbev, EV_READ | EV_WRITE);
	return true;
}

bool
session_draining(const struct session *s)
{
	return s->px->draining;
}

static void
relay_start(struct session *s)
{
	const struct mm_limits *lim = &s->px->conf->limits;

	s->state = S_RELAY;
	if (s->pstate != NULL)
		s->proto->free_state(s);
	login_free(s->login);
	s->login = NULL;
	s->last_active_ms = mm_now_ms();
	timer_set(s, lim->idle_ms);
	bufferevent_set_max_single_read(s->cbev, RELAY_MAX_SINGLE_IO);
	bufferevent_set_max_single_write(s->cbev, RELAY_MAX_SINGLE_IO);
	bufferevent_set_max_single_read(s->bbev, RELAY_MAX_SINGLE_IO);
	bufferevent_set_max_single_write(s->bbev, RELAY_MAX_SINGLE_IO);
	/* Write callbacks fire once the output is below half the buffer. */
	bufferevent_setwatermark(s->cbev, EV_WRITE, lim->relay_buffer / 2, 0);
	bufferevent_setwatermark(s->bbev, EV_WRITE, lim->relay_buffer / 2, 0);
	bufferevent_enable(s->cbev, EV_READ | EV_WRITE);
	bufferevent_enable(s->bbev, EV_READ | EV_WRITE);
	/* Commands pipelined behind the login, and anything the back end
	 * sent after its reply, go through now. */
	if (evbuffer_get_length(bufferevent_get_input(s->cbev)) > 0)
		client_read_cb(s->cbev, s);
	if (s->state == S_RELAY &&
	    evbuffer_get_length(bufferevent_get_input(s->bbev)) > 0)
		backend_read_cb(s->bbev, s);
	if (s->state == S_RELAY) {
		relay_direct(s, 0);
		relay_direct(s, 1);
		/* Backpressure set before the switch carries over. */
		if (s->src_paused[0] && s->rev[0] != NULL)
			event_del(s->rev[0]);
		if (s->src_paused[1] && s->rev[1] != NULL)
			event_del(s->rev[1]);
	}
}

void
session_login_ok(struct session *s)
{
	login_end(s, false);
	log_login(s, "ok", NULL);
	relay_start(s);
}

static uint64_t
fail_delay(const struct session *s)
{
	const struct mm_limits *lim = &s->px->conf->limits;
	uint64_t d = lim->auth_fail_delay_ms;
	unsigned i;

	for (i = 1; i < s->n_fail && d < lim->auth_fail_delay_max_ms; i++)
		d *= 2;
	return d < lim->auth_fail_delay_max_ms ? d :
	    lim->auth_fail_delay_max_ms;
}

/* Notes how long a failed login took to fail (a wrong password costs the
 * back end's own delay, an unknown user nothing) and returns the longest
 * of the current and the previous window: no failure is answered sooner,
 * so the time tells no cause from another. */
static uint64_t
fail_floor(struct proxy *px, uint64_t now, uint64_t took)
{
	uint64_t window = now / FAIL_FLOOR_WINDOW_MS;

	if (window != px->fail_window) {
		px->fail_slowest[1] = window == px->fail_window + 1 ?
		    px->fail_slowest[0] : 0;
		px->fail_slowest[0] = 0;
		px->fail_window = window;
	}
	if (took > px->conf->limits.backend_connect_ms)
		took = px->conf->limits.backend_connect_ms;
	if (took > px->fail_slowest[0])
		px->fail_slowest[0] = took;
	return px->fail_slowest[0] > px->fail_slowest[1] ?
	    px->fail_slowest[0] : px->fail_slowest[1];
}

void
session_login_fail(struct session *s, enum login_fail kind,
    const char *reason)
{
	struct proxy *px = s->px;
	const struct mm_limits *lim = &px->conf->limits;
	uint64_t now = mm_now_ms(), took, floor, wait;

	if (s->state != S_LOGIN)
		return;
	log_login(s, kind == LOGIN_FAIL_AUTH ? "authfail" : "tempfail",
	    reason);
	login_free(s->login);
	s->login = NULL;
	backend_drop(s);
	/* The reply always comes from the timer, never from inside the
	 * caller's callback chain; a temporary failure waits 0 ms. */
	s->pending_fail = kind;
	s->state = S_DELAY;
	if (kind == LOGIN_FAIL_TEMP) {
		login_end(s, false);
		timer_set(s, 0);
		return;
	}
	s->n_fail++;
	if (s->login_counted)
		login_end(s, true);
	else
		iptable_fail_add(px->ipt, (struct sockaddr *)&s->caddr, now,
		    lim->auth_fail_window_ms);
	if (s->xl_client != NULL) {
		/* The node the client reached makes it wait. */
		timer_set(s, 0);
		return;
	}
	/* The delay runs from the login command, and is never shorter than
	 * the slowest recent failure. */
	took = now - s->login_start_ms;
	floor = fail_floor(px, now, took);
	wait = fail_delay(s);
	if (floor > wait)
		wait = floor;
	wait = wait > took ? wait - took : 0;
	log_debug("%s proxy fail-delay failures=%u delay_ms=%llu", s->sid,
	    s->n_fail, (unsigned long long)wait);
	timer_set(s, wait);
}

void
session_login_refused(struct session *s, const char *text, size_t len,
    const char *reason)
{
	free(s->fail_text);
	s->fail_text = xstrndup(text, len);
	session_login_fail(s, LOGIN_FAIL_TEMP, reason);
}

/* The delay of a failed login is over: answer, maybe say goodbye. */
static void
delay_done(struct session *s)
{
	s->state = S_PRELOGIN;
	s->proto->login_failed(s, s->pending_fail);
	free(s->fail_text);
	s->fail_text = NULL;
	if (s->state != S_PRELOGIN)
		return;
	if (s->pending_fail == LOGIN_FAIL_AUTH &&
	    s->n_fail >= s->px->conf->limits.auth_fail_max) {
		s->proto->bye(s, "Too many failed logins.");
		session_close(s, "auth-limit");
		return;
	}
	session_resume(s);
}

void
session_backend_starttls(struct session *s)
{
	const struct mm_backend_conf *be = s->route.backend;
	struct bufferevent *tls;
	SSL *ssl;

	ssl = proxy_tls_client_ssl(proxy_tls_client_ctx(s->px->tls, be),
	    be->tls_name != NULL ? be->tls_name : s->route.host);
	if (ssl == NULL) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "tls-setup");
		return;
	}
	/* Anything the back end sent after its STARTTLS reply is not ours
	 * to read as plaintext. */
	evbuffer_drain(bufferevent_get_input(s->bbev),
	    evbuffer_get_length(bufferevent_get_input(s->bbev)));
	tls = bufferevent_openssl_filter_new(s->px->base, s->bbev, ssl,
	    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		SSL_free(ssl);
		session_login_fail(s, LOGIN_FAIL_TEMP, "tls-setup");
		return;
	}
	s->bbev = tls;
	bufferevent_setcb(tls, backend_read_cb, backend_write_cb,
	    backend_event_cb, s);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
}

/* ---- callbacks ------------------------------------------------------ */

static void
relay_pause(struct session *s, int dir)
{
	if (s->rev[dir] != NULL)
		event_del(s->rev[dir]);
	else
		bufferevent_disable(dir == 0 ? s->cbev : s->bbev, EV_READ);
	s->src_paused[dir] = true;
}

static void
relay_resume(struct session *s, int dir)
{
	if (!s->src_paused[dir] || s->piped[dir] > 0)
		return;
	s->src_paused[dir] = false;
	if (s->rev[dir] != NULL)
		event_add(s->rev[dir], NULL);
	else
		bufferevent_enable(dir == 0 ? s->cbev : s->bbev, EV_READ);
}

/* n bytes relayed; dir 0: client to back end. */
static void
count_bytes(struct session *s, int dir, size_t n)
{
	if (dir == 0)
		s->bytes_c2b += n;
	else
		s->bytes_b2c += n;
	mm_metrics_bytes(s->px->metrics, s->lc->proto, dir == 0 ? MM_METRICS_IN :
	    MM_METRICS_OUT, n);
}

static void
relay_account(struct session *s, int dir, size_t n, struct evbuffer *out)
{
	count_bytes(s, dir, n);
	s->last_active_ms = mm_now_ms();
	/* The other side is slow: stop reading until it drains. */
	if (evbuffer_get_length(out) >= s->px->conf->limits.relay_buffer)
		relay_pause(s, dir);
}

/* Moves what a bufferevent has read to the other side's output. */
static void
relay(struct session *s, struct bufferevent *src, struct bufferevent *dst,
    int dir)
{
	struct evbuffer *in = bufferevent_get_input(src);
	struct evbuffer *out = bufferevent_get_output(dst);
	size_t n = evbuffer_get_length(in);

	if (n == 0)
		return;
	evbuffer_add_buffer(out, in);
	relay_account(s, dir, n, out);
}

static const char *
close_reason(int dir, bool eof)
{
	if (dir == 0)
		return eof ? "client-closed" : "client-error";
	return eof ? "backend-closed" : "backend-error";
}

/* Moves what waits in the pipe to the destination socket. Returns 0 when
 * the pipe is empty, 1 when the destination is full, -1 on an error. */
static int
pipe_drain(struct session *s, int dir)
{
	evutil_socket_t dst = bufferevent_getfd(dir == 0 ? s->bbev : s->cbev);

	while (s->piped[dir] > 0) {
		ssize_t m = splice(s->pipefd[dir][0], NULL, dst, NULL,
		    s->piped[dir], SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (m < 0 && (errno == EAGAIN || errno == EINTR))
			return 1;
		if (m <= 0)
			return -1;
		s->piped[dir] -= (size_t)m;
	}
	return 0;
}

static void
pipe_writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	int dir = s->wev[0] != NULL && event_get_fd(s->wev[0]) == fd ? 0 : 1;
	int rc = pipe_drain(s, dir);

	if (rc < 0) {
		session_close(s, close_reason(!dir, false));
		return;
	}
	if (rc == 0) {
		event_del(s->wev[dir]);
		relay_resume(s, dir);
	}
}

/* One splice round for a plaintext pair. Returns 1 if the caller should
 * read into the output buffer instead, 0 when done (the session may be
 * closing). */
static int
relay_splice(struct session *s, int dir, evutil_socket_t fd)
{
	struct bufferevent *dst = dir == 0 ? s->bbev : s->cbev;
	ssize_t n;
	int rc;

	if (s->pipefd[dir][0] < 0) {
		if (pipe2(s->pipefd[dir], O_NONBLOCK | O_CLOEXEC) != 0) {
			s->splice_ok[dir] = false;
			return 1;
		}
		fcntl(s->pipefd[dir][1], F_SETPIPE_SZ, RELAY_PIPE_SIZE);
	}
	n = splice(fd, NULL, s->pipefd[dir][1], NULL, RELAY_PIPE_SIZE,
	    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0) {
		session_close(s, close_reason(dir, n == 0));
		return 0;
	}
	count_bytes(s, dir, (size_t)n);
	s->last_active_ms = mm_now_ms();
	s->piped[dir] = (size_t)n;
	rc = pipe_drain(s, dir);
	if (rc < 0) {
		session_close(s, close_reason(!dir, false));
		return 0;
	}
	if (rc > 0) {
		/* The destination is full: read no more until it drains. */
		relay_pause(s, dir);
		if (s->wev[dir] == NULL)
			s->wev[dir] = event_new(s->px->base,
			    bufferevent_getfd(dst), EV_WRITE | EV_PERSIST,
			    pipe_writable_cb, s);
		event_add(s->wev[dir], NULL);
	}
	return 0;
}

/* A plaintext source is read here rather than by its bufferevent, which
 * reads at most 4 KiB per wakeup: large reads straight into the other
 * side's output buffer, without a copy through the input buffer. */
static void
relay_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	int dir = fd == bufferevent_getfd(s->cbev) ? 0 : 1;
	struct evbuffer *out = bufferevent_get_output(dir == 0 ? s->bbev :
	    s->cbev);
	size_t total;
	int end;

	/* Splice only while nothing waits in the output buffer, so bytes
	 * keep their order. */
	if (s->splice_ok[dir] && s->piped[dir] == 0 &&
	    evbuffer_get_length(out) == 0 && relay_splice(s, dir, fd) == 0)
		return;
	total = read_burst(fd, out, &end);
	if (end != 0) {
		if (total > 0)
			relay_account(s, dir, total, out);
		session_close(s, close_reason(dir, end > 0));
		return;
	}
	if (total > 0)
		relay_account(s, dir, total, out);
}

static bool
is_plain_socket(struct bufferevent *bev)
{
	return bufferevent_getfd(bev) >= 0 &&
	    bufferevent_get_underlying(bev) == NULL &&
	    bufferevent_openssl_get_ssl(bev) == NULL;
}

/* Switches a plaintext source side to relay_read_cb. */
static void
relay_direct(struct session *s, int dir)
{
	struct bufferevent *src = dir == 0 ? s->cbev : s->bbev;
	evutil_socket_t fd = bufferevent_getfd(src);

	if (!is_plain_socket(src))
		return;		/* TLS: its bufferevent decrypts */
	bufferevent_disable(src, EV_READ);
	s->rev[dir] = event_new(s->px->base, fd, EV_READ | EV_PERSIST,
	    relay_read_cb, s);
	s->splice_ok[dir] = is_plain_socket(dir == 0 ? s->bbev : s->cbev);
	event_add(s->rev[dir], NULL);
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case S_PRELOGIN:
		client_input(s);
		break;
	case S_RELAY:
		relay(s, s->cbev, s->bbev, 0);
		break;
	default:
		break;
	}
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == S_CLOSING) {
		if (s->close_step == CLOSE_FLUSH)
			close_flushed(s);
		return;
	}
	if (s->state == S_RELAY)
		relay_resume(s, 1);
	else if (s->state == S_PRELOGIN && s->proto->client_drained != NULL)
		s->proto->client_drained(s);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	bool tls_failed = false;

	if (what & BEV_EVENT_CONNECTED)
		return;		/* TLS handshake done */
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		const char *result = "client-closed";

		if (what & BEV_EVENT_ERROR) {
			int err = EVUTIL_SOCKET_ERROR();
			unsigned long e = bufferevent_get_openssl_error(bev);

			/* A reset is how many clients close (one that did
			 * not read all we sent, TLS 1.3's session tickets
			 * among it): not an error of the connection. */
			tls_failed = e != 0;
			result = e != 0 ? "client-tls-error" :
			    err == ECONNRESET || err == EPIPE ? "client-reset" :
			    "client-error";
			while (bufferevent_get_openssl_error(bev) != 0)
				;
		}
		if (s->state == S_CLOSING) {
			session_free_later(s);
			return;
		}
		if (s->state == S_RELAY && s->bbev != NULL) {
			/* Hand what the client sent last to the back end. */
			relay(s, s->cbev, s->bbev, 0);
		}
		if (tls_failed) {
			/* Its alert (a refused handshake) may still wait
			 * below the TLS filter: the close sends it. */
			s->client_failed = true;
		} else {
			bufferevent_free(s->cbev);
			s->cbev = NULL;
		}
		session_close(s, result);
	}
}

/* Whether the protocol wants the back end's lines now. */
static bool
backend_lines_wanted(const struct session *s)
{
	return s->bbev != NULL && (s->state == S_LOGIN ||
	    (s->state == S_PRELOGIN && s->proto->lines_before_wait));
}

/* Hands the protocol the back end's lines while it logs in. Each line is
 * taken out of the buffer before it is handled: once the login succeeds
 * the relay owns whatever follows it. */
static void
backend_login_input(struct session *s)
{
	char *copy = NULL;

	while (backend_lines_wanted(s)) {
		struct evbuffer *in = bufferevent_get_input(s->bbev);
		const char *line;
		size_t len, consumed;
		int rc;

		rc = session_evbuf_line(in, BACKEND_LINE_MAX, &line, &len,
		    &consumed);
		if (rc == 0)
			break;
		if (rc < 0) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-line-too-long");
			break;
		}
		if (copy == NULL)
			copy = xmalloc(BACKEND_LINE_MAX + 1);
		memcpy(copy, line, len);
		copy[len] = '\0';
		evbuffer_drain(in, consumed);
		if (!s->proto->backend_line(s, copy, len))
			break;
	}
	free(copy);
}

static void
backend_read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	switch (s->state) {
	case S_LOGIN:
	case S_PRELOGIN:
		backend_login_input(s);
		break;
	case S_RELAY:
		relay(s, s->bbev, s->cbev, 1);
		break;
	default:
		break;
	}
}

static void
backend_write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	if (s->state == S_RELAY)
		relay_resume(s, 0);
	else if (s->proto->backend_drained != NULL)
		s->proto->backend_drained(s);
}

static void
backend_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (s->state != S_LOGIN)
			return;
		set_nodelay(bev);
		if (s->proto->backend_tls_done != NULL &&
		    bufferevent_get_underlying(bev) != NULL) {
			s->proto->backend_tls_done(s);	/* STARTTLS done */
			return;
		}
		if (s->route.backend->client_addr == MM_CADDR_PROXY2) {
			unsigned char hdr[PROXY2_HEADER_MAX];

			session_backend_write(s, hdr, proxy2_header(s, hdr));
		}
		s->proto->backend_connected(s);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		if (s->state == S_LOGIN) {
			const char *reason = "backend-closed";

			if (what & BEV_EVENT_ERROR) {
				int dns = bufferevent_socket_get_dns_error(bev);

				reason = bufferevent_get_openssl_error(bev) != 0 ?
				    "backend-tls-error" : dns != 0 ?
				    "backend-dns-error" : "backend-unreachable";
				while (bufferevent_get_openssl_error(bev) != 0)
					;
			}
			session_login_fail(s, LOGIN_FAIL_TEMP, reason);
			return;
		}
		if (s->state == S_PRELOGIN && s->proto->backend_lost != NULL) {
			s->proto->backend_lost(s, (what & BEV_EVENT_ERROR) ?
			    "backend-error" : "backend-closed");
			return;
		}
		if (s->state == S_RELAY) {
			/* The back end's last words go to the client. */
			relay(s, s->bbev, s->cbev, 1);
			session_close(s, (what & BEV_EVENT_ERROR) ?
			    "backend-error" : "backend-closed");
		}
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	const struct mm_limits *lim = &s->px->conf->limits;
	uint64_t now, idle;

	switch (s->state) {
	case S_HEADER:
		log_info("%s proxy refuse client=%s:%s reason=proxy-header "
		    "error=\"no header in time\"", s->sid, s->caddr_str,
		    s->cport_str);
		session_close(s, "proxy-header");
		break;
	case S_PRELOGIN:
		if (!s->timer_deadline) {
			s->proto->bye(s, "Idle for too long.");
			session_close(s, "idle-timeout");
		} else if (s->proto->deadline != NULL) {
			s->proto->deadline(s);
		} else {
			s->proto->bye(s, "Too long without logging in.");
			session_close(s, "login-timeout");
		}
		break;
	case S_LOGIN:
		if (s->held)
			login_route(s);
		else
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-timeout");
		break;
	case S_DELAY:
		delay_done(s);
		break;
	case S_RELAY:
		/* Activity only stamps a time; the timer checks it lazily. */
		now = mm_now_ms();
		idle = now - s->last_active_ms;
		if (idle >= lim->idle_ms) {
			session_close(s, "idle-timeout");
			break;
		}
		timer_set(s, lim->idle_ms - idle);
		break;
	case S_CLOSING:
		if (s->close_step == CLOSE_HANDOFF)
			close_linger(s);
		else
			session_free_later(s);
		break;
	}
}

/* ---- drain ---------------------------------------------------------- */

static void
check_drained(struct proxy *px)
{
	if (px->draining && px->n_sessions == 0 && px->drain_done != NULL) {
		void (*cb)(void *) = px->drain_done;

		px->drain_done = NULL;
		cb(px->drain_arg);
	}
}

static void
drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy *px = arg;
	struct session *s, *next;

	for (s = px->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == S_CLOSING)
			continue;
		if (s->state != S_RELAY && s->cbev != NULL)
			s->proto->bye(s, "Server shutting down.");
		session_close(s, "shutdown");
	}
}

void
proxy_drain(struct proxy *px, uint64_t deadline_ms,
    void (*done_cb)(void *), void *arg)
{
	struct session *s, *next;
	uint64_t now = mm_now_ms();
	size_t i;
	struct timeval tv;

	px->draining = true;
	while (px->parked != NULL)
		parked_free(px->parked);
	px->drain_done = done_cb;
	px->drain_arg = arg;
	for (i = 0; i < px->n_listeners; i++) {
		evconnlistener_free(px->listeners[i].evl);
		px->listeners[i].evl = NULL;
	}
	if (px->sevl != NULL) {
		evconnlistener_free(px->sevl);
		px->sevl = NULL;
	}
	xsite_drop_pending(px->xs);
	lookup_drain(px->lookups);
	/* Nobody has logged in on these yet, and no message is on its
	 * way: end them now. */
	for (s = px->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == S_CLOSING && s->linger_shut) {
			session_free_later(s);
			continue;
		}
		if (s->proto->busy != NULL && s->proto->busy(s))
			continue;
		if (s->state == S_HEADER || s->state == S_PRELOGIN ||
		    s->state == S_DELAY) {
			s->proto->bye(s, "Server shutting down.");
			session_close(s, "shutdown");
		}
	}
	if (px->drain_timer == NULL)
		px->drain_timer = evtimer_new(px->base, drain_timer_cb, px);
	deadline_ms = deadline_ms > now ? deadline_ms - now : 0;
	tv.tv_sec = (time_t)(deadline_ms / 1000);
	tv.tv_usec = (suseconds_t)((deadline_ms % 1000) * 1000);
	evtimer_add(px->drain_timer, &tv);
	check_drained(px);
}
