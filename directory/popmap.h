/* Perdition-format popmap: the first source of user locations.
 *
 *   # comment
 *   alice@example.com: ms1            exact user, host or back-end name
 *   bob: 10.0.0.5:1143                exact user, host:port
 *   ^(.*)@example\.org$: ms2          POSIX extended regex, anchored by
 *   ^([a-m].*)@ex\.net$: $1.ex.net    the user; $1..$9 expand to groups
 *
 * Exact entries are matched first (case-sensitively: callers normalise the
 * name first); then regex entries in file order; the first match wins. */
#ifndef POPMAP_H
#define POPMAP_H

#include <stddef.h>

#define POPMAP_LINE_MAX 4096	/* longest accepted map line */
#define POPMAP_VALUE_MAX 512	/* longest host[:port] after $N expansion */

struct popmap;

/* Parses a whole map held in memory; fname is used in messages only.
 * Returns a map owned by the caller, or NULL with *errstr_r set to a
 * malloc'd "FNAME:LINE: reason". */
struct popmap *popmap_parse(const char *text, size_t len, const char *fname,
    char **errstr_r);

/* Reads and parses the file at path. */
struct popmap *popmap_load(const char *path, char **errstr_r);

void popmap_free(struct popmap *map);

/* Number of entries (exact and regex). */
size_t popmap_count(const struct popmap *map);

/* Looks user up. On a match writes the value (with $N expanded) into out
 * and returns 1; returns 0 when nothing matches, -1 when the expansion does
 * not fit in outlen. */
int popmap_lookup(const struct popmap *map, const char *user, char *out,
    size_t outlen);

#endif
