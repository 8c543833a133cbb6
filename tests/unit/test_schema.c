#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster.h"
#include "schema.h"

/* Independent FNV-1a 32-bit over one string, masked like schema_bucket(). */
static uint32_t ref_bucket(const char *s)
{
	uint32_t h = 0x811c9dc5u;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		h = (h ^ *p) * 0x01000193u;
	return h & 0xfffffu;
}

static void test_bucket_known_value(void **state)
{
	(void)state;
	/* python3: FNV-1a of b"a1PK/dev1" & 0xfffff */
	assert_int_equal(schema_bucket("a1PK", "dev1"), 0x4339d);
	assert_int_equal(schema_bucket("pk", "dn"), 0x34a4b);
	assert_int_equal(schema_bucket("", ""), 0xc975e);
}

static void test_bucket_matches_reference(void **state)
{
	static const char *const cases[][3] = {
		{ "a1PK", "dev1", "a1PK/dev1" },
		{ "a1B2c3D4e5", "device-0001", "a1B2c3D4e5/device-0001" },
		{ "pk", "", "pk/" },
		{ "", "dn", "/dn" },
		{ "\xc3\xa9", "\xff", "\xc3\xa9/\xff" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t b = schema_bucket(cases[i][0], cases[i][1]);
		assert_int_equal(b, ref_bucket(cases[i][2]));
		assert_true(b < (1u << SCHEMA_BUCKET_BITS));
	}
	assert_int_not_equal(schema_bucket("a1PK", "dev1"), schema_bucket("a1PK", "dev2"));
}

static void test_product_key(void **state)
{
	char buf[SCHEMA_KEY_MAX];

	(void)state;
	assert_int_equal(schema_product_key(buf, sizeof(buf), "pk"), 9);
	assert_string_equal(buf, "bd:{p}:pk");
}

static void test_device_key(void **state)
{
	char buf[SCHEMA_KEY_MAX], want[32];
	uint32_t b = ref_bucket("x/y");

	(void)state;
	/* 0x4339d: group 0x10c (its top 10 of 20 bits). */
	assert_int_equal(schema_device_key(buf, sizeof(buf), "a1PK", "dev1"), 16);
	assert_string_equal(buf, "bd:{10c}:d:4339d");
	snprintf(want, sizeof(want), "bd:{%03x}:d:%05x", b >> 10, b);
	assert_int_equal(schema_device_key(buf, sizeof(buf), "x", "y"), 16);
	assert_string_equal(buf, want);
}

static void test_device_key_pads_bucket(void **state)
{
	char buf[SCHEMA_KEY_MAX], want[32];
	char dn[8];
	int found = 0;

	(void)state;
	/* Find a name whose bucket is below 0x10000 so the padding shows. */
	for (int i = 0; i < 100000 && !found; i++) {
		snprintf(dn, sizeof(dn), "d%d", i);
		if (schema_bucket("pk", dn) < 0x10000u)
			found = 1;
	}
	assert_true(found);
	snprintf(want, sizeof(want), "bd:{%03x}:d:%05x", schema_bucket("pk", dn) >> 10, schema_bucket("pk", dn));
	assert_int_equal(want[4], '0');
	assert_int_equal(want[11], '0');
	assert_int_equal(schema_device_key(buf, sizeof(buf), "pk", dn), 16);
	assert_string_equal(buf, want);
}

static void test_secret_key(void **state)
{
	char buf[SCHEMA_KEY_MAX];

	(void)state;
	assert_int_equal(schema_secret_key(buf, sizeof(buf), "a1PK", "dev1"), 16);
	assert_string_equal(buf, "bd:{10c}:s:4339d");
	assert_int_equal(schema_bucket_key(buf, sizeof(buf), 'n', 1), -1); /* notifies are in the records */
	assert_int_equal(schema_bucket_key(buf, sizeof(buf), 'x', 1), -1);
	assert_int_equal(schema_bucket_key(buf, sizeof(buf), 'd', 1u << SCHEMA_BUCKET_BITS), -1);
	assert_int_equal(schema_counters_key(buf, sizeof(buf), 0x10c), 10);
	assert_string_equal(buf, "bd:{10c}:c");
	assert_int_equal(schema_counters_key(buf, sizeof(buf), SCHEMA_GROUPS), -1);
}

/* What one script touches shares one Redis Cluster slot: a device's
 * record, secret and notify with its group's counters; a batch's keys with
 * the batch index, queue and counters; a product with the product set. */
static void test_keys_share_slots(void **state)
{
	char a[SCHEMA_KEY_MAX], b[SCHEMA_KEY_MAX];
	uint32_t bucket = schema_bucket("a1PK", "dev1");
	static const char *const batch_side[] = { SCHEMA_BATCHES_KEY, SCHEMA_BATCH_SEQ_KEY, SCHEMA_STEPS_KEY,
		SCHEMA_STATS_BATCHES_KEY };

	(void)state;
	assert_int_equal(schema_counters_key(a, sizeof(a), schema_group(bucket)), 10);
	for (const char *p = "ds"; *p; p++) {
		assert_true(schema_bucket_key(b, sizeof(b), *p, bucket) > 0);
		assert_int_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(b, strlen(b)));
	}
	/* Buckets of other groups land elsewhere (for these two). */
	assert_true(schema_bucket_key(b, sizeof(b), 'd', bucket ^ (1u << 19)) > 0);
	assert_int_not_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(b, strlen(b)));
	assert_true(schema_batch_key(a, sizeof(a), 77) > 0);
	for (size_t i = 0; i < sizeof(batch_side) / sizeof(batch_side[0]); i++)
		assert_int_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(batch_side[i], strlen(batch_side[i])));
	for (const char *p = "irn"; *p; p++) {
		assert_true(schema_batch_part_key(b, sizeof(b), 77, *p) > 0);
		assert_int_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(b, strlen(b)));
	}
	assert_true(schema_auth_code_key(b, sizeof(b), "acct", "123456") > 0);
	assert_int_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(b, strlen(b)));
	assert_true(schema_product_key(a, sizeof(a), "a1PK") > 0);
	assert_int_equal(cluster_key_slot(a, strlen(a)), cluster_key_slot(SCHEMA_PRODUCTS_KEY, strlen(SCHEMA_PRODUCTS_KEY)));
	assert_true(schema_outbox_key(a, sizeof(a), "mqtt://b:1883") > 0);
	assert_string_equal(a, "bd:o:{mqtt://b:1883}");
}

