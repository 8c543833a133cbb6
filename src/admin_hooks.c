#include "admin_hooks.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "adminreq.h"
#include "config.h"
#include "hooks.h"
#include "jsonstrict.h"
#include "lua.h"
#include "schema.h"
#include "secret.h"
#include "server.h"
#include "store.h"

#define ADMIN_HOOKS_US '\x1f'

/* A subscription record "url US events US sealed-hex US createdAt", split (in place). */
struct admin_hooks_sub {
	char *url, *events;
	long long created;
};

static int admin_hooks_split(char *rec, struct admin_hooks_sub *s)
{
	char *f[4];
	size_t n = 0;

	f[n++] = rec;
	for (char *p = rec; *p && n < 4; p++)
		if (*p == ADMIN_HOOKS_US) {
			*p = '\0';
			f[n++] = p + 1;
		}
	if (n != 4)
		return -1;
	s->url = f[0];
	s->events = f[1];
	s->created = strtoll(f[3], NULL, 10);
	return 0;
}

static void admin_hooks_gen_events(yajl_gen g, const char *events)
{
	adminreq_gen_string(g, "events");
	yajl_gen_array_open(g);
	for (const char *p = events; *p;) {
		size_t l = strcspn(p, ",");
		yajl_gen_string(g, (const unsigned char *)p, l);
		p += l + (p[l] == ',');
	}
	yajl_gen_array_close(g);
}

/* The subscription's state hash (its fields, or an empty array) into G. */
static void admin_hooks_gen_state(yajl_gen g, const redisReply *st)
{
	static const char *const fields[] = { "state", "lastError", "lastAttemptAt", "lastDeliveredAt", "delivered" };

	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		const char *v = NULL;
		for (size_t i = 0; st && st->type == REDIS_REPLY_ARRAY && i + 1 < st->elements; i += 2)
			if (st->element[i]->type == REDIS_REPLY_STRING && strcmp(st->element[i]->str, fields[k]) == 0 &&
			    st->element[i + 1]->type == REDIS_REPLY_STRING)
				v = st->element[i + 1]->str;
		if (k == 2 || k == 3) {
			adminreq_gen_time(g, fields[k], v ? strtoll(v, NULL, 10) : 0);
		} else if (k == 4) {
			adminreq_gen_string(g, fields[k]);
			yajl_gen_integer(g, v ? strtoll(v, NULL, 10) : 0);
		} else {
			adminreq_gen_kv(g, fields[k], v && v[0] ? v : (k == 0 ? "active" : NULL));
		}
	}
}

/* One subscription into G; with its STATE (GET /v1/subscriptions/{id}), or
 * without (the list: its state is not read there). */
static void admin_hooks_gen(yajl_gen g, const char *id, char *rec, const redisReply *state)
{
	struct admin_hooks_sub s;

	if (admin_hooks_split(rec, &s) < 0)
		return;
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "id", id);
	adminreq_gen_kv(g, "url", s.url);
	admin_hooks_gen_events(g, s.events);
	adminreq_gen_time(g, "createdAt", s.created);
	if (state != NULL)
		admin_hooks_gen_state(g, state);
}

/* --- POST --- */

struct admin_hooks_new {
	char url[HOOKS_URL_MAX + 1];
	char events[96];
	char secret[HOOKS_SECRET_MAX + 1];
	char id[24];
	char rec[HOOKS_URL_MAX + 96 + 2 * (HOOKS_SECRET_MAX + SECRET_SEALED_OVERHEAD) + 32];
	char now[24];
};

static void admin_hooks_new_free(void *p)
{
	if (p)
		OPENSSL_cleanse(p, sizeof(struct admin_hooks_new));
	free(p);
}

