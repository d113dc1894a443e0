/* Messages between the nodes of a move (move_msg.h): every type round
 * trips with every field; every bound holds exactly at its limit and is
 * refused one over, on encode and on decode; what is refused, is refused
 * with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mm_msgpack.h"
#include "move_msg.h"

/* Whole messages: too large for the stack. */
static struct move_msg m, d;
static uint8_t buf[MOVE_MSG_MAX + 1];
static uint8_t record[RECORD_MAX + 1];

/* A message with every field set, whatever its type uses. */
static void
fill(struct move_msg *x, enum move_msg_type type, size_t folders)
{
	size_t i;

	memset(x, 0, sizeof(*x));
	x->type = type;
	x->id = 0x0123456789abcdefULL;
	strcpy(x->user, "alice@a.test");
	strcpy(x->site, "ams-1");
	strcpy(x->backend, "dovecot-2");
	x->ok = true;
	strcpy(x->error, "disk full on \xc3\xa9 target");
	for (i = 0; i < sizeof(record); i++)
		record[i] = (uint8_t)(i * 7);
	x->record = record;
	x->record_len = 300;
	x->kicked = 70000;
	x->n_folders = folders;
	for (i = 0; i < folders; i++) {
		struct move_folder *f = &x->folders[i];

		snprintf(f->name, sizeof(f->name), "INBOX/&AOk-t\xc3\xa9-%zu", i);
		f->uidvalidity = 1700000000 + i;
		f->uidnext = i * 1000;
		f->messages = UINT64_MAX - i;
		memset(f->digest, (int)(i & 0xff), MOVE_DIGEST_LEN);
		f->digest[0] = 0xab;
	}
	x->truncated = true;
	x->n_body_from = folders;
	for (i = 0; i < folders; i++) {
		snprintf(x->body_from[i].name, sizeof(x->body_from[i].name),
		    "Archive.%zu", i);
		x->body_from[i].uid = i + 1;
	}
}

/* d is m, record bytes included (the pointer is into buf). */
static void
same(const struct move_msg *a, const struct move_msg *b, const uint8_t *in,
    size_t in_len)
{
	size_t i;

	assert_int_equal(a->type, b->type);
	assert_true(a->id == b->id);
	assert_string_equal(a->user, b->user);
	assert_string_equal(a->site, b->site);
	assert_string_equal(a->backend, b->backend);
	assert_int_equal(a->ok, b->ok);
	assert_string_equal(a->error, b->error);
	assert_int_equal(a->record_len, b->record_len);
	if (b->record_len > 0) {
		assert_memory_equal(a->record, b->record, a->record_len);
		assert_true(b->record >= in &&
		    b->record + b->record_len <= in + in_len);
	} else {
		assert_null(b->record);
	}
	assert_true(a->kicked == b->kicked);
	assert_int_equal(a->n_folders, b->n_folders);
	for (i = 0; i < a->n_folders; i++) {
		assert_string_equal(a->folders[i].name, b->folders[i].name);
		assert_true(a->folders[i].uidvalidity ==
		    b->folders[i].uidvalidity);
		assert_true(a->folders[i].uidnext == b->folders[i].uidnext);
		assert_true(a->folders[i].messages == b->folders[i].messages);
		assert_memory_equal(a->folders[i].digest, b->folders[i].digest,
		    MOVE_DIGEST_LEN);
	}
	assert_int_equal(a->truncated, b->truncated);
	assert_int_equal(a->n_body_from, b->n_body_from);
	for (i = 0; i < a->n_body_from; i++) {
		assert_string_equal(a->body_from[i].name, b->body_from[i].name);
		assert_true(a->body_from[i].uid == b->body_from[i].uid);
	}
}

static size_t
round_trip(const struct move_msg *x)
{
	const char *why = NULL;
	int n;

	n = move_msg_encode(x, buf, sizeof(buf));
	assert_true(n > 0);
	assert_true((size_t)n <= MOVE_MSG_MAX);
	if (move_msg_decode(buf, (size_t)n, &d, &why) != 0)
		fail_msg("decode: %s", why);
	same(x, &d, buf, (size_t)n);
	return (size_t)n;
}

