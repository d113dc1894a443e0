/* The moves a coordinator runs, kept in an LMDB environment of their own
 * (the directory "moves" beside the directory store), one entry per user:
 * a phase is written, durably, before the node acts on it, so that a node
 * killed at any instant finds on restart what it was doing. Finished and
 * aborted moves stay until pruned (for `mmctl moves`).
 *
 * An entry is a msgpack array, versioned:
 *   [version (1), id, user, from_site, to_site, from_backend, to_backend,
 *    engine, phase, started_ms, phase_ms, updated_ms, bytes, passes,
 *    freezes, freeze_ms, abort_requested, error, body_from]
 * with body_from an array of [folder, uid] (the bodies verified so far).
 * Times are unix milliseconds. The decoder is as strict as the wire
 * formats' (bounds, types, no trailing bytes). */
#ifndef MOVE_DB_H
#define MOVE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "move_msg.h"
#include "record.h"

#define MOVE_DB_VERSION 1
#define MOVE_DB_ENTRY_MAX (512 * 1024)
#define MOVE_ENGINE_MAX 15

enum move_phase {
	MOVE_PREPARE = 1,	/* asking the target site; nothing signed */
	MOVE_COPY = 2,		/* MOVING signed: copy, then catch-up passes */
	MOVE_FREEZE = 3,	/* FROZEN signed: freeze, final pass, verify */
	MOVE_COMMIT = 4,	/* TRANSFER signed (the commit point): the
				 * pass for late mail, the target's ACTIVE */
	MOVE_DONE = 5,
	MOVE_ABORTING = 6,	/* the owner's ACTIVE, the target's cleanup */
	MOVE_ABORTED = 7,
};

/* One entry. Large (body_from): keep it on the heap. */
struct move {
	uint64_t id;
	char user[RECORD_USER_MAX + 1];
	char from_site[RECORD_SITE_MAX + 1], to_site[RECORD_SITE_MAX + 1];
	char from_backend[RECORD_NAME_MAX + 1];
	char to_backend[RECORD_NAME_MAX + 1];	/* "" until PREPARED */
	char engine[MOVE_ENGINE_MAX + 1];	/* "dsync" */
	enum move_phase phase;
	uint64_t started_ms, phase_ms, updated_ms;
	uint64_t bytes;			/* copied so far, as far as known */
	uint32_t passes;		/* copy passes run */
	uint32_t freezes;		/* freezes tried */
	uint64_t freeze_ms;		/* the last freeze's length */
	bool abort_requested;
	char error[MOVE_MSG_ERROR_MAX + 1];	/* the last one; "" if none */
	size_t n_body_from;
	struct move_body_from body_from[MOVE_FOLDERS_MAX];
};

/* Whether a move in phase p is still running (not DONE nor ABORTED). */
bool move_phase_running(enum move_phase p);
const char *move_phase_name(enum move_phase p);

/* Pure codec of one entry: the length written to out (size bytes) or -1;
 * decode 0, or -1 with *why_r (static). */
int move_encode(const struct move *mv, uint8_t *out, size_t size);
int move_decode(const uint8_t *buf, size_t len, struct move *mv,
    const char **why_r);

/* One thread at a time: the handle has one buffer for the entry it
 * writes. */
struct move_db;

/* Opens (creating it, mode 0700) the environment in directory path. NULL
 * with *errstr_r (malloc'd, names the path and the cause). */
struct move_db *move_db_open(const char *path, char **errstr_r);
void move_db_close(struct move_db *db);	/* NULL is fine */

/* Writes mv (replacing the user's entry) and syncs it to disk before it
 * returns. 0, or -1 (logged). */
int move_db_put(struct move_db *db, const struct move *mv);
/* The user's entry into *mv_r: 1 found, 0 none, -1 error or a damaged
 * entry (logged). */
int move_db_get(struct move_db *db, const char *user, struct move *mv_r);
/* Calls cb for every entry in user order, until it returns false; a
 * damaged entry is logged and skipped. The entry is valid during the
 * call; cb may get and put (it walks a snapshot). 0, or -1 (logged). */
int move_db_foreach(struct move_db *db,
    bool (*cb)(const struct move *mv, void *arg), void *arg);
/* Deletes the entries of moves finished (DONE or ABORTED) before
 * now_ms - keep_ms. Returns how many, or -1. */
long move_db_prune(struct move_db *db, uint64_t now_ms, uint64_t keep_ms);

#endif
