/* The move engine (move.h says the design). */
#include "move.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "dir.h"
#include "doveadm.h"
#include "gossip.h"
#include "jobs.h"
#include "mm_config.h"
#include "mm_log.h"
#include "mm_metrics.h"
#include "mm_util.h"
#include "move_db.h"
#include "move_msg.h"
#include "ops.h"
#include "peers.h"
#include "store.h"
#include "verify.h"

#define MOVE_FREEZES_MAX 3	/* freezes abandoned before the move aborts */
#define MOVE_PASS_FAILS_MAX 5	/* failed passes in a row before it aborts */
#define MOVE_VERIFY_MS 120000
#define MOVE_KICK_MS 5000
#define MOVE_STATE_MAX 4096	/* dsync's state between passes */

/* Where a coordinated move is inside its phase. */
enum run_step {
	R_IDLE,		/* waiting for its timer */
	R_PREPARE,	/* PREPARE sent */
	R_SIGN,		/* a record is being signed */
	R_ROUTE,	/* the workers learn the stream's route */
	R_PASS,		/* a dsync pass runs */
	R_FREEZE_WAIT,	/* the other nodes, the workers, the back end */
	R_VERIFY,	/* both sides describe the mailbox */
	R_COMMIT_REQ,	/* COMMIT sent */
	R_ABORT_REQ,	/* ABORT sent */
	R_DONE,
};

struct run {
	struct run *next;
	struct moves *m;
	struct move *mv;		/* as persisted */
	enum run_step step;
	struct event *timer;
	struct event *freeze_timer;
	struct doveadm_cmd *cmd;
	struct verify *ver;
	uint64_t req_start_ms, pass_start_ms, freeze_start_ms;
	uint64_t copy_start_ms;
	char peer[RECORD_NAME_MAX + 1];	/* the target node asked */
	enum move_msg_type waiting;	/* the answer expected */
	/* The freeze: nodes of this site to confirm, and what is done. */
	char (*need)[RECORD_NAME_MAX + 1];
	bool *acked;
	size_t n_need;
	bool kicked_local, kicked_backend;
	uint32_t pass_fails;
	bool final_pass, late_pass;
	/* The verify. */
	struct move_folder *mine, *theirs;
	size_t n_mine, n_theirs;
	bool have_mine, have_theirs;
	/* The source's INBOX (name, UIDVALIDITY, GUID in digest), which
	 * PREPARE shows the target. */
	struct move_folder src_inbox;
	bool have_src_inbox;
	/* dsync's state after the last good pass (base64, "" for none):
	 * the next backup copies what changed since, not the mailbox. */
	char state[MOVE_STATE_MAX + 1];
	char next_state[MOVE_STATE_MAX + 1];	/* the running pass's */
	/* The last record signed. */
	uint8_t record[RECORD_MAX];
	size_t record_len;
	bool busy;			/* a writer job holds it */
};

/* A request another node made of this one, being carried out. */
struct tjob {
	struct tjob *next;
	struct moves *m;
	struct move_msg_hdr_copy {
		enum move_msg_type type;
		uint64_t id;
		char user[RECORD_USER_MAX + 1];
		char site[RECORD_SITE_MAX + 1];
		char backend[RECORD_NAME_MAX + 1];
	} q;
	char from[RECORD_NAME_MAX + 1];
	char from_site[RECORD_SITE_MAX + 1];
	uint8_t record[RECORD_MAX];
	size_t record_len;
	const struct mm_backend_conf *be;
	struct doveadm_cmd *cmd;
	struct verify *ver;
	struct move_folder src;		/* PREPARE: the source's INBOX */
	struct move_folder mine;	/* PREPARE: this site's INBOX */
	size_t n_folders;		/* PREPARE: folders besides INBOX */
	uint64_t kicked;
	enum accept_result res;
	bool ok;
	char error[MOVE_MSG_ERROR_MAX + 1];
	bool busy;
};

struct moves {
	struct move_env env;
	struct move_db *db;
	struct run *runs;
	struct tjob *tjobs;
	uint8_t *buf;			/* MOVE_MSG_MAX */
	struct move_msg *msg;		/* decode and encode scratch */
	uint64_t next_id;
	struct event *prune_timer;
};

static void run_next(struct run *r);
static void pass_begin(struct run *r);
static void pass_start(struct run *r);
static void freeze_begin(struct run *r);
static void verify_begin(struct run *r);
static void commit_begin(struct run *r);
static void request(struct run *r, enum move_msg_type type,
    enum move_msg_type answer);
static void abort_begin(struct run *r, const char *why);
static void copy_signed(struct run *r, bool ok);
static void moving_signed(struct run *r, bool ok);
static void freeze_abandon(struct run *r, const char *why);
static void tjob_answer(struct tjob *t);

/* Fault injection for the tests: with MM_FAILPOINT=NAME in the
 * environment, the node's whole process group is killed (as kill -9
 * would) when a move reaches the point NAME (move-PHASE as a move enters
 * PHASE, move-frozen, move-committed; move-target-REQUEST at the target
 * when REQUEST comes). */
static void
failpoint(const char *name)
{
	const char *fp = getenv("MM_FAILPOINT");

	if (fp != NULL && strcmp(fp, name) == 0) {
		log_warnx("- move failpoint name=%s", name);
		(void)kill(0, SIGKILL);
	}
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
set_timer(struct event *ev, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
		(suseconds_t)((ms % 1000) * 1000) };

	event_add(ev, &tv);
}

/* ---- members -------------------------------------------------------- */

struct pick {
	const char *site;
	const char *self;
	char best[RECORD_NAME_MAX + 1];
	int64_t best_rtt;
	char (*all)[RECORD_NAME_MAX + 1];
	size_t n_all, max_all;
};

static void
pick_cb(void *arg, const struct gossip_member_info *mi)
{
	struct pick *p = arg;
	int64_t rtt = mi->rtt_ms >= 0 ? mi->rtt_ms : INT64_MAX / 2;

	if (mi->self || strcmp(mi->site, p->site) != 0 ||
	    mi->state != GOSSIP_ALIVE)
		return;
	if (p->best[0] == '\0' || rtt < p->best_rtt) {
		mm_strlcpy(p->best, mi->name, sizeof(p->best));
		p->best_rtt = rtt;
	}
	if (p->all != NULL && p->n_all < p->max_all)
		mm_strlcpy(p->all[p->n_all++], mi->name, sizeof(p->all[0]));
}

/* The nearest alive node of site into out; false when none is known. */
static bool
pick_node(struct moves *m, const char *site, char out[RECORD_NAME_MAX + 1])
{
	struct pick p = { site, NULL, "", 0, NULL, 0, 0 };
	struct gossip *g = peers_gossip(m->env.peers);

	if (g == NULL)
		return false;
	gossip_foreach_member(g, pick_cb, &p);
	mm_strlcpy(out, p.best, RECORD_NAME_MAX + 1);
	return p.best[0] != '\0';
}

/* ---- messages ------------------------------------------------------- */

static void
msg_reset(struct moves *m, enum move_msg_type type, uint64_t id,
    const char *user)
{
	struct move_msg *msg = m->msg;

	msg->type = type;
	msg->id = id;
	mm_strlcpy(msg->user, user, sizeof(msg->user));
	msg->site[0] = msg->backend[0] = msg->error[0] = '\0';
	msg->ok = false;
	msg->record = NULL;
	msg->record_len = 0;
	msg->kicked = 0;
	msg->n_folders = msg->n_body_from = 0;
	msg->truncated = false;
}

static void
msg_send(struct moves *m, const char *to)
{
	int len = move_msg_encode(m->msg, m->buf, MOVE_MSG_MAX);

	if (len < 0) {
		log_warnx("- move encode-failed type=%s user=%s",
		    move_msg_type_name(m->msg->type), m->msg->user);
		return;
	}
	peers_send(m->env.peers, to, PEER_FRAME_MOVE, m->buf, (size_t)len);
}

/* ---- the coordinator: persistence ----------------------------------- */

static void
persist(struct run *r)
{
	r->mv->updated_ms = wall_ms();
	if (move_db_put(r->m->db, r->mv) != 0)
		log_warnx("- move persist-failed user=%s", r->mv->user);
}

static void
enter_phase(struct run *r, enum move_phase p)
{
	uint64_t now = wall_ms();

	log_info("- move phase user=%s to=%s phase=%s after=%s ms=%llu",
	    r->mv->user, r->mv->to_site, move_phase_name(p),
	    move_phase_name(r->mv->phase),
	    (unsigned long long)(now - r->mv->phase_ms));
	r->mv->phase = p;
	r->mv->phase_ms = now;
	persist(r);
	{
		char fp[32];

		snprintf(fp, sizeof(fp), "move-%s", move_phase_name(p));
		failpoint(fp);
	}
}

