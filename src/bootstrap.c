#include "bootstrap.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/queue.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "answer.h"
#include "cache.h"
#include "catalog.h"
#include "codes.h"
#include "dynreg.h"
#include "hooks.h"
#include "config.h"
#include "form.h"
#include "http.h"
#include "log.h"
#include "lua.h"
#include "metrics.h"
#include "nearest.h"
#include "netaddr.h"
#include "proxyproto.h"
#include "ratelimit.h"
#include "schema.h"
#include "secret.h"
#include "server.h"
#include "store.h"

/* Each resource: its name, host, port and ip, and some 48 bytes of JSON. */
#define BOOTSTRAP_BODY_MAX (128 + FORM_RESOURCES_MAX * (FORM_RESOURCE_NAME_MAX + CATALOG_HOST_MAX + 16 + 48))
#define BOOTSTRAP_CACHE_SLOTS 1024
/* A cached batch is read again after this long, so that a Redis restored from
 * an older copy (batch numbers used again) is noticed. */
#define BOOTSTRAP_CACHE_TTL_S 30
/* lastBootstrapAt is refreshed at most this often per device. */
#define BOOTSTRAP_TOUCH_INTERVAL_S 60

static const char bootstrap_json[] = "application/json; charset=utf-8";

/* Request contexts kept for reuse per thread: a device request in steady
 * state allocates nothing. */
#define BOOTSTRAP_FREE_MAX 1024
/* Rendered answers kept per thread (direct-mapped), and the largest kept. */
#define BOOTSTRAP_ANSWERS 2048
#define BOOTSTRAP_ANSWER_MAX 256
#define BOOTSTRAP_RES_KEY_MAX (FORM_RESOURCES_MAX * (FORM_RESOURCE_NAME_MAX + 1))

/* An answer is a pure function of the instance (in an immutable catalog),
 * the requested resources, the form (device or regionId) and the device's
 * identity where the hosts use it: rendering it once per key is enough. */
struct bootstrap_answer {
	const struct catalog_instance *inst; /* NULL: empty slot */
	bool region_form;
	char res[BOOTSTRAP_RES_KEY_MAX];
	char pk[FORM_PRODUCT_KEY_MAX + 1], dn[FORM_DEVICE_NAME_MAX + 1];
	int len;
	char body[BOOTSTRAP_ANSWER_MAX];
};

struct bootstrap_cache {
	struct schema_batch slots[BOOTSTRAP_CACHE_SLOTS]; /* direct-mapped by seq; seq 0 = empty */
	time_t cached_at[BOOTSTRAP_CACHE_SLOTS];
	struct bootstrap_req *free_reqs[BOOTSTRAP_FREE_MAX];
	int nfree;
	/* Only for the thread's current catalog: emptied when it changes. */
	const struct catalog *answers_of;
	struct bootstrap_answer answers[BOOTSTRAP_ANSWERS];
};

struct bootstrap_cache *bootstrap_cache_new(void)
{
	return calloc(1, sizeof(struct bootstrap_cache));
}

void bootstrap_cache_catalog_changed(struct bootstrap_cache *cache)
{
	/* A new catalog may sit where the old one was freed: forget by hand. */
	cache->answers_of = NULL;
}

void bootstrap_cache_free(struct bootstrap_cache *cache)
{
	if (cache == NULL)
		return;
	while (cache->nfree > 0)
		free(cache->free_reqs[--cache->nfree]);
	free(cache);
}

/* One device request; each pending Redis call holds a reference. */
struct bootstrap_req {
	int refs;
	int pending; /* Redis answers still to come before bootstrap_continue */
	bool answered;
	bool failed; /* a Redis call failed: answer 503 */
	struct server_thread *t;
	struct http_request *req;
	struct catalog *cat;
	struct form_request form;
	struct netaddr client; /* the address the request speaks for (SPEC §6) */
	bool client_known;     /* worked out only when needed: rate limit or nearest */
	char field[SCHEMA_FIELD_MAX];
	bool product_found, device_found;
	struct schema_product product;
	struct schema_device device;
	const struct schema_batch *batch; /* into the thread's cache */
	char sealed[SECRET_PLAIN_MAX + SECRET_SEALED_OVERHEAD];
	size_t sealed_len;
	uint64_t token, secret_token; /* record cache tokens of the reads in flight; 0 = none */
	char body[BOOTSTRAP_BODY_MAX]; /* the answer, held while the bootstrap is recorded */
	int body_len;
	const char *region; /* the resolved region's id (in cat) while its code is synced */
	int code_syncs;
	bool preauth; /* POST /auth/devicename (SPEC §10): a token too */
	char iot_id[SCHEMA_IOT_ID_LEN + 1], iot_token[SECRET_HEX_LEN + 1]; /* wiped with the request */
	uint64_t id;
	/* The query and body, decoded in place by form_parse (FORM points into
	 * them), then as much room again for the signed content. */
};

/* What is left of redis.timeout_ms for this request's next Redis round. */
static int bootstrap_time_left_ms(const struct bootstrap_req *br)
{
	return br->t->srv->cfg->redis_timeout_ms - (int)(http_elapsed(&br->req->started) * 1000.0);
}

static void bootstrap_req_unref(struct bootstrap_req *br)
{
	if (--br->refs > 0)
		return;
	struct bootstrap_cache *cache = br->t->cache;

	form_request_clear(&br->form);
	OPENSSL_cleanse(br->iot_token, sizeof(br->iot_token));
	catalog_unref(br->cat);
	if (cache->nfree < BOOTSTRAP_FREE_MAX)
		cache->free_reqs[cache->nfree++] = br;
	else
		free(br);
}

