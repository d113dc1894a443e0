#include "mm_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
oom(size_t size)
{
	fprintf(stderr, "mmnode: out of memory allocating %zu bytes\n", size);
	abort();
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		oom(size);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *
xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		oom(size);
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = xmalloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return s;
}

size_t
mm_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

uint64_t
mm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Parses digits then an optional unit from units[]; mult[] gives the factor. */
static int
parse_scaled(const char *s, const char *const units[], const uint64_t mult[],
    size_t n_units, uint64_t *val_r)
{
	uint64_t v = 0;
	const char *p = s;
	size_t i;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	for (i = 0; i < n_units; i++) {
		if (strcmp(p, units[i]) == 0) {
			if (mult[i] != 0 && v > UINT64_MAX / mult[i])
				return -1;
			*val_r = v * mult[i];
			return 0;
		}
	}
	return -1;
}

int
mm_parse_duration_ms(const char *s, uint64_t *ms_r)
{
	static const char *const units[] = { "", "s", "ms", "m", "h" };
	static const uint64_t mult[] = { 1000, 1000, 1, 60000, 3600000 };

	return parse_scaled(s, units, mult, MM_ARRAY_SIZE(units), ms_r);
}

int
mm_parse_size(const char *s, uint64_t *bytes_r)
{
	static const char *const units[] = { "", "k", "K", "m", "M", "g", "G" };
	static const uint64_t mult[] = { 1, 1024, 1024, 1 << 20, 1 << 20,
		1 << 30, 1 << 30 };

	return parse_scaled(s, units, mult, MM_ARRAY_SIZE(units), bytes_r);
}

void
mm_wipe(void *p, size_t len)
{
	volatile unsigned char *v = p;

	while (len-- > 0)
		*v++ = 0;
}

static void
handled_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGCHLD);
}

void
mm_signals_block(void)
{
	sigset_t set;

	handled_signals(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

void
mm_signals_unblock(void)
{
	sigset_t set;

	handled_signals(&set);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}
