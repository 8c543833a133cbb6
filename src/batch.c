#include "batch.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "jsonstrict.h"

#include "csvdoc.h"
#include "form.h"

#define BATCH_JSON_DEPTH_MAX 8 /* the format needs 3 levels */
#define BATCH_QUOTE_MAX 64     /* bytes of a client's value repeated in a message */
#define BATCH_QUOTE_BUF (BATCH_QUOTE_MAX + 8)

const char batch_template_csv[] = "productKey,deviceName\r\na1B2c3D4e5F,dev-0001\r\n";

enum batch_param {
	BATCH_P_STRATEGY,
	BATCH_P_TARGET_REGION,
	BATCH_P_TARGET_INSTANCE,
	BATCH_P_REGIONS,
	BATCH_P_TARGET_ACCOUNT,
	BATCH_P_AUTH_CODE,
	BATCH_P_COUNT
};

static const char *const batch_param_names[BATCH_P_COUNT] = {
	"strategy", "targetRegion", "targetInstance", "regions", "targetAccount", "authCode",
};

#define BATCH_PARAMS_KNOWN "strategy, targetRegion, targetInstance, regions, targetAccount, authCode"

struct batch_parser {
	const struct catalog *cat;
	size_t max_devices;
	struct batch_error *err;
	char *query;                /* copy of the query string, decoded in place */
	struct form_param *qparams; /* its parameters, into QUERY */
	char *json;                 /* NUL-terminated copy of a JSON body */
	yajl_val tree;
	yajl_val devices, products; /* borrowed from TREE, NULL when absent */
	/* Non-empty parameter values, borrowed from QUERY or TREE; NULL when absent.
	 * A JSON "regions" list is in REGIONS_LIST instead. */
	const char *param[BATCH_P_COUNT];
	yajl_val regions_list;
	struct batch_request *req;
};