static void test_device_field(void **state)
{
	char buf[SCHEMA_FIELD_MAX];

	(void)state;
	assert_int_equal(schema_device_field(buf, sizeof(buf), "pk", "dn"), 5);
	assert_string_equal(buf, "pk/dn");
}

static void test_batch_key(void **state)
{
	char buf[SCHEMA_KEY_MAX];

	(void)state;
	assert_int_equal(schema_batch_key(buf, sizeof(buf), 12), 9);
	assert_string_equal(buf, "bd:{b}:12");
	assert_int_equal(schema_batch_key(buf, sizeof(buf), UINT64_MAX), 27);
	assert_string_equal(buf, "bd:{b}:18446744073709551615");
	assert_int_equal(schema_batch_part_key(buf, sizeof(buf), 12, 'r'), 11);
	assert_string_equal(buf, "bd:{b}:12:r");
	assert_int_equal(schema_batch_part_key(buf, sizeof(buf), 12, 'x'), -1);
	assert_int_equal(schema_batch_part_key(buf, sizeof(buf), 12, 'f'), 11);
	assert_string_equal(buf, "bd:{b}:12:f");
	assert_int_equal(schema_batch_part_key(buf, 12, 12, 'i'), 11);
	assert_int_equal(schema_batch_part_key(buf, 11, 12, 'i'), -1);
	assert_int_equal(schema_auth_code_key(buf, sizeof(buf), "acct", "000123"), 21);
	assert_string_equal(buf, "bd:{b}:ac:acct:000123");
}

static void test_keys_too_small(void **state)
{
	char buf[SCHEMA_KEY_MAX];

	(void)state;
	/* Exactly enough room (text plus NUL) fits; one byte less does not. */
	assert_int_equal(schema_product_key(buf, 10, "pk"), 9);
	assert_int_equal(schema_product_key(buf, 9, "pk"), -1);
	assert_int_equal(schema_device_key(buf, 17, "a1PK", "dev1"), 16);
	assert_int_equal(schema_device_key(buf, 16, "a1PK", "dev1"), -1);
	assert_int_equal(schema_secret_key(buf, 17, "a1PK", "dev1"), 16);
	assert_int_equal(schema_secret_key(buf, 16, "a1PK", "dev1"), -1);
	assert_int_equal(schema_counters_key(buf, 11, 1), 10);
	assert_int_equal(schema_counters_key(buf, 10, 1), -1);
	assert_int_equal(schema_device_field(buf, 6, "pk", "dn"), 5);
	assert_int_equal(schema_device_field(buf, 5, "pk", "dn"), -1);
	assert_int_equal(schema_batch_key(buf, 10, 12), 9);
	assert_int_equal(schema_batch_key(buf, 9, 12), -1);
	assert_int_equal(schema_product_key(buf, 0, "pk"), -1);
}

