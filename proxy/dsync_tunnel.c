/* A move's dsync streams between sites (dsync_tunnel.h says the design). */
#include "dsync_tunnel.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/listener.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_metrics.h"
#include "mm_util.h"

#define DTUN_FLUSH_MS 5000	/* a closing stream's last bytes */
#define DTUN_FIELDS_MAX 32	/* fields of a command line looked at */

enum dc_state {
	DC_VERSION,	/* source: the client's VERSION line */
	DC_AUTH,	/* source: its PLAIN line */
	DC_COMMAND,	/* source: its command line */
	DC_LINKING,	/* source: the link to the target site opens */
	DC_LINK_LINES,	/* target: the version and command lines */
	DC_BE_CONNECT,	/* target: connecting to the back end's doveadm */
	DC_BE_HELLO,	/* target: its version line, then "-" or "+" */
	DC_BE_AUTH,	/* target: its answer to our password */
	DC_RELAY,	/* bytes flow both ways */
	DC_CLOSING,	/* the last bytes leave, then the stream is freed */
};

struct dtun_route_entry {
	char user[DIR_USER_MAX + 1];
	char site[RECORD_SITE_MAX + 1];
	char backend[XSITE_BACKEND_MAX + 1];
	uint64_t expires_ms;
};

struct dtun_conn {
	struct dtun_conn *prev, *next;
	struct dtun *dt;
	enum dc_state state;
	bool source;
	/* Source: near is the back end's doveadm client, far the link.
	 * Target: near is the link, far the back end's doveadm server. */
	struct bufferevent *near, *far;
	struct xlink *xl;
	const struct mm_backend_conf *be;	/* target: the back end */
	char sid[24];
	char user[DIR_USER_MAX + 1];
	char peer[XSITE_ADDR_MAX + 8];
	char version[DTUN_LINE_MAX + 1];
	char command[DTUN_LINE_MAX + 1];
	struct event *timer;
	uint64_t last_ms;
	uint64_t bytes_out, bytes_in;	/* source to target, and back */
	const char *result;
};

struct dtun {
	struct event_base *base;
	const struct mm_config *conf;
	struct dir *dir;
	struct xsite *xs;
	struct evconnlistener *evl;
	struct mm_metrics_slot *metrics;
	struct dtun_route_entry *routes;
	size_t n_routes;
	struct dtun_conn *conns;
	size_t n_conns;
	uint64_t next_id;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

struct dtun *
dtun_new(struct event_base *base, const struct mm_config *conf,
    struct dir *dir, struct xsite *xs)
{
	struct dtun *dt = xcalloc(1, sizeof(*dt));

