/* POP3 before login (RFC 1939, 2449, 5034), and the login at the back end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mm_log.h"
#include "mm_util.h"
#include "pop3_parse.h"
#include "proxy_int.h"

enum backend_step {
	B_GREETING,	/* waiting for the greeting */
	B_STLS,		/* sent STLS */
	B_XCLIENT,	/* sent XCLIENT */
	B_AUTH,		/* sent AUTH */
};

struct pop3_state {
	char user[DIR_USER_MAX + 1];	/* from USER, waiting for PASS */
	bool have_user;
	bool auth_cont;			/* AUTH PLAIN waits for its line */
	bool want_tls;			/* STLS accepted: upgrade next */
	enum backend_step step;
};

static struct pop3_state *
state(struct session *s)
{
	if (s->pstate == NULL)
		s->pstate = xcalloc(1, sizeof(struct pop3_state));
	return s->pstate;
}

static void
pop3_free_state(struct session *s)
{
	if (s->pstate != NULL) {
		mm_wipe(s->pstate, sizeof(struct pop3_state));
		free(s->pstate);
		s->pstate = NULL;
	}
}

/* ---- the client side ------------------------------------------------ */

static void
pop3_greet(struct session *s)
{
	session_printf(s, "+OK MailMesh ready.\r\n");
}

static void
pop3_bye(struct session *s, const char *text)
{
	session_printf(s, "-ERR %s\r\n", text);
}

static void
pop3_login_failed(struct session *s, enum login_fail kind)
{
	if (s->fail_text != NULL)
		session_printf(s, "%s\r\n", s->fail_text);
	else if (kind == LOGIN_FAIL_AUTH)
		session_printf(s, "-ERR [AUTH] Authentication failed.\r\n");
	else
		session_printf(s, "-ERR [SYS/TEMP] Back end temporarily "
		    "unavailable, try again later.\r\n");
}

static void
cmd_capa(struct session *s)
{
	session_printf(s, "+OK Capability list follows\r\n%s%s"
	    "PIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
	    "IMPLEMENTATION MailMesh\r\n.\r\n",
	    session_login_allowed(s) ? "USER\r\nSASL PLAIN\r\n" : "",
	    session_can_starttls(s) ? "STLS\r\n" : "");
}

static void
cmd_auth(struct session *s, const unsigned char *buf,
    const struct pop3_cmd *cmd)
{
	struct pop3_state *st = state(s);
	size_t w_off, w_len, r_off, r_len;

	if (cmd->arg_len == 0) {
		session_printf(s, "+OK\r\nPLAIN\r\n.\r\n");
		return;
	}
	pop3_split_arg(buf, cmd->arg_off, cmd->arg_len, &w_off, &w_len,
	    &r_off, &r_len);
	if (w_len != 5 || strncasecmp((const char *)buf + w_off, "PLAIN",
	    5) != 0) {
		session_printf(s, "-ERR Unsupported authentication "
		    "mechanism.\r\n");
		return;
	}
	if (!session_login_allowed(s)) {
		session_printf(s, "-ERR Use STLS first.\r\n");
		return;
	}
	if (r_len == 0) {
		st->auth_cont = true;
		session_printf(s, "+ \r\n");
		return;
	}
	if (!session_sasl_plain(s, (const char *)buf + r_off, r_len))
		session_printf(s, "-ERR Invalid PLAIN response.\r\n");
}

static void
cmd_user(struct session *s, const unsigned char *buf,
    const struct pop3_cmd *cmd)
{
	struct pop3_state *st = state(s);

	if (!session_login_allowed(s)) {
		session_printf(s, "-ERR Use STLS first.\r\n");
		return;
	}
	if (cmd->arg_len == 0 || cmd->arg_len >= sizeof(st->user)) {
		session_printf(s, "-ERR Invalid user name.\r\n");
		return;
	}
	memcpy(st->user, buf + cmd->arg_off, cmd->arg_len);
	st->user[cmd->arg_len] = '\0';
	st->have_user = true;
	session_printf(s, "+OK\r\n");
}

