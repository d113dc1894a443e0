/* Unit tests for record: codec round trips, every decode rejection,
 * signature domain separation, name rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "dkey.h"
#include "record.h"

#define BUF 8192

static struct dkey key, other;

static void
fill_user(struct record_user *u)
{
	memset(u, 0, sizeof(*u));
	strcpy(u->user, "alice@example.com");
	strcpy(u->site, "fra");
	strcpy(u->backend, "ms1");
	u->state = USTATE_ACTIVE;
	u->epoch = 3;
	u->seq = 300;
	strcpy(u->origin, "fra-node1");
	u->origin_seq = 70000;
	u->timestamp = 1700000000;
}

static size_t
enc_user(const struct record_user *u, uint8_t *out)
{
	const char *why = NULL;
	int n = record_encode_user(u, &key, out, BUF, &why);

	if (n < 0)
		fail_msg("encode: %s", why);
	return (size_t)n;
}

static void
decode_ok(const uint8_t *buf, size_t len, struct record *r)
{
	const char *why = NULL;

	if (record_decode(buf, len, r, &why) < 0)
		fail_msg("decode: %s", why);
}

/* The envelope must be refused with a reason containing want. */
static void
decode_fails(const uint8_t *buf, size_t len, const char *want)
{
	struct record r;
	const char *why = NULL;

	assert_int_equal(record_decode(buf, len, &r, &why), -1);
	assert_non_null(why);
	if (want != NULL && strstr(why, want) == NULL)
		fail_msg("reason \"%s\" lacks \"%s\"", why, want);
}

/* ---- building envelopes with msgpack-c ------------------------------- */

/* Signs body and wraps it: [bin body, bin id, bin sig]. */
static size_t
seal(const void *body, size_t blen, const struct dkey *k, const char *prefix,
    uint8_t *out)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t sig[DKEY_SIG_LEN];
	size_t n;

	dkey_sign(k, prefix, body, blen, sig);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_bin(&pk, blen);
	msgpack_pack_bin_body(&pk, body, blen);
	msgpack_pack_bin(&pk, DKEY_ID_LEN);
	msgpack_pack_bin_body(&pk, k->id, DKEY_ID_LEN);
	msgpack_pack_bin(&pk, DKEY_SIG_LEN);
	msgpack_pack_bin_body(&pk, sig, DKEY_SIG_LEN);
	n = sb.size;
	assert_true(n <= BUF);
	memcpy(out, sb.data, n);
	msgpack_sbuffer_destroy(&sb);
	return n;
}

static void
pstr(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* A USER body field by field; mutate picks a field to damage. */
enum mut {
	M_NONE, M_VERSION, M_KIND, M_COUNT, M_USER_INT, M_STATE, M_LONG_SITE,
	M_UPPER_USER, M_NEG_EPOCH, M_EPOCH0, M_NUL_BACKEND, M_BAD_TRANSFER,
	M_TRANSFER_STR, M_BAD_ORIGIN, M_TARGET, M_SPACE_USER, M_EMPTY_BACKEND,
};

static size_t
user_body(enum mut m, uint8_t *out)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t n;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, m == M_COUNT ? 12 : 13);
	msgpack_pack_uint64(&pk, m == M_VERSION ? 2 : 1);
	msgpack_pack_uint64(&pk, m == M_KIND ? 9 : 1);
	if (m == M_USER_INT)
		msgpack_pack_uint64(&pk, 5);
	else
		pstr(&pk, m == M_UPPER_USER ? "Alice@example.com" :
		    m == M_SPACE_USER ? "al ice" : "alice@example.com");
	pstr(&pk, m == M_LONG_SITE ? "abcdefghijabcdefghijabcdefghijabc" :
	    "fra");
	if (m == M_NUL_BACKEND) {
		msgpack_pack_str(&pk, 3);
		msgpack_pack_str_body(&pk, "m\0s", 3);
	} else {
		pstr(&pk, m == M_EMPTY_BACKEND ? "" : "ms1");
	}
	msgpack_pack_uint64(&pk, m == M_STATE ? 9 : 1);
	if (m == M_NEG_EPOCH)
		msgpack_pack_int64(&pk, -1);
	else
		msgpack_pack_uint64(&pk, m == M_EPOCH0 ? 0 : 1);
	msgpack_pack_uint64(&pk, 2);
	pstr(&pk, m == M_BAD_ORIGIN ? "no/slash" : "fra-node1");
	msgpack_pack_uint64(&pk, 1);
	msgpack_pack_uint64(&pk, 1700000000);
	pstr(&pk, m == M_TARGET ? "AMS" : "");
	if (m == M_BAD_TRANSFER) {
		msgpack_pack_bin(&pk, 3);
		msgpack_pack_bin_body(&pk, "xyz", 3);
	} else if (m == M_TRANSFER_STR) {
		pstr(&pk, "xyz");
	} else {
		msgpack_pack_nil(&pk);
	}
	n = sb.size;
	memcpy(out, sb.data, n);
	msgpack_sbuffer_destroy(&sb);
	return n;
}

