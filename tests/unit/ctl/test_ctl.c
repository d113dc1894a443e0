/* ctl: frames round-trip; every malformed header or body is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl.h"
#include "mm_util.h"

/* Decodes a whole frame that must be valid. */
static struct ctl_msg *
decode_ok(const uint8_t *buf, size_t len)
{
	struct ctl_msg *m = NULL;
	const char *why = NULL;
	size_t used = 0;
	int r;

	r = ctl_frame_decode(buf, len, &m, &used, &why);
	if (r != 1)
		fail_msg("decode: %d %s", r, why != NULL ? why : "");
	assert_int_equal(used, len);
	return m;
}

/* A body (msgpack bytes) of type t must be refused with a reason that
 * contains needle. */
static void
body_bad(enum ctl_type t, const char *body, size_t len, const char *needle)
{
	const char *why = NULL;
	struct ctl_msg *m;

	m = ctl_body_decode(t, (const uint8_t *)body, len, &why);
	if (m != NULL)
		fail_msg("accepted a bad body, expected '%s'", needle);
	assert_non_null(why);
	if (strstr(why, needle) == NULL)
		fail_msg("'%s' does not mention '%s'", why, needle);
}

static void
test_request_roundtrip(void **state)
{
	const char *argv[] = { "alice@example.com", "ms1", "",
		"a string longer than thirty-one bytes, to use str8" };
	const char *why = NULL;
	struct ctl_msg *m;
	uint8_t *f;
	size_t len, i;

	f = ctl_encode_request("user-add", 4, argv, &len, &why);
	assert_non_null(f);
	assert_memory_equal(f, "MMCT\0\1\0\1", 8);
	m = decode_ok(f, len);
	assert_int_equal(m->type, CTL_REQUEST);
	assert_string_equal(m->op, "user-add");
	assert_int_equal(m->argc, 4);
	for (i = 0; i < 4; i++)
		assert_string_equal(m->argv[i], argv[i]);
	ctl_msg_free(m);

	/* Every prefix is incomplete, never an error. */
	for (i = 0; i < len; i++) {
		m = NULL;
		assert_int_equal(ctl_frame_decode(f, i, &m, &i, &why), 0);
		assert_null(m);
	}
	free(f);
}

static void
test_response_roundtrip(void **state)
{
	const char *r0[] = { "user", "site", "backend" };
	const char *r1[] = { "alice", "fra", "ms1" };
	struct ctl_rows rows;
	struct ctl_msg *m;
	const char *why = NULL;
	uint8_t *f;
	size_t len;

	ctl_rows_init(&rows);
	assert_int_equal(ctl_rows_add(&rows, 3, r0), 0);
	assert_int_equal(ctl_rows_add(&rows, 3, r1), 0);
	assert_int_equal(ctl_rows_add(&rows, 0, NULL), 0);
	f = ctl_encode_response(CTL_END, CTL_TEMP, "busy", &rows, &len, &why);
	assert_non_null(f);
	m = decode_ok(f, len);
	assert_int_equal(m->type, CTL_END);
	assert_int_equal(m->status, CTL_TEMP);
	assert_string_equal(m->message, "busy");
	assert_int_equal(m->rows.n, 3);
	assert_int_equal(m->rows.row[1].n, 3);
	assert_string_equal(m->rows.row[1].col[2], "ms1");
	assert_int_equal(m->rows.row[2].n, 0);
	ctl_msg_free(m);
	free(f);
	ctl_rows_clear(&rows);

	f = ctl_encode_response(CTL_RESPONSE, CTL_OK, NULL, NULL, &len, &why);
	m = decode_ok(f, len);
	assert_int_equal(m->type, CTL_RESPONSE);
	assert_string_equal(m->message, "");
	assert_int_equal(m->rows.n, 0);
	ctl_msg_free(m);
	free(f);

	f = ctl_encode_progress(70000, UINT64_C(1) << 40, &len);
	m = decode_ok(f, len);
	assert_int_equal(m->type, CTL_PROGRESS);
	assert_int_equal(m->done, 70000);
	assert_int_equal(m->total, UINT64_C(1) << 40);
	ctl_msg_free(m);
	free(f);
}

