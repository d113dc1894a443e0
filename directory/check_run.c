/* The consistency check across nodes (`mmctl check` on a node that
 * gossips), and this node's answers to the checks other nodes run.
 *
 * The node mmctl talks to runs the check: it asks every member gossip
 * knows of for its tree root, origins and back ends (CHECK_ROOT_REQ) and
 * for a scrub of its own store (CHECK_SCRUB_REQ), descends the tree of
 * each node whose root differs from its own (buckets, then leaves, then
 * the users of the differing leaves), fetches every node's record of each
 * user found to differ or found damaged by a scrub, and answers mmctl with
 * the report (check.h). One check runs at a time.
 *
 * The loop only sends, receives and compares what is in memory. What
 * reads much of the store runs on the agent's reader thread (jobs.h):
 * the tree's 65,536 leaf summaries (for this node's check, and for
 * another node's ROOT_REQ; its BUCKETS_REQs are then answered from that
 * copy), scrubs (one job per slice, so that other reads take turns), the
 * comparison of this node's users of the leaves that differ, its records
 * of the users found. The users of a few leaves (USERS_REQ) and a few
 * records (RECORD_REQ) are read from the kept tree on the loop. */
#include "check_run.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "check.h"
#include "gossip.h"
#include "jobs.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "peers.h"
#include "record.h"
#include "store.h"

/* A scrub of a million records takes a few seconds on a busy node: the
 * answers have this long, and the records of what was found some more,
 * which keeps a check within 15 s. */
#define CHECK_RUN_TIMEOUT_MS 11000
#define CHECK_RUN_FETCH_MS 3000
#define CHECK_RUN_TREE_MS 30000	/* a served tree is reused this long */
#define CHECK_RUN_REQ_USERS 512	/* users one CHECK_USERS_REQ should bring */
#define CHECK_RUN_PEERS_MAX 1024
#define CHECK_RUN_SLICE 20000	/* records per scrub slice */
/* Users named: the answer travels in one control frame. */
#define CHECK_RUN_DIFF_MAX 2000

struct ckuser {
	char *user;
	uint8_t hash[CHECK_HASH_LEN];
};

struct ckpeer {
	char name[RECORD_NAME_MAX + 1];
	struct check_node *node;
	bool have_root, have_scrub, descended, comparing;
	uint8_t root[CHECK_HASH_LEN];
	uint64_t users;			/* its count, to size requests */
	unsigned pending;		/* descent requests outstanding */
	unsigned pending_rec;		/* record requests outstanding */
	uint8_t *leaves;		/* bitmap of differing leaves */
	struct ckuser *users_in;	/* its (user, hash) in those leaves */
	size_t n_users;
};

struct ckfault {
	char user[CHECK_USER_MAX + 1];
	char what[CHECK_TEXT_MAX + 1];
};

struct ckwaiter {
	char name[RECORD_NAME_MAX + 1];
	uint64_t id;
};

/* A scrub run slice by slice on the reader thread: this node's part of
 * its own check (local), or one that other nodes asked for (waiters). */
struct ckscrub {
	struct check_run *cr;
	bool local;
	uint64_t id;			/* local: the check's */
	struct store_scrub *s;
	int r;				/* the last slice's */
	struct ckfault *faults;		/* the first max_faults findings */
	size_t n_faults, max_faults;
	struct ckfault *conflicts;	/* the first CHECK_CONFLICTS_MAX */
	size_t n_conflicts;
	struct check_report *recs;	/* local: the per-record checks */
	struct ckwaiter *waiters;
	size_t n_waiters;
};

struct check_run {
	struct event_base *base;
	const struct mm_config *conf;
	struct ops *ops;
	struct store *st;		/* the ops': the loop's handle */
	struct peers *net;		/* the channels to the other nodes */
	struct jobs *reader;		/* long reads, off the loop */
	unsigned jobs_out;		/* jobs added, not yet done */
	bool dying;			/* freed when the last job is done */
	/* serving */
	struct store_tree *served;
	uint64_t served_ms;
	struct ckscrub *serving;	/* the scrub other nodes wait for */
	struct check_msg *in, *out;
	uint8_t *buf;
	/* the check this node runs, for whoever asked */
	check_run_done_cb done;
	void *done_arg;
	uint64_t id;
	struct store_tree *mine;	/* NULL until the reader read it */
	bool scrubbed;			/* this node's scrub is in */
	struct check_report *rep;
	struct ckpeer *peers;
	size_t n_peers;
	char **diff;			/* users found to differ */
	size_t n_diff;
	bool diff_sorted;
	uint64_t diff_more;		/* found beyond CHECK_RUN_DIFF_MAX */
	bool fetching, local_fetched;
	struct event *timer;
};

static void check_progress(struct check_run *cr);
static void scrub_queue(struct ckscrub *sc);

static void
check_scratch(struct check_run *cr)
{
	if (cr->in == NULL) {
		cr->in = xcalloc(1, sizeof(*cr->in));
		cr->out = xcalloc(1, sizeof(*cr->out));
		cr->buf = xmalloc(CHECK_MSG_MAX);
	}
	cr->out->type = 0;
	cr->out->id = 0;
	cr->out->n_origins = cr->out->n_backends = cr->out->n_paths = 0;
	cr->out->n_leaves = cr->out->n_users = cr->out->n_faults = 0;
	cr->out->n_conflicts = 0;
	cr->out->complete = false;
	cr->out->root = NULL;
	cr->out->users = cr->out->records = cr->out->damaged = 0;
	cr->out->equivocations = cr->out->conflicts = 0;
}

static struct check_slice
check_str(const char *s)
{
	struct check_slice sl = { (const uint8_t *)s, strlen(s) };

	return sl;
}

/* A slice as a string in out (size bytes at least len + 1). */
static char *
slice_str(struct check_slice s, char *out)
{
	memcpy(out, s.p, s.len);
	out[s.len] = '\0';
	return out;
}

