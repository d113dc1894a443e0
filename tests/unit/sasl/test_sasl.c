/* Unit tests for sasl: PLAIN decode and encode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sasl.h"

#define F (SASL_FIELD_MAX + 1)

struct out {
	char authz[F], user[F], pass[F];
};

static int
decode(const char *b64, struct out *o)
{
	memset(o, 'X', sizeof(*o));
	return sasl_plain_decode(b64, strlen(b64), o->authz, sizeof(o->authz),
	    o->user, sizeof(o->user), o->pass, sizeof(o->pass));
}

/* On failure the outputs are left alone: nothing half-decoded leaks. */
static void
assert_untouched(const struct out *o)
{
	assert_int_equal(o->user[0], 'X');
	assert_int_equal(o->pass[0], 'X');
	assert_int_equal(o->authz[0], 'X');
}

static void
test_decode_rfc4616(void **state)
{
	struct out o;

	/* RFC 4616 section 4 example. */
	assert_int_equal(decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", &o), 0);
	assert_string_equal(o.authz, "");
	assert_string_equal(o.user, "tim");
	assert_string_equal(o.pass, "tanstaaftanstaaf");
}

static void
test_decode_authz_and_spaces(void **state)
{
	struct out o;

	assert_int_equal(decode("YWRtaW4AYWxpY2UAcGEgc3M=", &o), 0);
	assert_string_equal(o.authz, "admin");
	assert_string_equal(o.user, "alice");
	assert_string_equal(o.pass, "pa ss");

	assert_int_equal(decode("AGFsaWNlAHNlY3JldA==", &o), 0);
	assert_string_equal(o.authz, "");
	assert_string_equal(o.user, "alice");
	assert_string_equal(o.pass, "secret");
}

static void
test_decode_bad_fields(void **state)
{
	struct out o;

	/* one NUL only */
	assert_int_equal(decode("YWxpY2UAc2VjcmV0", &o), -1);
	assert_untouched(&o);
	/* empty authcid */
	assert_int_equal(decode("AABzZWNyZXQ=", &o), -1);
	assert_untouched(&o);
	/* empty password */
	assert_int_equal(decode("AGFsaWNlAA==", &o), -1);
	assert_untouched(&o);
	/* three NULs */
	assert_int_equal(decode("AGFsaWNlAHNlYwByZXQ=", &o), -1);
	assert_untouched(&o);
	/* no NUL at all; and nothing */
	assert_int_equal(decode("YQ==", &o), -1);
	assert_int_equal(decode("", &o), -1);
	assert_int_equal(sasl_plain_decode(NULL, 0, o.authz, F, o.user, F,
	    o.pass, F), -1);
}

static void
test_decode_bad_base64(void **state)
{
	struct out o;

	/* trailing garbage */
	assert_int_equal(decode("AGFsaWNlAHNlY3JldA==x", &o), -1);
	assert_int_equal(decode("AGFsaWNlAHNlY3JldA== ", &o), -1);
	assert_int_equal(decode("AGFsaWNlAHNlY3JldA==\r\n", &o), -1);
	/* missing padding */
	assert_int_equal(decode("AGFsaWNlAHNlY3JldA", &o), -1);
	/* bad character inside */
	assert_int_equal(decode("AGFsaWNl*HNlY3JldA==", &o), -1);
	/* URL-safe alphabet is not PLAIN's */
	assert_int_equal(decode("AGFsaWNlAHNl_3JldA==", &o), -1);
	/* non-zero padding bits */
	assert_int_equal(decode("AGFsaWNlAHNlY3JldB==", &o), -1);
	/* bytes above 0x7f (libsodium 1.0.18 took some for digits) */
	assert_int_equal(decode("YWRtaW4A\xd9WxpY2UAc2V0", &o), -1);
	assert_int_equal(decode("AGFsaWNl\x80HNlY3JldA==", &o), -1);
	/* a lone '=' (IMAP's empty response) is not a message */
	assert_int_equal(decode("=", &o), -1);
	assert_untouched(&o);
}

static void
test_decode_small_buffers(void **state)
{
	/* admin, alice, "pa ss" */
	const char *b64 = "YWRtaW4AYWxpY2UAcGEgc3M=";
	char authz[6], user[6], pass[6];

	assert_int_equal(sasl_plain_decode(b64, strlen(b64), authz, 6, user,
	    6, pass, 6), 0);
	assert_string_equal(pass, "pa ss");
	/* Each field needs room for its NUL. */
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), authz, 5, user,
	    6, pass, 6), -1);
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), authz, 6, user,
	    5, pass, 6), -1);
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), authz, 6, user,
	    6, pass, 5), -1);
	assert_int_equal(sasl_plain_decode(b64, strlen(b64), authz, 0, user,
	    6, pass, 6), -1);
}

