#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The module is built into this test with cmocka's allocator (leaks and
 * overruns fail the test) and every allocation counted (none may happen
 * after cache_new). */
#define UNIT_TESTING 1
#include <cmocka.h>

static size_t allocations;

static void *counted_calloc(size_t n, size_t size)
{
	allocations++;
	return test_calloc(n, size);
}

#undef calloc
#define calloc counted_calloc
#include "../../src/cache.c"
#undef calloc

#define KEY(s) s, strlen(s)

static struct cache *new_cache(size_t n)
{
	struct cache *c = cache_new(n);

	assert_non_null(c);
	assert_int_equal(cache_capacity(c), n);
	assert_int_equal(cache_count(c), 0);
	return c;
}

static void put_ok(struct cache *c, const char *key, const char *field, const char *value)
{
	if (!cache_put(c, cache_token(c), KEY(key), KEY(field), value, value ? strlen(value) : 0))
		fail_msg("put %s %s refused", key, field);
}

static void assert_hit(struct cache *c, const char *key, const char *field, const char *want)
{
	const char *v = NULL;
	size_t vlen = 0;
	enum cache_result r = cache_get(c, KEY(key), KEY(field), &v, &vlen);

	if (r != CACHE_HIT)
		fail_msg("%s %s: result %d, expected a hit", key, field, (int)r);
	assert_int_equal(vlen, strlen(want));
	assert_memory_equal(v, want, vlen);
}

static void assert_miss(struct cache *c, const char *key, const char *field)
{
	const char *v;
	size_t vlen;
	enum cache_result r = cache_get(c, KEY(key), KEY(field), &v, &vlen);

	if (r != CACHE_MISS)
		fail_msg("%s %s: result %d, expected a miss", key, field, (int)r);
}

static void test_hit_and_miss(void **state)
{
	struct cache *c = new_cache(16);

	(void)state;
	assert_miss(c, "bd:p:a1PK", "");
	put_ok(c, "bd:p:a1PK", "", "cn-shanghai");
	assert_hit(c, "bd:p:a1PK", "", "cn-shanghai");
	assert_miss(c, "bd:p:a1PL", "");
	assert_miss(c, "bd:p:a1PK", "x");
	/* The split between key and field is part of the identity. */
	put_ok(c, "ab", "c", "1");
	assert_miss(c, "a", "bc");
	assert_hit(c, "ab", "c", "1");
	/* Replacing keeps one entry. */
	put_ok(c, "bd:p:a1PK", "", "eu-central-1");
	assert_hit(c, "bd:p:a1PK", "", "eu-central-1");
	assert_int_equal(cache_count(c), 2);
	/* An empty value is a value, not an absence. */
	put_ok(c, "bd:s:00001", "a1PK/dev1", "");
	assert_hit(c, "bd:s:00001", "a1PK/dev1", "");
	assert_int_equal(cache_stats(c)->hits, 4);
	assert_int_equal(cache_stats(c)->misses, 4);
	cache_free(c);
}

static void test_absent_entries(void **state)
{
	struct cache *c = new_cache(16);
	const char *v;
	size_t vlen;

	(void)state;
	put_ok(c, "bd:d:4339d", "a1PK/dev1", NULL);
	assert_int_equal(cache_get(c, KEY("bd:d:4339d"), KEY("a1PK/dev1"), &v, &vlen), CACHE_HIT_ABSENT);
	assert_int_equal(cache_count(c), 1);
	/* The device appears: a value replaces the absence. */
	put_ok(c, "bd:d:4339d", "a1PK/dev1", "0;i;1763800000;0;0;");
	assert_hit(c, "bd:d:4339d", "a1PK/dev1", "0;i;1763800000;0;0;");
	put_ok(c, "bd:d:4339d", "a1PK/dev1", NULL);
	assert_int_equal(cache_get(c, KEY("bd:d:4339d"), KEY("a1PK/dev1"), &v, &vlen), CACHE_HIT_ABSENT);
	assert_int_equal(cache_invalidate(c, KEY("bd:d:4339d")), 1);
	assert_miss(c, "bd:d:4339d", "a1PK/dev1");
	assert_int_equal(cache_count(c), 0);
	cache_free(c);
}

