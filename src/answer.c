#include "answer.h"

#include <limits.h>
#include <string.h>
#include <yajl/yajl_gen.h>

static int answer_key(yajl_gen g, const char *s)
{
	return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_status_ok ? 0 : -1;
}

static int answer_str(yajl_gen g, const char *key, const char *value)
{
	if (value == NULL || answer_key(g, key) != 0)
		return -1;
	return answer_key(g, value);
}

static int answer_int(yajl_gen g, const char *key, long long value)
{
	if (answer_key(g, key) != 0)
		return -1;
	return yajl_gen_integer(g, value) == yajl_gen_status_ok ? 0 : -1;
}

static yajl_gen answer_gen_new(void)
{
	yajl_gen g = yajl_gen_alloc(NULL);

	if (g == NULL)
		return NULL;
	/* Compact output; '/' stays unescaped (yajl_gen_escape_solidus off). */
	if (!yajl_gen_config(g, yajl_gen_beautify, 0) ||
		!yajl_gen_config(g, yajl_gen_validate_utf8, 1)) {
		yajl_gen_free(g);
		return NULL;
	}
	return g;
}

/* Copies the finished document into BUF with a NUL; -1 if it does not fit. */
static int answer_copy(yajl_gen g, char *buf, size_t len)
{
	const unsigned char *out;
	size_t olen;

	if (yajl_gen_get_buf(g, &out, &olen) != yajl_gen_status_ok)
		return -1;
	if (olen >= len || olen > INT_MAX)
		return -1;
	memcpy(buf, out, olen);
	buf[olen] = '\0';
	return (int)olen;
}

static int answer_resource(yajl_gen g, const struct answer_resource *r)
{
	if (r->port < 0 || r->port > 65535)
		return -1;
	if (answer_key(g, r->protocol) != 0 || yajl_gen_map_open(g) != yajl_gen_status_ok)
		return -1;
	if (answer_str(g, "host", r->host) != 0 || answer_int(g, "port", r->port) != 0)
		return -1;
	if (r->ip != NULL && answer_str(g, "ip", r->ip) != 0)
		return -1;
	return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}

int answer_success(char *buf, size_t len, const struct answer_resource *res, size_t n)
{
	yajl_gen g;
	int rc = -1;

	if (buf == NULL || (res == NULL && n > 0))
		return -1;
	g = answer_gen_new();
	if (g == NULL)
		return -1;
	if (yajl_gen_map_open(g) != yajl_gen_status_ok || answer_int(g, "code", 200) != 0)
		goto out;
	if (answer_key(g, "data") != 0 || yajl_gen_map_open(g) != yajl_gen_status_ok)
		goto out;
	if (answer_key(g, "resources") != 0 || yajl_gen_map_open(g) != yajl_gen_status_ok)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (res[i].protocol == NULL || answer_resource(g, &res[i]) != 0)
			goto out;
	}
	if (yajl_gen_map_close(g) != yajl_gen_status_ok || yajl_gen_map_close(g) != yajl_gen_status_ok)
		goto out;
	if (answer_str(g, "message", "success") != 0 || yajl_gen_map_close(g) != yajl_gen_status_ok)
		goto out;
	rc = answer_copy(g, buf, len);
out:
	yajl_gen_free(g);
	return rc;
}

int answer_error(char *buf, size_t len, int code, const char *message)
{
	yajl_gen g;
	int rc = -1;

	if (buf == NULL || message == NULL)
		return -1;
	g = answer_gen_new();
	if (g == NULL)
		return -1;
	if (yajl_gen_map_open(g) != yajl_gen_status_ok || answer_int(g, "code", code) != 0)
		goto out;
	if (answer_str(g, "message", message) != 0 || yajl_gen_map_close(g) != yajl_gen_status_ok)
		goto out;
	rc = answer_copy(g, buf, len);
out:
	yajl_gen_free(g);
	return rc;
}
