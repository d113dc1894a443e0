/* mmnode configuration: parsed once from one file into struct mm_config.
 * The file format is documented in deploy/mmnode.conf.example. */
#ifndef MM_CONFIG_H
#define MM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mm_net.h"

#define MM_PP_NETS_MAX	16	/* most networks one listener may list */

enum mm_proto { MM_PROTO_IMAP, MM_PROTO_POP3, MM_PROTO_SMTP, MM_PROTO_COUNT };

/* What a listener serves: mail sessions of its proto, or the lookups that
 * Postfix (socketmap) and nginx (auth_http) ask of the directory. */
enum mm_listen_kind {
	MM_LISTEN_MAIL,
	MM_LISTEN_SOCKETMAP,
	MM_LISTEN_AUTH_HTTP,
	MM_LISTEN_METRICS,	/* Prometheus scrapes: GET /metrics */
};

enum mm_tls_mode {
	MM_TLS_NONE,		/* plaintext only */
	MM_TLS_STARTTLS,	/* plaintext, upgraded with STARTTLS / STLS */
	MM_TLS_IMPLICIT,	/* TLS from the first byte (993 / 995) */
};

/* How a back end learns the client's real address. */
enum mm_client_addr {
	MM_CADDR_NONE,
	MM_CADDR_ID,		/* IMAP ID x-originating-ip, POP3 XCLIENT */
	MM_CADDR_PROXY2,	/* PROXY protocol v2 header */
};

struct mm_listener_conf {
	enum mm_listen_kind kind;
	enum mm_proto proto;	/* MM_LISTEN_MAIL only */
	enum mm_tls_mode tls;	/* imap/pop3/smtp with cert: STARTTLS;
				 * imaps/pop3s/smtps: IMPLICIT */
	char *host;		/* numeric address, "*" for any; no brackets */
	char *port;		/* decimal, 1-65535, without leading zeros */
	char *cert_file;	/* NULL: no TLS offered on this listener */
	char *key_file;
	bool require_tls;	/* refuse logins before STARTTLS */
	struct mm_net *pp_from;	/* proxy-protocol=: networks whose
				 * connections must start with a PROXY
				 * header; NULL: no header expected */
	size_t n_pp_from;
	int line;		/* line in the config file, for messages */
};

struct mm_backend_conf {
	char *name;
	char *host;
	uint16_t port[MM_PROTO_COUNT];	/* 0: protocol not served; for
					 * SMTP the port mail is delivered to */
	bool lmtp;		/* port[MM_PROTO_SMTP] speaks LMTP, not SMTP */
	enum mm_tls_mode tls;
	char *ca_file;		/* CA that verifies the back end's certificate */
	char *tls_name;		/* name checked in its certificate; never NULL:
				 * tls-name= if given, else host */
	enum mm_client_addr client_addr;
	/* Moves: the back end's doveadm server (0: none) and its
	 * doveadm_password, read from doveadm-secret= at load; move= names
	 * the copy engine ("dsync"; NULL: the back end takes no part in
	 * moves). */
	uint16_t doveadm_port;
	char *doveadm_password;
	char *move_engine;
	int line;		/* line in the config file, for messages */
};

/* Defaults and accepted ranges are those in the example file. */
struct mm_limits {
	uint32_t line_max;		/* bytes in one command line before login */
	uint32_t literal_max;		/* bytes in one literal before login */
	uint32_t commands_prelogin_max;	/* commands before a login succeeds */
	uint32_t auth_fail_max;		/* failed logins per connection */
	uint32_t auth_fail_per_ip_max;	/* failed logins per address per window */
	uint64_t auth_fail_window_ms;	/* window of the per-address count */
	uint64_t auth_fail_delay_ms;	/* first delay; doubles per failure */
	uint64_t auth_fail_delay_max_ms;
	uint32_t conn_max;		/* client connections per node */
	uint32_t conn_per_ip_max;	/* client connections per address */
	uint64_t idle_prelogin_ms;	/* client idle before login */
	uint64_t login_ms;		/* connect to a successful login */
	uint64_t login_hold_ms;		/* a login for a frozen user waits */
	uint64_t move_freeze_ms;	/* a move's freeze ends by then */
	uint32_t move_passes;		/* catch-up passes before freezing */
	uint64_t idle_ms;		/* idle after login, either side */
	uint64_t backend_connect_ms;	/* connect + greeting + login reply */
	uint64_t drain_ms;		/* SIGTERM: time sessions get to end */
	uint32_t relay_buffer;		/* high watermark of a relay direction */
	uint32_t rcpt_max;		/* SMTP recipients per message */
	uint64_t message_max;		/* SMTP message size (SIZE) */
	uint64_t smtp_idle_ms;		/* SMTP client idle, any phase */
	uint64_t smtp_commands_ms;	/* outside DATA, since connect or the
					 * last message */
	uint32_t smtp_data_rate;	/* bytes/s DATA must average past
					 * smtp_idle_ms */
	uint32_t smtp_error_max;	/* failed commands per SMTP session */
	uint64_t smtp_data_ms;		/* back end's reply to end of data */
};

