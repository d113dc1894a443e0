/* Perdition-format popmap: exact keys in an open-addressing hash table,
 * regex keys in file order.
 *
 * Beyond the header: "$0" expands to the whole match; a value of an exact
 * key may not use $N, nor a regex value a group the regex lacks (both are
 * load errors, not silent empty strings); values are at most
 * POPMAP_VALUE_MAX bytes as written. */
#include "popmap.h"

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mm_util.h"

#define POPMAP_GROUPS	10	/* $0 (whole match) .. $9 */
#define POPMAP_READ_CHUNK	65536
#define POPMAP_TABLE_MIN	64	/* initial slots; a power of two */
/* glibc's regcomp copies a sub-expression once per repetition ("a+" is
 * "aa*", "(x){3}" is "xxx"), so a short pattern such as "a++++++++" or
 * "((a{99}){99}){99}" can take gigabytes. Patterns are refused when the
 * estimate below exceeds this many nodes. */
#define POPMAP_REGEX_COST_MAX	4096
#define POPMAP_REGEX_DEPTH_MAX	32	/* nested groups */
#define POPMAP_REGEX_REPEAT_BIG 100000	/* interval bounds stop here */

struct popmap_exact {
	const char *key;	/* in map->text */
	const char *value;
	size_t line;
	uint64_t hash;
};

struct popmap_regex {
	regex_t re;
	const char *value;
};

struct popmap {
	/* A copy of the file; keys and values are NUL-terminated in place. */
	char *text;

	struct popmap_exact *exact;
	size_t n_exact, cap_exact;
	/* Slots hold an index into exact plus one; 0 is empty. Kept at most
	 * half full so probes stay short. */
	size_t *table;
	size_t table_size;

