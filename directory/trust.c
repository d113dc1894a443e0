/* The one trust rule (trust.h says it) and the memory that lets a batch
 * ask its source once per key. */
#include "trust.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mm_util.h"

#define TRUST_HASH_LEN 16	/* BLAKE2b of a certificate's body */
#define TRUST_KEYS_MIN 16	/* slots of a context's first table */
#define NOT_ASKED (-2)

/* What a context knows of one key. */
struct trust_key {
	uint8_t id[DKEY_ID_LEN];
	bool used;			/* the slot holds a key */
	bool held;			/* a certificate is held */
	bool root_signed;
	int revoked;			/* 1, 0, or NOT_ASKED */
	struct record_cert cert;
	uint8_t hash[TRUST_HASH_LEN];	/* of the certificate's body */
};

/* Roles each use takes, as bits (1 << role). */
#define R(role) (1u << (role))
static const unsigned use_roles[TRUST_USES] = {
	[TRUST_USE_RECORD] = R(ROLE_SITE) | R(ROLE_NODE) | R(ROLE_OPERATOR),
	[TRUST_USE_KEPT] = R(ROLE_SITE) | R(ROLE_NODE) | R(ROLE_OPERATOR),
	[TRUST_USE_LOG] = R(ROLE_SITE) | R(ROLE_NODE) | R(ROLE_OPERATOR),
	[TRUST_USE_ROOT] = 0,
	[TRUST_USE_CERT] = R(ROLE_SITE) | R(ROLE_NODE) | R(ROLE_OPERATOR) |
	    R(ROLE_TRANSPORT),
	[TRUST_USE_NODE] = R(ROLE_SITE) | R(ROLE_NODE),
	[TRUST_USE_SESSION] = R(ROLE_SITE) | R(ROLE_NODE) | R(ROLE_TRANSPORT),
	[TRUST_USE_TRANSPORT] = R(ROLE_TRANSPORT),
};
#undef R

static const char *const verdict_names[TRUST_VERDICTS] = {
	[TRUST_OK] = "ok",
	[TRUST_UNKNOWN_KEY] = "unknown-key",
	[TRUST_NO_ROOT] = "no-root",
	[TRUST_BAD_ROOT_SIGNATURE] = "bad-root-signature",
	[TRUST_REVOKED] = "revoked",
	[TRUST_EXPIRED] = "expired",
	[TRUST_WRONG_ROLE] = "wrong-role",
	[TRUST_WRONG_SITE] = "wrong-site",
	[TRUST_WRONG_NAME] = "wrong-name",
	[TRUST_STORE_ERROR] = "store-error",
};

static const char *const verdict_texts[TRUST_VERDICTS] = {
	[TRUST_OK] = "trusted",
	[TRUST_UNKNOWN_KEY] = "no certificate for the key",
	[TRUST_NO_ROOT] = "no root key",
	[TRUST_BAD_ROOT_SIGNATURE] = "not signed by the root",
	[TRUST_REVOKED] = "key revoked",
	[TRUST_EXPIRED] = "certificate expired",
	[TRUST_WRONG_ROLE] = "certificate role not allowed here",
	[TRUST_WRONG_SITE] = "certified for another site",
	[TRUST_WRONG_NAME] = "certified under another name",
	[TRUST_STORE_ERROR] = "store unreadable",
};

static const char *const use_names[TRUST_USES] = {
	[TRUST_USE_RECORD] = "record",
	[TRUST_USE_KEPT] = "kept",
	[TRUST_USE_LOG] = "log",
	[TRUST_USE_ROOT] = "root",
	[TRUST_USE_CERT] = "cert",
	[TRUST_USE_NODE] = "node",
	[TRUST_USE_SESSION] = "session",
	[TRUST_USE_TRANSPORT] = "transport",
};

const char *
trust_verdict_name(enum trust_verdict v)
{
	return (unsigned)v < TRUST_VERDICTS ? verdict_names[v] : "invalid";
}

const char *
trust_verdict_text(enum trust_verdict v)
{
	return (unsigned)v < TRUST_VERDICTS ? verdict_texts[v] :
	    "invalid verdict";
}

const char *
trust_use_name(enum trust_use u)
{
	return (unsigned)u < TRUST_USES ? use_names[u] : "invalid";
}

/* ---- the rule -------------------------------------------------------- */

