#include "step.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "codes.h"
#include "hooks.h"
#include "lua.h"
#include "schema.h"
#include "store.h"

#define STEP_US '\x1f' /* separates a row's fields (docs/key-schema.md) */
/* The most a part of a step may take: steps hold up to 1000 rows. */
#define STEP_PART_TIMEOUT_MS 10000

struct step_row {
	size_t idx;
	char idx_text[24];
	char tag;
	const char *pk, *dn; /* point into the step's copy of the rows */
	uint32_t bucket;
	char field[SCHEMA_FIELD_MAX];
	int product;          /* index in products, -1 for none */
	bool has_record;
	uint64_t cb;          /* the record's batch when read */
	char cb_text[24];
	uint64_t from;        /* the batch that placed it until now: cb, else its product's */
	int from_batch;       /* index in batches, -1 for none */
	char *result;         /* NULL until decided; owned */
	char state[12];       /* notify state to record, "" for none */
	char outbox[SCHEMA_KEY_MAX + 128]; /* where to queue its notify, "" for none */
	char dkey[SCHEMA_KEY_MAX], ckey[SCHEMA_KEY_MAX];
};

struct step_product {
	const char *pk;
	char key[SCHEMA_KEY_MAX];
	bool exists, locked;
	char hr[CATALOG_REGION_ID_MAX + 1], hi[CATALOG_INSTANCE_ID_MAX + 1];
	char hr_code[SCHEMA_CODE_MAX + 1], hi_code[SCHEMA_CODE_MAX + 1];
	uint64_t pb;
};

struct step_batch {
	uint64_t seq;
	char key[SCHEMA_KEY_MAX];
	char st[16];
	char tg[SCHEMA_TARGETS_MAX * (CATALOG_REGION_ID_MAX + CATALOG_INSTANCE_ID_MAX + 2) + 1];
	/* The same in codes, and its first region's id (for the counters). */
	char tg_codes[SCHEMA_TARGETS_MAX * (2 * SCHEMA_CODE_MAX + 2) + 1];
	char first_region[CATALOG_REGION_ID_MAX + 1];
};

/* A codes table field ("r:<id>", "i:<id>"). */
typedef char step_field[CATALOG_INSTANCE_ID_MAX + 3];

struct step {
	struct store *store;
	struct codes *codes;
	struct hooks_want *hooks;
	uint64_t seq;
	char seq_text[24], start_text[24], count_text[24], nbrokers_text[24];
	char **brokers; /* owned copies: a reload may change the caller's */
	size_t nbrokers;
	step_done_fn fn;
	void *arg;
	char bkey[SCHEMA_KEY_MAX], ikey[SCHEMA_KEY_MAX], rkey[SCHEMA_KEY_MAX], nkey[SCHEMA_KEY_MAX], fkey[SCHEMA_KEY_MAX];
	/* The batch, as step_read.lua returned it. */
	char strategy[16], account[SCHEMA_ACCOUNT_MAX + 1];
	char target_region[CATALOG_REGION_ID_MAX + 1], target_instance[CATALOG_INSTANCE_ID_MAX + 1];
	char target_region_code[SCHEMA_CODE_MAX + 1], target_instance_code[SCHEMA_CODE_MAX + 1];
	char (*broker_codes)[SCHEMA_CODE_MAX + 1]; /* the brokers' instances' codes ("" none) */
	/* The ids found without a code while encoding, and whether the codes were synced for them. */
	step_field *missing;
	size_t nmissing, missing_cap;
	int syncs;
	bool products_only;
	redisReply *open; /* the open rows (a copy held while the step runs) */
	struct step_row *rows;
	size_t nrows;
	struct step_product *products;
	size_t nproducts;
	struct step_batch *batches;
	size_t nbatches;
	bool again;
	struct step_outcome out;
};

static void step_free(struct step *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nrows; i++)
		free(s->rows[i].result);
	for (size_t i = 0; i < s->nbrokers; i++)
		free(s->brokers[i]);
	free(s->brokers);
	free(s->broker_codes);
	free(s->missing);
	free(s->rows);
	free(s->products);
	free(s->batches);
	freeReplyObject(s->open);
	free(s);
}

static void step_finish(struct step *s, enum step_rc rc, const char *error)
{
	if (rc == STEP_DONE && s->again)
		rc = STEP_AGAIN;
	s->fn(rc, &s->out, error, s->arg);
	step_free(s);
}

/* A gathered reply: NULL or any error reply ends the step. Returns true
 * when the step goes on. */