static void
cmd_pass(struct session *s, const unsigned char *buf,
    const struct pop3_cmd *cmd)
{
	struct pop3_state *st = state(s);
	struct login *l;

	if (!st->have_user) {
		session_printf(s, "-ERR USER first.\r\n");
		return;
	}
	if (cmd->arg_len == 0 || cmd->arg_len > SASL_FIELD_MAX ||
	    memchr(buf + cmd->arg_off, '\0', cmd->arg_len) != NULL) {
		session_printf(s, "-ERR Invalid password.\r\n");
		return;
	}
	st->have_user = false;
	l = xcalloc(1, sizeof(*l));
	mm_strlcpy(l->user, st->user, sizeof(l->user));
	memcpy(l->pass, buf + cmd->arg_off, cmd->arg_len);
	session_login(s, l);
}

/* The line that answers "+ " after AUTH PLAIN; false while the session
 * cannot take another command. */
static bool
auth_continuation(struct session *s)
{
	switch (session_sasl_line(s)) {
	case SASL_LINE_AGAIN:
		return false;
	case SASL_LINE_CANCELLED:
		session_printf(s, "-ERR Authentication cancelled.\r\n");
		break;
	case SASL_LINE_INVALID:
		session_printf(s, "-ERR Invalid PLAIN response.\r\n");
		break;
	case SASL_LINE_STARTED:
	case SASL_LINE_CLOSED:
		break;
	}
	state(s)->auth_cont = false;
	return s->state == S_PRELOGIN;
}

static bool
keyword_is(const unsigned char *buf, const struct pop3_cmd *cmd,
    const char *word)
{
	return cmd->name_len == strlen(word) &&
	    strncasecmp((const char *)buf + cmd->name_off, word,
	    cmd->name_len) == 0;
}

/* Acts on one command; false if reading must stop. */
static bool
dispatch(struct session *s, const unsigned char *buf,
    const struct pop3_cmd *cmd)
{
	struct pop3_state *st = state(s);

	if (keyword_is(buf, cmd, "CAPA")) {
		cmd_capa(s);
	} else if (keyword_is(buf, cmd, "USER")) {
		cmd_user(s, buf, cmd);
	} else if (keyword_is(buf, cmd, "PASS")) {
		cmd_pass(s, buf, cmd);
	} else if (keyword_is(buf, cmd, "AUTH")) {
		cmd_auth(s, buf, cmd);
	} else if (keyword_is(buf, cmd, "STLS")) {
		if (!session_can_starttls(s)) {
			session_printf(s, "-ERR STLS not available.\r\n");
			return true;
		}
		session_printf(s, "+OK Begin TLS negotiation.\r\n");
		st->want_tls = true;
		return false;
	} else if (keyword_is(buf, cmd, "QUIT")) {
		session_printf(s, "+OK Bye.\r\n");
		session_close(s, "logout");
		return false;
	} else {
		session_printf(s, "-ERR Unknown command or not allowed before "
		    "login.\r\n");
	}
	return s->state == S_PRELOGIN && !st->auth_cont;
}

static void
pop3_client_input(struct session *s)
{
	const struct mm_limits *lim = &session_conf(s)->limits;

	while (s->state == S_PRELOGIN) {
		struct pop3_state *st = state(s);
		struct evbuffer *in = bufferevent_get_input(s->cbev);
		size_t len = evbuffer_get_length(in), consumed = 0;
		const unsigned char *buf;
		const char *error = NULL;
		struct pop3_cmd cmd;
		enum pop3_parse_rc rc;
		bool more;

		if (st->auth_cont) {
			if (!auth_continuation(s))
				return;
			continue;
		}
		if (len == 0)
			return;
		if (len > (size_t)lim->line_max + 2)
			len = (size_t)lim->line_max + 2;
		buf = evbuffer_pullup(in, (ev_ssize_t)len);
		rc = pop3_parse_line(buf, len, lim->line_max, &cmd, &consumed,
		    &error);
		if (rc == POP3_PARSE_AGAIN)
			return;
		if (rc == POP3_PARSE_INVALID && consumed == 0) {
			pop3_bye(s, "Line too long.");
			session_close(s, "line-limit");
			return;
		}
		if (!session_count_command(s))
			return;
		if (rc == POP3_PARSE_INVALID) {
			session_printf(s, "-ERR %s.\r\n", error);
			evbuffer_drain(in, consumed);
			continue;
		}
		more = dispatch(s, buf, &cmd);
		if (s->state != S_CLOSING) {
			/* The line may hold a password. */
			mm_wipe((void *)buf, consumed);
			evbuffer_drain(in, consumed);
		}
		if (s->state == S_PRELOGIN && st->want_tls) {
			session_starttls(s);	/* frees st */
			return;
		}
		if (!more && !st->auth_cont)
			return;
	}
}

