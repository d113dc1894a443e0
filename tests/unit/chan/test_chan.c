/* Unit tests for chan: the handshake between two in-memory endpoints with
 * real keys and root-signed certificates, frames both ways, and every way
 * a peer or a man in the middle can make the channel end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "chan.h"
#include "fixture.h"
#include "mm_util.h"

static struct dkey root, rogue;
static struct fx_node node_a, node_b, node_op, node_unknown, node_expired,
    node_site;
static struct fx_trust trust_a, trust_b;

/* What one endpoint received. */
struct sink {
	int frames;
	int established;
	uint8_t *last;		/* copy of the last payload */
	size_t last_len;
	size_t consumed;	/* over all feeds */
};

static void
sink_clear(struct sink *s)
{
	free(s->last);
	memset(s, 0, sizeof(*s));
}

/* Feeds buf to c in pieces of chunk bytes (0: all at once); stops at the
 * first error. */
static enum chan_result
feed(struct chan *c, const uint8_t *buf, size_t len, size_t chunk,
    struct sink *s)
{
	size_t off = 0;

	if (chunk == 0)
		chunk = len;
	while (off < len) {
		size_t piece = len - off < chunk ? len - off : chunk;
		size_t poff = 0;

		while (poff < piece) {
			const uint8_t *p;
			size_t plen, used;
			enum chan_result r;

			r = chan_feed(c, buf + off + poff, piece - poff, &used,
			    &p, &plen);
			assert_true(used <= piece - poff);
			poff += used;
			s->consumed += used;
			if (r == CHAN_ERROR)
				return r;
			if (r == CHAN_ESTABLISHED)
				s->established++;
			if (r == CHAN_FRAME) {
				s->frames++;
				free(s->last);
				s->last = malloc(plen + 1);
				memcpy(s->last, p, plen);
				s->last_len = plen;
			}
			if (r == CHAN_AGAIN)
				assert_int_equal(poff, piece);
		}
		off += piece;
	}
	return CHAN_AGAIN;
}

/* Moves from's pending handshake output into to. */
static enum chan_result
move(struct chan *from, struct chan *to, size_t chunk, struct sink *s)
{
	const uint8_t *p;
	uint8_t copy[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	size_t n;

	if ((p = chan_out(from, &n)) == NULL)
		return CHAN_AGAIN;
	assert_true(n <= sizeof(copy));
	memcpy(copy, p, n);
	chan_out_done(from, n);
	return feed(to, copy, n, chunk, s);
}

static void
handshake(struct chan *a, struct chan *b, size_t chunk, struct sink *sa,
    struct sink *sb)
{
	assert_int_equal(move(a, b, chunk, sb), CHAN_AGAIN);
	assert_int_equal(move(b, a, chunk, sa), CHAN_AGAIN);
	assert_int_equal(sa->established, 1);
	assert_int_equal(move(a, b, chunk, sb), CHAN_AGAIN);
	assert_int_equal(sb->established, 1);
	assert_true(chan_established(a));
	assert_true(chan_established(b));
	assert_null(chan_out(a, &(size_t){0}));
	assert_null(chan_out(b, &(size_t){0}));
}

/* Seals payload on from into a new buffer. */
static uint8_t *
seal(struct chan *from, const void *payload, size_t len, size_t *flen_r)
{
	uint8_t *f = malloc(CHAN_FRAME_LEN(len));
	long n = chan_seal(from, payload, len, f, CHAN_FRAME_LEN(len));

	assert_int_equal(n, (long)CHAN_FRAME_LEN(len));
	*flen_r = (size_t)n;
	return f;
}

static void
assert_reason(struct chan *c, const char *want)
{
	const char *why = chan_error(c);

	assert_non_null(why);
	if (strstr(why, want) == NULL)
		fail_msg("reason \"%s\" lacks \"%s\"", why, want);
	assert_false(chan_established(c));
	assert_null(chan_peer(c));
}

/* An established pair: a initiates, b responds. */
static void
pair(struct chan **a, struct chan **b)
{
	struct sink sa = { 0 }, sb = { 0 };

	*a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	*b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	handshake(*a, *b, 0, &sa, &sb);
	sink_clear(&sa);
	sink_clear(&sb);
}

/* ---- the good path --------------------------------------------------- */

static void
test_handshake_and_data(void **state)
{
	struct chan *a, *b;
	struct sink sa = { 0 }, sb = { 0 };
	const struct chan_peer *pa, *pb;
	uint8_t *f;
	size_t flen;
	int i;

	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	assert_null(chan_peer(a));
	assert_int_equal(chan_seal(a, (const uint8_t *)"x", 1,
	    (uint8_t[64]){0}, 64), -1);
	handshake(a, b, 0, &sa, &sb);

	pa = chan_peer(a);	/* a's view of b */
	pb = chan_peer(b);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_memory_equal(pa->key_id, node_b.key.id, DKEY_ID_LEN);
	assert_memory_equal(pa->pk, node_b.key.pk, DKEY_PK_LEN);
	assert_string_equal(pa->site, "ams");
	assert_string_equal(pa->name, "ams-node1");
	assert_int_equal(pa->role, ROLE_NODE);
	assert_memory_equal(pb->key_id, node_a.key.id, DKEY_ID_LEN);
	assert_string_equal(pb->site, "fra");
	assert_string_equal(pb->name, "fra-node1");
	assert_int_equal(chan_role(a), CHAN_INITIATOR);
	assert_int_equal(chan_role(b), CHAN_RESPONDER);

	for (i = 0; i < 5; i++) {
		char msg[32];

		snprintf(msg, sizeof(msg), "a to b %d", i);
		f = seal(a, msg, strlen(msg), &flen);
		assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_AGAIN);
		free(f);
		assert_int_equal(sb.frames, i + 1);
		assert_int_equal(sb.last_len, strlen(msg));
		assert_memory_equal(sb.last, msg, strlen(msg));

		snprintf(msg, sizeof(msg), "b to a %d", i);
		f = seal(b, msg, strlen(msg), &flen);
		assert_int_equal(feed(a, f, flen, 0, &sa), CHAN_AGAIN);
		free(f);
		assert_int_equal(sa.frames, i + 1);
		assert_memory_equal(sa.last, msg, strlen(msg));
	}
	/* An empty payload is a frame too. */
	f = seal(a, "", 0, &flen);
	assert_int_equal(flen, CHAN_FRAME_HDR_LEN + CHAN_TAG_LEN);
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_AGAIN);
	free(f);
	assert_int_equal(sb.last_len, 0);
	assert_int_equal(chan_eof(b), 0);
	assert_null(chan_error(b));

	chan_free(a);
	chan_free(b);
	chan_free(NULL);
	sink_clear(&sa);
	sink_clear(&sb);
}

