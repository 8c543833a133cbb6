#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "secret.h"

#define AAD "a1PK/dev1"
#define PLAIN "0123456789abcdef0123456789abcdef"

struct fixture {
	char dir[64];
	char path[96];
	struct secret_key *key;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char *cause = NULL;

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_secret.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		goto fail;
	snprintf(f->path, sizeof(f->path), "%s/key", f->dir);
	if (secret_key_load(f->path, true, &f->key, &cause) != 0) {
		fprintf(stderr, "setup: %s\n", cause ? cause : "?");
		free(cause);
		goto fail;
	}
	*state = f;
	return 0;
fail:
	rmdir(f->dir);
	free(f);
	return -1;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	static const char *const names[] = { "key", "other", "known", "bad" };
	char path[128];

	secret_key_free(f->key);
	/* Also what a failed test left behind. */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", f->dir, names[i]);
		unlink(path);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Writes DATA to PATH with MODE, replacing it. */
static void write_file(const char *path, const char *data, mode_t mode)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(close(fd), 0);
}

static void is_lower_hex(const char *s, size_t len)
{
	assert_int_equal(strlen(s), len);
	for (size_t i = 0; i < len; i++)
		assert_non_null(strchr("0123456789abcdef", s[i]));
}

static void test_generate(void **state)
{
	char a[SECRET_HEX_LEN + 1], b[SECRET_HEX_LEN + 1];

	(void)state;
	assert_int_equal(secret_generate(a), 0);
	assert_int_equal(secret_generate(b), 0);
	is_lower_hex(a, 32);
	is_lower_hex(b, 32);
	assert_string_not_equal(a, b);
}

static int seal(const struct secret_key *key, const char *aad, const char *plain,
	unsigned char *out, size_t outlen)
{
	return secret_seal(key, aad, plain, strlen(plain), out, outlen);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	unsigned char sealed[128], sealed2[128];
	char plain[128];
	int slen;

	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_int_equal(slen, strlen(PLAIN) + SECRET_SEALED_OVERHEAD);
	assert_int_equal(sealed[0], 0x01);
	/* The plain text does not appear in the output. */
	assert_null(memmem(sealed, (size_t)slen, PLAIN, 8));
	assert_int_equal(secret_open(f->key, AAD, sealed, (size_t)slen, plain, sizeof(plain)),
		strlen(PLAIN));
	assert_string_equal(plain, PLAIN);
	/* A fresh nonce every time. */
	assert_int_equal(seal(f->key, AAD, PLAIN, sealed2, sizeof(sealed2)), slen);
	assert_memory_not_equal(sealed + 1, sealed2 + 1, 12);
	/* Empty plain text, and a buffer of exactly the needed size. */
	assert_int_equal(seal(f->key, AAD, "", sealed, SECRET_SEALED_OVERHEAD), SECRET_SEALED_OVERHEAD);
	assert_int_equal(secret_open(f->key, AAD, sealed, SECRET_SEALED_OVERHEAD, plain, 1), 0);
	assert_string_equal(plain, "");
}

static void test_seal_buffer_too_small(void **state)
{
	struct fixture *f = *state;
	unsigned char sealed[128];
	char plain[128];
	int slen;

	assert_int_equal(seal(f->key, AAD, PLAIN, sealed, strlen(PLAIN) + SECRET_SEALED_OVERHEAD - 1),
		-1);
	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	/* No room for the NUL. */
	assert_int_equal(secret_open(f->key, AAD, sealed, (size_t)slen, plain, strlen(PLAIN)), -1);
}

static void test_open_rejects_tampering(void **state)
{
	struct fixture *f = *state;
	unsigned char sealed[128], copy[128];
	char plain[128];
	int slen;
	size_t plen = strlen(PLAIN);
	/* version, nonce first/last, cipher text first/last, tag first/last */
	const size_t positions[] = { 0, 1, 12, 13, 13 + plen - 1, 13 + plen, 13 + plen + 15 };

	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_int_equal(slen, plen + 29);
	for (size_t i = 0; i < sizeof(positions) / sizeof(positions[0]); i++) {
		memcpy(copy, sealed, (size_t)slen);
		copy[positions[i]] ^= 0x01;
		memset(plain, 0, sizeof(plain));
		strcpy(plain, "untouched");
		assert_int_equal(secret_open(f->key, AAD, copy, (size_t)slen, plain, sizeof(plain)), -1);
		/* Nothing unauthenticated is left behind. */
		assert_null(memmem(plain, sizeof(plain), PLAIN, 4));
	}
	/* The untouched copy still opens. */
	assert_int_equal(secret_open(f->key, AAD, sealed, (size_t)slen, plain, sizeof(plain)),
		(int)plen);
}

