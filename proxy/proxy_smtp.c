/* SMTP front end (RFC 5321, 3207, 1870, 6152, 2920): take mail for any
 * user and hand it to the back end that holds the mailbox, by LMTP or
 * SMTP, here or at the owner site, without ever holding it. The sender
 * hears 250 only once the back end has taken the message.
 *
 * One back end per transaction: the first accepted recipient picks it;
 * a recipient elsewhere gets 452 4.5.3 and is sent again in a new
 * transaction (RFC 5321 3.3). The back-end connection opens at that first
 * RCPT (MAIL is answered locally and replayed), stays open between
 * transactions, and the message streams through with its terminator
 * found here, so nothing the back end reads as the end can differ from
 * what we read as the end. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "mm_metrics.h"
#include "mm_log.h"
#include "mm_util.h"
#include "proxy_int.h"
#include "smtp_parse.h"

#define EXP_MAX 8			/* back-end replies awaited at once */
#define REPLY_KEEP 1024			/* bytes of a back-end reply passed on */
#define HELO_KEEP 64			/* bytes of the client's HELO name kept */
#define CLIENT_OUT_MAX (64 * 1024)	/* replies queued before we stop reading */
#define ROUTE_KEY_MAX (DIR_HOST_MAX + 80)
#define DATA_READ_MAX (256 * 1024)	/* bytes per read while a message streams */
/* Recipients deferred with 452 in one transaction (past the recipient
 * limit, or at another server) before each further one counts as an
 * error: a client that honours 452 stops long before (Postfix's
 * smtpd_recipient_overshoot_limit). */
#define DEFERRED_RCPT_MAX 1000

/* What a back-end reply answers, oldest first. */
enum expect {
	EXP_GREETING, EXP_HELO, EXP_STARTTLS, EXP_XCLIENT, EXP_MAIL,
	EXP_RCPT, EXP_DATA, EXP_DOT, EXP_RSET,
};

/* The client command that waits for the back end. */
enum wait_for { W_NONE, W_RCPT, W_DATA, W_DOT, W_RSET };

enum data_fail {
	DF_NONE, DF_BARE_LF, DF_NUL, DF_SIZE, DF_BACKEND,
	DF_REFUSED,		/* the back end refused DATA: data_reply */
};

/* XCLIENT attributes the back end named. */
#define XC_ADDR 1u
#define XC_PORT 2u
#define XC_HELO 4u

/* What a back end offered, kept with its connection while it is parked
 * between sessions. */
struct be_notes {
	bool pipelining, size, eightbit, starttls, tls_done;
	unsigned xclient;
};

struct reply_buf {
	char text[REPLY_KEEP];
	size_t len;
	size_t last_off;		/* start of the last kept line */
	bool cut;			/* lines were left out */
	unsigned code;
};

struct smtp_state {
	/* the client */
	bool helo, esmtp;
	char helo_name[HELO_KEEP + 1];
	bool mail;			/* MAIL accepted */
	char from[SMTP_PATH_MAX + 1];
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	unsigned n_rcpt;		/* recipients accepted in this transaction */
	unsigned n_deferred;		/* recipients answered 452 in it */
	char rcpt[SMTP_PATH_MAX + 1];	/* the recipient in flight */
	char first_rcpt[SMTP_PATH_MAX + 1];
	bool data;			/* the message is streaming */
	struct smtp_data scan;
	enum data_fail fail;
	/* The client gets 354 at once; what it sends waits in held until
	 * the back end's own 354 (never sent ahead of it: a back end that
	 * refused DATA would read the message as commands). */
	bool hold;
	bool verdict_pending;		/* the message ended during the hold */
	struct evbuffer *held;
	struct reply_buf data_reply;
	bool skipping;			/* discarding an overlong line */
	bool want_tls;
	bool in_paused;			/* back end full: client read stopped */
	bool out_paused;		/* client not reading its replies */
	enum wait_for wait;
	uint64_t data_start_ms;

	/* the back end */
	char be_key[ROUTE_KEY_MAX];	/* which one s->bbev reaches */
	struct be_notes be;		/* what it offered; parked with it */
	bool be_xclient_done;
	bool be_txn;			/* it accepted MAIL */
	bool be_broken;			/* lost after taking recipients */
	bool rcpt_sent;
	unsigned be_rcpts;		/* recipients it accepted */
	enum expect exp[EXP_MAX];
	unsigned n_exp;
	bool mail_refused;
	struct reply_buf reply;		/* the reply being read */
	struct reply_buf mail_reply;	/* a refused MAIL, for the RCPT */
	/* end of data: LMTP answers once per recipient */
	unsigned dot_left, dot_ok, dot_temp, dot_perm;
	struct reply_buf ok_reply, temp_reply, perm_reply;
};

static char hostname[256];

static const char *
my_name(const struct session *s)
{
	const struct mm_config *conf = session_conf(s);

	if (conf->hostname != NULL)
		return conf->hostname;
	if (hostname[0] == '\0' &&
	    (gethostname(hostname, sizeof(hostname) - 1) != 0 ||
	    hostname[0] == '\0'))
		mm_strlcpy(hostname, "localhost", sizeof(hostname));
	return hostname;
}

static struct smtp_state *
state(struct session *s)
{
	if (s->pstate == NULL)
		s->pstate = xcalloc(1, sizeof(struct smtp_state));
	return s->pstate;
}

/* Called by the proxy on close and by STARTTLS (RFC 3207 4.2: forget
 * everything); the back end goes too, so no state outlives its owner. */
static void
smtp_free_state(struct session *s)
{
	struct smtp_state *st = s->pstate;

	if (st != NULL) {
		session_backend_close(s);
		if (st->held != NULL)
			evbuffer_free(st->held);
		free(st);
		s->pstate = NULL;
	}
}

