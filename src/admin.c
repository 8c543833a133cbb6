#include "admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <event2/buffer.h>
#include <sys/queue.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "admin_audit.h"
#include "admin_batch.h"
#include "admin_hooks.h"
#include "admin_reg.h"
#include "audit.h"
#include "adminreq.h"
#include "catalog.h"
#include "codes.h"
#include "config.h"
#include "csvdoc.h"
#include "form.h"
#include "hooks.h"
#include "http.h"
#include "jsonstrict.h"
#include "log.h"
#include "lua.h"
#include "nearest.h"
#include "notify.h"
#include "metrics.h"
#include "registry.h"
#include "route.h"
#include "schema.h"
#include "secret.h"
#include "server.h"
#include "store.h"
#include "token.h"

/* --- operations --- */

/* [PING, the store's layout version]: ready only on the layout this binary
 * reads and writes. */
static void admin_ops_ready_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	const struct config *cfg = ar->t->srv->cfg;
	bool redis_ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
		reply->element[0]->type == REDIS_REPLY_STATUS;
	const redisReply *v = redis_ok ? reply->element[1] : NULL;
	bool schema_ok = v != NULL && v->type == REDIS_REPLY_STRING && strcmp(v->str, SCHEMA_VERSION) == 0;
	bool catalog_ok = ar->t->catalog != NULL;
	bool geo_ok = !cfg->geoip_enabled || ar->t->geo != NULL;
	/* From SIGTERM on, the load balancer is to stop sending. */
	bool staying = !server_draining(ar->t->srv);
	bool ready = redis_ok && schema_ok && catalog_ok && geo_ok && staying;
	yajl_gen g = yajl_gen_alloc(NULL);

	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "status", ready ? "ready" : "not_ready");
	adminreq_gen_string(g, "failing");
	yajl_gen_array_open(g);
	if (!staying)
		adminreq_gen_string(g, "draining");
	if (!redis_ok)
		adminreq_gen_string(g, "redis");
	else if (!schema_ok)
		adminreq_gen_string(g, "schema");
	if (!catalog_ok)
		adminreq_gen_string(g, "catalog");
	if (!geo_ok)
		adminreq_gen_string(g, "geoip");
	yajl_gen_array_close(g);
	/* What is in service, for people reading it. */
	adminreq_gen_string(g, "geoip");
	adminreq_gen_string(g, !cfg->geoip_enabled ? "off" : geo_ok ? "open" : "missing");
	if (ar->t->srv->notify)
		notify_gen_brokers(ar->t->srv->notify, g);
	if (redis_ok && !schema_ok) {
		/* Which layout Redis holds, for the operator who upgraded. */
		adminreq_gen_string(g, "schema");
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "binary", SCHEMA_VERSION);
		adminreq_gen_kv(g, "store", v->type == REDIS_REPLY_STRING ? v->str : NULL);
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, ready ? 200 : 503, g);
	adminreq_unref(ar);
}

static void admin_healthz(struct http_request *req, void *arg)
{
	static const char ok[] = "{\"status\":\"ok\"}";

	(void)arg;
	adminreq_send(req, 200, adminreq_json, ok, sizeof(ok) - 1);
}

static void admin_readyz(struct http_request *req, void *arg)
{
	struct server_thread *t = arg;
	struct adminreq *ar = adminreq_new(t, req);
	const char *ping[] = { "PING" };
	const char *schema[] = { "EVAL", lua_schema_check, "1", SCHEMA_VERSION_KEY, SCHEMA_VERSION };
	const char *const *argvs[] = { ping, schema };
	const int argcs[] = { 1, 5 };

	if (ar == NULL) {
		adminreq_error_req(req, 500, "internal", "out of memory");
		return;
	}
	if (store_gather(adminreq_store(t), t->srv->cfg->redis_timeout_ms, 2, argcs, argvs, admin_ops_ready_reply,
		    ar) < 0)
		admin_ops_ready_reply(NULL, ar);
}

/* The figures of the metrics that Redis keeps (SCHEMA_STATS_BATCHES_KEY),
 * in this order: the notify gauge, then batches per status. */
static const char *const admin_metrics_fields[] = { "notify_unacked", "initializing", "running", "completed",
	"failed" };
#define ADMIN_METRICS_NFIELDS (sizeof(admin_metrics_fields) / sizeof(admin_metrics_fields[0]))

/* The metrics text, with the figures in Redis when REPLY has them (HMGET of
 * admin_metrics_fields; NULL when Redis did not answer). */
static void admin_metrics_send(struct http_request *req, struct server_thread *t, const redisReply *reply)
{
	char *text = metrics_render(), *brokers = t->srv->notify ? notify_metrics(t->srv->notify) : NULL;
	char *all = NULL, stored[1024] = "";
	long long v[ADMIN_METRICS_NFIELDS];

	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == ADMIN_METRICS_NFIELDS) {
		for (size_t i = 0; i < ADMIN_METRICS_NFIELDS; i++)
			v[i] = reply->element[i]->type == REDIS_REPLY_STRING ? strtoll(reply->element[i]->str, NULL, 10) : 0;
		int n = snprintf(stored, sizeof(stored),
			"# HELP bootstrapd_notify_unacked Notifies their broker took (sent) that the device has not "
			"answered yet, over every batch kept.\n# TYPE bootstrapd_notify_unacked gauge\n"
			"bootstrapd_notify_unacked %lld\n"
			"# HELP bootstrapd_batches Batches kept in Redis, by status.\n# TYPE bootstrapd_batches gauge\n",
			v[0]);
		for (size_t i = 1; i < ADMIN_METRICS_NFIELDS && n > 0 && (size_t)n < sizeof(stored); i++)
			n += snprintf(stored + n, sizeof(stored) - (size_t)n, "bootstrapd_batches{status=\"%s\"} %lld\n",
				admin_metrics_fields[i], v[i]);
	}
	if (text == NULL || asprintf(&all, "%s%s%s", text, brokers ? brokers : "", stored) < 0) {
		free(text);
		free(brokers);
		adminreq_error_req(req, 500, "internal", "out of memory");
		return;
	}
	adminreq_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", all, strlen(all));
	free(all);
	free(text);
	free(brokers);
}

static void admin_metrics_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;

	if (!ar->answered) {
		ar->answered = true;
		admin_metrics_send(ar->req, ar->t, reply);
	}
	adminreq_unref(ar);
}

static void admin_metrics(struct http_request *req, void *arg)
{
	struct server_thread *t = arg;
	struct adminreq *ar = adminreq_new(t, req);
	const char *argv[2 + ADMIN_METRICS_NFIELDS] = { "HMGET", SCHEMA_STATS_BATCHES_KEY };

	/* The figures in Redis; without Redis, the rest still answers. */
	if (ar == NULL) {
		admin_metrics_send(req, t, NULL);
		return;
	}
	for (size_t i = 0; i < ADMIN_METRICS_NFIELDS; i++)
		argv[2 + i] = admin_metrics_fields[i];
	ar->refs++;
	if (store_command(adminreq_store(t), admin_metrics_reply, ar, 2 + ADMIN_METRICS_NFIELDS, argv, NULL) < 0) {
		ar->refs--;
		ar->answered = true;
		admin_metrics_send(req, t, NULL);
	}
	adminreq_unref(ar);
}

/* --- products --- */

static void admin_gen_product_fields(yajl_gen g, const char *pk, const struct schema_product *p);

static void admin_gen_product(yajl_gen g, const char *pk, const struct schema_product *p)
{
	yajl_gen_map_open(g);
	admin_gen_product_fields(g, pk, p);
	yajl_gen_map_close(g);
}

/* The product and, once, its new secret. */
static void admin_gen_product_secret(yajl_gen g, const char *pk, const struct schema_product *p, const char *secret)
{
	yajl_gen_map_open(g);
	admin_gen_product_fields(g, pk, p);
	adminreq_gen_kv(g, "productSecret", secret);
	yajl_gen_map_close(g);
}

