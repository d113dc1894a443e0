#include "iptable.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "mm_log.h"
#include "mm_util.h"

#define PROBE_MAX 16	/* slots examined for one address */

struct slot {
	uint8_t addr[16];	/* IPv4 mapped into IPv6 form */
	bool used;
	uint32_t conns[IPTABLE_WORKERS_MAX];
	uint32_t logins[IPTABLE_WORKERS_MAX];	/* in flight */
	uint32_t fails;
	uint64_t fail_window_start;
};

struct iptable {
	pthread_mutex_t lock;	/* process-shared, robust */
	uint32_t total[IPTABLE_WORKERS_MAX];
	struct slot slots[IPTABLE_SLOTS];
};

struct iptable *
iptable_new(void)
{
	pthread_mutexattr_t attr;
	struct iptable *t;

	t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED)
		fatal("iptable mmap");
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	return t;
}

void
iptable_free(struct iptable *t)
{
	if (t != NULL)
		munmap(t, sizeof(*t));
}

static void
lock(struct iptable *t)
{
	/* A worker killed while holding the lock leaves it to the next. */
	if (pthread_mutex_lock(&t->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&t->lock);
}

static void
unlock(struct iptable *t)
{
	pthread_mutex_unlock(&t->lock);
}

static void
addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 =
		    (const struct sockaddr_in6 *)sa;

		memcpy(key, &in6->sin6_addr, 16);
	}
}

static uint32_t
addr_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static bool
slot_idle(const struct slot *s, uint64_t now_ms, uint64_t window_ms)
{
	int w;

	for (w = 0; w < IPTABLE_WORKERS_MAX; w++)
		if (s->conns[w] != 0 || s->logins[w] != 0)
			return false;
	return s->fails == 0 || now_ms - s->fail_window_start >= window_ms;
}

/* The slot of addr; with create, claims a free or idle slot. Lock held. */
static struct slot *
find(struct iptable *t, const struct sockaddr *sa, bool create,
    uint64_t now_ms, uint64_t window_ms)
{
	uint8_t key[16];
	uint32_t h;
	struct slot *spare = NULL;
	int i;

	addr_key(sa, key);
	h = addr_hash(key);
	for (i = 0; i < PROBE_MAX; i++) {
		struct slot *s = &t->slots[(h + (uint32_t)i) % IPTABLE_SLOTS];

		if (s->used && memcmp(s->addr, key, 16) == 0)
			return s;
		if (spare == NULL && (!s->used ||
		    slot_idle(s, now_ms, window_ms)))
			spare = s;
	}
	if (!create || spare == NULL)
		return NULL;
	memset(spare, 0, sizeof(*spare));
	memcpy(spare->addr, key, 16);
	spare->used = true;
	return spare;
}

static uint32_t
sum(const uint32_t v[IPTABLE_WORKERS_MAX])
{
	uint32_t n = 0;
	int w;

	for (w = 0; w < IPTABLE_WORKERS_MAX; w++)
		n += v[w];
	return n;
}

void
iptable_reset_worker(struct iptable *t, unsigned w)
{
	size_t i;

	if (w >= IPTABLE_WORKERS_MAX)
		return;
	lock(t);
	t->total[w] = 0;
	for (i = 0; i < IPTABLE_SLOTS; i++) {
		t->slots[i].conns[w] = 0;
		t->slots[i].logins[w] = 0;
	}
	unlock(t);
}

bool
iptable_conn_open(struct iptable *t, unsigned w, const struct sockaddr *addr,
    uint32_t per_ip_max, uint32_t conn_max)
{
	struct slot *s;
	bool ok = false;

	if (w >= IPTABLE_WORKERS_MAX)
		return true;
	lock(t);
	if (sum(t->total) >= conn_max)
		goto done;
	/* Connection slots never expire by time: window 0 keeps failures
	 * from pinning a slot here. */
	s = find(t, addr, true, mm_now_ms(), UINT64_MAX);
	if (s != NULL) {
		if (sum(s->conns) >= per_ip_max)
			goto done;
		s->conns[w]++;
	}
	t->total[w]++;
	ok = true;
done:
	unlock(t);
	return ok;
}

void
iptable_conn_close(struct iptable *t, unsigned w, const struct sockaddr *addr)
{
	struct slot *s;

	if (w >= IPTABLE_WORKERS_MAX)
		return;
	lock(t);
	s = find(t, addr, false, 0, 0);
	if (s != NULL && s->conns[w] > 0)
		s->conns[w]--;
	if (t->total[w] > 0)
		t->total[w]--;
	unlock(t);
}

/* Failures of s in the window that holds now_ms. Lock held. */
static uint32_t
fails_now(const struct slot *s, uint64_t now_ms, uint64_t window_ms)
{
	return now_ms - s->fail_window_start < window_ms ? s->fails : 0;
}

/* Counts one failure of s. Lock held. */
static void
fail_count(struct slot *s, uint64_t now_ms, uint64_t window_ms)
{
	if (fails_now(s, now_ms, window_ms) == 0) {
		s->fails = 0;
		s->fail_window_start = now_ms;
	}
	s->fails++;
}

bool
iptable_login_begin(struct iptable *t, unsigned w,
    const struct sockaddr *addr, uint64_t now_ms, uint64_t window_ms,
    uint32_t fail_max)
{
	struct slot *s;
	bool ok = true;

	if (w >= IPTABLE_WORKERS_MAX)
		return true;
	lock(t);
	s = find(t, addr, true, now_ms, window_ms);
	if (s != NULL) {
		if ((uint64_t)fails_now(s, now_ms, window_ms) +
		    sum(s->logins) >= fail_max)
			ok = false;
		else
			s->logins[w]++;
	}
	unlock(t);
	return ok;
}

void
iptable_login_end(struct iptable *t, unsigned w,
    const struct sockaddr *addr, uint64_t now_ms, uint64_t window_ms,
    bool failed)
{
	struct slot *s;

	if (w >= IPTABLE_WORKERS_MAX)
		return;
	lock(t);
	s = find(t, addr, false, now_ms, window_ms);
	if (s != NULL) {
		if (s->logins[w] > 0)
			s->logins[w]--;
		if (failed)
			fail_count(s, now_ms, window_ms);
	}
	unlock(t);
}

void
iptable_fail_add(struct iptable *t, const struct sockaddr *addr,
    uint64_t now_ms, uint64_t window_ms)
{
	struct slot *s;

	lock(t);
	s = find(t, addr, true, now_ms, window_ms);
	if (s != NULL)
		fail_count(s, now_ms, window_ms);
	unlock(t);
}