static void
check_send(struct check_run *cr, const char *to, struct pconn *c)
{
	int len = check_msg_encode(cr->out, cr->buf, CHECK_MSG_MAX);

	if (len < 0) {
		log_warnx("- check encode-failed type=%d", (int)cr->out->type);
		return;
	}
	if (c != NULL)
		peers_send_conn(c, PEER_FRAME_CHECK, cr->buf, (size_t)len);
	else
		peers_send(cr->net, to, PEER_FRAME_CHECK, cr->buf,
		    (size_t)len);
}

/* ---- jobs on the reader thread ---- */

static void
check_run_destroy(struct check_run *cr)
{
	free(cr);
}

static void
ck_job(struct check_run *cr, jobs_run_cb run, jobs_done_cb done, void *arg)
{
	cr->jobs_out++;
	jobs_add(cr->reader, run, done, arg);
}

/* Called first in every job's done: false when cr is going away (it is
 * freed with its last job; the job only frees its own). */
static bool
ck_job_done(struct check_run *cr)
{
	cr->jobs_out--;
	if (!cr->dying)
		return true;
	if (cr->jobs_out == 0)
		check_run_destroy(cr);
	return false;
}

/* Whether a job of check id still has a check to report to. */
static bool
ck_current(const struct check_run *cr, uint64_t id)
{
	return cr->rep != NULL && cr->id == id;
}

/* ---- scrubs ---- */

static void
scrub_damaged_cb(const char *user, const char *what, void *arg)
{
	struct ckscrub *sc = arg;
	struct ckfault *f;

	if (sc->n_faults >= sc->max_faults)
		return;
	f = &sc->faults[sc->n_faults++];
	mm_strlcpy(f->user, user, sizeof(f->user));
	mm_strlcpy(f->what, what, sizeof(f->what));
}

static void
scrub_conflict_cb(const char *user, const char *what, void *arg)
{
	struct ckscrub *sc = arg;
	struct ckfault *f;

	if (sc->n_conflicts >= CHECK_CONFLICTS_MAX)
		return;
	f = &sc->conflicts[sc->n_conflicts++];
	mm_strlcpy(f->user, user, sizeof(f->user));
	mm_strlcpy(f->what, what, sizeof(f->what));
}

static void
scrub_record_cb(const uint8_t *env, size_t len, void *arg)
{
	struct ckscrub *sc = arg;

	if (sc->recs != NULL)
		check_report_local_record(sc->recs, env, len);
}

static struct ckscrub *
scrub_new(struct check_run *cr, bool local, uint64_t id, size_t max_faults)
{
	struct ckscrub *sc = xcalloc(1, sizeof(*sc));

	sc->cr = cr;
	sc->local = local;
	sc->id = id;
	sc->max_faults = max_faults;
	sc->faults = xcalloc(max_faults, sizeof(*sc->faults));
	if (local)
		sc->recs = check_report_new();
	sc->conflicts = xcalloc(CHECK_CONFLICTS_MAX, sizeof(*sc->conflicts));
	sc->s = store_scrub_new(scrub_damaged_cb, scrub_record_cb, sc);
	store_scrub_watch_conflicts(sc->s, scrub_conflict_cb);
	return sc;
}

static void
scrub_free(struct ckscrub *sc)
{
	store_scrub_free(sc->s);
	check_report_free(sc->recs);
	free(sc->faults);
	free(sc->conflicts);
	free(sc->waiters);
	free(sc);
}

static void
scrub_run(struct store *st, void *arg)
{
	struct ckscrub *sc = arg;

	sc->r = store_scrub_step(st, sc->s, CHECK_RUN_SLICE);
}

static void check_diff_add(struct check_run *cr, const char *user);

/* This node's scrub is over: into the report. */
static void
scrub_local_done(struct check_run *cr, struct ckscrub *sc)
{
	struct check_node *local = check_report_local(cr->rep);
	struct store_scrub_report sr;
	size_t i;

	store_scrub_result(sc->s, &sr);
	check_node_scrub(local, sr.records, sr.damaged, sr.equivocations,
	    sc->r == 1);
	for (i = 0; i < sc->n_faults; i++) {
		check_node_damage(local, sc->faults[i].user,
		    sc->faults[i].what);
		if (sc->faults[i].user[0] != '\0')
			check_diff_add(cr, sc->faults[i].user);
	}
	for (i = 0; i < sc->n_conflicts; i++)
		check_node_conflict(local, sc->conflicts[i].user,
		    sc->conflicts[i].what);
	check_node_conflicts(local, sr.conflicts);
	check_report_merge_records(cr->rep, sc->recs);
	cr->scrubbed = true;
	log_info("- check scrub-done records=%llu damaged=%llu",
	    (unsigned long long)sr.records, (unsigned long long)sr.damaged);
}

/* A scrub other nodes asked for is over: each of them is told. */
static void
scrub_answer(struct check_run *cr, struct ckscrub *sc)
{
	struct store_scrub_report sr;
	size_t i;

	store_scrub_result(sc->s, &sr);
	check_scratch(cr);
	cr->out->type = CHECK_SCRUB;
	cr->out->records = sr.records;
	cr->out->damaged = sr.damaged;
	cr->out->equivocations = sr.equivocations;
	cr->out->complete = sc->r == 1;
	for (i = 0; i < sc->n_faults; i++) {
		cr->out->faults[i].user = check_str(sc->faults[i].user);
		cr->out->faults[i].what = check_str(sc->faults[i].what);
	}
	cr->out->n_faults = sc->n_faults;
	for (i = 0; i < sc->n_conflicts; i++) {
		cr->out->conflict[i].user = check_str(sc->conflicts[i].user);
		cr->out->conflict[i].what = check_str(sc->conflicts[i].what);
	}
	cr->out->n_conflicts = sc->n_conflicts;
	cr->out->conflicts = sr.conflicts;
	for (i = 0; i < sc->n_waiters; i++) {
		cr->out->id = sc->waiters[i].id;
		check_send(cr, sc->waiters[i].name, NULL);
	}
	log_info("- check scrub-served records=%llu damaged=%llu "
	    "requesters=%zu", (unsigned long long)sr.records,
	    (unsigned long long)sr.damaged, sc->n_waiters);
}

