/* store_verify: every stored record checked again against the trust
 * rule (trust.h), signatures on all cores while the walk goes on. */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "mm_log.h"
#include "mm_parallel.h"
#include "mm_util.h"
#include "store_int.h"
#include "trust.h"

#define VERIFY_CHUNK 4096	/* store_verify: records per parallel round */

/* A round of store_verify's signature checks. Worker threads and the
 * walking thread take jobs by index until none are left. */
struct vround {
	struct vjob *jobs;
	char (*names)[RECORD_USER_MAX + 1];
	size_t n;
	struct mm_parallel *run;	/* checking, until vround_finish */
};

/* What store_verify knows of one key, for the trust rule; sorted by id
 * as LMDB is. */
struct vcert {
	uint8_t id[DKEY_ID_LEN];
	struct record_cert cert;
	bool held;		/* a certificate of this key decodes */
	bool root_signed;
	bool revoked;
};

struct vstate {
	struct store *st;
	uint64_t now;
	MDB_txn *txn;
	store_bad_cb cb;
	void *arg;
	struct store_verify_report *rep;
	struct vcert *certs;
	size_t ncerts;
	uint8_t root[DKEY_PK_LEN];
	int have_root;
	/* user records waiting for their signatures to be checked: one
	 * round fills while the one before is checked */
	struct vround rounds[2], *fill, *busy;
};

static void
bad(struct vstate *vs, const char *what, const char *reason)
{
	vs->rep->bad++;
	if (vs->cb != NULL)
		vs->cb(what, reason, vs->arg);
}

static void
bad_user(struct vstate *vs, const char *user, const char *reason)
{
	char *what = xasprintf("user %s", user);

	bad(vs, what, reason);
	free(what);
}

static void
bad_key(struct vstate *vs, const char *kind, const uint8_t *id,
    const char *reason)
{
	char hex[DKEY_ID_HEX_LEN + 1], *what;

	dkey_id_hex(id, hex);
	what = xasprintf("%s %s", kind, hex);
	bad(vs, what, reason);
	free(what);
}

static int
vcert_cmp(const void *a, const void *b)
{
	return memcmp(a, ((const struct vcert *)b)->id, DKEY_ID_LEN);
}

static struct vcert *
vcert_find(struct vstate *vs, const uint8_t id[DKEY_ID_LEN])
{
	return bsearch(id, vs->certs, vs->ncerts, sizeof(*vs->certs),
	    vcert_cmp);
}

/* Walks dbi from the entry after from (from NULL: all of it), calling fn
 * for each entry, at most max of them (0: no limit); from moves past
 * each. 1 stopped at max, 0 at the end, -1 on an LMDB error. */
static int
vwalk(struct vstate *vs, int dbi,
    void (*fn)(struct vstate *, const MDB_val *, const MDB_val *),
    struct store_cursor *from, size_t max)
{
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	size_t n = 0;
	int mrc;

	if ((mrc = mdb_cursor_open(vs->txn, vs->st->dbi[dbi], &cur)) != 0)
		goto fail;
	for (mrc = store_cursor_first(cur, from, &key, &val); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (max > 0 && n == max) {
			mdb_cursor_close(cur);
			return 1;
		}
		if (from != NULL)
			store_cursor_set(from, &key);
		fn(vs, &key, &val);
		n++;
	}
	mdb_cursor_close(cur);
	if (mrc == MDB_NOTFOUND)
		return 0;
fail:
	log_warnx("- dir store verify path=%s db=%s error=\"%s\"",
	    vs->st->path, store_dbi_names[dbi], mdb_strerror(mrc));
	return -1;
}

