/* The directory agent's process shell: the node key loaded at start, the
 * control socket mmctl talks to (bind, accept, the peer's credentials,
 * request frames in and answers out), signals, and the timers that purge
 * tombstones and publish metrics. The requests themselves run in
 * directory/ops.c, off the loop on the store threads (jobs.h), gossip
 * with the other nodes in directory/peers.c, and `check` across nodes in
 * directory/check_run.c. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netdb.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "check_run.h"
#include "dir.h"
#include "ctl.h"
#include "gossip.h"
#include "ichan.h"
#include "jobs.h"
#include "mm_imsg.h"
#include "move.h"
#include "mm_metrics.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "peers.h"
#include "store.h"

#define AGENT_CLIENTS_MAX 16	/* mmctl connections at once */
#define AGENT_IDLE_S 120	/* an mmctl that sends nothing is dropped */
#define AGENT_PURGE_S 3600	/* tombstone purge period */
#define AGENT_ROWS_PER_FRAME (256 * 1024)	/* bytes of rows per frame */
/* A listing's next slice is read once less than this waits to be sent to
 * its client: a slow reader costs about this and a slice or two. */
#define AGENT_STREAM_LOWAT (512 * 1024)
#define AGENT_SOCKET_DIR_MODE 0755
#define AGENT_SOCKET_MODE 0660
#define PEER_BACKLOG 64
#define AGENT_PEER_GROUPS 64	/* a peer's groups read without malloc */
#define AGENT_PEER_GROUPS_MAX 65536	/* NGROUPS_MAX of Linux */

int
agent_load_key(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r)
{
	struct stat sb;
	char *err = NULL;

	/* The two usual mistakes, said in words an operator acts on. */
	if (stat(conf->node_key, &sb) != 0 && errno == ENOENT) {
		*errstr_r = xasprintf("node-key %s: missing (create one with: "
		    "mmctl keys new %s)", conf->node_key, conf->node_key);
		return -1;
	}
	if (S_ISREG(sb.st_mode) && (sb.st_mode & 077) != 0) {
		*errstr_r = xasprintf("node-key %s: is readable by group or "
		    "others (chmod 600 %s)", conf->node_key, conf->node_key);
		return -1;
	}
	if (dkey_load_secret(conf->node_key, key_r, &err) != 0) {
		*errstr_r = xasprintf("node-key %s: %s", conf->node_key, err);
		free(err);
		return -1;
	}
	return 0;
}

/* ---- the control socket --------------------------------------------- */

/* The socket file this process bound, so that only that one is removed. */
static struct {
	dev_t dev;
	ino_t ino;
	bool set;
} bound;

void
agent_unbind_socket(const struct mm_config *conf, int fd)
{
	struct stat sb;

	if (fd >= 0)
		close(fd);
	if (bound.set && lstat(conf->control_socket, &sb) == 0 &&
	    S_ISSOCK(sb.st_mode) && sb.st_dev == bound.dev &&
	    sb.st_ino == bound.ino && unlink(conf->control_socket) != 0)
		log_warn("- ctl unlink path=%s", conf->control_socket);
	bound.set = false;
}

int
agent_bind_socket(const struct mm_config *conf, uid_t uid, gid_t gid,
    char **errstr_r)
{
	struct stat sb;
	struct sockaddr_un sun;
	const char *path = conf->control_socket;
	char *dir = NULL, *slash;
	mode_t old;
	int fd = -1, probe = -1;
	/* admin-group's members must be able to connect; the run group's
	 * need not. */
	gid_t sgid = conf->admin_group != NULL ? conf->admin_gid : gid;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*errstr_r = xasprintf("control-socket %s: path too long",
		    path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	/* The socket's directory is often on a tmpfs that a reboot empties. */
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, AGENT_SOCKET_DIR_MODE) == 0 &&
		    (uid != (uid_t)-1 || gid != (gid_t)-1))
			(void)chown(dir, uid, gid);
	}
	free(dir);
	/* A live agent answers; a stale file from a crash does not. */
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 && connect(probe, (struct sockaddr *)&sun,
	    sizeof(sun)) == 0) {
		close(probe);
		*errstr_r = xasprintf("control-socket %s: another node is "
		    "running", path);
		return -1;
	}
	if (probe >= 0)
		close(probe);
	(void)unlink(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0)
		goto fail;
	/* Never a moment with wider permissions than 0660. */
	old = umask(0117);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		umask(old);
		goto fail;
	}
	umask(old);
	if (lstat(path, &sb) == 0) {
		bound.dev = sb.st_dev;
		bound.ino = sb.st_ino;
		bound.set = true;
	}
	if (chmod(path, AGENT_SOCKET_MODE) != 0 ||
	    ((uid != (uid_t)-1 || sgid != (gid_t)-1) &&
	    chown(path, uid, sgid) != 0) || listen(fd, AGENT_CLIENTS_MAX) != 0)
		goto fail;
	return fd;