	dt->base = base;
	dt->conf = conf;
	dt->dir = dir;
	dt->xs = xs;
	return dt;
}

static void
conn_free(struct dtun_conn *c)
{
	struct dtun *dt = c->dt;

	log_info("%s dtun close user=%s result=%s bytes_out=%llu "
	    "bytes_in=%llu", c->sid, c->user[0] != '\0' ? c->user : "-",
	    c->result != NULL ? c->result : "closed",
	    (unsigned long long)c->bytes_out,
	    (unsigned long long)c->bytes_in);
	mm_metrics_move_bytes(dt->metrics, c->bytes_out + c->bytes_in);
	if (c->near != NULL)
		bufferevent_free(c->near);
	if (c->far != NULL)
		bufferevent_free(c->far);
	/* After its end: what the link took is still sent. */
	xlink_close(c->xl);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		dt->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	dt->n_conns--;
	mm_wipe(c->command, sizeof(c->command));
	free(c);
}

void
dtun_free(struct dtun *dt)
{
	if (dt == NULL)
		return;
	while (dt->conns != NULL) {
		dt->conns->result = "shutdown";
		conn_free(dt->conns);
	}
	if (dt->evl != NULL)
		evconnlistener_free(dt->evl);
	free(dt->routes);
	free(dt);
}

void
dtun_set_metrics(struct dtun *dt, struct mm_metrics_slot *slot)
{
	dt->metrics = slot;
}

size_t
dtun_count(const struct dtun *dt)
{
	return dt != NULL ? dt->n_conns : 0;
}

/* ---- routes --------------------------------------------------------- */

static struct dtun_route_entry *
route_find(struct dtun *dt, const char *user, uint64_t now_ms)
{
	size_t i;

	for (i = 0; i < dt->n_routes; i++)
		if (strcmp(dt->routes[i].user, user) == 0)
			return dt->routes[i].expires_ms > now_ms ?
			    &dt->routes[i] : NULL;
	return NULL;
}

int
dtun_route(struct dtun *dt, const char *user, const char *site,
    const char *backend, uint64_t now_ms)
{
	struct dtun_route_entry *e = NULL;
	size_t i;

	if (strlen(user) > DIR_USER_MAX || strlen(site) > RECORD_SITE_MAX ||
	    strlen(backend) > XSITE_BACKEND_MAX)
		return -1;
	/* Expired and forgotten entries make room. */
	for (i = 0; i < dt->n_routes; ) {
		if (dt->routes[i].expires_ms <= now_ms ||
		    strcmp(dt->routes[i].user, user) == 0)
			dt->routes[i] = dt->routes[--dt->n_routes];
		else
			i++;
	}
	if (site[0] == '\0')
		return 0;
	if (dt->n_routes >= DTUN_ROUTES_MAX)
		return -1;
	if (dt->routes == NULL)
		dt->routes = xcalloc(DTUN_ROUTES_MAX, sizeof(*dt->routes));
	e = &dt->routes[dt->n_routes++];
	mm_strlcpy(e->user, user, sizeof(e->user));
	mm_strlcpy(e->site, site, sizeof(e->site));
	mm_strlcpy(e->backend, backend, sizeof(e->backend));
	e->expires_ms = now_ms + DTUN_ROUTE_TTL_MS;
	return 0;
}

/* ---- lines ---------------------------------------------------------- */

/* The next line of bev's input (LF and a CR before it removed) into out.
 * 1 a line, 0 none yet, -1 one over DTUN_LINE_MAX. */
static int
read_line(struct bufferevent *bev, char out[DTUN_LINE_MAX + 1])
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
	size_t n;

	if (p.pos < 0)
		return evbuffer_get_length(in) > DTUN_LINE_MAX ? -1 : 0;
	n = (size_t)p.pos;
	if (n > DTUN_LINE_MAX)
		return -1;
	evbuffer_remove(in, out, n);
	evbuffer_drain(in, 1);
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 1;
}

/* Whether line is a doveadm command line running dsync-server for
 * user: "\tUSER\tdsync-server\t..." where any -u argument names the same
 * user. Users are printable, so their escaped form is themselves; an
 * escape anywhere in the line is refused. */
static bool
command_ok(const char *line, const char *user)
{
	char buf[DTUN_LINE_MAX + 1], *f[DTUN_FIELDS_MAX], *p;
	size_t n = 0, i;

	if (strchr(line, '\001') != NULL)
		return false;
	mm_strlcpy(buf, line, sizeof(buf));
	for (p = buf; n < DTUN_FIELDS_MAX; ) {
		f[n++] = p;
		if ((p = strchr(p, '\t')) == NULL)
			break;
		*p++ = '\0';
	}
	if (p != NULL || n < 3 || f[0][0] != '\0' ||
	    strcmp(f[1], user) != 0 || strcmp(f[2], "dsync-server") != 0)
		return false;
	for (i = 3; i < n; i++)
		if (strncmp(f[i], "-u", 2) == 0 && strcmp(f[i] + 2, user) != 0)
			return false;
	return true;
}

/* The user a command line names (its second field), for the route. */
static bool
command_user(const char *line, char user[DIR_USER_MAX + 1])
{
	const char *p, *e;

	if (line[0] != '\t')
		return false;
	p = line + 1;
	if ((e = strchr(p, '\t')) == NULL || (size_t)(e - p) > DIR_USER_MAX ||
	    e == p)
		return false;
	memcpy(user, p, (size_t)(e - p));
	user[e - p] = '\0';
	return true;
}

/* Whether the PLAIN line carries the doveadm password of a back end of
 * this site that moves by dsync. */
