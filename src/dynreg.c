#include "dynreg.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "admin_reg.h"
#include "audit.h"
#include "bootstrap.h"
#include "config.h"
#include "dynform.h"
#include "form.h"
#include "hooks.h"
#include "log.h"
#include "lua.h"
#include "netaddr.h"
#include "schema.h"
#include "secret.h"
#include "server.h"
#include "store.h"

static const char dynreg_json[] = "application/json; charset=utf-8";

/* The two forms: the vendor SDK 4.x's (a form, hex HMAC) and the Tencent
 * IoT Explorer SDK's (JSON, base64 of hex HMAC-SHA1, an encrypted answer). */
enum dynreg_kind { DYNREG_ALIBABA, DYNREG_TENCENT };

/* One registration: the form's parameters point into the request's
 * buffers, which the connection keeps until the answer. */
struct dynreg_req {
	struct server_thread *t;
	struct http_request *req;
	enum dynreg_kind kind;
	const char *pk, *dn, *random;
	struct form_request form;   /* DYNREG_ALIBABA */
	const char *method;         /* "hmacmd5" when not sent */
	struct dynform_tencent tc;  /* DYNREG_TENCENT */
	enum schema_dynreg mode;
	char field[SCHEMA_FIELD_MAX];
	char dkey[SCHEMA_KEY_MAX], skey[SCHEMA_KEY_MAX], ckey[SCHEMA_KEY_MAX];
	char rkey[SCHEMA_KEY_MAX + SCHEMA_FIELD_MAX + SCHEMA_DYNREG_RANDOM_MAX];
	/* The new device secret (32 hex, or a Tencent PSK), and the Tencent
	 * answer's payload (encrypted); wiped with the request. */
	char secret[SECRET_HEX_LEN + 1];
	char payload[128];
};

static void dynreg_free(struct dynreg_req *d)
{
	if (d == NULL)
		return;
	OPENSSL_cleanse(d->secret, sizeof(d->secret));
	OPENSSL_cleanse(d->payload, sizeof(d->payload));
	free(d);
}

static void dynreg_fail(struct dynreg_req *d, int code, const char *message)
{
	bootstrap_fail_req(d->req, code, message);
	dynreg_free(d);
}

/* Every registration, issued or refused, leaves a log line and an audit
 * entry (the secret never): the device, from where, what came of it. */
static void dynreg_log(const struct dynreg_req *d, int code, const char *what)
{
	struct netaddr peer;
	char addr[NETADDR_TEXT_MAX], result[16];

	http_peer(d->req, &peer);
	netaddr_format(&peer, addr);
	log_info("dynreg", "%s from %s: %s", d->field, addr, what);
	snprintf(result, sizeof(result), "%d", code);
	audit_record(d->t->store, "device", addr, d->kind == DYNREG_TENCENT ? "device.register.tencent" : "device.register",
		d->field, result);
}