static void
reply_reset(struct reply_buf *r)
{
	r->len = r->last_off = 0;
	r->cut = false;
	r->code = 0;
}

/* Appends one reply line, keeping at most REPLY_KEEP bytes of whole
 * lines. */
static void
reply_add(struct reply_buf *r, const char *line, size_t len)
{
	if (r->cut || r->len + len + 2 > sizeof(r->text)) {
		r->cut = true;
		return;
	}
	r->last_off = r->len;
	memcpy(r->text + r->len, line, len);
	r->len += len;
	memcpy(r->text + r->len, "\r\n", 2);
	r->len += 2;
}

/* Whatever was cut, the kept text ends in a final line. */
static void
reply_finish(struct reply_buf *r)
{
	if (r->len >= 4 && r->text[r->last_off + 3] == '-')
		r->text[r->last_off + 3] = ' ';
}

static void
reply_copy(struct reply_buf *dst, const struct reply_buf *src)
{
	memcpy(dst, src, sizeof(*dst));
}

static void
send_reply(struct session *s, const struct reply_buf *r)
{
	session_write(s, r->text, r->len);
}

/* The last line of a reply, without CRLF, for the log. */
static const char *
reply_line(const struct reply_buf *r, char *buf, size_t len)
{
	size_t n = r->len >= r->last_off + 2 ? r->len - r->last_off - 2 : 0;

	if (n >= len)
		n = len - 1;
	memcpy(buf, r->text + r->last_off, n);
	buf[n] = '\0';
	return buf;
}

/* ---- transactions --------------------------------------------------- */

static void start_data(struct session *s, bool hold);

static void
txn_reset(struct smtp_state *st)
{
	st->mail = false;
	st->from[0] = st->rcpt[0] = st->first_rcpt[0] = '\0';
	st->has_size = false;
	st->size = 0;
	st->body = SMTP_BODY_NONE;
	st->n_rcpt = 0;
	st->n_deferred = 0;
	st->data = false;
	st->fail = DF_NONE;
	st->be_broken = false;
	st->mail_refused = false;
	st->hold = st->verdict_pending = false;
	if (st->held != NULL)
		evbuffer_drain(st->held, evbuffer_get_length(st->held));
}

/* Forgets the back-end connection (closed by the caller or the proxy). */
static void
backend_forget(struct smtp_state *st)
{
	st->be_key[0] = '\0';
	st->be_txn = false;
	st->be_rcpts = 0;
	st->n_exp = 0;
	st->rcpt_sent = false;
	st->mail_refused = false;
	reply_reset(&st->reply);
	st->hold = false;
	if (st->held != NULL)
		evbuffer_drain(st->held, evbuffer_get_length(st->held));
}

static void
backend_drop(struct session *s)
{
	session_backend_close(s);
	backend_forget(state(s));
}

static void
expect(struct session *s, enum expect e)
{
	struct smtp_state *st = state(s);

	if (st->n_exp < EXP_MAX)
		st->exp[st->n_exp++] = e;
}

static void
log_message(struct session *s, const char *result, const char *reply)
{
	struct smtp_state *st = state(s);
	char from[2 * SMTP_PATH_MAX + 4], rcpt[2 * SMTP_PATH_MAX + 4];
	char text[2 * REPLY_KEEP];

	mm_metrics_count(session_metrics(s), MM_METRICS_MESSAGE, MM_PROTO_SMTP,
	    result);
	log_info("%s smtp message from=<%s> rcpt=<%s> rcpts=%u size=%llu "
	    "backend=%s result=%s duration_ms=%llu reply=\"%s\"", s->sid,
	    mm_log_escape(st->from, from, sizeof(from)),
	    mm_log_escape(st->first_rcpt, rcpt, sizeof(rcpt)), st->n_rcpt,
	    (unsigned long long)st->scan.bytes,
	    s->route.backend != NULL ? s->route.backend->name : "-", result,
	    (unsigned long long)(mm_now_ms() - st->data_start_ms),
	    mm_log_escape(reply, text, sizeof(text)));
}

/* ---- the client side ------------------------------------------------ */

static void
smtp_greet(struct session *s)
{
	session_printf(s, "220 %s ESMTP MailMesh\r\n", my_name(s));
}

static void
smtp_bye(struct session *s, const char *text)
{
	session_printf(s, "421 4.7.0 %s %s\r\n", my_name(s), text);
}

/* A command failed (a 5xx reply went out): past the session's budget of
 * failed commands the session ends (Postfix's smtpd_hard_error_limit).
 * Only failures count, so a sender that sends many messages, or many
 * recipients, never runs out. */
static void
count_error(struct session *s)
{
	if (++s->n_errors <= session_conf(s)->limits.smtp_error_max)
		return;
	smtp_bye(s, "Too many errors.");
	session_close(s, "error-limit");
}

/* Writes one reply line from fmt and ap. */
static void
vreply(struct session *s, const char *fmt, va_list ap)
{
	char buf[SMTP_PATH_MAX + 256];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	session_printf(s, "%s\r\n", buf);
}

