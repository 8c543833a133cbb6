#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "form.h"
#include "secret.h"

#define SDK_BODY "productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&resources=mqtt"

/* The buffers the last parse decoded in place: copies of exactly the given
 * length from the test allocator, whose guard bytes catch a write past them. */
static char *query_copy, *body_copy;

static char *copy_of(const char *s, size_t len)
{
	char *c;

	if (s == NULL)
		return NULL;
	c = test_malloc(len ? len : 1);
	memcpy(c, s, len);
	return c;
}

static void release(void)
{
	if (query_copy != NULL)
		test_free(query_copy);
	if (body_copy != NULL)
		test_free(body_copy);
	query_copy = body_copy = NULL;
}

/* Clears REQ and frees the buffers it points into. */
static void done(struct form_request *req)
{
	form_request_clear(req);
	release();
}

/* Parses copies of QUERY and BODY (C strings here, passed without their NUL)
 * that stay alive until done() or release(). */
static int parse_len(struct form_request *req, const char *query, const char *body, size_t body_len,
	const char **why)
{
	size_t query_len = query != NULL ? strlen(query) : 0;

	release();
	query_copy = copy_of(query, query_len);
	body_copy = copy_of(body, body_len);
	return form_parse(req, query_copy, query_len, body_copy, body_len, why);
}

static int parse(struct form_request *req, const char *query, const char *body, const char **why)
{
	return parse_len(req, query, body, body != NULL ? strlen(body) : 0, why);
}

static void expect_ok(struct form_request *req, const char *query, const char *body)
{
	const char *why = "unset";

	if (parse(req, query, body, &why) != 0)
		fail_msg("parse failed: %s (query %s, body %s)", why, query ? query : "NULL",
			body ? body : "NULL");
	assert_null(why);
}

/* Asserts that parsing fails with exactly WHY. */
static void expect_fail(const char *query, const char *body, const char *want)
{
	struct form_request req;
	const char *why = NULL;

	if (parse(&req, query, body, &why) == 0)
		fail_msg("parse succeeded (query %s, body %s), want %s", query ? query : "NULL",
			body ? body : "NULL", want);
	assert_non_null(why);
	assert_string_equal(why, want);
	done(&req);
}

static void expect_body_fail(const char *body, const char *want)
{
	expect_fail(NULL, body, want);
}

static void test_sdk_body(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, NULL, SDK_BODY);
	assert_string_equal(req.product_key, "a1PK");
	assert_string_equal(req.device_name, "dev1");
	assert_string_equal(req.client_id, "a1PK.dev1");
	assert_null(req.version);
	assert_null(req.timestamp);
	assert_null(req.sign);
	assert_null(req.signmethod);
	assert_int_equal(req.nresources, 1);
	assert_string_equal(req.resources[0], "mqtt");
	done(&req);
}

static void test_spec_example_body(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, NULL,
		"productKey=a1B2c3D4e5F&deviceName=dev-0001&clientId=dev-0001&version=default"
		"&timestamp=1700000000000&resources=mqtt");
	assert_string_equal(req.product_key, "a1B2c3D4e5F");
	assert_string_equal(req.device_name, "dev-0001");
	assert_string_equal(req.client_id, "dev-0001");
	assert_string_equal(req.version, "default");
	assert_string_equal(req.timestamp, "1700000000000");
	assert_int_equal(req.nresources, 1);
	assert_string_equal(req.resources[0], "mqtt");
	done(&req);
}

static void test_old_sdk_body(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, NULL, "productKey=a1PK&deviceName=dev1");
	assert_string_equal(req.product_key, "a1PK");
	assert_string_equal(req.device_name, "dev1");
	assert_null(req.client_id);
	assert_int_equal(req.nresources, 1);
	assert_string_equal(req.resources[0], "mqtt");
	done(&req);
}

