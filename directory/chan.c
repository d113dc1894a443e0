/* The inter-node channel: handshake and framing (see chan.h). */
#include "chan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mm_util.h"

#define CHAN_KEY_LEN 32
#define CHAN_HASH_LEN 32
#define CHAN_NONCE_LEN crypto_aead_chacha20poly1305_ietf_NPUBBYTES
#define CHAN_KDF_HS "MMchanHS"
#define CHAN_KDF_APP "MMchanAP"
#define CHAN_KDF_I2R 1
#define CHAN_KDF_R2I 2
/* A side sends at most two handshake messages before its peer answers. */
#define CHAN_HS_OUT_MAX (2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX))
#define CHAN_ERR_MAX 192
/* The frame buffer starts at this and doubles up to the largest frame. */
#define CHAN_FRAME_BUF_MIN 4096

enum chan_state {
	CS_I_WAIT_HELLO,	/* initiator: HELLO sent */
	CS_I_WAIT_AUTH,		/* initiator: handshake keys known */
	CS_R_WAIT_HELLO,	/* responder: nothing yet */
	CS_R_WAIT_AUTH,		/* responder: HELLO and AUTH sent */
	CS_OPEN,		/* frames both ways */
	CS_FAILED,
};

struct chan {
	enum chan_role role;
	enum chan_state state;

	struct dkey self;		/* secret wiped once AUTH is signed */
	uint8_t cert[RECORD_MAX];
	size_t cert_len;
	chan_trust_cb trust;
	void *trust_arg;

	uint8_t e_sk[CHAN_EPH_LEN];
	uint8_t e_pk[CHAN_EPH_LEN];
	uint8_t th[CHAN_HASH_LEN];	/* transcript so far */
	uint8_t prk[CHAN_KEY_LEN];
	uint8_t hs_tx[CHAN_KEY_LEN], hs_rx[CHAN_KEY_LEN];
	uint8_t tx[CHAN_KEY_LEN], rx[CHAN_KEY_LEN];
	uint64_t tx_n, rx_n;

	/* Input: a header (8 bytes in the handshake, 4 after), then a body
	 * of body_len bytes. */
	uint8_t hdr[CHAN_HS_HDR_LEN];
	size_t hdr_have;
	int in_body;
	size_t body_len, body_have;
	uint8_t hs_body[CHAN_HS_BODY_MAX];
	uint8_t *frame;
	size_t frame_cap;

	uint8_t out[CHAN_HS_OUT_MAX];
	size_t out_off, out_len;

	struct chan_peer peer;
	char err[CHAN_ERR_MAX];
};

static void
enter_state(struct chan *c, enum chan_state s)
{
	c->state = s;
}

static void
wipe_handshake(struct chan *c)
{
	dkey_clear(&c->self);
	sodium_memzero(c->e_sk, sizeof(c->e_sk));
	sodium_memzero(c->prk, sizeof(c->prk));
	sodium_memzero(c->hs_tx, sizeof(c->hs_tx));
	sodium_memzero(c->hs_rx, sizeof(c->hs_rx));
}

static void
wipe_all(struct chan *c)
{
	wipe_handshake(c);
	sodium_memzero(c->tx, sizeof(c->tx));
	sodium_memzero(c->rx, sizeof(c->rx));
	sodium_memzero(c->hs_body, sizeof(c->hs_body));
	if (c->frame != NULL)
		sodium_memzero(c->frame, c->frame_cap);
}

