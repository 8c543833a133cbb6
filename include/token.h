/* token: admin bearer tokens, configured as "sha256:<hex>" and compared in
 * constant time. Pure. */
#ifndef BOOTSTRAPD_TOKEN_H
#define BOOTSTRAPD_TOKEN_H

#include <stddef.h>
#include <stdbool.h>

struct token_set;

/* HASHES: N strings "sha256:<64 hex>". On error returns -1 with *cause.
 * The set is reference counted (a reload replaces it while threads still
 * hold the old one); the caller holds the first reference. */
int token_set_new(char *const *hashes, size_t n, struct token_set **out, char **cause)
	__attribute__((warn_unused_result));
struct token_set *token_set_ref(struct token_set *set);
void token_set_unref(struct token_set *set); /* frees at the last; NULL is fine */

/* True when AUTHORIZATION ("Bearer <token>", may be NULL) names a configured
 * token. Every configured hash is compared, so the time does not say which. */
bool token_set_check(const struct token_set *set, const char *authorization);
/* The same, answering which: its index in the configuration, or -1. */
int token_set_find(const struct token_set *set, const char *authorization);

/* A token's name for the audit log: "sha256:" and the first 8 hex digits of
 * its hash (what the configuration shows of it; never the token). 0 or -1. */
#define TOKEN_NAME_MAX 15
int token_set_name(const struct token_set *set, int index, char out[TOKEN_NAME_MAX + 1])
	__attribute__((warn_unused_result));

#endif