static void admin_hooks_added(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_hooks_new *n = ar->data;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (!ar->answered) {
		hooks_subscriptions_changed();
		yajl_gen g = yajl_gen_alloc(NULL);
		yajl_gen_map_open(g);
		adminreq_gen_kv(g, "id", n->id);
		adminreq_gen_kv(g, "url", n->url);
		admin_hooks_gen_events(g, n->events);
		adminreq_gen_kv(g, "state", "active");
		adminreq_gen_time(g, "createdAt", strtoll(n->now, NULL, 10));
		yajl_gen_map_close(g);
		adminreq_answer_gen(ar, 201, g);
	}
	adminreq_unref(ar);
}

static void admin_hooks_numbered(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	struct admin_hooks_new *n = ar->data;
	unsigned char sealed[HOOKS_SECRET_MAX + SECRET_SEALED_OVERHEAD];
	char aad[40], skey[48];
	int sl;
	size_t off;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	snprintf(n->id, sizeof(n->id), "%lld", reply->integer);
	snprintf(aad, sizeof(aad), "subscription/%s", n->id);
	sl = secret_seal(ar->t->srv->secret_key, aad, n->secret, strlen(n->secret), sealed, sizeof(sealed));
	if (sl < 0 || schema_sub_state_key(skey, sizeof(skey), (uint64_t)reply->integer) < 0) {
		adminreq_error(ar, 500, "internal", "cannot seal the secret");
		goto out;
	}
	off = (size_t)snprintf(n->rec, sizeof(n->rec), "%s%c%s%c", n->url, ADMIN_HOOKS_US, n->events, ADMIN_HOOKS_US);
	for (int i = 0; i < sl && off + 3 < sizeof(n->rec); i++)
		off += (size_t)snprintf(n->rec + off, sizeof(n->rec) - off, "%02x", sealed[i]);
	snprintf(n->rec + off, sizeof(n->rec) - off, "%c%s", ADMIN_HOOKS_US, n->now);
	OPENSSL_cleanse(sealed, sizeof(sealed));
	const char *argv[] = { "EVAL", lua_subscribe, "3", SCHEMA_SUBS_KEY, SCHEMA_EVENTS_KEY, skey, "add", n->id, n->rec,
		n->now };
	adminreq_command(ar, admin_hooks_added, 10, argv, true);
out:
	adminreq_unref(ar);
}

