/* Fuzz target: POP3 command lines as a client sends them, parsed the way
 * the proxy does (consume, skip bad lines, stop at a fatal one), plus the
 * argument split and the response classifier on the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3_parse.h"

#define FUZZ_LINE_MAX 256	/* small, so the limit is reached often */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		struct pop3_cmd cmd;
		size_t consumed, wo, wl, ro, rl;
		const char *error;
		enum pop3_parse_rc rc;

		rc = pop3_parse_line(data + pos, size - pos, FUZZ_LINE_MAX,
		    &cmd, &consumed, &error);
		if (rc == POP3_PARSE_AGAIN || (rc == POP3_PARSE_INVALID &&
		    consumed == 0))
			break;
		if (consumed == 0 || consumed > size - pos ||
		    consumed > FUZZ_LINE_MAX)
			abort();
		if (rc == POP3_PARSE_INVALID) {
			if (error == NULL)
				abort();
		} else {
			if (cmd.name_len == 0 ||
			    cmd.name_len > POP3_KEYWORD_MAX ||
			    cmd.arg_off + cmd.arg_len > consumed)
				abort();
			if (memchr(data + pos + cmd.arg_off, '\r',
			    cmd.arg_len) != NULL)
				abort();
			pop3_split_arg(data + pos, cmd.arg_off, cmd.arg_len,
			    &wo, &wl, &ro, &rl);
			if (wo + wl > cmd.arg_off + cmd.arg_len ||
			    ro + rl != cmd.arg_off + cmd.arg_len)
				abort();
		}
		(void)pop3_parse_response((const char *)data + pos,
		    consumed - 1);
		pos += consumed;
	}
	(void)pop3_parse_response((const char *)data, size);
	return 0;
}
