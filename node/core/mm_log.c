#include "mm_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "mm_util.h"

static char log_ident[64] = "mmnode";
static enum mm_log_target log_target = MM_LOG_STDERR;
static bool log_debug_on;

void
mm_log_init(const char *ident, enum mm_log_target target, bool debug)
{
	mm_strlcpy(log_ident, ident, sizeof(log_ident));
	log_target = target;
	log_debug_on = debug;
	if (target == MM_LOG_SYSLOG)
		openlog("mmnode", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
mm_log_set_ident(const char *ident)
{
	mm_strlcpy(log_ident, ident, sizeof(log_ident));
}

bool
mm_log_debug_enabled(void)
{
	return log_debug_on;
}

static void __attribute__((format(printf, 2, 0)))
vlog(int prio, const char *fmt, va_list ap, const char *suffix)
{
	char line[2048];
	int n;

	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (suffix != NULL)
		snprintf(line + strlen(line), sizeof(line) - strlen(line),
		    " error=\"%s\"", suffix);
	if (log_target == MM_LOG_SYSLOG) {
		syslog(prio, "%s", line);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ldZ %s %s\n", when,
		    ts.tv_nsec / 1000000, log_ident, line);
	}
}

#define LOG_BODY(prio, suffix) do {		\
	va_list ap;				\
	va_start(ap, fmt);			\
	vlog(prio, fmt, ap, suffix);		\
	va_end(ap);				\
} while (0)

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, NULL);
}

void
log_debug(const char *fmt, ...)
{
	if (log_debug_on)
		LOG_BODY(LOG_DEBUG, NULL);
}

void
log_warn(const char *fmt, ...)
{
	const char *err = strerror(errno);

	LOG_BODY(LOG_WARNING, err);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, NULL);
}

void
fatal(const char *fmt, ...)
{
	const char *err = strerror(errno);

	LOG_BODY(LOG_CRIT, err);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_CRIT, NULL);
	exit(1);
}

const char *
mm_log_escape(const char *s, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (outlen == 0)
		return out;
	if (s == NULL)
		s = "-";
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' ||
		    c == '=') {
			if (o + 4 >= outlen)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			if (o + 1 >= outlen)
				break;
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return out;
}