static void
scrub_done(void *arg)
{
	struct ckscrub *sc = arg;
	struct check_run *cr = sc->cr;

	if (!ck_job_done(cr)) {
		scrub_free(sc);
		return;
	}
	if (sc->local && (!ck_current(cr, sc->id) || cr->scrubbed ||
	    cr->fetching)) {
		scrub_free(sc);		/* its check is over */
		return;
	}
	if (sc->r == 0) {
		scrub_queue(sc);	/* the next slice, after other jobs */
		return;
	}
	if (sc->local) {
		scrub_local_done(cr, sc);
		scrub_free(sc);
		check_progress(cr);
		return;
	}
	scrub_answer(cr, sc);
	cr->serving = NULL;
	scrub_free(sc);
}

static void
scrub_queue(struct ckscrub *sc)
{
	ck_job(sc->cr, scrub_run, scrub_done, sc);
}

/* ---- serving other nodes' checks ---- */

/* This node's tree and origins, read on the thread: for its own check
 * (id), or to answer another node's ROOT_REQ or BUCKETS_REQ (to). */
struct ckorigin {
	char name[RECORD_NAME_MAX + 1];
	uint64_t contig, highest;
};

struct cktree {
	struct check_run *cr;
	uint64_t id;			/* the check's; 0: serving */
	char to[RECORD_NAME_MAX + 1];	/* serving: who asked */
	enum check_type type;		/* serving: what */
	uint64_t req_id;
	uint32_t paths[CHECK_PATHS_MAX];
	size_t n_paths;
	struct store_tree *tree;	/* out */
	int rc;
	struct ckorigin *orgs;
	size_t n_orgs;
};

static int
tree_origin_cb(const char *origin, uint64_t contig, uint64_t highest,
    void *arg)
{
	struct cktree *tj = arg;

	if (tj->n_orgs >= CHECK_ORIGINS_MAX)
		return 1;
	if (origin[0] == '\0' || strlen(origin) > CHECK_NAME_MAX)
		return 0;
	if (tj->n_orgs % 16 == 0)
		tj->orgs = xrealloc(tj->orgs, (tj->n_orgs + 16) *
		    sizeof(*tj->orgs));
	mm_strlcpy(tj->orgs[tj->n_orgs].name, origin,
	    sizeof(tj->orgs[tj->n_orgs].name));
	tj->orgs[tj->n_orgs].contig = contig;
	tj->orgs[tj->n_orgs].highest = highest;
	tj->n_orgs++;
	return 0;
}

static void
tree_run(struct store *st, void *arg)
{
	struct cktree *tj = arg;

	tj->rc = store_tree_build(st, &tj->tree);
	if (tj->rc == 0 && (tj->id != 0 || tj->type == CHECK_ROOT_REQ))
		tj->rc = store_foreach_origin(st, tree_origin_cb, tj);
}

static void
tree_free(struct cktree *tj)
{
	store_tree_free(tj->tree);
	free(tj->orgs);
	free(tj);
}

static void tree_done(void *arg);

static void
tree_queue(struct check_run *cr, uint64_t id, const char *to,
    const struct check_msg *q)
{
	struct cktree *tj = xcalloc(1, sizeof(*tj));
	size_t i;

	tj->cr = cr;
	tj->id = id;
	if (q != NULL) {
		mm_strlcpy(tj->to, to, sizeof(tj->to));
		tj->type = q->type;
		tj->req_id = q->id;
		for (i = 0; i < q->n_paths; i++)
			tj->paths[i] = q->paths[i];
		tj->n_paths = q->n_paths;
	}
	ck_job(cr, tree_run, tree_done, tj);
}

/* The answer to a ROOT_REQ, from the served tree; c or to. */
static void
serve_root(struct check_run *cr, struct pconn *c, const char *to,
    uint64_t req_id, const struct ckorigin *orgs, size_t n_orgs)
{
	struct check_msg *m;
	size_t i;

	check_scratch(cr);
	m = cr->out;
	m->type = CHECK_ROOT;
	m->id = req_id;
	m->site = check_str(cr->conf->site);
	m->node = check_str(cr->conf->node_name);
	m->root = store_tree_root(cr->served);
	m->users = store_tree_users(cr->served);
	for (i = 0; i < n_orgs; i++) {
		m->origins[i].origin = check_str(orgs[i].name);
		m->origins[i].contig = orgs[i].contig;
		m->origins[i].highest = orgs[i].highest;
	}
	m->n_origins = n_orgs;
	for (i = 0; i < cr->conf->n_backends && i < CHECK_BACKENDS_MAX; i++)
		m->backends[m->n_backends++] =
		    check_str(cr->conf->backends[i].name);
	check_send(cr, to, c);
}

/* The answer to a BUCKETS_REQ, from the served tree; c or to. */
static void
serve_buckets(struct check_run *cr, struct pconn *c, const char *to,
    uint64_t req_id, const uint32_t *paths, size_t n_paths)
{
	struct check_msg *m;
	size_t i;

	check_scratch(cr);
	m = cr->out;
	m->type = CHECK_BUCKETS;
	m->id = req_id;
	for (i = 0; i < n_paths; i++) {
		m->paths[i] = paths[i];
		m->hashes[i] = paths[i] == 0 ?
		    store_tree_bucket(cr->served, 0) :
		    store_tree_leaf(cr->served, (paths[i] - 1) *
		    STORE_TREE_FANOUT);
	}
	m->n_paths = n_paths;
	check_send(cr, to, c);
}

static void local_tree_done(struct check_run *cr, struct cktree *tj);

