/* The scrub (store.h): the current records against the tree kept beside
 * them, in two passes of slices.
 *
 * First the records, in name order: each is hashed and must have its
 * entry, with that hash; the records of each leaf are counted. Then the
 * tree, leaf by leaf, in order of its keys: each leaf's summary must be
 * the hash and count of its entries, and its count of entries that of the
 * records seen in the first pass. Only where something differs is a leaf
 * examined closely, in one transaction: its every entry against its
 * record. A difference may come from a write between the passes; the
 * close look tells it from damage, so nothing is reported that a single
 * snapshot would not show. One random read per record, and one more per
 * entry of a leaf that differs. */
#include "store.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>
#include <sodium.h>

#include "mm_log.h"
#include "mm_util.h"
#include "store_int.h"

#define SCRUB_BUDGET_ALL 100000	/* a slice of store_scrub */
#define SCRUB_NAME_MAX (4 * (RECORD_USER_MAX + 1) + 1)	/* escaped */
#define SCRUB_KEY_MAX 511	/* LMDB's longest key */

enum scrub_phase { SCRUB_USERS, SCRUB_TREE, SCRUB_DONE };

/* A user of the leaf in hand whose record does not match its entry:
 * what is wrong depends on the whole leaf. */
struct scrub_odd {
	char name[SCRUB_NAME_MAX];
};

struct store_scrub {
	store_scrub_cb damaged;
	store_scrub_cb conflict;	/* NULL: not told */
	store_scrub_record_cb record;
	void *arg;
	enum scrub_phase phase;
	uint8_t from[SCRUB_KEY_MAX];	/* records: resume after this one */
	size_t from_len;		/* 0: from the first */
	uint32_t *counts;		/* records with an entry, per leaf */
	uint8_t *odd_leaf;		/* leaves to look at closely (bits) */
	unsigned next_leaf;		/* tree: where to go on */
	struct scrub_odd *odd;
	size_t n_odd, cap_odd;
	struct store_scrub_report rep;
};

/* bytes as a printable name: anything else becomes \xHH. */
static const char *
scrub_name(const uint8_t *p, size_t len, char out[SCRUB_NAME_MAX])
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < len && i <= RECORD_USER_MAX; i++) {
		if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '\\') {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[p[i] >> 4];
			out[o++] = hex[p[i] & 15];
		} else {
			out[o++] = (char)p[i];
		}
	}
	out[o] = '\0';
	return out;
}

static void
found(struct store_scrub *s, const char *user, const char *what)
{
	s->rep.damaged++;
	if (s->damaged != NULL)
		s->damaged(user, what, s->arg);
}

static void
found_leaf(struct store_scrub *s, unsigned leaf, const char *what)
{
	char d[128];

	snprintf(d, sizeof(d), "leaf %u: %s", leaf, what);
	found(s, "", d);
}

/* An open claim or release kept as evidence: told as a conflict. */
static int
evidence_cb(const struct store_evidence *e, void *arg)
{
	struct store_scrub *s = arg;
	char what[768], name[SCRUB_NAME_MAX];

	if (s->conflict == NULL || (e->kind != EVIDENCE_CLAIM &&
	    e->kind != EVIDENCE_RELEASE))
		return 0;
	store_evidence_text(e, what, sizeof(what));
	s->conflict(scrub_name((const uint8_t *)e->user, strlen(e->user),
	    name), what, s->arg);
	return 0;
}

void
store_scrub_watch_conflicts(struct store_scrub *s, store_scrub_cb conflict)
{
	s->conflict = conflict;
}

struct store_scrub *
store_scrub_new(store_scrub_cb damaged, store_scrub_record_cb record,
    void *arg)
{
	struct store_scrub *s = xcalloc(1, sizeof(*s));

	s->counts = xcalloc(STORE_TREE_LEAVES, sizeof(*s->counts));
	s->odd_leaf = xcalloc(STORE_TREE_LEAVES / 8, 1);
	s->damaged = damaged;
	s->record = record;
	s->arg = arg;
	return s;
}

void
store_scrub_free(struct store_scrub *s)
{
	if (s == NULL)
		return;
	free(s->counts);
	free(s->odd_leaf);
	free(s->odd);
	free(s);
}

