/* adminreq: an admin API request in flight (reference counted: the handler
 * holds one reference, each pending Redis call another) and the admin API's
 * answers: JSON bodies, {"error":{...}} errors, CSV. */
#ifndef BOOTSTRAPD_ADMINREQ_H
#define BOOTSTRAPD_ADMINREQ_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "http.h"
#include <hiredis/hiredis.h>
#include <yajl/yajl_gen.h>

#include "catalog.h"
#include "metrics.h"
#include "netaddr.h"
#include "route.h"
#include "schema.h"
#include "store.h"
#include "token.h"

struct server_thread;

extern const char adminreq_json[]; /* Content-Type of JSON answers */
extern const char adminreq_csv[];  /* Content-Type of CSV answers */

/* One admin request; each pending Redis call holds a reference. */
struct adminreq {
	int refs;
	bool answered;
	struct server_thread *t;
	struct http_request *req;
	char pk[CATALOG_PRODUCT_KEY_MAX + 1];
	char dn[CATALOG_DEVICE_NAME_MAX + 1];
	struct schema_product product;
	bool product_found;
	bool created; /* PUT made a new product */
	struct schema_device device;
	bool device_found;
	int failed;
	char *out; /* a prepared answer body (CSV); wiped and freed with the request */
	size_t outlen;
	char id[24]; /* a batch id from the path */
	char account[SCHEMA_ACCOUNT_MAX + 1];
	bool explain;          /* GET .../resolve */
	struct netaddr client; /* its ?ip= */
	void *data;  /* handler state, released with data_free */
	void (*data_free)(void *);
};

/* A route of the admin API's /v1 tables: PATTERN (route.h) and METHOD,
 * answered by FN with the captured path segments. */
struct admin_route {
	const char *pattern;
	enum http_method method;
	void (*fn)(struct adminreq *ar, const struct route_args *a);
};

/* NULL when out of memory (the caller answers 500). */
struct adminreq *adminreq_new(struct server_thread *t, struct http_request *req);
void adminreq_unref(struct adminreq *ar);

/* Answers unless already answered (then does nothing). */
void adminreq_error(struct adminreq *ar, int status, const char *code, const char *message);
void adminreq_unavailable(struct adminreq *ar); /* 503: Redis unreachable */
/* 503 for a write that REPLY (NULL, an error, or unexpected) says failed:
 * out_of_memory when Redis refused it at maxmemory, else unavailable. */
void adminreq_redis_failed(struct adminreq *ar, const redisReply *reply);
void adminreq_error_req(struct http_request *req, int status, const char *code, const char *message);
void adminreq_send(struct http_request *req, int status, const char *ctype, const char *body, size_t len);
void adminreq_send_gen(struct http_request *req, int status, yajl_gen g);
/* The admin listener's error shape for refusals the HTTP layer finds and
 * paths no route has (struct http_service's error). */
void adminreq_http_error(struct http_request *req, int status, const char *message);

/* Answers AR with G's JSON (unless already answered) and frees G. */
void adminreq_answer_gen(struct adminreq *ar, int status, yajl_gen g);

void adminreq_gen_string(yajl_gen g, const char *s);
void adminreq_gen_kv(yajl_gen g, const char *key, const char *value); /* VALUE NULL: null */
void adminreq_gen_time(yajl_gen g, const char *key, int64_t t);     /* RFC 3339, 0: null */

/* Large admin writes (registration, a new batch) get this long: ten times
 * redis.timeout_ms, at least 5 s. */
int adminreq_write_timeout_ms(const struct server_thread *t);

/* Sends a command on the admin store (store_write when WRITE) with a
 * reference held for FN; answers 503 when it cannot be sent. */
void adminreq_command(struct adminreq *ar, store_reply_fn fn, int argc, const char **argv, bool write);

/* Who REQ comes from, for the audit log and records: the name of its
 * bearer token (token_set_name), or "-". */
void adminreq_actor(struct server_thread *t, struct http_request *req, char out[TOKEN_NAME_MAX + 1]);

/* The Redis connection for admin work on T. */
struct store *adminreq_store(const struct server_thread *t);

/* Sends N commands together (store_gather) with a reference held for FN,
 * which gets their replies; answers 503 when they cannot be sent. */
void adminreq_gather(struct adminreq *ar, size_t n, const int *argcs, const char *const *const *argvs,
	store_reply_fn fn);
/* The product key of a /v1/products/{productKey} path into AR->pk, or a 400
 * (and false) when it cannot be one. */
bool adminreq_take_product(struct adminreq *ar, const char *pk);

bool adminreq_valid_account(const char *s);
/* The body as a NUL-terminated copy (caller frees), or NULL when out of memory. */
char *adminreq_body(struct http_request *req, size_t *len);
/* True when Content-Type is TYPE, parameters aside. */
bool adminreq_content_type_is(struct http_request *req, const char *type);

#endif
