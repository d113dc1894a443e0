/* Unit tests for dir: name normalisation, lookups, routes, reload. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dir.h"

struct fixture {
	struct mm_config *conf;
	char path[32];
};

static const char map_text[] =
    "alice@example.com: ms1\n"
    "bob@example.com: ms2\n"
    "carol@example.com: 10.0.0.5\n"
    "dave@example.com: 10.0.0.6:2110\n"
    "erin@example.com: [2001:db8::5]\n"
    "frank@example.com: [2001:db8::6]:1995\n"
    "gina@example.com: 2001:db8::7\n"
    "hal@example.com: mail-1.example_net\n"
    "bad1@example.com: 10.0.0.5:0\n"
    "bad2@example.com: 10.0.0.5:70000\n"
    "bad3@example.com: 10.0.0.5:\n"
    "bad4@example.com: [2001:db8::5\n"
    "bad5@example.com: [nothex]:110\n"
    "bad6@example.com: [2001:db8::5]x\n"
    "bad7@example.com: host$x\n"
    "bad8@example.com: :110\n"
    "bad9@example.com: 10.0.0.5:11a\n"
    "bad10@example.com: []:110\n"
    "bad11@example.com: 1::2::3\n"
    "ms1: 10.9.9.9\n"
    "^(.*)@example\\.org$: $1.hosts.example.org\n"
    "^(.*)@long\\.org$: $1$1$1\n";

static void
write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct mm_config *c = calloc(1, sizeof(*c));
	struct mm_backend_conf *b = calloc(2, sizeof(*b));
	int fd;

	b[0].name = strdup("ms1");
	b[0].host = strdup("10.1.0.1");
	b[0].port[MM_PROTO_IMAP] = 1143;
	b[0].port[MM_PROTO_POP3] = 1110;
	b[0].tls = MM_TLS_STARTTLS;
	b[0].client_addr = MM_CADDR_ID;
	b[1].name = strdup("ms2");
	b[1].host = strdup("ms2.internal");
	b[1].port[MM_PROTO_IMAP] = 143;	/* no POP3 */
	c->backends = b;
	c->n_backends = 2;

	strcpy(f->path, "dir-test-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	write_file(f->path, map_text);
	c->popmap_file = strdup(f->path);
	f->conf = c;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	struct mm_config *c = f->conf;
	size_t i;

	unlink(f->path);
	for (i = 0; i < c->n_backends; i++) {
		free(c->backends[i].name);
		free(c->backends[i].host);
	}
	free(c->backends);
	free(c->popmap_file);
	free(c->user_add_domain);
	free(c->default_backend);
	free(c);
	free(f);
	return 0;
}

static struct dir *
open_dir(const struct mm_config *conf)
{
	char *err = NULL;
	struct dir *dir = dir_open(conf, &err);

	if (dir == NULL)
		fail_msg("dir_open: %s", err);
	return dir;
}

static void
normalise_is(const struct mm_config *conf, const char *user, const char *want)
{
	char out[DIR_USER_MAX + 1];
	int r = dir_normalise_user(conf, user, out, sizeof(out));

	if (want == NULL) {
		assert_int_equal(r, -1);
		assert_string_equal(out, "");
		return;
	}
	assert_int_equal(r, 0);
	assert_string_equal(out, want);
}

static void
test_normalise_plain(void **state)
{
	struct mm_config c;
	char out[8];

	memset(&c, 0, sizeof(c));
	normalise_is(&c, "Alice@Example.com", "Alice@Example.com");
	normalise_is(&c, "a", "a");
	normalise_is(&c, "\xc3\xa4lice", "\xc3\xa4lice");	/* 8-bit */
	normalise_is(&c, "", NULL);
	normalise_is(&c, NULL, NULL);
	normalise_is(&c, "al ice", NULL);
	normalise_is(&c, "alice\t", NULL);
	normalise_is(&c, "alice\r\n", NULL);
	normalise_is(&c, "al\x7f", NULL);
	normalise_is(&c, "\x1b[0m", NULL);

	assert_int_equal(dir_normalise_user(&c, "1234567", out, 8), 0);
	assert_string_equal(out, "1234567");
	assert_int_equal(dir_normalise_user(&c, "12345678", out, 8), -1);
	assert_int_equal(dir_normalise_user(&c, "a", out, 0), -1);
}