static void test_invalidate_drops_every_field(void **state)
{
	struct cache *c = new_cache(64);
	char field[32];

	(void)state;
	for (int i = 0; i < 20; i++) {
		snprintf(field, sizeof(field), "a1PK/dev%d", i);
		put_ok(c, "bd:d:00042", field, "0;i;1;0;0;");
		put_ok(c, "bd:s:00042", field, "sealed");
	}
	put_ok(c, "bd:p:a1PK", "", "home");
	assert_int_equal(cache_count(c), 41);
	assert_int_equal(cache_invalidate(c, KEY("bd:d:00042")), 20);
	assert_int_equal(cache_count(c), 21);
	for (int i = 0; i < 20; i++) {
		snprintf(field, sizeof(field), "a1PK/dev%d", i);
		assert_miss(c, "bd:d:00042", field);
		assert_hit(c, "bd:s:00042", field, "sealed");
	}
	assert_hit(c, "bd:p:a1PK", "", "home");
	/* A key nobody cached, or one already dropped: nothing to do. */
	assert_int_equal(cache_invalidate(c, KEY("bd:d:00042")), 0);
	assert_int_equal(cache_invalidate(c, KEY("bd:p:zzz")), 0);
	assert_int_equal(cache_stats(c)->invalidations, 3);
	assert_int_equal(cache_stats(c)->dropped, 20);
	/* Dropped slots are used again before anything is evicted. */
	for (int i = 0; i < 20; i++) {
		snprintf(field, sizeof(field), "b1PK/dev%d", i);
		put_ok(c, "bd:d:00043", field, "0;i;1;0;0;");
	}
	assert_int_equal(cache_count(c), 41);
	assert_int_equal(cache_stats(c)->evictions, 0);
	cache_free(c);
}

static void test_flush(void **state)
{
	struct cache *c = new_cache(8);

	(void)state;
	cache_flush(c); /* empty: nothing to forget */
	put_ok(c, "k1", "", "1");
	put_ok(c, "k2", "f", NULL);
	cache_flush(c);
	assert_int_equal(cache_count(c), 0);
	assert_miss(c, "k1", "");
	assert_miss(c, "k2", "f");
	put_ok(c, "k3", "", "3");
	assert_hit(c, "k3", "", "3");
	assert_int_equal(cache_count(c), 1);
	assert_int_equal(cache_stats(c)->flushes, 2);
	/* Filling it after a flush evicts nothing until the bound. */
	for (int i = 0; i < 7; i++) {
		char key[16];
		snprintf(key, sizeof(key), "x%d", i);
		put_ok(c, key, "", "v");
	}
	assert_int_equal(cache_count(c), 8);
	assert_int_equal(cache_stats(c)->evictions, 0);
	cache_free(c);
}

static void test_token_guard(void **state)
{
	struct cache *c = new_cache(16);
	uint64_t t;

	(void)state;
	/* Two keys in different guard slots, so that the second is not refused. */
	assert_int_not_equal(cache_khash(KEY("bd:p:a")) % CACHE_GUARD_SLOTS,
		cache_khash(KEY("bd:p:b")) % CACHE_GUARD_SLOTS);
	assert_int_not_equal(cache_token(c), 0);
	assert_false(cache_put(c, 0, KEY("bd:p:a"), KEY(""), KEY("v")));

	/* Sent, then the key is written by someone (the invalidation is read
	 * first), then the old answer arrives: it must not be stored. */
	t = cache_token(c);
	cache_invalidate(c, KEY("bd:p:a"));
	assert_false(cache_put(c, t, KEY("bd:p:a"), KEY(""), KEY("old")));
	assert_false(cache_put(c, t, KEY("bd:p:a"), KEY(""), NULL, 0));
	assert_miss(c, "bd:p:a", "");
	/* Another key read at the same time is fine. */
	assert_true(cache_put(c, t, KEY("bd:p:b"), KEY(""), KEY("b")));
	/* A read sent after the invalidation is. */
	t = cache_token(c);
	assert_true(cache_put(c, t, KEY("bd:p:a"), KEY(""), KEY("new")));
	assert_hit(c, "bd:p:a", "", "new");

	/* A flush refuses every read sent before it. */
	t = cache_token(c);
	cache_flush(c);
	assert_false(cache_put(c, t, KEY("bd:p:b"), KEY(""), KEY("b")));
	assert_true(cache_put(c, cache_token(c), KEY("bd:p:b"), KEY(""), KEY("b")));
	assert_int_equal(cache_stats(c)->refused, 4);
	cache_free(c);
}

static void test_too_large(void **state)
{
	struct cache *c = new_cache(4);
	char big[512];

	(void)state;
	memset(big, 'v', sizeof(big));
	/* Key 10 and field 10 bytes: the value may have the rest. */
	assert_true(cache_put(c, cache_token(c), KEY("bd:d:00001"), KEY("a1PK/dev01"), big, CACHE_DATA_MAX - 20));
	assert_false(cache_put(c, cache_token(c), KEY("bd:d:00002"), KEY("a1PK/dev01"), big, CACHE_DATA_MAX - 19));
	assert_false(cache_put(c, cache_token(c), big, 256, KEY(""), KEY("v")));
	assert_false(cache_put(c, cache_token(c), KEY("k"), KEY(""), big, 256));
	/* A key too long to store is a miss, not a mismatch. */
	assert_int_equal(cache_get(c, big, 300, KEY(""), &(const char *){ NULL }, &(size_t){ 0 }), CACHE_MISS);
	assert_int_equal(cache_count(c), 1);
	cache_free(c);
}

