/* A small bounded msgpack writer and reader.
 *
 * Only the subset the node's wire formats use: unsigned integers, booleans,
 * nil, str, bin and arrays. The writer always emits the shortest form of a
 * value; the reader accepts only that form (a relay must not be able to
 * re-encode a value into other bytes) and rejects truncated data, a wrong
 * type, a length over the caller's limit and trailing bytes (mm_mp_end).
 *
 * Neither side allocates, except a writer set up by mm_mp_writer_init_grow.
 * A fixed writer never writes past its buffer: an overflow is sticky and
 * reported by mm_mp_writer_ok. The reader's first error is sticky too: once
 * a getter fails, every later getter fails and why names the first cause
 * (a static string). */
#ifndef MM_MSGPACK_H
#define MM_MSGPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mm_mp_writer {
	uint8_t *start, *p, *end;
	bool overflow;
	bool grow;	/* the buffer is the writer's, enlarged as needed */
};

/* buf (size bytes) is the caller's and must outlive the writer. */
void mm_mp_writer_init(struct mm_mp_writer *w, uint8_t *buf, size_t size);
/* A writer on a heap buffer it enlarges itself (allocation failure
 * aborts), so it overflows only on a value msgpack cannot frame. The first
 * skip bytes are left for the caller (a frame header) and count in
 * mm_mp_writer_len. The buffer must be taken with mm_mp_writer_take. */
void mm_mp_writer_init_grow(struct mm_mp_writer *w, size_t skip);
/* The buffer of a growing writer, now the caller's to free(); its length
 * (skip included) in *len_r. The writer is not to be used again. */
uint8_t *mm_mp_writer_take(struct mm_mp_writer *w, size_t *len_r);
bool mm_mp_writer_ok(const struct mm_mp_writer *w);
size_t mm_mp_writer_len(const struct mm_mp_writer *w);

void mm_mp_put_array(struct mm_mp_writer *w, uint32_t n);
void mm_mp_put_uint(struct mm_mp_writer *w, uint64_t v);
void mm_mp_put_bool(struct mm_mp_writer *w, bool b);
void mm_mp_put_nil(struct mm_mp_writer *w);
void mm_mp_put_str(struct mm_mp_writer *w, const char *s);
void mm_mp_put_strn(struct mm_mp_writer *w, const char *s, size_t len);
void mm_mp_put_bin(struct mm_mp_writer *w, const void *data, size_t len);

struct mm_mp_reader {
	const uint8_t *p, *end;
	const char *why;	/* first error, NULL while all went well */
};

/* buf (len bytes) is the caller's; slices returned point into it. */
void mm_mp_reader_init(struct mm_mp_reader *r, const uint8_t *buf,
    size_t len);
size_t mm_mp_remaining(const struct mm_mp_reader *r);
/* Records why (a static string) unless an earlier error is there; -1.
 * For checks a caller makes on what it read. */
int mm_mp_fail(struct mm_mp_reader *r, const char *why);

/* An array of at most max elements; its count in *n_r. */
int mm_mp_get_array(struct mm_mp_reader *r, uint32_t max, uint32_t *n_r);
/* An array of exactly want elements. */
int mm_mp_get_array_n(struct mm_mp_reader *r, uint32_t want);
/* An array header in its one-byte form only (at most 15 elements; any
 * wider header is "wrong type (want array)"), its count in *n_r. The count
 * is not checked against the data left: a caller that decides on it first
 * reports its own reason. */
int mm_mp_get_fixarray(struct mm_mp_reader *r, uint32_t *n_r);
int mm_mp_get_uint(struct mm_mp_reader *r, uint64_t *v_r);
/* An unsigned integer not above max. */
int mm_mp_get_uint_max(struct mm_mp_reader *r, uint64_t max, uint64_t *v_r);
int mm_mp_get_bool(struct mm_mp_reader *r, bool *b_r);
int mm_mp_get_nil(struct mm_mp_reader *r);
/* true if the next value is nil (consumes nothing). */
bool mm_mp_peek_nil(const struct mm_mp_reader *r);
/* A string of at most max bytes without NULs, copied into out (max + 1
 * bytes) and NUL-terminated. */
int mm_mp_get_str(struct mm_mp_reader *r, char *out, size_t max);
/* The same as a slice into the buffer (not NUL-terminated). */
int mm_mp_get_strp(struct mm_mp_reader *r, size_t max, const char **s_r,
    size_t *len_r);
/* A bin of at most max bytes, as a slice into the buffer. */
int mm_mp_get_bin(struct mm_mp_reader *r, size_t max, const uint8_t **p_r,
    size_t *len_r);
/* A bin of exactly want bytes, copied into out. */
int mm_mp_get_bin_fixed(struct mm_mp_reader *r, uint8_t *out, size_t want);
/* 0 if the whole buffer was consumed, -1 ("trailing bytes") otherwise. */
int mm_mp_end(struct mm_mp_reader *r);

/* The head of a versioned format: an array of fields elements whose
 * first is the version. The version is checked before the count (at
 * most read_max elements, so that another version's count does not
 * hide its version): "unknown version", then "wrong element count".
 * 0 or -1 (sticky). */
int mm_mp_get_versioned(struct mm_mp_reader *r, uint64_t version,
    uint32_t fields, uint32_t read_max);

/* Whether s (len bytes) has no control character (below 0x20, or DEL):
 * text a process may log or show an operator. */
bool mm_mp_printable(const char *s, size_t len);
/* A str of at most max bytes and no control character, copied into out
 * (max + 1 bytes) and NUL-terminated. 0 or -1 (sticky, as the getters). */
int mm_mp_get_text(struct mm_mp_reader *r, char *out, size_t max);
/* For the writer's side: s is NUL-terminated within max bytes (s holds at
 * least max + 1) and printable. */
bool mm_mp_text_ok(const char *s, size_t max);

#endif