static enum chan_result fail(struct chan *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The one way into CS_FAILED: keeps the first reason, drops every key. */
static enum chan_result
fail(struct chan *c, const char *fmt, ...)
{
	va_list ap;

	if (c->state != CS_FAILED) {
		va_start(ap, fmt);
		vsnprintf(c->err, sizeof(c->err), fmt, ap);
		va_end(ap);
		wipe_all(c);
		enter_state(c, CS_FAILED);
	}
	return CHAN_ERROR;
}

static void
put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
make_nonce(uint64_t n, uint8_t nonce[CHAN_NONCE_LEN])
{
	int i;

	memset(nonce, 0, CHAN_NONCE_LEN);
	for (i = 0; i < 8; i++)
		nonce[CHAN_NONCE_LEN - 1 - i] = (uint8_t)(n >> (8 * i));
}

/* th_r = BLAKE2b-256(th || hdr || body). */
static void
th_next(const uint8_t th[CHAN_HASH_LEN], const uint8_t *hdr,
    const uint8_t *body, size_t blen, uint8_t th_r[CHAN_HASH_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, CHAN_HASH_LEN);
	crypto_generichash_update(&st, th, CHAN_HASH_LEN);
	crypto_generichash_update(&st, hdr, CHAN_HS_HDR_LEN);
	crypto_generichash_update(&st, body, blen);
	crypto_generichash_final(&st, th_r, CHAN_HASH_LEN);
}

/* Appends a handshake message header to the output; returns where the
 * message starts. The buffer holds everything a side ever sends before
 * it is answered, so running out of room is a bug. */
static uint8_t *
out_reserve(struct chan *c, enum chan_msg_type type, size_t blen)
{
	uint8_t *m;

	if (blen > CHAN_HS_BODY_MAX ||
	    sizeof(c->out) - c->out_len < CHAN_HS_HDR_LEN + blen)
		abort();
	m = c->out + c->out_len;
	memcpy(m, CHAN_MAGIC, 4);
	m[4] = CHAN_VERSION;
	m[5] = (uint8_t)type;
	put_be16(m + 6, (uint16_t)blen);
	c->out_len += CHAN_HS_HDR_LEN + blen;
	return m;
}

static void
send_hello(struct chan *c)
{
	uint8_t *m = out_reserve(c, CHAN_MSG_HELLO, CHAN_EPH_LEN);

	memcpy(m + CHAN_HS_HDR_LEN, c->e_pk, CHAN_EPH_LEN);
	th_next(c->th, m, m + CHAN_HS_HDR_LEN, CHAN_EPH_LEN, c->th);
}

/* Derives a direction pair from prk: ours to tx, theirs to rx. */
static void
derive_pair(const struct chan *c, const uint8_t key[CHAN_KEY_LEN],
    const char *ctx, uint8_t tx[CHAN_KEY_LEN], uint8_t rx[CHAN_KEY_LEN])
{
	uint64_t mine = c->role == CHAN_INITIATOR ? CHAN_KDF_I2R : CHAN_KDF_R2I;
	uint64_t theirs = c->role == CHAN_INITIATOR ? CHAN_KDF_R2I :
	    CHAN_KDF_I2R;

	crypto_kdf_derive_from_key(tx, CHAN_KEY_LEN, mine, ctx, key);
	crypto_kdf_derive_from_key(rx, CHAN_KEY_LEN, theirs, ctx, key);
}

/* After both HELLOs (th covers them): handshake keys. */
static int
derive_handshake(struct chan *c, const uint8_t peer_e[CHAN_EPH_LEN])
{
	uint8_t s[crypto_scalarmult_BYTES];
	int rc = -1;

	if (crypto_scalarmult(s, c->e_sk, peer_e) != 0)
		goto done;	/* low-order point: no secret */
	crypto_generichash(c->prk, sizeof(c->prk), c->th, sizeof(c->th), s,
	    sizeof(s));
	derive_pair(c, c->prk, CHAN_KDF_HS, c->hs_tx, c->hs_rx);
	rc = 0;
done:
	sodium_memzero(s, sizeof(s));
	sodium_memzero(c->e_sk, sizeof(c->e_sk));
	return rc;
}

/* After both AUTHs (th is final): session keys; handshake secrets go. */
static void
derive_session(struct chan *c)
{
	uint8_t prk2[CHAN_KEY_LEN];

	crypto_generichash(prk2, sizeof(prk2), c->th, sizeof(c->th), c->prk,
	    sizeof(c->prk));
	derive_pair(c, prk2, CHAN_KDF_APP, c->tx, c->rx);
	sodium_memzero(prk2, sizeof(prk2));
	wipe_handshake(c);
	c->tx_n = c->rx_n = 0;
}

static const char *
sig_prefix(enum chan_role signer)
{
	return signer == CHAN_INITIATOR ? CHAN_SIG_INITIATOR :
	    CHAN_SIG_RESPONDER;
}

/* Our AUTH: sig over th, then our certificate, sealed under hs_tx. */
static void
send_auth(struct chan *c)
{
	size_t ptlen = DKEY_SIG_LEN + c->cert_len;
	uint8_t *m = out_reserve(c, CHAN_MSG_AUTH, ptlen + CHAN_TAG_LEN);
	uint8_t *body = m + CHAN_HS_HDR_LEN;
	uint8_t nonce[CHAN_NONCE_LEN];
	unsigned long long clen;

	dkey_sign(&c->self, sig_prefix(c->role), c->th, sizeof(c->th), body);
	dkey_clear(&c->self);
	memcpy(body + DKEY_SIG_LEN, c->cert, c->cert_len);
	make_nonce(0, nonce);
	crypto_aead_chacha20poly1305_ietf_encrypt(body, &clen, body, ptlen, m,
	    CHAN_HS_HDR_LEN, NULL, nonce, c->hs_tx);
	th_next(c->th, m, body, (size_t)clen, c->th);
}

/* The peer's AUTH, in hdr / hs_body: decrypt, check the signature over the
 * transcript before this message, ask the trust callback. */
static enum chan_result
recv_auth(struct chan *c)
{
	enum chan_role peer_role = c->role == CHAN_INITIATOR ?
	    CHAN_RESPONDER : CHAN_INITIATOR;
	uint8_t th_after[CHAN_HASH_LEN];
	uint8_t nonce[CHAN_NONCE_LEN];
	unsigned long long ptlen;
	const uint8_t *sig, *env;
	size_t envlen;
	struct record r;
	const char *why = NULL;

	/* The transcript takes the message as sent, before decryption. */
	th_next(c->th, c->hdr, c->hs_body, c->body_len, th_after);
	make_nonce(0, nonce);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(c->hs_body, &ptlen,
	    NULL, c->hs_body, c->body_len, c->hdr, CHAN_HS_HDR_LEN, nonce,
	    c->hs_rx) != 0)
		return fail(c, "handshake AUTH does not authenticate");
	sig = c->hs_body;
	env = c->hs_body + DKEY_SIG_LEN;
	envlen = (size_t)ptlen - DKEY_SIG_LEN;
	if (record_decode(env, envlen, &r, &why) < 0)
		return fail(c, "peer certificate malformed: %s", why);
	if (r.kind != RECORD_CERT)
		return fail(c, "peer sent a record that is no certificate");
	if (dkey_verify(r.u.cert.pk, sig_prefix(peer_role), c->th,
	    sizeof(c->th), sig) != 0)
		return fail(c, "peer's handshake signature does not verify");
	memset(&c->peer, 0, sizeof(c->peer));
	memcpy(c->peer.pk, r.u.cert.pk, DKEY_PK_LEN);
	dkey_id(c->peer.pk, c->peer.key_id);
	c->peer.role = r.u.cert.role;
	mm_strlcpy(c->peer.site, r.u.cert.site, sizeof(c->peer.site));
	mm_strlcpy(c->peer.name, r.u.cert.name, sizeof(c->peer.name));
	why = NULL;
	if (c->trust(env, envlen, &r, &c->peer, &why, c->trust_arg) != 0)
		return fail(c, "peer certificate refused: %s",
		    why != NULL ? why : "no reason given");
	/* The callback may not have left them unterminated. */
	c->peer.site[sizeof(c->peer.site) - 1] = '\0';
	c->peer.name[sizeof(c->peer.name) - 1] = '\0';
	memcpy(c->th, th_after, sizeof(c->th));
	return CHAN_AGAIN;
}

