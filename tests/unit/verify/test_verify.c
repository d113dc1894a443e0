/* The verify's comparison: the same mailbox agrees; every kind of
 * difference is found and named. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "verify.h"

static void
folder(struct move_folder *f, const char *name, uint64_t uv, uint64_t n,
    uint8_t d)
{
	memset(f, 0, sizeof(*f));
	strcpy(f->name, name);
	f->uidvalidity = uv;
	f->uidnext = n + 1;
	f->messages = n;
	memset(f->digest, d, sizeof(f->digest));
}

static void
differs(const struct move_folder *a, size_t na, const struct move_folder *b,
    size_t nb, const char *want)
{
	char buf[400];
	const char *why = verify_compare(a, na, b, nb, buf, sizeof(buf));

	assert_non_null(why);
	if (strstr(why, want) == NULL)
		fail_msg("got \"%s\", want \"%s\"", why, want);
}

static void
test_compare(void **state)
{
	struct move_folder a[2], b[3];
	char buf[400];

	(void)state;
	folder(&a[0], "Archive", 7, 10, 1);
	folder(&a[1], "INBOX", 9, 3, 2);
	memcpy(b, a, sizeof(a));
	assert_null(verify_compare(a, 2, b, 2, buf, sizeof(buf)));
	/* UIDNEXT alone may differ (dsync keeps it, but clients cannot
	 * tell). */
	b[1].uidnext = 99;
	assert_null(verify_compare(a, 2, b, 2, buf, sizeof(buf)));

	b[1].messages = 2;
	differs(a, 2, b, 2, "folder INBOX: 3 messages (uidvalidity 9) against "
	    "2 (uidvalidity 9)");
	memcpy(b, a, sizeof(a));
	b[0].uidvalidity = 8;
	differs(a, 2, b, 2, "folder Archive");
	memcpy(b, a, sizeof(a));
	b[1].digest[5] ^= 1;
	differs(a, 2, b, 2, "UIDs or flags differ");
	memcpy(b, a, sizeof(a));
	strcpy(b[0].name, "Archives");
	differs(a, 2, b, 2, "folder Archive on one side, Archives on the other");
	memcpy(b, a, sizeof(a));
	folder(&b[2], "Trash", 3, 0, 0);
	differs(a, 2, b, 3, "2 folders against 3");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compare),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
