/* The mmnode configuration file: one directive per line, words separated by
 * blanks, '#' to the end of the line a comment. The format is documented in
 * deploy/mmnode.conf.example. Parsing stops at the first problem; the message
 * names the file, the line and the offending word. */
#include "mm_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mm_net.h"
#include "mm_util.h"

#define CONF_FILE_MAX		(1024 * 1024)	/* bytes in a config file */
#define CONF_LINE_MAX		4096	/* bytes in a line, without newline */
#define CONF_WORDS_MAX		16	/* more than any directive takes */
#define CONF_LISTENERS_MAX	64
#define CONF_BACKENDS_MAX	4096	/* keeps the duplicate search cheap */
#define CONF_PEERS_MAX		64	/* seed peers */
#define CONF_WORKERS_MAX	256
#define CONF_NAME_MAX		64	/* bytes in a back-end name */
#define CONF_HOST_MAX		253	/* a DNS name in text form */
#define CONF_LABEL_MAX		63	/* one label of a DNS name */
#define CONF_PORT_DIGITS	5
#define CONF_SITE_MAX		32	/* the directory's limit on a site name */
#define CONF_NODE_NAME_MAX	64	/* the directory's limit on an origin */
#define CONF_TTL_DEFAULT_S	(30 * 86400)
/* Below an hour a tombstone could be dropped before a slow site has seen
 * it; the high-water mark still blocks old records, so it is not unsafe,
 * just surprising. Above ten years it is a typo. */
#define CONF_TTL_MIN_S		3600
#define CONF_TTL_MAX_S		(3650ULL * 86400)
#define CONF_CONTROL_SOCKET	"/run/mailmesh/control.sock"

struct parser;
struct directive;

typedef int directive_cb(struct parser *, const struct directive *, int,
    char **);

struct directive {
	const char *name;
	const char *usage;	/* the arguments, for messages */
	int args_min;		/* words after the directive's name */
	int args_max;
	bool repeat;		/* may appear on more than one line */
	directive_cb *parse;
	size_t off;		/* field of struct mm_config, generic parsers */
};

static directive_cb parse_string, parse_bool, parse_workers, parse_log,
    parse_add_domain, parse_listen, parse_backend, parse_limit, parse_site,
    parse_node_name, parse_ttl, parse_peer_listen, parse_peer,
    parse_peer_address, parse_admin_group;

static directive_cb parse_dsync_listen, parse_session_listen,
    parse_session_address,
    parse_site_route, parse_lookup_relay, parse_hostname;
static const char *host_problem(const char *host);

#define CONF_FIELD(f) offsetof(struct mm_config, f)

static const struct directive directives[] = {
	{ "user", "NAME", 1, 1, false, parse_string, CONF_FIELD(user) },
	{ "group", "NAME", 1, 1, false, parse_string, CONF_FIELD(group) },
	{ "workers", "COUNT", 1, 1, false, parse_workers, 0 },
	{ "log", "stderr|syslog", 1, 1, false, parse_log, 0 },
	{ "log-debug", "yes|no", 1, 1, false, parse_bool,
	    CONF_FIELD(log_debug) },
	{ "pidfile", "FILE", 1, 1, false, parse_string, CONF_FIELD(pidfile) },
	{ "popmap", "FILE", 1, 1, false, parse_string,
	    CONF_FIELD(popmap_file) },
	{ "user-lowercase", "yes|no", 1, 1, false, parse_bool,
	    CONF_FIELD(user_lowercase) },
	{ "user-strip-domain", "yes|no", 1, 1, false, parse_bool,
	    CONF_FIELD(user_strip_domain) },
	{ "user-add-domain", "DOMAIN", 1, 1, false, parse_add_domain, 0 },
	{ "default-backend", "NAME", 1, 1, false, parse_string,
	    CONF_FIELD(default_backend) },
	{ "listen", "PROTO ADDRESS:PORT [cert=FILE key=FILE] [require-tls] "
	    "[proxy-protocol=NET,...]", 2, 6, true, parse_listen, 0 },
	{ "backend", "NAME HOST [imap=PORT] [pop3=PORT] [lmtp=PORT|smtp=PORT] "
	    "[tls=none|starttls|implicit] [ca=FILE] [tls-name=NAME] "
	    "[client-addr=none|id|proxy] [doveadm=PORT doveadm-secret=FILE "
	    "move=dsync]", 2, 12, true, parse_backend, 0 },
	{ "lookup-relay", "imap|pop3|smtp ADDRESS:PORT", 2, 2, true,
	    parse_lookup_relay, 0 },
	{ "hostname", "NAME", 1, 1, false, parse_hostname, 0 },
	{ "site", "NAME", 1, 1, false, parse_site, 0 },
	{ "node-name", "NAME", 1, 1, false, parse_node_name, 0 },
	{ "directory", "DIR", 1, 1, false, parse_string,
	    CONF_FIELD(directory) },
	{ "node-key", "FILE", 1, 1, false, parse_string,
	    CONF_FIELD(node_key) },
	{ "root-key", "FILE", 1, 1, false, parse_string,
	    CONF_FIELD(root_key) },
	{ "control-socket", "PATH", 1, 1, false, parse_string,
	    CONF_FIELD(control_socket) },
	{ "admin-group", "NAME", 1, 1, false, parse_admin_group, 0 },
	{ "tombstone-ttl", "DURATION", 1, 1, false, parse_ttl, 0 },
	{ "popmap-fallback", "yes|no", 1, 1, false, parse_bool,
	    CONF_FIELD(popmap_fallback) },
	{ "peer-listen", "ADDRESS:PORT", 1, 1, false, parse_peer_listen, 0 },
	{ "peer", "ADDRESS:PORT", 1, 1, true, parse_peer, 0 },
	{ "peer-address", "ADDRESS:PORT", 1, 1, false, parse_peer_address,
	    0 },
	{ "transport-key", "FILE", 1, 1, false, parse_string,
	    CONF_FIELD(transport_key) },
	{ "dsync-listen", "ADDRESS:PORT", 1, 1, false, parse_dsync_listen,
	    0 },
	{ "session-listen", "ADDRESS:PORT", 1, 1, false, parse_session_listen,
	    0 },
	{ "session-address", "ADDRESS:PORT", 1, 1, false,
	    parse_session_address, 0 },
	{ "site-route", "SITE ADDRESS:PORT [ADDRESS:PORT ...]", 2,
	    CONF_WORDS_MAX - 1, true, parse_site_route, 0 },
	/* limit and timeout check duplicates per name themselves. */
	{ "limit", "NAME VALUE", 2, 2, true, parse_limit, 0 },
	{ "timeout", "NAME VALUE", 2, 2, true, parse_limit, 0 },
};

enum value_kind { VAL_COUNT, VAL_SIZE, VAL_DURATION };

/* One "limit" or "timeout" setting: its default and the range outside
 * which a value is a mistake rather than a choice. */
struct limit_def {
	const char *directive;
	const char *name;
	enum value_kind kind;
	size_t off;		/* field of struct mm_limits */
	size_t width;		/* 4 or 8 bytes */
	uint64_t def;
	uint64_t min;
	uint64_t max;
	const char *why_min;	/* what a smaller value would break */
};

#define LIM_FIELD(f) \
	offsetof(struct mm_limits, f), sizeof(((struct mm_limits *)NULL)->f)
#define KB	UINT64_C(1024)
#define MB	(KB * 1024)
#define SEC	UINT64_C(1000)
#define MIN	(SEC * 60)
#define HOUR	(MIN * 60)