/* A whole handshake message is in hdr / hs_body. */
static enum chan_result
handshake_message(struct chan *c)
{
	const uint8_t *peer_e = c->hs_body;

	switch (c->state) {
	case CS_R_WAIT_HELLO:
		if (sodium_memcmp(peer_e, c->e_pk, CHAN_EPH_LEN) == 0)
			return fail(c, "peer echoed our ephemeral key");
		th_next(c->th, c->hdr, peer_e, CHAN_EPH_LEN, c->th);
		send_hello(c);
		if (derive_handshake(c, peer_e) < 0)
			return fail(c, "peer ephemeral key is degenerate");
		send_auth(c);
		enter_state(c, CS_R_WAIT_AUTH);
		return CHAN_AGAIN;
	case CS_I_WAIT_HELLO:
		if (sodium_memcmp(peer_e, c->e_pk, CHAN_EPH_LEN) == 0)
			return fail(c, "peer echoed our ephemeral key");
		th_next(c->th, c->hdr, peer_e, CHAN_EPH_LEN, c->th);
		if (derive_handshake(c, peer_e) < 0)
			return fail(c, "peer ephemeral key is degenerate");
		enter_state(c, CS_I_WAIT_AUTH);
		return CHAN_AGAIN;
	case CS_I_WAIT_AUTH:
		if (recv_auth(c) != CHAN_AGAIN)
			return CHAN_ERROR;
		send_auth(c);
		derive_session(c);
		enter_state(c, CS_OPEN);
		return CHAN_ESTABLISHED;
	case CS_R_WAIT_AUTH:
		if (recv_auth(c) != CHAN_AGAIN)
			return CHAN_ERROR;
		derive_session(c);
		enter_state(c, CS_OPEN);
		return CHAN_ESTABLISHED;
	default:
		abort();
	}
}