static void
test_many_rows(void **state)
{
	const char *cols[] = { "user-with-a-long-name@example.com", "ms1",
		"active" };
	struct ctl_rows rows;
	struct ctl_msg *m;
	const char *why = NULL;
	uint8_t *f;
	size_t len, i;

	ctl_rows_init(&rows);
	for (i = 0; i < 20000; i++)
		assert_int_equal(ctl_rows_add(&rows, 3, cols), 0);
	f = ctl_encode_response(CTL_RESPONSE, CTL_OK, "x", &rows, &len, &why);
	assert_non_null(f);
	m = decode_ok(f, len);
	assert_int_equal(m->rows.n, 20000);
	ctl_msg_free(m);
	free(f);
	/* Past the frame limit the encoder refuses. */
	for (i = 0; i < 20000; i++)
		assert_int_equal(ctl_rows_add(&rows, 3, cols), 0);
	f = ctl_encode_response(CTL_RESPONSE, CTL_OK, "x", &rows, &len, &why);
	assert_null(f);
	assert_string_equal(why, "frame too large");
	ctl_rows_clear(&rows);
}

static void
test_encode_limits(void **state)
{
	char *big = xmalloc(CTL_STR_MAX + 2);
	const char *argv[1] = { big };
	const char *why = NULL;
	struct ctl_rows rows;
	size_t len;

	memset(big, 'a', CTL_STR_MAX + 1);
	big[CTL_STR_MAX + 1] = '\0';
	assert_null(ctl_encode_request("op", 1, argv, &len, &why));
	assert_null(ctl_encode_request("an-op-name-longer-than-32-bytes-x",
	    0, NULL, &len, &why));
	assert_null(ctl_encode_request("op", CTL_ARGS_MAX + 1, argv, &len,
	    &why));
	ctl_rows_init(&rows);
	assert_int_equal(ctl_rows_add(&rows, 1, argv), -1);
	assert_int_equal(ctl_rows_add(&rows, CTL_COLS_MAX + 1, argv), -1);
	assert_int_equal(rows.n, 0);
	assert_null(ctl_encode_response(CTL_REQUEST, CTL_OK, "", &rows, &len,
	    &why));
	free(big);
}

static void
test_bad_headers(void **state)
{
	static const struct {
		const char *hdr;
		const char *why;
	} cases[] = {
		{ "MMCX\0\1\0\1\0\0\0\0", "bad magic" },
		{ "MMCT\0\2\0\1\0\0\0\0", "unsupported version" },
		{ "MMCT\1\1\0\1\0\0\0\0", "unsupported version" },
		{ "MMCT\0\1\0\0\0\0\0\0", "unknown frame type" },
		{ "MMCT\0\1\0\5\0\0\0\0", "unknown frame type" },
		{ "MMCT\0\1\1\1\0\0\0\0", "unknown frame type" },
		{ "MMCT\0\1\0\1\0\20\0\1", "frame too large" },
		{ "MMCT\0\1\0\1\377\377\377\377", "frame too large" },
	};
	enum ctl_type t;
	uint32_t n;
	const char *why;
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(cases); i++) {
		why = NULL;
		assert_int_equal(ctl_header_decode((const uint8_t *)
		    cases[i].hdr, CTL_HEADER_LEN, &t, &n, &why), -1);
		assert_string_equal(why, cases[i].why);
	}
	/* Exactly the limit is fine: checked before the body exists. */
	assert_int_equal(ctl_header_decode((const uint8_t *)
	    "MMCT\0\1\0\4\0\20\0\0", CTL_HEADER_LEN, &t, &n, &why), 1);
	assert_int_equal(n, CTL_FRAME_MAX);
	assert_int_equal(t, CTL_END);
	assert_int_equal(ctl_header_decode((const uint8_t *)"MMCT", 4, &t, &n,
	    &why), 0);
}

#define B(s) s, sizeof(s) - 1