static void test_body_not_nul_terminated(void **state)
{
	struct form_request req;
	const char *why;
	/* The length stops before "XYZ": a reader past it would see a longer name. */
	char buf[] = "productKey=a1PK&deviceName=dev1XYZ";
	char query[] = "clientId=abc123";

	(void)state;
	assert_int_equal(form_parse(&req, query, sizeof(query) - 1 - 3, buf, sizeof(buf) - 1 - 3, &why), 0);
	assert_string_equal(req.device_name, "dev1");
	assert_string_equal(req.client_id, "abc");
	/* Nothing at or past the given lengths was written, not even a NUL for
	 * the last values. */
	assert_memory_equal(buf + sizeof(buf) - 1 - 3, "XYZ", 4);
	assert_memory_equal(query + sizeof(query) - 1 - 3, "123", 4);
	form_request_clear(&req);
}

static void test_query_only(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, "productKey=a1PK&deviceName=dev1&resources=http", NULL);
	assert_string_equal(req.product_key, "a1PK");
	assert_string_equal(req.device_name, "dev1");
	assert_int_equal(req.nresources, 1);
	assert_string_equal(req.resources[0], "http");
	done(&req);
}

static void test_query_and_body_merge(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, "deviceName=dev1", "productKey=a1PK");
	assert_string_equal(req.product_key, "a1PK");
	assert_string_equal(req.device_name, "dev1");
	done(&req);
}

static void test_body_wins_over_query(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, "productKey=fromQuery&deviceName=queryDev&clientId=q",
		"productKey=fromBody&deviceName=bodyDev");
	assert_string_equal(req.product_key, "fromBody");
	assert_string_equal(req.device_name, "bodyDev");
	assert_string_equal(req.client_id, "q");
	done(&req);
}

static void test_first_occurrence_wins(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, NULL, "productKey=first&deviceName=dev1&productKey=second");
	assert_string_equal(req.product_key, "first");
	done(&req);
}

static void test_names_case_sensitive(void **state)
{
	(void)state;
	expect_body_fail("productkey=a1PK&deviceName=dev1", "productKey missing");
}

static void test_unknown_ignored(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, "foo=bar", "productKey=a1PK&extra=1&deviceName=dev1&zzz=");
	assert_string_equal(req.product_key, "a1PK");
	done(&req);
}

static void test_plus_and_percent_decoding(void **state)
{
	struct form_request req;

	(void)state;
	expect_ok(&req, NULL, "productKey=a1PK&deviceName=dev1&clientId=a+b%20c%2Bd");
	assert_string_equal(req.client_id, "a b c+d");
	done(&req);
	expect_ok(&req, NULL, "productKey=a1PK&deviceName=dev%3A1%40x&version=1%2e0");
	assert_string_equal(req.device_name, "dev:1@x");
	assert_string_equal(req.version, "1.0");
	done(&req);
	/* Valid multi-byte UTF-8 is kept. */
	expect_ok(&req, "clientId=caf%C3%A9", "productKey=a1PK&deviceName=dev1");
	assert_string_equal(req.client_id, "caf\xc3\xa9");
	done(&req);
}

static void test_bad_percent_escapes(void **state)
{
	(void)state;
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%G1", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=x%", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=x%4", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%4", "bad encoding");
	expect_fail("productKey=a1PK%", "deviceName=dev1", "bad encoding");
	/* Unknown parameters do not escape the check. */
	expect_body_fail("productKey=a1PK&deviceName=dev1&zz=%zz", "bad encoding");
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%C3%28", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%C3", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%C0%AF", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%E0%80%AF", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%F0%80%80%AF", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%ED%A0%80", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=%F5%80%80%80", "bad encoding");
	expect_fail("version=%FF", "productKey=a1PK&deviceName=dev1", "bad encoding");
}

static void test_control_chars(void **state)
{
	(void)state;
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=a%0A", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=a%7F", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=a%09b", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&clientId=a%00b", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1\n", "bad encoding");
}

static void test_raw_nul_in_body(void **state)
{
	struct form_request req;
	const char *why = NULL;
	char body[] = "productKey=a1PK&deviceName=dev1\0&x=y";

	(void)state;
	assert_int_equal(form_parse(&req, NULL, 0, body, sizeof(body) - 1, &why), -1);
	assert_string_equal(why, "bad encoding");
	form_request_clear(&req);
}

static void test_malformed_pairs(void **state)
{
	(void)state;
	expect_body_fail("productKey=a1PK&&deviceName=dev1", "bad encoding");
	expect_body_fail("productKey=a1PK&deviceName=dev1&flag", "bad encoding");
}