/* Every byte on its own: the decoder resumes anywhere. */
static void
test_byte_at_a_time(void **state)
{
	struct chan *a, *b;
	struct sink sa = { 0 }, sb = { 0 };
	uint8_t *f1, *f2, *both;
	size_t l1, l2;

	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	handshake(a, b, 1, &sa, &sb);
	f1 = seal(a, "first", 5, &l1);
	f2 = seal(a, "second frame", 12, &l2);
	both = malloc(l1 + l2);
	memcpy(both, f1, l1);
	memcpy(both + l1, f2, l2);
	assert_int_equal(feed(b, both, l1 + l2, 1, &sb), CHAN_AGAIN);
	assert_int_equal(sb.frames, 2);
	assert_memory_equal(sb.last, "second frame", 12);
	/* Two frames in one buffer: the first call stops after the first. */
	free(f1);
	free(f2);
	f1 = seal(a, "third", 5, &l1);
	f2 = seal(a, "fourth", 6, &l2);
	memcpy(both, f1, l1);
	memcpy(both + l1, f2, l2);
	{
		const uint8_t *p;
		size_t plen, used;

		assert_int_equal(chan_feed(b, both, l1 + l2, &used, &p, &plen),
		    CHAN_FRAME);
		assert_int_equal(used, l1);
		assert_memory_equal(p, "third", 5);
		assert_int_equal(chan_feed(b, both + used, l2, &used, &p,
		    &plen), CHAN_FRAME);
		assert_int_equal(used, l2);
		assert_memory_equal(p, "fourth", 6);
	}
	free(f1);
	free(f2);
	free(both);
	chan_free(a);
	chan_free(b);
	sink_clear(&sa);
	sink_clear(&sb);
}

/* The initiator may send right behind its AUTH; the responder reads the
 * AUTH and the frame from one buffer. */
static void
test_pipelined_first_frame(void **state)
{
	struct chan *a, *b;
	struct sink sa = { 0 }, sb = { 0 };
	const uint8_t *p, *fp;
	uint8_t buf[8192];
	size_t n, flen, used, plen;
	uint8_t *f;

	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	assert_int_equal(move(a, b, 0, &sb), CHAN_AGAIN);
	assert_int_equal(move(b, a, 0, &sa), CHAN_AGAIN);
	assert_true(chan_established(a));
	p = chan_out(a, &n);
	memcpy(buf, p, n);
	chan_out_done(a, n);
	f = seal(a, "early", 5, &flen);
	memcpy(buf + n, f, flen);
	free(f);
	assert_int_equal(chan_feed(b, buf, n + flen, &used, &fp, &plen),
	    CHAN_ESTABLISHED);
	assert_int_equal(used, n);
	assert_int_equal(chan_feed(b, buf + n, flen, &used, &fp, &plen),
	    CHAN_FRAME);
	assert_memory_equal(fp, "early", 5);
	chan_free(a);
	chan_free(b);
	sink_clear(&sa);
	sink_clear(&sb);
}

