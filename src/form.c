#include "form.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/http.h>

static const char form_bad_encoding[] = "bad encoding";

static int form_is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int form_is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* evhttp keeps a '%' that does not start an escape as is, and decodes "%00"
 * into a NUL that silently cuts the value short: refuse both up front. */
static int form_raw_ok(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\0')
			return 0;
		if (s[i] != '%')
			continue;
		if (len - i < 3 || !form_is_hex((unsigned char)s[i + 1]) ||
			!form_is_hex((unsigned char)s[i + 2]))
			return 0;
		if (s[i + 1] == '0' && s[i + 2] == '0')
			return 0;
		i += 2;
	}
	return 1;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF) and
 * no C0 control character or DEL. */
static int form_text_ok(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s != '\0') {
		unsigned char c = *s;
		size_t n;
		unsigned int cp, min;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			s++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1fu;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0fu;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07u;
			min = 0x10000;
		} else {
			return 0;
		}
		for (size_t i = 1; i <= n; i++) {
			if ((s[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		s += n + 1;
	}
	return 1;
}

int form_valid_product_key(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len < 1 || len > FORM_PRODUCT_KEY_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!form_is_alnum(c) && c != '_' && c != '-')
			return 0;
	}
	return 1;
}

int form_valid_device_name(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len < FORM_DEVICE_NAME_MIN || len > FORM_DEVICE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!form_is_alnum(c) && strchr("_.@:-", c) == NULL)
			return 0;
	}
	return 1;
}

/* Parses one raw string into a fresh list. Returns 0 or -1 (list left empty). */
static int form_decode(const char *raw, size_t len, struct evkeyvalq *out)
{
	char *copy = NULL;
	int rc = -1;

	TAILQ_INIT(out);
	if (raw == NULL)
		return 0;
	if (!form_raw_ok(raw, len))
		goto out;
	copy = malloc(len + 1);
	if (copy == NULL)
		goto out;
	memcpy(copy, raw, len);
	copy[len] = '\0';
	if (evhttp_parse_query_str(copy, out) != 0)
		goto out;
	rc = 0;
out:
	free(copy);
	return rc;
}

/* The first parameter named NAME (case matters), NULL if none. */
static const char *form_get(const struct form_request *req, const char *name)
{
	const struct evkeyval *kv;

	TAILQ_FOREACH(kv, &req->params, next) {
		if (strcmp(kv->key, name) == 0)
			return kv->value;
	}
	return NULL;
}

/* An optional parameter: NULL when absent or empty. */
static const char *form_get_optional(const struct form_request *req, const char *name)
{
	const char *v = form_get(req, name);

	return v != NULL && v[0] != '\0' ? v : NULL;
}

static int form_parse_signmethod(struct form_request *req, const char **why)
{
	static const char *const methods[] = { "hmacmd5", "hmacsha1", "hmacsha256" };
	const char *v = form_get_optional(req, "signmethod");

	req->signmethod = NULL;
	if (v == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strcasecmp(v, methods[i]) == 0) {
			req->signmethod = methods[i];
			return 0;
		}
	}
	*why = "signmethod unsupported";
	return -1;
}

static int form_parse_resources(struct form_request *req, const char **why)
{
	const char *p = form_get(req, "resources");

	req->nresources = 0;
	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ',');
		const char *next = end != NULL ? end + 1 : NULL;
		char name[FORM_RESOURCE_NAME_MAX + 1];
		size_t len, i, j;

		if (end == NULL)
			end = p + strlen(p);
		while (p < end && *p == ' ')
			p++;
		while (end > p && end[-1] == ' ')
			end--;
		len = (size_t)(end - p);
		if (len > FORM_RESOURCE_NAME_MAX) {
			*why = "resources invalid";
			return -1;
		}
		for (i = 0; i < len; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c >= 'A' && c <= 'Z')
				c = (unsigned char)(c - 'A' + 'a');
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
				*why = "resources invalid";
				return -1;
			}
			name[i] = (char)c;
		}
		name[len] = '\0';
		p = next;
		if (len == 0)
			continue;
		for (j = 0; j < req->nresources; j++) {
			if (strcmp(req->resources[j], name) == 0)
				break;
		}
		if (j < req->nresources)
			continue;
		if (req->nresources == FORM_RESOURCES_MAX) {
			*why = "too many resources";
			return -1;
		}
		memcpy(req->resources[req->nresources++], name, len + 1);
	}
	if (req->nresources == 0) {
		strcpy(req->resources[0], "mqtt");
		req->nresources = 1;
	}
	return 0;
}

