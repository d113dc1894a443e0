/* mmctl: the operator's tool. This version answers routing questions
 * from a node's configuration; directory management arrives with the
 * signed directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dir.h"
#include "mm_config.h"
#include "mm_log.h"
#include "popmap.h"

#define DEFAULT_CONFIG "/etc/mailmesh/mmnode.conf"

/* Exit codes scripts can rely on. */
enum {
	EXIT_OK = 0,		/* found / valid */
	EXIT_FAIL = 1,		/* not found / invalid */
	EXIT_USAGE = 2,
	EXIT_TEMP = 3,		/* temporarily unavailable */
};

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mmctl [-c CONFIG] lookup USER [imap|pop3]\n"
	    "       mmctl popmap check FILE\n"
	    "       mmctl config check [FILE]\n");
	exit(EXIT_USAGE);
}

static int
cmd_lookup(const char *cpath, int argc, char **argv)
{
	enum mm_proto proto = MM_PROTO_IMAP;
	struct mm_config *conf;
	struct dir *dir;
	struct dir_route route;
	enum dir_result r;
	char *err = NULL;
	int rc;

	if (argc < 1 || argc > 2)
		usage();
	if (argc == 2) {
		if (strcmp(argv[1], "pop3") == 0)
			proto = MM_PROTO_POP3;
		else if (strcmp(argv[1], "imap") != 0)
			usage();
	}
	if ((conf = mm_config_load(cpath, &err)) == NULL ||
	    (dir = dir_open(conf, &err)) == NULL) {
		fprintf(stderr, "mmctl: %s\n", err);
		free(err);
		mm_config_free(conf);
		return EXIT_FAIL;
	}
	r = dir_lookup(dir, argv[0], proto, &route);
	if (r == DIR_FOUND) {
		printf("%s %s backend=%s addr=%s:%u tls=%s\n", argv[0],
		    mm_proto_name(proto), route.backend->name, route.host,
		    route.port, route.backend->tls == MM_TLS_NONE ? "none" :
		    route.backend->tls == MM_TLS_STARTTLS ? "starttls" :
		    "implicit");
		rc = EXIT_OK;
	} else {
		printf("%s %s %s\n", argv[0], mm_proto_name(proto),
		    dir_result_name(r));
		rc = r == DIR_NOTFOUND ? EXIT_FAIL : EXIT_TEMP;
	}
	dir_free(dir);
	mm_config_free(conf);
	return rc;
}

static int
cmd_popmap_check(int argc, char **argv)
{
	struct popmap *map;
	char *err = NULL;

	if (argc != 1)
		usage();
	if ((map = popmap_load(argv[0], &err)) == NULL) {
		fprintf(stderr, "mmctl: %s\n", err);
		free(err);
		return EXIT_FAIL;
	}
	printf("%s: %zu entries OK\n", argv[0], popmap_count(map));
	popmap_free(map);
	return EXIT_OK;
}

static int
cmd_config_check(const char *cpath, int argc, char **argv)
{
	struct mm_config *conf;
	char *err = NULL;

	if (argc > 1)
		usage();
	if (argc == 1)
		cpath = argv[0];
	if ((conf = mm_config_load(cpath, &err)) == NULL) {
		fprintf(stderr, "mmctl: %s\n", err);
		free(err);
		return EXIT_FAIL;
	}
	printf("%s: configuration OK (%zu listeners, %zu back ends)\n", cpath,
	    conf->n_listeners, conf->n_backends);
	mm_config_free(conf);
	return EXIT_OK;
}

int
main(int argc, char **argv)
{
	const char *cpath = DEFAULT_CONFIG;
	int ch;

	while ((ch = getopt(argc, argv, "+c:")) != -1) {
		if (ch == 'c')
			cpath = optarg;
		else
			usage();
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	mm_log_init("mmctl", MM_LOG_STDERR, false);
	if (strcmp(argv[0], "lookup") == 0)
		return cmd_lookup(cpath, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[0], "popmap") == 0 &&
	    strcmp(argv[1], "check") == 0)
		return cmd_popmap_check(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[0], "config") == 0 &&
	    strcmp(argv[1], "check") == 0)
		return cmd_config_check(cpath, argc - 2, argv + 2);
	usage();
	return EXIT_USAGE;
}
