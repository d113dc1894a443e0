/* What a copy is checked by: a description of one user's mailbox on one
 * back end, made through its doveadm server, that the source and the
 * target of a move compare.
 *
 * Per folder: its name, UIDVALIDITY, UIDNEXT, message count, and a digest
 * (SHA-256) over every message in UID order: its UID, its flags and
 * keywords (sorted; \Recent left out: it shows for whichever session
 * saw the message first) and its GUID (which dsync keeps). Folders are in
 * byte order of their names. Two back ends hold the same mailbox, as far
 * as clients can tell, when every folder's name, UIDVALIDITY, count and
 * digest agree. (Bodies are not digested yet: dsync copies them by GUID,
 * and a body digest for what each pass copied is still to come.) */
#ifndef VERIFY_H
#define VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "move_msg.h"

struct event_base;
struct mm_backend_conf;

/* Folders (up to MOVE_FOLDERS_MAX; *truncated when there were more) and
 * n, or an error: valid during the call. */
typedef void (*verify_done_cb)(void *arg, const char *error,
    const struct move_folder *folders, size_t n, bool truncated);

struct verify;

/* Describes user's mailbox on back end be (its doveadm server); done is
 * called once, later, unless verify_cancel comes first. NULL with *why_r
 * when be has no doveadm server. */
struct verify *verify_start(struct event_base *base,
    const struct mm_backend_conf *be, const char *user, uint64_t timeout_ms,
    verify_done_cb done, void *arg, const char **why_r);
void verify_cancel(struct verify *v);	/* NULL is fine */

/* Compares two descriptions: NULL when they agree, else the first
 * difference as text in buf (size bytes). */
const char *verify_compare(const struct move_folder *a, size_t na,
    const struct move_folder *b, size_t nb, char *buf, size_t size);

#endif
