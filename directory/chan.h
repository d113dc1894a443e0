/* The inter-node channel: handshake and framing as a pure state machine.
 * Bytes in, bytes out; no sockets, no event loop (chan_ev adapts it to a
 * bufferevent). Gossip and cross-site sessions both run over it.
 *
 * Identities. Every node has an Ed25519 key certified by the cluster root:
 * a CERT envelope (record.h). The channel proves to each side that the
 * other holds the key of the certificate it shows, and asks a trust
 * callback whether that certificate is acceptable (signed by the root, not
 * revoked, not expired, role node or site: the node decides).
 *
 * Handshake messages: an 8-byte header, checked before the body is
 * buffered, then the body:
 *   "MMCH" | version (1 byte, CHAN_VERSION) | type (1) | length (2, BE)
 *   HELLO  body: an ephemeral X25519 public key (exactly 32 bytes)
 *   AUTH   body: AEAD(handshake key of the sender's direction, nonce 0,
 *                 ad = the 8 header bytes, sig (64) || CERT envelope)
 * Flow (one and a half round trips):
 *   initiator -> HELLO(ei)
 *   responder -> HELLO(er), AUTH(responder)
 *   initiator -> AUTH(initiator), then frames
 *   responder    verifies it, then frames
 * Transcript: T starts as BLAKE2b-256(CHAN_LABEL with its NUL); every
 * handshake message m, header and body as sent, makes T = BLAKE2b-256(T ||
 * m), in the order of the flow above. The
 * responder signs T after both HELLOs; the initiator signs T after the
 * responder's AUTH as well. Each signature is Ed25519 by the certified key
 * over a role prefix || T (dkey_sign; CHAN_SIG_RESPONDER and
 * CHAN_SIG_INITIATOR), so a signature binds both ephemerals, both roles and
 * the protocol label, and cannot be replayed into another session or
 * reflected into the other role. The certificates travel encrypted, under
 * keys only the two ephemeral holders have, so a relay can neither read
 * nor swap them.
 * Keys: s = X25519(own ephemeral, peer ephemeral) (an all-zero result is
 * refused); prk = BLAKE2b-256(key s, T after both HELLOs); handshake keys
 * are crypto_kdf subkeys of prk (context "MMchanHS", id 1 initiator to
 * responder, 2 back). After both AUTHs: prk2 = BLAKE2b-256(key prk, final
 * T); session keys are crypto_kdf subkeys of prk2 (context "MMchanAP", ids
 * as above). Ephemeral and intermediate secrets are wiped as soon as they
 * are used; the identity secret as soon as the AUTH is signed.
 *
 * Frames after the handshake: a 4-byte big-endian length L (of the
 * ciphertext, CHAN_TAG_LEN <= L <= CHAN_FRAME_MAX + CHAN_TAG_LEN, checked
 * before the body is buffered), then L bytes of ChaCha20-Poly1305-IETF
 * ciphertext with associated data = the 4 length bytes and nonce = a
 * per-direction 64-bit counter (4 zero bytes, counter big-endian) that is
 * never sent. A replayed, reordered, dropped, truncated or altered frame
 * therefore fails authentication and ends the channel. Payloads are opaque
 * here (peers.h puts a type byte and msgpack inside, cross-site sessions
 * msgpack). No rekeying: a channel ends long before its counter could
 * wrap (it ends if it ever would).
 *
 * The initiator is established once it has verified the responder and
 * queued its own AUTH; it may send frames at once, behind that AUTH. If the
 * responder then refuses the initiator, it closes the connection: the
 * initiator sees the connection end, nothing more.
 *
 * Any error is final: the channel keeps a reason (chan_error) and refuses
 * every further call. */
#ifndef CHAN_H
#define CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "dkey.h"
#include "record.h"

#define CHAN_VERSION 1
#define CHAN_MAGIC "MMCH"
#define CHAN_LABEL "MailMesh chan v1"	/* + NUL, starts the transcript */
#define CHAN_SIG_RESPONDER "MailMesh chan v1 responder"
#define CHAN_SIG_INITIATOR "MailMesh chan v1 initiator"

#define CHAN_HS_HDR_LEN 8
#define CHAN_EPH_LEN 32
#define CHAN_TAG_LEN 16
/* sig, then at least one byte of envelope, at most RECORD_MAX. */
#define CHAN_AUTH_MIN (CHAN_TAG_LEN + DKEY_SIG_LEN + 1)
#define CHAN_HS_BODY_MAX (CHAN_TAG_LEN + DKEY_SIG_LEN + RECORD_MAX)
#define CHAN_FRAME_HDR_LEN 4
#define CHAN_FRAME_MAX (1024 * 1024)	/* largest payload */

