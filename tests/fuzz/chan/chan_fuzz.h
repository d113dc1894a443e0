/* Fixed keys and certificates for the channel fuzz target and its corpus
 * generator: with fixed identity and ephemeral keys the handshake is the
 * same every time, so seeds can hold valid handshake messages and frames.
 *
 * An input is: mode (1 byte), chunk (1 byte: feed size, 0 = all at once),
 * then the bytes for that mode:
 *   FZ_HS_RESPONDER  to a fresh responder (the initiator's side of a
 *                    handshake, then its frames);
 *   FZ_HS_INITIATOR  to a fresh initiator, after its HELLO;
 *   FZ_FRAMES        to the initiator of an established pair (frames from
 *                    the responder);
 *   FZ_ROUNDTRIP     payloads (2-byte big-endian length, bytes) sealed by
 *                    one side and fed to the other: they must come out
 *                    unchanged. */
#ifndef CHAN_FUZZ_H
#define CHAN_FUZZ_H

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chan.h"
#include "dkey.h"
#include "record.h"

enum fz_mode {
	FZ_HS_RESPONDER = 0,
	FZ_HS_INITIATOR = 1,
	FZ_FRAMES = 2,
	FZ_ROUNDTRIP = 3,
	FZ_MODES
};

struct fz_node {
	struct dkey key;
	uint8_t cert[RECORD_MAX];
	size_t cert_len;
	uint8_t eph[CHAN_EPH_LEN];
};

static struct dkey fz_root;
static struct fz_node fz_init_node, fz_resp_node;

static void
fz_key(struct dkey *k, uint8_t seed_byte)
{
	uint8_t seed[crypto_sign_SEEDBYTES];

	memset(seed, seed_byte, sizeof(seed));
	memset(k, 0, sizeof(*k));
	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	dkey_id(k->pk, k->id);
	k->has_secret = 1;
}

static void
fz_node_make(struct fz_node *n, uint8_t seed_byte, const char *site,
    const char *name)
{
	struct record_cert c;
	const char *why = NULL;
	int len;

	fz_key(&n->key, seed_byte);
	memset(n->eph, seed_byte + 0x40, sizeof(n->eph));
	memset(&c, 0, sizeof(c));
	memcpy(c.pk, n->key.pk, DKEY_PK_LEN);
	c.role = ROLE_NODE;
	strcpy(c.site, site);
	strcpy(c.name, name);
	c.issued = 1700000000;
	strcpy(c.origin, "root");
	c.origin_seq = 1;
	len = record_encode_cert(&c, &fz_root, n->cert, sizeof(n->cert), &why);
	if (len < 0)
		abort();
	n->cert_len = (size_t)len;
}

static int
fz_trust(const uint8_t *env, size_t len, const struct record *cert,
    struct chan_peer *peer, const char **why_r, void *arg)
{
	if (record_verify(cert, fz_root.pk) != 0) {
		*why_r = "not signed by the root";
		return -1;
	}
	if (cert->u.cert.role != ROLE_NODE && cert->u.cert.role != ROLE_SITE) {
		*why_r = "wrong role";
		return -1;
	}
	return 0;
}

static void
fz_setup(void)
{
	if (dkey_init() < 0)
		abort();
	fz_key(&fz_root, 0x01);
	fz_node_make(&fz_init_node, 0x02, "fra", "fra-node1");
	fz_node_make(&fz_resp_node, 0x03, "ams", "ams-node1");
}

static struct chan *
fz_chan(enum chan_role role)
{
	const struct fz_node *n = role == CHAN_INITIATOR ? &fz_init_node :
	    &fz_resp_node;
	struct chan_config cfg;
	const char *why = NULL;
	struct chan *c;

	memset(&cfg, 0, sizeof(cfg));
	cfg.role = role;
	cfg.key = &n->key;
	cfg.cert = n->cert;
	cfg.cert_len = n->cert_len;
	cfg.trust = fz_trust;
	cfg.ephemeral_seed = n->eph;
	if ((c = chan_new(&cfg, &why)) == NULL)
		abort();
	return c;
}

/* Moves from's handshake output into to; every message must be taken. */
static enum chan_result
fz_move(struct chan *from, struct chan *to)
{
	uint8_t buf[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	enum chan_result r = CHAN_AGAIN;
	const uint8_t *p, *pl;
	size_t n, off = 0, used, plen;

	if ((p = chan_out(from, &n)) == NULL)
		return CHAN_AGAIN;
	memcpy(buf, p, n);
	chan_out_done(from, n);
	while (off < n) {
		r = chan_feed(to, buf + off, n - off, &used, &pl, &plen);
		off += used;
		if (r == CHAN_ERROR || r == CHAN_FRAME)
			abort();
	}
	return r;
}

/* An established pair, the same keys every time. */
static void
fz_pair(struct chan **i_r, struct chan **r_r)
{
	struct chan *i = fz_chan(CHAN_INITIATOR), *r = fz_chan(CHAN_RESPONDER);

	fz_move(i, r);
	fz_move(r, i);
	fz_move(i, r);
	if (!chan_established(i) || !chan_established(r))
		abort();
	*i_r = i;
	*r_r = r;
}

#endif
