/* Unit tests for src/batch.c: media types, query and JSON parameters, every
 * parameter rule, CSV and JSON rows, whole-batch rejections and row tags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "catalog.h"

#define MAX 1000
#define CSV_HDR "productKey,deviceName\n"

static struct catalog *test_cat;

/* Test JSON is written with ' for " to stay readable; this swaps them back.
 * The result is malloc'd. */
static char *dq(const char *s)
{
	char *out = strdup(s);

	assert_non_null(out);
	for (char *p = out; *p != '\0'; p++)
		if (*p == '\'')
			*p = '"';
	return out;
}

/* cn-shanghai: iot-cn-sh-public, iot-cn-sh-2 (marked default).
 * eu-central-1: iot-eu-1, iot-eu-2 (none marked: the first is the default).
 * us-east-1: iot-us-1. r01..r17: i-r01..i-r17 (to go past 16 candidates). */
static int setup(void **state)
{
	char json[8192], *cause = NULL, *full;
	size_t off;

	(void)state;
	off = (size_t)snprintf(json, sizeof(json), "%s",
		"{'regions':["
		"{'id':'cn-shanghai','latitude':31,'longitude':121,'instances':["
		" {'id':'iot-cn-sh-public','endpoints':{'mqtt':{'host':'sh.example.com','port':1883}}},"
		" {'id':'iot-cn-sh-2','default':true,'endpoints':{'mqtt':{'host':'sh2.example.com','port':1883}}}]},"
		"{'id':'eu-central-1','latitude':50,'longitude':8,'instances':["
		" {'id':'iot-eu-1','endpoints':{'mqtt':{'host':'eu1.example.com','port':1883}}},"
		" {'id':'iot-eu-2','endpoints':{'mqtt':{'host':'eu2.example.com','port':1883}}}]},"
		"{'id':'us-east-1','latitude':40,'longitude':-70,'instances':["
		" {'id':'iot-us-1','endpoints':{'mqtt':{'host':'us.example.com','port':1883}}}]}");
	for (int i = 1; i <= 17; i++)
		off += (size_t)snprintf(json + off, sizeof(json) - off,
			",{'id':'r%02d','latitude':0,'longitude':0,'instances':["
			"{'id':'i-r%02d','endpoints':{'mqtt':{'host':'h','port':1}}}]}", i, i);
	off += (size_t)snprintf(json + off, sizeof(json) - off, "]}");
	assert_true(off < sizeof(json));
	full = dq(json);
	if (catalog_parse(full, strlen(full), "test", &test_cat, &cause) != 0)
		fail_msg("catalog_parse: %s", cause);
	free(full);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	catalog_unref(test_cat);
	return 0;
}

static struct batch_request *check_ok(const char *query, const char *ct, const char *body,
	size_t len, size_t max, int line)
{
	struct batch_request *req = NULL;
	struct batch_error err = { 0 };

	if (batch_parse(query, ct, body, len, test_cat, max, &req, &err) != 0)
		fail_msg("line %d: expected success, got %d %s: %s", line, err.status,
			err.code ? err.code : "(null)", err.message);
	assert_non_null(req);
	return req;
}

static void check_err(const char *query, const char *ct, const char *body, size_t len,
	size_t max, int status, const char *code, const char *needle, int line)
{
	struct batch_request sentinel, *req = &sentinel;
	struct batch_error err = { 0 };
	int rc = batch_parse(query, ct, body, len, test_cat, max, &req, &err);

	if (rc != -1 || err.status != status || err.code == NULL || strcmp(err.code, code) != 0 ||
		strstr(err.message, needle) == NULL) {
		if (rc == 0 && req != &sentinel)
			batch_request_free(req);
		fail_msg("line %d: expected %d %s [%s], got rc %d: %d %s: %s", line, status, code,
			needle, rc, err.status, err.code ? err.code : "(null)", err.message);
	}
	assert_ptr_equal(req, &sentinel); /* *out untouched */
}

static struct batch_request *json_check_ok(const char *query, const char *body_sq, size_t max,
	int line)
{
	char *body = dq(body_sq);
	struct batch_request *req = check_ok(query, "application/json", body, strlen(body), max, line);

	free(body);
	return req;
}

static void json_check_err(const char *query, const char *body_sq, size_t max, int status,
	const char *code, const char *needle, int line)
{
	char *body = dq(body_sq);

	check_err(query, "application/json", body, strlen(body), max, status, code, needle, line);
	free(body);
}

#define csv_ok(q, body) check_ok((q), "text/csv", (body), strlen(body), MAX, __LINE__)
#define csv_err(q, body, status, code, needle) \
	check_err((q), "text/csv", (body), strlen(body), MAX, (status), (code), (needle), __LINE__)
#define json_ok(q, body) json_check_ok((q), (body), MAX, __LINE__)
#define json_err(q, body, status, code, needle) \
	json_check_err((q), (body), MAX, (status), (code), (needle), __LINE__)

/* A parameter rule with a one-row CSV body. */
#define ONE_ROW CSV_HDR "a1B2c3D4e5F,dev-0001\n"
#define q_ok(q) batch_request_free(csv_ok((q), ONE_ROW))
#define q_err(q, status, code, needle) csv_err((q), ONE_ROW, (status), (code), (needle))

#define EU "strategy=region&targetRegion=eu-central-1"
#define DEVS1 "'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001'}]"

