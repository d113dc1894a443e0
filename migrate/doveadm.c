/* A doveadm client on a libevent loop (see doveadm.h). */
#include "doveadm.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"

#define DOVEADM_ESC '\001'
/* Minor version 0: a higher one makes the server multiplex its output. */
#define DOVEADM_HELLO "VERSION\tdoveadm-server\t1\t0\n"
#define DOVEADM_PLAIN_ID "\0doveadm\0"
#define DOVEADM_PLAIN_ID_LEN 9
#define DOVEADM_ADDR_MAX 300		/* "[host]:port" for messages */
#define DOVEADM_ERROR_MAX 512
#define DOVEADM_MINOR_MAX 999999	/* a VERSION minor we still read */
#define DOVEADM_CODE_MAX 99999		/* a numeric exit code */
#define DOVEADM_IOV 8			/* chunks looked at per peek */
#define DOVEADM_LOG_FIELD 128		/* user or command in a log line */

/* ---- pure parsing -------------------------------------------------- */

static const struct {
	const char *name;
	int code;
} exit_codes[] = {
	{ "TEMPFAIL", 75 },
	{ "USAGE", 64 },
	{ "NOUSER", 67 },
	{ "NOPERM", 77 },
	{ "PROTOCOL", 76 },
	{ "DATAERR", 65 },
	{ "NOTFOUND", 68 },
	{ "NOREPLICATE", 1001 },
	{ "UNKNOWN", -1 },
};

/* Digits only, at most max; -1 otherwise. */
static long
parse_number(const char *p, size_t len, long max)
{
	long v = 0;
	size_t i;

	if (len == 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
		if (v > max)
			return -1;
	}
	return v;
}

static int
exit_code_of(const char *reason, size_t len)
{
	size_t i;
	long n;

	if ((n = parse_number(reason, len, DOVEADM_CODE_MAX)) >= 0)
		return (int)n;
	for (i = 0; i < MM_ARRAY_SIZE(exit_codes); i++)
		if (strlen(exit_codes[i].name) == len &&
		    memcmp(exit_codes[i].name, reason, len) == 0)
			return exit_codes[i].code;
	return -1;
}

/* "VERSION\tdoveadm-client\t1\tMINOR" */
static int
parse_version(const char *line, size_t len, struct doveadm_line *l)
{
	static const char head[] = "VERSION\tdoveadm-client\t";
	const size_t hlen = sizeof(head) - 1;
	const char *tab;
	long major, minor;

	if (len <= hlen || memcmp(line, head, hlen) != 0)
		return -1;
	line += hlen;
	len -= hlen;
	if ((tab = memchr(line, '\t', len)) == NULL)
		return -1;
	major = parse_number(line, (size_t)(tab - line), DOVEADM_MINOR_MAX);
	minor = parse_number(tab + 1, len - (size_t)(tab + 1 - line),
	    DOVEADM_MINOR_MAX);
	if (major != 1 || minor < 0)
		return -1;
	l->kind = DOVEADM_LINE_VERSION;
	l->major = (unsigned)major;
	l->minor = (unsigned)minor;
	return 0;
}

/* Fields each ending in TAB, unescaped in place. */
static int
parse_row(char *line, size_t len, struct doveadm_line *l, const char **why_r)
{
	size_t r = 0, w = 0, start = 0;

	l->kind = DOVEADM_LINE_ROW;
	if (len == 0)
		return 0;
	if (line[len - 1] != '\t') {
		*why_r = "a row without its last TAB";
		return -1;
	}
	while (r < len) {
		char ch = line[r++];

		if (ch == '\t') {
			if (l->n_fields == DOVEADM_FIELDS_MAX) {
				*why_r = "too many fields";
				return -1;
			}
			line[w++] = '\0';
			l->fields[l->n_fields++] = line + start;
			start = w;
			continue;
		}
		if (ch == DOVEADM_ESC) {
			/* r < len: the line ends in TAB, not in an escape. */
			switch (line[r++]) {
			case '1':
				ch = DOVEADM_ESC;
				break;
			case 't':
				ch = '\t';
				break;
			case 'r':
				ch = '\r';
				break;
			case 'n':
				ch = '\n';
				break;
			case '0':
				*why_r = "an escaped NUL";
				return -1;
			default:
				*why_r = "a bad escape";
				return -1;
			}
		}
		line[w++] = ch;
	}
	return 0;
}