static int batch_fail(struct batch_error *err, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int batch_fail(struct batch_error *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int batch_nomem(struct batch_error *err)
{
	return batch_fail(err, 500, "internal", "out of memory");
}

/* S (LEN bytes) in double quotes for a message: cut to BATCH_QUOTE_MAX bytes
 * on a character boundary, and never anything that is not text. */
static const char *batch_quote_len(char *buf, size_t buflen, const char *s, size_t len)
{
	size_t n = len;
	bool cut = false;

	if (!csvdoc_valid_text(s, len)) {
		snprintf(buf, buflen, "(not UTF-8 text)");
		return buf;
	}
	if (n > BATCH_QUOTE_MAX) {
		n = BATCH_QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
		cut = true;
	}
	snprintf(buf, buflen, "\"%.*s%s\"", (int)n, s, cut ? "..." : "");
	return buf;
}

static const char *batch_quote(char *buf, size_t buflen, const char *s)
{
	return batch_quote_len(buf, buflen, s, strlen(s));
}

static const char *batch_type_name(yajl_val v)
{
	switch (v->type) {
	case yajl_t_string: return "a string";
	case yajl_t_number: return "a number";
	case yajl_t_object: return "an object";
	case yajl_t_array: return "an array";
	case yajl_t_true:
	case yajl_t_false: return "a boolean";
	default: return "null";
	}
}

static int batch_param_index(const char *name, size_t len)
{
	for (int i = 0; i < BATCH_P_COUNT; i++)
		if (strlen(batch_param_names[i]) == len && memcmp(batch_param_names[i], name, len) == 0)
			return i;
	return -1;
}

/* The media type without parameters, compared case-insensitively. Returns 0
 * with *JSON set, or -1. */
static int batch_media_type(const char *ct, bool *json)
{
	size_t n;

	if (ct == NULL)
		return -1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (n == strlen("text/csv") && strncasecmp(ct, "text/csv", n) == 0) {
		*json = false;
		return 0;
	}
	if (n == strlen("application/json") && strncasecmp(ct, "application/json", n) == 0) {
		*json = true;
		return 0;
	}
	return -1;
}

static bool batch_is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A '%' that starts no escape and "%00" are refused (form_query_parse would
 * too), here first so that the message names the parameter. */
static int batch_query_raw_ok(struct batch_parser *p, const char *q)
{
	char qn[BATCH_QUOTE_BUF];

	while (*q != '\0') {
		size_t seg = strcspn(q, "&");
		size_t klen = strcspn(q, "=&");

		for (size_t i = 0; i < seg; i++) {
			if (q[i] != '%')
				continue;
			if (i + 2 >= seg || !batch_is_hex(q[i + 1]) || !batch_is_hex(q[i + 2]) ||
				(q[i + 1] == '0' && q[i + 2] == '0'))
				return batch_fail(p->err, 400, "invalid_parameter",
					"parameter %s: bad %%-escape in the query string",
					batch_quote_len(qn, sizeof(qn), q, klen));
			i += 2;
		}
		q += seg;
		if (*q == '&')
			q++;
	}
	return 0;
}

static int batch_read_query(struct batch_parser *p, const char *query)
{
	char qn[BATCH_QUOTE_BUF];
	size_t len, max = 1, n;
	const char *why;

	if (query == NULL || query[0] == '\0')
		return 0;
	if (batch_query_raw_ok(p, query) < 0)
		return -1;
	len = strlen(query);
	for (size_t k = 0; k < len; k++)
		max += query[k] == '&'; /* room for every pair: no limit on their number */
	p->query = malloc(len);
	p->qparams = calloc(max, sizeof(*p->qparams));
	if (p->query == NULL || p->qparams == NULL)
		return batch_nomem(p->err);
	memcpy(p->query, query, len);
	if (form_query_parse(p->query, len, p->qparams, max, &n, &why) != 0)
		return batch_fail(p->err, 400, "invalid_parameter",
			"query string: cannot be decoded (every parameter needs name=value)");
	for (size_t k = 0; k < n; k++) {
		const struct form_param *kv = &p->qparams[k];
		int i = batch_param_index(kv->name, kv->name_len);

		if (i < 0)
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter %s: unknown (known: " BATCH_PARAMS_KNOWN ")",
				batch_quote_len(qn, sizeof(qn), kv->name, kv->name_len));
		if (kv->value_len == 0)
			continue;
		if (!csvdoc_valid_text(kv->value, kv->value_len))
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter %s: not UTF-8 text, or holds a control character", batch_param_names[i]);
		if (p->param[i] != NULL)
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter %s: given twice", batch_param_names[i]);
		p->param[i] = kv->value;
	}
	return 0;
}

/* The strict pass first: yajl_tree_parse alone would accept comments. */
static int batch_json_scan(struct batch_parser *p, const char *body, size_t len)
{
	struct jsonstrict_error e;

	if (jsonstrict_check(body, len, BATCH_JSON_DEPTH_MAX, &e) == 0)
		return 0;
	batch_fail(p->err, 400, "invalid_json", "JSON body: %s at byte %zu", e.message, e.offset);
	return -1;
}

/* One parameter from the JSON body: a string (empty = absent), or for
 * "regions" also a list of strings. */
static int batch_json_param(struct batch_parser *p, int i, yajl_val v)
{
	const char *name = batch_param_names[i];
	bool given;

	if (i == BATCH_P_REGIONS && YAJL_IS_ARRAY(v)) {
		for (size_t k = 0; k < v->u.array.len; k++)
			if (!YAJL_IS_STRING(v->u.array.values[k]))
				return batch_fail(p->err, 400, "invalid_json",
					"JSON body: regions[%zu] must be a string, got %s", k,
					batch_type_name(v->u.array.values[k]));
		given = v->u.array.len > 0;
	} else if (YAJL_IS_STRING(v)) {
		given = v->u.string[0] != '\0';
	} else {
		return batch_fail(p->err, 400, "invalid_json", "JSON body: %s must be a string%s, got %s",
			name, i == BATCH_P_REGIONS ? " or a list of strings" : "", batch_type_name(v));
	}
	if (!given)
		return 0;
	if (p->param[i] != NULL)
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter %s: given twice (in the query string and in the JSON body)", name);
	if (YAJL_IS_ARRAY(v)) {
		p->regions_list = v;
		return 0;
	}
	if (!csvdoc_valid_text(v->u.string, strlen(v->u.string)))
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter %s: not UTF-8 text, or holds a control character", name);
	p->param[i] = v->u.string;
	return 0;
}

static int batch_read_json(struct batch_parser *p, const char *body, size_t len)
{
	char errbuf[128], qn[BATCH_QUOTE_BUF];
	bool seen[BATCH_P_COUNT] = { false };
	bool seen_devices = false, seen_products = false;
	yajl_val tree;

	if (len == 0)
		return batch_fail(p->err, 400, "invalid_json", "JSON body: empty");
	if (batch_json_scan(p, body, len) < 0)
		return -1;
	p->json = malloc(len + 1);
	if (p->json == NULL)
		return batch_nomem(p->err);
	memcpy(p->json, body, len);
	p->json[len] = '\0';
	errbuf[0] = '\0';
	p->tree = yajl_tree_parse(p->json, errbuf, sizeof(errbuf));
	if (p->tree == NULL)
		return batch_fail(p->err, 400, "invalid_json", "JSON body: %.*s",
			(int)strcspn(errbuf, "\n"), errbuf[0] != '\0' ? errbuf : "parse error");
	tree = p->tree;
	if (!YAJL_IS_OBJECT(tree))
		return batch_fail(p->err, 400, "invalid_json",
			"JSON body: the top level must be an object, got %s", batch_type_name(tree));
	for (size_t k = 0; k < tree->u.object.len; k++) {
		const char *key = tree->u.object.keys[k];
		yajl_val v = tree->u.object.values[k];
		int i = batch_param_index(key, strlen(key));
		bool *once = i >= 0 ? &seen[i] : strcmp(key, "devices") == 0 ? &seen_devices :
			strcmp(key, "products") == 0 ? &seen_products : NULL;

		if (once == NULL)
			return batch_fail(p->err, 400, "invalid_json",
				"JSON body: key %s is not known (known: devices, products, " BATCH_PARAMS_KNOWN ")",
				batch_quote(qn, sizeof(qn), key));
		if (*once)
			return batch_fail(p->err, 400, "invalid_json", "JSON body: key %s given twice", key);
		*once = true;
		if (i >= 0) {
			if (batch_json_param(p, i, v) < 0)
				return -1;
			continue;
		}
		if (!YAJL_IS_ARRAY(v))
			return batch_fail(p->err, 400, "invalid_json", "JSON body: %s must be an array, got %s",
				key, batch_type_name(v));
		if (once == &seen_devices)
			p->devices = v;
		else
			p->products = v;
	}
	if (p->devices != NULL && p->products != NULL)
		return batch_fail(p->err, 400, "invalid_json",
			"JSON body: give devices or products, not both");
	return 0;
}

/* Looks up REGION (LEN bytes) and INSTANCE (ILEN bytes; ILEN 0 = the default
 * instance) in the catalog and fills T. RNAME and INAME are the parameters
 * they came from, for messages. */
static int batch_resolve(struct batch_parser *p, const char *rname, const char *region, size_t len,
	const char *iname, const char *instance, size_t ilen, struct schema_target *t)
{
	char id[CATALOG_INSTANCE_ID_MAX + 1], q1[BATCH_QUOTE_BUF], q2[BATCH_QUOTE_BUF];
	const struct catalog_region *r = NULL;
	const struct catalog_instance *inst = NULL;

	if (len <= CATALOG_REGION_ID_MAX) {
		memcpy(id, region, len);
		id[len] = '\0';
		r = catalog_region(p->cat, id);
	}
	if (r == NULL)
		return batch_fail(p->err, 400, "unknown_region", "parameter %s: %s is not in the catalog",
			rname, batch_quote_len(q1, sizeof(q1), region, len));
	if (ilen == 0) {
		inst = catalog_default_instance(r);
	} else if (ilen <= CATALOG_INSTANCE_ID_MAX) {
		memcpy(id, instance, ilen);
		id[ilen] = '\0';
		inst = catalog_instance(r, id);
	}
	if (inst == NULL)
		return batch_fail(p->err, 400, "unknown_instance",
			"parameter %s: %s is not an instance of region %s", iname,
			batch_quote_len(q1, sizeof(q1), instance, ilen), batch_quote(q2, sizeof(q2), r->id));
	snprintf(t->region, sizeof(t->region), "%s", r->id);
	snprintf(t->instance, sizeof(t->instance), "%s", inst->id);
	return 0;
}

/* One "region" or "region:instance" item of regions, spaces around it trimmed.
 * N is its 1-based position. */
static int batch_candidate(struct batch_parser *p, const char *s, size_t len, size_t n)
{
	char q[BATCH_QUOTE_BUF];
	struct batch_request *req = p->req;
	struct schema_target *t;
	const char *colon;
	size_t rlen;

	while (len > 0 && s[0] == ' ') {
		s++;
		len--;
	}
	while (len > 0 && s[len - 1] == ' ')
		len--;
	if (len == 0)
		return batch_fail(p->err, 400, "invalid_parameter", "parameter regions: item %zu is empty", n);
	if (req->ntargets == SCHEMA_TARGETS_MAX)
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter regions: at most %d regions", SCHEMA_TARGETS_MAX);
	colon = memchr(s, ':', len);
	rlen = colon != NULL ? (size_t)(colon - s) : len;
	if (rlen == 0 || (colon != NULL && rlen + 1 == len))
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter regions: item %zu %s must be region or region:instance", n,
			batch_quote_len(q, sizeof(q), s, len));
	t = &req->targets[req->ntargets];
	if (batch_resolve(p, "regions", s, rlen, "regions", colon != NULL ? colon + 1 : NULL,
		    colon != NULL ? len - rlen - 1 : 0, t) < 0)
		return -1;
	for (size_t i = 0; i < req->ntargets; i++)
		if (strcmp(req->targets[i].region, t->region) == 0)
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter regions: region %s given twice", batch_quote(q, sizeof(q), t->region));
	req->ntargets++;
	return 0;
}