static void
test_normalise_options(void **state)
{
	struct mm_config c;
	char out[16];

	memset(&c, 0, sizeof(c));
	c.user_lowercase = true;
	normalise_is(&c, "Alice@Example.COM", "alice@example.com");

	c.user_strip_domain = true;
	normalise_is(&c, "Alice@Example.COM", "alice");
	/* The last '@' starts the domain. */
	normalise_is(&c, "\"a@b\"@Example.COM", "\"a@b\"");
	normalise_is(&c, "bob", "bob");
	normalise_is(&c, "@example.com", NULL);
	/* Stripping wins over adding. */
	c.user_add_domain = "example.net";
	normalise_is(&c, "Alice@Example.COM", "alice");
	normalise_is(&c, "alice", "alice");

	c.user_strip_domain = false;
	normalise_is(&c, "Alice", "alice@example.net");
	normalise_is(&c, "alice@example.org", "alice@example.org");
	c.user_add_domain = "Example.NET";
	normalise_is(&c, "Bob", "bob@example.net");
	c.user_lowercase = false;
	normalise_is(&c, "Bob", "Bob@Example.NET");
	c.user_add_domain = "";
	normalise_is(&c, "Bob", "Bob");

	/* The added domain must fit too. */
	c.user_add_domain = "example.net";
	assert_int_equal(dir_normalise_user(&c, "abc", out, 16), 0);
	assert_string_equal(out, "abc@example.net");
	assert_int_equal(dir_normalise_user(&c, "abcd", out, 16), -1);
}

/* Looks user up and checks the route; host NULL means no route. */
static void
lookup_is(struct dir *dir, const char *user, enum mm_proto proto,
    enum dir_result want, const char *backend, const char *host,
    uint16_t port)
{
	struct dir_route route;
	enum dir_result r = dir_lookup(dir, user, proto, &route);

	if (r != want)
		fail_msg("%s: %s, wanted %s", user, dir_result_name(r),
		    dir_result_name(want));
	if (want != DIR_FOUND) {
		assert_null(route.backend);
		return;
	}
	assert_non_null(route.backend);
	assert_string_equal(route.backend->name, backend);
	assert_string_equal(route.host, host);
	assert_int_equal(route.port, port);
}

static void
test_lookup_backend_names(void **state)
{
	struct fixture *f = *state;
	struct dir *dir = open_dir(f->conf);
	struct dir_route route;

	lookup_is(dir, "alice@example.com", MM_PROTO_IMAP, DIR_FOUND, "ms1",
	    "10.1.0.1", 1143);
	lookup_is(dir, "alice@example.com", MM_PROTO_POP3, DIR_FOUND, "ms1",
	    "10.1.0.1", 1110);
	assert_int_equal(dir_lookup(dir, "alice@example.com", MM_PROTO_IMAP,
	    &route), DIR_FOUND);
	assert_ptr_equal(route.backend, &f->conf->backends[0]);
	assert_int_equal(route.backend->tls, MM_TLS_STARTTLS);

	lookup_is(dir, "bob@example.com", MM_PROTO_IMAP, DIR_FOUND, "ms2",
	    "ms2.internal", 143);
	/* ms2 serves no POP3: a config mistake, not an unknown user. */
	lookup_is(dir, "bob@example.com", MM_PROTO_POP3, DIR_TEMPFAIL, NULL,
	    NULL, 0);
	/* A popmap key equal to a back-end name is still just a user. */
	lookup_is(dir, "ms1", MM_PROTO_IMAP, DIR_FOUND, "popmap", "10.9.9.9",
	    143);
	dir_free(dir);
}