static void test_missing_and_empty(void **state)
{
	(void)state;
	expect_body_fail("deviceName=dev1", "productKey missing");
	expect_body_fail("productKey=&deviceName=dev1", "productKey empty");
	expect_body_fail("productKey=a1PK", "deviceName missing");
	expect_body_fail("productKey=a1PK&deviceName=", "deviceName empty");
	expect_fail(NULL, NULL, "productKey missing");
	expect_fail("", "", "productKey missing");
}

static void test_product_key_rules(void **state)
{
	struct form_request req;
	char body[128];
	const char *k32 = "abcdefghijABCDEFGHIJ0123456789_-";

	(void)state;
	assert_int_equal(strlen(k32), 32);
	snprintf(body, sizeof(body), "productKey=%s&deviceName=dev1", k32);
	expect_ok(&req, NULL, body);
	assert_string_equal(req.product_key, k32);
	done(&req);
	snprintf(body, sizeof(body), "productKey=%sX&deviceName=dev1", k32);
	expect_body_fail(body, "productKey too long");
	expect_ok(&req, NULL, "productKey=a&deviceName=dev1");
	done(&req);
	expect_body_fail("productKey=a.b&deviceName=dev1", "productKey invalid");
	expect_body_fail("productKey=a+b&deviceName=dev1", "productKey invalid");

	assert_true(form_valid_product_key("a"));
	assert_true(form_valid_product_key(k32));
	assert_false(form_valid_product_key(""));
	assert_false(form_valid_product_key(NULL));
	assert_false(form_valid_product_key("abcdefghijABCDEFGHIJ0123456789_-X"));
	assert_false(form_valid_product_key("a/b"));
	assert_false(form_valid_product_key("caf\xc3\xa9"));
}

static void test_device_name_rules(void **state)
{
	struct form_request req;
	char body[128];
	const char *n32 = "ab_.@:-cdefghijklmnopqrstuvwxy09";

	(void)state;
	assert_int_equal(strlen(n32), 32);
	snprintf(body, sizeof(body), "productKey=pk&deviceName=%s", n32);
	expect_ok(&req, NULL, body);
	assert_string_equal(req.device_name, n32);
	done(&req);
	snprintf(body, sizeof(body), "productKey=pk&deviceName=%sZ", n32);
	expect_body_fail(body, "deviceName too long");
	expect_body_fail("productKey=pk&deviceName=abc", "deviceName too short");
	expect_ok(&req, NULL, "productKey=pk&deviceName=abcd");
	assert_string_equal(req.device_name, "abcd");
	done(&req);
	expect_body_fail("productKey=pk&deviceName=ab%2Fcd", "deviceName invalid");
	expect_body_fail("productKey=pk&deviceName=ab+cd", "deviceName invalid");

	assert_true(form_valid_device_name("abcd"));
	assert_true(form_valid_device_name(n32));
	assert_false(form_valid_device_name("abc"));
	assert_false(form_valid_device_name(NULL));
	assert_false(form_valid_device_name("ab_.@:-cdefghijklmnopqrstuvwxy09Z"));
	assert_false(form_valid_device_name("ab#cd"));
}

static void expect_client_id(size_t len)
{
	struct form_request req;
	char id[256], body[512];

	assert_true(len < sizeof(id));
	memset(id, 'c', len);
	id[len] = '\0';
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&clientId=%s", id);
	expect_ok(&req, NULL, body);
	assert_string_equal(req.client_id, id);
	done(&req);
}

static void test_client_id_length(void **state)
{
	struct form_request req;
	char id[256], body[512];

	(void)state;
	expect_client_id(64);
	expect_client_id(65);
	expect_client_id(128);
	memset(id, 'c', 129);
	id[129] = '\0';
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&clientId=%s", id);
	expect_body_fail(body, "clientId too long");
	/* Encoded bytes do not count: 128 decoded bytes from 384 encoded ones. */
	body[0] = '\0';
	strcat(body, "productKey=pk&deviceName=dev1&clientId=");
	for (int i = 0; i < 128; i++)
		strcat(body, "%41");
	expect_ok(&req, NULL, body);
	assert_int_equal(strlen(req.client_id), 128);
	done(&req);
	strcat(body, "%41");
	expect_body_fail(body, "clientId too long");
	/* Empty counts as absent. */
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1&clientId=");
	assert_null(req.client_id);
	done(&req);
}

