#include "registry.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <yajl/yajl_tree.h>

#include "csvdoc.h"
#include "form.h"
#include "jsonstrict.h"

#define REGISTRY_JSON_DEPTH_MAX 8 /* the bodies need 1 */

static int registry_fail(struct registry_error *err, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int registry_fail(struct registry_error *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static const char *registry_json_string(yajl_val obj, const char *name, bool *bad)
{
	const char *path[] = { name, NULL };
	yajl_val v = yajl_tree_get(obj, path, yajl_t_any);

	if (v == NULL)
		return NULL;
	if (!YAJL_IS_STRING(v)) {
		*bad = true;
		return NULL;
	}
	return YAJL_GET_STRING(v);
}

int registry_product_parse(const char *text, size_t len, const struct catalog *cat, struct registry_product *out,
	struct registry_error *err)
{
	static const char *const known[] = { "homeRegion", "homeInstance", "account", "locked", "bootstrapAuth",
		"dynamicRegistration", "preAuth" };
	const char *path[] = { "locked", NULL }, *pa_path[] = { "preAuth", NULL };
	struct jsonstrict_error e;
	const char *hr, *hi, *acct, *auth, *dr;
	bool bad = false;
	yajl_val root, v;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	/* The strict pass first: yajl_tree_parse alone would accept comments,
	 * and would stop at a NUL with the rest of the body unread. */
	if ((root = jsonstrict_parse(text, len, REGISTRY_JSON_DEPTH_MAX, &e)) == NULL)
		return registry_fail(err, 400, "invalid_json", "body must be a JSON object: %s at byte %zu", e.message,
			e.offset);
	if (!YAJL_IS_OBJECT(root)) {
		registry_fail(err, 400, "invalid_json", "body must be a JSON object");
		goto out;
	}
	for (size_t i = 0; i < root->u.object.len; i++) {
		size_t k;
		for (k = 0; k < sizeof(known) / sizeof(known[0]) && strcmp(known[k], root->u.object.keys[i]); k++)
			;
		if (k == sizeof(known) / sizeof(known[0])) {
			registry_fail(err, 400, "invalid_field", "unknown field \"%.64s\"", root->u.object.keys[i]);
			goto out;
		}
	}
	hr = registry_json_string(root, "homeRegion", &bad);
	hi = registry_json_string(root, "homeInstance", &bad);
	acct = registry_json_string(root, "account", &bad);
	auth = registry_json_string(root, "bootstrapAuth", &bad);
	dr = registry_json_string(root, "dynamicRegistration", &bad);
	v = yajl_tree_get(root, path, yajl_t_any);
	if (v && !YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
		bad = true;
	out->locked = v && YAJL_IS_TRUE(v);
	v = yajl_tree_get(root, pa_path, yajl_t_any);
	if (v && !YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v))
		bad = true;
	out->pre_auth = v && YAJL_IS_TRUE(v);
	if (bad) {
		registry_fail(err, 400, "invalid_field",
			"homeRegion, homeInstance, account, bootstrapAuth and dynamicRegistration are strings; "
			"locked and preAuth are booleans");
		goto out;
	}
	if (hr == NULL) {
		registry_fail(err, 400, "invalid_field", "homeRegion is required");
		goto out;
	}
	out->region = catalog_region(cat, hr);
	if (out->region == NULL) {
		registry_fail(err, 400, "unknown_region", "homeRegion \"%.64s\" is not in the catalog", hr);
		goto out;
	}
	out->instance = hi ? catalog_instance(out->region, hi) : catalog_default_instance(out->region);
	if (out->instance == NULL) {
		registry_fail(err, 400, "unknown_instance", "homeInstance \"%.64s\" is not in region %s", hi, hr);
		goto out;
	}
	if (acct == NULL)
		acct = "default";
	if (!schema_valid_account(acct)) {
		registry_fail(err, 400, "invalid_field", "account: 1-64 characters of A-Z a-z 0-9 - _ .");
		goto out;
	}
	snprintf(out->account, sizeof(out->account), "%s", acct);
	if (auth == NULL || strcmp(auth, "none") == 0) {
		out->auth = "none";
	} else if (strcmp(auth, "required") == 0) {
		out->auth = "required";
	} else {
		registry_fail(err, 400, "invalid_field", "bootstrapAuth: \"none\" or \"required\"");
		goto out;
	}
	out->dynreg = SCHEMA_DYNREG_OFF;
	for (int i = 0; dr && i < 3; i++)
		if (strcmp(dr, schema_dynreg_names[i]) == 0)
			out->dynreg = (enum schema_dynreg)i;
	if (dr && strcmp(dr, schema_dynreg_names[out->dynreg]) != 0) {
		registry_fail(err, 400, "invalid_field", "dynamicRegistration: \"off\", \"preregistered\" or \"open\"");
		goto out;
	}
	rc = 0;
out:
	yajl_tree_free(root);
	return rc;
}

static bool registry_valid_secret(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SECRET_PLAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static int registry_device_cmp(const void *a, const void *b)
{
	const struct registry_device *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : (x->row > y->row) - (x->row < y->row);
}

int registry_devices_unique(const struct registry_device *d, size_t n, struct registry_error *err)
{
	struct registry_device *sorted;
	int rc = 0;

	if (n < 2)
		return 0;
	/* Sorted by name (then row), a repeat sits next to its first row. */
	sorted = malloc(n * sizeof(*sorted));
	if (sorted == NULL)
		return registry_fail(err, 500, "internal", "out of memory");
	memcpy(sorted, d, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), registry_device_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(sorted[i - 1].name, sorted[i].name) == 0) {
			rc = registry_fail(err, 400, "duplicate_row", "row %zu, column deviceName: \"%s\" repeats row %zu",
				sorted[i].row, sorted[i].name, sorted[i - 1].row);
			break;
		}
	}
	OPENSSL_cleanse(sorted, n * sizeof(*sorted)); /* the copies hold secrets too */
	free(sorted);
	return rc;
}

long registry_devices_csv(const char *buf, size_t len, struct registry_device **out, struct registry_error *err)
{
	struct registry_device *d = NULL;
	struct csvdoc *doc = NULL;
	const struct csvdoc_row *h;
	char *cause = NULL;
	bool with_secret;
	size_t n = 0;
	long rc = -1;
	int prc;

	prc = csvdoc_parse(buf, len, REGISTRY_DEVICES_MAX, &doc, &cause);
	if (prc == CSVDOC_ETOO_MANY) {
		registry_fail(err, 413, "too_many_devices", "at most %d devices per upload", REGISTRY_DEVICES_MAX);
		goto out;
	}
	if (prc < 0) {
		registry_fail(err, 400, "invalid_csv", "unreadable CSV: %s", cause ? cause : "error");
		goto out;
	}
	h = doc->nrows ? &doc->rows[0] : NULL;
	if (h == NULL || h->nfields < 1 || h->nfields > 2 || !h->fields[0] || strcmp(h->fields[0], "deviceName") != 0 ||
	    (h->nfields == 2 && (!h->fields[1] || strcmp(h->fields[1], "deviceSecret") != 0))) {
		registry_fail(err, 400, "invalid_csv", "row 1: header must be \"deviceName\" or \"deviceName,deviceSecret\"");
		goto out;
	}
	with_secret = h->nfields == 2;
	n = doc->nrows - 1;
	if (n == 0) {
		registry_fail(err, 400, "invalid_csv", "no devices after the header");
		goto out;
	}
	d = calloc(n, sizeof(*d));
	if (d == NULL) {
		registry_fail(err, 500, "internal", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct csvdoc_row *row = &doc->rows[i + 1];
		const char *name = row->nfields > 0 ? row->fields[0] : NULL;
		const char *secret = with_secret && row->nfields > 1 ? row->fields[1] : NULL;

		if (secret && secret[0] == '\0')
			secret = NULL; /* an empty cell: generate one */
		if (row->nfields != h->nfields) {
			registry_fail(err, 400, "invalid_csv", "row %zu: expected %zu columns, found %zu", row->number,
				h->nfields, row->nfields);
			goto out;
		}
		if (name == NULL || !form_valid_device_name(name)) {
			registry_fail(err, 400, "invalid_device_name",
				"row %zu, column deviceName: 4-32 characters of A-Z a-z 0-9 _ - . @ :", row->number);
			goto out;
		}
		if (secret && !registry_valid_secret(secret)) {
			registry_fail(err, 400, "invalid_secret",
				"row %zu, column deviceSecret: 1-64 printable ASCII characters", row->number);
			goto out;
		}
		snprintf(d[i].name, sizeof(d[i].name), "%s", name);
		if (secret)
			snprintf(d[i].secret, sizeof(d[i].secret), "%s", secret);
		d[i].row = row->number;
	}
	if (registry_devices_unique(d, n, err) < 0)
		goto out;
	*out = d;
	d = NULL;
	rc = (long)n;
out:
	if (d)
		OPENSSL_cleanse(d, n * sizeof(*d));
	free(d);
	free(cause);
	csvdoc_free(doc);
	return rc;
}

long registry_devices_count(const char *text, size_t len, struct registry_error *err)
{
	const char *path[] = { "count", NULL };
	struct jsonstrict_error e;
	yajl_val root, v;
	long long count;

	root = jsonstrict_parse(text, len, REGISTRY_JSON_DEPTH_MAX, &e);
	v = root ? yajl_tree_get(root, path, yajl_t_number) : NULL;

	if (root == NULL || !YAJL_IS_OBJECT(root) || root->u.object.len != 1 || v == NULL || !YAJL_IS_INTEGER(v)) {
		yajl_tree_free(root);
		return registry_fail(err, 400, "invalid_json", "expected {\"count\":N}");
	}
	count = YAJL_GET_INTEGER(v);
	yajl_tree_free(root);
	if (count < 1 || count > REGISTRY_DEVICES_MAX)
		return registry_fail(err, count < 1 ? 400 : 413, "invalid_count", "count must be 1..10000");
	return (long)count;
}
