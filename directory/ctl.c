/* The control protocol codec. Bodies are written with mm_msgpack (shortest
 * forms). They are read here by a bounds-checked cursor whose typed getters
 * fail on short data, so that a hostile or truncated frame can cost no more
 * than its length; it is not mm_msgpack's reader because control peers may
 * send wider encodings than needed, which mm_msgpack refuses. */
#include "ctl.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"

/* Worst-case msgpack overhead of one array or string header. */
#define MP_HDR_MAX 5
#define MP_UINT_MAX_LEN 9

/* ---- writer ---------------------------------------------------------- */

/* Room for the header, filled in by w_finish. */
static void
w_start(struct mm_mp_writer *w)
{
	mm_mp_writer_init_grow(w, CTL_HEADER_LEN);
}

static uint8_t *
w_finish(struct mm_mp_writer *w, enum ctl_type type, size_t *len_r,
    const char **why_r)
{
	bool ok = mm_mp_writer_ok(w);
	size_t len;
	uint8_t *p = mm_mp_writer_take(w, &len);
	size_t body = len - CTL_HEADER_LEN;

	/* A growing writer fails only on a string msgpack cannot frame. */
	if (!ok || body > CTL_FRAME_MAX) {
		*why_r = "frame too large";
		free(p);
		return NULL;
	}
	memcpy(p, CTL_MAGIC, 4);
	p[4] = 0;
	p[5] = CTL_VERSION;
	p[6] = 0;
	p[7] = (uint8_t)type;
	mm_be32_put(p + 8, body);
	*len_r = len;
	return p;
}

/* ---- reader ---------------------------------------------------------- */

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	const char *why;	/* first error */
};

static int
r_fail(struct rbuf *r, const char *why)
{
	if (r->why == NULL)
		r->why = why;
	return -1;
}

static int
r_be(struct rbuf *r, size_t n, uint64_t *v_r)
{
	uint64_t v = 0;
	size_t i;

	if (r->len - r->off < n)
		return r_fail(r, "short body");
	for (i = 0; i < n; i++)
		v = (v << 8) | r->p[r->off + i];
	r->off += n;
	*v_r = v;
	return 0;
}

static int
r_byte(struct rbuf *r, uint8_t *c_r)
{
	if (r->off >= r->len)
		return r_fail(r, "short body");
	*c_r = r->p[r->off++];
	return 0;
}

/* An array header with at most max elements. */
static int
r_array(struct rbuf *r, size_t max, size_t *n_r)
{
	uint64_t n;
	uint8_t c;

	if (r_byte(r, &c) != 0)
		return -1;
	if ((c & 0xf0) == 0x90)
		n = c & 0x0f;
	else if (c == 0xdc) {
		if (r_be(r, 2, &n) != 0)
			return -1;
	} else if (c == 0xdd) {
		if (r_be(r, 4, &n) != 0)
			return -1;
	} else
		return r_fail(r, "array expected");
	if (n > max)
		return r_fail(r, "array too long");
	/* Each element takes a byte at least: a count beyond the data left
	 * is short data, found before anything is allocated for it. */
	if (n > r->len - r->off)
		return r_fail(r, "short body");
	*n_r = (size_t)n;
	return 0;
}

/* A string of at most max bytes without NUL, copied out. */
static int
r_str(struct rbuf *r, size_t max, char **s_r)
{
	uint64_t n;
	uint8_t c;

	if (r_byte(r, &c) != 0)
		return -1;
	if ((c & 0xe0) == 0xa0)
		n = c & 0x1f;
	else if (c == 0xd9) {
		if (r_be(r, 1, &n) != 0)
			return -1;
	} else if (c == 0xda) {
		if (r_be(r, 2, &n) != 0)
			return -1;
	} else if (c == 0xdb) {
		if (r_be(r, 4, &n) != 0)
			return -1;
	} else
		return r_fail(r, "string expected");
	if (n > max)
		return r_fail(r, "string too long");
	if (n > r->len - r->off)
		return r_fail(r, "short body");
	if (memchr(r->p + r->off, '\0', (size_t)n) != NULL)
		return r_fail(r, "NUL in string");
	*s_r = xstrndup((const char *)r->p + r->off, (size_t)n);
	r->off += (size_t)n;
	return 0;
}

static int
r_uint(struct rbuf *r, uint64_t *v_r)
{
	uint8_t c;

	if (r_byte(r, &c) != 0)
		return -1;
	if (c < 0x80) {
		*v_r = c;
		return 0;
	}
	switch (c) {
	case 0xcc:
		return r_be(r, 1, v_r);
	case 0xcd:
		return r_be(r, 2, v_r);
	case 0xce:
		return r_be(r, 4, v_r);
	case 0xcf:
		return r_be(r, 8, v_r);
	default:
		return r_fail(r, "unsigned integer expected");
	}
}

static int
r_end(struct rbuf *r)
{
	if (r->off != r->len)
		return r_fail(r, "trailing bytes");
	return 0;
}

/* ---- tables ---------------------------------------------------------- */

void
ctl_rows_init(struct ctl_rows *t)
{
	memset(t, 0, sizeof(*t));
}