static bool
auth_ok(const struct mm_config *conf, const char *line)
{
	unsigned char bin[DTUN_LINE_MAX];
	const char *pass, *authc;
	size_t n, i, plen;
	bool ok = false;

	if (strncmp(line, "PLAIN\t", 6) != 0 ||
	    sodium_base642bin(bin, sizeof(bin) - 1, line + 6, strlen(line + 6),
	    NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL) != 0)
		return false;
	bin[n] = '\0';
	/* authzid NUL authcid NUL password */
	authc = memchr(bin, '\0', n);
	if (authc == NULL || (size_t)(++authc - (const char *)bin) >= n)
		goto done;
	pass = memchr(authc, '\0', n - (size_t)(authc - (const char *)bin));
	if (pass == NULL || strcmp(authc, "doveadm") != 0)
		goto done;
	pass++;
	plen = n - (size_t)(pass - (const char *)bin);
	for (i = 0; i < conf->n_backends; i++) {
		const char *pw = conf->backends[i].doveadm_password;

		if (conf->backends[i].move_engine != NULL && pw != NULL &&
		    strlen(pw) == plen && sodium_memcmp(pw, pass, plen) == 0)
			ok = true;
	}
done:
	sodium_memzero(bin, sizeof(bin));
	return ok;
}

/* ---- the stream ----------------------------------------------------- */

static void
conn_close(struct dtun_conn *c, const char *result)
{
	struct timeval tv = { DTUN_FLUSH_MS / 1000, 0 };

	if (c->state == DC_CLOSING)
		return;
	if (c->result == NULL)
		c->result = result;
	c->state = DC_CLOSING;
	if (c->near != NULL)
		bufferevent_disable(c->near, EV_READ);
	if (c->far != NULL)
		bufferevent_disable(c->far, EV_READ);
	if ((c->near == NULL || evbuffer_get_length(
	    bufferevent_get_output(c->near)) == 0) &&
	    (c->far == NULL || evbuffer_get_length(
	    bufferevent_get_output(c->far)) == 0))
		tv.tv_sec = 0;
	event_add(c->timer, &tv);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dtun_conn *c = arg;
	uint64_t now = mm_now_ms();
	struct timeval tv;

	if (c->state == DC_CLOSING) {
		conn_free(c);
		return;
	}
	if (c->state != DC_RELAY) {
		conn_close(c, "handshake-timeout");
		return;
	}
	if (now - c->last_ms >= DTUN_IDLE_MS) {
		conn_close(c, "idle-timeout");
		return;
	}
	tv.tv_sec = (time_t)((DTUN_IDLE_MS - (now - c->last_ms)) / 1000 + 1);
	tv.tv_usec = 0;
	event_add(c->timer, &tv);
}

static struct dtun_conn *
conn_new(struct dtun *dt, bool source)
{
	struct dtun_conn *c = xcalloc(1, sizeof(*c));
	struct timeval tv = { DTUN_HANDSHAKE_MS / 1000, 0 };

	c->dt = dt;
	c->source = source;
	snprintf(c->sid, sizeof(c->sid), "d%u.%llx", (unsigned)getpid(),
	    (unsigned long long)++dt->next_id);
	c->timer = evtimer_new(dt->base, timer_cb, c);
	event_add(c->timer, &tv);
	c->last_ms = mm_now_ms();
	c->next = dt->conns;
	if (dt->conns != NULL)
		dt->conns->prev = c;
	dt->conns = c;
	dt->n_conns++;
	return c;
}