static struct bootstrap_req *bootstrap_req_new(struct server_thread *t)
{
	struct bootstrap_req *br;

	if (t->cache->nfree == 0)
		return calloc(1, sizeof(struct bootstrap_req));
	br = t->cache->free_reqs[--t->cache->nfree];
	memset(br, 0, sizeof(*br));
	return br;
}

static void bootstrap_send(struct http_request *req, int status, const char *body, int len)
{
	http_send(req, status, bootstrap_json, body, len > 0 ? (size_t)len : 0);
}

static int bootstrap_http_status(int code)
{
	switch (code) {
	case 460: return 400;
	case 5001: return 404;
	case 6200: return 403;
	case 6201: return 409;
	default: return code;
	}
}

void bootstrap_fail_req(struct http_request *req, int code, const char *message)
{
	char body[256];
	int len = answer_error(body, sizeof(body), code, message);

	bootstrap_send(req, bootstrap_http_status(code), body, len);
}

void bootstrap_error(struct http_request *req, int status, const char *message)
{
	bootstrap_fail_req(req, status, message);
}

static struct log_limit bootstrap_fail_log;

static void bootstrap_fail(struct bootstrap_req *br, int code, const char *message)
{
	if (br->answered)
		return;
	br->answered = true;
	unsigned long held;
	/* During an outage every request fails alike: one line a second. */
	if (bootstrap_http_status(code) >= 500 && log_limit_pass(&bootstrap_fail_log, &held))
		log_warn("bootstrap", "%s/%s: %d %s (%lu more failures not logged)",
			br->form.product_key ? br->form.product_key : "-",
			br->form.device_name ? br->form.device_name : "-", code, message, held);
	bootstrap_fail_req(br->req, code, message);
}

/* Writes the answer with the endpoints of INST that the request asked for
 * into BODY (VARS NULL: the regionId form, no device known). Returns its
 * length, 0 when none is offered, -1 on error. */
static int bootstrap_render_new(const struct catalog_instance *inst,
	const char resources[][FORM_RESOURCE_NAME_MAX + 1], size_t nresources,
	const struct catalog_vars *vars, char body[BOOTSTRAP_BODY_MAX])
{
	struct answer_resource res[FORM_RESOURCES_MAX];
	char hosts[FORM_RESOURCES_MAX][CATALOG_HOST_MAX + 1];
	size_t n = 0;

	for (size_t e = 0; e < inst->nendpoints && n < FORM_RESOURCES_MAX; e++) {
		const struct catalog_endpoint *ep = &inst->endpoints[e];
		size_t r;

		for (r = 0; r < nresources && strcmp(resources[r], ep->protocol) != 0; r++)
			;
		if (r == nresources)
			continue;
		if ((vars != NULL ? catalog_render_host(ep, inst, vars, hosts[n], sizeof(hosts[n])) :
			     catalog_render_region_host(ep, inst, hosts[n], sizeof(hosts[n]))) < 0)
			return -1;
		res[n].protocol = ep->protocol;
		res[n].host = hosts[n];
		res[n].port = ep->port;
		res[n].ip = ep->ip;
		n++;
	}
	if (n == 0)
		return 0;
	return answer_success(body, BOOTSTRAP_BODY_MAX, res, n);
}

static uint32_t bootstrap_fnv(uint32_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* bootstrap_render_new through the thread's answer cache, when CAT is the
 * thread's current catalog (a request that started before a reload renders
 * its own). */
static int bootstrap_render(struct server_thread *t, const struct catalog *cat, const struct catalog_instance *inst,
	const char resources[][FORM_RESOURCE_NAME_MAX + 1], size_t nresources,
	const struct catalog_vars *vars, char body[BOOTSTRAP_BODY_MAX])
{
	struct bootstrap_cache *cache = t->cache;
	struct bootstrap_answer *a;
	char res[BOOTSTRAP_RES_KEY_MAX];
	const char *pk = "", *dn = "";
	size_t rl = 0;
	uint32_t h = 2166136261u;
	int len;

	if (cat != t->catalog)
		return bootstrap_render_new(inst, resources, nresources, vars, body);
	if (cache->answers_of != cat) {
		for (size_t i = 0; i < BOOTSTRAP_ANSWERS; i++)
			cache->answers[i].inst = NULL;
		cache->answers_of = cat;
	}
	for (size_t r = 0; r < nresources; r++) {
		size_t n = strlen(resources[r]);
		memcpy(res + rl, resources[r], n);
		res[rl + n] = ',';
		rl += n + 1;
	}
	res[rl ? rl - 1 : 0] = '\0';
	for (size_t e = 0; vars && e < inst->nendpoints; e++) {
		if (inst->endpoints[e].uses & CATALOG_USES_PRODUCT_KEY)
			pk = vars->product_key;
		if (inst->endpoints[e].uses & CATALOG_USES_DEVICE_NAME)
			dn = vars->device_name;
	}
	h = bootstrap_fnv(h, &inst, sizeof(inst));
	h = bootstrap_fnv(h, res, strlen(res));
	h = bootstrap_fnv(h, pk, strlen(pk) + 1);
	h = bootstrap_fnv(h, dn, strlen(dn) + 1);
	h = bootstrap_fnv(h, vars ? "d" : "r", 1);
	a = &cache->answers[h % BOOTSTRAP_ANSWERS];
	if (a->inst == inst && a->region_form == (vars == NULL) && strcmp(a->res, res) == 0 && strcmp(a->pk, pk) == 0 &&
	    strcmp(a->dn, dn) == 0) {
		memcpy(body, a->body, (size_t)a->len);
		body[a->len] = '\0';
		return a->len;
	}
	len = bootstrap_render_new(inst, resources, nresources, vars, body);
	if (len > 0 && len < BOOTSTRAP_ANSWER_MAX && strlen(pk) < sizeof(a->pk) && strlen(dn) < sizeof(a->dn)) {
		a->inst = inst;
		a->region_form = vars == NULL;
		memcpy(a->res, res, strlen(res) + 1);
		memcpy(a->pk, pk, strlen(pk) + 1);
		memcpy(a->dn, dn, strlen(dn) + 1);
		memcpy(a->body, body, (size_t)len);
		a->len = len;
	}
	return len;
}