/* ---- tests ----------------------------------------------------------- */

static void
test_user_roundtrip(void **state)
{
	struct record_user u, t;
	struct record r, r2;
	uint8_t buf[BUF], tbuf[BUF];
	size_t n, tn;

	fill_user(&u);
	strcpy(u.target_site, "ams");
	u.state = USTATE_MOVING;
	u.epoch = UINT64_MAX;
	u.seq = 0;
	n = enc_user(&u, buf);
	decode_ok(buf, n, &r);
	assert_int_equal(r.kind, RECORD_USER);
	assert_string_equal(r.u.user.user, u.user);
	assert_string_equal(r.u.user.site, "fra");
	assert_string_equal(r.u.user.backend, "ms1");
	assert_int_equal(r.u.user.state, USTATE_MOVING);
	assert_true(r.u.user.epoch == UINT64_MAX);
	assert_int_equal(r.u.user.seq, 0);
	assert_string_equal(r.u.user.origin, "fra-node1");
	assert_int_equal(r.u.user.origin_seq, 70000);
	assert_int_equal(r.u.user.timestamp, 1700000000);
	assert_string_equal(r.u.user.target_site, "ams");
	assert_null(r.u.user.transfer);
	assert_int_equal(r.u.user.transfer_len, 0);
	assert_memory_equal(r.key_id, key.id, DKEY_ID_LEN);
	assert_int_equal(record_verify(&r, key.pk), 0);
	assert_int_equal(record_verify(&r, other.pk), -1);

	/* With a transfer: it points into the outer buffer. */
	fill_user(&t);
	t.state = USTATE_TRANSFER;
	strcpy(t.site, "ams");
	t.backend[0] = '\0';
	t.epoch = 4;
	t.seq = 0;
	tn = enc_user(&t, tbuf);
	fill_user(&u);
	strcpy(u.site, "ams");
	u.epoch = 4;
	u.seq = 1;
	u.transfer = tbuf;
	u.transfer_len = tn;
	n = enc_user(&u, buf);
	decode_ok(buf, n, &r);
	assert_int_equal(r.u.user.transfer_len, tn);
	assert_true(r.u.user.transfer > buf && r.u.user.transfer < buf + n);
	assert_memory_equal(r.u.user.transfer, tbuf, tn);
	decode_ok(r.u.user.transfer, r.u.user.transfer_len, &r2);
	assert_int_equal(r2.u.user.state, USTATE_TRANSFER);
	assert_string_equal(r2.u.user.site, "ams");

	/* The body is stored exactly: decode points into buf. */
	assert_true(r.body > buf && r.body + r.body_len <= buf + n);

	/* Long user name (str8) and long fields. */
	fill_user(&u);
	memset(u.user, 'a', RECORD_USER_MAX);
	u.user[RECORD_USER_MAX] = '\0';
	memset(u.backend, 'b', RECORD_NAME_MAX);
	u.backend[RECORD_NAME_MAX] = '\0';
	n = enc_user(&u, buf);
	decode_ok(buf, n, &r);
	assert_string_equal(r.u.user.user, u.user);
	assert_string_equal(r.u.user.backend, u.backend);
}

