#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "jsonstrict.h"

static int check(const char *text, int depth, struct jsonstrict_error *e)
{
	return jsonstrict_check(text, strlen(text), depth, e);
}

static void test_valid(void **state)
{
	struct jsonstrict_error e;

	(void)state;
	assert_int_equal(check("{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}", 8, &e), 0);
	assert_int_equal(check("  [ ]\n", 8, &e), 0);
	assert_int_equal(check("\"\\u00e9\"", 8, &e), 0);
}

static void test_comment_refused_with_position(void **state)
{
	struct jsonstrict_error e;

	(void)state;
	assert_int_equal(check("{\n  \"a\": 1, // no\n  \"b\": 2\n}", 8, &e), -1);
	assert_int_equal(e.line, 2);
	assert_true(e.col > 1);
	assert_null(strchr(e.message, '\n'));
	assert_true(strlen(e.message) > 0);
}

static void test_syntax_error_line(void **state)
{
	struct jsonstrict_error e;

	(void)state;
	assert_int_equal(check("{\n\"a\": 1,\n\"b\": }\n", 8, &e), -1);
	assert_int_equal(e.line, 3);
	assert_int_equal(check("{\"a\": 1", 8, &e), -1); /* incomplete: at the end */
	assert_int_equal(e.offset, strlen("{\"a\": 1"));
	assert_int_equal(check("", 8, &e), -1);
	assert_int_equal(check("{} {}", 8, &e), -1); /* one value only */
}

static void test_depth(void **state)
{
	struct jsonstrict_error e;

	(void)state;
	assert_int_equal(check("[[[1]]]", 3, &e), 0);
	assert_int_equal(check("[[[[1]]]]", 3, &e), -1);
	assert_string_equal(e.message, "nested too deeply");
}

static void test_nul_escape(void **state)
{
	struct jsonstrict_error e;

	(void)state;
	assert_int_equal(check("{\"a\":\"x\\u0000y\"}", 8, &e), -1);
	assert_non_null(strstr(e.message, "u0000"));
	assert_int_equal(check("{\"a\\u0000\":1}", 8, &e), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_comment_refused_with_position),
		cmocka_unit_test(test_syntax_error_line),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_nul_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
