/* Per-worker counters in shared memory, summed into the Prometheus text
 * format. Each 64-bit value is stored and loaded whole (relaxed atomics),
 * so a reader never sees half of a write; a key becomes visible to
 * readers only after its name is complete (release/acquire on n_keys). */
#include "metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "mm_log.h"
#include "mm_util.h"

struct metrics_key {
	uint8_t family;
	uint8_t proto;
	char result[METRICS_RESULT_MAX];
};

struct metrics_slot {
	uint64_t connections[MM_PROTO_COUNT];
	uint64_t active[MM_PROTO_COUNT];
	uint64_t bytes[MM_PROTO_COUNT][2];
	uint32_t n_keys;
	struct metrics_key keys[METRICS_KEYS_MAX];
	uint64_t counts[METRICS_KEYS_MAX];
	uint64_t other[METRICS_FAMILY_COUNT][MM_PROTO_COUNT];
};

struct metrics {
	unsigned workers;
	uint64_t restarts;
	struct metrics_slot slot[METRICS_WORKERS_MAX];
};

static const char *const family_name[METRICS_FAMILY_COUNT] = {
	"mailmesh_session_closes_total",
	"mailmesh_logins_total",
	"mailmesh_smtp_messages_total",
};

static const char *const family_help[METRICS_FAMILY_COUNT] = {
	"Client sessions ended, by how they ended.",
	"IMAP and POP3 logins at the back end, by result.",
	"SMTP messages, by the back end's verdict.",
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

struct metrics *
metrics_new(unsigned workers)
{
	struct metrics *m;

	if (workers > METRICS_WORKERS_MAX)
		workers = METRICS_WORKERS_MAX;
	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		fatal("metrics mmap");
	m->workers = workers;
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m != NULL)
		munmap(m, sizeof(*m));
}

struct metrics_slot *
metrics_slot(struct metrics *m, unsigned w)
{
	return m != NULL && w < m->workers ? &m->slot[w] : NULL;
}

void
metrics_worker_start(struct metrics *m, unsigned w)
{
	struct metrics_slot *s = metrics_slot(m, w);
	int p;

	if (s == NULL)
		return;
	for (p = 0; p < MM_PROTO_COUNT; p++)
		__atomic_store_n(&s->active[p], 0, __ATOMIC_RELAXED);
}

void
metrics_count_restart(struct metrics *m)
{
	if (m != NULL)
		add(&m->restarts, 1);
}

void
metrics_connection(struct metrics_slot *s, enum mm_proto p)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->connections[p], 1);
}

void
metrics_session_open(struct metrics_slot *s, enum mm_proto p)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->active[p], 1);
}

void
metrics_session_end(struct metrics_slot *s, enum mm_proto p)
{
	if (s == NULL || (unsigned)p >= MM_PROTO_COUNT)
		return;
	if (get(&s->active[p]) > 0)
		__atomic_store_n(&s->active[p], get(&s->active[p]) - 1,
		    __ATOMIC_RELAXED);
}

void
metrics_bytes(struct metrics_slot *s, enum mm_proto p, enum metrics_dir d,
    uint64_t n)
{
	if (s != NULL && (unsigned)p < MM_PROTO_COUNT)
		add(&s->bytes[p][d == METRICS_OUT], n);
}

void
metrics_count(struct metrics_slot *s, enum metrics_family f,
    enum mm_proto p, const char *result)
{
	uint32_t i, n;