static void
test_bad_bodies(void **state)
{
	/* Requests. */
	body_bad(CTL_REQUEST, B(""), "short");
	body_bad(CTL_REQUEST, B("\x92\xa2op"), "short");
	body_bad(CTL_REQUEST, B("\x92\xa2op\x90\xc0"), "trailing");
	body_bad(CTL_REQUEST, B("\x91\xa2op"), "not [op, args]");
	body_bad(CTL_REQUEST, B("\x93\xa2op\x90\x90"), "too long");
	body_bad(CTL_REQUEST, B("\x92\x01\x90"), "string expected");
	body_bad(CTL_REQUEST, B("\x92\xa2op\xa0"), "array expected");
	body_bad(CTL_REQUEST, B("\x92\xa2op\x91\x01"), "string expected");
	body_bad(CTL_REQUEST, B("\x92\xa3o\0p\x90"), "NUL");
	body_bad(CTL_REQUEST, B("\x92\xa2op\xdd\xff\xff\xff\xff"), "too long");
	body_bad(CTL_REQUEST, B("\x92\xa2op\xdc\x00\x05\xa0"), "short");
	body_bad(CTL_REQUEST, B("\x92\xdb\xff\xff\xff\xff\x90"), "too long");
	body_bad(CTL_REQUEST, B("\x92\xa2op\x91\xdb\x00\x00\x10\x01"),
	    "too long");
	body_bad(CTL_REQUEST, B("\x92\xa2op\x91\xda\x00\x10x"), "short");
	body_bad(CTL_REQUEST, B("\x92\xa2op\x91\xd9"), "short");
	body_bad(CTL_REQUEST, B("\x92\xd9\x21"
	    "012345678901234567890123456789012\x90"), "too long");
	/* Responses. */
	body_bad(CTL_END, B("\x93\x05\xa0\x90"), "unknown status");
	body_bad(CTL_END, B("\x93\xcc\xff\xa0\x90"), "unknown status");
	body_bad(CTL_END, B("\x93\xff\xa0\x90"), "unsigned integer");
	body_bad(CTL_END, B("\x93\xce\x00\x00"), "short");
	body_bad(CTL_END, B("\x93\x00\xa0\x91\x91\x01"), "string expected");
	body_bad(CTL_END, B("\x93\x00\xa0\x91\xa0"), "array expected");
	body_bad(CTL_END, B("\x93\x00\xa0\x91\xdc\x00\x21"), "too long");
	body_bad(CTL_RESPONSE, B("\x92\x00\xa0"), "not [status");
	body_bad(CTL_RESPONSE, B("\x93\x00\xa0\x90\x00"), "trailing");
	/* Progress. */
	body_bad(CTL_PROGRESS, B("\x92\x01"), "short");
	body_bad(CTL_PROGRESS, B("\x92\x01\xcf\0\0\0\0\0\0\0"), "short");
	body_bad(CTL_PROGRESS, B("\x93\x01\x02\x03"), "too long");
	body_bad(CTL_PROGRESS, B("\x92\x01\xa0"), "unsigned integer");
	body_bad((enum ctl_type)9, B("\x90"), "unknown frame type");
}

static void
test_non_canonical_accepted(void **state)
{
	const char *why = NULL;
	struct ctl_msg *m;

	/* Wider encodings than needed are still msgpack. */
	m = ctl_body_decode(CTL_REQUEST, (const uint8_t *)
	    "\xdc\x00\x02\xd9\x02op\xdd\x00\x00\x00\x01\xda\x00\x01x", 16,
	    &why);
	assert_non_null(m);
	assert_string_equal(m->op, "op");
	assert_string_equal(m->argv[0], "x");
	ctl_msg_free(m);
	m = ctl_body_decode(CTL_PROGRESS, (const uint8_t *)
	    "\x92\xcd\x00\x01\xcf\0\0\0\1\0\0\0\0", 13, &why);
	assert_non_null(m);
	assert_int_equal(m->done, 1);
	assert_int_equal(m->total, UINT64_C(1) << 32);
	ctl_msg_free(m);
}