static void
v_cert(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct vcert *c = &vs->certs[vs->ncerts++];
	struct record r;
	const char *why = NULL;

	memset(c, 0, sizeof(*c));
	vs->rep->checked++;
	if (key->mv_size != DKEY_ID_LEN) {
		vs->ncerts--;
		bad(vs, "cert entry", "key is not a key id");
		return;
	}
	memcpy(c->id, key->mv_data, DKEY_ID_LEN);
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_CERT) {
		bad_key(vs, "cert", c->id, why != NULL ? why : "not a CERT");
		return;
	}
	{
		uint8_t id[DKEY_ID_LEN];

		dkey_id(r.u.cert.pk, id);
		if (memcmp(id, c->id, DKEY_ID_LEN) != 0) {
			bad_key(vs, "cert", c->id, "stored under another id");
			return;
		}
	}
	c->cert = r.u.cert;
	c->held = true;
	c->root_signed = vs->have_root && record_verify(&r, vs->root) == 0;
	if (!c->root_signed)
		bad_key(vs, "cert", c->id, "not signed by the root key");
}

static void
v_revoke(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct record r;
	struct vcert *c;
	const char *why = NULL;

	vs->rep->checked++;
	if (key->mv_size != DKEY_ID_LEN) {
		bad(vs, "revoked entry", "key is not a key id");
		return;
	}
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_REVOKE ||
	    memcmp(r.u.revoke.key_id, key->mv_data, DKEY_ID_LEN) != 0) {
		bad_key(vs, "revoke", key->mv_data,
		    why != NULL ? why : "not a REVOKE for this key");
		return;
	}
	if (!vs->have_root || record_verify(&r, vs->root) < 0) {
		bad_key(vs, "revoke", key->mv_data,
		    "not signed by the root key");
		return;
	}
	if ((c = vcert_find(vs, key->mv_data)) != NULL)
		c->revoked = true;
}

/* The signer of a record kept in the store, by the trust rule
 * (TRUST_USE_KEPT: it was accepted while its key held, so expiry does not
 * count): NULL and *c_r, else a reason. */
static const char *
v_chain(struct vstate *vs, const uint8_t id[DKEY_ID_LEN], const char *site,
    const char *name, const struct vcert **c_r)
{
	const struct vcert *c = vcert_find(vs, id);
	struct trust_facts f;

	memset(&f, 0, sizeof(f));
	f.root_pk = vs->have_root ? vs->root : NULL;
	if (c != NULL && c->held) {
		f.cert = &c->cert;
		f.root_signed = c->root_signed;
		f.revoked = c->revoked;
	}
	switch (trust_decide(&f, id, NULL, TRUST_USE_KEPT, site, name,
	    vs->now)) {
	case TRUST_OK:
		*c_r = c;
		return NULL;
	case TRUST_REVOKED:
		return "signed by a revoked key";
	case TRUST_WRONG_ROLE:
		return "signed by a key whose role signs no records";
	case TRUST_WRONG_SITE:
		return "signer not certified for the site";
	case TRUST_WRONG_NAME:
		return "origin is not the signer's certified name";
	default:
		return "signed by an uncertified key";
	}
}

static void
vround_work(size_t begin, size_t end, void *arg)
{
	struct vround *vr = arg;
	size_t i;

	for (i = begin; i < end; i++) {
		struct vjob *j = &vr->jobs[i];

		j->ok = dkey_verify(j->pk, RECORD_SIG_PREFIX, j->body,
		    j->body_len, j->sig) == 0;
	}
}

/* Starts checking vr on the other cores; the walk goes on meanwhile. */
static void
vround_start(struct vround *vr)
{
	vr->run = mm_parallel_start(vr->n, VERIFY_THREADS_MAX, vround_work,
	    vr);
}

/* Takes a share of what is left of vr, waits for the rest, reports. */
static void
vround_finish(struct vstate *vs, struct vround *vr)
{
	size_t i;

	mm_parallel_join(vr->run);
	vr->run = NULL;
	for (i = 0; i < vr->n; i++) {
		if (!vr->jobs[i].ok)
			bad_user(vs, vr->names[i], "bad signature");
	}
	vr->n = 0;
}

/* The filling round is full (or the walk is over): the round before is
 * finished, this one started. */