static void
set_error(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_error(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->mv->error, sizeof(r->mv->error), fmt, ap);
	va_end(ap);
	log_warnx("- move error user=%s phase=%s error=\"%s\"", r->mv->user,
	    move_phase_name(r->mv->phase), r->mv->error);
}

static void
run_free(struct run *r)
{
	struct run **pp;

	for (pp = &r->m->runs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	doveadm_cancel(r->cmd);
	verify_cancel(r->ver);
	event_free(r->timer);
	event_free(r->freeze_timer);
	free(r->need);
	free(r->acked);
	free(r->mine);
	free(r->theirs);
	free(r->mv);
	free(r);
}

static struct run *
run_find(struct moves *m, uint64_t id)
{
	struct run *r;

	for (r = m->runs; r != NULL; r = r->next)
		if (r->mv->id == id)
			return r;
	return NULL;
}

static struct run *
run_find_user(struct moves *m, const char *user)
{
	struct run *r;

	for (r = m->runs; r != NULL; r = r->next)
		if (strcmp(r->mv->user, user) == 0)
			return r;
	return NULL;
}

/* ---- the coordinator: signing --------------------------------------- */

struct sign_job {
	struct run *r;
	char user[RECORD_USER_MAX + 1];
	char backend[RECORD_NAME_MAX + 1];
	char target[RECORD_SITE_MAX + 1];
	enum user_state state;
	enum accept_result res;
	uint8_t env[RECORD_MAX];
	size_t len;
	void (*then)(struct run *r, bool ok);
};

static void
sign_run(struct store *st, void *arg)
{
	struct sign_job *j = arg;

	j->res = ops_move_sign(j->r->m->env.ops, st, j->user, j->backend,
	    j->state, j->target, j->env, &j->len);
}

static void
sign_done(void *arg)
{
	struct sign_job *j = arg;
	struct run *r = j->r;
	bool ok = j->res == ACCEPT_STORED || j->res == ACCEPT_DUPLICATE;

	r->busy = false;
	ops_publish(r->m->env.ops);
	if (ok) {
		memcpy(r->record, j->env, j->len);
		r->record_len = j->len;
	} else {
		set_error(r, "signing %s: %s", record_state_name(j->state),
		    store_accept_name(j->res));
	}
	j->then(r, ok);
	free(j);
}

/* Signs user's next record on the writer; then(r, ok) on the loop. */
static void
sign(struct run *r, enum user_state state, const char *backend,
    const char *target, void (*then)(struct run *r, bool ok))
{
	struct sign_job *j = xcalloc(1, sizeof(*j));

	j->r = r;
	mm_strlcpy(j->user, r->mv->user, sizeof(j->user));
	mm_strlcpy(j->backend, backend, sizeof(j->backend));
	mm_strlcpy(j->target, target, sizeof(j->target));
	j->state = state;
	j->then = then;
	r->step = R_SIGN;
	r->busy = true;
	jobs_add(r->m->env.writer, sign_run, sign_done, j);
}

/* The record this node holds for the user now: 1, 0 none, -1. */
static int
current(struct moves *m, const char *user, struct record_user *u)
{
	return store_get_user(ops_store(m->env.ops), user, u, NULL, NULL);
}

/* ---- the coordinator: requests to other nodes ----------------------- */

static void
request(struct run *r, enum move_msg_type type, enum move_msg_type answer)
{
	struct moves *m = r->m;

	if (r->peer[0] == '\0' && !pick_node(m, r->mv->to_site, r->peer)) {
		set_error(r, "no node of site %s is known alive",
		    r->mv->to_site);
		r->step = R_IDLE;
		set_timer(r->timer, MOVE_RETRY_MS);
		return;
	}
	msg_reset(m, type, r->mv->id, r->mv->user);
	mm_strlcpy(m->msg->site, r->mv->from_site, sizeof(m->msg->site));
	mm_strlcpy(m->msg->backend, r->mv->to_backend,
	    sizeof(m->msg->backend));
	if (type == MOVE_MSG_COMMIT || type == MOVE_MSG_PREPARE ||
	    type == MOVE_MSG_VERIFY) {
		m->msg->record = r->record;
		m->msg->record_len = r->record_len;
	}
	if (type == MOVE_MSG_PREPARE) {
		m->msg->folders[0] = r->src_inbox;
		m->msg->n_folders = 1;
	}
	msg_send(m, r->peer);
	r->waiting = answer;
	set_timer(r->timer, MOVE_RETRY_MS);
}

/* ---- INBOX identity ------------------------------------------------- */

/* What `mailbox status "messages uidnext uidvalidity guid" INBOX` says:
 * name, messages, uidnext, uidvalidity, GUID (32 hex digits, kept in the
 * first 16 bytes of digest). */
static bool
inbox_row(struct move_folder *f, size_t n, const char *const *field)
{
	size_t glen;

	if (n != 5 || strcmp(field[0], "INBOX") != 0)
		return false;
	memset(f, 0, sizeof(*f));
	mm_strlcpy(f->name, field[0], sizeof(f->name));
	f->messages = strtoull(field[1], NULL, 10);
	f->uidnext = strtoull(field[2], NULL, 10);
	f->uidvalidity = strtoull(field[3], NULL, 10);
	glen = strlen(field[4]);
	return glen == 32 && sodium_hex2bin(f->digest, MOVE_DIGEST_LEN,
	    field[4], glen, NULL, NULL, NULL) == 0;
}

static const char *const inbox_argv_tail[2] = {
	"messages uidnext uidvalidity guid", "INBOX"
};

/* Runs the INBOX status for user on be; row and done as doveadm_run's. */
static struct doveadm_cmd *
inbox_status(struct event_base *base, const struct mm_backend_conf *be,
    const char *user, doveadm_row_cb row, doveadm_done_cb done, void *arg,
    const char **why_r)
{
	const char *argv[5] = { "mailbox status", "-u", user,
		inbox_argv_tail[0], inbox_argv_tail[1] };
	struct doveadm_cmd *c = doveadm_run(base, be->host, be->doveadm_port,
	    be->doveadm_password, user, argv, 5, MOVE_VERIFY_MS, row, done,
	    arg, why_r);

	if (c != NULL)
		(void)doveadm_set_row_fields(c, 5);
	return c;
}

static bool
src_inbox_row(void *arg, size_t n, const char *const *field)
{
	struct run *r = arg;

	r->have_src_inbox = inbox_row(&r->src_inbox, n, field);
	return r->have_src_inbox;
}

static void
src_inbox_done(void *arg, const struct doveadm_result *res)
{
	struct run *r = arg;

	r->cmd = NULL;
	if (res->status != DOVEADM_OK || !r->have_src_inbox) {
		r->have_src_inbox = false;
		abort_begin(r, res->status != DOVEADM_OK ? res->error :
		    "the source's INBOX status could not be read");
		return;
	}
	/* MOVING first: PREPARE carries it, so that the target's store has
	 * it (and lets the dsync stream in) before the first pass. */
	sign(r, USTATE_MOVING, r->mv->from_backend, r->mv->to_site,
	    moving_signed);
}

static void
moving_signed(struct run *r, bool ok)
{
	if (!ok) {
		abort_begin(r, r->mv->error);
		return;
	}
	r->step = R_PREPARE;
	r->req_start_ms = mm_now_ms();
	request(r, MOVE_MSG_PREPARE, MOVE_MSG_PREPARED);
}

static void
prepare_begin(struct run *r)
{
	const struct mm_backend_conf *be = mm_config_backend(r->m->env.conf,
	    r->mv->from_backend);
	const char *why = "the back end is gone from the config";

	r->step = R_PREPARE;
	if (be == NULL || (r->cmd = inbox_status(r->m->env.base, be,
	    r->mv->user, src_inbox_row, src_inbox_done, r, &why)) == NULL)
		abort_begin(r, why);
}

/* ---- the coordinator: passes ---------------------------------------- */

static void
pass_done(void *arg, const struct doveadm_result *res)
{
	struct run *r = arg;
	uint64_t took = mm_now_ms() - r->pass_start_ms;

	r->cmd = NULL;
	if (res->status == DOVEADM_FAILED && r->state[0] != '\0' &&
	    r->mv->phase != MOVE_COMMIT) {
		/* dsync could not go on from its state (the target's
		 * transaction log moved on): a whole pass, at once. */
		log_info("- move pass-again user=%s phase=%s reason=\"%s\"",
		    r->mv->user, move_phase_name(r->mv->phase), res->error);
		r->state[0] = '\0';
		pass_start(r);
		return;
	}
	if (res->status != DOVEADM_OK) {
		/* What the target holds is not known: a whole pass next. */
		r->state[0] = '\0';
		set_error(r, "dsync pass: %s", res->error);
		if (r->mv->phase == MOVE_FREEZE) {
			freeze_abandon(r, "the last pass failed");
			return;
		}
		if (r->mv->phase == MOVE_COMMIT &&
		    ++r->pass_fails >= MOVE_PASS_FAILS_MAX) {
			/* Never undone: the target takes the user without
			 * what reached this site's back end late. */
			set_error(r, "the pass after the commit failed %u "
			    "times: mail that reached site %s's back end "
			    "after the freeze may be there only",
			    r->pass_fails, r->mv->from_site);
			r->late_pass = true;
			r->step = R_COMMIT_REQ;
			request(r, MOVE_MSG_COMMIT, MOVE_MSG_COMMITTED);
			return;
		}
		if (r->mv->phase == MOVE_COMMIT) {
			r->step = R_IDLE;
			set_timer(r->timer, MOVE_RETRY_MS);
			return;
		}
		if (++r->pass_fails >= MOVE_PASS_FAILS_MAX) {
			abort_begin(r, r->mv->error);
			return;
		}
		r->step = R_IDLE;
		set_timer(r->timer, MOVE_RETRY_MS);
		return;
	}
	r->pass_fails = 0;
	memcpy(r->state, r->next_state, sizeof(r->state));
	r->next_state[0] = '\0';
	r->mv->passes++;
	log_info("- move pass user=%s phase=%s pass=%u ms=%llu", r->mv->user,
	    move_phase_name(r->mv->phase), r->mv->passes,
	    (unsigned long long)took);
	persist(r);
	switch (r->mv->phase) {
	case MOVE_COPY:
		if (took >= MOVE_QUICK_PASS_MS &&
		    r->mv->passes < r->m->env.conf->limits.move_passes) {
			pass_begin(r);		/* another catch-up pass */
			return;
		}
		freeze_begin(r);
		return;
	case MOVE_FREEZE:
		mm_metrics_move_phase(r->m->env.metrics, MM_METRICS_MOVE_FINAL,
		    took);
		r->final_pass = true;
		verify_begin(r);
		return;
	case MOVE_COMMIT:
		r->late_pass = true;
		r->step = R_COMMIT_REQ;
		request(r, MOVE_MSG_COMMIT, MOVE_MSG_COMMITTED);
		return;
	default:
		run_next(r);
		return;
	}
}

/* A backup with -s prints the new state. */
static bool
pass_state_row(void *arg, size_t n, const char *const *field)
{
	struct run *r = arg;
	size_t len = n == 1 ? strlen(field[0]) : 0;
	size_t i;

	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)field[0][i]) &&
		    strchr("+/=", field[0][i]) == NULL)
			len = 0;
	if (len > 0 && len <= MOVE_STATE_MAX)
		memcpy(r->next_state, field[0], len + 1);
	return true;
}

