/* Counters per client address shared by all workers of a node (shared
 * memory created by the parent before it forks): open connections, logins
 * in flight and recent failed logins. A worker that dies leaves no stale
 * counts: its connections and logins are counted in its own column,
 * cleared when it is restarted. */
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

/* Starts a login from addr for worker w unless the address's failed
 * logins in the current window (now_ms monotonic) and its logins in flight
 * on every worker together reach fail_max: a login in flight counts as a
 * failure until it ends, so parallel attempts cannot pass the limit. Returns
 * true if admitted (then call iptable_login_end once). A full table admits. */
bool iptable_login_begin(struct iptable *t, unsigned w,
    const struct sockaddr *addr, uint64_t now_ms, uint64_t window_ms,
    uint32_t fail_max);
/* The login ended; failed adds it to the address's failures. */
void iptable_login_end(struct iptable *t, unsigned w,
    const struct sockaddr *addr, uint64_t now_ms, uint64_t window_ms,
    bool failed);
/* Counts a failed login that was never begun (refused by the limit). */
void iptable_fail_add(struct iptable *t, const struct sockaddr *addr,
    uint64_t now_ms, uint64_t window_ms);

#endif
