/* The directory agent's connections to the other nodes: one channel
 * (chan_ev.h) per peer, dialled on demand or from the configured seeds
 * with back-off, and the gossip core (gossip.h) driven over them from one
 * timer, with the store as its record source. Also the membership
 * snapshot the proxy workers route cross-site sessions by, and the trust
 * a peer's certificate must earn.
 *
 * Every frame payload starts with its type (enum peer_frame); gossip
 * frames go to the gossip core, the others to the callback set for their
 * type. */
#include "peers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <sodium.h>

#include "chan.h"
#include "chan_ev.h"
#include "dir.h"
#include "gossip.h"
#include "jobs.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "record.h"
#include "store.h"
#include "trust.h"

#define PEER_CONNS_MAX 256	/* inter-node connections at once */
#define PEER_OUT_MAX (4 * 1024 * 1024)	/* queued for a slow peer: then drop */
#define PEER_HOLD_MAX (256 * 1024)	/* held while a dial completes */
#define PEER_HS_TIMEOUT_S 5
#define PEER_IDLE_MS 60000	/* a connection nothing used is closed */
/* Sent to and heard nothing back for this long: the path is gone (a
 * partition leaves TCP silent, not closed). */
#define PEER_SILENT_MS 8000
#define PEER_BACKOFF_MIN_MS 250
#define PEER_BACKOFF_MAX_MS 4000
#define PEER_DIALS_MAX 64	/* backoff entries kept */
#define GOSSIP_TICK_MS 50
#define PEER_HOUSEKEEP_MS 250
#define PEER_FRAME_HDR_LEN 1	/* the type byte */
#define ACCEPT_GROUP_MAX 4	/* gossip batches in one write transaction */
#define ACCEPT_CHECK_THREADS 8	/* signature checks of a batch: all cores */
#define PEER_TRUST_CHECK_MS 1000	/* revocations looked for this often */
#define PEER_REVOKED_FLUSH_MS 2000	/* a revoked peer's last frames */
#define PEER_REVOKED_NAMES_MAX 64	/* revoked members never dialled */

struct pconn {
	struct peers *p;
	struct chan_ev *ce;
	char name[RECORD_NAME_MAX + 1];	/* "" until the handshake says */
	char site[RECORD_SITE_MAX + 1];	/* its certificate's, likewise */
	char want[RECORD_NAME_MAX + 1];	/* dialled for this member, or "" */
	char addr[GOSSIP_ADDR_MAX + 1];	/* dialled, or the remote end */
	int seed;			/* index in seeds when dialling one */
	bool outbound, ready;
	uint8_t key_id[DKEY_ID_LEN];	/* of the peer's certificate */
	uint64_t revoked_ms;		/* its key is revoked: closing */
	uint64_t last_ms;
	uint64_t unanswered_ms;		/* first send since the last frame in */
	struct evbuffer *hold;		/* len (4, BE) || payload, until ready */
	struct pconn *next;
};

/* Reconnect backoff, per member name or seed address. */
struct dial {
	char key[GOSSIP_ADDR_MAX + 1];
	uint64_t next_ms;
	uint32_t delay_ms;
};

struct seed {
	char *addr;
	bool known;
};

/* The membership snapshot for the proxy workers (see members_publish). */
struct snap_entry {
	char site[GOSSIP_SITE_MAX + 1];
	char name[GOSSIP_NAME_MAX + 1];
	char saddr[GOSSIP_ADDR_MAX + 1];
	bool suspect;
	int64_t rtt_ms;
};

struct snap {
	struct snap_entry *e;
	size_t n, cap;
};

struct peers {
	struct event_base *base;
	const struct mm_config *conf;
	struct ops *ops;
	struct store *st;		/* the ops': the loop's reads */
	struct jobs *writer;		/* every store write, off the loop */
	struct jobs *verifier;		/* signatures of batches queued for
					 * the writer, checked ahead */
	const struct dkey *key;
	struct gossip *g;
	struct evconnlistener *lst;
	struct event *tick_ev;
	struct pconn *conns, *dead;
	size_t n_conns;
	uint8_t *cert;
	size_t cert_len;
	struct dial dials[PEER_DIALS_MAX];
	struct seed *seeds;
	size_t n_seeds;
	uint64_t last_housekeep;
	uint64_t dropped;
	uint64_t last_trust_check;
	uint64_t revocations;		/* in the store at the last check */
	bool self_revoked;		/* this node's key: gossip stopped */
	char revoked[PEER_REVOKED_NAMES_MAX][GOSSIP_NAME_MAX + 1];
	size_t n_revoked;		/* members cut off, newest last */
	uint8_t *out;			/* a typed payload being sent */
	size_t out_cap;
	struct {
		peers_frame_cb cb;
		void *arg;
	} on[PEER_FRAME_MOVE + 1];	/* by type; gossip's is the core */
	/* the membership snapshot */
	struct {
		struct snap last;	/* as last written */
		bool written;
		uint64_t last_ms;
	} ms;
	/* gossip batches waiting for the writer, oldest first */
	pthread_mutex_t acc_lock;
	pthread_cond_t acc_checked;	/* a batch's check is over */
	struct accept_job *acc, **acc_tail;
	/* what the proxy is told of the catch-up (store_put_behind) */
	struct {
		bool said, behind;
		uint64_t said_ms;
	} bh;
};

static bool name_revoked(const struct peers *p, const char *name);

