/* Messages between the processes of one node (mm_imsg.h says the format). */
#include "mm_imsg.h"

#include <string.h>

#include "mm_msgpack.h"
#include "mm_util.h"

int
mm_imsg_hdr_decode(const uint8_t *buf, struct mm_imsg_hdr *h,
    const char **why_r)
{
	h->len = mm_be32_get(buf);
	h->version = buf[4];
	h->type = buf[5];
	h->src = (uint16_t)(buf[6] << 8 | buf[7]);
	h->dst = (uint16_t)(buf[8] << 8 | buf[9]);
	h->id = mm_be32_get(buf + 10);
	if (h->version != MM_IMSG_VERSION) {
		*why_r = "another version";
		return -1;
	}
	if (h->len > MM_IMSG_BODY_MAX) {
		*why_r = "body too long";
		return -1;
	}
	return 0;
}

void
mm_imsg_hdr_encode(const struct mm_imsg_hdr *h, uint8_t *buf)
{
	mm_be32_put(buf, h->len);
	buf[4] = h->version;
	buf[5] = h->type;
	buf[6] = (uint8_t)(h->src >> 8);
	buf[7] = (uint8_t)h->src;
	buf[8] = (uint8_t)(h->dst >> 8);
	buf[9] = (uint8_t)h->dst;
	mm_be32_put(buf + 10, h->id);
}

struct mm_imsg_str
mm_imsg_str(const char *s)
{
	struct mm_imsg_str r = { s, s != NULL ? strlen(s) : 0 };

	return r;
}

void
mm_imsg_str_copy(const struct mm_imsg_str *s, char *out, size_t size)
{
	size_t n = s->len < size ? s->len : size - 1;

	if (n > 0)
		memcpy(out, s->p, n);
	out[n] = '\0';
}

static int
get_text(struct mm_mp_reader *r, size_t max, struct mm_imsg_str *s)
{
	if (mm_mp_get_strp(r, max, &s->p, &s->len) < 0)
		return -1;
	if (!mm_mp_printable(s->p, s->len))
		return mm_mp_fail(r, "control character in a string");
	return 0;
}

static int
get_session(struct mm_mp_reader *r, struct mm_imsg_session *s)
{
	if (mm_mp_get_array_n(r, 9) < 0 || mm_mp_get_uint(r, &s->id) < 0 ||
	    get_text(r, MM_IMSG_USER_MAX, &s->user) < 0 ||
	    get_text(r, MM_IMSG_TEXT_MAX, &s->client) < 0 ||
	    get_text(r, MM_IMSG_TEXT_MAX, &s->proto) < 0 ||
	    get_text(r, MM_IMSG_TEXT_MAX, &s->state) < 0 ||
	    get_text(r, MM_IMSG_TEXT_MAX, &s->backend) < 0 ||
	    mm_mp_get_uint(r, &s->since) < 0 ||
	    mm_mp_get_uint(r, &s->bytes_in) < 0 ||
	    mm_mp_get_uint(r, &s->bytes_out) < 0)
		return -1;
	return 0;
}

int
mm_imsg_body_decode(uint8_t type, const uint8_t *buf, size_t len,
    struct mm_imsg_body *b, const char **why_r)
{
	struct mm_mp_reader r;
	uint32_t n, i;

	*why_r = NULL;
	b->user.p = NULL;
	b->user.len = 0;
	b->last = false;
	b->n_sessions = 0;
	b->workers = 0;
	b->reason.p = NULL;
	b->reason.len = 0;
	b->kicked = 0;
	b->site.p = b->backend.p = NULL;
	b->site.len = b->backend.len = 0;
	b->ok = false;
	if (len > MM_IMSG_BODY_MAX) {
		*why_r = "body too long";
		return -1;
	}
	mm_mp_reader_init(&r, buf, len);
	switch (type) {
	case MM_IMSG_SESSIONS_REQ:
		if (mm_mp_get_array_n(&r, 1) < 0 ||
		    get_text(&r, MM_IMSG_USER_MAX, &b->user) < 0)
			goto fail;
		break;
	case MM_IMSG_SESSIONS:
		if (mm_mp_get_array_n(&r, 2) < 0 ||
		    mm_mp_get_bool(&r, &b->last) < 0 ||
		    mm_mp_get_array(&r, MM_IMSG_SESSIONS_MAX, &n) < 0)
			goto fail;
		for (i = 0; i < n; i++)
			if (get_session(&r, &b->sessions[i]) < 0)
				goto fail;
		b->n_sessions = n;
		break;
	case MM_IMSG_FANOUT:
		if (mm_mp_get_array_n(&r, 1) < 0 ||
		    mm_mp_get_uint(&r, &b->workers) < 0)
			goto fail;
		break;
	case MM_IMSG_KICK:
		if (mm_mp_get_array_n(&r, 2) < 0 ||
		    get_text(&r, MM_IMSG_USER_MAX, &b->user) < 0 ||
		    get_text(&r, MM_IMSG_TEXT_MAX, &b->reason) < 0)
			goto fail;
		if (b->user.len == 0) {
			*why_r = "no user to kick";
			return -1;
		}
		break;
	case MM_IMSG_KICKED:
		if (mm_mp_get_array_n(&r, 1) < 0 ||
		    mm_mp_get_uint(&r, &b->kicked) < 0)
			goto fail;
		break;
	case MM_IMSG_ROUTE:
		if (mm_mp_get_array_n(&r, 3) < 0 ||
		    get_text(&r, MM_IMSG_USER_MAX, &b->user) < 0 ||
		    get_text(&r, MM_IMSG_TEXT_MAX, &b->site) < 0 ||
		    get_text(&r, MM_IMSG_TEXT_MAX, &b->backend) < 0)
			goto fail;
		if (b->user.len == 0) {
			*why_r = "no user to route";
			return -1;
		}
		break;
	case MM_IMSG_ACK:
		if (mm_mp_get_array_n(&r, 1) < 0 ||
		    mm_mp_get_bool(&r, &b->ok) < 0)
			goto fail;
		break;
	default:
		*why_r = "unknown type";
		return -1;
	}
	if (mm_mp_end(&r) < 0)
		goto fail;
	return 0;
fail:
	*why_r = r.why != NULL ? r.why : "malformed";
	return -1;
}

