/* Lookups for Postfix (socketmap) and nginx (auth_http), answered by each
 * worker from the directory it reads: connections, framing and the two
 * protocols' answers. */
#include "lookup.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "http_auth.h"
#include "mm_metrics.h"
#include "mm_log.h"
#include "mm_util.h"
#include "netstring.h"

/* Postfix's error(8) under the service name "retry" (in the stock
 * master.cf) defers the mail with this text instead of bouncing it. */
#define FROZEN_TRANSPORT "retry:4.2.1 Mailbox is being moved, try again later"

#define STATUS_BAD_LOGIN "Invalid login or password"
#define STATUS_TEMP "Temporary server problem, try again later"
#define STATUS_FROZEN "Mailbox is being moved, try again later"
#define STATUS_UNKNOWN "User unknown"
#define WAIT_BAD_LOGIN 3	/* seconds, as nginx's documented example */
#define WAIT_OTHER 1		/* the least that keeps nginx's session */

/* After an error answer the rest of a bad request is read and dropped
 * for a while: closing with unread input sends a reset, which can destroy
 * the answer before the peer reads it. */
#define LINGER_MS 2000
#define LINGER_MAX (64 * 1024)

#define MAP_NAME_LOG_MAX 64	/* bytes of an unknown map name echoed */
#define ADDR_STR_MAX (INET6_ADDRSTRLEN + 8)

enum lconn_state {
	LC_READ,	/* reading requests */
	LC_RESOLVE,	/* auth_http: the back end's name is being resolved */
	LC_FLUSH,	/* writing the last answer, then closing */
	LC_LINGER,	/* after an error: written, reading to the peer's EOF */
	LC_DEAD,	/* closed; freed from the reaper */
};

struct lk_listener {
	struct lookup *lk;
	struct evconnlistener *evl;
	const struct mm_listener_conf *lc;
};

struct lconn {
	struct lookup *lk;
	struct lconn *prev, *next;
	enum mm_listen_kind kind;
	const struct lookup_proto *proto_tbl;
	enum lconn_state state;
	struct bufferevent *bev;
	struct event *timer;	/* socketmap: idle; auth_http: deadline */
	char id[24];
	char peer[ADDR_STR_MAX];
	bool read_paused;	/* socketmap: too many replies queued */
	bool linger;		/* an error answer: linger before closing */
	size_t lingered;	/* bytes dropped while lingering */

	/* auth_http: the request and the answer being prepared. */
	struct http_auth_req req;
	struct evdns_getaddrinfo_request *dns_req;
	struct lookup_auth answer;
	enum mm_proto proto;
	unsigned attempt;		/* Auth-Login-Attempt */
	enum dir_result result;
	char user[DIR_USER_MAX + 1];		/* for the log */
	char origin[INET6_ADDRSTRLEN + 1];	/* Client-IP, for the log */
	char backend[64];			/* for the log */
};

struct lookup {
	struct event_base *base;
	const struct mm_config *conf;
	struct dir *dir;
	struct evdns_base *dns;		/* made on the first DNS name */
	struct lk_listener **listeners;
	size_t n_listeners;
	struct lconn *conns;
	size_t n_conns;
	struct lconn *dead;		/* closed, waiting for the reaper */
	struct event *reap_ev;
	uint64_t next_id;
	bool draining;
	const struct mm_metrics *metrics;	/* what metrics listeners serve */
};

static void conn_close(struct lconn *c);
static void sm_process(struct lconn *c);
static void http_process(struct lconn *c);
static void http_finish(struct lconn *c);
static void metrics_process(struct lconn *c);

/* What differs between the two kinds of lookup connection. */
struct lookup_proto {
	const char *name;
	uint64_t first_timer_ms;	/* armed at accept */
	void (*process)(struct lconn *c);	/* new input to look at */
};

/* Postfix keeps a socketmap connection for many lookups; nginx sends one
 * request and waits. */
static const struct lookup_proto proto_socketmap = {
	"socketmap", LOOKUP_SOCKETMAP_IDLE_MS, sm_process,
};
static const struct lookup_proto proto_auth_http = {
	"auth-http", LOOKUP_HTTP_READ_MS, http_process,
};
static const struct lookup_proto proto_metrics = {
	"metrics", LOOKUP_HTTP_READ_MS, metrics_process,
};

static const struct lookup_proto *
proto_of(enum mm_listen_kind kind)
{
	switch (kind) {
	case MM_LISTEN_SOCKETMAP:
		return &proto_socketmap;
	case MM_LISTEN_METRICS:
		return &proto_metrics;
	default:
		return &proto_auth_http;
	}
}

/* ---- the answers (pure) --------------------------------------------- */

int
lookup_split_addr(const char *addr, char *host, size_t hostlen,
    uint16_t *port_r)
{
	if (addr == NULL || hostlen == 0 ||
	    dir_parse_hostport(addr, host, hostlen, port_r) != 0 ||
	    *port_r == 0)
		return -1;
	return 0;
}

static bool
is_ipv6(const char *host)
{
	return strchr(host, ':') != NULL;
}

