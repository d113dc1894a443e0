/* Per-worker counters in shared memory, summed into the Prometheus text
 * format. Each 64-bit value is stored and loaded whole (relaxed atomics),
 * so a reader never sees half of a write; a key becomes visible to
 * readers only after its name is complete (release/acquire on n_keys). */
#include "mm_metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "mm_log.h"
#include "mm_util.h"

/* Upper bounds of the histograms' buckets, in ms: short waits (a held
 * login, a freeze, a final pass) and long ones (a whole copy). */
#define HIST_BUCKETS 10
static const uint64_t short_le_ms[HIST_BUCKETS] = {
	10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
};
static const uint64_t long_le_ms[HIST_BUCKETS] = {
	1000, 5000, 15000, 60000, 300000, 900000, 1800000, 3600000, 10800000,
	43200000,
};

struct hist {
	uint64_t b[HIST_BUCKETS + 1];	/* + the +Inf bucket */
	uint64_t sum_ms;
};

struct metrics_key {
	uint8_t family;
	uint8_t proto;
	char result[MM_METRICS_RESULT_MAX];
	char backend[MM_METRICS_RESULT_MAX];	/* MM_METRICS_BACKEND */
};

struct mm_metrics_slot {
	uint64_t connections[MM_PROTO_COUNT];
	uint64_t active[MM_PROTO_COUNT];
	uint64_t bytes[MM_PROTO_COUNT][2];
	uint32_t n_keys;
	struct metrics_key keys[MM_METRICS_KEYS_MAX];
	uint64_t counts[MM_METRICS_KEYS_MAX];
	uint64_t other[MM_METRICS_FAMILY_COUNT][MM_PROTO_COUNT];
	struct hist hold;			/* held logins */
	uint64_t move_bytes;			/* dsync streams carried */
};

/* The directory agent's figures, in the order of dir_rows below. */
#define DIR_VALUES 23

struct mm_metrics {
	unsigned workers;
	uint64_t restarts;
	uint64_t dir_published;		/* 0: nothing yet; 2: with gossip */
	uint64_t dir[DIR_VALUES];
	/* The move engine's (the agent, the only writer). */
	uint64_t moves[MM_METRICS_MOVE_OUTCOMES];
	struct hist move_phase[MM_METRICS_MOVE_PHASES];
	struct mm_metrics_slot slot[MM_METRICS_WORKERS_MAX];
};

static const struct {
	const char *name, *type, *help;
	bool gossip;			/* only when the node gossips */
} dir_rows[DIR_VALUES] = {
	{ "mailmesh_directory_records", "gauge",
	    "User records in the store (deleted ones included).", false },
	{ "mailmesh_directory_certificates", "gauge",
	    "Certificates in the store.", false },
	{ "mailmesh_directory_revocations", "gauge",
	    "Revocations in the store.", false },
	{ "mailmesh_directory_origins", "gauge",
	    "Origins whose records the store holds.", false },
	{ "mailmesh_directory_evidence", "gauge",
	    "Equivocating records kept as evidence.", false },
	{ "mailmesh_directory_store_used_bytes", "gauge",
	    "Bytes of the store's map in use.", false },
	{ "mailmesh_directory_store_map_bytes", "gauge",
	    "Size of the store's map.", false },
	{ "mailmesh_gossip_members", "gauge",
	    "Nodes this node knows of, itself included.", true },
	{ "mailmesh_gossip_members_alive", "gauge",
	    "Known nodes not declared dead (suspects and itself included).",
	    true },
	{ "mailmesh_gossip_messages_sent_total", "counter",
	    "Gossip messages sent.", true },
	{ "mailmesh_gossip_bytes_sent_total", "counter",
	    "Gossip bytes sent.", true },
	{ "mailmesh_gossip_messages_received_total", "counter",
	    "Gossip messages received.", true },
	{ "mailmesh_gossip_bytes_received_total", "counter",
	    "Gossip bytes received.", true },
	{ "mailmesh_gossip_records_new_total", "counter",
	    "Records received by gossip and stored.", true },
	{ "mailmesh_gossip_records_duplicate_total", "counter",
	    "Records received by gossip that were already stored.", true },
	{ "mailmesh_gossip_records_rejected_total", "counter",
	    "Records received by gossip that failed the accept rule.", true },
	{ "mailmesh_gossip_probes_total", "counter",
	    "Failure-detector probes sent.", true },
	{ "mailmesh_gossip_probe_failures_total", "counter",
	    "Probes that got no answer.", true },
	{ "mailmesh_gossip_suspicions_total", "counter",
	    "Nodes this node began to suspect.", true },
	{ "mailmesh_gossip_deaths_total", "counter",
	    "Nodes declared dead.", true },
	{ "mailmesh_gossip_refutations_total", "counter",
	    "Suspicions of this node it refuted.", true },
	{ "mailmesh_gossip_throttles_total", "counter",
	    "Times a peer was throttled for sending invalid records.", true },
	{ "mailmesh_gossip_stalls_total", "counter",
	    "Times this node's own gossip timer came late (its process did "
	    "not run): probes and suspicions waited that much longer.", true },
};

