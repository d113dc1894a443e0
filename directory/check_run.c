/* The consistency check across nodes (`mmctl check` on a node that
 * gossips), and this node's answers to the checks other nodes run.
 *
 * The node mmctl talks to runs the check: it asks every member gossip
 * knows of for its tree root, origins, back ends and verify summary
 * (CHECK_ROOT_REQ, CHECK_VERIFY_REQ), descends the tree of each node whose
 * root differs from its own (buckets, then leaves, then the users of the
 * differing leaves), fetches every node's record of each user found to
 * differ, and answers mmctl with the report (check.h). One check runs at a
 * time; the answers of the others are served from the event loop. */
#include "check_run.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "check.h"
#include "gossip.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "peers.h"
#include "record.h"
#include "store.h"

#define CHECK_RUN_TIMEOUT_MS 15000	/* the whole check */
#define CHECK_RUN_FETCH_MS 3000	/* records, after a timeout */
#define CHECK_RUN_TREE_MS 30000	/* a served tree is reused this long */
#define CHECK_RUN_LEAVES_REQ 16	/* leaves per CHECK_USERS_REQ */
#define CHECK_RUN_PEERS_MAX 1024

struct ckuser {
	char *user;
	uint8_t hash[CHECK_HASH_LEN];
};

struct ckpeer {
	char name[RECORD_NAME_MAX + 1];
	struct check_node *node;
	bool have_root, have_verify, descended;
	unsigned pending;		/* descent requests outstanding */
	unsigned pending_rec;		/* record requests outstanding */
	uint8_t *leaves;		/* bitmap of differing leaves */
	struct ckuser *users;		/* its (user, hash) in those leaves */
	size_t n_users;
};

struct check_run {
	struct event_base *base;
	const struct mm_config *conf;
	struct ops *ops;
	struct store *st;		/* the ops' */
	struct peers *net;		/* the channels to the other nodes */
	/* serving */
	struct store_tree *served;
	uint64_t served_ms;
	struct check_msg *in, *out;
	uint8_t *buf;
	/* the check this node runs, for whoever asked */
	check_run_done_cb done;
	void *done_arg;
	uint64_t id;
	struct store_tree *mine;
	struct check_report *rep;
	struct ckpeer *peers;
	size_t n_peers;
	char **diff;			/* users found to differ */
	size_t n_diff;
	bool fetching;
	struct event *timer;
};

static void
check_scratch(struct check_run *cr)
{
	if (cr->in == NULL) {
		cr->in = xmalloc(sizeof(*cr->in));
		cr->out = xmalloc(sizeof(*cr->out));
		cr->buf = xmalloc(CHECK_MSG_MAX);
	}
	cr->out->type = 0;
	cr->out->id = 0;
	cr->out->n_origins = cr->out->n_backends = cr->out->n_paths = 0;
	cr->out->n_leaves = cr->out->n_users = cr->out->n_faults = 0;
	cr->out->complete = false;
	cr->out->root = NULL;
	cr->out->users = cr->out->checked = cr->out->bad = 0;
	cr->out->equivocations = 0;
}

static struct check_slice
check_str(const char *s)
{
	struct check_slice sl = { (const uint8_t *)s, strlen(s) };

	return sl;
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

/* ---- serving other nodes' checks ---- */

struct ck_origin_ctx {
	struct check_msg *m;
	char (*names)[RECORD_NAME_MAX + 1];
};

static int
check_origin_cb(const char *origin, uint64_t contig, uint64_t highest,
    void *arg)
{
	struct ck_origin_ctx *oc = arg;

	if (oc->m->n_origins < CHECK_ORIGINS_MAX &&
	    strlen(origin) <= CHECK_NAME_MAX && origin[0] != '\0') {
		size_t i = oc->m->n_origins++;

		mm_strlcpy(oc->names[i], origin, sizeof(oc->names[i]));
		oc->m->origins[i].origin = check_str(oc->names[i]);
		oc->m->origins[i].contig = contig;
		oc->m->origins[i].highest = highest;
	}
	return 0;
}

struct ck_fault_ctx {
	struct check_msg *m;
	char (*text)[2][CHECK_TEXT_MAX + 1];
};

static void
check_fault_cb(const char *what, const char *reason, void *arg)
{
	struct ck_fault_ctx *fc = arg;
	size_t i;

	if (fc->m->n_faults >= CHECK_FAULTS_MAX)
		return;
	i = fc->m->n_faults++;
	mm_strlcpy(fc->text[i][0], what, CHECK_TEXT_MAX + 1);
	mm_strlcpy(fc->text[i][1], reason, CHECK_TEXT_MAX + 1);
	fc->m->faults[i].what = check_str(fc->text[i][0]);
	fc->m->faults[i].reason = check_str(fc->text[i][1]);
}

/* The tree other nodes' checks descend: built afresh for a ROOT_REQ,
 * reused for the requests of the descent that follows. NULL on a store
 * error. */
static struct store_tree *
check_served_tree(struct check_run *cr, bool fresh)
{
	uint64_t now = mm_now_ms();

	if (cr->served != NULL && !fresh &&
	    now - cr->served_ms < CHECK_RUN_TREE_MS)
		return cr->served;
	store_tree_free(cr->served);
	cr->served = NULL;
	if (store_tree_build(cr->st, &cr->served) != 0)
		return NULL;
	cr->served_ms = now;
	return cr->served;
}

struct ck_users_ctx {
	struct check_msg *m;
	char (*names)[RECORD_USER_MAX + 1];
	uint8_t (*hashes)[CHECK_HASH_LEN];
};

static int
check_users_cb(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], const uint8_t *env, size_t len,
    void *arg)
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

