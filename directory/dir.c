/* User lookup: normalise the login name, ask the signed directory (LMDB,
 * read-only) and then, where configured, the popmap; turn the answer into
 * a back end, host and port. */
#include "dir.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mm_log.h"
#include "mm_msgpack.h"
#include "mm_util.h"
#include "popmap.h"
#include "record.h"
#include "store.h"
#include "trust.h"

#define DIR_BUILTIN_NAME	"popmap"
#define DIR_LOG_VALUE_MAX	(4 * POPMAP_VALUE_MAX + 1)

#define DIR_STORE_RETRY_MS 1000	/* a store that would not open */

struct dir {
	const struct mm_config *conf;
	struct popmap *map;		/* NULL: no popmap configured */
	/* Opened on the first lookup, in the process that looks up: an LMDB
	 * environment must not cross a fork. */
	struct store *store;
	uint64_t store_retry_ms;
	/* Settings for "host[:port]" values: plaintext, no client address.
	 * Its host and tls_name are empty and its ports 0: dir_route
	 * carries the address. */
	struct mm_backend_conf builtin;
	char builtin_name[sizeof(DIR_BUILTIN_NAME)];
	char builtin_host[1];
};

static bool
is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

/* Decimal 1..65535, digits only. */
static int
parse_port(const char *s, uint16_t *port_r)
{
	unsigned long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (unsigned long)(*s - '0');
		if (v > 65535)
			return -1;
	}
	if (v == 0)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

int
dir_parse_hostport(const char *value, char *host, size_t hostlen,
    uint16_t *port_r)
{
	struct in6_addr a6;
	const char *colon, *p;
	size_t n;

	*port_r = 0;
	if (value[0] == '[') {
		const char *close = strchr(value, ']');

		if (close == NULL)
			return -1;
		n = (size_t)(close - (value + 1));
		if (n == 0 || n >= hostlen)
			return -1;
		memcpy(host, value + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, &a6) != 1)
			return -1;
		if (close[1] == '\0')
			return 0;
		if (close[1] != ':')
			return -1;
		return parse_port(close + 2, port_r);
	}

	colon = strchr(value, ':');
	if (colon != NULL && strchr(colon + 1, ':') != NULL) {
		/* Two colons and no brackets: only a whole IPv6 address. */
		if (mm_strlcpy(host, value, hostlen) >= hostlen ||
		    inet_pton(AF_INET6, host, &a6) != 1)
			return -1;
		return 0;
	}
	n = colon ? (size_t)(colon - value) : strlen(value);
	if (n == 0 || n >= hostlen)
		return -1;
	for (p = value; p < value + n; p++)
		if (!is_host_char(*p))
			return -1;
	memcpy(host, value, n);
	host[n] = '\0';
	if (colon != NULL)
		return parse_port(colon + 1, port_r);
	return 0;
}

/*
 * A back-end name wins over a host of the same spelling. A named back end
 * that does not serve proto gives DIR_TEMPFAIL, not DIR_NOTFOUND: the map
 * or config is wrong, and the user must not be told the password was bad.
 */
static enum dir_result
resolve(struct dir *dir, const char *value, enum mm_proto proto,
    struct dir_route *route_r)
{
	const struct mm_backend_conf *b;
	char esc[DIR_LOG_VALUE_MAX];
	uint16_t port;

	if ((b = mm_config_backend(dir->conf, value)) != NULL) {
		if (b->port[proto] == 0) {
			log_warnx("- dir backend-no-proto backend=%s proto=%s",
			    mm_log_escape(b->name, esc, sizeof(esc)),
			    mm_proto_name(proto));
			return DIR_TEMPFAIL;
		}
		if (b->host == NULL || mm_strlcpy(route_r->host, b->host,
		    sizeof(route_r->host)) >= sizeof(route_r->host)) {
			log_warnx("- dir bad-backend-host backend=%s",
			    mm_log_escape(b->name, esc, sizeof(esc)));
			route_r->host[0] = '\0';
			return DIR_TEMPFAIL;
		}
		route_r->backend = b;
		route_r->port = b->port[proto];
		return DIR_FOUND;
	}

	if (dir_parse_hostport(value, route_r->host, sizeof(route_r->host),
	    &port) != 0) {
		log_warnx("- dir bad-route value=%s",
		    mm_log_escape(value, esc, sizeof(esc)));
		route_r->host[0] = '\0';
		return DIR_TEMPFAIL;
	}
	route_r->backend = &dir->builtin;
	route_r->port = port ? port : mm_proto_default_port(proto,
	    MM_TLS_NONE);
	return DIR_FOUND;
}