static void assert_item(const struct batch_item *it, char tag, const char *pk, const char *dn,
	size_t row)
{
	assert_int_equal(it->tag, tag);
	assert_string_equal(it->product_key, pk);
	if (dn == NULL)
		assert_null(it->device_name);
	else
		assert_string_equal(it->device_name, dn);
	assert_int_equal(it->row, row);
}

static void assert_target(const struct batch_request *req, size_t i, const char *region,
	const char *instance)
{
	assert_true(i < req->ntargets);
	assert_string_equal(req->targets[i].region, region);
	assert_string_equal(req->targets[i].instance, instance);
}

/* A CSV of N data rows "pk,dev-NNNNNN"; malloc'd. */
static char *make_rows(size_t n, size_t *len)
{
	size_t cap = 32 + n * 32, off;
	char *s = malloc(cap);

	assert_non_null(s);
	off = (size_t)snprintf(s, cap, "productKey,deviceName\r\n");
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(s + off, cap - off, "a1B2c3D4e5F,dev-%06zu\r\n", i);
	*len = off;
	return s;
}

static void test_good_csv(void **state)
{
	static const char body[] = "\xef\xbb\xbf"
		"productKey,deviceName\r\n"
		"a1B2c3D4e5F,dev-0001\r\n"
		"\"a1B2c3D4e5F\",\"dev-0002\"\r\n"
		"a1B2c3D4e5F,\"dev,\"\"3\"\"\"\r\n";
	struct batch_request *req = csv_ok(EU, body);

	(void)state;
	assert_int_equal(req->kind, BATCH_DEVICES);
	assert_int_equal(req->strategy, SCHEMA_REGION);
	assert_int_equal(req->ntargets, 1);
	assert_target(req, 0, "eu-central-1", "iot-eu-1");
	assert_null(req->target_account);
	assert_null(req->auth_code);
	assert_int_equal(req->nitems, 3);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0001", 2);
	assert_item(&req->items[1], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0002", 3);
	/* Quoting keeps the comma and the quotes inside one field; not a valid name. */
	assert_item(&req->items[2], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "dev,\"3\"", 4);
	batch_request_free(req);
}

static void test_lf_and_blank_lines(void **state)
{
	struct batch_request *req;

	(void)state;
	req = csv_ok(EU, "productKey,deviceName\na1B2c3D4e5F,dev-0001\na1B2c3D4e5F,dev-0002");
	assert_int_equal(req->nitems, 2);
	assert_item(&req->items[1], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0002", 3);
	batch_request_free(req);

	req = csv_ok(EU, "productKey,deviceName\na1B2c3D4e5F,dev-0001\n\n");
	assert_int_equal(req->nitems, 1);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0001", 2);
	batch_request_free(req);

	req = csv_ok(EU, "productKey,deviceName\r\na1B2c3D4e5F,dev-0001\r\n\r\n");
	assert_int_equal(req->nitems, 1);
	batch_request_free(req);
}

static void test_header(void **state)
{
	(void)state;
	csv_err(EU, "product,deviceName\na1B2c3D4e5F,dev-0001\n", 400, "invalid_header",
		"row 1: header must be productKey,deviceName; column 1 is \"product\"");
	csv_err(EU, "deviceName,productKey\na1B2c3D4e5F,dev-0001\n", 400, "invalid_header",
		"row 1: header must be productKey,deviceName; column 1 is \"deviceName\"");
	csv_err(EU, "productKey,deviceName,deviceSecret\na1B2c3D4e5F,dev-0001,x\n", 400,
		"invalid_header", "row 1: header must be productKey,deviceName, found 3 columns");
	csv_err(EU, "productKey\na1B2c3D4e5F\n", 400, "invalid_header", "found 1 columns");
	csv_err(EU, "productkey,devicename\na1B2c3D4e5F,dev-0001\n", 400, "invalid_header",
		"column 1 is \"productkey\"");
	csv_err(EU, "productKey,device_name\na1B2c3D4e5F,dev-0001\n", 400, "invalid_header",
		"column 2 is \"device_name\"");
}

static void test_columns(void **state)
{
	(void)state;
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,dev-0001\na1B2c3D4e5F,dev-0002\nx,y,z\n", 400,
		"invalid_csv", "row 4: expected 2 columns, found 3");
	csv_err(EU, CSV_HDR "a1B2c3D4e5F\n", 400, "invalid_csv", "row 2: expected 2 columns, found 1");
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,dev-0001,\n", 400, "invalid_csv",
		"row 2: expected 2 columns, found 3");
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,\"dev-0001\n", 400, "invalid_csv", "row 2");
}