static void
pass_start(struct run *r)
{
	struct moves *m = r->m;
	const struct mm_backend_conf *be = mm_config_backend(m->env.conf,
	    r->mv->from_backend);
	const struct mm_listener_conf *dl = m->env.conf->dsync_listen;
	char dest[300];
	const char *why = NULL;
	/* Before the commit the target's copy is the move's alone: backup
	 * makes it the source's, and puts back what an earlier copy there
	 * had expunged; with the state of the pass before, it copies only
	 * what changed since. After the commit the target takes mail of its
	 * own: a one-way sync adds what reached the source late and reverts
	 * nothing. */
	bool late = r->mv->phase == MOVE_COMMIT;
	const char *argv[7];
	size_t argc = 0;

	if (be == NULL || be->move_engine == NULL || dl == NULL) {
		abort_begin(r, "this node cannot copy: its back end lost move= "
		    "or dsync-listen is gone");
		return;
	}
	snprintf(dest, sizeof(dest), strchr(dl->host, ':') != NULL ?
	    "tcp:[%s]:%s" : "tcp:%s:%s", dl->host, dl->port);
	argv[argc++] = late ? "sync" : "backup";
	if (late)
		argv[argc++] = "-1";
	argv[argc++] = "-u";
	argv[argc++] = r->mv->user;
	if (!late) {
		argv[argc++] = "-s";
		argv[argc++] = r->state;
	}
	argv[argc++] = dest;
	r->step = R_PASS;
	r->next_state[0] = '\0';
	r->pass_start_ms = mm_now_ms();
	r->cmd = doveadm_run(m->env.base, be->host, be->doveadm_port,
	    be->doveadm_password, r->mv->user, argv, argc, MOVE_DOVEADM_MS,
	    late ? NULL : pass_state_row, pass_done, r, &why);
	if (r->cmd == NULL) {
		struct doveadm_result res = { DOVEADM_PROTOCOL, -1, why };

		pass_done(r, &res);
	}
}

static void
route_done(void *arg, bool all, uint64_t count)
{
	struct run *r = arg;

	if (count == 0) {
		set_error(r, "no worker took the route of the dsync stream");
		r->step = R_IDLE;
		set_timer(r->timer, MOVE_RETRY_MS);
		return;
	}
	pass_start(r);
}

/* A pass: the workers learn (again) where the stream goes, then dsync. */
static void
pass_begin(struct run *r)
{
	r->step = R_ROUTE;
	r->m->env.route(r->m->env.env_arg, r->mv->user, r->mv->to_site,
	    r->mv->to_backend, route_done, r);
}

/* ---- the coordinator: the freeze ------------------------------------ */

static void kick_backend_done(void *arg, const struct doveadm_result *res);

/* The last pass starts once every node of this site has the freeze and
 * has ended the user's sessions, and the back end has ended its own (any
 * that did not come through a node; one a node opened before it had the
 * freeze is ended by that node before it confirms). */
static void
freeze_check(struct run *r)
{
	size_t i;

	if (r->step != R_FREEZE_WAIT || !r->kicked_local ||
	    !r->kicked_backend)
		return;
	for (i = 0; i < r->n_need; i++)
		if (!r->acked[i])
			return;
	log_info("- move frozen user=%s nodes=%zu ms=%llu", r->mv->user,
	    r->n_need + 1,
	    (unsigned long long)(mm_now_ms() - r->freeze_start_ms));
	failpoint("move-frozen");
	event_del(r->timer);
	pass_begin(r);
}

static void
kick_local_done(void *arg, bool all, uint64_t count)
{
	struct run *r = arg;

	if (r->step != R_FREEZE_WAIT)
		return;
	if (!all) {
		freeze_abandon(r, "a worker of this node did not confirm");
		return;
	}
	r->kicked_local = true;
	freeze_check(r);
}

static void
kick_backend_done(void *arg, const struct doveadm_result *res)
{
	struct run *r = arg;

	r->cmd = NULL;
	/* Nothing to kick answers as a failure of its own: only an
	 * unreachable back end is one. */
	if (res->status == DOVEADM_UNREACHABLE ||
	    res->status == DOVEADM_TIMEOUT || res->status == DOVEADM_AUTH) {
		freeze_abandon(r, res->error);
		return;
	}
	r->kicked_backend = true;
	freeze_check(r);
}

static void
freeze_send(struct run *r)
{
	struct moves *m = r->m;
	size_t i;

	for (i = 0; i < r->n_need; i++) {
		if (r->acked[i])
			continue;
		msg_reset(m, MOVE_MSG_FREEZE, r->mv->id, r->mv->user);
		m->msg->record = r->record;
		m->msg->record_len = r->record_len;
		msg_send(m, r->need[i]);
	}
}

static void
frozen_signed(struct run *r, bool ok)
{
	struct moves *m = r->m;
	struct pick p = { m->env.conf->site, NULL, "", 0, NULL, 0, 0 };
	struct gossip *g = peers_gossip(m->env.peers);
	const struct mm_backend_conf *be = mm_config_backend(m->env.conf,
	    r->mv->from_backend);
	const char *kargv[2] = { "kick", r->mv->user };
	const char *why = "the back end is gone from the config";

	if (r->mv->phase != MOVE_FREEZE) {
		/* Abandoned while it was being signed. */
		sign(r, USTATE_MOVING, r->mv->from_backend, r->mv->to_site,
		    copy_signed);
		return;
	}
	if (!ok) {
		freeze_abandon(r, "FROZEN could not be signed");
		return;
	}
	free(r->need);
	free(r->acked);
	p.max_all = 256;
	p.all = xcalloc(p.max_all, sizeof(*p.all));
	if (g != NULL)
		gossip_foreach_member(g, pick_cb, &p);
	r->need = p.all;
	r->n_need = p.n_all;
	r->acked = xcalloc(r->n_need + 1, sizeof(*r->acked));
	r->kicked_local = r->kicked_backend = false;
	r->step = R_FREEZE_WAIT;
	set_timer(r->timer, MOVE_FREEZE_ACK_MS);
	freeze_send(r);
	m->env.kick(m->env.env_arg, r->mv->user,
	    "Mailbox is being moved, log in again", kick_local_done, r);
	if (be == NULL || (r->cmd = doveadm_run(m->env.base, be->host,
	    be->doveadm_port, be->doveadm_password, r->mv->user, kargv, 2,
	    MOVE_KICK_MS, NULL, kick_backend_done, r, &why)) == NULL)
		freeze_abandon(r, why);
}