static void dynreg_registered(redisReply *reply, void *arg)
{
	struct dynreg_req *d = arg;
	char body[256];
	int n;

	if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
		if (reply && reply->type == REDIS_REPLY_ERROR)
			log_warn("dynreg", "%s: the registration was refused by Redis: %s", d->field, reply->str);
		dynreg_fail(d, 503, "service unavailable");
		return;
	}
	if (strcmp(reply->str, "active") == 0) {
		dynreg_log(d, 6201, "refused, the device has bootstrapped before");
		dynreg_fail(d, 6201, "device already activated: its secret is not issued again");
		return;
	}
	if (strcmp(reply->str, "replay") == 0) {
		dynreg_log(d, 401, "refused, random seen before");
		dynreg_fail(d, 401, "random already used");
		return;
	}
	if (strcmp(reply->str, "not_found") == 0) {
		dynreg_fail(d, 5001, "device not found");
		return;
	}
	if (strcmp(reply->str, "ok") != 0 && strcmp(reply->str, "new") != 0) {
		log_error("dynreg", "%s: unexpected answer to the registration: %s", d->field, reply->str);
		dynreg_fail(d, 500, "internal error");
		return;
	}
	dynreg_log(d, 200, strcmp(reply->str, "new") == 0 ? "secret issued, device registered" : "secret issued");
	admin_reg_dynamic(d->t->store, d->pk, d->dn);
	{
		char data[192];
		snprintf(data, sizeof(data), "{\"productKey\":\"%s\",\"method\":\"dynamic\",\"count\":1,\"devices\":[\"%s\"]}",
			d->pk, d->dn);
		hooks_emit(d->t->hooks, HOOKS_DEVICE_REGISTERED, data);
	}
	/* Names are of [A-Za-z0-9_.@:-], the secret hex, the payload base64:
	 * nothing to escape (and the Tencent SDK unescapes nothing, '/' included). */
	if (d->kind == DYNREG_TENCENT)
		n = snprintf(body, sizeof(body), "{\"code\":0,\"message\":\"\",\"len\":%zu,\"payload\":\"%s\"}",
			sizeof("{\"encryptionType\":2,\"psk\":\"\"}") - 1 + strlen(d->secret), d->payload);
	else
		n = snprintf(body, sizeof(body),
			"{\"code\":200,\"data\":{\"productKey\":\"%s\",\"deviceName\":\"%s\",\"deviceSecret\":\"%s\"},"
			"\"message\":\"success\"}",
			d->pk, d->dn, d->secret);
	if (n < 0 || (size_t)n >= sizeof(body)) {
		dynreg_fail(d, 500, "internal error");
		return;
	}
	http_add_header(d->req, "Cache-Control", "no-store");
	http_send(d->req, 200, dynreg_json, body, (size_t)n);
	OPENSSL_cleanse(body, sizeof(body));
	dynreg_free(d);
}

/* The signature under the product secret PLAIN: for the 4.x form over
 * every parameter but sign and signMethod; for the Tencent form over its
 * four fields. True when it matches. */
static bool dynreg_signed(const struct dynreg_req *d, const char *plain)
{
	static const char *const skip[] = { "sign", "signMethod" };
	char small[1024], *content, expect[SECRET_HMAC_HEX_MAX + 1];
	size_t cap = d->req->r.query_len + d->req->r.body_len + 1, len;
	bool ok = false;

	if (d->kind == DYNREG_TENCENT) {
		int n = dynform_tencent_content(&d->tc, small, sizeof(small));
		char sign[SECRET_TC_SIGN_LEN + 1];
		ok = n > 0 && secret_tc_sign(plain, small, (size_t)n, sign, sizeof(sign)) > 0 &&
			secret_str_equal(sign, d->tc.signature);
		OPENSSL_cleanse(sign, sizeof(sign));
		return ok;
	}
	content = cap <= sizeof(small) ? small : malloc(cap);
	if (content != NULL && form_sign_content(&d->form, skip, 2, content, cap, &len) == 0 &&
	    secret_hmac_hex(d->method, plain, content, len, expect, sizeof(expect)) > 0)
		ok = secret_hex_equal(expect, d->form.sign) == 1;
	if (content != small)
		free(content);
	return ok;
}

