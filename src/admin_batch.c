#include "admin_batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "admin_audit.h"
#include "adminreq.h"
#include "batch.h"
#include "config.h"
#include "csvdoc.h"
#include "form.h"
#include "log.h"
#include "lua.h"
#include "schema.h"
#include "server.h"
#include "store.h"

#define ADMIN_BATCH_US '\x1f' /* separates an item's fields: no upload text holds it */
#define ADMIN_BATCH_LIST_MAX 100

/* --- creating --- */

struct admin_batch_upload {
	char **items;
	size_t nitems;
	size_t total;
	const char **argv; /* the create script's, sent once the number is taken */
	size_t argc;
	char seq[24];
	char keys[2][SCHEMA_KEY_MAX];
	char authkey[128];
	char targets[SCHEMA_TARGETS_MAX * (CATALOG_REGION_ID_MAX + CATALOG_INSTANCE_ID_MAX + 2) + 1];
	char account[SCHEMA_ACCOUNT_MAX + 1];
	char now[24], step[16], kind[2];
	char strategy[8];
};

static void admin_batch_upload_free(void *p)
{
	struct admin_batch_upload *u = p;

	if (u == NULL)
		return;
	for (size_t i = 0; i < u->nitems; i++)
		free(u->items[i]);
	free(u->items);
	free(u->argv);
	free(u);
}

static void admin_batch_created(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_batch_upload *u = ar->data;

	if (reply == NULL) {
		adminreq_error(ar, 503, "outcome_unknown",
			"Redis did not confirm in time; the batch may have been accepted: list the batches before retrying");
	} else if (reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer < 0) {
		adminreq_error(ar, 400, "invalid_auth_code",
			"authCode is wrong, expired, used, or issued for another account");
	} else if (!ar->answered) {
		char id[24];
		yajl_gen g = yajl_gen_alloc(NULL);
		snprintf(id, sizeof(id), "%lld", reply->integer);
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "batchId", id);
		adminreq_gen_kv(g, "status", "initializing");
		adminreq_gen_string(g, "total");
		yajl_gen_integer(g, (long long)u->total);
		yajl_gen_map_close(g);
		adminreq_answer_gen(ar, 202, g);
		log_info("admin", "batch %lld accepted: %zu rows", reply->integer, u->total);
	}
	adminreq_unref(ar);
}

/* Encodes an item as the worker reads it: tag, productKey, US, deviceName, US, bucket. */
static char *admin_batch_item(const struct batch_request *b, const struct batch_item *it)
{
	char *s = NULL;
	int n;

	if (b->kind == BATCH_PRODUCTS)
		n = asprintf(&s, "%c%s", it->tag, it->product_key);
	else
		n = asprintf(&s, "%c%s%c%s%c%05x", it->tag, it->product_key, ADMIN_BATCH_US, it->device_name,
			ADMIN_BATCH_US, schema_bucket(it->product_key, it->device_name));
	return n < 0 ? NULL : s;
}

/* The batch's number is taken first, so that the create script is given
 * every key it writes (docs/key-schema.md). A number whose script then
 * fails is simply never used. */
static void admin_batch_numbered(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_batch_upload *u = ar->data;
	const char **argv = u->argv;
	size_t k = 3;
	uint64_t seq;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER || reply->integer <= 0) {
		if (reply == NULL)
			adminreq_unavailable(ar);
		else
			adminreq_redis_failed(ar, reply);
		goto out;
	}
	seq = (uint64_t)reply->integer;
	snprintf(u->seq, sizeof(u->seq), "%" PRIu64, seq);
	if (schema_batch_key(u->keys[0], sizeof(u->keys[0]), seq) < 0 ||
	    schema_batch_part_key(u->keys[1], sizeof(u->keys[1]), seq, 'i') < 0) {
		adminreq_error(ar, 500, "internal", "bad batch number");
		goto out;
	}
	argv[0] = "EVAL";
	argv[1] = lua_create;
	argv[2] = u->authkey[0] ? "6" : "5";
	argv[k++] = u->keys[0];
	argv[k++] = u->keys[1];
	argv[k++] = SCHEMA_BATCHES_KEY;
	argv[k++] = SCHEMA_STEPS_KEY;
	argv[k++] = SCHEMA_STATS_BATCHES_KEY;
	if (u->authkey[0])
		argv[k++] = u->authkey;
	argv[k++] = u->seq;
	argv[k++] = u->strategy;
	argv[k++] = u->targets;
	argv[k++] = u->account;
	argv[k++] = u->kind;
	argv[k++] = u->now;
	argv[k++] = u->step;
	for (size_t i = 0; i < u->nitems; i++)
		argv[k++] = u->items[i];
	ar->refs++;
	if (store_write_timed(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), admin_batch_created, ar,
		    (int)k, argv, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
out:
	adminreq_unref(ar);
}

