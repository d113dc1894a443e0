/* Unit tests for gossip: the message decoder and one instance driven by
 * hand through a fake io (probes, refutation, suspicion, anti-entropy,
 * throttling). Whole-cluster behaviour is tested in the simulator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip.h"
#include "mm_msgpack.h"

#define SENT_MAX 64

struct fake {
	struct {
		char to[GOSSIP_NAME_MAX + 1];
		uint8_t buf[GOSSIP_MSG_MAX];
		size_t len;
	} sent[SENT_MAX];
	size_t n_sent;
	uint64_t have;			/* records of origin "o" held: 1..have */
	enum gossip_accept verdict;	/* 0: by seq */
	size_t accepts;
	struct gossip_msg msg;
};

static void
f_send(void *arg, const char *to, const uint8_t *buf, size_t len)
{
	struct fake *f = arg;

	if (f->n_sent == SENT_MAX)
		return;
	strcpy(f->sent[f->n_sent].to, to);
	memcpy(f->sent[f->n_sent].buf, buf, len);
	f->sent[f->n_sent].len = len;
	f->n_sent++;
}

static size_t
f_digest(void *arg, struct gossip_digest_entry *out, size_t max)
{
	struct fake *f = arg;

	if (f->have == 0 || max == 0)
		return 0;
	strcpy(out[0].origin, "o");
	out[0].seq = f->have;
	return 1;
}

static void
f_fetch(void *arg, const char *origin, uint64_t from, gossip_emit_cb emit,
    void *ctx)
{
	struct fake *f = arg;
	uint8_t env[1000];
	uint64_t s;

	if (strcmp(origin, "o") != 0)
		return;
	for (s = from; s <= f->have; s++) {
		memset(env, (int)s, sizeof(env));
		if (emit(ctx, env, sizeof(env)) != 0)
			break;
	}
}

static enum gossip_accept
f_accept(void *arg, const char *from, const uint8_t *env, size_t len,
    uint64_t now)
{
	struct fake *f = arg;

	(void)from;
	(void)now;
	f->accepts++;
	if (f->verdict != GOSSIP_ACCEPT_NEW)
		return f->verdict;
	if (env[0] == (uint8_t)(f->have + 1)) {
		f->have++;
		return GOSSIP_ACCEPT_NEW;
	}
	return env[0] <= f->have ? GOSSIP_ACCEPT_DUP : GOSSIP_ACCEPT_REJECT;
}

static const struct gossip_io fake_io = {
	.send = f_send,
	.digest = f_digest,
	.fetch = f_fetch,
	.accept = f_accept,
};

static struct gossip *
one(struct fake *f, const char *seed)
{
	struct gossip_conf c;
	struct gossip *g;

	memset(f, 0, sizeof(*f));
	gossip_conf_defaults(&c);
	c.name = "me";
	c.site = "fra";
	c.addr = "10.0.0.1:7946";
	g = gossip_new(&c, &fake_io, f);
	assert_non_null(g);
	if (seed != NULL)
		assert_int_equal(gossip_add_seed(g, seed, "ams", ""), 0);
	return g;
}

/* The last message sent, decoded; it must be of type want to to. */
static const struct gossip_msg *
last(struct fake *f, enum gossip_msg_type want, const char *to)
{
	const char *why = NULL;
	size_t i = f->n_sent;

	assert_true(i > 0);
	assert_string_equal(f->sent[i - 1].to, to);
	if (gossip_msg_decode(f->sent[i - 1].buf, f->sent[i - 1].len, &f->msg,
	    &why) < 0)
		fail_msg("own message does not decode: %s", why);
	assert_int_equal(f->msg.type, want);
	return &f->msg;
}

/* Find a message of type want among those sent; NULL if none. */
static const struct gossip_msg *
find(struct fake *f, enum gossip_msg_type want)
{
	const char *why = NULL;
	size_t i;

	for (i = 0; i < f->n_sent; i++) {
		assert_int_equal(gossip_msg_decode(f->sent[i].buf,
		    f->sent[i].len, &f->msg, &why), 0);
		if (f->msg.type == want)
			return &f->msg;
	}
	return NULL;
}

