#include "adminreq.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

#include "http.h"
#include "config.h"
#include "log.h"
#include "server.h"

const char adminreq_json[] = "application/json; charset=utf-8";
const char adminreq_csv[] = "text/csv; charset=utf-8";



struct adminreq *adminreq_new(struct server_thread *t, struct evhttp_request *req,
	const struct timespec *started, enum metrics_route route)
{
	struct adminreq *ar = calloc(1, sizeof(*ar));

	if (ar == NULL)
		return NULL;
	ar->refs = 1;
	ar->t = t;
	ar->req = req;
	ar->started = *started;
	ar->route = route;
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

void adminreq_send(struct evhttp_request *req, enum metrics_route route,
	const struct timespec *started, int status, const char *ctype, const char *body, size_t len)
{
	http_send(req, route, started, status, ctype, body, len);
}

void adminreq_send_gen(struct evhttp_request *req, enum metrics_route route,
	const struct timespec *started, int status, yajl_gen g)
{
	const unsigned char *buf;
	size_t len;

	if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
		buf = (const unsigned char *)"{}";
		len = 2;
	}
	adminreq_send(req, route, started, status, adminreq_json, (const char *)buf, len);
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

void adminreq_error_req(struct evhttp_request *req, enum metrics_route route,
	const struct timespec *started, int status, const char *code, const char *message)
{
	yajl_gen g = yajl_gen_alloc(NULL);

	if (status == 401)
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
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
	adminreq_send_gen(req, route, started, status, g);
	yajl_gen_free(g);
}

void adminreq_error(struct adminreq *ar, int status, const char *code, const char *message)
{
	if (ar->answered)
		return;
	ar->answered = true;
	if (status >= 500)
		log_warn("admin", "%s %s: %d %s", evhttp_request_get_uri(ar->req), code, status, message);
	adminreq_error_req(ar->req, ar->route, &ar->started, status, code, message);
}

void adminreq_unavailable(struct adminreq *ar)
{
	adminreq_error(ar, 503, "unavailable", "Redis is unreachable; try again");
}

bool adminreq_valid_account(const char *s)
{
	return schema_valid_account(s);
}

/* The request body as a NUL-terminated copy (caller frees), or NULL. */
char *adminreq_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	if (n)
		evbuffer_copyout(in, s, n);
	s[n] = '\0';
	*len = n;
	return s;
}

bool adminreq_content_type_is(struct evhttp_request *req, const char *type)
{
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	size_t n = strlen(type);

	return ct && strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
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
		adminreq_send_gen(ar->req, ar->route, &ar->started, status, g);
	}
	yajl_gen_free(g);
}
