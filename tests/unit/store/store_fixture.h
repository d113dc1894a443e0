/* Keys, certificates and records for the store tests. */
#ifndef STORE_FIXTURE_H
#define STORE_FIXTURE_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkey.h"
#include "record.h"
#include "store.h"

#define FX_NOW 1700000000ULL
#define FX_ENV_MAX RECORD_MAX

static uint64_t fx_root_seq;

/* A certificate for subject at site, signed by signer (the root). */
/* Certified names by public key, so that a user record's origin is the
 * name in its signer's certificate, as the accept rule wants. */
static struct {
	uint8_t pk[DKEY_PK_LEN];
	char name[RECORD_NAME_MAX + 1];
} fx_names[32];
static size_t fx_n_names;

static inline const char *
fx_name_of(const struct dkey *k, const char *site)
{
	static char fallback[RECORD_NAME_MAX + 1];
	size_t i;

	for (i = 0; i < fx_n_names; i++)
		if (memcmp(fx_names[i].pk, k->pk, DKEY_PK_LEN) == 0)
			return fx_names[i].name;
	snprintf(fallback, sizeof(fallback), "%s-node", site);
	return fallback;
}

static inline size_t
fx_cert(const struct dkey *signer, const struct dkey *subject,
    const char *site, uint64_t issued, uint64_t expires, uint8_t *out)
{
	struct record_cert c;
	const char *why = NULL;
	int n;

	memset(&c, 0, sizeof(c));
	memcpy(c.pk, subject->pk, DKEY_PK_LEN);
	c.role = ROLE_SITE;
	snprintf(c.site, sizeof(c.site), "%s", site);
	snprintf(c.name, sizeof(c.name), "%s-node", site);
	if (fx_n_names < sizeof(fx_names) / sizeof(fx_names[0])) {
		memcpy(fx_names[fx_n_names].pk, subject->pk, DKEY_PK_LEN);
		memcpy(fx_names[fx_n_names].name, c.name, sizeof(c.name));
		fx_n_names++;
	}
	c.issued = issued;
	c.expires = expires;
	snprintf(c.origin, sizeof(c.origin), "root");
	c.origin_seq = ++fx_root_seq;
	n = record_encode_cert(&c, signer, out, FX_ENV_MAX, &why);
	if (n < 0) {
		fprintf(stderr, "fx_cert: %s\n", why);
		abort();
	}
	return (size_t)n;
}

static inline size_t
fx_revoke(const struct dkey *signer, const uint8_t id[DKEY_ID_LEN],
    uint8_t *out)
{
	struct record_revoke v;
	const char *why = NULL;
	int n;

	memset(&v, 0, sizeof(v));
	memcpy(v.key_id, id, DKEY_ID_LEN);
	v.timestamp = FX_NOW;
	snprintf(v.reason, sizeof(v.reason), "compromised");
	snprintf(v.origin, sizeof(v.origin), "root");
	v.origin_seq = ++fx_root_seq;
	n = record_encode_revoke(&v, signer, out, FX_ENV_MAX, &why);
	if (n < 0) {
		fprintf(stderr, "fx_revoke: %s\n", why);
		abort();
	}
	return (size_t)n;
}

/* A user record; transfer may be NULL. */
static inline size_t
fx_user(const struct dkey *k, const char *user, const char *site,
    enum user_state state, uint64_t epoch, uint64_t seq, const char *backend,
    const uint8_t *transfer, size_t tlen, uint8_t *out)
{
	struct record_user u;
	const char *why = NULL;
	int n;

	memset(&u, 0, sizeof(u));
	snprintf(u.user, sizeof(u.user), "%s", user);
	snprintf(u.site, sizeof(u.site), "%s", site);
	snprintf(u.backend, sizeof(u.backend), "%s", backend);
	u.state = state;
	u.epoch = epoch;
	u.seq = seq;
	snprintf(u.origin, sizeof(u.origin), "%s", fx_name_of(k, site));
	u.origin_seq = seq + 1000 * epoch;
	u.timestamp = FX_NOW;
	u.transfer = transfer;
	u.transfer_len = tlen;
	n = record_encode_user(&u, k, out, FX_ENV_MAX, &why);
	if (n < 0) {
		fprintf(stderr, "fx_user: %s\n", why);
		abort();
	}
	return (size_t)n;
}

/* Removes a store directory made by the tests. */
static inline void
fx_rmdir(const char *dir)
{
	char path[512];
	static const char *const files[] = { "data.mdb", "lock.mdb" };
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		(void)remove(path);
	}
	(void)remove(dir);
}

#endif
