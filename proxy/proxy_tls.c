#include "proxy_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

#include "mm_log.h"
#include "mm_util.h"

struct proxy_tls {
	SSL_CTX **server;	/* per listener, NULL where no TLS */
	size_t n_server;
	SSL_CTX **client;	/* per back end, NULL where plaintext */
	size_t n_client;
	SSL_CTX *client_default;
	const struct mm_config *conf;
};

static char *
ssl_error(void)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (e == 0)
		return xstrdup("unknown TLS error");
	ERR_error_string_n(e, buf, sizeof(buf));
	return xstrdup(buf);
}

static SSL_CTX *
ctx_common(const SSL_METHOD *method)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Idle sessions hold no read/write buffers. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
	    SSL_OP_NO_RENEGOTIATION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* A peer that closes without close_notify has closed: IMAP, POP3
	 * and SMTP frame their own data, so nothing can be cut unseen, and
	 * many clients (and back ends) close that way. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	return ctx;
}

static SSL_CTX *
server_ctx_new(const struct mm_config *conf,
    const struct mm_listener_conf *lc, char **errstr_r)
{
	SSL_CTX *ctx = ctx_common(TLS_server_method());
	char *e;

	if (ctx == NULL) {
		e = ssl_error();
		*errstr_r = xasprintf("%s:%d: TLS context: %s", conf->path,
		    lc->line, e);
		free(e);
		return NULL;
	}
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (SSL_CTX_use_certificate_chain_file(ctx, lc->cert_file) != 1) {
		e = ssl_error();
		*errstr_r = xasprintf("%s:%d: cannot load certificate %s: %s",
		    conf->path, lc->line, lc->cert_file, e);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, lc->key_file,
	    SSL_FILETYPE_PEM) != 1) {
		e = ssl_error();
		*errstr_r = xasprintf("%s:%d: cannot load key %s: %s",
		    conf->path, lc->line, lc->key_file, e);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		e = ssl_error();
		*errstr_r = xasprintf("%s:%d: key %s does not match "
		    "certificate %s: %s", conf->path, lc->line, lc->key_file,
		    lc->cert_file, e);
		goto fail;
	}
	return ctx;
fail:
	free(e);
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *
client_ctx_new(const struct mm_config *conf, const struct mm_backend_conf *be,
    char **errstr_r)
{
	SSL_CTX *ctx = ctx_common(TLS_client_method());
	char *e;

	if (ctx == NULL) {
		e = ssl_error();
		*errstr_r = xasprintf("TLS client context: %s", e);
		free(e);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (be != NULL && be->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, be->ca_file,
		    NULL) != 1) {
			e = ssl_error();
			*errstr_r = xasprintf("%s:%d: cannot load CA file %s: "
			    "%s", conf->path, be->line, be->ca_file, e);
			free(e);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ERR_clear_error();
	}
	return ctx;
}

struct proxy_tls *
proxy_tls_new(const struct mm_config *conf, char **errstr_r)
{
	struct proxy_tls *tls = xcalloc(1, sizeof(*tls));
	size_t i;

	tls->conf = conf;
	tls->n_server = conf->n_listeners;
	tls->server = xcalloc(conf->n_listeners + 1, sizeof(SSL_CTX *));
	for (i = 0; i < conf->n_listeners; i++) {
		const struct mm_listener_conf *lc = &conf->listeners[i];

		if (lc->cert_file == NULL)
			continue;
		tls->server[i] = server_ctx_new(conf, lc, errstr_r);
		if (tls->server[i] == NULL)
			goto fail;
	}
	tls->n_client = conf->n_backends;
	tls->client = xcalloc(conf->n_backends + 1, sizeof(SSL_CTX *));
	for (i = 0; i < conf->n_backends; i++) {
		const struct mm_backend_conf *be = &conf->backends[i];

		if (be->tls == MM_TLS_NONE)
			continue;
		tls->client[i] = client_ctx_new(conf, be, errstr_r);
		if (tls->client[i] == NULL)
			goto fail;
	}
	tls->client_default = client_ctx_new(conf, NULL, errstr_r);
	if (tls->client_default == NULL)
		goto fail;
	return tls;
fail:
	proxy_tls_free(tls);
	return NULL;
}

void
proxy_tls_free(struct proxy_tls *tls)
{
	size_t i;

	if (tls == NULL)
		return;
	for (i = 0; i < tls->n_server; i++)
		SSL_CTX_free(tls->server[i]);
	for (i = 0; i < tls->n_client; i++)
		SSL_CTX_free(tls->client[i]);
	SSL_CTX_free(tls->client_default);
	free(tls->server);
	free(tls->client);
	free(tls);
}

SSL_CTX *
proxy_tls_server_ctx(const struct proxy_tls *tls, size_t i)
{
	return i < tls->n_server ? tls->server[i] : NULL;
}

SSL_CTX *
proxy_tls_client_ctx(const struct proxy_tls *tls,
    const struct mm_backend_conf *be)
{
	size_t i;

	for (i = 0; i < tls->n_client; i++)
		if (&tls->conf->backends[i] == be && tls->client[i] != NULL)
			return tls->client[i];
	return tls->client_default;
}

static bool
is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1;
}

SSL *
proxy_tls_client_ssl(SSL_CTX *ctx, const char *name)
{
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	if (name != NULL && is_ip_literal(name)) {
		/* An address is checked against the IP SANs; no SNI. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else if (name != NULL) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set1_host(ssl, name) != 1) {
			SSL_free(ssl);
			return NULL;
		}
		SSL_set_tlsext_host_name(ssl, name);
	}
	return ssl;
}