enum trust_verdict
trust_decide(const struct trust_facts *f, const uint8_t key_id[DKEY_ID_LEN],
    const uint8_t *pk, enum trust_use use, const char *site,
    const char *name, uint64_t now)
{
	const struct record_cert *c = f->cert;
	uint8_t root_id[DKEY_ID_LEN];

	if ((unsigned)use >= TRUST_USES)
		return TRUST_WRONG_ROLE;
	if (use == TRUST_USE_ROOT) {
		if (f->root_pk == NULL)
			return TRUST_NO_ROOT;
		dkey_id(f->root_pk, root_id);
		if (memcmp(key_id, root_id, DKEY_ID_LEN) != 0 ||
		    (pk != NULL && memcmp(pk, f->root_pk, DKEY_PK_LEN) != 0))
			return TRUST_UNKNOWN_KEY;
		return TRUST_OK;
	}
	if (c == NULL || (pk != NULL && memcmp(pk, c->pk, DKEY_PK_LEN) != 0))
		return TRUST_UNKNOWN_KEY;
	if (f->root_pk == NULL)
		return TRUST_NO_ROOT;
	if (!f->root_signed)
		return TRUST_BAD_ROOT_SIGNATURE;
	if (f->revoked && use != TRUST_USE_LOG)
		return TRUST_REVOKED;
	if (c->expires != 0 && c->expires <= now && use != TRUST_USE_KEPT &&
	    use != TRUST_USE_LOG)
		return TRUST_EXPIRED;
	if ((unsigned)c->role >= 32 || (use_roles[use] & (1u << c->role)) == 0)
		return TRUST_WRONG_ROLE;
	if (site != NULL && strcmp(site, c->site) != 0)
		return TRUST_WRONG_SITE;
	if (name != NULL && strcmp(name, c->name) != 0)
		return TRUST_WRONG_NAME;
	return TRUST_OK;
}

/* ---- what a context learns ------------------------------------------- */

void
trust_init(struct trust_ctx *t, const struct trust_src *src)
{
	memset(t, 0, sizeof(*t));
	t->src = *src;
	t->have_root = NOT_ASKED;
}

void
trust_clear(struct trust_ctx *t)
{
	free(t->keys);
	t->keys = NULL;
	t->cap = t->n = 0;
	t->have_root = NOT_ASKED;
}

void
trust_forget(struct trust_ctx *t)
{
	if (t->keys != NULL)
		memset(t->keys, 0, t->cap * sizeof(*t->keys));
	t->n = 0;
	t->have_root = NOT_ASKED;
}

int
trust_root(struct trust_ctx *t, uint8_t pk_r[DKEY_PK_LEN])
{
	if (t->have_root < 0)		/* not asked, or failed */
		t->have_root = t->src.root(t->src.arg, t->root);
	if (t->have_root == 1)
		memcpy(pk_r, t->root, DKEY_PK_LEN);
	return t->have_root;
}

/* Key ids are hashes already: their first bytes spread well. */
static size_t
slot_of(const uint8_t id[DKEY_ID_LEN], size_t cap)
{
	size_t h = 0;
	int i;

	for (i = 0; i < DKEY_ID_LEN; i++)
		h = (h << 8) | id[i];
	return h & (cap - 1);
}

static struct trust_key *
slot_find(struct trust_key *keys, size_t cap, const uint8_t id[DKEY_ID_LEN])
{
	size_t i = slot_of(id, cap);

	while (keys[i].used && memcmp(keys[i].id, id, DKEY_ID_LEN) != 0)
		i = (i + 1) & (cap - 1);
	return &keys[i];
}

static void
grow(struct trust_ctx *t)
{
	size_t cap = t->cap == 0 ? TRUST_KEYS_MIN : t->cap * 2, i;
	struct trust_key *keys = xcalloc(cap, sizeof(*keys));

	for (i = 0; i < t->cap; i++)
		if (t->keys[i].used)
			*slot_find(keys, cap, t->keys[i].id) = t->keys[i];
	free(t->keys);
	t->keys = keys;
	t->cap = cap;
}

/* Whether the root signed r: its key id names the root and the signature
 * holds. */
static bool
root_signed(const struct record *r, const uint8_t root[DKEY_PK_LEN])
{
	uint8_t id[DKEY_ID_LEN];

	dkey_id(root, id);
	return memcmp(r->key_id, id, DKEY_ID_LEN) == 0 &&
	    record_verify(r, root) == 0;
}

static void
body_hash(const struct record *r, uint8_t out[TRUST_HASH_LEN])
{
	crypto_generichash(out, TRUST_HASH_LEN, r->body, r->body_len, NULL,
	    0);
}

/* What the source holds of key id, learnt once. NULL when the source
 * failed. */