	struct popmap_regex *regex;
	size_t n_regex, cap_regex;
};

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* FNV-1a: simple, and good enough for user names. */
static uint64_t
hash_key(const char *s)
{
	uint64_t h = 14695981039346656037ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t
table_find(const struct popmap *map, const char *key, uint64_t hash)
{
	size_t mask = map->table_size - 1;
	size_t i = (size_t)hash & mask;

	for (;;) {
		size_t idx = map->table[i];

		if (idx == 0)
			return i;
		if (map->exact[idx - 1].hash == hash &&
		    strcmp(map->exact[idx - 1].key, key) == 0)
			return i;
		i = (i + 1) & mask;
	}
}

static void
table_grow(struct popmap *map)
{
	size_t i, size = map->table_size ? map->table_size * 2 :
	    POPMAP_TABLE_MIN;

	free(map->table);
	map->table = xcalloc(size, sizeof(*map->table));
	map->table_size = size;
	for (i = 0; i < map->n_exact; i++) {
		size_t slot = table_find(map, map->exact[i].key,
		    map->exact[i].hash);

		map->table[slot] = i + 1;
	}
}

/* Adds an exact entry; on a duplicate returns the first one's line. */
static size_t
add_exact(struct popmap *map, const char *key, const char *value,
    size_t line)
{
	uint64_t hash = hash_key(key);
	size_t slot;

	if ((map->n_exact + 1) * 2 > map->table_size)
		table_grow(map);
	slot = table_find(map, key, hash);
	if (map->table[slot] != 0)
		return map->exact[map->table[slot] - 1].line;

	if (map->n_exact == map->cap_exact) {
		map->cap_exact = map->cap_exact ? map->cap_exact * 2 : 64;
		map->exact = xrealloc(map->exact,
		    map->cap_exact * sizeof(*map->exact));
	}
	map->exact[map->n_exact].key = key;
	map->exact[map->n_exact].value = value;
	map->exact[map->n_exact].line = line;
	map->exact[map->n_exact].hash = hash;
	map->n_exact++;
	map->table[slot] = map->n_exact;
	return 0;
}

/* One group level of the estimate in regex_check. */
struct regex_level {
	size_t done;	/* alternatives already closed by '|' */
	size_t seq;	/* the current alternative */
	size_t last;	/* the last atom, for a following repetition */
};

/* Parses an interval "{m}", "{m,}", "{m,n}" or "{,n}" at p; returns the
 * larger bound plus one, the copies regcomp makes, and sets *end_r. 0 if
 * p does not start an interval (regcomp judges it). */
static size_t
interval_copies(const char *p, const char **end_r)
{
	size_t m = 0, n = 0;
	bool comma = false, digits = false;

	for (p++; is_digit(*p); p++, digits = true)
		if (m < POPMAP_REGEX_REPEAT_BIG)
			m = m * 10 + (size_t)(*p - '0');
	if (*p == ',') {
		comma = true;
		for (p++; is_digit(*p); p++, digits = true)
			if (n < POPMAP_REGEX_REPEAT_BIG)
				n = n * 10 + (size_t)(*p - '0');
	}
	if (*p != '}' || !digits)
		return 0;
	*end_r = p + 1;
	if (!comma || n < m)
		n = m;
	return n + 1;
}

/* Skips a bracket expression starting at p ('['); NULL if unterminated. */
static const char *
skip_bracket(const char *p)
{
	p++;
	if (*p == '^')
		p++;
	if (*p == ']')
		p++;
	for (; *p != '\0' && *p != ']'; p++) {
		if (p[0] == '[' &&
		    (p[1] == ':' || p[1] == '.' || p[1] == '=')) {
			char close = p[1];

			for (p += 2; *p != '\0' && !(p[0] == close &&
			    p[1] == ']'); p++)
				;
			if (*p == '\0')
				return NULL;
			p++;
		}
	}
	return *p == ']' ? p + 1 : NULL;
}

/*
 * Refuses patterns that regcomp would blow up or that POSIX leaves
 * undefined: repetition right after a repetition, back-references (not
 * ERE, and exponential to match), too deep nesting, and too many copies
 * by the estimate. Syntax errors are left to regcomp. NULL or a reason.
 */
static const char *
regex_check(const char *re)
{
	struct regex_level lv[POPMAP_REGEX_DEPTH_MAX];
	const char *p = re, *end;
	size_t d = 0, copies, total, i;
	bool repeated = false;

	memset(&lv[0], 0, sizeof(lv[0]));
	while (*p != '\0') {
		size_t atom = 1;

		switch (*p) {
		case '(':
			if (++d == POPMAP_REGEX_DEPTH_MAX)
				return "regex nested too deep";
			memset(&lv[d], 0, sizeof(lv[d]));
			repeated = false;
			p++;
			continue;
		case ')':
			if (d > 0) {
				atom = lv[d].done + lv[d].seq + 1;
				d--;
			}
			p++;
			break;
		case '|':
			lv[d].done += lv[d].seq + 1;
			lv[d].seq = 0;
			lv[d].last = 0;
			repeated = false;
			p++;
			continue;
		case '*':
		case '?':
		case '+':
		case '{':
			copies = *p == '+' ? 2 : 1;
			end = p + 1;
			if (*p == '{' &&
			    (copies = interval_copies(p, &end)) == 0) {
				p++;	/* a literal '{' */
				break;
			}
			if (repeated)
				return "regex repeats a repetition";
			lv[d].seq += lv[d].last * (copies - 1) + 1;
			repeated = true;
			p = end;
			if (lv[d].seq > POPMAP_REGEX_COST_MAX)
				return "regex too complex";
			continue;
		case '[':
			if ((p = skip_bracket(p)) == NULL)
				return NULL;
			break;
		case '\\':
			if (is_digit(p[1]))
				return "regex back-references not supported";
			p += p[1] != '\0' ? 2 : 1;
			break;
		default:
			p++;
			break;
		}
		lv[d].seq += atom;
		lv[d].last = atom;
		repeated = false;
		if (lv[d].seq > POPMAP_REGEX_COST_MAX)
			return "regex too complex";
	}
	for (total = 0, i = 0; i <= d; i++)
		total += lv[i].done + lv[i].seq;
	return total > POPMAP_REGEX_COST_MAX ? "regex too complex" : NULL;
}

/* Compiles and appends a regex entry. Returns NULL or a malloc'd reason. */
static char *
add_regex(struct popmap *map, const char *key, const char *value,
    int max_ref)
{
	struct popmap_regex *r;
	const char *why;
	int err;

	if ((why = regex_check(key)) != NULL)
		return xstrdup(why);
	if (map->n_regex == map->cap_regex) {
		map->cap_regex = map->cap_regex ? map->cap_regex * 2 : 8;
		map->regex = xrealloc(map->regex,
		    map->cap_regex * sizeof(*map->regex));
	}
	r = &map->regex[map->n_regex];
	if ((err = regcomp(&r->re, key, REG_EXTENDED)) != 0) {
		char msg[256];

		regerror(err, &r->re, msg, sizeof(msg));
		return xasprintf("bad regex: %s", msg);
	}
	if (max_ref > (int)r->re.re_nsub) {
		size_t nsub = r->re.re_nsub;

		regfree(&r->re);
		return xasprintf("$%d but the regex has %zu group%s", max_ref,
		    nsub, nsub == 1 ? "" : "s");
	}
	r->value = value;
	map->n_regex++;
	return NULL;
}

/* The highest $N in value, or -1 if it has none. */
static int
max_group_ref(const char *value)
{
	int max = -1;

	for (; *value != '\0'; value++)
		if (value[0] == '$' && is_digit(value[1])) {
			if (value[1] - '0' > max)
				max = value[1] - '0';
			value++;
		}
	return max;
}

/*
 * Parses line[0..len) (no LF, no NUL) and writes NULs into it to end the
 * key and the value. The separator is the first ':' followed by white
 * space or the end of the line, else the first ':' at all: so "bob:h:110"
 * and "^[[:alpha:]]+$: h" both split where meant. Returns NULL, or the
 * reason it is bad (malloc'd).
 */
static char *
parse_line(struct popmap *map, char *line, size_t len, size_t lineno)
{
	char *s = line, *e = line + len, *sep = NULL, *p;
	char *key, *key_end, *value, *value_end;
	int max_ref;

	while (s < e && is_space(*s))
		s++;
	while (e > s && is_space(e[-1]))
		e--;
	if (s == e || *s == '#')
		return NULL;

	for (p = s; p < e; p++)
		if (*p == ':' && (p + 1 == e || is_space(p[1]))) {
			sep = p;
			break;
		}
	if (sep == NULL && (sep = memchr(s, ':', (size_t)(e - s))) == NULL)
		return xstrdup("missing ':'");

	key = s;
	key_end = sep;
	while (key_end > key && is_space(key_end[-1]))
		key_end--;
	value = sep + 1;
	value_end = e;
	while (value < value_end && is_space(*value))
		value++;
	if (key == key_end)
		return xstrdup("empty key");
	if (value == value_end)
		return xstrdup("empty value");
	for (p = value; p < value_end; p++)
		if (is_space(*p))
			return xstrdup("white space in value");
	if ((size_t)(value_end - value) > POPMAP_VALUE_MAX)
		return xstrdup("value too long");
	/* Both ends lie inside the line or on its LF (or the copy's final
	 * NUL), so the text can be cut in place. */
	*key_end = '\0';
	*value_end = '\0';
	max_ref = max_group_ref(value);

	if (key[0] != '^') {
		size_t first;

		if (max_ref >= 0)
			return xstrdup("$N but the key is not a regex");
		if ((first = add_exact(map, key, value, lineno)) != 0)
			return xasprintf("duplicate key, first at line %zu",
			    first);
		return NULL;
	}
	return add_regex(map, key, value, max_ref);
}

struct popmap *
popmap_parse(const char *text, size_t len, const char *fname,
    char **errstr_r)
{
	struct popmap *map = xcalloc(1, sizeof(*map));
	struct popmap *ret = NULL;
	size_t pos = 0, lineno = 0;

	*errstr_r = NULL;
	map->text = xmalloc(len + 1);
	if (len > 0)
		memcpy(map->text, text, len);
	map->text[len] = '\0';

	while (pos < len) {
		char *line = map->text + pos;
		char *lf = memchr(line, '\n', len - pos);
		size_t line_len = lf ? (size_t)(lf - line) : len - pos;
		char *reason = NULL;

		lineno++;
		if (line_len > POPMAP_LINE_MAX)
			reason = xstrdup("line too long");
		else if (memchr(line, '\0', line_len) != NULL)
			reason = xstrdup("NUL byte");
		else
			reason = parse_line(map, line, line_len, lineno);
		if (reason != NULL) {
			*errstr_r = xasprintf("%s:%zu: %s", fname, lineno,
			    reason);
			free(reason);
			goto done;
		}
		pos += line_len + 1;
	}
	ret = map;
	map = NULL;
done:
	popmap_free(map);
	return ret;
}

struct popmap *
popmap_load(const char *path, char **errstr_r)
{
	struct popmap *map = NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd;

	*errstr_r = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		*errstr_r = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		ssize_t n;

		if (cap - len < POPMAP_READ_CHUNK) {
			cap = cap ? cap * 2 : POPMAP_READ_CHUNK * 2;
			buf = xrealloc(buf, cap);
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*errstr_r = xasprintf("%s: %s", path, strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	map = popmap_parse(buf, len, path, errstr_r);
done:
	close(fd);
	free(buf);
	return map;
}

void
popmap_free(struct popmap *map)
{
	size_t i;

	if (map == NULL)
		return;
	for (i = 0; i < map->n_regex; i++)
		regfree(&map->regex[i].re);
	free(map->regex);
	free(map->table);
	free(map->exact);
	free(map->text);
	free(map);
}

size_t
popmap_count(const struct popmap *map)
{
	return map->n_exact + map->n_regex;
}

/* Writes value with $N replaced by the groups of user; -1 if too long.
 * A group that did not take part in the match expands to nothing. */
static int
expand(const char *value, const char *user, const regmatch_t *m,
    char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen == 0)
		return -1;
	for (; *value != '\0'; value++) {
		if (m != NULL && value[0] == '$' && is_digit(value[1])) {
			const regmatch_t *g = &m[value[1] - '0'];
			size_t n;

			value++;
			if (g->rm_so < 0 || g->rm_eo < g->rm_so)
				continue;
			n = (size_t)(g->rm_eo - g->rm_so);
			if (n >= outlen - o)
				return -1;
			memcpy(out + o, user + g->rm_so, n);
			o += n;
			continue;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = *value;
	}
	out[o] = '\0';
	return 0;
}

int
popmap_lookup(const struct popmap *map, const char *user, char *out,
    size_t outlen)
{
	regmatch_t m[POPMAP_GROUPS];
	size_t i;

	if (map->n_exact > 0) {
		size_t slot = table_find(map, user, hash_key(user));

		if (map->table[slot] != 0)
			return expand(map->exact[map->table[slot] - 1].value,
			    user, NULL, out, outlen) == 0 ? 1 : -1;
	}
	for (i = 0; i < map->n_regex; i++) {
		if (regexec(&map->regex[i].re, user, POPMAP_GROUPS, m, 0) != 0)
			continue;
		return expand(map->regex[i].value, user, m, out,
		    outlen) == 0 ? 1 : -1;
	}
	return 0;
}