static const char *const family_name[MM_METRICS_FAMILY_COUNT] = {
	"mailmesh_session_closes_total",
	"mailmesh_logins_total",
	"mailmesh_smtp_messages_total",
	"mailmesh_backend_failures_total",
};

static const char *const family_help[MM_METRICS_FAMILY_COUNT] = {
	"Client sessions ended, by how they ended.",
	"IMAP and POP3 logins at the back end, by result.",
	"SMTP messages, by the back end's verdict.",
	"Back ends that failed a session (temporary errors), by reason.",
};

static void
add(uint64_t *v, uint64_t n)
{
	__atomic_store_n(v, __atomic_load_n(v, __ATOMIC_RELAXED) + n,
	    __ATOMIC_RELAXED);
}

static uint64_t
get(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

struct mm_metrics *
mm_metrics_new(unsigned workers)
{
	struct mm_metrics *m;

	if (workers > MM_METRICS_WORKERS_MAX)
		workers = MM_METRICS_WORKERS_MAX;
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		fatal("metrics mmap");
	m->workers = workers;
	return m;
}

void
mm_metrics_free(struct mm_metrics *m)
{
	if (m != NULL)
		munmap(m, sizeof(*m));
}

struct mm_metrics_slot *
mm_metrics_slot(struct mm_metrics *m, unsigned w)
{
	return m != NULL && w < m->workers ? &m->slot[w] : NULL;
}

void
mm_metrics_worker_start(struct mm_metrics *m, unsigned w)
{
	struct mm_metrics_slot *s = mm_metrics_slot(m, w);
	int p;

	if (s == NULL)
		return;
	for (p = 0; p < MM_PROTO_COUNT; p++)
		__atomic_store_n(&s->active[p], 0, __ATOMIC_RELAXED);
}

void
mm_metrics_count_restart(struct mm_metrics *m)
{
	if (m != NULL)
		add(&m->restarts, 1);
}

void
mm_metrics_connection(struct mm_metrics_slot *s, enum mm_proto p)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->connections[p], 1);
}

void
mm_metrics_session_open(struct mm_metrics_slot *s, enum mm_proto p)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->active[p], 1);
}

void
mm_metrics_session_end(struct mm_metrics_slot *s, enum mm_proto p)
{
	if (s == NULL || (unsigned)p >= MM_PROTO_COUNT)
		return;
	if (get(&s->active[p]) > 0)
		__atomic_store_n(&s->active[p], get(&s->active[p]) - 1,
		    __ATOMIC_RELAXED);
}

static void
hist_add(struct hist *h, const uint64_t *le, uint64_t ms)
{
	size_t i;

	for (i = 0; i < HIST_BUCKETS && ms > le[i]; i++)
		;
	add(&h->b[i], 1);
	add(&h->sum_ms, ms);
}

void
mm_metrics_login_held(struct mm_metrics_slot *s, uint64_t ms)
{
	if (s != NULL)
		hist_add(&s->hold, short_le_ms, ms);
}

void
mm_metrics_move_bytes(struct mm_metrics_slot *s, uint64_t n)
{
	if (s != NULL)
		add(&s->move_bytes, n);
}

void
mm_metrics_move_outcome(struct mm_metrics *m, enum mm_metrics_move_outcome o)
{
	if (m != NULL && (unsigned)o < MM_METRICS_MOVE_OUTCOMES)
		add(&m->moves[o], 1);
}

void
mm_metrics_move_phase(struct mm_metrics *m, enum mm_metrics_move_phase p,
    uint64_t ms)
{
	if (m != NULL && (unsigned)p < MM_METRICS_MOVE_PHASES)
		hist_add(&m->move_phase[p], p == MM_METRICS_MOVE_COPY ?
		    long_le_ms : short_le_ms, ms);
}