static void
test_cert_revoke_roundtrip(void **state)
{
	struct record_cert c;
	struct record_revoke v;
	struct record r;
	uint8_t buf[BUF];
	const char *why;
	int n;

	memset(&c, 0, sizeof(c));
	memcpy(c.pk, other.pk, DKEY_PK_LEN);
	c.role = ROLE_NODE;
	strcpy(c.site, "fra");
	strcpy(c.name, "node-1.fra");
	c.issued = 1700000000;
	c.expires = 1800000000;
	strcpy(c.origin, "root");
	c.origin_seq = 5;
	n = record_encode_cert(&c, &key, buf, sizeof(buf), &why);
	assert_true(n > 0);
	decode_ok(buf, (size_t)n, &r);
	assert_int_equal(r.kind, RECORD_CERT);
	assert_memory_equal(r.u.cert.pk, other.pk, DKEY_PK_LEN);
	assert_int_equal(r.u.cert.role, ROLE_NODE);
	assert_string_equal(r.u.cert.site, "fra");
	assert_string_equal(r.u.cert.name, "node-1.fra");
	assert_int_equal(r.u.cert.issued, 1700000000);
	assert_int_equal(r.u.cert.expires, 1800000000);
	assert_string_equal(r.u.cert.origin, "root");
	assert_int_equal(r.u.cert.origin_seq, 5);
	assert_int_equal(record_verify(&r, key.pk), 0);

	memset(&v, 0, sizeof(v));
	memcpy(v.key_id, other.id, DKEY_ID_LEN);
	v.timestamp = 1700000001;
	strcpy(v.reason, "laptop stolen");
	strcpy(v.origin, "root");
	v.origin_seq = 6;
	n = record_encode_revoke(&v, &key, buf, sizeof(buf), &why);
	assert_true(n > 0);
	decode_ok(buf, (size_t)n, &r);
	assert_int_equal(r.kind, RECORD_REVOKE);
	assert_memory_equal(r.u.revoke.key_id, other.id, DKEY_ID_LEN);
	assert_int_equal(r.u.revoke.timestamp, 1700000001);
	assert_string_equal(r.u.revoke.reason, "laptop stolen");
	assert_int_equal(r.u.revoke.origin_seq, 6);
	assert_int_equal(record_verify(&r, key.pk), 0);

	/* Encoder refusals. */
	c.role = 7;
	assert_int_equal(record_encode_cert(&c, &key, buf, sizeof(buf), &why),
	    -1);
	c.role = ROLE_SITE;
	strcpy(c.site, "FRA");
	assert_int_equal(record_encode_cert(&c, &key, buf, sizeof(buf), &why),
	    -1);
	strcpy(v.reason, "tab\there");
	assert_int_equal(record_encode_revoke(&v, &key, buf, sizeof(buf),
	    &why), -1);
}

static void
test_encode_refusals(void **state)
{
	struct record_user u;
	struct dkey pub;
	uint8_t buf[BUF];
	const char *why = NULL;

	fill_user(&u);
	strcpy(u.user, "Alice");
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	assert_string_equal(why, "invalid user name");
	fill_user(&u);
	strcpy(u.site, "f_a");
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	fill_user(&u);
	u.backend[0] = '\0';
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	u.state = USTATE_DELETED;
	assert_true(record_encode_user(&u, &key, buf, BUF, &why) > 0);
	fill_user(&u);
	u.epoch = 0;
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	fill_user(&u);
	u.state = 0;
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	fill_user(&u);
	u.transfer = (const uint8_t *)"junk";
	u.transfer_len = 4;
	assert_int_equal(record_encode_user(&u, &key, buf, BUF, &why), -1);
	/* Output too small. */
	fill_user(&u);
	assert_int_equal(record_encode_user(&u, &key, buf, 20, &why), -1);
	/* No secret. */
	memset(&pub, 0, sizeof(pub));
	memcpy(pub.pk, key.pk, DKEY_PK_LEN);
	assert_int_equal(record_encode_user(&u, &pub, buf, BUF, &why), -1);
}