static void admin_batch_create(struct adminreq *ar, const struct route_args *a)
{
	const struct config *cfg = ar->t->srv->cfg;
	const char *ctype = http_header(ar->req, "Content-Type");
	struct batch_request *b = NULL;
	struct admin_batch_upload *u = NULL;
	struct batch_error err = { 0 };
	size_t len;
	char *body = adminreq_body(ar->req, &len);

	(void)a;
	if (body == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	if (batch_parse(ar->req->r.query, ctype, body, len, ar->t->catalog,
		    (size_t)cfg->batch_max_devices, &b, &err) < 0) {
		adminreq_error(ar, err.status, err.code, err.message);
		goto out;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL || (u->argv = calloc(16 + b->nitems, sizeof(*u->argv))) == NULL ||
	    (u->items = calloc(b->nitems, sizeof(char *))) == NULL) {
		admin_batch_upload_free(u);
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	ar->data = u;
	ar->data_free = admin_batch_upload_free;
	u->total = b->nitems;
	for (size_t i = 0; i < b->nitems; i++) {
		if ((u->items[i] = admin_batch_item(b, &b->items[i])) == NULL) {
			adminreq_error(ar, 500, "internal", "out of memory");
			goto out;
		}
		u->nitems++;
	}
	{
		struct schema_batch sb = { .ntargets = b->ntargets };
		memcpy(sb.targets, b->targets, sizeof(sb.targets));
		if (schema_targets_format(&sb, u->targets, sizeof(u->targets)) < 0) {
			adminreq_error(ar, 500, "internal", "targets too long");
			goto out;
		}
	}
	if (b->target_account && schema_auth_code_key(u->authkey, sizeof(u->authkey), b->target_account,
					 b->auth_code) < 0) {
		adminreq_error(ar, 400, "invalid_auth_code", "authCode or targetAccount too long");
		goto out;
	}
	snprintf(u->account, sizeof(u->account), "%s", b->target_account ? b->target_account : "");
	snprintf(u->strategy, sizeof(u->strategy), "%s", b->strategy == SCHEMA_NEAREST ? "nearest" : "region");
	snprintf(u->now, sizeof(u->now), "%lld", (long long)time(NULL));
	snprintf(u->step, sizeof(u->step), "%d", cfg->worker_chunk_size);
	u->kind[0] = (char)b->kind;
	const char *incr[] = { "INCR", SCHEMA_BATCH_SEQ_KEY };
	ar->refs++;
	if (store_write(adminreq_store(ar->t), admin_batch_numbered, ar, 2, incr, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
out:
	batch_request_free(b);
	free(body);
}

/* --- reading --- */

/* Looks up NAME in a flat [field, value, ...] reply; NULL when absent. */
static const char *admin_batch_field(const redisReply *hash, const char *name)
{
	for (size_t i = 0; i + 1 < hash->elements; i += 2)
		if (hash->element[i]->type == REDIS_REPLY_STRING && strcmp(hash->element[i]->str, name) == 0)
			return hash->element[i + 1]->type == REDIS_REPLY_STRING ? hash->element[i + 1]->str : NULL;
	return NULL;
}

static void admin_batch_gen_number(yajl_gen g, const char *key, const char *value)
{
	long long n = value ? strtoll(value, NULL, 10) : 0;

	adminreq_gen_string(g, key);
	yajl_gen_integer(g, n);
}

/* "notify": the batch's rows by notify state, from its notify states (a
 * byte a row); "sent" are delivered to the broker and not answered. */
static void admin_batch_gen_notify(yajl_gen g, const redisReply *states)
{
	static const char letters[] = "psan";
	static const char *const names[] = { "pending", "sent", "acked", "none" };
	long long n[4] = { 0 };

	adminreq_gen_string(g, "notify");
	for (size_t i = 0; states->type == REDIS_REPLY_STRING && i < states->len; i++) {
		const char *c = memchr(letters, states->str[i], 4);
		if (c != NULL && states->str[i] != '\0')
			n[c - letters]++;
	}
	yajl_gen_map_open(g);
	for (size_t k = 0; k < 4; k++) {
		adminreq_gen_string(g, names[k]);
		yajl_gen_integer(g, n[k]);
	}
	yajl_gen_map_close(g);
}

/* The batch from its hash; NOTIFIES (its notify states, NULL for none asked) adds "notify". */
static void admin_batch_gen(yajl_gen g, const char *id, const redisReply *hash, const redisReply *notifies)
{
	const char *st = admin_batch_field(hash, "st"), *tg = admin_batch_field(hash, "tg");
	const char *ac = admin_batch_field(hash, "ac"), *kd = admin_batch_field(hash, "kd");
	const char *ct = admin_batch_field(hash, "ct"), *ut = admin_batch_field(hash, "ut");
	struct schema_batch b = { 0 };
	bool nearest = st && strcmp(st, "nearest") == 0;

	if (tg == NULL || schema_targets_parse(tg, strlen(tg), &b) < 0)
		b.ntargets = 0;
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "batchId", id);
	adminreq_gen_kv(g, "status", admin_batch_field(hash, "status"));
	admin_batch_gen_number(g, "total", admin_batch_field(hash, "total"));
	admin_batch_gen_number(g, "processed", admin_batch_field(hash, "processed"));
	admin_batch_gen_number(g, "succeeded", admin_batch_field(hash, "succeeded"));
	admin_batch_gen_number(g, "failed", admin_batch_field(hash, "failed"));
	adminreq_gen_time(g, "createdAt", ct ? strtoll(ct, NULL, 10) : 0);
	adminreq_gen_time(g, "updatedAt", ut ? strtoll(ut, NULL, 10) : 0);
	adminreq_gen_kv(g, "strategy", nearest ? "nearest" : "region");
	adminreq_gen_kv(g, "kind", kd && kd[0] == BATCH_PRODUCTS ? "products" : "devices");
	if (nearest) {
		adminreq_gen_string(g, "candidates");
		yajl_gen_array_open(g);
		for (size_t i = 0; i < b.ntargets; i++) {
			yajl_gen_map_open(g);
			adminreq_gen_kv(g, "region", b.targets[i].region);
			adminreq_gen_kv(g, "instance", b.targets[i].instance);
			yajl_gen_map_close(g);
		}
		yajl_gen_array_close(g);
	} else {
		adminreq_gen_kv(g, "targetRegion", b.ntargets ? b.targets[0].region : NULL);
		adminreq_gen_kv(g, "targetInstance", b.ntargets ? b.targets[0].instance : NULL);
	}
	adminreq_gen_kv(g, "targetAccount", ac && ac[0] ? ac : NULL);
	adminreq_gen_kv(g, "error", admin_batch_field(hash, "error"));
	{
		const char *pr = admin_batch_field(hash, "pruned");
		/* Only once retention removed its rows: then results answer 410. */
		if (pr != NULL)
			adminreq_gen_time(g, "prunedAt", strtoll(pr, NULL, 10));
		else if (notifies != NULL)
			admin_batch_gen_notify(g, notifies);
	}
	yajl_gen_map_close(g);
}

/* The batch's hash and its notify states, gathered. */
static void admin_batch_get_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	const redisReply *reply;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != 2 ||
	    (reply = all->element[0])->type != REDIS_REPLY_ARRAY) {
		adminreq_unavailable(ar);
	} else if (reply->elements == 0) {
		adminreq_error(ar, 404, "batch_not_found", "no such batch");
	} else if (!ar->answered) {
		yajl_gen g = yajl_gen_alloc(NULL);
		admin_batch_gen(g, ar->id, reply, all->element[1]);
		adminreq_answer_gen(ar, 200, g);
	}
	adminreq_unref(ar);
}

/* 410: the batch is known, its rows and results are not kept any more. */
static void admin_batch_expired(struct adminreq *ar)
{
	adminreq_error(ar, 410, "batch_expired",
		"the batch's rows and results were removed after worker.batch_retention_s; its assignments stay");
}

/* The results: [[total, pruned], items, results, notify states, failures].
 * The rows never change and results are only added, so these reads make one
 * view. */
static void admin_batch_results_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	redisReply *items, *res, *nres, *fails;
	const char **by_index = NULL;
	char *csv = NULL;
	size_t cap, off;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
		adminreq_unavailable(ar);
		goto out;
	}
	if (reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
	    reply->element[0]->element[0]->type != REDIS_REPLY_STRING) {
		adminreq_error(ar, 404, "batch_not_found", "no such batch");
		goto out;
	}
	if (reply->element[0]->element[1]->type == REDIS_REPLY_STRING) {
		admin_batch_expired(ar);
		goto out;
	}
	items = reply->element[1];
	res = reply->element[2];
	nres = reply->element[3];
	fails = reply->element[4];
	/* Results and notify states: a byte a row (nil: none yet); the failed
	 * rows' code and message in a hash by row. */
	if (items->type != REDIS_REPLY_ARRAY || (res->type != REDIS_REPLY_STRING && res->type != REDIS_REPLY_NIL) ||
	    (nres->type != REDIS_REPLY_STRING && nres->type != REDIS_REPLY_NIL) || fails->type != REDIS_REPLY_ARRAY) {
		adminreq_unavailable(ar);
		goto out;
	}
	by_index = calloc(items->elements + 1, sizeof(*by_index));
	if (by_index == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i + 1 < fails->elements; i += 2) {
		unsigned long idx = strtoul(fails->element[i]->str, NULL, 10);
		if (idx < items->elements && fails->element[i + 1]->type == REDIS_REPLY_STRING)
			by_index[idx] = fails->element[i + 1]->str;
	}
	/* Quoting at most doubles a field; the rest is separators and "success"/"failed". */
	cap = 128;
	for (size_t i = 0; i < items->elements; i++)
		cap += 2 * items->element[i]->len + 64; /* + result and notify words */
	for (size_t i = 1; i < fails->elements; i += 2)
		cap += 2 * fails->element[i]->len;
	csv = malloc(cap);
	if (csv == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	off = (size_t)snprintf(csv, cap, "productKey,deviceName,result,code,message,notify\r\n");
	for (size_t i = 0; i < items->elements; i++) {
		const char *item = items->element[i]->str;
		char r = res->type == REDIS_REPLY_STRING && i < res->len ? res->str[i] : '\0';
		char n = nres->type == REDIS_REPLY_STRING && i < nres->len ? nres->str[i] : '\0';
		char pk[CSVDOC_FIELD_MAX + 1] = "", dn[CSVDOC_FIELD_MAX + 1] = "", code[64] = "",
		     msg[CSVDOC_FIELD_MAX] = "";
		const char *sep;

		if ((r != 's' && r != 'f') || item == NULL || item[0] == '\0')
			continue;
		/* item: tag, productKey [US deviceName US bucket] */
		sep = strchr(item + 1, ADMIN_BATCH_US);
		snprintf(pk, sizeof(pk), "%.*s", sep ? (int)(sep - item - 1) : (int)strlen(item + 1), item + 1);
		if (sep) {
			const char *sep2 = strchr(sep + 1, ADMIN_BATCH_US);
			snprintf(dn, sizeof(dn), "%.*s", sep2 ? (int)(sep2 - sep - 1) : (int)strlen(sep + 1), sep + 1);
		}
		/* a failure: code US message */
		if (r == 'f' && by_index[i] != NULL) {
			const char *m = strchr(by_index[i], ADMIN_BATCH_US);
			if (m) {
				snprintf(code, sizeof(code), "%.*s", (int)(m - by_index[i]), by_index[i]);
				snprintf(msg, sizeof(msg), "%s", m + 1);
			}
		}
		/* A valid name is written as it is (a factory burns it); what a
		 * client sent that is no name is neutralised as a spreadsheet cell. */
		if ((form_valid_product_key(pk) ? csvdoc_write_field : csvdoc_write_text)(csv, cap, &off, pk) < 0 ||
		    off + 1 >= cap)
			goto toolong;
		csv[off++] = ',';
		if ((form_valid_device_name(dn) || (dn[0] == '\0' && form_valid_product_key(pk)) ? csvdoc_write_field
												 : csvdoc_write_text)(
			    csv, cap, &off, dn) < 0)
			goto toolong;
		off += (size_t)snprintf(csv + off, cap - off, ",%s,", r == 's' ? "success" : "failed");
		if (off >= cap || csvdoc_write_text(csv, cap, &off, code) < 0 || off + 1 >= cap)
			goto toolong;
		csv[off++] = ',';
		if (csvdoc_write_text(csv, cap, &off, msg) < 0 || off + 3 >= cap)
			goto toolong;
		/* notify: pending, sent, acked, none (the instance has no broker), or
		 * empty for a row that moved nothing */
		off += (size_t)snprintf(csv + off, cap - off, ",%s\r\n",
			n == 'p' ? "pending" : n == 's' ? "sent" : n == 'a' ? "acked" : n == 'n' ? "none" : "");
		if (off >= cap)
			goto toolong;
	}
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_csv, csv, off);
	goto out;