static void
tree_done(void *arg)
{
	struct cktree *tj = arg;
	struct check_run *cr = tj->cr;

	if (!ck_job_done(cr)) {
		tree_free(tj);
		return;
	}
	if (tj->id != 0) {
		local_tree_done(cr, tj);
		return;
	}
	if (tj->rc != 0) {
		tree_free(tj);		/* logged; the asker times out */
		return;
	}
	/* The tree other nodes' checks descend: read afresh for a ROOT_REQ,
	 * reused for the requests of the descent that follows. */
	store_tree_free(cr->served);
	cr->served = tj->tree;
	cr->served_ms = mm_now_ms();
	tj->tree = NULL;
	if (tj->type == CHECK_ROOT_REQ)
		serve_root(cr, NULL, tj->to, tj->req_id, tj->orgs, tj->n_orgs);
	else
		serve_buckets(cr, NULL, tj->to, tj->req_id, tj->paths,
		    tj->n_paths);
	tree_free(tj);
}

struct ck_users_ctx {
	struct check_msg *m;
	char (*names)[RECORD_USER_MAX + 1];
	uint8_t (*hashes)[CHECK_HASH_LEN];
};

static int
check_users_cb(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], void *arg)
{
	struct ck_users_ctx *uc = arg;
	size_t i = uc->m->n_users;

	if (i >= CHECK_USERS_MAX) {
		uc->m->complete = false;
		return 1;
	}
	mm_strlcpy(uc->names[i], user, sizeof(uc->names[i]));
	memcpy(uc->hashes[i], hash, CHECK_HASH_LEN);
	uc->m->list[i].user = check_str(uc->names[i]);
	uc->m->list[i].hash = uc->hashes[i];
	uc->m->list[i].env.len = 0;
	uc->m->n_users++;
	return 0;
}

/* A scrub for the node named from: joins the one running, if any. */
static void
serve_scrub(struct check_run *cr, const char *from, uint64_t id)
{
	struct ckscrub *sc = cr->serving;
	struct ckwaiter *w;
	bool start = sc == NULL;

	if (start)
		sc = cr->serving = scrub_new(cr, false, 0, CHECK_FAULTS_MAX);
	if (sc->n_waiters >= CHECK_RUN_PEERS_MAX)
		return;
	sc->waiters = xrealloc(sc->waiters, (sc->n_waiters + 1) *
	    sizeof(*sc->waiters));
	w = &sc->waiters[sc->n_waiters++];
	mm_strlcpy(w->name, from, sizeof(w->name));
	w->id = id;
	if (start)
		scrub_queue(sc);
}

static void
check_serve(struct check_run *cr, struct pconn *c,
    const struct check_msg *q)
{
	struct check_msg *m = cr->out;
	char (*names)[RECORD_USER_MAX + 1] = NULL;
	uint8_t (*hashes)[CHECK_HASH_LEN] = NULL, **envs = NULL;
	uint8_t *bits = NULL;
	size_t i;

	m->id = q->id;
	switch (q->type) {
	case CHECK_ROOT_REQ:
		/* 65,536 leaf summaries: read on the thread. */
		tree_queue(cr, 0, peers_conn_name(c), q);
		return;
	case CHECK_BUCKETS_REQ:
		if (cr->served != NULL &&
		    mm_now_ms() - cr->served_ms < CHECK_RUN_TREE_MS)
			serve_buckets(cr, c, NULL, q->id, q->paths,
			    q->n_paths);
		else
			tree_queue(cr, 0, peers_conn_name(c), q);
		return;
	case CHECK_USERS_REQ: {
		struct ck_users_ctx uc = { m, NULL, NULL };

		/* The kept entries of at most CHECK_LEAVES_MAX leaves. */
		m->type = CHECK_USERS;
		m->complete = true;
		bits = xcalloc(STORE_TREE_LEAVES / 8, 1);
		for (i = 0; i < q->n_leaves; i++)
			bits[q->leaves[i] / 8] |= (uint8_t)(1u <<
			    (q->leaves[i] % 8));
		names = xcalloc(CHECK_USERS_MAX, sizeof(*names));
		hashes = xcalloc(CHECK_USERS_MAX, sizeof(*hashes));
		uc.names = names;
		uc.hashes = hashes;
		if (store_tree_leaf_users(cr->st, bits, check_users_cb,
		    &uc) != 0)
			m->complete = false;
		break;
	}
	case CHECK_RECORD_REQ:
		m->type = CHECK_RECORD;
		names = xcalloc(CHECK_RECORDS_MAX, sizeof(*names));
		envs = xcalloc(CHECK_RECORDS_MAX, sizeof(*envs));
		for (i = 0; i < q->n_users; i++) {
			struct record_user u;
			size_t len = 0;

			slice_str(q->list[i].user, names[i]);
			m->list[i].user = check_str(names[i]);
			m->list[i].env.len = 0;
			if (store_get_user(cr->st, names[i], &u, &envs[i],
			    &len) == 1) {
				m->list[i].env.p = envs[i];
				m->list[i].env.len = len;
			}
		}
		m->n_users = q->n_users;
		break;
	case CHECK_SCRUB_REQ:
		serve_scrub(cr, peers_conn_name(c), q->id);
		return;
	default:
		return;
	}
	check_send(cr, NULL, c);
	if (envs != NULL)
		for (i = 0; i < CHECK_RECORDS_MAX; i++)
			free(envs[i]);
	free(envs);
	free(names);
	free(hashes);
	free(bits);
}

/* ---- running a check ---- */

static void
check_end(struct check_run *cr)
{
	size_t i, j;

	for (i = 0; i < cr->n_peers; i++) {
		free(cr->peers[i].leaves);
		for (j = 0; j < cr->peers[i].n_users; j++)
			free(cr->peers[i].users_in[j].user);
		free(cr->peers[i].users_in);
	}
	free(cr->peers);
	cr->peers = NULL;
	cr->n_peers = 0;
	for (i = 0; i < cr->n_diff; i++)
		free(cr->diff[i]);
	free(cr->diff);
	cr->diff = NULL;
	cr->n_diff = 0;
	cr->diff_sorted = false;
	cr->diff_more = 0;
	store_tree_free(cr->mine);
	cr->mine = NULL;
	check_report_free(cr->rep);
	cr->rep = NULL;
	cr->done = NULL;
	cr->done_arg = NULL;
	cr->scrubbed = cr->fetching = cr->local_fetched = false;
	if (cr->timer != NULL)
		evtimer_del(cr->timer);
}