static void
test_msgpack_c_compatible(void **state)
{
	uint8_t body[BUF], env[BUF];
	size_t blen, n;
	struct record r;

	blen = user_body(M_NONE, body);
	n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
	decode_ok(env, n, &r);
	assert_string_equal(r.u.user.user, "alice@example.com");
	assert_int_equal(record_verify(&r, key.pk), 0);
	/* An empty back end is for tombstones and transfers only. */
	blen = user_body(M_EMPTY_BACKEND, body);
	n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
	decode_fails(env, n, "back end");
}

static void
test_decode_rejections(void **state)
{
	static const struct {
		enum mut m;
		const char *why;
	} cases[] = {
		{ M_VERSION, "version" },
		{ M_KIND, "kind" },
		{ M_COUNT, "element count" },
		{ M_USER_INT, "want string" },
		{ M_STATE, "state" },
		{ M_LONG_SITE, "too long" },
		{ M_UPPER_USER, "user" },
		{ M_SPACE_USER, "user" },
		{ M_NEG_EPOCH, "unsigned" },
		{ M_EPOCH0, "epoch" },
		{ M_NUL_BACKEND, "NUL" },
		{ M_BAD_TRANSFER, "transfer" },
		{ M_TRANSFER_STR, "binary" },
		{ M_BAD_ORIGIN, "origin" },
		{ M_TARGET, "target" },
	};
	uint8_t body[BUF], env[BUF];
	size_t blen, n, i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		blen = user_body(cases[i].m, body);
		n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
		decode_fails(env, n, cases[i].why);
	}
}

static void
test_decode_envelope_rejections(void **state)
{
	struct record_user u;
	uint8_t env[BUF], bad[BUF], body[BUF];
	size_t n, i, blen;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	fill_user(&u);
	n = enc_user(&u, env);

	/* Every truncation. */
	for (i = 0; i < n; i++)
		decode_fails(env, i, NULL);
	decode_fails(env, 0, "truncated");
	/* Trailing bytes after the envelope. */
	memcpy(bad, env, n);
	bad[n] = 0xc0;
	decode_fails(bad, n + 1, "trailing");
	/* Over RECORD_MAX. */
	memset(bad, 0, sizeof(bad));
	decode_fails(bad, RECORD_MAX + 1, "RECORD_MAX");
	/* Not an array; array of 2. */
	bad[0] = 0x80;
	decode_fails(bad, 1, "array");
	bad[0] = 0x92;
	decode_fails(bad, 1, "element count");

	/* Key id and signature of the wrong length; body not bin. */
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	blen = user_body(M_NONE, body);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_bin(&pk, blen);
	msgpack_pack_bin_body(&pk, body, blen);
	msgpack_pack_bin(&pk, 7);
	msgpack_pack_bin_body(&pk, key.id, 7);
	msgpack_pack_bin(&pk, DKEY_SIG_LEN);
	msgpack_pack_bin_body(&pk, body, DKEY_SIG_LEN);
	decode_fails((const uint8_t *)sb.data, sb.size, "wrong length");
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_str(&pk, blen);
	msgpack_pack_str_body(&pk, body, blen);
	msgpack_pack_bin(&pk, DKEY_ID_LEN);
	msgpack_pack_bin_body(&pk, key.id, DKEY_ID_LEN);
	msgpack_pack_bin(&pk, DKEY_SIG_LEN);
	msgpack_pack_bin_body(&pk, body, DKEY_SIG_LEN);
	decode_fails((const uint8_t *)sb.data, sb.size, "binary");
	msgpack_sbuffer_destroy(&sb);

	/* Trailing bytes inside the body. */
	blen = user_body(M_NONE, body);
	body[blen++] = 0x01;
	n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
	decode_fails(env, n, "trailing");
	/* An empty body. */
	n = seal(body, 0, &key, RECORD_SIG_PREFIX, env);
	decode_fails(env, n, "truncated");
}

