/* mm_config: every directive, every default, every error message. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mm_config.h"
#include "mm_util.h"

#define FNAME	"t.conf"
#define LISTEN	"listen imap *:143\n"	/* the one directive always needed */
#define CERT	"cert=n.crt key=n.key"

/* Parses text that must be valid. */
static struct mm_config *
parse_ok(const char *text)
{
	struct mm_config *conf;
	char *err = NULL;

	conf = mm_config_parse(text, strlen(text), FNAME, &err);
	if (conf == NULL)
		fail_msg("unexpected error: %s", err);
	assert_null(err);
	return conf;
}

/* Parses text that must fail with a message that starts "t.conf:LINE: "
 * (or "t.conf: " for line 0) and contains needle. */
static void
expect_error_len(const char *text, size_t len, int line, const char *needle)
{
	struct mm_config *conf;
	char prefix[64], *err = NULL;

	conf = mm_config_parse(text, len, FNAME, &err);
	if (conf != NULL)
		fail_msg("accepted: %s", text);
	assert_non_null(err);
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%d: ", FNAME, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", FNAME);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("'%s' does not start with '%s'", err, prefix);
	if (strstr(err, needle) == NULL)
		fail_msg("'%s' does not mention '%s'", err, needle);
	free(err);
}

static void
expect_error(const char *text, int line, const char *needle)
{
	expect_error_len(text, strlen(text), line, needle);
}

/* ---- the example file ---------------------------------------------- */

static void
test_example_parses(void **state)
{
	struct mm_config *conf, *defaults;
	const struct mm_backend_conf *b;
	char *err = NULL;
	size_t i;

	conf = mm_config_load(EXAMPLE_CONF, &err);
	if (conf == NULL)
		fail_msg("%s", err);
	assert_null(err);
	assert_string_equal(conf->path, EXAMPLE_CONF);
	assert_string_equal(conf->user, "mailmesh");
	assert_string_equal(conf->group, "mailmesh");
	assert_null(conf->admin_group);
	assert_int_equal(conf->workers, 0);
	assert_false(conf->log_syslog);
	assert_string_equal(conf->popmap_file, "/etc/mailmesh/popmap");
	assert_true(conf->user_lowercase);
	assert_false(conf->user_strip_domain);

	assert_int_equal(conf->n_listeners, 5);
	assert_int_equal(conf->listeners[0].tls, MM_TLS_STARTTLS);
	assert_int_equal(conf->listeners[1].tls, MM_TLS_IMPLICIT);
	assert_int_equal(conf->listeners[2].proto, MM_PROTO_POP3);
	assert_int_equal(conf->listeners[3].tls, MM_TLS_IMPLICIT);
	assert_int_equal(conf->listeners[4].proto, MM_PROTO_SMTP);
	assert_int_equal(conf->listeners[4].tls, MM_TLS_STARTTLS);
	for (i = 0; i < conf->n_listeners; i++) {
		assert_string_equal(conf->listeners[i].host, "*");
		assert_non_null(conf->listeners[i].cert_file);
		assert_non_null(conf->listeners[i].key_file);
	}

	assert_int_equal(conf->n_backends, 2);
	b = mm_config_backend(conf, "ms1");
	assert_non_null(b);
	assert_string_equal(b->host, "10.0.0.11");
	assert_int_equal(b->port[MM_PROTO_IMAP], 143);
	assert_int_equal(b->port[MM_PROTO_POP3], 110);
	assert_int_equal(b->port[MM_PROTO_SMTP], 24);
	assert_true(b->lmtp);
	assert_int_equal(b->client_addr, MM_CADDR_ID);
	b = mm_config_backend(conf, "ms2");
	assert_non_null(b);
	assert_int_equal(b->tls, MM_TLS_IMPLICIT);
	assert_int_equal(b->port[MM_PROTO_IMAP], 993);
	assert_int_equal(b->port[MM_PROTO_POP3], 995);
	assert_string_equal(b->ca_file, "/etc/mailmesh/tls/backend-ca.crt");
	assert_string_equal(b->tls_name, "ms2.internal");

	/* The limits section says "defaults shown": hold it to that. */
	defaults = parse_ok(LISTEN);
	assert_memory_equal(&conf->limits, &defaults->limits,
	    sizeof(conf->limits));
	mm_config_free(defaults);
	mm_config_free(conf);
}

/* ---- defaults and simple directives --------------------------------- */

static void
test_defaults(void **state)
{
	struct mm_config *conf = parse_ok(LISTEN);
	const struct mm_limits *l = &conf->limits;

	assert_string_equal(conf->path, FNAME);
	assert_null(conf->user);
	assert_null(conf->group);
	assert_null(conf->pidfile);
	assert_int_equal(conf->workers, 0);
	assert_false(conf->log_syslog);
	assert_false(conf->log_debug);
	assert_null(conf->popmap_file);
	assert_true(conf->user_lowercase);
	assert_false(conf->user_strip_domain);
	assert_null(conf->user_add_domain);
	assert_null(conf->default_backend);
	assert_int_equal(conf->n_backends, 0);
	assert_null(mm_config_backend(conf, "ms1"));
	assert_null(conf->site);
	assert_null(conf->node_name);
	assert_null(conf->directory);
	assert_null(conf->node_key);
	assert_null(conf->root_key);
	assert_null(conf->control_socket);
	assert_int_equal(conf->tombstone_ttl_s, 30 * 86400);
	assert_false(conf->popmap_fallback);

	assert_int_equal(l->line_max, 8192);
	assert_int_equal(l->literal_max, 8192);
	assert_int_equal(l->commands_prelogin_max, 32);
	assert_int_equal(l->auth_fail_max, 3);
	assert_int_equal(l->auth_fail_per_ip_max, 20);
	assert_int_equal(l->auth_fail_window_ms, 5 * 60 * 1000);
	assert_int_equal(l->auth_fail_delay_ms, 1000);
	assert_int_equal(l->auth_fail_delay_max_ms, 8000);
	assert_int_equal(l->conn_max, 10000);
	assert_int_equal(l->conn_per_ip_max, 50);
	assert_int_equal(l->relay_buffer, 256 * 1024);
	assert_int_equal(l->idle_prelogin_ms, 60 * 1000);
	assert_int_equal(l->login_ms, 2 * 60 * 1000);
	assert_int_equal(l->smtp_commands_ms, 10 * 60 * 1000);
	assert_int_equal(l->smtp_data_rate, 500);
	assert_int_equal(l->smtp_error_max, 20);
	assert_int_equal(l->idle_ms, 30 * 60 * 1000);
	assert_int_equal(l->backend_connect_ms, 10 * 1000);
	assert_int_equal(l->drain_ms, 30 * 1000);
	mm_config_free(conf);
}

static void
test_process_directives(void **state)
{
	struct mm_config *conf = parse_ok(
	    "user mail\n"
	    "group mailgrp\n"
	    "workers 4\n"
	    "log syslog\n"
	    "log-debug yes\n"
	    "pidfile /run/mm.pid\n"
	    LISTEN);

	assert_string_equal(conf->user, "mail");
	assert_string_equal(conf->group, "mailgrp");
	assert_int_equal(conf->workers, 4);
	assert_true(conf->log_syslog);
	assert_true(conf->log_debug);
	assert_string_equal(conf->pidfile, "/run/mm.pid");
	mm_config_free(conf);

	conf = parse_ok("log stderr\nworkers 256\n" LISTEN);
	assert_false(conf->log_syslog);
	assert_int_equal(conf->workers, 256);
	mm_config_free(conf);
}

static void
test_routing_directives(void **state)
{
	struct mm_config *conf = parse_ok(
	    "popmap /etc/mm/popmap\n"
	    "user-lowercase no\n"
	    "user-strip-domain yes\n"
	    "user-add-domain example.com\n"
	    "default-backend mail.example.com:143\n"
	    LISTEN);

	assert_string_equal(conf->popmap_file, "/etc/mm/popmap");
	assert_false(conf->user_lowercase);
	assert_true(conf->user_strip_domain);
	assert_string_equal(conf->user_add_domain, "example.com");
	/* Need not name a configured back end. */
	assert_string_equal(conf->default_backend, "mail.example.com:143");
	mm_config_free(conf);
}