/* Refuses a default back end that can never resolve, at start-up rather
 * than on every unknown user. */
static int
check_default(const struct mm_config *conf, char **errstr_r)
{
	char host[DIR_HOST_MAX];
	uint16_t port;

	if (conf->default_backend == NULL ||
	    mm_config_backend(conf, conf->default_backend) != NULL ||
	    dir_parse_hostport(conf->default_backend, host, sizeof(host),
	    &port) == 0)
		return 0;
	*errstr_r = xasprintf("default backend \"%s\": not a back end name "
	    "nor host[:port]", conf->default_backend);
	return -1;
}

struct dir *
dir_open(const struct mm_config *conf, char **errstr_r)
{
	struct dir *dir = xcalloc(1, sizeof(*dir));
	struct dir *ret = NULL;

	*errstr_r = NULL;
	dir->conf = conf;
	memcpy(dir->builtin_name, DIR_BUILTIN_NAME, sizeof(DIR_BUILTIN_NAME));
	dir->builtin.name = dir->builtin_name;
	dir->builtin.host = dir->builtin_host;
	dir->builtin.tls_name = dir->builtin_host;
	dir->builtin.tls = MM_TLS_NONE;
	dir->builtin.client_addr = MM_CADDR_NONE;
	dir->builtin.lmtp = true;	/* a popmap host takes mail by LMTP */

	if (check_default(conf, errstr_r) != 0)
		goto done;
	if (conf->popmap_file != NULL &&
	    (dir->map = popmap_load(conf->popmap_file, errstr_r)) == NULL)
		goto done;
	ret = dir;
	dir = NULL;
done:
	dir_free(dir);
	return ret;
}

int
dir_reload(struct dir *dir, char **errstr_r)
{
	struct popmap *map;

	*errstr_r = NULL;
	if (dir->conf->popmap_file == NULL)
		return 0;
	if ((map = popmap_load(dir->conf->popmap_file, errstr_r)) == NULL)
		return -1;
	popmap_free(dir->map);
	dir->map = map;
	return 0;
}

void
dir_free(struct dir *dir)
{
	if (dir == NULL)
		return;
	store_close(dir->store);
	popmap_free(dir->map);
	free(dir);
}

/* ASCII only: the result must not depend on the locale. */
static void
ascii_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + ('a' - 'A'));
}

int
dir_normalise_user(const struct mm_config *conf, const char *user,
    char *out, size_t outlen)
{
	const char *p;
	char *at;
	size_t len;
	int rc = -1;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (user == NULL || user[0] == '\0')
		goto done;
	for (p = user; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c == 0x7f || c == ' ')
			goto done;
	}
	if ((len = mm_strlcpy(out, user, outlen)) >= outlen)
		goto done;

	if (conf->user_strip_domain) {
		/* The last '@': a quoted local part may hold one. */
		if ((at = strrchr(out, '@')) != NULL)
			*at = '\0';
		if (out[0] == '\0')
			goto done;
	} else if (conf->user_add_domain != NULL &&
	    strchr(out, '@') == NULL) {
		size_t dlen = strlen(conf->user_add_domain);

		if (dlen > 0) {
			if (len + 1 + dlen >= outlen)
				goto done;
			out[len] = '@';
			memcpy(out + len + 1, conf->user_add_domain, dlen + 1);
		}
	}
	if (conf->user_lowercase)
		ascii_lower(out);
	rc = 0;
done:
	if (rc != 0)
		out[0] = '\0';
	return rc;
}

static struct store *
dir_store(struct dir *dir)
{
	char *err = NULL;
	uint64_t now;

	if (dir->store != NULL)
		return dir->store;
	now = mm_now_ms();
	if (now < dir->store_retry_ms)
		return NULL;
	dir->store = store_open(dir->conf->directory, STORE_READONLY, &err);
	if (dir->store == NULL) {
		log_warnx("- dir store-open-failed path=%s error=\"%s\"",
		    dir->conf->directory, err != NULL ? err : "?");
		free(err);
		dir->store_retry_ms = now + DIR_STORE_RETRY_MS;
	}
	return dir->store;
}

/*
 * The signed record decides. Deleted or unknown: NOTFOUND (like a wrong
 * password). Frozen mid-move, whoever owns it: FROZEN. Owned by another
 * site: REMOTE.
 * Active or moving at this site: the back end the record names, which must
 * be one this site's config defines (a record never carries an address).
 */