static void
check_finish(struct check_run *cr)
{
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL, *why;

	if (cr->diff_more > 0) {
		why = xasprintf("more users differ than the %d named (%llu "
		    "more findings)", CHECK_RUN_DIFF_MAX,
		    (unsigned long long)cr->diff_more);
		check_node_incomplete(check_report_local(cr->rep), why);
		free(why);
	}
	ctl_rows_init(&rows);
	st = check_report_finish(cr->rep, (uint64_t)time(NULL),
	    OPS_CHECK_STUCK_S, &rows, &msg);
	log_info("- check done status=%d result=\"%s\"", (int)st, msg);
	if (cr->done != NULL)
		cr->done(cr->done_arg, st, msg, &rows);
	ctl_rows_clear(&rows);
	free(msg);
	check_end(cr);
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the users found and drops the ones found twice. */
static void
check_diff_sort(struct check_run *cr)
{
	size_t i, o;

	if (cr->diff_sorted || cr->n_diff == 0)
		return;
	qsort(cr->diff, cr->n_diff, sizeof(*cr->diff), str_cmp);
	for (i = 1, o = 1; i < cr->n_diff; i++) {
		if (strcmp(cr->diff[i], cr->diff[o - 1]) == 0) {
			free(cr->diff[i]);
			continue;
		}
		cr->diff[o++] = cr->diff[i];
	}
	cr->n_diff = o;
	cr->diff_sorted = true;
}

static void
check_diff_add(struct check_run *cr, const char *user)
{
	if (cr->n_diff >= CHECK_RUN_DIFF_MAX) {
		check_diff_sort(cr);
		if (bsearch(&user, cr->diff, cr->n_diff, sizeof(*cr->diff),
		    str_cmp) != NULL)
			return;
		if (cr->n_diff >= CHECK_RUN_DIFF_MAX) {
			cr->diff_more++;
			return;
		}
	}
	if (cr->n_diff % 64 == 0)
		cr->diff = xrealloc(cr->diff, (cr->n_diff + 64) *
		    sizeof(*cr->diff));
	cr->diff[cr->n_diff++] = xstrdup(user);
	cr->diff_sorted = false;
}

/* This node's records of the users found, read on the thread. */
struct ckfetch {
	struct check_run *cr;
	uint64_t id;
	char **users;
	uint8_t **envs;
	size_t *lens;
	size_t n;
};

static void
fetch_run(struct store *st, void *arg)
{
	struct ckfetch *fj = arg;
	struct record_user u;
	size_t i;

	for (i = 0; i < fj->n; i++)
		if (store_get_user(st, fj->users[i], &u, &fj->envs[i],
		    &fj->lens[i]) != 1)
			fj->lens[i] = 0;
}

static void
fetch_free(struct ckfetch *fj)
{
	size_t i;

	for (i = 0; i < fj->n; i++) {
		free(fj->users[i]);
		free(fj->envs[i]);
	}
	free(fj->users);
	free(fj->envs);
	free(fj->lens);
	free(fj);
}

static void
fetch_done(void *arg)
{
	struct ckfetch *fj = arg;
	struct check_run *cr = fj->cr;
	struct check_node *local;
	size_t i;

	if (!ck_job_done(cr) || !ck_current(cr, fj->id) || !cr->fetching) {
		fetch_free(fj);
		return;
	}
	local = check_report_local(cr->rep);
	for (i = 0; i < fj->n; i++)
		check_node_record(local, fj->users[i], fj->lens[i] > 0 ?
		    fj->envs[i] : NULL, fj->lens[i]);
	fetch_free(fj);
	cr->local_fetched = true;
	check_progress(cr);
}

/* Phase two: every node's record of every user found to differ. */
static void
check_fetch(struct check_run *cr)
{
	struct ckfetch *fj = xcalloc(1, sizeof(*fj));
	size_t i, j, k;

	cr->fetching = true;
	check_diff_sort(cr);
	log_info("- check fetch users=%zu", cr->n_diff);
	fj->cr = cr;
	fj->id = cr->id;
	fj->n = cr->n_diff;
	fj->users = xcalloc(fj->n + 1, sizeof(*fj->users));
	fj->envs = xcalloc(fj->n + 1, sizeof(*fj->envs));
	fj->lens = xcalloc(fj->n + 1, sizeof(*fj->lens));
	for (i = 0; i < fj->n; i++)
		fj->users[i] = xstrdup(cr->diff[i]);
	ck_job(cr, fetch_run, fetch_done, fj);
	for (i = 0; i < cr->n_peers; i++) {
		struct ckpeer *p = &cr->peers[i];

		if (!p->have_root || check_node_same(p->node))
			continue;
		for (j = 0; j < cr->n_diff; j += CHECK_RECORDS_MAX) {
			check_scratch(cr);
			cr->out->type = CHECK_RECORD_REQ;
			cr->out->id = cr->id;
			for (k = j; k < cr->n_diff && k < j + CHECK_RECORDS_MAX;
			    k++)
				cr->out->list[k - j].user =
				    check_str(cr->diff[k]);
			cr->out->n_users = k - j;
			check_send(cr, p->name, NULL);
			p->pending_rec++;
		}
	}
}

static void
check_progress(struct check_run *cr)
{
	size_t i;

	if (cr->rep == NULL)
		return;
	if (!cr->fetching) {
		if (cr->mine == NULL || !cr->scrubbed)
			return;
		for (i = 0; i < cr->n_peers; i++)
			if (!cr->peers[i].descended ||
			    !cr->peers[i].have_scrub)
				return;
		if (cr->n_diff > 0) {
			check_fetch(cr);
			return;		/* fetch_done comes back here */
		}
		check_finish(cr);
		return;
	}
	if (!cr->local_fetched)
		return;
	for (i = 0; i < cr->n_peers; i++)
		if (cr->peers[i].pending_rec > 0)
			return;
	check_finish(cr);
}

static int
ckuser_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ckuser *)a)->user,
	    ((const struct ckuser *)b)->user);
}

/* A peer's users of the leaves that differ against this node's, read on
 * the thread. */