static void test_row_limit(void **state)
{
	size_t len;
	char *s = make_rows(1000, &len);
	struct batch_request *req;

	(void)state;
	req = check_ok(EU, "text/csv", s, len, 1000, __LINE__);
	assert_int_equal(req->nitems, 1000);
	assert_item(&req->items[999], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-000999", 1001);
	batch_request_free(req);
	free(s);

	s = make_rows(1001, &len);
	check_err(EU, "text/csv", s, len, 1000, 413, "too_many_devices", "at most 1000 devices", __LINE__);
	check_err(EU, "text/csv", s, len, 1000, 413, "too_many_devices", "row 1002", __LINE__);
	free(s);
}

static void test_empty(void **state)
{
	(void)state;
	csv_err(EU, "", 400, "empty_batch", "no rows");
	check_err(EU, "text/csv", NULL, 0, MAX, 400, "empty_batch", "no rows", __LINE__);
	csv_err(EU, "\xef\xbb\xbf", 400, "empty_batch", "no rows");
	csv_err(EU, "\n\n", 400, "empty_batch", "no rows");
	csv_err(EU, "productKey,deviceName\r\n", 400, "empty_batch", "row 1: no rows after the header");
	csv_err(EU, "productKey,deviceName", 400, "empty_batch", "no rows after the header");
	/* Parameters are checked before the rows. */
	csv_err("strategy=region", "", 400, "missing_parameter", "targetRegion");
}

static void test_bad_text(void **state)
{
	char body[512];

	(void)state;
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,dev-\xff\n", 400, "invalid_csv",
		"row 2, column deviceName: not UTF-8");
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,dev-0001\na1B2c3D4e5F,dev\xc3\n", 400, "invalid_csv",
		"row 3, column deviceName: not UTF-8");
	csv_err(EU, CSV_HDR "a1B2c3D4e5F,dev\t0001\n", 400, "invalid_csv", "control character");

	/* 256 bytes is fine (the name is then malformed), 257 is not. */
	snprintf(body, sizeof(body), CSV_HDR "a1B2c3D4e5F,%0256d\n", 0);
	batch_request_free(csv_ok(EU, body));
	snprintf(body, sizeof(body), CSV_HDR "a1B2c3D4e5F,%0257d\n", 0);
	csv_err(EU, body, 400, "invalid_csv", "row 2, column deviceName: field too long");
}

static void test_media_type(void **state)
{
	struct batch_request *req;

	(void)state;
	req = check_ok(EU, "text/csv; charset=utf-8", ONE_ROW, strlen(ONE_ROW), MAX, __LINE__);
	batch_request_free(req);
	req = check_ok(EU, "Text/CSV", ONE_ROW, strlen(ONE_ROW), MAX, __LINE__);
	batch_request_free(req);
	req = check_ok(EU, " text/csv ;charset=UTF-8", ONE_ROW, strlen(ONE_ROW), MAX, __LINE__);
	batch_request_free(req);
	req = check_ok(NULL, "Application/JSON; charset=utf-8",
		"{\"targetRegion\":\"us-east-1\",\"products\":[\"a1B2c3D4e5F\"]}",
		strlen("{\"targetRegion\":\"us-east-1\",\"products\":[\"a1B2c3D4e5F\"]}"), MAX, __LINE__);
	batch_request_free(req);

	check_err(EU, NULL, ONE_ROW, strlen(ONE_ROW), MAX, 415, "unsupported_media_type", "missing",
		__LINE__);
	check_err(EU, "text/plain", ONE_ROW, strlen(ONE_ROW), MAX, 415, "unsupported_media_type",
		"\"text/plain\"", __LINE__);
	check_err(EU, "text/csvx", ONE_ROW, strlen(ONE_ROW), MAX, 415, "unsupported_media_type",
		"text/csvx", __LINE__);
	check_err(EU, "", ONE_ROW, strlen(ONE_ROW), MAX, 415, "unsupported_media_type", "neither",
		__LINE__);
	check_err(EU, "application/x-www-form-urlencoded", ONE_ROW, strlen(ONE_ROW), MAX, 415,
		"unsupported_media_type", "neither", __LINE__);
	/* The media type comes before anything else. */
	check_err("bogus=1", "text/html", "", 0, MAX, 415, "unsupported_media_type", "text/html",
		__LINE__);
}

static void test_query(void **state)
{
	(void)state;
	q_err(EU "&target=x", 400, "invalid_parameter", "parameter \"target\": unknown");
	q_err("TargetRegion=eu-central-1", 400, "invalid_parameter", "\"TargetRegion\": unknown");
	q_err(EU "&strategy=region", 400, "invalid_parameter", "parameter strategy: given twice");
	q_err(EU "&targetRegion=us-east-1", 400, "invalid_parameter", "targetRegion: given twice");
	q_err(EU "&targetInstance=iot%00", 400, "invalid_parameter",
		"parameter \"targetInstance\": bad %-escape");
	q_err(EU "&targetInstance=iot%zz", 400, "invalid_parameter", "bad %-escape");
	q_err(EU "&targetInstance=iot%4", 400, "invalid_parameter", "bad %-escape");
	q_err(EU "&strategy", 400, "invalid_parameter", "query string: cannot be decoded");
	q_err(EU "&targetInstance=%01", 400, "invalid_parameter",
		"parameter targetInstance: not UTF-8 text");
	q_err(EU "&targetInstance=%ff", 400, "invalid_parameter", "not UTF-8 text");

	/* An empty value is no value: not given twice, not a region to look up. */
	q_ok("strategy=&targetRegion=&targetRegion=eu-central-1&targetInstance=&regions=&targetAccount=&authCode=");
	q_ok("targetRegion=eu%2Dcentral%2D1");
	q_err("", 400, "missing_parameter", "targetRegion");
	q_err(NULL, 400, "missing_parameter", "targetRegion");

	/* The pair rules of the form decoder: one trailing '&' is fine, an empty
	 * pair or name is not; names are never decoded, values are ('+' too). */
	q_ok(EU "&");
	q_err("&" EU, 400, "invalid_parameter", "query string: cannot be decoded");
	q_err(EU "&&targetInstance=iot-eu-1", 400, "invalid_parameter", "query string: cannot be decoded");
	q_err(EU "&=x", 400, "invalid_parameter", "query string: cannot be decoded");
	q_err("strategy=region&target%52egion=eu-central-1", 400, "invalid_parameter",
		"parameter \"target%52egion\": unknown");
	q_err("strat%C3%A9gy=region", 400, "invalid_parameter", "parameter \"strat%C3%A9gy\": unknown");
	q_err(EU "&caf\xc3=1", 400, "invalid_parameter", "parameter (not UTF-8 text): unknown");
	q_err("strategy=region+&targetRegion=eu-central-1", 400, "invalid_parameter",
		"got \"region \"");
	/* No limit on the number of (empty) parameters. */
	{
		char q[1024] = EU;

		for (int i = 0; i < 40; i++)
			strcat(q, "&targetAccount=");
		q_ok(q);
	}
}

