/* Unit tests for src/registry.c: product PUT bodies and device registration
 * uploads (CSV and {"count":N}), every rule and the order of the checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "registry.h"

static struct catalog *test_cat;

/* cn-shanghai: iot-cn-sh-public, iot-cn-sh-2 (default). eu-central-1: iot-eu-1 (none marked). */
static int setup(void **state)
{
	static const char json[] =
		"{\"regions\":["
		"{\"id\":\"cn-shanghai\",\"latitude\":31,\"longitude\":121,\"instances\":["
		" {\"id\":\"iot-cn-sh-public\",\"endpoints\":{\"mqtt\":{\"host\":\"sh.example.com\",\"port\":1883}}},"
		" {\"id\":\"iot-cn-sh-2\",\"default\":true,\"endpoints\":{\"mqtt\":{\"host\":\"sh2.example.com\",\"port\":1883}}}]},"
		"{\"id\":\"eu-central-1\",\"latitude\":50,\"longitude\":8,\"instances\":["
		" {\"id\":\"iot-eu-1\",\"endpoints\":{\"mqtt\":{\"host\":\"eu1.example.com\",\"port\":1883}}}]}]}";
	char *cause = NULL;

	(void)state;
	if (catalog_parse(json, strlen(json), "test", &test_cat, &cause) != 0)
		fail_msg("catalog_parse: %s", cause);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	catalog_unref(test_cat);
	return 0;
}

static int product(const char *body, struct registry_product *p, struct registry_error *err)
{
	return registry_product_parse(body, strlen(body), test_cat, p, err);
}

static void product_err(const char *body, int status, const char *code, const char *needle, int line)
{
	struct registry_product p;
	struct registry_error err = { 0 };

	if (registry_product_parse(body, strlen(body), test_cat, &p, &err) != -1 || err.status != status || err.code == NULL ||
	    strcmp(err.code, code) != 0 || strstr(err.message, needle) == NULL)
		fail_msg("line %d: expected %d %s [%s], got %d %s: %s", line, status, code, needle, err.status,
			err.code ? err.code : "(null)", err.message);
}
#define product_err(b, s, c, n) product_err((b), (s), (c), (n), __LINE__)

static void test_product_good(void **state)
{
	struct registry_product p;
	struct registry_error err = { 0 };

	(void)state;
	assert_int_equal(product("{\"homeRegion\":\"cn-shanghai\",\"homeInstance\":\"iot-cn-sh-public\","
				 "\"account\":\"acct-a\",\"locked\":true,\"bootstrapAuth\":\"required\"}",
				 &p, &err),
		0);
	assert_string_equal(p.region->id, "cn-shanghai");
	assert_string_equal(p.instance->id, "iot-cn-sh-public");
	assert_string_equal(p.account, "acct-a");
	assert_true(p.locked);
	assert_string_equal(p.auth, "required");

	/* Defaults: the region's default instance, account "default", unlocked, no auth. */
	assert_int_equal(product("{\"homeRegion\":\"cn-shanghai\"}", &p, &err), 0);
	assert_string_equal(p.instance->id, "iot-cn-sh-2");
	assert_string_equal(p.account, "default");
	assert_false(p.locked);
	assert_string_equal(p.auth, "none");
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_OFF);
	assert_false(p.pre_auth);
	assert_int_equal(product("{\"homeRegion\":\"cn-shanghai\",\"dynamicRegistration\":\"preregistered\","
				 "\"preAuth\":true}", &p, &err), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_PREREGISTERED);
	assert_true(p.pre_auth);
	assert_int_equal(product("{\"homeRegion\":\"cn-shanghai\",\"dynamicRegistration\":\"open\"}", &p, &err), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_OPEN);
	/* No instance marked default: the first. */
	assert_int_equal(product("{\"homeRegion\":\"eu-central-1\",\"locked\":false,\"bootstrapAuth\":\"none\"}", &p, &err),
		0);
	assert_string_equal(p.instance->id, "iot-eu-1");
	assert_false(p.locked);
}