static size_t
put(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static size_t
put(char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (outlen == 0)
		return 0;
	va_start(ap, fmt);
	n = vsnprintf(out, outlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)n;
}

/* Postfix's next-hop syntax: smtp(8) wants "[host]:port" (the brackets
 * stop the MX lookup) and lmtp "inet:host:port"; both write an IPv6
 * address as "[ipv6:addr]". */
static size_t
smtp_nexthop(char *out, size_t outlen, const char *host, uint16_t port)
{
	return put(out, outlen, "OK smtp:[%s%s]:%u",
	    is_ipv6(host) ? "ipv6:" : "", host, (unsigned)port);
}

size_t
lookup_socketmap_reply(enum lookup_map map, enum dir_result r,
    const struct dir_route *route, const struct mm_config *conf, char *out,
    size_t outlen)
{
	char host[DIR_HOST_MAX];
	uint16_t port;

	if (map == LOOKUP_MAP_RECIPIENT) {
		switch (r) {
		case DIR_FOUND:
		case DIR_FROZEN:	/* known; the transport defers it */
			return put(out, outlen, "OK %s",
			    conf->site != NULL ? conf->site : "local");
		case DIR_REMOTE:
			return put(out, outlen, "OK %s",
			    route->site[0] != '\0' ? route->site : "remote");
		case DIR_NOTFOUND:
			return put(out, outlen, "NOTFOUND ");
		case DIR_TEMPFAIL:
			break;
		}
		return put(out, outlen, "TEMP directory unavailable");
	}

	switch (r) {
	case DIR_FOUND:
		if (route->backend == NULL || route->port == 0 ||
		    route->host[0] == '\0')
			break;
		if (!route->backend->lmtp)
			return smtp_nexthop(out, outlen, route->host,
			    route->port);
		if (is_ipv6(route->host))
			return put(out, outlen, "OK lmtp:inet:[ipv6:%s]:%u",
			    route->host, (unsigned)route->port);
		return put(out, outlen, "OK lmtp:inet:%s:%u", route->host,
		    (unsigned)route->port);
	case DIR_FROZEN:
		return put(out, outlen, "OK " FROZEN_TRANSPORT);
	case DIR_REMOTE:
		/* This node's own SMTP listener takes the mail and carries
		 * it to the owner site. */
		if (conf->lookup_relay[MM_PROTO_SMTP] == NULL)
			return put(out, outlen,
			    "TEMP no relay for users of other sites");
		if (lookup_split_addr(conf->lookup_relay[MM_PROTO_SMTP], host,
		    sizeof(host), &port) != 0)
			return put(out, outlen, "TEMP bad lookup-relay");
		return smtp_nexthop(out, outlen, host, port);
	case DIR_NOTFOUND:
		return put(out, outlen, "NOTFOUND ");
	case DIR_TEMPFAIL:
		break;
	}
	return put(out, outlen, "TEMP directory unavailable");
}

static void
auth_fail(struct lookup_auth *a, const char *status, const char *code,
    unsigned wait, const char *reason)
{
	a->ok = false;
	a->status = status;
	a->error_code = code;
	a->wait = wait;
	a->reason = reason;
}

static void
auth_temp(struct lookup_auth *a, enum mm_proto proto, const char *reason)
{
	auth_fail(a, STATUS_TEMP, proto == MM_PROTO_SMTP ? "451 4.3.0" : NULL,
	    WAIT_OTHER, reason);
}

static void
auth_to(struct lookup_auth *a, const char *host, uint16_t port)
{
	if (mm_strlcpy(a->server, host, sizeof(a->server)) >=
	    sizeof(a->server) || port == 0) {
		a->server[0] = '\0';
		auth_fail(a, STATUS_TEMP, NULL, WAIT_OTHER, "bad-route");
		return;
	}
	a->ok = true;
	a->port = port;
}

/* Users of other sites, and mail nginx cannot hand to the back end
 * itself, go to this node's own listener of the protocol. */
static void
auth_relay(struct lookup_auth *a, enum mm_proto proto,
    const struct mm_config *conf, const char *reason)
{
	char host[DIR_HOST_MAX];
	uint16_t port;

	if (conf->lookup_relay[proto] == NULL) {
		auth_temp(a, proto, "no-relay");
		return;
	}
	if (lookup_split_addr(conf->lookup_relay[proto], host, sizeof(host),
	    &port) != 0) {
		auth_temp(a, proto, "bad-relay");
		return;
	}
	auth_to(a, host, port);
	if (a->ok)
		a->reason = reason;
	else
		auth_temp(a, proto, "bad-relay");
}

static void
attempt_limit(struct lookup_auth *a, enum mm_proto proto,
    const struct mm_config *conf, unsigned attempt)
{
	unsigned max = proto == MM_PROTO_SMTP ? LOOKUP_SMTP_ATTEMPTS_MAX :
	    conf->limits.auth_fail_max;

	/* nginx keeps memory per attempt until the session ends: without
	 * Auth-Wait it answers and closes. */
	if (!a->ok && attempt >= max)
		a->wait = 0;
}

void
lookup_auth_answer(enum mm_proto proto, enum dir_result r,
    const struct dir_route *route, const struct mm_config *conf,
    unsigned attempt, struct lookup_auth *a_r)
{
	bool smtp = proto == MM_PROTO_SMTP;

	memset(a_r, 0, sizeof(*a_r));
	switch (r) {
	case DIR_FOUND:
		if (route->backend == NULL) {
			auth_temp(a_r, proto, "bad-route");
		} else if (smtp && route->backend->lmtp) {
			/* nginx speaks SMTP upstream, never LMTP. */
			auth_relay(a_r, proto, conf, "lmtp-via-relay");
		} else if (smtp && route->backend->tls != MM_TLS_NONE) {
			auth_relay(a_r, proto, conf, "tls-via-relay");
		} else if (route->backend->tls != MM_TLS_NONE) {
			/* nginx's mail proxy has no TLS towards back ends;
			 * the back end must be reached through mmnode. */
			auth_temp(a_r, proto, "backend-tls");
		} else {
			auth_to(a_r, route->host, route->port);
		}
		break;
	case DIR_REMOTE:
		auth_relay(a_r, proto, conf, NULL);
		break;
	case DIR_NOTFOUND:
		/* Whether a user exists is not for the client to learn. A
		 * wrong password is refused by the back end, and nginx relays
		 * its words and closes; so an unknown user goes to this
		 * node's own listener, which refuses the login in the same
		 * words, after a failure delay, as any back end does. */
		if (smtp)
			auth_fail(a_r, STATUS_UNKNOWN, "550 5.1.1", WAIT_OTHER,
			    NULL);
		else if (conf->lookup_relay[proto] != NULL)
			auth_relay(a_r, proto, conf, "unknown-via-relay");
		else
			auth_fail(a_r, STATUS_BAD_LOGIN, NULL, WAIT_BAD_LOGIN,
			    NULL);
		break;
	case DIR_FROZEN:
		if (smtp)
			auth_fail(a_r, STATUS_FROZEN, "450 4.2.1", WAIT_OTHER,
			    NULL);
		else
			auth_temp(a_r, proto, NULL);
		break;
	case DIR_TEMPFAIL:
		auth_temp(a_r, proto, NULL);
		break;
	}
	attempt_limit(a_r, proto, conf, attempt);
}

void
lookup_auth_tempfail(enum mm_proto proto, const struct mm_config *conf,
    unsigned attempt, const char *reason, struct lookup_auth *a_r)
{
	memset(a_r, 0, sizeof(*a_r));
	auth_temp(a_r, proto, reason);
	attempt_limit(a_r, proto, conf, attempt);
}

size_t
lookup_auth_format(const struct lookup_auth *a, char *out, size_t outlen)
{
	char code[32] = "", wait[32] = "";

	if (a->ok)
		return put(out, outlen, "HTTP/1.0 200 OK\r\n"
		    "Auth-Status: OK\r\n"
		    "Auth-Server: %s\r\n"
		    "Auth-Port: %u\r\n"
		    "\r\n", a->server, (unsigned)a->port);
	if (a->error_code != NULL)
		snprintf(code, sizeof(code), "Auth-Error-Code: %s\r\n",
		    a->error_code);
	if (a->wait > 0)
		snprintf(wait, sizeof(wait), "Auth-Wait: %u\r\n", a->wait);
	return put(out, outlen, "HTTP/1.0 200 OK\r\n"
	    "Auth-Status: %s\r\n"
	    "%s%s"
	    "\r\n", a->status != NULL ? a->status : STATUS_TEMP, code, wait);
}

/* ---- the directory -------------------------------------------------- */

/*
 * Postfix asks a socketmap only for the whole address (socketmap_table(5):
 * no keys without the address extension), and nginx passes RCPT TO as
 * given: "alice+lists@a.test" is tried as "alice@a.test" when the whole
 * address is unknown. '+' is Postfix's usual recipient_delimiter.
 */
static enum dir_result
lookup_recipient(struct lookup *lk, const char *addr, struct dir_route *route)
{
	char base[DIR_USER_MAX + 1];
	const char *plus, *at;
	enum dir_result r;
	size_t n;

	r = dir_lookup(lk->dir, addr, MM_PROTO_SMTP, route);
	if (r != DIR_NOTFOUND)
		return r;
	at = strrchr(addr, '@');
	plus = strchr(addr, '+');
	if (plus == NULL || plus == addr || (at != NULL && plus > at))
		return r;
	n = (size_t)(plus - addr);
	if (at == NULL) {
		if (n >= sizeof(base))
			return r;
		memcpy(base, addr, n);
		base[n] = '\0';
	} else if (put(base, sizeof(base), "%.*s%s", (int)n, addr, at) == 0) {
		return r;
	}
	return dir_lookup(lk->dir, base, MM_PROTO_SMTP, route);
}

/* ---- connections ---------------------------------------------------- */

static void
addr_str(const struct sockaddr *sa, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, outlen, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, outlen, "[%s]:%u", host, port);
	} else {
		mm_strlcpy(out, "local", outlen);
	}
}

