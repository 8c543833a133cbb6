#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "token.h"

/* printf %s test-token | sha256sum */
#define TEST_TOKEN_SHA256 "4c5dc9b7708905f77f5e5d16316b5dfb425e68cb326dcd55a860e90a7707031e"

/* "sha256:<hex>" of TOKEN, computed here independently of token.c. */
static void hash_of(const char *token, char out[7 + 64 + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	assert_int_equal(EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL), 1);
	assert_int_equal(mdlen, 32);
	memcpy(out, "sha256:", 7);
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

static struct token_set *new_set(char *const *hashes, size_t n)
{
	struct token_set *set = NULL;
	char *cause = NULL;

	if (token_set_new(hashes, n, &set, &cause) < 0)
		fail_msg("token_set_new: %s", cause ? cause : "(no cause)");
	assert_null(cause);
	assert_non_null(set);
	return set;
}

static struct token_set *new_test_token_set(void)
{
	static char hash[7 + 64 + 1];
	static char *const hashes[] = { hash };

	hash_of("test-token", hash);
	return new_set(hashes, 1);
}

/* Expects HASH, the second of two entries, to be rejected with a cause naming it. */
static void expect_bad_hash(const char *hash)
{
	char good[7 + 64 + 1];
	char *hashes[2];
	struct token_set *set = (struct token_set *)0x1;
	char *cause = NULL;

	hash_of("test-token", good);
	hashes[0] = good;
	hashes[1] = (char *)hash;
	if (token_set_new(hashes, 2, &set, &cause) != -1)
		fail_msg("accepted \"%s\"", hash);
	assert_non_null(cause);
	if (strstr(cause, "admin.tokens[1]") == NULL)
		fail_msg("cause does not name admin.tokens[1]: %s", cause);
	assert_ptr_equal(set, (struct token_set *)0x1);
	free(cause);
}

static void test_reference_hash(void **state)
{
	char hash[7 + 64 + 1];

	(void)state;
	hash_of("test-token", hash);
	assert_string_equal(hash, "sha256:" TEST_TOKEN_SHA256);
}

static void test_accepts_bearer(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_true(token_set_check(set, "Bearer test-token"));
	token_set_unref(set);
}

static void test_references(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	/* A thread's reference keeps the set after the owner's is gone (ASan
	 * and valgrind see a use after free otherwise). */
	assert_ptr_equal(token_set_ref(set), set);
	token_set_unref(set);
	assert_true(token_set_check(set, "Bearer test-token"));
	token_set_unref(set);
	token_set_unref(NULL);
}

static void test_accepts_lowercase_scheme(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_true(token_set_check(set, "bearer test-token"));
	assert_true(token_set_check(set, "BEARER test-token"));
	token_set_unref(set);
}

static void test_accepts_hard_coded_hash(void **state)
{
	char *const hashes[] = { "sha256:" TEST_TOKEN_SHA256 };
	struct token_set *set = new_set(hashes, 1);

	(void)state;
	assert_true(token_set_check(set, "Bearer test-token"));
	token_set_unref(set);
}

static void test_rejects_wrong_token(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, "Bearer test-tokem"));
	assert_false(token_set_check(set, "Bearer Test-token"));
	assert_false(token_set_check(set, "Bearer test-toke"));
	assert_false(token_set_check(set, "Bearer " TEST_TOKEN_SHA256));
	token_set_unref(set);
}

static void test_rejects_null(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, NULL));
	assert_false(token_set_check(NULL, "Bearer test-token"));
	token_set_unref(set);
}

static void test_rejects_empty(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, ""));
	token_set_unref(set);
}

static void test_rejects_bearer_without_token(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, "Bearer "));
	assert_false(token_set_check(set, "Bearer    "));
	assert_false(token_set_check(set, "Bearer"));
	token_set_unref(set);
}

static void test_rejects_other_scheme(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, "Basic dGVzdC10b2tlbg=="));
	assert_false(token_set_check(set, "Basic test-token"));
	assert_false(token_set_check(set, "test-token"));
	assert_false(token_set_check(set, "Bearertest-token"));
	assert_false(token_set_check(set, "Bearer:test-token"));
	token_set_unref(set);
}

static void test_rejects_trailing_junk(void **state)
{
	struct token_set *set = new_test_token_set();

	(void)state;
	assert_false(token_set_check(set, "Bearer test-tokenX"));
	assert_false(token_set_check(set, "Bearer test-token "));
	assert_false(token_set_check(set, "Bearer test-token\r\n"));
	assert_false(token_set_check(set, "Bearer test-token, Bearer other"));
	token_set_unref(set);
}

