/* Gossip: membership, failure detection and record dissemination between
 * the nodes of all sites.
 *
 * The core is pure: no sockets, no clock, no global state. The owner feeds
 * it received messages (gossip_recv) and calls gossip_tick from one timer,
 * passing the time in; everything the core sends goes out through
 * io->send, and records come from and go to an abstract source (the
 * directory store in a node, an in-memory map in the simulator).
 *
 * Members. A member is a node name (unique in the cluster), its site,
 * its transport address and its session endpoint (where nodes of other
 * sites open cross-site sessions, "" if it takes none); the transport
 * authenticates peers and maps names to connections. State is alive, suspect or dead, with an incarnation
 * number that only the member itself raises.
 *
 * Failure detection (SWIM with Lifeguard's refinements):
 *  - every probe interval one member, in a shuffled round-robin order, gets
 *    a PING; no ACK within the probe timeout sends PING_REQ to k others,
 *    which ping it for us and answer ACK, or NACK when they got nothing;
 *  - no ACK by the end of the interval makes the member suspect. Suspicion
 *    expires into dead after a timeout that starts at max and shrinks
 *    towards min = suspicion_mult * log10(n) * probe interval as other
 *    members independently confirm it (max = suspicion_max_mult * min);
 *  - a member that hears itself suspected or declared dead refutes with a
 *    higher incarnation; the update about a member we doubt travels first
 *    on every message to it, so it learns quickly;
 *  - Local Health Multiplier (0..GOSSIP_LHM_MAX): failed probes, missed
 *    NACKs and refutations raise it, successful probes lower it; probe
 *    interval and timeout are scaled by (1 + LHM), so a slow or
 *    overloaded node accuses others less readily;
 *  - membership updates ride on every message (at most GOSSIP_PIGGYBACK_MAX)
 *    and on the gossip tick, each sent retransmit_mult * ceil(log10(n + 1))
 *    times, least sent first;
 *  - every reconnect interval a random dead member is pinged with its death
 *    certificate on board, so a healed partition or restarted node refutes
 *    and rejoins.
 *  The round-trip time of every direct probe is kept per member.
 *
 * Records (opaque signed envelopes). Each origin numbers its records
 * without gaps; the source's digest is {origin: highest seq held without a
 * gap below it}.
 *  - gossip_publish pushes a new record at once to fanout peers. A node
 *    that accepts a NEW record forwards it at once to fanout peers
 *    (infection style) and again on each of the next push_rounds gossip
 *    ticks, so a record reaches all live nodes in O(log n) hops;
 *  - anti-entropy: every sync interval a random live peer gets a SYNC with
 *    a hash of our digest; if its own differs it answers with its DIGEST,
 *    the side that lacks records sends PULL (origins most behind first) and
 *    gets RECORDS in batches of at most batch_bytes, each answer carrying
 *    the sender's highest seq for the origins asked and the last one it
 *    carries, so the puller asks for the next batch while it still checks
 *    this one, until caught up. An origin being pulled is asked of no
 *    other peer. Idle cost is one hash per interval: traffic grows with
 *    changes, not with users;
 *  - a peer whose records the source rejects reject_limit times is
 *    throttled: its records are ignored for throttle_ms.
 *
 * Wire format: each message is one msgpack array [version, type, ...]
 * (see gossip_msg_decode); every count and length is checked against a
 * GOSSIP_*_MAX below before use. */
#ifndef GOSSIP_H
#define GOSSIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GOSSIP_VERSION 3	/* 2: alive updates carry the session endpoint;
				 * 3: RECORDS say what they carry of each
				 * origin (pipelined pulls) */