static enum dir_result
store_lookup(struct dir *dir, const char *key, enum mm_proto proto,
    struct dir_route *route_r)
{
	struct store *st = dir_store(dir);
	struct store_route u;
	char esc[2 * RECORD_NAME_MAX + 1];
	int r;

	if (st == NULL)
		return DIR_TEMPFAIL;
	r = store_get_route(st, key, &u);
	if (r < 0)
		return DIR_TEMPFAIL;
	if (r == 0 || u.state == USTATE_DELETED)
		return DIR_NOTFOUND;
	/* Frozen wherever the client is: the login waits here, and goes
	 * on to the new owner once this node has the TRANSFER, which the
	 * owner's nodes might not yet know, and not the reverse. */
	if (u.state == USTATE_FROZEN)
		return DIR_FROZEN;
	if (strcmp(u.site, dir->conf->site) != 0) {
		mm_strlcpy(route_r->site, u.site, sizeof(route_r->site));
		return DIR_REMOTE;
	}
	if (mm_config_backend(dir->conf, u.backend) == NULL) {
		log_warnx("- dir unknown-backend backend=%s",
		    mm_log_escape(u.backend, esc, sizeof(esc)));
		return DIR_TEMPFAIL;
	}
	return resolve(dir, u.backend, proto, route_r);
}

enum dir_result
dir_lookup(struct dir *dir, const char *user, enum mm_proto proto,
    struct dir_route *route_r)
{
	char key[DIR_USER_MAX + 1];
	char value[POPMAP_VALUE_MAX + 1];
	int r;

	memset(route_r, 0, sizeof(*route_r));
	if ((unsigned)proto >= MM_PROTO_COUNT) {
		log_warnx("- dir bad-proto proto=%d", (int)proto);
		return DIR_TEMPFAIL;
	}
	if (dir_normalise_user(dir->conf, user, key, sizeof(key)) != 0)
		return DIR_NOTFOUND;

	r = 0;
	if (dir->conf->directory != NULL) {
		enum dir_result dr = store_lookup(dir, key, proto, route_r);

		if (dr != DIR_NOTFOUND)
			return dr;
	}
	if (dir->conf->directory == NULL || dir->conf->popmap_fallback)
		r = dir->map ? popmap_lookup(dir->map, key, value,
		    sizeof(value)) : 0;
	if (r < 0) {
		/* Only a regex expansion can grow past the limit. */
		log_warnx("- dir popmap-value-too-long");
		return DIR_TEMPFAIL;
	}
	if (r == 1)
		return resolve(dir, value, proto, route_r);
	if (dir->conf->default_backend != NULL)
		return resolve(dir, dir->conf->default_backend, proto, route_r);
	/* A node still catching up may not know the user yet: a temporary
	 * answer, not "no such user" (a wrong password, a bounce). */
	if (dir->conf->directory != NULL && dir_store(dir) != NULL &&
	    store_get_behind(dir_store(dir), (uint64_t)time(NULL)) != 0)
		return DIR_TEMPFAIL;
	return DIR_NOTFOUND;
}

const char *
dir_result_name(enum dir_result r)
{
	switch (r) {
	case DIR_FOUND:
		return "found";
	case DIR_NOTFOUND:
		return "notfound";
	case DIR_TEMPFAIL:
		return "tempfail";
	case DIR_FROZEN:
		return "frozen";
	case DIR_REMOTE:
		return "remote";
	}
	return "unknown";
}

int
dir_user_record(struct dir *dir, const char *user, struct record_user *u_r)
{
	char key[DIR_USER_MAX + 1];
	struct store *st;

	if (dir->conf->directory == NULL || (st = dir_store(dir)) == NULL ||
	    dir_normalise_user(dir->conf, user, key, sizeof(key)) != 0)
		return -1;
	return store_get_user(st, key, u_r, NULL, NULL);
}

/* ---- trust for the inter-node channel ------------------------------- */

enum trust_verdict
dir_cert_check(struct dir *dir, const uint8_t *env, size_t len,
    enum trust_use use, const char *site, uint64_t now,
    struct record_cert *cert_r, const char **why_r)
{
	struct store *st = dir->conf->directory != NULL ? dir_store(dir) :
	    NULL;
	struct trust_ctx t;
	struct record r;
	enum trust_verdict v;