/* Non-shortest forms would let a relay re-encode a record. */
static void
test_decode_canonical(void **state)
{
	struct record_user u;
	uint8_t env[BUF], bad[BUF], body[BUF];
	size_t n, blen;
	struct record r;
	uint8_t *p;

	/* origin_seq 5 written as uint16. */
	blen = user_body(M_NONE, body);
	/* body: ...,"fra-node1", 1 (origin_seq), ce 65 53 f1 00 (ts) ... */
	p = memmem(body, blen, "fra-node1", 9);
	assert_non_null(p);
	p += 9;
	assert_int_equal(*p, 0x01);
	memcpy(bad, body, (size_t)(p - body));
	bad[p - body] = 0xcd;
	bad[p - body + 1] = 0x00;
	bad[p - body + 2] = 0x01;
	memcpy(bad + (p - body) + 3, p + 1, blen - (size_t)(p - body) - 1);
	n = seal(bad, blen + 2, &key, RECORD_SIG_PREFIX, env);
	decode_fails(env, n, "shortest");

	/* A short string as str8. */
	p = memmem(body, blen, "\xa3" "fra", 4);
	assert_non_null(p);
	memcpy(bad, body, (size_t)(p - body));
	bad[p - body] = 0xd9;
	bad[p - body + 1] = 3;
	memcpy(bad + (p - body) + 2, p + 1, blen - (size_t)(p - body) - 1);
	n = seal(bad, blen + 1, &key, RECORD_SIG_PREFIX, env);
	decode_fails(env, n, "shortest");

	/* The envelope's body length as bin16. */
	fill_user(&u);
	n = enc_user(&u, env);
	decode_ok(env, n, &r);
	assert_int_equal(env[1], 0xc4);
	bad[0] = env[0];
	bad[1] = 0xc5;
	bad[2] = 0;
	memcpy(bad + 3, env + 2, n - 2);
	decode_fails(bad, n + 1, "shortest");
}

static void
test_signature_domain(void **state)
{
	uint8_t body[BUF], env[BUF], cenv[BUF], mixed[BUF];
	size_t blen, n, cn;
	struct record r, c;
	struct record_cert cert;
	const char *why;
	int ci;

	blen = user_body(M_NONE, body);
	/* Without the prefix. */
	n = seal(body, blen, &key, NULL, env);
	decode_ok(env, n, &r);
	assert_int_equal(record_verify(&r, key.pk), -1);
	/* Another prefix, and the prefix without its NUL. */
	n = seal(body, blen, &key, "MailMesh directory record v2", env);
	decode_ok(env, n, &r);
	assert_int_equal(record_verify(&r, key.pk), -1);
	{
		uint8_t joined[BUF];
		size_t plen = strlen(RECORD_SIG_PREFIX);
		uint8_t sig[DKEY_SIG_LEN];

		memcpy(joined, RECORD_SIG_PREFIX, plen);
		memcpy(joined + plen, body, blen);
		dkey_sign(&key, NULL, joined, plen + blen, sig);
		n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
		decode_ok(env, n, &r);
		memcpy(r.sig, sig, DKEY_SIG_LEN);
		assert_int_equal(record_verify(&r, key.pk), -1);
	}
	/* The right prefix. */
	n = seal(body, blen, &key, RECORD_SIG_PREFIX, env);
	decode_ok(env, n, &r);
	assert_int_equal(record_verify(&r, key.pk), 0);

	/* A CERT's signature does not validate a USER body. */
	memset(&cert, 0, sizeof(cert));
	memcpy(cert.pk, other.pk, DKEY_PK_LEN);
	cert.role = ROLE_SITE;
	strcpy(cert.site, "fra");
	strcpy(cert.name, "fra");
	strcpy(cert.origin, "root");
	ci = record_encode_cert(&cert, &key, cenv, sizeof(cenv), &why);
	assert_true(ci > 0);
	cn = (size_t)ci;
	decode_ok(cenv, cn, &c);
	memcpy(mixed, env, n);
	memcpy(mixed + n - DKEY_SIG_LEN, c.sig, DKEY_SIG_LEN);
	decode_ok(mixed, n, &r);
	assert_int_equal(record_verify(&r, key.pk), -1);
	/* Any flipped bit of the body breaks it. */
	memcpy(mixed, env, n);
	mixed[5] ^= 0x01;
	if (record_decode(mixed, n, &r, &why) == 0)
		assert_int_equal(record_verify(&r, key.pk), -1);
}

