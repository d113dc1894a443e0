/* Inside the proxy: the session and the protocol table that IMAP and POP3
 * implement. Only proxy*.c include this. */
#ifndef PROXY_INT_H
#define PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "dir.h"
#include "mm_config.h"
#include "proxy.h"
#include "sasl.h"
#include "xsite.h"

#define SESSION_ADDR_MAX 64		/* "[v6]:port" as text */
#define BACKEND_LINE_MAX 16384		/* a back-end line during login */
#define CLOSE_FLUSH_MS 5000		/* time to flush a last reply and see
					 * the client close */
#define CLOSE_LINGER_MAX (64 * 1024)	/* bytes read and dropped meanwhile */

enum session_state {
	S_HEADER,	/* reading a load balancer's PROXY header */
	S_PRELOGIN,	/* reading the client's commands */
	S_LOGIN,	/* talking to the back end for this client */
	S_DELAY,	/* a failed login waits before its reply */
	S_RELAY,	/* logged in: bytes flow both ways */
	S_CLOSING,	/* flushing the last reply, then freed */
};

/* The steps of S_CLOSING. */
enum close_step {
	CLOSE_FLUSH,	/* the last reply leaves the client's bufferevent */
	CLOSE_HANDOFF,	/* next turn of the loop: the socket goes plain */
	CLOSE_LINGER,	/* TLS's last bytes and close_notify go out, then a
			 * half-close; the client's bytes are dropped until
			 * it closes too */
};

enum login_fail {
	LOGIN_FAIL_AUTH,	/* bad credentials or unknown user */
	LOGIN_FAIL_TEMP,	/* back end down, slow, or confused */
};

/* Credentials of the login in progress; wiped and freed when it ends. */
struct login {
	char user[DIR_USER_MAX + 1];
	char authz[SASL_FIELD_MAX + 1];
	char pass[SASL_FIELD_MAX + 1];
};

struct session;

struct proxy_proto {
	enum mm_proto proto;
	/* Mail transfer (SMTP), not a mailbox login: the sender may stay
	 * silent for smtp-idle, each recipient is one more command allowed
	 * per message, and a back end is chosen per message. */
	bool transfer;
	/* Sends the greeting on a new connection. */
	void (*greet)(struct session *s);
	/* Client bytes arrived before login: handle whole commands. */
	void (*client_input)(struct session *s);
	/* The back end is connected (and any PROXY header sent). */
	void (*backend_connected)(struct session *s);
	/* One back-end line (CRLF removed, NUL-terminated) during the login
	 * conversation; false once the conversation is over (the login
	 * succeeded or failed, or the back end is being upgraded to TLS). */
	bool (*backend_line)(struct session *s, const char *line, size_t len);
	/* The back-end STARTTLS handshake finished. */
	void (*backend_tls_done)(struct session *s);
	/* Tells the client its login failed (after any delay). */
	void (*login_failed)(struct session *s, enum login_fail kind);
	/* Says goodbye with text (a limit, shutdown) before the close. */
	void (*bye)(struct session *s, const char *text);
	/* Starts the text of a kick's farewell: the response code of a
	 * temporary refusal. NULL: sessions of this protocol are not a
	 * user's and are never kicked (SMTP). */
	const char *kick_code;
	/* Frees the protocol's pre-login state. */
	void (*free_state)(struct session *s);
	/* Optional, for protocols that talk to the back end outside
	 * S_LOGIN and S_RELAY (SMTP): the back end closed or failed while
	 * the session was in S_PRELOGIN; the back end's output drained
	 * below the watermark; the client's output did. */
	void (*backend_lost)(struct session *s, const char *reason);
	void (*backend_drained)(struct session *s);
	void (*client_drained)(struct session *s);
	/* Optional: true while the session must not be cut by a drain
	 * (a message is on its way). */
	bool (*busy)(const struct session *s);
	/* backend_line is called in S_PRELOGIN too (SMTP reads the reply to
	 * DATA while the client already sends the message). */
	bool lines_before_wait;
	/* Optional: s->deadline_ms has passed; says goodbye and closes
	 * (default: the client took too long to log in). */
	void (*deadline)(struct session *s);
	/* Optional: the session closes with a back end open in S_PRELOGIN;
	 * the protocol may park it (session_backend_park). */
	void (*park_backend)(struct session *s);
};