	if (st == NULL) {
		*why_r = "store unavailable";
		return TRUST_STORE_ERROR;
	}
	if (record_decode(env, len, &r, why_r) != 0)
		return TRUST_UNKNOWN_KEY;
	if (r.kind != RECORD_CERT) {
		*why_r = "not a certificate";
		return TRUST_UNKNOWN_KEY;
	}
	store_trust_init(st, &t);
	v = trust_check_shown(&t, &r, use, site, NULL, now, cert_r, NULL);
	trust_clear(&t);
	if (v != TRUST_OK)
		*why_r = trust_verdict_text(v);
	return v;
}

struct cert_find {
	const uint8_t *id;
	uint8_t *env;
	size_t len;
};

static int
cert_find_cb(const struct record *r, const uint8_t *env, size_t len,
    void *arg)
{
	struct cert_find *f = arg;
	uint8_t id[DKEY_ID_LEN];

	dkey_id(r->u.cert.pk, id);
	if (memcmp(id, f->id, DKEY_ID_LEN) != 0)
		return 0;
	f->env = xmalloc(len);
	memcpy(f->env, env, len);
	f->len = len;
	return 1;
}

enum trust_verdict
dir_cert_find(struct dir *dir, const uint8_t *id, enum trust_use use,
    const char *site, uint64_t now, uint8_t **env_r, size_t *len_r,
    const char **why_r)
{
	struct store *st = dir->conf->directory != NULL ? dir_store(dir) :
	    NULL;
	struct cert_find f = { id, NULL, 0 };
	struct record_cert c;
	enum trust_verdict v;

	if (st == NULL) {
		*why_r = "store unavailable";
		return TRUST_STORE_ERROR;
	}
	if (store_foreach_cert(st, cert_find_cb, &f) != 0) {
		*why_r = "store unreadable";
		return TRUST_STORE_ERROR;
	}
	if (f.env == NULL) {
		*why_r = "no certificate for the key";
		return TRUST_UNKNOWN_KEY;
	}
	v = dir_cert_check(dir, f.env, f.len, use, site, now, &c, why_r);
	if (v != TRUST_OK) {
		free(f.env);
		return v;
	}
	*env_r = f.env;
	*len_r = f.len;
	return TRUST_OK;
}

/* ---- the membership snapshot ---------------------------------------- */

#define MEMBER_FIELDS 5
#define MEMBER_BYTES (DIR_SITE_MAX + DIR_NAME_MAX + DIR_ADDR_MAX + 32)

uint8_t *
dir_members_encode(const struct dir_member *m, size_t n, uint64_t now,
    size_t *len_r)
{
	struct mm_mp_writer w;
	size_t size, i;
	uint8_t *buf;

	if (n > DIR_MEMBERS_MAX)
		n = DIR_MEMBERS_MAX;
	size = 32 + n * MEMBER_BYTES;
	buf = xmalloc(size);
	mm_mp_writer_init(&w, buf, size);
	mm_mp_put_array(&w, 3);
	mm_mp_put_uint(&w, DIR_MEMBERS_VERSION);
	mm_mp_put_uint(&w, now);
	mm_mp_put_array(&w, (uint32_t)n);
	for (i = 0; i < n; i++) {
		mm_mp_put_array(&w, MEMBER_FIELDS);
		mm_mp_put_str(&w, m[i].site);
		mm_mp_put_str(&w, m[i].name);
		mm_mp_put_str(&w, m[i].session_addr);
		mm_mp_put_uint(&w, m[i].suspect ? 1 : 0);
		mm_mp_put_uint(&w, m[i].rtt_ms < 0 ? 0 :
		    (uint64_t)m[i].rtt_ms + 1);
	}
	if (!mm_mp_writer_ok(&w))
		fatalx("dir_members_encode: member fields over their limits");
	*len_r = mm_mp_writer_len(&w);
	return buf;
}

