/* Signed directory records: a bounded msgpack writer and reader.
 *
 * Only the canonical (shortest) msgpack form of each value is written and
 * accepted. The envelope around the signed body is not itself signed, so
 * without this anyone relaying a record could re-encode it into different
 * bytes and make honest nodes see an equivocation. */
#include "record.h"

#include <string.h>

#include "mm_util.h"

#define ENVELOPE_FIELDS 3
#define USER_FIELDS 13
#define CERT_FIELDS 10
#define REVOKE_FIELDS 7

/* msgpack type bytes used here */
#define MP_FIXINT_MAX 0x7f
#define MP_FIXARRAY 0x90
#define MP_FIXARRAY_MAX 0x0f
#define MP_FIXSTR 0xa0
#define MP_FIXSTR_MAX 0x1f
#define MP_NIL 0xc0
#define MP_BIN8 0xc4
#define MP_BIN16 0xc5
#define MP_UINT8 0xcc
#define MP_UINT16 0xcd
#define MP_UINT32 0xce
#define MP_UINT64 0xcf
#define MP_STR8 0xd9
#define MP_STR16 0xda

/* ---- reader ---------------------------------------------------------- */

struct mp_reader {
	const uint8_t *p, *end;
	const char *why;
};

static int
mp_fail(struct mp_reader *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	return -1;
}

static int
mp_need(struct mp_reader *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return mp_fail(r, "truncated");
	return 0;
}

static uint64_t
be_load(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | *p++;
	return v;
}

static int
mp_array(struct mp_reader *r, uint32_t want)
{
	if (mp_need(r, 1) < 0)
		return -1;
	if ((*r->p & 0xf0) != MP_FIXARRAY)
		return mp_fail(r, "wrong type (want array)");
	if ((uint32_t)(*r->p & MP_FIXARRAY_MAX) != want)
		return mp_fail(r, "wrong element count");
	r->p++;
	return 0;
}

static int
mp_uint(struct mp_reader *r, uint64_t *v_r)
{
	uint8_t t;
	size_t n;
	uint64_t min;

	if (mp_need(r, 1) < 0)
		return -1;
	t = *r->p;
	if (t <= MP_FIXINT_MAX) {
		*v_r = t;
		r->p++;
		return 0;
	}
	switch (t) {
	case MP_UINT8:
		n = 1, min = 0x80;
		break;
	case MP_UINT16:
		n = 2, min = 0x100;
		break;
	case MP_UINT32:
		n = 4, min = 0x10000;
		break;
	case MP_UINT64:
		n = 8, min = 0x100000000ULL;
		break;
	default:
		return mp_fail(r, "wrong type (want unsigned integer)");
	}
	if (mp_need(r, 1 + n) < 0)
		return -1;
	*v_r = be_load(r->p + 1, n);
	if (*v_r < min)
		return mp_fail(r, "integer not in shortest form");
	r->p += 1 + n;
	return 0;
}

/* A str or bin header of the given family; the payload must be there. */
static int
mp_blob(struct mp_reader *r, int str, const uint8_t **data_r, size_t *len_r)
{
	uint8_t t;
	size_t hdr, len;

	if (mp_need(r, 1) < 0)
		return -1;
	t = *r->p;
	if (str && (t & 0xe0) == MP_FIXSTR) {
		hdr = 1, len = t & MP_FIXSTR_MAX;
	} else if (t == (str ? MP_STR8 : MP_BIN8)) {
		if (mp_need(r, 2) < 0)
			return -1;
		hdr = 2, len = r->p[1];
		if (str && len <= MP_FIXSTR_MAX)
			return mp_fail(r, "string not in shortest form");
	} else if (t == (str ? MP_STR16 : MP_BIN16)) {
		if (mp_need(r, 3) < 0)
			return -1;
		hdr = 3, len = (size_t)be_load(r->p + 1, 2);
		if (len <= UINT8_MAX)
			return mp_fail(r, "length not in shortest form");
	} else {
		/* 32-bit lengths are never needed under RECORD_MAX. */
		return mp_fail(r, str ? "wrong type (want string)" :
		    "wrong type (want binary)");
	}
	if (mp_need(r, hdr + len) < 0)
		return -1;
	*data_r = r->p + hdr;
	*len_r = len;
	r->p += hdr + len;
	return 0;
}