static size_t
enc(uint8_t *buf, size_t size, void (*fill)(struct mm_mp_writer *, void *),
    void *arg)
{
	struct mm_mp_writer w;

	mm_mp_writer_init(&w, buf, size);
	fill(&w, arg);
	assert_true(mm_mp_writer_ok(&w));
	return mm_mp_writer_len(&w);
}

/* ---- the decoder ------------------------------------------------------ */

static void
decode_fails(const uint8_t *buf, size_t len, const char *want)
{
	struct gossip_msg *m = malloc(sizeof(*m));
	const char *why = NULL;

	assert_int_equal(gossip_msg_decode(buf, len, m, &why), -1);
	assert_non_null(why);
	if (strstr(why, want) == NULL)
		fail_msg("got \"%s\", want \"%s\"", why, want);
	free(m);
}

static void
test_decode_rejections(void **state)
{
	uint8_t big[GOSSIP_MSG_MAX + 1];

	(void)state;
	decode_fails((const uint8_t *)"", 0, "truncated");
	decode_fails((const uint8_t *)"\x01", 1, "want array");
	decode_fails((const uint8_t *)"\x93\x04\x06\x00", 4, "version");
	decode_fails((const uint8_t *)"\x93\x03\x0a\x00", 4, "message type");
	decode_fails((const uint8_t *)"\x93\x03\x01\x00", 4, "element count");
	decode_fails((const uint8_t *)"\x92\x03\x01", 3, "element count");
	/* SYNC with trailing bytes */
	decode_fails((const uint8_t *)"\x94\x03\x06\x00\x00\x00", 6,
	    "trailing");
	/* PING to a name with a space */
	decode_fails((const uint8_t *)"\x95\x03\x01\x01\xa2h \x90", 8,
	    "invalid name");
	/* PING to an empty name */
	decode_fails((const uint8_t *)"\x95\x03\x01\x01\xa0\x90", 6,
	    "invalid name");
	/* ACK with an update of unknown kind */
	decode_fails((const uint8_t *)"\x94\x03\x02\x01\x91\x94\x03\xa1x\x00"
	    "\xa1y", 12, "out of range");
	/* ACK with an alive update of four fields */
	decode_fails((const uint8_t *)"\x94\x03\x02\x01\x91\x94\x00\xa1x\x00"
	    "\xa1y", 12, "update element count");
	/* PUSH with an empty record */
	decode_fails((const uint8_t *)"\x94\x03\x05\x90\x91\xc4\x00", 7,
	    "empty record");
	/* DIGEST whose reply is not a boolean */
	decode_fails((const uint8_t *)"\x94\x03\x07\x01\x90", 5, "boolean");
	memset(big, 0, sizeof(big));
	decode_fails(big, sizeof(big), "too long");
}

struct many {
	uint32_t n;
};

static void
fill_many_updates(struct mm_mp_writer *w, void *arg)
{
	struct many *m = arg;
	uint32_t i;

	mm_mp_put_array(w, 4);
	mm_mp_put_uint(w, GOSSIP_VERSION);
	mm_mp_put_uint(w, GMSG_ACK);
	mm_mp_put_uint(w, 1);
	mm_mp_put_array(w, m->n);
	for (i = 0; i < m->n; i++) {
		mm_mp_put_array(w, 6);
		mm_mp_put_uint(w, GUPD_ALIVE);
		mm_mp_put_str(w, "x");
		mm_mp_put_uint(w, i);
		mm_mp_put_str(w, "");
		mm_mp_put_str(w, "");
		mm_mp_put_str(w, "");
	}
}

static void
test_decode_limits(void **state)
{
	uint8_t buf[4096];
	struct many m = { GOSSIP_UPDATES_MAX };
	struct gossip_msg *msg = malloc(sizeof(*msg));
	const char *why = NULL;
	size_t len;

	(void)state;
	len = enc(buf, sizeof(buf), fill_many_updates, &m);
	assert_int_equal(gossip_msg_decode(buf, len, msg, &why), 0);
	assert_int_equal(msg->n_updates, GOSSIP_UPDATES_MAX);
	m.n++;
	len = enc(buf, sizeof(buf), fill_many_updates, &m);
	decode_fails(buf, len, "too many");
	free(msg);
}