/* The vendor SDK 4.x sends {productKey}.{deviceName}: 65 characters with the
 * longest names allowed. */
static void test_client_id_sdk4(void **state)
{
	struct form_request req;
	const char *pk = "a1PKabcdefghijABCDEFGHIJ0123456_";
	const char *dn = "dev-0001.abcdefghij@klmnopqrst:u";
	char id[80], body[256];

	(void)state;
	assert_int_equal(strlen(pk), FORM_PRODUCT_KEY_MAX);
	assert_int_equal(strlen(dn), FORM_DEVICE_NAME_MAX);
	snprintf(id, sizeof(id), "%s.%s", pk, dn);
	assert_int_equal(strlen(id), 65);
	snprintf(body, sizeof(body), "productKey=%s&deviceName=%s&clientId=%s&resources=mqtt", pk, dn, id);
	expect_ok(&req, NULL, body);
	assert_string_equal(req.product_key, pk);
	assert_string_equal(req.device_name, dn);
	assert_string_equal(req.client_id, id);
	done(&req);
}

static void test_version_timestamp_length(void **state)
{
	struct form_request req;
	char v[66];
	char body[256];

	(void)state;
	memset(v, '1', 64);
	v[64] = '\0';
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&version=%s&timestamp=%s", v, v);
	expect_ok(&req, NULL, body);
	assert_int_equal(strlen(req.version), 64);
	assert_int_equal(strlen(req.timestamp), 64);
	done(&req);
	strcat(v, "1");
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&version=%s", v);
	expect_body_fail(body, "version too long");
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&timestamp=%s", v);
	expect_body_fail(body, "timestamp too long");
}

static void test_sign(void **state)
{
	struct form_request req;
	char s[131];
	char body[256];

	(void)state;
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1&sign=0123456789abcdefABCDEF");
	assert_string_equal(req.sign, "0123456789abcdefABCDEF");
	done(&req);
	memset(s, 'a', 128);
	s[128] = '\0';
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&sign=%s", s);
	expect_ok(&req, NULL, body);
	assert_int_equal(strlen(req.sign), 128);
	done(&req);
	strcat(s, "a");
	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&sign=%s", s);
	expect_body_fail(body, "sign too long");
	expect_body_fail("productKey=pk&deviceName=dev1&sign=abcg", "sign invalid");
}

static void test_signmethod(void **state)
{
	static const struct {
		const char *in, *want;
	} ok[] = {
		{ "hmacmd5", "hmacmd5" },
		{ "hmacsha1", "hmacsha1" },
		{ "hmacsha256", "hmacsha256" },
		{ "HmacSHA256", "hmacsha256" },
		{ "HMACMD5", "hmacmd5" },
		{ "hmacSha1", "hmacsha1" },
	};
	struct form_request req;
	char body[128];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&signmethod=%s", ok[i].in);
		expect_ok(&req, NULL, body);
		assert_string_equal(req.signmethod, ok[i].want);
		done(&req);
	}
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1");
	assert_null(req.signmethod);
	done(&req);
	expect_body_fail("productKey=pk&deviceName=dev1&signmethod=hmacsha512",
		"signmethod unsupported");
	expect_body_fail("productKey=pk&deviceName=dev1&signmethod=sha256", "signmethod unsupported");
	expect_body_fail("productKey=pk&deviceName=dev1&signmethod=hmacmd5x",
		"signmethod unsupported");
}