static void admin_hooks_post(struct adminreq *ar, const struct route_args *a)
{
	const char *pu[] = { "url", NULL }, *pe[] = { "events", NULL }, *ps[] = { "secret", NULL };
	struct admin_hooks_new *n = calloc(1, sizeof(*n));
	struct jsonstrict_error e;
	size_t len;
	char *body = adminreq_body(ar->req, &len);
	yajl_val root = NULL, u, ev, sec;
	unsigned mask = 0;

	(void)a;
	if (n == NULL || body == NULL) {
		free(n);
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	ar->data = n;
	ar->data_free = admin_hooks_new_free;
	if ((root = jsonstrict_parse(body, len, 4, &e)) == NULL || !YAJL_IS_OBJECT(root)) {
		adminreq_error(ar, 400, "invalid_json", "body must be a JSON object {\"url\",\"events\",\"secret\"}");
		goto out;
	}
	for (size_t i = 0; i < root->u.object.len; i++) {
		const char *k = root->u.object.keys[i];
		if (strcmp(k, "url") != 0 && strcmp(k, "events") != 0 && strcmp(k, "secret") != 0) {
			adminreq_error(ar, 400, "invalid_field", "unknown field; known: url, events, secret");
			goto out;
		}
	}
	u = yajl_tree_get(root, pu, yajl_t_string);
	ev = yajl_tree_get(root, pe, yajl_t_array);
	sec = yajl_tree_get(root, ps, yajl_t_string);
	const char *url = u ? YAJL_GET_STRING(u) : NULL, *secret = sec ? YAJL_GET_STRING(sec) : NULL;
	if (url == NULL || strlen(url) > HOOKS_URL_MAX ||
	    (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) || strpbrk(url, " \t\r\n\"") != NULL ||
	    strlen(url) <= (url[4] == 's' ? 8u : 7u)) {
		adminreq_error(ar, 400, "invalid_field", "url: an http:// or https:// URL of at most 512 characters");
		goto out;
	}
	if (secret == NULL || strlen(secret) < HOOKS_SECRET_MIN || strlen(secret) > HOOKS_SECRET_MAX) {
		adminreq_error(ar, 400, "invalid_field", "secret: 16 to 128 characters");
		goto out;
	}
	for (size_t i = 0; secret[i]; i++)
		if (secret[i] < ' ' || secret[i] > '~') {
			adminreq_error(ar, 400, "invalid_field", "secret: printable ASCII");
			goto out;
		}
	for (size_t i = 0; ev && i < ev->u.array.len; i++) {
		yajl_val x = ev->u.array.values[i];
		const char *name = YAJL_IS_STRING(x) ? x->u.string : NULL;
		unsigned bit = name ? hooks_event_bit(name, strlen(name)) : 0;
		if (bit == 0) {
			adminreq_error(ar, 400, "invalid_field",
				"events: batch.completed, device.distributed, device.activated, device.registered");
			goto out;
		}
		mask |= bit;
	}
	if (mask == 0) {
		adminreq_error(ar, 400, "invalid_field", "events: at least one");
		goto out;
	}
	snprintf(n->url, sizeof(n->url), "%s", url);
	snprintf(n->secret, sizeof(n->secret), "%s", secret);
	for (unsigned i = 0, off = 0; i < HOOKS_NEVENTS; i++)
		if (mask & (1u << i))
			off += (unsigned)snprintf(n->events + off, sizeof(n->events) - off, "%s%s", off ? "," : "",
				hooks_event_names[i]);
	snprintf(n->now, sizeof(n->now), "%lld", (long long)time(NULL));
	const char *argv[] = { "INCR", SCHEMA_SUBS_SEQ_KEY };
	adminreq_command(ar, admin_hooks_numbered, 2, argv, true);
out:
	yajl_tree_free(root);
	if (body)
		OPENSSL_cleanse(body, len);
	free(body);
}

/* --- GET, DELETE --- */

/* One subscription: its record, its state, the events stream's groups. */
static void admin_hooks_one_reply(redisReply *all, void *arg)
{
	struct adminreq *ar = arg;
	long long backlog = -1;

	if (all == NULL || all->type != REDIS_REPLY_ARRAY || all->elements != 3) {
		adminreq_unavailable(ar);
		goto out;
	}
	if (all->element[0]->type != REDIS_REPLY_STRING) {
		adminreq_error(ar, 404, "subscription_not_found", "no such subscription");
		goto out;
	}
	/* {pending, unread} of its group (hooks_backlog.lua). */
	if (all->element[2]->type == REDIS_REPLY_ARRAY && all->element[2]->elements == 2 &&
	    all->element[2]->element[0]->type == REDIS_REPLY_INTEGER &&
	    all->element[2]->element[1]->type == REDIS_REPLY_INTEGER)
		backlog = all->element[2]->element[0]->integer + all->element[2]->element[1]->integer;
	yajl_gen g = yajl_gen_alloc(NULL);
	char *rec = strdup(all->element[0]->str);
	if (rec == NULL) {
		yajl_gen_free(g);
		adminreq_error(ar, 500, "internal", "out of memory");
		goto out;
	}
	admin_hooks_gen(g, ar->id, rec, all->element[1]);
	adminreq_gen_string(g, "backlog");
	if (backlog >= 0)
		yajl_gen_integer(g, backlog);
	else
		yajl_gen_null(g);
	yajl_gen_map_close(g);
	free(rec);
	adminreq_answer_gen(ar, 200, g);
out:
	adminreq_unref(ar);
}

static void admin_hooks_list_reply(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	yajl_gen g;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
		adminreq_redis_failed(ar, reply);
		goto out;
	}
	g = yajl_gen_alloc(NULL);
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "subscriptions");
	yajl_gen_array_open(g);
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		char *rec;
		if (reply->element[i]->type != REDIS_REPLY_STRING || reply->element[i + 1]->type != REDIS_REPLY_STRING ||
		    (rec = strdup(reply->element[i + 1]->str)) == NULL)
			continue;
		admin_hooks_gen(g, reply->element[i]->str, rec, NULL);
		yajl_gen_map_close(g);
		free(rec);
	}
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	adminreq_answer_gen(ar, 200, g);
out:
	adminreq_unref(ar);
}