static void admin_gen_product_fields(yajl_gen g, const char *pk, const struct schema_product *p)
{
	adminreq_gen_kv(g, "productKey", pk);
	adminreq_gen_kv(g, "homeRegion", p->home_region);
	adminreq_gen_kv(g, "homeInstance", p->home_instance);
	adminreq_gen_kv(g, "account", p->account);
	adminreq_gen_string(g, "locked");
	yajl_gen_bool(g, p->locked);
	adminreq_gen_kv(g, "bootstrapAuth", p->auth_required ? "required" : "none");
	adminreq_gen_kv(g, "dynamicRegistration", schema_dynreg_names[p->dynreg]);
	adminreq_gen_string(g, "preAuth");
	yajl_gen_bool(g, p->pre_auth);
	adminreq_gen_time(g, "createdAt", p->created_at);
	adminreq_gen_time(g, "updatedAt", p->updated_at);
}

/* Fills P from an HMGET of schema_product_fields. Returns 1 found, 0 absent, -1 bad. */
static int admin_product_from_reply(redisReply *reply, struct schema_product *p)
{
	memset(p, 0, sizeof(*p));
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != SCHEMA_P_NFIELDS)
		return -1;
	if (reply->element[SCHEMA_P_HOME_REGION]->type != REDIS_REPLY_STRING)
		return 0;
	for (size_t i = 0; i < SCHEMA_P_NFIELDS; i++) {
		redisReply *e = reply->element[i];
		if (schema_product_set(p, (enum schema_product_field)i,
			    e->type == REDIS_REPLY_STRING ? e->str : NULL, e->len) < 0)
			return -1;
	}
	return 1;
}

static int admin_product_hmget(struct adminreq *ar, store_reply_fn fn)
{
	char key[SCHEMA_KEY_MAX];
	const char *argv[2 + SCHEMA_P_NFIELDS] = { "HMGET", key };

	if (schema_product_key(key, sizeof(key), ar->pk) < 0)
		return -1;
	for (size_t i = 0; i < SCHEMA_P_NFIELDS; i++)
		argv[2 + i] = schema_product_fields[i];
	ar->refs++;
	if (store_command(adminreq_store(ar->t), fn, ar, 2 + SCHEMA_P_NFIELDS, argv, NULL) < 0) {
		ar->refs--;
		return -1;
	}
	return 0;
}

static void admin_product_get_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	int found;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	found = admin_product_from_reply(reply, &ar->product);
	if (found < 0) {
		adminreq_error(ar, 500, "internal", "stored product is unreadable");
	} else if (found == 0) {
		adminreq_error(ar, 404, "product_not_found", "no such product");
	} else if (!ar->answered) {
		yajl_gen g = yajl_gen_alloc(NULL);
		/* The PUT that first enabled dynamic registration: its secret, once. */
		if (ar->out != NULL) {
			admin_gen_product_secret(g, ar->pk, &ar->product, ar->out);
			http_add_header(ar->req, "Cache-Control", "no-store");
		} else {
			admin_gen_product(g, ar->pk, &ar->product);
		}
		adminreq_answer_gen(ar, ar->created ? 201 : 200, g);
	}
out:
	adminreq_unref(ar);
}

static void admin_product_put_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	ar->created = reply->element[0]->integer == 1;
	if (reply->element[1]->integer != 1 && ar->out != NULL) {
		/* The product had a secret already: this one was never kept. */
		OPENSSL_cleanse(ar->out, ar->outlen);
		free(ar->out);
		ar->out = NULL;
		ar->outlen = 0;
	}
	if (admin_product_hmget(ar, admin_product_get_reply) < 0)
		adminreq_unavailable(ar);
out:
	adminreq_unref(ar);
}

static void admin_product_put(struct adminreq *ar)
{
	char key[SCHEMA_KEY_MAX], now[24];
	struct registry_product p;
	struct registry_error err;
	size_t len;
	char *body = adminreq_body(ar->req, &len);

	if (body == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	if (registry_product_parse(body, len, ar->t->catalog, &p, &err) < 0) {
		adminreq_error(ar, err.status, err.code, err.message);
		goto out;
	}
	if (schema_product_key(key, sizeof(key), ar->pk) < 0) {
		adminreq_error(ar, 400, "invalid_product_key", "productKey too long");
		goto out;
	}
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	{
		unsigned char sealed[SECRET_HEX_LEN + SECRET_SEALED_OVERHEAD];
		int sl = 0;
		/* A secret in case this PUT first enables dynamic registration (the script decides). */
		if (p.dynreg != SCHEMA_DYNREG_OFF) {
			if ((ar->out = calloc(1, SECRET_HEX_LEN + 1)) == NULL || secret_generate(ar->out) < 0 ||
			    (sl = secret_seal(ar->t->srv->secret_key, ar->pk, ar->out, SECRET_HEX_LEN, sealed,
				     sizeof(sealed))) < 0) {
				adminreq_error(ar, 500, "internal", "cannot make the product secret");
				goto out;
			}
			ar->outlen = SECRET_HEX_LEN;
		}
		const char *argv[] = { "EVAL", lua_put_product, "2", key, SCHEMA_PRODUCTS_KEY, p.region->id, p.instance->id,
			p.account, p.locked ? "1" : "0", p.auth, now, ar->pk, schema_dynreg_names[p.dynreg],
			p.pre_auth ? "1" : "0", (const char *)sealed };
		size_t lens[15];
		for (size_t i = 0; i < 14; i++)
			lens[i] = strlen(argv[i]);
		lens[14] = (size_t)sl;
		ar->refs++;
		if (store_write(adminreq_store(ar->t), admin_product_put_reply, ar, 15, argv, lens) < 0) {
			ar->refs--;
			adminreq_unavailable(ar);
		}
		OPENSSL_cleanse(sealed, sizeof(sealed));
	}
out:
	free(body);
}

static void admin_product_secret_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	char body[160];
	int n;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer == 0) {
		adminreq_error(ar, 404, "product_not_found", "no such product");
	} else if (!ar->answered) {
		/* The product key is of [A-Za-z0-9_-], the secret hex: nothing to escape. */
		n = snprintf(body, sizeof(body), "{\"productKey\":\"%s\",\"productSecret\":\"%s\"}", ar->pk, ar->out);
		ar->answered = true;
		http_add_header(ar->req, "Cache-Control", "no-store");
		adminreq_send(ar->req, 200, adminreq_json, body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
		OPENSSL_cleanse(body, sizeof(body));
	}
	adminreq_unref(ar);
}

/* POST /v1/products/{productKey}/secret: a new product secret, answered once. */
static void admin_product_secret(struct adminreq *ar)
{
	unsigned char sealed[SECRET_HEX_LEN + SECRET_SEALED_OVERHEAD];
	char key[SCHEMA_KEY_MAX], now[24];
	int sl;

	if (schema_product_key(key, sizeof(key), ar->pk) < 0 || (ar->out = calloc(1, SECRET_HEX_LEN + 1)) == NULL ||
	    secret_generate(ar->out) < 0 ||
	    (sl = secret_seal(ar->t->srv->secret_key, ar->pk, ar->out, SECRET_HEX_LEN, sealed, sizeof(sealed))) < 0) {
		adminreq_error(ar, 500, "internal", "cannot make the product secret");
		return;
	}
	ar->outlen = SECRET_HEX_LEN;
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	const char *argv[] = { "EVAL", lua_product_secret, "1", key, (const char *)sealed, now };
	size_t lens[] = { 4, strlen(lua_product_secret), 1, strlen(key), (size_t)sl, strlen(now) };
	ar->refs++;
	if (store_write(adminreq_store(ar->t), admin_product_secret_reply, ar, 6, argv, lens) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
	OPENSSL_cleanse(sealed, sizeof(sealed));
}

/* --- a device's secret reset (SPEC §5) --- */

static void admin_device_secret_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	char body[192];
	int n;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer == 0) {
		adminreq_error(ar, 404, "device_not_found", "no such device");
	} else if (!ar->answered) {
		/* Names are of their alphabets, the secret hex: nothing to escape. */
		n = snprintf(body, sizeof(body), "{\"productKey\":\"%s\",\"deviceName\":\"%s\",\"deviceSecret\":\"%s\"}",
			ar->pk, ar->dn, ar->out);
		ar->answered = true;
		http_add_header(ar->req, "Cache-Control", "no-store");
		adminreq_send(ar->req, 200, adminreq_json, body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
		OPENSSL_cleanse(body, sizeof(body));
	}
	adminreq_unref(ar);
}

/* POST /v1/devices/{pk}/{dn}/secret: a new secret (32 hex), answered once;
 * the old one and the device's pre-auth token stop working. */