struct ckcmp {
	struct check_run *cr;
	uint64_t id;
	char name[RECORD_NAME_MAX + 1];
	uint8_t *leaves;
	struct ckuser *users;
	size_t n_users;
	uint8_t *seen;			/* per peer user: matched here */
	char **diff;			/* out */
	size_t n_diff;
	int rc;
};

static void
cmp_diff(struct ckcmp *cj, const char *user)
{
	if (cj->n_diff % 64 == 0)
		cj->diff = xrealloc(cj->diff, (cj->n_diff + 64) *
		    sizeof(*cj->diff));
	cj->diff[cj->n_diff++] = xstrdup(user);
}

static int
cmp_cb(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], void *arg)
{
	struct ckcmp *cj = arg;
	struct ckuser key = { (char *)user, { 0 } }, *f;

	f = cj->n_users == 0 ? NULL : bsearch(&key, cj->users, cj->n_users,
	    sizeof(key), ckuser_cmp);
	if (f == NULL) {
		cmp_diff(cj, user);
		return 0;
	}
	cj->seen[f - cj->users] = 1;
	if (memcmp(f->hash, hash, CHECK_HASH_LEN) != 0)
		cmp_diff(cj, user);
	return 0;
}

static void
cmp_run(struct store *st, void *arg)
{
	struct ckcmp *cj = arg;
	size_t i;

	if (cj->n_users > 0)
		qsort(cj->users, cj->n_users, sizeof(*cj->users), ckuser_cmp);
	cj->seen = xcalloc(cj->n_users + 1, 1);
	cj->rc = store_tree_leaf_users(st, cj->leaves, cmp_cb, cj);
	for (i = 0; i < cj->n_users; i++)
		if (!cj->seen[i])
			cmp_diff(cj, cj->users[i].user);
}

static void
cmp_free(struct ckcmp *cj)
{
	size_t i;

	for (i = 0; i < cj->n_users; i++)
		free(cj->users[i].user);
	free(cj->users);
	for (i = 0; i < cj->n_diff; i++)
		free(cj->diff[i]);
	free(cj->diff);
	free(cj->seen);
	free(cj->leaves);
	free(cj);
}

static struct ckpeer *
check_peer(struct check_run *cr, const char *name)
{
	size_t i;

	for (i = 0; i < cr->n_peers; i++)
		if (strcmp(cr->peers[i].name, name) == 0)
			return &cr->peers[i];
	return NULL;
}

static void
cmp_done(void *arg)
{
	struct ckcmp *cj = arg;
	struct check_run *cr = cj->cr;
	struct ckpeer *p;
	size_t i;

	if (!ck_job_done(cr) || !ck_current(cr, cj->id) || cr->fetching ||
	    (p = check_peer(cr, cj->name)) == NULL) {
		cmp_free(cj);
		return;
	}
	p->comparing = false;
	p->descended = true;
	if (cj->rc != 0)
		check_node_incomplete(p->node, "local store error");
	for (i = 0; i < cj->n_diff; i++)
		check_diff_add(cr, cj->diff[i]);
	cmp_free(cj);
	check_progress(cr);
}

/* The peer's descent is over: its users of the differing leaves against
 * ours, on the thread. */
static void
check_descended(struct check_run *cr, struct ckpeer *p)
{
	struct ckcmp *cj;

	if (p->leaves == NULL) {
		p->descended = true;
		return;
	}
	cj = xcalloc(1, sizeof(*cj));
	cj->cr = cr;
	cj->id = cr->id;
	mm_strlcpy(cj->name, p->name, sizeof(cj->name));
	cj->leaves = p->leaves;
	cj->users = p->users_in;
	cj->n_users = p->n_users;
	p->leaves = NULL;
	p->users_in = NULL;
	p->n_users = 0;
	p->comparing = true;
	ck_job(cr, cmp_run, cmp_done, cj);
}

static void
check_ask_leaves(struct check_run *cr, struct ckpeer *p,
    const uint32_t *leaves, size_t n)
{
	size_t i, per;
	uint64_t per_leaf = p->users / STORE_TREE_LEAVES + 1;

	/* About CHECK_RUN_REQ_USERS users per answer, whatever the size of
	 * the store: well under what one answer may carry. */
	per = (size_t)(CHECK_RUN_REQ_USERS / per_leaf);
	if (per == 0)
		per = 1;
	if (per > CHECK_LEAVES_MAX)
		per = CHECK_LEAVES_MAX;
	for (i = 0; i < n; i++) {
		if (i % per == 0) {
			if (i > 0) {
				check_send(cr, p->name, NULL);
				p->pending++;
			}
			check_scratch(cr);
			cr->out->type = CHECK_USERS_REQ;
			cr->out->id = cr->id;
		}
		cr->out->leaves[cr->out->n_leaves++] = leaves[i];
		if (p->leaves == NULL)
			p->leaves = xcalloc(STORE_TREE_LEAVES / 8, 1);
		p->leaves[leaves[i] / 8] |= (uint8_t)(1u << (leaves[i] % 8));
	}
	if (n > 0) {
		check_send(cr, p->name, NULL);
		p->pending++;
	}
}

/* p's root is in, and this node's tree: descend where they differ. */
static void
check_rooted(struct check_run *cr, struct ckpeer *p)
{
	if (memcmp(p->root, store_tree_root(cr->mine), CHECK_HASH_LEN) == 0) {
		p->descended = true;
		return;
	}
	check_scratch(cr);
	cr->out->type = CHECK_BUCKETS_REQ;
	cr->out->id = cr->id;
	cr->out->paths[0] = 0;
	cr->out->n_paths = 1;
	check_send(cr, p->name, NULL);
	p->pending++;
}

