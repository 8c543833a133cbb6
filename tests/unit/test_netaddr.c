#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "netaddr.h"

/* The canonical text of A, in a static buffer. */
static const char *text_of(const struct netaddr *a)
{
	static char buf[NETADDR_TEXT_MAX];

	netaddr_format(a, buf);
	return buf;
}

static void expect_addr(const char *s, int family, const char *text)
{
	struct netaddr a;

	if (netaddr_parse(s, strlen(s), &a) != 0)
		fail_msg("rejected: \"%s\"", s);
	assert_int_equal(a.family, family);
	assert_string_equal(text_of(&a), text);
}

static void expect_reject(const char *s)
{
	struct netaddr a;

	if (netaddr_parse(s, strlen(s), &a) != -1)
		fail_msg("accepted: \"%s\"", s);
}

static struct netaddr addr(const char *s)
{
	struct netaddr a;

	if (netaddr_parse(s, strlen(s), &a) != 0)
		fail_msg("fixture address rejected: \"%s\"", s);
	return a;
}

static void test_parse_v4(void **state)
{
	struct netaddr a;
	static const unsigned char want[16] = { 1, 2, 3, 4 };

	(void)state;
	assert_int_equal(netaddr_parse("1.2.3.4", 7, &a), 0);
	assert_int_equal(a.family, AF_INET);
	/* Unused bytes are zero: the rate limiter compares whole structs. */
	assert_memory_equal(a.bytes, want, 16);
}

static void test_parse_v4_port(void **state)
{
	(void)state;
	expect_addr("1.2.3.4:5678", AF_INET, "1.2.3.4");
}

static void test_parse_v6_loopback(void **state)
{
	(void)state;
	expect_addr("::1", AF_INET6, "::1");
}

static void test_parse_v6_brackets(void **state)
{
	(void)state;
	expect_addr("[::1]", AF_INET6, "::1");
}

static void test_parse_v6_brackets_port(void **state)
{
	(void)state;
	expect_addr("[::1]:443", AF_INET6, "::1");
}