static void
test_booleans(void **state)
{
	static const struct {
		const char *word;
		bool value;
	} cases[] = {
		{ "yes", true }, { "on", true }, { "true", true },
		{ "no", false }, { "off", false }, { "false", false },
	};
	char text[128];
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(cases); i++) {
		struct mm_config *conf;

		snprintf(text, sizeof(text), "log-debug %s\n"
		    "user-lowercase %s\n" LISTEN, cases[i].word,
		    cases[i].word);
		conf = parse_ok(text);
		assert_int_equal(conf->log_debug, cases[i].value);
		assert_int_equal(conf->user_lowercase, cases[i].value);
		mm_config_free(conf);
	}
	expect_error("log-debug maybe\n" LISTEN, 1, "'maybe' is not a boolean");
	expect_error("user-lowercase 1\n" LISTEN, 1, "'1' is not a boolean");
	expect_error("user-strip-domain YES\n" LISTEN, 1,
	    "'YES' is not a boolean");
}

static void
test_simple_directive_errors(void **state)
{
	expect_error("workers\n" LISTEN, 1, "workers: missing argument");
	expect_error("workers -1\n" LISTEN, 1, "'-1' is not a number");
	expect_error("workers 4x\n" LISTEN, 1, "'4x' is not a number");
	expect_error("workers 257\n" LISTEN, 1,
	    "'257' is not a number from 0 to 256");
	expect_error("workers 99999999999999999999999\n" LISTEN, 1,
	    "is not a number from 0 to 256");
	expect_error("log file\n" LISTEN, 1, "unknown target 'file'");
	expect_error(LISTEN "user a b\n", 2, "unexpected 'b'");
	expect_error(LISTEN "user\n", 2, "user: missing argument");
	expect_error(LISTEN "user-add-domain @example.com\n", 2,
	    "'@example.com': give the domain without '@'");
	expect_error(LISTEN "default-backend\n", 2,
	    "default-backend: missing argument");
	expect_error(LISTEN "pidfile a b\n", 2, "unexpected 'b'");
}

/* ---- the signed directory ---------------------------------------- */

#define DIRECTORY "directory /var/lib/mm/dir\nsite fra\n" \
	"node-key /etc/mm/node.key\nroot-key /etc/mm/root.pub\n"

static void
test_directory_directives(void **state)
{
	struct mm_config *conf = parse_ok(DIRECTORY
	    "node-name node-1.a_b\n"
	    "control-socket /run/mm/ctl.sock\n"
	    "tombstone-ttl 7d\n"
	    "popmap-fallback yes\n"
	    LISTEN);

	assert_string_equal(conf->directory, "/var/lib/mm/dir");
	assert_string_equal(conf->site, "fra");
	assert_string_equal(conf->node_key, "/etc/mm/node.key");
	assert_string_equal(conf->root_key, "/etc/mm/root.pub");
	assert_string_equal(conf->node_name, "node-1.a_b");
	assert_string_equal(conf->control_socket, "/run/mm/ctl.sock");
	assert_int_equal(conf->tombstone_ttl_s, 7 * 86400);
	assert_true(conf->popmap_fallback);
	mm_config_free(conf);

	/* Defaults that only exist with a directory. */
	conf = parse_ok(DIRECTORY LISTEN);
	assert_non_null(conf->node_name);
	assert_true(strlen(conf->node_name) > 0);
	assert_null(strchr(conf->node_name, '.'));
	assert_string_equal(conf->control_socket,
	    "/run/mailmesh/control.sock");
	assert_int_equal(conf->tombstone_ttl_s, 30 * 86400);
	assert_false(conf->popmap_fallback);
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY "tombstone-ttl 36h\n" LISTEN);
	assert_int_equal(conf->tombstone_ttl_s, 36 * 3600);
	mm_config_free(conf);
	conf = parse_ok(DIRECTORY "tombstone-ttl 3650d\n" LISTEN);
	assert_int_equal(conf->tombstone_ttl_s, 3650ULL * 86400);
	mm_config_free(conf);
	conf = parse_ok(DIRECTORY "tombstone-ttl 3600\n" LISTEN);
	assert_int_equal(conf->tombstone_ttl_s, 3600);
	mm_config_free(conf);
}

static void
test_directory_errors(void **state)
{
	uint64_t s;

	expect_error(LISTEN "directory /d\nsite fra\nnode-key k\n", 2,
	    "directory: needs 'root-key'");
	expect_error(LISTEN "directory /d\nroot-key r\nnode-key k\n", 2,
	    "directory: needs 'site'");
	expect_error(LISTEN "directory /d\nroot-key r\nsite s\n", 2,
	    "directory: needs 'node-key'");
	expect_error(LISTEN "site fra\n", 2, "site: needs 'directory'");
	expect_error(LISTEN "popmap-fallback yes\n", 2,
	    "popmap-fallback: needs 'directory'");
	expect_error(LISTEN "node-key /k\n", 2, "node-key: needs 'directory'");
	expect_error(DIRECTORY "site ams\n" LISTEN, 5, "duplicate 'site'");
	expect_error("site FRA\n" LISTEN, 1, "site: bad name 'FRA'");
	expect_error("site fra_1\n" LISTEN, 1, "site: bad name");
	expect_error("site a23456789012345678901234567890123\n" LISTEN, 1,
	    "site: bad name");
	expect_error("node-name a/b\n" LISTEN, 1, "node-name: bad name");
	expect_error("tombstone-ttl 30x\n" LISTEN, 1,
	    "tombstone-ttl: bad value '30x'");
	expect_error("tombstone-ttl d\n" LISTEN, 1, "bad value 'd'");
	expect_error("tombstone-ttl 1500ms\n" LISTEN, 1, "bad value");
	expect_error("tombstone-ttl 59m\n" LISTEN, 1, "outside 1h..3650d");
	expect_error("tombstone-ttl 3651d\n" LISTEN, 1, "outside");
	expect_error("tombstone-ttl 99999999999999999999d\n" LISTEN, 1,
	    "bad value");
	expect_error("popmap-fallback maybe\n" LISTEN, 1, "not a boolean");

	assert_int_equal(mm_config_parse_duration_s("2d", &s), 0);
	assert_int_equal(s, 172800);
	assert_int_equal(mm_config_parse_duration_s("90", &s), 0);
	assert_int_equal(s, 90);
	assert_int_equal(mm_config_parse_duration_s("0d", &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(mm_config_parse_duration_s("-1d", &s), -1);
	assert_int_equal(mm_config_parse_duration_s("", &s), -1);
}

static void
test_admin_group(void **state)
{
	struct mm_config *conf;
	struct group *gr;
	char *text;

	/* A group that exists wherever the test runs: its own. */
	gr = getgrgid(getgid());
	assert_non_null(gr);
	text = xasprintf(DIRECTORY "control-socket /run/mm/ctl.sock\n"
	    "admin-group %s\n" LISTEN, gr->gr_name);
	conf = parse_ok(text);
	assert_string_equal(conf->admin_group, gr->gr_name);
	assert_int_equal(conf->admin_gid, getgid());
	mm_config_free(conf);
	free(text);

	/* Unset: writes from root only. */
	conf = parse_ok(DIRECTORY LISTEN);
	assert_null(conf->admin_group);
	mm_config_free(conf);

	expect_error(DIRECTORY "control-socket /run/mm/ctl.sock\n"
	    "admin-group mm-no-such-group-x\n" LISTEN, 6,
	    "admin-group: unknown group 'mm-no-such-group-x'");
	expect_error(LISTEN "admin-group mm-no-such-group-x\n", 2,
	    "admin-group: unknown group");
	expect_error(LISTEN "admin-group root\n", 2,
	    "admin-group: needs 'directory'");
	expect_error(DIRECTORY "admin-group root\nadmin-group root\n" LISTEN,
	    6, "duplicate 'admin-group'");
	expect_error(DIRECTORY "admin-group\n" LISTEN, 5,
	    "admin-group: missing argument");
}

static void
test_peer_directives(void **state)
{
	struct mm_config *conf = parse_ok(DIRECTORY
	    "peer-listen 127.0.0.2:7400\n"
	    "peer 127.0.0.3:7400\n"
	    "peer [::1]:07401\n"
	    LISTEN);

	assert_string_equal(conf->peer_listen_host, "127.0.0.2");
	assert_string_equal(conf->peer_listen_port, "7400");
	/* Defaults to the listener. */
	assert_string_equal(conf->peer_address, "127.0.0.2:7400");
	assert_int_equal(conf->n_peers, 2);
	assert_string_equal(conf->peers[0], "127.0.0.3:7400");
	assert_string_equal(conf->peers[1], "[::1]:7401");
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY "peer-listen *:7400\n"
	    "peer-address 192.0.2.1:7400\n" LISTEN);
	assert_string_equal(conf->peer_listen_host, "*");
	assert_string_equal(conf->peer_address, "192.0.2.1:7400");
	assert_int_equal(conf->n_peers, 0);
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY LISTEN);
	assert_null(conf->peer_listen_host);
	assert_null(conf->peer_address);
	mm_config_free(conf);
}