/* One encoded message: a channel frame less its type byte. */
#define GOSSIP_MSG_MAX (1024 * 1024 - 64)
#define GOSSIP_NAME_MAX 64	/* node and origin names */
#define GOSSIP_SITE_MAX 32
#define GOSSIP_ADDR_MAX 96	/* transport address, "" if unknown */
#define GOSSIP_RECORD_MAX 4096	/* one envelope (RECORD_MAX) */
#define GOSSIP_UPDATES_MAX 16	/* membership updates in one message */
#define GOSSIP_PIGGYBACK_MAX 8	/* updates we put on one message */
#define GOSSIP_RECORDS_MAX 8192	/* envelopes in one message */
#define GOSSIP_ORIGINS_MAX 1024	/* entries of a digest, a pull, a reply */
#define GOSSIP_MEMBERS_MAX 8192	/* members one node keeps */
#define GOSSIP_INDIRECT_MAX 8	/* k of the indirect probe */
#define GOSSIP_PENDING_MAX 64	/* indirect probes we run for others */
#define GOSSIP_HOT_MAX 512	/* records being pushed by this node */
#define GOSSIP_CONFIRM_MAX 8	/* suspicion confirmations counted */
#define GOSSIP_LHM_MAX 8
#define GOSSIP_BATCHES_MAX 4	/* messages' records with the owner at once */
#define GOSSIP_STALL_MS 250	/* a tick this late: the node itself stalled */

enum gossip_state {
	GOSSIP_ALIVE = 0,
	GOSSIP_SUSPECT = 1,
	GOSSIP_DEAD = 2,
};

enum gossip_accept {
	GOSSIP_ACCEPT_NEW = 0,	/* stored: forward it */
	GOSSIP_ACCEPT_DUP,	/* already held */
	GOSSIP_ACCEPT_REJECT,	/* invalid: counts against the sender */
};

struct gossip_digest_entry {
	char origin[GOSSIP_NAME_MAX + 1];
	uint64_t seq;		/* highest held with no gap below */
};

/* fetch's emitter: returns 0 to get more, nonzero when the batch is full. */
typedef int (*gossip_emit_cb)(void *ctx, const uint8_t *env, size_t len);

struct gossip_member_info {
	const char *name, *site, *addr;	/* valid during the callback */
	const char *session_addr;	/* "" if none */
	enum gossip_state state;
	uint64_t incarnation;
	int64_t rtt_ms;			/* last direct probe, -1 if none */
	uint64_t last_contact_ms;	/* 0 if never heard from */
	bool self;
};

typedef void (*gossip_member_cb)(void *arg,
    const struct gossip_member_info *m);

/* The owner's side. Callbacks may not call back into the gossip instance
 * (except gossip_stats and the member queries). */
struct gossip_io {
	/* Queue len bytes (the core's buffer, copy them) for node to. */
	void (*send)(void *arg, const char *to, const uint8_t *buf, size_t len);
	/* Fill out with up to max entries; return how many. */
	size_t (*digest)(void *arg, struct gossip_digest_entry *out,
	    size_t max);
	/* Emit the envelopes of origin with seq >= from_seq in seq order,
	 * stopping at the first gap or when emit returns nonzero. The
	 * emitted bytes are copied before emit returns. */
	void (*fetch)(void *arg, const char *origin, uint64_t from_seq,
	    gossip_emit_cb emit, void *ctx);
	/* Verify and store one envelope received from node from. Used when
	 * accept_batch is NULL (a source that answers at once). */
	enum gossip_accept (*accept)(void *arg, const char *from,
	    const uint8_t *env, size_t len, uint64_t now_ms);
	/* A member appeared or changed state (may be NULL). */
	gossip_member_cb member_change;
	/* Optional: verify and store the n envelopes of one message from
	 * node from, all together (one transaction), possibly elsewhere
	 * (off the loop): the owner answers once with gossip_accept_done
	 * and token, from inside this call or later. Until then envs and
	 * lens (the core's copies) stay valid. */
	void (*accept_batch)(void *arg, const char *from,
	    const uint8_t *const *envs, const size_t *lens, size_t n,
	    uint64_t now_ms, uint64_t token);
};