/* Checks a complete handshake header and sets body_len. */
static enum chan_result
handshake_header(struct chan *c)
{
	int want_hello = c->state == CS_I_WAIT_HELLO ||
	    c->state == CS_R_WAIT_HELLO;
	unsigned type = c->hdr[5];
	size_t len = (size_t)c->hdr[6] << 8 | c->hdr[7];

	if (memcmp(c->hdr, CHAN_MAGIC, 4) != 0)
		return fail(c, "handshake: bad magic");
	if (c->hdr[4] != CHAN_VERSION)
		return fail(c, "handshake: unsupported version %u",
		    (unsigned)c->hdr[4]);
	if (type != (want_hello ? CHAN_MSG_HELLO : CHAN_MSG_AUTH))
		return fail(c, "handshake: unexpected message type %u", type);
	if (want_hello && len != CHAN_EPH_LEN)
		return fail(c, "handshake: HELLO of %zu bytes", len);
	if (!want_hello && (len < CHAN_AUTH_MIN || len > CHAN_HS_BODY_MAX))
		return fail(c, "handshake: AUTH of %zu bytes (limit %d)", len,
		    CHAN_HS_BODY_MAX);
	c->body_len = len;
	return CHAN_AGAIN;
}

/* Checks a complete frame header, sets body_len, makes room for it. */
static enum chan_result
frame_header(struct chan *c)
{
	uint32_t len = mm_be32_get(c->hdr);
	size_t cap;
	uint8_t *nf;

	if (len < CHAN_TAG_LEN)
		return fail(c, "frame of %u bytes is shorter than its tag",
		    (unsigned)len);
	if (len > CHAN_FRAME_MAX + CHAN_TAG_LEN)
		return fail(c, "frame of %u bytes is over the limit of %d",
		    (unsigned)len, CHAN_FRAME_MAX + CHAN_TAG_LEN);
	c->body_len = len;
	if (c->frame_cap >= len)
		return CHAN_AGAIN;
	cap = c->frame_cap < CHAN_FRAME_BUF_MIN ? CHAN_FRAME_BUF_MIN :
	    c->frame_cap;
	while (cap < len)
		cap *= 2;
	if (cap > CHAN_FRAME_MAX + CHAN_TAG_LEN)
		cap = CHAN_FRAME_MAX + CHAN_TAG_LEN;
	nf = xmalloc(cap);
	if (c->frame != NULL) {
		sodium_memzero(c->frame, c->frame_cap);
		free(c->frame);
	}
	c->frame = nf;
	c->frame_cap = cap;
	return CHAN_AGAIN;
}