static void test_strategy(void **state)
{
	struct batch_request *req;

	(void)state;
	req = csv_ok("targetRegion=us-east-1", ONE_ROW); /* region is the default */
	assert_int_equal(req->strategy, SCHEMA_REGION);
	assert_target(req, 0, "us-east-1", "iot-us-1");
	batch_request_free(req);
	q_err("strategy=Region&targetRegion=us-east-1", 400, "invalid_parameter",
		"parameter strategy: must be region or nearest, got \"Region\"");
	q_err("strategy=fastest&regions=us-east-1", 400, "invalid_parameter", "\"fastest\"");
}

static void test_region_target(void **state)
{
	struct batch_request *req;

	(void)state;
	/* The default instance: the marked one, else the first. */
	req = csv_ok("targetRegion=cn-shanghai", ONE_ROW);
	assert_int_equal(req->ntargets, 1);
	assert_target(req, 0, "cn-shanghai", "iot-cn-sh-2");
	batch_request_free(req);
	req = csv_ok("targetRegion=eu-central-1", ONE_ROW);
	assert_target(req, 0, "eu-central-1", "iot-eu-1");
	batch_request_free(req);
	req = csv_ok("targetRegion=cn-shanghai&targetInstance=iot-cn-sh-public", ONE_ROW);
	assert_target(req, 0, "cn-shanghai", "iot-cn-sh-public");
	batch_request_free(req);
	req = csv_ok("targetInstance=iot-eu-2&targetRegion=eu-central-1", ONE_ROW);
	assert_target(req, 0, "eu-central-1", "iot-eu-2");
	batch_request_free(req);

	q_err("strategy=region", 400, "missing_parameter",
		"parameter targetRegion: required with strategy region");
	q_err("targetInstance=iot-eu-1", 400, "missing_parameter", "parameter targetRegion");
	q_err("targetRegion=mars-1", 400, "unknown_region",
		"parameter targetRegion: \"mars-1\" is not in the catalog");
	q_err("targetRegion=EU-CENTRAL-1", 400, "unknown_region", "\"EU-CENTRAL-1\"");
	q_err("targetRegion=mars-1&targetInstance=iot-eu-1", 400, "unknown_region",
		"parameter targetRegion: \"mars-1\"");
	q_err("targetRegion=eu-central-1&targetInstance=iot-cn-sh-2", 400, "unknown_instance",
		"parameter targetInstance: \"iot-cn-sh-2\" is not an instance of region \"eu-central-1\"");
	q_err("targetRegion=eu-central-1&targetInstance=nope", 400, "unknown_instance", "\"nope\"");
	q_err("targetRegion=eu-central-1&regions=us-east-1", 400, "invalid_parameter",
		"parameter regions: only with strategy nearest");
	q_err("strategy=region&targetRegion=eu-central-1&regions=eu-central-1", 400,
		"invalid_parameter", "parameter regions");
	/* Long values are cut short in the message. */
	q_err("targetRegion=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		400, "unknown_region", "aaaa...\" is not in the catalog");
}