static void expect_resources(const char *value, size_t n, const char *const *want)
{
	struct form_request req;
	char body[512];

	snprintf(body, sizeof(body), "productKey=pk&deviceName=dev1&resources=%s", value);
	expect_ok(&req, NULL, body);
	assert_int_equal(req.nresources, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(req.resources[i], want[i]);
	done(&req);
}

static void test_resources(void **state)
{
	static const char *const mqtt[] = { "mqtt" };
	static const char *const mqtt_http[] = { "mqtt", "http" };
	static const char *const http_mqtt[] = { "http", "mqtt" };
	static const char *const long16[] = { "abcdefghij012345" };
	struct form_request req;

	(void)state;
	expect_resources("MQTT,+http,,mqtt", 2, mqtt_http);
	expect_resources("MQTT%2C%20http%2C%2Cmqtt", 2, mqtt_http);
	expect_resources("", 1, mqtt);
	expect_resources(",+,", 1, mqtt);
	expect_resources("http,mqtt", 2, http_mqtt);
	expect_resources("abcdefghij012345", 1, long16);
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1");
	assert_int_equal(req.nresources, 1);
	assert_string_equal(req.resources[0], "mqtt");
	done(&req);

	expect_body_fail("productKey=pk&deviceName=dev1&resources=mq+tt", "resources invalid");
	expect_body_fail("productKey=pk&deviceName=dev1&resources=mq%20tt", "resources invalid");
	expect_body_fail("productKey=pk&deviceName=dev1&resources=mqtt,co-ap", "resources invalid");
	expect_body_fail("productKey=pk&deviceName=dev1&resources=abcdefghij0123456",
		"resources invalid");
}

static void test_resources_max(void **state)
{
	struct form_request req;

	(void)state;
	assert_int_equal(FORM_RESOURCES_MAX, 8);
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1&resources=a,b,c,d,e,f,g,h,a,B,h");
	assert_int_equal(req.nresources, 8);
	assert_string_equal(req.resources[0], "a");
	assert_string_equal(req.resources[7], "h");
	done(&req);
	expect_body_fail("productKey=pk&deviceName=dev1&resources=a,b,c,d,e,f,g,h,i",
		"too many resources");
}

static void test_body_too_large(void **state)
{
	struct form_request req;
	const char *why = NULL;
	size_t len = FORM_BODY_MAX + 1;
	char *body = malloc(len);

	(void)state;
	assert_non_null(body);
	memset(body, 'a', len);
	memcpy(body, "x=", 2);
	assert_int_equal(form_parse(&req, NULL, 0, body, len, &why), -1);
	assert_string_equal(why, "body too large");
	form_request_clear(&req);
	free(body);
}

static void test_clear_is_safe(void **state)
{
	struct form_request req;

	(void)state;
	memset(&req, 0, sizeof(req));
	form_request_clear(&req);
	form_request_clear(&req);
	form_request_clear(NULL);
	/* After a failure past decoding, the decoded strings are still owned. */
	expect_body_fail("productKey=pk&deviceName=dev1&a=1&b=2&signmethod=x", "signmethod unsupported");
	/* Failure in the query after a decoded body. */
	expect_fail("a=%", "productKey=pk&deviceName=dev1", "bad encoding");
}

/* Builds "productKey=pk&deviceName=dev1" and then p2=2&p3=3... up to N
 * parameters in all into BUF. */
static void many_params(char *buf, size_t cap, size_t first, size_t n)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = first; i < first + n; i++) {
		int w = i == 0 ? snprintf(buf + off, cap - off, "productKey=pk") :
			i == 1 ? snprintf(buf + off, cap - off, "&deviceName=dev1") :
			snprintf(buf + off, cap - off, "%sp%zu=%zu", off ? "&" : "", i, i);
		assert_true(w > 0 && (size_t)w < cap - off);
		off += (size_t)w;
	}
}

static void test_params_max(void **state)
{
	struct form_request req;
	char body[1024], query[1024];

	(void)state;
	assert_int_equal(FORM_PARAMS_MAX, 32);
	many_params(body, sizeof(body), 0, 32);
	expect_ok(&req, NULL, body);
	assert_int_equal(req.nparams, 32);
	assert_string_equal(req.params[31].value, "31");
	done(&req);
	many_params(body, sizeof(body), 0, 33);
	expect_body_fail(body, "too many parameters");
	/* The limit is on the body and the query together. */
	many_params(body, sizeof(body), 0, 16);
	many_params(query, sizeof(query), 16, 16);
	expect_ok(&req, query, body);
	assert_int_equal(req.nparams, 32);
	done(&req);
	many_params(query, sizeof(query), 16, 17);
	expect_fail(query, body, "too many parameters");
}