static void
freeze_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;

	if (r->busy) {
		/* A TRANSFER being signed decides when it comes back. */
		set_timer(r->freeze_timer, 10);
		return;
	}
	if (r->mv->phase == MOVE_FREEZE)
		freeze_abandon(r, "the freeze passed timeout move-freeze");
}

static void
freeze_begin(struct run *r)
{
	if (r->copy_start_ms != 0)
		mm_metrics_move_phase(r->m->env.metrics, MM_METRICS_MOVE_COPY,
		    mm_now_ms() - r->copy_start_ms);
	r->copy_start_ms = 0;
	r->mv->freezes++;
	r->freeze_start_ms = mm_now_ms();
	r->final_pass = false;
	r->have_mine = r->have_theirs = false;
	enter_phase(r, MOVE_FREEZE);
	set_timer(r->freeze_timer, r->m->env.conf->limits.move_freeze_ms);
	sign(r, USTATE_FROZEN, r->mv->from_backend, r->mv->to_site,
	    frozen_signed);
}

static void
copy_signed(struct run *r, bool ok)
{
	if (!ok) {
		abort_begin(r, r->mv->error);
		return;
	}
	run_next(r);
}

/* Back to copying: MOVING again (logins and mail flow at this site). */
static void
freeze_abandon(struct run *r, const char *why)
{
	if (r->mv->phase != MOVE_FREEZE)
		return;
	set_error(r, "freeze abandoned: %s", why);
	doveadm_cancel(r->cmd);
	r->cmd = NULL;
	verify_cancel(r->ver);
	r->ver = NULL;
	event_del(r->freeze_timer);
	if (r->mv->freezes >= MOVE_FREEZES_MAX) {
		abort_begin(r, r->mv->error);
		return;
	}
	mm_metrics_move_outcome(r->m->env.metrics,
	    MM_METRICS_MOVE_FREEZE_ABANDONED);
	enter_phase(r, MOVE_COPY);
	r->copy_start_ms = mm_now_ms();
	if (r->busy) {
		/* The signing in flight comes back first. */
		return;
	}
	sign(r, USTATE_MOVING, r->mv->from_backend, r->mv->to_site,
	    copy_signed);
}

/* ---- the coordinator: verify and commit ----------------------------- */

static void
verify_both(struct run *r)
{
	char buf[400];
	const char *diff;

	if (!r->have_mine || !r->have_theirs)
		return;
	diff = verify_compare(r->mine, r->n_mine, r->theirs, r->n_theirs,
	    buf, sizeof(buf));
	if (diff != NULL) {
		freeze_abandon(r, diff);
		return;
	}
	log_info("- move verified user=%s folders=%zu ms=%llu", r->mv->user,
	    r->n_mine, (unsigned long long)(mm_now_ms() - r->freeze_start_ms));
	event_del(r->timer);
	commit_begin(r);
}

static void
verify_mine_done(void *arg, const char *error, const struct move_folder *f,
    size_t n, bool truncated)
{
	struct run *r = arg;

	r->ver = NULL;
	if (error != NULL || truncated) {
		freeze_abandon(r, error != NULL ? error :
		    "more folders than a verify compares");
		return;
	}
	free(r->mine);
	r->mine = xcalloc(n + 1, sizeof(*f));
	memcpy(r->mine, f, n * sizeof(*f));
	r->n_mine = n;
	r->have_mine = true;
	verify_both(r);
}

static void
verify_begin(struct run *r)
{
	const struct mm_backend_conf *be = mm_config_backend(r->m->env.conf,
	    r->mv->from_backend);
	const char *why = "no back end";

	r->step = R_VERIFY;
	r->have_mine = r->have_theirs = false;
	if (be == NULL || (r->ver = verify_start(r->m->env.base, be,
	    r->mv->user, MOVE_VERIFY_MS, verify_mine_done, r,
	    &why)) == NULL) {
		freeze_abandon(r, why);
		return;
	}
	r->req_start_ms = mm_now_ms();
	request(r, MOVE_MSG_VERIFY, MOVE_MSG_VERIFIED);
}

static void
transfer_signed(struct run *r, bool ok)
{
	if (!ok) {
		/* Not committed: the freeze is abandoned instead. */
		enter_phase(r, MOVE_FREEZE);
		freeze_abandon(r, "TRANSFER could not be signed");
		return;
	}
	event_del(r->freeze_timer);
	r->mv->freeze_ms = mm_now_ms() - r->freeze_start_ms;
	mm_metrics_move_phase(r->m->env.metrics, MM_METRICS_MOVE_FREEZE,
	    r->mv->freeze_ms);
	log_info("- move committed user=%s to=%s backend=%s freeze_ms=%llu",
	    r->mv->user, r->mv->to_site, r->mv->to_backend,
	    (unsigned long long)r->mv->freeze_ms);
	persist(r);
	failpoint("move-committed");
	r->late_pass = false;
	r->pass_fails = 0;
	pass_begin(r);
}

static void
commit_begin(struct run *r)
{
	enter_phase(r, MOVE_COMMIT);
	sign(r, USTATE_TRANSFER, r->mv->to_backend, r->mv->to_site,
	    transfer_signed);
}

/* ---- the coordinator: abort ----------------------------------------- */

static void
aborted(struct run *r)
{
	mm_metrics_move_outcome(r->m->env.metrics, MM_METRICS_MOVE_ABORTED);
	enter_phase(r, MOVE_ABORTED);
	r->m->env.route(r->m->env.env_arg, r->mv->user, "", "", NULL, NULL);
	r->step = R_DONE;
	run_free(r);
}

static void
abort_signed(struct run *r, bool ok)
{
	if (!ok) {
		r->step = R_IDLE;
		set_timer(r->timer, MOVE_RETRY_MS);
		return;
	}
	if (r->mv->to_backend[0] == '\0') {
		aborted(r);
		return;
	}
	r->step = R_ABORT_REQ;
	r->req_start_ms = mm_now_ms();
	request(r, MOVE_MSG_ABORT, MOVE_MSG_ABORTED);
}

/* Undoes what the move did here (ACTIVE at this site), then has the
 * target empty its copy. Only before the commit. */
static void
abort_step(struct run *r)
{
	struct record_user u;

	if (current(r->m, r->mv->user, &u) == 1 &&
	    strcmp(u.site, r->m->env.conf->site) == 0 &&
	    (u.state == USTATE_MOVING || u.state == USTATE_FROZEN)) {
		sign(r, USTATE_ACTIVE, u.backend, "", abort_signed);
		return;
	}
	abort_signed(r, true);
}

static void
abort_begin(struct run *r, const char *why)
{
	if (r->mv->phase == MOVE_COMMIT || r->mv->phase == MOVE_DONE ||
	    r->mv->phase == MOVE_ABORTED)
		return;
	if (why != NULL && why != r->mv->error)
		set_error(r, "aborted: %s", why);
	doveadm_cancel(r->cmd);
	r->cmd = NULL;
	verify_cancel(r->ver);
	r->ver = NULL;
	event_del(r->freeze_timer);
	enter_phase(r, MOVE_ABORTING);
	if (!r->busy)
		abort_step(r);
}

/* ---- the coordinator: what comes next ------------------------------- */

static void
run_next(struct run *r)
{
	if (r->busy)
		return;
	switch (r->mv->phase) {
	case MOVE_PREPARE:
		prepare_begin(r);
		return;
	case MOVE_COPY:
		if (r->mv->abort_requested)
			abort_begin(r, "asked to");
		else
			pass_begin(r);
		return;
	case MOVE_FREEZE:
		if (r->mv->abort_requested)
			abort_begin(r, "asked to");
		else if (!r->final_pass)
			pass_begin(r);
		else if (!r->have_mine || !r->have_theirs)
			verify_begin(r);
		else
			commit_begin(r);
		return;
	case MOVE_COMMIT:
		if (!r->late_pass) {
			pass_begin(r);
			return;
		}
		r->step = R_COMMIT_REQ;
		request(r, MOVE_MSG_COMMIT, MOVE_MSG_COMMITTED);
		return;
	case MOVE_ABORTING:
		abort_step(r);
		return;
	case MOVE_DONE:
	case MOVE_ABORTED:
		run_free(r);
		return;
	}
}