static void admin_device_secret(struct adminreq *ar)
{
	unsigned char sealed[SECRET_HEX_LEN + SECRET_SEALED_OVERHEAD];
	char dkey[SCHEMA_KEY_MAX], skey[SCHEMA_KEY_MAX], akey[SCHEMA_KEY_MAX], field[SCHEMA_FIELD_MAX],
		derived[SCHEMA_IOT_ID_LEN], iot_id[SCHEMA_IOT_ID_LEN + 1];
	int sl;

	if (schema_device_key(dkey, sizeof(dkey), ar->pk, ar->dn) < 0 ||
	    schema_secret_key(skey, sizeof(skey), ar->pk, ar->dn) < 0 ||
	    schema_device_field(field, sizeof(field), ar->pk, ar->dn) < 0 ||
	    secret_derive_hex(ar->t->srv->secret_key, "iotId", field, SCHEMA_IOT_ID_LEN - 3, derived) < 0 ||
	    schema_iot_id(iot_id, ar->pk, ar->dn, derived) < 0 || schema_preauth_key(akey, sizeof(akey), iot_id) < 0 ||
	    (ar->out = calloc(1, SECRET_HEX_LEN + 1)) == NULL || secret_generate(ar->out) < 0 ||
	    (sl = secret_seal(ar->t->srv->secret_key, field, ar->out, SECRET_HEX_LEN, sealed, sizeof(sealed))) < 0) {
		adminreq_error(ar, 500, "internal", "cannot make the secret");
		return;
	}
	ar->outlen = SECRET_HEX_LEN;
	const char *argv[] = { "EVAL", lua_device_secret, "3", dkey, skey, akey, field, (const char *)sealed };
	size_t lens[] = { 4, strlen(lua_device_secret), 1, strlen(dkey), strlen(skey), strlen(akey), strlen(field),
		(size_t)sl };
	ar->refs++;
	if (store_write(adminreq_store(ar->t), admin_device_secret_reply, ar, 8, argv, lens) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
	OPENSSL_cleanse(sealed, sizeof(sealed));
}

/* --- the brokers' check of a pre-auth token (SPEC §10) --- */

static void admin_mqtt_answer(struct adminreq *ar, bool allow, const char *why)
{
	static const char yes[] = "{\"result\":\"allow\"}", no[] = "{\"result\":\"deny\"}";

	if (!allow)
		log_info("admin", "MQTT client %s denied: %s", ar->pk[0] ? ar->pk : "-", why);
	if (ar->answered)
		return;
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_json, allow ? yes : no, allow ? sizeof(yes) - 1 : sizeof(no) - 1);
}

struct admin_mqtt {
	char clientid[FORM_CLIENT_ID_MAX + 1];
	char password_sha256[65];
};

static void admin_mqtt_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_mqtt *m = ar->data;
	struct schema_preauth p;
	char want[SCHEMA_FIELD_MAX];
	size_t wl;

	if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->type == REDIS_REPLY_NIL) {
		admin_mqtt_answer(ar, false, "no such token (never issued, or expired)");
	} else if (schema_preauth_parse(reply->str, reply->len, &p) < 0) {
		log_error("admin", "a pre-auth token record is unreadable");
		admin_mqtt_answer(ar, false, "unreadable token record");
	} else if (p.expires <= (int64_t)time(NULL)) {
		admin_mqtt_answer(ar, false, "token expired");
	} else if (!secret_str_equal(p.token_sha256, m->password_sha256)) {
		admin_mqtt_answer(ar, false, "wrong token");
	} else {
		/* The device's client id is {productKey}.{deviceName}, alone or before '|'. */
		snprintf(want, sizeof(want), "%s", p.field);
		*strchr(want, '/') = '.';
		wl = strlen(want);
		snprintf(ar->pk, sizeof(ar->pk), "%.*s", (int)(strchr(p.field, '/') - p.field), p.field);
		if (m->clientid[0] && !(strncmp(m->clientid, want, wl) == 0 && (m->clientid[wl] == '\0' ||
									 m->clientid[wl] == '|')))
			admin_mqtt_answer(ar, false, "client id of another device");
		else
			admin_mqtt_answer(ar, true, NULL);
	}
	adminreq_unref(ar);
}

/* POST /v1/mqtt/auth {"clientid":..,"username":iotId,"password":iotToken}:
 * 200 {"result":"allow"} or {"result":"deny"}, EMQX's HTTP authentication. */
static void admin_mqtt_auth(struct adminreq *ar, const struct route_args *a)
{
	const char *pu[] = { "username", NULL }, *pp[] = { "password", NULL }, *pc[] = { "clientid", NULL };
	struct jsonstrict_error e;
	struct admin_mqtt *m;
	char key[SCHEMA_KEY_MAX];
	size_t len;
	char *body = adminreq_body(ar->req, &len);
	yajl_val root = NULL, u, pw, c;

	(void)a;
	if (body == NULL || (m = calloc(1, sizeof(*m))) == NULL) {
		free(body);
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	ar->data = m;
	ar->data_free = free;
	if ((root = jsonstrict_parse(body, len, 4, &e)) == NULL || !YAJL_IS_OBJECT(root)) {
		adminreq_error(ar, 400, "invalid_json", "body must be a JSON object {\"clientid\",\"username\",\"password\"}");
		goto out;
	}
	u = yajl_tree_get(root, pu, yajl_t_string);
	pw = yajl_tree_get(root, pp, yajl_t_string);
	c = yajl_tree_get(root, pc, yajl_t_any);
	if (u == NULL || pw == NULL || (c != NULL && !YAJL_IS_STRING(c) && !YAJL_IS_NULL(c))) {
		adminreq_error(ar, 400, "invalid_field", "username and password are strings, clientid a string");
		goto out;
	}
	if (c && YAJL_IS_STRING(c))
		snprintf(m->clientid, sizeof(m->clientid), "%s", YAJL_GET_STRING(c));
	if (schema_preauth_key(key, sizeof(key), YAJL_GET_STRING(u)) < 0) {
		admin_mqtt_answer(ar, false, "not an iotId");
		goto out;
	}
	if (secret_sha256_hex(YAJL_GET_STRING(pw), m->password_sha256) < 0) {
		adminreq_error(ar, 500, "internal", "cannot hash");
		goto out;
	}
	const char *argv[] = { "GET", key };
	adminreq_command(ar, admin_mqtt_reply, 2, argv, false);
out:
	yajl_tree_free(root);
	if (body)
		OPENSSL_cleanse(body, len);
	free(body);
}

/* --- devices --- */

struct admin_regargs {
	char dkey[SCHEMA_KEY_MAX], skey[SCHEMA_KEY_MAX], ckey[SCHEMA_KEY_MAX];
	char field[SCHEMA_FIELD_MAX];
	char record[SCHEMA_DEVICE_RECORD_MAX];
	unsigned char sealed[SECRET_PLAIN_MAX + SECRET_SEALED_OVERHEAD];
	size_t sealed_len;
};

/* A registration ready to send, once the product is known to exist. */
struct admin_register {
	struct admin_regargs *ra;
	long n;
	const char **argv;
	size_t *argvlen;
	size_t argc;
	char numkeys[24];
	/* Under Cluster: the devices in group order, and where each group starts. */
	size_t *order, *gstart, ngroups;
	const char *method; /* the record's: "csv" or "count" */
};

static void admin_register_recorded(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;

	if (reply == NULL || (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_INTEGER))
		log_warn("admin", "%s: the devices are registered, the registration's record is not (%s)", ar->pk, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no answer");
	else if (reply->type == REDIS_REPLY_STRING)
		http_add_header(ar->req, "X-Registration-Id", reply->str);
	if (!ar->answered) {
		ar->answered = true;
		adminreq_send(ar->req, 200, adminreq_csv, ar->out, ar->outlen);
	}
	adminreq_unref(ar);
}

/* device.registered for the push subscriptions: the product, how, and the names. */
static void admin_register_event(struct adminreq *ar, const struct admin_register *r)
{
	size_t cap = 128 + (size_t)r->n * (CATALOG_DEVICE_NAME_MAX + 3), off;
	char *data = malloc(cap);

	if (data == NULL)
		return;
	off = (size_t)snprintf(data, cap, "{\"productKey\":\"%s\",\"method\":\"%s\",\"count\":%ld,\"devices\":[", ar->pk,
		r->method, r->n);
	/* Names are of their alphabet: nothing to escape. */
	for (long i = 0; i < r->n && off < cap; i++)
		off += (size_t)snprintf(data + off, cap - off, "%s\"%s\"", i ? "," : "", strchr(r->ra[i].field, '/') + 1);
	if (off + 3 < cap) {
		memcpy(data + off, "]}", 3);
		hooks_emit(ar->t->hooks, HOOKS_DEVICE_REGISTERED, data);
	}
	free(data);
}

/* The devices are registered: their registration's record (SPEC §5,
 * mass production), then the CSV answer. */
static void admin_register_done(struct adminreq *ar)
{
	struct admin_register *r = ar->data;
	char mkey[SCHEMA_KEY_MAX + 16], nkey[SCHEMA_KEY_MAX + 16], dkey[SCHEMA_KEY_MAX + 16], count[24], now[24],
		actor[TOKEN_NAME_MAX + 1];
	size_t len = 0, off = 0;
	char *names;

	for (long i = 0; i < r->n; i++)
		len += strlen(r->ra[i].field) + 1;
	/* The day's list is not written here; given so that the script's keys share their slot. */
	if ((names = malloc(len + 1)) == NULL || schema_registrations_key(mkey, sizeof(mkey), ar->pk, 'm', 0) < 0 ||
	    schema_registrations_key(nkey, sizeof(nkey), ar->pk, 'n', 0) < 0 ||
	    schema_registrations_key(dkey, sizeof(dkey), ar->pk, 'd', (int64_t)time(NULL)) < 0)
		goto answer;
	for (long i = 0; i < r->n; i++) {
		const char *dn = strchr(r->ra[i].field, '/') + 1;
		off += (size_t)sprintf(names + off, "%s%s", i ? "\n" : "", dn);
	}
	snprintf(count, sizeof(count), "%ld", r->n);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	adminreq_actor(ar->t, ar->req, actor);
	admin_register_event(ar, r);
	const char *argv[] = { "EVAL", lua_registration, "3", mkey, nkey, dkey, r->method, count, now, actor, names };
	ar->refs++;
	if (store_write(adminreq_store(ar->t), admin_register_recorded, ar, 11, argv, NULL) == 0) {
		free(names);
		return;
	}
	ar->refs--;
answer:
	free(names);
	log_warn("admin", "%s: the devices are registered, the registration's record is not", ar->pk);
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_csv, ar->out, ar->outlen);
}

static void admin_register_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	char msg[160];

	if (reply == NULL) {
		adminreq_error(ar, 503, "outcome_unknown",
			"Redis did not confirm in time; the devices may be registered: look them up before retrying");
	} else if (reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer == -1) {
		adminreq_error(ar, 404, "product_not_found", "no such product");
	} else if (reply->integer > 0) {
		/* The script numbers devices from 1 in upload order. */
		snprintf(msg, sizeof(msg), "device %lld of the upload is already registered; nothing was registered",
			reply->integer);
		adminreq_error(ar, 409, "device_exists", msg);
	} else if (!ar->answered) {
		admin_register_done(ar);
	}
	adminreq_unref(ar);
}