static void
test_names(void **state)
{
	char s[300];

	assert_true(record_site_valid("fra"));
	assert_true(record_site_valid("us-east-1"));
	assert_false(record_site_valid(""));
	assert_false(record_site_valid("Fra"));
	assert_false(record_site_valid("fra_1"));
	memset(s, 'a', 33);
	s[33] = '\0';
	assert_false(record_site_valid(s));
	s[32] = '\0';
	assert_true(record_site_valid(s));

	assert_true(record_name_valid("Node_1.fra-x"));
	assert_false(record_name_valid(""));
	assert_false(record_name_valid("a b"));
	assert_false(record_name_valid("a/b"));
	memset(s, 'a', 65);
	s[65] = '\0';
	assert_false(record_name_valid(s));
	s[64] = '\0';
	assert_true(record_name_valid(s));

	assert_true(record_user_valid("alice@example.com"));
	assert_true(record_user_valid("j\xc3\xb6rg@example.de"));
	assert_false(record_user_valid(""));
	assert_false(record_user_valid("Alice"));
	assert_false(record_user_valid("a b"));
	assert_false(record_user_valid("a\tb"));
	assert_false(record_user_valid("a\x7f"));
	memset(s, 'a', 256);
	s[256] = '\0';
	assert_false(record_user_valid(s));
	s[255] = '\0';
	assert_true(record_user_valid(s));
}

static void
test_state_role_names(void **state)
{
	enum user_state st;
	enum cert_role ro;
	int i;

	for (i = USTATE_ACTIVE; i <= USTATE_DELETED; i++) {
		assert_int_equal(record_state_parse(record_state_name(i), &st),
		    0);
		assert_int_equal(st, i);
	}
	for (i = ROLE_SITE; i <= ROLE_TRANSPORT; i++) {
		assert_int_equal(record_role_parse(record_role_name(i), &ro),
		    0);
		assert_int_equal(ro, i);
	}
	assert_int_equal(record_state_parse("gone", &st), -1);
	assert_int_equal(record_role_parse("admin", &ro), -1);
	assert_string_equal(record_state_name(0), "invalid");
	assert_string_equal(record_role_name(99), "invalid");
}

static int
setup(void **state)
{
	if (dkey_init() < 0)
		return -1;
	dkey_generate(&key);
	dkey_generate(&other);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_roundtrip),
		cmocka_unit_test(test_cert_revoke_roundtrip),
		cmocka_unit_test(test_encode_refusals),
		cmocka_unit_test(test_msgpack_c_compatible),
		cmocka_unit_test(test_decode_rejections),
		cmocka_unit_test(test_decode_envelope_rejections),
		cmocka_unit_test(test_decode_canonical),
		cmocka_unit_test(test_signature_domain),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_state_role_names),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