static const struct limit_def limit_defs[] = {
	{ "limit", "line-length", VAL_SIZE, LIM_FIELD(line_max),
	    8192, 512, MB, "ordinary IMAP and POP3 commands would not fit" },
	{ "limit", "literal-size", VAL_SIZE, LIM_FIELD(literal_max),
	    8192, 512, MB, "a LOGIN literal with a long password would not fit" },
	{ "limit", "commands-before-login", VAL_COUNT,
	    LIM_FIELD(commands_prelogin_max), 32, 8, 10000,
	    "clients send CAPABILITY, STARTTLS and more before they log in" },
	{ "limit", "auth-failures", VAL_COUNT, LIM_FIELD(auth_fail_max),
	    3, 1, 1000, "no login could ever succeed" },
	{ "limit", "auth-failures-per-ip", VAL_COUNT,
	    LIM_FIELD(auth_fail_per_ip_max), 20, 1, 1000000,
	    "no login could ever succeed" },
	{ "limit", "auth-failure-window", VAL_DURATION,
	    LIM_FIELD(auth_fail_window_ms), 5 * MIN, SEC, 24 * HOUR,
	    "the per-address count needs a window to count in" },
	{ "limit", "auth-failure-delay", VAL_DURATION,
	    LIM_FIELD(auth_fail_delay_ms), SEC, 0, MIN, NULL },
	{ "limit", "auth-failure-delay-max", VAL_DURATION,
	    LIM_FIELD(auth_fail_delay_max_ms), 8 * SEC, 0, 10 * MIN, NULL },
	{ "limit", "connections", VAL_COUNT, LIM_FIELD(conn_max),
	    10000, 1, 1000000, "no client could connect" },
	{ "limit", "connections-per-ip", VAL_COUNT, LIM_FIELD(conn_per_ip_max),
	    50, 1, 1000000, "no client could connect" },
	{ "limit", "relay-buffer", VAL_SIZE, LIM_FIELD(relay_buffer),
	    256 * KB, 16 * KB, 64 * MB, "a TLS record would not fit" },
	{ "timeout", "idle-before-login", VAL_DURATION,
	    LIM_FIELD(idle_prelogin_ms), 60 * SEC, SEC, HOUR,
	    "clients would be cut off while they connect" },
	{ "timeout", "before-login", VAL_DURATION, LIM_FIELD(login_ms),
	    2 * MIN, SEC, HOUR, "clients would be cut off while they log in" },
	{ "timeout", "login-hold", VAL_DURATION, LIM_FIELD(login_hold_ms),
	    15 * SEC, 0, 10 * MIN, NULL },
	{ "timeout", "move-freeze", VAL_DURATION, LIM_FIELD(move_freeze_ms),
	    10 * SEC, SEC, 10 * MIN, NULL },
	{ "limit", "move-passes", VAL_COUNT, LIM_FIELD(move_passes),
	    5, 1, 100, NULL },
	{ "timeout", "idle", VAL_DURATION, LIM_FIELD(idle_ms),
	    30 * MIN, SEC, 24 * HOUR, "every session would end at once" },
	{ "timeout", "backend", VAL_DURATION, LIM_FIELD(backend_connect_ms),
	    10 * SEC, 100, 10 * MIN, "no back end could answer in time" },
	{ "timeout", "drain", VAL_DURATION, LIM_FIELD(drain_ms),
	    30 * SEC, 0, HOUR, NULL },
	/* RFC 5321 4.5.3.1.8: a server must take at least 100 recipients. */
	{ "limit", "recipients", VAL_COUNT, LIM_FIELD(rcpt_max),
	    100, 1, 100000, "no message could be sent" },
	{ "limit", "message-size", VAL_SIZE, LIM_FIELD(message_max),
	    50 * MB, 64 * KB, 4096 * MB, "ordinary messages would not fit" },
	/* RFC 5321 4.5.3.2.7: servers wait at least five minutes. */
	{ "timeout", "smtp-idle", VAL_DURATION, LIM_FIELD(smtp_idle_ms),
	    5 * MIN, SEC, HOUR, "senders would be cut off mid-message" },
	{ "timeout", "smtp-commands", VAL_DURATION,
	    LIM_FIELD(smtp_commands_ms), 10 * MIN, SEC, 24 * HOUR,
	    "senders would be cut off between commands" },
	/* Postfix's smtpd_min_data_rate. */
	{ "limit", "smtp-data-rate", VAL_SIZE, LIM_FIELD(smtp_data_rate),
	    500, 1, 100 * MB, NULL },
	/* Postfix's smtpd_hard_error_limit. */
	{ "limit", "smtp-errors", VAL_COUNT, LIM_FIELD(smtp_error_max),
	    20, 1, 100000, NULL },
	/* RFC 5321 4.5.3.2.6: senders wait ten minutes for this reply. */
	{ "timeout", "smtp-data", VAL_DURATION, LIM_FIELD(smtp_data_ms),
	    10 * MIN, SEC, HOUR, "no back end could deliver in time" },
};

struct parser {
	const char *fname;
	int line;			/* 0: messages about the whole file */
	char *err;			/* first error; parsing stops there */
	struct mm_config *conf;
	int directive_line[MM_ARRAY_SIZE(directives)];	/* 0: not seen */
	int limit_line[MM_ARRAY_SIZE(limit_defs)];
};

static int conf_error(struct parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records the first error as "FILE:LINE: message" and returns -1. */
static int
conf_error(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	int n;

	if (p->err != NULL)
		return -1;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	msg = xmalloc((size_t)n + 1);
	msg[0] = '\0';
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (p->line > 0)
		p->err = xasprintf("%s:%d: %s", p->fname, p->line, msg);
	else
		p->err = xasprintf("%s: %s", p->fname, msg);
	free(msg);
	return -1;
}

/* Writes a limit's value the way a config file would spell it. */
static const char *
format_value(enum value_kind kind, uint64_t v, char *buf, size_t len)
{
	unsigned long long u = (unsigned long long)v;

	if (kind == VAL_SIZE && v != 0 && v % MB == 0)
		snprintf(buf, len, "%lluM", u / MB);
	else if (kind == VAL_SIZE && v != 0 && v % KB == 0)
		snprintf(buf, len, "%lluk", u / KB);
	else if (kind == VAL_DURATION && v != 0 && v % HOUR == 0)
		snprintf(buf, len, "%lluh", u / HOUR);
	else if (kind == VAL_DURATION && v != 0 && v % MIN == 0)
		snprintf(buf, len, "%llum", u / MIN);
	else if (kind == VAL_DURATION && v % SEC == 0)
		snprintf(buf, len, "%llus", u / SEC);
	else if (kind == VAL_DURATION)
		snprintf(buf, len, "%llums", u);
	else
		snprintf(buf, len, "%llu", u);
	return buf;
}

/* Plain decimal digits, no sign and no unit. 0 / -1. */
static int
parse_uint(const char *s, uint64_t *v_r)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*v_r = v;
	return 0;
}

/* A TCP port, 1..65535. 0 / -1. */
static int
parse_port(const char *s, uint16_t *port_r)
{
	uint64_t v;

	if (strlen(s) > CONF_PORT_DIGITS || parse_uint(s, &v) != 0 ||
	    v < 1 || v > UINT16_MAX)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

static int
parse_boolean(const char *s, bool *b_r)
{
	static const char *const yes[] = { "yes", "on", "true" };
	static const char *const no[] = { "no", "off", "false" };
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(yes); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*b_r = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*b_r = false;
			return 0;
		}
	}
	return -1;
}

/* If word is "key=value", points *val_r at the value. */
static bool
option_is(const char *word, const char *key, const char **val_r)
{
	size_t n = strlen(key);

	if (strncmp(word, key, n) != 0 || word[n] != '=')
		return false;
	*val_r = word + n + 1;
	return true;
}