static void test_pair_structure(void **state)
{
	struct form_request req;

	(void)state;
	/* One trailing '&' is allowed, as before. */
	expect_ok(&req, "a=1&", "productKey=pk&deviceName=dev1&");
	assert_int_equal(req.nparams, 3);
	done(&req);
	expect_body_fail("&productKey=pk&deviceName=dev1", "bad encoding");
	expect_body_fail("productKey=pk&deviceName=dev1&&", "bad encoding");
	expect_body_fail("productKey=pk&deviceName=dev1&=x", "bad encoding");
	/* The first '=' splits; later ones are part of the value. */
	expect_ok(&req, NULL, "productKey=pk&deviceName=dev1&clientId=a=b%3Dc=");
	assert_string_equal(req.client_id, "a=b=c=");
	done(&req);
	/* Names are taken as sent, never decoded. */
	expect_body_fail("product%4Bey=pk&deviceName=dev1", "productKey missing");
	expect_body_fail("productKey=pk&device+Name=dev1", "deviceName missing");
}

static void test_query_parse(void **state)
{
	char buf[] = "a=1&bb=x+y%21&c=&d=%C3%A9!";
	struct form_param out[4];
	const char *why = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(form_query_parse(buf, sizeof(buf) - 2, out, 4, &n, &why), 0);
	assert_int_equal(n, 4);
	assert_int_equal(out[0].name_len, 1);
	assert_memory_equal(out[0].name, "a", 1);
	assert_string_equal(out[0].value, "1");
	assert_int_equal(out[0].value_len, 1);
	assert_int_equal(out[1].name_len, 2);
	assert_memory_equal(out[1].name, "bb", 2);
	assert_string_equal(out[1].value, "x y!");
	assert_int_equal(out[1].value_len, 4);
	assert_memory_equal(out[2].name, "c", 1);
	assert_string_equal(out[2].value, "");
	assert_int_equal(out[2].value_len, 0);
	assert_memory_equal(out[3].name, "d", 1);
	assert_string_equal(out[3].value, "\xc3\xa9");
	assert_int_equal(out[3].value_len, 2);
	/* Everything points into BUF, and the byte past LEN is untouched. */
	for (size_t i = 0; i < n; i++) {
		assert_true(out[i].name >= buf && out[i].name + out[i].name_len <= buf + sizeof(buf) - 2);
		assert_true(out[i].value >= buf && out[i].value + out[i].value_len < buf + sizeof(buf) - 2);
	}
	assert_int_equal(buf[sizeof(buf) - 2], '!');

	assert_ptr_equal(form_param_find(out, n, "bb"), &out[1]);
	assert_null(form_param_find(out, n, "b"));
	assert_null(form_param_find(out, n, "BB"));
	assert_null(form_param_find(out, n, "bbb"));

	char two[] = "x=1&y=2&z=3";
	assert_int_equal(form_query_parse(two, strlen(two), out, 2, &n, &why), -1);
	assert_string_equal(why, "too many parameters");
	char three[] = "x=1&y=2&z=3";
	assert_int_equal(form_query_parse(three, strlen(three), out, 3, &n, &why), 0);
	assert_int_equal(n, 3);
	assert_ptr_equal(form_param_find(out, n, "z"), &out[2]);
	char bad[] = "x=1&y";
	assert_int_equal(form_query_parse(bad, strlen(bad), out, 4, &n, &why), -1);
	assert_string_equal(why, "bad encoding");
	char esc[] = "x=%2";
	assert_int_equal(form_query_parse(esc, strlen(esc), out, 4, &n, &why), -1);
	assert_string_equal(why, "bad encoding");
	assert_int_equal(form_query_parse(NULL, 0, out, 4, &n, &why), 0);
	assert_int_equal(n, 0);
}

/* A worked example: the content and its HMAC were computed apart, with
 * Python's hmac over the concatenation. */
#define SIGN_CONTENT "ZetazclientIda1PK.dev1devicexdeviceNamedev1extraa b!productKeya1PKtimestamp1700000000000"
#define SIGN_SECRET "99bfd3ffa7bc53fc884777ddf881a788"
#define SIGN_SHA256 "c44c0e4efa26286279c7e7f3d880e070a7c6eca4b95b9d9d94c942128b4b681a"
#define SIGN_MD5 "072d5ca0dbc0ec3ec915c063012f603b"

