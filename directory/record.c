/* Signed directory records, written and read with mm_msgpack.
 *
 * Only the canonical (shortest) msgpack form of each value is written and
 * accepted. The envelope around the signed body is not itself signed, so
 * without this anyone relaying a record could re-encode it into different
 * bytes and make honest nodes see an equivocation. */
#include "record.h"

#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"

#define ENVELOPE_FIELDS 3
#define USER_FIELDS 13
#define CERT_FIELDS 10
#define REVOKE_FIELDS 7

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

/* Record arrays are short: only the one-byte header is canonical here. */
static int
get_fields(struct mm_mp_reader *rd, uint32_t want)
{
	uint32_t n;

	if (mm_mp_get_fixarray(rd, &n) < 0)
		return -1;
	if (n != want)
		return mm_mp_fail(rd, "wrong element count");
	return 0;
}

/* A key id, key or signature. Unlike mm_mp_get_bin_fixed, any length but
 * want (a longer one included) is "binary of wrong length", once the bytes
 * are there. */
static int
get_bin_fixed(struct mm_mp_reader *rd, uint8_t *out, size_t want)
{
	const uint8_t *b;
	size_t len;

	if (mm_mp_get_bin(rd, SIZE_MAX, &b, &len) < 0)
		return -1;
	if (len != want)
		return mm_mp_fail(rd, "binary of wrong length");
	memcpy(out, b, len);
	return 0;
}

static int decode_envelope(const uint8_t *buf, size_t len, struct record *r,
    int depth, const char **why_r);

