#include "admin_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <yajl/yajl_gen.h>

#include "adminreq.h"
#include "config.h"
#include "csvdoc.h"
#include "form.h"
#include "log.h"
#include "lua.h"
#include "schema.h"
#include "secret.h"
#include "server.h"
#include "store.h"

/* A record "method;count;createdAt;actor" into its parts (pointers into S, modified). */
struct admin_reg_record {
	const char *method, *actor;
	long long count, created;
};

static int admin_reg_parse(char *s, struct admin_reg_record *r)
{
	char *p[4], *save = NULL;
	size_t n = 0;

	for (char *t = strtok_r(s, ";", &save); t && n < 4; t = strtok_r(NULL, ";", &save))
		p[n++] = t;
	if (n != 4)
		return -1;
	r->method = p[0];
	r->count = strtoll(p[1], NULL, 10);
	r->created = strtoll(p[2], NULL, 10);
	r->actor = p[3];
	return 0;
}

/* An id as records have them: digits, or "d" and a day's 8 digits. */
static bool admin_reg_valid_id(const char *id)
{
	size_t n = strlen(id), d = strspn(id + (id[0] == 'd'), "0123456789");

	return n > 0 && n <= 20 && d == n - (id[0] == 'd') && d > 0 && (id[0] != 'd' || d == 8);
}

struct admin_reg_item {
	char id[24];
	struct admin_reg_record r;
};

static int admin_reg_cmp(const void *a, const void *b)
{
	const struct admin_reg_item *x = a, *y = b;

	if (x->r.created != y->r.created)
		return x->r.created > y->r.created ? -1 : 1;
	return strcmp(y->id, x->id);
}

/* The product's existence and its records, gathered. */
static void admin_reg_list_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_reg_item *items = NULL;
	const redisReply *reply;
	size_t n = 0;
	yajl_gen g;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != 2 ||
	    all->element[0]->type != REDIS_REPLY_INTEGER || (reply = all->element[1])->type != REDIS_REPLY_ARRAY) {
		adminreq_unavailable(ar);
		goto out;
	}
	if (all->element[0]->integer != 1) {
		adminreq_error(ar, 404, "product_not_found", "no such product");
		goto out;
	}
	items = calloc(reply->elements / 2 + 1, sizeof(*items));
	if (items == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		const redisReply *f = reply->element[i], *v = reply->element[i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || strcmp(f->str, "#") == 0 ||
		    f->len >= sizeof(items[n].id))
			continue;
		memcpy(items[n].id, f->str, f->len + 1);
		if (admin_reg_parse(v->str, &items[n].r) == 0)
			n++;
	}
	qsort(items, n, sizeof(*items), admin_reg_cmp);
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "registrations");
	yajl_gen_array_open(g);
	for (size_t i = 0; i < n; i++) {
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "id", items[i].id);
		adminreq_gen_kv(g, "method", items[i].r.method);
		adminreq_gen_string(g, "count");
		yajl_gen_integer(g, items[i].r.count);
		adminreq_gen_time(g, "createdAt", items[i].r.created);
		adminreq_gen_kv(g, "actor", items[i].r.actor);
		yajl_gen_map_close(g);
	}
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	free(items);
	adminreq_unref(ar);
}

/* --- the download: the record, its names, their secrets --- */

struct admin_reg_csv {
	char id[24];
	char **names;
	size_t n;
	char (*keys)[SCHEMA_KEY_MAX];
	char (*fields)[SCHEMA_FIELD_MAX];
};

static void admin_reg_csv_free(void *p)
{
	struct admin_reg_csv *c = p;

	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->names[i]);
	free(c->names);
	free(c->keys);
	free(c->fields);
	free(c);
}

static void admin_reg_secrets_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_reg_csv *c = ar->data;
	size_t cap = 64 + c->n * (CATALOG_PRODUCT_KEY_MAX + CATALOG_DEVICE_NAME_MAX + 2 * SECRET_PLAIN_MAX + 12), off;
	char plain[SECRET_PLAIN_MAX + 1];

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != c->n) {
		adminreq_unavailable(ar);
		goto out;
	}
	if ((ar->out = malloc(cap)) == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	off = (size_t)snprintf(ar->out, cap, "productKey,deviceName,deviceSecret\r\n");
	for (size_t i = 0; i < c->n; i++) {
		const redisReply *e = all->element[i];
		plain[0] = '\0';
		if (e->type == REDIS_REPLY_STRING &&
		    secret_open(ar->t->srv->secret_key, c->fields[i], (const unsigned char *)e->str, e->len, plain,
			    sizeof(plain)) < 0) {
			log_error("admin", "%s: its sealed secret does not open with this service key", c->fields[i]);
			plain[0] = '\0';
		}
		/* Exact, for the factory's tools: names are validated, and a secret is
		 * the secret, whatever character it starts with (docs/api.md). */
		if (csvdoc_write_field(ar->out, cap, &off, ar->pk) < 0 || off + 1 >= cap)
			goto toolong;
		ar->out[off++] = ',';
		if (csvdoc_write_field(ar->out, cap, &off, c->names[i]) < 0 || off + 1 >= cap)
			goto toolong;
		ar->out[off++] = ',';
		if (csvdoc_write_field(ar->out, cap, &off, plain) < 0 || off + 2 >= cap)
			goto toolong;
		ar->out[off++] = '\r';
		ar->out[off++] = '\n';
	}
	OPENSSL_cleanse(plain, sizeof(plain));
	ar->outlen = off;
	ar->answered = true;
	http_add_header(ar->req, "Cache-Control", "no-store");
	adminreq_send(ar->req, 200, adminreq_csv, ar->out, ar->outlen);
	goto out;
toolong:
	OPENSSL_cleanse(plain, sizeof(plain));
	adminreq_error(ar, 500, "internal", "the file did not fit");
out:
	adminreq_unref(ar);
}