fail:
	*errstr_r = xasprintf("control-socket %s: %s", path, strerror(errno));
	agent_unbind_socket(conf, fd);
	return -1;
}

int
agent_bind_peer(const struct mm_config *conf, char **errstr_r)
{
	struct addrinfo hints, *res = NULL;
	const char *host = conf->peer_listen_host;
	int fd = -1, on = 1, gai;

	if (host == NULL)
		return -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = strcmp(host, "*") == 0 ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	gai = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host,
	    conf->peer_listen_port, &hints, &res);
	if (gai != 0) {
		*errstr_r = xasprintf("peer-listen %s:%s: %s", host,
		    conf->peer_listen_port, gai_strerror(gai));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC |
	    SOCK_NONBLOCK, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on,
	    sizeof(on)) != 0)
		goto fail;
	if (res->ai_family == AF_INET6) {
		int off = 0;

		/* "*" takes IPv4 too. */
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
		    sizeof(off));
	}
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, PEER_BACKLOG) != 0)
		goto fail;
	freeaddrinfo(res);
	return fd;
fail:
	*errstr_r = xasprintf("peer-listen %s:%s: %s", host,
	    conf->peer_listen_port, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

struct creq;

struct client {
	struct bufferevent *bev;
	struct client *next;
	uid_t uid;		/* the peer when it connected */
	pid_t pid;
	bool admin;		/* root or in admin-group: may write */
	struct creq *req;	/* the request on a store thread, or NULL */
	bool drain_wait;	/* its next slice waits for the output */
};

/* A client's request on a store thread, a slice per job: ops_req_run and
 * the frames made there, the frames sent from the loop. The client reads
 * no other request meanwhile. */
struct creq {
	struct client *c;	/* NULL once the client is gone */
	char op[CTL_OP_MAX + 1];
	struct ops_req *req;
	struct jobs *on;	/* the writer for a request that writes */
	bool writes;
	struct evbuffer *out;	/* the slice's frames */
	bool last;
};

static struct {
	const struct mm_config *conf;
	struct ops *ops;
	struct peers *peers;		/* with peer-listen only */
	struct check_run *cr;		/* with peers */
	struct jobs *writer;		/* store writes, in order */
	struct jobs *reader;		/* long reads */
	struct event_base *base;
	struct client *clients;
	size_t n_clients;
	struct event *purge_ev;
	struct mm_metrics *metrics;	/* shared with the workers; or NULL */
	struct event *metrics_ev;
	bool stopping;			/* the loop is over */
	struct ichan *ic;		/* to the parent, and the workers */
	struct moves *moves;		/* with peers */
	struct wreq *wreqs;		/* `sessions`, `kick`: waiting for
					 * the workers */
	uint32_t next_id;
} ag;

static void creq_free(struct creq *q);
static void wreq_cancel(struct client *c);

static void
client_free(struct client *c)
{
	struct client **pp;

	check_run_cancel(ag.cr, c);
	wreq_cancel(c);
	if (c->req != NULL) {
		if (!ag.stopping)
			log_info("- ctl client-gone request=%s", c->req->op);
		if (c->drain_wait)
			creq_free(c->req);	/* no slice of it runs */
		else
			c->req->c = NULL;	/* dropped after its slice */
	}
	for (pp = &ag.clients; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	bufferevent_free(c->bev);
	ag.n_clients--;
	free(c);
}

/* One frame of rows [from, to) of rows; to out. */
static void
frame_add(struct evbuffer *out, enum ctl_type type, enum ctl_status status,
    const char *msg, const struct ctl_rows *rows, size_t from, size_t to)
{
	struct ctl_rows part;
	const char *why;
	uint8_t *f;
	size_t len;

	/* The rows themselves, not a copy. */
	memset(&part, 0, sizeof(part));
	part.n = to - from;
	part.row = part.n > 0 ? &rows->row[from] : NULL;
	f = ctl_encode_response(type, status, msg, &part, &len, &why);
	if (f == NULL && type == CTL_END) {
		/* Still an end, so that the client is not left waiting. */
		log_warnx("- ctl encode-failed reason=\"%s\"", why);
		f = ctl_encode_response(CTL_END, status == CTL_OK ?
		    CTL_FAILED : status, why, NULL, &len, &why);
	}
	if (f != NULL)
		evbuffer_add(out, f, len);
	free(f);
}

/* Adds an answer's frames to out: RESPONSE frames of at most
 * AGENT_ROWS_PER_FRAME bytes of rows, then, when last, END with the
 * status (else nothing more). */
static void
frames_add(struct evbuffer *out, bool last, enum ctl_status status,
    const char *msg, const struct ctl_rows *rows)
{
	size_t i, from = 0, bytes = 0;

	for (i = 0; i < rows->n; i++) {
		bytes += ctl_row_bytes(&rows->row[i]);
		if (bytes >= AGENT_ROWS_PER_FRAME ||
		    i + 1 - from == CTL_ROWS_MAX ||
		    (!last && i + 1 == rows->n)) {
			frame_add(out, CTL_RESPONSE, CTL_OK, "", rows, from,
			    i + 1);
			from = i + 1;
			bytes = 0;
		}
	}
	if (last)
		frame_add(out, CTL_END, status, msg, rows, from, rows->n);
}

static void
client_reply(struct client *c, enum ctl_status status, const char *msg,
    struct ctl_rows *rows)
{
	frames_add(bufferevent_get_output(c->bev), true, status, msg, rows);
}

/* Whether gid is the peer's primary group or one of its supplementary
 * groups, as they were when it connected. Kernels before 4.13 have no
 * SO_PEERGROUPS (ENOPROTOOPT): then the primary group only. */
#ifdef SO_PEERGROUPS
static bool
peer_in_group(int fd, gid_t primary, gid_t gid)
{
	gid_t some[AGENT_PEER_GROUPS], *g = some;
	socklen_t len = sizeof(some);
	size_t i;
	bool in = false;

	if (primary == gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0) {
		/* ERANGE: more groups than fit; len says how many. */
		if (errno != ERANGE ||
		    len > AGENT_PEER_GROUPS_MAX * sizeof(gid_t))
			return false;
		g = xmalloc(len == 0 ? 1 : len);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0)
			len = 0;
	}
	for (i = 0; i < len / sizeof(gid_t) && !in; i++)
		in = g[i] == gid;
	if (g != some)
		free(g);
	return in;
}
#else
static bool
peer_in_group(int fd, gid_t primary, gid_t gid)
{
	return primary == gid;
}
#endif

/* Who is on the other end of fd: root and admin-group may write. So may
 * the user a node without `user` runs as: it read the node key and can
 * write the store with mmctl --direct anyway. A node that dropped root
 * runs as a service account (once nobody) whose other processes must not
 * write. 0, or -1 when the kernel cannot say. */
static int
client_identify(struct client *c, int fd)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 ||
	    len != sizeof(uc))
		return -1;
	c->uid = uc.uid;
	c->pid = uc.pid;
	c->admin = uc.uid == 0 ||
	    (ag.conf->user == NULL && uc.uid == geteuid()) ||
	    (ag.conf->admin_group != NULL &&
	    peer_in_group(fd, uc.gid, ag.conf->admin_gid));
	return 0;
}