static void test_parse_v6_doc(void **state)
{
	struct netaddr a;
	static const unsigned char want[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

	(void)state;
	assert_int_equal(netaddr_parse("2001:db8::1", 11, &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_memory_equal(a.bytes, want, 16);
}

static void test_parse_v4_mapped(void **state)
{
	struct netaddr a;
	static const unsigned char want[16] = { 10, 1, 2, 3 };

	(void)state;
	assert_int_equal(netaddr_parse("::ffff:10.1.2.3", 15, &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_memory_equal(a.bytes, want, 16);
}

static void test_parse_spaces(void **state)
{
	(void)state;
	expect_addr("  1.2.3.4  ", AF_INET, "1.2.3.4");
	expect_addr("\t[::1]:443 \t", AF_INET6, "::1");
}

static void test_parse_uses_len(void **state)
{
	struct netaddr a;

	(void)state;
	/* Only LEN bytes count: "1.2.3.45" cut to "1.2.3.4". */
	assert_int_equal(netaddr_parse("1.2.3.45", 7, &a), 0);
	assert_string_equal(text_of(&a), "1.2.3.4");
}

static void test_parse_rejects_empty(void **state)
{
	(void)state;
	expect_reject("");
	expect_reject("   ");
}

static void test_parse_rejects_short_v4(void **state)
{
	(void)state;
	expect_reject("1.2.3");
}

static void test_parse_rejects_long_v4(void **state)
{
	(void)state;
	expect_reject("1.2.3.4.5");
}

static void test_parse_rejects_open_bracket(void **state)
{
	(void)state;
	expect_reject("[::1");
}

static void test_parse_rejects_after_bracket(void **state)
{
	(void)state;
	expect_reject("[::1]x");
}

static void test_parse_rejects_words(void **state)
{
	(void)state;
	expect_reject("abc");
}

static void test_parse_rejects_obfuscated(void **state)
{
	(void)state;
	/* RFC 7239 §6: "unknown" and obfuscated identifiers are no addresses. */
	expect_reject("unknown");
	expect_reject("_hidden");
}

static void test_parse_rejects_too_long(void **state)
{
	char buf[128];

	(void)state;
	/* Valid but for its length: a port is not looked at, so only the
	 * length limit can reject these. */
	memset(buf, '5', sizeof(buf));
	memcpy(buf, "1.2.3.4:", 8);
	buf[sizeof(buf) - 1] = '\0';
	expect_reject(buf);
	memcpy(buf, "[::1]:", 6);
	expect_reject(buf);
}

static void test_parse_longest_fits(void **state)
{
	(void)state;
	/* The longest textual form, bracketed and with a port, is accepted. */
	expect_addr("[0000:0000:0000:0000:0000:abcd:255.255.255.255]:65535", AF_INET6, "::abcd:ffff:ffff");
}

static void test_format_round_trip(void **state)
{
	static const char *const texts[] = { "0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "::1",
		"2001:db8::1", "2001:db8:cafe::17", "fe80::1:2:3:4" };

	(void)state;
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct netaddr a = addr(texts[i]), b;
		char buf[NETADDR_TEXT_MAX];

		netaddr_format(&a, buf);
		assert_string_equal(buf, texts[i]);
		assert_int_equal(netaddr_parse(buf, strlen(buf), &b), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
}

static void test_format_canonical(void **state)
{
	(void)state;
	expect_addr("2001:0DB8:0000:0000:0000:0000:0000:0001", AF_INET6, "2001:db8::1");
}

/* CIDR lists */

static void parse_list(struct netaddr_list *list, char *const *cidrs, size_t n)
{
	char *cause = NULL;

	if (netaddr_list_parse(cidrs, n, list, &cause) != 0)
		fail_msg("list rejected: %s", cause);
	assert_null(cause);
	assert_int_equal(list->n, n);
}

static bool contains(const struct netaddr_list *list, const char *s)
{
	struct netaddr a = addr(s);

	return netaddr_list_contains(list, &a);
}

static void test_list_parse(void **state)
{
	char *cidrs[] = { "10.0.0.0/8", "::1/128", "127.0.0.1", "192.168.1.0/24" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 4);
	assert_int_equal(list.items[0].addr.family, AF_INET);
	assert_string_equal(text_of(&list.items[0].addr), "10.0.0.0");
	assert_int_equal(list.items[0].prefix, 8);
	assert_int_equal(list.items[1].addr.family, AF_INET6);
	assert_string_equal(text_of(&list.items[1].addr), "::1");
	assert_int_equal(list.items[1].prefix, 128);
	assert_int_equal(list.items[2].addr.family, AF_INET);
	assert_string_equal(text_of(&list.items[2].addr), "127.0.0.1");
	assert_int_equal(list.items[2].prefix, 32);
	assert_string_equal(text_of(&list.items[3].addr), "192.168.1.0");
	assert_int_equal(list.items[3].prefix, 24);
	netaddr_list_clear(&list);
	assert_null(list.items);
	assert_int_equal(list.n, 0);
}

static void test_list_bare_v6_is_128(void **state)
{
	char *cidrs[] = { "2001:db8::1" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_int_equal(list.items[0].prefix, 128);
	assert_true(contains(&list, "2001:db8::1"));
	assert_false(contains(&list, "2001:db8::2"));
	netaddr_list_clear(&list);
}

static void test_list_empty(void **state)
{
	struct netaddr_list list;
	char *cause = NULL;

	(void)state;
	assert_int_equal(netaddr_list_parse(NULL, 0, &list, &cause), 0);
	assert_null(cause);
	assert_int_equal(list.n, 0);
	assert_false(contains(&list, "127.0.0.1"));
	netaddr_list_clear(&list);
}

/* The second entry is BAD: parsing fails, the cause names trusted_proxies[1]
 * and the entry, and the list is left empty. */
static void expect_list_reject(const char *bad)
{
	char *cidrs[] = { "127.0.0.0/8", (char *)bad };
	struct netaddr_list list = { 0 };
	char *cause = NULL;

	if (netaddr_list_parse(cidrs, 2, &list, &cause) != -1)
		fail_msg("list accepted: \"%s\"", bad);
	assert_non_null(cause);
	if (strstr(cause, "trusted_proxies[1]") == NULL || strstr(cause, bad) == NULL)
		fail_msg("cause for \"%s\": %s", bad, cause);
	assert_null(list.items);
	assert_int_equal(list.n, 0);
	free(cause);
}

static void test_list_rejects_v4_prefix_33(void **state)
{
	(void)state;
	expect_list_reject("10.0.0.0/33");
}

static void test_list_rejects_v6_prefix_129(void **state)
{
	(void)state;
	expect_list_reject("::/129");
}

static void test_list_rejects_empty_prefix(void **state)
{
	(void)state;
	expect_list_reject("10.0.0.0/");
}

static void test_list_rejects_word_prefix(void **state)
{
	(void)state;
	expect_list_reject("10.0.0.0/x");
	expect_list_reject("10.0.0.0/8x");
}

static void test_list_rejects_negative_prefix(void **state)
{
	(void)state;
	expect_list_reject("10.0.0.0/-1");
}

static void test_list_rejects_nonsense(void **state)
{
	(void)state;
	expect_list_reject("nonsense");
	expect_list_reject("nonsense/8");
}

static void test_list_rejects_first_index(void **state)
{
	char *cidrs[] = { "bad", "10.0.0.0/8" };
	struct netaddr_list list;
	char *cause = NULL;

	(void)state;
	assert_int_equal(netaddr_list_parse(cidrs, 2, &list, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "trusted_proxies[0]"));
	free(cause);
}

static void test_contains_slash8(void **state)
{
	char *cidrs[] = { "10.0.0.0/8" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "10.0.0.0"));
	assert_true(contains(&list, "10.255.255.255"));
	assert_false(contains(&list, "9.255.255.255"));
	assert_false(contains(&list, "11.0.0.0"));
	netaddr_list_clear(&list);
}

static void test_contains_slash24(void **state)
{
	char *cidrs[] = { "192.168.1.0/24" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "192.168.1.0"));
	assert_true(contains(&list, "192.168.1.255"));
	assert_false(contains(&list, "192.168.0.255"));
	assert_false(contains(&list, "192.168.2.0"));
	netaddr_list_clear(&list);
}

static void test_contains_slash12(void **state)
{
	char *cidrs[] = { "172.16.0.0/12" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "172.16.0.0"));
	assert_true(contains(&list, "172.31.255.255"));
	assert_false(contains(&list, "172.32.0.0"));
	assert_false(contains(&list, "172.15.255.255"));
	netaddr_list_clear(&list);
}

static void test_contains_host_bits_ignored(void **state)
{
	char *cidrs[] = { "10.1.2.3/8" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "10.200.0.1"));
	assert_false(contains(&list, "11.1.2.3"));
	netaddr_list_clear(&list);
}

static void test_contains_v6_prefix(void **state)
{
	char *cidrs[] = { "2001:db8::/33", "::1/128" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 2);
	assert_true(contains(&list, "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(contains(&list, "2001:db8:8000::"));
	assert_true(contains(&list, "::1"));
	assert_false(contains(&list, "::2"));
	netaddr_list_clear(&list);
}

static void test_contains_zero_v4(void **state)
{
	char *cidrs[] = { "0.0.0.0/0" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "0.0.0.0"));
	assert_true(contains(&list, "203.0.113.9"));
	assert_true(contains(&list, "255.255.255.255"));
	assert_false(contains(&list, "::"));
	assert_false(contains(&list, "2001:db8::1"));
	netaddr_list_clear(&list);
}

static void test_contains_zero_v6(void **state)
{
	char *cidrs[] = { "::/0" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 1);
	assert_true(contains(&list, "::"));
	assert_true(contains(&list, "2001:db8::1"));
	assert_true(contains(&list, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
	assert_false(contains(&list, "0.0.0.0"));
	assert_false(contains(&list, "203.0.113.9"));
	netaddr_list_clear(&list);
}

static void test_contains_v4_list_not_v6(void **state)
{
	char *cidrs[] = { "10.0.0.0/8", "127.0.0.1" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 2);
	/* Same leading bytes, other family. */
	assert_false(contains(&list, "a00::"));
	assert_false(contains(&list, "7f00:1::"));
	assert_false(contains(&list, "::1"));
	netaddr_list_clear(&list);
}

static void test_contains_v6_list_not_v4(void **state)
{
	char *cidrs[] = { "a00::/8", "::/96" };
	struct netaddr_list list;

	(void)state;
	parse_list(&list, cidrs, 2);
	assert_false(contains(&list, "10.0.0.1"));
	assert_false(contains(&list, "0.0.0.1"));
	/* A mapped address is IPv4, so ::ffff:0:0/96 does not hold it either. */
	assert_false(contains(&list, "::ffff:10.0.0.1"));
	netaddr_list_clear(&list);
}

/* Client address */

static struct netaddr_list trusted;

static int trusted_setup(void **state)
{
	char *cidrs[] = { "127.0.0.0/8", "10.0.0.0/8" };
	char *cause = NULL;

	(void)state;
	if (netaddr_list_parse(cidrs, 2, &trusted, &cause) != 0) {
		free(cause);
		return -1;
	}
	return 0;
}

static int trusted_teardown(void **state)
{
	(void)state;
	netaddr_list_clear(&trusted);
	return 0;
}

static const char *client(const char *peer, const char *xff, const char *forwarded)
{
	struct netaddr p = addr(peer), out;

	memset(&out, 0xa5, sizeof(out));
	netaddr_client(&p, xff, forwarded, &trusted, &out);
	return text_of(&out);
}

static void test_client_untrusted_peer_ignores_xff(void **state)
{
	(void)state;
	assert_string_equal(client("203.0.113.9", "1.1.1.1", NULL), "203.0.113.9");
}

static void test_client_untrusted_peer_ignores_forwarded(void **state)
{
	(void)state;
	assert_string_equal(client("203.0.113.9", NULL, "for=1.1.1.1"), "203.0.113.9");
}

static void test_client_trusted_peer_xff(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "198.51.100.7", NULL), "198.51.100.7");
}

static void test_client_xff_right_most_untrusted(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "198.51.100.7, 10.1.1.1", NULL), "198.51.100.7");
}

static void test_client_xff_spoofed_left_ignored(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "6.6.6.6, 198.51.100.7", NULL), "198.51.100.7");
}