static int device_parse_str(const char *s, struct schema_device *d)
{
	return schema_device_parse(s, strlen(s), d);
}

static void test_device_round_trip(void **state)
{
	/* Times in base 36: 1700000000, 1700000100, 1700000200. */
	static const char rec[] = "7;a;s44we8;s44wh0;s44wjs;3;";
	static const char notified[] = "7;i;s44we8;s44wh0;s44wjs;3;42:p:1a";
	struct schema_device d;
	char buf[SCHEMA_DEVICE_RECORD_MAX];

	(void)state;
	assert_int_equal(device_parse_str(rec, &d), 0);
	assert_int_equal(d.batch, 7);
	assert_int_equal(d.status, SCHEMA_ACTIVE);
	assert_int_equal(d.registered_at, 1700000000);
	assert_int_equal(d.activated_at, 1700000100);
	assert_int_equal(d.last_bootstrap_at, 1700000200);
	assert_string_equal(d.last_region_code, "3");
	assert_int_equal(d.notify_row, -1);
	assert_int_equal(schema_device_format(&d, buf, sizeof(buf)), (int)strlen(rec));
	assert_string_equal(buf, rec);
	/* With the notify of its batch, as apply_devices.lua writes it. */
	assert_int_equal(device_parse_str(notified, &d), 0);
	assert_int_equal(d.notify_row, 42);
	assert_string_equal(d.notify_state, "pending");
	assert_string_equal(d.notify_instance_code, "1a");
	assert_int_equal(schema_device_format(&d, buf, sizeof(buf)), (int)strlen(notified));
	assert_string_equal(buf, notified);
	/* No instance ("none" through a product without a home instance). */
	assert_int_equal(device_parse_str("7;i;1;2;3;r;0:n:", &d), 0);
	assert_string_equal(d.notify_state, "none");
	assert_string_equal(d.notify_instance_code, "");
	/* Each state by its letter. */
	assert_int_equal(device_parse_str("7;i;1;2;3;r;0:s:5", &d), 0);
	assert_string_equal(d.notify_state, "sent");
	assert_int_equal(device_parse_str("7;i;1;2;3;r;0:a:5", &d), 0);
	assert_string_equal(d.notify_state, "acked");
}

static void test_device_parse_notify(void **state)
{
	static const char *const bad[] = {
		"7;i;1;2;3;r;42",                /* no state */
		"7;i;1;2;3;r;42:p",              /* no instance part */
		"7;i;1;2;3;r;x:p:i",             /* row not a number */
		"7;i;1;2;3;r;1000000:s:i",       /* row beyond 6 digits */
		"7;i;1;2;3;r;4:P:i",             /* state in lower case only */
		"7;i;1;2;3;r;4::i",              /* empty state */
		"7;i;1;2;3;r;4:pending:i",       /* a state's word, not its letter (layout 4) */
		"7;i;1;2;3;r;4:x:i",             /* no such state */
		"7;i;1;2;3;r;4:s:i:j",           /* a fourth part */
		"7;i;1;2;3;r;4:s:iot-cn-sh",     /* an instance id, not its code */
		"7;i;1;2;3;r;4:s:01",            /* a code with a leading zero */
		"7;i;1;2;3;r;4:s:12345678",      /* a code longer than SCHEMA_CODE_MAX */
	};
	struct schema_device d;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(device_parse_str(bad[i], &d), -1);
}

static void test_device_parse_uses_len(void **state)
{
	static const char rec[] = "7;i;1;2;3;z9;;garbage";
	struct schema_device d;

	(void)state;
	assert_int_equal(schema_device_parse(rec, strlen("7;i;1;2;3;z9;"), &d), 0);
	assert_int_equal(d.status, SCHEMA_INACTIVE);
	assert_string_equal(d.last_region_code, "z9");
}

static void test_device_format_fresh(void **state)
{
	struct schema_device d = { .status = SCHEMA_INACTIVE, .registered_at = 1700000000, .notify_row = -1 };
	char buf[SCHEMA_DEVICE_RECORD_MAX];

	(void)state;
	assert_int_equal(schema_device_format(&d, buf, sizeof(buf)), 16);
	assert_string_equal(buf, "0;i;s44we8;0;0;;");
	assert_int_equal(device_parse_str(buf, &d), 0);
	assert_int_equal(d.batch, 0);
	assert_string_equal(d.last_region_code, "");
	assert_int_equal(d.notify_row, -1);
}

