/* hooks: the pure parts of push subscriptions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hooks.h"

static void test_sign(void **state)
{
	/* Computed with openssl dgst -sha256 -hmac. */
	static const char body[] = "{\"id\":\"1-0\",\"type\":\"device.activated\",\"at\":\"2026-12-01T17:00:00Z\",\"data\":{}}";
	char out[80];

	(void)state;
	assert_int_equal(hooks_sign("hook-secret-0123456789", body, strlen(body), out, sizeof(out)), 71);
	assert_string_equal(out, "sha256=0586b5f2cc7eb3bd1fdbafef22275f8ca51f0f754c3ff523570d33f9b74f8661");
	assert_int_equal(hooks_sign("hook-secret-0123456789", body, strlen(body), out, 71), -1);
}

static void test_backoff_and_invalid(void **state)
{
	(void)state;
	assert_int_equal(hooks_backoff_ms(1, 1), 1000);
	assert_int_equal(hooks_backoff_ms(2, 1), 2000);
	assert_int_equal(hooks_backoff_ms(6, 1), 32000);
	assert_int_equal(hooks_backoff_ms(7, 1), 60000);
	assert_int_equal(hooks_backoff_ms(100, 1), 60000);
	assert_int_equal(hooks_backoff_ms(7, 60), 1000);
	/* Invalid only with both: 10 tries, and 10 minutes. */
	assert_false(hooks_invalid(9, 0, 10000, 1));
	assert_false(hooks_invalid(50, 1000, 1599, 1));
	assert_true(hooks_invalid(10, 1000, 1600, 1));
	assert_true(hooks_invalid(10, 1000, 1010, 60));
	/* The retries over the first 10 minutes: at least 10 of them. */
	long t = 0;
	int tries = 0;
	while (t < 600000) {
		t += hooks_backoff_ms(++tries, 1);
	}
	assert_true(tries >= 10);
}

static void test_event_names(void **state)
{
	(void)state;
	assert_int_equal(hooks_event_bit("batch.completed", 15), HOOKS_BATCH_COMPLETED);
	assert_int_equal(hooks_event_bit("device.registered", 17), HOOKS_DEVICE_REGISTERED);
	assert_int_equal(hooks_event_bit("device.activated", 16), HOOKS_DEVICE_ACTIVATED);
	assert_int_equal(hooks_event_bit("device.distributed", 18), HOOKS_DEVICE_DISTRIBUTED);
	assert_int_equal(hooks_event_bit("device.activatedx", 17), 0);
	assert_int_equal(hooks_event_bit("device.activated", 15), 0);
	assert_int_equal(hooks_event_bit("", 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign),
		cmocka_unit_test(test_backoff_and_invalid),
		cmocka_unit_test(test_event_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