static void dynreg_read(redisReply *all, void *arg)
{
	struct dynreg_req *d = arg;
	const redisReply *p, *r;
	struct schema_product product = { 0 };
	struct schema_device dev;
	char plain[SECRET_PLAIN_MAX + 1], record[SCHEMA_DEVICE_RECORD_MAX], ttl[16];
	unsigned char sealed[SECRET_HEX_LEN + SECRET_SEALED_OVERHEAD];
	int made;
	int sl;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != 2 ||
	    (p = all->element[0])->type != REDIS_REPLY_ARRAY || p->elements != 3 ||
	    ((r = all->element[1])->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
		dynreg_fail(d, 503, "service unavailable");
		return;
	}
	if (p->element[0]->type != REDIS_REPLY_STRING) {
		dynreg_fail(d, 5001, "product not found");
		return;
	}
	if (p->element[1]->type == REDIS_REPLY_STRING &&
	    schema_product_set(&product, SCHEMA_P_DYNREG, p->element[1]->str, p->element[1]->len) < 0)
		product.dynreg = SCHEMA_DYNREG_OFF;
	if (product.dynreg == SCHEMA_DYNREG_OFF || p->element[2]->type != REDIS_REPLY_STRING) {
		dynreg_fail(d, 6200, "the product does not allow dynamic registration");
		return;
	}
	d->mode = product.dynreg;
	if (r->type == REDIS_REPLY_NIL && d->mode == SCHEMA_DYNREG_PREREGISTERED) {
		dynreg_fail(d, 5001, "device not found");
		return;
	}
	if (r->type == REDIS_REPLY_STRING) {
		if (schema_device_parse(r->str, r->len, &dev) < 0) {
			log_error("dynreg", "device %s has an unreadable record", d->field);
			dynreg_fail(d, 500, "internal error");
			return;
		}
		if (dev.activated_at != 0) {
			dynreg_log(d, 6201, "refused, the device has bootstrapped before");
			dynreg_fail(d, 6201, "device already activated: its secret is not issued again");
			return;
		}
	}
	if (secret_open(d->t->srv->secret_key, d->pk, (const unsigned char *)p->element[2]->str,
		    p->element[2]->len, plain, sizeof(plain)) < 0) {
		log_error("dynreg", "product %s: its sealed secret does not open with this service key", d->pk);
		dynreg_fail(d, 500, "internal error");
		return;
	}
	if (!dynreg_signed(d, plain)) {
		OPENSSL_cleanse(plain, sizeof(plain));
		dynreg_log(d, 401, "refused, wrong signature");
		dynreg_fail(d, 401, "signature is wrong");
		return;
	}
	struct schema_device fresh = { .status = SCHEMA_INACTIVE, .registered_at = (int64_t)time(NULL),
		.notify_row = -1 };
	made = d->kind == DYNREG_TENCENT ? secret_generate_psk(d->secret) : secret_generate(d->secret) == 0 ?
		SECRET_HEX_LEN : -1;
	if (made > 0 && d->kind == DYNREG_TENCENT) {
		/* The answer's payload, encrypted under the product secret as the SDK decrypts it. */
		char pt[96];
		int n = snprintf(pt, sizeof(pt), "{\"encryptionType\":2,\"psk\":\"%s\"}", d->secret);
		if (n < 0 || (size_t)n >= sizeof(pt) ||
		    secret_tc_payload(plain, pt, (size_t)n, d->payload, sizeof(d->payload)) < 0)
			made = -1;
		OPENSSL_cleanse(pt, sizeof(pt));
	}
	OPENSSL_cleanse(plain, sizeof(plain));
	if (made < 0 || schema_device_format(&fresh, record, sizeof(record)) < 0 ||
	    (sl = secret_seal(d->t->srv->secret_key, d->field, d->secret, (size_t)made, sealed, sizeof(sealed))) < 0) {
		dynreg_fail(d, 500, "internal error");
		return;
	}
	snprintf(ttl, sizeof(ttl), "%d", SCHEMA_DYNREG_RANDOM_TTL_S);
	const char *argv[] = { "EVAL", lua_dynreg, "4", d->dkey, d->skey, d->ckey, d->rkey, d->field,
		schema_dynreg_names[d->mode], record, (const char *)sealed, ttl };
	size_t lens[] = { 4, strlen(lua_dynreg), 1, strlen(d->dkey), strlen(d->skey), strlen(d->ckey), strlen(d->rkey),
		strlen(d->field), strlen(schema_dynreg_names[d->mode]), strlen(record), (size_t)sl, strlen(ttl) };
	/* Durable: a secret handed out must not be taken back by a failover. */
	if (store_write(d->t->store, dynreg_registered, d, 12, argv, lens) < 0)
		dynreg_fail(d, 503, "service unavailable");
}