static void
run_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run *r = arg;
	uint64_t now = mm_now_ms();

	switch (r->step) {
	case R_PREPARE:
	case R_VERIFY:
	case R_COMMIT_REQ:
	case R_ABORT_REQ:
		if (r->step == R_VERIFY && r->have_theirs)
			return;
		if (r->step == R_PREPARE && r->cmd != NULL)
			return;		/* still reading the source */
		if (r->step == R_PREPARE && now - r->req_start_ms >=
		    MOVE_REQUEST_MS) {
			abort_begin(r, "the target site did not answer");
			return;
		}
		if (r->step == R_ABORT_REQ && now - r->req_start_ms >=
		    MOVE_REQUEST_MS) {
			set_error(r, "the target site did not confirm that it "
			    "emptied its copy");
			aborted(r);
			return;
		}
		/* Another node may answer where this one did not. */
		if (now - r->req_start_ms >= 2 * MOVE_RETRY_MS)
			r->peer[0] = '\0';
		request(r, r->step == R_PREPARE ? MOVE_MSG_PREPARE :
		    r->step == R_VERIFY ? MOVE_MSG_VERIFY :
		    r->step == R_COMMIT_REQ ? MOVE_MSG_COMMIT : MOVE_MSG_ABORT,
		    r->waiting);
		return;
	case R_FREEZE_WAIT:
		freeze_abandon(r, "a node of this site did not confirm the "
		    "freeze in time");
		return;
	case R_IDLE:
		run_next(r);
		return;
	default:
		return;
	}
}

static struct run *
run_new(struct moves *m, const struct move *mv)
{
	struct run *r = xcalloc(1, sizeof(*r));

	r->m = m;
	r->mv = xmalloc(sizeof(*r->mv));
	memcpy(r->mv, mv, sizeof(*mv));
	r->timer = evtimer_new(m->env.base, run_timer_cb, r);
	r->freeze_timer = evtimer_new(m->env.base, freeze_timeout_cb, r);
	r->next = m->runs;
	m->runs = r;
	return r;
}

/* ---- the coordinator: answers --------------------------------------- */

static void
answer_in(struct moves *m, const struct move_msg *a, const char *from)
{
	struct run *r = run_find(m, a->id);

	if (r == NULL || r->busy || a->type != r->waiting)
		return;		/* late, or for another run */
	switch (a->type) {
	case MOVE_MSG_PREPARED:
		if (r->step != R_PREPARE || r->mv->phase != MOVE_PREPARE)
			return;
		event_del(r->timer);
		if (!a->ok) {
			abort_begin(r, a->error);
			return;
		}
		mm_strlcpy(r->mv->to_backend, a->backend,
		    sizeof(r->mv->to_backend));
		mm_strlcpy(r->peer, from, sizeof(r->peer));
		enter_phase(r, MOVE_COPY);
		r->copy_start_ms = mm_now_ms();
		run_next(r);
		return;
	case MOVE_MSG_VERIFIED:
		if (r->step != R_VERIFY || r->have_theirs)
			return;
		if (!a->ok || a->truncated) {
			freeze_abandon(r, a->ok ? "more folders than a verify "
			    "compares" : a->error);
			return;
		}
		free(r->theirs);
		r->theirs = xcalloc(a->n_folders + 1, sizeof(*r->theirs));
		memcpy(r->theirs, a->folders,
		    a->n_folders * sizeof(*r->theirs));
		r->n_theirs = a->n_folders;
		r->have_theirs = true;
		verify_both(r);
		return;
	case MOVE_MSG_COMMITTED:
		if (r->step != R_COMMIT_REQ)
			return;
		event_del(r->timer);
		if (!a->ok) {
			set_error(r, "the target could not take the user: %s",
			    a->error);
			r->step = R_IDLE;
			set_timer(r->timer, MOVE_RETRY_MS);
			return;
		}
		r->mv->error[0] = '\0';
		mm_metrics_move_outcome(m->env.metrics, MM_METRICS_MOVE_DONE);
		enter_phase(r, MOVE_DONE);
		log_info("- move done user=%s to=%s backend=%s passes=%u "
		    "freeze_ms=%llu", r->mv->user, r->mv->to_site,
		    r->mv->to_backend, r->mv->passes,
		    (unsigned long long)r->mv->freeze_ms);
		m->env.route(m->env.env_arg, r->mv->user, "", "", NULL, NULL);
		run_free(r);
		return;
	case MOVE_MSG_ABORTED:
		if (r->step != R_ABORT_REQ)
			return;
		event_del(r->timer);
		if (!a->ok)
			set_error(r, "the target could not empty its copy: %s",
			    a->error);
		aborted(r);
		return;
	default:
		return;
	}
}

static void
frozen_in(struct moves *m, const struct move_msg *a, const char *from)
{
	struct run *r = run_find(m, a->id);
	size_t i;

	if (r == NULL || r->step != R_FREEZE_WAIT)
		return;
	if (!a->ok) {
		freeze_abandon(r, a->error);
		return;
	}
	for (i = 0; i < r->n_need; i++)
		if (strcmp(r->need[i], from) == 0)
			r->acked[i] = true;
	freeze_check(r);
}

/* ---- the target, and this site's other nodes ------------------------ */

