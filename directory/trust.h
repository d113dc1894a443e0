/* One trust rule: whether a key may do a thing.
 *
 * Every place that trusts a key asks here: the accept rule (the signer of
 * a record, of a carried hand-over, of a certificate or revocation, and
 * the certificate itself), the writer's own signer, the log fill,
 * store_verify, the keys listing and the node's preflight, the gossip
 * channel's handshake and the cross-site links. The rule is trust_decide,
 * a pure function of what is known of the key (struct trust_facts).
 * trust_check gathers that from a source (a store's read view, or the
 * accept rule's write transaction: store.h, store_int.h) and keeps it for
 * the life of the context, so that a batch asks its store once per key,
 * not once per record.
 *
 * A key's certificate is the one its source holds under the key id
 * (trust_check), or one a peer shows (trust_check_shown: a certificate
 * the source holds for the same key, issued no earlier, decides
 * instead). It counts only when signed by the cluster root. What each use
 * (enum trust_use says what it is for) takes:
 *
 *   use        roles                     revoked   expired
 *   RECORD     site, node, operator      refused   refused
 *   KEPT       site, node, operator      refused   taken
 *   LOG        site, node, operator      taken     taken
 *   ROOT       the root key itself; no certificate
 *   CERT       any                       refused   refused
 *   NODE       site, node                refused   refused
 *   SESSION    site, node, transport     refused   refused
 *   TRANSPORT  transport                 refused   refused
 *
 * Site and name, when the caller gives them (NULL: not compared), must be
 * the certificate's, for every use but ROOT. Callers give: RECORD the
 * record's site (for a hand-over, the owner it hands over from, once the
 * high-water mark names it) and origin; KEPT the record's site and origin
 * in verify, the owner alone for a carried hand-over; LOG the origin;
 * NODE the node's site and node-name in preflight, neither for a peer;
 * SESSION the site asked for when dialling; TRANSPORT the node's site.
 * Expired: expires != 0 and expires <= now. Records accepted while their
 * signer was valid stay valid after it expires (KEPT); a revocation ends
 * everything but the log's place.
 *
 * The checks run in this order; the first that fails answers: a
 * certificate for the key (UNKNOWN_KEY; also when it is for another
 * public key than the one given), a root key to check it with (NO_ROOT),
 * the root's signature on it (BAD_ROOT_SIGNATURE), revocation (REVOKED),
 * expiry (EXPIRED), role (WRONG_ROLE), site (WRONG_SITE), name
 * (WRONG_NAME). ROOT answers NO_ROOT without a root key, UNKNOWN_KEY for
 * any key but the root's. */
#ifndef TRUST_H
#define TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkey.h"
#include "record.h"

enum trust_use {
	TRUST_USE_RECORD,	/* sign a user record now */
	TRUST_USE_KEPT,		/* a user record signed earlier: one stored
				 * (verify), a hand-over a later one carries */
	TRUST_USE_LOG,		/* a superseded record kept in its origin's
				 * log, so that the log has no gap */
	TRUST_USE_ROOT,		/* sign a certificate or a revocation */
	TRUST_USE_CERT,		/* a certificate on its own: learnt, listed */
	TRUST_USE_NODE,		/* run a node: its gossip channel, preflight */
	TRUST_USE_SESSION,	/* the peer of a cross-site link */
	TRUST_USE_TRANSPORT,	/* a proxy worker's own cross-site identity */
};

#define TRUST_USES (TRUST_USE_TRANSPORT + 1)

enum trust_verdict {
	TRUST_OK = 0,
	TRUST_UNKNOWN_KEY,
	TRUST_NO_ROOT,
	TRUST_BAD_ROOT_SIGNATURE,
	TRUST_REVOKED,
	TRUST_EXPIRED,
	TRUST_WRONG_ROLE,
	TRUST_WRONG_SITE,
	TRUST_WRONG_NAME,
	TRUST_STORE_ERROR,	/* the source could not be read */
};

#define TRUST_VERDICTS (TRUST_STORE_ERROR + 1)