static void
v_flush(struct vstate *vs)
{
	struct vround *vr = vs->fill;

	if (vs->busy != NULL) {
		vround_finish(vs, vs->busy);
		vs->busy = NULL;
	}
	if (vr->n == 0)
		return;
	vround_start(vr);
	vs->busy = vr;
	vs->fill = vr == &vs->rounds[0] ? &vs->rounds[1] : &vs->rounds[0];
}

/* env is in the map, which outlives the queue; r does not. The signature
 * ends a canonical envelope. */
static void
v_queue(struct vstate *vs, const struct record *r, const MDB_val *env,
    const uint8_t *pk, const char *name)
{
	struct vround *vr = vs->fill;
	struct vjob *j = &vr->jobs[vr->n];

	j->body = r->body;
	j->body_len = r->body_len;
	j->sig = (const uint8_t *)env->mv_data + env->mv_size - DKEY_SIG_LEN;
	memcpy(j->pk, pk, DKEY_PK_LEN);
	j->have_pk = 1;
	j->ok = 0;
	memcpy(vr->names[vr->n++], name, RECORD_USER_MAX + 1);
	if (vr->n == VERIFY_CHUNK)
		v_flush(vs);
}

static void
v_user(struct vstate *vs, const MDB_val *key, const MDB_val *val)
{
	struct record r, t;
	const struct vcert *c = NULL, *tc = NULL;
	const struct record_user *u = &r.u.user;
	const char *why = NULL;
	struct hwm h;
	struct store_route route;
	MDB_val hv;
	uint8_t bh[HWM_HASH_LEN];
	char name[RECORD_USER_MAX + 1];
	size_t klen = key->mv_size > RECORD_USER_MAX ? RECORD_USER_MAX :
	    key->mv_size;

	vs->rep->checked++;
	memcpy(name, key->mv_data, klen);
	name[klen] = '\0';
	if (record_decode(val->mv_data, val->mv_size, &r, &why) < 0 ||
	    r.kind != RECORD_USER) {
		bad_user(vs, name, why != NULL ? why : "not a USER record");
		return;
	}
	if (key->mv_size != strlen(u->user) ||
	    memcmp(key->mv_data, u->user, key->mv_size) != 0) {
		bad_user(vs, name, "stored under another name");
		return;
	}
	/* A hand-over names the new owner, not its signer's site. */
	if ((why = v_chain(vs, r.key_id, u->state == USTATE_TRANSFER ? NULL :
	    u->site, u->origin, &c)) != NULL) {
		bad_user(vs, name, why);
		return;
	}
	if (u->state != USTATE_TRANSFER && u->transfer_len > 0) {
		if (record_decode(u->transfer, u->transfer_len, &t, NULL) < 0 ||
		    v_chain(vs, t.key_id, NULL, NULL, &tc) != NULL ||
		    record_verify(&t, tc->cert.pk) < 0) {
			bad_user(vs, name, "invalid transfer");
			return;
		}
	}
	if (mdb_get(vs->txn, vs->st->dbi[DBI_HWM], (MDB_val *)key, &hv) != 0
	    || hwm_parse(&hv, &h) < 0) {
		bad_user(vs, name, "no high-water mark");
		return;
	}
	body_hash(&r, bh);
	if (h.epoch != u->epoch || h.seq != u->seq ||
	    memcmp(h.hash, bh, HWM_HASH_LEN) != 0 ||
	    strcmp(h.site, u->site) != 0) {
		bad_user(vs, name, "high-water mark does not match");
		return;
	}
	if (mdb_get(vs->txn, vs->st->dbi[DBI_ROUTES], (MDB_val *)key,
	    &hv) != 0 ||
	    store_route_decode(hv.mv_data, hv.mv_size, &route) < 0 ||
	    route.state != u->state || strcmp(route.site, u->site) != 0 ||
	    strcmp(route.backend, u->backend) != 0) {
		bad_user(vs, name, "routing index does not match the record");
		return;
	}
	v_queue(vs, &r, val, c->cert.pk, name);
}