static bool step_check(struct step *s, const redisReply *all, size_t n)
{
	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != n) {
		step_finish(s, STEP_UNKNOWN, NULL);
		return false;
	}
	static const char *const passing[] = { "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK", "LOADING", "READONLY",
		"MASTERDOWN" };

	for (size_t i = 0; i < n; i++) {
		const redisReply *e = all->element[i];
		if (e->type != REDIS_REPLY_ERROR)
			continue;
		/* A topology in motion (failover, resharding, a node loading):
		 * the step runs again, no attempt counted. */
		for (size_t k = 0; k < sizeof(passing) / sizeof(passing[0]); k++) {
			if (strncmp(e->str, passing[k], strlen(passing[k])) == 0) {
				step_finish(s, STEP_UNKNOWN, NULL);
				return false;
			}
		}
		step_finish(s, STEP_REFUSED, e->str);
		return false;
	}
	return true;
}

static int step_fail(struct step_row *r, const char *code, const char *message)
{
	if (asprintf(&r->result, "f%c%s%c%s", STEP_US, code, STEP_US, message) < 0) {
		r->result = NULL;
		return -1;
	}
	return 0;
}

static int step_set(char **dst, const char *s, size_t len)
{
	free(*dst);
	*dst = strndup(s, len);
	return *dst ? 0 : -1;
}

/* Sends N commands of a part; FN continues the step. Returns false (after
 * ending the step) when none could be sent. */
static bool step_send(struct step *s, bool write, size_t n, const int *argcs, const char *const *const *argvs,
	store_reply_fn fn)
{
	int rc = write ? store_gather_write(s->store, STEP_PART_TIMEOUT_MS, n, argcs, argvs, NULL, fn, s)
		       : store_gather(s->store, STEP_PART_TIMEOUT_MS, n, argcs, argvs, fn, s);

	if (rc < 0) {
		step_finish(s, STEP_UNKNOWN, NULL);
		return false;
	}
	return true;
}

static void step_send_one(struct step *s, bool write, int argc, const char **argv, store_reply_fn fn)
{
	const char *const *argvs[] = { argv };
	int argcs[] = { argc };

	step_send(s, write, 1, argcs, argvs, fn);
}

/* --- the last part: the results --- */

/* Push subscriptions' events of what this run recorded: each device it
 * distributed, and the batch when this run completed it. */
static void step_events(struct step *s, const redisReply *ok_rows, const redisReply *completed)
{
	char data[256];

	if (s->hooks == NULL)
		return;
	for (size_t k = 0; ok_rows->type == REDIS_REPLY_ARRAY && k < ok_rows->elements; k++) {
		for (size_t i = 0; i < s->nrows; i++) {
			const struct step_row *r = &s->rows[i];
			if ((long long)r->idx != ok_rows->element[k]->integer)
				continue;
			/* Names are of their alphabets, ids of theirs: nothing to escape. */
			snprintf(data, sizeof(data), "{\"productKey\":\"%s\",\"deviceName\":\"%s\",\"batchId\":\"%s\","
				"\"region\":\"%s\",\"instance\":\"%s\"}", r->pk, r->dn, s->seq_text, s->target_region,
				s->target_instance);
			if (!s->products_only)
				hooks_emit(s->hooks, HOOKS_DEVICE_DISTRIBUTED, data);
		}
	}
	if (completed->type == REDIS_REPLY_ARRAY && completed->elements == 3) {
		snprintf(data, sizeof(data), "{\"batchId\":\"%s\",\"total\":%lld,\"succeeded\":%lld,\"failed\":%lld}",
			s->seq_text, completed->element[0]->integer, completed->element[1]->integer,
			completed->element[2]->integer);
		hooks_emit(s->hooks, HOOKS_BATCH_COMPLETED, data);
	}
}

static void step_recorded(redisReply *all, void *arg)
{
	struct step *s = arg;
	const redisReply *r;

	if (!step_check(s, all, 1))
		return;
	r = all->element[0];
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
		step_finish(s, STEP_REFUSED, "unexpected answer to the results");
		return;
	}
	s->out.succeeded = r->element[0]->integer;
	s->out.failed = r->element[1]->integer;
	step_events(s, r->element[3], r->element[4]);
	step_finish(s, STEP_DONE, NULL);
}