static struct dial *
dial_get(struct peers *p, const char *key, bool create)
{
	struct dial *d, *oldest = &p->dials[0];
	size_t i;

	for (i = 0; i < PEER_DIALS_MAX; i++) {
		d = &p->dials[i];
		if (strcmp(d->key, key) == 0)
			return d;
		if (d->next_ms < oldest->next_ms)
			oldest = d;
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	mm_strlcpy(oldest->key, key, sizeof(oldest->key));
	return oldest;
}

static bool
dial_allowed(struct peers *p, const char *key, uint64_t now)
{
	struct dial *d = dial_get(p, key, false);

	return d == NULL || d->next_ms <= now;
}

static void
dial_failed(struct peers *p, const char *key, uint64_t now)
{
	struct dial *d = dial_get(p, key, true);

	d->delay_ms = d->delay_ms == 0 ? PEER_BACKOFF_MIN_MS :
	    d->delay_ms * 2;
	if (d->delay_ms > PEER_BACKOFF_MAX_MS)
		d->delay_ms = PEER_BACKOFF_MAX_MS;
	d->next_ms = now + d->delay_ms;
}

static void
dial_ok(struct peers *p, const char *key)
{
	struct dial *d = dial_get(p, key, false);

	if (d != NULL)
		memset(d, 0, sizeof(*d));
}

/* Unlinks c and frees its channel; c itself goes at the next tick (it
 * may be an argument up the stack). */
static void
pconn_close(struct pconn *c)
{
	struct peers *p = c->p;
	struct pconn **pp;

	for (pp = &p->conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			p->n_conns--;
			break;
		}
	}
	chan_ev_free(c->ce);
	c->ce = NULL;
	if (c->hold != NULL)
		evbuffer_free(c->hold);
	c->hold = NULL;
	c->next = p->dead;
	p->dead = c;
}

static void
pconn_reap(struct peers *p)
{
	struct pconn *c;

	while ((c = p->dead) != NULL) {
		p->dead = c->next;
		free(c);
	}
}

static struct pconn *
pconn_find(struct peers *p, const char *name, bool ready)
{
	struct pconn *c;

	for (c = p->conns; c != NULL; c = c->next) {
		if (ready && c->ready && strcmp(c->name, name) == 0)
			return c;
		if (!ready && !c->ready && strcmp(c->want, name) == 0)
			return c;
	}
	return NULL;
}

/* Sends one whole frame payload (type byte first), or holds it until the
 * handshake is done. */
static void
pconn_put(struct pconn *c, const uint8_t *buf, size_t len)
{
	struct peers *p = c->p;
	uint8_t n[4];

	if (!c->ready) {
		if (evbuffer_get_length(c->hold) + len + 4 > PEER_HOLD_MAX) {
			p->dropped++;
			return;
		}
		mm_be32_put(n, (uint32_t)len);
		evbuffer_add(c->hold, n, 4);
		evbuffer_add(c->hold, buf, len);
		return;
	}
	/* Gossip tolerates loss; an unbounded queue for a slow peer would
	 * not be tolerated by this process. */
	if (chan_ev_pending(c->ce) > PEER_OUT_MAX) {
		if (p->dropped++ % 1000 == 0)
			log_warnx("- gossip peer-slow name=%s dropped=%llu",
			    c->name, (unsigned long long)p->dropped);
		return;
	}
	if (chan_ev_send(c->ce, buf, len) == 0) {
		c->last_ms = mm_now_ms();
		if (c->unanswered_ms == 0)
			c->unanswered_ms = c->last_ms;
	}
}

/* Sends msg as a frame of the given type. */
static void
pconn_send(struct pconn *c, enum peer_frame type, const uint8_t *msg,
    size_t len)
{
	struct peers *p = c->p;

	if (len > CHAN_FRAME_MAX - PEER_FRAME_HDR_LEN)
		return;
	if (p->out_cap < PEER_FRAME_HDR_LEN + len) {
		p->out_cap = PEER_FRAME_HDR_LEN + len;
		p->out = xrealloc(p->out, p->out_cap);
	}
	p->out[0] = (uint8_t)type;
	memcpy(p->out + PEER_FRAME_HDR_LEN, msg, len);
	pconn_put(c, p->out, PEER_FRAME_HDR_LEN + len);
}

static void
pconn_flush_hold(struct pconn *c)
{
	uint8_t n[4], *f;
	size_t len;

	while (c->ce != NULL && evbuffer_get_length(c->hold) >= 4) {
		evbuffer_remove(c->hold, n, 4);
		len = mm_be32_get(n);
		f = evbuffer_pullup(c->hold, (ev_ssize_t)len);
		if (f == NULL)
			break;
		pconn_put(c, f, len);
		evbuffer_drain(c->hold, len);
	}
}

/* ---- the peer's certificate ----------------------------------------- */

/* The decoder bounds a certificate's name by RECORD_NAME_MAX: every name
 * a trusted certificate gives is a member name gossip can carry. */
_Static_assert(RECORD_NAME_MAX <= GOSSIP_NAME_MAX, "certified names fit");

enum trust_verdict
peers_cert_check(struct store *st, const uint8_t *env, size_t len,
    uint64_t now, struct chan_peer *peer, bool *learn_r)
{
	struct trust_ctx t;
	struct record_cert c;
	struct record r;
	enum trust_verdict v;
	bool held = false;

	*learn_r = false;
	if (len > RECORD_MAX || record_decode(env, len, &r, NULL) != 0 ||
	    r.kind != RECORD_CERT)
		return TRUST_UNKNOWN_KEY;
	store_trust_init(st, &t);
	v = trust_check_shown(&t, &r, TRUST_USE_NODE, NULL, NULL, now, &c,
	    &held);
	trust_clear(&t);
	if (v != TRUST_OK)
		return v;
	peer->role = c.role;
	mm_strlcpy(peer->site, c.site, sizeof(peer->site));
	mm_strlcpy(peer->name, c.name, sizeof(peer->name));
	*learn_r = !held;
	return TRUST_OK;
}

/* A peer's certificate the store lacks, on its way to the writer. */
struct learn_job {
	uint8_t env[RECORD_MAX];
	size_t len;
};

static void
learn_run(struct store *st, void *arg)
{
	struct learn_job *lj = arg;
	struct record r;

	if (store_accept(st, lj->env, lj->len, (uint64_t)time(NULL)) ==
	    ACCEPT_STORED && record_decode(lj->env, lj->len, &r, NULL) == 0)
		log_info("- gossip cert-learnt site=%s name=%s",
		    r.u.cert.site, r.u.cert.name);
	free(lj);
}

