/* Writes the seed corpus of fuzz_chan into a directory: valid handshakes
 * and frames made with the fixed keys of chan_fuzz.h, and near misses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "chan_fuzz.h"

#define GEN_BUF (64 * 1024)

static const char *dir;

struct seed {
	uint8_t b[GEN_BUF];
	size_t len;
};

static void
seed_start(struct seed *s, enum fz_mode mode, uint8_t chunk)
{
	s->b[0] = (uint8_t)mode;
	s->b[1] = chunk;
	s->len = 2;
}

static void
seed_add(struct seed *s, const void *p, size_t n)
{
	if (n > sizeof(s->b) - s->len)
		abort();
	memcpy(s->b + s->len, p, n);
	s->len += n;
}

static void
seed_write(const struct seed *s, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL ||
	    fwrite(s->b, 1, s->len, f) != s->len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

/* Takes c's pending output. */
static size_t
take(struct chan *c, uint8_t *out)
{
	const uint8_t *p;
	size_t n;

	if ((p = chan_out(c, &n)) == NULL)
		return 0;
	memcpy(out, p, n);
	chan_out_done(c, n);
	return n;
}

static void
feed_all(struct chan *c, const uint8_t *p, size_t n)
{
	const uint8_t *pl;
	size_t used, plen, off = 0;

	while (off < n) {
		if (chan_feed(c, p + off, n - off, &used, &pl, &plen) ==
		    CHAN_ERROR)
			abort();
		off += used;
	}
}

static size_t
seal(struct chan *c, const char *text, uint8_t *out)
{
	size_t len = strlen(text);

	if (chan_seal(c, (const uint8_t *)text, len, out,
	    CHAN_FRAME_LEN(len)) < 0)
		abort();
	return CHAN_FRAME_LEN(len);
}

int
main(int argc, char **argv)
{
	static uint8_t i_hello[64], i_auth[GEN_BUF], r_msgs[GEN_BUF];
	static uint8_t fr[GEN_BUF];
	struct chan *i, *r;
	struct seed s;
	size_t i_hello_len, i_auth_len, r_len, n, n2;

	if (argc != 2) {
		fprintf(stderr, "usage: gen_chan_corpus <dir>\n");
		return 2;
	}
	dir = argv[1];
	fz_setup();

	/* One handshake, recorded. */
	i = fz_chan(CHAN_INITIATOR);
	r = fz_chan(CHAN_RESPONDER);
	i_hello_len = take(i, i_hello);
	feed_all(r, i_hello, i_hello_len);
	r_len = take(r, r_msgs);
	feed_all(i, r_msgs, r_len);
	i_auth_len = take(i, i_auth);
	feed_all(r, i_auth, i_auth_len);
	if (!chan_established(i) || !chan_established(r))
		abort();

	/* To a responder: HELLO alone, the whole initiator side, then
	 * frames, and byte by byte. */
	seed_start(&s, FZ_HS_RESPONDER, 0);
	seed_add(&s, i_hello, i_hello_len);
	seed_write(&s, "hs-resp-hello");
	seed_add(&s, i_auth, i_auth_len);
	seed_write(&s, "hs-resp-full");
	n = seal(i, "gossip digest", fr);
	n += seal(i, "", fr + n);
	seed_add(&s, fr, n);
	seed_write(&s, "hs-resp-full-frames");
	s.b[1] = 1;
	seed_write(&s, "hs-resp-full-frames-bytewise");
	s.b[1] = 7;
	seed_write(&s, "hs-resp-full-frames-chunk7");

	/* Near misses. */
	seed_start(&s, FZ_HS_RESPONDER, 0);
	seed_add(&s, i_hello, i_hello_len);
	s.b[2 + 3] = 'X';
	seed_write(&s, "hs-resp-bad-magic");
	s.b[2 + 3] = 'H';
	s.b[2 + 4] = 2;
	seed_write(&s, "hs-resp-bad-version");
	s.b[2 + 4] = 1;
	memset(s.b + 2 + 8, 0, CHAN_EPH_LEN);
	seed_write(&s, "hs-resp-zero-ephemeral");
	seed_start(&s, FZ_HS_RESPONDER, 0);
	seed_add(&s, i_hello, i_hello_len);
	seed_add(&s, i_auth, i_auth_len);
	s.b[2 + i_hello_len + 8 + 20] ^= 0x01;
	seed_write(&s, "hs-resp-auth-flipped");
	seed_start(&s, FZ_HS_RESPONDER, 0);
	seed_add(&s, i_hello, i_hello_len);
	seed_add(&s, "MMCH\x01\x02\xff\xff", 8);
	seed_write(&s, "hs-resp-auth-too-long");

	/* To an initiator: the responder's HELLO and AUTH. */
	seed_start(&s, FZ_HS_INITIATOR, 0);
	seed_add(&s, r_msgs, r_len);
	seed_write(&s, "hs-init-reply");
	s.b[1] = 3;
	seed_write(&s, "hs-init-reply-chunk3");

	/* Frames from the responder to the initiator of a fresh pair: the
	 * pair repeats this handshake, so the counters start again. */
	chan_free(i);
	chan_free(r);
	fz_pair(&i, &r);
	n = seal(r, "first", fr);
	n2 = seal(r, "second, a little longer", fr + n);
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, fr, n + n2);
	seed_write(&s, "fr-two");
	s.b[1] = 5;
	seed_write(&s, "fr-two-chunk5");
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, fr, n);
	seed_add(&s, fr, n);
	seed_write(&s, "fr-replayed");
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, fr + n, n2);
	seed_add(&s, fr, n);
	seed_write(&s, "fr-reordered");
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, fr, n - 3);
	seed_write(&s, "fr-truncated");
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, "\x00\x10\x00\x11", 4);
	seed_add(&s, fr, 16);
	seed_write(&s, "fr-oversized");
	seed_start(&s, FZ_FRAMES, 0);
	seed_add(&s, "\x00\x00\x00\x0f", 4);
	seed_write(&s, "fr-short");

	/* Payloads for the round trip. */
	seed_start(&s, FZ_ROUNDTRIP, 2);
	seed_add(&s, "\x00\x05" "hello" "\x00\x00" "\x00\x03" "abc", 14);
	seed_write(&s, "rt-three");
	chan_free(i);
	chan_free(r);
	return 0;
}