static void
test_peer_errors(void **state)
{
	expect_error(LISTEN "peer-listen 127.0.0.1:7400\n", 2,
	    "peer-listen: needs 'directory'");
	expect_error(DIRECTORY "peer 127.0.0.1:7400\n" LISTEN, 5,
	    "peer: needs 'peer-listen'");
	expect_error(DIRECTORY "peer-address 127.0.0.1:7400\n" LISTEN, 5,
	    "peer-address: needs 'peer-listen'");
	expect_error(DIRECTORY "peer-listen *:7400\n" LISTEN, 5,
	    "need 'peer-address'");
	expect_error(DIRECTORY "peer-listen 127.0.0.1\n" LISTEN, 5,
	    "peer-listen: '127.0.0.1' has no port");
	expect_error(DIRECTORY "peer-listen 127.0.0.1:7400\n"
	    "peer *:7400\n" LISTEN, 6, "peer: '*' is not a numeric IPv4");
	expect_error(DIRECTORY "peer-listen 127.0.0.1:7400\n"
	    "peer host.example:7400\n" LISTEN, 6, "not a numeric");
	expect_error(DIRECTORY "peer-listen 127.0.0.1:70000\n" LISTEN, 5,
	    "is not a port");
	expect_error(DIRECTORY "peer-listen 127.0.0.1:1\n"
	    "peer-listen 127.0.0.1:2\n" LISTEN, 6, "duplicate 'peer-listen'");
}

static void
test_xsite_directives(void **state)
{
	struct mm_config *conf;

	conf = parse_ok(DIRECTORY "transport-key /etc/mm/t.key\n"
	    "session-listen 127.0.0.2:7500\n"
	    "site-route ams 127.0.0.3:7500 [::1]:07501\n"
	    "site-route lon 127.0.0.4:7500\n" LISTEN);
	assert_string_equal(conf->transport_key, "/etc/mm/t.key");
	assert_non_null(conf->session_listen);
	assert_string_equal(conf->session_listen->host, "127.0.0.2");
	assert_string_equal(conf->session_listen->port, "7500");
	assert_int_equal(conf->n_site_routes, 2);
	assert_string_equal(conf->site_routes[0].site, "ams");
	assert_int_equal(conf->site_routes[0].n_addrs, 2);
	assert_string_equal(conf->site_routes[0].addrs[0], "127.0.0.3:7500");
	assert_string_equal(conf->site_routes[0].addrs[1], "[::1]:7501");
	assert_string_equal(conf->site_routes[1].addrs[0], "127.0.0.4:7500");
	/* What gossip announces defaults to the session listener. */
	assert_string_equal(conf->session_address, "127.0.0.2:7500");
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY "transport-key /etc/mm/t.key\n"
	    "session-listen *:7500\n"
	    "session-address 192.0.2.7:7500\n" LISTEN);
	assert_string_equal(conf->session_listen->host, "*");
	assert_string_equal(conf->session_address, "192.0.2.7:7500");
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY "transport-key /etc/mm/t.key\n"
	    "session-listen *:7500\n" LISTEN);
	assert_null(conf->session_address);	/* nothing to announce */
	mm_config_free(conf);

	conf = parse_ok(DIRECTORY LISTEN);
	assert_null(conf->session_address);
	assert_null(conf->transport_key);
	assert_null(conf->session_listen);
	assert_int_equal(conf->n_site_routes, 0);
	mm_config_free(conf);
}

static void
test_xsite_errors(void **state)
{
	expect_error(LISTEN "transport-key /k\n", 2,
	    "transport-key: needs 'directory'");
	expect_error(DIRECTORY "session-listen 127.0.0.1:7500\n" LISTEN, 5,
	    "session-listen: needs 'transport-key'");
	expect_error(DIRECTORY "site-route ams 127.0.0.1:7500\n" LISTEN, 5,
	    "site-route: needs 'transport-key'");
	expect_error(DIRECTORY "transport-key /k\n"
	    "site-route fra 127.0.0.1:7500\n" LISTEN, 6, "own site");
	expect_error(DIRECTORY "transport-key /k\n"
	    "site-route ams 127.0.0.1:7500\n"
	    "site-route ams 127.0.0.2:7500\n" LISTEN, 7,
	    "already routed on line 6");
	expect_error(DIRECTORY "transport-key /k\n"
	    "site-route AMS 127.0.0.1:7500\n" LISTEN, 6, "bad site name");
	expect_error(DIRECTORY "transport-key /k\n"
	    "site-route ams *:7500\n" LISTEN, 6, "not a numeric");
	expect_error(DIRECTORY "transport-key /k\n"
	    "site-route ams\n" LISTEN, 6, "site-route");
	expect_error(DIRECTORY "transport-key /k\n"
	    "session-listen 127.0.0.1\n" LISTEN, 6, "has no port");
	expect_error(DIRECTORY "transport-key /k\n"
	    "session-address 127.0.0.1:7500\n" LISTEN, 6,
	    "session-address: needs 'session-listen'");
	expect_error(DIRECTORY "transport-key /k\n"
	    "session-listen 127.0.0.1:7500\n"
	    "session-address 127.0.0.1\n" LISTEN, 7, "has no port");
}

/* ---- syntax ---------------------------------------------------------- */

static void
test_comments_and_blanks(void **state)
{
	static const char text[] =
	    "# a comment\n"
	    "\n"
	    "   \t  \n"
	    "\tuser   mail\t# trailing comment\n"
	    "#user other\n"
	    "listen imap *:143 # cert=x key=y\r\n"
	    "group g\r\n"
	    "workers 2";	/* no final newline */
	struct mm_config *conf = parse_ok(text);

	assert_string_equal(conf->user, "mail");
	assert_string_equal(conf->group, "g");
	assert_int_equal(conf->workers, 2);
	assert_int_equal(conf->n_listeners, 1);
	assert_null(conf->listeners[0].cert_file);
	assert_int_equal(conf->listeners[0].line, 6);
	mm_config_free(conf);
}

static void
test_syntax_errors(void **state)
{
	static const char nul[] = LISTEN "user a\0b\n";
	char *big;
	size_t i;

	expect_error(LISTEN "frobnicate 1\n", 2,
	    "unknown directive 'frobnicate'");
	expect_error(LISTEN "User mail\n", 2, "unknown directive 'User'");
	expect_error(LISTEN "user a\nuser b\n", 3,
	    "duplicate 'user' (first on line 2)");
	expect_error(LISTEN "log-debug yes\nlog-debug no\n", 3,
	    "duplicate 'log-debug'");
	expect_error_len(nul, sizeof(nul) - 1, 2, "NUL byte");
	expect_error(LISTEN "user a\x01" "b\n", 2, "control character 0x01");
	expect_error(LISTEN "user a\rb\n", 2, "control character 0x0d");
	expect_error(LISTEN "user a\x7f\n", 2, "control character 0x7f");

	/* 4096 bytes is the longest line; one more is refused. */
	big = xmalloc(8192);
	memcpy(big, "user ", 5);
	for (i = 5; i < 4096; i++)
		big[i] = 'a';
	memcpy(big + 4096, "\n" LISTEN, sizeof("\n" LISTEN));
	mm_config_free(parse_ok(big));
	memcpy(big + 4096, "a\n" LISTEN, sizeof("a\n" LISTEN));
	expect_error(big, 1, "line longer than 4096 bytes");
	/* A long comment counts too. */
	memset(big, '#', 5000);
	memcpy(big + 5000, "\n" LISTEN, sizeof("\n" LISTEN));
	expect_error(big, 1, "line longer than 4096 bytes");
	free(big);

	/* More words than the word array holds still name the extra one. */
	expect_error(LISTEN "user a b c d e f g h i j k l m n o p q r s t\n",
	    2, "unexpected 'b'");
	expect_error(LISTEN "backend b h imap=1 pop3=2 tls=none "
	    "client-addr=id x1 x2 x3 x4 x5 x6 x7 x8 x9 x10 x11\n", 2,
	    "unexpected 'x7'");
}

static void
test_whole_file_errors(void **state)
{
	char *big;

	expect_error("", 0, "no listen directive");
	expect_error("# only a comment\nuser a\n", 0, "no listen directive");

	big = xmalloc(1024 * 1024 + 1);
	memset(big, '\n', 1024 * 1024 + 1);
	expect_error_len(big, 1024 * 1024 + 1, 0, "larger than 1048576 bytes");
	free(big);
}

