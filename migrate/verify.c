/* A mailbox's description for comparing a copy (verify.h). */
#include "verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "doveadm.h"
#include "mm_config.h"
#include "mm_log.h"
#include "mm_util.h"

#define VERIFY_FLAGS_MAX 64	/* flags and keywords of one message */

/* A message as fetched, for sorting before the digest. */
struct vmsg {
	char *folder_name;
	size_t folder;
	uint64_t uid;
	char *flags;		/* sorted, space-separated */
	char *guid;
};

struct verify {
	struct event_base *base;
	const struct mm_backend_conf *be;
	char user[RECORD_USER_MAX + 1];
	uint64_t timeout_ms;
	verify_done_cb done;
	void *arg;
	/* Both at once: mailbox status (name, messages, uidnext,
	 * uidvalidity per folder) and fetch (uid, flags, guid, mailbox per
	 * message). */
	struct doveadm_cmd *status, *fetch;
	struct move_folder *folders;	/* MOVE_FOLDERS_MAX */
	size_t n_folders;
	bool truncated;
	struct vmsg *msgs;
	size_t n_msgs, cap_msgs;
	char error[256];
};

static void verify_finish(struct verify *v);

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* flags, space-separated, sorted and without \Recent, into a new string. */
static char *
flags_canonical(const char *flags)
{
	char *copy = xstrdup(flags), *tok[VERIFY_FLAGS_MAX], *save = NULL, *t;
	size_t n = 0, i, len = 1;
	char *out;

	for (t = strtok_r(copy, " ", &save); t != NULL && n < VERIFY_FLAGS_MAX;
	    t = strtok_r(NULL, " ", &save))
		if (strcasecmp(t, "\\Recent") != 0)
			tok[n++] = t;
	qsort(tok, n, sizeof(*tok), cmp_str);
	for (i = 0; i < n; i++)
		len += strlen(tok[i]) + 1;
	out = xmalloc(len);
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		if (i > 0)
			strcat(out, " ");
		strcat(out, tok[i]);
	}
	free(copy);
	return out;
}

static int
cmp_folder(const void *a, const void *b)
{
	return strcmp(((const struct move_folder *)a)->name,
	    ((const struct move_folder *)b)->name);
}

/* The index of folder name in the folders, sorted by name; SIZE_MAX for
 * none. */
static size_t
folder_find(const struct verify *v, const char *name)
{
	struct move_folder key;
	const struct move_folder *f;

	if (strlen(name) > MOVE_FOLDER_NAME_MAX)
		return SIZE_MAX;
	mm_strlcpy(key.name, name, sizeof(key.name));
	f = bsearch(&key, v->folders, v->n_folders, sizeof(*v->folders),
	    cmp_folder);
	return f != NULL ? (size_t)(f - v->folders) : SIZE_MAX;
}

/* A folder's status: name, messages, uidnext, uidvalidity. */
static bool
status_row(void *arg, size_t n, const char *const *field)
{
	struct verify *v = arg;
	struct move_folder *f;

	if (v->n_folders == MOVE_FOLDERS_MAX) {
		v->truncated = true;
		return true;
	}
	if (n != 4)
		return false;
	if (strlen(field[0]) > MOVE_FOLDER_NAME_MAX) {
		snprintf(v->error, sizeof(v->error), "a folder name over %d "
		    "bytes", MOVE_FOLDER_NAME_MAX);
		return false;
	}
	f = &v->folders[v->n_folders++];
	memset(f, 0, sizeof(*f));
	mm_strlcpy(f->name, field[0], sizeof(f->name));
	f->messages = strtoull(field[1], NULL, 10);
	f->uidnext = strtoull(field[2], NULL, 10);
	f->uidvalidity = strtoull(field[3], NULL, 10);
	return true;
}

/* A message: uid, flags, guid, mailbox. */
static bool
fetch_row(void *arg, size_t n, const char *const *field)
{
	struct verify *v = arg;
	struct vmsg *m;

	if (n != 4)
		return false;
	if (v->n_msgs == v->cap_msgs) {
		v->cap_msgs = v->cap_msgs == 0 ? 1024 : v->cap_msgs * 2;
		v->msgs = xrealloc(v->msgs, v->cap_msgs * sizeof(*v->msgs));
	}
	m = &v->msgs[v->n_msgs++];
	m->folder_name = xstrdup(field[3]);
	m->folder = SIZE_MAX;
	m->uid = strtoull(field[0], NULL, 10);
	m->flags = flags_canonical(field[1]);
	m->guid = xstrdup(field[2]);
	return true;
}