/* ---- the back-end side ---------------------------------------------- */

static void
send_auth(struct session *s)
{
	struct pop3_state *st = state(s);
	const struct login *l = s->login;
	char b64[4 * (3 * SASL_FIELD_MAX + 3) / 3 + 8];

	if (sasl_plain_encode(l->authz, l->user, l->pass, b64,
	    sizeof(b64)) < 0) {
		session_login_fail(s, LOGIN_FAIL_AUTH, "credentials");
		return;
	}
	st->step = B_AUTH;
	session_backend_printf(s, "AUTH PLAIN %s\r\n", b64);
	mm_wipe(b64, sizeof(b64));
}

/* The client's address first, if the back end takes it, then AUTH. AUTH
 * waits for the XCLIENT reply: sent together, the back end's two replies
 * leave in two small writes and the second one stalls on a delayed ACK. */
static void
send_login(struct session *s)
{
	if (s->route.backend->client_addr == MM_CADDR_ID) {
		session_backend_printf(s, "XCLIENT ADDR=%s PORT=%s "
		    "SESSION=%s\r\n", s->caddr_str, s->cport_str, s->sid);
		state(s)->step = B_XCLIENT;
		return;
	}
	send_auth(s);
}

static void
pop3_backend_connected(struct session *s)
{
	state(s)->step = B_GREETING;
}

static void
pop3_backend_tls_done(struct session *s)
{
	send_login(s);
}

/* One back-end line; false once the login conversation ended. */
static bool
backend_line(struct session *s, const char *line, size_t len)
{
	struct pop3_state *st = state(s);
	enum pop3_resp_status r = pop3_parse_response(line, len);

	if (r == POP3_RESP_INVALID || r == POP3_RESP_CONT) {
		session_login_fail(s, LOGIN_FAIL_TEMP, r == POP3_RESP_CONT ?
		    "backend-unexpected-continuation" : "backend-garbage");
		return false;
	}
	switch (st->step) {
	case B_GREETING:
		if (r != POP3_RESP_OK) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-greeting");
			return false;
		}
		if (s->route.backend->tls == MM_TLS_STARTTLS) {
			st->step = B_STLS;
			session_backend_printf(s, "STLS\r\n");
			return true;
		}
		send_login(s);
		return s->state == S_LOGIN;
	case B_STLS:
		if (r != POP3_RESP_OK) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-stls-refused");
			return false;
		}
		session_backend_starttls(s);
		return false;
	case B_XCLIENT:
		/* Whatever the answer, the AUTH after it decides. */
		send_auth(s);
		return s->state == S_LOGIN;
	case B_AUTH:
		if (r == POP3_RESP_OK) {
			session_printf(s, "%.*s\r\n", (int)len, line);
			session_login_ok(s);
		} else if (strncasecmp(line, "-ERR [IN-USE]", 13) == 0) {
			/* Right credentials, mailbox busy or too many
			 * sessions (RFC 2449): passed on, no failure. */
			session_login_refused(s, line, len, "backend-in-use");
		} else if (strncasecmp(line, "-ERR [SYS/TEMP]", 15) == 0) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-login-error");
		} else {
			session_login_fail(s, LOGIN_FAIL_AUTH,
			    "backend-refused");
		}
		return false;
	}
	return false;
}

const struct proxy_proto proxy_pop3 = {
	.proto = MM_PROTO_POP3,
	.greet = pop3_greet,
	.client_input = pop3_client_input,
	.backend_connected = pop3_backend_connected,
	.backend_line = backend_line,
	.backend_tls_done = pop3_backend_tls_done,
	.login_failed = pop3_login_failed,
	.bye = pop3_bye,
	.kick_code = "[SYS/TEMP] ",
	.free_state = pop3_free_state,
};