static void step_record(struct step *s)
{
	const char **argv = calloc(9 + 3 * s->nrows, sizeof(*argv));
	char now[24];
	size_t k = 0;

	if (argv == NULL) {
		step_finish(s, STEP_UNKNOWN, NULL);
		return;
	}
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	argv[k++] = "EVAL";
	argv[k++] = lua_record;
	argv[k++] = "5";
	argv[k++] = s->bkey;
	argv[k++] = s->rkey;
	argv[k++] = s->nkey;
	argv[k++] = SCHEMA_STATS_BATCHES_KEY;
	argv[k++] = s->fkey;
	argv[k++] = now;
	for (size_t i = 0; i < s->nrows; i++) {
		struct step_row *r = &s->rows[i];
		if (r->result == NULL)
			continue; /* read again next round */
		argv[k++] = r->idx_text;
		argv[k++] = r->result;
		argv[k++] = r->state;
	}
	step_send_one(s, true, (int)k, argv, step_recorded);
	free(argv);
}

/* --- notifies: queued before the results say so --- */

static void step_queued(redisReply *all, void *arg)
{
	struct step *s = arg;

	if (!step_check(s, all, all ? all->elements : 0))
		return;
	s->out.queued = (long long)all->elements;
	step_record(s);
}

static void step_queue(struct step *s)
{
	const char *(*argvs)[11] = calloc(s->nrows ? s->nrows : 1, sizeof(*argvs));
	const char *const **pargvs = calloc(s->nrows ? s->nrows : 1, sizeof(*pargvs));
	int *argcs = calloc(s->nrows ? s->nrows : 1, sizeof(*argcs));
	size_t n = 0;

	if (argvs == NULL || pargvs == NULL || argcs == NULL) {
		step_finish(s, STEP_UNKNOWN, NULL);
		goto out;
	}
	for (size_t i = 0; i < s->nrows; i++) {
		struct step_row *r = &s->rows[i];
		if (r->result == NULL || r->outbox[0] == '\0')
			continue;
		const char *argv[] = { "XADD", r->outbox, "*", "b", s->seq_text, "i", r->idx_text, "p", r->pk, "d", r->dn };
		memcpy(argvs[n], argv, sizeof(argv));
		pargvs[n] = argvs[n];
		argcs[n] = 11;
		n++;
	}
	if (n == 0)
		step_record(s);
	else
		step_send(s, true, n, argcs, pargvs, step_queued);
out:
	free(argvs);
	free(pargvs);
	free(argcs);
}

/* --- writing: each device group, or the products --- */

static void step_written(redisReply *all, void *arg)
{
	struct step *s = arg;

	if (!step_check(s, all, all ? all->elements : 0))
		return;
	if (s->products_only) {
		const redisReply *r = all->element[0];
		size_t k = 0;
		for (size_t i = 0; i < s->nrows; i++) {
			struct step_row *row = &s->rows[i];
			if (row->result != NULL)
				continue;
			if (r->type != REDIS_REPLY_ARRAY || k >= r->elements || r->element[k]->type != REDIS_REPLY_STRING ||
			    step_set(&row->result, r->element[k]->str, r->element[k]->len) < 0) {
				step_finish(s, STEP_REFUSED, "unexpected answer to the products");
				return;
			}
			k++;
		}
		step_queue(s);
		return;
	}
	/* Each group answers {index, result, notify state, outbox} per row. */
	for (size_t g = 0; g < all->elements; g++) {
		const redisReply *r = all->element[g];
		for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
			const redisReply *e = r->element[k];
			struct step_row *row = NULL;
			if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 || e->element[0]->type != REDIS_REPLY_INTEGER ||
			    e->element[1]->type != REDIS_REPLY_STRING || e->element[2]->type != REDIS_REPLY_STRING ||
			    e->element[3]->type != REDIS_REPLY_STRING) {
				step_finish(s, STEP_REFUSED, "unexpected answer to the devices");
				return;
			}
			for (size_t i = 0; i < s->nrows; i++)
				if (s->rows[i].idx == (size_t)e->element[0]->integer)
					row = &s->rows[i];
			if (row == NULL || row->result != NULL)
				continue;
			if (e->element[1]->len == 1 && e->element[1]->str[0] == 'r') {
				s->again = true; /* changed since read: the next round reads it again */
				continue;
			}
			if (step_set(&row->result, e->element[1]->str, e->element[1]->len) < 0 ||
			    e->element[2]->len >= sizeof(row->state) || e->element[3]->len >= sizeof(row->outbox)) {
				step_finish(s, STEP_REFUSED, "unexpected answer to the devices");
				return;
			}
			memcpy(row->state, e->element[2]->str, e->element[2]->len + 1);
			memcpy(row->outbox, e->element[3]->str, e->element[3]->len + 1);
		}
	}
	step_queue(s);
}

