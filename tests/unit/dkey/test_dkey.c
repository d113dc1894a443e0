/* Unit tests for dkey: key files, their refusals, signatures. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkey.h"

static char tmpdir[] = "/tmp/test_dkey.XXXXXX";

static char *
tpath(const char *name)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
	return buf;
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(chmod(path, mode), 0);
}

/* err must contain every one of the wanted pieces. */
static void
err_has(const char *err, const char *want)
{
	if (err == NULL || strstr(err, want) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", err ? err : "(null)",
		    want);
}

static void
test_generate_id(void **state)
{
	struct dkey a, b;
	uint8_t id[DKEY_ID_LEN];
	char hex[DKEY_ID_HEX_LEN + 1];

	dkey_generate(&a);
	dkey_generate(&b);
	assert_true(a.has_secret);
	assert_memory_not_equal(a.pk, b.pk, DKEY_PK_LEN);
	dkey_id(a.pk, id);
	assert_memory_equal(id, a.id, DKEY_ID_LEN);
	dkey_id_hex(a.id, hex);
	assert_int_equal(strlen(hex), DKEY_ID_HEX_LEN);
	dkey_clear(&a);
	assert_false(a.has_secret);
	memset(id, 0, sizeof(id));
	assert_memory_equal(a.sk, (uint8_t[DKEY_SK_LEN]){ 0 }, DKEY_SK_LEN);
}