/* ---- one instance ----------------------------------------------------- */

static void
test_conf_checked(void **state)
{
	struct gossip_conf c;
	static struct fake f;

	(void)state;
	gossip_conf_defaults(&c);
	assert_null(gossip_new(&c, &fake_io, &f));	/* no name */
	c.name = "has space";
	assert_null(gossip_new(&c, &fake_io, &f));
	c.name = "ok";
	c.probe_timeout_ms = c.probe_interval_ms;
	assert_null(gossip_new(&c, &fake_io, &f));
	gossip_conf_defaults(&c);
	c.name = "ok";
	c.batch_bytes = 100;
	assert_null(gossip_new(&c, &fake_io, &f));
}

/* from answers our probe seq at now. */
static void
ack_from(struct gossip *g, const char *from, uint64_t seq, uint64_t now)
{
	struct mm_mp_writer w;
	uint8_t ack[64];

	mm_mp_writer_init(&w, ack, sizeof(ack));
	mm_mp_put_array(&w, 4);
	mm_mp_put_uint(&w, GOSSIP_VERSION);
	mm_mp_put_uint(&w, GMSG_ACK);
	mm_mp_put_uint(&w, seq);
	mm_mp_put_array(&w, 0);
	assert_int_equal(gossip_recv(g, from, ack, mm_mp_writer_len(&w), now),
	    0);
}

static void
test_probe_and_ack(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, "peer");
	const struct gossip_msg *m;
	struct gossip_member_info mi;
	uint64_t seq;

	(void)state;
	gossip_tick(g, 1000);
	gossip_tick(g, 2000);
	m = find(&f, GMSG_PING);
	assert_non_null(m);
	assert_true(m->target.len == 4 && memcmp(m->target.p, "peer", 4) == 0);
	/* Our own announcement rides along. */
	assert_true(m->n_updates >= 1);
	assert_int_equal(m->updates[0].kind, GUPD_ALIVE);
	seq = m->seq;
	ack_from(g, "peer", seq, 2030);
	assert_int_equal(gossip_member_get(g, "peer", &mi), 1);
	assert_int_equal(mi.rtt_ms, 2030 - 2000 + 0 * (int64_t)seq);
	assert_int_equal(mi.state, GOSSIP_ALIVE);
	assert_string_equal(mi.site, "ams");
	gossip_free(g);
}

static void
test_ping_answered(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, NULL);
	const struct gossip_msg *m;
	struct gossip_member_info mi;

	(void)state;
	/* PING seq 77 to "me" from a node we did not know. */
	assert_int_equal(gossip_recv(g, "stranger",
	    (const uint8_t *)"\x95\x03\x01\x4d\xa2me\x90", 8, 5), 0);
	m = last(&f, GMSG_ACK, "stranger");
	assert_int_equal(m->seq, 77);
	assert_int_equal(gossip_member_get(g, "stranger", &mi), 1);
	assert_int_equal(mi.last_contact_ms, 5);
	/* A PING for someone else is not answered. */
	f.n_sent = 0;
	assert_int_equal(gossip_recv(g, "stranger",
	    (const uint8_t *)"\x95\x03\x01\x4d\xa2yo\x90", 8, 6), 0);
	assert_int_equal(f.n_sent, 0);
	gossip_free(g);
}

struct upd {
	enum gossip_update_kind kind;
	const char *name;
	uint64_t inc;
};

static void
fill_ack_with(struct mm_mp_writer *w, void *arg)
{
	struct upd *u = arg;

	mm_mp_put_array(w, 4);
	mm_mp_put_uint(w, GOSSIP_VERSION);
	mm_mp_put_uint(w, GMSG_ACK);
	mm_mp_put_uint(w, 999);
	mm_mp_put_array(w, 1);
	mm_mp_put_array(w, 4);
	mm_mp_put_uint(w, u->kind);
	mm_mp_put_str(w, u->name);
	mm_mp_put_uint(w, u->inc);
	mm_mp_put_str(w, "peer");
}