static void
test_errstr_optional(void **state)
{
	char *err = (char *)"untouched";
	struct mm_config *conf;

	assert_null(mm_config_parse("bad\n", 4, FNAME, NULL));
	conf = mm_config_parse(LISTEN, strlen(LISTEN), FNAME, &err);
	assert_non_null(conf);
	assert_null(err);	/* cleared on success */
	mm_config_free(conf);
	mm_config_free(NULL);
}

/* ---- listen ---------------------------------------------------------- */

static void
test_listen(void **state)
{
	struct mm_config *conf = parse_ok(
	    "listen imap *:143\n"
	    "# gap\n"
	    "listen imap 127.0.0.1:1143 " CERT "\n"
	    "listen imaps [::1]:993 " CERT "\n"
	    "listen pop3 0.0.0.0:110 " CERT " require-tls\n"
	    "listen pop3s [::]:0995 key=k.pem cert=c.pem\n"
	    "listen pop3 [2001:db8::1]:1110\n");
	const struct mm_listener_conf *l = conf->listeners;

	assert_int_equal(conf->n_listeners, 6);

	assert_int_equal(l[0].proto, MM_PROTO_IMAP);
	assert_int_equal(l[0].tls, MM_TLS_NONE);
	assert_string_equal(l[0].host, "*");
	assert_string_equal(l[0].port, "143");
	assert_null(l[0].cert_file);
	assert_null(l[0].key_file);
	assert_false(l[0].require_tls);
	assert_int_equal(l[0].line, 1);

	assert_int_equal(l[1].tls, MM_TLS_STARTTLS);
	assert_string_equal(l[1].host, "127.0.0.1");
	assert_string_equal(l[1].port, "1143");
	assert_string_equal(l[1].cert_file, "n.crt");
	assert_string_equal(l[1].key_file, "n.key");
	assert_int_equal(l[1].line, 3);

	assert_int_equal(l[2].proto, MM_PROTO_IMAP);
	assert_int_equal(l[2].tls, MM_TLS_IMPLICIT);
	assert_string_equal(l[2].host, "::1");
	assert_string_equal(l[2].port, "993");

	assert_int_equal(l[3].proto, MM_PROTO_POP3);
	assert_int_equal(l[3].tls, MM_TLS_STARTTLS);
	assert_true(l[3].require_tls);

	assert_int_equal(l[4].proto, MM_PROTO_POP3);
	assert_int_equal(l[4].tls, MM_TLS_IMPLICIT);
	assert_string_equal(l[4].host, "::");
	assert_string_equal(l[4].port, "995");	/* normalised */
	assert_string_equal(l[4].cert_file, "c.pem");
	assert_string_equal(l[4].key_file, "k.pem");

	assert_int_equal(l[5].tls, MM_TLS_NONE);
	assert_string_equal(l[5].host, "2001:db8::1");
	assert_int_equal(l[5].line, 7);
	mm_config_free(conf);

	/* Implicit TLS with require-tls is redundant, not wrong. */
	conf = parse_ok("listen imaps *:993 " CERT " require-tls\n");
	assert_true(conf->listeners[0].require_tls);
	mm_config_free(conf);
}

static void
test_listen_errors(void **state)
{
	expect_error("listen\n", 1, "listen: missing argument");
	expect_error("listen imap\n", 1, "listen: missing argument");
	expect_error("listen lmtp *:24\n", 1, "unknown protocol 'lmtp'");
	expect_error("listen socketmap 127.0.0.1:1 cert=c key=k\n", 1,
	    "'socketmap' takes no options");
	expect_error("listen auth-http 127.0.0.1:1 require-tls\n", 1,
	    "'auth-http' takes no options");
	expect_error("listen metrics 127.0.0.1:1 cert=c key=k\n", 1,
	    "'metrics' takes no options, so not 'cert=c' (it answers "
	    "scrapes directly");
	expect_error("listen smtps *:465\n", 1, "'smtps' needs cert=");
	expect_error("listen IMAP *:143\n", 1, "unknown protocol 'IMAP'");
	expect_error("listen imap *\n", 1, "'*' has no port");
	expect_error("listen imap 143\n", 1, "'143' has no port");
	expect_error("listen imap *:0\n", 1, "'0' is not a port");
	expect_error("listen imap *:65536\n", 1, "'65536' is not a port");
	expect_error("listen imap *:\n", 1, "'' is not a port");
	expect_error("listen imap *:imap\n", 1, "'imap' is not a port");
	expect_error("listen imap *:+143\n", 1, "'+143' is not a port");
	expect_error("listen imap :143\n", 1,
	    "'' is not a numeric IPv4 address");
	expect_error("listen imap localhost:143\n", 1,
	    "'localhost' is not a numeric IPv4 address");
	expect_error("listen imap 10.0.0.256:143\n", 1,
	    "'10.0.0.256' is not a numeric IPv4 address");
	expect_error("listen imap ::1:143\n", 1,
	    "an IPv6 address goes in brackets");
	expect_error("listen imap [::1]143\n", 1, "expected [IPv6]:PORT");
	expect_error("listen imap [::1\n", 1, "expected [IPv6]:PORT");
	expect_error("listen imap [1.2.3.4]:143\n", 1,
	    "'1.2.3.4' is not a numeric IPv6 address");
	expect_error("listen imap [*]:143\n", 1,
	    "'*' is not a numeric IPv6 address");

	expect_error("listen imaps *:993\n", 1, "'imaps' needs cert= and key=");
	expect_error("listen pop3s *:995\n", 1, "'pop3s' needs cert= and key=");
	expect_error("listen imap *:143 cert=c\n", 1, "'cert=c' without key=");
	expect_error("listen imap *:143 key=k\n", 1, "'key=k' without cert=");
	expect_error("listen imaps *:993 cert=c\n", 1,
	    "'cert=c' without key=");
	expect_error("listen imap *:143 require-tls\n", 1,
	    "'require-tls' needs cert= and key=");
	expect_error("listen imap *:143 tls=yes\n", 1,
	    "unknown option 'tls=yes'");
	expect_error("listen imap *:143 cert\n", 1, "unknown option 'cert'");
	expect_error("listen imap *:143 certificate=x\n", 1,
	    "unknown option 'certificate=x'");
	expect_error("listen imap *:143 cert= key=k\n", 1,
	    "empty value in 'cert='");
	expect_error("listen imap *:143 cert=a cert=b key=k\n", 1,
	    "duplicate option 'cert=b'");
	expect_error("listen imap *:143 require-tls require-tls\n", 1,
	    "duplicate 'require-tls'");
	expect_error("listen imap *:143 " CERT " require-tls "
	    "proxy-protocol=10.0.0.0/8 x\n", 1, "unexpected 'x'");

	expect_error("listen imap *:143\nlisten pop3 *:0143\n", 2,
	    "'*:0143' is already used on line 1");
	expect_error("listen imap [::1]:143\n\nlisten imap [::1]:143\n", 3,
	    "already used on line 1");
}

