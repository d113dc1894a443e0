/* mmnode: the relay node. The parent reads the config, binds the
 * listeners, loads TLS keys (and, with a directory, the node key and the
 * control socket), drops root, checks the directory's trust, forks the
 * directory agent and the proxy workers and restarts any that dies. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "agent.h"
#include "dir.h"
#include "ichan.h"
#include "dkey.h"
#include "iptable.h"
#include "mm_metrics.h"
#include "mm_config.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "proxy.h"
#include "proxy_tls.h"
#include "trust.h"

#define DEFAULT_CONFIG "/etc/mailmesh/mmnode.conf"
#define LISTEN_BACKLOG 1024
#define RESTART_DELAY_MS 1000	/* a worker that died young waits this */
#define STOP_GRACE_MS 5000	/* past the drain time, workers are killed */

struct worker {
	pid_t pid;
	uint64_t started_ms;
	struct event *restart_ev;
	struct ichan *ic;	/* the parent's end of its socketpair */
};

static struct {
	struct mm_config *conf;
	struct dir *dir;
	struct proxy_tls *tls;
	struct iptable *ipt;
	struct mm_metrics *metrics;	/* the workers' counters (shared) */
	unsigned n_workers;
	int **fds;		/* fds[worker][listener] */
	struct worker *workers;
	struct event_base *base;
	struct event *kill_ev;
	bool stopping;
	/* The directory agent, when the config has a directory. */
	struct dkey key;	/* the node key; wiped in workers */
	int ctl_fd;		/* the bound control socket */
	int peer_fd;		/* the bound inter-node listener, or -1 */
	struct worker agent;
	/* Cross-site sessions: the workers' transport key and each
	 * worker's session-listen socket (NULL: none). */
	struct dkey tkey;
	int *sfds;
	int *dfds;		/* dsync-listen, one per worker; or NULL */
} node = { .ctl_fd = -1, .peer_fd = -1 };

static void start_worker(unsigned i);
static void start_agent(void);

/* ---- the children's messages ------------------------------------------
 *
 * Each child gets a socketpair when it is forked; the parent passes frames
 * between the agent and the workers by their headers (mm_imsg.h). A frame
 * for every worker goes to each one alive, and its sender is told how
 * many. */

static struct worker *
worker_of(uint16_t who)
{
	if (who < MM_IMSG_WORKER ||
	    (unsigned)(who - MM_IMSG_WORKER) >= node.n_workers)
		return NULL;
	return &node.workers[who - MM_IMSG_WORKER];
}

static void
relay_from_agent(const struct mm_imsg_hdr *h, const uint8_t *body)
{
	struct mm_imsg_body *fan;
	uint8_t out[64];
	uint64_t n = 0;
	unsigned i;
	int len;

	if (h->dst != MM_IMSG_WORKERS) {
		struct worker *w = worker_of(h->dst);

		if (w != NULL && w->ic != NULL)
			(void)ichan_forward(w->ic, h, h->dst, body);
		return;
	}
	for (i = 0; i < node.n_workers; i++)
		if (node.workers[i].ic != NULL &&
		    ichan_forward(node.workers[i].ic, h,
		    (uint16_t)(MM_IMSG_WORKER + i), body) == 0)
			n++;
	fan = xcalloc(1, sizeof(*fan));
	fan->workers = n;
	len = mm_imsg_body_encode(MM_IMSG_FANOUT, fan, out, sizeof(out));
	free(fan);
	if (len > 0 && node.agent.ic != NULL)
		(void)ichan_send(node.agent.ic, MM_IMSG_FANOUT, MM_IMSG_PARENT,
		    h->src, h->id, out, (size_t)len);
}

static void
relay_frame_cb(struct ichan *ic, const struct mm_imsg_hdr *h,
    const uint8_t *body, void *arg)
{
	struct worker *from = arg;

	if (from == &node.agent) {
		if (h->src == MM_IMSG_AGENT)
			relay_from_agent(h, body);
		return;
	}
	/* A worker speaks for itself, to the agent only. */
	if (h->src == MM_IMSG_WORKER + (from - node.workers) &&
	    h->dst == MM_IMSG_AGENT && node.agent.ic != NULL)
		(void)ichan_forward(node.agent.ic, h, h->dst, body);
}