extern const struct proxy_proto proxy_imap;
extern const struct proxy_proto proxy_pop3;
extern const struct proxy_proto proxy_smtp;

struct session {
	uint64_t id;
	char sid[24];			/* id as text, for logs */
	struct proxy *px;
	const struct proxy_proto *proto;
	const struct mm_listener_conf *lc;
	size_t listener_index;
	enum session_state state;
	struct bufferevent *cbev;	/* client */
	struct bufferevent *bbev;	/* back end */
	struct event *timer;		/* idle, back-end and delay timeouts */
	struct sockaddr_storage caddr;
	struct sockaddr_storage laddr;	/* our address the client reached */
	char caddr_str[SESSION_ADDR_MAX];
	char cport_str[8];
	char laddr_str[SESSION_ADDR_MAX];
	char lport_str[8];
	bool client_tls;		/* TLS active or being negotiated */
	bool client_failed;		/* its TLS failed: no close_notify */
	enum close_step close_step;
	uint64_t close_deadline_ms;
	size_t linger_bytes;
	bool linger_shut;		/* our side is half-closed */
	bool counted;			/* holds an iptable connection slot */
	bool free_pending;		/* session_free_later was called */
	bool src_paused[2];		/* relay read paused for backpressure */
	/* Relay reads of a plaintext source socket, straight into the other
	 * side's output buffer: [0] client to back end, [1] the reverse.
	 * NULL where the source is TLS (its bufferevent reads). */
	struct event *rev[2];
	/* Plaintext to plaintext: bytes move socket -> pipe -> socket with
	 * splice(2), never copied through user space. piped counts what
	 * waits in the pipe for the destination to take it. */
	bool splice_ok[2];
	int pipefd[2][2];
	size_t piped[2];
	struct event *wev[2];		/* destination writable: drain pipe */
	struct pp_read *pp;		/* S_HEADER: the header so far */
	unsigned n_commands;
	unsigned n_fail;
	unsigned n_errors;		/* SMTP: failed commands */
	enum login_fail pending_fail;
	/* A back end's own refusal, passed to the client in place of the
	 * protocol's generic one (IMAP NO [LIMIT], POP3 -ERR [IN-USE]). */
	char *fail_text;
	bool login_counted;		/* holds a login-in-flight slot */
	uint64_t login_start_ms;	/* the login command arrived */
	bool held;			/* waits: the user is frozen mid-move */
	uint64_t hold_start_ms;
	/* The client must be done by then: logged in (IMAP, POP3), or have
	 * sent a message (SMTP, outside a message's data). */
	uint64_t deadline_ms;
	bool timer_deadline;		/* S_PRELOGIN's timer is for it, not
					 * for idleness */
	struct login *login;
	char user[DIR_USER_MAX + 1];	/* logged-in or last tried user */
	struct dir_route route;
	void *pstate;			/* protocol state before login */
	uint64_t start_ms;
	uint64_t last_active_ms;
	uint64_t bytes_c2b, bytes_b2c;
	/* Cross-site: the client is a node of another site (its request
	 * named the real client), or the back end is one. */
	struct xlink *xl_client;
	struct xlink *xl_backend;
	unsigned hops;			/* channel hops still allowed */
	struct session *prev, *next;
};

/* For the protocol modules. */

/* The worker's counters (NULL: none kept). */
struct mm_metrics_slot *session_metrics(const struct session *s);

