/* audit: which admin calls the audit log keeps, and what it calls them;
 * the audit log's time parameters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "admin_audit.h"
#include "audit.h"

static void check(enum http_method m, const char *path, const char *action, const char *target)
{
	char a[AUDIT_ACTION_MAX], t[AUDIT_TARGET_MAX];

	assert_true(audit_classify(m, path, a, t));
	assert_string_equal(a, action);
	assert_string_equal(t, target);
}

static void test_classify(void **state)
{
	char a[AUDIT_ACTION_MAX], t[AUDIT_TARGET_MAX];

	(void)state;
	check(HTTP_PUT, "/v1/products/a1PK", "product.put", "a1PK");
	check(HTTP_POST, "/v1/products/a1PK/secret", "product.secret.rotate", "a1PK");
	check(HTTP_POST, "/v1/products/a1PK/devices", "devices.register", "a1PK");
	check(HTTP_GET, "/v1/products/a1PK/registrations/7.csv", "registration.download", "a1PK/7.csv");
	check(HTTP_POST, "/v1/devices/a1PK/dev1/secret", "device.secret.reset", "a1PK/dev1");
	check(HTTP_POST, "/v1/batches", "batch.create", "");
	check(HTTP_POST, "/v1/batches/17/retry", "batch.retry", "17");
	check(HTTP_POST, "/v1/accounts/acct-b/auth-codes", "authcode.issue", "acct-b");
	check(HTTP_DELETE, "/v1/subscriptions/3", "subscription.delete", "3");
	/* Any other change, by its method and path. */
	check(HTTP_POST, "/v1/products/a1PK", "POST", "/v1/products/a1PK");
	check(HTTP_DELETE, "/v1/x/y", "DELETE", "/v1/x/y");
	/* Reads are not kept, but for a secret's; nor the brokers' token checks. */
	assert_false(audit_classify(HTTP_GET, "/v1/products/a1PK", a, t));
	assert_false(audit_classify(HTTP_GET, "/v1/products/a1PK/registrations", a, t));
	assert_false(audit_classify(HTTP_GET, "/v1/batches/17", a, t));
	assert_false(audit_classify(HTTP_POST, "/v1/mqtt/auth", a, t));
	assert_false(audit_classify(HTTP_GET, "/healthz", a, t));
	assert_false(audit_classify(HTTP_POST, "/metrics", a, t));
}

static void test_times(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(admin_audit_parse_time("1764608400", &t), 0);
	assert_int_equal(t, 1764608400);
	assert_int_equal(admin_audit_parse_time("2026-12-01T17:00:00Z", &t), 0);
	assert_int_equal(t, 1796144400);
	assert_int_equal(admin_audit_parse_time("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(admin_audit_parse_time("2026-12-01T17:00:00", &t), -1);   /* no zone */
	assert_int_equal(admin_audit_parse_time("2026-12-01T17:00:00+01:00", &t), -1);
	assert_int_equal(admin_audit_parse_time("yesterday", &t), -1);
	assert_int_equal(admin_audit_parse_time("", &t), -1);
	assert_int_equal(admin_audit_parse_time("-5", &t), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_times),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
