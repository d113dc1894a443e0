/* Logging: one line per event, "<session-id> <module> <event> key=value ...".
 * log_warn appends strerror(errno); log_warnx does not. Never pass a
 * password to any of these. */
#ifndef MM_LOG_H
#define MM_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum mm_log_target { MM_LOG_STDERR, MM_LOG_SYSLOG };

/* ident names the process in each line ("mmnode[worker1]"). */
void mm_log_init(const char *ident, enum mm_log_target target, bool debug);
void mm_log_set_ident(const char *ident);
bool mm_log_debug_enabled(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* Writes s into out (size outlen) made safe for a key=value log field:
 * control characters, spaces, quotes and backslashes become \xHH. */
const char *mm_log_escape(const char *s, char *out, size_t outlen);

#endif