/* A string of at most max bytes into out (max + 1), without NULs. */
static int
mp_str(struct mp_reader *r, char *out, size_t max)
{
	const uint8_t *s;
	size_t len;

	if (mp_blob(r, 1, &s, &len) < 0)
		return -1;
	if (len > max)
		return mp_fail(r, "string too long");
	if (memchr(s, '\0', len) != NULL)
		return mp_fail(r, "NUL in string");
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

static int
mp_bin_fixed(struct mp_reader *r, uint8_t *out, size_t want)
{
	const uint8_t *b;
	size_t len;

	if (mp_blob(r, 0, &b, &len) < 0)
		return -1;
	if (len != want)
		return mp_fail(r, "binary of wrong length");
	memcpy(out, b, len);
	return 0;
}

/* ---- writer ---------------------------------------------------------- */

struct mp_writer {
	uint8_t *p, *end;
	int overflow;
};

static void
mp_put(struct mp_writer *w, const void *data, size_t len)
{
	if (w->overflow || (size_t)(w->end - w->p) < len) {
		w->overflow = 1;
		return;
	}
	memcpy(w->p, data, len);
	w->p += len;
}

static void
mp_put_be(struct mp_writer *w, uint8_t type, uint64_t v, size_t n)
{
	uint8_t b[9];
	size_t i;

	b[0] = type;
	for (i = 0; i < n; i++)
		b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	mp_put(w, b, 1 + n);
}

static void
mp_put_array(struct mp_writer *w, uint8_t n)
{
	uint8_t b = MP_FIXARRAY | n;

	mp_put(w, &b, 1);
}

static void
mp_put_uint(struct mp_writer *w, uint64_t v)
{
	if (v <= MP_FIXINT_MAX)
		mp_put_be(w, (uint8_t)v, 0, 0);
	else if (v <= UINT8_MAX)
		mp_put_be(w, MP_UINT8, v, 1);
	else if (v <= UINT16_MAX)
		mp_put_be(w, MP_UINT16, v, 2);
	else if (v <= UINT32_MAX)
		mp_put_be(w, MP_UINT32, v, 4);
	else
		mp_put_be(w, MP_UINT64, v, 8);
}

static void
mp_put_blob(struct mp_writer *w, int str, const void *data, size_t len)
{
	if (str && len <= MP_FIXSTR_MAX)
		mp_put_be(w, (uint8_t)(MP_FIXSTR | len), 0, 0);
	else if (len <= UINT8_MAX)
		mp_put_be(w, str ? MP_STR8 : MP_BIN8, len, 1);
	else if (len <= UINT16_MAX)
		mp_put_be(w, str ? MP_STR16 : MP_BIN16, len, 2);
	else {
		w->overflow = 1;
		return;
	}
	mp_put(w, data, len);
}

static void
mp_put_str(struct mp_writer *w, const char *s)
{
	mp_put_blob(w, 1, s, strlen(s));
}

static void
mp_put_nil(struct mp_writer *w)
{
	uint8_t b = MP_NIL;

	mp_put(w, &b, 1);
}

/* ---- names ----------------------------------------------------------- */

bool
record_site_valid(const char *site)
{
	size_t n;

	for (n = 0; site[n] != '\0'; n++) {
		char c = site[n];

		if (n >= RECORD_SITE_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-'))
			return false;
	}
	return n > 0;
}

bool
record_name_valid(const char *name)
{
	size_t n;

	for (n = 0; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= RECORD_NAME_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-'))
			return false;
	}
	return n > 0;
}

bool
record_user_valid(const char *user)
{
	size_t n;

	for (n = 0; user[n] != '\0'; n++) {
		unsigned char c = (unsigned char)user[n];

		if (n >= RECORD_USER_MAX)
			return false;
		if (c <= ' ' || c == 0x7f || (c >= 'A' && c <= 'Z'))
			return false;
	}
	return n > 0;
}

/* Free text (revocation reasons): printable, may be empty. */
static bool
text_valid(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < ' ' || c == 0x7f)
			return false;
	}
	return true;
}

static const char *const state_names[] = {
	[USTATE_ACTIVE] = "active",
	[USTATE_MOVING] = "moving",
	[USTATE_FROZEN] = "frozen",
	[USTATE_TRANSFER] = "transfer",
	[USTATE_DELETED] = "deleted",
};

static const char *const role_names[] = {
	[ROLE_SITE] = "site",
	[ROLE_NODE] = "node",
	[ROLE_OPERATOR] = "operator",
	[ROLE_TRANSPORT] = "transport",
};