static void test_open_rejects_wrong_aad(void **state)
{
	struct fixture *f = *state;
	unsigned char sealed[128];
	char plain[128];
	int slen;

	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	assert_int_equal(secret_open(f->key, "a1PK/dev2", sealed, (size_t)slen, plain, sizeof(plain)),
		-1);
	assert_int_equal(secret_open(f->key, "", sealed, (size_t)slen, plain, sizeof(plain)), -1);
	assert_int_equal(secret_open(f->key, AAD "x", sealed, (size_t)slen, plain, sizeof(plain)),
		-1);
}

static void test_open_rejects_truncated(void **state)
{
	struct fixture *f = *state;
	unsigned char sealed[128];
	char plain[128];
	int slen;

	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	for (size_t n = 0; n < (size_t)slen; n++)
		assert_int_equal(secret_open(f->key, AAD, sealed, n, plain, sizeof(plain)), -1);
}

static void test_open_rejects_other_key(void **state)
{
	struct fixture *f = *state;
	char path[128];
	struct secret_key *other = NULL;
	char *cause = NULL;
	unsigned char sealed[128];
	char plain[128];
	int slen;

	snprintf(path, sizeof(path), "%s/other", f->dir);
	assert_int_equal(secret_key_load(path, true, &other, &cause), 0);
	assert_null(cause);
	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	assert_int_equal(secret_open(other, AAD, sealed, (size_t)slen, plain, sizeof(plain)), -1);
	secret_key_free(other);
	unlink(path);
}

static void test_key_file_created_0600_and_reloaded(void **state)
{
	struct fixture *f = *state;
	struct secret_key *again = NULL;
	char *cause = NULL;
	struct stat st;
	char buf[128];
	unsigned char sealed[128];
	char plain[128];
	ssize_t n;
	int fd, slen;

	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_int_equal(n, 65);
	buf[n] = '\0';
	assert_int_equal(buf[64], '\n');
	buf[64] = '\0';
	is_lower_hex(buf, 64);

	/* Loading again, with or without create, gives the same key. */
	slen = seal(f->key, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	assert_int_equal(secret_key_load(f->path, false, &again, &cause), 0);
	assert_null(cause);
	assert_int_equal(secret_open(again, AAD, sealed, (size_t)slen, plain, sizeof(plain)),
		strlen(PLAIN));
	secret_key_free(again);
	assert_int_equal(secret_key_load(f->path, true, &again, &cause), 0);
	assert_int_equal(secret_open(again, AAD, sealed, (size_t)slen, plain, sizeof(plain)),
		strlen(PLAIN));
	secret_key_free(again);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, 65);
}

static void test_key_file_known_key(void **state)
{
	struct fixture *f = *state;
	char path[128];
	struct secret_key *lower = NULL, *upper = NULL;
	char *cause = NULL;
	unsigned char sealed[128];
	char plain[128];
	int slen;
	const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

	snprintf(path, sizeof(path), "%s/known", f->dir);
	write_file(path, hex, 0600);
	assert_int_equal(secret_key_load(path, false, &lower, &cause), 0);
	write_file(path, "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF\r\n", 0400);
	assert_int_equal(secret_key_load(path, false, &upper, &cause), 0);
	assert_null(cause);
	slen = seal(lower, AAD, PLAIN, sealed, sizeof(sealed));
	assert_true(slen > 0);
	assert_int_equal(secret_open(upper, AAD, sealed, (size_t)slen, plain, sizeof(plain)),
		strlen(PLAIN));
	assert_int_equal(secret_open(f->key, AAD, sealed, (size_t)slen, plain, sizeof(plain)), -1);
	secret_key_free(lower);
	secret_key_free(upper);
	unlink(path);
}

