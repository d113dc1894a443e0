/* Gossip: SWIM membership with Lifeguard, push and anti-entropy of signed
 * records. See gossip.h for the protocol. */
#include "gossip.h"

#include <stdlib.h>
#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"

#define NONE UINT32_MAX
#define SELF 0u
#define PULL_ORIGINS_MAX 256	/* origins asked in one PULL */
#define FANOUT_MAX 16
#define NACK_PERCENT 80		/* of the probe timeout, at the helper */
/* A pull not answered by then is asked again (of any peer). */
#define PULL_WAIT_MS 10000
#define DEFAULT_SEED 0x9e3779b97f4a7c15ULL

struct member {
	char *name, *site, *addr, *saddr;
	enum gossip_state state;
	uint64_t inc;
	int64_t rtt_ms;
	uint64_t last_contact;
	uint64_t susp_start, susp_deadline;
	uint32_t accuser;		/* who suspected or declared it */
	uint32_t n_accusers;		/* distinct, the first one included */
	uint32_t accusers[GOSSIP_CONFIRM_MAX + 1];
	uint32_t bcast_left;		/* transmissions of its update to go */
	uint32_t intro_left;		/* messages to it that carry our own
					 * alive update: a member that met us
					 * after our announcement had spread
					 * would never learn our site and
					 * addresses */
	bool in_bq, in_sus;
	uint32_t rejects;
	uint64_t throttled_until;
};

struct probe {
	bool active, indirect;
	uint32_t target;
	uint64_t seq, start, deadline_direct, deadline_end;
	uint32_t nacks_expected, nacks;
};

/* An indirect probe we run for a requester. */
struct pending {
	bool used;
	uint32_t requester, target;
	uint64_t seq, orig_seq, deadline;
};

struct hot {
	uint8_t *env;
	size_t len;
	uint32_t left;
	bool unpushed;			/* published, not flushed yet */
};

/* The records of one message, with the owner until it answers
 * (gossip_accept_done): what the answer needs of the message is kept. */
struct batch {
	bool used;
	uint64_t token;
	uint32_t from;
	char from_name[GOSSIP_NAME_MAX + 1];
	enum gossip_msg_type type;	/* PUSH or RECORDS */
	uint8_t *buf;			/* envelopes, then entries' origins */
	const uint8_t **envs;
	size_t *lens;
	size_t n;
	struct gossip_entry *entries;	/* RECORDS: the sender's highest */
	bool *pipelined;		/* the next batch is asked already */
	size_t n_entries;
};

/* An origin pulled and not answered yet: asked of no other peer. */
struct inflight {
	char origin[GOSSIP_NAME_MAX + 1];
	uint64_t until;			/* UINT64_MAX: records with the owner */
};

/* The most a peer said it holds of an origin, and when. */
struct known {
	char origin[GOSSIP_NAME_MAX + 1];
	uint64_t seq, seen;
};

struct want {
	const char *origin;
	size_t origin_len;
	uint64_t from_seq, gap;
};

struct gossip {
	struct gossip_conf conf;
	const struct gossip_io *io;
	void *arg;
	uint64_t rng;

	struct member *m;
	uint32_t n, cap;
	uint32_t *ht;			/* open addressing: index + 1, 0 free */
	uint32_t ht_cap;
	uint32_t n_live;		/* not dead, us included */
	uint32_t *order;		/* probe round-robin */
	uint32_t order_len, order_pos;
	uint32_t *bq;			/* members with updates to send */
	uint32_t bq_len;
	uint32_t *sus;			/* suspects with running timers */
	uint32_t sus_len;

	struct probe probe;
	struct pending pend[GOSSIP_PENDING_MAX];
	uint32_t n_pend;
	uint64_t next_seq;
	uint32_t lhm;

	struct hot hot[GOSSIP_HOT_MAX];
	uint32_t n_hot;

	bool started;
	uint64_t next_probe, next_gossip, next_sync, next_reconnect;

	uint8_t *out;			/* GOSSIP_MSG_MAX */
	uint8_t *scratch;		/* records of one answer */
	size_t scratch_used;
	size_t scratch_n;
	size_t scratch_off[GOSSIP_RECORDS_MAX];
	size_t scratch_len[GOSSIP_RECORDS_MAX];
	struct gossip_msg *msg;
	struct gossip_digest_entry *dig;	/* ours, sorted by origin */
	size_t n_dig;
	struct want *wants;
	struct gossip_slice fresh[GOSSIP_RECORDS_MAX];

	struct batch batches[GOSSIP_BATCHES_MAX];
	uint64_t next_token;
	struct inflight *inflight;	/* GOSSIP_ORIGINS_MAX */
	size_t n_inflight;
	struct known *known;		/* GOSSIP_ORIGINS_MAX */
	size_t n_known;
	bool compared;			/* with a peer, at least once */
	uint64_t first_tick;
	uint64_t last_tick;		/* when gossip_tick last ran */

	struct gossip_stats st;
};

/* ---- small helpers --------------------------------------------------- */