toolong:
	adminreq_error(ar, 500, "internal", "results too large");
out:
	free(by_index);
	free(csv);
	adminreq_unref(ar);
}

static void admin_batch_results(struct adminreq *ar)
{
	char bkey[SCHEMA_KEY_MAX], ikey[SCHEMA_KEY_MAX + 4], rkey[SCHEMA_KEY_MAX + 4], nkey[SCHEMA_KEY_MAX + 4],
		fkey[SCHEMA_KEY_MAX + 4];

	uint64_t seq = strtoull(ar->id, NULL, 10);

	if (schema_batch_key(bkey, sizeof(bkey), seq) < 0 || schema_batch_part_key(ikey, sizeof(ikey), seq, 'i') < 0 ||
	    schema_batch_part_key(rkey, sizeof(rkey), seq, 'r') < 0 ||
	    schema_batch_part_key(nkey, sizeof(nkey), seq, 'n') < 0 ||
	    schema_batch_part_key(fkey, sizeof(fkey), seq, 'f') < 0) {
		adminreq_error(ar, 404, "batch_not_found", "no such batch");
		return;
	}
	const char *total[] = { "HMGET", bkey, "total", "pruned" };
	const char *lrange[] = { "LRANGE", ikey, "0", "-1" };
	const char *results[] = { "GET", rkey };
	const char *notify[] = { "GET", nkey };
	const char *failures[] = { "HGETALL", fkey };
	const char *const *argvs[] = { total, lrange, results, notify, failures };
	const int argcs[] = { 4, 4, 2, 2, 2 };
	adminreq_gather(ar, 5, argcs, argvs, admin_batch_results_reply);
}