static void test_nearest(void **state)
{
	struct batch_request *req;

	(void)state;
	req = csv_ok("strategy=nearest&regions=cn-shanghai,+eu-central-1:iot-eu-2+,us-east-1", ONE_ROW);
	assert_int_equal(req->strategy, SCHEMA_NEAREST);
	assert_int_equal(req->ntargets, 3);
	assert_target(req, 0, "cn-shanghai", "iot-cn-sh-2");
	assert_target(req, 1, "eu-central-1", "iot-eu-2");
	assert_target(req, 2, "us-east-1", "iot-us-1");
	batch_request_free(req);
	req = csv_ok("strategy=nearest&regions=eu-central-1%2C%20%20cn-shanghai:iot-cn-sh-public", ONE_ROW);
	assert_int_equal(req->ntargets, 2);
	assert_target(req, 0, "eu-central-1", "iot-eu-1");
	assert_target(req, 1, "cn-shanghai", "iot-cn-sh-public");
	batch_request_free(req);
	req = csv_ok("strategy=nearest&regions=us-east-1", ONE_ROW);
	assert_int_equal(req->ntargets, 1);
	batch_request_free(req);

	/* 1 to 16 candidates. */
	req = csv_ok("strategy=nearest&regions=r01,r02,r03,r04,r05,r06,r07,r08,r09,r10,r11,r12,r13,"
		"r14,r15,r16", ONE_ROW);
	assert_int_equal(req->ntargets, 16);
	assert_target(req, 15, "r16", "i-r16");
	batch_request_free(req);
	q_err("strategy=nearest&regions=r01,r02,r03,r04,r05,r06,r07,r08,r09,r10,r11,r12,r13,r14,r15,"
		"r16,r17", 400, "invalid_parameter", "parameter regions: at most 16 regions");

	q_err("strategy=nearest", 400, "missing_parameter",
		"parameter regions: required with strategy nearest");
	q_err("strategy=nearest&regions=", 400, "missing_parameter", "parameter regions");
	q_err("strategy=nearest&regions=+", 400, "invalid_parameter", "parameter regions: item 1 is empty");
	q_err("strategy=nearest&regions=us-east-1,,eu-central-1", 400, "invalid_parameter",
		"item 2 is empty");
	q_err("strategy=nearest&regions=us-east-1,", 400, "invalid_parameter", "item 2 is empty");
	q_err("strategy=nearest&regions=us-east-1,mars-1:x", 400, "unknown_region",
		"parameter regions: \"mars-1\" is not in the catalog");
	q_err("strategy=nearest&regions=us-east-1,eu-central-1:iot-us-1", 400, "unknown_instance",
		"parameter regions: \"iot-us-1\" is not an instance of region \"eu-central-1\"");
	q_err("strategy=nearest&regions=us-east-1,eu-central-1:", 400, "invalid_parameter",
		"item 2 \"eu-central-1:\" must be region or region:instance");
	q_err("strategy=nearest&regions=:iot-us-1", 400, "invalid_parameter",
		"must be region or region:instance");
	q_err("strategy=nearest&regions=eu-central-1,us-east-1,eu-central-1:iot-eu-2", 400,
		"invalid_parameter", "parameter regions: region \"eu-central-1\" given twice");
	q_err("strategy=nearest&regions=us-east-1&targetRegion=us-east-1", 400, "invalid_parameter",
		"parameter targetRegion: only with strategy region");
	q_err("strategy=nearest&regions=us-east-1&targetInstance=iot-us-1", 400, "invalid_parameter",
		"parameter targetInstance: only with strategy region");
	q_err("strategy=nearest&regions=us-east-1&targetAccount=acct-b&authCode=123456", 400,
		"invalid_strategy", "parameter targetAccount: not allowed with strategy nearest");
}

static void test_account(void **state)
{
	struct batch_request *req;
	char q[256];

	(void)state;
	req = csv_ok(EU "&targetAccount=Acct_b.1-x&authCode=012345", ONE_ROW);
	assert_string_equal(req->target_account, "Acct_b.1-x");
	assert_string_equal(req->auth_code, "012345");
	batch_request_free(req);

	snprintf(q, sizeof(q), EU "&authCode=123456&targetAccount=%064d", 7);
	req = csv_ok(q, ONE_ROW);
	assert_int_equal(strlen(req->target_account), 64);
	batch_request_free(req);
	snprintf(q, sizeof(q), EU "&authCode=123456&targetAccount=%065d", 7);
	q_err(q, 400, "invalid_parameter", "parameter targetAccount: must be 1 to 64");

	q_err(EU "&targetAccount=acct%20b&authCode=123456", 400, "invalid_parameter",
		"parameter targetAccount: must be 1 to 64 of A-Z a-z 0-9 _ . -, got \"acct b\"");
	q_err(EU "&targetAccount=acct/b&authCode=123456", 400, "invalid_parameter", "\"acct/b\"");
	q_err(EU "&targetAccount=acct-b", 400, "auth_code_required",
		"parameter authCode: required with targetAccount");
	q_err(EU "&targetAccount=acct-b&authCode=", 400, "auth_code_required", "authCode");
	q_err(EU "&targetAccount=acct-b&authCode=12345", 400, "invalid_parameter",
		"parameter authCode: must be 6 digits");
	q_err(EU "&targetAccount=acct-b&authCode=1234567", 400, "invalid_parameter", "6 digits");
	q_err(EU "&targetAccount=acct-b&authCode=12345a", 400, "invalid_parameter", "6 digits");
	q_err(EU "&targetAccount=acct-b&authCode=+12345", 400, "invalid_parameter", "6 digits");
	q_err(EU "&authCode=123456", 400, "invalid_parameter",
		"parameter authCode: only with targetAccount");
}