/* Decided on the loop, read-only; a certificate the store lacks is
 * stored by the writer, ahead of any gossip the channel brings (the
 * writer runs its jobs in order). */
static int
peer_trust_cb(const uint8_t *env, size_t len, const struct record *cert,
    struct chan_peer *peer, const char **why_r, void *arg)
{
	struct peers *p = arg;
	struct learn_job *lj;
	enum trust_verdict v;
	bool learn;

	v = peers_cert_check(p->st, env, len, (uint64_t)time(NULL), peer,
	    &learn);
	if (v != TRUST_OK) {
		*why_r = v == TRUST_WRONG_ROLE ? "not a node or site key" :
		    trust_verdict_name(v);
		return -1;
	}
	if (learn) {
		lj = xcalloc(1, sizeof(*lj));
		memcpy(lj->env, env, len);
		lj->len = len;
		jobs_add(p->writer, learn_run, NULL, lj);
	}
	return 0;
}

static void peer_ready_cb(struct chan_ev *ce, const struct chan_peer *peer,
    void *arg);
static void peer_frame_cb(struct chan_ev *ce, const uint8_t *payload,
    size_t len, void *arg);
static void peer_closed_cb(struct chan_ev *ce, const char *reason,
    void *arg);

static const struct chan_ev_cbs peer_cbs = {
	peer_ready_cb, peer_frame_cb, peer_closed_cb
};

static struct pconn *
pconn_new(struct peers *p, struct bufferevent *bev, enum chan_role role,
    const char *addr)
{
	struct timeval hs = { PEER_HS_TIMEOUT_S, 0 };
	struct chan_config cc;
	struct pconn *c;
	struct chan *ch;
	const char *why = NULL;

	memset(&cc, 0, sizeof(cc));
	cc.role = role;
	cc.key = p->key;
	cc.cert = p->cert;
	cc.cert_len = p->cert_len;
	cc.trust = peer_trust_cb;
	cc.trust_arg = p;
	if ((ch = chan_new(&cc, &why)) == NULL) {
		log_warnx("- gossip channel-failed reason=\"%s\"", why);
		bufferevent_free(bev);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->p = p;
	c->seed = -1;
	c->outbound = role == CHAN_INITIATOR;
	c->last_ms = mm_now_ms();
	c->hold = evbuffer_new();
	if (c->hold == NULL)
		abort();
	mm_strlcpy(c->addr, addr, sizeof(c->addr));
	c->next = p->conns;
	p->conns = c;
	p->n_conns++;
	c->ce = chan_ev_new(bev, ch, &peer_cbs, c, &hs);
	return c;
}

/* Connects to addr ("HOST:PORT", IPv6 in brackets). NULL on failure. */
static struct pconn *
pconn_dial(struct peers *p, const char *addr)
{
	struct sockaddr_storage ss;
	struct bufferevent *bev;
	int sslen = (int)sizeof(ss);

	if (p->n_conns >= PEER_CONNS_MAX ||
	    evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss,
	    &sslen) != 0)
		return NULL;
	bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss,
	    sslen) != 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return pconn_new(p, bev, CHAN_INITIATOR, addr);
}

static void
peer_ready_cb(struct chan_ev *ce, const struct chan_peer *peer, void *arg)
{
	struct pconn *c = arg, *o, *next;
	struct peers *p = c->p;
	const char *self = p->conf->node_name;

	mm_strlcpy(c->name, peer->name, sizeof(c->name));
	mm_strlcpy(c->site, peer->site, sizeof(c->site));
	if (strcmp(peer->name, self) == 0) {
		/* A seed that is this node's own address. */
		if (c->seed >= 0)
			p->seeds[c->seed].known = true;
		pconn_close(c);
		return;
	}
	if (c->want[0] != '\0' && strcmp(c->want, peer->name) != 0) {
		log_warnx("- gossip peer-unexpected addr=%s want=%s got=%s",
		    c->addr, c->want, peer->name);
		dial_failed(p, c->want, mm_now_ms());
		pconn_close(c);
		return;
	}
	c->ready = true;
	memcpy(c->key_id, peer->key_id, DKEY_ID_LEN);
	c->last_ms = mm_now_ms();
	if (c->outbound) {
		dial_ok(p, c->want[0] != '\0' ? c->want : c->addr);
		dial_ok(p, peer->name);
	}
	log_info("- gossip peer-up site=%s name=%s addr=%s dir=%s", peer->site,
	    peer->name, c->addr, c->outbound ? "out" : "in");
	if (c->seed >= 0) {
		p->seeds[c->seed].known = true;
		(void)gossip_add_seed(p->g, peer->name, peer->site, c->addr);
	} else {
		/* Its certificate says its site, before it announces itself
		 * (it may have done so already, before this node started). */
		(void)gossip_add_seed(p->g, peer->name, peer->site,
		    c->outbound ? c->addr : "");
	}
	/* One channel per pair: of two, both ends keep the one whose
	 * initiator has the lower name. */
	for (o = p->conns; o != NULL; o = next) {
		const char *oi, *ci;

		next = o->next;
		if (o == c || !o->ready || strcmp(o->name, c->name) != 0)
			continue;
		oi = o->outbound ? self : o->name;
		ci = c->outbound ? self : c->name;
		if (strcmp(ci, oi) < 0 || (strcmp(ci, oi) == 0 &&
		    c->outbound == o->outbound)) {
			pconn_flush_hold(o);
			pconn_close(o);
		} else {
			pconn_flush_hold(c);
			pconn_close(c);
			return;
		}
	}
	pconn_flush_hold(c);
}

