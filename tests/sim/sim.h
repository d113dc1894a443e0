/* A deterministic simulator for the gossip core: N real gossip instances
 * in one process, a virtual clock (an event queue) and a virtual network
 * with per-message loss, latency (base + uniform jitter), partitions and
 * crashed nodes, counting the bytes each node sends and receives.
 *
 * Records are envelopes [origin, seq, filler] held in an in-memory map per
 * node; the simulator can follow one record and tell when and over how
 * many hops each node first stored it. Nodes are named "n<i>", live at
 * site "s<i mod sites>" and all start with every other node as a seed. */
#ifndef SIM_H
#define SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip.h"

struct sim_conf {
	uint32_t n;
	uint32_t sites;
	double loss;			/* probability a message is lost */
	uint32_t latency_ms, jitter_ms;	/* one way: base + [0, jitter] */
	uint32_t tick_ms;		/* each node's gossip_tick period */
	uint64_t seed;
	size_t payload;			/* filler bytes per record */
	struct gossip_conf gossip;	/* name, site, addr, seed set per node */
};

struct sim_track {
	uint32_t live, reached;		/* live nodes, live nodes holding it */
	uint64_t last_ms;		/* since tracking began, last arrival */
	uint32_t max_hops;		/* longest first-arrival path */
};

struct sim;

/* 10 nodes over 10 sites, no loss, 10 ms + up to 10 ms, 10 ms ticks,
 * 200-byte fillers, gossip defaults. */
void sim_conf_defaults(struct sim_conf *c);
struct sim *sim_new(const struct sim_conf *c);
void sim_free(struct sim *s);

uint64_t sim_now(const struct sim *s);
/* Runs the clock forward by ms. */
void sim_run(struct sim *s, uint64_t ms);
/* Runs until cond is true (checked every step_ms) or max_ms pass; true if
 * it became true. */
bool sim_run_until(struct sim *s, bool (*cond)(struct sim *, void *),
    void *arg, uint64_t max_ms, uint32_t step_ms);

void sim_set_loss(struct sim *s, double loss);
void sim_crash(struct sim *s, uint32_t i);
bool sim_crashed(const struct sim *s, uint32_t i);
/* Nodes in different groups cannot reach each other; all start in 0. */
void sim_partition(struct sim *s, uint32_t i, uint32_t group);
void sim_heal(struct sim *s);

/* Node i signs its next record; with push it also publishes it (else it
 * is left to anti-entropy). Returns the record's seq. */
uint64_t sim_author(struct sim *s, uint32_t i, bool push);
bool sim_has(const struct sim *s, uint32_t node, uint32_t origin,
    uint64_t seq);
/* Every live node holds every record authored so far. */
bool sim_records_converged(const struct sim *s);

/* Follow one record from now on (replaces the previous one). */
void sim_track(struct sim *s, uint32_t origin, uint64_t seq);
void sim_track_get(const struct sim *s, struct sim_track *t_r);

struct gossip *sim_gossip(struct sim *s, uint32_t i);
const char *sim_name(const struct sim *s, uint32_t i);
/* How observer sees subject (GOSSIP_DEAD if unknown). */
enum gossip_state sim_view(struct sim *s, uint32_t observer,
    uint32_t subject);
/* Every live node other than subject sees it in state. */
bool sim_all_see(struct sim *s, uint32_t subject, enum gossip_state state);
/* Every live node sees every other live node alive. */
bool sim_membership_healthy(struct sim *s);

uint64_t sim_bytes_sent(const struct sim *s, uint32_t i);
uint64_t sim_bytes_recv(const struct sim *s, uint32_t i);
void sim_reset_bytes(struct sim *s);
/* Times a node declared a member dead that had not crashed. */
uint64_t sim_false_deaths(const struct sim *s);
uint64_t sim_false_suspicions(const struct sim *s);

#endif