/* Loading PATH fails, and the cause names the file and contains WANT. */
static void expect_load_fail(const char *path, bool create, const char *want)
{
	struct secret_key *key = (struct secret_key *)&key;
	char *cause = NULL;

	assert_int_equal(secret_key_load(path, create, &key, &cause), -1);
	assert_null(key);
	assert_non_null(cause);
	if (strstr(cause, path) == NULL || strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	free(cause);
}

static void test_key_file_rejected(void **state)
{
	struct fixture *f = *state;
	char path[128];
	const char *good = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

	snprintf(path, sizeof(path), "%s/bad", f->dir);
	expect_load_fail(path, false, "No such file");
	write_file(path, good, 0644);
	expect_load_fail(path, false, "mode 0644");
	expect_load_fail(path, true, "mode 0644");
	write_file(path, good, 0640);
	expect_load_fail(path, false, "mode 0640");
	write_file(path, "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600);
	expect_load_fail(path, false, "not hex");
	write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n", 0600);
	expect_load_fail(path, false, "not hex");
	write_file(path, "0011223344", 0600);
	expect_load_fail(path, false, "too short");
	write_file(path, "", 0600);
	expect_load_fail(path, true, "too short");
	write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00\n",
		0600);
	expect_load_fail(path, false, "trailing data");
	write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\n",
		0600);
	expect_load_fail(path, false, "trailing data");
	unlink(path);
	expect_load_fail(f->dir, false, "not a regular file");
	snprintf(path, sizeof(path), "%s/missing/key", f->dir);
	expect_load_fail(path, true, "cannot create");
}

static void expect_hmac(const char *method, const char *key, const char *msg, size_t msglen,
	const char *want)
{
	char out[SECRET_HMAC_HEX_MAX + 1];

	assert_int_equal(secret_hmac_hex(method, key, msg, msglen, out, sizeof(out)),
		(int)strlen(want));
	assert_string_equal(out, want);
}

