/* The doveadm client (doveadm.h): the line parser, escaping, and the
 * client against a small scripted server on 127.0.0.1 run on the same
 * loop. The fake speaks what Dovecot 2.3 was seen to send; it is here for
 * what a real server cannot be made to do on cue (hang, close mid-output,
 * send garbage). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "doveadm.h"

#define PW "dove secret"
#define FAKE_CONNS 4
#define BIG (DOVEADM_LINE_MAX + 100)

/* ---- the parser ----------------------------------------------------- */

static struct doveadm_line l;

/* Parses s (len bytes) from a copy; the copy is kept for the fields. */
static char pbuf[DOVEADM_LINE_MAX + 16];

static int
parse(const char *s, size_t len, bool in_output, const char **why_r)
{
	assert_true(len <= sizeof(pbuf));
	memcpy(pbuf, s, len);
	*why_r = NULL;
	return doveadm_parse_line(pbuf, len, in_output, &l, why_r);
}

static int
parses(const char *s, bool in_output, const char **why_r)
{
	return parse(s, strlen(s), in_output, why_r);
}

static void
refused(const char *s, size_t len, bool in_output, const char *why)
{
	const char *got = NULL;

	assert_int_equal(parse(s, len, in_output, &got), -1);
	assert_non_null(got);
	assert_string_equal(got, why);
}

#define REFUSED_S(s, in_output, why) refused(s, strlen(s), in_output, why)