void
store_scrub_result(const struct store_scrub *s,
    struct store_scrub_report *r_r)
{
	*r_r = s->rep;
}

/* A close look at one leaf: its entries against their records, its
 * summary against its entries, all in txn. 0, or -1 with *mrc_r. */
static long
scrub_leaf(struct store_scrub *s, struct store *st, MDB_txn *txn,
    MDB_cursor *cur, unsigned leaf, int *mrc_r)
{
	crypto_generichash_state kept, recs;
	uint8_t k[2] = { (uint8_t)(leaf >> 8), (uint8_t)leaf };
	uint8_t kh[STORE_TREE_HASH_LEN], rh[STORE_TREE_HASH_LEN];
	uint8_t e[STORE_TREE_HASH_LEN], sum[TREE_LEAF_VALUE];
	char name[SCRUB_NAME_MAX];
	MDB_val key = val_bin(k, sizeof(k)), val, uk, uv;
	uint32_t n_kept = 0, n_recs = 0, count;
	const uint8_t *p;
	bool have_sum = false, sum_ok = false, tree_ok, recs_ok;
	long seen = 0;
	size_t i, ulen;
	int mrc;

	s->n_odd = 0;
	crypto_generichash_init(&kept, NULL, 0, STORE_TREE_HASH_LEN);
	crypto_generichash_init(&recs, NULL, 0, STORE_TREE_HASH_LEN);
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		p = key.mv_data;
		if (key.mv_size < 2 || memcmp(p, k, 2) != 0)
			break;
		if (key.mv_size == 2) {
			have_sum = true;
			sum_ok = val.mv_size == TREE_LEAF_VALUE;
			if (sum_ok)
				memcpy(sum, val.mv_data, sizeof(sum));
			continue;
		}
		seen++;
		ulen = key.mv_size - 2;
		if (ulen > RECORD_USER_MAX) {
			found_leaf(s, leaf, "a tree entry with a bad key");
			continue;
		}
		scrub_name(p + 2, ulen, name);
		if (store_tree_leaf_of((const char *)p + 2, ulen) != leaf)
			found(s, name, "tree entry in the wrong leaf");
		if (val.mv_size != STORE_TREE_HASH_LEN) {
			found(s, name, "tree entry damaged (length)");
			continue;
		}
		crypto_generichash_update(&kept, val.mv_data, val.mv_size);
		n_kept++;
		uk = val_bin(p + 2, ulen);
		mrc = mdb_get(txn, st->dbi[DBI_USERS], &uk, &uv);
		if (mrc == MDB_NOTFOUND) {
			found(s, name, "tree entry without a record");
			continue;
		}
		if (mrc != 0)
			goto fail;
		store_tree_entry_hash((const char *)p + 2, ulen, uv.mv_data,
		    uv.mv_size, e);
		crypto_generichash_update(&recs, e, sizeof(e));
		n_recs++;
		if (memcmp(e, val.mv_data, sizeof(e)) == 0)
			continue;
		if (s->n_odd == s->cap_odd) {
			s->cap_odd = s->cap_odd * 2 + 4;
			s->odd = xrealloc(s->odd, s->cap_odd * sizeof(*s->odd));
		}
		memcpy(s->odd[s->n_odd++].name, name, sizeof(name));
	}
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		goto fail;
	crypto_generichash_final(&kept, kh, sizeof(kh));
	crypto_generichash_final(&recs, rh, sizeof(rh));

	tree_ok = recs_ok = false;
	if (sum_ok) {
		p = sum + STORE_TREE_HASH_LEN;
		count = mm_be32_get(p);
		tree_ok = count == n_kept && memcmp(sum, kh, sizeof(kh)) == 0;
		recs_ok = count == n_recs && memcmp(sum, rh, sizeof(rh)) == 0;
	}
	/* Which side of a mismatch changed: the summary was computed from
	 * the entries as they were written. */
	for (i = 0; i < s->n_odd; i++)
		found(s, s->odd[i].name, tree_ok ? "record damaged: it does "
		    "not match the tree entry written with it" : recs_ok ?
		    "tree entry damaged: the record matches its leaf" :
		    "record does not match its tree entry");
	if (n_kept == 0) {
		if (have_sum)
			found_leaf(s, leaf, "a summary for a leaf without "
			    "entries");
	} else if (!have_sum) {
		found_leaf(s, leaf, "no summary");
	} else if (!sum_ok) {
		found_leaf(s, leaf, "summary damaged (length)");
	} else if (!tree_ok && !recs_ok) {
		found_leaf(s, leaf, s->n_odd == 0 ? "summary damaged: it "
		    "does not match the leaf's entries" : "summary matches "
		    "neither the entries nor the records");
	}
	return seen;