/* Reads the upload into DEVS, generating what it leaves out. Returns the
 * count, or -1 after answering. */
static long admin_register_read(struct adminreq *ar, struct registry_device **devs)
{
	struct registry_device *d = NULL;
	struct registry_error err;
	char *body = NULL;
	size_t len;
	long n = -1;

	body = adminreq_body(ar->req, &len);
	if (body == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	if (adminreq_content_type_is(ar->req, "application/json")) {
		n = registry_devices_count(body, len, &err);
		if (n < 0)
			goto fail;
		d = calloc((size_t)n, sizeof(*d));
		if (d == NULL) {
			n = -1;
			adminreq_error(ar, 500, "internal", "out of memory");
			goto out;
		}
		for (long i = 0; i < n; i++) {
			char hex[SECRET_HEX_LEN + 1];
			if (secret_generate(hex) < 0) {
				n = -1;
				adminreq_error(ar, 500, "internal", "no randomness");
				goto out;
			}
			snprintf(d[i].name, sizeof(d[i].name), "dev-%.16s", hex);
			d[i].row = (size_t)i + 1;
		}
		if (registry_devices_unique(d, (size_t)n, &err) < 0) {
			n = -1;
			goto fail;
		}
	} else if (adminreq_content_type_is(ar->req, "text/csv")) {
		n = registry_devices_csv(body, len, &d, &err);
		if (n < 0)
			goto fail;
	} else {
		adminreq_error(ar, 415, "unsupported_media_type", "send text/csv or application/json");
		goto out;
	}
	for (long i = 0; i < n; i++) {
		if (d[i].secret[0] == '\0' && secret_generate(d[i].secret) < 0) {
			n = -1;
			adminreq_error(ar, 500, "internal", "no randomness");
			goto out;
		}
	}
	*devs = d;
	d = NULL;
	goto out;
fail:
	adminreq_error(ar, err.status, err.code, err.message);
out:
	if (d && n > 0)
		OPENSSL_cleanse(d, (size_t)n * sizeof(*d));
	free(d);
	free(body);
	return n;
}



static void admin_register_free(void *p)
{
	struct admin_register *r = p;

	if (r == NULL)
		return;
	if (r->ra)
		OPENSSL_cleanse(r->ra, (size_t)r->n * sizeof(*r->ra));
	free(r->ra);
	free(r->argv);
	free(r->argvlen);
	free(r->order);
	free(r->gstart);
	free(r);
}

/* A cluster's groups answered: 0 each, or the first device (numbered in
 * its group's call) that was registered meanwhile. */
/* N commands' argument arrays and lengths, either array maybe NULL. */
static void admin_commands_free(const char ***argvs, size_t **lens, size_t n)
{
	for (size_t g = 0; g < n; g++) {
		if (argvs != NULL)
			free(argvs[g]);
		if (lens != NULL)
			free(lens[g]);
	}
	free(argvs);
	free(lens);
}

static void admin_register_takenback(redisReply *all, void *arg)
{
	long long n = 0;

	(void)arg;
	for (size_t g = 0; all != NULL && g < all->elements; g++)
		if (all->element[g]->type == REDIS_REPLY_INTEGER)
			n += all->element[g]->integer;
	if (all == NULL)
		log_warn("admin", "a cluster registration that failed could not be taken back whole; "
			"look its devices up");
	else if (n > 0)
		log_info("admin", "a cluster registration that failed was taken back: %lld devices removed", n);
}

/* Takes back the groups that were written (ALL NULL: any may have been),
 * so that a failed registration leaves nothing, as on one server. */
static void admin_register_takeback(struct adminreq *ar, const redisReply *all)
{
	struct admin_register *r = ar->data;
	const char ***argvs = calloc(r->ngroups, sizeof(*argvs));
	size_t **lens = calloc(r->ngroups, sizeof(*lens));
	int *argcs = calloc(r->ngroups, sizeof(*argcs));
	char (*numkeys)[24] = calloc(r->ngroups, sizeof(*numkeys));
	size_t n = 0;

	if (argvs == NULL || lens == NULL || argcs == NULL || numkeys == NULL)
		goto out;
	for (size_t g = 0; g < r->ngroups; g++) {
		size_t from = r->gstart[g], to = g + 1 < r->ngroups ? r->gstart[g + 1] : (size_t)r->n, k = 3;
		if (all != NULL && (all->element[g]->type != REDIS_REPLY_INTEGER || all->element[g]->integer != 0))
			continue; /* refused or found a device: wrote nothing */
		if ((argvs[n] = calloc(3 + 5 * (to - from), sizeof(**argvs))) == NULL ||
		    (lens[n] = calloc(3 + 5 * (to - from), sizeof(**lens))) == NULL)
			goto out;
		snprintf(numkeys[n], sizeof(numkeys[n]), "%zu", 3 * (to - from));
		argvs[n][0] = "EVAL";
		argvs[n][1] = lua_unregister;
		argvs[n][2] = numkeys[n];
		for (size_t d = from; d < to; d++) {
			struct admin_regargs *a = &r->ra[r->order[d]];
			argvs[n][k++] = a->dkey;
			argvs[n][k++] = a->skey;
			argvs[n][k++] = a->ckey;
		}
		for (size_t d = from; d < to; d++) {
			struct admin_regargs *a = &r->ra[r->order[d]];
			argvs[n][k++] = a->field;
			lens[n][k] = a->sealed_len;
			argvs[n][k++] = (const char *)a->sealed;
		}
		argcs[n++] = (int)k;
	}
	if (n > 0 && store_gather_write(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), n, argcs,
			    (const char *const *const *)argvs, (const size_t *const *)lens, admin_register_takenback,
			    NULL) < 0)
		admin_register_takenback(NULL, NULL);
out:
	admin_commands_free(argvs, lens, r->ngroups);
	free(argcs);
	free(numkeys);
}