static void
test_round_trip_every_type(void **state)
{
	int t;

	(void)state;
	for (t = MOVE_MSG_PREPARE; t <= MOVE_MSG_ABORTED; t++) {
		fill(&m, (enum move_msg_type)t, 3);
		round_trip(&m);
		/* The same type with every field empty. */
		memset(&m, 0, sizeof(m));
		m.type = (enum move_msg_type)t;
		round_trip(&m);
	}
}

static void
test_type_names(void **state)
{
	static const char *const want[] = { "?", "prepare", "prepared",
		"freeze", "frozen", "verify", "verified", "commit",
		"committed", "abort", "aborted", "?" };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(move_msg_type_name((enum move_msg_type)i),
		    want[i]);
	assert_string_equal(move_msg_type_name((enum move_msg_type)-1), "?");
}

/* Every field at its limit: it encodes within MOVE_MSG_MAX and back. */
static void
test_everything_at_its_limit(void **state)
{
	size_t i, n;

	(void)state;
	fill(&m, MOVE_MSG_VERIFIED, MOVE_FOLDERS_MAX);
	memset(m.user, 'u', RECORD_USER_MAX);
	m.user[RECORD_USER_MAX] = '\0';
	memset(m.site, 's', RECORD_SITE_MAX);
	m.site[RECORD_SITE_MAX] = '\0';
	memset(m.backend, 'b', RECORD_NAME_MAX);
	m.backend[RECORD_NAME_MAX] = '\0';
	memset(m.error, '~', MOVE_MSG_ERROR_MAX);
	m.error[MOVE_MSG_ERROR_MAX] = '\0';
	m.record_len = RECORD_MAX;
	m.id = m.kicked = UINT64_MAX;
	for (i = 0; i < MOVE_FOLDERS_MAX; i++) {
		memset(m.folders[i].name, ' ' + (int)(i % 95),
		    MOVE_FOLDER_NAME_MAX);
		m.folders[i].name[MOVE_FOLDER_NAME_MAX] = '\0';
		memset(m.body_from[i].name, 0xff, MOVE_FOLDER_NAME_MAX);
		m.body_from[i].name[MOVE_FOLDER_NAME_MAX] = '\0';
		m.body_from[i].uid = UINT64_MAX;
	}
	n = round_trip(&m);
	assert_true(n < MOVE_MSG_MAX);
	/* The output buffer: exactly enough, then one byte short. */
	assert_int_equal(move_msg_encode(&m, buf, n), (int)n);
	assert_int_equal(move_msg_encode(&m, buf, n - 1), -1);
}

/* ---- encode refusals ------------------------------------------------- */

static void
encode_fails(const struct move_msg *x)
{
	assert_int_equal(move_msg_encode(x, buf, sizeof(buf)), -1);
}

/* s (max + 1 bytes): at max it encodes, with no NUL in the array (one
 * over) it does not, nor with a control character or DEL. */
static void
string_bounds(char *s, size_t max)
{
	fill(&m, MOVE_MSG_PREPARE, 1);
	memset(s, 'x', max);
	s[max] = '\0';
	assert_true(move_msg_encode(&m, buf, sizeof(buf)) > 0);
	s[max] = 'x';
	encode_fails(&m);
	strcpy(s, "a\tb");
	encode_fails(&m);
	strcpy(s, "a\x1f");
	encode_fails(&m);
	strcpy(s, "\x7f");
	encode_fails(&m);
	strcpy(s, "\n");
	encode_fails(&m);
	strcpy(s, " ~\x80\xff");
	assert_true(move_msg_encode(&m, buf, sizeof(buf)) > 0);
}

static void
test_encode_refused(void **state)
{
	(void)state;
	string_bounds(m.user, RECORD_USER_MAX);
	string_bounds(m.site, RECORD_SITE_MAX);
	string_bounds(m.backend, RECORD_NAME_MAX);
	string_bounds(m.error, MOVE_MSG_ERROR_MAX);
	string_bounds(m.folders[0].name, MOVE_FOLDER_NAME_MAX);
	string_bounds(m.body_from[0].name, MOVE_FOLDER_NAME_MAX);

	fill(&m, MOVE_MSG_FREEZE, 0);
	m.record_len = RECORD_MAX + 1;
	encode_fails(&m);
	m.record = NULL;
	m.record_len = 1;
	encode_fails(&m);
	m.record_len = 0;
	assert_true(move_msg_encode(&m, buf, sizeof(buf)) > 0);

	fill(&m, MOVE_MSG_VERIFIED, 0);
	m.n_folders = MOVE_FOLDERS_MAX + 1;
	encode_fails(&m);
	fill(&m, MOVE_MSG_VERIFY, 0);
	m.n_body_from = MOVE_FOLDERS_MAX + 1;
	encode_fails(&m);

	fill(&m, MOVE_MSG_PREPARE, 0);
	m.type = (enum move_msg_type)0;
	encode_fails(&m);
	m.type = (enum move_msg_type)(MOVE_MSG_ABORTED + 1);
	encode_fails(&m);
}