static void test_client_xff_all_trusted(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "10.0.0.1, 10.0.0.2", NULL), "10.0.0.1");
}

static void test_client_xff_garbage_left(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "x, 198.51.100.7", NULL), "198.51.100.7");
}

static void test_client_xff_garbage_right(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "198.51.100.7, garbage", NULL), "127.0.0.1");
}

static void test_client_xff_garbage_behind_trusted(void **state)
{
	(void)state;
	/* The walk stops at the last good address, a trusted hop here. */
	assert_string_equal(client("127.0.0.1", "garbage, 10.0.0.2", NULL), "10.0.0.2");
}

static void test_client_xff_no_spaces(void **state)
{
	(void)state;
	assert_string_equal(client("10.9.9.9", "6.6.6.6,198.51.100.7,10.0.0.3", NULL), "198.51.100.7");
}

static void test_client_xff_v6_with_port(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "[2001:db8::7]:1234", NULL), "2001:db8::7");
}

static void test_client_xff_empty(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "", NULL), "127.0.0.1");
}

static void test_client_forwarded_params(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "for=192.0.2.60;proto=http;by=203.0.113.43"), "192.0.2.60");
}

static void test_client_forwarded_for_not_first(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "proto=https;for=192.0.2.61"), "192.0.2.61");
}