static void
test_parse_handshake(void **state)
{
	const char *why;

	(void)state;
	assert_int_equal(parses("VERSION\tdoveadm-client\t1\t2", false, &why),
	    0);
	assert_int_equal(l.kind, DOVEADM_LINE_VERSION);
	assert_int_equal(l.major, 1);
	assert_int_equal(l.minor, 2);
	assert_int_equal(parses("VERSION\tdoveadm-client\t1\t0", false, &why),
	    0);
	assert_int_equal(l.minor, 0);
	assert_int_equal(parses("+", false, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_OK);
	assert_int_equal(parses("-", false, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_FAIL);
	assert_int_equal(l.exit_code, -1);
	assert_string_equal(l.reason, "");

	REFUSED_S("VERSION\tdoveadm-client\t2\t0", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-server\t1\t0", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-client\t1\tx", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-client\t1\t", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-client\t1", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-client\t1\t2\t", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("VERSION\tdoveadm-client\t1\t9999999", false,
	    "not a doveadm-client 1.x VERSION line");
	REFUSED_S("hello", false, "an unexpected line in the handshake");
	REFUSED_S("", false, "an unexpected line in the handshake");
	REFUSED_S("-NOUSER", false, "an unexpected line in the handshake");
	REFUSED_S("INBOX\t", false, "an unexpected line in the handshake");
	REFUSED_S("+\r", false, "a CR byte");
}

static void
test_parse_rows(void **state)
{
	static const char esc[] = "a\001tb\001nc\001rd\0011e\t\tlast\t";
	const char *why;

	(void)state;
	assert_int_equal(parses("INBOX\t3\t1796688025\t", true, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_ROW);
	assert_int_equal(l.n_fields, 3);
	assert_string_equal(l.fields[0], "INBOX");
	assert_string_equal(l.fields[1], "3");
	assert_string_equal(l.fields[2], "1796688025");

	assert_int_equal(parses("", true, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_ROW);
	assert_int_equal(l.n_fields, 0);

	assert_int_equal(parse(esc, sizeof(esc) - 1, true, &why), 0);
	assert_int_equal(l.n_fields, 3);
	assert_string_equal(l.fields[0], "a\tb\nc\rd\001e");
	assert_string_equal(l.fields[1], "");
	assert_string_equal(l.fields[2], "last");

	/* A TAB makes it a row, whatever it starts with. */
	assert_int_equal(parses("+\t", true, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_ROW);
	assert_string_equal(l.fields[0], "+");
	assert_int_equal(parses("-NOUSER\t", true, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_ROW);
	assert_string_equal(l.fields[0], "-NOUSER");
	assert_int_equal(parses("VERSION\tdoveadm-client\t1\t2\t", true,
	    &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_ROW);
	assert_int_equal(l.n_fields, 4);

	/* fetch hdr as Dovecot sent it: lines escaped inside one field */
	assert_int_equal(parses("1\tSubject: x\001nTo: y\001n\001n\t", true,
	    &why), 0);
	assert_int_equal(l.n_fields, 2);
	assert_string_equal(l.fields[1], "Subject: x\nTo: y\n\n");
}

static void
test_parse_status(void **state)
{
	static const struct {
		const char *line;
		int code;
		const char *reason;
	} st[] = {
		{ "-", -1, "" },
		{ "-NOUSER", 67, "NOUSER" },
		{ "-67", 67, "67" },
		{ "-TEMPFAIL", 75, "TEMPFAIL" },
		{ "-75", 75, "75" },
		{ "-USAGE", 64, "USAGE" },
		{ "-NOTFOUND", 68, "NOTFOUND" },
		{ "-NOPERM", 77, "NOPERM" },
		{ "-PROTOCOL", 76, "PROTOCOL" },
		{ "-DATAERR", 65, "DATAERR" },
		{ "-NOREPLICATE", 1001, "NOREPLICATE" },
		{ "-UNKNOWN", -1, "UNKNOWN" },
		{ "-something else", -1, "something else" },
		{ "-nouser", -1, "nouser" },
		{ "-9999999999", -1, "9999999999" },
		{ "-6a", -1, "6a" },
	};
	const char *why;
	size_t i;

	(void)state;
	assert_int_equal(parses("+", true, &why), 0);
	assert_int_equal(l.kind, DOVEADM_LINE_OK);
	for (i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
		assert_int_equal(parses(st[i].line, true, &why), 0);
		assert_int_equal(l.kind, DOVEADM_LINE_FAIL);
		assert_int_equal(l.exit_code, st[i].code);
		assert_string_equal(l.reason, st[i].reason);
	}
}

static void
test_parse_refusals(void **state)
{
	static char big[DOVEADM_LINE_MAX + 2];
	char many[(DOVEADM_FIELDS_MAX + 1) * 2];
	const char *why;
	size_t i;

	(void)state;
	REFUSED_S("abc", true, "a row without its last TAB");
	REFUSED_S("a\tb", true, "a row without its last TAB");
	REFUSED_S("garbage", true, "a row without its last TAB");
	refused("a\001x\t", 4, true, "a bad escape");
	refused("a\001\t", 3, true, "a bad escape");
	refused("a\001T\t", 4, true, "a bad escape");
	refused("a\0010\t", 4, true, "an escaped NUL");
	refused("a\0b\t", 4, true, "a NUL byte");
	refused("\0", 1, false, "a NUL byte");
	refused("a\rb\t", 4, true, "a CR byte");
	refused("+\r", 2, true, "a CR byte");
	refused("a\nb\t", 4, true, "an LF byte");
	refused("+\n", 2, false, "an LF byte");
	REFUSED_S("-NO\001USER", true, "a control character in the status");
	REFUSED_S("-NO\x7f" "USER", true,
	    "a control character in the status");

	for (i = 0; i < DOVEADM_FIELDS_MAX + 1; i++) {
		many[2 * i] = 'x';
		many[2 * i + 1] = '\t';
	}
	refused(many, sizeof(many), true, "too many fields");
	assert_int_equal(parse(many, sizeof(many) - 2, true, &why), 0);
	assert_int_equal(l.n_fields, DOVEADM_FIELDS_MAX);

	memset(big, 'x', sizeof(big));
	big[DOVEADM_LINE_MAX - 1] = '\t';
	assert_int_equal(parse(big, DOVEADM_LINE_MAX, true, &why), 0);
	assert_int_equal(l.n_fields, 1);
	assert_int_equal(strlen(l.fields[0]), DOVEADM_LINE_MAX - 1);
	big[DOVEADM_LINE_MAX - 1] = 'x';
	big[DOVEADM_LINE_MAX] = '\t';
	/* not through parse(): the copy buffer is the limit's size */
	why = NULL;
	assert_int_equal(doveadm_parse_line(big, DOVEADM_LINE_MAX + 1, true,
	    &l, &why), -1);
	assert_string_equal(why, "a line too long");
}

/* Nothing at line[len] or later is written. */
static void
test_parse_stays_inside(void **state)
{
	static const char *lines[] = {
		"-NOUSER", "-", "+", "x\t", "a\001tb\t",
		"VERSION\tdoveadm-client\t1\t2",
	};
	char buf[64];
	const char *why;
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		len = strlen(lines[i]);
		memset(buf, '#', sizeof(buf));
		memcpy(buf, lines[i], len);
		assert_int_equal(doveadm_parse_line(buf, len,
		    strncmp(lines[i], "VERSION", 7) != 0, &l, &why), 0);
		assert_int_equal(buf[len], '#');
		assert_int_equal(buf[len + 1], '#');
	}
}

static void
test_escape(void **state)
{
	static const char raw[] = "a\tb\nc\rd\001e";
	char out[64];
	const char *why;
	int n;

	(void)state;
	n = doveadm_escape(raw, out, sizeof(out));
	assert_int_equal(n, 13);
	assert_string_equal(out, "a\001tb\001nc\001rd\0011e");
	/* and back through the parser */
	out[n] = '\t';
	assert_int_equal(parse(out, (size_t)n + 1, true, &why), 0);
	assert_int_equal(l.n_fields, 1);
	assert_string_equal(l.fields[0], raw);

	assert_int_equal(doveadm_escape("plain", out, sizeof(out)), 5);
	assert_string_equal(out, "plain");
	assert_int_equal(doveadm_escape("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(doveadm_escape("", out, 0), -1);
	assert_int_equal(doveadm_escape("abc", out, 4), 3);
	assert_int_equal(doveadm_escape("abc", out, 3), -1);
	assert_int_equal(doveadm_escape("a\t", out, 4), 3);
	assert_string_equal(out, "a\001t");
	assert_int_equal(doveadm_escape("a\t", out, 3), -1);
	assert_int_equal(doveadm_escape("\001", out, 2), -1);
}

/* ---- a scripted doveadm server -------------------------------------- */

struct fake {
	struct event_base *base;
	struct evconnlistener *lst;
	uint16_t port;
	const char *greeting;	/* after VERSION; NULL: nothing */
	const char *reply;	/* after the command */
	size_t reply_len;	/* 0: strlen(reply) */
	bool close_after;	/* close once the reply is sent */
	bool close_at_hello;	/* close instead of the greeting */
	const char *password;	/* the one accepted */
	char hello[128];
	char plain[256];	/* the PLAIN credentials, decoded */
	size_t plain_len;
	bool got_plain;
	char command[4096];
	int n_conns;
	struct bufferevent *conns[FAKE_CONNS];
	bool closing[FAKE_CONNS];
};

struct outcome {
	struct event_base *base;
	bool done;
	struct doveadm_result r;
	char error[512];
	size_t rows;
	char text[4096];	/* fields joined by '|', rows ended by ';' */
	bool stop;		/* row returns false */
	bool cancel_in_row;
	struct doveadm_cmd *cmd;
};

static struct fake fk;
static struct outcome out;

static void
conn_close(struct bufferevent *bev)
{
	int i;

	for (i = 0; i < FAKE_CONNS; i++)
		if (fk.conns[i] == bev) {
			fk.conns[i] = NULL;
			fk.closing[i] = false;
		}
	bufferevent_free(bev);
}

static void
conn_close_when_sent(struct bufferevent *bev)
{
	int i;

	for (i = 0; i < FAKE_CONNS; i++)
		if (fk.conns[i] == bev)
			fk.closing[i] = true;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_close(bev);
}

static void
fake_write_cb(struct bufferevent *bev, void *arg)
{
	int i;

	for (i = 0; i < FAKE_CONNS; i++)
		if (fk.conns[i] == bev && fk.closing[i]) {
			conn_close(bev);
			return;
		}
}

static void
fake_read_cb(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t len;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) != NULL) {
		if (strncmp(line, "VERSION\t", 8) == 0) {
			snprintf(fk.hello, sizeof(fk.hello), "%s", line);
			free(line);
			if (fk.close_at_hello) {
				conn_close(bev);
				return;
			}
			if (fk.greeting != NULL)
				bufferevent_write(bev, fk.greeting,
				    strlen(fk.greeting));
			continue;
		}
		if (strncmp(line, "PLAIN\t", 6) == 0) {
			fk.got_plain = true;
			assert_int_equal(sodium_base642bin(
			    (unsigned char *)fk.plain, sizeof(fk.plain),
			    line + 6, len - 6, NULL, &fk.plain_len, NULL,
			    sodium_base64_VARIANT_ORIGINAL), 0);
			free(line);
			if (fk.password != NULL &&
			    fk.plain_len == 9 + strlen(fk.password) &&
			    memcmp(fk.plain + 9, fk.password,
			    strlen(fk.password)) == 0) {
				bufferevent_write(bev, "+\n", 2);
				continue;
			}
			/* as Dovecot: "-" and the end */
			bufferevent_write(bev, "-\n", 2);
			conn_close_when_sent(bev);
			return;
		}
		snprintf(fk.command, sizeof(fk.command), "%s\n", line);
		free(line);
		if (fk.reply != NULL)
			bufferevent_write(bev, fk.reply, fk.reply_len > 0 ?
			    fk.reply_len : strlen(fk.reply));
		if (fk.close_after) {
			conn_close_when_sent(bev);
			return;
		}
	}
}

static void
fake_event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(bev);
}

static void
fake_accept(struct evconnlistener *lst, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(fk.base, fd,
	    BEV_OPT_CLOSE_ON_FREE);
	int i;

	assert_non_null(bev);
	fk.n_conns++;
	for (i = 0; i < FAKE_CONNS; i++)
		if (fk.conns[i] == NULL) {
			fk.conns[i] = bev;
			break;
		}
	assert_true(i < FAKE_CONNS);
	bufferevent_setcb(bev, fake_read_cb, fake_write_cb, fake_event_cb,
	    NULL);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static int
setup(void **state)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	memset(&fk, 0, sizeof(fk));
	memset(&out, 0, sizeof(out));
	fk.base = event_base_new();
	assert_non_null(fk.base);
	out.base = fk.base;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fk.lst = evconnlistener_new_bind(fk.base, fake_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8,
	    (struct sockaddr *)&sin, sizeof(sin));
	assert_non_null(fk.lst);
	assert_int_equal(getsockname(evconnlistener_get_fd(fk.lst),
	    (struct sockaddr *)&sin, &sl), 0);
	fk.port = ntohs(sin.sin_port);
	fk.greeting = "-\n";
	fk.password = PW;
	return 0;
}

static int
teardown(void **state)
{
	int i;

	for (i = 0; i < FAKE_CONNS; i++)
		if (fk.conns[i] != NULL)
			bufferevent_free(fk.conns[i]);
	evconnlistener_free(fk.lst);
	event_base_free(fk.base);
	return 0;
}

/* ---- the client against it ------------------------------------------ */

static bool
row_cb(void *arg, size_t n, const char *const *fields)
{
	struct outcome *o = arg;
	size_t i;

	o->rows++;
	for (i = 0; i < n; i++) {
		strncat(o->text, fields[i], sizeof(o->text) -
		    strlen(o->text) - 2);
		strcat(o->text, i + 1 < n ? "|" : ";");
	}
	if (o->cancel_in_row) {
		doveadm_cancel(o->cmd);
		return true;
	}
	return !o->stop;
}

static void
done_cb(void *arg, const struct doveadm_result *r)
{
	struct outcome *o = arg;

	assert_false(o->done);
	o->done = true;
	o->r = *r;
	assert_non_null(r->error);
	snprintf(o->error, sizeof(o->error), "%s", r->error);
	o->r.error = o->error;
	event_base_loopbreak(o->base);
}

static void
loop_ms(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(fk.base, &tv);
	event_base_dispatch(fk.base);
}

static struct doveadm_cmd *
start_cmd(const char *password, const char *const *argv, size_t argc,
    uint64_t timeout_ms)
{
	const char *why = NULL;
	struct doveadm_cmd *c;

	c = doveadm_run(fk.base, "127.0.0.1", fk.port, password,
	    "alice@a.test", argv, argc, timeout_ms, row_cb, done_cb, &out,
	    &why);
	assert_non_null(c);
	out.cmd = c;
	return c;
}

static void
run_cmd(const char *password, const char *const *argv, size_t argc,
    size_t row_fields, uint64_t timeout_ms)
{
	struct doveadm_cmd *c = start_cmd(password, argv, argc, timeout_ms);

	assert_int_equal(doveadm_set_row_fields(c, row_fields), 0);
	/* never from inside doveadm_run */
	assert_false(out.done);
	loop_ms(5000);
	assert_true(out.done);
}

static const char *const status_argv[] = {
	"mailbox status", "-u", "alice@a.test", "messages uidvalidity", "*",
};
#define STATUS_ARGC (sizeof(status_argv) / sizeof(status_argv[0]))

static void
test_client_rows(void **state)
{
	(void)state;
	fk.reply = "here\t0\t1796688296\tSent\t0\t1796688294\t"
	    "INBOX\t3\t1796688293\t\n+\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 3, 0);
	assert_int_equal(out.r.status, DOVEADM_OK);
	assert_int_equal(out.r.exit_code, -1);
	assert_int_equal(out.rows, 3);
	assert_string_equal(out.text, "here|0|1796688296;Sent|0|1796688294;"
	    "INBOX|3|1796688293;");
	assert_string_equal(fk.hello, "VERSION\tdoveadm-server\t1\t0");
	assert_true(fk.got_plain);
	assert_int_equal(fk.plain_len, 9 + strlen(PW));
	assert_memory_equal(fk.plain, "\0doveadm\0" PW, fk.plain_len);
	assert_string_equal(fk.command, "\talice@a.test\tmailbox status\t-u\t"
	    "alice@a.test\tmessages uidvalidity\t*\n");
	assert_int_equal(fk.n_conns, 1);
}

/* A server VERSION line, escapes both ways, the whole output as one row. */
static void
test_client_version_escapes(void **state)
{
	static const char *const argv[] = {
		"mailbox create", "-u", "alice@a.test", "Tab\there\001\n",
	};

	(void)state;
	fk.greeting = "VERSION\tdoveadm-client\t1\t2\n-\n";
	fk.reply = "a\001tb\001n\tx\t\n+\n";
	run_cmd(PW, argv, 4, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_OK);
	assert_int_equal(out.rows, 1);
	assert_string_equal(out.text, "a\tb\n|x;");
	assert_string_equal(fk.command, "\talice@a.test\tmailbox create\t-u\t"
	    "alice@a.test\tTab\001there\0011\001n\n");
}

/* No output at all: "backup" as Dovecot answered it. */
static void
test_client_no_output(void **state)
{
	static const char *const argv[] = {
		"backup", "-u", "alice@a.test", "tcp:127.0.0.1:1",
	};

	(void)state;
	fk.reply = "\n+\n";
	run_cmd(PW, argv, 4, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_OK);
	assert_int_equal(out.rows, 0);
}

static void
test_client_preauth(void **state)
{
	(void)state;
	fk.greeting = "+\n";
	fk.reply = "INBOX\t3\t\n+\n";
	run_cmd(NULL, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_OK);
	assert_false(fk.got_plain);
	assert_string_equal(out.text, "INBOX|3;");
}

static void
test_client_nouser(void **state)
{
	(void)state;
	fk.reply = "\n-67\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_NOUSER);
	assert_int_equal(out.r.exit_code, 67);
	assert_non_null(strstr(out.error, "exit code 67"));
}

static void
test_client_nouser_name(void **state)
{
	(void)state;
	fk.reply = "\n-NOUSER\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_NOUSER);
	assert_int_equal(out.r.exit_code, 67);
	assert_non_null(strstr(out.error, "NOUSER"));
}

static void
test_client_failed(void **state)
{
	char want[128];

	(void)state;
	fk.reply = "\n-TEMPFAIL\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_FAILED);
	assert_int_equal(out.r.exit_code, 75);
	snprintf(want, sizeof(want), "doveadm at 127.0.0.1:%u: mailbox status "
	    "failed: TEMPFAIL (exit code 75)", fk.port);
	assert_string_equal(out.error, want);
}

static void
test_client_failed_no_reason(void **state)
{
	(void)state;
	fk.reply = "\n-\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_FAILED);
	assert_int_equal(out.r.exit_code, -1);
	assert_non_null(strstr(out.error, "no reason given"));
}

static void
test_client_auth_refused(void **state)
{
	(void)state;
	fk.reply = "\n+\n";
	run_cmd("wrong", status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_AUTH);
	assert_non_null(strstr(out.error, "refused the password"));
	assert_null(strstr(out.error, "wrong"));
	assert_string_equal(fk.command, "");
}

static void
test_client_no_password(void **state)
{
	(void)state;
	run_cmd(NULL, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_AUTH);
	assert_non_null(strstr(out.error, "wants a password"));
	assert_false(fk.got_plain);
}

static void
test_client_closed_mid_output(void **state)
{
	(void)state;
	fk.reply = "INBOX\t3\t4\tSent\t";
	fk.close_after = true;
	run_cmd(PW, status_argv, STATUS_ARGC, 3, 0);
	assert_int_equal(out.r.status, DOVEADM_UNREACHABLE);
	assert_int_equal(out.rows, 1);
	assert_non_null(strstr(out.error, "before the status"));
}

static void
test_client_closed_at_hello(void **state)
{
	(void)state;
	fk.close_at_hello = true;
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_UNREACHABLE);
	assert_non_null(strstr(out.error, "during the handshake"));
}

static void
test_client_timeout(void **state)
{
	uint64_t t0 = 0;
	struct timeval tv;

	(void)state;
	fk.greeting = NULL;	/* never answers */
	gettimeofday(&tv, NULL);
	t0 = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 200);
	gettimeofday(&tv, NULL);
	assert_int_equal(out.r.status, DOVEADM_TIMEOUT);
	assert_true((uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000 -
	    t0 >= 190);
	assert_non_null(strstr(out.error, "timed out after 200 ms"));
	assert_non_null(strstr(out.error, "greeting"));
}

static void
test_client_refused(void **state)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	char want[128];
	int fd;

	(void)state;
	/* a port nobody listens on */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);
	fk.port = ntohs(sin.sin_port);
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_UNREACHABLE);
	snprintf(want, sizeof(want), "doveadm at 127.0.0.1:%u: connection "
	    "refused", fk.port);
	assert_string_equal(out.error, want);
}

static void
test_client_cancel(void **state)
{
	struct doveadm_cmd *c;

	(void)state;
	/* before the loop ran */
	c = start_cmd(PW, status_argv, STATUS_ARGC, 100);
	doveadm_cancel(c);
	loop_ms(300);
	assert_false(out.done);

	/* mid-handshake, against a server that does not answer */
	fk.greeting = NULL;
	c = start_cmd(PW, status_argv, STATUS_ARGC, 0);
	loop_ms(100);
	assert_string_equal(fk.hello, "VERSION\tdoveadm-server\t1\t0");
	doveadm_cancel(c);
	loop_ms(100);
	assert_false(out.done);
	doveadm_cancel(NULL);
}

static void
test_client_cancel_in_row(void **state)
{
	(void)state;
	fk.reply = "a\t\tb\t\tc\t\n+\n";
	out.cancel_in_row = true;
	(void)start_cmd(PW, status_argv, STATUS_ARGC, 0);
	assert_int_equal(doveadm_set_row_fields(out.cmd, 1), 0);
	loop_ms(300);
	assert_false(out.done);
	assert_int_equal(out.rows, 1);
}

static void
test_client_stop(void **state)
{
	(void)state;
	fk.reply = "a\tb\tc\t\n+\n";
	out.stop = true;
	run_cmd(PW, status_argv, STATUS_ARGC, 1, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_string_equal(out.error, "stopped by the caller");
	assert_int_equal(out.rows, 1);
}

static void
test_client_garbage_greeting(void **state)
{
	(void)state;
	fk.greeting = "hello\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "an unexpected line in the "
	    "handshake"));
}