static void
relay_closed_cb(struct ichan *ic, const char *why, void *arg)
{
	struct worker *w = arg;

	/* The child is going (reaped on its own); the channel goes now. */
	ichan_free(w->ic);
	w->ic = NULL;
}

/* Before a fork: the socketpair of the child w. -1 (logged) when none can
 * be made; the child then runs without one. */
static int
channel_open(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		log_warn("- node socketpair-failed");
		sv[0] = sv[1] = -1;
		return -1;
	}
	return 0;
}

/* After the fork, in the parent: its end of w's channel. */
static void
channel_parent(struct worker *w, int sv[2])
{
	if (sv[0] < 0)
		return;
	close(sv[1]);
	ichan_free(w->ic);
	w->ic = ichan_new(node.base, sv[0], relay_frame_cb, relay_closed_cb,
	    w);
	if (w->ic == NULL)
		close(sv[0]);
}

/* In a new child: the parent's ends of every channel are not its own. */
static void
channel_child(int sv[2])
{
	unsigned i;

	if (sv[0] >= 0)
		close(sv[0]);
	for (i = 0; i < node.n_workers; i++) {
		ichan_free(node.workers[i].ic);
		node.workers[i].ic = NULL;
	}
	ichan_free(node.agent.ic);
	node.agent.ic = NULL;
}

static void
usage(void)
{
	fprintf(stderr, "usage: mmnode [-t] [-d] [-c FILE]\n"
	    "  -c FILE  configuration (default " DEFAULT_CONFIG ")\n"
	    "  -t       check the configuration and exit\n"
	    "  -d       log debug events\n");
	exit(2);
}

/* ---- listening sockets ---------------------------------------------- */