/* A cluster's groups answered: 0 each, or the first device (numbered in
 * its group's call) that was registered meanwhile. Any other answer takes
 * the written groups back. */
static void admin_register_groups_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;

	if (all == NULL) {
		admin_register_takeback(ar, NULL);
		adminreq_error(ar, 503, "outcome_unknown",
			"Redis did not confirm in time; the devices may be registered: look them up before retrying");
		goto out;
	}
	for (size_t g = 0; g < all->elements; g++) {
		const redisReply *e = all->element[g];
		if (e->type == REDIS_REPLY_INTEGER && e->integer == 0)
			continue;
		admin_register_takeback(ar, all);
		if (e->type != REDIS_REPLY_INTEGER)
			adminreq_redis_failed(ar, e);
		else
			/* Another registration of the same devices ran between the
			 * check and the writes. */
			adminreq_error(ar, 409, "device_exists",
				"a device of the upload was registered by another request meanwhile; nothing was registered");
		goto out;
	}
	if (!ar->answered)
		admin_register_done(ar);
out:
	adminreq_unref(ar);
}

static int admin_cmp_group(const void *a, const void *b, void *arg)
{
	const struct admin_regargs *ra = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(ra[x].ckey, ra[y].ckey);

	return c ? c : x < y ? -1 : x > y;
}

/* In a cluster each device group is a slot of its own: one script per
 * group, all of them sent at once. The whole upload was checked first. */
static void admin_register_groups(struct adminreq *ar)
{
	struct admin_register *r = ar->data;
	size_t n = (size_t)r->n, ngroups = 0;
	size_t *order = calloc(n, sizeof(*order));
	const char ***argvs = NULL;
	size_t **lens = NULL;
	int *argcs = NULL;
	char (*numkeys)[24] = NULL;

	if (order == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	qsort_r(order, n, sizeof(*order), admin_cmp_group, r->ra);
	for (size_t i = 0; i < n; i++)
		ngroups += i == 0 || strcmp(r->ra[order[i]].ckey, r->ra[order[i - 1]].ckey) != 0;
	if ((r->gstart = calloc(ngroups, sizeof(*r->gstart))) == NULL)
		goto oom;
	r->order = order;
	r->ngroups = ngroups;
	argvs = calloc(ngroups, sizeof(*argvs));
	lens = calloc(ngroups, sizeof(*lens));
	argcs = calloc(ngroups, sizeof(*argcs));
	numkeys = calloc(ngroups, sizeof(*numkeys));
	if (argvs == NULL || lens == NULL || argcs == NULL || numkeys == NULL)
		goto oom;
	for (size_t i = 0, g = 0; i < n; g++) {
		size_t j = i, k = 3;
		while (j < n && strcmp(r->ra[order[j]].ckey, r->ra[order[i]].ckey) == 0)
			j++;
		if ((argvs[g] = calloc(3 + 6 * (j - i), sizeof(**argvs))) == NULL ||
		    (lens[g] = calloc(3 + 6 * (j - i), sizeof(**lens))) == NULL)
			goto oom;
		r->gstart[g] = i;
		snprintf(numkeys[g], sizeof(numkeys[g]), "%zu", 3 * (j - i));
		argvs[g][0] = "EVAL";
		argvs[g][1] = lua_register;
		argvs[g][2] = numkeys[g];
		for (size_t d = i; d < j; d++) {
			struct admin_regargs *a = &r->ra[order[d]];
			argvs[g][k++] = a->dkey;
			argvs[g][k++] = a->skey;
			argvs[g][k++] = a->ckey;
		}
		for (size_t d = i; d < j; d++) {
			struct admin_regargs *a = &r->ra[order[d]];
			argvs[g][k++] = a->field;
			argvs[g][k++] = a->record;
			lens[g][k] = a->sealed_len;
			argvs[g][k++] = (const char *)a->sealed;
		}
		argcs[g] = (int)k;
		i = j;
	}
	ar->refs++;
	if (store_gather_write(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), ngroups, argcs,
		    (const char *const *const *)argvs, (const size_t *const *)lens, admin_register_groups_reply, ar) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
	goto out;
oom:
	adminreq_error(ar, 500, "internal", "out of memory");
out:
	admin_commands_free(argvs, lens, ngroups);
	free(argcs);
	free(numkeys);
	if (r->order != order)
		free(order);
}

/* The check of a cluster's registration: any device already there? */
static void admin_register_check_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	char msg[160];

	if (all == NULL) {
		adminreq_unavailable(ar);
		goto out;
	}
	for (size_t i = 0; i < all->elements; i++) {
		if (all->element[i]->type != REDIS_REPLY_INTEGER) {
			adminreq_redis_failed(ar, all->element[i]);
			goto out;
		}
		if (all->element[i]->integer == 1) {
			snprintf(msg, sizeof(msg), "device %zu of the upload is already registered; nothing was registered",
				i + 1);
			adminreq_error(ar, 409, "device_exists", msg);
			goto out;
		}
	}
	admin_register_groups(ar);
out:
	adminreq_unref(ar);
}

static void admin_register_check(struct adminreq *ar)
{
	struct admin_register *r = ar->data;
	size_t n = (size_t)r->n;
	const char *(*argvs)[3] = calloc(n, sizeof(*argvs));
	const char *const **pargvs = calloc(n, sizeof(*pargvs));
	int *argcs = calloc(n, sizeof(*argcs));

	if (argvs == NULL || pargvs == NULL || argcs == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		argvs[i][0] = "HEXISTS";
		argvs[i][1] = r->ra[i].dkey;
		argvs[i][2] = r->ra[i].field;
		pargvs[i] = argvs[i];
		argcs[i] = 3;
	}
	ar->refs++;
	if (store_gather(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), n, argcs, pargvs,
		    admin_register_check_reply, ar) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
out:
	free(argvs);
	free(pargvs);
	free(argcs);
}

/* The product lives in another slot than its devices: looked at first. */
static void admin_register_product_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_register *r = ar->data;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		if (reply == NULL)
			adminreq_unavailable(ar);
		else
			adminreq_redis_failed(ar, reply);
	} else if (reply->integer == 0) {
		adminreq_error(ar, 404, "product_not_found", "no such product");
	} else if (store_clustered(adminreq_store(ar->t))) {
		/* One script per group: not all or nothing across the groups, so
		 * the whole upload is checked first. */
		admin_register_check(ar);
	} else {
		ar->refs++;
		if (store_write_timed(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), admin_register_reply, ar,
			    (int)r->argc, r->argv, r->argvlen) < 0) {
			ar->refs--;
			adminreq_unavailable(ar);
		}
	}
	adminreq_unref(ar);
}