/* ---- decode refusals ------------------------------------------------- */

/* A message written field by field; the field numbered at (0..12 the
 * message's, 20 + k the first folder's k-th, 30 + k the first body_from's
 * k-th) is written by put instead, with arg. */
struct patch {
	int at;
	void (*put)(struct mm_mp_writer *w, uint64_t arg);
	uint64_t arg;
};

static void
put_uint(struct mm_mp_writer *w, uint64_t v)
{
	mm_mp_put_uint(w, v);
}

static void
put_array(struct mm_mp_writer *w, uint64_t n)
{
	mm_mp_put_array(w, (uint32_t)n);
}

static void
put_str_len(struct mm_mp_writer *w, uint64_t len)
{
	static char s[MOVE_MSG_ERROR_MAX + 2];

	memset(s, 'y', sizeof(s));
	mm_mp_put_strn(w, s, (size_t)len);
}

static void
put_str_with(struct mm_mp_writer *w, uint64_t c)
{
	char s[3] = { 'a', (char)c, 'b' };

	mm_mp_put_strn(w, s, sizeof(s));
}

static void
put_bin_len(struct mm_mp_writer *w, uint64_t len)
{
	mm_mp_put_bin(w, record, (size_t)len);
}

static void
put_nil(struct mm_mp_writer *w, uint64_t unused)
{
	(void)unused;
	mm_mp_put_nil(w);
}

/* A uint8 where a fixint would do: bytes the writer never makes. */
static void
put_long_uint(struct mm_mp_writer *w, uint64_t v)
{
	assert_true(w->end - w->p >= 2);
	w->p[0] = 0xcc;
	w->p[1] = (uint8_t)v;
	w->p += 2;
}

static size_t
build(const struct patch *p)
{
	struct mm_mp_writer w;

#define FIELD(i, dflt) do {						\
		if (p != NULL && p->at == (i))				\
			p->put(&w, p->arg);				\
		else							\
			dflt;						\
	} while (0)

	mm_mp_writer_init(&w, buf, sizeof(buf));
	FIELD(-1, mm_mp_put_array(&w, 13));
	FIELD(0, mm_mp_put_uint(&w, MOVE_MSG_VERSION));
	FIELD(1, mm_mp_put_uint(&w, MOVE_MSG_VERIFIED));
	FIELD(2, mm_mp_put_uint(&w, 42));
	FIELD(3, mm_mp_put_str(&w, "bob@b.test"));
	FIELD(4, mm_mp_put_str(&w, "ams"));
	FIELD(5, mm_mp_put_str(&w, "be1"));
	FIELD(6, mm_mp_put_bool(&w, true));
	FIELD(7, mm_mp_put_str(&w, ""));
	FIELD(8, mm_mp_put_bin(&w, record, 10));
	FIELD(9, mm_mp_put_uint(&w, 0));
	FIELD(10, mm_mp_put_array(&w, 1));
	FIELD(20, mm_mp_put_array(&w, 5));
	FIELD(21, mm_mp_put_str(&w, "INBOX"));
	FIELD(22, mm_mp_put_uint(&w, 1));
	FIELD(23, mm_mp_put_uint(&w, 2));
	FIELD(24, mm_mp_put_uint(&w, 3));
	FIELD(25, mm_mp_put_bin(&w, record, MOVE_DIGEST_LEN));
	FIELD(11, mm_mp_put_array(&w, 1));
	FIELD(30, mm_mp_put_array(&w, 2));
	FIELD(31, mm_mp_put_str(&w, "INBOX"));
	FIELD(32, mm_mp_put_uint(&w, 7));
	FIELD(12, mm_mp_put_bool(&w, false));