/* What is known of one key. */
struct trust_facts {
	const uint8_t *root_pk;		/* NULL: no root key set */
	const struct record_cert *cert;	/* its certificate; NULL: none */
	bool root_signed;		/* cert bears the root's signature */
	bool revoked;			/* a revocation of the key is held */
};

/* The rule, pure: may the key key_id (with public key pk, when the caller
 * knows it; NULL: not compared) be used for use, for site and under name
 * (NULL: not compared), at now (unix seconds)? */
enum trust_verdict trust_decide(const struct trust_facts *f,
    const uint8_t key_id[DKEY_ID_LEN], const uint8_t *pk,
    enum trust_use use, const char *site, const char *name, uint64_t now);

/* Short names for key=value logs ("revoked") and phrases for messages
 * ("key revoked"). Static strings. */
const char *trust_verdict_name(enum trust_verdict v);
const char *trust_verdict_text(enum trust_verdict v);
const char *trust_use_name(enum trust_use u);

/* Where trust_check learns what it knows. Each answers 1 (found), 0
 * (none) or -1 (the source failed). cert copies the envelope held under
 * key id (at most RECORD_MAX bytes) into buf; an entry that is no
 * certificate of that key certifies nothing. */
struct trust_src {
	int (*root)(void *arg, uint8_t pk_r[DKEY_PK_LEN]);
	int (*cert)(void *arg, const uint8_t id[DKEY_ID_LEN], uint8_t *buf,
	    size_t *len_r);
	int (*revoked)(void *arg, const uint8_t id[DKEY_ID_LEN]);
	void *arg;
};

struct trust_key;

/* What a context learnt from its source: kept until trust_forget or
 * trust_clear. One thread at a time. */
struct trust_ctx {
	struct trust_src src;
	int have_root;			/* -2: not asked yet */
	uint8_t root[DKEY_PK_LEN];
	struct trust_key *keys;		/* open addressing by key id */
	size_t cap, n;
};

/* src is copied; what src->arg points to must outlive t. */
void trust_init(struct trust_ctx *t, const struct trust_src *src);
void trust_clear(struct trust_ctx *t);
/* The source's trust state changed (a certificate or revocation was
 * stored): what t learnt is asked again. */
void trust_forget(struct trust_ctx *t);

/* The rule for key key_id, with the certificate its source holds.
 * *cert_r (may be NULL) is that certificate whenever one is held, whatever
 * the verdict. TRUST_STORE_ERROR when the source failed. */
enum trust_verdict trust_check(struct trust_ctx *t,
    const uint8_t key_id[DKEY_ID_LEN], const uint8_t *pk,
    enum trust_use use, const char *site, const char *name, uint64_t now,
    struct record_cert *cert_r);

/* The rule for the key of a certificate a peer shows (cert: a decoded
 * CERT envelope, not yet checked against the root). A certificate the
 * source holds for the same key id, issued no earlier, decides instead
 * (for another public key: UNKNOWN_KEY). *cert_r (may be NULL) is the
 * certificate that decided; *held_r (may be NULL) whether the source holds
 * it, so that a caller knows when it has one to learn. */
enum trust_verdict trust_check_shown(struct trust_ctx *t,
    const struct record *cert, enum trust_use use, const char *site,
    const char *name, uint64_t now, struct record_cert *cert_r,
    bool *held_r);

/* For the accept rule, which checks signatures ahead of it and learns
 * certificates and revocations as it goes: the root key (1 with *pk_r, 0
 * none, -1 error), the certificate held for key id whatever its standing
 * (1 with *cert_r, 0 none, -1 error), and whether key id is revoked (1, 0,
 * -1). Through the context's memory, as trust_check. */
int trust_root(struct trust_ctx *t, uint8_t pk_r[DKEY_PK_LEN]);
int trust_cert(struct trust_ctx *t, const uint8_t key_id[DKEY_ID_LEN],
    struct record_cert *cert_r);
int trust_revoked(struct trust_ctx *t, const uint8_t key_id[DKEY_ID_LEN]);

#endif