static struct log_limit bootstrap_record_log;
static bool bootstrap_limited(struct server_thread *t, struct http_request *req, struct netaddr *client, bool *known);

/* The activations per 5 minutes (GET /v1/stats/activations): best effort,
 * the group counters hold the exact total. */
static void bootstrap_count_activation(struct server_thread *t)
{
	char key[32], slot[8], keep[16];
	unsigned s;

	if (schema_activations_key(key, sizeof(key), (int64_t)time(NULL), &s) < 0)
		return;
	snprintf(slot, sizeof(slot), "%u", s);
	snprintf(keep, sizeof(keep), "%d", SCHEMA_ACTIVATIONS_KEEP_S);
	const char *incr[] = { "HINCRBY", key, slot, "1" }, *expire[] = { "EXPIRE", key, keep, "NX" };
	store_command_noreply(t->store, 4, incr, NULL);
	store_command_noreply(t->store, 4, expire, NULL);
}

static void bootstrap_on_recorded(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;
	unsigned long held;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		/* Redis at maxmemory refuses every record alike: one line a second. */
		if (log_limit_pass(&bootstrap_record_log, &held))
			log_warn("bootstrap", "%s: the bootstrap could not be recorded (%s; %lu more not logged)",
				br->field, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no answer", held);
	} else if (reply->integer == 1 && br->device.status != SCHEMA_ACTIVE) {
		char data[192];
		metrics_count(METRICS_ACTIVATIONS);
		bootstrap_count_activation(br->t);
		/* Names and ids are of their alphabets: nothing to escape. */
		snprintf(data, sizeof(data), "{\"productKey\":\"%s\",\"deviceName\":\"%s\",\"region\":\"%s\"}",
			br->form.product_key, br->form.device_name, br->region ? br->region : "");
		hooks_emit(br->t->hooks, HOOKS_DEVICE_ACTIVATED, data);
	}
	/* The answer is right either way; it goes once the record is written or given up. */
	bootstrap_send(br->req, 200, br->body, br->body_len);
	bootstrap_req_unref(br);
}

static struct log_limit bootstrap_code_log;

static void bootstrap_record_and_answer(struct bootstrap_req *br, const char *region);
static void bootstrap_preauth_issue(struct bootstrap_req *br, const char *region);

static void bootstrap_codes_synced(bool ok, void *arg)
{
	struct bootstrap_req *br = arg;

	if (ok)
		bootstrap_record_and_answer(br, br->region);
	else
		bootstrap_send(br->req, 200, br->body, br->body_len);
	bootstrap_req_unref(br);
}

/* Answers with the prepared body, first recording the bootstrap (status,
 * times, region) unless nothing changed and it was recorded within a minute.
 * A device reassigned in the meantime is left as it is (the script checks).
 * The record holds the region's code: a region without one here (new to
 * this thread) waits for the codes table first. */
static void bootstrap_record_and_answer(struct bootstrap_req *br, const char *region)
{
	char key[SCHEMA_KEY_MAX], ckey[SCHEMA_KEY_MAX], batch[24], now[24], field[CATALOG_REGION_ID_MAX + 3];
	time_t t = time(NULL);
	uint32_t bucket = schema_bucket(br->form.product_key, br->form.device_name);
	const char *code = codes_code(br->t->codes, CODES_REGION, region);
	unsigned long held;

	br->answered = true;
	br->region = region;
	if (code == NULL) {
		if (br->code_syncs < 2 && codes_field(field, sizeof(field), CODES_REGION, region) >= 0) {
			const char *need[] = { field };
			br->region = region;
			br->code_syncs++;
			br->refs++;
			if (codes_sync(br->t->codes, need, 1, bootstrap_codes_synced, br) == 0)
				return;
			br->refs--;
		}
		if (log_limit_pass(&bootstrap_code_log, &held))
			log_warn("bootstrap", "%s: the bootstrap could not be recorded: no code for region %s from Redis "
				"(%lu more not logged)", br->field, region, held);
		goto send;
	}
	if ((br->device.status == SCHEMA_ACTIVE && strcmp(br->device.last_region_code, code) == 0 &&
		    t - br->device.last_bootstrap_at < BOOTSTRAP_TOUCH_INTERVAL_S) ||
	    schema_bucket_key(key, sizeof(key), 'd', bucket) < 0 ||
	    schema_counters_key(ckey, sizeof(ckey), schema_group(bucket)) < 0)
		goto send;
	snprintf(batch, sizeof(batch), "%" PRIu64, br->device.batch);
	if (schema_time_format((int64_t)t, now, sizeof(now)) < 0)
		goto send;
	const char *argv[] = { "EVAL", lua_activate, "2", key, ckey, br->field, batch, now, code };
	br->refs++;
	if (store_command_timed(br->t->store, bootstrap_time_left_ms(br), bootstrap_on_recorded, br, 9, argv,
		    NULL) == 0)
		return;
	br->refs--;
	log_warn("bootstrap", "%s: no time left to record the bootstrap", br->field);
send:
	bootstrap_send(br->req, 200, br->body, br->body_len);
}