static int
parse_string(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	char **field = (char **)(void *)((char *)p->conf + d->off);

	free(*field);
	*field = xstrdup(argv[1]);
	return 0;
}

static int
parse_bool(struct parser *p, const struct directive *d, int argc, char **argv)
{
	bool *field = (bool *)(void *)((char *)p->conf + d->off);

	if (parse_boolean(argv[1], field) != 0)
		return conf_error(p, "%s: '%s' is not a boolean "
		    "(yes/no, on/off, true/false)", d->name, argv[1]);
	return 0;
}

static int
parse_workers(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	uint64_t v;

	if (parse_uint(argv[1], &v) != 0 || v > CONF_WORKERS_MAX)
		return conf_error(p, "workers: '%s' is not a number from 0 "
		    "to %d", argv[1], CONF_WORKERS_MAX);
	p->conf->workers = (unsigned)v;
	return 0;
}

static int
parse_log(struct parser *p, const struct directive *d, int argc, char **argv)
{
	if (strcmp(argv[1], "stderr") == 0)
		p->conf->log_syslog = false;
	else if (strcmp(argv[1], "syslog") == 0)
		p->conf->log_syslog = true;
	else
		return conf_error(p, "log: unknown target '%s' "
		    "(stderr or syslog)", argv[1]);
	return 0;
}

static int
parse_add_domain(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	/* The lookup key is built as user "@" domain. */
	if (strchr(argv[1], '@') != NULL)
		return conf_error(p, "user-add-domain: '%s': give the domain "
		    "without '@'", argv[1]);
	free(p->conf->user_add_domain);
	p->conf->user_add_domain = xstrdup(argv[1]);
	return 0;
}

static int
parse_site(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	size_t n = strlen(argv[1]);

	/* Site names travel in signed records and in DNS-like labels. */
	if (n < 1 || n > CONF_SITE_MAX ||
	    strspn(argv[1], "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
		return conf_error(p, "site: bad name '%s' (1-%d of a-z 0-9 -)",
		    argv[1], CONF_SITE_MAX);
	free(p->conf->site);
	p->conf->site = xstrdup(argv[1]);
	return 0;
}

static bool
valid_node_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > CONF_NODE_NAME_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._-") == n;
}

static int
parse_node_name(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	if (!valid_node_name(argv[1]))
		return conf_error(p, "node-name: bad name '%s' (1-%d of A-Z "
		    "a-z 0-9 . _ -)", argv[1], CONF_NODE_NAME_MAX);
	free(p->conf->node_name);
	p->conf->node_name = xstrdup(argv[1]);
	return 0;
}

int
mm_config_parse_duration_s(const char *s, uint64_t *sec_r)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n >= 2 && s[n - 1] == 'd' && s[n - 2] >= '0' && s[n - 2] <= '9') {
		char *days = xstrndup(s, n - 1);
		int r = parse_uint(days, &v);

		free(days);
		if (r != 0 || v > UINT64_MAX / 86400)
			return -1;
		*sec_r = v * 86400;
		return 0;
	}
	if (mm_parse_duration_ms(s, &v) != 0 || v % 1000 != 0)
		return -1;
	*sec_r = v / 1000;
	return 0;
}

/* Resolved here, not when the node starts, so that mmnode -t and mmctl
 * name the line of a group that does not exist. */
static int
parse_admin_group(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	struct group *gr;

	errno = 0;
	if ((gr = getgrnam(argv[1])) == NULL) {
		/* getgrnam(3): these say "not found" too. */
		if (errno != 0 && errno != ENOENT && errno != ESRCH &&
		    errno != EBADF && errno != EPERM)
			return conf_error(p, "admin-group: cannot look up "
			    "group '%s': %s", argv[1], strerror(errno));
		return conf_error(p, "admin-group: unknown group '%s' (create "
		    "it with groupadd, or name an existing group)", argv[1]);
	}
	free(p->conf->admin_group);
	p->conf->admin_group = xstrdup(argv[1]);
	p->conf->admin_gid = gr->gr_gid;
	return 0;
}

static int
parse_ttl(struct parser *p, const struct directive *d, int argc, char **argv)
{
	uint64_t v;

	if (mm_config_parse_duration_s(argv[1], &v) != 0)
		return conf_error(p, "tombstone-ttl: bad value '%s' (a "
		    "duration such as 30d, 12h, 90m)", argv[1]);
	if (v < CONF_TTL_MIN_S || v > CONF_TTL_MAX_S)
		return conf_error(p, "tombstone-ttl: '%s' is outside 1h..3650d",
		    argv[1]);
	p->conf->tombstone_ttl_s = v;
	return 0;
}

/* Splits a listen address into host ("*" or numeric) and port. */
static int
parse_addr(struct parser *p, const char *what, bool any_ok,
    const char *word, char **host_r, char **port_r)
{
	struct in6_addr a6;
	struct in_addr a4;
	const char *colon, *close;
	char *host = NULL;
	uint16_t port;
	int rc = -1;

	if (word[0] == '[') {
		close = strchr(word, ']');
		if (close == NULL || close[1] != ':') {
			conf_error(p, "%s: '%s': expected [IPv6]:PORT",
			    what, word);
			goto done;
		}
		host = xstrndup(word + 1, (size_t)(close - word - 1));
		if (inet_pton(AF_INET6, host, &a6) != 1) {
			conf_error(p, "%s: '%s' is not a numeric IPv6 "
			    "address", what, host);
			goto done;
		}
		colon = close + 1;
	} else {
		colon = strrchr(word, ':');
		if (colon == NULL) {
			conf_error(p, "%s: '%s' has no port "
			    "(ADDRESS:PORT)", what, word);
			goto done;
		}
		host = xstrndup(word, (size_t)(colon - word));
		if (strchr(host, ':') != NULL) {
			conf_error(p, "%s: '%s': an IPv6 address goes in "
			    "brackets, as in [::1]:143", what, word);
			goto done;
		}
		if ((!any_ok || strcmp(host, "*") != 0) &&
		    inet_pton(AF_INET, host, &a4) != 1) {
			conf_error(p, "%s: '%s' is not a numeric IPv4 "
			    "address, [IPv6]%s", what, host,
			    any_ok ? " or *" : "");
			goto done;
		}
	}
	if (parse_port(colon + 1, &port) != 0) {
		conf_error(p, "%s: '%s' is not a port (1-65535)", what,
		    colon + 1);
		goto done;
	}
	*host_r = host;
	host = NULL;
	/* Normalised, so that "0143" and "143" compare equal. */
	*port_r = xasprintf("%u", (unsigned)port);
	rc = 0;
done:
	free(host);
	return rc;
}

/* host and port as one "ADDRESS:PORT" string (IPv6 in brackets). */
static char *
join_addr(const char *host, const char *port)
{
	return strchr(host, ':') != NULL ? xasprintf("[%s]:%s", host, port) :
	    xasprintf("%s:%s", host, port);
}

static int
parse_peer_listen(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	char *host = NULL, *port = NULL;

	if (parse_addr(p, "peer-listen", true, argv[1], &host, &port) != 0)
		return -1;
	free(p->conf->peer_listen_host);
	free(p->conf->peer_listen_port);
	p->conf->peer_listen_host = host;
	p->conf->peer_listen_port = port;
	return 0;
}

