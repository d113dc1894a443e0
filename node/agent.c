/* The directory agent: request handlers shared with `mmctl --direct`, the
 * trust checks the node runs before it starts, and the agent process with
 * its control socket. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include <sodium.h>

#include "chan.h"
#include "chan_ev.h"
#include "check.h"
#include "dir.h"
#include "gossip.h"
#include "mm_metrics.h"
#include "mm_log.h"
#include "mm_util.h"
#include "record.h"
#include "store.h"

#define AGENT_CLIENTS_MAX 16	/* mmctl connections at once */
#define AGENT_IDLE_S 120	/* an mmctl that sends nothing is dropped */
#define AGENT_PURGE_S 3600	/* tombstone purge period */
#define AGENT_ROWS_PER_FRAME (256 * 1024)	/* bytes of rows per frame */
#define AGENT_SOCKET_DIR_MODE 0755
#define AGENT_SOCKET_MODE 0660
#define TIME_TEXT_LEN 32
#define PEER_BACKLOG 64
#define AGENT_PEER_GROUPS 64	/* a peer's groups read without malloc */
#define AGENT_PEER_GROUPS_MAX 65536	/* NGROUPS_MAX of Linux */

struct agent {
	const struct mm_config *conf;
	struct store *st;
	struct dkey key;
	struct store_signer sg;
	struct gossip *g;	/* the agent process with peer-listen only */
	uint64_t published;	/* own origin_seq gossiped up to */
};

static void agent_publish_own(struct agent *a);

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
user_lookup_row(struct agent *a, const char *user, struct ctl_rows *rows,
    struct record_user *u_r)
{
	struct record r;
	uint8_t *buf = NULL;
	size_t len = 0;
	const char *why;
	int found;

	found = store_get_user(a->st, user, u_r, &buf, &len);
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

struct trust {
	size_t n_certs, n_revoked;
	struct cert_info {
		struct record_cert c;
		uint8_t id[DKEY_ID_LEN];
		bool sig_ok;
	} *certs;
	struct revoke_info {
		uint8_t id[DKEY_ID_LEN];
		struct record_revoke v;
	} *revoked;
	uint8_t root[DKEY_PK_LEN];
	bool have_root;
};

static int
trust_cert_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct trust *t = arg;
	struct cert_info *ci;

	t->certs = xrealloc(t->certs, (t->n_certs + 1) * sizeof(*t->certs));
	ci = &t->certs[t->n_certs++];
	ci->c = r->u.cert;
	dkey_id(r->u.cert.pk, ci->id);
	ci->sig_ok = t->have_root && record_verify(r, t->root) == 0;
	return 0;
}

static int
trust_revoke_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct trust *t = arg;
	struct revoke_info *ri;

	t->revoked = xrealloc(t->revoked,
	    (t->n_revoked + 1) * sizeof(*t->revoked));
	ri = &t->revoked[t->n_revoked++];
	memcpy(ri->id, r->u.revoke.key_id, DKEY_ID_LEN);
	ri->v = r->u.revoke;
	return 0;
}

static void
trust_clear(struct trust *t)
{
	free(t->certs);
	free(t->revoked);
	memset(t, 0, sizeof(*t));
}

/* Certificates (each checked against the root) and revocations of st. */
static int
trust_load(struct store *st, const char *path, struct trust *t,
    char **errstr_r)
{
	memset(t, 0, sizeof(*t));
	t->have_root = store_get_root(st, t->root) == 1;
	if (store_foreach_cert(st, trust_cert_cb, t) != 0 ||
	    store_foreach_revoked(st, trust_revoke_cb, t) != 0) {
		trust_clear(t);
		*errstr_r = xasprintf("directory %s: cannot read the "
		    "certificates", path);
		return -1;
	}
	return 0;
}

static const struct revoke_info *
trust_revoked(const struct trust *t, const uint8_t id[DKEY_ID_LEN])
{
	size_t i;

	for (i = 0; i < t->n_revoked; i++)
		if (memcmp(t->revoked[i].id, id, DKEY_ID_LEN) == 0)
			return &t->revoked[i];
	return NULL;
}

static const char *
cert_state(const struct trust *t, const struct cert_info *ci, uint64_t now)
{
	if (!ci->sig_ok)
		return "bad-signature";
	if (trust_revoked(t, ci->id) != NULL)
		return "revoked";
	if (ci->c.expires != 0 && ci->c.expires <= now)
		return "expired";
	return "valid";
}

static void
keys_rows(const struct trust *t, uint64_t now, struct ctl_rows *rows)
{
	static const char *const header[] = { "key_id", "role", "site",
		"name", "issued", "expires", "state", "origin", "origin_seq" };
	char kid[DKEY_ID_HEX_LEN + 1], ib[TIME_TEXT_LEN], eb[TIME_TEXT_LEN];
	char seq[24];
	size_t i, j;

	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	for (i = 0; i < t->n_certs; i++) {
		const struct cert_info *ci = &t->certs[i];

		dkey_id_hex(ci->id, kid);
		snprintf(seq, sizeof(seq), "%llu",
		    (unsigned long long)ci->c.origin_seq);
		rows_addv(rows, 9, kid, record_role_name(ci->c.role),
		    ci->c.site, ci->c.name, fmt_time(ci->c.issued, ib),
		    ci->c.expires == 0 ? "never" :
		    fmt_time(ci->c.expires, eb), cert_state(t, ci, now),
		    ci->c.origin, seq);
	}
	/* Revocations of keys this store never saw certified. */
	for (i = 0; i < t->n_revoked; i++) {
		for (j = 0; j < t->n_certs; j++)
			if (memcmp(t->certs[j].id, t->revoked[i].id,
			    DKEY_ID_LEN) == 0)
				break;
		if (j < t->n_certs)
			continue;
		dkey_id_hex(t->revoked[i].id, kid);
		snprintf(seq, sizeof(seq), "%llu",
		    (unsigned long long)t->revoked[i].v.origin_seq);
		rows_addv(rows, 9, kid, "-", "-", "-", "-", "-", "revoked",
		    t->revoked[i].v.origin, seq);
	}
}

int
agent_keys_rows(const char *path, uint64_t now, struct ctl_rows *rows,
    char **errstr_r)
{
	struct store *st;
	struct trust t;
	int rc;

	if ((st = store_open(path, STORE_READONLY, errstr_r)) == NULL)
		return -1;
	rc = trust_load(st, path, &t, errstr_r);
	store_close(st);
	if (rc != 0)
		return -1;
	keys_rows(&t, now, rows);
	trust_clear(&t);
	return 0;
}