static void
test_listen_proxy_protocol(void **state)
{
	struct mm_config *conf = parse_ok(
	    "listen imap *:143\n"
	    "listen imap 192.0.2.10:1143 proxy-protocol=10.1.0.0/24\n"
	    "listen pop3 *:110 proxy-protocol=10.1.0.0/24,192.0.2.7,"
	    "2001:db8::/32,::1 " CERT "\n"
	    "listen imaps [::]:993 " CERT " proxy-protocol=0.0.0.0/0,::/0 "
	    "require-tls\n"
	    "listen smtp *:25 proxy-protocol=2001:db8:0:1::/64\n");
	const struct mm_listener_conf *l = conf->listeners;
	unsigned char a[16];

	assert_int_equal(conf->n_listeners, 5);

	/* Without the option no header is expected. */
	assert_null(l[0].pp_from);
	assert_int_equal(l[0].n_pp_from, 0);

	assert_int_equal(l[1].n_pp_from, 1);
	assert_non_null(l[1].pp_from);
	assert_int_equal(l[1].pp_from[0].family, AF_INET);
	assert_int_equal(l[1].pp_from[0].bits, 24);
	assert_int_equal(inet_pton(AF_INET, "10.1.0.0", a), 1);
	assert_memory_equal(l[1].pp_from[0].addr, a, 4);
	assert_string_equal(l[1].host, "192.0.2.10");
	assert_int_equal(l[1].tls, MM_TLS_NONE);

	/* In the order given, beside the other options. */
	assert_int_equal(l[2].n_pp_from, 4);
	assert_int_equal(l[2].pp_from[0].family, AF_INET);
	assert_int_equal(l[2].pp_from[0].bits, 24);
	assert_int_equal(l[2].pp_from[1].family, AF_INET);
	assert_int_equal(l[2].pp_from[1].bits, 32);
	assert_int_equal(inet_pton(AF_INET, "192.0.2.7", a), 1);
	assert_memory_equal(l[2].pp_from[1].addr, a, 4);
	assert_int_equal(l[2].pp_from[2].family, AF_INET6);
	assert_int_equal(l[2].pp_from[2].bits, 32);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::", a), 1);
	assert_memory_equal(l[2].pp_from[2].addr, a, 16);
	assert_int_equal(l[2].pp_from[3].family, AF_INET6);
	assert_int_equal(l[2].pp_from[3].bits, 128);
	assert_int_equal(inet_pton(AF_INET6, "::1", a), 1);
	assert_memory_equal(l[2].pp_from[3].addr, a, 16);
	assert_int_equal(l[2].tls, MM_TLS_STARTTLS);
	assert_string_equal(l[2].cert_file, "n.crt");

	assert_int_equal(l[3].n_pp_from, 2);
	assert_int_equal(l[3].pp_from[0].family, AF_INET);
	assert_int_equal(l[3].pp_from[0].bits, 0);
	assert_int_equal(l[3].pp_from[1].family, AF_INET6);
	assert_int_equal(l[3].pp_from[1].bits, 0);
	assert_int_equal(l[3].tls, MM_TLS_IMPLICIT);
	assert_true(l[3].require_tls);

	assert_int_equal(l[4].proto, MM_PROTO_SMTP);
	assert_int_equal(l[4].n_pp_from, 1);
	assert_int_equal(l[4].pp_from[0].family, AF_INET6);
	assert_int_equal(l[4].pp_from[0].bits, 64);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:0:1::", a), 1);
	assert_memory_equal(l[4].pp_from[0].addr, a, 16);
	mm_config_free(conf);

	/* Nothing else carries it. */
	conf = parse_ok(DIRECTORY "transport-key /k\n"
	    "session-listen 127.0.0.2:7500\n" LISTEN);
	assert_null(conf->session_listen->pp_from);
	assert_int_equal(conf->session_listen->n_pp_from, 0);
	mm_config_free(conf);
}

static void
test_listen_proxy_protocol_max(void **state)
{
	char word[64 + MM_PP_NETS_MAX * 16], *text;
	struct mm_config *conf;
	size_t off;
	int i;

	off = (size_t)sprintf(word, "proxy-protocol=");
	for (i = 0; i < MM_PP_NETS_MAX; i++)
		off += (size_t)sprintf(word + off, "%s10.%d.0.0/16",
		    i > 0 ? "," : "", i);
	text = xasprintf("# a\nlisten imap *:143 %s\n", word);
	conf = parse_ok(text);
	assert_int_equal(conf->listeners[0].n_pp_from, MM_PP_NETS_MAX);
	assert_int_equal(conf->listeners[0].pp_from[MM_PP_NETS_MAX - 1].addr[1],
	    MM_PP_NETS_MAX - 1);
	mm_config_free(conf);
	free(text);

	sprintf(word + off, ",192.0.2.0/24");
	text = xasprintf("# a\nlisten imap *:143 %s\n", word);
	expect_error(text, 2, "listen: proxy-protocol: more than 16 networks");
	free(text);
}

static void
test_listen_proxy_protocol_errors(void **state)
{
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=\n", 2,
	    "listen: empty value in 'proxy-protocol='");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol\n", 2,
	    "listen: unknown option 'proxy-protocol'");
	expect_error(LISTEN "listen imap *:1143 "
	    "proxy-protocol=10.0.0.0/8,,10.1.0.0/16\n", 2,
	    "listen: proxy-protocol: empty network in "
	    "'10.0.0.0/8,,10.1.0.0/16'");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/8,\n",
	    2, "listen: proxy-protocol: empty network in '10.0.0.0/8,'");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=,10.0.0.0/8\n",
	    2, "listen: proxy-protocol: empty network in ',10.0.0.0/8'");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=,\n", 2,
	    "listen: proxy-protocol: empty network in ','");

	expect_error(LISTEN "\nlisten imap *:1143 proxy-protocol=10.0.0.1/8\n",
	    3, "listen: proxy-protocol: '10.0.0.1/8' is not a network "
	    "(ADDR or ADDR/BITS, host bits zero)");
	expect_error(LISTEN "listen imap *:1143 "
	    "proxy-protocol=10.0.0.0/8,192.0.2.0/33\n", 2,
	    "listen: proxy-protocol: '192.0.2.0/33' is not a network");
	expect_error(LISTEN "listen imap *:1143 "
	    "proxy-protocol=2001:db8::/129\n", 2,
	    "'2001:db8::/129' is not a network");
	expect_error(LISTEN "listen imap *:1143 "
	    "proxy-protocol=2001:db8::1/32\n", 2,
	    "'2001:db8::1/32' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=lb.local\n",
	    2, "'lb.local' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=*\n", 2,
	    "'*' is not a network");
	expect_error(LISTEN "listen imap *:1143 "
	    "proxy-protocol=[2001:db8::]/32\n", 2,
	    "'[2001:db8::]/32' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/+8\n",
	    2, "'10.0.0.0/+8' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/-1\n",
	    2, "'10.0.0.0/-1' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/\n",
	    2, "'10.0.0.0/' is not a network");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/8x\n",
	    2, "'10.0.0.0/8x' is not a network");

	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/8 "
	    "proxy-protocol=10.1.0.0/16\n", 2,
	    "listen: duplicate option 'proxy-protocol=10.1.0.0/16'");
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/8 "
	    CERT " proxy-protocol=10.0.0.0/8\n", 2,
	    "listen: duplicate option 'proxy-protocol=10.0.0.0/8'");

	/* The lookup listeners are asked directly by Postfix and nginx. */
	expect_error(LISTEN "listen socketmap 127.0.0.1:7025 "
	    "proxy-protocol=10.0.0.0/8\n", 2,
	    "listen: 'socketmap' takes no options, so not "
	    "'proxy-protocol=10.0.0.0/8'");
	expect_error(LISTEN "listen auth-http 127.0.0.1:7080 "
	    "proxy-protocol=10.0.0.0/8\n", 2,
	    "listen: 'auth-http' takes no options, so not "
	    "'proxy-protocol=10.0.0.0/8'");
	/* Refused for the listener's kind before the value is looked at. */
	expect_error(LISTEN "listen socketmap 127.0.0.1:7025 "
	    "proxy-protocol=bad\n", 2, "'socketmap' takes no options");

	/* Other options' rules still hold beside it. */
	expect_error(LISTEN "listen imap *:1143 proxy-protocol=10.0.0.0/8 "
	    "cert=c\n", 2, "'cert=c' without key=");
	expect_error(LISTEN "listen imap *:143 proxy-protocol=10.0.0.0/8\n",
	    2, "'*:143' is already used on line 1");
}

static void
test_listen_max(void **state)
{
	char *text = xmalloc(64 * 32 + 64);
	size_t off = 0;
	int i;

	for (i = 0; i < 64; i++)
		off += (size_t)sprintf(text + off, "listen imap *:%d\n",
		    1000 + i);
	mm_config_free(parse_ok(text));
	sprintf(text + off, "listen imap *:%d\n", 2000);
	expect_error(text, 65, "more than 64 listeners");
	free(text);
}

/* ---- backend --------------------------------------------------------- */