static void bootstrap_preauth_issued(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;
	static const char prefix[] = "{\"code\":200,\"data\":{";
	char body[BOOTSTRAP_BODY_MAX];
	int n;

	if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
		br->answered = false;
		bootstrap_fail(br, 503, "service unavailable");
		goto out;
	}
	/* The endpoint's answer with the token first in "data": the 3.0.1 SDK
	 * reads 299 bytes and takes keys wherever they are. */
	n = snprintf(body, sizeof(body), "%s\"iotId\":\"%s\",\"iotToken\":\"%s\",%s", prefix, br->iot_id,
		br->iot_token, br->body + sizeof(prefix) - 1);
	if (n < 0 || (size_t)n >= sizeof(body) || (size_t)n >= sizeof(br->body) ||
	    strncmp(br->body, prefix, sizeof(prefix) - 1) != 0) {
		br->answered = false;
		bootstrap_fail(br, 500, "internal error");
		goto out;
	}
	memcpy(br->body, body, (size_t)n + 1);
	br->body_len = n;
	OPENSSL_cleanse(body, sizeof(body));
	http_add_header(br->req, "Cache-Control", "no-store");
	bootstrap_record_and_answer(br, br->region);
out:
	bootstrap_req_unref(br);
}

/* SPEC §10: a token valid SCHEMA_PREAUTH_TTL_S for the region's broker to
 * check (POST /v1/mqtt/auth), kept as its SHA-256 under the device's
 * iotId, which replaces the device's token before. Then the answer. */
static void bootstrap_preauth_issue(struct bootstrap_req *br, const char *region)
{
	struct schema_preauth p = { .expires = (int64_t)time(NULL) + SCHEMA_PREAUTH_TTL_S };
	char key[SCHEMA_KEY_MAX], rec[160], ttl[16], derived[SCHEMA_IOT_ID_LEN];

	br->answered = true;
	br->region = region;
	if (secret_derive_hex(br->t->srv->secret_key, "iotId", br->field, SCHEMA_IOT_ID_LEN - 3, derived) < 0 ||
	    schema_iot_id(br->iot_id, br->form.product_key, br->form.device_name, derived) < 0 ||
	    secret_generate(br->iot_token) < 0 || secret_sha256_hex(br->iot_token, p.token_sha256) < 0 ||
	    snprintf(p.field, sizeof(p.field), "%s", br->field) >= (int)sizeof(p.field) ||
	    schema_preauth_key(key, sizeof(key), br->iot_id) < 0 || schema_preauth_format(&p, rec, sizeof(rec)) < 0) {
		br->answered = false;
		bootstrap_fail(br, 500, "internal error");
		return;
	}
	snprintf(ttl, sizeof(ttl), "%d", SCHEMA_PREAUTH_TTL_S);
	const char *argv[] = { "SET", key, rec, "EX", ttl };
	br->refs++;
	/* Durable: a token handed out must still open after a failover. */
	if (store_write_timed(br->t->store, bootstrap_time_left_ms(br), bootstrap_preauth_issued, br, 5, argv, NULL) < 0) {
		br->refs--;
		br->answered = false;
		bootstrap_fail(br, 503, "service unavailable");
	}
}

/* 0 when the signature is right, -1 when missing or wrong, -2 on an internal problem. */
static int bootstrap_check_sign(struct bootstrap_req *br)
{
	static const char *const skip[] = { "sign", "signmethod", "version", "resources" };
	char plain[SECRET_PLAIN_MAX + 1], expect[SECRET_HMAC_HEX_MAX + 1];
	/* The content is never longer than the request's parameters. */
	size_t cap = br->req->r.query_len + br->req->r.body_len + 1, len;
	char small[1024], *content = NULL;
	int rc = -2;

	if (br->form.sign == NULL)
		return -1;
	content = cap <= sizeof(small) ? small : malloc(cap);
	if (content == NULL ||
	    form_sign_content(&br->form, skip, sizeof(skip) / sizeof(skip[0]), content, cap, &len) < 0)
		goto out;
	if (secret_open(br->t->srv->secret_key, br->field, (const unsigned char *)br->sealed, br->sealed_len,
		    plain, sizeof(plain)) < 0)
		goto out;
	if (secret_hmac_hex(br->form.signmethod ? br->form.signmethod : "hmacmd5", plain, content, len, expect,
		    sizeof(expect)) < 0)
		goto out;
	rc = secret_hex_equal(expect, br->form.sign) ? 0 : -1;
out:
	OPENSSL_cleanse(plain, sizeof(plain));
	if (content != small)
		free(content);
	return rc;
}

static void bootstrap_client(struct server_thread *t, struct http_request *req, struct netaddr *out);

