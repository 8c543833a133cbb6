#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "sentinel.h"

/* +switch-master payloads as Redis Sentinel publishes them
 * (sentinel.c: "%s %s %d %s %d", name, old ip, old port, new ip, new port). */
static void test_switch_ours(void **state)
{
	char host[64];
	int port = 0;

	(void)state;
	assert_true(sentinel_parse_switch("bd 127.0.0.1 6379 127.0.0.1 6380", "bd", host, sizeof(host), &port));
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 6380);
	assert_true(sentinel_parse_switch("bd ::1 6379 fd00::5 7000", "bd", host, sizeof(host), &port));
	assert_string_equal(host, "fd00::5");
	assert_int_equal(port, 7000);
}

static void test_switch_not_ours(void **state)
{
	static const char *const bad[] = {
		"other 127.0.0.1 6379 127.0.0.1 6380", /* another master */
		"bdx 127.0.0.1 6379 127.0.0.1 6380",   /* a longer name */
		"bd 127.0.0.1 6379 127.0.0.1",         /* cut short */
		"bd 127.0.0.1 6379 127.0.0.1 0",       /* no port */
		"bd 127.0.0.1 6379 127.0.0.1 70000",
		"bd 127.0.0.1 6379 127.0.0.1 6380 x",  /* trailing words */
		"",
	};
	char host[64];
	int port = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(sentinel_parse_switch(bad[i], "bd", host, sizeof(host), &port));
	/* A host that does not fit the caller's buffer is refused, not cut. */
	assert_false(sentinel_parse_switch("bd a 1 a-very-long-host-name.example 2", "bd", host, 8, &port));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_switch_ours),
		cmocka_unit_test(test_switch_not_ours),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
