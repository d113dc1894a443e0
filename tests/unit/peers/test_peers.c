/* The directory agent's peers and check runner on a real event loop: a
 * client channel over TCP on 127.0.0.1 to a live peers instance sends
 * typed frames. Check messages are answered in check frames; empty
 * frames, frames of an unknown type and untyped messages are dropped
 * without ending the channel; a check the runner starts asks the member
 * in typed frames and hands its answer to the requester's callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "chan_ev.h"
#include "check.h"
#include "check_run.h"
#include "fixture.h"
#include "gossip.h"
#include "jobs.h"
#include "mm_config.h"
#include "mm_util.h"
#include "ops.h"
#include "peers.h"
#include "store.h"

#define LOOP_LIMIT_SEC 10

static void
fx_rmdir(const char *dir)
{
	static const char *const files[] = { "data.mdb", "lock.mdb" };
	char path[128];
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		(void)remove(path);
	}
	(void)remove(dir);
}

/* What the client end of the channel saw. */
struct client {
	struct chan_ev *ce;
	int ready, closed;
	int checks;			/* check frames in */
	int others;			/* frames of another type than gossip */
	struct check_msg *last;		/* the last check message */
	uint8_t *last_buf;		/* its bytes (last points into them) */
	uint64_t req_id;		/* of the last request in */
	int roots_req, scrubs_req;	/* requests in */
	uint8_t root[CHECK_HASH_LEN];	/* the peers' root, once answered */
	uint64_t users;
};

/* What the requester of a check was told. */
struct done {
	int calls;
	enum ctl_status status;
	char msg[256];
	size_t rows;
};

struct fx {
	char dir[64], root_path[96];
	struct dkey root;
	struct fx_node node_a, node_b;
	struct fx_trust trust;
	struct mm_config *conf;
	struct ops *ops;
	struct event_base *base;
	struct peers *peers;
	struct jobs *writer;
	struct jobs *reader;
	struct check_run *cr;
	struct client cl;
	struct sockaddr_in addr;	/* the peers' listener */
	uint8_t *buf;			/* type byte || message */
	struct check_msg *msg;
};

static void
on_ready(struct chan_ev *ce, const struct chan_peer *peer, void *arg)
{
	struct client *cl = arg;

	assert_string_equal(peer->name, "b-node");
	cl->ready++;
}

static void
on_frame(struct chan_ev *ce, const uint8_t *p, size_t len, void *arg)
{
	static struct gossip_msg gm;
	struct client *cl = arg;
	const char *why = NULL;

	assert_true(len >= 1);
	if (p[0] == PEER_FRAME_GOSSIP) {
		/* The peers' gossip probes us: a gossip message after the
		 * type byte. */
		assert_int_equal(gossip_msg_decode(p + 1, len - 1, &gm, &why),
		    0);
		return;
	}
	if (p[0] != PEER_FRAME_CHECK) {
		cl->others++;
		return;
	}
	free(cl->last_buf);
	cl->last_buf = malloc(len);
	assert_non_null(cl->last_buf);
	memcpy(cl->last_buf, p, len);
	assert_int_equal(check_msg_decode(cl->last_buf + 1, len - 1, cl->last,
	    &why), 0);
	cl->checks++;
	if (cl->last->type == CHECK_ROOT_REQ) {
		cl->roots_req++;
		cl->req_id = cl->last->id;
	} else if (cl->last->type == CHECK_SCRUB_REQ) {
		cl->scrubs_req++;
		cl->req_id = cl->last->id;
	} else if (cl->last->type == CHECK_ROOT) {
		memcpy(cl->root, cl->last->root, CHECK_HASH_LEN);
		cl->users = cl->last->users;
	}
}

static void
on_closed(struct chan_ev *ce, const char *reason, void *arg)
{
	struct client *cl = arg;

	cl->closed++;
}

static const struct chan_ev_cbs cbs = { on_ready, on_frame, on_closed };

static void
run_until(struct fx *f, const int *n, int want)
{
	uint64_t deadline = mm_now_ms() + LOOP_LIMIT_SEC * 1000;

	while (*n < want) {
		struct timeval tick = { 0, 10 * 1000 };

		if (mm_now_ms() > deadline)
			fail_msg("event loop: nothing happened");
		event_base_loopexit(f->base, &tick);
		event_base_dispatch(f->base);
	}
}