static void
peer_frame_cb(struct chan_ev *ce, const uint8_t *payload, size_t len,
    void *arg)
{
	struct pconn *c = arg;
	struct peers *p = c->p;
	uint8_t type;

	c->last_ms = mm_now_ms();
	c->unanswered_ms = 0;
	if (c->revoked_ms != 0)
		return;		/* nothing more is taken from it */
	if (len < PEER_FRAME_HDR_LEN) {
		log_warnx("- gossip frame-dropped from=%s reason=empty",
		    c->name);
		return;
	}
	type = payload[0];
	payload += PEER_FRAME_HDR_LEN;
	len -= PEER_FRAME_HDR_LEN;
	if (type == PEER_FRAME_GOSSIP) {
		(void)gossip_recv(p->g, c->name, payload, len, c->last_ms);
		return;
	}
	if (type < MM_ARRAY_SIZE(p->on) && p->on[type].cb != NULL) {
		p->on[type].cb(p->on[type].arg, c, payload, len);
		return;
	}
	log_warnx("- gossip frame-dropped from=%s reason=unknown-type type=%u "
	    "len=%zu", c->name, (unsigned)type, len);
}

static void
peer_closed_cb(struct chan_ev *ce, const char *reason, void *arg)
{
	struct pconn *c = arg;
	struct peers *p = c->p;
	uint64_t now = mm_now_ms();

	if (c->ready)
		log_info("- gossip peer-down name=%s addr=%s reason=\"%s\"",
		    c->name, c->addr, reason);
	else if (c->outbound)
		log_info("- gossip dial-failed want=%s addr=%s reason=\"%s\"",
		    c->want[0] != '\0' ? c->want : "-", c->addr, reason);
	else
		log_warnx("- gossip handshake-failed addr=%s reason=\"%s\"",
		    c->addr, reason);
	if (c->outbound && !c->ready)
		dial_failed(p, c->want[0] != '\0' ? c->want : c->addr, now);
	pconn_close(c);
}