static bool
printable(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

int
doveadm_parse_line(char *line, size_t len, bool in_output,
    struct doveadm_line *l, const char **why_r)
{
	l->kind = DOVEADM_LINE_ROW;
	l->major = l->minor = 0;
	l->exit_code = -1;
	l->reason = "";
	l->n_fields = 0;
	if (len > DOVEADM_LINE_MAX) {
		*why_r = "a line too long";
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		*why_r = "a NUL byte";
		return -1;
	}
	/* The server escapes CR and LF in fields; a raw CR is a CRLF peer,
	 * a raw LF a caller that did not split lines. */
	if (memchr(line, '\r', len) != NULL) {
		*why_r = "a CR byte";
		return -1;
	}
	if (memchr(line, '\n', len) != NULL) {
		*why_r = "an LF byte";
		return -1;
	}
	if (len == 1 && line[0] == '+') {
		l->kind = DOVEADM_LINE_OK;
		return 0;
	}
	if (!in_output) {
		if (len == 1 && line[0] == '-') {
			l->kind = DOVEADM_LINE_FAIL;
			return 0;
		}
		if (len > 8 && memcmp(line, "VERSION\t", 8) == 0) {
			if (parse_version(line, len, l) == 0)
				return 0;
			*why_r = "not a doveadm-client 1.x VERSION line";
			return -1;
		}
		*why_r = "an unexpected line in the handshake";
		return -1;
	}
	/* A status has no TAB: a row starting with "-" ends in one. */
	if (len > 0 && line[0] == '-' && memchr(line, '\t', len) == NULL) {
		if (!printable(line + 1, len - 1)) {
			*why_r = "a control character in the status";
			return -1;
		}
		l->kind = DOVEADM_LINE_FAIL;
		l->exit_code = exit_code_of(line + 1, len - 1);
		/* Moved down one byte to end it without writing past len. */
		memmove(line, line + 1, len - 1);
		line[len - 1] = '\0';
		l->reason = line;
		return 0;
	}
	return parse_row(line, len, l, why_r);
}

static bool
needs_escape(char ch)
{
	return ch == DOVEADM_ESC || ch == '\t' || ch == '\r' || ch == '\n';
}

static size_t
escaped_len(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += needs_escape(*s) ? 2 : 1;
	return n;
}

int
doveadm_escape(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *s != '\0'; s++) {
		char ch = *s;

		if (needs_escape(ch)) {
			if (o + 2 >= outlen)
				return -1;
			out[o++] = DOVEADM_ESC;
			out[o++] = ch == DOVEADM_ESC ? '1' : ch == '\t' ? 't' :
			    ch == '\r' ? 'r' : 'n';
		} else {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = ch;
		}
	}
	if (o >= outlen)
		return -1;
	out[o] = '\0';
	return (int)o;
}

/* ---- the client ---------------------------------------------------- */

enum dv_state {
	DV_CONNECTING,
	DV_GREETING,	/* waiting for "-" or "+" */
	DV_AUTH,	/* PLAIN sent, waiting for "+" */
	DV_OUTPUT,	/* the command sent: fields until the LF */
	DV_STATUS,	/* waiting for "+" or "-..." */
	DV_ENDED,	/* result known: done runs from the loop */
	DV_CANCELLED,	/* dropped: freed from the loop, no callback */
};

struct doveadm_cmd {
	struct event_base *base;
	enum dv_state state;
	struct bufferevent *bev;
	struct event *timer;		/* the whole command; NULL: no limit */
	struct event *kick;		/* done and free, from the loop */
	uint64_t timeout_ms;
	uint64_t started_ms;
	char addr[DOVEADM_ADDR_MAX];	/* for messages */
	char *user;
	char *what;			/* argv[0], for messages */
	char *password;			/* NULL once sent */
	size_t password_len;
	char *request;			/* the command line, escaped */
	size_t request_len;
	size_t row_fields;		/* 0: the whole output is one row */
	size_t scanned;			/* output bytes of this row looked at */
	size_t tabs;			/* TABs among them */
	bool version_seen;
	bool in_cb;			/* inside row or done */
	doveadm_row_cb row;
	doveadm_done_cb done;
	void *arg;
	struct doveadm_result result;
	char error[DOVEADM_ERROR_MAX];
};