static void
test_lookup_hosts(void **state)
{
	struct fixture *f = *state;
	struct dir *dir = open_dir(f->conf);
	struct dir_route route;

	lookup_is(dir, "carol@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.0.0.5", 143);
	lookup_is(dir, "carol@example.com", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "10.0.0.5", 110);
	lookup_is(dir, "dave@example.com", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "10.0.0.6", 2110);
	lookup_is(dir, "dave@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.0.0.6", 2110);
	lookup_is(dir, "erin@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "2001:db8::5", 143);
	lookup_is(dir, "frank@example.com", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "2001:db8::6", 1995);
	lookup_is(dir, "gina@example.com", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "2001:db8::7", 110);
	lookup_is(dir, "hal@example.com", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "mail-1.example_net", 110);
	lookup_is(dir, "kim@example.org", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "kim.hosts.example.org", 143);

	assert_int_equal(dir_lookup(dir, "carol@example.com", MM_PROTO_IMAP,
	    &route), DIR_FOUND);
	assert_int_equal(route.backend->tls, MM_TLS_NONE);
	assert_int_equal(route.backend->client_addr, MM_CADDR_NONE);
	assert_non_null(route.backend->host);
	dir_free(dir);
}

static void
test_lookup_bad_values(void **state)
{
	static const char *bad[] = {
		"bad1@example.com", "bad2@example.com", "bad3@example.com",
		"bad4@example.com", "bad5@example.com", "bad6@example.com",
		"bad7@example.com", "bad8@example.com", "bad9@example.com",
		"bad10@example.com", "bad11@example.com",
	};
	struct fixture *f = *state;
	struct dir *dir = open_dir(f->conf);
	char user[DIR_USER_MAX + 1];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		lookup_is(dir, bad[i], MM_PROTO_IMAP, DIR_TEMPFAIL, NULL, NULL,
		    0);

	/* An expansion past POPMAP_VALUE_MAX. */
	memset(user, 'a', 200);
	strcpy(user + 200, "@long.org");
	lookup_is(dir, user, MM_PROTO_IMAP, DIR_TEMPFAIL, NULL, NULL, 0);
	strcpy(user, "ab@long.org");
	lookup_is(dir, user, MM_PROTO_IMAP, DIR_FOUND, "popmap", "ababab",
	    143);
	/* A bad protocol. */
	lookup_is(dir, "carol@example.com", MM_PROTO_COUNT, DIR_TEMPFAIL,
	    NULL, NULL, 0);
	dir_free(dir);
}

static void
test_lookup_notfound(void **state)
{
	struct fixture *f = *state;
	struct dir *dir = open_dir(f->conf);
	char user[DIR_USER_MAX + 2];

	lookup_is(dir, "nobody@example.com", MM_PROTO_IMAP, DIR_NOTFOUND,
	    NULL, NULL, 0);
	/* Not lower-cased by default: the map key differs. */
	lookup_is(dir, "Alice@example.com", MM_PROTO_IMAP, DIR_NOTFOUND,
	    NULL, NULL, 0);
	lookup_is(dir, "", MM_PROTO_IMAP, DIR_NOTFOUND, NULL, NULL, 0);
	lookup_is(dir, "alice@example.com ", MM_PROTO_IMAP, DIR_NOTFOUND,
	    NULL, NULL, 0);
	memset(user, 'a', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	lookup_is(dir, user, MM_PROTO_IMAP, DIR_NOTFOUND, NULL, NULL, 0);
	dir_free(dir);

	f->conf->user_lowercase = true;
	dir = open_dir(f->conf);
	lookup_is(dir, "ALICE@Example.com", MM_PROTO_IMAP, DIR_FOUND, "ms1",
	    "10.1.0.1", 1143);
	dir_free(dir);
}

static void
test_normalise_before_lookup(void **state)
{
	struct fixture *f = *state;
	struct dir *dir;

	f->conf->user_add_domain = strdup("example.com");
	dir = open_dir(f->conf);
	lookup_is(dir, "carol", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.0.0.5", 143);
	lookup_is(dir, "kim@example.org", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "kim.hosts.example.org", 143);
	dir_free(dir);
}

static void
test_default_backend(void **state)
{
	struct fixture *f = *state;
	struct dir *dir;

	f->conf->default_backend = strdup("ms1");
	dir = open_dir(f->conf);
	lookup_is(dir, "nobody@example.com", MM_PROTO_POP3, DIR_FOUND, "ms1",
	    "10.1.0.1", 1110);
	/* A match still wins over the default. */
	lookup_is(dir, "carol@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.0.0.5", 143);
	/* A name that cannot be normalised is not routed anywhere. */
	lookup_is(dir, "no body", MM_PROTO_IMAP, DIR_NOTFOUND, NULL, NULL, 0);
	dir_free(dir);

	free(f->conf->default_backend);
	f->conf->default_backend = strdup("ms2");
	dir = open_dir(f->conf);
	lookup_is(dir, "nobody", MM_PROTO_POP3, DIR_TEMPFAIL, NULL, NULL, 0);
	dir_free(dir);

	free(f->conf->default_backend);
	f->conf->default_backend = strdup("[::1]:2143");
	dir = open_dir(f->conf);
	lookup_is(dir, "nobody", MM_PROTO_IMAP, DIR_FOUND, "popmap", "::1",
	    2143);
	dir_free(dir);

	free(f->conf->default_backend);
	f->conf->default_backend = strdup("fallback.example.net");
	dir = open_dir(f->conf);
	lookup_is(dir, "nobody", MM_PROTO_POP3, DIR_FOUND, "popmap",
	    "fallback.example.net", 110);
	dir_free(dir);
}

static void
test_no_popmap(void **state)
{
	struct fixture *f = *state;
	char *err = NULL;
	struct dir *dir;

	free(f->conf->popmap_file);
	f->conf->popmap_file = NULL;
	dir = open_dir(f->conf);
	lookup_is(dir, "alice@example.com", MM_PROTO_IMAP, DIR_NOTFOUND, NULL,
	    NULL, 0);
	assert_int_equal(dir_reload(dir, &err), 0);
	assert_null(err);
	dir_free(dir);

	f->conf->default_backend = strdup("10.2.0.1:1143");
	dir = open_dir(f->conf);
	lookup_is(dir, "alice@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.2.0.1", 1143);
	dir_free(dir);
}

static void
test_open_errors(void **state)
{
	struct fixture *f = *state;
	char *err = NULL;

	/* An unreadable map. */
	unlink(f->path);
	assert_null(dir_open(f->conf, &err));
	assert_non_null(err);
	assert_true(strncmp(err, f->path, strlen(f->path)) == 0);
	free(err);

	/* A bad map. */
	write_file(f->path, "alice ms1\n");
	err = NULL;
	assert_null(dir_open(f->conf, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, ":1: missing ':'"));
	free(err);

	/* A default back end that can never resolve. */
	write_file(f->path, map_text);
	f->conf->default_backend = strdup("ms9:port");
	err = NULL;
	assert_null(dir_open(f->conf, &err));
	assert_non_null(err);
	assert_non_null(strstr(err, "ms9:port"));
	free(err);
}

static void
test_reload(void **state)
{
	struct fixture *f = *state;
	struct dir *dir = open_dir(f->conf);
	char *err = NULL;

	write_file(f->path, "alice@example.com: 10.3.0.1\nnew@x: ms2\n");
	assert_int_equal(dir_reload(dir, &err), 0);
	assert_null(err);
	lookup_is(dir, "alice@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.3.0.1", 143);
	lookup_is(dir, "new@x", MM_PROTO_IMAP, DIR_FOUND, "ms2",
	    "ms2.internal", 143);
	lookup_is(dir, "carol@example.com", MM_PROTO_IMAP, DIR_NOTFOUND,
	    NULL, NULL, 0);

	/* A broken file keeps the old data. */
	write_file(f->path, "alice@example.com: ms1\nalice@example.com: ms2\n");
	assert_int_equal(dir_reload(dir, &err), -1);
	assert_non_null(err);
	assert_non_null(strstr(err, ":2: duplicate key, first at line 1"));
	free(err);
	lookup_is(dir, "alice@example.com", MM_PROTO_IMAP, DIR_FOUND, "popmap",
	    "10.3.0.1", 143);

	unlink(f->path);
	err = NULL;
	assert_int_equal(dir_reload(dir, &err), -1);
	assert_non_null(err);
	free(err);
	lookup_is(dir, "new@x", MM_PROTO_IMAP, DIR_FOUND, "ms2",
	    "ms2.internal", 143);
	dir_free(dir);
	dir_free(NULL);
}

static void
test_result_name(void **state)
{
	assert_string_equal(dir_result_name(DIR_FOUND), "found");
	assert_string_equal(dir_result_name(DIR_NOTFOUND), "notfound");
	assert_string_equal(dir_result_name(DIR_TEMPFAIL), "tempfail");
	assert_string_equal(dir_result_name(DIR_REMOTE), "remote");
	assert_string_equal(dir_result_name((enum dir_result)42), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalise_plain),
		cmocka_unit_test(test_normalise_options),
		cmocka_unit_test_setup_teardown(test_lookup_backend_names,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_hosts, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_lookup_bad_values, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_lookup_notfound, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_normalise_before_lookup,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_backend, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_no_popmap, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test(test_result_name),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
