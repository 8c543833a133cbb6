#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "ratelimit.h"

/* An arbitrary start for the monotonic clock, far from zero. */
#define T0 1000000u

static struct netaddr addr(const char *s)
{
	struct netaddr a;

	if (netaddr_parse(s, strlen(s), &a) != 0)
		fail_msg("fixture address rejected: \"%s\"", s);
	return a;
}

static struct ratelimit *new_rl(unsigned rate, unsigned slots)
{
	struct ratelimit *rl = ratelimit_new(rate, slots);

	assert_non_null(rl);
	return rl;
}

/* Takes N tokens for A at NOW, each of which must be allowed. */
static void take_allowed(struct ratelimit *rl, const struct netaddr *a, uint64_t now, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned wait = ratelimit_take(rl, a, now);

		if (wait != 0)
			fail_msg("take %u of %u at %llu refused (wait %u)", i + 1, n, (unsigned long long)now, wait);
	}
}

static void test_burst_of_rate(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	assert_int_equal(ratelimit_take(rl, &a, T0), 1);
	ratelimit_free(rl);
}

static void test_wait_rounds_up_to_second(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	/* 200 ms to the next token, reported as 1 s; still so 199 ms later. */
	assert_int_equal(ratelimit_take(rl, &a, T0), 1);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 199), 1);
	ratelimit_free(rl);
}

static void test_refill_after_200ms(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 200), 0);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 200), 1);
	ratelimit_free(rl);
}

static void test_refused_takes_cost_nothing(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	for (int i = 0; i < 100; i++)
		assert_int_equal(ratelimit_take(rl, &a, T0 + 100), 1);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 200), 0);
	ratelimit_free(rl);
}

static void test_burst_capped_at_rate(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	take_allowed(rl, &a, T0 + 10000, 5);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 10000), 1);
	ratelimit_free(rl);
}

static void test_addresses_independent(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("198.51.100.7"), b = addr("198.51.100.8");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	assert_int_equal(ratelimit_take(rl, &a, T0), 1);
	take_allowed(rl, &b, T0, 5);
	assert_int_equal(ratelimit_take(rl, &b, T0), 1);
	ratelimit_free(rl);
}

static void test_families_independent(void **state)
{
	(void)state;
	/* An IPv4 address and the IPv6 address with the same 16 bytes
	 * ("a00:1::" for 10.0.0.1) are different clients, even should they
	 * land in the same place (2 slots: one pair per stripe). */
	for (unsigned i = 0; i < 256; i++) {
		struct ratelimit *rl = new_rl(1, 2);
		struct netaddr v4 = { .family = AF_INET, .bytes = { 10, (unsigned char)(i >> 8), (unsigned char)i, 1 } };
		struct netaddr v6 = v4;

		v6.family = AF_INET6;
		assert_int_equal(ratelimit_take(rl, &v4, T0), 0);
		assert_int_equal(ratelimit_take(rl, &v4, T0), 1);
		if (ratelimit_take(rl, &v6, T0) != 0)
			fail_msg("IPv6 twin of 10.%u.%u.1 shares its bucket", i >> 8, i & 0xff);
		assert_int_equal(ratelimit_take(rl, &v6, T0), 1);
		ratelimit_free(rl);
	}
}

static void test_mapped_is_same_address(void **state)
{
	struct ratelimit *rl = new_rl(5, 1024);
	struct netaddr a = addr("10.1.2.3"), mapped = addr("::ffff:10.1.2.3");

	(void)state;
	take_allowed(rl, &a, T0, 5);
	assert_int_equal(ratelimit_take(rl, &mapped, T0), 1);
	ratelimit_free(rl);
}

static void test_rate_one(void **state)
{
	struct ratelimit *rl = new_rl(1, 1024);
	struct netaddr a = addr("2001:db8::1");

	(void)state;
	assert_int_equal(ratelimit_take(rl, &a, T0), 0);
	assert_int_equal(ratelimit_take(rl, &a, T0), 1);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 999), 1);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 1000), 0);
	assert_int_equal(ratelimit_take(rl, &a, T0 + 1000), 1);
	ratelimit_free(rl);
}

