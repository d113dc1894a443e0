/* Fuzz target: the input is an envelope. When it decodes, the decoded
 * fields must keep the invariants the rest of the node relies on. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
inside(const uint8_t *p, size_t len, const uint8_t *buf, size_t size)
{
	return p >= buf && len <= size && (size_t)(p - buf) <= size - len;
}

static void
check_user(const struct record_user *u, const uint8_t *buf, size_t size)
{
	struct record t;
	const char *why = NULL;

	if (!record_user_valid(u->user) || !record_site_valid(u->site) ||
	    strlen(u->backend) > RECORD_NAME_MAX ||
	    !record_name_valid(u->origin) ||
	    (u->target_site[0] != '\0' && !record_site_valid(u->target_site))
	    || u->state < USTATE_ACTIVE || u->state > USTATE_DELETED ||
	    u->epoch == 0)
		abort();
	if (u->transfer_len == 0) {
		if (u->transfer != NULL)
			abort();
		return;
	}
	if (!inside(u->transfer, u->transfer_len, buf, size))
		abort();
	/* The decoder promised a TRANSFER inside. */
	if (record_decode(u->transfer, u->transfer_len, &t, &why) < 0 ||
	    t.kind != RECORD_USER || t.u.user.state != USTATE_TRANSFER)
		abort();
}

/* The store's lookup decoder must agree with the full one on every USER
 * record the full one takes. */
static void
check_fast(const struct record_user *u, int fast, const struct record_user *f)
{
	if (fast != 0 || strcmp(u->user, f->user) != 0 ||
	    strcmp(u->site, f->site) != 0 ||
	    strcmp(u->backend, f->backend) != 0 ||
	    strcmp(u->origin, f->origin) != 0 ||
	    strcmp(u->target_site, f->target_site) != 0 ||
	    u->state != f->state || u->epoch != f->epoch ||
	    u->seq != f->seq || u->origin_seq != f->origin_seq ||
	    u->timestamp != f->timestamp || u->transfer != f->transfer ||
	    u->transfer_len != f->transfer_len)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record r;
	struct record_user fu;
	const char *why = NULL, *fwhy = NULL;
	int fast;

	fast = record_decode_user(data, size, &fu, &fwhy);
	if (fast < 0 && fwhy == NULL)
		abort();
	if (record_decode(data, size, &r, &why) < 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (r.kind == RECORD_USER)
		check_fast(&r.u.user, fast, &fu);
	else if (fast == 0)
		abort();
	if (size > RECORD_MAX || !inside(r.body, r.body_len, data, size))
		abort();
	switch (r.kind) {
	case RECORD_USER:
		check_user(&r.u.user, data, size);
		break;
	case RECORD_CERT:
		if (!record_site_valid(r.u.cert.site) ||
		    !record_name_valid(r.u.cert.name) ||
		    r.u.cert.role < ROLE_SITE || r.u.cert.role > ROLE_TRANSPORT)
			abort();
		break;
	case RECORD_REVOKE:
		if (strlen(r.u.revoke.reason) > RECORD_REASON_MAX ||
		    !record_name_valid(r.u.revoke.origin))
			abort();
		break;
	default:
		abort();
	}
	/* Signature check on garbage must simply fail, never crash. */
	(void)record_verify(&r, r.body_len >= DKEY_PK_LEN ? r.body :
	    (const uint8_t *)"0123456789abcdef0123456789abcdef");
	return 0;
}