static void admin_devices_post(struct adminreq *ar)
{
	struct registry_device *devs = NULL;
	struct admin_register *r = NULL;
	char pkey[SCHEMA_KEY_MAX];
	long n = admin_register_read(ar, &devs);
	size_t argc, k, off = 0, cap;
	struct schema_device rec = { .status = SCHEMA_INACTIVE, .registered_at = (int64_t)time(NULL),
		.notify_row = -1 };

	if (n < 0)
		return;
	argc = 3 + 6 * (size_t)n;
	cap = 64 + (size_t)n * (CATALOG_PRODUCT_KEY_MAX + CATALOG_DEVICE_NAME_MAX + 2 * SECRET_PLAIN_MAX + 8);
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->ra = calloc((size_t)n, sizeof(*r->ra))) == NULL ||
	    (r->argv = calloc(argc, sizeof(*r->argv))) == NULL ||
	    (r->argvlen = calloc(argc, sizeof(*r->argvlen))) == NULL || (ar->out = malloc(cap)) == NULL) {
		admin_register_free(r);
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	r->n = n;
	r->method = adminreq_content_type_is(ar->req, "application/json") ? "count" : "csv";
	r->argc = argc;
	ar->data = r;
	ar->data_free = admin_register_free;
	ar->out[0] = '\0';
	if (schema_product_key(pkey, sizeof(pkey), ar->pk) < 0)
		goto fail;
	snprintf(r->numkeys, sizeof(r->numkeys), "%ld", 3 * n);
	const char **argv = r->argv;
	size_t *argvlen = r->argvlen;
	struct admin_regargs *ra = r->ra;
	argv[0] = "EVAL";
	argv[1] = lua_register;
	argv[2] = r->numkeys;
	k = 3;
	for (long i = 0; i < n; i++) {
		struct admin_regargs *a = &ra[i];
		uint32_t bucket = schema_bucket(ar->pk, devs[i].name);
		int sl;
		if (schema_bucket_key(a->dkey, sizeof(a->dkey), 'd', bucket) < 0 ||
		    schema_bucket_key(a->skey, sizeof(a->skey), 's', bucket) < 0 ||
		    schema_counters_key(a->ckey, sizeof(a->ckey), schema_group(bucket)) < 0 ||
		    schema_device_field(a->field, sizeof(a->field), ar->pk, devs[i].name) < 0 ||
		    schema_device_format(&rec, a->record, sizeof(a->record)) < 0)
			goto fail;
		sl = secret_seal(ar->t->srv->secret_key, a->field, devs[i].secret, strlen(devs[i].secret),
			a->sealed, sizeof(a->sealed));
		if (sl < 0)
			goto fail;
		a->sealed_len = (size_t)sl;
		argv[k++] = a->dkey;
		argv[k++] = a->skey;
		argv[k++] = a->ckey;
	}
	for (long i = 0; i < n; i++) {
		argv[k++] = ra[i].field;
		argv[k++] = ra[i].record;
		argvlen[k] = ra[i].sealed_len;
		argv[k++] = (const char *)ra[i].sealed;
	}
	for (size_t i = 0; i < argc; i++)
		if (argvlen[i] == 0)
			argvlen[i] = strlen(argv[i]);
	/* The answer is ready before anything is written; sent once Redis says yes. */
	off = (size_t)snprintf(ar->out, cap, "productKey,deviceName,deviceSecret\r\n");
	for (long i = 0; i < n; i++) {
		if (csvdoc_write_field(ar->out, cap, &off, ar->pk) < 0 || off + 1 >= cap)
			goto fail;
		ar->out[off++] = ',';
		if (csvdoc_write_field(ar->out, cap, &off, devs[i].name) < 0 || off + 1 >= cap)
			goto fail;
		ar->out[off++] = ',';
		if (csvdoc_write_field(ar->out, cap, &off, devs[i].secret) < 0 || off + 2 >= cap)
			goto fail;
		ar->out[off++] = '\r';
		ar->out[off++] = '\n';
	}
	ar->outlen = off;
	const char *hexists[] = { "HEXISTS", pkey, "hr" };
	ar->refs++;
	if (store_command(adminreq_store(ar->t), admin_register_product_reply, ar, 3, hexists, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
	goto out;
fail:
	adminreq_error(ar, 500, "internal", "cannot prepare the registration");
out:
	if (devs)
		OPENSSL_cleanse(devs, (size_t)n * sizeof(*devs));
	free(devs);
}

/* "notify": the latest bootstrap notify of the device, or null. */
static void admin_gen_notify(yajl_gen g, const struct schema_device *d)
{
	char id[32], batch[24];

	adminreq_gen_string(g, "notify");
	/* The record's notify is of the record's batch. */
	if (d->notify_row < 0 || d->batch == 0) {
		yajl_gen_null(g);
		return;
	}
	notify_message_id(d->batch, (unsigned)d->notify_row, id);
	snprintf(batch, sizeof(batch), "%" PRIu64, d->batch);
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "state", d->notify_state);
	adminreq_gen_kv(g, "batchId", batch);
	adminreq_gen_kv(g, "id", id);
	yajl_gen_map_close(g);
}

/* A device answer waiting for the codes table: its batch, and how often it waited. */
struct admin_device_wait {
	struct schema_batch batch;
	bool has_batch;
	int syncs;
};

static void admin_device_answer(struct adminreq *ar, const struct schema_batch *batch);

static void admin_device_codes_synced(bool ok, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_device_wait *w = ar->data;

	if (ok)
		admin_device_answer(ar, w->has_batch ? &w->batch : NULL);
	else
		adminreq_unavailable(ar);
	adminreq_unref(ar);
}

/* The id of the device's last region, from its code; NULL with the answer
 * left to admin_device_codes_synced() when this thread must read the codes
 * first (a region coded by another process since), or answered 503. */
static const char *admin_device_region(struct adminreq *ar, const struct schema_batch *batch, bool *waiting)
{
	const char *code = ar->device.last_region_code, *id;
	struct admin_device_wait *w = ar->data;

	*waiting = false;
	if (code[0] == '\0')
		return NULL;
	if ((id = codes_id(ar->t->codes, CODES_REGION, code, strlen(code))) != NULL)
		return id;
	if (w == NULL) {
		if ((w = calloc(1, sizeof(*w))) == NULL) {
			adminreq_error(ar, 500, "internal", "out of memory");
			*waiting = true;
			return NULL;
		}
		ar->data = w;
		ar->data_free = free;
		if (batch) {
			w->batch = *batch;
			w->has_batch = true;
		}
	}
	*waiting = true;
	if (w->syncs++ < 2) {
		ar->refs++;
		if (codes_sync(ar->t->codes, NULL, 0, admin_device_codes_synced, ar) == 0)
			return NULL;
		ar->refs--;
	}
	adminreq_unavailable(ar);
	return NULL;
}

static void admin_device_answer(struct adminreq *ar, const struct schema_batch *batch)
{
	const struct schema_product *p = &ar->product;
	const struct schema_device *d = &ar->device;
	bool waiting;
	const char *last_region = admin_device_region(ar, batch, &waiting);
	yajl_gen g;
	char seq[24];

	if (waiting)
		return;
	g = yajl_gen_alloc(NULL);

	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "productKey", ar->pk);
	adminreq_gen_kv(g, "deviceName", ar->dn);
	adminreq_gen_kv(g, "status", d->status == SCHEMA_ACTIVE ? "active" : "inactive");
	adminreq_gen_time(g, "registeredAt", d->registered_at);
	adminreq_gen_time(g, "activatedAt", d->activated_at);
	adminreq_gen_time(g, "lastBootstrapAt", d->last_bootstrap_at);
	adminreq_gen_kv(g, "lastResolvedRegion", last_region);
	adminreq_gen_string(g, "assignment");
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "level", d->batch ? "device" : p->batch ? "product" : "home");
	if (batch) {
		adminreq_gen_kv(g, "strategy", batch->strategy == SCHEMA_NEAREST ? "nearest" : "region");
		if (batch->strategy == SCHEMA_NEAREST) {
			adminreq_gen_string(g, "candidates");
			yajl_gen_array_open(g);
			for (size_t i = 0; i < batch->ntargets; i++) {
				yajl_gen_map_open(g);
				adminreq_gen_kv(g, "region", batch->targets[i].region);
				adminreq_gen_kv(g, "instance", batch->targets[i].instance);
				yajl_gen_map_close(g);
			}
			yajl_gen_array_close(g);
		} else {
			adminreq_gen_kv(g, "region", batch->targets[0].region);
			adminreq_gen_kv(g, "instance", batch->targets[0].instance);
		}
		adminreq_gen_kv(g, "account", batch->account[0] ? batch->account : p->account);
		snprintf(seq, sizeof(seq), "%" PRIu64, batch->seq);
		adminreq_gen_kv(g, "batchId", seq);
		adminreq_gen_time(g, "distributedAt", batch->created_at);
	} else {
		adminreq_gen_kv(g, "strategy", "region");
		adminreq_gen_kv(g, "region", p->home_region);
		adminreq_gen_kv(g, "instance", p->home_instance);
		adminreq_gen_kv(g, "account", p->account);
		adminreq_gen_kv(g, "batchId", NULL);
		adminreq_gen_kv(g, "distributedAt", NULL);
	}
	yajl_gen_map_close(g);
	admin_gen_notify(g, &ar->device);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
}

/* KEY and V with DIGITS decimals (yajl_gen_double prints 20 significant digits). */
static void admin_gen_fixed(yajl_gen g, const char *key, double v, int digits)
{
	char num[48];
	int n = snprintf(num, sizeof(num), "%.*f", digits, v);

	adminreq_gen_string(g, key);
	yajl_gen_number(g, num, (size_t)n);
}