static void
test_refutes_suspicion(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, "peer");
	struct upd u = { GUPD_SUSPECT, "me", 0 };
	struct gossip_member_info mi;
	struct gossip_stats st;
	const struct gossip_msg *m;
	uint8_t buf[256];
	size_t len, i;
	bool found = false;

	(void)state;
	len = enc(buf, sizeof(buf), fill_ack_with, &u);
	assert_int_equal(gossip_recv(g, "peer", buf, len, 10), 0);
	assert_int_equal(gossip_member_get(g, "me", &mi), 1);
	assert_int_equal(mi.incarnation, 1);
	gossip_stats(g, &st);
	assert_int_equal(st.refutations, 1);
	assert_int_equal(st.lhm, 1);	/* refuting lowers our health */
	/* The refutation goes out on the next message. */
	gossip_tick(g, 10);
	gossip_tick(g, 3000);
	m = find(&f, GMSG_PING);
	assert_non_null(m);
	for (i = 0; i < m->n_updates; i++)
		if (m->updates[i].kind == GUPD_ALIVE &&
		    m->updates[i].incarnation == 1)
			found = true;
	assert_true(found);
	/* Declared dead at an old incarnation: repeat, do not raise. */
	u.kind = GUPD_DEAD;
	len = enc(buf, sizeof(buf), fill_ack_with, &u);
	assert_int_equal(gossip_recv(g, "peer", buf, len, 3100), 0);
	assert_int_equal(gossip_member_get(g, "me", &mi), 1);
	assert_int_equal(mi.incarnation, 1);
	gossip_free(g);
}

/* The node itself did not run for 1.5 s (its tick came that late) while
 * its probe's answer was on the way: the answer, read after the late
 * tick, still counts, nobody is suspected, and the stall is counted. */
static void
test_own_stall_blames_nobody(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, "peer");
	struct gossip_member_info mi;
	struct gossip_stats st;
	const struct gossip_msg *m = NULL;
	uint64_t t, seq;

	(void)state;
	for (t = 0; m == NULL && t < 5000; t += 50) {
		gossip_tick(g, t);
		m = find(&f, GMSG_PING);
	}
	assert_non_null(m);
	seq = m->seq;
	t += 1500;
	gossip_tick(g, t);
	ack_from(g, "peer", seq, t);
	gossip_tick(g, t + 50);
	assert_int_equal(gossip_member_get(g, "peer", &mi), 1);
	assert_int_equal(mi.state, GOSSIP_ALIVE);
	gossip_stats(g, &st);
	assert_int_equal(st.suspicions, 0);
	assert_int_equal(st.probe_failures, 0);
	assert_int_equal(st.stalls, 1);
	gossip_free(g);
}

static void
test_silent_peer_dies(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, "peer");
	struct gossip_member_info mi;
	uint64_t t;
	bool suspected = false;

	(void)state;
	assert_int_equal(gossip_add_seed(g, "helper", "", ""), 0);
	/* Nobody answers anything. */
	for (t = 0; t < 60000; t += 50) {
		gossip_tick(g, t);
		assert_int_equal(gossip_member_get(g, "peer", &mi), 1);
		if (mi.state == GOSSIP_SUSPECT)
			suspected = true;
		f.n_sent = 0;
	}
	assert_true(suspected);
	assert_int_equal(mi.state, GOSSIP_DEAD);
	/* Probing failed every time: the multiplier went up. */
	{
		struct gossip_stats st;

		gossip_stats(g, &st);
		assert_true(st.lhm > 0);
		assert_true(st.probe_failures > 0);
		assert_int_equal(st.alive, 1);
	}
	gossip_free(g);
}