static void admin_hooks_deleted(redisReply *reply, void *arg)
{
	struct adminreq *ar = arg;
	char body[64];
	int n;

	if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
		adminreq_redis_failed(ar, reply);
	} else if (reply->integer == 0) {
		adminreq_error(ar, 404, "subscription_not_found", "no such subscription");
	} else if (!ar->answered) {
		hooks_subscriptions_changed();
		n = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"deleted\":true}", ar->id);
		ar->answered = true;
		adminreq_send(ar->req, 200, adminreq_json, body, (size_t)n);
	}
	adminreq_unref(ar);
}

static void admin_hooks_list(struct adminreq *ar, const struct route_args *a)
{
	const char *argv[] = { "HGETALL", SCHEMA_SUBS_KEY };

	(void)a;
	adminreq_command(ar, admin_hooks_list_reply, 2, argv, false);
}

/* The subscription of a /v1/subscriptions/{id} path into AR, with its state
 * key; a 404 for an id that cannot be one. */
static bool admin_hooks_take(struct adminreq *ar, const char *id, char skey[48])
{
	uint64_t n;

	if (strlen(id) >= sizeof(ar->id) || schema_parse_u64(id, strlen(id), &n) < 0 ||
	    schema_sub_state_key(skey, 48, n) < 0) {
		adminreq_error(ar, 404, "subscription_not_found", "no such subscription");
		return false;
	}
	memcpy(ar->id, id, strlen(id) + 1);
	return true;
}

static void admin_hooks_get(struct adminreq *ar, const struct route_args *a)
{
	char skey[48], group[32];

	if (!admin_hooks_take(ar, a->v[0], skey))
		return;
	snprintf(group, sizeof(group), "s%s", ar->id);
	const char *rec[] = { "HGET", SCHEMA_SUBS_KEY, ar->id }, *st[] = { "HGETALL", skey },
		   *backlog[] = { "EVAL", lua_hooks_backlog, "1", SCHEMA_EVENTS_KEY, group };
	const char *const *argvs[] = { rec, st, backlog };
	const int argcs[] = { 3, 2, 5 };
	adminreq_gather(ar, 3, argcs, argvs, admin_hooks_one_reply);
}

static void admin_hooks_delete(struct adminreq *ar, const struct route_args *a)
{
	char skey[48];

	if (!admin_hooks_take(ar, a->v[0], skey))
		return;
	const char *argv[] = { "EVAL", lua_subscribe, "3", SCHEMA_SUBS_KEY, SCHEMA_EVENTS_KEY, skey, "del", ar->id };
	adminreq_command(ar, admin_hooks_deleted, 8, argv, true);
}

const struct admin_route admin_hooks_routes[] = {
	{ "/v1/subscriptions", HTTP_GET, admin_hooks_list },
	{ "/v1/subscriptions", HTTP_POST, admin_hooks_post },
	{ "/v1/subscriptions/{id}", HTTP_GET, admin_hooks_get },
	{ "/v1/subscriptions/{id}", HTTP_DELETE, admin_hooks_delete },
};
const size_t admin_hooks_nroutes = sizeof(admin_hooks_routes) / sizeof(admin_hooks_routes[0]);