/* The names (one a line, or a list) into C->names, each once. */
static int admin_reg_take_names(struct admin_reg_csv *c, const redisReply *r)
{
	size_t cap = 16;

	if ((c->names = calloc(cap, sizeof(*c->names))) == NULL)
		return -1;
	for (size_t k = 0; r->type == REDIS_REPLY_ARRAY ? k < r->elements : k < 1; k++) {
		const redisReply *e = r->type == REDIS_REPLY_ARRAY ? r->element[k] : r;
		char *copy, *save = NULL;
		if (e->type != REDIS_REPLY_STRING)
			continue;
		if ((copy = strndup(e->str, e->len)) == NULL)
			return -1;
		for (char *t = strtok_r(copy, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
			bool seen = false;
			if (!form_valid_device_name(t))
				continue;
			for (size_t i = 0; i < c->n && !seen; i++)
				seen = strcmp(c->names[i], t) == 0;
			if (seen)
				continue;
			if (c->n == cap) {
				char **more = realloc(c->names, 2 * cap * sizeof(*more));
				if (more == NULL) {
					free(copy);
					return -1;
				}
				c->names = more;
				cap *= 2;
			}
			if ((c->names[c->n] = strdup(t)) == NULL) {
				free(copy);
				return -1;
			}
			c->n++;
		}
		free(copy);
	}
	return 0;
}

static void admin_reg_names_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_reg_csv *c = ar->data;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != 2) {
		adminreq_unavailable(ar);
		goto out;
	}
	if (all->element[0]->type != REDIS_REPLY_STRING) {
		adminreq_error(ar, 404, "registration_not_found", "no such registration of this product");
		goto out;
	}
	if (admin_reg_take_names(c, all->element[1]) < 0 ||
	    (c->n > 0 && ((c->keys = calloc(c->n, sizeof(*c->keys))) == NULL ||
			  (c->fields = calloc(c->n, sizeof(*c->fields))) == NULL))) {
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	if (c->n == 0) {
		ar->answered = true;
		adminreq_send(ar->req, 200, adminreq_csv, "productKey,deviceName,deviceSecret\r\n", 36);
		goto out;
	}
	const char *(*argvs)[3] = calloc(c->n, sizeof(*argvs));
	const char *const **pargvs = calloc(c->n, sizeof(*pargvs));
	int *argcs = calloc(c->n, sizeof(*argcs));
	if (argvs == NULL || pargvs == NULL || argcs == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
	} else {
		for (size_t i = 0; i < c->n; i++) {
			if (schema_secret_key(c->keys[i], sizeof(c->keys[i]), ar->pk, c->names[i]) < 0 ||
			    schema_device_field(c->fields[i], sizeof(c->fields[i]), ar->pk, c->names[i]) < 0)
				c->keys[i][0] = c->fields[i][0] = '\0';
			argvs[i][0] = "HGET";
			argvs[i][1] = c->keys[i];
			argvs[i][2] = c->fields[i];
			pargvs[i] = argvs[i];
			argcs[i] = 3;
		}
		ar->refs++;
		if (store_gather(adminreq_store(ar->t), adminreq_write_timeout_ms(ar->t), c->n, argcs, pargvs,
			    admin_reg_secrets_reply, ar) < 0) {
			ar->refs--;
			adminreq_unavailable(ar);
		}
	}
	free(argvs);
	free(pargvs);
	free(argcs);
out:
	adminreq_unref(ar);
}