/* Whether c may run op; if not, the refusal is logged and *msg_r
 * (malloc'd) says why and what would be allowed. An unknown op passes:
 * ops_exec refuses it without running anything. */
static bool
client_may(const struct client *c, const char *op, char **msg_r)
{
	const struct mm_config *conf = ag.conf;

	if (c->admin || !ops_writes(op))
		return true;
	log_warnx("- ctl refused request=%s uid=%lu pid=%ld reason=not-admin",
	    op, (unsigned long)c->uid, (long)c->pid);
	if (conf->admin_group != NULL)
		*msg_r = xasprintf("permission denied: uid %lu may not change "
		    "the directory; run mmctl as root or as a member of group "
		    "%s (admin-group in %s)", (unsigned long)c->uid,
		    conf->admin_group, conf->path);
	else
		*msg_r = xasprintf("permission denied: uid %lu may not change "
		    "the directory; run mmctl as root (or set admin-group in "
		    "%s to let a group of operators do it)",
		    (unsigned long)c->uid, conf->path);
	return false;
}

/* The answer of the check c asked for (check_run.h): c reads requests
 * again. */
static void
client_check_done(void *arg, enum ctl_status status, const char *msg,
    struct ctl_rows *rows)
{
	struct client *c = arg;

	client_reply(c, status, msg, rows);
	bufferevent_enable(c->bev, EV_READ);
}

/* ---- requests on the store threads ---------------------------------- */

static void client_read_cb(struct bufferevent *bev, void *arg);

static void
creq_free(struct creq *q)
{
	ops_req_free(q->req);
	if (q->out != NULL)
		evbuffer_free(q->out);
	free(q);
}

/* On the thread: the next slice, and its frames. */
static void
creq_run(struct store *st, void *arg)
{
	struct creq *q = arg;
	struct ctl_rows rows;
	enum ctl_status status = CTL_OK;
	char *msg = NULL;

	ctl_rows_init(&rows);
	q->last = ops_req_run(q->req, st, &rows, &status, &msg) == 0;
	if (q->out == NULL && (q->out = evbuffer_new()) == NULL)
		fatalx("out of memory");
	frames_add(q->out, q->last, status, msg, &rows);
	ctl_rows_clear(&rows);
	free(msg);
}