static enum chan_result
open_frame(struct chan *c, const uint8_t **payload_r, size_t *plen_r)
{
	uint8_t nonce[CHAN_NONCE_LEN];
	unsigned long long mlen;

	if (c->rx_n == UINT64_MAX)
		return fail(c, "receive counter exhausted");
	make_nonce(c->rx_n, nonce);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(c->frame, &mlen, NULL,
	    c->frame, c->body_len, c->hdr, CHAN_FRAME_HDR_LEN, nonce,
	    c->rx) != 0)
		return fail(c, "frame %llu does not authenticate (altered, "
		    "replayed or out of order)", (unsigned long long)c->rx_n);
	c->rx_n++;
	*payload_r = c->frame;
	*plen_r = (size_t)mlen;
	return CHAN_FRAME;
}

enum chan_result
chan_feed(struct chan *c, const uint8_t *buf, size_t len,
    size_t *consumed_r, const uint8_t **payload_r, size_t *plen_r)
{
	enum chan_result res = CHAN_AGAIN;
	size_t off = 0;

	*payload_r = NULL;
	*plen_r = 0;
	if (c->state == CS_FAILED) {
		*consumed_r = 0;
		return CHAN_ERROR;
	}
	for (;;) {
		size_t hlen = c->state == CS_OPEN ? CHAN_FRAME_HDR_LEN :
		    CHAN_HS_HDR_LEN;
		uint8_t *dst;
		size_t take;

		if (!c->in_body) {
			take = hlen - c->hdr_have;
			if (take > len - off)
				take = len - off;
			if (take > 0)
				memcpy(c->hdr + c->hdr_have, buf + off, take);
			c->hdr_have += take;
			off += take;
			if (c->hdr_have < hlen)
				break;
			res = c->state == CS_OPEN ? frame_header(c) :
			    handshake_header(c);
			if (res != CHAN_AGAIN)
				break;
			c->in_body = 1;
			c->body_have = 0;
		}
		dst = c->state == CS_OPEN ? c->frame : c->hs_body;
		take = c->body_len - c->body_have;
		if (take > len - off)
			take = len - off;
		if (take > 0)
			memcpy(dst + c->body_have, buf + off, take);
		c->body_have += take;
		off += take;
		if (c->body_have < c->body_len)
			break;
		c->in_body = 0;
		c->hdr_have = 0;
		res = c->state == CS_OPEN ? open_frame(c, payload_r, plen_r) :
		    handshake_message(c);
		if (res != CHAN_AGAIN)
			break;
	}
	*consumed_r = off;
	return res;
}

int
chan_eof(struct chan *c)
{
	if (c->state == CS_FAILED)
		return -1;
	if (c->state != CS_OPEN) {
		fail(c, "connection closed during the handshake");
		return -1;
	}
	if (c->in_body || c->hdr_have > 0) {
		fail(c, "connection closed inside a frame (truncated)");
		return -1;
	}
	return 0;
}

const uint8_t *
chan_out(struct chan *c, size_t *len_r)
{
	*len_r = c->out_len - c->out_off;
	return *len_r > 0 ? c->out + c->out_off : NULL;
}

