/* The lookup interface the proxy calls: user name in, route out.
 * Its source today is a popmap; the signed directory replaces the source
 * without touching the callers. */
#ifndef DIR_H
#define DIR_H

#include <stddef.h>
#include <stdint.h>

#include "mm_config.h"
#include "record.h"

#define DIR_USER_MAX 256	/* longest user name accepted for a lookup */
#define DIR_HOST_MAX 256
#define DIR_SITE_MAX RECORD_SITE_MAX

enum dir_result {
	DIR_FOUND,		/* route_r is filled in */
	DIR_NOTFOUND,		/* unknown user: answer like a wrong password */
	DIR_TEMPFAIL,		/* try again later (frozen, source unreadable) */
	DIR_REMOTE,		/* owned by another site: route_r->site names it */
};

struct dir_route {
	/* Settings (TLS, CA, client address) of the back end. Either a back
	 * end named in the config or a built-in plaintext default. Owned by
	 * the dir; valid until the next dir_reload. */
	const struct mm_backend_conf *backend;
	char host[DIR_HOST_MAX];	/* address to connect to */
	uint16_t port;			/* port for the protocol asked */
	char site[DIR_SITE_MAX + 1];	/* DIR_REMOTE: the owner site */
};

struct dir;

/* Opens the sources the config names. The config must outlive the dir.
 * NULL with *errstr_r (malloc'd) on failure. */
struct dir *dir_open(const struct mm_config *conf, char **errstr_r);

/* Re-reads the sources (SIGHUP). On failure keeps the old data and
 * returns -1 with *errstr_r set. */
int dir_reload(struct dir *dir, char **errstr_r);

void dir_free(struct dir *dir);

/* Lookup key for a login name per the config: lower-case, strip or add
 * a domain. Returns 0, or -1 if the name is empty, has a control
 * character, or does not fit in outlen. */
int dir_normalise_user(const struct mm_config *conf, const char *user,
    char *out, size_t outlen);

/* Resolves a login name (not yet normalised) for protocol proto.
 * A popmap value is a back-end name from the config (then that back end's
 * host and port for proto), or "host" / "host:port" / "[v6]:port" (then
 * plaintext with the protocol's default port). With no match and a
 * default back end configured, that one is returned. */
enum dir_result dir_lookup(struct dir *dir, const char *user,
    enum mm_proto proto, struct dir_route *route_r);

const char *dir_result_name(enum dir_result r);

/* Trust checks for the inter-node channel, from the same read-only store.
 *
 * dir_cert_check: env/len is a CERT envelope shown by a peer. 1 when it is
 * signed by the cluster root, its key is not revoked and it has not expired
 * at now (unix seconds); then *role_r and site_r (DIR_SITE_MAX + 1 bytes)
 * are set. 0 when not, with *why_r (static); -1 when the store cannot be
 * read (*why_r too). */
int dir_cert_check(struct dir *dir, const uint8_t *env, size_t len,
    uint64_t now, enum cert_role *role_r, char *site_r, const char **why_r);

/* The CERT envelope the store holds for key id, checked as above: 1 with
 * a malloc'd copy in *env_r (the caller frees it) and its length, 0 when
 * there is none or it is not valid (*why_r), -1 on a store error. */
int dir_cert_find(struct dir *dir, const uint8_t *id, uint64_t now,
    uint8_t **env_r, size_t *len_r, const char **why_r);

#endif