static int
parse_peer(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	char *host = NULL, *port = NULL;

	if (p->conf->n_peers >= CONF_PEERS_MAX)
		return conf_error(p, "peer: more than %d seed peers",
		    CONF_PEERS_MAX);
	if (parse_addr(p, "peer", false, argv[1], &host, &port) != 0)
		return -1;
	p->conf->peers = xrealloc(p->conf->peers, (p->conf->n_peers + 1) *
	    sizeof(*p->conf->peers));
	p->conf->peers[p->conf->n_peers++] = join_addr(host, port);
	free(host);
	free(port);
	return 0;
}

static int
parse_peer_address(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	char *host = NULL, *port = NULL;

	if (parse_addr(p, "peer-address", false, argv[1], &host, &port) != 0)
		return -1;
	free(p->conf->peer_address);
	p->conf->peer_address = join_addr(host, port);
	free(host);
	free(port);
	return 0;
}

static int
parse_lookup_relay(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	struct mm_config *conf = p->conf;
	char *host = NULL, *port = NULL;
	int proto;

	for (proto = 0; proto < MM_PROTO_COUNT; proto++)
		if (strcmp(argv[1], mm_proto_name((enum mm_proto)proto)) == 0)
			break;
	if (proto == MM_PROTO_COUNT)
		return conf_error(p, "lookup-relay: unknown protocol '%s' "
		    "(imap, pop3 or smtp)", argv[1]);
	if (conf->lookup_relay[proto] != NULL)
		return conf_error(p, "lookup-relay: '%s' given twice",
		    argv[1]);
	if (parse_addr(p, "lookup-relay", false, argv[2], &host, &port) != 0)
		return -1;
	conf->lookup_relay[proto] = join_addr(host, port);
	free(host);
	free(port);
	return 0;
}

static int
parse_hostname(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	const char *why = host_problem(argv[1]);

	if (why != NULL || strchr(argv[1], ':') != NULL ||
	    strspn(argv[1], "0123456789.") == strlen(argv[1]))
		return conf_error(p, "hostname: '%s' is not a DNS name%s%s",
		    argv[1], why != NULL ? ": " : "", why != NULL ? why : "");
	free(p->conf->hostname);
	p->conf->hostname = xstrdup(argv[1]);
	return 0;
}

static void
listener_clear(struct mm_listener_conf *l)
{
	free(l->host);
	free(l->port);
	free(l->cert_file);
	free(l->key_file);
	free(l->pp_from);
}

/* ---- cross-site sessions ---------------------------------------------- */

static int
parse_dsync_listen(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	struct mm_listener_conf *l = xcalloc(1, sizeof(*l));

	if (parse_addr(p, "dsync-listen", false, argv[1], &l->host,
	    &l->port) != 0) {
		free(l);
		return -1;
	}
	l->line = p->line;
	p->conf->dsync_listen = l;
	return 0;
}

static int
parse_session_listen(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	struct mm_listener_conf *l = xcalloc(1, sizeof(*l));

	if (parse_addr(p, "session-listen", true, argv[1], &l->host,
	    &l->port) != 0) {
		free(l);
		return -1;
	}
	l->line = p->line;
	p->conf->session_listen = l;
	return 0;
}

static int
parse_session_address(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	char *host = NULL, *port = NULL;

	if (parse_addr(p, "session-address", false, argv[1], &host,
	    &port) != 0)
		return -1;
	free(p->conf->session_address);
	p->conf->session_address = join_addr(host, port);
	free(host);
	free(port);
	return 0;
}

static void
site_route_clear(struct mm_site_route *r)
{
	size_t i;

	for (i = 0; i < r->n_addrs; i++)
		free(r->addrs[i]);
	free(r->addrs);
	free(r->site);
}

