/* Messages between the directory agents of the nodes taking part in a
 * move, carried as PEER_FRAME_MOVE frames on the inter-node channel
 * (peers.h), which authenticates and encrypts them.
 *
 * The coordinator is a node of the owner site A; the target is a node of
 * site B; A's other nodes take part in the freeze.
 *
 *   PREPARE   A -> B   the MOVING record (envelope): store it and take
 *                      user from site A; backend "" = B's choice;
 *                      folders[0]: the source's INBOX (UIDVALIDITY, and
 *                      its GUID in the first 16 bytes of digest)
 *   PREPARED  B -> A   ok, the back end B chose, or error
 *   FREEZE    A -> A'  the FROZEN record (envelope): store it, end the
 *                      user's sessions, answer
 *   FROZEN    A' -> A  ok, sessions ended, or error
 *   VERIFY    A -> B   the FROZEN record (stored first, so that B holds
 *                      the user's logins until the TRANSFER); describe
 *                      your copy: every folder, and the bodies
 *                      of messages at or above body_from's UID per folder
 *                      (folders not listed: every body)
 *   VERIFIED  B -> A   ok and the folders, or error
 *   COMMIT    A -> B   the TRANSFER record (envelope): store it, sign
 *                      ACTIVE
 *   COMMITTED B -> A   ok, or error
 *   ABORT     A -> B   the move is off (B keeps its partial copy: a
 *                      copy of A's mailbox a later move brings up to
 *                      date; Dovecot never deletes an INBOX)
 *   ABORTED   B -> A   ok, or error
 *
 * A message is a msgpack array:
 *   [version (1), type, id, user, site, backend, ok, error, record (bin),
 *    kicked, folders, body_from, truncated]
 * every field present in every type (unused ones empty: "", false, 0, an
 * empty bin, empty arrays), so that one decoder checks them all; a folder
 * is [name, uidvalidity, uidnext, messages, digest (bin 32)] and a
 * body_from entry [name, uid]. id is the move's (answers carry their
 * request's). Every string, count and the whole message are bounded
 * (MOVE_MSG_*), on encode and on decode; strings are printable (no
 * control characters); a message of another version is refused. */
#ifndef MOVE_MSG_H
#define MOVE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"

#define MOVE_MSG_VERSION 1
#define MOVE_MSG_MAX (768 * 1024)	/* one encoded message */
#define MOVE_MSG_ERROR_MAX 255
#define MOVE_FOLDER_NAME_MAX 255	/* bytes of a folder name (mUTF-7) */
#define MOVE_FOLDERS_MAX 1000		/* folders in one VERIFIED */
#define MOVE_DIGEST_LEN 32

enum move_msg_type {
	MOVE_MSG_PREPARE = 1,
	MOVE_MSG_PREPARED = 2,
	MOVE_MSG_FREEZE = 3,
	MOVE_MSG_FROZEN = 4,
	MOVE_MSG_VERIFY = 5,
	MOVE_MSG_VERIFIED = 6,
	MOVE_MSG_COMMIT = 7,
	MOVE_MSG_COMMITTED = 8,
	MOVE_MSG_ABORT = 9,
	MOVE_MSG_ABORTED = 10,
};

struct move_folder {
	char name[MOVE_FOLDER_NAME_MAX + 1];
	uint64_t uidvalidity, uidnext, messages;
	uint8_t digest[MOVE_DIGEST_LEN];
};

struct move_body_from {
	char name[MOVE_FOLDER_NAME_MAX + 1];
	uint64_t uid;
};

/* One message. Large (the folder arrays): keep it on the heap. */
struct move_msg {
	enum move_msg_type type;
	uint64_t id;
	char user[RECORD_USER_MAX + 1];
	char site[RECORD_SITE_MAX + 1];		/* PREPARE: the owner site */
	char backend[RECORD_NAME_MAX + 1];	/* PREPARE, PREPARED */
	bool ok;				/* answers */
	char error[MOVE_MSG_ERROR_MAX + 1];	/* answers with ok false */
	/* PREPARE, FREEZE, VERIFY, COMMIT: a record envelope. Decoding points into the
	 * buffer; encoding reads from the caller's memory. */
	const uint8_t *record;
	size_t record_len;			/* <= RECORD_MAX */
	uint64_t kicked;			/* FROZEN: sessions ended */
	size_t n_folders;			/* VERIFIED */
	struct move_folder folders[MOVE_FOLDERS_MAX];
	bool truncated;				/* VERIFIED: more than fit */
	size_t n_body_from;			/* VERIFY */
	struct move_body_from body_from[MOVE_FOLDERS_MAX];
};

/* Encodes m into out (size bytes). Returns the length, or -1 when a field
 * is over its limit, a string has a control character, or out is too
 * small. */
int move_msg_encode(const struct move_msg *m, uint8_t *out, size_t size);

/* Decodes len bytes into *m (pure; m->record points into buf, NULL when
 * empty). 0, or -1 with *why_r (static). */
int move_msg_decode(const uint8_t *buf, size_t len, struct move_msg *m,
    const char **why_r);

const char *move_msg_type_name(enum move_msg_type t);

#endif
