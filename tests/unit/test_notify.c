#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "notify.h"

static int reply(const char *json, char id[32])
{
	return notify_parse_reply(json, strlen(json), id);
}

static void test_payload_exact(void **state)
{
	char out[256], id[32];

	(void)state;
	notify_message_id(12, 3, id);
	assert_string_equal(id, "12000003");
	assert_int_equal(notify_payload(id, out, sizeof(out)),
		(int)strlen("{\"id\":\"12000003\",\"version\":\"1.0\",\"method\":\"thing.bootstrap.notify\",\"params\":{\"cmd\":0}}"));
	assert_string_equal(out,
		"{\"id\":\"12000003\",\"version\":\"1.0\",\"method\":\"thing.bootstrap.notify\",\"params\":{\"cmd\":0}}");
	assert_int_equal(notify_payload(id, out, 20), -1);
}

static void test_reply_topic(void **state)
{
	char pk[33], dn[33];

	(void)state;
	assert_int_equal(notify_parse_reply_topic("/sys/a1PK/dev-1/thing/bootstrap/notify_reply", pk, dn), 0);
	assert_string_equal(pk, "a1PK");
	assert_string_equal(dn, "dev-1");
	assert_int_equal(notify_parse_reply_topic("/sys/a1PK/dev-1/thing/bootstrap/notify", pk, dn), -1);
	assert_int_equal(notify_parse_reply_topic("/sys/a1PK/thing/bootstrap/notify_reply", pk, dn), -1);
	assert_int_equal(notify_parse_reply_topic("/sys//dev-1/thing/bootstrap/notify_reply", pk, dn), -1);
	assert_int_equal(notify_parse_reply_topic("/sys/a1PK/a/b/thing/bootstrap/notify_reply", pk, dn), -1);
	assert_int_equal(notify_parse_reply_topic("/sys/a1PK/abc/thing/bootstrap/notify_reply", pk, dn), -1);
}

static void test_reply_ids(void **state)
{
	char id[32];

	(void)state;
	assert_int_equal(reply("{\"id\":\"12000003\",\"code\":200,\"data\":{}}", id), 1);
	assert_string_equal(id, "12000003");
	assert_int_equal(reply("{\"id\":\"\\\"12000003\\\"\",\"code\":200}", id), 1); /* re-quoted */
	assert_string_equal(id, "12000003");
	assert_int_equal(reply("{\"id\":12000003,\"code\":\"200\"}", id), 1); /* a number; code as text */
	assert_string_equal(id, "12000003");
	assert_int_equal(reply("{\"id\":\"abc\",\"code\":200}", id), 1); /* the device's own id */
	assert_string_equal(id, "");
	assert_int_equal(reply("{\"id\":\"1\",\"code\":200}", id), 1);
	assert_string_equal(id, "");
	assert_int_equal(reply("{\"code\":200}", id), 1);
	assert_string_equal(id, "");
}

static void test_reply_refusals(void **state)
{
	char id[32];

	(void)state;
	assert_int_equal(reply("{\"id\":\"12000003\",\"code\":500}", id), 0);
	assert_int_equal(reply("{\"id\":\"12000003\"}", id), -1);
	assert_int_equal(reply("not json", id), -1);
	assert_int_equal(reply("[1,2]", id), -1);
	assert_int_equal(reply("{\"code\":true}", id), -1);
	assert_int_equal(notify_parse_reply("", 0, id), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_exact),
		cmocka_unit_test(test_reply_topic),
		cmocka_unit_test(test_reply_ids),
		cmocka_unit_test(test_reply_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