static void
test_client_garbage_status(void **state)
{
	(void)state;
	fk.reply = "INBOX\t3\t\ngarbage\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "unreadable status"));
}

static void
test_client_garbage_output(void **state)
{
	(void)state;
	fk.reply = "INBOX\001x\t\n+\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "a bad escape"));
}

/* Without the empty line first, a status is not output. */
static void
test_client_status_as_output(void **state)
{
	(void)state;
	fk.reply = "-NOUSER\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "a status where output"));
}

static void
test_client_partial_row(void **state)
{
	(void)state;
	fk.reply = "a\tb\tc\t\n+\n";
	run_cmd(PW, status_argv, STATUS_ARGC, 2, 0);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_int_equal(out.rows, 1);
	assert_non_null(strstr(out.error, "output ends inside a row"));
}

static char bigbuf[BIG];

/* Limits hold before a whole line is there: the server does not close. */
static void
test_client_long_greeting(void **state)
{
	(void)state;
	memset(bigbuf, 'x', sizeof(bigbuf) - 1);
	bigbuf[sizeof(bigbuf) - 1] = '\0';
	fk.greeting = bigbuf;
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 5000);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "a line over 65536 bytes"));
}

static void
test_client_long_row(void **state)
{
	(void)state;
	memset(bigbuf, 'x', sizeof(bigbuf));
	fk.reply = bigbuf;
	fk.reply_len = sizeof(bigbuf);
	run_cmd(PW, status_argv, STATUS_ARGC, 2, 5000);
	assert_int_equal(out.r.status, DOVEADM_PROTOCOL);
	assert_non_null(strstr(out.error, "an output row over 65536 bytes"));
}