static void
test_two_frames_in_buffer(void **state)
{
	const char *argv[] = { "x" };
	const char *why = NULL;
	struct ctl_msg *m = NULL;
	uint8_t *a, *b, *both;
	size_t la, lb, used;

	a = ctl_encode_request("one", 1, argv, &la, &why);
	b = ctl_encode_progress(1, 2, &lb);
	both = xmalloc(la + lb);
	memcpy(both, a, la);
	memcpy(both + la, b, lb);
	assert_int_equal(ctl_frame_decode(both, la + lb, &m, &used, &why), 1);
	assert_int_equal(used, la);
	assert_string_equal(m->op, "one");
	ctl_msg_free(m);
	assert_int_equal(ctl_frame_decode(both + used, lb, &m, &used, &why),
	    1);
	assert_int_equal(m->type, CTL_PROGRESS);
	ctl_msg_free(m);
	free(both);
	free(a);
	free(b);
	assert_string_equal(ctl_type_name(CTL_END), "end");
}

/* An answer as a stream: many RESPONSE frames, more rows than one frame
 * may carry in all, then END, read in pieces of odd sizes as they would
 * come off a socket and added up in one table. */
static void
test_stream_of_frames(void **state)
{
	enum { FRAMES = 70, PER = 1000 };
	struct ctl_rows part, all;
	struct ctl_msg *m = NULL;
	const char *why = NULL, *cols[2];
	char a[32], b[32];
	uint8_t *stream = NULL, *f;
	size_t len, total = 0, have = 0, off = 0, step = 1, used, i, j;
	int r, ended = 0;

	for (i = 0; i <= FRAMES; i++) {
		ctl_rows_init(&part);
		for (j = 0; j < (i < FRAMES ? PER : 5); j++) {
			snprintf(a, sizeof(a), "u%07zu@a.test", i * PER + j);
			snprintf(b, sizeof(b), "be%zu", j % 3);
			cols[0] = a;
			cols[1] = b;
			assert_int_equal(ctl_rows_add(&part, 2, cols), 0);
		}
		f = ctl_encode_response(i < FRAMES ? CTL_RESPONSE : CTL_END,
		    i < FRAMES ? CTL_OK : CTL_TEMP, i < FRAMES ? "" : "done",
		    &part, &len, &why);
		assert_non_null(f);
		stream = xrealloc(stream, total + len);
		memcpy(stream + total, f, len);
		total += len;
		free(f);
		ctl_rows_clear(&part);
	}
	ctl_rows_init(&all);
	while (!ended) {
		/* More bytes arrive: 1, 2, 4, ... up to 64 KiB at a time. */
		have = have + step < total ? have + step : total;
		step = step < 65536 ? step * 2 + 1 : 1;
		while ((r = ctl_frame_decode(stream + off, have - off, &m,
		    &used, &why)) == 1) {
			off += used;
			for (i = 0; i < m->rows.n; i++)
				assert_int_equal(ctl_rows_add(&all,
				    m->rows.row[i].n, (const char *const *)
				    m->rows.row[i].col), 0);
			if (m->type == CTL_END) {
				assert_int_equal(m->status, CTL_TEMP);
				assert_string_equal(m->message, "done");
				ended = 1;
			} else {
				assert_int_equal(m->type, CTL_RESPONSE);
			}
			ctl_msg_free(m);
		}
		assert_int_equal(r, ended ? r : 0);
		assert_true(have < total || ended);
	}
	assert_int_equal(off, total);
	assert_int_equal(all.n, FRAMES * PER + 5);
	assert_true(all.n > CTL_ROWS_MAX);
	for (i = 0; i < all.n; i++) {
		snprintf(a, sizeof(a), "u%07zu@a.test", i);
		assert_string_equal(all.row[i].col[0], a);
	}
	ctl_rows_clear(&all);
	free(stream);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_roundtrip),
		cmocka_unit_test(test_response_roundtrip),
		cmocka_unit_test(test_many_rows),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_bad_headers),
		cmocka_unit_test(test_bad_bodies),
		cmocka_unit_test(test_non_canonical_accepted),
		cmocka_unit_test(test_two_frames_in_buffer),
		cmocka_unit_test(test_stream_of_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