void
chan_out_done(struct chan *c, size_t n)
{
	if (n > c->out_len - c->out_off)
		n = c->out_len - c->out_off;
	c->out_off += n;
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
}

long
chan_seal(struct chan *c, const uint8_t *payload, size_t len, uint8_t *out,
    size_t outlen)
{
	uint8_t nonce[CHAN_NONCE_LEN];
	unsigned long long clen;

	if (c->state != CS_OPEN || len > CHAN_FRAME_MAX ||
	    outlen < CHAN_FRAME_LEN(len))
		return -1;
	if (c->tx_n == UINT64_MAX) {
		fail(c, "send counter exhausted");
		return -1;
	}
	mm_be32_put(out, (uint32_t)(len + CHAN_TAG_LEN));
	make_nonce(c->tx_n++, nonce);
	crypto_aead_chacha20poly1305_ietf_encrypt(out + CHAN_FRAME_HDR_LEN,
	    &clen, payload, len, out, CHAN_FRAME_HDR_LEN, NULL, nonce, c->tx);
	return (long)(CHAN_FRAME_HDR_LEN + clen);
}

struct chan *
chan_new(const struct chan_config *cfg, const char **why_r)
{
	struct chan *c = NULL;
	struct record r;
	const char *why = NULL;

	if (cfg->role != CHAN_INITIATOR && cfg->role != CHAN_RESPONDER) {
		*why_r = "bad role";
		return NULL;
	}
	if (cfg->key == NULL || !cfg->key->has_secret) {
		*why_r = "no secret key";
		return NULL;
	}
	if (cfg->trust == NULL) {
		*why_r = "no trust callback";
		return NULL;
	}
	if (cfg->cert == NULL || cfg->cert_len == 0 ||
	    cfg->cert_len > RECORD_MAX ||
	    record_decode(cfg->cert, cfg->cert_len, &r, &why) < 0 ||
	    r.kind != RECORD_CERT) {
		*why_r = "own certificate is not a CERT envelope";
		return NULL;
	}
	if (memcmp(r.u.cert.pk, cfg->key->pk, DKEY_PK_LEN) != 0) {
		*why_r = "own certificate is for another key";
		return NULL;
	}
	if (dkey_init() < 0) {
		*why_r = "libsodium cannot start";
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->role = cfg->role;
	c->self = *cfg->key;
	memcpy(c->cert, cfg->cert, cfg->cert_len);
	c->cert_len = cfg->cert_len;
	c->trust = cfg->trust;
	c->trust_arg = cfg->trust_arg;
	if (cfg->ephemeral_seed != NULL)
		memcpy(c->e_sk, cfg->ephemeral_seed, CHAN_EPH_LEN);
	else
		randombytes_buf(c->e_sk, sizeof(c->e_sk));
	crypto_scalarmult_base(c->e_pk, c->e_sk);
	crypto_generichash(c->th, sizeof(c->th), (const uint8_t *)CHAN_LABEL,
	    sizeof(CHAN_LABEL), NULL, 0);
	if (c->role == CHAN_INITIATOR) {
		send_hello(c);
		enter_state(c, CS_I_WAIT_HELLO);
	} else
		enter_state(c, CS_R_WAIT_HELLO);
	return c;
}

void
chan_free(struct chan *c)
{
	if (c == NULL)
		return;
	wipe_all(c);
	free(c->frame);
	sodium_memzero(c, sizeof(*c));
	free(c);
}

int
chan_established(const struct chan *c)
{
	return c->state == CS_OPEN;
}

const struct chan_peer *
chan_peer(const struct chan *c)
{
	return c->state == CS_OPEN ? &c->peer : NULL;
}

const char *
chan_error(const struct chan *c)
{
	return c->state == CS_FAILED ? c->err : NULL;
}

enum chan_role
chan_role(const struct chan *c)
{
	return c->role;
}