struct admin_batch_page {
	size_t limit;
	size_t n;         /* batches read: LIMIT, or one more when there is a next page */
	char (*seqs)[24];
};

static void admin_batch_page_free(void *p)
{
	struct admin_batch_page *pg = p;

	if (pg == NULL)
		return;
	free(pg->seqs);
	free(pg);
}

/* Each batch's hash, in the order of the page. */
static void admin_batch_list_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_batch_page *pg = ar->data;
	yajl_gen g;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != pg->n) {
		adminreq_unavailable(ar);
		goto out;
	}
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "batches");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < pg->n && i < pg->limit; i++)
		if (reply->element[i]->type == REDIS_REPLY_ARRAY && reply->element[i]->elements > 0)
			admin_batch_gen(g, pg->seqs[i], reply->element[i], NULL);
	yajl_gen_array_close(g);
	/* One more than asked for means there is a next page, after the last shown. */
	adminreq_gen_kv(g, "nextCursor", pg->n > pg->limit ? pg->seqs[pg->limit - 1] : NULL);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	adminreq_unref(ar);
}

/* The page's numbers, newest first; then their hashes. */
static void admin_batch_index_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_batch_page *pg = ar->data;
	char (*keys)[SCHEMA_KEY_MAX] = NULL;
	const char *(*argvs)[2] = NULL;
	const char *const **pargvs = NULL;
	int *argcs = NULL;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	pg->n = reply->elements;
	if (pg->n == 0) {
		redisReply none = { .type = REDIS_REPLY_ARRAY };
		ar->refs++;
		admin_batch_list_reply(&none, ar);
		goto out;
	}
	pg->seqs = calloc(pg->n, sizeof(*pg->seqs));
	keys = calloc(pg->n, sizeof(*keys));
	argvs = calloc(pg->n, sizeof(*argvs));
	pargvs = calloc(pg->n, sizeof(*pargvs));
	argcs = calloc(pg->n, sizeof(*argcs));
	if (pg->seqs == NULL || keys == NULL || argvs == NULL || pargvs == NULL || argcs == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < pg->n; i++) {
		uint64_t seq;
		const redisReply *e = reply->element[i];
		if (e->type != REDIS_REPLY_STRING || schema_parse_u64(e->str, e->len, &seq) < 0 ||
		    schema_batch_key(keys[i], sizeof(keys[i]), seq) < 0) {
			adminreq_error(ar, 500, "internal", "the batch index is unreadable");
			goto out;
		}
		snprintf(pg->seqs[i], sizeof(pg->seqs[i]), "%" PRIu64, seq);
		argvs[i][0] = "HGETALL";
		argvs[i][1] = keys[i];
		pargvs[i] = argvs[i];
		argcs[i] = 2;
	}
	adminreq_gather(ar, pg->n, argcs, pargvs, admin_batch_list_reply);
