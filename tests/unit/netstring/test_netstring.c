/* Unit tests for netstring: parsing whole, partial and bad netstrings,
 * the length limit, and formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "netstring.h"

#define MAX_TEST 1000

/* Parses an exact-size copy, so a read past len is caught under ASan. */
static int
parse_max(const char *s, size_t len, size_t max, const char **data,
    size_t *data_len, size_t *consumed)
{
	char *copy = malloc(len > 0 ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, s, len);
	rc = netstring_parse(copy, len, max, data, data_len, consumed);
	if (rc == 1) {
		assert_true(*data >= copy && *data + *data_len <= copy + len);
		assert_true(*consumed <= len);
		*data = s + (*data - copy);
	} else {
		assert_int_equal(*consumed, 0);
	}
	free(copy);
	return rc;
}

static int
parse(const char *s, size_t len, const char **data, size_t *data_len,
    size_t *consumed)
{
	return parse_max(s, len, MAX_TEST, data, data_len, consumed);
}

static void
test_whole(void **state)
{
	const char *s = "5:hello,", *data;
	size_t data_len, consumed;

	assert_int_equal(parse(s, strlen(s), &data, &data_len, &consumed), 1);
	assert_int_equal(consumed, 8);
	assert_int_equal(data_len, 5);
	assert_memory_equal(data, "hello", 5);

	s = "0:,";
	assert_int_equal(parse(s, 3, &data, &data_len, &consumed), 1);
	assert_int_equal(consumed, 3);
	assert_int_equal(data_len, 0);
	assert_ptr_equal(data, s + 2);

	/* Any bytes in the data, the framing characters too. */
	s = "6:a,b:\0\n,";
	assert_int_equal(parse(s, 9, &data, &data_len, &consumed), 1);
	assert_int_equal(data_len, 6);
	assert_memory_equal(data, "a,b:\0\n", 6);

	s = "12:hello world!,";
	assert_int_equal(parse(s, strlen(s), &data, &data_len, &consumed), 1);
	assert_int_equal(consumed, 16);
	assert_memory_equal(data, "hello world!", 12);
}

static void
test_pipelined(void **state)
{
	const char *s = "3:abc,0:,2:xy,9", *data;
	size_t len = strlen(s), pos = 0, data_len, consumed;

	assert_int_equal(parse(s, len, &data, &data_len, &consumed), 1);
	assert_memory_equal(data, "abc", 3);
	pos += consumed;
	assert_int_equal(parse(s + pos, len - pos, &data, &data_len,
	    &consumed), 1);
	assert_int_equal(data_len, 0);
	pos += consumed;
	assert_int_equal(parse(s + pos, len - pos, &data, &data_len,
	    &consumed), 1);
	assert_memory_equal(data, "xy", 2);
	pos += consumed;
	assert_int_equal(parse(s + pos, len - pos, &data, &data_len,
	    &consumed), 0);
	assert_int_equal(pos, len - 1);
}

/* Every proper prefix of a valid netstring needs more. */
static void
test_partial(void **state)
{
	const char *good[] = { "12:hello world!,", "0:,", "1:x,",
		"10:0123456789," };
	const char *data;
	size_t i, k, data_len, consumed;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t n = strlen(good[i]);

		for (k = 0; k < n; k++) {
			data = good[i];
			data_len = 99;
			assert_int_equal(parse(good[i], k, &data, &data_len,
			    &consumed), 0);
			assert_null(data);
			assert_int_equal(data_len, 0);
		}
		assert_int_equal(parse(good[i], n, &data, &data_len,
		    &consumed), 1);
		assert_int_equal(consumed, n);
	}
}

static void
test_invalid(void **state)
{
	static const struct {
		const char *s;
		size_t len;
	} bad[] = {
		{ ":", 1 },		/* no digits */
		{ ":,", 2 },
		{ "a:", 2 },
		{ "-1:x,", 5 },
		{ "+1:x,", 5 },
		{ " 1:x,", 5 },
		{ "1 :x,", 5 },
		{ "1;x,", 4 },
		{ "1x", 2 },
		{ "01:x,", 5 },		/* leading zero */
		{ "00:,", 4 },
		{ "00", 2 },
		{ "0000000000", 10 },
		{ "5:hello;", 8 },	/* no comma */
		{ "5:hellox", 8 },
		{ "5:hello:", 8 },
		{ "0:x", 3 },
		{ "0::", 3 },
		{ "2:abc,", 6 },
		{ "\xff", 1 },
		{ "\0", 1 },
	};
	const char *data;
	size_t i, data_len, consumed;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i].s, bad[i].len, &data, &data_len,
		    &consumed) != -1)
			fail_msg("\"%s\" not refused", bad[i].s);
}