static void
fill_push(struct mm_mp_writer *w, void *arg)
{
	uint8_t env[100];

	memset(env, *(int *)arg, sizeof(env));
	mm_mp_put_array(w, 4);
	mm_mp_put_uint(w, GOSSIP_VERSION);
	mm_mp_put_uint(w, GMSG_PUSH);
	mm_mp_put_array(w, 0);
	mm_mp_put_array(w, 1);
	mm_mp_put_bin(w, env, sizeof(env));
}

static void
test_push_forwarded_and_throttled(void **state)
{
	static struct fake f;
	struct gossip *g = one(&f, "peer");
	struct gossip_stats st;
	uint8_t buf[256];
	size_t len, i;
	int b = 1;

	(void)state;
	assert_int_equal(gossip_add_seed(g, "other", "", ""), 0);
	len = enc(buf, sizeof(buf), fill_push, &b);
	assert_int_equal(gossip_recv(g, "peer", buf, len, 10), 0);
	assert_int_equal(f.have, 1);
	/* New: forwarded at once, not back to the sender. */
	last(&f, GMSG_PUSH, "other");
	assert_int_equal(f.msg.n_records, 1);
	/* The same again is a duplicate, not forwarded. */
	f.n_sent = 0;
	assert_int_equal(gossip_recv(g, "peer", buf, len, 20), 0);
	assert_int_equal(f.n_sent, 0);
	/* Invalid records: after reject_limit of them, ignored. */
	f.verdict = GOSSIP_ACCEPT_REJECT;
	for (i = 0; i < 3; i++)
		assert_int_equal(gossip_recv(g, "peer", buf, len, 30), 0);
	f.accepts = 0;
	assert_int_equal(gossip_recv(g, "peer", buf, len, 40), 0);
	assert_int_equal(f.accepts, 0);
	gossip_stats(g, &st);
	assert_int_equal(st.throttles, 1);
	assert_int_equal(st.records_rejected, 3);
	assert_int_equal(st.records_ignored, 1);
	/* ... for throttle_ms only. */
	f.verdict = GOSSIP_ACCEPT_NEW;
	b = 2;
	len = enc(buf, sizeof(buf), fill_push, &b);
	assert_int_equal(gossip_recv(g, "peer", buf, len, 70000), 0);
	assert_int_equal(f.have, 2);
	gossip_free(g);
}

static void
test_anti_entropy(void **state)
{
	static struct fake a, b;
	struct gossip *ga = one(&a, "b"), *gb;
	struct gossip_conf c;
	const struct gossip_msg *m;
	size_t rounds = 0;

	(void)state;
	gossip_conf_defaults(&c);
	c.name = "b";
	c.batch_bytes = 8192;
	memset(&b, 0, sizeof(b));
	gb = gossip_new(&c, &fake_io, &b);
	assert_non_null(gb);
	assert_int_equal(gossip_add_seed(gb, "me", "", ""), 0);
	b.have = 50;	/* a has none of them */
	/* b's sync reaches a; shuttle messages until quiet. */
	gossip_tick(gb, 0);
	gossip_tick(gb, 1000);
	m = find(&b, GMSG_SYNC);
	assert_non_null(m);
	while ((a.n_sent > 0 || b.n_sent > 0) && rounds++ < 100) {
		size_t i, na = a.n_sent, nb = b.n_sent;
		struct fake *ca = malloc(sizeof(*ca)), *cb = malloc(sizeof(*cb));

		memcpy(ca, &a, sizeof(a));
		memcpy(cb, &b, sizeof(b));
		a.n_sent = b.n_sent = 0;
		for (i = 0; i < nb; i++)
			if (strcmp(cb->sent[i].to, "me") == 0)
				gossip_recv(ga, "b", cb->sent[i].buf,
				    cb->sent[i].len, 1001);
		for (i = 0; i < na; i++)
			if (strcmp(ca->sent[i].to, "b") == 0)
				gossip_recv(gb, "me", ca->sent[i].buf,
				    ca->sent[i].len, 1001);
		free(ca);
		free(cb);
	}
	assert_int_equal(a.have, 50);
	/* 50 records of 1000 bytes in batches of 8 KiB: several pulls. */
	{
		struct gossip_stats st;

		gossip_stats(ga, &st);
		assert_true(st.pulls_sent >= 6);
		assert_int_equal(st.records_new, 50);
		assert_int_equal(st.records_dup, 0);
	}
	gossip_free(ga);
	gossip_free(gb);
}