/* site-route: the session endpoints of one other site, tried in order. */
struct mm_site_route {
	char *site;
	char **addrs;		/* "HOST:PORT", IPv6 in brackets */
	size_t n_addrs;
	int line;
};

struct mm_config {
	char *path;
	char *user;		/* drop privileges to; NULL: stay */
	char *group;
	char *pidfile;		/* NULL: none */
	unsigned workers;	/* 0: one per core */
	bool log_syslog;	/* false: stderr */
	bool log_debug;

	char *popmap_file;	/* NULL: no popmap */
	bool user_lowercase;	/* lower-case the lookup key */
	bool user_strip_domain;	/* look up "alice" for "alice@dom" */
	char *user_add_domain;	/* look up "alice@dom" for "alice"; NULL: no */
	char *default_backend;	/* unknown users go here: a back-end name or
				 * host[:port], not checked; NULL: like a
				 * bad password */

	struct mm_limits limits;

	/* The signed directory: on when directory is set; then site,
	 * node_key and root_key are set too. */
	char *site;		/* this node's site, [a-z0-9-]{1,32} */
	char *node_name;	/* origin of the records this node signs;
				 * default: the host name */
	char *directory;	/* LMDB store directory; NULL: off */
	char *node_key;		/* this node's secret key file */
	char *root_key;		/* the cluster root's public key file */
	char *control_socket;	/* mmctl's unix socket */
	char *admin_group;	/* may change the directory over the socket,
				 * and owns it; NULL: root only */
	gid_t admin_gid;	/* admin_group, resolved at load */
	uint64_t tombstone_ttl_s;	/* deleted users' bodies kept this long */
	bool popmap_fallback;	/* the popmap answers users the directory
				 * does not know */

	/* Gossip between nodes: on when peer_listen_host is set (needs
	 * directory). Addresses are "HOST:PORT", IPv6 in brackets. */
	char *peer_listen_host;	/* numeric, or "*"; NULL: no gossip */
	char *peer_listen_port;
	char *peer_address;	/* how others reach us; default peer-listen */
	char **peers;		/* seed nodes to join through */
	size_t n_peers;

	/* Cross-site sessions (need directory): the workers' channel key,
	 * the inter-node session listener (host and port only; NULL: none)
	 * and the endpoints of other sites. */
	char *transport_key;	/* NULL: no cross-site sessions */
	/* Moves: where this node's workers take the dsync connections of
	 * this site's back ends (their address for it, so never "*"). */
	struct mm_listener_conf *dsync_listen;
	struct mm_listener_conf *session_listen;
	char *session_address;	/* advertised to other nodes by gossip;
				 * default: session-listen unless on '*';
				 * NULL: none */
	struct mm_site_route *site_routes;
	size_t n_site_routes;

	/* lookup-relay: where the socketmap and auth_http answers send a
	 * user of another site (this node's own listener, which carries
	 * the session or message there), "HOST:PORT" per protocol; NULL:
	 * the first plaintext listener of the protocol. */
	char *lookup_relay[MM_PROTO_COUNT];
	char *hostname;		/* SMTP greeting and EHLO name; default: the
				 * host name */

	struct mm_listener_conf *listeners;	/* in file order; at least one */
	size_t n_listeners;
	struct mm_backend_conf *backends;	/* in file order; names unique */
	size_t n_backends;
};

/* Parses the file at path (at most 1 MiB). Returns a config owned by the
 * caller (free with mm_config_free), or NULL with *errstr_r set to a
 * malloc'd message owned by the caller: "FILE:LINE: ..." for a problem on
 * a line, "FILE: ..." for one with the whole file (unreadable, too large,
 * no listener). *errstr_r is NULL on success; errstr_r itself may be NULL
 * when the message is not wanted. */
struct mm_config *mm_config_load(const char *path, char **errstr_r);

/* Same, from len bytes of memory that need no NUL terminator; fname (not
 * NULL) is copied into conf->path and used in messages. */
struct mm_config *mm_config_parse(const char *text, size_t len,
    const char *fname, char **errstr_r);

/* Frees conf and everything it points to; NULL is ignored. */
void mm_config_free(struct mm_config *conf);

/* Parses a duration such as those of tombstone-ttl ("30d", "12h", "90m",
 * "3600s", "3600") into seconds. 0, or -1 when malformed or not a whole
 * number of seconds. */
int mm_config_parse_duration_s(const char *s, uint64_t *sec_r);

/* The back end named exactly name (case matters), or NULL. The pointer is
 * owned by conf. */
const struct mm_backend_conf *mm_config_backend(const struct mm_config *conf,
    const char *name);

/* Default TCP port of a protocol for a back-end TLS mode (143/993, 110/995;
 * SMTP: 24, LMTP, which is how a popmap host is reached for mail). */
uint16_t mm_proto_default_port(enum mm_proto proto, enum mm_tls_mode tls);

/* "imap", "pop3" or "smtp"; a static string. */
const char *mm_proto_name(enum mm_proto proto);

#endif