static void step_write_products(struct step *s)
{
	const char **argv = calloc(4 + s->nrows, sizeof(*argv));
	char numkeys[24];
	size_t k = 3, n = 0;

	if (argv == NULL) {
		step_finish(s, STEP_UNKNOWN, NULL);
		return;
	}
	argv[0] = "EVAL";
	argv[1] = lua_apply_products;
	for (size_t i = 0; i < s->nrows; i++) {
		if (s->rows[i].result != NULL)
			continue;
		argv[k++] = s->products[s->rows[i].product].key;
		n++;
	}
	if (n == 0) {
		free(argv);
		step_queue(s);
		return;
	}
	snprintf(numkeys, sizeof(numkeys), "%zu", n);
	argv[2] = numkeys;
	argv[k++] = s->seq_text;
	step_send_one(s, true, (int)k, argv, step_written);
	free(argv);
}

static int step_cmp_group(const void *a, const void *b)
{
	const struct step_row *const *x = a, *const *y = b;
	uint32_t gx = schema_group((*x)->bucket), gy = schema_group((*y)->bucket);

	return gx < gy ? -1 : gx > gy;
}

/* One script per device group that has open rows in a cluster (a group is
 * a slot); on one server one script for them all. */
static void step_write_devices(struct step *s)
{
	struct step_row **order = calloc(s->nrows ? s->nrows : 1, sizeof(*order));
	bool split = store_clustered(s->store);
	size_t n = 0, ngroups = 0, head = 6 + s->nbrokers;
	const char ***argvs = NULL;
	int *argcs = NULL;
	char (*numkeys)[16] = NULL;

	if (order == NULL)
		goto oom;
	for (size_t i = 0; i < s->nrows; i++)
		if (s->rows[i].result == NULL)
			order[n++] = &s->rows[i];
	if (n == 0) {
		free(order);
		step_queue(s);
		return;
	}
	qsort(order, n, sizeof(*order), step_cmp_group);
	for (size_t i = 0; i < n; i++)
		if (i == 0 || (split && schema_group(order[i]->bucket) != schema_group(order[i - 1]->bucket)))
			ngroups++;
	argvs = calloc(ngroups, sizeof(*argvs));
	argcs = calloc(ngroups, sizeof(*argcs));
	numkeys = calloc(ngroups, sizeof(*numkeys));
	if (argvs == NULL || argcs == NULL || numkeys == NULL)
		goto oom;
	for (size_t i = 0, g = 0; i < n; g++) {
		size_t j = i + 1;
		while (j < n && (!split || schema_group(order[j]->bucket) == schema_group(order[i]->bucket)))
			j++;
		size_t rows = j - i, k = 0;
		const char **argv = calloc(3 + 2 * rows + head + 8 * rows, sizeof(*argv));
		if (argv == NULL)
			goto oom;
		argvs[g] = argv;
		snprintf(numkeys[g], sizeof(numkeys[g]), "%zu", 2 * rows);
		argv[k++] = "EVAL";
		argv[k++] = lua_apply_devices;
		argv[k++] = numkeys[g];
		for (size_t r = i; r < j; r++) {
			argv[k++] = order[r]->dkey;
			argv[k++] = order[r]->ckey;
		}
		argv[k++] = s->seq_text;
		argv[k++] = s->target_region_code;
		argv[k++] = s->target_instance_code;
		argv[k++] = s->target_region;
		argv[k++] = s->account[0] ? "1" : "0";
		argv[k++] = s->nbrokers_text;
		for (size_t b = 0; b < s->nbrokers; b++)
			argv[k++] = b % 2 == 0 ? s->broker_codes[b / 2] : s->brokers[b];
		for (size_t r = i; r < j; r++) {
			struct step_row *row = order[r];
			const struct step_product *p = &s->products[row->product];
			const struct step_batch *fb = row->from_batch >= 0 ? &s->batches[row->from_batch] : NULL;
			argv[k++] = row->idx_text;
			argv[k++] = row->field;
			argv[k++] = row->cb_text;
			argv[k++] = p->hr_code;
			argv[k++] = p->hi_code;
			argv[k++] = fb ? fb->st : "";
			argv[k++] = fb ? fb->tg_codes : "";
			argv[k++] = fb && row->cb > 0 ? fb->first_region : "";
		}
		argcs[g] = (int)k;
		i = j;
	}
	step_send(s, true, ngroups, argcs, (const char *const *const *)argvs, step_written);
	goto out;
oom:
	step_finish(s, STEP_UNKNOWN, NULL);
out:
	for (size_t g = 0; argvs && g < ngroups; g++)
		free(argvs[g]);
	free(argvs);
	free(argcs);
	free(numkeys);
	free(order);
}