/* ---- the owner that accepts off the loop ------------------------------ */

struct held {
	uint64_t token;
	const uint8_t *const *envs;
	const size_t *lens;
	size_t n;
};

static struct held held[GOSSIP_BATCHES_MAX + 1];
static size_t n_held;

static void
f_accept_later(void *arg, const char *from, const uint8_t *const *envs,
    const size_t *lens, size_t n, uint64_t now, uint64_t token)
{
	assert_true(n_held < GOSSIP_BATCHES_MAX);
	held[n_held].token = token;
	held[n_held].envs = envs;
	held[n_held].lens = lens;
	held[n_held].n = n;
	n_held++;
}

static const struct gossip_io later_io = {
	.send = f_send,
	.digest = f_digest,
	.fetch = f_fetch,
	.accept_batch = f_accept_later,
};

/* The owner answers every batch it holds, oldest first. */
static void
answer_held(struct gossip *g, struct fake *f, uint64_t now)
{
	enum gossip_accept res[GOSSIP_RECORDS_MAX];
	size_t i, k, n = n_held;
	struct held h[GOSSIP_BATCHES_MAX + 1];

	memcpy(h, held, sizeof(h));
	n_held = 0;
	for (i = 0; i < n; i++) {
		for (k = 0; k < h[i].n; k++)
			res[k] = f_accept(f, "b", h[i].envs[k], h[i].lens[k],
			    now);
		gossip_accept_done(g, h[i].token, res, now);
	}
}

/* Delivers what each side sent to the other, once. */
static void
shuttle(struct gossip *ga, struct fake *a, struct gossip *gb, struct fake *b,
    uint64_t now)
{
	struct fake *ca = malloc(sizeof(*ca)), *cb = malloc(sizeof(*cb));
	size_t i;

	memcpy(ca, a, sizeof(*a));
	memcpy(cb, b, sizeof(*b));
	a->n_sent = b->n_sent = 0;
	for (i = 0; i < cb->n_sent; i++)
		if (strcmp(cb->sent[i].to, "me") == 0)
			gossip_recv(ga, "b", cb->sent[i].buf, cb->sent[i].len,
			    now);
	for (i = 0; i < ca->n_sent; i++)
		if (strcmp(ca->sent[i].to, "b") == 0)
			gossip_recv(gb, "me", ca->sent[i].buf, ca->sent[i].len,
			    now);
	free(ca);
	free(cb);
}

/* Records accepted off the loop: the next batch is asked for while the
 * owner still checks the last, nothing is fetched twice, and the node
 * knows it is behind until it has all. */
static void
test_pipelined_pull(void **state)
{
	static struct fake a, b;
	struct gossip_conf c;
	struct gossip *ga, *gb;
	struct gossip_stats st;
	const struct gossip_msg *m;
	size_t rounds = 0;
	bool pipelined = false;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	n_held = 0;
	gossip_conf_defaults(&c);
	c.name = "me";
	ga = gossip_new(&c, &later_io, &a);
	assert_non_null(ga);
	assert_int_equal(gossip_add_seed(ga, "b", "", ""), 0);
	c.name = "b";
	c.batch_bytes = 8192;	/* 8 records of 1000 bytes a batch */
	gb = gossip_new(&c, &fake_io, &b);
	assert_non_null(gb);
	assert_int_equal(gossip_add_seed(gb, "me", "", ""), 0);
	b.have = 50;
	gossip_tick(ga, 0);
	/* Not compared with anyone yet: behind, for a while. */
	assert_true(gossip_behind(ga, 1));
	assert_false(gossip_behind(ga, GOSSIP_STARTUP_MS + 1));
	gossip_tick(gb, 0);
	gossip_tick(gb, 1000);
	assert_non_null(find(&b, GMSG_SYNC));
	while ((a.n_sent > 0 || b.n_sent > 0 || n_held > 0) &&
	    rounds++ < 200) {
		shuttle(ga, &a, gb, &b, 1001);
		if (n_held > 0 && (m = find(&a, GMSG_PULL)) != NULL) {
			/* Asked for what follows while the owner holds
			 * records. */
			assert_int_equal(m->n_entries, 1);
			assert_true(m->entries[0].seq > a.have + 1);
			assert_true(gossip_behind(ga, 1001));
			pipelined = true;
		}
		if (rounds % 2 == 0)
			answer_held(ga, &a, 1001);
	}
	assert_true(pipelined);
	assert_int_equal(a.have, 50);
	gossip_stats(ga, &st);
	assert_int_equal(st.records_new, 50);
	assert_int_equal(st.records_dup, 0);
	assert_int_equal(st.batches_dropped, 0);
	/* Compared and complete: not behind. */
	assert_false(gossip_behind(ga, 1002));
	gossip_free(ga);
	gossip_free(gb);
}