static void creq_done(void *arg);

/* Whether c hung up. It sends nothing while its answer comes (reading is
 * off meanwhile), so a peek that reads 0 bytes says so. */
static bool
client_hung_up(const struct client *c)
{
	ssize_t n;
	char b;

	n = recv(bufferevent_getfd(c->bev), &b, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	    errno != EINTR);
}

/* Queues c's next slice, unless its client has more than
 * AGENT_STREAM_LOWAT still to read: then client_write_cb does once it has
 * read enough. */
static void
client_next_slice(struct client *c)
{
	struct creq *q = c->req;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) >
	    AGENT_STREAM_LOWAT) {
		c->drain_wait = true;
		return;
	}
	c->drain_wait = false;
	jobs_add(q->on, creq_run, creq_done, q);
}

/* On the loop: what the slice stored goes out by gossip, its frames to
 * the client; then the next slice, or the client's next request. */
static void
creq_done(void *arg)
{
	struct creq *q = arg;
	struct client *c = q->c;
	struct evbuffer *in;

	if (q->writes)
		ops_req_publish(ag.ops, q->req);
	if (c != NULL && !ag.stopping && !q->last && client_hung_up(c)) {
		client_free(c);
		c = NULL;
	}
	if (c == NULL || ag.stopping) {
		/* Gone, or stopping: the walk ends here. */
		if (c != NULL)
			c->req = NULL;
		creq_free(q);
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(c->bev), q->out);
	if (!q->last) {
		client_next_slice(c);
		return;
	}
	c->req = NULL;
	creq_free(q);
	bufferevent_enable(c->bev, EV_READ);
	in = bufferevent_get_input(c->bev);
	if (evbuffer_get_length(in) > 0)
		client_read_cb(c->bev, c);
}

static void
client_write_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	if (c->req != NULL && c->drain_wait)
		client_next_slice(c);
}

/* Runs m on a store thread: the writer for a request that writes (in
 * order with every other store write), else the reader. */
static void
client_start(struct client *c, const struct ctl_msg *m)
{
	struct creq *q = xcalloc(1, sizeof(*q));

	q->c = c;
	mm_strlcpy(q->op, m->op, sizeof(q->op));
	q->writes = ops_writes(m->op);
	q->on = q->writes ? ag.writer : ag.reader;
	q->req = ops_req_new(ag.ops, m->op, m->argc, m->argv);
	c->req = q;
	bufferevent_disable(c->bev, EV_READ);
	jobs_add(q->on, creq_run, creq_done, q);
}

/* ---- requests to every worker: `sessions`, `kick` ---------------------
 *
 * A request goes to every worker through the parent, which says how many
 * it reached (FANOUT); each worker answers: `sessions` with its sessions in
 * one or more frames, the last one marked; `kick` with how many sessions
 * it ended. The client is answered when every worker reached has, or after
 * AGENT_WORKERS_MS with what came and the number that did not answer. */

#define AGENT_WORKERS_MS 3000

static const char *const sessions_header[] = {
	"worker", "id", "user", "client", "proto", "state", "backend", "since",
	"bytes_in", "bytes_out",
};

struct wreq {
	struct wreq *next;
	struct client *c;		/* or: */
	move_workers_cb cb;		/* the move engine's */
	void *cbarg;
	uint8_t type;			/* SESSIONS_REQ, KICK or ROUTE */
	uint32_t id;
	int64_t workers;		/* -1 until the parent says */
	uint64_t done;			/* workers that answered in full */
	uint64_t kicked;		/* KICK: sessions ended */
	char user[MM_IMSG_USER_MAX + 1];
	struct ctl_rows rows;
	struct event *timer;
};

static void
wreq_free(struct wreq *q)
{
	struct wreq **pp;

	for (pp = &ag.wreqs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	event_free(q->timer);
	ctl_rows_clear(&q->rows);
	free(q);
}

static void
wreq_answer(struct wreq *q)
{
	struct client *c = q->c;
	bool all = q->workers >= 0 && (uint64_t)q->workers == q->done;
	char *what, *msg;
	size_t n = q->rows.n > 0 ? q->rows.n - 1 : 0;

	if (c == NULL) {
		move_workers_cb cb = q->cb;
		void *cbarg = q->cbarg;
		uint64_t count = q->kicked;

		wreq_free(q);
		if (cb != NULL)
			cb(cbarg, all, count);
		return;
	}

	if (q->type == MM_IMSG_KICK) {
		what = xasprintf("%llu sessions ended",
		    (unsigned long long)q->kicked);
		log_info("- ctl kick user=%s sessions=%llu workers=%llu/%lld",
		    q->user, (unsigned long long)q->kicked,
		    (unsigned long long)q->done, (long long)q->workers);
	} else {
		what = xasprintf("%zu sessions", n);
	}
	if (q->workers < 0)
		msg = xasprintf("%s; the workers could not be asked", what);
	else if (!all)
		msg = xasprintf("%s; %llu of %lld workers did not answer in "
		    "time", what,
		    (unsigned long long)((uint64_t)q->workers - q->done),
		    (long long)q->workers);
	else
		msg = xasprintf("%s on %llu workers", what,
		    (unsigned long long)q->done);
	client_reply(c, all ? CTL_OK : CTL_TEMP, msg, &q->rows);
	free(what);
	free(msg);
	wreq_free(q);
	bufferevent_enable(c->bev, EV_READ);
}

static void
wreq_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	wreq_answer(arg);
}