static void
test_max(void **state)
{
	const char *data;
	size_t data_len, consumed;

	assert_int_equal(parse_max("5:hello,", 8, 5, &data, &data_len,
	    &consumed), 1);
	assert_int_equal(parse_max("5:hello,", 8, 4, &data, &data_len,
	    &consumed), -1);
	/* Refused from the digits alone, before the data arrives. */
	assert_int_equal(parse_max("5", 1, 4, &data, &data_len, &consumed),
	    -1);
	assert_int_equal(parse_max("5:", 2, 4, &data, &data_len, &consumed),
	    -1);
	assert_int_equal(parse_max("12", 2, 10, &data, &data_len, &consumed),
	    -1);
	assert_int_equal(parse_max("1", 1, 10, &data, &data_len, &consumed),
	    0);
	assert_int_equal(parse_max("10", 2, 10, &data, &data_len, &consumed),
	    0);
	assert_int_equal(parse_max("0:,", 3, 0, &data, &data_len, &consumed),
	    1);
	assert_int_equal(parse_max("1:x,", 4, 0, &data, &data_len, &consumed),
	    -1);
}

static void
test_digit_limit(void **state)
{
	const char *data;
	size_t data_len, consumed;

	/* Ten digits may still be fine; the eleventh never is. */
	assert_int_equal(parse_max("9999999999", 10, SIZE_MAX, &data,
	    &data_len, &consumed), SIZE_MAX > 9999999999ULL ? 0 : -1);
	assert_int_equal(parse_max("1000000000:", 11, SIZE_MAX, &data,
	    &data_len, &consumed), 0);
	assert_int_equal(parse_max("10000000000", 11, SIZE_MAX, &data,
	    &data_len, &consumed), -1);
	assert_int_equal(parse_max("99999999999999999999999999:", 27,
	    SIZE_MAX, &data, &data_len, &consumed), -1);
	assert_int_equal(parse_max("18446744073709551616:", 21, SIZE_MAX,
	    &data, &data_len, &consumed), -1);
}

static void
test_empty_input(void **state)
{
	const char *data;
	size_t data_len, consumed;

	assert_int_equal(parse("", 0, &data, &data_len, &consumed), 0);
	assert_int_equal(netstring_parse(NULL, 0, 10, &data, &data_len,
	    &consumed), 0);
	assert_int_equal(parse("0", 1, &data, &data_len, &consumed), 0);
	assert_int_equal(parse("0:", 2, &data, &data_len, &consumed), 0);
}

static void
test_format(void **state)
{
	char out[64];

	assert_int_equal(netstring_format(out, sizeof(out), "hello", 5), 8);
	assert_memory_equal(out, "5:hello,", 8);
	assert_int_equal(netstring_format(out, sizeof(out), "", 0), 3);
	assert_memory_equal(out, "0:,", 3);
	assert_int_equal(netstring_format(out, sizeof(out), NULL, 0), 3);
	assert_memory_equal(out, "0:,", 3);
	assert_int_equal(netstring_format(out, sizeof(out), "0123456789",
	    10), 14);
	assert_memory_equal(out, "10:0123456789,", 14);
	assert_int_equal(netstring_format(out, sizeof(out), "a\0b", 3), 6);
	assert_memory_equal(out, "3:a\0b,", 6);

	/* Exactly fitting, and one byte short. */
	memset(out, '#', sizeof(out));
	assert_int_equal(netstring_format(out, 8, "hello", 5), 8);
	assert_int_equal(out[8], '#');
	assert_int_equal(netstring_format(out, 7, "hello", 5), 0);
	assert_int_equal(netstring_format(out, 3, "", 0), 3);
	assert_int_equal(netstring_format(out, 2, "", 0), 0);
	assert_int_equal(netstring_format(NULL, 0, "", 0), 0);
	assert_int_equal(netstring_format(out, 13, "0123456789", 10), 0);
	/* A huge length does not wrap the size check. */
	assert_int_equal(netstring_format(out, sizeof(out), "x", SIZE_MAX), 0);
	assert_int_equal(netstring_format(out, sizeof(out), "x",
	    SIZE_MAX - 1), 0);
}

static void
test_round_trip(void **state)
{
	static char data[5000], out[5100];
	const char *got;
	size_t len, i, n, got_len, consumed;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + 3);
	for (len = 0; len <= sizeof(data); len += len < 20 ? 1 : 97) {
		n = netstring_format(out, sizeof(out), data, len);
		assert_true(n > len + 2);
		assert_int_equal(netstring_parse(out, n, sizeof(data), &got,
		    &got_len, &consumed), 1);
		assert_int_equal(consumed, n);
		assert_int_equal(got_len, len);
		assert_memory_equal(got, data, len);
		assert_int_equal(netstring_parse(out, n - 1, sizeof(data),
		    &got, &got_len, &consumed), 0);
		if (len > 0)
			assert_int_equal(netstring_parse(out, n, len - 1,
			    &got, &got_len, &consumed), -1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_max),
		cmocka_unit_test(test_digit_limit),
		cmocka_unit_test(test_empty_input),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
