/* Counters per client address shared by all workers of a node (shared
 * memory created by the parent before it forks): open connections and
 * recent failed logins. A worker that dies leaves no stale counts: its
 * connections are counted in its own column, cleared when it is restarted. */
#ifndef IPTABLE_H
#define IPTABLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define IPTABLE_SLOTS 8192	/* distinct addresses tracked at once */
#define IPTABLE_WORKERS_MAX 64

struct iptable;

/* Maps a table shared with every process forked afterwards. */
struct iptable *iptable_new(void);
void iptable_free(struct iptable *t);

/* Forgets every connection counted for worker w (it died). */
void iptable_reset_worker(struct iptable *t, unsigned w);

/* Counts a new connection from addr for worker w unless the address
 * already has per_ip_max or the node conn_max connections. Returns true if
 * admitted (then call iptable_conn_close later). A full table admits. */
bool iptable_conn_open(struct iptable *t, unsigned w,
    const struct sockaddr *addr, uint32_t per_ip_max, uint32_t conn_max);
void iptable_conn_close(struct iptable *t, unsigned w,
    const struct sockaddr *addr);

/* Failed logins from addr in the current window (now_ms monotonic). */
uint32_t iptable_fail_count(struct iptable *t, const struct sockaddr *addr,
    uint64_t now_ms, uint64_t window_ms);
void iptable_fail_add(struct iptable *t, const struct sockaddr *addr,
    uint64_t now_ms, uint64_t window_ms);

#endif