out:
	free(keys);
	free(argvs);
	free(pargvs);
	free(argcs);
	adminreq_unref(ar);
}

static bool admin_batch_digits(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static void admin_batch_list(struct adminreq *ar, const struct route_args *a)
{
	const char *query = ar->req->r.query;
	char *copy = query ? strdup(query) : NULL; /* decoded in place */
	struct form_param q[FORM_PARAMS_MAX];
	const struct form_param *p;
	const char *limit_s, *cursor, *why;
	char limit[16], max[32];
	size_t nq = 0;
	long n = 20;

	(void)a;
	if (query && (copy == NULL || form_query_parse(copy, strlen(copy), q, FORM_PARAMS_MAX, &nq, &why) < 0)) {
		adminreq_error(ar, 400, "invalid_parameter", "the query string cannot be read");
		goto out;
	}
	limit_s = (p = form_param_find(q, nq, "limit")) != NULL ? p->value : NULL;
	cursor = (p = form_param_find(q, nq, "cursor")) != NULL ? p->value : NULL;
	if (limit_s) {
		if (!admin_batch_digits(limit_s, 3) || (n = strtol(limit_s, NULL, 10)) < 1 || n > ADMIN_BATCH_LIST_MAX) {
			adminreq_error(ar, 400, "invalid_parameter", "limit must be 1-100");
			goto out;
		}
	}
	if (cursor && cursor[0] && !admin_batch_digits(cursor, 20)) {
		adminreq_error(ar, 400, "invalid_parameter", "cursor must be a nextCursor value");
		goto out;
	}
	snprintf(limit, sizeof(limit), "%ld", n + 1);
	snprintf(max, sizeof(max), "(%s", cursor && cursor[0] ? cursor : "");
	struct admin_batch_page *pg = calloc(1, sizeof(*pg));
	if (pg == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	pg->limit = (size_t)n;
	ar->data = pg;
	ar->data_free = admin_batch_page_free;
	const char *argv[] = { "ZREVRANGEBYSCORE", SCHEMA_BATCHES_KEY, cursor && cursor[0] ? max : "+inf", "-inf",
		"LIMIT", "0", limit };
	ar->refs++;
	if (store_command(adminreq_store(ar->t), admin_batch_index_reply, ar, 7, argv, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
out:
	free(copy);
}

/* --- retry --- */

static void admin_batch_retry_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer == -1) {
		adminreq_error(ar, 404, "batch_not_found", "no such batch");
	} else if (reply->integer == -2) {
		adminreq_error(ar, 409, "batch_not_failed", "only a failed batch can be retried");
	} else if (reply->integer == -3) {
		admin_batch_expired(ar);
	} else if (!ar->answered) {
		yajl_gen g = yajl_gen_alloc(NULL);
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "batchId", ar->id);
		adminreq_gen_kv(g, "status", "running");
		adminreq_gen_string(g, "queued");
		yajl_gen_integer(g, reply->integer);
		yajl_gen_map_close(g);
		adminreq_answer_gen(ar, 202, g);
		log_info("admin", "batch %s retried: %lld rows queued", ar->id, reply->integer);
	}
	adminreq_unref(ar);
}

/* --- authorization codes --- */

static void admin_batch_code_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	const char *code = ar->id;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->type == REDIS_REPLY_NIL) {
		/* One in a million: that code is live already for this account. */
		adminreq_error(ar, 503, "unavailable", "try again");
	} else if (!ar->answered) {
		yajl_gen g = yajl_gen_alloc(NULL);
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "authCode", code);
		adminreq_gen_kv(g, "account", ar->account);
		adminreq_gen_string(g, "expiresIn");
		yajl_gen_integer(g, ar->t->srv->cfg->auth_code_ttl_s);
		yajl_gen_map_close(g);
		adminreq_answer_gen(ar, 201, g);
	}
	adminreq_unref(ar);
}