struct gossip_conf {
	const char *name, *site, *addr;	/* ours; copied */
	const char *session_addr;	/* ours, NULL or "" for none; copied */
	uint64_t incarnation;		/* start value (e.g. unix time) */
	uint64_t seed;			/* random choices; nonzero */
	uint32_t probe_interval_ms;
	uint32_t probe_timeout_ms;
	uint32_t indirect_probes;	/* k, <= GOSSIP_INDIRECT_MAX */
	uint32_t suspicion_mult;
	uint32_t suspicion_max_mult;
	uint32_t suspicion_confirm;	/* K, <= GOSSIP_CONFIRM_MAX */
	uint32_t retransmit_mult;
	uint32_t gossip_interval_ms;
	uint32_t fanout;
	uint32_t push_rounds;		/* ticks a new record is re-pushed */
	uint32_t sync_interval_ms;
	uint32_t reconnect_interval_ms;
	uint32_t batch_bytes;		/* records per RECORDS answer */
	uint32_t reject_limit;
	uint32_t throttle_ms;
	bool joining;			/* has seeds to join through: behind
					 * until it has compared with a peer */
};

struct gossip_stats {
	uint64_t msgs_sent, bytes_sent, msgs_recv, bytes_recv;
	uint64_t decode_errors, unexpected;
	uint64_t records_new, records_dup, records_rejected, records_ignored;
	uint64_t pushes_sent, syncs_sent, pulls_sent, records_sent;
	uint64_t batches_dropped;	/* the owner was busy: left to
					 * anti-entropy */
	uint64_t probes, probe_failures, indirect_probes;
	uint64_t suspicions, deaths, refutations, throttles;
	uint64_t stalls;		/* ticks that came GOSSIP_STALL_MS late */
	uint32_t lhm;
	uint32_t members, alive;	/* alive counts suspects and us too */
};

struct gossip;

/* Defaults: 1 s probes, 500 ms timeout, k = 3, suspicion 4x/6x, K = 3,
 * retransmit 4, 200 ms gossip, fanout 6, 1 push round, 1 s sync,
 * 2 s reconnect, 448 KiB batches, 3 rejects, 60 s throttle. */
void gossip_conf_defaults(struct gossip_conf *c);

/* conf is copied; io and arg must outlive the instance. NULL if conf is
 * invalid (a name, site or address over its limit, a zero interval). */
struct gossip *gossip_new(const struct gossip_conf *conf,
    const struct gossip_io *io, void *arg);
void gossip_free(struct gossip *g);

/* Adds a member we know of (alive, incarnation 0) to probe and gossip
 * with; its own updates fill in the rest. site and addr may be "". A
 * member known already only gets site, when it has none yet, and this
 * node's own announcement goes out again (the peer may have restarted
 * and know this node by name only).
 * 0, or -1 if a field is invalid or the table is full. */
int gossip_add_seed(struct gossip *g, const char *name, const char *site,
    const char *addr);

/* Periodic work: probes and their timeouts, suspicion expiry, pushes,
 * anti-entropy, reconnects. Call at least every 50 ms. */
void gossip_tick(struct gossip *g, uint64_t now_ms);

/* One message received from an authenticated node. The buffer stays the
 * caller's. Returns 0, or -1 if it did not decode (counted). */
int gossip_recv(struct gossip *g, const char *from, const uint8_t *buf,
    size_t len, uint64_t now_ms);

/* A record this node just signed and stored: pushed by the next
 * gossip_flush (or gossip_tick), together with the others published since,
 * in as few messages as they fit in. The envelope is copied. 0, or -1 if
 * over GOSSIP_RECORD_MAX. */
int gossip_publish(struct gossip *g, const uint8_t *env, size_t len,
    uint64_t now_ms);
/* Pushes what was published since the last flush to fanout peers. */
void gossip_flush(struct gossip *g);
/* Pushes one record (copied) to member to alone, at once (a revocation
 * to the node it revokes, before its channel closes). */
void gossip_push_to(struct gossip *g, const char *to, const uint8_t *env,
    size_t len);

/* The owner's verdicts on a batch handed to io->accept_batch (results[i]
 * for envelope i). New records are forwarded, the sender's rejected ones
 * counted against it, and a pull goes on where the sender has more. */