/* ?ip=ADDR of the explain call into ar->client; false after answering 400. */
static bool admin_explain_address(struct adminreq *ar)
{
	const char *query = ar->req->r.query;
	char *copy = query ? strdup(query) : NULL; /* decoded in place */
	struct form_param q[FORM_PARAMS_MAX];
	const struct form_param *ip;
	const char *why;
	size_t n;
	bool ok = false;

	if (copy && form_query_parse(copy, strlen(copy), q, FORM_PARAMS_MAX, &n, &why) == 0 &&
	    (ip = form_param_find(q, n, "ip")) != NULL && netaddr_parse(ip->value, ip->value_len, &ar->client) == 0)
		ok = true;
	free(copy);
	if (!ok)
		adminreq_error(ar, 400, "invalid_parameter", "ip must be an IPv4 or IPv6 address");
	ar->explain = ok;
	return ok;
}

/* GET /v1/devices/{pk}/{dn}/resolve: what the device would get from
 * ar->client, and why. BATCH is its assignment, NULL for the home region. */
static void admin_device_explain(struct adminreq *ar, const struct schema_batch *batch)
{
	const struct catalog *cat = ar->t->catalog;
	struct catalog_vars vars = { ar->pk, ar->dn };
	struct schema_batch home = { .strategy = SCHEMA_REGION, .ntargets = 1 };
	struct nearest_result nr;
	char addr[NETADDR_TEXT_MAX], host[CATALOG_HOST_MAX + 1];
	const char *why;
	yajl_gen g;

	if (batch == NULL) {
		const struct catalog_region *r = catalog_region(cat, ar->product.home_region);
		const struct catalog_instance *inst = r ? (ar->product.home_instance[0] ?
			catalog_instance(r, ar->product.home_instance) : catalog_default_instance(r)) : NULL;
		snprintf(home.targets[0].region, sizeof(home.targets[0].region), "%s", ar->product.home_region);
		snprintf(home.targets[0].instance, sizeof(home.targets[0].instance), "%s",
			inst ? inst->id : ar->product.home_instance);
		batch = &home;
	}
	if (nearest_choose(cat, ar->t->geo, batch, &ar->client, true, &nr) < 0) {
		adminreq_error(ar, 500, "internal", "the device's assignment names no region in the catalog");
		return;
	}
	if (batch->strategy != SCHEMA_NEAREST)
		why = batch == &home ? "the product's home region" : "the batch's target region";
	else if (!nr.looked_up)
		why = "no GeoIP database: the first candidate";
	else if (nr.location.outcome == GEO_NOT_FOUND)
		why = "the address has no location: the first candidate";
	else if (nr.location.outcome == GEO_COUNTRY_ONLY)
		why = "the nearest candidate to the centre of the address's country";
	else
		why = "the nearest candidate to the address's location";
	netaddr_format(&ar->client, addr);
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "strategy", batch->strategy == SCHEMA_NEAREST ? "nearest" : "region");
	adminreq_gen_kv(g, "level", ar->device.batch ? "device" : ar->product.batch ? "product" : "home");
	adminreq_gen_kv(g, "address", addr);
	adminreq_gen_string(g, "location");
	if (nr.looked_up && nr.location.outcome != GEO_NOT_FOUND) {
		yajl_gen_map_open(g);
		admin_gen_fixed(g, "latitude", nr.location.point.latitude, 4);
		admin_gen_fixed(g, "longitude", nr.location.point.longitude, 4);
		adminreq_gen_kv(g, "country", nr.location.country[0] ? nr.location.country : NULL);
		adminreq_gen_kv(g, "source", geo_outcome_name(nr.location.outcome));
		yajl_gen_map_close(g);
	} else {
		yajl_gen_null(g);
	}
	adminreq_gen_string(g, "candidates");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < nr.ncandidates; i++) {
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "region", nr.candidates[i].region->id);
		adminreq_gen_kv(g, "instance", nr.candidates[i].instance->id);
		if (nr.candidates[i].distance_km >= 0) {
			admin_gen_fixed(g, "distanceKm", nr.candidates[i].distance_km, 1);
		} else {
			adminreq_gen_string(g, "distanceKm");
			yajl_gen_null(g);
		}
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	adminreq_gen_string(g, "chosen");
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "region", nr.candidates[nr.chosen].region->id);
	adminreq_gen_kv(g, "instance", nr.candidates[nr.chosen].instance->id);
	adminreq_gen_string(g, "resources");
	yajl_gen_map_open(g);
	for (size_t e = 0; e < nr.candidates[nr.chosen].instance->nendpoints; e++) {
		const struct catalog_endpoint *ep = &nr.candidates[nr.chosen].instance->endpoints[e];
		if (catalog_render_host(ep, nr.candidates[nr.chosen].instance, &vars, host, sizeof(host)) < 0)
			continue;
		adminreq_gen_string(g, ep->protocol);
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "host", host);
		adminreq_gen_string(g, "port");
		yajl_gen_integer(g, ep->port);
		if (ep->ip)
			adminreq_gen_kv(g, "ip", ep->ip);
		yajl_gen_map_close(g);
	}
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	adminreq_gen_kv(g, "reason", why);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
}

static void admin_device_batch_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct schema_batch b = { .seq = ar->device.batch ? ar->device.batch : ar->product.batch };

	if (ar->answered)
		goto out;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
		adminreq_unavailable(ar);
		goto out;
	}
	if (reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING ||
	    schema_targets_parse(reply->element[1]->str, reply->element[1]->len, &b) < 0) {
		adminreq_error(ar, 500, "internal", "the device's batch is missing or unreadable");
		goto out;
	}
	b.strategy = reply->element[0]->str[0] == 'n' ? SCHEMA_NEAREST : SCHEMA_REGION;
	if (reply->element[2]->type == REDIS_REPLY_STRING && reply->element[2]->len <= SCHEMA_ACCOUNT_MAX) {
		memcpy(b.account, reply->element[2]->str, reply->element[2]->len);
		b.account[reply->element[2]->len] = '\0';
	}
	if (reply->element[3]->type == REDIS_REPLY_STRING &&
	    schema_parse_i64(reply->element[3]->str, reply->element[3]->len, &b.created_at) < 0)
		b.created_at = 0;
	if (ar->explain)
		admin_device_explain(ar, &b);
	else
		admin_device_answer(ar, &b);
out:
	adminreq_unref(ar);
}