static void
row_clear(struct ctl_row *row)
{
	size_t i;

	for (i = 0; i < row->n; i++)
		free(row->col[i]);
	free(row->col);
}

void
ctl_rows_clear(struct ctl_rows *t)
{
	size_t i;

	for (i = 0; i < t->n; i++)
		row_clear(&t->row[i]);
	free(t->row);
	ctl_rows_init(t);
}

/* Room for one more row; doubling keeps decoding many rows linear. */
static void
rows_grow(struct ctl_rows *t)
{
	if (t->n < t->cap)
		return;
	t->cap = t->cap == 0 ? 8 : t->cap * 2;
	t->row = xrealloc(t->row, t->cap * sizeof(*t->row));
}

int
ctl_rows_add(struct ctl_rows *t, size_t n, const char *const *cols)
{
	struct ctl_row *row;
	size_t i, bytes = MP_HDR_MAX;

	if (n > CTL_COLS_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		size_t len = strlen(cols[i]);

		if (len > CTL_STR_MAX)
			return -1;
		bytes += MP_HDR_MAX + len;
	}
	rows_grow(t);
	row = &t->row[t->n++];
	row->n = n;
	row->col = xcalloc(n == 0 ? 1 : n, sizeof(char *));
	for (i = 0; i < n; i++)
		row->col[i] = xstrdup(cols[i]);
	t->bytes += bytes;
	return 0;
}

size_t
ctl_row_bytes(const struct ctl_row *row)
{
	size_t i, bytes = MP_HDR_MAX;

	for (i = 0; i < row->n; i++)
		bytes += MP_HDR_MAX + strlen(row->col[i]);
	return bytes;
}

/* ---- encoding -------------------------------------------------------- */

uint8_t *
ctl_encode_request(const char *op, size_t argc, const char *const *argv,
    size_t *len_r, const char **why_r)
{
	struct mm_mp_writer w;
	size_t i;

	if (strlen(op) > CTL_OP_MAX) {
		*why_r = "op name too long";
		return NULL;
	}
	if (argc > CTL_ARGS_MAX) {
		*why_r = "too many arguments";
		return NULL;
	}
	for (i = 0; i < argc; i++) {
		if (strlen(argv[i]) > CTL_STR_MAX) {
			*why_r = "argument too long";
			return NULL;
		}
	}
	w_start(&w);
	mm_mp_put_array(&w, 2);
	mm_mp_put_str(&w, op);
	mm_mp_put_array(&w, (uint32_t)argc);
	for (i = 0; i < argc; i++)
		mm_mp_put_str(&w, argv[i]);
	return w_finish(&w, CTL_REQUEST, len_r, why_r);
}

uint8_t *
ctl_encode_response(enum ctl_type type, enum ctl_status status,
    const char *message, const struct ctl_rows *rows, size_t *len_r,
    const char **why_r)
{
	struct mm_mp_writer w;
	size_t i, j, n = rows != NULL ? rows->n : 0;

	if (type != CTL_RESPONSE && type != CTL_END) {
		*why_r = "not a response type";
		return NULL;
	}
	if (message == NULL)
		message = "";
	if (strlen(message) > CTL_MESSAGE_MAX) {
		*why_r = "message too long";
		return NULL;
	}
	if (n > CTL_ROWS_MAX) {
		*why_r = "too many rows";
		return NULL;
	}
	w_start(&w);
	mm_mp_put_array(&w, 3);
	mm_mp_put_uint(&w, (uint64_t)status);
	mm_mp_put_str(&w, message);
	mm_mp_put_array(&w, (uint32_t)n);
	for (i = 0; i < n; i++) {
		const struct ctl_row *row = &rows->row[i];

		mm_mp_put_array(&w, (uint32_t)row->n);
		for (j = 0; j < row->n; j++)
			mm_mp_put_str(&w, row->col[j]);
		if (mm_mp_writer_len(&w) - CTL_HEADER_LEN > CTL_FRAME_MAX)
			break;	/* w_finish refuses it */
	}
	return w_finish(&w, type, len_r, why_r);
}

uint8_t *
ctl_encode_progress(uint64_t done, uint64_t total, size_t *len_r)
{
	struct mm_mp_writer w;
	const char *why;

	w_start(&w);
	mm_mp_put_array(&w, 2);
	mm_mp_put_uint(&w, done);
	mm_mp_put_uint(&w, total);
	return w_finish(&w, CTL_PROGRESS, len_r, &why);
}

/* ---- decoding -------------------------------------------------------- */

int
ctl_header_decode(const uint8_t *buf, size_t len, enum ctl_type *type_r,
    uint32_t *body_len_r, const char **why_r)
{
	uint32_t n;
	unsigned version, type;

	if (len < CTL_HEADER_LEN)
		return 0;
	if (memcmp(buf, CTL_MAGIC, 4) != 0) {
		*why_r = "bad magic";
		return -1;
	}
	version = (unsigned)buf[4] << 8 | buf[5];
	type = (unsigned)buf[6] << 8 | buf[7];
	n = mm_be32_get(buf + 8);
	if (version != CTL_VERSION) {
		*why_r = "unsupported version";
		return -1;
	}
	if (type < CTL_REQUEST || type > CTL_END) {
		*why_r = "unknown frame type";
		return -1;
	}
	if (n > CTL_FRAME_MAX) {
		*why_r = "frame too large";
		return -1;
	}
	*type_r = (enum ctl_type)type;
	*body_len_r = n;
	return 1;
}

