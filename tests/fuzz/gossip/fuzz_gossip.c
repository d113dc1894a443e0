/* Fuzz target: the input is one gossip message, as it follows the type
 * byte of a PEER_FRAME_GOSSIP frame (peers.h). When it decodes, every
 * slice must lie inside the input and every count within its limit; then
 * the message is fed to a live gossip instance (whose handlers must cope
 * with anything the decoder lets through). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gossip *g;
static uint64_t now;
static struct gossip_msg msg;

static void
f_send(void *arg, const char *to, const uint8_t *buf, size_t len)
{
	const char *why;

	(void)arg;
	(void)to;
	/* What we send must decode. */
	if (gossip_msg_decode(buf, len, &msg, &why) < 0)
		abort();
}

static size_t
f_digest(void *arg, struct gossip_digest_entry *out, size_t max)
{
	(void)arg;
	if (max < 2)
		return 0;
	strcpy(out[0].origin, "a");
	out[0].seq = 3;
	strcpy(out[1].origin, "b");
	out[1].seq = 1;
	return 2;
}

static void
f_fetch(void *arg, const char *origin, uint64_t from, gossip_emit_cb emit,
    void *ctx)
{
	static const uint8_t env[] = { 1, 2, 3 };

	(void)arg;
	if (strlen(origin) > GOSSIP_NAME_MAX)
		abort();
	for (; from <= 3; from++)
		if (emit(ctx, env, sizeof(env)) != 0)
			break;
}

static enum gossip_accept
f_accept(void *arg, const char *from, const uint8_t *env, size_t len,
    uint64_t t)
{
	(void)arg;
	(void)from;
	(void)t;
	if (len == 0 || len > GOSSIP_RECORD_MAX)
		abort();
	return (enum gossip_accept)(env[0] % 3);
}

static const struct gossip_io io = {
	.send = f_send,
	.digest = f_digest,
	.fetch = f_fetch,
	.accept = f_accept,
};

static int
inside(struct gossip_slice s, const uint8_t *buf, size_t size)
{
	return s.len <= size && s.p >= buf && (size_t)(s.p - buf) <= size - s.len;
}

static void
check(const struct gossip_msg *m, const uint8_t *data, size_t size)
{
	size_t i;

	if (m->n_updates > GOSSIP_UPDATES_MAX ||
	    m->n_records > GOSSIP_RECORDS_MAX ||
	    m->n_entries > GOSSIP_ORIGINS_MAX)
		abort();
	for (i = 0; i < m->n_updates; i++) {
		const struct gossip_update *u = &m->updates[i];

		if (!inside(u->name, data, size) || u->name.len == 0 ||
		    u->name.len > GOSSIP_NAME_MAX || u->kind > GUPD_DEAD)
			abort();
		if (u->kind == GUPD_ALIVE && (!inside(u->site, data, size) ||
		    u->site.len > GOSSIP_SITE_MAX ||
		    !inside(u->addr, data, size) ||
		    u->addr.len > GOSSIP_ADDR_MAX ||
		    !inside(u->session_addr, data, size) ||
		    u->session_addr.len > GOSSIP_ADDR_MAX))
			abort();
		if (u->kind != GUPD_ALIVE && (!inside(u->from, data, size) ||
		    u->from.len == 0))
			abort();
	}
	for (i = 0; i < m->n_records; i++)
		if (!inside(m->records[i], data, size) ||
		    m->records[i].len == 0 ||
		    m->records[i].len > GOSSIP_RECORD_MAX)
			abort();
	for (i = 0; i < m->n_entries; i++)
		if (!inside(m->entries[i].origin, data, size) ||
		    m->entries[i].origin.len == 0)
			abort();
	if ((m->type == GMSG_PING || m->type == GMSG_PING_REQ) &&
	    (!inside(m->target, data, size) || m->target.len == 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gossip_msg m;
	const char *why = NULL;

	if (g == NULL) {
		struct gossip_conf c;

		gossip_conf_defaults(&c);
		c.name = "me";
		c.site = "fra";
		g = gossip_new(&c, &io, NULL);
		if (g == NULL)
			abort();
		gossip_add_seed(g, "peer", "ams", "10.0.0.2:7946");
		gossip_add_seed(g, "x", "", "");
	}
	if (gossip_msg_decode(data, size, &m, &why) < 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	check(&m, data, size);
	now += 97;
	if (gossip_recv(g, "peer", data, size, now) < 0)
		abort();
	gossip_tick(g, now);
	return 0;
}
