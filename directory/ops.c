/* The directory's control requests: the handlers the agent runs for
 * mmctl over the control socket and that `mmctl --direct` runs itself when
 * no node is up, so that both paths give the same answers; opening the
 * store for them; the trust checks a node runs before it starts; and the
 * accept rule for the records peers gossip. */
#include "ops.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dir.h"
#include "gossip.h"
#include "mm_log.h"
#include "mm_util.h"
#include "record.h"
#include "store.h"
#include "trust.h"

#define TIME_TEXT_LEN 32
/* Records a slice of a listing or export examines at most (a filtered
 * listing may find few rows among many records). */
#define OPS_SLICE_RECORDS 50000
#define OPS_VERIFY_SLICE 1024	/* records whose signatures a slice checks */
#define OPS_STATS_SLICE 200000	/* records a slice of stats counts */
#define OPS_SCRUB_SLICE 100000	/* records a slice of a local scrub checks */

struct ops {
	const struct mm_config *conf;
	struct store *st;
	struct dkey key;
	struct store_signer sg;
	struct gossip *g;	/* the agent process with peer-listen only */
	uint64_t published;	/* own origin_seq gossiped up to */
	/* A request's copy (ops_req): it has no gossip, so a certificate or
	 * revocation it stores waits in held for ops_req_publish. */
	bool view;
	uint8_t *held;
	size_t held_len;
};

/* A request run in slices (ops.h). view is what its handlers get: the
 * ops' config and key, the slice's store, no gossip. */
struct ops_req {
	struct ops view;
	struct store *own;		/* the ops' store: for st NULL */
	const struct op *e;		/* NULL: unknown */
	char *op;
	size_t argc;
	char **argv;
	uint64_t now;
	/* where a request in slices is */
	int phase;
	struct store_cursor cur;
	uint64_t n;			/* rows (or tombstones) so far */
	struct store_verify_report vrep;
	size_t slice_rows, slice_records;	/* 0: the op's own */
};

static void publish_own(struct ops *o);

/* ---- helpers -------------------------------------------------------- */

static const char *
fmt_time(uint64_t t, char buf[TIME_TEXT_LEN])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
		snprintf(buf, TIME_TEXT_LEN, "-");
		return buf;
	}
	strftime(buf, TIME_TEXT_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static void
rows_addv(struct ctl_rows *rows, size_t n, ...)
{
	const char *cols[CTL_COLS_MAX];
	va_list ap;
	size_t i;

	va_start(ap, n);
	for (i = 0; i < n && i < CTL_COLS_MAX; i++)
		cols[i] = va_arg(ap, const char *);
	va_end(ap);
	/* Every column comes from the store or the config, which hold
	 * shorter strings than the codec allows. */
	(void)ctl_rows_add(rows, i, cols);
}

static enum ctl_status
accept_status(enum accept_result r)
{
	switch (r) {
	case ACCEPT_STORED:
	case ACCEPT_DUPLICATE:
	case ACCEPT_EQUIVOCATION:
		return CTL_OK;
	case REJECT_STORE:
		return CTL_TEMP;
	default:
		return CTL_FAILED;
	}
}

static const char *const user_header[] = { "user", "site", "backend",
	"state", "epoch", "seq", "origin", "origin_seq", "time", "key_id",
	"target_site" };

static void
user_row(struct ctl_rows *rows, const struct record_user *u,
    const uint8_t key_id[DKEY_ID_LEN])
{
	char epoch[24], seq[24], oseq[24], tbuf[TIME_TEXT_LEN];
	char kid[DKEY_ID_HEX_LEN + 1];

	snprintf(epoch, sizeof(epoch), "%llu", (unsigned long long)u->epoch);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)u->seq);
	snprintf(oseq, sizeof(oseq), "%llu",
	    (unsigned long long)u->origin_seq);
	dkey_id_hex(key_id, kid);
	rows_addv(rows, 11, u->user, u->site, u->backend,
	    record_state_name(u->state), epoch, seq, u->origin, oseq,
	    fmt_time(u->timestamp, tbuf), kid, u->target_site);
}

/* The current record of a normalised user as a row; 1, 0 none, -1. */
static int
user_lookup_row(struct ops *o, const char *user, struct ctl_rows *rows,
    struct record_user *u_r)
{
	struct record r;
	uint8_t *buf = NULL;
	size_t len = 0;
	const char *why;
	int found;

	found = store_get_user(o->st, user, u_r, &buf, &len);
	if (found == 1) {
		if (record_decode(buf, len, &r, &why) != 0) {
			free(buf);
			return -1;
		}
		if (rows->n == 0)
			(void)ctl_rows_add(rows, MM_ARRAY_SIZE(user_header),
			    user_header);
		user_row(rows, u_r, r.key_id);
	}
	free(buf);
	return found;
}

/* ---- trust state ---------------------------------------------------- */

/* A certificate's state as the keys listing and preflight name it, by the
 * trust rule: one without a valid root signature, or without a root to
 * check it, is "bad-signature". */
static const char *
key_state(enum trust_verdict v)
{
	switch (v) {
	case TRUST_OK:
		return "valid";
	case TRUST_REVOKED:
		return "revoked";
	case TRUST_EXPIRED:
		return "expired";
	default:
		return "bad-signature";
	}
}

int
ops_keys_rows(const char *path, uint64_t now, ops_rows_cb cb, void *arg,
    char **errstr_r)
{
	struct ops o;
	struct ops_req *r;
	struct ctl_rows rows;
	enum ctl_status status = CTL_OK;
	char *msg = NULL;
	int more;

	memset(&o, 0, sizeof(o));
	if ((o.st = store_open(path, STORE_READONLY, errstr_r)) == NULL)
		return -1;
	r = ops_req_new(&o, "keys-list", 0, NULL);
	r->now = now;
	do {
		ctl_rows_init(&rows);
		more = ops_req_run(r, NULL, &rows, &status, &msg);
		cb(arg, &rows);
		ctl_rows_clear(&rows);
	} while (more);
	ops_req_free(r);
	store_close(o.st);
	free(msg);
	if (status != CTL_OK) {
		*errstr_r = xasprintf("directory %s: cannot read the "
		    "certificates", path);
		return -1;
	}
	return 0;
}

uint64_t
ops_root_next_seq(const char *path, const char *origin)
{
	struct store *st;
	uint64_t seq = 1;
	char *err = NULL;

	if ((st = store_open(path, STORE_READONLY, &err)) == NULL) {
		free(err);
		return 1;
	}
	if (store_next_origin_seq(st, origin, &seq) != 0)
		seq = 1;
	store_close(st);
	return seq;
}

/* ---- opening the store ---------------------------------------------- */

int
ops_load_root_public(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r)
{
	char *err = NULL;

	if (dkey_load_public(conf->root_key, key_r, &err) == 0)
		return 0;
	/* The key loader's advice fits a secret key; a public one only
	 * needs to be readable. */
	if (access(conf->root_key, R_OK) != 0 && errno == EACCES)
		*errstr_r = xasprintf("root-key %s: permission denied; it is a "
		    "public key and needs only to be readable by the user "
		    "this program runs as (and its directories searchable): "
		    "chmod 644 %s", conf->root_key, conf->root_key);
	else
		*errstr_r = xasprintf("root-key %s: %s", conf->root_key, err);
	free(err);
	return -1;
}