static void
tjob_free(struct tjob *t)
{
	struct tjob **pp;

	for (pp = &t->m->tjobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	doveadm_cancel(t->cmd);
	verify_cancel(t->ver);
	free(t);
}

static void
tjob_fail(struct tjob *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
tjob_fail(struct tjob *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->error, sizeof(t->error), fmt, ap);
	va_end(ap);
	t->ok = false;
	log_warnx("- move refused request=%s user=%s from=%s error=\"%s\"",
	    move_msg_type_name(t->q.type), t->q.user, t->from, t->error);
	tjob_answer(t);
}

static void
tjob_answer(struct tjob *t)
{
	struct moves *m = t->m;
	static const enum move_msg_type answer[] = {
		[MOVE_MSG_PREPARE] = MOVE_MSG_PREPARED,
		[MOVE_MSG_FREEZE] = MOVE_MSG_FROZEN,
		[MOVE_MSG_VERIFY] = MOVE_MSG_VERIFIED,
		[MOVE_MSG_COMMIT] = MOVE_MSG_COMMITTED,
		[MOVE_MSG_ABORT] = MOVE_MSG_ABORTED,
	};

	msg_reset(m, answer[t->q.type], t->q.id, t->q.user);
	m->msg->ok = t->ok;
	mm_strlcpy(m->msg->error, t->ok ? "" : t->error,
	    sizeof(m->msg->error));
	mm_strlcpy(m->msg->backend, t->q.backend, sizeof(m->msg->backend));
	m->msg->kicked = t->kicked;
	msg_send(m, t->from);
	tjob_free(t);
}

/* PREPARE: what this site's back end holds for the user decides. A copy
 * of the source's mailbox (its INBOX has the source's GUID: an earlier
 * move's copy, or this move's after a restart) is brought up to date by
 * the passes. An INBOX never used (empty, UIDNEXT 1, no other folder) is
 * given the source's GUID and UIDVALIDITY, so that dsync copies into it.
 * Anything else is another mailbox of the user's: dsync would have to
 * delete its INBOX, which Dovecot refuses, so the move is refused with
 * the reason. */
static bool
prep_list_row(void *arg, size_t n, const char *const *field)
{
	struct tjob *t = arg;

	if (n != 1)
		return false;
	if (strcmp(field[0], "INBOX") != 0)
		t->n_folders++;		/* another folder: not a fresh box */
	return true;
}

static bool
prep_status_row(void *arg, size_t n, const char *const *field)
{
	struct tjob *t = arg;

	t->ok = inbox_row(&t->mine, n, field);
	return t->ok;
}

static void
prep_answer(struct tjob *t)
{
	t->ok = true;
	mm_strlcpy(t->q.backend, t->be->name, sizeof(t->q.backend));
	tjob_answer(t);
}

static void
prep_update_done(void *arg, const struct doveadm_result *res)
{
	struct tjob *t = arg;

	t->cmd = NULL;
	if (res->status != DOVEADM_OK) {
		tjob_fail(t, "preparing the INBOX on %s: %s", t->be->name,
		    res->error);
		return;
	}
	log_info("- move prepared user=%s backend=%s inbox=fresh", t->q.user,
	    t->be->name);
	prep_answer(t);
}

static void
prep_status_done(void *arg, const struct doveadm_result *res)
{
	struct tjob *t = arg;
	char guid[2 * 16 + 1], uv[24];
	const char *argv[8];
	const char *why = NULL;

	t->cmd = NULL;
	if (res->status == DOVEADM_NOUSER) {
		tjob_fail(t, "back end %s of site %s does not know the user",
		    t->be->name, t->m->env.conf->site);
		return;
	}
	if (res->status != DOVEADM_OK || !t->ok) {
		tjob_fail(t, "reading the INBOX on %s: %s", t->be->name,
		    res->status != DOVEADM_OK ? res->error : "no status");
		return;
	}
	if (sodium_memcmp(t->mine.digest, t->src.digest, 16) == 0) {
		log_info("- move prepared user=%s backend=%s inbox=copy "
		    "messages=%llu", t->q.user, t->be->name,
		    (unsigned long long)t->mine.messages);
		prep_answer(t);
		return;
	}
	if (t->mine.messages != 0 || t->mine.uidnext > 1 ||
	    t->n_folders != 0) {
		tjob_fail(t, "back end %s of site %s holds another mailbox of "
		    "the user (%llu messages in INBOX, %zu other folders, not "
		    "a copy of this one): remove it there first",
		    t->be->name, t->m->env.conf->site,
		    (unsigned long long)t->mine.messages, t->n_folders);
		return;
	}
	sodium_bin2hex(guid, sizeof(guid), t->src.digest, 16);
	snprintf(uv, sizeof(uv), "%llu",
	    (unsigned long long)t->src.uidvalidity);
	argv[0] = "mailbox update";
	argv[1] = "-u";
	argv[2] = t->q.user;
	argv[3] = "--mailbox-guid";
	argv[4] = guid;
	argv[5] = "--uid-validity";
	argv[6] = uv;
	argv[7] = "INBOX";
	t->cmd = doveadm_run(t->m->env.base, t->be->host, t->be->doveadm_port,
	    t->be->doveadm_password, t->q.user, argv, 8, MOVE_VERIFY_MS,
	    NULL, prep_update_done, t, &why);
	if (t->cmd == NULL)
		tjob_fail(t, "%s", why);
}

static void
prep_list_done(void *arg, const struct doveadm_result *res)
{
	struct tjob *t = arg;
	const char *why = NULL;

	t->cmd = NULL;
	if (res->status == DOVEADM_NOUSER) {
		tjob_fail(t, "back end %s of site %s does not know the user",
		    t->be->name, t->m->env.conf->site);
		return;
	}
	if (res->status != DOVEADM_OK) {
		tjob_fail(t, "listing the folders on %s: %s", t->be->name,
		    res->error);
		return;
	}
	t->ok = false;
	if ((t->cmd = inbox_status(t->m->env.base, t->be, t->q.user,
	    prep_status_row, prep_status_done, t, &why)) == NULL)
		tjob_fail(t, "%s", why);
}

static void
prep_check(struct tjob *t)
{
	const char *argv[3] = { "mailbox list", "-u", t->q.user };
	const char *why = NULL;

	t->n_folders = 0;
	t->cmd = doveadm_run(t->m->env.base, t->be->host, t->be->doveadm_port,
	    t->be->doveadm_password, t->q.user, argv, 3, MOVE_VERIFY_MS,
	    prep_list_row, prep_list_done, t, &why);
	if (t->cmd == NULL)
		tjob_fail(t, "%s", why);
	else
		(void)doveadm_set_row_fields(t->cmd, 1);
}

/* The back end a move to this site copies into: the one named, or the
 * first that moves by dsync. */
static const struct mm_backend_conf *
target_backend(const struct mm_config *conf, const char *name)
{
	size_t i;

	if (name[0] != '\0') {
		const struct mm_backend_conf *be = mm_config_backend(conf,
		    name);

		return be != NULL && be->move_engine != NULL ? be : NULL;
	}
	for (i = 0; i < conf->n_backends; i++)
		if (conf->backends[i].move_engine != NULL)
			return &conf->backends[i];
	return NULL;
}

static void
prepare_in(struct tjob *t)
{
	struct record_user u;
	int r = current(t->m, t->q.user, &u);

	if (r < 0) {
		tjob_fail(t, "site %s cannot read its directory",
		    t->m->env.conf->site);
		return;
	}
	if (r == 0 || u.state == USTATE_DELETED) {
		tjob_fail(t, "site %s does not know the user yet",
		    t->m->env.conf->site);
		return;
	}
	if (strcmp(u.site, t->from_site) != 0) {
		tjob_fail(t, "site %s sees the user owned by site %s, not by "
		    "%s", t->m->env.conf->site, u.site, t->from_site);
		return;
	}
	if (t->src.name[0] == '\0') {
		tjob_fail(t, "the request does not describe the source's "
		    "INBOX");
		return;
	}
	if ((t->be = target_backend(t->m->env.conf, t->q.backend)) == NULL) {
		tjob_fail(t, t->q.backend[0] != '\0' ? "site %s has no back "
		    "end %s that moves by dsync (move= in its config)" :
		    "site %s has no back end that moves by dsync (move= in "
		    "its config)%s", t->m->env.conf->site, t->q.backend);
		return;
	}
	prep_check(t);
}

static void
verify_in_done(void *arg, const char *error, const struct move_folder *f,
    size_t n, bool truncated)
{
	struct tjob *t = arg;
	struct moves *m = t->m;

	t->ver = NULL;
	msg_reset(m, MOVE_MSG_VERIFIED, t->q.id, t->q.user);
	m->msg->ok = error == NULL;
	if (error != NULL)
		mm_strlcpy(m->msg->error, error, sizeof(m->msg->error));
	else {
		memcpy(m->msg->folders, f, n * sizeof(*f));
		m->msg->n_folders = n;
		m->msg->truncated = truncated;
	}
	msg_send(m, t->from);
	tjob_free(t);
}

static void
verify_in(struct tjob *t)
{
	const char *why = NULL;

	if ((t->be = target_backend(t->m->env.conf, t->q.backend)) == NULL ||
	    t->q.backend[0] == '\0') {
		tjob_fail(t, "no back end %s that moves by dsync",
		    t->q.backend);
		return;
	}
	t->ver = verify_start(t->m->env.base, t->be, t->q.user,
	    MOVE_VERIFY_MS, verify_in_done, t, &why);
	if (t->ver == NULL)
		tjob_fail(t, "%s", why);
}

/* FREEZE and COMMIT: the record is stored first (on the writer). */
static void
accept_run(struct store *st, void *arg)
{
	struct tjob *t = arg;
	const uint8_t *envs[1] = { t->record };
	size_t lens[1] = { t->record_len };
	enum gossip_accept res[1];

	ops_gossip_accept_batch(st, t->from, envs, lens, 1,
	    (uint64_t)time(NULL), NULL, res);
	t->ok = res[0] != GOSSIP_ACCEPT_REJECT;
}

static void
active_run(struct store *st, void *arg)
{
	struct tjob *t = arg;
	uint8_t env[RECORD_MAX];
	size_t len;

	t->res = ops_move_sign(t->m->env.ops, st, t->q.user, t->q.backend,
	    USTATE_ACTIVE, "", env, &len);
}

static void
active_done(void *arg)
{
	struct tjob *t = arg;

	t->busy = false;
	ops_publish(t->m->env.ops);
	if (t->res != ACCEPT_STORED && t->res != ACCEPT_DUPLICATE) {
		tjob_fail(t, "signing ACTIVE: %s", store_accept_name(t->res));
		return;
	}
	t->ok = true;
	tjob_answer(t);
}

static void
kick_in_done(void *arg, bool all, uint64_t count)
{
	struct tjob *t = arg;

	t->kicked = count;
	if (!all) {
		tjob_fail(t, "a worker of node %s did not confirm",
		    t->m->env.conf->node_name);
		return;
	}
	t->ok = true;
	tjob_answer(t);
}

static void
accept_done(void *arg)
{
	struct tjob *t = arg;
	struct record_user u;

	t->busy = false;
	if (!t->ok) {
		tjob_fail(t, "the record was refused here");
		return;
	}
	if (t->q.type == MOVE_MSG_FREEZE) {
		t->m->env.kick(t->m->env.env_arg, t->q.user,
		    "Mailbox is being moved, log in again", kick_in_done, t);
		return;
	}
	if (t->q.type == MOVE_MSG_PREPARE) {
		prepare_in(t);
		return;
	}
	if (t->q.type == MOVE_MSG_VERIFY) {
		verify_in(t);
		return;
	}
	/* COMMIT: the TRANSFER is here; ACTIVE at this site (unless it is
	 * already). */
	if (current(t->m, t->q.user, &u) != 1 ||
	    strcmp(u.site, t->m->env.conf->site) != 0) {
		tjob_fail(t, "the TRANSFER did not make this site the owner");
		return;
	}
	if (u.state == USTATE_ACTIVE) {
		t->ok = true;
		tjob_answer(t);
		return;
	}
	mm_strlcpy(t->q.backend, u.backend, sizeof(t->q.backend));
	t->busy = true;
	jobs_add(t->m->env.writer, active_run, active_done, t);
}

/* ABORT: the partial copy stays. It is a copy of the source's mailbox
 * (its INBOX has the source's GUID), which a later move to this site
 * brings up to date; emptying it would make it a mailbox dsync cannot
 * copy into, since Dovecot never deletes an INBOX. */
static void
abort_in(struct tjob *t)
{
	struct record_user u;

	if (current(t->m, t->q.user, &u) == 1 &&
	    strcmp(u.site, t->m->env.conf->site) == 0) {
		tjob_fail(t, "site %s owns the user: the move is past its "
		    "commit", t->m->env.conf->site);
		return;
	}
	log_info("- move aborted user=%s backend=%s copy=kept", t->q.user,
	    t->q.backend[0] != '\0' ? t->q.backend : "-");
	t->ok = true;
	tjob_answer(t);
}

static bool
tjob_running(struct moves *m, const struct move_msg *q, const char *from)
{
	struct tjob *t;

	for (t = m->tjobs; t != NULL; t = t->next)
		if (t->q.type == q->type && t->q.id == q->id &&
		    strcmp(t->from, from) == 0)
			return true;
	return false;
}

static void
request_in(struct moves *m, const struct move_msg *q, const char *from,
    const char *from_site)
{
	struct tjob *t;

	if (tjob_running(m, q, from))
		return;		/* a retry: the answer is on its way */
	t = xcalloc(1, sizeof(*t));
	t->m = m;
	t->q.type = q->type;
	t->q.id = q->id;
	mm_strlcpy(t->q.user, q->user, sizeof(t->q.user));
	mm_strlcpy(t->q.site, q->site, sizeof(t->q.site));
	mm_strlcpy(t->q.backend, q->backend, sizeof(t->q.backend));
	mm_strlcpy(t->from, from, sizeof(t->from));
	mm_strlcpy(t->from_site, from_site, sizeof(t->from_site));
	if (q->record_len > 0 && q->record_len <= RECORD_MAX) {
		memcpy(t->record, q->record, q->record_len);
		t->record_len = q->record_len;
	}
	if (q->type == MOVE_MSG_PREPARE && q->n_folders == 1)
		t->src = q->folders[0];
	t->next = m->tjobs;
	m->tjobs = t;
	log_info("- move request=%s user=%s from=%s", move_msg_type_name(
	    q->type), q->user, from);
	{
		char fp[40];

		snprintf(fp, sizeof(fp), "move-target-%s",
		    move_msg_type_name(q->type));
		failpoint(fp);
	}
	switch (q->type) {
	case MOVE_MSG_PREPARE:
		if (t->record_len == 0) {
			tjob_fail(t, "no MOVING record came with the request");
			return;
		}
		t->busy = true;
		jobs_add(m->env.writer, accept_run, accept_done, t);
		return;
	case MOVE_MSG_VERIFY:
		if (t->record_len == 0) {
			verify_in(t);
			return;
		}
		/* The FROZEN record first: the target holds the user's
		 * logins from now until the TRANSFER comes. */
		t->busy = true;
		jobs_add(m->env.writer, accept_run, accept_done, t);
		return;
	case MOVE_MSG_FREEZE:
		if (strcmp(from_site, m->env.conf->site) != 0) {
			tjob_fail(t, "a freeze comes from a node of this site");
			return;
		}
		/* fall through */
	case MOVE_MSG_COMMIT:
		if (t->record_len == 0) {
			tjob_fail(t, "no record came with the request");
			return;
		}
		t->busy = true;
		jobs_add(m->env.writer, accept_run, accept_done, t);
		return;
	case MOVE_MSG_ABORT:
		abort_in(t);
		return;
	default:
		tjob_free(t);
		return;
	}
}

static void
frame_cb(void *arg, struct pconn *from, const uint8_t *msg, size_t len)
{
	struct moves *m = arg;
	const char *why = NULL;
	const char *name = peers_conn_name(from);

	if (move_msg_decode(msg, len, m->msg, &why) != 0) {
		log_warnx("- move bad-message from=%s reason=\"%s\"", name,
		    why);
		return;
	}
	switch (m->msg->type) {
	case MOVE_MSG_PREPARE:
	case MOVE_MSG_FREEZE:
	case MOVE_MSG_VERIFY:
	case MOVE_MSG_COMMIT:
	case MOVE_MSG_ABORT:
		request_in(m, m->msg, name, peers_conn_site(from));
		return;
	case MOVE_MSG_FROZEN:
		frozen_in(m, m->msg, name);
		return;
	default:
		answer_in(m, m->msg, name);
		return;
	}
}

/* ---- resuming after a restart --------------------------------------- */

/* The user's record as this node holds it, as the last one signed. */
static void
record_load(struct run *r)
{
	struct record_user u;
	uint8_t *buf = NULL;
	size_t len = 0;

	r->record_len = 0;
	if (store_get_user(ops_store(r->m->env.ops), r->mv->user, &u, &buf,
	    &len) == 1 && len <= RECORD_MAX) {
		memcpy(r->record, buf, len);
		r->record_len = len;
	}
	free(buf);
}

static bool
resume_cb(const struct move *mv, void *arg)
{
	struct moves *m = arg;

	if (!move_phase_running(mv->phase))
		return true;
	(void)run_new(m, mv);
	log_info("- move resume user=%s to=%s phase=%s", mv->user, mv->to_site,
	    move_phase_name(mv->phase));
	return true;
}

static void
resume_all(struct moves *m)
{
	struct run *r, *next;
	struct record_user u;

	for (r = m->runs; r != NULL; r = next) {
		next = r->next;
		switch (r->mv->phase) {
		case MOVE_COPY:
			/* The record may still say FROZEN: MOVING again. */
			if (current(m, r->mv->user, &u) == 1 &&
			    u.state == USTATE_FROZEN) {
				sign(r, USTATE_MOVING, r->mv->from_backend,
				    r->mv->to_site, copy_signed);
				continue;
			}
			break;
		case MOVE_FREEZE:
			/* Whatever the freeze had done, it starts over. */
			freeze_abandon(r, "the node restarted");
			continue;
		case MOVE_COMMIT:
			if (current(m, r->mv->user, &u) == 1 &&
			    strcmp(u.site, m->env.conf->site) == 0) {
				/* TRANSFER not signed yet. */
				enter_phase(r, MOVE_FREEZE);
				freeze_abandon(r, "the node restarted before "
				    "the commit");
				continue;
			}
			/* The TRANSFER (or what followed it), for the
			 * target's COMMIT. */
			record_load(r);
			break;
		default:
			break;
		}
		run_next(r);
	}
}

/* ---- control requests ----------------------------------------------- */

bool
moves_takes(const char *op)
{
	return strcmp(op, "move") == 0 || strcmp(op, "move-abort") == 0 ||
	    strcmp(op, "moves") == 0;
}

static const char *const moves_header[] = {
	"user", "from", "to", "from_backend", "to_backend", "engine", "phase",
	"bytes", "passes", "freezes", "freeze_ms", "age_s", "phase_s", "error",
};

struct list_ctx {
	struct ctl_rows *rows;
	const char *user;
	uint64_t now;
};

static bool
list_cb(const struct move *mv, void *arg)
{
	struct list_ctx *lc = arg;
	char f[8][24];
	const char *col[MM_ARRAY_SIZE(moves_header)];

	if (lc->user != NULL && strcmp(mv->user, lc->user) != 0)
		return true;
	snprintf(f[0], sizeof(f[0]), "%llu", (unsigned long long)mv->bytes);
	snprintf(f[1], sizeof(f[1]), "%u", mv->passes);
	snprintf(f[2], sizeof(f[2]), "%u", mv->freezes);
	snprintf(f[3], sizeof(f[3]), "%llu",
	    (unsigned long long)mv->freeze_ms);
	snprintf(f[4], sizeof(f[4]), "%llu", (unsigned long long)(
	    lc->now > mv->started_ms ? (lc->now - mv->started_ms) / 1000 : 0));
	snprintf(f[5], sizeof(f[5]), "%llu", (unsigned long long)(
	    lc->now > mv->phase_ms ? (lc->now - mv->phase_ms) / 1000 : 0));
	col[0] = mv->user;
	col[1] = mv->from_site;
	col[2] = mv->to_site;
	col[3] = mv->from_backend;
	col[4] = mv->to_backend;
	col[5] = mv->engine;
	col[6] = move_phase_name(mv->phase);
	col[7] = f[0];
	col[8] = f[1];
	col[9] = f[2];
	col[10] = f[3];
	col[11] = f[4];
	col[12] = f[5];
	col[13] = mv->error;
	(void)ctl_rows_add(lc->rows, MM_ARRAY_SIZE(moves_header), col);
	return true;
}

/* Checks a move and starts it (or says what it would do). */
static enum ctl_status
move_start(struct moves *m, size_t argc, char *const *argv, char **msg_r)
{
	const struct mm_config *conf = m->env.conf;
	const struct mm_backend_conf *be;
	char user[RECORD_USER_MAX + 1], peer[RECORD_NAME_MAX + 1];
	const char *site = argv[1], *backend = argv[2];
	bool dry = strcmp(argv[3], "1") == 0;
	struct record_user u;
	struct move *mv;
	struct run *r;
	int rc;

	if (dir_normalise_user(conf, argv[0], user, sizeof(user)) != 0 ||
	    !record_user_valid(user)) {
		*msg_r = xasprintf("'%s' is not a valid user name", argv[0]);
		return CTL_FAILED;
	}
	if (!record_site_valid(site)) {
		*msg_r = xasprintf("'%s' is not a site name", site);
		return CTL_USAGE;
	}
	if (backend[0] != '\0' && !record_name_valid(backend)) {
		*msg_r = xasprintf("'%s' is not a back-end name", backend);
		return CTL_USAGE;
	}
	rc = current(m, user, &u);
	if (rc < 0) {
		*msg_r = xasprintf("%s: cannot read the directory", user);
		return CTL_TEMP;
	}
	if (rc == 0 || u.state == USTATE_DELETED) {
		*msg_r = xasprintf("%s: no such user", user);
		return CTL_FAILED;
	}
	if (strcmp(u.site, site) == 0) {
		*msg_r = xasprintf("%s: already at site %s", user, site);
		return CTL_FAILED;
	}
	if (strcmp(u.site, conf->site) != 0) {
		*msg_r = xasprintf("%s: owned by site %s: run the move at a "
		    "node of %s", user, u.site, u.site);
		return CTL_FAILED;
	}
	if ((r = run_find_user(m, user)) != NULL ||
	    u.state == USTATE_MOVING || u.state == USTATE_FROZEN) {
		*msg_r = xasprintf("%s: a move is in flight (%s)", user,
		    r != NULL ? move_phase_name(r->mv->phase) :
		    record_state_name(u.state));
		return CTL_FAILED;
	}
	be = mm_config_backend(conf, u.backend);
	if (be == NULL || be->move_engine == NULL) {
		*msg_r = xasprintf("%s: back end %s of site %s does not move "
		    "mailboxes (no move= in %s)", user, u.backend, conf->site,
		    conf->path);
		return CTL_FAILED;
	}
	if (conf->dsync_listen == NULL) {
		*msg_r = xasprintf("this node has no dsync-listen: set it in "
		    "%s to move mailboxes", conf->path);
		return CTL_FAILED;
	}
	if (m->env.peers == NULL || !pick_node(m, site, peer)) {
		*msg_r = xasprintf("site %s cannot be reached: no node of it "
		    "is known alive here (mmctl sites)", site);
		return CTL_TEMP;
	}
	if (dry) {
		*msg_r = xasprintf("would move %s from site %s (back end %s, "
		    "engine %s) to site %s (back end %s), through node %s",
		    user, conf->site, u.backend, be->move_engine, site,
		    backend[0] != '\0' ? backend : "of its choice", peer);
		return CTL_OK;
	}
	mv = xcalloc(1, sizeof(*mv));
	mv->id = ((uint64_t)time(NULL) << 20) | (m->next_id++ & 0xfffff);
	mm_strlcpy(mv->user, user, sizeof(mv->user));
	mm_strlcpy(mv->from_site, conf->site, sizeof(mv->from_site));
	mm_strlcpy(mv->to_site, site, sizeof(mv->to_site));
	mm_strlcpy(mv->from_backend, u.backend, sizeof(mv->from_backend));
	mm_strlcpy(mv->to_backend, backend, sizeof(mv->to_backend));
	mm_strlcpy(mv->engine, be->move_engine, sizeof(mv->engine));
	mv->phase = MOVE_PREPARE;
	mv->started_ms = mv->phase_ms = wall_ms();
	r = run_new(m, mv);
	free(mv);
	mm_strlcpy(r->peer, peer, sizeof(r->peer));
	persist(r);
	log_info("- move start user=%s from=%s to=%s backend=%s", user,
	    conf->site, site, backend[0] != '\0' ? backend : "-");
	r->req_start_ms = mm_now_ms();
	run_next(r);
	*msg_r = xasprintf("moving %s from site %s to site %s", user,
	    conf->site, site);
	return CTL_OK;
}

static enum ctl_status
move_abort(struct moves *m, const char *name, char **msg_r)
{
	char user[RECORD_USER_MAX + 1];
	struct run *r;

	if (dir_normalise_user(m->env.conf, name, user, sizeof(user)) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", name);
		return CTL_FAILED;
	}
	if ((r = run_find_user(m, user)) == NULL) {
		*msg_r = xasprintf("%s: no move of this user runs on this "
		    "node", user);
		return CTL_FAILED;
	}
	if (r->mv->phase == MOVE_COMMIT) {
		*msg_r = xasprintf("%s: the move has committed (site %s owns "
		    "the user): it cannot be aborted", user, r->mv->to_site);
		return CTL_FAILED;
	}
	if (r->mv->phase == MOVE_ABORTING) {
		*msg_r = xasprintf("%s: being aborted", user);
		return CTL_OK;
	}
	*msg_r = xasprintf("%s: move aborted; the user stays at site %s",
	    user, r->mv->from_site);
	r->mv->abort_requested = true;
	persist(r);
	abort_begin(r, "asked to");	/* may free r */
	return CTL_OK;
}

void
moves_request(struct moves *m, const char *op, size_t argc,
    char *const *argv, moves_answer_cb cb, void *arg)
{
	struct ctl_rows rows;
	enum ctl_status st = CTL_USAGE;
	char *msg = NULL;

	ctl_rows_init(&rows);
	if (strcmp(op, "move") == 0 && argc == 4) {
		st = move_start(m, argc, argv, &msg);
	} else if (strcmp(op, "move-abort") == 0 && argc == 1) {
		st = move_abort(m, argv[0], &msg);
	} else if (strcmp(op, "moves") == 0 && argc <= 1) {
		char user[RECORD_USER_MAX + 1];
		struct list_ctx lc = { &rows, NULL, wall_ms() };

		if (argc == 1 && dir_normalise_user(m->env.conf, argv[0],
		    user, sizeof(user)) == 0)
			lc.user = user;
		else if (argc == 1)
			lc.user = argv[0];

		(void)ctl_rows_add(&rows, MM_ARRAY_SIZE(moves_header),
		    moves_header);
		st = move_db_foreach(m->db, list_cb, &lc) == 0 ? CTL_OK :
		    CTL_TEMP;
		msg = xasprintf("%zu moves", rows.n - 1);
	} else {
		msg = xasprintf("%s: wrong arguments", op);
	}
	cb(arg, st, msg, &rows);
	free(msg);
	ctl_rows_clear(&rows);
}

void
moves_cancel(struct moves *m, void *arg)
{
	/* Every answer is given at once: nothing waits for a requester. */
	(void)m;
	(void)arg;
}

/* ---- the engine ----------------------------------------------------- */

static void
prune_cb(evutil_socket_t fd, short what, void *arg)
{
	struct moves *m = arg;

	(void)move_db_prune(m->db, wall_ms(), MOVE_KEEP_MS);
	set_timer(m->prune_timer, 3600 * 1000);
}

struct moves *
moves_new(const struct move_env *env, char **errstr_r)
{
	struct moves *m;
	char *path;

	if (env->conf->directory == NULL) {
		*errstr_r = xstrdup("moves need the directory");
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->env = *env;
	path = xasprintf("%s/moves", env->conf->directory);
	m->db = move_db_open(path, errstr_r);
	free(path);
	if (m->db == NULL) {
		free(m);
		return NULL;
	}
	m->buf = xmalloc(MOVE_MSG_MAX);
	m->msg = xcalloc(1, sizeof(*m->msg));
	m->next_id = 1;
	m->prune_timer = evtimer_new(env->base, prune_cb, m);
	set_timer(m->prune_timer, 60 * 1000);
	if (env->peers != NULL)
		peers_set_frame_cb(env->peers, PEER_FRAME_MOVE, frame_cb, m);
	(void)move_db_foreach(m->db, resume_cb, m);
	resume_all(m);
	return m;
}

void
moves_free(struct moves *m)
{
	if (m == NULL)
		return;
	if (m->env.peers != NULL)
		peers_set_frame_cb(m->env.peers, PEER_FRAME_MOVE, NULL, NULL);
	/* The writer has stopped (move.h): no job holds a run. */
	while (m->runs != NULL)
		run_free(m->runs);
	while (m->tjobs != NULL)
		tjob_free(m->tjobs);
	event_free(m->prune_timer);
	move_db_close(m->db);
	free(m->buf);
	free(m->msg);
	free(m);
}