/* Runs the loop for ms. */
static void
run_for(struct fx *f, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

/* Sends f->msg as a frame of type (0: without the type byte). */
static void
send_msg(struct fx *f, int type)
{
	size_t off = type != 0 ? 1 : 0;
	int n;

	n = check_msg_encode(f->msg, f->buf + off, CHECK_MSG_MAX);
	assert_true(n > 0);
	if (type != 0)
		f->buf[0] = (uint8_t)type;
	assert_int_equal(chan_ev_send(f->cl.ce, f->buf, off + (size_t)n), 0);
}

static void
msg_reset(struct check_msg *m, enum check_type type, uint64_t id)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->id = id;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct bufferevent *bev;
	enum ctl_status cst;
	char text[512], *err = NULL;
	int fd;

	assert_non_null(f);
	assert_int_equal(dkey_init(), 0);
	snprintf(f->dir, sizeof(f->dir), "peers-test-%d", (int)getpid());
	snprintf(f->root_path, sizeof(f->root_path), "%s.root.pub", f->dir);
	dkey_generate(&f->root);
	memcpy(f->trust.root_pk, f->root.pk, DKEY_PK_LEN);
	fx_make_node(&f->node_a, &f->root, ROLE_NODE, "a", "a-node", 0);
	fx_make_node(&f->node_b, &f->root, ROLE_NODE, "b", "b-node", 0);
	assert_int_equal(dkey_save_public(&f->root, f->root_path, &err), 0);
	snprintf(text, sizeof(text), "directory %s\nsite b\nnode-name b-node\n"
	    "node-key /nonexistent\nroot-key %s\nlisten imap 127.0.0.1:1\n"
	    "peer-listen 127.0.0.1:1\n", f->dir, f->root_path);
	f->conf = mm_config_parse(text, strlen(text), "test.conf", &err);
	assert_non_null(f->conf);
	f->ops = ops_new(f->conf, &f->node_b.key, &cst, &err);
	assert_non_null(f->ops);
	assert_int_equal(store_accept(ops_store(f->ops), f->node_b.cert,
	    f->node_b.cert_len, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(ops_store(f->ops), f->node_a.cert,
	    f->node_a.cert_len, FX_NOW), ACCEPT_STORED);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 8), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &slen), 0);
	f->addr = sin;

	f->base = event_base_new();
	assert_non_null(f->base);
	f->writer = jobs_new(f->base, ops_store(f->ops), "writer");
	assert_non_null(f->writer);
	f->peers = peers_new(f->base, f->conf, f->ops, &f->node_b.key, fd,
	    f->writer);
	assert_non_null(peers_gossip(f->peers));
	f->reader = jobs_new(f->base, ops_store(f->ops), "reader");
	assert_non_null(f->reader);
	f->cr = check_run_new(f->base, f->conf, f->ops, f->peers, f->reader);

	f->cl.last = calloc(1, sizeof(*f->cl.last));
	f->msg = calloc(1, sizeof(*f->msg));
	f->buf = malloc(CHECK_MSG_MAX + 1);
	assert_non_null(f->cl.last);
	assert_non_null(f->msg);
	assert_non_null(f->buf);
	bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	assert_int_equal(bufferevent_socket_connect(bev,
	    (struct sockaddr *)&sin, sizeof(sin)), 0);
	f->cl.ce = chan_ev_new(bev, fx_chan(CHAN_INITIATOR, &f->node_a,
	    &f->trust), &cbs, &f->cl, NULL);
	run_until(f, &f->cl.ready, 1);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	chan_ev_free(f->cl.ce);
	check_run_free(f->cr);
	jobs_free(f->reader);
	jobs_free(f->writer);
	peers_free(f->peers);
	event_base_free(f->base);
	ops_free(f->ops);
	mm_config_free(f->conf);
	dkey_clear(&f->node_a.key);
	dkey_clear(&f->node_b.key);
	free(f->cl.last_buf);
	free(f->cl.last);
	free(f->msg);
	free(f->buf);
	(void)remove(f->root_path);
	fx_rmdir(f->dir);
	free(f);
	return 0;
}

/* A check request in a check frame gets its answer in a check frame;
 * what is not a frame of a known type is dropped, and the channel stays. */