static int
decode_request(struct rbuf *r, struct ctl_msg *m)
{
	size_t n, i;

	if (r_array(r, 2, &n) != 0)
		return -1;
	if (n != 2)
		return r_fail(r, "request is not [op, args]");
	if (r_str(r, CTL_OP_MAX, &m->op) != 0 ||
	    r_array(r, CTL_ARGS_MAX, &n) != 0)
		return -1;
	m->argv = xcalloc(n + 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		if (r_str(r, CTL_STR_MAX, &m->argv[i]) != 0)
			return -1;
		m->argc++;
	}
	return 0;
}

static int
decode_response(struct rbuf *r, struct ctl_msg *m)
{
	struct ctl_rows *t = &m->rows;
	uint64_t status;
	size_t n, rows, i, j;

	if (r_array(r, 3, &n) != 0)
		return -1;
	if (n != 3)
		return r_fail(r, "response is not [status, message, rows]");
	if (r_uint(r, &status) != 0)
		return -1;
	if (status > CTL_STATUS_MAX)
		return r_fail(r, "unknown status");
	m->status = (enum ctl_status)status;
	if (r_str(r, CTL_MESSAGE_MAX, &m->message) != 0 ||
	    r_array(r, CTL_ROWS_MAX, &rows) != 0)
		return -1;
	for (i = 0; i < rows; i++) {
		struct ctl_row *row;

		if (r_array(r, CTL_COLS_MAX, &n) != 0)
			return -1;
		rows_grow(t);
		row = &t->row[t->n++];
		row->n = 0;
		row->col = xcalloc(n == 0 ? 1 : n, sizeof(char *));
		for (j = 0; j < n; j++) {
			if (r_str(r, CTL_STR_MAX, &row->col[j]) != 0)
				return -1;
			row->n++;
			t->bytes += MP_HDR_MAX + strlen(row->col[j]);
		}
		t->bytes += MP_HDR_MAX;
	}
	return 0;
}

static int
decode_progress(struct rbuf *r, struct ctl_msg *m)
{
	size_t n;

	if (r_array(r, 2, &n) != 0)
		return -1;
	if (n != 2)
		return r_fail(r, "progress is not [done, total]");
	if (r_uint(r, &m->done) != 0 || r_uint(r, &m->total) != 0)
		return -1;
	return 0;
}

struct ctl_msg *
ctl_body_decode(enum ctl_type type, const uint8_t *body, size_t len,
    const char **why_r)
{
	struct ctl_msg *m = xcalloc(1, sizeof(*m));
	struct rbuf r;
	int rc = -1;

	memset(&r, 0, sizeof(r));
	r.p = body;
	r.len = len;
	m->type = type;
	ctl_rows_init(&m->rows);
	if (len > CTL_FRAME_MAX) {
		r_fail(&r, "frame too large");
		goto done;
	}
	switch (type) {
	case CTL_REQUEST:
		rc = decode_request(&r, m);
		break;
	case CTL_RESPONSE:
	case CTL_END:
		rc = decode_response(&r, m);
		break;
	case CTL_PROGRESS:
		rc = decode_progress(&r, m);
		break;
	default:
		r_fail(&r, "unknown frame type");
		break;
	}
	if (rc == 0)
		rc = r_end(&r);
done:
	if (rc != 0) {
		*why_r = r.why != NULL ? r.why : "invalid body";
		ctl_msg_free(m);
		return NULL;
	}
	return m;
}

int
ctl_frame_decode(const uint8_t *buf, size_t len, struct ctl_msg **msg_r,
    size_t *used_r, const char **why_r)
{
	enum ctl_type type;
	uint32_t body;
	int r;

	if ((r = ctl_header_decode(buf, len, &type, &body, why_r)) != 1)
		return r;
	if (len - CTL_HEADER_LEN < body)
		return 0;
	if ((*msg_r = ctl_body_decode(type, buf + CTL_HEADER_LEN, body,
	    why_r)) == NULL)
		return -1;
	*used_r = CTL_HEADER_LEN + (size_t)body;
	return 1;
}

void
ctl_msg_free(struct ctl_msg *m)
{
	size_t i;

	if (m == NULL)
		return;
	free(m->op);
	for (i = 0; i < m->argc; i++)
		free(m->argv[i]);
	free(m->argv);
	free(m->message);
	ctl_rows_clear(&m->rows);
	free(m);
}

const char *
ctl_type_name(enum ctl_type t)
{
	switch (t) {
	case CTL_REQUEST:
		return "request";
	case CTL_RESPONSE:
		return "response";
	case CTL_PROGRESS:
		return "progress";
	case CTL_END:
		return "end";
	default:
		return "unknown";
	}
}