static void
wreq_cancel(struct client *c)
{
	struct wreq *q, *next;

	for (q = ag.wreqs; q != NULL; q = next) {
		next = q->next;
		if (q->c == c)
			wreq_free(q);
	}
}

/* Sends a request of type with body b to every worker, for client c
 * (answered by wreq_answer) or, c NULL, for the move engine: cb(cbarg,
 * all answered, count) once, from the loop. */
static void
workers_ask(struct client *c, uint8_t type, const struct mm_imsg_body *b,
    const char *user, move_workers_cb cb, void *cbarg)
{
	struct timeval tv = { AGENT_WORKERS_MS / 1000,
		(AGENT_WORKERS_MS % 1000) * 1000 };
	uint8_t out[MM_IMSG_USER_MAX + 3 * MM_IMSG_TEXT_MAX + 32];
	struct wreq *q;
	int len = mm_imsg_body_encode(type, b, out, sizeof(out));

	q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->cb = cb;
	q->cbarg = cbarg;
	q->type = type;
	q->id = ++ag.next_id;
	q->workers = -1;
	mm_strlcpy(q->user, user, sizeof(q->user));
	ctl_rows_init(&q->rows);
	if (type == MM_IMSG_SESSIONS_REQ)
		(void)ctl_rows_add(&q->rows, MM_ARRAY_SIZE(sessions_header),
		    sessions_header);
	q->timer = evtimer_new(ag.base, wreq_timeout_cb, q);
	q->next = ag.wreqs;
	ag.wreqs = q;
	if (c != NULL)
		bufferevent_disable(c->bev, EV_READ);
	if (len < 0 || ag.ic == NULL || ichan_send(ag.ic, type, MM_IMSG_AGENT,
	    MM_IMSG_WORKERS, q->id, out, (size_t)len) != 0) {
		wreq_answer(q);
		return;
	}
	evtimer_add(q->timer, &tv);
}

static void
move_kick(void *env_arg, const char *user, const char *reason,
    move_workers_cb cb, void *arg)
{
	struct mm_imsg_body *b = xcalloc(1, sizeof(*b));

	b->user = mm_imsg_str(user);
	b->reason = mm_imsg_str(reason);
	workers_ask(NULL, MM_IMSG_KICK, b, user, cb, arg);
	free(b);
}

static void
move_route(void *env_arg, const char *user, const char *site,
    const char *backend, move_workers_cb cb, void *arg)
{
	struct mm_imsg_body *b = xcalloc(1, sizeof(*b));

	b->user = mm_imsg_str(user);
	b->site = mm_imsg_str(site);
	b->backend = mm_imsg_str(backend);
	workers_ask(NULL, MM_IMSG_ROUTE, b, user, cb, arg);
	free(b);
}

/* Starts `sessions [USER]` or `kick USER` for c: true when the answer
 * will come later (c reads no more requests until then), false when it
 * was given now. */
static bool
wreq_start(struct client *c, const struct ctl_msg *m)
{
	bool kick = strcmp(m->op, "kick") == 0;
	struct mm_imsg_body *b;
	struct ctl_rows none;
	char user[MM_IMSG_USER_MAX + 1];

	ctl_rows_init(&none);
	if (!c->admin) {
		log_warnx("- ctl refused request=%s uid=%lu pid=%ld "
		    "reason=not-admin", m->op, (unsigned long)c->uid,
		    (long)c->pid);
		client_reply(c, CTL_PERM, kick ? "permission denied: kick "
		    "ends users' sessions; run mmctl as root or as a member "
		    "of admin-group" : "permission denied: the sessions "
		    "name users and their addresses; run mmctl as root or as "
		    "a member of admin-group", &none);
		return false;
	}
	if ((kick ? m->argc != 1 : m->argc > 1) || (m->argc == 1 &&
	    strlen(m->argv[0]) > MM_IMSG_USER_MAX)) {
		client_reply(c, CTL_FAILED, kick ? "usage: kick USER" :
		    "usage: sessions [USER]", &none);
		return false;
	}
	user[0] = '\0';
	if (m->argc == 1 && dir_normalise_user(ag.conf, m->argv[0], user,
	    sizeof(user)) != 0) {
		client_reply(c, CTL_FAILED, "not a user name", &none);
		return false;
	}
	b = xcalloc(1, sizeof(*b));
	b->user = mm_imsg_str(user);
	b->reason = mm_imsg_str("Disconnected by the administrator");
	workers_ask(c, kick ? MM_IMSG_KICK : MM_IMSG_SESSIONS_REQ, b, user,
	    NULL, NULL);
	free(b);
	return true;
}

