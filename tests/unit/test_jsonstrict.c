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

static void test_parse_repeated_keys(void **state)
{
	static const char *const bad[] = {
		"{\"a\":1,\"a\":2}",
		"{\"b\":1,\"a\":{\"x\":1,\"y\":2,\"x\":3}}",
		"[{\"k\":1},{\"k\":1,\"k\":1}]",
		"{\"account\":\"acct-b\",\"account\":\"acct-a\"}",
	};
	static const char *const good[] = { "{\"a\":1,\"b\":{\"a\":2}}", "[{\"k\":1},{\"k\":1}]", "{}", "3" };
	struct jsonstrict_error e;
	yajl_val v;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_null(jsonstrict_parse(bad[i], strlen(bad[i]), 8, &e));
		assert_non_null(strstr(e.message, "given twice"));
	}
	assert_null(jsonstrict_parse("{\"a\":1,\"a\":2}", 13, 8, &e));
	assert_string_equal(e.message, "key \"a\" given twice");
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = jsonstrict_parse(good[i], strlen(good[i]), 8, &e);
		assert_non_null(v);
		yajl_tree_free(v);
	}
	/* What jsonstrict_check refuses, this refuses too. */
	assert_null(jsonstrict_parse("{\"a\":1}//", 10, 8, &e));
	assert_null(jsonstrict_parse("{\"a\":\"x\\u0000y\"}", 17, 8, &e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_comment_refused_with_position),
		cmocka_unit_test(test_syntax_error_line),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_nul_escape),
		cmocka_unit_test(test_parse_repeated_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