/* --- codes: the record's regions and instances as their codes --- */

/* The code of ID into OUT; an id without one is noted for a sync (OUT ""). */
static int step_code(struct step *s, enum codes_kind kind, const char *id, char *out)
{
	const char *code = id[0] ? codes_code(s->codes, kind, id) : "";

	if (code != NULL) {
		memcpy(out, code, strlen(code) + 1);
		return 0;
	}
	out[0] = '\0';
	if (s->nmissing == s->missing_cap) {
		size_t cap = s->missing_cap ? 2 * s->missing_cap : 8;
		step_field *m = realloc(s->missing, cap * sizeof(*m));
		if (m == NULL)
			return -1;
		s->missing = m;
		s->missing_cap = cap;
	}
	return codes_field(s->missing[s->nmissing++], sizeof(step_field), kind, id) < 0 ? -1 : 0;
}

/* "r/i,..." in ids to the same in codes, and its first region. */
static int step_code_targets(struct step *s, struct step_batch *b)
{
	struct schema_batch sb;
	size_t off = 0;

	b->tg_codes[0] = b->first_region[0] = '\0';
	if (b->tg[0] == '\0')
		return 0;
	if (schema_targets_parse(b->tg, strlen(b->tg), &sb) < 0)
		return 0; /* unreadable: the script treats it as no batch */
	memcpy(b->first_region, sb.targets[0].region, sizeof(b->first_region));
	for (size_t i = 0; i < sb.ntargets; i++) {
		char rc[SCHEMA_CODE_MAX + 1], ic[SCHEMA_CODE_MAX + 1];
		if (step_code(s, CODES_REGION, sb.targets[i].region, rc) < 0 ||
		    step_code(s, CODES_INSTANCE, sb.targets[i].instance, ic) < 0)
			return -1;
		off += (size_t)snprintf(b->tg_codes + off, sizeof(b->tg_codes) - off, "%s%s/%s", i ? "," : "", rc, ic);
	}
	return 0;
}

static void step_write_coded(struct step *s);

static void step_codes_synced(bool ok, void *arg)
{
	struct step *s = arg;

	if (!ok) {
		step_finish(s, STEP_UNKNOWN, NULL);
		return;
	}
	step_write_coded(s);
}

/* Encodes what the scripts compare with records, then writes; ids without
 * a code get one first (twice at most: a sync in flight for others answers
 * the first; a third miss is a store that did not keep them, and the step
 * is run again later). */
static void step_write_coded(struct step *s)
{
	s->nmissing = 0;
	if (step_code(s, CODES_REGION, s->target_region, s->target_region_code) < 0 ||
	    step_code(s, CODES_INSTANCE, s->target_instance, s->target_instance_code) < 0)
		goto oom;
	for (size_t b = 0; b + 1 < s->nbrokers; b += 2)
		if (step_code(s, CODES_INSTANCE, s->brokers[b], s->broker_codes[b / 2]) < 0)
			goto oom;
	for (size_t i = 0; i < s->nproducts; i++)
		if (s->products[i].exists && (step_code(s, CODES_REGION, s->products[i].hr, s->products[i].hr_code) < 0 ||
						     step_code(s, CODES_INSTANCE, s->products[i].hi, s->products[i].hi_code) < 0))
			goto oom;
	for (size_t i = 0; i < s->nbatches; i++)
		if (step_code_targets(s, &s->batches[i]) < 0)
			goto oom;
	if (s->nmissing == 0) {
		step_write_devices(s);
		return;
	}
	if (s->syncs < 2) {
		const char **need = calloc(s->nmissing, sizeof(*need));
		if (need == NULL)
			goto oom;
		for (size_t i = 0; i < s->nmissing; i++)
			need[i] = s->missing[i];
		s->syncs++;
		int rc = codes_sync(s->codes, need, s->nmissing, step_codes_synced, s);
		free(need);
		if (rc == 0)
			return;
	}
oom:
	step_finish(s, STEP_UNKNOWN, NULL);
}

/* --- reading: the batches the step's devices were placed by --- */

