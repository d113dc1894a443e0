/* Unit tests for popmap: syntax, errors, exact and regex lookups. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "popmap.h"

#define BIG_MAP_ENTRIES 100000

static struct popmap *
parse(const char *text)
{
	char *err = NULL;
	struct popmap *map = popmap_parse(text, strlen(text), "t", &err);

	if (map == NULL)
		fail_msg("unexpected error: %s", err);
	assert_null(err);
	return map;
}

/* The text must fail with exactly the message want. */
static void
parse_fails_len(const char *text, size_t len, const char *want)
{
	char *err = NULL;
	struct popmap *map = popmap_parse(text, len, "f.map", &err);

	assert_null(map);
	assert_non_null(err);
	assert_string_equal(err, want);
	free(err);
}

static void
parse_fails(const char *text, const char *want)
{
	parse_fails_len(text, strlen(text), want);
}

/* The lookup must give want (NULL: no match). */
static void
lookup_is(const struct popmap *map, const char *user, const char *want)
{
	char out[POPMAP_VALUE_MAX + 1];
	int r = popmap_lookup(map, user, out, sizeof(out));

	if (want == NULL) {
		assert_int_equal(r, 0);
		return;
	}
	assert_int_equal(r, 1);
	assert_string_equal(out, want);
}

static void
test_basic(void **state)
{
	struct popmap *map = parse(
	    "# comment\n"
	    "\n"
	    "   \t\n"
	    "  # indented comment\n"
	    "alice@example.com: ms1\n"
	    "bob:10.0.0.5:1143\n"
	    "  carol  \t:\t  [2001:db8::1]:110  \n"
	    "dave: [::1]\r\n"
	    "erin :ms2\n"
	    "last:ms3");	/* no final LF */

	assert_int_equal(popmap_count(map), 6);
	lookup_is(map, "alice@example.com", "ms1");
	lookup_is(map, "bob", "10.0.0.5:1143");
	lookup_is(map, "carol", "[2001:db8::1]:110");
	lookup_is(map, "dave", "[::1]");
	lookup_is(map, "erin", "ms2");
	lookup_is(map, "last", "ms3");
	/* Exact keys are case-sensitive: the caller normalises. */
	lookup_is(map, "Alice@example.com", NULL);
	lookup_is(map, "alice", NULL);
	lookup_is(map, "", NULL);
	popmap_free(map);
}

static void
test_empty(void **state)
{
	char *err = NULL;
	struct popmap *map = popmap_parse("", 0, "t", &err);

	assert_non_null(map);
	assert_int_equal(popmap_count(map), 0);
	lookup_is(map, "alice", NULL);
	popmap_free(map);

	map = parse("# only a comment\n\n");
	assert_int_equal(popmap_count(map), 0);
	popmap_free(map);
	popmap_free(NULL);
}

static void
test_regex_expansion(void **state)
{
	struct popmap *map = parse(
	    "^(.*)@example\\.org$: ms2\n"
	    "^([a-m].*)@ex\\.net$: $1.ex.net\n"
	    "^([^@]+)@([^@]+)\\.test$: $2-$1:1$1\n"
	    "^(a)|(b)@opt$: x$1y$2z\n"
	    "^(.*)@whole$: $0\n"
	    "^lit@.*$: h$x$\n"
	    "^[[:alpha:]]+$: alpha\n");

	assert_int_equal(popmap_count(map), 7);
	lookup_is(map, "anyone@example.org", "ms2");
	lookup_is(map, "kate@ex.net", "kate.ex.net");
	lookup_is(map, "zed@ex.net", NULL);
	lookup_is(map, "u@d.test", "d-u:1u");
	/* A group that did not take part expands to nothing. */
	lookup_is(map, "a", "xayz");
	lookup_is(map, "b@opt", "xybz");
	lookup_is(map, "me@whole", "me@whole");
	/* '$' without a digit is literal. */
	lookup_is(map, "lit@x", "h$x$");
	lookup_is(map, "plain", "alpha");
	lookup_is(map, "plain1", NULL);
	popmap_free(map);
}

static void
test_order(void **state)
{
	struct popmap *map = parse(
	    "^.*@a\\.com$: first\n"
	    "^x.*$: second\n"
	    "x@a.com: exact\n"
	    "^.*$: catchall\n");

	/* Exact entries before regexes, wherever they appear. */
	lookup_is(map, "x@a.com", "exact");
	/* Then regexes in file order. */
	lookup_is(map, "xy@a.com", "first");
	lookup_is(map, "xy", "second");
	lookup_is(map, "zz", "catchall");
	popmap_free(map);
}

