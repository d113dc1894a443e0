/* Fuzz target: the input is one check message (check.h), as it follows
 * the type byte of a PEER_FRAME_CHECK frame (peers.h). When it decodes,
 * every slice must lie inside the input and every count within its limit,
 * and encoding it again must give the same bytes (one canonical form). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct check_msg msg;
static uint8_t out[CHECK_MSG_MAX];

static void
inside(const uint8_t *data, size_t size, const uint8_t *p, size_t len)
{
	if (len == 0)
		return;
	if (p < data || p + len > data + size)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	size_t i;
	int n;

	if (check_msg_decode(data, size, &msg, &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (msg.n_origins > CHECK_ORIGINS_MAX ||
	    msg.n_backends > CHECK_BACKENDS_MAX ||
	    msg.n_paths > CHECK_PATHS_MAX || msg.n_leaves > CHECK_LEAVES_MAX ||
	    msg.n_users > CHECK_USERS_MAX || msg.n_faults > CHECK_FAULTS_MAX ||
	    msg.n_conflicts > CHECK_CONFLICTS_MAX)
		abort();
	for (i = 0; i < msg.n_conflicts; i++) {
		if (msg.conflict[i].user.len == 0 ||
		    msg.conflict[i].what.len > CHECK_TEXT_MAX)
			abort();
		inside(data, size, msg.conflict[i].user.p,
		    msg.conflict[i].user.len);
		inside(data, size, msg.conflict[i].what.p,
		    msg.conflict[i].what.len);
	}
	inside(data, size, msg.site.p, msg.site.len);
	inside(data, size, msg.node.p, msg.node.len);
	if (msg.root != NULL)
		inside(data, size, msg.root, CHECK_HASH_LEN);
	for (i = 0; i < msg.n_origins; i++)
		inside(data, size, msg.origins[i].origin.p,
		    msg.origins[i].origin.len);
	for (i = 0; i < msg.n_backends; i++)
		inside(data, size, msg.backends[i].p, msg.backends[i].len);
	for (i = 0; i < msg.n_paths; i++) {
		if (msg.paths[i] > CHECK_FANOUT)
			abort();
		if (msg.type == CHECK_BUCKETS)
			inside(data, size, msg.hashes[i],
			    CHECK_FANOUT * CHECK_HASH_LEN);
	}
	for (i = 0; i < msg.n_leaves; i++)
		if (msg.leaves[i] >= STORE_TREE_LEAVES)
			abort();
	for (i = 0; i < msg.n_users; i++) {
		inside(data, size, msg.list[i].user.p, msg.list[i].user.len);
		if (msg.list[i].user.len == 0 ||
		    msg.list[i].user.len > CHECK_USER_MAX)
			abort();
		inside(data, size, msg.list[i].env.p, msg.list[i].env.len);
		if (msg.type == CHECK_USERS)
			inside(data, size, msg.list[i].hash, CHECK_HASH_LEN);
	}
	for (i = 0; i < msg.n_faults; i++) {
		inside(data, size, msg.faults[i].user.p,
		    msg.faults[i].user.len);
		inside(data, size, msg.faults[i].what.p,
		    msg.faults[i].what.len);
		if (msg.faults[i].user.len > CHECK_USER_MAX ||
		    msg.faults[i].what.len > CHECK_TEXT_MAX)
			abort();
	}
	n = check_msg_encode(&msg, out, sizeof(out));
	if (n < 0 || (size_t)n != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