static int
decode_user(struct mm_mp_reader *rd, struct record_user *u, int depth)
{
	uint64_t state;
	const char *why;

	if (mm_mp_get_str(rd, u->user, RECORD_USER_MAX) < 0 ||
	    mm_mp_get_str(rd, u->site, RECORD_SITE_MAX) < 0 ||
	    mm_mp_get_str(rd, u->backend, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_uint(rd, &state) < 0 ||
	    mm_mp_get_uint(rd, &u->epoch) < 0 ||
	    mm_mp_get_uint(rd, &u->seq) < 0 ||
	    mm_mp_get_str(rd, u->origin, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_uint(rd, &u->origin_seq) < 0 ||
	    mm_mp_get_uint(rd, &u->timestamp) < 0 ||
	    mm_mp_get_str(rd, u->target_site, RECORD_SITE_MAX) < 0)
		return -1;
	if (!state_valid(state))
		return mm_mp_fail(rd, "invalid state");
	u->state = (enum user_state)state;
	u->transfer = NULL;
	u->transfer_len = 0;
	if (mm_mp_peek_nil(rd)) {
		if (mm_mp_get_nil(rd) < 0)
			return -1;
	} else {
		if (mm_mp_get_bin(rd, SIZE_MAX, &u->transfer,
		    &u->transfer_len) < 0)
			return -1;
		if (u->transfer_len == 0)
			return mm_mp_fail(rd, "empty transfer");
		/* One level only: a transfer's own transfer is not read. */
		if (depth == 0) {
			struct record t;

			if (decode_envelope(u->transfer, u->transfer_len, &t,
			    1, &why) < 0)
				return mm_mp_fail(rd,
				    "transfer does not decode");
			if (t.kind != RECORD_USER ||
			    t.u.user.state != USTATE_TRANSFER)
				return mm_mp_fail(rd,
				    "transfer is not a TRANSFER record");
		}
	}
	if ((why = check_user(u)) != NULL)
		return mm_mp_fail(rd, why);
	return 0;
}

static int
decode_cert(struct mm_mp_reader *rd, struct record_cert *c)
{
	uint64_t role;
	const char *why;

	if (get_bin_fixed(rd, c->pk, DKEY_PK_LEN) < 0 ||
	    mm_mp_get_uint(rd, &role) < 0 ||
	    mm_mp_get_str(rd, c->site, RECORD_SITE_MAX) < 0 ||
	    mm_mp_get_str(rd, c->name, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_uint(rd, &c->issued) < 0 ||
	    mm_mp_get_uint(rd, &c->expires) < 0 ||
	    mm_mp_get_str(rd, c->origin, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_uint(rd, &c->origin_seq) < 0)
		return -1;
	if (role < ROLE_SITE || role > ROLE_TRANSPORT)
		return mm_mp_fail(rd, "invalid role");
	c->role = (enum cert_role)role;
	if ((why = check_cert(c)) != NULL)
		return mm_mp_fail(rd, why);
	return 0;
}

static int
decode_revoke(struct mm_mp_reader *rd, struct record_revoke *v)
{
	const char *why;

	if (get_bin_fixed(rd, v->key_id, DKEY_ID_LEN) < 0 ||
	    mm_mp_get_uint(rd, &v->timestamp) < 0 ||
	    mm_mp_get_str(rd, v->reason, RECORD_REASON_MAX) < 0 ||
	    mm_mp_get_str(rd, v->origin, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_uint(rd, &v->origin_seq) < 0)
		return -1;
	if ((why = check_revoke(v)) != NULL)
		return mm_mp_fail(rd, why);
	return 0;
}

static int
decode_envelope(const uint8_t *buf, size_t len, struct record *r, int depth,
    const char **why_r)
{
	struct mm_mp_reader rd, body;
	uint64_t version, kind;
	int rc = -1;

	mm_mp_reader_init(&rd, buf, len);
	if (len > RECORD_MAX) {
		mm_mp_fail(&rd, "envelope over RECORD_MAX");
		goto done;
	}
	if (get_fields(&rd, ENVELOPE_FIELDS) < 0 ||
	    mm_mp_get_bin(&rd, SIZE_MAX, &r->body, &r->body_len) < 0 ||
	    get_bin_fixed(&rd, r->key_id, DKEY_ID_LEN) < 0 ||
	    get_bin_fixed(&rd, r->sig, DKEY_SIG_LEN) < 0)
		goto done;
	if (mm_mp_remaining(&rd) != 0) {
		mm_mp_fail(&rd, "trailing bytes after envelope");
		goto done;
	}

	mm_mp_reader_init(&body, r->body, r->body_len);
	/* Read version and kind before the count is known. */
	{
		uint32_t n, want;

		if (mm_mp_get_fixarray(&body, &n) < 0)
			goto body_fail;
		if (n < 2) {
			mm_mp_fail(&body, "wrong element count");
			goto body_fail;
		}
		if (mm_mp_get_uint(&body, &version) < 0 ||
		    mm_mp_get_uint(&body, &kind) < 0)
			goto body_fail;
		if (version != RECORD_VERSION) {
			mm_mp_fail(&body, "unknown record version");
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
			mm_mp_fail(&body, "unknown record kind");
			goto body_fail;
		}
		if (n != want) {
			mm_mp_fail(&body, "wrong element count");
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
	if (mm_mp_remaining(&body) != 0) {
		mm_mp_fail(&body, "trailing bytes after body");
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
	struct mm_mp_reader rd, body;
	const uint8_t *b, *id, *sig;
	size_t blen, idlen, siglen;
	uint64_t version, kind;

	mm_mp_reader_init(&rd, buf, len);
	if (len > RECORD_MAX) {
		mm_mp_fail(&rd, "envelope over RECORD_MAX");
		goto fail;
	}
	if (get_fields(&rd, ENVELOPE_FIELDS) < 0 ||
	    mm_mp_get_bin(&rd, SIZE_MAX, &b, &blen) < 0 ||
	    mm_mp_get_bin(&rd, SIZE_MAX, &id, &idlen) < 0 ||
	    mm_mp_get_bin(&rd, SIZE_MAX, &sig, &siglen) < 0)
		goto fail;
	if (idlen != DKEY_ID_LEN || siglen != DKEY_SIG_LEN) {
		mm_mp_fail(&rd, "binary of wrong length");
		goto fail;
	}
	if (mm_mp_remaining(&rd) != 0) {
		mm_mp_fail(&rd, "trailing bytes after envelope");
		goto fail;
	}
	mm_mp_reader_init(&body, b, blen);
	if (get_fields(&body, USER_FIELDS) < 0 ||
	    mm_mp_get_uint(&body, &version) < 0 ||
	    mm_mp_get_uint(&body, &kind) < 0)
		goto body_fail;
	if (version != RECORD_VERSION || kind != RECORD_USER) {
		mm_mp_fail(&body, "not a USER record of this version");
		goto body_fail;
	}
	/* depth 1: a carried transfer is bounded, not decoded again */
	if (decode_user(&body, u, 1) < 0)
		goto body_fail;
	if (mm_mp_remaining(&body) != 0) {
		mm_mp_fail(&body, "trailing bytes after body");
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
	struct mm_mp_writer w;
	uint8_t sig[DKEY_SIG_LEN];

	mm_mp_writer_init(&w, out, outlen);
	if (!k->has_secret) {
		*why_r = "signing key has no secret half";
		return -1;
	}
	if (body_len + envelope_overhead(body_len) > RECORD_MAX) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	dkey_sign(k, RECORD_SIG_PREFIX, body, body_len, sig);
	mm_mp_put_array(&w, ENVELOPE_FIELDS);
	mm_mp_put_bin(&w, body, body_len);
	mm_mp_put_bin(&w, k->id, DKEY_ID_LEN);
	mm_mp_put_bin(&w, sig, DKEY_SIG_LEN);
	if (!mm_mp_writer_ok(&w)) {
		*why_r = "output buffer too small";
		return -1;
	}
	return (int)mm_mp_writer_len(&w);
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
	struct mm_mp_writer w;
	const char *why;

	mm_mp_writer_init(&w, out, outlen);
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
	mm_mp_put_array(&w, USER_FIELDS);
	mm_mp_put_uint(&w, RECORD_VERSION);
	mm_mp_put_uint(&w, RECORD_USER);
	mm_mp_put_str(&w, u->user);
	mm_mp_put_str(&w, u->site);
	mm_mp_put_str(&w, u->backend);
	mm_mp_put_uint(&w, u->state);
	mm_mp_put_uint(&w, u->epoch);
	mm_mp_put_uint(&w, u->seq);
	mm_mp_put_str(&w, u->origin);
	mm_mp_put_uint(&w, u->origin_seq);
	mm_mp_put_uint(&w, u->timestamp);
	mm_mp_put_str(&w, u->target_site);
	if (u->transfer_len > 0)
		mm_mp_put_bin(&w, u->transfer, u->transfer_len);
	else
		mm_mp_put_nil(&w);
	if (!mm_mp_writer_ok(&w) || mm_mp_writer_len(&w) +
	    envelope_overhead(mm_mp_writer_len(&w)) > RECORD_MAX) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return (int)mm_mp_writer_len(&w);
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
	struct mm_mp_writer w;
	const char *why;

	mm_mp_writer_init(&w, body, sizeof(body));
	if (!fits(c->site, sizeof(c->site)) || !fits(c->name, sizeof(c->name))
	    || !fits(c->origin, sizeof(c->origin))) {
		*why_r = "unterminated field";
		return -1;
	}
	if ((why = check_cert(c)) != NULL) {
		*why_r = why;
		return -1;
	}
	mm_mp_put_array(&w, CERT_FIELDS);
	mm_mp_put_uint(&w, RECORD_VERSION);
	mm_mp_put_uint(&w, RECORD_CERT);
	mm_mp_put_bin(&w, c->pk, DKEY_PK_LEN);
	mm_mp_put_uint(&w, c->role);
	mm_mp_put_str(&w, c->site);
	mm_mp_put_str(&w, c->name);
	mm_mp_put_uint(&w, c->issued);
	mm_mp_put_uint(&w, c->expires);
	mm_mp_put_str(&w, c->origin);
	mm_mp_put_uint(&w, c->origin_seq);
	if (!mm_mp_writer_ok(&w)) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return seal(body, mm_mp_writer_len(&w), k, out, outlen, why_r);
}

int
record_encode_revoke(const struct record_revoke *v, const struct dkey *k,
    uint8_t *out, size_t outlen, const char **why_r)
{
	uint8_t body[RECORD_MAX];
	struct mm_mp_writer w;
	const char *why;

	mm_mp_writer_init(&w, body, sizeof(body));
	if (!fits(v->reason, sizeof(v->reason)) ||
	    !fits(v->origin, sizeof(v->origin))) {
		*why_r = "unterminated field";
		return -1;
	}
	if ((why = check_revoke(v)) != NULL) {
		*why_r = why;
		return -1;
	}
	mm_mp_put_array(&w, REVOKE_FIELDS);
	mm_mp_put_uint(&w, RECORD_VERSION);
	mm_mp_put_uint(&w, RECORD_REVOKE);
	mm_mp_put_bin(&w, v->key_id, DKEY_ID_LEN);
	mm_mp_put_uint(&w, v->timestamp);
	mm_mp_put_str(&w, v->reason);
	mm_mp_put_str(&w, v->origin);
	mm_mp_put_uint(&w, v->origin_seq);
	if (!mm_mp_writer_ok(&w)) {
		*why_r = "record over RECORD_MAX";
		return -1;
	}
	return seal(body, mm_mp_writer_len(&w), k, out, outlen, why_r);
}
