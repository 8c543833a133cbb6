#include "dynform.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "form.h"
#include "jsonstrict.h"

#define DYNFORM_DEPTH_MAX 4

/* Copies the string member NAME of ROOT into OUT (LEN bytes); false when
 * absent, not a string, empty or too long. */
static bool dynform_string(yajl_val root, const char *name, char *out, size_t len)
{
	const char *path[] = { name, NULL };
	yajl_val v = yajl_tree_get(root, path, yajl_t_string);
	const char *s = v ? YAJL_GET_STRING(v) : NULL;

	if (s == NULL || s[0] == '\0' || strlen(s) >= len)
		return false;
	memcpy(out, s, strlen(s) + 1);
	return true;
}

/* The integer member NAME, its text as sent (no fraction or exponent). A
 * minus sign is let through: the SDK prints its unsigned 32-bit clock with
 * %d, negative after 2038, and signs that text. */
static bool dynform_number(yajl_val root, const char *name, char out[DYNFORM_NUMBER_MAX + 1])
{
	const char *path[] = { name, NULL };
	yajl_val v = yajl_tree_get(root, path, yajl_t_number);
	const char *r = v ? v->u.number.r : NULL;
	size_t n = r ? strlen(r) : 0;

	if (n == 0 || n > DYNFORM_NUMBER_MAX || !YAJL_IS_INTEGER(v))
		return false;
	for (size_t i = r[0] == '-'; i < n; i++)
		if (r[i] < '0' || r[i] > '9')
			return false;
	memcpy(out, r, n + 1);
	return true;
}

int dynform_tencent_parse(const char *body, size_t len, struct dynform_tencent *out, const char **why)
{
	struct jsonstrict_error e;
	yajl_val root;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	*why = "body must be a JSON object";
	if ((root = jsonstrict_parse(body, len, DYNFORM_DEPTH_MAX, &e)) == NULL || !YAJL_IS_OBJECT(root))
		goto out;
	*why = "productId and deviceName: valid names";
	if (!dynform_string(root, "productId", out->product_id, sizeof(out->product_id)) ||
	    !dynform_string(root, "deviceName", out->device_name, sizeof(out->device_name)) ||
	    !form_valid_product_key(out->product_id) || !form_valid_device_name(out->device_name))
		goto out;
	*why = "nonce and timestamp: integers";
	if (!dynform_number(root, "nonce", out->nonce) || !dynform_number(root, "timestamp", out->timestamp))
		goto out;
	*why = "signature required";
	if (!dynform_string(root, "signature", out->signature, sizeof(out->signature)))
		goto out;
	*why = NULL;
	rc = 0;
out:
	yajl_tree_free(root);
	return rc;
}

int dynform_tencent_content(const struct dynform_tencent *f, char *out, size_t len)
{
	int n = snprintf(out, len, "deviceName=%s&nonce=%s&productId=%s&timestamp=%s", f->device_name, f->nonce,
		f->product_id, f->timestamp);

	return n < 0 || (size_t)n >= len ? -1 : n;
}