const char *
record_state_name(enum user_state s)
{
	if ((unsigned)s < MM_ARRAY_SIZE(state_names) && state_names[s] != NULL)
		return state_names[s];
	return "invalid";
}

int
record_state_parse(const char *name, enum user_state *s_r)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(state_names); i++) {
		if (state_names[i] != NULL && strcmp(name, state_names[i]) == 0) {
			*s_r = (enum user_state)i;
			return 0;
		}
	}
	return -1;
}

const char *
record_role_name(enum cert_role r)
{
	if ((unsigned)r < MM_ARRAY_SIZE(role_names) && role_names[r] != NULL)
		return role_names[r];
	return "invalid";
}

int
record_role_parse(const char *name, enum cert_role *r_r)
{
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(role_names); i++) {
		if (role_names[i] != NULL && strcmp(name, role_names[i]) == 0) {
			*r_r = (enum cert_role)i;
			return 0;
		}
	}
	return -1;
}

/* ---- field checks shared by encoder and decoder ---------------------- */

static bool
state_valid(uint64_t s)
{
	return s >= USTATE_ACTIVE && s <= USTATE_DELETED;
}

static const char *
check_user(const struct record_user *u)
{
	if (!record_user_valid(u->user))
		return "invalid user name";
	if (!record_site_valid(u->site))
		return "invalid site";
	if (!state_valid(u->state))
		return "invalid state";
	/* A tombstone or a hand-over need not name a back end. */
	if (!(u->backend[0] == '\0' && (u->state == USTATE_DELETED ||
	    u->state == USTATE_TRANSFER)) && !record_name_valid(u->backend))
		return "invalid back end name";
	if (u->epoch == 0)
		return "epoch 0";
	if (!record_name_valid(u->origin))
		return "invalid origin";
	if (u->target_site[0] != '\0' && !record_site_valid(u->target_site))
		return "invalid target site";
	return NULL;
}

static const char *
check_cert(const struct record_cert *c)
{
	if (c->role < ROLE_SITE || c->role > ROLE_TRANSPORT)
		return "invalid role";
	if (!record_site_valid(c->site))
		return "invalid site";
	if (!record_name_valid(c->name))
		return "invalid name";
	if (!record_name_valid(c->origin))
		return "invalid origin";
	return NULL;
}

static const char *
check_revoke(const struct record_revoke *v)
{
	if (!text_valid(v->reason))
		return "invalid reason";
	if (!record_name_valid(v->origin))
		return "invalid origin";
	return NULL;
}

/* ---- decoding -------------------------------------------------------- */

static int decode_envelope(const uint8_t *buf, size_t len, struct record *r,
    int depth, const char **why_r);

static int
decode_user(struct mp_reader *rd, struct record_user *u, int depth)
{
	uint64_t state;
	const char *why;

	if (mp_str(rd, u->user, RECORD_USER_MAX) < 0 ||
	    mp_str(rd, u->site, RECORD_SITE_MAX) < 0 ||
	    mp_str(rd, u->backend, RECORD_NAME_MAX) < 0 ||
	    mp_uint(rd, &state) < 0 ||
	    mp_uint(rd, &u->epoch) < 0 ||
	    mp_uint(rd, &u->seq) < 0 ||
	    mp_str(rd, u->origin, RECORD_NAME_MAX) < 0 ||
	    mp_uint(rd, &u->origin_seq) < 0 ||
	    mp_uint(rd, &u->timestamp) < 0 ||
	    mp_str(rd, u->target_site, RECORD_SITE_MAX) < 0)
		return -1;
	if (!state_valid(state))
		return mp_fail(rd, "invalid state");
	u->state = (enum user_state)state;
	u->transfer = NULL;
	u->transfer_len = 0;
	if (mp_need(rd, 1) < 0)
		return -1;
	if (*rd->p == MP_NIL) {
		rd->p++;
	} else {
		if (mp_blob(rd, 0, &u->transfer, &u->transfer_len) < 0)
			return -1;
		if (u->transfer_len == 0)
			return mp_fail(rd, "empty transfer");
		/* One level only: a transfer's own transfer is not read. */
		if (depth == 0) {
			struct record t;

			if (decode_envelope(u->transfer, u->transfer_len, &t,
			    1, &why) < 0)
				return mp_fail(rd, "transfer does not decode");
			if (t.kind != RECORD_USER ||
			    t.u.user.state != USTATE_TRANSFER)
				return mp_fail(rd, "transfer is not a TRANSFER "
				    "record");
		}
	}
	if ((why = check_user(u)) != NULL)
		return mp_fail(rd, why);
	return 0;
}