static const char *
state_name(enum dv_state s)
{
	switch (s) {
	case DV_CONNECTING:
		return "connect";
	case DV_GREETING:
		return "greeting";
	case DV_AUTH:
		return "password check";
	case DV_OUTPUT:
		return "output";
	case DV_STATUS:
		return "status";
	case DV_ENDED:
		return "ended";
	case DV_CANCELLED:
		return "cancelled";
	}
	return "?";
}

const char *
doveadm_status_name(enum doveadm_status s)
{
	switch (s) {
	case DOVEADM_OK:
		return "ok";
	case DOVEADM_FAILED:
		return "failed";
	case DOVEADM_NOUSER:
		return "nouser";
	case DOVEADM_AUTH:
		return "auth";
	case DOVEADM_UNREACHABLE:
		return "unreachable";
	case DOVEADM_TIMEOUT:
		return "timeout";
	case DOVEADM_PROTOCOL:
		return "protocol";
	}
	return "?";
}

static void
wipe_password(struct doveadm_cmd *c)
{
	if (c->password == NULL)
		return;
	mm_wipe(c->password, c->password_len);
	free(c->password);
	c->password = NULL;
	c->password_len = 0;
}

static void
really_free(struct doveadm_cmd *c)
{
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->kick != NULL)
		event_free(c->kick);
	wipe_password(c);
	free(c->request);
	free(c->user);
	free(c->what);
	free(c);
}

/* The one place the state changes. An end stops the I/O and the timer;
 * what follows (done, free) runs from the loop, never from the caller's
 * stack. */
static void
enter_state(struct doveadm_cmd *c, enum dv_state s)
{
	c->state = s;
	if (s != DV_ENDED && s != DV_CANCELLED)
		return;
	if (c->timer != NULL)
		evtimer_del(c->timer);
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	wipe_password(c);
	event_active(c->kick, EV_TIMEOUT, 0);
}

static void
end_with(struct doveadm_cmd *c, enum doveadm_status st, int exit_code)
{
	c->result.status = st;
	c->result.exit_code = st == DOVEADM_FAILED || st == DOVEADM_NOUSER ?
	    exit_code : -1;
	c->result.error = c->error;
	enter_state(c, DV_ENDED);
}

/* Ends the command with "doveadm at ADDR: " and the text. */
static void __attribute__((format(printf, 4, 5)))
finish(struct doveadm_cmd *c, enum doveadm_status st, int exit_code,
    const char *fmt, ...)
{
	va_list ap;
	int n;

	if (c->state == DV_ENDED || c->state == DV_CANCELLED)
		return;
	n = snprintf(c->error, sizeof(c->error), "doveadm at %s: ", c->addr);
	if (n < 0 || (size_t)n >= sizeof(c->error))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(c->error + n, sizeof(c->error) - (size_t)n, fmt, ap);
	va_end(ap);
	end_with(c, st, exit_code);
}

/* strerror text starting in lower case, to follow "doveadm at X: ". */
static void
errno_text(int e, char *out, size_t outlen)
{
	mm_strlcpy(out, e != 0 ? evutil_socket_error_to_string(e) :
	    "connection failed", outlen);
	if (out[0] >= 'A' && out[0] <= 'Z')
		out[0] = (char)(out[0] - 'A' + 'a');
}