static void
test_typed_frames(void **state)
{
	struct fx *f = *state;
	static const uint8_t unknown[] = { 0x7f, 0x90 };
	static const uint8_t bad_gossip[] = { PEER_FRAME_GOSSIP, 0xc1 };

	msg_reset(f->msg, CHECK_ROOT_REQ, 7);
	send_msg(f, PEER_FRAME_CHECK);
	run_until(f, &f->cl.checks, 1);
	assert_int_equal(f->cl.last->type, CHECK_ROOT);
	assert_int_equal(f->cl.last->id, 7);
	assert_int_equal(f->cl.last->node.len, strlen("b-node"));
	assert_memory_equal(f->cl.last->node.p, "b-node", strlen("b-node"));

	/* Empty, unknown type, a check message without its type byte (as
	 * nodes sent it before frames were typed), a gossip frame that does
	 * not decode: each dropped. */
	assert_int_equal(chan_ev_send(f->cl.ce, unknown, 0), 0);
	assert_int_equal(chan_ev_send(f->cl.ce, unknown, sizeof(unknown)), 0);
	msg_reset(f->msg, CHECK_ROOT_REQ, 8);
	send_msg(f, 0);
	assert_int_equal(chan_ev_send(f->cl.ce, bad_gossip,
	    sizeof(bad_gossip)), 0);
	/* A check frame that does not decode: logged, no answer. */
	assert_int_equal(chan_ev_send(f->cl.ce, unknown + 1, 0), 0);
	f->buf[0] = PEER_FRAME_CHECK;
	f->buf[1] = 0x90;
	assert_int_equal(chan_ev_send(f->cl.ce, f->buf, 2), 0);

	/* A scrub is answered when it ends, off the loop. */
	msg_reset(f->msg, CHECK_SCRUB_REQ, 9);
	send_msg(f, PEER_FRAME_CHECK);
	run_until(f, &f->cl.checks, 2);
	run_for(f, 100);
	assert_int_equal(f->cl.checks, 2);
	assert_int_equal(f->cl.last->type, CHECK_SCRUB);
	assert_int_equal(f->cl.last->id, 9);
	assert_true(f->cl.last->complete);
	assert_int_equal(f->cl.last->damaged, 0);
	assert_int_equal(f->cl.others, 0);
	assert_int_equal(f->cl.closed, 0);
}

static void
on_done(void *arg, enum ctl_status status, const char *msg,
    struct ctl_rows *rows)
{
	struct done *d = arg;

	d->calls++;
	d->status = status;
	snprintf(d->msg, sizeof(d->msg), "%s", msg);
	d->rows = rows->n;
}

/* Answers the running check's requests as a node with the same records
 * would. */
static void
answer_same(struct fx *f)
{
	msg_reset(f->msg, CHECK_ROOT, f->cl.req_id);
	f->msg->site.p = (const uint8_t *)"a";
	f->msg->site.len = 1;
	f->msg->node.p = (const uint8_t *)"a-node";
	f->msg->node.len = strlen("a-node");
	f->msg->root = f->cl.root;
	f->msg->users = f->cl.users;
	send_msg(f, PEER_FRAME_CHECK);
	msg_reset(f->msg, CHECK_SCRUB, f->cl.req_id);
	f->msg->complete = true;
	send_msg(f, PEER_FRAME_CHECK);
}

/* The runner asks every member in check frames; one check at a time; a
 * requester that goes away drops its check; the answer goes to the
 * requester's callback. */
