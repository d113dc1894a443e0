/* Unit tests for chan_ev: two channels on a bufferevent pair run the
 * handshake through a real event loop and exchange frames; refusals,
 * garbage, timeouts and frees from inside callbacks end them cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "chan_ev.h"
#include "fixture.h"
#include "mm_util.h"

#define ROUNDS 200
#define LOOP_LIMIT_SEC 10

static struct dkey root, rogue;
static struct fx_node node_a, node_b, node_unknown;
static struct fx_trust trust;

struct end {
	const char *name;
	struct chan_ev *ce;
	struct end *other;
	int ready;
	int frames;
	int closed;
	char reason[256];
	uint64_t sum;		/* of the first byte of every payload */
	int echo;		/* answer every frame with its payload */
	int free_on_frame;	/* free from inside the frame callback */
	int free_on_close;
	size_t biggest;
};

static struct event_base *base;

static void
on_ready(struct chan_ev *ce, const struct chan_peer *peer, void *arg)
{
	struct end *e = arg;

	assert_non_null(peer);
	assert_ptr_equal(chan_ev_peer(ce), peer);
	e->ready++;
}

static void
on_frame(struct chan_ev *ce, const uint8_t *p, size_t len, void *arg)
{
	struct end *e = arg;

	e->frames++;
	if (len > e->biggest)
		e->biggest = len;
	if (len > 0)
		e->sum += p[0];
	if (e->free_on_frame) {
		chan_ev_free(ce);
		e->ce = NULL;
		/* Gone for the caller: sending now must not crash either. */
		return;
	}
	if (e->echo)
		assert_int_equal(chan_ev_send(ce, p, len), 0);
}

static void
on_closed(struct chan_ev *ce, const char *reason, void *arg)
{
	struct end *e = arg;

	e->closed++;
	snprintf(e->reason, sizeof(e->reason), "%s", reason);
	if (e->free_on_close) {
		chan_ev_free(ce);
		e->ce = NULL;
	}
}

static const struct chan_ev_cbs cbs = { on_ready, on_frame, on_closed };

/* a initiates with node ni, b responds with node nr, over one pair. */
static void
start(struct end *a, struct end *b, const struct fx_node *ni,
    const struct fx_node *nr, int opts, const struct timeval *tmo)
{
	struct bufferevent *pair[2];

	memset(a, 0, sizeof(*a));
	memset(b, 0, sizeof(*b));
	a->name = "a";
	b->name = "b";
	a->other = b;
	b->other = a;
	assert_int_equal(bufferevent_pair_new(base, opts, pair), 0);
	b->ce = chan_ev_new(pair[1], fx_chan(CHAN_RESPONDER, nr, &trust),
	    &cbs, b, tmo);
	a->ce = chan_ev_new(pair[0], fx_chan(CHAN_INITIATOR, ni, &trust),
	    &cbs, a, tmo);
}