static void test_device_format_too_small(void **state)
{
	struct schema_device d = { .status = SCHEMA_INACTIVE, .registered_at = 1700000000, .notify_row = -1 };
	char buf[SCHEMA_DEVICE_RECORD_MAX];

	(void)state;
	assert_int_equal(schema_device_format(&d, buf, 17), 16);
	assert_int_equal(schema_device_format(&d, buf, 16), -1);
}

static void test_device_parse_field_count(void **state)
{
	struct schema_device d;

	(void)state;
	assert_int_equal(device_parse_str("7;a;1;2;3", &d), -1);
	assert_int_equal(device_parse_str("7;a;1;2;3;r", &d), -1); /* layout 2's six fields */
	assert_int_equal(device_parse_str("7;a;1;2;3;r;x;y;z", &d), -1);
	assert_int_equal(device_parse_str("7;a;1;2;3;r;;", &d), -1);
}

static void test_device_parse_status(void **state)
{
	struct schema_device d;

	(void)state;
	assert_int_equal(device_parse_str("7;x;1;2;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;A;1;2;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;;1;2;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;ai;1;2;3;r;", &d), -1);
}

/* Times are base 36 as schema_time_format writes them, and only so. */
static void test_device_times(void **state)
{
	struct schema_device d;
	char buf[16];

	(void)state;
	assert_int_equal(schema_time_format(0, buf, sizeof(buf)), 1);
	assert_string_equal(buf, "0");
	assert_int_equal(schema_time_format(1763800000, buf, sizeof(buf)), 6);
	assert_string_equal(buf, "t64csg");
	assert_int_equal(schema_time_format(INT64_MAX, buf, sizeof(buf)), 13);
	assert_string_equal(buf, "1y2p0ij32e8e7");
	assert_int_equal(schema_time_format(INT64_MAX, buf, 13), -1);
	assert_int_equal(device_parse_str("7;a;1y2p0ij32e8e7;0;z;r;", &d), 0);
	assert_true(d.registered_at == INT64_MAX && d.activated_at == 0 && d.last_bootstrap_at == 35);
	assert_int_equal(device_parse_str("7;a;1y2p0ij32e8e8;0;0;r;", &d), -1); /* past int64 */
	assert_int_equal(device_parse_str("7;a;10000000000000;0;0;r;", &d), -1); /* 14 digits */
	assert_int_equal(device_parse_str("7;a;T64CSG;0;0;r;", &d), -1);         /* upper case */
	assert_int_equal(device_parse_str("7;a;0t64csg;0;0;r;", &d), -1);        /* leading zero */
	assert_int_equal(device_parse_str("7;a;-1;0;0;r;", &d), -1);
}

static void test_device_parse_non_digits(void **state)
{
	struct schema_device d;

	(void)state;
	assert_int_equal(device_parse_str("7x;a;1;2;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;a;1_;2;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;a;1;;3;r;", &d), -1);
	assert_int_equal(device_parse_str("7;a;1;2; 3;r;", &d), -1);
	assert_int_equal(device_parse_str("+7;a;1;2;3;r;", &d), -1);
}

static void test_device_parse_negative_batch(void **state)
{
	struct schema_device d;

	(void)state;
	assert_int_equal(device_parse_str("-7;a;1;2;3;r;", &d), -1);
}

static void test_device_parse_region_code(void **state)
{
	char rec[SCHEMA_DEVICE_RECORD_MAX];
	char code[SCHEMA_CODE_MAX + 2];
	struct schema_device d;

	(void)state;
	memset(code, 'z', SCHEMA_CODE_MAX);
	code[SCHEMA_CODE_MAX] = '\0';
	snprintf(rec, sizeof(rec), "1;a;1;2;3;%s;", code);
	assert_int_equal(device_parse_str(rec, &d), 0);
	assert_string_equal(d.last_region_code, code);
	strcat(code, "z");
	snprintf(rec, sizeof(rec), "1;a;1;2;3;%s;", code);
	assert_int_equal(device_parse_str(rec, &d), -1);
	/* A region id (layout 4), a leading zero, a character outside base 36. */
	assert_int_equal(device_parse_str("1;a;1;2;3;cn-shanghai;", &d), -1);
	assert_int_equal(device_parse_str("1;a;1;2;3;07;", &d), -1);
	assert_int_equal(device_parse_str("1;a;1;2;3;A;", &d), -1);
	assert_true(schema_valid_code("1", 1));
	assert_false(schema_valid_code("0", 1));
	assert_false(schema_valid_code("", 0));
}

