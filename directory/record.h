/* Signed directory records: the wire and storage format.
 *
 * An envelope is a msgpack array of three: [body (bin), key id (bin 8),
 * signature (bin 64)]. The signature is Ed25519 by the key with that id over
 * RECORD_SIG_PREFIX || body, the body exactly as stored and received: a
 * record is never re-encoded before it is verified.
 *
 * The body is a msgpack array whose first two elements are the format
 * version and the kind; the rest, in fixed order, per kind:
 *   USER   [1, 1, user, site, backend, state, epoch, seq, origin,
 *           origin_seq, timestamp, target_site, transfer]
 *   CERT   [1, 2, public key (bin 32), role, site, name, issued, expires,
 *           origin, origin_seq]
 *   REVOKE [1, 3, key id (bin 8), timestamp, reason, origin, origin_seq]
 * Strings are msgpack str; integers unsigned; target_site is "" when not
 * moving; transfer is nil or the envelope (bin) of the previous owner's
 * TRANSFER record that hands the user to this record's site.
 * A body with another version, a wrong element count, a wrong type, a string
 * over its limit or trailing bytes is rejected.
 *
 * Every value must be in its shortest msgpack form (what msgpack-c's packer
 * writes), the envelope included: the envelope is not signed, and without
 * one canonical form a relay could re-encode a record into other bytes.
 * Field rules: epoch >= 1; backend may be "" only in DELETED and TRANSFER
 * records; a transfer must decode as a USER record in state TRANSFER (its
 * own transfer field is not decoded: one level only). */
#ifndef RECORD_H
#define RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkey.h"

#define RECORD_VERSION 1
#define RECORD_SIG_PREFIX "MailMesh directory record v1"	/* + NUL */
#define RECORD_MAX 4096		/* largest envelope accepted from anyone */
#define RECORD_USER_MAX 255	/* normalised user name */
#define RECORD_SITE_MAX 32	/* [a-z0-9-], 1..32 */
#define RECORD_NAME_MAX 64	/* back end, node and origin names */
#define RECORD_REASON_MAX 128
/* Most bytes an envelope adds around its body: array, bin headers, key id
 * and signature. */
#define RECORD_ENVELOPE_OVERHEAD (1 + 3 + 2 + DKEY_ID_LEN + 2 + DKEY_SIG_LEN)

enum record_kind {
	RECORD_USER = 1,
	RECORD_CERT = 2,
	RECORD_REVOKE = 3,
};

enum user_state {
	USTATE_ACTIVE = 1,
	USTATE_MOVING = 2,	/* being copied to target_site; still served here */
	USTATE_FROZEN = 3,	/* final copy: logins held, mail gets 4xx */
	USTATE_TRANSFER = 4,	/* signed by the old owner: site is the new one */
	USTATE_DELETED = 5,	/* tombstone */
};

enum cert_role {
	ROLE_SITE = 1,		/* may sign records of its site */
	ROLE_NODE = 2,		/* one node of its site: same rights */
	ROLE_OPERATOR = 3,	/* an operator's tool for its site */
	/* A proxy worker's identity on the inter-node channel (cross-site
	 * sessions). Signs nothing the store accepts. */
	ROLE_TRANSPORT = 4,
};

struct record_user {
	char user[RECORD_USER_MAX + 1];
	char site[RECORD_SITE_MAX + 1];		/* owner after this record */
	char backend[RECORD_NAME_MAX + 1];	/* a name the site defines */
	enum user_state state;
	uint64_t epoch;		/* grows when ownership moves */
	uint64_t seq;		/* grows with every other change */
	char origin[RECORD_NAME_MAX + 1];	/* signing node */
	uint64_t origin_seq;	/* gap-free per origin */
	uint64_t timestamp;	/* unix seconds; display and expiry only */
	char target_site[RECORD_SITE_MAX + 1];	/* "" unless moving */
	const uint8_t *transfer;	/* points into the decoded buffer */
	size_t transfer_len;		/* 0: none */
};

struct record_cert {
	uint8_t pk[DKEY_PK_LEN];
	enum cert_role role;
	char site[RECORD_SITE_MAX + 1];
	char name[RECORD_NAME_MAX + 1];		/* node or operator name */
	uint64_t issued;
	uint64_t expires;	/* 0: never */
	char origin[RECORD_NAME_MAX + 1];
	uint64_t origin_seq;
};

struct record_revoke {
	uint8_t key_id[DKEY_ID_LEN];
	uint64_t timestamp;
	char reason[RECORD_REASON_MAX + 1];
	char origin[RECORD_NAME_MAX + 1];
	uint64_t origin_seq;
};

/* A decoded envelope. body and the transfer pointer point into the buffer
 * given to record_decode, which must outlive this struct. */
struct record {
	enum record_kind kind;
	const uint8_t *body;
	size_t body_len;
	uint8_t key_id[DKEY_ID_LEN];
	uint8_t sig[DKEY_SIG_LEN];
	union {
		struct record_user user;
		struct record_cert cert;
		struct record_revoke revoke;
	} u;
};

/* Decodes an envelope of len bytes (pure: no allocation, no I/O).
 * Returns 0, or -1 with *why_r set to a static reason. Does not check the
 * signature. */
int record_decode(const uint8_t *buf, size_t len, struct record *r,
    const char **why_r);

/* For readers of a store (which checked every record it holds when it
 * took it): decodes a USER envelope straight into *u, with the checks of
 * record_decode except that a carried transfer is bounded but not decoded
 * again, and that the key id and signature are skipped. u->transfer
 * points into buf. Returns 0, or -1 with *why_r (a static reason; also for
 * another kind). Pure: no allocation, no I/O. */
int record_decode_user(const uint8_t *buf, size_t len, struct record_user *u,
    const char **why_r);

/* 0 if r's signature is valid for pk, -1 otherwise. */
int record_verify(const struct record *r, const uint8_t pk[DKEY_PK_LEN]);

/* Encode a body and sign it with k into out. Returns the envelope length,
 * or -1 if a field is invalid (*why_r) or out is too small. */
int record_encode_user(const struct record_user *u, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r);
/* The two halves of record_encode_user, for writers that number records
 * in order and sign them in parallel: the unsigned body of u into out
 * (the same checks; -1 also when the sealed envelope would exceed
 * RECORD_MAX, so sealing the body cannot fail for that), and the signed
 * envelope of a body. Both return a length, or -1 with *why_r. */
int record_encode_user_body(const struct record_user *u, uint8_t *out,
    size_t outlen, const char **why_r);
int record_seal(const uint8_t *body, size_t body_len, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r);
int record_encode_cert(const struct record_cert *c, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r);
int record_encode_revoke(const struct record_revoke *v, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r);

/* Name checks shared by the encoder, the decoder and the tools. */
bool record_site_valid(const char *site);
bool record_name_valid(const char *name);
/* A normalised user: 1..RECORD_USER_MAX bytes, no control characters, no
 * spaces, no ASCII upper case. */
bool record_user_valid(const char *user);

const char *record_state_name(enum user_state s);
int record_state_parse(const char *name, enum user_state *s_r);
const char *record_role_name(enum cert_role r);
int record_role_parse(const char *name, enum cert_role *r_r);

#endif