static void
test_largest_frame(void **state)
{
	struct chan *a, *b;
	struct sink sb = { 0 };
	uint8_t *big = malloc(CHAN_FRAME_MAX + 1), *f;
	size_t flen;

	pair(&a, &b);
	randombytes_buf(big, CHAN_FRAME_MAX);
	f = seal(a, big, CHAN_FRAME_MAX, &flen);
	assert_int_equal(feed(b, f, flen, 65536, &sb), CHAN_AGAIN);
	assert_int_equal(sb.frames, 1);
	assert_int_equal(sb.last_len, CHAN_FRAME_MAX);
	assert_memory_equal(sb.last, big, CHAN_FRAME_MAX);
	free(f);
	/* One byte more is refused by the sender. */
	f = malloc(CHAN_FRAME_LEN(CHAN_FRAME_MAX + 1));
	assert_int_equal(chan_seal(a, big, CHAN_FRAME_MAX + 1, f,
	    CHAN_FRAME_LEN(CHAN_FRAME_MAX + 1)), -1);
	/* And so is a buffer too small; neither kills the channel. */
	assert_int_equal(chan_seal(a, big, 10, f, CHAN_FRAME_LEN(10) - 1), -1);
	assert_true(chan_established(a));
	free(f);
	free(big);
	chan_free(a);
	chan_free(b);
	sink_clear(&sb);
}

/* The trust callback may correct site and name. */
static void
test_trust_sets_site(void **state)
{
	struct chan *a, *b;
	struct sink sa = { 0 }, sb = { 0 };

	trust_a.rename_site = "lon";
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	handshake(a, b, 0, &sa, &sb);
	trust_a.rename_site = NULL;
	assert_string_equal(chan_peer(a)->site, "lon");
	assert_string_equal(chan_peer(b)->site, "fra");
	chan_free(a);
	chan_free(b);
}

/* ---- frames that end the channel ------------------------------------- */

static void
test_replayed_frame(void **state)
{
	struct chan *a, *b;
	struct sink sb = { 0 };
	uint8_t *f;
	size_t flen;

	pair(&a, &b);
	f = seal(a, "once", 4, &flen);
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_AGAIN);
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_ERROR);
	assert_reason(b, "does not authenticate");
	assert_int_equal(sb.frames, 1);
	/* Dead for good. */
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_ERROR);
	assert_int_equal(chan_eof(b), -1);
	free(f);
	chan_free(a);
	chan_free(b);
	sink_clear(&sb);
}

static void
test_reordered_frames(void **state)
{
	struct chan *a, *b;
	struct sink sb = { 0 };
	uint8_t *f1, *f2;
	size_t l1, l2;

	pair(&a, &b);
	f1 = seal(a, "one", 3, &l1);
	f2 = seal(a, "two", 3, &l2);
	assert_int_equal(feed(b, f2, l2, 0, &sb), CHAN_ERROR);
	assert_reason(b, "does not authenticate");
	assert_int_equal(sb.frames, 0);
	/* The right one after the wrong one does not help. */
	assert_int_equal(feed(b, f1, l1, 0, &sb), CHAN_ERROR);
	free(f1);
	free(f2);
	chan_free(a);
	chan_free(b);

	/* A dropped frame is the same thing. */
	pair(&a, &b);
	f1 = seal(a, "one", 3, &l1);
	f2 = seal(a, "two", 3, &l2);
	assert_int_equal(feed(b, f1, l1, 0, &sb), CHAN_AGAIN);
	free(f1);
	f1 = seal(a, "three", 5, &l1);
	assert_int_equal(feed(b, f1, l1, 0, &sb), CHAN_ERROR);
	assert_reason(b, "frame 1 does not authenticate");
	free(f1);
	free(f2);
	chan_free(a);
	chan_free(b);
	sink_clear(&sb);
}

/* Frames from one direction are no good in the other. */
static void
test_reflected_frame(void **state)
{
	struct chan *a, *b;
	struct sink sa = { 0 };
	uint8_t *f;
	size_t flen;

	pair(&a, &b);
	f = seal(a, "mirror", 6, &flen);
	assert_int_equal(feed(a, f, flen, 0, &sa), CHAN_ERROR);
	assert_reason(a, "does not authenticate");
	free(f);
	chan_free(a);
	chan_free(b);
}

static void
test_flipped_bits(void **state)
{
	struct chan *a, *b;
	struct sink sb = { 0 };
	uint8_t *f;
	size_t flen, i;

	/* Every bit of the ciphertext and tag. */
	for (i = CHAN_FRAME_HDR_LEN * 8; i < CHAN_FRAME_LEN(5) * 8; i += 7) {
		pair(&a, &b);
		f = seal(a, "hello", 5, &flen);
		f[i / 8] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_ERROR);
		assert_reason(b, "does not authenticate");
		free(f);
		chan_free(a);
		chan_free(b);
	}
	/* The length header is authenticated: shorter by one. */
	pair(&a, &b);
	f = seal(a, "hello", 5, &flen);
	f[3] ^= 1;	/* 21 -> 20 */
	assert_int_equal(feed(b, f, flen - 1, 0, &sb), CHAN_ERROR);
	assert_reason(b, "does not authenticate");
	free(f);
	chan_free(a);
	chan_free(b);
	/* Longer by two: the next frame's bytes complete it, then fail. */
	pair(&a, &b);
	f = seal(a, "hello", 5, &flen);
	f[3] ^= 2;	/* 21 -> 23 */
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_AGAIN);
	assert_int_equal(feed(b, (const uint8_t *)"xx", 2, 0, &sb),
	    CHAN_ERROR);
	assert_reason(b, "does not authenticate");
	free(f);
	chan_free(a);
	chan_free(b);
	/* A high bit: over the limit, refused on the header alone. */
	pair(&a, &b);
	f = seal(a, "hello", 5, &flen);
	f[0] ^= 0x80;
	sb.consumed = 0;
	assert_int_equal(feed(b, f, flen, 0, &sb), CHAN_ERROR);
	assert_int_equal(sb.consumed, CHAN_FRAME_HDR_LEN);
	assert_reason(b, "over the limit");
	free(f);
	chan_free(a);
	chan_free(b);
	assert_int_equal(sb.frames, 0);
	sink_clear(&sb);
}