static void
check_serve(struct check_run *cr, struct pconn *c,
    const struct check_msg *q)
{
	struct check_msg *m = cr->out;
	struct store_tree *t;
	char (*names)[RECORD_USER_MAX + 1] = NULL;
	uint8_t (*hashes)[CHECK_HASH_LEN] = NULL, **envs = NULL;
	char (*onames)[RECORD_NAME_MAX + 1] = NULL;
	char (*text)[2][CHECK_TEXT_MAX + 1] = NULL;
	uint8_t *bits = NULL;
	size_t i;

	m->id = q->id;
	switch (q->type) {
	case CHECK_ROOT_REQ: {
		struct ck_origin_ctx oc = { m, NULL };

		if ((t = check_served_tree(cr, true)) == NULL)
			return;
		m->type = CHECK_ROOT;
		m->site = check_str(cr->conf->site);
		m->node = check_str(cr->conf->node_name);
		m->root = store_tree_root(t);
		m->users = store_tree_users(t);
		onames = xcalloc(CHECK_ORIGINS_MAX, sizeof(*onames));
		oc.names = onames;
		(void)store_foreach_origin(cr->st, check_origin_cb, &oc);
		for (i = 0; i < cr->conf->n_backends &&
		    i < CHECK_BACKENDS_MAX; i++)
			m->backends[m->n_backends++] =
			    check_str(cr->conf->backends[i].name);
		break;
	}
	case CHECK_BUCKETS_REQ:
		if ((t = check_served_tree(cr, false)) == NULL)
			return;
		m->type = CHECK_BUCKETS;
		for (i = 0; i < q->n_paths; i++) {
			m->paths[i] = q->paths[i];
			m->hashes[i] = q->paths[i] == 0 ?
			    store_tree_bucket(t, 0) :
			    store_tree_leaf(t, (q->paths[i] - 1) *
			    STORE_TREE_FANOUT);
		}
		m->n_paths = q->n_paths;
		break;
	case CHECK_USERS_REQ: {
		struct ck_users_ctx uc = { m, NULL, NULL };

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

			memcpy(names[i], q->list[i].user.p,
			    q->list[i].user.len);
			names[i][q->list[i].user.len] = '\0';
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
	case CHECK_VERIFY_REQ: {
		struct store_verify_report vr;
		struct ck_fault_ctx fc = { m, NULL };

		m->type = CHECK_VERIFY;
		text = xcalloc(CHECK_FAULTS_MAX, sizeof(*text));
		fc.text = text;
		memset(&vr, 0, sizeof(vr));
		if (store_verify(cr->st, (uint64_t)time(NULL), &vr,
		    check_fault_cb, &fc) != 0)
			goto done;
		m->checked = vr.checked;
		m->bad = vr.bad;
		m->equivocations = vr.equivocations;
		break;
	}
	default:
		return;
	}
	check_send(cr, NULL, c);
done:
	if (envs != NULL)
		for (i = 0; i < CHECK_RECORDS_MAX; i++)
			free(envs[i]);
	free(envs);
	free(names);
	free(hashes);
	free(onames);
	free(text);
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
			free(cr->peers[i].users[j].user);
		free(cr->peers[i].users);
	}
	free(cr->peers);
	cr->peers = NULL;
	cr->n_peers = 0;
	for (i = 0; i < cr->n_diff; i++)
		free(cr->diff[i]);
	free(cr->diff);
	cr->diff = NULL;
	cr->n_diff = 0;
	store_tree_free(cr->mine);
	cr->mine = NULL;
	check_report_free(cr->rep);
	cr->rep = NULL;
	cr->done = NULL;
	cr->done_arg = NULL;
	cr->fetching = false;
	if (cr->timer != NULL)
		evtimer_del(cr->timer);
}