static void bootstrap_resolve(struct bootstrap_req *br)
{
	const struct catalog_region *region;
	const struct catalog_instance *inst;
	struct catalog_vars vars = { br->form.product_key, br->form.device_name };
	const char *rid, *iid;
	int rc;

	if (br->product.auth_required || br->preauth) {
		rc = bootstrap_check_sign(br);
		if (rc == -2) {
			bootstrap_fail(br, 500, "internal error");
			return;
		}
		if (rc < 0) {
			bootstrap_fail(br, 401, br->form.sign ? "signature mismatch" : "signature required");
			return;
		}
	}
	if (br->batch) {
		struct nearest_result nr;

		if (br->batch->strategy == SCHEMA_NEAREST && !br->client_known) {
			bootstrap_client(br->t, br->req, &br->client);
			br->client_known = true;
		}
		if (nearest_choose(br->cat, br->t->geo, br->batch, br->client_known ? &br->client : NULL, false,
			    &nr) < 0) {
			bootstrap_fail(br, 500, "assigned region not in service");
			log_error("bootstrap", "%s: no target of batch %" PRIu64 " is in the catalog", br->field,
				br->batch->seq);
			return;
		}
		if (nr.looked_up)
			metrics_count(nr.location.outcome == GEO_LOCATED ? METRICS_GEO_LOCATED :
				nr.location.outcome == GEO_COUNTRY_ONLY ? METRICS_GEO_COUNTRY_ONLY : METRICS_GEO_NOT_FOUND);
		region = nr.candidates[nr.chosen].region;
		inst = nr.candidates[nr.chosen].instance;
		rid = region->id;
		iid = inst->id;
	} else {
		rid = br->product.home_region;
		iid = br->product.home_instance;
		region = catalog_region(br->cat, rid);
		inst = region ? (iid[0] ? catalog_instance(region, iid) : catalog_default_instance(region)) : NULL;
	}
	if (inst == NULL) {
		bootstrap_fail(br, 500, "assigned region not in service");
		log_error("bootstrap", "%s/%s is assigned to %s/%s, which the catalog does not have",
			br->form.product_key, br->form.device_name, rid, iid);
		return;
	}
	rc = bootstrap_render(br->t, br->cat, inst, br->form.resources, br->form.nresources, &vars, br->body);
	if (rc < 0) {
		bootstrap_fail(br, 500, "internal error");
		return;
	}
	if (rc == 0) {
		bootstrap_fail(br, 460, "no requested resource is offered");
		return;
	}
	br->body_len = rc;
	if (br->preauth)
		bootstrap_preauth_issue(br, region->id);
	else
		bootstrap_record_and_answer(br, region->id);
}

static void bootstrap_on_batch(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;
	struct schema_batch *slot;
	struct schema_batch b = { 0 };

	if (br->answered)
		goto out;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
		bootstrap_fail(br, 503, "service unavailable");
		goto out;
	}
	b.seq = br->device.batch ? br->device.batch : br->product.batch;
	if (reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING ||
	    schema_targets_parse(reply->element[1]->str, reply->element[1]->len, &b) < 0) {
		bootstrap_fail(br, 500, "internal error");
		log_error("bootstrap", "batch %" PRIu64 " is missing or unreadable", b.seq);
		goto out;
	}
	b.strategy = reply->element[0]->str[0] == 'n' ? SCHEMA_NEAREST : SCHEMA_REGION;
	if (reply->element[2]->type == REDIS_REPLY_STRING && reply->element[2]->len <= SCHEMA_ACCOUNT_MAX) {
		memcpy(b.account, reply->element[2]->str, reply->element[2]->len);
		b.account[reply->element[2]->len] = '\0';
	}
	slot = &br->t->cache->slots[b.seq % BOOTSTRAP_CACHE_SLOTS];
	*slot = b;
	br->t->cache->cached_at[b.seq % BOOTSTRAP_CACHE_SLOTS] = time(NULL);
	br->batch = slot;
	bootstrap_resolve(br);
out:
	bootstrap_req_unref(br);
}

static void bootstrap_continue(struct bootstrap_req *br)
{
	uint64_t seq;

	if (br->answered)
		return;
	if (br->failed) {
		bootstrap_fail(br, 503, "service unavailable");
		return;
	}
	if (!br->product_found) {
		bootstrap_fail(br, 5001, "product not found");
		return;
	}
	if (!br->device_found) {
		bootstrap_fail(br, 5001, "device not found");
		return;
	}
	if (br->preauth && !br->product.pre_auth) {
		bootstrap_fail(br, 6200, "the product does not allow authentication before MQTT");
		return;
	}
	if ((br->product.auth_required || br->preauth) && br->sealed_len == 0) {
		bootstrap_fail(br, 401, "signature required");
		return;
	}
	seq = br->device.batch ? br->device.batch : br->product.batch;
	if (seq == 0) {
		bootstrap_resolve(br);
		return;
	}
	if (br->t->cache->slots[seq % BOOTSTRAP_CACHE_SLOTS].seq == seq &&
	    time(NULL) - br->t->cache->cached_at[seq % BOOTSTRAP_CACHE_SLOTS] < BOOTSTRAP_CACHE_TTL_S) {
		br->batch = &br->t->cache->slots[seq % BOOTSTRAP_CACHE_SLOTS];
		bootstrap_resolve(br);
		return;
	}
	char key[SCHEMA_KEY_MAX];
	if (schema_batch_key(key, sizeof(key), seq) < 0) {
		bootstrap_fail(br, 500, "internal error");
		return;
	}
	const char *argv[] = { "HMGET", key, "st", "tg", "ac" };
	br->refs++;
	if (store_command_timed(br->t->store, bootstrap_time_left_ms(br), bootstrap_on_batch, br, 5, argv, NULL) < 0) {
		br->refs--;
		bootstrap_fail(br, 503, "service unavailable");
	}
}

static void bootstrap_on_secret(redisReply *reply, void *arg);

/* Every first-round answer ends here; the last one moves the request on. */
static void bootstrap_arrived(struct bootstrap_req *br)
{
	if (--br->pending == 0)
		bootstrap_continue(br);
	bootstrap_req_unref(br);
}

/* The record cache (store_cache), its lookups counted. */
static enum cache_result bootstrap_cache_get(struct cache *cache, const char *key, const char *field,
	const char **value, size_t *vlen)
{
	enum cache_result r = cache_get(cache, key, strlen(key), field, strlen(field), value, vlen);

	metrics_count(r == CACHE_MISS ? METRICS_CACHE_MISSES : METRICS_CACHE_HITS);
	return r;
}

