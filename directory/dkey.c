/* Ed25519 keys of the directory and their text files. */
#include "dkey.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "mm_util.h"

#define DKEY_SECRET_TAG "mailmesh-secret-key v1 "
#define DKEY_PUBLIC_TAG "mailmesh-public-key v1 "
#define DKEY_B64_VARIANT sodium_base64_VARIANT_ORIGINAL
/* A key file is one short line; anything longer is not ours. */
#define DKEY_FILE_MAX 256
/* prefix || message is assembled here when it fits: records do. */
#define DKEY_SIGN_STACK_MAX 8192
#define DKEY_TMP_SUFFIX ".tmp"

int
dkey_init(void)
{
	/* sodium_init is idempotent and thread-safe. */
	return sodium_init() < 0 ? -1 : 0;
}

void
dkey_id(const uint8_t pk[DKEY_PK_LEN], uint8_t id_r[DKEY_ID_LEN])
{
	uint8_t h[crypto_generichash_BYTES];

	crypto_generichash(h, sizeof(h), pk, DKEY_PK_LEN, NULL, 0);
	memcpy(id_r, h, DKEY_ID_LEN);
}

void
dkey_id_hex(const uint8_t id[DKEY_ID_LEN], char out[DKEY_ID_HEX_LEN + 1])
{
	sodium_bin2hex(out, DKEY_ID_HEX_LEN + 1, id, DKEY_ID_LEN);
}

void
dkey_generate(struct dkey *k)
{
	if (dkey_init() < 0)
		abort();
	memset(k, 0, sizeof(*k));
	crypto_sign_keypair(k->pk, k->sk);
	dkey_id(k->pk, k->id);
	k->has_secret = 1;
}

void
dkey_clear(struct dkey *k)
{
	mm_wipe(k->sk, sizeof(k->sk));
	k->has_secret = 0;
}

/* Writes the whole of text to path; fsync before close so that a key the
 * caller was told is saved survives a crash. */
static int
write_key_file(const char *path, int flags, mode_t mode, const char *text,
    size_t len, char **errstr_r)
{
	int rc = -1, fd = -1;
	size_t off = 0;

	fd = open(path, flags | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0) {
		if (errno == EEXIST)
			*errstr_r = xasprintf("%s: exists already; remove it "
			    "first or choose another file", path);
		else
			*errstr_r = xasprintf("%s: cannot create: %s", path,
			    strerror(errno));
		goto done;
	}
	/* An overwritten file may have had looser permissions. */
	if (fchmod(fd, mode) < 0) {
		*errstr_r = xasprintf("%s: chmod: %s", path, strerror(errno));
		goto done;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*errstr_r = xasprintf("%s: write: %s", path,
			    strerror(errno));
			goto done;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		*errstr_r = xasprintf("%s: fsync: %s", path, strerror(errno));
		goto done;
	}
	rc = 0;
done:
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		*errstr_r = xasprintf("%s: close: %s", path, strerror(errno));
		rc = -1;
	}
	return rc;
}

/* The text of a key file: tag, base64, newline. */
static char *
key_text(const char *tag, const uint8_t *bin, size_t binlen, size_t *len_r)
{
	size_t b64len = sodium_base64_ENCODED_LEN(binlen, DKEY_B64_VARIANT);
	size_t taglen = strlen(tag);
	char *text = xmalloc(taglen + b64len + 1);

	memcpy(text, tag, taglen);
	sodium_bin2base64(text + taglen, b64len, bin, binlen,
	    DKEY_B64_VARIANT);
	*len_r = strlen(text);
	text[(*len_r)++] = '\n';
	text[*len_r] = '\0';
	return text;
}