static void admin_batch_code(struct adminreq *ar)
{
	char key[128], ttl[16];
	uint32_t r;

	/* Uniform over 000000-999999: draw again above the last whole million. */
	do {
		if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
			adminreq_error(ar, 500, "internal", "no randomness");
			return;
		}
	} while (r >= 4294000000u);
	snprintf(ar->id, sizeof(ar->id), "%06u", r % 1000000u);
	if (schema_auth_code_key(key, sizeof(key), ar->account, ar->id) < 0) {
		adminreq_error(ar, 400, "invalid_account", "account too long");
		return;
	}
	snprintf(ttl, sizeof(ttl), "%d", ar->t->srv->cfg->auth_code_ttl_s);
	const char *argv[] = { "SET", key, "1", "EX", ttl, "NX" };
	ar->refs++;
	if (store_write(adminreq_store(ar->t), admin_batch_code_reply, ar, 6, argv, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
}

/* --- statistics --- */

static long long admin_batch_count(const redisReply *hash, const char *name)
{
	const char *v = admin_batch_field(hash, name);

	return v ? strtoll(v, NULL, 10) : 0;
}

/* The devices of one region, summed over the groups. */
struct admin_batch_region {
	const char *id; /* borrowed from the reply */
	size_t len;
	long long n;
};

/* Every group's counters (SCHEMA_GROUPS hashes), then the batch counters. */
static void admin_batch_stats_reply(redisReply *reply, void *arg)
{
	static const char *const states[] = { "initializing", "running", "completed", "failed" };
	struct adminreq *ar = arg;
	struct admin_batch_region *regions = NULL;
	size_t nregions = 0, cap = 0;
	long long total = 0, active = 0, activations = 0;
	const redisReply *bat;
	yajl_gen g;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != SCHEMA_GROUPS + 1) {
		adminreq_unavailable(ar);
		goto out;
	}
	for (size_t k = 0; k < SCHEMA_GROUPS; k++) {
		const redisReply *h = reply->element[k];
		if (h->type != REDIS_REPLY_ARRAY) {
			adminreq_redis_failed(ar, h);
			goto out;
		}
		for (size_t i = 0; i + 1 < h->elements; i += 2) {
			const redisReply *f = h->element[i];
			long long v = strtoll(h->element[i + 1]->str ? h->element[i + 1]->str : "0", NULL, 10);
			size_t pl = sizeof(SCHEMA_REGION_FIELD_PREFIX) - 1;
			if (strcmp(f->str, SCHEMA_C_DEVICES) == 0) {
				total += v;
			} else if (strcmp(f->str, SCHEMA_C_ACTIVE) == 0) {
				active += v;
			} else if (strcmp(f->str, SCHEMA_C_ACTIVATIONS) == 0) {
				activations += v;
			} else if (f->len > pl && memcmp(f->str, SCHEMA_REGION_FIELD_PREFIX, pl) == 0) {
				size_t j;
				for (j = 0; j < nregions; j++)
					if (regions[j].len == f->len - pl && memcmp(regions[j].id, f->str + pl, f->len - pl) == 0)
						break;
				if (j == nregions) {
					if (nregions == cap) {
						struct admin_batch_region *r2 = realloc(regions, (cap = cap ? 2 * cap : 16) *
							sizeof(*regions));
						if (r2 == NULL) {
							adminreq_error(ar, 500, "internal", "out of memory");
							goto out;
						}
						regions = r2;
					}
					regions[nregions++] = (struct admin_batch_region){ f->str + pl, f->len - pl, 0 };
				}
				regions[j].n += v;
			}
		}
	}
	bat = reply->element[SCHEMA_GROUPS];
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "devices");
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "total");
	yajl_gen_integer(g, total);
	adminreq_gen_string(g, "active");
	yajl_gen_integer(g, active);
	adminreq_gen_string(g, "inactive");
	yajl_gen_integer(g, total - active);
	yajl_gen_map_close(g);
	adminreq_gen_string(g, "distributed");
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "byRegion");
	yajl_gen_map_open(g);
	for (size_t i = 0; i < nregions; i++) {
		if (regions[i].n <= 0)
			continue;
		yajl_gen_string(g, (const unsigned char *)regions[i].id, regions[i].len);
		yajl_gen_integer(g, regions[i].n);
	}
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	adminreq_gen_string(g, "activations");
	yajl_gen_integer(g, activations);
	adminreq_gen_string(g, "batches");
	yajl_gen_map_open(g);
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		adminreq_gen_string(g, states[i]);
		yajl_gen_integer(g, bat->type == REDIS_REPLY_ARRAY ? admin_batch_count(bat, states[i]) : 0);
	}
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	free(regions);
	adminreq_unref(ar);
}

/* The counters are kept per device group, in the groups' own slots: the
 * statistics read them all (SCHEMA_GROUPS small hashes). */
