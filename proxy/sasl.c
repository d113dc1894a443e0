/* SASL PLAIN (RFC 4616): "authzid NUL authcid NUL passwd" in base64. */
#include "sasl.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "mm_util.h"

/* The longest decoded message: three full fields and two NULs. */
#define SASL_RAW_MAX	(3 * SASL_FIELD_MAX + 2)
/* A bound on its base64 form, padding included. Longer input is refused
 * before any decoding work. */
#define SASL_B64_MAX	(4 * (SASL_RAW_MAX / 3) + 4)
/* What SASL_B64_MAX characters can decode to. */
#define SASL_DECODE_MAX	(3 * (SASL_B64_MAX / 4))

/* libsodium 1.0.18 maps some bytes above 0x7f to base64 digits (it reads
 * them as negative chars), so the alphabet is checked here first. */
static bool
is_base64(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/' ||
		    c == '='))
			return false;
	}
	return true;
}

/* Whether a field of len bytes is allowed and fits in outlen with its NUL. */
static bool
field_fits(size_t len, size_t outlen)
{
	return len <= SASL_FIELD_MAX && len < outlen;
}

static void
copy_field(const unsigned char *field, size_t len, char *out)
{
	memcpy(out, field, len);
	out[len] = '\0';
}

/*
 * Nothing is written to the outputs unless the whole message is good, so
 * a failure never leaves part of a password in the caller's buffers.
 */
int
sasl_plain_decode(const char *b64, size_t b64_len, char *authz,
    size_t authz_len, char *user, size_t user_len, char *pass,
    size_t pass_len)
{
	unsigned char raw[SASL_DECODE_MAX];
	const char *b64_end = NULL;
	const unsigned char *nul1, *nul2;
	size_t raw_len = 0, authz_n, user_n, pass_n;
	int rc = -1;

	if (b64 == NULL || b64_len > SASL_B64_MAX)
		goto done;
	if (!is_base64(b64, b64_len))
		goto done;
	if (sodium_base642bin(raw, sizeof(raw), b64, b64_len, NULL, &raw_len,
	    &b64_end, sodium_base64_VARIANT_ORIGINAL) != 0)
		goto done;
	/* Decoding stops quietly at the first non-base64 character. */
	if (b64_end != b64 + b64_len)
		goto done;

	if ((nul1 = memchr(raw, '\0', raw_len)) == NULL)
		goto done;
	authz_n = (size_t)(nul1 - raw);
	if ((nul2 = memchr(nul1 + 1, '\0', raw_len - authz_n - 1)) == NULL)
		goto done;
	user_n = (size_t)(nul2 - (nul1 + 1));
	pass_n = raw_len - authz_n - 1 - user_n - 1;
	if (memchr(nul2 + 1, '\0', pass_n) != NULL)
		goto done;
	if (user_n == 0 || pass_n == 0)
		goto done;
	if (!field_fits(authz_n, authz_len) || !field_fits(user_n, user_len) ||
	    !field_fits(pass_n, pass_len))
		goto done;

	copy_field(raw, authz_n, authz);
	copy_field(nul1 + 1, user_n, user);
	copy_field(nul2 + 1, pass_n, pass);
	rc = 0;
done:
	/* The decoder may have written part of the message before failing. */
	mm_wipe(raw, sizeof(raw));
	return rc;
}

/*
 * Fields longer than SASL_FIELD_MAX are refused (-1) as well: the other
 * end would refuse them. authz may be NULL for none.
 */
int
sasl_plain_encode(const char *authz, const char *user, const char *pass,
    char *out, size_t outlen)
{
	unsigned char raw[SASL_RAW_MAX];
	size_t authz_n, user_n, pass_n, raw_len, enc_len;
	int rc = -1;

	if (authz == NULL)
		authz = "";
	if (user == NULL || pass == NULL || out == NULL)
		goto done;
	authz_n = strnlen(authz, SASL_FIELD_MAX + 1);
	user_n = strnlen(user, SASL_FIELD_MAX + 1);
	pass_n = strnlen(pass, SASL_FIELD_MAX + 1);
	if (authz_n > SASL_FIELD_MAX || user_n > SASL_FIELD_MAX ||
	    pass_n > SASL_FIELD_MAX)
		goto done;

	raw_len = authz_n + 1 + user_n + 1 + pass_n;
	enc_len = sodium_base64_ENCODED_LEN(raw_len,
	    sodium_base64_VARIANT_ORIGINAL);	/* counts the NUL */
	if (enc_len > outlen)
		goto done;

	memcpy(raw, authz, authz_n);
	raw[authz_n] = '\0';
	memcpy(raw + authz_n + 1, user, user_n);
	raw[authz_n + 1 + user_n] = '\0';
	memcpy(raw + authz_n + 1 + user_n + 1, pass, pass_n);
	sodium_bin2base64(out, outlen, raw, raw_len,
	    sodium_base64_VARIANT_ORIGINAL);
	rc = (int)(enc_len - 1);
done:
	mm_wipe(raw, sizeof(raw));
	return rc;
}