static void step_batches_read(redisReply *all, void *arg)
{
	struct step *s = arg;

	if (!step_check(s, all, s->nbatches))
		return;
	for (size_t i = 0; i < s->nbatches; i++) {
		const redisReply *r = all->element[i];
		struct step_batch *b = &s->batches[i];
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
			continue;
		if (r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len < sizeof(b->st))
			memcpy(b->st, r->element[0]->str, r->element[0]->len + 1);
		if (r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < sizeof(b->tg))
			memcpy(b->tg, r->element[1]->str, r->element[1]->len + 1);
	}
	step_write_coded(s);
}

static int step_batch_index(struct step *s, uint64_t seq)
{
	for (size_t i = 0; i < s->nbatches; i++)
		if (s->batches[i].seq == seq)
			return (int)i;
	struct step_batch *b = &s->batches[s->nbatches];
	b->seq = seq;
	if (schema_batch_key(b->key, sizeof(b->key), seq) < 0)
		return -1;
	return (int)s->nbatches++;
}

/* Products and records are in; decides what needs no writing, and reads
 * the batches that placed the others. */
static void step_records_read(redisReply *all, void *arg)
{
	struct step *s = arg;
	size_t n = 0;

	if (!step_check(s, all, all ? all->elements : 0))
		return;
	for (size_t i = 0; i < s->nproducts; i++) {
		const redisReply *r = all->element[i];
		struct step_product *p = &s->products[i];
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 4)
			continue;
		p->exists = r->element[0]->type == REDIS_REPLY_STRING;
		if (p->exists && r->element[0]->len < sizeof(p->hr))
			memcpy(p->hr, r->element[0]->str, r->element[0]->len + 1);
		if (r->element[1]->type == REDIS_REPLY_STRING && r->element[1]->len < sizeof(p->hi))
			memcpy(p->hi, r->element[1]->str, r->element[1]->len + 1);
		p->locked = r->element[2]->type == REDIS_REPLY_STRING && r->element[2]->len == 1 &&
			r->element[2]->str[0] == '1';
		if (r->element[3]->type == REDIS_REPLY_STRING &&
		    schema_parse_u64(r->element[3]->str, r->element[3]->len, &p->pb) < 0)
			p->pb = 0;
	}
	for (size_t i = 0, k = s->nproducts; i < s->nrows; i++) {
		struct step_row *row = &s->rows[i];
		const struct step_product *p;
		const redisReply *r;
		struct schema_device d;
		if (row->result != NULL)
			continue;
		r = all->element[k++];
		p = &s->products[row->product];
		if (!p->exists) {
			if (step_fail(row, "product_not_found", "no such product") < 0)
				goto oom;
			continue;
		}
		if (p->locked) {
			if (step_fail(row, "product_locked", "the product is locked") < 0)
				goto oom;
			continue;
		}
		if (r->type != REDIS_REPLY_STRING) {
			if (step_fail(row, "device_not_found", "the device is not registered") < 0)
				goto oom;
			continue;
		}
		if (schema_device_parse(r->str, r->len, &d) < 0) {
			if (step_fail(row, "internal_error", "the stored device record is unreadable") < 0)
				goto oom;
			continue;
		}
		row->has_record = true;
		row->cb = d.batch;
		snprintf(row->cb_text, sizeof(row->cb_text), "%" PRIu64, d.batch);
		row->from = d.batch ? d.batch : p->pb;
		row->from_batch = -1;
		if (row->from > 0 && (row->from_batch = step_batch_index(s, row->from)) < 0)
			goto oom;
	}
	if (s->nbatches == 0) {
		step_write_coded(s);
		return;
	}
	const char *(*argvs)[4] = calloc(s->nbatches, sizeof(*argvs));
	const char *const **pargvs = calloc(s->nbatches, sizeof(*pargvs));
	int *argcs = calloc(s->nbatches, sizeof(*argcs));
	if (argvs == NULL || pargvs == NULL || argcs == NULL) {
		free(argvs);
		free(pargvs);
		free(argcs);
		goto oom;
	}
	for (size_t i = 0; i < s->nbatches; i++, n++) {
		argvs[i][0] = "HMGET";
		argvs[i][1] = s->batches[i].key;
		argvs[i][2] = "st";
		argvs[i][3] = "tg";
		pargvs[i] = argvs[i];
		argcs[i] = 4;
	}
	step_send(s, false, n, argcs, pargvs, step_batches_read);
	free(argvs);
	free(pargvs);
	free(argcs);
	return;