static void
log_end(struct doveadm_cmd *c)
{
	char u[DOVEADM_LOG_FIELD], w[DOVEADM_LOG_FIELD];
	unsigned long long ms =
	    (unsigned long long)(mm_now_ms() - c->started_ms);

	mm_log_escape(c->user, u, sizeof(u));
	mm_log_escape(c->what, w, sizeof(w));
	if (c->result.status == DOVEADM_OK)
		log_debug("- doveadm ok addr=%s cmd=%s user=%s ms=%llu",
		    c->addr, w, u, ms);
	else
		log_info("- doveadm %s addr=%s cmd=%s user=%s exit=%d ms=%llu "
		    "reason=\"%s\"", doveadm_status_name(c->result.status),
		    c->addr, w, u, c->result.exit_code, ms, c->error);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct doveadm_cmd *c = arg;

	if (c->state == DV_ENDED) {
		log_end(c);
		if (c->done != NULL) {
			c->in_cb = true;
			c->done(c->arg, &c->result);
		}
	}
	really_free(c);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct doveadm_cmd *c = arg;

	finish(c, DOVEADM_TIMEOUT, -1, "timed out after %llu ms (%s)",
	    (unsigned long long)c->timeout_ms, state_name(c->state));
}

/* The PLAIN line goes out by reference and is wiped once sent (or
 * dropped), so that no copy of the secret stays in freed memory. */
static void
wipe_cleanup(const void *data, size_t len, void *extra)
{
	mm_wipe((void *)(uintptr_t)data, len);
	free((void *)(uintptr_t)data);
}

static int
send_plain(struct doveadm_cmd *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t bin_len = DOVEADM_PLAIN_ID_LEN + c->password_len;
	size_t b64_max = sodium_base64_ENCODED_LEN(bin_len,
	    sodium_base64_VARIANT_ORIGINAL);
	unsigned char *bin = xmalloc(bin_len);
	char *line = xmalloc(6 + b64_max + 1);
	size_t n;

	memcpy(bin, DOVEADM_PLAIN_ID, DOVEADM_PLAIN_ID_LEN);
	memcpy(bin + DOVEADM_PLAIN_ID_LEN, c->password, c->password_len);
	memcpy(line, "PLAIN\t", 6);
	sodium_bin2base64(line + 6, b64_max, bin, bin_len,
	    sodium_base64_VARIANT_ORIGINAL);
	mm_wipe(bin, bin_len);
	free(bin);
	wipe_password(c);
	n = 6 + strlen(line + 6);
	line[n++] = '\n';
	if (evbuffer_add_reference(out, line, n, wipe_cleanup, NULL) != 0) {
		wipe_cleanup(line, 6 + b64_max + 1, NULL);
		return -1;
	}
	return 0;
}

static int
send_command(struct doveadm_cmd *c)
{
	if (bufferevent_write(c->bev, c->request, c->request_len) != 0)
		return -1;
	c->scanned = 0;
	c->tabs = 0;
	enter_state(c, DV_OUTPUT);
	return 0;
}

/* A handshake or status line. 1: go on, 0: need more, -1: ended. */
static int
handle_line(struct doveadm_cmd *c, struct evbuffer *in)
{
	struct doveadm_line l;
	struct evbuffer_ptr eol;
	size_t eol_len = 0, len = 0;
	const char *why = NULL;
	char *line;
	int rc = 1;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if ((eol.pos < 0 && evbuffer_get_length(in) > DOVEADM_LINE_MAX) ||
	    eol.pos > DOVEADM_LINE_MAX) {
		finish(c, DOVEADM_PROTOCOL, -1, "a line over %d bytes",
		    DOVEADM_LINE_MAX);
		return -1;
	}
	if (eol.pos < 0)
		return 0;
	if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF)) == NULL)
		return 0;
	if (doveadm_parse_line(line, len, c->state == DV_STATUS, &l,
	    &why) != 0) {
		finish(c, DOVEADM_PROTOCOL, -1, "unreadable %s: %s",
		    state_name(c->state), why);
		rc = -1;
		goto done;
	}
	if (l.kind == DOVEADM_LINE_VERSION) {
		/* Before or after the "-" / "+", as servers differ. */
		if (c->version_seen) {
			finish(c, DOVEADM_PROTOCOL, -1, "a second VERSION");
			rc = -1;
		}
		c->version_seen = true;
		goto done;
	}
	switch (c->state) {
	case DV_GREETING:
		if (l.kind == DOVEADM_LINE_OK) {
			if (send_command(c) != 0)
				goto nomem;
		} else if (c->password == NULL) {
			finish(c, DOVEADM_AUTH, -1,
			    "wants a password and none is set");
			rc = -1;
		} else {
			if (send_plain(c) != 0)
				goto nomem;
			enter_state(c, DV_AUTH);
		}
		break;
	case DV_AUTH:
		if (l.kind == DOVEADM_LINE_OK) {
			if (send_command(c) != 0)
				goto nomem;
		} else {
			finish(c, DOVEADM_AUTH, -1, "refused the password");
			rc = -1;
		}
		break;
	case DV_STATUS:
		rc = -1;
		if (l.kind == DOVEADM_LINE_OK)
			finish(c, DOVEADM_OK, 0, "%s: ok", c->what);
		else if (l.kind == DOVEADM_LINE_FAIL && l.reason[0] == '\0')
			finish(c, DOVEADM_FAILED, -1,
			    "%s failed (no reason given)", c->what);
		else if (l.kind == DOVEADM_LINE_FAIL)
			finish(c, l.exit_code == 67 ? DOVEADM_NOUSER :
			    DOVEADM_FAILED, l.exit_code,
			    "%s failed: %s (exit code %d)", c->what, l.reason,
			    l.exit_code);
		else
			finish(c, DOVEADM_PROTOCOL, -1,
			    "more output after its end");
		break;
	default:
		break;
	}
	goto done;