static void test_product_bad(void **state)
{
	(void)state;
	product_err("", 400, "invalid_json", "body must be a JSON object: ");
	product_err("{\"homeRegion\":", 400, "invalid_json", "body must be a JSON object: ");
	product_err("[1]", 400, "invalid_json", "body must be a JSON object");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"color\":1}", 400, "invalid_field", "unknown field \"color\"");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"account\":\"acct-b\",\"account\":\"acct-a\"}", 400, "invalid_json",
		"key \"account\" given twice");
	product_err("{\"homeRegion\":1}", 400, "invalid_field", "are strings; locked and preAuth are booleans");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"locked\":\"yes\"}", 400, "invalid_field", "locked and preAuth are booleans");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"locked\":null}", 400, "invalid_field", "locked and preAuth are booleans");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"preAuth\":1}", 400, "invalid_field", "locked and preAuth are booleans");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"dynamicRegistration\":true}", 400, "invalid_field",
		"dynamicRegistration are strings");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"dynamicRegistration\":\"on\"}", 400, "invalid_field",
		"dynamicRegistration: \"off\", \"preregistered\" or \"open\"");
	product_err("{\"account\":\"a\"}", 400, "invalid_field", "homeRegion is required");
	product_err("{\"homeRegion\":\"mars-north-1\"}", 400, "unknown_region", "\"mars-north-1\" is not in the catalog");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"homeInstance\":\"iot-eu-1\"}", 400, "unknown_instance",
		"\"iot-eu-1\" is not in region cn-shanghai");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"account\":\"\"}", 400, "invalid_field", "account: 1-64");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"account\":\"a b\"}", 400, "invalid_field", "account: 1-64");
	product_err("{\"homeRegion\":\"cn-shanghai\",\"bootstrapAuth\":\"maybe\"}", 400, "invalid_field",
		"bootstrapAuth: \"none\" or \"required\"");
	/* Strict JSON, all of the body: no comments, nothing after a NUL. */
	product_err("{\"homeRegion\":\"cn-shanghai\" /* c */}", 400, "invalid_json", "comment found in input text, comments are not enabled. at byte 28");
	product_err("{\"homeRegion\":\"cn-shanghai\"} // c", 400, "invalid_json", "body must be a JSON object: ");
	{
		static const char nul[] = "{\"homeRegion\":\"cn-shanghai\"}\0{\"x\":1}";
		struct registry_product p;
		struct registry_error err = { 0 };

		assert_int_equal(registry_product_parse(nul, sizeof(nul) - 1, test_cat, &p, &err), -1);
		assert_string_equal(err.code, "invalid_json");
	}
	/* The checks run in order: the region before the account. */
	product_err("{\"homeRegion\":\"mars\",\"account\":\"a b\"}", 400, "unknown_region", "mars");
}

static long csv(const char *body, struct registry_device **d, struct registry_error *err)
{
	*d = NULL;
	return registry_devices_csv(body, strlen(body), d, err);
}

static void csv_err(const char *body, int status, const char *code, const char *needle, int line)
{
	struct registry_device *d;
	struct registry_error err = { 0 };

	if (csv(body, &d, &err) != -1 || err.status != status || err.code == NULL || strcmp(err.code, code) != 0 ||
	    strstr(err.message, needle) == NULL)
		fail_msg("line %d: expected %d %s [%s], got %d %s: %s", line, status, code, needle, err.status,
			err.code ? err.code : "(null)", err.message);
	assert_null(d);
}
#define csv_err(b, s, c, n) csv_err((b), (s), (c), (n), __LINE__)

static void test_csv_good(void **state)
{
	struct registry_device *d;
	struct registry_error err = { 0 };

	(void)state;
	assert_int_equal(csv("deviceName\r\nsensor-0001\r\nsensor-0002\r\n", &d, &err), 2);
	assert_string_equal(d[0].name, "sensor-0001");
	assert_string_equal(d[0].secret, "");
	assert_int_equal(d[0].row, 2);
	assert_string_equal(d[1].name, "sensor-0002");
	assert_int_equal(d[1].row, 3);
	free(d);

	/* BOM, LF, a blank line, a quoted field, a secret given and one left to generate. */
	assert_int_equal(csv("\xef\xbb\xbf" "deviceName,deviceSecret\n\"sec-dev1\",s3cr3t!\n\nsec-dev2,\n", &d, &err), 2);
	assert_string_equal(d[0].name, "sec-dev1");
	assert_string_equal(d[0].secret, "s3cr3t!");
	assert_string_equal(d[1].name, "sec-dev2");
	assert_string_equal(d[1].secret, "");
	assert_int_equal(d[1].row, 3);
	free(d);
}

