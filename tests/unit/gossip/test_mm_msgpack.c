/* Unit tests for mm_msgpack: round trips, shortest forms, and every
 * rejection of the reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mm_msgpack.h"

static void
test_round_trip(void **state)
{
	uint8_t buf[512], bin[300];
	struct mm_mp_writer w;
	struct mm_mp_reader r;
	uint64_t v;
	uint32_t n;
	bool b;
	char s[64];
	const uint8_t *p;
	size_t len;
	static const uint64_t ints[] = { 0, 127, 128, 255, 256, 65535,
	    65536, 4294967295ULL, 4294967296ULL, UINT64_MAX };
	size_t i;

	(void)state;
	memset(bin, 7, sizeof(bin));
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 16);
	for (i = 0; i < 10; i++)
		mm_mp_put_uint(&w, ints[i]);
	mm_mp_put_bool(&w, true);
	mm_mp_put_nil(&w);
	mm_mp_put_str(&w, "hello");
	mm_mp_put_strn(&w, "abcdefghijklmnopqrstuvwxyz0123456789", 36);
	mm_mp_put_bin(&w, bin, sizeof(bin));
	mm_mp_put_bin(&w, bin, 3);
	assert_true(mm_mp_writer_ok(&w));

	mm_mp_reader_init(&r, buf, mm_mp_writer_len(&w));
	assert_int_equal(mm_mp_get_array(&r, 16, &n), 0);
	assert_int_equal(n, 16);
	for (i = 0; i < 10; i++) {
		assert_int_equal(mm_mp_get_uint(&r, &v), 0);
		assert_true(v == ints[i]);
	}
	assert_int_equal(mm_mp_get_bool(&r, &b), 0);
	assert_true(b);
	assert_true(mm_mp_peek_nil(&r));
	assert_int_equal(mm_mp_get_nil(&r), 0);
	assert_int_equal(mm_mp_get_str(&r, s, 5), 0);
	assert_string_equal(s, "hello");
	assert_int_equal(mm_mp_get_str(&r, s, 63), 0);
	assert_int_equal(strlen(s), 36);
	assert_int_equal(mm_mp_get_bin(&r, 300, &p, &len), 0);
	assert_int_equal(len, 300);
	assert_int_equal(mm_mp_get_bin_fixed(&r, bin, 3), 0);
	assert_int_equal(mm_mp_end(&r), 0);
}

static void
test_writer_overflow(void **state)
{
	uint8_t buf[4];
	struct mm_mp_writer w;

	(void)state;
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_str(&w, "abc");
	assert_true(mm_mp_writer_ok(&w));
	mm_mp_put_uint(&w, 1000);
	assert_false(mm_mp_writer_ok(&w));
	mm_mp_put_uint(&w, 1);	/* sticky */
	assert_false(mm_mp_writer_ok(&w));
	assert_int_equal(mm_mp_writer_len(&w), 4);
}

/* A growing writer leaves room for a header, enlarges its buffer past the
 * first allocation and writes what a fixed writer writes. */
