/* IMAP before login (RFC 3501 / 9051), and the login at the back end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap_parse.h"
#include "mm_log.h"
#include "mm_util.h"
#include "proxy_int.h"

#define SEGMENTS_MAX 4		/* pieces of a back-end command split at
				   synchronising literals */

enum backend_step {
	B_GREETING,	/* waiting for the greeting */
	B_STARTTLS,	/* sent STARTTLS */
	B_CAPABILITY,	/* sent CAPABILITY */
	B_LOGIN,	/* sent (ID and) the login command */
};

struct imap_state {
	struct imap_parser parser;
	char tag[IMAP_TAG_MAX + 1];
	bool auth_cont;			/* AUTHENTICATE waits for its line */
	bool want_tls;			/* STARTTLS accepted: upgrade next */

	enum backend_step step;
	bool cap_sasl_ir, cap_auth_plain, cap_literal_plus, cap_logindisabled;
	bool have_caps;
	char *capa_line;		/* "* CAPABILITY ..." seen during login */
	char *seg[SEGMENTS_MAX];	/* login command pieces still to send */
	size_t n_seg, next_seg;
};

static struct imap_state *
state(struct session *s)
{
	struct imap_state *st = s->pstate;

	if (st == NULL) {
		const struct mm_limits *lim = &session_conf(s)->limits;

		st = xcalloc(1, sizeof(*st));
		imap_parser_init(&st->parser, lim->line_max, lim->literal_max);
		s->pstate = st;
	}
	return st;
}

static void
free_segments(struct imap_state *st)
{
	size_t i;

	for (i = 0; i < st->n_seg; i++) {
		if (st->seg[i] != NULL) {
			mm_wipe(st->seg[i], strlen(st->seg[i]));
			free(st->seg[i]);
		}
		st->seg[i] = NULL;
	}
	st->n_seg = st->next_seg = 0;
}

static void
imap_free_state(struct session *s)
{
	struct imap_state *st = s->pstate;

	if (st == NULL)
		return;
	free_segments(st);
	free(st->capa_line);
	mm_wipe(st, sizeof(*st));
	free(st);
	s->pstate = NULL;
}

/* ---- the client side ------------------------------------------------ */