static void
test_backend(void **state)
{
	struct mm_config *conf = parse_ok(LISTEN
	    "backend plain 10.0.0.1\n"
	    "backend imaponly mail.example.com imap=1143\n"
	    "backend poponly ms_3.internal pop3=1110 client-addr=proxy\n"
	    "backend st 2001:db8::5 tls=starttls\n"
	    "backend imp host-1 tls=implicit ca=ca.pem tls-name=mail.x\n"
	    "backend imp2 h tls=implicit imap=9993\n"
	    "backend A.b_c-9 h tls=none client-addr=none\n"
	    "backend full h client-addr=id tls-name=n ca=c pop3=2 "
	    "tls=starttls imap=1\n");
	const struct mm_backend_conf *b;

	assert_int_equal(conf->n_backends, 8);

	b = mm_config_backend(conf, "plain");
	assert_ptr_equal(b, &conf->backends[0]);
	assert_string_equal(b->name, "plain");
	assert_string_equal(b->host, "10.0.0.1");
	assert_int_equal(b->port[MM_PROTO_IMAP], 143);
	assert_int_equal(b->port[MM_PROTO_POP3], 110);
	assert_int_equal(b->tls, MM_TLS_NONE);
	assert_null(b->ca_file);
	assert_string_equal(b->tls_name, "10.0.0.1");	/* defaults to host */
	assert_int_equal(b->client_addr, MM_CADDR_NONE);
	assert_int_equal(b->line, 2);

	b = mm_config_backend(conf, "imaponly");
	assert_int_equal(b->port[MM_PROTO_IMAP], 1143);
	assert_int_equal(b->port[MM_PROTO_POP3], 0);

	b = mm_config_backend(conf, "poponly");
	assert_string_equal(b->host, "ms_3.internal");
	assert_int_equal(b->port[MM_PROTO_IMAP], 0);
	assert_int_equal(b->port[MM_PROTO_POP3], 1110);
	assert_int_equal(b->client_addr, MM_CADDR_PROXY2);

	b = mm_config_backend(conf, "st");
	assert_string_equal(b->host, "2001:db8::5");
	assert_int_equal(b->tls, MM_TLS_STARTTLS);
	assert_int_equal(b->port[MM_PROTO_IMAP], 143);
	assert_int_equal(b->port[MM_PROTO_POP3], 110);

	b = mm_config_backend(conf, "imp");
	assert_int_equal(b->tls, MM_TLS_IMPLICIT);
	assert_int_equal(b->port[MM_PROTO_IMAP], 993);
	assert_int_equal(b->port[MM_PROTO_POP3], 995);
	assert_string_equal(b->ca_file, "ca.pem");
	assert_string_equal(b->tls_name, "mail.x");

	b = mm_config_backend(conf, "imp2");
	assert_int_equal(b->port[MM_PROTO_IMAP], 9993);
	assert_int_equal(b->port[MM_PROTO_POP3], 0);

	b = mm_config_backend(conf, "A.b_c-9");
	assert_non_null(b);
	assert_int_equal(b->tls, MM_TLS_NONE);

	b = mm_config_backend(conf, "full");
	assert_int_equal(b->port[MM_PROTO_IMAP], 1);
	assert_int_equal(b->port[MM_PROTO_POP3], 2);
	assert_int_equal(b->tls, MM_TLS_STARTTLS);
	assert_string_equal(b->ca_file, "c");
	assert_string_equal(b->tls_name, "n");
	assert_int_equal(b->client_addr, MM_CADDR_ID);
	assert_int_equal(b->line, 9);

	assert_null(mm_config_backend(conf, "PLAIN"));
	assert_null(mm_config_backend(conf, "nope"));
	mm_config_free(conf);
}

/* Mail delivery ports, the SMTP listeners, the lookup listeners and what
 * their answers send to this node. */
static void
test_smtp_directives(void **state)
{
	struct mm_config *conf = parse_ok(
	    "listen imap 10.1.1.1:143\n"
	    "listen smtps *:465 cert=c key=k\n"
	    "listen smtp *:25 cert=c key=k require-tls\n"
	    "listen socketmap 127.0.0.1:7025\n"
	    "listen auth-http 127.0.0.1:7080\n"
	    "listen metrics 127.0.0.1:9100\n"
	    "lookup-relay pop3 [2001:db8::1]:110\n"
	    "hostname mx1.example.net\n"
	    "backend mailonly h lmtp=24\n"
	    "backend both h imap=143 smtp=2525 client-addr=proxy\n"
	    "limit recipients 500\n"
	    "limit message-size 20M\n"
	    "timeout smtp-idle 2m\n"
	    "timeout smtp-data 90s\n"
	    "timeout smtp-commands 3m\n"
	    "limit smtp-data-rate 2k\n"
	    "limit smtp-errors 7\n"
	    "timeout before-login 45s\n");
	const struct mm_backend_conf *b;

	assert_int_equal(conf->n_listeners, 6);
	assert_int_equal(conf->listeners[5].kind, MM_LISTEN_METRICS);
	assert_int_equal(conf->listeners[0].kind, MM_LISTEN_MAIL);
	assert_int_equal(conf->listeners[1].proto, MM_PROTO_SMTP);
	assert_int_equal(conf->listeners[1].tls, MM_TLS_IMPLICIT);
	assert_int_equal(conf->listeners[2].tls, MM_TLS_STARTTLS);
	assert_true(conf->listeners[2].require_tls);
	assert_int_equal(conf->listeners[3].kind, MM_LISTEN_SOCKETMAP);
	assert_int_equal(conf->listeners[4].kind, MM_LISTEN_AUTH_HTTP);
	/* The first plaintext listener of each protocol, "*" as loopback. */
	assert_string_equal(conf->lookup_relay[MM_PROTO_IMAP],
	    "10.1.1.1:143");
	assert_string_equal(conf->lookup_relay[MM_PROTO_SMTP],
	    "127.0.0.1:25");
	assert_string_equal(conf->lookup_relay[MM_PROTO_POP3],
	    "[2001:db8::1]:110");
	assert_string_equal(conf->hostname, "mx1.example.net");
	b = mm_config_backend(conf, "mailonly");
	assert_int_equal(b->port[MM_PROTO_SMTP], 24);
	assert_true(b->lmtp);
	assert_int_equal(b->port[MM_PROTO_IMAP], 0);
	assert_int_equal(b->port[MM_PROTO_POP3], 0);
	b = mm_config_backend(conf, "both");
	assert_int_equal(b->port[MM_PROTO_SMTP], 2525);
	assert_false(b->lmtp);
	assert_int_equal(b->port[MM_PROTO_IMAP], 143);
	assert_int_equal(conf->limits.rcpt_max, 500);
	assert_int_equal(conf->limits.message_max, 20 * 1024 * 1024);
	assert_int_equal(conf->limits.smtp_idle_ms, 120000);
	assert_int_equal(conf->limits.smtp_data_ms, 90000);
	assert_int_equal(conf->limits.smtp_commands_ms, 180000);
	assert_int_equal(conf->limits.smtp_data_rate, 2048);
	assert_int_equal(conf->limits.smtp_error_max, 7);
	assert_int_equal(conf->limits.login_ms, 45000);
	mm_config_free(conf);

	/* Defaults: RFC 5321's minimums; a plain back end takes no mail. */
	conf = parse_ok("listen smtp *:25\nbackend b h\n");
	assert_int_equal(conf->limits.rcpt_max, 100);
	assert_int_equal(conf->limits.message_max, 50 * 1024 * 1024);
	assert_int_equal(conf->limits.smtp_idle_ms, 300000);
	assert_int_equal(conf->limits.smtp_data_ms, 600000);
	assert_int_equal(conf->backends[0].port[MM_PROTO_SMTP], 0);
	assert_null(conf->lookup_relay[MM_PROTO_SMTP]);	/* no lookups */
	assert_null(conf->hostname);
	mm_config_free(conf);

	expect_error(LISTEN "lookup-relay lmtp 1.2.3.4:24\n", 2,
	    "unknown protocol 'lmtp'");
	expect_error(LISTEN "lookup-relay smtp 1.2.3.4:25\n"
	    "lookup-relay smtp 1.2.3.4:26\n", 3, "'smtp' given twice");
	expect_error(LISTEN "lookup-relay smtp 1.2.3.4\n", 2, "port");
	expect_error(LISTEN "hostname 10.0.0.1\n", 2, "not a DNS name");
	expect_error(LISTEN "hostname bad/name\n", 2, "not a DNS name");
	expect_error(LISTEN "limit recipients 0\n", 2, "recipients");
	expect_error(LISTEN "limit message-size 1k\n", 2, "message-size");
}