/* A random as the device sends it: 1 to SCHEMA_DYNREG_RANDOM_MAX visible ASCII characters. */
static bool dynreg_valid_random(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SCHEMA_DYNREG_RANDOM_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

/* A registration of REQ in KIND's form; NULL (answered 500) when out of memory. */
static struct dynreg_req *dynreg_new(struct server_thread *t, struct http_request *req, enum dynreg_kind kind)
{
	struct dynreg_req *d = calloc(1, sizeof(*d));

	if (d == NULL) {
		bootstrap_fail_req(req, 500, "internal error");
		return NULL;
	}
	d->t = t;
	d->req = req;
	d->kind = kind;
	return d;
}

/* Reads the product and the device: one round trip. */
static void dynreg_start(struct dynreg_req *d)
{
	struct server_thread *t = d->t;
	char pkey[SCHEMA_KEY_MAX];
	uint32_t bucket = schema_bucket(d->pk, d->dn);

	if (schema_product_key(pkey, sizeof(pkey), d->pk) < 0 ||
	    schema_device_field(d->field, sizeof(d->field), d->pk, d->dn) < 0 ||
	    schema_bucket_key(d->dkey, sizeof(d->dkey), 'd', bucket) < 0 ||
	    schema_bucket_key(d->skey, sizeof(d->skey), 's', bucket) < 0 ||
	    schema_counters_key(d->ckey, sizeof(d->ckey), schema_group(bucket)) < 0 ||
	    schema_dynreg_random_key(d->rkey, sizeof(d->rkey), d->pk, d->dn, d->random) < 0) {
		dynreg_fail(d, 460, "parameter too long");
		return;
	}
	const char *pargv[] = { "HMGET", pkey, "hr", "dr", SCHEMA_PRODUCT_SECRET_FIELD };
	const char *dargv[] = { "HGET", d->dkey, d->field };
	const char *const *argvs[] = { pargv, dargv };
	const int argcs[] = { 5, 3 };
	if (store_gather(t->store, t->srv->cfg->redis_timeout_ms, 2, argcs, argvs, dynreg_read, d) < 0)
		dynreg_fail(d, 503, "service unavailable");
}

void dynreg_on_alibaba(struct http_request *req, void *arg)
{
	static const char *const methods[] = { "hmacmd5", "hmacsha1", "hmacsha256" };
	struct server_thread *t = arg;
	const char *ctype = http_header(req, "Content-Type"), *why = NULL;
	const struct form_param *random, *method;
	size_t blen = req->r.body_len;
	struct dynreg_req *d;

	if (bootstrap_rate_limited(t, req))
		return;
	while (blen && (req->r.body[blen - 1] == '\n' || req->r.body[blen - 1] == '\r'))
		blen--;
	if (blen && ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) != 0) {
		bootstrap_fail_req(req, 460, "unsupported content type");
		return;
	}
	if ((d = dynreg_new(t, req, DYNREG_ALIBABA)) == NULL)
		return;
	if (form_parse(&d->form, req->r.query, req->r.query_len, req->r.body, blen, &why) < 0) {
		dynreg_fail(d, 460, why ? why : "bad parameters");
		return;
	}
	random = form_param_find(d->form.params, d->form.nparams, "random");
	method = form_param_find(d->form.params, d->form.nparams, "signMethod");
	if (random == NULL || !dynreg_valid_random(random->value)) {
		dynreg_fail(d, 460, random ? "random: 1 to 64 visible characters" : "missing parameter random");
		return;
	}
	d->random = random->value;
	d->method = "hmacmd5";
	if (method != NULL && method->value[0]) {
		d->method = NULL;
		for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
			if (strcasecmp(method->value, methods[i]) == 0)
				d->method = methods[i];
		if (d->method == NULL) {
			dynreg_fail(d, 460, "signMethod: hmacmd5, hmacsha1 or hmacsha256");
			return;
		}
	}
	if (d->form.sign == NULL) {
		dynreg_fail(d, 401, "signature required");
		return;
	}
	d->pk = d->form.product_key;
	d->dn = d->form.device_name;
	dynreg_start(d);
}

/* POST /register/dev: the Tencent IoT Explorer SDK's JSON (its dynreg.c);
 * its Content-Type says form, the body is JSON. The nonce is its random. */
void dynreg_on_tencent(struct http_request *req, void *arg)
{
	struct server_thread *t = arg;
	struct dynreg_req *d;
	const char *why = NULL;

	if (bootstrap_rate_limited(t, req) || (d = dynreg_new(t, req, DYNREG_TENCENT)) == NULL)
		return;
	if (dynform_tencent_parse(req->r.body, req->r.body_len, &d->tc, &why) < 0) {
		dynreg_fail(d, 460, why);
		return;
	}
	d->pk = d->tc.product_id;
	d->dn = d->tc.device_name;
	d->random = d->tc.nonce;
	dynreg_start(d);
}