static void
test_truncated_frame(void **state)
{
	struct chan *a, *b;
	struct sink sb = { 0 };
	uint8_t *f;
	size_t flen;

	pair(&a, &b);
	f = seal(a, "truncate me", 11, &flen);
	assert_int_equal(feed(b, f, flen - 3, 0, &sb), CHAN_AGAIN);
	assert_int_equal(sb.frames, 0);
	assert_int_equal(chan_eof(b), -1);
	assert_reason(b, "truncated");
	free(f);
	chan_free(a);
	chan_free(b);

	/* Inside the header. */
	pair(&a, &b);
	f = seal(a, "x", 1, &flen);
	assert_int_equal(feed(b, f, 2, 0, &sb), CHAN_AGAIN);
	assert_int_equal(chan_eof(b), -1);
	assert_reason(b, "truncated");
	free(f);
	chan_free(a);
	chan_free(b);

	/* Inside the handshake. */
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	assert_int_equal(chan_eof(a), -1);
	assert_reason(a, "during the handshake");
	chan_free(a);
	sink_clear(&sb);
}

static void
test_length_limits(void **state)
{
	static const uint32_t bad[] = {
		CHAN_FRAME_MAX + CHAN_TAG_LEN + 1, 0xffffffffu, 0x80000000u,
		CHAN_TAG_LEN - 1, 0,
	};
	struct chan *a, *b;
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(bad); i++) {
		uint8_t hdr[CHAN_FRAME_HDR_LEN + 8];
		const uint8_t *p;
		size_t used, plen;

		pair(&a, &b);
		hdr[0] = (uint8_t)(bad[i] >> 24);
		hdr[1] = (uint8_t)(bad[i] >> 16);
		hdr[2] = (uint8_t)(bad[i] >> 8);
		hdr[3] = (uint8_t)bad[i];
		memset(hdr + 4, 0xaa, 8);
		/* Refused with the header, before any body byte is taken. */
		assert_int_equal(chan_feed(b, hdr, sizeof(hdr), &used, &p,
		    &plen), CHAN_ERROR);
		assert_int_equal(used, CHAN_FRAME_HDR_LEN);
		assert_non_null(chan_error(b));
		chan_free(a);
		chan_free(b);
	}
	/* The largest legal length is taken (and waits for its body). */
	pair(&a, &b);
	{
		uint32_t l = CHAN_FRAME_MAX + CHAN_TAG_LEN;
		uint8_t hdr[4] = { (uint8_t)(l >> 24), (uint8_t)(l >> 16),
		    (uint8_t)(l >> 8), (uint8_t)l };
		struct sink sb = { 0 };

		assert_int_equal(feed(b, hdr, 4, 0, &sb), CHAN_AGAIN);
		assert_null(chan_error(b));
	}
	chan_free(a);
	chan_free(b);
}

/* ---- handshakes that fail -------------------------------------------- */

/* Runs a handshake of initiator ni against responder nr; returns which
 * side failed first: 'i', 'r', or 0 if none. */
static int
try_handshake(const struct fx_node *ni, const struct fx_node *nr,
    struct chan **i_r, struct chan **r_r)
{
	struct sink si = { 0 }, sr = { 0 };
	int who = 0;

	*i_r = fx_chan(CHAN_INITIATOR, ni, &trust_a);
	*r_r = fx_chan(CHAN_RESPONDER, nr, &trust_b);
	if (move(*i_r, *r_r, 0, &sr) == CHAN_ERROR)
		who = 'r';
	else if (move(*r_r, *i_r, 0, &si) == CHAN_ERROR)
		who = 'i';
	else if (move(*i_r, *r_r, 0, &sr) == CHAN_ERROR)
		who = 'r';
	sink_clear(&si);
	sink_clear(&sr);
	return who;
}

static void
refused_both_ways(const struct fx_node *bad, const char *want)
{
	struct chan *i, *r;

	/* A bad responder: the initiator refuses it. */
	assert_int_equal(try_handshake(&node_a, bad, &i, &r), 'i');
	assert_reason(i, "refused");
	assert_reason(i, want);
	assert_false(chan_established(r));
	assert_null(chan_error(r));	/* it only sees the connection end */
	chan_free(i);
	chan_free(r);
	/* A bad initiator: the responder refuses it. */
	assert_int_equal(try_handshake(bad, &node_b, &i, &r), 'r');
	assert_reason(r, "refused");
	assert_reason(r, want);
	chan_free(i);
	chan_free(r);
}

