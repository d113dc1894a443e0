/* The directory agent: the one process of a node that holds the node's
 * signing key and writes the store. This is its shell: it serves mmctl
 * over the control socket (directory/ctl.h), purges old tombstones from
 * one timer, publishes the directory's metrics, and starts gossip with
 * the other nodes over the inter-node channel. The requests are
 * directory/ops.h's (the same handlers `mmctl --direct` runs), gossip is
 * directory/peers.h's, and `check` across nodes directory/check_run.h's.
 *
 * Over the socket, anyone who can connect may read; the requests that
 * change anything (ops_writes) are refused with CTL_PERM unless the peer
 * is root, in admin-group, or the user a node without `user` runs as. */
#ifndef AGENT_H
#define AGENT_H

#include <sys/types.h>

#include "dkey.h"
#include "mm_config.h"

struct mm_metrics;

/* Loads the node key (as root, before privileges are dropped), refusing
 * a missing file or one that group or others can read, with a message
 * that says how to fix it. 0, or -1 with a malloc'd *errstr_r. */
int agent_load_key(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r);

/* The agent process: serves listen_fd (a bound, listening unix socket)
 * until SIGTERM, and gossips with the other nodes on peer_fd (a bound,
 * listening TCP socket; -1: no gossip). imsg_fd is its end of the
 * socketpair to the parent, which passes frames to and from the workers
 * (mm_imsg.h; -1: none). Publishes its store's and gossip's figures into
 * m (shared with the workers; NULL: none) every second. conf and key are
 * the caller's and stay until the process ends. Does not return. */
void agent_main(const struct mm_config *conf, const struct dkey *key,
    int listen_fd, int peer_fd, int imsg_fd, struct mm_metrics *m)
    __attribute__((noreturn));

/* Binds and listens on conf->peer_listen_host:port (as root, before
 * privileges are dropped). The fd, or -1 with *errstr_r. */
int agent_bind_peer(const struct mm_config *conf, char **errstr_r);

/* Binds the control socket at conf->control_socket, mode 0660, owned by
 * uid and by conf->admin_gid when admin-group is set, else by gid (-1:
 * unchanged); refuses when a live agent answers on it.
 * Returns the listening fd, or -1 with *errstr_r. */
int agent_bind_socket(const struct mm_config *conf, uid_t uid, gid_t gid,
    char **errstr_r);
/* Closes fd (when >= 0) and removes the socket file, if it is still the
 * one agent_bind_socket bound in this process: for a node that bound it
 * and then refuses to start. */
void agent_unbind_socket(const struct mm_config *conf, int fd);

#endif