static void
write_caps(struct session *s)
{
	session_printf(s, "IMAP4rev1 SASL-IR LITERAL+ ID%s%s",
	    session_can_starttls(s) ? " STARTTLS" : "",
	    session_login_allowed(s) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static void
imap_greet(struct session *s)
{
	session_printf(s, "* OK [CAPABILITY ");
	write_caps(s);
	session_printf(s, "] MailMesh ready.\r\n");
}

static void
imap_bye(struct session *s, const char *text)
{
	session_printf(s, "* BYE %s\r\n", text);
}

static void
imap_login_failed(struct session *s, enum login_fail kind)
{
	struct imap_state *st = state(s);

	if (s->fail_text != NULL)
		session_printf(s, "%s %s\r\n", st->tag, s->fail_text);
	else if (kind == LOGIN_FAIL_AUTH)
		session_printf(s, "%s NO [AUTHENTICATIONFAILED] "
		    "Authentication failed.\r\n", st->tag);
	else
		session_printf(s, "%s NO [UNAVAILABLE] Back end temporarily "
		    "unavailable, try again later.\r\n", st->tag);
}

static void
cmd_login(struct session *s, const unsigned char *buf,
    const struct imap_cmd *cmd)
{
	struct imap_state *st = state(s);
	struct login *l;

	if (cmd->n_args != 2) {
		session_printf(s, "%s BAD LOGIN needs a user name and a "
		    "password.\r\n", st->tag);
		return;
	}
	if (!session_login_allowed(s)) {
		session_printf(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS "
		    "first.\r\n", st->tag);
		return;
	}
	l = xcalloc(1, sizeof(*l));
	if (imap_arg_copy(buf, &cmd->args[0], l->user, sizeof(l->user)) <= 0 ||
	    imap_arg_copy(buf, &cmd->args[1], l->pass, sizeof(l->pass)) <= 0) {
		mm_wipe(l, sizeof(*l));
		free(l);
		session_printf(s, "%s BAD Invalid user name or password.\r\n",
		    st->tag);
		return;
	}
	session_login(s, l);
}

static void
cmd_authenticate(struct session *s, const unsigned char *buf,
    const struct imap_cmd *cmd)
{
	struct imap_state *st = state(s);
	char mech[32];
	const struct imap_arg *ir;

	if (cmd->n_args < 1 || cmd->n_args > 2 ||
	    imap_arg_copy(buf, &cmd->args[0], mech, sizeof(mech)) <= 0) {
		session_printf(s, "%s BAD AUTHENTICATE needs a mechanism.\r\n",
		    st->tag);
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		session_printf(s, "%s NO Unsupported authentication "
		    "mechanism.\r\n", st->tag);
		return;
	}
	if (!session_login_allowed(s)) {
		session_printf(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS "
		    "first.\r\n", st->tag);
		return;
	}
	if (cmd->n_args == 1) {
		st->auth_cont = true;
		session_printf(s, "+ \r\n");
		return;
	}
	ir = &cmd->args[1];
	if (ir->type != IMAP_ARG_ATOM) {
		session_printf(s, "%s BAD Invalid initial response.\r\n",
		    st->tag);
		return;
	}
	if (!session_sasl_plain(s, (const char *)buf + ir->off, ir->len))
		session_printf(s, "%s BAD Invalid PLAIN response.\r\n",
		    st->tag);
}

/* The line that answers "+ " after AUTHENTICATE PLAIN; false while the
 * session cannot take another command. */
static bool
auth_continuation(struct session *s)
{
	struct imap_state *st = state(s);

	switch (session_sasl_line(s)) {
	case SASL_LINE_AGAIN:
		return false;
	case SASL_LINE_CANCELLED:
		session_printf(s, "%s BAD Authentication cancelled.\r\n",
		    st->tag);
		break;
	case SASL_LINE_INVALID:
		session_printf(s, "%s BAD Invalid PLAIN response.\r\n",
		    st->tag);
		break;
	case SASL_LINE_STARTED:
	case SASL_LINE_CLOSED:
		break;
	}
	st->auth_cont = false;
	return s->state == S_PRELOGIN;
}

static void
cmd_id(struct session *s)
{
	session_printf(s, "* ID (\"name\" \"MailMesh\")\r\n%s OK ID "
	    "completed.\r\n", state(s)->tag);
}

/* Acts on one parsed command. Returns false if reading must stop. */
static bool
dispatch(struct session *s, const unsigned char *buf,
    const struct imap_cmd *cmd)
{
	struct imap_state *st = state(s);
	const size_t off = cmd->name_off, len = cmd->name_len;

	if (imap_slice_eq(buf, off, len, "CAPABILITY")) {
		session_printf(s, "* CAPABILITY ");
		write_caps(s);
		session_printf(s, "\r\n%s OK Capability completed.\r\n",
		    st->tag);
	} else if (imap_slice_eq(buf, off, len, "NOOP")) {
		session_printf(s, "%s OK NOOP completed.\r\n", st->tag);
	} else if (imap_slice_eq(buf, off, len, "LOGOUT")) {
		session_printf(s, "* BYE Logging out.\r\n%s OK Logout "
		    "completed.\r\n", st->tag);
		session_close(s, "logout");
		return false;
	} else if (imap_slice_eq(buf, off, len, "ID")) {
		cmd_id(s);
	} else if (imap_slice_eq(buf, off, len, "STARTTLS")) {
		if (!session_can_starttls(s)) {
			session_printf(s, "%s BAD STARTTLS not available.\r\n",
			    st->tag);
			return true;
		}
		session_printf(s, "%s OK Begin TLS negotiation now.\r\n",
		    st->tag);
		st->want_tls = true;
		return false;	/* the caller starts TLS after draining */
	} else if (imap_slice_eq(buf, off, len, "LOGIN")) {
		cmd_login(s, buf, cmd);
	} else if (imap_slice_eq(buf, off, len, "AUTHENTICATE")) {
		cmd_authenticate(s, buf, cmd);
	} else {
		session_printf(s, "%s BAD Command unknown or not allowed "
		    "before login.\r\n", st->tag);
	}
	return s->state == S_PRELOGIN && !st->auth_cont;
}

static void
imap_client_input(struct session *s)
{
	const struct mm_limits *lim = &session_conf(s)->limits;
	size_t cap = 4 * ((size_t)lim->line_max + lim->literal_max) +
	    IMAP_ID_LINE_MAX;

	while (s->state == S_PRELOGIN) {
		struct imap_state *st = state(s);
		struct evbuffer *in = bufferevent_get_input(s->cbev);
		size_t len = evbuffer_get_length(in);
		const unsigned char *buf;
		enum imap_parse_rc rc;
		bool more;

		if (st->auth_cont) {
			if (!auth_continuation(s))
				return;
			continue;
		}
		if (len == 0)
			return;
		if (len > cap)
			len = cap;
		buf = evbuffer_pullup(in, (ev_ssize_t)len);
		rc = imap_parse(&st->parser, buf, len);
		switch (rc) {
		case IMAP_PARSE_AGAIN:
			if (len >= cap) {
				imap_bye(s, "Command too long.");
				session_close(s, "line-limit");
			}
			return;
		case IMAP_PARSE_CONTINUE:
			session_printf(s, "+ Ready for literal data.\r\n");
			continue;
		case IMAP_PARSE_INVALID:
			if (st->parser.fatal) {
				session_printf(s, "* BYE %s.\r\n",
				    st->parser.error);
				session_close(s, "line-limit");
				return;
			}
			if (!session_count_command(s))
				return;
			if (st->parser.have_tag)
				session_printf(s, "%.*s BAD %s.\r\n",
				    (int)st->parser.cmd.tag_len,
				    buf + st->parser.cmd.tag_off,
				    st->parser.error);
			else
				session_printf(s, "* BAD %s.\r\n",
				    st->parser.error);
			evbuffer_drain(in, st->parser.consumed);
			imap_parser_reset(&st->parser);
			continue;
		case IMAP_PARSE_OK:
			break;
		}
		if (!session_count_command(s))
			return;
		memcpy(st->tag, buf + st->parser.cmd.tag_off,
		    st->parser.cmd.tag_len);
		st->tag[st->parser.cmd.tag_len] = '\0';
		more = dispatch(s, buf, &st->parser.cmd);
		/* The command may hold a password: wipe it from the buffer. */
		if (s->state != S_CLOSING) {
			mm_wipe((void *)buf, st->parser.consumed);
			evbuffer_drain(in, st->parser.consumed);
			imap_parser_reset(&st->parser);
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
note_caps(struct imap_state *st, const char *caps, size_t len)
{
	st->have_caps = true;
	st->cap_sasl_ir = imap_capability_has(caps, len, "SASL-IR");
	st->cap_auth_plain = imap_capability_has(caps, len, "AUTH=PLAIN");
	st->cap_literal_plus = imap_capability_has(caps, len, "LITERAL+");
	st->cap_logindisabled = imap_capability_has(caps, len,
	    "LOGINDISABLED");
}

/* Appends an astring for s to cmd: quoted if it can be, else a literal;
 * a synchronising literal closes the current segment. */
static void
add_astring(struct imap_state *st, struct evbuffer *cmd, const char *str)
{
	char q[2 * SASL_FIELD_MAX + 3];
	size_t len = strlen(str);
	int n;

	n = imap_quote(str, len, q, sizeof(q));
	if (n >= 0) {
		evbuffer_add(cmd, q, (size_t)n);
		mm_wipe(q, sizeof(q));
		return;
	}
	if (st->cap_literal_plus) {
		evbuffer_add_printf(cmd, "{%zu+}\r\n", len);
		evbuffer_add(cmd, str, len);
		return;
	}
	evbuffer_add_printf(cmd, "{%zu}\r\n", len);
	st->seg[st->n_seg] = xcalloc(1, evbuffer_get_length(cmd) + 1);
	evbuffer_remove(cmd, st->seg[st->n_seg], evbuffer_get_length(cmd));
	st->n_seg++;
	evbuffer_add(cmd, str, len);
}

static void
send_next_segment(struct session *s)
{
	struct imap_state *st = state(s);
	char *seg = st->seg[st->next_seg];

	session_backend_write(s, seg, strlen(seg));
	mm_wipe(seg, strlen(seg));
	free(seg);
	st->seg[st->next_seg++] = NULL;
}

static void
send_login(struct session *s)
{
	struct imap_state *st = state(s);
	const struct login *l = s->login;
	struct evbuffer *cmd;
	char b64[4 * (3 * SASL_FIELD_MAX + 3) / 3 + 8];
	size_t rest;

	if (s->route.backend->client_addr == MM_CADDR_ID) {
		session_backend_printf(s, "M2 ID (\"x-originating-ip\" \"%s\" "
		    "\"x-originating-port\" \"%s\" \"x-connected-ip\" \"%s\" "
		    "\"x-connected-port\" \"%s\" \"x-session-ext-id\" "
		    "\"%s\")\r\n", s->caddr_str, s->cport_str, s->laddr_str,
		    s->lport_str, s->sid);
	}
	free_segments(st);
	cmd = evbuffer_new();
	if (st->cap_auth_plain || l->authz[0] != '\0') {
		if (sasl_plain_encode(l->authz, l->user, l->pass, b64,
		    sizeof(b64)) < 0) {
			evbuffer_free(cmd);
			session_login_fail(s, LOGIN_FAIL_AUTH, "credentials");
			return;
		}
		if (st->cap_sasl_ir) {
			evbuffer_add_printf(cmd, "M3 AUTHENTICATE PLAIN %s\r\n",
			    b64);
		} else {
			st->seg[st->n_seg++] =
			    xstrdup("M3 AUTHENTICATE PLAIN\r\n");
			evbuffer_add_printf(cmd, "%s\r\n", b64);
		}
		mm_wipe(b64, sizeof(b64));
	} else {
		evbuffer_add_printf(cmd, "M3 LOGIN ");
		add_astring(st, cmd, l->user);
		evbuffer_add(cmd, " ", 1);
		add_astring(st, cmd, l->pass);
		evbuffer_add(cmd, "\r\n", 2);
	}
	rest = evbuffer_get_length(cmd);
	st->seg[st->n_seg] = xcalloc(1, rest + 1);
	evbuffer_remove(cmd, st->seg[st->n_seg], rest);
	st->n_seg++;
	evbuffer_free(cmd);
	st->step = B_LOGIN;
	send_next_segment(s);
}

static void
imap_backend_connected(struct session *s)
{
	state(s)->step = B_GREETING;
}

static void
imap_backend_tls_done(struct session *s)
{
	struct imap_state *st = state(s);

	/* Capabilities seen before TLS mean nothing now. */
	st->have_caps = false;
	st->step = B_CAPABILITY;
	session_backend_printf(s, "M1 CAPABILITY\r\n");
}

static bool
is_tag(const char *line, const struct imap_resp *r, const char *tag)
{
	return r->tag_len == strlen(tag) &&
	    memcmp(line + r->tag_off, tag, r->tag_len) == 0;
}

/* After the greeting or a CAPABILITY: STARTTLS, CAPABILITY or log in. */
static void
next_step(struct session *s)
{
	struct imap_state *st = state(s);

	if (s->route.backend->tls == MM_TLS_STARTTLS &&
	    st->step == B_GREETING) {
		st->step = B_STARTTLS;
		session_backend_printf(s, "M0 STARTTLS\r\n");
	} else if (!st->have_caps) {
		st->step = B_CAPABILITY;
		session_backend_printf(s, "M1 CAPABILITY\r\n");
	} else if (st->cap_logindisabled) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "backend-logindisabled");
	} else {
		send_login(s);
	}
}

/* Whether the response code of r is word (alone or with arguments). */
static bool
code_is(const char *line, const struct imap_resp *r, const char *word)
{
	size_t n = strlen(word);
	const char *code = line + r->code_off;

	return r->code_len >= n && strncasecmp(code, word, n) == 0 &&
	    (r->code_len == n || code[n] == ' ');
}

/* The back end's verdict on the login. */
static void
login_reply(struct session *s, const char *line, size_t len,
    const struct imap_resp *r)
{
	struct imap_state *st = state(s);

	if (r->status == IMAP_RESP_OK) {
		/* Hand the client the back end's own OK line, with the
		 * client's tag: it carries the post-login capabilities. */
		if (st->capa_line != NULL && !code_is(line, r, "CAPABILITY"))
			session_printf(s, "%s\r\n", st->capa_line);
		session_printf(s, "%s%.*s\r\n", st->tag,
		    (int)(len - r->tag_len), line + r->tag_len);
		session_login_ok(s);
		return;
	}
	if (r->status == IMAP_RESP_NO && code_is(line, r, "LIMIT")) {
		/* Right credentials, too many sessions (RFC 5530): the
		 * client hears it as it is, and it costs no failure. */
		session_login_refused(s, line + r->tag_len + 1,
		    len - r->tag_len - 1, "backend-limit");
		return;
	}
	if (r->status == IMAP_RESP_NO && !code_is(line, r, "UNAVAILABLE") &&
	    !code_is(line, r, "SERVERBUG")) {
		session_login_fail(s, LOGIN_FAIL_AUTH, "backend-refused");
		return;
	}
	session_login_fail(s, LOGIN_FAIL_TEMP, "backend-login-error");
}

/* One line from the back end; false once the login conversation ended. */
static bool
backend_line(struct session *s, const char *line, size_t len)
{
	struct imap_state *st = state(s);
	struct imap_resp r;

	if (imap_parse_response(line, len, &r) != 0) {
		session_login_fail(s, LOGIN_FAIL_TEMP, "backend-garbage");
		return false;
	}
	if (r.status == IMAP_RESP_CONTINUE) {
		if (st->step != B_LOGIN || st->next_seg >= st->n_seg) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-unexpected-continuation");
			return false;
		}
		send_next_segment(s);
		return true;
	}
	if (st->step == B_GREETING) {
		if (!is_tag(line, &r, "*") || r.status != IMAP_RESP_OK) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-greeting");
			return false;
		}
		if (r.code_len > 11 && strncasecmp(line + r.code_off,
		    "CAPABILITY ", 11) == 0)
			note_caps(st, line + r.code_off, r.code_len);
		next_step(s);
		return s->state == S_LOGIN;
	}
	if (is_tag(line, &r, "*")) {
		if (r.status == IMAP_RESP_OTHER && len > 13 &&
		    strncasecmp(line, "* CAPABILITY ", 13) == 0) {
			note_caps(st, line + 13, len - 13);
			free(st->capa_line);
			st->capa_line = xstrndup(line, len);
		} else if (r.status == IMAP_RESP_BYE) {
			session_login_fail(s, LOGIN_FAIL_TEMP, "backend-bye");
			return false;
		}
		return true;
	}
	if (is_tag(line, &r, "M0")) {
		if (r.status != IMAP_RESP_OK) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-starttls-refused");
			return false;
		}
		session_backend_starttls(s);
		return false;	/* nothing more is read as plaintext */
	}
	if (is_tag(line, &r, "M1")) {
		if (r.status != IMAP_RESP_OK || !st->have_caps) {
			session_login_fail(s, LOGIN_FAIL_TEMP,
			    "backend-capability");
			return false;
		}
		/* The capabilities before login are not the client's. */
		free(st->capa_line);
		st->capa_line = NULL;
		next_step(s);
		return s->state == S_LOGIN;
	}
	if (is_tag(line, &r, "M2"))
		return true;	/* ID: whatever the answer, carry on */
	if (is_tag(line, &r, "M3")) {
		login_reply(s, line, len, &r);
		return false;
	}
	session_login_fail(s, LOGIN_FAIL_TEMP, "backend-unexpected-tag");
	return false;
}

const struct proxy_proto proxy_imap = {
	.proto = MM_PROTO_IMAP,
	.greet = imap_greet,
	.client_input = imap_client_input,
	.backend_connected = imap_backend_connected,
	.backend_line = backend_line,
	.backend_tls_done = imap_backend_tls_done,
	.login_failed = imap_login_failed,
	.bye = imap_bye,
	.kick_code = "[UNAVAILABLE] ",
	.free_state = imap_free_state,
};