static void test_device_parse_empty(void **state)
{
	struct schema_device d;

	(void)state;
	assert_int_equal(schema_device_parse("", 0, &d), -1);
}

static int pset(struct schema_product *p, enum schema_product_field f, const char *v)
{
	return schema_product_set(p, f, v, v ? strlen(v) : 0);
}

static void test_product_field_names(void **state)
{
	static const char *const want[] = { "hr", "hi", "ac", "lk", "ba", "pb", "ct", "ut", "dr", "pa" };

	(void)state;
	assert_int_equal(SCHEMA_P_NFIELDS, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < SCHEMA_P_NFIELDS; i++)
		assert_string_equal(schema_product_fields[i], want[i]);
}

static void test_product_dynreg(void **state)
{
	struct schema_product p = { 0 };

	(void)state;
	assert_int_equal(pset(&p, SCHEMA_P_DYNREG, "open"), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_OPEN);
	assert_int_equal(pset(&p, SCHEMA_P_DYNREG, "preregistered"), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_PREREGISTERED);
	/* Anything else (absent included) is off. */
	assert_int_equal(pset(&p, SCHEMA_P_DYNREG, "Open"), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_OFF);
	assert_int_equal(pset(&p, SCHEMA_P_DYNREG, NULL), 0);
	assert_int_equal(p.dynreg, SCHEMA_DYNREG_OFF);
	assert_int_equal(pset(&p, SCHEMA_P_PREAUTH, "1"), 0);
	assert_true(p.pre_auth);
	assert_int_equal(pset(&p, SCHEMA_P_PREAUTH, "0"), 0);
	assert_false(p.pre_auth);
}

static void test_preauth(void **state)
{
	char k[128], buf[160];
	struct schema_preauth p = { .expires = 1700604800 }, q;
	static const char sha[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

	(void)state;
	assert_true(schema_preauth_key(k, sizeof(k), "3ff0123456789abcdef0123456789abc") > 0);
	assert_string_equal(k, "bd:{3ff}:a:3ff0123456789abcdef0123456789abc");
	/* Not an iotId: a group past 1023, upper case, a length other than 32. */
	assert_int_equal(schema_preauth_key(k, sizeof(k), "4000123456789abcdef0123456789abc"), -1);
	assert_int_equal(schema_preauth_key(k, sizeof(k), "3FF0123456789abcdef0123456789abc"), -1);
	assert_int_equal(schema_preauth_key(k, sizeof(k), "3ff0123456789abcdef0123456789ab"), -1);
	assert_int_equal(schema_preauth_key(k, sizeof(k), "a1PK.dev1"), -1);
	memcpy(p.token_sha256, sha, sizeof(sha));
	snprintf(p.field, sizeof(p.field), "a1PK/dev1");
	assert_true(schema_preauth_format(&p, buf, sizeof(buf)) > 0);
	assert_int_equal(schema_preauth_parse(buf, strlen(buf), &q), 0);
	assert_int_equal(q.expires, 1700604800);
	assert_string_equal(q.token_sha256, sha);
	assert_string_equal(q.field, "a1PK/dev1");
	assert_int_equal(schema_preauth_parse("1;abc;a1PK/dev1", 16, &q), -1);
	assert_int_equal(schema_preauth_parse("x;9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08;a/b", 70, &q), -1);
	assert_int_equal(schema_preauth_parse("1;9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08;ab", 69, &q), -1);
	/* Found by the fuzzer: a NUL in the name did not format back. */
	assert_int_equal(schema_preauth_parse("1;9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08;a\0/b", 70, &q), -1);
	assert_int_equal(schema_preauth_parse("1;9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08;a/b/c", 71, &q), -1);
}

static void test_dynreg_random_key(void **state)
{
	char k[128], d[SCHEMA_KEY_MAX];

	(void)state;
	/* In the device's group, so one script holds both. */
	assert_true(schema_dynreg_random_key(k, sizeof(k), "a1PK", "dev1", "2839104") > 0);
	assert_true(schema_device_key(d, sizeof(d), "a1PK", "dev1") > 0);
	assert_memory_equal(k, d, 9);
	assert_string_equal(k + 9, "n:a1PK/dev1:2839104");
	assert_int_equal(schema_dynreg_random_key(k, 20, "a1PK", "dev1", "2839104"), -1);
}

static void test_product_set_strings(void **state)
{
	struct schema_product p;
	char acct[SCHEMA_ACCOUNT_MAX + 2];

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_HOME_REGION, "cn-shanghai"), 0);
	assert_string_equal(p.home_region, "cn-shanghai");
	assert_int_equal(pset(&p, SCHEMA_P_HOME_INSTANCE, "iot-cn-sh-public"), 0);
	assert_string_equal(p.home_instance, "iot-cn-sh-public");
	assert_int_equal(pset(&p, SCHEMA_P_ACCOUNT, "acct-a"), 0);
	assert_string_equal(p.account, "acct-a");

	memset(acct, 'a', SCHEMA_ACCOUNT_MAX);
	acct[SCHEMA_ACCOUNT_MAX] = '\0';
	assert_int_equal(pset(&p, SCHEMA_P_ACCOUNT, acct), 0);
	assert_string_equal(p.account, acct);
	strcat(acct, "a");
	assert_int_equal(pset(&p, SCHEMA_P_ACCOUNT, acct), -1);
}