nomem:
	finish(c, DOVEADM_UNREACHABLE, -1, "cannot queue output");
	rc = -1;
done:
	free(line);
	return rc;
}

/* Parses and hands over len bytes of output. 1, or -1 when ended. */
static int
deliver_row(struct doveadm_cmd *c, char *p, size_t len)
{
	struct doveadm_line l;
	const char *why = NULL;
	bool keep;

	if (doveadm_parse_line(p, len, true, &l, &why) != 0) {
		finish(c, DOVEADM_PROTOCOL, -1, "unreadable output: %s", why);
		return -1;
	}
	if (l.kind != DOVEADM_LINE_ROW) {
		finish(c, DOVEADM_PROTOCOL, -1, "a status where output was "
		    "expected");
		return -1;
	}
	if (c->row == NULL || l.n_fields == 0)
		return 1;
	c->in_cb = true;
	keep = c->row(c->arg, l.n_fields, l.fields);
	c->in_cb = false;
	if (c->state == DV_CANCELLED)
		return -1;
	if (!keep) {
		mm_strlcpy(c->error, "stopped by the caller", sizeof(c->error));
		end_with(c, DOVEADM_PROTOCOL, -1);
		return -1;
	}
	return 1;
}

/* Output: fields until the LF, cut into rows of row_fields fields (the
 * server does not mark rows). Looks at each byte once however the row
 * arrives. 1: go on, 0: need more, -1: ended. */
static int
handle_output(struct doveadm_cmd *c, struct evbuffer *in)
{
	struct evbuffer_iovec v[DOVEADM_IOV];
	struct evbuffer_ptr ptr;
	size_t len = evbuffer_get_length(in), end = 0;
	bool found = false, lf = false;
	unsigned char *p;
	int n, i;

	while (!found && c->scanned < len) {
		if (evbuffer_ptr_set(in, &ptr, c->scanned,
		    EVBUFFER_PTR_SET) != 0)
			break;
		n = evbuffer_peek(in, (ev_ssize_t)(len - c->scanned), &ptr, v,
		    DOVEADM_IOV);
		if (n <= 0)
			break;
		if (n > DOVEADM_IOV)
			n = DOVEADM_IOV;
		for (i = 0; i < n && !found; i++) {
			const char *b = v[i].iov_base;
			size_t k;

			for (k = 0; k < v[i].iov_len && !found; k++) {
				if (b[k] == '\n') {
					found = lf = true;
					end = c->scanned;
					break;
				}
				if (c->scanned >= DOVEADM_LINE_MAX) {
					finish(c, DOVEADM_PROTOCOL, -1,
					    "an output row over %d bytes",
					    DOVEADM_LINE_MAX);
					return -1;
				}
				c->scanned++;
				if (b[k] == '\t' && c->row_fields > 0 &&
				    ++c->tabs == c->row_fields) {
					found = true;
					end = c->scanned;
				}
			}
		}
	}
	if (!found)
		return 0;
	if (lf && end > 0 && c->row_fields > 0) {
		finish(c, DOVEADM_PROTOCOL, -1, "output ends inside a row");
		return -1;
	}
	if (end > 0) {
		if ((p = evbuffer_pullup(in, (ev_ssize_t)end)) == NULL) {
			finish(c, DOVEADM_PROTOCOL, -1, "cannot hold a row");
			return -1;
		}
		if (deliver_row(c, (char *)p, end) < 0)
			return -1;
	}
	evbuffer_drain(in, end + (lf ? 1 : 0));
	c->scanned = 0;
	c->tabs = 0;
	if (lf)
		enter_state(c, DV_STATUS);
	return 1;
}