void
mm_metrics_bytes(struct mm_metrics_slot *s, enum mm_proto p, enum mm_metrics_dir d,
    uint64_t n)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->bytes[p][d == MM_METRICS_OUT], n);
}

static bool
key_is(const struct metrics_key *k, int f, int p, const char *result,
    const char *backend)
{
	return k->family == f && k->proto == p &&
	    strcmp(k->result, result) == 0 &&
	    strcmp(k->backend, backend) == 0;
}

static void
count_key(struct mm_metrics_slot *s, enum mm_metrics_family f,
    enum mm_proto p, const char *result, const char *backend)
{
	uint32_t i, n;

	if (s == NULL || (unsigned)f >= MM_METRICS_FAMILY_COUNT ||
	    (unsigned)p >= MM_PROTO_COUNT)
		return;
	n = __atomic_load_n(&s->n_keys, __ATOMIC_RELAXED);
	for (i = 0; i < n; i++) {
		if (key_is(&s->keys[i], f, p, result, backend)) {
			add(&s->counts[i], 1);
			return;
		}
	}
	if (n == MM_METRICS_KEYS_MAX || strlen(result) >= MM_METRICS_RESULT_MAX ||
	    strlen(backend) >= MM_METRICS_RESULT_MAX) {
		add(&s->other[f][p], 1);
		return;
	}
	s->keys[n].family = (uint8_t)f;
	s->keys[n].proto = (uint8_t)p;
	mm_strlcpy(s->keys[n].result, result, MM_METRICS_RESULT_MAX);
	mm_strlcpy(s->keys[n].backend, backend, MM_METRICS_RESULT_MAX);
	__atomic_store_n(&s->counts[n], 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->n_keys, n + 1, __ATOMIC_RELEASE);
}

void
mm_metrics_count(struct mm_metrics_slot *s, enum mm_metrics_family f,
    enum mm_proto p, const char *result)
{
	count_key(s, f, p, result, "");
}

void
mm_metrics_backend_fail(struct mm_metrics_slot *s, enum mm_proto p,
    const char *backend, const char *reason)
{
	count_key(s, MM_METRICS_BACKEND, p, reason, backend);
}

void
mm_metrics_set_directory(struct mm_metrics *m, const struct mm_metrics_directory *d)
{
	const uint64_t v[DIR_VALUES] = {
		d->records, d->certs, d->revoked, d->origins, d->evidence,
		d->store_used_bytes, d->store_map_bytes,
		d->members, d->alive, d->msgs_sent, d->bytes_sent,
		d->msgs_recv, d->bytes_recv, d->records_new, d->records_dup,
		d->records_rejected, d->probes, d->probe_failures,
		d->suspicions, d->deaths, d->refutations, d->throttles,
		d->stalls,
	};
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < DIR_VALUES; i++)
		__atomic_store_n(&m->dir[i], v[i], __ATOMIC_RELAXED);
	__atomic_store_n(&m->dir_published, d->gossip ? 2 : 1,
	    __ATOMIC_RELEASE);
}

/* ---- rendering -------------------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap;
	bool full;
};

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->full = true;
		return;
	}
	o->len += (size_t)n;
}

static void
header(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void
put_label_value(struct out *o, const char *v)
{
	char esc[2 * MM_METRICS_RESULT_MAX];
	size_t j = 0;

	for (; *v != '\0' && j + 2 < sizeof(esc); v++) {
		if (*v == '\\' || *v == '"') {
			esc[j++] = '\\';
			esc[j++] = *v;
		} else if (*v == '\n') {
			esc[j++] = '\\';
			esc[j++] = 'n';
		} else {
			esc[j++] = *v;
		}
	}
	esc[j] = '\0';
	put(o, "%s", esc);
}

/* One key of one slot, with its count read once, for the merge. */
struct entry {
	const struct metrics_key *k;
	uint64_t count;
};

static int
entry_cmp(const void *a, const void *b)
{
	const struct metrics_key *x = ((const struct entry *)a)->k;
	const struct metrics_key *y = ((const struct entry *)b)->k;
	int c;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->proto != y->proto)
		return x->proto < y->proto ? -1 : 1;
	if ((c = strcmp(x->backend, y->backend)) != 0)
		return c;
	return strcmp(x->result, y->result);
}

/* Every slot's keys of every family, sorted so that equal keys of
 * different workers sit together: one pass sums them. *n_r entries;
 * the caller frees the array. */
