/* Messages between the nodes taking part in a move (move_msg.h says the
 * format). */
#include "move_msg.h"

#include <string.h>

#include "mm_msgpack.h"

#define MSG_FIELDS 13
#define FOLDER_FIELDS 5
#define BODY_FROM_FIELDS 2
/* The top-level count is judged only after the version, so that a message
 * of another version (with other fields) is refused as such. */
#define MSG_FIELDS_READ_MAX 255

static const char *const type_names[] = {
	[MOVE_MSG_PREPARE] = "prepare",
	[MOVE_MSG_PREPARED] = "prepared",
	[MOVE_MSG_FREEZE] = "freeze",
	[MOVE_MSG_FROZEN] = "frozen",
	[MOVE_MSG_VERIFY] = "verify",
	[MOVE_MSG_VERIFIED] = "verified",
	[MOVE_MSG_COMMIT] = "commit",
	[MOVE_MSG_COMMITTED] = "committed",
	[MOVE_MSG_ABORT] = "abort",
	[MOVE_MSG_ABORTED] = "aborted",
};

static bool
type_valid(uint64_t t)
{
	return t >= MOVE_MSG_PREPARE && t <= MOVE_MSG_ABORTED;
}

const char *
move_msg_type_name(enum move_msg_type t)
{
	return type_valid((uint64_t)t) ? type_names[t] : "?";
}

static int
get_folder(struct mm_mp_reader *r, struct move_folder *f)
{
	if (mm_mp_get_array_n(r, FOLDER_FIELDS) < 0 ||
	    mm_mp_get_text(r, f->name, MOVE_FOLDER_NAME_MAX) < 0 ||
	    mm_mp_get_uint(r, &f->uidvalidity) < 0 ||
	    mm_mp_get_uint(r, &f->uidnext) < 0 ||
	    mm_mp_get_uint(r, &f->messages) < 0 ||
	    mm_mp_get_bin_fixed(r, f->digest, MOVE_DIGEST_LEN) < 0)
		return -1;
	return 0;
}

static int
get_body_from(struct mm_mp_reader *r, struct move_body_from *b)
{
	if (mm_mp_get_array_n(r, BODY_FROM_FIELDS) < 0 ||
	    mm_mp_get_text(r, b->name, MOVE_FOLDER_NAME_MAX) < 0 ||
	    mm_mp_get_uint(r, &b->uid) < 0)
		return -1;
	return 0;
}

int
move_msg_decode(const uint8_t *buf, size_t len, struct move_msg *m,
    const char **why_r)
{
	struct mm_mp_reader r;
	uint64_t type;
	uint32_t n, i;
	int rc = -1;

	*why_r = NULL;
	m->record = NULL;
	m->record_len = 0;
	m->n_folders = 0;
	m->n_body_from = 0;
	mm_mp_reader_init(&r, buf, len);
	if (len > MOVE_MSG_MAX) {
		mm_mp_fail(&r, "message too long");
		goto done;
	}
	if (mm_mp_get_versioned(&r, MOVE_MSG_VERSION, MSG_FIELDS,
	    MSG_FIELDS_READ_MAX) < 0)
		goto done;
	if (mm_mp_get_uint(&r, &type) < 0)
		goto done;
	if (!type_valid(type)) {
		mm_mp_fail(&r, "unknown message type");
		goto done;
	}
	m->type = (enum move_msg_type)type;
	if (mm_mp_get_uint(&r, &m->id) < 0 ||
	    mm_mp_get_text(&r, m->user, RECORD_USER_MAX) < 0 ||
	    mm_mp_get_text(&r, m->site, RECORD_SITE_MAX) < 0 ||
	    mm_mp_get_text(&r, m->backend, RECORD_NAME_MAX) < 0 ||
	    mm_mp_get_bool(&r, &m->ok) < 0 ||
	    mm_mp_get_text(&r, m->error, MOVE_MSG_ERROR_MAX) < 0 ||
	    mm_mp_get_bin(&r, RECORD_MAX, &m->record, &m->record_len) < 0 ||
	    mm_mp_get_uint(&r, &m->kicked) < 0)
		goto done;
	if (m->record_len == 0)
		m->record = NULL;
	if (mm_mp_get_array(&r, MOVE_FOLDERS_MAX, &n) < 0)
		goto done;
	for (i = 0; i < n; i++)
		if (get_folder(&r, &m->folders[i]) < 0)
			goto done;
	m->n_folders = n;
	if (mm_mp_get_array(&r, MOVE_FOLDERS_MAX, &n) < 0)
		goto done;
	for (i = 0; i < n; i++)
		if (get_body_from(&r, &m->body_from[i]) < 0)
			goto done;
	m->n_body_from = n;
	if (mm_mp_get_bool(&r, &m->truncated) < 0 || mm_mp_end(&r) < 0)
		goto done;
	rc = 0;
done:
	if (rc < 0) {
		*why_r = r.why != NULL ? r.why : "malformed";
		m->record = NULL;
		m->record_len = 0;
		m->n_folders = 0;
		m->n_body_from = 0;
	}
	return rc;
}