static int
bind_one(const struct mm_listener_conf *lc, char **errstr_r)
{
	struct addrinfo hints, *res = NULL;
	const char *host = strcmp(lc->host, "*") == 0 ? NULL : lc->host;
	int fd = -1, one = 1, zero = 0, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = host == NULL ? AF_INET6 : AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host, lc->port, &hints, &res);
	if (rc != 0 && host == NULL) {
		hints.ai_family = AF_INET;	/* no IPv6 on this host */
		rc = getaddrinfo(host, lc->port, &hints, &res);
	}
	if (rc != 0) {
		*errstr_r = xasprintf("line %d: %s:%s: %s", lc->line, lc->host,
		    lc->port, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One socket per worker: the kernel spreads connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (res->ai_family == AF_INET6 && host == NULL)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	freeaddrinfo(res);
	return fd;
fail:
	*errstr_r = xasprintf("%s:%d: cannot listen on %s:%s: %s",
	    node.conf->path, lc->line, lc->host, lc->port, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

static int
bind_all(char **errstr_r)
{
	unsigned w;
	size_t l;

	node.fds = xcalloc(node.n_workers, sizeof(int *));
	for (w = 0; w < node.n_workers; w++) {
		node.fds[w] = xcalloc(node.conf->n_listeners, sizeof(int));
		for (l = 0; l < node.conf->n_listeners; l++) {
			node.fds[w][l] = bind_one(&node.conf->listeners[l],
			    errstr_r);
			if (node.fds[w][l] < 0)
				return -1;
		}
	}
	return 0;
}

/* The user and group to run as; -1 each when the config names none. */
static int
run_ids(uid_t *uid_r, gid_t *gid_r, char **errstr_r)
{
	struct passwd *pw;

	*uid_r = (uid_t)-1;
	*gid_r = (gid_t)-1;
	if (node.conf->user == NULL)
		return 0;
	if ((pw = getpwnam(node.conf->user)) == NULL) {
		*errstr_r = xasprintf("%s: unknown user %s", node.conf->path,
		    node.conf->user);
		return -1;
	}
	*uid_r = pw->pw_uid;
	*gid_r = pw->pw_gid;
	if (node.conf->group != NULL) {
		struct group *gr = getgrnam(node.conf->group);

		if (gr == NULL) {
			*errstr_r = xasprintf("%s: unknown group %s",
			    node.conf->path, node.conf->group);
			return -1;
		}
		*gid_r = gr->gr_gid;
	}
	return 0;
}

static int
drop_privileges(char **errstr_r)
{
	uid_t uid;
	gid_t gid;

	if (run_ids(&uid, &gid, errstr_r) != 0)
		return -1;
	if (node.conf->user == NULL)
		return 0;
	if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0) {
		*errstr_r = xasprintf("cannot become %s: %s", node.conf->user,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- directory ------------------------------------------------------ */

/* As root: the node key (which the run user may not be able to read), the
 * control socket (in a directory the run user may not own) and the store
 * directory, created for the run user so that the agent can write it. */
static int
directory_setup_root(char **errstr_r)
{
	uid_t uid;
	gid_t gid;

	if (node.conf->directory == NULL)
		return 0;
	if (dkey_init() != 0) {
		*errstr_r = xstrdup("libsodium cannot start");
		return -1;
	}
	if (run_ids(&uid, &gid, errstr_r) != 0 ||
	    agent_load_key(node.conf, &node.key, errstr_r) != 0)
		return -1;
	if (mkdir(node.conf->directory, 0700) == 0 && uid != (uid_t)-1 &&
	    chown(node.conf->directory, uid, gid) != 0) {
		*errstr_r = xasprintf("directory %s: chown: %s",
		    node.conf->directory, strerror(errno));
		return -1;
	}
	node.ctl_fd = agent_bind_socket(node.conf, uid, gid, errstr_r);
	if (node.ctl_fd < 0)
		return -1;
	if (node.conf->peer_listen_host != NULL &&
	    (node.peer_fd = agent_bind_peer(node.conf, errstr_r)) < 0)
		return -1;
	return 0;
}

/* As the run user, before anything forks: the store is writable and the
 * node key is certified. */
static int
directory_check(char **errstr_r)
{
	char *err = NULL;

	if (node.conf->directory == NULL)
		return 0;
	if (access(node.conf->directory, W_OK | X_OK) != 0) {
		*errstr_r = xasprintf("directory %s: %s (it must be writable "
		    "by user %s: chown -R %s %s)", node.conf->directory,
		    strerror(errno), node.conf->user != NULL ?
		    node.conf->user : "root", node.conf->user != NULL ?
		    node.conf->user : "root", node.conf->directory);
		return -1;
	}
	if (ops_preflight(node.conf, &node.key, &err) != 0) {
		*errstr_r = err;
		return -1;
	}
	return 0;
}

static void
close_listeners(void)
{
	unsigned w;
	size_t l;

	for (w = 0; w < node.n_workers; w++) {
		for (l = 0; l < node.conf->n_listeners; l++)
			close(node.fds[w][l]);
		if (node.sfds != NULL)
			close(node.sfds[w]);
		if (node.dfds != NULL)
			close(node.dfds[w]);
	}
}

/* ---- cross-site sessions -------------------------------------------- */

/* As root: the transport key (like the node key, perhaps unreadable by
 * the run user) and one session-listen socket per worker. */
static int
transport_setup_root(char **errstr_r)
{
	struct stat sb;
	char *err = NULL;
	unsigned w;

	if (node.conf->transport_key == NULL)
		return 0;
	if (stat(node.conf->transport_key, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (sb.st_mode & 077) != 0) {
		*errstr_r = xasprintf("transport-key %s: is readable by group "
		    "or others (chmod 600 %s)", node.conf->transport_key,
		    node.conf->transport_key);
		return -1;
	}
	if (dkey_load_secret(node.conf->transport_key, &node.tkey,
	    &err) != 0) {
		*errstr_r = xasprintf("transport-key %s: %s",
		    node.conf->transport_key, err);
		free(err);
		return -1;
	}
	if (node.conf->session_listen != NULL) {
		node.sfds = xcalloc(node.n_workers, sizeof(int));
		for (w = 0; w < node.n_workers; w++)
			node.sfds[w] = -1;
		for (w = 0; w < node.n_workers; w++)
			if ((node.sfds[w] = bind_one(
			    node.conf->session_listen, errstr_r)) < 0)
				return -1;
	}
	if (node.conf->dsync_listen != NULL) {
		node.dfds = xcalloc(node.n_workers, sizeof(int));
		for (w = 0; w < node.n_workers; w++)
			node.dfds[w] = -1;
		for (w = 0; w < node.n_workers; w++)
			if ((node.dfds[w] = bind_one(node.conf->dsync_listen,
			    errstr_r)) < 0)
				return -1;
	}
	return 0;
}

/* As the run user, before anything forks: the transport key is certified
 * for this site in role transport. The store is opened and closed here:
 * nothing of it crosses the fork. */
static int
transport_check(char **errstr_r)
{
	struct dir *d;
	char kid[DKEY_ID_HEX_LEN + 1];
	const char *why = NULL;
	uint8_t *env = NULL;
	size_t len = 0;
	uint64_t now = (uint64_t)time(NULL);
	enum trust_verdict v;

	if (node.conf->transport_key == NULL)
		return 0;
	if ((d = dir_open(node.conf, errstr_r)) == NULL)
		return -1;
	v = dir_cert_find(d, node.tkey.id, TRUST_USE_TRANSPORT,
	    node.conf->site, now, &env, &len, &why);
	free(env);
	dir_free(d);
	if (v == TRUST_OK)
		return 0;
	dkey_id_hex(node.tkey.id, kid);
	*errstr_r = xasprintf("transport-key %s (key id %s): %s (certify it "
	    "with: mmctl keys certify --role transport --site %s ...)",
	    node.conf->transport_key, kid, v == TRUST_WRONG_ROLE ||
	    v == TRUST_WRONG_SITE ? "not certified as transport for this site" :
	    why, node.conf->site);
	return -1;
}

static void __attribute__((noreturn))
agent_child(int sv[2])
{
	signal(SIGCHLD, SIG_DFL);
	close_listeners();
	dkey_clear(&node.tkey);
	if (event_reinit(node.base) != 0)
		fatalx("event_reinit failed");
	channel_child(sv);
	event_base_free(node.base);
	node.base = NULL;
	agent_main(node.conf, &node.key, node.ctl_fd, node.peer_fd, sv[1],
	    node.metrics);
}

static void
agent_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	start_agent();
}

static void
start_agent(void)
{
	pid_t pid;
	int sv[2];

	if (node.stopping || node.conf->directory == NULL)
		return;
	(void)channel_open(sv);
	mm_signals_block();
	pid = fork();
	if (pid != 0)
		mm_signals_unblock();
	if (pid < 0) {
		struct timeval tv = { 1, 0 };

		log_warn("- node fork-failed agent");
		if (sv[0] >= 0) {
			close(sv[0]);
			close(sv[1]);
		}
		event_add(node.agent.restart_ev, &tv);
		return;
	}
	if (pid == 0)
		agent_child(sv);
	channel_parent(&node.agent, sv);
	node.agent.pid = pid;
	node.agent.started_ms = mm_now_ms();
	log_debug("- node agent-started pid=%d", (int)pid);
}

/* ---- worker --------------------------------------------------------- */

static struct proxy *worker_px;
static struct event_base *worker_base;

static void
worker_drained(void *arg)
{
	event_base_loopexit(worker_base, NULL);
}

static void
worker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	char *err = NULL;

	switch (sig) {
	case SIGHUP:
		if (dir_reload(node.dir, &err) != 0) {
			log_warnx("- dir reload-failed error=\"%s\" "
			    "action=kept-old-map", err);
			free(err);
		} else {
			log_info("- dir reloaded");
		}
		break;
	case SIGTERM:
	case SIGINT:
		log_info("- node draining sessions=%zu",
		    proxy_session_count(worker_px));
		proxy_drain(worker_px, mm_now_ms() +
		    node.conf->limits.drain_ms, worker_drained, NULL);
		break;
	}
}

/* ---- the worker's answers to the agent ---- */

static struct ichan *worker_ic;
static unsigned worker_index;

/* One frame of sessions being filled: copies of the strings, which the
 * proxy lends only during its callback. */
struct sess_chunk {
	struct mm_imsg_body body;
	struct {
		char user[MM_IMSG_USER_MAX + 1];
		char client[MM_IMSG_TEXT_MAX + 1];
		char proto[MM_IMSG_TEXT_MAX + 1];
		char state[MM_IMSG_TEXT_MAX + 1];
		char backend[MM_IMSG_TEXT_MAX + 1];
	} copy[MM_IMSG_SESSIONS_MAX];
	uint8_t out[MM_IMSG_BODY_MAX];
	const struct mm_imsg_hdr *req;
	bool failed;
};

static void
sess_send(struct sess_chunk *c, bool last)
{
	int len;

	c->body.last = last;
	len = mm_imsg_body_encode(MM_IMSG_SESSIONS, &c->body, c->out,
	    sizeof(c->out));
	if (len < 0 || ichan_send(worker_ic, MM_IMSG_SESSIONS,
	    (uint16_t)(MM_IMSG_WORKER + worker_index), c->req->src,
	    c->req->id, c->out, (size_t)len) != 0)
		c->failed = true;
	c->body.n_sessions = 0;
}

static void
sess_cb(const struct proxy_session_view *v, void *arg)
{
	struct sess_chunk *c = arg;
	struct mm_imsg_session *e = &c->body.sessions[c->body.n_sessions];
	size_t k = c->body.n_sessions;

	mm_strlcpy(c->copy[k].user, v->user, sizeof(c->copy[k].user));
	mm_strlcpy(c->copy[k].client, v->client, sizeof(c->copy[k].client));
	mm_strlcpy(c->copy[k].proto, v->proto, sizeof(c->copy[k].proto));
	mm_strlcpy(c->copy[k].state, v->state, sizeof(c->copy[k].state));
	mm_strlcpy(c->copy[k].backend, v->backend,
	    sizeof(c->copy[k].backend));
	e->id = v->id;
	e->user = mm_imsg_str(c->copy[k].user);
	e->client = mm_imsg_str(c->copy[k].client);
	e->proto = mm_imsg_str(c->copy[k].proto);
	e->state = mm_imsg_str(c->copy[k].state);
	e->backend = mm_imsg_str(c->copy[k].backend);
	e->since = v->since;
	e->bytes_in = v->bytes_in;
	e->bytes_out = v->bytes_out;
	if (++c->body.n_sessions == MM_IMSG_SESSIONS_MAX)
		sess_send(c, false);
}

/* The agent asks this worker to end a user's sessions: it answers how
 * many it ended. */
static void
worker_kick(const struct mm_imsg_hdr *h, const struct mm_imsg_body *req)
{
	char user[MM_IMSG_USER_MAX + 1], reason[MM_IMSG_TEXT_MAX + 1];
	struct mm_imsg_body *ans;
	uint8_t out[64];
	int len;

	mm_imsg_str_copy(&req->user, user, sizeof(user));
	mm_imsg_str_copy(&req->reason, reason, sizeof(reason));
	ans = xcalloc(1, sizeof(*ans));
	ans->kicked = proxy_kick_user(worker_px, user, reason[0] != '\0' ?
	    reason : "Disconnected by the administrator");
	len = mm_imsg_body_encode(MM_IMSG_KICKED, ans, out, sizeof(out));
	free(ans);
	if (len < 0 || ichan_send(worker_ic, MM_IMSG_KICKED,
	    (uint16_t)(MM_IMSG_WORKER + worker_index), h->src, h->id, out,
	    (size_t)len) != 0)
		log_warnx("- node kick-answer-failed");
}

/* The agent says where a move's dsync streams for a user go. */
static void
worker_route(const struct mm_imsg_hdr *h, const struct mm_imsg_body *req)
{
	char user[MM_IMSG_USER_MAX + 1], site[MM_IMSG_TEXT_MAX + 1];
	char backend[MM_IMSG_TEXT_MAX + 1];
	struct mm_imsg_body *ans;
	uint8_t out[16];
	int len;

	mm_imsg_str_copy(&req->user, user, sizeof(user));
	mm_imsg_str_copy(&req->site, site, sizeof(site));
	mm_imsg_str_copy(&req->backend, backend, sizeof(backend));
	ans = xcalloc(1, sizeof(*ans));
	ans->ok = proxy_dsync_route(worker_px, user, site, backend) == 0;
	if (!ans->ok)
		log_warnx("- node dsync-route-failed user=%s", user);
	len = mm_imsg_body_encode(MM_IMSG_ACK, ans, out, sizeof(out));
	free(ans);
	if (len < 0 || ichan_send(worker_ic, MM_IMSG_ACK,
	    (uint16_t)(MM_IMSG_WORKER + worker_index), h->src, h->id, out,
	    (size_t)len) != 0)
		log_warnx("- node route-answer-failed");
}

static void
worker_frame_cb(struct ichan *ic, const struct mm_imsg_hdr *h,
    const uint8_t *body, void *arg)
{
	struct mm_imsg_body *req;
	struct sess_chunk *c;
	const char *why = NULL;
	char user[MM_IMSG_USER_MAX + 1];

	if (h->type != MM_IMSG_SESSIONS_REQ && h->type != MM_IMSG_KICK &&
	    h->type != MM_IMSG_ROUTE)
		return;
	req = xcalloc(1, sizeof(*req));
	if (mm_imsg_body_decode(h->type, body, h->len, req, &why) < 0) {
		log_warnx("- node imsg-dropped type=%u reason=\"%s\"",
		    (unsigned)h->type, why);
		free(req);
		return;
	}
	if (h->type == MM_IMSG_KICK) {
		worker_kick(h, req);
		free(req);
		return;
	}
	if (h->type == MM_IMSG_ROUTE) {
		worker_route(h, req);
		free(req);
		return;
	}
	mm_imsg_str_copy(&req->user, user, sizeof(user));
	free(req);
	c = xcalloc(1, sizeof(*c));
	c->req = h;
	proxy_foreach_session(worker_px, user[0] != '\0' ? user : NULL,
	    sess_cb, c);
	sess_send(c, true);
	if (c->failed)
		log_warnx("- node sessions-answer-failed");
	free(c);
}

static void
worker_closed_cb(struct ichan *ic, const char *why, void *arg)
{
	/* The parent is gone or confused: the worker serves on without. */
	ichan_free(worker_ic);
	worker_ic = NULL;
}

static void __attribute__((noreturn))
worker_main(unsigned i, int sv[2])
{
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT };
	struct event *sev[MM_ARRAY_SIZE(sigs)];
	char ident[32];
	unsigned w;
	size_t l;

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGCHLD, SIG_DFL);
	/* Workers hold no signing key and no control socket. */
	dkey_clear(&node.key);
	if (node.ctl_fd >= 0)
		close(node.ctl_fd);
	if (node.peer_fd >= 0)
		close(node.peer_fd);
	snprintf(ident, sizeof(ident), "mmnode[worker%u]", i);
	mm_log_set_ident(ident);
	for (w = 0; w < node.n_workers; w++) {
		if (w == i)
			continue;
		for (l = 0; l < node.conf->n_listeners; l++)
			close(node.fds[w][l]);
		if (node.sfds != NULL)
			close(node.sfds[w]);
		if (node.dfds != NULL)
			close(node.dfds[w]);
	}
	/* The parent's loop and its signal handlers are not ours. The epoll
	 * instance is shared across fork: reinit gives the child its own
	 * before the free, or the free would remove the parent's events. */
	if (event_reinit(node.base) != 0)
		fatalx("event_reinit failed");
	channel_child(sv);
	event_base_free(node.base);
	node.base = NULL;
	worker_base = event_base_new();
	if (worker_base == NULL)
		fatalx("event_base_new failed");
	worker_px = proxy_new(worker_base, node.conf, node.dir, node.tls,
	    node.ipt, i, node.tkey.has_secret ? &node.tkey : NULL);
	mm_metrics_worker_start(node.metrics, i);
	proxy_set_metrics(worker_px, node.metrics);
	worker_index = i;
	if (sv[1] >= 0 && (worker_ic = ichan_new(worker_base, sv[1],
	    worker_frame_cb, worker_closed_cb, NULL)) == NULL)
		close(sv[1]);
	if (node.sfds != NULL &&
	    proxy_listen_sessions(worker_px, node.sfds[i]) != 0)
		fatalx("session listener failed");
	if (node.dfds != NULL &&
	    proxy_listen_dsync(worker_px, node.dfds[i]) != 0)
		fatalx("dsync listener failed");
	for (l = 0; l < node.conf->n_listeners; l++)
		if (proxy_listen(worker_px, &node.conf->listeners[l],
		    node.fds[i][l]) != 0)
			fatalx("listener %zu failed", l);
	for (l = 0; l < MM_ARRAY_SIZE(sigs); l++) {
		sev[l] = evsignal_new(worker_base, sigs[l], worker_signal_cb,
		    NULL);
		evsignal_add(sev[l], NULL);
	}
	mm_signals_unblock();	/* blocked since the fork */
	event_base_dispatch(worker_base);
	ichan_free(worker_ic);
	proxy_free(worker_px);
	for (l = 0; l < MM_ARRAY_SIZE(sigs); l++)
		event_free(sev[l]);
	event_base_free(worker_base);
	dkey_clear(&node.tkey);
	_exit(0);
}

/* ---- parent --------------------------------------------------------- */

static void
restart_cb(evutil_socket_t fd, short what, void *arg)
{
	start_worker((unsigned)(uintptr_t)arg);
}

static void
start_worker(unsigned i)
{
	pid_t pid;
	int sv[2];

	if (node.stopping)
		return;
	iptable_reset_worker(node.ipt, i);
	(void)channel_open(sv);
	mm_signals_block();
	pid = fork();
	if (pid != 0)
		mm_signals_unblock();
	if (pid < 0) {
		struct timeval tv = { 1, 0 };

		log_warn("- node fork-failed worker=%u", i);
		if (sv[0] >= 0) {
			close(sv[0]);
			close(sv[1]);
		}
		event_add(node.workers[i].restart_ev, &tv);
		return;
	}
	if (pid == 0)
		worker_main(i, sv);
	channel_parent(&node.workers[i], sv);
	node.workers[i].pid = pid;
	node.workers[i].started_ms = mm_now_ms();
	log_debug("- node worker-started worker=%u pid=%d", i, (int)pid);
}

static bool
any_worker(void)
{
	unsigned i;

	for (i = 0; i < node.n_workers; i++)
		if (node.workers[i].pid > 0)
			return true;
	return false;
}

/* Workers first, then the agent: a worker may still be finishing a
 * session that the agent knows about. */
static void
stop_check(void)
{
	if (!node.stopping || any_worker())
		return;
	if (node.agent.pid > 0) {
		kill(node.agent.pid, SIGTERM);
		return;
	}
	event_base_loopexit(node.base, NULL);
}

static void
reap(void)
{
	pid_t pid;
	int status;
	unsigned i;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == node.agent.pid) {
			node.agent.pid = 0;
			if (node.stopping)
				continue;
			if (WIFSIGNALED(status))
				log_warnx("- node agent-died signal=%d "
				    "action=restart", WTERMSIG(status));
			else
				log_warnx("- node agent-exited status=%d "
				    "action=restart", WEXITSTATUS(status));
			if (mm_now_ms() - node.agent.started_ms <
			    RESTART_DELAY_MS) {
				struct timeval tv = { 0,
					RESTART_DELAY_MS * 1000 };

				event_add(node.agent.restart_ev, &tv);
			} else {
				start_agent();
			}
			continue;
		}
		for (i = 0; i < node.n_workers; i++) {
			struct worker *w = &node.workers[i];

			if (w->pid != pid)
				continue;
			w->pid = 0;
			if (node.stopping)
				break;
			mm_metrics_count_restart(node.metrics);
			if (WIFSIGNALED(status))
				log_warnx("- node worker-died worker=%u "
				    "signal=%d action=restart", i,
				    WTERMSIG(status));
			else
				log_warnx("- node worker-exited worker=%u "
				    "status=%d action=restart", i,
				    WEXITSTATUS(status));
			if (mm_now_ms() - w->started_ms < RESTART_DELAY_MS) {
				struct timeval tv = { 0,
					RESTART_DELAY_MS * 1000 };

				event_add(w->restart_ev, &tv);
			} else {
				start_worker(i);
			}
		}
	}
	stop_check();
}