static void admin_batch_stats(struct adminreq *ar, const struct route_args *a)
{
	struct {
		char keys[SCHEMA_GROUPS][16];
		const char *argvs[SCHEMA_GROUPS + 1][2];
		const char *const *pargvs[SCHEMA_GROUPS + 1];
		int argcs[SCHEMA_GROUPS + 1];
	} *q = malloc(sizeof(*q));

	(void)a;
	if (q == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	for (uint32_t k = 0; k <= SCHEMA_GROUPS; k++) {
		q->argvs[k][0] = "HGETALL";
		if (k == SCHEMA_GROUPS)
			q->argvs[k][1] = SCHEMA_STATS_BATCHES_KEY;
		else if (schema_counters_key(q->keys[k], sizeof(q->keys[k]), k) >= 0)
			q->argvs[k][1] = q->keys[k];
		else
			q->argvs[k][1] = ""; /* cannot happen: the key has a fixed size */
		q->pargvs[k] = q->argvs[k];
		q->argcs[k] = 2;
	}
	ar->refs++;
	if (store_gather(adminreq_store(ar->t), ar->t->srv->cfg->redis_timeout_ms, SCHEMA_GROUPS + 1, q->argcs,
		    q->pargvs, admin_batch_stats_reply, ar) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
	free(q);
}

/* --- routing --- */

static void admin_batch_simple(struct adminreq *ar, store_reply_fn fn, int argc, const char **argv, bool write)
{
	adminreq_command(ar, fn, argc, argv, write);
}

/* --- GET /v1/stats/activations: activations through bootstrap per interval --- */

#define ADMIN_ACT_DAYS_MAX 401
#define ADMIN_ACT_INTERVALS_MAX 10000

struct admin_act {
	int64_t since, until, interval; /* seconds; [since, until) */
	int64_t day0;                   /* the first day key's midnight */
	size_t ndays;
	char (*keys)[32];
};

static void admin_act_free(void *p)
{
	struct admin_act *a = p;

	if (a)
		free(a->keys);
	free(a);
}

static void admin_act_time(yajl_gen g, const char *k, int64_t t)
{
	adminreq_gen_time(g, k, t);
}

static void admin_act_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_act *a = ar->data;
	size_t nb = (size_t)((a->until - a->since + a->interval - 1) / a->interval);
	long long *counts = calloc(nb ? nb : 1, sizeof(*counts)), total = 0;
	yajl_gen g;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != a->ndays || counts == NULL) {
		if (counts == NULL)
			adminreq_error(ar, 500, "internal", "out of memory");
		else
			adminreq_unavailable(ar);
		goto out;
	}
	for (size_t d = 0; d < a->ndays; d++) {
		const redisReply *h = all->element[d];
		for (size_t i = 0; h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
			int64_t t = a->day0 + (int64_t)d * 86400 + strtoll(h->element[i]->str, NULL, 10) * SCHEMA_ACTIVATIONS_SLOT_S;
			if (t < a->since || t >= a->until)
				continue;
			long long c = strtoll(h->element[i + 1]->str, NULL, 10);
			counts[(t - a->since) / a->interval] += c;
			total += c;
		}
	}
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "intervalSeconds");
	yajl_gen_integer(g, a->interval);
	admin_act_time(g, "since", a->since);
	admin_act_time(g, "until", a->until);
	adminreq_gen_string(g, "total");
	yajl_gen_integer(g, total);
	adminreq_gen_string(g, "activations");
	yajl_gen_array_open(g);
	for (size_t b = 0; b < nb; b++) {
		yajl_gen_map_open(g);
		admin_act_time(g, "at", a->since + (int64_t)b * a->interval);
		adminreq_gen_string(g, "count");
		yajl_gen_integer(g, counts[b]);
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	free(counts);
	adminreq_unref(ar);
}

/* An interval: 5m, 15m, 1h, 1d ... (a multiple of 5 minutes). */
static int64_t admin_act_interval(const char *s)
{
	char *end;
	long long n = strtoll(s, &end, 10);
	int64_t unit = 0;

	if (end == s || n <= 0 || n > 1000)
		return -1;
	if (strcmp(end, "m") == 0)
		unit = 60;
	else if (strcmp(end, "h") == 0)
		unit = 3600;
	else if (strcmp(end, "d") == 0)
		unit = 86400;
	if (unit == 0 || (n * unit) % SCHEMA_ACTIVATIONS_SLOT_S != 0)
		return -1;
	return n * unit;
}

static void admin_batch_activations(struct adminreq *ar, const struct route_args *route)
{
	struct form_param params[FORM_PARAMS_MAX];
	size_t np = 0, qlen = ar->req->r.query_len;
	char *q = qlen ? strndup(ar->req->r.query, qlen) : NULL;
	const char *why = NULL;
	struct admin_act *a = calloc(1, sizeof(*a));
	int64_t now = (int64_t)time(NULL);

	(void)route;
	if (a == NULL || (qlen && q == NULL)) {
		free(q);
		free(a);
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	ar->data = a;
	ar->data_free = admin_act_free;
	a->interval = 3600;
	a->since = a->until = -1;
	if (q && form_query_parse(q, qlen, params, FORM_PARAMS_MAX, &np, &why) < 0) {
		adminreq_error(ar, 400, "invalid_parameter", why);
		goto out;
	}
	for (size_t i = 0; i < np; i++) {
		char name[16];
		snprintf(name, sizeof(name), "%.*s", (int)params[i].name_len, params[i].name);
		if (strcmp(name, "interval") == 0) {
			if ((a->interval = admin_act_interval(params[i].value)) < 0) {
				adminreq_error(ar, 400, "invalid_parameter", "interval: a multiple of 5m (5m, 1h, 1d, ...)");
				goto out;
			}
		} else if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
			if (admin_audit_parse_time(params[i].value, name[0] == 's' ? &a->since : &a->until) < 0) {
				adminreq_error(ar, 400, "invalid_parameter",
					"since and until: Unix seconds or RFC 3339 in UTC (2026-12-01T17:00:00Z)");
				goto out;
			}
		} else {
			adminreq_error(ar, 400, "invalid_parameter", "parameters: interval, since, until");
			goto out;
		}
	}
	if (a->until < 0)
		a->until = now;
	if (a->since < 0)
		a->since = a->until - 86400;
	if (a->until <= a->since) {
		adminreq_error(ar, 400, "invalid_parameter", "since must be before until");
		goto out;
	}
	/* Whole 5-minute slots: since rounded down, until up. */
	a->since -= a->since % SCHEMA_ACTIVATIONS_SLOT_S;
	a->until += (SCHEMA_ACTIVATIONS_SLOT_S - a->until % SCHEMA_ACTIVATIONS_SLOT_S) % SCHEMA_ACTIVATIONS_SLOT_S;
	a->day0 = a->since - a->since % 86400;
	a->ndays = (size_t)((a->until - 1) / 86400 - a->day0 / 86400 + 1);
	if (a->until <= a->since || a->ndays > ADMIN_ACT_DAYS_MAX ||
	    (a->until - a->since) / a->interval > ADMIN_ACT_INTERVALS_MAX) {
		adminreq_error(ar, 400, "invalid_parameter",
			"since before until, at most 400 days and 10000 intervals between them");
		goto out;
	}
	const char *(*argvs)[2] = calloc(a->ndays, sizeof(*argvs));
	const char *const **pargvs = calloc(a->ndays, sizeof(*pargvs));
	int *argcs = calloc(a->ndays, sizeof(*argcs));
	a->keys = calloc(a->ndays, sizeof(*a->keys));
	if (argvs == NULL || pargvs == NULL || argcs == NULL || a->keys == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
	} else {
		for (size_t d = 0; d < a->ndays; d++) {
			if (schema_activations_key(a->keys[d], sizeof(a->keys[d]), a->day0 + (int64_t)d * 86400, NULL) < 0)
				a->keys[d][0] = '\0';
			argvs[d][0] = "HGETALL";
			argvs[d][1] = a->keys[d];
			pargvs[d] = argvs[d];
			argcs[d] = 2;
		}
		adminreq_gather(ar, a->ndays, argcs, pargvs, admin_act_reply);
	}
	free(argvs);
	free(pargvs);
	free(argcs);
out:
	free(q);
}