static void test_uppercase_hex_accepted(void **state)
{
	char hash[7 + 64 + 1];
	char *const hashes[] = { hash };
	struct token_set *set;

	(void)state;
	hash_of("test-token", hash);
	for (char *p = hash + 7; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	assert_string_equal(hash + 7, "4C5DC9B7708905F77F5E5D16316B5DFB425E68CB326DCD55A860E90A7707031E");
	set = new_set(hashes, 1);
	assert_true(token_set_check(set, "Bearer test-token"));
	assert_false(token_set_check(set, "Bearer TEST-TOKEN"));
	token_set_unref(set);
}

static void test_bad_prefix(void **state)
{
	(void)state;
	expect_bad_hash("sha512:" TEST_TOKEN_SHA256);
	expect_bad_hash("SHA256:" TEST_TOKEN_SHA256);
	expect_bad_hash(TEST_TOKEN_SHA256);
	expect_bad_hash("sha256 " TEST_TOKEN_SHA256);
}

static void test_bad_length(void **state)
{
	char hash[7 + 66 + 1] = "sha256:" TEST_TOKEN_SHA256;

	(void)state;
	hash[7 + 63] = '\0';
	expect_bad_hash(hash);
	memcpy(hash + 7 + 63, "ee", 3);
	expect_bad_hash(hash);
	expect_bad_hash("sha256:");
	expect_bad_hash("");
}

static void test_bad_hex(void **state)
{
	char hash[] = "sha256:" TEST_TOKEN_SHA256;

	(void)state;
	hash[7] = 'g';
	expect_bad_hash(hash);
	hash[7] = '4';
	hash[7 + 63] = 'z';
	expect_bad_hash(hash);
	hash[7 + 63] = ' ';
	expect_bad_hash(hash);
}

static void test_bad_first_names_index_zero(void **state)
{
	char *const hashes[] = { "sha256:nothex" };
	struct token_set *set = NULL;
	char *cause = NULL;

	(void)state;
	assert_int_equal(token_set_new(hashes, 1, &set, &cause), -1);
	assert_non_null(cause);
	if (strstr(cause, "admin.tokens[0]") == NULL)
		fail_msg("cause does not name admin.tokens[0]: %s", cause);
	assert_null(set);
	free(cause);
}

static void test_two_tokens(void **state)
{
	char a[7 + 64 + 1], b[7 + 64 + 1];
	char *const hashes[] = { a, b };
	struct token_set *set;

	(void)state;
	hash_of("token-one", a);
	hash_of("token-two", b);
	set = new_set(hashes, 2);
	assert_true(token_set_check(set, "Bearer token-one"));
	assert_true(token_set_check(set, "Bearer token-two"));
	assert_false(token_set_check(set, "Bearer token-three"));
	assert_false(token_set_check(set, "Bearer test-token"));
	token_set_unref(set);
}

static void test_zero_tokens(void **state)
{
	struct token_set *set = new_set(NULL, 0);

	(void)state;
	assert_false(token_set_check(set, "Bearer test-token"));
	assert_false(token_set_check(set, "Bearer "));
	assert_false(token_set_check(set, "Bearer x"));
	token_set_unref(set);
}

static void test_free_null(void **state)
{
	(void)state;
	token_set_unref(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_hash),
		cmocka_unit_test(test_accepts_bearer),
		cmocka_unit_test(test_references),
		cmocka_unit_test(test_accepts_lowercase_scheme),
		cmocka_unit_test(test_accepts_hard_coded_hash),
		cmocka_unit_test(test_rejects_wrong_token),
		cmocka_unit_test(test_rejects_null),
		cmocka_unit_test(test_rejects_empty),
		cmocka_unit_test(test_rejects_bearer_without_token),
		cmocka_unit_test(test_rejects_other_scheme),
		cmocka_unit_test(test_rejects_trailing_junk),
		cmocka_unit_test(test_uppercase_hex_accepted),
		cmocka_unit_test(test_bad_prefix),
		cmocka_unit_test(test_bad_length),
		cmocka_unit_test(test_bad_hex),
		cmocka_unit_test(test_bad_first_names_index_zero),
		cmocka_unit_test(test_two_tokens),
		cmocka_unit_test(test_zero_tokens),
		cmocka_unit_test(test_free_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
