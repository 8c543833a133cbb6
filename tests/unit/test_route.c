#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static void test_literal(void **state)
{
	struct route_args a;

	(void)state;
	assert_true(route_match("/v1/batches", "/v1/batches", &a));
	assert_int_equal(a.n, 0);
	assert_false(route_match("/v1/batches", "/v1/batches/", &a));
	assert_false(route_match("/v1/batches", "/v1/batche", &a));
	assert_false(route_match("/v1/batches", "/v1/batchesx", &a));
	assert_false(route_match("/v1/batches", "", &a));
}

static void test_parameters(void **state)
{
	struct route_args a;

	(void)state;
	assert_true(route_match("/v1/devices/{productKey}/{deviceName}/resolve", "/v1/devices/pk1/dev-2/resolve", &a));
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[0], "pk1");
	assert_string_equal(a.v[1], "dev-2");
	/* Each parameter is one whole, non-empty segment. */
	assert_false(route_match("/v1/devices/{productKey}/{deviceName}", "/v1/devices/pk1/dev/x", &a));
	assert_false(route_match("/v1/devices/{productKey}/{deviceName}", "/v1/devices/pk1/", &a));
	assert_false(route_match("/v1/devices/{productKey}/{deviceName}", "/v1/devices//dev", &a));
	assert_false(route_match("/v1/devices/{productKey}/{deviceName}", "/v1/devices/pk1", &a));
	assert_true(route_match("/v1/batches/{batchId}", "/v1/batches/template.csv", &a));
	assert_string_equal(a.v[0], "template.csv");
}

static void test_bounds(void **state)
{
	struct route_args a;
	char path[400], seg[ROUTE_ARG_MAX + 1];

	(void)state;
	memset(seg, 'a', ROUTE_ARG_MAX - 1);
	seg[ROUTE_ARG_MAX - 1] = '\0';
	snprintf(path, sizeof(path), "/p/%s", seg);
	assert_true(route_match("/p/{x}", path, &a));
	assert_int_equal(strlen(a.v[0]), ROUTE_ARG_MAX - 1);
	seg[ROUTE_ARG_MAX - 1] = 'a';
	seg[ROUTE_ARG_MAX] = '\0';
	snprintf(path, sizeof(path), "/p/%s", seg);
	assert_false(route_match("/p/{x}", path, &a));
	/* More parameters than there is room for never match. */
	assert_false(route_match("/{a}/{b}/{c}/{d}", "/1/2/3/4", &a));
	assert_true(route_match("/{a}/{b}/{c}", "/1/2/3", &a));
	assert_string_equal(a.v[2], "3");
	/* An unclosed brace in a pattern matches nothing. */
	assert_false(route_match("/p/{x", "/p/1", &a));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