fail:
	*mrc_r = mrc;
	return -1;
}

static void
odd_leaf(struct store_scrub *s, unsigned leaf)
{
	s->odd_leaf[leaf / 8] |= (uint8_t)(1u << (leaf % 8));
}

/* The records, after s->from on, budget of them: each has its entry, with
 * its hash. */
static int
scrub_users(struct store_scrub *s, struct store *st, MDB_txn *txn,
    size_t budget, int *mrc_r)
{
	MDB_cursor *cur = NULL;
	MDB_val key, val, tk, tv;
	MDB_cursor_op op = MDB_FIRST;
	uint8_t k[TREE_KEY_MAX], e[STORE_TREE_HASH_LEN];
	char name[SCRUB_NAME_MAX];
	size_t done = 0;
	unsigned leaf;
	int mrc;

	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_USERS], &cur)) != 0)
		goto fail;
	if (s->from_len > 0) {
		key = val_bin(s->from, s->from_len);
		op = MDB_SET_RANGE;
	}
	for (mrc = mdb_cursor_get(cur, &key, &val, op); mrc == 0;
	    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		if (s->from_len > 0 && key.mv_size == s->from_len &&
		    memcmp(key.mv_data, s->from, s->from_len) == 0)
			continue;
		if (done == budget)
			break;
		done++;
		s->rep.records++;
		if (key.mv_size > 0 && key.mv_size <= SCRUB_KEY_MAX) {
			memcpy(s->from, key.mv_data, key.mv_size);
			s->from_len = key.mv_size;
		}
		if (s->record != NULL)
			s->record(val.mv_data, val.mv_size, s->arg);
		if (key.mv_size == 0 || key.mv_size > RECORD_USER_MAX) {
			found(s, scrub_name(key.mv_data, key.mv_size, name),
			    "record under a bad key");
			continue;
		}
		leaf = store_tree_leaf_of(key.mv_data, key.mv_size);
		tk = val_bin(k, tree_key(leaf, key.mv_data, key.mv_size, k));
		mrc = mdb_get(txn, st->dbi[DBI_TREE], &tk, &tv);
		if (mrc == MDB_NOTFOUND) {
			found(s, scrub_name(key.mv_data, key.mv_size, name),
			    "record missing from the tree");
			continue;
		}
		if (mrc != 0)
			goto fail;
		s->counts[leaf]++;
		store_tree_entry_hash(key.mv_data, key.mv_size, val.mv_data,
		    val.mv_size, e);
		/* Which side is wrong, the leaf will tell. */
		if (tv.mv_size != sizeof(e) || memcmp(tv.mv_data, e,
		    sizeof(e)) != 0)
			odd_leaf(s, leaf);
	}
	if (mrc == MDB_NOTFOUND)
		s->phase = SCRUB_TREE;
	else if (mrc != 0)
		goto fail;
	mdb_cursor_close(cur);
	return 0;
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	*mrc_r = mrc;
	return -1;
}

/* The tree, from s->next_leaf on, until about budget entries are seen:
 * each leaf's summary against its entries, its entries counted against
 * its records; a close look where they differ. */