static void test_product_set_locked(void **state)
{
	struct schema_product p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_LOCKED, "1"), 0);
	assert_true(p.locked);
	assert_int_equal(pset(&p, SCHEMA_P_LOCKED, "0"), 0);
	assert_false(p.locked);
	assert_int_equal(pset(&p, SCHEMA_P_LOCKED, "1"), 0);
	assert_int_equal(pset(&p, SCHEMA_P_LOCKED, "11"), 0);
	assert_false(p.locked);
}

static void test_product_set_auth(void **state)
{
	struct schema_product p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_AUTH, "required"), 0);
	assert_true(p.auth_required);
	assert_int_equal(pset(&p, SCHEMA_P_AUTH, "none"), 0);
	assert_false(p.auth_required);
	assert_int_equal(pset(&p, SCHEMA_P_AUTH, "required"), 0);
	assert_int_equal(schema_product_set(&p, SCHEMA_P_AUTH, "requiredX", 9), 0);
	assert_false(p.auth_required);
}

static void test_product_set_numbers(void **state)
{
	struct schema_product p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_BATCH, "42"), 0);
	assert_int_equal(p.batch, 42);
	assert_int_equal(pset(&p, SCHEMA_P_CREATED, "1700000000"), 0);
	assert_int_equal(p.created_at, 1700000000);
	assert_int_equal(pset(&p, SCHEMA_P_UPDATED, "1700000300"), 0);
	assert_int_equal(p.updated_at, 1700000300);
}

static void test_product_set_batch_empty(void **state)
{
	struct schema_product p = { .batch = 9, .created_at = 5, .updated_at = 6 };

	(void)state;
	assert_int_equal(pset(&p, SCHEMA_P_BATCH, ""), 0);
	assert_int_equal(p.batch, 0);
	assert_int_equal(pset(&p, SCHEMA_P_CREATED, ""), 0);
	assert_int_equal(p.created_at, 0);
	assert_int_equal(pset(&p, SCHEMA_P_UPDATED, ""), 0);
	assert_int_equal(p.updated_at, 0);
}

static void test_product_set_bad_number(void **state)
{
	struct schema_product p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_BATCH, "12x"), -1);
	assert_int_equal(pset(&p, SCHEMA_P_BATCH, "-1"), -1);
	assert_int_equal(pset(&p, SCHEMA_P_CREATED, "abc"), -1);
	assert_int_equal(pset(&p, SCHEMA_P_UPDATED, "1.5"), -1);
}

static void test_product_set_null(void **state)
{
	struct schema_product p = {
		.home_region = "r", .home_instance = "i", .account = "a",
		.locked = true, .auth_required = true, .batch = 3, .created_at = 4, .updated_at = 5,
	};

	(void)state;
	/* A wrong LEN with a NULL value must not matter. */
	for (int f = 0; f < SCHEMA_P_NFIELDS; f++)
		assert_int_equal(schema_product_set(&p, (enum schema_product_field)f, NULL, 99), 0);
	assert_string_equal(p.home_region, "");
	assert_string_equal(p.home_instance, "");
	assert_string_equal(p.account, "");
	assert_false(p.locked);
	assert_false(p.auth_required);
	assert_int_equal(p.batch, 0);
	assert_int_equal(p.created_at, 0);
	assert_int_equal(p.updated_at, 0);
}

static void test_product_set_bad_field(void **state)
{
	struct schema_product p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_int_equal(pset(&p, SCHEMA_P_NFIELDS, "x"), -1);
}

static int targets_str(const char *s, struct schema_batch *b)
{
	return schema_targets_parse(s, strlen(s), b);
}

static void test_targets_single(void **state)
{
	struct schema_batch b;

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(targets_str("cn-shanghai/iot-1", &b), 0);
	assert_int_equal(b.ntargets, 1);
	assert_string_equal(b.targets[0].region, "cn-shanghai");
	assert_string_equal(b.targets[0].instance, "iot-1");
}