static int
decode_cert(struct mp_reader *rd, struct record_cert *c)
{
	uint64_t role;
	const char *why;

	if (mp_bin_fixed(rd, c->pk, DKEY_PK_LEN) < 0 ||
	    mp_uint(rd, &role) < 0 ||
	    mp_str(rd, c->site, RECORD_SITE_MAX) < 0 ||
	    mp_str(rd, c->name, RECORD_NAME_MAX) < 0 ||
	    mp_uint(rd, &c->issued) < 0 ||
	    mp_uint(rd, &c->expires) < 0 ||
	    mp_str(rd, c->origin, RECORD_NAME_MAX) < 0 ||
	    mp_uint(rd, &c->origin_seq) < 0)
		return -1;
	if (role < ROLE_SITE || role > ROLE_TRANSPORT)
		return mp_fail(rd, "invalid role");
	c->role = (enum cert_role)role;
	if ((why = check_cert(c)) != NULL)
		return mp_fail(rd, why);
	return 0;
}

static int
decode_revoke(struct mp_reader *rd, struct record_revoke *v)
{
	const char *why;

	if (mp_bin_fixed(rd, v->key_id, DKEY_ID_LEN) < 0 ||
	    mp_uint(rd, &v->timestamp) < 0 ||
	    mp_str(rd, v->reason, RECORD_REASON_MAX) < 0 ||
	    mp_str(rd, v->origin, RECORD_NAME_MAX) < 0 ||
	    mp_uint(rd, &v->origin_seq) < 0)
		return -1;
	if ((why = check_revoke(v)) != NULL)
		return mp_fail(rd, why);
	return 0;
}

static int
decode_envelope(const uint8_t *buf, size_t len, struct record *r, int depth,
    const char **why_r)
{
	struct mp_reader rd = { buf, buf + len, NULL };
	struct mp_reader body;
	uint64_t version, kind;
	int rc = -1;

	if (len > RECORD_MAX) {
		rd.why = "envelope over RECORD_MAX";
		goto done;
	}
	if (mp_array(&rd, ENVELOPE_FIELDS) < 0 ||
	    mp_blob(&rd, 0, &r->body, &r->body_len) < 0 ||
	    mp_bin_fixed(&rd, r->key_id, DKEY_ID_LEN) < 0 ||
	    mp_bin_fixed(&rd, r->sig, DKEY_SIG_LEN) < 0)
		goto done;
	if (rd.p != rd.end) {
		rd.why = "trailing bytes after envelope";
		goto done;
	}

	body.p = r->body;
	body.end = r->body + r->body_len;
	body.why = NULL;
	/* Read version and kind before the count is known. */
	if (mp_need(&body, 1) < 0)
		goto body_fail;
	if ((*body.p & 0xf0) != MP_FIXARRAY) {
		mp_fail(&body, "wrong type (want array)");
		goto body_fail;
	}
	{
		uint32_t n = *body.p & MP_FIXARRAY_MAX, want;

		body.p++;
		if (n < 2) {
			mp_fail(&body, "wrong element count");
			goto body_fail;
		}
		if (mp_uint(&body, &version) < 0 || mp_uint(&body, &kind) < 0)
			goto body_fail;
		if (version != RECORD_VERSION) {
			mp_fail(&body, "unknown record version");
			goto body_fail;
		}
		switch (kind) {
		case RECORD_USER:
			want = USER_FIELDS;
			break;
		case RECORD_CERT:
			want = CERT_FIELDS;
			break;
		case RECORD_REVOKE:
			want = REVOKE_FIELDS;
			break;
		default:
			mp_fail(&body, "unknown record kind");
			goto body_fail;
		}
		if (n != want) {
			mp_fail(&body, "wrong element count");
			goto body_fail;
		}
	}
	r->kind = (enum record_kind)kind;
	switch (r->kind) {
	case RECORD_USER:
		if (decode_user(&body, &r->u.user, depth) < 0)
			goto body_fail;
		break;
	case RECORD_CERT:
		if (decode_cert(&body, &r->u.cert) < 0)
			goto body_fail;
		break;
	case RECORD_REVOKE:
		if (decode_revoke(&body, &r->u.revoke) < 0)
			goto body_fail;
		break;
	}
	if (body.p != body.end) {
		mp_fail(&body, "trailing bytes after body");
		goto body_fail;
	}
	rc = 0;
	goto done;
body_fail:
	rd.why = body.why;
done:
	if (rc < 0 && why_r != NULL)
		*why_r = rd.why != NULL ? rd.why : "malformed";
	return rc;
}