static void admin_reg_download(struct adminreq *ar, const char *file)
{
	struct admin_reg_csv *c = calloc(1, sizeof(*c));
	char mkey[SCHEMA_KEY_MAX + 16], nkey[SCHEMA_KEY_MAX + 16];
	size_t l = strlen(file);

	if (c == NULL) {
		adminreq_error(ar, 500, "internal", "out of memory");
		return;
	}
	ar->data = c;
	ar->data_free = admin_reg_csv_free;
	if (l < 5 || strcmp(file + l - 4, ".csv") != 0 || l - 4 >= sizeof(c->id)) {
		adminreq_error(ar, 404, "registration_not_found", "no such registration of this product");
		return;
	}
	memcpy(c->id, file, l - 4);
	c->id[l - 4] = '\0';
	if (!admin_reg_valid_id(c->id)) {
		adminreq_error(ar, 404, "registration_not_found", "no such registration of this product");
		return;
	}
	if (schema_registrations_key(mkey, sizeof(mkey), ar->pk, 'm', 0) < 0) {
		adminreq_error(ar, 500, "internal", "bad key");
		return;
	}
	if (c->id[0] == 'd') {
		/* A day's dynamic registrations: the day's list (its key from the id). */
		struct tm tm = { 0 };
		if (strptime(c->id + 1, "%Y%m%d", &tm) == NULL ||
		    schema_registrations_key(nkey, sizeof(nkey), ar->pk, 'd', (int64_t)timegm(&tm)) < 0) {
			adminreq_error(ar, 404, "registration_not_found", "no such registration of this product");
			return;
		}
	} else if (schema_registrations_key(nkey, sizeof(nkey), ar->pk, 'n', 0) < 0) {
		adminreq_error(ar, 500, "internal", "bad key");
		return;
	}
	const char *meta[] = { "HGET", mkey, c->id };
	const char *list[] = { "LRANGE", nkey, "0", "-1" }, *one[] = { "HGET", nkey, c->id };
	const char *const *argvs[] = { meta, c->id[0] == 'd' ? list : one };
	const int argcs[] = { 3, c->id[0] == 'd' ? 4 : 3 };
	adminreq_gather(ar, 2, argcs, argvs, admin_reg_names_reply);
}

static void admin_reg_list(struct adminreq *ar, const struct route_args *a)
{
	char key[SCHEMA_KEY_MAX], mkey[SCHEMA_KEY_MAX + 16];

	if (!adminreq_take_product(ar, a->v[0]))
		return;
	if (schema_product_key(key, sizeof(key), ar->pk) < 0 ||
	    schema_registrations_key(mkey, sizeof(mkey), ar->pk, 'm', 0) < 0) {
		adminreq_error(ar, 500, "internal", "bad key");
		return;
	}
	const char *exists[] = { "EXISTS", key }, *records[] = { "HGETALL", mkey };
	const char *const *argvs[] = { exists, records };
	const int argcs[] = { 2, 2 };
	adminreq_gather(ar, 2, argcs, argvs, admin_reg_list_reply);
}

static void admin_reg_download_route(struct adminreq *ar, const struct route_args *a)
{
	char file[40];

	if (strlen(a->v[1]) >= sizeof(file)) {
		adminreq_error(ar, 404, "not_found", "no such path");
		return;
	}
	if (!adminreq_take_product(ar, a->v[0]))
		return;
	memcpy(file, a->v[1], strlen(a->v[1]) + 1); /* checked: shorter than file */
	admin_reg_download(ar, file);
}

const struct admin_route admin_reg_routes[] = {
	{ "/v1/products/{productKey}/registrations", HTTP_GET, admin_reg_list },
	{ "/v1/products/{productKey}/registrations/{file}", HTTP_GET, admin_reg_download_route },
};
const size_t admin_reg_nroutes = sizeof(admin_reg_routes) / sizeof(admin_reg_routes[0]);

static void admin_reg_dynamic_reply(redisReply *reply, void *arg)
{
	(void)arg;
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_warn("admin", "a dynamic registration's record was not kept (%s)", reply ? reply->str : "no answer");
}

void admin_reg_dynamic(struct store *st, const char *pk, const char *dn)
{
	char mkey[SCHEMA_KEY_MAX + 16], nkey[SCHEMA_KEY_MAX + 16], dkey[SCHEMA_KEY_MAX + 16], id[16], now[24];
	time_t t = time(NULL);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(id, sizeof(id), "d%Y%m%d", &tm) != 9 ||
	    schema_registrations_key(mkey, sizeof(mkey), pk, 'm', 0) < 0 ||
	    schema_registrations_key(nkey, sizeof(nkey), pk, 'n', 0) < 0 ||
	    schema_registrations_key(dkey, sizeof(dkey), pk, 'd', (int64_t)t) < 0)
		return;
	snprintf(now, sizeof(now), "%lld", (long long)t);
	const char *argv[] = { "EVAL", lua_registration, "3", mkey, nkey, dkey, "dynamic", "1", now, "device", id, dn };
	if (store_write(st, admin_reg_dynamic_reply, NULL, 12, argv, NULL) < 0)
		log_warn("admin", "%s/%s: a dynamic registration's record was not kept (Redis unreachable)", pk, dn);
}