/* A row of exactly the limit passes. */
static void
test_client_row_at_limit(void **state)
{
	static char reply[DOVEADM_LINE_MAX + 8];

	(void)state;
	memset(reply, 'y', DOVEADM_LINE_MAX - 1);
	memcpy(reply + DOVEADM_LINE_MAX - 1, "\t\n+\n", 5);
	fk.reply = reply;
	run_cmd(PW, status_argv, STATUS_ARGC, 0, 5000);
	assert_int_equal(out.r.status, DOVEADM_OK);
	assert_int_equal(out.rows, 1);
}

static void
test_run_refusals(void **state)
{
	static const char *const many[DOVEADM_ARGS_MAX + 1] = { "x" };
	static char longarg[DOVEADM_ARG_MAX + 2];
	const char *argv[2] = { "mailbox list", NULL };
	const char *why;
	struct doveadm_cmd *c;

	(void)state;
#define REFUSED(host, user, av, ac, want) do {				\
		why = NULL;						\
		c = doveadm_run(fk.base, host, fk.port, PW, user, av, ac,	\
		    0, row_cb, done_cb, &out, &why);			\
		assert_null(c);						\
		assert_string_equal(why, want);				\
	} while (0)
	REFUSED("127.0.0.1", "alice@a.test", argv, 0, "no command");
	REFUSED("127.0.0.1", "", argv, 1, "no user");
	REFUSED("127.0.0.1", NULL, argv, 1, "no user");
	REFUSED("", "alice@a.test", argv, 1, "no usable address");
	REFUSED("127.0.0.1", "alice@a.test", argv, 2, "an argument missing");
	REFUSED("127.0.0.1", "alice@a.test", many, DOVEADM_ARGS_MAX + 1,
	    "too many arguments");
	memset(longarg, 'a', DOVEADM_ARG_MAX + 1);
	argv[1] = longarg;
	REFUSED("127.0.0.1", "alice@a.test", argv, 2, "an argument too long");
	REFUSED("127.0.0.1", longarg, argv, 1, "user name too long");
	longarg[DOVEADM_ARG_MAX] = '\0';	/* at the limit: fine */
	c = doveadm_run(fk.base, "127.0.0.1", fk.port, PW, longarg, argv, 2,
	    0, row_cb, done_cb, &out, &why);
	assert_non_null(c);
	assert_int_equal(doveadm_set_row_fields(c, DOVEADM_FIELDS_MAX), 0);
	assert_int_equal(doveadm_set_row_fields(c, DOVEADM_FIELDS_MAX + 1),
	    -1);
	doveadm_cancel(c);
	assert_false(out.done);