/* The only place a connection's state changes. */
static void
enter_state(struct lconn *c, enum lconn_state st)
{
	c->state = st;
}

static void
timer_set(struct lconn *c, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
		(suseconds_t)((ms % 1000) * 1000) };

	evtimer_add(c->timer, &tv);
}

static void
conn_free(struct lconn *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	free(c);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lookup *lk = arg;
	struct lconn *c;

	while ((c = lk->dead) != NULL) {
		lk->dead = c->next;
		conn_free(c);
	}
}

/* Unlinks c and leaves the free to the reaper, outside any callback
 * chain of c's own. */
static void
conn_close(struct lconn *c)
{
	struct lookup *lk = c->lk;

	if (c->state == LC_DEAD)
		return;
	enter_state(c, LC_DEAD);
	if (c->dns_req != NULL) {
		/* Its callback still runs, with EVUTIL_EAI_CANCEL, and must
		 * not touch c then. */
		evdns_getaddrinfo_cancel(c->dns_req);
		c->dns_req = NULL;
	}
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	evtimer_del(c->timer);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		lk->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	lk->n_conns--;
	c->prev = NULL;
	c->next = lk->dead;
	lk->dead = c;
	event_active(lk->reap_ev, EV_TIMEOUT, 0);
}

/* The last answer is out: close, or after an error half-close and read
 * until the peer closes too. */