static void
bev_setup(struct dtun_conn *c, struct bufferevent *bev)
{
	bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, DTUN_BUFFER / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* What one side read goes to the other; reading stops while the other
 * holds DTUN_BUFFER bytes (conn_write_cb resumes it). */
static void
relay_move(struct dtun_conn *c, struct bufferevent *from)
{
	struct bufferevent *to = from == c->near ? c->far : c->near;
	struct evbuffer *in = bufferevent_get_input(from);
	struct evbuffer *out = bufferevent_get_output(to);
	size_t n = evbuffer_get_length(in);

	if (n == 0)
		return;
	evbuffer_add_buffer(out, in);
	if ((from == c->near) == c->source)
		c->bytes_out += n;
	else
		c->bytes_in += n;
	c->last_ms = mm_now_ms();
	if (evbuffer_get_length(out) >= DTUN_BUFFER)
		bufferevent_disable(from, EV_READ);
}

static void
relay_enter(struct dtun_conn *c)
{
	struct timeval tv = { DTUN_IDLE_MS / 1000, 0 };

	c->state = DC_RELAY;
	c->last_ms = mm_now_ms();
	event_add(c->timer, &tv);
	bufferevent_enable(c->near, EV_READ);
	bufferevent_enable(c->far, EV_READ);
	relay_move(c, c->near);
	relay_move(c, c->far);
	log_info("%s dtun relay user=%s backend=%s", c->sid, c->user,
	    c->be != NULL ? c->be->name : "-");
}

static void
link_up(struct xlink *xl, struct bufferevent *outer,
    const struct xsite_req *req, void *arg)
{
	struct dtun_conn *c = arg;

	c->far = outer;
	bev_setup(c, outer);
	evbuffer_add_printf(bufferevent_get_output(outer), "%s\n%s\n",
	    c->version, c->command);
	log_info("%s dtun linked user=%s site=%s peer=%s", c->sid, c->user,
	    xlink_peer_site(xl), xlink_peer_name(xl));
	relay_enter(c);
}

static void
link_failed(struct xlink *xl, const char *reason, void *arg)
{
	struct dtun_conn *c = arg;

	log_warnx("%s dtun link-failed user=%s reason=\"%s\"", c->sid,
	    c->user, reason);
	evbuffer_add_printf(bufferevent_get_output(c->near), "-\n");
	conn_close(c, "link-failed");
}

static const struct xlink_cbs link_cbs = {
	.up = link_up,
	.failed = link_failed,
};

/* Source: the command line is in c->command; open the link. */
static void
source_link(struct dtun_conn *c)
{
	struct dtun *dt = c->dt;
	struct dtun_route_entry *r;
	struct xsite_req rq;
	const char *why = NULL;

	if (!command_user(c->command, c->user) ||
	    !command_ok(c->command, c->user)) {
		log_warnx("%s dtun refused reason=\"not dsync-server for one "
		    "user\"", c->sid);
		evbuffer_add_printf(bufferevent_get_output(c->near), "-\n");
		conn_close(c, "bad-command");
		return;
	}
	if ((r = route_find(dt, c->user, mm_now_ms())) == NULL) {
		log_warnx("%s dtun refused user=%s reason=\"no move routes "
		    "this user\"", c->sid, c->user);
		evbuffer_add_printf(bufferevent_get_output(c->near), "-\n");
		conn_close(c, "no-route");
		return;
	}
	memset(&rq, 0, sizeof(rq));
	rq.dsync = true;
	mm_strlcpy(rq.user, c->user, sizeof(rq.user));
	mm_strlcpy(rq.backend, r->backend, sizeof(rq.backend));
	mm_strlcpy(rq.caddr, "127.0.0.1", sizeof(rq.caddr));
	rq.hops = 1;
	rq.sid = dt->next_id;
	c->state = DC_LINKING;
	bufferevent_disable(c->near, EV_READ);
	c->xl = xsite_connect(dt->xs, r->site, &rq, &link_cbs, c,
	    DTUN_HANDSHAKE_MS, &why);
	if (c->xl == NULL) {
		log_warnx("%s dtun link-failed user=%s reason=\"%s\"", c->sid,
		    c->user, why);
		evbuffer_add_printf(bufferevent_get_output(c->near), "-\n");
		conn_close(c, "link-failed");
	}
}

static void
source_input(struct dtun_conn *c)
{
	char line[DTUN_LINE_MAX + 1];
	unsigned minor = 0;
	int r;

	while (c->state == DC_VERSION || c->state == DC_AUTH ||
	    c->state == DC_COMMAND) {
		if ((r = read_line(c->near, line)) <= 0) {
			if (r < 0)
				conn_close(c, "line-too-long");
			return;
		}
		switch (c->state) {
		case DC_VERSION:
			if (sscanf(line, "VERSION\tdoveadm-server\t1\t%u",
			    &minor) != 1) {
				conn_close(c, "bad-version");
				return;
			}
			mm_strlcpy(c->version, line, sizeof(c->version));
			/* As a doveadm server: its own version line for
			 * clients that know them, then "credentials". */
			evbuffer_add_printf(bufferevent_get_output(c->near),
			    "%s-\n", minor >= 1 ?
			    "VERSION\tdoveadm-client\t1\t2\n" : "");
			c->state = DC_AUTH;
			break;
		case DC_AUTH:
			if (!auth_ok(c->dt->conf, line)) {
				mm_wipe(line, sizeof(line));
				log_warnx("%s dtun refused peer=%s "
				    "reason=\"wrong doveadm password\"",
				    c->sid, c->peer);
				evbuffer_add_printf(
				    bufferevent_get_output(c->near), "-\n");
				conn_close(c, "auth-failed");
				return;
			}
			mm_wipe(line, sizeof(line));
			evbuffer_add_printf(bufferevent_get_output(c->near),
			    "+\n");
			c->state = DC_COMMAND;
			break;
		case DC_COMMAND:
			mm_strlcpy(c->command, line, sizeof(c->command));
			source_link(c);
			return;
		default:
			return;
		}
	}
}

/* Target: the version and command lines came on the link; connect to the
 * back end. */
static void
target_input(struct dtun_conn *c)
{
	int r;

	while (c->state == DC_LINK_LINES) {
		char *dst = c->version[0] == '\0' ? c->version : c->command;

		if ((r = read_line(c->near, dst)) <= 0) {
			if (r < 0)
				conn_close(c, "line-too-long");
			return;
		}
		if (dst == c->command)
			break;
		if (strncmp(c->version, "VERSION\tdoveadm-server\t1\t", 24) !=
		    0) {
			conn_close(c, "bad-version");
			return;
		}
	}
	if (!command_ok(c->command, c->user)) {
		log_warnx("%s dtun refused user=%s reason=\"not dsync-server "
		    "for this user\"", c->sid, c->user);
		conn_close(c, "bad-command");
		return;
	}
	bufferevent_disable(c->near, EV_READ);
	c->state = DC_BE_CONNECT;
	c->far = bufferevent_socket_new(c->dt->base, -1,
	    BEV_OPT_CLOSE_ON_FREE);
	bev_setup(c, c->far);
	if (bufferevent_socket_connect_hostname(c->far, NULL, AF_UNSPEC,
	    c->be->host, c->be->doveadm_port) != 0)
		conn_close(c, "backend-unreachable");
}

static void
backend_input(struct dtun_conn *c)
{
	char line[DTUN_LINE_MAX + 1];
	int r;

	while (c->state == DC_BE_HELLO || c->state == DC_BE_AUTH) {
		if ((r = read_line(c->far, line)) <= 0) {
			if (r < 0)
				conn_close(c, "backend-line-too-long");
			return;
		}
		if (c->state == DC_BE_HELLO &&
		    strncmp(line, "VERSION\t", 8) == 0)
			continue;
		if (c->state == DC_BE_HELLO && strcmp(line, "-") == 0) {
			unsigned char bin[DTUN_LINE_MAX / 2];
			char b64[DTUN_LINE_MAX];
			size_t pl = strlen(c->be->doveadm_password);

			if (pl + 9 > sizeof(bin)) {
				conn_close(c, "backend-password-too-long");
				return;
			}
			memcpy(bin, "\0doveadm\0", 9);
			memcpy(bin + 9, c->be->doveadm_password, pl);
			sodium_bin2base64(b64, sizeof(b64), bin, pl + 9,
			    sodium_base64_VARIANT_ORIGINAL);
			evbuffer_add_printf(bufferevent_get_output(c->far),
			    "PLAIN\t%s\n", b64);
			sodium_memzero(bin, sizeof(bin));
			sodium_memzero(b64, sizeof(b64));
			c->state = DC_BE_AUTH;
			continue;
		}
		if (strcmp(line, "+") == 0) {
			evbuffer_add_printf(bufferevent_get_output(c->far),
			    "%s\n", c->command);
			relay_enter(c);
			return;
		}
		log_warnx("%s dtun backend-refused user=%s backend=%s "
		    "line=\"%s\"", c->sid, c->user, c->be->name,
		    c->state == DC_BE_AUTH ? "(answer to the password)" :
		    "(greeting)");
		conn_close(c, "backend-refused");
		return;
	}
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct dtun_conn *c = arg;

	switch (c->state) {
	case DC_VERSION:
	case DC_AUTH:
	case DC_COMMAND:
		source_input(c);
		break;
	case DC_LINK_LINES:
		target_input(c);
		break;
	case DC_BE_HELLO:
	case DC_BE_AUTH:
		if (bev == c->far)
			backend_input(c);
		break;
	case DC_RELAY:
		relay_move(c, bev);
		break;
	case DC_LINKING:
	case DC_BE_CONNECT:
	case DC_CLOSING:
		break;
	}
}

static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct dtun_conn *c = arg;
	struct bufferevent *other = bev == c->near ? c->far : c->near;

	if (c->state == DC_RELAY && other != NULL)
		bufferevent_enable(other, EV_READ);
	else if (c->state == DC_CLOSING &&
	    (c->near == NULL || evbuffer_get_length(
	    bufferevent_get_output(c->near)) == 0) &&
	    (c->far == NULL || evbuffer_get_length(
	    bufferevent_get_output(c->far)) == 0)) {
		struct timeval tv = { 0, 0 };

		event_add(c->timer, &tv);
	}
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct dtun_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == DC_BE_CONNECT) {
			evbuffer_add_printf(bufferevent_get_output(c->far),
			    "%s\n", c->version);
			c->state = DC_BE_HELLO;
		}
		return;
	}
	if (c->state == DC_RELAY) {
		/* What came before the end still goes across. */
		relay_move(c, bev);
		conn_close(c, bev == c->near ? (c->source ? "client-closed" :
		    "link-closed") : (c->source ? "link-closed" :
		    "backend-closed"));
		return;
	}
	conn_close(c, c->state == DC_BE_CONNECT ? "backend-unreachable" :
	    "closed-early");
}

