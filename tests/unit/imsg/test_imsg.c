/* Frames between the processes of one node (mm_imsg.h): headers and every
 * body type round trip; what is refused, is refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mm_imsg.h"
#include "mm_msgpack.h"

static struct mm_imsg_body b, d;
static uint8_t buf[MM_IMSG_BODY_MAX];

static void
str_is(const struct mm_imsg_str *s, const char *want)
{
	assert_int_equal(s->len, strlen(want));
	assert_memory_equal(s->p != NULL ? s->p : "", want, s->len);
}

static void
test_header(void **state)
{
	struct mm_imsg_hdr h = { 1234, MM_IMSG_VERSION, MM_IMSG_SESSIONS,
		MM_IMSG_WORKER + 3, MM_IMSG_AGENT, 0xdeadbeef }, g;
	uint8_t hb[MM_IMSG_HDR_LEN];
	const char *why = NULL;

	(void)state;
	mm_imsg_hdr_encode(&h, hb);
	assert_int_equal(mm_imsg_hdr_decode(hb, &g, &why), 0);
	assert_int_equal(g.len, 1234);
	assert_int_equal(g.type, MM_IMSG_SESSIONS);
	assert_int_equal(g.src, MM_IMSG_WORKER + 3);
	assert_int_equal(g.dst, MM_IMSG_AGENT);
	assert_int_equal(g.id, 0xdeadbeef);
	h.version = MM_IMSG_VERSION + 1;
	mm_imsg_hdr_encode(&h, hb);
	assert_int_equal(mm_imsg_hdr_decode(hb, &g, &why), -1);
	assert_string_equal(why, "another version");
	h.version = MM_IMSG_VERSION;
	h.len = MM_IMSG_BODY_MAX + 1;
	mm_imsg_hdr_encode(&h, hb);
	assert_int_equal(mm_imsg_hdr_decode(hb, &g, &why), -1);
	assert_string_equal(why, "body too long");
}

static void
test_bodies_round_trip(void **state)
{
	const char *why = NULL;
	int n;
	size_t i;

	(void)state;
	memset(&b, 0, sizeof(b));
	b.user = mm_imsg_str("alice@a.test");
	n = mm_imsg_body_encode(MM_IMSG_SESSIONS_REQ, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_SESSIONS_REQ, buf,
	    (size_t)n, &d, &why), 0);
	str_is(&d.user, "alice@a.test");

	memset(&b, 0, sizeof(b));
	b.last = true;
	b.n_sessions = MM_IMSG_SESSIONS_MAX;
	for (i = 0; i < b.n_sessions; i++) {
		b.sessions[i].id = i * 1000003;
		b.sessions[i].user = mm_imsg_str(i % 2 ? "erin@be2.test" : "");
		b.sessions[i].client = mm_imsg_str("[2001:db8::1]:40000");
		b.sessions[i].proto = mm_imsg_str("pop3");
		b.sessions[i].state = mm_imsg_str("relay");
		b.sessions[i].backend = mm_imsg_str("site:ams");
		b.sessions[i].since = 1796680000 + i;
		b.sessions[i].bytes_in = UINT64_MAX - i;
		b.sessions[i].bytes_out = i;
	}
	n = mm_imsg_body_encode(MM_IMSG_SESSIONS, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_SESSIONS, buf, (size_t)n,
	    &d, &why), 0);
	assert_true(d.last);
	assert_int_equal(d.n_sessions, MM_IMSG_SESSIONS_MAX);
	for (i = 0; i < d.n_sessions; i++) {
		assert_int_equal(d.sessions[i].id, i * 1000003);
		str_is(&d.sessions[i].user, i % 2 ? "erin@be2.test" : "");
		str_is(&d.sessions[i].backend, "site:ams");
		assert_int_equal(d.sessions[i].bytes_in, UINT64_MAX - i);
	}

	memset(&b, 0, sizeof(b));
	b.workers = 7;
	n = mm_imsg_body_encode(MM_IMSG_FANOUT, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_FANOUT, buf, (size_t)n,
	    &d, &why), 0);
	assert_int_equal(d.workers, 7);

	memset(&b, 0, sizeof(b));
	b.user = mm_imsg_str("bob@a.test");
	b.reason = mm_imsg_str("Mailbox is being moved, log in again");
	n = mm_imsg_body_encode(MM_IMSG_KICK, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_KICK, buf, (size_t)n,
	    &d, &why), 0);
	str_is(&d.user, "bob@a.test");
	str_is(&d.reason, "Mailbox is being moved, log in again");

	memset(&b, 0, sizeof(b));
	b.kicked = 3;
	n = mm_imsg_body_encode(MM_IMSG_KICKED, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_KICKED, buf, (size_t)n,
	    &d, &why), 0);
	assert_int_equal(d.kicked, 3);

	memset(&b, 0, sizeof(b));
	b.user = mm_imsg_str("bob@a.test");
	b.site = mm_imsg_str("fra");
	b.backend = mm_imsg_str("ms7");
	n = mm_imsg_body_encode(MM_IMSG_ROUTE, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_ROUTE, buf, (size_t)n,
	    &d, &why), 0);
	str_is(&d.user, "bob@a.test");
	str_is(&d.site, "fra");
	str_is(&d.backend, "ms7");

	memset(&b, 0, sizeof(b));
	b.ok = true;
	n = mm_imsg_body_encode(MM_IMSG_ACK, &b, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(mm_imsg_body_decode(MM_IMSG_ACK, buf, (size_t)n,
	    &d, &why), 0);
	assert_true(d.ok);
}

static void
decode_fails(uint8_t type, const uint8_t *p, size_t len, const char *want)
{
	const char *why = NULL;

	assert_int_equal(mm_imsg_body_decode(type, p, len, &d, &why), -1);
	assert_non_null(why);
	if (strstr(why, want) == NULL)
		fail_msg("got \"%s\", want \"%s\"", why, want);
}

static void
test_refused(void **state)
{
	struct mm_mp_writer w;
	size_t i;

	(void)state;
	/* A control character in a name a process will print. */
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 1);
	mm_mp_put_str(&w, "al\x1bice");
	decode_fails(MM_IMSG_SESSIONS_REQ, buf, mm_mp_writer_len(&w),
	    "control character");
	/* The wrong field count, a type nobody knows, trailing bytes. */
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 2);
	mm_mp_put_str(&w, "a");
	mm_mp_put_str(&w, "b");
	decode_fails(MM_IMSG_SESSIONS_REQ, buf, mm_mp_writer_len(&w), "");
	decode_fails(99, buf, mm_mp_writer_len(&w), "unknown type");
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 1);
	mm_mp_put_uint(&w, 2);
	mm_mp_put_uint(&w, 0);
	decode_fails(MM_IMSG_FANOUT, buf, mm_mp_writer_len(&w), "trailing");
	/* More sessions than one frame may carry. */
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 2);
	mm_mp_put_bool(&w, true);
	mm_mp_put_array(&w, MM_IMSG_SESSIONS_MAX + 1);
	decode_fails(MM_IMSG_SESSIONS, buf, mm_mp_writer_len(&w), "");
	/* A user name over its limit, on the way out too. */
	memset(&b, 0, sizeof(b));
	{
		static char longname[MM_IMSG_USER_MAX + 2];

		for (i = 0; i < sizeof(longname) - 1; i++)
			longname[i] = 'x';
		b.user = mm_imsg_str(longname);
	}
	assert_int_equal(mm_imsg_body_encode(MM_IMSG_SESSIONS_REQ, &b, buf,
	    sizeof(buf)), -1);
	b.user = mm_imsg_str("tab\there");
	assert_int_equal(mm_imsg_body_encode(MM_IMSG_SESSIONS_REQ, &b, buf,
	    sizeof(buf)), -1);
	b.n_sessions = MM_IMSG_SESSIONS_MAX + 1;
	assert_int_equal(mm_imsg_body_encode(MM_IMSG_SESSIONS, &b, buf,
	    sizeof(buf)), -1);
	/* A kick names a user: never "everyone". */
	memset(&b, 0, sizeof(b));
	b.user = mm_imsg_str("");
	assert_int_equal(mm_imsg_body_encode(MM_IMSG_KICK, &b, buf,
	    sizeof(buf)), -1);
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 2);
	mm_mp_put_str(&w, "");
	mm_mp_put_str(&w, "why");
	decode_fails(MM_IMSG_KICK, buf, mm_mp_writer_len(&w), "no user");
	mm_mp_writer_init(&w, buf, sizeof(buf));
	mm_mp_put_array(&w, 2);
	mm_mp_put_str(&w, "carol");
	mm_mp_put_str(&w, "bye\r\n* OK");
	decode_fails(MM_IMSG_KICK, buf, mm_mp_writer_len(&w),
	    "control character");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_bodies_round_trip),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
