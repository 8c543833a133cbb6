#include "token.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

struct token_set {
	atomic_int refs;
	size_t n;
	unsigned char (*hashes)[SHA256_DIGEST_LENGTH];
};

static int token_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int token_parse_hash(const char *s, unsigned char out[SHA256_DIGEST_LENGTH])
{
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s + 7) != 2 * SHA256_DIGEST_LENGTH)
		return -1;
	s += 7;
	for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
		int hi = token_hexval(s[2 * i]), lo = token_hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int token_set_new(char *const *hashes, size_t n, struct token_set **out, char **cause)
{
	struct token_set *set = calloc(1, sizeof(*set));

	if (set == NULL || (n > 0 && (set->hashes = calloc(n, sizeof(*set->hashes))) == NULL))
		goto nomem;
	atomic_init(&set->refs, 1);
	set->n = n;
	for (size_t i = 0; i < n; i++) {
		if (token_parse_hash(hashes[i], set->hashes[i]) < 0) {
			if (asprintf(cause, "admin.tokens[%zu]: expected \"sha256:\" and 64 hex characters", i) < 0)
				*cause = NULL;
			token_set_unref(set);
			return -1;
		}
	}
	*out = set;
	return 0;
nomem:
	token_set_unref(set);
	*cause = strdup("out of memory");
	return -1;
}

struct token_set *token_set_ref(struct token_set *set)
{
	atomic_fetch_add(&set->refs, 1);
	return set;
}

void token_set_unref(struct token_set *set)
{
	if (set == NULL || atomic_fetch_sub(&set->refs, 1) > 1)
		return;
	if (set->hashes)
		OPENSSL_cleanse(set->hashes, set->n * sizeof(*set->hashes));
	free(set->hashes);
	free(set);
}

int token_set_find(const struct token_set *set, const char *authorization)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	unsigned int dlen = 0;
	const char *token;
	int found = -1;

	if (set == NULL || authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
		return -1;
	token = authorization + 7;
	while (*token == ' ')
		token++;
	if (*token == '\0')
		return -1;
	if (!EVP_Digest(token, strlen(token), digest, &dlen, EVP_sha256(), NULL))
		return -1;
	/* Every hash is compared: the time does not say which matched. */
	for (size_t i = 0; i < set->n; i++) {
		int eq = CRYPTO_memcmp(digest, set->hashes[i], sizeof(digest)) == 0;
		found = eq && found < 0 ? (int)i : found;
	}
	OPENSSL_cleanse(digest, sizeof(digest));
	return found;
}

bool token_set_check(const struct token_set *set, const char *authorization)
{
	return token_set_find(set, authorization) >= 0;
}

int token_set_name(const struct token_set *set, int index, char out[TOKEN_NAME_MAX + 1])
{
	static const char hex[] = "0123456789abcdef";

	if (set == NULL || index < 0 || (size_t)index >= set->n)
		return -1;
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 4; i++) {
		out[7 + 2 * i] = hex[set->hashes[index][i] >> 4];
		out[8 + 2 * i] = hex[set->hashes[index][i] & 15];
	}
	out[15] = '\0';
	return 0;
}