static void
test_unknown_key(void **state)
{
	refused_both_ways(&node_unknown, "not signed by the cluster root");
}

static void
test_revoked_key(void **state)
{
	memcpy(trust_a.revoked[0], node_site.key.id, DKEY_ID_LEN);
	memcpy(trust_b.revoked[0], node_site.key.id, DKEY_ID_LEN);
	trust_a.nrevoked = trust_b.nrevoked = 1;
	refused_both_ways(&node_site, "revoked");
	trust_a.nrevoked = trust_b.nrevoked = 0;
	/* Not revoked, a site key is fine. */
	{
		struct chan *i, *r;

		assert_int_equal(try_handshake(&node_site, &node_b, &i, &r),
		    0);
		assert_true(chan_established(r));
		assert_int_equal(chan_peer(r)->role, ROLE_SITE);
		chan_free(i);
		chan_free(r);
	}
}

static void
test_wrong_role(void **state)
{
	refused_both_ways(&node_op, "wrong role");
}

static void
test_expired(void **state)
{
	refused_both_ways(&node_expired, "expired");
}

static void
test_bad_configs(void **state)
{
	struct chan_config cfg;
	const char *why = NULL;
	struct dkey pub;

	memset(&cfg, 0, sizeof(cfg));
	cfg.role = CHAN_INITIATOR;
	cfg.key = &node_a.key;
	cfg.cert = node_b.cert;	/* someone else's */
	cfg.cert_len = node_b.cert_len;
	cfg.trust = fx_trust_cb;
	assert_null(chan_new(&cfg, &why));
	assert_non_null(strstr(why, "another key"));
	cfg.cert = node_a.cert;
	cfg.cert_len = node_a.cert_len - 1;
	assert_null(chan_new(&cfg, &why));
	cfg.cert_len = node_a.cert_len;
	cfg.trust = NULL;
	assert_null(chan_new(&cfg, &why));
	cfg.trust = fx_trust_cb;
	pub = node_a.key;
	dkey_clear(&pub);
	cfg.key = &pub;
	assert_null(chan_new(&cfg, &why));
	cfg.key = &node_a.key;
	cfg.role = 0;
	assert_null(chan_new(&cfg, &why));
}

/* Handshake headers are checked before the body is buffered. */
static void
test_bad_handshake_headers(void **state)
{
	static const struct {
		uint8_t hdr[8];
		const char *why;
	} cases[] = {
		{ { 'M', 'M', 'C', 'X', 1, 1, 0, 32 }, "magic" },
		{ { 'M', 'M', 'C', 'H', 2, 1, 0, 32 }, "version" },
		{ { 'M', 'M', 'C', 'H', 1, 2, 0, 32 }, "type" },
		{ { 'M', 'M', 'C', 'H', 1, 9, 0, 32 }, "type" },
		{ { 'M', 'M', 'C', 'H', 1, 1, 0, 31 }, "HELLO of 31" },
		{ { 'M', 'M', 'C', 'H', 1, 1, 0xff, 0xff }, "HELLO of" },
	};
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(cases); i++) {
		struct chan *r = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
		uint8_t buf[8 + 64];
		const uint8_t *p;
		size_t used, plen;

		memcpy(buf, cases[i].hdr, 8);
		memset(buf + 8, 0x09, 64);
		assert_int_equal(chan_feed(r, buf, sizeof(buf), &used, &p,
		    &plen), CHAN_ERROR);
		assert_int_equal(used, 8);
		assert_reason(r, cases[i].why);
		chan_free(r);
	}
	/* AUTH length out of range, seen by an initiator past HELLO. */
	for (i = 0; i < 2; i++) {
		struct chan *a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
		struct chan *b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
		struct sink s = { 0 };
		uint8_t buf[8 + 40 + 8];
		const uint8_t *p;
		size_t used, plen, n;
		uint16_t l = i == 0 ? CHAN_HS_BODY_MAX + 1 : CHAN_AUTH_MIN - 1;

		assert_int_equal(move(a, b, 0, &s), CHAN_AGAIN);
		p = chan_out(b, &n);
		memcpy(buf, p, 40);	/* b's HELLO only */
		memcpy(buf + 40, "MMCH\x01\x02", 6);
		buf[46] = (uint8_t)(l >> 8);
		buf[47] = (uint8_t)l;
		assert_int_equal(chan_feed(a, buf, 48, &used, &p, &plen),
		    CHAN_ERROR);
		assert_int_equal(used, 48);
		assert_reason(a, "AUTH of");
		chan_free(a);
		chan_free(b);
	}
}

static void
test_degenerate_ephemeral(void **state)
{
	struct chan *r = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	uint8_t buf[8 + 32] = { 'M', 'M', 'C', 'H', 1, 1, 0, 32 };
	const uint8_t *p;
	size_t used, plen;

	/* The zero point makes an all-zero shared secret. */
	assert_int_equal(chan_feed(r, buf, sizeof(buf), &used, &p, &plen),
	    CHAN_ERROR);
	assert_reason(r, "degenerate");
	chan_free(r);

	/* A HELLO reflected back at the initiator. */
	{
		struct chan *a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
		uint8_t copy[40];
		size_t n;

		memcpy(copy, chan_out(a, &n), 40);
		assert_int_equal(n, 40);
		assert_int_equal(chan_feed(a, copy, 40, &used, &p, &plen),
		    CHAN_ERROR);
		assert_reason(a, "echoed");
		chan_free(a);
	}
}