void gossip_accept_done(struct gossip *g, uint64_t token,
    const enum gossip_accept *results, uint64_t now_ms);

/* Whether this node knows it lacks records: a live peer said within the
 * last GOSSIP_BEHIND_TTL_MS that it holds more of some origin than we do,
 * or we know of peers (or join through seeds) but have not compared with
 * any yet (for at most GOSSIP_STARTUP_MS after the first tick). */
#define GOSSIP_BEHIND_TTL_MS 30000
#define GOSSIP_STARTUP_MS 10000
bool gossip_behind(struct gossip *g, uint64_t now_ms);

/* Calls cb for every member, us first (for `mmctl sites`). */
void gossip_foreach_member(struct gossip *g, gossip_member_cb cb, void *arg);
/* 1 and *m_r (strings valid until the next call into g), 0 if unknown. */
int gossip_member_get(struct gossip *g, const char *name,
    struct gossip_member_info *m_r);
void gossip_stats(struct gossip *g, struct gossip_stats *s_r);
const char *gossip_state_name(enum gossip_state s);

/* ---- wire messages (exposed for the fuzzer and the tests) ----------- */

enum gossip_msg_type {
	GMSG_PING = 1,		/* [v, 1, seq, target, updates] */
	GMSG_ACK = 2,		/* [v, 2, seq, updates] */
	GMSG_PING_REQ = 3,	/* [v, 3, seq, target, updates] */
	GMSG_NACK = 4,		/* [v, 4, seq, updates] */
	GMSG_PUSH = 5,		/* [v, 5, updates, records] */
	GMSG_SYNC = 6,		/* [v, 6, hash, origins] */
	GMSG_DIGEST = 7,	/* [v, 7, reply, entries] */
	GMSG_PULL = 8,		/* [v, 8, entries (origin, from seq)] */
	GMSG_RECORDS = 9,	/* [v, 9, records, entries (origin, highest,
				 *  through)]: through is the last seq of
				 *  origin in records, 0 when none */
};

enum gossip_update_kind {
	GUPD_ALIVE = 0,		/* [0, name, incarnation, site, addr,
				 *  session addr] */
	GUPD_SUSPECT = 1,	/* [1, name, incarnation, from] */
	GUPD_DEAD = 2,		/* [2, name, incarnation, from] */
};

/* A slice of the decoded buffer; strings are not NUL-terminated. */
struct gossip_slice {
	const uint8_t *p;
	size_t len;
};

struct gossip_update {
	enum gossip_update_kind kind;
	struct gossip_slice name;
	uint64_t incarnation;
	struct gossip_slice site, addr, session_addr;	/* alive */
	struct gossip_slice from;	/* suspect, dead */
};

struct gossip_entry {
	struct gossip_slice origin;
	uint64_t seq;
	uint64_t through;		/* RECORDS only */
};

struct gossip_msg {
	enum gossip_msg_type type;
	uint64_t seq;			/* probe sequence number */
	struct gossip_slice target;	/* ping, ping-req */
	uint64_t hash;			/* sync */
	uint64_t origins;		/* sync */
	bool reply;			/* digest: answer with yours */
	size_t n_updates, n_records, n_entries;
	struct gossip_update updates[GOSSIP_UPDATES_MAX];
	struct gossip_slice records[GOSSIP_RECORDS_MAX];
	struct gossip_entry entries[GOSSIP_ORIGINS_MAX];
};

/* Decodes one message (pure: no allocation; slices point into buf).
 * Names are 1..GOSSIP_NAME_MAX bytes of printable ASCII without spaces,
 * sites likewise up to GOSSIP_SITE_MAX, addresses (transport and
 * session) up to GOSSIP_ADDR_MAX (may be empty), envelopes 1..GOSSIP_RECORD_MAX bytes. 0, or -1 with
 * *why_r a static reason. */
int gossip_msg_decode(const uint8_t *buf, size_t len, struct gossip_msg *m,
    const char **why_r);

#endif
