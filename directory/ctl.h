/* The control protocol between mmctl and a node's directory agent, over a
 * local unix stream socket. Pure codec: no I/O.
 *
 * A frame is a 12-byte header, then the body:
 *   magic "MMCT" (4) | version u16 BE (1) | type u16 BE | length u32 BE
 * The header is checked (magic, version, type, length <= CTL_FRAME_MAX)
 * before any of the body is buffered. Bodies are msgpack:
 *   REQUEST   [op (str), args (array of str)]
 *   RESPONSE  [status (uint), message (str), rows (array of array of str)]
 *   END       same as RESPONSE
 *   PROGRESS  [done (uint), total (uint)]
 * A client sends one REQUEST and reads zero or more RESPONSE frames (rows
 * of a long answer, in order) and PROGRESS frames, then one END frame that
 * carries the final status and message (and maybe the last rows). Then it
 * may send the next REQUEST on the same connection. A listing streams:
 * any number of RESPONSE frames, sent as the node reads them, so that
 * neither side holds the whole answer; the row bounds below are per
 * frame.
 *
 * Imports stream: the client sends many "import-rows" REQUESTs, each with
 * at most CTL_IMPORT_ROWS (user, backend, state) triples flattened into
 * args, and gets one END per chunk. Every count and size is bounded below,
 * on both encode and decode. Status values are mmctl's exit codes. */
#ifndef CTL_H
#define CTL_H

#include <stddef.h>
#include <stdint.h>

#define CTL_MAGIC "MMCT"
#define CTL_VERSION 1
#define CTL_HEADER_LEN 12
#define CTL_FRAME_MAX (1024 * 1024)	/* body bytes */
#define CTL_OP_MAX 32		/* bytes in an op name */
#define CTL_STR_MAX 4096	/* bytes in any other string */
#define CTL_MESSAGE_MAX 4096
#define CTL_ARGS_MAX 4096	/* strings in a request */
#define CTL_ROWS_MAX 65536	/* rows in one frame */
#define CTL_COLS_MAX 32		/* strings in one row */
#define CTL_IMPORT_ROWS 1000	/* triples per import-rows request */

enum ctl_type {
	CTL_REQUEST = 1,
	CTL_RESPONSE = 2,
	CTL_PROGRESS = 3,
	CTL_END = 4,
};

/* Status of a response: the exit code mmctl gives. */
enum ctl_status {
	CTL_OK = 0,
	CTL_FAILED = 1,		/* failed, not found, invalid */
	CTL_USAGE = 2,
	CTL_TEMP = 3,		/* busy, store locked: try again */
	CTL_PERM = 4,		/* permission */
	CTL_STATUS_MAX = 4,
};

/* A table of strings: rows of up to CTL_COLS_MAX columns each. */
struct ctl_row {
	size_t n;
	char **col;
};

struct ctl_rows {
	size_t n;
	struct ctl_row *row;
	size_t cap;
	size_t bytes;		/* encoded size so far, to cut frames */
};

/* A decoded frame; every string is NUL-terminated and owned by it. */
struct ctl_msg {
	enum ctl_type type;
	/* REQUEST */
	char *op;
	size_t argc;
	char **argv;
	/* RESPONSE, END */
	enum ctl_status status;
	char *message;
	struct ctl_rows rows;
	/* PROGRESS */
	uint64_t done, total;
};

/* ---- tables ---- */

void ctl_rows_init(struct ctl_rows *t);
void ctl_rows_clear(struct ctl_rows *t);
/* Appends a row of n strings (copied). -1 (nothing added) if a limit of
 * this header would be passed: n or a string's length. A table may hold
 * more rows than one frame carries (CTL_ROWS_MAX, CTL_FRAME_MAX): its
 * sender cuts it into frames, its reader adds them up. */
int ctl_rows_add(struct ctl_rows *t, size_t n, const char *const *cols);
/* What a row adds to a frame at most (as bytes counts it), to cut
 * frames. */
size_t ctl_row_bytes(const struct ctl_row *row);

/* ---- encoding ---- */

/* Each returns a malloc'd frame (header and body) owned by the caller and
 * its length in *len_r, or NULL if a limit would be passed (then *why_r). */
uint8_t *ctl_encode_request(const char *op, size_t argc,
    const char *const *argv, size_t *len_r, const char **why_r);
uint8_t *ctl_encode_response(enum ctl_type type, enum ctl_status status,
    const char *message, const struct ctl_rows *rows, size_t *len_r,
    const char **why_r);
uint8_t *ctl_encode_progress(uint64_t done, uint64_t total, size_t *len_r);

/* ---- decoding ---- */

/* Checks a header from the first len bytes of buf. Returns 1 with the type
 * and body length, 0 if fewer than CTL_HEADER_LEN bytes are there yet, -1
 * (with *why_r, static) on a bad magic, version, type or a length over
 * CTL_FRAME_MAX. */
int ctl_header_decode(const uint8_t *buf, size_t len, enum ctl_type *type_r,
    uint32_t *body_len_r, const char **why_r);

/* Decodes a body of a frame of that type. A body that is short, has
 * trailing bytes, a wrong type anywhere, a string with a NUL byte, or any
 * count or length over its limit is refused: NULL with *why_r (static).
 * The result is owned by the caller: ctl_msg_free. */
struct ctl_msg *ctl_body_decode(enum ctl_type type, const uint8_t *body,
    size_t len, const char **why_r);

/* Header and body from buf: 1 with *msg_r and *used_r (bytes taken), 0 if
 * the frame is not complete yet, -1 with *why_r. */
int ctl_frame_decode(const uint8_t *buf, size_t len, struct ctl_msg **msg_r,
    size_t *used_r, const char **why_r);

void ctl_msg_free(struct ctl_msg *m);

const char *ctl_type_name(enum ctl_type t);

#endif