static int
scrub_tree(struct store_scrub *s, struct store *st, MDB_txn *txn,
    size_t budget, int *mrc_r)
{
	crypto_generichash_state hs;
	MDB_cursor *cur = NULL;
	MDB_val key, val;
	uint64_t kinds[STORE_EVIDENCE_KINDS];
	uint8_t k[2], h[STORE_TREE_HASH_LEN], sum[TREE_LEAF_VALUE];
	const uint8_t *p;
	size_t done = 0;
	uint32_t n, count;
	unsigned leaf;
	bool have_sum, close;
	int mrc;

	if ((mrc = mdb_cursor_open(txn, st->dbi[DBI_TREE], &cur)) != 0)
		goto fail;
	while (s->next_leaf < STORE_TREE_LEAVES && done < budget) {
		leaf = s->next_leaf++;
		k[0] = (uint8_t)(leaf >> 8);
		k[1] = (uint8_t)leaf;
		key = val_bin(k, sizeof(k));
		have_sum = close = false;
		n = 0;
		crypto_generichash_init(&hs, NULL, 0, STORE_TREE_HASH_LEN);
		for (mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		    mrc == 0;
		    mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
			p = key.mv_data;
			if (key.mv_size < 2 || memcmp(p, k, 2) != 0)
				break;
			if (key.mv_size == 2) {
				have_sum = val.mv_size == sizeof(sum);
				close |= !have_sum;
				if (have_sum)
					memcpy(sum, val.mv_data, sizeof(sum));
				continue;
			}
			s->rep.entries++;
			if (val.mv_size != sizeof(h)) {
				close = true;
				continue;
			}
			crypto_generichash_update(&hs, val.mv_data,
			    val.mv_size);
			n++;
		}
		if (mrc != 0 && mrc != MDB_NOTFOUND)
			goto fail;
		done += n + 1;
		crypto_generichash_final(&hs, h, sizeof(h));
		if (have_sum) {
			p = sum + STORE_TREE_HASH_LEN;
			count = mm_be32_get(p);
			close |= count != n || memcmp(sum, h, sizeof(h)) != 0;
		} else {
			close |= n > 0;
		}
		close |= n != s->counts[leaf] ||
		    (s->odd_leaf[leaf / 8] & (1u << (leaf % 8))) != 0;
		if (close && scrub_leaf(s, st, txn, cur, leaf, mrc_r) < 0) {
			mdb_cursor_close(cur);
			return -1;
		}
	}
	if (s->next_leaf == STORE_TREE_LEAVES) {
		if ((mrc = store_evidence_walk(st, txn, evidence_cb, s,
		    kinds)) != 0)
			goto fail;
		s->rep.equivocations = kinds[EVIDENCE_EQUIVOCATION];
		s->rep.conflicts = kinds[EVIDENCE_CLAIM] +
		    kinds[EVIDENCE_RELEASE];
		s->phase = SCRUB_DONE;
	}
	mdb_cursor_close(cur);
	return 0;
fail:
	if (cur != NULL)
		mdb_cursor_close(cur);
	*mrc_r = mrc;
	return -1;
}

int
store_scrub_step(struct store *st, struct store_scrub *s, size_t budget)
{
	MDB_txn *txn = NULL;
	int mrc = 0, r;

	if (s->phase == SCRUB_DONE)
		return 1;
	if (budget == 0)
		budget = 1;
	if (store_walk_begin(st, &txn) < 0) {
		s->phase = SCRUB_DONE;
		return -1;
	}
	if (s->phase == SCRUB_TREE)
		r = scrub_tree(s, st, txn, budget, &mrc);
	else
		r = scrub_users(s, st, txn, budget, &mrc);
	store_walk_end(st, txn);
	if (r < 0) {
		log_warnx("- dir store scrub path=%s error=\"%s\"", st->path,
		    mdb_strerror(mrc));
		s->phase = SCRUB_DONE;
		return -1;
	}
	return s->phase == SCRUB_DONE ? 1 : 0;
}

int
store_scrub(struct store *st, store_scrub_cb damaged,
    store_scrub_record_cb record, void *arg,
    struct store_scrub_report *r_r)
{
	struct store_scrub *s = store_scrub_new(damaged, record, arg);
	int r;

	while ((r = store_scrub_step(st, s, SCRUB_BUDGET_ALL)) == 0)
		;
	store_scrub_result(s, r_r);
	store_scrub_free(s);
	return r < 0 ? -1 : 0;
}
