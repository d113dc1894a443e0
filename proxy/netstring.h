/* Netstrings ("LEN:DATA,", as in Postfix socketmap lookups). Pure: no I/O,
 * no allocation. */
#ifndef NETSTRING_H
#define NETSTRING_H

#include <stddef.h>

/* Ten digits hold any length we would accept and cannot overflow 64 bits. */
#define NETSTRING_DIGITS_MAX 10

/* Parses one netstring at the start of buf[0..len).
 * 1: a whole netstring; *data_r / *data_len_r are a slice of buf and
 *    *consumed_r is the netstring's full length.
 * 0: need more bytes, and nothing so far is invalid.
 * -1: invalid: no digits, a leading zero in a multi-digit length, more
 *    than NETSTRING_DIGITS_MAX digits, a non-digit before ':', a length
 *    above max, or no ',' after the data.
 * The length is checked against max as soon as its digits are read,
 * before the data arrives, so a caller can bound its buffer by max. */
int netstring_parse(const char *buf, size_t len, size_t max,
    const char **data_r, size_t *data_len_r, size_t *consumed_r);

/* Formats "LEN:DATA," into out (outlen bytes, not NUL-terminated).
 * Returns the length written, or 0 if it does not fit. data may be NULL
 * when len is 0. */
size_t netstring_format(char *out, size_t outlen, const void *data,
    size_t len);

#endif