#undef FIELD
	assert_true(mm_mp_writer_ok(&w));
	return mm_mp_writer_len(&w);
}

static void
decodes(const struct patch *p)
{
	const char *why = NULL;
	size_t n = build(p);

	if (move_msg_decode(buf, n, &d, &why) != 0)
		fail_msg("field %d: %s", p != NULL ? p->at : -2, why);
}

static void
refused_as(const uint8_t *in, size_t len, const char *want)
{
	const char *why = NULL;

	assert_int_equal(move_msg_decode(in, len, &d, &why), -1);
	assert_non_null(why);
	if (strcmp(why, want) != 0)
		fail_msg("got \"%s\", want \"%s\"", why, want);
	/* A refused message leaves nothing to walk nor point to. */
	assert_int_equal(d.n_folders, 0);
	assert_int_equal(d.n_body_from, 0);
	assert_null(d.record);
}

static void
refused(const struct patch *p, const char *want)
{
	size_t n = build(p);

	refused_as(buf, n, want);
}

static void
test_decode_plain(void **state)
{
	const char *why = NULL;
	size_t n;

	(void)state;
	n = build(NULL);
	assert_int_equal(move_msg_decode(buf, n, &d, &why), 0);
	assert_int_equal(d.type, MOVE_MSG_VERIFIED);
	assert_true(d.id == 42);
	assert_string_equal(d.user, "bob@b.test");
	assert_int_equal(d.n_folders, 1);
	assert_string_equal(d.folders[0].name, "INBOX");
	assert_true(d.folders[0].messages == 3);
	assert_int_equal(d.n_body_from, 1);
	assert_true(d.body_from[0].uid == 7);
	assert_int_equal(d.record_len, 10);
	/* Re-encoding gives the bytes received. */
	assert_int_equal(move_msg_encode(&d, buf + n, sizeof(buf) - n),
	    (int)n);
	assert_memory_equal(buf, buf + n, n);
}

static void
string_limit(int at, size_t max)
{
	struct patch p = { at, put_str_len, max };

	decodes(&p);
	p.arg = max + 1;
	refused(&p, "string too long");
	p.put = put_str_with;
	p.arg = 0x01;
	refused(&p, "control character in a string");
	p.arg = 0x1f;
	refused(&p, "control character in a string");
	p.arg = 0x7f;
	refused(&p, "control character in a string");
	p.arg = 0x00;
	refused(&p, "NUL in string");
	p.arg = 0x80;
	decodes(&p);
	p.put = put_uint;
	p.arg = 1;
	refused(&p, "wrong type (want string)");
}

static void
test_decode_limits(void **state)
{
	struct patch p;

	(void)state;
	string_limit(3, RECORD_USER_MAX);
	string_limit(4, RECORD_SITE_MAX);
	string_limit(5, RECORD_NAME_MAX);
	string_limit(7, MOVE_MSG_ERROR_MAX);
	string_limit(21, MOVE_FOLDER_NAME_MAX);
	string_limit(31, MOVE_FOLDER_NAME_MAX);

	p = (struct patch){ 8, put_bin_len, RECORD_MAX };
	decodes(&p);
	p.arg = RECORD_MAX + 1;
	refused(&p, "binary too long");
	p.arg = 0;
	decodes(&p);
	assert_null(d.record);
	assert_int_equal(d.record_len, 0);

	p = (struct patch){ 25, put_bin_len, MOVE_DIGEST_LEN - 1 };
	refused(&p, "binary of wrong length");
	p.arg = MOVE_DIGEST_LEN + 1;
	refused(&p, "binary too long");
	p.arg = 0;
	refused(&p, "binary of wrong length");

	p = (struct patch){ 1, put_uint, MOVE_MSG_PREPARE };
	decodes(&p);
	p.arg = MOVE_MSG_ABORTED;
	decodes(&p);
	p.arg = 0;
	refused(&p, "unknown message type");
	p.arg = MOVE_MSG_ABORTED + 1;
	refused(&p, "unknown message type");

	p = (struct patch){ 0, put_uint, MOVE_MSG_VERSION + 1 };
	refused(&p, "unknown version");
	p.arg = 0;
	refused(&p, "unknown version");
}

/* The folder and body_from arrays: at MOVE_FOLDERS_MAX they decode; one
 * more is refused from its header alone, before any element is read. */