static int
parse_site_route(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	struct mm_config *conf = p->conf;
	struct mm_site_route r;
	size_t n = strlen(argv[1]), i;
	char *host = NULL, *port = NULL;
	int a;

	if (n < 1 || n > CONF_SITE_MAX ||
	    strspn(argv[1], "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
		return conf_error(p, "site-route: bad site name '%s' (1-%d of "
		    "a-z 0-9 -)", argv[1], CONF_SITE_MAX);
	for (i = 0; i < conf->n_site_routes; i++)
		if (strcmp(conf->site_routes[i].site, argv[1]) == 0)
			return conf_error(p, "site-route: site '%s' already "
			    "routed on line %d", argv[1],
			    conf->site_routes[i].line);
	memset(&r, 0, sizeof(r));
	r.line = p->line;
	r.site = xstrdup(argv[1]);
	r.addrs = xcalloc((size_t)argc, sizeof(*r.addrs));
	for (a = 2; a < argc; a++) {
		if (parse_addr(p, "site-route", false, argv[a], &host,
		    &port) != 0) {
			site_route_clear(&r);
			return -1;
		}
		r.addrs[r.n_addrs++] = join_addr(host, port);
		free(host);
		free(port);
	}
	conf->site_routes = xrealloc(conf->site_routes,
	    (conf->n_site_routes + 1) * sizeof(*conf->site_routes));
	conf->site_routes[conf->n_site_routes++] = r;
	return 0;
}

/* proxy-protocol=NET[,NET...] of a listen line (word is the whole option,
 * val its value): the networks whose connections start with a PROXY
 * header. */
static int
parse_pp_from(struct parser *p, const char *word, const char *val,
    struct mm_listener_conf *l)
{
	struct mm_net *nets = NULL;
	const char *s, *end;
	char *elem = NULL;
	size_t n = 1, i = 0;
	int rc = -1;

	if (*val == '\0') {
		conf_error(p, "listen: empty value in '%s'", word);
		goto done;
	}
	for (s = val; *s != '\0'; s++)
		if (*s == ',')
			n++;
	if (n > MM_PP_NETS_MAX) {
		conf_error(p, "listen: proxy-protocol: more than %d networks",
		    MM_PP_NETS_MAX);
		goto done;
	}
	nets = xcalloc(n, sizeof(*nets));
	for (s = val; ; s = end + 1) {
		end = s + strcspn(s, ",");
		if (end == s) {
			conf_error(p, "listen: proxy-protocol: empty network "
			    "in '%s'", val);
			goto done;
		}
		elem = xstrndup(s, (size_t)(end - s));
		if (mm_net_parse(elem, &nets[i]) != 0) {
			conf_error(p, "listen: proxy-protocol: '%s' is not a "
			    "network (ADDR or ADDR/BITS, host bits zero)",
			    elem);
			goto done;
		}
		free(elem);
		elem = NULL;
		i++;
		if (*end == '\0')
			break;
	}
	l->pp_from = nets;
	l->n_pp_from = n;
	nets = NULL;
	rc = 0;
done:
	free(elem);
	free(nets);
	return rc;
}

static int
parse_listen(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	static const struct {
		const char *name;
		enum mm_proto proto;
		bool implicit;
		enum mm_listen_kind kind;
	} listen_protos[] = {
		{ "imap", MM_PROTO_IMAP, false, MM_LISTEN_MAIL },
		{ "imaps", MM_PROTO_IMAP, true, MM_LISTEN_MAIL },
		{ "pop3", MM_PROTO_POP3, false, MM_LISTEN_MAIL },
		{ "pop3s", MM_PROTO_POP3, true, MM_LISTEN_MAIL },
		{ "smtp", MM_PROTO_SMTP, false, MM_LISTEN_MAIL },
		{ "smtps", MM_PROTO_SMTP, true, MM_LISTEN_MAIL },
		{ "socketmap", MM_PROTO_SMTP, false, MM_LISTEN_SOCKETMAP },
		{ "auth-http", MM_PROTO_IMAP, false, MM_LISTEN_AUTH_HTTP },
		{ "metrics", MM_PROTO_IMAP, false, MM_LISTEN_METRICS },
	};
	struct mm_config *conf = p->conf;
	struct mm_listener_conf l;
	bool implicit, seen_require = false;
	const char *val;
	size_t i;
	int a, rc = -1;

	memset(&l, 0, sizeof(l));
	l.line = p->line;
	if (conf->n_listeners >= CONF_LISTENERS_MAX) {
		conf_error(p, "listen: more than %d listeners",
		    CONF_LISTENERS_MAX);
		goto done;
	}
	for (i = 0; i < MM_ARRAY_SIZE(listen_protos); i++)
		if (strcmp(listen_protos[i].name, argv[1]) == 0)
			break;
	if (i == MM_ARRAY_SIZE(listen_protos)) {
		conf_error(p, "listen: unknown protocol '%s' (imap, imaps, "
		    "pop3, pop3s, smtp, smtps, socketmap, auth-http or "
		    "metrics)", argv[1]);
		goto done;
	}
	l.proto = listen_protos[i].proto;
	l.kind = listen_protos[i].kind;
	implicit = listen_protos[i].implicit;
	if (parse_addr(p, "listen", true, argv[2], &l.host, &l.port) != 0)
		goto done;
	/* Postfix and nginx ask their lookups directly, never through TLS
	 * or a load balancer. */
	if (l.kind != MM_LISTEN_MAIL && argc > 3) {
		conf_error(p, "listen: '%s' takes no options, so not '%s' (it "
		    "answers %s directly and in plaintext: keep it on a "
		    "private address)", argv[1], argv[3],
		    l.kind == MM_LISTEN_METRICS ? "scrapes" :
		    "lookups from Postfix or nginx");
		goto done;
	}

	for (a = 3; a < argc; a++) {
		char **field = NULL;

		if (option_is(argv[a], "proxy-protocol", &val)) {
			if (l.pp_from != NULL) {
				conf_error(p, "listen: duplicate option '%s'",
				    argv[a]);
				goto done;
			}
			if (parse_pp_from(p, argv[a], val, &l) != 0)
				goto done;
			continue;
		}
		if (strcmp(argv[a], "require-tls") == 0) {
			if (seen_require) {
				conf_error(p, "listen: duplicate "
				    "'require-tls'");
				goto done;
			}
			seen_require = l.require_tls = true;
			continue;
		}
		if (option_is(argv[a], "cert", &val))
			field = &l.cert_file;
		else if (option_is(argv[a], "key", &val))
			field = &l.key_file;
		else {
			conf_error(p, "listen: unknown option '%s'", argv[a]);
			goto done;
		}
		if (*field != NULL) {
			conf_error(p, "listen: duplicate option '%s'",
			    argv[a]);
			goto done;
		}
		if (*val == '\0') {
			conf_error(p, "listen: empty value in '%s'", argv[a]);
			goto done;
		}
		*field = xstrdup(val);
	}

	if (l.cert_file != NULL && l.key_file == NULL) {
		conf_error(p, "listen: 'cert=%s' without key=", l.cert_file);
		goto done;
	}
	if (l.key_file != NULL && l.cert_file == NULL) {
		conf_error(p, "listen: 'key=%s' without cert=", l.key_file);
		goto done;
	}
	if (implicit && l.cert_file == NULL) {
		conf_error(p, "listen: '%s' needs cert= and key=", argv[1]);
		goto done;
	}
	if (l.require_tls && l.cert_file == NULL) {
		conf_error(p, "listen: 'require-tls' needs cert= and key=");
		goto done;
	}
	if (implicit)
		l.tls = MM_TLS_IMPLICIT;
	else if (l.cert_file != NULL)
		l.tls = MM_TLS_STARTTLS;
	else
		l.tls = MM_TLS_NONE;

	/* Caught here, the mistake is reported with its line rather than
	 * as a bind failure at start-up. */
	for (i = 0; i < conf->n_listeners; i++) {
		const struct mm_listener_conf *o = &conf->listeners[i];

		if (strcmp(o->host, l.host) == 0 &&
		    strcmp(o->port, l.port) == 0) {
			conf_error(p, "listen: '%s' is already used on line %d",
			    argv[2], o->line);
			goto done;
		}
	}

	conf->listeners = xrealloc(conf->listeners,
	    (conf->n_listeners + 1) * sizeof(*conf->listeners));
	conf->listeners[conf->n_listeners++] = l;
	memset(&l, 0, sizeof(l));
	rc = 0;
done:
	listener_clear(&l);
	return rc;
}

static bool
valid_backend_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > CONF_NAME_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789._-") == n;
}

/* NULL if host is a DNS name or a numeric address; else what is wrong. */
static const char *
host_problem(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	const char *s;
	size_t label = 0;

	if (strchr(host, '[') != NULL || strchr(host, ']') != NULL)
		return "give an IPv6 address without brackets";
	if (strchr(host, ':') != NULL) {
		if (inet_pton(AF_INET6, host, &a6) == 1)
			return NULL;
		if (strchr(host, ':') == strrchr(host, ':'))
			return "a port goes in imap=, pop3=, lmtp= or smtp=";
		return "not a numeric IPv6 address";
	}
	/* The resolver would read a dotted number as an address, so it
	 * must be a valid one. */
	if (strspn(host, "0123456789.") == strlen(host)) {
		if (inet_pton(AF_INET, host, &a4) == 1)
			return NULL;
		return "not a numeric IPv4 address";
	}
	if (strlen(host) > CONF_HOST_MAX)
		return "host name too long";
	for (s = host; ; s++) {
		if (*s == '.' || *s == '\0') {
			if (label == 0)
				return "empty label in host name";
			if (*s == '\0')
				break;
			label = 0;
			continue;
		}
		if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		    "0123456789-_", *s) == NULL)
			return "invalid character in host name";
		if (label == 0 && *s == '-')
			return "host name label starts with '-'";
		if (++label > CONF_LABEL_MAX)
			return "host name label longer than 63 bytes";
	}
	return NULL;
}

static void
backend_clear(struct mm_backend_conf *b)
{
	free(b->name);
	free(b->host);
	free(b->ca_file);
	free(b->tls_name);
	if (b->doveadm_password != NULL) {
		mm_wipe(b->doveadm_password, strlen(b->doveadm_password));
		free(b->doveadm_password);
	}
	free(b->move_engine);
}

/* The first line of file path (a doveadm_password) into *secret_r. The
 * file must be readable by its owner only: it lets anyone run any doveadm
 * command on the back end. */
static int
read_secret(struct parser *p, const char *path, char **secret_r)
{
	char buf[512];
	struct stat st;
	FILE *f;
	size_t n;
	int rc = -1;

	if ((f = fopen(path, "r")) == NULL) {
		conf_error(p, "backend: doveadm-secret '%s': %s", path,
		    strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077) != 0) {
		conf_error(p, "backend: doveadm-secret '%s': readable by "
		    "others (chmod 600 it)", path);
		goto done;
	}
	if (fgets(buf, sizeof(buf), f) == NULL) {
		conf_error(p, "backend: doveadm-secret '%s': empty", path);
		goto done;
	}
	n = strcspn(buf, "\r\n");
	buf[n] = '\0';
	if (n == 0 || n == sizeof(buf) - 1) {
		conf_error(p, "backend: doveadm-secret '%s': the first line "
		    "must hold the password (1-510 bytes)", path);
		goto done;
	}
	*secret_r = xstrdup(buf);
	rc = 0;
done:
	mm_wipe(buf, sizeof(buf));
	fclose(f);
	return rc;
}

enum backend_opt {
	BOPT_IMAP, BOPT_POP3, BOPT_LMTP, BOPT_SMTP, BOPT_TLS, BOPT_CA,
	BOPT_TLS_NAME, BOPT_CLIENT_ADDR, BOPT_DOVEADM, BOPT_DOVEADM_SECRET,
	BOPT_MOVE, BOPT_COUNT
};

