/* A client of Dovecot's doveadm TCP protocol: the move engine asks a back
 * end's doveadm server (its `service doveadm { inet_listener ... }`) to
 * run one command for one user, on a connection of its own.
 *
 * The protocol (as Dovecot 2.3.19 speaks it), TAB-separated lines ending
 * in LF:
 *   C: VERSION \t doveadm-server \t 1 \t 0
 *   S: "-" (credentials wanted) or "+" (none needed: a 0600 UNIX socket)
 *   C: PLAIN \t base64("\0doveadm\0" PASSWORD)        (after "-" only)
 *   S: "+" (accepted), or "-" and the server closes (a wrong password)
 *   C: \t USER \t COMMAND \t ARG ...          (the first field: flags, "")
 *   S: the output, then LF, then the status line.
 * We announce minor version 0 on purpose: to a client of minor 1 or more
 * the server answers "VERSION \t doveadm-client \t 1 \t 2" and then
 * multiplexes its output with its log (binary frames), which this client
 * does not read. A VERSION line from the server is still accepted, once,
 * before or after its "-" / "+" (older servers sent it after).
 *
 * The command name is one field, spaces kept: "mailbox status",
 * "mailbox list", "mailbox delete" (the server also takes the words as
 * separate fields; we send argv[0] as given). USER names the user for
 * the connection; "-u USER" in the arguments is what the command acts on
 * (when both are there, -u wins). An escaped NUL in an argument ends it.
 *
 * The output is NOT one line per row: every field is escaped and followed
 * by TAB, and nothing marks where a row ends; the whole output is one
 * "line" ended by the LF before the status. The reader has to know how
 * many fields a row has (doveadm_set_row_fields): e.g. for "mailbox status
 * -u U 'messages uidvalidity' '*'" the mailbox name comes first:
 *   "here\t0\t1796688296\tSent\t0\t1796688294\tINBOX\t3\t1796688293\t\n"
 * A field of many lines (fetch "hdr", "text", "body") arrives escaped
 * inside that same line ("Subject: x\001n\001n" ...), so a row holding
 * a message body over DOVEADM_LINE_MAX is refused; a command without
 * output ("backup", "sync", "mailbox create") sends the LF alone.
 *
 * The status line: "+" for success, else "-" and the exit code's name:
 *   "-NOUSER" (67: no such user, here or at a dsync's other end),
 *   "-TEMPFAIL" (75), "-USAGE" (64: a bad option or argument),
 *   "-NOTFOUND" (68: e.g. no such mailbox), "-NOPERM" (77),
 *   "-PROTOCOL" (76), "-DATAERR" (65), "-NOREPLICATE" (1001),
 *   "-UNKNOWN" (any other code), and "-" alone for an unknown command;
 * older servers sent the number ("-67"). Measured: an unknown user gives
 * "\n-NOUSER\n", a missing mailbox "\n-NOTFOUND\n", an unknown command
 * "\n-\n". Some failures close the connection with no status at all (a
 * command that dies: an unknown "mailbox status" field, "sync" to a
 * destination it cannot reach; an unknown flag; fewer than three fields):
 * that is DOVEADM_UNREACHABLE here.
 *
 * Fields are escaped both ways: \001 starts an escape, then '1' for \001,
 * 't' TAB, 'r' CR, 'n' LF, '0' NUL. We refuse any other escape and an
 * escaped NUL (fields are C strings here).
 *
 * The parser is pure (doveadm_parse_line); the client runs on a libevent
 * loop and never calls back from inside doveadm_run. */
#ifndef DOVEADM_H
#define DOVEADM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

#define DOVEADM_LINE_MAX (64 * 1024)	/* one line, or one output row,
					 * from the server (escaped) */
#define DOVEADM_FIELDS_MAX 64		/* fields in one output row */
#define DOVEADM_ARGS_MAX 16		/* command words and arguments */
#define DOVEADM_ARG_MAX 1024		/* one argument, unescaped */

/* ---- pure parsing -------------------------------------------------- */

enum doveadm_line_kind {
	DOVEADM_LINE_VERSION,	/* the server's VERSION line */
	DOVEADM_LINE_OK,	/* "+" */
	DOVEADM_LINE_FAIL,	/* "-" or "-REASON" */
	DOVEADM_LINE_ROW,	/* output fields, each ending in TAB; "" is a
				 * row of none */
};

struct doveadm_line {
	enum doveadm_line_kind kind;
	unsigned major, minor;		/* VERSION */
	int exit_code;			/* FAIL: the number, or -1 */
	const char *reason;		/* FAIL: after "-" ("" if none) */
	size_t n_fields;		/* ROW */
	const char *fields[DOVEADM_FIELDS_MAX];	/* ROW, unescaped */
};

