/* Gossip simulator: virtual clock, virtual network, in-memory records. */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"

enum ev_kind { EV_TICK, EV_MSG };

struct ev {
	uint64_t t, order;
	enum ev_kind kind;
	uint32_t from, to;
	uint8_t *buf;
	size_t len;
};

/* What one node holds of one origin. */
struct held {
	uint8_t *have;		/* by seq - 1 */
	uint64_t cap;
	uint64_t contig;	/* highest seq with no gap below */
};

struct node {
	struct sim *s;
	uint32_t idx;
	char name[16], site[16], addr[32];
	struct gossip *g;
	bool crashed;
	uint32_t group;
	uint64_t bytes_out, bytes_in;
	struct held **held;	/* by origin index, allocated on first use */
	uint32_t *origins;	/* origins it holds something of */
	uint32_t n_origins;
};

struct rec {
	uint8_t *env;
	size_t len;
};

struct origin_log {
	struct rec *recs;	/* by seq - 1 */
	uint64_t n, cap;
};

struct sim {
	struct sim_conf conf;
	struct gossip_io io;
	uint64_t now, order, rng;
	struct ev *heap;
	size_t heap_len, heap_cap;
	struct node *nodes;
	struct origin_log *logs;
	uint8_t *filler;

	bool tracking;
	uint32_t track_origin;
	uint64_t track_seq, track_start;
	uint64_t *track_t;	/* first arrival, UINT64_MAX if none */
	uint32_t *track_hops;

	uint64_t false_deaths, false_suspicions;
};

/* ---- random, events ---------------------------------------------------- */