static void fail(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void defer_rcpt(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Replies to a command that failed, and counts it. */
static void
fail(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	count_error(s);
}

/* Defers a recipient with a 452 reply: not a failure, unless the client
 * goes on far beyond it. */
static void
defer_rcpt(struct session *s, const char *fmt, ...)
{
	struct smtp_state *st = state(s);
	va_list ap;

	va_start(ap, fmt);
	vreply(s, fmt, ap);
	va_end(ap);
	if (++st->n_deferred > DEFERRED_RCPT_MAX)
		count_error(s);
}

/* The back end's reply to a command of the client, passed on. */
static void
pass_reply(struct session *s, const struct reply_buf *r)
{
	send_reply(s, r);
	if (r->code / 100 == 5)
		count_error(s);
}

/* The wait for the back end is over: read the client's next command. */
static void
end_wait(struct session *s)
{
	struct smtp_state *st = state(s);

	st->wait = W_NONE;
	if (s->state != S_LOGIN)
		return;
	if (!st->mail && session_draining(s)) {
		smtp_bye(s, "Server shutting down, try again later.");
		session_close(s, "shutdown");
		return;
	}
	s->state = S_PRELOGIN;
	session_resume(s);
}

static void
cmd_ehlo(struct session *s, const struct smtp_cmd *cmd)
{
	struct smtp_state *st = state(s);
	const struct mm_config *conf = session_conf(s);
	size_t i, n = cmd->arg_len < HELO_KEEP ? cmd->arg_len : HELO_KEEP;

	/* RFC 5321 4.1.4: EHLO resets any transaction. */
	if (st->be_txn)
		backend_drop(s);
	txn_reset(st);
	for (i = 0; i < n; i++) {
		char c = cmd->arg[i];

		/* Kept for Received: and XCLIENT; nothing odd goes there. */
		st->helo_name[i] = (c > ' ' && c < 127 && c != '(' &&
		    c != ')' && c != '\\') ? c : '?';
	}
	st->helo_name[n] = '\0';
	st->helo = true;
	st->esmtp = cmd->verb == SMTP_EHLO;
	if (!st->esmtp) {
		session_printf(s, "250 %s\r\n", my_name(s));
		return;
	}
	session_printf(s, "250-%s\r\n250-PIPELINING\r\n250-SIZE %llu\r\n"
	    "250-8BITMIME\r\n%s250 ENHANCEDSTATUSCODES\r\n", my_name(s),
	    (unsigned long long)conf->limits.message_max,
	    session_can_starttls(s) ? "250-STARTTLS\r\n" : "");
}

static void
cmd_mail(struct session *s, const struct smtp_cmd *cmd)
{
	struct smtp_state *st = state(s);
	const struct mm_limits *lim = &session_conf(s)->limits;

	if (!st->helo) {
		fail(s, "503 5.5.1 Send EHLO or HELO first");
		return;
	}
	if (!session_login_allowed(s)) {
		fail(s, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if (st->mail) {
		fail(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (cmd->has_size && cmd->size > lim->message_max) {
		fail(s, "552 5.3.4 Message size exceeds fixed limit of %llu "
		    "bytes",
		    (unsigned long long)lim->message_max);
		return;
	}
	txn_reset(st);
	memcpy(st->from, cmd->path, cmd->path_len);
	st->from[cmd->path_len] = '\0';
	st->has_size = cmd->has_size;
	st->size = cmd->size;
	st->body = cmd->body;
	st->mail = true;
	session_printf(s, "250 2.1.0 Ok\r\n");
}

static void
route_key(const struct dir_route *r, bool remote, char *key, size_t len)
{
	if (remote)
		snprintf(key, len, "site:%s", r->site);
	else
		snprintf(key, len, "be:%s/%s/%u", r->backend->name, r->host,
		    (unsigned)r->port);
}

static void send_xclient(struct session *s);
static void start_txn(struct session *s);

/* Parks an idle back-end connection for the next session to it. */
static void
park(struct session *s)
{
	struct smtp_state *st = state(s);

	if (s->bbev == NULL)
		return;
	if (st->n_exp > 0 || st->be_txn || st->hold || st->be_key[0] == '\0' ||
	    strncmp(st->be_key, "be:", 3) != 0) {
		backend_drop(s);
		return;
	}
	session_backend_park(s, st->be_key, &st->be, sizeof(st->be));
	backend_forget(st);
}

static void
smtp_park_backend(struct session *s)
{
	if (s->pstate != NULL)
		park(s);
}

/* Takes a parked connection to the back end of key, if there is one:
 * no connect, greeting or LHLO. */
static bool
unpark(struct session *s, const char *key, const struct dir_route *route)
{
	struct smtp_state *st = state(s);
	struct be_notes n;

	if (!session_backend_unpark(s, key, route, &n, sizeof(n)))
		return false;
	backend_forget(st);
	mm_strlcpy(st->be_key, key, sizeof(st->be_key));
	st->be = n;
	/* The address the back end has is the last session's. */
	st->be_xclient_done = false;
	if (route->backend->client_addr == MM_CADDR_ID &&
	    (st->be.xclient & XC_ADDR)) {
		st->be_xclient_done = true;
		send_xclient(s);
	} else {
		start_txn(s);
	}
	session_backend_wait(s, session_conf(s)->limits.backend_connect_ms);
	return true;
}

static void
send_rcpt(struct session *s)
{
	struct smtp_state *st = state(s);

	session_backend_printf(s, "RCPT TO:<%s>\r\n", st->rcpt);
	expect(s, EXP_RCPT);
	st->rcpt_sent = true;
}

/* MAIL as the client gave it, then the recipient: together when the back
 * end pipelines, saving a round trip per message. */
static void
start_txn(struct session *s)
{
	struct smtp_state *st = state(s);

	session_backend_printf(s, "MAIL FROM:<%s>", st->from);
	if (st->has_size && st->be.size)
		session_backend_printf(s, " SIZE=%llu",
		    (unsigned long long)st->size);
	if (st->body == SMTP_BODY_8BITMIME && st->be.eightbit)
		session_backend_printf(s, " BODY=8BITMIME");
	else if (st->body == SMTP_BODY_7BIT && st->be.eightbit)
		session_backend_printf(s, " BODY=7BIT");
	session_backend_printf(s, "\r\n");
	expect(s, EXP_MAIL);
	st->rcpt_sent = false;
	st->mail_refused = false;
	if (st->be.pipelining)
		send_rcpt(s);
}

static void
cmd_rcpt(struct session *s, const struct smtp_cmd *cmd)
{
	struct smtp_state *st = state(s);
	const struct mm_config *conf = session_conf(s);
	struct dir_route route;
	char key[ROUTE_KEY_MAX];
	enum dir_result r;

	if (!st->mail) {
		fail(s, "503 5.5.1 Need MAIL command");
		return;
	}
	if (st->n_rcpt >= conf->limits.rcpt_max) {
		defer_rcpt(s, "452 4.5.3 Too many recipients");
		return;
	}
	memcpy(st->rcpt, cmd->path, cmd->path_len);
	st->rcpt[cmd->path_len] = '\0';
	mm_strlcpy(s->user, st->rcpt, sizeof(s->user));
	r = dir_lookup(session_dir(s), st->rcpt, MM_PROTO_SMTP, &route);
	switch (r) {
	case DIR_NOTFOUND:
		fail(s, "550 5.1.1 <%s>: Recipient address rejected: User "
		    "unknown", st->rcpt);
		return;
	case DIR_FROZEN:
		session_printf(s, "450 4.2.1 <%s>: Mailbox is being moved, "
		    "try again later\r\n", st->rcpt);
		return;
	case DIR_TEMPFAIL:
		session_printf(s, "451 4.3.0 <%s>: Temporary lookup "
		    "failure, try again later\r\n", st->rcpt);
		return;
	case DIR_FOUND:
	case DIR_REMOTE:
		break;
	}
	route_key(&route, r == DIR_REMOTE, key, sizeof(key));
	if (st->n_rcpt > 0 && strcmp(key, st->be_key) != 0) {
		defer_rcpt(s, "452 4.5.3 <%s>: Recipient is on another server, "
		    "send it in a separate transaction", st->rcpt);
		return;
	}
	if (st->be_broken) {
		session_printf(s, "451 4.4.1 <%s>: Connection to the mailbox "
		    "server lost, try again later\r\n", st->rcpt);
		return;
	}
	st->wait = W_RCPT;
	if (s->bbev != NULL && st->n_exp == 0 && strcmp(key, st->be_key) == 0) {
		if (st->be_txn)
			send_rcpt(s);
		else
			start_txn(s);
		session_backend_wait(s, conf->limits.backend_connect_ms);
		return;
	}
	/* A new back end: whatever was open has no recipient of this
	 * transaction and waits for another session. */
	park(s);
	if (r == DIR_FOUND && unpark(s, key, &route))
		return;
	backend_forget(st);
	mm_strlcpy(st->be_key, key, sizeof(st->be_key));
	memset(&st->be, 0, sizeof(st->be));
	st->be_xclient_done = false;
	session_backend_open(s, &route, r == DIR_REMOTE);
}

static void
cmd_data(struct session *s)
{
	struct smtp_state *st = state(s);

	if (!st->mail) {
		fail(s, "503 5.5.1 Need MAIL command");
		return;
	}
	if (st->n_rcpt == 0) {
		fail(s, "554 5.5.1 No valid recipients");
		return;
	}
	if (st->be_broken || s->bbev == NULL || !st->be_txn) {
		session_printf(s, "451 4.4.1 Connection to the mailbox server "
		    "lost, try again later\r\n");
		txn_reset(st);
		return;
	}
	session_backend_printf(s, "DATA\r\n");
	expect(s, EXP_DATA);
	/* The message travels while the back end's 354 does: one round
	 * trip less per message. */
	start_data(s, true);
}

static void
cmd_rset(struct session *s)
{
	struct smtp_state *st = state(s);

	txn_reset(st);
	if (s->bbev != NULL && st->be_txn && st->n_exp == 0) {
		session_backend_printf(s, "RSET\r\n");
		expect(s, EXP_RSET);
		st->wait = W_RSET;
		session_backend_wait(s,
		    session_conf(s)->limits.backend_connect_ms);
		return;
	}
	session_printf(s, "250 2.0.0 Ok\r\n");
}

/* Trace header (RFC 5321 4.4), ahead of the client's bytes. */
static void
send_received(struct session *s, struct evbuffer *out)
{
	struct smtp_state *st = state(s);
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	bool v6 = strchr(s->caddr_str, ':') != NULL;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	evbuffer_add_printf(out, "Received: from %s ([%s%s])\r\n"
	    "\tby %s (MailMesh) with %s%s id %s", st->helo_name,
	    v6 ? "IPv6:" : "", s->caddr_str, my_name(s),
	    st->esmtp ? "ESMTP" : "SMTP", s->client_tls ? "S" : "", s->sid);
	if (st->n_rcpt == 1)
		evbuffer_add_printf(out, "\r\n\tfor <%s>", st->first_rcpt);
	evbuffer_add_printf(out, "; %s\r\n", date);
}

/* A message's data may take smtp-idle, plus a second for every
 * smtp-data-rate bytes that arrived (Postfix's smtpd_min_data_rate): a
 * slow sender of a big message goes on as long as it makes progress, one
 * that trickles does not. */
static void
data_deadline(struct session *s)
{
	struct smtp_state *st = state(s);
	const struct mm_limits *lim = &session_conf(s)->limits;

	s->deadline_ms = st->data_start_ms + lim->smtp_idle_ms +
	    st->scan.bytes * 1000 / lim->smtp_data_rate;
}

/* Moves message bytes from the client to the back end. true once the
 * terminator has passed. */
static bool
stream_data(struct session *s)
{
	struct smtp_state *st = state(s);
	const struct mm_limits *lim = &session_conf(s)->limits;
	struct evbuffer *in = bufferevent_get_input(s->cbev);

	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t n;
		bool done = false;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = smtp_data_scan(&st->scan, v.iov_base, v.iov_len, &done);
		if (st->fail == DF_NONE) {
			if (st->scan.flags & SMTP_DATA_NUL)
				st->fail = DF_NUL;
			else if (st->scan.flags & SMTP_DATA_BARE_LF)
				st->fail = DF_BARE_LF;
			else if (st->scan.bytes > lim->message_max)
				st->fail = DF_SIZE;
			if (st->fail != DF_NONE) {
				/* Without its terminator the back end
				 * never delivers what it got so far. */
				backend_drop(s);
			}
		}
		s->bytes_c2b += n;
		mm_metrics_bytes(session_metrics(s), MM_PROTO_SMTP, MM_METRICS_IN,
		    n);
		s->last_active_ms = mm_now_ms();
		data_deadline(s);
		if (st->fail == DF_NONE && s->bbev != NULL)
			evbuffer_remove_buffer(in, st->hold ? st->held :
			    bufferevent_get_output(s->bbev), n);
		else
			evbuffer_drain(in, n);
		if (done)
			return true;
	}
	if (st->fail == DF_NONE && s->bbev != NULL && evbuffer_get_length(
	    st->hold ? st->held : bufferevent_get_output(s->bbev)) >=
	    lim->relay_buffer) {
		session_client_read(s, false);
		st->in_paused = true;
	}
	return false;
}

/* The whole message is with the back end: wait for its verdict. */
static void
wait_verdict(struct session *s)
{
	struct smtp_state *st = state(s);

	st->dot_left = s->route.backend->lmtp ? st->be_rcpts : 1;
	st->dot_ok = st->dot_temp = st->dot_perm = 0;
	reply_reset(&st->ok_reply);
	reply_reset(&st->temp_reply);
	reply_reset(&st->perm_reply);
	expect(s, EXP_DOT);
	st->wait = W_DOT;
	session_backend_wait(s, session_conf(s)->limits.smtp_data_ms);
}

/* The message has ended: wait for the back end's verdict, or give ours. */
static void
data_done(struct session *s)
{
	struct smtp_state *st = state(s);
	const char *text = NULL;
	char line[256];

	st->data = false;
	session_client_bulk(s, false);
	/* A message has come: the sender's time outside data starts over. */
	s->deadline_ms = mm_now_ms() +
	    session_conf(s)->limits.smtp_commands_ms;
	switch (st->fail) {
	case DF_NONE:
		if (st->hold) {
			/* Still no 354 from the back end. */
			st->verdict_pending = true;
			st->wait = W_DATA;
			session_backend_wait(s,
			    session_conf(s)->limits.backend_connect_ms);
			return;
		}
		wait_verdict(s);
		return;
	case DF_REFUSED:
		send_reply(s, &st->data_reply);
		log_message(s, "refused", reply_line(&st->data_reply, line,
		    sizeof(line)));
		txn_reset(st);
		return;
	case DF_BARE_LF:
		text = "554 5.6.0 Message contains a bare LF (line feed "
		    "without carriage return), not delivered";
		break;
	case DF_NUL:
		text = "554 5.6.0 Message contains NUL bytes, not delivered";
		break;
	case DF_SIZE:
		snprintf(line, sizeof(line), "552 5.3.4 Message size exceeds "
		    "fixed limit of %llu bytes", (unsigned long long)
		    session_conf(s)->limits.message_max);
		text = line;
		break;
	case DF_BACKEND:
		text = "451 4.4.2 Connection to the mailbox server lost "
		    "during data, not delivered, try again later";
		break;
	}
	session_printf(s, "%s\r\n", text);
	log_message(s, "refused", text);
	txn_reset(st);
}

static void
start_data(struct session *s, bool hold)
{
	struct smtp_state *st = state(s);

	if (st->held == NULL)
		st->held = evbuffer_new();
	session_printf(s, "354 End data with <CR><LF>.<CR><LF>\r\n");
	st->hold = hold;
	send_received(s, hold ? st->held : bufferevent_get_output(s->bbev));
	smtp_data_init(&st->scan);
	st->data = true;
	st->fail = DF_NONE;
	st->verdict_pending = false;
	st->data_start_ms = mm_now_ms();
	data_deadline(s);
	bufferevent_set_max_single_read(s->cbev, DATA_READ_MAX);
	bufferevent_set_max_single_write(s->bbev, DATA_READ_MAX);
	session_client_bulk(s, true);
}

/* Handles one command line; false if reading must stop. */
static bool
dispatch(struct session *s, const char *line, size_t len)
{
	struct smtp_state *st = state(s);
	struct smtp_cmd cmd;
	const char *why = NULL;
	enum smtp_parse_result r;

	r = smtp_parse_command(line, len, &cmd, &why);
	if (r != SMTP_PARSE_OK) {
		fail(s, "%s", why);
		return s->state == S_PRELOGIN;
	}
	switch (cmd.verb) {
	case SMTP_EHLO:
	case SMTP_HELO:
		cmd_ehlo(s, &cmd);
		break;
	case SMTP_MAIL:
		cmd_mail(s, &cmd);
		break;
	case SMTP_RCPT:
		cmd_rcpt(s, &cmd);
		break;
	case SMTP_DATA:
		cmd_data(s);
		break;
	case SMTP_RSET:
		cmd_rset(s);
		break;
	case SMTP_NOOP:
		session_printf(s, "250 2.0.0 Ok\r\n");
		break;
	case SMTP_QUIT:
		session_printf(s, "221 2.0.0 Bye\r\n");
		session_close(s, "quit");
		return false;
	case SMTP_STARTTLS:
		if (!session_can_starttls(s)) {
			fail(s, "502 5.5.1 STARTTLS not available");
			break;
		}
		session_printf(s, "220 2.0.0 Ready to start TLS\r\n");
		st->want_tls = true;
		return false;
	case SMTP_VRFY:
		session_printf(s, "252 2.5.0 Cannot VRFY user, but will "
		    "accept message and attempt delivery\r\n");
		break;
	case SMTP_HELP:
		session_printf(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT "
		    "DATA RSET NOOP QUIT STARTTLS VRFY HELP\r\n");
		break;
	case SMTP_AUTH:
	case SMTP_BDAT:
	case SMTP_XCLIENT:
		fail(s, "502 5.5.1 Command not implemented");
		break;
	case SMTP_UNKNOWN:
		fail(s, "500 5.5.2 Command not recognised");
		break;
	}
	return s->state == S_PRELOGIN && !st->data;
}

/* A line longer than the limit: discarded up to its end, then one
 * error. false while its end has not arrived. */
static bool
skip_long_line(struct session *s)
{
	struct smtp_state *st = state(s);
	struct evbuffer *in = bufferevent_get_input(s->cbev);
	struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);

	if (p.pos < 0) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return false;
	}
	evbuffer_drain(in, (size_t)p.pos + 1);
	st->skipping = false;
	fail(s, "500 5.5.2 Line too long");
	return s->state == S_PRELOGIN;
}

static void
smtp_client_input(struct session *s)
{
	const struct mm_limits *lim = &session_conf(s)->limits;

	while (s->state == S_PRELOGIN) {
		struct smtp_state *st = state(s);
		struct evbuffer *in = bufferevent_get_input(s->cbev);
		const char *line;
		size_t len, consumed;
		bool more;
		int rc;

		if (st->data) {
			if (st->in_paused || !stream_data(s))
				return;
			data_done(s);
			continue;
		}
		if (evbuffer_get_length(bufferevent_get_output(s->cbev)) >=
		    CLIENT_OUT_MAX) {
			/* Commands pipelined faster than the replies are
			 * read: wait for the client to catch up. */
			session_client_read(s, false);
			st->out_paused = true;
			return;
		}
		if (st->skipping) {
			if (!skip_long_line(s))
				return;
			continue;
		}
		rc = session_evbuf_line(in, lim->line_max, &line, &len,
		    &consumed);
		if (rc == 0)
			return;
		if (rc < 0) {
			st->skipping = true;
			continue;
		}
		more = dispatch(s, line, len);
		if (s->state == S_CLOSING)
			return;
		evbuffer_drain(in, consumed);
		if (st->want_tls) {
			session_starttls(s);	/* frees st */
			return;
		}
		if (!more && !st->data)
			return;
	}
}

static void
smtp_client_drained(struct session *s)
{
	struct smtp_state *st = state(s);

	if (!st->out_paused)
		return;
	st->out_paused = false;
	session_client_read(s, true);
	smtp_client_input(s);
}

/* Reading of the message stopped for a full back end (or held data): it
 * drained, or it is gone and the rest of the message is read and
 * dropped. */
static void
resume_input(struct session *s)
{
	struct smtp_state *st = state(s);

	if (!st->in_paused)
		return;
	st->in_paused = false;
	session_client_read(s, true);
	smtp_client_input(s);
}

static void
smtp_backend_drained(struct session *s)
{
	if (s->state == S_PRELOGIN)
		resume_input(s);
}

static bool
smtp_busy(const struct session *s)
{
	const struct smtp_state *st = s->pstate;

	return st != NULL && (st->mail || st->data || st->wait != W_NONE);
}

/* ---- the back-end side ---------------------------------------------- */

static void smtp_backend_lost(struct session *s, const char *reason);

/* The back end failed us: while a command waits on it, the proxy closes
 * it and the command gets its answer (smtp_login_failed); otherwise it is
 * as if it had gone away. */
static void
backend_fail(struct session *s, const char *reason)
{
	if (s->state == S_LOGIN)
		session_login_fail(s, LOGIN_FAIL_TEMP, reason);
	else
		smtp_backend_lost(s, reason);
}

static void
send_helo(struct session *s)
{
	struct smtp_state *st = state(s);

	session_backend_printf(s, "%s %s\r\n",
	    s->route.backend->lmtp ? "LHLO" : "EHLO", my_name(s));
	/* A new greeting: what the back end offers is said again (only
	 * the TLS already set up stays). */
	st->be = (struct be_notes){ .tls_done = st->be.tls_done };
	expect(s, EXP_HELO);
}

static void
smtp_backend_connected(struct session *s)
{
	const struct mm_limits *lim = &session_conf(s)->limits;

	/* The back end's drain callback fires at half the relay buffer. */
	bufferevent_setwatermark(s->bbev, EV_WRITE, lim->relay_buffer / 2, 0);
	state(s)->n_exp = 0;
	expect(s, EXP_GREETING);
}

static void
smtp_backend_tls_done(struct session *s)
{
	state(s)->be.tls_done = true;
	send_helo(s);
}

/* Notes one EHLO/LHLO keyword line of the back end. */
static void
capability(struct smtp_state *st, const char *text, size_t len)
{
	size_t n = 0;

	while (n < len && text[n] != ' ')
		n++;
	if (n == 10 && strncasecmp(text, "PIPELINING", n) == 0)
		st->be.pipelining = true;
	else if (n == 4 && strncasecmp(text, "SIZE", n) == 0)
		st->be.size = true;
	else if (n == 8 && strncasecmp(text, "8BITMIME", n) == 0)
		st->be.eightbit = true;
	else if (n == 8 && strncasecmp(text, "STARTTLS", n) == 0)
		st->be.starttls = true;
	else if (n == 7 && strncasecmp(text, "XCLIENT", n) == 0) {
		const char *p = text + n, *end = text + len;

		st->be.xclient = 0;
		while (p < end) {
			const char *w;

			while (p < end && *p == ' ')
				p++;
			w = p;
			while (p < end && *p != ' ')
				p++;
			if (p - w == 4 && strncasecmp(w, "ADDR", 4) == 0)
				st->be.xclient |= XC_ADDR;
			else if (p - w == 4 && strncasecmp(w, "PORT", 4) == 0)
				st->be.xclient |= XC_PORT;
			else if (p - w == 4 && strncasecmp(w, "HELO", 4) == 0)
				st->be.xclient |= XC_HELO;
		}
	}
}

/* The client's address for the back end (RFC-less but common: Postfix
 * and Dovecot take XCLIENT from trusted hosts). */
static void
send_xclient(struct session *s)
{
	struct smtp_state *st = state(s);
	bool v6 = strchr(s->caddr_str, ':') != NULL;

	session_backend_printf(s, "XCLIENT");
	if (st->be.xclient & XC_ADDR)
		session_backend_printf(s, " ADDR=%s%s", v6 ? "IPV6:" : "",
		    s->caddr_str);
	if (st->be.xclient & XC_PORT)
		session_backend_printf(s, " PORT=%s", s->cport_str);
	/* helo_name holds only printable bytes; xtext needs '+' and '='
	 * escaped, so a name with them is left out. */
	if ((st->be.xclient & XC_HELO) && st->helo_name[0] != '\0' &&
	    strpbrk(st->helo_name, "+=") == NULL)
		session_backend_printf(s, " HELO=%s", st->helo_name);
	session_backend_printf(s, "\r\n");
	expect(s, EXP_XCLIENT);
}

static void
after_helo(struct session *s)
{
	struct smtp_state *st = state(s);
	const struct mm_backend_conf *be = s->route.backend;

	if (be->tls == MM_TLS_STARTTLS && !st->be.tls_done) {
		if (!st->be.starttls) {
			backend_fail(s,
			    "backend-no-starttls");
			return;
		}
		session_backend_printf(s, "STARTTLS\r\n");
		expect(s, EXP_STARTTLS);
		return;
	}
	if (be->client_addr == MM_CADDR_ID && !st->be_xclient_done) {
		st->be_xclient_done = true;
		if (st->be.xclient & XC_ADDR) {
			send_xclient(s);
			return;
		}
		log_warnx("%s smtp backend-no-xclient backend=%s", s->sid,
		    be->name);
	}
	start_txn(s);
}

/* The verdict on the message from the back end's end-of-data replies:
 * one for SMTP, one per accepted recipient for LMTP. SMTP can give the
 * sender only one answer; where LMTP's differ, a temporary failure wins
 * (the sender retries, delivered recipients may see the message twice,
 * nobody loses it), then a permanent one (the sender bounces it). */
static void
dot_verdict(struct session *s)
{
	struct smtp_state *st = state(s);
	const struct reply_buf *r;
	char line[REPLY_KEEP];
	const char *result;

	if (st->dot_temp > 0) {
		r = &st->temp_reply;
		result = st->dot_ok > 0 ? "partial-tempfail" : "tempfail";
	} else if (st->dot_perm > 0) {
		r = &st->perm_reply;
		result = st->dot_ok > 0 ? "partial-refused" : "refused";
	} else {
		r = &st->ok_reply;
		result = "delivered";
	}
	if (st->dot_ok > 1 && r == &st->ok_reply)
		session_printf(s, "250 2.0.0 Ok: delivered to %u recipients"
		    "\r\n", st->dot_ok);
	else
		send_reply(s, r);
	log_message(s, result, reply_line(r, line, sizeof(line)));
}

static void
handle_reply(struct session *s, enum expect e)
{
	struct smtp_state *st = state(s);
	struct reply_buf *r = &st->reply;
	unsigned cls = r->code / 100;

	reply_finish(r);
	if (cls == 3 && e != EXP_DATA) {
		backend_fail(s, "backend-protocol");
		return;
	}
	switch (e) {
	case EXP_GREETING:
		if (r->code != 220) {
			backend_fail(s,
			    "backend-greeting");
			return;
		}
		send_helo(s);
		return;
	case EXP_HELO:
		if (cls != 2) {
			backend_fail(s,
			    "backend-helo-refused");
			return;
		}
		after_helo(s);
		return;
	case EXP_STARTTLS:
		if (r->code != 220) {
			backend_fail(s,
			    "backend-starttls-refused");
			return;
		}
		session_backend_starttls(s);
		return;
	case EXP_XCLIENT:
		if (r->code == 220) {
			/* Postfix and Dovecot greet again after XCLIENT. */
			send_helo(s);
			return;
		}
		if (cls != 2)
			log_warnx("%s smtp backend-xclient-refused backend=%s "
			    "code=%u", s->sid, s->route.backend->name,
			    r->code);
		start_txn(s);
		return;
	case EXP_MAIL:
		if (cls == 2) {
			st->be_txn = true;
			if (!st->rcpt_sent)
				send_rcpt(s);
			return;
		}
		/* The sender was refused: that is the answer to the
		 * recipient waiting on it. */
		st->mail_refused = true;
		reply_copy(&st->mail_reply, r);
		if (!st->rcpt_sent) {
			st->mail_refused = false;
			pass_reply(s, &st->mail_reply);
			end_wait(s);
		}
		return;
	case EXP_RCPT:
		if (st->mail_refused) {
			st->mail_refused = false;
			pass_reply(s, &st->mail_reply);
		} else {
			if (cls == 2) {
				st->be_rcpts++;
				if (st->n_rcpt++ == 0)
					mm_strlcpy(st->first_rcpt, st->rcpt,
					    sizeof(st->first_rcpt));
			}
			pass_reply(s, r);
		}
		end_wait(s);
		return;
	case EXP_DATA:
		st->hold = false;
		if (r->code == 354) {
			evbuffer_add_buffer(bufferevent_get_output(s->bbev),
			    st->held);
			if (st->verdict_pending)
				wait_verdict(s);
			return;
		}
		evbuffer_drain(st->held, evbuffer_get_length(st->held));
		reply_copy(&st->data_reply, r);
		/* The back end still holds the transaction: start over. */
		backend_drop(s);
		if (st->verdict_pending) {
			send_reply(s, &st->data_reply);
			txn_reset(st);
			end_wait(s);
			return;
		}
		st->fail = DF_REFUSED;
		resume_input(s);
		return;
	case EXP_DOT:
		if (cls == 2) {
			if (st->dot_ok++ == 0)
				reply_copy(&st->ok_reply, r);
		} else if (cls == 4) {
			if (st->dot_temp++ == 0)
				reply_copy(&st->temp_reply, r);
		} else if (st->dot_perm++ == 0) {
			reply_copy(&st->perm_reply, r);
		}
		if (st->dot_left > 0 && --st->dot_left > 0) {
			expect(s, EXP_DOT);
			return;
		}
		dot_verdict(s);
		st->be_txn = false;
		st->be_rcpts = 0;
		txn_reset(st);
		end_wait(s);
		return;
	case EXP_RSET:
		if (cls != 2)
			backend_drop(s);
		st->be_txn = false;
		st->be_rcpts = 0;
		session_printf(s, "250 2.0.0 Ok\r\n");
		end_wait(s);
		return;
	}
}

/* One back-end line; false when the session stops waiting for lines. */
static bool
smtp_backend_line(struct session *s, const char *line, size_t len)
{
	struct smtp_state *st = state(s);
	const char *text;
	size_t tlen;
	unsigned code;
	bool last;
	enum expect e;

	if (smtp_reply_parse(line, len, &code, &last, &text, &tlen) != 0) {
		backend_fail(s, "backend-garbage");
		return false;
	}
	if (st->n_exp == 0) {
		backend_fail(s, "backend-unexpected");
		return false;
	}
	if (st->reply.len == 0 && !st->reply.cut)
		st->reply.code = code;
	else if (code != st->reply.code) {
		backend_fail(s, "backend-garbage");
		return false;
	}
	if (st->exp[0] == EXP_HELO && (st->reply.len > 0 || st->reply.cut))
		capability(st, text, tlen);
	reply_add(&st->reply, line, len);
	if (!last)
		return true;
	e = st->exp[0];
	memmove(st->exp, st->exp + 1, (st->n_exp - 1) * sizeof(st->exp[0]));
	st->n_exp--;
	handle_reply(s, e);
	if (s->pstate != NULL)
		reply_reset(&state(s)->reply);
	return s->state == S_LOGIN;
}

/* The back end failed while a client command waited on it (the proxy
 * has closed it); the answer depends on that command. */
static void
smtp_login_failed(struct session *s, enum login_fail kind)
{
	static const char unconfirmed[] = "451 4.4.2 Mailbox server failed "
	    "before confirming delivery, try again later";
	struct smtp_state *st = state(s);

	backend_forget(st);
	switch (st->wait) {
	case W_RCPT:
		if (st->n_rcpt > 0)
			st->be_broken = true;
		session_printf(s, "451 4.4.1 <%s>: Mailbox server not "
		    "reachable, try again later\r\n", st->rcpt);
		break;
	case W_DATA:
		session_printf(s, "451 4.4.1 Mailbox server not reachable, "
		    "try again later\r\n");
		txn_reset(st);
		break;
	case W_DOT:
		session_printf(s, "%s\r\n", unconfirmed);
		log_message(s, "tempfail", unconfirmed);
		txn_reset(st);
		break;
	case W_RSET:
		session_printf(s, "250 2.0.0 Ok\r\n");
		break;
	case W_NONE:
		break;
	}
	st->wait = W_NONE;
}

/* The back end went away while the session was not waiting on it. */
static void
smtp_backend_lost(struct session *s, const char *reason)
{
	struct smtp_state *st = state(s);

	log_info("%s smtp backend-lost backend=%s reason=%s data=%s", s->sid,
	    s->route.backend != NULL ? s->route.backend->name : "-", reason,
	    st->data ? "yes" : "no");
	mm_metrics_backend_fail(session_metrics(s), MM_PROTO_SMTP,
	    s->route.backend != NULL ? s->route.backend->name : "-", reason);
	backend_drop(s);
	if (st->data) {
		if (st->fail == DF_NONE)
			st->fail = DF_BACKEND;
		resume_input(s);
	} else if (st->n_rcpt > 0) {
		st->be_broken = true;
	}
}

/* The sender's time ran out: in a message's data, too slow; outside,
 * too long without a message. */
static void
smtp_deadline(struct session *s)
{
	if (state(s)->data) {
		smtp_bye(s, "Message data too slow.");
		session_close(s, "data-timeout");
	} else {
		smtp_bye(s, "Too long without a message.");
		session_close(s, "command-timeout");
	}
}

const struct proxy_proto proxy_smtp = {
	.proto = MM_PROTO_SMTP,
	.transfer = true,
	.greet = smtp_greet,
	.client_input = smtp_client_input,
	.backend_connected = smtp_backend_connected,
	.backend_line = smtp_backend_line,
	.backend_tls_done = smtp_backend_tls_done,
	.login_failed = smtp_login_failed,
	.bye = smtp_bye,
	.free_state = smtp_free_state,
	.backend_lost = smtp_backend_lost,
	.backend_drained = smtp_backend_drained,
	.client_drained = smtp_client_drained,
	.busy = smtp_busy,
	.lines_before_wait = true,
	.park_backend = smtp_park_backend,
	.deadline = smtp_deadline,
};