static void admin_device_product(struct adminreq *ar, redisReply *reply)
{
	uint64_t seq;
	int found;

	if (ar->answered)
		return;
	if (reply->type == REDIS_REPLY_ERROR || ar->failed) {
		adminreq_redis_failed(ar, reply->type == REDIS_REPLY_ERROR ? reply : NULL);
		return;
	}
	found = admin_product_from_reply(reply, &ar->product);
	if (found < 0) {
		adminreq_error(ar, 500, "internal", "stored product is unreadable");
		return;
	}
	if (found == 0 || !ar->device_found) {
		adminreq_error(ar, 404, "device_not_found", "no such device");
		return;
	}
	seq = ar->device.batch ? ar->device.batch : ar->product.batch;
	if (seq == 0) {
		if (ar->explain)
			admin_device_explain(ar, NULL);
		else
			admin_device_answer(ar, NULL);
		return;
	}
	char key[SCHEMA_KEY_MAX];
	if (schema_batch_key(key, sizeof(key), seq) < 0) {
		adminreq_error(ar, 500, "internal", "bad batch");
		return;
	}
	const char *argv[] = { "HMGET", key, "st", "tg", "ac", "ct" };
	ar->refs++;
	if (store_command(adminreq_store(ar->t), admin_device_batch_reply, ar, 6, argv, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
}

static void admin_device_record(struct adminreq *ar, const redisReply *reply)
{
	if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_NIL)
		ar->failed = 1;
	else if (reply->type == REDIS_REPLY_STRING) {
		if (schema_device_parse(reply->str, reply->len, &ar->device) == 0)
			ar->device_found = true;
		else
			adminreq_error(ar, 500, "internal", "stored device record is unreadable");
	}
}

/* The record (its notify included) and its product: each may be on another
 * node, so they are taken together. */
static void admin_device_read(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;

	if (all == NULL || all->elements != 2) {
		adminreq_unavailable(ar);
	} else {
		admin_device_record(ar, all->element[0]);
		admin_device_product(ar, all->element[1]);
	}
	adminreq_unref(ar);
}

static void admin_device_get(struct adminreq *ar)
{
	char dkey[SCHEMA_KEY_MAX], pkey[SCHEMA_KEY_MAX], field[SCHEMA_FIELD_MAX];
	const char *pargv[2 + SCHEMA_P_NFIELDS] = { "HMGET", pkey };

	if (schema_device_key(dkey, sizeof(dkey), ar->pk, ar->dn) < 0 ||
	    schema_product_key(pkey, sizeof(pkey), ar->pk) < 0 ||
	    schema_device_field(field, sizeof(field), ar->pk, ar->dn) < 0) {
		adminreq_error(ar, 404, "device_not_found", "no such device");
		return;
	}
	for (size_t i = 0; i < SCHEMA_P_NFIELDS; i++)
		pargv[2 + i] = schema_product_fields[i];
	const char *dargv[] = { "HGET", dkey, field };
	const char *const *argvs[] = { dargv, pargv };
	const int argcs[] = { 3, 2 + SCHEMA_P_NFIELDS };
	adminreq_gather(ar, 2, argcs, argvs, admin_device_read);
}

/* --- routing --- */

static void admin_regions(struct adminreq *ar, const struct route_args *a)
{
	char *json = NULL;
	size_t len = 0;

	(void)a;
	if (catalog_to_json(ar->t->catalog, &json, &len) < 0) {
		adminreq_error(ar, 500, "internal", "cannot render the catalog");
		return;
	}
	ar->answered = true;
	adminreq_send(ar->req, 200, adminreq_json, json, len);
	free(json);
}

static void admin_product_get_route(struct adminreq *ar, const struct route_args *a)
{
	if (adminreq_take_product(ar, a->v[0]) && admin_product_hmget(ar, admin_product_get_reply) < 0)
		adminreq_unavailable(ar);
}

static void admin_product_put_route(struct adminreq *ar, const struct route_args *a)
{
	if (adminreq_take_product(ar, a->v[0]))
		admin_product_put(ar);
}

static void admin_product_secret_route(struct adminreq *ar, const struct route_args *a)
{
	if (adminreq_take_product(ar, a->v[0]))
		admin_product_secret(ar);
}

static void admin_devices_post_route(struct adminreq *ar, const struct route_args *a)
{
	if (adminreq_take_product(ar, a->v[0]))
		admin_devices_post(ar);
}

/* The device of a /v1/devices/{productKey}/{deviceName} path into AR, or a
 * 404: a name that cannot exist names no device. */
static bool admin_take_device(struct adminreq *ar, const struct route_args *a)
{
	if (!form_valid_product_key(a->v[0]) || !form_valid_device_name(a->v[1])) {
		adminreq_error(ar, 404, "device_not_found", "no such device");
		return false;
	}
	memcpy(ar->pk, a->v[0], strlen(a->v[0]) + 1);
	memcpy(ar->dn, a->v[1], strlen(a->v[1]) + 1);
	return true;
}

static void admin_device_get_route(struct adminreq *ar, const struct route_args *a)
{
	if (admin_take_device(ar, a))
		admin_device_get(ar);
}

static void admin_device_resolve_route(struct adminreq *ar, const struct route_args *a)
{
	if (admin_explain_address(ar) && admin_take_device(ar, a))
		admin_device_get(ar);
}

static void admin_device_secret_route(struct adminreq *ar, const struct route_args *a)
{
	if (admin_take_device(ar, a))
		admin_device_secret(ar);
}

static const struct admin_route admin_core_routes[] = {
	{ "/v1/mqtt/auth", HTTP_POST, admin_mqtt_auth },
	{ "/v1/regions", HTTP_GET, admin_regions },
	{ "/v1/products/{productKey}", HTTP_GET, admin_product_get_route },
	{ "/v1/products/{productKey}", HTTP_PUT, admin_product_put_route },
	{ "/v1/products/{productKey}/devices", HTTP_POST, admin_devices_post_route },
	{ "/v1/products/{productKey}/secret", HTTP_POST, admin_product_secret_route },
	{ "/v1/devices/{productKey}/{deviceName}", HTTP_GET, admin_device_get_route },
	{ "/v1/devices/{productKey}/{deviceName}/resolve", HTTP_GET, admin_device_resolve_route },
	{ "/v1/devices/{productKey}/{deviceName}/secret", HTTP_POST, admin_device_secret_route },
};

/* Every /v1 route, by resource; within a table the first match wins. */
static const struct {
	const struct admin_route *routes;
	const size_t *n;
} admin_tables[] = {
	{ admin_core_routes, NULL },
	{ admin_batch_routes, &admin_batch_nroutes },
	{ admin_reg_routes, &admin_reg_nroutes },
	{ admin_audit_routes, &admin_audit_nroutes },
	{ admin_hooks_routes, &admin_hooks_nroutes },
};

/* The first route whose pattern fits PATH (ARGS its segments), or NULL;
 * ALLOW gets the methods of every route that fits, for a 405. */
static const struct admin_route *admin_match(const char *path, enum http_method method, struct route_args *args,
	const char **name, char *allow, size_t allow_len)
{
	*name = NULL;
	allow[0] = '\0';
	for (size_t i = 0; i < sizeof(admin_tables) / sizeof(admin_tables[0]); i++) {
		size_t n = admin_tables[i].n ? *admin_tables[i].n
					     : sizeof(admin_core_routes) / sizeof(admin_core_routes[0]);
		for (size_t k = 0; k < n; k++) {
			const struct admin_route *r = &admin_tables[i].routes[k];
			if (!route_match(r->pattern, path, args))
				continue;
			if (*name == NULL)
				*name = r->pattern;
			if (r->method == method) {
				*name = r->pattern;
				return r;
			}
			size_t used = strlen(allow);
			snprintf(allow + used, allow_len - used, "%s%s", used ? ", " : "", http_method_str(r->method));
		}
	}
	return NULL;
}

static void admin_v1(struct http_request *req, void *arg)
{
	struct server_thread *t = arg;
	char allow[64];
	struct route_args args;
	const struct admin_route *r = admin_match(req->r.path, req->r.method, &args, &req->route_name, allow,
		sizeof(allow));
	struct adminreq *ar;

	/* Named before the token is checked: a refused call's access line says
	 * what it tried. */
	if (!token_set_check(t->tokens, http_header(req, "Authorization"))) {
		adminreq_error_req(req, 401, "unauthorized", "a valid Authorization: Bearer token is required");
		return;
	}
	if ((ar = adminreq_new(t, req)) == NULL) {
		adminreq_error_req(req, 500, "internal", "out of memory");
		return;
	}
	if (r != NULL) {
		r->fn(ar, &args);
	} else if (allow[0] != '\0') {
		http_add_header(req, "Allow", allow);
		adminreq_error(ar, 405, "method_not_allowed", "method not allowed here");
	} else {
		adminreq_error(ar, 404, "not_found", "no such path");
	}
	adminreq_unref(ar);
}

void admin_answered(struct http_request *req, int status, void *ctx)
{
	struct server_thread *t = ctx;
	char action[AUDIT_ACTION_MAX], target[AUDIT_TARGET_MAX], actor[TOKEN_NAME_MAX + 1], from[NETADDR_TEXT_MAX],
		result[16];
	struct netaddr peer;

	/* A refusal before any route (a malformed request) is no operator call. */
	if (req->matched == NULL || req->r.path == NULL || !audit_classify(req->r.method, req->r.path, action, target))
		return;
	adminreq_actor(t, req, actor);
	http_peer(req, &peer);
	netaddr_format(&peer, from);
	snprintf(result, sizeof(result), "%d", status);
	audit_record(adminreq_store(t), actor, from, action, target, result);
}

const struct http_route admin_routes[] = {
	{ "/healthz", false, HTTP_M_GET, "GET", METRICS_OPS, admin_healthz },
	{ "/readyz", false, HTTP_M_GET, "GET", METRICS_OPS, admin_readyz },
	{ "/metrics", false, HTTP_M_GET, "GET", METRICS_OPS, admin_metrics },
	{ "/v1/", true, 0, NULL, METRICS_ADMIN, admin_v1 },
};
const size_t admin_nroutes = sizeof(admin_routes) / sizeof(admin_routes[0]);
/* The worker role's listener: operations only. */
const size_t admin_nops_routes = 3;
const struct http_route *const admin_ops_routes = admin_routes;