/* The session endpoint rides on the alive update and is learnt by others;
 * a node without one announces "". */
static void
test_session_addr_travels(void **state)
{
	static struct fake a, b;
	struct gossip_conf c;
	struct gossip *ga, *gb;
	struct gossip_member_info mi;
	const struct gossip_msg *m;
	char toolong[GOSSIP_ADDR_MAX + 2];
	size_t i;
	bool seen = false;

	(void)state;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	gossip_conf_defaults(&c);
	c.name = "a1";
	c.site = "fra";
	c.addr = "10.0.0.1:7400";
	c.session_addr = "10.0.0.1:7500";
	ga = gossip_new(&c, &fake_io, &a);
	assert_non_null(ga);
	assert_int_equal(gossip_member_get(ga, "a1", &mi), 1);
	assert_string_equal(mi.session_addr, "10.0.0.1:7500");
	assert_int_equal(gossip_add_seed(ga, "b1", "ams", ""), 0);
	c.name = "b1";
	c.site = "ams";
	c.addr = "10.0.0.2:7400";
	c.session_addr = NULL;
	gb = gossip_new(&c, &fake_io, &b);
	assert_non_null(gb);
	gossip_tick(ga, 1000);
	gossip_tick(ga, 2000);
	m = find(&a, GMSG_PING);
	assert_non_null(m);
	for (i = 0; i < m->n_updates; i++)
		if (m->updates[i].kind == GUPD_ALIVE &&
		    m->updates[i].session_addr.len == 13 &&
		    memcmp(m->updates[i].session_addr.p, "10.0.0.1:7500",
		    13) == 0)
			seen = true;
	assert_true(seen);
	for (i = 0; i < a.n_sent; i++)
		assert_int_equal(gossip_recv(gb, "a1", a.sent[i].buf,
		    a.sent[i].len, 2000), 0);
	assert_int_equal(gossip_member_get(gb, "a1", &mi), 1);
	assert_string_equal(mi.site, "fra");
	assert_string_equal(mi.addr, "10.0.0.1:7400");
	assert_string_equal(mi.session_addr, "10.0.0.1:7500");
	assert_int_equal(gossip_member_get(gb, "b1", &mi), 1);
	assert_string_equal(mi.session_addr, "");
	memset(toolong, 'x', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = '\0';
	c.session_addr = toolong;
	assert_null(gossip_new(&c, &fake_io, &b));
	gossip_free(ga);
	gossip_free(gb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_rejections),
		cmocka_unit_test(test_decode_limits),
		cmocka_unit_test(test_conf_checked),
		cmocka_unit_test(test_probe_and_ack),
		cmocka_unit_test(test_ping_answered),
		cmocka_unit_test(test_refutes_suspicion),
		cmocka_unit_test(test_silent_peer_dies),
		cmocka_unit_test(test_own_stall_blames_nobody),
		cmocka_unit_test(test_push_forwarded_and_throttled),
		cmocka_unit_test(test_anti_entropy),
		cmocka_unit_test(test_pipelined_pull),
		cmocka_unit_test(test_session_addr_travels),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