static void test_client_forwarded_quoted_v6(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "for=\"[2001:db8:cafe::17]:4711\""), "2001:db8:cafe::17");
}

static void test_client_forwarded_two_elements(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "for=192.0.2.43, for=198.51.100.17"), "198.51.100.17");
}

static void test_client_forwarded_case(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "For=192.0.2.60"), "192.0.2.60");
	assert_string_equal(client("127.0.0.1", NULL, "FOR=192.0.2.60"), "192.0.2.60");
}

static void test_client_forwarded_obfuscated(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "for=_hidden"), "127.0.0.1");
	assert_string_equal(client("127.0.0.1", NULL, "for=unknown"), "127.0.0.1");
}

static void test_client_forwarded_without_for(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, "proto=http;by=203.0.113.43"), "127.0.0.1");
}

static void test_client_xff_preferred(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", "198.51.100.7", "for=192.0.2.60"), "198.51.100.7");
}

static void test_client_no_headers(void **state)
{
	(void)state;
	assert_string_equal(client("127.0.0.1", NULL, NULL), "127.0.0.1");
	assert_string_equal(client("203.0.113.9", NULL, NULL), "203.0.113.9");
}

static void test_client_v6_peer_untrusted(void **state)
{
	(void)state;
	assert_string_equal(client("2001:db8::1", "198.51.100.7", NULL), "2001:db8::1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_v4),
		cmocka_unit_test(test_parse_v4_port),
		cmocka_unit_test(test_parse_v6_loopback),
		cmocka_unit_test(test_parse_v6_brackets),
		cmocka_unit_test(test_parse_v6_brackets_port),
		cmocka_unit_test(test_parse_v6_doc),
		cmocka_unit_test(test_parse_v4_mapped),
		cmocka_unit_test(test_parse_spaces),
		cmocka_unit_test(test_parse_uses_len),
		cmocka_unit_test(test_parse_rejects_empty),
		cmocka_unit_test(test_parse_rejects_short_v4),
		cmocka_unit_test(test_parse_rejects_long_v4),
		cmocka_unit_test(test_parse_rejects_open_bracket),
		cmocka_unit_test(test_parse_rejects_after_bracket),
		cmocka_unit_test(test_parse_rejects_words),
		cmocka_unit_test(test_parse_rejects_obfuscated),
		cmocka_unit_test(test_parse_rejects_too_long),
		cmocka_unit_test(test_parse_longest_fits),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_format_canonical),
		cmocka_unit_test(test_list_parse),
		cmocka_unit_test(test_list_bare_v6_is_128),
		cmocka_unit_test(test_list_empty),
		cmocka_unit_test(test_list_rejects_v4_prefix_33),
		cmocka_unit_test(test_list_rejects_v6_prefix_129),
		cmocka_unit_test(test_list_rejects_empty_prefix),
		cmocka_unit_test(test_list_rejects_word_prefix),
		cmocka_unit_test(test_list_rejects_negative_prefix),
		cmocka_unit_test(test_list_rejects_nonsense),
		cmocka_unit_test(test_list_rejects_first_index),
		cmocka_unit_test(test_contains_slash8),
		cmocka_unit_test(test_contains_slash24),
		cmocka_unit_test(test_contains_slash12),
		cmocka_unit_test(test_contains_host_bits_ignored),
		cmocka_unit_test(test_contains_v6_prefix),
		cmocka_unit_test(test_contains_zero_v4),
		cmocka_unit_test(test_contains_zero_v6),
		cmocka_unit_test(test_contains_v4_list_not_v6),
		cmocka_unit_test(test_contains_v6_list_not_v4),
		cmocka_unit_test(test_client_untrusted_peer_ignores_xff),
		cmocka_unit_test(test_client_untrusted_peer_ignores_forwarded),
		cmocka_unit_test(test_client_trusted_peer_xff),
		cmocka_unit_test(test_client_xff_right_most_untrusted),
		cmocka_unit_test(test_client_xff_spoofed_left_ignored),
		cmocka_unit_test(test_client_xff_all_trusted),
		cmocka_unit_test(test_client_xff_garbage_left),
		cmocka_unit_test(test_client_xff_garbage_right),
		cmocka_unit_test(test_client_xff_garbage_behind_trusted),
		cmocka_unit_test(test_client_xff_no_spaces),
		cmocka_unit_test(test_client_xff_v6_with_port),
		cmocka_unit_test(test_client_xff_empty),
		cmocka_unit_test(test_client_forwarded_params),
		cmocka_unit_test(test_client_forwarded_for_not_first),
		cmocka_unit_test(test_client_forwarded_quoted_v6),
		cmocka_unit_test(test_client_forwarded_two_elements),
		cmocka_unit_test(test_client_forwarded_case),
		cmocka_unit_test(test_client_forwarded_obfuscated),
		cmocka_unit_test(test_client_forwarded_without_for),
		cmocka_unit_test(test_client_xff_preferred),
		cmocka_unit_test(test_client_no_headers),
		cmocka_unit_test(test_client_v6_peer_untrusted),
	};

	return cmocka_run_group_tests(tests, trusted_setup, trusted_teardown);
}