static uint64_t
rnd(struct sim *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double
rnd_unit(struct sim *s)
{
	return (double)(rnd(s) >> 11) / (double)(1ULL << 53);
}

static bool
ev_less(const struct ev *a, const struct ev *b)
{
	return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static void
ev_push(struct sim *s, struct ev e)
{
	size_t i;

	if (s->heap_len == s->heap_cap) {
		s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 1024;
		s->heap = xrealloc(s->heap, s->heap_cap * sizeof(*s->heap));
	}
	e.order = s->order++;
	i = s->heap_len++;
	while (i > 0 && ev_less(&e, &s->heap[(i - 1) / 2])) {
		s->heap[i] = s->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	s->heap[i] = e;
}

static struct ev
ev_pop(struct sim *s)
{
	struct ev top = s->heap[0], last = s->heap[--s->heap_len];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= s->heap_len)
			break;
		if (c + 1 < s->heap_len && ev_less(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!ev_less(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (s->heap_len > 0)
		s->heap[i] = last;
	return top;
}

static uint32_t
node_of(const struct sim *s, const char *name)
{
	char *end;
	unsigned long v;

	if (name[0] != 'n')
		return UINT32_MAX;
	v = strtoul(name + 1, &end, 10);
	if (*end != '\0' || v >= s->conf.n)
		return UINT32_MAX;
	return (uint32_t)v;
}

/* ---- records ------------------------------------------------------------ */

static struct held *
held_get(struct node *nd, uint32_t origin)
{
	if (nd->held[origin] == NULL) {
		nd->held[origin] = xcalloc(1, sizeof(struct held));
		nd->origins[nd->n_origins++] = origin;
	}
	return nd->held[origin];
}

static void
held_set(struct held *h, uint64_t seq)
{
	if (seq > h->cap) {
		uint64_t cap = h->cap ? h->cap : 16;

		while (cap < seq)
			cap *= 2;
		h->have = xrealloc(h->have, cap);
		memset(h->have + h->cap, 0, cap - h->cap);
		h->cap = cap;
	}
	h->have[seq - 1] = 1;
	while (h->contig < h->cap && h->have[h->contig])
		h->contig++;
}

static bool
held_has(const struct held *h, uint64_t seq)
{
	return h != NULL && seq >= 1 && seq <= h->cap && h->have[seq - 1];
}

/* [origin, seq, filler]: returns 0 with origin and seq, -1 if invalid. */
static int
env_parse(const struct sim *s, const uint8_t *env, size_t len,
    uint32_t *origin_r, uint64_t *seq_r)
{
	struct mm_mp_reader r;
	char origin[GOSSIP_NAME_MAX + 1];
	const uint8_t *fill;
	size_t flen;
	const struct origin_log *log;

	mm_mp_reader_init(&r, env, len);
	if (mm_mp_get_array_n(&r, 3) < 0 ||
	    mm_mp_get_str(&r, origin, GOSSIP_NAME_MAX) < 0 ||
	    mm_mp_get_uint(&r, seq_r) < 0 ||
	    mm_mp_get_bin(&r, GOSSIP_RECORD_MAX, &fill, &flen) < 0 ||
	    mm_mp_end(&r) < 0)
		return -1;
	*origin_r = node_of(s, origin);
	if (*origin_r == UINT32_MAX || *seq_r == 0)
		return -1;
	/* The "signature": only the bytes the origin made are valid. */
	log = &s->logs[*origin_r];
	if (*seq_r > log->n || log->recs[*seq_r - 1].len != len ||
	    memcmp(log->recs[*seq_r - 1].env, env, len) != 0)
		return -1;
	return 0;
}

static void
stored(struct sim *s, uint32_t node, uint32_t from, uint32_t origin,
    uint64_t seq)
{
	if (!s->tracking || origin != s->track_origin || seq != s->track_seq ||
	    s->track_t[node] != UINT64_MAX)
		return;
	s->track_t[node] = s->now;
	s->track_hops[node] = from == UINT32_MAX ? 0 :
	    s->track_hops[from] + 1;
}

/* ---- gossip io ---------------------------------------------------------- */

static void
io_send(void *arg, const char *to, const uint8_t *buf, size_t len)
{
	struct node *nd = arg;
	struct sim *s = nd->s;
	uint32_t t = node_of(s, to);
	struct ev e;

	nd->bytes_out += len;
	if (t == UINT32_MAX || nd->crashed)
		return;
	if (s->conf.loss > 0 && rnd_unit(s) < s->conf.loss)
		return;
	if (nd->group != s->nodes[t].group)
		return;
	memset(&e, 0, sizeof(e));
	e.t = s->now + s->conf.latency_ms +
	    (s->conf.jitter_ms ? rnd(s) % (s->conf.jitter_ms + 1) : 0);
	e.kind = EV_MSG;
	e.from = nd->idx;
	e.to = t;
	e.buf = xmalloc(len);
	memcpy(e.buf, buf, len);
	e.len = len;
	ev_push(s, e);
}

static size_t
io_digest(void *arg, struct gossip_digest_entry *out, size_t max)
{
	struct node *nd = arg;
	size_t n = 0;
	uint32_t i;

	for (i = 0; i < nd->n_origins && n < max; i++) {
		const struct held *h = nd->held[nd->origins[i]];

		if (h->contig == 0)
			continue;
		mm_strlcpy(out[n].origin, nd->s->nodes[nd->origins[i]].name,
		    sizeof(out[n].origin));
		out[n].seq = h->contig;
		n++;
	}
	return n;
}

static void
io_fetch(void *arg, const char *origin, uint64_t from_seq,
    gossip_emit_cb emit, void *ctx)
{
	struct node *nd = arg;
	uint32_t o = node_of(nd->s, origin);
	const struct held *h;
	uint64_t seq;

	if (o == UINT32_MAX || (h = nd->held[o]) == NULL)
		return;
	for (seq = from_seq; held_has(h, seq); seq++) {
		const struct rec *r = &nd->s->logs[o].recs[seq - 1];

		if (emit(ctx, r->env, r->len) != 0)
			break;
	}
}

static enum gossip_accept
io_accept(void *arg, const char *from, const uint8_t *env, size_t len,
    uint64_t now)
{
	struct node *nd = arg;
	struct sim *s = nd->s;
	uint32_t origin;
	uint64_t seq;
	struct held *h;

	(void)now;
	if (env_parse(s, env, len, &origin, &seq) < 0)
		return GOSSIP_ACCEPT_REJECT;
	h = held_get(nd, origin);
	if (held_has(h, seq))
		return GOSSIP_ACCEPT_DUP;
	held_set(h, seq);
	stored(s, nd->idx, node_of(s, from), origin, seq);
	return GOSSIP_ACCEPT_NEW;
}

static void
io_member(void *arg, const struct gossip_member_info *m)
{
	struct node *nd = arg;
	uint32_t subj = node_of(nd->s, m->name);

	if (subj == UINT32_MAX || nd->s->nodes[subj].crashed)
		return;
	/* A partition makes deaths real for the other side. */
	if (nd->s->nodes[subj].group != nd->group)
		return;
	if (m->state == GOSSIP_DEAD)
		nd->s->false_deaths++;
	else if (m->state == GOSSIP_SUSPECT)
		nd->s->false_suspicions++;
}

/* ---- life cycle --------------------------------------------------------- */

void
sim_conf_defaults(struct sim_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->n = 10;
	c->sites = 10;
	c->latency_ms = 10;
	c->jitter_ms = 10;
	c->tick_ms = 10;
	c->seed = 1;
	c->payload = 200;
	gossip_conf_defaults(&c->gossip);
}

struct sim *
sim_new(const struct sim_conf *c)
{
	struct sim *s = xcalloc(1, sizeof(*s));
	uint32_t i, j;

	s->conf = *c;
	if (s->conf.sites == 0)
		s->conf.sites = 1;
	s->rng = c->seed;
	s->io.send = io_send;
	s->io.digest = io_digest;
	s->io.fetch = io_fetch;
	s->io.accept = io_accept;
	s->io.member_change = io_member;
	s->nodes = xcalloc(c->n, sizeof(*s->nodes));
	s->logs = xcalloc(c->n, sizeof(*s->logs));
	s->track_t = xcalloc(c->n, sizeof(*s->track_t));
	s->track_hops = xcalloc(c->n, sizeof(*s->track_hops));
	s->filler = xcalloc(1, c->payload + 1);
	for (i = 0; i < c->payload; i++)
		s->filler[i] = (uint8_t)rnd(s);
	for (i = 0; i < c->n; i++) {
		struct node *nd = &s->nodes[i];
		struct gossip_conf gc = c->gossip;

		nd->s = s;
		nd->idx = i;
		snprintf(nd->name, sizeof(nd->name), "n%u", i);
		snprintf(nd->site, sizeof(nd->site), "s%u", i % s->conf.sites);
		snprintf(nd->addr, sizeof(nd->addr), "10.%u.%u.%u:7946",
		    (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
		nd->held = xcalloc(c->n, sizeof(*nd->held));
		nd->origins = xcalloc(c->n, sizeof(*nd->origins));
		gc.name = nd->name;
		gc.site = nd->site;
		gc.addr = nd->addr;
		gc.seed = rnd(s) | 1;
		nd->g = gossip_new(&gc, &s->io, nd);
		if (nd->g == NULL) {
			fprintf(stderr, "sim: invalid gossip configuration\n");
			abort();
		}
	}
	for (i = 0; i < c->n; i++)
		for (j = 0; j < c->n; j++)
			if (i != j)
				gossip_add_seed(s->nodes[i].g, s->nodes[j].name,
				    s->nodes[j].site, s->nodes[j].addr);
	for (i = 0; i < c->n; i++) {
		struct ev e;

		memset(&e, 0, sizeof(e));
		e.kind = EV_TICK;
		e.to = i;
		e.t = rnd(s) % c->tick_ms;
		ev_push(s, e);
	}
	return s;
}

void
sim_free(struct sim *s)
{
	uint32_t i, j;

	if (s == NULL)
		return;
	for (i = 0; i < s->heap_len; i++)
		free(s->heap[i].buf);
	free(s->heap);
	for (i = 0; i < s->conf.n; i++) {
		struct node *nd = &s->nodes[i];

		gossip_free(nd->g);
		for (j = 0; j < nd->n_origins; j++) {
			free(nd->held[nd->origins[j]]->have);
			free(nd->held[nd->origins[j]]);
		}
		free(nd->held);
		free(nd->origins);
		for (j = 0; j < s->logs[i].n; j++)
			free(s->logs[i].recs[j].env);
		free(s->logs[i].recs);
	}
	free(s->nodes);
	free(s->logs);
	free(s->track_t);
	free(s->track_hops);
	free(s->filler);
	free(s);
}

/* ---- running ------------------------------------------------------------ */

static void
step(struct sim *s, struct ev *e)
{
	struct node *nd = &s->nodes[e->to];

	s->now = e->t;
	if (e->kind == EV_TICK) {
		if (!nd->crashed)
			gossip_tick(nd->g, s->now);
		e->t = s->now + s->conf.tick_ms;
		ev_push(s, *e);
		return;
	}
	if (!nd->crashed && !s->nodes[e->from].crashed &&
	    s->nodes[e->from].group == nd->group) {
		nd->bytes_in += e->len;
		gossip_recv(nd->g, s->nodes[e->from].name, e->buf, e->len,
		    s->now);
	}
	free(e->buf);
}

uint64_t
sim_now(const struct sim *s)
{
	return s->now;
}

void
sim_run(struct sim *s, uint64_t ms)
{
	uint64_t until = s->now + ms;

	while (s->heap_len > 0 && s->heap[0].t <= until) {
		struct ev e = ev_pop(s);

		step(s, &e);
	}
	s->now = until;
}

bool
sim_run_until(struct sim *s, bool (*cond)(struct sim *, void *), void *arg,
    uint64_t max_ms, uint32_t step_ms)
{
	uint64_t until = s->now + max_ms;

	while (!cond(s, arg)) {
		if (s->now >= until)
			return false;
		sim_run(s, step_ms);
	}
	return true;
}

void
sim_set_loss(struct sim *s, double loss)
{
	s->conf.loss = loss;
}

void
sim_crash(struct sim *s, uint32_t i)
{
	s->nodes[i].crashed = true;
}

bool
sim_crashed(const struct sim *s, uint32_t i)
{
	return s->nodes[i].crashed;
}

void
sim_partition(struct sim *s, uint32_t i, uint32_t group)
{
	s->nodes[i].group = group;
}

void
sim_heal(struct sim *s)
{
	uint32_t i;

	for (i = 0; i < s->conf.n; i++)
		s->nodes[i].group = 0;
}

/* ---- records ------------------------------------------------------------ */

uint64_t
sim_author(struct sim *s, uint32_t i, bool push)
{
	struct origin_log *log = &s->logs[i];
	struct mm_mp_writer w;
	uint8_t buf[GOSSIP_RECORD_MAX];
	uint64_t seq = log->n + 1;
	struct rec *r;

	if (log->n == log->cap) {
		log->cap = log->cap ? log->cap * 2 : 16;
		log->recs = xrealloc(log->recs, log->cap * sizeof(*log->recs));
	}
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 3);
	mm_mp_put_str(&w, s->nodes[i].name);
	mm_mp_put_uint(&w, seq);
	/* Vary the filler so records differ. */
	s->filler[seq % (s->conf.payload + 1)] ^= 1;
	mm_mp_put_bin(&w, s->filler, s->conf.payload);
	r = &log->recs[log->n++];
	r->len = mm_mp_writer_len(&w);
	r->env = xmalloc(r->len);
	memcpy(r->env, buf, r->len);
	held_set(held_get(&s->nodes[i], i), seq);
	stored(s, i, UINT32_MAX, i, seq);
	if (push)
		gossip_publish(s->nodes[i].g, r->env, r->len, s->now);
	return seq;
}

bool
sim_has(const struct sim *s, uint32_t node, uint32_t origin, uint64_t seq)
{
	return held_has(s->nodes[node].held[origin], seq);
}

bool
sim_records_converged(const struct sim *s)
{
	uint32_t i, o;

	for (i = 0; i < s->conf.n; i++) {
		if (s->nodes[i].crashed)
			continue;
		for (o = 0; o < s->conf.n; o++) {
			const struct held *h = s->nodes[i].held[o];

			if (s->logs[o].n > 0 &&
			    (h == NULL || h->contig < s->logs[o].n))
				return false;
		}
	}
	return true;
}

void
sim_track(struct sim *s, uint32_t origin, uint64_t seq)
{
	uint32_t i;

	s->tracking = true;
	s->track_origin = origin;
	s->track_seq = seq;
	s->track_start = s->now;
	for (i = 0; i < s->conf.n; i++) {
		s->track_t[i] = UINT64_MAX;
		s->track_hops[i] = 0;
		if (sim_has(s, i, origin, seq))
			s->track_t[i] = s->now;
	}
}

void
sim_track_get(const struct sim *s, struct sim_track *t)
{
	uint32_t i;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < s->conf.n; i++) {
		if (s->nodes[i].crashed)
			continue;
		t->live++;
		if (s->track_t[i] == UINT64_MAX)
			continue;
		t->reached++;
		if (s->track_t[i] - s->track_start > t->last_ms)
			t->last_ms = s->track_t[i] - s->track_start;
		if (s->track_hops[i] > t->max_hops)
			t->max_hops = s->track_hops[i];
	}
}

/* ---- views -------------------------------------------------------------- */

struct gossip *
sim_gossip(struct sim *s, uint32_t i)
{
	return s->nodes[i].g;
}

const char *
sim_name(const struct sim *s, uint32_t i)
{
	return s->nodes[i].name;
}

enum gossip_state
sim_view(struct sim *s, uint32_t observer, uint32_t subject)
{
	struct gossip_member_info mi;

	if (gossip_member_get(s->nodes[observer].g, s->nodes[subject].name,
	    &mi) != 1)
		return GOSSIP_DEAD;
	return mi.state;
}

bool
sim_all_see(struct sim *s, uint32_t subject, enum gossip_state state)
{
	uint32_t i;

	for (i = 0; i < s->conf.n; i++)
		if (i != subject && !s->nodes[i].crashed &&
		    sim_view(s, i, subject) != state)
			return false;
	return true;
}

bool
sim_membership_healthy(struct sim *s)
{
	uint32_t i;

	for (i = 0; i < s->conf.n; i++)
		if (!s->nodes[i].crashed && !sim_all_see(s, i, GOSSIP_ALIVE))
			return false;
	return true;
}

uint64_t
sim_bytes_sent(const struct sim *s, uint32_t i)
{
	return s->nodes[i].bytes_out;
}

uint64_t
sim_bytes_recv(const struct sim *s, uint32_t i)
{
	return s->nodes[i].bytes_in;
}

void
sim_reset_bytes(struct sim *s)
{
	uint32_t i;

	for (i = 0; i < s->conf.n; i++)
		s->nodes[i].bytes_out = s->nodes[i].bytes_in = 0;
}

uint64_t
sim_false_deaths(const struct sim *s)
{
	return s->false_deaths;
}

uint64_t
sim_false_suspicions(const struct sim *s)
{
	return s->false_suspicions;
}