static void
test_check_run(void **state)
{
	struct fx *f = *state;
	struct done d1, d2, d3;

	memset(&d1, 0, sizeof(d1));
	memset(&d2, 0, sizeof(d2));
	memset(&d3, 0, sizeof(d3));
	assert_true(check_run_takes(f->cr, "check", 0));
	assert_false(check_run_takes(f->cr, "check", 1));
	assert_false(check_run_takes(f->cr, "verify", 0));
	assert_false(check_run_takes(NULL, "check", 0));

	/* The peers' root, to answer with. */
	msg_reset(f->msg, CHECK_ROOT_REQ, 1);
	send_msg(f, PEER_FRAME_CHECK);
	run_until(f, &f->cl.checks, 1);

	assert_int_equal(gossip_add_seed(peers_gossip(f->peers), "a-node", "a",
	    "127.0.0.1:1"), 0);
	check_run_start(f->cr, on_done, &d1);
	run_until(f, &f->cl.scrubs_req, 1);
	run_until(f, &f->cl.roots_req, 1);
	assert_int_equal(d1.calls, 0);

	check_run_start(f->cr, on_done, &d2);
	assert_int_equal(d2.calls, 1);
	assert_int_equal(d2.status, CTL_TEMP);
	assert_string_equal(d2.msg, "a check is running already");

	check_run_cancel(f->cr, &d2);		/* not the running one */
	check_run_start(f->cr, on_done, &d2);
	assert_int_equal(d2.calls, 2);
	check_run_cancel(f->cr, &d1);
	check_run_cancel(NULL, &d1);

	check_run_start(f->cr, on_done, &d3);
	run_until(f, &f->cl.scrubs_req, 2);
	run_until(f, &f->cl.roots_req, 2);
	answer_same(f);
	run_until(f, &d3.calls, 1);
	assert_true(d3.rows >= 1);		/* the header at least */
	assert_int_equal(d1.calls, 0);
	assert_int_equal(f->cl.others, 0);
}

/* Another node dials the peers and shows n's certificate. */
static void
dial(struct fx *f, struct client *cl, const struct fx_node *n)
{
	struct bufferevent *bev;

	memset(cl, 0, sizeof(*cl));
	bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	assert_int_equal(bufferevent_socket_connect(bev,
	    (struct sockaddr *)&f->addr, sizeof(f->addr)), 0);
	cl->ce = chan_ev_new(bev, fx_chan(CHAN_INITIATOR, n, &f->trust), &cbs,
	    cl, NULL);
}

/* The channel's trust callback (peers_cert_check) on real channels: a
 * node whose certificate the store lacks is taken, and the writer stores
 * that certificate; one whose key is revoked, or whose role runs no
 * node, is refused in the handshake (its side sees the connection end). */
static void
test_peer_trust(void **state)
{
	struct fx *f = *state;
	struct fx_node fresh, revoked, oper;
	struct client c1, c2, c3;
	struct record_revoke v;
	struct record_cert c;
	uint8_t env[RECORD_MAX];
	const char *why = NULL;
	uint64_t deadline;
	int n;

	fx_make_node(&fresh, &f->root, ROLE_NODE, "a", "a-fresh", 0);
	fx_make_node(&revoked, &f->root, ROLE_NODE, "a", "a-revoked", 0);
	fx_make_node(&oper, &f->root, ROLE_OPERATOR, "a", "a-oper", 0);
	assert_int_equal(store_accept(ops_store(f->ops), revoked.cert,
	    revoked.cert_len, FX_NOW), ACCEPT_STORED);
	assert_int_equal(store_accept(ops_store(f->ops), oper.cert,
	    oper.cert_len, FX_NOW), ACCEPT_STORED);
	memset(&v, 0, sizeof(v));
	memcpy(v.key_id, revoked.key.id, DKEY_ID_LEN);
	v.timestamp = FX_NOW;
	strcpy(v.reason, "test");
	strcpy(v.origin, "root");
	v.origin_seq = 2;
	n = record_encode_revoke(&v, &f->root, env, sizeof(env), &why);
	assert_true(n > 0);
	assert_int_equal(store_accept(ops_store(f->ops), env, (size_t)n,
	    FX_NOW), ACCEPT_STORED);

	dial(f, &c1, &fresh);
	dial(f, &c2, &revoked);
	dial(f, &c3, &oper);
	run_until(f, &c2.closed, 1);
	run_until(f, &c3.closed, 1);
	/* The fresh node's certificate reaches the store off the loop. */
	deadline = mm_now_ms() + LOOP_LIMIT_SEC * 1000;
	while (store_get_cert(ops_store(f->ops), fresh.key.id, &c) != 1) {
		if (mm_now_ms() > deadline)
			fail_msg("certificate not learnt");
		run_for(f, 10);
	}
	assert_string_equal(c.name, "a-fresh");
	run_for(f, 100);
	assert_int_equal(c1.ready, 1);
	assert_int_equal(c1.closed, 0);
	chan_ev_free(c1.ce);
	chan_ev_free(c2.ce);
	chan_ev_free(c3.ce);
	dkey_clear(&fresh.key);
	dkey_clear(&revoked.key);
	dkey_clear(&oper.key);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_typed_frames, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_check_run, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_peer_trust, setup,
		    teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