oom:
	step_finish(s, STEP_UNKNOWN, NULL);
}

static int step_product_index(struct step *s, const char *pk)
{
	for (size_t i = 0; i < s->nproducts; i++)
		if (strcmp(s->products[i].pk, pk) == 0)
			return (int)i;
	struct step_product *p = &s->products[s->nproducts];
	p->pk = pk;
	if (schema_product_key(p->key, sizeof(p->key), pk) < 0)
		return -1;
	return (int)s->nproducts++;
}

/* Reads the products of the open rows and, for devices, their records. */
static void step_read_rest(struct step *s)
{
	size_t n = 0, cap = s->nproducts + s->nrows;
	const char *(*argvs)[6] = calloc(cap ? cap : 1, sizeof(*argvs));
	const char *const **pargvs = calloc(cap ? cap : 1, sizeof(*pargvs));
	int *argcs = calloc(cap ? cap : 1, sizeof(*argcs));

	if (argvs == NULL || pargvs == NULL || argcs == NULL) {
		step_finish(s, STEP_UNKNOWN, NULL);
		goto out;
	}
	for (size_t i = 0; i < s->nproducts; i++, n++) {
		argvs[n][0] = "HMGET";
		argvs[n][1] = s->products[i].key;
		argvs[n][2] = "hr";
		argvs[n][3] = "hi";
		argvs[n][4] = "lk";
		argvs[n][5] = "pb";
		argcs[n] = 6;
		pargvs[n] = argvs[n];
	}
	for (size_t i = 0; i < s->nrows; i++) {
		if (s->rows[i].result != NULL)
			continue;
		argvs[n][0] = "HGET";
		argvs[n][1] = s->rows[i].dkey;
		argvs[n][2] = s->rows[i].field;
		argcs[n] = 3;
		pargvs[n] = argvs[n];
		n++;
	}
	if (n == s->nproducts) {
		/* Nothing left to read: every open row was decided from itself. */
		step_queue(s);
		goto out;
	}
	step_send(s, false, n, argcs, pargvs, step_records_read);
out:
	free(argvs);
	free(pargvs);
	free(argcs);
}

/* A row as stored: tag, productKey, then for devices US deviceName US bucket. */
static int step_parse_row(struct step *s, struct step_row *r, char *item, size_t len)
{
	char *us1, *us2;

	r->tag = len ? item[0] : '?';
	r->pk = len ? item + 1 : item;
	r->product = -1;
	r->from_batch = -1;
	if (r->tag == 'D')
		return step_fail(r, "duplicate_row", "the same device is in an earlier row");
	if (r->tag == 'N')
		return step_fail(r, "invalid_device_name", "not a valid productKey and deviceName");
	if (s->products_only) {
		r->dn = "";
		return (r->product = step_product_index(s, r->pk)) < 0 ? -1 : 0;
	}
	us1 = memchr(item, STEP_US, len);
	us2 = us1 ? memchr(us1 + 1, STEP_US, len - (size_t)(us1 + 1 - item)) : NULL;
	if (us2 == NULL || strlen(us2 + 1) != 5)
		return step_fail(r, "internal_error", "the stored row is unreadable");
	*us1 = *us2 = '\0';
	r->dn = us1 + 1;
	r->bucket = (uint32_t)strtoul(us2 + 1, NULL, 16);
	if (schema_device_field(r->field, sizeof(r->field), r->pk, r->dn) < 0 ||
	    schema_bucket_key(r->dkey, sizeof(r->dkey), 'd', r->bucket) < 0 ||
	    schema_counters_key(r->ckey, sizeof(r->ckey), schema_group(r->bucket)) < 0)
		return step_fail(r, "internal_error", "the stored row is unreadable");
	return (r->product = step_product_index(s, r->pk)) < 0 ? -1 : 0;
}

