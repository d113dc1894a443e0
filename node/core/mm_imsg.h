/* Messages between the processes of one node (the parent, the directory
 * agent, the proxy workers), over the socketpairs the parent makes when it
 * forks each child.
 *
 * A frame is a fixed header and a msgpack body:
 *
 *   len (4, BE: body bytes) | version (1) | type (1) | src (2, BE) |
 *   dst (2, BE) | id (4, BE) | body
 *
 * src and dst name a process: MM_IMSG_PARENT, MM_IMSG_AGENT, a worker
 * (MM_IMSG_WORKER + its index), or MM_IMSG_WORKERS (every worker: the
 * parent hands a copy to each one alive and tells the sender how many).
 * The parent forwards frames between its children by their header alone
 * and reads only the bodies addressed to itself; every child restarts on
 * its own, and gets a new socketpair when it does. id pairs answers with
 * their request.
 *
 * Bodies, by type (all msgpack arrays):
 *   SESSIONS_REQ  [user]             user "" : every session
 *   SESSIONS      [last (bool), [[id, user, client, proto, state, backend,
 *                  since, bytes_in, bytes_out]...]]
 *                 one worker's open sessions; a worker with many sends
 *                 several frames, the last one marked; since is unix
 *                 seconds, bytes_in what the client sent, bytes_out what
 *                 it was sent
 *   FANOUT        [workers]          the parent, to the sender of a frame
 *                 for MM_IMSG_WORKERS: how many workers it went to
 *   KICK          [user, reason]     end the user's logged-in sessions,
 *                 each with the protocol's temporary farewell and reason
 *   KICKED        [sessions]         one worker: how many it ended
 *   ROUTE         [user, site, backend]   a move's dsync streams for user
 *                 go to back end backend of site site (site "": none)
 *   ACK           [ok (bool)]        one worker: done, or it could not
 * Every string, count and the body are bounded (MM_IMSG_*_MAX), on encode
 * and on decode; a frame of another version is refused whole. */
#ifndef MM_IMSG_H
#define MM_IMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MM_IMSG_VERSION 1
#define MM_IMSG_HDR_LEN 14
#define MM_IMSG_BODY_MAX (256 * 1024)
#define MM_IMSG_SESSIONS_MAX 256	/* sessions in one frame */
#define MM_IMSG_USER_MAX 255
#define MM_IMSG_TEXT_MAX 96		/* client, proto, state, back end */

#define MM_IMSG_PARENT 0
#define MM_IMSG_AGENT 1
#define MM_IMSG_WORKER 16		/* + the worker's index */
#define MM_IMSG_WORKERS 0xffff

enum mm_imsg_type {
	MM_IMSG_SESSIONS_REQ = 1,
	MM_IMSG_SESSIONS = 2,
	MM_IMSG_FANOUT = 3,
	MM_IMSG_KICK = 4,
	MM_IMSG_KICKED = 5,
	MM_IMSG_ROUTE = 6,
	MM_IMSG_ACK = 7,
};

#define MM_IMSG_TYPES (MM_IMSG_ACK + 1)

struct mm_imsg_hdr {
	uint32_t len;
	uint8_t version;
	uint8_t type;
	uint16_t src, dst;
	uint32_t id;
};

/* Not NUL-terminated; points into the decoded buffer or the encoder's
 * caller's memory. */
struct mm_imsg_str {
	const char *p;
	size_t len;
};

struct mm_imsg_session {
	uint64_t id;
	struct mm_imsg_str user, client, proto, state, backend;
	uint64_t since, bytes_in, bytes_out;
};

/* One body; only the fields of its type are meaningful. Large: keep it on
 * the heap. */
struct mm_imsg_body {
	struct mm_imsg_str user;		/* SESSIONS_REQ, KICK, ROUTE */
	struct mm_imsg_str site, backend;	/* ROUTE */
	bool ok;				/* ACK */
	struct mm_imsg_str reason;		/* KICK */
	uint64_t kicked;			/* KICKED */
	bool last;				/* SESSIONS */
	size_t n_sessions;
	struct mm_imsg_session sessions[MM_IMSG_SESSIONS_MAX];
	uint64_t workers;			/* FANOUT */
};

/* The header in buf (MM_IMSG_HDR_LEN bytes): 0, or -1 with *why_r (a
 * version other than ours, a body over MM_IMSG_BODY_MAX). */
int mm_imsg_hdr_decode(const uint8_t *buf, struct mm_imsg_hdr *h,
    const char **why_r);
void mm_imsg_hdr_encode(const struct mm_imsg_hdr *h, uint8_t *buf);

/* A body of the given type (pure; strings point into buf): 0, or -1 with
 * *why_r. */
int mm_imsg_body_decode(uint8_t type, const uint8_t *buf, size_t len,
    struct mm_imsg_body *b, const char **why_r);
/* Encodes b as a body of type into out (size bytes): its length, or -1
 * when a field is over its limit or out is too small. */
int mm_imsg_body_encode(uint8_t type, const struct mm_imsg_body *b,
    uint8_t *out, size_t size);

/* A NUL-terminated string as an mm_imsg_str. */
struct mm_imsg_str mm_imsg_str(const char *s);
/* s into out (size bytes), NUL-terminated, cut to fit. */
void mm_imsg_str_copy(const struct mm_imsg_str *s, char *out, size_t size);

#endif