static int
cmp_msg(const void *a, const void *b)
{
	const struct vmsg *x = a, *y = b;

	if (x->folder != y->folder)
		return x->folder < y->folder ? -1 : 1;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

/* Each folder's digest over its messages in UID order. */
static void
digests(struct verify *v)
{
	crypto_hash_sha256_state st;
	size_t i = 0, k;
	char num[24];

	/* A message of a folder the status did not list (created between
	 * the two commands) sorts last and counts nowhere. */
	qsort(v->folders, v->n_folders, sizeof(*v->folders), cmp_folder);
	for (i = 0; i < v->n_msgs; i++)
		v->msgs[i].folder = folder_find(v, v->msgs[i].folder_name);
	i = 0;
	qsort(v->msgs, v->n_msgs, sizeof(*v->msgs), cmp_msg);
	for (k = 0; k < v->n_folders; k++) {
		crypto_hash_sha256_init(&st);
		for (; i < v->n_msgs && v->msgs[i].folder == k; i++) {
			snprintf(num, sizeof(num), "%llu\t",
			    (unsigned long long)v->msgs[i].uid);
			crypto_hash_sha256_update(&st, (const uint8_t *)num,
			    strlen(num));
			crypto_hash_sha256_update(&st,
			    (const uint8_t *)v->msgs[i].flags,
			    strlen(v->msgs[i].flags) + 1);
			crypto_hash_sha256_update(&st,
			    (const uint8_t *)v->msgs[i].guid,
			    strlen(v->msgs[i].guid) + 1);
		}
		crypto_hash_sha256_final(&st, v->folders[k].digest);
	}
}

static void
cmd_done(struct verify *v, struct doveadm_cmd **which,
    const struct doveadm_result *r)
{
	*which = NULL;
	if (r->status != DOVEADM_OK && v->error[0] == '\0')
		snprintf(v->error, sizeof(v->error), "%s", r->error);
	if (v->status != NULL || v->fetch != NULL) {
		if (v->error[0] == '\0')
			return;		/* the other one is still running */
		doveadm_cancel(v->status);
		doveadm_cancel(v->fetch);
		v->status = v->fetch = NULL;
	}
	if (v->error[0] == '\0')
		digests(v);
	verify_finish(v);
}

static void
status_done(void *arg, const struct doveadm_result *r)
{
	struct verify *v = arg;

	cmd_done(v, &v->status, r);
}

static void
fetch_done(void *arg, const struct doveadm_result *r)
{
	struct verify *v = arg;

	cmd_done(v, &v->fetch, r);
}

static void
verify_free(struct verify *v)
{
	size_t i;

	doveadm_cancel(v->status);
	doveadm_cancel(v->fetch);
	for (i = 0; i < v->n_msgs; i++) {
		free(v->msgs[i].flags);
		free(v->msgs[i].guid);
		free(v->msgs[i].folder_name);
	}
	free(v->msgs);
	free(v->folders);
	free(v);
}

static void
verify_finish(struct verify *v)
{
	if (v->error[0] != '\0')
		v->done(v->arg, v->error, NULL, 0, false);
	else
		v->done(v->arg, NULL, v->folders, v->n_folders, v->truncated);
	verify_free(v);
}

struct verify *
verify_start(struct event_base *base, const struct mm_backend_conf *be,
    const char *user, uint64_t timeout_ms, verify_done_cb done, void *arg,
    const char **why_r)
{
	struct verify *v;
	const char *sargv[] = { "mailbox status", "-u", user,
		"messages uidnext uidvalidity", "*" };
	const char *fargv[] = { "fetch", "-u", user, "uid flags guid mailbox",
		"all" };

	if (be->doveadm_port == 0) {
		*why_r = "the back end has no doveadm server configured";
		return NULL;
	}
	v = xcalloc(1, sizeof(*v));
	v->base = base;
	v->be = be;
	mm_strlcpy(v->user, user, sizeof(v->user));
	v->timeout_ms = timeout_ms;
	v->done = done;
	v->arg = arg;
	v->folders = xcalloc(MOVE_FOLDERS_MAX, sizeof(*v->folders));
	v->status = doveadm_run(base, be->host, be->doveadm_port,
	    be->doveadm_password, v->user, sargv, MM_ARRAY_SIZE(sargv),
	    timeout_ms, status_row, status_done, v, why_r);
	if (v->status != NULL)
		v->fetch = doveadm_run(base, be->host, be->doveadm_port,
		    be->doveadm_password, v->user, fargv, MM_ARRAY_SIZE(fargv),
		    timeout_ms, fetch_row, fetch_done, v, why_r);
	if (v->status == NULL || v->fetch == NULL) {
		verify_free(v);
		return NULL;
	}
	(void)doveadm_set_row_fields(v->status, 4);
	(void)doveadm_set_row_fields(v->fetch, 4);
	return v;
}

void
verify_cancel(struct verify *v)
{
	if (v != NULL)
		verify_free(v);
}

const char *
verify_compare(const struct move_folder *a, size_t na,
    const struct move_folder *b, size_t nb, char *buf, size_t size)
{
	size_t i;

	for (i = 0; i < na && i < nb; i++) {
		if (strcmp(a[i].name, b[i].name) != 0) {
			snprintf(buf, size, "folder %s on one side, %s on the "
			    "other", a[i].name, b[i].name);
			return buf;
		}
		if (a[i].uidvalidity != b[i].uidvalidity ||
		    a[i].messages != b[i].messages ||
		    sodium_memcmp(a[i].digest, b[i].digest,
		    MOVE_DIGEST_LEN) != 0) {
			snprintf(buf, size, "folder %s: %llu messages "
			    "(uidvalidity %llu) against %llu (uidvalidity "
			    "%llu)%s", a[i].name,
			    (unsigned long long)a[i].messages,
			    (unsigned long long)a[i].uidvalidity,
			    (unsigned long long)b[i].messages,
			    (unsigned long long)b[i].uidvalidity,
			    a[i].messages == b[i].messages &&
			    a[i].uidvalidity == b[i].uidvalidity ?
			    ", UIDs or flags differ" : "");
			return buf;
		}
	}
	if (na != nb) {
		snprintf(buf, size, "%zu folders against %zu", na, nb);
		return buf;
	}
	return NULL;
}