static void
check_answer(struct check_run *cr, struct ckpeer *p,
    const struct check_msg *m)
{
	char s[CHECK_TEXT_MAX + 1], s2[CHECK_TEXT_MAX + 1];
	uint32_t list[STORE_TREE_FANOUT];
	size_t i, j, n;

	/* Once the records are being fetched, only they count. */
	if (cr->fetching && m->type != CHECK_RECORD)
		return;
	switch (m->type) {
	case CHECK_ROOT:
		if (p->have_root)
			return;
		p->have_root = true;
		/* The node names its own site: gossip may not have told us
		 * yet (a member met only by name). */
		if (m->site.len > 0 && m->site.len <= CHECK_TEXT_MAX)
			check_node_site(p->node, slice_str(m->site, s));
		check_node_root(p->node, m->root, m->users);
		memcpy(p->root, m->root, CHECK_HASH_LEN);
		p->users = m->users;
		for (i = 0; i < m->n_origins; i++)
			check_node_origin(p->node,
			    slice_str(m->origins[i].origin, s),
			    m->origins[i].contig, m->origins[i].highest);
		for (i = 0; i < m->n_backends; i++)
			check_node_backend(p->node,
			    slice_str(m->backends[i], s));
		/* Before this node's tree is read, the descent waits. */
		if (cr->mine != NULL)
			check_rooted(cr, p);
		break;
	case CHECK_SCRUB:
		if (p->have_scrub)
			return;
		p->have_scrub = true;
		check_node_scrub(p->node, m->records, m->damaged,
		    m->equivocations, m->complete);
		for (i = 0; i < m->n_faults; i++) {
			slice_str(m->faults[i].user, s);
			check_node_damage(p->node, s,
			    slice_str(m->faults[i].what, s2));
			if (s[0] != '\0')
				check_diff_add(cr, s);
		}
		for (i = 0; i < m->n_conflicts; i++) {
			slice_str(m->conflict[i].user, s);
			check_node_conflict(p->node, s,
			    slice_str(m->conflict[i].what, s2));
		}
		check_node_conflicts(p->node, m->conflicts);
		break;
	case CHECK_BUCKETS:
		if (p->pending == 0 || p->descended || cr->mine == NULL)
			return;
		p->pending--;
		for (i = 0; i < m->n_paths; i++) {
			const uint8_t *mine = m->paths[i] == 0 ?
			    store_tree_bucket(cr->mine, 0) :
			    store_tree_leaf(cr->mine, (m->paths[i] - 1) *
			    STORE_TREE_FANOUT);

			for (j = 0, n = 0; j < STORE_TREE_FANOUT; j++)
				if (memcmp(mine + j * CHECK_HASH_LEN,
				    m->hashes[i] + j * CHECK_HASH_LEN,
				    CHECK_HASH_LEN) != 0)
					list[n++] = (uint32_t)j;
			if (m->paths[i] != 0) {
				for (j = 0; j < n; j++)
					list[j] += (m->paths[i] - 1) *
					    STORE_TREE_FANOUT;
				check_ask_leaves(cr, p, list, n);
				continue;
			}
			for (j = 0; j < n; j += CHECK_PATHS_MAX) {
				size_t k;

				check_scratch(cr);
				cr->out->type = CHECK_BUCKETS_REQ;
				cr->out->id = cr->id;
				for (k = j; k < n && k < j + CHECK_PATHS_MAX;
				    k++)
					cr->out->paths[k - j] = list[k] + 1;
				cr->out->n_paths = k - j;
				check_send(cr, p->name, NULL);
				p->pending++;
			}
		}
		if (p->pending == 0)
			check_descended(cr, p);
		break;
	case CHECK_USERS:
		if (p->pending == 0 || p->descended || p->comparing)
			return;
		p->pending--;
		if (!m->complete)
			check_node_incomplete(p->node, "too many users in the "
			    "leaves that differ");
		p->users_in = xrealloc(p->users_in, (p->n_users + m->n_users) *
		    sizeof(*p->users_in) + 1);
		for (i = 0; i < m->n_users; i++) {
			struct ckuser *u = &p->users_in[p->n_users++];

			u->user = xmalloc(m->list[i].user.len + 1);
			slice_str(m->list[i].user, u->user);
			memcpy(u->hash, m->list[i].hash, CHECK_HASH_LEN);
		}
		if (p->pending == 0)
			check_descended(cr, p);
		break;
	case CHECK_RECORD:
		if (!cr->fetching || p->pending_rec == 0)
			return;
		p->pending_rec--;
		for (i = 0; i < m->n_users; i++) {
			char u[CHECK_USER_MAX + 1];

			check_node_record(p->node, slice_str(m->list[i].user,
			    u), m->list[i].env.len > 0 ? m->list[i].env.p :
			    NULL, m->list[i].env.len);
		}
		break;
	default:
		return;
	}
	check_progress(cr);
}

/* Arms the timer for ms from now: from the clock, not from the loop's
 * cached time, which may be old when a callback ran long. */
static void
check_arm(struct check_run *cr, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_update_cache_time(cr->base);
	evtimer_add(cr->timer, &tv);
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check_run *cr = arg;
	struct check_node *local;
	size_t i;

	if (cr->rep == NULL)
		return;
	local = check_report_local(cr->rep);
	if (cr->fetching) {
		for (i = 0; i < cr->n_peers; i++)
			if (cr->peers[i].pending_rec > 0)
				check_node_incomplete(cr->peers[i].node,
				    "its records did not come in time");
		check_finish(cr);
		return;
	}
	log_info("- check timeout tree=%s scrub=%s",
	    cr->mine != NULL ? "read" : "waiting",
	    cr->scrubbed ? "done" : "running");
	if (cr->mine == NULL)
		check_node_unreachable(local, "its tree was not read in time");
	else if (!cr->scrubbed)
		check_node_incomplete(local, "its scrub did not end in time");
	for (i = 0; i < cr->n_peers; i++) {
		struct ckpeer *p = &cr->peers[i];

		if (!p->have_root)
			check_node_unreachable(p->node, "no answer");
		else if (!p->descended)
			check_node_incomplete(p->node, "its tree was not "
			    "compared in time");
		else if (!p->have_scrub)
			check_node_incomplete(p->node, "its scrub did not "
			    "end in time");
	}
	if (cr->n_diff > 0 && cr->mine != NULL) {
		/* What was found still gets its records, briefly. */
		check_fetch(cr);
		check_arm(cr, CHECK_RUN_FETCH_MS);
		return;
	}
	check_finish(cr);
}