int
record_decode(const uint8_t *buf, size_t len, struct record *r,
    const char **why_r)
{
	return decode_envelope(buf, len, r, 0, why_r);
}

int
record_decode_user(const uint8_t *buf, size_t len, struct record_user *u,
    const char **why_r)
{
	struct mp_reader rd = { buf, buf + len, NULL };
	struct mp_reader body;
	const uint8_t *b, *id, *sig;
	size_t blen, idlen, siglen;
	uint64_t version, kind;

	if (len > RECORD_MAX) {
		rd.why = "envelope over RECORD_MAX";
		goto fail;
	}
	if (mp_array(&rd, ENVELOPE_FIELDS) < 0 ||
	    mp_blob(&rd, 0, &b, &blen) < 0 ||
	    mp_blob(&rd, 0, &id, &idlen) < 0 ||
	    mp_blob(&rd, 0, &sig, &siglen) < 0)
		goto fail;
	if (idlen != DKEY_ID_LEN || siglen != DKEY_SIG_LEN) {
		rd.why = "binary of wrong length";
		goto fail;
	}
	if (rd.p != rd.end) {
		rd.why = "trailing bytes after envelope";
		goto fail;
	}
	body.p = b;
	body.end = b + blen;
	body.why = NULL;
	if (mp_array(&body, USER_FIELDS) < 0 ||
	    mp_uint(&body, &version) < 0 || mp_uint(&body, &kind) < 0)
		goto body_fail;
	if (version != RECORD_VERSION || kind != RECORD_USER) {
		mp_fail(&body, "not a USER record of this version");
		goto body_fail;
	}
	/* depth 1: a carried transfer is bounded, not decoded again */
	if (decode_user(&body, u, 1) < 0)
		goto body_fail;
	if (body.p != body.end) {
		mp_fail(&body, "trailing bytes after body");
		goto body_fail;
	}
	return 0;
body_fail:
	rd.why = body.why;
fail:
	if (why_r != NULL)
		*why_r = rd.why != NULL ? rd.why : "malformed";
	return -1;
}

int
record_verify(const struct record *r, const uint8_t pk[DKEY_PK_LEN])
{
	return dkey_verify(pk, RECORD_SIG_PREFIX, r->body, r->body_len,
	    r->sig);
}

/* ---- encoding -------------------------------------------------------- */

/* Envelope bytes around a body of body_len: array, bin header, key id and
 * signature with their bin headers. */
static size_t
envelope_overhead(size_t body_len)
{
	return 1 + (body_len <= UINT8_MAX ? 2 : 3) + 2 + DKEY_ID_LEN + 2 +
	    DKEY_SIG_LEN;
}

int
record_seal(const uint8_t *body, size_t body_len, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	struct mp_writer w = { out, out + outlen, 0 };
	uint8_t sig[DKEY_SIG_LEN];

	if (!k->has_secret) {
		*why_r = "signing key has no secret half";
		return -1;
	}
	if (body_len + envelope_overhead(body_len) > RECORD_MAX) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	dkey_sign(k, RECORD_SIG_PREFIX, body, body_len, sig);
	mp_put_array(&w, ENVELOPE_FIELDS);
	mp_put_blob(&w, 0, body, body_len);
	mp_put_blob(&w, 0, k->id, DKEY_ID_LEN);
	mp_put_blob(&w, 0, sig, DKEY_SIG_LEN);
	if (w.overflow) {
		*why_r = "output buffer too small";
		return -1;
	}
	return (int)(w.p - out);
}

static int
seal(const uint8_t *body, size_t body_len, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	return record_seal(body, body_len, k, out, outlen, why_r);
}

/* Bounded copies of caller strings: an unterminated or overlong field is
 * caught by the checks, not read past. */