/* Starts a verify: a read transaction, the trust state from the
 * certificates and revocations (checked and counted in rep when report,
 * else read quietly). 0, or -1 (v_close all the same). */
static int
v_open(struct vstate *vs, struct store *st, uint64_t now,
    struct store_verify_report *rep, store_bad_cb cb, void *arg, bool report)
{
	struct store_verify_report quiet;
	MDB_stat ms;
	int g, i, rc = -1;

	memset(vs, 0, sizeof(*vs));
	memset(&quiet, 0, sizeof(quiet));
	vs->st = st;
	vs->now = now;
	vs->cb = report ? cb : NULL;
	vs->arg = arg;
	vs->rep = report ? rep : &quiet;
	if (store_walk_begin(st, &vs->txn) < 0) {
		vs->txn = NULL;
		goto done;
	}
	if ((g = get_root(vs->txn, st, vs->root)) < 0)
		goto done;
	vs->have_root = g == 1;
	if (mdb_stat(vs->txn, st->dbi[DBI_CERTS], &ms) != 0)
		goto done;
	vs->certs = xcalloc(ms.ms_entries + 1, sizeof(*vs->certs));
	for (i = 0; i < 2; i++) {
		vs->rounds[i].jobs = xcalloc(VERIFY_CHUNK,
		    sizeof(*vs->rounds[i].jobs));
		vs->rounds[i].names = xcalloc(VERIFY_CHUNK,
		    sizeof(*vs->rounds[i].names));
	}
	vs->fill = &vs->rounds[0];
	if (vwalk(vs, DBI_CERTS, v_cert, NULL, 0) < 0 ||
	    vwalk(vs, DBI_REVOKED, v_revoke, NULL, 0) < 0)
		goto done;
	rc = 0;
done:
	vs->cb = cb;
	vs->rep = rep;
	return rc;
}

/* The user records walked are checked (their rounds finished); with
 * last, the evidence is counted. 0, or -1. */
static int
v_finish(struct vstate *vs, bool last)
{
	uint64_t kinds[STORE_EVIDENCE_KINDS];

	v_flush(vs);		/* starts the last round */
	v_flush(vs);		/* and finishes it */
	if (!last)
		return 0;
	if (store_evidence_walk(vs->st, vs->txn, NULL, NULL, kinds) != 0)
		return -1;
	vs->rep->equivocations = kinds[EVIDENCE_EQUIVOCATION];
	return 0;
}

static void
v_close(struct vstate *vs)
{
	int i;

	/* Threads still checking a round point into the transaction. */
	if (vs->busy != NULL)
		vround_finish(vs, vs->busy);
	free(vs->certs);
	for (i = 0; i < 2; i++) {
		free(vs->rounds[i].jobs);
		free(vs->rounds[i].names);
	}
	if (vs->txn != NULL)
		store_walk_end(vs->st, vs->txn);
}

int
store_verify(struct store *st, uint64_t now,
    struct store_verify_report *rep_r, store_bad_cb cb, void *arg)
{
	struct vstate vs;
	int rc = -1;

	memset(rep_r, 0, sizeof(*rep_r));
	if (v_open(&vs, st, now, rep_r, cb, arg, true) == 0 &&
	    vwalk(&vs, DBI_USERS, v_user, NULL, 0) == 0 &&
	    v_finish(&vs, true) == 0)
		rc = 0;
	v_close(&vs);
	return rc;
}

int
store_verify_slice(struct store *st, uint64_t now, struct store_cursor *cur,
    size_t max, struct store_verify_report *rep_r, store_bad_cb cb,
    void *arg)
{
	struct vstate vs;
	bool first = !cur->started;
	int rc = -1, w;

	if (first)
		memset(rep_r, 0, sizeof(*rep_r));
	if (v_open(&vs, st, now, rep_r, cb, arg, first) == 0 &&
	    (w = vwalk(&vs, DBI_USERS, v_user, cur, max == 0 ? 1 : max)) >= 0 &&
	    v_finish(&vs, w == 0) == 0)
		rc = w;
	v_close(&vs);
	return rc;
}