static void
test_writer_grow(void **state)
{
	uint8_t fixed[2048], *buf;
	char s[1000];
	struct mm_mp_writer w, f;
	size_t len;
	uint32_t i;

	(void)state;
	memset(s, 'x', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	mm_mp_writer_init_grow(&w, 12);
	mm_mp_writer_init(&f, fixed, sizeof(fixed));
	assert_int_equal(mm_mp_writer_len(&w), 12);
	mm_mp_put_array(&w, 20);
	mm_mp_put_array(&f, 20);
	for (i = 0; i < 20; i++) {
		mm_mp_put_uint(&w, (uint64_t)i << (i * 3));
		mm_mp_put_uint(&f, (uint64_t)i << (i * 3));
	}
	mm_mp_put_str(&w, s);
	mm_mp_put_str(&f, s);
	mm_mp_put_str(&w, "");
	mm_mp_put_str(&f, "");
	assert_true(mm_mp_writer_ok(&w));
	assert_true(mm_mp_writer_ok(&f));
	buf = mm_mp_writer_take(&w, &len);
	assert_int_equal(len, 12 + mm_mp_writer_len(&f));
	assert_memory_equal(buf + 12, fixed, mm_mp_writer_len(&f));
	free(buf);

	/* A header larger than the first allocation. */
	mm_mp_writer_init_grow(&w, 300);
	mm_mp_put_nil(&w);
	buf = mm_mp_writer_take(&w, &len);
	assert_int_equal(len, 301);
	assert_int_equal(buf[300], 0xc0);
	free(buf);
}

/* Only the one-byte array header; the count is the caller's to judge. */
static void
test_fixarray(void **state)
{
	struct mm_mp_reader r;
	uint32_t n;

	(void)state;
	mm_mp_reader_init(&r, (const uint8_t *)"\x9f\x01", 2);
	assert_int_equal(mm_mp_get_fixarray(&r, &n), 0);
	assert_int_equal(n, 15);	/* more than is left: not checked */
	assert_int_equal(mm_mp_remaining(&r), 1);

	mm_mp_reader_init(&r, (const uint8_t *)"\x90", 1);
	assert_int_equal(mm_mp_get_fixarray(&r, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(mm_mp_end(&r), 0);

	mm_mp_reader_init(&r, (const uint8_t *)"\xdc\x00\x10", 3);
	assert_int_equal(mm_mp_get_fixarray(&r, &n), -1);
	assert_string_equal(r.why, "wrong type (want array)");

	mm_mp_reader_init(&r, (const uint8_t *)"", 0);
	assert_int_equal(mm_mp_get_fixarray(&r, &n), -1);
	assert_string_equal(r.why, "truncated");
}

/* A caller's own check joins the sticky error. */
static void
test_fail(void **state)
{
	struct mm_mp_reader r;
	uint64_t v;

	(void)state;
	mm_mp_reader_init(&r, (const uint8_t *)"\x05\x06", 2);
	assert_int_equal(mm_mp_get_uint(&r, &v), 0);
	assert_int_equal(mm_mp_fail(&r, "invalid state"), -1);
	assert_int_equal(mm_mp_get_uint(&r, &v), -1);
	assert_int_equal(mm_mp_fail(&r, "later"), -1);
	assert_string_equal(r.why, "invalid state");
}

/* Reading buf must fail with a reason containing want. */
static void
fails(const uint8_t *buf, size_t len, int what, const char *want)
{
	struct mm_mp_reader r;
	uint64_t v;
	uint32_t n;
	char s[8];
	const uint8_t *p;
	size_t l;
	int rc = 0;

	mm_mp_reader_init(&r, buf, len);
	switch (what) {
	case 'u':
		rc = mm_mp_get_uint(&r, &v);
		break;
	case 'a':
		rc = mm_mp_get_array(&r, 3, &n);
		break;
	case 's':
		rc = mm_mp_get_str(&r, s, 4);
		break;
	case 'b':
		rc = mm_mp_get_bin(&r, 4, &p, &l);
		break;
	case 'e':
		rc = mm_mp_get_uint(&r, &v) < 0 ? -1 : mm_mp_end(&r);
		break;
	case 'm':
		rc = mm_mp_get_uint_max(&r, 10, &v);
		break;
	}
	assert_int_equal(rc, -1);
	assert_non_null(r.why);
	if (strstr(r.why, want) == NULL)
		fail_msg("got \"%s\", want \"%s\"", r.why, want);
}

static void
test_rejections(void **state)
{
	(void)state;
	fails((const uint8_t *)"", 0, 'u', "truncated");
	fails((const uint8_t *)"\xcc\x05", 2, 'u', "shortest");
	fails((const uint8_t *)"\xcd\x00\x10", 3, 'u', "shortest");
	fails((const uint8_t *)"\xcd\x10", 2, 'u', "truncated");
	fails((const uint8_t *)"\xa1" "a", 2, 'u', "wrong type");
	fails((const uint8_t *)"\xd0\x01", 2, 'u', "wrong type");
	fails((const uint8_t *)"\x0b", 1, 'm', "out of range");
	fails((const uint8_t *)"\x94\x01\x02\x03\x04", 5, 'a', "too many");
	fails((const uint8_t *)"\xdc\x00\x02\x01\x02", 5, 'a', "shortest");
	fails((const uint8_t *)"\x93\x01", 2, 'a', "truncated");
	fails((const uint8_t *)"\xa5hello", 6, 's', "too long");
	fails((const uint8_t *)"\xd9\x02hi", 4, 's', "shortest");
	fails((const uint8_t *)"\xa2h\0", 3, 's', "NUL");
	fails((const uint8_t *)"\xa3hi", 3, 's', "truncated");
	fails((const uint8_t *)"\xc4\x05hello", 7, 'b', "too long");
	fails((const uint8_t *)"\xc5\x00\x02hi", 5, 'b', "shortest");
	fails((const uint8_t *)"\xa2hi", 3, 'b', "wrong type");
	fails((const uint8_t *)"\x01\x02", 2, 'e', "trailing");
}

static void
test_sticky_error(void **state)
{
	struct mm_mp_reader r;
	uint64_t v;

	(void)state;
	mm_mp_reader_init(&r, (const uint8_t *)"\xc0\x01", 2);
	assert_int_equal(mm_mp_get_uint(&r, &v), -1);
	assert_int_equal(mm_mp_get_nil(&r), -1);	/* even though it is */
	assert_string_equal(r.why, "wrong type (want unsigned integer)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_writer_overflow),
		cmocka_unit_test(test_writer_grow),
		cmocka_unit_test(test_fixarray),
		cmocka_unit_test(test_fail),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_sticky_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