static bool
str_ok(const struct mm_imsg_str *s, size_t max)
{
	return s->len <= max && (s->len == 0 || s->p != NULL) &&
	    (s->len == 0 || mm_mp_printable(s->p, s->len));
}

static void
put_str(struct mm_mp_writer *w, const struct mm_imsg_str *s)
{
	mm_mp_put_strn(w, s->len > 0 ? s->p : "", s->len);
}

int
mm_imsg_body_encode(uint8_t type, const struct mm_imsg_body *b,
    uint8_t *out, size_t size)
{
	struct mm_mp_writer w;
	size_t i;

	mm_mp_writer_init(&w, out, size < MM_IMSG_BODY_MAX ? size :
	    MM_IMSG_BODY_MAX);
	switch (type) {
	case MM_IMSG_SESSIONS_REQ:
		if (!str_ok(&b->user, MM_IMSG_USER_MAX))
			return -1;
		mm_mp_put_array(&w, 1);
		put_str(&w, &b->user);
		break;
	case MM_IMSG_SESSIONS:
		if (b->n_sessions > MM_IMSG_SESSIONS_MAX)
			return -1;
		mm_mp_put_array(&w, 2);
		mm_mp_put_bool(&w, b->last);
		mm_mp_put_array(&w, (uint32_t)b->n_sessions);
		for (i = 0; i < b->n_sessions; i++) {
			const struct mm_imsg_session *s = &b->sessions[i];

			if (!str_ok(&s->user, MM_IMSG_USER_MAX) ||
			    !str_ok(&s->client, MM_IMSG_TEXT_MAX) ||
			    !str_ok(&s->proto, MM_IMSG_TEXT_MAX) ||
			    !str_ok(&s->state, MM_IMSG_TEXT_MAX) ||
			    !str_ok(&s->backend, MM_IMSG_TEXT_MAX))
				return -1;
			mm_mp_put_array(&w, 9);
			mm_mp_put_uint(&w, s->id);
			put_str(&w, &s->user);
			put_str(&w, &s->client);
			put_str(&w, &s->proto);
			put_str(&w, &s->state);
			put_str(&w, &s->backend);
			mm_mp_put_uint(&w, s->since);
			mm_mp_put_uint(&w, s->bytes_in);
			mm_mp_put_uint(&w, s->bytes_out);
		}
		break;
	case MM_IMSG_FANOUT:
		mm_mp_put_array(&w, 1);
		mm_mp_put_uint(&w, b->workers);
		break;
	case MM_IMSG_KICK:
		if (b->user.len == 0 || !str_ok(&b->user, MM_IMSG_USER_MAX) ||
		    !str_ok(&b->reason, MM_IMSG_TEXT_MAX))
			return -1;
		mm_mp_put_array(&w, 2);
		put_str(&w, &b->user);
		put_str(&w, &b->reason);
		break;
	case MM_IMSG_KICKED:
		mm_mp_put_array(&w, 1);
		mm_mp_put_uint(&w, b->kicked);
		break;
	case MM_IMSG_ROUTE:
		if (b->user.len == 0 || !str_ok(&b->user, MM_IMSG_USER_MAX) ||
		    !str_ok(&b->site, MM_IMSG_TEXT_MAX) ||
		    !str_ok(&b->backend, MM_IMSG_TEXT_MAX))
			return -1;
		mm_mp_put_array(&w, 3);
		put_str(&w, &b->user);
		put_str(&w, &b->site);
		put_str(&w, &b->backend);
		break;
	case MM_IMSG_ACK:
		mm_mp_put_array(&w, 1);
		mm_mp_put_bool(&w, b->ok);
		break;
	default:
		return -1;
	}
	if (!mm_mp_writer_ok(&w))
		return -1;
	return (int)mm_mp_writer_len(&w);
}