static void
test_save_load(void **state)
{
	struct dkey k, s, p, q;
	char *err = NULL, *path = strdup(tpath("k.secret"));
	struct stat sb;

	dkey_generate(&k);
	assert_int_equal(dkey_save_secret(&k, path, 0, &err), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(dkey_load_secret(path, &s, &err), 0);
	assert_memory_equal(s.sk, k.sk, DKEY_SK_LEN);
	assert_memory_equal(s.pk, k.pk, DKEY_PK_LEN);
	assert_memory_equal(s.id, k.id, DKEY_ID_LEN);
	assert_true(s.has_secret);

	/* Exclusive unless overwrite. */
	assert_int_equal(dkey_save_secret(&k, path, 0, &err), -1);
	err_has(err, path);
	err_has(err, "exists");
	free(err);
	err = NULL;
	dkey_generate(&q);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(dkey_save_secret(&q, path, 1, &err), 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(dkey_load_secret(path, &s, &err), 0);
	assert_memory_equal(s.pk, q.pk, DKEY_PK_LEN);

	/* Public file, and the public half of a secret file. */
	assert_int_equal(dkey_save_public(&k, tpath("k.pub"), &err), 0);
	assert_int_equal(dkey_load_public(tpath("k.pub"), &p, &err), 0);
	assert_memory_equal(p.pk, k.pk, DKEY_PK_LEN);
	assert_memory_equal(p.id, k.id, DKEY_ID_LEN);
	assert_false(p.has_secret);
	assert_int_equal(dkey_load_public(path, &p, &err), 0);
	assert_memory_equal(p.pk, q.pk, DKEY_PK_LEN);
	/* A public file is not a secret key. */
	assert_int_equal(dkey_load_secret(tpath("k.pub"), &s, &err), -1);
	free(err);
	free(path);
}

static void
test_secret_refusals(void **state)
{
	struct dkey k, s;
	char *err = NULL, *path = strdup(tpath("r.secret")), *want;
	char text[512];
	int fd;

	dkey_generate(&k);
	assert_int_equal(dkey_save_secret(&k, path, 0, &err), 0);

	/* Group or other readable: names the file and the fix. */
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(dkey_load_secret(path, &s, &err), -1);
	want = NULL;
	assert_true(asprintf(&want, "chmod 600 %s", path) > 0);
	err_has(err, want);
	err_has(err, "group or others");
	assert_false(s.has_secret);
	free(want);
	free(err);
	err = NULL;
	assert_int_equal(chmod(path, 0604), 0);
	assert_int_equal(dkey_load_secret(path, &s, &err), -1);
	err_has(err, "chmod 600");
	free(err);
	err = NULL;
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(dkey_load_secret(path, &s, &err), 0);

	/* Missing. */
	assert_int_equal(dkey_load_secret(tpath("none"), &s, &err), -1);
	err_has(err, tpath("none"));
	err_has(err, "no such key file");
	free(err);
	err = NULL;

	/* Unreadable (root reads anything: only checked as a user). */
	if (geteuid() != 0) {
		assert_int_equal(chmod(path, 0000), 0);
		assert_int_equal(dkey_load_secret(path, &s, &err), -1);
		err_has(err, path);
		err_has(err, "permission denied");
		free(err);
		err = NULL;
		assert_int_equal(chmod(path, 0600), 0);
	}

	/* Malformed: wrong tag, bad base64, short, trailing junk. */
	write_file(tpath("m1"), "hello\n", 0600);
	assert_int_equal(dkey_load_secret(tpath("m1"), &s, &err), -1);
	err_has(err, tpath("m1"));
	err_has(err, "not a MailMesh secret key");
	free(err);
	err = NULL;
	write_file(tpath("m2"), "mailmesh-secret-key v1 !!!!\n", 0600);
	assert_int_equal(dkey_load_secret(tpath("m2"), &s, &err), -1);
	free(err);
	err = NULL;
	write_file(tpath("m3"), "mailmesh-secret-key v1 AAAA\n", 0600);
	assert_int_equal(dkey_load_secret(tpath("m3"), &s, &err), -1);
	free(err);
	err = NULL;

	/* Damaged: halves that do not belong together. */
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	memset(text, 0, sizeof(text));
	assert_true(read(fd, text, sizeof(text) - 1) > 0);
	close(fd);
	text[30] = text[30] == 'A' ? 'B' : 'A';
	write_file(tpath("m4"), text, 0600);
	assert_int_equal(dkey_load_secret(tpath("m4"), &s, &err), -1);
	err_has(err, tpath("m4"));
	free(err);
	err = NULL;
	strcpy(text + strlen(text) - 1, "AAAA\n");
	write_file(tpath("m5"), text, 0600);
	assert_int_equal(dkey_load_secret(tpath("m5"), &s, &err), -1);
	free(err);
	free(path);
}

static void
test_sign_verify(void **state)
{
	struct dkey k, o;
	const uint8_t msg[] = "body bytes";
	uint8_t sig[DKEY_SIG_LEN], big[20000];

	dkey_generate(&k);
	dkey_generate(&o);
	dkey_sign(&k, "P1", msg, sizeof(msg), sig);
	assert_int_equal(dkey_verify(k.pk, "P1", msg, sizeof(msg), sig), 0);
	assert_int_equal(dkey_verify(o.pk, "P1", msg, sizeof(msg), sig), -1);
	assert_int_equal(dkey_verify(k.pk, "P2", msg, sizeof(msg), sig), -1);
	assert_int_equal(dkey_verify(k.pk, NULL, msg, sizeof(msg), sig), -1);
	/* The NUL ends the prefix: "P" + "1..." is not "P1" + "...". */
	assert_int_equal(dkey_verify(k.pk, "P", (const uint8_t *)"1\0body",
	    6, sig), -1);
	assert_int_equal(dkey_verify(k.pk, "P1", msg, sizeof(msg) - 1, sig),
	    -1);
	/* Longer than the stack buffer. */
	memset(big, 7, sizeof(big));
	dkey_sign(&k, "P1", big, sizeof(big), sig);
	assert_int_equal(dkey_verify(k.pk, "P1", big, sizeof(big), sig), 0);
	big[19999] = 8;
	assert_int_equal(dkey_verify(k.pk, "P1", big, sizeof(big), sig), -1);
}

static int
setup(void **state)
{
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return dkey_init();
}

static int
teardown(void **state)
{
	char *cmd = NULL;

	if (asprintf(&cmd, "rm -rf '%s'", tmpdir) < 0)
		return -1;
	if (system(cmd) != 0) {
		free(cmd);
		return -1;
	}
	free(cmd);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate_id),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_secret_refusals),
		cmocka_unit_test(test_sign_verify),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
