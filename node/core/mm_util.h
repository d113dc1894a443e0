/* Small helpers every module uses: allocation that aborts on failure,
 * bounded string copies, monotonic time. */
#ifndef MM_UTIL_H
#define MM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation failure aborts the process: callers never check for NULL. */
void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a new string owned by the caller. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies at most size-1 bytes and NUL-terminates; returns strlen(src). */
size_t mm_strlcpy(char *dst, const char *src, size_t size);

/* Monotonic milliseconds, for timeouts and durations. */
uint64_t mm_now_ms(void);

/* Parses a duration such as "30", "30s", "500ms", "5m", "1h" into
 * milliseconds. Returns 0, or -1 on a malformed or out-of-range value. */
int mm_parse_duration_ms(const char *s, uint64_t *ms_r);

/* Parses a size such as "8192", "64k", "20M" into bytes. 0 / -1. */
int mm_parse_size(const char *s, uint64_t *bytes_r);

/* Blocks the signals the node's processes handle (HUP, TERM, INT, CHLD).
 * Around a fork: a child inherits the parent's handlers, which would hand
 * a signal to the parent's event loop, so the child keeps them blocked
 * until its own loop handles them, then calls mm_signals_unblock. */
void mm_signals_block(void);
void mm_signals_unblock(void);

/* Overwrites memory that held a secret; not optimised away. */
void mm_wipe(void *p, size_t len);

/* Big-endian 32-bit integers in wire formats and stored keys. */
static inline void
mm_be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t
mm_be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

#endif