static void step_opened(redisReply *all, void *arg)
{
	struct step *s = arg;
	const redisReply *r, *b, *open;

	if (!step_check(s, all, 1))
		return;
	r = all->element[0];
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || (b = r->element[0])->type != REDIS_REPLY_ARRAY ||
	    b->elements != 6 || (open = r->element[1])->type != REDIS_REPLY_ARRAY || open->elements % 2) {
		step_finish(s, STEP_REFUSED, "unexpected answer to the step's rows");
		return;
	}
	/* {st, tg, ac, kd, status, total}: the first target is the one moved to. */
	snprintf(s->strategy, sizeof(s->strategy), "%s", b->element[0]->str);
	snprintf(s->account, sizeof(s->account), "%s", b->element[2]->str);
	s->products_only = b->element[3]->len == 1 && b->element[3]->str[0] == 'p';
	{
		struct schema_batch sb;
		if (schema_targets_parse(b->element[1]->str, b->element[1]->len, &sb) < 0) {
			step_finish(s, STEP_REFUSED, "the batch's targets are unreadable");
			return;
		}
		memcpy(s->target_region, sb.targets[0].region, sizeof(s->target_region));
		memcpy(s->target_instance, sb.targets[0].instance, sizeof(s->target_instance));
	}
	/* The rows are parsed in place: the step keeps that reply. */
	s->open = all->element[0];
	all->element[0] = NULL;
	s->nrows = open->elements / 2;
	s->rows = calloc(s->nrows ? s->nrows : 1, sizeof(*s->rows));
	s->products = calloc(s->nrows ? s->nrows : 1, sizeof(*s->products));
	s->batches = calloc(s->nrows ? s->nrows : 1, sizeof(*s->batches));
	if (s->rows == NULL || s->products == NULL || s->batches == NULL) {
		s->nrows = 0;
		step_finish(s, STEP_UNKNOWN, NULL);
		return;
	}
	for (size_t i = 0; i < s->nrows; i++) {
		redisReply *e = open->element[2 * i + 1];
		s->rows[i].idx = (size_t)open->element[2 * i]->integer;
		snprintf(s->rows[i].idx_text, sizeof(s->rows[i].idx_text), "%zu", s->rows[i].idx);
		if (e->type != REDIS_REPLY_STRING || step_parse_row(s, &s->rows[i], e->str, e->len) < 0) {
			step_finish(s, STEP_UNKNOWN, NULL);
			return;
		}
	}
	if (s->products_only) {
		step_write_products(s);
		return;
	}
	step_read_rest(s);
}

int step_run(struct store *st, struct codes *codes, struct hooks_want *hooks, uint64_t seq, size_t start,
	size_t count, const char *const *brokers, size_t nbrokers, step_done_fn fn, void *arg)
{
	struct step *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -1;
	s->store = st;
	s->codes = codes;
	s->hooks = hooks;
	s->seq = seq;
	if (nbrokers > 0 && ((s->brokers = calloc(nbrokers, sizeof(*s->brokers))) == NULL ||
		    (s->broker_codes = calloc(nbrokers / 2 + 1, sizeof(*s->broker_codes))) == NULL)) {
		free(s->brokers);
		free(s);
		return -1;
	}
	/* (instance, broker) pairs become (instance, the broker's outbox key). */
	for (; s->nbrokers < nbrokers; s->nbrokers++) {
		char outbox[SCHEMA_KEY_MAX + 128];
		const char *v = brokers[s->nbrokers];
		if (s->nbrokers % 2 == 1) {
			if (schema_outbox_key(outbox, sizeof(outbox), v) < 0)
				outbox[0] = '\0';
			v = outbox;
		}
		if ((s->brokers[s->nbrokers] = strdup(v)) == NULL) {
			step_free(s);
			return -1;
		}
	}
	s->fn = fn;
	s->arg = arg;
	snprintf(s->seq_text, sizeof(s->seq_text), "%" PRIu64, seq);
	snprintf(s->start_text, sizeof(s->start_text), "%zu", start);
	snprintf(s->count_text, sizeof(s->count_text), "%zu", count);
	snprintf(s->nbrokers_text, sizeof(s->nbrokers_text), "%zu", nbrokers / 2);
	if (schema_batch_key(s->bkey, sizeof(s->bkey), seq) < 0 ||
	    schema_batch_part_key(s->ikey, sizeof(s->ikey), seq, 'i') < 0 ||
	    schema_batch_part_key(s->rkey, sizeof(s->rkey), seq, 'r') < 0 ||
	    schema_batch_part_key(s->nkey, sizeof(s->nkey), seq, 'n') < 0 ||
	    schema_batch_part_key(s->fkey, sizeof(s->fkey), seq, 'f') < 0) {
		step_free(s);
		return -1;
	}
	const char *argv[] = { "EVAL", lua_step_read, "3", s->bkey, s->ikey, s->rkey, s->start_text, s->count_text };
	const char *const *argvs[] = { argv };
	const int argcs[] = { 8 };
	if (store_gather(st, STEP_PART_TIMEOUT_MS, 1, argcs, argvs, step_opened, s) < 0) {
		step_free(s);
		return -1;
	}
	return 0;
}