static int
parse_backend(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	static const char *const opt_keys[BOPT_COUNT] = {
		"imap", "pop3", "lmtp", "smtp", "tls", "ca", "tls-name",
		"client-addr", "doveadm", "doveadm-secret", "move",
	};
	struct mm_config *conf = p->conf;
	struct mm_backend_conf b;
	bool seen[BOPT_COUNT] = { false };
	const char *why, *val = NULL;
	size_t i;
	int a, o, rc = -1;

	memset(&b, 0, sizeof(b));
	b.line = p->line;
	if (conf->n_backends >= CONF_BACKENDS_MAX) {
		conf_error(p, "backend: more than %d back ends",
		    CONF_BACKENDS_MAX);
		goto done;
	}
	if (!valid_backend_name(argv[1])) {
		conf_error(p, "backend: bad name '%s' (1-%d of A-Z a-z 0-9 "
		    ". _ -)", argv[1], CONF_NAME_MAX);
		goto done;
	}
	for (i = 0; i < conf->n_backends; i++) {
		if (strcmp(conf->backends[i].name, argv[1]) == 0) {
			conf_error(p, "backend: '%s' is already defined on "
			    "line %d", argv[1], conf->backends[i].line);
			goto done;
		}
	}
	if ((why = host_problem(argv[2])) != NULL) {
		conf_error(p, "backend: bad host '%s': %s", argv[2], why);
		goto done;
	}
	b.name = xstrdup(argv[1]);
	b.host = xstrdup(argv[2]);
	b.tls = MM_TLS_NONE;
	b.client_addr = MM_CADDR_NONE;

	for (a = 3; a < argc; a++) {
		for (o = 0; o < BOPT_COUNT; o++)
			if (option_is(argv[a], opt_keys[o], &val))
				break;
		if (o == BOPT_COUNT) {
			conf_error(p, "backend: unknown option '%s'", argv[a]);
			goto done;
		}
		if (seen[o]) {
			conf_error(p, "backend: duplicate option '%s'",
			    argv[a]);
			goto done;
		}
		seen[o] = true;
		if (*val == '\0') {
			conf_error(p, "backend: empty value in '%s'", argv[a]);
			goto done;
		}
		switch (o) {
		case BOPT_IMAP:
		case BOPT_POP3:
			if (parse_port(val, &b.port[o == BOPT_IMAP ?
			    MM_PROTO_IMAP : MM_PROTO_POP3]) != 0) {
				conf_error(p, "backend: '%s': not a port "
				    "(1-65535)", argv[a]);
				goto done;
			}
			break;
		case BOPT_LMTP:
		case BOPT_SMTP:
			if (seen[BOPT_LMTP] && seen[BOPT_SMTP]) {
				conf_error(p, "backend: give lmtp= or smtp=, "
				    "not both: mail goes to one port");
				goto done;
			}
			if (parse_port(val, &b.port[MM_PROTO_SMTP]) != 0) {
				conf_error(p, "backend: '%s': not a port "
				    "(1-65535)", argv[a]);
				goto done;
			}
			b.lmtp = o == BOPT_LMTP;
			break;
		case BOPT_TLS:
			if (strcmp(val, "none") == 0)
				b.tls = MM_TLS_NONE;
			else if (strcmp(val, "starttls") == 0)
				b.tls = MM_TLS_STARTTLS;
			else if (strcmp(val, "implicit") == 0)
				b.tls = MM_TLS_IMPLICIT;
			else {
				conf_error(p, "backend: '%s': tls is none, "
				    "starttls or implicit", argv[a]);
				goto done;
			}
			break;
		case BOPT_CA:
			b.ca_file = xstrdup(val);
			break;
		case BOPT_TLS_NAME:
			if ((why = host_problem(val)) != NULL) {
				conf_error(p, "backend: bad '%s': %s",
				    argv[a], why);
				goto done;
			}
			b.tls_name = xstrdup(val);
			break;
		case BOPT_CLIENT_ADDR:
			if (strcmp(val, "none") == 0)
				b.client_addr = MM_CADDR_NONE;
			else if (strcmp(val, "id") == 0)
				b.client_addr = MM_CADDR_ID;
			else if (strcmp(val, "proxy") == 0)
				b.client_addr = MM_CADDR_PROXY2;
			else {
				conf_error(p, "backend: '%s': client-addr is "
				    "none, id or proxy", argv[a]);
				goto done;
			}
			break;
		case BOPT_DOVEADM:
			if (parse_port(val, &b.doveadm_port) != 0) {
				conf_error(p, "backend: '%s': not a port "
				    "(1-65535)", argv[a]);
				goto done;
			}
			break;
		case BOPT_DOVEADM_SECRET:
			if (read_secret(p, val, &b.doveadm_password) != 0)
				goto done;
			break;
		case BOPT_MOVE:
			if (strcmp(val, "dsync") != 0) {
				conf_error(p, "backend: '%s': the move engine "
				    "is dsync (the only one built)", argv[a]);
				goto done;
			}
			b.move_engine = xstrdup(val);
			break;
		}
	}
	if (seen[BOPT_DOVEADM] != seen[BOPT_DOVEADM_SECRET]) {
		conf_error(p, "backend: doveadm= and doveadm-secret= go "
		    "together");
		goto done;
	}
	if (seen[BOPT_MOVE] && !seen[BOPT_DOVEADM]) {
		conf_error(p, "backend: move=dsync needs doveadm= and "
		    "doveadm-secret=: dsync is driven through the back end's "
		    "doveadm server");
		goto done;
	}

	/* Certificate settings on a plaintext back end suggest the TLS mode
	 * was forgotten; better refused than silently ignored. */
	if (b.tls == MM_TLS_NONE && (seen[BOPT_CA] || seen[BOPT_TLS_NAME])) {
		conf_error(p, "backend: '%s' needs tls=starttls or "
		    "tls=implicit", seen[BOPT_CA] ? "ca=" : "tls-name=");
		goto done;
	}
	if (!seen[BOPT_IMAP] && !seen[BOPT_POP3] && !seen[BOPT_LMTP] &&
	    !seen[BOPT_SMTP]) {
		b.port[MM_PROTO_IMAP] = mm_proto_default_port(MM_PROTO_IMAP,
		    b.tls);
		b.port[MM_PROTO_POP3] = mm_proto_default_port(MM_PROTO_POP3,
		    b.tls);
	}
	if (b.tls_name == NULL)
		b.tls_name = xstrdup(b.host);

	conf->backends = xrealloc(conf->backends,
	    (conf->n_backends + 1) * sizeof(*conf->backends));
	conf->backends[conf->n_backends++] = b;
	memset(&b, 0, sizeof(b));
	rc = 0;
done:
	backend_clear(&b);
	return rc;
}