static void bootstrap_cache_put(struct bootstrap_req *br, uint64_t token, const char *key, const char *field,
	const char *value, size_t vlen)
{
	struct cache *cache = token ? store_cache(br->t->store) : NULL;

	/* In a cluster a key that does not exist is in no node's tracking
	 * table once its slot moves: "absent" could go stale unheard. A key
	 * that exists is invalidated by the node it leaves. */
	if (value == NULL && store_clustered(br->t->store))
		return;
	if (cache)
		(void)cache_put(cache, token, key, strlen(key), field, strlen(field), value, vlen);
}

/* The product's fields a device request reads, in the HMGET's order. */
static const enum schema_product_field bootstrap_product_read[] = {
	SCHEMA_P_HOME_REGION, SCHEMA_P_HOME_INSTANCE, SCHEMA_P_ACCOUNT, SCHEMA_P_LOCKED, SCHEMA_P_AUTH,
	SCHEMA_P_BATCH, SCHEMA_P_PREAUTH,
};
#define BOOTSTRAP_NREAD (sizeof(bootstrap_product_read) / sizeof(bootstrap_product_read[0]))

/* The product as the record cache keeps it: the fields the device path uses
 * (hr hi ba pb pa, by their place in the HMGET), each a length byte (0xff:
 * absent) and its bytes. */
static const size_t bootstrap_product_cached[] = { 0, 1, 4, 5, 6 };
#define BOOTSTRAP_NCACHED (sizeof(bootstrap_product_cached) / sizeof(bootstrap_product_cached[0]))

static void bootstrap_product_keep(struct bootstrap_req *br, const redisReply *reply)
{
	char key[SCHEMA_KEY_MAX], v[CACHE_DATA_MAX];
	size_t off = 0;

	if (br->token == 0 || schema_product_key(key, sizeof(key), br->form.product_key) < 0)
		return;
	if (!br->product_found) {
		bootstrap_cache_put(br, br->token, key, "", NULL, 0);
		return;
	}
	for (size_t i = 0; i < BOOTSTRAP_NCACHED; i++) {
		const redisReply *e = reply->element[bootstrap_product_cached[i]];
		size_t len = e->type == REDIS_REPLY_STRING ? e->len : 0;
		if (len >= 0xff || off + 1 + len > sizeof(v))
			return; /* not cached */
		v[off++] = e->type == REDIS_REPLY_STRING ? (char)len : (char)0xff;
		if (len)
			memcpy(v + off, e->str, len);
		off += len;
	}
	bootstrap_cache_put(br, br->token, key, "", v, off);
}

/* False when V is not what bootstrap_product_keep wrote (then read Redis). */
static bool bootstrap_product_unpack(struct bootstrap_req *br, const char *v, size_t vlen)
{
	size_t off = 0;

	for (size_t i = 0; i < BOOTSTRAP_NCACHED; i++) {
		if (off >= vlen)
			return false;
		size_t len = (unsigned char)v[off++];
		bool absent = len == 0xff;
		if (absent)
			len = 0;
		if (off + len > vlen ||
		    schema_product_set(&br->product, bootstrap_product_read[bootstrap_product_cached[i]],
			    absent ? NULL : v + off, len) < 0)
			return false;
		off += len;
	}
	return off == vlen;
}

static void bootstrap_lookup_secret(struct bootstrap_req *br)
{
	struct cache *cache = store_cache(br->t->store);
	char key[SCHEMA_KEY_MAX];
	const char *v;
	size_t vlen;

	if (!br->product_found || !(br->product.auth_required || br->preauth) || br->failed)
		return;
	if (schema_secret_key(key, sizeof(key), br->form.product_key, br->form.device_name) < 0) {
		br->failed = true;
		return;
	}
	if (cache) {
		switch (bootstrap_cache_get(cache, key, br->field, &v, &vlen)) {
		case CACHE_HIT:
			if (vlen > sizeof(br->sealed))
				break;
			memcpy(br->sealed, v, vlen);
			br->sealed_len = vlen;
			return;
		case CACHE_HIT_ABSENT:
			return;
		case CACHE_MISS:
			break;
		}
		br->secret_token = cache_token(cache);
	}
	const char *argv[] = { "HGET", key, br->field };
	br->refs++;
	br->pending++;
	if (store_command_timed(br->t->store, bootstrap_time_left_ms(br), bootstrap_on_secret, br, 3, argv, NULL) < 0) {
		br->refs--;
		br->pending--;
		br->failed = true;
	}
}

static void bootstrap_on_product(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != BOOTSTRAP_NREAD) {
		br->failed = true;
		goto out;
	}
	for (size_t i = 0; i < reply->elements; i++) {
		if (reply->element[i]->type != REDIS_REPLY_STRING && reply->element[i]->type != REDIS_REPLY_NIL) {
			br->failed = true;
			goto out;
		}
	}
	br->product_found = reply->element[0]->type == REDIS_REPLY_STRING;
	for (size_t i = 0; br->product_found && i < reply->elements; i++) {
		redisReply *e = reply->element[i];
		if (schema_product_set(&br->product, bootstrap_product_read[i],
			    e->type == REDIS_REPLY_STRING ? e->str : NULL, e->len) < 0) {
			log_error("bootstrap", "product %s has an unreadable field %s", br->form.product_key,
				schema_product_fields[bootstrap_product_read[i]]);
			br->failed = true;
		}
	}
	if (!br->failed)
		bootstrap_product_keep(br, reply);
	bootstrap_lookup_secret(br);
out:
	bootstrap_arrived(br);
}