static void test_targets_three(void **state)
{
	struct schema_batch b;

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(targets_str("a/x,b/y,c/z", &b), 0);
	assert_int_equal(b.ntargets, 3);
	assert_string_equal(b.targets[0].region, "a");
	assert_string_equal(b.targets[0].instance, "x");
	assert_string_equal(b.targets[1].region, "b");
	assert_string_equal(b.targets[1].instance, "y");
	assert_string_equal(b.targets[2].region, "c");
	assert_string_equal(b.targets[2].instance, "z");
}

static void test_targets_rejects(void **state)
{
	static const char *const bad[] = { "", "noslash", "/x", "a/", "a/x,", ",a/x", "a/x,,b/y", "a/x,noslash",
		/* outside the catalog's id alphabets (found by the fuzz target) */
		"EU/x", "e u/x", "eu/x y", "eu/x;y", "eu/x:y", "eu.c/x" };
	struct schema_batch b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&b, 0, sizeof(b));
		if (targets_str(bad[i], &b) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	/* A NUL inside is not the end of an id. */
	assert_int_equal(schema_targets_parse("eu\0x/i", 6, &b), -1);
	assert_int_equal(targets_str("eu-central-1/Iot_EU.1-x", &b), 0);
}

static void build_targets(char *buf, size_t len, size_t n)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, len - off, "%sr%zu/i%zu", i ? "," : "", i, i);
	assert_true(off < len);
}

static void test_targets_max(void **state)
{
	char s[512];
	struct schema_batch b;

	(void)state;
	build_targets(s, sizeof(s), SCHEMA_TARGETS_MAX);
	memset(&b, 0, sizeof(b));
	assert_int_equal(targets_str(s, &b), 0);
	assert_int_equal(b.ntargets, SCHEMA_TARGETS_MAX);
	assert_string_equal(b.targets[15].region, "r15");
	assert_string_equal(b.targets[15].instance, "i15");

	build_targets(s, sizeof(s), SCHEMA_TARGETS_MAX + 1);
	memset(&b, 0, sizeof(b));
	assert_int_equal(targets_str(s, &b), -1);
	build_targets(s, sizeof(s), SCHEMA_TARGETS_MAX + 5);
	assert_int_equal(targets_str(s, &b), -1);
}

static void test_targets_id_lengths(void **state)
{
	char s[256], region[CATALOG_REGION_ID_MAX + 2], inst[CATALOG_INSTANCE_ID_MAX + 2];
	struct schema_batch b;

	(void)state;
	memset(region, 'r', CATALOG_REGION_ID_MAX);
	region[CATALOG_REGION_ID_MAX] = '\0';
	memset(inst, 'i', CATALOG_INSTANCE_ID_MAX);
	inst[CATALOG_INSTANCE_ID_MAX] = '\0';
	snprintf(s, sizeof(s), "%s/%s", region, inst);
	assert_int_equal(targets_str(s, &b), 0);
	assert_string_equal(b.targets[0].region, region);
	assert_string_equal(b.targets[0].instance, inst);

	snprintf(s, sizeof(s), "%sr/%s", region, inst);
	assert_int_equal(targets_str(s, &b), -1);
	snprintf(s, sizeof(s), "%s/%si", region, inst);
	assert_int_equal(targets_str(s, &b), -1);
}

static void test_targets_round_trip(void **state)
{
	static const char *const cases[] = { "cn-shanghai/iot-1", "a/x,b/y,c/z" };
	struct schema_batch b;
	char buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&b, 0, sizeof(b));
		assert_int_equal(targets_str(cases[i], &b), 0);
		assert_int_equal(schema_targets_format(&b, buf, sizeof(buf)), (int)strlen(cases[i]));
		assert_string_equal(buf, cases[i]);
	}
}

static void test_targets_format_too_small(void **state)
{
	struct schema_batch b;
	char buf[16];

	(void)state;
	memset(&b, 0, sizeof(b));
	assert_int_equal(targets_str("a/x,b/y,c/z", &b), 0);
	assert_int_equal(schema_targets_format(&b, buf, 12), 11);
	assert_int_equal(schema_targets_format(&b, buf, 11), -1);
	assert_int_equal(schema_targets_format(&b, buf, 5), -1);
	assert_int_equal(schema_targets_format(&b, buf, 0), -1);
}

static int u64(const char *s, uint64_t *v)
{
	return schema_parse_u64(s, strlen(s), v);
}

