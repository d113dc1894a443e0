/* mmctl: the operator's tool. Routing questions are answered from a node's
 * configuration; directory changes go to the node's directory agent over
 * the control socket, or straight to the store when no node runs (or with
 * --direct), through the same request handlers. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "dir.h"
#include "dkey.h"
#include "mm_config.h"
#include "mm_log.h"
#include "mm_util.h"
#include "ops.h"
#include "popmap.h"
#include "record.h"

#define DEFAULT_CONFIG "/etc/mailmesh/mmnode.conf"
#define IMPORT_LINE_MAX 4096	/* bytes in one import line */
#define IMPORT_ERRORS_SHOWN 20	/* then the count only */
#define IMPORT_COLS 4		/* user, backend, state, target site */
#define CSV_FIELDS_MAX 4
/* Records signed by the root key are numbered per subject key, origin
 * "root-<key id>": a certificate and any later revocation of one key.
 * Sites that certify on their own stores then never give two different
 * records the same origin and number. */
#define ROOT_ORIGIN_PREFIX "root-"
#define DAY_S 86400
#define EXPIRES_DAYS_MAX 36500

/* Exit codes scripts can rely on; the same numbers as enum ctl_status. */
enum {
	EXIT_OK = 0,		/* found / valid */
	EXIT_FAIL = 1,		/* failed / not found / invalid */
	EXIT_USAGE = 2,
	EXIT_TEMP = 3,		/* temporarily unavailable */
	EXIT_PERM = 4,		/* permission denied */
};

static struct {
	const char *cpath;
	bool json;
	bool direct;
	struct mm_config *conf;
	int fd;			/* control socket; -1: not connected */
	struct ops *ops;	/* direct mode */
	struct dkey key;
} ctl = { .cpath = DEFAULT_CONFIG, .fd = -1 };

static void
root_origin(const uint8_t id[DKEY_ID_LEN], char *out, size_t outlen)
{
	char hex[DKEY_ID_HEX_LEN + 1];

	dkey_id_hex(id, hex);
	snprintf(out, outlen, "%s%s", ROOT_ORIGIN_PREFIX, hex);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: mmctl [-c CONFIG] [--json] [--direct] COMMAND ...\n"
	    "  lookup USER [imap|pop3|smtp]\n"
	    "  popmap check FILE\n"
	    "  config check [FILE]\n"
	    "  user add USER BACKEND\n"
	    "  user set USER BACKEND [--state active|moving|frozen] "
	    "[--target SITE]\n"
	    "  user del USER\n"
	    "  user show USER\n"
	    "  user resolve USER SITE   (a user two sites own: SITE keeps "
	    "it)\n"
	    "  user list [--site SITE]\n"
	    "  import popmap FILE | import csv FILE   (CSV: user,backend"
	    "[,state[,target_site]])\n"
	    "  export popmap | export csv\n"
	    "  verify\n"
	    "  check\n"
	    "  keys root-init DIR\n"
	    "  keys new FILE\n"
	    "  keys certify --root ROOTKEY --pub PUBFILE "
	    "--role site|node|operator|transport\n"
	    "               --site SITE --name NAME [--expires-days N]\n"
	    "  keys revoke --root ROOTKEY (--pub PUBFILE | --id KEYID) "
	    "[--reason TEXT]\n"
	    "  keys list\n"
	    "  stats\n"
	    "  sites\n"
	    "  sessions [--user USER]   (this node's open sessions)\n"
	    "  kick USER   (ends the user's IMAP and POP3 sessions on this "
	    "node)\n"
	    "  move USER SITE [--backend NAME] [--wait] [--dry-run]\n"
	    "  move --abort USER\n"
	    "  moves [--user USER]\n");
	exit(EXIT_USAGE);
}

/* One "--name VALUE" option of a command and where its value goes. */
struct opt {
	const char *name;
	const char **slot;
};

/* Fills the slots from argv's "--name VALUE" pairs; any other word, or an
 * option without its value, is a usage error. opts ends with a NULL name. */
static void
parse_opts(int argc, char **argv, const struct opt *opts)
{
	const struct opt *o;
	int i;

	for (i = 0; i < argc; i++) {
		for (o = opts; o->name != NULL; o++)
			if (strcmp(argv[i], o->name) == 0)
				break;
		if (o->name == NULL || i + 1 >= argc)
			usage();
		*o->slot = argv[++i];
	}
}

/* ---- JSON and tables ------------------------------------------------ */

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static bool
numeric_column(const char *name)
{
	static const char *const num[] = { "epoch", "seq", "origin_seq",
		"users", "tombstones", "certs", "revoked", "origins",
		"evidence", "map_bytes", "used_bytes", "checked", "bad",
		"equivocations", "stored", "unchanged", "failed", "line",
		"incarnation", "rtt_ms", "last_contact_s" };
	size_t i;

	for (i = 0; i < MM_ARRAY_SIZE(num); i++)
		if (strcmp(num[i], name) == 0)
			return true;
	return false;
}

static void
json_value(const char *col, const char *v)
{
	if (numeric_column(col) && v[0] != '\0' &&
	    strspn(v, "0123456789") == strlen(v))
		fputs(v, stdout);
	else
		json_str(stdout, v);
}

static void
json_object(const struct ctl_row *hdr, const struct ctl_row *row)
{
	size_t i;

	putchar('{');
	for (i = 0; i < hdr->n && i < row->n; i++) {
		if (i > 0)
			putchar(',');
		json_str(stdout, hdr->col[i]);
		putchar(':');
		json_value(hdr->col[i], row->col[i]);
	}
	putchar('}');
}

static void
json_error(const char *msg, int status)
{
	printf("{\"error\":");
	json_str(stdout, msg);
	printf(",\"status\":%d}\n", status);
}

/* A list printed as its slices come: a table whose columns widen when a
 * later slice has longer values (each slice aligned in itself), or a JSON
 * array of objects, opened at the start and closed at the end. The first
 * row of the first slice is the header. */
struct lister {
	struct ctl_rows hdr;
	size_t *w;		/* column widths so far */
	size_t n;		/* rows printed */
	bool opened;		/* the JSON array */
};

static void
lister_init(struct lister *l)
{
	memset(l, 0, sizeof(*l));
	ctl_rows_init(&l->hdr);
}

static void
table_row(const struct lister *l, const struct ctl_row *r)
{
	size_t j, n = l->hdr.row[0].n;

	for (j = 0; j < n && j < r->n; j++) {
		if (j + 1 < n)
			printf("%-*s  ", (int)l->w[j], r->col[j]);
		else
			printf("%s", r->col[j]);
	}
	putchar('\n');
}