static void
test_altered_auth(void **state)
{
	struct chan *a, *b;
	struct sink s = { 0 };
	const uint8_t *p;
	uint8_t buf[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	size_t n;

	/* A bit of the responder's AUTH ciphertext. */
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	assert_int_equal(move(a, b, 0, &s), CHAN_AGAIN);
	p = chan_out(b, &n);
	memcpy(buf, p, n);
	buf[40 + 8 + 100] ^= 0x10;
	assert_int_equal(feed(a, buf, n, 0, &s), CHAN_ERROR);
	assert_reason(a, "does not authenticate");
	chan_free(a);
	chan_free(b);
	/* A bit of the AUTH header (associated data). */
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	assert_int_equal(move(a, b, 0, &s), CHAN_AGAIN);
	p = chan_out(b, &n);
	memcpy(buf, p, n);
	buf[40 + 7] ^= 0x01;	/* length: one less or more */
	feed(a, buf, n, 0, &s);
	feed(a, (const uint8_t *)"z", 1, 0, &s);
	assert_reason(a, "does not authenticate");
	chan_free(a);
	chan_free(b);
	/* A bit of the initiator's HELLO: the transcripts differ, so the
	 * keys do and the AUTH fails. */
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	p = chan_out(a, &n);
	memcpy(buf, p, n);
	chan_out_done(a, n);
	buf[8 + 5] ^= 0x04;
	assert_int_equal(feed(b, buf, n, 0, &s), CHAN_AGAIN);
	assert_int_equal(move(b, a, 0, &s), CHAN_ERROR);
	assert_reason(a, "does not authenticate");
	chan_free(a);
	chan_free(b);
	sink_clear(&s);
}

/* ---- a man in the middle, speaking the protocol by hand -------------- */

/* An endpoint written from the description in chan.h, independently of
 * chan.c: it checks the description and lets the test forge messages. */
struct raw {
	enum chan_role role;
	uint8_t e_sk[32], e_pk[32];
	uint8_t th[32];
	uint8_t th_prev[32];	/* before the last message absorbed */
	uint8_t prk[32];
	uint8_t hs_i2r[32], hs_r2i[32];
};

static void
raw_init(struct raw *m, enum chan_role role)
{
	memset(m, 0, sizeof(*m));
	m->role = role;
	randombytes_buf(m->e_sk, 32);
	crypto_scalarmult_base(m->e_pk, m->e_sk);
	crypto_generichash(m->th, 32, (const uint8_t *)CHAN_LABEL,
	    strlen(CHAN_LABEL) + 1, NULL, 0);
}

static void
raw_absorb(struct raw *m, const uint8_t *msg, size_t len)
{
	crypto_generichash_state st;

	memcpy(m->th_prev, m->th, 32);
	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, m->th, 32);
	crypto_generichash_update(&st, msg, len);
	crypto_generichash_final(&st, m->th, 32);
}

static size_t
raw_hello(struct raw *m, uint8_t out[40])
{
	memcpy(out, "MMCH\x01\x01\x00\x20", 8);
	memcpy(out + 8, m->e_pk, 32);
	raw_absorb(m, out, 40);
	return 40;
}

static void
raw_keys(struct raw *m, const uint8_t peer_e[32])
{
	uint8_t s[32];

	assert_int_equal(crypto_scalarmult(s, m->e_sk, peer_e), 0);
	crypto_generichash(m->prk, 32, m->th, 32, s, 32);
	crypto_kdf_derive_from_key(m->hs_i2r, 32, 1, "MMchanHS", m->prk);
	crypto_kdf_derive_from_key(m->hs_r2i, 32, 2, "MMchanHS", m->prk);
}

/* Builds an AUTH from sig and cert under the key of m's direction. */
static size_t
raw_auth(struct raw *m, const uint8_t sig[64], const uint8_t *cert,
    size_t cert_len, uint8_t *out)
{
	uint8_t nonce[12] = { 0 };
	unsigned long long clen;
	size_t blen = 64 + cert_len + 16;

	memcpy(out, "MMCH\x01\x02", 6);
	out[6] = (uint8_t)(blen >> 8);
	out[7] = (uint8_t)blen;
	memcpy(out + 8, sig, 64);
	memcpy(out + 8 + 64, cert, cert_len);
	crypto_aead_chacha20poly1305_ietf_encrypt(out + 8, &clen, out + 8,
	    64 + cert_len, out, 8, NULL, nonce,
	    m->role == CHAN_INITIATOR ? m->hs_i2r : m->hs_r2i);
	raw_absorb(m, out, 8 + (size_t)clen);
	return 8 + (size_t)clen;
}