static struct wreq *
wreq_find(uint32_t id)
{
	struct wreq *q;

	for (q = ag.wreqs; q != NULL; q = q->next)
		if (q->id == id)
			return q;
	return NULL;
}

static void
sessions_rows(struct wreq *q, uint16_t src, const struct mm_imsg_body *b)
{
	char f[10][MM_IMSG_USER_MAX + 1];
	const char *col[10];
	size_t i, k;

	for (i = 0; i < b->n_sessions; i++) {
		const struct mm_imsg_session *s = &b->sessions[i];
		const struct mm_imsg_str *str[5] = { &s->user, &s->client,
			&s->proto, &s->state, &s->backend };

		snprintf(f[0], sizeof(f[0]), "%u",
		    (unsigned)(src - MM_IMSG_WORKER));
		snprintf(f[1], sizeof(f[1]), "%llu",
		    (unsigned long long)s->id);
		for (k = 0; k < 5; k++)
			mm_imsg_str_copy(str[k], f[2 + k], sizeof(f[2 + k]));
		snprintf(f[7], sizeof(f[7]), "%llu",
		    (unsigned long long)s->since);
		snprintf(f[8], sizeof(f[8]), "%llu",
		    (unsigned long long)s->bytes_in);
		snprintf(f[9], sizeof(f[9]), "%llu",
		    (unsigned long long)s->bytes_out);
		for (k = 0; k < 10; k++)
			col[k] = f[k];
		(void)ctl_rows_add(&q->rows, 10, col);
	}
}

static void
agent_frame_cb(struct ichan *ic, const struct mm_imsg_hdr *h,
    const uint8_t *body, void *arg)
{
	struct wreq *q = wreq_find(h->id);
	struct mm_imsg_body *b;
	const char *why = NULL;
	uint8_t answer = q == NULL ? 0 : q->type == MM_IMSG_KICK ?
	    MM_IMSG_KICKED : q->type == MM_IMSG_ROUTE ? MM_IMSG_ACK :
	    MM_IMSG_SESSIONS;

	if (q == NULL || h->dst != MM_IMSG_AGENT ||
	    (h->type != MM_IMSG_FANOUT && h->type != answer))
		return;		/* late, or not for a request of ours */
	b = xcalloc(1, sizeof(*b));
	if (mm_imsg_body_decode(h->type, body, h->len, b, &why) < 0) {
		log_warnx("- dir imsg-dropped type=%u src=%u reason=\"%s\"",
		    (unsigned)h->type, (unsigned)h->src, why);
		free(b);
		return;
	}
	if (h->type == MM_IMSG_FANOUT) {
		q->workers = b->workers > INT64_MAX ? INT64_MAX :
		    (int64_t)b->workers;
	} else if (h->src >= MM_IMSG_WORKER && h->type == MM_IMSG_KICKED) {
		q->kicked += b->kicked;
		q->done++;
	} else if (h->src >= MM_IMSG_WORKER && h->type == MM_IMSG_ACK) {
		q->kicked += b->ok ? 1 : 0;
		q->done++;
	} else if (h->src >= MM_IMSG_WORKER) {
		sessions_rows(q, h->src, b);
		if (b->last)
			q->done++;
	}
	free(b);
	if (q->workers >= 0 && q->done >= (uint64_t)q->workers)
		wreq_answer(q);
}

static void
moves_answer(void *arg, enum ctl_status st, const char *msg,
    struct ctl_rows *rows)
{
	client_reply(arg, st, msg, rows);
}

/* move, move-abort, moves: the engine answers at once. */
static void
client_moves(struct client *c, const struct ctl_msg *m)
{
	struct ctl_rows none;

	if (ag.moves == NULL) {
		ctl_rows_init(&none);
		client_reply(c, CTL_FAILED, "moves need the directory and "
		    "gossip (peer-listen) on this node", &none);
		return;
	}
	moves_request(ag.moves, m->op, m->argc, m->argv, moves_answer, c);
}