static void test_csv_bad(void **state)
{
	char big[64 + 2 + 32];

	(void)state;
	csv_err("", 400, "invalid_csv", "row 1: header must be");
	csv_err("name\ndev-0001\n", 400, "invalid_csv", "row 1: header must be");
	csv_err("deviceName,secret\ndev-0001,x\n", 400, "invalid_csv", "row 1: header must be");
	csv_err("deviceName,deviceSecret,x\n", 400, "invalid_csv", "row 1: header must be");
	csv_err("deviceName\n", 400, "invalid_csv", "no devices after the header");
	csv_err("deviceName\n\"dev-0001\n", 400, "invalid_csv", "unreadable CSV: ");
	csv_err("deviceName\ndev-0001,x\n", 400, "invalid_csv", "row 2: expected 1 columns, found 2");
	csv_err("deviceName,deviceSecret\ndev-0001\n", 400, "invalid_csv", "row 2: expected 2 columns, found 1");
	csv_err("deviceName\nab\n", 400, "invalid_device_name", "row 2, column deviceName");
	csv_err("deviceName\ndev-0001\n\ndev 2\n", 400, "invalid_device_name", "row 3, column deviceName");
	csv_err("deviceName,deviceSecret\ndev-0001,a b\n", 400, "invalid_secret", "row 2, column deviceSecret");
	memset(big, 'a', sizeof(big));
	memcpy(big, "deviceName,deviceSecret\nd-01,", 29);
	big[sizeof(big) - 1] = '\0'; /* a 68-character secret */
	csv_err(big, 400, "invalid_secret", "row 2, column deviceSecret");
	csv_err("deviceName\ndev-0001\ndev-0002\ndev-0001\n", 400, "duplicate_row",
		"row 4, column deviceName: \"dev-0001\" repeats row 2");
}

static void test_csv_limit(void **state)
{
	size_t n = REGISTRY_DEVICES_MAX + 1, cap = 16 + n * 12, off;
	char *body = malloc(cap);
	struct registry_device *d;
	struct registry_error err = { 0 };

	(void)state;
	assert_non_null(body);
	off = (size_t)snprintf(body, cap, "deviceName\n");
	for (size_t i = 0; i < REGISTRY_DEVICES_MAX; i++)
		off += (size_t)snprintf(body + off, cap - off, "dev-%06zu\n", i);
	assert_int_equal(registry_devices_csv(body, off, &d, &err), REGISTRY_DEVICES_MAX);
	assert_string_equal(d[REGISTRY_DEVICES_MAX - 1].name, "dev-009999");
	free(d);
	off += (size_t)snprintf(body + off, cap - off, "dev-x\n");
	assert_int_equal(registry_devices_csv(body, off, &d, &err), -1);
	assert_int_equal(err.status, 413);
	assert_string_equal(err.code, "too_many_devices");
	free(body);
}

static long count(const char *body, struct registry_error *err)
{
	return registry_devices_count(body, strlen(body), err);
}

static void test_count(void **state)
{
	struct registry_error err = { 0 };

	(void)state;
	assert_int_equal(count("{\"count\":3}", &err), 3);
	assert_int_equal(count(" {\"count\": 10000} ", &err), 10000);
	assert_int_equal(count("{\"count\":10001}", &err), -1);
	assert_int_equal(err.status, 413);
	assert_string_equal(err.code, "invalid_count");
	assert_int_equal(count("{\"count\":0}", &err), -1);
	assert_int_equal(err.status, 400);
	assert_string_equal(err.code, "invalid_count");
	static const char *const bad[] = { "", "[]", "{}", "{\"count\":1.5}", "{\"count\":\"3\"}",
		"{\"count\":3,\"x\":1}", "{\"count\":", "3", "{\"count\":3 /* c */}", "{\"count\":3} 4" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(count(bad[i], &err), -1);
		assert_int_equal(err.status, 400);
		assert_string_equal(err.code, "invalid_json");
	}
	/* What follows a NUL is part of the body too. */
	assert_int_equal(registry_devices_count("{\"count\":3}\0{", 13, &err), -1);
	assert_string_equal(err.code, "invalid_json");
}

static void test_unique(void **state)
{
	struct registry_device d[3] = { { "dev-b", "", 1 }, { "dev-a", "", 2 }, { "dev-c", "", 3 } };
	struct registry_error err = { 0 };

	(void)state;
	assert_int_equal(registry_devices_unique(d, 3, &err), 0);
	assert_int_equal(registry_devices_unique(d, 0, &err), 0);
	strcpy(d[2].name, "dev-b");
	assert_int_equal(registry_devices_unique(d, 3, &err), -1);
	assert_string_equal(err.code, "duplicate_row");
	assert_non_null(strstr(err.message, "row 3, column deviceName: \"dev-b\" repeats row 1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_product_good),
		cmocka_unit_test(test_product_bad),
		cmocka_unit_test(test_csv_good),
		cmocka_unit_test(test_csv_bad),
		cmocka_unit_test(test_csv_limit),
		cmocka_unit_test(test_count),
		cmocka_unit_test(test_unique),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