static void
process(struct doveadm_cmd *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	int r;

	do {
		switch (c->state) {
		case DV_GREETING:
		case DV_AUTH:
		case DV_STATUS:
			r = handle_line(c, in);
			break;
		case DV_OUTPUT:
			r = handle_output(c, in);
			break;
		default:
			return;
		}
	} while (r > 0);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	process(arg);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct doveadm_cmd *c = arg;
	char why[DOVEADM_ERROR_MAX / 2];
	int e = EVUTIL_SOCKET_ERROR();
	int one = 1;

	if (c->state == DV_ENDED || c->state == DV_CANCELLED)
		return;
	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof(one));
		enter_state(c, DV_GREETING);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* What came before the end is read first. */
		process(c);
		if (c->state == DV_GREETING || c->state == DV_AUTH)
			finish(c, DOVEADM_UNREACHABLE, -1, "closed the "
			    "connection during the handshake");
		else
			finish(c, DOVEADM_UNREACHABLE, -1, "closed the "
			    "connection before the status");
		return;
	}
	errno_text(e, why, sizeof(why));
	if (c->state == DV_CONNECTING)
		finish(c, DOVEADM_UNREACHABLE, -1, "%s", why);
	else
		finish(c, DOVEADM_UNREACHABLE, -1, "connection error: %s",
		    why);
}

/* The escaped command line: "\tUSER\tARGV0\t...\n". */
static void
build_request(struct doveadm_cmd *c, const char *user,
    const char *const *argv, size_t argc)
{
	size_t i, len = 2 + escaped_len(user), o = 0;
	int n;

	for (i = 0; i < argc; i++)
		len += 1 + escaped_len(argv[i]);
	c->request = xmalloc(len + 1);
	c->request[o++] = '\t';
	n = doveadm_escape(user, c->request + o, len + 1 - o);
	o += (size_t)n;
	for (i = 0; i < argc; i++) {
		c->request[o++] = '\t';
		n = doveadm_escape(argv[i], c->request + o, len + 1 - o);
		o += (size_t)n;
	}
	c->request[o++] = '\n';
	c->request_len = o;
}

static int
check_args(const char *host, uint16_t port, const char *password,
    const char *user, const char *const *argv, size_t argc,
    const char **why_r)
{
	size_t i;

	if (host == NULL || host[0] == '\0' || port == 0 ||
	    strlen(host) > DOVEADM_ADDR_MAX - 16) {
		*why_r = "no usable address";
		return -1;
	}
	if (user == NULL || user[0] == '\0') {
		*why_r = "no user";
		return -1;
	}
	if (strlen(user) > DOVEADM_ARG_MAX) {
		*why_r = "user name too long";
		return -1;
	}
	if (password != NULL && strlen(password) > DOVEADM_ARG_MAX) {
		*why_r = "password too long";
		return -1;
	}
	if (argc == 0 || argv == NULL || argv[0] == NULL ||
	    argv[0][0] == '\0') {
		*why_r = "no command";
		return -1;
	}
	if (argc > DOVEADM_ARGS_MAX) {
		*why_r = "too many arguments";
		return -1;
	}
	for (i = 0; i < argc; i++) {
		if (argv[i] == NULL) {
			*why_r = "an argument missing";
			return -1;
		}
		if (strlen(argv[i]) > DOVEADM_ARG_MAX) {
			*why_r = "an argument too long";
			return -1;
		}
	}
	return 0;
}