static void test_sign_content(void **state)
{
	static const char *const skip[] = { "sign", "signmethod", "version", "resources" };
	struct form_request req;
	char out[256], hex[129];
	size_t len = 0;

	(void)state;
	/* Bytewise order ('Z' before 'c', "device" before "deviceName"), the body's
	 * deviceName and Zeta over the query's, values decoded, skipped names out. */
	expect_ok(&req, "deviceName=other&version=default&resources=mqtt&device=x&Zeta=second",
		"productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&timestamp=1700000000000"
		"&signmethod=hmacsha256&sign=00&extra=a+b%21&Zeta=z");
	assert_int_equal(form_sign_content(&req, skip, 4, out, sizeof(out), &len), 0);
	assert_int_equal(len, strlen(SIGN_CONTENT));
	assert_memory_equal(out, SIGN_CONTENT, len);
	assert_int_equal(secret_hmac_hex("hmacsha256", SIGN_SECRET, out, len, hex, sizeof(hex)), 64);
	assert_string_equal(hex, SIGN_SHA256);
	assert_int_equal(secret_hmac_hex(NULL, SIGN_SECRET, out, len, hex, sizeof(hex)), 32);
	assert_string_equal(hex, SIGN_MD5);
	/* Exactly enough room, then one byte short. */
	assert_int_equal(form_sign_content(&req, skip, 4, out, strlen(SIGN_CONTENT), &len), 0);
	assert_int_equal(form_sign_content(&req, skip, 4, out, strlen(SIGN_CONTENT) - 1, &len), -1);
	/* Nothing skipped: sign, signmethod, version and resources come in too. */
	assert_int_equal(form_sign_content(&req, NULL, 0, out, sizeof(out), &len), 0);
	assert_int_equal(len, strlen(SIGN_CONTENT) + strlen("resourcesmqttsign00signmethodhmacsha256versiondefault"));
	assert_memory_equal(out + strlen("ZetazclientIda1PK.dev1devicexdeviceNamedev1extraa b!productKeya1PK"),
		"resourcesmqttsign00signmethodhmacsha256timestamp1700000000000versiondefault",
		strlen("resourcesmqttsign00signmethodhmacsha256timestamp1700000000000versiondefault"));
	done(&req);

	/* The SDK form of SPEC §8. */
	expect_ok(&req, NULL, "productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&timestamp=1&sign=ab");
	assert_int_equal(form_sign_content(&req, skip, 4, out, sizeof(out), &len), 0);
	assert_int_equal(len, strlen("clientIda1PK.dev1deviceNamedev1productKeya1PKtimestamp1"));
	assert_memory_equal(out, "clientIda1PK.dev1deviceNamedev1productKeya1PKtimestamp1", len);
	done(&req);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sdk_body),
		cmocka_unit_test(test_spec_example_body),
		cmocka_unit_test(test_old_sdk_body),
		cmocka_unit_test(test_body_not_nul_terminated),
		cmocka_unit_test(test_query_only),
		cmocka_unit_test(test_query_and_body_merge),
		cmocka_unit_test(test_body_wins_over_query),
		cmocka_unit_test(test_first_occurrence_wins),
		cmocka_unit_test(test_names_case_sensitive),
		cmocka_unit_test(test_unknown_ignored),
		cmocka_unit_test(test_plus_and_percent_decoding),
		cmocka_unit_test(test_bad_percent_escapes),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_raw_nul_in_body),
		cmocka_unit_test(test_malformed_pairs),
		cmocka_unit_test(test_missing_and_empty),
		cmocka_unit_test(test_product_key_rules),
		cmocka_unit_test(test_device_name_rules),
		cmocka_unit_test(test_client_id_length),
		cmocka_unit_test(test_client_id_sdk4),
		cmocka_unit_test(test_version_timestamp_length),
		cmocka_unit_test(test_sign),
		cmocka_unit_test(test_signmethod),
		cmocka_unit_test(test_resources),
		cmocka_unit_test(test_resources_max),
		cmocka_unit_test(test_body_too_large),
		cmocka_unit_test(test_clear_is_safe),
		cmocka_unit_test(test_params_max),
		cmocka_unit_test(test_pair_structure),
		cmocka_unit_test(test_query_parse),
		cmocka_unit_test(test_sign_content),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