static void
peer_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct peers *p = arg;
	struct bufferevent *bev;
	char host[INET6_ADDRSTRLEN + 8], addr[GOSSIP_ADDR_MAX + 1];
	int port = 0;

	host[0] = '\0';
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;

		evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(addr, sizeof(addr), "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;

		evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host,
		    sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(addr, sizeof(addr), "[%s]:%d", host, port);
	} else {
		snprintf(addr, sizeof(addr), "?");
	}
	if (p->n_conns >= PEER_CONNS_MAX || p->self_revoked) {
		log_warnx("- gossip refused addr=%s reason=%s", addr,
		    p->self_revoked ? "own-key-revoked" : "too-many-peers");
		evutil_closesocket(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	(void)pconn_new(p, bev, CHAN_RESPONDER, addr);
}

/* ---- frames to and from peers ----------------------------------------- */

void
peers_send(struct peers *p, const char *to, enum peer_frame type,
    const uint8_t *msg, size_t len)
{
	struct gossip_member_info m;
	char addr[GOSSIP_ADDR_MAX + 1];
	struct pconn *c;
	uint64_t now = mm_now_ms();

	if ((c = pconn_find(p, to, true)) == NULL &&
	    (c = pconn_find(p, to, false)) == NULL) {
		if (name_revoked(p, to) ||
		    gossip_member_get(p->g, to, &m) != 1 ||
		    m.addr[0] == '\0' || !dial_allowed(p, to, now))
			return;
		mm_strlcpy(addr, m.addr, sizeof(addr));
		if ((c = pconn_dial(p, addr)) == NULL) {
			dial_failed(p, to, now);
			return;
		}
		mm_strlcpy(c->want, to, sizeof(c->want));
	}
	pconn_send(c, type, msg, len);
}

void
peers_send_conn(struct pconn *c, enum peer_frame type, const uint8_t *msg,
    size_t len)
{
	pconn_send(c, type, msg, len);
}

const char *
peers_conn_name(const struct pconn *c)
{
	return c->name;
}

const char *
peers_conn_site(const struct pconn *c)
{
	return c->site;
}

void
peers_set_frame_cb(struct peers *p, enum peer_frame type, peers_frame_cb cb,
    void *arg)
{
	if ((size_t)type >= MM_ARRAY_SIZE(p->on) || type == PEER_FRAME_GOSSIP)
		return;
	p->on[type].cb = cb;
	p->on[type].arg = arg;
}

/* ---- the gossip core's I/O -------------------------------------------- */

static void
gio_send(void *arg, const char *to, const uint8_t *buf, size_t len)
{
	struct peers *p = arg;

	if (!p->self_revoked)
		peers_send(p, to, PEER_FRAME_GOSSIP, buf, len);
}

struct digest_ctx {
	struct gossip_digest_entry *out;
	size_t max, n;
};

static int
digest_cb(const char *origin, uint64_t contig, uint64_t highest, void *arg)
{
	struct digest_ctx *dc = arg;

	if (contig == 0 || strlen(origin) > GOSSIP_NAME_MAX)
		return 0;
	mm_strlcpy(dc->out[dc->n].origin, origin,
	    sizeof(dc->out[dc->n].origin));
	dc->out[dc->n].seq = contig;
	return ++dc->n >= dc->max;
}

static size_t
gio_digest(void *arg, struct gossip_digest_entry *out, size_t max)
{
	struct peers *p = arg;
	struct digest_ctx dc = { out, max, 0 };

	if (max == 0 || store_foreach_origin(p->st, digest_cb, &dc) != 0)
		return 0;
	return dc.n;
}

struct fetch_ctx {
	gossip_emit_cb emit;
	void *ctx;
};

static int
fetch_cb(uint64_t seq, const uint8_t *env, size_t len, void *arg)
{
	struct fetch_ctx *fc = arg;

	return fc->emit(fc->ctx, env, len);
}

static void
gio_fetch(void *arg, const char *origin, uint64_t from_seq,
    gossip_emit_cb emit, void *ctx)
{
	struct peers *p = arg;
	struct fetch_ctx fc = { emit, ctx };

	(void)store_log_range(p->st, origin, from_seq, fetch_cb, &fc);
}

/* Where a batch's signatures are checked (under acc_lock). */
enum precheck {
	PRE_QUEUED,			/* waiting for the verifier */
	PRE_RUNNING,			/* the verifier is at it */
	PRE_DONE,			/* pre holds the answers */
	PRE_WRITER,			/* the writer got there first */
};

/* One gossip message's records on their way through the writer thread,
 * its signatures checked ahead by the verifier thread: while the writer
 * writes (and syncs) one batch, the next one's signatures are checked. */
struct accept_job {
	struct peers *p;
	struct accept_job *next;	/* in p->acc (not yet taken) */
	bool taken;			/* a writer run has it (under lock) */
	enum precheck check;
	struct store_presig *pre;	/* PRE_DONE: n answers */
	unsigned refs;			/* writer's and verifier's done */
	uint64_t token;
	char from[GOSSIP_NAME_MAX + 1];
	const uint8_t *const *envs;	/* the gossip core's, until done */
	const size_t *lens;
	size_t n;
	uint64_t now_s;
	enum gossip_accept *results;
};

/* Group commit: the first of the batches queued for the writer takes the
 * others from the same sender that are waiting behind it and accepts
 * them all in one write transaction (one sync, each page written once);
 * the runs of the batches it took find nothing left to do. Their done
 * callbacks still come one by one, in order. */
static void
accept_run(struct store *st, void *arg)
{
	struct accept_job *j = arg, *q, *group = NULL, **tail = &group;
	struct peers *p = j->p;
	const uint8_t **envs;
	size_t *lens, n = 0, k;
	enum gossip_accept *res;
	struct store_presig *pre;

	pthread_mutex_lock(&p->acc_lock);
	if (j->taken) {
		pthread_mutex_unlock(&p->acc_lock);
		return;
	}
	/* j is at the head of the waiting ones: FIFO on one thread. */
	while ((q = p->acc) != NULL && strcmp(q->from, j->from) == 0 &&
	    n + q->n <= GOSSIP_RECORDS_MAX * ACCEPT_GROUP_MAX) {
		p->acc = q->next;
		q->taken = true;
		q->next = NULL;
		*tail = q;
		tail = &q->next;
		n += q->n;
	}
	if (p->acc == NULL)
		p->acc_tail = &p->acc;
	/* The verifier's checks: those it has not started are the
	 * writer's; those it is at are waited for. */
	for (q = group; q != NULL; q = q->next)
		if (q->check == PRE_QUEUED)
			q->check = PRE_WRITER;
	for (q = group; q != NULL; q = q->next)
		while (q->check == PRE_RUNNING)
			pthread_cond_wait(&p->acc_checked, &p->acc_lock);
	pthread_mutex_unlock(&p->acc_lock);
	if (group == NULL)
		return;		/* taken by an earlier run meanwhile */
	for (q = group; q != NULL; q = q->next) {
		if (q->check != PRE_WRITER)
			continue;
		q->pre = xcalloc(q->n + 1, sizeof(*q->pre));
		store_presig_check(st, q->envs, q->lens, q->n,
		    ACCEPT_CHECK_THREADS, q->pre);
	}
	if (group->next == NULL) {
		ops_gossip_accept_batch(st, j->from, j->envs, j->lens,
		    j->n, j->now_s, j->pre, j->results);
		return;
	}
	envs = xcalloc(n + 1, sizeof(*envs));
	lens = xcalloc(n + 1, sizeof(*lens));
	res = xcalloc(n + 1, sizeof(*res));
	pre = xcalloc(n + 1, sizeof(*pre));
	n = 0;
	for (q = group; q != NULL; q = q->next) {
		memcpy(envs + n, q->envs, q->n * sizeof(*envs));
		memcpy(lens + n, q->lens, q->n * sizeof(*lens));
		memcpy(pre + n, q->pre, q->n * sizeof(*pre));
		n += q->n;
	}
	ops_gossip_accept_batch(st, j->from, envs, lens, n, j->now_s, pre,
	    res);
	n = 0;
	for (q = group; q != NULL; q = q->next) {
		for (k = 0; k < q->n; k++)
			q->results[k] = res[n + k];
		n += q->n;
	}
	free(envs);
	free(lens);
	free(res);
	free(pre);
}

/* On the verifier: the batch's signatures, unless the writer has taken
 * it meanwhile (then its envelopes may be gone: not touched). */
static void
check_run_job(struct store *st, void *arg)
{
	struct accept_job *j = arg;
	struct peers *p = j->p;
	struct store_presig *pre;

	pthread_mutex_lock(&p->acc_lock);
	if (j->check != PRE_QUEUED) {
		pthread_mutex_unlock(&p->acc_lock);
		return;
	}
	j->check = PRE_RUNNING;
	pthread_mutex_unlock(&p->acc_lock);
	pre = xcalloc(j->n + 1, sizeof(*pre));
	store_presig_check(st, j->envs, j->lens, j->n, ACCEPT_CHECK_THREADS,
	    pre);
	pthread_mutex_lock(&p->acc_lock);
	j->pre = pre;
	j->check = PRE_DONE;
	pthread_cond_broadcast(&p->acc_checked);
	pthread_mutex_unlock(&p->acc_lock);
}

/* Both threads are done with j: on the loop. */
static void
accept_job_release(struct accept_job *j)
{
	if (--j->refs > 0)
		return;
	free(j->pre);
	free(j->results);
	free(j);
}

static void
check_done(void *arg)
{
	accept_job_release(arg);
}

static void
accept_done(void *arg)
{
	struct accept_job *j = arg;

	gossip_accept_done(j->p->g, j->token, j->results, mm_now_ms());
	accept_job_release(j);
}

static void
gio_accept_batch(void *arg, const char *from, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now_ms, uint64_t token)
{
	struct peers *p = arg;
	struct accept_job *j = xcalloc(1, sizeof(*j));

	j->p = p;
	j->token = token;
	mm_strlcpy(j->from, from, sizeof(j->from));
	j->envs = envs;
	j->lens = lens;
	j->n = n;
	j->now_s = (uint64_t)time(NULL);
	j->results = xcalloc(n + 1, sizeof(*j->results));
	j->check = p->verifier != NULL ? PRE_QUEUED : PRE_WRITER;
	j->refs = p->verifier != NULL ? 2 : 1;
	pthread_mutex_lock(&p->acc_lock);
	*p->acc_tail = j;
	p->acc_tail = &j->next;
	pthread_mutex_unlock(&p->acc_lock);
	if (p->verifier != NULL)
		jobs_add(p->verifier, check_run_job, check_done, j);
	jobs_add(p->writer, accept_run, accept_done, j);
}

static void
gio_member_change(void *arg, const struct gossip_member_info *m)
{
	static const char *const ev[] = { "member-alive", "member-suspect",
		"member-dead" };

	if (m->self)
		return;
	if (m->state == GOSSIP_ALIVE)
		log_info("- gossip %s site=%s name=%s addr=%s incarnation=%llu",
		    ev[m->state], m->site, m->name, m->addr,
		    (unsigned long long)m->incarnation);
	else
		log_warnx("- gossip %s site=%s name=%s addr=%s "
		    "incarnation=%llu", ev[m->state], m->site, m->name,
		    m->addr, (unsigned long long)m->incarnation);
}

static const struct gossip_io gossip_io = {
	.send = gio_send,
	.digest = gio_digest,
	.fetch = gio_fetch,
	.member_change = gio_member_change,
	.accept_batch = gio_accept_batch,
};

/* ---- revocations ----------------------------------------------------
 *
 * A revocation stored here (by gossip, or mmctl keys revoke) ends the
 * channels of the key it revokes at once: the revoked node first gets the
 * revocation itself, so that it knows why; then its channel closes once
 * that has left (or after PEER_REVOKED_FLUSH_MS), and its handshakes are
 * refused from then on (peer_trust_cb). A node that finds its own key
 * revoked stops gossiping, says why, and stops redialling. */

struct revoked_ctx {
	struct peers *p;
	uint64_t now;
};

/* Whether member name was cut off for a revoked key: never dialled
 * again (a new key certified under the name starts with a restart). */
static bool
name_revoked(const struct peers *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->n_revoked; i++)
		if (strcmp(p->revoked[i], name) == 0)
			return true;
	return false;
}