	if (s == NULL || (unsigned)f >= METRICS_FAMILY_COUNT ||
	    (unsigned)p >= MM_PROTO_COUNT)
		return;
	n = __atomic_load_n(&s->n_keys, __ATOMIC_RELAXED);
	for (i = 0; i < n; i++) {
		const struct metrics_key *k = &s->keys[i];

		if (k->family == f && k->proto == p &&
		    strcmp(k->result, result) == 0) {
			add(&s->counts[i], 1);
			return;
		}
	}
	if (n == METRICS_KEYS_MAX || strlen(result) >= METRICS_RESULT_MAX) {
		add(&s->other[f][p], 1);
		return;
	}
	s->keys[n].family = (uint8_t)f;
	s->keys[n].proto = (uint8_t)p;
	mm_strlcpy(s->keys[n].result, result, METRICS_RESULT_MAX);
	__atomic_store_n(&s->counts[n], 1, __ATOMIC_RELAXED);
	__atomic_store_n(&s->n_keys, n + 1, __ATOMIC_RELEASE);
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
	char esc[2 * METRICS_RESULT_MAX];
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

/* Sums family f, protocol p, result r over all slots; r NULL: "other". */
static uint64_t
sum_key(const struct metrics *m, enum metrics_family f, int p, const char *r)
{
	uint64_t v = 0;
	unsigned w;
	uint32_t i, n;

	for (w = 0; w < m->workers; w++) {
		const struct metrics_slot *s = &m->slot[w];

		if (r == NULL) {
			v += get(&s->other[f][p]);
			continue;
		}
		n = __atomic_load_n(&s->n_keys, __ATOMIC_ACQUIRE);
		for (i = 0; i < n; i++)
			if (s->keys[i].family == f && s->keys[i].proto == p &&
			    strcmp(s->keys[i].result, r) == 0)
				v += get(&s->counts[i]);
	}
	return v;
}

/* True if an earlier slot or key (before worker w, index i) already has
 * this family, protocol and result: it was printed then. */
static bool
seen_before(const struct metrics *m, unsigned w, uint32_t i,
    const struct metrics_key *k)
{
	unsigned v;
	uint32_t j, n;

	for (v = 0; v <= w; v++) {
		const struct metrics_slot *s = &m->slot[v];

		n = v == w ? i : __atomic_load_n(&s->n_keys, __ATOMIC_ACQUIRE);
		for (j = 0; j < n; j++)
			if (s->keys[j].family == k->family &&
			    s->keys[j].proto == k->proto &&
			    strcmp(s->keys[j].result, k->result) == 0)
				return true;
	}
	return false;
}

static void
render_family(struct out *o, const struct metrics *m, enum metrics_family f)
{
	unsigned w;
	uint32_t i, n;
	int p;

	header(o, family_name[f], "counter", family_help[f]);
	for (w = 0; w < m->workers; w++) {
		const struct metrics_slot *s = &m->slot[w];

		n = __atomic_load_n(&s->n_keys, __ATOMIC_ACQUIRE);
		for (i = 0; i < n; i++) {
			const struct metrics_key *k = &s->keys[i];

			if (k->family != f || seen_before(m, w, i, k))
				continue;
			put(o, "%s{proto=\"%s\",result=\"", family_name[f],
			    mm_proto_name((enum mm_proto)k->proto));
			put_label_value(o, k->result);
			put(o, "\"} %llu\n", (unsigned long long)sum_key(m, f,
			    k->proto, k->result));
		}
	}
	for (p = 0; p < MM_PROTO_COUNT; p++) {
		uint64_t v = sum_key(m, f, p, NULL);

		if (v > 0)
			put(o, "%s{proto=\"%s\",result=\"other\"} %llu\n",
			    family_name[f], mm_proto_name((enum mm_proto)p),
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
	    offsetof(struct metrics_slot, connections) },
	{ "mailmesh_sessions_active", "gauge", "Client sessions open now.",
	    offsetof(struct metrics_slot, active) },
};

size_t
metrics_render(const struct metrics *m, char *out, size_t outlen)
{
	struct out o = { out, 0, outlen, false };
	uint64_t v[MM_PROTO_COUNT][2];
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
	for (f = 0; f < METRICS_FAMILY_COUNT; f++)
		render_family(&o, m, (enum metrics_family)f);
	header(&o, "mailmesh_worker_restarts_total", "counter",
	    "Proxy workers that died and were started again.");
	put(&o, "mailmesh_worker_restarts_total %llu\n",
	    (unsigned long long)get(&m->restarts));
	header(&o, "mailmesh_workers", "gauge", "Proxy workers configured.");
	put(&o, "mailmesh_workers %u\n", m->workers);
	return o.full ? 0 : o.len;
}
