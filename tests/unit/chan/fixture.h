/* Shared by the channel tests: a cluster root, node keys with root-signed
 * certificates, and a trust callback that checks what a node checks. */
#ifndef CHAN_TEST_FIXTURE_H
#define CHAN_TEST_FIXTURE_H

#include <string.h>

#include "chan.h"
#include "dkey.h"
#include "record.h"

#define FX_NOW 1700000000ULL
#define FX_MAX_REVOKED 4

struct fx_node {
	struct dkey key;
	uint8_t cert[RECORD_MAX];
	size_t cert_len;
};

/* What the trust callback knows: the root key and the revoked key ids. */
struct fx_trust {
	uint8_t root_pk[DKEY_PK_LEN];
	uint8_t revoked[FX_MAX_REVOKED][DKEY_ID_LEN];
	int nrevoked;
	int calls;
	const char *rename_site;	/* non-NULL: the callback sets it */
};

static void
fx_make_node(struct fx_node *n, const struct dkey *signer,
    enum cert_role role, const char *site, const char *name,
    uint64_t expires)
{
	struct record_cert c;
	const char *why = NULL;
	int len;

	dkey_generate(&n->key);
	memset(&c, 0, sizeof(c));
	memcpy(c.pk, n->key.pk, DKEY_PK_LEN);
	c.role = role;
	strcpy(c.site, site);
	strcpy(c.name, name);
	c.issued = FX_NOW - 3600;
	c.expires = expires;
	strcpy(c.origin, "root");
	c.origin_seq = 1;
	len = record_encode_cert(&c, signer, n->cert, sizeof(n->cert), &why);
	if (len < 0)
		abort();
	n->cert_len = (size_t)len;
}

static int
fx_trust_cb(const uint8_t *env, size_t len, const struct record *cert,
    struct chan_peer *peer, const char **why_r, void *arg)
{
	struct fx_trust *t = arg;
	int i;

	t->calls++;
	if (record_verify(cert, t->root_pk) != 0) {
		*why_r = "not signed by the cluster root";
		return -1;
	}
	for (i = 0; i < t->nrevoked; i++)
		if (memcmp(t->revoked[i], peer->key_id, DKEY_ID_LEN) == 0) {
			*why_r = "key revoked";
			return -1;
		}
	if (cert->u.cert.expires != 0 && cert->u.cert.expires <= FX_NOW) {
		*why_r = "certificate expired";
		return -1;
	}
	if (cert->u.cert.role != ROLE_NODE && cert->u.cert.role != ROLE_SITE) {
		*why_r = "wrong role";
		return -1;
	}
	if (t->rename_site != NULL)
		strcpy(peer->site, t->rename_site);
	return 0;
}

static struct chan *
fx_chan(enum chan_role role, const struct fx_node *n, struct fx_trust *t)
{
	struct chan_config cfg;
	struct chan *c;
	const char *why = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.role = role;
	cfg.key = &n->key;
	cfg.cert = n->cert;
	cfg.cert_len = n->cert_len;
	cfg.trust = fx_trust_cb;
	cfg.trust_arg = t;
	if ((c = chan_new(&cfg, &why)) == NULL)
		abort();
	return c;
}

#endif