static void
agent_ichan_closed_cb(struct ichan *ic, const char *why, void *arg)
{
	log_warnx("- dir parent-channel-closed reason=\"%s\"", why);
	ichan_free(ag.ic);
	ag.ic = NULL;
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	uint8_t hdr[CTL_HEADER_LEN];
	struct ctl_rows rows;
	struct ctl_msg *m;
	enum ctl_type type;
	enum ctl_status st;
	const char *why = NULL;
	char *msg = NULL;
	uint32_t blen;

	for (;;) {
		if (evbuffer_copyout(in, hdr, sizeof(hdr)) < (ssize_t)sizeof(hdr))
			return;
		if (ctl_header_decode(hdr, sizeof(hdr), &type, &blen,
		    &why) != 1 || type != CTL_REQUEST) {
			log_warnx("- ctl bad-frame reason=\"%s\"",
			    why != NULL ? why : "not a request");
			client_free(c);
			return;
		}
		if (evbuffer_get_length(in) < CTL_HEADER_LEN + (size_t)blen) {
			/* Read no more than this frame needs. */
			bufferevent_setwatermark(bev, EV_READ,
			    CTL_HEADER_LEN + (size_t)blen, 0);
			return;
		}
		bufferevent_setwatermark(bev, EV_READ, 0, 0);
		evbuffer_drain(in, CTL_HEADER_LEN);
		m = ctl_body_decode(type, evbuffer_pullup(in, blen), blen,
		    &why);
		evbuffer_drain(in, blen);
		if (m == NULL) {
			log_warnx("- ctl bad-request reason=\"%s\"", why);
			client_free(c);
			return;
		}
		ctl_rows_init(&rows);
		if (!client_may(c, m->op, &msg)) {
			client_reply(c, CTL_PERM, msg, &rows);
			free(msg);
			msg = NULL;
			ctl_msg_free(m);
			continue;
		}
		if (strcmp(m->op, "sessions") == 0 ||
		    strcmp(m->op, "kick") == 0) {
			if (wreq_start(c, m)) {
				ctl_msg_free(m);
				return;
			}
			ctl_msg_free(m);
			continue;
		}
		if (moves_takes(m->op)) {
			client_moves(c, m);
			ctl_msg_free(m);
			continue;
		}
		if (check_run_takes(ag.cr, m->op, m->argc)) {
			/* Answered when the other nodes have; no more
			 * requests until then. */
			bufferevent_disable(c->bev, EV_READ);
			check_run_start(ag.cr, client_check_done, c);
			ctl_msg_free(m);
			return;
		}
		if (!ops_on_loop(m->op)) {
			client_start(c, m);
			ctl_msg_free(m);
			return;
		}
		st = ops_exec(ag.ops, m->op, m->argc, m->argv, &msg, &rows);
		client_reply(c, st, msg, &rows);
		ctl_rows_clear(&rows);
		free(msg);
		ctl_msg_free(m);
	}
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	client_free(arg);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct timeval tv = { AGENT_IDLE_S, 0 };
	struct client *c;

	if (ag.n_clients >= AGENT_CLIENTS_MAX) {
		log_warnx("- ctl refused reason=too-many-clients");
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	if (client_identify(c, fd) != 0) {
		log_warn("- ctl refused reason=no-peer-credentials");
		close(fd);
		free(c);
		return;
	}
	c->bev = bufferevent_socket_new(ag.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->next = ag.clients;
	ag.clients = c;
	ag.n_clients++;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb,
	    client_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, AGENT_STREAM_LOWAT, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* On the writer: a write of the loop's own would wait for the writer's
 * transactions. */
static void
purge_run(struct store *st, void *arg)
{
	long n;

	n = store_purge_tombstones(st, (uint64_t)time(NULL),
	    ag.conf->tombstone_ttl_s);
	if (n < 0)
		log_warnx("- dir purge-failed");
	else if (n > 0)
		log_info("- dir purged tombstones=%ld", n);
}

static void
purge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { AGENT_PURGE_S, 0 };

	jobs_add(ag.writer, purge_run, NULL, NULL);
	evtimer_add(ag.purge_ev, &tv);
}

/* Publishes the store's sizes and gossip's counters for the workers'
 * metrics listeners, once a second. */
static void
metrics_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mm_metrics_directory d;
	struct store_stats st;
	struct gossip_stats gs;
	struct gossip *g = peers_gossip(ag.peers);

	memset(&d, 0, sizeof(d));
	if (store_sizes(ops_store(ag.ops), &st) == 0) {
		d.records = st.users;
		d.certs = st.certs;
		d.revoked = st.revoked;
		d.origins = st.origins;
		d.evidence = st.evidence;
		d.store_used_bytes = st.used_bytes;
		d.store_map_bytes = st.map_bytes;
	}
	if (g != NULL) {
		gossip_stats(g, &gs);
		d.gossip = true;
		d.members = gs.members;
		d.alive = gs.alive;
		d.msgs_sent = gs.msgs_sent;
		d.bytes_sent = gs.bytes_sent;
		d.msgs_recv = gs.msgs_recv;
		d.bytes_recv = gs.bytes_recv;
		d.records_new = gs.records_new;
		d.records_dup = gs.records_dup;
		d.records_rejected = gs.records_rejected;
		d.probes = gs.probes;
		d.probe_failures = gs.probe_failures;
		d.suspicions = gs.suspicions;
		d.deaths = gs.deaths;
		d.refutations = gs.refutations;
		d.throttles = gs.throttles;
		d.stalls = gs.stalls;
	}
	mm_metrics_set_directory(ag.metrics, &d);
}

static void
agent_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGTERM || sig == SIGINT)
		event_base_loopexit(ag.base, NULL);
	/* SIGHUP: nothing to re-read; the config is the parent's. */
}

