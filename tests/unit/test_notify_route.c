/* notify_route: the mosquitto plugin's devices and their client ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "notify_route.h"

static void test_client_ids(void **state)
{
	char d[NOTIFY_ROUTE_DEVICE_MAX + 1];

	(void)state;
	/* The SDK 4.x's client id, and others that name the device first. */
	assert_int_equal(notify_route_client("a1PK.dev1|securemode=2,signmethod=hmacsha256,timestamp=1|", d), 0);
	assert_string_equal(d, "a1PK.dev1");
	assert_int_equal(notify_route_client("a1PK.dev.1:x@y", d), 0);
	assert_string_equal(d, "a1PK.dev.1:x@y");
	assert_int_equal(notify_route_client("a1PK.dev1|", d), 0);
	/* Not a device: no '.', a short name, a bad character, too long. */
	assert_int_equal(notify_route_client("bootstrapd-host-1-2-0", d), -1);
	assert_int_equal(notify_route_client("a1PK.dev|x", d), -1);
	assert_int_equal(notify_route_client("a1 PK.dev1", d), -1);
	assert_int_equal(notify_route_client(".dev1", d), -1);
	assert_int_equal(notify_route_client("a1PK.dev1/2", d), -1);
	assert_int_equal(notify_route_client("a1PK.0123456789012345678901234567890123", d), -1);
	assert_int_equal(notify_route_client("", d), -1);
}

static void test_topics(void **state)
{
	char d[NOTIFY_ROUTE_DEVICE_MAX + 1];

	(void)state;
	assert_int_equal(notify_route_topic("/sys/a1PK/dev1/thing/bootstrap/notify", d), 0);
	assert_string_equal(d, "a1PK.dev1");
	assert_int_equal(notify_route_topic("/sys/a1PK/dev1/thing/", d), 0);
	assert_int_equal(notify_route_topic("/sys/a1PK/dev1/rrpc/x", d), -1);
	assert_int_equal(notify_route_topic("sys/a1PK/dev1/thing/x", d), -1);
	assert_int_equal(notify_route_topic("/sys/a1PK/dev/thing/x", d), -1);
	assert_int_equal(notify_route_topic("/sys/+/+/thing/x", d), -1);
	assert_int_equal(notify_route_topic("/sys/a1PK", d), -1);
}

static void test_table(void **state)
{
	struct notify_route_table *t = notify_route_table_new();
	int a, b;
	char dev[16], cid[32];

	(void)state;
	assert_non_null(t);
	assert_null(notify_route_get(t, "a1PK.dev1"));
	assert_int_equal(notify_route_put(t, "a1PK.dev1", "a1PK.dev1|ts=1|", &a), 0);
	assert_string_equal(notify_route_get(t, "a1PK.dev1"), "a1PK.dev1|ts=1|");
	/* Connected again (another client id, another connection) before the old one went. */
	assert_int_equal(notify_route_put(t, "a1PK.dev1", "a1PK.dev1|ts=2|", &b), 0);
	notify_route_gone(t, "a1PK.dev1", &a);
	assert_string_equal(notify_route_get(t, "a1PK.dev1"), "a1PK.dev1|ts=2|");
	notify_route_gone(t, "a1PK.dev1", &b);
	assert_null(notify_route_get(t, "a1PK.dev1"));
	assert_int_equal(notify_route_count(t), 0);
	/* Many devices: the table grows and keeps each. */
	for (int i = 0; i < 5000; i++) {
		snprintf(dev, sizeof(dev), "p.d%05d", i);
		snprintf(cid, sizeof(cid), "p.d%05d|%d|", i, i);
		assert_int_equal(notify_route_put(t, dev, cid, &a), 0);
	}
	assert_int_equal(notify_route_count(t), 5000);
	assert_string_equal(notify_route_get(t, "p.d04321"), "p.d04321|4321|");
	notify_route_table_free(t);
	notify_route_table_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_ids),
		cmocka_unit_test(test_topics),
		cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
