/* Ed25519 keys of the directory: the offline cluster root key, site/node
 * keys and operator keys. Files hold one key as text:
 *   secret file: "mailmesh-secret-key v1 <base64 of the 64-byte secret>\n"
 *   public file: "mailmesh-public-key v1 <base64 of the 32-byte public>\n"
 * Secret files are written mode 0600 and refused when group or others can
 * read them. */
#ifndef DKEY_H
#define DKEY_H

#include <stddef.h>
#include <stdint.h>

#define DKEY_PK_LEN 32
#define DKEY_SK_LEN 64
#define DKEY_ID_LEN 8		/* first bytes of BLAKE2b(public key) */
#define DKEY_SIG_LEN 64
#define DKEY_ID_HEX_LEN (2 * DKEY_ID_LEN)

struct dkey {
	uint8_t pk[DKEY_PK_LEN];
	uint8_t sk[DKEY_SK_LEN];	/* all zero in a public-only key */
	uint8_t id[DKEY_ID_LEN];
	int has_secret;
};

/* Calls sodium_init (idempotent); -1 if libsodium cannot start. Call it
 * before any other function here (dkey_generate aborts without it). */
int dkey_init(void);

/* Fills k with a fresh key pair. */
void dkey_generate(struct dkey *k);

/* Computes the key id of a public key. */
void dkey_id(const uint8_t pk[DKEY_PK_LEN], uint8_t id_r[DKEY_ID_LEN]);

/* Writes the id as lower-case hex, NUL-terminated (17 bytes). */
void dkey_id_hex(const uint8_t id[DKEY_ID_LEN], char out[DKEY_ID_HEX_LEN + 1]);

/* Writes the secret file (mode 0600, created exclusively unless
 * overwrite) or the public file (0644). 0, or -1 with *errstr_r. */
int dkey_save_secret(const struct dkey *k, const char *path, int overwrite,
    char **errstr_r);
int dkey_save_public(const struct dkey *k, const char *path, char **errstr_r);

/* Loads a secret file: refused (with a message that names the file and says
 * how to fix it) when missing, unreadable, readable by group or others,
 * or malformed. */
int dkey_load_secret(const char *path, struct dkey *k_r, char **errstr_r);
/* Loads a public file (or the public half of a secret file). */
int dkey_load_public(const char *path, struct dkey *k_r, char **errstr_r);

/* Detached signature over prefix || msg, where prefix counts with its
 * terminating NUL (so no prefix is a prefix of another); NULL: none. */
void dkey_sign(const struct dkey *k, const char *prefix, const uint8_t *msg,
    size_t len, uint8_t sig_r[DKEY_SIG_LEN]);
/* 0 if sig is a valid signature by pk over prefix || msg, else -1. */
int dkey_verify(const uint8_t pk[DKEY_PK_LEN], const char *prefix,
    const uint8_t *msg, size_t len, const uint8_t sig[DKEY_SIG_LEN]);

/* Wipes the secret half. */
void dkey_clear(struct dkey *k);

#endif