static void
test_decode_folders_max(void **state)
{
	struct mm_mp_writer w;
	const char *why = NULL;
	size_t i;
	int n;

	(void)state;
	fill(&m, MOVE_MSG_VERIFIED, MOVE_FOLDERS_MAX);
	n = move_msg_encode(&m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(move_msg_decode(buf, (size_t)n, &d, &why), 0);
	assert_int_equal(d.n_folders, MOVE_FOLDERS_MAX);
	assert_int_equal(d.n_body_from, MOVE_FOLDERS_MAX);

	for (i = 0; i < 2; i++) {
		mm_mp_writer_init(&w, buf, sizeof(buf));
		mm_mp_put_array(&w, 13);
		mm_mp_put_uint(&w, MOVE_MSG_VERSION);
		mm_mp_put_uint(&w, MOVE_MSG_VERIFIED);
		mm_mp_put_uint(&w, 1);
		mm_mp_put_str(&w, "u");
		mm_mp_put_str(&w, "");
		mm_mp_put_str(&w, "");
		mm_mp_put_bool(&w, true);
		mm_mp_put_str(&w, "");
		mm_mp_put_bin(&w, NULL, 0);
		mm_mp_put_uint(&w, 0);
		if (i == 1)
			mm_mp_put_array(&w, 0);
		mm_mp_put_array(&w, MOVE_FOLDERS_MAX + 1);
		refused_as(buf, mm_mp_writer_len(&w),
		    "too many array elements");
	}
}

static void
test_decode_refused(void **state)
{
	static const uint8_t not_array[] = { 0x81, 0xa1, 'a', 0x01 };
	static const uint8_t empty[] = { 0x90 };
	struct patch p;
	const char *why = NULL;
	size_t n, i;

	(void)state;
	/* The element count, judged after the version. */
	p = (struct patch){ -1, put_array, 12 };
	refused(&p, "wrong element count");
	p.arg = 14;
	refused(&p, "wrong element count");
	refused_as(empty, sizeof(empty), "wrong element count");
	refused_as(not_array, sizeof(not_array), "wrong type (want array)");
	/* Another version with another count: refused for its version. */
	n = build(NULL);
	buf[0] = 0x9e;		/* 14 elements */
	buf[1] = MOVE_MSG_VERSION + 1;
	buf[n] = 0xc0;
	refused_as(buf, n + 1, "unknown version");

	/* Trailing bytes, and every prefix. */
	n = build(NULL);
	buf[n] = 0;
	refused_as(buf, n + 1, "trailing bytes");
	for (i = 0; i < n; i++) {
		assert_int_equal(move_msg_decode(buf, i, &d, &why), -1);
		assert_non_null(why);
	}

	/* Wrong types and forms. */
	p = (struct patch){ 6, put_uint, 1 };
	refused(&p, "wrong type (want boolean)");
	p = (struct patch){ 12, put_nil, 0 };
	refused(&p, "wrong type (want boolean)");
	p = (struct patch){ 2, put_long_uint, 5 };
	refused(&p, "integer not in shortest form");
	p = (struct patch){ 8, put_str_len, 3 };
	refused(&p, "wrong type (want binary)");
	p = (struct patch){ 10, put_uint, 0 };
	refused(&p, "wrong type (want array)");
	p = (struct patch){ 20, put_array, 4 };
	refused(&p, "wrong element count");
	p.arg = 6;
	refused(&p, "too many array elements");
	p = (struct patch){ 30, put_array, 1 };
	refused(&p, "wrong element count");
	p.arg = 3;
	refused(&p, "too many array elements");

	/* The whole message: at MOVE_MSG_MAX it is judged by its content
	 * (here its trailing bytes); one byte more, by its length. */
	n = build(NULL);
	memset(buf + n, 0, sizeof(buf) - n);
	refused_as(buf, MOVE_MSG_MAX, "trailing bytes");
	refused_as(buf, MOVE_MSG_MAX + 1, "message too long");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_type_names),
		cmocka_unit_test(test_everything_at_its_limit),
		cmocka_unit_test(test_encode_refused),
		cmocka_unit_test(test_decode_plain),
		cmocka_unit_test(test_decode_limits),
		cmocka_unit_test(test_decode_folders_max),
		cmocka_unit_test(test_decode_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