static void
test_backend_errors(void **state)
{
	char name[80];

	expect_error(LISTEN "backend ms1\n", 2, "backend: missing argument");
	expect_error(LISTEN "backend b h lmtp=24 smtp=25\n", 2,
	    "give lmtp= or smtp=, not both");
	expect_error(LISTEN "backend b h lmtp=0\n", 2, "'lmtp=0': not a port");
	expect_error(LISTEN "backend b h smtp=x\n", 2, "'smtp=x': not a port");
	expect_error(LISTEN "backend ms/1 h\n", 2, "bad name 'ms/1'");
	expect_error(LISTEN "backend ms:1 h\n", 2, "bad name 'ms:1'");
	memset(name, 'n', 65);
	name[65] = '\0';
	{
		char text[200];

		snprintf(text, sizeof(text), LISTEN "backend %s h\n", name);
		expect_error(text, 2, "bad name 'nnnn");
		name[64] = '\0';	/* 64 is the longest */
		snprintf(text, sizeof(text), LISTEN "backend %s h\n", name);
		mm_config_free(parse_ok(text));
	}
	expect_error(LISTEN "backend ms1 a\n\nbackend ms1 b\n", 4,
	    "'ms1' is already defined on line 2");

	expect_error(LISTEN "backend b 10.0.0.1:143\n", 2,
	    "bad host '10.0.0.1:143': a port goes in imap=, pop3=, lmtp= or smtp=");
	expect_error(LISTEN "backend b [::1]\n", 2,
	    "bad host '[::1]': give an IPv6 address without brackets");
	expect_error(LISTEN "backend b ::g\n", 2,
	    "bad host '::g': not a numeric IPv6 address");
	expect_error(LISTEN "backend b 10.0.0.300\n", 2,
	    "bad host '10.0.0.300': not a numeric IPv4 address");
	expect_error(LISTEN "backend b 10..1\n", 2, "not a numeric IPv4");
	expect_error(LISTEN "backend b a..b\n", 2, "empty label");
	expect_error(LISTEN "backend b .a\n", 2, "empty label");
	expect_error(LISTEN "backend b a.\n", 2, "empty label");
	expect_error(LISTEN "backend b -a.b\n", 2, "starts with '-'");
	expect_error(LISTEN "backend b a/b\n", 2, "invalid character");
	expect_error(LISTEN "backend b a" "\xc3\xa9" "\n", 2,
	    "invalid character");
	expect_error(LISTEN "backend b "
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    ".com\n", 2, "label longer than 63");

	expect_error(LISTEN "backend b h imap=0\n", 2,
	    "'imap=0': not a port");
	expect_error(LISTEN "backend b h pop3=70000\n", 2,
	    "'pop3=70000': not a port");
	expect_error(LISTEN "backend b h imap=\n", 2, "empty value in 'imap='");
	expect_error(LISTEN "backend b h imap=1 imap=2\n", 2,
	    "duplicate option 'imap=2'");
	expect_error(LISTEN "backend b h tls=ssl\n", 2,
	    "'tls=ssl': tls is none, starttls or implicit");
	expect_error(LISTEN "backend b h client-addr=xclient\n", 2,
	    "'client-addr=xclient': client-addr is none, id or proxy");
	expect_error(LISTEN "backend b h weight=2\n", 2,
	    "unknown option 'weight=2'");
	expect_error(LISTEN "backend b h imap\n", 2, "unknown option 'imap'");
	expect_error(LISTEN "backend b h ca=x\n", 2,
	    "'ca=' needs tls=starttls or tls=implicit");
	expect_error(LISTEN "backend b h tls=none tls-name=x\n", 2,
	    "'tls-name=' needs tls=starttls");
	expect_error(LISTEN "backend b h tls=implicit tls-name=a:b\n", 2,
	    "bad 'tls-name=a:b'");
}

/* Moves: the doveadm server, its secret and the engine go together; the
 * secret file must be the owner's alone. */
static void
test_backend_doveadm(void **state)
{
	char path[] = "/tmp/mmcfgXXXXXX", text[512];
	struct mm_config *conf;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "s3cret pass\nignored\n", 20), 20);
	close(fd);
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(text, sizeof(text), LISTEN "backend b h doveadm=2425 "
	    "doveadm-secret=%s move=dsync\n", path);
	conf = parse_ok(text);
	assert_int_equal(conf->backends[0].doveadm_port, 2425);
	assert_string_equal(conf->backends[0].doveadm_password, "s3cret pass");
	assert_string_equal(conf->backends[0].move_engine, "dsync");
	assert_int_equal(conf->limits.move_passes, 5);
	assert_int_equal(conf->limits.move_freeze_ms, 10000);
	mm_config_free(conf);

	snprintf(text, sizeof(text), LISTEN "backend b h doveadm=2425\n");
	expect_error(text, 2, "doveadm= and doveadm-secret= go together");
	snprintf(text, sizeof(text), LISTEN "backend b h move=dsync\n");
	expect_error(text, 2, "move=dsync needs doveadm=");
	snprintf(text, sizeof(text), LISTEN "backend b h doveadm=1 "
	    "doveadm-secret=%s move=imap\n", path);
	expect_error(text, 2, "the move engine is dsync");
	snprintf(text, sizeof(text), LISTEN "backend b h doveadm=1 "
	    "doveadm-secret=%s.none\n", path);
	expect_error(text, 2, "No such file");
	assert_int_equal(chmod(path, 0640), 0);
	snprintf(text, sizeof(text), LISTEN "backend b h doveadm=1 "
	    "doveadm-secret=%s\n", path);
	expect_error(text, 2, "readable by others (chmod 600 it)");
	unlink(path);
	expect_error(LISTEN "dsync-listen *:7600\n", 2, "dsync-listen");
}

static void
test_backend_max(void **state)
{
	char *text = xmalloc(4097 * 32 + 64);
	char label[64];
	size_t off = 0;
	int i;

	off += (size_t)sprintf(text, LISTEN);
	for (i = 0; i < 4096; i++)
		off += (size_t)sprintf(text + off, "backend b%d h\n", i);
	mm_config_free(parse_ok(text));
	sprintf(text + off, "backend last h\n");
	expect_error(text, 4098, "more than 4096 back ends");

	/* Four 63-byte labels make 255 bytes: over the 253 of DNS. */
	memset(label, 'a', 63);
	label[63] = '\0';
	sprintf(text, LISTEN "backend b %s.%s.%s.%s\n", label, label, label,
	    label);
	expect_error(text, 2, "host name too long");
	free(text);
}

/* ---- limits and timeouts ---------------------------------------------- */

static void
test_limits(void **state)
{
	struct mm_config *conf = parse_ok(LISTEN
	    "limit line-length 512\n"
	    "limit literal-size 1M\n"
	    "limit commands-before-login 100\n"
	    "limit auth-failures 1\n"
	    "limit auth-failures-per-ip 1000000\n"
	    "limit auth-failure-window 1h\n"
	    "limit auth-failure-delay 0\n"
	    "limit auth-failure-delay-max 500ms\n"
	    "limit connections 7\n"
	    "limit connections-per-ip 3\n"
	    "limit relay-buffer 64M\n"
	    "timeout idle-before-login 10\n"
	    "timeout idle 29m\n"
	    "timeout backend 100ms\n"
	    "timeout drain 0\n");
	const struct mm_limits *l = &conf->limits;

	assert_int_equal(l->line_max, 512);
	assert_int_equal(l->literal_max, 1024 * 1024);
	assert_int_equal(l->commands_prelogin_max, 100);
	assert_int_equal(l->auth_fail_max, 1);
	assert_int_equal(l->auth_fail_per_ip_max, 1000000);
	assert_int_equal(l->auth_fail_window_ms, 3600 * 1000);
	assert_int_equal(l->auth_fail_delay_ms, 0);
	assert_int_equal(l->auth_fail_delay_max_ms, 500);
	assert_int_equal(l->conn_max, 7);
	assert_int_equal(l->conn_per_ip_max, 3);
	assert_int_equal(l->relay_buffer, 64 * 1024 * 1024);
	assert_int_equal(l->idle_prelogin_ms, 10 * 1000);
	assert_int_equal(l->idle_ms, 29 * 60 * 1000);
	assert_int_equal(l->backend_connect_ms, 100);
	assert_int_equal(l->drain_ms, 0);
	mm_config_free(conf);

	/* The upper bounds themselves are allowed. */
	conf = parse_ok(LISTEN
	    "limit line-length 1M\n"
	    "limit commands-before-login 10000\n"
	    "limit auth-failures 1000\n"
	    "limit auth-failure-window 24h\n"
	    "limit auth-failure-delay 60s\n"
	    "limit auth-failure-delay-max 10m\n"
	    "limit connections 1000000\n"
	    "limit relay-buffer 16k\n"
	    "timeout idle-before-login 1h\n"
	    "timeout idle 24h\n"
	    "timeout backend 10m\n"
	    "timeout drain 1h\n");
	assert_int_equal(conf->limits.line_max, 1024 * 1024);
	assert_int_equal(conf->limits.relay_buffer, 16 * 1024);
	assert_int_equal(conf->limits.drain_ms, 3600 * 1000);
	mm_config_free(conf);
}