/* Sets the root from the root-key file when the store has none, and
 * refuses a store that holds another root. */
static int
ensure_root(const struct mm_config *conf, struct store *st, char **errstr_r)
{
	uint8_t have[DKEY_PK_LEN];
	char a[DKEY_ID_HEX_LEN + 1], b[DKEY_ID_HEX_LEN + 1];
	uint8_t ida[DKEY_ID_LEN], idb[DKEY_ID_LEN];
	struct dkey root;
	char *err = NULL;
	int r, rc = -1;

	memset(&root, 0, sizeof(root));
	if (ops_load_root_public(conf, &root, errstr_r) != 0)
		goto done;
	if ((r = store_get_root(st, have)) < 0) {
		*errstr_r = xasprintf("directory %s: cannot read the root "
		    "key", conf->directory);
		goto done;
	}
	if (r == 0) {
		if (store_set_root(st, root.pk, &err) != 0) {
			*errstr_r = xasprintf("directory %s: %s",
			    conf->directory, err);
			goto done;
		}
		log_info("- dir root-set key_id=%s",
		    (dkey_id_hex(root.id, a), a));
	} else if (memcmp(have, root.pk, DKEY_PK_LEN) != 0) {
		dkey_id(have, ida);
		dkey_id(root.pk, idb);
		dkey_id_hex(ida, a);
		dkey_id_hex(idb, b);
		*errstr_r = xasprintf("directory %s belongs to root key %s, "
		    "but root-key %s is %s: wrong root-key or wrong "
		    "directory", conf->directory, a, conf->root_key, b);
		goto done;
	}
	rc = 0;
done:
	free(err);
	return rc;
}

static enum ctl_status
open_status(const char *dir)
{
	if (access(dir, W_OK) != 0 && (errno == EACCES || errno == EPERM ||
	    errno == EROFS))
		return CTL_PERM;
	return CTL_FAILED;
}

struct ops *
ops_new(const struct mm_config *conf, const struct dkey *key,
    enum ctl_status *status_r, char **errstr_r)
{
	struct ops *o = xcalloc(1, sizeof(*o));
	char *err = NULL;

	o->conf = conf;
	*status_r = CTL_FAILED;
	if (key != NULL)
		o->key = *key;
	o->sg.key = &o->key;
	o->sg.site = conf->site;
	o->sg.origin = conf->node_name;
	if (mkdir(conf->directory, 0700) != 0 && errno != EEXIST) {
		*status_r = errno == EACCES ? CTL_PERM : CTL_FAILED;
		*errstr_r = xasprintf("directory %s: %s", conf->directory,
		    strerror(errno));
		goto fail;
	}
	if ((o->st = store_open(conf->directory, STORE_WRITE, &err)) == NULL) {
		*status_r = open_status(conf->directory);
		*errstr_r = xasprintf("%s%s", err, *status_r == CTL_PERM ?
		    " (permission denied: run as the node's user or root)" :
		    "");
		free(err);
		goto fail;
	}
	if (ensure_root(conf, o->st, errstr_r) != 0)
		goto fail;
	return o;
fail:
	ops_free(o);
	return NULL;
}

void
ops_free(struct ops *o)
{
	if (o == NULL)
		return;
	store_close(o->st);
	dkey_clear(&o->key);
	free(o);
}

struct store *
ops_store(struct ops *o)
{
	return o->st;
}

int
ops_preflight(const struct mm_config *conf, const struct dkey *key,
    char **errstr_r)
{
	struct ops *o = NULL;
	enum ctl_status st;
	struct trust_ctx t;
	struct record_cert c;
	enum trust_verdict v;
	char kid[DKEY_ID_HEX_LEN + 1];
	uint64_t now = (uint64_t)time(NULL);
	int rc = -1;

	dkey_id_hex(key->id, kid);
	/* Root set, store writable; closed before return (nothing of the
	 * store may cross the fork that follows). */
	if ((o = ops_new(conf, key, &st, errstr_r)) == NULL)
		goto done;
	/* The key may run a node of this site under node-name: records
	 * carry node-name as their origin, and the accept rule wants it to
	 * be the name in the signer's certificate. */
	memset(&c, 0, sizeof(c));
	store_trust_init(o->st, &t);
	v = trust_check(&t, key->id, key->pk, TRUST_USE_NODE, conf->site,
	    conf->node_name, now, &c);
	trust_clear(&t);
	switch (v) {
	case TRUST_OK:
		break;
	case TRUST_STORE_ERROR:
		*errstr_r = xasprintf("directory %s: cannot read the "
		    "certificates", conf->directory);
		goto done;
	case TRUST_WRONG_NAME:
		*errstr_r = xasprintf("node-key %s (key id %s) is certified "
		    "as %s but node-name is %s (set node-name %s, or certify "
		    "the key with --name %s)", conf->node_key, kid, c.name,
		    conf->node_name, c.name, conf->node_name);
		goto done;
	case TRUST_REVOKED:
		*errstr_r = xasprintf("node-key %s (key id %s): its "
		    "certificate for site %s is revoked (make a new key with: "
		    "mmctl keys new FILE, and certify that)", conf->node_key,
		    kid, c.site);
		goto done;
	case TRUST_EXPIRED:
	case TRUST_BAD_ROOT_SIGNATURE:
	case TRUST_NO_ROOT:
		*errstr_r = xasprintf("node-key %s (key id %s): its "
		    "certificate for site %s is %s (certify it again with: "
		    "mmctl -c %s keys certify --root ROOT.key --pub %s.pub "
		    "--role node --site %s --name %s)", conf->node_key, kid,
		    c.site, key_state(v), conf->path, conf->node_key,
		    conf->site, conf->node_name);
		goto done;
	default:
		*errstr_r = xasprintf("node-key %s (key id %s) is not "
		    "certified for site %s (certify it with: mmctl -c %s keys "
		    "certify --root ROOT.key --pub %s.pub --role node --site "
		    "%s --name %s)", conf->node_key, kid, conf->site,
		    conf->path, conf->node_key, conf->site, conf->node_name);
		goto done;
	}
	/* Until gossip has compared with a peer, this node may lack users:
	 * the proxy workers, which start before the agent's first word,
	 * answer unknown users with a temporary error meanwhile (peers.c
	 * renews or clears this). */
	if (conf->peer_listen_host != NULL && conf->n_peers > 0 &&
	    store_put_behind(o->st, true, now + OPS_STARTUP_BEHIND_S) != 0) {
		*errstr_r = xasprintf("%s: cannot write the store",
		    conf->directory);
		goto done;
	}
	rc = 0;
done:
	ops_free(o);
	return rc;
}

/* ---- request handlers ----------------------------------------------- */

/* Who may run a request over the control socket: anyone who can connect
 * may read; a change needs root or admin-group. Only OP_READ is let
 * through, so a value that is neither (0) counts as a write. */
enum op_access {
	OP_READ = 1,
	OP_WRITE,		/* changes the store or the node */
};

struct op {
	const char *name;
	enum op_access access;	/* before args_min: a missing one fails
				 * to compile */
	size_t args_min, args_max;
	enum ctl_status (*run)(struct ops *, size_t, char *const *, char **,
	    struct ctl_rows *);
	/* Instead of run, for an answer that grows with the store: the next
	 * slice; 1 more to come, 0 done (status and message set). */
	int (*slice)(struct ops *, struct ops_req *, struct ctl_rows *,
	    enum ctl_status *, char **);
	bool loop;		/* reads the loop's state (gossip) */
};