uint64_t
agent_root_next_seq(const char *path, const char *origin)
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
agent_load_root_public(const struct mm_config *conf, struct dkey *key_r,
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
	if (agent_load_root_public(conf, &root, errstr_r) != 0)
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

struct agent *
agent_new(const struct mm_config *conf, const struct dkey *key,
    enum ctl_status *status_r, char **errstr_r)
{
	struct agent *a = xcalloc(1, sizeof(*a));
	char *err = NULL;

	a->conf = conf;
	*status_r = CTL_FAILED;
	if (key != NULL)
		a->key = *key;
	a->sg.key = &a->key;
	a->sg.site = conf->site;
	a->sg.origin = conf->node_name;
	if (mkdir(conf->directory, 0700) != 0 && errno != EEXIST) {
		*status_r = errno == EACCES ? CTL_PERM : CTL_FAILED;
		*errstr_r = xasprintf("directory %s: %s", conf->directory,
		    strerror(errno));
		goto fail;
	}
	if ((a->st = store_open(conf->directory, STORE_WRITE, &err)) == NULL) {
		*status_r = open_status(conf->directory);
		*errstr_r = xasprintf("%s%s", err, *status_r == CTL_PERM ?
		    " (permission denied: run as the node's user or root)" :
		    "");
		free(err);
		goto fail;
	}
	if (ensure_root(conf, a->st, errstr_r) != 0)
		goto fail;
	return a;
fail:
	agent_free(a);
	return NULL;
}

void
agent_free(struct agent *a)
{
	if (a == NULL)
		return;
	store_close(a->st);
	dkey_clear(&a->key);
	free(a);
}

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

int
agent_preflight(const struct mm_config *conf, const struct dkey *key,
    char **errstr_r)
{
	struct agent *a = NULL;
	enum ctl_status st;
	struct trust t;
	char kid[DKEY_ID_HEX_LEN + 1];
	const char *why = NULL;
	uint64_t now = (uint64_t)time(NULL);
	size_t i;
	int rc = -1;

	memset(&t, 0, sizeof(t));
	dkey_id_hex(key->id, kid);
	/* Root set, store writable; closed before return (nothing of the
	 * store may cross the fork that follows). */
	if ((a = agent_new(conf, key, &st, errstr_r)) == NULL)
		goto done;
	if (trust_load(a->st, conf->directory, &t, errstr_r) != 0)
		goto done;
	for (i = 0; i < t.n_certs; i++) {
		const struct cert_info *ci = &t.certs[i];

		if (memcmp(ci->id, key->id, DKEY_ID_LEN) != 0 ||
		    strcmp(ci->c.site, conf->site) != 0 ||
		    (ci->c.role != ROLE_NODE && ci->c.role != ROLE_SITE))
			continue;
		why = cert_state(&t, ci, now);
		if (strcmp(why, "valid") != 0)
			continue;
		/* Records carry node-name as their origin, and the accept
		 * rule wants it to be the name in the signer's certificate. */
		if (strcmp(ci->c.name, conf->node_name) != 0) {
			*errstr_r = xasprintf("node-key %s (key id %s) is "
			    "certified as %s but node-name is %s (set node-name "
			    "%s, or certify the key with --name %s)",
			    conf->node_key, kid, ci->c.name, conf->node_name,
			    ci->c.name, conf->node_name);
			goto done;
		}
		rc = 0;
		goto done;
	}
	if (why != NULL && strcmp(why, "revoked") == 0)
		*errstr_r = xasprintf("node-key %s (key id %s): its "
		    "certificate for site %s is revoked (make a new key with: "
		    "mmctl keys new FILE, and certify that)", conf->node_key,
		    kid, conf->site);
	else if (why != NULL)
		*errstr_r = xasprintf("node-key %s (key id %s): its "
		    "certificate for site %s is %s (certify it again with: "
		    "mmctl -c %s keys certify --root ROOT.key --pub %s.pub "
		    "--role node --site %s --name %s)", conf->node_key, kid,
		    conf->site, why, conf->path, conf->node_key, conf->site,
		    conf->node_name);
	else
		*errstr_r = xasprintf("node-key %s (key id %s) is not "
		    "certified for site %s (certify it with: mmctl -c %s keys "
		    "certify --root ROOT.key --pub %s.pub --role node --site "
		    "%s --name %s)", conf->node_key, kid, conf->site,
		    conf->path, conf->node_key, conf->site, conf->node_name);
done:
	trust_clear(&t);
	agent_free(a);
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
	enum ctl_status (*run)(struct agent *, size_t, char *const *, char **,
	    struct ctl_rows *);
};

static int
normalise(struct agent *a, const char *user, char out[RECORD_USER_MAX + 1])
{
	char buf[DIR_USER_MAX + 1];

	if (dir_normalise_user(a->conf, user, buf, sizeof(buf)) != 0 ||
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
    enum user_state state, struct agent *a, enum accept_result res)
{
	struct record_user u;
	char ub[4 * RECORD_USER_MAX + 1], bb[4 * RECORD_NAME_MAX + 1];
	int found;

	memset(&u, 0, sizeof(u));
	found = store_get_user(a->st, user, &u, NULL, NULL);
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
accept_why(const struct agent *a, enum accept_result res)
{
	if (res == REJECT_STORE && store_last_error(a->st) != NULL)
		return store_last_error(a->st);
	return store_accept_name(res);
}

/* Writes one user change; the answer is the record as stored. */
static enum ctl_status
put_user(struct agent *a, const char *what, const char *user,
    const char *backend, enum user_state state, const char *target,
    char **msg_r, struct ctl_rows *rows)
{
	struct record_user u;
	enum accept_result res;
	enum ctl_status status;

	res = store_put_user(a->st, &a->sg, user, backend, state, target,
	    (uint64_t)time(NULL));
	log_change(what, user, backend, state, a, res);
	agent_publish_own(a);
	status = accept_status(res);
	if (status != CTL_OK) {
		*msg_r = xasprintf("%s: %s", user, accept_why(a, res));
		return status;
	}
	if (user_lookup_row(a, user, rows, &u) != 1) {
		*msg_r = xasprintf("%s: stored but cannot be read back", user);
		return CTL_TEMP;
	}
	*msg_r = xasprintf("%s: %s", user, accept_why(a, res));
	return CTL_OK;
}

static enum ctl_status
check_backend(struct agent *a, const char *backend, char **msg_r)
{
	if (mm_config_backend(a->conf, backend) == NULL ||
	    !record_name_valid(backend)) {
		*msg_r = xasprintf("'%s' is not a back end of site %s (see "
		    "backend in %s)", backend, a->conf->site, a->conf->path);
		return CTL_FAILED;
	}
	return CTL_OK;
}

/* Normalises NAME into USER and reads its record into U; *live_r tells
 * whether the user exists and is not deleted. CTL_OK, or the failure
 * with *msg_r set. */
static enum ctl_status
user_read(struct agent *a, const char *name, char user[RECORD_USER_MAX + 1],
    struct record_user *u, bool *live_r, char **msg_r)
{
	int r;

	if (normalise(a, name, user) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", name);
		return CTL_FAILED;
	}
	r = store_get_user(a->st, user, u, NULL, NULL);
	if (r < 0) {
		*msg_r = xasprintf("%s: cannot read the store", user);
		return CTL_TEMP;
	}
	*live_r = r == 1 && u->state != USTATE_DELETED;
	return CTL_OK;
}

static enum ctl_status
op_user_add(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if (check_backend(a, argv[1], msg_r) != CTL_OK)
		return CTL_FAILED;
	if ((st = user_read(a, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (live) {
		*msg_r = xasprintf("%s exists (site %s, back end %s): use "
		    "user set", user, u.site, u.backend);
		return CTL_FAILED;
	}
	return put_user(a, "user-add", user, argv[1], USTATE_ACTIVE, "",
	    msg_r, rows);
}

static enum ctl_status
op_user_set(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	enum user_state state = USTATE_ACTIVE;
	const char *target = argv[3];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if (check_backend(a, argv[1], msg_r) != CTL_OK)
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
	    strcmp(target, a->conf->site) == 0)) {
		*msg_r = xasprintf("state %s needs --target SITE, another "
		    "site than %s", record_state_name(state), a->conf->site);
		return CTL_USAGE;
	}
	if ((st = user_read(a, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (!live) {
		*msg_r = xasprintf("%s: no such user (create it with user "
		    "add)", user);
		return CTL_FAILED;
	}
	return put_user(a, "user-set", user, argv[1], state, target, msg_r,
	    rows);
}

static enum ctl_status
op_user_del(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	enum ctl_status st;
	bool live;

	if ((st = user_read(a, argv[0], user, &u, &live, msg_r)) != CTL_OK)
		return st;
	if (!live) {
		*msg_r = xasprintf("%s: no such user", user);
		return CTL_FAILED;
	}
	return put_user(a, "user-del", user, u.backend, USTATE_DELETED, "",
	    msg_r, rows);
}

static enum ctl_status
op_user_show(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	char user[RECORD_USER_MAX + 1];
	struct record_user u;
	int r;

	if (normalise(a, argv[0], user) != 0) {
		*msg_r = xasprintf("'%s' is not a valid user name", argv[0]);
		return CTL_FAILED;
	}
	r = user_lookup_row(a, user, rows, &u);
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

struct list_ctx {
	struct ctl_rows *rows;
	const char *site;	/* NULL: all */
	bool export;		/* user, backend, state, target only */
};

static int
list_cb(const struct record *r, const uint8_t *env, size_t len, void *arg)
{
	struct list_ctx *lc = arg;
	const struct record_user *u = &r->u.user;

	if (r->kind != RECORD_USER || u->state == USTATE_DELETED)
		return 0;
	if (lc->site != NULL && strcmp(u->site, lc->site) != 0)
		return 0;
	if (lc->export)
		rows_addv(lc->rows, 4, u->user, u->backend,
		    record_state_name(u->state), u->target_site);
	else
		user_row(lc->rows, u, r->key_id);
	return lc->rows->n >= CTL_ROWS_MAX;
}

static enum ctl_status
op_user_list(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	struct list_ctx lc = { rows, argv[0][0] != '\0' ? argv[0] : NULL,
		false };

	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(user_header), user_header);
	if (store_foreach_user(a->st, list_cb, &lc) != 0) {
		*msg_r = xstrdup("cannot read the store");
		return CTL_TEMP;
	}
	*msg_r = xasprintf("%zu users", rows->n - 1);
	return CTL_OK;
}

static enum ctl_status
op_export(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	static const char *const header[] = { "user", "backend", "state",
		"target_site" };
	struct list_ctx lc = { rows, a->conf->site, true };

	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	if (store_foreach_user(a->st, list_cb, &lc) != 0) {
		*msg_r = xstrdup("cannot read the store");
		return CTL_TEMP;
	}
	*msg_r = xasprintf("%zu users", rows->n - 1);
	return CTL_OK;
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
import_check(struct agent *a, const char *user, const char *b,
    const char *s, const char *target, struct import_row *r,
    struct store_user_item *it, enum ctl_status *worst_r)
{
	enum user_state state = USTATE_ACTIVE;
	struct record_user u;
	char *err = NULL;
	int found;

	r->why = NULL;
	if (normalise(a, user, r->user) != 0)
		r->why = "invalid user name";
	else if (check_backend(a, b, &err) != CTL_OK)
		r->why = "not a back end of this site";
	else if (s[0] != '\0' && (record_state_parse(s, &state) != 0 ||
	    (state != USTATE_ACTIVE && state != USTATE_MOVING &&
	    state != USTATE_FROZEN)))
		r->why = "state is active, moving or frozen";
	else if (state == USTATE_ACTIVE && target[0] != '\0')
		r->why = "a target site goes with moving or frozen only";
	else if (state != USTATE_ACTIVE && (!record_site_valid(target) ||
	    strcmp(target, a->conf->site) == 0))
		r->why = "moving and frozen need a target site, another "
		    "than this one";
	free(err);
	if (r->why != NULL)
		return -1;
	found = store_get_user(a->st, r->user, &u, NULL, NULL);
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
	    a->conf->site) == 0 && strcmp(u.backend, b) == 0 &&
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
import_batch(struct agent *a, size_t width, size_t argc, char *const *argv,
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
		r[i].todo = import_check(a, f[0], f[1], f[2], width > 3 ?
		    f[3] : "", &r[i], &items[nitems], &worst);
		if (r[i].todo == 0)
			unchanged++;
		else if (r[i].todo > 0)
			r[i].item = nitems++;
	}
	store_put_users(a->st, &a->sg, items, nitems, (uint64_t)time(NULL),
	    res);
	agent_publish_own(a);
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
			r[i].why = accept_why(a, e);
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
op_import_rows(struct agent *a, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	return import_batch(a, 3, argc, argv, msg_r, rows);
}

static enum ctl_status
op_import_users(struct agent *a, size_t argc, char *const *argv,
    char **msg_r, struct ctl_rows *rows)
{
	return import_batch(a, 4, argc, argv, msg_r, rows);
}

struct verify_ctx {
	struct ctl_rows *rows;
};

static void
verify_cb(const char *what, const char *reason, void *arg)
{
	struct verify_ctx *vc = arg;
	char w[CTL_STR_MAX + 1], r[CTL_STR_MAX + 1];

	if (vc->rows->n >= CTL_ROWS_MAX)
		return;
	mm_strlcpy(w, what, sizeof(w));
	mm_strlcpy(r, reason, sizeof(r));
	rows_addv(vc->rows, 2, w, r);
}

static enum ctl_status
op_verify(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	static const char *const header[] = { "what", "reason" };
	struct store_verify_report rep;
	struct verify_ctx vc = { rows };

	memset(&rep, 0, sizeof(rep));
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	if (store_verify(a->st, (uint64_t)time(NULL), &rep, verify_cb,
	    &vc) != 0) {
		*msg_r = xstrdup("cannot read the store");
		return CTL_TEMP;
	}
	*msg_r = xasprintf("checked=%llu bad=%llu equivocations=%llu",
	    (unsigned long long)rep.checked, (unsigned long long)rep.bad,
	    (unsigned long long)rep.equivocations);
	log_info("- dir verify checked=%llu bad=%llu equivocations=%llu",
	    (unsigned long long)rep.checked, (unsigned long long)rep.bad,
	    (unsigned long long)rep.equivocations);
	return rep.bad == 0 && rep.equivocations == 0 ? CTL_OK : CTL_FAILED;
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
op_keys_accept(struct agent *a, size_t argc, char *const *argv,
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
	res = store_accept(a->st, env, len, (uint64_t)time(NULL));
	if (res == ACCEPT_STORED && a->g != NULL &&
	    gossip_publish(a->g, env, len, mm_now_ms()) != 0)
		log_warnx("- gossip publish-failed kind=trust");
	log_info("- dir %s key_id=%s result=%s", r.kind == RECORD_CERT ?
	    "key-certify" : "key-revoke", kid, store_accept_name(res));
	*msg_r = xasprintf("%s %s: %s", r.kind == RECORD_CERT ? "certificate" :
	    "revocation", kid, store_accept_name(res));
	return accept_status(res);
}

static enum ctl_status
op_keys_list(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	struct trust t;

	if (trust_load(a->st, a->conf->directory, &t, msg_r) != 0)
		return CTL_TEMP;
	keys_rows(&t, (uint64_t)time(NULL), rows);
	trust_clear(&t);
	*msg_r = xasprintf("%zu keys", rows->n - 1);
	return CTL_OK;
}

static enum ctl_status
op_stats(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	static const char *const header[] = { "users", "tombstones", "certs",
		"revoked", "origins", "evidence", "map_bytes", "used_bytes" };
	struct store_stats s;
	char v[8][24];
	uint64_t vals[8];
	size_t i;

	if (store_stats(a->st, &s) != 0) {
		*msg_r = xstrdup("cannot read the store");
		return CTL_TEMP;
	}
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
	return CTL_OK;
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
op_sites(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	static const char *const header[] = { "site", "name", "address",
		"state", "rtt_ms", "last_contact_s", "incarnation", "self",
		"session_address" };
	struct sites_ctx sc = { rows, mm_now_ms() };
	struct gossip_stats gs;

	if (a->g == NULL) {
		*msg_r = xasprintf("gossip is off on this node (no "
		    "peer-listen in %s)", a->conf->path);
		return CTL_FAILED;
	}
	(void)ctl_rows_add(rows, MM_ARRAY_SIZE(header), header);
	gossip_foreach_member(a->g, sites_cb, &sc);
	gossip_stats(a->g, &gs);
	*msg_r = xasprintf("%u members, %u alive", gs.members, gs.alive);
	return CTL_OK;
}

/* The consistency check (at the end of this file). */
struct client;
struct pconn;
static enum ctl_status op_check(struct agent *a, size_t argc,
    char *const *argv, char **msg_r, struct ctl_rows *rows);
static bool check_ctl_start(struct client *c, const struct ctl_msg *m);
static void check_client_gone(struct client *c);
static int check_peer_frame(struct pconn *c, const uint8_t *payload,
    size_t len);
static void check_stop(void);

/* Every request, and whether it writes: keys-accept stores a certificate
 * or revocation; check and verify only read, though check asks the other
 * nodes too. */
static const struct op ops[] = {
	{ "user-add", OP_WRITE, 2, 2, op_user_add },
	{ "user-set", OP_WRITE, 4, 4, op_user_set },
	{ "user-del", OP_WRITE, 1, 1, op_user_del },
	{ "user-show", OP_READ, 1, 1, op_user_show },
	{ "user-list", OP_READ, 1, 1, op_user_list },
	{ "import-rows", OP_WRITE, 0, CTL_ARGS_MAX, op_import_rows },
	{ "import-users", OP_WRITE, 0, CTL_ARGS_MAX, op_import_users },
	{ "export", OP_READ, 0, 0, op_export },
	{ "verify", OP_READ, 0, 0, op_verify },
	{ "keys-accept", OP_WRITE, 1, 1, op_keys_accept },
	{ "keys-list", OP_READ, 0, 0, op_keys_list },
	{ "stats", OP_READ, 0, 0, op_stats },
	{ "sites", OP_READ, 0, 0, op_sites },
	{ "check", OP_READ, 0, 0, op_check },
};

static const struct op *
op_find(const char *name)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(ops); i++)
		if (strcmp(ops[i].name, name) == 0)
			return &ops[i];
	return NULL;
}

enum ctl_status
agent_exec(struct agent *a, const char *op, size_t argc, char *const *argv,
    char **message_r, struct ctl_rows *rows)
{
	const struct op *o;
	enum ctl_status st;

	*message_r = NULL;
	if ((o = op_find(op)) == NULL) {
		*message_r = xasprintf("unknown request '%s'", op);
		return CTL_USAGE;
	}
	if (argc < o->args_min || argc > o->args_max) {
		*message_r = xasprintf("%s: wrong number of arguments", op);
		return CTL_USAGE;
	}
	st = o->run(a, argc, argv, message_r, rows);
	if (*message_r == NULL)
		*message_r = xstrdup("");
	return st;
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

struct client {
	struct bufferevent *bev;
	struct client *next;
	uid_t uid;		/* the peer when it connected */
	pid_t pid;
	bool admin;		/* root or in admin-group: may write */
};

static struct {
	const struct mm_config *conf;
	struct agent *a;
	struct event_base *base;
	struct client *clients;
	size_t n_clients;
	struct event *purge_ev;
	struct mm_metrics *metrics;	/* shared with the workers; or NULL */
	struct event *metrics_ev;
} ag;

static void
client_free(struct client *c)
{
	struct client **pp;

	check_client_gone(c);
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

static void
send_frame(struct client *c, uint8_t *f, size_t len)
{
	if (f != NULL)
		evbuffer_add(bufferevent_get_output(c->bev), f, len);
	free(f);
}

/* Answers with RESPONSE frames of at most AGENT_ROWS_PER_FRAME bytes of
 * rows, then END with the status. */
static void
client_reply(struct client *c, enum ctl_status status, const char *msg,
    struct ctl_rows *rows)
{
	struct ctl_rows part;
	const char *why;
	size_t i, len;
	uint8_t *f;

	ctl_rows_init(&part);
	for (i = 0; i < rows->n; i++) {
		const struct ctl_row *row = &rows->row[i];

		(void)ctl_rows_add(&part, row->n,
		    (const char *const *)row->col);
		if (part.bytes >= AGENT_ROWS_PER_FRAME) {
			f = ctl_encode_response(CTL_RESPONSE, CTL_OK, "",
			    &part, &len, &why);
			send_frame(c, f, len);
			ctl_rows_clear(&part);
		}
	}
	f = ctl_encode_response(CTL_END, status, msg, &part, &len, &why);
	send_frame(c, f, len);
	ctl_rows_clear(&part);
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
 * agent_exec refuses it without running anything. */
static bool
client_may(const struct client *c, const char *op, char **msg_r)
{
	const struct op *o = op_find(op);
	const struct mm_config *conf = ag.conf;

	if (c->admin || o == NULL || o->access == OP_READ)
		return true;
	log_warnx("- ctl refused request=%s uid=%lu pid=%ld reason=not-admin",
	    o->name, (unsigned long)c->uid, (long)c->pid);
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
		if (check_ctl_start(c, m)) {
			/* Answered when the other nodes have. */
			ctl_msg_free(m);
			return;
		}
		st = agent_exec(ag.a, m->op, m->argc, m->argv, &msg, &rows);
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
	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
purge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = { AGENT_PURGE_S, 0 };
	long n;

	n = store_purge_tombstones(ag.a->st, (uint64_t)time(NULL),
	    ag.conf->tombstone_ttl_s);
	if (n < 0)
		log_warnx("- dir purge-failed");
	else if (n > 0)
		log_info("- dir purged tombstones=%ld", n);
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

	memset(&d, 0, sizeof(d));
	if (store_sizes(ag.a->st, &st) == 0) {
		d.records = st.users;
		d.certs = st.certs;
		d.revoked = st.revoked;
		d.origins = st.origins;
		d.evidence = st.evidence;
		d.store_used_bytes = st.used_bytes;
		d.store_map_bytes = st.map_bytes;
	}
	if (ag.a->g != NULL) {
		gossip_stats(ag.a->g, &gs);
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

/* ---- gossip between nodes ------------------------------------------- */

#define PEER_CONNS_MAX 256	/* inter-node connections at once */
#define PEER_OUT_MAX (1024 * 1024)	/* queued for a slow peer: then drop */
#define PEER_HOLD_MAX (256 * 1024)	/* held while a dial completes */
#define PEER_HS_TIMEOUT_S 5
#define PEER_IDLE_MS 60000	/* a connection nothing used is closed */
/* Sent to and heard nothing back for this long: the path is gone (a
 * partition leaves TCP silent, not closed). */
#define PEER_SILENT_MS 8000
#define PEER_BACKOFF_MIN_MS 250
#define PEER_BACKOFF_MAX_MS 4000
#define PEER_DIALS_MAX 64	/* backoff entries kept */
#define GOSSIP_TICK_MS 50
#define PEER_HOUSEKEEP_MS 250

struct pconn {
	struct chan_ev *ce;
	char name[RECORD_NAME_MAX + 1];	/* "" until the handshake says */
	char want[RECORD_NAME_MAX + 1];	/* dialled for this member, or "" */
	char addr[GOSSIP_ADDR_MAX + 1];	/* dialled, or the remote end */
	int seed;			/* index in seeds when dialling one */
	bool outbound, ready;
	uint64_t last_ms;
	uint64_t unanswered_ms;		/* first send since the last frame in */
	struct evbuffer *hold;		/* len (4, BE) || message, until ready */
	struct pconn *next;
};

/* Reconnect backoff, per member name or seed address. */
struct dial {
	char key[GOSSIP_ADDR_MAX + 1];
	uint64_t next_ms;
	uint32_t delay_ms;
};

struct seed {
	char *addr;
	bool known;
};

static struct {
	struct gossip *g;
	struct evconnlistener *lst;
	struct event *tick_ev;
	struct pconn *conns, *dead;
	size_t n_conns;
	uint8_t *cert;
	size_t cert_len;
	struct dial dials[PEER_DIALS_MAX];
	struct seed *seeds;
	size_t n_seeds;
	uint64_t last_housekeep;
	uint64_t dropped;
} gp;

struct publish_ctx {
	struct agent *a;
	uint64_t last;
};

static int
publish_cb(uint64_t seq, const uint8_t *env, size_t len, void *arg)
{
	struct publish_ctx *pc = arg;

	if (gossip_publish(pc->a->g, env, len, mm_now_ms()) != 0)
		log_warnx("- gossip publish-failed origin_seq=%llu",
		    (unsigned long long)seq);
	pc->last = seq;
	return 0;
}

/* Pushes the records this node signed since the last call. */
static void
agent_publish_own(struct agent *a)
{
	struct publish_ctx pc = { a, a->published };

	if (a->g == NULL)
		return;
	if (store_log_range(a->st, a->conf->node_name, a->published + 1,
	    publish_cb, &pc) != 0)
		log_warnx("- gossip publish-failed reason=store");
	a->published = pc.last;
}

static struct dial *
dial_get(const char *key, bool create)
{
	struct dial *d, *oldest = &gp.dials[0];
	size_t i;

	for (i = 0; i < PEER_DIALS_MAX; i++) {
		d = &gp.dials[i];
		if (strcmp(d->key, key) == 0)
			return d;
		if (d->next_ms < oldest->next_ms)
			oldest = d;
	}
	if (!create)
		return NULL;
	memset(oldest, 0, sizeof(*oldest));
	mm_strlcpy(oldest->key, key, sizeof(oldest->key));
	return oldest;
}

static bool
dial_allowed(const char *key, uint64_t now)
{
	struct dial *d = dial_get(key, false);

	return d == NULL || d->next_ms <= now;
}

static void
dial_failed(const char *key, uint64_t now)
{
	struct dial *d = dial_get(key, true);

	d->delay_ms = d->delay_ms == 0 ? PEER_BACKOFF_MIN_MS :
	    d->delay_ms * 2;
	if (d->delay_ms > PEER_BACKOFF_MAX_MS)
		d->delay_ms = PEER_BACKOFF_MAX_MS;
	d->next_ms = now + d->delay_ms;
}

static void
dial_ok(const char *key)
{
	struct dial *d = dial_get(key, false);

	if (d != NULL)
		memset(d, 0, sizeof(*d));
}

/* Unlinks c and frees its channel; c itself goes at the next tick (it
 * may be an argument up the stack). */
static void
pconn_close(struct pconn *c)
{
	struct pconn **pp;

	for (pp = &gp.conns; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			gp.n_conns--;
			break;
		}
	}
	chan_ev_free(c->ce);
	c->ce = NULL;
	if (c->hold != NULL)
		evbuffer_free(c->hold);
	c->hold = NULL;
	c->next = gp.dead;
	gp.dead = c;
}

static void
pconn_reap(void)
{
	struct pconn *c;

	while ((c = gp.dead) != NULL) {
		gp.dead = c->next;
		free(c);
	}
}

static struct pconn *
pconn_find(const char *name, bool ready)
{
	struct pconn *c;

	for (c = gp.conns; c != NULL; c = c->next) {
		if (ready && c->ready && strcmp(c->name, name) == 0)
			return c;
		if (!ready && !c->ready && strcmp(c->want, name) == 0)
			return c;
	}
	return NULL;
}

static void
pconn_send(struct pconn *c, const uint8_t *buf, size_t len)
{
	uint8_t n[4];

	if (!c->ready) {
		if (evbuffer_get_length(c->hold) + len + 4 > PEER_HOLD_MAX) {
			gp.dropped++;
			return;
		}
		n[0] = (uint8_t)(len >> 24);
		n[1] = (uint8_t)(len >> 16);
		n[2] = (uint8_t)(len >> 8);
		n[3] = (uint8_t)len;
		evbuffer_add(c->hold, n, 4);
		evbuffer_add(c->hold, buf, len);
		return;
	}
	/* Gossip tolerates loss; an unbounded queue for a slow peer would
	 * not be tolerated by this process. */
	if (chan_ev_pending(c->ce) > PEER_OUT_MAX) {
		if (gp.dropped++ % 1000 == 0)
			log_warnx("- gossip peer-slow name=%s dropped=%llu",
			    c->name, (unsigned long long)gp.dropped);
		return;
	}
	if (chan_ev_send(c->ce, buf, len) == 0) {
		c->last_ms = mm_now_ms();
		if (c->unanswered_ms == 0)
			c->unanswered_ms = c->last_ms;
	}
}

static void
pconn_flush_hold(struct pconn *c)
{
	uint8_t n[4], *p;
	size_t len;

	while (c->ce != NULL && evbuffer_get_length(c->hold) >= 4) {
		evbuffer_remove(c->hold, n, 4);
		len = (size_t)n[0] << 24 | (size_t)n[1] << 16 |
		    (size_t)n[2] << 8 | n[3];
		p = evbuffer_pullup(c->hold, (ev_ssize_t)len);
		if (p == NULL)
			break;
		pconn_send(c, p, len);
		evbuffer_drain(c->hold, len);
	}
}

/* The peer's certificate: root-signed (accepted into the store when new),
 * not revoked, not expired, a node's or a site's. */
static int
peer_trust_cb(const uint8_t *env, size_t len, const struct record *cert,
    struct chan_peer *peer, const char **why_r, void *arg)
{
	struct agent *a = arg;
	struct record_cert c;
	uint64_t now = (uint64_t)time(NULL);
	enum accept_result res;

	res = store_accept(a->st, env, len, now);
	if (res != ACCEPT_STORED && res != ACCEPT_DUPLICATE &&
	    res != REJECT_STALE) {
		*why_r = store_accept_name(res);
		return -1;
	}
	/* A newer certificate of the same key may be held: that one says. */
	if (store_get_cert(a->st, peer->key_id, &c) != 1 ||
	    memcmp(c.pk, peer->pk, DKEY_PK_LEN) != 0) {
		*why_r = "unknown-key";
		return -1;
	}
	if (c.expires != 0 && c.expires <= now) {
		*why_r = "expired";
		return -1;
	}
	if (c.role != ROLE_NODE && c.role != ROLE_SITE) {
		*why_r = "not a node or site key";
		return -1;
	}
	if (!record_name_valid(c.name) || strlen(c.name) > GOSSIP_NAME_MAX) {
		*why_r = "certificate names no node";
		return -1;
	}
	mm_strlcpy(peer->site, c.site, sizeof(peer->site));
	mm_strlcpy(peer->name, c.name, sizeof(peer->name));
	peer->role = c.role;
	if (res == ACCEPT_STORED)
		log_info("- gossip cert-learnt site=%s name=%s", c.site,
		    c.name);
	return 0;
}

static void peer_ready_cb(struct chan_ev *ce, const struct chan_peer *peer,
    void *arg);
static void peer_frame_cb(struct chan_ev *ce, const uint8_t *payload,
    size_t len, void *arg);
static void peer_closed_cb(struct chan_ev *ce, const char *reason,
    void *arg);

static const struct chan_ev_cbs peer_cbs = {
	peer_ready_cb, peer_frame_cb, peer_closed_cb
};

static struct pconn *
pconn_new(struct bufferevent *bev, enum chan_role role, const char *addr)
{
	struct timeval hs = { PEER_HS_TIMEOUT_S, 0 };
	struct chan_config cc;
	struct pconn *c;
	struct chan *ch;
	const char *why = NULL;

	memset(&cc, 0, sizeof(cc));
	cc.role = role;
	cc.key = &ag.a->key;
	cc.cert = gp.cert;
	cc.cert_len = gp.cert_len;
	cc.trust = peer_trust_cb;
	cc.trust_arg = ag.a;
	if ((ch = chan_new(&cc, &why)) == NULL) {
		log_warnx("- gossip channel-failed reason=\"%s\"", why);
		bufferevent_free(bev);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->seed = -1;
	c->outbound = role == CHAN_INITIATOR;
	c->last_ms = mm_now_ms();
	c->hold = evbuffer_new();
	if (c->hold == NULL)
		abort();
	mm_strlcpy(c->addr, addr, sizeof(c->addr));
	c->next = gp.conns;
	gp.conns = c;
	gp.n_conns++;
	c->ce = chan_ev_new(bev, ch, &peer_cbs, c, &hs);
	return c;
}

/* Connects to addr ("HOST:PORT", IPv6 in brackets). NULL on failure. */
static struct pconn *
pconn_dial(const char *addr)
{
	struct sockaddr_storage ss;
	struct bufferevent *bev;
	int sslen = (int)sizeof(ss);

	if (gp.n_conns >= PEER_CONNS_MAX ||
	    evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss,
	    &sslen) != 0)
		return NULL;
	bev = bufferevent_socket_new(ag.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		return NULL;
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&ss,
	    sslen) != 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return pconn_new(bev, CHAN_INITIATOR, addr);
}

static void
peer_ready_cb(struct chan_ev *ce, const struct chan_peer *peer, void *arg)
{
	struct pconn *c = arg, *o, *next;
	const char *self = ag.conf->node_name;

	mm_strlcpy(c->name, peer->name, sizeof(c->name));
	if (strcmp(peer->name, self) == 0) {
		/* A seed that is this node's own address. */
		if (c->seed >= 0)
			gp.seeds[c->seed].known = true;
		pconn_close(c);
		return;
	}
	if (c->want[0] != '\0' && strcmp(c->want, peer->name) != 0) {
		log_warnx("- gossip peer-unexpected addr=%s want=%s got=%s",
		    c->addr, c->want, peer->name);
		dial_failed(c->want, mm_now_ms());
		pconn_close(c);
		return;
	}
	c->ready = true;
	c->last_ms = mm_now_ms();
	if (c->outbound) {
		dial_ok(c->want[0] != '\0' ? c->want : c->addr);
		dial_ok(peer->name);
	}
	log_info("- gossip peer-up site=%s name=%s addr=%s dir=%s", peer->site,
	    peer->name, c->addr, c->outbound ? "out" : "in");
	if (c->seed >= 0) {
		gp.seeds[c->seed].known = true;
		(void)gossip_add_seed(gp.g, peer->name, peer->site, c->addr);
	}
	/* One channel per pair: of two, both ends keep the one whose
	 * initiator has the lower name. */
	for (o = gp.conns; o != NULL; o = next) {
		const char *oi, *ci;

		next = o->next;
		if (o == c || !o->ready || strcmp(o->name, c->name) != 0)
			continue;
		oi = o->outbound ? self : o->name;
		ci = c->outbound ? self : c->name;
		if (strcmp(ci, oi) < 0 || (strcmp(ci, oi) == 0 &&
		    c->outbound == o->outbound)) {
			pconn_flush_hold(o);
			pconn_close(o);
		} else {
			pconn_flush_hold(c);
			pconn_close(c);
			return;
		}
	}
	pconn_flush_hold(c);
}

static void
peer_frame_cb(struct chan_ev *ce, const uint8_t *payload, size_t len,
    void *arg)
{
	struct pconn *c = arg;

	c->last_ms = mm_now_ms();
	c->unanswered_ms = 0;
	if (check_peer_frame(c, payload, len))
		return;
	(void)gossip_recv(gp.g, c->name, payload, len, c->last_ms);
}

static void
peer_closed_cb(struct chan_ev *ce, const char *reason, void *arg)
{
	struct pconn *c = arg;
	uint64_t now = mm_now_ms();

	if (c->ready)
		log_info("- gossip peer-down name=%s addr=%s reason=\"%s\"",
		    c->name, c->addr, reason);
	else if (c->outbound)
		log_info("- gossip dial-failed want=%s addr=%s reason=\"%s\"",
		    c->want[0] != '\0' ? c->want : "-", c->addr, reason);
	else
		log_warnx("- gossip handshake-failed addr=%s reason=\"%s\"",
		    c->addr, reason);
	if (c->outbound && !c->ready)
		dial_failed(c->want[0] != '\0' ? c->want : c->addr, now);
	pconn_close(c);
}

static void
peer_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent *bev;
	char host[INET6_ADDRSTRLEN + 8], addr[GOSSIP_ADDR_MAX + 1];
	int port = 0;

	host[0] = '\0';
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;

		evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(addr, sizeof(addr), "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;

		evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host,
		    sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(addr, sizeof(addr), "[%s]:%d", host, port);
	} else {
		snprintf(addr, sizeof(addr), "?");
	}
	if (gp.n_conns >= PEER_CONNS_MAX) {
		log_warnx("- gossip refused addr=%s reason=too-many-peers",
		    addr);
		evutil_closesocket(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	bev = bufferevent_socket_new(ag.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	(void)pconn_new(bev, CHAN_RESPONDER, addr);
}

/* ---- the gossip core's I/O -------------------------------------------- */

static void
gio_send(void *arg, const char *to, const uint8_t *buf, size_t len)
{
	struct gossip_member_info m;
	char addr[GOSSIP_ADDR_MAX + 1];
	struct pconn *c;
	uint64_t now = mm_now_ms();

	if ((c = pconn_find(to, true)) == NULL &&
	    (c = pconn_find(to, false)) == NULL) {
		if (gossip_member_get(gp.g, to, &m) != 1 ||
		    m.addr[0] == '\0' || !dial_allowed(to, now))
			return;
		mm_strlcpy(addr, m.addr, sizeof(addr));
		if ((c = pconn_dial(addr)) == NULL) {
			dial_failed(to, now);
			return;
		}
		mm_strlcpy(c->want, to, sizeof(c->want));
	}
	pconn_send(c, buf, len);
}

struct digest_ctx {
	struct gossip_digest_entry *out;
	size_t max, n;
};

static int
digest_cb(const char *origin, uint64_t contig, uint64_t highest, void *arg)
{
	struct digest_ctx *dc = arg;

	if (contig == 0 || strlen(origin) > GOSSIP_NAME_MAX)
		return 0;
	mm_strlcpy(dc->out[dc->n].origin, origin,
	    sizeof(dc->out[dc->n].origin));
	dc->out[dc->n].seq = contig;
	return ++dc->n >= dc->max;
}

static size_t
gio_digest(void *arg, struct gossip_digest_entry *out, size_t max)
{
	struct agent *a = arg;
	struct digest_ctx dc = { out, max, 0 };

	if (max == 0 || store_foreach_origin(a->st, digest_cb, &dc) != 0)
		return 0;
	return dc.n;
}

struct fetch_ctx {
	gossip_emit_cb emit;
	void *ctx;
};

static int
fetch_cb(uint64_t seq, const uint8_t *env, size_t len, void *arg)
{
	struct fetch_ctx *fc = arg;

	return fc->emit(fc->ctx, env, len);
}

static void
gio_fetch(void *arg, const char *origin, uint64_t from_seq,
    gossip_emit_cb emit, void *ctx)
{
	struct agent *a = arg;
	struct fetch_ctx fc = { emit, ctx };

	(void)store_log_range(a->st, origin, from_seq, fetch_cb, &fc);
}

/* The accept rule, plus: a USER record is numbered under its signer's own
 * name (else a certified node could fill another origin's log). What the
 * rule refuses as superseded is kept in the log (no hidden gaps) and not
 * held against the sender; so is a record whose signer's certificate has
 * not reached us yet (it comes again once it has). */
enum gossip_accept
agent_gossip_accept(struct agent *a, const char *from, const uint8_t *env,
    size_t len, uint64_t now_s)
{
	struct record r;
	struct record_cert c;
	enum accept_result res;
	const char *why = NULL;
	char kid[DKEY_ID_HEX_LEN + 1];
	int f;

	if (len > RECORD_MAX || record_decode(env, len, &r, &why) != 0) {
		log_warnx("- gossip record-rejected from=%s result=%s",
		    from, store_accept_name(REJECT_MALFORMED));
		return GOSSIP_ACCEPT_REJECT;
	}
	dkey_id_hex(r.key_id, kid);
	if (r.kind == RECORD_USER && store_get_cert(a->st, r.key_id, &c) == 1 &&
	    strcmp(c.name, r.u.user.origin) != 0) {
		log_warnx("- gossip record-rejected from=%s result=origin-"
		    "mismatch origin=%s key_id=%s", from, r.u.user.origin,
		    kid);
		return GOSSIP_ACCEPT_REJECT;
	}
	res = store_accept(a->st, env, len, now_s);
	switch (res) {
	case ACCEPT_STORED:
	case ACCEPT_EQUIVOCATION:
		if (r.kind == RECORD_USER)
			log_debug("- gossip record-stored from=%s origin=%s "
			    "origin_seq=%llu", from, r.u.user.origin,
			    (unsigned long long)r.u.user.origin_seq);
		return GOSSIP_ACCEPT_NEW;
	case ACCEPT_DUPLICATE:
	case REJECT_STORE:
		return GOSSIP_ACCEPT_DUP;
	case REJECT_STALE:
	case REJECT_REVOKED:
	case REJECT_EXPIRED:
		f = store_log_fill(a->st, env, len, now_s);
		if (f < 0)
			log_warnx("- gossip record-rejected from=%s result=%s "
			    "key_id=%s", from, store_accept_name(res), kid);
		return GOSSIP_ACCEPT_DUP;
	case REJECT_UNKNOWN_KEY:
		log_warnx("- gossip record-rejected from=%s result=%s "
		    "key_id=%s", from, store_accept_name(res), kid);
		return GOSSIP_ACCEPT_DUP;
	default:
		log_warnx("- gossip record-rejected from=%s result=%s "
		    "key_id=%s", from, store_accept_name(res), kid);
		return GOSSIP_ACCEPT_REJECT;
	}
}

static enum gossip_accept
gio_accept(void *arg, const char *from, const uint8_t *env, size_t len,
    uint64_t now_ms)
{
	return agent_gossip_accept(arg, from, env, len, (uint64_t)time(NULL));
}

static void
gio_member_change(void *arg, const struct gossip_member_info *m)
{
	static const char *const ev[] = { "member-alive", "member-suspect",
		"member-dead" };

	if (m->self)
		return;
	if (m->state == GOSSIP_ALIVE)
		log_info("- gossip %s site=%s name=%s addr=%s incarnation=%llu",
		    ev[m->state], m->site, m->name, m->addr,
		    (unsigned long long)m->incarnation);
	else
		log_warnx("- gossip %s site=%s name=%s addr=%s "
		    "incarnation=%llu", ev[m->state], m->site, m->name,
		    m->addr, (unsigned long long)m->incarnation);
}

static const struct gossip_io gossip_io = {
	gio_send, gio_digest, gio_fetch, gio_accept, gio_member_change
};

static void
housekeep(uint64_t now)
{
	struct pconn *c, *next;
	size_t i;

	for (c = gp.conns; c != NULL; c = next) {
		next = c->next;
		if (now - c->last_ms > PEER_IDLE_MS) {
			log_debug("- gossip peer-idle name=%s", c->name);
			pconn_close(c);
		} else if (c->ready && c->unanswered_ms != 0 &&
		    now - c->unanswered_ms > PEER_SILENT_MS) {
			log_info("- gossip peer-silent name=%s addr=%s", c->name,
			    c->addr);
			pconn_close(c);
		}
	}
	for (i = 0; i < gp.n_seeds; i++) {
		struct seed *s = &gp.seeds[i];

		if (s->known || !dial_allowed(s->addr, now))
			continue;
		for (c = gp.conns; c != NULL; c = c->next)
			if (c->seed == (int)i)
				break;
		if (c != NULL)
			continue;
		if ((c = pconn_dial(s->addr)) == NULL)
			dial_failed(s->addr, now);
		else
			c->seed = (int)i;
	}
}

/* ---- membership snapshot for the proxy workers ------------------------
 *
 * The workers route a cross-site session to the nearest healthy node of
 * the owner site without asking this process: the alive and suspect
 * members that take sessions, with their RTTs, are written to the store
 * when that view changes, at most once per MEMBERS_PUBLISH_MS. Small RTT
 * jitter is not a change: it would cost a store write every second. */
#define MEMBERS_PUBLISH_MS 1000
#define MEMBERS_RTT_SLACK_MS 2		/* and a fifth of the RTT */

struct snap_entry {
	char site[GOSSIP_SITE_MAX + 1];
	char name[GOSSIP_NAME_MAX + 1];
	char saddr[GOSSIP_ADDR_MAX + 1];
	bool suspect;
	int64_t rtt_ms;
};

struct snap {
	struct snap_entry *e;
	size_t n, cap;
};

static struct {
	struct snap last;		/* as last written */
	bool written;
	uint64_t last_ms;
} ms;

static void
snap_collect_cb(void *arg, const struct gossip_member_info *m)
{
	struct snap *sn = arg;
	struct snap_entry *e;

	if (m->self || m->state == GOSSIP_DEAD || m->session_addr[0] == '\0' ||
	    sn->n >= DIR_MEMBERS_MAX)
		return;
	if (sn->n == sn->cap) {
		sn->cap = sn->cap ? sn->cap * 2 : 16;
		sn->e = xrealloc(sn->e, sn->cap * sizeof(*sn->e));
	}
	e = &sn->e[sn->n++];
	mm_strlcpy(e->site, m->site, sizeof(e->site));
	mm_strlcpy(e->name, m->name, sizeof(e->name));
	mm_strlcpy(e->saddr, m->session_addr, sizeof(e->saddr));
	e->suspect = m->state == GOSSIP_SUSPECT;
	e->rtt_ms = m->rtt_ms;
}

static bool
rtt_close(int64_t a, int64_t b)
{
	int64_t d = a > b ? a - b : b - a, hi = a > b ? a : b;

	if ((a < 0) != (b < 0))
		return false;
	return a < 0 || d <= MEMBERS_RTT_SLACK_MS || d * 5 <= hi;
}

static bool
snap_same(const struct snap *x, const struct snap *y)
{
	size_t i;

	if (x->n != y->n)
		return false;
	for (i = 0; i < x->n; i++) {
		const struct snap_entry *a = &x->e[i], *b = &y->e[i];

		if (strcmp(a->name, b->name) != 0 ||
		    strcmp(a->site, b->site) != 0 ||
		    strcmp(a->saddr, b->saddr) != 0 ||
		    a->suspect != b->suspect || !rtt_close(a->rtt_ms, b->rtt_ms))
			return false;
	}
	return true;
}

static int
snap_write(struct store *st, const struct snap *sn)
{
	struct dir_member *m = xcalloc(sn->n + 1, sizeof(*m));
	uint8_t *buf;
	size_t len, i;
	int r;

	for (i = 0; i < sn->n; i++) {
		m[i].site = sn->e[i].site;
		m[i].name = sn->e[i].name;
		m[i].session_addr = sn->e[i].saddr;
		m[i].suspect = sn->e[i].suspect;
		m[i].rtt_ms = sn->e[i].rtt_ms;
	}
	buf = dir_members_encode(m, sn->n, (uint64_t)time(NULL), &len);
	r = store_put_members(st, buf, len);
	free(buf);
	free(m);
	return r;
}

/* From the gossip timer. */
static void
members_publish(uint64_t now)
{
	struct snap sn = { NULL, 0, 0 };

	if (ms.written && now - ms.last_ms < MEMBERS_PUBLISH_MS)
		return;
	gossip_foreach_member(gp.g, snap_collect_cb, &sn);
	if (ms.written && snap_same(&sn, &ms.last)) {
		free(sn.e);
		return;
	}
	ms.last_ms = now;
	if (snap_write(ag.a->st, &sn) != 0) {
		log_warnx("- gossip members-publish-failed members=%zu", sn.n);
		free(sn.e);
		return;
	}
	log_debug("- gossip members-published members=%zu", sn.n);
	free(ms.last.e);
	ms.last = sn;
	ms.written = true;
}

/* Without gossip, a snapshot an earlier run left must not route. */
static void
members_unpublish(void)
{
	struct snap none = { NULL, 0, 0 };
	uint8_t *buf = NULL;
	size_t len = 0;

	if (store_get_members(ag.a->st, &buf, &len) == 1 &&
	    snap_write(ag.a->st, &none) != 0)
		log_warnx("- gossip members-unpublish-failed");
	free(buf);
}

static void
members_stop(void)
{
	free(ms.last.e);
	memset(&ms, 0, sizeof(ms));
}

static void
gossip_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = mm_now_ms();

	gossip_tick(gp.g, now);
	members_publish(now);
	if (now - gp.last_housekeep >= PEER_HOUSEKEEP_MS) {
		gp.last_housekeep = now;
		housekeep(now);
	}
	pconn_reap();
}

struct own_cert_ctx {
	const uint8_t *id;
	const char *site;
	uint64_t issued;
	uint8_t *env;
	size_t len;
	char name[RECORD_NAME_MAX + 1];
};

static int
own_cert_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct own_cert_ctx *oc = arg;
	uint8_t id[DKEY_ID_LEN];

	dkey_id(r->u.cert.pk, id);
	if (memcmp(id, oc->id, DKEY_ID_LEN) != 0 ||
	    strcmp(r->u.cert.site, oc->site) != 0 ||
	    (oc->env != NULL && r->u.cert.issued <= oc->issued))
		return 0;
	free(oc->env);
	oc->env = xmalloc(len);
	memcpy(oc->env, env, len);
	oc->len = len;
	oc->issued = r->u.cert.issued;
	mm_strlcpy(oc->name, r->u.cert.name, sizeof(oc->name));
	return 0;
}

/* Starts gossip on peer_fd (a bound, listening TCP socket). */
static void
gossip_start(const struct mm_config *conf, int peer_fd)
{
	struct gossip_conf gc;
	struct own_cert_ctx oc;
	struct timeval tv = { 0, GOSSIP_TICK_MS * 1000 };
	uint64_t seed = 0;
	size_t i;

	memset(&oc, 0, sizeof(oc));
	oc.id = ag.a->key.id;
	oc.site = conf->site;
	if (store_foreach_cert(ag.a->st, own_cert_cb, &oc) != 0 ||
	    oc.env == NULL)
		fatalx("gossip: no certificate of this node's key for site %s",
		    conf->site);
	if (strcmp(oc.name, conf->node_name) != 0)
		log_warnx("- gossip cert-name-mismatch cert=%s node-name=%s "
		    "(other nodes refuse records of this node: certify the "
		    "key with --name %s)", oc.name, conf->node_name,
		    conf->node_name);
	gp.cert = oc.env;
	gp.cert_len = oc.len;
	gossip_conf_defaults(&gc);
	gc.name = conf->node_name;
	gc.site = conf->site;
	gc.addr = conf->peer_address;
	gc.session_addr = conf->session_address;
	/* Raised on every start, so a restarted node refutes its death. */
	gc.incarnation = (uint64_t)time(NULL) * 1000 + mm_now_ms() % 1000;
	while (seed == 0)
		randombytes_buf(&seed, sizeof(seed));
	gc.seed = seed;
	if ((gp.g = gossip_new(&gc, &gossip_io, ag.a)) == NULL)
		fatalx("gossip: bad settings (node-name, site or "
		    "peer-address too long)");
	ag.a->g = gp.g;
	(void)store_origin_contig(ag.a->st, conf->node_name,
	    &ag.a->published);
	gp.seeds = xcalloc(conf->n_peers + 1, sizeof(*gp.seeds));
	for (i = 0; i < conf->n_peers; i++)
		gp.seeds[i].addr = conf->peers[i];
	gp.n_seeds = conf->n_peers;
	gp.lst = evconnlistener_new(ag.base, peer_accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE, -1, peer_fd);
	if (gp.lst == NULL)
		fatalx("peer listener failed");
	gp.tick_ev = event_new(ag.base, -1, EV_PERSIST, gossip_tick_cb, NULL);
	evtimer_add(gp.tick_ev, &tv);
	log_info("- gossip start name=%s site=%s addr=%s session=%s seeds=%zu",
	    conf->node_name, conf->site, conf->peer_address,
	    conf->session_address != NULL ? conf->session_address : "-",
	    conf->n_peers);
}

static void
gossip_stop(void)
{
	if (gp.g == NULL)
		return;
	check_stop();
	while (gp.conns != NULL)
		pconn_close(gp.conns);
	pconn_reap();
	evconnlistener_free(gp.lst);
	event_free(gp.tick_ev);
	ag.a->g = NULL;
	members_stop();
	gossip_free(gp.g);
	gp.g = NULL;
	free(gp.cert);
	free(gp.seeds);
}

void
agent_main(const struct mm_config *conf, const struct dkey *key,
    int listen_fd, int peer_fd, struct mm_metrics *m)
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
	if ((ag.a = agent_new(conf, key, &st, &err)) == NULL)
		fatalx("%s", err);
	if ((ag.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
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
	if (peer_fd >= 0)
		gossip_start(conf, peer_fd);
	else
		members_unpublish();
	if (ag.metrics != NULL) {
		struct timeval sec = { 1, 0 };

		ag.metrics_ev = event_new(ag.base, -1, EV_PERSIST, metrics_cb,
		    NULL);
		evtimer_add(ag.metrics_ev, &sec);
		metrics_cb(-1, 0, NULL);
	}
	event_base_dispatch(ag.base);
	if (ag.metrics_ev != NULL)
		event_free(ag.metrics_ev);
	gossip_stop();
	while (ag.clients != NULL)
		client_free(ag.clients);
	evconnlistener_free(lst);
	for (i = 0; i < MM_ARRAY_SIZE(sigs); i++)
		event_free(sev[i]);
	event_free(ag.purge_ev);
	event_base_free(ag.base);
	agent_free(ag.a);
	log_info("- dir agent-stopped");
	_exit(0);
}

/* ---- consistency check (mmctl check) ----------------------------------
 *
 * The node mmctl talks to runs the check: it asks every member gossip
 * knows of for its tree root, origins, back ends and verify summary
 * (CHECK_ROOT_REQ, CHECK_VERIFY_REQ), descends the tree of each node whose
 * root differs from its own (buckets, then leaves, then the users of the
 * differing leaves), fetches every node's record of each user found to
 * differ, and answers mmctl with the report (check.h). One check runs at a
 * time; the answers of the others are served from the event loop. */

#define AGENT_CHECK_TIMEOUT_MS 15000	/* the whole check */
#define AGENT_CHECK_FETCH_MS 3000	/* records, after a timeout */
#define AGENT_CHECK_STUCK_S 3600	/* a move older than this is stuck */
#define AGENT_CHECK_TREE_MS 30000	/* a served tree is reused this long */
#define AGENT_CHECK_LEAVES_REQ 16	/* leaves per CHECK_USERS_REQ */
#define AGENT_CHECK_PEERS_MAX 1024

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

static struct {
	/* serving */
	struct store_tree *served;
	uint64_t served_ms;
	struct check_msg *in, *out;
	uint8_t *buf;
	/* the check this node runs, for client */
	struct client *client;
	uint64_t id;
	struct store_tree *mine;
	struct check_report *rep;
	struct ckpeer *peers;
	size_t n_peers;
	char **diff;			/* users found to differ */
	size_t n_diff;
	bool fetching;
	struct event *timer;
} ck;

static void
check_scratch(void)
{
	if (ck.in == NULL) {
		ck.in = xmalloc(sizeof(*ck.in));
		ck.out = xmalloc(sizeof(*ck.out));
		ck.buf = xmalloc(CHECK_MSG_MAX);
	}
	ck.out->type = 0;
	ck.out->id = 0;
	ck.out->n_origins = ck.out->n_backends = ck.out->n_paths = 0;
	ck.out->n_leaves = ck.out->n_users = ck.out->n_faults = 0;
	ck.out->complete = false;
	ck.out->root = NULL;
	ck.out->users = ck.out->checked = ck.out->bad = 0;
	ck.out->equivocations = 0;
}

static struct check_slice
check_str(const char *s)
{
	struct check_slice sl = { (const uint8_t *)s, strlen(s) };

	return sl;
}

static void
check_send(const char *to, struct pconn *c)
{
	int len = check_msg_encode(ck.out, ck.buf, CHECK_MSG_MAX);

	if (len < 0) {
		log_warnx("- check encode-failed type=%d", (int)ck.out->type);
		return;
	}
	if (c != NULL)
		pconn_send(c, ck.buf, (size_t)len);
	else
		gio_send(NULL, to, ck.buf, (size_t)len);
}

/* ---- what this node knows ---- */

struct ck_origin_ctx {
	struct check_node *node;
	struct check_msg *m;
	char (*names)[RECORD_NAME_MAX + 1];
};

static int
check_origin_cb(const char *origin, uint64_t contig, uint64_t highest,
    void *arg)
{
	struct ck_origin_ctx *oc = arg;

	if (oc->node != NULL)
		check_node_origin(oc->node, origin, contig, highest);
	if (oc->m != NULL && oc->m->n_origins < CHECK_ORIGINS_MAX &&
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
	struct check_node *node;
	struct check_msg *m;
	char (*text)[2][CHECK_TEXT_MAX + 1];
};

static void
check_fault_cb(const char *what, const char *reason, void *arg)
{
	struct ck_fault_ctx *fc = arg;
	size_t i;

	if (fc->node != NULL)
		check_node_fault(fc->node, what, reason);
	if (fc->m == NULL || fc->m->n_faults >= CHECK_FAULTS_MAX)
		return;
	i = fc->m->n_faults++;
	mm_strlcpy(fc->text[i][0], what, CHECK_TEXT_MAX + 1);
	mm_strlcpy(fc->text[i][1], reason, CHECK_TEXT_MAX + 1);
	fc->m->faults[i].what = check_str(fc->text[i][0]);
	fc->m->faults[i].reason = check_str(fc->text[i][1]);
}

static int
check_local_record_cb(const struct record *r, const uint8_t *env,
    size_t len, void *arg)
{
	check_report_local_record(arg, env, len);
	return 0;
}

/* The local node's part of the report: its tree (kept in *tree_r when not
 * NULL), origins, back ends, verify summary and the per-record checks. */
static int
check_local(struct agent *a, struct check_report *rep,
    struct store_tree **tree_r)
{
	struct check_node *n;
	struct store_tree *t = NULL;
	struct store_verify_report vr;
	struct ck_origin_ctx oc = { NULL, NULL, NULL };
	struct ck_fault_ctx fc = { NULL, NULL, NULL };
	size_t i;

	n = check_report_node(rep, a->conf->site, a->conf->node_name);
	if (store_tree_build(a->st, &t) != 0) {
		check_node_unreachable(n, "store error");
		return -1;
	}
	check_node_root(n, store_tree_root(t), store_tree_users(t));
	oc.node = n;
	(void)store_foreach_origin(a->st, check_origin_cb, &oc);
	for (i = 0; i < a->conf->n_backends; i++)
		check_node_backend(n, a->conf->backends[i].name);
	fc.node = n;
	if (store_verify(a->st, (uint64_t)time(NULL), &vr, check_fault_cb,
	    &fc) == 0)
		check_node_verify(n, vr.checked, vr.bad, vr.equivocations);
	else
		check_node_incomplete(n, "verify failed: store error");
	(void)store_foreach_user(a->st, check_local_record_cb, rep);
	if (tree_r != NULL)
		*tree_r = t;
	else
		store_tree_free(t);
	return 0;
}

/* `check` without gossip (mmctl --direct, or no peers): this node only. */
static enum ctl_status
op_check(struct agent *a, size_t argc, char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	struct check_report *rep = check_report_new();
	enum ctl_status st;

	(void)check_local(a, rep, NULL);
	st = check_report_finish(rep, (uint64_t)time(NULL),
	    AGENT_CHECK_STUCK_S, rows, msg_r);
	check_report_free(rep);
	return st;
}

/* ---- serving other nodes' checks ---- */

static struct store_tree *
check_served_tree(bool fresh)
{
	uint64_t now = mm_now_ms();

	if (ck.served != NULL && !fresh &&
	    now - ck.served_ms < AGENT_CHECK_TREE_MS)
		return ck.served;
	store_tree_free(ck.served);
	ck.served = NULL;
	if (store_tree_build(ag.a->st, &ck.served) != 0)
		return NULL;
	ck.served_ms = now;
	return ck.served;
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
check_serve(struct pconn *c, const struct check_msg *q)
{
	struct check_msg *m = ck.out;
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
		struct ck_origin_ctx oc = { NULL, m, NULL };

		if ((t = check_served_tree(true)) == NULL)
			return;
		m->type = CHECK_ROOT;
		m->site = check_str(ag.conf->site);
		m->node = check_str(ag.conf->node_name);
		m->root = store_tree_root(t);
		m->users = store_tree_users(t);
		onames = xcalloc(CHECK_ORIGINS_MAX, sizeof(*onames));
		oc.names = onames;
		(void)store_foreach_origin(ag.a->st, check_origin_cb, &oc);
		for (i = 0; i < ag.conf->n_backends &&
		    i < CHECK_BACKENDS_MAX; i++)
			m->backends[m->n_backends++] =
			    check_str(ag.conf->backends[i].name);
		break;
	}
	case CHECK_BUCKETS_REQ:
		if ((t = check_served_tree(false)) == NULL)
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
		if (store_tree_leaf_users(ag.a->st, bits, check_users_cb,
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
			if (store_get_user(ag.a->st, names[i], &u, &envs[i],
			    &len) == 1) {
				m->list[i].env.p = envs[i];
				m->list[i].env.len = len;
			}
		}
		m->n_users = q->n_users;
		break;
	case CHECK_VERIFY_REQ: {
		struct store_verify_report vr;
		struct ck_fault_ctx fc = { NULL, m, NULL };

		m->type = CHECK_VERIFY;
		text = xcalloc(CHECK_FAULTS_MAX, sizeof(*text));
		fc.text = text;
		memset(&vr, 0, sizeof(vr));
		if (store_verify(ag.a->st, (uint64_t)time(NULL), &vr,
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
	check_send(NULL, c);
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
check_end(void)
{
	size_t i, j;

	for (i = 0; i < ck.n_peers; i++) {
		free(ck.peers[i].leaves);
		for (j = 0; j < ck.peers[i].n_users; j++)
			free(ck.peers[i].users[j].user);
		free(ck.peers[i].users);
	}
	free(ck.peers);
	ck.peers = NULL;
	ck.n_peers = 0;
	for (i = 0; i < ck.n_diff; i++)
		free(ck.diff[i]);
	free(ck.diff);
	ck.diff = NULL;
	ck.n_diff = 0;
	store_tree_free(ck.mine);
	ck.mine = NULL;
	check_report_free(ck.rep);
	ck.rep = NULL;
	ck.client = NULL;
	ck.fetching = false;
	if (ck.timer != NULL)
		evtimer_del(ck.timer);
}

static void
check_finish(void)
{
	struct ctl_rows rows;
	enum ctl_status st;
	struct client *c = ck.client;
	char *msg = NULL;

	ctl_rows_init(&rows);
	st = check_report_finish(ck.rep, (uint64_t)time(NULL),
	    AGENT_CHECK_STUCK_S, &rows, &msg);
	log_info("- check done status=%d result=\"%s\"", (int)st, msg);
	if (c != NULL) {
		client_reply(c, st, msg, &rows);
		bufferevent_enable(c->bev, EV_READ);
	}
	ctl_rows_clear(&rows);
	free(msg);
	check_end();
}

static void
check_diff_add(const char *user)
{
	size_t i;

	for (i = 0; i < ck.n_diff; i++)
		if (strcmp(ck.diff[i], user) == 0)
			return;
	ck.diff = xrealloc(ck.diff, (ck.n_diff + 1) * sizeof(*ck.diff));
	ck.diff[ck.n_diff++] = xstrdup(user);
}

/* Phase two: every node's record of every user found to differ. */
static void
check_fetch(void)
{
	struct check_node *local = check_report_local(ck.rep);
	size_t i, j, k;

	ck.fetching = true;
	for (i = 0; i < ck.n_diff; i++) {
		struct record_user u;
		uint8_t *env = NULL;
		size_t len = 0;

		if (store_get_user(ag.a->st, ck.diff[i], &u, &env,
		    &len) != 1)
			len = 0;
		check_node_record(local, ck.diff[i], len > 0 ? env : NULL,
		    len);
		free(env);
	}
	for (i = 0; i < ck.n_peers; i++) {
		struct ckpeer *p = &ck.peers[i];

		if (!p->have_root || check_node_same(p->node))
			continue;
		for (j = 0; j < ck.n_diff; j += CHECK_RECORDS_MAX) {
			check_scratch();
			ck.out->type = CHECK_RECORD_REQ;
			ck.out->id = ck.id;
			for (k = j; k < ck.n_diff && k < j + CHECK_RECORDS_MAX;
			    k++)
				ck.out->list[k - j].user = check_str(ck.diff[k]);
			ck.out->n_users = k - j;
			check_send(p->name, NULL);
			p->pending_rec++;
		}
	}
}

static void
check_progress(void)
{
	size_t i;

	for (i = 0; i < ck.n_peers; i++) {
		const struct ckpeer *p = &ck.peers[i];

		if (!ck.fetching && (!p->descended || !p->have_verify))
			return;
		if (ck.fetching && p->pending_rec > 0)
			return;
	}
	if (!ck.fetching && ck.n_diff > 0) {
		check_fetch();
		check_progress();
		return;
	}
	check_finish();
}

static int
ckuser_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ckuser *)a)->user,
	    ((const struct ckuser *)b)->user);
}

struct ck_cmp_ctx {
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
		check_diff_add(user);
		return 0;
	}
	cc->seen[f - cc->p->users] = 1;
	if (memcmp(f->hash, hash, CHECK_HASH_LEN) != 0)
		check_diff_add(user);
	return 0;
}

/* The peer's descent is over: its users of the differing leaves against
 * ours. */
static void
check_descended(struct ckpeer *p)
{
	struct ck_cmp_ctx cc = { p, NULL };
	size_t i;

	p->descended = true;
	if (p->leaves == NULL)
		return;
	if (p->n_users > 0)
		qsort(p->users, p->n_users, sizeof(*p->users), ckuser_cmp);
	cc.seen = xcalloc(p->n_users + 1, 1);
	if (store_tree_leaf_users(ag.a->st, p->leaves, check_cmp_cb,
	    &cc) != 0)
		check_node_incomplete(p->node, "local store error");
	for (i = 0; i < p->n_users; i++)
		if (!cc.seen[i])
			check_diff_add(p->users[i].user);
	free(cc.seen);
}

static void
check_ask_leaves(struct ckpeer *p, const uint32_t *leaves, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i % AGENT_CHECK_LEAVES_REQ == 0) {
			if (i > 0) {
				check_send(p->name, NULL);
				p->pending++;
			}
			check_scratch();
			ck.out->type = CHECK_USERS_REQ;
			ck.out->id = ck.id;
		}
		ck.out->leaves[ck.out->n_leaves++] = leaves[i];
		if (p->leaves == NULL)
			p->leaves = xcalloc(STORE_TREE_LEAVES / 8, 1);
		p->leaves[leaves[i] / 8] |= (uint8_t)(1u << (leaves[i] % 8));
	}
	if (n > 0) {
		check_send(p->name, NULL);
		p->pending++;
	}
}

static void
check_answer(struct ckpeer *p, const struct check_msg *m)
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
		check_scratch();
		ck.out->type = CHECK_BUCKETS_REQ;
		ck.out->id = ck.id;
		ck.out->paths[0] = 0;
		ck.out->n_paths = 1;
		check_send(p->name, NULL);
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
			    store_tree_bucket(ck.mine, 0) :
			    store_tree_leaf(ck.mine, (m->paths[i] - 1) *
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
				check_ask_leaves(p, list, n);
				continue;
			}
			for (j = 0; j < n; j += CHECK_PATHS_MAX) {
				size_t k;

				check_scratch();
				ck.out->type = CHECK_BUCKETS_REQ;
				ck.out->id = ck.id;
				for (k = j; k < n && k < j + CHECK_PATHS_MAX;
				    k++)
					ck.out->paths[k - j] = list[k] + 1;
				ck.out->n_paths = k - j;
				check_send(p->name, NULL);
				p->pending++;
			}
		}
		if (p->pending == 0)
			check_descended(p);
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
			check_descended(p);
		break;
	case CHECK_RECORD:
		if (!ck.fetching || p->pending_rec == 0)
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
	check_progress();
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t i;

	if (ck.rep == NULL)
		return;
	for (i = 0; i < ck.n_peers; i++) {
		struct ckpeer *p = &ck.peers[i];

		if (!p->have_root)
			check_node_unreachable(p->node, "no answer");
		else if (!p->descended || !p->have_verify ||
		    p->pending_rec > 0)
			check_node_incomplete(p->node, "timed out");
	}
	if (!ck.fetching && ck.n_diff > 0) {
		/* What was found still gets its records, briefly. */
		struct timeval tv = { AGENT_CHECK_FETCH_MS / 1000,
			(AGENT_CHECK_FETCH_MS % 1000) * 1000 };

		for (i = 0; i < ck.n_peers; i++) {
			ck.peers[i].descended = true;
			ck.peers[i].have_verify = true;
		}
		check_fetch();
		evtimer_add(ck.timer, &tv);
		return;
	}
	check_finish();
}

static void
check_member_cb(void *arg, const struct gossip_member_info *m)
{
	struct ckpeer *p;

	if (m->self || ck.n_peers >= AGENT_CHECK_PEERS_MAX)
		return;
	if (m->state == GOSSIP_DEAD) {
		check_node_unreachable(check_report_node(ck.rep, m->site,
		    m->name), "dead (gossip)");
		return;
	}
	ck.peers = xrealloc(ck.peers, (ck.n_peers + 1) * sizeof(*ck.peers));
	p = &ck.peers[ck.n_peers++];
	memset(p, 0, sizeof(*p));
	mm_strlcpy(p->name, m->name, sizeof(p->name));
	p->node = check_report_node(ck.rep, m->site, m->name);
}

/* Starts a check for client c; false when it cannot run here (then the
 * request is run as a local check). */
static bool
check_ctl_start(struct client *c, const struct ctl_msg *m)
{
	struct timeval tv = { AGENT_CHECK_TIMEOUT_MS / 1000,
		(AGENT_CHECK_TIMEOUT_MS % 1000) * 1000 };
	struct ctl_rows rows;
	size_t i;

	if (strcmp(m->op, "check") != 0 || m->argc != 0 || ag.a->g == NULL)
		return false;
	if (ck.rep != NULL) {
		ctl_rows_init(&rows);
		client_reply(c, CTL_TEMP, "a check is running already", &rows);
		return true;
	}
	ck.rep = check_report_new();
	if (check_local(ag.a, ck.rep, &ck.mine) != 0) {
		check_end();
		ctl_rows_init(&rows);
		client_reply(c, CTL_FAILED, "store error", &rows);
		return true;
	}
	ck.client = c;
	ck.id++;
	gossip_foreach_member(ag.a->g, check_member_cb, NULL);
	log_info("- check start nodes=%zu", ck.n_peers + 1);
	bufferevent_disable(c->bev, EV_READ);
	for (i = 0; i < ck.n_peers; i++) {
		check_scratch();
		ck.out->type = CHECK_ROOT_REQ;
		ck.out->id = ck.id;
		check_send(ck.peers[i].name, NULL);
		ck.out->type = CHECK_VERIFY_REQ;
		check_send(ck.peers[i].name, NULL);
	}
	if (ck.timer == NULL)
		ck.timer = evtimer_new(ag.base, check_timeout_cb, NULL);
	evtimer_add(ck.timer, &tv);
	check_progress();
	return true;
}

/* The client of the running check went away: the check is dropped. */
static void
check_client_gone(struct client *c)
{
	if (ck.rep != NULL && ck.client == c)
		check_end();
}

/* A check message from peer c: 1 taken, 0 not a check message. */
static int
check_peer_frame(struct pconn *c, const uint8_t *payload, size_t len)
{
	const char *why = NULL;
	size_t i;

	if (!check_msg_is(payload, len))
		return 0;
	check_scratch();
	if (check_msg_decode(payload, len, ck.in, &why) != 0) {
		log_warnx("- check bad-message from=%s reason=\"%s\"", c->name,
		    why);
		return 1;
	}
	if (ck.in->type % 2 == 1) {
		check_serve(c, ck.in);
		return 1;
	}
	if (ck.rep == NULL || ck.in->id != ck.id)
		return 1;
	for (i = 0; i < ck.n_peers; i++)
		if (strcmp(ck.peers[i].name, c->name) == 0)
			break;
	if (i < ck.n_peers)
		check_answer(&ck.peers[i], ck.in);
	return 1;
}

static void
check_stop(void)
{
	check_end();
	if (ck.timer != NULL)
		event_free(ck.timer);
	ck.timer = NULL;
	store_tree_free(ck.served);
	ck.served = NULL;
	free(ck.in);
	free(ck.out);
	free(ck.buf);
	ck.in = ck.out = NULL;
	ck.buf = NULL;
}