static int i64(const char *s, int64_t *v)
{
	return schema_parse_i64(s, strlen(s), v);
}

static void test_parse_u64(void **state)
{
	uint64_t v = 1;

	(void)state;
	assert_int_equal(u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(u64("18446744073709551615", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(u64("007", &v), 0);
	assert_int_equal(v, 7);
}

static void test_parse_u64_overflow(void **state)
{
	uint64_t v = 5;

	(void)state;
	assert_int_equal(u64("18446744073709551616", &v), -1);
	assert_int_equal(u64("18446744073709551620", &v), -1);
	assert_int_equal(u64("99999999999999999999", &v), -1);
	assert_int_equal(u64("100000000000000000000", &v), -1);
	assert_int_equal(v, 5);
}

static void test_parse_u64_rejects(void **state)
{
	uint64_t v = 5;

	(void)state;
	assert_int_equal(u64("", &v), -1);
	assert_int_equal(u64("-1", &v), -1);
	assert_int_equal(u64("+1", &v), -1);
	assert_int_equal(u64(" 1", &v), -1);
	assert_int_equal(u64("1 ", &v), -1);
	assert_int_equal(u64("0x10", &v), -1);
	assert_int_equal(v, 5);
}

static void test_parse_i64(void **state)
{
	int64_t v = 0;

	(void)state;
	assert_int_equal(i64("-5", &v), 0);
	assert_int_equal(v, -5);
	assert_int_equal(i64("1700000000", &v), 0);
	assert_int_equal(v, 1700000000);
	assert_int_equal(i64("9223372036854775807", &v), 0);
	assert_true(v == INT64_MAX);
	assert_int_equal(i64("-9223372036854775807", &v), 0);
	assert_true(v == -INT64_MAX);
}

static void test_parse_i64_rejects(void **state)
{
	int64_t v = 5;

	(void)state;
	assert_int_equal(i64("", &v), -1);
	assert_int_equal(i64("-", &v), -1);
	assert_int_equal(i64("--5", &v), -1);
	assert_int_equal(i64("5-", &v), -1);
	assert_int_equal(i64("9223372036854775808", &v), -1);
	assert_int_equal(i64("18446744073709551616", &v), -1);
	assert_int_equal(v, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_known_value),
		cmocka_unit_test(test_bucket_matches_reference),
		cmocka_unit_test(test_product_key),
		cmocka_unit_test(test_device_key),
		cmocka_unit_test(test_device_key_pads_bucket),
		cmocka_unit_test(test_secret_key),
		cmocka_unit_test(test_keys_share_slots),
		cmocka_unit_test(test_device_field),
		cmocka_unit_test(test_batch_key),
		cmocka_unit_test(test_keys_too_small),
		cmocka_unit_test(test_device_round_trip),
		cmocka_unit_test(test_device_parse_notify),
		cmocka_unit_test(test_device_times),
		cmocka_unit_test(test_device_parse_uses_len),
		cmocka_unit_test(test_device_format_fresh),
		cmocka_unit_test(test_device_format_too_small),
		cmocka_unit_test(test_device_parse_field_count),
		cmocka_unit_test(test_device_parse_status),
		cmocka_unit_test(test_device_parse_non_digits),
		cmocka_unit_test(test_device_parse_negative_batch),
		cmocka_unit_test(test_device_parse_region_code),
		cmocka_unit_test(test_device_parse_empty),
		cmocka_unit_test(test_product_field_names),
		cmocka_unit_test(test_product_dynreg),
		cmocka_unit_test(test_dynreg_random_key),
		cmocka_unit_test(test_preauth),
		cmocka_unit_test(test_product_set_strings),
		cmocka_unit_test(test_product_set_locked),
		cmocka_unit_test(test_product_set_auth),
		cmocka_unit_test(test_product_set_numbers),
		cmocka_unit_test(test_product_set_batch_empty),
		cmocka_unit_test(test_product_set_bad_number),
		cmocka_unit_test(test_product_set_null),
		cmocka_unit_test(test_product_set_bad_field),
		cmocka_unit_test(test_targets_single),
		cmocka_unit_test(test_targets_three),
		cmocka_unit_test(test_targets_rejects),
		cmocka_unit_test(test_targets_max),
		cmocka_unit_test(test_targets_id_lengths),
		cmocka_unit_test(test_targets_round_trip),
		cmocka_unit_test(test_targets_format_too_small),
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_parse_u64_overflow),
		cmocka_unit_test(test_parse_u64_rejects),
		cmocka_unit_test(test_parse_i64),
		cmocka_unit_test(test_parse_i64_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