static bool
fits(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

int
record_encode_user_body(const struct record_user *u, uint8_t *out,
    size_t outlen, const char **why_r)
{
	struct mp_writer w = { out, out + outlen, 0 };
	const char *why;

	if (!fits(u->user, sizeof(u->user)) || !fits(u->site, sizeof(u->site))
	    || !fits(u->backend, sizeof(u->backend)) ||
	    !fits(u->origin, sizeof(u->origin)) ||
	    !fits(u->target_site, sizeof(u->target_site))) {
		*why_r = "unterminated field";
		return -1;
	}
	if ((why = check_user(u)) != NULL) {
		*why_r = why;
		return -1;
	}
	if (u->transfer_len > 0) {
		struct record t;

		if (u->transfer == NULL ||
		    decode_envelope(u->transfer, u->transfer_len, &t, 1,
		    &why) < 0 || t.kind != RECORD_USER ||
		    t.u.user.state != USTATE_TRANSFER) {
			*why_r = "transfer is not a TRANSFER record";
			return -1;
		}
	}
	mp_put_array(&w, USER_FIELDS);
	mp_put_uint(&w, RECORD_VERSION);
	mp_put_uint(&w, RECORD_USER);
	mp_put_str(&w, u->user);
	mp_put_str(&w, u->site);
	mp_put_str(&w, u->backend);
	mp_put_uint(&w, u->state);
	mp_put_uint(&w, u->epoch);
	mp_put_uint(&w, u->seq);
	mp_put_str(&w, u->origin);
	mp_put_uint(&w, u->origin_seq);
	mp_put_uint(&w, u->timestamp);
	mp_put_str(&w, u->target_site);
	if (u->transfer_len > 0)
		mp_put_blob(&w, 0, u->transfer, u->transfer_len);
	else
		mp_put_nil(&w);
	if (w.overflow || (size_t)(w.p - out) +
	    envelope_overhead((size_t)(w.p - out)) > RECORD_MAX) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return (int)(w.p - out);
}

int
record_encode_user(const struct record_user *u, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	uint8_t body[RECORD_MAX];
	int n;

	if (!k->has_secret) {
		*why_r = "signing key has no secret half";
		return -1;
	}
	if ((n = record_encode_user_body(u, body, sizeof(body), why_r)) < 0)
		return -1;
	return seal(body, (size_t)n, k, out, outlen, why_r);
}

int
record_encode_cert(const struct record_cert *c, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	uint8_t body[RECORD_MAX];
	struct mp_writer w = { body, body + sizeof(body), 0 };
	const char *why;

	if (!fits(c->site, sizeof(c->site)) || !fits(c->name, sizeof(c->name))
	    || !fits(c->origin, sizeof(c->origin))) {
		*why_r = "unterminated field";
		return -1;
	}
	if ((why = check_cert(c)) != NULL) {
		*why_r = why;
		return -1;
	}
	mp_put_array(&w, CERT_FIELDS);
	mp_put_uint(&w, RECORD_VERSION);
	mp_put_uint(&w, RECORD_CERT);
	mp_put_blob(&w, 0, c->pk, DKEY_PK_LEN);
	mp_put_uint(&w, c->role);
	mp_put_str(&w, c->site);
	mp_put_str(&w, c->name);
	mp_put_uint(&w, c->issued);
	mp_put_uint(&w, c->expires);
	mp_put_str(&w, c->origin);
	mp_put_uint(&w, c->origin_seq);
	if (w.overflow) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return seal(body, (size_t)(w.p - body), k, out, outlen, why_r);
}

int
record_encode_revoke(const struct record_revoke *v, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	uint8_t body[RECORD_MAX];
	struct mp_writer w = { body, body + sizeof(body), 0 };
	const char *why;

	if (!fits(v->reason, sizeof(v->reason)) ||
	    !fits(v->origin, sizeof(v->origin))) {
		*why_r = "unterminated field";
		return -1;
	}
	if ((why = check_revoke(v)) != NULL) {
		*why_r = why;
		return -1;
	}
	mp_put_array(&w, REVOKE_FIELDS);
	mp_put_uint(&w, RECORD_VERSION);
	mp_put_uint(&w, RECORD_REVOKE);
	mp_put_blob(&w, 0, v->key_id, DKEY_ID_LEN);
	mp_put_uint(&w, v->timestamp);
	mp_put_str(&w, v->reason);
	mp_put_str(&w, v->origin);
	mp_put_uint(&w, v->origin_seq);
	if (w.overflow) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return seal(body, (size_t)(w.p - body), k, out, outlen, why_r);
}