static int
normalise(struct ops *o, const char *user, char out[RECORD_USER_MAX + 1])
{
	char buf[DIR_USER_MAX + 1];

	if (dir_normalise_user(o->conf, user, buf, sizeof(buf)) != 0 ||
	    strlen(buf) > RECORD_USER_MAX)
		return -1;
	/* The store is keyed by lower-case names whatever user-lowercase
	 * says: two spellings must not become two users. */
	for (char *p = buf; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	mm_strlcpy(out, buf, RECORD_USER_MAX + 1);
	return 0;
}

static void
log_change(const char *what, const char *user, const char *backend,
    enum user_state state, struct ops *o, enum accept_result res)
{
	struct record_user u;
	char ub[4 * RECORD_USER_MAX + 1], bb[4 * RECORD_NAME_MAX + 1];
	int found;

	memset(&u, 0, sizeof(u));
	found = store_get_user(o->st, user, &u, NULL, NULL);
	log_info("- dir %s user=%s backend=%s state=%s epoch=%llu seq=%llu "
	    "result=%s", what, mm_log_escape(user, ub, sizeof(ub)),
	    mm_log_escape(backend, bb, sizeof(bb)), record_state_name(state),
	    found == 1 ? (unsigned long long)u.epoch : 0ULL,
	    found == 1 ? (unsigned long long)u.seq : 0ULL,
	    store_accept_name(res));
}

/* Why a change was not stored, for the operator: a store failure names
 * the system error (a full disk says so). */
static const char *
accept_why(const struct ops *o, enum accept_result res)
{
	if (res == REJECT_STORE && store_last_error(o->st) != NULL)
		return store_last_error(o->st);
	return store_accept_name(res);
}

/* Writes one user change; the answer is the record as stored. */
static enum ctl_status
put_user(struct ops *o, const char *what, const char *user,
    const char *backend, enum user_state state, const char *target,
    char **msg_r, struct ctl_rows *rows)
{
	struct record_user u;
	enum accept_result res;
	enum ctl_status status;

	res = store_put_user(o->st, &o->sg, user, backend, state, target,
	    (uint64_t)time(NULL));
	log_change(what, user, backend, state, o, res);
	publish_own(o);
	status = accept_status(res);
	if (status != CTL_OK) {
		*msg_r = xasprintf("%s: %s", user, accept_why(o, res));
		return status;
	}
	if (user_lookup_row(o, user, rows, &u) != 1) {
		*msg_r = xasprintf("%s: stored but cannot be read back", user);
		return CTL_TEMP;
	}
	*msg_r = xasprintf("%s: %s", user, accept_why(o, res));
	return CTL_OK;
}

static enum ctl_status
check_backend(struct ops *o, const char *backend, char **msg_r)
{
	if (mm_config_backend(o->conf, backend) == NULL ||
	    !record_name_valid(backend)) {
		*msg_r = xasprintf("'%s' is not a back end of site %s (see "
		    "backend in %s)", backend, o->conf->site, o->conf->path);
		return CTL_FAILED;
	}
	return CTL_OK;
}

/* Normalises NAME into USER and reads its record into U; *live_r tells
 * whether the user exists and is not deleted. CTL_OK, or the failure
 * with *msg_r set. */
static enum ctl_status
user_read(struct ops *o, const char *name, char user[RECORD_USER_MAX + 1],
    struct record_user *u, bool *live_r, char **msg_r)
{
	int r;

	if (normalise(o, name, user) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", name);
		return CTL_FAILED;
	}
	r = store_get_user(o->st, user, u, NULL, NULL);
	if (r < 0) {
		*msg_r = xasprintf("%s: cannot read the store", user);
		return CTL_TEMP;
	}
	*live_r = r == 1 && u->state != USTATE_DELETED;
	return CTL_OK;
}

static enum ctl_status
op_user_add(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if (check_backend(o, argv[1], msg_r) != CTL_OK)
		return CTL_FAILED;
	if ((st = user_read(o, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (live) {
		*msg_r = xasprintf("%s exists (site %s, back end %s): use "
		    "user set", user, u.site, u.backend);
		return CTL_FAILED;
	}
	return put_user(o, "user-add", user, argv[1], USTATE_ACTIVE, "",
	    msg_r, rows);
}

static enum ctl_status
op_user_set(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	enum user_state state = USTATE_ACTIVE;
	const char *target = argv[3];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if (check_backend(o, argv[1], msg_r) != CTL_OK)
		return CTL_FAILED;
	if (argv[2][0] != '\0' && (record_state_parse(argv[2], &state) != 0 ||
	    (state != USTATE_ACTIVE && state != USTATE_MOVING &&
	    state != USTATE_FROZEN))) {
		*msg_r = xasprintf("state '%s': active, moving or frozen",
		    argv[2]);
		return CTL_USAGE;
	}
	if (state == USTATE_ACTIVE && target[0] != '\0') {
		*msg_r = xasprintf("--target goes with --state moving or "
		    "frozen");
		return CTL_USAGE;
	}
	if (state != USTATE_ACTIVE && (!record_site_valid(target) ||
	    strcmp(target, o->conf->site) == 0)) {
		*msg_r = xasprintf("state %s needs --target SITE, another "
		    "site than %s", record_state_name(state), o->conf->site);
		return CTL_USAGE;
	}
	if ((st = user_read(o, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (!live) {
		*msg_r = xasprintf("%s: no such user (create it with user "
		    "add)", user);
		return CTL_FAILED;
	}
	return put_user(o, "user-set", user, argv[1], state, target, msg_r,
	    rows);
}

static enum ctl_status
op_user_del(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if ((st = user_read(o, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (!live) {
		*msg_r = xasprintf("%s: no such user", user);
		return CTL_FAILED;
	}
	return put_user(o, "user-del", user, u.backend, USTATE_DELETED, "",
	    msg_r, rows);
}

/* The way out of a user two sites own (store_resolve): at the site that
 * gives it up, then at the site that keeps it. */
static enum ctl_status
op_user_resolve(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1], ub[4 * RECORD_USER_MAX + 1];
	struct store_resolution out;
	struct record_user u;
	const char *winner = argv[1];

	(void)argc;
	if (normalise(o, argv[0], user) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", argv[0]);
		return CTL_FAILED;
	}
	if (!record_site_valid(winner)) {
		*msg_r = xasprintf("'%s' is not a valid site name", winner);
		return CTL_FAILED;
	}
	(void)store_resolve(o->st, &o->sg, user, winner,
	    (uint64_t)time(NULL), &out);
	log_info("- dir user-resolve user=%s winner=%s epoch=%llu "
	    "result=%s", mm_log_escape(user, ub, sizeof(ub)), winner,
	    (unsigned long long)out.epoch, store_accept_name(out.res));
	if (out.res != ACCEPT_STORED) {
		*msg_r = xasprintf("%s: %s", user, out.res == REJECT_STORE ?
		    accept_why(o, out.res) : out.why);
		return accept_status(out.res) == CTL_TEMP ? CTL_TEMP :
		    CTL_FAILED;
	}
	publish_own(o);
	if (user_lookup_row(o, user, rows, &u) != 1) {
		*msg_r = xasprintf("%s: stored but cannot be read back", user);
		return CTL_TEMP;
	}
	if (out.released)
		*msg_r = xasprintf("%s: released to site %s at epoch %llu; "
		    "this site routes it there from now on. Complete with "
		    "`mmctl user resolve %s %s` at a node of %s. Mail that "
		    "back end %s took for %s while the sites disagreed is "
		    "still there: copy it to %s.", user, winner,
		    (unsigned long long)out.epoch, user, winner, winner,
		    out.backend, user, winner);
	else
		*msg_r = xasprintf("%s: kept by site %s at epoch %llu, "
		    "carrying %s's release; every node takes it. Mail the "
		    "other site's back end took for %s while the sites "
		    "disagreed is still there: copy it here.", user, winner,
		    (unsigned long long)out.epoch, out.other, user);
	return CTL_OK;
}

static enum ctl_status
op_user_show(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	int r;

	if (normalise(o, argv[0], user) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", argv[0]);
		return CTL_FAILED;
	}
	r = user_lookup_row(o, user, rows, &u);
	if (r < 0) {
		*msg_r = xasprintf("%s: cannot read the store", user);
		return CTL_TEMP;
	}
	if (r == 0) {
		*msg_r = xasprintf("%s: no such user", user);
		return CTL_FAILED;
	}
	if (u.state == USTATE_DELETED) {
		*msg_r = xasprintf("%s: deleted", user);
		return CTL_FAILED;
	}
	*msg_r = xstrdup("");
	return CTL_OK;
}

/* ---- listings, in slices ------------------------------------------- */

static size_t
slice_rows(const struct ops_req *r)
{
	return r->slice_rows != 0 ? r->slice_rows : OPS_SLICE_ROWS;
}

static size_t
slice_records(const struct ops_req *r, size_t dflt)
{
	return r->slice_records != 0 ? r->slice_records : dflt;
}

/* Whether a slice has rows or records enough. */
static bool
slice_full(const struct ops_req *r, const struct ctl_rows *rows,
    size_t records, size_t max_records)
{
	return rows->n >= slice_rows(r) || rows->bytes >= OPS_SLICE_BYTES ||
	    records >= max_records;
}

struct list_ctx {
	struct ops_req *r;
	struct ctl_rows *rows;
	const char *site;	/* NULL: all */
	bool export;		/* user, backend, state, target only */
	size_t records;		/* examined in this slice */
};

static int
list_cb(const struct record *r, const uint8_t *env, size_t len, void *arg)
{
	struct list_ctx *lc = arg;
	const struct record_user *u = &r->u.user;

	lc->records++;
	if (r->kind == RECORD_USER && u->state != USTATE_DELETED &&
	    (lc->site == NULL || strcmp(u->site, lc->site) == 0)) {
		if (lc->export)
			rows_addv(lc->rows, 4, u->user, u->backend,
			    record_state_name(u->state), u->target_site);
		else
			user_row(lc->rows, u, r->key_id);
		lc->r->n++;
	}
	return slice_full(lc->r, lc->rows, lc->records,
	    slice_records(lc->r, OPS_SLICE_RECORDS));
}

/* The next slice of user-list or export: its rows, from the user after
 * the last one the slice before read. */
static int
list_slice(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r, const char *site, bool export)
{
	static const char *const export_header[] = { "user", "backend",
		"state", "target_site" };
	struct list_ctx lc = { r, rows, site, export, 0 };
	int w;

	if (r->phase == 0) {
		if (export)
			(void)ctl_rows_add(rows, MM_ARRAY_SIZE(export_header),
			    export_header);
		else
			(void)ctl_rows_add(rows, MM_ARRAY_SIZE(user_header),
			    user_header);
		r->phase = 1;
	}
	w = store_foreach_user_from(o->st, &r->cur, list_cb, &lc);
	if (w > 0)
		return 1;
	if (w < 0) {
		*msg_r = xstrdup("cannot read the store");
		*status_r = CTL_TEMP;
		return 0;
	}
	*msg_r = xasprintf("%llu users", (unsigned long long)r->n);
	*status_r = CTL_OK;
	return 0;
}

static int
slice_user_list(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r)
{
	return list_slice(o, r, rows, status_r, msg_r,
	    r->argv[0][0] != '\0' ? r->argv[0] : NULL, false);
}

static int
slice_export(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r)
{
	return list_slice(o, r, rows, status_r, msg_r, o->conf->site, true);
}

/* A row of an import, checked: what to store, or why not. */
struct import_row {
	char user[RECORD_USER_MAX + 1];
	char target[RECORD_SITE_MAX + 1];
	int todo;		/* 1 store, 0 unchanged, -1 refused (why) */
	const char *why;
	size_t item;		/* index in the batch when todo is 1 */
};

/* Checks one (user, backend, state, target) row against this site and the
 * store; returns 1 to store (*it filled), 0 unchanged, -1 refused
 * (r->why) or a store error (CTL_TEMP in *worst_r). */
static int
import_check(struct ops *o, const char *user, const char *b,
    const char *s, const char *target, struct import_row *r,
    struct store_user_item *it, enum ctl_status *worst_r)
{
	enum user_state state = USTATE_ACTIVE;
	struct record_user u;
	char *err = NULL;
	int found;

	r->why = NULL;
	if (normalise(o, user, r->user) != 0)
		r->why = "invalid user name";
	else if (check_backend(o, b, &err) != CTL_OK)
		r->why = "not a back end of this site";
	else if (s[0] != '\0' && (record_state_parse(s, &state) != 0 ||
	    (state != USTATE_ACTIVE && state != USTATE_MOVING &&
	    state != USTATE_FROZEN)))
		r->why = "state is active, moving or frozen";
	else if (state == USTATE_ACTIVE && target[0] != '\0')
		r->why = "a target site goes with moving or frozen only";
	else if (state != USTATE_ACTIVE && (!record_site_valid(target) ||
	    strcmp(target, o->conf->site) == 0))
		r->why = "moving and frozen need a target site, another "
		    "than this one";
	free(err);
	if (r->why != NULL)
		return -1;
	found = store_get_user(o->st, r->user, &u, NULL, NULL);
	if (found < 0) {
		r->why = store_accept_name(REJECT_STORE);
		*worst_r = CTL_TEMP;
		return -1;
	}
	if (found == 1 && u.state != USTATE_DELETED && s[0] == '\0') {
		/* No state given (a popmap line): a user mid-move stays as
		 * it is. */
		state = u.state;
		target = u.target_site;
	}
	if (found == 1 && u.state == state && strcmp(u.site,
	    o->conf->site) == 0 && strcmp(u.backend, b) == 0 &&
	    strcmp(u.target_site, target) == 0)
		return 0;
	mm_strlcpy(r->target, target, sizeof(r->target));
	it->user = r->user;
	it->backend = b;
	it->state = state;
	it->target_site = r->target;
	return 1;
}

/* import-rows (width 3: user, backend, state) and import-users (width 4:
 * and target site): one batch, one write transaction. */
static enum ctl_status
import_batch(struct ops *o, size_t width, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	static const char *const header[] = { "index", "result" };
	struct import_row *r = NULL;
	struct store_user_item *items = NULL;
	enum accept_result *res = NULL;
	enum ctl_status worst = CTL_OK;
	size_t i, n = argc / width, nitems = 0;
	size_t stored = 0, unchanged = 0, failed = 0;
	char idx[24], esc[4 * RECORD_USER_MAX + 1];

	if (argc % width != 0 || n > CTL_IMPORT_ROWS) {
		*msg_r = xasprintf("takes up to %d rows of %zu", CTL_IMPORT_ROWS,
		    width);
		return CTL_USAGE;
	}
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	r = xcalloc(n + 1, sizeof(*r));
	items = xcalloc(n + 1, sizeof(*items));
	res = xcalloc(n + 1, sizeof(*res));
	for (i = 0; i < n; i++) {
		char *const *f = argv + width * i;
		r[i].todo = import_check(o, f[0], f[1], f[2], width > 3 ?
		    f[3] : "", &r[i], &items[nitems], &worst);
		if (r[i].todo == 0)
			unchanged++;
		else if (r[i].todo > 0)
			r[i].item = nitems++;
	}
	store_put_users(o->st, &o->sg, items, nitems, (uint64_t)time(NULL),
	    res);
	publish_own(o);
	for (i = 0; i < n; i++) {
		if (r[i].todo == 0)
			continue;
		if (r[i].todo > 0) {
			enum accept_result e = res[r[i].item];

			if (accept_status(e) == CTL_OK) {
				stored++;
				continue;
			}
			if (accept_status(e) == CTL_TEMP)
				worst = CTL_TEMP;
			r[i].why = accept_why(o, e);
			log_info("- dir user-import user=%s result=%s",
			    mm_log_escape(r[i].user, esc, sizeof(esc)),
			    r[i].why);
		}
		failed++;
		if (worst == CTL_OK)
			worst = CTL_FAILED;
		snprintf(idx, sizeof(idx), "%zu", i);
		rows_addv(rows, 2, idx, r[i].why);
	}
	log_info("- dir user-import rows=%zu stored=%zu unchanged=%zu "
	    "failed=%zu", n, stored, unchanged, failed);
	*msg_r = xasprintf("stored=%zu unchanged=%zu failed=%zu", stored,
	    unchanged, failed);
	free(res);
	free(items);
	free(r);
	return worst;
}

static enum ctl_status
op_import_rows(struct ops *o, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	return import_batch(o, 3, argc, argv, msg_r, rows);
}

static enum ctl_status
op_import_users(struct ops *o, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	return import_batch(o, 4, argc, argv, msg_r, rows);
}

struct verify_ctx {
	struct ctl_rows *rows;
};

static void
verify_cb(const char *what, const char *reason, void *arg)
{
	struct verify_ctx *vc = arg;
	char w[CTL_STR_MAX + 1], r[CTL_STR_MAX + 1];

	mm_strlcpy(w, what, sizeof(w));
	mm_strlcpy(r, reason, sizeof(r));
	rows_addv(vc->rows, 2, w, r);
}

/* verify in slices of OPS_VERIFY_SLICE records: a long verify leaves its
 * thread free for other requests between them, and its faults stream. */
static int
slice_verify(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r)
{
	static const char *const header[] = { "what", "reason" };
	struct store_verify_report *rep = &r->vrep;
	struct verify_ctx vc = { rows };
	int w;

	if (r->phase == 0) {
		(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
		r->phase = 1;
	}
	w = store_verify_slice(o->st, r->now, &r->cur,
	    slice_records(r, OPS_VERIFY_SLICE), rep, verify_cb, &vc);
	if (w > 0)
		return 1;
	if (w < 0) {
		*msg_r = xstrdup("cannot read the store");
		*status_r = CTL_TEMP;
		return 0;
	}
	*msg_r = xasprintf("checked=%llu bad=%llu equivocations=%llu",
	    (unsigned long long)rep->checked, (unsigned long long)rep->bad,
	    (unsigned long long)rep->equivocations);
	log_info("- dir verify checked=%llu bad=%llu equivocations=%llu",
	    (unsigned long long)rep->checked, (unsigned long long)rep->bad,
	    (unsigned long long)rep->equivocations);
	*status_r = rep->bad == 0 && rep->equivocations == 0 ? CTL_OK :
	    CTL_FAILED;
	return 0;
}

static int
unhex(const char *s, uint8_t *out, size_t max, size_t *len_r)
{
	size_t n = strlen(s), i;

	if (n % 2 != 0 || n / 2 > max)
		return -1;
	for (i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1 ||
		    strchr("0123456789abcdefABCDEF", s[2 * i]) == NULL ||
		    strchr("0123456789abcdefABCDEF", s[2 * i + 1]) == NULL)
			return -1;
		out[i] = (uint8_t)v;
	}
	*len_r = n / 2;
	return 0;
}

static enum ctl_status
op_keys_accept(struct ops *o, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	uint8_t env[RECORD_MAX];
	char kid[DKEY_ID_HEX_LEN + 1], id[DKEY_ID_LEN];
	struct record r;
	enum accept_result res;
	const char *why;
	size_t len;

	if (unhex(argv[0], env, sizeof(env), &len) != 0 ||
	    record_decode(env, len, &r, &why) != 0 ||
	    (r.kind != RECORD_CERT && r.kind != RECORD_REVOKE)) {
		*msg_r = xstrdup("not a certificate or revocation envelope");
		return CTL_FAILED;
	}
	if (r.kind == RECORD_CERT)
		dkey_id(r.u.cert.pk, (uint8_t *)id);
	else
		memcpy(id, r.u.revoke.key_id, DKEY_ID_LEN);
	dkey_id_hex((uint8_t *)id, kid);
	res = store_accept(o->st, env, len, (uint64_t)time(NULL));
	if (res == ACCEPT_STORED && o->g != NULL &&
	    gossip_publish(o->g, env, len, mm_now_ms()) != 0)
		log_warnx("- gossip publish-failed kind=trust");
	if (res == ACCEPT_STORED && o->view) {
		free(o->held);
		o->held = xmalloc(len);
		memcpy(o->held, env, len);
		o->held_len = len;
	}
	log_info("- dir %s key_id=%s result=%s", r.kind == RECORD_CERT ?
	    "key-certify" : "key-revoke", kid, store_accept_name(res));
	*msg_r = xasprintf("%s %s: %s", r.kind == RECORD_CERT ? "certificate" :
	    "revocation", kid, store_accept_name(res));
	return accept_status(res);
}

static const char *const keys_header[] = { "key_id", "role", "site",
	"name", "issued", "expires", "state", "origin", "origin_seq" };

struct keys_ctx {
	struct ops *o;
	struct ops_req *r;
	struct ctl_rows *rows;
	uint8_t root[DKEY_PK_LEN];
	bool have_root;
	size_t records;
	bool failed;
};

static int
keys_cert_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct keys_ctx *kc = arg;
	const struct record_cert *c = &r->u.cert;
	char kid[DKEY_ID_HEX_LEN + 1], ib[TIME_TEXT_LEN], eb[TIME_TEXT_LEN];
	char seq[24];
	uint8_t id[DKEY_ID_LEN];
	struct trust_facts f;
	const char *state;
	int rv;

	kc->records++;
	dkey_id(c->pk, id);
	if ((rv = store_is_revoked(kc->o->st, id)) < 0) {
		kc->failed = true;
		return 1;
	}
	/* Each certificate listed as it stands on its own. */
	memset(&f, 0, sizeof(f));
	f.root_pk = kc->have_root ? kc->root : NULL;
	f.cert = c;
	f.root_signed = kc->have_root && record_verify(r, kc->root) == 0;
	f.revoked = rv == 1;
	state = key_state(trust_decide(&f, id, NULL, TRUST_USE_CERT, NULL,
	    NULL, kc->r->now));
	dkey_id_hex(id, kid);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)c->origin_seq);
	rows_addv(kc->rows, 9, kid, record_role_name(c->role), c->site,
	    c->name, fmt_time(c->issued, ib), c->expires == 0 ? "never" :
	    fmt_time(c->expires, eb), state, c->origin, seq);
	kc->r->n++;
	return slice_full(kc->r, kc->rows, kc->records,
	    slice_records(kc->r, OPS_SLICE_RECORDS));
}

/* Revocations of keys this store never saw certified. */
static int
keys_revoke_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct keys_ctx *kc = arg;
	struct record_cert c;
	char kid[DKEY_ID_HEX_LEN + 1], seq[24];
	int got;

	kc->records++;
	if ((got = store_get_cert(kc->o->st, r->u.revoke.key_id, &c)) < 0) {
		kc->failed = true;
		return 1;
	}
	if (got == 0) {
		dkey_id_hex(r->u.revoke.key_id, kid);
		snprintf(seq, sizeof(seq), "%llu",
		    (unsigned long long)r->u.revoke.origin_seq);
		rows_addv(kc->rows, 9, kid, "-", "-", "-", "-", "-", "revoked",
		    r->u.revoke.origin, seq);
		kc->r->n++;
	}
	return slice_full(kc->r, kc->rows, kc->records,
	    slice_records(kc->r, OPS_SLICE_RECORDS));
}

/* keys-list in slices: the certificates, then the revocations of keys
 * without one. */
static int
slice_keys_list(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r)
{
	struct keys_ctx kc;
	int w;

	memset(&kc, 0, sizeof(kc));
	kc.o = o;
	kc.r = r;
	kc.rows = rows;
	if (r->phase == 0) {
		(void)ctl_rows_add(rows, MM_ARRAY_SIZE(keys_header),
		    keys_header);
		r->phase = 1;
	}
	if ((w = store_get_root(o->st, kc.root)) < 0)
		goto fail;
	kc.have_root = w == 1;
	if (r->phase == 1) {
		w = store_foreach_cert_from(o->st, &r->cur, keys_cert_cb, &kc);
		if (w < 0 || kc.failed)
			goto fail;
		if (w > 0)
			return 1;
		r->phase = 2;
		memset(&r->cur, 0, sizeof(r->cur));
	}
	w = store_foreach_revoked_from(o->st, &r->cur, keys_revoke_cb, &kc);
	if (w < 0 || kc.failed)
		goto fail;
	if (w > 0)
		return 1;
	*msg_r = xasprintf("%llu keys", (unsigned long long)r->n);
	*status_r = CTL_OK;
	return 0;
fail:
	*msg_r = xstrdup("cannot read the certificates");
	*status_r = CTL_TEMP;
	return 0;
}

static int
tombstone_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct list_ctx *lc = arg;

	if (r->kind == RECORD_USER && r->u.user.state == USTATE_DELETED)
		lc->r->n++;
	return ++lc->records >= slice_records(lc->r, OPS_STATS_SLICE);
}

/* stats: the tombstones counted in slices, then the sizes. */
static int
slice_stats(struct ops *o, struct ops_req *r, struct ctl_rows *rows,
    enum ctl_status *status_r, char **msg_r)
{
	static const char *const header[] = { "users", "tombstones", "certs",
		"revoked", "origins", "evidence", "map_bytes", "used_bytes" };
	struct list_ctx lc = { r, rows, NULL, false, 0 };
	struct store_stats s;
	char v[8][24];
	uint64_t vals[8];
	size_t i;
	int w;

	w = store_foreach_user_from(o->st, &r->cur, tombstone_cb, &lc);
	if (w > 0)
		return 1;
	if (w < 0 || store_sizes(o->st, &s) != 0) {
		*msg_r = xstrdup("cannot read the store");
		*status_r = CTL_TEMP;
		return 0;
	}
	s.tombstones = r->n;
	vals[0] = s.users;
	vals[1] = s.tombstones;
	vals[2] = s.certs;
	vals[3] = s.revoked;
	vals[4] = s.origins;
	vals[5] = s.evidence;
	vals[6] = s.map_bytes;
	vals[7] = s.used_bytes;
	for (i = 0; i < 8; i++)
		snprintf(v[i], sizeof(v[i]), "%llu",
		    (unsigned long long)vals[i]);
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	rows_addv(rows, 8, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
	*msg_r = xstrdup("");
	*status_r = CTL_OK;
	return 0;
}

struct sites_ctx {
	struct ctl_rows *rows;
	uint64_t now_ms;
};

static void
sites_cb(void *arg, const struct gossip_member_info *m)
{
	struct sites_ctx *sc = arg;
	char inc[24], rtt[24], last[24];

	snprintf(inc, sizeof(inc), "%llu", (unsigned long long)m->incarnation);
	if (m->rtt_ms >= 0)
		snprintf(rtt, sizeof(rtt), "%lld", (long long)m->rtt_ms);
	else
		rtt[0] = '\0';
	if (m->self)
		snprintf(last, sizeof(last), "0");
	else if (m->last_contact_ms != 0 && m->last_contact_ms <= sc->now_ms)
		snprintf(last, sizeof(last), "%llu", (unsigned long long)
		    ((sc->now_ms - m->last_contact_ms) / 1000));
	else
		last[0] = '\0';
	rows_addv(sc->rows, 9, m->site, m->name, m->addr,
	    gossip_state_name(m->state), rtt, last, inc,
	    m->self ? "yes" : "no", m->session_addr);
}

static enum ctl_status
op_sites(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	static const char *const header[] = { "site", "name", "address",
		"state", "rtt_ms", "last_contact_s", "incarnation", "self",
		"session_address" };
	struct sites_ctx sc = { rows, mm_now_ms() };
	struct gossip_stats gs;

	if (o->g == NULL) {
		*msg_r = xasprintf("gossip is off on this node (no "
		    "peer-listen in %s)", o->conf->path);
		return CTL_FAILED;
	}
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	gossip_foreach_member(o->g, sites_cb, &sc);
	gossip_stats(o->g, &gs);
	*msg_r = xasprintf("%u members, %u alive", gs.members, gs.alive);
	return CTL_OK;
}

/* ---- `check` on this node ------------------------------------------ */

static int
check_origin_cb(const char *origin, uint64_t contig, uint64_t highest,
    void *arg)
{
	check_node_origin(arg, origin, contig, highest);
	return 0;
}

static void
check_damaged_cb(const char *user, const char *what, void *arg)
{
	check_node_damage(check_report_local(arg), user, what);
}

static void
check_conflict_cb(const char *user, const char *what, void *arg)
{
	check_node_conflict(check_report_local(arg), user, what);
}

static void
check_local_record_cb(const uint8_t *env, size_t len, void *arg)
{
	check_report_local_record(arg, env, len);
}

int
ops_check_local(struct ops *o, struct check_report *rep,
    struct store_tree **tree_r)
{
	struct check_node *n;
	struct store_tree *t = NULL;
	struct store_scrub_report sr;
	struct store_scrub *s;
	size_t i;
	int r;

	n = check_report_node(rep, o->conf->site, o->conf->node_name);
	if (store_tree_build(o->st, &t) != 0) {
		check_node_unreachable(n, "store error");
		return -1;
	}
	check_node_root(n, store_tree_root(t), store_tree_users(t));
	(void)store_foreach_origin(o->st, check_origin_cb, n);
	for (i = 0; i < o->conf->n_backends; i++)
		check_node_backend(n, o->conf->backends[i].name);
	/* The scrub sees every record once: the per-record checks ride on
	 * it. Signatures are `verify`'s. */
	s = store_scrub_new(check_damaged_cb, check_local_record_cb, rep);
	store_scrub_watch_conflicts(s, check_conflict_cb);
	while ((r = store_scrub_step(o->st, s, OPS_SCRUB_SLICE)) == 0)
		;
	store_scrub_result(s, &sr);
	store_scrub_free(s);
	if (r == 1) {
		check_node_scrub(n, sr.records, sr.damaged, sr.equivocations,
		    true);
		check_node_conflicts(n, sr.conflicts);
	} else {
		check_node_incomplete(n, "scrub failed: store error");
	}
	if (tree_r != NULL)
		*tree_r = t;
	else
		store_tree_free(t);
	return 0;
}

/* `check` without gossip (mmctl --direct, or no peers): this node only.
 * With gossip the agent hands the request to check_run instead. */
static enum ctl_status
op_check(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	struct check_report *rep = check_report_new();
	enum ctl_status st;

	(void)ops_check_local(o, rep, NULL);
	st = check_report_finish(rep, (uint64_t)time(NULL),
	    OPS_CHECK_STUCK_S, rows, msg_r);
	check_report_free(rep);
	return st;
}

/* `sessions` is the running node's (its agent asks the workers); without
 * one there are none to list. */
static enum ctl_status
op_needs_node(struct ops *o, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	*msg_r = xasprintf("this command needs the running node: none answers "
	    "on %s", o->conf->control_socket);
	return CTL_TEMP;
}

/* Every request, and whether it writes: keys-accept stores a certificate
 * or revocation; check and verify only read, though check asks the other
 * nodes too. */
static const struct op op_table[] = {
	{ "user-add", OP_WRITE, 2, 2, op_user_add, NULL, false },
	{ "user-set", OP_WRITE, 4, 4, op_user_set, NULL, false },
	{ "user-del", OP_WRITE, 1, 1, op_user_del, NULL, false },
	{ "user-show", OP_READ, 1, 1, op_user_show, NULL, false },
	{ "user-resolve", OP_WRITE, 2, 2, op_user_resolve, NULL, false },
	{ "user-list", OP_READ, 1, 1, NULL, slice_user_list, false },
	{ "import-rows", OP_WRITE, 0, CTL_ARGS_MAX, op_import_rows, NULL,
	    false },
	{ "import-users", OP_WRITE, 0, CTL_ARGS_MAX, op_import_users, NULL,
	    false },
	{ "export", OP_READ, 0, 0, NULL, slice_export, false },
	{ "verify", OP_READ, 0, 0, NULL, slice_verify, false },
	{ "keys-accept", OP_WRITE, 1, 1, op_keys_accept, NULL, false },
	{ "keys-list", OP_READ, 0, 0, NULL, slice_keys_list, false },
	{ "stats", OP_READ, 0, 0, NULL, slice_stats, false },
	{ "sites", OP_READ, 0, 0, op_sites, NULL, true },
	{ "sessions", OP_READ, 0, 1, op_needs_node, NULL, true },
	{ "kick", OP_READ, 1, 1, op_needs_node, NULL, true },
	{ "move", OP_WRITE, 4, 4, op_needs_node, NULL, true },
	{ "move-abort", OP_WRITE, 1, 1, op_needs_node, NULL, true },
	{ "moves", OP_READ, 0, 1, op_needs_node, NULL, true },
	{ "check", OP_READ, 0, 0, op_check, NULL, false },
};

static const struct op *
op_find(const char *name)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(op_table); i++)
		if (strcmp(op_table[i].name, name) == 0)
			return &op_table[i];
	return NULL;
}

enum ctl_status
ops_exec(struct ops *o, const char *op, size_t argc, char *const *argv,
    char **message_r, struct ctl_rows *rows)
{
	const struct op *e;
	enum ctl_status st = CTL_FAILED;

	*message_r = NULL;
	if ((e = op_find(op)) == NULL) {
		*message_r = xasprintf("unknown request '%s'", op);
		return CTL_USAGE;
	}
	if (argc < e->args_min || argc > e->args_max) {
		*message_r = xasprintf("%s: wrong number of arguments", op);
		return CTL_USAGE;
	}
	if (e->slice != NULL) {
		struct ops_req *r = ops_req_new(o, op, argc, argv);

		while (ops_req_run(r, NULL, rows, &st, message_r) == 1)
			;
		ops_req_free(r);
		return st;
	}
	st = e->run(o, argc, argv, message_r, rows);
	if (*message_r == NULL)
		*message_r = xstrdup("");
	return st;
}

bool
ops_writes(const char *op)
{
	const struct op *e = op_find(op);

	return e != NULL && e->access != OP_READ;
}

bool
ops_on_loop(const char *op)
{
	const struct op *e = op_find(op);

	return e != NULL && e->loop;
}

/* ---- requests in slices --------------------------------------------- */

struct ops_req *
ops_req_new(struct ops *o, const char *op, size_t argc, char *const *argv)
{
	struct ops_req *r = xcalloc(1, sizeof(*r));
	size_t i;

	r->view = *o;
	r->view.st = NULL;
	r->view.g = NULL;
	r->view.sg.key = &r->view.key;
	r->view.view = true;
	r->view.held = NULL;
	r->own = o->st;
	r->e = op_find(op);
	r->op = xstrdup(op);
	r->argc = argc;
	r->argv = xcalloc(argc + 1, sizeof(*r->argv));
	for (i = 0; i < argc; i++)
		r->argv[i] = xstrdup(argv[i]);
	r->now = (uint64_t)time(NULL);
	return r;
}

void
ops_req_free(struct ops_req *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->argc; i++)
		free(r->argv[i]);
	free(r->argv);
	free(r->op);
	free(r->view.held);
	dkey_clear(&r->view.key);
	free(r);
}

void
ops_req_set_slice(struct ops_req *r, size_t rows, size_t records)
{
	r->slice_rows = rows;
	r->slice_records = records;
}

int
ops_req_run(struct ops_req *r, struct store *st, struct ctl_rows *rows,
    enum ctl_status *status_r, char **message_r)
{
	const struct op *e = r->e;
	int more = 0;

	*message_r = NULL;
	r->view.st = st != NULL ? st : r->own;
	if (e == NULL) {
		*message_r = xasprintf("unknown request '%s'", r->op);
		*status_r = CTL_USAGE;
	} else if (r->argc < e->args_min || r->argc > e->args_max) {
		*message_r = xasprintf("%s: wrong number of arguments", r->op);
		*status_r = CTL_USAGE;
	} else if (e->slice != NULL) {
		more = e->slice(&r->view, r, rows, status_r, message_r);
	} else {
		*status_r = e->run(&r->view, r->argc, r->argv, message_r,
		    rows);
	}
	r->view.st = NULL;
	if (more) {
		free(*message_r);
		*message_r = NULL;
	} else if (*message_r == NULL) {
		*message_r = xstrdup("");
	}
	return more;
}

void
ops_req_publish(struct ops *o, struct ops_req *r)
{
	if (r->e == NULL || r->e->access == OP_READ)
		return;
	publish_own(o);
	if (r->view.held != NULL && o->g != NULL &&
	    gossip_publish(o->g, r->view.held, r->view.held_len,
	    mm_now_ms()) != 0)
		log_warnx("- gossip publish-failed kind=trust");
	free(r->view.held);
	r->view.held = NULL;
}

/* ---- moves ---------------------------------------------------------- */

enum accept_result
ops_move_sign(struct ops *o, struct store *st, const char *user,
    const char *backend, enum user_state state, const char *target,
    uint8_t *env_r, size_t *len_r)
{
	struct record_user u;
	enum accept_result res;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint64_t now = (uint64_t)time(NULL);

	*len_r = 0;
	if (state == USTATE_TRANSFER)
		res = store_put_transfer(st, &o->sg, user, target, backend,
		    now);
	else
		res = store_put_user(st, &o->sg, user, backend, state, target,
		    now);
	log_info("- dir move-sign user=%s state=%s target=%s result=%s",
	    user, record_state_name(state), target[0] != '\0' ? target : "-",
	    store_accept_name(res));
	if (res != ACCEPT_STORED && res != ACCEPT_DUPLICATE)
		return res;
	if (store_get_user(st, user, &u, &buf, &len) == 1 &&
	    len <= RECORD_MAX) {
		memcpy(env_r, buf, len);
		*len_r = len;
	}
	free(buf);
	return res;
}

void
ops_publish(struct ops *o)
{
	publish_own(o);
}

/* ---- gossip --------------------------------------------------------- */

void
ops_set_gossip(struct ops *o, struct gossip *g)
{
	o->g = g;
	if (g != NULL)
		(void)store_origin_contig(o->st, o->conf->node_name,
		    &o->published);
}

struct publish_ctx {
	struct ops *o;
	uint64_t last;
};

static int
publish_cb(uint64_t seq, const uint8_t *env, size_t len, void *arg)
{
	struct publish_ctx *pc = arg;

	if (gossip_publish(pc->o->g, env, len, mm_now_ms()) != 0)
		log_warnx("- gossip publish-failed origin_seq=%llu",
		    (unsigned long long)seq);
	pc->last = seq;
	return 0;
}

/* Pushes the records this node signed since the last call. */
static void
publish_own(struct ops *o)
{
	struct publish_ctx pc = { o, o->published };

	if (o->g == NULL)
		return;
	if (store_log_range(o->st, o->conf->node_name, o->published + 1,
	    publish_cb, &pc) != 0)
		log_warnx("- gossip publish-failed reason=store");
	o->published = pc.last;
}

/* The accept rule (which also wants a USER record numbered under its
 * signer's own name: else a certified node could fill another origin's
 * log). What the rule refuses as superseded is kept in the log (no hidden
 * gaps) and not held against the sender; so is a record whose signer's
 * certificate has not reached us yet (it comes again once it has). */
static void
reject_log(const char *from, enum accept_result res, const uint8_t *env,
    size_t len)
{
	char kid[DKEY_ID_HEX_LEN + 1];
	const char *why = NULL;
	struct record r;

	if (record_decode(env, len, &r, &why) != 0)
		return;
	dkey_id_hex(r.key_id, kid);
	if (res == REJECT_WRONG_ORIGIN)
		log_warnx("- gossip record-rejected from=%s result=origin-"
		    "mismatch origin=%s key_id=%s", from, r.u.user.origin,
		    kid);
	else
		log_warnx("- gossip record-rejected from=%s result=%s "
		    "key_id=%s", from, store_accept_name(res), kid);
}

void
ops_gossip_accept_batch(struct store *st, const char *from,
    const uint8_t *const *envs, const size_t *lens, size_t n, uint64_t now_s,
    const struct store_presig *pre, enum gossip_accept *results)
{
	const uint8_t **take = xcalloc(n + 1, sizeof(*take));
	size_t *take_len = xcalloc(n + 1, sizeof(*take_len));
	size_t *idx = xcalloc(n + 1, sizeof(*idx));
	enum accept_result *res = xcalloc(n + 1, sizeof(*res));
	struct store_presig *take_pre = NULL;
	struct record r;
	const char *why = NULL;
	size_t i, k = 0;

	for (i = 0; i < n; i++) {
		results[i] = GOSSIP_ACCEPT_REJECT;
		if (lens[i] > RECORD_MAX ||
		    record_decode(envs[i], lens[i], &r, &why) != 0) {
			log_warnx("- gossip record-rejected from=%s result=%s",
			    from, store_accept_name(REJECT_MALFORMED));
			continue;
		}
		take[k] = envs[i];
		take_len[k] = lens[i];
		idx[k++] = i;
	}
	if (pre != NULL && k > 0) {
		take_pre = xcalloc(k, sizeof(*take_pre));
		for (i = 0; i < k; i++)
			take_pre[i] = pre[idx[i]];
	}
	if (k > 0)
		store_accept_batch_pre(st, take, take_len, k, now_s, take_pre,
		    res);
	for (i = 0; i < k; i++) {
		size_t at = idx[i];

		switch (res[i]) {
		case ACCEPT_STORED:
		case ACCEPT_EQUIVOCATION:
			results[at] = GOSSIP_ACCEPT_NEW;
			break;
		case ACCEPT_DUPLICATE:
		case REJECT_STORE:
			results[at] = GOSSIP_ACCEPT_DUP;
			break;
		case REJECT_STALE:
		case REJECT_REVOKED:
		case REJECT_EXPIRED:
		case REJECT_WRONG_SITE:
		case REJECT_NO_TRANSFER:
			/* Signed by its origin, refused by the rule (a user
			 * another site owns, created at both while apart; an
			 * ownership change without its transfer): its place
			 * in the origin's log is taken all the same, so the
			 * origin's later records are not held up behind it,
			 * and the relay is not blamed. */
			results[at] = GOSSIP_ACCEPT_DUP;
			if (store_log_fill(st, take[i], take_len[i], now_s) < 0)
				reject_log(from, res[i], take[i], take_len[i]);
			break;
		case REJECT_UNKNOWN_KEY:
			results[at] = GOSSIP_ACCEPT_DUP;
			/* FALLTHROUGH */
		default:
			reject_log(from, res[i], take[i], take_len[i]);
			break;
		}
	}
	free(take);
	free(take_len);
	free(idx);
	free(res);
	free(take_pre);
}

enum gossip_accept
ops_gossip_accept(struct ops *o, const char *from, const uint8_t *env,
    size_t len, uint64_t now_s)
{
	enum gossip_accept res;

	ops_gossip_accept_batch(o->st, from, &env, &len, 1, now_s, NULL, &res);
	return res;
}