static void
conn_done(struct lconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (!c->linger) {
		conn_close(c);
		return;
	}
	enter_state(c, LC_LINGER);
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_enable(c->bev, EV_READ);
	timer_set(c, LINGER_MS);
}

/* Closes c once what it has written is out (bounded by the write
 * timeout). */
static void
conn_flush_close(struct lconn *c)
{
	if (c->state == LC_DEAD)
		return;
	enter_state(c, LC_FLUSH);
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_done(c);
}

/* The same after an error answer, with lingering. */
static void
conn_error_close(struct lconn *c)
{
	c->linger = true;
	conn_flush_close(c);
}

static void
linger_read(struct lconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t n = evbuffer_get_length(in);

	evbuffer_drain(in, n);
	c->lingered += n;
	if (c->lingered > LINGER_MAX)
		conn_close(c);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;

	if (c->state == LC_LINGER)
		linger_read(c);
	if (c->state != LC_READ)
		return;
	c->proto_tbl->process(c);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;

	if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	if (c->state == LC_FLUSH) {
		conn_done(c);
		return;
	}
	if (c->state == LC_READ && c->read_paused) {
		c->read_paused = false;
		bufferevent_enable(bev, EV_READ);
		sm_process(c);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lconn *c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_info("%s lookup %s write-timeout client=%s", c->id,
		    c->proto_tbl->name, c->peer);
	else if ((what & BEV_EVENT_ERROR) && c->state != LC_FLUSH)
		log_debug("%s lookup %s error client=%s", c->id,
		    c->proto_tbl->name, c->peer);
	conn_close(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lconn *c = arg;

	if (c->state == LC_RESOLVE) {
		if (c->dns_req != NULL) {
			evdns_getaddrinfo_cancel(c->dns_req);
			c->dns_req = NULL;
		}
		lookup_auth_tempfail(c->proto, c->lk->conf, c->attempt,
		    "dns-timeout",
		    &c->answer);
		http_finish(c);
		return;
	}
	if (c->state == LC_READ && c->kind == MM_LISTEN_SOCKETMAP)
		log_debug("%s lookup socketmap idle-close client=%s", c->id,
		    c->peer);
	else if (c->state == LC_READ)
		log_info("%s lookup auth-http result=bad reason=timeout "
		    "client=%s", c->id, c->peer);
	conn_close(c);
}

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct lk_listener *l = arg;
	struct lookup *lk = l->lk;
	struct lconn *c;
	int one = 1;

	if (lk->n_conns >= LOOKUP_CONN_MAX) {
		char peer[ADDR_STR_MAX];

		addr_str(sa, peer, sizeof(peer));
		log_warnx("- lookup %s refuse client=%s reason=connection-limit",
		    proto_of(l->lc->kind)->name, peer);
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->lk = lk;
	c->kind = l->lc->kind;
	c->proto_tbl = proto_of(c->kind);
	enter_state(c, LC_READ);
	snprintf(c->id, sizeof(c->id), "%012llx",
	    (unsigned long long)++lk->next_id);
	addr_str(sa, c->peer, sizeof(c->peer));
	http_auth_init(&c->req);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	c->bev = bufferevent_socket_new(lk->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		log_warnx("%s lookup bufferevent-failed", c->id);
		close(fd);
		free(c);
		return;
	}
	c->timer = evtimer_new(lk->base, timer_cb, c);
	if (c->timer == NULL)
		fatalx("evtimer_new failed");
	c->next = lk->conns;
	if (lk->conns != NULL)
		lk->conns->prev = c;
	lk->conns = c;
	lk->n_conns++;

	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_set_timeouts(c->bev, NULL,
	    &(struct timeval){ LOOKUP_WRITE_MS / 1000,
	    (LOOKUP_WRITE_MS % 1000) * 1000 });
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	timer_set(c, c->proto_tbl->first_timer_ms);
	log_debug("%s lookup %s connect client=%s", c->id, c->proto_tbl->name,
	    c->peer);
}

/* ---- socketmap ------------------------------------------------------ */

static void
sm_reply(struct lconn *c, const char *text)
{
	char frame[LOOKUP_REPLY_MAX + 16];
	size_t n = netstring_format(frame, sizeof(frame), text, strlen(text));

	if (n == 0) {
		static const char temp[] = "TEMP reply too long";

		n = netstring_format(frame, sizeof(frame), temp,
		    sizeof(temp) - 1);
	}
	bufferevent_write(c->bev, frame, n);
}

static void
sm_log(struct lconn *c, const char *map, const char *user,
    const char *result, const char *reply, const char *reason)
{
	char uesc[4 * 64 + 1], mesc[4 * 64 + 1], vesc[256];
	char value[LOOKUP_REPLY_MAX];
	const char *sp;

	/* The next hop, or the transport alone for "retry:...": enough to
	 * see where mail went without the reply's free text. */
	value[0] = '\0';
	if (strncmp(reply, "OK ", 3) == 0) {
		mm_strlcpy(value, reply + 3, sizeof(value));
		if (strncmp(value, "retry:", 6) == 0)
			value[5] = '\0';
	} else if ((sp = strchr(reply, ' ')) != NULL) {
		snprintf(value, sizeof(value), "%.*s", (int)(sp - reply),
		    reply);
	}
	log_info("%s lookup socketmap map=%s user=%s result=%s%s%s answer=%s "
	    "client=%s", c->id, mm_log_escape(map, mesc, sizeof(mesc)),
	    mm_log_escape(user, uesc, sizeof(uesc)), result,
	    reason != NULL ? " reason=" : "", reason != NULL ? reason : "",
	    mm_log_escape(value[0] ? value : "-", vesc, sizeof(vesc)),
	    c->peer);
}

/* One request "NAME KEY", answered in order on the connection. */
static void
sm_request(struct lconn *c, const char *data, size_t len)
{
	struct lookup *lk = c->lk;
	char key[LOOKUP_SOCKETMAP_REQ_MAX + 1], name[MAP_NAME_LOG_MAX + 1];
	char reply[LOOKUP_REPLY_MAX];
	const char *sp = memchr(data, ' ', len);
	struct dir_route route;
	const char *reason = NULL;
	enum lookup_map map;
	enum dir_result r;
	size_t nlen, klen, i;

	if (sp == NULL) {
		sm_reply(c, "PERM expected NAME KEY");
		sm_log(c, "-", "-", "bad", "PERM -", "no-key");
		return;
	}
	nlen = (size_t)(sp - data);
	klen = len - nlen - 1;
	/* Only printable bytes of the name go back into Postfix's log. */
	for (i = 0; i < nlen && i < MAP_NAME_LOG_MAX; i++)
		name[i] = data[i] > 0x20 && data[i] < 0x7f ? data[i] : '?';
	name[i] = '\0';
	if (nlen == 9 && memcmp(data, "transport", 9) == 0) {
		map = LOOKUP_MAP_TRANSPORT;
	} else if (nlen == 9 && memcmp(data, "recipient", 9) == 0) {
		map = LOOKUP_MAP_RECIPIENT;
	} else {
		put(reply, sizeof(reply), "PERM unknown map %s", name);
		sm_reply(c, reply);
		sm_log(c, name, "-", "bad", "PERM -", "unknown-map");
		return;
	}
	memcpy(key, sp + 1, klen);
	key[klen] = '\0';

	/* Only whole addresses name a user: a NUL would cut the key, and
	 * domains (transport_maps asks "example.org" and ".example.org"
	 * with other table types) and "@domain" are not users. */
	if (klen == 0 || memchr(key, '\0', klen) != NULL || key[0] == '@' ||
	    (map == LOOKUP_MAP_TRANSPORT && strchr(key, '@') == NULL)) {
		sm_reply(c, "NOTFOUND ");
		sm_log(c, name, key, "notfound", "NOTFOUND ", NULL);
		return;
	}
	r = lookup_recipient(lk, key, &route);
	if (lookup_socketmap_reply(map, r, &route, lk->conf, reply,
	    sizeof(reply)) == 0) {
		mm_strlcpy(reply, "TEMP reply too long", sizeof(reply));
		reason = "reply-too-long";
	} else if (r == DIR_REMOTE && strncmp(reply, "TEMP ", 5) == 0) {
		reason = lk->conf->lookup_relay[MM_PROTO_SMTP] == NULL ?
		    "no-relay" : "bad-relay";
	}
	sm_reply(c, reply);
	sm_log(c, name, key, dir_result_name(r), reply, reason);
	if (reason != NULL && strcmp(reason, "no-relay") == 0)
		log_warnx("%s lookup socketmap no-relay site=%s "
		    "hint=\"set lookup-relay smtp or listen smtp\"", c->id,
		    route.site);
}

static void
sm_process(struct lconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	/* The most a whole request can take: digits, ':', data, ','. */
	const size_t frame_max = NETSTRING_DIGITS_MAX + 2 +
	    LOOKUP_SOCKETMAP_REQ_MAX;

	while (c->state == LC_READ) {
		size_t len = evbuffer_get_length(in), n, dlen, consumed;
		const char *buf, *data;
		int rc;

		if (len == 0)
			break;
		/* A client that sends without reading gets no more answers
		 * queued than this; the write callback resumes. */
		if (evbuffer_get_length(out) >= LOOKUP_OUT_MAX) {
			c->read_paused = true;
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		n = len < frame_max ? len : frame_max;
		buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
		rc = netstring_parse(buf, n, LOOKUP_SOCKETMAP_REQ_MAX, &data,
		    &dlen, &consumed);
		if (rc == 0)
			break;
		if (rc < 0) {
			sm_reply(c, "PERM invalid netstring");
			sm_log(c, "-", "-", "bad", "PERM -",
			    "invalid-netstring");
			conn_error_close(c);
			return;
		}
		sm_request(c, data, dlen);
		evbuffer_drain(in, consumed);
		timer_set(c, LOOKUP_SOCKETMAP_IDLE_MS);
	}
	if (c->state == LC_READ && c->lk->draining &&
	    evbuffer_get_length(in) == 0)
		conn_flush_close(c);
}

/* ---- auth_http ------------------------------------------------------ */

static void
http_log(struct lconn *c, const char *result)
{
	struct lookup_auth *a = &c->answer;
	char uesc[4 * 64 + 1], oesc[4 * 48 + 1], extra[DIR_HOST_MAX + 128];
	size_t n = 0;

	extra[0] = '\0';
	if (a->reason != NULL)
		n += put(extra + n, sizeof(extra) - n, " reason=%s", a->reason);
	if (c->backend[0] != '\0')
		n += put(extra + n, sizeof(extra) - n, " backend=%s",
		    c->backend);
	if (a->ok)
		put(extra + n, sizeof(extra) - n, is_ipv6(a->server) ?
		    " server=[%s]:%u" : " server=%s:%u", a->server,
		    (unsigned)a->port);
	log_info("%s lookup auth-http proto=%s user=%s result=%s%s answer=%s "
	    "client=%s origin=%s", c->id, mm_proto_name(c->proto),
	    mm_log_escape(c->user[0] ? c->user : "-", uesc, sizeof(uesc)),
	    result, extra, a->ok ? "ok" : a->wait ? "fail" : "fail-close",
	    c->peer, mm_log_escape(c->origin[0] ? c->origin : "-", oesc,
	    sizeof(oesc)));
}

static void
http_finish(struct lconn *c)
{
	char out[LOOKUP_REPLY_MAX];
	size_t n = lookup_auth_format(&c->answer, out, sizeof(out));

	if (n == 0) {
		lookup_auth_tempfail(c->proto, c->lk->conf, c->attempt,
		    "answer-too-long", &c->answer);
		n = lookup_auth_format(&c->answer, out, sizeof(out));
	}
	http_log(c, dir_result_name(c->result));
	bufferevent_write(c->bev, out, n);
	evtimer_del(c->timer);
	conn_flush_close(c);
}

static void
http_bad(struct lconn *c, const char *why)
{
	static const char resp[] = "HTTP/1.0 400 Bad Request\r\n"
	    "Connection: close\r\n\r\n";
	/* why is one of the parser's or this file's fixed texts. */
	log_info("%s lookup %s result=bad reason=\"%s\" client=%s",
	    c->id, c->proto_tbl->name, why, c->peer);
	bufferevent_write(c->bev, resp, sizeof(resp) - 1);
	evtimer_del(c->timer);
	conn_error_close(c);
}

static void
dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lconn *c = arg;
	struct evutil_addrinfo *ai;
	char host[INET6_ADDRSTRLEN];
	bool got = false;

	if (result == EVUTIL_EAI_CANCEL) {
		/* c may be gone: conn_close cancelled this. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		return;
	}
	c->dns_req = NULL;
	for (ai = result == 0 ? res : NULL; ai != NULL && !got;
	    ai = ai->ai_next) {
		if (ai->ai_family == AF_INET)
			got = inet_ntop(AF_INET, &((struct sockaddr_in *)
			    ai->ai_addr)->sin_addr, host, sizeof(host)) != NULL;
		else if (ai->ai_family == AF_INET6)
			got = inet_ntop(AF_INET6, &((struct sockaddr_in6 *)
			    ai->ai_addr)->sin6_addr, host,
			    sizeof(host)) != NULL;
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	if (got) {
		mm_strlcpy(c->answer.server, host, sizeof(c->answer.server));
	} else {
		char hesc[4 * 64 + 1];

		log_warnx("%s lookup auth-http dns-failed host=%s error=\"%s\"",
		    c->id, mm_log_escape(c->answer.server, hesc, sizeof(hesc)),
		    result != 0 ? evutil_gai_strerror(result) : "no address");
		lookup_auth_tempfail(c->proto, c->lk->conf, c->attempt,
		    "dns-failed",
		    &c->answer);
	}
	if (c->state == LC_RESOLVE)
		http_finish(c);
}

/*
 * nginx connects to the numeric address it is given (ngx_parse_addr): a
 * back end named by a DNS name is resolved here, without blocking the
 * worker. The answer may come at once (hosts file) or from the loop.
 */
static void
http_resolve(struct lconn *c)
{
	struct lookup *lk = c->lk;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;

	if (lk->dns == NULL) {
		lk->dns = evdns_base_new(lk->base,
		    EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (lk->dns == NULL)
			lk->dns = evdns_base_new(lk->base, 0);
		if (lk->dns == NULL) {
			lookup_auth_tempfail(c->proto, lk->conf, c->attempt,
			    "no-resolver", &c->answer);
			http_finish(c);
			return;
		}
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	enter_state(c, LC_RESOLVE);
	req = evdns_getaddrinfo(lk->dns, c->answer.server, NULL, &hints,
	    dns_cb, c);
	if (req != NULL)
		c->dns_req = req;
}

static bool
slice_is(const char *buf, const struct http_auth_slice *s, const char *word)
{
	return s->present && s->len == strlen(word) &&
	    strncasecmp(buf + s->off, word, s->len) == 0;
}

/* Auth-Login-Attempt: 1 when absent; 0 when malformed. */
static unsigned
parse_attempt(const char *buf, const struct http_auth_slice *s)
{
	unsigned v = 0;
	size_t i;

	if (!s->present)
		return 1;
	if (s->len == 0 || s->len > 6)
		return 0;
	for (i = 0; i < s->len; i++) {
		char ch = buf[s->off + i];

		if (ch < '0' || ch > '9')
			return 0;
		v = v * 10 + (unsigned)(ch - '0');
	}
	return v;
}

static void
http_request(struct lconn *c, const char *buf)
{
	struct lookup *lk = c->lk;
	const struct http_auth_slice *f = c->req.field;
	const struct http_auth_slice *method = &f[HTTP_AUTH_METHOD];
	char value[HTTP_AUTH_LINE_MAX + 1];
	struct dir_route route;
	unsigned attempt;
	size_t n, off;

	if (slice_is(buf, &f[HTTP_AUTH_PROTOCOL], "imap"))
		c->proto = MM_PROTO_IMAP;
	else if (slice_is(buf, &f[HTTP_AUTH_PROTOCOL], "pop3"))
		c->proto = MM_PROTO_POP3;
	else if (slice_is(buf, &f[HTTP_AUTH_PROTOCOL], "smtp"))
		c->proto = MM_PROTO_SMTP;
	else {
		http_bad(c, "unknown Auth-Protocol");
		return;
	}
	if (!method->present) {
		http_bad(c, "no Auth-Method");
		return;
	}
	if ((attempt = parse_attempt(buf, &f[HTTP_AUTH_LOGIN_ATTEMPT])) == 0) {
		http_bad(c, "bad Auth-Login-Attempt");
		return;
	}
	c->attempt = attempt;
	if (f[HTTP_AUTH_CLIENT_IP].present)
		snprintf(c->origin, sizeof(c->origin), "%.*s",
		    (int)f[HTTP_AUTH_CLIENT_IP].len,
		    buf + f[HTTP_AUTH_CLIENT_IP].off);

	if (c->proto == MM_PROTO_SMTP) {
		const struct http_auth_slice *to = &f[HTTP_AUTH_SMTP_TO];

		/* smtp_auth none: nginx asks per RCPT TO, which is all this
		 * can answer. A login would need the password checked, and
		 * mmnode leaves that to the back ends nginx never asks. */
		if (!slice_is(buf, method, "none")) {
			c->result = DIR_TEMPFAIL;
			lookup_auth_tempfail(c->proto, lk->conf, attempt,
			    "smtp-auth", &c->answer);
			http_finish(c);
			return;
		}
		if (!to->present) {
			http_bad(c, "no Auth-SMTP-To");
			return;
		}
		if (http_auth_smtp_rcpt(buf + to->off, to->len, &off,
		    &n) != 0 || n > DIR_USER_MAX) {
			c->result = DIR_NOTFOUND;
			lookup_auth_answer(c->proto, DIR_NOTFOUND, NULL,
			    lk->conf, attempt, &c->answer);
			http_finish(c);
			return;
		}
		memcpy(value, buf + to->off + off, n);
		value[n] = '\0';
	} else {
		const struct http_auth_slice *u = &f[HTTP_AUTH_USER];

		if (!u->present) {
			http_bad(c, "no Auth-User");
			return;
		}
		if (http_auth_decode(buf + u->off, u->len, value,
		    sizeof(value), &n) != 0) {
			http_bad(c, "bad escape in Auth-User");
			return;
		}
		mm_strlcpy(c->user, value, sizeof(c->user));
		/* apop and cram-md5 want the plain password back, which
		 * mmnode never has. */
		if (!slice_is(buf, method, "plain")) {
			c->result = DIR_TEMPFAIL;
			lookup_auth_tempfail(c->proto, lk->conf, attempt,
			    "auth-method", &c->answer);
			http_finish(c);
			return;
		}
	}
	mm_strlcpy(c->user, value, sizeof(c->user));

	if (c->proto == MM_PROTO_SMTP)
		c->result = lookup_recipient(lk, value, &route);
	else
		c->result = dir_lookup(lk->dir, value, c->proto, &route);
	lookup_auth_answer(c->proto, c->result, &route, lk->conf, attempt,
	    &c->answer);
	if (c->result == DIR_FOUND && route.backend != NULL)
		mm_strlcpy(c->backend, route.backend->name,
		    sizeof(c->backend));

	if (c->answer.ok) {
		struct in6_addr a6;
		struct in_addr a4;

		if (inet_pton(AF_INET, c->answer.server, &a4) != 1 &&
		    inet_pton(AF_INET6, c->answer.server, &a6) != 1) {
			http_resolve(c);
			return;
		}
	}
	http_finish(c);
}

/* Reads one request head (one per connection, as nginx and Prometheus
 * send it: nothing after the head is read) and hands it to request, or
 * answers 400. */
static void
http_read(struct lconn *c, void (*request)(struct lconn *, const char *))
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t len = evbuffer_get_length(in), n, consumed;
	unsigned char *buf;
	const char *why;
	int rc;

	n = len < HTTP_AUTH_HEAD_MAX ? len : HTTP_AUTH_HEAD_MAX;
	if (n == 0)
		return;
	buf = evbuffer_pullup(in, (ev_ssize_t)n);
	rc = http_auth_parse(&c->req, (const char *)buf, n, &consumed, &why);
	if (rc == 0)
		return;
	bufferevent_disable(c->bev, EV_READ);
	if (rc < 0)
		http_bad(c, why);
	else
		request(c, (const char *)buf);
	/* nginx's head holds the client's password. */
	mm_wipe(buf, n);
	evbuffer_drain(in, len);
}

static void
http_process(struct lconn *c)
{
	http_read(c, http_request);
}

/* ---- metrics -------------------------------------------------------- */

static void
metrics_reply(struct lconn *c, const char *status, const char *type,
    const char *body, size_t len, const char *result)
{
	char head[256];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, type,
	    len);
	log_info("%s lookup metrics result=%s bytes=%zu client=%s", c->id,
	    result, len, c->peer);
	bufferevent_write(c->bev, head, (size_t)n);
	bufferevent_write(c->bev, body, len);
	evtimer_del(c->timer);
	conn_flush_close(c);
}

/* GET /metrics: the node's counters as a Prometheus scrape reads them. */
static void
metrics_request(struct lconn *c, const char *buf)
{
	static const char nf[] = "Only /metrics is served here.\n";
	const struct http_auth_slice *path = &c->req.path;
	size_t cap, n = 0;
	char *out = NULL;

	if (!(path->len == 8 || (path->len > 8 && buf[path->off + 8] == '?')) ||
	    strncmp(buf + path->off, "/metrics", 8) != 0) {
		metrics_reply(c, "404 Not Found", "text/plain", nf,
		    sizeof(nf) - 1, "not-found");
		return;
	}
	for (cap = 64 * 1024; cap <= LOOKUP_METRICS_MAX; cap *= 2) {
		out = xmalloc(cap);
		n = c->lk->metrics != NULL ?
		    mm_metrics_render(c->lk->metrics, out, cap) : 0;
		if (n > 0 || c->lk->metrics == NULL)
			break;
		free(out);
		out = NULL;
	}
	if (out == NULL || n == 0) {
		static const char err[] = "No counters to show.\n";

		free(out);
		metrics_reply(c, "503 Service Unavailable", "text/plain", err,
		    sizeof(err) - 1, "unavailable");
		return;
	}
	metrics_reply(c, "200 OK", "text/plain; version=0.0.4", out, n, "ok");
	free(out);
}

static void
metrics_process(struct lconn *c)
{
	http_read(c, metrics_request);
}

/* ---- the module ----------------------------------------------------- */

void
lookup_set_metrics(struct lookup *lk, const struct mm_metrics *m)
{
	lk->metrics = m;
}

struct lookup *
lookup_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir)
{
	struct lookup *lk = xcalloc(1, sizeof(*lk));

	lk->base = base;
	lk->conf = conf;
	lk->dir = dir;
	/* The upper half of the proxy's id space of this process, so a
	 * lookup id never names a mail session of the same worker. */
	lk->next_id = ((uint64_t)getpid() << 24) | (1u << 23);
	lk->reap_ev = event_new(base, -1, 0, reap_cb, lk);
	if (lk->reap_ev == NULL)
		fatalx("event_new failed");
	return lk;
}

void
lookup_free(struct lookup *lk)
{
	size_t i;

	if (lk == NULL)
		return;
	while (lk->conns != NULL)
		conn_close(lk->conns);
	reap_cb(-1, 0, lk);
	event_free(lk->reap_ev);
	for (i = 0; i < lk->n_listeners; i++) {
		if (lk->listeners[i]->evl != NULL)
			evconnlistener_free(lk->listeners[i]->evl);
		free(lk->listeners[i]);
	}
	free(lk->listeners);
	if (lk->dns != NULL)
		evdns_base_free(lk->dns, 0);
	free(lk);
}

int
lookup_listen(struct lookup *lk, const struct mm_listener_conf *lc, int fd)
{
	struct lk_listener *l;

	if (lc->kind != MM_LISTEN_SOCKETMAP &&
	    lc->kind != MM_LISTEN_AUTH_HTTP && lc->kind != MM_LISTEN_METRICS)
		return -1;
	l = xcalloc(1, sizeof(*l));
	l->lk = lk;
	l->lc = lc;
	l->evl = evconnlistener_new(lk->base, accept_cb, l,
	    LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (l->evl == NULL) {
		free(l);
		return -1;
	}
	if (lk->draining)
		evconnlistener_disable(l->evl);
	lk->listeners = xrealloc(lk->listeners,
	    (lk->n_listeners + 1) * sizeof(*lk->listeners));
	lk->listeners[lk->n_listeners++] = l;
	return 0;
}

void
lookup_drain(struct lookup *lk)
{
	struct lconn *c, *next;
	size_t i;

	lk->draining = true;
	for (i = 0; i < lk->n_listeners; i++) {
		if (lk->listeners[i]->evl != NULL) {
			evconnlistener_free(lk->listeners[i]->evl);
			lk->listeners[i]->evl = NULL;
		}
	}
	/* A socketmap connection between requests closes now (Postfix
	 * retries a closed one once); one mid-request, and every auth_http
	 * request, gets its answer first. */
	for (c = lk->conns; c != NULL; c = next) {
		next = c->next;
		if (c->kind == MM_LISTEN_SOCKETMAP && c->state == LC_READ &&
		    !c->read_paused &&
		    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
			conn_flush_close(c);
	}
}

size_t
lookup_conn_count(const struct lookup *lk)
{
	return lk->n_conns;
}