int
dkey_save_secret(const struct dkey *k, const char *path, int overwrite,
    char **errstr_r)
{
	int rc = -1;
	char *text = NULL, *tmp = NULL;
	size_t len;

	if (!k->has_secret) {
		*errstr_r = xasprintf("%s: key has no secret half", path);
		goto done;
	}
	text = key_text(DKEY_SECRET_TAG, k->sk, DKEY_SK_LEN, &len);
	if (!overwrite) {
		rc = write_key_file(path, O_CREAT | O_EXCL, 0600, text, len,
		    errstr_r);
		goto done;
	}
	/* Replace atomically: a crash must not leave a half-written key. */
	tmp = xasprintf("%s%s", path, DKEY_TMP_SUFFIX);
	if (unlink(tmp) < 0 && errno != ENOENT) {
		*errstr_r = xasprintf("%s: cannot remove: %s", tmp,
		    strerror(errno));
		goto done;
	}
	if (write_key_file(tmp, O_CREAT | O_EXCL, 0600, text, len,
	    errstr_r) < 0)
		goto done;
	if (rename(tmp, path) < 0) {
		*errstr_r = xasprintf("%s: rename to %s: %s", tmp, path,
		    strerror(errno));
		(void)unlink(tmp);
		goto done;
	}
	rc = 0;
done:
	if (text != NULL) {
		mm_wipe(text, strlen(text));
		free(text);
	}
	free(tmp);
	return rc;
}

int
dkey_save_public(const struct dkey *k, const char *path, char **errstr_r)
{
	char *text;
	size_t len;
	int rc;

	text = key_text(DKEY_PUBLIC_TAG, k->pk, DKEY_PK_LEN, &len);
	rc = write_key_file(path, O_CREAT | O_TRUNC, 0644, text, len,
	    errstr_r);
	free(text);
	return rc;
}

/* Reads a small key file into buf (NUL-terminated). With secret set the
 * file must not be readable by group or others. */