void session_write(struct session *s, const void *data, size_t len);
void session_printf(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void session_backend_write(struct session *s, const void *data, size_t len);
void session_backend_printf(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Flushes what was written to the client, then closes. result is logged. */
void session_close(struct session *s, const char *result);

/* Counts a command before login; false (and the session says goodbye)
 * when the limit is passed. */
bool session_count_command(struct session *s);

/* True if logins are allowed now (TLS when required). */
bool session_login_allowed(const struct session *s);
/* True if the listener can start TLS and it has not started yet. */
bool session_can_starttls(const struct session *s);
/* Starts TLS on the client side. Input still buffered is thrown away:
 * bytes sent with the STARTTLS command are never executed. */
void session_starttls(struct session *s);

/* Takes ownership of l (wiped and freed by the session), looks the user
 * up and starts the back-end login; the outcome arrives through
 * session_login_ok / session_login_fail. Client reading pauses meanwhile,
 * so pipelined commands wait in the input buffer. */
void session_login(struct session *s, struct login *l);
/* Decodes a base64 PLAIN response ("=" is an empty one) and starts the
 * login with it; false if it is not a valid PLAIN response. */
bool session_sasl_plain(struct session *s, const char *b64, size_t len);

enum sasl_line {
	SASL_LINE_AGAIN,	/* no whole line yet */
	SASL_LINE_STARTED,	/* the login has started */
	SASL_LINE_CANCELLED,	/* the client sent "*" */
	SASL_LINE_INVALID,	/* not a PLAIN response */
	SASL_LINE_CLOSED,	/* too long: said goodbye, closing */
};
/* Reads the client's answer to a "+ " challenge for PLAIN, wiping it from
 * the input once used, and starts the login with it. */
enum sasl_line session_sasl_line(struct session *s);

/* The back end accepted: reply already sent by the protocol; relay now. */
void session_login_ok(struct session *s);
/* The back end (or the directory) refused; reason is for the log. */
void session_login_fail(struct session *s, enum login_fail kind,
    const char *reason);
/* The back end refused for now with a reply of its own worth passing on
 * (too many sessions): a temporary failure, not counted. text is that
 * reply as the client gets it, without the client's tag (IMAP) and CRLF;
 * the protocol's login_failed finds it in s->fail_text. */
void session_login_refused(struct session *s, const char *text, size_t len,
    const char *reason);
/* Upgrades the back-end connection with STARTTLS. */
void session_backend_starttls(struct session *s);

/* SMTP: connects to route's back end (remote: to a node of route->site
 * over the inter-node channel) in S_LOGIN with client reading paused;
 * as with a login, the protocol's backend_connected and backend_line
 * follow, or login_failed(LOGIN_FAIL_TEMP) after a connect failure. An
 * open back-end connection is closed first. */
void session_backend_open(struct session *s, const struct dir_route *route,
    bool remote);
/* Enters S_LOGIN to wait for back-end lines for at most timeout_ms; the
 * client's input waits meanwhile. */
void session_backend_wait(struct session *s, uint64_t timeout_ms);
void session_backend_close(struct session *s);

/* Starts (on) or stops reading the client, in whichever way it is read. */
void session_client_read(struct session *s, bool on);
/* While on, a plaintext client is read in large chunks (libevent's own
 * reads stop at 4 KiB) into its input buffer; SMTP turns it on for the
 * message. A TLS client is left to its bufferevent. */
void session_client_bulk(struct session *s, bool on);
/* Keeps s's idle back-end connection (no command under way, nothing
 * unread) for a later session to the back end named key, with the
 * protocol's notes on it (what the back end offers; copied, at most
 * 64 bytes); closes it instead when it cannot be kept (PROXY headers
 * name one client; cross-site links are per session). s->bbev is NULL
 * afterwards. */
void session_backend_park(struct session *s, const char *key,
    const void *notes, size_t notes_len);
/* Takes a parked connection to key, if any: it becomes s->bbev (any open
 * one is closed), route becomes s->route and notes are copied back.
 * false when none is parked. */
bool session_backend_unpark(struct session *s, const char *key,
    const struct dir_route *route, void *notes, size_t notes_len);

/* The worker is shutting down: finish what is under way, start nothing. */
bool session_draining(const struct session *s);

/* Resumes reading client commands (after a reply that ended a wait). */
void session_resume(struct session *s);

/* Finds a whole line in in: 1 with *line_r and *len_r (EOL excluded, pointer
 * valid until the caller drains *consumed_r bytes), 0 if no line yet,
 * -1 if a line is longer than max. */
int session_evbuf_line(struct evbuffer *in, size_t max, const char **line_r,
    size_t *len_r, size_t *consumed_r);

const struct mm_config *session_conf(const struct session *s);
struct dir *session_dir(const struct session *s);

#endif