static void test_eviction_at_bound(void **state)
{
	struct cache *c = new_cache(8);
	char key[16];

	(void)state;
	for (int i = 0; i < 8; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		put_ok(c, key, "", key);
	}
	assert_int_equal(cache_count(c), 8);
	/* Entries read since they were stored survive the next eviction. */
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_hit(c, key, "", key);
	}
	put_ok(c, "k8", "", "k8");
	assert_int_equal(cache_count(c), 8);
	assert_int_equal(cache_stats(c)->evictions, 1);
	assert_miss(c, "k7", "");
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		assert_hit(c, key, "", key);
	}
	assert_hit(c, "k8", "", "k8");
	cache_free(c);
}

static void test_no_growth_past_bound(void **state)
{
	struct cache *c;
	size_t before;
	char key[32], field[32];

	(void)state;
	allocations = 0;
	c = new_cache(100);
	before = allocations;
	assert_true(before > 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 2000; i++) {
			snprintf(key, sizeof(key), "bd:d:%05x", i % 97);
			snprintf(field, sizeof(field), "pk%d/dev%d", round, i);
			put_ok(c, key, field, i % 5 ? "0;i;1763800000;0;0;" : NULL);
			assert_true(cache_count(c) <= 100);
			if (i % 13 == 0)
				cache_invalidate(c, key, strlen(key));
		}
		cache_flush(c);
	}
	assert_int_equal(allocations, before);
	assert_true(cache_stats(c)->evictions > 1000);
	cache_free(c);
}

/* Random operations against a model of what Redis holds: whatever the cache
 * answers must be the model's current value (a miss is always allowed). */
static void test_random_against_model(void **state)
{
	enum { KEYS = 12, FIELDS = 6, OPS = 200000 };
	static char model[KEYS][FIELDS][8]; /* "" = absent */
	struct cache *c = new_cache(20);
	uint64_t rng = 0x9e3779b97f4a7c15u;
	char key[16], field[16];

	(void)state;
	memset(model, 0, sizeof(model));
	for (int op = 0; op < OPS; op++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		int k = (int)(rng % KEYS), f = (int)((rng >> 8) % FIELDS), what = (int)((rng >> 16) % 10);
		snprintf(key, sizeof(key), "key%d", k);
		snprintf(field, sizeof(field), "f%d", f);
		if (what < 4) {
			/* A read: its answer is what Redis held when it ran. */
			uint64_t t = cache_token(c);
			char answer[8];
			memcpy(answer, model[k][f], sizeof(answer));
			if (what == 0) {
				/* ... and a write lands before the answer is read. */
				snprintf(model[k][f], sizeof(model[k][f]), "%d", op % 1000);
				cache_invalidate(c, KEY(key));
			}
			(void)cache_put(c, t, KEY(key), KEY(field), answer[0] ? answer : NULL, strlen(answer));
		} else if (what < 8) {
			const char *v;
			size_t vlen;
			enum cache_result r = cache_get(c, KEY(key), KEY(field), &v, &vlen);
			if (r == CACHE_HIT_ABSENT && model[k][f][0])
				fail_msg("op %d: %s %s cached absent, holds %s", op, key, field, model[k][f]);
			if (r == CACHE_HIT && (vlen != strlen(model[k][f]) || memcmp(v, model[k][f], vlen) != 0))
				fail_msg("op %d: %s %s cached %.*s, holds %s", op, key, field, (int)vlen, v, model[k][f]);
		} else if (what == 8) {
			snprintf(model[k][f], sizeof(model[k][f]), "%d", op % 1000);
			cache_invalidate(c, KEY(key));
		} else if ((rng >> 24) % 50 == 0) {
			cache_flush(c);
		}
		assert_true(cache_count(c) <= 20);
	}
	assert_true(cache_stats(c)->hits > 1000);
	cache_free(c);
}

static void test_bad_sizes(void **state)
{
	(void)state;
	assert_null(cache_new(0));
	assert_null(cache_new((size_t)CACHE_MAX_ENTRIES + 1));
	cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hit_and_miss),
		cmocka_unit_test(test_absent_entries),
		cmocka_unit_test(test_invalidate_drops_every_field),
		cmocka_unit_test(test_flush),
		cmocka_unit_test(test_token_guard),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_eviction_at_bound),
		cmocka_unit_test(test_no_growth_past_bound),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_bad_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