/* ---- the agent process ---------------------------------------------- */

void
agent_main(const struct mm_config *conf, const struct dkey *key,
    int listen_fd, int peer_fd, int imsg_fd, struct mm_metrics *m)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	struct event *sev[MM_ARRAY_SIZE(sigs)];
	struct evconnlistener *lst;
	struct timeval now = { 0, 0 };
	enum ctl_status st;
	char *err = NULL;
	size_t i;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_IGN);
	mm_log_set_ident("mmnode[agent]");
	ag.conf = conf;
	ag.metrics = m;
	if ((ag.ops = ops_new(conf, key, &st, &err)) == NULL)
		fatalx("%s", err);
	if ((ag.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	/* Store work runs off the loop: writes in order on one thread,
	 * long reads on another. */
	if ((ag.writer = jobs_new(ag.base, ops_store(ag.ops), "writer")) ==
	    NULL || (ag.reader = jobs_new(ag.base, ops_store(ag.ops),
	    "reader")) == NULL)
		fatalx("cannot start the store threads");
	lst = evconnlistener_new(ag.base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE, -1, listen_fd);
	if (lst == NULL)
		fatalx("control socket listener failed");
	for (i = 0; i < MM_ARRAY_SIZE(sigs); i++) {
		sev[i] = evsignal_new(ag.base, sigs[i], agent_signal_cb, NULL);
		evsignal_add(sev[i], NULL);
	}
	mm_signals_unblock();	/* blocked since the fork */
	/* A purge at start catches up after a long stop. */
	ag.purge_ev = evtimer_new(ag.base, purge_cb, NULL);
	evtimer_add(ag.purge_ev, &now);
	log_info("- dir agent-start site=%s origin=%s socket=%s", conf->site,
	    conf->node_name, conf->control_socket);
	if (peer_fd >= 0) {
		ag.peers = peers_new(ag.base, conf, ag.ops, key, peer_fd,
		    ag.writer);
		ag.cr = check_run_new(ag.base, conf, ag.ops, ag.peers,
		    ag.reader);
	} else {
		peers_unpublish(ops_store(ag.ops));
	}
	if (imsg_fd >= 0 && (ag.ic = ichan_new(ag.base, imsg_fd,
	    agent_frame_cb, agent_ichan_closed_cb, NULL)) == NULL)
		close(imsg_fd);
	if (ag.peers != NULL) {
		struct move_env env = { ag.base, conf, ag.ops, ag.peers,
			ag.writer, ag.metrics, move_kick, move_route, NULL };

		if ((ag.moves = moves_new(&env, &err)) == NULL) {
			log_warnx("- dir moves-unavailable error=\"%s\"", err);
			free(err);
		}
	}
	if (ag.metrics != NULL) {
		struct timeval sec = { 1, 0 };

		ag.metrics_ev = event_new(ag.base, -1, EV_PERSIST, metrics_cb,
		    NULL);
		evtimer_add(ag.metrics_ev, &sec);
		metrics_cb(-1, 0, NULL);
	}
	event_base_dispatch(ag.base);
	ag.stopping = true;
	if (ag.metrics_ev != NULL)
		event_free(ag.metrics_ev);
	/* The store threads' last jobs finish while what they report to
	 * still exists. */
	jobs_free(ag.reader);
	ag.reader = NULL;
	jobs_free(ag.writer);
	ag.writer = NULL;
	moves_free(ag.moves);
	ag.moves = NULL;
	check_run_free(ag.cr);
	ag.cr = NULL;
	peers_free(ag.peers);
	ag.peers = NULL;
	while (ag.clients != NULL)
		client_free(ag.clients);
	ichan_free(ag.ic);
	ag.ic = NULL;
	evconnlistener_free(lst);
	for (i = 0; i < MM_ARRAY_SIZE(sigs); i++)
		event_free(sev[i]);
	event_free(ag.purge_ev);
	event_base_free(ag.base);
	ops_free(ag.ops);
	log_info("- dir agent-stopped");
	_exit(0);
}
