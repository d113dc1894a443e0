/* Bounded msgpack: shortest forms only, no allocation. */
#include "mm_msgpack.h"

#include <string.h>

#include "mm_util.h"

#define MP_FIXINT_MAX 0x7f
#define MP_FIXARRAY 0x90
#define MP_FIXARRAY_MAX 0x0f
#define MP_FIXSTR 0xa0
#define MP_FIXSTR_MAX 0x1f
#define MP_NIL 0xc0
#define MP_FALSE 0xc2
#define MP_TRUE 0xc3
#define MP_BIN8 0xc4
#define MP_BIN16 0xc5
#define MP_BIN32 0xc6
#define MP_UINT8 0xcc
#define MP_UINT16 0xcd
#define MP_UINT32 0xce
#define MP_UINT64 0xcf
#define MP_STR8 0xd9
#define MP_STR16 0xda
#define MP_STR32 0xdb
#define MP_ARRAY16 0xdc
#define MP_ARRAY32 0xdd

#define GROW_MIN 256

/* ---- writer ---------------------------------------------------------- */

void
mm_mp_writer_init(struct mm_mp_writer *w, uint8_t *buf, size_t size)
{
	w->start = w->p = buf;
	w->end = buf + size;
	w->overflow = false;
	w->grow = false;
}

void
mm_mp_writer_init_grow(struct mm_mp_writer *w, size_t skip)
{
	size_t cap = GROW_MIN;

	while (cap < skip)
		cap *= 2;
	w->start = xmalloc(cap);
	memset(w->start, 0, skip);
	w->p = w->start + skip;
	w->end = w->start + cap;
	w->overflow = false;
	w->grow = true;
}

uint8_t *
mm_mp_writer_take(struct mm_mp_writer *w, size_t *len_r)
{
	uint8_t *buf = w->start;

	*len_r = mm_mp_writer_len(w);
	w->start = w->p = w->end = NULL;
	return buf;
}

bool
mm_mp_writer_ok(const struct mm_mp_writer *w)
{
	return !w->overflow;
}

size_t
mm_mp_writer_len(const struct mm_mp_writer *w)
{
	return (size_t)(w->p - w->start);
}

/* Room for len more bytes in a growing writer; doubling keeps a long
 * frame linear. */
static void
grow(struct mm_mp_writer *w, size_t len)
{
	size_t used = (size_t)(w->p - w->start);
	size_t cap = (size_t)(w->end - w->start);

	while (cap - used < len)
		cap *= 2;
	w->start = xrealloc(w->start, cap);
	w->p = w->start + used;
	w->end = w->start + cap;
}

static void
put(struct mm_mp_writer *w, const void *data, size_t len)
{
	if (!w->overflow && w->grow && (size_t)(w->end - w->p) < len)
		grow(w, len);
	if (w->overflow || (size_t)(w->end - w->p) < len) {
		w->overflow = true;
		return;
	}
	if (len > 0)
		memcpy(w->p, data, len);
	w->p += len;
}