static void
revoke_name(struct peers *p, const char *name)
{
	if (name_revoked(p, name))
		return;
	if (p->n_revoked == PEER_REVOKED_NAMES_MAX)
		memmove(p->revoked[0], p->revoked[1],
		    --p->n_revoked * sizeof(p->revoked[0]));
	mm_strlcpy(p->revoked[p->n_revoked++], name, sizeof(p->revoked[0]));
}

static int
revoked_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct revoked_ctx *rc = arg;
	struct peers *p = rc->p;
	struct record_cert cert;
	struct pconn *c, *next;
	char kid[DKEY_ID_HEX_LEN + 1];

	dkey_id_hex(r->u.revoke.key_id, kid);
	if (memcmp(r->u.revoke.key_id, p->key->id, DKEY_ID_LEN) == 0) {
		log_warnx("- gossip own-key-revoked key_id=%s (this node's key "
		    "is revoked: gossip stops and no peer is dialled; make a "
		    "new key with mmctl keys new, certify it, restart)", kid);
		p->self_revoked = true;
		while (p->conns != NULL)
			pconn_close(p->conns);
		return 1;
	}
	for (c = p->conns; c != NULL; c = next) {
		next = c->next;
		if (!c->ready || c->revoked_ms != 0 ||
		    memcmp(c->key_id, r->u.revoke.key_id, DKEY_ID_LEN) != 0)
			continue;
		log_warnx("- gossip peer-revoked name=%s addr=%s key_id=%s",
		    c->name, c->addr, kid);
		gossip_push_to(p->g, c->name, env, len);
		c->revoked_ms = rc->now;
		revoke_name(p, c->name);
	}
	/* No channel open to it (it may have learnt of the revocation
	 * first and closed its own): the name its certificate gives is
	 * never dialled again all the same. */
	if (store_get_cert(p->st, r->u.revoke.key_id, &cert) == 1 &&
	    (cert.role == ROLE_NODE || cert.role == ROLE_SITE) &&
	    strcmp(cert.name, p->conf->node_name) != 0 &&
	    !name_revoked(p, cert.name)) {
		log_warnx("- gossip peer-revoked name=%s addr=- key_id=%s",
		    cert.name, kid);
		revoke_name(p, cert.name);
	}
	return 0;
}

static void
revocations_check(struct peers *p, uint64_t now)
{
	struct revoked_ctx rc = { p, now };
	struct store_stats s;

	if (now - p->last_trust_check < PEER_TRUST_CHECK_MS)
		return;
	p->last_trust_check = now;
	if (store_sizes(p->st, &s) != 0 || s.revoked == p->revocations)
		return;
	p->revocations = s.revoked;
	(void)store_foreach_revoked(p->st, revoked_cb, &rc);
}

/* Milliseconds from then to now; 0 when then is later. A connection's
 * times are taken when its bytes move, which may be after the tick took
 * its own now (a send during the tick): without this, the difference
 * wrapped around and a busy connection was closed as idle. */
static uint64_t
since(uint64_t now, uint64_t then)
{
	return then < now ? now - then : 0;
}

static void
housekeep(struct peers *p, uint64_t now)
{
	struct pconn *c, *next;
	size_t i;

	revocations_check(p, now);
	if (p->self_revoked)
		return;
	for (c = p->conns; c != NULL; c = next) {
		next = c->next;
		if (c->revoked_ms != 0) {
			if (chan_ev_pending(c->ce) == 0 ||
			    now - c->revoked_ms > PEER_REVOKED_FLUSH_MS)
				pconn_close(c);
			continue;
		}
		if (since(now, c->last_ms) > PEER_IDLE_MS) {
			log_info("- gossip peer-idle name=%s addr=%s", c->name,
			    c->addr);
			pconn_close(c);
		} else if (c->ready && c->unanswered_ms != 0 &&
		    since(now, c->unanswered_ms) > PEER_SILENT_MS) {
			log_info("- gossip peer-silent name=%s addr=%s", c->name,
			    c->addr);
			pconn_close(c);
		}
	}
	for (i = 0; i < p->n_seeds; i++) {
		struct seed *s = &p->seeds[i];

		if (s->known || !dial_allowed(p, s->addr, now))
			continue;
		for (c = p->conns; c != NULL; c = c->next)
			if (c->seed == (int)i)
				break;
		if (c != NULL)
			continue;
		if ((c = pconn_dial(p, s->addr)) == NULL)
			dial_failed(p, s->addr, now);
		else
			c->seed = (int)i;
	}
}

