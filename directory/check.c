/* The consistency check: wire messages and the report. */
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"
#include "record.h"

#define CHECK_HDR_FIELDS 4	/* "chk", version, type, id */
#define CHECK_BUCKET_BYTES (CHECK_FANOUT * CHECK_HASH_LEN)
#define CHECK_PATH_MAX CHECK_FANOUT	/* 0 root, 1 + bucket */
#define CHECK_REPORT_DAMAGE 1000	/* scrub findings listed per node */

/* ---- codec ----------------------------------------------------------- */

static int
get_name(struct mm_mp_reader *r, size_t max, struct check_slice *s)
{
	const char *p;
	size_t len, i;

	if (mm_mp_get_strp(r, max, &p, &len) < 0)
		return -1;
	if (len == 0) {
		r->why = "empty name";
		return -1;
	}
	for (i = 0; i < len; i++) {
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f) {
			r->why = "name not printable";
			return -1;
		}
	}
	s->p = (const uint8_t *)p;
	s->len = len;
	return 0;
}

static int
get_text(struct mm_mp_reader *r, size_t max, struct check_slice *s)
{
	const char *p;

	if (mm_mp_get_strp(r, max, &p, &s->len) < 0)
		return -1;
	s->p = (const uint8_t *)p;
	return 0;
}

static int
get_user(struct mm_mp_reader *r, struct check_slice *s)
{
	if (get_text(r, CHECK_USER_MAX, s) < 0)
		return -1;
	if (s->len == 0) {
		r->why = "empty user";
		return -1;
	}
	return 0;
}

static int
get_hash(struct mm_mp_reader *r, size_t want, const uint8_t **p_r)
{
	size_t len;

	if (mm_mp_get_bin(r, want, p_r, &len) < 0)
		return -1;
	if (len != want) {
		r->why = "hash length";
		return -1;
	}
	return 0;
}

/* A list of (user, what) findings: the scrub's damage (user "" for a
 * leaf) and its conflicts (need_user). */
static int
get_findings(struct mm_mp_reader *r, uint32_t max, bool need_user,
    struct check_fault *list, size_t *n_r)
{
	uint32_t n, i;