static void bootstrap_on_device(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;
	char key[SCHEMA_KEY_MAX];

	/* Only a nil answer means "no such device"; anything unexpected is a failure. */
	if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
		br->failed = true;
	} else if (reply->type == REDIS_REPLY_STRING) {
		if (schema_device_parse(reply->str, reply->len, &br->device) == 0) {
			br->device_found = true;
		} else {
			log_error("bootstrap", "device %s has an unreadable record", br->field);
			bootstrap_fail(br, 500, "internal error");
		}
	}
	if (!br->failed && (reply->type == REDIS_REPLY_NIL || br->device_found) &&
	    schema_device_key(key, sizeof(key), br->form.product_key, br->form.device_name) >= 0)
		bootstrap_cache_put(br, br->token, key, br->field, br->device_found ? reply->str : NULL,
			br->device_found ? reply->len : 0);
	bootstrap_arrived(br);
}

static void bootstrap_on_secret(redisReply *reply, void *arg)
{
	struct bootstrap_req *br = arg;
	char key[SCHEMA_KEY_MAX];

	if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL) ||
	    (reply->type == REDIS_REPLY_STRING && reply->len > sizeof(br->sealed))) {
		br->failed = true;
	} else {
		if (reply->type == REDIS_REPLY_STRING) {
			memcpy(br->sealed, reply->str, reply->len);
			br->sealed_len = reply->len;
		}
		if (schema_secret_key(key, sizeof(key), br->form.product_key, br->form.device_name) >= 0)
			bootstrap_cache_put(br, br->secret_token, key, br->field,
				reply->type == REDIS_REPLY_STRING ? reply->str : NULL, br->sealed_len);
	}
	bootstrap_arrived(br);
}

/* Answers the product from the record cache; false on a miss. */
static bool bootstrap_product_from_cache(struct bootstrap_req *br, struct cache *cache, const char *pkey)
{
	const char *v;
	size_t vlen;

	switch (cache ? bootstrap_cache_get(cache, pkey, "", &v, &vlen) : CACHE_MISS) {
	case CACHE_HIT:
		memset(&br->product, 0, sizeof(br->product));
		if (!bootstrap_product_unpack(br, v, vlen))
			return false;
		br->product_found = true;
		break;
	case CACHE_HIT_ABSENT:
		br->product_found = false;
		break;
	case CACHE_MISS:
		return false;
	}
	bootstrap_lookup_secret(br);
	return true;
}

/* Answers the device from the record cache; false on a miss. */
static bool bootstrap_device_from_cache(struct bootstrap_req *br, struct cache *cache, const char *dkey)
{
	const char *v;
	size_t vlen;

	switch (cache ? bootstrap_cache_get(cache, dkey, br->field, &v, &vlen) : CACHE_MISS) {
	case CACHE_HIT:
		if (schema_device_parse(v, vlen, &br->device) < 0)
			return false;
		br->device_found = true;
		return true;
	case CACHE_HIT_ABSENT:
		return true;
	case CACHE_MISS:
		break;
	}
	return false;
}

static void bootstrap_device(struct server_thread *t, struct http_request *req, const struct netaddr *client,
	bool preauth)
{
	const char *ctype = http_header(req, "Content-Type");
	size_t blen = req->r.body_len;
	char *body = req->r.body;
	char pkey[SCHEMA_KEY_MAX], dkey[SCHEMA_KEY_MAX];
	struct bootstrap_req *br;
	const char *why = NULL;

	/* Some device stacks end the body with a line break. */
	while (blen && (body[blen - 1] == '\n' || body[blen - 1] == '\r'))
		blen--;
	if (blen && ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
		bootstrap_fail_req(req, 460, "unsupported content type");
		return;
	}
	br = bootstrap_req_new(t);
	if (br == NULL) {
		bootstrap_fail_req(req, 500, "internal error");
		return;
	}
	br->refs = 1;
	br->t = t;
	br->req = req;
	br->preauth = preauth;
	if (client) {
		br->client = *client;
		br->client_known = true;
	}
	br->id = ++t->requests;
	/* Decoded in place: the connection keeps the bytes until the answer. */
	if (form_parse(&br->form, req->r.query, req->r.query_len, body, blen, &why) < 0) {
		bootstrap_fail(br, 460, why ? why : "bad parameters");
		goto out;
	}
	br->cat = catalog_ref(t->catalog);
	if (schema_product_key(pkey, sizeof(pkey), br->form.product_key) < 0 ||
	    schema_device_key(dkey, sizeof(dkey), br->form.product_key, br->form.device_name) < 0 ||
	    schema_device_field(br->field, sizeof(br->field), br->form.product_key, br->form.device_name) < 0) {
		bootstrap_fail(br, 460, "parameter too long");
		goto out;
	}
	/* Each record from the cache, else from Redis (pipelined: one round trip).
	 * The request holds one share of `pending` itself until both are under way. */
	struct cache *cache = store_cache(t->store);
	const char *pargv[2 + BOOTSTRAP_NREAD] = { "HMGET", pkey };
	const char *dargv[] = { "HGET", dkey, br->field };
	bool product_cached;
	for (size_t i = 0; i < BOOTSTRAP_NREAD; i++)
		pargv[2 + i] = schema_product_fields[bootstrap_product_read[i]];
	br->token = cache ? cache_token(cache) : 0;
	br->refs++;
	br->pending = 1;
	product_cached = bootstrap_product_from_cache(br, cache, pkey);
	if (!product_cached) {
		br->refs++;
		br->pending++;
		if (store_command(t->store, bootstrap_on_product, br, 2 + BOOTSTRAP_NREAD, pargv, NULL) < 0) {
			br->refs--;
			br->pending--;
			br->failed = true;
		}
	}
	/* A product known to be absent answers 5001 whatever the device. */
	if (!br->failed && (br->product_found || !product_cached) && !bootstrap_device_from_cache(br, cache, dkey)) {
		br->refs++;
		br->pending++;
		if (store_command(t->store, bootstrap_on_device, br, 3, dargv, NULL) < 0) {
			br->refs--;
			br->pending--;
			br->failed = true;
		}
	}
	bootstrap_arrived(br);
out:
	bootstrap_req_unref(br);
}