static void test_hmac_vectors(void **state)
{
	char k0b16[17], k0b20[21], kaa16[17], kaa20[21], ddd[50];

	(void)state;
	memset(k0b16, 0x0b, 16);
	k0b16[16] = '\0';
	memset(k0b20, 0x0b, 20);
	k0b20[20] = '\0';
	memset(kaa16, 0xaa, 16);
	kaa16[16] = '\0';
	memset(kaa20, 0xaa, 20);
	kaa20[20] = '\0';
	memset(ddd, 0xdd, sizeof(ddd));

	/* RFC 2202, test cases 1-3 */
	expect_hmac("hmacmd5", k0b16, "Hi There", 8, "9294727a3638bb1c13f48ef8158bfc9d");
	expect_hmac("hmacmd5", "Jefe", "what do ya want for nothing?", 28,
		"750c783e6ab0b503eaa86e310a5db738");
	expect_hmac("hmacmd5", kaa16, ddd, sizeof(ddd), "56be34521d144c88dbb8c733f0e8b3f6");
	expect_hmac("hmacsha1", k0b20, "Hi There", 8, "b617318655057264e28bc0b6fb378c8ef146be00");
	expect_hmac("hmacsha1", "Jefe", "what do ya want for nothing?", 28,
		"effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
	expect_hmac("hmacsha1", kaa20, ddd, sizeof(ddd), "125d7342b9ac11cd91a39af48aa17b4f63f175d3");
	/* RFC 4231, test cases 1 and 2 */
	expect_hmac("hmacsha256", k0b20, "Hi There", 8,
		"b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	expect_hmac("hmacsha256", "Jefe", "what do ya want for nothing?", 28,
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* Method names in any case; NULL is the default, hmacmd5. */
	expect_hmac("HmacSHA256", "Jefe", "what do ya want for nothing?", 28,
		"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	expect_hmac(NULL, "Jefe", "what do ya want for nothing?", 28,
		"750c783e6ab0b503eaa86e310a5db738");
	/* MSGLEN is honoured, not strlen. */
	expect_hmac("hmacmd5", "Jefe", "what do ya want for nothing?xyz", 28,
		"750c783e6ab0b503eaa86e310a5db738");
}

static void test_hmac_errors(void **state)
{
	char out[SECRET_HMAC_HEX_MAX + 1];

	(void)state;
	assert_int_equal(secret_hmac_hex("hmacsha512", "k", "m", 1, out, sizeof(out)), -1);
	assert_int_equal(secret_hmac_hex("", "k", "m", 1, out, sizeof(out)), -1);
	assert_int_equal(secret_hmac_hex("hmacmd5", "k", "m", 1, out, 32), -1);
	assert_int_equal(secret_hmac_hex("hmacmd5", "k", "m", 1, out, 33), 32);
	assert_int_equal(secret_hmac_hex("hmacsha256", "k", "m", 1, out, 64), -1);
	assert_int_equal(secret_hmac_hex("hmacsha256", "k", "m", 1, out, 65), 64);
}

static void test_hex_equal(void **state)
{
	(void)state;
	assert_int_equal(secret_hex_equal("0123456789abcdef", "0123456789abcdef"), 1);
	assert_int_equal(secret_hex_equal("0123456789abcdef", "0123456789ABCDEF"), 1);
	assert_int_equal(secret_hex_equal("AbCdEf", "aBcDeF"), 1);
	assert_int_equal(secret_hex_equal("0123456789abcdef", "0123456789abcdee"), 0);
	assert_int_equal(secret_hex_equal("1123456789abcdef", "0123456789abcdef"), 0);
	assert_int_equal(secret_hex_equal("abcdef", "abcde"), 0);
	assert_int_equal(secret_hex_equal("abcde", "abcdef"), 0);
	assert_int_equal(secret_hex_equal("", ""), 0);
	assert_int_equal(secret_hex_equal(NULL, "ab"), 0);
	assert_int_equal(secret_hex_equal("ab", NULL), 0);
	/* '@' and '`' differ only in the case bit; neither is hex. */
	assert_int_equal(secret_hex_equal("a@", "a`"), 0);
	assert_int_equal(secret_hex_equal("zz", "zz"), 0);
	assert_int_equal(secret_hex_equal("a:", "a:"), 0);
}

/* Vectors of the Tencent SDK's dynreg.c, computed apart from this code
 * (Python, and openssl dgst/enc) and accepted by the SDK's own code. */
static void test_tc_sign(void **state)
{
	static const char msg[] = "deviceName=dev1&nonce=48271000&productId=ABCDEFGHIJ&timestamp=1700000000";
	char out[64];

	(void)state;
	assert_int_equal(secret_tc_sign("0123456789abcdefghijklmn", msg, strlen(msg), out, sizeof(out)), 56);
	assert_string_equal(out, "NjVhM2FkNzE2MGMzNDk4NzMyM2E4ZmE4MDUxZTVlNjJjNGI1NWQ2NQ==");
	assert_int_equal(secret_tc_sign("0123456789abcdefghijklmn", msg, strlen(msg), out, 56), -1);
}

static void test_tc_payload(void **state)
{
	static const char plain[] = "{\"encryptionType\":2,\"psk\":\"MDEyMzQ1Njc4OUFCQ0RFRg==\"}";
	/* A real answer of the service the SDK was written for, and its product secret. */
	static const char real[] = "{\"encryptionType\":2,\"psk\":\"7WmFA/MEs+Fy+32QwJWtYw==\"}";
	char out[256];

	(void)state;
	assert_int_equal(secret_tc_payload("0123456789abcdefghijklmn", plain, strlen(plain), out, sizeof(out)), 88);
	assert_string_equal(out, "utkU+JMoQ9Xlnldd66IE8q0JFGUs8mXyxnxIPUgio6mKVbOVH4w+26FPv/xdBeID3FH+UYj1BEHVTv7S7PIN6w==");
	assert_true(secret_tc_payload("8XzjN8rfgFVGDTNTUGau4snA", real, strlen(real), out, sizeof(out)) > 0);
	assert_string_equal(out, "eHGRUBar9LBPI+mcaHnVEZsj05mSdoZLPhd54hDJXv/2va2rXSpfddgRy5XE/FIS835NjUr5Mhw1AJSg4yGC/w==");
	/* A block-aligned plain text still gets a block of zeros. */
	assert_int_equal(secret_tc_payload("0123456789abcdef", "0123456789abcdef", 16, out, sizeof(out)), 44);
	assert_int_equal(secret_tc_payload("short", plain, strlen(plain), out, sizeof(out)), -1);
	assert_int_equal(secret_tc_payload("0123456789abcdef", plain, strlen(plain), out, 88), -1);
}

static void test_psk(void **state)
{
	char a[SECRET_PSK_LEN + 1], b[SECRET_PSK_LEN + 1];

	(void)state;
	assert_int_equal(secret_generate_psk(a), 24);
	assert_int_equal(secret_generate_psk(b), 24);
	assert_int_equal(strlen(a), 24);
	assert_string_not_equal(a, b);
	assert_int_equal(a[22], '=');
	assert_true(secret_str_equal(a, a));
	assert_false(secret_str_equal(a, b));
	assert_false(secret_str_equal("abc", "abcd"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generate),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seal_buffer_too_small, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_rejects_tampering, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_rejects_wrong_aad, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_rejects_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_rejects_other_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file_created_0600_and_reloaded, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_key_file_known_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_file_rejected, setup, teardown),
		cmocka_unit_test(test_hmac_vectors),
		cmocka_unit_test(test_hmac_errors),
		cmocka_unit_test(test_hex_equal),
		cmocka_unit_test(test_tc_sign),
		cmocka_unit_test(test_tc_payload),
		cmocka_unit_test(test_psk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