static struct trust_key *
learn(struct trust_ctx *t, const uint8_t id[DKEY_ID_LEN])
{
	uint8_t buf[RECORD_MAX], root[DKEY_PK_LEN], cid[DKEY_ID_LEN];
	struct trust_key *k;
	struct record r;
	size_t len = 0;
	int g, have_root;

	if (t->cap > 0) {
		k = slot_find(t->keys, t->cap, id);
		if (k->used)
			return k;
	}
	if ((have_root = trust_root(t, root)) < 0)
		return NULL;
	if ((g = t->src.cert(t->src.arg, id, buf, &len)) < 0)
		return NULL;
	if ((t->n + 1) * 2 > t->cap)
		grow(t);
	k = slot_find(t->keys, t->cap, id);
	memset(k, 0, sizeof(*k));
	memcpy(k->id, id, DKEY_ID_LEN);
	k->revoked = NOT_ASKED;
	if (g == 1 && len <= RECORD_MAX &&
	    record_decode(buf, len, &r, NULL) == 0 && r.kind == RECORD_CERT) {
		dkey_id(r.u.cert.pk, cid);
		/* An entry under another key's id certifies nothing. */
		if (memcmp(cid, id, DKEY_ID_LEN) == 0) {
			k->held = true;
			k->cert = r.u.cert;
			k->root_signed = have_root == 1 &&
			    root_signed(&r, root);
			body_hash(&r, k->hash);
		}
	}
	k->used = true;
	t->n++;
	return k;
}

/* The revocation state of k, learnt once. -1 when the source failed. */
static int
revoked(struct trust_ctx *t, struct trust_key *k)
{
	if (k->revoked == NOT_ASKED) {
		int g = t->src.revoked(t->src.arg, k->id);

		if (g < 0)
			return -1;
		k->revoked = g == 1;
	}
	return k->revoked;
}

int
trust_cert(struct trust_ctx *t, const uint8_t key_id[DKEY_ID_LEN],
    struct record_cert *cert_r)
{
	struct trust_key *k = learn(t, key_id);

	if (k == NULL)
		return -1;
	if (!k->held)
		return 0;
	*cert_r = k->cert;
	return 1;
}

int
trust_revoked(struct trust_ctx *t, const uint8_t key_id[DKEY_ID_LEN])
{
	struct trust_key *k = learn(t, key_id);

	return k == NULL ? -1 : revoked(t, k);
}

/* The rule over what t knows of k, for a certificate c with its root
 * signature's standing. */
static enum trust_verdict
decide(struct trust_ctx *t, struct trust_key *k,
    const struct record_cert *c, bool signed_by_root, const uint8_t *pk,
    enum trust_use use, const char *site, const char *name, uint64_t now)
{
	struct trust_facts f;
	int rv = 0;

	/* Revocations are asked only of keys that have a certificate. */
	if (c != NULL && (rv = revoked(t, k)) < 0)
		return TRUST_STORE_ERROR;
	memset(&f, 0, sizeof(f));
	f.root_pk = t->have_root == 1 ? t->root : NULL;
	f.cert = c;
	f.root_signed = signed_by_root;
	f.revoked = rv == 1;
	return trust_decide(&f, k->id, pk, use, site, name, now);
}

enum trust_verdict
trust_check(struct trust_ctx *t, const uint8_t key_id[DKEY_ID_LEN],
    const uint8_t *pk, enum trust_use use, const char *site,
    const char *name, uint64_t now, struct record_cert *cert_r)
{
	struct trust_facts f;
	struct trust_key *k;
	uint8_t root[DKEY_PK_LEN];
	int g;

	if (use == TRUST_USE_ROOT) {
		if ((g = trust_root(t, root)) < 0)
			return TRUST_STORE_ERROR;
		memset(&f, 0, sizeof(f));
		f.root_pk = g == 1 ? t->root : NULL;
		return trust_decide(&f, key_id, pk, use, site, name, now);
	}
	if ((k = learn(t, key_id)) == NULL)
		return TRUST_STORE_ERROR;
	if (k->held && cert_r != NULL)
		*cert_r = k->cert;
	return decide(t, k, k->held ? &k->cert : NULL, k->root_signed, pk,
	    use, site, name, now);
}

enum trust_verdict
trust_check_shown(struct trust_ctx *t, const struct record *cert,
    enum trust_use use, const char *site, const char *name, uint64_t now,
    struct record_cert *cert_r, bool *held_r)
{
	const struct record_cert *c = &cert->u.cert;
	struct trust_key *k;
	uint8_t id[DKEY_ID_LEN], h[TRUST_HASH_LEN];
	bool is_held;

	if (held_r != NULL)
		*held_r = false;
	if (cert->kind != RECORD_CERT)
		return TRUST_UNKNOWN_KEY;
	dkey_id(c->pk, id);
	if ((k = learn(t, id)) == NULL)
		return TRUST_STORE_ERROR;
	body_hash(cert, h);
	/* The same bytes as held, or a newer or equal certificate held: that
	 * one says (its root signature is known already). */
	is_held = k->held && (memcmp(h, k->hash, TRUST_HASH_LEN) == 0 ||
	    k->cert.issued >= c->issued);
	if (held_r != NULL)
		*held_r = is_held;
	if (is_held) {
		if (cert_r != NULL)
			*cert_r = k->cert;
		return decide(t, k, &k->cert, k->root_signed, c->pk, use, site,
		    name, now);
	}
	if (cert_r != NULL)
		*cert_r = *c;
	return decide(t, k, c, t->have_root == 1 && root_signed(cert, t->root),
	    c->pk, use, site, name, now);
}