/* Resolves and starts connecting; a failure ends c (reported later). */
static void
start(struct doveadm_cmd *c, const char *host, uint16_t port)
{
	struct addrinfo hints, *res = NULL;
	char portstr[8];
	int gai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_NUMERICHOST;
	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	gai = getaddrinfo(host, portstr, &hints, &res);
	if (gai == EAI_NONAME) {
		hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
		gai = getaddrinfo(host, portstr, &hints, &res);
	}
	if (gai != 0 || res == NULL) {
		finish(c, DOVEADM_UNREACHABLE, -1, "cannot resolve: %s",
		    gai_strerror(gai));
		return;
	}
	c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		freeaddrinfo(res);
		finish(c, DOVEADM_UNREACHABLE, -1, "cannot make a socket");
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* Sent once connected. */
	if (bufferevent_write(c->bev, DOVEADM_HELLO,
	    sizeof(DOVEADM_HELLO) - 1) != 0) {
		freeaddrinfo(res);
		finish(c, DOVEADM_UNREACHABLE, -1, "cannot queue output");
		return;
	}
	/* A failure here may also have reached event_cb, which only
	 * records it: done still runs from the loop. */
	if (bufferevent_socket_connect(c->bev, res->ai_addr,
	    (int)res->ai_addrlen) != 0) {
		char why[DOVEADM_ERROR_MAX / 2];

		errno_text(EVUTIL_SOCKET_ERROR(), why, sizeof(why));
		finish(c, DOVEADM_UNREACHABLE, -1, "%s", why);
	}
	freeaddrinfo(res);
}

struct doveadm_cmd *
doveadm_run(struct event_base *base, const char *host, uint16_t port,
    const char *password, const char *user, const char *const *argv,
    size_t argc, uint64_t timeout_ms, doveadm_row_cb row,
    doveadm_done_cb done, void *arg, const char **why_r)
{
	struct doveadm_cmd *c;
	char u[DOVEADM_LOG_FIELD], w[DOVEADM_LOG_FIELD];

	if (check_args(host, port, password, user, argv, argc, why_r) != 0)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->state = DV_CONNECTING;
	c->started_ms = mm_now_ms();
	c->timeout_ms = timeout_ms;
	c->row = row;
	c->done = done;
	c->arg = arg;
	c->user = xstrdup(user);
	c->what = xstrdup(argv[0]);
	if (password != NULL) {
		c->password = xstrdup(password);
		c->password_len = strlen(password);
	}
	snprintf(c->addr, sizeof(c->addr), strchr(host, ':') != NULL ?
	    "[%s]:%u" : "%s:%u", host, (unsigned)port);
	c->result.status = DOVEADM_PROTOCOL;
	c->result.exit_code = -1;
	c->result.error = c->error;
	build_request(c, user, argv, argc);
	c->kick = event_new(base, -1, 0, kick_cb, c);
	if (c->kick == NULL)
		fatalx("event_new failed");
	if (timeout_ms > 0) {
		struct timeval tv = { (time_t)(timeout_ms / 1000),
			(suseconds_t)((timeout_ms % 1000) * 1000) };

		if ((c->timer = evtimer_new(base, timer_cb, c)) == NULL)
			fatalx("evtimer_new failed");
		evtimer_add(c->timer, &tv);
	}
	log_debug("- doveadm start addr=%s cmd=%s user=%s", c->addr,
	    mm_log_escape(c->what, w, sizeof(w)),
	    mm_log_escape(c->user, u, sizeof(u)));
	start(c, host, port);
	return c;
}

int
doveadm_set_row_fields(struct doveadm_cmd *c, size_t n)
{
	if (n > DOVEADM_FIELDS_MAX)
		return -1;
	c->row_fields = n;
	return 0;
}

void
doveadm_cancel(struct doveadm_cmd *c)
{
	char u[DOVEADM_LOG_FIELD], w[DOVEADM_LOG_FIELD];

	if (c == NULL || c->state == DV_CANCELLED)
		return;
	log_debug("- doveadm cancel addr=%s cmd=%s user=%s state=%s", c->addr,
	    mm_log_escape(c->what, w, sizeof(w)),
	    mm_log_escape(c->user, u, sizeof(u)), state_name(c->state));
	if (c->in_cb) {
		/* Our callback chain is on the stack: free from the loop. */
		enter_state(c, DV_CANCELLED);
		return;
	}
	really_free(c);
}
