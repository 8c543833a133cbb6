#include "form.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uriparser/Uri.h>

static const char form_bad_encoding[] = "bad encoding";

static int form_is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int form_is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* liburiparser keeps a '%' that does not start an escape as is, and decodes
 * "%00" into a NUL that silently cuts the value short: refuse both up front,
 * and raw NULs with them. */
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

/* One pair in place: [P, END) holds name=value. The value moves one byte
 * left, over the '=', so that its NUL fits inside [P, END) even for the last
 * pair of a buffer; the name stays where it was. */
static int form_pair(char *p, char *end, struct form_param *out)
{
	char *eq = memchr(p, '=', (size_t)(end - p));
	size_t raw;

	if (eq == NULL || eq == p)
		return -1;
	raw = (size_t)(end - eq - 1);
	memmove(eq, eq + 1, raw);
	eq[raw] = '\0';
	out->name = p;
	out->name_len = (size_t)(eq - p);
	out->value = eq;
	out->value_len = (size_t)(uriUnescapeInPlaceExA(eq, URI_TRUE, URI_BR_DONT_TOUCH) - eq);
	return 0;
}

int form_query_parse(char *buf, size_t len, struct form_param *out, size_t max, size_t *n,
	const char **why)
{
	char *p = buf, *end;

	*n = 0;
	if (len == 0)
		return 0;
	end = buf + len;
	if (!form_raw_ok(buf, len)) {
		*why = form_bad_encoding;
		return -1;
	}
	while (p < end) {
		char *amp = memchr(p, '&', (size_t)(end - p));

		if (*n == max) {
			*why = "too many parameters";
			return -1;
		}
		if (form_pair(p, amp != NULL ? amp : end, &out[*n]) != 0) {
			*why = form_bad_encoding;
			return -1;
		}
		(*n)++;
		p = amp != NULL ? amp + 1 : end;
	}
	return 0;
}

static int form_name_is(const struct form_param *p, const char *name)
{
	return strlen(name) == p->name_len && memcmp(p->name, name, p->name_len) == 0;
}

const struct form_param *form_param_find(const struct form_param *params, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (form_name_is(&params[i], name))
			return &params[i];
	}
	return NULL;
}

/* The first parameter named NAME (case matters), NULL if none. */
static const char *form_get(const struct form_request *req, const char *name)
{
	const struct form_param *p = form_param_find(req->params, req->nparams, name);

	return p != NULL ? p->value : NULL;
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

int form_parse(struct form_request *req, char *query, size_t query_len, char *body, size_t body_len,
	const char **why)
{
	size_t n;
	const char *v;

	memset(req, 0, sizeof(*req));
	if (body != NULL && body_len > FORM_BODY_MAX) {
		*why = "body too large";
		return -1;
	}
	/* Body parameters first, so that the first occurrence of a name wins. */
	if (form_query_parse(body, body != NULL ? body_len : 0, req->params, FORM_PARAMS_MAX, &n, why) != 0)
		return -1;
	req->nparams = n;
	if (form_query_parse(query, query != NULL ? query_len : 0, req->params + req->nparams,
		FORM_PARAMS_MAX - req->nparams, &n, why) != 0)
		return -1;
	req->nparams += n;
	*why = form_bad_encoding;
	for (size_t i = 0; i < req->nparams; i++) {
		if (!form_text_ok(req->params[i].value))
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
	if (req != NULL)
		memset(req, 0, sizeof(*req));
}

/* By name, bytewise; equal names keep their request order (both point into
 * the same params array), so the first occurrence comes first. */
static int form_cmp_param(const void *a, const void *b)
{
	const struct form_param *x = *(const struct form_param *const *)a;
	const struct form_param *y = *(const struct form_param *const *)b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);

	if (c != 0)
		return c;
	if (x->name_len != y->name_len)
		return x->name_len < y->name_len ? -1 : 1;
	return x < y ? -1 : x > y;
}

int form_sign_content(const struct form_request *req, const char *const *skip, size_t nskip, char *out,
	size_t cap, size_t *len)
{
	/* At most FORM_PARAMS_MAX pointers: glibc's qsort sorts so few on the stack. */
	const struct form_param *sorted[FORM_PARAMS_MAX];
	size_t n = 0, off = 0;

	if (req->nparams > FORM_PARAMS_MAX)
		return -1;
	for (size_t i = 0; i < req->nparams; i++) {
		size_t s = 0;

		while (s < nskip && !form_name_is(&req->params[i], skip[s]))
			s++;
		if (s == nskip)
			sorted[n++] = &req->params[i];
	}
	qsort(sorted, n, sizeof(sorted[0]), form_cmp_param);
	for (size_t i = 0; i < n; i++) {
		const struct form_param *p = sorted[i];

		if (i > 0 && p->name_len == sorted[i - 1]->name_len &&
			memcmp(p->name, sorted[i - 1]->name, p->name_len) == 0)
			continue;
		if (p->name_len + p->value_len > cap - off)
			return -1;
		memcpy(out + off, p->name, p->name_len);
		memcpy(out + off + p->name_len, p->value, p->value_len);
		off += p->name_len + p->value_len;
	}
	*len = off;
	return 0;
}