#undef REFUSED
}

static void
test_status_names(void **state)
{
	(void)state;
	assert_string_equal(doveadm_status_name(DOVEADM_OK), "ok");
	assert_string_equal(doveadm_status_name(DOVEADM_NOUSER), "nouser");
	assert_string_equal(doveadm_status_name(DOVEADM_UNREACHABLE),
	    "unreachable");
}

#define CT(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_handshake),
		cmocka_unit_test(test_parse_rows),
		cmocka_unit_test(test_parse_status),
		cmocka_unit_test(test_parse_refusals),
		cmocka_unit_test(test_parse_stays_inside),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_status_names),
		CT(test_client_rows),
		CT(test_client_version_escapes),
		CT(test_client_no_output),
		CT(test_client_preauth),
		CT(test_client_nouser),
		CT(test_client_nouser_name),
		CT(test_client_failed),
		CT(test_client_failed_no_reason),
		CT(test_client_auth_refused),
		CT(test_client_no_password),
		CT(test_client_closed_mid_output),
		CT(test_client_closed_at_hello),
		CT(test_client_timeout),
		CT(test_client_refused),
		CT(test_client_cancel),
		CT(test_client_cancel_in_row),
		CT(test_client_stop),
		CT(test_client_garbage_greeting),
		CT(test_client_garbage_status),
		CT(test_client_garbage_output),
		CT(test_client_status_as_output),
		CT(test_client_partial_row),
		CT(test_client_long_greeting),
		CT(test_client_long_row),
		CT(test_client_row_at_limit),
		CT(test_run_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