static void
test_roundtrip(void **state)
{
	char b64[64];
	struct out o;
	int n;

	n = sasl_plain_encode("", "alice", "secret", b64, sizeof(b64));
	assert_int_equal(n, 20);
	assert_string_equal(b64, "AGFsaWNlAHNlY3JldA==");

	n = sasl_plain_encode(NULL, "tim", "tanstaaftanstaaf", b64,
	    sizeof(b64));
	assert_string_equal(b64, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	assert_int_equal(n, (int)strlen(b64));

	n = sasl_plain_encode("admin", "alice", "pa ss", b64, sizeof(b64));
	assert_true(n > 0);
	assert_int_equal(decode(b64, &o), 0);
	assert_string_equal(o.authz, "admin");
	assert_string_equal(o.user, "alice");
	assert_string_equal(o.pass, "pa ss");
}

static void
test_encode_small_out(void **state)
{
	char b64[21];

	/* 20 characters and the NUL fit exactly; one less does not. */
	assert_int_equal(sasl_plain_encode("", "alice", "secret", b64, 21), 20);
	assert_int_equal(sasl_plain_encode("", "alice", "secret", b64, 20), -1);
	assert_int_equal(sasl_plain_encode("", "alice", "secret", b64, 0), -1);
	assert_int_equal(sasl_plain_encode("", NULL, "secret", b64, 21), -1);
	assert_int_equal(sasl_plain_encode("", "alice", NULL, b64, 21), -1);
}

/* Fields of exactly SASL_FIELD_MAX bytes pass both ways; one more fails. */
static void
test_field_limits(void **state)
{
	size_t b64len = 4 * ((3 * SASL_FIELD_MAX + 2 + 2) / 3) + 1;
	char *big = malloc(SASL_FIELD_MAX + 2);
	char *b64 = malloc(b64len + 8);
	struct out o;
	int n;

	memset(big, 'a', SASL_FIELD_MAX);
	big[SASL_FIELD_MAX] = '\0';
	n = sasl_plain_encode(big, big, big, b64, b64len + 8);
	assert_int_equal(n, (int)b64len - 1);
	assert_int_equal(decode(b64, &o), 0);
	assert_int_equal(strlen(o.authz), SASL_FIELD_MAX);
	assert_int_equal(strlen(o.user), SASL_FIELD_MAX);
	assert_int_equal(strlen(o.pass), SASL_FIELD_MAX);

	/* Refused before decoding: longer than any valid message. */
	b64[n] = 'A';
	b64[n + 1] = 'A';
	b64[n + 2] = 'A';
	b64[n + 3] = 'A';
	b64[n + 4] = '\0';
	assert_int_equal(decode(b64, &o), -1);

	/* One field too long: the encoder refuses it. */
	memset(big, 'a', SASL_FIELD_MAX + 1);
	big[SASL_FIELD_MAX + 1] = '\0';
	assert_int_equal(sasl_plain_encode("", "u", big, b64, b64len + 8), -1);
	assert_int_equal(sasl_plain_encode("", big, "p", b64, b64len + 8), -1);
	assert_int_equal(sasl_plain_encode(big, "u", "p", b64, b64len + 8), -1);

	free(b64);
	free(big);
}

/* A field over SASL_FIELD_MAX is refused even when the buffer is big. */
static void
test_decode_field_over_max(void **state)
{
	/* sasl_plain_encode refuses such a password, so the message is
	 * encoded here. */
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t raw_len = 3 + SASL_FIELD_MAX + 1, i, o = 0;
	unsigned char *raw = malloc(raw_len);
	char *b64 = malloc(4 * ((raw_len + 2) / 3) + 1);
	char *pass = malloc(SASL_FIELD_MAX + 8);
	char authz[8], user[8];

	raw[0] = '\0';
	raw[1] = 'u';
	raw[2] = '\0';
	memset(raw + 3, 'p', SASL_FIELD_MAX + 1);
	for (i = 0; i < raw_len; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16;
		size_t left = raw_len - i;

		if (left > 1)
			v |= (uint32_t)raw[i + 1] << 8;
		if (left > 2)
			v |= raw[i + 2];
		b64[o++] = tbl[(v >> 18) & 63];
		b64[o++] = tbl[(v >> 12) & 63];
		b64[o++] = left > 1 ? tbl[(v >> 6) & 63] : '=';
		b64[o++] = left > 2 ? tbl[v & 63] : '=';
	}
	b64[o] = '\0';
	assert_int_equal(sasl_plain_decode(b64, o, authz, sizeof(authz), user,
	    sizeof(user), pass, SASL_FIELD_MAX + 8), -1);
	free(pass);
	free(b64);
	free(raw);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_rfc4616),
		cmocka_unit_test(test_decode_authz_and_spaces),
		cmocka_unit_test(test_decode_bad_fields),
		cmocka_unit_test(test_decode_bad_base64),
		cmocka_unit_test(test_decode_small_buffers),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_encode_small_out),
		cmocka_unit_test(test_field_limits),
		cmocka_unit_test(test_decode_field_over_max),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