/* ---- accepting ------------------------------------------------------ */

static void
accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct dtun *dt = arg;
	struct dtun_conn *c;
	char host[XSITE_ADDR_MAX] = "?", port[8] = "?";

	(void)getnameinfo(sa, (socklen_t)salen, host, sizeof(host), port,
	    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	c = conn_new(dt, true);
	snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
	c->state = DC_VERSION;
	c->near = bufferevent_socket_new(dt->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bev_setup(c, c->near);
	log_info("%s dtun accept peer=%s", c->sid, c->peer);
}

int
dtun_listen(struct dtun *dt, int fd)
{
	dt->evl = evconnlistener_new(dt->base, accept_cb, dt,
	    LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, -1, fd);
	return dt->evl != NULL ? 0 : -1;
}

/* Whether the directory lets the link's site stream user's mailbox to
 * this site. */
static const char *
target_refusal(struct dtun *dt, const char *peer_site, const char *user)
{
	struct record_user u;
	int r = dir_user_record(dt->dir, user, &u);

	if (r < 0)
		return "the directory cannot be read";
	if (r == 0)
		return "no such user";
	if (u.state == USTATE_TRANSFER && strcmp(u.site, dt->conf->site) == 0)
		return NULL;
	if ((u.state == USTATE_MOVING || u.state == USTATE_FROZEN) &&
	    strcmp(u.site, peer_site) == 0 &&
	    strcmp(u.target_site, dt->conf->site) == 0)
		return NULL;
	return "not moving from the peer's site to this one";
}

void
dtun_accept_link(struct dtun *dt, struct xlink *xl,
    struct bufferevent *outer, const struct xsite_req *req)
{
	struct dtun_conn *c = conn_new(dt, false);
	const struct mm_backend_conf *be;
	const char *why;

	c->xl = xl;
	c->near = outer;
	mm_strlcpy(c->user, req->user, sizeof(c->user));
	snprintf(c->peer, sizeof(c->peer), "%s", xlink_addr(xl));
	bev_setup(c, outer);
	log_info("%s dtun link user=%s backend=%s site=%s peer=%s", c->sid,
	    c->user, req->backend, xlink_peer_site(xl), xlink_peer_name(xl));
	be = mm_config_backend(dt->conf, req->backend);
	if (be == NULL || be->move_engine == NULL || be->doveadm_port == 0) {
		log_warnx("%s dtun refused user=%s backend=%s reason=\"not a "
		    "back end of this site that moves by dsync\"", c->sid,
		    c->user, req->backend);
		conn_close(c, "bad-backend");
		return;
	}
	if ((why = target_refusal(dt, xlink_peer_site(xl), c->user)) != NULL) {
		log_warnx("%s dtun refused user=%s reason=\"%s\"", c->sid,
		    c->user, why);
		conn_close(c, "not-moving");
		return;
	}
	c->be = be;
	c->state = DC_LINK_LINES;
	target_input(c);
}
