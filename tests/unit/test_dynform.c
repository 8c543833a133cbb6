/* dynform: the Tencent SDK's dynamic registration body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dynform.h"

static int parse(const char *s, struct dynform_tencent *f, const char **why)
{
	return dynform_tencent_parse(s, strlen(s), f, why);
}

static void test_sdk_body(void **state)
{
	/* Byte for byte what the SDK's dynreg.c sends (its format string). */
	static const char body[] = "{\"deviceName\":\"dev1\",\"nonce\":48271000,\"productId\":\"ABCDEFGHIJ\","
				   "\"timestamp\":1700000000,\"signature\":\"NjVhM2FkNzE2MGMzNDk4NzMyM2E4ZmE4MDUxZTVlNjJjNGI1NWQ2NQ==\"}";
	struct dynform_tencent f;
	const char *why = "x";
	char content[256];

	(void)state;
	assert_int_equal(parse(body, &f, &why), 0);
	assert_null(why);
	assert_string_equal(f.product_id, "ABCDEFGHIJ");
	assert_string_equal(f.device_name, "dev1");
	assert_string_equal(f.nonce, "48271000");
	assert_string_equal(f.timestamp, "1700000000");
	assert_string_equal(f.signature, "NjVhM2FkNzE2MGMzNDk4NzMyM2E4ZmE4MDUxZTVlNjJjNGI1NWQ2NQ==");
	assert_int_equal(dynform_tencent_content(&f, content, sizeof(content)), 72);
	assert_string_equal(content, "deviceName=dev1&nonce=48271000&productId=ABCDEFGHIJ&timestamp=1700000000");
	assert_int_equal(dynform_tencent_content(&f, content, 72), -1);
	/* Another order, spaces, an extra member, a clock past 2038 printed signed. */
	assert_int_equal(parse("{ \"signature\" : \"s\", \"timestamp\": -2, \"productId\":\"P\", \"nonce\":0,"
			       " \"deviceName\":\"dev1\", \"x\":[1]}", &f, &why), 0);
	assert_string_equal(f.timestamp, "-2");
	assert_string_equal(f.nonce, "0");
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"deviceName\":\"dev1\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1}",              /* no signature */
		"{\"deviceName\":\"dev1\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"\"}",
		"{\"deviceName\":\"dev1\",\"nonce\":\"1\",\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev1\",\"nonce\":1.5,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev1\",\"nonce\":1e3,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",  /* short name */
		"{\"deviceName\":\"dev1\",\"nonce\":1,\"productId\":\"P/Q\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev1\",\"nonce\":123456789012345678901,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev1\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"} x",
		"{\"deviceName\":\"dev1\",/*c*/\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
		"{\"deviceName\":\"dev1\",\"deviceName\":\"dev2\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"s\"}",
	};
	struct dynform_tencent f;
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		assert_int_equal(parse(bad[i], &f, &why), -1);
		assert_non_null(why);
	}
	/* A signature longer than the SDK's buffer. */
	char body[256];
	char sig[DYNFORM_SIGNATURE_MAX + 2];
	memset(sig, 'A', sizeof(sig) - 1);
	sig[sizeof(sig) - 1] = '\0';
	snprintf(body, sizeof(body), "{\"deviceName\":\"dev1\",\"nonce\":1,\"productId\":\"P\",\"timestamp\":1,\"signature\":\"%s\"}",
		sig);
	assert_int_equal(parse(body, &f, &why), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sdk_body),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