/* Classifies and splits one line (len bytes, LF removed) in place: line is
 * modified (fields are unescaped into it and NUL-terminated; nothing past
 * line[len - 1] is touched) and the pointers of *l point into it.
 * in_output says where the conversation is: false during the handshake
 * (VERSION, "+", "-" and nothing else), true after the command (rows: each
 * field followed by TAB; "+"; "-..." without a TAB, printable). A row is
 * also what the client cuts out of the output stream: some whole fields
 * with their TABs. FAIL: exit_code from the name or the number after "-"
 * (-1 for "-", "-UNKNOWN" or another word). Returns 0, or -1 with *why_r
 * (static): a line over DOVEADM_LINE_MAX, a bad escape, an escaped NUL,
 * more than DOVEADM_FIELDS_MAX fields, a NUL, CR or LF byte, a row
 * without its last TAB, a VERSION line that is not doveadm-client 1.x,
 * another line in the handshake. */
int doveadm_parse_line(char *line, size_t len, bool in_output,
    struct doveadm_line *l, const char **why_r);

/* Escapes s (\001, TAB, CR, LF) into out (outlen bytes, NUL-terminated).
 * Returns the length, or -1 when it does not fit. */
int doveadm_escape(const char *s, char *out, size_t outlen);

/* ---- the client ---------------------------------------------------- */

enum doveadm_status {
	DOVEADM_OK,		/* "+" */
	DOVEADM_FAILED,		/* the command failed ("-..."): see exit_code */
	DOVEADM_NOUSER,		/* exit code 67: the back end has no such user */
	DOVEADM_AUTH,		/* the server refused our password */
	DOVEADM_UNREACHABLE,	/* connect failed, or closed before the end */
	DOVEADM_TIMEOUT,	/* no status within the time given */
	DOVEADM_PROTOCOL,	/* the server said something we cannot read */
};

struct doveadm_result {
	enum doveadm_status status;
	int exit_code;		/* DOVEADM_FAILED / NOUSER: the code or -1 */
	const char *error;	/* for logs and operators: never NULL; valid
				 * during the callback */
};

/* Each output row, fields unescaped, valid during the call (see
 * doveadm_set_row_fields for what a row is). Return false to stop: the
 * command is dropped and done reports DOVEADM_PROTOCOL with the error
 * "stopped by the caller". doveadm_cancel may be called from here. */
typedef bool (*doveadm_row_cb)(void *arg, size_t n_fields,
    const char *const *fields);
typedef void (*doveadm_done_cb)(void *arg, const struct doveadm_result *r);

struct doveadm_cmd;

/* Runs argv[0..argc) (the command words, then its arguments, as doveadm's
 * own command line takes them: e.g. "sync", "-1", "-u", USER, "tcp:H:P")
 * for user at host:port (numeric IPv4/IPv6 or a name resolved
 * synchronously), authenticating with password (NULL: none offered).
 * row (may be NULL) gets each output row; done is called exactly once,
 * later from the loop, unless doveadm_cancel comes first. timeout_ms
 * bounds the whole command (0: none: a dsync pass may take minutes). The
 * strings are copied. Returns the command, owned by the caller until done
 * has been called (it is freed after done returns), or NULL with *why_r
 * (static) when an argument is over a limit or has no room. */
struct doveadm_cmd *doveadm_run(struct event_base *base, const char *host,
    uint16_t port, const char *password, const char *user,
    const char *const *argv, size_t argc, uint64_t timeout_ms,
    doveadm_row_cb row, doveadm_done_cb done, void *arg, const char **why_r);

/* Says how many fields one output row of c has (1..DOVEADM_FIELDS_MAX),
 * as the command's arguments decide (the server does not mark rows): the
 * output is cut into rows of n fields, each at most DOVEADM_LINE_MAX
 * bytes escaped, and output that ends inside a row is DOVEADM_PROTOCOL.
 * Without it (n = 0) the whole output is one row, held to the same
 * limits: right for a command printing one row or none. Empty output
 * gives no row either way. Call it before returning to the loop after
 * doveadm_run. 0, or -1 when n is over the limit. */
int doveadm_set_row_fields(struct doveadm_cmd *c, size_t n);

/* Drops a command before its done: the connection is closed and nothing is
 * called back. NULL is fine; so is a call from inside row. */
void doveadm_cancel(struct doveadm_cmd *c);

const char *doveadm_status_name(enum doveadm_status s);

#endif