static void test_rate_zero_is_one(void **state)
{
	struct ratelimit *rl = new_rl(0, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	assert_int_equal(ratelimit_take(rl, &a, T0), 0);
	assert_int_equal(ratelimit_take(rl, &a, T0), 1);
	ratelimit_free(rl);
}

static void test_clock_at_zero(void **state)
{
	struct ratelimit *rl = new_rl(2, 1024);
	struct netaddr a = addr("198.51.100.7");

	(void)state;
	take_allowed(rl, &a, 0, 2);
	assert_int_equal(ratelimit_take(rl, &a, 0), 1);
	assert_int_equal(ratelimit_take(rl, &a, 500), 0);
	ratelimit_free(rl);
}

static void test_eviction_tiny(void **state)
{
	struct ratelimit *rl = new_rl(1, 2);
	char text[32];

	(void)state;
	/* Far more addresses than places: every new one is allowed at once,
	 * whoever it pushes out. */
	for (unsigned i = 0; i < 20000; i++) {
		struct netaddr a;

		snprintf(text, sizeof(text), "10.%u.%u.%u", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
		a = addr(text);
		if (ratelimit_take(rl, &a, T0 + i / 7) != 0)
			fail_msg("fresh address %s refused", text);
	}
	ratelimit_free(rl);
}

static void test_eviction_v6(void **state)
{
	struct ratelimit *rl = new_rl(3, 0);
	char text[64];

	(void)state;
	for (unsigned i = 0; i < 5000; i++) {
		struct netaddr a;

		snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 8, i & 0xff);
		a = addr(text);
		if (ratelimit_take(rl, &a, T0) != 0)
			fail_msg("fresh address %s refused", text);
	}
	ratelimit_free(rl);
}

static void test_free_null(void **state)
{
	(void)state;
	ratelimit_free(NULL);
}

struct hammer {
	struct ratelimit *rl;
	pthread_barrier_t *start;
	struct netaddr addr;
	unsigned allowed;
};

static void *hammer_run(void *arg)
{
	struct hammer *h = arg;

	pthread_barrier_wait(h->start);
	for (int i = 0; i < 10000; i++)
		if (ratelimit_take(h->rl, &h->addr, T0) == 0)
			h->allowed++;
	return NULL;
}

static void test_threads_share_one_bucket(void **state)
{
	char text[32];

	(void)state;
	/* Repeated, on a fresh address each round, since a lost update needs
	 * the threads to meet inside the first 1000 takes. */
	for (unsigned round = 0; round < 100; round++) {
		struct ratelimit *rl = new_rl(1000, 1024);
		pthread_barrier_t start;
		struct hammer h[4];
		pthread_t t[4];
		unsigned total = 0;

		snprintf(text, sizeof(text), "198.51.%u.%u", round / 256, round % 256);
		assert_int_equal(pthread_barrier_init(&start, NULL, 4), 0);
		for (int i = 0; i < 4; i++) {
			h[i] = (struct hammer){ .rl = rl, .start = &start, .addr = addr(text), .allowed = 0 };
			assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
		}
		for (int i = 0; i < 4; i++) {
			assert_int_equal(pthread_join(t[i], NULL), 0);
			total += h[i].allowed;
		}
		pthread_barrier_destroy(&start);
		assert_int_equal(total, 1000);
		ratelimit_free(rl);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_of_rate),
		cmocka_unit_test(test_wait_rounds_up_to_second),
		cmocka_unit_test(test_refill_after_200ms),
		cmocka_unit_test(test_refused_takes_cost_nothing),
		cmocka_unit_test(test_burst_capped_at_rate),
		cmocka_unit_test(test_addresses_independent),
		cmocka_unit_test(test_families_independent),
		cmocka_unit_test(test_mapped_is_same_address),
		cmocka_unit_test(test_rate_one),
		cmocka_unit_test(test_rate_zero_is_one),
		cmocka_unit_test(test_clock_at_zero),
		cmocka_unit_test(test_eviction_tiny),
		cmocka_unit_test(test_eviction_v6),
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_threads_share_one_bucket),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