static int
parse_limit(struct parser *p, const struct directive *d, int argc,
    char **argv)
{
	const struct limit_def *ld = NULL;
	char bound[32];
	uint64_t v = 0;
	void *field;
	size_t i;
	int r;

	for (i = 0; i < MM_ARRAY_SIZE(limit_defs); i++) {
		if (strcmp(limit_defs[i].directive, d->name) == 0 &&
		    strcmp(limit_defs[i].name, argv[1]) == 0) {
			ld = &limit_defs[i];
			break;
		}
	}
	if (ld == NULL)
		return conf_error(p, "unknown %s '%s'", d->name, argv[1]);
	if (p->limit_line[i] != 0)
		return conf_error(p, "duplicate %s '%s' (first on line %d)",
		    d->name, argv[1], p->limit_line[i]);
	p->limit_line[i] = p->line;

	switch (ld->kind) {
	case VAL_COUNT:
		r = parse_uint(argv[2], &v);
		break;
	case VAL_SIZE:
		r = mm_parse_size(argv[2], &v);
		break;
	case VAL_DURATION:
	default:
		r = mm_parse_duration_ms(argv[2], &v);
		break;
	}
	if (r != 0)
		return conf_error(p, "%s %s: bad value '%s' (%s)", d->name,
		    ld->name, argv[2], ld->kind == VAL_COUNT ? "a number" :
		    ld->kind == VAL_SIZE ? "a size such as 8192, 64k, 20M" :
		    "a duration such as 30s, 500ms, 5m, 1h");
	if (v < ld->min)
		return conf_error(p, "%s %s: '%s' is below the minimum %s: %s",
		    d->name, ld->name, argv[2],
		    format_value(ld->kind, ld->min, bound, sizeof(bound)),
		    ld->why_min != NULL ? ld->why_min : "too small");
	if (v > ld->max)
		return conf_error(p, "%s %s: '%s' is above the maximum %s",
		    d->name, ld->name, argv[2],
		    format_value(ld->kind, ld->max, bound, sizeof(bound)));

	field = (char *)&p->conf->limits + ld->off;
	if (ld->width == sizeof(uint32_t))
		*(uint32_t *)field = (uint32_t)v;
	else
		*(uint64_t *)field = v;
	return 0;
}

/* Parses one line, NUL-terminated, newline removed. Modifies it. */
static int
parse_line(struct parser *p, char *s)
{
	const struct directive *d = NULL;
	char *argv[CONF_WORDS_MAX], *hash;
	unsigned char c;
	size_t i;
	int argc = 0;

	if ((hash = strchr(s, '#')) != NULL)
		*hash = '\0';
	for (i = 0; s[i] != '\0'; i++) {
		c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return conf_error(p, "control character 0x%02x",
			    (unsigned)c);
	}
	/* Words past CONF_WORDS_MAX are dropped: the array is then longer
	 * than any directive's usage, which the count check reports. */
	for (;;) {
		s += strspn(s, " \t");
		if (*s == '\0' || argc == CONF_WORDS_MAX)
			break;
		argv[argc++] = s;
		s += strcspn(s, " \t");
		if (*s != '\0')
			*s++ = '\0';
	}
	if (argc == 0)
		return 0;

	for (i = 0; i < MM_ARRAY_SIZE(directives); i++) {
		if (strcmp(directives[i].name, argv[0]) == 0) {
			d = &directives[i];
			break;
		}
	}
	if (d == NULL)
		return conf_error(p, "unknown directive '%s'", argv[0]);
	if (argc - 1 < d->args_min)
		return conf_error(p, "%s: missing argument (usage: %s %s)",
		    d->name, d->name, d->usage);
	if (argc - 1 > d->args_max)
		return conf_error(p, "%s: unexpected '%s' (usage: %s %s)",
		    d->name, argv[d->args_max + 1], d->name, d->usage);
	if (!d->repeat && p->directive_line[i] != 0)
		return conf_error(p, "duplicate '%s' (first on line %d)",
		    d->name, p->directive_line[i]);
	p->directive_line[i] = p->line;
	return d->parse(p, d, argc, argv);
}

static size_t
limit_index(const char *name)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(limit_defs); i++)
		if (strcmp(limit_defs[i].name, name) == 0)
			break;
	return i;
}

static int
directive_line(const struct parser *p, const char *name)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(directives); i++)
		if (strcmp(directives[i].name, name) == 0)
			return p->directive_line[i];
	return 0;
}

/* The directory's settings go together: without a store they would be
 * silently ignored, and a store without keys cannot sign anything. */
static int
check_directory(struct parser *p)
{
	static const char *const needs_dir[] = { "site", "node-name",
		"node-key", "root-key", "control-socket", "admin-group",
		"tombstone-ttl", "popmap-fallback", "peer-listen", "peer",
		"peer-address" };
	static const char *const needed[] = { "site", "node-key",
		"root-key" };
	struct mm_config *conf = p->conf;
	char host[256];
	size_t i;

	if (conf->directory == NULL) {
		for (i = 0; i < MM_ARRAY_SIZE(needs_dir); i++) {
			if ((p->line = directive_line(p, needs_dir[i])) != 0)
				return conf_error(p, "%s: needs 'directory'",
				    needs_dir[i]);
		}
		return 0;
	}
	p->line = directive_line(p, "directory");
	for (i = 0; i < MM_ARRAY_SIZE(needed); i++)
		if (directive_line(p, needed[i]) == 0)
			return conf_error(p, "directory: needs '%s'",
			    needed[i]);
	if (conf->node_name == NULL) {
		memset(host, 0, sizeof(host));
		if (gethostname(host, sizeof(host) - 1) != 0)
			host[0] = '\0';
		/* A short host name is unique within a site in practice and
		 * keeps records small. */
		host[strcspn(host, ".")] = '\0';
		if (!valid_node_name(host))
			return conf_error(p, "directory: the host name '%s' "
			    "cannot name this node: set node-name", host);
		conf->node_name = xstrdup(host);
	}
	if (conf->control_socket == NULL)
		conf->control_socket = xstrdup(CONF_CONTROL_SOCKET);
	/* Without a listener of its own a node could dial out but never
	 * be reached, and gossip needs both ways. */
	if (conf->peer_listen_host == NULL) {
		static const char *const needs_listen[] = { "peer",
			"peer-address" };

		for (i = 0; i < MM_ARRAY_SIZE(needs_listen); i++) {
			if ((p->line = directive_line(p,
			    needs_listen[i])) != 0)
				return conf_error(p, "%s: needs "
				    "'peer-listen'", needs_listen[i]);
		}
	} else if (conf->peer_address == NULL) {
		p->line = directive_line(p, "peer-listen");
		if (strcmp(conf->peer_listen_host, "*") == 0)
			return conf_error(p, "peer-listen: on '*' other nodes "
			    "need 'peer-address' to reach this one");
		conf->peer_address = join_addr(conf->peer_listen_host,
		    conf->peer_listen_port);
	}
	p->line = 0;
	return 0;
}

/* Cross-site sessions need the directory (whose records route them and
 * whose certificates prove the channel's ends) and a transport key. */
static int
check_xsite(struct parser *p)
{
	static const char *const needs[] = { "transport-key",
		"session-listen", "session-address", "site-route",
		"dsync-listen" };
	struct mm_config *conf = p->conf;
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(needs); i++) {
		if ((p->line = directive_line(p, needs[i])) == 0)
			continue;
		if (conf->directory == NULL)
			return conf_error(p, "%s: needs 'directory'",
			    needs[i]);
		if (conf->transport_key == NULL)
			return conf_error(p, "%s: needs 'transport-key'",
			    needs[i]);
	}
	for (i = 0; i < conf->n_site_routes; i++) {
		if (conf->site != NULL &&
		    strcmp(conf->site_routes[i].site, conf->site) == 0) {
			p->line = conf->site_routes[i].line;
			return conf_error(p, "site-route: '%s' is this node's "
			    "own site", conf->site);
		}
	}
	/* What gossip tells other sites about where to open sessions. */
	if (conf->session_address != NULL && conf->session_listen == NULL) {
		p->line = directive_line(p, "session-address");
		return conf_error(p, "session-address: needs "
		    "'session-listen'");
	}
	if (conf->session_address == NULL && conf->session_listen != NULL &&
	    strcmp(conf->session_listen->host, "*") != 0)
		conf->session_address = join_addr(conf->session_listen->host,
		    conf->session_listen->port);
	p->line = 0;
	return 0;
}