/* Runs the loop until *flag is set, or fails after LOOP_LIMIT_SEC. */
static void
run_until(const int *flag)
{
	uint64_t deadline = mm_now_ms() + LOOP_LIMIT_SEC * 1000;

	while (!*flag) {
		struct timeval tick = { 0, 10 * 1000 };

		if (mm_now_ms() > deadline)
			fail_msg("event loop: nothing happened");
		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
}

/* Runs the loop until it has nothing more to do (a pair has no socket:
 * the loop ends when every callback has run). */
static void
settle(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (int i = 0; i < 50; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
exchange(int opts)
{
	struct end a, b;
	uint8_t buf[4096];
	int i;
	uint64_t want = 0;

	start(&a, &b, &node_a, &node_b, opts, NULL);
	settle();
	assert_int_equal(a.ready, 1);
	assert_int_equal(b.ready, 1);
	assert_string_equal(chan_ev_peer(a.ce)->name, "ams-node1");
	assert_string_equal(chan_ev_peer(b.ce)->name, "fra-node1");
	b.echo = 1;
	for (i = 0; i < ROUNDS; i++) {
		size_t len = (size_t)(i * 37) % sizeof(buf);

		memset(buf, i & 0xff, sizeof(buf));
		assert_int_equal(chan_ev_send(a.ce, buf, len), 0);
		if (len > 0)
			want += (uint64_t)(i & 0xff);
		if (i % 17 == 0)
			settle();
	}
	settle();
	assert_int_equal(b.frames, ROUNDS);
	assert_int_equal(a.frames, ROUNDS);
	assert_int_equal(a.sum, want);
	assert_int_equal(b.sum, want);
	assert_int_equal(chan_ev_pending(a.ce), 0);

	/* a goes away: b sees the connection end between frames. */
	chan_ev_free(a.ce);
	settle();
	assert_int_equal(b.closed, 1);
	assert_string_equal(b.reason, "connection closed by peer");
	assert_int_equal(chan_ev_send(b.ce, buf, 1), -1);
	chan_ev_free(b.ce);
	chan_ev_free(NULL);
}

static void
test_exchange(void **state)
{
	exchange(0);
}

static void
test_exchange_deferred(void **state)
{
	exchange(BEV_OPT_DEFER_CALLBACKS);
}

static void
test_large_frames(void **state)
{
	struct end a, b;
	uint8_t *big = malloc(CHAN_FRAME_MAX);

	memset(big, 0x5a, CHAN_FRAME_MAX);
	start(&a, &b, &node_a, &node_b, BEV_OPT_DEFER_CALLBACKS, NULL);
	settle();
	assert_int_equal(chan_ev_send(a.ce, big, CHAN_FRAME_MAX), 0);
	assert_int_equal(chan_ev_send(a.ce, big, CHAN_FRAME_MAX), 0);
	assert_int_equal(chan_ev_send(a.ce, big, CHAN_FRAME_MAX + 1), -1);
	settle();
	assert_int_equal(b.frames, 2);
	assert_int_equal(b.biggest, CHAN_FRAME_MAX);
	free(big);
	chan_ev_free(a.ce);
	chan_ev_free(b.ce);
}

/* The responder refuses an initiator with an unknown key. */
static void
test_refused(void **state)
{
	struct end a, b;

	start(&a, &b, &node_unknown, &node_b, 0, NULL);
	b.free_on_close = 1;
	settle();
	assert_int_equal(b.closed, 1);
	assert_non_null(strstr(b.reason, "not signed by the cluster root"));
	assert_int_equal(b.ready, 0);
	assert_null(b.ce);
	/* The initiator thought itself done, then saw the connection end. */
	assert_int_equal(a.ready, 1);
	assert_int_equal(a.closed, 1);
	assert_string_equal(a.reason, "connection closed by peer");
	assert_int_equal(chan_ev_send(a.ce, (const uint8_t *)"x", 1), -1);
	chan_ev_free(a.ce);
}

/* A peer that sends nothing: the handshake deadline ends it. */
static void
test_handshake_timeout(void **state)
{
	struct bufferevent *pair[2];
	struct timeval tmo = { 0, 100 * 1000 };
	struct end b;

	memset(&b, 0, sizeof(b));
	assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
	b.ce = chan_ev_new(pair[1], fx_chan(CHAN_RESPONDER, &node_b, &trust),
	    &cbs, &b, &tmo);
	b.free_on_close = 1;
	/* A drip of valid bytes does not extend a whole-handshake limit. */
	bufferevent_write(pair[0], "MMCH", 4);
	run_until(&b.closed);
	assert_int_equal(b.closed, 1);
	assert_string_equal(b.reason, "handshake timed out");
	assert_null(b.ce);
	bufferevent_free(pair[0]);
}

/* Garbage instead of a HELLO. */
static void
test_garbage(void **state)
{
	struct bufferevent *pair[2];
	struct end b;

	memset(&b, 0, sizeof(b));
	assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
	b.ce = chan_ev_new(pair[1], fx_chan(CHAN_RESPONDER, &node_b, &trust),
	    &cbs, &b, NULL);
	bufferevent_write(pair[0], "GET / HTTP/1.1\r\n\r\n", 18);
	settle();
	assert_int_equal(b.closed, 1);
	assert_non_null(strstr(b.reason, "bad magic"));
	chan_ev_free(b.ce);
	bufferevent_free(pair[0]);
}

/* A peer that hangs up inside a frame. */
static void
test_truncated(void **state)
{
	struct bufferevent *pair[2];
	struct end a;
	struct chan *peer;
	struct fx_trust t = trust;
	const uint8_t *p, *pl;
	size_t n, used, plen;
	uint8_t frame[CHAN_FRAME_LEN(8)];
	struct evbuffer *in;

	/* b is driven by hand with the pure channel. */
	memset(&a, 0, sizeof(a));
	assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
	bufferevent_enable(pair[1], EV_READ);
	peer = fx_chan(CHAN_RESPONDER, &node_b, &t);
	a.ce = chan_ev_new(pair[0], fx_chan(CHAN_INITIATOR, &node_a, &trust),
	    &cbs, &a, NULL);
	settle();
	in = bufferevent_get_input(pair[1]);
	n = evbuffer_get_length(in);
	p = evbuffer_pullup(in, -1);
	assert_int_equal(chan_feed(peer, p, n, &used, &pl, &plen), CHAN_AGAIN);
	evbuffer_drain(in, n);
	p = chan_out(peer, &n);
	bufferevent_write(pair[1], p, n);
	chan_out_done(peer, n);
	settle();
	assert_int_equal(a.ready, 1);
	n = evbuffer_get_length(in);
	p = evbuffer_pullup(in, -1);
	assert_int_equal(chan_feed(peer, p, n, &used, &pl, &plen),
	    CHAN_ESTABLISHED);
	evbuffer_drain(in, n);
	assert_int_equal(chan_seal(peer, (const uint8_t *)"12345678", 8,
	    frame, sizeof(frame)), (long)sizeof(frame));
	bufferevent_write(pair[1], frame, sizeof(frame) - 5);
	settle();
	assert_int_equal(a.frames, 0);
	bufferevent_flush(pair[1], EV_WRITE, BEV_FINISHED);	/* EOF */
	bufferevent_free(pair[1]);
	settle();
	assert_int_equal(a.closed, 1);
	assert_non_null(strstr(a.reason, "truncated"));
	chan_ev_free(a.ce);
	chan_free(peer);
}

/* Freed from inside its frame callback with more frames queued behind:
 * none of them is delivered, nothing is touched after the free. */
static void
test_free_in_callback(void **state)
{
	struct end a, b;
	int i;

	start(&a, &b, &node_a, &node_b, 0, NULL);
	settle();
	b.free_on_frame = 1;
	for (i = 0; i < 5; i++)
		assert_int_equal(chan_ev_send(a.ce, (const uint8_t *)"f", 1),
		    0);
	settle();
	assert_int_equal(b.frames, 1);
	assert_null(b.ce);
	assert_int_equal(b.closed, 0);
	assert_int_equal(a.closed, 1);
	chan_ev_free(a.ce);
}

static int
setup(void **state)
{
	if (dkey_init() < 0)
		return -1;
	if ((base = event_base_new()) == NULL)
		return -1;
	dkey_generate(&root);
	dkey_generate(&rogue);
	fx_make_node(&node_a, &root, ROLE_NODE, "fra", "fra-node1", 0);
	fx_make_node(&node_b, &root, ROLE_NODE, "ams", "ams-node1", 0);
	fx_make_node(&node_unknown, &rogue, ROLE_NODE, "fra", "fra-node9",
	    0);
	memset(&trust, 0, sizeof(trust));
	memcpy(trust.root_pk, root.pk, DKEY_PK_LEN);
	return 0;
}

static int
teardown(void **state)
{
	event_base_free(base);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange),
		cmocka_unit_test(test_exchange_deferred),
		cmocka_unit_test(test_large_frames),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_free_in_callback),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