static void
check_finish(struct check_run *cr)
{
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL;

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

static void
check_diff_add(struct check_run *cr, const char *user)
{
	size_t i;

	for (i = 0; i < cr->n_diff; i++)
		if (strcmp(cr->diff[i], user) == 0)
			return;
	cr->diff = xrealloc(cr->diff, (cr->n_diff + 1) * sizeof(*cr->diff));
	cr->diff[cr->n_diff++] = xstrdup(user);
}

/* Phase two: every node's record of every user found to differ. */
static void
check_fetch(struct check_run *cr)
{
	struct check_node *local = check_report_local(cr->rep);
	size_t i, j, k;

	cr->fetching = true;
	for (i = 0; i < cr->n_diff; i++) {
		struct record_user u;
		uint8_t *env = NULL;
		size_t len = 0;

		if (store_get_user(cr->st, cr->diff[i], &u, &env,
		    &len) != 1)
			len = 0;
		check_node_record(local, cr->diff[i], len > 0 ? env : NULL,
		    len);
		free(env);
	}
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

	for (i = 0; i < cr->n_peers; i++) {
		const struct ckpeer *p = &cr->peers[i];

		if (!cr->fetching && (!p->descended || !p->have_verify))
			return;
		if (cr->fetching && p->pending_rec > 0)
			return;
	}
	if (!cr->fetching && cr->n_diff > 0) {
		check_fetch(cr);
		check_progress(cr);
		return;
	}
	check_finish(cr);
}

static int
ckuser_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ckuser *)a)->user,
	    ((const struct ckuser *)b)->user);
}

struct ck_cmp_ctx {
	struct check_run *cr;
	struct ckpeer *p;
	uint8_t *seen;		/* per peer user: matched locally */
};

static int
check_cmp_cb(unsigned leaf, const char *user,
    const uint8_t hash[STORE_TREE_HASH_LEN], const uint8_t *env, size_t len,
    void *arg)
{
	struct ck_cmp_ctx *cc = arg;
	struct ckuser key = { (char *)user, { 0 } }, *f;

	f = bsearch(&key, cc->p->users, cc->p->n_users, sizeof(key),
	    ckuser_cmp);
	if (f == NULL) {
		check_diff_add(cc->cr, user);
		return 0;
	}
	cc->seen[f - cc->p->users] = 1;
	if (memcmp(f->hash, hash, CHECK_HASH_LEN) != 0)
		check_diff_add(cc->cr, user);
	return 0;
}

/* The peer's descent is over: its users of the differing leaves against
 * ours. */
static void
check_descended(struct check_run *cr, struct ckpeer *p)
{
	struct ck_cmp_ctx cc = { cr, p, NULL };
	size_t i;

	p->descended = true;
	if (p->leaves == NULL)
		return;
	if (p->n_users > 0)
		qsort(p->users, p->n_users, sizeof(*p->users), ckuser_cmp);
	cc.seen = xcalloc(p->n_users + 1, 1);
	if (store_tree_leaf_users(cr->st, p->leaves, check_cmp_cb,
	    &cc) != 0)
		check_node_incomplete(p->node, "local store error");
	for (i = 0; i < p->n_users; i++)
		if (!cc.seen[i])
			check_diff_add(cr, p->users[i].user);
	free(cc.seen);
}