/* The socketmap and auth_http answers for users of other sites name this
 * node's own listener of the protocol: the first plaintext one, with "*"
 * read as the loopback address (set lookup-relay when Postfix or nginx
 * run on another host). */
static int
check_lookups(struct parser *p)
{
	struct mm_config *conf = p->conf;
	bool lookups = false;
	size_t i;
	int proto;

	for (i = 0; i < conf->n_listeners; i++)
		if (conf->listeners[i].kind == MM_LISTEN_SOCKETMAP ||
		    conf->listeners[i].kind == MM_LISTEN_AUTH_HTTP)
			lookups = true;
	if (!lookups)
		return 0;
	for (proto = 0; proto < MM_PROTO_COUNT; proto++) {
		if (conf->lookup_relay[proto] != NULL)
			continue;
		for (i = 0; i < conf->n_listeners; i++) {
			const struct mm_listener_conf *l = &conf->listeners[i];

			if (l->kind != MM_LISTEN_MAIL ||
			    l->proto != (enum mm_proto)proto ||
			    l->tls == MM_TLS_IMPLICIT)
				continue;
			conf->lookup_relay[proto] = join_addr(
			    strcmp(l->host, "*") == 0 ? "127.0.0.1" : l->host,
			    l->port);
			break;
		}
	}
	return 0;
}

/* Rules that involve more than one line. */
static int
check_config(struct parser *p)
{
	const struct mm_limits *lim = &p->conf->limits;
	size_t di = limit_index("auth-failure-delay");
	size_t mi = limit_index("auth-failure-delay-max");

	p->line = 0;
	if (p->conf->n_listeners == 0)
		return conf_error(p, "no listen directive");
	if (check_directory(p) != 0)
		return -1;
	if (check_xsite(p) != 0)
		return -1;
	if (check_lookups(p) != 0)
		return -1;
	if (lim->auth_fail_delay_max_ms < lim->auth_fail_delay_ms) {
		p->line = p->limit_line[mi] > p->limit_line[di] ?
		    p->limit_line[mi] : p->limit_line[di];
		return conf_error(p, "limit auth-failure-delay-max is below "
		    "auth-failure-delay");
	}
	return 0;
}

static struct mm_config *
config_new(const char *fname)
{
	struct mm_config *conf = xcalloc(1, sizeof(*conf));
	size_t i;

	conf->path = xstrdup(fname);
	conf->user_lowercase = true;
	conf->tombstone_ttl_s = CONF_TTL_DEFAULT_S;
	for (i = 0; i < MM_ARRAY_SIZE(limit_defs); i++) {
		const struct limit_def *ld = &limit_defs[i];
		void *field = (char *)&conf->limits + ld->off;

		if (ld->width == sizeof(uint32_t))
			*(uint32_t *)field = (uint32_t)ld->def;
		else
			*(uint64_t *)field = ld->def;
	}
	return conf;
}

struct mm_config *
mm_config_parse(const char *text, size_t len, const char *fname,
    char **errstr_r)
{
	struct mm_config *conf = NULL;
	struct parser p;
	char buf[CONF_LINE_MAX + 1];
	const char *s, *nl;
	size_t pos = 0, n;

	memset(&p, 0, sizeof(p));
	p.fname = fname;
	p.conf = config_new(fname);
	if (len > CONF_FILE_MAX) {
		conf_error(&p, "larger than %d bytes", CONF_FILE_MAX);
		goto done;
	}
	while (pos < len) {
		s = text + pos;
		nl = memchr(s, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - s) : len - pos;
		pos += n + (nl != NULL);
		p.line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;	/* CRLF from an editor elsewhere */
		if (n > CONF_LINE_MAX) {
			conf_error(&p, "line longer than %d bytes",
			    CONF_LINE_MAX);
			goto done;
		}
		if (memchr(s, '\0', n) != NULL) {
			conf_error(&p, "NUL byte in line");
			goto done;
		}
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (parse_line(&p, buf) != 0)
			goto done;
	}
	if (check_config(&p) != 0)
		goto done;
	conf = p.conf;
	p.conf = NULL;
done:
	mm_config_free(p.conf);
	if (errstr_r != NULL)
		*errstr_r = p.err;
	else
		free(p.err);
	return conf;
}

struct mm_config *
mm_config_load(const char *path, char **errstr_r)
{
	struct mm_config *conf = NULL;
	char *buf = NULL, *err = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		err = xasprintf("%s: %s", path, strerror(errno));
		goto done;
	}
	/* One byte more than allowed tells an oversized file apart. */
	buf = xmalloc(CONF_FILE_MAX + 1);
	for (;;) {
		n = read(fd, buf + len, CONF_FILE_MAX + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			err = xasprintf("%s: %s", path, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONF_FILE_MAX) {
			err = xasprintf("%s: larger than %d bytes", path,
			    CONF_FILE_MAX);
			goto done;
		}
	}
	conf = mm_config_parse(buf, len, path, &err);
done:
	free(buf);
	if (fd != -1)
		close(fd);
	if (errstr_r != NULL)
		*errstr_r = err;
	else
		free(err);
	return conf;
}

void
mm_config_free(struct mm_config *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->n_backends; i++)
		backend_clear(&conf->backends[i]);
	free(conf->backends);
	for (i = 0; i < conf->n_listeners; i++)
		listener_clear(&conf->listeners[i]);
	free(conf->listeners);
	free(conf->default_backend);
	free(conf->site);
	free(conf->node_name);
	free(conf->directory);
	free(conf->node_key);
	free(conf->root_key);
	free(conf->control_socket);
	free(conf->admin_group);
	for (i = 0; i < conf->n_peers; i++)
		free(conf->peers[i]);
	free(conf->peers);
	free(conf->peer_listen_host);
	free(conf->peer_listen_port);
	free(conf->peer_address);
	free(conf->transport_key);
	if (conf->session_listen != NULL)
		listener_clear(conf->session_listen);
	free(conf->session_listen);
	if (conf->dsync_listen != NULL)
		listener_clear(conf->dsync_listen);
	free(conf->dsync_listen);
	free(conf->session_address);
	for (i = 0; i < conf->n_site_routes; i++)
		site_route_clear(&conf->site_routes[i]);
	free(conf->site_routes);
	for (i = 0; i < MM_PROTO_COUNT; i++)
		free(conf->lookup_relay[i]);
	free(conf->hostname);
	free(conf->user_add_domain);
	free(conf->popmap_file);
	free(conf->pidfile);
	free(conf->group);
	free(conf->user);
	free(conf->path);
	free(conf);
}

const struct mm_backend_conf *
mm_config_backend(const struct mm_config *conf, const char *name)
{
	size_t i;

	for (i = 0; i < conf->n_backends; i++)
		if (strcmp(conf->backends[i].name, name) == 0)
			return &conf->backends[i];
	return NULL;
}

uint16_t
mm_proto_default_port(enum mm_proto proto, enum mm_tls_mode tls)
{
	switch (proto) {
	case MM_PROTO_IMAP:
		return tls == MM_TLS_IMPLICIT ? 993 : 143;
	case MM_PROTO_POP3:
		return tls == MM_TLS_IMPLICIT ? 995 : 110;
	case MM_PROTO_SMTP:
		return 24;
	default:
		return 0;
	}
}

const char *
mm_proto_name(enum mm_proto proto)
{
	switch (proto) {
	case MM_PROTO_IMAP:
		return "imap";
	case MM_PROTO_POP3:
		return "pop3";
	case MM_PROTO_SMTP:
		return "smtp";
	default:
		return "unknown";
	}
}