static void
check_member_cb(void *arg, const struct gossip_member_info *m)
{
	struct check_run *cr = arg;
	struct ckpeer *p;

	if (m->self || cr->n_peers >= CHECK_RUN_PEERS_MAX)
		return;
	if (m->state == GOSSIP_DEAD) {
		check_node_unreachable(check_report_node(cr->rep, m->site,
		    m->name), "dead (gossip)");
		return;
	}
	cr->peers = xrealloc(cr->peers, (cr->n_peers + 1) *
	    sizeof(*cr->peers));
	p = &cr->peers[cr->n_peers++];
	memset(p, 0, sizeof(*p));
	mm_strlcpy(p->name, m->name, sizeof(p->name));
	p->node = check_report_node(cr->rep, m->site, m->name);
}

/* This node's tree and origins are in: the descents may start. */
static void
local_tree_done(struct check_run *cr, struct cktree *tj)
{
	struct check_node *local;
	struct ctl_rows rows;
	check_run_done_cb done;
	void *done_arg;
	size_t i;

	if (!ck_current(cr, tj->id) || cr->fetching) {
		tree_free(tj);
		return;
	}
	if (tj->rc != 0) {
		tree_free(tj);
		done = cr->done;
		done_arg = cr->done_arg;
		check_end(cr);
		ctl_rows_init(&rows);
		done(done_arg, CTL_FAILED, "store error", &rows);
		return;
	}
	local = check_report_local(cr->rep);
	check_node_root(local, store_tree_root(tj->tree),
	    store_tree_users(tj->tree));
	for (i = 0; i < tj->n_orgs; i++)
		check_node_origin(local, tj->orgs[i].name, tj->orgs[i].contig,
		    tj->orgs[i].highest);
	cr->mine = tj->tree;
	tj->tree = NULL;
	tree_free(tj);
	for (i = 0; i < cr->n_peers; i++)
		if (cr->peers[i].have_root)
			check_rooted(cr, &cr->peers[i]);
	check_progress(cr);
}

bool
check_run_takes(const struct check_run *cr, const char *op, size_t argc)
{
	return cr != NULL && strcmp(op, "check") == 0 && argc == 0;
}

void
check_run_start(struct check_run *cr, check_run_done_cb done, void *arg)
{
	struct check_node *local;
	struct ctl_rows rows;
	size_t i;

	if (cr->rep != NULL) {
		ctl_rows_init(&rows);
		done(arg, CTL_TEMP, "a check is running already", &rows);
		return;
	}
	cr->rep = check_report_new();
	local = check_report_node(cr->rep, cr->conf->site,
	    cr->conf->node_name);
	for (i = 0; i < cr->conf->n_backends; i++)
		check_node_backend(local, cr->conf->backends[i].name);
	cr->done = done;
	cr->done_arg = arg;
	cr->id++;
	gossip_foreach_member(peers_gossip(cr->net), check_member_cb, cr);
	log_info("- check start nodes=%zu", cr->n_peers + 1);
	for (i = 0; i < cr->n_peers; i++) {
		check_scratch(cr);
		cr->out->type = CHECK_ROOT_REQ;
		cr->out->id = cr->id;
		check_send(cr, cr->peers[i].name, NULL);
		cr->out->type = CHECK_SCRUB_REQ;
		check_send(cr, cr->peers[i].name, NULL);
	}
	/* This node's part, on the thread: its tree first (the descents
	 * wait for it), then its scrub, slice by slice. */
	tree_queue(cr, cr->id, NULL, NULL);
	scrub_queue(scrub_new(cr, true, cr->id, CHECK_FAULTS_MAX));
	if (cr->timer == NULL)
		cr->timer = evtimer_new(cr->base, check_timeout_cb, cr);
	check_arm(cr, CHECK_RUN_TIMEOUT_MS);
}

void
check_run_cancel(struct check_run *cr, void *arg)
{
	if (cr != NULL && cr->rep != NULL && cr->done_arg == arg)
		check_end(cr);
}

/* A check message from peer c (a PEER_FRAME_CHECK frame). */
static void
check_frame_cb(void *arg, struct pconn *c, const uint8_t *msg, size_t len)
{
	struct check_run *cr = arg;
	const char *name = peers_conn_name(c);
	const char *why = NULL;
	struct ckpeer *p;

	check_scratch(cr);
	if (check_msg_decode(msg, len, cr->in, &why) != 0) {
		log_warnx("- check bad-message from=%s reason=\"%s\"", name,
		    why);
		return;
	}
	if (cr->in->type % 2 == 1) {
		check_serve(cr, c, cr->in);
		return;
	}
	if (cr->rep == NULL || cr->in->id != cr->id)
		return;
	if ((p = check_peer(cr, name)) != NULL)
		check_answer(cr, p, cr->in);
}

struct check_run *
check_run_new(struct event_base *base, const struct mm_config *conf,
    struct ops *o, struct peers *net, struct jobs *reader)
{
	struct check_run *cr = xcalloc(1, sizeof(*cr));

	cr->base = base;
	cr->conf = conf;
	cr->ops = o;
	cr->st = ops_store(o);
	cr->net = net;
	cr->reader = reader;
	peers_set_frame_cb(net, PEER_FRAME_CHECK, check_frame_cb, cr);
	return cr;
}

void
check_run_free(struct check_run *cr)
{
	if (cr == NULL)
		return;
	peers_set_frame_cb(cr->net, PEER_FRAME_CHECK, NULL, NULL);
	check_end(cr);
	if (cr->timer != NULL)
		event_free(cr->timer);
	cr->timer = NULL;
	store_tree_free(cr->served);
	cr->served = NULL;
	free(cr->in);
	free(cr->out);
	free(cr->buf);
	cr->in = cr->out = NULL;
	cr->buf = NULL;
	/* A scrub served is freed by its job. */
	cr->serving = NULL;
	cr->dying = true;
	if (cr->jobs_out == 0)
		check_run_destroy(cr);
}