/* The sealed size of a payload of len bytes: header, ciphertext, tag. */
#define CHAN_FRAME_LEN(len) (CHAN_FRAME_HDR_LEN + (len) + CHAN_TAG_LEN)

enum chan_msg_type {
	CHAN_MSG_HELLO = 1,
	CHAN_MSG_AUTH = 2,
};

enum chan_role {
	CHAN_INITIATOR = 1,	/* connected out */
	CHAN_RESPONDER = 2,	/* accepted */
};

enum chan_result {
	CHAN_ERROR = -1,	/* the channel is dead: chan_error() says why */
	CHAN_AGAIN = 0,		/* all input taken; more is needed */
	CHAN_FRAME = 1,		/* one payload is out */
	CHAN_ESTABLISHED = 2,	/* handshake done: chan_peer() is set */
};

/* The verified peer. */
struct chan_peer {
	uint8_t pk[DKEY_PK_LEN];
	uint8_t key_id[DKEY_ID_LEN];
	enum cert_role role;
	char site[RECORD_SITE_MAX + 1];
	char name[RECORD_NAME_MAX + 1];
};

/* Decides whether the peer's certificate is acceptable. env/len is the
 * CERT envelope exactly as received (its root signature not yet checked),
 * cert its decoding; the peer has proved it holds cert's key. peer comes
 * filled from the certificate; the callback may correct site and name.
 * Returns 0 to accept, -1 to refuse with *why_r (a string that lives at
 * least until the call returns; it is copied). Pointers are valid only
 * during the call. */
typedef int (*chan_trust_cb)(const uint8_t *env, size_t len,
    const struct record *cert, struct chan_peer *peer, const char **why_r,
    void *arg);

struct chan_config {
	enum chan_role role;
	const struct dkey *key;		/* this node's key, with its secret */
	const uint8_t *cert;		/* this node's CERT envelope */
	size_t cert_len;
	chan_trust_cb trust;
	void *trust_arg;
	/* Tests and fuzzing only: a fixed ephemeral secret (32 bytes) makes
	 * the handshake reproducible. NULL: a random one. */
	const uint8_t *ephemeral_seed;
};

struct chan;

/* A new channel. Copies key and cert (the copy of the secret is wiped
 * once used); cfg need not outlive the call. NULL with *why_r (static)
 * when cert is no CERT envelope for key or the config is incomplete.
 * An initiator has its HELLO ready in chan_out() at once. */
struct chan *chan_new(const struct chan_config *cfg, const char **why_r);
/* Wipes every secret and frees; NULL is fine. */
void chan_free(struct chan *c);

/* Takes up to len bytes from the peer. Sets *consumed_r to how many it
 * took (never more than len) and returns:
 *   CHAN_AGAIN        all of it was taken; call again with more;
 *   CHAN_FRAME        a payload is in *payload_r / *plen_r, pointing into
 *                     the channel, valid until the next call; the input
 *                     after *consumed_r is not yet read;
 *   CHAN_ESTABLISHED  the handshake completed at *consumed_r;
 *   CHAN_ERROR        the channel is dead (chan_error).
 * After every call, send whatever chan_out() holds before any frame sealed
 * afterwards. Memory: one buffer per channel, grown to the largest frame
 * seen; nothing per byte. */
enum chan_result chan_feed(struct chan *c, const uint8_t *buf, size_t len,
    size_t *consumed_r, const uint8_t **payload_r, size_t *plen_r);

/* The peer closed its side: 0 when that happened between frames of an
 * established channel, else -1 and the channel fails ("truncated ..."). */
int chan_eof(struct chan *c);

/* Handshake bytes waiting to be sent (NULL and 0 when none); the pointer
 * is valid until the next call on c. chan_out_done says n of them went. */
const uint8_t *chan_out(struct chan *c, size_t *len_r);
void chan_out_done(struct chan *c, size_t n);

/* Seals a payload (len <= CHAN_FRAME_MAX) into out, which needs
 * CHAN_FRAME_LEN(len) bytes; payload and out may not overlap. Returns the
 * frame length, or -1: not established, failed, too long, out too small
 * (only a counter running out fails the channel). */
long chan_seal(struct chan *c, const uint8_t *payload, size_t len,
    uint8_t *out, size_t outlen);

/* 1 once established (and not failed), else 0. */
int chan_established(const struct chan *c);
/* The verified peer once established, else NULL. */
const struct chan_peer *chan_peer(const struct chan *c);
/* Why the channel failed, or NULL while it has not. */
const char *chan_error(const struct chan *c);
enum chan_role chan_role(const struct chan *c);

#endif