static void
signal_workers(int sig)
{
	unsigned i;

	for (i = 0; i < node.n_workers; i++)
		if (node.workers[i].pid > 0)
			kill(node.workers[i].pid, sig);
}

static void
kill_cb(evutil_socket_t fd, short what, void *arg)
{
	log_warnx("- node workers-killed reason=drain-overrun");
	signal_workers(SIGKILL);
	if (node.agent.pid > 0)
		kill(node.agent.pid, SIGKILL);
}

static void
parent_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	switch (sig) {
	case SIGCHLD:
		reap();
		break;
	case SIGHUP:
		log_info("- node reload");
		signal_workers(SIGHUP);
		break;
	case SIGTERM:
	case SIGINT:
		if (node.stopping)
			break;
		log_info("- node stopping drain_ms=%llu",
		    (unsigned long long)node.conf->limits.drain_ms);
		node.stopping = true;
		signal_workers(SIGTERM);
		{
			uint64_t ms = node.conf->limits.drain_ms + STOP_GRACE_MS;
			struct timeval tv = { (time_t)(ms / 1000),
				(suseconds_t)(ms % 1000) * 1000 };

			node.kill_ev = evtimer_new(node.base, kill_cb, NULL);
			evtimer_add(node.kill_ev, &tv);
		}
		stop_check();
		break;
	}
}

