/* SASL PLAIN (RFC 4616) messages, base64 as IMAP and POP3 carry them. */
#ifndef SASL_H
#define SASL_H

#include <stddef.h>

#define SASL_FIELD_MAX 1024	/* longest authzid, authcid or password */

/* Decodes a base64 PLAIN message "authzid NUL authcid NUL passwd" into three
 * NUL-terminated strings. Returns 0, or -1 on bad base64, a wrong number
 * of fields, an empty authcid or passwd, or a field longer than its buffer.
 * Wipes its scratch copy of the password. */
int sasl_plain_decode(const char *b64, size_t b64_len, char *authz,
    size_t authz_len, char *user, size_t user_len, char *pass,
    size_t pass_len);

/* Encodes a PLAIN message in base64 (NUL-terminated) into out.
 * Returns the length, or -1 if out is too small. */
int sasl_plain_encode(const char *authz, const char *user, const char *pass,
    char *out, size_t outlen);

#endif
