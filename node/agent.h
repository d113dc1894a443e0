/* The directory agent: the one process of a node that holds the node's
 * signing key and writes the store. It serves mmctl over the control
 * socket (directory/ctl.h), purges old tombstones from one timer, and
 * runs gossip with the other nodes over the inter-node channel.
 *
 * The request handlers are also what `mmctl --direct` runs when no node is
 * up, so that both paths give the same answers.
 *
 * Over the socket, anyone who can connect may read; the ops that change
 * anything (user-add, user-set, user-del, import-*, keys-accept; ops[] in
 * agent.c says which) are refused with CTL_PERM unless the peer is root,
 * in admin-group, or the user a node without `user` runs as. --direct is
 * bounded by the files' modes instead.
 *
 * Ops (args) and their answers; tables have a header row first:
 *   user-add USER BACKEND             the new record (one row)
 *   user-set USER BACKEND STATE TARGET   STATE "" = active, TARGET "" = none
 *   user-del USER
 *   user-show USER                    status 1 when unknown or deleted
 *   user-list SITE                    SITE "" = all sites; no tombstones
 *   import-users U1 B1 S1 T1 U2 ...   at most CTL_IMPORT_ROWS rows of user,
 *                                     backend, state, target site; S "" =
 *                                     active (an existing user keeps its
 *                                     state), T "" = none; one write
 *                                     transaction; rows: failures (index,
 *                                     why)
 *   import-rows U1 B1 S1 U2 ...       the same without target sites
 *   export                            this site's users: user, backend,
 *                                     state, target site
 *   verify                            faults: what, reason; message: counts
 *   check                             findings (check.h): kind, user, site,
 *                                     node, the record's fields, detail;
 *                                     with gossip every member is asked
 *                                     and the answer waits for them;
 *                                     status 0 clean, 1 a finding, 3 only
 *                                     a node not reached
 *   keys-accept HEX                   a CERT or REVOKE envelope (hex)
 *   keys-list                         certificates and revocations
 *   stats                             one row of counters
 *   sites                             gossip members, this node first:
 *                                     site, name, address, state,
 *                                     rtt_ms, last_contact_s, incarnation,
 *                                     self, session_address */
#ifndef AGENT_H
#define AGENT_H

#include <stdint.h>
#include <sys/types.h>

#include "ctl.h"
#include "dkey.h"
#include "gossip.h"
#include "mm_config.h"

struct agent;

/* Loads the node key (as root, before privileges are dropped), refusing
 * a missing file or one that group or others can read, with a message
 * that says how to fix it. 0, or -1 with a malloc'd *errstr_r. */
int agent_load_key(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r);

/* Loads the cluster root's public key from conf->root_key. 0, or -1 with
 * a malloc'd *errstr_r that says how to fix it. */
int agent_load_root_public(const struct mm_config *conf, struct dkey *key_r,
    char **errstr_r);

/* What the node checks before it forks anything (as the run user): the
 * store opens for writing and holds the root of root-key (set when
 * unset), and key has a certificate for the site that is neither revoked
 * nor expired. Opens and closes the store: nothing of it crosses a fork.
 * 0, or -1 with a malloc'd *errstr_r that says how to fix it. */
int agent_preflight(const struct mm_config *conf, const struct dkey *key,
    char **errstr_r);

/* Opens the store for writing and sets the root key when unset. key (the
 * node key; copied) signs the changes. conf must outlive the agent.
 * NULL with *errstr_r, and *status_r says why (CTL_PERM, CTL_TEMP,
 * CTL_FAILED). */
struct agent *agent_new(const struct mm_config *conf, const struct dkey *key,
    enum ctl_status *status_r, char **errstr_r);
void agent_free(struct agent *a);

/* Runs one request. *message_r (malloc'd, never NULL) and rows are the
 * caller's to free. Returns the status. */
enum ctl_status agent_exec(struct agent *a, const char *op, size_t argc,
    char *const *argv, char **message_r, struct ctl_rows *rows);

struct mm_metrics;

/* The agent process: serves listen_fd (a bound, listening unix socket)
 * until SIGTERM, and gossips with the other nodes on peer_fd (a bound,
 * listening TCP socket; -1: no gossip). Publishes its store's and
 * gossip's figures into m (shared with the workers; NULL: none) every
 * second. Does not return. */
void agent_main(const struct mm_config *conf, const struct dkey *key,
    int listen_fd, int peer_fd, struct mm_metrics *m)
    __attribute__((noreturn));

/* Binds and listens on conf->peer_listen_host:port (as root, before
 * privileges are dropped). The fd, or -1 with *errstr_r. */
int agent_bind_peer(const struct mm_config *conf, char **errstr_r);

/* What the agent does with one envelope that peer from sent by gossip:
 * the accept rule, with the record bound to its signer's name as origin.
 * Superseded records are kept in the log and count as duplicates, and so
 * does a record whose signer's certificate is not known yet; invalid
 * ones are rejected (and logged with the rule's result). now is unix
 * seconds. */
enum gossip_accept agent_gossip_accept(struct agent *a, const char *from,
    const uint8_t *env, size_t len, uint64_t now);

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

/* Certificates and revocations read from the store at path, as rows: key
 * id, role, site, name, issued, expires, state (valid, revoked, expired,
 * bad-signature). The store is read in this process, read-only, and closed
 * before return. 0, or -1 with *errstr_r. */
int agent_keys_rows(const char *path, uint64_t now, struct ctl_rows *rows,
    char **errstr_r);

/* The next origin_seq for records signed by origin, from the certificates
 * and revocations of the store at path (0 + 1 when none). */
uint64_t agent_root_next_seq(const char *path, const char *origin);

#endif