static int batch_candidates(struct batch_parser *p)
{
	if (p->regions_list != NULL) {
		for (size_t k = 0; k < p->regions_list->u.array.len; k++) {
			const char *s = p->regions_list->u.array.values[k]->u.string;

			if (!csvdoc_valid_text(s, strlen(s)))
				return batch_fail(p->err, 400, "invalid_parameter",
					"parameter regions: item %zu is not UTF-8 text, or holds a control character",
					k + 1);
			if (batch_candidate(p, s, strlen(s), k + 1) < 0)
				return -1;
		}
		return 0;
	}
	for (const char *s = p->param[BATCH_P_REGIONS], *end;; s = end + 1) {
		end = s + strcspn(s, ",");
		if (batch_candidate(p, s, (size_t)(end - s), p->req->ntargets + 1) < 0)
			return -1;
		if (*end == '\0')
			return 0;
	}
}

static bool batch_valid_account(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len > SCHEMA_ACCOUNT_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			    c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

static bool batch_valid_auth_code(const char *s)
{
	for (size_t i = 0; i < BATCH_AUTH_CODE_LEN; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return s[BATCH_AUTH_CODE_LEN] == '\0';
}

static int batch_check_params(struct batch_parser *p)
{
	struct batch_request *req = p->req;
	const char **v = p->param;
	char q[BATCH_QUOTE_BUF];
	bool nearest;

	if (v[BATCH_P_STRATEGY] == NULL || strcmp(v[BATCH_P_STRATEGY], "region") == 0)
		nearest = false;
	else if (strcmp(v[BATCH_P_STRATEGY], "nearest") == 0)
		nearest = true;
	else
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter strategy: must be region or nearest, got %s",
			batch_quote(q, sizeof(q), v[BATCH_P_STRATEGY]));
	req->strategy = nearest ? SCHEMA_NEAREST : SCHEMA_REGION;
	if (nearest && p->products != NULL && p->devices == NULL)
		return batch_fail(p->err, 400, "invalid_strategy",
			"parameter strategy: a products batch allows only region");
	if (nearest && v[BATCH_P_TARGET_ACCOUNT] != NULL)
		return batch_fail(p->err, 400, "invalid_strategy",
			"parameter targetAccount: not allowed with strategy nearest");

	if (!nearest) {
		if (v[BATCH_P_REGIONS] != NULL || p->regions_list != NULL)
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter regions: only with strategy nearest; use targetRegion");
		if (v[BATCH_P_TARGET_REGION] == NULL)
			return batch_fail(p->err, 400, "missing_parameter",
				"parameter targetRegion: required with strategy region");
		if (batch_resolve(p, "targetRegion", v[BATCH_P_TARGET_REGION],
			    strlen(v[BATCH_P_TARGET_REGION]), "targetInstance", v[BATCH_P_TARGET_INSTANCE],
			    v[BATCH_P_TARGET_INSTANCE] != NULL ? strlen(v[BATCH_P_TARGET_INSTANCE]) : 0,
			    &req->targets[0]) < 0)
			return -1;
		req->ntargets = 1;
	} else {
		for (int i = BATCH_P_TARGET_REGION; i <= BATCH_P_TARGET_INSTANCE; i++)
			if (v[i] != NULL)
				return batch_fail(p->err, 400, "invalid_parameter",
					"parameter %s: only with strategy region; use regions",
					batch_param_names[i]);
		if (v[BATCH_P_REGIONS] == NULL && p->regions_list == NULL)
			return batch_fail(p->err, 400, "missing_parameter",
				"parameter regions: required with strategy nearest");
		if (batch_candidates(p) < 0)
			return -1;
	}

	if (v[BATCH_P_TARGET_ACCOUNT] == NULL) {
		if (v[BATCH_P_AUTH_CODE] != NULL)
			return batch_fail(p->err, 400, "invalid_parameter",
				"parameter authCode: only with targetAccount");
		return 0;
	}
	if (!batch_valid_account(v[BATCH_P_TARGET_ACCOUNT]))
		return batch_fail(p->err, 400, "invalid_parameter",
			"parameter targetAccount: must be 1 to %d of A-Z a-z 0-9 _ . -, got %s",
			SCHEMA_ACCOUNT_MAX, batch_quote(q, sizeof(q), v[BATCH_P_TARGET_ACCOUNT]));
	if (v[BATCH_P_AUTH_CODE] == NULL)
		return batch_fail(p->err, 400, "auth_code_required",
			"parameter authCode: required with targetAccount");
	if (!batch_valid_auth_code(v[BATCH_P_AUTH_CODE]))
		return batch_fail(p->err, 400, "invalid_parameter", "parameter authCode: must be %d digits",
			BATCH_AUTH_CODE_LEN);
	req->target_account = strdup(v[BATCH_P_TARGET_ACCOUNT]);
	req->auth_code = strdup(v[BATCH_P_AUTH_CODE]);
	if (req->target_account == NULL || req->auth_code == NULL)
		return batch_nomem(p->err);
	return 0;
}

static int batch_alloc_items(struct batch_parser *p, size_t n)
{
	p->req->items = calloc(n, sizeof(*p->req->items));
	if (p->req->items == NULL)
		return batch_nomem(p->err);
	return 0;
}

/* Copies the next item; DEVICE_NAME NULL for a products batch. */
static int batch_add_item(struct batch_parser *p, const char *product_key, const char *device_name,
	size_t row)
{
	struct batch_item *it = &p->req->items[p->req->nitems];

	it->tag = BATCH_TAG_OK;
	it->row = row;
	it->product_key = strdup(product_key);
	if (device_name != NULL)
		it->device_name = strdup(device_name);
	p->req->nitems++;
	if (it->product_key == NULL || (device_name != NULL && it->device_name == NULL))
		return batch_nomem(p->err);
	return 0;
}

static int batch_csv_items(struct batch_parser *p, const char *body, size_t len)
{
	struct csvdoc *doc = NULL;
	char *cause = NULL, q[BATCH_QUOTE_BUF];
	const struct csvdoc_row *h;
	int rc = -1, e;

	e = csvdoc_parse(body != NULL ? body : "", len, p->max_devices, &doc, &cause);
	if (e == CSVDOC_ETOO_MANY) {
		batch_fail(p->err, 413, "too_many_devices", "%s: at most %zu devices a batch",
			cause != NULL ? cause : "too many rows", p->max_devices);
		goto out;
	}
	if (e == CSVDOC_ENOMEM) {
		batch_nomem(p->err);
		goto out;
	}
	if (e != 0) {
		batch_fail(p->err, 400, "invalid_csv", "%s", cause != NULL ? cause : "cannot be read");
		goto out;
	}
	if (doc->nrows == 0) {
		batch_fail(p->err, 400, "empty_batch", "the CSV body holds no rows");
		goto out;
	}
	h = &doc->rows[0];
	if (h->nfields != 2) {
		batch_fail(p->err, 400, "invalid_header",
			"row %zu: header must be productKey,deviceName, found %zu columns", h->number,
			h->nfields);
		goto out;
	}
	for (size_t c = 0; c < 2; c++)
		if (strcmp(h->fields[c], c == 0 ? "productKey" : "deviceName") != 0) {
			batch_fail(p->err, 400, "invalid_header",
				"row %zu: header must be productKey,deviceName; column %zu is %s", h->number,
				c + 1, batch_quote(q, sizeof(q), h->fields[c]));
			goto out;
		}
	if (doc->nrows == 1) {
		batch_fail(p->err, 400, "empty_batch", "row 1: no rows after the header");
		goto out;
	}
	for (size_t i = 1; i < doc->nrows; i++)
		if (doc->rows[i].nfields != 2) {
			batch_fail(p->err, 400, "invalid_csv", "row %zu: expected 2 columns, found %zu",
				doc->rows[i].number, doc->rows[i].nfields);
			goto out;
		}
	if (batch_alloc_items(p, doc->nrows - 1) < 0)
		goto out;
	for (size_t i = 1; i < doc->nrows; i++)
		if (batch_add_item(p, doc->rows[i].fields[0], doc->rows[i].fields[1], doc->rows[i].number) < 0)
			goto out;
	rc = 0;
out:
	free(cause);
	csvdoc_free(doc);
	return rc;
}

/* A JSON string field of an item: text of at most CSVDOC_FIELD_MAX bytes, like
 * a CSV field. WHERE names it ("devices[3].deviceName"). */
static int batch_json_text(struct batch_parser *p, yajl_val v, const char *where)
{
	size_t len;

	if (v == NULL)
		return batch_fail(p->err, 400, "invalid_json", "JSON body: %s is required", where);
	if (!YAJL_IS_STRING(v))
		return batch_fail(p->err, 400, "invalid_json", "JSON body: %s must be a string, got %s",
			where, batch_type_name(v));
	len = strlen(v->u.string);
	if (len > CSVDOC_FIELD_MAX)
		return batch_fail(p->err, 400, "invalid_json", "JSON body: %s is over %d bytes", where,
			CSVDOC_FIELD_MAX);
	if (!csvdoc_valid_text(v->u.string, len))
		return batch_fail(p->err, 400, "invalid_json",
			"JSON body: %s holds a control character", where);
	return 0;
}

static int batch_json_device(struct batch_parser *p, size_t k, yajl_val v)
{
	static const char *const keys[2] = { "productKey", "deviceName" };
	yajl_val field[2] = { NULL, NULL };
	char where[64], qn[BATCH_QUOTE_BUF];

	if (!YAJL_IS_OBJECT(v))
		return batch_fail(p->err, 400, "invalid_json", "JSON body: devices[%zu] must be an object, got %s",
			k, batch_type_name(v));
	for (size_t f = 0; f < v->u.object.len; f++) {
		const char *key = v->u.object.keys[f];
		int i = strcmp(key, keys[0]) == 0 ? 0 : strcmp(key, keys[1]) == 0 ? 1 : -1;

		if (i < 0)
			return batch_fail(p->err, 400, "invalid_json",
				"JSON body: devices[%zu]: key %s is not known (known: productKey, deviceName)", k,
				batch_quote(qn, sizeof(qn), key));
		if (field[i] != NULL)
			return batch_fail(p->err, 400, "invalid_json", "JSON body: devices[%zu].%s given twice",
				k, key);
		field[i] = v->u.object.values[f];
	}
	for (int i = 0; i < 2; i++) {
		snprintf(where, sizeof(where), "devices[%zu].%s", k, keys[i]);
		if (batch_json_text(p, field[i], where) < 0)
			return -1;
	}
	return batch_add_item(p, field[0]->u.string, field[1]->u.string, k + 1);
}

static int batch_json_items(struct batch_parser *p)
{
	yajl_val list = p->devices != NULL ? p->devices : p->products;
	const char *name = p->devices != NULL ? "devices" : "products";
	char where[64];
	size_t n;

	if (list == NULL)
		return batch_fail(p->err, 400, "empty_batch", "JSON body: give devices or products");
	n = list->u.array.len;
	if (n == 0)
		return batch_fail(p->err, 400, "empty_batch", "JSON body: %s is empty", name);
	if (n > p->max_devices)
		return batch_fail(p->err, 413, "too_many_devices",
			"JSON body: %s holds %zu items, at most %zu a batch", name, n, p->max_devices);
	if (batch_alloc_items(p, n) < 0)
		return -1;
	p->req->kind = p->devices != NULL ? BATCH_DEVICES : BATCH_PRODUCTS;
	for (size_t k = 0; k < n; k++) {
		yajl_val v = list->u.array.values[k];

		if (p->devices != NULL) {
			if (batch_json_device(p, k, v) < 0)
				return -1;
			continue;
		}
		snprintf(where, sizeof(where), "products[%zu]", k);
		if (batch_json_text(p, v, where) < 0 || batch_add_item(p, v->u.string, NULL, k + 1) < 0)
			return -1;
	}
	return 0;
}

static int batch_cmp_strings(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

/* Orders items by productKey, deviceName, then upload order (they are one
 * array, so address order is row order). */
static int batch_cmp_items(const void *x, const void *y)
{
	const struct batch_item *a = *(const struct batch_item *const *)x;
	const struct batch_item *b = *(const struct batch_item *const *)y;
	int c = strcmp(a->product_key, b->product_key);

	if (c == 0)
		c = batch_cmp_strings(a->device_name, b->device_name);
	if (c == 0)
		c = (a > b) - (a < b);
	return c;
}

/* Name checks first, so a repeat of a malformed row is INVALID_NAME like the
 * row it repeats; then among the well-formed rows, every repeat of an earlier
 * row is DUPLICATE. Sorting keeps this O(n log n) for large batches. */
static int batch_tag_items(struct batch_parser *p)
{
	struct batch_request *req = p->req;
	const struct batch_item **sorted;
	size_t n = 0;

	sorted = calloc(req->nitems, sizeof(*sorted));
	if (sorted == NULL)
		return batch_nomem(p->err);
	for (size_t i = 0; i < req->nitems; i++) {
		struct batch_item *it = &req->items[i];

		if (!form_valid_product_key(it->product_key) ||
			(req->kind == BATCH_DEVICES && !form_valid_device_name(it->device_name))) {
			it->tag = BATCH_TAG_INVALID_NAME;
			continue;
		}
		sorted[n++] = it;
	}
	qsort(sorted, n, sizeof(*sorted), batch_cmp_items);
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i]->product_key, sorted[i - 1]->product_key) == 0 &&
			batch_cmp_strings(sorted[i]->device_name, sorted[i - 1]->device_name) == 0)
			((struct batch_item *)sorted[i])->tag = BATCH_TAG_DUPLICATE;
	free(sorted);
	return 0;
}