static bool
msg_valid(const struct move_msg *m)
{
	size_t i;

	if (!type_valid((uint64_t)m->type) ||
	    !mm_mp_text_ok(m->user, RECORD_USER_MAX) ||
	    !mm_mp_text_ok(m->site, RECORD_SITE_MAX) ||
	    !mm_mp_text_ok(m->backend, RECORD_NAME_MAX) ||
	    !mm_mp_text_ok(m->error, MOVE_MSG_ERROR_MAX) ||
	    m->record_len > RECORD_MAX ||
	    (m->record_len > 0 && m->record == NULL) ||
	    m->n_folders > MOVE_FOLDERS_MAX ||
	    m->n_body_from > MOVE_FOLDERS_MAX)
		return false;
	for (i = 0; i < m->n_folders; i++)
		if (!mm_mp_text_ok(m->folders[i].name, MOVE_FOLDER_NAME_MAX))
			return false;
	for (i = 0; i < m->n_body_from; i++)
		if (!mm_mp_text_ok(m->body_from[i].name, MOVE_FOLDER_NAME_MAX))
			return false;
	return true;
}

int
move_msg_encode(const struct move_msg *m, uint8_t *out, size_t size)
{
	struct mm_mp_writer w;
	size_t i;

	if (!msg_valid(m))
		return -1;
	mm_mp_writer_init(&w, out, size < MOVE_MSG_MAX ? size : MOVE_MSG_MAX);
	mm_mp_put_array(&w, MSG_FIELDS);
	mm_mp_put_uint(&w, MOVE_MSG_VERSION);
	mm_mp_put_uint(&w, (uint64_t)m->type);
	mm_mp_put_uint(&w, m->id);
	mm_mp_put_str(&w, m->user);
	mm_mp_put_str(&w, m->site);
	mm_mp_put_str(&w, m->backend);
	mm_mp_put_bool(&w, m->ok);
	mm_mp_put_str(&w, m->error);
	mm_mp_put_bin(&w, m->record, m->record_len);
	mm_mp_put_uint(&w, m->kicked);
	mm_mp_put_array(&w, (uint32_t)m->n_folders);
	for (i = 0; i < m->n_folders; i++) {
		const struct move_folder *f = &m->folders[i];

		mm_mp_put_array(&w, FOLDER_FIELDS);
		mm_mp_put_str(&w, f->name);
		mm_mp_put_uint(&w, f->uidvalidity);
		mm_mp_put_uint(&w, f->uidnext);
		mm_mp_put_uint(&w, f->messages);
		mm_mp_put_bin(&w, f->digest, MOVE_DIGEST_LEN);
	}
	mm_mp_put_array(&w, (uint32_t)m->n_body_from);
	for (i = 0; i < m->n_body_from; i++) {
		mm_mp_put_array(&w, BODY_FROM_FIELDS);
		mm_mp_put_str(&w, m->body_from[i].name);
		mm_mp_put_uint(&w, m->body_from[i].uid);
	}
	mm_mp_put_bool(&w, m->truncated);
	if (!mm_mp_writer_ok(&w))
		return -1;
	return (int)mm_mp_writer_len(&w);
}