/* ---- membership snapshot for the proxy workers ------------------------
 *
 * The workers route a cross-site session to the nearest healthy node of
 * the owner site without asking this process: the alive and suspect
 * members that take sessions, with their RTTs, are written to the store
 * when that view changes, at most once per MEMBERS_PUBLISH_MS. Small RTT
 * jitter is not a change: it would cost a store write every second. */
#define MEMBERS_PUBLISH_MS 1000
#define MEMBERS_RTT_SLACK_MS 2		/* and a fifth of the RTT */

static void
snap_collect_cb(void *arg, const struct gossip_member_info *m)
{
	struct snap *sn = arg;
	struct snap_entry *e;

	if (m->self || m->state == GOSSIP_DEAD || m->session_addr[0] == '\0' ||
	    sn->n >= DIR_MEMBERS_MAX)
		return;
	if (sn->n == sn->cap) {
		sn->cap = sn->cap ? sn->cap * 2 : 16;
		sn->e = xrealloc(sn->e, sn->cap * sizeof(*sn->e));
	}
	e = &sn->e[sn->n++];
	mm_strlcpy(e->site, m->site, sizeof(e->site));
	mm_strlcpy(e->name, m->name, sizeof(e->name));
	mm_strlcpy(e->saddr, m->session_addr, sizeof(e->saddr));
	e->suspect = m->state == GOSSIP_SUSPECT;
	e->rtt_ms = m->rtt_ms;
}

static bool
rtt_close(int64_t a, int64_t b)
{
	int64_t d = a > b ? a - b : b - a, hi = a > b ? a : b;

	if ((a < 0) != (b < 0))
		return false;
	return a < 0 || d <= MEMBERS_RTT_SLACK_MS || d * 5 <= hi;
}

static bool
snap_same(const struct snap *x, const struct snap *y)
{
	size_t i;

	if (x->n != y->n)
		return false;
	for (i = 0; i < x->n; i++) {
		const struct snap_entry *a = &x->e[i], *b = &y->e[i];

		if (strcmp(a->name, b->name) != 0 ||
		    strcmp(a->site, b->site) != 0 ||
		    strcmp(a->saddr, b->saddr) != 0 ||
		    a->suspect != b->suspect || !rtt_close(a->rtt_ms, b->rtt_ms))
			return false;
	}
	return true;
}

static int
snap_write(struct store *st, const struct snap *sn)
{
	struct dir_member *m = xcalloc(sn->n + 1, sizeof(*m));
	uint8_t *buf;
	size_t len, i;
	int r;

	for (i = 0; i < sn->n; i++) {
		m[i].site = sn->e[i].site;
		m[i].name = sn->e[i].name;
		m[i].session_addr = sn->e[i].saddr;
		m[i].suspect = sn->e[i].suspect;
		m[i].rtt_ms = sn->e[i].rtt_ms;
	}
	buf = dir_members_encode(m, sn->n, (uint64_t)time(NULL), &len);
	r = store_put_members(st, buf, len);
	free(buf);
	free(m);
	return r;
}

static void
snap_run(struct store *st, void *arg)
{
	struct snap *sn = arg;

	if (snap_write(st, sn) != 0)
		log_warnx("- gossip members-publish-failed members=%zu", sn->n);
	else
		log_debug("- gossip members-published members=%zu", sn->n);
	free(sn->e);
	free(sn);
}

/* From the gossip timer; written by the writer thread. */
static void
members_publish(struct peers *p, uint64_t now)
{
	struct snap sn = { NULL, 0, 0 }, *copy;

	if (p->ms.written && now - p->ms.last_ms < MEMBERS_PUBLISH_MS)
		return;
	gossip_foreach_member(p->g, snap_collect_cb, &sn);
	if (p->ms.written && snap_same(&sn, &p->ms.last)) {
		free(sn.e);
		return;
	}
	p->ms.last_ms = now;
	copy = xcalloc(1, sizeof(*copy));
	copy->n = copy->cap = sn.n;
	copy->e = xcalloc(sn.n + 1, sizeof(*copy->e));
	if (sn.n > 0)
		memcpy(copy->e, sn.e, sn.n * sizeof(*sn.e));
	jobs_add(p->writer, snap_run, NULL, copy);
	free(p->ms.last.e);
	p->ms.last = sn;
	p->ms.written = true;
}

/* ---- telling the proxy that this node is catching up ----------------
 *
 * While gossip knows that peers hold records this store lacks, the proxy
 * answers users it does not know with a temporary error: the user may be
 * among the records still on their way. The word is written when it
 * changes and renewed well before it expires. */
#define BEHIND_RENEW_MS 5000
#define BEHIND_VALID_S 20

struct behind_job {
	bool behind;
	uint64_t until;
};

static void
behind_run(struct store *st, void *arg)
{
	struct behind_job *b = arg;

	if (store_put_behind(st, b->behind, b->until) != 0)
		log_warnx("- gossip behind-publish-failed");
	free(b);
}

static void
behind_publish(struct peers *p, uint64_t now)
{
	bool behind = gossip_behind(p->g, now);
	struct behind_job *b;

	if (p->bh.said && behind == p->bh.behind &&
	    (!behind || now - p->bh.said_ms < BEHIND_RENEW_MS))
		return;
	if (!p->bh.said || behind != p->bh.behind)
		log_info("- gossip %s", behind ? "catching-up" : "caught-up");
	p->bh.said = true;
	p->bh.behind = behind;
	p->bh.said_ms = now;
	b = xcalloc(1, sizeof(*b));
	b->behind = behind;
	b->until = (uint64_t)time(NULL) + BEHIND_VALID_S;
	jobs_add(p->writer, behind_run, NULL, b);
}