static struct entry *
collect(const struct mm_metrics *m, size_t *n_r)
{
	struct entry *e = xcalloc((size_t)m->workers * MM_METRICS_KEYS_MAX + 1,
	    sizeof(*e));
	size_t n = 0;
	unsigned w;
	uint32_t i, nk;

	for (w = 0; w < m->workers; w++) {
		const struct mm_metrics_slot *s = &m->slot[w];

		nk = __atomic_load_n(&s->n_keys, __ATOMIC_ACQUIRE);
		for (i = 0; i < nk && i < MM_METRICS_KEYS_MAX; i++) {
			e[n].k = &s->keys[i];
			e[n].count = get(&s->counts[i]);
			n++;
		}
	}
	qsort(e, n, sizeof(*e), entry_cmp);
	*n_r = n;
	return e;
}

static void
render_family(struct out *o, const struct mm_metrics *m,
    enum mm_metrics_family f, const struct entry *e, size_t n)
{
	size_t i, j;
	unsigned w;
	int p;

	header(o, family_name[f], "counter", family_help[f]);
	for (i = 0; i < n; i = j) {
		const struct metrics_key *k = e[i].k;
		uint64_t v = 0;

		for (j = i; j < n && entry_cmp(&e[i], &e[j]) == 0; j++)
			v += e[j].count;
		if (k->family != f)
			continue;
		put(o, "%s{proto=\"%s\",", family_name[f],
		    mm_proto_name((enum mm_proto)k->proto));
		if (f == MM_METRICS_BACKEND) {
			put(o, "backend=\"");
			put_label_value(o, k->backend);
			put(o, "\",reason=\"");
		} else {
			put(o, "result=\"");
		}
		put_label_value(o, k->result);
		put(o, "\"} %llu\n", (unsigned long long)v);
	}
	for (p = 0; p < MM_PROTO_COUNT; p++) {
		uint64_t v = 0;

		for (w = 0; w < m->workers; w++)
			v += get(&m->slot[w].other[f][p]);
		if (v > 0)
			put(o, "%s{proto=\"%s\",%s=\"other\"} %llu\n",
			    family_name[f], mm_proto_name((enum mm_proto)p),
			    f == MM_METRICS_BACKEND ? "reason" : "result",
			    (unsigned long long)v);
	}
}

/* The counters kept per protocol in each slot. */
static const struct {
	const char *name, *type, *help;
	size_t offset;
} per_proto[] = {
	{ "mailmesh_connections_total", "counter",
	    "Client connections accepted.",
	    offsetof(struct mm_metrics_slot, connections) },
	{ "mailmesh_sessions_active", "gauge", "Client sessions open now.",
	    offsetof(struct mm_metrics_slot, active) },
};

/* One histogram's samples (the sum of hs[0..n), each stride bytes after
 * the last: the workers' slots), labelled with label (may be "") . */
static void
render_hist(struct out *o, const char *name, const char *label,
    const struct hist *h0, size_t n, size_t stride, const uint64_t *le)
{
	uint64_t c = 0, sum = 0;
	size_t i, w;

	for (i = 0; i <= HIST_BUCKETS; i++) {
		for (w = 0; w < n; w++)
			c += get(&((const struct hist *)(const void *)(
			    (const char *)h0 + w * stride))->b[i]);
		if (i < HIST_BUCKETS)
			put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, label,
			    label[0] != '\0' ? "," : "",
			    (double)le[i] / 1000, (unsigned long long)c);
		else
			put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name,
			    label, label[0] != '\0' ? "," : "",
			    (unsigned long long)c);
	}
	for (w = 0; w < n; w++)
		sum += get(&((const struct hist *)(const void *)(
		    (const char *)h0 + w * stride))->sum_ms);
	put(o, "%s_sum%s%s%s %.3f\n%s_count%s%s%s %llu\n", name,
	    label[0] != '\0' ? "{" : "", label, label[0] != '\0' ? "}" : "",
	    (double)sum / 1000, name, label[0] != '\0' ? "{" : "", label,
	    label[0] != '\0' ? "}" : "", (unsigned long long)c);
}