	if (mm_mp_get_array(r, max, &n) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (mm_mp_get_array_n(r, 2) < 0 ||
		    (need_user ? get_user(r, &list[i].user) :
		    get_text(r, CHECK_USER_MAX, &list[i].user)) < 0 ||
		    get_text(r, CHECK_TEXT_MAX, &list[i].what) < 0)
			return -1;
	*n_r = n;
	return 0;
}

static int
decode_body(struct mm_mp_reader *r, uint32_t fields, struct check_msg *m)
{
	uint32_t n, i;
	uint64_t v;

	switch (m->type) {
	case CHECK_ROOT_REQ:
	case CHECK_SCRUB_REQ:
		return fields == 0 ? 0 : -1;
	case CHECK_ROOT:
		if (fields != 6 || get_name(r, CHECK_SITE_MAX, &m->site) < 0 ||
		    get_name(r, CHECK_NAME_MAX, &m->node) < 0 ||
		    get_hash(r, CHECK_HASH_LEN, &m->root) < 0 ||
		    mm_mp_get_uint(r, &m->users) < 0 ||
		    mm_mp_get_array(r, CHECK_ORIGINS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			struct check_origin *o = &m->origins[i];

			if (mm_mp_get_array_n(r, 3) < 0 ||
			    get_name(r, CHECK_NAME_MAX, &o->origin) < 0 ||
			    mm_mp_get_uint(r, &o->contig) < 0 ||
			    mm_mp_get_uint(r, &o->highest) < 0)
				return -1;
		}
		m->n_origins = n;
		if (mm_mp_get_array(r, CHECK_BACKENDS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++)
			if (get_name(r, CHECK_NAME_MAX, &m->backends[i]) < 0)
				return -1;
		m->n_backends = n;
		return 0;
	case CHECK_BUCKETS_REQ:
		if (fields != 1 ||
		    mm_mp_get_array(r, CHECK_PATHS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			if (mm_mp_get_uint_max(r, CHECK_PATH_MAX, &v) < 0)
				return -1;
			m->paths[i] = (uint32_t)v;
		}
		m->n_paths = n;
		return 0;
	case CHECK_BUCKETS:
		if (fields != 1 ||
		    mm_mp_get_array(r, CHECK_PATHS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			if (mm_mp_get_array_n(r, 2) < 0 ||
			    mm_mp_get_uint_max(r, CHECK_PATH_MAX, &v) < 0 ||
			    get_hash(r, CHECK_BUCKET_BYTES, &m->hashes[i]) < 0)
				return -1;
			m->paths[i] = (uint32_t)v;
		}
		m->n_paths = n;
		return 0;
	case CHECK_USERS_REQ:
		if (fields != 1 ||
		    mm_mp_get_array(r, CHECK_LEAVES_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			if (mm_mp_get_uint_max(r, STORE_TREE_LEAVES - 1,
			    &v) < 0)
				return -1;
			m->leaves[i] = (uint32_t)v;
		}
		m->n_leaves = n;
		return 0;
	case CHECK_USERS:
		if (fields != 2 || mm_mp_get_bool(r, &m->complete) < 0 ||
		    mm_mp_get_array(r, CHECK_USERS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++)
			if (mm_mp_get_array_n(r, 2) < 0 ||
			    get_user(r, &m->list[i].user) < 0 ||
			    get_hash(r, CHECK_HASH_LEN, &m->list[i].hash) < 0)
				return -1;
		m->n_users = n;
		return 0;
	case CHECK_RECORD_REQ:
		if (fields != 1 ||
		    mm_mp_get_array(r, CHECK_RECORDS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++)
			if (get_user(r, &m->list[i].user) < 0)
				return -1;
		m->n_users = n;
		return 0;
	case CHECK_RECORD:
		if (fields != 1 ||
		    mm_mp_get_array(r, CHECK_RECORDS_MAX, &n) < 0)
			return -1;
		for (i = 0; i < n; i++) {
			struct check_user *u = &m->list[i];

			if (mm_mp_get_array_n(r, 2) < 0 ||
			    get_user(r, &u->user) < 0)
				return -1;
			if (mm_mp_peek_nil(r)) {
				if (mm_mp_get_nil(r) < 0)
					return -1;
				continue;
			}
			if (mm_mp_get_bin(r, CHECK_ENV_MAX, &u->env.p,
			    &u->env.len) < 0)
				return -1;
			if (u->env.len == 0) {
				r->why = "empty envelope";
				return -1;
			}
		}
		m->n_users = n;
		return 0;
	case CHECK_SCRUB:
		if (fields != 7 || mm_mp_get_uint(r, &m->records) < 0 ||
		    mm_mp_get_uint(r, &m->damaged) < 0 ||
		    mm_mp_get_uint(r, &m->equivocations) < 0 ||
		    mm_mp_get_bool(r, &m->complete) < 0 ||
		    get_findings(r, CHECK_FAULTS_MAX, false, m->faults,
		    &m->n_faults) < 0 ||
		    mm_mp_get_uint(r, &m->conflicts) < 0 ||
		    get_findings(r, CHECK_CONFLICTS_MAX, true, m->conflict,
		    &m->n_conflicts) < 0)
			return -1;
		return 0;
	}
	return -1;
}

int
check_msg_decode(const uint8_t *buf, size_t len, struct check_msg *m,
    const char **why_r)
{
	struct mm_mp_reader r;
	char magic[sizeof(CHECK_MAGIC)];
	uint32_t n;
	uint64_t v;

	*why_r = NULL;
	m->type = 0;
	m->id = 0;
	m->n_origins = m->n_backends = m->n_paths = m->n_leaves = 0;
	m->n_users = m->n_faults = m->n_conflicts = 0;
	m->root = NULL;
	memset(&m->site, 0, sizeof(m->site));
	memset(&m->node, 0, sizeof(m->node));
	m->users = m->records = m->damaged = m->equivocations = 0;
	m->conflicts = 0;
	m->complete = false;
	if (len > CHECK_MSG_MAX) {
		*why_r = "message too long";
		return -1;
	}
	mm_mp_reader_init(&r, buf, len);
	if (mm_mp_get_array(&r, CHECK_HDR_FIELDS + 7, &n) < 0 ||
	    n < CHECK_HDR_FIELDS ||
	    mm_mp_get_str(&r, magic, sizeof(magic) - 1) < 0 ||
	    strcmp(magic, CHECK_MAGIC) != 0 ||
	    mm_mp_get_uint(&r, &v) < 0 || v != CHECK_VERSION) {
		*why_r = r.why != NULL ? r.why : "not a check message";
		return -1;
	}
	if (mm_mp_get_uint_max(&r, CHECK_SCRUB, &v) < 0 || v == 0 ||
	    mm_mp_get_uint(&r, &m->id) < 0) {
		*why_r = r.why != NULL ? r.why : "unknown type";
		return -1;
	}
	/* Every list element is cleared, so no stale pointer survives. */
	memset(m->list, 0, sizeof(m->list));
	m->type = (enum check_type)v;
	if (decode_body(&r, n - CHECK_HDR_FIELDS, m) < 0 ||
	    mm_mp_end(&r) < 0) {
		*why_r = r.why != NULL ? r.why : "wrong field count";
		return -1;
	}
	return 0;
}

static bool
slice_ok(const struct check_slice *s, size_t max, bool nonempty)
{
	return s->len <= max && (!nonempty || s->len > 0) &&
	    (s->len == 0 || s->p != NULL);
}

static int
put_findings(struct mm_mp_writer *w, const struct check_fault *list,
    size_t n, bool need_user)
{
	size_t i;

	mm_mp_put_array(w, (uint32_t)n);
	for (i = 0; i < n; i++) {
		const struct check_fault *f = &list[i];

		if (!slice_ok(&f->user, CHECK_USER_MAX, need_user) ||
		    !slice_ok(&f->what, CHECK_TEXT_MAX, false))
			return -1;
		mm_mp_put_array(w, 2);
		mm_mp_put_strn(w, (const char *)f->user.p, f->user.len);
		mm_mp_put_strn(w, (const char *)f->what.p, f->what.len);
	}
	return 0;
}

int
check_msg_encode(const struct check_msg *m, uint8_t *out, size_t size)
{
	struct mm_mp_writer w;
	size_t i;

	mm_mp_writer_init(&w, out, size < CHECK_MSG_MAX ? size :
	    CHECK_MSG_MAX);
	switch (m->type) {
	case CHECK_ROOT_REQ:
	case CHECK_SCRUB_REQ:
		mm_mp_put_array(&w, CHECK_HDR_FIELDS);
		break;
	case CHECK_ROOT:
		mm_mp_put_array(&w, CHECK_HDR_FIELDS + 6);
		break;
	case CHECK_USERS:
		mm_mp_put_array(&w, CHECK_HDR_FIELDS + 2);
		break;
	case CHECK_SCRUB:
		mm_mp_put_array(&w, CHECK_HDR_FIELDS + 7);
		break;
	default:
		mm_mp_put_array(&w, CHECK_HDR_FIELDS + 1);
		break;
	}
	mm_mp_put_str(&w, CHECK_MAGIC);
	mm_mp_put_uint(&w, CHECK_VERSION);
	mm_mp_put_uint(&w, m->type);
	mm_mp_put_uint(&w, m->id);
	switch (m->type) {
	case CHECK_ROOT_REQ:
	case CHECK_SCRUB_REQ:
		break;
	case CHECK_ROOT:
		if (!slice_ok(&m->site, CHECK_SITE_MAX, true) ||
		    !slice_ok(&m->node, CHECK_NAME_MAX, true) ||
		    m->root == NULL || m->n_origins > CHECK_ORIGINS_MAX ||
		    m->n_backends > CHECK_BACKENDS_MAX)
			return -1;
		mm_mp_put_strn(&w, (const char *)m->site.p, m->site.len);
		mm_mp_put_strn(&w, (const char *)m->node.p, m->node.len);
		mm_mp_put_bin(&w, m->root, CHECK_HASH_LEN);
		mm_mp_put_uint(&w, m->users);
		mm_mp_put_array(&w, (uint32_t)m->n_origins);
		for (i = 0; i < m->n_origins; i++) {
			const struct check_origin *o = &m->origins[i];

			if (!slice_ok(&o->origin, CHECK_NAME_MAX, true))
				return -1;
			mm_mp_put_array(&w, 3);
			mm_mp_put_strn(&w, (const char *)o->origin.p,
			    o->origin.len);
			mm_mp_put_uint(&w, o->contig);
			mm_mp_put_uint(&w, o->highest);
		}
		mm_mp_put_array(&w, (uint32_t)m->n_backends);
		for (i = 0; i < m->n_backends; i++) {
			if (!slice_ok(&m->backends[i], CHECK_NAME_MAX, true))
				return -1;
			mm_mp_put_strn(&w, (const char *)m->backends[i].p,
			    m->backends[i].len);
		}
		break;
	case CHECK_BUCKETS_REQ:
	case CHECK_BUCKETS:
		if (m->n_paths > CHECK_PATHS_MAX)
			return -1;
		mm_mp_put_array(&w, (uint32_t)m->n_paths);
		for (i = 0; i < m->n_paths; i++) {
			if (m->paths[i] > CHECK_PATH_MAX)
				return -1;
			if (m->type == CHECK_BUCKETS_REQ) {
				mm_mp_put_uint(&w, m->paths[i]);
				continue;
			}
			if (m->hashes[i] == NULL)
				return -1;
			mm_mp_put_array(&w, 2);
			mm_mp_put_uint(&w, m->paths[i]);
			mm_mp_put_bin(&w, m->hashes[i], CHECK_BUCKET_BYTES);
		}
		break;
	case CHECK_USERS_REQ:
		if (m->n_leaves > CHECK_LEAVES_MAX)
			return -1;
		mm_mp_put_array(&w, (uint32_t)m->n_leaves);
		for (i = 0; i < m->n_leaves; i++) {
			if (m->leaves[i] >= STORE_TREE_LEAVES)
				return -1;
			mm_mp_put_uint(&w, m->leaves[i]);
		}
		break;
	case CHECK_USERS:
	case CHECK_RECORD_REQ:
	case CHECK_RECORD:
		if (m->n_users > (m->type == CHECK_USERS ? CHECK_USERS_MAX :
		    CHECK_RECORDS_MAX))
			return -1;
		if (m->type == CHECK_USERS)
			mm_mp_put_bool(&w, m->complete);
		mm_mp_put_array(&w, (uint32_t)m->n_users);
		for (i = 0; i < m->n_users; i++) {
			const struct check_user *u = &m->list[i];

			/* A request names users only: no envelope is read. */
			if (!slice_ok(&u->user, CHECK_USER_MAX, true) ||
			    (m->type == CHECK_RECORD &&
			    !slice_ok(&u->env, CHECK_ENV_MAX, false)))
				return -1;
			if (m->type == CHECK_RECORD_REQ) {
				mm_mp_put_strn(&w, (const char *)u->user.p,
				    u->user.len);
				continue;
			}
			mm_mp_put_array(&w, 2);
			mm_mp_put_strn(&w, (const char *)u->user.p,
			    u->user.len);
			if (m->type == CHECK_USERS) {
				if (u->hash == NULL)
					return -1;
				mm_mp_put_bin(&w, u->hash, CHECK_HASH_LEN);
			} else if (u->env.len == 0) {
				mm_mp_put_nil(&w);
			} else {
				mm_mp_put_bin(&w, u->env.p, u->env.len);
			}
		}
		break;
	case CHECK_SCRUB:
		if (m->n_faults > CHECK_FAULTS_MAX ||
		    m->n_conflicts > CHECK_CONFLICTS_MAX)
			return -1;
		mm_mp_put_uint(&w, m->records);
		mm_mp_put_uint(&w, m->damaged);
		mm_mp_put_uint(&w, m->equivocations);
		mm_mp_put_bool(&w, m->complete);
		if (put_findings(&w, m->faults, m->n_faults, false) < 0)
			return -1;
		mm_mp_put_uint(&w, m->conflicts);
		if (put_findings(&w, m->conflict, m->n_conflicts, true) < 0)
			return -1;
		break;
	default:
		return -1;
	}
	if (!mm_mp_writer_ok(&w))
		return -1;
	return (int)mm_mp_writer_len(&w);
}

/* ---- the report ------------------------------------------------------ */

struct check_rec {
	char *user;
	uint8_t *env;		/* NULL: none held */
	size_t len;
};

struct check_org {
	char *name;
	uint64_t contig, highest;
};

/* A scrub finding. */
struct check_damage {
	char *user, *what;
};

struct check_node {
	char *site, *name;
	bool reached, have_root, have_scrub, scrub_complete, incomplete;
	char *why;
	uint8_t root[CHECK_HASH_LEN];
	uint64_t users;
	struct check_org *orgs;
	size_t n_orgs;
	char **backends;
	size_t n_backends;
	uint64_t records, damaged, equivocations, conflicts;
	struct check_damage *damage, *conflict;
	size_t n_damage, n_conflict;
	struct check_rec *recs;		/* sorted by user at the end */
	size_t n_recs;
	bool recs_sorted;
	struct check_report *rep;
};

/* A (site, back end) that local records name, with how many. */
struct check_use {
	char *site, *backend, *example;
	uint64_t count;
};

/* A record in a move, as a row. */
struct check_moving {
	struct record_user u;
};

struct check_report {
	struct check_node **nodes;
	size_t n_nodes;
	struct check_use *uses;
	size_t n_uses;
	struct check_moving *moving;
	size_t n_moving;
	size_t findings;
};

struct check_report *
check_report_new(void)
{
	return xcalloc(1, sizeof(struct check_report));
}

static void
node_free(struct check_node *n)
{
	size_t i;

	free(n->site);
	free(n->name);
	free(n->why);
	for (i = 0; i < n->n_orgs; i++)
		free(n->orgs[i].name);
	free(n->orgs);
	for (i = 0; i < n->n_backends; i++)
		free(n->backends[i]);
	free(n->backends);
	for (i = 0; i < n->n_damage; i++) {
		free(n->damage[i].user);
		free(n->damage[i].what);
	}
	for (i = 0; i < n->n_conflict; i++) {
		free(n->conflict[i].user);
		free(n->conflict[i].what);
	}
	free(n->damage);
	free(n->conflict);
	for (i = 0; i < n->n_recs; i++) {
		free(n->recs[i].user);
		free(n->recs[i].env);
	}
	free(n->recs);
	free(n);
}

void
check_report_free(struct check_report *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_nodes; i++)
		node_free(r->nodes[i]);
	free(r->nodes);
	for (i = 0; i < r->n_uses; i++) {
		free(r->uses[i].site);
		free(r->uses[i].backend);
		free(r->uses[i].example);
	}
	free(r->uses);
	free(r->moving);
	free(r);
}

struct check_node *
check_report_node(struct check_report *r, const char *site,
    const char *name)
{
	struct check_node *n = xcalloc(1, sizeof(*n));

	n->site = xstrdup(site);
	n->name = xstrdup(name);
	n->reached = true;
	n->rep = r;
	r->nodes = xrealloc(r->nodes, (r->n_nodes + 1) * sizeof(*r->nodes));
	r->nodes[r->n_nodes++] = n;
	return n;
}

void
check_node_unreachable(struct check_node *n, const char *why)
{
	n->reached = false;
	free(n->why);
	n->why = xstrdup(why);
}

void
check_node_incomplete(struct check_node *n, const char *why)
{
	if (n->incomplete)
		return;
	n->incomplete = true;
	free(n->why);
	n->why = xstrdup(why);
}

void
check_node_site(struct check_node *n, const char *site)
{
	free(n->site);
	n->site = xstrdup(site);
}

void
check_node_root(struct check_node *n, const uint8_t *root, uint64_t users)
{
	memcpy(n->root, root, CHECK_HASH_LEN);
	n->users = users;
	n->have_root = true;
}

void
check_node_origin(struct check_node *n, const char *origin, uint64_t contig,
    uint64_t highest)
{
	n->orgs = xrealloc(n->orgs, (n->n_orgs + 1) * sizeof(*n->orgs));
	n->orgs[n->n_orgs].name = xstrdup(origin);
	n->orgs[n->n_orgs].contig = contig;
	n->orgs[n->n_orgs].highest = highest;
	n->n_orgs++;
}

void
check_node_backend(struct check_node *n, const char *backend)
{
	n->backends = xrealloc(n->backends,
	    (n->n_backends + 1) * sizeof(*n->backends));
	n->backends[n->n_backends++] = xstrdup(backend);
}

void
check_node_scrub(struct check_node *n, uint64_t records, uint64_t damaged,
    uint64_t equivocations, bool complete)
{
	n->records = records;
	n->damaged = damaged;
	n->equivocations = equivocations;
	n->scrub_complete = complete;
	n->have_scrub = true;
	if (!complete)
		check_node_incomplete(n, "its scrub stopped on a store error");
}

void
check_node_damage(struct check_node *n, const char *user, const char *what)
{
	struct check_damage *d;

	if (n->n_damage >= CHECK_REPORT_DAMAGE)
		return;
	n->damage = xrealloc(n->damage, (n->n_damage + 1) * sizeof(*n->damage));
	d = &n->damage[n->n_damage++];
	d->user = xstrdup(user);
	d->what = xstrdup(what);
}

void
check_node_conflict(struct check_node *n, const char *user, const char *what)
{
	struct check_damage *d;

	if (n->n_conflict >= CHECK_CONFLICTS_MAX)
		return;
	n->conflict = xrealloc(n->conflict, (n->n_conflict + 1) *
	    sizeof(*n->conflict));
	d = &n->conflict[n->n_conflict++];
	d->user = xstrdup(user);
	d->what = xstrdup(what);
}

void
check_node_conflicts(struct check_node *n, uint64_t count)
{
	n->conflicts = count;
}

/* Kept unsorted while they come in (a check may fetch thousands), sorted
 * once when the report is built. */
void
check_node_record(struct check_node *n, const char *user, const uint8_t *env,
    size_t len)
{
	struct check_rec *c;

	if (n->n_recs % 64 == 0)
		n->recs = xrealloc(n->recs, (n->n_recs + 64) *
		    sizeof(*n->recs));
	n->recs_sorted = false;
	c = &n->recs[n->n_recs++];
	c->user = xstrdup(user);
	c->env = NULL;
	c->len = 0;
	if (env != NULL && len > 0) {
		c->env = xmalloc(len);
		memcpy(c->env, env, len);
		c->len = len;
	}
}

struct check_node *
check_report_local(struct check_report *r)
{
	return r->n_nodes > 0 ? r->nodes[0] : NULL;
}

/* Damage makes a node's records its own, whatever its tree says. */
static bool
node_damaged(const struct check_node *n)
{
	return n->damaged > 0 || n->n_damage > 0;
}

bool
check_node_same(const struct check_node *n)
{
	const struct check_node *l = n->rep->nodes[0];

	return n->have_root && l->have_root &&
	    memcmp(n->root, l->root, CHECK_HASH_LEN) == 0 &&
	    !node_damaged(n) && !node_damaged(l);
}

const char *
check_node_name(const struct check_node *n)
{
	return n->name;
}

void
check_report_local_record(struct check_report *r, const uint8_t *env,
    size_t len)
{
	struct record_user u;
	const char *why;
	size_t i;

	if (record_decode_user(env, len, &u, &why) < 0)
		return;
	if (u.state == USTATE_MOVING || u.state == USTATE_FROZEN) {
		r->moving = xrealloc(r->moving,
		    (r->n_moving + 1) * sizeof(*r->moving));
		r->moving[r->n_moving].u = u;
		r->moving[r->n_moving].u.transfer = NULL;
		r->n_moving++;
	}
	if (u.state == USTATE_DELETED || u.state == USTATE_TRANSFER ||
	    u.backend[0] == '\0')
		return;
	for (i = 0; i < r->n_uses; i++) {
		if (strcmp(r->uses[i].site, u.site) == 0 &&
		    strcmp(r->uses[i].backend, u.backend) == 0) {
			r->uses[i].count++;
			return;
		}
	}
	r->uses = xrealloc(r->uses, (r->n_uses + 1) * sizeof(*r->uses));
	r->uses[r->n_uses].site = xstrdup(u.site);
	r->uses[r->n_uses].backend = xstrdup(u.backend);
	r->uses[r->n_uses].example = xstrdup(u.user);
	r->uses[r->n_uses].count = 1;
	r->n_uses++;
}

void
check_report_merge_records(struct check_report *r, struct check_report *from)
{
	size_t i, j;

	for (i = 0; i < from->n_uses; i++) {
		struct check_use *u = &from->uses[i];

		for (j = 0; j < r->n_uses; j++)
			if (strcmp(r->uses[j].site, u->site) == 0 &&
			    strcmp(r->uses[j].backend, u->backend) == 0)
				break;
		if (j < r->n_uses) {
			r->uses[j].count += u->count;
			free(u->site);
			free(u->backend);
			free(u->example);
			continue;
		}
		r->uses = xrealloc(r->uses, (r->n_uses + 1) * sizeof(*r->uses));
		r->uses[r->n_uses++] = *u;
	}
	free(from->uses);
	from->uses = NULL;
	from->n_uses = 0;
	if (from->n_moving > 0) {
		r->moving = xrealloc(r->moving, (r->n_moving +
		    from->n_moving) * sizeof(*r->moving));
		memcpy(r->moving + r->n_moving, from->moving,
		    from->n_moving * sizeof(*r->moving));
		r->n_moving += from->n_moving;
	}
	free(from->moving);
	from->moving = NULL;
	from->n_moving = 0;
}

/* ---- findings ---- */

static const char *const report_header[] = { "kind", "user", "site",
	"node", "rec_site", "backend", "state", "epoch", "seq", "origin",
	"detail" };

static void
finding(struct check_report *r, struct ctl_rows *rows, const char *kind,
    const char *user, const struct check_node *n,
    const struct record_user *u, const char *detail)
{
	char epoch[24] = "", seq[24] = "";
	const char *cols[MM_ARRAY_SIZE(report_header)];

	if (u != NULL) {
		snprintf(epoch, sizeof(epoch), "%llu",
		    (unsigned long long)u->epoch);
		snprintf(seq, sizeof(seq), "%llu", (unsigned long long)u->seq);
	}
	cols[0] = kind;
	cols[1] = user != NULL ? user : "";
	cols[2] = n != NULL ? n->site : "";
	cols[3] = n != NULL ? n->name : "";
	cols[4] = u != NULL ? u->site : "";
	cols[5] = u != NULL ? u->backend : "";
	cols[6] = u != NULL ? record_state_name(u->state) : "";
	cols[7] = epoch;
	cols[8] = seq;
	cols[9] = u != NULL ? u->origin : "";
	cols[10] = detail != NULL ? detail : "";
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(cols), cols);
	if (strcmp(kind, "node") != 0)
		r->findings++;
}

/* The record node n holds for user: the local node's when n's root is
 * the local one. 1 with *rec_r (env may be NULL), 0 unknown. */
static int
rec_cmp(const void *a, const void *b)
{
	return strcmp(((const struct check_rec *)a)->user,
	    ((const struct check_rec *)b)->user);
}

/* Sorts n's records by user, keeping the first of a user told twice. */
static void
sort_recs(struct check_node *n)
{
	size_t i, o;

	if (n->recs_sorted || n->n_recs == 0)
		return;
	qsort(n->recs, n->n_recs, sizeof(*n->recs), rec_cmp);
	for (i = 1, o = 1; i < n->n_recs; i++) {
		if (strcmp(n->recs[i].user, n->recs[o - 1].user) == 0) {
			free(n->recs[i].user);
			free(n->recs[i].env);
			continue;
		}
		n->recs[o++] = n->recs[i];
	}
	n->n_recs = o;
	n->recs_sorted = true;
}

static int
node_rec(const struct check_report *r, const struct check_node *n,
    const char *user, const struct check_rec **rec_r)
{
	struct check_rec key = { (char *)user, NULL, 0 };

	if (n != r->nodes[0] && check_node_same(n))
		n = r->nodes[0];
	*rec_r = n->n_recs == 0 ? NULL : bsearch(&key, n->recs, n->n_recs,
	    sizeof(*n->recs), rec_cmp);
	return *rec_r != NULL ? 1 : 0;
}

static bool
rec_equal(const struct check_rec *a, const struct check_rec *b)
{
	return a->len == b->len && (a->len == 0 ||
	    memcmp(a->env, b->env, a->len) == 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The back ends the nodes of site say they define; NULL when no node of
 * the site answered (nothing to judge by). */
static bool
site_defines(const struct check_report *r, const char *site,
    const char *backend, bool *known_r)
{
	size_t i, j;

	*known_r = false;
	for (i = 0; i < r->n_nodes; i++) {
		const struct check_node *n = r->nodes[i];

		if (!n->have_root || strcmp(n->site, site) != 0)
			continue;
		*known_r = true;
		for (j = 0; j < n->n_backends; j++)
			if (strcmp(n->backends[j], backend) == 0)
				return true;
	}
	return false;
}

static void
judge_record(struct check_report *r, struct ctl_rows *rows,
    const struct check_node *n, const struct record_user *u, uint64_t now,
    uint64_t stuck_s)
{
	char *d;
	bool known;

	if ((u->state == USTATE_MOVING || u->state == USTATE_FROZEN) &&
	    now > u->timestamp && now - u->timestamp > stuck_s) {
		d = xasprintf("%s towards site %s for %llus",
		    record_state_name(u->state),
		    u->target_site[0] != '\0' ? u->target_site : "?",
		    (unsigned long long)(now - u->timestamp));
		finding(r, rows, "stuck", u->user, n, u, d);
		free(d);
	}
	if (u->state != USTATE_DELETED && u->state != USTATE_TRANSFER &&
	    u->backend[0] != '\0' &&
	    !site_defines(r, u->site, u->backend, &known) && known) {
		d = xasprintf("site %s defines no back end %s", u->site,
		    u->backend);
		finding(r, rows, "unknown-backend", u->user, n, u, d);
		free(d);
	}
}

static void
report_nodes(struct check_report *r, struct ctl_rows *rows)
{
	size_t i;
	char *d;

	for (i = 0; i < r->n_nodes; i++) {
		const struct check_node *n = r->nodes[i];

		if (!n->reached) {
			finding(r, rows, "unreachable", NULL, n, NULL, n->why);
			continue;
		}
		if (n->have_root && n->have_scrub)
			d = xasprintf("root=%02x%02x%02x%02x users=%llu "
			    "scrubbed=%llu%s", n->root[0], n->root[1],
			    n->root[2], n->root[3],
			    (unsigned long long)n->users,
			    (unsigned long long)n->records,
			    i == 0 ? " (this node)" : "");
		else if (n->have_root)
			d = xasprintf("root=%02x%02x%02x%02x users=%llu%s",
			    n->root[0], n->root[1], n->root[2], n->root[3],
			    (unsigned long long)n->users,
			    i == 0 ? " (this node)" : "");
		else
			d = xstrdup("no answer");
		finding(r, rows, "node", NULL, n, NULL, d);
		free(d);
		if (n->incomplete)
			finding(r, rows, "incomplete", NULL, n, NULL, n->why);
	}
}

static void
report_lagging(struct check_report *r, struct ctl_rows *rows)
{
	size_t i, j, k;
	char *d;

	for (i = 0; i < r->n_nodes; i++) {
		for (j = 0; j < r->nodes[i]->n_orgs; j++) {
			const struct check_org *o = &r->nodes[i]->orgs[j];
			uint64_t best = 0;
			bool first = true;

			/* Each origin is judged once, at its first holder. */
			for (k = 0; k < i && first; k++) {
				size_t m;

				for (m = 0; m < r->nodes[k]->n_orgs; m++)
					if (strcmp(r->nodes[k]->orgs[m].name,
					    o->name) == 0)
						first = false;
			}
			if (!first)
				continue;
			for (k = 0; k < r->n_nodes; k++) {
				size_t m;

				for (m = 0; m < r->nodes[k]->n_orgs; m++)
					if (strcmp(r->nodes[k]->orgs[m].name,
					    o->name) == 0 &&
					    r->nodes[k]->orgs[m].contig > best)
						best = r->nodes[k]->orgs[m].contig;
			}
			for (k = 0; k < r->n_nodes; k++) {
				const struct check_node *n = r->nodes[k];
				uint64_t have = 0;
				size_t m;

				if (!n->have_root)
					continue;
				for (m = 0; m < n->n_orgs; m++)
					if (strcmp(n->orgs[m].name,
					    o->name) == 0)
						have = n->orgs[m].contig;
				if (have >= best)
					continue;
				d = xasprintf("origin %s: %llu of %llu",
				    o->name, (unsigned long long)have,
				    (unsigned long long)best);
				finding(r, rows, "lagging", NULL, n, NULL, d);
				free(d);
			}
		}
	}
}

/* What each node's scrub found: a record or tree entry damaged since it
 * was written, named by node and user. */
static void
report_scrub(struct check_report *r, struct ctl_rows *rows)
{
	size_t i, j;
	char *d;

	for (i = 0; i < r->n_nodes; i++) {
		const struct check_node *n = r->nodes[i];

		if (!n->have_scrub)
			continue;
		for (j = 0; j < n->n_damage; j++) {
			const struct check_damage *g = &n->damage[j];

			if (g->user[0] == '\0') {
				finding(r, rows, "invalid", NULL, n, NULL,
				    g->what);
				continue;
			}
			d = xasprintf("%s: %s", g->user, g->what);
			finding(r, rows, "invalid", g->user, n, NULL, d);
			free(d);
		}
		if (n->damaged > n->n_damage) {
			d = xasprintf("%llu more damaged entries of %llu "
			    "records not listed", (unsigned long long)
			    (n->damaged - n->n_damage),
			    (unsigned long long)n->records);
			finding(r, rows, "invalid", NULL, n, NULL, d);
			free(d);
		}
		if (n->equivocations > 0) {
			d = xasprintf("%llu equivocating records kept as "
			    "evidence", (unsigned long long)n->equivocations);
			finding(r, rows, "equivocation", NULL, n, NULL, d);
			free(d);
		}
		/* Each node tells what its own evidence holds: any node
		 * that has both records names both. */
		for (j = 0; j < n->n_conflict; j++)
			finding(r, rows, "conflict", n->conflict[j].user, n,
			    NULL, n->conflict[j].what);
		if (n->conflicts > n->n_conflict) {
			d = xasprintf("%llu more conflicts not listed",
			    (unsigned long long)(n->conflicts -
			    n->n_conflict));
			finding(r, rows, "conflict", NULL, n, NULL, d);
			free(d);
		}
	}
}

/* Users the nodes disagree on: every node's record, owners of one epoch
 * at two sites, and the per-record checks for records not held here. */
static size_t
report_disagree(struct check_report *r, struct ctl_rows *rows, uint64_t now,
    uint64_t stuck_s)
{
	char **users = NULL;
	size_t n_users = 0, i, j, k, count = 0;

	for (i = 0; i < r->n_nodes; i++)
		n_users += r->nodes[i]->n_recs;
	users = xcalloc(n_users + 1, sizeof(*users));
	for (i = 0, n_users = 0; i < r->n_nodes; i++)
		for (j = 0; j < r->nodes[i]->n_recs; j++)
			users[n_users++] = r->nodes[i]->recs[j].user;
	if (n_users > 0)
		qsort(users, n_users, sizeof(*users), cmp_str);
	for (i = 0; i < n_users; i++) {
		const struct check_rec *first = NULL, *rec;
		struct record_user us[2];
		bool differ = false, twice = false;
		size_t have = 0;
		const char *why;

		if (i > 0 && strcmp(users[i], users[i - 1]) == 0)
			continue;
		for (j = 0; j < r->n_nodes; j++) {
			if (!r->nodes[j]->have_root ||
			    node_rec(r, r->nodes[j], users[i], &rec) != 1)
				continue;
			if (first == NULL)
				first = rec;
			else if (!rec_equal(first, rec))
				differ = true;
		}
		if (!differ)
			continue;
		count++;
		for (j = 0; j < r->n_nodes; j++) {
			const struct check_node *n = r->nodes[j];
			struct record_user u;

			if (!n->have_root ||
			    node_rec(r, n, users[i], &rec) != 1)
				continue;
			if (rec->env == NULL) {
				finding(r, rows, "disagree", users[i], n, NULL,
				    "no record");
				continue;
			}
			if (record_decode_user(rec->env, rec->len, &u,
			    &why) < 0) {
				finding(r, rows, "disagree", users[i], n, NULL,
				    why);
				continue;
			}
			finding(r, rows, "disagree", users[i], n, &u, "");
			/* Two owners of one epoch: a site other than the
			 * first owner seen claims the same epoch. */
			if (u.state != USTATE_TRANSFER) {
				for (k = 0; k < have; k++)
					if (us[k].epoch == u.epoch &&
					    strcmp(us[k].site, u.site) != 0)
						twice = true;
				if (have < 2 && !twice) {
					us[have] = u;
					us[have].transfer = NULL;
					have++;
				}
			}
			if (j > 0 && !check_node_same(n))
				judge_record(r, rows, n, &u, now, stuck_s);
			if (twice) {
				char *d = xasprintf("epoch %llu claimed by "
				    "sites %s and %s",
				    (unsigned long long)u.epoch, us[0].site,
				    u.site);

				finding(r, rows, "owned-twice", users[i], n,
				    &u, d);
				free(d);
				twice = false;
				have = 2;	/* said once */
			}
		}
	}
	free(users);
	return count;
}

enum ctl_status
check_report_finish(struct check_report *r, uint64_t now, uint64_t stuck_s,
    struct ctl_rows *rows, char **msg_r)
{
	const struct check_node *local;
	size_t i, j, sites = 0, unreachable = 0, nfind;
	char **seen;
	bool known;

	*msg_r = NULL;
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(report_header),
	    report_header);
	if (r->n_nodes == 0) {
		*msg_r = xstrdup("no node answered");
		return CTL_TEMP;
	}
	local = r->nodes[0];
	report_nodes(r, rows);
	for (i = 0; i < r->n_nodes; i++)
		if (!r->nodes[i]->reached)
			unreachable++;
	nfind = r->findings;
	report_lagging(r, rows);
	for (i = 0; i < r->n_nodes; i++)
		sort_recs(r->nodes[i]);
	report_scrub(r, rows);
	(void)report_disagree(r, rows, now, stuck_s);
	for (i = 0; i < r->n_moving; i++)
		judge_record(r, rows, local, &r->moving[i].u, now, stuck_s);
	for (i = 0; i < r->n_uses; i++) {
		const struct check_use *u = &r->uses[i];
		char *d;

		if (site_defines(r, u->site, u->backend, &known) || !known)
			continue;
		d = xasprintf("site %s defines no back end %s (%llu users)",
		    u->site, u->backend, (unsigned long long)u->count);
		finding(r, rows, "unknown-backend", u->example, local, NULL, d);
		free(d);
	}
	seen = xcalloc(r->n_nodes, sizeof(*seen));
	for (i = 0; i < r->n_nodes; i++) {
		if (!r->nodes[i]->have_root)
			continue;
		for (j = 0; j < sites; j++)
			if (strcmp(seen[j], r->nodes[i]->site) == 0)
				break;
		if (j == sites)
			seen[sites++] = r->nodes[i]->site;
	}
	free(seen);
	if (r->findings == nfind && unreachable == 0 &&
	    r->findings == 0) {
		*msg_r = xasprintf("OK: %zu sites agree on %llu users", sites,
		    (unsigned long long)local->users);
		return CTL_OK;
	}
	if (r->findings == unreachable) {
		*msg_r = xasprintf("%zu nodes could not be reached; %zu sites "
		    "that answered agree on %llu users", unreachable, sites,
		    (unsigned long long)local->users);
		return CTL_TEMP;
	}
	*msg_r = xasprintf("%zu problems found (%zu nodes unreachable)",
	    r->findings - unreachable, unreachable);
	return CTL_FAILED;
}
