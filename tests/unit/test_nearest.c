#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "catalog.h"
#include "nearest.h"

static const char nearest_catalog[] =
	"{\"regions\":["
	"{\"id\":\"us-east-1\",\"latitude\":39.0438,\"longitude\":-77.4874,\"instances\":[{\"id\":\"i-us\","
	"\"endpoints\":{\"mqtt\":{\"host\":\"us.example.com\",\"port\":1883}}}]},"
	"{\"id\":\"eu-central-1\",\"latitude\":50.1109,\"longitude\":8.6821,\"instances\":[{\"id\":\"i-eu\","
	"\"endpoints\":{\"mqtt\":{\"host\":\"eu.example.com\",\"port\":1883}}}]},"
	"{\"id\":\"ap-northeast-1\",\"latitude\":35.6762,\"longitude\":139.6503,\"instances\":[{\"id\":\"i-ap\","
	"\"endpoints\":{\"mqtt\":{\"host\":\"ap.example.com\",\"port\":1883}}}]}]}";

static struct catalog *load(void)
{
	struct catalog *cat = NULL;
	char *cause = NULL;

	assert_int_equal(catalog_parse(nearest_catalog, strlen(nearest_catalog), "test", &cat, &cause), 0);
	return cat;
}

static struct schema_batch batch_of(const char *targets)
{
	struct schema_batch b = { .seq = 1, .strategy = SCHEMA_NEAREST };

	assert_int_equal(schema_targets_parse(targets, strlen(targets), &b), 0);
	return b;
}

static void test_no_geoip_first_candidate(void **state)
{
	struct catalog *cat = load();
	struct schema_batch b = batch_of("ap-northeast-1/i-ap,eu-central-1/i-eu");
	struct nearest_result r;
	struct netaddr a;

	(void)state;
	assert_int_equal(netaddr_parse("192.0.2.1", 9, &a), 0);
	assert_int_equal(nearest_choose(cat, NULL, &b, &a, true, &r), 0);
	assert_false(r.looked_up);
	assert_int_equal(r.ncandidates, 2);
	assert_int_equal(r.chosen, 0);
	assert_string_equal(r.candidates[0].region->id, "ap-northeast-1");
	assert_true(r.candidates[1].distance_km < 0);
	catalog_unref(cat);
}

static void test_unknown_targets_left_out(void **state)
{
	struct catalog *cat = load();
	struct schema_batch b = batch_of("mars-1/x,eu-central-1/i-eu,eu-central-1/i-nope");
	struct schema_batch none = batch_of("mars-1/x");
	struct nearest_result r;

	(void)state;
	assert_int_equal(nearest_choose(cat, NULL, &b, NULL, false, &r), 0);
	assert_int_equal(r.ncandidates, 1);
	assert_string_equal(r.candidates[r.chosen].instance->id, "i-eu");
	assert_int_equal(nearest_choose(cat, NULL, &none, NULL, false, &r), -1);
	catalog_unref(cat);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_geoip_first_candidate),
		cmocka_unit_test(test_unknown_targets_left_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