static int
read_key_file(const char *path, int secret, char *buf, size_t bufsize,
    char **errstr_r)
{
	int rc = -1, fd = -1;
	struct stat sb;
	size_t off = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			*errstr_r = xasprintf("%s: no such key file; generate "
			    "a key or fix the path", path);
		else if (errno == EACCES)
			*errstr_r = xasprintf("%s: permission denied; give "
			    "it to the user this program runs as: chown USER "
			    "%s && chmod 600 %s", path, path, path);
		else
			*errstr_r = xasprintf("%s: cannot open: %s", path,
			    strerror(errno));
		goto done;
	}
	if (fstat(fd, &sb) < 0) {
		*errstr_r = xasprintf("%s: stat: %s", path, strerror(errno));
		goto done;
	}
	if (!S_ISREG(sb.st_mode)) {
		*errstr_r = xasprintf("%s: not a regular file", path);
		goto done;
	}
	if (secret && (sb.st_mode & 077) != 0) {
		*errstr_r = xasprintf("%s: secret key is accessible by group "
		    "or others (mode %04o); run: chmod 600 %s", path,
		    (unsigned)(sb.st_mode & 07777), path);
		goto done;
	}
	for (;;) {
		ssize_t n = read(fd, buf + off, bufsize - 1 - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*errstr_r = xasprintf("%s: read: %s", path,
			    strerror(errno));
			goto done;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (off == bufsize - 1) {
			*errstr_r = xasprintf("%s: too large for a key file",
			    path);
			goto done;
		}
	}
	buf[off] = '\0';
	rc = 0;
done:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Decodes "TAG base64\n" into exactly binlen bytes. */
static int
parse_key_text(const char *text, const char *tag, uint8_t *bin,
    size_t binlen)
{
	size_t taglen = strlen(tag), b64len, got = 0;
	const char *b64, *end = NULL;

	if (strncmp(text, tag, taglen) != 0)
		return -1;
	b64 = text + taglen;
	b64len = strlen(b64);
	if (b64len > 0 && b64[b64len - 1] == '\n')
		b64len--;
	if (sodium_base642bin(bin, binlen, b64, b64len, NULL, &got, &end,
	    DKEY_B64_VARIANT) != 0 || got != binlen || end != b64 + b64len)
		return -1;
	return 0;
}

int
dkey_load_secret(const char *path, struct dkey *k_r, char **errstr_r)
{
	int rc = -1;
	char text[DKEY_FILE_MAX];
	uint8_t seed_pk[DKEY_PK_LEN], seed_sk[DKEY_SK_LEN];

	memset(k_r, 0, sizeof(*k_r));
	if (dkey_init() < 0) {
		*errstr_r = xasprintf("%s: libsodium did not start", path);
		goto done;
	}
	if (read_key_file(path, 1, text, sizeof(text), errstr_r) < 0)
		goto done;
	if (parse_key_text(text, DKEY_SECRET_TAG, k_r->sk,
	    DKEY_SK_LEN) < 0) {
		*errstr_r = xasprintf("%s: not a MailMesh secret key (want "
		    "one line \"%s<base64 of 64 bytes>\"); generate a new "
		    "key", path, DKEY_SECRET_TAG);
		goto done;
	}
	/* The public half is stored inside the secret; a damaged file
	 * would otherwise sign with a key nobody can verify. */
	crypto_sign_seed_keypair(seed_pk, seed_sk, k_r->sk);
	if (sodium_memcmp(seed_pk, k_r->sk + DKEY_SK_LEN - DKEY_PK_LEN,
	    DKEY_PK_LEN) != 0) {
		*errstr_r = xasprintf("%s: damaged secret key (its halves do "
		    "not match); restore it from a backup", path);
		goto done;
	}
	memcpy(k_r->pk, seed_pk, DKEY_PK_LEN);
	dkey_id(k_r->pk, k_r->id);
	k_r->has_secret = 1;
	rc = 0;
done:
	mm_wipe(text, sizeof(text));
	mm_wipe(seed_sk, sizeof(seed_sk));
	if (rc < 0)
		dkey_clear(k_r);
	return rc;
}

int
dkey_load_public(const char *path, struct dkey *k_r, char **errstr_r)
{
	int rc = -1;
	char text[DKEY_FILE_MAX];
	uint8_t sk[DKEY_SK_LEN];

	memset(k_r, 0, sizeof(*k_r));
	if (read_key_file(path, 0, text, sizeof(text), errstr_r) < 0)
		goto done;
	if (parse_key_text(text, DKEY_PUBLIC_TAG, k_r->pk,
	    DKEY_PK_LEN) == 0) {
		/* ok */
	} else if (parse_key_text(text, DKEY_SECRET_TAG, sk,
	    DKEY_SK_LEN) == 0) {
		memcpy(k_r->pk, sk + DKEY_SK_LEN - DKEY_PK_LEN, DKEY_PK_LEN);
	} else {
		*errstr_r = xasprintf("%s: not a MailMesh public key (want "
		    "one line \"%s<base64 of 32 bytes>\")", path,
		    DKEY_PUBLIC_TAG);
		goto done;
	}
	dkey_id(k_r->pk, k_r->id);
	rc = 0;
done:
	mm_wipe(text, sizeof(text));
	mm_wipe(sk, sizeof(sk));
	return rc;
}

/* prefix (with its NUL) || msg, in stack when small. */
static uint8_t *
join(const char *prefix, const uint8_t *msg, size_t len, uint8_t *stack,
    size_t *total_r)
{
	size_t plen = prefix != NULL ? strlen(prefix) + 1 : 0;
	uint8_t *p = stack;

	*total_r = plen + len;
	if (*total_r > DKEY_SIGN_STACK_MAX)
		p = xmalloc(*total_r);
	if (plen > 0)
		memcpy(p, prefix, plen);
	if (len > 0)
		memcpy(p + plen, msg, len);
	return p;
}

void
dkey_sign(const struct dkey *k, const char *prefix, const uint8_t *msg,
    size_t len, uint8_t sig_r[DKEY_SIG_LEN])
{
	uint8_t stack[DKEY_SIGN_STACK_MAX], *m;
	size_t total;

	stack[0] = 0;	/* quiets a false "may be used uninitialized" */
	m = join(prefix, msg, len, stack, &total);
	crypto_sign_detached(sig_r, NULL, m, total, k->sk);
	if (m != stack)
		free(m);
}

int
dkey_verify(const uint8_t pk[DKEY_PK_LEN], const char *prefix,
    const uint8_t *msg, size_t len, const uint8_t sig[DKEY_SIG_LEN])
{
	uint8_t stack[DKEY_SIGN_STACK_MAX], *m;
	size_t total;
	int rc;

	stack[0] = 0;	/* quiets a false "may be used uninitialized" */
	m = join(prefix, msg, len, stack, &total);
	rc = crypto_sign_verify_detached(sig, m, total, pk) == 0 ? 0 : -1;
	if (m != stack)
		free(m);
	return rc;
}