static void
check_ask_leaves(struct check_run *cr, struct ckpeer *p,
    const uint32_t *leaves, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i % CHECK_RUN_LEAVES_REQ == 0) {
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

static void
check_answer(struct check_run *cr, struct ckpeer *p,
    const struct check_msg *m)
{
	char s[CHECK_TEXT_MAX + 1], s2[CHECK_TEXT_MAX + 1];
	uint32_t list[STORE_TREE_FANOUT];
	size_t i, j, n;

	switch (m->type) {
	case CHECK_ROOT:
		if (p->have_root)
			return;
		p->have_root = true;
		/* The node names its own site: gossip may not have told us
		 * yet (a member met only by name). */
		if (m->site.len > 0 && m->site.len <= CHECK_TEXT_MAX) {
			memcpy(s, m->site.p, m->site.len);
			s[m->site.len] = '\0';
			check_node_site(p->node, s);
		}
		check_node_root(p->node, m->root, m->users);
		for (i = 0; i < m->n_origins; i++) {
			memcpy(s, m->origins[i].origin.p,
			    m->origins[i].origin.len);
			s[m->origins[i].origin.len] = '\0';
			check_node_origin(p->node, s, m->origins[i].contig,
			    m->origins[i].highest);
		}
		for (i = 0; i < m->n_backends; i++) {
			memcpy(s, m->backends[i].p, m->backends[i].len);
			s[m->backends[i].len] = '\0';
			check_node_backend(p->node, s);
		}
		if (check_node_same(p->node)) {
			p->descended = true;
			break;
		}
		check_scratch(cr);
		cr->out->type = CHECK_BUCKETS_REQ;
		cr->out->id = cr->id;
		cr->out->paths[0] = 0;
		cr->out->n_paths = 1;
		check_send(cr, p->name, NULL);
		p->pending++;
		break;
	case CHECK_VERIFY:
		if (p->have_verify)
			return;
		p->have_verify = true;
		check_node_verify(p->node, m->checked, m->bad,
		    m->equivocations);
		for (i = 0; i < m->n_faults; i++) {
			memcpy(s, m->faults[i].what.p, m->faults[i].what.len);
			s[m->faults[i].what.len] = '\0';
			memcpy(s2, m->faults[i].reason.p,
			    m->faults[i].reason.len);
			s2[m->faults[i].reason.len] = '\0';
			check_node_fault(p->node, s, s2);
		}
		break;
	case CHECK_BUCKETS:
		if (p->pending == 0 || p->descended)
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
		if (p->pending == 0 || p->descended)
			return;
		p->pending--;
		if (!m->complete)
			check_node_incomplete(p->node, "too many users in the "
			    "leaves that differ");
		p->users = xrealloc(p->users, (p->n_users + m->n_users) *
		    sizeof(*p->users) + 1);
		for (i = 0; i < m->n_users; i++) {
			struct ckuser *u = &p->users[p->n_users++];

			u->user = xmalloc(m->list[i].user.len + 1);
			memcpy(u->user, m->list[i].user.p,
			    m->list[i].user.len);
			u->user[m->list[i].user.len] = '\0';
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

			memcpy(u, m->list[i].user.p, m->list[i].user.len);
			u[m->list[i].user.len] = '\0';
			check_node_record(p->node, u, m->list[i].env.len > 0 ?
			    m->list[i].env.p : NULL, m->list[i].env.len);
		}
		break;
	default:
		return;
	}
	check_progress(cr);
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check_run *cr = arg;
	size_t i;

	if (cr->rep == NULL)
		return;
	for (i = 0; i < cr->n_peers; i++) {
		struct ckpeer *p = &cr->peers[i];

		if (!p->have_root)
			check_node_unreachable(p->node, "no answer");
		else if (!p->descended || !p->have_verify ||
		    p->pending_rec > 0)
			check_node_incomplete(p->node, "timed out");
	}
	if (!cr->fetching && cr->n_diff > 0) {
		/* What was found still gets its records, briefly. */
		struct timeval tv = { CHECK_RUN_FETCH_MS / 1000,
			(CHECK_RUN_FETCH_MS % 1000) * 1000 };

		for (i = 0; i < cr->n_peers; i++) {
			cr->peers[i].descended = true;
			cr->peers[i].have_verify = true;
		}
		check_fetch(cr);
		evtimer_add(cr->timer, &tv);
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

bool
check_run_takes(const struct check_run *cr, const char *op, size_t argc)
{
	return cr != NULL && strcmp(op, "check") == 0 && argc == 0;
}

void
check_run_start(struct check_run *cr, check_run_done_cb done, void *arg)
{
	struct timeval tv = { CHECK_RUN_TIMEOUT_MS / 1000,
		(CHECK_RUN_TIMEOUT_MS % 1000) * 1000 };
	struct ctl_rows rows;
	size_t i;

	if (cr->rep != NULL) {
		ctl_rows_init(&rows);
		done(arg, CTL_TEMP, "a check is running already", &rows);
		return;
	}
	cr->rep = check_report_new();
	if (ops_check_local(cr->ops, cr->rep, &cr->mine) != 0) {
		check_end(cr);
		ctl_rows_init(&rows);
		done(arg, CTL_FAILED, "store error", &rows);
		return;
	}
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
		cr->out->type = CHECK_VERIFY_REQ;
		check_send(cr, cr->peers[i].name, NULL);
	}
	if (cr->timer == NULL)
		cr->timer = evtimer_new(cr->base, check_timeout_cb, cr);
	evtimer_add(cr->timer, &tv);
	check_progress(cr);
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
	size_t i;

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
	for (i = 0; i < cr->n_peers; i++)
		if (strcmp(cr->peers[i].name, name) == 0)
			break;
	if (i < cr->n_peers)
		check_answer(cr, &cr->peers[i], cr->in);
}

struct check_run *
check_run_new(struct event_base *base, const struct mm_config *conf,
    struct ops *o, struct peers *net)
{
	struct check_run *cr = xcalloc(1, sizeof(*cr));

	cr->base = base;
	cr->conf = conf;
	cr->ops = o;
	cr->st = ops_store(o);
	cr->net = net;
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
	free(cr);
}