static void test_json_devices(void **state)
{
	struct batch_request *req;

	(void)state;
	req = json_ok(NULL, "{'strategy':'region','targetRegion':'eu-central-1','targetInstance':'iot-eu-2',"
		"'targetAccount':'acct-b','authCode':'493027','devices':["
		"{'productKey':'a1B2c3D4e5F','deviceName':'sensor-0001'},"
		"{'deviceName':'sensor-0002','productKey':'a1B2c3D4e5F'}]}");
	assert_int_equal(req->kind, BATCH_DEVICES);
	assert_int_equal(req->strategy, SCHEMA_REGION);
	assert_target(req, 0, "eu-central-1", "iot-eu-2");
	assert_string_equal(req->target_account, "acct-b");
	assert_string_equal(req->auth_code, "493027");
	assert_int_equal(req->nitems, 2);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", "sensor-0001", 1);
	assert_item(&req->items[1], BATCH_TAG_OK, "a1B2c3D4e5F", "sensor-0002", 2);
	batch_request_free(req);

	/* Parameters from the query string with a JSON body; "" is absent. */
	req = json_ok(EU, "{'targetInstance':'', " DEVS1 "}");
	assert_target(req, 0, "eu-central-1", "iot-eu-1");
	batch_request_free(req);
	/* Some from each. */
	req = json_ok("targetInstance=iot-eu-2", "{'targetRegion':'eu-central-1'," DEVS1 "}");
	assert_target(req, 0, "eu-central-1", "iot-eu-2");
	batch_request_free(req);

	/* regions: a string or a list. */
	req = json_ok(NULL, "{'strategy':'nearest','regions':'us-east-1, eu-central-1:iot-eu-2'," DEVS1 "}");
	assert_int_equal(req->ntargets, 2);
	assert_target(req, 1, "eu-central-1", "iot-eu-2");
	batch_request_free(req);
	req = json_ok("strategy=nearest", "{'regions':['cn-shanghai',' eu-central-1:iot-eu-2 ']," DEVS1 "}");
	assert_int_equal(req->ntargets, 2);
	assert_target(req, 0, "cn-shanghai", "iot-cn-sh-2");
	assert_target(req, 1, "eu-central-1", "iot-eu-2");
	batch_request_free(req);
	json_err(NULL, "{'strategy':'nearest','regions':[]," DEVS1 "}", 400, "missing_parameter",
		"parameter regions");
	json_err(NULL, "{'strategy':'nearest','regions':['us-east-1','']," DEVS1 "}", 400,
		"invalid_parameter", "parameter regions: item 2 is empty");
	json_err(NULL, "{'strategy':'nearest','regions':['us-east-1','mars-1']," DEVS1 "}", 400,
		"unknown_region", "\"mars-1\"");
	json_err(NULL, "{'strategy':'nearest','regions':['us-east-1',7]," DEVS1 "}", 400,
		"invalid_json", "regions[1] must be a string, got a number");
	json_err(NULL, "{'strategy':'nearest','regions':{}," DEVS1 "}", 400, "invalid_json",
		"regions must be a string or a list of strings, got an object");
	json_err(NULL, "{'targetRegion':'eu-central-1','regions':['us-east-1']," DEVS1 "}", 400,
		"invalid_parameter", "parameter regions: only with strategy nearest");
	json_err(NULL, "{'strategy':'nearest','regions':['us-east-1'],'targetAccount':'a',"
		"'authCode':'123456'," DEVS1 "}", 400, "invalid_strategy", "targetAccount");
}

static void test_json_conflict(void **state)
{
	(void)state;
	json_err(EU, "{'strategy':'region'," DEVS1 "}", 400, "invalid_parameter",
		"parameter strategy: given twice");
	json_err(EU, "{'targetRegion':'eu-central-1'," DEVS1 "}", 400, "invalid_parameter",
		"parameter targetRegion: given twice (in the query string and in the JSON body)");
	json_err("strategy=nearest&regions=us-east-1", "{'regions':['us-east-1']," DEVS1 "}", 400,
		"invalid_parameter", "parameter regions: given twice");
	json_err(EU "&targetAccount=a&authCode=123456", "{'authCode':'123456'," DEVS1 "}", 400,
		"invalid_parameter", "parameter authCode: given twice");
	/* An empty value on either side is no value. */
	batch_request_free(json_ok("strategy=region&targetRegion=", "{'targetRegion':'eu-central-1',"
		"'strategy':''," DEVS1 "}"));
	/* Unknown query parameters with a JSON body too. */
	json_err(EU "&devices=x", "{" DEVS1 "}", 400, "invalid_parameter", "\"devices\": unknown");
}

static void test_json_invalid(void **state)
{
	(void)state;
	check_err(EU, "application/json", "", 0, MAX, 400, "invalid_json", "JSON body: empty",
		__LINE__);
	json_err(EU, "{'devices':[}", 400, "invalid_json", "JSON body: parse error");
	json_err(EU, "{" DEVS1 "} x", 400, "invalid_json", "JSON body:");
	json_err(EU, "{" DEVS1 "} {}", 400, "invalid_json", "JSON body:");
	json_err(EU, "/* c */ {" DEVS1 "}", 400, "invalid_json", "JSON body:");
	json_err(EU, "{'devices':[[[[[[[[[]]]]]]]]]}", 400, "invalid_json", "nested too deeply");
	json_err(EU, "{'devices':[{'productKey':'a\\u0000b','deviceName':'dev-0001'}]}", 400,
		"invalid_json", "\\u0000");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev\xff'}]}", 400,
		"invalid_json", "JSON body:");
	json_err(EU, "[]", 400, "invalid_json", "the top level must be an object, got an array");
	json_err(EU, "{'device':[]}", 400, "invalid_json", "JSON body: key \"device\" is not known");
	json_err(EU, "{" DEVS1 "," DEVS1 "}", 400, "invalid_json", "key devices given twice");
	json_err(NULL, "{'strategy':'region','strategy':'region','targetRegion':'us-east-1'," DEVS1 "}",
		400, "invalid_json", "key strategy given twice");
	json_err(NULL, "{'strategy':1," DEVS1 "}", 400, "invalid_json",
		"strategy must be a string, got a number");
	json_err(NULL, "{'targetRegion':null," DEVS1 "}", 400, "invalid_json",
		"targetRegion must be a string, got null");
	json_err(EU, "{'authCode':123456,'targetAccount':'a'," DEVS1 "}", 400, "invalid_json",
		"authCode must be a string, got a number");
	json_err(EU, "{'devices':{}}", 400, "invalid_json", "devices must be an array, got an object");
	json_err(EU, "{'products':'a1B2c3D4e5F'}", 400, "invalid_json", "products must be an array");
	json_err(EU, "{" DEVS1 ",'products':['a1B2c3D4e5F']}", 400, "invalid_json",
		"give devices or products, not both");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001'},'x']}", 400,
		"invalid_json", "devices[1] must be an object, got a string");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':'dev-0002'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':'dev-0003'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':4}]}", 400, "invalid_json",
		"devices[3].deviceName must be a string, got a number");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F'}]}", 400, "invalid_json",
		"devices[0].deviceName is required");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001','deviceSecret':'s'}]}",
		400, "invalid_json", "devices[0]: key \"deviceSecret\" is not known");
	json_err(EU, "{'devices':[{'productKey':'a','productKey':'b','deviceName':'dev-0001'}]}",
		400, "invalid_json", "devices[0].productKey given twice");
	json_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev\\u0007'}]}", 400,
		"invalid_json", "devices[0].deviceName holds a control character");
	json_err(EU, "{'products':['a1B2c3D4e5F',true]}", 400, "invalid_json",
		"products[1] must be a string, got a boolean");
	/* A parameter's text is checked like the query string's. */
	json_err(NULL, "{'targetRegion':'eu\\u0001'," DEVS1 "}", 400, "invalid_parameter",
		"parameter targetRegion: not UTF-8 text");
}