static void
test_limit_errors(void **state)
{
	expect_error(LISTEN "limit\n", 2, "limit: missing argument");
	expect_error(LISTEN "limit line-length\n", 2,
	    "limit: missing argument");
	expect_error(LISTEN "limit line-length 1k 2k\n", 2, "unexpected '2k'");
	expect_error(LISTEN "limit lines 10\n", 2, "unknown limit 'lines'");
	expect_error(LISTEN "limit idle 10s\n", 2, "unknown limit 'idle'");
	expect_error(LISTEN "timeout line-length 10\n", 2,
	    "unknown timeout 'line-length'");
	expect_error(LISTEN "limit line-length 8k\nlimit line-length 9k\n", 3,
	    "duplicate limit 'line-length' (first on line 2)");
	expect_error(LISTEN "timeout idle 1m\ntimeout idle 2m\n", 3,
	    "duplicate timeout 'idle'");

	expect_error(LISTEN "limit line-length 0\n", 2,
	    "'0' is below the minimum 512: ordinary IMAP and POP3 commands");
	expect_error(LISTEN "limit line-length 511\n", 2, "below the minimum");
	expect_error(LISTEN "limit line-length 2M\n", 2,
	    "'2M' is above the maximum 1M");
	expect_error(LISTEN "limit line-length 8kb\n", 2,
	    "bad value '8kb' (a size");
	expect_error(LISTEN "limit literal-size 100\n", 2,
	    "below the minimum 512");
	expect_error(LISTEN "limit commands-before-login 0\n", 2,
	    "below the minimum 8");
	expect_error(LISTEN "limit commands-before-login 10001\n", 2,
	    "above the maximum 10000");
	expect_error(LISTEN "limit auth-failures 0\n", 2,
	    "no login could ever succeed");
	expect_error(LISTEN "limit auth-failures 5k\n", 2,
	    "bad value '5k' (a number)");
	expect_error(LISTEN "limit auth-failures-per-ip 0\n", 2,
	    "below the minimum 1");
	expect_error(LISTEN "limit auth-failure-window 0\n", 2,
	    "below the minimum 1s");
	expect_error(LISTEN "limit auth-failure-window 25h\n", 2,
	    "above the maximum 24h");
	expect_error(LISTEN "limit auth-failure-delay 2m\n", 2,
	    "above the maximum 1m");
	expect_error(LISTEN "limit auth-failure-delay 1d\n", 2,
	    "bad value '1d' (a duration");
	expect_error(LISTEN "limit auth-failure-delay-max 11m\n", 2,
	    "above the maximum 10m");
	expect_error(LISTEN "limit connections 0\n", 2,
	    "no client could connect");
	expect_error(LISTEN "limit connections -5\n", 2, "bad value '-5'");
	expect_error(LISTEN "limit connections-per-ip 0\n", 2,
	    "below the minimum 1");
	expect_error(LISTEN "limit relay-buffer 8k\n", 2,
	    "below the minimum 16k: a TLS record");
	expect_error(LISTEN "limit relay-buffer 65M\n", 2,
	    "above the maximum 64M");
	expect_error(LISTEN "limit relay-buffer 99999999999999999999\n", 2,
	    "bad value");
	expect_error(LISTEN "timeout idle-before-login 0\n", 2,
	    "below the minimum 1s");
	expect_error(LISTEN "timeout idle-before-login 2h\n", 2,
	    "above the maximum 1h");
	expect_error(LISTEN "timeout idle 999ms\n", 2, "below the minimum 1s");
	expect_error(LISTEN "timeout idle 1x\n", 2, "bad value '1x'");
	expect_error(LISTEN "timeout backend 99ms\n", 2,
	    "below the minimum 100ms");
	expect_error(LISTEN "timeout drain 61m\n", 2, "above the maximum 1h");

	/* The delay doubles up to the maximum: a maximum below the first
	 * delay is a contradiction, reported on the later line. */
	expect_error(LISTEN "limit auth-failure-delay 10s\n", 2,
	    "auth-failure-delay-max is below auth-failure-delay");
	expect_error(LISTEN "limit auth-failure-delay-max 2s\n"
	    "limit auth-failure-delay 3s\n", 3,
	    "auth-failure-delay-max is below");
	expect_error(LISTEN "limit auth-failure-delay 3s\n"
	    "limit auth-failure-delay-max 2s\n#\n", 3,
	    "auth-failure-delay-max is below");
}

/* ---- loading from a file --------------------------------------------- */

/* Writes len bytes to a new file in the working directory. */
static char *
write_temp(const char *data, size_t len)
{
	char *path = xstrdup("test_config.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd != -1);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void
test_load(void **state)
{
	static const char text[] = LISTEN "user mail\n";
	struct mm_config *conf;
	char *path, *err = NULL, *want, *big;

	path = write_temp(text, sizeof(text) - 1);
	conf = mm_config_load(path, &err);
	assert_non_null(conf);
	assert_null(err);
	assert_string_equal(conf->path, path);
	assert_string_equal(conf->user, "mail");
	mm_config_free(conf);
	unlink(path);
	free(path);

	/* Messages name the path given. */
	path = write_temp("listen imap *:143\nbogus\n", 24);
	assert_null(mm_config_load(path, &err));
	want = xasprintf("%s:2: unknown directive 'bogus'", path);
	assert_string_equal(err, want);
	free(want);
	free(err);
	unlink(path);
	free(path);

	big = xmalloc(1024 * 1024 + 10);
	memset(big, '\n', 1024 * 1024 + 10);
	memcpy(big, LISTEN, strlen(LISTEN));
	path = write_temp(big, 1024 * 1024);
	conf = mm_config_load(path, &err);
	assert_non_null(conf);	/* exactly the maximum */
	mm_config_free(conf);
	unlink(path);
	free(path);
	path = write_temp(big, 1024 * 1024 + 1);
	assert_null(mm_config_load(path, &err));
	want = xasprintf("%s: larger than 1048576 bytes", path);
	assert_string_equal(err, want);
	free(want);
	free(err);
	unlink(path);
	free(path);
	free(big);

	assert_null(mm_config_load("no-such-dir/mmnode.conf", &err));
	assert_string_equal(err,
	    "no-such-dir/mmnode.conf: No such file or directory");
	free(err);

	assert_null(mm_config_load(".", &err));
	assert_string_equal(err, ".: Is a directory");
	free(err);

	assert_null(mm_config_load(".", NULL));
}

/* ---- helpers ---------------------------------------------------------- */

static void
test_proto_helpers(void **state)
{
	assert_int_equal(mm_proto_default_port(MM_PROTO_IMAP, MM_TLS_NONE),
	    143);
	assert_int_equal(mm_proto_default_port(MM_PROTO_IMAP,
	    MM_TLS_STARTTLS), 143);
	assert_int_equal(mm_proto_default_port(MM_PROTO_IMAP,
	    MM_TLS_IMPLICIT), 993);
	assert_int_equal(mm_proto_default_port(MM_PROTO_POP3, MM_TLS_NONE),
	    110);
	assert_int_equal(mm_proto_default_port(MM_PROTO_POP3,
	    MM_TLS_STARTTLS), 110);
	assert_int_equal(mm_proto_default_port(MM_PROTO_POP3,
	    MM_TLS_IMPLICIT), 995);
	assert_int_equal(mm_proto_default_port(MM_PROTO_COUNT, MM_TLS_NONE),
	    0);
	assert_string_equal(mm_proto_name(MM_PROTO_IMAP), "imap");
	assert_string_equal(mm_proto_name(MM_PROTO_POP3), "pop3");
	assert_string_equal(mm_proto_name(MM_PROTO_COUNT), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_example_parses),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_process_directives),
		cmocka_unit_test(test_routing_directives),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_directory_directives),
		cmocka_unit_test(test_directory_errors),
		cmocka_unit_test(test_admin_group),
		cmocka_unit_test(test_simple_directive_errors),
		cmocka_unit_test(test_comments_and_blanks),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_whole_file_errors),
		cmocka_unit_test(test_errstr_optional),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_listen_errors),
		cmocka_unit_test(test_listen_proxy_protocol),
		cmocka_unit_test(test_listen_proxy_protocol_max),
		cmocka_unit_test(test_listen_proxy_protocol_errors),
		cmocka_unit_test(test_listen_max),
		cmocka_unit_test(test_backend),
		cmocka_unit_test(test_smtp_directives),
		cmocka_unit_test(test_backend_errors),
		cmocka_unit_test(test_backend_max),
		cmocka_unit_test(test_backend_doveadm),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_limit_errors),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_proto_helpers),
		cmocka_unit_test(test_peer_directives),
		cmocka_unit_test(test_peer_errors),
		cmocka_unit_test(test_xsite_directives),
		cmocka_unit_test(test_xsite_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
