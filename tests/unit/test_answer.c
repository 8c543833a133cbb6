#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "answer.h"

static void expect_success(const struct answer_resource *res, size_t n, const char *want)
{
	char buf[1024];
	int len;

	memset(buf, 'X', sizeof(buf));
	len = answer_success(buf, sizeof(buf), res, n);
	assert_int_equal(len, (int)strlen(want));
	assert_string_equal(buf, want);
}

static void test_one_resource(void **state)
{
	const struct answer_resource res[] = {
		{ "mqtt", "a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.example.com", 1883, NULL },
	};

	(void)state;
	expect_success(res, 1,
		"{\"code\":200,\"data\":{\"resources\":{\"mqtt\":{\"host\":"
		"\"a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.example.com\",\"port\":1883}}},"
		"\"message\":\"success\"}");
}

static void test_short_host(void **state)
{
	const struct answer_resource res[] = { { "mqtt", "h", 1883, NULL } };

	(void)state;
	expect_success(res, 1,
		"{\"code\":200,\"data\":{\"resources\":{\"mqtt\":{\"host\":\"h\",\"port\":1883}}},"
		"\"message\":\"success\"}");
}

static void test_two_resources_in_order(void **state)
{
	const struct answer_resource res[] = {
		{ "mqtt", "m.example.com", 1883, NULL },
		{ "http", "h.example.com", 443, NULL },
	};
	const struct answer_resource rev[] = {
		{ "http", "h.example.com", 443, NULL },
		{ "mqtt", "m.example.com", 1883, NULL },
	};

	(void)state;
	expect_success(res, 2,
		"{\"code\":200,\"data\":{\"resources\":{"
		"\"mqtt\":{\"host\":\"m.example.com\",\"port\":1883},"
		"\"http\":{\"host\":\"h.example.com\",\"port\":443}}},"
		"\"message\":\"success\"}");
	expect_success(rev, 2,
		"{\"code\":200,\"data\":{\"resources\":{"
		"\"http\":{\"host\":\"h.example.com\",\"port\":443},"
		"\"mqtt\":{\"host\":\"m.example.com\",\"port\":1883}}},"
		"\"message\":\"success\"}");
}

static void test_with_ip(void **state)
{
	const struct answer_resource res[] = {
		{ "mqtt", "h", 1883, "1.2.3.4" },
		{ "http", "w", 80, NULL },
	};

	(void)state;
	expect_success(res, 2,
		"{\"code\":200,\"data\":{\"resources\":{"
		"\"mqtt\":{\"host\":\"h\",\"port\":1883,\"ip\":\"1.2.3.4\"},"
		"\"http\":{\"host\":\"w\",\"port\":80}}},"
		"\"message\":\"success\"}");
}

static void test_no_resources(void **state)
{
	(void)state;
	expect_success(NULL, 0, "{\"code\":200,\"data\":{\"resources\":{}},\"message\":\"success\"}");
}

static void test_escaping(void **state)
{
	const struct answer_resource res[] = { { "mqtt", "a/b\"c\\d", 1, NULL } };
	char buf[256];

	(void)state;
	expect_success(res, 1,
		"{\"code\":200,\"data\":{\"resources\":{\"mqtt\":{\"host\":\"a/b\\\"c\\\\d\","
		"\"port\":1}}},\"message\":\"success\"}");
	assert_int_equal(answer_error(buf, sizeof(buf), 460, "line\nbreak"),
		(int)strlen("{\"code\":460,\"message\":\"line\\nbreak\"}"));
	assert_string_equal(buf, "{\"code\":460,\"message\":\"line\\nbreak\"}");
}

static void test_error_body(void **state)
{
	char buf[128];
	const char *want = "{\"code\":460,\"message\":\"productKey missing\"}";

	(void)state;
	assert_int_equal(answer_error(buf, sizeof(buf), 460, "productKey missing"), (int)strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(answer_error(buf, sizeof(buf), 5001, "device not found"),
		(int)strlen("{\"code\":5001,\"message\":\"device not found\"}"));
	assert_string_equal(buf, "{\"code\":5001,\"message\":\"device not found\"}");
}

static void test_too_small(void **state)
{
	const struct answer_resource res[] = { { "mqtt", "h", 1883, NULL } };
	const char *want = "{\"code\":200,\"data\":{\"resources\":{\"mqtt\":{\"host\":\"h\","
			   "\"port\":1883}}},\"message\":\"success\"}";
	const char *err = "{\"code\":460,\"message\":\"bad encoding\"}";
	size_t wlen = strlen(want), elen = strlen(err);
	char buf[128];

	(void)state;
	/* Exactly the length leaves no room for the NUL. */
	assert_int_equal(answer_success(buf, wlen, res, 1), -1);
	assert_int_equal(answer_success(buf, 1, res, 1), -1);
	assert_int_equal(answer_success(buf, 0, res, 1), -1);
	assert_int_equal(answer_success(buf, wlen + 1, res, 1), (int)wlen);
	assert_string_equal(buf, want);
	assert_int_equal(answer_error(buf, elen, 460, "bad encoding"), -1);
	assert_int_equal(answer_error(buf, elen + 1, 460, "bad encoding"), (int)elen);
	assert_string_equal(buf, err);
}

static void test_default_answer_fits_192(void **state)
{
	char host[101];
	char buf[192];
	struct answer_resource res[1];
	int len;

	(void)state;
	memset(host, 'h', 100);
	host[100] = '\0';
	res[0] = (struct answer_resource){ "mqtt", host, 65535, NULL };
	len = answer_success(buf, sizeof(buf), res, 1);
	assert_int_equal(len, 187);
	assert_int_equal(strlen(buf), 187);
	assert_memory_equal(buf, "{\"code\":200,\"data\":{\"resources\":{\"mqtt\":{\"host\":\"hhh", 51);
	assert_string_equal(buf + 49 + 100, "\",\"port\":65535}}},\"message\":\"success\"}");
}

static void test_bad_input(void **state)
{
	const struct answer_resource no_host[] = { { "mqtt", NULL, 1883, NULL } };
	const struct answer_resource bad_port[] = { { "mqtt", "h", 65536, NULL } };
	const struct answer_resource neg_port[] = { { "mqtt", "h", -1, NULL } };
	const struct answer_resource bad_utf8[] = { { "mqtt", "h\xff", 1, NULL } };
	char buf[256];

	(void)state;
	assert_int_equal(answer_success(buf, sizeof(buf), no_host, 1), -1);
	assert_int_equal(answer_success(buf, sizeof(buf), bad_port, 1), -1);
	assert_int_equal(answer_success(buf, sizeof(buf), neg_port, 1), -1);
	assert_int_equal(answer_success(buf, sizeof(buf), bad_utf8, 1), -1);
	assert_int_equal(answer_error(buf, sizeof(buf), 500, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_resource),
		cmocka_unit_test(test_short_host),
		cmocka_unit_test(test_two_resources_in_order),
		cmocka_unit_test(test_with_ip),
		cmocka_unit_test(test_no_resources),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_error_body),
		cmocka_unit_test(test_too_small),
		cmocka_unit_test(test_default_answer_fits_192),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