int
dir_members_decode(const uint8_t *buf, size_t len, uint64_t *written_r,
    dir_member_cb cb, void *arg, const char **why_r)
{
	struct mm_mp_reader r;
	char site[DIR_SITE_MAX + 1], name[DIR_NAME_MAX + 1];
	char addr[DIR_ADDR_MAX + 1];
	struct dir_member m;
	uint64_t version, state, rtt;
	uint32_t n, i;

	*written_r = 0;
	mm_mp_reader_init(&r, buf, len);
	if (mm_mp_get_array_n(&r, 3) < 0 ||
	    mm_mp_get_uint(&r, &version) < 0)
		goto bad;
	if (version != DIR_MEMBERS_VERSION) {
		*why_r = "unknown snapshot version";
		return -1;
	}
	if (mm_mp_get_uint(&r, written_r) < 0 ||
	    mm_mp_get_array(&r, DIR_MEMBERS_MAX, &n) < 0)
		goto bad;
	for (i = 0; i < n; i++) {
		if (mm_mp_get_array_n(&r, MEMBER_FIELDS) < 0 ||
		    mm_mp_get_str(&r, site, DIR_SITE_MAX) < 0 ||
		    mm_mp_get_str(&r, name, DIR_NAME_MAX) < 0 ||
		    mm_mp_get_str(&r, addr, DIR_ADDR_MAX) < 0 ||
		    mm_mp_get_uint_max(&r, 1, &state) < 0 ||
		    mm_mp_get_uint_max(&r, (uint64_t)INT64_MAX, &rtt) < 0)
			goto bad;
		m.site = site;
		m.name = name;
		m.session_addr = addr;
		m.suspect = state == 1;
		m.rtt_ms = rtt == 0 ? -1 : (int64_t)(rtt - 1);
		cb(&m, arg);
	}
	if (mm_mp_end(&r) < 0)
		goto bad;
	return 0;
bad:
	*why_r = r.why != NULL ? r.why : "invalid snapshot";
	return -1;
}

struct ep_cand {
	struct dir_endpoint ep;
	bool suspect;
	int64_t rtt_ms;
	uint64_t tie;
};

struct ep_ctx {
	const char *site;
	struct ep_cand *c;
	size_t n, cap;
	uint64_t salt;
};

static uint64_t
name_tie(const char *name, uint64_t salt)
{
	uint64_t h = 1469598103934665603ULL ^ salt;

	for (; *name != '\0'; name++)
		h = (h ^ (uint8_t)*name) * 1099511628211ULL;
	return h;
}

static void
ep_collect_cb(const struct dir_member *m, void *arg)
{
	struct ep_ctx *ec = arg;
	struct ep_cand *c;

	if (strcmp(m->site, ec->site) != 0 || m->session_addr[0] == '\0' ||
	    ec->n >= DIR_MEMBERS_MAX)
		return;
	if (ec->n == ec->cap) {
		ec->cap = ec->cap ? ec->cap * 2 : 8;
		ec->c = xrealloc(ec->c, ec->cap * sizeof(*ec->c));
	}
	c = &ec->c[ec->n++];
	mm_strlcpy(c->ep.addr, m->session_addr, sizeof(c->ep.addr));
	mm_strlcpy(c->ep.name, m->name, sizeof(c->ep.name));
	c->suspect = m->suspect;
	c->rtt_ms = m->rtt_ms;
	c->tie = name_tie(m->name, ec->salt);
}

/* Alive before suspect; measured before unmeasured, nearest first; equal
 * times in an order of this process's own, so that the workers and nodes
 * of a site spread their sessions over equally near nodes. */
static int
ep_cmp(const void *pa, const void *pb)
{
	const struct ep_cand *a = pa, *b = pb;

	if (a->suspect != b->suspect)
		return a->suspect ? 1 : -1;
	if ((a->rtt_ms < 0) != (b->rtt_ms < 0))
		return a->rtt_ms < 0 ? 1 : -1;
	if (a->rtt_ms != b->rtt_ms)
		return a->rtt_ms < b->rtt_ms ? -1 : 1;
	if (a->tie != b->tie)
		return a->tie < b->tie ? -1 : 1;
	return strcmp(a->ep.name, b->ep.name);
}

int
dir_site_endpoints(struct dir *dir, const char *site,
    struct dir_endpoint *eps_r, size_t max)
{
	struct store *st;
	struct ep_ctx ec;
	uint8_t *buf = NULL;
	size_t len = 0, i;
	uint64_t written;
	const char *why = NULL;
	int r;

	if (dir->conf->directory == NULL || (st = dir_store(dir)) == NULL)
		return dir->conf->directory == NULL ? 0 : -1;
	if ((r = store_get_members(st, &buf, &len)) <= 0)
		return r;
	memset(&ec, 0, sizeof(ec));
	ec.site = site;
	ec.salt = (uint64_t)getpid();
	if (dir_members_decode(buf, len, &written, ep_collect_cb, &ec,
	    &why) < 0) {
		log_warnx("- dir members-snapshot-invalid reason=\"%s\"", why);
		ec.n = 0;
	}
	free(buf);
	if (ec.n > 1)
		qsort(ec.c, ec.n, sizeof(*ec.c), ep_cmp);
	for (i = 0; i < ec.n && i < max; i++)
		eps_r[i] = ec.c[i].ep;
	free(ec.c);
	return (int)i;
}