/* Opens the peer's AUTH at msg: sig and cert out. */
static size_t
raw_open_auth(struct raw *m, uint8_t *msg, size_t len, uint8_t sig_r[64],
    uint8_t *cert_r)
{
	uint8_t nonce[12] = { 0 };
	uint8_t pt[CHAN_HS_BODY_MAX];
	unsigned long long ptlen;

	raw_absorb(m, msg, len);
	assert_int_equal(crypto_aead_chacha20poly1305_ietf_decrypt(pt, &ptlen,
	    NULL, msg + 8, len - 8, msg, 8, nonce,
	    m->role == CHAN_INITIATOR ? m->hs_r2i : m->hs_i2r), 0);
	memcpy(sig_r, pt, 64);
	memcpy(cert_r, pt + 64, (size_t)ptlen - 64);
	return (size_t)ptlen - 64;
}

/* Mallory sits between a (initiator) and b (responder): she answers a
 * with her own ephemeral and connects to b with another. She can open
 * b's AUTH (she holds that session's keys) and re-seal it for a, but b's
 * signature covers the transcript of the other session: a refuses it. */
static void
test_mitm_splice(void **state)
{
	struct chan *a, *b;
	struct raw m1, m2;	/* m1 faces a, m2 faces b */
	struct sink s = { 0 };
	uint8_t msg[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	uint8_t hello_a[40], sig[64], cert[RECORD_MAX];
	const uint8_t *p;
	size_t n, cert_len, off;

	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	raw_init(&m1, CHAN_RESPONDER);
	raw_init(&m2, CHAN_INITIATOR);

	/* a -> Mallory */
	p = chan_out(a, &n);
	assert_int_equal(n, 40);
	memcpy(hello_a, p, 40);
	chan_out_done(a, n);
	raw_absorb(&m1, hello_a, 40);

	/* Mallory -> b with her own HELLO; b answers HELLO + AUTH. */
	n = raw_hello(&m2, msg);
	assert_int_equal(feed(b, msg, n, 0, &s), CHAN_AGAIN);
	p = chan_out(b, &n);
	memcpy(msg, p, n);
	chan_out_done(b, n);
	raw_absorb(&m2, msg, 40);
	raw_keys(&m2, msg + 8);
	cert_len = raw_open_auth(&m2, msg + 40, n - 40, sig, cert);
	assert_int_equal(cert_len, node_b.cert_len);
	assert_memory_equal(cert, node_b.cert, cert_len);

	/* Mallory -> a: her HELLO, then b's signature and certificate. */
	off = raw_hello(&m1, msg);
	raw_keys(&m1, hello_a + 8);
	off += raw_auth(&m1, sig, cert, cert_len, msg + off);
	assert_int_equal(feed(a, msg, off, 0, &s), CHAN_ERROR);
	assert_reason(a, "signature does not verify");
	assert_int_equal(trust_a.calls > 0, 1);
	chan_free(a);
	chan_free(b);

	/* The same forgery with Mallory's own certified key and a correct
	 * signature goes through: the refusal above is the transcript's. */
	a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
	raw_init(&m1, CHAN_RESPONDER);
	p = chan_out(a, &n);
	memcpy(hello_a, p, 40);
	chan_out_done(a, n);
	raw_absorb(&m1, hello_a, 40);
	off = raw_hello(&m1, msg);
	raw_keys(&m1, hello_a + 8);
	dkey_sign(&node_site.key, CHAN_SIG_RESPONDER, m1.th, 32, sig);
	off += raw_auth(&m1, sig, node_site.cert, node_site.cert_len,
	    msg + off);
	s.established = 0;
	assert_int_equal(feed(a, msg, off, 0, &s), CHAN_AGAIN);
	assert_int_equal(s.established, 1);
	assert_memory_equal(chan_peer(a)->key_id, node_site.key.id,
	    DKEY_ID_LEN);
	/* a's AUTH opens under the described keys, its signature verifies
	 * over the transcript with Mallory's AUTH in it. */
	p = chan_out(a, &n);
	memcpy(msg, p, n);
	cert_len = raw_open_auth(&m1, msg, n, sig, cert);
	assert_memory_equal(cert, node_a.cert, cert_len);
	assert_int_equal(dkey_verify(node_a.key.pk, CHAN_SIG_INITIATOR,
	    m1.th_prev, 32, sig), 0);
	chan_free(a);
	sink_clear(&s);
}

/* A responder's signature replayed as an initiator's: the role prefix
 * differs, so it does not verify. */
static void
test_role_reflection(void **state)
{
	struct chan *b;
	struct raw m;
	struct sink s = { 0 };
	uint8_t msg[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	uint8_t sig[64], cert[RECORD_MAX];
	const uint8_t *p;
	size_t n, off;

	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	raw_init(&m, CHAN_INITIATOR);
	n = raw_hello(&m, msg);
	assert_int_equal(feed(b, msg, n, 0, &s), CHAN_AGAIN);
	p = chan_out(b, &n);
	memcpy(msg, p, n);
	raw_absorb(&m, msg, 40);
	raw_keys(&m, msg + 8);
	raw_open_auth(&m, msg + 40, n - 40, sig, cert);
	/* Mallory holds node_site's key but signs with the wrong role. */
	dkey_sign(&node_site.key, CHAN_SIG_RESPONDER, m.th, 32, sig);
	off = raw_auth(&m, sig, node_site.cert, node_site.cert_len, msg);
	assert_int_equal(feed(b, msg, off, 0, &s), CHAN_ERROR);
	assert_reason(b, "signature does not verify");
	chan_free(b);

	/* With the right prefix it is accepted. */
	b = fx_chan(CHAN_RESPONDER, &node_b, &trust_b);
	raw_init(&m, CHAN_INITIATOR);
	n = raw_hello(&m, msg);
	assert_int_equal(feed(b, msg, n, 0, &s), CHAN_AGAIN);
	p = chan_out(b, &n);
	memcpy(msg, p, n);
	raw_absorb(&m, msg, 40);
	raw_keys(&m, msg + 8);
	raw_open_auth(&m, msg + 40, n - 40, sig, cert);
	dkey_sign(&node_site.key, CHAN_SIG_INITIATOR, m.th, 32, sig);
	off = raw_auth(&m, sig, node_site.cert, node_site.cert_len, msg);
	s.established = 0;
	assert_int_equal(feed(b, msg, off, 0, &s), CHAN_AGAIN);
	assert_int_equal(s.established, 1);
	assert_string_equal(chan_peer(b)->name, "fra-site");
	chan_free(b);
	sink_clear(&s);
}

/* An AUTH that carries something other than a CERT. */
static void
test_auth_not_a_cert(void **state)
{
	struct chan *a;
	struct raw m;
	struct sink s = { 0 };
	uint8_t msg[2 * (CHAN_HS_HDR_LEN + CHAN_HS_BODY_MAX)];
	uint8_t hello_a[40], sig[64], rev[RECORD_MAX];
	const uint8_t *p;
	size_t n, off;
	struct record_revoke v;
	const char *why = NULL;
	int rlen;

	memset(&v, 0, sizeof(v));
	memcpy(v.key_id, node_a.key.id, DKEY_ID_LEN);
	v.timestamp = FX_NOW;
	strcpy(v.reason, "test");
	strcpy(v.origin, "root");
	v.origin_seq = 2;
	rlen = record_encode_revoke(&v, &root, rev, sizeof(rev), &why);
	assert_true(rlen > 0);

	for (int garbage = 0; garbage < 2; garbage++) {
		a = fx_chan(CHAN_INITIATOR, &node_a, &trust_a);
		raw_init(&m, CHAN_RESPONDER);
		p = chan_out(a, &n);
		memcpy(hello_a, p, 40);
		chan_out_done(a, n);
		raw_absorb(&m, hello_a, 40);
		off = raw_hello(&m, msg);
		raw_keys(&m, hello_a + 8);
		memset(sig, 0, sizeof(sig));
		if (garbage)
			off += raw_auth(&m, sig, (const uint8_t *)"\x93junk",
			    5, msg + off);
		else
			off += raw_auth(&m, sig, rev, (size_t)rlen,
			    msg + off);
		assert_int_equal(feed(a, msg, off, 0, &s), CHAN_ERROR);
		assert_reason(a, garbage ? "malformed" : "no certificate");
		chan_free(a);
	}
	sink_clear(&s);
}

static int
setup(void **state)
{
	if (dkey_init() < 0)
		return -1;
	dkey_generate(&root);
	dkey_generate(&rogue);
	fx_make_node(&node_a, &root, ROLE_NODE, "fra", "fra-node1", 0);
	fx_make_node(&node_b, &root, ROLE_NODE, "ams", "ams-node1",
	    FX_NOW + 86400);
	fx_make_node(&node_site, &root, ROLE_SITE, "fra", "fra-site", 0);
	fx_make_node(&node_op, &root, ROLE_OPERATOR, "fra", "fra-ops", 0);
	fx_make_node(&node_unknown, &rogue, ROLE_NODE, "fra", "fra-node9",
	    0);
	fx_make_node(&node_expired, &root, ROLE_NODE, "fra", "fra-node7",
	    FX_NOW - 1);
	memset(&trust_a, 0, sizeof(trust_a));
	memset(&trust_b, 0, sizeof(trust_b));
	memcpy(trust_a.root_pk, root.pk, DKEY_PK_LEN);
	memcpy(trust_b.root_pk, root.pk, DKEY_PK_LEN);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_and_data),
		cmocka_unit_test(test_byte_at_a_time),
		cmocka_unit_test(test_pipelined_first_frame),
		cmocka_unit_test(test_largest_frame),
		cmocka_unit_test(test_trust_sets_site),
		cmocka_unit_test(test_replayed_frame),
		cmocka_unit_test(test_reordered_frames),
		cmocka_unit_test(test_reflected_frame),
		cmocka_unit_test(test_flipped_bits),
		cmocka_unit_test(test_truncated_frame),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_revoked_key),
		cmocka_unit_test(test_wrong_role),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_bad_handshake_headers),
		cmocka_unit_test(test_degenerate_ephemeral),
		cmocka_unit_test(test_altered_auth),
		cmocka_unit_test(test_mitm_splice),
		cmocka_unit_test(test_role_reflection),
		cmocka_unit_test(test_auth_not_a_cert),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