static void
test_lookup_out_small(void **state)
{
	struct popmap *map = parse(
	    "alice: ms1\n"
	    "^(.*)@grow$: $1$1$1\n");
	char out[8];

	assert_int_equal(popmap_lookup(map, "alice", out, 4), 1);
	assert_string_equal(out, "ms1");
	assert_int_equal(popmap_lookup(map, "alice", out, 3), -1);
	assert_int_equal(popmap_lookup(map, "alice", out, 0), -1);
	assert_int_equal(popmap_lookup(map, "ab@grow", out, 7), 1);
	assert_string_equal(out, "ababab");
	assert_int_equal(popmap_lookup(map, "ab@grow", out, 6), -1);
	assert_int_equal(popmap_lookup(map, "abc@grow", out, sizeof(out)), -1);
	popmap_free(map);
}

static void
test_syntax_errors(void **state)
{
	parse_fails("a: b\nnocolon\n", "f.map:2: missing ':'");
	parse_fails(": ms1\n", "f.map:1: empty key");
	parse_fails("  \t: ms1\n", "f.map:1: empty key");
	parse_fails("alice:\n", "f.map:1: empty value");
	parse_fails("alice:   \r\n", "f.map:1: empty value");
	parse_fails("\n\nalice: ms1 ms2\n", "f.map:3: white space in value");
	parse_fails("alice: ms1 # primary\n", "f.map:1: white space in value");
	parse_fails("alice: $1\n", "f.map:1: $N but the key is not a regex");
	parse_fails("^(a)$: $2\n", "f.map:1: $2 but the regex has 1 group");
	parse_fails("^a$: $1\n", "f.map:1: $1 but the regex has 0 groups");
	parse_fails_len("a: b\nal\0ce: ms1\n", 16, "f.map:2: NUL byte");
	parse_fails_len("a: b\0", 5, "f.map:1: NUL byte");
}

static void
test_duplicate(void **state)
{
	parse_fails("alice: ms1\nbob: ms2\n# c\nalice: ms3\n",
	    "f.map:4: duplicate key, first at line 1");
	/* Equal regexes are not duplicates: the first one wins. */
	{
		struct popmap *map = parse("^a$: one\n^a$: two\n");

		lookup_is(map, "a", "one");
		popmap_free(map);
	}
}

static void
test_bad_regex(void **state)
{
	char *err = NULL;
	struct popmap *map;

	map = popmap_parse("a: b\n^(unclosed: ms1\n", 21, "f.map", &err);
	assert_null(map);
	assert_non_null(err);
	assert_true(strncmp(err, "f.map:2: bad regex: ", 20) == 0);
	assert_true(strlen(err) > 20);
	free(err);

	/* Without white space after the separator the first ':' splits, so
	 * a bracket class is cut and reported. */
	map = popmap_parse("^[[:alpha:]]+$:ms1\n", 19, "f.map", &err);
	assert_null(map);
	assert_true(strncmp(err, "f.map:1: bad regex: ", 20) == 0);
	free(err);
}

/* Patterns that would make regcomp take huge memory are refused early. */
static void
test_regex_limits(void **state)
{
	char deep[128];
	struct popmap *map;
	size_t i;

	parse_fails("^a++$: h\n", "f.map:1: regex repeats a repetition");
	parse_fails("^a*{2}$: h\n", "f.map:1: regex repeats a repetition");
	parse_fails("^\xc4+++++++++++++++++++++++++++++++++++++++*)$: h\n",
	    "f.map:1: regex repeats a repetition");
	parse_fails("^((a{99}){99}){99}$: h\n", "f.map:1: regex too complex");
	parse_fails("^(a|b|c){5000}$: h\n", "f.map:1: regex too complex");
	parse_fails("^a{1,5000}$: h\n", "f.map:1: regex too complex");
	parse_fails("^(a)\\1$: h\n",
	    "f.map:1: regex back-references not supported");

	for (i = 0; i < 40; i++)
		deep[i + 1] = '(';
	deep[0] = '^';
	deep[41] = '\0';
	strcat(deep, "a");
	for (i = 0; i < 40; i++)
		strcat(deep, ")");
	strcat(deep, ": h\n");
	parse_fails(deep, "f.map:1: regex nested too deep");

	/* Ordinary patterns, including braces and '+' in brackets. */
	map = parse("^[a-z]{1,64}@x$: one\n"
	    "^[{+*]+@y$: two\n"
	    "^(a|b)+(c{2,3})?@z$: three\n"
	    "^x{,2}@w$: four\n"
	    "^[]a]+@v$: five\n"
	    "^[[:digit:][.-.]]+@u$: six\n"
	    "^a\\+b@t$: seven\n");
	lookup_is(map, "abc@x", "one");
	lookup_is(map, "{+*@y", "two");
	lookup_is(map, "abacc@z", "three");
	lookup_is(map, "xx@w", "four");
	lookup_is(map, "]a]@v", "five");
	lookup_is(map, "1-2@u", "six");
	lookup_is(map, "a+b@t", "seven");
	popmap_free(map);
}