static int form_check_text(const char *v, size_t max, const char *too_long, const char **why)
{
	if (v != NULL && strlen(v) > max) {
		*why = too_long;
		return -1;
	}
	return 0;
}

int form_parse(struct form_request *req, const char *query, const char *body, size_t body_len,
	const char **why)
{
	struct evkeyvalq tail;
	struct evkeyval *kv;
	const char *v;

	memset(req, 0, sizeof(*req));
	TAILQ_INIT(&req->params);
	TAILQ_INIT(&tail);
	*why = form_bad_encoding;

	if (body != NULL && body_len > FORM_BODY_MAX) {
		*why = "body too large";
		return -1;
	}
	/* Body parameters first, so that the first occurrence of a name wins. */
	if (form_decode(body, body_len, &req->params) != 0)
		return -1;
	if (form_decode(query, query != NULL ? strlen(query) : 0, &tail) != 0)
		return -1;
	while ((kv = TAILQ_FIRST(&tail)) != NULL) {
		TAILQ_REMOVE(&tail, kv, next);
		TAILQ_INSERT_TAIL(&req->params, kv, next);
	}
	TAILQ_FOREACH(kv, &req->params, next) {
		if (!form_text_ok(kv->value))
			return -1;
	}

	v = form_get(req, "productKey");
	if (v == NULL) {
		*why = "productKey missing";
		return -1;
	}
	if (v[0] == '\0') {
		*why = "productKey empty";
		return -1;
	}
	if (strlen(v) > FORM_PRODUCT_KEY_MAX) {
		*why = "productKey too long";
		return -1;
	}
	if (!form_valid_product_key(v)) {
		*why = "productKey invalid";
		return -1;
	}
	req->product_key = v;

	v = form_get(req, "deviceName");
	if (v == NULL) {
		*why = "deviceName missing";
		return -1;
	}
	if (v[0] == '\0') {
		*why = "deviceName empty";
		return -1;
	}
	if (strlen(v) > FORM_DEVICE_NAME_MAX) {
		*why = "deviceName too long";
		return -1;
	}
	if (strlen(v) < FORM_DEVICE_NAME_MIN) {
		*why = "deviceName too short";
		return -1;
	}
	if (!form_valid_device_name(v)) {
		*why = "deviceName invalid";
		return -1;
	}
	req->device_name = v;

	req->client_id = form_get_optional(req, "clientId");
	if (form_check_text(req->client_id, FORM_CLIENT_ID_MAX, "clientId too long", why) != 0)
		return -1;
	req->version = form_get_optional(req, "version");
	if (form_check_text(req->version, FORM_TEXT_MAX, "version too long", why) != 0)
		return -1;
	req->timestamp = form_get_optional(req, "timestamp");
	if (form_check_text(req->timestamp, FORM_TEXT_MAX, "timestamp too long", why) != 0)
		return -1;

	req->sign = form_get_optional(req, "sign");
	if (form_check_text(req->sign, FORM_SIGN_MAX, "sign too long", why) != 0)
		return -1;
	for (v = req->sign; v != NULL && *v != '\0'; v++) {
		if (!form_is_hex((unsigned char)*v)) {
			*why = "sign invalid";
			return -1;
		}
	}

	if (form_parse_signmethod(req, why) != 0)
		return -1;
	if (form_parse_resources(req, why) != 0)
		return -1;
	*why = NULL;
	return 0;
}

void form_request_clear(struct form_request *req)
{
	if (req == NULL)
		return;
	evhttp_clear_headers(&req->params);
	memset(req, 0, sizeof(*req));
	TAILQ_INIT(&req->params);
}
