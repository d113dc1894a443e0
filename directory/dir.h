/* The lookup interface the proxy calls: user name in, route out.
 * Its source today is a popmap; the signed directory replaces the source
 * without touching the callers. */
#ifndef DIR_H
#define DIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mm_config.h"
#include "record.h"
#include "trust.h"

#define DIR_USER_MAX 256	/* longest user name accepted for a lookup */
#define DIR_HOST_MAX 256
#define DIR_SITE_MAX RECORD_SITE_MAX

enum dir_result {
	DIR_FOUND,		/* route_r is filled in */
	DIR_NOTFOUND,		/* unknown user: answer like a wrong password */
	DIR_TEMPFAIL,		/* try again later (source unreadable, bad
				 * route, back end without the protocol) */
	DIR_FROZEN,		/* mid-move: mail gets 4xx, logins wait */
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

/* The signed directory's current record of user (normalised here), for
 * the checks of a move's dsync stream: 1 with *u_r (its transfer field
 * is not available), 0 when there is none, -1 without a directory or on a
 * store error. */
int dir_user_record(struct dir *dir, const char *user,
    struct record_user *u_r);

/* Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address
 * into host (hostlen bytes, brackets removed) and port (0 if none). Host
 * names are letters, digits, '.', '-' and '_'; IPv6 literals must be
 * plain addresses (inet_pton has no zone ids). 0 or -1. */
int dir_parse_hostport(const char *value, char *host, size_t hostlen,
    uint16_t *port_r);

/* Trust checks for the inter-node channel, from the same read-only store,
 * by the one trust rule (trust.h).
 *
 * dir_cert_check: env/len is a CERT envelope shown by a peer. The rule
 * for use and site (NULL: any) at now (unix seconds) decides, with the
 * store's root key and revocations; a certificate the store holds for the
 * same key, issued no earlier, decides instead of the one shown. TRUST_OK
 * with *cert_r, the certificate that decided; else the verdict and *why_r
 * (static): TRUST_UNKNOWN_KEY when env is no certificate,
 * TRUST_STORE_ERROR when the store cannot be read (or is not configured),
 * TRUST_NO_ROOT when it has no root key. */
enum trust_verdict dir_cert_check(struct dir *dir, const uint8_t *env,
    size_t len, enum trust_use use, const char *site, uint64_t now,
    struct record_cert *cert_r, const char **why_r);

/* The CERT envelope the store holds for key id, checked as above: TRUST_OK
 * with a malloc'd copy in *env_r (the caller frees it) and its length,
 * else the verdict and *why_r (TRUST_UNKNOWN_KEY when there is none). */
enum trust_verdict dir_cert_find(struct dir *dir, const uint8_t *id,
    enum trust_use use, const char *site, uint64_t now, uint8_t **env_r,
    size_t *len_r, const char **why_r);

/* ---- the membership snapshot -----------------------------------------
 *
 * The directory agent publishes which nodes of each site are up, where
 * they take cross-site sessions and how far away they are (gossip's
 * measured round-trip time) into the store (store_put_members); proxy
 * workers read it from there: no IPC on the lookup path. Encoding: msgpack
 * [version (1), written (unix seconds), [[site, name, session address,
 * state (0 alive, 1 suspect), rtt_ms + 1 (0: not measured)], ...]]. */
#define DIR_MEMBERS_VERSION 1
#define DIR_MEMBERS_MAX 1024		/* entries in one snapshot */
#define DIR_NAME_MAX RECORD_NAME_MAX
#define DIR_ADDR_MAX 96			/* a session address, GOSSIP_ADDR_MAX */

struct dir_member {
	const char *site, *name, *session_addr;
	bool suspect;			/* false: alive */
	int64_t rtt_ms;			/* -1: not measured */
};

/* Encodes up to DIR_MEMBERS_MAX members (the rest are left out; dead
 * members and members without a session address must not be passed).
 * Returns a malloc'd buffer and its length in *len_r. */
uint8_t *dir_members_encode(const struct dir_member *m, size_t n,
    uint64_t now, size_t *len_r);

typedef void (*dir_member_cb)(const struct dir_member *m, void *arg);
/* Decodes a snapshot (pure), calling cb for every member; strings are
 * valid during the call. 0, or -1 with *why_r (static) when it does not
 * decode (members before the fault have been passed to cb). */
int dir_members_decode(const uint8_t *buf, size_t len, uint64_t *written_r,
    dir_member_cb cb, void *arg, const char **why_r);

/* One session endpoint of a node of another site. */
struct dir_endpoint {
	char addr[DIR_ADDR_MAX + 1];
	char name[DIR_NAME_MAX + 1];
};

/* The session endpoints of the nodes of site, nearest healthy node
 * first: alive nodes by measured round-trip time (unmeasured ones after
 * the measured), then suspect ones; dead nodes never. Fills up to max
 * entries of eps_r. Returns how many, 0 when the snapshot names none (or
 * there is no snapshot), -1 when the store cannot be read. */
int dir_site_endpoints(struct dir *dir, const char *site,
    struct dir_endpoint *eps_r, size_t max);

#endif