static void
render_moves(struct out *o, const struct mm_metrics *m)
{
	static const char *const outcome[MM_METRICS_MOVE_OUTCOMES] = {
		"done", "aborted", "freeze_abandoned",
	};
	static const char *const phase[MM_METRICS_MOVE_PHASES] = {
		"copy", "freeze", "final_pass",
	};
	char label[32];
	uint64_t bytes = 0;
	unsigned w;
	size_t i;

	header(o, "mailmesh_login_hold_seconds", "histogram",
	    "How long logins for a user frozen mid-move were held.");
	render_hist(o, "mailmesh_login_hold_seconds", "", &m->slot[0].hold,
	    m->workers, sizeof(m->slot[0]), short_le_ms);
	header(o, "mailmesh_moves_total", "counter",
	    "Moves this node coordinated, by outcome.");
	for (i = 0; i < MM_METRICS_MOVE_OUTCOMES; i++)
		put(o, "mailmesh_moves_total{outcome=\"%s\"} %llu\n",
		    outcome[i], (unsigned long long)get(&m->moves[i]));
	header(o, "mailmesh_move_phase_seconds", "histogram",
	    "How long moves spent copying (MOVING), frozen, and in the last "
	    "pass inside the freeze.");
	for (i = 0; i < MM_METRICS_MOVE_PHASES; i++) {
		snprintf(label, sizeof(label), "phase=\"%s\"", phase[i]);
		render_hist(o, "mailmesh_move_phase_seconds", label,
		    &m->move_phase[i], 1, 0, i == MM_METRICS_MOVE_COPY ?
		    long_le_ms : short_le_ms);
	}
	header(o, "mailmesh_move_bytes_total", "counter",
	    "Bytes of moves' dsync streams this node carried, both ways.");
	for (w = 0; w < m->workers; w++)
		bytes += get(&m->slot[w].move_bytes);
	put(o, "mailmesh_move_bytes_total %llu\n", (unsigned long long)bytes);
}

size_t
mm_metrics_render(const struct mm_metrics *m, char *out, size_t outlen)
{
	struct out o = { out, 0, outlen, false };
	uint64_t v[MM_PROTO_COUNT][2];
	struct entry *entries;
	size_t n_entries;
	unsigned w;
	size_t i;
	int p, f;

	if (outlen == 0)
		return 0;
	for (i = 0; i < MM_ARRAY_SIZE(per_proto); i++) {
		header(&o, per_proto[i].name, per_proto[i].type,
		    per_proto[i].help);
		for (p = 0; p < MM_PROTO_COUNT; p++) {
			uint64_t n = 0;

			for (w = 0; w < m->workers; w++)
				n += get((const uint64_t *)(const void *)
				    ((const char *)&m->slot[w] +
				    per_proto[i].offset) + p);
			put(&o, "%s{proto=\"%s\"} %llu\n", per_proto[i].name,
			    mm_proto_name((enum mm_proto)p),
			    (unsigned long long)n);
		}
	}
	header(&o, "mailmesh_relay_bytes_total", "counter",
	    "Bytes relayed after login; in: client to back end.");
	memset(v, 0, sizeof(v));
	for (w = 0; w < m->workers; w++)
		for (p = 0; p < MM_PROTO_COUNT; p++) {
			v[p][0] += get(&m->slot[w].bytes[p][0]);
			v[p][1] += get(&m->slot[w].bytes[p][1]);
		}
	for (p = 0; p < MM_PROTO_COUNT; p++)
		put(&o, "mailmesh_relay_bytes_total{proto=\"%s\",direction="
		    "\"in\"} %llu\nmailmesh_relay_bytes_total{proto=\"%s\","
		    "direction=\"out\"} %llu\n",
		    mm_proto_name((enum mm_proto)p), (unsigned long long)v[p][0],
		    mm_proto_name((enum mm_proto)p), (unsigned long long)v[p][1]);
	entries = collect(m, &n_entries);
	for (f = 0; f < MM_METRICS_FAMILY_COUNT; f++)
		render_family(&o, m, (enum mm_metrics_family)f, entries,
		    n_entries);
	free(entries);
	f = (int)__atomic_load_n(&m->dir_published, __ATOMIC_ACQUIRE);
	for (i = 0; f > 0 && i < DIR_VALUES; i++) {
		if (dir_rows[i].gossip && f < 2)
			continue;
		header(&o, dir_rows[i].name, dir_rows[i].type,
		    dir_rows[i].help);
		put(&o, "%s %llu\n", dir_rows[i].name,
		    (unsigned long long)get(&m->dir[i]));
	}
	render_moves(&o, m);
	header(&o, "mailmesh_worker_restarts_total", "counter",
	    "Proxy workers that died and were started again.");
	put(&o, "mailmesh_worker_restarts_total %llu\n",
	    (unsigned long long)get(&m->restarts));
	header(&o, "mailmesh_workers", "gauge", "Proxy workers configured.");
	put(&o, "mailmesh_workers %u\n", m->workers);
	return o.full ? 0 : o.len;
}