static void test_json_field_length(void **state)
{
	char body[1024];

	(void)state;
	snprintf(body, sizeof(body),
		"{\"devices\":[{\"productKey\":\"a1B2c3D4e5F\",\"deviceName\":\"%0256d\"}]}", 0);
	batch_request_free(check_ok(EU, "application/json", body, strlen(body), MAX, __LINE__));
	snprintf(body, sizeof(body),
		"{\"devices\":[{\"productKey\":\"a1B2c3D4e5F\",\"deviceName\":\"%0257d\"}]}", 0);
	check_err(EU, "application/json", body, strlen(body), MAX, 400, "invalid_json",
		"devices[0].deviceName is over 256 bytes", __LINE__);
}

static void test_json_counts(void **state)
{
	(void)state;
	json_err(EU, "{'devices':[]}", 400, "empty_batch", "devices is empty");
	json_err(EU, "{'products':[]}", 400, "empty_batch", "products is empty");
	json_err(EU, "{}", 400, "empty_batch", "give devices or products");
	json_err(EU, "{'targetInstance':'iot-eu-2'}", 400, "empty_batch", "give devices or products");
	batch_request_free(json_check_ok(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':'dev-0002'}]}", 2, __LINE__));
	json_check_err(EU, "{'devices':[{'productKey':'a1B2c3D4e5F','deviceName':'dev-0001'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':'dev-0002'},"
		"{'productKey':'a1B2c3D4e5F','deviceName':'dev-0003'}]}", 2, 413, "too_many_devices",
		"devices holds 3 items, at most 2", __LINE__);
	json_check_err(EU, "{'products':['a','b','c']}", 2, 413, "too_many_devices",
		"products holds 3 items", __LINE__);
}

static void test_json_products(void **state)
{
	struct batch_request *req;

	(void)state;
	req = json_ok(NULL, "{'targetRegion':'cn-shanghai','products':['a1B2c3D4e5F','bad key',"
		"'a1B2c3D4e5F','p_2-X','bad key']}");
	assert_int_equal(req->kind, BATCH_PRODUCTS);
	assert_int_equal(req->strategy, SCHEMA_REGION);
	assert_target(req, 0, "cn-shanghai", "iot-cn-sh-2");
	assert_int_equal(req->nitems, 5);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", NULL, 1);
	assert_item(&req->items[1], BATCH_TAG_INVALID_NAME, "bad key", NULL, 2);
	assert_item(&req->items[2], BATCH_TAG_DUPLICATE, "a1B2c3D4e5F", NULL, 3);
	assert_item(&req->items[3], BATCH_TAG_OK, "p_2-X", NULL, 4);
	assert_item(&req->items[4], BATCH_TAG_INVALID_NAME, "bad key", NULL, 5);
	batch_request_free(req);

	req = json_ok(EU "&targetAccount=acct-b&authCode=000000", "{'products':['a1B2c3D4e5F']}");
	assert_int_equal(req->kind, BATCH_PRODUCTS);
	assert_string_equal(req->target_account, "acct-b");
	batch_request_free(req);

	json_err(NULL, "{'strategy':'nearest','regions':'us-east-1','products':['a1B2c3D4e5F']}", 400,
		"invalid_strategy", "parameter strategy: a products batch allows only region");
	json_err("strategy=nearest", "{'products':['a1B2c3D4e5F']}", 400, "invalid_strategy",
		"products batch");
	json_err("strategy=nearest", "{'products':[]}", 400, "invalid_strategy", "products batch");
	json_err(NULL, "{'products':['a1B2c3D4e5F']}", 400, "missing_parameter", "targetRegion");
}

/* A duplicate of a malformed row is itself malformed, so it stays
 * INVALID_NAME; DUPLICATE is only given among well-formed rows, whose first
 * occurrence stays OK. */
static void test_tags(void **state)
{
	struct batch_request *req;
	char longpk[64], body[512];

	(void)state;
	memset(longpk, 'k', 33);
	longpk[33] = '\0';
	snprintf(body, sizeof(body), CSV_HDR
		"a1B2c3D4e5F,dev-0001\n"   /* 2 */
		"a1B2c3D4e5F,dev\n"        /* 3 too short */
		"a1B2c3D4e5F,dev-0001\n"   /* 4 duplicate of 2 */
		"a1B2c3D4e5F,dev\n"        /* 5 repeat of a malformed row */
		"a1B2c3D4e5F,DEV-0001\n"   /* 6 case matters */
		"b1B2c3D4e5F,dev-0001\n"   /* 7 other product */
		"a1B2c3D4e5F,dev 0002\n"   /* 8 space */
		"%s,dev-0001\n"            /* 9 product key too long */
		",dev-0001\n"              /* 10 empty product key */
		"a1B2c3D4e5F,\n"           /* 11 empty device name */
		"a1B2c3D4e5F,dev-0001\n"   /* 12 duplicate again */
		"a1_B-2,A.b@c:d-_0123456789012345678901\n" /* 13 every allowed character, 32 long */
		"a1B2c3D4e5F,d\xc3\xa9v-0001\n" /* 14 non-ASCII */
		"b1B2c3D4e5F,dev-0001\n",  /* 15 duplicate of 7 */
		longpk);
	req = csv_ok(EU, body);
	assert_int_equal(req->nitems, 14);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0001", 2);
	assert_item(&req->items[1], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "dev", 3);
	assert_item(&req->items[2], BATCH_TAG_DUPLICATE, "a1B2c3D4e5F", "dev-0001", 4);
	assert_item(&req->items[3], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "dev", 5);
	assert_item(&req->items[4], BATCH_TAG_OK, "a1B2c3D4e5F", "DEV-0001", 6);
	assert_item(&req->items[5], BATCH_TAG_OK, "b1B2c3D4e5F", "dev-0001", 7);
	assert_item(&req->items[6], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "dev 0002", 8);
	assert_item(&req->items[7], BATCH_TAG_INVALID_NAME, longpk, "dev-0001", 9);
	assert_item(&req->items[8], BATCH_TAG_INVALID_NAME, "", "dev-0001", 10);
	assert_item(&req->items[9], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "", 11);
	assert_item(&req->items[10], BATCH_TAG_DUPLICATE, "a1B2c3D4e5F", "dev-0001", 12);
	assert_item(&req->items[11], BATCH_TAG_OK, "a1_B-2", "A.b@c:d-_0123456789012345678901", 13);
	assert_item(&req->items[12], BATCH_TAG_INVALID_NAME, "a1B2c3D4e5F", "d\xc3\xa9v-0001", 14);
	assert_item(&req->items[13], BATCH_TAG_DUPLICATE, "b1B2c3D4e5F", "dev-0001", 15);
	batch_request_free(req);

	/* Same tags from JSON, rows are index + 1. */
	req = json_ok(EU, "{'devices':[{'productKey':'p1','deviceName':'dev-0001'},"
		"{'productKey':'p1','deviceName':'x'},{'productKey':'p1','deviceName':'dev-0001'},"
		"{'productKey':'p1','deviceName':'x'}]}");
	assert_item(&req->items[0], BATCH_TAG_OK, "p1", "dev-0001", 1);
	assert_item(&req->items[1], BATCH_TAG_INVALID_NAME, "p1", "x", 2);
	assert_item(&req->items[2], BATCH_TAG_DUPLICATE, "p1", "dev-0001", 3);
	assert_item(&req->items[3], BATCH_TAG_INVALID_NAME, "p1", "x", 4);
	batch_request_free(req);
}

/* 100,000 rows, each name twice (second half repeats the first in reverse):
 * quick only if duplicate detection is not quadratic. */
static void test_many_duplicates(void **state)
{
	const size_t half = 50000;
	size_t cap = 32 + 2 * half * 32, off;
	char *s = malloc(cap);
	struct batch_request *req;

	(void)state;
	assert_non_null(s);
	off = (size_t)snprintf(s, cap, "productKey,deviceName\n");
	for (size_t i = 0; i < 2 * half; i++)
		off += (size_t)snprintf(s + off, cap - off, "a1B2c3D4e5F,dev-%06zu\n",
			i < half ? i : 2 * half - 1 - i);
	req = check_ok(EU, "text/csv", s, off, 2 * half, __LINE__);
	assert_int_equal(req->nitems, 2 * half);
	for (size_t i = 0; i < 2 * half; i++) {
		assert_int_equal(req->items[i].tag, i < half ? BATCH_TAG_OK : BATCH_TAG_DUPLICATE);
		assert_int_equal(req->items[i].row, i + 2);
	}
	batch_request_free(req);
	free(s);
}

static void test_template_and_free(void **state)
{
	struct batch_request *req;

	(void)state;
	batch_request_free(NULL);
	assert_string_equal(batch_template_csv, "productKey,deviceName\r\na1B2c3D4e5F,dev-0001\r\n");
	/* The template itself is a good upload. */
	req = check_ok(EU, "text/csv", batch_template_csv, strlen(batch_template_csv), MAX, __LINE__);
	assert_int_equal(req->nitems, 1);
	assert_item(&req->items[0], BATCH_TAG_OK, "a1B2c3D4e5F", "dev-0001", 2);
	batch_request_free(req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_csv),
		cmocka_unit_test(test_lf_and_blank_lines),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_columns),
		cmocka_unit_test(test_row_limit),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_bad_text),
		cmocka_unit_test(test_media_type),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_strategy),
		cmocka_unit_test(test_region_target),
		cmocka_unit_test(test_nearest),
		cmocka_unit_test(test_account),
		cmocka_unit_test(test_json_devices),
		cmocka_unit_test(test_json_conflict),
		cmocka_unit_test(test_json_invalid),
		cmocka_unit_test(test_json_field_length),
		cmocka_unit_test(test_json_counts),
		cmocka_unit_test(test_json_products),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_many_duplicates),
		cmocka_unit_test(test_template_and_free),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