/* Without gossip, a snapshot an earlier run left must not route. */
void
peers_unpublish(struct store *st)
{
	struct snap none = { NULL, 0, 0 };
	uint8_t *buf = NULL;
	size_t len = 0;

	if (store_get_members(st, &buf, &len) == 1 &&
	    snap_write(st, &none) != 0)
		log_warnx("- gossip members-unpublish-failed");
	free(buf);
}

static void
members_stop(struct peers *p)
{
	free(p->ms.last.e);
	memset(&p->ms, 0, sizeof(p->ms));
}

static void
gossip_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peers *p = arg;
	uint64_t now = mm_now_ms();

	if (!p->self_revoked)
		gossip_tick(p->g, now);
	members_publish(p, now);
	behind_publish(p, now);
	if (now - p->last_housekeep >= PEER_HOUSEKEEP_MS) {
		p->last_housekeep = now;
		housekeep(p, now);
	}
	pconn_reap(p);
}

struct own_cert_ctx {
	const uint8_t *id;
	const char *site;
	uint64_t issued;
	uint8_t *env;
	size_t len;
	char name[RECORD_NAME_MAX + 1];
};

static int
own_cert_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct own_cert_ctx *oc = arg;
	uint8_t id[DKEY_ID_LEN];

	dkey_id(r->u.cert.pk, id);
	if (memcmp(id, oc->id, DKEY_ID_LEN) != 0 ||
	    strcmp(r->u.cert.site, oc->site) != 0 ||
	    (oc->env != NULL && r->u.cert.issued <= oc->issued))
		return 0;
	free(oc->env);
	oc->env = xmalloc(len);
	memcpy(oc->env, env, len);
	oc->len = len;
	oc->issued = r->u.cert.issued;
	mm_strlcpy(oc->name, r->u.cert.name, sizeof(oc->name));
	return 0;
}

struct peers *
peers_new(struct event_base *base, const struct mm_config *conf,
    struct ops *o, const struct dkey *key, int peer_fd, struct jobs *writer)
{
	struct peers *p = xcalloc(1, sizeof(*p));
	struct gossip_conf gc;
	struct own_cert_ctx oc;
	struct timeval tv = { 0, GOSSIP_TICK_MS * 1000 };
	uint64_t seed = 0;
	size_t i;

	p->base = base;
	p->conf = conf;
	p->ops = o;
	p->st = ops_store(o);
	p->writer = writer;
	pthread_mutex_init(&p->acc_lock, NULL);
	pthread_cond_init(&p->acc_checked, NULL);
	p->acc_tail = &p->acc;
	/* Without it (the thread cannot start) the writer checks. */
	p->verifier = jobs_new(base, p->st, "verifier");
	p->key = key;
	memset(&oc, 0, sizeof(oc));
	oc.id = key->id;
	oc.site = conf->site;
	if (store_foreach_cert(p->st, own_cert_cb, &oc) != 0 ||
	    oc.env == NULL)
		fatalx("gossip: no certificate of this node's key for site %s",
		    conf->site);
	if (strcmp(oc.name, conf->node_name) != 0)
		log_warnx("- gossip cert-name-mismatch cert=%s node-name=%s "
		    "(other nodes refuse records of this node: certify the "
		    "key with --name %s)", oc.name, conf->node_name,
		    conf->node_name);
	p->cert = oc.env;
	p->cert_len = oc.len;
	gossip_conf_defaults(&gc);
	gc.name = conf->node_name;
	gc.site = conf->site;
	gc.addr = conf->peer_address;
	gc.session_addr = conf->session_address;
	/* Raised on every start, so a restarted node refutes its death. */
	gc.incarnation = (uint64_t)time(NULL) * 1000 + mm_now_ms() % 1000;
	while (seed == 0)
		randombytes_buf(&seed, sizeof(seed));
	gc.seed = seed;
	gc.joining = conf->n_peers > 0;
	if ((p->g = gossip_new(&gc, &gossip_io, p)) == NULL)
		fatalx("gossip: bad settings (node-name, site or "
		    "peer-address too long)");
	ops_set_gossip(o, p->g);
	p->seeds = xcalloc(conf->n_peers + 1, sizeof(*p->seeds));
	for (i = 0; i < conf->n_peers; i++)
		p->seeds[i].addr = conf->peers[i];
	p->n_seeds = conf->n_peers;
	p->lst = evconnlistener_new(p->base, peer_accept_cb, p,
	    LEV_OPT_CLOSE_ON_FREE, -1, peer_fd);
	if (p->lst == NULL)
		fatalx("peer listener failed");
	p->tick_ev = event_new(p->base, -1, EV_PERSIST, gossip_tick_cb, p);
	evtimer_add(p->tick_ev, &tv);
	log_info("- gossip start name=%s site=%s addr=%s session=%s seeds=%zu",
	    conf->node_name, conf->site, conf->peer_address,
	    conf->session_address != NULL ? conf->session_address : "-",
	    conf->n_peers);
	return p;
}

void
peers_free(struct peers *p)
{
	if (p == NULL)
		return;
	while (p->conns != NULL)
		pconn_close(p->conns);
	pconn_reap(p);
	evconnlistener_free(p->lst);
	event_free(p->tick_ev);
	ops_set_gossip(p->ops, NULL);
	members_stop(p);
	gossip_free(p->g);
	jobs_free(p->verifier);
	pthread_mutex_destroy(&p->acc_lock);
	pthread_cond_destroy(&p->acc_checked);
	free(p->cert);
	free(p->seeds);
	free(p->out);
	free(p);
}

struct gossip *
peers_gossip(struct peers *p)
{
	return p != NULL ? p->g : NULL;
}