static void
put_be(struct mm_mp_writer *w, uint8_t type, uint64_t v, size_t n)
{
	uint8_t b[9];
	size_t i;

	b[0] = type;
	for (i = 0; i < n; i++)
		b[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	put(w, b, 1 + n);
}

void
mm_mp_put_array(struct mm_mp_writer *w, uint32_t n)
{
	if (n <= MP_FIXARRAY_MAX)
		put_be(w, (uint8_t)(MP_FIXARRAY | n), 0, 0);
	else if (n <= UINT16_MAX)
		put_be(w, MP_ARRAY16, n, 2);
	else
		put_be(w, MP_ARRAY32, n, 4);
}

void
mm_mp_put_uint(struct mm_mp_writer *w, uint64_t v)
{
	if (v <= MP_FIXINT_MAX)
		put_be(w, (uint8_t)v, 0, 0);
	else if (v <= UINT8_MAX)
		put_be(w, MP_UINT8, v, 1);
	else if (v <= UINT16_MAX)
		put_be(w, MP_UINT16, v, 2);
	else if (v <= UINT32_MAX)
		put_be(w, MP_UINT32, v, 4);
	else
		put_be(w, MP_UINT64, v, 8);
}

void
mm_mp_put_bool(struct mm_mp_writer *w, bool b)
{
	put_be(w, b ? MP_TRUE : MP_FALSE, 0, 0);
}

void
mm_mp_put_nil(struct mm_mp_writer *w)
{
	put_be(w, MP_NIL, 0, 0);
}

static void
put_blob(struct mm_mp_writer *w, bool str, const void *data, size_t len)
{
	if (str && len <= MP_FIXSTR_MAX)
		put_be(w, (uint8_t)(MP_FIXSTR | len), 0, 0);
	else if (len <= UINT8_MAX)
		put_be(w, str ? MP_STR8 : MP_BIN8, len, 1);
	else if (len <= UINT16_MAX)
		put_be(w, str ? MP_STR16 : MP_BIN16, len, 2);
	else if (len <= UINT32_MAX)
		put_be(w, str ? MP_STR32 : MP_BIN32, len, 4);
	else {
		w->overflow = true;
		return;
	}
	put(w, data, len);
}

void
mm_mp_put_str(struct mm_mp_writer *w, const char *s)
{
	put_blob(w, true, s, strlen(s));
}

void
mm_mp_put_strn(struct mm_mp_writer *w, const char *s, size_t len)
{
	put_blob(w, true, s, len);
}

void
mm_mp_put_bin(struct mm_mp_writer *w, const void *data, size_t len)
{
	put_blob(w, false, data, len);
}

/* ---- reader ---------------------------------------------------------- */

void
mm_mp_reader_init(struct mm_mp_reader *r, const uint8_t *buf, size_t len)
{
	r->p = buf;
	r->end = buf + len;
	r->why = NULL;
}

size_t
mm_mp_remaining(const struct mm_mp_reader *r)
{
	return (size_t)(r->end - r->p);
}

int
mm_mp_fail(struct mm_mp_reader *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	return -1;
}

/* n more bytes must be there; fails at once after an earlier error. */
static int
need(struct mm_mp_reader *r, size_t n)
{
	if (r->why != NULL)
		return -1;
	if ((size_t)(r->end - r->p) < n)
		return mm_mp_fail(r, "truncated");
	return 0;
}

static uint64_t
be_load(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = (v << 8) | *p++;
	return v;
}

int
mm_mp_get_array(struct mm_mp_reader *r, uint32_t max, uint32_t *n_r)
{
	uint8_t t;
	uint64_t n;
	size_t hdr;

	if (need(r, 1) < 0)
		return -1;
	t = *r->p;
	if ((t & 0xf0) == MP_FIXARRAY) {
		hdr = 1, n = t & MP_FIXARRAY_MAX;
	} else if (t == MP_ARRAY16) {
		if (need(r, 3) < 0)
			return -1;
		hdr = 3, n = be_load(r->p + 1, 2);
		if (n <= MP_FIXARRAY_MAX)
			return mm_mp_fail(r,
			    "array count not in shortest form");
	} else if (t == MP_ARRAY32) {
		if (need(r, 5) < 0)
			return -1;
		hdr = 5, n = be_load(r->p + 1, 4);
		if (n <= UINT16_MAX)
			return mm_mp_fail(r,
			    "array count not in shortest form");
	} else
		return mm_mp_fail(r, "wrong type (want array)");
	if (n > max)
		return mm_mp_fail(r, "too many array elements");
	/* Each element takes at least one byte: reject early. */
	if (n > (uint64_t)(r->end - r->p) - hdr)
		return mm_mp_fail(r, "truncated");
	r->p += hdr;
	*n_r = (uint32_t)n;
	return 0;
}

int
mm_mp_get_array_n(struct mm_mp_reader *r, uint32_t want)
{
	uint32_t n;

	if (mm_mp_get_array(r, want, &n) < 0)
		return -1;
	if (n != want)
		return mm_mp_fail(r, "wrong element count");
	return 0;
}

int
mm_mp_get_fixarray(struct mm_mp_reader *r, uint32_t *n_r)
{
	if (need(r, 1) < 0)
		return -1;
	if ((*r->p & 0xf0) != MP_FIXARRAY)
		return mm_mp_fail(r, "wrong type (want array)");
	*n_r = *r->p & MP_FIXARRAY_MAX;
	r->p++;
	return 0;
}

int
mm_mp_get_uint(struct mm_mp_reader *r, uint64_t *v_r)
{
	uint8_t t;
	size_t n;
	uint64_t min, v;

	if (need(r, 1) < 0)
		return -1;
	t = *r->p;
	if (t <= MP_FIXINT_MAX) {
		*v_r = t;
		r->p++;
		return 0;
	}
	switch (t) {
	case MP_UINT8:
		n = 1, min = 0x80;
		break;
	case MP_UINT16:
		n = 2, min = 0x100;
		break;
	case MP_UINT32:
		n = 4, min = 0x10000;
		break;
	case MP_UINT64:
		n = 8, min = 0x100000000ULL;
		break;
	default:
		return mm_mp_fail(r, "wrong type (want unsigned integer)");
	}
	if (need(r, 1 + n) < 0)
		return -1;
	v = be_load(r->p + 1, n);
	if (v < min)
		return mm_mp_fail(r, "integer not in shortest form");
	r->p += 1 + n;
	*v_r = v;
	return 0;
}

int
mm_mp_get_uint_max(struct mm_mp_reader *r, uint64_t max, uint64_t *v_r)
{
	uint64_t v;

	if (mm_mp_get_uint(r, &v) < 0)
		return -1;
	if (v > max)
		return mm_mp_fail(r, "integer out of range");
	*v_r = v;
	return 0;
}

int
mm_mp_get_bool(struct mm_mp_reader *r, bool *b_r)
{
	if (need(r, 1) < 0)
		return -1;
	if (*r->p != MP_TRUE && *r->p != MP_FALSE)
		return mm_mp_fail(r, "wrong type (want boolean)");
	*b_r = *r->p == MP_TRUE;
	r->p++;
	return 0;
}

int
mm_mp_get_nil(struct mm_mp_reader *r)
{
	if (need(r, 1) < 0)
		return -1;
	if (*r->p != MP_NIL)
		return mm_mp_fail(r, "wrong type (want nil)");
	r->p++;
	return 0;
}

bool
mm_mp_peek_nil(const struct mm_mp_reader *r)
{
	return r->why == NULL && r->p < r->end && *r->p == MP_NIL;
}

/* A str or bin header of the given family; the payload must be there. */
static int
get_blob(struct mm_mp_reader *r, bool str, size_t max, const uint8_t **data_r,
    size_t *len_r)
{
	uint8_t t;
	size_t hdr;
	uint64_t len;

	if (need(r, 1) < 0)
		return -1;
	t = *r->p;
	if (str && (t & 0xe0) == MP_FIXSTR) {
		hdr = 1, len = t & MP_FIXSTR_MAX;
	} else if (t == (str ? MP_STR8 : MP_BIN8)) {
		if (need(r, 2) < 0)
			return -1;
		hdr = 2, len = r->p[1];
		if (str && len <= MP_FIXSTR_MAX)
			return mm_mp_fail(r, "string not in shortest form");
	} else if (t == (str ? MP_STR16 : MP_BIN16)) {
		if (need(r, 3) < 0)
			return -1;
		hdr = 3, len = be_load(r->p + 1, 2);
		if (len <= UINT8_MAX)
			return mm_mp_fail(r, "length not in shortest form");
	} else if (t == (str ? MP_STR32 : MP_BIN32)) {
		if (need(r, 5) < 0)
			return -1;
		hdr = 5, len = be_load(r->p + 1, 4);
		if (len <= UINT16_MAX)
			return mm_mp_fail(r, "length not in shortest form");
	} else {
		return mm_mp_fail(r, str ? "wrong type (want string)" :
		    "wrong type (want binary)");
	}
	if (len > max)
		return mm_mp_fail(r, str ? "string too long" :
		    "binary too long");
	if (need(r, hdr + (size_t)len) < 0)
		return -1;
	*data_r = r->p + hdr;
	*len_r = (size_t)len;
	r->p += hdr + (size_t)len;
	return 0;
}

int
mm_mp_get_strp(struct mm_mp_reader *r, size_t max, const char **s_r,
    size_t *len_r)
{
	const uint8_t *s;
	size_t len;

	if (get_blob(r, true, max, &s, &len) < 0)
		return -1;
	if (len > 0 && memchr(s, '\0', len) != NULL)
		return mm_mp_fail(r, "NUL in string");
	*s_r = (const char *)s;
	*len_r = len;
	return 0;
}

int
mm_mp_get_str(struct mm_mp_reader *r, char *out, size_t max)
{
	const char *s;
	size_t len;

	if (mm_mp_get_strp(r, max, &s, &len) < 0)
		return -1;
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

int
mm_mp_get_bin(struct mm_mp_reader *r, size_t max, const uint8_t **p_r,
    size_t *len_r)
{
	return get_blob(r, false, max, p_r, len_r);
}

int
mm_mp_get_bin_fixed(struct mm_mp_reader *r, uint8_t *out, size_t want)
{
	const uint8_t *b;
	size_t len;

	if (get_blob(r, false, want, &b, &len) < 0)
		return -1;
	if (len != want)
		return mm_mp_fail(r, "binary of wrong length");
	memcpy(out, b, len);
	return 0;
}

int
mm_mp_end(struct mm_mp_reader *r)
{
	if (r->why != NULL)
		return -1;
	if (r->p != r->end)
		return mm_mp_fail(r, "trailing bytes");
	return 0;
}

bool
mm_mp_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

int
mm_mp_get_text(struct mm_mp_reader *r, char *out, size_t max)
{
	const char *s;
	size_t len;

	if (mm_mp_get_strp(r, max, &s, &len) < 0)
		return -1;
	if (!mm_mp_printable(s, len))
		return mm_mp_fail(r, "control character in a string");
	memcpy(out, s, len);
	out[len] = '\0';
	return 0;
}

bool
mm_mp_text_ok(const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1);

	return len <= max && mm_mp_printable(s, len);
}

int
mm_mp_get_versioned(struct mm_mp_reader *r, uint64_t version,
    uint32_t fields, uint32_t read_max)
{
	uint64_t v;
	uint32_t n;

	if (mm_mp_get_array(r, read_max, &n) < 0)
		return -1;
	if (n == 0)
		return mm_mp_fail(r, "wrong element count");
	if (mm_mp_get_uint(r, &v) < 0)
		return -1;
	if (v != version)
		return mm_mp_fail(r, "unknown version");
	if (n != fields)
		return mm_mp_fail(r, "wrong element count");
	return 0;
}