int batch_parse(const char *query, const char *content_type, const char *body, size_t len,
	const struct catalog *cat, size_t max_devices, struct batch_request **out, struct batch_error *err)
{
	struct batch_parser p = { .cat = cat, .max_devices = max_devices, .err = err };
	char q[BATCH_QUOTE_BUF];
	bool json;
	int rc = -1;

	if (batch_media_type(content_type, &json) < 0) {
		if (content_type == NULL)
			batch_fail(err, 415, "unsupported_media_type",
				"Content-Type: missing; use text/csv or application/json");
		else
			batch_fail(err, 415, "unsupported_media_type",
				"Content-Type: %s is neither text/csv nor application/json",
				batch_quote(q, sizeof(q), content_type));
		goto out;
	}
	p.req = calloc(1, sizeof(*p.req));
	if (p.req == NULL) {
		batch_nomem(err);
		goto out;
	}
	p.req->kind = BATCH_DEVICES;
	if (batch_read_query(&p, query) < 0)
		goto out;
	if (json && batch_read_json(&p, body, len) < 0)
		goto out;
	if (batch_check_params(&p) < 0)
		goto out;
	if ((json ? batch_json_items(&p) : batch_csv_items(&p, body, len)) < 0)
		goto out;
	if (batch_tag_items(&p) < 0)
		goto out;
	*out = p.req;
	p.req = NULL;
	rc = 0;
out:
	batch_request_free(p.req);
	yajl_tree_free(p.tree);
	free(p.json);
	free(p.qparams);
	free(p.query);
	return rc;
}

void batch_request_free(struct batch_request *req)
{
	if (req == NULL)
		return;
	for (size_t i = 0; i < req->nitems; i++) {
		free(req->items[i].product_key);
		free(req->items[i].device_name);
	}
	free(req->items);
	free(req->target_account);
	free(req->auth_code);
	free(req);
}