static uint64_t
rng_next(struct gossip *g)
{
	uint64_t z = (g->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t
rng_below(struct gossip *g, uint32_t n)
{
	return n == 0 ? 0 : (uint32_t)(rng_next(g) % n);
}

static uint64_t
hash_bytes(const void *p, size_t len)
{
	const uint8_t *s = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	while (len-- > 0) {
		h ^= *s++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdULL;
	z = (z ^ (z >> 33)) * 0xc4ceb9fe1a85ec53ULL;
	return z ^ (z >> 33);
}

/* Printable ASCII without spaces, 1..max bytes (0..max if empty_ok). */
static bool
text_valid(const char *s, size_t len, size_t max, bool empty_ok)
{
	size_t i;

	if (len > max || (len == 0 && !empty_ok))
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

static bool
slice_eq(struct gossip_slice s, const char *str)
{
	size_t l = strlen(str);

	return s.len == l && memcmp(s.p, str, l) == 0;
}

static int
slice_cmp(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

const char *
gossip_state_name(enum gossip_state s)
{
	switch (s) {
	case GOSSIP_ALIVE:
		return "alive";
	case GOSSIP_SUSPECT:
		return "suspect";
	case GOSSIP_DEAD:
		return "dead";
	}
	return "?";
}

void
gossip_conf_defaults(struct gossip_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->seed = DEFAULT_SEED;
	c->probe_interval_ms = 1000;
	c->probe_timeout_ms = 500;
	c->indirect_probes = 3;
	c->suspicion_mult = 4;
	c->suspicion_max_mult = 6;
	c->suspicion_confirm = 3;
	c->retransmit_mult = 4;
	c->gossip_interval_ms = 200;
	c->fanout = 6;
	c->push_rounds = 1;
	c->sync_interval_ms = 1000;
	c->reconnect_interval_ms = 2000;
	c->batch_bytes = 448 * 1024;
	c->reject_limit = 3;
	c->throttle_ms = 60000;
}

/* ---- member table ---------------------------------------------------- */

static uint32_t
lookup(struct gossip *g, const char *name, size_t len)
{
	uint32_t mask = g->ht_cap - 1;
	uint32_t i = (uint32_t)hash_bytes(name, len) & mask;
	uint32_t v;

	while ((v = g->ht[i]) != 0) {
		const char *mn = g->m[v - 1].name;

		if (strlen(mn) == len && memcmp(mn, name, len) == 0)
			return v - 1;
		i = (i + 1) & mask;
	}
	return NONE;
}

static uint32_t
lookup_slice(struct gossip *g, struct gossip_slice s)
{
	return lookup(g, (const char *)s.p, s.len);
}

static void
ht_insert(struct gossip *g, uint32_t idx)
{
	uint32_t mask = g->ht_cap - 1;
	const char *name = g->m[idx].name;
	uint32_t i = (uint32_t)hash_bytes(name, strlen(name)) & mask;

	while (g->ht[i] != 0)
		i = (i + 1) & mask;
	g->ht[i] = idx + 1;
}

static void
info_fill(struct gossip *g, uint32_t idx, struct gossip_member_info *mi)
{
	const struct member *m = &g->m[idx];

	mi->name = m->name;
	mi->site = m->site;
	mi->addr = m->addr;
	mi->session_addr = m->saddr;
	mi->state = m->state;
	mi->incarnation = m->inc;
	mi->rtt_ms = m->rtt_ms;
	mi->last_contact_ms = m->last_contact;
	mi->self = idx == SELF;
}

static void
notify(struct gossip *g, uint32_t idx)
{
	struct gossip_member_info mi;

	if (g->io->member_change == NULL)
		return;
	info_fill(g, idx, &mi);
	g->io->member_change(g->arg, &mi);
}

static void
set_text(char **dst, const char *s, size_t len)
{
	free(*dst);
	*dst = xstrndup(s, len);
}

static uint32_t retransmit_limit(struct gossip *g);

static uint32_t
member_add(struct gossip *g, const char *name, size_t len, const char *site,
    size_t slen, const char *addr, size_t alen, const char *saddr,
    size_t salen, uint64_t inc)
{
	struct member *m;
	uint32_t idx, j;

	if (g->n >= GOSSIP_MEMBERS_MAX)
		return NONE;
	if (g->n == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 16;
		g->m = xrealloc(g->m, g->cap * sizeof(*g->m));
		g->order = xrealloc(g->order, g->cap * sizeof(*g->order));
		g->bq = xrealloc(g->bq, g->cap * sizeof(*g->bq));
		g->sus = xrealloc(g->sus, g->cap * sizeof(*g->sus));
	}
	if ((g->n + 1) * 2 > g->ht_cap) {
		uint32_t i;

		free(g->ht);
		g->ht_cap = g->ht_cap ? g->ht_cap * 2 : 32;
		g->ht = xcalloc(g->ht_cap, sizeof(*g->ht));
		for (i = 0; i < g->n; i++)
			ht_insert(g, i);
	}
	idx = g->n++;
	m = &g->m[idx];
	memset(m, 0, sizeof(*m));
	m->name = xstrndup(name, len);
	m->site = xstrndup(site, slen);
	m->addr = xstrndup(addr, alen);
	m->saddr = xstrndup(saddr, salen);
	m->state = GOSSIP_ALIVE;
	m->inc = inc;
	m->rtt_ms = -1;
	m->accuser = SELF;
	if (idx != SELF)
		m->intro_left = retransmit_limit(g);
	ht_insert(g, idx);
	g->n_live++;
	if (idx != SELF) {
		/* A newcomer joins the probe order at a random later place. */
		g->order[g->order_len++] = idx;
		if (g->order_len - g->order_pos > 1) {
			uint32_t t;

			j = g->order_pos + rng_below(g, g->order_len - g->order_pos);
			t = g->order[j];
			g->order[j] = g->order[g->order_len - 1];
			g->order[g->order_len - 1] = t;
		}
	}
	return idx;
}

static void
sus_remove(struct gossip *g, uint32_t idx)
{
	uint32_t i;

	if (!g->m[idx].in_sus)
		return;
	for (i = 0; i < g->sus_len; i++)
		if (g->sus[i] == idx) {
			g->sus[i] = g->sus[--g->sus_len];
			break;
		}
	g->m[idx].in_sus = false;
}

static void
set_state(struct gossip *g, uint32_t idx, enum gossip_state s)
{
	struct member *m = &g->m[idx];

	if (m->state == GOSSIP_DEAD && s != GOSSIP_DEAD)
		g->n_live++;
	else if (m->state != GOSSIP_DEAD && s == GOSSIP_DEAD)
		g->n_live--;
	if (s != GOSSIP_SUSPECT)
		sus_remove(g, idx);
	else if (!m->in_sus) {
		g->sus[g->sus_len++] = idx;
		m->in_sus = true;
	}
	m->state = s;
}

static uint32_t
retransmit_limit(struct gossip *g)
{
	uint32_t l = 0;
	uint64_t x = 1;

	while (x < (uint64_t)g->n_live + 1) {
		x *= 10;
		l++;
	}
	if (l == 0)
		l = 1;
	return g->conf.retransmit_mult * l;
}

/* Queue the member's current state for gossip. */
static void
bcast(struct gossip *g, uint32_t idx)
{
	struct member *m = &g->m[idx];

	m->bcast_left = retransmit_limit(g);
	if (!m->in_bq) {
		g->bq[g->bq_len++] = idx;
		m->in_bq = true;
	}
}

static bool
throttled(struct gossip *g, uint32_t idx, uint64_t now)
{
	return idx != NONE && g->m[idx].throttled_until > now;
}

/* ---- suspicion ------------------------------------------------------- */

/* Natural logarithm for x > 0, without libm: x = m * 2^e, m in [1, 2),
 * ln m = 2 atanh((m - 1) / (m + 1)). */
static double
ln(double x)
{
	double y, y2, term, sum = 0;
	int e = 0, i;

	while (x >= 2) {
		x /= 2;
		e++;
	}
	while (x < 1) {
		x *= 2;
		e--;
	}
	y = (x - 1) / (x + 1);
	y2 = y * y;
	term = y;
	for (i = 1; i < 40; i += 2) {
		sum += term / i;
		term *= y2;
	}
	return 2 * sum + e * 0.69314718055994530942;
}

static uint64_t
suspicion_timeout(struct gossip *g, uint32_t confirmations)
{
	double scale = g->n_live > 10 ? ln((double)g->n_live) /
	    ln(10.0) : 1.0;
	double min = g->conf.suspicion_mult * scale * g->conf.probe_interval_ms;
	double max = g->conf.suspicion_max_mult * min;
	uint32_t k = g->conf.suspicion_confirm;
	double t;

	if (g->n_live < 2 + k)
		k = g->n_live > 2 ? g->n_live - 2 : 0;
	if (k < 1)
		return (uint64_t)min;
	if (confirmations > k)
		confirmations = k;
	t = max - (max - min) * ln((double)confirmations + 1) /
	    ln((double)k + 1);
	return (uint64_t)(t < min ? min : t);
}

/* ---- encoding -------------------------------------------------------- */

static void
begin(struct gossip *g, struct mm_mp_writer *w, uint32_t fields,
    enum gossip_msg_type type)
{
	mm_mp_writer_init(w, g->out, GOSSIP_MSG_MAX);
	mm_mp_put_array(w, fields);
	mm_mp_put_uint(w, GOSSIP_VERSION);
	mm_mp_put_uint(w, type);
}

static void
put_update(struct gossip *g, struct mm_mp_writer *w, uint32_t idx)
{
	const struct member *m = &g->m[idx];

	if (m->state == GOSSIP_ALIVE) {
		mm_mp_put_array(w, 6);
		mm_mp_put_uint(w, GUPD_ALIVE);
		mm_mp_put_str(w, m->name);
		mm_mp_put_uint(w, m->inc);
		mm_mp_put_str(w, m->site);
		mm_mp_put_str(w, m->addr);
		mm_mp_put_str(w, m->saddr);
	} else {
		mm_mp_put_array(w, 4);
		mm_mp_put_uint(w, m->state == GOSSIP_SUSPECT ? GUPD_SUSPECT :
		    GUPD_DEAD);
		mm_mp_put_str(w, m->name);
		mm_mp_put_uint(w, m->inc);
		mm_mp_put_str(w, g->m[m->accuser].name);
	}
}

/* Piggyback: what we doubt about the receiver first, then the updates
 * sent least often so far. */
static void
put_updates(struct gossip *g, struct mm_mp_writer *w, uint32_t about)
{
	uint32_t pick[GOSSIP_PIGGYBACK_MAX];
	uint32_t n = 0, i, j;

	if (about != NONE && g->m[about].state != GOSSIP_ALIVE)
		pick[n++] = about;
	if (about != NONE && about != SELF && g->m[about].intro_left > 0) {
		g->m[about].intro_left--;
		pick[n++] = SELF;
	}
	while (n < GOSSIP_PIGGYBACK_MAX) {
		uint32_t best = NONE;

		for (i = 0; i < g->bq_len; i++) {
			uint32_t c = g->bq[i];

			for (j = 0; j < n && pick[j] != c; j++)
				;
			if (j < n || g->m[c].bcast_left == 0)
				continue;
			if (best == NONE ||
			    g->m[c].bcast_left > g->m[best].bcast_left)
				best = c;
		}
		if (best == NONE)
			break;
		pick[n++] = best;
	}
	mm_mp_put_array(w, n);
	for (i = 0; i < n; i++) {
		put_update(g, w, pick[i]);
		if (g->m[pick[i]].bcast_left > 0)
			g->m[pick[i]].bcast_left--;
	}
	for (i = 0; i < g->bq_len;) {
		uint32_t c = g->bq[i];

		if (g->m[c].bcast_left == 0) {
			g->m[c].in_bq = false;
			g->bq[i] = g->bq[--g->bq_len];
		} else
			i++;
	}
}

static void
send_out(struct gossip *g, uint32_t to, struct mm_mp_writer *w)
{
	size_t len = mm_mp_writer_len(w);

	if (!mm_mp_writer_ok(w) || to == SELF || to == NONE)
		return;
	g->st.msgs_sent++;
	g->st.bytes_sent += len;
	g->io->send(g->arg, g->m[to].name, g->out, len);
}

static void
send_ping(struct gossip *g, uint32_t to, uint64_t seq)
{
	struct mm_mp_writer w;

	begin(g, &w, 5, GMSG_PING);
	mm_mp_put_uint(&w, seq);
	mm_mp_put_str(&w, g->m[to].name);
	put_updates(g, &w, to);
	send_out(g, to, &w);
}

static void
send_seq(struct gossip *g, uint32_t to, enum gossip_msg_type type,
    uint64_t seq)
{
	struct mm_mp_writer w;

	begin(g, &w, 4, type);
	mm_mp_put_uint(&w, seq);
	put_updates(g, &w, to);
	send_out(g, to, &w);
}

/* A PUSH of updates and the given envelopes (NULL: the hot list). */
static void
send_push(struct gossip *g, uint32_t to, const struct gossip_slice *recs,
    size_t n_recs)
{
	struct mm_mp_writer w;
	size_t i, n, budget = GOSSIP_MSG_MAX - 8192, used = 0;

	begin(g, &w, 4, GMSG_PUSH);
	put_updates(g, &w, to);
	if (recs == NULL) {
		for (n = 0; n < g->n_hot && used + g->hot[n].len +
		    8 <= budget; n++)
			used += g->hot[n].len + 8;
		mm_mp_put_array(&w, (uint32_t)n);
		for (i = 0; i < n; i++)
			mm_mp_put_bin(&w, g->hot[i].env, g->hot[i].len);
	} else {
		for (n = 0; n < n_recs && used + recs[n].len + 8 <= budget; n++)
			used += recs[n].len + 8;
		mm_mp_put_array(&w, (uint32_t)n);
		for (i = 0; i < n; i++)
			mm_mp_put_bin(&w, recs[i].p, recs[i].len);
	}
	g->st.pushes_sent++;
	send_out(g, to, &w);
}

/* ---- peer choice ----------------------------------------------------- */

static bool
peer_ok(struct gossip *g, uint32_t i, uint32_t excl)
{
	return i != SELF && i != excl && g->m[i].state != GOSSIP_DEAD;
}

/* Up to k distinct live peers other than excl into out; returns count. */
static uint32_t
pick_peers(struct gossip *g, uint32_t k, uint32_t excl, uint32_t *out)
{
	uint32_t n = 0, tries, i, j;

	if (k == 0)
		return 0;
	if (g->n > 4 * k + 4) {
		for (tries = 0; tries < 8 * k && n < k; tries++) {
			uint32_t c = 1 + rng_below(g, g->n - 1);

			if (!peer_ok(g, c, excl))
				continue;
			for (j = 0; j < n && out[j] != c; j++)
				;
			if (j == n)
				out[n++] = c;
		}
		if (n == k)
			return n;
	}
	/* Few members, or mostly dead ones: choose among all candidates by
	 * reservoir sampling. */
	{
		uint32_t seen = 0;

		n = 0;
		for (i = 1; i < g->n; i++) {
			if (!peer_ok(g, i, excl))
				continue;
			seen++;
			if (n < k)
				out[n++] = i;
			else {
				j = rng_below(g, seen);
				if (j < k)
					out[j] = i;
			}
		}
	}
	return n;
}

static uint32_t
next_probe_target(struct gossip *g)
{
	uint32_t guard;

	for (guard = 0; guard <= g->n + 1; guard++) {
		uint32_t idx;

		if (g->order_pos >= g->order_len) {
			uint32_t i;

			g->order_len = 0;
			for (i = 1; i < g->n; i++)
				if (g->m[i].state != GOSSIP_DEAD)
					g->order[g->order_len++] = i;
			for (i = g->order_len; i > 1; i--) {
				uint32_t j = rng_below(g, i), t = g->order[i - 1];

				g->order[i - 1] = g->order[j];
				g->order[j] = t;
			}
			g->order_pos = 0;
			if (g->order_len == 0)
				return NONE;
		}
		idx = g->order[g->order_pos++];
		if (g->m[idx].state != GOSSIP_DEAD)
			return idx;
	}
	return NONE;
}

/* ---- membership updates ---------------------------------------------- */

static void
refute(struct gossip *g, uint64_t inc)
{
	struct member *me = &g->m[SELF];

	me->inc = (inc > me->inc ? inc : me->inc) + 1;
	bcast(g, SELF);
	if (g->lhm < GOSSIP_LHM_MAX)
		g->lhm++;
	g->st.refutations++;
}

static void
apply_alive(struct gossip *g, const struct gossip_update *u)
{
	uint32_t idx = lookup_slice(g, u->name);
	struct member *m;

	if (idx == SELF) {
		/* Someone holds a newer incarnation of us: an earlier life. */
		if (u->incarnation > g->m[SELF].inc)
			refute(g, u->incarnation);
		return;
	}
	if (idx == NONE) {
		idx = member_add(g, (const char *)u->name.p, u->name.len,
		    (const char *)u->site.p, u->site.len,
		    (const char *)u->addr.p, u->addr.len,
		    (const char *)u->session_addr.p, u->session_addr.len,
		    u->incarnation);
		if (idx != NONE) {
			bcast(g, idx);
			notify(g, idx);
		}
		return;
	}
	m = &g->m[idx];
	if (u->incarnation > m->inc) {
		bool changed = m->state != GOSSIP_ALIVE;

		m->inc = u->incarnation;
		set_text(&m->site, (const char *)u->site.p, u->site.len);
		set_text(&m->addr, (const char *)u->addr.p, u->addr.len);
		set_text(&m->saddr, (const char *)u->session_addr.p,
		    u->session_addr.len);
		set_state(g, idx, GOSSIP_ALIVE);
		bcast(g, idx);
		if (changed)
			notify(g, idx);
	} else if (m->site[0] == '\0' && u->site.len > 0) {
		/* A member first known only by name (a seed, or a peer met
		 * on an incoming connection) learns its site and addresses
		 * from any announcement: they say who the node is, not
		 * whether it lives, so an older incarnation will do. */
		set_text(&m->site, (const char *)u->site.p, u->site.len);
		set_text(&m->addr, (const char *)u->addr.p, u->addr.len);
		set_text(&m->saddr, (const char *)u->session_addr.p,
		    u->session_addr.len);
	}
}

static void
suspect(struct gossip *g, uint32_t idx, uint64_t inc, uint32_t from,
    uint64_t now)
{
	struct member *m = &g->m[idx];
	uint32_t i;

	if (m->state == GOSSIP_DEAD || inc < m->inc)
		return;
	if (m->state == GOSSIP_SUSPECT && inc == m->inc) {
		/* An independent confirmation shortens the timer. */
		for (i = 0; i < m->n_accusers; i++)
			if (m->accusers[i] == from)
				return;
		if (m->n_accusers > g->conf.suspicion_confirm)
			return;
		m->accusers[m->n_accusers++] = from;
		m->susp_deadline = m->susp_start +
		    suspicion_timeout(g, m->n_accusers - 1);
		m->accuser = from;
		bcast(g, idx);
		return;
	}
	m->inc = inc;
	m->accuser = from;
	m->accusers[0] = from;
	m->n_accusers = 1;
	m->susp_start = now;
	set_state(g, idx, GOSSIP_SUSPECT);
	m->susp_deadline = now + suspicion_timeout(g, 0);
	g->st.suspicions++;
	bcast(g, idx);
	notify(g, idx);
	if (from == SELF)
		/* Tell the member at once, so it can refute. */
		send_push(g, idx, NULL, 0);
}

static void
declare_dead(struct gossip *g, uint32_t idx, uint64_t inc, uint32_t from)
{
	struct member *m = &g->m[idx];

	if (m->state == GOSSIP_DEAD || inc < m->inc)
		return;
	m->inc = inc;
	m->accuser = from;
	set_state(g, idx, GOSSIP_DEAD);
	g->st.deaths++;
	bcast(g, idx);
	notify(g, idx);
	if (g->probe.active && g->probe.target == idx)
		g->probe.active = false;
}

/* sender stands in for an accuser we do not know. */
static void
apply_update(struct gossip *g, const struct gossip_update *u,
    uint32_t sender, uint64_t now)
{
	uint32_t idx, from;

	if (u->kind == GUPD_ALIVE) {
		apply_alive(g, u);
		return;
	}
	idx = lookup_slice(g, u->name);
	if (idx == NONE)
		return;
	if (idx == SELF) {
		if (u->incarnation >= g->m[SELF].inc)
			refute(g, u->incarnation);
		else if (!g->m[SELF].in_bq)
			/* Someone missed our last refutation: repeat it. */
			bcast(g, SELF);
		return;
	}
	from = lookup_slice(g, u->from);
	if (from == NONE)
		from = sender;
	if (from == NONE)
		return;
	if (u->kind == GUPD_SUSPECT)
		suspect(g, idx, u->incarnation, from, now);
	else
		declare_dead(g, idx, u->incarnation, from);
}

/* ---- digests --------------------------------------------------------- */

static int
dig_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gossip_digest_entry *)a)->origin,
	    ((const struct gossip_digest_entry *)b)->origin);
}

static void
load_digest(struct gossip *g)
{
	size_t i, n;

	n = g->io->digest(g->arg, g->dig, GOSSIP_ORIGINS_MAX);
	if (n > GOSSIP_ORIGINS_MAX)
		n = GOSSIP_ORIGINS_MAX;
	for (i = 0; i < n; i++)
		g->dig[i].origin[GOSSIP_NAME_MAX] = '\0';
	qsort(g->dig, n, sizeof(*g->dig), dig_cmp);
	g->n_dig = n;
}

static uint64_t
digest_seq(struct gossip *g, const char *origin, size_t len)
{
	size_t lo = 0, hi = g->n_dig;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = slice_cmp(origin, len, g->dig[mid].origin);

		if (c == 0)
			return g->dig[mid].seq;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

static uint64_t
digest_hash(struct gossip *g, uint64_t *count_r)
{
	uint64_t h = 0, c = 0;
	size_t i;

	for (i = 0; i < g->n_dig; i++) {
		const char *o = g->dig[i].origin;

		if (g->dig[i].seq == 0)
			continue;
		h += mix64(hash_bytes(o, strlen(o)) ^
		    (g->dig[i].seq * 0x9e3779b97f4a7c15ULL));
		c++;
	}
	*count_r = c;
	return h;
}

static void
send_digest(struct gossip *g, uint32_t to, bool reply)
{
	struct mm_mp_writer w;
	size_t i, n = 0;

	for (i = 0; i < g->n_dig; i++)
		if (g->dig[i].seq > 0)
			n++;
	begin(g, &w, 4, GMSG_DIGEST);
	mm_mp_put_bool(&w, reply);
	mm_mp_put_array(&w, (uint32_t)n);
	for (i = 0; i < g->n_dig; i++) {
		if (g->dig[i].seq == 0)
			continue;
		mm_mp_put_array(&w, 2);
		mm_mp_put_str(&w, g->dig[i].origin);
		mm_mp_put_uint(&w, g->dig[i].seq);
	}
	send_out(g, to, &w);
}

static int
want_cmp(const void *a, const void *b)
{
	const struct want *x = a, *y = b;

	return x->gap < y->gap ? 1 : x->gap > y->gap ? -1 : 0;
}

/* ---- what peers hold ------------------------------------------------- */

static struct inflight *
inflight_find(struct gossip *g, const char *origin, size_t len)
{
	size_t i;

	for (i = 0; i < g->n_inflight; i++)
		if (slice_cmp(origin, len, g->inflight[i].origin) == 0)
			return &g->inflight[i];
	return NULL;
}

/* Marks origin as pulled until until (0: no longer). */
static void
inflight_set(struct gossip *g, const char *origin, size_t len,
    uint64_t until)
{
	struct inflight *f = inflight_find(g, origin, len);

	if (f == NULL) {
		if (until == 0 || g->n_inflight >= GOSSIP_ORIGINS_MAX)
			return;
		f = &g->inflight[g->n_inflight++];
		memcpy(f->origin, origin, len);
		f->origin[len] = '\0';
	}
	if (until != 0) {
		f->until = until;
		return;
	}
	*f = g->inflight[--g->n_inflight];
}

/* Notes that a peer holds origin up to seq (its digest's contiguous mark
 * or the highest it has). */
static void
known_note(struct gossip *g, const char *origin, size_t len, uint64_t seq,
    uint64_t now)
{
	struct known *k = NULL;
	size_t i;

	for (i = 0; i < g->n_known; i++)
		if (slice_cmp(origin, len, g->known[i].origin) == 0) {
			k = &g->known[i];
			break;
		}
	if (k == NULL) {
		if (g->n_known >= GOSSIP_ORIGINS_MAX)
			return;
		k = &g->known[g->n_known++];
		memcpy(k->origin, origin, len);
		k->origin[len] = '\0';
		k->seq = 0;
	}
	if (seq >= k->seq || now - k->seen >= GOSSIP_BEHIND_TTL_MS)
		k->seq = seq;
	k->seen = now;
}

/* Sends a PULL for the first n of g->wants (at most PULL_ORIGINS_MAX) to
 * from; they are in flight from now on. Returns how many were asked. */
static size_t
send_pull(struct gossip *g, uint32_t from, size_t n, uint64_t now)
{
	struct mm_mp_writer w;
	size_t i;

	if (n > PULL_ORIGINS_MAX)
		n = PULL_ORIGINS_MAX;
	begin(g, &w, 3, GMSG_PULL);
	mm_mp_put_array(&w, (uint32_t)n);
	for (i = 0; i < n; i++) {
		mm_mp_put_array(&w, 2);
		mm_mp_put_strn(&w, g->wants[i].origin, g->wants[i].origin_len);
		mm_mp_put_uint(&w, g->wants[i].from_seq);
		inflight_set(g, g->wants[i].origin, g->wants[i].origin_len,
		    now + PULL_WAIT_MS);
	}
	g->st.pulls_sent++;
	send_out(g, from, &w);
	return n;
}

/* From the peer's (origin, highest) entries and our digest (loaded), ask
 * for what we lack, most stale origins first, and of no two peers at once.
 * Returns origins asked. */
static size_t
pull_wants(struct gossip *g, uint32_t from, const struct gossip_entry *ents,
    size_t n_ents, uint64_t now)
{
	size_t i, n = 0;

	for (i = 0; i < n_ents; i++) {
		const struct gossip_entry *e = &ents[i];
		const char *o = (const char *)e->origin.p;
		uint64_t mine = digest_seq(g, o, e->origin.len);
		struct inflight *f;

		known_note(g, o, e->origin.len, e->seq, now);
		if (e->seq <= mine)
			continue;
		if ((f = inflight_find(g, o, e->origin.len)) != NULL &&
		    f->until > now)
			continue;
		g->wants[n].origin = o;
		g->wants[n].origin_len = e->origin.len;
		g->wants[n].from_seq = mine + 1;
		g->wants[n].gap = e->seq - mine;
		n++;
	}
	if (n == 0)
		return 0;
	qsort(g->wants, n, sizeof(*g->wants), want_cmp);
	return send_pull(g, from, n, now);
}

static int
emit_record(void *ctx, const uint8_t *env, size_t len)
{
	struct gossip *g = ctx;

	if (len == 0 || len > GOSSIP_RECORD_MAX)
		return 0;	/* never ours to send */
	if (g->scratch_n >= GOSSIP_RECORDS_MAX ||
	    g->scratch_used + len > g->conf.batch_bytes)
		return 1;
	memcpy(g->scratch + g->scratch_used, env, len);
	g->scratch_off[g->scratch_n] = g->scratch_used;
	g->scratch_len[g->scratch_n] = len;
	g->scratch_n++;
	g->scratch_used += len;
	return 0;
}

static void
answer_pull(struct gossip *g, uint32_t from, const struct gossip_msg *msg)
{
	struct mm_mp_writer w;
	char origin[GOSSIP_NAME_MAX + 1];
	uint64_t through[PULL_ORIGINS_MAX];
	size_t i, n;

	g->scratch_used = g->scratch_n = 0;
	n = msg->n_entries < PULL_ORIGINS_MAX ? msg->n_entries :
	    PULL_ORIGINS_MAX;
	memset(through, 0, n * sizeof(*through));
	for (i = 0; i < n; i++) {
		const struct gossip_entry *e = &msg->entries[i];
		uint64_t from_seq = e->seq == 0 ? 1 : e->seq;
		size_t before = g->scratch_n;

		memcpy(origin, e->origin.p, e->origin.len);
		origin[e->origin.len] = '\0';
		g->io->fetch(g->arg, origin, from_seq, emit_record, g);
		/* fetch emits from from_seq on without a gap. */
		if (g->scratch_n > before)
			through[i] = from_seq + (g->scratch_n - before) - 1;
		if (g->scratch_n >= GOSSIP_RECORDS_MAX ||
		    g->scratch_used + GOSSIP_RECORD_MAX > g->conf.batch_bytes)
			break;
	}
	load_digest(g);
	begin(g, &w, 4, GMSG_RECORDS);
	mm_mp_put_array(&w, (uint32_t)g->scratch_n);
	for (i = 0; i < g->scratch_n; i++)
		mm_mp_put_bin(&w, g->scratch + g->scratch_off[i],
		    g->scratch_len[i]);
	mm_mp_put_array(&w, (uint32_t)n);
	for (i = 0; i < n; i++) {
		const struct gossip_entry *e = &msg->entries[i];

		mm_mp_put_array(&w, 3);
		mm_mp_put_strn(&w, (const char *)e->origin.p, e->origin.len);
		mm_mp_put_uint(&w, digest_seq(g, (const char *)e->origin.p,
		    e->origin.len));
		mm_mp_put_uint(&w, through[i]);
	}
	g->st.records_sent += g->scratch_n;
	send_out(g, from, &w);
}

/* ---- records --------------------------------------------------------- */

static void
hot_add(struct gossip *g, const uint8_t *env, size_t len, bool unpushed)
{
	struct hot *h;

	if (g->conf.push_rounds == 0 && !unpushed)
		return;
	if (g->n_hot == GOSSIP_HOT_MAX) {
		/* The oldest one is left to anti-entropy. */
		free(g->hot[0].env);
		memmove(&g->hot[0], &g->hot[1], (GOSSIP_HOT_MAX - 1) *
		    sizeof(g->hot[0]));
		g->n_hot--;
	}
	h = &g->hot[g->n_hot++];
	h->env = xmalloc(len);
	memcpy(h->env, env, len);
	h->len = len;
	h->left = g->conf.push_rounds;
	h->unpushed = unpushed;
}

static void
count_reject(struct gossip *g, uint32_t from, uint64_t now)
{
	struct member *m;

	g->st.records_rejected++;
	if (from == NONE)
		return;
	m = &g->m[from];
	if (++m->rejects >= g->conf.reject_limit) {
		m->rejects = 0;
		m->throttled_until = now + g->conf.throttle_ms;
		g->st.throttles++;
	}
}

static void
batch_clear(struct batch *b)
{
	free(b->buf);
	free(b->envs);
	free(b->lens);
	free(b->entries);
	free(b->pipelined);
	memset(b, 0, sizeof(*b));
}

/* Copies the records of msg (and, for RECORDS, its entries) into a free
 * batch; NULL when the owner holds GOSSIP_BATCHES_MAX already. */
static struct batch *
batch_new(struct gossip *g, uint32_t from, const char *from_name,
    const struct gossip_msg *msg)
{
	struct batch *b = NULL;
	size_t i, size = 0, off = 0;

	for (i = 0; i < GOSSIP_BATCHES_MAX; i++)
		if (!g->batches[i].used) {
			b = &g->batches[i];
			break;
		}
	if (b == NULL)
		return NULL;
	for (i = 0; i < msg->n_records; i++)
		size += msg->records[i].len;
	for (i = 0; i < msg->n_entries; i++)
		size += msg->entries[i].origin.len;
	b->used = true;
	b->token = ++g->next_token;
	b->from = from;
	mm_strlcpy(b->from_name, from_name, sizeof(b->from_name));
	b->type = msg->type;
	b->buf = xmalloc(size > 0 ? size : 1);
	b->n = msg->n_records;
	b->envs = xcalloc(b->n + 1, sizeof(*b->envs));
	b->lens = xcalloc(b->n + 1, sizeof(*b->lens));
	for (i = 0; i < b->n; i++) {
		memcpy(b->buf + off, msg->records[i].p, msg->records[i].len);
		b->envs[i] = b->buf + off;
		b->lens[i] = msg->records[i].len;
		off += msg->records[i].len;
	}
	if (msg->type == GMSG_RECORDS) {
		b->n_entries = msg->n_entries;
		b->entries = xcalloc(b->n_entries + 1, sizeof(*b->entries));
		b->pipelined = xcalloc(b->n_entries + 1,
		    sizeof(*b->pipelined));
		for (i = 0; i < b->n_entries; i++) {
			const struct gossip_entry *e = &msg->entries[i];

			memcpy(b->buf + off, e->origin.p, e->origin.len);
			b->entries[i].origin.p = b->buf + off;
			b->entries[i].origin.len = e->origin.len;
			b->entries[i].seq = e->seq;
			b->entries[i].through = e->through;
			off += e->origin.len;
		}
	}
	return b;
}

static size_t
batches_used(const struct gossip *g)
{
	size_t i, n = 0;

	for (i = 0; i < GOSSIP_BATCHES_MAX; i++)
		n += g->batches[i].used;
	return n;
}

/* Pipelining: while the owner checks b, the sender gets the pull for
 * what follows b in each origin it has more of. */
static void
pull_next(struct gossip *g, struct batch *b, uint64_t now)
{
	size_t i, n = 0;

	for (i = 0; i < b->n_entries && n < PULL_ORIGINS_MAX; i++) {
		const struct gossip_entry *e = &b->entries[i];

		if (e->through == 0 || e->seq <= e->through)
			continue;
		b->pipelined[i] = true;
		g->wants[n].origin = (const char *)e->origin.p;
		g->wants[n].origin_len = e->origin.len;
		g->wants[n].from_seq = e->through + 1;
		g->wants[n].gap = e->seq - e->through;
		n++;
	}
	if (n > 0)
		send_pull(g, b->from, n, now);
}

/* Hands msg's records to the owner; the rest happens in
 * gossip_accept_done. A busy owner drops them: anti-entropy brings them
 * again. */
static void
accept_records(struct gossip *g, const char *from_name, uint32_t from,
    const struct gossip_msg *msg, uint64_t now)
{
	struct batch *b;
	enum gossip_accept *res;
	uint64_t token;
	size_t i;

	if (msg->n_records == 0) {
		/* The peer has no more of what we asked: ask elsewhere. */
		for (i = 0; i < msg->n_entries; i++) {
			const struct gossip_entry *e = &msg->entries[i];

			inflight_set(g, (const char *)e->origin.p,
			    e->origin.len, 0);
			known_note(g, (const char *)e->origin.p, e->origin.len,
			    e->seq, now);
		}
		return;
	}
	if (throttled(g, from, now)) {
		g->st.records_ignored += msg->n_records;
		return;
	}
	if ((b = batch_new(g, from, from_name, msg)) == NULL) {
		g->st.batches_dropped++;
		g->st.records_ignored += msg->n_records;
		for (i = 0; i < msg->n_entries; i++)
			inflight_set(g, (const char *)msg->entries[i].origin.p,
			    msg->entries[i].origin.len, 0);
		return;
	}
	/* While the owner has them, nobody else is asked for these... */
	for (i = 0; i < b->n_entries; i++)
		inflight_set(g, (const char *)b->entries[i].origin.p,
		    b->entries[i].origin.len, UINT64_MAX);
	/* ...and the sender is asked for what follows at once. */
	if (b->type == GMSG_RECORDS && from != NONE &&
	    batches_used(g) < GOSSIP_BATCHES_MAX - 1)
		pull_next(g, b, now);
	token = b->token;
	if (g->io->accept_batch != NULL) {
		g->io->accept_batch(g->arg, b->from_name, b->envs, b->lens,
		    b->n, now, token);
		return;
	}
	res = xcalloc(b->n + 1, sizeof(*res));
	for (i = 0; i < b->n; i++)
		res[i] = g->io->accept(g->arg, b->from_name, b->envs[i],
		    b->lens[i], now);
	gossip_accept_done(g, token, res, now);
	free(res);
}

void
gossip_accept_done(struct gossip *g, uint64_t token,
    const enum gossip_accept *results, uint64_t now)
{
	struct batch *b = NULL;
	uint32_t peers[FANOUT_MAX], np;
	size_t i, n = 0;

	for (i = 0; i < GOSSIP_BATCHES_MAX; i++)
		if (g->batches[i].used && g->batches[i].token == token) {
			b = &g->batches[i];
			break;
		}
	if (b == NULL)
		return;
	/* The member table may have moved since: find the sender again. */
	b->from = lookup(g, b->from_name, strlen(b->from_name));
	for (i = 0; i < b->n; i++) {
		switch (results[i]) {
		case GOSSIP_ACCEPT_NEW:
			g->st.records_new++;
			g->fresh[n].p = b->envs[i];
			g->fresh[n].len = b->lens[i];
			n++;
			break;
		case GOSSIP_ACCEPT_DUP:
			g->st.records_dup++;
			break;
		default:
			count_reject(g, b->from, now);
			break;
		}
	}
	if (b->type == GMSG_PUSH && n > 0) {
		/* Infection style: what was new here goes on at once. */
		for (i = 0; i < n; i++)
			hot_add(g, g->fresh[i].p, g->fresh[i].len, false);
		np = pick_peers(g, g->conf.fanout, b->from, peers);
		for (i = 0; i < np; i++)
			send_push(g, peers[i], g->fresh, n);
	}
	if (b->type == GMSG_RECORDS) {
		for (i = 0; i < b->n_entries; i++)
			if (!b->pipelined[i])
				inflight_set(g, (const char *)
				    b->entries[i].origin.p,
				    b->entries[i].origin.len, 0);
		/* Go on while the peer still has more and we made
		 * progress. */
		load_digest(g);
		if (b->from != NONE && b->from != SELF && n > 0 &&
		    !throttled(g, b->from, now))
			pull_wants(g, b->from, b->entries, b->n_entries, now);
		else
			for (i = 0; i < b->n_entries; i++)
				known_note(g, (const char *)
				    b->entries[i].origin.p,
				    b->entries[i].origin.len,
				    b->entries[i].seq, now);
	}
	batch_clear(b);
}

/* ---- receiving ------------------------------------------------------- */

static void
on_ping_req(struct gossip *g, uint32_t from, const struct gossip_msg *msg,
    uint64_t now)
{
	uint32_t target = lookup_slice(g, msg->target), i;
	struct pending *p = NULL;

	if (target == NONE || target == SELF || from == NONE) {
		g->st.unexpected++;
		return;
	}
	for (i = 0; i < GOSSIP_PENDING_MAX; i++)
		if (!g->pend[i].used) {
			p = &g->pend[i];
			break;
		}
	if (p == NULL)
		return;		/* busy: the requester counts a missed NACK */
	p->used = true;
	p->requester = from;
	p->target = target;
	p->seq = ++g->next_seq;
	p->orig_seq = msg->seq;
	p->deadline = now + (uint64_t)g->conf.probe_timeout_ms *
	    NACK_PERCENT / 100;
	g->n_pend++;
	send_ping(g, target, p->seq);
}

static void
on_ack(struct gossip *g, uint32_t from, const struct gossip_msg *msg,
    uint64_t now)
{
	uint32_t i;

	if (g->probe.active && msg->seq == g->probe.seq) {
		if (from == g->probe.target)
			g->m[from].rtt_ms = (int64_t)(now - g->probe.start);
		g->probe.active = false;
		if (g->lhm > 0)
			g->lhm--;
		return;
	}
	for (i = 0; i < GOSSIP_PENDING_MAX && g->n_pend > 0; i++) {
		struct pending *p = &g->pend[i];

		if (p->used && p->seq == msg->seq && p->target == from) {
			p->used = false;
			g->n_pend--;
			send_seq(g, p->requester, GMSG_ACK, p->orig_seq);
			return;
		}
	}
}

static void
on_digest(struct gossip *g, uint32_t from, const struct gossip_msg *msg,
    uint64_t now)
{
	size_t i, covered = 0, mine = 0;

	load_digest(g);
	for (i = 0; i < msg->n_entries; i++) {
		const struct gossip_entry *e = &msg->entries[i];
		uint64_t s = digest_seq(g, (const char *)e->origin.p,
		    e->origin.len);

		if (s > 0 && e->seq >= s)
			covered++;
	}
	for (i = 0; i < g->n_dig; i++)
		if (g->dig[i].seq > 0)
			mine++;
	g->compared = true;
	if (!throttled(g, from, now))
		pull_wants(g, from, msg->entries, msg->n_entries, now);
	else
		for (i = 0; i < msg->n_entries; i++)
			known_note(g, (const char *)msg->entries[i].origin.p,
			    msg->entries[i].origin.len, msg->entries[i].seq,
			    now);
	if (msg->reply && covered < mine)
		send_digest(g, from, false);
}

static void
on_sync(struct gossip *g, uint32_t from, const struct gossip_msg *msg)
{
	uint64_t count, h;

	load_digest(g);
	h = digest_hash(g, &count);
	if (h == msg->hash && count == msg->origins) {
		g->compared = true;	/* the peer holds what we hold */
		return;
	}
	send_digest(g, from, true);
}

int
gossip_recv(struct gossip *g, const char *from_name, const uint8_t *buf,
    size_t len, uint64_t now)
{
	struct gossip_msg *msg = g->msg;
	const char *why = NULL;
	uint32_t from;
	size_t i;

	g->st.msgs_recv++;
	g->st.bytes_recv += len;
	if (gossip_msg_decode(buf, len, msg, &why) < 0) {
		g->st.decode_errors++;
		return -1;
	}
	from = lookup(g, from_name, strlen(from_name));
	if (from == SELF)
		return 0;
	if (from == NONE && text_valid(from_name, strlen(from_name),
	    GOSSIP_NAME_MAX, false)) {
		/* Authenticated by the transport: known from now on. */
		from = member_add(g, from_name, strlen(from_name), "", 0, "",
		    0, "", 0, 0);
		if (from != NONE)
			notify(g, from);
	}
	if (from != NONE)
		g->m[from].last_contact = now;
	for (i = 0; i < msg->n_updates; i++)
		apply_update(g, &msg->updates[i], from, now);

	switch (msg->type) {
	case GMSG_PING:
		if (!slice_eq(msg->target, g->m[SELF].name) || from == NONE) {
			g->st.unexpected++;
			break;
		}
		send_seq(g, from, GMSG_ACK, msg->seq);
		break;
	case GMSG_ACK:
		on_ack(g, from, msg, now);
		break;
	case GMSG_PING_REQ:
		on_ping_req(g, from, msg, now);
		break;
	case GMSG_NACK:
		if (g->probe.active && msg->seq == g->probe.seq)
			g->probe.nacks++;
		break;
	case GMSG_PUSH:
		if (msg->n_records > 0)
			accept_records(g, from_name, from, msg, now);
		break;
	case GMSG_SYNC:
		if (from != NONE)
			on_sync(g, from, msg);
		break;
	case GMSG_DIGEST:
		if (from != NONE)
			on_digest(g, from, msg, now);
		break;
	case GMSG_PULL:
		if (from != NONE)
			answer_pull(g, from, msg);
		break;
	case GMSG_RECORDS:
		accept_records(g, from_name, from, msg, now);
		break;
	}
	return 0;
}

/* ---- periodic work --------------------------------------------------- */

static void
probe_start(struct gossip *g, uint64_t now)
{
	uint32_t t = next_probe_target(g);
	uint64_t scale = g->lhm + 1;

	g->next_probe = now + g->conf.probe_interval_ms * scale;
	if (t == NONE)
		return;
	memset(&g->probe, 0, sizeof(g->probe));
	g->probe.active = true;
	g->probe.target = t;
	g->probe.seq = ++g->next_seq;
	g->probe.start = now;
	g->probe.deadline_direct = now + g->conf.probe_timeout_ms * scale;
	g->probe.deadline_end = now + g->conf.probe_interval_ms * scale;
	g->st.probes++;
	send_ping(g, t, g->probe.seq);
}

static void
probe_step(struct gossip *g, uint64_t now)
{
	struct probe *p = &g->probe;

	if (!p->indirect && now >= p->deadline_direct) {
		uint32_t peers[GOSSIP_INDIRECT_MAX], n, i;
		struct mm_mp_writer w;

		p->indirect = true;
		n = pick_peers(g, g->conf.indirect_probes, p->target, peers);
		for (i = 0; i < n; i++) {
			begin(g, &w, 5, GMSG_PING_REQ);
			mm_mp_put_uint(&w, p->seq);
			mm_mp_put_str(&w, g->m[p->target].name);
			put_updates(g, &w, peers[i]);
			send_out(g, peers[i], &w);
		}
		p->nacks_expected = n;
		g->st.indirect_probes++;
	}
	if (now >= p->deadline_end) {
		uint32_t missed = p->nacks_expected > p->nacks ?
		    p->nacks_expected - p->nacks : 0;
		uint32_t delta = p->nacks_expected > 0 ? missed : 1;

		p->active = false;
		g->st.probe_failures++;
		g->lhm = g->lhm + delta > GOSSIP_LHM_MAX ? GOSSIP_LHM_MAX :
		    g->lhm + delta;
		suspect(g, p->target, g->m[p->target].inc, SELF, now);
	}
}

static void
gossip_round(struct gossip *g)
{
	uint32_t peers[FANOUT_MAX], n, i, k;

	if (g->bq_len == 0 && g->n_hot == 0)
		return;
	n = pick_peers(g, g->conf.fanout, NONE, peers);
	for (i = 0; i < n; i++)
		send_push(g, peers[i], NULL, 0);
	for (i = 0, k = 0; i < g->n_hot; i++) {
		if (--g->hot[i].left == 0)
			free(g->hot[i].env);
		else
			g->hot[k++] = g->hot[i];
	}
	g->n_hot = k;
}

static void
sync_round(struct gossip *g, uint64_t now)
{
	struct mm_mp_writer w;
	uint32_t peer = NONE;
	uint64_t count, h;

	if (pick_peers(g, 1, NONE, &peer) != 1 || throttled(g, peer, now))
		return;
	load_digest(g);
	h = digest_hash(g, &count);
	begin(g, &w, 4, GMSG_SYNC);
	mm_mp_put_uint(&w, h);
	mm_mp_put_uint(&w, count);
	g->st.syncs_sent++;
	send_out(g, peer, &w);
}

static void
reconnect_round(struct gossip *g)
{
	uint32_t i, pick = NONE, seen = 0;

	if (g->n_live >= g->n)
		return;
	for (i = 0; i < 16 && pick == NONE; i++) {
		uint32_t c = 1 + rng_below(g, g->n - 1);

		if (g->m[c].state == GOSSIP_DEAD)
			pick = c;
	}
	for (i = 1; i < g->n && pick == NONE; i++)
		if (g->m[i].state == GOSSIP_DEAD && rng_below(g, ++seen) == 0)
			pick = i;
	if (pick != NONE)
		send_ping(g, pick, ++g->next_seq);
}

/* This node itself did not run for gap ms (its process starved of CPU,
 * stopped, its loop held up): an answer that came meanwhile has not been
 * read yet, and no peer is to blame for the time. The running probe, the
 * indirect probes run for others and the suspicion timers are moved on
 * by the gap, and the node's own health counts it (Lifeguard's local
 * health: later probes wait longer). */
static void
stalled(struct gossip *g, uint64_t gap)
{
	uint32_t i;

	g->st.stalls++;
	if (g->probe.active) {
		g->probe.deadline_direct += gap;
		g->probe.deadline_end += gap;
	}
	for (i = 0; i < GOSSIP_PENDING_MAX; i++)
		if (g->pend[i].used)
			g->pend[i].deadline += gap;
	for (i = 0; i < g->sus_len; i++)
		g->m[g->sus[i]].susp_deadline += gap;
	if (g->lhm < GOSSIP_LHM_MAX)
		g->lhm++;
}

void
gossip_tick(struct gossip *g, uint64_t now)
{
	uint32_t i;

	if (!g->started) {
		g->started = true;
		g->first_tick = now;
		g->next_probe = now + rng_below(g, g->conf.probe_interval_ms);
		g->next_gossip = now + rng_below(g, g->conf.gossip_interval_ms);
		g->next_sync = now + rng_below(g, g->conf.sync_interval_ms);
		g->next_reconnect = now + g->conf.reconnect_interval_ms +
		    rng_below(g, g->conf.reconnect_interval_ms);
		g->last_tick = now;
	}
	if (now - g->last_tick > GOSSIP_STALL_MS)
		stalled(g, now - g->last_tick);
	g->last_tick = now;
	gossip_flush(g);
	if (g->probe.active)
		probe_step(g, now);
	if (!g->probe.active && now >= g->next_probe)
		probe_start(g, now);
	for (i = 0; i < GOSSIP_PENDING_MAX && g->n_pend > 0; i++) {
		struct pending *p = &g->pend[i];

		if (p->used && now >= p->deadline) {
			p->used = false;
			g->n_pend--;
			send_seq(g, p->requester, GMSG_NACK, p->orig_seq);
		}
	}
	for (i = 0; i < g->sus_len;) {
		uint32_t idx = g->sus[i];

		if (now >= g->m[idx].susp_deadline)
			declare_dead(g, idx, g->m[idx].inc, SELF);
		else
			i++;
	}
	if (now >= g->next_gossip) {
		g->next_gossip = now + g->conf.gossip_interval_ms;
		gossip_round(g);
	}
	if (now >= g->next_sync) {
		g->next_sync = now + g->conf.sync_interval_ms;
		sync_round(g, now);
	}
	if (now >= g->next_reconnect) {
		g->next_reconnect = now + g->conf.reconnect_interval_ms;
		reconnect_round(g);
	}
}

int
gossip_publish(struct gossip *g, const uint8_t *env, size_t len,
    uint64_t now)
{
	(void)now;
	if (len == 0 || len > GOSSIP_RECORD_MAX)
		return -1;
	hot_add(g, env, len, true);
	return 0;
}

void
gossip_flush(struct gossip *g)
{
	uint32_t peers[FANOUT_MAX], np, i;
	size_t n = 0;

	for (i = 0; i < g->n_hot; i++) {
		if (!g->hot[i].unpushed)
			continue;
		g->hot[i].unpushed = false;
		g->fresh[n].p = g->hot[i].env;
		g->fresh[n].len = g->hot[i].len;
		n++;
	}
	if (n == 0)
		return;
	np = pick_peers(g, g->conf.fanout, NONE, peers);
	for (i = 0; i < np; i++)
		send_push(g, peers[i], g->fresh, n);
}

void
gossip_push_to(struct gossip *g, const char *to, const uint8_t *env,
    size_t len)
{
	struct gossip_slice s = { env, len };
	uint32_t idx = lookup(g, to, strlen(to));

	if (idx != NONE && idx != SELF && len > 0 && len <= GOSSIP_RECORD_MAX)
		send_push(g, idx, &s, 1);
}

bool
gossip_behind(struct gossip *g, uint64_t now)
{
	size_t i;

	if (!g->compared)
		return g->started && (g->conf.joining || g->n > 1) &&
		    now - g->first_tick < GOSSIP_STARTUP_MS;
	load_digest(g);
	for (i = 0; i < g->n_known; i++) {
		const struct known *k = &g->known[i];

		if (now - k->seen < GOSSIP_BEHIND_TTL_MS &&
		    k->seq > digest_seq(g, k->origin, strlen(k->origin)))
			return true;
	}
	return false;
}

/* ---- life cycle and queries ------------------------------------------ */

struct gossip *
gossip_new(const struct gossip_conf *conf, const struct gossip_io *io,
    void *arg)
{
	struct gossip *g;
	const struct gossip_conf *c = conf;
	const char *site = c->site ? c->site : "", *addr = c->addr ? c->addr : "";
	const char *saddr = c->session_addr ? c->session_addr : "";

	if (c->name == NULL || !text_valid(c->name, strlen(c->name),
	    GOSSIP_NAME_MAX, false) ||
	    !text_valid(site, strlen(site), GOSSIP_SITE_MAX, true) ||
	    !text_valid(addr, strlen(addr), GOSSIP_ADDR_MAX, true) ||
	    !text_valid(saddr, strlen(saddr), GOSSIP_ADDR_MAX, true) ||
	    c->probe_interval_ms == 0 || c->probe_timeout_ms == 0 ||
	    c->probe_timeout_ms >= c->probe_interval_ms ||
	    c->indirect_probes > GOSSIP_INDIRECT_MAX ||
	    c->suspicion_mult == 0 || c->suspicion_max_mult == 0 ||
	    c->suspicion_confirm > GOSSIP_CONFIRM_MAX ||
	    c->retransmit_mult == 0 || c->gossip_interval_ms == 0 ||
	    c->fanout == 0 || c->fanout > FANOUT_MAX ||
	    c->sync_interval_ms == 0 || c->reconnect_interval_ms == 0 ||
	    c->batch_bytes < GOSSIP_RECORD_MAX ||
	    c->batch_bytes > GOSSIP_MSG_MAX / 2 || c->reject_limit == 0 ||
	    io == NULL || io->send == NULL || io->digest == NULL ||
	    io->fetch == NULL ||
	    (io->accept == NULL && io->accept_batch == NULL))
		return NULL;
	g = xcalloc(1, sizeof(*g));
	g->conf = *conf;
	g->io = io;
	g->arg = arg;
	g->rng = c->seed ? c->seed : DEFAULT_SEED;
	g->out = xmalloc(GOSSIP_MSG_MAX);
	g->scratch = xmalloc(GOSSIP_MSG_MAX);
	g->msg = xmalloc(sizeof(*g->msg));
	g->dig = xcalloc(GOSSIP_ORIGINS_MAX, sizeof(*g->dig));
	g->wants = xcalloc(GOSSIP_ORIGINS_MAX, sizeof(*g->wants));
	g->inflight = xcalloc(GOSSIP_ORIGINS_MAX, sizeof(*g->inflight));
	g->known = xcalloc(GOSSIP_ORIGINS_MAX, sizeof(*g->known));
	member_add(g, c->name, strlen(c->name), site, strlen(site), addr,
	    strlen(addr), saddr, strlen(saddr), c->incarnation);
	g->conf.name = g->m[SELF].name;
	g->conf.site = g->m[SELF].site;
	g->conf.addr = g->m[SELF].addr;
	g->conf.session_addr = g->m[SELF].saddr;
	bcast(g, SELF);
	return g;
}

void
gossip_free(struct gossip *g)
{
	uint32_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->n; i++) {
		free(g->m[i].name);
		free(g->m[i].site);
		free(g->m[i].addr);
		free(g->m[i].saddr);
	}
	for (i = 0; i < g->n_hot; i++)
		free(g->hot[i].env);
	free(g->m);
	free(g->ht);
	free(g->order);
	free(g->bq);
	free(g->sus);
	free(g->out);
	free(g->scratch);
	free(g->msg);
	free(g->dig);
	free(g->wants);
	for (i = 0; i < GOSSIP_BATCHES_MAX; i++)
		batch_clear(&g->batches[i]);
	free(g->inflight);
	free(g->known);
	free(g);
}

int
gossip_add_seed(struct gossip *g, const char *name, const char *site,
    const char *addr)
{
	uint32_t idx;

	site = site ? site : "";
	addr = addr ? addr : "";
	if (!text_valid(name, strlen(name), GOSSIP_NAME_MAX, false) ||
	    !text_valid(site, strlen(site), GOSSIP_SITE_MAX, true) ||
	    !text_valid(addr, strlen(addr), GOSSIP_ADDR_MAX, true))
		return -1;
	if ((idx = lookup(g, name, strlen(name))) != NONE) {
		/* Known by name only (met on an incoming channel before any
		 * announcement of its own): its certificate's site will do
		 * until one comes. */
		if (idx != SELF && g->m[idx].site[0] == '\0' &&
		    site[0] != '\0') {
			set_text(&g->m[idx].site, site, strlen(site));
			notify(g, idx);
		}
		/* A channel to it came up: it may have restarted and know
		 * us by name only, so we announce ourselves again. */
		if (idx != SELF)
			bcast(g, SELF);
		return 0;
	}
	idx = member_add(g, name, strlen(name), site, strlen(site), addr,
	    strlen(addr), "", 0, 0);
	if (idx == NONE)
		return -1;
	/* Our own announcement now has more members to reach. */
	if (g->m[SELF].in_bq)
		bcast(g, SELF);
	notify(g, idx);
	return 0;
}

void
gossip_foreach_member(struct gossip *g, gossip_member_cb cb, void *arg)
{
	struct gossip_member_info mi;
	uint32_t i;

	for (i = 0; i < g->n; i++) {
		info_fill(g, i, &mi);
		cb(arg, &mi);
	}
}

int
gossip_member_get(struct gossip *g, const char *name,
    struct gossip_member_info *m_r)
{
	uint32_t idx = lookup(g, name, strlen(name));

	if (idx == NONE)
		return 0;
	info_fill(g, idx, m_r);
	return 1;
}

void
gossip_stats(struct gossip *g, struct gossip_stats *s_r)
{
	*s_r = g->st;
	s_r->lhm = g->lhm;
	s_r->members = g->n;
	s_r->alive = g->n_live;
}

/* ---- decoding -------------------------------------------------------- */

static int
get_text(struct mm_mp_reader *r, size_t max, bool empty_ok,
    struct gossip_slice *s)
{
	const char *p;
	size_t len;

	if (mm_mp_get_strp(r, max, &p, &len) < 0)
		return -1;
	if (!text_valid(p, len, max, empty_ok)) {
		if (r->why == NULL)
			r->why = "invalid name";
		return -1;
	}
	s->p = (const uint8_t *)p;
	s->len = len;
	return 0;
}

static int
get_updates(struct mm_mp_reader *r, struct gossip_msg *m)
{
	uint32_t n, i, fields;
	uint64_t kind;

	if (mm_mp_get_array(r, GOSSIP_UPDATES_MAX, &n) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		struct gossip_update *u = &m->updates[i];

		memset(u, 0, sizeof(*u));
		if (mm_mp_get_array(r, 6, &fields) < 0 ||
		    mm_mp_get_uint_max(r, GUPD_DEAD, &kind) < 0)
			return -1;
		u->kind = (enum gossip_update_kind)kind;
		if (fields != (kind == GUPD_ALIVE ? 6u : 4u)) {
			r->why = "wrong update element count";
			return -1;
		}
		if (get_text(r, GOSSIP_NAME_MAX, false, &u->name) < 0 ||
		    mm_mp_get_uint(r, &u->incarnation) < 0)
			return -1;
		if (kind == GUPD_ALIVE) {
			if (get_text(r, GOSSIP_SITE_MAX, true, &u->site) < 0 ||
			    get_text(r, GOSSIP_ADDR_MAX, true, &u->addr) < 0 ||
			    get_text(r, GOSSIP_ADDR_MAX, true,
			    &u->session_addr) < 0)
				return -1;
		} else if (get_text(r, GOSSIP_NAME_MAX, false, &u->from) < 0)
			return -1;
	}
	m->n_updates = n;
	return 0;
}

static int
get_records(struct mm_mp_reader *r, struct gossip_msg *m)
{
	uint32_t n, i;

	if (mm_mp_get_array(r, GOSSIP_RECORDS_MAX, &n) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (mm_mp_get_bin(r, GOSSIP_RECORD_MAX, &m->records[i].p,
		    &m->records[i].len) < 0)
			return -1;
		if (m->records[i].len == 0) {
			r->why = "empty record";
			return -1;
		}
	}
	m->n_records = n;
	return 0;
}

/* Entries of width 2 (origin, seq) or 3 (origin, seq, through). */
static int
get_entries(struct mm_mp_reader *r, struct gossip_msg *m, uint32_t width)
{
	uint32_t n, i;

	if (mm_mp_get_array(r, GOSSIP_ORIGINS_MAX, &n) < 0)
		return -1;
	for (i = 0; i < n; i++) {
		m->entries[i].through = 0;
		if (mm_mp_get_array_n(r, width) < 0 ||
		    get_text(r, GOSSIP_NAME_MAX, false,
		    &m->entries[i].origin) < 0 ||
		    mm_mp_get_uint(r, &m->entries[i].seq) < 0 ||
		    (width == 3 && mm_mp_get_uint(r,
		    &m->entries[i].through) < 0))
			return -1;
	}
	m->n_entries = n;
	return 0;
}

int
gossip_msg_decode(const uint8_t *buf, size_t len, struct gossip_msg *m,
    const char **why_r)
{
	static const uint8_t fields[] = {
		[GMSG_PING] = 5, [GMSG_ACK] = 4, [GMSG_PING_REQ] = 5,
		[GMSG_NACK] = 4, [GMSG_PUSH] = 4, [GMSG_SYNC] = 4,
		[GMSG_DIGEST] = 4, [GMSG_PULL] = 3, [GMSG_RECORDS] = 4,
	};
	struct mm_mp_reader r;
	uint32_t n = 0;
	uint64_t version, type;
	int rc = -1;

	m->n_updates = m->n_records = m->n_entries = 0;
	m->seq = m->hash = m->origins = 0;
	m->reply = false;
	m->target.p = NULL;
	m->target.len = 0;
	mm_mp_reader_init(&r, buf, len);
	if (len > GOSSIP_MSG_MAX) {
		r.why = "message too long";
		goto done;
	}
	if (mm_mp_get_array(&r, 5, &n) < 0 || n < 3 ||
	    mm_mp_get_uint(&r, &version) < 0)
		goto done;
	if (version != GOSSIP_VERSION) {
		r.why = "unknown version";
		goto done;
	}
	if (mm_mp_get_uint(&r, &type) < 0)
		goto done;
	if (type < GMSG_PING || type > GMSG_RECORDS) {
		r.why = "unknown message type";
		goto done;
	}
	if (n != fields[type]) {
		r.why = "wrong element count";
		goto done;
	}
	m->type = (enum gossip_msg_type)type;
	switch (m->type) {
	case GMSG_PING:
	case GMSG_PING_REQ:
		if (mm_mp_get_uint(&r, &m->seq) < 0 ||
		    get_text(&r, GOSSIP_NAME_MAX, false, &m->target) < 0 ||
		    get_updates(&r, m) < 0)
			goto done;
		break;
	case GMSG_ACK:
	case GMSG_NACK:
		if (mm_mp_get_uint(&r, &m->seq) < 0 || get_updates(&r, m) < 0)
			goto done;
		break;
	case GMSG_PUSH:
		if (get_updates(&r, m) < 0 || get_records(&r, m) < 0)
			goto done;
		break;
	case GMSG_SYNC:
		if (mm_mp_get_uint(&r, &m->hash) < 0 ||
		    mm_mp_get_uint(&r, &m->origins) < 0)
			goto done;
		break;
	case GMSG_DIGEST:
		if (mm_mp_get_bool(&r, &m->reply) < 0 ||
		    get_entries(&r, m, 2) < 0)
			goto done;
		break;
	case GMSG_PULL:
		if (get_entries(&r, m, 2) < 0)
			goto done;
		break;
	case GMSG_RECORDS:
		if (get_records(&r, m) < 0 || get_entries(&r, m, 3) < 0)
			goto done;
		break;
	}
	if (mm_mp_end(&r) < 0)
		goto done;
	rc = 0;
done:
	if (rc < 0) {
		if (n < 3 && r.why == NULL)
			r.why = "wrong element count";
		*why_r = r.why != NULL ? r.why : "invalid";
	}
	return rc;
}