/* Each session holds two descriptors: allow as many as the hard limit. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("- node setrlimit-nofile");
	}
}

static void
write_pidfile(void)
{
	FILE *f;

	if (node.conf->pidfile == NULL)
		return;
	if ((f = fopen(node.conf->pidfile, "w")) == NULL)
		fatal("cannot write pidfile %s", node.conf->pidfile);
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

int
main(int argc, char **argv)
{
	static const int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };
	struct event *sev[MM_ARRAY_SIZE(sigs)];
	const char *path = DEFAULT_CONFIG;
	bool check = false, debug = false;
	char *err = NULL;
	long cores;
	unsigned i;
	int ch;

	while ((ch = getopt(argc, argv, "c:dt")) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 't':
			check = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if ((node.conf = mm_config_load(path, &err)) == NULL) {
		fprintf(stderr, "mmnode: %s\n", err);
		return 1;
	}
	mm_log_init("mmnode", node.conf->log_syslog ? MM_LOG_SYSLOG :
	    MM_LOG_STDERR, debug || node.conf->log_debug);
	if ((node.dir = dir_open(node.conf, &err)) == NULL ||
	    (node.tls = proxy_tls_new(node.conf, &err)) == NULL) {
		fprintf(stderr, "mmnode: %s\n", err);
		return 1;
	}
	if (check) {
		/* The directory too: the node key is readable by its owner
		 * only, and certified for this site in the store. */
		if (node.conf->directory != NULL &&
		    (dkey_init() != 0 ||
		    agent_load_key(node.conf, &node.key, &err) != 0)) {
			fprintf(stderr, "mmnode: %s\n", err != NULL ? err :
			    "libsodium cannot start");
			return 1;
		}
		if (node.conf->directory != NULL &&
		    access(node.conf->directory, F_OK) != 0) {
			fprintf(stderr, "mmnode: directory %s: %s (no store: "
			    "the node key is not certified there; certify it "
			    "with: mmctl -c %s keys certify ...)\n",
			    node.conf->directory, strerror(errno), path);
			return 1;
		}
		if (node.conf->directory != NULL &&
		    ops_preflight(node.conf, &node.key, &err) != 0) {
			fprintf(stderr, "mmnode: %s\n", err);
			return 1;
		}
		printf("%s: configuration OK\n", path);
		return 0;
	}

	cores = sysconf(_SC_NPROCESSORS_ONLN);
	node.n_workers = node.conf->workers != 0 ? node.conf->workers :
	    (cores > 0 ? (unsigned)cores : 1);
	if (node.n_workers > IPTABLE_WORKERS_MAX)
		node.n_workers = IPTABLE_WORKERS_MAX;
	raise_fd_limit();
	if (bind_all(&err) != 0 || directory_setup_root(&err) != 0 ||
	    transport_setup_root(&err) != 0 ||
	    drop_privileges(&err) != 0 || directory_check(&err) != 0 ||
	    transport_check(&err) != 0) {
		fprintf(stderr, "mmnode: %s\n", err);
		if (node.ctl_fd >= 0)
			agent_unbind_socket(node.conf, node.ctl_fd);
		return 1;
	}
	write_pidfile();
	signal(SIGPIPE, SIG_IGN);
	node.ipt = iptable_new();
	node.metrics = mm_metrics_new(node.n_workers);
	node.base = event_base_new();
	if (node.base == NULL)
		fatalx("event_base_new failed");
	node.workers = xcalloc(node.n_workers, sizeof(*node.workers));
	for (i = 0; i < node.n_workers; i++)
		node.workers[i].restart_ev = evtimer_new(node.base, restart_cb,
		    (void *)(uintptr_t)i);
	node.agent.restart_ev = evtimer_new(node.base, agent_restart_cb, NULL);
	for (i = 0; i < MM_ARRAY_SIZE(sigs); i++) {
		sev[i] = evsignal_new(node.base, sigs[i], parent_signal_cb,
		    NULL);
		evsignal_add(sev[i], NULL);
	}
	log_info("- node start config=%s workers=%u listeners=%zu "
	    "directory=%s", path, node.n_workers, node.conf->n_listeners,
	    node.conf->directory != NULL ? "yes" : "no");
	start_agent();
	for (i = 0; i < node.n_workers; i++)
		start_worker(i);
	event_base_dispatch(node.base);
	log_info("- node stopped");
	return 0;
}
