/* codes: the table of region and instance codes as the store answers it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "codes.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* A flat HGETALL answer from NAMES (field, value, ...), in a static pool. */
static redisReply pool[64];
static redisReply *elems[64];

static redisReply *flat(const char *const *names, size_t n)
{
	redisReply *r = &pool[0];

	assert_true(n + 1 <= N(pool));
	memset(pool, 0, sizeof(pool));
	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	r->element = elems;
	for (size_t i = 0; i < n; i++) {
		pool[i + 1].type = REDIS_REPLY_STRING;
		pool[i + 1].str = (char *)names[i];
		pool[i + 1].len = strlen(names[i]);
		elems[i] = &pool[i + 1];
	}
	return r;
}

static void test_lookup_both_ways(void **state)
{
	static const char *const table[] = { "#", "12", "r:cn-shanghai", "1", "i:iot-cn-sh-public", "2",
		"r:eu-central-1", "b", "i:iot-eu-1", "10", "r:us-east-1", "a" };
	struct codes *c = codes_new(NULL, 100);

	(void)state;
	assert_non_null(c);
	assert_null(codes_code(c, CODES_REGION, "cn-shanghai")); /* empty until loaded */
	assert_int_equal(codes_load(c, flat(table, N(table))), 0);
	assert_string_equal(codes_code(c, CODES_REGION, "cn-shanghai"), "1");
	assert_string_equal(codes_code(c, CODES_REGION, "eu-central-1"), "b");
	assert_string_equal(codes_code(c, CODES_INSTANCE, "iot-eu-1"), "10");
	assert_null(codes_code(c, CODES_INSTANCE, "cn-shanghai")); /* a region's id is not an instance's */
	assert_null(codes_code(c, CODES_REGION, "ap-south-1"));
	assert_string_equal(codes_id(c, CODES_REGION, "a", 1), "us-east-1");
	assert_string_equal(codes_id(c, CODES_INSTANCE, "10", 2), "iot-eu-1");
	assert_string_equal(codes_id(c, CODES_INSTANCE, "2", 1), "iot-cn-sh-public");
	/* Codes compare as numbers: "b" (11) sorts before "10" (36). */
	assert_null(codes_id(c, CODES_REGION, "10", 2));
	assert_null(codes_id(c, CODES_REGION, "2", 1));
	assert_null(codes_id(c, CODES_REGION, "1x", 1 + 1));
	assert_string_equal(codes_id(c, CODES_REGION, "1x", 1), "cn-shanghai"); /* by length, not NUL */
	codes_free(c);
}

static void test_bad_tables_keep_the_old(void **state)
{
	static const char *const good[] = { "r:cn-shanghai", "1" };
	static const char *const leading_zero[] = { "r:cn-shanghai", "01" };
	static const char *const twice[] = { "r:cn-shanghai", "1", "r:us-east-1", "1" };
	static const char *const odd[] = { "r:cn-shanghai" };
	static const char *const too_long[] = { "r:x", "12345678" };
	struct codes *c = codes_new(NULL, 100);

	(void)state;
	assert_int_equal(codes_load(c, flat(good, N(good))), 0);
	assert_int_equal(codes_load(c, flat(leading_zero, N(leading_zero))), -1);
	assert_int_equal(codes_load(c, flat(twice, N(twice))), -1);
	assert_int_equal(codes_load(c, flat(odd, N(odd))), -1);
	assert_int_equal(codes_load(c, flat(too_long, N(too_long))), -1);
	assert_int_equal(codes_load(c, NULL), -1);
	assert_string_equal(codes_code(c, CODES_REGION, "cn-shanghai"), "1");
	/* An empty table is a table. */
	assert_int_equal(codes_load(c, flat(good, 0)), 0);
	assert_null(codes_code(c, CODES_REGION, "cn-shanghai"));
	codes_free(c);
	codes_free(NULL);
}

static void test_field(void **state)
{
	char buf[16];

	(void)state;
	assert_int_equal(codes_field(buf, sizeof(buf), CODES_INSTANCE, "iot-1"), 7);
	assert_string_equal(buf, "i:iot-1");
	assert_int_equal(codes_field(buf, 7, CODES_INSTANCE, "iot-1"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup_both_ways),
		cmocka_unit_test(test_bad_tables_keep_the_old),
		cmocka_unit_test(test_field),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