static void bootstrap_region(struct server_thread *t, struct http_request *req, const char *id)
{
	static const char mqtt_only[1][FORM_RESOURCE_NAME_MAX + 1] = { "mqtt" };
	char body[BOOTSTRAP_BODY_MAX];
	const struct catalog_region *region = catalog_region_named(t->catalog, id);
	const struct catalog_instance *inst = region ? catalog_default_instance(region) : NULL;
	int rc;

	if (inst == NULL) {
		bootstrap_fail_req(req, 460, "unknown region");
		return;
	}
	rc = bootstrap_render(t, t->catalog, inst, mqtt_only, 1, NULL, body);
	if (rc > 0)
		bootstrap_send(req, 200, body, rc);
	else if (rc < 0)
		bootstrap_fail_req(req, 460, "region endpoint needs a product key");
	else
		bootstrap_fail_req(req, 460, "no requested resource is offered");
}

/* The address the request speaks for (SPEC §6). */
static void bootstrap_client(struct server_thread *t, struct http_request *req, struct netaddr *out)
{
	struct netaddr peer;
	char xff[1024];
	size_t off = 0;
	bool any = false, cut = false;

	/* A PROXY header comes from the load balancer itself: its client is the
	 * peer, and trusted_proxies then apply to that address as usual. */
	http_peer(req, &peer);
	/* Every X-Forwarded-For line, in order: a proxy that adds its own line
	 * must not be outranked by one the device sent first. */
	for (size_t i = 0; i < req->r.nheaders; i++) {
		const struct httpreq_header *h = &req->r.headers[i];
		int n;
		if (strcasecmp(h->name, "X-Forwarded-For") != 0)
			continue;
		n = snprintf(xff + off, sizeof(xff) - off, "%s%s", any ? ", " : "", h->value);
		any = true;
		if (n < 0 || (size_t)n >= sizeof(xff) - off) {
			cut = true;
			break;
		}
		off += (size_t)n;
	}
	/* An overlong list cannot be walked from its right end: use the peer. */
	netaddr_client(&peer, any && !cut ? xff : NULL, any ? NULL : http_header(req, "Forwarded"),
		&t->srv->trusted_proxies, out);
}

bool bootstrap_rate_limited(struct server_thread *t, struct http_request *req)
{
	struct netaddr client;
	bool known;

	return bootstrap_limited(t, req, &client, &known);
}

/* True when the request's client is over its rate; it is then answered 429.
 * Sets *CLIENT when the limit needed it (else *KNOWN stays false). */
static bool bootstrap_limited(struct server_thread *t, struct http_request *req, struct netaddr *client, bool *known)
{
	char retry[16];
	unsigned wait;

	*known = false;
	if (t->srv->ratelimit == NULL)
		return false;
	bootstrap_client(t, req, client);
	*known = true;
	wait = ratelimit_take(t->srv->ratelimit, client,
		(uint64_t)req->started.tv_sec * 1000 + (uint64_t)req->started.tv_nsec / 1000000);
	if (wait == 0)
		return false;
	snprintf(retry, sizeof(retry), "%u", wait);
	http_add_header(req, "Retry-After", retry);
	bootstrap_fail_req(req, 429, "too many requests");
	return true;
}

static void bootstrap_on_route(struct http_request *req, struct server_thread *t, bool preauth)
{
	struct netaddr client;
	bool known;

	if (!bootstrap_limited(t, req, &client, &known))
		bootstrap_device(t, req, known ? &client : NULL, preauth);
}

static void bootstrap_on_device_route(struct http_request *req, void *arg)
{
	bootstrap_on_route(req, arg, false);
}

/* POST /auth/devicename (SPEC §10): the bootstrap, signed, with a token. */
static void bootstrap_on_preauth_route(struct http_request *req, void *arg)
{
	bootstrap_on_route(req, arg, true);
}

static void bootstrap_on_region_route(struct http_request *req, void *arg)
{
	static const char prefix[] = "/auth/bootstrap/regionId/";
	struct server_thread *t = arg;
	const char *id = req->r.path + sizeof(prefix) - 1;
	struct netaddr client;
	bool known;

	req->route_name = "/auth/bootstrap/regionId/{regionId}";

	if (id[0] == '\0' || strchr(id, '/') != NULL) {
		req->route = METRICS_PUBLIC_OTHER;
		bootstrap_fail_req(req, 404, "not found");
		return;
	}
	if (!bootstrap_limited(t, req, &client, &known))
		bootstrap_region(t, req, id);
}

const struct http_route bootstrap_routes[] = {
	{ "/auth/bootstrap", false, HTTP_M_GET | HTTP_M_POST, "GET, POST", METRICS_BOOTSTRAP, bootstrap_on_device_route },
	{ "/auth/bootstrap/regionId/", true, HTTP_M_GET | HTTP_M_POST, "GET, POST", METRICS_BOOTSTRAP_REGION,
		bootstrap_on_region_route },
	{ "/auth/register/device", false, HTTP_M_POST, "POST", METRICS_DYNREG, dynreg_on_alibaba },
	{ "/auth/devicename", false, HTTP_M_POST, "POST", METRICS_PREAUTH, bootstrap_on_preauth_route },
	{ "/register/dev", false, HTTP_M_POST, "POST", METRICS_DYNREG, dynreg_on_tencent },
	{ "/device/register", false, HTTP_M_POST, "POST", METRICS_DYNREG, dynreg_on_tencent },
};
const size_t bootstrap_nroutes = sizeof(bootstrap_routes) / sizeof(bootstrap_routes[0]);