static void
lister_rows(void *arg, const struct ctl_rows *rows)
{
	struct lister *l = arg;
	size_t i = 0, j, n;

	if (l->hdr.n == 0) {
		if (rows->n == 0)
			return;
		(void)ctl_rows_add(&l->hdr, rows->row[0].n,
		    (const char *const *)rows->row[0].col);
		l->w = xcalloc(rows->row[0].n + 1, sizeof(*l->w));
		i = 1;
	}
	n = l->hdr.row[0].n;
	if (ctl.json) {
		if (!l->opened)
			putchar('[');
		l->opened = true;
		for (; i < rows->n; i++) {
			if (l->n++ > 0)
				putchar(',');
			json_object(&l->hdr.row[0], &rows->row[i]);
		}
		return;
	}
	for (j = 0; j < n; j++)
		if (strlen(l->hdr.row[0].col[j]) > l->w[j])
			l->w[j] = strlen(l->hdr.row[0].col[j]);
	for (j = i; j < rows->n; j++) {
		size_t k;

		for (k = 0; k < n && k < rows->row[j].n; k++)
			if (strlen(rows->row[j].col[k]) > l->w[k])
				l->w[k] = strlen(rows->row[j].col[k]);
	}
	if (i == 1)
		table_row(l, &l->hdr.row[0]);
	for (; i < rows->n; i++, l->n++)
		table_row(l, &rows->row[i]);
}

static void
lister_end(struct lister *l)
{
	if (ctl.json)
		printf("%s]\n", l->opened ? "" : "[");
	ctl_rows_clear(&l->hdr);
	free(l->w);
}

static void
print_record(const struct ctl_rows *rows)
{
	const struct ctl_row *h, *r;
	size_t i, w = 0;

	if (rows->n < 2)
		return;
	h = &rows->row[0];
	r = &rows->row[1];
	if (ctl.json) {
		json_object(h, r);
		putchar('\n');
		return;
	}
	for (i = 0; i < h->n; i++)
		if (strlen(h->col[i]) > w)
			w = strlen(h->col[i]);
	for (i = 0; i < h->n && i < r->n; i++)
		printf("%-*s  %s\n", (int)w, h->col[i], r->col[i]);
}

/* ---- talking to the node, or to the store --------------------------- */

static struct mm_config *
need_config(void)
{
	char *err = NULL;

	if (ctl.conf != NULL)
		return ctl.conf;
	if ((ctl.conf = mm_config_load(ctl.cpath, &err)) == NULL) {
		fprintf(stderr, "mmctl: %s\n", err);
		if (ctl.json)
			json_error(err, EXIT_FAIL);
		exit(EXIT_FAIL);
	}
	if (ctl.conf->directory == NULL) {
		fprintf(stderr, "mmctl: %s: no 'directory': the signed "
		    "directory is off\n", ctl.cpath);
		if (ctl.json)
			json_error("the signed directory is off", EXIT_FAIL);
		exit(EXIT_FAIL);
	}
	return ctl.conf;
}

static void
fail(int code, const char *msg)
{
	fprintf(stderr, "mmctl: %s\n", msg);
	if (ctl.json)
		json_error(msg, code);
	exit(code);
}

/* 1 connected, 0 no node there, -1 with the exit code in *code_r. */
static int
connect_node(const char *path, int *code_r, char **errstr_r)
{
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path))
		return 0;
	memcpy(sun.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		*code_r = EXIT_TEMP;
		*errstr_r = xasprintf("socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		ctl.fd = fd;
		return 1;
	}
	close(fd);
	if (errno == ENOENT || errno == ECONNREFUSED || errno == ENOTDIR)
		return 0;
	if (errno == EACCES || errno == EPERM) {
		*code_r = EXIT_PERM;
		*errstr_r = xasprintf("control-socket %s: permission denied "
		    "(run as root or as a member of the socket's group: "
		    "admin-group, else group, in %s)", path, ctl.cpath);
		return -1;
	}
	*code_r = EXIT_TEMP;
	*errstr_r = xasprintf("control-socket %s: %s", path,
	    strerror(errno));
	return -1;
}

/* Opens the way to the directory: the node's socket, else the store. */
static void
open_directory(bool signing)
{
	struct mm_config *conf = need_config();
	enum ctl_status st;
	char *err = NULL;
	int code = EXIT_FAIL, r;

	if (ctl.fd >= 0 || ctl.ops != NULL)
		return;
	if (!ctl.direct) {
		r = connect_node(conf->control_socket, &code, &err);
		if (r == 1)
			return;
		if (r < 0)
			fail(code, err);
	}
	if (signing && dkey_load_secret(conf->node_key, &ctl.key, &err) != 0) {
		char *msg = xasprintf("node-key %s: %s", conf->node_key, err);

		fail(errno == EACCES || strstr(err, "permission") != NULL ?
		    EXIT_PERM : EXIT_FAIL, msg);
	}
	if ((ctl.ops = ops_new(conf, signing ? &ctl.key : NULL, &st,
	    &err)) == NULL)
		fail((int)st, err);
}

