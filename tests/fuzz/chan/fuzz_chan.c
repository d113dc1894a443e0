/* Fuzz target: arbitrary bytes into the channel's decoders, in the
 * handshake (either role) and on an established channel; and sealed
 * payloads that must come back unchanged whatever the feed sizes. The
 * input layout is in chan_fuzz.h. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chan.h"
#include "chan_fuzz.h"

#define FZ_PAYLOAD_MAX 4096
#define FZ_PAYLOADS_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int ready;
static volatile uint8_t touched;

/* Feeds data in pieces of chunk bytes and checks what the decoder
 * promises: never takes more than given, AGAIN only when it took all,
 * a reason on every error, and nothing after one. */
static void
feed_checked(struct chan *c, const uint8_t *data, size_t size, size_t chunk)
{
	size_t off = 0;
	int dead = 0;

	if (chunk == 0)
		chunk = size > 0 ? size : 1;
	while (off < size) {
		size_t piece = size - off < chunk ? size - off : chunk;
		size_t poff = 0;

		while (poff < piece) {
			const uint8_t *p;
			size_t plen, used = (size_t)-1;
			enum chan_result r;

			r = chan_feed(c, data + off + poff, piece - poff,
			    &used, &p, &plen);
			if (used > piece - poff)
				abort();
			poff += used;
			switch (r) {
			case CHAN_ERROR:
				if (chan_error(c) == NULL || chan_established(c)
				    || chan_peer(c) != NULL)
					abort();
				dead = 1;
				break;
			case CHAN_AGAIN:
				if (poff != piece)
					abort();
				break;
			case CHAN_FRAME:
				if (p == NULL || plen > CHAN_FRAME_MAX ||
				    !chan_established(c))
					abort();
				/* Touch it: ASan checks it is all there. */
				if (plen > 0)
					touched ^= p[0] ^ p[plen - 1];
				break;
			case CHAN_ESTABLISHED:
				if (chan_peer(c) == NULL)
					abort();
				break;
			default:
				abort();
			}
			if (dead)
				break;
		}
		if (dead)
			break;
		off += piece;
	}
	if (dead) {
		const uint8_t *p;
		size_t used, plen;

		if (chan_feed(c, data, size, &used, &p, &plen) != CHAN_ERROR ||
		    used != 0)
			abort();
	}
	(void)chan_eof(c);
}

static void
roundtrip(const uint8_t *data, size_t size, size_t chunk)
{
	struct chan *i, *r;
	uint8_t *wire = NULL;
	size_t wlen = 0, off = 0, n = 0, expect_off = 0;
	const uint8_t *payloads[FZ_PAYLOADS_MAX];
	size_t lens[FZ_PAYLOADS_MAX];

	fz_pair(&i, &r);
	while (off + 2 <= size && n < FZ_PAYLOADS_MAX) {
		size_t len = (size_t)data[off] << 8 | data[off + 1];

		off += 2;
		if (len > size - off)
			len = size - off;
		if (len > FZ_PAYLOAD_MAX)
			len = FZ_PAYLOAD_MAX;
		payloads[n] = data + off;
		lens[n] = len;
		wire = realloc(wire, wlen + CHAN_FRAME_LEN(len));
		if (wire == NULL)
			abort();
		if (chan_seal(i, data + off, len, wire + wlen,
		    CHAN_FRAME_LEN(len)) != (long)CHAN_FRAME_LEN(len))
			abort();
		wlen += CHAN_FRAME_LEN(len);
		off += len;
		n++;
	}
	if (chunk == 0)
		chunk = wlen > 0 ? wlen : 1;
	off = 0;
	expect_off = 0;
	while (off < wlen) {
		size_t piece = wlen - off < chunk ? wlen - off : chunk;
		const uint8_t *p;
		size_t used, plen;
		enum chan_result res;

		res = chan_feed(r, wire + off, piece, &used, &p, &plen);
		off += used;
		if (res == CHAN_FRAME) {
			if (expect_off >= n || plen != lens[expect_off] ||
			    memcmp(p, payloads[expect_off], plen) != 0)
				abort();
			expect_off++;
		} else if (res != CHAN_AGAIN)
			abort();
	}
	if (expect_off != n || chan_eof(r) != 0)
		abort();
	free(wire);
	chan_free(i);
	chan_free(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chan *i = NULL, *r = NULL;
	size_t chunk;

	if (!ready) {
		fz_setup();
		ready = 1;
	}
	if (size < 2)
		return 0;
	chunk = data[1];
	switch (data[0] % FZ_MODES) {
	case FZ_HS_RESPONDER:
		r = fz_chan(CHAN_RESPONDER);
		feed_checked(r, data + 2, size - 2, chunk);
		break;
	case FZ_HS_INITIATOR:
		i = fz_chan(CHAN_INITIATOR);
		feed_checked(i, data + 2, size - 2, chunk);
		break;
	case FZ_FRAMES:
		fz_pair(&i, &r);
		feed_checked(i, data + 2, size - 2, chunk);
		break;
	case FZ_ROUNDTRIP:
		roundtrip(data + 2, size - 2, chunk);
		break;
	}
	chan_free(i);
	chan_free(r);
	return 0;
}
