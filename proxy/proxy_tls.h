/* TLS contexts: one server context per listener with a certificate, one
 * client context per back end that speaks TLS. Built in the parent before
 * privileges are dropped (keys are readable by root only) and inherited by
 * the workers. */
#ifndef PROXY_TLS_H
#define PROXY_TLS_H

#include <openssl/ssl.h>

#include "mm_config.h"

struct proxy_tls;

/* Loads every certificate, key and CA the config names. NULL with
 * *errstr_r (malloc'd, naming the file and the config line) on failure. */
struct proxy_tls *proxy_tls_new(const struct mm_config *conf, char **errstr_r);

void proxy_tls_free(struct proxy_tls *tls);

/* Server context of listener index i, or NULL if it offers no TLS. */
SSL_CTX *proxy_tls_server_ctx(const struct proxy_tls *tls, size_t i);

/* Client context for back end be (verification on, TLS 1.2+). Back ends
 * that are not in the config (a popmap host) share a default context that
 * trusts the system store. */
SSL_CTX *proxy_tls_client_ctx(const struct proxy_tls *tls,
    const struct mm_backend_conf *be);

/* A new SSL for a back-end connection, with SNI and host-name checking for
 * name set. NULL on failure. */
SSL *proxy_tls_client_ssl(SSL_CTX *ctx, const char *name);

#endif
