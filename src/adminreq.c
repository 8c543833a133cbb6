#include "adminreq.h"

#include "form.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>

#include "http.h"
#include "config.h"
#include "form.h"
#include "log.h"
#include "server.h"
#include "token.h"

const char adminreq_json[] = "application/json; charset=utf-8";
const char adminreq_csv[] = "text/csv; charset=utf-8";



struct adminreq *adminreq_new(struct server_thread *t, struct http_request *req)
{
	struct adminreq *ar = calloc(1, sizeof(*ar));

	if (ar == NULL)
		return NULL;
	ar->refs = 1;
	ar->t = t;
	ar->req = req;
	return ar;
}

void adminreq_unref(struct adminreq *ar)
{
	if (--ar->refs > 0)
		return;
	if (ar->data_free)
		ar->data_free(ar->data);
	if (ar->out)
		OPENSSL_cleanse(ar->out, ar->outlen); /* may hold device secrets */
	free(ar->out);
	free(ar);
}

void adminreq_send(struct http_request *req, int status, const char *ctype, const char *body, size_t len)
{
	http_send(req, status, ctype, body, len);
}

void adminreq_send_gen(struct http_request *req, int status, yajl_gen g)
{
	const unsigned char *buf;
	size_t len;

	if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
		buf = (const unsigned char *)"{}";
		len = 2;
	}
	adminreq_send(req, status, adminreq_json, (const char *)buf, len);
}

void adminreq_gen_string(yajl_gen g, const char *s)
{
	yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

void adminreq_gen_kv(yajl_gen g, const char *key, const char *value)
{
	adminreq_gen_string(g, key);
	if (value)
		adminreq_gen_string(g, value);
	else
		yajl_gen_null(g);
}

void adminreq_gen_time(yajl_gen g, const char *key, int64_t t)
{
	char buf[32];
	time_t tt = (time_t)t;
	struct tm tm;

	adminreq_gen_string(g, key);
	if (t <= 0 || gmtime_r(&tt, &tm) == NULL) {
		yajl_gen_null(g);
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	adminreq_gen_string(g, buf);
}

void adminreq_error_req(struct http_request *req, int status, const char *code, const char *message)
{
	yajl_gen g = yajl_gen_alloc(NULL);

	if (status == 401)
		http_add_header(req, "WWW-Authenticate", "Bearer");
	yajl_gen_map_open(g);
	adminreq_gen_string(g, "error");
	yajl_gen_map_open(g);
	adminreq_gen_kv(g, "code", code);
	adminreq_gen_kv(g, "message", message);
	adminreq_gen_string(g, "details");
	yajl_gen_array_open(g);
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	adminreq_send_gen(req, status, g);
	yajl_gen_free(g);
}

void adminreq_error(struct adminreq *ar, int status, const char *code, const char *message)
{
	if (ar->answered)
		return;
	ar->answered = true;
	if (status >= 500)
		log_warn("admin", "%s %s: %d %s", ar->req->r.path, code, status, message);
	adminreq_error_req(ar->req, status, code, message);
}

void adminreq_unavailable(struct adminreq *ar)
{
	adminreq_error(ar, 503, "unavailable", "Redis is unreachable; try again");
}

void adminreq_redis_failed(struct adminreq *ar, const redisReply *reply)
{
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL && strncmp(reply->str, "OOM", 3) == 0)
		adminreq_error(ar, 503, "out_of_memory",
			"Redis is out of memory (maxmemory) and refused the write; nothing was changed: free memory or "
			"raise maxmemory, then try again");
	else
		adminreq_unavailable(ar);
}

bool adminreq_valid_account(const char *s)
{
	return schema_valid_account(s);
}

/* The request body as a NUL-terminated copy (caller frees), or NULL. */
char *adminreq_body(struct http_request *req, size_t *len)
{
	size_t n = req->r.body_len;
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	if (n)
		memcpy(s, req->r.body, n);
	s[n] = '\0';
	*len = n;
	return s;
}

bool adminreq_content_type_is(struct http_request *req, const char *type)
{
	const char *ct = http_header(req, "Content-Type");
	size_t n = strlen(type);

	return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

void adminreq_http_error(struct http_request *req, int status, const char *message)
{
	const char *code;

	switch (status) {
	case 404: code = "not_found"; message = "no such path"; break;
	case 405: code = "method_not_allowed"; break;
	case 408: code = "request_timeout"; break;
	case 413: code = "payload_too_large"; break;
	case 431: code = "header_too_large"; break;
	default: code = "bad_request"; break;
	}
	adminreq_error_req(req, status, code, message);
}

struct store *adminreq_store(const struct server_thread *t)
{
	return t->admin_store ? t->admin_store : t->store;
}

int adminreq_write_timeout_ms(const struct server_thread *t)
{
	int ms = t->srv->cfg->redis_timeout_ms * 10;

	return ms < 5000 ? 5000 : ms;
}

void adminreq_answer_gen(struct adminreq *ar, int status, yajl_gen g)
{
	if (!ar->answered) {
		ar->answered = true;
		adminreq_send_gen(ar->req, status, g);
	}
	yajl_gen_free(g);
}

void adminreq_command(struct adminreq *ar, store_reply_fn fn, int argc, const char **argv, bool write)
{
	ar->refs++;
	if ((write ? store_write : store_command)(adminreq_store(ar->t), fn, ar, argc, argv, NULL) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
}

void adminreq_actor(struct server_thread *t, struct http_request *req, char out[TOKEN_NAME_MAX + 1])
{
	int who = token_set_find(t->tokens, http_header(req, "Authorization"));

	if (who < 0 || token_set_name(t->tokens, who, out) < 0)
		snprintf(out, TOKEN_NAME_MAX + 1, "-");
}

void adminreq_gather(struct adminreq *ar, size_t n, const int *argcs, const char *const *const *argvs, store_reply_fn fn)
{
	ar->refs++;
	if (store_gather(adminreq_store(ar->t), ar->t->srv->cfg->redis_timeout_ms, n, argcs, argvs, fn, ar) < 0) {
		ar->refs--;
		adminreq_unavailable(ar);
	}
}

bool adminreq_take_product(struct adminreq *ar, const char *pk)
{
	if (!form_valid_product_key(pk)) {
		adminreq_error(ar, 400, "invalid_product_key", "productKey: 1-32 characters of A-Z a-z 0-9 _ -");
		return false;
	}
	memcpy(ar->pk, pk, strlen(pk) + 1);
	return true;
}