static void
test_line_limits(void **state)
{
	size_t len = POPMAP_LINE_MAX + 2;
	char *text = malloc(len + 16);
	char value[POPMAP_VALUE_MAX + 2];
	char *err = NULL;
	struct popmap *map;

	/* A line of exactly POPMAP_LINE_MAX bytes is accepted. */
	memset(text, 'k', POPMAP_LINE_MAX);
	memcpy(text + POPMAP_LINE_MAX - 3, ": v\n", 4);
	map = popmap_parse(text, POPMAP_LINE_MAX + 1, "f.map", &err);
	assert_non_null(map);
	assert_int_equal(popmap_count(map), 1);
	popmap_free(map);

	/* One more byte is not, with or without a LF. */
	memset(text, 'k', POPMAP_LINE_MAX + 1);
	memcpy(text + POPMAP_LINE_MAX - 2, ": v\n", 4);
	parse_fails_len(text, POPMAP_LINE_MAX + 2, "f.map:1: line too long");
	memcpy(text, "a: b\n", 5);
	memset(text + 5, 'k', POPMAP_LINE_MAX + 1);
	parse_fails_len(text, POPMAP_LINE_MAX + 6, "f.map:2: line too long");
	free(text);

	/* Values are bounded on their own. */
	memset(value, 'v', sizeof(value));
	value[POPMAP_VALUE_MAX] = '\0';
	text = malloc(POPMAP_VALUE_MAX + 16);
	snprintf(text, POPMAP_VALUE_MAX + 16, "a: %s\n", value);
	map = parse(text);
	popmap_free(map);
	value[POPMAP_VALUE_MAX] = 'v';
	value[POPMAP_VALUE_MAX + 1] = '\0';
	snprintf(text, POPMAP_VALUE_MAX + 16, "a: %s\n", value);
	parse_fails(text, "f.map:1: value too long");
	free(text);
}

static void
test_big_map(void **state)
{
	size_t cap = (size_t)BIG_MAP_ENTRIES * 48, len = 0, i;
	char *text = malloc(cap);
	char user[64], want[64], out[64];
	struct popmap *map;

	for (i = 0; i < BIG_MAP_ENTRIES; i++)
		len += (size_t)snprintf(text + len, cap - len,
		    "user%zu@example.com: ms%zu\n", i, i % 97);
	len += (size_t)snprintf(text + len, cap - len, "^(.*)@other$: $1\n");
	map = parse(text);
	assert_int_equal(popmap_count(map), BIG_MAP_ENTRIES + 1);
	for (i = 0; i < BIG_MAP_ENTRIES; i++) {
		snprintf(user, sizeof(user), "user%zu@example.com", i);
		snprintf(want, sizeof(want), "ms%zu", i % 97);
		assert_int_equal(popmap_lookup(map, user, out, sizeof(out)), 1);
		assert_string_equal(out, want);
	}
	lookup_is(map, "user100000@example.com", NULL);
	lookup_is(map, "user1@other", "user1");
	popmap_free(map);

	/* A duplicate at the end of a big map names both lines. */
	len += (size_t)snprintf(text + len, cap - len,
	    "user77@example.com: x\n");
	parse_fails_len(text, len, "f.map:100002: duplicate key, first at "
	    "line 78");
	free(text);
}

static void
test_load(void **state)
{
	char path[] = "popmap-test-XXXXXX";
	const char *text = "alice: ms1\n^(.*)@x$: $1.h\n";
	char *err = NULL;
	struct popmap *map;
	int fd;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);

	map = popmap_load(path, &err);
	assert_non_null(map);
	assert_null(err);
	lookup_is(map, "alice", "ms1");
	lookup_is(map, "bo@x", "bo.h");
	popmap_free(map);

	/* Errors name the path. */
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "a: b\nbad\n", 9), 9);
	close(fd);
	map = popmap_load(path, &err);
	assert_null(map);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_string_equal(err + strlen(path), ":2: missing ':'");
	free(err);
	unlink(path);

	map = popmap_load(path, &err);
	assert_null(map);
	assert_non_null(err);
	assert_true(strncmp(err, path, strlen(path)) == 0);
	assert_non_null(strstr(err, "No such file"));
	free(err);

	/* A directory cannot be read. */
	map = popmap_load(".", &err);
	assert_null(map);
	assert_non_null(err);
	free(err);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_regex_expansion),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_lookup_out_small),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_bad_regex),
		cmocka_unit_test(test_regex_limits),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_big_map),
		cmocka_unit_test(test_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
