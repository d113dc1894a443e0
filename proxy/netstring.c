/* Netstrings: D. J. Bernstein's "LEN:DATA," framing, the length in
 * decimal without leading zeros. */
#include "netstring.h"

#include <stdint.h>
#include <string.h>

int
netstring_parse(const char *buf, size_t len, size_t max,
    const char **data_r, size_t *data_len_r, size_t *consumed_r)
{
	uint64_t n = 0;
	size_t i;

	*data_r = NULL;
	*data_len_r = 0;
	*consumed_r = 0;

	/* The limits are checked digit by digit so that a peer sending an
	 * endless length is refused before its colon arrives. */
	for (i = 0; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (i == NETSTRING_DIGITS_MAX || (i == 1 && buf[0] == '0'))
			return -1;
		n = n * 10 + (uint64_t)(buf[i] - '0');
		if (n > max)
			return -1;
	}
	if (i == len)
		return 0;
	if (i == 0 || buf[i] != ':')
		return -1;
	i++;
	/* At most ten digits: n + 1 cannot wrap 64 bits. */
	if (len - i < n + 1)
		return 0;
	if (buf[i + n] != ',')
		return -1;
	*data_r = buf + i;
	*data_len_r = (size_t)n;
	*consumed_r = i + (size_t)n + 1;
	return 1;
}

size_t
netstring_format(char *out, size_t outlen, const void *data, size_t len)
{
	char digits[24];
	size_t nd = 0, total, v = len;

	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	if (len > outlen || outlen - len < nd + 2)
		return 0;
	total = nd + 1 + len + 1;
	for (v = 0; v < nd; v++)
		out[v] = digits[nd - 1 - v];
	out[nd] = ':';
	if (len > 0)
		memcpy(out + nd + 1, data, len);
	out[total - 1] = ',';
	return total;
}