/* The batch of a /v1/batches/{batchId} path into AR, with its key; a 404
 * for an id that cannot be one (at most 20 digits). */
static bool admin_batch_take(struct adminreq *ar, const char *id, char key[SCHEMA_KEY_MAX])
{
	if (!admin_batch_digits(id, 20) || schema_batch_key(key, SCHEMA_KEY_MAX, strtoull(id, NULL, 10)) < 0) {
		adminreq_error(ar, 404, "not_found", "no such path");
		return false;
	}
	memcpy(ar->id, id, strlen(id) + 1);
	return true;
}

static void admin_batch_get(struct adminreq *ar, const struct route_args *a)
{
	char key[SCHEMA_KEY_MAX], nkey[SCHEMA_KEY_MAX];

	if (!admin_batch_take(ar, a->v[0], key))
		return;
	if (schema_batch_part_key(nkey, sizeof(nkey), strtoull(ar->id, NULL, 10), 'n') < 0)
		nkey[0] = '\0';
	const char *argv[] = { "HGETALL", key }, *nargv[] = { "GET", nkey };
	const char *const *argvs[] = { argv, nargv };
	const int argcs[] = { 2, 2 };
	adminreq_gather(ar, 2, argcs, argvs, admin_batch_get_reply);
}

static void admin_batch_results_route(struct adminreq *ar, const struct route_args *a)
{
	char key[SCHEMA_KEY_MAX];

	if (admin_batch_take(ar, a->v[0], key))
		admin_batch_results(ar);
}

static void admin_batch_retry(struct adminreq *ar, const struct route_args *a)
{
	char key[SCHEMA_KEY_MAX], rkey[SCHEMA_KEY_MAX], step[16], now[24];

	if (!admin_batch_take(ar, a->v[0], key))
		return;
	snprintf(step, sizeof(step), "%d", ar->t->srv->cfg->worker_chunk_size);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	if (schema_batch_part_key(rkey, sizeof(rkey), strtoull(ar->id, NULL, 10), 'r') < 0)
		rkey[0] = '\0';
	const char *argv[] = { "EVAL", lua_retry, "4", key, rkey, SCHEMA_STEPS_KEY, SCHEMA_STATS_BATCHES_KEY,
		ar->id, step, now };
	admin_batch_simple(ar, admin_batch_retry_reply, 10, argv, true);
}

static void admin_batch_template(struct adminreq *ar, const struct route_args *a)
{
	(void)a;
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_csv, batch_template_csv, strlen(batch_template_csv));
}

static void admin_batch_code_route(struct adminreq *ar, const struct route_args *a)
{
	if (!adminreq_valid_account(a->v[0])) {
		adminreq_error(ar, 400, "invalid_parameter", "account: 1-64 characters of A-Z a-z 0-9 - _ .");
		return;
	}
	memcpy(ar->account, a->v[0], strlen(a->v[0]) + 1); /* valid: at most 64 */
	admin_batch_code(ar);
}

const struct admin_route admin_batch_routes[] = {
	{ "/v1/batches", HTTP_GET, admin_batch_list },
	{ "/v1/batches", HTTP_POST, admin_batch_create },
	{ "/v1/batches/template.csv", HTTP_GET, admin_batch_template },
	{ "/v1/batches/{batchId}", HTTP_GET, admin_batch_get },
	{ "/v1/batches/{batchId}/results", HTTP_GET, admin_batch_results_route },
	{ "/v1/batches/{batchId}/retry", HTTP_POST, admin_batch_retry },
	{ "/v1/accounts/{account}/auth-codes", HTTP_POST, admin_batch_code_route },
	{ "/v1/stats", HTTP_GET, admin_batch_stats },
	{ "/v1/stats/activations", HTTP_GET, admin_batch_activations },
};
const size_t admin_batch_nroutes = sizeof(admin_batch_routes) / sizeof(admin_batch_routes[0]);