static void
close_directory(void)
{
	if (ctl.fd >= 0)
		close(ctl.fd);
	ctl.fd = -1;
	ops_free(ctl.ops);
	ctl.ops = NULL;
	dkey_clear(&ctl.key);
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* 0, or -1 on EOF or an error before len bytes. */
static int
read_all(int fd, uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One request; the rows of every RESPONSE and of the END go to cb as
 * they come (once per frame from the node, once per slice with
 * --direct), as many as there are. The status of the END, its message
 * in *msg_r (malloc'd). */
static enum ctl_status
call_rows(const char *op, size_t argc, const char *const *argv,
    ops_rows_cb cb, void *arg, char **msg_r)
{
	uint8_t hdr[CTL_HEADER_LEN], *f, *body;
	struct ctl_rows rows;
	struct ctl_msg *m;
	struct ops_req *r;
	enum ctl_type type;
	enum ctl_status st = CTL_FAILED;
	const char *why = NULL;
	uint32_t blen;
	size_t len;
	int more;

	if (ctl.ops != NULL) {
		/* A slice at a time, as the agent does. */
		r = ops_req_new(ctl.ops, op, argc, (char *const *)argv);
		do {
			ctl_rows_init(&rows);
			more = ops_req_run(r, NULL, &rows, &st, msg_r);
			cb(arg, &rows);
			ctl_rows_clear(&rows);
		} while (more);
		ops_req_free(r);
		return st;
	}
	if ((f = ctl_encode_request(op, argc, argv, &len, &why)) == NULL) {
		*msg_r = xasprintf("request too large: %s", why);
		return CTL_FAILED;
	}
	if (write_all(ctl.fd, f, len) != 0) {
		free(f);
		*msg_r = xasprintf("control socket: %s", strerror(errno));
		return CTL_TEMP;
	}
	free(f);
	for (;;) {
		if (read_all(ctl.fd, hdr, sizeof(hdr)) != 0) {
			*msg_r = xstrdup("the node closed the control socket");
			return CTL_TEMP;
		}
		if (ctl_header_decode(hdr, sizeof(hdr), &type, &blen,
		    &why) != 1 || type == CTL_REQUEST) {
			*msg_r = xasprintf("bad frame from the node: %s",
			    why != NULL ? why : "request");
			return CTL_FAILED;
		}
		body = xmalloc(blen == 0 ? 1 : blen);
		if (read_all(ctl.fd, body, blen) != 0) {
			free(body);
			*msg_r = xstrdup("the node closed the control socket");
			return CTL_TEMP;
		}
		m = ctl_body_decode(type, body, blen, &why);
		free(body);
		if (m == NULL) {
			*msg_r = xasprintf("bad frame from the node: %s", why);
			return CTL_FAILED;
		}
		if (type != CTL_PROGRESS)
			cb(arg, &m->rows);
		if (type == CTL_END) {
			*msg_r = m->message;
			m->message = NULL;
			st = m->status;
			ctl_msg_free(m);
			return st;
		}
		ctl_msg_free(m);
	}
}

static void
rows_append(void *arg, const struct ctl_rows *rows)
{
	struct ctl_rows *all = arg;
	size_t i;

	for (i = 0; i < rows->n; i++)
		(void)ctl_rows_add(all, rows->row[i].n,
		    (const char *const *)rows->row[i].col);
}

/* One request whose whole answer is wanted at once (a record, a
 * check's report, an import's failures): its rows are appended to rows. */
static enum ctl_status
call(const char *op, size_t argc, const char *const *argv, char **msg_r,
    struct ctl_rows *rows)
{
	return call_rows(op, argc, argv, rows_append, rows, msg_r);
}

/* A request whose answer is printed as a record or a list. */
static int
simple(const char *op, size_t argc, const char *const *argv, bool list,
    bool signing)
{
	struct ctl_rows rows;
	struct lister l;
	enum ctl_status st;
	char *msg = NULL;

	open_directory(signing);
	ctl_rows_init(&rows);
	if (list) {
		/* Printed as it comes: a listing may be any length. */
		lister_init(&l);
		st = call_rows(op, argc, argv, lister_rows, &l, &msg);
		lister_end(&l);
	} else {
		st = call(op, argc, argv, &msg, &rows);
		if (rows.n >= 2)
			print_record(&rows);
		else if (ctl.json && st == CTL_OK)
			printf("{}\n");
	}
	if (st != CTL_OK) {
		fprintf(stderr, "mmctl: %s\n", msg);
		if (ctl.json && rows.n < 2 && !list)
			json_error(msg, (int)st);
	}
	free(msg);
	ctl_rows_clear(&rows);
	close_directory();
	return (int)st;
}

/* ---- sites ---------------------------------------------------------- */

/* Every node gossip knows, this one first; only a running node has them. */
static int
cmd_sites(int argc, char **argv)
{
	if (argc != 0)
		usage();
	if (ctl.direct)
		fail(EXIT_FAIL, "sites needs the running node (not --direct)");
	return simple("sites", 0, NULL, true, false);
}

static int
cmd_sessions(int argc, char **argv)
{
	const char *user = NULL, *args[1];
	const struct opt opts[] = { { "--user", &user }, { NULL, NULL } };

	parse_opts(argc, argv, opts);
	if (ctl.direct)
		fail(EXIT_FAIL, "sessions needs the running node (not "
		    "--direct)");
	args[0] = user;
	return simple("sessions", user != NULL ? 1 : 0, args, true, false);
}

/* ---- moves ---------------------------------------------------------- */

/* The column of rows's header named name, or -1. */
static int
col_of(const struct ctl_rows *rows, const char *name)
{
	size_t i;

	if (rows->n == 0)
		return -1;
	for (i = 0; i < rows->row[0].n; i++)
		if (strcmp(rows->row[0].col[i], name) == 0)
			return (int)i;
	return -1;
}

/* Follows the move of user until it is done or aborted, a line per
 * change: phase, passes, time in it. 0 done, 1 aborted, 3 lost sight. */
static int
move_wait(const char *user)
{
	char last[256] = "";
	const char *args[1] = { user };
	int misses = 0;

	for (;;) {
		struct ctl_rows rows;
		enum ctl_status st;
		char *msg = NULL, line[256];
		const char *phase, *err;
		int cp, cs, ce, ca;

		ctl_rows_init(&rows);
		st = call("moves", 1, args, &msg, &rows);
		free(msg);
		if (st != CTL_OK || rows.n < 2) {
			ctl_rows_clear(&rows);
			if (++misses > 20) {
				fprintf(stderr, "mmctl: lost sight of the move "
				    "of %s\n", user);
				return EXIT_TEMP;
			}
			usleep(250000);
			continue;
		}
		misses = 0;
		cp = col_of(&rows, "phase");
		cs = col_of(&rows, "passes");
		ce = col_of(&rows, "error");
		ca = col_of(&rows, "phase_s");
		if (cp < 0 || cs < 0 || ce < 0 || ca < 0) {
			ctl_rows_clear(&rows);
			fprintf(stderr, "mmctl: the node's answer lacks columns\n");
			return EXIT_TEMP;
		}
		phase = rows.row[1].col[cp];
		err = rows.row[1].col[ce];
		snprintf(line, sizeof(line), "%s: %s, %s passes%s%s", user,
		    phase, rows.row[1].col[cs], err[0] != '\0' ? "; " : "",
		    err);
		if (strcmp(line, last) != 0) {
			printf("%s\n", line);
			fflush(stdout);
			mm_strlcpy(last, line, sizeof(last));
		}
		if (strcmp(phase, "done") == 0 ||
		    strcmp(phase, "aborted") == 0) {
			int rc = strcmp(phase, "done") == 0 ? 0 : EXIT_FAIL;

			ctl_rows_clear(&rows);
			return rc;
		}
		ctl_rows_clear(&rows);
		usleep(250000);
	}
}

static int
cmd_move(int argc, char **argv)
{
	const char *backend = "", *abort_user = NULL, *args[4];
	bool wait = false, dry = false;
	const char *pos[2];
	size_t npos = 0;
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL;
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--wait") == 0)
			wait = true;
		else if (strcmp(argv[i], "--dry-run") == 0)
			dry = true;
		else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc)
			backend = argv[++i];
		else if (strcmp(argv[i], "--abort") == 0 && i + 1 < argc)
			abort_user = argv[++i];
		else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else
			usage();
	}
	if (ctl.direct)
		fail(EXIT_FAIL, "move needs the running node (not --direct)");
	if (abort_user != NULL ? npos != 0 : npos != 2)
		usage();
	open_directory(false);
	ctl_rows_init(&rows);
	if (abort_user != NULL) {
		args[0] = abort_user;
		st = call("move-abort", 1, args, &msg, &rows);
	} else {
		args[0] = pos[0];
		args[1] = pos[1];
		args[2] = backend;
		args[3] = dry ? "1" : "0";
		st = call("move", 4, args, &msg, &rows);
	}
	fprintf(st == CTL_OK ? stdout : stderr, "%s%s\n",
	    st == CTL_OK ? "" : "mmctl: ", msg);
	free(msg);
	ctl_rows_clear(&rows);
	if (st == CTL_OK && wait && !dry && abort_user == NULL)
		st = (enum ctl_status)move_wait(pos[0]);
	close_directory();
	return (int)st;
}

static int
cmd_moves(int argc, char **argv)
{
	const char *user = NULL, *args[1];
	const struct opt opts[] = { { "--user", &user }, { NULL, NULL } };

	parse_opts(argc, argv, opts);
	if (ctl.direct)
		fail(EXIT_FAIL, "moves needs the running node (not --direct)");
	args[0] = user;
	return simple("moves", user != NULL ? 1 : 0, args, true, false);
}

static int
cmd_kick(int argc, char **argv)
{
	const char *args[1];
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL;

	if (argc != 1)
		usage();
	if (ctl.direct)
		fail(EXIT_FAIL, "kick needs the running node (not --direct)");
	args[0] = argv[0];
	open_directory(false);
	ctl_rows_init(&rows);
	st = call("kick", 1, args, &msg, &rows);
	if (ctl.json && st == CTL_OK) {
		printf("{\"result\": ");
		json_str(stdout, msg);
		printf("}\n");
	} else if (ctl.json) {
		json_error(msg, (int)st);
	}
	if (!ctl.json || st != CTL_OK)
		fprintf(st == CTL_OK ? stdout : stderr, "%s%s\n",
		    st == CTL_OK ? "" : "mmctl: ", msg);
	free(msg);
	ctl_rows_clear(&rows);
	close_directory();
	return (int)st;
}

/* ---- user ----------------------------------------------------------- */

/* user resolve: the record signed, then what it did and what is left to
 * do, which the operator needs (simple prints only the record). */
static int
resolve(const char *const *args)
{
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL;

	open_directory(true);
	ctl_rows_init(&rows);
	st = call("user-resolve", 2, args, &msg, &rows);
	if (st == CTL_OK && rows.n >= 2)
		print_record(&rows);
	if (st != CTL_OK) {
		fprintf(stderr, "mmctl: %s\n", msg);
		if (ctl.json)
			json_error(msg, (int)st);
	} else if (!ctl.json) {
		printf("%s\n", msg);
	}
	free(msg);
	ctl_rows_clear(&rows);
	close_directory();
	return (int)st;
}

static int
cmd_user(int argc, char **argv)
{
	const char *state = "", *target = "", *site = "";
	const char *args[4];

	if (argc < 1)
		usage();
	if (strcmp(argv[0], "add") == 0 && argc == 3) {
		args[0] = argv[1];
		args[1] = argv[2];
		return simple("user-add", 2, args, false, true);
	}
	if (strcmp(argv[0], "set") == 0 && argc >= 3) {
		const struct opt opts[] = {
			{ "--state", &state }, { "--target", &target },
			{ NULL, NULL },
		};

		parse_opts(argc - 3, argv + 3, opts);
		args[0] = argv[1];
		args[1] = argv[2];
		args[2] = state;
		args[3] = target;
		return simple("user-set", 4, args, false, true);
	}
	if (strcmp(argv[0], "del") == 0 && argc == 2) {
		args[0] = argv[1];
		return simple("user-del", 1, args, false, true);
	}
	if (strcmp(argv[0], "show") == 0 && argc == 2) {
		args[0] = argv[1];
		return simple("user-show", 1, args, false, false);
	}
	if (strcmp(argv[0], "resolve") == 0 && argc == 3) {
		args[0] = argv[1];
		args[1] = argv[2];
		return resolve(args);
	}
	if (strcmp(argv[0], "list") == 0) {
		if (argc == 3 && strcmp(argv[1], "--site") == 0)
			site = argv[2];
		else if (argc != 1)
			usage();
		args[0] = site;
		return simple("user-list", 1, args, true, false);
	}
	usage();
	return EXIT_USAGE;
}

/* ---- import and export ---------------------------------------------- */

struct entry {
	char *user, *backend, *state, *target;
	unsigned long line;
};

struct entries {
	struct entry *e;
	size_t n, cap;
	unsigned errors;
};

static void __attribute__((format(printf, 4, 5)))
import_error(struct entries *es, const char *file, unsigned long line,
    const char *fmt, ...)
{
	va_list ap;

	if (es->errors++ >= IMPORT_ERRORS_SHOWN)
		return;
	fprintf(stderr, "%s:%lu: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static char *
trim(char *s)
{
	char *e;

	s += strspn(s, " \t");
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	    e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static void
entry_add(struct entries *es, const struct mm_config *conf,
    const char *file, unsigned long line, const char *user,
    const char *backend, const char *state, const char *target)
{
	enum user_state s;
	struct entry *e;

	if (user[0] == '\0') {
		import_error(es, file, line, "empty user name");
		return;
	}
	if (mm_config_backend(conf, backend) == NULL) {
		import_error(es, file, line, "'%s' is not a back end of site "
		    "%s (see backend in %s)", backend, conf->site, conf->path);
		return;
	}
	if (state[0] != '\0' && (record_state_parse(state, &s) != 0 ||
	    (s != USTATE_ACTIVE && s != USTATE_MOVING &&
	    s != USTATE_FROZEN))) {
		import_error(es, file, line, "state '%s': active, moving or "
		    "frozen", state);
		return;
	}
	if (target[0] != '\0' && (state[0] == '\0' ||
	    s == USTATE_ACTIVE)) {
		import_error(es, file, line, "a target site goes with state "
		    "moving or frozen only");
		return;
	}
	if (state[0] != '\0' && s != USTATE_ACTIVE &&
	    (!record_site_valid(target) || strcmp(target, conf->site) == 0)) {
		import_error(es, file, line, "state %s needs a target site "
		    "(4th column), another site than %s", state, conf->site);
		return;
	}
	if (es->n == es->cap) {
		es->cap = es->cap == 0 ? 1024 : es->cap * 2;
		es->e = xrealloc(es->e, es->cap * sizeof(*es->e));
	}
	e = &es->e[es->n++];
	e->user = xstrdup(user);
	e->backend = xstrdup(backend);
	e->state = xstrdup(state);
	e->target = xstrdup(target);
	e->line = line;
}

/* Reads FILE as a popmap ("user: backend") or as CSV ("user,backend[,
 * state[,target_site]]", header optional: what export csv writes); errors
 * name FILE:LINE. */
static void
read_import(const char *kind, const char *file, struct entries *es)
{
	const struct mm_config *conf = ctl.conf;
	unsigned long line = 0;
	char *buf = NULL, *s, *sep, *f[CSV_FIELDS_MAX];
	size_t cap = 0;
	ssize_t n;
	FILE *fp;
	int nf;

	if ((fp = fopen(file, "r")) == NULL) {
		char *msg = xasprintf("%s: %s", file, strerror(errno));

		fail(errno == EACCES ? EXIT_PERM : EXIT_FAIL, msg);
	}
	while ((n = getline(&buf, &cap, fp)) != -1) {
		line++;
		if ((size_t)n > IMPORT_LINE_MAX) {
			import_error(es, file, line, "line longer than %d "
			    "bytes", IMPORT_LINE_MAX);
			continue;
		}
		if (memchr(buf, '\0', (size_t)n) != NULL) {
			import_error(es, file, line, "NUL byte");
			continue;
		}
		s = trim(buf);
		if (*s == '\0' || *s == '#')
			continue;
		if (strcmp(kind, "popmap") == 0) {
			if (*s == '^') {
				import_error(es, file, line, "a regex entry "
				    "cannot become directory records");
				continue;
			}
			if ((sep = strchr(s, ':')) == NULL) {
				import_error(es, file, line, "expected "
				    "'user: backend'");
				continue;
			}
			*sep = '\0';
			s = trim(s);
			sep = trim(sep + 1);
			if ((f[0] = strchr(sep, '#')) != NULL) {
				*f[0] = '\0';
				sep = trim(sep);
			}
			entry_add(es, conf, file, line, s, sep, "", "");
			continue;
		}
		for (nf = 0; nf < CSV_FIELDS_MAX; nf++) {
			f[nf] = s;
			if ((sep = strchr(s, ',')) == NULL) {
				nf++;
				break;
			}
			*sep = '\0';
			s = sep + 1;
		}
		if (nf < 2 || strchr(s, ',') != NULL) {
			import_error(es, file, line, "expected "
			    "user,backend[,state[,target_site]]");
			continue;
		}
		f[0] = trim(f[0]);
		f[1] = trim(f[1]);
		f[2] = nf >= 3 ? trim(f[2]) : (char *)"";
		f[3] = nf >= 4 ? trim(f[3]) : (char *)"";
		if (es->n == 0 && es->errors == 0 &&
		    strcasecmp(f[0], "user") == 0 &&
		    strcasecmp(f[1], "backend") == 0)
			continue;	/* the header */
		entry_add(es, conf, file, line, f[0], f[1], f[2], f[3]);
	}
	free(buf);
	fclose(fp);
}

static void
entries_free(struct entries *es)
{
	size_t i;

	for (i = 0; i < es->n; i++) {
		free(es->e[i].user);
		free(es->e[i].backend);
		free(es->e[i].state);
		free(es->e[i].target);
	}
	free(es->e);
}

static void
progress(size_t done, size_t total)
{
	static int tty = -1;

	if (tty == -1)
		tty = isatty(STDERR_FILENO);
	if (!tty || total == 0)
		return;
	fprintf(stderr, "\rimport: %zu/%zu (%3zu%%)", done, total,
	    done * 100 / total);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}

static int
cmd_import(int argc, char **argv)
{
	struct entries es;
	const char **args;
	struct ctl_rows rows;
	enum ctl_status st, worst = CTL_OK;
	unsigned long stored = 0, unchanged = 0, failed = 0, a, b, c;
	uint64_t t0;
	double secs;
	size_t i, j, n;
	char *msg = NULL;

	if (argc != 2 || (strcmp(argv[0], "popmap") != 0 &&
	    strcmp(argv[0], "csv") != 0))
		usage();
	need_config();
	memset(&es, 0, sizeof(es));
	read_import(argv[0], argv[1], &es);
	if (es.errors > 0) {
		if (es.errors > IMPORT_ERRORS_SHOWN)
			fprintf(stderr, "%s: %u more errors\n", argv[1],
			    es.errors - IMPORT_ERRORS_SHOWN);
		msg = xasprintf("%s: %u errors; nothing imported", argv[1],
		    es.errors);
		fail(EXIT_FAIL, msg);
	}
	open_directory(true);
	args = xcalloc(IMPORT_COLS * CTL_IMPORT_ROWS, sizeof(*args));
	t0 = mm_now_ms();
	for (i = 0; i < es.n; i += n) {
		n = es.n - i < CTL_IMPORT_ROWS ? es.n - i : CTL_IMPORT_ROWS;
		for (j = 0; j < n; j++) {
			args[IMPORT_COLS * j] = es.e[i + j].user;
			args[IMPORT_COLS * j + 1] = es.e[i + j].backend;
			args[IMPORT_COLS * j + 2] = es.e[i + j].state;
			args[IMPORT_COLS * j + 3] = es.e[i + j].target;
		}
		ctl_rows_init(&rows);
		st = call("import-users", IMPORT_COLS * n, args, &msg, &rows);
		if (sscanf(msg, "stored=%lu unchanged=%lu failed=%lu", &a, &b,
		    &c) == 3) {
			stored += a;
			unchanged += b;
			failed += c;
		} else if (st != CTL_OK) {
			fprintf(stderr, "%s: %s\n", argv[1], msg);
		}
		for (j = 1; j < rows.n; j++) {
			unsigned long k;

			if (rows.row[j].n != 2 ||
			    sscanf(rows.row[j].col[0], "%lu", &k) != 1 ||
			    k >= n)
				continue;
			fprintf(stderr, "%s:%lu: %s: %s\n", argv[1],
			    es.e[i + k].line, es.e[i + k].user,
			    rows.row[j].col[1]);
		}
		free(msg);
		msg = NULL;
		ctl_rows_clear(&rows);
		if (st != CTL_OK && (worst == CTL_OK || st == CTL_TEMP))
			worst = st;
		progress(i + n, es.n);
		if (st != CTL_OK && st != CTL_FAILED)
			break;	/* the node is busy or gone: stop here */
	}
	secs = (double)(mm_now_ms() - t0) / 1000.0;
	if (ctl.json)
		printf("{\"stored\":%lu,\"unchanged\":%lu,\"failed\":%lu,"
		    "\"seconds\":%.3f}\n", stored, unchanged, failed, secs);
	else
		printf("%s: stored=%lu unchanged=%lu failed=%lu "
		    "(%.1f s, %.0f users/s)\n", argv[1], stored, unchanged,
		    failed, secs, secs > 0 ? (double)es.n / secs : 0.0);
	free(args);
	entries_free(&es);
	close_directory();
	return (int)worst;
}

struct export_out {
	bool csv;
	bool started;		/* the header row came (and went) */
};

/* A slice of an export, printed as it comes. */
static void
export_rows(void *arg, const struct ctl_rows *rows)
{
	struct export_out *eo = arg;
	size_t i = 0;

	if (!eo->started && rows->n > 0) {
		eo->started = true;
		i = 1;
		if (eo->csv)
			printf("user,backend,state,target_site\n");
	}
	for (; i < rows->n; i++) {
		const struct ctl_row *r = &rows->row[i];

		if (r->n != 3 && r->n != 4)
			continue;
		/* The target only where there is one: the state column
		 * stays last for users that are not moving. */
		if (eo->csv && r->n == 4 && r->col[3][0] != '\0')
			printf("%s,%s,%s,%s\n", r->col[0], r->col[1],
			    r->col[2], r->col[3]);
		else if (eo->csv)
			printf("%s,%s,%s\n", r->col[0], r->col[1], r->col[2]);
		else
			printf("%s: %s\n", r->col[0], r->col[1]);
	}
}

static int
cmd_export(int argc, char **argv)
{
	struct export_out eo = { false, false };
	enum ctl_status st;
	char *msg = NULL;

	if (argc != 1 || (strcmp(argv[0], "popmap") != 0 &&
	    strcmp(argv[0], "csv") != 0))
		usage();
	eo.csv = strcmp(argv[0], "csv") == 0;
	open_directory(false);
	st = call_rows("export", 0, NULL, export_rows, &eo, &msg);
	/* What came before a failure is out already: a partial export
	 * exits non-zero. */
	if (st != CTL_OK)
		fail((int)st, msg);
	free(msg);
	close_directory();
	return EXIT_OK;
}

/* verify's faults, printed as they come (JSON: the faults array first,
 * the counts after it, known only at the end). */
struct verify_out {
	bool started;		/* the header row came */
	size_t n;		/* faults printed */
	struct ctl_rows hdr;
};

static void
verify_rows(void *arg, const struct ctl_rows *rows)
{
	struct verify_out *vo = arg;
	size_t i = 0;

	if (!vo->started && rows->n > 0) {
		vo->started = true;
		(void)ctl_rows_add(&vo->hdr, rows->row[0].n,
		    (const char *const *)rows->row[0].col);
		i = 1;
		if (ctl.json)
			printf("{\"faults\":[");
	}
	for (; i < rows->n; i++) {
		if (ctl.json) {
			if (vo->n > 0)
				putchar(',');
			json_object(&vo->hdr.row[0], &rows->row[i]);
		} else if (rows->row[i].n == 2) {
			printf("%s: %s\n", rows->row[i].col[0],
			    rows->row[i].col[1]);
		}
		vo->n++;
	}
}

static int
cmd_verify(int argc, char **argv)
{
	struct verify_out vo;
	enum ctl_status st;
	unsigned long long checked = 0, bad = 0, eq = 0;
	char *msg = NULL;

	if (argc != 0)
		usage();
	memset(&vo, 0, sizeof(vo));
	ctl_rows_init(&vo.hdr);
	open_directory(false);
	st = call_rows("verify", 0, NULL, verify_rows, &vo, &msg);
	if (sscanf(msg, "checked=%llu bad=%llu equivocations=%llu", &checked,
	    &bad, &eq) != 3) {
		if (st == CTL_OK)
			st = CTL_FAILED;
		if (ctl.json && vo.started) {
			printf("],\"error\":");
			json_str(stdout, msg);
			printf(",\"status\":%d}\n", (int)st);
			fprintf(stderr, "mmctl: %s\n", msg);
			exit((int)st);
		}
		fail((int)st, msg);
	}
	if (ctl.json) {
		if (!vo.started)
			printf("{\"faults\":[");
		printf("],\"checked\":%llu,\"bad\":%llu,\"equivocations\":"
		    "%llu}\n", checked, bad, eq);
	} else {
		printf("verify: %llu records checked, %llu bad, %llu "
		    "equivocations: %s\n", checked, bad, eq,
		    st == CTL_OK ? "OK" : "FAULTS");
	}
	free(msg);
	ctl_rows_clear(&vo.hdr);
	close_directory();
	return (int)st;
}

/* ---- check ---------------------------------------------------------- */

static const struct {
	const char *kind, *title;
} check_sections[] = {
	{ "unreachable", "Nodes that could not be reached" },
	{ "incomplete", "Nodes checked only in part" },
	{ "lagging", "Nodes behind on an origin's records" },
	{ "disagree", "Users on which sites disagree" },
	{ "owned-twice", "Users owned by more than one site" },
	{ "invalid", "Invalid records" },
	{ "equivocation", "Equivocating records" },
	{ "conflict", "Users two sites claim (the site to keep one: mmctl "
	    "user resolve USER SITE)" },
	{ "stuck", "Users stuck mid-move" },
	{ "unknown-backend", "Back ends the owning site does not define" },
};

static void
check_print_row(const struct ctl_row *r)
{
	const char *kind = r->col[0], *user = r->col[1], *site = r->col[2],
	    *node = r->col[3], *detail = r->col[10];

	if (strcmp(kind, "conflict") == 0 && user[0] != '\0') {
		printf("  %s  at %s/%s: %s\n", user, site, node, detail);
	} else if (strcmp(kind, "disagree") == 0 ||
	    strcmp(kind, "owned-twice") == 0 || strcmp(kind, "stuck") == 0) {
		printf("  %s  at %s/%s: ", user, site, node);
		if (r->col[4][0] != '\0')
			printf("site=%s backend=%s state=%s epoch=%s seq=%s "
			    "origin=%s", r->col[4], r->col[5], r->col[6],
			    r->col[7], r->col[8], r->col[9]);
		if (detail[0] != '\0')
			printf("%s%s", r->col[4][0] != '\0' ? "  " : "",
			    detail);
		putchar('\n');
	} else if (strcmp(kind, "unknown-backend") == 0) {
		printf("  %s (e.g. %s)\n", detail, user);
	} else {
		printf("  %s/%s: %s\n", site, node, detail);
	}
}

static void
check_json_rows(const struct ctl_rows *rows, bool nodes)
{
	bool first = true;
	size_t i;

	putchar('[');
	for (i = 1; i < rows->n; i++) {
		if ((strcmp(rows->row[i].col[0], "node") == 0) != nodes)
			continue;
		if (!first)
			putchar(',');
		first = false;
		json_object(&rows->row[0], &rows->row[i]);
	}
	putchar(']');
}

/* The node mmctl talks to asks every other node; --direct (or no node
 * running) checks this store alone. */
static int
cmd_check(int argc, char **argv)
{
	struct ctl_rows rows;
	enum ctl_status st;
	char *msg = NULL;
	size_t i, j, n;

	if (argc != 0)
		usage();
	open_directory(false);
	ctl_rows_init(&rows);
	st = call("check", 0, NULL, &msg, &rows);
	if (rows.n == 0 || rows.row[0].n != 11) {
		if (st == CTL_OK)
			st = CTL_FAILED;
		fail((int)st, msg);
	}
	if (ctl.json) {
		printf("{\"status\":%d,\"summary\":", (int)st);
		json_str(stdout, msg);
		printf(",\"nodes\":");
		check_json_rows(&rows, true);
		printf(",\"findings\":");
		check_json_rows(&rows, false);
		printf("}\n");
	} else {
		printf("Nodes:\n");
		for (i = 1; i < rows.n; i++)
			if (strcmp(rows.row[i].col[0], "node") == 0)
				printf("  %s/%s: %s\n", rows.row[i].col[2],
				    rows.row[i].col[3], rows.row[i].col[10]);
		for (j = 0; j < MM_ARRAY_SIZE(check_sections); j++) {
			for (i = 1, n = 0; i < rows.n; i++)
				if (strcmp(rows.row[i].col[0],
				    check_sections[j].kind) == 0)
					n++;
			if (n == 0)
				continue;
			printf("%s (%zu):\n", check_sections[j].title, n);
			for (i = 1; i < rows.n; i++)
				if (strcmp(rows.row[i].col[0],
				    check_sections[j].kind) == 0)
					check_print_row(&rows.row[i]);
		}
		printf("%s\n", msg);
	}
	free(msg);
	ctl_rows_clear(&rows);
	close_directory();
	return (int)st;
}

static int
cmd_stats(int argc, char **argv)
{
	if (argc != 0)
		usage();
	return simple("stats", 0, NULL, false, false);
}

/* ---- keys ----------------------------------------------------------- */

static bool
exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0 || errno != ENOENT;
}

/* mkdir -p: missing parents as the umask allows, path itself 0700 (it
 * will hold the root's secret key). 0, or -1 with errno. */
static int
make_dirs(const char *path)
{
	char *p = xstrdup(path), *s;
	int rc = -1;

	for (s = p + 1; (s = strchr(s, '/')) != NULL; s++) {
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			goto done;
		*s = '/';
	}
	if (mkdir(p, 0700) != 0 && errno != EEXIST)
		goto done;
	rc = 0;
done:
	free(p);
	return rc;
}

static int
new_key_pair(const char *secret, const char *pub)
{
	struct dkey k;
	char kid[DKEY_ID_HEX_LEN + 1];
	char *err = NULL;

	if (exists(secret) || exists(pub)) {
		char *msg = xasprintf("%s or %s exists: refusing to overwrite "
		    "a key", secret, pub);

		fail(EXIT_FAIL, msg);
	}
	if (dkey_init() != 0)
		fail(EXIT_FAIL, "libsodium cannot start");
	dkey_generate(&k);
	if (dkey_save_secret(&k, secret, 0, &err) != 0 ||
	    dkey_save_public(&k, pub, &err) != 0) {
		dkey_clear(&k);
		fail(errno == EACCES ? EXIT_PERM : EXIT_FAIL, err);
	}
	dkey_id_hex(k.id, kid);
	dkey_clear(&k);
	if (ctl.json) {
		printf("{\"key_id\":\"%s\",\"secret\":", kid);
		json_str(stdout, secret);
		printf(",\"public\":");
		json_str(stdout, pub);
		printf("}\n");
	} else {
		printf("key %s: secret %s (mode 0600), public %s\n", kid,
		    secret, pub);
	}
	return EXIT_OK;
}

static void
load_root_secret(const char *path, struct dkey *k)
{
	struct mm_config *conf = need_config();
	struct dkey pub;
	char *err = NULL;

	if (dkey_load_secret(path, k, &err) != 0)
		fail(strstr(err, "permission") != NULL ? EXIT_PERM :
		    EXIT_FAIL, err);
	/* A certificate from another cluster's root would only be
	 * rejected by the store, with a less helpful word. */
	if (ops_load_root_public(conf, &pub, &err) != 0)
		fail(strstr(err, "permission") != NULL ? EXIT_PERM :
		    EXIT_FAIL, err);
	if (memcmp(pub.pk, k->pk, DKEY_PK_LEN) != 0) {
		char *msg = xasprintf("%s is not the root key of this cluster "
		    "(root-key %s in %s)", path, conf->root_key, conf->path);

		dkey_clear(k);
		fail(EXIT_FAIL, msg);
	}
}

/* Hands the envelope the root just signed (len bytes, or len < 0 when
 * encoding failed, why saying why) to the directory; what names the
 * record in the message. */
static int
submit_signed(const uint8_t *env, int len, const char *why, const char *what)
{
	char *hex, *msg = NULL;
	struct ctl_rows rows;
	enum ctl_status st;
	const char *args[1];
	size_t i;

	if (len < 0) {
		msg = xasprintf("cannot sign the %s: %s", what,
		    why != NULL ? why : "too large");
		fail(EXIT_FAIL, msg);
	}
	hex = xmalloc(2 * (size_t)len + 1);
	for (i = 0; i < (size_t)len; i++)
		snprintf(hex + 2 * i, 3, "%02x", env[i]);
	open_directory(false);
	args[0] = hex;
	ctl_rows_init(&rows);
	st = call("keys-accept", 1, args, &msg, &rows);
	if (st != CTL_OK)
		fail((int)st, msg);
	if (ctl.json) {
		printf("{\"result\":");
		json_str(stdout, msg);
		printf("}\n");
	} else {
		printf("%s\n", msg);
	}
	free(msg);
	free(hex);
	ctl_rows_clear(&rows);
	close_directory();
	return EXIT_OK;
}

static int
cmd_keys_certify(int argc, char **argv)
{
	const char *root = NULL, *pubf = NULL, *role = NULL, *site = NULL,
	    *name = NULL, *days = NULL;
	struct record_cert c;
	struct dkey rk, pk;
	uint8_t env[RECORD_MAX];
	const char *why = NULL;
	char *err = NULL, *end;
	unsigned long nd = 0;
	uint64_t now = (uint64_t)time(NULL);
	int len;
	const struct opt opts[] = {
		{ "--root", &root }, { "--pub", &pubf }, { "--role", &role },
		{ "--site", &site }, { "--name", &name },
		{ "--expires-days", &days }, { NULL, NULL },
	};

	parse_opts(argc, argv, opts);
	if (root == NULL || pubf == NULL || role == NULL || site == NULL ||
	    name == NULL)
		usage();
	memset(&c, 0, sizeof(c));
	if (record_role_parse(role, &c.role) != 0)
		fail(EXIT_USAGE, "--role is site, node, operator or transport");
	if (!record_site_valid(site))
		fail(EXIT_USAGE, "--site: 1-32 of a-z 0-9 -");
	if (!record_name_valid(name))
		fail(EXIT_USAGE, "--name: not a valid node or operator name");
	if (days != NULL) {
		errno = 0;
		nd = strtoul(days, &end, 10);
		if (errno != 0 || *end != '\0' || days[0] == '\0' ||
		    days[0] == '-' || nd == 0 || nd > EXPIRES_DAYS_MAX)
			fail(EXIT_USAGE, "--expires-days: 1 to 36500");
	}
	if (dkey_init() != 0)
		fail(EXIT_FAIL, "libsodium cannot start");
	need_config();
	load_root_secret(root, &rk);
	if (dkey_load_public(pubf, &pk, &err) != 0)
		fail(EXIT_FAIL, err);
	memcpy(c.pk, pk.pk, DKEY_PK_LEN);
	mm_strlcpy(c.site, site, sizeof(c.site));
	mm_strlcpy(c.name, name, sizeof(c.name));
	c.issued = now;
	c.expires = nd != 0 ? now + (uint64_t)nd * DAY_S : 0;
	root_origin(pk.id, c.origin, sizeof(c.origin));
	c.origin_seq = ops_root_next_seq(ctl.conf->directory, c.origin);
	len = record_encode_cert(&c, &rk, env, sizeof(env), &why);
	dkey_clear(&rk);
	return submit_signed(env, len, why, "certificate");
}

static int
cmd_keys_revoke(int argc, char **argv)
{
	const char *root = NULL, *pubf = NULL, *id = NULL, *reason = "";
	struct record_revoke v;
	struct dkey rk, pk;
	uint8_t env[RECORD_MAX];
	const char *why = NULL;
	char *err = NULL;
	int i, len;
	const struct opt opts[] = {
		{ "--root", &root }, { "--pub", &pubf }, { "--id", &id },
		{ "--reason", &reason }, { NULL, NULL },
	};

	parse_opts(argc, argv, opts);
	if (root == NULL || (pubf == NULL) == (id == NULL))
		usage();
	if (strlen(reason) > RECORD_REASON_MAX)
		fail(EXIT_USAGE, "--reason: at most 128 bytes");
	memset(&v, 0, sizeof(v));
	if (dkey_init() != 0)
		fail(EXIT_FAIL, "libsodium cannot start");
	if (pubf != NULL) {
		if (dkey_load_public(pubf, &pk, &err) != 0)
			fail(EXIT_FAIL, err);
		memcpy(v.key_id, pk.id, DKEY_ID_LEN);
	} else {
		if (strlen(id) != DKEY_ID_HEX_LEN ||
		    strspn(id, "0123456789abcdef") != DKEY_ID_HEX_LEN)
			fail(EXIT_USAGE, "--id: 16 lower-case hex digits, as "
			    "keys list shows");
		for (i = 0; i < DKEY_ID_LEN; i++) {
			unsigned b;

			sscanf(id + 2 * i, "%2x", &b);
			v.key_id[i] = (uint8_t)b;
		}
	}
	need_config();
	load_root_secret(root, &rk);
	v.timestamp = (uint64_t)time(NULL);
	mm_strlcpy(v.reason, reason, sizeof(v.reason));
	root_origin(v.key_id, v.origin, sizeof(v.origin));
	v.origin_seq = ops_root_next_seq(ctl.conf->directory, v.origin);
	len = record_encode_revoke(&v, &rk, env, sizeof(env), &why);
	dkey_clear(&rk);
	return submit_signed(env, len, why, "revocation");
}

static int
cmd_keys(int argc, char **argv)
{
	struct lister l;
	char *err = NULL, *a, *b;
	int rc;

	if (argc < 1)
		usage();
	if (strcmp(argv[0], "root-init") == 0 && argc == 2) {
		if (make_dirs(argv[1]) != 0) {
			char *msg = xasprintf("%s: cannot create: %s", argv[1],
			    strerror(errno));

			fail(errno == EACCES ? EXIT_PERM : EXIT_FAIL, msg);
		}
		a = xasprintf("%s/root.key", argv[1]);
		b = xasprintf("%s/root.pub", argv[1]);
		rc = new_key_pair(a, b);
		free(a);
		free(b);
		return rc;
	}
	if (strcmp(argv[0], "new") == 0 && argc == 2) {
		b = xasprintf("%s.pub", argv[1]);
		rc = new_key_pair(argv[1], b);
		free(b);
		return rc;
	}
	if (strcmp(argv[0], "certify") == 0)
		return cmd_keys_certify(argc - 1, argv + 1);
	if (strcmp(argv[0], "revoke") == 0)
		return cmd_keys_revoke(argc - 1, argv + 1);
	if (strcmp(argv[0], "list") == 0 && argc == 1) {
		if (dkey_init() != 0)
			fail(EXIT_FAIL, "libsodium cannot start");
		need_config();
		if (!ctl.direct) {
			int code = EXIT_FAIL, r;

			r = connect_node(ctl.conf->control_socket, &code, &err);
			if (r < 0)
				fail(code, err);
			if (r == 1)
				return simple("keys-list", 0, NULL, true,
				    false);
		}
		/* Read-only, from this process: allowed beside a running
		 * agent, which is another process. */
		lister_init(&l);
		rc = ops_keys_rows(ctl.conf->directory, (uint64_t)time(NULL),
		    lister_rows, &l, &err);
		if (rc == 0 || l.hdr.n > 0)
			lister_end(&l);
		if (rc != 0)
			fail(access(ctl.conf->directory, R_OK) != 0 &&
			    errno == EACCES ? EXIT_PERM : EXIT_FAIL, err);
		return EXIT_OK;
	}
	usage();
	return EXIT_USAGE;
}

/* ---- routing questions (unchanged) ---------------------------------- */

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
		else if (strcmp(argv[1], "smtp") == 0)
			proto = MM_PROTO_SMTP;
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
		printf("%s %s backend=%s addr=%s:%u tls=%s%s\n", argv[0],
		    mm_proto_name(proto), route.backend->name, route.host,
		    route.port, route.backend->tls == MM_TLS_NONE ? "none" :
		    route.backend->tls == MM_TLS_STARTTLS ? "starttls" :
		    "implicit", proto != MM_PROTO_SMTP ? "" :
		    route.backend->lmtp ? " via=lmtp" : " via=smtp");
		rc = EXIT_OK;
	} else if (r == DIR_REMOTE) {
		printf("%s %s remote site=%s\n", argv[0], mm_proto_name(proto),
		    route.site);
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
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "direct", no_argument, NULL, 'D' },
		{ "config", required_argument, NULL, 'c' },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "+c:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			ctl.cpath = optarg;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'D':
			ctl.direct = true;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	mm_log_init("mmctl", MM_LOG_STDERR, false);
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(argv[0], "lookup") == 0)
		return cmd_lookup(ctl.cpath, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[0], "popmap") == 0 &&
	    strcmp(argv[1], "check") == 0)
		return cmd_popmap_check(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[0], "config") == 0 &&
	    strcmp(argv[1], "check") == 0)
		return cmd_config_check(ctl.cpath, argc - 2, argv + 2);
	if (strcmp(argv[0], "user") == 0)
		rc = cmd_user(argc - 1, argv + 1);
	else if (strcmp(argv[0], "import") == 0)
		rc = cmd_import(argc - 1, argv + 1);
	else if (strcmp(argv[0], "export") == 0)
		rc = cmd_export(argc - 1, argv + 1);
	else if (strcmp(argv[0], "verify") == 0)
		rc = cmd_verify(argc - 1, argv + 1);
	else if (strcmp(argv[0], "check") == 0)
		rc = cmd_check(argc - 1, argv + 1);
	else if (strcmp(argv[0], "keys") == 0)
		rc = cmd_keys(argc - 1, argv + 1);
	else if (strcmp(argv[0], "stats") == 0)
		rc = cmd_stats(argc - 1, argv + 1);
	else if (strcmp(argv[0], "sites") == 0)
		rc = cmd_sites(argc - 1, argv + 1);
	else if (strcmp(argv[0], "sessions") == 0)
		rc = cmd_sessions(argc - 1, argv + 1);
	else if (strcmp(argv[0], "kick") == 0)
		rc = cmd_kick(argc - 1, argv + 1);
	else if (strcmp(argv[0], "move") == 0)
		rc = cmd_move(argc - 1, argv + 1);
	else if (strcmp(argv[0], "moves") == 0)
		rc = cmd_moves(argc - 1, argv + 1);
	else
		usage();
	mm_config_free(ctl.conf);
	return rc;
}
